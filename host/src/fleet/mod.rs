//! What several imgate instances share through Redis (`[store] backend = "redis"`).
//!
//! One module holds every line that speaks Redis, so the rest of the gateway sees only its traits
//! (`Store`, `Limiter`, `PluginKv`) and two calls (publish an event, ask for a shared OpenIM
//! token). [`Fleet`] is the connection: a `redis::aio::ConnectionManager` (one multiplexed
//! connection that pipelines concurrent commands and reconnects with backoff), every command bound
//! by `store.timeout_ms`, every key under `store.key_prefix`. What each concern does while Redis is
//! unreachable is decided where the concern lives, never here: sessions, nonces and tickets fail
//! closed (`StoreError` → 503 `store_unavailable`), rate limits fall back to local buckets, events
//! are re-synchronised when the connection comes back (see `events`).
//!
//! - `store`   — devices, sessions, nonces, handshake timestamps, bearer tokens, tickets (Lua).
//! - `limiter` — GCRA in one Lua script per check, on Redis's clock; local fallback.
//! - `kv`      — the plugins' `kv`, one hash per plugin, quotas checked in the write's script.
//! - `tokens`  — OpenIM's admin token and per-user tokens, minted once for the fleet under a lease.
//! - `events`  — revocations and plugin activations, published on one channel.
//! - `plugins` — plugin artifacts by hash, so an upload on one instance can serve on all.

pub mod events;
pub mod kv;
pub mod limiter;
pub mod plugins;
pub mod store;
pub mod tokens;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, RedisResult};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::StoreConfig;
use crate::telemetry::Metrics;

/// Redis did not answer in time, or answered with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redis unavailable: {0}")]
pub struct Unavailable(pub String);

/// The shared backend: one connection (multiplexed, reconnecting) and the key scheme.
pub struct Fleet {
    conn: ConnectionManager,
    client: redis::Client,
    prefix: String,
    instance: String,
    /// This process, unique in the fleet (events it published come back to it; it skips them).
    process: String,
    timeout: Duration,
    up: AtomicBool,
    /// `imgate_store_up`, `imgate_store_round_trips_total`, `imgate_store_errors_total`.
    up_gauge: Gauge,
    trips: Counter,
    errors: Counter,
    /// The fleet's plugin activations this instance has followed (name → hash): a resync applies
    /// only what it has not, so a local change (the file watcher) is not undone by an old one.
    plugins_seen: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold a password.
        f.debug_struct("Fleet").field("prefix", &self.prefix).field("instance", &self.instance).finish()
    }
}

impl Fleet {
    /// Prepares the connection without waiting for Redis: imgate starts (and says it is not ready)
    /// while Redis is down, and connects as soon as it is up. Needs a Tokio runtime.
    pub fn connect(cfg: &StoreConfig, url: &str, metrics: &Metrics) -> Result<Arc<Fleet>, String> {
        let info = Fleet::check_url(url)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("store: the Redis backend needs a Tokio runtime".into());
        }
        // RESP3: the events channel arrives as push messages on the same kind of connection.
        let redis_info = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(redis_info))
            .map_err(|e| format!("store.url: {}", e.category()))?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config(timeout))
            .map_err(|e| format!("store: {}", e.category()))?;
        Ok(Arc::new(Fleet {
            conn,
            client,
            prefix: cfg.key_prefix.clone(),
            instance: cfg.instance_id(),
            process: uuid::Uuid::new_v4().simple().to_string(),
            timeout,
            up: AtomicBool::new(false),
            up_gauge: metrics.store_up.clone(),
            trips: metrics.store_round_trips.clone(),
            errors: metrics.store_errors.clone(),
            plugins_seen: Default::default(),
        }))
    }

    /// Parses a Redis URL (what `imgate check-config` checks without connecting). Never the URL in
    /// an error: it may hold a password.
    pub fn check_url(url: &str) -> Result<redis::ConnectionInfo, String> {
        url.into_connection_info().map_err(|e| format!("store.url: not a usable Redis URL ({})", e.category()))
    }

    /// `prefix` + `rest`: every key and channel imgate uses.
    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn process(&self) -> &str {
        &self.process
    }

    /// A handle for one command or pipeline (cheap: the connection is shared).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Runs one round trip under the store's deadline. An error or a timeout marks Redis down
    /// until the next success.
    pub async fn run<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        self.trips.inc();
        self.run_uncounted(what, fut).await
    }

    /// [`Fleet::run`] without counting the round trip (the health ping: the count is what
    /// requests cost).
    async fn run_uncounted<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        let outcome = match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => {
                self.up.store(true, Ordering::Relaxed);
                self.up_gauge.set(1);
                return Ok(v);
            }
            Ok(Err(e)) => Unavailable(format!("{what}: {}", describe(&e))),
            Err(_) => Unavailable(format!("{what}: no answer within {} ms", self.timeout.as_millis())),
        };
        self.errors.inc();
        self.up_gauge.set(0);
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %outcome, "redis unavailable");
        }
        Err(outcome)
    }

    /// Whether the last command (or health probe) succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.get()
    }

    /// Round trips sent since start.
    pub fn round_trips(&self) -> u64 {
        self.trips.get()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.plugins_seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn note_plugin(&self, name: &str, hash: &str) {
        self.seen().insert(name.to_owned(), hash.to_owned());
    }

    pub(crate) fn forget_plugin(&self, name: &str) {
        self.seen().remove(name);
    }

    pub(crate) fn plugin_noted(&self, name: &str, hash: &str) -> bool {
        self.seen().get(name).is_some_and(|h| h == hash)
    }

    /// One PING under the deadline: how `/v1/admin/health` and the readiness of the instance see
    /// Redis, and how a connection that went down is brought back when no request is asking.
    pub async fn ping(&self) -> bool {
        let mut c = self.conn();
        let r: Result<String, _> = self.run_uncounted("PING", redis::cmd("PING").query_async(&mut c)).await;
        if r.is_ok() && !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("redis reachable");
        }
        r.is_ok()
    }
}

/// Reconnects quickly at first (a restart of Redis takes a second), then backs off to 2 s.
fn manager_config(timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(4)
}

/// A Redis error without anything a server might echo back from our arguments.
fn describe(e: &redis::RedisError) -> String {
    match e.code() {
        Some(code) => format!("{} ({code})", e.category()),
        None => e.category().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_showing_them() {
        for ok in ["redis://127.0.0.1:6379/0", "redis://user:pw@redis:6379/2", "rediss://redis.example:6380/"] {
            assert!(Fleet::check_url(ok).is_ok(), "{ok}");
        }
        let e = Fleet::check_url("redis://user:s3cret@host:notaport/").expect_err("bad port");
        assert!(!e.contains("s3cret"), "{e}");
    }
}
