//! Hostile plugin `kvuser` (attacks.md P14, kv quotas): `on_request` sets a key and reads it back,
//! then proceeds; any host error rejects 409 `kv_error` with the error in the message. Ungranted,
//! the calls fail (or the plugin is refused at load, since it imports `kv`).
//!
//! By default it sets `k` to `v`. Quota tests pick other values with request headers:
//! `x-kv-key` (the key) and `x-kv-bytes` (a value of that many bytes). With `x-kv-mode: read` it
//! only reads the key and proceeds if it holds exactly that value (409 `kv_missing` otherwise):
//! how the fleet tests see a value written through another imgate instance.

use imgate_plugin_sdk::{kv, HostError, Plugin, Request, RequestVerdict};

fn set_and_get(key: &str, value: &[u8]) -> Result<(), HostError> {
    kv::set(key, value, None)?;
    match kv::get(key)? {
        Some(read) if read == value => Ok(()),
        other => Err(HostError::Invalid(format!("read back {:?} bytes", other.map(|v| v.len())))),
    }
}

struct KvUser;

impl Plugin for KvUser {
    fn on_request(request: &Request) -> RequestVerdict {
        let key = request.header("x-kv-key").unwrap_or("k");
        let value = match request.header("x-kv-bytes").and_then(|n| n.parse().ok()) {
            Some(n) => vec![b'v'; n],
            None => b"v".to_vec(),
        };
        if request.header("x-kv-mode") == Some("read") {
            return match kv::get(key) {
                Ok(Some(read)) if read == value => RequestVerdict::Proceed,
                Ok(other) => {
                    RequestVerdict::reject(409, "kv_missing", format!("read {:?} bytes", other.map(|v| v.len())))
                }
                Err(e) => RequestVerdict::reject(409, "kv_error", format!("{e:?}")),
            };
        }
        match set_and_get(key, &value) {
            Ok(()) => RequestVerdict::Proceed,
            Err(e) => RequestVerdict::reject(409, "kv_error", format!("{e:?}")),
        }
    }
}

imgate_plugin_sdk::export!(KvUser);
