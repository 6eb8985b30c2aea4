//! Issue 10, item 6: OpenIM's privileged accounts never become imgate users.
//!
//! imgate sends a session's messages with OpenIM's admin token and `sendID` = the session's user,
//! and OpenIM exempts its admin ids and its app managers (`appMangerLevel` ≥ 2: system,
//! notification and robot accounts) from the friend and blacklist checks (contract §5.7). So no
//! device, session or bearer token may exist for them unless `[openim.privileged]
//! allow_user_ids` names them. Each test drives the real gateway in front of the emulator; the
//! privileged accounts are made inside OpenIM directly, as OpenIM's own tools would, and devices
//! or sessions that predate the rule are planted in the gateway's store.

use e2e::*;
use host::store::{Device, Session};
use imgate_client::{ClientError, DeviceKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// An OpenIM admin token, fetched from the emulator directly (not through imgate).
async fn openim_admin_token(h: &Harness) -> String {
    let direct =
        h.openim_direct("/auth/get_admin_token", None, &json!({"secret": "openIM123", "userID": "imAdmin"})).await;
    direct["data"]["token"].as_str().expect("admin token").to_owned()
}

/// Registers users inside OpenIM with the given `appMangerLevel`s, as OpenIM's tools could.
async fn register_in_openim(h: &Harness, users: &[(&str, i32)]) {
    let token = openim_admin_token(h).await;
    let users: Vec<Value> =
        users.iter().map(|(id, level)| json!({"userID": id, "nickname": id, "appMangerLevel": level})).collect();
    let answer = h.openim_direct("/user/user_register", Some(&token), &json!({ "users": users })).await;
    assert_eq!(answer["errCode"], 0, "{answer}");
}

async fn enroll(h: &Harness, user_id: &str, key: &DeviceKey) -> (u16, Value) {
    let admin = h.admin_jwt("devices:write");
    into_json(h.client().enroll(&admin, user_id, "phone", 1, &key.public_b64()).await.expect("answer")).await
}

/// A device as an older imgate (or an older config) would have stored it.
async fn plant_device(h: &Harness, user_id: &str) -> DeviceKey {
    let key = DeviceKey::generate();
    let device = Device {
        user_id: user_id.into(),
        device_id: "phone".into(),
        platform_id: 1,
        public_key: key.public(),
        tier: String::new(),
        created_at_ms: host::auth::now_ms(),
    };
    h.state.store.enroll_device(device).await.expect("store").expect("planted");
    key
}

fn audit_records(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect()
}

fn count(h: &Harness, path: &str) -> usize {
    h.emu.seen().iter().filter(|s| s.path == path).count()
}

/// Enrollment is refused with 403 `forbidden` for an admin id (configured, whatever its level
/// in OpenIM) and for app managers of levels 2, 3 and 4; nothing is stored. Ordinary users
/// (levels 0 and 1) still enroll, and registering an admin id is a clear 403 too.
#[tokio::test]
async fn privileged_accounts_cannot_be_enrolled_or_registered() {
    let h = Harness::start_with(Options {
        extra_toml: "[openim.privileged]\nother_admin_user_ids = [\"ops_admin\"]\n".into(),
        ..Options::default()
    })
    .await;
    // `ops_admin` is an ordinary user as far as its level goes: only the config makes it an admin id.
    register_in_openim(&h, &[("ops_admin", 0), ("sys2", 2), ("notify3", 3), ("robot4", 4), ("plain1", 1)]).await;

    for user in ["imAdmin", "ops_admin", "sys2", "notify3", "robot4"] {
        let key = DeviceKey::generate();
        let (status, body) = enroll(&h, user, &key).await;
        assert_eq!(status, 403, "{user}: {body}");
        assert_eq!(body["code"], "forbidden", "{user}: {body}");
        let message = body["message"].as_str().expect("message");
        assert!(message.contains("privileged account in OpenIM") && message.contains(user), "{message}");
        assert!(h.state.store.list_devices(user).await.expect("store").is_empty(), "{user}: a device was stored");
        assert!(
            h.state.store.device_by_key(&key.public()).await.expect("store").is_none(),
            "{user}: the key was stored"
        );
    }
    let (status, body) = enroll(&h, "plain1", &DeviceKey::generate()).await;
    assert_eq!(status, 201, "appMangerLevel 1 is an ordinary user: {body}");
    h.user_with_device("alice", "phone", 1).await;

    // Registration: an admin id is refused before OpenIM is asked, and nothing of the batch is made.
    let admin = h.admin_jwt("users:write");
    let registers = count(&h, "/user/user_register");
    for id in ["imAdmin", "ops_admin"] {
        let batch = json!({"users": [{"user_id": "carol", "nickname": "Carol"}, {"user_id": id, "nickname": "x"}]});
        let (status, body) = h.post("/v1/admin/users", Some(&admin), &batch).await;
        assert_eq!(status, 403, "{id}: {body}");
        assert_eq!(body["code"], "forbidden", "{body}");
        assert!(body["message"].as_str().is_some_and(|m| m.contains("admin id of OpenIM")), "{body}");
    }
    assert_eq!(count(&h, "/user/user_register"), registers, "a refused batch reached OpenIM");

    let recs = audit_records(&std::fs::read_to_string(h.audit_file().await).expect("audit file"));
    let reasons: Vec<&str> = recs.iter().filter_map(|r| r["reason"].as_str()).collect();
    for needle in [
        "device enrollment refused: imAdmin is an OpenIM admin account",
        "device enrollment refused: ops_admin is an OpenIM admin account",
        "device enrollment refused: sys2 is an OpenIM app manager (appMangerLevel 2",
        "device enrollment refused: notify3 is an OpenIM notification account",
        "device enrollment refused: robot4 is an OpenIM robot account",
        "register refused: imAdmin is an OpenIM admin id",
    ] {
        assert!(reasons.iter().any(|r| r.contains(needle)), "{needle} not in {reasons:?}");
    }
    h.shutdown().await;
}

/// With the config naming them, an admin id and an app manager enroll, hand-shake and get a
/// bearer token like anyone else.
#[tokio::test]
async fn accounts_the_config_allows_work() {
    let h = Harness::start_with(Options {
        extra_toml: "[openim.privileged]\nallow_user_ids = [\"imAdmin\", \"sys2\"]\n".into(),
        ..Options::default()
    })
    .await;
    register_in_openim(&h, &[("sys2", 2)]).await;
    for user in ["imAdmin", "sys2"] {
        let key = DeviceKey::generate();
        let (status, body) = enroll(&h, user, &key).await;
        assert_eq!(status, 201, "{user}: {body}");
        let session = h.client().handshake(&key, &h.gateway_public(), "phone").await.expect("handshake");
        assert_eq!(session.user_id, user);
        let (status, tok) =
            into_json(h.client().call(&session, "POST", "/v1/auth/token", None).await.expect("answer")).await;
        assert_eq!(status, 200, "{user}: {tok}");
        assert!(tok["token"].as_str().is_some_and(|t| t.len() == 43), "{tok}");
    }
    h.shutdown().await;
}

/// Devices enrolled before this rule (or before a config change): the handshake is the generic
/// 401, the audit record says why, and no session exists afterwards. An admin id is refused on
/// the config alone; an app manager after one `get_users_info`, reused by the next handshake.
/// Nothing reaches OpenIM's `send_msg` but an ordinary user's own message.
#[tokio::test]
async fn devices_from_before_the_rule_get_no_session_and_never_send() {
    let h = Harness::start().await;
    register_in_openim(&h, &[("sys2", 2)]).await;
    let admin_key = plant_device(&h, "imAdmin").await;
    let app_key = plant_device(&h, "sys2").await;

    let lookups = count(&h, "/user/get_users_info");
    let refused = h.client().handshake(&admin_key, &h.gateway_public(), "phone").await;
    let Err(ClientError::Status(401, body)) = refused else { panic!("imAdmin hand-shook: {refused:?}") };
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["code"], "unauthenticated", "{body}");
    assert_eq!(count(&h, "/user/get_users_info"), lookups, "an admin id needs no OpenIM call");

    for attempt in 0..2 {
        let refused = h.client().handshake(&app_key, &h.gateway_public(), "phone").await;
        let Err(ClientError::Status(401, body)) = refused else { panic!("sys2 hand-shook: {refused:?}") };
        assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["code"], "unauthenticated", "{body}");
        // The level is read once, then reused (openim.privileged.level_cache_ms, 60 s by default).
        assert_eq!(count(&h, "/user/get_users_info"), lookups + 1, "attempt {attempt}");
    }
    assert!(
        h.state.store.revoke_sessions_of("imAdmin", None).await.expect("store").is_empty(),
        "an imAdmin session exists"
    );
    assert!(h.state.store.revoke_sessions_of("sys2", None).await.expect("store").is_empty(), "a sys2 session exists");

    let recs = audit_records(&std::fs::read_to_string(h.audit_file().await).expect("audit file"));
    let refusals: Vec<&str> = recs.iter().filter(|r| r["status"] == 401).filter_map(|r| r["reason"].as_str()).collect();
    assert!(refusals.iter().any(|r| r.contains("handshake refused") && r.contains("OpenIM admin id")), "{refusals:?}");
    assert!(
        refusals.iter().any(|r| r.contains("handshake refused") && r.contains("appMangerLevel >= 2")),
        "{refusals:?}"
    );

    // The only send_msg OpenIM ever sees is alice's own, from her request.
    assert_eq!(count(&h, "/msg/send_msg"), 0);
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let res = h
        .client()
        .call(&alice, "POST", "/v1/messages/user/bob", Some(json!({"text": "hi"}).to_string().as_bytes()))
        .await
        .expect("answer");
    assert_eq!(res.status(), 200);
    let rid = res.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let sends: Vec<_> = h.emu.seen().into_iter().filter(|s| s.path == "/msg/send_msg").collect();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert!(sends[0].operation_id.as_ref().is_some_and(|o| o.starts_with(&format!("{rid}-"))), "{sends:?}");
    h.shutdown().await;
}

/// A session (and bearer token) of an admin id that predates the rule: the token no longer opens
/// the OpenIM-compatible surface, and asking for a new one ends the session with the generic 401.
#[tokio::test]
async fn a_session_from_before_the_rule_gets_no_token() {
    let h = Harness::start().await;
    let now = host::auth::now_ms();
    let session = Session {
        session_id: "plantedAdminSession00001".into(),
        session_key: [7u8; 32],
        user_id: "imAdmin".into(),
        device_id: "phone".into(),
        platform_id: 1,
        tier: String::new(),
        created_at_ms: now,
        expires_at_ms: now + 3_600_000,
        last_used_ms: now,
    };
    h.state.store.put_session(session.clone()).await.expect("store");
    let token = "A".repeat(43);
    h.state
        .store
        .put_token(Sha256::digest(token.as_bytes()).into(), &session.session_id, now + 600_000)
        .await
        .expect("store");

    let compat = h
        .http
        .post(h.url("/openim/user/get_users_info"))
        .header("operationID", "t-1")
        .header("token", &token)
        .json(&json!({"userIDs": ["imAdmin"]}))
        .send()
        .await
        .expect("answer");
    let (_, envelope) = into_json(compat).await;
    assert_eq!(envelope["errCode"], 1505, "{envelope}");

    let client_session = imgate_client::Session {
        session_id: session.session_id.clone(),
        session_key: session.session_key,
        user_id: session.user_id.clone(),
        platform_id: 1,
        expires_at: session.expires_at_ms,
    };
    let (status, body) =
        into_json(h.client().call(&client_session, "POST", "/v1/auth/token", None).await.expect("answer")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "unauthenticated", "{body}");
    assert!(h
        .state
        .store
        .live_session(&session.session_id, host::auth::now_ms(), 3_600_000)
        .await
        .expect("store")
        .is_none());
    let recs = audit_records(&std::fs::read_to_string(h.audit_file().await).expect("audit file"));
    assert!(recs.iter().any(|r| r["reason"]
        .as_str()
        .is_some_and(|s| s.contains("session ended: the session's user is a privileged OpenIM account"))));
    h.shutdown().await;
}

/// When OpenIM cannot say whether a user is privileged, no session is made: the client gets
/// OpenIM's 502, not a 401 that would call its (valid) key wrong.
#[tokio::test]
async fn no_session_when_openim_cannot_answer_the_privilege_check() {
    let h = Harness::start_with(Options {
        // No reuse: every handshake asks OpenIM.
        extra_toml: "[openim.privileged]\nlevel_cache_ms = 0\n".into(),
        ..Options::default()
    })
    .await;
    let key = h.user_with_device("alice", "phone", 1).await;
    h.emu.set_fault(Fault::CloseConnection);
    let failed = h.client().handshake(&key, &h.gateway_public(), "phone").await;
    h.emu.set_fault(Fault::None);
    let Err(ClientError::Status(502, body)) = failed else { panic!("expected 502: {failed:?}") };
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["code"], "upstream_unavailable", "{body}");
    assert!(h.state.store.revoke_sessions_of("alice", None).await.expect("store").is_empty(), "a session was made");
    h.client().handshake(&key, &h.gateway_public(), "phone").await.expect("handshake once OpenIM answers");
    h.shutdown().await;
}
