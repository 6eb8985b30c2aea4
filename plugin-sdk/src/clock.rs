//! Capability `clock`: the only clock a plugin has (WASI clocks are not granted).

use crate::bindings::imgate::plugin::clock as host;

/// The current Unix time in milliseconds.
pub fn now_ms() -> u64 {
    host::now()
}
