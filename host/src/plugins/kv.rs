//! The plugins' key-value store (`imgate:plugin/kv`): one namespace per plugin, with quotas.
//!
//! Behind a trait so that several imgate instances can share it through Redis later; the
//! in-memory store is the default. Quotas count keys and bytes (key + value) per namespace and are
//! checked in the same critical section as the write, so concurrent writers cannot overshoot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("quota exceeded")]
    Quota,
    #[error("the value is not a counter")]
    NotACounter,
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// A namespace's quotas.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub max_keys: u64,
    pub max_bytes: u64,
}

/// Plugin state storage.
#[async_trait::async_trait]
pub trait PluginKv: Send + Sync + 'static {
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: Quota,
    ) -> Result<(), KvError>;
    async fn delete(&self, ns: &str, key: &str) -> Result<(), KvError>;
    async fn increment(
        &self,
        ns: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
        quota: Quota,
    ) -> Result<i64, KvError>;
}

#[derive(Default)]
struct Namespace {
    entries: HashMap<String, (Vec<u8>, Option<Instant>)>,
    bytes: u64,
}

impl Namespace {
    fn purge(&mut self, key: &str, now: Instant) {
        if let Some((v, Some(exp))) = self.entries.get(key) {
            if *exp <= now {
                self.bytes -= (key.len() + v.len()) as u64;
                self.entries.remove(key);
            }
        }
    }

    fn put(&mut self, key: &str, value: Vec<u8>, expires: Option<Instant>, quota: Quota) -> Result<(), KvError> {
        let old = self.entries.get(key).map(|(v, _)| (key.len() + v.len()) as u64);
        let new_bytes = self.bytes - old.unwrap_or(0) + (key.len() + value.len()) as u64;
        let new_keys = self.entries.len() as u64 + u64::from(old.is_none());
        if new_bytes > quota.max_bytes || new_keys > quota.max_keys {
            return Err(KvError::Quota);
        }
        self.bytes = new_bytes;
        self.entries.insert(key.to_owned(), (value, expires));
        Ok(())
    }
}

/// The in-process store (the default; one gateway instance).
#[derive(Default)]
pub struct MemoryKv {
    spaces: Mutex<HashMap<String, Namespace>>,
}

impl MemoryKv {
    pub fn new() -> MemoryKv {
        MemoryKv::default()
    }

    fn with<R>(&self, ns: &str, key: &str, f: impl FnOnce(&mut Namespace, Instant) -> R) -> R {
        let mut spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        let space = spaces.entry(ns.to_owned()).or_default();
        let now = Instant::now();
        space.purge(key, now);
        f(space, now)
    }
}

#[async_trait::async_trait]
impl PluginKv for MemoryKv {
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.with(ns, key, |s, _| s.entries.get(key).map(|(v, _)| v.clone())))
    }

    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: Quota,
    ) -> Result<(), KvError> {
        self.with(ns, key, |s, now| s.put(key, value, ttl.map(|t| now + t), quota))
    }

    async fn delete(&self, ns: &str, key: &str) -> Result<(), KvError> {
        self.with(ns, key, |s, _| {
            if let Some((v, _)) = s.entries.remove(key) {
                s.bytes -= (key.len() + v.len()) as u64;
            }
        });
        Ok(())
    }

    async fn increment(
        &self,
        ns: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
        quota: Quota,
    ) -> Result<i64, KvError> {
        self.with(ns, key, |s, now| {
            let (current, expires) = match s.entries.get(key) {
                Some((v, exp)) => {
                    let text = std::str::from_utf8(v).map_err(|_| KvError::NotACounter)?;
                    (text.parse::<i64>().map_err(|_| KvError::NotACounter)?, *exp)
                }
                None => (0, ttl.map(|t| now + t)),
            };
            let next = current.saturating_add(delta);
            s.put(key, next.to_string().into_bytes(), expires, quota)?;
            Ok(next)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quota = Quota { max_keys: 2, max_bytes: 20 };

    #[tokio::test]
    async fn namespaces_are_separate_and_quotas_hold() {
        let kv = MemoryKv::new();
        kv.set("a", "k", b"1234".to_vec(), None, Q).await.unwrap();
        assert_eq!(kv.get("b", "k").await.unwrap(), None, "another plugin's namespace");
        assert_eq!(kv.get("a", "k").await.unwrap(), Some(b"1234".to_vec()));
        kv.set("a", "k2", b"x".to_vec(), None, Q).await.unwrap();
        assert_eq!(kv.set("a", "k3", b"x".to_vec(), None, Q).await, Err(KvError::Quota), "third key");
        assert_eq!(kv.set("a", "k", vec![0; 30], None, Q).await, Err(KvError::Quota), "too many bytes");
        assert_eq!(kv.get("a", "k").await.unwrap(), Some(b"1234".to_vec()), "a refused write changes nothing");
        kv.delete("a", "k2").await.unwrap();
        kv.set("a", "k3", b"x".to_vec(), None, Q).await.unwrap();
    }

    #[tokio::test]
    async fn counters_and_expiry() {
        let kv = MemoryKv::new();
        assert_eq!(kv.increment("a", "c", 2, None, Q).await, Ok(2));
        assert_eq!(kv.increment("a", "c", -5, None, Q).await, Ok(-3));
        kv.set("a", "s", b"text".to_vec(), None, Q).await.unwrap();
        assert_eq!(kv.increment("a", "s", 1, None, Q).await, Err(KvError::NotACounter));
        kv.set("a", "s", b"gone".to_vec(), Some(Duration::ZERO), Q).await.unwrap();
        assert_eq!(kv.get("a", "s").await.unwrap(), None, "an expired value is gone");
    }
}
