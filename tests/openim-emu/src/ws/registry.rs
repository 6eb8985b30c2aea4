//! The live WebSocket connections: what logins and `force_logout` kick, what message pushes and
//! online-status changes are delivered to, and each connection's subscriptions.
//!
//! Lock order: the emulator's state lock may be held while this registry's lock is taken (the
//! send pipeline pushes while it holds the state), never the other way round.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use openim_wire::pb::sdkws::{SubUserOnlineStatusElem, SubUserOnlineStatusTips};
use openim_wire::{ident, Resp};
use prost::Message as _;
use tokio::sync::mpsc;

/// OpenIM's per-connection write queue (`client_conn.go:29-35`): a push that finds it full
/// closes the connection (`ErrWriteFull`).
pub(super) const WRITE_QUEUE: usize = 256;

/// iOS: background connections get no online pushes (`hub_server.go:155-158`).
const IOS: i32 = 1;

/// What the registry asks a connection task to do besides writing queued frames.
pub(super) enum Control {
    /// Send a 2002 frame, then close.
    Kick,
    /// Close now (the write queue overflowed).
    Close,
}

/// A registered live connection.
struct Entry {
    user_id: String,
    platform_id: i32,
    token: String,
    control: mpsc::UnboundedSender<Control>,
    out: mpsc::Sender<Resp>,
    background: bool,
    /// Users whose online status this connection subscribed to (2005).
    subs: HashSet<String>,
}

/// The queues of a newly registered connection.
pub(super) struct Handle {
    pub(super) id: u64,
    pub(super) control: mpsc::UnboundedReceiver<Control>,
    pub(super) out: mpsc::Receiver<Resp>,
}

/// Live WS connections.
#[derive(Default)]
pub struct WsRegistry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Entry>>,
}

impl WsRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kick every connection of (user, platform) whose token differs from `keep_token`.
    pub fn kick(&self, user_id: &str, platform_id: i32, keep_token: Option<&str>) {
        for e in self.lock().values() {
            if e.user_id == user_id && e.platform_id == platform_id && Some(e.token.as_str()) != keep_token {
                let _ = e.control.send(Control::Kick);
            }
        }
    }

    /// Number of live connections of a user (all platforms).
    pub fn count(&self, user_id: &str) -> usize {
        self.lock().values().filter(|e| e.user_id == user_id).count()
    }

    /// Platforms on which a user has a live connection, ascending.
    pub fn online_platforms(&self, user_id: &str) -> Vec<i32> {
        let set: BTreeSet<i32> = self.lock().values().filter(|e| e.user_id == user_id).map(|e| e.platform_id).collect();
        set.into_iter().collect()
    }

    /// Queue `resp` on every live connection of each user (an iOS connection in background is
    /// skipped). A full queue closes that connection.
    pub fn push_to_users(&self, user_ids: &[String], resp: &Resp) {
        let conns = self.lock();
        for e in conns.values().filter(|e| user_ids.contains(&e.user_id)) {
            if e.background && e.platform_id == IOS {
                continue;
            }
            Self::queue(e, resp.clone());
        }
    }

    fn queue(e: &Entry, resp: Resp) {
        if let Err(mpsc::error::TrySendError::Full(_)) = e.out.try_send(resp) {
            let _ = e.control.send(Control::Close);
        }
    }

    pub(super) fn register(&self, user_id: &str, platform_id: i32, token: &str) -> Handle {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (control_tx, control) = mpsc::unbounded_channel();
        let (out_tx, out) = mpsc::channel(WRITE_QUEUE);
        let entry = Entry {
            user_id: user_id.to_string(),
            platform_id,
            token: token.to_string(),
            control: control_tx,
            out: out_tx,
            background: false,
            subs: HashSet::new(),
        };
        self.lock().insert(id, entry);
        self.status_changed(user_id);
        Handle { id, control, out }
    }

    pub(super) fn remove(&self, id: u64) {
        let removed = self.lock().remove(&id);
        if let Some(e) = removed {
            self.status_changed(&e.user_id);
        }
    }

    pub(super) fn set_background(&self, id: u64, background: bool) {
        if let Some(e) = self.lock().get_mut(&id) {
            e.background = background;
        }
    }

    /// `Subscription.Sub`: unsubscribe first, then subscribe (a user in both stays subscribed).
    pub(super) fn subscribe(&self, id: u64, add: &[String], del: &[String]) {
        if let Some(e) = self.lock().get_mut(&id) {
            for u in del {
                e.subs.remove(u);
            }
            e.subs.extend(add.iter().cloned());
        }
    }

    /// Push the user's current platforms to the connections subscribed to them (2005).
    fn status_changed(&self, user_id: &str) {
        let tips = SubUserOnlineStatusTips {
            subscribers: vec![SubUserOnlineStatusElem {
                user_id: user_id.to_string(),
                online_platform_ids: self.online_platforms(user_id),
            }],
        };
        let resp =
            Resp { req_identifier: ident::SUB_USER_ONLINE_STATUS, data: tips.encode_to_vec(), ..Resp::default() };
        for e in self.lock().values().filter(|e| e.subs.contains(user_id)) {
            Self::queue(e, resp.clone());
        }
    }
}
