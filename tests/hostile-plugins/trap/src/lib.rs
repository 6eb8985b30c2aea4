//! Hostile plugin `trap` (attacks.md P8): panics, so traps (`unreachable`), on every `on_request`
//! and `on_response`; with `"in_init": true` in its route config it traps in `init` already (a
//! version that must never replace a working one).

use imgate_plugin_sdk::{Config, Plugin, Request, RequestVerdict, Response, ResponseVerdict};

struct Trap;

impl Plugin for Trap {
    fn init(config: &Config) -> Result<(), String> {
        if config.as_str().contains("\"in_init\":true") {
            panic!("trap: init");
        }
        Ok(())
    }

    fn on_request(_: &Request) -> RequestVerdict {
        panic!("trap: on_request")
    }

    fn on_response(_: &Request, _: &Response) -> ResponseVerdict {
        panic!("trap: on_response")
    }
}

imgate_plugin_sdk::export!(Trap);
