//! Capability `kv`: a key-value store private to this plugin, shared by all its routes (and, with
//! Redis, by every imgate instance), with quotas on keys and bytes.

use crate::bindings::imgate::plugin::kv as host;
use crate::HostError;

/// The value of `key`, `None` when it is missing or expired.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, HostError> {
    host::get(key)
}

/// Stores `value` under `key`; `ttl_ms: None` keeps it until it is deleted.
pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) -> Result<(), HostError> {
    host::set(key, value, ttl_ms)
}

/// Removes `key` (a missing key is not an error).
pub fn delete(key: &str) -> Result<(), HostError> {
    host::delete(key)
}

/// Adds `delta` to the counter `key` (a missing key counts as 0) and returns the new value.
pub fn increment(key: &str, delta: i64, ttl_ms: Option<u64>) -> Result<i64, HostError> {
    host::increment(key, delta, ttl_ms)
}
