//! The WebSocket message gateway listener (contract §5.1-§5.3, §5.8): handshake, text
//! heartbeats, kicks.
//!
//! Implemented: any path; query parameters (or the single `v=` base64url JSON form); argument
//! errors (1602, or 500 for a missing `isBackground`) answered as plain HTTP 200 JSON; token
//! verification with the HTTP API's rules plus 1502 on a user/platform mismatch, answered as
//! HTTP 200 JSON, or with `isMsgResp=true` as an upgrade + one text frame + close; success is a
//! 101 (plus a `{"errCode":0,...}` text frame with `isMsgResp=true`); text heartbeats
//! `{"type":"ping","body":X}` → `{"type":"pong","body":X}`; WS pings every 27 s for Web
//! (platform 5); a new connection of the same (user, platform) with another token kicks the older
//! ones and marks the other tokens kicked; `/auth/force_logout` closes the user's connections on
//! that platform. Kicked `sdkType=js` connections get a JSON `2002` frame first.
//!
//! Out of scope for now: binary request frames (gob/JSON envelopes carrying protobuf
//! `reqIdentifier` payloads, message push 2001). A binary frame closes the connection, as OpenIM
//! does for a frame it cannot decode.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use crate::error::{envelope, ApiError};
use crate::server::App;
use crate::token;

/// A registered live connection.
struct Entry {
    user_id: String,
    platform_id: i32,
    token: String,
    kick: mpsc::UnboundedSender<()>,
}

/// Live WS connections, so that logins and force_logout can kick them.
#[derive(Default)]
pub struct WsRegistry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Entry>>,
}

impl WsRegistry {
    /// Kick every connection of (user, platform) whose token differs from `keep_token`.
    pub fn kick(&self, user_id: &str, platform_id: i32, keep_token: Option<&str>) {
        if let Ok(conns) = self.conns.lock() {
            for e in conns.values() {
                if e.user_id == user_id && e.platform_id == platform_id && Some(e.token.as_str()) != keep_token {
                    let _ = e.kick.send(());
                }
            }
        }
    }

    /// Number of live connections of a user (all platforms).
    pub fn count(&self, user_id: &str) -> usize {
        self.conns.lock().map(|c| c.values().filter(|e| e.user_id == user_id).count()).unwrap_or(0)
    }

    fn register(&self, e: Entry) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut c) = self.conns.lock() {
            c.insert(id, e);
        }
        id
    }

    fn remove(&self, id: u64) {
        if let Ok(mut c) = self.conns.lock() {
            c.remove(&id);
        }
    }
}

#[derive(Clone)]
struct WsState {
    app: Arc<App>,
    stop: watch::Receiver<bool>,
}

/// Router of the WS listener: every path is the gateway.
pub fn ws_router(app: Arc<App>, stop: watch::Receiver<bool>) -> Router {
    Router::new().fallback(ws_entry).with_state(WsState { app, stop })
}

/// Handshake arguments after parsing.
struct Args {
    user_id: String,
    token: String,
    platform_id: i32,
    sdk_js: bool,
    send_response: bool,
}

/// The JSON of the `v=` form.
#[derive(Deserialize, Default)]
#[serde(default)]
struct VArgs {
    #[serde(rename = "userID")]
    user_id: String,
    token: String,
    #[serde(rename = "platformID")]
    platform_id: i32,
    #[serde(rename = "operationID")]
    operation_id: String,
    #[serde(rename = "sdkType")]
    sdk_type: String,
    #[serde(rename = "sendResponse")]
    send_response: bool,
}

fn conn_err(d: &str) -> ApiError {
    ApiError::ConnArgs(d.to_string())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The `v=<base64url JSON>` form; returns the args, operationID and sdkType.
fn parse_v(v: &str) -> Result<(Args, String, String), ApiError> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v).map_err(|e| conn_err(&e.to_string()))?;
    let j: VArgs = serde_json::from_slice(&raw).map_err(|e| conn_err(&e.to_string()))?;
    let a = Args {
        user_id: j.user_id,
        token: j.token,
        platform_id: j.platform_id,
        sdk_js: false,
        send_response: j.send_response,
    };
    Ok((a, j.operation_id, j.sdk_type))
}

/// The plain query form; returns the args, operationID and sdkType.
fn parse_query(q: &HashMap<String, String>) -> Result<(Args, String, String), ApiError> {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let token = get("token");
    if token.is_empty() {
        return Err(conn_err("token is empty"));
    }
    let user_id = get("sendID");
    if user_id.is_empty() {
        return Err(conn_err("sendID is empty"));
    }
    let platform_id: i32 = get("platformID").parse().map_err(|_| conn_err("platformID is not int"))?;
    let op = get("operationID");
    if op.is_empty() {
        return Err(conn_err("operationID is empty"));
    }
    let bg = get("isBackground");
    if parse_bool(&bg).is_none() {
        let msg = format!("strconv.ParseBool: parsing \"{bg}\": invalid syntax");
        return Err(ApiError::ServerInternal(msg));
    }
    let send_response = parse_bool(&get("isMsgResp")).unwrap_or(false);
    let args = Args { user_id, token, platform_id, sdk_js: false, send_response };
    Ok((args, op, get("sdkType")))
}

/// `ParseEssentialArgs` (§5.2).
fn parse_args(q: &HashMap<String, String>) -> Result<Args, ApiError> {
    let (args, op, sdk_type) = match q.get("v").filter(|v| !v.is_empty()) {
        Some(v) => parse_v(v)?,
        None => parse_query(q)?,
    };
    if op.is_empty() {
        return Err(conn_err("operationID is empty"));
    }
    if !(1..=11).contains(&args.platform_id) {
        return Err(conn_err("platformID is invalid"));
    }
    let sdk_js = match sdk_type.as_str() {
        "" | "go" => false,
        "js" => true,
        _ => return Err(conn_err("sdkType is invalid")),
    };
    Ok(Args { sdk_js, ..args })
}

/// Plain HTTP 200 JSON error (`apiresp.HttpError`), no upgrade.
fn http_error(e: &ApiError) -> Response {
    let mut r = (StatusCode::OK, envelope(Some(e), None).to_string()).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

async fn ws_entry(
    State(s): State<WsState>,
    Query(q): Query<HashMap<String, String>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let args = match parse_args(&q) {
        Ok(a) => a,
        Err(e) => return http_error(&e),
    };
    let verified = {
        let cfg = &s.app.config;
        token::verify(&s.app.lock(), &cfg.secret, &cfg.admin_user_ids, &args.token)
    };
    let checked = verified.and_then(|c| {
        if c.user_id != args.user_id || c.platform_id != args.platform_id {
            Err(ApiError::TokenInvalid(format!("token uid {} != userID {}", c.user_id, args.user_id)))
        } else {
            Ok(())
        }
    });
    let Ok(upgrade) = upgrade else {
        return match checked {
            Err(e) => http_error(&e),
            Ok(()) => (StatusCode::BAD_REQUEST, "Bad Request").into_response(),
        };
    };
    match checked {
        Err(e) if args.send_response => upgrade.on_upgrade(move |mut ws| async move {
            let _ = ws.send(Message::Text(envelope(Some(&e), None).to_string().into())).await;
        }),
        Err(e) => http_error(&e),
        Ok(()) => upgrade.on_upgrade(move |ws| run_conn(s, args, ws)),
    }
}

/// One live connection: multi-login kick, heartbeats, kicks, shutdown.
async fn run_conn(s: WsState, args: Args, mut ws: WebSocket) {
    s.app.ws.kick(&args.user_id, args.platform_id, Some(&args.token));
    token::kick_all(&mut s.app.lock(), &args.user_id, args.platform_id, Some(&args.token));
    let (tx, mut kicked) = mpsc::unbounded_channel();
    let id = s.app.ws.register(Entry {
        user_id: args.user_id.clone(),
        platform_id: args.platform_id,
        token: args.token.clone(),
        kick: tx,
    });
    if args.send_response {
        let ok = json!({"errCode": 0, "errMsg": "", "errDlt": ""}).to_string();
        if ws.send(Message::Text(ok.into())).await.is_err() {
            s.app.ws.remove(id);
            return;
        }
    }
    let mut stop = s.stop.clone();
    let mut ping = tokio::time::interval(Duration::from_secs(27));
    ping.tick().await;
    loop {
        tokio::select! {
            frame = ws.recv() => match frame {
                Some(Ok(Message::Text(t))) => {
                    if !answer_text(&mut ws, t.as_str()).await { break; }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Binary(_))) | Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            },
            _ = kicked.recv() => {
                if args.sdk_js {
                    let frame = json!({"reqIdentifier": 2002, "msgIncr": "", "operationID": "", "errCode": 0, "errMsg": "", "data": null});
                    let _ = ws.send(Message::Binary(frame.to_string().into_bytes().into())).await;
                }
                break;
            }
            _ = ping.tick(), if args.platform_id == 5 => {
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() { break; }
            }
            _ = stop.changed() => break,
        }
    }
    s.app.ws.remove(id);
}

/// Answer a text frame; `false` closes the connection (anything but a JSON ping/pong).
async fn answer_text(ws: &mut WebSocket, text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return false;
    };
    match v.get("type").and_then(Value::as_str) {
        Some("ping") => {
            let body = v.get("body").cloned().unwrap_or(Value::Null);
            let pong = json!({"type": "pong", "body": body}).to_string();
            ws.send(Message::Text(pong.into())).await.is_ok()
        }
        Some("pong") => true,
        _ => false,
    }
}
