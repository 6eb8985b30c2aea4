//! What the fuzz targets share: one tokio runtime, a gateway state built from a config exactly as
//! `imgate serve` builds it (in-memory store, no plugins), a live session, and a fake OpenIM on
//! loopback whose answers a target scripts.
//!
//! Everything here is set-up; the code under test is always the gateway's own (`host`,
//! `openim-wire`). Set-up failures panic: they are bugs of the harness, and libFuzzer reports
//! them at the first input.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use host::auth::Caller;
use host::keys::GatewayKey;
use host::store::Session;
use host::AppState;
use openim_wire::{Codec, Encoding};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// The user every target's session belongs to.
pub const USER: &str = "alice";
/// Her platform (1 = iOS, a user platform).
pub const PLATFORM: i32 = 1;
/// The session id of [`session`].
pub const SESSION_ID: &str = "fuzz-session-0000000000";
/// The session key of [`session`].
pub const SESSION_KEY: [u8; 32] = [7; 32];

/// OpenIM's msg-gateway codecs, in the order an input's first byte picks them (bits 0-1): the
/// `ws_*` targets read it so, and the seed writer writes it so.
pub const CODECS: [Codec; 4] = [
    Codec { encoding: Encoding::Json, gzip: false },
    Codec { encoding: Encoding::Gob, gzip: false },
    Codec { encoding: Encoding::Json, gzip: true },
    Codec { encoding: Encoding::Gob, gzip: true },
];

/// One current-thread runtime for the whole process: every async call of a target runs in
/// `rt().block_on`, and the fake OpenIM's tasks run while it waits.
pub fn rt() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime"))
}

/// A directory of this process for the files a config names (keys, secrets).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imgate-fuzz-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The gateway's X25519 key of [`gateway_state`] (fixed, so runs are reproducible).
pub fn gateway_key() -> GatewayKey {
    GatewayKey::from_b64("k1", "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=").expect("gateway key")
}

/// A gateway state: `openim.api_url` = `api_url`, limits that never bite (a fuzzer sends
/// thousands of requests a second as one user), no retries (a retry sleeps).
pub fn gateway_state(api_url: &str) -> AppState {
    let dir = scratch_dir("state");
    std::fs::write(dir.join("gw.key"), gateway_key().secret_b64()).expect("key file");
    let big = "per_second = 1000000000\nburst = 1000000000";
    let toml = format!(
        r#"
[openim]
api_url = "{api_url}"
ws_url = "ws://127.0.0.1:9"
secret = "fuzz-openim-secret"
timeout_ms = 2000
read_retries = 0

[[gateway.keys]]
id = "k1"
private_key_file = "gw.key"

[rate_limits.default]
{big}
[rate_limits.send]
{big}
[rate_limits.admin]
{big}
"#
    );
    let config = host::Config::parse(&toml).unwrap_or_else(|e| panic!("fuzz config: {e}"));
    let _guard = rt().enter();
    host::build_state(config, &dir).unwrap_or_else(|e| panic!("fuzz state: {e}"))
}

/// Puts [`USER`]'s session into the state's store.
pub fn add_session(state: &AppState) {
    let now = host::auth::now_ms();
    let session = Session {
        session_id: SESSION_ID.into(),
        session_key: SESSION_KEY,
        user_id: USER.into(),
        device_id: "fuzz-device".into(),
        platform_id: PLATFORM,
        tier: "default".into(),
        created_at_ms: now,
        expires_at_ms: now + 365 * 24 * 3600 * 1000,
        last_used_ms: now,
    };
    rt().block_on(state.store.put_session(session)).expect("put session");
}

/// [`USER`] as the session makes her.
pub fn caller() -> Caller {
    Caller {
        user_id: USER.into(),
        platform_id: PLATFORM,
        device_id: "fuzz-device".into(),
        session_id: SESSION_ID.into(),
        session_expires_at_ms: i64::MAX,
        tier: "default".into(),
    }
}

/// Answers one OpenIM request: (path, body) → (HTTP status, body).
pub type Responder = Arc<dyn Fn(&str, &[u8]) -> (u16, Vec<u8>) + Send + Sync>;

/// An OpenIM on loopback: every request gets what `responder` says, `Connection: close`.
/// Returns its base URL.
pub fn fake_openim(responder: Responder) -> String {
    let listener = rt().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    rt().spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(serve(stream, responder.clone()));
        }
    });
    format!("http://{addr}")
}

async fn serve(mut s: tokio::net::TcpStream, responder: Responder) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let (status, body) = responder(&path, &buf[head_end..head_end + len]);
    let head = format!(
        "HTTP/1.1 {status} Fuzz\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(&body).await;
    let _ = s.shutdown().await;
}

/// OpenIM's success envelope around `data`.
pub fn ok_envelope(data: serde_json::Value) -> Vec<u8> {
    serde_json::json!({ "errCode": 0, "errMsg": "", "errDlt": "", "data": data }).to_string().into_bytes()
}

/// An OpenIM that knows tokens and group roles: groups whose id starts with `m` have the asking
/// user as a member (20), `o` as owner (100); every other group has no such member.
pub fn role_openim() -> String {
    fake_openim(Arc::new(|path: &str, body: &[u8]| {
        let req: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        match path {
            "/auth/get_admin_token" | "/auth/get_user_token" => {
                (200, ok_envelope(serde_json::json!({ "token": "fuzz-token", "expireTimeSeconds": 86_400 })))
            }
            "/group/get_group_members_info" => {
                let group = req["groupID"].as_str().unwrap_or("");
                let user = req["userIDs"][0].clone();
                let members = match group.as_bytes().first() {
                    Some(b'm') => serde_json::json!([{ "userID": user, "roleLevel": 20 }]),
                    Some(b'o') => serde_json::json!([{ "userID": user, "roleLevel": 100 }]),
                    _ => serde_json::json!([]),
                };
                (200, ok_envelope(serde_json::json!({ "members": members })))
            }
            _ => (200, ok_envelope(serde_json::json!({}))),
        }
    }))
}
