//! Helpers on the contract's types (generated from `wit/plugin.wit`): reading requests and
//! responses, and building verdicts without spelling out every record.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::bindings::imgate::plugin::types::{
    AdminPrincipal, Header, HostError, Modification, Principal, Rejection, Request, RequestVerdict, Response,
    ResponseVerdict, UserPrincipal,
};

/// The first value of header `name` (ASCII case-insensitive; imgate sends names lowercase).
fn find_header<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

/// Serialises a value the plugin built itself.
///
/// Panics (a trap: imgate treats the call as failed) when `T`'s `Serialize` fails, which
/// `serde_json::Value` and plain derived structs never do.
#[allow(clippy::expect_used)] // a trap is the documented outcome, inside the plugin's own sandbox
fn to_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plugin value serialises to JSON")
}

fn json_content_type() -> Vec<Header> {
    vec![Header { name: "content-type".into(), value: "application/json".into() }]
}

impl Request {
    /// The first value of header `name`, compared ASCII case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The non-empty segments of the path, as sent (not percent-decoded):
    /// `/v1/groups/g1/join` gives `["v1", "groups", "g1", "join"]`.
    pub fn path_segments(&self) -> Vec<&str> {
        self.path.split('/').filter(|s| !s.is_empty()).collect()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

impl Principal {
    /// The end user, when the caller is one.
    pub fn user(&self) -> Option<&UserPrincipal> {
        match self {
            Principal::User(user) => Some(user),
            Principal::Admin(_) => None,
        }
    }

    /// The operator, when the caller is one.
    pub fn admin(&self) -> Option<&AdminPrincipal> {
        match self {
            Principal::Admin(admin) => Some(admin),
            Principal::User(_) => None,
        }
    }

    /// The end user's id; `None` for an operator.
    pub fn user_id(&self) -> Option<&str> {
        self.user().map(|u| u.user_id.as_str())
    }

    /// The end user's device tier; `None` for an operator.
    pub fn tier(&self) -> Option<&str> {
        self.user().map(|u| u.tier.as_str())
    }
}

impl AdminPrincipal {
    /// Whether the operator's token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

impl Response {
    /// A response with a JSON body and a `content-type: application/json` header.
    pub fn json_response<T: Serialize + ?Sized>(status: u16, value: &T) -> Response {
        Response { status, headers: json_content_type(), body: to_json(value) }
    }

    /// The first value of header `name`, compared ASCII case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// This response (same status and headers) with `value` as its JSON body.
    pub fn with_json_body<T: Serialize + ?Sized>(&self, value: &T) -> Response {
        Response { status: self.status, headers: self.headers.clone(), body: to_json(value) }
    }
}

impl RequestVerdict {
    /// Refuses the request. imgate requires `status` in 400-499 and `code` of 1-64 characters
    /// from `a-z 0-9 _ . -`; it sends `code` to the client as `reason`.
    pub fn reject(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        RequestVerdict::Reject(Rejection { status, code: code.into(), message: message.into() })
    }

    /// Replaces the request body (imgate checks it again against the route's allow-list).
    pub fn modify_body(body: impl Into<Vec<u8>>) -> Self {
        RequestVerdict::Modify(Modification { body: Some(body.into()), set_headers: Vec::new() })
    }

    /// Replaces the request body with `value` as JSON.
    ///
    /// # Panics
    ///
    /// When `T`'s `Serialize` fails (never for `serde_json::Value` or derived structs).
    pub fn modify_json<T: Serialize + ?Sized>(value: &T) -> Self {
        Self::modify_body(to_json(value))
    }

    /// Answers the request at once with `value` as JSON; the route does not run.
    ///
    /// # Panics
    ///
    /// When `T`'s `Serialize` fails (never for `serde_json::Value` or derived structs).
    pub fn respond_json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        RequestVerdict::Respond(Response::json_response(status, value))
    }
}

impl ResponseVerdict {
    /// Replaces the response with `value` as JSON and a `content-type: application/json` header.
    /// To keep the route's headers, use [`Response::with_json_body`].
    ///
    /// # Panics
    ///
    /// When `T`'s `Serialize` fails (never for `serde_json::Value` or derived structs).
    pub fn replace_json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        ResponseVerdict::Replace(Response::json_response(status, value))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn request(path: &str, body: &[u8], principal: Principal) -> Request {
        Request {
            method: "POST".into(),
            route: "groups.join".into(),
            path: path.into(),
            query: String::new(),
            headers: vec![Header { name: "x-deny".into(), value: "1".into() }],
            body: body.to_vec(),
            principal,
            operation_id: "op-1".into(),
        }
    }

    fn user(id: &str) -> Principal {
        Principal::User(UserPrincipal {
            user_id: id.into(),
            platform: 5,
            session_id: "s".into(),
            device_id: "d".into(),
            tier: "gold".into(),
        })
    }

    fn admin(scopes: &[&str]) -> Principal {
        Principal::Admin(AdminPrincipal {
            subject: "ops".into(),
            issuer: "https://idp".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn request_helpers() {
        let req = request("/v1/groups/g1/join/", br#"{"a":1}"#, user("u1"));
        assert_eq!(req.path_segments(), ["v1", "groups", "g1", "join"]);
        assert_eq!(req.header("X-Deny"), Some("1"));
        assert_eq!(req.header("x-other"), None);
        assert_eq!(req.json::<Value>().unwrap(), json!({"a": 1}));
        assert!(request("/", b"nope", user("u1")).json::<Value>().is_err());
        assert!(request("/", b"", user("u1")).path_segments().is_empty());
    }

    #[test]
    fn principal_helpers() {
        let u = user("u1");
        assert_eq!((u.user_id(), u.tier(), u.admin()), (Some("u1"), Some("gold"), None));
        let a = admin(&["users:write"]);
        assert_eq!((a.user_id(), a.tier()), (None, None));
        assert!(a.admin().unwrap().has_scope("users:write"));
        assert!(!a.admin().unwrap().has_scope("users"));
    }

    #[test]
    fn verdict_builders() {
        assert_eq!(
            RequestVerdict::reject(403, "no", "msg"),
            RequestVerdict::Reject(Rejection { status: 403, code: "no".into(), message: "msg".into() })
        );
        let RequestVerdict::Modify(m) = RequestVerdict::modify_json(&json!({"text": "hi"})) else { panic!() };
        assert_eq!(m.body.as_deref(), Some(br#"{"text":"hi"}"#.as_slice()));
        assert!(m.set_headers.is_empty());
        let RequestVerdict::Respond(r) = RequestVerdict::respond_json(200, &json!({"v": 1})) else { panic!() };
        assert_eq!(
            (r.status, r.header("content-type"), r.body.as_slice()),
            (200, Some("application/json"), &b"{\"v\":1}"[..])
        );
        let ResponseVerdict::Replace(r) = ResponseVerdict::replace_json(201, &json!([])) else { panic!() };
        assert_eq!((r.status, r.body.as_slice()), (201, &b"[]"[..]));
    }

    #[test]
    fn response_helpers() {
        let resp = Response {
            status: 200,
            headers: vec![Header { name: "x-a".into(), value: "b".into() }],
            body: br#"{"x":true}"#.to_vec(),
        };
        assert!(resp.is_success());
        assert_eq!(resp.json::<Value>().unwrap(), json!({"x": true}));
        let replaced = resp.with_json_body(&json!({"y": 1}));
        assert_eq!(
            (replaced.status, replaced.headers.clone(), replaced.body),
            (200, resp.headers, b"{\"y\":1}".to_vec())
        );
        assert!(!Response { status: 302, headers: vec![], body: vec![] }.is_success());
    }
}
