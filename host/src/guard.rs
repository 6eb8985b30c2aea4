//! Pipeline stage "guard": cheap refusals before any real work — header limits, the request
//! deadline and load shedding. (Body size is capped by tower-http's `RequestBodyLimitLayer`,
//! placed by `pipeline.rs`.)
//!
//! The deadline and the shedding are written here rather than as tower's `Timeout` and
//! `LoadShed` + `ConcurrencyLimit`: those answer with boxed errors that need a `HandleErrorLayer`
//! to become our `{"code"}` answers; the few lines of [`guard`] are that, without the boxing. The
//! permit is one semaphore of the gateway (`AppState::in_flight`), shared by every route.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The guard stage, in this order: header limits, path hygiene, load shedding (never of
/// liveness), the deadline.
/// One middleware rather than four: each layer costs a boxed future and a clone of the rest of the
/// stack per request.
pub(crate) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(refused) = headers(&state, &req).or_else(|| path(&req)) {
        return refused;
    }
    // At most `server.max_concurrent_requests` at once; beyond that 503 at once, never a queue.
    // Liveness is never shed: a gateway full of requests waiting on a hung OpenIM still serves,
    // and an orchestrator must not restart it (dropping every in-memory session) over that.
    let _permit = if is_liveness(&req) {
        None
    } else {
        let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
            return ApiError::new(ErrorCode::Overloaded).into_response();
        };
        Some(permit)
    };
    // The whole request must be answered within `server.request_timeout_ms`, else 504 `timeout`.
    let limit = Duration::from_millis(state.config.server.request_timeout_ms);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            ApiError::new(ErrorCode::Timeout).with_detail(format!("deadline of {limit:?} passed")).into_response()
        }
    }
}

/// `GET /healthz` and `GET /readyz`: answered from memory, no OpenIM or Redis call, so they take
/// no request permit.
fn is_liveness(req: &Request) -> bool {
    req.method() == axum::http::Method::GET && matches!(req.uri().path(), "/healthz" | "/readyz")
}

/// Too many headers or too many header bytes → 431; header names with `_` → 400 (they are
/// ambiguous with `-` behind some proxies, attacks.md E8).
fn headers(state: &AppState, req: &Request) -> Option<Response> {
    let cfg = &state.config.server;
    let h = req.headers();
    let bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if h.len() > cfg.max_headers || bytes > cfg.max_header_bytes {
        return Some(
            ApiError::new(ErrorCode::HeadersTooLarge)
                .with_detail(format!("{} headers, {bytes} bytes", h.len()))
                .into_response(),
        );
    }
    if h.keys().any(|k| k.as_str().contains('_')) {
        return Some(ApiError::bad_request("header names must not contain '_'").into_response());
    }
    None
}

/// Paths with `..` or `.` segments (also percent-encoded), `//`, encoded `/` or `\\`, or a NUL are
/// refused before routing (client-auth §4): the signed path is the routed path, byte for byte.
fn path(req: &Request) -> Option<Response> {
    (!is_clean_path(req.uri().path()))
        .then(|| ApiError::bad_request("path has empty, dot or encoded-slash segments").into_response())
}

pub(crate) fn is_clean_path(path: &str) -> bool {
    let b = path.as_bytes();
    if path.contains("//") || b.contains(&b'\\') || b.contains(&0) {
        return false;
    }
    // `%2F` (/), `%5C` (\), `%00` in any case.
    let encoded_separator = b.windows(3).any(|w| {
        w[0] == b'%' && matches!((w[1], w[2].to_ascii_lowercase()), (b'2', b'f') | (b'5', b'c') | (b'0', b'0'))
    });
    !encoded_separator && path.split('/').skip(1).all(|seg| !is_dot_segment(seg))
}

/// `.` or `..`, each dot possibly written `%2e`/`%2E`.
fn is_dot_segment(seg: &str) -> bool {
    let mut rest = seg.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => tail,
            _ => return false,
        };
        dots += 1;
    }
    dots == 1 || dots == 2
}

#[cfg(test)]
mod tests {
    use super::is_clean_path;

    #[test]
    fn dot_segments_separators_and_nul_are_refused_in_any_spelling() {
        for bad in [
            "/v1/../admin",
            "/v1/./me",
            "/v1/%2e%2E/admin",
            "/v1/.%2e",
            "/v1/%2E",
            "/v1//me",
            "/v1/a%2Fb",
            "/v1/a%2fb",
            "/v1/a%5Cb",
            "/v1/a\\b",
            "/v1/a%00",
            "/..",
            "/v1/me/..",
        ] {
            assert!(!is_clean_path(bad), "{bad}");
        }
        for good in
            ["/v1/me", "/v1/me/", "/v1/...", "/v1/a.b", "/v1/%2e%2e%2e", "/v1/x%2e", "/openim/user/get_users_info", "/"]
        {
            assert!(is_clean_path(good), "{good}");
        }
    }
}
