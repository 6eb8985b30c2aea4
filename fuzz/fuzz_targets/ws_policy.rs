//! Fuzz target `ws_policy`: client frames through the relay's frame policy (`ws::policy::police`,
//! via `host::fuzzing::police_frame`): decode in the connection's codec, bind to the session's
//! user, authorize every conversation and group (group roles from a fake OpenIM), rate limit,
//! re-encode. The session's user is `alice`, platform 1; groups starting with `m`/`o` have her as
//! member/owner, others do not.
//!
//! Input: byte 0 picks the codec (bits 0-1) and the mode (bit 2). Mode 0: the rest is the raw
//! frame. Mode 1 (so the fuzzer reaches the payload checks without learning gob): bytes 1-2 pick
//! the `reqIdentifier` (big-endian i16 + 1000), the rest is the protobuf payload, wrapped by the
//! target in a valid envelope from `alice`.
//!
//! Asserts: a forwarded frame decodes in the codec, carries `alice` as `sendID`, no token, a
//! client identifier, and a payload whose identity fields are `alice`'s (a send: her id and
//! platform, `msgFrom` 100, no notification content type, a single or group chat, a JSON object
//! as content); a refusal answers the frame's own identifier with a non-zero errCode; a closed
//! connection means the frame did not decode, named someone else, or was too large.
#![no_main]

use std::sync::OnceLock;

use host::fuzzing::{police_frame, FrameVerdict};
use host::telemetry::RequestId;
use host::AppState;
use imgate_fuzz::{caller, gateway_state, role_openim, rt, CODECS, PLATFORM, USER};
use libfuzzer_sys::fuzz_target;
use openim_wire::{ident, pb, Codec, Req, MAX_FRAME_BYTES};
use prost::Message;

fn state() -> &'static AppState {
    static STATE: OnceLock<AppState> = OnceLock::new();
    STATE.get_or_init(|| gateway_state(&role_openim()))
}

fn check_forwarded(codec: Codec, sent: &Req, bytes: &[u8]) {
    let fwd = codec.decode_req(bytes).expect("a forwarded frame decodes");
    assert_eq!(fwd.send_id, USER, "forwarded sendID");
    assert!(fwd.token.is_empty(), "a token was forwarded");
    assert_eq!(fwd.req_identifier, sent.req_identifier);
    assert_eq!(
        (fwd.msg_incr.as_str(), fwd.operation_id.as_str()),
        (sent.msg_incr.as_str(), sent.operation_id.as_str())
    );
    let d = &fwd.data[..];
    let me = |u: &str| assert_eq!(u, USER, "forwarded payload names another user");
    match fwd.req_identifier {
        ident::GET_NEWEST_SEQ => me(&pb::sdkws::GetMaxSeqReq::decode(d).expect("payload").user_id),
        ident::PULL_MSG_BY_SEQ_LIST => me(&pb::sdkws::PullMessageBySeqsReq::decode(d).expect("payload").user_id),
        ident::PULL_MSG => me(&pb::msg::GetSeqMessageReq::decode(d).expect("payload").user_id),
        ident::GET_CONV_MAX_READ_SEQ => {
            me(&pb::msg::GetConversationsHasReadAndMaxSeqReq::decode(d).expect("payload").user_id)
        }
        ident::PULL_CONV_LAST_MESSAGE => me(&pb::msg::GetLastMessageReq::decode(d).expect("payload").user_id),
        ident::SET_BACKGROUND_STATUS => me(&pb::sdkws::SetAppBackgroundStatusReq::decode(d).expect("payload").user_id),
        ident::LOGOUT_MSG => {
            let m = pb::push::DelUserPushTokenReq::decode(d).expect("payload");
            me(&m.user_id);
            assert_eq!(m.platform_id, PLATFORM);
        }
        ident::SUB_USER_ONLINE_STATUS => {
            pb::sdkws::SubUserOnlineStatus::decode(d).expect("payload");
        }
        ident::SEND_MSG => {
            let m = pb::sdkws::MsgData::decode(d).expect("payload");
            me(&m.send_id);
            assert_eq!((m.sender_platform_id, m.msg_from), (PLATFORM, 100));
            assert!(!(1000..=5000).contains(&m.content_type), "notification content type forwarded");
            assert!(matches!(m.session_type, 1 | 3), "session type {}", m.session_type);
            let content: serde_json::Value = serde_json::from_slice(&m.content).expect("content is JSON");
            assert!(content.is_object(), "content is not an object");
            if m.session_type == 3 {
                assert!(m.group_id.starts_with(['m', 'o']), "a send to group {:?} she is not in", m.group_id);
            }
        }
        other => panic!("identifier {other} forwarded"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let codec = CODECS[usize::from(sel & 3)];
    let frame = if sel & 4 == 0 {
        rest.to_vec()
    } else {
        let Some((id, payload)) = rest.split_first_chunk::<2>() else { return };
        let req = Req {
            req_identifier: 1000 + i32::from(i16::from_be_bytes(*id)),
            send_id: USER.into(),
            token: "t".into(),
            operation_id: "op".into(),
            msg_incr: "1".into(),
            data: payload.to_vec(),
        };
        codec.encode_req(&req)
    };
    let rid = RequestId::generate();
    let verdict = rt().block_on(police_frame(state(), &caller(), codec, &rid, &frame));
    let sent = codec.decode_req(&frame);
    match verdict {
        FrameVerdict::Forward(bytes) => {
            let sent = sent.expect("a forwarded frame decoded");
            check_forwarded(codec, &sent, &bytes);
        }
        FrameVerdict::Refuse(resp, _) => {
            let sent = sent.expect("a refused frame decoded");
            assert_eq!(sent.send_id, USER);
            assert_eq!((resp.req_identifier, resp.msg_incr.as_str()), (sent.req_identifier, sent.msg_incr.as_str()));
            assert_ne!(resp.err_code, 0, "a refusal with errCode 0");
            assert!(resp.data.is_empty());
        }
        FrameVerdict::Close(_) => {
            assert!(
                frame.len() > MAX_FRAME_BYTES || sent.is_err() || sent.is_ok_and(|r| r.send_id != USER),
                "a well-formed frame of the session's user closed the connection"
            );
        }
    }
});
