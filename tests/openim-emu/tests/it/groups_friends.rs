//! Group and friend routes: creation rules, roles, requests, friendship flow.

use serde_json::json;

use crate::common::Env;

#[tokio::test]
async fn create_group_rules() {
    let env = Env::new().await;
    env.register(&["o", "m"]).await;
    let to = env.user_token("o", 1).await;
    let tm = env.user_token("m", 1).await;
    let body = |owner: &str, gid: &str, members: serde_json::Value, gtype: i32| json!({"ownerUserID": owner, "memberUserIDs": members, "groupInfo": {"groupID": gid, "groupName": "n", "groupType": gtype}});
    let d = env.ok("/group/create_group", &to, body("o", "", json!(["m"]), 2)).await;
    let gid = d["groupInfo"]["groupID"].as_str().unwrap().to_string();
    assert!(!gid.is_empty() && gid.len() <= 10 && gid.chars().all(|c| c.is_ascii_digit()), "generated id {gid}");
    assert_eq!(d["groupInfo"]["ownerUserID"], "o");
    assert_eq!(d["groupInfo"]["memberCount"], 2);
    assert_eq!(d["groupInfo"]["creatorUserID"], "o");
    env.ok("/group/create_group", &to, body("o", "fixed", json!([]), 2)).await;
    assert_eq!(env.code("/group/create_group", &to, body("o", "fixed", json!([]), 2)).await, 1202);
    assert_eq!(env.code("/group/create_group", &to, body("o", "g2", json!(["ghost"]), 2)).await, 1101);
    assert_eq!(env.code("/group/create_group", &to, body("o", "g3", json!(["m", "m"]), 2)).await, 1001);
    assert_eq!(env.code("/group/create_group", &to, body("o", "g4", json!([]), 0)).await, 1001);
    assert_eq!(env.code("/group/create_group", &tm, body("o", "g5", json!([]), 2)).await, 1002);
    let d = env
        .ok(
            "/group/get_joined_group_list",
            &tm,
            json!({"fromUserID":"m","pagination":{"pageNumber":1,"showNumber":10}}),
        )
        .await;
    assert_eq!(d["total"], 1);
    assert_eq!(
        env.code(
            "/group/get_joined_group_list",
            &tm,
            json!({"fromUserID":"o","pagination":{"pageNumber":1,"showNumber":10}})
        )
        .await,
        1002
    );
}

#[tokio::test]
async fn kick_quit_and_roles() {
    let env = Env::new().await;
    env.register(&["o", "a1", "a2", "m1", "m2", "out"]).await;
    let to = env.user_token("o", 1).await;
    let ta1 = env.user_token("a1", 1).await;
    let tm1 = env.user_token("m1", 1).await;
    let tout = env.user_token("out", 1).await;
    env.ok(
        "/group/create_group",
        &to,
        json!({"ownerUserID":"o","memberUserIDs":["m1","m2"],"adminUserIDs":["a1","a2"],
        "groupInfo":{"groupID":"g","groupType":2}}),
    )
    .await;
    let kick = |t: String, ids: serde_json::Value| {
        let env = &env;
        async move { env.code("/group/kick_group", &t, json!({"groupID":"g","kickedUserIDs":ids})).await }
    };
    assert_eq!(kick(tm1.clone(), json!(["m2"])).await, 1002, "members cannot kick");
    assert_eq!(kick(ta1.clone(), json!(["a2"])).await, 1002, "admins cannot kick admins");
    assert_eq!(kick(ta1.clone(), json!(["o"])).await, 1001, "nobody kicks the owner");
    assert_eq!(kick(ta1.clone(), json!(["ghost"])).await, 1101);
    assert_eq!(kick(ta1.clone(), json!(["m2"])).await, 0);
    assert_eq!(kick(to.clone(), json!(["a2"])).await, 0);
    // Member list needs membership.
    let list = json!({"groupID":"g","pagination":{"pageNumber":1,"showNumber":10}});
    assert_eq!(env.code("/group/get_group_member_list", &tout, list.clone()).await, 1002);
    let d = env.ok("/group/get_group_member_list", &tm1, list).await;
    assert_eq!(d["total"], 3);
    assert_eq!(d["members"][0]["roleLevel"], 100);
    assert_eq!(d["members"][0]["nickname"], "nick_o");
    // Quit rules.
    assert_eq!(env.code("/group/quit_group", &to, json!({"groupID":"g"})).await, 1002);
    assert_eq!(env.code("/group/quit_group", &tout, json!({"groupID":"g"})).await, 1004);
    assert_eq!(env.code("/group/quit_group", &tm1, json!({"groupID":"g","userID":"a1"})).await, 1002);
    env.ok("/group/quit_group", &tm1, json!({"groupID":"g"})).await;
    // Member mute needs a higher role.
    assert_eq!(
        env.code("/group/mute_group_member", &ta1, json!({"groupID":"g","userID":"o","mutedSeconds":10})).await,
        1002
    );
    assert_eq!(env.code("/group/mute_group", &tout, json!({"groupID":"g"})).await, 1002);
    // Transfer: only the owner; afterwards the old owner is a member.
    assert_eq!(
        env.code("/group/transfer_group", &ta1, json!({"groupID":"g","oldOwnerUserID":"o","newOwnerUserID":"a1"}))
            .await,
        1002
    );
    env.ok("/group/transfer_group", &to, json!({"groupID":"g","oldOwnerUserID":"o","newOwnerUserID":"a1"})).await;
    let d = env.ok("/group/get_groups_info", &to, json!({"groupIDs":["g"]})).await;
    assert_eq!(d["groupInfos"][0]["ownerUserID"], "a1");
    env.ok("/group/set_group_info_ex", &ta1, json!({"groupID":"g","groupName":"renamed","notification":"hello"})).await;
    assert_eq!(env.code("/group/set_group_info_ex", &to, json!({"groupID":"g","groupName":"x"})).await, 1002);
    let d = env.ok("/group/get_groups_info", &to, json!({"groupIDs":["g"]})).await;
    assert_eq!(d["groupInfos"][0]["groupName"], "renamed");
    assert_eq!(d["groupInfos"][0]["notificationUserID"], "a1");
}

#[tokio::test]
async fn join_requests_and_invitations() {
    let env = Env::new().await;
    env.register(&["o", "m", "x", "y"]).await;
    let to = env.user_token("o", 1).await;
    let tm = env.user_token("m", 1).await;
    let tx = env.user_token("x", 1).await;
    env.group(&to, "o", "gv", &["m"], 1).await;
    let join = json!({"groupID":"gv","reqMessage":"pls","joinSource":3,"inviterUserID":"x"});
    env.ok("/group/join_group", &tx, join.clone()).await;
    assert_eq!(
        env.code("/group/join_group", &tx, json!({"groupID":"gv","joinSource":5,"inviterUserID":"x"})).await,
        1001
    );
    let members = json!({"groupID":"gv","userIDs":["x","y"]});
    assert_eq!(env.ok("/group/get_group_members_info", &to, members.clone()).await["members"], json!([]));
    let apps = env
        .ok(
            "/group/get_recv_group_applicationList",
            &to,
            json!({"fromUserID":"o","pagination":{"pageNumber":1,"showNumber":10}}),
        )
        .await;
    assert_eq!(apps["total"], 1);
    assert_eq!(apps["groupRequests"][0]["userInfo"]["userID"], "x");
    let respond = json!({"groupID":"gv","fromUserID":"x","handledMsg":"ok","handleResult":1});
    assert_eq!(env.code("/group/group_application_response", &tm, respond.clone()).await, 1002);
    env.ok("/group/group_application_response", &to, respond.clone()).await;
    assert_eq!(env.code("/group/group_application_response", &to, respond).await, 1206);
    assert_eq!(env.code("/group/join_group", &tx, join).await, 1001, "already a member");
    // needVerification 1: an ordinary member's invitation becomes a request; the owner's is direct.
    env.ok("/group/invite_user_to_group", &tm, json!({"groupID":"gv","invitedUserIDs":["y"]})).await;
    let d = env.ok("/group/get_group_members_info", &to, members.clone()).await;
    assert_eq!(d["members"].as_array().unwrap().len(), 1);
    env.ok("/group/invite_user_to_group", &to, json!({"groupID":"gv","invitedUserIDs":["y"]})).await;
    let d = env.ok("/group/get_group_members_info", &to, members).await;
    assert_eq!(d["members"].as_array().unwrap().len(), 2);
    let ty = env.user_token("y", 1).await;
    assert_eq!(
        env.code("/group/invite_user_to_group", &ty, json!({"groupID":"gv","invitedUserIDs":["ghost"]})).await,
        1004
    );
}

#[tokio::test]
async fn friendship_flow() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    let ta = env.user_token("a", 1).await;
    let tb = env.user_token("b", 1).await;
    assert_eq!(env.code("/friend/add_friend", &ta, json!({"fromUserID":"b","toUserID":"a"})).await, 1002);
    assert_eq!(env.code("/friend/add_friend", &ta, json!({"fromUserID":"a","toUserID":"a"})).await, 1301);
    env.ok("/friend/add_friend", &ta, json!({"fromUserID":"a","toUserID":"b","reqMsg":"hi"})).await;
    let page = json!({"pageNumber":1,"showNumber":10});
    let d = env.ok("/friend/get_friend_apply_list", &tb, json!({"userID":"b","pagination":page})).await;
    assert_eq!(d["total"], 1);
    assert_eq!(d["FriendRequests"][0]["fromUserID"], "a");
    assert_eq!(d["FriendRequests"][0]["fromNickname"], "nick_a");
    let d = env.ok("/friend/get_self_friend_apply_list", &ta, json!({"userID":"a","pagination":page})).await;
    assert_eq!(d["total"], 1);
    assert_eq!(
        env.code("/friend/add_friend_response", &ta, json!({"fromUserID":"a","toUserID":"b","handleResult":1})).await,
        1002
    );
    env.ok("/friend/add_friend_response", &tb, json!({"fromUserID":"a","toUserID":"b","handleResult":1})).await;
    assert_eq!(env.code("/friend/add_friend", &ta, json!({"fromUserID":"a","toUserID":"b"})).await, 1304);
    let d = env.ok("/friend/get_friend_list", &ta, json!({"userID":"a","pagination":page})).await;
    assert_eq!(d["total"], 1);
    let created = d["friendsInfo"][0]["createTime"].as_i64().unwrap();
    assert!(created > 1_600_000_000 && created < 10_000_000_000, "seconds, not ms: {created}");
    assert_eq!(d["friendsInfo"][0]["friendUser"]["userID"], "b");
    let d = env.ok("/friend/is_friend", &ta, json!({"userID1":"a","userID2":"b"})).await;
    assert_eq!(d, json!({"inUser1Friends": true, "inUser2Friends": true}));
    env.ok("/friend/delete_friend", &ta, json!({"ownerUserID":"a","friendUserID":"b"})).await;
    let d = env.ok("/friend/is_friend", &tb, json!({"userID1":"a","userID2":"b"})).await;
    assert_eq!(d, json!({"inUser1Friends": false, "inUser2Friends": true}), "one direction only");
    assert_eq!(env.code("/friend/delete_friend", &ta, json!({"ownerUserID":"a","friendUserID":"b"})).await, 1004);
    assert_eq!(env.code("/friend/import_friend", &ta, json!({"ownerUserID":"a","friendUserIDs":["b"]})).await, 1002);
    env.ok("/friend/add_black", &ta, json!({"ownerUserID":"a","blackUserID":"b"})).await;
    let d = env.ok("/friend/get_black_list", &ta, json!({"userID":"a","pagination":page})).await;
    assert_eq!(d["blacks"][0]["blackUserInfo"]["userID"], "b");
    assert_eq!(env.code("/friend/get_black_list", &tb, json!({"userID":"a","pagination":page})).await, 1002);
    assert_eq!(env.code("/friend/get_friend_list", &ta, json!({"userID":"a"})).await, 1001, "pagination required");
}
