//! The recorded request and response `imgate plugin test` reads (JSON files; their format is in
//! `docs/plugin-guide.md`), turned into what the gateway's chain would hand a plugin: header names
//! lowercase, credential and framing headers removed (as the chain never shows them), a principal
//! (a user `alice` when the file names none).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use crate::plugins::runtime::{AdminPrincipal, Header, Principal, Request, Response, UserPrincipal};

/// The request id hooks see (`operation-id` unless the request file gives one; `log` lines).
pub(super) const REQUEST_ID: &str = "plugin-test";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    /// A comment.
    #[serde(rename = "//", default)]
    _comment: Option<Value>,
    #[serde(default = "default_method")]
    method: String,
    route: String,
    path: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(flatten)]
    body: BodyFile,
    #[serde(default)]
    principal: Option<PrincipalFile>,
    #[serde(default)]
    operation_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseFile {
    #[serde(rename = "//", default)]
    _comment: Option<Value>,
    #[serde(default = "default_status")]
    status: u16,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(flatten)]
    body: BodyFile,
}

/// A body: JSON (`body`), text (`body_text`) or bytes (`body_base64`); none is an empty body.
#[derive(Deserialize, Default)]
struct BodyFile {
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    body_text: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

impl BodyFile {
    fn bytes(self) -> Result<Vec<u8>, String> {
        match (self.body, self.body_text, self.body_base64) {
            (None, None, None) => Ok(Vec::new()),
            (Some(v), None, None) => serde_json::to_vec(&v).map_err(|e| e.to_string()),
            (None, Some(t), None) => Ok(t.into_bytes()),
            (None, None, Some(b)) => B64.decode(b.trim()).map_err(|e| format!("body_base64: {e}")),
            _ => Err("give at most one of body, body_text, body_base64".into()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum PrincipalFile {
    User(UserFile),
    Admin(AdminFile),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    user_id: String,
    #[serde(default = "default_platform")]
    platform: u32,
    #[serde(default = "default_session")]
    session_id: String,
    #[serde(default = "default_device")]
    device_id: String,
    #[serde(default = "default_tier")]
    tier: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    subject: String,
    #[serde(default)]
    issuer: String,
    #[serde(default)]
    scopes: Vec<String>,
}

fn default_method() -> String {
    "POST".into()
}
fn default_status() -> u16 {
    200
}
fn default_platform() -> u32 {
    5
}
fn default_session() -> String {
    "test-session".into()
}
fn default_device() -> String {
    "test-device".into()
}
fn default_tier() -> String {
    "standard".into()
}

/// Request headers the gateway never shows a plugin: credentials (`chain.rs` HIDDEN_HEADERS) and
/// framing (FRAMING).
const NOT_SHOWN: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "token",
    crate::auth::signed::HEADER_SESSION,
    crate::auth::signed::HEADER_SIGNATURE,
    crate::auth::signed::HEADER_NONCE,
    crate::auth::signed::HEADER_TIMESTAMP,
    "content-length",
    "transfer-encoding",
    "connection",
];

/// The request as the gateway would hand it to `on-request`, and the headers it would not show.
pub(super) struct RecordedRequest {
    pub(super) request: Request,
    pub(super) removed_headers: Vec<String>,
}

fn headers_from(map: BTreeMap<String, String>, removed: &mut Vec<String>) -> Vec<Header> {
    let mut out = Vec::new();
    for (name, value) in map {
        let name = name.to_ascii_lowercase();
        if NOT_SHOWN.contains(&name.as_str()) {
            removed.push(name);
        } else {
            out.push(Header { name, value });
        }
    }
    out
}

pub(super) fn request_from(v: Value) -> Result<RecordedRequest, String> {
    let f: RequestFile = serde_json::from_value(v).map_err(|e| format!("not a recorded request: {e}"))?;
    let mut removed_headers = Vec::new();
    let principal = match f.principal {
        None => Principal::User(UserPrincipal {
            user_id: "alice".into(),
            platform: default_platform(),
            session_id: default_session(),
            device_id: default_device(),
            tier: default_tier(),
        }),
        Some(PrincipalFile::User(u)) => Principal::User(UserPrincipal {
            user_id: u.user_id,
            platform: u.platform,
            session_id: u.session_id,
            device_id: u.device_id,
            tier: u.tier,
        }),
        Some(PrincipalFile::Admin(a)) => {
            Principal::Admin(AdminPrincipal { subject: a.subject, issuer: a.issuer, scopes: a.scopes })
        }
    };
    let request = Request {
        method: f.method.to_ascii_uppercase(),
        route: f.route,
        path: f.path,
        query: f.query.strip_prefix('?').unwrap_or(&f.query).to_owned(),
        headers: headers_from(f.headers, &mut removed_headers),
        body: f.body.bytes()?,
        principal,
        operation_id: f.operation_id.unwrap_or_else(|| REQUEST_ID.into()),
    };
    Ok(RecordedRequest { request, removed_headers })
}

pub(super) fn response_from(v: Value) -> Result<Response, String> {
    let f: ResponseFile = serde_json::from_value(v).map_err(|e| format!("not a recorded response: {e}"))?;
    let mut removed = Vec::new();
    let headers = headers_from(f.headers, &mut removed);
    Ok(Response { status: f.status, headers, body: f.body.bytes()? })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn recorded_requests_take_json_text_or_base64_bodies_and_lose_credential_headers() {
        let r = request_from(json!({
            "//": "a comment", "route": "send_text_to_user", "path": "/v1/messages/user/bob", "query": "?a=1",
            "headers": {"Content-Type": "application/json", "Authorization": "Bearer x"},
            "body": {"text": "hi"},
            "principal": {"admin": {"subject": "ops", "scopes": ["imgate:admin"]}}
        }))
        .unwrap();
        assert_eq!((r.request.method.as_str(), r.request.query.as_str()), ("POST", "a=1"));
        assert_eq!(r.request.body, br#"{"text":"hi"}"#);
        assert_eq!(r.request.headers.len(), 1);
        assert_eq!(r.request.headers[0].name, "content-type");
        assert_eq!(r.removed_headers, ["authorization"]);
        assert!(matches!(r.request.principal, Principal::Admin(ref a) if a.subject == "ops"));

        let r = request_from(json!({"route": "r", "path": "/", "body_base64": "AAE="})).unwrap();
        assert_eq!(r.request.body, [0, 1]);
        assert!(matches!(r.request.principal, Principal::User(ref u) if u.user_id == "alice"));
        let r = request_from(json!({"route": "r", "path": "/", "body_text": "not json"})).unwrap();
        assert_eq!(r.request.body, b"not json");

        let two = request_from(json!({"route": "r", "path": "/", "body": {}, "body_text": "x"}));
        assert!(two.err().unwrap().contains("at most one"));
        let typo = request_from(json!({"route": "r", "path": "/", "bdy": {}}));
        assert!(typo.err().unwrap().contains("bdy"));
        let response = response_from(json!({"headers": {"X-A": "1"}, "body": [1]})).unwrap();
        assert_eq!((response.status, response.body.as_slice()), (200, b"[1]".as_slice()));
    }
}
