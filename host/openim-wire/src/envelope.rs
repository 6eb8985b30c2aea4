//! The two frame envelopes of OpenIM's msg gateway (contract §5.4): `Req` (client → server) and
//! `Resp` (server → client), in JSON (`sdkType=js`) or Go gob (`sdkType=go`), each optionally a
//! gzip stream (`compression=gzip`).

use std::io::{Read, Write};

/// A client → server frame (`S internal/msggateway/message_handler.go:43-50`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Req {
    pub req_identifier: i32,
    /// Ignored by OpenIM; a relay blanks it.
    pub token: String,
    pub send_id: String,
    pub operation_id: String,
    pub msg_incr: String,
    /// The protobuf-encoded request.
    pub data: Vec<u8>,
}

/// A server → client frame (`message_handler.go:83-90`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resp {
    pub req_identifier: i32,
    pub msg_incr: String,
    pub operation_id: String,
    pub err_code: i32,
    pub err_msg: String,
    /// The protobuf-encoded reply or push.
    pub data: Vec<u8>,
}

/// The envelope encoding chosen at the handshake by `sdkType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `sdkType=js`.
    Json,
    /// `sdkType=go` (the default): Go `encoding/gob`, one fresh encoder per frame.
    Gob,
}

/// Why a frame could not be read. OpenIM closes the connection on any of these.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame larger than {0} bytes")]
    TooLarge(usize),
    #[error("gzip: {0}")]
    Gzip(String),
    #[error("json envelope: {0}")]
    Json(String),
    #[error("gob envelope: {0}")]
    Gob(String),
}

/// The codec of one connection: its envelope encoding and whether frames are gzip streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    pub encoding: Encoding,
    pub gzip: bool,
}

/// Largest decompressed envelope accepted (a gzip bomb stops here).
const MAX_INFLATED: u64 = 4 * 1024 * 1024;

impl Codec {
    pub fn decode_req(&self, frame: &[u8]) -> Result<Req, WireError> {
        let raw = self.inflate(frame)?;
        match self.encoding {
            Encoding::Json => json::decode_req(&raw),
            Encoding::Gob => crate::gob::decode_req(&raw),
        }
    }

    pub fn encode_req(&self, req: &Req) -> Vec<u8> {
        let raw = match self.encoding {
            Encoding::Json => json::encode_req(req),
            Encoding::Gob => crate::gob::encode_req(req),
        };
        self.deflate(raw)
    }

    pub fn decode_resp(&self, frame: &[u8]) -> Result<Resp, WireError> {
        let raw = self.inflate(frame)?;
        match self.encoding {
            Encoding::Json => json::decode_resp(&raw),
            Encoding::Gob => crate::gob::decode_resp(&raw),
        }
    }

    pub fn encode_resp(&self, resp: &Resp) -> Vec<u8> {
        let raw = match self.encoding {
            Encoding::Json => json::encode_resp(resp),
            Encoding::Gob => crate::gob::encode_resp(resp),
        };
        self.deflate(raw)
    }

    fn inflate<'a>(&self, frame: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, WireError> {
        if !self.gzip {
            return Ok(std::borrow::Cow::Borrowed(frame));
        }
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(frame)
            .take(MAX_INFLATED + 1)
            .read_to_end(&mut out)
            .map_err(|e| WireError::Gzip(e.to_string()))?;
        if out.len() as u64 > MAX_INFLATED {
            return Err(WireError::TooLarge(MAX_INFLATED as usize));
        }
        Ok(std::borrow::Cow::Owned(out))
    }

    fn deflate(&self, raw: Vec<u8>) -> Vec<u8> {
        if !self.gzip {
            return raw;
        }
        let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 2 + 32), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(&raw);
        enc.finish().unwrap_or_default()
    }
}

/// The JSON envelope (`sdkType=js`): Go's `encoding/json` of the structs above; `data` is
/// standard base64 with padding.
mod json {
    use super::{Req, Resp, WireError};

    pub(super) fn decode_req(_raw: &[u8]) -> Result<Req, WireError> {
        Err(WireError::Json("not implemented yet".into()))
    }
    pub(super) fn encode_req(_req: &Req) -> Vec<u8> {
        Vec::new()
    }
    pub(super) fn decode_resp(_raw: &[u8]) -> Result<Resp, WireError> {
        Err(WireError::Json("not implemented yet".into()))
    }
    pub(super) fn encode_resp(_resp: &Resp) -> Vec<u8> {
        Vec::new()
    }
}
