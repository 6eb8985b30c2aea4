//! Entry points for the fuzz targets of `fuzz/` (`make fuzz`, docs/fuzzing.md), and nothing else.
//!
//! Why it exists: a fuzz target must feed untrusted bytes to the very function a request runs,
//! and some of those are crate-private. Each item here is a thin wrapper that calls the real
//! function and converts its crate-private result into a public type; none holds logic of its
//! own. Parsers that are public already (`openim_wire::Codec`, `Config::parse`,
//! `AdminVerifier::verify`, `routes::compat::canonicalize`, `auth::signed::require`, the
//! `OpenIm` client, …) are fuzzed directly and have no wrapper here. Not part of the API.

use openim_wire::{Codec, Resp};

use crate::auth::Caller;
use crate::state::AppState;
use crate::telemetry::RequestId;

/// `POST /v1/auth/handshake`'s body decoding (`auth::handshake::decode_body`): the bytes of
/// message 1, or the HTTP status the gateway answers.
pub fn handshake_body(body: &[u8]) -> Result<Vec<u8>, u16> {
    crate::auth::handshake::decode_body(body).map_err(|e| e.status().as_u16())
}

/// What the frame policy (`ws::policy::police`) made of one client frame.
#[derive(Debug)]
pub enum FrameVerdict {
    /// Forwarded to OpenIM as these bytes.
    Forward(Vec<u8>),
    /// Answered with this error frame.
    Refuse(Resp, String),
    /// The connection is closed.
    Close(&'static str),
}

/// One binary client frame through the relay's frame policy, as `ws::relay` runs it.
pub async fn police_frame(
    state: &AppState,
    caller: &Caller,
    codec: Codec,
    rid: &RequestId,
    frame: &[u8],
) -> FrameVerdict {
    use crate::ws::policy::{police, Conn, Verdict};
    let conn = Conn { state, caller, codec, rid };
    match police(&conn, frame).await {
        Verdict::Forward(bytes) => FrameVerdict::Forward(bytes),
        Verdict::Refuse(resp, why) => FrameVerdict::Refuse(resp, why),
        Verdict::Close(why) => FrameVerdict::Close(why),
    }
}

/// The handshake arguments of `GET /openim/ws` as `ws::args::parse_sdk` read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkHandshake {
    pub send_id: String,
    pub token: String,
    pub platform_id: i32,
    pub operation_id: String,
    pub codec: Codec,
    pub msg_resp: bool,
}

/// `ws::args::parse_sdk` (the query, and the `compression` header if any); the error's words.
pub fn sdk_handshake(query: &str, compression_header: Option<&[u8]>) -> Result<SdkHandshake, String> {
    let mut headers = axum::http::HeaderMap::new();
    if let Some(v) = compression_header.and_then(|v| axum::http::HeaderValue::from_bytes(v).ok()) {
        headers.insert("compression", v);
    }
    crate::ws::args::parse_sdk(query, &headers)
        .map(|a| SdkHandshake {
            send_id: a.send_id,
            token: a.token,
            platform_id: a.platform_id,
            operation_id: a.operation_id,
            codec: a.codec,
            msg_resp: a.msg_resp,
        })
        .map_err(|e| e.0)
}

/// `ws::args::wants_msg_resp`: how a refused SDK handshake is answered.
pub fn sdk_wants_msg_resp(query: &str) -> bool {
    crate::ws::args::wants_msg_resp(query)
}

/// `ws::args::parse_native`: the ticket and codec of `GET /v1/ws`.
pub fn native_handshake(query: &str) -> Result<(String, Codec), String> {
    crate::ws::args::parse_native(query).map_err(|e| e.0)
}
