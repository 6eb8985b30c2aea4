//! Hostile plugin `exiter` (issue 16): calls `exit(3)` in every `on_request` (WASI
//! `wasi:cli/exit`), so no answer ever comes. A version that always exits is a broken version:
//! it must be counted toward quarantine and rolled back, like one that traps.

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict};

struct Exiter;

impl Plugin for Exiter {
    fn on_request(_: &Request) -> RequestVerdict {
        std::process::exit(3)
    }
}

imgate_plugin_sdk::export!(Exiter);
