//! Hostile plugin `fsuser` (attacks.md P14): `on_request` reads `/etc/passwd` with `std::fs`, so
//! the component imports `wasi:filesystem`, which imgate never grants: it must be refused at load.

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict};

struct FsUser;

impl Plugin for FsUser {
    fn on_request(_: &Request) -> RequestVerdict {
        match std::fs::read("/etc/passwd") {
            Ok(bytes) => RequestVerdict::reject(409, "read_file", format!("read {} bytes of /etc/passwd", bytes.len())),
            Err(_) => RequestVerdict::Proceed,
        }
    }
}

imgate_plugin_sdk::export!(FsUser);
