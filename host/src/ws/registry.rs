//! Every live relayed WebSocket of this instance, by session, so that logout, device deletion and
//! revocation can end them at once (client-auth §8-§9: within 1 s).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Why imgate ends a relayed socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The session was revoked or logged out (close 4401, OpenIM 1506 for SDK clients).
    Revoked,
    /// The session reached its end (close 4401, OpenIM 1501 for SDK clients).
    Expired,
    /// The gateway is shutting down (close 1001 "going away"; the session stands, the client
    /// reconnects to another instance).
    Shutdown,
}

struct Live {
    session_id: String,
    end: oneshot::Sender<Ended>,
}

/// The live relayed sockets.
pub struct Registry {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Live>>,
    /// Sockets held at most (`ws.max_connections`, or less if the open-file limit says so).
    capacity: AtomicUsize,
    /// Told when the last socket is gone ([`Registry::drained`]).
    emptied: tokio::sync::Notify,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::with_capacity(usize::MAX)
    }
}

/// A registered socket; unregisters itself when dropped.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut live = self.registry.lock();
        live.remove(&self.id);
        if live.is_empty() {
            self.registry.emptied.notify_waiters();
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Live>> {
        // Each critical section is one map operation: a poisoned map is still consistent.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn with_capacity(capacity: usize) -> Registry {
        Registry {
            next: AtomicU64::new(0),
            live: Mutex::default(),
            capacity: AtomicUsize::new(capacity),
            emptied: tokio::sync::Notify::new(),
        }
    }

    /// Sets how many sockets may be live (`run` fits it to the open-file limit).
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::Relaxed);
    }

    /// Registers a socket of `session_id` unless the registry is at its capacity.
    pub fn register(self: &Arc<Self>, session_id: &str) -> Option<(Registration, oneshot::Receiver<Ended>)> {
        let (tx, rx) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut live = self.lock();
        if live.len() >= self.capacity.load(Ordering::Relaxed) {
            return None;
        }
        live.insert(id, Live { session_id: session_id.to_owned(), end: tx });
        drop(live);
        Some((Registration { registry: self.clone(), id }, rx))
    }

    /// Ends every socket of these sessions; returns how many were told.
    pub fn end_sessions<'a>(&self, sessions: impl IntoIterator<Item = &'a str>, why: Ended) -> usize {
        let sessions: std::collections::HashSet<&str> = sessions.into_iter().collect();
        let mut live = self.lock();
        let ids: Vec<u64> =
            live.iter().filter(|(_, l)| sessions.contains(l.session_id.as_str())).map(|(id, _)| *id).collect();
        let mut told = 0;
        for id in ids {
            if let Some(l) = live.remove(&id) {
                told += usize::from(l.end.send(why).is_ok());
            }
        }
        told
    }

    /// Ends every socket (shutdown); returns how many were told. Each stays registered until its
    /// relay has said goodbye and let go ([`Registry::drained`]).
    pub fn end_all(&self, why: Ended) -> usize {
        let mut live = self.lock();
        let mut told = 0;
        for l in live.values_mut() {
            let (tx, _) = oneshot::channel();
            told += usize::from(std::mem::replace(&mut l.end, tx).send(why).is_ok());
        }
        told
    }

    /// Resolves once no socket is registered.
    pub async fn drained(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }

    /// The sessions that hold live sockets here (each once).
    pub fn sessions(&self) -> Vec<String> {
        let mut out: Vec<String> = self.lock().values().map(|l| l.session_id.clone()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Live relayed sockets.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_their_sockets_only_and_capacity_is_held() {
        let r = Arc::new(Registry::with_capacity(2));
        let (a, mut rx_a) = r.register("s1").expect("room");
        let (_b, mut rx_b) = r.register("s2").expect("room");
        assert!(r.register("s3").is_none(), "full");
        assert_eq!(r.end_sessions(["s1"], Ended::Revoked), 1);
        assert_eq!(rx_a.try_recv(), Ok(Ended::Revoked));
        assert!(rx_b.try_recv().is_err(), "another session's socket stays");
        drop(a);
        assert_eq!(r.len(), 1);
        assert!(r.register("s3").is_some());
    }

    #[tokio::test]
    async fn shutdown_tells_every_socket_and_drained_waits_for_them_to_let_go() {
        let r = Arc::new(Registry::with_capacity(4));
        let (a, mut rx_a) = r.register("s1").expect("room");
        let (b, mut rx_b) = r.register("s2").expect("room");
        assert_eq!(r.end_all(Ended::Shutdown), 2);
        assert_eq!((rx_a.try_recv(), rx_b.try_recv()), (Ok(Ended::Shutdown), Ok(Ended::Shutdown)));
        let waiting = tokio::spawn({
            let r = r.clone();
            async move { r.drained().await }
        });
        drop(a);
        assert!(!waiting.is_finished() || r.is_empty());
        drop(b);
        waiting.await.expect("drained once every socket let go");
        assert!(r.is_empty());
    }
}
