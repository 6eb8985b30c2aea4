//! Who is calling: admin JWTs today; the Noise handshake, signed requests, sessions and bearer
//! tokens of `shared/spec/client-auth.md` §1–5 and §9 come with the user-authentication issue.

pub mod admin_jwt;

use axum::http::{header, HeaderMap};

pub use admin_jwt::{AdminAuthError, AdminPrincipal, AdminVerifier};

use crate::error::ApiError;

/// Scopes of the admin API (`scope` claim of the admin JWT).
pub mod scopes {
    /// Read gateway health.
    pub const ADMIN: &str = "imgate:admin";
    /// Call any OpenIM route through the audited passthrough.
    pub const OPENIM_CALL: &str = "openim:call";
    /// Register users in OpenIM.
    pub const USERS_WRITE: &str = "users:write";
}

/// Authenticates an admin request and checks one scope: 401 for any authentication failure
/// (the same answer whatever the cause), 403 for a valid token without the scope. The cause goes
/// to the audit trail only.
pub fn require_admin(verifier: &AdminVerifier, headers: &HeaderMap, scope: &str) -> Result<AdminPrincipal, ApiError> {
    let raw = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let principal = verifier.verify(raw).and_then(|p| p.require_scope(scope).map(|()| p));
    match principal {
        Ok(p) => {
            tracing::info!(target: "imgate::audit", event = "admin_auth", outcome = "allowed", sub = %p.subject, iss = %p.issuer, scope, "admin authenticated");
            Ok(p)
        }
        Err(e) => {
            tracing::info!(target: "imgate::audit", event = "admin_auth", outcome = "denied", reason = %e, scope, "admin refused");
            if e.is_forbidden() {
                Err(ApiError::forbidden().with_message("the token lacks the scope this route needs").with_detail(e.to_string()))
            } else {
                Err(ApiError::unauthenticated().with_detail(e.to_string()))
            }
        }
    }
}
