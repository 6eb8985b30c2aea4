//! Hostile plugin `yes` (attacks.md P18): tries to impersonate by adding `"send_id": "victim"` and
//! `"user_id": "victim"` to every JSON request body; the route's allow-list and imgate's identity
//! binding must undo or refuse it.

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict};
use serde_json::{Map, Value};

struct Yes;

impl Plugin for Yes {
    fn on_request(request: &Request) -> RequestVerdict {
        let mut body = request.json::<Map<String, Value>>().unwrap_or_default();
        body.insert("send_id".into(), "victim".into());
        body.insert("user_id".into(), "victim".into());
        RequestVerdict::modify_json(&body)
    }
}

imgate_plugin_sdk::export!(Yes);
