//! Fuzz target `ws_frame`: OpenIM msg-gateway frames through `openim_wire::Codec` (JSON and gob
//! envelopes, each with and without gzip) in both directions, then the protobuf payload the
//! relay decodes for the frame's `reqIdentifier`.
//!
//! Input: byte 0 picks the codec (bits 0-1: json, gob, json+gzip, gob+gzip) and the direction
//! (bit 2: client `Req` / server `Resp`); the rest is the frame.
//!
//! Asserts, for every frame that decodes: re-encoding gives a frame that decodes to the same
//! value in its own codec and in the three others (decode → encode → decode is the identity), the
//! encoding is a fixpoint (encode(decode(encode(x))) = encode(x)), and the payload's protobuf
//! message round-trips through prost the same way.
#![no_main]

use imgate_fuzz::CODECS;
use libfuzzer_sys::fuzz_target;
use openim_wire::{ident, pb, Codec, Req, Resp, WireError, MAX_FRAME_BYTES};
use prost::Message;

/// decode → encode → decode is the identity for a protobuf message type.
fn pb_round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(m) = M::decode(data) {
        let again = M::decode(&m.encode_to_vec()[..]).expect("a re-encoded message decodes");
        assert_eq!(again, m, "protobuf round trip");
    }
}

fn payload(req_identifier: i32, data: &[u8]) {
    match req_identifier {
        ident::GET_NEWEST_SEQ => pb_round_trip::<pb::sdkws::GetMaxSeqReq>(data),
        ident::PULL_MSG_BY_SEQ_LIST => pb_round_trip::<pb::sdkws::PullMessageBySeqsReq>(data),
        ident::SEND_MSG => pb_round_trip::<pb::sdkws::MsgData>(data),
        ident::PULL_MSG => pb_round_trip::<pb::msg::GetSeqMessageReq>(data),
        ident::GET_CONV_MAX_READ_SEQ => pb_round_trip::<pb::msg::GetConversationsHasReadAndMaxSeqReq>(data),
        ident::PULL_CONV_LAST_MESSAGE => pb_round_trip::<pb::msg::GetLastMessageReq>(data),
        ident::PUSH_MSG => pb_round_trip::<pb::sdkws::PushMessages>(data),
        ident::LOGOUT_MSG => pb_round_trip::<pb::push::DelUserPushTokenReq>(data),
        ident::SET_BACKGROUND_STATUS => pb_round_trip::<pb::sdkws::SetAppBackgroundStatusReq>(data),
        ident::SUB_USER_ONLINE_STATUS => pb_round_trip::<pb::sdkws::SubUserOnlineStatus>(data),
        _ => {}
    }
}

fn check_req(codec: Codec, frame: &[u8]) {
    let Ok(req) = codec.decode_req(frame) else { return };
    for other in CODECS {
        let enc = other.encode_req(&req);
        match other.decode_req(&enc) {
            Ok(back) => assert_eq!(back, req, "Req round trip through {other:?}"),
            // Re-encoding may grow a frame (JSON escapes, base64) past the read limit.
            Err(WireError::TooLarge(_)) if enc.len() > MAX_FRAME_BYTES => continue,
            Err(e) => panic!("a re-encoded Req does not decode in {other:?}: {e}"),
        }
        if !other.gzip {
            let again = other.encode_req(&other.decode_req(&enc).expect("decodes"));
            assert_eq!(again, enc, "encoding is not a fixpoint in {other:?}");
        }
    }
    payload(req.req_identifier, &req.data);
}

fn check_resp(codec: Codec, frame: &[u8]) {
    let Ok(resp) = codec.decode_resp(frame) else { return };
    for other in CODECS {
        let enc = other.encode_resp(&resp);
        let back: Resp =
            other.decode_resp(&enc).unwrap_or_else(|e| panic!("a re-encoded Resp does not decode in {other:?}: {e}"));
        assert_eq!(back, resp, "Resp round trip through {other:?}");
        if !other.gzip {
            assert_eq!(other.encode_resp(&back), enc, "encoding is not a fixpoint in {other:?}");
        }
    }
    payload(resp.req_identifier, &resp.data);
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let codec = CODECS[usize::from(sel & 3)];
    if sel & 4 == 0 {
        check_req(codec, frame);
    } else {
        check_resp(codec, frame);
    }
    // Req must never be confused for Resp without an error, and vice versa: no panic either way.
    let _: Result<Req, _> = codec.decode_req(frame);
});
