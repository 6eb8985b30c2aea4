//! Routes anyone may call: liveness and the gateway's public key (client-auth §1).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// Liveness for load balancers: the process answers. Says nothing about OpenIM.
pub(super) async fn liveness() -> &'static str {
    "ok"
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
