//! A Rust client of imgate's client protocol, written from `shared/spec/client-auth.md` alone.
//!
//! It enrolls devices (admin), runs the Noise IK handshake (§3), signs requests (§4) and calls the
//! gateway. The tests, the demo tour and the benchmarks use it; because it is built from the spec
//! and not from the gateway's code, it is also the check that the gateway follows the spec to the
//! byte. The primitives (`canonical_string`, `sign`, `handshake_message1`) are public so attack
//! tests can build requests and messages and then change them.

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

const PATTERN: &str = "Noise_IK_25519_ChaChaPoly_SHA256";
const PROLOGUE: &[u8] = b"imgate/1";

/// What went wrong on the client side, or what the gateway answered instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("Noise: {0}")]
    Noise(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("gateway answered {0}: {1}")]
    Status(u16, String),
}

/// A device's X25519 static key (its identity).
#[derive(Clone)]
pub struct DeviceKey {
    secret: [u8; 32],
}

impl DeviceKey {
    pub fn generate() -> DeviceKey {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        DeviceKey { secret }
    }
    pub fn from_bytes(secret: [u8; 32]) -> DeviceKey {
        DeviceKey { secret }
    }
    /// The private key bytes (for tests that build their own Noise messages).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret
    }
    pub fn public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(self.secret)).to_bytes()
    }
    pub fn public_b64(&self) -> String {
        B64.encode(self.public())
    }
}

/// §4: the 8 lines joined by `\n`, no trailing newline.
pub fn canonical_string(
    session_id: &str,
    timestamp_ms: i64,
    nonce: &str,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> String {
    let hash: String = Sha256::digest(body).iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "IMGATE-HMAC-SHA256\n{session_id}\n{timestamp_ms}\n{nonce}\n{}\n{path}\n{query}\n{hash}",
        method.to_ascii_uppercase()
    )
}

/// §4: b64url-no-pad(HMAC-SHA256(session_key, canonical)).
pub fn sign(session_key: &[u8; 32], canonical: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(session_key).expect("HMAC takes any key length");
    mac.update(canonical.as_bytes());
    B64URL.encode(mac.finalize().into_bytes())
}

/// A handshake waiting for message 2.
pub struct PendingHandshake {
    state: snow::HandshakeState,
}

fn noise(e: snow::Error) -> ClientError {
    ClientError::Noise(e.to_string())
}

/// §3 message 1 (`-> e, es, s, ss`) with payload `{"device_id","ts"}`.
pub fn handshake_message1(
    device: &DeviceKey,
    gateway_public: &[u8; 32],
    device_id: &str,
    ts_ms: i64,
) -> Result<(PendingHandshake, Vec<u8>), ClientError> {
    let params = PATTERN.parse().map_err(noise)?;
    let mut state = snow::Builder::new(params)
        .local_private_key(&device.secret)
        .and_then(|b| b.remote_public_key(gateway_public))
        .and_then(|b| b.prologue(PROLOGUE))
        .and_then(|b| b.build_initiator())
        .map_err(noise)?;
    let payload = serde_json::json!({ "device_id": device_id, "ts": ts_ms }).to_string();
    let mut out = vec![0u8; 96 + payload.len()];
    let n = state.write_message(payload.as_bytes(), &mut out).map_err(noise)?;
    out.truncate(n);
    Ok((PendingHandshake { state }, out))
}

#[derive(Deserialize)]
struct Msg2Payload {
    session_id: String,
    session_key: String,
    user_id: String,
    platform_id: i32,
    expires_at: i64,
}

impl PendingHandshake {
    /// Reads message 2 (`<- e, ee, se`) and returns the session it carries.
    pub fn read_message2(mut self, msg2: &[u8]) -> Result<Session, ClientError> {
        let mut payload = vec![0u8; msg2.len()];
        let n = self.state.read_message(msg2, &mut payload).map_err(noise)?;
        if !self.state.is_handshake_finished() {
            return Err(ClientError::Noise("handshake not finished after message 2".into()));
        }
        let p: Msg2Payload = serde_json::from_slice(&payload[..n])
            .map_err(|e| ClientError::Protocol(format!("message 2 payload: {e}")))?;
        let key: [u8; 32] = B64
            .decode(p.session_key.as_bytes())
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| ClientError::Protocol("session_key is not base64 of 32 bytes".into()))?;
        // §3: session_id is b64url (no padding) of 16+ random bytes.
        if B64URL.decode(p.session_id.as_bytes()).map_or(true, |id| id.len() < 16) {
            return Err(ClientError::Protocol(format!("session_id {:?} is not b64url of 16+ bytes", p.session_id)));
        }
        Ok(Session {
            session_id: p.session_id,
            session_key: key,
            user_id: p.user_id,
            platform_id: p.platform_id,
            expires_at: p.expires_at,
        })
    }
}

/// A session opened by a handshake.
#[derive(Clone, Debug)]
pub struct Session {
    pub session_id: String,
    pub session_key: [u8; 32],
    pub user_id: String,
    pub platform_id: i32,
    pub expires_at: i64,
}

impl Session {
    /// The four `X-Imgate-*` headers of a request; `path_and_query` is split at the first `?`.
    pub fn sign_request(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp_ms: i64,
        nonce: &str,
    ) -> Vec<(&'static str, String)> {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let canonical = canonical_string(&self.session_id, timestamp_ms, nonce, method, path, query, body);
        vec![
            ("X-Imgate-Session", self.session_id.clone()),
            ("X-Imgate-Timestamp", timestamp_ms.to_string()),
            ("X-Imgate-Nonce", nonce.to_owned()),
            ("X-Imgate-Signature", sign(&self.session_key, &canonical)),
        ]
    }

    /// 24 random bytes, b64url: 32 chars of `[A-Za-z0-9_-]`.
    pub fn fresh_nonce() -> String {
        let mut b = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut b);
        B64URL.encode(b)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The `ts` of a message 1: the current time, but strictly above any `ts` this process sent before,
/// because the gateway accepts a device's `ts` only when it is strictly greater than the last one (§3)
/// and two handshakes can fall in the same millisecond.
fn handshake_ts() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = now_ms();
    let prev = LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1))).unwrap_or(0);
    now.max(prev + 1)
}

/// HTTP access to one gateway.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base_url: String,
}

impl Client {
    pub fn new(base_url: &str) -> Client {
        let http = reqwest::Client::builder().no_proxy().build().expect("reqwest client");
        Client { http, base_url: base_url.trim_end_matches('/').to_owned() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `GET /v1/auth/gateway-key` → (key_id, public key); the protocol and prologue must be §1's.
    pub async fn gateway_key(&self) -> Result<(String, [u8; 32]), ClientError> {
        let res = self.http.get(self.url("/v1/auth/gateway-key")).send().await?;
        let v: serde_json::Value = ok_json(res).await?;
        if v["protocol"] != PATTERN || v["prologue"].as_str().map(str::as_bytes) != Some(PROLOGUE) {
            return Err(ClientError::Protocol(format!("unexpected protocol/prologue: {v}")));
        }
        let key_id = v["key_id"].as_str().ok_or_else(|| ClientError::Protocol("no key_id".into()))?.to_owned();
        let key = v["public_key"]
            .as_str()
            .and_then(|k| B64.decode(k).ok())
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| ClientError::Protocol("public_key is not base64 of 32 bytes".into()))?;
        Ok((key_id, key))
    }

    /// `POST /v1/admin/users/{user_id}/devices` (§2) with an admin JWT.
    pub async fn enroll(
        &self,
        admin_jwt: &str,
        user_id: &str,
        device_id: &str,
        platform_id: i32,
        public_key_b64: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let body =
            serde_json::json!({ "device_id": device_id, "platform_id": platform_id, "public_key": public_key_b64 });
        Ok(self
            .http
            .post(self.url(&format!("/v1/admin/users/{user_id}/devices")))
            .bearer_auth(admin_jwt)
            .json(&body)
            .send()
            .await?)
    }

    /// The whole handshake (§3) with the current time as `ts` (kept strictly increasing in this process).
    /// A non-200 answer is `ClientError::Status(code, body)`.
    pub async fn handshake(
        &self,
        device: &DeviceKey,
        gateway_public: &[u8; 32],
        device_id: &str,
    ) -> Result<Session, ClientError> {
        let (pending, msg1) = handshake_message1(device, gateway_public, device_id, handshake_ts())?;
        let body = serde_json::json!({ "msg": B64.encode(msg1) }).to_string();
        let v: serde_json::Value = ok_json(self.handshake_raw(body.as_bytes()).await?).await?;
        let msg2 = v["msg"]
            .as_str()
            .and_then(|m| B64.decode(m).ok())
            .ok_or_else(|| ClientError::Protocol("no msg in the answer".into()))?;
        pending.read_message2(&msg2)
    }

    /// Posts arbitrary bytes to `/v1/auth/handshake`.
    pub async fn handshake_raw(&self, body: &[u8]) -> Result<reqwest::Response, ClientError> {
        Ok(self
            .http
            .post(self.url("/v1/auth/handshake"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await?)
    }

    /// A signed request with the current time and a fresh nonce; `body` None = empty body.
    ///
    /// It signs the request-target exactly as it goes on the wire: the URL is parsed first (reqwest
    /// sends the parsed form, which percent-encodes characters such as spaces and includes any path
    /// prefix of `base_url`), and the signed path and query are taken from that parsed URL.
    pub async fn call(
        &self,
        session: &Session,
        method: &str,
        path_and_query: &str,
        body: Option<&[u8]>,
    ) -> Result<reqwest::Response, ClientError> {
        self.call_with_headers(session, method, path_and_query, &[], body).await
    }

    /// [`Client::call`] with extra headers (headers are not signed: spec §4).
    pub async fn call_with_headers(
        &self,
        session: &Session,
        method: &str,
        path_and_query: &str,
        extra: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<reqwest::Response, ClientError> {
        let method = method.to_ascii_uppercase();
        let url =
            reqwest::Url::parse(&self.url(path_and_query)).map_err(|e| ClientError::Protocol(format!("URL: {e}")))?;
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut headers: Vec<(&str, String)> =
            session.sign_request(&method, &target, body.unwrap_or_default(), now_ms(), &Session::fresh_nonce());
        headers.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        self.send(&method, url, &headers, body).await
    }

    /// A request with exactly these extra headers (for tampering tests); the method is sent as given.
    ///
    /// The URL goes through reqwest's parser, which resolves `.`/`..` segments and percent-encodes
    /// characters such as spaces, so path-traversal probes need a raw TCP request instead.
    pub async fn send_with_headers(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<reqwest::Response, ClientError> {
        let url =
            reqwest::Url::parse(&self.url(path_and_query)).map_err(|e| ClientError::Protocol(format!("URL: {e}")))?;
        self.send(method, url, headers, body).await
    }

    async fn send(
        &self,
        method: &str,
        url: reqwest::Url,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<reqwest::Response, ClientError> {
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut req = self.http.request(method, url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.to_vec());
        }
        Ok(req.send().await?)
    }
}

async fn ok_json(res: reqwest::Response) -> Result<serde_json::Value, ClientError> {
    let status = res.status().as_u16();
    let text = res.text().await?;
    if status != 200 {
        return Err(ClientError::Status(status, text));
    }
    serde_json::from_str(&text).map_err(|e| ClientError::Protocol(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BODY: &[u8] = br#"{"to":"u2","text":"hi"}"#;
    const SIG: &str = "PuIjC0mMY3zzii7A9nJYsHA4bIobFf6SrZfIvo2UCyU";

    /// The example of client-auth §4.
    #[test]
    fn spec_vector() {
        let c = canonical_string(
            "c2Vzc2lvbi0x",
            1_767_225_600_000,
            "n0nce-0000000001",
            "POST",
            "/v1/messages",
            "dry=1",
            BODY,
        );
        let lines: Vec<&str> = c.split('\n').collect();
        assert_eq!(
            lines,
            [
                "IMGATE-HMAC-SHA256",
                "c2Vzc2lvbi0x",
                "1767225600000",
                "n0nce-0000000001",
                "POST",
                "/v1/messages",
                "dry=1",
                "69f38920b88cbe60f43d1ed524634e4ceeca3cba556c6ac00e525761ee861728"
            ]
        );
        assert_eq!(sign(&[1u8; 32], &c), SIG);
        let s = Session {
            session_id: "c2Vzc2lvbi0x".into(),
            session_key: [1; 32],
            user_id: "u".into(),
            platform_id: 1,
            expires_at: 0,
        };
        let h = s.sign_request("POST", "/v1/messages?dry=1", BODY, 1_767_225_600_000, "n0nce-0000000001");
        assert_eq!(
            h,
            vec![
                ("X-Imgate-Session", "c2Vzc2lvbi0x".to_owned()),
                ("X-Imgate-Timestamp", "1767225600000".to_owned()),
                ("X-Imgate-Nonce", "n0nce-0000000001".to_owned()),
                ("X-Imgate-Signature", SIG.to_owned()),
            ]
        );
    }

    #[test]
    fn empty_query_and_body() {
        let c = canonical_string("s", 1, "n", "get", "/v1/me", "", b"");
        assert!(!c.ends_with('\n'));
        let lines: Vec<&str> = c.split('\n').collect();
        assert_eq!(lines.len(), 8);
        assert_eq!(lines[4], "GET");
        assert_eq!(lines[6], "");
        assert_eq!(lines[7], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        // sign_request splits at the first '?' only; no '?' → empty query line.
        let s = Session {
            session_id: "s".into(),
            session_key: [2; 32],
            user_id: "u".into(),
            platform_id: 1,
            expires_at: 0,
        };
        let sig = |pq: &str| s.sign_request("GET", pq, b"", 1, "n")[3].1.clone();
        assert_eq!(sig("/v1/me"), sign(&[2; 32], &c));
        assert_eq!(sig("/a?b=1?c"), sign(&[2; 32], &canonical_string("s", 1, "n", "GET", "/a", "b=1?c", b"")));
    }

    #[test]
    fn nonces_and_keys() {
        let a = Session::fresh_nonce();
        assert!(
            (22..=64).contains(&a.len()) && a.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{a}"
        );
        assert_ne!(a, Session::fresh_nonce());
        let k = DeviceKey::from_bytes([7; 32]);
        assert_eq!(B64.decode(k.public_b64()).unwrap(), k.public());
        assert_eq!(k.public_b64().len(), 44, "standard base64 with padding");
        assert_ne!(DeviceKey::generate().public(), DeviceKey::generate().public());
        let t = handshake_ts();
        assert!(handshake_ts() > t && (t - now_ms()).abs() < 60_000);
    }

    fn responder(secret: &[u8; 32], prologue: &[u8]) -> snow::HandshakeState {
        snow::Builder::new(PATTERN.parse().expect("params"))
            .local_private_key(secret)
            .and_then(|b| b.prologue(prologue))
            .and_then(|b| b.build_responder())
            .expect("responder")
    }

    fn sid() -> String {
        B64URL.encode([9u8; 16])
    }

    /// A gateway-side answer to `m1`: checks the payload, returns (payload, message 2).
    fn respond(gw: &DeviceKey, m1: &[u8], session_json: &serde_json::Value) -> (serde_json::Value, Vec<u8>, Vec<u8>) {
        let mut r = responder(&gw.secret, PROLOGUE);
        let mut buf = [0u8; 1024];
        let n = r.read_message(m1, &mut buf).expect("read msg1");
        let p: serde_json::Value = serde_json::from_slice(&buf[..n]).expect("json");
        let remote = r.get_remote_static().expect("remote static").to_vec();
        let payload = session_json.to_string();
        let mut m2 = [0u8; 1024];
        let n = r.write_message(payload.as_bytes(), &mut m2).expect("msg2");
        assert!(r.is_handshake_finished());
        (p, remote, m2[..n].to_vec())
    }

    fn session_json(sid: &str) -> serde_json::Value {
        serde_json::json!({"session_id": sid, "session_key": B64.encode([5u8; 32]), "user_id": "u", "platform_id": 2, "expires_at": 9})
    }

    #[test]
    fn noise_round_trip_with_a_local_responder() {
        let gw = DeviceKey::generate();
        let device = DeviceKey::generate();
        let (pending, m1) = handshake_message1(&device, &gw.public(), "phone", 42).expect("msg1");
        let (p, remote, m2) = respond(&gw, &m1, &session_json(&sid()));
        assert_eq!(p, serde_json::json!({"device_id": "phone", "ts": 42}));
        assert_eq!(remote, device.public());
        let s = pending.read_message2(&m2).expect("session");
        assert_eq!(
            (s.session_id, s.session_key, s.user_id.as_str(), s.platform_id, s.expires_at),
            (sid(), [5u8; 32], "u", 2, 9)
        );
    }

    #[test]
    fn wrong_prologue_or_key_fails() {
        let gw = DeviceKey::generate();
        let device = DeviceKey::generate();
        let (pending, m1) = handshake_message1(&device, &gw.public(), "phone", 1).expect("msg1");
        let mut buf = [0u8; 512];
        assert!(responder(&gw.secret, b"imgate/0").read_message(&m1, &mut buf).is_err());
        assert!(responder(&DeviceKey::generate().secret, PROLOGUE).read_message(&m1, &mut buf).is_err());
        // A message 2 answering another message 1 (another ephemeral key): the client refuses it.
        let (_, _, m2_for_other) =
            respond(&gw, &handshake_message1(&device, &gw.public(), "phone", 2).unwrap().1, &session_json(&sid()));
        assert!(
            matches!(pending.read_message2(&m2_for_other), Err(ClientError::Noise(_))),
            "message 2 of another handshake"
        );
    }

    #[test]
    fn bad_message2_payloads_are_protocol_errors() {
        let gw = DeviceKey::generate();
        let device = DeviceKey::generate();
        let bad = [
            session_json("c2Vzc2lvbi0x"),                            // 9 bytes: too short
            session_json(&format!("{}=", B64URL.encode([1u8; 17]))), // padded
            serde_json::json!({"session_id": sid(), "session_key": B64.encode([5u8; 31]), "user_id": "u", "platform_id": 2, "expires_at": 9}),
            serde_json::json!({"session_id": sid(), "session_key": B64.encode([5u8; 32]), "user_id": "u", "platform_id": 2}),
        ];
        for (i, payload) in bad.iter().enumerate() {
            let (pending, m1) = handshake_message1(&device, &gw.public(), "phone", 1).expect("msg1");
            let (_, _, m2) = respond(&gw, &m1, payload);
            assert!(matches!(pending.read_message2(&m2), Err(ClientError::Protocol(_))), "case {i}");
        }
    }

    /// One raw HTTP request as received on the wire.
    struct Received {
        head: String,
        body: Vec<u8>,
    }

    impl Received {
        fn request_line(&self) -> &str {
            self.head.lines().next().unwrap_or_default()
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim())
            })
        }
    }

    /// A server on loopback that answers each of its connections' first request by `answer`.
    async fn serve_once<F>(answer: F) -> (String, tokio::task::JoinHandle<Received>)
    where
        F: FnOnce(&Received) -> (u16, String) + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                let n = sock.read(&mut chunk).await.expect("read");
                assert!(n > 0, "connection closed before the headers ended");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
            };
            let head = String::from_utf8(buf[..head_end].to_vec()).expect("utf-8 head");
            let mut got = Received { head, body: Vec::new() };
            let len: usize = got.header("content-length").map_or(0, |v| v.parse().expect("length"));
            while buf.len() < head_end + len {
                let n = sock.read(&mut chunk).await.expect("read");
                assert!(n > 0, "connection closed before the body ended");
                buf.extend_from_slice(&chunk[..n]);
            }
            got.body = buf[head_end..head_end + len].to_vec();
            let (status, body) = answer(&got);
            let reply = format!("HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            sock.write_all(reply.as_bytes()).await.expect("write");
            sock.shutdown().await.ok();
            got
        });
        (url, task)
    }

    /// Checks the four headers of a received request against the session, as the gateway would.
    fn verify(got: &Received, s: &Session) {
        let target = got.request_line().split(' ').nth(1).expect("request-target");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let method = got.request_line().split(' ').next().unwrap();
        assert_eq!(got.header("x-imgate-session"), Some(s.session_id.as_str()));
        let ts: i64 = got.header("x-imgate-timestamp").expect("timestamp").parse().expect("ms");
        assert!((ts - now_ms()).abs() < 60_000);
        let nonce = got.header("x-imgate-nonce").expect("nonce");
        let c = canonical_string(&s.session_id, ts, nonce, method, path, query, &got.body);
        assert_eq!(got.header("x-imgate-signature"), Some(sign(&s.session_key, &c).as_str()), "{c}");
    }

    #[tokio::test]
    async fn call_signs_what_goes_on_the_wire() {
        let s = Session { session_id: sid(), session_key: [3; 32], user_id: "u".into(), platform_id: 1, expires_at: 0 };
        let (url, task) = serve_once(|_| (200, "{}".into())).await;
        let res = Client::new(&url).call(&s, "post", "/v1/messages?dry=1&a=%2F", Some(BODY)).await.expect("call");
        assert_eq!(res.status(), 200);
        let got = task.await.unwrap();
        assert_eq!(got.request_line(), "POST /v1/messages?dry=1&a=%2F HTTP/1.1");
        assert_eq!(got.body, BODY);
        assert_eq!(got.header("content-type"), Some("application/json"));
        verify(&got, &s);

        // Characters reqwest percent-encodes: the signature covers the encoded form that is sent.
        let (url, task) = serve_once(|_| (200, "{}".into())).await;
        Client::new(&format!("{url}/")).call(&s, "GET", "/v1/a b?q=x y", None).await.expect("call");
        let got = task.await.unwrap();
        assert_eq!(got.request_line(), "GET /v1/a%20b?q=x%20y HTTP/1.1");
        assert!(got.body.is_empty());
        verify(&got, &s);
    }

    #[tokio::test]
    async fn send_with_headers_sends_exactly_those() {
        let s = Session { session_id: sid(), session_key: [3; 32], user_id: "u".into(), platform_id: 1, expires_at: 0 };
        let mut headers = s.sign_request("GET", "/v1/me", b"", now_ms(), &Session::fresh_nonce());
        headers[2].1 = "tampered-nonce-000000".into();
        let (url, task) = serve_once(|_| (401, r#"{"code":"unauthenticated"}"#.into())).await;
        let res = Client::new(&url).send_with_headers("GET", "/v1/me", &headers, None).await.expect("send");
        assert_eq!(res.status(), 401);
        let got = task.await.unwrap();
        assert_eq!(got.header("x-imgate-nonce"), Some("tampered-nonce-000000"));
        assert_eq!(got.header("x-imgate-signature"), Some(headers[3].1.as_str()));
        assert_eq!(got.header("content-type"), None);
    }

    #[tokio::test]
    async fn handshake_over_http() {
        let gw = DeviceKey::generate();
        let device = DeviceKey::generate();
        let gw2 = DeviceKey::from_bytes(gw.secret_bytes());
        let (url, task) = serve_once(move |got| {
            assert_eq!(got.request_line(), "POST /v1/auth/handshake HTTP/1.1");
            assert_eq!(got.header("content-type"), Some("application/json"));
            let v: serde_json::Value = serde_json::from_slice(&got.body).expect("json body");
            let m1 = B64.decode(v["msg"].as_str().expect("msg")).expect("b64");
            let (p, _, m2) = respond(&gw2, &m1, &session_json(&B64URL.encode([4u8; 32])));
            assert_eq!(p["device_id"], "tablet");
            assert!((p["ts"].as_i64().expect("integer ts") - now_ms()).abs() < 60_000);
            (200, serde_json::json!({"msg": B64.encode(m2)}).to_string())
        })
        .await;
        let s = Client::new(&url).handshake(&device, &gw.public(), "tablet").await.expect("handshake");
        task.await.unwrap();
        assert_eq!((s.session_id, s.session_key, s.platform_id), (B64URL.encode([4u8; 32]), [5u8; 32], 2));

        let (url, _task) =
            serve_once(|_| (401, r#"{"code":"unauthenticated","message":"no","request_id":"r"}"#.into())).await;
        match Client::new(&url).handshake(&device, &gw.public(), "tablet").await {
            Err(ClientError::Status(401, body)) => assert!(body.contains("unauthenticated"), "{body}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn gateway_key_and_enroll() {
        let gw = DeviceKey::generate();
        let doc = serde_json::json!({"protocol": PATTERN, "prologue": "imgate/1", "key_id": "k1", "public_key": gw.public_b64()}).to_string();
        let (url, task) = serve_once(move |_| (200, doc)).await;
        assert_eq!(Client::new(&url).gateway_key().await.expect("key"), ("k1".to_owned(), gw.public()));
        assert_eq!(task.await.unwrap().request_line(), "GET /v1/auth/gateway-key HTTP/1.1");

        let doc = serde_json::json!({"protocol": PATTERN, "prologue": "imgate/0", "key_id": "k1", "public_key": gw.public_b64()}).to_string();
        let (url, _task) = serve_once(move |_| (200, doc)).await;
        assert!(matches!(Client::new(&url).gateway_key().await, Err(ClientError::Protocol(_))));

        let device = DeviceKey::generate();
        let (url, task) = serve_once(|_| (201, "{}".into())).await;
        let res =
            Client::new(&url).enroll("jwt.x.y", "alice", "phone-1", 2, &device.public_b64()).await.expect("enroll");
        assert_eq!(res.status(), 201);
        let got = task.await.unwrap();
        assert_eq!(got.request_line(), "POST /v1/admin/users/alice/devices HTTP/1.1");
        assert_eq!(got.header("authorization"), Some("Bearer jwt.x.y"));
        assert_eq!(got.header("content-type"), Some("application/json"));
        let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(v, serde_json::json!({"device_id": "phone-1", "platform_id": 2, "public_key": device.public_b64()}));
    }
}
