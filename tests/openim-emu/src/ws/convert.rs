//! The emulator's message records as protobuf, both ways, and the 2001 push of a stored message:
//! the one place that knows how `state::MsgData` (and its JSON from the HTTP handlers) maps onto
//! `sdkws.MsgData`.

use base64::Engine;
use openim_wire::pb::sdkws;
use openim_wire::{ident, Resp};
use prost::Message as _;
use serde_json::Value;

use crate::server::App;
use crate::state::{MsgData, OfflinePushInfo, State};

/// `constant.MsgStatusSending` / `MsgStatusSendSuccess`.
const STATUS_SENDING: i32 = 1;
const STATUS_SENT: i32 = 2;

/// A stored message as protobuf.
pub fn to_pb(m: &MsgData) -> sdkws::MsgData {
    sdkws::MsgData {
        send_id: m.send_id.clone(),
        recv_id: m.recv_id.clone(),
        group_id: m.group_id.clone(),
        client_msg_id: m.client_msg_id.clone(),
        server_msg_id: m.server_msg_id.clone(),
        sender_platform_id: m.sender_platform_id,
        sender_nickname: m.sender_nickname.clone(),
        sender_face_url: m.sender_face_url.clone(),
        session_type: m.session_type,
        msg_from: m.msg_from,
        content_type: m.content_type,
        content: m.content.clone(),
        seq: m.seq,
        send_time: m.send_time,
        create_time: m.create_time,
        status: m.status,
        is_read: m.is_read,
        options: m.options.clone(),
        offline_push_info: m.offline_push_info.as_ref().map(|o| sdkws::OfflinePushInfo {
            title: o.title.clone(),
            desc: o.desc.clone(),
            ex: o.ex.clone(),
            ios_push_sound: o.ios_push_sound.clone(),
            ios_badge_count: o.ios_badge_count,
            signal_info: o.signal_info.clone(),
        }),
        at_user_id_list: m.at_user_id_list.clone().unwrap_or_default(),
        attached_info: m.attached_info.clone(),
        ex: m.ex.clone(),
    }
}

/// A message received over WS 1003, as the send pipeline takes it.
pub(super) fn from_pb(m: sdkws::MsgData) -> MsgData {
    MsgData {
        send_id: m.send_id,
        recv_id: m.recv_id,
        group_id: m.group_id,
        client_msg_id: m.client_msg_id,
        server_msg_id: m.server_msg_id,
        sender_platform_id: m.sender_platform_id,
        sender_nickname: m.sender_nickname,
        sender_face_url: m.sender_face_url,
        session_type: m.session_type,
        msg_from: m.msg_from,
        content_type: m.content_type,
        content: m.content,
        seq: m.seq,
        send_time: m.send_time,
        create_time: m.create_time,
        status: m.status,
        is_read: m.is_read,
        options: m.options,
        offline_push_info: m.offline_push_info.map(|o| OfflinePushInfo {
            title: o.title,
            desc: o.desc,
            ex: o.ex,
            ios_push_sound: o.ios_push_sound,
            ios_badge_count: o.ios_badge_count,
            signal_info: o.signal_info,
        }),
        at_user_id_list: (!m.at_user_id_list.is_empty()).then_some(m.at_user_id_list),
        attached_info: m.attached_info,
        ex: m.ex,
    }
}

fn s(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn i(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(Value::as_i64).unwrap_or(0)
}

fn i32_of(v: &Value, k: &str) -> i32 {
    i32::try_from(i(v, k)).unwrap_or(0)
}

/// A message as the HTTP handlers serialize it (`state::MsgData`'s JSON, `content` base64).
pub(super) fn msg_from_json(v: &Value) -> sdkws::MsgData {
    let content = base64::engine::general_purpose::STANDARD.decode(s(v, "content")).unwrap_or_default();
    let options = v
        .get("options")
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, b)| (k.clone(), b.as_bool().unwrap_or(false))).collect())
        .unwrap_or_default();
    let offline_push_info = v.get("offlinePushInfo").filter(|o| o.is_object()).map(|o| sdkws::OfflinePushInfo {
        title: s(o, "title"),
        desc: s(o, "desc"),
        ex: s(o, "ex"),
        ios_push_sound: s(o, "iOSPushSound"),
        ios_badge_count: o.get("iOSBadgeCount").and_then(Value::as_bool).unwrap_or(false),
        signal_info: s(o, "signalInfo"),
    });
    let at_user_id_list = v
        .get("atUserIDList")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    sdkws::MsgData {
        send_id: s(v, "sendID"),
        recv_id: s(v, "recvID"),
        group_id: s(v, "groupID"),
        client_msg_id: s(v, "clientMsgID"),
        server_msg_id: s(v, "serverMsgID"),
        sender_platform_id: i32_of(v, "senderPlatformID"),
        sender_nickname: s(v, "senderNickname"),
        sender_face_url: s(v, "senderFaceURL"),
        session_type: i32_of(v, "sessionType"),
        msg_from: i32_of(v, "msgFrom"),
        content_type: i32_of(v, "contentType"),
        content,
        seq: i(v, "seq"),
        send_time: i(v, "sendTime"),
        create_time: i(v, "createTime"),
        status: i32_of(v, "status"),
        is_read: v.get("isRead").and_then(Value::as_bool).unwrap_or(false),
        options,
        offline_push_info,
        at_user_id_list,
        attached_info: s(v, "attachedInfo"),
        ex: s(v, "ex"),
    }
}

/// `{conversationID: {"Msgs": [...], "isEnd", "endSeq"}}` of the HTTP handlers as protobuf.
pub(super) fn pull_msgs_from_json(v: Option<&Value>) -> std::collections::BTreeMap<String, sdkws::PullMsgs> {
    let Some(map) = v.and_then(Value::as_object) else { return Default::default() };
    map.iter()
        .map(|(cid, p)| {
            let msgs = p.get("Msgs").and_then(Value::as_array).map(|a| a.iter().map(msg_from_json).collect());
            let pull = sdkws::PullMsgs {
                msgs: msgs.unwrap_or_default(),
                is_end: p.get("isEnd").and_then(Value::as_bool).unwrap_or(false),
                end_seq: i(p, "endSeq"),
            };
            (cid.clone(), pull)
        })
        .collect()
}

/// `msgprocessor.GetConversationIDByMsg` (`S pkg/msgprocessor/conversation.go:68-99`): the
/// conversation a push files the message under; `isNotNotification: false` makes it `n_…`.
fn push_conversation_id(m: &MsgData) -> String {
    let mut pair = [m.send_id.as_str(), m.recv_id.as_str()];
    pair.sort_unstable();
    let pair = pair.join("_");
    let notification = !m.option("isNotNotification");
    match (m.session_type, notification) {
        (1 | 4, true) => format!("n_{pair}"),
        (1, false) => format!("si_{pair}"),
        (4, false) => format!("sn_{pair}"),
        (2 | 3, true) => format!("n_{}", m.group_id),
        (2, false) => format!("g_{}", m.group_id),
        (3, false) => format!("sg_{}", m.group_id),
        _ => String::new(),
    }
}

/// Push a message the send pipeline accepted to its recipients' live connections (module docs
/// of [`super`]). Called with the state locked; only queues frames.
pub fn push_msg(app: &App, st: &State, operation_id: &str, m: &MsgData) {
    let users: Vec<String> = match m.session_type {
        3 => st
            .groups
            .get(&m.group_id)
            .map(|g| g.members.iter().map(|x| x.user_id.clone()).collect())
            .unwrap_or_default(),
        _ if m.option("senderSync") && m.send_id != m.recv_id => vec![m.recv_id.clone(), m.send_id.clone()],
        _ => vec![m.recv_id.clone()],
    };
    let cid = push_conversation_id(m);
    let mut msg = to_pb(m);
    if msg.status == STATUS_SENDING {
        msg.status = STATUS_SENT;
    }
    let pull = sdkws::PullMsgs { msgs: vec![msg], ..Default::default() };
    let mut push = sdkws::PushMessages::default();
    if cid.starts_with("n_") {
        push.notification_msgs.insert(cid, pull);
    } else {
        push.msgs.insert(cid, pull);
    }
    let resp = Resp {
        req_identifier: ident::PUSH_MSG,
        operation_id: operation_id.to_owned(),
        data: push.encode_to_vec(),
        ..Resp::default()
    };
    app.ws.push_to_users(&users, &resp);
}
