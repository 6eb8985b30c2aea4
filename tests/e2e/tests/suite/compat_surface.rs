//! The OpenIM-compatible surface (client-auth §6): OpenIM's headers, body and envelope, a bearer
//! token from §5, an allow-list (others: errCode 1002), identity fields bound to the caller.

use e2e::*;
use imgate_client::Session;
use serde_json::Value;

async fn bearer(h: &Harness, s: &Session) -> String {
    let (status, tok) = into_json(h.client().call(s, "POST", "/v1/auth/token", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{tok}");
    tok["token"].as_str().expect("token").to_owned()
}

async fn openim(h: &Harness, token: Option<&str>, path: &str, body: &str) -> (u16, Value) {
    let mut req = h.http.post(h.url(&format!("/openim{path}"))).header("operationID", "sdk-op-1").body(body.to_owned());
    if let Some(t) = token {
        req = req.header("token", t);
    }
    into_json(req.send().await.expect("answer")).await
}

#[tokio::test]
async fn served_routes_answer_in_openims_envelope_with_the_callers_token() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let tok = bearer(&h, &alice).await;
    let (status, body) = openim(&h, Some(&tok), "/user/get_users_info", r#"{"userIDs":["alice"]}"#).await;
    assert_eq!((status, body["errCode"].as_i64()), (200, Some(0)), "{body}");
    assert_eq!(body["data"]["usersInfo"][0]["userID"], "alice");
    // Identity fields left out are filled in with the caller.
    let (_, body) = openim(&h, Some(&tok), "/conversation/get_all_conversations", "{}").await;
    assert_eq!(body["errCode"], 0, "{body}");
    let seen = h.emu.seen();
    let call = seen.iter().rfind(|s| s.path == "/conversation/get_all_conversations").expect("forwarded");
    assert_eq!(call.token_user_id.as_deref(), Some("alice"), "the caller's own OpenIM token, never the admin's");
    assert_eq!(call.token_platform_id, Some(1));
    h.shutdown().await;
}

#[tokio::test]
async fn headers_tokens_and_the_allow_list() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let tok = bearer(&h, &alice).await;
    let res = h
        .http
        .post(h.url("/openim/user/get_users_info"))
        .header("token", &tok)
        .body("{}")
        .send()
        .await
        .expect("answer");
    let (_, body) = into_json(res).await;
    assert_eq!(body["errCode"], 1001, "operationID is required, as in OpenIM");
    assert_eq!(openim(&h, None, "/user/get_users_info", "{}").await.1["errCode"], 1001);
    assert_eq!(openim(&h, Some("not-a-token"), "/user/get_users_info", "{}").await.1["errCode"], 1505);
    for path in [
        "/msg/search_msg",
        "/msg/send_msg",
        "/auth/get_admin_token",
        "/auth/get_user_token",
        "/auth/parse_token",
        "/third/fcm_update_token",
        "/object/access_url",
        "/user/get_all_users_uid",
        "/user/get_users",
        "/group/get_groups",
        "/user/user_register",
    ] {
        let before = h.emu.seen().iter().filter(|s| s.path == path).count();
        let (status, body) = openim(&h, Some(&tok), path, "{}").await;
        assert_eq!((status, body["errCode"].as_i64()), (200, Some(1002)), "{path}: {body}");
        let after = h.emu.seen().iter().filter(|s| s.path == path).count();
        assert_eq!(before, after, "{path} reached OpenIM");
    }
    // A bearer token is useless after logout.
    assert_eq!(h.client().call(&alice, "POST", "/v1/auth/logout", None).await.expect("answer").status(), 204);
    assert_eq!(openim(&h, Some(&tok), "/user/get_users_info", r#"{"userIDs":["alice"]}"#).await.1["errCode"], 1505);
    h.shutdown().await;
}

#[tokio::test]
async fn section_10_holes_are_bound_or_refused_on_the_compat_surface() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, owner) = h.session("owner").await;
    h.session("bob").await;
    let tok = bearer(&h, &alice).await;
    let owner_tok = bearer(&h, &owner).await;
    let (_, g) = openim(
        &h,
        Some(&owner_tok),
        "/group/create_group",
        r#"{"groupInfo":{"groupID":"cg","groupName":"c","groupType":2,"needVerification":2}}"#,
    )
    .await;
    assert_eq!(g["errCode"], 0, "{g}");
    // §10.1: join on someone else's behalf — refused, also with another letter case.
    for body in [
        r#"{"groupID":"cg","joinSource":3,"inviterUserID":"bob"}"#,
        r#"{"groupID":"cg","joinSource":3,"InviterUserID":"bob"}"#,
    ] {
        assert_eq!(openim(&h, Some(&tok), "/group/join_group", body).await.1["errCode"], 1002, "{body}");
    }
    let (_, joined) = openim(&h, Some(&tok), "/group/join_group", r#"{"groupID":"cg","joinSource":3}"#).await;
    assert_eq!(joined["errCode"], 0, "the caller joins: {joined}");
    // §10.2: members added without consent; invites by ordinary members.
    let with_members = r#"{"groupInfo":{"groupName":"x","groupType":2},"memberUserIDs":["bob"]}"#;
    assert_eq!(openim(&h, Some(&tok), "/group/create_group", with_members).await.1["errCode"], 1002);
    assert_eq!(
        openim(&h, Some(&tok), "/group/invite_user_to_group", r#"{"groupID":"cg","invitedUserIDs":["bob"]}"#).await.1
            ["errCode"],
        1002
    );
    // §10.3: another user's receive option.
    assert_eq!(
        openim(&h, Some(&tok), "/user/set_global_msg_recv_opt", r#"{"userID":"bob","globalRecvMsgOpt":1}"#).await.1
            ["errCode"],
        1002
    );
    assert_eq!(
        openim(&h, Some(&tok), "/user/set_global_msg_recv_opt", r#"{"globalRecvMsgOpt":0}"#).await.1["errCode"],
        0
    );
    // §10.5: notification conversations; other users' ranges.
    let pull_n = r#"{"seqRanges":[{"conversationID":"n_si_bob_carol","begin":1,"end":5,"num":5}],"order":0}"#;
    assert_eq!(openim(&h, Some(&tok), "/msg/pull_msg_by_seq", pull_n).await.1["errCode"], 1002);
    assert_eq!(
        openim(&h, Some(&tok), "/msg/pull_msg_by_seq", r#"{"userID":"bob","seqRanges":[],"order":0}"#).await.1
            ["errCode"],
        1002
    );
    // §10.6: group info of a group the caller is not in.
    let (_, other) = openim(
        &h,
        Some(&owner_tok),
        "/group/create_group",
        r#"{"groupInfo":{"groupID":"secret","groupName":"s","groupType":2}}"#,
    )
    .await;
    assert_eq!(other["errCode"], 0);
    assert_eq!(openim(&h, Some(&tok), "/group/get_groups_info", r#"{"groupIDs":["secret"]}"#).await.1["errCode"], 1002);
    assert_eq!(openim(&h, Some(&tok), "/group/get_groups_info", r#"{"groupIDs":["cg"]}"#).await.1["errCode"], 0);
    // §10.6: directory enumeration — open on OpenIM with any user token, refused through imgate.
    let direct = h
        .openim_direct("/auth/get_admin_token", None, &serde_json::json!({"secret": "openIM123", "userID": "imAdmin"}))
        .await;
    let admin = direct["data"]["token"].as_str().expect("admin token").to_owned();
    let minted = h
        .openim_direct("/auth/get_user_token", Some(&admin), &serde_json::json!({"userID": "alice", "platformID": 5}))
        .await;
    let alice_openim = minted["data"]["token"].as_str().expect("user token").to_owned();
    let all = h
        .openim_direct(
            "/user/get_all_users_uid",
            Some(&alice_openim),
            &serde_json::json!({"pagination": {"pageNumber": 1, "showNumber": 100}}),
        )
        .await;
    assert!(all["data"]["userIDs"].as_array().is_some_and(|u| u.len() >= 3), "open on OpenIM: {all}");
    assert_eq!(
        openim(&h, Some(&tok), "/user/get_all_users_uid", r#"{"pagination":{"pageNumber":1,"showNumber":100}}"#)
            .await
            .1["errCode"],
        1002
    );
    // Duplicate keys are refused rather than guessed.
    assert_eq!(
        openim(
            &h,
            Some(&tok),
            "/user/set_global_msg_recv_opt",
            r#"{"userID":"alice","userID":"bob","globalRecvMsgOpt":1}"#
        )
        .await
        .1["errCode"],
        1001
    );
    h.shutdown().await;
}

/// Every HTTP route the real `@openim/client-sdk` npm package calls (extracted from the package by
/// `make sdk-routes`) is on the allow-list, so an unmodified SDK works through imgate.
#[test]
fn every_route_of_the_openim_js_sdk_is_served() {
    let list = include_str!("../../fixtures/openim_client_sdk_routes.txt");
    let allowed: Vec<&str> = host::routes::compat::allowed_paths().collect();
    let routes: Vec<&str> = list.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert!(routes.len() >= 50, "the fixture lists the SDK's routes");
    let missing: Vec<&&str> = routes.iter().filter(|r| !allowed.contains(r)).collect();
    assert!(missing.is_empty(), "SDK routes imgate refuses: {missing:?}");
}

#[tokio::test]
async fn designated_friend_apply_needs_the_caller_on_one_side() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    h.session("carol").await;
    let tok = bearer(&h, &alice).await;
    let theirs = r#"{"fromUserID":"bob","toUserID":"carol"}"#;
    assert_eq!(openim(&h, Some(&tok), "/friend/get_designated_friend_apply", theirs).await.1["errCode"], 1002);
    let (_, mine) =
        openim(&h, Some(&tok), "/friend/get_designated_friend_apply", r#"{"fromUserID":"alice","toUserID":"bob"}"#)
            .await;
    assert_ne!(mine["errCode"], 1002, "{mine}");
    h.shutdown().await;
}
