//! The contract §10 weaknesses, shown OPEN: a plain user token acts on or reads other users'
//! data. The gateway in front of OpenIM is tested against exactly these behaviours.

use serde_json::json;

use crate::common::Env;

#[tokio::test]
async fn join_group_trusts_inviter_user_id() {
    let env = Env::new().await;
    env.register(&["o", "attacker", "victim"]).await;
    let to = env.user_token("o", 1).await;
    let ta = env.user_token("attacker", 1).await;
    env.group(&to, "o", "open", &[], 2).await;
    // The attacker's token puts the victim into the group.
    env.ok("/group/join_group", &ta, json!({"groupID":"open","joinSource":3,"inviterUserID":"victim"})).await;
    let d =
        env.ok("/group/get_group_members_info", &to, json!({"groupID":"open","userIDs":["victim","attacker"]})).await;
    let ids: Vec<&str> = d["members"].as_array().unwrap().iter().map(|m| m["userID"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["victim"]);
    assert_eq!(d["members"][0]["inviterUserID"], "victim");
    assert_eq!(d["members"][0]["operatorUserID"], "attacker");
}

#[tokio::test]
async fn search_msg_reads_everyones_messages() {
    let env = Env::new().await;
    env.register(&["a", "b", "snoop"]).await;
    env.send_text("a", "b", "private").await;
    let ts = env.user_token("snoop", 1).await;
    let d = env.ok("/msg/search_msg", &ts, json!({"sendID":"a","pagination":{"pageNumber":1,"showNumber":10}})).await;
    assert_eq!(d["chatLogsNum"], 1);
    assert_eq!(d["chatLogs"][0]["chatLog"]["recvID"], "b");
    assert_eq!(d["chatLogs"][0]["chatLog"]["content"], "{\"content\":\"private\"}");
}

#[tokio::test]
async fn anyone_sets_anyones_global_recv_opt() {
    let env = Env::new().await;
    env.register(&["a", "b", "c"]).await;
    let ta = env.user_token("a", 1).await;
    env.ok("/user/set_global_msg_recv_opt", &ta, json!({"userID":"b","globalRecvMsgOpt":1})).await;
    let d = env.ok("/user/get_users_info", &ta, json!({"userIDs":["b"]})).await;
    assert_eq!(d["usersInfo"][0]["globalRecvMsgOpt"], 1);
    assert_eq!(env.send_text("c", "b", "x").await.code(), 1001, "b's inbox is silenced");
}

#[tokio::test]
async fn directory_and_group_info_leak() {
    let env = Env::new().await;
    env.register(&["o", "outsider"]).await;
    let to = env.user_token("o", 1).await;
    let tx = env.user_token("outsider", 1).await;
    env.group(&to, "o", "private", &[], 0).await;
    let d = env.ok("/group/get_groups_info", &tx, json!({"groupIDs":["private","missing"]})).await;
    assert_eq!(d["groupInfos"].as_array().unwrap().len(), 1);
    let d = env.ok("/user/get_users_info", &tx, json!({"userIDs":["imAdmin"]})).await;
    assert_eq!(d["usersInfo"][0]["appMangerLevel"], 2);
    let d = env.ok("/user/get_all_users_uid", &tx, json!({"pagination":{"pageNumber":1,"showNumber":100}})).await;
    assert_eq!(d["total"], 3);
}

#[tokio::test]
async fn create_group_adds_users_without_consent() {
    let env = Env::new().await;
    env.register(&["a", "b", "c"]).await;
    let ta = env.user_token("a", 1).await;
    env.ok(
        "/group/create_group",
        &ta,
        json!({"ownerUserID":"a","memberUserIDs":["b"],"adminUserIDs":["c"],
        "groupInfo":{"groupID":"forced","groupType":2}}),
    )
    .await;
    let tb = env.user_token("b", 1).await;
    let d = env
        .ok(
            "/group/get_joined_group_list",
            &tb,
            json!({"fromUserID":"b","pagination":{"pageNumber":1,"showNumber":10}}),
        )
        .await;
    assert_eq!(d["groups"][0]["groupID"], "forced");
    // Any member may add further users too.
    env.register(&["d"]).await;
    env.ok("/group/invite_user_to_group", &tb, json!({"groupID":"forced","invitedUserIDs":["d"]})).await;
    let d = env.ok("/group/get_groups_info", &tb, json!({"groupIDs":["forced"]})).await;
    assert_eq!(d["groupInfos"][0]["memberCount"], 4);
}

#[tokio::test]
async fn notification_conversations_are_not_membership_checked() {
    let env = Env::new().await;
    env.register(&["a"]).await;
    let ta = env.user_token("a", 1).await;
    let body = json!({"userID":"a","seqRanges":[{"conversationID":"n_anything","begin":1,"end":10,"num":10}]});
    let d = env.ok("/msg/pull_msg_by_seq", &ta, body).await;
    assert_eq!(d["notificationMsgs"]["n_anything"]["isEnd"], true);
}
