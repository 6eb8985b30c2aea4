//! The example plugins of `plugins/` through the real gateway: each is built for wasm32-wasip2,
//! configured on a route the way an operator would, and exercised with signed requests. The
//! content filter and the group-join policy have twins in JavaScript and Python that must pass
//! the very same tests.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use e2e::plugins::example;
use e2e::*;
use imgate_client::Session;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

fn plugin(name: &str, caps: &[&str]) -> String {
    plugin_at(name, &example(name), caps)
}

/// `[[plugin]]` TOML for the component at `path` (a twin in another language keeps the name).
fn plugin_at(name: &str, path: &std::path::Path, caps: &[&str]) -> String {
    let caps: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
    format!("[[plugin]]\nname = \"{name}\"\npath = \"{}\"\ncapabilities = [{}]\n", path.display(), caps.join(", "))
}

/// The content filter in each language it is written in: Rust, and JavaScript (componentize-js),
/// the latter also on prepared instances (`limits.prepared_instances`, its recommended mode).
fn content_filters() -> [(&'static str, String); 3] {
    let js = e2e::plugins::js_content_filter();
    [
        ("rust", plugin("content-filter", &["config"])),
        ("js", FOREIGN.to_owned() + &plugin_at("content-filter", &js, &["config"])),
        ("js prepared", FOREIGN.to_owned() + &plugin_at("content-filter", &js, &["config"]) + PREPARED),
    ]
}

/// The group-join policy in Rust and in Python (componentize-py, whose runtime imports WASI clocks,
/// files and sockets: `wasi-stubs`, and `random` for its hash seed), fresh and prepared.
fn group_join_policies() -> [(&'static str, String); 3] {
    let py = e2e::plugins::py_group_join_policy();
    let caps = ["openim", "config", "random", "wasi-stubs"];
    [
        ("rust", plugin("group-join-policy", &["openim", "config", "log"])),
        ("python", FOREIGN.to_owned() + &plugin_at("group-join-policy", &py, &caps)),
        ("python prepared", FOREIGN.to_owned() + &plugin_at("group-join-policy", &py, &caps) + PREPARED),
    ]
}

/// `[[plugin]]` limits: two instances kept ready.
const PREPARED: &str = "limits = { prepared_instances = 2 }\n";

/// `[plugins]` for the twins in other languages: their 12-18 MB components take several seconds
/// of Cranelift each, so the gateways of this process share one precompiled cache (imgate's own
/// store, keyed by hash) and allow a slow machine more than the default 20 s to compile.
const FOREIGN: &str = "[plugins]\ncompile_timeout_ms = 120000\nstore_dir = \"../imgate-e2e-foreign-store\"\n";

fn chain(route: &str, plugin: &str, config: &str) -> String {
    format!("[[route_plugins]]\nroute = \"{route}\"\nplugins = [{{ plugin = \"{plugin}\", config = {config} }}]\n")
}

async fn gateway(extra_toml: String) -> Harness {
    Harness::start_with(Options { extra_toml, ..Options::default() }).await
}

async fn call(h: &Harness, s: &Session, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes());
    into_json(h.client().call(s, method, path, bytes.as_deref()).await.expect("answer")).await
}

fn denied(status: u16, body: &Value) -> (u16, Option<&str>, Option<&str>) {
    (status, body["code"].as_str(), body["reason"].as_str())
}

#[tokio::test]
async fn content_filter_masks_or_blocks_configured_words_in_every_language() {
    for (lang, plugin) in content_filters() {
        content_filter_masks_or_blocks(lang, plugin).await;
    }
}

async fn content_filter_masks_or_blocks(lang: &str, plugin: String) {
    let extra = plugin
        + &chain("send_text_to_user", "content-filter", "{ words = [\"spam\", \"scam\"], action = \"mask\" }")
        + &chain("send_text_to_group", "content-filter", "{ words = [\"spam\"], action = \"block\" }");
    let h = gateway(extra).await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    let (status, body) =
        call(&h, &alice, "POST", "/v1/messages/user/bob", Some(json!({"text": "no SPAM, no Scam"}))).await;
    assert_eq!(status, 200, "{lang}: {body}");
    let (_, hist) = call(&h, &bob, "GET", "/v1/conversations/user/alice/messages?from=1&to=10", None).await;
    let content = B64.decode(hist["messages"][0]["content"].as_str().expect("content")).expect("base64");
    assert_eq!(serde_json::from_slice::<Value>(&content).unwrap(), json!({"content": "no ****, no ****"}), "{lang}");
    // Blocking: the message never reaches OpenIM.
    let (status, _) =
        call(&h, &alice, "POST", "/v1/groups", Some(json!({"name": "g", "group_id": "g1", "verification": 2}))).await;
    assert_eq!(status, 200);
    let before = h.emu.seen().iter().filter(|r| r.path == "/msg/send_msg").count();
    let (status, body) = call(&h, &alice, "POST", "/v1/messages/group/g1", Some(json!({"text": "buy spam"}))).await;
    assert_eq!(denied(status, &body), (422, Some("policy_denied"), Some("content_blocked")), "{lang}: {body}");
    assert_eq!(h.emu.seen().iter().filter(|r| r.path == "/msg/send_msg").count(), before);
    let (status, body) = call(&h, &alice, "POST", "/v1/messages/group/g1", Some(json!({"text": "hello"}))).await;
    assert_eq!(status, 200, "{body}");
    // The refusal is audited with the plugin and its reason, never with the message.
    let audit = std::fs::read_to_string(h.audit_file().await).expect("audit file");
    let refused = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["status"] == 422)
        .expect("the refusal is audited");
    assert_eq!(refused["user"], "alice");
    assert_eq!(refused["reason"], "plugin content-filter rejected: content_blocked", "{refused}");
    assert!(!audit.contains("buy spam") && !audit.contains("SPAM"), "no message text in the audit trail");
    h.shutdown().await;
}

#[tokio::test]
async fn a_configuration_the_plugin_refuses_never_serves_in_every_language() {
    for (lang, plugin) in content_filters() {
        let extra =
            plugin + &chain("send_text_to_user", "content-filter", "{ words = [\"spam\"], action = \"explode\" }");
        let err =
            Harness::try_start_with(Options { extra_toml: extra, ..Options::default() }).await.err().expect("refused");
        assert!(
            err.contains("route `send_text_to_user`: plugin `content-filter`: init refused the configuration"),
            "{lang}: {err}"
        );
    }
}

#[tokio::test]
async fn group_join_policy_keeps_private_groups_to_allowed_users_in_every_language() {
    for (lang, plugin) in group_join_policies() {
        group_join_policy_keeps_private_groups(lang, plugin).await;
    }
}

async fn group_join_policy_keeps_private_groups(lang: &str, plugin: String) {
    let extra = plugin + &chain("join_group", "group-join-policy", "{ allowed_users = [\"carol\"] }");
    let h = gateway(extra).await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    let (_, carol) = h.session("carol").await;
    for gid in ["private1", "public1"] {
        let (status, body) =
            call(&h, &alice, "POST", "/v1/groups", Some(json!({"name": gid, "group_id": gid, "verification": 2})))
                .await;
        assert_eq!(status, 200, "{body}");
    }
    let admin = h.admin_jwt("openim:call");
    let (status, body) = h
        .post(
            "/v1/admin/openim/group/set_group_info_ex",
            Some(&admin),
            &json!({"groupID": "private1", "ex": "{\"private\": true}"}),
        )
        .await;
    assert_eq!((status, body["errCode"].as_i64()), (200, Some(0)), "{body}");
    let (status, body) = call(&h, &bob, "POST", "/v1/groups/private1/join", None).await;
    assert_eq!(denied(status, &body), (403, Some("policy_denied"), Some("group_private")), "{lang}: {body}");
    assert_eq!(call(&h, &carol, "POST", "/v1/groups/private1/join", None).await.0, 204, "{lang}");
    assert_eq!(call(&h, &bob, "POST", "/v1/groups/public1/join", None).await.0, 204, "{lang}");
    h.shutdown().await;
}

#[tokio::test]
async fn response_reshaper_hides_other_users_fields_and_renames() {
    let extra = plugin("response-reshaper", &["config"])
        + &chain(
            "lookup_users",
            "response-reshaper",
            "{ strip_for_others = [\"face_url\"], rename = { nickname = \"display_name\" } }",
        );
    let h = gateway(extra).await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let (status, body) =
        call(&h, &alice, "POST", "/v1/users/lookup", Some(json!({"user_ids": ["alice", "bob"]}))).await;
    assert_eq!(status, 200, "{body}");
    let users = body["users"].as_array().expect("users");
    let me = users.iter().find(|u| u["user_id"] == "alice").expect("alice");
    let other = users.iter().find(|u| u["user_id"] == "bob").expect("bob");
    assert_eq!(me["display_name"], "alice", "{body}");
    assert!(me.get("face_url").is_some() && me.get("nickname").is_none(), "{body}");
    assert_eq!(other["display_name"], "bob", "{body}");
    assert!(other.get("face_url").is_none(), "another user's field is hidden: {body}");
    h.shutdown().await;
}

#[tokio::test]
async fn admin_gate_restricts_admin_routes_to_named_subjects_and_user_routes_to_tiers() {
    let extra = plugin("admin-gate", &["config"])
        + &chain("admin.users.register", "admin-gate", "{ admin_subjects = [\"ops@test\"] }")
        + &chain("get_profile", "admin-gate", "{ user_tiers = [\"gold\"] }");
    let h = gateway(extra).await;
    // The harness registers users as `ops@test`: allowed.
    let (_, alice) = h.session("alice").await;
    let now = now_secs();
    let intruder = h.sign_ed(
        &header(Algorithm::EdDSA, ED_KID),
        &json!({"iss": ED_ISSUER, "aud": AUDIENCE, "sub": "intruder", "scope": "users:write", "iat": now, "exp": now + 300}),
    );
    let (status, body) =
        h.post("/v1/admin/users", Some(&intruder), &json!({"users": [{"user_id": "mallory", "nickname": "m"}]})).await;
    assert_eq!(denied(status, &body), (403, Some("policy_denied"), Some("not_allowed")), "{body}");
    let registers = h.emu.seen().iter().filter(|r| r.path == "/user/user_register").count();
    assert_eq!(registers, 1, "only alice's registration reached OpenIM");
    // A user route: alice's tier is not `gold`.
    let (status, body) = call(&h, &alice, "GET", "/v1/me/profile", None).await;
    assert_eq!(denied(status, &body), (403, Some("policy_denied"), Some("not_allowed")), "{body}");
    h.shutdown().await;
}

/// Every example and (default-built) hostile plugin builds for wasm32-wasip2 and is where the
/// harness looks for it.
#[test]
fn every_plugin_builds() {
    for name in "group-join-policy content-filter response-reshaper admin-gate".split(' ') {
        assert!(example(name).is_file(), "{name}");
    }
    let hostile = "spin membomb bigmem recurse trap bigout badptr badverdict kvuser fsuser leak yes slowhost echo \
                   version hugeout exiter";
    for name in hostile.split(' ') {
        assert!(e2e::plugins::hostile_plugin(name).is_file(), "{name}");
    }
}

#[tokio::test]
async fn a_plugin_is_called_only_for_the_hooks_it_declares() {
    // content-filter declares `hooks!(on_request)`, response-reshaper `hooks!(on_response)`: in one
    // chain each does its work, and neither is called for the hook it does not implement.
    let extra = plugin("content-filter", &["config"])
        + &plugin("response-reshaper", &["config"])
        + "[[route_plugins]]\nroute = \"lookup_users\"\nplugins = [\n"
        + "  { plugin = \"content-filter\", config = { words = [\"spam\"], action = \"block\", fields = [\"/user_ids/0\"] } },\n"
        + "  { plugin = \"response-reshaper\", config = { strip_for_others = [\"face_url\"] } },\n]\n";
    let h = gateway(extra).await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    for _ in 0..3 {
        let (status, body) = call(&h, &alice, "POST", "/v1/users/lookup", Some(json!({"user_ids": ["bob"]}))).await;
        assert_eq!(status, 200, "{body}");
        assert!(body["users"][0].get("face_url").is_none(), "the response hook ran: {body}");
    }
    let (status, body) = call(&h, &alice, "POST", "/v1/users/lookup", Some(json!({"user_ids": ["spam"]}))).await;
    assert_eq!(denied(status, &body), (422, Some("policy_denied"), Some("content_blocked")), "the request hook ran");
    let calls = |plugin: &str, hook: &str| {
        let name = format!("imgate_plugin_calls_total{{plugin=\"{plugin}\",hook=\"{hook}\"}}");
        let h = &h;
        async move { h.metric(&name).await.unwrap_or(0.0) }
    };
    assert_eq!(calls("content-filter", "on_request").await, 4.0);
    assert_eq!(calls("content-filter", "on_response").await, 0.0, "not declared: never called");
    assert_eq!(calls("response-reshaper", "on_request").await, 0.0, "not declared: never called");
    assert_eq!(calls("response-reshaper", "on_response").await, 3.0);
    h.shutdown().await;
}
