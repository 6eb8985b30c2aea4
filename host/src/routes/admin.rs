//! `/v1/admin/*`: operator routes, each behind an admin JWT with a named scope (client-auth §7).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::audit::AuditEvent;
use crate::auth::AdminPrincipal;
use crate::error::{ApiError, ErrorCode};
use crate::openim::{ops, As, CallCtx, ErrCode, OpenImError};
use crate::state::AppState;
use crate::telemetry::RequestId;

/// OpenIM routes the passthrough never forwards: their answers are OpenIM tokens, and OpenIM
/// tokens never leave imgate (minting one would also kick imgate's own cached token).
const PASSTHROUGH_DENIED: &[&str] = &["auth/get_admin_token", "auth/get_user_token"];

/// `GET /v1/admin/health` (scope `imgate:admin`): the gateway runs and OpenIM answers it.
pub(super) async fn health(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(_): Extension<AdminPrincipal>,
) -> Result<Json<Value>, ApiError> {
    let store = match &state.fleet {
        None => json!({ "backend": "memory", "reachable": true }),
        Some(fleet) => {
            let started = std::time::Instant::now();
            if !fleet.ping().await {
                return Err(crate::store::StoreError::Unavailable("redis does not answer".into()).into());
            }
            json!({
                "backend": "redis",
                "reachable": true,
                "latency_ms": started.elapsed().as_millis() as u64,
                "instance": fleet.instance(),
                "errors": fleet.errors(),
            })
        }
    };
    let started = std::time::Instant::now();
    let t: ops::ServerTimeResp =
        state.openim.call(&CallCtx::for_request(&rid), ops::GET_SERVER_TIME, &json!({}), As::Admin).await?;
    Ok(Json(json!({
        "status": "ok",
        "openim": { "reachable": true, "server_time_ms": t.server_time, "latency_ms": started.elapsed().as_millis() as u64 },
        "store": store,
    })))
}

/// `GET /v1/admin/audit/head` (scope `imgate:admin`): `{"seq":N,"hash":"hex"}` of the audit
/// chain's last record, after writing everything recorded before this request (so the answer is
/// not behind the requests that led to it). Kept elsewhere, it is the anchor
/// `imgate audit verify FILE --head SEQ:HASH` checks, which detects records cut off the file's end.
pub(super) async fn audit_head(
    State(state): State<AppState>,
    Extension(_): Extension<AdminPrincipal>,
) -> Result<Json<crate::audit::AuditHead>, ApiError> {
    state.audit.flush().await;
    Ok(Json(state.audit.head()))
}

/// `POST /v1/admin/openim/{*path}` (scope `openim:call`): forwards a JSON body to OpenIM with the
/// admin token and answers with OpenIM's own envelope, for back-office tools.
pub(super) async fn openim_passthrough(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(path): Path<String>,
    Extension(admin): Extension<AdminPrincipal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !is_openim_path(&path) {
        return Err(ApiError::bad_request("not an OpenIM API path"));
    }
    if PASSTHROUGH_DENIED.contains(&path.as_str()) {
        return Err(ApiError::forbidden().with_message("OpenIM tokens never leave imgate"));
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        return Err(ApiError::bad_request("the body must be JSON"));
    }
    admin_action(&state, &rid, &admin, "openim_call", json!({ "openim_path": format!("/{path}") })).await?;
    let result = state.openim.call_raw(&CallCtx::for_request(&rid), &format!("/{path}"), body, As::Admin).await;
    let answer = result?;
    Ok(crate::error::foreign_answer(answer.status, answer.body))
}

/// `a/b_c` segments of lowercase letters and `_`, as OpenIM's routes are; nothing else is sent on.
fn is_openim_path(path: &str) -> bool {
    path.len() <= 128
        && path.split('/').count() >= 2
        && path.split('/').all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterUsers {
    users: Vec<NewUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    user_id: String,
    nickname: String,
    #[serde(default)]
    face_url: String,
}

const MAX_USERS_PER_CALL: usize = 100;

/// `POST /v1/admin/users` (scope `users:write`): registers users in OpenIM, all or none.
pub(super) async fn register_users(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(admin): Extension<AdminPrincipal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: RegisterUsers =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
    validate_new_users(&req.users)?;
    // OpenIM creates its admin users itself (it would answer "registered already"); an id that
    // OpenIM treats as an admin is never a user to create, so say so instead of a vague 409.
    if let Some(u) = req.users.iter().find(|u| state.openim.is_admin_user_id(&u.user_id)) {
        rid.note_reason(&format!("register refused: {} is an OpenIM admin id", u.user_id));
        return Err(ApiError::forbidden().with_message(format!(
            "{} is an admin id of OpenIM (openim.admin_user_id or [openim.privileged] other_admin_user_ids), not a user to register; none was registered",
            u.user_id
        )));
    }
    let users: Vec<ops::NewUser> = req
        .users
        .iter()
        .map(|u| ops::NewUser {
            user_id: u.user_id.clone(),
            nickname: u.nickname.clone(),
            face_url: u.face_url.clone(),
            ex: String::new(),
        })
        .collect();
    let ids: Vec<&str> = req.users.iter().map(|u| u.user_id.as_str()).collect();
    admin_action(&state, &rid, &admin, "register_users", json!({ "users": ids })).await?;
    let result: Result<ops::Empty, _> = state
        .openim
        .call(&CallCtx::for_request(&rid), ops::USER_REGISTER, &ops::UserRegisterReq { users }, As::Admin)
        .await;
    match result {
        Ok(_) => Ok((StatusCode::CREATED, Json(json!({ "registered": ids }))).into_response()),
        Err(e @ OpenImError::Api { code: ErrCode::RegisteredAlready, .. }) => Err(ApiError::new(ErrorCode::Conflict)
            .with_message("a user with one of these ids already exists; none was registered")
            .with_detail(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Writes an admin action to the audit log durably *before* it is carried out: if the audit sink
/// cannot take it, the action does not happen (attacks.md E19: admin actions fail closed).
pub(super) async fn admin_action(
    state: &AppState,
    rid: &RequestId,
    admin: &AdminPrincipal,
    action: &str,
    detail: Value,
) -> Result<(), ApiError> {
    let event = AuditEvent {
        kind: "admin_action".into(),
        request_id: Some(rid.as_str().to_owned()),
        user: Some(format!("admin:{}", admin.subject)),
        outcome: action.to_owned(),
        detail: match detail {
            Value::Object(m) => m,
            _ => Default::default(),
        },
        ..Default::default()
    };
    state.audit.record_durable(event).await.map_err(|e| {
        ApiError::new(ErrorCode::Overloaded)
            .with_message("the audit log is unavailable; admin actions are refused")
            .with_detail(e.to_string())
    })
}

/// imgate's user id rule ([`crate::ids::is_user_id`]).
pub(super) use crate::ids::is_user_id as is_valid_user_id;

fn validate_new_users(users: &[NewUser]) -> Result<(), ApiError> {
    if users.is_empty() || users.len() > MAX_USERS_PER_CALL {
        return Err(ApiError::bad_request(format!("users: between 1 and {MAX_USERS_PER_CALL} entries")));
    }
    let mut seen = std::collections::HashSet::new();
    for u in users {
        if !is_valid_user_id(&u.user_id) {
            return Err(ApiError::bad_request("user_id: 1-64 characters of A-Z, a-z, 0-9 and _"));
        }
        if !seen.insert(u.user_id.as_str()) {
            return Err(ApiError::bad_request("user_id: listed twice"));
        }
        if u.nickname.trim().is_empty() || u.nickname.chars().count() > 128 || u.nickname.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request("nickname: 1-128 characters, no control characters"));
        }
        if u.face_url.len() > 1024 || u.face_url.chars().any(char::is_control) {
            return Err(ApiError::bad_request("face_url: at most 1024 characters, no control characters"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passthrough_paths_are_plain_openim_routes() {
        assert!(is_openim_path("user/get_users_info"));
        assert!(is_openim_path("msg/send_msg"));
        for bad in ["", "user", "../auth/x", "user//x", "user/x?y", "user/X", "user/x/", "user/%2e"] {
            assert!(!is_openim_path(bad), "{bad}");
        }
    }

    #[test]
    fn user_ids_are_restricted() {
        assert!(is_valid_user_id("alice_01"));
        for bad in ["", "a b", "a\0", "alice ", "а", "a:b", &"x".repeat(65)] {
            assert!(!is_valid_user_id(bad), "{bad:?}");
        }
    }
}
