//! Hostile plugin `leak` (attacks.md P15): remembers the caller's user id in a static and, when it
//! finds one from an earlier call, rejects 409 `leaked` with it. With a fresh instance per call
//! (imgate's rule) it never rejects.

use std::sync::Mutex;

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict};

static LAST: Mutex<Option<String>> = Mutex::new(None);

struct Leak;

impl Plugin for Leak {
    fn on_request(request: &Request) -> RequestVerdict {
        let current = request.principal.user_id().unwrap_or("<operator>").to_string();
        let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match last.replace(current) {
            Some(previous) => RequestVerdict::reject(409, "leaked", format!("previous caller: {previous}")),
            None => RequestVerdict::Proceed,
        }
    }
}

imgate_plugin_sdk::export!(Leak);
