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
pub fn canonical_string(session_id: &str, timestamp_ms: i64, nonce: &str, method: &str, path: &str, query: &str, body: &[u8]) -> String {
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
        let p: Msg2Payload = serde_json::from_slice(&payload[..n]).map_err(|e| ClientError::Protocol(format!("message 2 payload: {e}")))?;
        let key: [u8; 32] = B64
            .decode(p.session_key.as_bytes())
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| ClientError::Protocol("session_key is not base64 of 32 bytes".into()))?;
        Ok(Session { session_id: p.session_id, session_key: key, user_id: p.user_id, platform_id: p.platform_id, expires_at: p.expires_at })
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
    pub fn sign_request(&self, method: &str, path_and_query: &str, body: &[u8], timestamp_ms: i64, nonce: &str) -> Vec<(&'static str, String)> {
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

/// HTTP access to one gateway.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base_url: String,
}

impl Client {
    pub fn new(base_url: &str) -> Client {
        let http = reqwest::Client::builder().no_proxy().build().unwrap_or_default();
        Client { http, base_url: base_url.trim_end_matches('/').to_owned() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `GET /v1/auth/gateway-key` → (key_id, public key).
    pub async fn gateway_key(&self) -> Result<(String, [u8; 32]), ClientError> {
        let res = self.http.get(self.url("/v1/auth/gateway-key")).send().await?;
        let v: serde_json::Value = ok_json(res).await?;
        let key = v["public_key"]
            .as_str()
            .and_then(|k| B64.decode(k).ok())
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| ClientError::Protocol("public_key is not base64 of 32 bytes".into()))?;
        Ok((v["key_id"].as_str().unwrap_or_default().to_owned(), key))
    }

    /// `POST /v1/admin/users/{user_id}/devices` (§2) with an admin JWT.
    pub async fn enroll(&self, admin_jwt: &str, user_id: &str, device_id: &str, platform_id: i32, public_key_b64: &str) -> Result<reqwest::Response, ClientError> {
        let body = serde_json::json!({ "device_id": device_id, "platform_id": platform_id, "public_key": public_key_b64 });
        Ok(self.http.post(self.url(&format!("/v1/admin/users/{user_id}/devices"))).bearer_auth(admin_jwt).json(&body).send().await?)
    }

    /// The whole handshake with the current time as `ts`.
    pub async fn handshake(&self, device: &DeviceKey, gateway_public: &[u8; 32], device_id: &str) -> Result<Session, ClientError> {
        let (pending, msg1) = handshake_message1(device, gateway_public, device_id, now_ms())?;
        let body = serde_json::json!({ "msg": B64.encode(msg1) }).to_string();
        let v: serde_json::Value = ok_json(self.handshake_raw(body.as_bytes()).await?).await?;
        let msg2 = v["msg"].as_str().and_then(|m| B64.decode(m).ok()).ok_or_else(|| ClientError::Protocol("no msg in the answer".into()))?;
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

    /// A signed request with the current time and a fresh nonce.
    pub async fn call(&self, session: &Session, method: &str, path_and_query: &str, body: Option<&[u8]>) -> Result<reqwest::Response, ClientError> {
        let headers = session.sign_request(method, path_and_query, body.unwrap_or_default(), now_ms(), &Session::fresh_nonce());
        self.send_with_headers(method, path_and_query, &headers, body).await
    }

    /// A request with exactly these extra headers (for tampering tests).
    pub async fn send_with_headers(&self, method: &str, path_and_query: &str, headers: &[(&str, String)], body: Option<&[u8]>) -> Result<reqwest::Response, ClientError> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut req = self.http.request(method, self.url(path_and_query));
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

    /// The example of client-auth §4.
    #[test]
    fn spec_vector() {
        let c = canonical_string("c2Vzc2lvbi0x", 1_767_225_600_000, "n0nce-0000000001", "POST", "/v1/messages", "dry=1", br#"{"to":"u2","text":"hi"}"#);
        assert_eq!(c.lines().last(), Some("69f38920b88cbe60f43d1ed524634e4ceeca3cba556c6ac00e525761ee861728"));
        assert_eq!(sign(&[1u8; 32], &c), "PuIjC0mMY3zzii7A9nJYsHA4bIobFf6SrZfIvo2UCyU");
        let s = Session { session_id: "c2Vzc2lvbi0x".into(), session_key: [1; 32], user_id: "u".into(), platform_id: 1, expires_at: 0 };
        let h = s.sign_request("POST", "/v1/messages?dry=1", br#"{"to":"u2","text":"hi"}"#, 1_767_225_600_000, "n0nce-0000000001");
        assert_eq!(h[3].1, "PuIjC0mMY3zzii7A9nJYsHA4bIobFf6SrZfIvo2UCyU");
    }

    #[test]
    fn empty_query_and_body() {
        let c = canonical_string("s", 1, "n", "get", "/v1/me", "", b"");
        let lines: Vec<&str> = c.split('\n').collect();
        assert_eq!(lines.len(), 8);
        assert_eq!(lines[4], "GET");
        assert_eq!(lines[6], "");
        assert_eq!(lines[7], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    fn responder(secret: &[u8; 32], prologue: &[u8]) -> snow::HandshakeState {
        snow::Builder::new(PATTERN.parse().expect("params"))
            .local_private_key(secret)
            .and_then(|b| b.prologue(prologue))
            .and_then(|b| b.build_responder())
            .expect("responder")
    }

    #[test]
    fn noise_round_trip_with_a_local_responder() {
        let gw = DeviceKey::generate();
        let device = DeviceKey::generate();
        let (pending, m1) = handshake_message1(&device, &gw.public(), "phone", 42).expect("msg1");
        let mut r = responder(&gw.secret, PROLOGUE);
        let mut buf = [0u8; 512];
        let n = r.read_message(&m1, &mut buf).expect("read msg1");
        let p: serde_json::Value = serde_json::from_slice(&buf[..n]).expect("json");
        assert_eq!(p, serde_json::json!({"device_id": "phone", "ts": 42}));
        assert_eq!(r.get_remote_static(), Some(&device.public()[..]));
        let payload = serde_json::json!({"session_id": "sid", "session_key": B64.encode([5u8; 32]), "user_id": "u", "platform_id": 2, "expires_at": 9}).to_string();
        let mut m2 = [0u8; 512];
        let n = r.write_message(payload.as_bytes(), &mut m2).expect("msg2");
        let s = pending.read_message2(&m2[..n]).expect("session");
        assert_eq!((s.session_id.as_str(), s.session_key, s.user_id.as_str(), s.platform_id, s.expires_at), ("sid", [5u8; 32], "u", 2, 9));
    }

    #[test]
    fn wrong_prologue_or_key_fails() {
        let gw = DeviceKey::generate();
        let device = DeviceKey::generate();
        let (_, m1) = handshake_message1(&device, &gw.public(), "phone", 1).expect("msg1");
        let mut buf = [0u8; 512];
        assert!(responder(&gw.secret, b"imgate/0").read_message(&m1, &mut buf).is_err());
        assert!(responder(&DeviceKey::generate().secret, PROLOGUE).read_message(&m1, &mut buf).is_err());
    }
}
