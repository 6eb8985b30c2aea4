//! `/jssdk/get_conversations` and `/jssdk/get_active_conversations`: the JS SDK's conversation
//! list with each conversation's last message, peer user/friend or group, max and read seq
//! (`S internal/api/jssdk/jssdk.go`, `tools.go`).
//!
//! Both are BOUND: `ownerUserID` is overwritten with the token's user (`jssdk.go:108,192`). The
//! body format is negotiated on `Content-Type` (contract §1.3, `tools.go:25-76`): empty or
//! `application/json` → JSON in, JSON `data` out; `application/protobuf` or
//! `application/x-protobuf` → protobuf in ([`openim_wire::pb::jssdk`]), and `data` is the base64
//! string of the protobuf answer; anything else → 1001 "unsupported content type". An undecodable
//! protobuf body is a plain Go error: 500 with the text as detail.
//!
//! Upstream quirk kept: when the message at a conversation's max seq is deleted (status ≥ 4) the
//! last message is looked up again with `GetLastMessage`, which ignores the reader's min seq, so a
//! conversation cleared for oneself still shows its last message here.

use openim_wire::pb::jssdk as pb;
use prost::Message;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::json::decode;
use crate::server::{Ctx, HResult, Handler};
use crate::state::{Conversation, Friend, Group, MsgData, State, UserInfo, MSG_STATUS_DELETED};

pub fn routes() -> Vec<(&'static str, Handler)> {
    vec![
        ("/jssdk/get_conversations", get_conversations as Handler),
        ("/jssdk/get_active_conversations", get_active_conversations),
    ]
}

/// `maxGetActiveConversation` / `defaultGetActiveConversation`.
const MAX_ACTIVE: i64 = 500;
const DEFAULT_ACTIVE: i64 = 100;

/// The body format chosen by `Content-Type`.
#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Protobuf,
}

fn negotiate(ctx: &Ctx<'_>) -> Result<Format, ApiError> {
    let ct = ctx.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.is_empty() || ct.contains("application/json") {
        Ok(Format::Json)
    } else if ct.contains("application/protobuf") || ct.contains("application/x-protobuf") {
        Ok(Format::Protobuf)
    } else {
        Err(ApiError::Args("unsupported content type".into()))
    }
}

fn proto_error(_: prost::DecodeError) -> ApiError {
    ApiError::ServerInternal("proto: cannot parse invalid wire-format data".into())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct JsonReq {
    #[serde(rename = "conversationIDs")]
    conversation_ids: Option<Vec<String>>,
    count: i64,
}

/// One `ConversationMsg` before rendering.
struct Entry {
    conversation: Conversation,
    last_msg: MsgData,
    user: Option<UserInfo>,
    friend: Option<(String, Friend)>,
    group: Option<Group>,
    max_seq: i64,
    read_seq: i64,
}

/// The answer of both routes before rendering.
#[derive(Default)]
struct Answer {
    unread_count: i64,
    conversations: Vec<Entry>,
}

fn get_conversations(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let format = negotiate(ctx)?;
    let ids = match format {
        Format::Json => decode::<JsonReq>(body)?.conversation_ids.unwrap_or_default(),
        Format::Protobuf => pb::GetConversationsReq::decode(body).map_err(proto_error)?.conversation_ids,
    };
    let st = ctx.lock();
    let answer = conversations(&st, &ctx.op_user, &ids);
    render(&st, format, answer)
}

fn get_active_conversations(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let format = negotiate(ctx)?;
    let count = match format {
        Format::Json => decode::<JsonReq>(body)?.count,
        Format::Protobuf => pb::GetActiveConversationsReq::decode(body).map_err(proto_error)?.count,
    };
    let count = if count <= 0 || count > MAX_ACTIVE { DEFAULT_ACTIVE } else { count };
    let st = ctx.lock();
    let answer = active_conversations(&st, &ctx.op_user, count as usize);
    render(&st, format, answer)
}

/// `GetSeqMessage` of the max seq, then `checkMessagesAndGetLastMessage`: `None` when the reader
/// gets no message at all for the conversation.
fn last_message(st: &State, owner: &str, cid: &str, max_seq: i64) -> Option<MsgData> {
    let at_max = st.msg_for_user(owner, cid, max_seq);
    if at_max.as_ref().is_some_and(|m| m.status < MSG_STATUS_DELETED) {
        return at_max;
    }
    // GetLastMessage: the newest stored (not physically deleted) message, min seqs ignored.
    let newest =
        st.messages.get(cid).and_then(|list| list.iter().rev().find(|m| m.status < MSG_STATUS_DELETED)).map(|m| m.seq);
    match newest {
        Some(seq) => {
            let mut m = st.messages.get(cid)?.get((seq - 1) as usize)?.clone();
            if st.msg_del_lists.get(&(cid.to_string(), seq)).is_some_and(|d| d.iter().any(|u| u == owner)) {
                m.content = Vec::new();
                m.status = MSG_STATUS_DELETED;
            }
            Some(m)
        }
        None => at_max,
    }
}

fn entry(st: &State, c: &Conversation, max_seq: i64) -> Option<Entry> {
    let last_msg = last_message(st, &c.owner_user_id, &c.conversation_id, max_seq)?;
    let (user, friend, group) = if c.group_id.is_empty() {
        let friend = st.friends.get(&(c.owner_user_id.clone(), c.user_id.clone())).cloned();
        (st.user(&c.user_id).cloned(), friend.map(|f| (c.user_id.clone(), f)), None)
    } else {
        (None, None, st.groups.get(&c.group_id).cloned())
    };
    Some(Entry { conversation: c.clone(), last_msg, user, friend, group, max_seq, read_seq: c.has_read_seq })
}

/// `getConversations`: the owner's records among `ids`.
fn conversations(st: &State, owner: &str, ids: &[String]) -> Answer {
    let convs: Vec<&Conversation> =
        st.conversations.iter().filter(|((o, cid), _)| o == owner && ids.contains(cid)).map(|(_, c)| c).collect();
    let mut answer = Answer::default();
    for c in convs {
        let max = st.max_seq(&c.conversation_id);
        answer.unread_count += (max - c.has_read_seq).max(0);
        if max > 0 {
            answer.conversations.extend(entry(st, c, max));
        }
    }
    answer
}

/// `getActiveConversations`: the owner's conversations with messages, pinned first, then by the
/// time of their last message, the first `count`.
fn active_conversations(st: &State, owner: &str, count: usize) -> Answer {
    let mut active: Vec<(&Conversation, i64, i64)> = st
        .conversations
        .iter()
        .filter(|((o, _), _)| o == owner)
        .filter_map(|(_, c)| {
            let max = st.max_seq(&c.conversation_id);
            let time = st.messages.get(&c.conversation_id).and_then(|l| l.last()).map(|m| m.send_time).unwrap_or(0);
            (max > 0).then_some((c, max, time))
        })
        .collect();
    let mut answer = Answer {
        unread_count: active.iter().map(|(c, max, _)| (max - c.has_read_seq).max(0)).sum(),
        ..Default::default()
    };
    let pinned_counts = active.len() > 1;
    active.sort_by_key(|(c, _, time)| (std::cmp::Reverse(pinned_counts && c.is_pinned), std::cmp::Reverse(*time)));
    for (c, max, _) in active.into_iter().take(count) {
        answer.conversations.extend(entry(st, c, max));
    }
    answer
}

/// `apiresp.GinSuccess(resp)`: JSON data, or the base64 of the protobuf encoding.
fn render(st: &State, format: Format, answer: Answer) -> HResult {
    match format {
        Format::Json => {
            let list: Vec<Value> = answer.conversations.iter().map(|e| entry_json(st, e)).collect();
            let list = if list.is_empty() { Value::Null } else { Value::Array(list) };
            Ok(Some(json!({"unreadCount": answer.unread_count, "conversations": list})))
        }
        Format::Protobuf => {
            let resp = pb::GetConversationsResp {
                unread_count: answer.unread_count,
                conversations: answer.conversations.iter().map(|e| entry_pb(st, e)).collect(),
            };
            // GetActiveConversationsResp has the same fields and numbers.
            use base64::Engine;
            Ok(Some(Value::from(base64::engine::general_purpose::STANDARD.encode(resp.encode_to_vec()))))
        }
    }
}

fn friend_json(owner: &str, friend_id: &str, f: &Friend) -> Value {
    json!({"ownerUserID": owner, "friendUserID": friend_id, "remark": f.remark, "createTime": f.create_time_ms,
           "addSource": f.add_source, "operatorUserID": f.operator_user_id, "ex": f.ex, "isPinned": f.is_pinned})
}

fn entry_json(st: &State, e: &Entry) -> Value {
    let owner = &e.conversation.owner_user_id;
    json!({
        "conversation": e.conversation, "lastMsg": e.last_msg, "user": e.user,
        "friend": e.friend.as_ref().map(|(id, f)| friend_json(owner, id, f)),
        "group": e.group.as_ref().map(|g| st.group_info(g)),
        "maxSeq": e.max_seq, "readSeq": e.read_seq,
    })
}

fn entry_pb(st: &State, e: &Entry) -> pb::ConversationMsg {
    let c = &e.conversation;
    let m = &e.last_msg;
    pb::ConversationMsg {
        conversation: Some(pb::Conversation {
            owner_user_id: c.owner_user_id.clone(),
            conversation_id: c.conversation_id.clone(),
            recv_msg_opt: c.recv_msg_opt,
            conversation_type: c.conversation_type,
            user_id: c.user_id.clone(),
            group_id: c.group_id.clone(),
            is_pinned: c.is_pinned,
            attached_info: c.attached_info.clone(),
            is_private_chat: c.is_private_chat,
            group_at_type: c.group_at_type,
            ex: c.ex.clone(),
            burn_duration: c.burn_duration,
            min_seq: c.min_seq,
            max_seq: c.max_seq,
            msg_destruct_time: c.msg_destruct_time,
            latest_msg_destruct_time: c.latest_msg_destruct_time,
            is_msg_destruct: c.is_msg_destruct,
        }),
        last_msg: Some(crate::ws::to_pb(m)),
        user: e.user.as_ref().map(|u| pb::UserInfo {
            user_id: u.user_id.clone(),
            nickname: u.nickname.clone(),
            face_url: u.face_url.clone(),
            ex: u.ex.clone(),
            create_time: u.create_time,
            app_manger_level: u.app_manger_level,
            global_recv_msg_opt: u.global_recv_msg_opt,
        }),
        friend: e.friend.as_ref().map(|(id, f)| pb::FriendInfoOnly {
            owner_user_id: c.owner_user_id.clone(),
            friend_user_id: id.clone(),
            remark: f.remark.clone(),
            create_time: f.create_time_ms,
            add_source: f.add_source,
            operator_user_id: f.operator_user_id.clone(),
            ex: f.ex.clone(),
            is_pinned: f.is_pinned,
        }),
        group: e.group.as_ref().map(|g| group_pb(st, g)),
        max_seq: e.max_seq,
        read_seq: e.read_seq,
    }
}

fn group_pb(st: &State, g: &Group) -> pb::GroupInfo {
    let v = st.group_info(g);
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let i = |k: &str| v[k].as_i64().unwrap_or(0);
    pb::GroupInfo {
        group_id: s("groupID"),
        group_name: s("groupName"),
        notification: s("notification"),
        introduction: s("introduction"),
        face_url: s("faceURL"),
        owner_user_id: s("ownerUserID"),
        create_time: i("createTime"),
        member_count: i("memberCount") as u32,
        ex: s("ex"),
        status: i("status") as i32,
        creator_user_id: s("creatorUserID"),
        group_type: i("groupType") as i32,
        need_verification: i("needVerification") as i32,
        look_member_info: i("lookMemberInfo") as i32,
        apply_member_friend: i("applyMemberFriend") as i32,
        notification_update_time: i("notificationUpdateTime"),
        notification_user_id: s("notificationUserID"),
    }
}
