//! The authentication stages of the two WebSocket doors (route layers, like every other
//! route's), and `POST /v1/ws/ticket`.
//!
//! `GET /openim/ws` answers refusals the way OpenIM's msg gateway does (contract §5.3), so an SDK
//! reacts instead of redialling forever: with `isMsgResp=true` an upgrade, one text frame with the
//! error envelope and the end of the connection; without it a plain HTTP 200 with the envelope.
//! Codes: 1602 bad arguments, 1503 a malformed token, 1505 an unknown, expired or revoked one,
//! 1502 a token of another user or platform than `sendID`/`platformID`, 1601 a full relay.
//! `GET /v1/ws` refuses with imgate's one 401 (a ticket that is missing, unknown, used,
//! expired or of an ended session). Both refuse a browser `Origin` not in `browser.allowed_origins`
//! (403) before reading anything else.

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use openim_wire::Codec;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::args;
use crate::auth::{bearer, now_ms, Caller};
use crate::error::{ApiError, ErrorCode, ForeignEnvelope};
use crate::state::AppState;
use crate::telemetry::RequestId;

/// What the handler needs besides the caller: how to talk to this client.
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub codec: Codec,
    /// An OpenIM SDK (OpenIM-style text frames on refusals and revocation).
    pub sdk: bool,
    /// The SDK asked for the handshake result as a text frame.
    pub msg_resp: bool,
    pub operation_id: String,
}

/// OpenIM's error envelope for a handshake refusal.
pub(super) fn envelope_text(code: i32, msg: &str, detail: &str) -> String {
    json!({ "errCode": code, "errMsg": msg, "errDlt": detail }).to_string()
}

/// OpenIM's name of a handshake error code.
pub(super) fn code_name(code: i32) -> &'static str {
    match code {
        1501 => "TokenExpiredError",
        1502 => "TokenInvalidError",
        1503 => "TokenMalformedError",
        1505 => "TokenUnknownError",
        1506 => "TokenKickedError",
        1601 => "ConnOverMaxNumLimit",
        1602 => "ArgsError",
        _ => "ServerInternalError",
    }
}

/// A refusal of an SDK handshake, in OpenIM's form (see the module docs).
pub(super) async fn refuse_sdk(mut parts: Parts, msg_resp: bool, code: i32, detail: &str) -> Response {
    if let Some(rid) = parts.extensions.get::<RequestId>() {
        rid.note_refusal(&format!("ws: {detail} ({code})"));
    }
    let ws = if msg_resp { WebSocketUpgrade::from_request_parts(&mut parts, &()).await.ok() } else { None };
    refuse_sdk_ws(ws, msg_resp, code, detail).await
}

/// As [`refuse_sdk`], once the upgrade has been extracted (`ws` is `None` for a plain answer).
pub(super) async fn refuse_sdk_ws(ws: Option<WebSocketUpgrade>, msg_resp: bool, code: i32, detail: &str) -> Response {
    let text = envelope_text(code, code_name(code), detail);
    if let (true, Some(ws)) = (msg_resp, ws) {
        return ws.on_upgrade(move |mut socket| async move {
            let _ = socket.send(Message::Text(text.into())).await;
            // OpenIM ends the TCP connection without a close frame (`ws_server.go:473-489`).
        });
    }
    let mut res = Response::new(axum::body::Body::from(text));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    res.extensions_mut().insert(ForeignEnvelope);
    res
}

/// An `Origin` header (browsers always send one) must be allowed; other clients send none.
fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let allowed = &state.config.browser.allowed_origins;
    allowed.iter().any(|a| a == "*") || origin.to_str().is_ok_and(|o| allowed.iter().any(|a| a == o))
}

fn forbidden_origin(parts: &Parts) -> Response {
    if let Some(rid) = parts.extensions.get::<RequestId>() {
        rid.note_refusal("ws: origin not allowed");
    }
    ApiError::new(ErrorCode::Forbidden).with_message("this origin may not open a WebSocket here").into_response()
}

/// Stage "authenticate" of `GET /openim/ws`: OpenIM's handshake arguments with an imgate bearer
/// token; `sendID` and `platformID` must be the session's.
pub async fn sdk(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let query = req.uri().query().unwrap_or("").to_owned();
    let msg_resp = args::wants_msg_resp(&query);
    let (mut parts, body) = req.into_parts();
    if !origin_allowed(&state, &parts.headers) {
        return forbidden_origin(&parts);
    }
    let a = match args::parse_sdk(&query, &parts.headers) {
        Ok(a) => a,
        Err(e) => return refuse_sdk(parts, msg_resp, 1602, &e.0).await,
    };
    let found = match bearer::authenticate(&state, &a.token).await {
        Ok(found) => found,
        // OpenIM's code for a server fault: the SDK retries the connection.
        Err(e) => return refuse_sdk(parts, a.msg_resp, 500, &e.to_string()).await,
    };
    let Some(caller) = found else {
        let code = if a.token.len() == 43 { 1505 } else { 1503 };
        return refuse_sdk(parts, a.msg_resp, code, "token is not valid").await;
    };
    if caller.user_id != a.send_id || caller.platform_id != a.platform_id {
        return refuse_sdk(parts, a.msg_resp, 1502, "sendID and platformID must be the token's").await;
    }
    if let Some(rid) = parts.extensions.get::<RequestId>() {
        rid.note_user(&caller.user_id);
    }
    parts.extensions.insert(Upgrade { codec: a.codec, sdk: true, msg_resp: a.msg_resp, operation_id: a.operation_id });
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

fn ticket_hash(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

/// Stage "authenticate" of `GET /v1/ws?ticket=…`: the ticket is redeemed (once, atomically) and
/// its session must still be live.
pub async fn ticket(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    if !origin_allowed(&state, &parts.headers) {
        return forbidden_origin(&parts);
    }
    let rid = parts.extensions.get::<RequestId>().cloned().unwrap_or_else(RequestId::generate);
    let (ticket, codec) = match args::parse_native(parts.uri.query().unwrap_or("")) {
        Ok(t) => t,
        Err(e) => {
            // No usable ticket: the one indistinguishable 401; the reason goes to the audit record.
            rid.note_refusal(&format!("ws: {}", e.0));
            return ApiError::unauthenticated().into_response();
        }
    };
    let now = now_ms();
    let idle_ms = state.config.auth.session_idle_timeout_secs as i64 * 1000;
    let session = match state.store.take_ticket(&ticket_hash(&ticket), now).await {
        Ok(Some(sid)) => state.store.live_session(&sid, now, idle_ms).await,
        other => other.map(|_| None),
    };
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            rid.note_refusal(&format!("ws: {e}"));
            return ApiError::from(e).into_response();
        }
    };
    let Some(caller) = session.map(Caller::from) else {
        rid.note_refusal("ws: ticket unknown, used, expired or of an ended session");
        return ApiError::unauthenticated().into_response();
    };
    if state.openim.configured_privilege(&caller.user_id).is_some() {
        rid.note_refusal("ws: session of a privileged OpenIM account");
        return ApiError::unauthenticated().into_response();
    }
    rid.note_user(&caller.user_id);
    parts.extensions.insert(Upgrade { codec, sdk: false, msg_resp: false, operation_id: rid.as_str().to_owned() });
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

/// `POST /v1/ws/ticket` (signed): a single-use ticket for `GET /v1/ws`, valid
/// `ws.ticket_lifetime_secs` (≤ 30 s, never beyond the session), stored only as its SHA-256.
/// A session holds at most `ws.max_tickets_per_session` unredeemed tickets (429 beyond).
pub async fn mint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    if state.openim.configured_privilege(&caller.user_id).is_some() {
        return Err(ApiError::unauthenticated().with_detail("session of a privileged OpenIM account"));
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let ticket = B64URL.encode(raw);
    let now = now_ms();
    let lifetime = state.config.ws.ticket_lifetime_secs as i64 * 1000;
    let expires_at = (now + lifetime).min(caller.session_expires_at_ms);
    let max = state.config.ws.max_tickets_per_session;
    if !state.store.put_ticket(ticket_hash(&ticket), &caller.session_id, expires_at, now, max).await? {
        let mut e = ApiError::new(ErrorCode::RateLimited)
            .with_message("this session holds as many unredeemed WebSocket tickets as it may")
            .with_detail(format!("{max} unredeemed tickets"));
        e.retry_after_secs = Some(state.config.ws.ticket_lifetime_secs);
        return Err(e);
    }
    let url = format!("/v1/ws?ticket={ticket}");
    Ok(Json(json!({ "ticket": ticket, "expires_at": expires_at, "url": url })))
}
