//! The embedded, single-instance store: plain maps behind one mutex.
//!
//! One lock for everything keeps each trait operation trivially atomic; every operation is a few
//! map lookups, so the lock is held for microseconds and never across an await. Expired sessions,
//! nonces and tokens are swept as new ones are added, so memory follows live state.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Accepted, Device, EnrollError, Session, Store, StoreError};

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

    fn live(&mut self, session_id: &str, now_ms: i64, idle_ms: i64) -> Option<Session> {
        let s = self.sessions.get(session_id)?;
        if now_ms >= s.expires_at_ms || now_ms - s.last_used_ms >= idle_ms {
            self.remove_session(session_id);
            return None;
        }
        Some(s.clone())
    }

    fn touch(&mut self, session_id: &str, now_ms: i64) {
        if let Some(s) = self.sessions.get_mut(session_id) {
            s.last_used_ms = s.last_used_ms.max(now_ms);
        }
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
    async fn enroll_device(&self, device: Device) -> Result<Result<(), EnrollError>, StoreError> {
        let mut g = self.lock();
        if g.devices.contains_key(&device.public_key) {
            return Ok(Err(EnrollError::KeyTaken));
        }
        if g.devices.values().any(|d| d.user_id == device.user_id && d.device_id == device.device_id) {
            return Ok(Err(EnrollError::DeviceExists));
        }
        g.devices.insert(device.public_key, device);
        Ok(Ok(()))
    }

    async fn device_by_key(&self, public_key: &[u8; 32]) -> Result<Option<Device>, StoreError> {
        Ok(self.lock().devices.get(public_key).cloned())
    }

    async fn list_devices(&self, user_id: &str) -> Result<Vec<Device>, StoreError> {
        let mut out: Vec<Device> = self.lock().devices.values().filter(|d| d.user_id == user_id).cloned().collect();
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(out)
    }

    async fn delete_device(&self, user_id: &str, device_id: &str) -> Result<Option<Device>, StoreError> {
        let mut g = self.lock();
        let Some(key) =
            g.devices.values().find(|d| d.user_id == user_id && d.device_id == device_id).map(|d| d.public_key)
        else {
            return Ok(None);
        };
        g.last_ts.remove(&key);
        Ok(g.devices.remove(&key))
    }

    async fn advance_handshake_ts(&self, public_key: &[u8; 32], ts_ms: i64) -> Result<bool, StoreError> {
        let mut g = self.lock();
        let last = g.last_ts.entry(*public_key).or_insert(i64::MIN);
        if ts_ms > *last {
            *last = ts_ms;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    async fn put_session(&self, session: Session) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.maybe_sweep(session.created_at_ms);
        g.sessions.insert(session.session_id.clone(), session);
        Ok(())
    }

    async fn live_session(&self, session_id: &str, now_ms: i64, idle_ms: i64) -> Result<Option<Session>, StoreError> {
        Ok(self.lock().live(session_id, now_ms, idle_ms))
    }

    async fn accept_request(
        &self,
        session_id: &str,
        nonce: &str,
        nonce_ttl_ms: i64,
        now_ms: i64,
        idle_ms: i64,
    ) -> Result<Accepted, StoreError> {
        let mut g = self.lock();
        if g.live(session_id, now_ms, idle_ms).is_none() {
            return Ok(Accepted::NoSession);
        }
        g.maybe_sweep(now_ms);
        let set = g.nonces.entry(session_id.to_owned()).or_default();
        match set.get(nonce) {
            Some(exp) if *exp > now_ms => return Ok(Accepted::Replay),
            _ => set.insert(nonce.to_owned(), now_ms + nonce_ttl_ms),
        };
        g.touch(session_id, now_ms);
        Ok(Accepted::Yes)
    }

    async fn touch_session(&self, session_id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.lock().touch(session_id, now_ms);
        Ok(())
    }

    async fn revoke_session(&self, session_id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().remove_session(session_id).is_some())
    }

    async fn revoke_sessions_of(&self, user_id: &str, device_id: Option<&str>) -> Result<Vec<Session>, StoreError> {
        let mut g = self.lock();
        let ids: Vec<String> = g
            .sessions
            .values()
            .filter(|s| s.user_id == user_id && device_id.is_none_or(|d| s.device_id == d))
            .map(|s| s.session_id.clone())
            .collect();
        Ok(ids.iter().filter_map(|id| g.remove_session(id)).collect())
    }

    async fn put_token(&self, token_hash: [u8; 32], session_id: &str, expires_at_ms: i64) -> Result<(), StoreError> {
        let mut g = self.lock();
        g.tokens.insert(token_hash, (session_id.to_owned(), expires_at_ms));
        Ok(())
    }

    async fn token_session(&self, token_hash: &[u8; 32], now_ms: i64) -> Result<Option<String>, StoreError> {
        let g = self.lock();
        Ok(g.tokens
            .get(token_hash)
            .filter(|(sid, exp)| *exp > now_ms && g.sessions.contains_key(sid))
            .map(|(sid, _)| sid.clone()))
    }

    async fn put_ticket(
        &self,
        ticket_hash: [u8; 32],
        session_id: &str,
        expires_at_ms: i64,
        now_ms: i64,
        max_per_session: usize,
    ) -> Result<bool, StoreError> {
        let mut g = self.lock();
        // Expired tickets of this session no longer count (nor stay).
        g.tickets.retain(|_, (sid, exp)| sid != session_id || *exp > now_ms);
        if g.tickets.values().filter(|(sid, _)| sid == session_id).count() >= max_per_session {
            return Ok(false);
        }
        g.maybe_sweep(now_ms);
        g.tickets.insert(ticket_hash, (session_id.to_owned(), expires_at_ms));
        Ok(true)
    }

    async fn take_ticket(&self, ticket_hash: &[u8; 32], now_ms: i64) -> Result<Option<String>, StoreError> {
        let mut g = self.lock();
        Ok(g.tickets
            .remove(ticket_hash)
            .filter(|(sid, exp)| *exp > now_ms && g.sessions.contains_key(sid))
            .map(|(sid, _)| sid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tickets_are_single_use_expire_bounded_per_session_and_die_with_the_session() {
        let s = MemoryStore::new();
        s.put_session(session("s1", "u1", "d1")).await.unwrap();
        assert!(s.put_ticket([1; 32], "s1", 10_000, 1_000, 2).await.unwrap());
        assert!(s.put_ticket([2; 32], "s1", 3_000, 1_000, 2).await.unwrap());
        assert!(!s.put_ticket([3; 32], "s1", 10_000, 1_000, 2).await.unwrap(), "a third live ticket is refused");
        assert_eq!(s.take_ticket(&[1; 32], 2_000).await.unwrap().as_deref(), Some("s1"));
        assert_eq!(s.take_ticket(&[1; 32], 2_000).await.unwrap(), None, "single use");
        assert_eq!(s.take_ticket(&[2; 32], 3_000).await.unwrap(), None, "expired at its end");
        assert!(s.put_ticket([4; 32], "s1", 10_000, 4_000, 2).await.unwrap());
        s.revoke_session("s1").await.unwrap();
        assert_eq!(s.take_ticket(&[4; 32], 5_000).await.unwrap(), None, "gone with its session");
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
        assert!(s.advance_handshake_ts(&[1; 32], 10).await.unwrap());
        assert!(!s.advance_handshake_ts(&[1; 32], 10).await.unwrap(), "replay of the same ts");
        assert!(!s.advance_handshake_ts(&[1; 32], 9).await.unwrap());
        assert!(s.advance_handshake_ts(&[1; 32], 11).await.unwrap());
    }

    #[tokio::test]
    async fn nonce_is_accepted_once_within_its_window() {
        let s = MemoryStore::new();
        s.put_session(session("s1", "u", "d")).await.unwrap();
        s.put_session(session("s2", "u", "d")).await.unwrap();
        assert_eq!(s.accept_request("s1", "n1", 4_000, 1_000, 60_000).await.unwrap(), Accepted::Yes);
        assert_eq!(s.accept_request("s1", "n1", 4_000, 2_000, 60_000).await.unwrap(), Accepted::Replay);
        assert_eq!(
            s.accept_request("s2", "n1", 4_000, 2_000, 60_000).await.unwrap(),
            Accepted::Yes,
            "nonces are per session"
        );
        assert_eq!(s.accept_request("s9", "n2", 4_000, 2_000, 60_000).await.unwrap(), Accepted::NoSession);
        assert_eq!(s.accept_request("s1", "n3", 4_000, 70_000, 60_000).await.unwrap(), Accepted::NoSession, "idle");
    }

    #[tokio::test]
    async fn sessions_expire_idle_and_absolute_and_revocation_kills_tokens() {
        let s = MemoryStore::new();
        s.put_session(session("s1", "u", "d")).await.unwrap();
        assert!(s.live_session("s1", 2_000, 5_000).await.unwrap().is_some());
        assert!(s.live_session("s1", 7_000, 5_000).await.unwrap().is_none(), "idle for 6 s > 5 s");
        s.put_session(session("s2", "u", "d")).await.unwrap();
        assert!(s.live_session("s2", 100_000, i64::MAX).await.unwrap().is_none(), "absolute end");
        s.put_session(session("s3", "u", "d")).await.unwrap();
        s.put_token([9; 32], "s3", 50_000).await.unwrap();
        assert_eq!(s.token_session(&[9; 32], 2_000).await.unwrap().as_deref(), Some("s3"));
        assert!(s.revoke_session("s3").await.unwrap());
        assert_eq!(s.token_session(&[9; 32], 2_000).await.unwrap(), None);
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
        assert_eq!(s.enroll_device(d.clone()).await.unwrap(), Ok(()));
        assert_eq!(
            s.enroll_device(Device { device_id: "e".into(), ..d.clone() }).await.unwrap(),
            Err(EnrollError::KeyTaken)
        );
        assert_eq!(
            s.enroll_device(Device { public_key: [4; 32], ..d.clone() }).await.unwrap(),
            Err(EnrollError::DeviceExists)
        );
        s.put_session(session("s1", "u", "d")).await.unwrap();
        s.put_session(session("s2", "u", "other")).await.unwrap();
        assert_eq!(s.revoke_sessions_of("u", Some("d")).await.unwrap().len(), 1);
        assert!(s.live_session("s2", 2_000, i64::MAX).await.unwrap().is_some());
    }
}
