//! Go `encoding/gob` for exactly OpenIM's two envelope structs (`Req`, `Resp`): what OpenIM's Go
//! SDK core (wasm, Electron, mobile) speaks by default (`sdkType=go`, contract §5.4). One fresh
//! encoder per frame, so every frame carries its type definition.

use crate::{Req, Resp, WireError};

pub fn encode_req(_req: &Req) -> Vec<u8> {
    Vec::new()
}
pub fn decode_req(_raw: &[u8]) -> Result<Req, WireError> {
    Err(WireError::Gob("not implemented yet".into()))
}
pub fn encode_resp(_resp: &Resp) -> Vec<u8> {
    Vec::new()
}
pub fn decode_resp(_raw: &[u8]) -> Result<Resp, WireError> {
    Err(WireError::Gob("not implemented yet".into()))
}
