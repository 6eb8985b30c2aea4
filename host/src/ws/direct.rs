//! Direct mode (off by default, `[ws] direct_mode`): `POST /v1/ws/credentials` hands the caller
//! an OpenIM token and the address of OpenIM's msg gateway, for deployments that cannot relay.
//!
//! It is the one bounded exception to "OpenIM tokens never leave imgate", and why the relay is
//! the default: a client holding an OpenIM token talks to OpenIM without imgate's frame policy
//! (OpenIM serves anyone's conversations on 1005/1007, accepts notification content types on
//! 1003, and no plugin sees those sends), and reaches every HTTP route the token opens if
//! OpenIM's API port is reachable. So the grant is bounded: the token is minted fresh for the
//! session's own user and platform (it also becomes the token imgate's HTTP path uses, so the
//! two do not kick each other), every grant is recorded (audit `ws_direct_grant`), and it ends
//! with OpenIM's `force_logout` of that user and platform when the session ends (logout,
//! revocation) or when `ws.direct_grant_secs` pass, whichever is first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{json, Value};

use crate::audit::AuditEvent;
use crate::auth::{now_ms, Caller};
use crate::error::{ApiError, ErrorCode};
use crate::openim::{ops, As, CallCtx};
use crate::state::AppState;
use crate::telemetry::RequestId;

/// A live grant: whose token was handed out, and until when.
#[derive(Debug, Clone)]
struct Grant {
    user_id: String,
    platform_id: i32,
    id: u64,
}

/// The live direct-mode grants, by session.
#[derive(Default)]
pub struct Grants {
    live: Mutex<HashMap<String, Grant>>,
    next: std::sync::atomic::AtomicU64,
}

impl Grants {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Grant>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `POST /v1/ws/credentials` (signed): `{"openim_token","ws_url","user_id","platform_id","expires_at"}`;
/// 403 `forbidden` unless `[ws] direct_mode = true`.
pub async fn credentials(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let cfg = &state.config.ws;
    let Some(ws_url) = cfg.direct_ws_url.clone().filter(|_| cfg.direct_mode) else {
        return Err(ApiError::new(ErrorCode::Forbidden).with_message("direct mode is off: use the relay (GET /v1/ws)"));
    };
    if state.openim.configured_privilege(&caller.user_id).is_some() {
        return Err(ApiError::unauthenticated().with_detail("session of a privileged OpenIM account"));
    }
    let ctx = CallCtx::for_request(&rid);
    let (token, lifetime_secs) = state.openim.fresh_relay_token(&ctx, &caller.user_id, caller.platform_id).await?;
    let grant_ms = (cfg.direct_grant_secs as i64 * 1000).min(lifetime_secs.saturating_mul(1000));
    let expires_at = (now_ms() + grant_ms).min(caller.session_expires_at_ms);
    let id = state.direct.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let grant = Grant { user_id: caller.user_id.clone(), platform_id: caller.platform_id, id };
    state.direct.lock().insert(caller.session_id.clone(), grant);
    record(&state, &rid, &caller.user_id, "granted", caller.platform_id);
    // The grant's end: at expiry, unless the session ended it first.
    let (st, sid) = (state.clone(), caller.session_id.clone());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(u64::try_from(expires_at - now_ms()).unwrap_or(0))).await;
        let still = st.direct.lock().get(&sid).is_some_and(|g| g.id == id);
        if still {
            end(&st, [sid.as_str()]).await;
        }
    });
    Ok(Json(json!({
        "openim_token": &*token,
        "ws_url": ws_url,
        "user_id": caller.user_id,
        "platform_id": caller.platform_id,
        "expires_at": expires_at,
    })))
}

/// Ends the grants of these sessions (if any): OpenIM's `force_logout` of the grant's user and
/// platform, and imgate forgets that token.
pub async fn end<'a>(state: &AppState, sessions: impl IntoIterator<Item = &'a str>) {
    let ended: Vec<Grant> = {
        let mut live = state.direct.lock();
        sessions.into_iter().filter_map(|s| live.remove(s)).collect()
    };
    for g in ended {
        let ctx = CallCtx::background();
        let req = json!({ "platformID": g.platform_id, "userID": g.user_id });
        let out: Result<ops::Empty, _> = state.openim.call(&ctx, ops::FORCE_LOGOUT, &req, As::Admin).await;
        if let Err(e) = &out {
            tracing::warn!(user = %g.user_id, platform = g.platform_id, error = %e, "direct mode: force_logout failed; the OpenIM token lives until it expires");
        }
        state.openim.forget_user_token(&g.user_id, g.platform_id).await;
        let rid = RequestId::generate();
        record(state, &rid, &g.user_id, if out.is_ok() { "ended" } else { "end_failed" }, g.platform_id);
    }
}

fn record(state: &AppState, rid: &RequestId, user: &str, outcome: &str, platform_id: i32) {
    let mut detail = serde_json::Map::new();
    detail.insert("platform_id".into(), platform_id.into());
    state.audit.record(AuditEvent {
        kind: "ws_direct_grant".into(),
        request_id: Some(rid.as_str().to_owned()),
        user: Some(user.to_owned()),
        route: Some("/v1/ws/credentials".into()),
        method: None,
        operation_ids: Vec::new(),
        outcome: outcome.into(),
        status: None,
        latency_ms: None,
        reason: None,
        detail,
    });
}
