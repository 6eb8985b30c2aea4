//! `/msg/*` routes that change stored history: `revoke_msg`, `delete_msgs`,
//! `clear_conversation_msg` and `user_clear_all_msg` (`S internal/rpc/msg/revoke.go`,
//! `delete.go`). Kept apart from [`crate::msg`], which owns sending and reading.
//!
//! How history changes are stored: a revoked message is rewritten in place the way OpenIM shows it
//! on every later read (contentType 2101, content = `NotificationElem` of a
//! `MessageRevokedContent`); a physically deleted message becomes the `{seq, status: 4}`
//! placeholder OpenIM answers for a missing seq; a message deleted for oneself and a conversation
//! cleared for oneself are per-user views kept in [`State`] (`msg_del_lists`, `user_min_seqs`)
//! and applied by [`State::msg_for_user`] (the /jssdk routes read through it).
//!
//! Faithful weaknesses (contract §10 spirit; fixed upstream after this commit, contract §9):
//! `delete_msgs` with `deleteSyncOpt.isSyncOther` physically deletes the given seqs of **any**
//! conversation ID, and `clear_conversation_msg` with `isSyncOther` clears **any** conversation for
//! all its members; both only check `userID` against the token. Side notifications (2101 revoke,
//! 2102 delete) are stored in the `n_…` notification conversation as OpenIM's notification sender
//! does (`S pkg/notification/msg.go:199-254`); 1703 (clear) has no stored history upstream.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::json::{decode, nested};
use crate::server::{Ctx, HResult, Handler};
use crate::state::{now_ms, random_md5, MsgData, State, MSG_STATUS_DELETED, ROLE_ADMIN, ROLE_MEMBER, ROLE_OWNER};
use crate::versionlog::STATE_UPDATE;

pub fn routes() -> Vec<(&'static str, Handler)> {
    vec![
        ("/msg/revoke_msg", revoke_msg as Handler),
        ("/msg/delete_msgs", delete_msgs),
        ("/msg/clear_conversation_msg", clear_conversation_msg),
        ("/msg/user_clear_all_msg", user_clear_all_msg),
    ]
}

/// `constant.MsgRevokeNotification`.
const MSG_REVOKE_NOTIFICATION: i32 = 2101;
/// `constant.DeleteMsgsNotification`.
const DELETE_MSGS_NOTIFICATION: i32 = 2102;

/// `msg.DeleteSyncOpt` (JSON keys are capitalised in the proto; Go matches any case).
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct SyncOpt {
    #[serde(rename = "IsSyncSelf")]
    is_sync_self: bool,
    #[serde(rename = "IsSyncOther")]
    is_sync_other: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Req {
    #[serde(rename = "conversationID")]
    conversation_id: String,
    #[serde(rename = "conversationIDs")]
    conversation_ids: Option<Vec<String>>,
    seq: i64,
    seqs: Option<Vec<i64>>,
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "deleteSyncOpt", deserialize_with = "nested")]
    delete_sync_opt: Option<SyncOpt>,
}

fn require(v: &str, what: &str) -> Result<(), ApiError> {
    if v.is_empty() {
        Err(ApiError::Args(format!("{what} is empty")))
    } else {
        Ok(())
    }
}

/// `sdkws.MessageRevokedContent`, in Go's field order.
#[derive(Serialize)]
struct RevokedContent<'a> {
    #[serde(rename = "revokerID")]
    revoker_id: &'a str,
    #[serde(rename = "revokerRole")]
    revoker_role: i32,
    #[serde(rename = "clientMsgID")]
    client_msg_id: &'a str,
    #[serde(rename = "revokerNickname")]
    revoker_nickname: &'a str,
    #[serde(rename = "revokeTime")]
    revoke_time: i64,
    #[serde(rename = "sourceMessageSendTime")]
    source_message_send_time: i64,
    #[serde(rename = "sourceMessageSendID")]
    source_message_send_id: &'a str,
    #[serde(rename = "sourceMessageSenderNickname")]
    source_message_sender_nickname: &'a str,
    #[serde(rename = "sessionType")]
    session_type: i32,
    seq: i64,
    ex: &'a str,
}

/// `sdkws.RevokeMsgTips` (sic `sesstionType`).
#[derive(Serialize)]
struct RevokeTips<'a> {
    #[serde(rename = "revokerUserID")]
    revoker_user_id: &'a str,
    #[serde(rename = "clientMsgID")]
    client_msg_id: &'a str,
    #[serde(rename = "revokeTime")]
    revoke_time: i64,
    #[serde(rename = "sesstionType")]
    sesstion_type: i32,
    seq: i64,
    #[serde(rename = "conversationID")]
    conversation_id: &'a str,
    #[serde(rename = "isAdminRevoke")]
    is_admin_revoke: bool,
}

/// `sdkws.DeleteMsgsTips`.
#[derive(Serialize)]
struct DeleteTips<'a> {
    #[serde(rename = "userID")]
    user_id: &'a str,
    #[serde(rename = "conversationID")]
    conversation_id: &'a str,
    seqs: &'a [i64],
}

/// `sdkws.NotificationElem{Detail: json(tips)}` as bytes.
fn notification_elem<T: Serialize>(tips: &T) -> Vec<u8> {
    let detail = serde_json::to_string(tips).unwrap_or_default();
    serde_json::to_vec(&serde_json::json!({ "detail": detail })).unwrap_or_default()
}

/// `NotificationSender.send` for the reliable, non-message notifications of this module
/// (revoke, delete: `{IsSendMsg: false, ReliabilityLevel: ReliableNotificationNoMsg}`, stored
/// in history); the message lands in the notification conversation `n_…`
/// (`msgprocessor.GetConversationIDByMsg` with `isNotNotification: false`) and is pushed to the
/// recipients' live connections like any sent message.
fn notify(ctx: &Ctx<'_>, st: &mut State, to: (&str, &str), content_type: i32, session_type: i32, content: Vec<u8>) {
    let (send_id, recv_id) = to;
    let options = [
        ("isNotNotification", false),
        ("isSendMsg", false),
        ("history", true),
        ("persistent", true),
        ("offlinePush", false),
        ("unreadCount", false),
        ("conversationUpdate", false),
        ("senderSync", true),
        ("notPrivate", false),
        ("senderConversationUpdate", false),
        ("reactionFromCache", false),
    ];
    let cid = match session_type {
        3 => format!("n_{recv_id}"),
        _ if send_id <= recv_id => format!("n_{send_id}_{recv_id}"),
        _ => format!("n_{recv_id}_{send_id}"),
    };
    let now = now_ms();
    let list = st.messages.entry(cid).or_default();
    let msg = MsgData {
        send_id: send_id.to_string(),
        recv_id: recv_id.to_string(),
        group_id: if session_type == 3 { recv_id.to_string() } else { String::new() },
        client_msg_id: random_md5(),
        server_msg_id: random_md5(),
        session_type,
        msg_from: 200,
        content_type,
        content,
        seq: list.len() as i64 + 1,
        send_time: now,
        create_time: now,
        options: options.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        offline_push_info: Some(Default::default()),
        ..Default::default()
    };
    list.push(msg.clone());
    crate::ws::push_msg(ctx.app, st, &ctx.operation_id, &msg);
}

/// SELF(userID); a single-chat message only by its sender, a group message by its sender or by
/// the owner / an admin (admins: ordinary members' messages only); app admins revoke anything.
fn revoke_msg(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.conversation_id, "conversationID")?;
    if r.seq < 1 {
        return Err(ApiError::Args("seq is invalid".into()));
    }
    require(&r.user_id, "userID")?;
    ctx.check_access(&r.user_id)?;
    let mut st = ctx.lock();
    let user = st.user(&r.user_id).cloned().ok_or_else(|| ApiError::RecordNotFound("user not found".into()))?;
    let msg = st
        .msg_for_user(&r.user_id, &r.conversation_id, r.seq)
        .ok_or_else(|| ApiError::RecordNotFound("msg not found".into()))?;
    if msg.content_type == MSG_REVOKE_NOTIFICATION {
        return Err(ApiError::MsgAlreadyRevoke("msg already revoke".into()));
    }
    let role = if ctx.is_admin() { 0 } else { revoke_role(ctx, &st, &r.user_id, user.app_manger_level, &msg)? };
    let now = now_ms();
    let stored = st.messages.get_mut(&r.conversation_id).and_then(|l| l.get_mut((r.seq - 1) as usize));
    // A physically deleted slot has no message to mark; OpenIM still answers success.
    if let Some(m) = stored.filter(|m| !m.server_msg_id.is_empty()) {
        let content = RevokedContent {
            revoker_id: &r.user_id,
            revoker_role: role,
            client_msg_id: &m.client_msg_id,
            revoker_nickname: &user.nickname,
            revoke_time: now,
            source_message_send_time: m.send_time,
            source_message_send_id: &m.send_id,
            source_message_sender_nickname: &m.sender_nickname,
            session_type: m.session_type,
            seq: m.seq,
            ex: &m.ex,
        };
        m.content = notification_elem(&content);
        m.content_type = MSG_REVOKE_NOTIFICATION;
    }
    let tips = RevokeTips {
        revoker_user_id: &ctx.op_user,
        client_msg_id: &msg.client_msg_id,
        revoke_time: now,
        sesstion_type: msg.session_type,
        seq: r.seq,
        conversation_id: &r.conversation_id,
        is_admin_revoke: ctx.is_admin(),
    };
    let recv = if msg.session_type == 3 { msg.group_id.clone() } else { msg.recv_id.clone() };
    notify(ctx, &mut st, (&r.user_id, &recv), MSG_REVOKE_NOTIFICATION, msg.session_type, notification_elem(&tips));
    Ok(None)
}

/// The non-admin part of `RevokeMsg`: who may revoke, and the revoker role recorded.
fn revoke_role(ctx: &Ctx<'_>, st: &State, user_id: &str, app_level: i32, msg: &MsgData) -> Result<i32, ApiError> {
    match msg.session_type {
        1 => {
            ctx.check_access(&msg.send_id)?;
            Ok(app_level)
        }
        3 => {
            let g = st.groups.get(&msg.group_id);
            let member = |u: &str| g.and_then(|g| g.member(u)).map(|m| m.role_level);
            if user_id != msg.send_id {
                // OpenIM reads the revoker's member record without a nil check.
                let Some(mine) = member(user_id) else {
                    return Err(ApiError::Panic(
                        "runtime error: invalid memory address or nil pointer dereference".into(),
                    ));
                };
                let allowed = match mine {
                    ROLE_OWNER => true,
                    ROLE_ADMIN => member(&msg.send_id).is_none_or(|s| s == ROLE_MEMBER),
                    _ => false,
                };
                if !allowed {
                    return Err(ApiError::NoPermission("no permission".into()));
                }
            }
            Ok(member(user_id).unwrap_or(0))
        }
        t => Err(ApiError::ServerInternal(format!("msg sessionType not supported sessionType={t}"))),
    }
}

/// SELF(userID). Without `isSyncOther` the seqs are hidden from the user only; with it ⚠ they
/// are physically deleted from the conversation for everyone, whatever conversation it is.
fn delete_msgs(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.conversation_id, "conversationID")?;
    require(&r.user_id, "userID")?;
    let seqs = r.seqs.ok_or_else(|| ApiError::Args("seqs is empty".into()))?;
    ctx.check_access(&r.user_id)?;
    let opt = r.delete_sync_opt.unwrap_or_default();
    let mut st = ctx.lock();
    let max = st.max_seq(&r.conversation_id);
    let in_range: Vec<i64> = seqs.iter().copied().filter(|s| (1..=max).contains(s)).collect();
    let tips = notification_elem(&DeleteTips { user_id: &r.user_id, conversation_id: &r.conversation_id, seqs: &seqs });
    if opt.is_sync_other {
        if let Some(list) = st.messages.get_mut(&r.conversation_id) {
            for s in &in_range {
                list[(*s - 1) as usize] = MsgData { seq: *s, status: MSG_STATUS_DELETED, ..Default::default() };
            }
        }
        let conv = st
            .conversations
            .values()
            .find(|c| c.conversation_id == r.conversation_id)
            .cloned()
            .ok_or_else(|| ApiError::RecordNotFound("conversation not found".into()))?;
        let recv = recv_of(&conv, &r.user_id);
        notify(ctx, &mut st, (&r.user_id, &recv), DELETE_MSGS_NOTIFICATION, conv.conversation_type, tips);
        return Ok(None);
    }
    for s in in_range {
        let list = st.msg_del_lists.entry((r.conversation_id.clone(), s)).or_default();
        if !list.contains(&r.user_id) {
            list.push(r.user_id.clone());
        }
    }
    if opt.is_sync_self {
        notify(ctx, &mut st, (&r.user_id, &r.user_id), DELETE_MSGS_NOTIFICATION, 1, tips);
    }
    Ok(None)
}

/// `conversationAndGetRecvID`: the other side of a single/notification chat, the group of a
/// group chat.
fn recv_of(conv: &crate::state::Conversation, user_id: &str) -> String {
    match conv.conversation_type {
        1 | 4 if conv.owner_user_id == user_id => conv.user_id.clone(),
        1 | 4 => conv.owner_user_id.clone(),
        3 => conv.group_id.clone(),
        _ => String::new(),
    }
}

/// SELF(userID): clear the listed conversations (see [`clear`]).
fn clear_conversation_msg(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    let ids = r.conversation_ids.ok_or_else(|| ApiError::Args("conversationIDs is empty".into()))?;
    require(&r.user_id, "userID")?;
    ctx.check_access(&r.user_id)?;
    clear(&mut ctx.lock(), &ids, &r.user_id, r.delete_sync_opt.unwrap_or_default());
    Ok(None)
}

/// SELF(userID): clear every conversation the user has a record of.
fn user_clear_all_msg(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.user_id, "userID")?;
    ctx.check_access(&r.user_id)?;
    let mut st = ctx.lock();
    let ids: Vec<String> = st.conversations.keys().filter(|(o, _)| *o == r.user_id).map(|(_, c)| c.clone()).collect();
    clear(&mut st, &ids, &r.user_id, r.delete_sync_opt.unwrap_or_default());
    Ok(None)
}

/// `clearConversation`: the conversations are looked up by ID among **all** owners' records.
/// Without `isSyncOther` the user's own min seq (and their record's `minSeq`) moves past the
/// current max seq; with it ⚠ the conversation's min seq moves, hiding the history from everyone.
/// Either way the user's read seq becomes the max seq.
fn clear(st: &mut State, ids: &[String], user_id: &str, opt: SyncOpt) {
    let existing: Vec<crate::state::Conversation> =
        st.conversations.values().filter(|c| ids.contains(&c.conversation_id)).cloned().collect();
    let mut max: Vec<(String, i64)> =
        existing.iter().map(|c| (c.conversation_id.clone(), st.max_seq(&c.conversation_id))).collect();
    max.sort();
    max.dedup();
    for (cid, seq) in &max {
        if opt.is_sync_other {
            st.conversation_min_seqs.insert(cid.clone(), seq + 1);
        } else {
            st.user_min_seqs.insert((user_id.to_string(), cid.clone()), seq + 1);
            if let Some(c) = st.conversations.get_mut(&(user_id.to_string(), cid.clone())) {
                c.min_seq = seq + 1;
                st.conversation_versions.incr(user_id, &[cid], STATE_UPDATE);
            }
        }
        if let Some(c) = st.conversations.get_mut(&(user_id.to_string(), cid.clone())) {
            c.has_read_seq = *seq;
        }
    }
    // The 1703 ClearConversationNotification has no options configured upstream (history
    // off), so it is never stored: nothing to keep here.
}
