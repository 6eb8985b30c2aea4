//! The rows of `shared/spec/attacks.md` no other suite proved (issue 17: `docs/security.md`,
//! "The attack catalogue, row by row", names for every row the test that proves it). Each test is
//! named after its rows and, but for E22 (loopback has one IPv6 address, so it asks the handshake
//! limiter itself), drives the real gateway: raw TCP and HTTP/2 frames where client libraries
//! would tidy the attack away, a stand-in OpenIM where the emulator cannot misbehave the way a
//! row needs, a real `redis-server` where a row is about state outliving a process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use e2e::raw::{closed_by_gateway, connect, ws_closed_with, Ws, BOUND};
use e2e::redis_server::RedisServer;
use e2e::*;
use futures_util::{SinkExt, StreamExt};
use imgate_client::{DeviceKey, Session};
use jsonwebtoken::Algorithm;
use openim_wire::{ident, pb, Codec, Encoding, Req};
use prost::Message as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn now_ms() -> i64 {
    host::auth::now_ms()
}

/// Reads until a complete answer head has arrived; returns its status. Fails after [`BOUND`].
async fn read_status(s: &mut TcpStream) -> u16 {
    let run = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before an answer: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        status_of(&got)
    };
    tokio::time::timeout(BOUND, run).await.expect("an answer")
}

fn status_of(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// The answers in a byte stream (status lines of HTTP/1.1 responses).
fn statuses(answers: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(answers);
    text.match_indices("HTTP/1.1 ").filter_map(|(i, _)| text[i + 9..].get(..3)?.parse().ok()).collect()
}

/// Sends `request` on a fresh connection; returns everything the gateway sent until it closed.
async fn exchange(h: &Harness, request: &[u8]) -> Vec<u8> {
    let mut s = connect(h).await;
    s.write_all(request).await.expect("write");
    closed_by_gateway(&mut s).await
}

async fn call(h: &Harness, s: &Session, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string().into_bytes());
    into_json(h.client().call(s, method, path, bytes.as_deref()).await.expect("answer")).await
}

fn sends_seen(h: &Harness) -> usize {
    h.emu.seen().iter().filter(|r| r.path == "/msg/send_msg").count()
}

// ---- B1: handshakes -------------------------------------------------------------------------

/// A client bound to one loopback source address (Linux routes all of 127.0.0.0/8 to `lo`).
fn client_from(h: &Harness, last_octet: u8) -> imgate_client::Client {
    let http = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
        .build()
        .expect("client");
    imgate_client::Client { http, base_url: h.gateway_url.clone() }
}

async fn handshake_status(c: &imgate_client::Client, msg: &[u8]) -> (u16, Option<u64>) {
    let res = c.handshake_raw(json!({"msg": B64.encode(msg)}).to_string().as_bytes()).await.expect("answer");
    let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    (res.status().as_u16(), retry)
}

/// H11: bytes that cannot be a message 1 cost no X25519 operation, and an address over its budget
/// is refused before any; a flood from one address leaves another address's handshake alone.
#[tokio::test]
async fn h11_bogus_message1_costs_no_curve_work_and_one_flooding_address_spares_the_others() {
    let opts = Options {
        extra_toml: "[auth]\nhandshakes_per_address_per_sec = 1\nhandshake_burst_per_address = 5\n".into(),
        ..Options::default()
    };
    let h = Harness::start_with(opts).await;
    let key = h.user_with_device("hana", "phone", 1).await;
    let ops = "imgate_handshake_dh_operations_total";
    let garbage = vec![7u8; 120];
    // What one well-shaped garbage message costs (decryption fails; equal-work padding included).
    let before = h.metric(ops).await.unwrap_or(0.0);
    assert_eq!(handshake_status(&client_from(&h, 4), &garbage).await.0, 401);
    let per_message = h.metric(ops).await.unwrap_or(0.0) - before;
    assert!(per_message >= 1.0, "garbage of a valid length is decrypted: {per_message}");
    let before = h.metric(ops).await.unwrap_or(0.0);
    let flooder = client_from(&h, 2);
    // Wrong lengths: refused on their shape.
    for m in [vec![], vec![7u8; 95], vec![7u8; 1000]] {
        assert_eq!(handshake_status(&flooder, &m).await.0, 400, "len {}", m.len());
    }
    // The rest of the address's burst goes to well-shaped garbage, then the flood is refused.
    let (mut decrypted, mut refused) = (0.0, 0);
    for _ in 0..10 {
        match handshake_status(&flooder, &garbage).await {
            (401, _) => decrypted += 1.0,
            (429, Some(retry)) if retry >= 1 => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(refused >= 6, "the flooding address is refused once over its burst ({refused} of 10)");
    // Curve work only for the garbage inside the burst: none for the 400s, none for the 429s.
    let spent = h.metric(ops).await.unwrap_or(0.0) - before;
    assert_eq!(spent, decrypted * per_message, "{spent} X25519 operations for {decrypted} decrypted messages");
    // Another address is served meanwhile.
    let other = client_from(&h, 3);
    let s = other.handshake(&key, &h.gateway_public(), "phone").await.expect("another address handshakes");
    assert_eq!(s.user_id, "hana");
    h.shutdown().await;
}

/// H12: well-formed message 1s from many addresses meet the gateway-wide bucket: 429 with
/// `Retry-After` once it is spent, whoever sends.
#[tokio::test]
async fn h12_well_formed_floods_from_many_addresses_meet_the_global_bucket() {
    let opts = Options {
        extra_toml: "[auth]\nhandshakes_per_sec = 3\nhandshake_burst_per_address = 100\n".into(),
        ..Options::default()
    };
    let h = Harness::start_with(opts).await;
    let key = h.user_with_device("ines", "phone", 1).await;
    let started = Instant::now();
    let mut seen = Vec::new();
    for i in 0..10u8 {
        let ts = now_ms() + i64::from(i);
        let (_, msg1) = imgate_client::handshake_message1(&key, &h.gateway_public(), "phone", ts).expect("msg1");
        seen.push(handshake_status(&client_from(&h, 10 + i), &msg1).await);
    }
    // A burst of 3, then 3 a second, whichever address asks.
    let admitted = seen.iter().filter(|(s, _)| *s == 200).count();
    let bound = 3 + 3 * started.elapsed().as_secs() as usize + 1;
    assert!(admitted >= 3 && admitted <= bound, "{admitted} admitted, bound {bound}: {seen:?}");
    let limited: Vec<_> = seen.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(admitted + limited.len(), 10, "{seen:?}");
    assert!(limited.iter().all(|(_, r)| r.is_some_and(|r| r >= 1)), "Retry-After: {seen:?}");
    h.shutdown().await;
}

/// H6: a message 1 from a key nobody enrolled gets the same 401 as any other failure; the reason
/// is in the audit trail only.
#[tokio::test]
async fn h6_an_unknown_key_gets_the_generic_401_and_its_reason_goes_to_the_audit_trail() {
    let h = Harness::start().await;
    let stranger = DeviceKey::generate();
    let (_, msg1) = imgate_client::handshake_message1(&stranger, &h.gateway_public(), "phone", now_ms()).expect("msg1");
    let res = h.client().handshake_raw(json!({"msg": B64.encode(&msg1)}).to_string().as_bytes()).await.expect("answer");
    let rid = res.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let (status, body) = into_json(res).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "{body}");
    assert!(!body.to_string().contains("enrolled"), "the answer names no reason: {body}");
    let audit = std::fs::read_to_string(h.audit_file().await).expect("audit");
    let record: Value = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["request_id"] == rid.as_str())
        .expect("the refusal is audited");
    assert_eq!(record["status"], 401);
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("static key not enrolled"), "{record}");
    h.shutdown().await;
}

/// Noise's Curve25519 for a forger who holds the gateway's static secret but not the victim's:
/// the "static key" reports the victim's public key, and its DH with the gateway's key is computed
/// from the gateway's side (`DH(s_g, S_victim)`); any other DH it cannot compute and guesses.
struct Forger {
    victim: [u8; 32],
    gateway_secret: [u8; 32],
    gateway_public: [u8; 32],
}

/// The private-key bytes that make a [`ForgedDh`] play the victim.
const PLAY_THE_VICTIM: [u8; 32] = [0xAA; 32];

struct ForgedDh {
    forger: Arc<Forger>,
    secret: Option<x25519_dalek::StaticSecret>,
    public: [u8; 32],
    private: [u8; 32],
    victim: bool,
}

impl snow::types::Dh for ForgedDh {
    fn name(&self) -> &'static str {
        "25519"
    }
    fn pub_len(&self) -> usize {
        32
    }
    fn priv_len(&self) -> usize {
        32
    }
    fn set(&mut self, privkey: &[u8]) {
        let mut k = [0u8; 32];
        k.copy_from_slice(&privkey[..32]);
        self.private = k;
        self.victim = k == PLAY_THE_VICTIM;
        if self.victim {
            self.public = self.forger.victim;
        } else {
            let s = x25519_dalek::StaticSecret::from(k);
            self.public = x25519_dalek::PublicKey::from(&s).to_bytes();
            self.secret = Some(s);
        }
    }
    fn generate(&mut self, rng: &mut dyn snow::types::Random) -> Result<(), snow::Error> {
        let mut k = [0u8; 32];
        rng.try_fill_bytes(&mut k)?;
        self.set(&k);
        Ok(())
    }
    fn pubkey(&self) -> &[u8] {
        &self.public
    }
    fn privkey(&self) -> &[u8] {
        &self.private
    }
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let remote: [u8; 32] = pubkey[..32].try_into().map_err(|_| snow::Error::Dh)?;
        let shared = if self.victim {
            // ss = DH(s_victim, S_g) = DH(s_g, S_victim): what a leaked S_g buys. For se (the
            // gateway's fresh ephemeral) the forger has nothing better than this guess.
            let g = x25519_dalek::StaticSecret::from(self.forger.gateway_secret);
            let with = if remote == self.forger.gateway_public { self.forger.victim } else { remote };
            g.diffie_hellman(&x25519_dalek::PublicKey::from(with)).to_bytes()
        } else {
            let s = self.secret.as_ref().ok_or(snow::Error::Dh)?;
            s.diffie_hellman(&x25519_dalek::PublicKey::from(remote)).to_bytes()
        };
        out[..32].copy_from_slice(&shared);
        Ok(())
    }
}

struct ForgerResolver(Arc<Forger>);

impl snow::resolvers::CryptoResolver for ForgerResolver {
    fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
        snow::resolvers::DefaultResolver.resolve_rng()
    }
    fn resolve_dh(&self, _: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
        Some(Box::new(ForgedDh {
            forger: self.0.clone(),
            secret: None,
            public: [0; 32],
            private: [0; 32],
            victim: false,
        }))
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn snow::types::Hash>> {
        snow::resolvers::DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn snow::types::Cipher>> {
        snow::resolvers::DefaultResolver.resolve_cipher(choice)
    }
}

/// H15: with the gateway's static secret leaked, an attacker forges a message 1 for alice (Noise
/// IK's key-compromise impersonation); the gateway accepts it, but message 2 needs `se`, which
/// takes alice's secret or the gateway's fresh ephemeral: the attacker never reads the session.
#[tokio::test]
async fn h15_a_leaked_gateway_key_forges_message1_but_never_yields_the_session() {
    let h = Harness::start().await;
    let alice = h.user_with_device("alice", "phone", 1).await;
    let forger = Arc::new(Forger {
        victim: alice.public(),
        gateway_secret: h.state.gateway_keys[0].secret.to_bytes(),
        gateway_public: h.gateway_public(),
    });
    let params: snow::params::NoiseParams = "Noise_IK_25519_ChaChaPoly_SHA256".parse().expect("params");
    let mut hs = snow::Builder::with_resolver(params, Box::new(ForgerResolver(forger.clone())))
        .local_private_key(&PLAY_THE_VICTIM)
        .and_then(|b| b.remote_public_key(&forger.gateway_public))
        .and_then(|b| b.prologue(b"imgate/1"))
        .and_then(|b| b.build_initiator())
        .expect("initiator");
    let payload = json!({"device_id": "phone", "ts": now_ms()}).to_string();
    let mut msg1 = vec![0u8; 512];
    let n = hs.write_message(payload.as_bytes(), &mut msg1).expect("forged message 1");
    let res = h.client().handshake_raw(json!({"msg": B64.encode(&msg1[..n])}).to_string().as_bytes()).await;
    let (status, body) = into_json(res.expect("answer")).await;
    assert_eq!(status, 200, "the forged message 1 passes (KCI is inherent to IK): {body}");
    let msg2 = B64.decode(body["msg"].as_str().expect("msg")).expect("b64");
    let mut out = vec![0u8; msg2.len()];
    assert!(hs.read_message(&msg2, &mut out).is_err(), "message 2 opened without alice's key");
    // The honest alice is unaffected.
    let s = h.client().handshake(&alice, &h.gateway_public(), "phone").await.expect("alice");
    assert_eq!(call(&h, &s, "GET", "/v1/me", None).await.0, 200);
    h.shutdown().await;
}

// ---- B2: signed requests --------------------------------------------------------------------

/// R2: headers that proxies use to reroute or re-identify a request, and a second Content-Type,
/// change neither who calls nor what is called.
#[tokio::test]
async fn r2_uncovered_rerouting_headers_and_a_second_content_type_change_nothing() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let extra = [
        ("X-Original-URL", "/v1/admin/users".to_owned()),
        ("X-Rewrite-URL", "/v1/admin/users".to_owned()),
        ("X-HTTP-Method-Override", "DELETE".to_owned()),
        ("X-User-ID", "bob".to_owned()),
        ("X-Forwarded-User", "bob".to_owned()),
    ];
    let res = h.client().call_with_headers(&alice, "GET", "/v1/me", &extra, None).await.expect("answer");
    let (status, body) = into_json(res).await;
    assert_eq!((status, body["user_id"].as_str()), (200, Some("alice")), "{body}");
    // Two Content-Types on a send: the body is read as what it is (JSON), the sender is alice.
    let body = json!({"text": "hi"}).to_string();
    let extra = [("Content-Type", "application/json".to_owned()), ("Content-Type", "text/plain".to_owned())];
    let res = h
        .client()
        .call_with_headers(&alice, "POST", "/v1/messages/user/bob", &extra, Some(body.as_bytes()))
        .await
        .expect("answer");
    let (status, answer) = into_json(res).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(sends_seen(&h), 1);
    h.shutdown().await;
}

/// R3: the path variants a normaliser would fold together are distinct paths to imgate: signed as
/// sent, routed as sent, so none reaches another route or another peer.
#[tokio::test]
async fn r3_trailing_slashes_params_and_case_are_never_folded_into_another_route() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    for path in ["/v1/me/", "/v1/me;x=1", "/V1/ME", "/v1/Me"] {
        let (status, body) = call(&h, &alice, "GET", path, None).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{path}: {body}");
    }
    for path in ["/v1/messages/user/bob;x=1", "/v1/messages/user/bob/", "/v1/messages/user/BOB%3B"] {
        let (status, body) = call(&h, &alice, "POST", path, Some(json!({"text": "x"}))).await;
        assert!(status == 400 || status == 404, "{path}: {status} {body}");
    }
    assert_eq!(sends_seen(&h), 0, "no variant reached OpenIM");
    h.shutdown().await;
}

/// R4: the query is signed as sent, byte for byte, so another order is another signature; a
/// key given twice is refused rather than read one way by imgate and another by OpenIM.
#[tokio::test]
async fn r4_a_query_key_given_twice_is_refused() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (_, bob) = h.session("bob").await;
    assert_eq!(call(&h, &alice, "POST", "/v1/messages/user/bob", Some(json!({"text": "one"}))).await.0, 200);
    let history = "/v1/conversations/user/alice/messages";
    let (status, body) = call(&h, &bob, "GET", &format!("{history}?from=1&to=10&from=5"), None).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, body) = call(&h, &bob, "GET", &format!("{history}?to=10&from=1"), None).await;
    assert_eq!((status, body["messages"].as_array().map(Vec::len)), (200, Some(1)), "{body}");
    h.shutdown().await;
}

/// R5: the covered headers are single: a repeated `X-Imgate-*` header is refused, a header
/// name's case is no difference, and an obs-folded header is refused by the parser.
#[tokio::test]
async fn r5_repeated_covered_headers_are_401_case_is_irrelevant_and_obs_fold_is_400() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let c = h.client();
    let signed = alice.sign_request("GET", "/v1/me", b"", now_ms(), &Session::fresh_nonce());
    let names: Vec<String> = signed.iter().map(|(k, _)| k.to_ascii_uppercase()).collect();
    let upper: Vec<(&str, String)> =
        names.iter().map(String::as_str).zip(signed.iter().map(|(_, v)| v.clone())).collect();
    assert_eq!(c.send_with_headers("GET", "/v1/me", &upper, None).await.expect("answer").status(), 200);
    for name in ["X-Imgate-Signature", "X-Imgate-Nonce", "X-Imgate-Session", "X-Imgate-Timestamp"] {
        let mut twice = alice.sign_request("GET", "/v1/me", b"", now_ms(), &Session::fresh_nonce());
        let again = twice.iter().find(|(k, _)| *k == name).expect("header").clone();
        twice.push(again);
        let status = c.send_with_headers("GET", "/v1/me", &twice, None).await.expect("answer").status();
        assert_eq!(status, 401, "{name} twice");
    }
    let folded = "GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n";
    let answer = exchange(&h, folded.as_bytes()).await;
    assert_eq!(statuses(&answer), vec![400], "{:?}", String::from_utf8_lossy(&answer));
    h.shutdown().await;
}

/// R6, R8: distinct nonces signed in one order and sent at once in the other are each accepted
/// once; every one replayed is refused, and a replayed send never reaches OpenIM again.
#[tokio::test]
async fn r6_r8_out_of_order_nonces_are_each_accepted_once_and_a_replayed_send_is_never_resent() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let c = h.client();
    let ts = now_ms();
    let signed: Vec<_> =
        (0..10).map(|i| alice.sign_request("GET", "/v1/me", b"", ts + i, &Session::fresh_nonce())).collect();
    let first = signed.iter().rev().map(|hs| c.send_with_headers("GET", "/v1/me", hs, None));
    let statuses: Vec<u16> =
        futures_util::future::join_all(first).await.into_iter().map(|r| r.expect("answer").status().as_u16()).collect();
    assert_eq!(statuses, vec![200; 10]);
    let again = signed.iter().map(|hs| c.send_with_headers("GET", "/v1/me", hs, None));
    let statuses: Vec<u16> =
        futures_util::future::join_all(again).await.into_iter().map(|r| r.expect("answer").status().as_u16()).collect();
    assert_eq!(statuses, vec![401; 10]);
    // A send, replayed byte for byte: OpenIM sees it once.
    let body = json!({"text": "once"}).to_string();
    let hs = alice.sign_request("POST", "/v1/messages/user/bob", body.as_bytes(), now_ms(), &Session::fresh_nonce());
    let send = || c.send_with_headers("POST", "/v1/messages/user/bob", &hs, Some(body.as_bytes()));
    assert_eq!(send().await.expect("answer").status(), 200);
    assert_eq!(send().await.expect("answer").status(), 401);
    assert_eq!(sends_seen(&h), 1);
    h.shutdown().await;
}

/// R14, E4: a declared length far over the cap is refused before a byte of the body is sent, and
/// a chunked body without end is refused at the cap while the client is still sending: the gateway
/// stops reading instead of buffering.
#[tokio::test]
async fn r14_e4_a_huge_declared_length_and_an_endless_chunked_body_are_413_at_the_cap() {
    let h = Harness::start().await; // max_body_bytes = 64 KiB
    let token = h.admin_jwt("openim:call");
    let head = |framing: &str| {
        format!(
            "POST /v1/admin/openim/user/get_users_info HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\n{framing}\r\n"
        )
    };
    // 10 GB declared, nothing sent: answered at once.
    let mut s = connect(&h).await;
    s.write_all(head("Content-Length: 10000000000\r\n").as_bytes()).await.expect("write");
    assert_eq!(read_status(&mut s).await, 413);
    // Chunked, no end: 1 KiB chunks, up to 64 MiB.
    let mut s = connect(&h).await;
    s.write_all(head("Transfer-Encoding: chunked\r\n").as_bytes()).await.expect("write");
    let (mut rd, mut wr) = s.into_split();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let writer = tokio::spawn(async move {
        let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
        for _ in 0..64 * 1024 {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
            counter.fetch_add(1024, Ordering::Relaxed);
        }
    });
    let mut got = Vec::new();
    let answer = async {
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = rd.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed without an answer");
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(BOUND, answer).await.expect("an answer while the body keeps coming");
    assert_eq!(status_of(&got), 413, "{:?}", String::from_utf8_lossy(&got));
    drop(rd);
    let _ = tokio::time::timeout(BOUND, writer).await.expect("the writer stops");
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < 64 * 1024 * 1024, "the gateway read the whole 64 MiB ({sent} bytes)");
    assert!(!h.emu.seen().iter().any(|r| r.path == "/user/get_users_info"), "nothing reached OpenIM");
    h.shutdown().await;
}

// ---- B3: admin tokens -----------------------------------------------------------------------

/// J6: a token naming a key URL (`jku`, `x5u`) is refused without the gateway ever fetching it:
/// the listener the URL names never sees a connection.
#[tokio::test]
async fn j6_key_urls_in_a_token_are_never_fetched() {
    let h = Harness::start().await;
    let sink = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    sink.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/keys.json", sink.local_addr().expect("addr"));
    let now = now_secs();
    let claims = json!({"iss": ED_ISSUER, "aud": AUDIENCE, "sub": "ops@test", "scope": "imgate:admin", "iat": now, "exp": now + 300});
    for which in ["jku", "x5u"] {
        let mut header = header(Algorithm::EdDSA, ED_KID);
        if which == "jku" {
            header.jku = Some(url.clone());
        } else {
            header.x5u = Some(url.clone());
        }
        let (status, body) = h.get("/v1/admin/health", Some(&h.sign_ed(&header, &claims))).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "{which}: {body}");
    }
    match sink.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the key URL was fetched: {other:?}"),
    }
    h.shutdown().await;
}

/// J13: credentials of the user side — the bearer token of `POST /v1/auth/token`, an OpenIM user
/// token, a session id — are no admin credential: 401, and nothing reaches OpenIM.
#[tokio::test]
async fn j13_user_credentials_and_openim_tokens_are_refused_on_the_admin_api() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (status, tok) = call(&h, &alice, "POST", "/v1/auth/token", None).await;
    assert_eq!(status, 200, "{tok}");
    let bearer = tok["token"].as_str().expect("token").to_owned();
    let admin =
        h.openim_direct("/auth/get_admin_token", None, &json!({"secret": "openIM123", "userID": "imAdmin"})).await;
    let admin = admin["data"]["token"].as_str().expect("admin token").to_owned();
    let user =
        h.openim_direct("/auth/get_user_token", Some(&admin), &json!({"userID": "alice", "platformID": 5})).await;
    let openim_user = user["data"]["token"].as_str().expect("user token").to_owned();
    let before = h.emu.seen().len();
    for (what, credential) in [
        ("bearer token", &bearer),
        ("OpenIM user token", &openim_user),
        ("OpenIM admin token", &admin),
        ("session id", &alice.session_id),
    ] {
        let (status, body) = h.get("/v1/admin/health", Some(credential)).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "{what}: {body}");
        let users = json!({"users": [{"user_id": "mallory", "nickname": "m"}]});
        let (status, _) = h.post("/v1/admin/users", Some(credential), &users).await;
        assert_eq!(status, 401, "{what}");
    }
    assert_eq!(h.emu.seen().len(), before, "no admin call reached OpenIM");
    h.shutdown().await;
}

/// J17: admin keys are a static set read at start: a token signed by a key the configuration no
/// longer names is refused by the restarted gateway, and one signed by a key not yet named is
/// refused until a restart names it.
#[tokio::test]
async fn j17_a_removed_key_stops_at_the_restart_that_removes_it_and_an_unpublished_key_never_works() {
    let h = Harness::start().await;
    let next = host::keys::generate_admin_key().expect("key");
    std::fs::write(h.dir.join("ed-next.pub.pem"), &next.public_pem).expect("write");
    let now = now_secs();
    let claims = json!({"iss": ED_ISSUER, "aud": AUDIENCE, "sub": "ops@test", "scope": "imgate:admin", "iat": now, "exp": now + 300});
    let signing = jsonwebtoken::EncodingKey::from_ed_pem(next.private_pem.as_bytes()).expect("key");
    let by_next = jsonwebtoken::encode(&header(Algorithm::EdDSA, "ed-2"), &claims, &signing).expect("sign");
    let by_old = h.admin_jwt("imgate:admin");
    assert_eq!(h.get("/v1/admin/health", Some(&by_old)).await.0, 200);
    assert_eq!(h.get("/v1/admin/health", Some(&by_next)).await.0, 401, "not published yet");
    // The same deployment restarted with the old key replaced by the new one.
    let rotated = h
        .peer_with(
            "b",
            &[(
                r#"keys = [{ kid = "ed-1", file = "ed.pub.pem" }]"#,
                r#"keys = [{ kid = "ed-2", file = "ed-next.pub.pem" }]"#,
            )],
        )
        .await;
    assert_eq!(rotated.get("/v1/admin/health", Some(&by_next)).await.0, 200, "published");
    let (status, body) = rotated.get("/v1/admin/health", Some(&by_old)).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "removed: {body}");
    rotated.shutdown().await;
    h.shutdown().await;
}

// ---- B4: WebSocket tickets and revocation ---------------------------------------------------

const JSON: Codec = Codec { encoding: Encoding::Json, gzip: false };

fn ws_req(send_id: &str, ident: i32, msg_incr: &str, data: Vec<u8>) -> Req {
    Req {
        req_identifier: ident,
        send_id: send_id.into(),
        operation_id: format!("op-{msg_incr}"),
        msg_incr: msg_incr.into(),
        data,
        ..Req::default()
    }
}

/// The next binary frame of `ws` as OpenIM's reply envelope, within 5 s.
async fn ws_reply(ws: &mut Ws, msg_incr: &str) -> openim_wire::Resp {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a frame within 5 s") {
            Some(Ok(Message::Binary(b))) => {
                let r = JSON.decode_resp(&b).expect("Resp");
                if r.msg_incr == msg_incr {
                    return r;
                }
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

/// W3: a ticket is alice's whatever the upgrade's query claims: `sendID`/`userID` naming bob are
/// refused, or the socket is alice's and a frame in bob's name ends it.
#[tokio::test]
async fn w3_a_ticket_upgrade_naming_another_user_is_the_tickets_user_or_refused() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let (status, t) = call(&h, &alice, "POST", "/v1/ws/ticket", None).await;
    assert_eq!(status, 200, "{t}");
    let url = format!(
        "{}{}&sendID=bob&userID=bob&platformID=5",
        h.gateway_url.replace("http://", "ws://"),
        t["url"].as_str().expect("url")
    );
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert!(res.status().is_client_error(), "{}", res.status());
        }
        Err(e) => panic!("{e}"),
        Ok((mut ws, _)) => {
            let mine = pb::sdkws::GetMaxSeqReq { user_id: String::new() }.encode_to_vec();
            ws.send(Message::Binary(JSON.encode_req(&ws_req("alice", ident::GET_NEWEST_SEQ, "a", mine)).into()))
                .await
                .expect("send");
            assert_eq!(ws_reply(&mut ws, "a").await.err_code, 0, "the socket is alice's");
            let theirs = pb::sdkws::GetMaxSeqReq { user_id: "bob".into() }.encode_to_vec();
            ws.send(Message::Binary(JSON.encode_req(&ws_req("bob", ident::GET_NEWEST_SEQ, "b", theirs)).into()))
                .await
                .expect("send");
            assert_eq!(ws_closed_with(&mut ws).await, Some(CloseCode::Policy), "a frame as bob ends it");
        }
    }
    h.shutdown().await;
}

/// W6: with sessions kept in Redis (they outlive a gateway), a session revoked just before a
/// restart stays revoked for the restarted gateway, while one not revoked still serves (so the
/// refusal is the revocation's, not an empty store's). In-memory sessions die with the process.
#[tokio::test]
async fn w6_a_revoked_session_is_not_resurrected_by_a_restart() {
    let redis = RedisServer::start_persistent();
    let opts = Options { extra_toml: redis.store_toml("a"), ..Options::default() };
    let a = Harness::start_with(opts).await;
    let (_, revoked) = a.session("alice").await;
    let (_, kept) = a.session("bob").await;
    let ops = a.admin_jwt("sessions:revoke");
    let res = a.http.delete(a.url(&format!("/v1/admin/sessions/{}", revoked.session_id))).bearer_auth(&ops).send();
    assert_eq!(res.await.expect("answer").status(), 204);
    // The gateway restarts: a fresh process state built from the same config and store.
    let restarted = a.peer("a2").await;
    assert_eq!(call(&restarted, &kept, "GET", "/v1/me", None).await.0, 200, "sessions outlive the restart");
    let (status, body) = call(&restarted, &revoked, "GET", "/v1/me", None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "{body}");
    restarted.shutdown().await;
    a.shutdown().await;
}

// ---- B5: identity binding -------------------------------------------------------------------

/// A3: dissolving a group (only on the OpenIM-compatible surface) needs the owner or an admin of
/// it; a member's attempt is refused and the group stays.
#[tokio::test]
async fn a3_a_member_cannot_dissolve_the_group() {
    let h = Harness::start().await;
    let (_, owner) = h.session("owner").await;
    let (_, bob) = h.session("bob").await;
    assert_eq!(
        call(&h, &owner, "POST", "/v1/groups", Some(json!({"name": "g", "group_id": "gd", "verification": 2}))).await.0,
        200
    );
    assert_eq!(call(&h, &bob, "POST", "/v1/groups/gd/join", None).await.0, 204);
    let (_, tok) = call(&h, &bob, "POST", "/v1/auth/token", None).await;
    let tok = tok["token"].as_str().expect("token").to_owned();
    let res = h
        .http
        .post(h.url("/openim/group/dismiss_group"))
        .header("operationID", "op")
        .header("token", &tok)
        .body(r#"{"groupID":"gd"}"#)
        .send()
        .await
        .expect("answer");
    let (_, body) = into_json(res).await;
    assert_eq!(body["errCode"], 1002, "{body}");
    assert!(!h.emu.seen().iter().any(|r| r.path == "/group/dismiss_group"), "the dismissal never reached OpenIM");
    assert_eq!(call(&h, &bob, "GET", "/v1/groups/gd", None).await.0, 200, "the group is still there");
    h.shutdown().await;
}

// ---- B6: the HTTP edge ----------------------------------------------------------------------

/// E2: a request body that stops coming (or trickles) does not hold its request: the request
/// deadline answers `504 timeout` while the client is still (not) sending.
#[tokio::test]
async fn e2_a_stalled_or_trickling_body_is_cut_by_the_request_deadline() {
    let opts = Options { openim_timeout_ms: 500, request_timeout_ms: 1_000, ..Options::default() };
    let h = Harness::start_with(opts).await;
    let head =
        "POST /v1/auth/handshake HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n";
    // Stalled: ten bytes of two hundred, then nothing.
    let mut s = connect(&h).await;
    s.write_all(format!("{head}{{\"msg\": \"AA").as_bytes()).await.expect("write");
    let started = Instant::now();
    let answer = closed_by_gateway(&mut s).await;
    assert_eq!(statuses(&answer), vec![504], "{:?}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() < Duration::from_secs(5), "answered after {:?}", started.elapsed());
    // Trickling: one byte every 50 ms would take 10 s; the deadline answers after about 1 s.
    let s = connect(&h).await;
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(head.as_bytes()).await.expect("write");
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if wr.write_all(b"A").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // the attack's pace
        }
    });
    let started = Instant::now();
    let mut got = Vec::new();
    let run = async {
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = rd.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed without an answer");
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(BOUND, run).await.expect("an answer");
    let took = started.elapsed();
    assert_eq!(status_of(&got), 504, "{:?}", String::from_utf8_lossy(&got));
    assert!(took < Duration::from_secs(5), "answered after {took:?}, the body would take 10 s");
    trickle.abort();
    h.shutdown().await;
}

/// E5: header floods beyond the configured limits — 500 headers, one 64 KiB header, a 1 MiB
/// header block — are refused with 431, and the gateway serves the next connection.
#[tokio::test]
async fn e5_five_hundred_headers_and_megabyte_header_blocks_are_431() {
    let h = Harness::start().await;
    let many: String = (0..500).map(|i| format!("X-Filler-{i}: v\r\n")).collect();
    let one_big = format!("X-Big: {}\r\n", "v".repeat(64 * 1024));
    let block: String = (0..1024).map(|i| format!("X-Block-{i}: {}\r\n", "v".repeat(1000))).collect();
    for (what, headers) in [("500 headers", many), ("64 KiB header", one_big), ("1 MiB block", block)] {
        let req = format!("GET /healthz HTTP/1.1\r\nHost: gw\r\n{headers}Connection: close\r\n\r\n");
        let mut s = connect(&h).await;
        // The gateway may answer and close before reading all of it.
        let _ = s.write_all(req.as_bytes()).await;
        let answer = closed_by_gateway(&mut s).await;
        assert_eq!(statuses(&answer), vec![431], "{what}: {:?}", String::from_utf8_lossy(&answer));
    }
    assert_eq!(h.get("/healthz", None).await.0, 200);
    h.shutdown().await;
}

/// E6: request smuggling. Framing the gateway cannot read one way only is refused (400); a
/// request carrying both `Content-Length` and `Transfer-Encoding` is read as chunked and its
/// connection closed after the answer, so a request smuggled behind it is never served. (imgate
/// never forwards a client's bytes: every OpenIM call is a request of its own.) A head with
/// bare-LF line ends is refused too, wherever it is in the stream: hyper would accept it.
#[tokio::test]
async fn e6_ambiguous_framing_is_refused_and_nothing_smuggled_behind_it_is_served() {
    let h = Harness::start().await;
    let smuggled = "GET /v1/auth/gateway-key HTTP/1.1\r\nHost: gw\r\n\r\n";
    for framing in
        ["Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"]
    {
        let req = format!("POST /v1/auth/handshake HTTP/1.1\r\nHost: gw\r\n{framing}\r\n0\r\n\r\n{smuggled}");
        let answer = exchange(&h, req.as_bytes()).await;
        let got = statuses(&answer);
        assert_eq!(got.len(), 1, "{framing:?}: the smuggled request was served: {got:?}");
    }
    for (what, req) in [
        ("two lengths", "POST /v1/auth/handshake HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef"),
        ("chunked, identity", "POST /v1/auth/handshake HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        ("two encodings", "POST /v1/auth/handshake HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n"),
        ("space before colon", "POST /v1/auth/handshake HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        ("signed length", "POST /v1/auth/handshake HTTP/1.1\r\nHost: gw\r\nContent-Length: +5\r\n\r\nabcde"),
    ] {
        let answer = exchange(&h, req.as_bytes()).await;
        assert_eq!(statuses(&answer).first(), Some(&400), "{what}: {:?}", String::from_utf8_lossy(&answer));
    }
    // Bare LF line ends (hyper would accept them, a strict proxy in front would frame the bytes
    // otherwise): 400 and the connection closed, nothing behind them served.
    for (what, req) in [
        ("bare LF throughout", format!("GET /v1/auth/gateway-key HTTP/1.1\nHost: gw\n\n{smuggled}")),
        ("one bare LF header", format!("GET /healthz HTTP/1.1\r\nHost: gw\nX-A: b\r\n\r\n{smuggled}")),
        (
            "the second request's",
            "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\nGET /healthz HTTP/1.1\nHost: gw\n\n".to_owned(),
        ),
        (
            "one pipelined behind a chunked body",
            "POST /healthz HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\na\nb\n\r\n0\r\nT: 1\r\n\r\n\
             GET /healthz HTTP/1.1\nHost: gw\n\n"
                .to_owned(),
        ),
    ] {
        let answer = exchange(&h, req.as_bytes()).await;
        let got = statuses(&answer);
        assert_eq!(got.last(), Some(&400), "{what}: {:?}", String::from_utf8_lossy(&answer));
        assert!(got.len() <= 2 && !got[..got.len() - 1].contains(&400), "{what}: {got:?}");
    }
    h.shutdown().await;
}

/// E9: `X-Forwarded-For`, `X-Real-IP` and `Forwarded` are the client's words: the handshake
/// limit is keyed by the connection's address, so rotating them buys no budget.
#[tokio::test]
async fn e9_forwarding_headers_never_key_the_rate_limit() {
    let opts = Options {
        extra_toml: "[auth]\nhandshakes_per_address_per_sec = 1\nhandshake_burst_per_address = 3\n".into(),
        ..Options::default()
    };
    let h = Harness::start_with(opts).await;
    let garbage = json!({"msg": B64.encode([1u8; 100])}).to_string();
    let mut seen = Vec::new();
    for i in 0..6 {
        let res = h
            .http
            .post(h.url("/v1/auth/handshake"))
            .header("Content-Type", "application/json")
            .header("X-Forwarded-For", format!("203.0.113.{i}"))
            .header("X-Real-IP", format!("198.51.100.{i}"))
            .header("Forwarded", format!("for=192.0.2.{i}"))
            .body(garbage.clone())
            .send()
            .await
            .expect("answer");
        seen.push(res.status().as_u16());
    }
    // A burst of 3, then one a second: rotating the headers buys nothing.
    assert_eq!(seen[..3], [401, 401, 401], "{seen:?}");
    assert!(seen[3..].iter().filter(|s| **s == 429).count() >= 2, "{seen:?}");
    h.shutdown().await;
}

/// E22: the handshake limiter (the one `POST /v1/auth/handshake` checks with the connection's
/// address) counts an IPv6 /64 as one address, and an IPv4-mapped address as its IPv4 address.
#[test]
fn e22_rotating_ipv6_addresses_inside_one_64_share_one_budget() {
    let limits = host::auth::handshake::HandshakeLimits::new(1, 2, 1_000);
    let v6 = |s: &str| IpAddr::V6(s.parse::<Ipv6Addr>().expect("ipv6"));
    assert!(limits.check(v6("2001:db8:1:2::1")).is_ok());
    assert!(limits.check(v6("2001:db8:1:2:ffff:ffff:ffff:ffff")).is_ok());
    let third = limits.check(v6("2001:db8:1:2:dead:beef:0:1"));
    assert!(third.is_err(), "a third address of the same /64 is over the burst");
    assert!(limits.check(v6("2001:db8:1:3::1")).is_ok(), "the next /64 has its own budget");
    let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    assert!(limits.check(v4).is_ok());
    assert!(limits.check(v4).is_ok());
    assert!(limits.check(v6("::ffff:192.0.2.7")).is_err(), "the mapped form is the same IPv4 address");
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame: header and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK header block for `method path` (indexed `:method`, `:scheme http`, literal `:path`
/// and `:authority`).
fn h2_request_block(method: &str, path: &str) -> Vec<u8> {
    let mut block = vec![if method == "GET" { 0x82 } else { 0x83 }, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend([0x01, 2]);
    block.extend_from_slice(b"gw");
    block
}

/// An HPACK string literal (not Huffman-coded): its length as a 7-bit-prefix integer, then it.
fn hpack_string(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut n = s.len();
    if n < 127 {
        out.push(n as u8);
    } else {
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.extend_from_slice(s.as_bytes());
    out
}

/// One frame the gateway sent.
#[derive(Debug)]
struct H2Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// Reads frames (acknowledging SETTINGS and PINGs) until `done` says so or the connection ends;
/// returns every frame. Fails after [`BOUND`].
async fn h2_read_until(s: &mut TcpStream, mut done: impl FnMut(&H2Frame) -> bool) -> Vec<H2Frame> {
    let mut frames = Vec::new();
    let run = async {
        loop {
            let mut head = [0u8; 9];
            if s.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).await.is_err() {
                return;
            }
            let f = H2Frame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
                payload,
            };
            let reply = match (f.kind, f.flags & 1) {
                (4, 0) => Some(h2_frame(4, 1, 0, &[])),
                (6, 0) => Some(h2_frame(6, 1, 0, &f.payload)),
                _ => None,
            };
            if let Some(r) = reply {
                let _ = s.write_all(&r).await;
            }
            let stop = done(&f);
            frames.push(f);
            if stop {
                return;
            }
        }
    };
    tokio::time::timeout(BOUND, run).await.expect("the frames came within the bound");
    frames
}

fn goaway_code(frames: &[H2Frame]) -> Option<u32> {
    frames
        .iter()
        .find(|f| f.kind == 7)
        .and_then(|f| f.payload.get(4..8))
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

/// E7: HTTP/2 (cleartext, prior knowledge) is served with at most 100 concurrent streams (the
/// 101st is refused), and a rapid-reset or CONTINUATION flood ends the connection with GOAWAY
/// `ENHANCE_YOUR_CALM` while the gateway keeps serving others.
#[tokio::test]
async fn e7_http2_streams_are_capped_and_reset_and_continuation_floods_end_the_connection() {
    const REFUSED_STREAM: u32 = 0x7;
    const ENHANCE_YOUR_CALM: u32 = 0xb;
    let h = Harness::start().await;
    // 101 requests at once, each held inside OpenIM (the first call fetches imgate's admin token).
    let token = h.admin_jwt("imgate:admin");
    assert_eq!(h.get("/v1/admin/health", Some(&token)).await.0, 200);
    h.emu.set_fault(Fault::Hold);
    let mut s = connect(&h).await;
    let mut out = [H2_PREFACE, &h2_frame(4, 0, 0, &[])].concat();
    for i in 0..101u32 {
        let mut block = h2_request_block("GET", "/v1/admin/health");
        // `authorization` (static table index 23), literal without indexing.
        block.extend([0x0f, 0x08]);
        block.extend(hpack_string(&format!("Bearer {token}")));
        out.extend(h2_frame(1, 0x5, 1 + 2 * i, &block));
    }
    s.write_all(&out).await.expect("write");
    let frames = h2_read_until(&mut s, |f| f.kind == 3 && f.stream == 201).await;
    let settings = frames.iter().find(|f| f.kind == 4 && f.flags & 1 == 0).expect("the server's SETTINGS");
    let max_streams =
        settings.payload.chunks(6).find(|p| p[..2] == [0, 3]).map(|p| u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
    assert_eq!(max_streams, Some(100), "SETTINGS_MAX_CONCURRENT_STREAMS");
    let rst = frames.iter().find(|f| f.kind == 3 && f.stream == 201).expect("the 101st stream is reset");
    assert_eq!(u32::from_be_bytes([rst.payload[0], rst.payload[1], rst.payload[2], rst.payload[3]]), REFUSED_STREAM);
    assert!(!frames.iter().any(|f| (f.kind == 1 || f.kind == 3) && f.stream < 201), "the first 100 are in flight");
    drop(s);
    h.emu.release();
    // Rapid reset: 1 000 requests, each cancelled as soon as it is sent.
    let mut s = connect(&h).await;
    let mut out = [H2_PREFACE, &h2_frame(4, 0, 0, &[])].concat();
    for i in 0..1000u32 {
        out.extend(h2_frame(1, 0x5, 1 + 2 * i, &h2_request_block("GET", "/healthz")));
        out.extend(h2_frame(3, 0, 1 + 2 * i, &0x8u32.to_be_bytes()));
    }
    let _ = s.write_all(&out).await;
    let frames = h2_read_until(&mut s, |f| f.kind == 7).await;
    assert_eq!(
        goaway_code(&frames),
        Some(ENHANCE_YOUR_CALM),
        "rapid reset: {:?}",
        frames.iter().map(|f| f.kind).collect::<Vec<_>>()
    );
    let answered = frames.iter().filter(|f| f.kind == 1).count();
    assert!(answered < 1000, "every reset request was served");
    drop(s);
    // CONTINUATION flood: one header block that never ends.
    let mut s = connect(&h).await;
    let mut out = [H2_PREFACE, &h2_frame(4, 0, 0, &[])].concat();
    out.extend(h2_frame(1, 0, 1, &h2_request_block("GET", "/healthz")));
    let filler = [0x40, 1, b'x', 1, b'y'].repeat(3000); // literal headers x: y, 15 000 bytes
    for _ in 0..200 {
        out.extend(h2_frame(9, 0, 1, &filler));
    }
    let _ = s.write_all(&out).await;
    let frames = h2_read_until(&mut s, |f| f.kind == 7).await;
    assert_eq!(goaway_code(&frames), Some(ENHANCE_YOUR_CALM), "the endless header block ends the connection");
    assert!(!frames.iter().any(|f| f.kind == 1 && f.stream == 1), "and is never served");
    drop(s);
    assert_eq!(h.get("/healthz", None).await.0, 200, "the gateway serves on");
    h.shutdown().await;
}

/// E3: a client that never reads its answer (HTTP/2 lets it say so exactly: a flow-control window
/// of 0) holds a request in flight with no byte moving; after the stall deadline
/// (`max(idle_timeout_ms, request_timeout_ms)`) the gateway cuts the connection instead of
/// keeping the answer and the slot forever.
#[tokio::test]
async fn e3_a_client_that_never_reads_its_answer_loses_the_connection_at_the_stall_deadline() {
    let opts = Options {
        server_toml: "idle_timeout_ms = 300\n".into(),
        request_timeout_ms: 1_000,
        openim_timeout_ms: 500,
        ..Options::default()
    };
    let h = Harness::start_with(opts).await;
    let mut s = connect(&h).await;
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no DATA may be sent until the client opens the window.
    let mut out = [H2_PREFACE, &h2_frame(4, 0, 0, &[0, 4, 0, 0, 0, 0])].concat();
    out.extend(h2_frame(1, 0x5, 1, &h2_request_block("GET", "/v1/auth/gateway-key")));
    s.write_all(&out).await.expect("write");
    let started = Instant::now();
    let frames = h2_read_until(&mut s, |_| false).await;
    let took = started.elapsed();
    assert!(frames.iter().any(|f| f.kind == 1 && f.stream == 1), "the answer's head was sent");
    assert!(!frames.iter().any(|f| f.kind == 0 && !f.payload.is_empty()), "no body went through a closed window");
    // Not the idle deadline (300 ms: a request was in flight), the stall one (1 s).
    assert!(took >= Duration::from_millis(900), "cut after {took:?}");
    let series = "imgate_connections_open{listener=\"api\"}";
    let freed =
        e2e::reload::within(BOUND, Duration::from_millis(20), async || h.metric(series).await == Some(0.0)).await;
    assert!(freed.is_some(), "the connection's slot is free again");
    h.shutdown().await;
}

// ---- B6: OpenIM misbehaving ----------------------------------------------------------------

/// How the stand-in OpenIM answers every request.
#[derive(Clone, Copy, Debug)]
enum Upstream {
    /// A 200 whose 100-byte body comes one byte every 100 ms.
    Trickle,
    /// A 200 with a chunked body that never ends.
    EndlessBody,
    /// A 200 with 1 MiB of headers.
    HugeHeaders,
    /// Bytes that are not HTTP.
    NotHttp,
    /// A 200 whose body is not JSON.
    NotJson,
    /// A 200 promising 1 000 bytes, cut after 30.
    CutMidBody,
}

/// A stand-in for OpenIM's HTTP API: one request per connection, answered as `mode` says.
struct FakeOpenIm {
    url: String,
    /// Body bytes written to the gateway so far.
    sent: Arc<AtomicU64>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn fake_openim(mode: Upstream) -> FakeOpenIm {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let sent = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (s2, r2) = (sent.clone(), requests.clone());
    let task = tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(answer(conn, mode, s2.clone(), r2.clone()));
        }
    });
    FakeOpenIm { url, sent, requests, task }
}

/// Reads one request (head and `Content-Length` body) and answers it as `mode` says.
async fn answer(mut conn: TcpStream, mode: Upstream, sent: Arc<AtomicU64>, requests: Arc<AtomicUsize>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut buf).await {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let length: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    while got.len() < head_end + length {
        match conn.read(&mut buf).await {
            Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let ok_head = |framing: &str| format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n");
    match mode {
        Upstream::Trickle => {
            if conn.write_all(ok_head("Content-Length: 100\r\n").as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..100 {
                if conn.write_all(b" ").await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await; // the trickle's pace
            }
        }
        Upstream::EndlessBody => {
            if conn.write_all(ok_head("Transfer-Encoding: chunked\r\n").as_bytes()).await.is_err() {
                return;
            }
            let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
            for _ in 0..64 * 1024 {
                if conn.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
                sent.fetch_add(0x4000, Ordering::Relaxed);
            }
        }
        Upstream::HugeHeaders => {
            let filler: String = (0..1024).map(|i| format!("X-Filler-{i}: {}\r\n", "v".repeat(1000))).collect();
            let _ =
                conn.write_all(format!("HTTP/1.1 200 OK\r\n{filler}Content-Length: 2\r\n\r\n{{}}").as_bytes()).await;
        }
        Upstream::NotHttp => {
            let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n\x00\x01\x02garbage").await;
        }
        Upstream::NotJson => {
            let _ = conn.write_all(format!("{}<html>busy</html>", ok_head("Content-Length: 17\r\n")).as_bytes()).await;
        }
        Upstream::CutMidBody => {
            let _ = conn
                .write_all(
                    format!("{}{{\"errCode\":0,\"data\":{{\"token", ok_head("Content-Length: 1000\r\n")).as_bytes(),
                )
                .await;
        }
    }
    let _ = conn.shutdown().await;
}

/// A gateway in front of `fake`, asked for `GET /v1/admin/health` (its first OpenIM call fetches
/// imgate's admin token): status, code, and how long the answer took.
async fn through(fake: &FakeOpenIm) -> (u16, String, Duration, Harness) {
    let opts = Options {
        openim_api_url: Some(fake.url.clone()),
        openim_timeout_ms: 1_000,
        request_timeout_ms: 3_000,
        ..Options::default()
    };
    let h = Harness::start_with(opts).await;
    let started = Instant::now();
    let (status, body) = h.get("/v1/admin/health", Some(&h.admin_jwt("imgate:admin"))).await;
    (status, body["code"].as_str().unwrap_or_default().to_owned(), started.elapsed(), h)
}

/// E13: an OpenIM answer trickling in one byte at a time meets the call's overall deadline
/// (`openim.timeout_ms`): 504, not a request held for the 10 s the body would take.
#[tokio::test]
async fn e13_an_answer_trickling_in_meets_the_overall_deadline() {
    let fake = fake_openim(Upstream::Trickle).await;
    let (status, code, took, h) = through(&fake).await;
    assert_eq!((status, code.as_str()), (504, "upstream_timeout"));
    assert!(took < Duration::from_millis(2_500), "answered after {took:?}");
    assert!(fake.sent.load(Ordering::Relaxed) < 100, "the whole trickle was waited for");
    assert_eq!(h.metric("imgate_http_requests_in_flight").await, Some(0.0));
    h.shutdown().await;
    fake.task.abort();
}

/// E11: an answer cut off in the middle of its body is a 502, never a 200 made of half a body.
#[tokio::test]
async fn e11_an_answer_cut_mid_body_is_502_never_a_partial_200() {
    let fake = fake_openim(Upstream::CutMidBody).await;
    let (status, code, _, h) = through(&fake).await;
    assert_eq!((status, code.as_str()), (502, "upstream_unavailable"));
    h.shutdown().await;
    fake.task.abort();
}

/// E14: an endless body is read up to `openim.max_response_bytes` and no further; 1 MiB of
/// headers, bytes that are not HTTP, a body that is not JSON: each a 502, and the gateway lives.
#[tokio::test]
async fn e14_endless_bodies_huge_headers_and_garbage_from_openim_are_502() {
    for mode in [Upstream::EndlessBody, Upstream::HugeHeaders, Upstream::NotHttp, Upstream::NotJson] {
        let fake = fake_openim(mode).await;
        let (status, code, _, h) = through(&fake).await;
        assert!(fake.requests.load(Ordering::SeqCst) >= 1, "{mode:?}: OpenIM was asked");
        assert_eq!(status, 502, "{mode:?}: {code}");
        assert!(code == "upstream_bad_response" || code == "upstream_unavailable", "{mode:?}: {code}");
        if let Upstream::EndlessBody = mode {
            assert_eq!(code, "upstream_bad_response");
            let sent = fake.sent.load(Ordering::Relaxed);
            assert!(sent < 64 * 1024 * 1024, "the gateway kept reading: {sent} bytes");
        }
        if let Upstream::NotJson = mode {
            assert_eq!(code, "upstream_bad_response");
        }
        assert_eq!(h.get("/healthz", None).await.0, 200, "{mode:?}: the gateway lives");
        h.shutdown().await;
        fake.task.abort();
    }
}
