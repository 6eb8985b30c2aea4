//! The WS gateway handshake, heartbeats and kicks (contract §5.2-§5.3, §5.8).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

use crate::common::Env;

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

fn query(user: &str, token: &str, platform: i32, extra: &str) -> String {
    format!("/?sendID={user}&token={token}&platformID={platform}&operationID=op1&isBackground=false{extra}")
}

async fn connect(env: &Env, q: &str) -> Ws {
    let (ws, resp) = connect_async(format!("{}{}", env.emu.ws_url(), q)).await.expect("ws connect");
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

/// Next data frame, or None once the connection is closed.
async fn next(ws: &mut Ws) -> Option<Message> {
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(m)) => return Some(m),
            }
        }
    });
    read.await.expect("frame or close within 5s")
}

fn text_json(m: Option<Message>) -> Value {
    let m = m.expect("a frame");
    serde_json::from_str(m.to_text().expect("text frame")).expect("json")
}

/// Plain HTTP GET on the WS port (no upgrade): the error envelope.
async fn http_get(env: &Env, q: &str) -> (u16, Value) {
    let r = env.http.get(format!("http://{}{}", env.emu.ws_addr(), q)).send().await.expect("get");
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.unwrap_or_default()).unwrap_or(Value::Null))
}

#[tokio::test]
async fn handshake_ok_and_text_heartbeat() {
    let env = Env::new().await;
    env.register(&["u1"]).await;
    let t = env.user_token("u1", 5).await;
    let mut ws = connect(&env, &query("u1", &t, 5, "&isMsgResp=true")).await;
    assert_eq!(text_json(next(&mut ws).await), json!({"errCode":0,"errMsg":"","errDlt":""}));
    ws.send(Message::Text(json!({"type":"ping","body":"hb-1"}).to_string().into())).await.unwrap();
    assert_eq!(text_json(next(&mut ws).await), json!({"type":"pong","body":"hb-1"}));
    // Any other text closes the connection.
    ws.send(Message::Text("hello".into())).await.unwrap();
    assert!(next(&mut ws).await.is_none());
}

#[tokio::test]
async fn handshake_errors_are_plain_http_json() {
    let env = Env::new().await;
    env.register(&["u1", "u2"]).await;
    let t = env.user_token("u1", 1).await;
    let (s, b) = http_get(&env, "/?sendID=u1&platformID=1&operationID=o&isBackground=false").await;
    assert_eq!((s, b["errCode"].as_i64()), (200, Some(1602)));
    let (_, b) = http_get(&env, &format!("/?sendID=u1&token={t}&platformID=1&operationID=o")).await;
    assert_eq!(b["errCode"], 500, "missing isBackground");
    let (_, b) = http_get(&env, &query("u1", &t, 12, "")).await;
    assert_eq!(b["errCode"], 1602);
    let (_, b) = http_get(&env, &query("u1", "garbage", 1, "")).await;
    assert_eq!(b["errCode"], 1503);
    let (_, b) = http_get(&env, &query("u2", &t, 1, "")).await;
    assert_eq!(b["errCode"], 1502);
    let (_, b) = http_get(&env, &query("u1", &t, 2, "")).await;
    assert_eq!(b["errCode"], 1502, "platform mismatch");
    // A valid handshake that is not an upgrade is a 400.
    let r = env.http.get(format!("http://{}{}", env.emu.ws_addr(), query("u1", &t, 1, ""))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Via connect_async the failure is a non-101 answer.
    let err = connect_async(format!("{}{}", env.emu.ws_url(), query("u2", &t, 1, ""))).await;
    assert!(err.is_err());
}

#[tokio::test]
async fn handshake_error_with_is_msg_resp_upgrades_then_closes() {
    let env = Env::new().await;
    env.register(&["u1", "u2"]).await;
    let t = env.user_token("u1", 1).await;
    let mut ws = connect(&env, &query("u2", &t, 1, "&isMsgResp=true")).await;
    let v = text_json(next(&mut ws).await);
    assert_eq!(v["errCode"], 1502);
    assert_eq!(v["errMsg"], "TokenInvalidError");
    assert!(next(&mut ws).await.is_none());
}

#[tokio::test]
async fn force_logout_closes_connections_of_that_platform() {
    let env = Env::new().await;
    env.register(&["u1"]).await;
    let t1 = env.user_token("u1", 1).await;
    let t2 = env.user_token("u1", 2).await;
    let mut ios = connect(&env, &query("u1", &t1, 1, "&sdkType=js")).await;
    let mut android = connect(&env, &query("u1", &t2, 2, "")).await;
    env.ok("/auth/force_logout", &env.admin, json!({"userID":"u1","platformID":1})).await;
    let kick = next(&mut ios).await.expect("kick frame for sdkType=js");
    let v: Value = serde_json::from_slice(&kick.into_data()).unwrap();
    assert_eq!(v["reqIdentifier"], 2002);
    assert!(next(&mut ios).await.is_none());
    android.send(Message::Text(json!({"type":"ping","body":1}).to_string().into())).await.unwrap();
    assert_eq!(text_json(next(&mut android).await)["type"], "pong");
}

#[tokio::test]
async fn binary_frames_close_and_new_login_kicks_old_connection() {
    let env = Env::new().await;
    env.register(&["u1"]).await;
    let t = env.user_token("u1", 3).await;
    let mut ws = connect(&env, &query("u1", &t, 3, "")).await;
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert!(next(&mut ws).await.is_none(), "an undecodable frame closes the connection");
    let mut old = connect(&env, &query("u1", &t, 3, "")).await;
    let t2 = env.user_token("u1", 3).await;
    let _new = connect(&env, &query("u1", &t2, 3, "")).await;
    // The kick is a 2002 frame in the connection's envelope (gob by default), then the close.
    let kick = next(&mut old).await.expect("a 2002 frame").into_data();
    let gob = openim_wire::Codec { encoding: openim_wire::Encoding::Gob, gzip: false };
    assert_eq!(gob.decode_resp(&kick).unwrap().req_identifier, 2002);
    assert!(next(&mut old).await.is_none(), "older connection with another token is kicked");
}
