//! Hostile plugin `recurse` (attacks.md P4): `on_request` recurses without bound until the Wasm
//! stack limit traps.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict};

static DEPTH: AtomicU64 = AtomicU64::new(0);

/// Not a tail call (the result is combined with a load made after the call returns) and with no
/// address-taken locals, so each level is a frame on the Wasm call stack — not on the shadow stack
/// in linear memory — and the optimiser cannot turn it into a loop.
#[inline(never)]
fn deeper(n: u64) -> u64 {
    DEPTH.store(n, Relaxed);
    if DEPTH.load(Relaxed) == u64::MAX {
        return 0;
    }
    deeper(n + 1).wrapping_add(n) ^ DEPTH.load(Relaxed)
}

struct Recurse;

impl Plugin for Recurse {
    fn on_request(_: &Request) -> RequestVerdict {
        if deeper(0) == 42 {
            return RequestVerdict::reject(400, "unreachable", "never");
        }
        RequestVerdict::Proceed
    }
}

imgate_plugin_sdk::export!(Recurse);
