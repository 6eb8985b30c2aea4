//! Plugins on the OpenIM-compatible surface (issue 11): every allow-listed OpenIM operation is a
//! route named `openim.<group>.<operation>` that `[[route_plugins]]` can give a chain, with the
//! same hooks, principal and failure policy as `/v1`; one chain (`routes = [...]`) governs a `/v1`
//! route and its `/openim` twin. The plugin reads the body canonically decoded, so OpenIM's
//! case-insensitive key matching cannot walk around it.

use e2e::plugins::example;
use e2e::*;
use imgate_client::Session;
use serde_json::{json, Value};

/// `content-filter` configured once, for the profile update on both surfaces.
fn one_chain_for_both_surfaces() -> String {
    format!(
        "[[plugin]]\nname = \"content-filter\"\npath = \"{}\"\ncapabilities = [\"config\"]\n\
         [[route_plugins]]\nroutes = [\"update_profile\", \"openim.user.update_user_info_ex\"]\n\
         plugins = [{{ plugin = \"content-filter\", config = {{ words = [\"badword\"], action = \"block\", \
         fields = [\"/nickname\", \"/userInfo/nickname\"] }} }}]\n",
        example("content-filter").display()
    )
}

async fn bearer(h: &Harness, s: &Session) -> String {
    let (status, tok) = into_json(h.client().call(s, "POST", "/v1/auth/token", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{tok}");
    tok["token"].as_str().expect("token").to_owned()
}

async fn openim(h: &Harness, token: &str, path: &str, body: &str) -> (u16, Value) {
    let req = h.http.post(h.url(&format!("/openim{path}"))).header("operationID", "op-1").header("token", token);
    into_json(req.body(body.to_owned()).send().await.expect("answer")).await
}

async fn nickname(h: &Harness, user: &str) -> String {
    let direct =
        h.openim_direct("/auth/get_admin_token", None, &json!({"secret": "openIM123", "userID": "imAdmin"})).await;
    let admin = direct["data"]["token"].as_str().expect("admin token").to_owned();
    let info = h.openim_direct("/user/get_users_info", Some(&admin), &json!({"userIDs": [user]})).await;
    info["data"]["usersInfo"][0]["nickname"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn one_content_plugin_refuses_the_same_nickname_on_both_surfaces() {
    let h = Harness::start_with(Options { extra_toml: one_chain_for_both_surfaces(), ..Options::default() }).await;
    let (_, alice) = h.session("alice").await;
    let tok = bearer(&h, &alice).await;
    let bad = "my BadWord name";
    let body = serde_json::to_vec(&json!({"nickname": bad})).expect("json");
    let (status, answer) =
        into_json(h.client().call(&alice, "POST", "/v1/me/profile", Some(&body)).await.expect("answer")).await;
    assert_eq!((status, answer["reason"].as_str()), (422, Some("content_blocked")), "/v1: {answer}");
    for compat in [
        json!({"userInfo": {"nickname": bad}}).to_string(),
        // OpenIM reads these keys as userInfo.nickname too: so does the plugin.
        json!({"UserInfo": {"NICKNAME": bad}}).to_string(),
        "{\"u\u{017F}erInfo\":{\"nickname\":\"badword\"}}".to_owned(),
    ] {
        let (status, answer) = openim(&h, &tok, "/user/update_user_info_ex", &compat).await;
        assert_eq!((status, answer["errCode"].as_i64()), (200, Some(1002)), "{compat}: {answer}");
        assert!(answer["errDlt"].as_str().is_some_and(|d| d.contains("content_blocked")), "{answer}");
    }
    assert_eq!(nickname(&h, "alice").await, "alice", "no bad nickname reached OpenIM");
    // A clean nickname passes both.
    let (status, _) = openim(&h, &tok, "/user/update_user_info_ex", r#"{"userInfo":{"nickname":"Alice A"}}"#).await;
    assert_eq!(status, 200);
    assert_eq!(nickname(&h, "alice").await, "Alice A");
    let body = serde_json::to_vec(&json!({"nickname": "Alice B"})).expect("json");
    let res = h.client().call(&alice, "POST", "/v1/me/profile", Some(&body)).await.expect("answer");
    assert_eq!(res.status(), 204);
    assert_eq!(nickname(&h, "alice").await, "Alice B");
    // The audit trail records the compat refusal as refused.
    let audit = std::fs::read_to_string(h.audit_file().await).expect("audit");
    assert!(audit.lines().any(|l| l.contains("/openim/user/update_user_info_ex") && l.contains("\"refused\"")));
    h.shutdown().await;
}

#[tokio::test]
async fn compat_route_names_are_checked_at_start() {
    let bad = "[[route_plugins]]\nroutes = [\"openim.msg.search_msg\"]\nplugins = []\n".to_owned();
    let err = Harness::try_start_with(Options { extra_toml: bad, ..Options::default() }).await.err().expect("refused");
    assert!(err.contains("openim.msg.search_msg"), "{err}");
    let both = "[[route_plugins]]\nroute = \"me\"\nroutes = [\"auth.token\"]\nplugins = []\n".to_owned();
    let err = Harness::try_start_with(Options { extra_toml: both, ..Options::default() }).await.err().expect("refused");
    assert!(err.contains("either `route` or"), "{err}");
}
