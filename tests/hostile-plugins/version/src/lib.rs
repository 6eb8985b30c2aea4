//! Well-behaved plugin `version`, for hot-reload tests: `on_request` answers 200
//! `{"plugin_version": N}`, where N is `PLUGIN_VERSION` at build time (1 when unset), so two builds
//! tell which one served a request. With the header `x-version-on-response`, `on_request` lets the
//! request through and `on_response` answers instead, after the route went to OpenIM: which build
//! finished a request that was in flight during a swap.

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict, Response, ResponseVerdict};

/// `PLUGIN_VERSION` parsed at compile time; a value that is not a number fails the build.
const VERSION: u32 = match option_env!("PLUGIN_VERSION") {
    Some(v) => parse(v),
    None => 1,
};

const fn parse(text: &str) -> u32 {
    let bytes = text.as_bytes();
    assert!(!bytes.is_empty(), "PLUGIN_VERSION is empty");
    let mut n = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii_digit(), "PLUGIN_VERSION must be a number");
        n = n * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    n
}

struct Version;

impl Plugin for Version {
    fn on_request(req: &Request) -> RequestVerdict {
        if req.header("x-version-on-response").is_some() {
            return RequestVerdict::Proceed;
        }
        RequestVerdict::respond_json(200, &serde_json::json!({ "plugin_version": VERSION }))
    }

    fn on_response(req: &Request, res: &Response) -> ResponseVerdict {
        if req.header("x-version-on-response").is_none() {
            return ResponseVerdict::Proceed;
        }
        let body = serde_json::json!({ "plugin_version": VERSION, "upstream_status": res.status });
        ResponseVerdict::replace_json(200, &body)
    }
}

imgate_plugin_sdk::export!(Version);
