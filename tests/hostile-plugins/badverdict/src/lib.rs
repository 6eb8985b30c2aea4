//! Hostile plugin `badverdict` (attacks.md P7): `on_request` gives the ill-formed answer its
//! configuration names, each of which imgate must refuse (fail closed):
//!
//! - `{"mode":"status200"}`: a rejection with status 200;
//! - `{"mode":"badcode"}`: a rejection with code `no spaces allowed!`;
//! - `{"mode":"notjson"}`: a modification whose body is not JSON (nor UTF-8);
//! - `{"mode":"badheader"}`: a response with the header name `"bad header\n"`.

use imgate_plugin_sdk::{config, Config, Header, Plugin, Request, RequestVerdict, Response};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    mode: Mode,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Status200,
    BadCode,
    NotJson,
    BadHeader,
}

struct BadVerdict;

impl Plugin for BadVerdict {
    fn init(config: &Config) -> Result<(), String> {
        config.parse::<Settings>().map(drop)
    }

    fn on_request(_: &Request) -> RequestVerdict {
        let Ok(settings) = config::get().parse::<Settings>() else { return RequestVerdict::Proceed };
        match settings.mode {
            Mode::Status200 => RequestVerdict::reject(200, "status_200", "a rejection that says OK"),
            Mode::BadCode => RequestVerdict::reject(403, "no spaces allowed!", "a code outside a-z 0-9 _ . -"),
            Mode::NotJson => RequestVerdict::modify_body(b"\xff\xfenot json".to_vec()),
            Mode::BadHeader => RequestVerdict::Respond(Response {
                status: 200,
                headers: vec![Header { name: "bad header\n".into(), value: "x".into() }],
                body: b"{}".to_vec(),
            }),
        }
    }
}

imgate_plugin_sdk::export!(BadVerdict);
