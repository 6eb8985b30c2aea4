//! The only code that knows OpenIM's JSON, its tokens and its errCodes.
//!
//! Everything else in imgate speaks imgate's own types and calls [`OpenIm`]. The client holds
//! OpenIM's admin token and the users' OpenIM tokens; none of them ever leaves this module in a
//! response (they never reach clients, logs or the audit trail). Layout:
//! - `client.rs`: one call = envelope, `operationID`, timeout, bounded retries for reads, token refresh;
//! - `breaker.rs`: a circuit breaker, an in-flight cap and a retry budget per OpenIM service;
//! - `tokens.rs`: the admin token and per-(user, platform) user tokens, cached, single-flight;
//! - `errors.rs`: `errCode` → [`ErrCode`], transport failures → [`OpenImError`];
//! - `ops.rs`: the operations imgate uses, with typed request and response bodies;
//! - `privileged.rs`: OpenIM's admin ids and app managers, which never get devices or sessions.

pub mod breaker;
mod client;
mod errors;
pub mod ops;
mod privileged;
mod roles;
mod tokens;

pub use client::{As, CallCtx, OpenIm, OpenImSettings, RawAnswer, Standing, PROTOBUF};
pub use errors::{ErrCode, OpenImError};
pub use ops::Op;
pub use privileged::{Privilege, PrivilegedSettings, PRIVILEGED_LEVEL};

/// OpenIM routes only an admin token may call (contract §1.3 "ADMIN"). A route table entry may use
/// the admin token for these alone — never for something the user could do with their own token.
pub const ADMIN_ONLY: &[&str] = &[
    "/msg/send_msg",
    "/msg/batch_send_msg",
    "/msg/send_business_notification",
    "/user/user_register",
    "/user/account_check",
    "/auth/force_logout",
    "/friend/import_friend",
];

/// OpenIM platform ids a user session may have (contract §4.3): 1–9 and 11. 10 is the admin platform.
pub fn is_user_platform(platform_id: i32) -> bool {
    matches!(platform_id, 1..=9 | 11)
}
