//! OpenIM's msg-gateway wire format (shared/openim/contract.md §5.4-§5.6), in one place for
//! imgate's WebSocket relay and the OpenIM emulator: the `Req`/`Resp` envelopes in both of
//! OpenIM's encodings (JSON for `sdkType=js`, Go `encoding/gob` for `sdkType=go`), optional gzip,
//! and the protobuf payloads of the request identifiers a relay has to read.
//!
//! Codemap: `envelope.rs` (the [`Codec`], gzip, the envelope structs) and its `json` submodule;
//! [`gob`]; [`pb`] (hand-written `prost` messages). Golden tests against Go itself live in
//! `tests/golden.rs` with the Go program in `tests/golden/`.
//!
//! Invariant: no decoder panics or allocates more than its input justifies; everything a Go
//! peer would read differently from us is an error, never a guess.

mod envelope;
pub mod gob;
pub mod pb;

pub use envelope::{Codec, Encoding, Req, Resp, WireError, MAX_INFLATED};

/// OpenIM's per-frame read limit (`maxMessageSize`, contract §5.1): larger frames close the
/// connection.
pub const MAX_FRAME_BYTES: usize = 51_200;

/// `reqIdentifier` values (contract §5.5; `S internal/msggateway/constant.go:43-58`).
pub mod ident {
    /// `sdkws.GetMaxSeqReq` → `GetMaxSeqResp`.
    pub const GET_NEWEST_SEQ: i32 = 1001;
    /// `sdkws.PullMessageBySeqsReq` → `PullMessageBySeqsResp`.
    pub const PULL_MSG_BY_SEQ_LIST: i32 = 1002;
    /// `sdkws.MsgData` → `msg.SendMsgResp`.
    pub const SEND_MSG: i32 = 1003;
    /// Broken in OpenIM (calls SendMsg with a nil request).
    pub const SEND_SIGNAL_MSG: i32 = 1004;
    /// `msg.GetSeqMessageReq` → `GetSeqMessageResp` (no access check in OpenIM).
    pub const PULL_MSG: i32 = 1005;
    /// `msg.GetConversationsHasReadAndMaxSeqReq` → its Resp.
    pub const GET_CONV_MAX_READ_SEQ: i32 = 1006;
    /// `msg.GetLastMessageReq` → `GetLastMessageResp` (no access check in OpenIM).
    pub const PULL_CONV_LAST_MESSAGE: i32 = 1007;
    /// Server push of `sdkws.PushMessages`.
    pub const PUSH_MSG: i32 = 2001;
    /// Server kick; the connection is closed right after.
    pub const KICK_ONLINE_MSG: i32 = 2002;
    /// `push.DelUserPushTokenReq` → `DelUserPushTokenResp`; the server closes after replying.
    pub const LOGOUT_MSG: i32 = 2003;
    /// `sdkws.SetAppBackgroundStatusReq` → no data.
    pub const SET_BACKGROUND_STATUS: i32 = 2004;
    /// `sdkws.SubUserOnlineStatus` → `SubUserOnlineStatusTips`; also the status-change push.
    pub const SUB_USER_ONLINE_STATUS: i32 = 2005;
}
