//! The routes the JS SDK (`@openim/client-sdk` 0.0.14) calls beyond the contract's core: the
//! incremental sync of friends, groups, members and conversations, designated lookups, member
//! info, the /jssdk conversation list (JSON and protobuf), revoke/delete/clear, subscriptions and
//! object upload, each with its permission failures and the weaknesses OpenIM has.

use base64::Engine;
use openim_wire::pb::jssdk as pb;
use prost::Message;
use serde_json::{json, Value};

use crate::common::{op_id, Answer, Env};

/// POST with an explicit Content-Type and raw body.
async fn post_raw(env: &Env, path: &str, token: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
    let mut req = env
        .http
        .post(format!("{}{}", env.emu.api_url(), path))
        .header("token", token)
        .header("operationID", op_id())
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect()).unwrap_or_default()
}

fn field_list(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| x[key].as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn every_route_of_the_sdk_fixture_is_routed() {
    let env = Env::new().await;
    let fixture = include_str!("../../../e2e/fixtures/openim_client_sdk_routes.txt");
    let routes: Vec<&str> = fixture.lines().filter(|l| l.starts_with('/')).collect();
    assert!(routes.len() > 50, "the fixture lists the SDK's routes");
    for path in routes {
        let a = env.post(path, &env.admin, json!({})).await;
        // The SDK's route table names it, but neither OpenIM (S internal/api/router.go:280-293, nor
        // HEAD) nor the SDK's code ever calls it: read seqs come over the WebSocket (1006).
        if path == "/conversation/get_conversations_has_read_and_max_seq" {
            assert_eq!(a.status, 404, "{path} is not an OpenIM route");
            continue;
        }
        assert_ne!(a.status, 404, "{path} answers 404: {}", a.text);
        assert!(a.body["errCode"].is_i64(), "{path}: {}", a.text);
    }
}

#[tokio::test]
async fn incremental_friend_sync_returns_exactly_the_changes() {
    let env = Env::new().await;
    env.register(&["a", "b", "c", "d", "e"]).await;
    let ta = env.user_token("a", 5).await;
    let tb = env.user_token("b", 5).await;
    env.ok("/friend/import_friend", &env.admin, json!({"ownerUserID": "a", "friendUserIDs": ["b", "c"]})).await;
    // A fresh client: full sync, then the full ID list.
    let first =
        env.ok("/friend/get_incremental_friends", &ta, json!({"userID": "a", "version": 0, "versionID": ""})).await;
    assert_eq!(first["full"], true);
    assert_eq!(first["insert"], Value::Null);
    let (vid, ver) = (first["versionID"].as_str().unwrap().to_string(), first["version"].as_u64().unwrap());
    assert_eq!(vid.len(), 24);
    assert_eq!(ver, 2, "two imports, two versions");
    let full = env.ok("/friend/get_full_friend_user_ids", &ta, json!({"userID": "a", "idHash": 0})).await;
    assert_eq!(strs(&full["userIDs"]), ["b", "c"]);
    assert_eq!(
        (full["equal"].clone(), full["version"].clone(), full["versionID"].clone()),
        (json!(false), json!(2), json!(vid))
    );
    // Insert d, update b, delete c, and touch e (not a friend: logged, but found nowhere).
    env.ok("/friend/import_friend", &env.admin, json!({"ownerUserID": "a", "friendUserIDs": ["d"]})).await;
    env.ok("/friend/update_friends", &ta, json!({"ownerUserID": "a", "friendUserIDs": ["b", "e"], "remark": "bee"}))
        .await;
    env.ok("/friend/delete_friend", &ta, json!({"ownerUserID": "a", "friendUserID": "c"})).await;
    let inc =
        env.ok("/friend/get_incremental_friends", &ta, json!({"userID": "a", "version": ver, "versionID": vid})).await;
    assert_eq!(inc["full"], false);
    assert_eq!(inc["version"], 5);
    assert_eq!(inc["versionID"], vid.as_str());
    assert_eq!(field_list(&inc["insert"], "ownerUserID"), ["a"]);
    assert_eq!(inc["insert"][0]["friendUser"]["userID"], "d");
    assert_eq!(inc["update"].as_array().unwrap().len(), 1);
    assert_eq!(inc["update"][0]["friendUser"]["userID"], "b");
    assert_eq!(inc["update"][0]["remark"], "bee");
    assert_eq!(strs(&inc["delete"]), ["c"]);
    assert_eq!(inc["sortVersion"], 0);
    // Up to date: nothing. A pin is a sort change. A friend's profile change is an update.
    let same =
        env.ok("/friend/get_incremental_friends", &ta, json!({"userID": "a", "version": 5, "versionID": vid})).await;
    assert_eq!(
        (same["full"].clone(), same["insert"].clone(), same["delete"].clone()),
        (json!(false), Value::Null, Value::Null)
    );
    env.ok("/friend/update_friends", &ta, json!({"ownerUserID": "a", "friendUserIDs": ["d"], "isPinned": true})).await;
    env.ok("/user/update_user_info_ex", &tb, json!({"userInfo": {"userID": "b", "nickname": "Bee"}})).await;
    let inc =
        env.ok("/friend/get_incremental_friends", &ta, json!({"userID": "a", "version": 5, "versionID": vid})).await;
    assert_eq!(inc["sortVersion"], 6);
    let mut updated = field_list(&inc["update"], "ownerUserID");
    updated.dedup();
    assert_eq!(inc["update"].as_array().unwrap().len(), 2, "{inc}");
    let full = env.ok("/friend/get_full_friend_user_ids", &ta, json!({"userID": "a"})).await;
    assert_eq!(strs(&full["userIDs"]), ["d", "b"], "pinned first");
    // The client's idHash matches: no IDs.
    let h = full_hash(&["d", "b"]);
    let eq = env.ok("/friend/get_full_friend_user_ids", &ta, json!({"userID": "a", "idHash": h})).await;
    assert_eq!((eq["equal"].clone(), eq["userIDs"].clone()), (json!(true), Value::Null));
    // A wrong versionID or a version from the future: full.
    let other = "0123456789abcdef01234567";
    let f =
        env.ok("/friend/get_incremental_friends", &ta, json!({"userID": "a", "version": 5, "versionID": other})).await;
    assert_eq!(f["full"], true);
    let f =
        env.ok("/friend/get_incremental_friends", &ta, json!({"userID": "a", "version": 99, "versionID": vid})).await;
    assert_eq!(f["full"], true);
    // SELF.
    assert_eq!(env.code("/friend/get_incremental_friends", &tb, json!({"userID": "a"})).await, 1002);
    assert_eq!(env.code("/friend/get_full_friend_user_ids", &tb, json!({"userID": "a"})).await, 1002);
    assert_eq!(env.code("/friend/get_full_friend_user_ids", &tb, json!({})).await, 1001);
}

/// `hashutil.IdHash` computed independently: md5 of the JSON list, first 8 bytes big-endian.
fn full_hash(ids: &[&str]) -> u64 {
    use md5::Digest;
    let sum = md5::Md5::digest(serde_json::to_vec(ids).unwrap());
    u64::from_be_bytes(sum[..8].try_into().unwrap())
}

#[tokio::test]
async fn designated_friend_lookups_and_update_friends() {
    let env = Env::new().await;
    env.register(&["a", "b", "c", "x"]).await;
    let ta = env.user_token("a", 1).await;
    let tx = env.user_token("x", 1).await;
    env.ok("/friend/import_friend", &env.admin, json!({"ownerUserID": "a", "friendUserIDs": ["b"]})).await;
    env.ok("/friend/add_friend", &ta, json!({"fromUserID": "a", "toUserID": "c", "reqMsg": "hi"})).await;
    let d =
        env.ok("/friend/get_designated_friends", &ta, json!({"ownerUserID": "a", "friendUserIDs": ["b", "c"]})).await;
    assert_eq!(d["friendsInfo"].as_array().unwrap().len(), 1);
    assert_eq!(d["friendsInfo"][0]["friendUser"]["userID"], "b");
    let none = env.ok("/friend/get_designated_friends", &ta, json!({"ownerUserID": "a", "friendUserIDs": ["c"]})).await;
    assert_eq!(none["friendsInfo"], Value::Null);
    assert_eq!(
        env.code("/friend/get_designated_friends", &ta, json!({"ownerUserID": "a", "friendUserIDs": ["b", "b"]})).await,
        1001
    );
    assert_eq!(env.code("/friend/get_designated_friends", &ta, json!({"ownerUserID": "a"})).await, 1001);
    assert_eq!(
        env.code("/friend/get_designated_friends", &tx, json!({"ownerUserID": "a", "friendUserIDs": []})).await,
        1002
    );
    // Requests between two users, either side may ask; nobody else.
    let tc = env.user_token("c", 1).await;
    for t in [&ta, &tc] {
        let d = env.ok("/friend/get_designated_friend_apply", t, json!({"fromUserID": "c", "toUserID": "a"})).await;
        assert_eq!(d["friendRequests"][0]["fromUserID"], "a");
        assert_eq!(d["friendRequests"][0]["reqMsg"], "hi");
    }
    assert_eq!(
        env.code("/friend/get_designated_friend_apply", &tx, json!({"fromUserID": "a", "toUserID": "c"})).await,
        1002
    );
    assert_eq!(env.code("/friend/get_designated_friend_apply", &ta, json!({"fromUserID": "a"})).await, 1001);
    // Specified blacks, in request order, only those blocked; `[]` (not null) when none.
    env.ok("/friend/add_black", &ta, json!({"ownerUserID": "a", "blackUserID": "x", "ex": "e"})).await;
    let d = env.ok("/friend/get_specified_blacks", &ta, json!({"ownerUserID": "a", "userIDList": ["c", "x"]})).await;
    assert_eq!(d["total"], 1);
    assert_eq!(d["blacks"][0]["blackUserInfo"]["userID"], "x");
    assert_eq!(d["blacks"][0]["ex"], "e");
    let d = env.ok("/friend/get_specified_blacks", &ta, json!({"ownerUserID": "a", "userIDList": ["c"]})).await;
    assert_eq!(d["blacks"], json!([]));
    assert_eq!(
        env.code("/friend/get_specified_blacks", &ta, json!({"ownerUserID": "a", "userIDList": []})).await,
        1001
    );
    assert_eq!(
        env.code("/friend/get_specified_blacks", &tx, json!({"ownerUserID": "a", "userIDList": ["x"]})).await,
        1002
    );
    // update_friends: wrappers, checks, SELF.
    env.ok(
        "/friend/update_friends",
        &ta,
        json!({"ownerUserID": "a", "friendUserIDs": ["b"], "isPinned": true, "ex": "z"}),
    )
    .await;
    let d = env.ok("/friend/get_designated_friends", &ta, json!({"ownerUserID": "a", "friendUserIDs": ["b"]})).await;
    assert_eq!((d["friendsInfo"][0]["isPinned"].clone(), d["friendsInfo"][0]["ex"].clone()), (json!(true), json!("z")));
    assert_eq!(env.code("/friend/update_friends", &ta, json!({"ownerUserID": "a", "friendUserIDs": []})).await, 1001);
    assert_eq!(
        env.code("/friend/update_friends", &ta, json!({"ownerUserID": "a", "friendUserIDs": ["b", "b"]})).await,
        1001
    );
    assert_eq!(
        env.code("/friend/update_friends", &tx, json!({"ownerUserID": "a", "friendUserIDs": ["b"], "remark": "r"}))
            .await,
        1002
    );
}

#[tokio::test]
async fn incremental_group_sync() {
    let env = Env::new().await;
    env.register(&["o", "m", "n", "out"]).await;
    let to = env.user_token("o", 5).await;
    let tm = env.user_token("m", 5).await;
    let tout = env.user_token("out", 5).await;
    env.group(&to, "o", "g1", &["m"], 0).await;
    let first = env.ok("/group/get_incremental_join_groups", &tm, json!({"userID": "m"})).await;
    assert_eq!(first["full"], true);
    let (vid, ver) = (first["versionID"].as_str().unwrap().to_string(), first["version"].as_u64().unwrap());
    let ids = env.ok("/group/get_full_join_group_ids", &tm, json!({"userID": "m", "idHash": 0})).await;
    assert_eq!((strs(&ids["groupIDs"]), ids["version"].clone()), (vec!["g1".to_string()], json!(ver)));
    // Member sync of g1 from scratch: full, with the group.
    let batch = |t: String, reqs: Value| {
        let env = &env;
        async move {
            env.ok("/group/get_incremental_group_members_batch", &t, json!({"userID": "ignored", "reqList": reqs}))
                .await
        }
    };
    let b = batch(tm.clone(), json!([{"groupID": "g1"}])).await;
    let r1 = &b["respList"]["g1"];
    assert_eq!((r1["full"].clone(), r1["group"]["groupID"].clone()), (json!(true), json!("g1")));
    let (mvid, mver) = (r1["versionID"].as_str().unwrap().to_string(), r1["version"].as_u64().unwrap());
    let full = env.ok("/group/get_full_group_member_user_ids", &tm, json!({"groupID": "g1"})).await;
    assert_eq!(strs(&full["userIDs"]), ["o", "m"], "owner first");
    // Changes: m joins g2, n is invited into g1, m's member nickname set, the group renamed.
    env.group(&to, "o", "g2", &["m"], 0).await;
    env.ok("/group/invite_user_to_group", &to, json!({"groupID": "g1", "invitedUserIDs": ["n"]})).await;
    env.ok(
        "/group/set_group_member_info",
        &tm,
        json!({"members": [{"groupID": "g1", "userID": "m", "nickname": "em"}]}),
    )
    .await;
    env.ok("/group/set_group_info_ex", &to, json!({"groupID": "g1", "groupName": "renamed"})).await;
    let b = batch(tm.clone(), json!([{"groupID": "g1", "versionID": mvid, "version": mver}, {"groupID": "g1"}])).await;
    let r = &b["respList"]["g1"];
    assert_eq!(r["full"], false, "{b}");
    assert_eq!(field_list(&r["insert"], "userID"), ["n"]);
    assert_eq!(field_list(&r["update"], "userID"), ["m"]);
    assert_eq!(r["update"][0]["nickname"], "em");
    assert_eq!(r["group"]["groupName"], "renamed");
    assert_eq!(r["version"], mver + 3);
    // Then m leaves g1: joined groups show insert g2, delete g1 (group renames are not logged there).
    env.ok("/group/quit_group", &tm, json!({"groupID": "g1"})).await;
    let inc = env
        .ok("/group/get_incremental_join_groups", &tm, json!({"userID": "m", "versionID": vid, "version": ver}))
        .await;
    assert_eq!(inc["full"], false);
    assert_eq!(field_list(&inc["insert"], "groupID"), ["g2"]);
    assert_eq!(strs(&inc["delete"]), ["g1"]);
    assert_eq!(inc["update"], Value::Null);
    // No longer a member: the batch fails as a whole; outsiders too; SELF on the join routes.
    assert_eq!(
        env.code(
            "/group/get_incremental_group_members_batch",
            &tm,
            json!({"reqList": [{"groupID": "g2"}, {"groupID": "g1"}]})
        )
        .await,
        1002
    );
    assert_eq!(env.code("/group/get_full_group_member_user_ids", &tout, json!({"groupID": "g1"})).await, 1002);
    assert_eq!(env.code("/group/get_full_group_member_user_ids", &tout, json!({})).await, 1001);
    assert_eq!(env.code("/group/get_incremental_join_groups", &tout, json!({"userID": "m"})).await, 1002);
    assert_eq!(env.code("/group/get_full_join_group_ids", &tout, json!({"userID": "m"})).await, 1002);
    // A dismissed group is skipped; its member log restarts (new versionID) when members are deleted.
    env.ok("/group/dismiss_group", &to, json!({"groupID": "g2"})).await;
    let b = batch(to.clone(), json!([{"groupID": "g2"}, {"groupID": "g1"}])).await;
    assert!(b["respList"]["g2"].is_null() && b["respList"]["g1"].is_object(), "{b}");
    // The single-group route answers the same shape, and 1204 for the dismissed group.
    let one = env
        .ok(
            "/group/get_incremental_group_members",
            &to,
            json!({"groupID": "g1", "versionID": mvid, "version": mver + 3}),
        )
        .await;
    assert_eq!((one["full"].clone(), strs(&one["delete"])), (json!(false), vec!["m".to_string()]));
    assert_eq!(env.code("/group/get_incremental_group_members", &to, json!({"groupID": "g2"})).await, 1204);
    assert_eq!(env.code("/group/get_incremental_group_members", &tm, json!({"groupID": "g1"})).await, 1002);
    let before = env.ok("/group/get_full_group_member_user_ids", &to, json!({"groupID": "g1"})).await;
    env.ok("/group/dismiss_group", &to, json!({"groupID": "g1", "deleteMember": true})).await;
    let after = env.ok("/group/get_full_group_member_user_ids", &env.admin, json!({"groupID": "g1"})).await;
    assert_ne!(before["versionID"], after["versionID"]);
    assert_eq!(
        (after["version"].clone(), after["userIDs"].clone(), after["equal"].clone()),
        (json!(1), Value::Null, json!(true))
    );
    // Every remaining request is for a dismissed group: respList is omitted (Go map omitempty).
    let b = batch(to.clone(), json!([{"groupID": "g2"}])).await;
    assert_eq!(b, json!({}));
}

#[tokio::test]
async fn look_at_a_group_then_join_it() {
    let env = Env::new().await;
    env.register(&["o", "a", "b", "x"]).await;
    let to = env.user_token("o", 5).await;
    let ta = env.user_token("a", 5).await;
    let tb = env.user_token("b", 5).await;
    let tx = env.user_token("x", 5).await;
    env.group(&to, "o", "open", &[], 2).await;
    env.group(&to, "o", "closed", &[], 0).await;
    // ⚠ A non-member sees everything a member sees (contract §10.6).
    let d = env.ok("/group/get_groups_info", &ta, json!({"groupIDs": ["open", "closed", "ghost"]})).await;
    assert_eq!(field_list(&d["groupInfos"], "groupID"), ["open", "closed"]);
    assert_eq!(d["groupInfos"][0]["ownerUserID"], "o");
    assert_eq!(d["groupInfos"][0]["needVerification"], 2);
    // Join directly, then the SDK asks for its own request: none.
    env.ok(
        "/group/join_group",
        &ta,
        json!({"groupID": "open", "joinSource": 3, "inviterUserID": "a", "reqMessage": ""}),
    )
    .await;
    let q = json!({"groupID": "open", "userID": "a"});
    let r = env.ok("/group/get_specified_user_group_request_info", &ta, q).await;
    assert_eq!((r["total"].clone(), r["groupRequests"].clone()), (json!(0), Value::Null));
    let joined = env.ok("/group/get_full_join_group_ids", &ta, json!({"userID": "a"})).await;
    assert_eq!(strs(&joined["groupIDs"]), ["open"]);
    // Apply to a closed group: the request is visible to the applicant and to the owner.
    env.ok(
        "/group/join_group",
        &tb,
        json!({"groupID": "closed", "joinSource": 3, "inviterUserID": "b", "reqMessage": "pls"}),
    )
    .await;
    for t in [&tb, &to, &env.admin] {
        let r = env
            .ok("/group/get_specified_user_group_request_info", t, json!({"groupID": "closed", "userID": "b"}))
            .await;
        assert_eq!(r["total"], 1);
        assert_eq!(r["groupRequests"][0]["reqMsg"], "pls");
        assert_eq!(r["groupRequests"][0]["userInfo"]["userID"], "b");
        assert_eq!(r["groupRequests"][0]["groupInfo"]["groupID"], "closed");
    }
    assert_eq!(
        env.code("/group/get_specified_user_group_request_info", &tx, json!({"groupID": "closed", "userID": "b"}))
            .await,
        1002
    );
    // Asking about someone else in a group without owner: OpenIM indexes an empty list (panic).
    let a =
        env.post("/group/get_specified_user_group_request_info", &tx, json!({"groupID": "ghost", "userID": "b"})).await;
    assert_eq!((a.code(), a.body["errMsg"].clone()), (500, json!("panic error")));
    // Accepting the request makes b a member, logged in both logs.
    env.ok(
        "/group/group_application_response",
        &to,
        json!({"groupID": "closed", "fromUserID": "b", "handleResult": 1}),
    )
    .await;
    let d = env.ok("/group/get_full_group_member_user_ids", &tb, json!({"groupID": "closed"})).await;
    assert_eq!(strs(&d["userIDs"]), ["o", "b"]);
}

#[tokio::test]
async fn set_group_member_info_role_rules() {
    let env = Env::new().await;
    env.register(&["o", "a", "a2", "m", "m2", "out"]).await;
    let to = env.user_token("o", 1).await;
    let ta = env.user_token("a", 1).await;
    let tm = env.user_token("m", 1).await;
    let tout = env.user_token("out", 1).await;
    env.ok(
        "/group/create_group",
        &to,
        json!({"ownerUserID": "o", "memberUserIDs": ["m", "m2"], "adminUserIDs": ["a", "a2"],
        "groupInfo": {"groupID": "g", "groupType": 2}}),
    )
    .await;
    let set = |t: &str, members: Value| {
        let (env, t) = (&env, t.to_string());
        async move { env.code("/group/set_group_member_info", &t, json!({"members": members})).await }
    };
    let one = |uid: &str, extra: Value| {
        let mut m = json!({"groupID": "g", "userID": uid});
        m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!([m])
    };
    assert_eq!(set(&tm, one("m", json!({"nickname": "me"}))).await, 0, "self edit");
    assert_eq!(set(&tm, one("m2", json!({"nickname": "x"}))).await, 1002, "member edits another");
    assert_eq!(set(&tm, one("m", json!({"roleLevel": 60}))).await, 1002, "member promotes itself");
    assert_eq!(set(&ta, one("m", json!({"roleLevel": 60}))).await, 0, "admin promotes a member");
    assert_eq!(set(&ta, one("a2", json!({"nickname": "x"}))).await, 1002, "admin edits another admin");
    assert_eq!(set(&ta, one("o", json!({"nickname": "x"}))).await, 1002, "admin edits the owner");
    assert_eq!(set(&to, one("a", json!({"roleLevel": 20}))).await, 0, "owner demotes an admin");
    assert_eq!(set(&to, one("o", json!({"roleLevel": 20}))).await, 1001, "owner demotes itself");
    assert_eq!(set(&to, one("m", json!({"roleLevel": 100}))).await, 1002, "no second owner");
    assert_eq!(set(&to, one("m", json!({"roleLevel": 7}))).await, 1001, "invalid role");
    assert_eq!(set(&to, one("out", json!({"nickname": "x"}))).await, 1001, "target not in group");
    assert_eq!(set(&tout, one("m", json!({"nickname": "x"}))).await, 1002, "op not in group");
    assert_eq!(set(&env.admin, one("m", json!({"ex": "by admin"}))).await, 0, "app admin from outside");
    assert_eq!(set(&to, json!([])).await, 1001);
    assert_eq!(env.code("/group/set_group_member_info", &to, json!({})).await, 1001);
    let d = env.ok("/group/get_group_members_info", &to, json!({"groupID": "g", "userIDs": ["m", "a"]})).await;
    let roles: Vec<(Value, Value, Value)> = d["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["userID"].clone(), m["roleLevel"].clone(), m["ex"].clone()))
        .collect();
    assert!(roles.contains(&(json!("m"), json!(60), json!("by admin"))), "{roles:?}");
    assert!(roles.contains(&(json!("a"), json!(20), json!(""))), "{roles:?}");
}

#[tokio::test]
async fn conversation_sync_and_not_notify_ids() {
    let env = Env::new().await;
    env.register(&["a", "b", "c"]).await;
    let ta = env.user_token("a", 5).await;
    let tb = env.user_token("b", 5).await;
    let first = env.ok("/conversation/get_incremental_conversations", &ta, json!({"userID": "a"})).await;
    assert_eq!((first["full"].clone(), first["version"].clone()), (json!(true), json!(1)));
    let (vid, ver) = (first["versionID"].as_str().unwrap().to_string(), first["version"].as_u64().unwrap());
    assert_eq!(env.send_text("b", "a", "hi").await.code(), 0);
    assert_eq!(env.send_text("c", "a", "yo").await.code(), 0);
    let conv = json!({"conversationID": "si_a_b", "conversationType": 1, "userID": "b", "recvMsgOpt": 2});
    env.ok("/conversation/set_conversations", &ta, json!({"userIDs": ["a"], "conversation": conv})).await;
    let inc = env
        .ok(
            "/conversation/get_incremental_conversations",
            &ta,
            json!({"userID": "a", "versionID": vid, "version": ver}),
        )
        .await;
    assert_eq!(inc["full"], false);
    let mut inserted = field_list(&inc["insert"], "conversationID");
    inserted.sort();
    assert_eq!(inserted, ["si_a_c"], "si_a_b was inserted then updated: only its latest state counts");
    assert_eq!(field_list(&inc["update"], "conversationID"), ["si_a_b"]);
    assert_eq!(inc["update"][0]["recvMsgOpt"], 2);
    // Setting the same values again is no change.
    let v = inc["version"].as_u64().unwrap();
    env.ok("/conversation/set_conversations", &ta, json!({"userIDs": ["a"], "conversation": conv})).await;
    let again = env
        .ok("/conversation/get_incremental_conversations", &ta, json!({"userID": "a", "versionID": vid, "version": v}))
        .await;
    assert_eq!((again["version"].clone(), again["update"].clone()), (json!(v), Value::Null));
    let full = env.ok("/conversation/get_full_conversation_ids", &ta, json!({"userID": "a", "idHash": 0})).await;
    assert_eq!(
        (strs(&full["conversationIDs"]), full["version"].clone()),
        (vec!["si_a_b".to_string(), "si_a_c".into()], json!(v))
    );
    assert_eq!(env.code("/conversation/get_full_conversation_ids", &tb, json!({"userID": "a"})).await, 1002);
    let d = env.ok("/conversation/get_not_notify_conversation_ids", &ta, json!({"userID": "a"})).await;
    assert_eq!(strs(&d["conversationIDs"]), ["si_a_b"]);
    assert_eq!(
        env.ok("/conversation/get_not_notify_conversation_ids", &tb, json!({"userID": "b"})).await["conversationIDs"],
        Value::Null
    );
    assert_eq!(env.code("/conversation/get_not_notify_conversation_ids", &tb, json!({"userID": "a"})).await, 1002);
    assert_eq!(env.code("/conversation/get_incremental_conversations", &tb, json!({"userID": "a"})).await, 1002);
}

#[tokio::test]
async fn jssdk_routes_negotiate_json_and_protobuf() {
    let env = Env::new().await;
    env.register(&["a", "b", "c", "o"]).await;
    let ta = env.user_token("a", 5).await;
    let to = env.user_token("o", 5).await;
    env.ok("/friend/import_friend", &env.admin, json!({"ownerUserID": "a", "friendUserIDs": ["b"]})).await;
    env.group(&to, "o", "g", &["a"], 0).await;
    for text in ["1", "2", "3"] {
        assert_eq!(env.send_text("b", "a", text).await.code(), 0);
    }
    assert_eq!(env.send_group("o", "g", "group hello").await.code(), 0);
    assert_eq!(env.send_text("c", "a", "latest").await.code(), 0);
    env.ok("/msg/mark_conversation_as_read", &ta, json!({"userID": "a", "conversationID": "si_a_b", "hasReadSeq": 1}))
        .await;
    env.ok("/conversation/set_conversations", &ta, json!({"userIDs": ["a"], "conversation": {"conversationID": "sg_g", "conversationType": 3, "groupID": "g", "isPinned": true}})).await;

    // JSON; ownerUserID in the body is ignored (BOUND to the token).
    let d = env
        .ok(
            "/jssdk/get_conversations",
            &ta,
            json!({"ownerUserID": "b", "conversationIDs": ["si_a_b", "sg_g", "si_b_c"]}),
        )
        .await;
    assert_eq!(d["unreadCount"], 2 + 1, "si_a_b 3-1, sg_g 1-0");
    let list = d["conversations"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let single = list.iter().find(|c| c["conversation"]["conversationID"] == "si_a_b").unwrap();
    assert_eq!((single["maxSeq"].clone(), single["readSeq"].clone()), (json!(3), json!(1)));
    assert_eq!(single["conversation"]["ownerUserID"], "a");
    assert_eq!(single["user"]["userID"], "b");
    assert_eq!(single["friend"]["friendUserID"], "b");
    assert_eq!(single["group"], Value::Null);
    let content =
        base64::engine::general_purpose::STANDARD.decode(single["lastMsg"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, br#"{"content":"3"}"#);
    let group = list.iter().find(|c| c["conversation"]["conversationID"] == "sg_g").unwrap();
    assert_eq!((group["group"]["groupID"].clone(), group["user"].clone()), (json!("g"), Value::Null));

    // Protobuf, as the npm SDK sends it: data is base64 of the protobuf answer.
    let req = pb::GetActiveConversationsReq { owner_user_id: "someone".into(), count: 20 }.encode_to_vec();
    let a = post_raw(&env, "/jssdk/get_active_conversations", &ta, Some("application/x-protobuf"), req).await;
    assert_eq!(a.code(), 0, "{}", a.text);
    let bytes = base64::engine::general_purpose::STANDARD.decode(a.body["data"].as_str().unwrap()).unwrap();
    let resp = pb::GetActiveConversationsResp::decode(bytes.as_slice()).unwrap();
    let order: Vec<&str> =
        resp.conversations.iter().map(|c| c.conversation.as_ref().unwrap().conversation_id.as_str()).collect();
    assert_eq!(order[0], "sg_g", "pinned first");
    let times: Vec<i64> = resp.conversations[1..].iter().map(|c| c.last_msg.as_ref().unwrap().send_time).collect();
    assert!(order.len() == 3 && times[0] >= times[1], "then by last message time: {order:?} {times:?}");
    assert_eq!(resp.unread_count, 2 + 1 + 1);
    let first = &resp.conversations[0];
    assert_eq!(first.group.as_ref().unwrap().owner_user_id, "o");
    assert_eq!(first.last_msg.as_ref().unwrap().send_id, "o");
    let single =
        resp.conversations.iter().find(|c| c.conversation.as_ref().unwrap().conversation_id == "si_a_b").unwrap();
    assert_eq!((single.max_seq, single.read_seq), (3, 1));
    assert_eq!(single.friend.as_ref().unwrap().friend_user_id, "b");
    assert_eq!(single.user.as_ref().unwrap().nickname, "nick_b");
    let req = pb::GetActiveConversationsReq { owner_user_id: String::new(), count: 1 }.encode_to_vec();
    let a = post_raw(&env, "/jssdk/get_active_conversations", &ta, Some("application/protobuf"), req).await;
    let bytes = base64::engine::general_purpose::STANDARD.decode(a.body["data"].as_str().unwrap()).unwrap();
    let resp = pb::GetActiveConversationsResp::decode(bytes.as_slice()).unwrap();
    assert_eq!((resp.conversations.len(), resp.unread_count), (1, 4), "count limits the list, not the unread sum");

    let req =
        pb::GetConversationsReq { owner_user_id: "b".into(), conversation_ids: vec!["si_a_c".into()] }.encode_to_vec();
    let a = post_raw(&env, "/jssdk/get_conversations", &ta, Some("application/x-protobuf"), req).await;
    let bytes = base64::engine::general_purpose::STANDARD.decode(a.body["data"].as_str().unwrap()).unwrap();
    let resp = pb::GetConversationsResp::decode(bytes.as_slice()).unwrap();
    assert_eq!(resp.conversations.len(), 1);
    assert_eq!(resp.conversations[0].last_msg.as_ref().unwrap().content, br#"{"content":"latest"}"#);
    // Nothing found: an empty protobuf message, i.e. data "".
    let req = pb::GetConversationsReq { owner_user_id: String::new(), conversation_ids: vec!["si_x_y".into()] }
        .encode_to_vec();
    let a = post_raw(&env, "/jssdk/get_conversations", &ta, Some("application/x-protobuf"), req).await;
    assert_eq!(a.body["data"], "");
    // Content types: none means JSON; others are refused; bad protobuf is a plain Go error.
    let a = post_raw(&env, "/jssdk/get_conversations", &ta, None, br#"{"conversationIDs":[]}"#.to_vec()).await;
    assert_eq!(a.body["data"], json!({"unreadCount": 0, "conversations": null}));
    let a = post_raw(&env, "/jssdk/get_conversations", &ta, Some("text/plain"), b"{}".to_vec()).await;
    assert_eq!((a.code(), a.body["errDlt"].clone()), (1001, json!("unsupported content type")));
    let a =
        post_raw(&env, "/jssdk/get_active_conversations", &ta, Some("application/x-protobuf"), vec![0xff, 0xff]).await;
    assert_eq!(a.code(), 500);
    let a = post_raw(&env, "/jssdk/get_active_conversations", &ta, Some("application/json"), b"".to_vec()).await;
    assert_eq!(a.code(), 1001);
}

/// Pulls one conversation's messages as `user`.
async fn pull(env: &Env, token: &str, user: &str, cid: &str) -> Value {
    let body =
        json!({"userID": user, "seqRanges": [{"conversationID": cid, "begin": 1, "end": 100, "num": 100}], "order": 0});
    let d = env.ok("/msg/pull_msg_by_seq", token, body).await;
    if cid.starts_with("n_") {
        d["notificationMsgs"][cid]["Msgs"].clone()
    } else {
        d["msgs"][cid]["Msgs"].clone()
    }
}

#[tokio::test]
async fn revoke_rules() {
    let env = Env::new().await;
    env.register(&["a", "b", "o", "adm", "m", "m2", "x"]).await;
    let ta = env.user_token("a", 5).await;
    let tb = env.user_token("b", 5).await;
    let to = env.user_token("o", 5).await;
    let tadm = env.user_token("adm", 5).await;
    let tm = env.user_token("m", 5).await;
    let tx = env.user_token("x", 5).await;
    env.send_text("a", "b", "oops").await;
    let revoke = |t: &str, user: &str, cid: &str, seq: i64| {
        let (env, t) = (&env, t.to_string());
        let body = json!({"userID": user, "conversationID": cid, "seq": seq});
        async move { env.post("/msg/revoke_msg", &t, body).await }
    };
    assert_eq!(revoke(&tb, "b", "si_a_b", 1).await.code(), 1002, "only the sender revokes a single-chat message");
    assert_eq!(revoke(&tb, "a", "si_a_b", 1).await.code(), 1002, "userID is bound");
    assert_eq!(revoke(&ta, "a", "si_a_b", 2).await.code(), 1004);
    assert_eq!(revoke(&ta, "a", "si_a_b", 0).await.code(), 1001);
    assert_eq!(revoke(&ta, "a", "si_a_b", 1).await.code(), 0);
    let a = revoke(&ta, "a", "si_a_b", 1).await;
    assert_eq!((a.code(), a.body["errMsg"].clone()), (1404, json!("MsgAlreadyRevoke")));
    let msgs = pull(&env, &tb, "b", "si_a_b").await;
    assert_eq!(msgs[0]["contentType"], 2101);
    let content = base64::engine::general_purpose::STANDARD.decode(msgs[0]["content"].as_str().unwrap()).unwrap();
    let elem: Value = serde_json::from_slice(&content).unwrap();
    let detail: Value = serde_json::from_str(elem["detail"].as_str().unwrap()).unwrap();
    assert_eq!(
        (detail["revokerID"].clone(), detail["sourceMessageSendID"].clone(), detail["seq"].clone()),
        (json!("a"), json!("a"), json!(1))
    );
    // The revoke notification went to the notification conversation.
    let notes = pull(&env, &tb, "b", "n_a_b").await;
    assert_eq!((notes[0]["contentType"].clone(), notes[0]["sendID"].clone()), (json!(2101), json!("a")));
    // Group: owner revokes anyone's, admin only ordinary members', members only their own.
    env.ok(
        "/group/create_group",
        &to,
        json!({"ownerUserID": "o", "memberUserIDs": ["m", "m2"], "adminUserIDs": ["adm"],
        "groupInfo": {"groupID": "g", "groupType": 2}}),
    )
    .await;
    for from in ["m", "adm", "m2", "m"] {
        env.send_group(from, "g", "x").await;
    }
    assert_eq!(revoke(&tm, "m", "sg_g", 2).await.code(), 1002, "member revokes an admin's message");
    assert_eq!(revoke(&tadm, "adm", "sg_g", 3).await.code(), 0, "admin revokes a member's message");
    assert_eq!(revoke(&tm, "m", "sg_g", 4).await.code(), 0, "own message");
    assert_eq!(revoke(&to, "o", "sg_g", 2).await.code(), 0, "owner revokes an admin's message");
    let a = revoke(&tx, "x", "sg_g", 1).await;
    assert_eq!((a.code(), a.body["errMsg"].clone()), (500, json!("panic error")), "outsider: nil member record");
    assert_eq!(revoke(&env.admin, "imAdmin", "sg_g", 1).await.code(), 0, "app admin revokes anything");
}

#[tokio::test]
async fn delete_and_clear_for_oneself() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    let ta = env.user_token("a", 5).await;
    let tb = env.user_token("b", 5).await;
    for t in ["1", "2", "3"] {
        env.send_text("b", "a", t).await;
    }
    env.ok(
        "/msg/delete_msgs",
        &ta,
        json!({"userID": "a", "conversationID": "si_a_b", "seqs": [3], "deleteSyncOpt": {"isSyncSelf": true}}),
    )
    .await;
    // a reads seq 3 as deleted (the fallback GetLastMessage finds the same stored message and
    // applies a's view again); b still reads it.
    let d = env.ok("/jssdk/get_conversations", &ta, json!({"conversationIDs": ["si_a_b"]})).await;
    assert_eq!(
        (d["conversations"][0]["lastMsg"]["status"].clone(), d["conversations"][0]["lastMsg"]["content"].clone()),
        (json!(4), json!(""))
    );
    let d = env.ok("/jssdk/get_conversations", &tb, json!({"conversationIDs": ["si_a_b"]})).await;
    assert_eq!(d["conversations"][0]["lastMsg"]["seq"], 3);
    assert_eq!(d["conversations"][0]["lastMsg"]["status"], 0);
    // isSyncSelf: a 2102 to oneself.
    let notes = pull(&env, &ta, "a", "n_a_a").await;
    assert_eq!(notes[0]["contentType"], 2102);
    assert_eq!(
        env.code("/msg/delete_msgs", &tb, json!({"userID": "a", "conversationID": "si_a_b", "seqs": [1]})).await,
        1002
    );
    assert_eq!(env.code("/msg/delete_msgs", &ta, json!({"userID": "a", "conversationID": "si_a_b"})).await, 1001);
    // Clearing for oneself: read seq jumps to max, min seq moves past it (logged as a change).
    let before = env.ok("/conversation/get_incremental_conversations", &ta, json!({"userID": "a"})).await;
    env.ok("/msg/clear_conversation_msg", &ta, json!({"userID": "a", "conversationIDs": ["si_a_b"]})).await;
    let d =
        env.ok("/conversation/get_conversation", &ta, json!({"ownerUserID": "a", "conversationID": "si_a_b"})).await;
    assert_eq!(d["conversation"]["minSeq"], 4);
    let inc = env
        .ok(
            "/conversation/get_incremental_conversations",
            &ta,
            json!({"userID": "a", "versionID": before["versionID"], "version": before["version"]}),
        )
        .await;
    assert_eq!(field_list(&inc["update"], "conversationID"), ["si_a_b"]);
    let d = env.ok("/jssdk/get_conversations", &ta, json!({"conversationIDs": ["si_a_b"]})).await;
    assert_eq!(d["unreadCount"], 0);
    // Upstream quirk: GetLastMessage ignores the reader's min seq.
    assert_eq!(d["conversations"][0]["lastMsg"]["seq"], 3);
    let d = env.ok("/jssdk/get_conversations", &tb, json!({"conversationIDs": ["si_a_b"]})).await;
    assert_eq!(d["conversations"][0]["readSeq"], 0, "b unaffected");
    env.ok("/msg/user_clear_all_msg", &tb, json!({"userID": "b"})).await;
    assert_eq!(env.ok("/jssdk/get_conversations", &tb, json!({"conversationIDs": ["si_a_b"]})).await["unreadCount"], 0);
    assert_eq!(env.code("/msg/user_clear_all_msg", &ta, json!({"userID": "b"})).await, 1002);
    assert_eq!(env.code("/msg/clear_conversation_msg", &ta, json!({"userID": "a"})).await, 1001);
}

#[tokio::test]
async fn delete_and_clear_for_everyone_reach_any_conversation() {
    let env = Env::new().await;
    env.register(&["a", "b", "snoop"]).await;
    let tb = env.user_token("b", 5).await;
    let ts = env.user_token("snoop", 5).await;
    for t in ["1", "2", "3"] {
        env.send_text("a", "b", t).await;
    }
    // ⚠ snoop is no participant of si_a_b, yet physically deletes seq 2 for everyone.
    env.ok(
        "/msg/delete_msgs",
        &ts,
        json!({"userID": "snoop", "conversationID": "si_a_b", "seqs": [2], "deleteSyncOpt": {"IsSyncOther": true}}),
    )
    .await;
    let msgs = pull(&env, &tb, "b", "si_a_b").await;
    assert_eq!(msgs.as_array().unwrap().len(), 3);
    assert_eq!(
        (msgs[1]["seq"].clone(), msgs[1]["status"].clone(), msgs[1]["sendID"].clone()),
        (json!(2), json!(4), json!(""))
    );
    assert_eq!(msgs[2]["status"], 0);
    // ⚠ ... and clears the whole conversation for both participants.
    env.ok(
        "/msg/clear_conversation_msg",
        &ts,
        json!({"userID": "snoop", "conversationIDs": ["si_a_b"], "deleteSyncOpt": {"isSyncOther": true}}),
    )
    .await;
    let req = pb::GetConversationsReq { owner_user_id: String::new(), conversation_ids: vec!["si_a_b".into()] }
        .encode_to_vec();
    let a = post_raw(&env, "/jssdk/get_conversations", &tb, Some("application/x-protobuf"), req).await;
    let bytes = base64::engine::general_purpose::STANDARD.decode(a.body["data"].as_str().unwrap()).unwrap();
    let resp = pb::GetConversationsResp::decode(bytes.as_slice()).unwrap();
    // b's view starts after seq 3 now; only the min-seq-blind GetLastMessage still shows seq 3.
    assert_eq!(resp.conversations[0].last_msg.as_ref().unwrap().seq, 3);
    assert_eq!(resp.unread_count, 3, "b's own read seq was not touched");
    // A conversation nobody has a record of: the deletion happens, then 1004.
    env.send_text("a", "b", "4").await;
    assert_eq!(
        env.code(
            "/msg/delete_msgs",
            &ts,
            json!({"userID": "snoop", "conversationID": "si_x_y", "seqs": [1], "deleteSyncOpt": {"isSyncOther": true}})
        )
        .await,
        1004
    );
}

#[tokio::test]
async fn subscriptions_are_checked_no_ops() {
    let env = Env::new().await;
    env.register(&["a"]).await;
    let ta = env.user_token("a", 5).await;
    let d = env
        .ok("/user/subscribe_users_status", &ta, json!({"userID": "someone_else", "userIDs": ["x"], "genre": 1}))
        .await;
    assert_eq!(d, json!({"statusList": null}));
    assert_eq!(
        env.code("/user/subscribe_users_status", &ta, json!({"userID": "a", "userIDs": ["x"], "genre": 3})).await,
        1001
    );
    assert_eq!(env.code("/user/subscribe_users_status", &ta, json!({"userID": "a", "genre": 1})).await, 1001);
    let d = env.ok("/user/get_subscribe_users_status", &ta, json!({"userID": "a"})).await;
    assert_eq!(d, json!({"statusList": null}));
    assert_eq!(env.code("/user/get_subscribe_users_status", &ta, json!({})).await, 1001);
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

#[tokio::test]
async fn object_upload_like_the_sdk() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    let ta = env.user_token("a", 5).await;
    let tb = env.user_token("b", 5).await;
    let d = env.ok("/object/part_size", &ta, json!({"size": 11})).await;
    assert_eq!(d["size"], 5 * 1024 * 1024);
    assert_eq!(env.code("/object/part_size", &ta, json!({"size": 0})).await, 500);
    // One part (size ≤ part size): a presigned PUT.
    let data = b"hello world".to_vec();
    let part = md5_hex(&data);
    let hash = md5_hex(part.as_bytes());
    let init = json!({"hash": hash, "size": data.len(), "partSize": 5 * 1024 * 1024, "maxParts": -1, "cause": "", "name": "a/hello.txt", "contentType": "text/plain"});
    assert_eq!(
        env.code("/object/initiate_multipart_upload", &tb, init.clone()).await,
        1002,
        "name must start with the caller's ID"
    );
    let d = env.ok("/object/initiate_multipart_upload", &ta, init.clone()).await;
    assert_eq!(d["url"], "");
    let upload = &d["upload"];
    let url = upload["sign"]["parts"][0]["url"].as_str().unwrap();
    let put = env.http.put(url).body(data.clone()).send().await.unwrap();
    assert!(put.status().is_success());
    let done = json!({"uploadID": upload["uploadID"], "parts": [part], "cause": "", "name": "a/hello.txt", "contentType": "text/plain"});
    assert_eq!(
        env.code(
            "/object/complete_multipart_upload",
            &ta,
            json!({"uploadID": upload["uploadID"], "parts": ["bad"], "name": "a/hello.txt"})
        )
        .await,
        500
    );
    let d = env.ok("/object/complete_multipart_upload", &ta, done).await;
    let object_url = d["url"].as_str().unwrap();
    assert_eq!(object_url, format!("{}/object/a/hello.txt", env.emu.api_url()));
    // GET /object/<name>: no token needed ⚠, 302 to the bytes.
    let get = env.http.get(object_url).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 200, "redirect followed");
    assert_eq!(get.headers()["content-type"], "text/plain");
    assert_eq!(get.bytes().await.unwrap().as_ref(), data.as_slice());
    // ⚠ Deduplication: b names a's file by its hash and gets it without uploading.
    let steal =
        json!({"hash": hash, "size": data.len(), "maxParts": -1, "name": "b/mine.txt", "contentType": "text/plain"});
    let d = env.ok("/object/initiate_multipart_upload", &tb, steal).await;
    assert_eq!(d["url"], format!("{}/object/b/mine.txt", env.emu.api_url()));
    assert_eq!(
        env.http.get(d["url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap().as_ref(),
        data.as_slice()
    );
    let missing = env.http.get(format!("{}/object/a/none", env.emu.api_url())).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    // Multipart: 2 parts of the 5 MiB part size.
    let big: Vec<u8> = (0..(5 * 1024 * 1024 + 3)).map(|i| (i % 251) as u8).collect();
    let parts = [md5_hex(&big[..5 * 1024 * 1024]), md5_hex(&big[5 * 1024 * 1024..])];
    let hash = md5_hex(parts.join(",").as_bytes());
    let init = json!({"hash": hash, "size": big.len(), "maxParts": -1, "name": "a/big.bin", "contentType": "application/octet-stream"});
    let d = env.ok("/object/initiate_multipart_upload", &ta, init).await;
    let sign = &d["upload"]["sign"];
    assert_eq!(sign["parts"].as_array().unwrap().len(), 2);
    for (i, chunk) in [&big[..5 * 1024 * 1024], &big[5 * 1024 * 1024..]].iter().enumerate() {
        let q = |kv: &Value| format!("{}={}", kv["key"].as_str().unwrap(), kv["values"][0].as_str().unwrap());
        let url =
            format!("{}?{}&{}", sign["url"].as_str().unwrap(), q(&sign["query"][0]), q(&sign["parts"][i]["query"][0]));
        assert!(env.http.put(url).body(chunk.to_vec()).send().await.unwrap().status().is_success());
    }
    let done = json!({"uploadID": d["upload"]["uploadID"], "parts": parts, "name": "a/big.bin", "contentType": "application/octet-stream"});
    let d = env.ok("/object/complete_multipart_upload", &ta, done).await;
    let got = env.http.get(d["url"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got.as_ref() == big.as_slice());
    // Upstream's inverted check: fewer parts than maxParts is "too many parts".
    let few = json!({"hash": md5_hex(b"x"), "size": 1, "maxParts": 3, "name": "a/x"});
    let a = env.post("/object/initiate_multipart_upload", &ta, few).await;
    assert_eq!((a.code(), a.body["errDlt"].clone()), (500, json!("too many parts: 1")));
}
