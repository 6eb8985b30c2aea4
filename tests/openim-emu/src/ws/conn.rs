//! One live connection, top to bottom: multi-login kick → register → (isMsgResp frame) → the
//! loop (read deadline, frame limit, heartbeats, requests, queued pushes, kicks) → unregister.
//! Every fatal condition of OpenIM ends the loop, which drops the TCP connection without a
//! close frame, as OpenIM's `conn.Close()` does.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use openim_wire::{ident, Codec, Encoding, Resp, MAX_FRAME_BYTES};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use super::handlers::{self, Conn};
use super::registry::{Control, Handle};
use super::Args;
use crate::server::App;
use crate::token;

/// Server pings for Web connections (`pingPeriod`, `S internal/msggateway/constant.go:60-68`).
const PING_PERIOD: Duration = Duration::from_secs(27);
/// Platform 5, the only one the server pings.
const WEB: i32 = 5;
/// `websocket.CloseMessageTooBig`.
const CLOSE_TOO_BIG: u16 = 1009;

/// Serve one upgraded connection until it ends.
pub(super) async fn run(app: Arc<App>, stop: watch::Receiver<bool>, args: Args, mut ws: WebSocket) {
    app.ws.kick(&args.user_id, args.platform_id, Some(&args.token));
    token::kick_all(&mut app.lock(), &args.user_id, args.platform_id, Some(&args.token));
    let handle = app.ws.register(&args.user_id, args.platform_id, &args.token);
    let id = handle.id;
    let codec = Codec {
        encoding: if args.sdk_type == "js" { Encoding::Json } else { Encoding::Gob },
        gzip: args.compression == "gzip",
    };
    let conn = Conn { id, user_id: args.user_id, platform_id: args.platform_id };
    let greeted = !args.send_response || {
        let ok = json!({"errCode": 0, "errMsg": "", "errDlt": ""}).to_string();
        ws.send(Message::Text(ok.into())).await.is_ok()
    };
    if greeted {
        serve(&app, stop, &conn, codec, handle, &mut ws).await;
    }
    app.ws.remove(id);
}

/// What to do after a frame.
enum Next {
    Continue,
    Close,
}

async fn serve(app: &App, mut stop: watch::Receiver<bool>, conn: &Conn, codec: Codec, h: Handle, ws: &mut WebSocket) {
    let Handle { mut control, mut out, .. } = h;
    let timeout = app.config.ws_read_timeout;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ping = tokio::time::interval_at(Instant::now() + PING_PERIOD, PING_PERIOD);
    // A restart (`Emulator::restart`) drops the connection like the crash of the process would.
    let mut restarts = app.restarts.subscribe();
    loop {
        // Biased: a kick or a queued push goes out before the next frame is read, so a push
        // queued before a request is always written before that request's reply.
        let next = tokio::select! {
            biased;
            _ = stop.changed() => Next::Close,
            _ = restarts.changed() => Next::Close,
            ctl = control.recv() => match ctl {
                Some(Control::Kick) => {
                    let kick = Resp { req_identifier: ident::KICK_ONLINE_MSG, ..Resp::default() };
                    let _ = ws.send(Message::Binary(codec.encode_resp(&kick).into())).await;
                    Next::Close
                }
                Some(Control::Close) | None => Next::Close,
            },
            Some(push) = out.recv() => send(ws, codec, &push).await,
            frame = ws.recv() => {
                let rearm = matches!(frame, Some(Ok(Message::Binary(_) | Message::Text(_) | Message::Ping(_))));
                if rearm {
                    deadline.as_mut().reset(Instant::now() + timeout);
                }
                on_frame(app, conn, codec, frame, ws).await
            }
            _ = &mut deadline => Next::Close,
            _ = ping.tick(), if conn.platform_id == WEB => {
                if ws.send(Message::Ping(Vec::new().into())).await.is_ok() { Next::Continue } else { Next::Close }
            }
        };
        if let Next::Close = next {
            return;
        }
    }
}

async fn send(ws: &mut WebSocket, codec: Codec, resp: &Resp) -> Next {
    match ws.send(Message::Binary(codec.encode_resp(resp).into())).await {
        Ok(()) => Next::Continue,
        Err(_) => Next::Close,
    }
}

async fn on_frame(
    app: &App,
    conn: &Conn,
    codec: Codec,
    frame: Option<Result<Message, axum::Error>>,
    ws: &mut WebSocket,
) -> Next {
    let size = match &frame {
        Some(Ok(Message::Binary(b))) => b.len(),
        Some(Ok(Message::Text(t))) => t.len(),
        _ => 0,
    };
    if size > MAX_FRAME_BYTES {
        // gorilla's read limit: a close frame 1009, then the connection ends.
        let close = CloseFrame { code: CLOSE_TOO_BIG, reason: "".into() };
        let _ = ws.send(Message::Close(Some(close))).await;
        return Next::Close;
    }
    match frame {
        Some(Ok(Message::Binary(b))) => on_request(app, conn, codec, &b, ws).await,
        Some(Ok(Message::Text(t))) => answer_text(ws, t.as_str()).await,
        // Pings are answered by the socket itself; pongs are ignored.
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Next::Continue,
        Some(Ok(Message::Close(_)) | Err(_)) | None => Next::Close,
    }
}

/// `handleMessage` + `replyMessage` (`S internal/msggateway/client.go:147-261`).
async fn on_request(app: &App, conn: &Conn, codec: Codec, frame: &[u8], ws: &mut WebSocket) -> Next {
    let Ok(req) = codec.decode_req(frame) else { return Next::Close };
    if req.send_id != conn.user_id {
        return Next::Close;
    }
    let Some(outcome) = handlers::handle(app, conn, &req) else { return Next::Close };
    let (err_code, err_msg, data) = match outcome {
        Ok(data) => (0, String::new(), data),
        Err(e) => (i32::try_from(e.code()).unwrap_or(500), e.msg(), Vec::new()),
    };
    let logout = req.req_identifier == ident::LOGOUT_MSG;
    let reply = Resp {
        req_identifier: req.req_identifier,
        msg_incr: req.msg_incr,
        operation_id: req.operation_id,
        err_code,
        err_msg,
        data,
    };
    match send(ws, codec, &reply).await {
        // The server closes after answering a logout.
        Next::Continue if !logout => Next::Continue,
        _ => Next::Close,
    }
}

/// A text frame: only JSON heartbeats are allowed (`client_conn.go:171-196`).
async fn answer_text(ws: &mut WebSocket, text: &str) -> Next {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Next::Close;
    };
    match v.get("type").and_then(Value::as_str) {
        Some("ping") => {
            let body = v.get("body").cloned().unwrap_or(Value::Null);
            let pong = json!({"type": "pong", "body": body}).to_string();
            match ws.send(Message::Text(pong.into())).await {
                Ok(()) => Next::Continue,
                Err(_) => Next::Close,
            }
        }
        Some("pong") => Next::Continue,
        _ => Next::Close,
    }
}
