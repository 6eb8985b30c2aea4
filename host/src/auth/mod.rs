//! Who is calling (`shared/spec/client-auth.md`): admins by JWT (§7); users by a Noise IK
//! handshake (§3) that creates a server-side session, then signed requests (§4) or bearer tokens
//! (§5) bound to that session.
//!
//! - `admin_jwt.rs` — the admin JWT verifier; [`require_admin`] the check, [`admin`] the
//!   pipeline stage that runs it on admin routes before anything else of the route.
//! - `x25519.rs`    — key checks and the `snow` resolver (x25519-dalek, contributory DH only).
//! - `handshake.rs` — `POST /v1/auth/handshake`, its rate limits.
//! - `signed.rs`    — signed-request verification, the [`Caller`] identity.
//! - `bearer.rs`    — bearer tokens.

pub mod admin_jwt;
pub mod bearer;
pub mod handshake;
pub mod signed;
pub mod x25519;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use admin_jwt::{AdminAuthError, AdminPrincipal, AdminVerifier};
pub use signed::Caller;

use crate::error::ApiError;
use crate::telemetry::RequestId;

/// Scopes of the admin API (`scope` claim of the admin JWT).
pub mod scopes {
    /// Read gateway health.
    pub const ADMIN: &str = "imgate:admin";
    /// Call any OpenIM route through the audited passthrough.
    pub const OPENIM_CALL: &str = "openim:call";
    /// Register users in OpenIM.
    pub const USERS_WRITE: &str = "users:write";
    /// Enroll, list and delete user devices.
    pub const DEVICES_WRITE: &str = "devices:write";
    /// End sessions.
    pub const SESSIONS_REVOKE: &str = "sessions:revoke";
    /// Upload, activate and roll back plugin versions.
    pub const PLUGINS_WRITE: &str = "plugins:write";
}

/// Wall-clock Unix milliseconds (the protocol's time unit).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Authenticates an admin request and checks one scope: 401 for any authentication failure
/// (the same answer whatever the cause), 403 for a valid token without the scope. The cause goes
/// to the audit trail only.
pub fn require_admin(
    verifier: &AdminVerifier,
    headers: &HeaderMap,
    scope: &str,
    request: &RequestId,
) -> Result<AdminPrincipal, ApiError> {
    let raw = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let principal = verifier.verify(raw).and_then(|p| p.require_scope(scope).map(|()| p));
    match principal {
        Ok(p) => {
            request.note_user(&format!("admin:{}", p.subject));
            Ok(p)
        }
        Err(e) => {
            request.note_reason(&format!("admin auth ({scope}): {e}"));
            if e.is_forbidden() {
                Err(ApiError::forbidden()
                    .with_message("the token lacks the scope this route needs")
                    .with_detail(e.to_string()))
            } else {
                Err(ApiError::unauthenticated().with_detail(e.to_string()))
            }
        }
    }
}

/// Pipeline stage "authenticate" for admin routes: the admin JWT and the route's scope are
/// checked before the route's rate limit, plugin chain and handler run; the handler and the
/// plugins receive the [`AdminPrincipal`] as a request extension and never authenticate.
pub async fn admin(
    State((state, scope)): State<(crate::state::AppState, &'static str)>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(rid) = req.extensions().get::<RequestId>().cloned() else {
        return ApiError::internal("admin stage without a request id").into_response();
    };
    match require_admin(&state.admin, req.headers(), scope, &rid) {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}
