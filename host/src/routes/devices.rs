//! Admin routes for devices and sessions (client-auth §2 and §9).
//!
//! Enrolling binds one X25519 public key to one (user, device, platform); the key must be
//! canonical, not small-order and not enrolled anywhere else. Deleting a device, or revoking a
//! user, ends their sessions at once (and with them bearer tokens); revoking a user also logs
//! them out of OpenIM (`force_logout` per platform they used) so no OpenIM token outlives it.
//! OpenIM's privileged accounts (its admin ids, `appMangerLevel` ≥ 2) are never enrolled unless
//! `[openim.privileged] allow_user_ids` names them: a session acts with its user's OpenIM rights.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::{admin_action, is_valid_user_id};
use crate::auth::x25519::is_acceptable_static_key;
use crate::auth::{now_ms, AdminPrincipal};
use crate::error::{ApiError, ErrorCode};
use crate::openim::{is_user_platform, ops, As, CallCtx, Privilege};
use crate::state::AppState;
use crate::store::{Device, EnrollError};
use crate::telemetry::RequestId;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Enroll {
    device_id: String,
    platform_id: i32,
    public_key: String,
    /// Rate-limit tier (a `[rate_limits.<class>.tiers]` name); none = the class default.
    #[serde(default)]
    tier: String,
}

use crate::ids::is_device_id;

fn device_json(d: &Device) -> Value {
    json!({
        "user_id": d.user_id,
        "device_id": d.device_id,
        "platform_id": d.platform_id,
        "public_key": B64.encode(d.public_key),
        "tier": d.tier,
        "created_at": d.created_at_ms,
    })
}

fn user_path(user_id: &str) -> Result<(), ApiError> {
    if is_valid_user_id(user_id) {
        Ok(())
    } else {
        Err(ApiError::bad_request("user_id: 1-64 characters of A-Z, a-z, 0-9 and _"))
    }
}

/// `POST /v1/admin/users/{user_id}/devices` (scope `devices:write`).
pub(super) async fn enroll(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(user_id): Path<String>,
    Extension(admin): Extension<AdminPrincipal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    user_path(&user_id)?;
    let req: Enroll = serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    if !is_device_id(&req.device_id) {
        return Err(ApiError::bad_request("device_id: 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-'"));
    }
    if !is_user_platform(req.platform_id) {
        return Err(ApiError::bad_request("platform_id: an OpenIM user platform, 1-9 or 11"));
    }
    let key: [u8; 32] = B64
        .decode(req.public_key.as_bytes())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::bad_request("public_key: base64 of exactly 32 bytes"))?;
    if !is_acceptable_static_key(&key) {
        return Err(ApiError::bad_request("public_key: not a usable X25519 key (small-order or non-canonical)"));
    }
    // An admin id is refused on the config alone, before OpenIM is asked anything.
    if let Some(p) = state.openim.configured_privilege(&user_id) {
        return Err(privileged(&rid, &user_id, p));
    }
    // The user must exist in OpenIM, or every later OpenIM call for this device would fail; the
    // same fresh read says whether OpenIM privileges the user (appMangerLevel).
    let info = state
        .openim
        .user_info(&CallCtx::for_request(&rid), &user_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound).with_message("no such user in OpenIM"))?;
    if let Some(p) = state.openim.privilege_of(&info) {
        return Err(privileged(&rid, &user_id, p));
    }
    if req.tier.len() > 32
        || !req.tier.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
    {
        return Err(ApiError::bad_request("tier: at most 32 characters of a-z, 0-9, '_', '-'"));
    }
    let device = Device {
        user_id,
        device_id: req.device_id,
        platform_id: req.platform_id,
        public_key: key,
        tier: req.tier,
        created_at_ms: now_ms(),
    };
    admin_action(
        &state,
        &rid,
        &admin,
        "device_enroll",
        json!({ "user_id": device.user_id, "device_id": device.device_id }),
    )
    .await?;
    let outcome = state.store.enroll_device(device.clone()).await?;
    match outcome {
        Ok(()) => Ok((StatusCode::CREATED, Json(device_json(&device))).into_response()),
        Err(e @ (EnrollError::KeyTaken | EnrollError::DeviceExists)) => {
            Err(ApiError::new(ErrorCode::Conflict).with_message(e.to_string()))
        }
    }
}

/// The 403 for a privileged account; the reason also goes to the request's audit record.
fn privileged(rid: &RequestId, user_id: &str, p: Privilege) -> ApiError {
    rid.note_reason(&format!("device enrollment refused: {user_id} is {}", p.describe()));
    ApiError::forbidden().with_message(format!(
        "{user_id} is a privileged account in OpenIM ({}); its devices are refused unless [openim.privileged] allow_user_ids names it",
        p.describe()
    ))
}

/// `GET /v1/admin/users/{user_id}/devices` (scope `devices:write`).
pub(super) async fn list(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    Extension(_): Extension<AdminPrincipal>,
) -> Result<Json<Value>, ApiError> {
    user_path(&user_id)?;
    let devices: Vec<Value> = state.store.list_devices(&user_id).await?.iter().map(device_json).collect();
    Ok(Json(json!({ "devices": devices })))
}

/// `DELETE /v1/admin/users/{user_id}/devices/{device_id}` (scope `devices:write`): also ends its sessions.
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path((user_id, device_id)): Path<(String, String)>,
    Extension(admin): Extension<AdminPrincipal>,
) -> Result<StatusCode, ApiError> {
    admin_action(&state, &rid, &admin, "device_delete", json!({ "user_id": user_id, "device_id": device_id })).await?;
    let device = state
        .store
        .delete_device(&user_id, &device_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound).with_message("no such device"))?;
    let ended = state.store.revoke_sessions_of(&device.user_id, Some(&device.device_id)).await?;
    let sids: Vec<&str> = ended.iter().map(|s| s.session_id.as_str()).collect();
    crate::ws::sessions_ended(&state, &sids, crate::ws::Ended::Revoked).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/admin/sessions/{session_id}` (scope `sessions:revoke`).
pub(super) async fn revoke_session(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(session_id): Path<String>,
    Extension(admin): Extension<AdminPrincipal>,
) -> Result<StatusCode, ApiError> {
    admin_action(&state, &rid, &admin, "session_revoke", json!({ "session_id": session_id })).await?;
    let found = state.store.revoke_session(&session_id).await?;
    crate::ws::sessions_ended(&state, &[&session_id], crate::ws::Ended::Revoked).await;
    if found {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(ErrorCode::NotFound).with_message("no such session"))
    }
}

/// `POST /v1/admin/users/{user_id}/revoke` (scope `sessions:revoke`): every session of the user,
/// and an OpenIM `force_logout` for each platform the user has sessions or devices on.
pub(super) async fn revoke_user(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(user_id): Path<String>,
    Extension(admin): Extension<AdminPrincipal>,
) -> Result<Json<Value>, ApiError> {
    user_path(&user_id)?;
    admin_action(&state, &rid, &admin, "user_revoke", json!({ "user_id": user_id })).await?;
    let ended = state.store.revoke_sessions_of(&user_id, None).await?;
    let sids: Vec<&str> = ended.iter().map(|s| s.session_id.as_str()).collect();
    crate::ws::sessions_ended(&state, &sids, crate::ws::Ended::Revoked).await;
    let mut platforms: Vec<i32> = ended.iter().map(|s| s.platform_id).collect();
    platforms.extend(state.store.list_devices(&user_id).await?.iter().map(|d| d.platform_id));
    platforms.sort_unstable();
    platforms.dedup();
    let ctx = CallCtx::for_request(&rid);
    let mut logged_out = Vec::new();
    // OpenIM's force_logout takes platforms 1..=10 only (contract §4.5): HarmonyOS (11) cannot be kicked.
    for p in platforms.iter().copied().filter(|p| (1..=10).contains(p)) {
        let req = json!({ "platformID": p, "userID": user_id });
        let _: ops::Empty = state.openim.call(&ctx, ops::FORCE_LOGOUT, &req, As::Admin).await?;
        state.openim.forget_user_token(&user_id, p).await;
        logged_out.push(p);
    }
    Ok(Json(json!({ "revoked_sessions": ended.len(), "openim_logged_out_platforms": logged_out })))
}
