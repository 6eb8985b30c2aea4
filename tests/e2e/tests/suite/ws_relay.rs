//! The WebSocket relay (issue 13; client-auth §8, attacks B4 W1-W9): OpenIM SDK handshakes with a
//! bearer token and native ones with a single-use ticket, refusals as OpenIM's msg gateway gives
//! them, frame policy in both envelopes, revocation, upstream loss and OpenIM's frame limit, all
//! through a real WebSocket client against the real gateway and the emulator's msg gateway.

use std::time::{Duration, Instant};

use e2e::plugins::example;
use e2e::raw::{ws_closed_with, Ws};
use e2e::*;
use futures_util::{SinkExt, StreamExt};
use imgate_client::Session;
use openim_wire::{ident, pb, Codec, Encoding, Req, Resp};
use prost::Message as _;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

const JSON: Codec = Codec { encoding: Encoding::Json, gzip: false };
const GOB: Codec = Codec { encoding: Encoding::Gob, gzip: false };

async fn bearer(h: &Harness, s: &Session) -> String {
    let (status, tok) = into_json(h.client().call(s, "POST", "/v1/auth/token", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{tok}");
    tok["token"].as_str().expect("token").to_owned()
}

async fn ticket(h: &Harness, s: &Session) -> (u16, Value) {
    into_json(h.client().call(s, "POST", "/v1/ws/ticket", None).await.expect("answer")).await
}

fn ws_base(h: &Harness) -> String {
    h.gateway_url.replace("http://", "ws://")
}

/// The SDK's handshake URL (`sdkType`, `isMsgResp=true`).
fn sdk_url(h: &Harness, user: &str, token: &str, platform: i32, sdk_type: &str) -> String {
    format!(
        "{}/openim/ws?sendID={user}&token={token}&platformID={platform}&operationID=op-1&isBackground=false\
         &isMsgResp=true&sdkType={sdk_type}",
        ws_base(h)
    )
}

async fn dial(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.expect("upgrade").0
}

/// The next data frame (text or binary), within 5 s.
async fn next(ws: &mut Ws) -> Option<Message> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a frame within 5 s") {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            _ => return None,
        }
    }
}

async fn text(ws: &mut Ws) -> Value {
    match next(ws).await {
        Some(Message::Text(t)) => serde_json::from_str(&t).expect("json text frame"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// An SDK connection of `user` (platform 1), past the `isMsgResp` handshake frame.
async fn sdk(h: &Harness, user: &str, s: &Session, sdk_type: &str) -> Ws {
    let tok = bearer(h, s).await;
    let mut ws = dial(&sdk_url(h, user, &tok, 1, sdk_type)).await;
    assert_eq!(text(&mut ws).await["errCode"], 0, "handshake accepted");
    ws
}

fn req(user: &str, id: i32, incr: &str, data: Vec<u8>) -> Req {
    Req {
        req_identifier: id,
        send_id: user.into(),
        operation_id: format!("op-{incr}"),
        msg_incr: incr.into(),
        data,
        ..Req::default()
    }
}

async fn send(ws: &mut Ws, codec: Codec, r: &Req) {
    ws.send(Message::Binary(codec.encode_req(r).into())).await.expect("send");
}

/// The reply to `incr`, skipping pushes.
async fn reply(ws: &mut Ws, codec: Codec, incr: &str) -> Resp {
    loop {
        match next(ws).await {
            Some(Message::Binary(b)) => {
                let r = codec.decode_resp(&b).expect("a Resp");
                if r.msg_incr == incr {
                    return r;
                }
            }
            other => panic!("expected the reply to {incr}, got {other:?}"),
        }
    }
}

/// The next 2001 push on `ws`, skipping replies.
async fn push(ws: &mut Ws, codec: Codec) -> pb::sdkws::PushMessages {
    loop {
        match next(ws).await {
            Some(Message::Binary(b)) => {
                let r = codec.decode_resp(&b).expect("a Resp");
                if r.req_identifier == ident::PUSH_MSG {
                    return pb::sdkws::PushMessages::decode(&r.data[..]).expect("PushMessages");
                }
            }
            other => panic!("expected a push, got {other:?}"),
        }
    }
}

fn text_msg(from: &str, to: &str, text: &str) -> Vec<u8> {
    pb::sdkws::MsgData {
        send_id: from.into(),
        recv_id: to.into(),
        client_msg_id: format!("c-{}", rand::random::<u32>()),
        session_type: 1,
        content_type: 101,
        content: json!({ "content": text }).to_string().into_bytes(),
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test]
async fn sdk_handshake_refusals_are_openims() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let tok = bearer(&h, &alice).await;
    // Without isMsgResp: no upgrade, a plain 200 with OpenIM's envelope.
    let plain = sdk_url(&h, "alice", "x", 1, "js").replace("ws://", "http://").replace("&isMsgResp=true", "");
    let (status, body) = into_json(h.http.get(&plain).send().await.expect("answer")).await;
    assert_eq!((status, body["errCode"].as_i64()), (200, Some(1503)), "{body}");
    // With isMsgResp: upgrade, one text frame, end.
    for (url, code) in [
        (sdk_url(&h, "alice", "not-a-token", 1, "js"), 1503),
        (sdk_url(&h, "alice", &"A".repeat(43), 1, "js"), 1505),
        (sdk_url(&h, "bob", &tok, 1, "js"), 1502),
        (sdk_url(&h, "alice", &tok, 2, "js"), 1502),
        (sdk_url(&h, "alice", &tok, 1, "rust"), 1602),
        (sdk_url(&h, "alice", &tok, 10, "js"), 1602),
    ] {
        let mut ws = dial(&url).await;
        assert_eq!(text(&mut ws).await["errCode"], code, "{url}");
        assert!(next(&mut ws).await.is_none(), "the connection ends after the refusal");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn browser_origins_must_be_allowed() {
    let h = Harness::start_with(Options {
        extra_toml: "[browser]\nallowed_origins = [\"https://app.example\"]\n".into(),
        ..Options::default()
    })
    .await;
    let (_, alice) = h.session("alice").await;
    let tok = bearer(&h, &alice).await;
    let with_origin = |origin: &str| {
        let mut r = sdk_url(&h, "alice", &tok, 1, "js").into_client_request().expect("request");
        r.headers_mut().insert("Origin", origin.parse().expect("header"));
        r
    };
    let refused = tokio_tungstenite::connect_async(with_origin("https://evil.example")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 403),
        other => panic!("expected 403, got {:?}", other.map(|r| r.1.status())),
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(with_origin("https://app.example")).await.expect("allowed");
    assert_eq!(text(&mut ws).await["errCode"], 0);
    h.shutdown().await;
}

#[tokio::test]
async fn tickets_are_single_use_short_lived_bounded_and_never_logged() {
    let h = Harness::start_with(Options {
        extra_toml: "[ws]\nticket_lifetime_secs = 1\nmax_tickets_per_session = 3\n".into(),
        ..Options::default()
    })
    .await;
    let (_, alice) = h.session("alice").await;
    let (status, t) = ticket(&h, &alice).await;
    assert_eq!(status, 200, "{t}");
    let url = format!("{}{}", ws_base(&h), t["url"].as_str().expect("url"));
    let mut ws = dial(&url).await;
    // W1: the second upgrade with the same ticket is refused.
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|r| r.1.status())),
    }
    // The relayed connection works (a 1001 for the caller).
    let data = pb::sdkws::GetMaxSeqReq { user_id: "alice".into() }.encode_to_vec();
    send(&mut ws, JSON, &req("alice", ident::GET_NEWEST_SEQ, "1", data)).await;
    assert_eq!(reply(&mut ws, JSON, "1").await.err_code, 0);
    // W2: a ticket used after its lifetime is refused.
    let (_, late) = ticket(&h, &alice).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await; // the lifetime under test
    let late_url = format!("{}{}", ws_base(&h), late["url"].as_str().expect("url"));
    assert!(tokio_tungstenite::connect_async(late_url.as_str()).await.is_err(), "expired ticket");
    // W9: a session holds a bounded number of unredeemed tickets.
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(ticket(&h, &alice).await.0);
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
    // W7: tickets appear in no audit record.
    let audit = std::fs::read_to_string(h.audit_file().await).expect("audit");
    let secret = t["ticket"].as_str().expect("ticket");
    assert!(!audit.contains(secret), "the ticket is not in the audit trail");
    assert!(audit.contains("/v1/ws"), "the upgrade is audited by its route");
    h.shutdown().await;
}

#[tokio::test]
async fn frames_must_be_the_callers_in_both_envelopes() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, _bob) = h.session("bob").await;
    let (_, _carol) = h.session("carol").await;
    for (sdk_type, codec) in [("js", JSON), ("go", GOB)] {
        let mut ws = sdk(&h, "alice", &alice, sdk_type).await;
        // 1005 for bob and carol's conversation: OpenIM checks nothing (contract §10.5); imgate does.
        let foreign = pb::msg::GetSeqMessageReq {
            user_id: "alice".into(),
            conversations: vec![pb::msg::ConversationSeqs { conversation_id: "si_bob_carol".into(), seqs: vec![1] }],
            order: 0,
        };
        send(&mut ws, codec, &req("alice", ident::PULL_MSG, "p1", foreign.encode_to_vec())).await;
        let r = reply(&mut ws, codec, "p1").await;
        assert_eq!(r.err_code, 1002, "{sdk_type}: {}", r.err_msg);
        // 1007 ids are regular expressions to OpenIM (`^<id>:`): only well-formed ids pass.
        for cid in [".*", "si_.*_alice", "sg_.*"] {
            let last = pb::msg::GetLastMessageReq { user_id: "alice".into(), conversation_ids: vec![cid.into()] };
            send(&mut ws, codec, &req("alice", ident::PULL_CONV_LAST_MESSAGE, "px", last.encode_to_vec())).await;
            assert_eq!(reply(&mut ws, codec, "px").await.err_code, 1002, "{sdk_type}: {cid}");
        }
        // Identity fields naming someone else are refused; empty ones are the caller.
        let other = pb::sdkws::GetMaxSeqReq { user_id: "bob".into() }.encode_to_vec();
        send(&mut ws, codec, &req("alice", ident::GET_NEWEST_SEQ, "p2", other)).await;
        assert_eq!(reply(&mut ws, codec, "p2").await.err_code, 1002);
        let mine = pb::sdkws::GetMaxSeqReq { user_id: String::new() }.encode_to_vec();
        send(&mut ws, codec, &req("alice", ident::GET_NEWEST_SEQ, "p3", mine)).await;
        assert_eq!(reply(&mut ws, codec, "p3").await.err_code, 0);
        // 1004 and server-to-client identifiers are refused, not forwarded.
        send(&mut ws, codec, &req("alice", ident::SEND_SIGNAL_MSG, "p4", Vec::new())).await;
        assert_eq!(reply(&mut ws, codec, "p4").await.err_code, 1002);
        send(&mut ws, codec, &req("alice", ident::PUSH_MSG, "p5", Vec::new())).await;
        assert_eq!(reply(&mut ws, codec, "p5").await.err_code, 1002);
        if sdk_type == "js" {
            assert_eq!(h.metric("imgate_ws_connections").await, Some(1.0), "the open relayed connection");
        }
        assert!(h.metric("imgate_ws_frames_refused_total").await.unwrap_or(0.0) >= 5.0, "refusals are counted");
        // A frame with another sendID ends the connection, as in OpenIM (W3).
        let data = pb::sdkws::GetMaxSeqReq { user_id: "bob".into() }.encode_to_vec();
        send(&mut ws, codec, &req("bob", ident::GET_NEWEST_SEQ, "p6", data)).await;
        assert_eq!(ws_closed_with(&mut ws).await, Some(CloseCode::Policy), "{sdk_type}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn the_weakness_is_real_the_emulator_answers_a_foreign_pull_directly() {
    let h = Harness::start().await;
    let (_, _alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    let (_, _carol) = h.session("carol").await;
    let body = serde_json::to_vec(&json!({"text": "for carol only"})).expect("json");
    let res = h.client().call(&bob, "POST", "/v1/messages/user/carol", Some(&body)).await.expect("answer");
    assert_eq!(res.status(), 200);
    let direct =
        h.openim_direct("/auth/get_admin_token", None, &json!({"secret": "openIM123", "userID": "imAdmin"})).await;
    let admin = direct["data"]["token"].as_str().expect("admin token").to_owned();
    let minted =
        h.openim_direct("/auth/get_user_token", Some(&admin), &json!({"userID": "alice", "platformID": 1})).await;
    let token = minted["data"]["token"].as_str().expect("user token");
    let url = format!(
        "{}/?sendID=alice&token={token}&platformID=1&operationID=o&isBackground=false&isMsgResp=true&sdkType=js",
        h.emu.ws_url().trim_end_matches('/')
    );
    let mut ws = dial(&url).await;
    assert_eq!(text(&mut ws).await["errCode"], 0);
    let foreign = pb::msg::GetSeqMessageReq {
        user_id: "alice".into(),
        conversations: vec![pb::msg::ConversationSeqs { conversation_id: "si_bob_carol".into(), seqs: vec![1] }],
        order: 0,
    };
    send(&mut ws, JSON, &req("alice", ident::PULL_MSG, "d1", foreign.encode_to_vec())).await;
    assert_eq!(reply(&mut ws, JSON, "d1").await.err_code, 0, "OpenIM serves someone else's conversation");
    // 1007 reads its ids as a regular expression: `.*` yields bob's message to carol.
    let last = pb::msg::GetLastMessageReq { user_id: "alice".into(), conversation_ids: vec![".*".into()] };
    send(&mut ws, JSON, &req("alice", ident::PULL_CONV_LAST_MESSAGE, "d2", last.encode_to_vec())).await;
    let r = reply(&mut ws, JSON, "d2").await;
    let got = pb::msg::GetLastMessageResp::decode(&r.data[..]).expect("GetLastMessageResp");
    let m = got.msgs.get(".*").expect("a message for `.*`");
    assert_eq!((m.send_id.as_str(), m.recv_id.as_str()), ("bob", "carol"));
    h.shutdown().await;
}

#[tokio::test]
async fn sends_are_bound_policed_by_the_rest_chain_and_pushed() {
    let extra = format!(
        "[[plugin]]\nname = \"content-filter\"\npath = \"{}\"\ncapabilities = [\"config\"]\n\
         [[route_plugins]]\nroutes = [\"send_text_to_user\"]\n\
         plugins = [{{ plugin = \"content-filter\", config = {{ words = [\"darn\"], action = \"mask\" }} }}]\n",
        example("content-filter").display()
    );
    let h = Harness::start_with(Options { extra_toml: extra, ..Options::default() }).await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    let mut a = sdk(&h, "alice", &alice, "js").await;
    let mut b = sdk(&h, "bob", &bob, "go").await;
    send(&mut a, JSON, &req("alice", ident::SEND_MSG, "s1", text_msg("alice", "bob", "well darn it"))).await;
    let r = reply(&mut a, JSON, "s1").await;
    assert_eq!(r.err_code, 0, "{}", r.err_msg);
    let pushed = push(&mut b, GOB).await;
    let msgs: Vec<_> = pushed.msgs.values().flat_map(|p| p.msgs.iter()).collect();
    let m = msgs.first().expect("bob receives the message");
    let content: Value = serde_json::from_slice(&m.content).expect("json content");
    assert_eq!(content["content"], "well **** it", "the content filter masked it on the WebSocket path too");
    assert_eq!((m.send_id.as_str(), m.sender_platform_id), ("alice", 1));
    // Sends as a notification type or an OA notification are refused (contract §10.8).
    let mut forged = pb::sdkws::MsgData::decode(&text_msg("alice", "bob", "x")[..]).expect("msg");
    forged.content_type = 1400;
    forged.session_type = 4;
    send(&mut a, JSON, &req("alice", ident::SEND_MSG, "s2", forged.encode_to_vec())).await;
    assert_eq!(reply(&mut a, JSON, "s2").await.err_code, 1002);
    h.shutdown().await;
}

#[tokio::test]
async fn revocation_closes_relayed_sockets_within_a_second() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, alice2) = h.session("alice2").await;
    let mut sdk_ws = sdk(&h, "alice", &alice, "js").await;
    let (_, t) = ticket(&h, &alice2).await;
    let mut native = dial(&format!("{}{}", ws_base(&h), t["url"].as_str().expect("url"))).await;
    let admin = h.admin_jwt("sessions:revoke");
    // W4: an admin revokes the session; the SDK gets OpenIM's 1506 first, then close 4401.
    let started = Instant::now();
    let res = h.http.delete(h.url(&format!("/v1/admin/sessions/{}", alice.session_id))).bearer_auth(&admin).send();
    assert_eq!(res.await.expect("answer").status(), 204);
    assert_eq!(text(&mut sdk_ws).await["errCode"], 1506);
    match next(&mut sdk_ws).await {
        Some(Message::Binary(b)) => {
            assert_eq!(JSON.decode_resp(&b).expect("Resp").req_identifier, ident::KICK_ONLINE_MSG)
        }
        other => panic!("expected OpenIM's kick frame, got {other:?}"),
    }
    assert_eq!(ws_closed_with(&mut sdk_ws).await, Some(CloseCode::from(4401)));
    assert!(started.elapsed() < Duration::from_secs(1), "closed in {:?}", started.elapsed());
    // W5: logout ends the native socket the same way.
    let started = Instant::now();
    let res = h.client().call(&alice2, "POST", "/v1/auth/logout", None).await.expect("answer");
    assert_eq!(res.status(), 204);
    assert_eq!(ws_closed_with(&mut native).await, Some(CloseCode::from(4401)));
    assert!(started.elapsed() < Duration::from_secs(1));
    h.shutdown().await;
}

#[tokio::test]
async fn upstream_loss_and_oversized_frames_close_cleanly() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let mut ws = sdk(&h, "alice", &alice, "js").await;
    // OpenIM kicks the relay's login (here a force_logout straight at OpenIM): the client is told
    // to reconnect (1012), not handed OpenIM's 2002, which would log the SDK out of a live session.
    let direct =
        h.openim_direct("/auth/get_admin_token", None, &json!({"secret": "openIM123", "userID": "imAdmin"})).await;
    let admin = direct["data"]["token"].as_str().expect("admin token").to_owned();
    let out = h.openim_direct("/auth/force_logout", Some(&admin), &json!({"userID": "alice", "platformID": 1})).await;
    assert_eq!(out["errCode"], 0, "{out}");
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("closed within 5 s") {
            Some(Ok(Message::Close(f))) => {
                assert_eq!(f.map(|f| f.code), Some(CloseCode::Restart));
                break;
            }
            Some(Ok(Message::Binary(b))) => {
                assert_ne!(JSON.decode_resp(&b).expect("Resp").req_identifier, ident::KICK_ONLINE_MSG, "no 2002 passes")
            }
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
    // A frame over OpenIM's 51 200 bytes ends the connection (1009), nothing is forwarded.
    let mut ws = sdk(&h, "alice", &alice, "js").await;
    let big = req("alice", ident::GET_NEWEST_SEQ, "big", vec![0u8; 60_000]);
    let _ = ws.send(Message::Binary(JSON.encode_req(&big).into())).await;
    assert_eq!(ws_closed_with(&mut ws).await, Some(CloseCode::Size));
    h.shutdown().await;
}

#[tokio::test]
async fn direct_mode_is_off_by_default_and_bounded_when_on() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (status, _) =
        into_json(h.client().call(&alice, "POST", "/v1/ws/credentials", None).await.expect("answer")).await;
    assert_eq!(status, 403, "no OpenIM token leaves imgate unless direct mode is on");
    h.shutdown().await;

    let h = Harness::start_with(Options {
        extra_toml: "[ws]\ndirect_mode = true\ndirect_ws_url = \"ws://msg.example:10001\"\n".into(),
        ..Options::default()
    })
    .await;
    let (_, alice) = h.session("alice").await;
    let (status, creds) =
        into_json(h.client().call(&alice, "POST", "/v1/ws/credentials", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{creds}");
    assert_eq!(creds["ws_url"], "ws://msg.example:10001");
    let token = creds["openim_token"].as_str().expect("token").to_owned();
    let url = |t: &str| {
        format!(
            "{}/?sendID=alice&token={t}&platformID=1&operationID=o&isBackground=false&isMsgResp=true&sdkType=js",
            h.emu.ws_url().trim_end_matches('/')
        )
    };
    let mut direct = dial(&url(&token)).await;
    assert_eq!(text(&mut direct).await["errCode"], 0, "the granted token opens OpenIM's msg gateway");
    // imgate's own calls for alice use the same token: nothing kicked the client.
    let tok = bearer(&h, &alice).await;
    let res = h
        .http
        .post(h.url("/openim/user/get_users_info"))
        .header("operationID", "op")
        .header("token", &tok)
        .body(r#"{"userIDs":["alice"]}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(into_json(res).await.1["errCode"], 0);
    // The session ends: the grant ends with OpenIM's force_logout, which kicks the connection.
    let res = h.client().call(&alice, "POST", "/v1/auth/logout", None).await.expect("answer");
    assert_eq!(res.status(), 204);
    loop {
        match next(&mut direct).await {
            Some(Message::Binary(b)) => {
                if JSON.decode_resp(&b).expect("Resp").req_identifier == ident::KICK_ONLINE_MSG {
                    break;
                }
            }
            Some(Message::Close(_)) | None => break,
            Some(_) => {}
        }
    }
    let mut again = dial(&url(&token)).await;
    let code = text(&mut again).await["errCode"].as_i64().expect("code");
    assert!((1501..=1507).contains(&code), "the granted token is dead: {code}");
    let audit = std::fs::read_to_string(h.audit_file().await).expect("audit");
    assert!(audit.contains("ws_direct_grant") && !audit.contains(&token), "grants are audited, tokens are not");
    h.shutdown().await;
}

#[tokio::test]
async fn gzip_frames_are_relayed_and_policed() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let tok = bearer(&h, &alice).await;
    let gz = Codec { encoding: Encoding::Json, gzip: true };
    let mut ws = dial(&format!("{}&compression=gzip", sdk_url(&h, "alice", &tok, 1, "js"))).await;
    assert_eq!(text(&mut ws).await["errCode"], 0);
    let mine = pb::sdkws::GetMaxSeqReq { user_id: String::new() }.encode_to_vec();
    send(&mut ws, gz, &req("alice", ident::GET_NEWEST_SEQ, "g1", mine)).await;
    assert_eq!(reply(&mut ws, gz, "g1").await.err_code, 0, "a gzip frame in, a gzip reply out");
    let other = pb::sdkws::GetMaxSeqReq { user_id: "bob".into() }.encode_to_vec();
    send(&mut ws, gz, &req("alice", ident::GET_NEWEST_SEQ, "g2", other)).await;
    assert_eq!(reply(&mut ws, gz, "g2").await.err_code, 1002);
    // A frame that does not inflate ends the connection, as OpenIM ends it.
    ws.send(Message::Binary(b"not gzip".to_vec().into())).await.expect("send");
    assert_eq!(ws_closed_with(&mut ws).await, Some(CloseCode::Policy));
    h.shutdown().await;
}

#[tokio::test]
async fn revoking_a_user_or_deleting_a_device_closes_every_socket_of_it() {
    let h = Harness::start().await;
    let (_, phone) = h.session("alice").await;
    let key = h.user_with_device("alice", "laptop", 1).await;
    let laptop = h.client().handshake(&key, &h.gateway_public(), "laptop").await.expect("handshake");
    let mut a = sdk(&h, "alice", &phone, "js").await;
    let mut b = sdk(&h, "alice", &laptop, "go").await;
    // Device deletion: the laptop's socket ends, the phone's stays.
    let admin = h.admin_jwt("devices:write sessions:revoke");
    let res = h.http.delete(h.url("/v1/admin/users/alice/devices/laptop")).bearer_auth(&admin).send();
    assert_eq!(res.await.expect("answer").status(), 204);
    assert_eq!(text(&mut b).await["errCode"], 1506);
    assert_eq!(ws_closed_with(&mut b).await, Some(CloseCode::from(4401)));
    let mine = pb::sdkws::GetMaxSeqReq { user_id: String::new() }.encode_to_vec();
    send(&mut a, JSON, &req("alice", ident::GET_NEWEST_SEQ, "still", mine)).await;
    assert_eq!(reply(&mut a, JSON, "still").await.err_code, 0, "another device's socket is untouched");
    // Revoking the user ends the rest.
    let res = h.http.post(h.url("/v1/admin/users/alice/revoke")).bearer_auth(&admin).send();
    assert_eq!(res.await.expect("answer").status(), 200);
    assert_eq!(text(&mut a).await["errCode"], 1506);
    assert_eq!(ws_closed_with(&mut a).await, Some(CloseCode::from(4401)));
    h.shutdown().await;
}

#[tokio::test]
async fn the_relay_keeps_openims_read_deadline_and_reports_its_loss() {
    // OpenIM closes a connection silent for its read deadline (here 1.5 s instead of 30 s).
    let emu = openim_emu::Config { ws_read_timeout: Duration::from_millis(1_500), ..openim_emu::Config::default() };
    let pinged = Harness::start_with(Options {
        emu: emu.clone(),
        extra_toml: "[ws]\nupstream_ping_secs = 1\n".into(),
        ..Options::default()
    })
    .await;
    let (_, alice) = pinged.session("alice").await;
    let mut ws = sdk(&pinged, "alice", &alice, "js").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await; // the idle period under test
    let mine = pb::sdkws::GetMaxSeqReq { user_id: String::new() }.encode_to_vec();
    send(&mut ws, JSON, &req("alice", ident::GET_NEWEST_SEQ, "alive", mine)).await;
    assert_eq!(reply(&mut ws, JSON, "alive").await.err_code, 0, "the relay's pings kept OpenIM's deadline");
    pinged.shutdown().await;
    // Without pings in time, OpenIM drops the upstream: the client is closed with 1011.
    let h = Harness::start_with(Options { emu, ..Options::default() }).await;
    let (_, alice) = h.session("alice").await;
    let mut ws = sdk(&h, "alice", &alice, "js").await;
    assert_eq!(ws_closed_with(&mut ws).await, Some(CloseCode::Error));
    h.shutdown().await;
}

/// attacks.md E17: on shutdown every relayed socket, SDK and native alike, is told "going away"
/// (1001) — no token error, the session stands and the client reconnects — and the gateway waits
/// for them within its drain time before it stops.
#[tokio::test]
async fn shutdown_closes_relayed_sockets_with_1001_going_away() {
    let mut h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    let mut sdk_ws = sdk(&h, "alice", &alice, "js").await;
    let (_, t) = ticket(&h, &bob).await;
    let mut native = dial(&format!("{}{}", ws_base(&h), t["url"].as_str().expect("url"))).await;
    let server = h.begin_shutdown().expect("running");
    assert_eq!(ws_closed_with(&mut sdk_ws).await, Some(CloseCode::Away), "the SDK's socket");
    assert_eq!(ws_closed_with(&mut native).await, Some(CloseCode::Away), "the native socket");
    server.await.expect("server stopped cleanly");
    assert!(h.state.ws.is_empty(), "no relayed socket outlives the gateway");
    h.shutdown().await;
}
