//! The embedded, single-instance store: plain maps behind one mutex.
//!
//! One lock for everything keeps each trait operation trivially atomic; every operation is a few
//! map lookups, so the lock is held for microseconds and never across an await. Expired sessions,
//! nonces and tokens are swept as new ones are added, so memory follows live state.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Device, EnrollError, Session, Store};

#[derive(Default)]
struct Inner {
    devices: HashMap<[u8; 32], Device>,
    last_ts: HashMap<[u8; 32], i64>,
    sessions: HashMap<String, Session>,
    nonces: HashMap<String, HashMap<String, i64>>,
    tokens: HashMap<[u8; 32], (String, i64)>,
    /// WebSocket tickets: hash → (session, expiry).
    tickets: HashMap<[u8; 32], (String, i64)>,
    inserts: u64,
}

/// How many inserts between sweeps of expired entries.
const SWEEP_EVERY: u64 = 1024;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn maybe_sweep(&mut self, now_ms: i64) {
        self.inserts += 1;
        if !self.inserts.is_multiple_of(SWEEP_EVERY) {
            return;
        }
        self.sessions.retain(|_, s| s.expires_at_ms > now_ms);
        let sessions = &self.sessions;
        self.nonces.retain(|sid, set| {
            set.retain(|_, exp| *exp > now_ms);
            sessions.contains_key(sid)
        });
        self.tokens.retain(|_, (sid, exp)| *exp > now_ms && sessions.contains_key(sid));
        self.tickets.retain(|_, (sid, exp)| *exp > now_ms && sessions.contains_key(sid));
    }

    fn remove_session(&mut self, session_id: &str) -> Option<Session> {
        self.nonces.remove(session_id);
        self.tokens.retain(|_, (sid, _)| sid != session_id);
        self.tickets.retain(|_, (sid, _)| sid != session_id);
        self.sessions.remove(session_id)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn enroll_device(&self, device: Device) -> Result<(), EnrollError> {
        let mut g = self.lock();
        if g.devices.contains_key(&device.public_key) {
            return Err(EnrollError::KeyTaken);
        }
        if g.devices.values().any(|d| d.user_id == device.user_id && d.device_id == device.device_id) {
            return Err(EnrollError::DeviceExists);
        }
        g.devices.insert(device.public_key, device);
        Ok(())
    }

    async fn device_by_key(&self, public_key: &[u8; 32]) -> Option<Device> {
        self.lock().devices.get(public_key).cloned()
    }

    async fn list_devices(&self, user_id: &str) -> Vec<Device> {
        let mut out: Vec<Device> = self.lock().devices.values().filter(|d| d.user_id == user_id).cloned().collect();
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        out
    }

    async fn delete_device(&self, user_id: &str, device_id: &str) -> Option<Device> {
        let mut g = self.lock();
        let key =
            g.devices.values().find(|d| d.user_id == user_id && d.device_id == device_id).map(|d| d.public_key)?;
        g.last_ts.remove(&key);
        g.devices.remove(&key)
    }

    async fn advance_handshake_ts(&self, public_key: &[u8; 32], ts_ms: i64) -> bool {
        let mut g = self.lock();
        let last = g.last_ts.entry(*public_key).or_insert(i64::MIN);
        if ts_ms > *last {
            *last = ts_ms;
            true
        } else {
            false
        }
    }

    async fn put_session(&self, session: Session) {
        let mut g = self.lock();
        g.maybe_sweep(session.created_at_ms);
        g.sessions.insert(session.session_id.clone(), session);
    }

    async fn live_session(&self, session_id: &str, now_ms: i64, idle_ms: i64) -> Option<Session> {
        let mut g = self.lock();
        let s = g.sessions.get(session_id)?;
        if now_ms >= s.expires_at_ms || now_ms - s.last_used_ms >= idle_ms {
            g.remove_session(session_id);
            return None;
        }
        Some(s.clone())
    }

    async fn touch_session(&self, session_id: &str, now_ms: i64) {
        if let Some(s) = self.lock().sessions.get_mut(session_id) {
            s.last_used_ms = s.last_used_ms.max(now_ms);
        }
    }

    async fn revoke_session(&self, session_id: &str) -> bool {
        self.lock().remove_session(session_id).is_some()
    }

    async fn revoke_sessions_of(&self, user_id: &str, device_id: Option<&str>) -> Vec<Session> {
        let mut g = self.lock();
        let ids: Vec<String> = g
            .sessions
            .values()
            .filter(|s| s.user_id == user_id && device_id.is_none_or(|d| s.device_id == d))
            .map(|s| s.session_id.clone())
            .collect();
        ids.iter().filter_map(|id| g.remove_session(id)).collect()
    }

    async fn record_nonce(&self, session_id: &str, nonce: &str, expires_at_ms: i64, now_ms: i64) -> bool {
        let mut g = self.lock();
        g.maybe_sweep(now_ms);
        let set = g.nonces.entry(session_id.to_owned()).or_default();
        match set.get(nonce) {
            Some(exp) if *exp > now_ms => false,
            _ => {
                set.insert(nonce.to_owned(), expires_at_ms);
                true
            }
        }
    }

    async fn put_token(&self, token_hash: [u8; 32], session_id: &str, expires_at_ms: i64) {
        let mut g = self.lock();
        g.tokens.insert(token_hash, (session_id.to_owned(), expires_at_ms));
    }

    async fn token_session(&self, token_hash: &[u8; 32], now_ms: i64) -> Option<String> {
        let g = self.lock();
        let (sid, exp) = g.tokens.get(token_hash)?;
        (*exp > now_ms && g.sessions.contains_key(sid)).then(|| sid.clone())
    }

    async fn put_ticket(
        &self,
        ticket_hash: [u8; 32],
        session_id: &str,
        expires_at_ms: i64,
        now_ms: i64,
        max_per_session: usize,
    ) -> bool {
        let mut g = self.lock();
        // Expired tickets of this session no longer count (nor stay).
        g.tickets.retain(|_, (sid, exp)| sid != session_id || *exp > now_ms);
        if g.tickets.values().filter(|(sid, _)| sid == session_id).count() >= max_per_session {
            return false;
        }
        g.maybe_sweep(now_ms);
        g.tickets.insert(ticket_hash, (session_id.to_owned(), expires_at_ms));
        true
    }

    async fn take_ticket(&self, ticket_hash: &[u8; 32], now_ms: i64) -> Option<String> {
        let mut g = self.lock();
        let (sid, exp) = g.tickets.remove(ticket_hash)?;
        (exp > now_ms && g.sessions.contains_key(&sid)).then_some(sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tickets_are_single_use_expire_bounded_per_session_and_die_with_the_session() {
        let s = MemoryStore::new();
        s.put_session(session("s1", "u1", "d1")).await;
        assert!(s.put_ticket([1; 32], "s1", 10_000, 1_000, 2).await);
        assert!(s.put_ticket([2; 32], "s1", 3_000, 1_000, 2).await);
        assert!(!s.put_ticket([3; 32], "s1", 10_000, 1_000, 2).await, "a third live ticket is refused");
        assert_eq!(s.take_ticket(&[1; 32], 2_000).await.as_deref(), Some("s1"));
        assert_eq!(s.take_ticket(&[1; 32], 2_000).await, None, "single use");
        assert_eq!(s.take_ticket(&[2; 32], 3_000).await, None, "expired at its end");
        assert!(s.put_ticket([4; 32], "s1", 10_000, 4_000, 2).await);
        s.revoke_session("s1").await;
        assert_eq!(s.take_ticket(&[4; 32], 5_000).await, None, "gone with its session");
    }

    fn session(id: &str, user: &str, device: &str) -> Session {
        Session {
            session_id: id.into(),
            session_key: [7; 32],
            user_id: user.into(),
            device_id: device.into(),
            platform_id: 1,
            tier: String::new(),
            created_at_ms: 1_000,
            expires_at_ms: 100_000,
            last_used_ms: 1_000,
        }
    }

    #[tokio::test]
    async fn handshake_ts_only_moves_forward() {
        let s = MemoryStore::new();
        assert!(s.advance_handshake_ts(&[1; 32], 10).await);
        assert!(!s.advance_handshake_ts(&[1; 32], 10).await, "replay of the same ts");
        assert!(!s.advance_handshake_ts(&[1; 32], 9).await);
        assert!(s.advance_handshake_ts(&[1; 32], 11).await);
    }

    #[tokio::test]
    async fn nonce_is_accepted_once_within_its_window() {
        let s = MemoryStore::new();
        s.put_session(session("s1", "u", "d")).await;
        assert!(s.record_nonce("s1", "n1", 5_000, 1_000).await);
        assert!(!s.record_nonce("s1", "n1", 5_000, 2_000).await);
        assert!(s.record_nonce("s2", "n1", 5_000, 2_000).await, "nonces are per session");
    }

    #[tokio::test]
    async fn sessions_expire_idle_and_absolute_and_revocation_kills_tokens() {
        let s = MemoryStore::new();
        s.put_session(session("s1", "u", "d")).await;
        assert!(s.live_session("s1", 2_000, 5_000).await.is_some());
        assert!(s.live_session("s1", 7_000, 5_000).await.is_none(), "idle for 6 s > 5 s");
        s.put_session(session("s2", "u", "d")).await;
        assert!(s.live_session("s2", 100_000, i64::MAX).await.is_none(), "absolute end");
        s.put_session(session("s3", "u", "d")).await;
        s.put_token([9; 32], "s3", 50_000).await;
        assert_eq!(s.token_session(&[9; 32], 2_000).await.as_deref(), Some("s3"));
        assert!(s.revoke_session("s3").await);
        assert_eq!(s.token_session(&[9; 32], 2_000).await, None);
    }

    #[tokio::test]
    async fn one_key_one_device() {
        let s = MemoryStore::new();
        let d = Device {
            user_id: "u".into(),
            device_id: "d".into(),
            platform_id: 1,
            public_key: [3; 32],
            tier: String::new(),
            created_at_ms: 0,
        };
        assert_eq!(s.enroll_device(d.clone()).await, Ok(()));
        assert_eq!(s.enroll_device(Device { device_id: "e".into(), ..d.clone() }).await, Err(EnrollError::KeyTaken));
        assert_eq!(s.enroll_device(Device { public_key: [4; 32], ..d.clone() }).await, Err(EnrollError::DeviceExists));
        s.put_session(session("s1", "u", "d")).await;
        s.put_session(session("s2", "u", "other")).await;
        assert_eq!(s.revoke_sessions_of("u", Some("d")).await.len(), 1);
        assert!(s.live_session("s2", 2_000, i64::MAX).await.is_some());
    }
}
