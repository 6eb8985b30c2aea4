//! Issue 10, items 1–5: a user can only act as themselves and only see what is theirs, on both
//! surfaces, whatever the body's key spelling (attacks.md A1, A2, A5, A6, A7).
//!
//! Each test plays an attacker with an ordinary account (a bearer token on `/openim/*`, signed
//! requests on `/v1`) against the real gateway and the emulator, which decodes JSON the way
//! OpenIM's Go server does (Unicode key folding, last duplicate wins). The victims' data is
//! planted through the emulator directly, as other clients of OpenIM would have made it.

use e2e::*;
use imgate_client::Session;
use serde_json::{json, Value};

async fn bearer(h: &Harness, s: &Session) -> String {
    let (status, tok) = into_json(h.client().call(s, "POST", "/v1/auth/token", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{tok}");
    tok["token"].as_str().expect("token").to_owned()
}

async fn openim(h: &Harness, token: &str, path: &str, body: &str) -> Value {
    let req = h.http.post(h.url(&format!("/openim{path}"))).header("operationID", "attack-1").header("token", token);
    let (status, v) = into_json(req.body(body.to_owned()).send().await.expect("answer")).await;
    assert_eq!(status, 200, "{path}: {v}");
    v
}

async fn v1(h: &Harness, s: &Session, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
    into_json(h.client().call(s, method, path, bytes.as_deref()).await.expect("answer")).await
}

async fn admin_token(h: &Harness) -> String {
    let direct =
        h.openim_direct("/auth/get_admin_token", None, &json!({"secret": "openIM123", "userID": "imAdmin"})).await;
    direct["data"]["token"].as_str().expect("admin token").to_owned()
}

/// A message sent inside OpenIM (not through imgate), as another OpenIM client could.
async fn plant_message(h: &Harness, admin: &str, from: &str, to: &str, group: Option<&str>, text: &str) {
    let body = match group {
        Some(g) => {
            json!({"sendID": from, "groupID": g, "sessionType": 3, "contentType": 101, "content": {"content": text}})
        }
        None => {
            json!({"sendID": from, "recvID": to, "sessionType": 1, "contentType": 101, "content": {"content": text}})
        }
    };
    let sent = h.openim_direct("/msg/send_msg", Some(admin), &body).await;
    assert_eq!(sent["errCode"], 0, "{sent}");
}

/// A conversation record for `owner`, made inside OpenIM (what an adoption leaves behind).
async fn plant_conversation(h: &Harness, admin: &str, owner: &str, cid: &str) {
    let body = json!({"userIDs": [owner], "conversation": {"conversationID": cid, "conversationType": 1}});
    let set = h.openim_direct("/conversation/set_conversations", Some(admin), &body).await;
    assert_eq!(set["errCode"], 0, "{set}");
}

fn texts(v: &Value) -> String {
    v.to_string()
}

/// Every sender named in an answer (`sendID` on the compat surface, `send_id` on `/v1`):
/// message contents are base64, so a text search would not see a leak.
fn senders(v: &Value) -> Vec<String> {
    match v {
        Value::Object(m) => m
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("sendID" | "send_id", Value::String(s)) => vec![s.clone()],
                _ => senders(v),
            })
            .collect(),
        Value::Array(a) => a.iter().flat_map(senders).collect(),
        _ => vec![],
    }
}

/// Item 1 (OWASP API1, attacks.md A2): adopting another pair's or a foreign group's
/// conversation id, then pulling it, must not reveal their messages.
#[tokio::test]
async fn other_peoples_conversations_cannot_be_adopted_or_pulled() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, carol) = h.session("carol").await;
    h.session("bob").await;
    let admin = admin_token(&h).await;
    let (status, g) = v1(&h, &carol, "POST", "/v1/groups", Some(json!({"name": "private", "group_id": "priv"}))).await;
    assert_eq!(status, 200, "{g}");
    plant_message(&h, &admin, "bob", "carol", None, "bob-to-carol-secret").await;
    plant_message(&h, &admin, "carol", "", Some("priv"), "group-secret").await;
    let tok = bearer(&h, &alice).await;
    for cid in ["si_bob_carol", "sg_priv"] {
        let set =
            format!(r#"{{"userIDs":["alice"],"conversation":{{"conversationID":"{cid}","conversationType":1}}}}"#);
        let answer = openim(&h, &tok, "/conversation/set_conversations", &set).await;
        assert_eq!(answer["errCode"], 1002, "adopting {cid}: {answer}");
        // Even with the record planted inside OpenIM, the pull is refused or filtered.
        plant_conversation(&h, &admin, "alice", cid).await;
        let pull = format!(r#"{{"seqRanges":[{{"conversationID":"{cid}","begin":1,"end":10,"num":10}}],"order":0}}"#);
        let answer = openim(&h, &tok, "/msg/pull_msg_by_seq", &pull).await;
        assert!(senders(&answer).is_empty(), "{cid} leaked: {answer}");
        assert_eq!(answer["errCode"], 1002, "{cid}: {answer}");
    }
    // Other routes that name conversations are checked the same way.
    let answer =
        openim(&h, &tok, "/msg/get_conversations_has_read_and_max_seq", r#"{"conversationIDs":["si_bob_carol"]}"#)
            .await;
    assert_eq!(answer["errCode"], 1002, "{answer}");
    // A record of the caller's own conversation may not name a third party as its peer
    // (OpenIM writes the peer's record too when `isPrivateChat` is set).
    let answer = openim(&h, &tok, "/conversation/set_conversations", r#"{"userIDs":["alice"],"conversation":{"conversationID":"si_alice_bob","conversationType":1,"userID":"carol","isPrivateChat":true}}"#).await;
    assert_eq!(answer["errCode"], 1002, "{answer}");
    // The caller's own conversations still work.
    let answer = openim(&h, &tok, "/conversation/set_conversations", r#"{"userIDs":["alice"],"conversation":{"conversationID":"si_alice_bob","conversationType":1,"isPinned":true}}"#).await;
    assert_eq!(answer["errCode"], 0, "{answer}");
    h.shutdown().await;
}

/// Item 2 (attacks.md A6, contract §10.8c): keys OpenIM reads as a field it guards, spelled
/// another way, are bound or refused; nothing ambiguous reaches OpenIM.
#[tokio::test]
async fn keys_are_matched_as_go_matches_them() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let tok = bearer(&h, &alice).await;
    // The notification-conversation guard, walked around by letter case before.
    let pulls_before = h.emu.seen().iter().filter(|s| s.path == "/msg/pull_msg_by_seq").count();
    let pull = r#"{"SeqRanges":[{"ConversationID":"n_si_bob_carol","begin":1,"end":5,"num":5}],"order":0}"#;
    assert_eq!(openim(&h, &tok, "/msg/pull_msg_by_seq", pull).await["errCode"], 1002);
    let pulls_after = h.emu.seen().iter().filter(|s| s.path == "/msg/pull_msg_by_seq").count();
    assert_eq!(pulls_before, pulls_after, "the pull reached OpenIM");
    // `uſerID` (U+017F) is `userID` to Go: with the caller's id beside it, OpenIM would take the last.
    let admin = admin_token(&h).await;
    let bob_opt = || async {
        let info = h.openim_direct("/user/get_users_info", Some(&admin), &json!({"userIDs": ["bob"]})).await;
        info["data"]["usersInfo"][0]["globalRecvMsgOpt"].as_i64()
    };
    assert_eq!(bob_opt().await, Some(0));
    for body in [
        "{\"userID\":\"alice\",\"u\u{017F}erID\":\"bob\",\"globalRecvMsgOpt\":1}",
        "{\"u\u{017F}erID\":\"bob\",\"globalRecvMsgOpt\":1}",
        r#"{"userID":"alice","USERID":"bob","globalRecvMsgOpt":1}"#,
        r#"{"UserId":"bob","globalRecvMsgOpt":1}"#,
    ] {
        let answer = openim(&h, &tok, "/user/set_global_msg_recv_opt", body).await;
        assert_ne!(answer["errCode"], 0, "{body}: {answer}");
        assert_eq!(bob_opt().await, Some(0), "bob's option changed by {body}");
    }
    // The Kelvin sign is a `k` to Go: kicking through `\u212AickedUserIDs` is still a kick.
    let owner_only = "{\"groupID\":\"nope\",\"\u{212A}ickedUserIDs\":[\"bob\"]}";
    assert_eq!(openim(&h, &tok, "/group/kick_group", owner_only).await["errCode"], 1002);
    h.shutdown().await;
}

/// Item 3 (contract §8.3): `amy` + `bo_cy` and `amy_bo` + `cy` share the conversation id
/// `si_amy_bo_cy`. Reads are filtered by each message's real parties; sends are refused.
#[tokio::test]
async fn ambiguous_conversation_ids_leak_nothing() {
    let h = Harness::start().await;
    let (_, amy) = h.session("amy").await;
    h.session("bo_cy").await;
    h.session("amy_bo").await;
    h.session("cy").await;
    let admin = admin_token(&h).await;
    plant_message(&h, &admin, "amy_bo", "cy", None, "between-amy_bo-and-cy").await;
    // Sent inside OpenIM before imgate refused such sends: amy's own message is still hers to read.
    plant_message(&h, &admin, "amy", "bo_cy", None, "amy-to-bo_cy").await;
    let (status, hist) = v1(&h, &amy, "GET", "/v1/conversations/user/bo_cy/messages?from=1&to=10", None).await;
    assert_eq!(status, 200, "{hist}");
    assert_eq!(senders(&hist), ["amy"], "only amy's own message with bo_cy: {hist}");
    let tok = bearer(&h, &amy).await;
    let pull = r#"{"seqRanges":[{"conversationID":"si_amy_bo_cy","begin":1,"end":10,"num":10}],"order":0}"#;
    let answer = openim(&h, &tok, "/msg/pull_msg_by_seq", pull).await;
    assert_eq!(answer["errCode"], 0, "{answer}");
    assert_eq!(senders(&answer), ["amy"], "compat pull: {answer}");
    assert!(answer["data"]["msgs"].is_object(), "the pull was served, filtered: {answer}");
    let sends_before = h.emu.seen().iter().filter(|s| s.path == "/msg/send_msg").count();
    let (status, body) = v1(&h, &amy, "POST", "/v1/messages/user/bo_cy", Some(json!({"text": "hello"}))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    assert_eq!(h.emu.seen().iter().filter(|s| s.path == "/msg/send_msg").count(), sends_before);
    h.shutdown().await;
}

/// Item 4: a list of groups is checked completely (duplicates do not push a group past the
/// checks) or refused above the documented cap.
#[tokio::test]
async fn every_group_of_a_list_is_checked() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, owner) = h.session("owner").await;
    let (status, _) = v1(&h, &alice, "POST", "/v1/groups", Some(json!({"name": "mine", "group_id": "g0"}))).await;
    assert_eq!(status, 200);
    let (status, _) = v1(&h, &owner, "POST", "/v1/groups", Some(json!({"name": "s", "group_id": "secret"}))).await;
    assert_eq!(status, 200);
    let tok = bearer(&h, &alice).await;
    let mut ids = vec!["g0"; 100];
    ids.push("secret");
    let answer = openim(&h, &tok, "/group/get_groups_info", &json!({"groupIDs": ids}).to_string()).await;
    assert_eq!(answer["errCode"], 1002, "{answer}");
    assert!(!texts(&answer).contains("\"groupName\""), "{answer}");
    let many: Vec<String> = (0..=host::routes::compat::MAX_GROUPS_CHECKED).map(|i| format!("x{i}")).collect();
    let answer = openim(&h, &tok, "/group/get_groups_info", &json!({"groupIDs": many}).to_string()).await;
    assert_eq!(answer["errCode"], 1002, "{answer}");
    assert!(answer["errDlt"].as_str().is_some_and(|d| d.contains("more than")), "{answer}");
    let answer = openim(&h, &tok, "/group/get_groups_info", r#"{"groupIDs":["g0","g0"]}"#).await;
    assert_eq!(answer["errCode"], 0, "{answer}");
    h.shutdown().await;
}

/// Item 5 (contract §10.6): both surfaces answer only other users' public fields.
#[tokio::test]
async fn other_users_private_fields_stay_private_on_both_surfaces() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let admin = admin_token(&h).await;
    let set = json!({"userInfo": {"userID": "bob", "ex": "bob-private-ex", "globalRecvMsgOpt": 2}});
    assert_eq!(h.openim_direct("/user/update_user_info_ex", Some(&admin), &set).await["errCode"], 0);
    let set = json!({"userInfo": {"userID": "alice", "ex": "alice-own-ex"}});
    assert_eq!(h.openim_direct("/user/update_user_info_ex", Some(&admin), &set).await["errCode"], 0);
    let tok = bearer(&h, &alice).await;
    let answer = openim(&h, &tok, "/user/get_users_info", r#"{"userIDs":["bob","alice"]}"#).await;
    assert_eq!(answer["errCode"], 0, "{answer}");
    let users = answer["data"]["usersInfo"].as_array().expect("users");
    let bob = users.iter().find(|u| u["userID"] == "bob").expect("bob");
    let me = users.iter().find(|u| u["userID"] == "alice").expect("alice");
    assert_eq!((bob["ex"].as_str(), bob["globalRecvMsgOpt"].as_i64()), (Some(""), Some(0)), "{bob}");
    assert_eq!(bob["nickname"], "bob", "public fields stay");
    assert_eq!(me["ex"], "alice-own-ex", "the caller's own record is whole");
    let (status, looked) = v1(&h, &alice, "POST", "/v1/users/lookup", Some(json!({"user_ids": ["bob"]}))).await;
    assert_eq!(status, 200);
    assert!(!texts(&looked).contains("bob-private-ex"), "{looked}");
    h.shutdown().await;
}
