//! The REST send pipeline (contract §1.5, §5.7), pulling and send status.

use openim_emu::Config;
use serde_json::{json, Value};

use crate::common::Env;

async fn pull(env: &Env, token: &str, user: &str, cid: &str) -> Value {
    let body =
        json!({"userID": user, "seqRanges": [{"conversationID": cid, "begin": 1, "end": 100, "num": 100}], "order": 0});
    env.ok("/msg/pull_msg_by_seq", token, body).await
}

#[tokio::test]
async fn single_send_assigns_increasing_seqs() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    let r = env
        .raw(
            "/msg/send_msg",
            Some(&env.admin),
            Some("send-1"),
            json!({"sendID":"a","recvID":"b","content":{"content":"hi"},"contentType":101,"sessionType":1}).to_string(),
        )
        .await;
    assert_eq!(r.code(), 0, "{}", r.text);
    let d = &r.body["data"];
    for k in ["serverMsgID", "clientMsgID"] {
        let id = d[k].as_str().unwrap();
        assert!(id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()), "{k} = {id}");
    }
    assert!(d["sendTime"].as_i64().unwrap() > 1_600_000_000_000);
    assert_eq!(env.send_text("b", "a", "yo").await.code(), 0);
    let tb = env.user_token("b", 1).await;
    let p = pull(&env, &tb, "b", "si_a_b").await;
    let msgs = p["msgs"]["si_a_b"]["Msgs"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!((msgs[0]["seq"].as_i64(), msgs[1]["seq"].as_i64()), (Some(1), Some(2)));
    assert_eq!(msgs[0]["msgFrom"], 200);
    assert_eq!(msgs[0]["content"], "eyJjb250ZW50IjoiaGkifQ==", "base64 of the content JSON");
    assert_eq!(p["msgs"]["si_a_b"]["isEnd"], true);
    let seq = env.ok("/msg/newest_seq", &tb, json!({"userID": "b"})).await;
    assert_eq!(seq["maxSeqs"]["si_a_b"], 2);
    // check_msg_is_send_success is keyed by the operationID header.
    let s = env.raw("/msg/check_msg_is_send_success", Some(&tb), Some("send-1"), "{}".into()).await;
    assert_eq!(s.body["data"]["status"], 2);
    let s = env.raw("/msg/check_msg_is_send_success", Some(&tb), Some("never"), "{}".into()).await;
    assert_eq!(s.body["data"]["status"], 0);
    // Conversation records exist for both participants.
    let c = env.ok("/conversation/get_all_conversations", &tb, json!({"ownerUserID": "b"})).await;
    assert_eq!(c["conversations"][0]["conversationID"], "si_a_b");
    assert_eq!(c["conversations"][0]["userID"], "a");
    assert_eq!(c["conversations"][0]["maxSeq"], 2);
}

#[tokio::test]
async fn send_requires_admin_and_binding() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    let ta = env.user_token("a", 1).await;
    let body = json!({"sendID":"a","recvID":"b","content":{"content":"hi"},"contentType":101,"sessionType":1});
    assert_eq!(env.code("/msg/send_msg", &ta, body).await, 1002);
    for bad in [
        json!({"recvID":"b","content":{"content":"hi"},"contentType":101,"sessionType":1}),
        json!({"sendID":"a","recvID":"b","contentType":101,"sessionType":1}),
        json!({"sendID":"a","content":{"content":"hi"},"contentType":101,"sessionType":1}),
        json!({"sendID":"a","recvID":"b","content":"text","contentType":101,"sessionType":1}),
        json!({"sendID":"a","recvID":"b","content":{"content":"hi"},"sessionType":1}),
    ] {
        let a = env.post("/msg/send_msg", &env.admin, bad.clone()).await;
        assert_eq!((a.status, a.code()), (400, 1001), "{bad}");
    }
    let unsupported = json!({"sendID":"a","recvID":"b","content":{"content":"hi"},"contentType":107,"sessionType":1});
    let a = env.post("/msg/send_msg", &env.admin, unsupported).await;
    assert_eq!((a.status, a.code(), a.body["errDlt"].as_str()), (200, 1001, Some("unsupported content type")));
    let empty_text = json!({"sendID":"a","recvID":"b","content":{"content":""},"contentType":101,"sessionType":1});
    assert_eq!(env.code("/msg/send_msg", &env.admin, empty_text).await, 1001);
    let pic = json!({"type":"png","width":10,"height":10,"url":"http://x/p.png"});
    let picture = json!({"sendID":"a","recvID":"b","contentType":102,"sessionType":1,
        "content":{"sourcePicture":pic,"bigPicture":pic,"snapshotPicture":pic}});
    assert_eq!(env.code("/msg/send_msg", &env.admin, picture).await, 0);
}

#[tokio::test]
async fn single_send_checks() {
    let env = Env::new().await;
    env.register(&["a", "b", "c"]).await;
    let a = env.send_text("a", "ghost", "x").await;
    assert_eq!((a.code(), a.body["errMsg"].as_str()), (1004, Some("RecordNotFoundError")));
    assert_eq!(env.send_text("ghost", "a", "x").await.code(), 1004, "sender must exist");
    // b blacklists a → 1302; c can still write to b.
    let tb = env.user_token("b", 1).await;
    env.ok("/friend/add_black", &tb, json!({"ownerUserID":"b","blackUserID":"a"})).await;
    assert_eq!(env.send_text("a", "b", "x").await.code(), 1302);
    assert_eq!(env.send_text("c", "b", "x").await.code(), 0);
    // Admin sender IDs skip the blacklist.
    env.ok("/friend/add_black", &tb, json!({"ownerUserID":"b","blackUserID":"imAdmin"})).await;
    assert_eq!(env.send_text("imAdmin", "b", "x").await.code(), 0);
    env.ok("/friend/remove_black", &tb, json!({"ownerUserID":"b","blackUserID":"a"})).await;
    assert_eq!(env.send_text("a", "b", "x").await.code(), 0);
    // Global receive option 1 → "message is not sent".
    env.ok("/user/set_global_msg_recv_opt", &tb, json!({"userID":"b","globalRecvMsgOpt":1})).await;
    let r = env.send_text("c", "b", "x").await;
    assert_eq!((r.code(), r.body["errDlt"].as_str()), (1001, Some("message is not sent")));
    assert_eq!(env.send_text("imAdmin", "b", "x").await.code(), 1001, "applies to admin senders too");
    env.ok("/user/set_global_msg_recv_opt", &tb, json!({"userID":"b","globalRecvMsgOpt":0})).await;
    // Per-conversation option 1 on b's record.
    env.ok("/conversation/set_conversations", &tb,
        json!({"userIDs":["b"],"conversation":{"conversationID":"si_b_c","conversationType":1,"userID":"c","recvMsgOpt":1}})).await;
    assert_eq!(env.send_text("c", "b", "x").await.code(), 1001);
    assert_eq!(env.send_text("a", "b", "x").await.code(), 0);
    // sessionType 2 is rejected.
    let st2 = json!({"sendID":"a","groupID":"g","content":{"content":"x"},"contentType":101,"sessionType":2});
    let r = env.post("/msg/send_msg", &env.admin, st2).await;
    assert_eq!((r.code(), r.body["errDlt"].as_str()), (1001, Some("unknown sessionType")));
}

#[tokio::test]
async fn admin_may_impersonate_any_sender() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    assert_eq!(env.send_text("a", "b", "forged by admin").await.code(), 0);
    let ta = env.user_token("a", 1).await;
    let p = pull(&env, &ta, "a", "si_a_b").await;
    assert_eq!(p["msgs"]["si_a_b"]["Msgs"][0]["sendID"], "a");
}

#[tokio::test]
async fn friend_verify_requires_friendship() {
    let env = Env::with(Config { friend_verify: true, ..Config::default() }).await;
    env.register(&["a", "b"]).await;
    assert_eq!(env.send_text("a", "b", "x").await.code(), 1303);
    env.ok("/friend/import_friend", &env.admin, json!({"ownerUserID":"a","friendUserIDs":["b"]})).await;
    assert_eq!(env.send_text("a", "b", "x").await.code(), 0);
}

#[tokio::test]
async fn group_send_checks() {
    let env = Env::new().await;
    env.register(&["o", "adm", "m", "out"]).await;
    let to = env.user_token("o", 1).await;
    let body = json!({"ownerUserID":"o","memberUserIDs":["m"],"adminUserIDs":["adm"],
        "groupInfo":{"groupID":"g1","groupName":"g","groupType":2}});
    env.ok("/group/create_group", &to, body).await;
    assert_eq!(env.send_group("m", "g1", "hi").await.code(), 0);
    assert_eq!(env.send_group("out", "g1", "hi").await.code(), 1203);
    assert_eq!(env.send_group("imAdmin", "g1", "hi").await.code(), 0, "admin sender skips membership");
    assert_eq!(env.send_group("m", "nogroup", "hi").await.code(), 1004);
    // Muted member.
    env.ok("/group/mute_group_member", &to, json!({"groupID":"g1","userID":"m","mutedSeconds":60})).await;
    assert_eq!(env.send_group("m", "g1", "hi").await.code(), 1402);
    env.ok("/group/cancel_mute_group_member", &to, json!({"groupID":"g1","userID":"m"})).await;
    assert_eq!(env.send_group("m", "g1", "hi").await.code(), 0);
    // Muted group: members blocked, owner and group admins exempt.
    env.ok("/group/mute_group", &to, json!({"groupID":"g1"})).await;
    assert_eq!(env.send_group("m", "g1", "hi").await.code(), 1403);
    assert_eq!(env.send_group("adm", "g1", "hi").await.code(), 0);
    assert_eq!(env.send_group("o", "g1", "hi").await.code(), 0);
    env.ok("/group/cancel_mute_group", &to, json!({"groupID":"g1"})).await;
    // Dismissed.
    env.ok("/group/dismiss_group", &to, json!({"groupID":"g1"})).await;
    assert_eq!(env.send_group("o", "g1", "hi").await.code(), 1204);
    assert_eq!(env.code("/group/dismiss_group", &to, json!({"groupID":"g1"})).await, 1204);
    // Members' conversation records and pull.
    let tm = env.user_token("m", 1).await;
    let p = pull(&env, &tm, "m", "sg_g1").await;
    let msgs = p["msgs"]["sg_g1"]["Msgs"].as_array().unwrap();
    assert_eq!(msgs.len(), 5);
    assert_eq!(msgs[4]["seq"], 5);
    assert_eq!(msgs[0]["groupID"], "g1");
}

#[tokio::test]
async fn pull_is_self_and_skips_foreign_conversations() {
    let env = Env::new().await;
    env.register(&["a", "b", "c"]).await;
    env.send_text("a", "b", "secret").await;
    let tc = env.user_token("c", 1).await;
    let body = json!({"userID": "a", "seqRanges": [{"conversationID": "si_a_b", "begin": 1, "end": 10, "num": 10}]});
    assert_eq!(env.code("/msg/pull_msg_by_seq", &tc, body).await, 1002);
    let own = pull(&env, &tc, "c", "si_a_b").await;
    assert!(own.get("msgs").is_none(), "range silently skipped: {own}");
    // num limits the page; desc order takes the newest.
    for i in 0..4 {
        env.send_text("a", "b", &format!("m{i}")).await;
    }
    let ta = env.user_token("a", 1).await;
    let body = json!({"userID":"a","seqRanges":[{"conversationID":"si_a_b","begin":1,"end":5,"num":2}],"order":1});
    let d = env.ok("/msg/pull_msg_by_seq", &ta, body).await;
    let seqs: Vec<i64> =
        d["msgs"]["si_a_b"]["Msgs"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![4, 5]);
    assert_eq!(d["msgs"]["si_a_b"]["isEnd"], false);
}

#[tokio::test]
async fn online_only_messages_are_not_stored() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    let body = json!({"sendID":"a","recvID":"b","content":{"content":"typing"},"contentType":101,"sessionType":1,"isOnlineOnly":true});
    env.ok("/msg/send_msg", &env.admin, body).await;
    let ta = env.user_token("a", 1).await;
    let seq = env.ok("/msg/newest_seq", &ta, json!({"userID":"a"})).await;
    assert!(seq.get("maxSeqs").is_none(), "{seq}");
}

#[tokio::test]
async fn search_and_sorted_conversations() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    env.send_text("a", "b", "one").await;
    env.send_text("b", "a", "two").await;
    let ta = env.user_token("a", 1).await;
    let d = env.ok("/msg/search_msg", &ta, json!({"sendID":"b","pagination":{"pageNumber":1,"showNumber":10}})).await;
    assert_eq!(d["chatLogsNum"], 1);
    assert_eq!(d["chatLogs"][0]["chatLog"]["content"], "{\"content\":\"two\"}");
    assert_eq!(d["chatLogs"][0]["isRevoked"], false);
    let s = env
        .ok(
            "/conversation/get_sorted_conversation_list",
            &ta,
            json!({"userID":"a","conversationIDs":[],"pagination":{"pageNumber":1,"showNumber":10}}),
        )
        .await;
    assert_eq!(s["conversationTotal"], 1);
    assert_eq!(s["unreadTotal"], 2);
    assert_eq!(s["conversationElems"][0]["msgInfo"]["sendID"], "b");
    env.ok("/msg/mark_conversation_as_read", &ta, json!({"userID":"a","conversationID":"si_a_b","hasReadSeq":2})).await;
    let r = env.ok("/msg/get_conversations_has_read_and_max_seq", &ta, json!({"userID":"a"})).await;
    assert_eq!(r["seqs"]["si_a_b"]["hasReadSeq"], 2);
    let t = env.ok("/msg/get_server_time", &ta, json!({})).await;
    assert!(t["serverTime"].as_i64().unwrap() > 1_600_000_000_000);
}
