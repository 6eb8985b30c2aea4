//! Hostile plugin `slowhost` (attacks.md P10): asks OpenIM for user `u1`; a host-side timeout
//! rejects 403 `host_timeout`, another host error 403 `host_error`, an answer proceeds. Tests make
//! OpenIM hang to check that imgate's own deadline on host calls holds.

use imgate_plugin_sdk::{openim, HostError, Plugin, Request, RequestVerdict};

struct SlowHost;

impl Plugin for SlowHost {
    fn on_request(_: &Request) -> RequestVerdict {
        match openim::get_user("u1") {
            Ok(_) => RequestVerdict::Proceed,
            Err(HostError::Timeout) => RequestVerdict::reject(403, "host_timeout", "the OpenIM read timed out"),
            Err(e) => RequestVerdict::reject(403, "host_error", format!("{e:?}")),
        }
    }
}

imgate_plugin_sdk::export!(SlowHost);
