//! `/msg/*` routes: REST send_msg and the send pipeline of contract §5.7, send status, pulling
//! by seq, newest seqs, search, read positions and server time.
//!
//! Faithful weaknesses (§10): send_msg lets the admin impersonate any `sendID`; contentTypes
//! 1000–5000 skip blacklist and membership checks; `search_msg` searches every user's messages
//! for any token; `pull_msg_by_seq` does not check membership of `n_` conversations. Not
//! implemented (404): revoke, delete/clear, batch/business/simple sends, set_conversation_has_read_seq.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::json::{decode, fold, nested};
use crate::server::{App, Ctx, HResult, Handler};
use crate::state::*;
use crate::user::Pagination;

pub fn routes() -> Vec<(&'static str, Handler)> {
    vec![
        ("/msg/send_msg", send_msg as Handler),
        ("/msg/check_msg_is_send_success", check_msg_is_send_success),
        ("/msg/pull_msg_by_seq", pull_msg_by_seq),
        ("/msg/newest_seq", newest_seq),
        ("/msg/search_msg", search_msg),
        ("/msg/get_server_time", get_server_time),
        ("/msg/get_conversations_has_read_and_max_seq", get_conversations_has_read_and_max_seq),
        ("/msg/mark_conversation_as_read", mark_conversation_as_read),
    ]
}

/// `apistruct.SendMsgReq` (gin `BindJSON`; binding errors are HTTP 400).
#[derive(Deserialize, Default)]
#[serde(default)]
struct SendMsgReq {
    #[serde(rename = "sendID")]
    send_id: String,
    #[serde(rename = "recvID")]
    recv_id: String,
    #[serde(rename = "groupID")]
    group_id: String,
    #[serde(rename = "senderNickname")]
    sender_nickname: String,
    #[serde(rename = "senderFaceURL")]
    sender_face_url: String,
    #[serde(rename = "senderPlatformID")]
    sender_platform_id: i32,
    content: Option<Map<String, Value>>,
    #[serde(rename = "contentType")]
    content_type: i32,
    #[serde(rename = "sessionType")]
    session_type: i32,
    #[serde(rename = "isOnlineOnly")]
    is_online_only: bool,
    #[serde(rename = "notOfflinePush")]
    not_offline_push: bool,
    #[serde(rename = "sendTime")]
    send_time: i64,
    #[serde(rename = "offlinePushInfo", deserialize_with = "nested")]
    offline_push_info: Option<OfflinePushInfo>,
    ex: String,
}

fn bind_required(field: &str, tag: &str) -> ApiError {
    ApiError::Binding(format!(
        "Key: 'SendMsgReq.{field}' Error:Field validation for '{field}' failed on the '{tag}' tag"
    ))
}

/// gin `BindJSON` + `binding:"required"` / `required_if` tags.
fn bind_send_msg(body: &[u8]) -> Result<SendMsgReq, ApiError> {
    let req: SendMsgReq = decode(body).map_err(|e| ApiError::Binding(e.msg()))?;
    if req.send_id.is_empty() {
        return Err(bind_required("SendID", "required"));
    }
    if req.content.is_none() {
        return Err(bind_required("Content", "required"));
    }
    if req.content_type == 0 {
        return Err(bind_required("ContentType", "required"));
    }
    if req.session_type == 0 {
        return Err(bind_required("SessionType", "required"));
    }
    if matches!(req.session_type, 1 | 4) && req.recv_id.is_empty() {
        return Err(bind_required("RecvID", "required_if"));
    }
    if matches!(req.session_type, 2 | 3) && req.group_id.is_empty() {
        return Err(bind_required("GroupID", "required_if"));
    }
    Ok(req)
}

/// ADMIN; the admin may set any `sendID` (impersonation by design, §10.9).
fn send_msg(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req = bind_send_msg(body)?;
    if !ctx.is_admin() {
        return Err(ApiError::NoPermission("only app manager can send message".into()));
    }
    let content = req.content.unwrap_or_default();
    crate::content::validate(req.content_type, &content)?;
    let mut session_type = req.session_type;
    let mut st = ctx.lock();
    if req.content_type == 1400 {
        let level = st.user(&req.send_id).map(|u| u.app_manger_level).unwrap_or(0);
        if level < 2 && !ctx.app.is_admin_id(&req.send_id) {
            return Err(ApiError::NoPermission("only notification/system accounts can send OA notifications".into()));
        }
        session_type = 4;
    }
    let mut options = std::collections::BTreeMap::new();
    if req.is_online_only {
        for k in ["history", "persistent", "senderSync", "conversationUpdate"] {
            options.insert(k.to_string(), false);
        }
    }
    if req.not_offline_push {
        options.insert("offlinePush".to_string(), false);
    }
    let now = now_ms();
    let msg = MsgData {
        send_id: req.send_id,
        recv_id: req.recv_id,
        group_id: req.group_id,
        client_msg_id: random_md5(),
        sender_platform_id: req.sender_platform_id,
        sender_nickname: req.sender_nickname,
        sender_face_url: req.sender_face_url,
        session_type,
        msg_from: 200,
        content_type: req.content_type,
        content: serde_json::to_vec(&content).unwrap_or_default(),
        send_time: req.send_time,
        create_time: now,
        options,
        offline_push_info: req.offline_push_info,
        ex: req.ex,
        ..Default::default()
    };
    let sent = send(&mut st, ctx.app, &ctx.operation_id, msg)?;
    st.send_status.insert(ctx.operation_id.clone(), 2);
    Ok(Some(json!({"serverMsgID": sent.server_msg_id, "clientMsgID": sent.client_msg_id, "sendTime": sent.send_time})))
}

fn is_notification_type(content_type: i32) -> bool {
    (1000..=5000).contains(&content_type)
}

/// The RPC send pipeline (§5.7); stores the message and returns it with its seq.
/// `operation_id` is the request's: OpenIM's pushes carry it (`S internal/msggateway/client.go:277-280`).
pub fn send(st: &mut State, app: &App, operation_id: &str, mut msg: MsgData) -> Result<MsgData, ApiError> {
    if msg.send_id.is_empty() {
        return Err(ApiError::Args("sendID is empty".into()));
    }
    if msg.content.is_empty() {
        return Err(ApiError::Args("content is empty".into()));
    }
    if (msg.session_type == 4) != (msg.content_type == 1400) {
        return Err(ApiError::Args("sessionType 4 requires contentType 1400".into()));
    }
    msg.server_msg_id = random_md5();
    if msg.send_time == 0 {
        msg.send_time = now_ms();
    }
    let cid = match msg.session_type {
        1 => {
            verify_single(st, app, &msg)?;
            apply_recv_opt(st, &mut msg)?;
            single_conversation_id(&msg.send_id, &msg.recv_id)
        }
        3 => {
            verify_group(st, app, &msg)?;
            group_conversation_id(&msg.group_id)
        }
        4 => notification_conversation_id(&msg.send_id, &msg.recv_id),
        _ => return Err(ApiError::Args("unknown sessionType".into())),
    };
    if msg.option("history") {
        store(st, &cid, &mut msg);
    }
    crate::ws::push_msg(app, st, operation_id, &msg);
    Ok(msg)
}

/// Single-chat verification: admin sender or notification types skip everything.
fn verify_single(st: &State, app: &App, msg: &MsgData) -> Result<(), ApiError> {
    if app.is_admin_id(&msg.send_id) || is_notification_type(msg.content_type) {
        return Ok(());
    }
    let sender =
        st.user(&msg.send_id).ok_or_else(|| ApiError::RecordNotFound(format!("user {} not found", msg.send_id)))?;
    if sender.app_manger_level >= 2 {
        return Ok(());
    }
    if st.is_black(&msg.recv_id, &msg.send_id) {
        return Err(ApiError::BlockedByPeer(String::new()));
    }
    if app.config.friend_verify && !st.is_friend(&msg.recv_id, &msg.send_id) {
        return Err(ApiError::NotPeersFriend(String::new()));
    }
    Ok(())
}

/// Recipient's global and per-conversation receive options (NotReceive ⇒ 1001).
fn apply_recv_opt(st: &State, msg: &mut MsgData) -> Result<(), ApiError> {
    let recv =
        st.user(&msg.recv_id).ok_or_else(|| ApiError::RecordNotFound(format!("user {} not found", msg.recv_id)))?;
    let not_sent = || ApiError::Args("message is not sent".into());
    match recv.global_recv_msg_opt {
        1 => return Err(not_sent()),
        2 => {
            msg.options.insert("offlinePush".into(), false);
        }
        _ => {}
    }
    let cid = single_conversation_id(&msg.send_id, &msg.recv_id);
    match st.conversations.get(&(msg.recv_id.clone(), cid)).map(|c| c.recv_msg_opt) {
        Some(1) => Err(not_sent()),
        Some(2) => {
            msg.options.insert("offlinePush".into(), false);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Group verification: exists, not dismissed; admin sender / notification types skip the rest.
fn verify_group(st: &State, app: &App, msg: &MsgData) -> Result<(), ApiError> {
    let g = st
        .groups
        .get(&msg.group_id)
        .ok_or_else(|| ApiError::RecordNotFound(format!("group {} not found", msg.group_id)))?;
    if g.status == GROUP_DISMISSED && msg.content_type != 1511 {
        return Err(ApiError::DismissedAlready(String::new()));
    }
    if g.group_type == 1 || app.is_admin_id(&msg.send_id) || is_notification_type(msg.content_type) {
        return Ok(());
    }
    let m = g.member(&msg.send_id).ok_or_else(|| ApiError::NotInGroupYet(String::new()))?;
    if m.role_level == ROLE_OWNER {
        return Ok(());
    }
    if m.mute_end_time >= now_ms() {
        return Err(ApiError::MutedInGroup(String::new()));
    }
    if g.status == GROUP_MUTED && m.role_level != ROLE_ADMIN {
        return Err(ApiError::MutedGroup(String::new()));
    }
    Ok(())
}

/// Assign the next seq, store, and create the participants' conversation records.
fn store(st: &mut State, cid: &str, msg: &mut MsgData) {
    let list = st.messages.entry(cid.to_string()).or_default();
    msg.seq = list.len() as i64 + 1;
    list.push(msg.clone());
    match msg.session_type {
        3 => {
            let members: Vec<String> = st
                .groups
                .get(&msg.group_id)
                .map(|g| g.members.iter().map(|m| m.user_id.clone()).collect())
                .unwrap_or_default();
            for m in members {
                st.ensure_conversation(&m, cid, 3, "", &msg.group_id);
            }
        }
        t => {
            let (a, b) = (msg.send_id.clone(), msg.recv_id.clone());
            st.ensure_conversation(&a, cid, t, &b, "");
            st.ensure_conversation(&b, cid, t, &a, "");
        }
    }
    for c in st.conversations.values_mut().filter(|c| c.conversation_id == cid) {
        c.max_seq = msg.seq;
    }
}

fn check_msg_is_send_success(ctx: &Ctx<'_>, _body: &[u8]) -> HResult {
    let status = ctx.lock().send_status.get(&ctx.operation_id).copied().unwrap_or(0);
    Ok(Some(json!({ "status": status })))
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct SeqRange {
    #[serde(rename = "conversationID")]
    conversation_id: String,
    begin: i64,
    end: i64,
    num: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PullReq {
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "seqRanges")]
    seq_ranges: Vec<Value>,
    order: i32,
}

/// Messages of one range as `PullMsgs` JSON.
fn pull_range(st: &State, r: &SeqRange, desc: bool) -> Value {
    let all = st.messages.get(&r.conversation_id).map(Vec::as_slice).unwrap_or(&[]);
    let max = all.len() as i64;
    let (lo, hi) = (r.begin.max(1), r.end.min(max));
    let mut msgs: Vec<&MsgData> =
        if lo <= hi { all[(lo - 1) as usize..hi as usize].iter().collect() } else { Vec::new() };
    if r.num > 0 && msgs.len() as i64 > r.num {
        let n = r.num as usize;
        msgs = if desc { msgs.split_off(msgs.len() - n) } else { msgs.into_iter().take(n).collect() };
    }
    let is_end = if desc { msgs.first().is_none_or(|m| m.seq <= 1) } else { msgs.last().is_none_or(|m| m.seq >= max) };
    let list = if msgs.is_empty() { Value::Null } else { json!(msgs) };
    json!({"Msgs": list, "isEnd": is_end, "endSeq": 0})
}

/// SELF(userID); ranges of conversations the user has no record of are silently skipped, except
/// `n_` notification conversations (⚠ not membership-checked).
fn pull_msg_by_seq(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: PullReq = decode(body)?;
    ctx.check_access(&req.user_id)?;
    let st = ctx.lock();
    let (mut msgs, mut notes) = (Map::new(), Map::new());
    for mut raw in req.seq_ranges {
        fold::<SeqRange>(&mut raw);
        let r: SeqRange =
            serde_json::from_value(raw).map_err(|e| ApiError::JsonDecode(format!("json: cannot unmarshal: {e}")))?;
        if r.conversation_id.starts_with("n_") {
            notes.insert(r.conversation_id.clone(), pull_range(&st, &r, req.order == 1));
        } else if st.conversations.contains_key(&(req.user_id.clone(), r.conversation_id.clone())) {
            msgs.insert(r.conversation_id.clone(), pull_range(&st, &r, req.order == 1));
        }
    }
    let mut out = Map::new();
    if !msgs.is_empty() {
        out.insert("msgs".into(), Value::Object(msgs));
    }
    if !notes.is_empty() {
        out.insert("notificationMsgs".into(), Value::Object(notes));
    }
    Ok(Some(Value::Object(out)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserReq {
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "conversationIDs")]
    conversation_ids: Vec<String>,
    #[serde(rename = "returnPinned")]
    return_pinned: bool,
    #[serde(rename = "conversationID")]
    conversation_id: String,
    #[serde(rename = "hasReadSeq")]
    has_read_seq: i64,
}

fn newest_seq(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: UserReq = decode(body)?;
    ctx.check_access(&req.user_id)?;
    let st = ctx.lock();
    let mut max = Map::new();
    for ((_, cid), _) in st.conversations.iter().filter(|((o, _), _)| *o == req.user_id) {
        let seq = st.max_seq(cid);
        if seq > 0 {
            max.insert(cid.clone(), json!(seq));
        }
    }
    let mut out = Map::new();
    if !max.is_empty() {
        out.insert("maxSeqs".into(), Value::Object(max));
    }
    Ok(Some(Value::Object(out)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SearchReq {
    #[serde(rename = "sendID")]
    send_id: String,
    #[serde(rename = "recvID")]
    recv_id: String,
    #[serde(rename = "contentType")]
    content_type: i32,
    #[serde(rename = "sendTime")]
    send_time: String,
    #[serde(rename = "sessionType")]
    session_type: i32,
    #[serde(deserialize_with = "nested")]
    pagination: Option<Pagination>,
}

/// `YYYY-MM-DD` (UTC) of a millisecond timestamp.
fn day_of(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn chat_log(st: &State, m: &MsgData) -> Value {
    let g = st.groups.get(&m.group_id);
    json!({"chatLog": {
        "serverMsgID": m.server_msg_id, "clientMsgID": m.client_msg_id, "sendID": m.send_id,
        "recvID": m.recv_id, "groupID": m.group_id,
        "recvNickname": st.user(&m.recv_id).map(|u| u.nickname.clone()).unwrap_or_default(),
        "senderPlatformID": m.sender_platform_id, "senderNickname": m.sender_nickname,
        "senderFaceURL": m.sender_face_url, "groupName": g.map(|g| g.group_name.clone()).unwrap_or_default(),
        "sessionType": m.session_type, "msgFrom": m.msg_from, "contentType": m.content_type,
        "content": String::from_utf8_lossy(&m.content), "status": m.status, "sendTime": m.send_time,
        "createTime": m.create_time, "ex": m.ex,
        "groupFaceURL": g.map(|g| g.face_url.clone()).unwrap_or_default(),
        "groupMemberCount": g.map(|g| g.members.len() as u32).unwrap_or(0), "seq": m.seq,
        "groupOwner": g.and_then(|g| g.owner()).map(|o| o.user_id.clone()).unwrap_or_default(),
        "groupType": g.map(|g| g.group_type).unwrap_or(0),
    }, "isRevoked": false})
}

/// ⚠ Searches every user's messages, whatever the token (§10.4).
fn search_msg(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: SearchReq = decode(body)?;
    let st = ctx.lock();
    let mut found: Vec<&MsgData> = st
        .messages
        .values()
        .flatten()
        .filter(|m| req.send_id.is_empty() || m.send_id == req.send_id)
        .filter(|m| req.recv_id.is_empty() || m.recv_id == req.recv_id)
        .filter(|m| req.content_type == 0 || m.content_type == req.content_type)
        .filter(|m| req.session_type == 0 || m.session_type == req.session_type)
        .filter(|m| req.send_time.is_empty() || day_of(m.send_time) == req.send_time)
        .collect();
    found.sort_by(|a, b| b.send_time.cmp(&a.send_time).then(b.seq.cmp(&a.seq)));
    let total = found.len() as i32;
    let page = match &req.pagination {
        Some(p) => paginate(&found, p.page_number, p.show_number),
        None => found,
    };
    let logs: Vec<Value> = page.iter().map(|m| chat_log(&st, m)).collect();
    Ok(Some(json!({"chatLogs": logs, "chatLogsNum": total})))
}

fn get_server_time(_ctx: &Ctx<'_>, _body: &[u8]) -> HResult {
    Ok(Some(json!({ "serverTime": now_ms() })))
}

fn get_conversations_has_read_and_max_seq(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: UserReq = decode(body)?;
    ctx.check_access(&req.user_id)?;
    let st = ctx.lock();
    let mut seqs = Map::new();
    let mut pinned = Vec::new();
    for ((_, cid), c) in st.conversations.iter().filter(|((o, _), _)| *o == req.user_id) {
        if !req.conversation_ids.is_empty() && !req.conversation_ids.contains(cid) {
            continue;
        }
        let max_time = st.messages.get(cid).and_then(|v| v.last()).map(|m| m.send_time).unwrap_or(0);
        seqs.insert(
            cid.clone(),
            json!({"maxSeq": st.max_seq(cid), "hasReadSeq": c.has_read_seq, "maxSeqTime": max_time}),
        );
        if c.is_pinned {
            pinned.push(cid.clone());
        }
    }
    let mut out = Map::new();
    if !seqs.is_empty() {
        out.insert("seqs".into(), Value::Object(seqs));
    }
    let pinned = if req.return_pinned && !pinned.is_empty() { json!(pinned) } else { Value::Null };
    out.insert("pinnedConversationIDs".into(), pinned);
    Ok(Some(Value::Object(out)))
}

fn mark_conversation_as_read(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: UserReq = decode(body)?;
    ctx.check_access(&req.user_id)?;
    let mut st = ctx.lock();
    let max = st.max_seq(&req.conversation_id);
    let c = st
        .conversations
        .get_mut(&(req.user_id.clone(), req.conversation_id.clone()))
        .ok_or_else(|| ApiError::RecordNotFound("conversation not found".into()))?;
    if req.has_read_seq > max {
        return Err(ApiError::Args("hasReadSeq must not be bigger than maxSeq".into()));
    }
    c.has_read_seq = c.has_read_seq.max(req.has_read_seq);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn user(st: &mut State, id: &str) {
        st.add_user(UserInfo { user_id: id.into(), nickname: id.into(), ..Default::default() });
    }

    /// §10.8: notification contentTypes (1000–5000) skip blacklist and membership checks. REST
    /// send_msg cannot produce them (unsupported content type), so the pipeline is driven directly.
    #[test]
    fn notification_content_types_bypass_checks() {
        let app = App::new(Config::default());
        let mut st = app.lock();
        for id in ["a", "b", "o"] {
            user(&mut st, id);
        }
        st.blacks.insert(("b".into(), "a".into()), Black::default());
        let g = Group {
            group_id: "g".into(),
            group_type: 2,
            members: vec![Member { user_id: "o".into(), role_level: ROLE_OWNER, ..Default::default() }],
            ..Default::default()
        };
        st.groups.insert("g".into(), g);
        let single = MsgData {
            send_id: "a".into(),
            recv_id: "b".into(),
            session_type: 1,
            content_type: 101,
            content: b"{}".to_vec(),
            ..Default::default()
        };
        assert_eq!(send(&mut st, &app, "op", single.clone()).unwrap_err().code(), 1302);
        let sent = send(&mut st, &app, "op", MsgData { content_type: 1201, ..single }).unwrap();
        assert_eq!(sent.seq, 1);
        let group = MsgData {
            send_id: "a".into(),
            group_id: "g".into(),
            session_type: 3,
            content_type: 101,
            content: b"{}".to_vec(),
            ..Default::default()
        };
        assert_eq!(send(&mut st, &app, "op", group.clone()).unwrap_err().code(), 1203);
        assert!(send(&mut st, &app, "op", MsgData { content_type: 1501, ..group }).is_ok());
        // sessionType 4 + 1400 is accepted from anyone with no checks.
        let oa = MsgData {
            send_id: "a".into(),
            recv_id: "nobody".into(),
            session_type: 4,
            content_type: 1400,
            content: b"{}".to_vec(),
            ..Default::default()
        };
        assert_eq!(send(&mut st, &app, "op", oa).unwrap().seq, 1);
        assert_eq!(st.max_seq("sn_a_nobody"), 1);
    }

    #[test]
    fn day_formatting() {
        assert_eq!(super::day_of(0), "1970-01-01");
        assert_eq!(super::day_of(1_709_251_200_000), "2024-03-01");
    }
}
