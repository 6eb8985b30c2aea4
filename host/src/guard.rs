//! Pipeline stage "guard": cheap refusals before any real work — header limits, the request
//! deadline and load shedding. (Body size is capped by tower-http's `RequestBodyLimitLayer`,
//! placed by `pipeline.rs`.)

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// Too many headers or too many header bytes → 431; header names with `_` → 400 (they are
/// ambiguous with `-` behind some proxies, attacks.md E8).
pub(crate) async fn headers(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let cfg = &state.config.server;
    let h = req.headers();
    let bytes: usize = h.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if h.len() > cfg.max_headers || bytes > cfg.max_header_bytes {
        return ApiError::new(ErrorCode::HeadersTooLarge)
            .with_detail(format!("{} headers, {bytes} bytes", h.len()))
            .into_response();
    }
    if h.keys().any(|k| k.as_str().contains('_')) {
        return ApiError::bad_request("header names must not contain '_'").into_response();
    }
    next.run(req).await
}

/// Paths with `..` or `.` segments (also percent-encoded), `//`, encoded `/` or `\\`, or a NUL are
/// refused before routing (client-auth §4): the signed path is the routed path, byte for byte.
pub(crate) async fn path(req: Request, next: Next) -> Response {
    if !is_clean_path(req.uri().path()) {
        return ApiError::bad_request("path has empty, dot or encoded-slash segments").into_response();
    }
    next.run(req).await
}

pub(crate) fn is_clean_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    if lower.contains("//")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains('\\')
        || lower.contains("%00")
    {
        return false;
    }
    lower.split('/').skip(1).all(|seg| {
        let decoded = seg.replace("%2e", ".");
        decoded != "." && decoded != ".."
    })
}

/// The whole request must be answered within `server.request_timeout_ms` → else 504 `timeout`.
pub(crate) async fn deadline(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let limit = Duration::from_millis(state.config.server.request_timeout_ms);
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            ApiError::new(ErrorCode::Timeout).with_detail(format!("deadline of {limit:?} passed")).into_response()
        }
    }
}

/// At most `server.max_concurrent_requests` at once; beyond that 503 at once instead of queueing.
pub(crate) async fn shed(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return ApiError::new(ErrorCode::Overloaded).into_response();
    };
    next.run(req).await
}
