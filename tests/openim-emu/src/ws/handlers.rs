//! The request identifiers of the msg gateway (contract §5.5): each takes the frame's protobuf
//! `data` and returns the reply's protobuf or the error OpenIM would answer with. Where the HTTP
//! API has the same RPC, its handler is called, so both surfaces behave alike.

use axum::http::HeaderMap;
use openim_wire::pb::{msg as pbmsg, push as pbpush, sdkws};
use openim_wire::{ident, Req};
use prost::Message;
use serde_json::{json, Value};

use super::convert::{from_pb, pull_msgs_from_json, to_pb};
use crate::error::ApiError;
use crate::server::{App, Ctx};
use crate::state::{MsgData, MSG_STATUS_DELETED};

/// The connection a request came in on: its id and the identity of its RPC context.
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) user_id: String,
    pub(super) platform_id: i32,
}

/// What a request produced: reply data or an error for the reply.
pub(super) type Outcome = Result<Vec<u8>, ApiError>;

/// Handle one request; `None` for an identifier OpenIM does not know (fatal).
pub(super) fn handle(app: &App, conn: &Conn, req: &Req) -> Option<Outcome> {
    let op = req.operation_id.as_str();
    let data = req.data.as_slice();
    Some(match req.req_identifier {
        ident::GET_NEWEST_SEQ => get_newest_seq(app, conn, op, data),
        ident::PULL_MSG_BY_SEQ_LIST => pull_msg_by_seq_list(app, conn, op, data),
        ident::SEND_MSG => send_msg(app, conn, op, data),
        // `SendMsg(ctx, nil)`: the RPC's validation interceptor refuses the empty request.
        ident::SEND_SIGNAL_MSG => Err(ApiError::Args("MsgData is empty".into())),
        ident::PULL_MSG => pull_msg(app, data),
        ident::GET_CONV_MAX_READ_SEQ => get_conv_max_read_seq(app, conn, op, data),
        ident::PULL_CONV_LAST_MESSAGE => pull_conv_last_message(app, data),
        ident::LOGOUT_MSG => logout(data),
        ident::SET_BACKGROUND_STATUS => set_background(app, conn, data),
        ident::SUB_USER_ONLINE_STATUS => sub_user_online_status(app, conn, data),
        _ => return None,
    })
}

/// `proto.Unmarshal` failures are plain Go errors: 500 ServerInternalError.
fn decode<M: Message + Default>(data: &[u8], what: &str) -> Result<M, ApiError> {
    M::decode(data).map_err(|e| ApiError::ServerInternal(format!("{what}: error unmarshaling request: {e}")))
}

/// Call an HTTP API handler of `/msg/*` with the connection's identity.
fn rest(app: &App, conn: &Conn, op: &str, path: &str, body: Value) -> Result<Value, ApiError> {
    let handler = crate::msg::routes()
        .into_iter()
        .find(|(p, _)| *p == path)
        .map(|(_, h)| h)
        .ok_or_else(|| ApiError::ServerInternal(format!("no handler for {path}")))?;
    let headers = HeaderMap::new();
    let ctx = ctx(app, conn, op, &headers);
    Ok(handler(&ctx, body.to_string().as_bytes())?.unwrap_or(Value::Null))
}

fn ctx<'a>(app: &'a App, conn: &Conn, op: &str, headers: &'a HeaderMap) -> Ctx<'a> {
    Ctx { app, operation_id: op.to_string(), op_user: conn.user_id.clone(), platform_id: conn.platform_id, headers }
}

/// 1001 through `/msg/newest_seq`.
fn get_newest_seq(app: &App, conn: &Conn, op: &str, data: &[u8]) -> Outcome {
    let req: sdkws::GetMaxSeqReq = decode(data, "GetSeq")?;
    let v = rest(app, conn, op, "/msg/newest_seq", json!({"userID": req.user_id}))?;
    let seqs = |k: &str| {
        v.get(k)
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(c, s)| (c.clone(), s.as_i64().unwrap_or(0))).collect())
            .unwrap_or_default()
    };
    Ok(sdkws::GetMaxSeqResp { max_seqs: seqs("maxSeqs"), min_seqs: seqs("minSeqs") }.encode_to_vec())
}

/// 1002 through `/msg/pull_msg_by_seq` (no membership check for `n_` conversations, §10.5).
fn pull_msg_by_seq_list(app: &App, conn: &Conn, op: &str, data: &[u8]) -> Outcome {
    let req: sdkws::PullMessageBySeqsReq = decode(data, "PullMessageBySeqList")?;
    let ranges: Vec<Value> = req
        .seq_ranges
        .iter()
        .map(|r| json!({"conversationID": r.conversation_id, "begin": r.begin, "end": r.end, "num": r.num}))
        .collect();
    let body = json!({"userID": req.user_id, "seqRanges": ranges, "order": req.order});
    let v = rest(app, conn, op, "/msg/pull_msg_by_seq", body)?;
    let resp = sdkws::PullMessageBySeqsResp {
        msgs: pull_msgs_from_json(v.get("msgs")),
        notification_msgs: pull_msgs_from_json(v.get("notificationMsgs")),
    };
    Ok(resp.encode_to_vec())
}

/// `MsgData.Check()` (`P sdkws/sdkws.go:10-22`), which the RPC interceptor runs before the
/// handler's `CheckAccess`.
fn check_msg_data(m: &sdkws::MsgData) -> Result<(), ApiError> {
    if m.send_id.is_empty() {
        return Err(ApiError::Args("sendID is empty".into()));
    }
    if m.content.is_empty() {
        return Err(ApiError::Args("content is empty".into()));
    }
    if (m.session_type == 4) != (m.content_type == 1400) {
        return Err(ApiError::Args("notification msg must have correct session type and content type".into()));
    }
    Ok(())
}

/// 1003: the send pipeline of `/msg/send_msg` (§5.7), as the connection's user.
fn send_msg(app: &App, conn: &Conn, op: &str, data: &[u8]) -> Outcome {
    let m: sdkws::MsgData = decode(data, "SendMessage")?;
    check_msg_data(&m)?;
    let headers = HeaderMap::new();
    ctx(app, conn, op, &headers).check_access(&m.send_id)?;
    let sent = {
        let mut st = app.lock();
        crate::msg::send(&mut st, app, op, from_pb(m))?
    };
    let resp = pbmsg::SendMsgResp {
        server_msg_id: sent.server_msg_id,
        client_msg_id: sent.client_msg_id,
        send_time: sent.send_time,
        modify: None,
    };
    Ok(resp.encode_to_vec())
}

/// 1005 (`GetSeqMessage` + `GetMessagesBySeqWithBounds`): no check of `userID` or membership.
fn pull_msg(app: &App, data: &[u8]) -> Outcome {
    let req: pbmsg::GetSeqMessageReq = decode(data, "GetSeqMessage")?;
    let desc = req.order == sdkws::PullOrder::PullOrderDesc as i32;
    let st = app.lock();
    let mut resp = pbmsg::GetSeqMessageResp::default();
    for conv in &req.conversations {
        let cid = &conv.conversation_id;
        let (min, max) = (st.min_seq_for(&req.user_id, cid), st.max_seq(cid));
        let (mut is_end, mut end_seq) = (false, 0);
        let mut msgs = Vec::new();
        for &seq in conv.seqs.iter().filter(|s| **s > 0) {
            if seq >= min && seq <= max {
                let found = st.msg_for_user(&req.user_id, cid, seq);
                msgs.push(found.as_ref().map(to_pb).unwrap_or_else(|| deleted(seq)));
            } else if seq < min && desc {
                (is_end, end_seq) = (true, min);
            } else if seq > max && !desc {
                (is_end, end_seq) = (true, max);
            }
        }
        let map = if cid.starts_with("n_") { &mut resp.notification_msgs } else { &mut resp.msgs };
        let pull = map.entry(cid.clone()).or_default();
        pull.msgs.extend(msgs);
        pull.is_end = is_end;
        pull.end_seq = end_seq;
    }
    Ok(resp.encode_to_vec())
}

/// The placeholder OpenIM returns for a seq it has no message for.
fn deleted(seq: i64) -> sdkws::MsgData {
    sdkws::MsgData { seq, status: MSG_STATUS_DELETED, ..Default::default() }
}

/// 1006 through `/msg/get_conversations_has_read_and_max_seq`.
fn get_conv_max_read_seq(app: &App, conn: &Conn, op: &str, data: &[u8]) -> Outcome {
    let req: pbmsg::GetConversationsHasReadAndMaxSeqReq = decode(data, "GetConversationsHasReadAndMaxSeq")?;
    let body =
        json!({"userID": req.user_id, "conversationIDs": req.conversation_ids, "returnPinned": req.return_pinned});
    let v = rest(app, conn, op, "/msg/get_conversations_has_read_and_max_seq", body)?;
    let seqs = v
        .get("seqs")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(cid, s)| {
                    let n = |k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0);
                    (
                        cid.clone(),
                        pbmsg::Seqs {
                            max_seq: n("maxSeq"),
                            has_read_seq: n("hasReadSeq"),
                            max_seq_time: n("maxSeqTime"),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let pinned = v
        .get("pinnedConversationIDs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    Ok(pbmsg::GetConversationsHasReadAndMaxSeqResp { seqs, pinned_conversation_ids: pinned }.encode_to_vec())
}

/// 1007 (`GetLastMessage`): the last message whose status is below "deleted", as `userID`
/// sees it (their own deletions applied); no check of `userID` or membership. As in OpenIM, each
/// requested id is a regular expression: `^<id>:` over the message documents (`<conversation
/// id>:<n>`), newest first (`S pkg/common/storage/database/mgo/msg.go:1006-1060`), so `.*` or
/// `si_.*` read the newest message of conversations that are not the caller's.
fn pull_conv_last_message(app: &App, data: &[u8]) -> Outcome {
    let req: pbmsg::GetLastMessageReq = decode(data, "GetLastMessage")?;
    let st = app.lock();
    let mut resp = pbmsg::GetLastMessageResp::default();
    for cid in &req.conversation_ids {
        if resp.msgs.contains_key(cid) {
            continue;
        }
        let re = regex::Regex::new(&format!("^{cid}:")).map_err(|e| ApiError::ServerInternal(e.to_string()))?;
        let last: Option<(&String, &MsgData)> = st
            .messages
            .iter()
            .filter(|(conv, _)| re.is_match(&format!("{conv}:0")))
            .filter_map(|(conv, v)| v.iter().rev().find(|m| m.status < MSG_STATUS_DELETED).map(|m| (conv, m)))
            .max_by_key(|(_, m)| m.send_time);
        let Some((conv, last)) = last else { continue };
        let mut m = to_pb(last);
        let del = st.msg_del_lists.get(&(conv.clone(), last.seq));
        if del.is_some_and(|users| users.contains(&req.user_id)) {
            m.content.clear();
            m.status = MSG_STATUS_DELETED;
        }
        resp.msgs.insert(cid.clone(), m);
    }
    Ok(resp.encode_to_vec())
}

/// 2003: `DelUserPushToken` (the emulator keeps no push tokens); the caller closes afterwards.
fn logout(data: &[u8]) -> Outcome {
    let _req: pbpush::DelUserPushTokenReq = decode(data, "UserLogout")?;
    Ok(pbpush::DelUserPushTokenResp {}.encode_to_vec())
}

/// 2004: the connection's background flag (iOS connections in background get no pushes).
fn set_background(app: &App, conn: &Conn, data: &[u8]) -> Outcome {
    let req: sdkws::SetAppBackgroundStatusReq = decode(data, "SetAppBackgroundStatus")?;
    app.ws.set_background(conn.id, req.is_background);
    Ok(Vec::new())
}

/// 2005: (un)subscribe this connection; reply with the subscribed users' online platforms.
fn sub_user_online_status(app: &App, conn: &Conn, data: &[u8]) -> Outcome {
    let req: sdkws::SubUserOnlineStatus = decode(data, "SubUserOnlineStatus")?;
    app.ws.subscribe(conn.id, &req.subscribe_user_id, &req.unsubscribe_user_id);
    let subscribers = req
        .subscribe_user_id
        .iter()
        .map(|u| sdkws::SubUserOnlineStatusElem { user_id: u.clone(), online_platform_ids: app.ws.online_platforms(u) })
        .collect();
    Ok(sdkws::SubUserOnlineStatusTips { subscribers }.encode_to_vec())
}
