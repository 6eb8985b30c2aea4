//! The route table: every path imgate answers, and nothing else (unknown paths are 404).
//!
//! `/v1` is imgate's own, versioned API: its request and response shapes are imgate's, not
//! OpenIM's. Admin routes sit under `/v1/admin` and each names the scope it needs.

mod admin;
mod public;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(public::liveness))
        .route("/v1/auth/gateway-key", get(public::gateway_key))
        .route("/v1/admin/health", get(admin::health))
        .route("/v1/admin/users", post(admin::register_users))
        .route("/v1/admin/openim/{*path}", post(admin::openim_passthrough))
}
