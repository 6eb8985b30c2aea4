//! The relay itself: dial OpenIM's msg gateway as the caller, upgrade the client, then move
//! frames both ways until either side ends or the session does.
//!
//! Upstream is dialled *before* the client's upgrade is answered, so a failure is reported in the
//! handshake (an SDK gets a retryable errCode, a native client 502), with the same cached OpenIM
//! token the HTTP path uses for that user and platform (refreshed once if OpenIM refuses it). One
//! task per connection owns both sockets: a frame is read, policed and written before the next is
//! read, so a slow side slows its peer (backpressure both ways) and nothing queues unbounded. The
//! relay pings OpenIM every `ws.upstream_ping_secs` (OpenIM's read deadline is 30 s), answers the
//! SDK's text heartbeats itself, and disconnects a client silent for `ws.client_idle_timeout_secs`.
//! An upstream loss closes the client with 1011; OpenIM kicking the relay's login (2002: a newer
//! OpenIM token of that user and platform logged in) closes it with 1012, so the client
//! reconnects rather than logs out, since the imgate session still stands; a revoked or ended
//! session closes it with 4401, after OpenIM's 1506 (revoked) or 1501 (expired) text frame for
//! SDK clients.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::{SinkExt, StreamExt};
use openim_wire::MAX_FRAME_BYTES;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as UpMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::auth::{envelope_text, refuse_sdk_ws, Upgrade};
use super::policy::{self, Conn, Verdict};
use super::registry::Registration;
use super::Ended;
use crate::audit::AuditEvent;
use crate::auth::{now_ms, Caller};
use crate::error::{ApiError, ErrorCode};
use crate::openim::CallCtx;
use crate::state::AppState;
use crate::telemetry::RequestId;

type Upstream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Close code of a connection whose session ended (revoked, logged out, expired).
pub const CLOSE_SESSION_ENDED: u16 = 4401;

/// Socket buffers: small, so an idle relayed connection costs little (they grow for big frames).
const READ_BUFFER: usize = 4 * 1024;
/// Largest frame OpenIM may send down (a push of many messages).
const MAX_DOWN_FRAME: usize = 16 * 1024 * 1024;

/// `GET /openim/ws` and `GET /v1/ws` after their authentication stage.
pub async fn handler(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    Extension(up): Extension<Upgrade>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some((registration, ended)) = state.ws.register(&caller.session_id) else {
        rid.note_refusal("ws: the relay holds ws.max_connections connections");
        return if up.sdk {
            refuse_sdk_ws(Some(ws), up.msg_resp, 1601, "too many connections").await
        } else {
            ApiError::new(ErrorCode::Overloaded).into_response()
        };
    };
    let upstream = match dial(&state, &caller, &up).await {
        Ok(u) => u,
        Err(why) => {
            tracing::warn!(user = %caller.user_id, error = %why, "ws relay: OpenIM's msg gateway did not accept the relay");
            rid.note_failure(&format!("ws: {why}"));
            return if up.sdk {
                // Not a token code: the SDK retries later.
                refuse_sdk_ws(Some(ws), up.msg_resp, 500, "OpenIM is unavailable").await
            } else {
                ApiError::new(ErrorCode::UpstreamUnavailable).into_response()
            };
        }
    };
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| run(state, rid, caller, up, socket, upstream, registration, ended))
}

/// Dials OpenIM as the caller and reads its handshake result (`isMsgResp=true` upstream).
async fn dial(state: &AppState, caller: &Caller, up: &Upgrade) -> Result<Upstream, String> {
    let timeout = Duration::from_millis(state.config.openim.timeout_ms);
    let ctx = CallCtx::new(&up.operation_id);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_DOWN_FRAME))
        .max_frame_size(Some(MAX_DOWN_FRAME));
    for attempt in 0..2 {
        let token = state
            .openim
            .relay_token(&ctx, &caller.user_id, caller.platform_id)
            .await
            .map_err(|e| format!("no OpenIM token: {}", e.outcome()))?;
        let mut url = reqwest::Url::parse(&state.config.openim.ws_url).map_err(|_| "openim.ws_url".to_owned())?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("sendID", &caller.user_id)
                .append_pair("token", &token)
                .append_pair("platformID", &caller.platform_id.to_string())
                .append_pair("operationID", &up.operation_id)
                .append_pair("isBackground", "false")
                .append_pair("isMsgResp", "true")
                .append_pair("sdkType", if up.codec.encoding == openim_wire::Encoding::Json { "js" } else { "go" });
            if up.codec.gzip {
                q.append_pair("compression", "gzip");
            }
        }
        // No Nagle: a frame goes to OpenIM at once, not after the previous one's ACK.
        let connect = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true);
        // The URL holds the OpenIM token: errors are reported by kind, never with it.
        let (mut stream, _) = match tokio::time::timeout(timeout, connect).await {
            Err(_) => return Err("dial timed out".into()),
            Ok(Err(e)) => return Err(format!("dial failed ({})", error_kind(&e))),
            Ok(Ok(s)) => s,
        };
        let first = match tokio::time::timeout(timeout, stream.next()).await {
            Err(_) => return Err("no handshake answer".into()),
            Ok(first) => first,
        };
        let code = match first {
            Some(Ok(UpMessage::Text(t))) => serde_json::from_str::<serde_json::Value>(&t)
                .ok()
                .and_then(|v| v.get("errCode").and_then(serde_json::Value::as_i64))
                .ok_or_else(|| "handshake answer without errCode".to_owned())?,
            _ => return Err("no handshake answer".into()),
        };
        match code {
            0 => return Ok(stream),
            1501..=1507 if attempt == 0 => {
                tracing::info!(err_code = code, "ws relay: OpenIM refused the cached user token; minting a new one");
                state.openim.drop_relay_token(&caller.user_id, caller.platform_id, &token).await;
            }
            _ => return Err(format!("OpenIM refused the login with errCode {code}")),
        }
    }
    Err("OpenIM refused the login twice".into())
}

fn error_kind(e: &tokio_tungstenite::tungstenite::Error) -> &'static str {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Io(_) => "io",
        E::Http(_) => "http status",
        E::Url(_) => "url",
        E::Tls(_) => "tls",
        E::Protocol(_) => "protocol",
        _ => "other",
    }
}

/// How long a closing socket waits for the client's Close before it is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A kick carries no data, only the envelope: pushes and replies larger than this are not
/// decoded on their way down.
const MAX_KICK_FRAME: usize = 512;

/// Whether a server frame is OpenIM's kick (2002).
fn is_kick(up: &Upgrade, frame: &[u8]) -> bool {
    frame.len() <= MAX_KICK_FRAME
        && up.codec.decode_resp(frame).is_ok_and(|r| r.req_identifier == openim_wire::ident::KICK_ONLINE_MSG)
}

/// Whether a read failed on the frame size limit.
fn is_too_large(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as E;
    matches!(e.into_inner().downcast_ref::<E>(), Some(E::Capacity(_)))
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: reason.into() }))
}

/// Counters of one connection, for its audit record.
#[derive(Default)]
struct Counts {
    up: u64,
    down: u64,
    refused: u64,
}

#[allow(clippy::too_many_arguments)]
async fn run(
    state: AppState,
    rid: RequestId,
    caller: Caller,
    up: Upgrade,
    mut client: WebSocket,
    mut upstream: Upstream,
    registration: Registration,
    mut ended: oneshot::Receiver<Ended>,
) {
    let started = std::time::Instant::now();
    let cfg = &state.config.ws;
    let mut n = Counts::default();
    state.metrics.ws_connections.inc();
    if up.msg_resp && client.send(Message::Text(envelope_text(0, "", "").into())).await.is_err() {
        state.metrics.ws_connections.dec();
        return;
    }
    let idle = Duration::from_secs(cfg.client_idle_timeout_secs);
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let mut ping = tokio::time::interval(Duration::from_secs(cfg.upstream_ping_secs));
    ping.reset();
    let mut liveness = tokio::time::interval(Duration::from_secs(30));
    liveness.reset();
    let session_end = Duration::from_millis(u64::try_from(caller.session_expires_at_ms - now_ms()).unwrap_or(0));
    let session_timer = tokio::time::sleep(session_end);
    tokio::pin!(session_timer);
    let conn = Conn { state: &state, caller: &caller, codec: up.codec, rid: &rid };
    let mut active = false;
    let why: &'static str = loop {
        tokio::select! {
            e = &mut ended => {
                let why = e.unwrap_or(Ended::Revoked);
                end_session(&mut client, &up, why).await;
                break if why == Ended::Shutdown { "gateway shutdown" } else { "session revoked" };
            }
            () = &mut session_timer => {
                end_session(&mut client, &up, Ended::Expired).await;
                break "session expired";
            }
            m = client.recv() => {
                let m = match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        if !is_too_large(e) {
                            break "client gone";
                        }
                        // Over OpenIM's 51 200 bytes: refused before any of it is read on.
                        let _ = client.send(close(1009, "frame larger than 51200 bytes")).await;
                        break "frame too large";
                    }
                    None => break "client gone",
                };
                idle_timer.as_mut().reset(tokio::time::Instant::now() + idle);
                active = true;
                match m {
                    Message::Binary(b) => match policy::police(&conn, &b).await {
                        Verdict::Forward(frame) => {
                            n.up += 1;
                            state.metrics.ws_frames_forwarded.inc();
                            if upstream.send(UpMessage::Binary(frame.into())).await.is_err() {
                                let _ = client.send(close(1011, "OpenIM connection lost")).await;
                                break "upstream gone";
                            }
                        }
                        Verdict::Refuse(resp, why) => {
                            n.refused += 1;
                            state.metrics.ws_frames_refused.inc();
                            record_refusal(&state, &rid, &caller, resp.req_identifier, &why);
                            if client.send(Message::Binary(up.codec.encode_resp(&resp).into())).await.is_err() {
                                break "client gone";
                            }
                        }
                        Verdict::Close(why) => {
                            n.refused += 1;
                            state.metrics.ws_frames_refused.inc();
                            record_refusal(&state, &rid, &caller, 0, why);
                            let _ = client.send(close(1008, why)).await;
                            break why;
                        }
                    },
                    Message::Text(t) => match heartbeat(&t) {
                        Some(Some(pong)) => {
                            if client.send(Message::Text(pong.into())).await.is_err() {
                                break "client gone";
                            }
                        }
                        Some(None) => {}
                        None => {
                            let _ = client.send(close(1008, "text frames are heartbeats only")).await;
                            break "text frame";
                        }
                    },
                    Message::Close(_) => break "client closed",
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            m = upstream.next() => match m {
                Some(Ok(UpMessage::Binary(b))) => {
                    n.down += 1;
                    if is_kick(&up, &b) {
                        // OpenIM kicked the relay's login (a newer OpenIM token of this user and
                        // platform logged in): the imgate session stands, so the client
                        // reconnects (1012) instead of being logged out. Sessions end only by
                        // imgate (1506 + 4401 above).
                        let _ = client.send(close(1012, "reconnect")).await;
                        break "upstream kicked";
                    }
                    if client.send(Message::Binary(b)).await.is_err() {
                        break "client gone";
                    }
                }
                Some(Ok(UpMessage::Close(_))) | Some(Err(_)) | None => {
                    let _ = client.send(close(1011, "OpenIM connection lost")).await;
                    break "upstream gone";
                }
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if upstream.send(UpMessage::Ping(Default::default())).await.is_err() {
                    let _ = client.send(close(1011, "OpenIM connection lost")).await;
                    break "upstream gone";
                }
            }
            () = &mut idle_timer => {
                let _ = client.send(close(1001, "idle")).await;
                break "client idle";
            }
            _ = liveness.tick() => {
                // A session can end without this instance being told (idle timeout, expiry, and
                // later another instance's revocation): look every 30 s.
                let now = now_ms();
                if active && state.store.touch_session(&caller.session_id, now).await.is_ok() {
                    active = false;
                }
                let idle_ms = state.config.auth.session_idle_timeout_secs as i64 * 1000;
                // A store out of reach says nothing about the session: the socket stays until
                // the store answers (revocations made meanwhile arrive as events, or at the next
                // look).
                if let Ok(None) = state.store.live_session(&caller.session_id, now, idle_ms).await {
                    end_session(&mut client, &up, Ended::Expired).await;
                    break "session ended";
                }
            }
        }
    };
    if !matches!(why, "client gone" | "client closed") {
        // The closing handshake (RFC 6455 §7.1.1): after imgate's Close, the client's frames
        // still in flight are read and its Close awaited, briefly. A socket dropped with unread
        // data is reset (RST), and the client would lose the close frame and its code.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(m)) = client.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    drop(registration);
    state.metrics.ws_connections.dec();
    state.metrics.ws_closed.get_or_create(&crate::telemetry::ReasonLabels { reason: why.into() }).inc();
    let _ = upstream.close(None).await;
    let mut detail = serde_json::Map::new();
    detail.insert("frames_up".into(), n.up.into());
    detail.insert("frames_down".into(), n.down.into());
    detail.insert("frames_refused".into(), n.refused.into());
    detail.insert("seconds".into(), started.elapsed().as_secs().into());
    state.audit.record(AuditEvent {
        kind: "ws_closed".into(),
        request_id: Some(rid.as_str().to_owned()),
        user: Some(caller.user_id.clone()),
        route: None,
        method: None,
        operation_ids: Vec::new(),
        outcome: "closed".into(),
        status: None,
        latency_ms: None,
        reason: Some(why.to_owned()),
        detail,
    });
}

/// The end of a session: for SDK clients OpenIM's token error (their SDK fires its kicked /
/// expired event) and OpenIM's kick frame (the SDK stops redialling), then close 4401.
async fn end_session(client: &mut WebSocket, up: &Upgrade, why: Ended) {
    if up.sdk {
        let (code, name) = match why {
            Ended::Revoked => (1506, "TokenKickedError"),
            Ended::Expired => (1501, "TokenExpiredError"),
            Ended::Shutdown => {
                // The session stands, this gateway goes (attacks.md E17): "going away", and the
                // client reconnects, to another instance, with the token it has.
                let _ = client.send(close(1001, "gateway shutting down")).await;
                return;
            }
        };
        let _ = client.send(Message::Text(envelope_text(code, name, "the imgate session ended").into())).await;
        // OpenIM's kick (2002) too: on it the JS SDK resets instead of redialling with a dead token.
        let kick = openim_wire::Resp {
            req_identifier: openim_wire::ident::KICK_ONLINE_MSG,
            operation_id: up.operation_id.clone(),
            ..openim_wire::Resp::default()
        };
        let _ = client.send(Message::Binary(up.codec.encode_resp(&kick).into())).await;
    }
    let code = if why == Ended::Shutdown { 1001 } else { CLOSE_SESSION_ENDED };
    let reason = if why == Ended::Shutdown { "gateway shutting down" } else { "session ended" };
    let _ = client.send(close(code, reason)).await;
}

/// A text frame: `{"type":"ping","body":…}` is answered with a pong carrying the same body
/// (`Some(Some(pong))`), `{"type":"pong"}` is ignored (`Some(None)`), anything else is not a
/// heartbeat (`None`), as in OpenIM (`client_conn.go:140-196`).
fn heartbeat(text: &str) -> Option<Option<String>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    match v.get("type")?.as_str()? {
        "ping" => {
            let body = v.get("body").cloned().unwrap_or(serde_json::Value::Null);
            Some(Some(serde_json::json!({ "type": "pong", "body": body }).to_string()))
        }
        "pong" => Some(None),
        _ => None,
    }
}

/// A refused frame in the audit trail: who, which identifier, why (never the frame's content).
fn record_refusal(state: &AppState, rid: &RequestId, caller: &Caller, req_identifier: i32, why: &str) {
    let mut detail = serde_json::Map::new();
    detail.insert("req_identifier".into(), req_identifier.into());
    state.audit.record(AuditEvent {
        kind: "ws_frame".into(),
        request_id: Some(rid.as_str().to_owned()),
        user: Some(caller.user_id.clone()),
        route: None,
        method: None,
        operation_ids: Vec::new(),
        outcome: "refused".into(),
        status: None,
        latency_ms: None,
        reason: Some(why.to_owned()),
        detail,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_as_openim_answers_them() {
        assert_eq!(heartbeat(r#"{"type":"ping","body":"x"}"#), Some(Some(r#"{"body":"x","type":"pong"}"#.into())));
        assert_eq!(heartbeat(r#"{"type":"pong"}"#), Some(None));
        assert_eq!(heartbeat("hello"), None);
        assert_eq!(heartbeat(r#"{"type":"send"}"#), None);
    }
}
