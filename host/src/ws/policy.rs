//! Frame policy: what a client frame must be before it reaches OpenIM.
//!
//! Every binary frame is decoded in the connection's envelope; OpenIM's own fatal cases (an
//! undecodable frame, a `sendID` other than the session's user) close the connection as OpenIM
//! would. The payload is decoded as its `reqIdentifier` says, identity fields are bound to the
//! caller (filled in when empty, refused when naming someone else), every conversation a pull
//! names must be the caller's (a single chat with the caller on one side, unambiguously, or a
//! group the caller is a member of; `n_…` twins likewise) — OpenIM checks none of that for 1005
//! and 1007 (contract §10.5). A send (1003) is a single or group chat message with a user content
//! type, bound to the caller's id and platform, and passes through the plugin chain of the REST
//! send route for its kind, so one policy governs both paths. What was checked is re-encoded and
//! forwarded; a refusal answers that frame (`msgIncr`) with an OpenIM-style error and nothing
//! reaches OpenIM. 1004 (broken in OpenIM), server-to-client identifiers and unknown ones are
//! refused. Frames count against the user's rate limits (`send` for 1003, `default` otherwise).

use openim_wire::{ident, pb, Codec, Req, Resp, MAX_FRAME_BYTES};
use prost::Message as _;
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::openim::CallCtx;
use crate::plugins::chain;
use crate::plugins::runtime::{Principal, Request as PRequest, UserPrincipal};
use crate::ratelimit::RateKey;
use crate::routes::compat;
use crate::routes::objects::{self, Conversation};
use crate::state::AppState;
use crate::telemetry::RequestId;

/// The chain route of WebSocket sends whose content type has no REST twin (`[[route_plugins]]`).
pub const WS_SEND_ROUTE: &str = "ws.send_msg";

/// Conversations one pull frame may name (OpenIM would act on all: longer lists are refused).
const MAX_CONVERSATIONS: usize = 1000;

/// What becomes of a client frame.
pub(crate) enum Verdict {
    /// Forward this re-encoded frame to OpenIM.
    Forward(Vec<u8>),
    /// Answer the frame with this error; nothing reaches OpenIM.
    Refuse(Resp, String),
    /// End the connection, as OpenIM does for this frame.
    Close(&'static str),
}

/// A refusal: OpenIM's errCode and the words for the client.
type Refused = (i32, String);

fn args(why: impl Into<String>) -> Refused {
    (1001, why.into())
}
fn denied(why: impl Into<String>) -> Refused {
    (1002, why.into())
}

/// The connection a frame came on.
pub(crate) struct Conn<'a> {
    pub state: &'a AppState,
    pub caller: &'a Caller,
    pub codec: Codec,
    pub rid: &'a RequestId,
}

/// Polices one binary client frame.
pub(crate) async fn police(conn: &Conn<'_>, frame: &[u8]) -> Verdict {
    if frame.len() > MAX_FRAME_BYTES {
        return Verdict::Close("frame larger than OpenIM's 51200 bytes");
    }
    let Ok(mut req) = conn.codec.decode_req(frame) else { return Verdict::Close("undecodable frame") };
    if req.send_id != conn.caller.user_id {
        return Verdict::Close("sendID is not the session's user");
    }
    // OpenIM ignores it; nothing of the client's credentials goes on.
    req.token.clear();
    let class = if req.req_identifier == ident::SEND_MSG { "send" } else { "default" };
    let key = RateKey { user_id: conn.caller.user_id.clone(), class: class.into(), tier: conn.caller.tier.clone() };
    let checked = match conn.state.limiter.check(&key).await {
        Err(_) => Err((429, "too many requests, please try again later".to_owned())),
        Ok(()) => payload(conn, &req).await,
    };
    match checked {
        Ok(data) => {
            req.data = data;
            Verdict::Forward(conn.codec.encode_req(&req))
        }
        Err((code, why)) => {
            let resp = Resp {
                req_identifier: req.req_identifier,
                msg_incr: req.msg_incr,
                operation_id: req.operation_id,
                err_code: code,
                err_msg: why.clone(),
                data: Vec::new(),
            };
            Verdict::Refuse(resp, why)
        }
    }
}

/// The payload of a frame, checked and re-encoded.
async fn payload(conn: &Conn<'_>, req: &Req) -> Result<Vec<u8>, Refused> {
    let me = conn.caller.user_id.as_str();
    let bad = |what: &str| args(format!("data is not a {what}"));
    match req.req_identifier {
        ident::GET_NEWEST_SEQ => {
            let mut m = pb::sdkws::GetMaxSeqReq::decode(&req.data[..]).map_err(|_| bad("GetMaxSeqReq"))?;
            bind(&mut m.user_id, me, "userID")?;
            Ok(m.encode_to_vec())
        }
        ident::PULL_MSG_BY_SEQ_LIST => {
            let mut m =
                pb::sdkws::PullMessageBySeqsReq::decode(&req.data[..]).map_err(|_| bad("PullMessageBySeqsReq"))?;
            bind(&mut m.user_id, me, "userID")?;
            own_conversations(conn, m.seq_ranges.iter().map(|r| r.conversation_id.as_str())).await?;
            Ok(m.encode_to_vec())
        }
        ident::SEND_MSG => send(conn, &req.data).await,
        ident::PULL_MSG => {
            let mut m = pb::msg::GetSeqMessageReq::decode(&req.data[..]).map_err(|_| bad("GetSeqMessageReq"))?;
            bind(&mut m.user_id, me, "userID")?;
            own_conversations(conn, m.conversations.iter().map(|c| c.conversation_id.as_str())).await?;
            Ok(m.encode_to_vec())
        }
        ident::GET_CONV_MAX_READ_SEQ => {
            let mut m = pb::msg::GetConversationsHasReadAndMaxSeqReq::decode(&req.data[..])
                .map_err(|_| bad("GetConversationsHasReadAndMaxSeqReq"))?;
            bind(&mut m.user_id, me, "userID")?;
            own_conversations(conn, m.conversation_ids.iter().map(String::as_str)).await?;
            Ok(m.encode_to_vec())
        }
        ident::PULL_CONV_LAST_MESSAGE => {
            let mut m = pb::msg::GetLastMessageReq::decode(&req.data[..]).map_err(|_| bad("GetLastMessageReq"))?;
            bind(&mut m.user_id, me, "userID")?;
            own_conversations(conn, m.conversation_ids.iter().map(String::as_str)).await?;
            Ok(m.encode_to_vec())
        }
        ident::LOGOUT_MSG => {
            let mut m = pb::push::DelUserPushTokenReq::decode(&req.data[..]).map_err(|_| bad("DelUserPushTokenReq"))?;
            bind(&mut m.user_id, me, "userID")?;
            if m.platform_id != 0 && m.platform_id != conn.caller.platform_id {
                return Err(denied("platformID must be the session's"));
            }
            m.platform_id = conn.caller.platform_id;
            Ok(m.encode_to_vec())
        }
        ident::SET_BACKGROUND_STATUS => {
            let mut m = pb::sdkws::SetAppBackgroundStatusReq::decode(&req.data[..])
                .map_err(|_| bad("SetAppBackgroundStatusReq"))?;
            bind(&mut m.user_id, me, "userID")?;
            Ok(m.encode_to_vec())
        }
        ident::SUB_USER_ONLINE_STATUS => {
            let m = pb::sdkws::SubUserOnlineStatus::decode(&req.data[..]).map_err(|_| bad("SubUserOnlineStatus"))?;
            if m.subscribe_user_id.len() + m.unsubscribe_user_id.len() > MAX_CONVERSATIONS {
                return Err(args("too many user ids"));
            }
            Ok(m.encode_to_vec())
        }
        ident::SEND_SIGNAL_MSG => Err(denied("reqIdentifier 1004 is not available through imgate")),
        other => Err(denied(format!("reqIdentifier {other} is not available through imgate"))),
    }
}

/// An identity field: the caller's id, filled in when empty.
fn bind(field: &mut String, me: &str, name: &str) -> Result<(), Refused> {
    if field.is_empty() {
        me.clone_into(field);
    }
    if field != me {
        return Err(denied(format!("`{name}` must be the caller")));
    }
    Ok(())
}

/// The peer of a single-chat (or notification-chat) id the caller is a side of, if the id names
/// exactly one pair of users (an id with `_` in a user id could name two pairs).
fn single_peer<'a>(me: &str, cid: &'a str) -> Option<&'a str> {
    let pair = cid.strip_prefix("si_").or_else(|| cid.strip_prefix("sn_"))?;
    let peer = pair.match_indices('_').find_map(|(i, _)| {
        let (a, b) = (&pair[..i], &pair[i + 1..]);
        let peer = if a == me {
            b
        } else if b == me {
            a
        } else {
            return None;
        };
        let id = objects::single_conversation_id(me, peer);
        (id[3..] == *pair && !peer.is_empty()).then_some(peer)
    })?;
    (!objects::ambiguous_pair(me, peer)).then_some(peer)
}

/// Every conversation named must be the caller's (groups: a membership check, cached).
async fn own_conversations<'a>(conn: &Conn<'_>, ids: impl Iterator<Item = &'a str>) -> Result<(), Refused> {
    let me = conn.caller.user_id.as_str();
    let mut groups = Vec::new();
    for (n, cid) in ids.enumerate() {
        if n >= MAX_CONVERSATIONS {
            return Err(args(format!("more than {MAX_CONVERSATIONS} conversations in one frame")));
        }
        let base = cid.strip_prefix("n_").unwrap_or(cid);
        match objects::classify(me, base) {
            Conversation::Group(g) => groups.push(g),
            Conversation::Single if single_peer(me, base).is_some() => {}
            _ => return Err(denied(format!("conversation {cid} is not the caller's"))),
        }
    }
    let ctx = CallCtx::for_request(conn.rid);
    compat::check_groups(conn.state, &ctx, me, &groups, 20).await.map_err(|r| denied(r.to_string()))
}

/// A 1003 send: a user message of a single or group chat, bound to the caller, through the
/// plugin chain of its REST twin.
async fn send(conn: &Conn<'_>, data: &[u8]) -> Result<Vec<u8>, Refused> {
    let me = conn.caller.user_id.as_str();
    let mut m = pb::sdkws::MsgData::decode(data).map_err(|_| args("data is not a MsgData"))?;
    bind(&mut m.send_id, me, "sendID")?;
    // OpenIM trusts these from the client (contract §10.8): they are the session's.
    m.sender_platform_id = conn.caller.platform_id;
    m.msg_from = 100;
    if (1000..=5000).contains(&m.content_type) {
        return Err(denied("notification content types are sent by the server only"));
    }
    let single = match m.session_type {
        1 => {
            if !crate::ids::is_user_id(&m.recv_id) {
                return Err(args("recvID must be a user id"));
            }
            if !m.group_id.is_empty() {
                return Err(args("groupID must be empty in a single chat"));
            }
            if objects::ambiguous_pair(me, &m.recv_id) {
                return Err(denied("this pair of user ids has an ambiguous conversation id"));
            }
            true
        }
        3 => {
            if m.group_id.is_empty() {
                return Err(args("groupID is required in a group chat"));
            }
            m.recv_id.clear();
            let ctx = CallCtx::for_request(conn.rid);
            compat::check_groups(conn.state, &ctx, me, &[m.group_id.as_str()], 20)
                .await
                .map_err(|r| denied(r.to_string()))?;
            false
        }
        _ => return Err(denied("only single (1) and group (3) chats can be sent")),
    };
    let mut content: Map<String, Value> = match serde_json::from_slice(&m.content) {
        Ok(Value::Object(o)) => o,
        _ => return Err(args("content must be a JSON object")),
    };
    run_chain(conn, &m, single, &mut content).await?;
    m.content = Value::Object(content).to_string().into_bytes();
    Ok(m.encode_to_vec())
}

/// The send's plugin chain. Text messages (101) go through `send_text_to_user` /
/// `send_text_to_group` with the REST body `{"text": …}`; every other content type through
/// [`WS_SEND_ROUTE`] with the message as OpenIM's JSON. Only the content is taken back from a
/// `modify`: a plugin can change what is said, never who says it or to whom.
async fn run_chain(
    conn: &Conn<'_>,
    m: &pb::sdkws::MsgData,
    single: bool,
    content: &mut Map<String, Value>,
) -> Result<(), Refused> {
    let state = conn.state;
    if state.plugins.runtime.is_none() {
        return Ok(());
    }
    let text = m.content_type == 101;
    let (route, path) = match (text, single) {
        (true, true) => ("send_text_to_user", format!("/v1/messages/user/{}", m.recv_id)),
        (true, false) => ("send_text_to_group", format!("/v1/messages/group/{}", m.group_id)),
        (false, _) => (WS_SEND_ROUTE, "/openim/ws".to_owned()),
    };
    let Some(chain) = state.plugins.snapshot().chain(route) else { return Ok(()) };
    let body = if text {
        let Some(Value::String(t)) = content.get("content") else {
            return Err(args("a text message needs content.content"));
        };
        json!({ "text": t })
    } else {
        json!({
            "sendID": m.send_id, "recvID": m.recv_id, "groupID": m.group_id, "clientMsgID": m.client_msg_id,
            "senderPlatformID": m.sender_platform_id, "senderNickname": m.sender_nickname,
            "senderFaceURL": m.sender_face_url, "sessionType": m.session_type, "contentType": m.content_type,
            "content": Value::Object(content.clone()), "atUserIDList": m.at_user_id_list, "ex": m.ex,
        })
    };
    let c = conn.caller;
    let preq = PRequest {
        method: "POST".into(),
        route: route.into(),
        path,
        query: String::new(),
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
        principal: Principal::User(UserPrincipal {
            user_id: c.user_id.clone(),
            platform: u32::try_from(c.platform_id).unwrap_or(0),
            session_id: c.session_id.clone(),
            device_id: c.device_id.clone(),
            tier: c.tier.clone(),
        }),
        operation_id: conn.rid.as_str().to_owned(),
    };
    let walked = match chain::on_request(state, &chain, conn.rid, preq).await {
        Ok(w) => w,
        Err(e) if e.code == crate::error::ErrorCode::PolicyDenied => {
            let reason = e.reason.clone().unwrap_or_default();
            return Err((1002, format!("{reason}: {}", e.message)));
        }
        Err(e) => return Err((500, format!("policy unavailable ({})", e.code.as_str()))),
    };
    if walked.early.is_some() {
        return Err(denied("answered by policy: not sent"));
    }
    if !walked.modified {
        return Ok(());
    }
    let changed: Value = serde_json::from_slice(&walked.request.body)
        .map_err(|_| (500, "policy unavailable (invalid body)".to_owned()))?;
    if text {
        let Some(Value::String(t)) = changed.get("text") else {
            return Err((500, "policy unavailable (a text plugin must keep `text` a string)".into()));
        };
        content.insert("content".into(), Value::String(t.clone()));
    } else {
        let Some(Value::Object(c)) = changed.get("content") else {
            return Err((500, "policy unavailable (a plugin must keep `content` an object)".into()));
        };
        *content = c.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_chat_ids_name_the_caller_unambiguously() {
        assert_eq!(single_peer("alice", "si_alice_bob"), Some("bob"));
        assert_eq!(single_peer("bob", "si_alice_bob"), Some("alice"));
        assert_eq!(single_peer("bob", "sn_alice_bob"), Some("alice"));
        assert_eq!(single_peer("carol", "si_alice_bob"), None);
        assert_eq!(single_peer("bob", "si_bob_alice"), None, "not the sorted id of the pair");
        // "si_a_b_c" is both (a, b_c) and (a_b, c): a pull of it could read another pair's chat.
        assert_eq!(single_peer("a", "si_a_b_c"), None);
        assert_eq!(single_peer("c", "si_a_b_c"), None);
    }
}
