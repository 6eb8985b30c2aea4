//! A plugin's answer read out of its own memory under the output limits: every length (body,
//! header list, header name and value, rejection code and message, `init`'s error) is checked
//! where the answer lies, in the guest's linear memory, before one byte is copied into imgate's
//! heap. An oversized answer costs the host a length check, not a copy of up to the plugin's
//! whole memory cap (issue 16; attacks.md P6).
//!
//! The types below mirror the WIT answers (`request-verdict`, `response-verdict`, `init`'s
//! `result<_, string>`) with wasmtime's lazy `WasmList` / `WasmStr` in place of owned lists and
//! strings; wasmtime checks them against the component's types when the export is looked up,
//! and lifting one only checks that its pointer and length lie inside the guest's memory.
//!
//! What is checked here is size; what an answer may *say* (status ranges, header names, JSON
//! bodies, rejection codes) is checked by the chain (`chain.rs`) on the owned values.
//!
//! One exception, stated rather than hidden: a component whose strings are UTF-16 (none of the
//! Rust or JavaScript toolchains emit that by default) has each string transcoded by wasmtime
//! before its length is known; lists of bytes are never copied before their check.

use wasmtime::component::{ComponentType, Lift, WasmList, WasmStr};
use wasmtime::StoreContextMut;

use super::runtime::{CallState, Failure, Header, Modification, Rejection, RequestVerdict, Response, ResponseVerdict};

/// Headers a plugin may set or answer with.
pub(crate) const MAX_HEADERS: usize = 32;
/// Bytes of a header name (names are lowercase tokens).
pub(crate) const MAX_HEADER_NAME: usize = 64;
/// Bytes of a header value.
pub(crate) const MAX_HEADER_VALUE: usize = 1024;
/// Characters of a rejection message (UTF-8: at most four bytes each).
pub(crate) const MAX_MESSAGE: usize = 512;
/// Bytes of a rejection code.
pub(crate) const MAX_CODE: usize = 64;
/// Bytes of the message `init` refuses a configuration with.
pub(crate) const MAX_INIT_ERROR: usize = 4096;

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct RawHeader {
    name: WasmStr,
    value: WasmStr,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct RawResponse {
    status: u16,
    headers: WasmList<RawHeader>,
    body: WasmList<u8>,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct RawRejection {
    status: u16,
    code: WasmStr,
    message: WasmStr,
}

#[derive(ComponentType, Lift)]
#[component(record)]
pub(crate) struct RawModification {
    body: Option<WasmList<u8>>,
    #[component(name = "set-headers")]
    set_headers: WasmList<RawHeader>,
}

#[derive(ComponentType, Lift)]
#[component(variant)]
pub(crate) enum RawRequestVerdict {
    #[component(name = "proceed")]
    Proceed,
    #[component(name = "modify")]
    Modify(RawModification),
    #[component(name = "reject")]
    Reject(RawRejection),
    #[component(name = "respond")]
    Respond(RawResponse),
}

#[derive(ComponentType, Lift)]
#[component(variant)]
pub(crate) enum RawResponseVerdict {
    #[component(name = "proceed")]
    Proceed,
    #[component(name = "replace")]
    Replace(RawResponse),
}

fn invalid(what: String) -> Failure {
    Failure::InvalidOutput(what)
}

/// Reads the lazily lifted answers with the limits of one plugin.
pub(crate) struct Reader<'s> {
    store: StoreContextMut<'s, CallState>,
    max_body: usize,
}

impl<'s> Reader<'s> {
    pub(crate) fn new(store: StoreContextMut<'s, CallState>, max_body: usize) -> Self {
        Reader { store, max_body }
    }

    fn check_body(&self, list: &WasmList<u8>) -> Result<(), Failure> {
        if list.len() > self.max_body {
            return Err(invalid(format!(
                "a body of {} bytes is larger than max_output_bytes ({})",
                list.len(),
                self.max_body
            )));
        }
        Ok(())
    }

    fn bytes(&self, list: &WasmList<u8>) -> Result<Vec<u8>, Failure> {
        self.check_body(list)?;
        Ok(list.as_le_slice(&self.store).to_vec())
    }

    fn string(&self, s: &WasmStr, max: usize, what: &str) -> Result<String, Failure> {
        // UTF-8 strings are borrowed from the guest's memory: validation, no copy.
        let text = s.to_str(&self.store).map_err(|_| invalid(format!("{what} is not valid UTF-8")))?;
        if text.len() > max {
            return Err(invalid(format!("{what} is longer than {max} bytes")));
        }
        Ok(text.into_owned())
    }

    fn headers(&mut self, list: &WasmList<RawHeader>) -> Result<Vec<Header>, Failure> {
        if list.len() > MAX_HEADERS {
            return Err(invalid(format!("more than {MAX_HEADERS} headers")));
        }
        let mut out = Vec::with_capacity(list.len());
        for i in 0..list.len() {
            let raw = match list.get(&mut self.store, i) {
                Some(Ok(h)) => h,
                Some(Err(e)) => return Err(invalid(format!("a header: {e:#}"))),
                None => break,
            };
            out.push(Header {
                name: self.string(&raw.name, MAX_HEADER_NAME, "a header name")?,
                value: self.string(&raw.value, MAX_HEADER_VALUE, "a header value")?,
            });
        }
        Ok(out)
    }

    fn response(&mut self, r: &RawResponse) -> Result<Response, Failure> {
        // The body is the largest part: refuse it before reading any header.
        self.check_body(&r.body)?;
        let headers = self.headers(&r.headers)?;
        Ok(Response { status: r.status, headers, body: self.bytes(&r.body)? })
    }

    pub(crate) fn request_verdict(&mut self, raw: RawRequestVerdict) -> Result<RequestVerdict, Failure> {
        Ok(match raw {
            RawRequestVerdict::Proceed => RequestVerdict::Proceed,
            RawRequestVerdict::Modify(m) => {
                let body = match &m.body {
                    Some(b) => Some(self.bytes(b)?),
                    None => None,
                };
                RequestVerdict::Modify(Modification { body, set_headers: self.headers(&m.set_headers)? })
            }
            RawRequestVerdict::Reject(r) => RequestVerdict::Reject(Rejection {
                status: r.status,
                code: self.string(&r.code, MAX_CODE, "a rejection code")?,
                message: self.string(&r.message, MAX_MESSAGE * 4, "a rejection message")?,
            }),
            RawRequestVerdict::Respond(r) => RequestVerdict::Respond(self.response(&r)?),
        })
    }

    pub(crate) fn response_verdict(&mut self, raw: RawResponseVerdict) -> Result<ResponseVerdict, Failure> {
        Ok(match raw {
            RawResponseVerdict::Proceed => ResponseVerdict::Proceed,
            RawResponseVerdict::Replace(r) => ResponseVerdict::Replace(self.response(&r)?),
        })
    }

    pub(crate) fn init_result(&mut self, raw: Result<(), WasmStr>) -> Result<Result<(), String>, Failure> {
        match raw {
            Ok(()) => Ok(Ok(())),
            Err(e) => Ok(Err(self.string(&e, MAX_INIT_ERROR, "init's error message")?)),
        }
    }
}
