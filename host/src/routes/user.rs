//! `/v1` routes of an authenticated user (signed requests): who am I, bearer tokens, logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};

use crate::auth::{bearer, Caller};
use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry::RequestId;

/// `GET /v1/me`: the caller as the session knows it.
pub(super) async fn me(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Json<Value> {
    let idle_ms = state.config.auth.session_idle_timeout_secs as i64 * 1000;
    Json(json!({
        "user_id": caller.user_id,
        "platform_id": caller.platform_id,
        "device_id": caller.device_id,
        "session_id": caller.session_id,
        "expires_at": caller.session_expires_at_ms,
        "idle_expires_at": (crate::auth::now_ms() + idle_ms).min(caller.session_expires_at_ms),
    }))
}

/// `POST /v1/auth/token`: a bearer token for the OpenIM-compatible surface (§5).
///
/// A session of an OpenIM admin id that the config does not allow should not exist (handshakes
/// refuse it; it can only predate the config): it gets no token and is ended, with the generic
/// 401 of every authentication failure and the reason in the audit record.
pub(super) async fn token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(rid): Extension<RequestId>,
) -> Result<Json<Value>, ApiError> {
    match bearer::mint(&state, &caller).await? {
        Ok((token, expires_at)) => Ok(Json(json!({ "token": token, "expires_at": expires_at }))),
        Err(p) => {
            state.store.revoke_session(&caller.session_id).await?;
            crate::ws::sessions_ended(&state, &[&caller.session_id], crate::ws::Ended::Revoked).await;
            rid.note_reason(&format!("bearer token refused, session ended: {} is {}", caller.user_id, p.describe()));
            Err(ApiError::unauthenticated().with_detail("session of a privileged OpenIM account"))
        }
    }
}

/// `POST /v1/auth/logout`: ends the session, its tokens and tickets (§9).
pub(super) async fn logout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    state.store.revoke_session(&caller.session_id).await?;
    crate::ws::sessions_ended(&state, &[&caller.session_id], crate::ws::Ended::Revoked).await;
    Ok(StatusCode::NO_CONTENT)
}
