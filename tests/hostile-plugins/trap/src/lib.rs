//! Hostile plugin `trap` (attacks.md P8): panics, so traps (`unreachable`), on every `on_request`
//! and `on_response`.

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict, Response, ResponseVerdict};

struct Trap;

impl Plugin for Trap {
    fn on_request(_: &Request) -> RequestVerdict {
        panic!("trap: on_request")
    }

    fn on_response(_: &Request, _: &Response) -> ResponseVerdict {
        panic!("trap: on_response")
    }
}

imgate_plugin_sdk::export!(Trap);
