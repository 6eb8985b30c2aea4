//! The admin routes against the real emulator: passthrough, user registration, token refresh.

use std::time::Duration;

use e2e::*;
use serde_json::json;

#[tokio::test]
async fn passthrough_reaches_openim_with_the_admin_token_and_answers_in_its_envelope() {
    let h = Harness::start().await;
    let token = h.admin_jwt("openim:call");
    let res = h
        .http
        .post(h.url("/v1/admin/openim/user/get_users_info"))
        .bearer_auth(&token)
        .header("x-request-id", "req-passthrough-1")
        .json(&json!({"userIDs": ["imAdmin"]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "req-passthrough-1");
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["errCode"], 0, "{body}");
    assert_eq!(body["data"]["usersInfo"][0]["userID"], "imAdmin", "{body}");

    let seen = h.emu.seen();
    let call = seen.iter().find(|s| s.path == "/user/get_users_info").expect("the emulator saw the call");
    assert_eq!(call.token_user_id.as_deref(), Some("imAdmin"));
    assert_eq!(call.token_platform_id, Some(10), "admin platform");
    // The OpenIM operationID leads back to the client's request id.
    assert!(
        call.operation_id.as_deref().is_some_and(|o| o.starts_with("req-passthrough-1-")),
        "{:?}",
        call.operation_id
    );
    h.shutdown().await;
}

#[tokio::test]
async fn passthrough_relays_openim_errors_as_openim_sent_them() {
    let h = Harness::start().await;
    let token = h.admin_jwt("openim:call");
    // Registering a user with an empty nickname is OpenIM's ArgsError, in OpenIM's envelope.
    let (status, body) = h
        .post(
            "/v1/admin/openim/user/user_register",
            Some(&token),
            &json!({"users": [{"userID": "x1", "nickname": ""}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["errCode"], 1001, "{body}");
    h.shutdown().await;
}

#[tokio::test]
async fn passthrough_never_hands_out_openim_tokens_and_checks_its_input() {
    let h = Harness::start().await;
    let token = h.admin_jwt("openim:call");
    for path in ["auth/get_admin_token", "auth/get_user_token"] {
        let (status, body) = h.post(&format!("/v1/admin/openim/{path}"), Some(&token), &json!({})).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{path}: {body}");
    }
    let (status, body) = h.post("/v1/admin/openim/User/get_users_info", Some(&token), &json!({})).await;
    assert_eq!(status, 400, "{body}");
    let res = h
        .http
        .post(h.url("/v1/admin/openim/user/get_users_info"))
        .bearer_auth(&token)
        .body("not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 400);
    // No token was minted for anyone by these attempts.
    assert!(!h.emu.seen().iter().any(|s| s.path == "/auth/get_user_token"));
    let (status, _) =
        h.post("/v1/admin/openim/user/get_users_info", Some(&h.admin_jwt("imgate:admin")), &json!({})).await;
    assert_eq!(status, 403, "passthrough needs openim:call");
    h.shutdown().await;
}

#[tokio::test]
async fn admin_token_is_refreshed_after_openim_supersedes_it() {
    let mut opts = Options::default();
    // Superseded admin tokens die at once instead of after OpenIM's 5-minute grace.
    opts.emu.admin_token_grace = Duration::ZERO;
    let secret = opts.emu.secret.clone();
    let h = Harness::start_with(opts).await;
    let token = h.admin_jwt("openim:call");
    let body = json!({"userIDs": ["imAdmin"]});
    let (status, first) = h.post("/v1/admin/openim/user/get_users_info", Some(&token), &body).await;
    assert_eq!((status, first["errCode"].as_i64()), (200, Some(0)), "{first}");

    // Another OpenIM client (say a second gateway instance) fetches an admin token: ours dies.
    let other = h.openim_direct("/auth/get_admin_token", None, &json!({"secret": secret, "userID": "imAdmin"})).await;
    assert_eq!(other["errCode"], 0, "{other}");

    let (status, second) = h.post("/v1/admin/openim/user/get_users_info", Some(&token), &body).await;
    assert_eq!((status, second["errCode"].as_i64()), (200, Some(0)), "the client recovered: {second}");
    let seen = h.emu.seen();
    assert!(
        seen.iter().any(|s| s.path == "/user/get_users_info" && s.err_code == 1507),
        "the stale token was really refused by the emulator"
    );
    let fetches = seen.iter().filter(|s| s.path == "/auth/get_admin_token").count();
    assert_eq!(fetches, 3, "gateway fetched once at first use, once after 1507; the test once");
    h.shutdown().await;
}

#[tokio::test]
async fn register_users_creates_them_in_openim_and_refuses_duplicates() {
    let h = Harness::start().await;
    let token = h.admin_jwt("users:write");
    let body = json!({"users": [{"user_id": "alice", "nickname": "Alice"}, {"user_id": "bob", "nickname": "Bob"}]});
    let (status, res) = h.post("/v1/admin/users", Some(&token), &body).await;
    assert_eq!(status, 201, "{res}");
    assert_eq!(res["registered"], json!(["alice", "bob"]));

    let passthrough = h.admin_jwt("openim:call");
    let (_, info) =
        h.post("/v1/admin/openim/user/get_users_info", Some(&passthrough), &json!({"userIDs": ["alice", "bob"]})).await;
    assert_eq!(info["data"]["usersInfo"].as_array().map(Vec::len), Some(2), "{info}");

    let (status, res) = h.post("/v1/admin/users", Some(&token), &body).await;
    assert_eq!((status, res["code"].as_str()), (409, Some("conflict")), "{res}");

    for bad in [
        json!({"users": [{"user_id": "a b", "nickname": "x"}]}),
        json!({"users": [{"user_id": "ok", "nickname": ""}]}),
        json!({"users": [{"user_id": "ok", "nickname": "x", "appMangerLevel": 2}]}),
        json!({"users": []}),
        json!({"users": [{"user_id": "dup", "nickname": "x"}, {"user_id": "dup", "nickname": "y"}]}),
    ] {
        let (status, res) = h.post("/v1/admin/users", Some(&token), &bad).await;
        assert_eq!((status, res["code"].as_str()), (400, Some("bad_request")), "{bad}: {res}");
    }
    h.shutdown().await;
}
