//! The default `/v1` API through the real gateway and emulator: identity binding (attacks.md B5
//! A1–A8) and each OpenIM hole of contract §10 — shown open on the emulator directly, closed
//! through imgate.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use e2e::*;
use imgate_client::Session;
use serde_json::{json, Value};

async fn call(h: &Harness, s: &Session, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes());
    into_json(h.client().call(s, method, path, bytes.as_deref()).await.expect("answer")).await
}

async fn call_raw(h: &Harness, s: &Session, method: &str, path: &str, body: &str) -> (u16, Value) {
    into_json(h.client().call(s, method, path, Some(body.as_bytes())).await.expect("answer")).await
}

/// An OpenIM user token minted directly (platform 5, so the gateway's own tokens stay valid).
async fn direct_token(h: &Harness, user: &str) -> String {
    let admin =
        h.openim_direct("/auth/get_admin_token", None, &json!({"secret": "openIM123", "userID": "imAdmin"})).await;
    let admin = admin["data"]["token"].as_str().expect("admin token").to_owned();
    let t = h.openim_direct("/auth/get_user_token", Some(&admin), &json!({"userID": user, "platformID": 5})).await;
    t["data"]["token"].as_str().expect("user token").to_owned()
}

async fn members(h: &Harness, group: &str) -> Vec<String> {
    let admin =
        h.openim_direct("/auth/get_admin_token", None, &json!({"secret": "openIM123", "userID": "imAdmin"})).await;
    let admin = admin["data"]["token"].as_str().expect("admin token").to_owned();
    let r = h
        .openim_direct(
            "/group/get_group_member_list",
            Some(&admin),
            &json!({"groupID": group, "pagination": {"pageNumber": 1, "showNumber": 100}, "filter": 0}),
        )
        .await;
    r["data"]["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|x| x["userID"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_message_is_sent_and_pulled_through_v1() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    let (status, sent) = call(&h, &alice, "POST", "/v1/messages/user/bob", Some(json!({"text": "hi bob"}))).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["server_msg_id"].as_str().map(str::len), Some(32));
    let (status, hist) = call(&h, &bob, "GET", "/v1/conversations/user/alice/messages?from=1&to=10", None).await;
    assert_eq!(status, 200, "{hist}");
    let msg = &hist["messages"][0];
    assert_eq!(msg["send_id"], "alice");
    assert_eq!(msg["seq"], 1);
    let content = B64.decode(msg["content"].as_str().expect("base64")).expect("b64");
    assert_eq!(serde_json::from_slice::<Value>(&content).expect("json"), json!({"content": "hi bob"}));
    // The sender bound by imgate is the caller, with the caller's platform.
    let seen = h.emu.seen();
    let send = seen.iter().find(|r| r.path == "/msg/send_msg").expect("sent");
    assert_eq!(send.token_platform_id, Some(10), "send_msg is admin-only in OpenIM");
    let (status, convs) = call(&h, &bob, "GET", "/v1/conversations", None).await;
    assert_eq!(status, 200);
    assert!(
        convs["conversations"].as_array().is_some_and(|c| c.iter().any(|x| x["conversation_id"] == "si_alice_bob")),
        "{convs}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn identity_fields_extra_fields_and_duplicate_keys_are_refused() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    // A1: naming a sender is not possible at all.
    let (status, body) =
        call(&h, &alice, "POST", "/v1/messages/user/bob", Some(json!({"text": "x", "sendID": "bob"}))).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")), "{body}");
    // A5: extra fields (platform, times, ids, levels) are refused by the allow-list.
    for extra in [
        json!({"platformID": 10}),
        json!({"sendTime": 1}),
        json!({"serverMsgID": "x"}),
        json!({"contentType": 1400}),
        json!({"sessionType": 4}),
    ] {
        let mut b = json!({"text": "x"});
        b.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        let (status, _) = call(&h, &alice, "POST", "/v1/messages/user/bob", Some(b.clone())).await;
        assert_eq!(status, 400, "{b}");
    }
    // A6: duplicate keys.
    let (status, body) = call_raw(&h, &alice, "POST", "/v1/messages/user/bob", r#"{"text":"a","text":"b"}"#).await;
    assert_eq!(status, 400, "{body}");
    // Wrong types and missing fields.
    assert_eq!(call(&h, &alice, "POST", "/v1/messages/user/bob", Some(json!({"text": 5}))).await.0, 400);
    assert_eq!(call(&h, &alice, "POST", "/v1/messages/user/bob", Some(json!({}))).await.0, 400);
    // A7: ids with spaces, NUL, other scripts or 10 kB are refused before OpenIM.
    for peer in ["bob%20", "bob%00", "%D0%B1ob", &"b".repeat(10_000)] {
        let (status, _) =
            call(&h, &alice, "POST", &format!("/v1/messages/user/{peer}"), Some(json!({"text": "x"}))).await;
        assert!(status == 400 || status == 431, "{peer:.20}: {status}");
    }
    assert_eq!(h.emu.seen().iter().filter(|r| r.path == "/msg/send_msg").count(), 0, "nothing reached OpenIM");
    h.shutdown().await;
}

#[tokio::test]
async fn hole_1_join_group_for_someone_else() {
    let h = Harness::start().await;
    let (_, owner) = h.session("owner").await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let (status, g) =
        call(&h, &owner, "POST", "/v1/groups", Some(json!({"name": "open", "group_id": "g1", "verification": 2})))
            .await;
    assert_eq!(status, 200, "{g}");
    // Open on OpenIM: alice's own token puts bob into the group.
    let alice_tok = direct_token(&h, "alice").await;
    let r = h
        .openim_direct(
            "/group/join_group",
            Some(&alice_tok),
            &json!({"groupID": "g1", "inviterUserID": "bob", "joinSource": 3}),
        )
        .await;
    assert_eq!(r["errCode"], 0, "{r}");
    assert!(members(&h, "g1").await.contains(&"bob".to_owned()), "OpenIM let alice join bob");
    // Closed through imgate: the joining user is always the caller; naming another is a 400.
    let (status, _) = call(&h, &alice, "POST", "/v1/groups/g1/join", Some(json!({"inviterUserID": "carol"}))).await;
    assert_eq!(status, 400);
    let (status, body) = call(&h, &alice, "POST", "/v1/groups/g1/join", Some(json!({"message": "hi"}))).await;
    assert_eq!(status, 204, "{body}");
    let m = members(&h, "g1").await;
    assert!(m.contains(&"alice".to_owned()) && !m.contains(&"carol".to_owned()), "{m:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn hole_2_adding_users_without_consent() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    h.session("carol").await;
    // Open on OpenIM: create_group with carol as a member, without carol's consent.
    let alice_tok = direct_token(&h, "alice").await;
    let r = h
        .openim_direct("/group/create_group", Some(&alice_tok), &json!({"ownerUserID": "alice", "memberUserIDs": ["carol"], "groupInfo": {"groupID": "g2", "groupName": "x", "groupType": 2}}))
        .await;
    assert_eq!(r["errCode"], 0, "{r}");
    assert!(members(&h, "g2").await.contains(&"carol".to_owned()));
    // Closed: /v1 group creation takes no members; only owners/admins may invite.
    let (status, _) = call(&h, &alice, "POST", "/v1/groups", Some(json!({"name": "y", "members": ["carol"]}))).await;
    assert_eq!(status, 400);
    let (status, _) =
        call(&h, &alice, "POST", "/v1/groups", Some(json!({"name": "y", "group_id": "g3", "verification": 2}))).await;
    assert_eq!(status, 200);
    assert_eq!(call(&h, &bob, "POST", "/v1/groups/g3/join", None).await.0, 204);
    let (status, body) = call(&h, &bob, "POST", "/v1/groups/g3/invite", Some(json!({"user_ids": ["carol"]}))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "an ordinary member cannot add people: {body}"
    );
    assert!(!members(&h, "g3").await.contains(&"carol".to_owned()));
    h.shutdown().await;
}

#[tokio::test]
async fn hole_3_silencing_another_users_inbox() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    // Open on OpenIM: alice sets bob's global receive option; sends to bob then fail.
    let alice_tok = direct_token(&h, "alice").await;
    let r = h
        .openim_direct(
            "/user/set_global_msg_recv_opt",
            Some(&alice_tok),
            &json!({"userID": "bob", "globalRecvMsgOpt": 1}),
        )
        .await;
    assert_eq!(r["errCode"], 0);
    let (status, _) = call(&h, &alice, "POST", "/v1/messages/user/bob", Some(json!({"text": "x"}))).await;
    assert_ne!(status, 200, "bob was silenced by alice");
    // Closed: the /v1 route only ever sets the caller's own option.
    assert_eq!(
        call(&h, &alice, "POST", "/v1/me/receive-option", Some(json!({"option": 1, "userID": "bob"}))).await.0,
        400
    );
    assert_eq!(call(&h, &bob, "POST", "/v1/me/receive-option", Some(json!({"option": 0}))).await.0, 204);
    assert_eq!(call(&h, &alice, "POST", "/v1/me/receive-option", Some(json!({"option": 1}))).await.0, 204);
    let (_, alice_profile) = call(&h, &alice, "GET", "/v1/me/profile", None).await;
    let (_, bob_profile) = call(&h, &bob, "GET", "/v1/me/profile", None).await;
    assert_eq!(
        (alice_profile["global_recv_msg_opt"].as_i64(), bob_profile["global_recv_msg_opt"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(call(&h, &alice, "POST", "/v1/messages/user/bob", Some(json!({"text": "back"}))).await.0, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn hole_4_and_7_search_and_unbound_routes_do_not_exist_on_v1() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    h.session("carol").await;
    assert_eq!(call(&h, &bob, "POST", "/v1/messages/user/carol", Some(json!({"text": "private"}))).await.0, 200);
    // Open on OpenIM: alice searches everyone's messages, bob's to carol included.
    let alice_tok = direct_token(&h, "alice").await;
    let r = h
        .openim_direct(
            "/msg/search_msg",
            Some(&alice_tok),
            &json!({"sendID": "bob", "recvID": "carol", "pagination": {"pageNumber": 1, "showNumber": 10}}),
        )
        .await;
    assert!(r["data"]["chatLogsNum"].as_i64().unwrap_or(0) >= 1, "{r}");
    // Closed: no search, push-token or object route on /v1; the passthrough needs an admin JWT.
    for path in ["/v1/messages/search", "/v1/search", "/v1/third/fcm_update_token", "/v1/admin/openim/msg/search_msg"] {
        let (status, _) = call(&h, &alice, "POST", path, Some(json!({}))).await;
        assert!(status == 404 || status == 401 || status == 405, "{path}: {status}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn hole_5_and_6_other_peoples_history_groups_and_directory_data() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    let (_, mallory) = h.session("mallory").await;
    assert_eq!(call(&h, &alice, "POST", "/v1/messages/user/bob", Some(json!({"text": "secret"}))).await.0, 200);
    assert_eq!(call(&h, &alice, "POST", "/v1/groups", Some(json!({"name": "club", "group_id": "club"}))).await.0, 200);
    assert_eq!(call(&h, &alice, "POST", "/v1/messages/group/club", Some(json!({"text": "members only"}))).await.0, 200);
    // History: mallory can only name conversations she is part of.
    let (status, hist) = call(&h, &mallory, "GET", "/v1/conversations/user/bob/messages?from=1&to=10", None).await;
    assert_eq!(status, 200);
    assert_eq!(hist["messages"].as_array().map(Vec::len).unwrap_or(0), 0, "si_bob_mallory is empty: {hist}");
    for path in ["/v1/conversations/group/club/messages?from=1&to=10", "/v1/groups/club", "/v1/groups/club/members"] {
        let (status, body) = call(&h, &mallory, "GET", path, None).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{path}: {body}");
    }
    assert_eq!(
        call(&h, &mallory, "POST", "/v1/messages/group/club", Some(json!({"text": "spam"}))).await.0,
        403,
        "non-members cannot post"
    );
    // Open on OpenIM: get_groups_info for a group mallory is not in, and full user records.
    let tok = direct_token(&h, "mallory").await;
    let r = h.openim_direct("/group/get_groups_info", Some(&tok), &json!({"groupIDs": ["club"]})).await;
    assert_eq!(r["data"]["groupInfos"][0]["groupID"], "club");
    let r = h.openim_direct("/user/get_users_info", Some(&tok), &json!({"userIDs": ["alice"]})).await;
    assert!(r["data"]["usersInfo"][0].get("appMangerLevel").is_some());
    // Closed: lookups return public fields only.
    let (status, users) = call(&h, &mallory, "POST", "/v1/users/lookup", Some(json!({"user_ids": ["alice"]}))).await;
    assert_eq!(status, 200);
    let keys: Vec<&String> = users["users"][0].as_object().expect("user").keys().collect();
    assert_eq!(keys, vec!["face_url", "nickname", "user_id"], "{users}");
    // Bob, a party to the conversation, does see it.
    let (_, hist) = call(&h, &bob, "GET", "/v1/conversations/user/alice/messages?from=1&to=10", None).await;
    assert_eq!(hist["messages"].as_array().map(Vec::len), Some(1));
    h.shutdown().await;
}

#[tokio::test]
async fn a3_kick_and_mute_need_a_group_role() {
    let h = Harness::start().await;
    let (_, owner) = h.session("owner").await;
    let (_, bob) = h.session("bob").await;
    let (_, carol) = h.session("carol").await;
    assert_eq!(
        call(&h, &owner, "POST", "/v1/groups", Some(json!({"name": "g", "group_id": "g9", "verification": 2}))).await.0,
        200
    );
    assert_eq!(call(&h, &bob, "POST", "/v1/groups/g9/join", None).await.0, 204);
    assert_eq!(call(&h, &carol, "POST", "/v1/groups/g9/join", None).await.0, 204);
    let (status, _) = call(&h, &bob, "POST", "/v1/groups/g9/kick", Some(json!({"user_ids": ["carol"]}))).await;
    assert_eq!(status, 403);
    let (status, _) = call(&h, &bob, "POST", "/v1/groups/g9/members/carol/mute", Some(json!({"seconds": 60}))).await;
    assert_eq!(status, 403);
    // carol's membership is now checked (and cached) by a group read.
    assert_eq!(call(&h, &carol, "GET", "/v1/groups/g9", None).await.0, 200);
    // The owner may.
    assert_eq!(call(&h, &owner, "POST", "/v1/groups/g9/members/carol/mute", Some(json!({"seconds": 60}))).await.0, 204);
    assert_eq!(call(&h, &owner, "POST", "/v1/groups/g9/kick", Some(json!({"user_ids": ["carol"]}))).await.0, 204);
    assert!(!members(&h, "g9").await.contains(&"carol".to_owned()));
    // The kick went through imgate, so the cached role is gone: carol is refused at once.
    let (status, body) = call(&h, &carol, "GET", "/v1/groups/g9", None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    h.shutdown().await;
}

#[tokio::test]
async fn a4_user_sessions_never_reach_admin_operations() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    for path in [
        "/v1/admin/openim/auth/get_admin_token",
        "/v1/admin/openim/user/user_register",
        "/v1/admin/openim/auth/force_logout",
        "/v1/admin/users",
    ] {
        let (status, _) = call(&h, &alice, "POST", path, Some(json!({}))).await;
        assert_eq!(status, 401, "{path}: a signed user request is not an admin JWT");
    }
    assert!(!h
        .emu
        .seen()
        .iter()
        .any(|r| r.path == "/user/user_register" && r.token_user_id.as_deref() == Some("alice")));
    h.shutdown().await;
}

#[tokio::test]
async fn friends_round_trip() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    assert_eq!(
        call(&h, &alice, "POST", "/v1/friends/requests", Some(json!({"to": "bob", "message": "hello"}))).await.0,
        204
    );
    let (status, reqs) = call(&h, &bob, "GET", "/v1/friends/requests", None).await;
    assert_eq!(status, 200);
    assert_eq!(reqs["requests"][0]["from"], "alice", "{reqs}");
    assert_eq!(call(&h, &bob, "POST", "/v1/friends/requests/alice/accept", None).await.0, 204);
    let (_, friends) = call(&h, &alice, "GET", "/v1/friends", None).await;
    assert_eq!(friends["friends"][0]["user_id"], "bob", "{friends}");
    assert_eq!(call(&h, &alice, "DELETE", "/v1/friends/bob", None).await.0, 204);
    let (_, friends) = call(&h, &alice, "GET", "/v1/friends", None).await;
    assert_eq!(friends["friends"].as_array().map(Vec::len), Some(0), "{friends}");
    h.shutdown().await;
}
