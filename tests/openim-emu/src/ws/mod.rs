//! The WebSocket message gateway (contract §5): handshake, heartbeats, kicks, the binary request
//! frames of every `reqIdentifier`, message pushes and online-status subscriptions.
//!
//! Codemap: this file is the listener and the handshake; [`registry`] the live connections
//! (kicks, pushes, subscriptions); `conn` one connection's loop (read deadline, frame limit,
//! envelope codec, fatal conditions); `handlers` the request identifiers; `convert` the
//! emulator's records as protobuf.
//!
//! Implemented, with OpenIM's sources (`S` = open-im-server @ fbca49d):
//! * Handshake (`S internal/msggateway/context.go:107-182`, `ws_server.go:456-549`): any path;
//!   query parameters in OpenIM's order of checks, or the single `v=` base64url JSON form
//!   (decoded like Go's `encoding/json`); argument errors (1602, or 500 for a missing
//!   `isBackground`) answered as plain HTTP 200 JSON; token verification with the HTTP API's
//!   rules plus 1502 on a user/platform mismatch, as HTTP 200 JSON, or with `isMsgResp=true` as
//!   an upgrade + one text frame + close; success is a 101 (plus `{"errCode":0,...}` as a text
//!   frame with `isMsgResp=true`). `compression=gzip` (query, or the `compression` header in
//!   query mode) makes every binary frame a gzip stream both ways; `sdkType` `go` (default)
//!   selects the gob envelope, `js` JSON (`client.go:105-109`).
//! * Frames (`client.go:114-214`, `client_conn.go:135-196`): text heartbeats
//!   `{"type":"ping","body":X}` → `{"type":"pong","body":X}` (uncompressed), `{"type":"pong"}`
//!   ignored, other text fatal; binary frames decoded with `openim-wire`. Fatal (the TCP
//!   connection is dropped, no reply): undecodable envelope, gzip failure, `sendID` other than
//!   the connection's user, an unknown `reqIdentifier`, a full write queue (256 frames). A
//!   frame over 51 200 bytes is answered with a close frame 1009, as gorilla's read limit does.
//! * Read deadline (`client_conn.go:135-145,198-209`): [`crate::Config::ws_read_timeout`]
//!   (30 s), re-armed by every data frame and every received WS ping, not by a received pong
//!   (the fbca49d behaviour, contract §5.8). Web connections (platform 5) get a WS ping every
//!   27 s.
//! * Requests (`message_handler.go`, `client.go:176-261`): replies echo `reqIdentifier`,
//!   `msgIncr`, `operationID`; handler errors become `errCode`/`errMsg` (the short name; a
//!   protobuf that does not decode is 500 `ServerInternalError`) with nil data. 1001, 1002 and
//!   1006 are answered by the HTTP API's own handlers (`/msg/newest_seq`,
//!   `/msg/pull_msg_by_seq`, `/msg/get_conversations_has_read_and_max_seq`), so both surfaces
//!   share one behaviour, including 1002 skipping the membership check for `n_` conversations
//!   (§10.5). 1003 goes through the REST send pipeline (`msg::send`, §5.7) after
//!   `MsgData.Check()` and `CheckAccess(sendID)` (`S internal/rpc/msg/send.go:37-43`). 1005
//!   (`S internal/rpc/msg/sync_msg.go:92-121`, `pkg/common/storage/controller/msg.go:480-534`)
//!   and 1007 (`sync_msg.go:252-258`, `mgo/msg.go:1006-1060`) check nothing: any user reads any
//!   conversation (§10.5). 2003 (`S internal/push/push.go:46-52`, no check either) replies and
//!   closes. 2004 sets the connection's background flag (`client.go:216-225`). 2005 replies
//!   with the subscribed users' online platforms (`subscription.go:21-42`).
//! * 1004 is answered, not fatal: OpenIM calls `SendMsg(ctx, nil)`, gRPC sends an empty
//!   `SendMsgReq`, and the RPC server's validation interceptor refuses it with 1001 ArgsError
//!   "MsgData is empty" (`S internal/msggateway/message_handler.go:175-185`,
//!   `T mw/rpc_server_interceptor.go:37`, `T checker/check.go:23-33`, `P msg/msg.go:16-24`).
//! * Kicks (`client.go:285-293`, `ws_server.go:333-437`): a new connection of the same (user,
//!   platform) with another token kicks the older ones and marks the other tokens kicked;
//!   `/auth/force_logout` kicks that platform; a kicked connection gets a 2002 frame in its own
//!   envelope (gob or JSON, gzip if negotiated), then is closed.
//! * Pushes ([`push_msg`], hooked into `msg::send`): every message the send pipeline accepts
//!   (REST `send_msg`, WS 1003, and whatever else calls `msg::send`) is pushed as 2001
//!   `PushMessages` (`notificationMsgs` for `n_` conversations, `msgIncr` empty) to every live
//!   connection of: the group's members (sessionType 3); else `recvID`, plus `sendID` when the
//!   `senderSync` option is on (default) — including the very connection that sent it
//!   (`S internal/push/push_handler.go:104-116,286-331`, `internal/msggateway/hub_server.go:135-169`).
//!   iOS connections in background get nothing (`hub_server.go:155-158`). Online-only messages
//!   (`history` off) are pushed too, with seq 0.
//! * Online status: every connect and disconnect pushes a 2005 Tips frame with the user's
//!   current platforms to the connections subscribed to that user (`subscription.go:149-166`).
//!
//! A 2001 push carries the `operationID` of the request that sent the message (OpenIM: the push
//! RPC's context, `S internal/msggateway/client.go:277-280`); 1007 reads its conversation ids as
//! a regular expression, as OpenIM's MongoDB query does (`^<id>:`).
//!
//! Differences: the 2005 subscription is per connection, not per remote address; no
//! multi-gateway forwarding; offline push does not exist.

mod conn;
mod convert;
mod handlers;
pub mod registry;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use tokio::sync::watch;

use crate::error::{envelope, ApiError};
use crate::server::App;
use crate::token;

pub use convert::{push_msg, to_pb};
pub use registry::WsRegistry;

#[derive(Clone)]
struct WsState {
    app: Arc<App>,
    stop: watch::Receiver<bool>,
}

/// Router of the WS listener: every path is the gateway.
pub fn ws_router(app: Arc<App>, stop: watch::Receiver<bool>) -> Router {
    Router::new().fallback(ws_entry).with_state(WsState { app, stop })
}

/// Handshake arguments after parsing (`UserConnContextInfo`).
struct Args {
    user_id: String,
    token: String,
    platform_id: i32,
    operation_id: String,
    sdk_type: String,
    compression: String,
    send_response: bool,
}

/// The JSON of the `v=` form (`S internal/msggateway/context.go:32-42`).
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
    compression: String,
    #[serde(rename = "sdkType")]
    sdk_type: String,
    #[serde(rename = "sendResponse")]
    send_response: bool,
    // Read only to refuse a wrong type, as Go's decoder does.
    #[allow(dead_code)]
    background: bool,
    #[allow(dead_code)]
    #[serde(rename = "sdkVersion")]
    sdk_version: String,
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

/// `parseByJson`.
fn parse_v(v: &str) -> Result<Args, ApiError> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(v).map_err(|_| conn_err("data is not base64"))?;
    let j: VArgs = crate::json::decode(&raw).map_err(|_| conn_err("data is not json"))?;
    Ok(Args {
        user_id: j.user_id,
        token: j.token,
        platform_id: j.platform_id,
        operation_id: j.operation_id,
        sdk_type: j.sdk_type,
        compression: j.compression,
        send_response: j.send_response,
    })
}

/// `parseByQuery`, checks in OpenIM's order.
fn parse_query(q: &HashMap<String, String>, headers: &HeaderMap) -> Result<Args, ApiError> {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let platform_id: i32 = get("platformID").parse().map_err(|_| conn_err("platformID is not int"))?;
    let send_response = match get("isMsgResp").as_str() {
        "" => false,
        v => parse_bool(v).ok_or_else(|| conn_err("isMsgResp is not bool"))?,
    };
    let mut compression = get("compression");
    if compression.is_empty() {
        compression = headers.get("compression").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    }
    let bg = get("isBackground");
    if parse_bool(&bg).is_none() {
        let msg = format!("strconv.ParseBool: parsing \"{bg}\": invalid syntax");
        return Err(ApiError::ServerInternal(msg));
    }
    Ok(Args {
        user_id: get("sendID"),
        token: get("token"),
        platform_id,
        operation_id: get("operationID"),
        sdk_type: get("sdkType"),
        compression,
        send_response,
    })
}

/// `ParseEssentialArgs` + `checkInfo` (§5.2).
fn parse_args(q: &HashMap<String, String>, headers: &HeaderMap) -> Result<Args, ApiError> {
    let args = match q.get("v").filter(|v| !v.is_empty()) {
        Some(v) => parse_v(v)?,
        None => parse_query(q, headers)?,
    };
    if args.operation_id.is_empty() {
        return Err(conn_err("operationID is empty"));
    }
    if args.token.is_empty() {
        return Err(conn_err("token is empty"));
    }
    if args.user_id.is_empty() {
        return Err(conn_err("sendID is empty"));
    }
    if !(1..=11).contains(&args.platform_id) {
        return Err(conn_err("platformID is invalid"));
    }
    if !matches!(args.sdk_type.as_str(), "" | "go" | "js") {
        return Err(conn_err("sdkType is invalid"));
    }
    Ok(args)
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
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let args = match parse_args(&q, &headers) {
        Ok(a) => a,
        Err(e) => return http_error(&e),
    };
    let verified = {
        let cfg = &s.app.config;
        let ctx_secret = s.app.secret();
        token::verify(&s.app.lock(), &ctx_secret, &cfg.admin_user_ids, &args.token)
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
    // Frames over the limit are refused by the connection loop itself (close 1009), so the
    // socket's own limits only guard memory.
    let upgrade = upgrade.max_message_size(16 << 20).max_frame_size(16 << 20);
    match checked {
        Err(e) if args.send_response => upgrade.on_upgrade(move |mut ws| async move {
            let _ = ws.send(Message::Text(envelope(Some(&e), None).to_string().into())).await;
        }),
        Err(e) => http_error(&e),
        Ok(()) => upgrade.on_upgrade(move |ws| conn::run(s.app, s.stop, args, ws)),
    }
}
