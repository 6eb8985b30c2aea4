//! Several imgate instances on one real `redis-server` (issue 14): whatever one instance decides
//! or learns, the others see — sessions, nonces, tickets, revocations, rate limits, OpenIM tokens,
//! plugin versions and the plugins' `kv` — and when Redis dies mid-traffic, what needs it fails
//! closed (503 `store_unavailable`, never an unchecked replay), limits fall back to local buckets,
//! and everything comes back when Redis does, without restarting imgate.
//!
//! Each instance is a real gateway (`Harness::peer`: same config and keys, its own listener, audit
//! file and instance id) in front of one emulator; clients speak HTTP and WebSocket to them.

use std::time::{Duration, Instant};

use e2e::plugins::{hostile_plugin, version_plugin};
use e2e::raw::{ws_closed_with, Ws};
use e2e::redis_server::RedisServer;
use e2e::reload::{served, within};
use e2e::*;
use futures_util::StreamExt;
use imgate_client::Session;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Instance `a` (with `opts`, on `redis`) and its peers `b`, `c`… (`peers` of them).
async fn fleet(redis: &RedisServer, opts: Options, peers: &[&str]) -> Vec<Harness> {
    let opts = Options { extra_toml: redis.store_toml("a") + &opts.extra_toml, ..opts };
    let a = Harness::start_with(opts).await;
    let mut all = Vec::new();
    for p in peers {
        all.push(a.peer(p).await);
    }
    all.insert(0, a);
    all
}

async fn shutdown(fleet: Vec<Harness>) {
    for h in fleet.into_iter().rev() {
        h.shutdown().await;
    }
}

async fn me(h: &Harness, s: &Session) -> (u16, Value) {
    into_json(h.client().call(s, "GET", "/v1/me", None).await.expect("answer")).await
}

/// A signed `GET /v1/me` whose headers can be sent again (a replay).
fn signed_me(s: &Session) -> Vec<(&'static str, String)> {
    s.sign_request("GET", "/v1/me", b"", host::auth::now_ms(), &Session::fresh_nonce())
}

async fn send_signed(h: &Harness, headers: &[(&'static str, String)]) -> (u16, Value) {
    into_json(h.client().send_with_headers("GET", "/v1/me", headers, None).await.expect("answer")).await
}

/// A relayed WebSocket on `h` through a ticket minted on `minted_on`.
async fn native_ws(minted_on: &Harness, h: &Harness, s: &Session) -> Result<Ws, String> {
    let (status, t) = into_json(minted_on.client().call(s, "POST", "/v1/ws/ticket", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{t}");
    let url = format!("{}{}", h.gateway_url.replace("http://", "ws://"), t["url"].as_str().expect("url"));
    tokio_tungstenite::connect_async(url).await.map(|(ws, _)| ws).map_err(|e| e.to_string())
}

async fn revoke_on(h: &Harness, session: &Session) {
    let admin = h.admin_jwt("sessions:revoke");
    let res = h.http.delete(h.url(&format!("/v1/admin/sessions/{}", session.session_id))).bearer_auth(&admin).send();
    assert_eq!(res.await.expect("answer").status(), 204);
}

#[tokio::test]
async fn a_session_made_on_one_instance_serves_on_all_and_a_nonce_is_accepted_once_in_the_fleet() {
    let redis = RedisServer::start();
    let f = fleet(&redis, Options::default(), &["b", "c"]).await;
    let (_, alice) = f[0].session("alice").await;
    for h in &f[1..] {
        let (status, body) = me(h, &alice).await;
        assert_eq!((status, body["user_id"].as_str()), (200, Some("alice")), "{body}");
    }
    let once = signed_me(&alice);
    assert_eq!(send_signed(&f[1], &once).await.0, 200);
    for h in [&f[0], &f[1], &f[2]] {
        let (status, body) = send_signed(h, &once).await;
        assert_eq!(status, 401, "a replay on any instance is refused: {body}");
    }
    // A device enrolled through one instance is known to all: a handshake on c.
    let key = f[0].user_with_device("bob", "tablet", 2).await;
    let bob = f[2].client().handshake(&key, &f[2].gateway_public(), "tablet").await.expect("handshake on c");
    assert_eq!(me(&f[1], &bob).await.0, 200);
    // Logging out on b ends the session everywhere.
    assert_eq!(f[1].client().call(&bob, "POST", "/v1/auth/logout", None).await.expect("answer").status(), 204);
    assert_eq!(me(&f[0], &bob).await.0, 401);
    shutdown(f).await;
}

#[tokio::test]
async fn a_ticket_minted_on_one_instance_is_redeemed_once_on_another() {
    let redis = RedisServer::start();
    let f = fleet(&redis, Options::default(), &["b", "c"]).await;
    let (_, alice) = f[0].session("alice").await;
    let (status, t) = into_json(f[0].client().call(&alice, "POST", "/v1/ws/ticket", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{t}");
    let path = t["url"].as_str().expect("url").to_owned();
    let on = |h: &Harness| format!("{}{path}", h.gateway_url.replace("http://", "ws://"));
    let first = tokio_tungstenite::connect_async(on(&f[1])).await;
    assert!(first.is_ok(), "redeemed on b: {:?}", first.err());
    let second = tokio_tungstenite::connect_async(on(&f[2])).await;
    match second {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => assert_eq!(res.status(), 401),
        other => panic!("a used ticket must be refused on c: {:?}", other.map(|_| ())),
    }
    shutdown(f).await;
}

#[tokio::test]
async fn revoking_on_one_instance_closes_a_websocket_held_by_another_within_a_second() {
    let redis = RedisServer::start();
    let f = fleet(&redis, Options::default(), &["b"]).await;
    let (_, alice) = f[0].session("alice").await;
    let (_, carol) = f[0].session("carol").await;
    let mut alice_ws = native_ws(&f[0], &f[1], &alice).await.expect("alice's socket on b");
    let mut carol_ws = native_ws(&f[1], &f[1], &carol).await.expect("carol's socket on b");
    let started = Instant::now();
    revoke_on(&f[0], &alice).await;
    assert_eq!(ws_closed_with(&mut alice_ws).await, Some(CloseCode::from(4401)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "b closed the revoked session's socket in {took:?}");
    // Another session's socket on b stays open.
    let quiet = tokio::time::timeout(Duration::from_millis(300), carol_ws.next()).await;
    assert!(quiet.is_err(), "carol's socket must stay open: {quiet:?}");
    shutdown(f).await;
}

#[tokio::test]
async fn a_rate_limit_holds_for_the_sum_of_what_all_instances_admit() {
    let redis = RedisServer::start();
    let limits =
        "[rate_limits.default]\nper_second = 1\nburst = 5\n[rate_limits.send]\nper_second = 1000\nburst = 1000\n";
    let opts = Options { rate_limits_toml: limits.into(), ..Options::default() };
    let f = fleet(&redis, opts, &["b", "c"]).await;
    let (_, alice) = f[0].session("alice").await;
    let started = Instant::now();
    let (mut admitted, mut limited) = (0u64, 0u64);
    for i in 0..30 {
        match me(&f[i % 3], &alice).await.0 {
            200 => admitted += 1,
            429 => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // Burst 5, then one a second: the whole fleet admits at most that (+1 for a tick at the edge).
    let bound = 5 + started.elapsed().as_secs() + 1;
    assert!(admitted >= 5 && admitted <= bound, "admitted {admitted}, bound {bound}");
    assert_eq!(admitted + limited, 30);
    shutdown(f).await;
}

#[tokio::test]
async fn the_fleet_fetches_one_admin_token_and_mints_one_user_token_so_instances_never_kick_each_other() {
    let redis = RedisServer::start();
    let f = fleet(&redis, Options::default(), &["b", "c"]).await;
    let fetches = |h: &Harness| h.emu.seen().iter().filter(|r| r.path == "/auth/get_admin_token").count();
    // Every instance needs the admin token at once.
    let admin = f[0].admin_jwt("imgate:admin");
    let calls = f.iter().map(|h| h.get("/v1/admin/health", Some(&admin)));
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["store"]["backend"], "redis");
    }
    assert_eq!(fetches(&f[0]), 1, "one admin token for the fleet");
    // alice reads her conversations (a call with her own OpenIM token) through every instance at
    // once, then again: one OpenIM token for (alice, platform 1), and none kicks another.
    let (_, alice) = f[0].session("alice").await;
    for _ in 0..2 {
        let clients: Vec<_> = f.iter().cycle().take(9).map(Harness::client).collect();
        let calls = clients.iter().map(|c| c.call(&alice, "GET", "/v1/conversations", None));
        for res in futures_util::future::join_all(calls).await {
            let (status, body) = into_json(res.expect("answer")).await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let seen = f[0].emu.seen();
    let mints = seen.iter().filter(|r| r.path == "/auth/get_user_token").count();
    assert_eq!(mints, 1, "one user token for alice on platform 1 across the fleet");
    assert!(seen.iter().all(|r| r.err_code != 1506), "no instance's token was kicked by another's");
    let mut counted = 0.0;
    for h in &f {
        counted += h.metric("imgate_openim_user_token_mints_total").await.unwrap_or(0.0);
    }
    assert_eq!(counted, 1.0, "the instances' own count agrees");
    assert_eq!(fetches(&f[0]), 1, "still one admin token");
    shutdown(f).await;
}

#[tokio::test]
async fn a_plugin_version_activated_on_one_instance_serves_on_the_other_within_a_second() {
    let redis = RedisServer::start();
    let (work_a, work_b) = (e2e::reload::workdir(), e2e::reload::workdir());
    std::fs::copy(version_plugin(1), work_a.join("plugins/p.wasm")).expect("copy");
    std::fs::copy(version_plugin(1), work_b.join("plugins/p.wasm")).expect("copy");
    // Each instance its own plugin file and store, and no file watcher: only the fleet can tell b.
    let toml = format!(
        "[plugins]\nwatch = false\nstore_dir = \"{store}\"\n[[plugin]]\nname = \"p\"\npath = \"{path}\"\ncapabilities = [\"config\"]\n\
         [[route_plugins]]\nroute = \"get_profile\"\nplugins = [{{ plugin = \"p\", config = {{}} }}]\n",
        store = work_a.join("store").display(),
        path = work_a.join("plugins/p.wasm").display(),
    );
    let a = Harness::start_with(Options { extra_toml: redis.store_toml("a") + &toml, ..Options::default() }).await;
    let (wa, wb) = (work_a.display().to_string(), work_b.display().to_string());
    let b = a.peer_with("b", &[(wa.as_str(), wb.as_str())]).await;
    let (_, alice) = a.session("alice").await;
    assert_eq!((served(&a, &alice).await, served(&b, &alice).await), (Ok(1), Ok(1)));
    let v2 = std::fs::read(version_plugin(2)).expect("v2");
    let res = a
        .http
        .post(a.url("/v1/admin/plugins/p/versions?activate=true&version=two"))
        .bearer_auth(a.admin_jwt("plugins:write"))
        .body(v2.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap_or_default());
    let started = Instant::now();
    assert_eq!(served(&a, &alice).await, Ok(2));
    let took =
        within(Duration::from_secs(1), Duration::from_millis(10), async || served(&b, &alice).await == Ok(2)).await;
    assert!(took.is_some(), "b serves version 2 within 1 s of a's activation (after {:?})", started.elapsed());
    // b wrote it to its own plugin file, so a restart of b serves it too.
    assert_eq!(std::fs::read(work_b.join("plugins/p.wasm")).expect("b's file"), v2);
    // A version only uploaded through a (not activated) is activated by its hash through b: b
    // fetches it from the fleet, and a follows.
    let v3 = std::fs::read(version_plugin(3)).expect("v3");
    let res = a
        .http
        .post(a.url("/v1/admin/plugins/p/versions?version=three"))
        .bearer_auth(a.admin_jwt("plugins:write"))
        .body(v3.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 201);
    assert_eq!(served(&a, &alice).await, Ok(2), "uploaded, not activated");
    let hash = e2e::reload::sha256_hex(&v3);
    let res = b
        .http
        .post(b.url("/v1/admin/plugins/p/activate"))
        .bearer_auth(b.admin_jwt("plugins:write"))
        .json(&json!({ "hash": hash }))
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap_or_default());
    assert_eq!(served(&b, &alice).await, Ok(3));
    let took =
        within(Duration::from_secs(1), Duration::from_millis(10), async || served(&a, &alice).await == Ok(3)).await;
    assert!(took.is_some(), "a serves version 3 within 1 s of b's activation");
    b.shutdown().await;
    a.shutdown().await;
    let _ = std::fs::remove_dir_all(work_a);
    let _ = std::fs::remove_dir_all(work_b);
}

#[tokio::test]
async fn a_plugins_kv_value_written_through_one_instance_is_read_through_another() {
    let redis = RedisServer::start();
    let toml = format!(
        "[[plugin]]\nname = \"kvuser\"\npath = \"{}\"\ncapabilities = [\"kv\"]\n\
         [[route_plugins]]\nroute = \"send_text_to_user\"\nplugins = [{{ plugin = \"kvuser\", config = {{}} }}]\n",
        hostile_plugin("kvuser").display()
    );
    let f = fleet(&redis, Options { extra_toml: toml, ..Options::default() }, &["b"]).await;
    let (_, alice) = f[0].session("alice").await;
    f[0].session("bob").await;
    let send = |h: &Harness, headers: Vec<(&'static str, String)>| {
        let client = h.client();
        let alice = alice.clone();
        async move {
            let body = json!({ "text": "hi" }).to_string();
            let res = client
                .call_with_headers(&alice, "POST", "/v1/messages/user/bob", &headers, Some(body.as_bytes()))
                .await
                .expect("answer");
            into_json(res).await
        }
    };
    let write = vec![("x-kv-key", "shared".to_owned()), ("x-kv-bytes", "7".to_owned())];
    assert_eq!(send(&f[0], write).await.0, 200, "written through a");
    let read =
        vec![("x-kv-key", "shared".to_owned()), ("x-kv-bytes", "7".to_owned()), ("x-kv-mode", "read".to_owned())];
    let (status, body) = send(&f[1], read).await;
    assert_eq!(status, 200, "read through b: {body}");
    let absent = vec![("x-kv-key", "never-written".to_owned()), ("x-kv-mode", "read".to_owned())];
    let (status, body) = send(&f[1], absent).await;
    assert_eq!((status, body["reason"].as_str()), (409, Some("kv_missing")), "{body}");
    shutdown(f).await;
}

#[tokio::test]
async fn redis_killed_mid_traffic_fails_closed_then_everything_recovers_without_a_restart() {
    let mut redis = RedisServer::start_persistent();
    let limits =
        "[rate_limits.default]\nper_second = 1000\nburst = 1000\n[rate_limits.send]\nper_second = 1000\nburst = 1000\n\
                  [rate_limits.admin]\nper_second = 1\nburst = 3\n";
    let opts = Options { rate_limits_toml: limits.into(), ..Options::default() };
    let f = fleet(&redis, opts, &["b"]).await;
    let (key, alice) = f[0].session("alice").await;
    let used = signed_me(&alice);
    assert_eq!(send_signed(&f[0], &used).await.0, 200);
    let traffic = {
        // Requests keep coming while Redis dies: none may panic a gateway or pass unchecked.
        let (client, alice) = (f[1].client(), alice.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..10 {
                let res = client.call(&alice, "GET", "/v1/me", None).await.expect("the gateway answers");
                statuses.push(res.status().as_u16());
                tokio::task::yield_now().await;
            }
            statuses
        })
    };
    redis.kill();
    let statuses = traffic.await.expect("traffic task");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 503), "{statuses:?}");
    // While Redis is down: signed requests, replays and handshakes fail closed.
    for h in &f {
        let (status, body) = me(h, &alice).await;
        assert_eq!((status, body["code"].as_str()), (503, Some("store_unavailable")), "{body}");
        assert_eq!(send_signed(h, &used).await.0, 503, "a replay is never accepted unchecked");
        let hs = h.client().handshake(&key, &h.gateway_public(), "phone").await;
        assert!(hs.is_err(), "no session without the store");
        let (status, _) = h.get("/readyz", None).await;
        assert_eq!(status, 503, "not ready without Redis");
        assert_eq!(h.get("/healthz", None).await.0, 200, "but alive");
    }
    // Rate limits fall back to each instance's own buckets: limited, never unlimited.
    let admin = f[0].admin_jwt("imgate:admin");
    let started = Instant::now();
    let mut admitted = 0;
    for _ in 0..10 {
        if f[0].get("/v1/admin/plugins", Some(&admin)).await.0 == 200 {
            admitted += 1;
        }
    }
    assert!(admitted >= 1 && admitted <= 3 + started.elapsed().as_secs() + 1, "admitted {admitted} of 10");
    // Redis comes back (with its append-only file): no restart of imgate.
    redis.restart();
    for h in &f {
        let ready =
            within(Duration::from_secs(10), Duration::from_millis(50), async || h.get("/readyz", None).await.0 == 200)
                .await;
        assert!(ready.is_some(), "ready again once Redis answers");
    }
    assert_eq!(me(&f[1], &alice).await.0, 200, "the session outlived the outage");
    assert_eq!(send_signed(&f[1], &used).await.0, 401, "and its nonces did too: the replay is refused");
    let again = f[1].client().handshake(&key, &f[1].gateway_public(), "phone").await;
    assert!(again.is_ok(), "handshakes work again: {:?}", again.err());
    // Revocations travel again: the events connection resubscribed.
    let mut ws = native_ws(&f[1], &f[1], &alice).await.expect("socket on b");
    let started = Instant::now();
    revoke_on(&f[0], &alice).await;
    assert_eq!(ws_closed_with(&mut ws).await, Some(CloseCode::from(4401)));
    assert!(started.elapsed() < Duration::from_secs(1), "closed in {:?}", started.elapsed());
    shutdown(f).await;
}
