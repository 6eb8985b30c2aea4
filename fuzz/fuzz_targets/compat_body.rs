//! Fuzz target `compat_body`: request bodies of the OpenIM-compatible surface through its
//! decoder — the `canonicalize` stage every `/openim/*` route runs (Go-style JSON decoding
//! against the route's schema, `routes::compat::gojson`; protobuf bodies of `/jssdk/*`), then
//! the identity rules (`bind_identity`) that the handler applies to the decoded object.
//!
//! Input: byte 0 picks the allow-listed route, byte 1 bit 0 sends the body as
//! `application/x-protobuf`; the rest is the body.
//!
//! Asserts: the stage forwards exactly the canonical object `gojson::decode` yields (or refuses
//! when it refuses); the canonical object decodes again to itself (what OpenIM receives is what
//! imgate checked); a `/jssdk` protobuf body becomes an object that is canonical under the
//! route's JSON schema; after `bind_identity` accepts, every identity field names the caller, the
//! bound object is still canonical, and binding it again changes nothing.
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use axum::routing::post;
use axum::Router;
use host::routes::compat::gojson::{self, strings_at};
use host::routes::compat::{bind_identity, canonicalize, schema, Rule, ALLOWED};
use host::telemetry::RequestId;
use imgate_fuzz::{rt, USER};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tower::ServiceExt;

fn app() -> &'static Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(|| {
        let capture = |body: axum::body::Bytes| async move { body };
        Router::new().route("/openim/{*path}", post(capture)).layer(axum::middleware::from_fn(canonicalize))
    })
}

/// The body the stage hands on (`Ok`), or its refusal envelope (`Err`).
fn through_stage(path: &str, protobuf: bool, body: &[u8]) -> Result<Vec<u8>, Value> {
    let mut req = Request::post(format!("/openim{path}")).body(Body::from(body.to_vec())).expect("request");
    req.extensions_mut().insert(RequestId::generate());
    if protobuf {
        req.headers_mut().insert("content-type", "application/x-protobuf".parse().expect("value"));
    }
    let app = app().clone();
    rt().block_on(async move {
        let res = app.oneshot(req).await.expect("infallible");
        let refused = res.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.expect("body").to_vec();
        if refused {
            Err(serde_json::from_slice(&bytes).expect("an envelope"))
        } else {
            Ok(bytes)
        }
    })
}

fn canonical_under(schema: &'static [gojson::F], obj: &Map<String, Value>, what: &str) {
    let text = Value::Object(obj.clone()).to_string();
    match gojson::decode(schema, text.as_bytes()) {
        Ok(again) => assert_eq!(&again, obj, "{what}: not a fixpoint of the decoder"),
        Err(e) => panic!("{what}: refused by the decoder: {e}\n{text}"),
    }
}

fn identity(rules: &[Rule], schema: &'static [gojson::F], obj: &Map<String, Value>) {
    let mut bound = obj.clone();
    if bind_identity(rules, USER, &mut bound).is_err() {
        return;
    }
    for rule in rules {
        match *rule {
            Rule::Caller(p) => assert_eq!(strings_at(&bound, p), [USER], "{p} is not the caller after binding"),
            Rule::CallerIn(a, b) => {
                assert!(strings_at(&bound, a) == [USER] || strings_at(&bound, b) == [USER], "{a}/{b}")
            }
            Rule::CallerList(p) => {
                let items = strings_at(&bound, p);
                assert!(!items.is_empty() && items.iter().all(|u| *u == USER), "{p}: {items:?}");
            }
            Rule::Empty(p) => assert!(strings_at(&bound, p).is_empty(), "{p} is not empty"),
            _ => {}
        }
    }
    canonical_under(schema, &bound, "the bound object");
    let mut twice = bound.clone();
    bind_identity(rules, USER, &mut twice).expect("binding a bound object again");
    assert_eq!(twice, bound, "binding is not idempotent");
}

fuzz_target!(|data: &[u8]| {
    let [route, flags, body @ ..] = data else { return };
    let (path, rules) = ALLOWED[usize::from(*route) % ALLOWED.len()];
    let schema = schema::request_schema(path).expect("every allowed route has a schema");
    let protobuf = flags & 1 == 1;
    let staged = through_stage(path, protobuf, body);
    if protobuf && !path.starts_with("/jssdk/") {
        assert!(staged.is_err(), "a protobuf body was forwarded on {path}");
        return;
    }
    if protobuf {
        let Ok(json) = staged else { return };
        let obj: Map<String, Value> = serde_json::from_slice(&json).expect("the stage forwards a JSON object");
        canonical_under(schema, &obj, "a /jssdk protobuf body");
        identity(rules, schema, &obj);
        return;
    }
    match gojson::decode(schema, body) {
        Ok(obj) => {
            let forwarded = staged.unwrap_or_else(|e| panic!("the stage refused what the decoder accepts: {e}"));
            assert_eq!(
                forwarded,
                Value::Object(obj.clone()).to_string().into_bytes(),
                "the stage forwarded another body"
            );
            canonical_under(schema, &obj, "the canonical body");
            identity(rules, schema, &obj);
        }
        Err(_) => assert!(staged.is_err(), "the stage forwarded what the decoder refuses"),
    }
});
