//! Routes anyone may call: liveness, readiness and the gateway's public key (client-auth §1).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::{ApiError, ErrorCode, ForeignEnvelope};
use crate::state::AppState;

/// Liveness for load balancers: the process answers. Says nothing about OpenIM.
pub(super) async fn liveness() -> &'static str {
    "ok"
}

/// Readiness for load balancers and operators, answered from memory (no OpenIM call, no Redis
/// round trip of its own: the last command's or the once-a-second ping's outcome), never shed.
///
/// 503 when this instance cannot serve for a reason of its own: the shared store (Redis) does
/// not answer (`store_unavailable`), or OpenIM refuses its credentials (`upstream_auth_failed`, a
/// bad `openim.secret` in a rollout). An OpenIM that is down or slow, an open circuit or a failed
/// token fetch are reported but leave it ready: every instance shares that OpenIM, and taking them
/// all out of the balancer would turn imgate's clear, coded refusals into connection errors.
pub(super) async fn readiness(State(state): State<AppState>) -> Response {
    let store_up = state.fleet.as_ref().is_none_or(|f| f.is_up());
    let openim = state.openim.standing();
    let mut reasons = Vec::new();
    let code = if !store_up {
        reasons.push("the shared store (Redis) does not answer".to_owned());
        Some(ErrorCode::StoreUnavailable)
    } else if openim.credentials_refused {
        reasons.push("OpenIM refuses imgate's admin credentials (openim.secret, openim.admin_user_id)".to_owned());
        Some(ErrorCode::UpstreamAuthFailed)
    } else {
        None
    };
    if let Some(why) = openim.last_failure {
        reasons.push(format!("the last admin-token fetch failed: {why}"));
    }
    for (service, circuit) in &openim.circuits {
        reasons.push(format!("OpenIM's {service} service: circuit {circuit}"));
    }
    let body = json!({
        "ready": code.is_none(),
        "code": code.map(ErrorCode::as_str),
        "reasons": reasons,
        "store": {
            "backend": if state.fleet.is_some() { "redis" } else { "memory" },
            "up": store_up,
        },
        "openim": {
            "credentials": if openim.credentials_refused { "refused" } else { "not_refused" },
            "admin_token": openim.admin_token,
            "last_failure": openim.last_failure,
            "circuits": openim.circuits.iter().map(|(s, c)| json!({"service": s, "state": c})).collect::<Vec<_>>(),
        },
    });
    let status = if code.is_some() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let mut res = (status, Json(body)).into_response();
    if code.is_some() {
        res.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        // The body above is the answer (the rescue point would replace an untagged 503's).
        res.extensions_mut().insert(ForeignEnvelope);
    }
    res
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
