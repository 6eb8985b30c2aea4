//! OpenIM's msg-gateway wire format (shared/openim/contract.md §5.4-§5.6), in one place for
//! imgate's WebSocket relay and the OpenIM emulator: the `Req`/`Resp` envelopes in both of
//! OpenIM's encodings (JSON for `sdkType=js`, Go `encoding/gob` for `sdkType=go`), optional gzip,
//! and the protobuf payloads of the request identifiers a relay has to read.

mod envelope;
pub mod gob;
pub mod pb;

pub use envelope::{Codec, Encoding, Req, Resp, WireError};

/// OpenIM's per-frame read limit (`maxMessageSize`, contract §5.1): larger frames close the
/// connection.
pub const MAX_FRAME_BYTES: usize = 51_200;

/// `reqIdentifier` values (contract §5.5).
pub mod ident {
    pub const GET_NEWEST_SEQ: i32 = 1001;
    pub const PULL_MSG_BY_SEQ_LIST: i32 = 1002;
    pub const SEND_MSG: i32 = 1003;
    pub const SEND_SIGNAL_MSG: i32 = 1004;
    pub const PULL_MSG: i32 = 1005;
    pub const GET_CONV_MAX_READ_SEQ: i32 = 1006;
    pub const PULL_CONV_LAST_MESSAGE: i32 = 1007;
    pub const PUSH_MSG: i32 = 2001;
    pub const KICK_ONLINE_MSG: i32 = 2002;
    pub const LOGOUT_MSG: i32 = 2003;
    pub const SET_BACKGROUND_STATUS: i32 = 2004;
    pub const SUB_USER_ONLINE_STATUS: i32 = 2005;
}
