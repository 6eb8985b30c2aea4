//! Routes anyone may call: liveness, readiness and the gateway's public key (client-auth §1).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// Liveness for load balancers: the process answers. Says nothing about OpenIM.
pub(super) async fn liveness() -> &'static str {
    "ok"
}

/// Readiness for load balancers: 200 when this instance can serve, 503 `store_unavailable` while
/// the shared store (Redis) it needs does not answer. Answered from what the last command or the
/// once-a-second ping saw: no round trip of its own.
pub(super) async fn readiness(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    match &state.fleet {
        Some(fleet) if !fleet.is_up() => {
            Err(crate::store::StoreError::Unavailable("redis does not answer".into()).into())
        }
        _ => Ok("ready"),
    }
}

/// `GET /v1/auth/gateway-key`: the current Noise static key, for discovery and rotation.
pub(super) async fn gateway_key(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let key = state
        .gateway_keys
        .first()
        .ok_or_else(|| ApiError::new(crate::error::ErrorCode::NotFound).with_message("no gateway key is configured"))?;
    Ok(Json(json!({
        "protocol": "Noise_IK_25519_ChaChaPoly_SHA256",
        "prologue": "imgate/1",
        "key_id": key.id,
        "public_key": key.public_b64(),
    })))
}
