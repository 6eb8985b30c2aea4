//! `/v1/admin/plugins`: what runs, and the operator's levers — upload, activate, rollback.
//!
//! Reads need `imgate:admin`, changes `plugins:write`. Every change is recorded durably in the
//! audit log before it is made (and the plugin manager records what happened: activated or
//! refused). Validation (compile, link, instantiate, `init` on every route config) runs on a
//! blocking thread; a refused version never replaces the serving one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::admin::admin_action;
use crate::auth::AdminPrincipal;
use crate::error::{ApiError, ErrorCode};
use crate::plugins::api::{ActivateRequest, Changed, PluginList, PluginStatus, Uploaded};
use crate::plugins::reload::{Manager, ManagerError};
use crate::plugins::Source;
use crate::state::AppState;
use crate::telemetry::RequestId;

fn manager(state: &AppState) -> Result<Arc<Manager>, ApiError> {
    state
        .plugins
        .manager
        .clone()
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound).with_message("no plugins are configured"))
}

fn known(m: &Manager, name: &str) -> Result<(), ApiError> {
    if m.is_configured(name) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::NotFound).with_message("no such plugin"))
    }
}

/// The one place a plugin manager error becomes an answer: what the client did wrong is a 4xx
/// with the stable `reason` and words safe to show; a server fault is 500 `internal`. The full
/// text (file paths, I/O errors, wasmtime's diagnostics) is only the `detail`: the log, never
/// the client.
///
/// | variant | status | code | reason |
/// |---|---|---|---|
/// | `UnknownPlugin` | 404 | `not_found` | `unknown_plugin` |
/// | `UnknownVersion` | 404 | `not_found` | `unknown_version` |
/// | `Refused` (a load check) | 400 | `bad_request` | the check: `not_a_component`, `imports_not_allowed`, ... |
/// | `Quarantined`, `NothingToRollBack`, `AlreadyRefused` | 409 | `conflict` | `quarantined`, `nothing_to_roll_back`, `already_refused` |
/// | `Store`, `Internal` | 500 | `internal` | `store_failed`, `internal` |
impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> ApiError {
        let code = match &e {
            ManagerError::UnknownPlugin(_) | ManagerError::UnknownVersion { .. } => ErrorCode::NotFound,
            ManagerError::Refused { .. } => ErrorCode::BadRequest,
            ManagerError::Quarantined { .. } | ManagerError::NothingToRollBack(_) | ManagerError::AlreadyRefused => {
                ErrorCode::Conflict
            }
            ManagerError::Store(_) | ManagerError::Internal(_) => ErrorCode::Internal,
        };
        ApiError::new(code).with_message(e.message()).with_reason(e.reason()).with_detail(e.to_string())
    }
}

/// Runs a blocking manager operation off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ManagerError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(ApiError::internal(format!("plugin operation: {e}"))),
    }
}

/// `GET /v1/admin/plugins`
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(_): Extension<AdminPrincipal>,
) -> Result<Json<PluginList>, ApiError> {
    let plugins = state.plugins.manager.as_ref().map(|m| m.status()).unwrap_or_default();
    Ok(Json(PluginList { generation: state.plugins.snapshot().generation, plugins }))
}

/// `GET /v1/admin/plugins/{name}`
pub(super) async fn status(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Extension(_): Extension<AdminPrincipal>,
) -> Result<Json<PluginStatus>, ApiError> {
    let m = manager(&state)?;
    let s = m
        .status()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound).with_message("no such plugin"))?;
    Ok(Json(s))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadQuery {
    /// A version label for the manifest (default: the hash's first 12 hex digits).
    version: Option<String>,
    /// Activate at once (default false: only stored after the checks).
    #[serde(default)]
    activate: bool,
}

/// `POST /v1/admin/plugins/{name}/versions?version=V&activate=true`, body: the component.
pub(super) async fn upload(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(name): Path<String>,
    Query(q): Query<UploadQuery>,
    Extension(admin): Extension<AdminPrincipal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let m = manager(&state)?;
    known(&m, &name)?;
    if let Some(v) = &q.version {
        if !crate::ids::is_version_label(v) {
            return Err(ApiError::bad_request("version: 1-64 of A-Z a-z 0-9 . _ - +"));
        }
    }
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(&body));
    let action = if q.activate { "plugin_push_activate" } else { "plugin_upload" };
    admin_action(&state, &rid, &admin, action, json!({ "plugin": name, "hash": hash, "version": q.version })).await?;
    let (n, v, activate) = (name.clone(), q.version.clone(), q.activate);
    let bytes = body.clone();
    let manifest = blocking(move || {
        if activate {
            m.activate(&n, &body, Source::Upload, v.as_deref())
        } else {
            m.upload(&n, &body, v.as_deref())
        }
    })
    .await?;
    tell_fleet(&state, &name, Some(&bytes), &manifest, q.activate).await?;
    Ok((StatusCode::CREATED, Json(Uploaded { manifest, active: q.activate })).into_response())
}

/// `POST /v1/admin/plugins/{name}/activate` `{"hash": "<sha256>"}`: a stored version.
pub(super) async fn activate(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(name): Path<String>,
    Extension(admin): Extension<AdminPrincipal>,
    body: Bytes,
) -> Result<Json<Changed>, ApiError> {
    let m = manager(&state)?;
    known(&m, &name)?;
    let req: ActivateRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("expected {{\"hash\": \"...\"}}: {e}")))?;
    if !crate::plugins::store::is_hash(&req.hash) {
        return Err(ApiError::bad_request("hash: 64 lowercase hex digits"));
    }
    admin_action(&state, &rid, &admin, "plugin_activate", json!({ "plugin": name, "hash": req.hash })).await?;
    // A version uploaded through another instance of the fleet: fetched by its hash.
    let from_fleet = match (&state.fleet, m.stored_bytes(&req.hash)) {
        (Some(fleet), None) => crate::fleet::plugins::fetch(fleet, &req.hash).await.map_err(fleet_error)?,
        _ => None,
    };
    let n = name.clone();
    let manifest = blocking(move || match from_fleet {
        Some((bytes, stored)) => m.activate(&n, &bytes, Source::Upload, stored.map(|s| s.version).as_deref()),
        None => m.activate_hash(&n, &req.hash, Source::Upload),
    })
    .await?;
    tell_fleet(&state, &name, None, &manifest, true).await?;
    Ok(Json(Changed { manifest }))
}

/// `POST /v1/admin/plugins/{name}/rollback`: the most recent earlier version not quarantined.
pub(super) async fn rollback(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(name): Path<String>,
    Extension(admin): Extension<AdminPrincipal>,
) -> Result<Json<Changed>, ApiError> {
    let m = manager(&state)?;
    known(&m, &name)?;
    admin_action(&state, &rid, &admin, "plugin_rollback", json!({ "plugin": name })).await?;
    let n = name.clone();
    let manifest = blocking(move || m.rollback(&n, Source::Rollback)).await?;
    tell_fleet(&state, &name, None, &manifest, true).await?;
    Ok(Json(Changed { manifest }))
}

/// In a fleet: the version is stored for every instance and, when activated here, announced so
/// every instance serves it. Done only after this instance accepted it. A failure is the admin's
/// to know (503): this instance changed, the others did not.
async fn tell_fleet(
    state: &AppState,
    name: &str,
    bytes: Option<&[u8]>,
    manifest: &crate::plugins::store::Manifest,
    activated: bool,
) -> Result<(), ApiError> {
    let Some(fleet) = &state.fleet else { return Ok(()) };
    let bytes = match bytes {
        Some(b) => Some(b.to_vec()),
        None => state.plugins.manager.as_ref().and_then(|m| m.stored_bytes(&manifest.hash)),
    };
    if let Some(bytes) = bytes {
        crate::fleet::plugins::share(fleet, &bytes, manifest).await.map_err(fleet_error)?;
    }
    if activated {
        crate::fleet::plugins::announce(fleet, name, &manifest.hash).await.map_err(fleet_error)?;
    }
    Ok(())
}

fn fleet_error(e: crate::fleet::Unavailable) -> ApiError {
    ApiError::from(crate::store::StoreError::Unavailable(format!(
        "{e}; this instance may have changed, the other instances did not"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::reload::Check;

    #[test]
    fn each_manager_error_has_one_status_code_and_reason_and_only_safe_words_reach_the_client() {
        let path = "/srv/imgate/store/artifacts/0123.wasm";
        let cases = [
            (ManagerError::UnknownPlugin("p".into()), 404, "not_found", "unknown_plugin"),
            (
                ManagerError::UnknownVersion { name: "p".into(), hash: "ab".repeat(32) },
                404,
                "not_found",
                "unknown_version",
            ),
            (
                ManagerError::Refused {
                    check: Check::DoesNotCompile,
                    message: "does not compile within the runtime's limits".into(),
                    detail: format!("does not compile: {path}"),
                },
                400,
                "bad_request",
                "does_not_compile",
            ),
            (ManagerError::Quarantined { hash: "ab".repeat(32), until_ms: 1 }, 409, "conflict", "quarantined"),
            (ManagerError::NothingToRollBack("p".into()), 409, "conflict", "nothing_to_roll_back"),
            (ManagerError::AlreadyRefused, 409, "conflict", "already_refused"),
            (
                ManagerError::Store(format!("writing the artifact {path}: Not a directory (os error 20)")),
                500,
                "internal",
                "store_failed",
            ),
            (ManagerError::Internal(format!("spawning the compile thread: {path}")), 500, "internal", "internal"),
        ];
        for (e, status, code, reason) in cases {
            let detail = e.to_string();
            let api = ApiError::from(e);
            assert_eq!((api.status().as_u16(), api.code.as_str()), (status, code), "{detail}");
            assert_eq!(api.reason.as_deref(), Some(reason), "{detail}");
            assert!(!api.message.contains("/srv") && !api.message.contains("os error"), "{}", api.message);
            assert_eq!(api.detail.as_deref(), Some(detail.as_str()), "the detail goes to the log");
        }
    }
}
