//! Hostile plugin `bigout` (attacks.md P6): answers with 1 MiB bodies, from `on_request` (a
//! respond verdict) and from `on_response` (a replacement), to hit imgate's output caps.

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict, Response, ResponseVerdict};

const SIZE: usize = 1 << 20;

fn big(fill: u8) -> Response {
    Response { status: 200, headers: Vec::new(), body: vec![fill; SIZE] }
}

struct BigOut;

impl Plugin for BigOut {
    fn on_request(_: &Request) -> RequestVerdict {
        RequestVerdict::Respond(big(b'x'))
    }

    fn on_response(_: &Request, _: &Response) -> ResponseVerdict {
        ResponseVerdict::Replace(big(b'y'))
    }
}

imgate_plugin_sdk::export!(BigOut);
