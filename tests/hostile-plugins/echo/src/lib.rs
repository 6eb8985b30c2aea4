//! Well-behaved plugin `echo`, for tests and the benchmark: proceeds unless the request has an
//! `x-deny` header (then 403 `denied`). It calls no host function, so it imports no capability.

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict};

struct Echo;

impl Plugin for Echo {
    fn on_request(request: &Request) -> RequestVerdict {
        match request.header("x-deny") {
            Some(_) => RequestVerdict::reject(403, "denied", "the request carries x-deny"),
            None => RequestVerdict::Proceed,
        }
    }
}

imgate_plugin_sdk::export!(Echo);
