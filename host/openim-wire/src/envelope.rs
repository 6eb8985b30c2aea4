//! The two frame envelopes of OpenIM's msg gateway (contract §5.4): `Req` (client → server) and
//! `Resp` (server → client), in JSON (`sdkType=js`) or Go gob (`sdkType=go`), each optionally a
//! gzip stream (`compression=gzip`). [`Codec`] is the one entry point: it undoes gzip, then the
//! envelope encoding, and never panics on hostile input.

use std::io::{Read, Write};

/// A client → server frame (`S internal/msggateway/message_handler.go:43-50`; the Go SDK's twin
/// is `GeneralWsReq`, `SDK internal/interaction/ws_resp_asyn.go:38-45`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Req {
    /// What the frame asks for ([`crate::ident`]).
    pub req_identifier: i32,
    /// Ignored by OpenIM; a relay blanks it.
    pub token: String,
    /// Must equal the connection's user, or OpenIM closes the connection.
    pub send_id: String,
    /// Becomes the operationID of the RPCs the frame triggers.
    pub operation_id: String,
    /// Opaque correlation ID, echoed in the reply.
    pub msg_incr: String,
    /// The protobuf-encoded request.
    pub data: Vec<u8>,
}

/// A server → client frame (`S internal/msggateway/message_handler.go:83-90`; the Go SDK's twin
/// is `GeneralWsResp`, `SDK internal/interaction/ws_resp_asyn.go:29-36`, whose fields are
/// declared in another order, which gob does not care about).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resp {
    /// The request's identifier, or 2001/2002/2005 for pushes.
    pub req_identifier: i32,
    /// The request's `msgIncr`; empty in pushes.
    pub msg_incr: String,
    /// The request's `operationID`.
    pub operation_id: String,
    /// 0, or the errCode of the failed request (OpenIM's Go type is `int`; every code fits `i32`).
    pub err_code: i32,
    /// The short error name (`ArgsError`, …), empty on success.
    pub err_msg: String,
    /// The protobuf-encoded reply or push; empty on error.
    pub data: Vec<u8>,
}

/// The envelope encoding chosen at the handshake by `sdkType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `sdkType=js`: Go `encoding/json` of the structs.
    Json,
    /// `sdkType=go` (the default): Go `encoding/gob`, one fresh encoder per frame.
    Gob,
}

/// Why a frame could not be read. OpenIM closes the connection on any of these.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// The frame (or, with gzip, its inflated content) is larger than the limit shown.
    #[error("frame larger than {0} bytes")]
    TooLarge(usize),
    /// Not a valid gzip stream.
    #[error("gzip: {0}")]
    Gzip(String),
    /// Not a JSON envelope Go would decode, or one a relay must not guess about.
    #[error("json envelope: {0}")]
    Json(String),
    /// Not a gob stream Go would produce for the envelope structs.
    #[error("gob envelope: {0}")]
    Gob(String),
}

/// The codec of one connection: its envelope encoding and whether frames are gzip streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    /// The envelope encoding (`sdkType`).
    pub encoding: Encoding,
    /// Every binary frame is a gzip stream (`compression=gzip`).
    pub gzip: bool,
}

/// Largest decompressed envelope accepted (a gzip bomb stops here). OpenIM itself has no such
/// limit (`S internal/msggateway/compressor.go:88-105` reads the whole stream).
pub const MAX_INFLATED: u64 = 4 * 1024 * 1024;

impl Codec {
    /// Decode a client frame. Frames larger than [`crate::MAX_FRAME_BYTES`] are refused, as
    /// OpenIM's read limit refuses them.
    pub fn decode_req(&self, frame: &[u8]) -> Result<Req, WireError> {
        if frame.len() > crate::MAX_FRAME_BYTES {
            return Err(WireError::TooLarge(crate::MAX_FRAME_BYTES));
        }
        let raw = self.inflate(frame)?;
        match self.encoding {
            Encoding::Json => json::decode_req(&raw),
            Encoding::Gob => crate::gob::decode_req(&raw),
        }
    }

    /// Encode a client frame.
    pub fn encode_req(&self, req: &Req) -> Vec<u8> {
        let raw = match self.encoding {
            Encoding::Json => json::encode_req(req),
            Encoding::Gob => crate::gob::encode_req(req),
        };
        self.deflate(raw)
    }

    /// Decode a server frame (no size limit: OpenIM writes whatever it has to push).
    pub fn decode_resp(&self, frame: &[u8]) -> Result<Resp, WireError> {
        let raw = self.inflate(frame)?;
        match self.encoding {
            Encoding::Json => json::decode_resp(&raw),
            Encoding::Gob => crate::gob::decode_resp(&raw),
        }
    }

    /// Encode a server frame.
    pub fn encode_resp(&self, resp: &Resp) -> Vec<u8> {
        let raw = match self.encoding {
            Encoding::Json => json::encode_resp(resp),
            Encoding::Gob => crate::gob::encode_resp(resp),
        };
        self.deflate(raw)
    }

    /// Go's `gzip.Reader` is multistream: concatenated members are one stream, and anything
    /// after the last member that is not another member is an error. `MultiGzDecoder` agrees.
    fn inflate<'a>(&self, frame: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, WireError> {
        if !self.gzip {
            return Ok(std::borrow::Cow::Borrowed(frame));
        }
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(frame)
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
        let mut enc =
            flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 2 + 32), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(&raw);
        enc.finish().unwrap_or_default()
    }
}

mod json;

#[cfg(test)]
mod tests {
    use super::*;

    const GZ_JSON: Codec = Codec { encoding: Encoding::Json, gzip: true };

    fn gzip(raw: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(raw).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_bomb_is_bounded() {
        // 40 MiB of spaces inflate from ~40 KB: under the frame limit, far over MAX_INFLATED.
        let bomb = gzip(&vec![b' '; 40 << 20]);
        assert!(bomb.len() <= crate::MAX_FRAME_BYTES, "{}", bomb.len());
        assert_eq!(GZ_JSON.decode_req(&bomb), Err(WireError::TooLarge(MAX_INFLATED as usize)));
        assert_eq!(GZ_JSON.decode_resp(&bomb), Err(WireError::TooLarge(MAX_INFLATED as usize)));
    }

    #[test]
    fn gzip_streams_as_go_reads_them() {
        let req = Req { req_identifier: 1001, send_id: "u1".into(), ..Req::default() };
        let json = json::encode_req(&req);
        assert_eq!(GZ_JSON.decode_req(&GZ_JSON.encode_req(&req)).unwrap(), req);
        // Concatenated members are one stream (Go's multistream default).
        let (a, b) = json.split_at(10);
        let two = [gzip(a), gzip(b)].concat();
        assert_eq!(GZ_JSON.decode_req(&two).unwrap(), req);
        // Garbage after the last member, a truncated member, or no gzip at all: errors.
        let mut trailing = gzip(&json);
        trailing.extend_from_slice(b"xx");
        assert!(matches!(GZ_JSON.decode_req(&trailing), Err(WireError::Gzip(_))));
        let whole = gzip(&json);
        assert!(matches!(GZ_JSON.decode_req(&whole[..whole.len() - 4]), Err(WireError::Gzip(_))));
        assert!(matches!(GZ_JSON.decode_req(&json), Err(WireError::Gzip(_))));
    }

    #[test]
    fn request_frames_over_the_limit_are_refused() {
        let codec = Codec { encoding: Encoding::Gob, gzip: false };
        let big = Req { data: vec![7; crate::MAX_FRAME_BYTES], ..Req::default() };
        let frame = codec.encode_req(&big);
        assert_eq!(codec.decode_req(&frame), Err(WireError::TooLarge(crate::MAX_FRAME_BYTES)));
        // Server frames have no limit.
        let resp = Resp { data: big.data.clone(), ..Resp::default() };
        assert_eq!(codec.decode_resp(&codec.encode_resp(&resp)).unwrap(), resp);
    }
}
