//! Hostile Wasm plugins (shared/spec/attacks.md B7, P1–P12, P14–P18) through the real gateway:
//! each plugin of `tests/hostile-plugins` is built for wasm32-wasip2, loaded by imgate from its
//! configuration, and attacked through signed requests. A failing plugin fails only its own
//! request, with the route's failure policy, and the gateway keeps serving.
//! (P13, a swap during 1 000 in-flight calls, is `plugin_reload_inflight.rs`, and its broken-module
//! half `plugin_reload.rs`; P16, the self-check, is a unit test of `host::plugins::runtime`.)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::plugins::hostile_plugin;
use e2e::*;
use futures_util::future::join_all;
use imgate_client::Session;
use serde_json::{json, Value};

/// `[[plugin]]` TOML for a hostile plugin.
fn plugin(name: &str, caps: &[&str], limits: &str) -> String {
    plugin_at(name, &hostile_plugin(name), caps, limits)
}

fn plugin_at(name: &str, path: &Path, caps: &[&str], limits: &str) -> String {
    let caps: Vec<String> = caps.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "[[plugin]]\nname = \"{name}\"\npath = \"{}\"\ncapabilities = [{}]\nlimits = {{ {limits} }}\n",
        path.display(),
        caps.join(", ")
    )
}

/// `[[route_plugins]]` TOML: one plugin on one route. `extra` is e.g. `failure = "open"`.
fn chain(route: &str, plugin: &str, config: &str, extra: &str) -> String {
    let extra = if extra.is_empty() { String::new() } else { format!(", {extra}") };
    format!(
        "[[route_plugins]]\nroute = \"{route}\"\nplugins = [{{ plugin = \"{plugin}\", config = {config}{extra} }}]\n"
    )
}

async fn gateway(extra_toml: String) -> Harness {
    Harness::start_with(Options { extra_toml, ..Options::default() }).await
}

/// A gateway with hostile plugin `name` on `send_text_to_user` (and `extra` TOML), alice and bob
/// signed in; returns alice's session.
async fn on_send(name: &str, caps: &[&str], limits: &str, entry: &str, extra: &str) -> (Harness, Session) {
    let h = gateway(plugin(name, caps, limits) + &chain("send_text_to_user", name, "{}", entry) + extra).await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    (h, alice)
}

async fn call(h: &Harness, s: &Session, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes());
    into_json(h.client().call(s, method, path, bytes.as_deref()).await.expect("answer")).await
}

async fn send(h: &Harness, s: &Session, text: &str) -> (u16, Value) {
    call(h, s, "POST", "/v1/messages/user/bob", Some(json!({ "text": text }))).await
}

fn sent_messages(h: &Harness) -> usize {
    h.emu.seen().iter().filter(|r| r.path == "/msg/send_msg").count()
}

async fn failures(h: &Harness, plugin: &str, kind: &str, policy: &str) -> f64 {
    h.metric(&format!("imgate_plugin_failures_total{{plugin=\"{plugin}\",kind=\"{kind}\",policy=\"{policy}\"}}"))
        .await
        .unwrap_or(0.0)
}

fn assert_policy_unavailable(status: u16, body: &Value) {
    assert_eq!((status, body["code"].as_str()), (503, Some("policy_unavailable")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p1_an_endless_loop_is_stopped_at_its_deadline_and_other_requests_are_served_meanwhile() {
    let (h, alice) = on_send("spin", &[], "cpu_ms = 20", "", "").await;
    let started = Instant::now();
    let spinning: Vec<_> = (0..4).map(|_| send(&h, &alice, "hi")).collect();
    // Meanwhile, a route without plugins answers.
    let (spins, me): (Vec<(u16, Value)>, _) = tokio::join!(join_all(spinning), call(&h, &alice, "GET", "/v1/me", None));
    assert_eq!(me.0, 200, "{}", me.1);
    for (status, body) in &spins {
        assert_policy_unavailable(*status, body);
    }
    // The deadline is 20 ms of CPU; a generous bound keeps the check meaningful on a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(failures(&h, "spin", "deadline", "closed").await, 4.0);
    assert_eq!(sent_messages(&h), 0, "a refused request never reaches OpenIM");
    // The workers are free again: more calls than there are call slots still each get an answer.
    for _ in 0..40 {
        let (status, body) = send(&h, &alice, "again").await;
        assert_policy_unavailable(status, &body);
    }
    assert_eq!(failures(&h, "spin", "deadline", "closed").await, 44.0);
    h.shutdown().await;
}

#[tokio::test]
async fn p1_with_failure_open_the_request_goes_on_without_the_plugin() {
    let (h, alice) = on_send("spin", &[], "cpu_ms = 10", "failure = \"open\"", "").await;
    let (status, body) = send(&h, &alice, "hi").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sent_messages(&h), 1);
    assert_eq!(failures(&h, "spin", "deadline", "open").await, 1.0);
    h.shutdown().await;
}

#[tokio::test]
async fn p2_a_memory_bomb_hits_the_cap() {
    let cap = 4 * 1024 * 1024;
    let (h, alice) = on_send("membomb", &[], &format!("memory_bytes = {cap}"), "", "").await;
    let (status, body) = send(&h, &alice, "hi").await;
    assert_policy_unavailable(status, &body);
    assert_eq!(failures(&h, "membomb", "memory", "closed").await, 1.0);
    let high = h.metric("imgate_plugin_memory_high_water_bytes{plugin=\"membomb\"}").await.expect("gauge");
    assert!(high > 0.0 && high <= cap as f64, "high-water {high}");
    let (status, _) = call(&h, &alice, "GET", "/v1/me", None).await;
    assert_eq!(status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn p3_a_module_declaring_huge_memory_is_refused_at_load() {
    let err = Harness::try_start_with(Options { extra_toml: plugin("bigmem", &[], ""), ..Options::default() })
        .await
        .err()
        .expect("refused");
    assert!(err.contains("plugin `bigmem`") && err.contains("exceeds the limit"), "{err}");
}

#[tokio::test]
async fn p4_unbounded_recursion_is_a_stack_overflow_trap_not_a_crash() {
    let (h, alice) = on_send("recurse", &[], "", "", "").await;
    let (status, body) = send(&h, &alice, "hi").await;
    assert_policy_unavailable(status, &body);
    assert_eq!(failures(&h, "recurse", "stack_overflow", "closed").await, 1.0);
    assert_eq!(call(&h, &alice, "GET", "/v1/me", None).await.0, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn p5_an_out_of_bounds_pointer_in_the_answer_is_refused() {
    let (h, alice) = on_send("badptr", &[], "", "", "").await;
    let (status, body) = send(&h, &alice, "hi").await;
    assert_policy_unavailable(status, &body);
    assert_eq!(failures(&h, "badptr", "invalid_output", "closed").await, 1.0);
    assert_eq!(sent_messages(&h), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn p6_a_huge_answer_is_capped() {
    // Fail closed (default for on-request): the 1 MiB answer is refused.
    let (h, alice) = on_send("bigout", &[], "", "", "").await;
    let (status, body) = send(&h, &alice, "hi").await;
    assert_policy_unavailable(status, &body);
    assert_eq!(failures(&h, "bigout", "invalid_output", "closed").await, 1.0);
    h.shutdown().await;
    // Fail open: both oversized answers are skipped; the route's own answer goes out unmodified.
    let (h, alice) = on_send("bigout", &[], "", "failure = \"open\"", "").await;
    let (status, body) = send(&h, &alice, "hi").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["server_msg_id"].as_str().map(str::len), Some(32), "{body}");
    assert_eq!(failures(&h, "bigout", "invalid_output", "open").await, 2.0);
    h.shutdown().await;
}

#[tokio::test]
async fn p7_invalid_verdicts_are_denied() {
    let extra = plugin("badverdict", &["config"], "")
        + &chain("send_text_to_user", "badverdict", "{ mode = \"status200\" }", "")
        + &chain("send_text_to_group", "badverdict", "{ mode = \"badcode\" }", "")
        + &chain("update_profile", "badverdict", "{ mode = \"notjson\" }", "")
        + &chain("get_profile", "badverdict", "{ mode = \"badheader\" }", "");
    let h = gateway(extra).await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let answers = [
        send(&h, &alice, "hi").await,
        call(&h, &alice, "POST", "/v1/messages/group/g1", Some(json!({"text": "hi"}))).await,
        call(&h, &alice, "POST", "/v1/me/profile", Some(json!({"nickname": "A"}))).await,
        call(&h, &alice, "GET", "/v1/me/profile", None).await,
    ];
    for (status, body) in &answers {
        assert_policy_unavailable(*status, body);
    }
    assert_eq!(failures(&h, "badverdict", "invalid_output", "closed").await, 4.0);
    assert!(h.emu.seen().iter().all(|r| r.path != "/msg/send_msg" && r.path != "/user/update_user_info_ex"));
    h.shutdown().await;
}

#[tokio::test]
async fn p8_a_plugin_that_always_traps_fails_each_call_closed() {
    let (h, alice) = on_send("trap", &[], "", "", "").await;
    for _ in 0..3 {
        let (status, body) = send(&h, &alice, "hi").await;
        assert_policy_unavailable(status, &body);
    }
    assert_eq!(failures(&h, "trap", "trap", "closed").await, 3.0);
    assert_eq!(call(&h, &alice, "GET", "/v1/me", None).await.0, 200);
    h.shutdown().await;
}

/// A plugin store whose every operation panics (a bug in a host function).
struct PanickingKv;

#[async_trait::async_trait]
impl host::plugins::kv::PluginKv for PanickingKv {
    async fn get(&self, _: &str, _: &str) -> Result<Option<Vec<u8>>, host::plugins::kv::KvError> {
        panic!("host bug")
    }
    async fn set(
        &self,
        _: &str,
        _: &str,
        _: Vec<u8>,
        _: Option<Duration>,
        _: host::plugins::kv::Quota,
    ) -> Result<(), host::plugins::kv::KvError> {
        panic!("host bug")
    }
    async fn delete(&self, _: &str, _: &str) -> Result<(), host::plugins::kv::KvError> {
        panic!("host bug")
    }
    async fn increment(
        &self,
        _: &str,
        _: &str,
        _: i64,
        _: Option<Duration>,
        _: host::plugins::kv::Quota,
    ) -> Result<i64, host::plugins::kv::KvError> {
        panic!("host bug")
    }
}

#[tokio::test]
async fn p9_a_panicking_host_function_fails_the_request_and_the_process_lives() {
    let h = Harness::start_with(Options {
        extra_toml: plugin("kvuser", &["kv"], "") + &chain("send_text_to_user", "kvuser", "{}", ""),
        plugin_kv: Some(Arc::new(PanickingKv)),
        ..Options::default()
    })
    .await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    for _ in 0..2 {
        let (status, body) = send(&h, &alice, "hi").await;
        assert_policy_unavailable(status, &body);
    }
    assert_eq!(failures(&h, "kvuser", "host_panic", "closed").await, 2.0);
    assert_eq!(call(&h, &alice, "GET", "/v1/me", None).await.0, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn p10_a_blocking_host_call_has_its_own_timeout() {
    let (h, alice) = on_send("slowhost", &["openim"], "host_call_timeout_ms = 100", "", "").await;
    let (status, body) = send(&h, &alice, "hi").await;
    assert_eq!(status, 200, "OpenIM answering: the plugin proceeds: {body}");
    h.emu.set_fault(Fault::Hang);
    let started = Instant::now();
    let (status, body) = send(&h, &alice, "hi").await;
    h.emu.set_fault(Fault::None);
    assert_eq!(
        (status, body["code"].as_str(), body["reason"].as_str()),
        (403, Some("policy_denied"), Some("host_timeout"))
    );
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    h.shutdown().await;
}

#[tokio::test]
async fn p11_oversized_and_slow_to_compile_components_are_refused() {
    let extra = "[plugins]\nmax_component_bytes = 1000\n".to_owned() + &plugin("echo", &[], "");
    let err =
        Harness::try_start_with(Options { extra_toml: extra, ..Options::default() }).await.err().expect("refused");
    assert!(err.contains("larger than plugins.max_component_bytes"), "{err}");
    // 30 000 functions cannot compile within 1 ms.
    let mut text = String::from("(component (core module");
    for i in 0..30_000 {
        text.push_str(&format!(" (func (export \"f{i}\") (result i32) i32.const {i} i32.const 7 i32.mul)"));
    }
    text.push_str("))");
    let dir = std::env::temp_dir().join(format!("imgate-bomb-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bomb = dir.join("bomb.wasm");
    std::fs::write(&bomb, wat::parse_str(&text).expect("valid component")).unwrap();
    let extra = "[plugins]\ncompile_timeout_ms = 1\n".to_owned() + &plugin_at("bomb", &bomb, &[], "");
    let err =
        Harness::try_start_with(Options { extra_toml: extra, ..Options::default() }).await.err().expect("refused");
    assert!(err.contains("compiling took longer"), "{err}");
}

#[tokio::test]
async fn p12_precompiled_artifacts_are_refused() {
    let wasm = std::fs::read(hostile_plugin("echo")).unwrap();
    let engine = wasmtime::Engine::default();
    let cwasm = engine.precompile_component(&wasm).expect("precompiles");
    let dir = std::env::temp_dir().join(format!("imgate-cwasm-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.cwasm");
    std::fs::write(&path, cwasm).unwrap();
    let err = Harness::try_start_with(Options { extra_toml: plugin_at("echo", &path, &[], ""), ..Options::default() })
        .await
        .err()
        .expect("refused");
    assert!(err.contains("precompiled artifacts are refused"), "{err}");
}

#[tokio::test]
async fn p14_imports_not_granted_are_refused_at_load() {
    let err = Harness::try_start_with(Options { extra_toml: plugin("kvuser", &["log"], ""), ..Options::default() })
        .await
        .err()
        .expect("refused");
    assert!(err.contains("imgate:plugin/kv@0.1.0") && err.contains("capability `kv` is not granted"), "{err}");
    let err =
        Harness::try_start_with(Options { extra_toml: plugin("fsuser", &["log", "kv"], ""), ..Options::default() })
            .await
            .err()
            .expect("refused");
    assert!(err.contains("wasi:filesystem") && err.contains("no WASI capability"), "{err}");
}

/// `wasi-stubs` lets a component that imports files, sockets and clocks load (language runtimes
/// import them all), and gives it nothing: the file read fails, so `fsuser` lets the send pass.
#[tokio::test]
async fn p14_wasi_stubs_load_but_open_no_file() {
    let (h, alice) = on_send("fsuser", &["log", "kv", "wasi-stubs"], "", "", "").await;
    let (status, body) = send(&h, &alice, "hi").await;
    assert_eq!(status, 200, "the plugin could not read /etc/passwd: {body}");
    h.shutdown().await;
}

#[tokio::test]
async fn p15_nothing_survives_from_one_call_to_the_next() {
    // Both ways a call gets its instance: instantiated for it, or prepared ahead of it.
    for limits in ["", "prepared_instances = 2"] {
        let h = gateway(plugin("leak", &[], limits) + &chain("send_text_to_user", "leak", "{}", "")).await;
        let (_, alice) = h.session("alice").await;
        let (_, bob) = h.session("bob").await;
        let mut i = 0;
        loop {
            let (who, to) = if i % 2 == 0 { (&alice, "bob") } else { (&bob, "alice") };
            let (status, body) =
                call(&h, who, "POST", &format!("/v1/messages/user/{to}"), Some(json!({"text": "x"}))).await;
            assert_eq!(status, 200, "[{limits}] call {i} saw a previous caller: {body}");
            i += 1;
            let prepared = h.metric("imgate_plugin_prepared_calls_total{plugin=\"leak\"}").await.unwrap_or(0.0);
            // Fresh: six calls. Prepared: until at least four calls ran in prepared instances.
            if (limits.is_empty() && i >= 6) || prepared >= 4.0 {
                assert!(limits.is_empty() || i < 200, "the prepared instances were used");
                break;
            }
            assert!(i < 200, "[{limits}] prepared instances never served a call");
        }
        h.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p17_concurrent_calls_are_bounded_and_the_excess_is_refused_with_503() {
    let extra = "[plugins]\nmax_concurrent_calls = 2\nqueue_timeout_ms = 10\n".to_owned()
        + &plugin("spin", &[], "cpu_ms = 50")
        + &chain("send_text_to_user", "spin", "{}", "");
    let h = gateway(extra).await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let answers: Vec<(u16, Value)> = join_all((0..12).map(|_| send(&h, &alice, "hi"))).await;
    let codes: Vec<&str> =
        answers.iter().map(|(s, b)| if *s == 503 { b["code"].as_str().unwrap_or("") } else { "?" }).collect();
    assert!(codes.iter().all(|c| *c == "overloaded" || *c == "policy_unavailable"), "{codes:?}");
    assert!(codes.contains(&"overloaded") && codes.contains(&"policy_unavailable"), "{codes:?}");
    // Afterwards the slots are free again.
    let (status, body) = send(&h, &alice, "hi").await;
    assert_policy_unavailable(status, &body);
    assert_eq!(call(&h, &alice, "GET", "/v1/me", None).await.0, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn p18_a_plugin_cannot_widen_what_the_core_allows() {
    let extra = plugin("yes", &[], "")
        + &plugin("echo", &[], "")
        + &chain("send_text_to_user", "yes", "{}", "")
        + &chain("kick_from_group", "echo", "{}", "");
    let h = gateway(extra).await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    h.session("carol").await;
    // The plugin adds `send_id`/`user_id` to impersonate someone: the route's allow-list refuses.
    let (status, body) = send(&h, &alice, "hi").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")), "{body}");
    assert_eq!(sent_messages(&h), 0);
    // The plugin proceeds on a kick by a plain member: imgate's own role check still refuses.
    let (status, group) =
        call(&h, &alice, "POST", "/v1/groups", Some(json!({"name": "g", "group_id": "g9", "verification": 2}))).await;
    assert_eq!(status, 200, "{group}");
    let gid = "g9";
    assert_eq!(call(&h, &bob, "POST", &format!("/v1/groups/{gid}/join"), None).await.0, 204);
    let (status, body) =
        call(&h, &bob, "POST", &format!("/v1/groups/{gid}/kick"), Some(json!({"user_ids": ["alice"]}))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    h.shutdown().await;
}

#[tokio::test]
async fn kv_quotas_hold_and_each_request_is_one_call() {
    let (h, alice) = on_send("kvuser", &["kv"], "kv_max_keys = 0", "", "").await;
    let (status, body) = send(&h, &alice, "hi").await;
    assert_eq!((status, body["reason"].as_str()), (409, Some("kv_error")), "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("QuotaExceeded")), "{body}");
    h.shutdown().await;
    let (h, alice) = on_send("kvuser", &["kv"], "", "", "").await;
    assert_eq!(send(&h, &alice, "hi").await.0, 200);
    assert_eq!(
        h.metric("imgate_plugin_calls_total{plugin=\"kvuser\",hook=\"on_request\"}").await,
        Some(1.0),
        "one call per request"
    );
    h.shutdown().await;
}
