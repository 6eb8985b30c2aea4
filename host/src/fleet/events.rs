//! What one instance tells the others: sessions that ended (their WebSockets close wherever they
//! are held, within a second) and plugin versions activated through the admin API.
//!
//! Events go out with `PUBLISH` on one channel (`<prefix>events`) and arrive on a second Redis
//! connection (RESP3 push messages; the connection manager resubscribes after a reconnect).
//! Pub/sub delivers to whoever listens *now*: an instance cut off from Redis misses what was
//! published meanwhile. So when its listening connection comes back, an instance re-synchronises
//! instead of trusting the channel: every session holding a relayed socket here is looked up (the
//! ended ones close), and the fleet's active plugin versions are compared with its own.
//! [`run`] also pings Redis every second, which keeps `is_up` (health, readiness) current and
//! brings a dropped connection back while no request is asking.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind};
use serde::{Deserialize, Serialize};

use super::{Fleet, Unavailable};
use crate::state::AppState;
use crate::ws::Ended;

/// One message on the events channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// These sessions ended (revoked, logged out, expired): close their sockets.
    SessionsEnded { from: String, sessions: Vec<String>, expired: bool },
    /// `name` now serves the version `hash` (stored under `plugin:art:<hash>`).
    PluginActivated { from: String, name: String, hash: String },
}

impl Event {
    fn from(&self) -> &str {
        match self {
            Event::SessionsEnded { from, .. } | Event::PluginActivated { from, .. } => from,
        }
    }
}

fn channel(fleet: &Fleet) -> String {
    fleet.key("events")
}

/// Publishes an event to every instance (this one skips its own).
pub async fn publish(fleet: &Fleet, event: &Event) -> Result<(), Unavailable> {
    let payload = serde_json::to_string(event).map_err(|e| Unavailable(e.to_string()))?;
    let mut c = fleet.conn();
    let cmd = redis::cmd("PUBLISH").arg(channel(fleet)).arg(payload).to_owned();
    fleet.run("publish", cmd.query_async::<i64>(&mut c)).await.map(|_| ())
}

/// Listens for the fleet's events until the process ends; pings Redis every second and
/// re-synchronises after every gap in listening (and once at start).
pub async fn run(state: AppState, fleet: Arc<Fleet>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
    let config = ConnectionManagerConfig::new()
        .set_push_sender(tx)
        .set_automatic_resubscription()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1));
    let mut listener = match ConnectionManager::new_lazy_with_config(fleet.client.clone(), config) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e.category(), "fleet events: cannot listen; other instances' revocations arrive only by the relay's periodic look");
            return;
        }
    };
    let resync = Arc::new(AtomicBool::new(true));
    let (mut subscribed, mut was_up) = (false, false);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            push = rx.recv() => {
                let Some(push) = push else { return };
                match push.kind {
                    PushKind::Message => {
                        if let Some(event) = decode(&push) {
                            if event.from() != fleet.process() {
                                apply(&state, event).await;
                            }
                        }
                    }
                    PushKind::Disconnection => {
                        // Whatever was published until we listen again is lost to us.
                        subscribed = false;
                        resync.store(true, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            _ = tick.tick() => {
                let up = fleet.ping().await;
                if up && !was_up {
                    // Back from an outage (or the first contact): the listening connection may
                    // have dropped its subscription, and whatever was published meanwhile is lost.
                    subscribed = false;
                    resync.store(true, Ordering::Relaxed);
                }
                was_up = up;
                if up && !subscribed {
                    subscribed = fleet.run("subscribe", listener.subscribe(channel(&fleet))).await.is_ok();
                }
                if up && subscribed && resync.swap(false, Ordering::Relaxed) {
                    let state = state.clone();
                    let fleet = fleet.clone();
                    let again = resync.clone();
                    tokio::spawn(async move {
                        if resynchronise(&state, &fleet).await.is_err() {
                            again.store(true, Ordering::Relaxed);
                        }
                    });
                }
            }
        }
    }
}

fn decode(push: &PushInfo) -> Option<Event> {
    // [channel, payload]
    let payload = push.data.get(1)?;
    let text: String = redis::from_redis_value_ref(payload).ok()?;
    match serde_json::from_str(&text) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(error = %e, "fleet events: a message that is not an imgate event was ignored");
            None
        }
    }
}

async fn apply(state: &AppState, event: Event) {
    match event {
        Event::SessionsEnded { sessions, expired, .. } => {
            let why = if expired { Ended::Expired } else { Ended::Revoked };
            crate::ws::end_here(state, &sessions.iter().map(String::as_str).collect::<Vec<_>>(), why).await;
        }
        Event::PluginActivated { name, hash, .. } => super::plugins::follow(state, &name, &hash).await,
    }
}

/// After a gap: sockets of sessions that ended meanwhile close; plugins catch up.
async fn resynchronise(state: &AppState, fleet: &Fleet) -> Result<(), Unavailable> {
    let now = crate::auth::now_ms();
    let idle_ms = state.config.auth.session_idle_timeout_secs as i64 * 1000;
    let mut ended = Vec::new();
    for sid in state.ws.sessions() {
        match state.store.live_session(&sid, now, idle_ms).await {
            Ok(None) => ended.push(sid),
            Ok(Some(_)) => {}
            Err(e) => return Err(Unavailable(e.to_string())),
        }
    }
    if !ended.is_empty() {
        tracing::info!(
            sessions = ended.len(),
            "fleet resync: closing sockets of sessions that ended while events were missed"
        );
        crate::ws::end_here(state, &ended.iter().map(String::as_str).collect::<Vec<_>>(), Ended::Revoked).await;
    }
    super::plugins::catch_up(state, fleet).await
}
