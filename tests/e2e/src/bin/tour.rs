//! The scripted tour `make demo` runs against `imgate dev`: what the gateway does today, step by step.
//!
//! Usage: `tour [path/to/env.json]` (default `.imgate/dev/env.json`). Each step prints what it
//! sent and what came back; the tour exits non-zero if the gateway does not behave as described.

use std::process::ExitCode;

use serde_json::{json, Value};

struct Tour {
    http: reqwest::Client,
    gw: String,
    pem: String,
    failures: usize,
    /// The plugins `imgate dev` configured (env.json `plugins`).
    plugins: Vec<String>,
}

impl Tour {
    fn jwt(&self, scope: &str) -> String {
        host::dev::mint_admin_jwt(&self.pem, "tour@imgate-dev", scope, 300).unwrap_or_default()
    }

    async fn call(
        &mut self,
        title: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        want: u16,
    ) -> Value {
        println!("\n== {title}");
        println!("   {method} {path}{}", if token.is_some() { "   (Authorization: Bearer <admin JWT>)" } else { "" });
        let mut req = if method == "GET" {
            self.http.get(format!("{}{path}", self.gw))
        } else {
            self.http.post(format!("{}{path}", self.gw))
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            let shown = b.to_string();
            println!("   body: {}", if shown.len() > 120 { format!("<{} bytes>", shown.len()) } else { shown });
            req = req.json(b);
        }
        let (status, value) = match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(e) => (0, Value::String(e.to_string())),
        };
        let mark = if status == want { "ok" } else { "UNEXPECTED" };
        let shown = value.to_string();
        let shown = match shown.char_indices().nth(400) {
            Some((cut, _)) => format!("{}… ({} bytes)", &shown[..cut], shown.len()),
            None => shown,
        };
        println!("   -> {status} {shown}   [{mark}: expected {want}]");
        if status != want {
            self.failures += 1;
        }
        value
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let path = std::env::args().nth(1).unwrap_or_else(|| ".imgate/dev/env.json".into());
    let env: Value = match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
        Some(v) => v,
        None => {
            eprintln!("tour: cannot read {path}; is `imgate dev` running?");
            return ExitCode::FAILURE;
        }
    };
    let pem =
        env["admin"]["private_key_pem_path"].as_str().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    let Ok(http) = reqwest::Client::builder().no_proxy().build() else { return ExitCode::FAILURE };
    let plugins =
        env["plugins"].as_array().into_iter().flatten().filter_map(|p| p.as_str().map(str::to_owned)).collect();
    let gw = env["gateway_url"].as_str().unwrap_or_default().to_owned();
    let mut t = Tour { http, gw, pem, failures: 0, plugins };
    println!(
        "imgate tour — gateway {} in front of the OpenIM emulator at {}",
        t.gw,
        env["openim_api_url"].as_str().unwrap_or("?")
    );

    t.call("The gateway's public Noise key (clients pin it)", "GET", "/v1/auth/gateway-key", None, None, 200).await;
    t.call("Admin routes need an admin JWT: none given", "GET", "/v1/admin/health", None, None, 401).await;
    let weak = t.jwt("users:write");
    t.call("A valid JWT without the route's scope is 403", "GET", "/v1/admin/health", Some(&weak), None, 403).await;
    let admin = t.jwt("imgate:admin users:write openim:call devices:write");
    t.call(
        "Health: the gateway reaches OpenIM with its own admin token",
        "GET",
        "/v1/admin/health",
        Some(&admin),
        None,
        200,
    )
    .await;
    let users = json!({"users": [{"user_id": "alice", "nickname": "Alice"}, {"user_id": "bob", "nickname": "Bob"}]});
    t.call("Register two users in OpenIM", "POST", "/v1/admin/users", Some(&admin), Some(&users), 201).await;
    t.call(
        "Registering them again is a conflict, nothing changes",
        "POST",
        "/v1/admin/users",
        Some(&admin),
        Some(&users),
        409,
    )
    .await;
    let bad = json!({"users": [{"user_id": "eve ", "nickname": "Eve", "appMangerLevel": 2}]});
    t.call(
        "Unknown fields and odd ids are refused before OpenIM sees them",
        "POST",
        "/v1/admin/users",
        Some(&admin),
        Some(&bad),
        400,
    )
    .await;
    t.call(
        "Back-office passthrough: OpenIM's own envelope, sent with the admin token",
        "POST",
        "/v1/admin/openim/user/get_users_info",
        Some(&admin),
        Some(&json!({"userIDs": ["alice", "bob"]})),
        200,
    )
    .await;
    let send = json!({"sendID": "alice", "recvID": "bob", "content": {"content": "hello from the tour"}, "contentType": 101, "sessionType": 1});
    t.call(
        "An admin tool sends a message as alice (admin-only in OpenIM)",
        "POST",
        "/v1/admin/openim/msg/send_msg",
        Some(&admin),
        Some(&send),
        200,
    )
    .await;
    t.call(
        "OpenIM tokens never leave imgate, even for admins",
        "POST",
        "/v1/admin/openim/auth/get_user_token",
        Some(&admin),
        Some(&json!({"userID": "alice", "platformID": 1})),
        403,
    )
    .await;
    let big = json!({"userIDs": ["x".repeat(2 * 1024 * 1024)]});
    t.call(
        "A body over the configured limit is 413",
        "POST",
        "/v1/admin/openim/user/get_users_info",
        Some(&admin),
        Some(&big),
        413,
    )
    .await;
    t.call("Unknown routes are 404 in the same error shape", "GET", "/v1/whatever", None, None, 404).await;

    user_auth(&mut t, &admin).await;
    client_api(&mut t, &admin).await;

    if let Some(url) = env["metrics_url"].as_str() {
        println!("\n== Prometheus metrics ({url}), a few lines:");
        let text = match t.http.get(url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        for line in text
            .lines()
            .filter(|l| l.starts_with("imgate_http_requests_total") || l.starts_with("imgate_openim_calls_total"))
            .take(8)
        {
            println!("   {line}");
        }
    }
    if let Some(path) = env["audit_log"].as_str() {
        println!("\n== The audit log ({path}): one hash-chained line per call and per admin action");
        match host::audit::verify_file(std::path::Path::new(path)) {
            Ok(n) => println!("   imgate audit verify: ok ({n} records so far); the last one:"),
            Err(e) => {
                println!("   imgate audit verify: {e}   [UNEXPECTED]");
                t.failures += 1;
            }
        }
        if let Some(last) = std::fs::read_to_string(path).ok().and_then(|s| s.lines().last().map(str::to_owned)) {
            println!("   {last}");
        }
    }
    if t.failures == 0 {
        println!("\ntour complete: every step behaved as described");
        ExitCode::SUCCESS
    } else {
        println!("\ntour FAILED: {} step(s) did not behave as described", t.failures);
        ExitCode::FAILURE
    }
}

/// Prints one signed-call step and counts it as failed if the status is not `want`.
async fn signed_step(t: &mut Tour, title: &str, res: Result<reqwest::Response, imgate_client::ClientError>, want: u16) {
    println!("\n== {title}");
    let (status, text) = match res {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    };
    let mark = if status == want { "ok" } else { "UNEXPECTED" };
    println!("   -> {status} {text}   [{mark}: expected {want}]");
    if status != want {
        t.failures += 1;
    }
}

/// Enrollment, a Noise IK handshake, a signed call, a replay refused, logout (client-auth §2–4, §9).
async fn user_auth(t: &mut Tour, admin: &str) {
    use imgate_client::{Client, DeviceKey, Session};
    let client = Client::new(&t.gw);
    let device = DeviceKey::generate();
    println!("\n== A device of alice generates an X25519 key; an admin enrolls its public key");
    println!("   POST /v1/admin/users/alice/devices  body: {{\"device_id\":\"phone-1\",\"platform_id\":2,\"public_key\":\"{}\"}}", device.public_b64());
    let enrolled = client.enroll(admin, "alice", "phone-1", 2, &device.public_b64()).await;
    signed_step(t, "Enrollment: this key now belongs to alice / phone-1 (platform 2)", enrolled, 201).await;
    let gateway_public = match client.gateway_key().await {
        Ok((_, k)) => k,
        Err(e) => {
            println!("   cannot read the gateway key: {e}");
            t.failures += 1;
            return;
        }
    };
    println!("\n== Noise IK handshake: message 1 → POST /v1/auth/handshake → message 2 with the session");
    let session = match client.handshake(&device, &gateway_public, "phone-1").await {
        Ok(s) => {
            println!(
                "   -> session {} for user {} on platform {}, expires at {} (session key stays in memory)",
                s.session_id, s.user_id, s.platform_id, s.expires_at
            );
            s
        }
        Err(e) => {
            println!("   -> handshake failed: {e}   [UNEXPECTED]");
            t.failures += 1;
            return;
        }
    };
    let signed = client.call(&session, "GET", "/v1/me", None).await;
    signed_step(t, "A signed call: GET /v1/me (HMAC over method, path, query, body, time, nonce)", signed, 200).await;
    let headers = session.sign_request("GET", "/v1/me", b"", host::auth::now_ms(), &Session::fresh_nonce());
    let first = client.send_with_headers("GET", "/v1/me", &headers, None).await;
    signed_step(t, "A captured signed request, sent once", first, 200).await;
    let replay = client.send_with_headers("GET", "/v1/me", &headers, None).await;
    signed_step(t, "The same request replayed: the nonce was used, refused", replay, 401).await;
    let logout = client.call(&session, "POST", "/v1/auth/logout", None).await;
    signed_step(t, "Logout: POST /v1/auth/logout", logout, 204).await;
    let after = client.call(&session, "GET", "/v1/me", None).await;
    signed_step(t, "The session is gone: the next signed call is refused", after, 401).await;
}

/// The `/v1` API: a message sent and pulled, acting as someone else refused, a 429.
async fn client_api(t: &mut Tour, admin: &str) {
    use imgate_client::{Client, DeviceKey};
    let client = Client::new(&t.gw);
    let Ok((_, gw)) = client.gateway_key().await else {
        t.failures += 1;
        return;
    };
    let mut sessions = Vec::new();
    for (user, device) in [("alice", "laptop"), ("bob", "phone")] {
        let key = DeviceKey::generate();
        let enrolled = client.enroll(admin, user, device, 3, &key.public_b64()).await.map(|r| r.status().as_u16());
        match (enrolled, client.handshake(&key, &gw, device).await) {
            (Ok(201), Ok(s)) => sessions.push(s),
            _ => {
                println!("   cannot open a session for {user}   [UNEXPECTED]");
                t.failures += 1;
                return;
            }
        }
    }
    let (alice, bob) = (&sessions[0], &sessions[1]);
    println!("\n== The /v1 API (sessions for alice and bob; every call below is signed)");
    let sent = client.call(alice, "POST", "/v1/messages/user/bob", Some(br#"{"text":"hello bob, via imgate"}"#)).await;
    signed_step(t, "alice sends bob a text: POST /v1/messages/user/bob {\"text\":…}", sent, 200).await;
    let pulled = client.call(bob, "GET", "/v1/conversations/user/alice/messages?from=1&to=20", None).await;
    signed_step(t, "bob pulls the conversation: GET /v1/conversations/user/alice/messages?from=1&to=20", pulled, 200)
        .await;
    let spoof = client.call(alice, "POST", "/v1/messages/user/bob", Some(br#"{"text":"hi","sendID":"bob"}"#)).await;
    signed_step(
        t,
        "alice tries to send as bob (sendID in the body): refused, the sender is always the session's user",
        spoof,
        400,
    )
    .await;
    let join = client.call(alice, "POST", "/v1/groups/g-demo/join", Some(br#"{"inviterUserID":"bob"}"#)).await;
    signed_step(t, "alice tries to make bob join a group (OpenIM would allow it): refused", join, 400).await;
    if t.plugins.iter().any(|p| p == host::dev::DEV_PLUGIN) {
        plugin_steps(t, &client, alice, bob, admin).await;
    }
    websocket_steps(t, &client, alice, bob).await;
    println!("\n== Rate limits: alice sends quickly (class `send`: 5/s, burst 10)");
    let mut codes = Vec::new();
    for _ in 0..12 {
        let r = client.call(alice, "POST", "/v1/messages/user/bob", Some(br#"{"text":"spam"}"#)).await;
        codes.push(r.map(|r| r.status().as_u16()).unwrap_or(0));
    }
    println!("   statuses: {codes:?}");
    let limited = codes.contains(&429);
    println!(
        "   -> {}",
        if limited { "429 Too Many Requests once the burst is spent   [ok]" } else { "no 429   [UNEXPECTED]" }
    );
    if !limited {
        t.failures += 1;
    }
    let other = client.call(bob, "GET", "/v1/me", None).await;
    signed_step(t, "bob is not slowed down by alice's burst", other, 200).await;
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;
const JSON: openim_wire::Codec = openim_wire::Codec { encoding: openim_wire::Encoding::Json, gzip: false };

/// A ticket for `who` (`POST /v1/ws/ticket`, signed) and the relayed WebSocket it opens.
async fn relayed(
    t: &mut Tour,
    client: &imgate_client::Client,
    who: &imgate_client::Session,
    name: &str,
) -> Option<(String, Ws)> {
    let res = client.call(who, "POST", "/v1/ws/ticket", None).await;
    let body: Value = match res {
        Ok(r) if r.status() == 200 => r.json().await.unwrap_or_default(),
        _ => Value::Null,
    };
    let url = format!("{}{}", t.gw.replacen("http://", "ws://", 1), body["url"].as_str().unwrap_or(""));
    println!("\n== {name} takes a ticket (POST /v1/ws/ticket, signed, single use, 30 s) and opens GET /v1/ws?ticket=…");
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok((ws, _)) => {
            println!("   -> 101 Switching Protocols: imgate dialled OpenIM's msg gateway as {name}, with a token {name} never sees   [ok]");
            Some((url, ws))
        }
        Err(e) => {
            println!("   -> {e}   [UNEXPECTED]");
            t.failures += 1;
            None
        }
    }
}

/// The next frame of `ws` that answers `incr` (or, with `incr` empty, the next push), within 5 s.
async fn frame(ws: &mut Ws, incr: &str) -> Option<openim_wire::Resp> {
    use futures_util::StreamExt;
    let wait = async {
        while let Some(Ok(m)) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Binary(b) = m {
                let r = JSON.decode_resp(&b).ok()?;
                if (incr.is_empty() && r.req_identifier == openim_wire::ident::PUSH_MSG)
                    || (!incr.is_empty() && r.msg_incr == incr)
                {
                    return Some(r);
                }
            }
        }
        None
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), wait).await.ok().flatten()
}

/// The real-time path: two relayed WebSockets, a send policed like its REST twin, a pull of
/// someone else's conversation refused, a ticket that works once.
async fn websocket_steps(
    t: &mut Tour,
    client: &imgate_client::Client,
    alice: &imgate_client::Session,
    bob: &imgate_client::Session,
) {
    use futures_util::SinkExt;
    use openim_wire::{ident, pb, Req};
    use prost::Message as _;
    println!("\n== The real-time path: a WebSocket relay (OpenIM's msg gateway stays unreachable; frames in OpenIM's JSON envelope)");
    let Some((_, mut b)) = relayed(t, client, bob, "bob").await else { return };
    let Some((alice_url, mut a)) = relayed(t, client, alice, "alice").await else { return };
    let text = "darn, this came over the WebSocket";
    let msg = pb::sdkws::MsgData {
        send_id: "alice".into(),
        recv_id: "bob".into(),
        client_msg_id: "tour-ws-1".into(),
        session_type: 1,
        content_type: 101,
        content: json!({ "content": text }).to_string().into_bytes(),
        ..Default::default()
    };
    let send = Req {
        req_identifier: ident::SEND_MSG,
        send_id: "alice".into(),
        operation_id: "tour-ws".into(),
        msg_incr: "1".into(),
        data: msg.encode_to_vec(),
        ..Req::default()
    };
    println!("\n== alice sends bob {text:?} as frame 1003 (SendMsg)");
    let _ = a.send(tokio_tungstenite::tungstenite::Message::Binary(JSON.encode_req(&send).into())).await;
    let sent = frame(&mut a, "1").await;
    let ok = sent.as_ref().is_some_and(|r| r.err_code == 0);
    println!("   -> reply errCode {}   [{}]", sent.map_or(-1, |r| r.err_code), if ok { "ok" } else { "UNEXPECTED" });
    t.failures += usize::from(!ok);
    let pushed = frame(&mut b, "").await.and_then(|r| pb::sdkws::PushMessages::decode(&r.data[..]).ok());
    let got = pushed
        .and_then(|p| p.msgs.into_values().flat_map(|m| m.msgs).find(|m| m.client_msg_id == "tour-ws-1"))
        .and_then(|m| serde_json::from_slice::<Value>(&m.content).ok())
        .and_then(|c| c["content"].as_str().map(str::to_owned));
    let masked = t.plugins.iter().any(|p| p == host::dev::DEV_PLUGIN);
    let want = if masked { text.replacen("darn", "****", 1) } else { text.to_owned() };
    let ok = got.as_deref() == Some(want.as_str());
    println!(
        "   bob's socket gets the push (2001): {:?}{}   [{}]",
        got.unwrap_or_default(),
        if masked { " (the send route's content-filter chain ran on the frame)" } else { "" },
        if ok { "ok" } else { "UNEXPECTED" }
    );
    t.failures += usize::from(!ok);
    println!("\n== alice pulls someone else's conversation (frame 1005; OpenIM itself checks nothing): refused");
    let pull = pb::msg::GetSeqMessageReq {
        user_id: "alice".into(),
        conversations: vec![pb::msg::ConversationSeqs { conversation_id: "si_bob_carol".into(), seqs: vec![1] }],
        order: 0,
    };
    let req = Req {
        req_identifier: ident::PULL_MSG,
        send_id: "alice".into(),
        operation_id: "tour-ws".into(),
        msg_incr: "2".into(),
        data: pull.encode_to_vec(),
        ..Req::default()
    };
    let _ = a.send(tokio_tungstenite::tungstenite::Message::Binary(JSON.encode_req(&req).into())).await;
    let refused = frame(&mut a, "2").await;
    let ok = refused.as_ref().is_some_and(|r| r.err_code == 1002);
    println!(
        "   -> {}   [{}]",
        refused.map_or("no reply".into(), |r| format!("errCode {} {:?}", r.err_code, r.err_msg)),
        if ok { "ok" } else { "UNEXPECTED" }
    );
    t.failures += usize::from(!ok);
    println!("\n== alice's ticket, used a second time");
    let again = tokio_tungstenite::connect_async(alice_url.as_str()).await;
    let status = match &again {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        _ => 0,
    };
    println!("   -> {status}   [{}: expected 401]", if status == 401 { "ok" } else { "UNEXPECTED" });
    t.failures += usize::from(status != 401);
}

/// The `content-filter` Wasm plugin on direct text messages: a word masked before OpenIM stores
/// it, and the plugin's version and config schema as operators see them.
async fn plugin_steps(
    t: &mut Tour,
    client: &imgate_client::Client,
    alice: &imgate_client::Session,
    bob: &imgate_client::Session,
    admin: &str,
) {
    let words = host::dev::DEV_MASKED_WORDS;
    println!("\n== A policy plugin: `content-filter` (WebAssembly, sandboxed) masks {words:?} in direct texts");
    let text = format!("well {}, that was close", words[0]);
    let body = json!({ "text": text }).to_string();
    let sent = client.call(alice, "POST", "/v1/messages/user/bob", Some(body.as_bytes())).await;
    signed_step(t, &format!("alice sends bob {text:?}"), sent, 200).await;
    let masked = format!("well {}, that was close", "*".repeat(words[0].len()));
    println!("\n== bob pulls the conversation: OpenIM only ever saw {masked:?}");
    let pulled = client.call(bob, "GET", "/v1/conversations/user/alice/messages?from=1&to=50", None).await;
    // Each message's `content` is OpenIM's content JSON, base64: `{"content": "<text>"}`.
    let texts: Vec<String> = match pulled {
        Ok(r) => r.json::<Value>().await.unwrap_or_default()["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD.decode(m["content"].as_str()?).ok()?;
                serde_json::from_slice::<Value>(&raw).ok()?["content"].as_str().map(str::to_owned)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let ok = texts.contains(&masked) && !texts.contains(&text);
    println!(
        "   -> {}",
        if ok {
            format!("{masked:?} is there, the original is not   [ok]")
        } else {
            format!("not masked; the texts: {texts:?}   [UNEXPECTED]")
        }
    );
    if !ok {
        t.failures += 1;
    }
    let status = t
        .call(
            "The plugin as operators see it: version, source, config schema",
            "GET",
            "/v1/admin/plugins/content-filter",
            Some(admin),
            None,
            200,
        )
        .await;
    let schema = &status["active"]["config_schema"];
    if schema["required"] != json!(["words", "action"]) {
        println!("   the active version shows no config schema   [UNEXPECTED]");
        t.failures += 1;
    }
}
