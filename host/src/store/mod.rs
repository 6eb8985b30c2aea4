//! All state a gateway keeps between requests, behind one trait, so one imgate or many can run.
//!
//! Devices (enrolled keys), the last accepted handshake `ts` per device, sessions, the nonces a
//! session has used, and bearer tokens live here and nowhere else. [`MemoryStore`] is the embedded
//! default; `fleet::store::RedisStore` (shared by several instances) implements the same trait. Every
//! operation that decides something ("is this nonce new?", "is this ts newer?") is one atomic
//! call, so two instances can never both accept the same nonce or handshake.

mod memory;

use std::sync::Arc;

use async_trait::async_trait;

pub use memory::MemoryStore;

/// An enrolled device: one X25519 public key ↔ one (user, device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub user_id: String,
    pub device_id: String,
    pub platform_id: i32,
    pub public_key: [u8; 32],
    /// Rate-limit tier of this device ("" = the class default).
    pub tier: String,
    pub created_at_ms: i64,
}

/// A server-side session created by a handshake.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub session_id: String,
    /// HMAC key of the signed requests; never logged (no `Debug`).
    pub session_key: [u8; 32],
    pub user_id: String,
    pub device_id: String,
    pub platform_id: i32,
    /// Rate-limit tier, from the device.
    pub tier: String,
    pub created_at_ms: i64,
    /// Absolute end of the session.
    pub expires_at_ms: i64,
    /// Last time a request was accepted (idle timeout counts from here).
    pub last_used_ms: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.session_id)
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("platform_id", &self.platform_id)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

/// Why an enrollment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    #[error("this public key is already enrolled")]
    KeyTaken,
    #[error("this user already has a device with this id")]
    DeviceExists,
}

/// The backend could not answer: the request that needed it fails closed (503
/// `store_unavailable`), never as if the answer had been "yes".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

/// What [`Store::accept_request`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// The nonce was new and is now recorded; the session's idle timeout restarts.
    Yes,
    /// The nonce was already used in this session.
    Replay,
    /// The session has ended (revoked, expired or idle) since it was read.
    NoSession,
}

/// The state backend. Every call can fail ([`StoreError`]) when the backend is shared and out
/// of reach; the in-memory one never fails.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Enrolls a device; the key and the (user, device) pair must both be new.
    async fn enroll_device(&self, device: Device) -> Result<Result<(), EnrollError>, StoreError>;
    async fn device_by_key(&self, public_key: &[u8; 32]) -> Result<Option<Device>, StoreError>;
    async fn list_devices(&self, user_id: &str) -> Result<Vec<Device>, StoreError>;
    /// Removes a device (its key can be enrolled again) and returns it.
    async fn delete_device(&self, user_id: &str, device_id: &str) -> Result<Option<Device>, StoreError>;

    /// Sets the device's last accepted handshake `ts` to `ts` if `ts` is strictly greater; false
    /// (and nothing changed) otherwise. Atomic.
    async fn advance_handshake_ts(&self, public_key: &[u8; 32], ts_ms: i64) -> Result<bool, StoreError>;

    async fn put_session(&self, session: Session) -> Result<(), StoreError>;
    /// The session if it exists and is neither revoked nor past its absolute or idle end.
    async fn live_session(&self, session_id: &str, now_ms: i64, idle_ms: i64) -> Result<Option<Session>, StoreError>;
    /// The session whose key checks a signed request's MAC. May come from a cache of this
    /// instance: [`Store::accept_request`], called once the MAC verified, is the authoritative
    /// check that the session still lives.
    async fn session_to_verify(
        &self,
        session_id: &str,
        now_ms: i64,
        idle_ms: i64,
    ) -> Result<Option<Session>, StoreError> {
        self.live_session(session_id, now_ms, idle_ms).await
    }
    /// After a request's MAC verified: records its nonce until `now + nonce_ttl_ms` and restarts
    /// the session's idle timeout, if the session still lives and the nonce is new. Atomic.
    async fn accept_request(
        &self,
        session_id: &str,
        nonce: &str,
        nonce_ttl_ms: i64,
        now_ms: i64,
        idle_ms: i64,
    ) -> Result<Accepted, StoreError>;
    /// [`Store::accept_request`] and, only if accepted, one GCRA check of `limit` (its key and
    /// quota) in the same step: a backend across the network does both in one round trip. `None`
    /// when the backend has no such step (the caller then checks the limit on its own).
    #[allow(clippy::too_many_arguments)]
    async fn accept_and_limit(
        &self,
        _session_id: &str,
        _nonce: &str,
        _nonce_ttl_ms: i64,
        _now_ms: i64,
        _idle_ms: i64,
        _limit: &crate::ratelimit::RateKey,
        _quota: crate::ratelimit::Rate,
    ) -> Result<Option<(Accepted, Result<(), std::time::Duration>)>, StoreError> {
        Ok(None)
    }
    /// Marks a request accepted now (the idle timeout restarts).
    async fn touch_session(&self, session_id: &str, now_ms: i64) -> Result<(), StoreError>;
    /// Ends a session (and with it its bearer tokens). True if it existed.
    async fn revoke_session(&self, session_id: &str) -> Result<bool, StoreError>;
    /// Ends every session of a user, or of one device of the user; returns the ended sessions.
    async fn revoke_sessions_of(&self, user_id: &str, device_id: Option<&str>) -> Result<Vec<Session>, StoreError>;

    /// Stores a bearer token (by its SHA-256, never the token itself) for a session.
    async fn put_token(&self, token_hash: [u8; 32], session_id: &str, expires_at_ms: i64) -> Result<(), StoreError>;
    /// The session id a token belongs to, if the token exists and has not expired.
    async fn token_session(&self, token_hash: &[u8; 32], now_ms: i64) -> Result<Option<String>, StoreError>;

    /// Stores a WebSocket ticket (by its SHA-256) for a session, unless the session already
    /// holds `max_per_session` unexpired ones: false then, and nothing stored. Atomic.
    async fn put_ticket(
        &self,
        ticket_hash: [u8; 32],
        session_id: &str,
        expires_at_ms: i64,
        now_ms: i64,
        max_per_session: usize,
    ) -> Result<bool, StoreError>;
    /// Redeems a ticket: removes it and returns its session if it existed and had not expired.
    /// Atomic: of two concurrent redemptions at most one gets the session.
    async fn take_ticket(&self, ticket_hash: &[u8; 32], now_ms: i64) -> Result<Option<String>, StoreError>;
}

pub type DynStore = Arc<dyn Store>;
