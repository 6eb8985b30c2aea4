//! Fuzz target `signed_request`: HTTP requests through the signed-request stage
//! (`auth::signed::require`, the route layer every user route runs) in front of a handler that
//! echoes the `Caller`, on a gateway state with one live session (`alice`); with flag `P`, through
//! the whole gateway instead (`host::app`: request ids, the guard's header and path checks, the
//! router, every route's authentication, rate limit and handler; OpenIM is a fake that knows
//! tokens). The headers, method, path, query and body are the fuzzer's; the session store, clock
//! and nonce cache are real.
//!
//! Input (text; invalid parts are skipped): line 1 = flags, line 2 = method, line 3 = the
//! request target (`/path?query`), then `name: value` header lines up to an empty line, then the
//! body. In header values `$SESSION` becomes the live session's id and `$NOW` the current time in
//! ms. Flag `S`: the target signs the request itself with the independent client library
//! (`imgate-client`: fresh nonce, current time), replacing any signature headers.
//!
//! Asserts, on the stage: a request the client signed is accepted as `alice` exactly once (the
//! same bytes again are a replay: 401), and refused (401) with one character of its signature
//! changed; any accepted request carries the signature that the client library computes over the
//! request as received (nothing but a correct MAC over these exact bytes gets in). Through the
//! whole gateway, where the changed signature is refused with 401 (a signed route, past the
//! guard), the signed request is not refused with 401 and its replay is.
#![no_main]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::any;
use axum::{Extension, Router};
use host::auth::signed::{HEADER_NONCE, HEADER_SESSION, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use host::auth::Caller;
use host::AppState;
use imgate_fuzz::{add_session, gateway_state, role_openim, rt, SESSION_ID, SESSION_KEY, USER};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

fn state() -> &'static AppState {
    static STATE: OnceLock<AppState> = OnceLock::new();
    STATE.get_or_init(|| {
        let state = gateway_state(&role_openim());
        add_session(&state);
        state
    })
}

/// The signed-request stage alone, in front of a handler that echoes the caller.
fn stage() -> &'static Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(|| {
        let echo = |Extension(c): Extension<Caller>| async move { c.user_id.into_response() };
        Router::new().fallback(any(echo)).layer(axum::middleware::from_fn_with_state(
            (state().clone(), None::<Arc<str>>),
            host::auth::signed::require,
        ))
    })
}

/// The whole gateway.
fn gateway() -> &'static Router {
    static APP: OnceLock<Router> = OnceLock::new();
    APP.get_or_init(|| host::app(state().clone()))
}

/// Answers the request: status and body.
fn send(app: &Router, mut req: Request) -> (StatusCode, Vec<u8>) {
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let app = app.clone();
    rt().block_on(async move {
        let res = app.oneshot(req).await.expect("infallible");
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.expect("body");
        (status, body.to_vec())
    })
}

struct Parsed<'a> {
    flags: &'a [u8],
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

fn parse(data: &[u8]) -> Option<Parsed<'_>> {
    let mut lines = data.splitn(4, |b| *b == b'\n');
    let flags = lines.next()?;
    let method = http::Method::from_bytes(lines.next()?).ok()?;
    let uri = http::Uri::try_from(lines.next()?).ok()?;
    let rest = lines.next().unwrap_or_default();
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let now = host::auth::now_ms().to_string();
    let mut headers = http::HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let Ok(name) = http::HeaderName::from_bytes(&line[..colon]) else { continue };
        let value =
            String::from_utf8_lossy(&line[colon + 1..]).trim().replace("$SESSION", SESSION_ID).replace("$NOW", &now);
        let Ok(value) = http::HeaderValue::from_str(&value) else { continue };
        headers.append(name, value);
    }
    Some(Parsed { flags, method, uri, headers, body: body.to_vec() })
}

fn request(p: &Parsed<'_>, headers: &http::HeaderMap) -> Request {
    let mut req = Request::new(Body::from(p.body.clone()));
    *req.method_mut() = p.method.clone();
    *req.uri_mut() = p.uri.clone();
    *req.headers_mut() = headers.clone();
    req
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// What the client library signs for these headers over the request as received.
fn client_signature(p: &Parsed<'_>, h: &http::HeaderMap) -> Option<String> {
    let ts: i64 = header(h, HEADER_TIMESTAMP)?.parse().ok()?;
    let canonical = imgate_client::canonical_string(
        header(h, HEADER_SESSION)?,
        ts,
        header(h, HEADER_NONCE)?,
        p.method.as_str(),
        p.uri.path(),
        p.uri.query().unwrap_or(""),
        &p.body,
    );
    Some(imgate_client::sign(&SESSION_KEY, &canonical))
}

fn fresh_nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("fuzz-nonce-{:016x}", N.fetch_add(1, Ordering::Relaxed))
}

fuzz_target!(|data: &[u8]| {
    let Some(p) = parse(data) else { return };
    let whole = p.flags.contains(&b'P');
    let app = if whole { gateway() } else { stage() };
    let mut headers = p.headers.clone();
    if p.flags.contains(&b'S') {
        if whole {
            // A route may have ended the session (logout): a fresh one, as after a handshake.
            add_session(state());
        }
        let ts = host::auth::now_ms();
        let nonce = fresh_nonce();
        let canonical = imgate_client::canonical_string(
            SESSION_ID,
            ts,
            &nonce,
            p.method.as_str(),
            p.uri.path(),
            p.uri.query().unwrap_or(""),
            &p.body,
        );
        let sig = imgate_client::sign(&SESSION_KEY, &canonical);
        for (name, value) in
            [(HEADER_SESSION, SESSION_ID.to_owned()), (HEADER_TIMESTAMP, ts.to_string()), (HEADER_NONCE, nonce)]
        {
            headers.insert(name, value.parse().expect("header value"));
        }
        // One character of the signature changed: refused, and the nonce is not spent by it.
        let mut bad = sig.clone().into_bytes();
        let i = usize::from(data.len() as u8) % bad.len();
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        headers.insert(HEADER_SIGNATURE, String::from_utf8(bad).expect("ascii").parse().expect("header value"));
        let (forged, _) = send(app, request(&p, &headers));
        if whole && forged != StatusCode::UNAUTHORIZED {
            // Refused before authentication (guard, router), or a route that is not signed.
            return;
        }
        assert_eq!(forged, StatusCode::UNAUTHORIZED, "a changed signature was not refused");

        headers.insert(HEADER_SIGNATURE, sig.parse().expect("header value"));
        let (status, body) = send(app, request(&p, &headers));
        if whole {
            assert_ne!(status, StatusCode::UNAUTHORIZED, "a correctly signed request was refused: {body:?}");
        } else {
            assert_eq!(status, StatusCode::OK, "a correctly signed request was refused");
            assert_eq!(body, USER.as_bytes(), "the caller is not the session's user");
        }
        let (status, _) = send(app, request(&p, &headers));
        assert_eq!(status, StatusCode::UNAUTHORIZED, "a replay was accepted");
        return;
    }
    let (status, body) = send(app, request(&p, &headers));
    if !whole && status == StatusCode::OK {
        assert_eq!(body, USER.as_bytes());
        let sent = header(&headers, HEADER_SIGNATURE).map(str::to_owned);
        assert!(
            sent.is_some() && sent == client_signature(&p, &headers),
            "accepted without the signature the client library computes"
        );
    }
});
