//! Hostile plugin `hugeout` (issue 16): answers every `on_request` with a 12 MiB body, far over
//! `max_output_bytes` but within its memory cap, to make the host copy it out of the guest. The
//! answer must be refused, and cost the gateway no memory, before a byte of it is copied.

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict, Response};

const SIZE: usize = 12 << 20;

struct HugeOut;

impl Plugin for HugeOut {
    fn on_request(_: &Request) -> RequestVerdict {
        RequestVerdict::Respond(Response { status: 200, headers: Vec::new(), body: vec![b'h'; SIZE] })
    }
}

imgate_plugin_sdk::export!(HugeOut);
