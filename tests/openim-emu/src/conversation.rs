//! `/conversation/*` routes: reading and setting a user's conversation records.
//!
//! Records are created by the send pipeline (`msg::send`) for the participants, and by
//! `set_conversations`. Every route is SELF on its owner field (contract §1.3). Creations and
//! changes are logged in the owner's conversation version log (`S pkg/common/storage/database/
//! mgo/conversation.go:66-150`), which `get_incremental_conversations` reads. Not implemented
//! (404): pinned ID list, delete and update_by_user.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::friend::list_or_null;
use crate::json::{decode, nested};
use crate::server::{Ctx, HResult, Handler};
use crate::state::{paginate, Conversation, State};
use crate::user::Pagination;
use crate::versionlog::{id_hash, STATE_UPDATE};

pub fn routes() -> Vec<(&'static str, Handler)> {
    vec![
        ("/conversation/get_all_conversations", get_all_conversations as Handler),
        ("/conversation/get_conversation", get_conversation),
        ("/conversation/get_conversations", get_conversations),
        ("/conversation/get_sorted_conversation_list", get_sorted_conversation_list),
        ("/conversation/set_conversations", set_conversations),
        ("/conversation/get_incremental_conversations", get_incremental_conversations),
        ("/conversation/get_full_conversation_ids", get_full_conversation_ids),
        ("/conversation/get_not_notify_conversation_ids", get_not_notify_conversation_ids),
    ]
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Req {
    #[serde(rename = "ownerUserID")]
    owner_user_id: String,
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "conversationID")]
    conversation_id: String,
    #[serde(rename = "conversationIDs")]
    conversation_ids: Option<Vec<String>>,
    #[serde(deserialize_with = "nested")]
    pagination: Option<Pagination>,
    #[serde(rename = "versionID")]
    version_id: String,
    version: u64,
    #[serde(rename = "idHash")]
    id_hash: u64,
}

fn require(v: &str, what: &str) -> Result<(), ApiError> {
    if v.is_empty() {
        Err(ApiError::Args(format!("{what} is empty")))
    } else {
        Ok(())
    }
}

fn owned<'s>(st: &'s State, owner: &str) -> Vec<&'s Conversation> {
    st.conversations.iter().filter(|((o, _), _)| o == owner).map(|(_, c)| c).collect()
}

fn get_all_conversations(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.owner_user_id, "OwnerUserID")?;
    ctx.check_access(&r.owner_user_id)?;
    let st = ctx.lock();
    Ok(Some(json!({ "conversations": owned(&st, &r.owner_user_id) })))
}

fn get_conversation(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.owner_user_id, "OwnerUserID")?;
    require(&r.conversation_id, "ConversationID")?;
    ctx.check_access(&r.owner_user_id)?;
    let st = ctx.lock();
    let c = st
        .conversations
        .get(&(r.owner_user_id.clone(), r.conversation_id.clone()))
        .ok_or_else(|| ApiError::RecordNotFound("conversation not found".into()))?;
    Ok(Some(json!({ "conversation": c })))
}

fn get_conversations(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.owner_user_id, "OwnerUserID")?;
    let ids = r.conversation_ids.ok_or_else(|| ApiError::Args("ConversationIDs is empty".into()))?;
    ctx.check_access(&r.owner_user_id)?;
    let st = ctx.lock();
    let list: Vec<&Conversation> =
        ids.iter().filter_map(|id| st.conversations.get(&(r.owner_user_id.clone(), id.clone()))).collect();
    Ok(Some(json!({ "conversations": list })))
}

/// One `ConversationElem` with its latest message.
fn elem(st: &State, c: &Conversation) -> (i64, Value) {
    let last = st.messages.get(&c.conversation_id).and_then(|v| v.last());
    let unread = (st.max_seq(&c.conversation_id) - c.has_read_seq).max(0);
    let g = st.groups.get(&c.group_id);
    let msg_info = last.map(|m| {
        json!({
            "serverMsgID": m.server_msg_id, "clientMsgID": m.client_msg_id, "sessionType": m.session_type,
            "sendID": m.send_id, "recvID": m.recv_id, "senderName": m.sender_nickname,
            "faceURL": m.sender_face_url, "groupID": m.group_id,
            "groupName": g.map(|g| g.group_name.clone()).unwrap_or_default(),
            "groupFaceURL": g.map(|g| g.face_url.clone()).unwrap_or_default(),
            "groupType": g.map(|g| g.group_type).unwrap_or(0),
            "groupMemberCount": g.map(|g| g.members.len() as u32).unwrap_or(0),
            "LatestMsgRecvTime": m.send_time, "msgFrom": m.msg_from, "contentType": m.content_type,
            "content": String::from_utf8_lossy(&m.content), "ex": m.ex,
        })
    });
    let time = last.map(|m| m.send_time).unwrap_or(0);
    (
        unread,
        json!({"conversationID": c.conversation_id, "recvMsgOpt": c.recv_msg_opt,
                    "unreadCount": unread, "IsPinned": c.is_pinned, "msgInfo": msg_info, "_t": time}),
    )
}

fn get_sorted_conversation_list(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.user_id, "userID")?;
    ctx.check_access(&r.user_id)?;
    let st = ctx.lock();
    let ids = r.conversation_ids.unwrap_or_default();
    let mut elems: Vec<(i64, Value)> = owned(&st, &r.user_id)
        .into_iter()
        .filter(|c| ids.is_empty() || ids.contains(&c.conversation_id))
        .map(|c| elem(&st, c))
        .collect();
    let unread_total: i64 = elems.iter().map(|(u, _)| *u).sum();
    elems.sort_by(|(_, a), (_, b)| {
        let key = |v: &Value| (v["IsPinned"].as_bool().unwrap_or(false), v["_t"].as_i64().unwrap_or(0));
        key(b).cmp(&key(a))
    });
    let mut list: Vec<Value> = elems.into_iter().map(|(_, v)| v).collect();
    for v in list.iter_mut() {
        if let Some(o) = v.as_object_mut() {
            o.remove("_t");
        }
    }
    let total = list.len() as i64;
    let page = match &r.pagination {
        Some(p) => paginate(&list, p.page_number, p.show_number),
        None => list,
    };
    Ok(Some(json!({"conversationTotal": total, "unreadTotal": unread_total, "conversationElems": page})))
}

/// `conversation.ConversationReq`: wrapper fields are `None` when absent.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ConversationIn {
    #[serde(rename = "conversationID")]
    conversation_id: String,
    #[serde(rename = "conversationType")]
    conversation_type: i32,
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "groupID")]
    group_id: String,
    #[serde(rename = "recvMsgOpt")]
    recv_msg_opt: Option<i32>,
    #[serde(rename = "isPinned")]
    is_pinned: Option<bool>,
    #[serde(rename = "attachedInfo")]
    attached_info: Option<String>,
    #[serde(rename = "isPrivateChat")]
    is_private_chat: Option<bool>,
    #[serde(rename = "groupAtType")]
    group_at_type: Option<i32>,
    ex: Option<String>,
    #[serde(rename = "burnDuration")]
    burn_duration: Option<i32>,
    #[serde(rename = "msgDestructTime")]
    msg_destruct_time: Option<i64>,
    #[serde(rename = "isMsgDestruct")]
    is_msg_destruct: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SetReq {
    #[serde(rename = "userIDs")]
    user_ids: Vec<String>,
    #[serde(deserialize_with = "nested")]
    conversation: Option<ConversationIn>,
}

fn apply(c: &mut Conversation, i: &ConversationIn) {
    c.recv_msg_opt = i.recv_msg_opt.unwrap_or(c.recv_msg_opt);
    c.is_pinned = i.is_pinned.unwrap_or(c.is_pinned);
    c.attached_info = i.attached_info.clone().unwrap_or_else(|| c.attached_info.clone());
    c.is_private_chat = i.is_private_chat.unwrap_or(c.is_private_chat);
    c.group_at_type = i.group_at_type.unwrap_or(c.group_at_type);
    c.ex = i.ex.clone().unwrap_or_else(|| c.ex.clone());
    c.burn_duration = i.burn_duration.unwrap_or(c.burn_duration);
    c.msg_destruct_time = i.msg_destruct_time.unwrap_or(c.msg_destruct_time);
    c.is_msg_destruct = i.is_msg_destruct.unwrap_or(c.is_msg_destruct);
}

/// SELF on each of `userIDs`; upserts the records.
fn set_conversations(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: SetReq = decode(body)?;
    let conv = r.conversation.ok_or_else(|| ApiError::Args("conversation is empty".into()))?;
    require(&conv.conversation_id, "conversationID")?;
    for u in &r.user_ids {
        ctx.check_access(u)?;
    }
    let mut st = ctx.lock();
    for u in &r.user_ids {
        let key = (u.clone(), conv.conversation_id.clone());
        let before = st.conversations.get(&key).map(|c| serde_json::to_value(c).unwrap_or_default());
        st.ensure_conversation(u, &conv.conversation_id, conv.conversation_type, &conv.user_id, &conv.group_id);
        let max = st.max_seq(&conv.conversation_id);
        let Some(c) = st.conversations.get_mut(&key) else { continue };
        apply(c, &conv);
        c.max_seq = max;
        let after = serde_json::to_value(&*c).unwrap_or_default();
        // An existing record is an update (logged only when something changed, as OpenIM's
        // UserUpdateCheckMap skips unchanged users); a new one was logged as an insert.
        if before.is_some_and(|b| b != after) {
            st.conversation_versions.incr(u, &[&conv.conversation_id], STATE_UPDATE);
        }
    }
    Ok(None)
}

/// SELF(userID): conversation changes since `(versionID, version)`; records as `Conversation`.
fn get_incremental_conversations(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    ctx.check_access(&r.user_id)?;
    let mut st = ctx.lock();
    let sync = st.conversation_versions.sync(&r.user_id, &r.version_id, r.version);
    let find = |ids: &[String]| -> Vec<&Conversation> {
        ids.iter().filter_map(|id| st.conversations.get(&(r.user_id.clone(), id.clone()))).collect()
    };
    let (insert, update) = (find(&sync.insert), find(&sync.update));
    Ok(Some(json!({
        "version": sync.version, "versionID": sync.version_id, "full": sync.full,
        "delete": list_or_null(sync.delete), "insert": list_or_null(insert), "update": list_or_null(update),
    })))
}

/// SELF(userID): every conversation ID of the owner plus the log's version (`idHash` equal ⇒
/// no IDs) (`S internal/rpc/conversation/sync.go:13-35`).
fn get_full_conversation_ids(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    ctx.check_access(&r.user_id)?;
    let mut st = ctx.lock();
    let (version_id, version) = st.conversation_versions.max(&r.user_id);
    let ids: Vec<String> = owned(&st, &r.user_id).into_iter().map(|c| c.conversation_id.clone()).collect();
    let equal = r.id_hash == id_hash(&ids);
    let ids = if equal { Value::Null } else { list_or_null(ids) };
    Ok(Some(json!({"version": version, "versionID": version_id, "equal": equal, "conversationIDs": ids})))
}

/// SELF(userID): the owner's conversations with recvMsgOpt 2 (receive, don't notify).
fn get_not_notify_conversation_ids(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    ctx.check_access(&r.user_id)?;
    let st = ctx.lock();
    let ids: Vec<&str> = owned(&st, &r.user_id)
        .into_iter()
        .filter(|c| c.recv_msg_opt == 2)
        .map(|c| c.conversation_id.as_str())
        .collect();
    Ok(Some(json!({ "conversationIDs": list_or_null(ids) })))
}
