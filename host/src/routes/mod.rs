//! The route table: every path imgate answers, and nothing else (unknown paths are 404).
//!
//! `/v1` is imgate's own, versioned API: its request and response shapes are imgate's, not
//! OpenIM's. Admin routes sit under `/v1/admin` and each names the scope it needs.

mod admin;
mod devices;
mod public;
mod user;

use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::auth::{handshake, signed};
use crate::ratelimit;
use crate::state::AppState;

pub fn router(state: &AppState) -> Router<AppState> {
    // User routes: every request must be a valid signed request (client-auth §4).
    let user = Router::new()
        .route("/v1/me", get(user::me))
        .route("/v1/auth/token", post(user::token))
        .route("/v1/auth/logout", post(user::logout))
        // Route layers run bottom-up: authenticate, then rate-limit by the caller's user id.
        .route_layer(from_fn_with_state((state.clone(), "default"), ratelimit::limit_user))
        .route_layer(from_fn_with_state(state.clone(), signed::require));
    Router::new()
        .route("/healthz", get(public::liveness))
        .route("/v1/auth/gateway-key", get(public::gateway_key))
        .route("/v1/auth/handshake", post(handshake::handle))
        .route("/v1/admin/health", get(admin::health))
        .route("/v1/admin/users", post(admin::register_users))
        .route("/v1/admin/users/{user_id}/devices", post(devices::enroll).get(devices::list))
        .route("/v1/admin/users/{user_id}/devices/{device_id}", delete(devices::delete))
        .route("/v1/admin/users/{user_id}/revoke", post(devices::revoke_user))
        .route("/v1/admin/sessions/{session_id}", delete(devices::revoke_session))
        .route("/v1/admin/openim/{*path}", post(admin::openim_passthrough))
        .merge(user)
}
