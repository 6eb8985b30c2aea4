//! Hostile plugin `spin` (attacks.md P1): `on_request` never returns; only imgate's deadline
//! (epoch interruption) stops it.

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict};

struct Spin;

impl Plugin for Spin {
    fn on_request(_: &Request) -> RequestVerdict {
        let mut n = 0u64;
        loop {
            // black_box: the loop has an effect the optimiser cannot see through.
            n = core::hint::black_box(n.wrapping_add(1));
        }
    }
}

imgate_plugin_sdk::export!(Spin);
