//! The integration harness: a real imgate gateway in front of a real OpenIM emulator, on loopback.
//!
//! [`Harness::start`] starts the emulator on `127.0.0.1:0`, writes a config and key files into a
//! fresh temporary folder (three admin issuers: EdDSA, RS256, HS256), builds the gateway from that
//! config exactly as `imgate serve` would, and serves it on `127.0.0.1:0`. Tests then speak HTTP
//! to it with reqwest: no mocks on either side. [`Options`] changes what a test needs changed.

pub mod plugins;
pub mod raw;
pub mod redis_server;
pub mod reload;
pub mod soak;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;

pub use openim_emu::{Emulator, Fault};

pub const ED_ISSUER: &str = "https://idp.test/ed";
pub const RS_ISSUER: &str = "https://idp.test/rs";
pub const HS_ISSUER: &str = "https://idp.test/hs";
pub const AUDIENCE: &str = "imgate-admin";
pub const ED_KID: &str = "ed-1";
pub const RS_KID: &str = "rs-1";
pub const HS_KID: &str = "hs-1";

const RSA_PRIVATE: &str = include_str!("../fixtures/test_rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../fixtures/test_rsa_public.pem");

/// What a test may change from the defaults.
#[derive(Clone)]
pub struct Options {
    pub emu: openim_emu::Config,
    pub openim_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
    /// Point the gateway at this URL instead of the emulator (e.g. a closed port).
    pub openim_api_url: Option<String>,
    /// Extra TOML appended to the generated config.
    pub extra_toml: String,
    /// Extra `key = value` lines of the `[server]` table (which `extra_toml` cannot reopen).
    pub server_toml: String,
    /// The `[rate_limits]` tables (generous by default so suites are not throttled).
    pub rate_limits_toml: String,
    /// Extra files (name, content) written next to the config before the gateway starts.
    pub files: Vec<(String, String)>,
    /// The plugins' key-value store (default: imgate's in-memory one).
    pub plugin_kv: Option<std::sync::Arc<dyn host::plugins::kv::PluginKv>>,
    /// `openim.secret` of the gateway when it is not the emulator's (a misconfigured gateway).
    pub openim_secret: Option<String>,
    /// `openim.secret_file` (a name in the gateway's directory, written with the emulator's
    /// secret unless `files` writes it) instead of an inline `openim.secret`.
    pub openim_secret_file: Option<String>,
    /// Extra `key = value` lines of the `[openim]` table.
    pub openim_toml: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            emu: openim_emu::Config::default(),
            openim_timeout_ms: 2_000,
            request_timeout_ms: 5_000,
            max_body_bytes: 64 * 1024,
            openim_api_url: None,
            extra_toml: String::new(),
            server_toml: String::new(),
            rate_limits_toml: "[rate_limits.default]\nper_second = 1000\nburst = 1000\n[rate_limits.send]\nper_second = 1000\nburst = 1000\n".into(),
            files: Vec::new(),
            plugin_kv: None,
            openim_secret: None,
            openim_secret_file: None,
            openim_toml: String::new(),
        }
    }
}

/// A running gateway + emulator pair.
pub struct Harness {
    /// Shared by the peers of a fleet ([`Harness::peer`]); stopped with the last of them.
    pub emu: std::sync::Arc<Emulator>,
    pub gateway_url: String,
    /// `GET` here for the gateway's Prometheus metrics.
    pub metrics_url: String,
    pub http: reqwest::Client,
    pub dir: PathBuf,
    /// The gateway's state (its store, config), for checks the HTTP API cannot make yet.
    pub state: host::AppState,
    ed_private_pem: String,
    hs_secret: Vec<u8>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The first instance owns the folder; its peers share it (and its keys).
    owns_dir: bool,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Harness {
        Harness::try_start_with(opts).await.unwrap_or_else(|e| panic!("harness state: {e}"))
    }

    /// Like [`Harness::start_with`], but a configuration the gateway refuses is returned as the
    /// error text `imgate check-config` would print (for tests of refused configurations).
    pub async fn try_start_with(opts: Options) -> Result<Harness, String> {
        let emu = Emulator::start(opts.emu.clone()).await.expect("emulator starts");
        let dir = std::env::temp_dir().join(format!("imgate-e2e-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let admin = host::keys::generate_admin_key().expect("ed25519 key");
        let hs_secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        std::fs::write(dir.join("ed.pub.pem"), &admin.public_pem).expect("write");
        std::fs::write(dir.join("rs.pub.pem"), RSA_PUBLIC).expect("write");
        std::fs::write(dir.join("hs.secret"), &hs_secret).expect("write");
        let gw = host::keys::GatewayKey::generate("gw-1");
        std::fs::write(dir.join("gw.key"), gw.secret_b64()).expect("write");
        if let Some(name) = &opts.openim_secret_file {
            std::fs::write(dir.join(name), opts.openim_secret.as_deref().unwrap_or(&opts.emu.secret)).expect("write");
        }
        for (name, content) in &opts.files {
            std::fs::write(dir.join(name), content).expect("write");
        }
        let api_url = opts.openim_api_url.clone().unwrap_or_else(|| emu.api_url());
        let toml = config_toml(&opts, &api_url, &emu.ws_url());
        std::fs::write(dir.join("imgate.toml"), &toml).expect("write");
        let config = host::Config::parse(&toml).unwrap_or_else(|e| panic!("harness config: {e}"));
        let build =
            host::state::BuildOptions { plugin_kv: opts.plugin_kv.clone(), config_file: None, check_only: false };
        let state = host::state::build_with(config, &dir, build).map_err(|e| e.to_string())?;
        let (state, gateway_url, metrics_url, stop, task) = serve(state, &dir).await;
        let http = reqwest::Client::builder().no_proxy().build().expect("client");
        Ok(Harness {
            emu: std::sync::Arc::new(emu),
            gateway_url,
            metrics_url,
            http,
            dir,
            state,
            ed_private_pem: admin.private_pem,
            hs_secret,
            stop: Some(stop),
            task: Some(task),
            owns_dir: true,
        })
    }

    /// Another imgate instance of the same deployment: the same config, keys and OpenIM, its own
    /// listener, audit file (`audit-<instance>.jsonl`) and `[store] instance_id`. With a
    /// `[store] backend = "redis"` config, the two share their state through Redis.
    pub async fn peer(&self, instance: &str) -> Harness {
        self.peer_with(instance, &[]).await
    }

    /// [`Harness::peer`] with these replacements made in its config (e.g. its own plugin paths).
    pub async fn peer_with(&self, instance: &str, replace: &[(&str, &str)]) -> Harness {
        let mut toml = std::fs::read_to_string(self.dir.join("imgate.toml")).expect("config");
        for (from, to) in replace {
            toml = toml.replace(from, to);
        }
        let toml = toml.replace("file = \"audit.jsonl\"", &format!("file = \"audit-{instance}.jsonl\""));
        let toml = toml.replace("instance_id = \"a\"", &format!("instance_id = \"{instance}\""));
        let config = host::Config::parse(&toml).unwrap_or_else(|e| panic!("peer config: {e}"));
        let state = host::state::build(config, &self.dir).unwrap_or_else(|e| panic!("peer state: {e}"));
        let (state, gateway_url, metrics_url, stop, task) = serve(state, &self.dir).await;
        Harness {
            emu: self.emu.clone(),
            gateway_url,
            metrics_url,
            http: self.http.clone(),
            dir: self.dir.clone(),
            state,
            ed_private_pem: self.ed_private_pem.clone(),
            hs_secret: self.hs_secret.clone(),
            stop: Some(stop),
            task: Some(task),
            owns_dir: false,
        }
    }

    /// The value of one metric line (`name{labels}` exactly as exported), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = self.http.get(&self.metrics_url).send().await.ok()?.text().await.ok()?;
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// The audit file, after every record accepted so far is written.
    pub async fn audit_file(&self) -> PathBuf {
        self.state.audit.flush().await;
        self.dir.join("audit.jsonl")
    }

    /// A client of the gateway (the `imgate-client` library).
    pub fn client(&self) -> imgate_client::Client {
        imgate_client::Client::new(&self.gateway_url)
    }

    /// The gateway's current Noise static public key.
    pub fn gateway_public(&self) -> [u8; 32] {
        self.state.gateway_keys[0].public.to_bytes()
    }

    /// Registers `user_id` in OpenIM and enrolls a fresh device key for it; returns the key.
    pub async fn user_with_device(&self, user_id: &str, device_id: &str, platform_id: i32) -> imgate_client::DeviceKey {
        let admin = self.admin_jwt("users:write devices:write");
        let (status, body) = self
            .post("/v1/admin/users", Some(&admin), &json!({"users": [{"user_id": user_id, "nickname": user_id}]}))
            .await;
        assert!(status == 201 || status == 409, "register {user_id}: {status} {body}");
        let key = imgate_client::DeviceKey::generate();
        let res =
            self.client().enroll(&admin, user_id, device_id, platform_id, &key.public_b64()).await.expect("enroll");
        assert_eq!(res.status(), 201, "enroll {user_id}/{device_id}");
        key
    }

    /// A user with a device and a live session.
    pub async fn session(&self, user_id: &str) -> (imgate_client::DeviceKey, imgate_client::Session) {
        let key = self.user_with_device(user_id, "phone", 1).await;
        let session = self.client().handshake(&key, &self.gateway_public(), "phone").await.expect("handshake");
        (key, session)
    }

    /// Sends raw bytes on a fresh TCP connection and returns the status code of the answer
    /// (for request targets HTTP client libraries would normalise).
    pub async fn raw_status(&self, request: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.gateway_url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.expect("read");
        let head = String::from_utf8_lossy(&buf[..n]);
        head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.gateway_url, path)
    }

    /// A valid EdDSA admin token with these scopes.
    pub fn admin_jwt(&self, scope: &str) -> String {
        let now = now_secs();
        self.sign_ed(
            &header(Algorithm::EdDSA, ED_KID),
            &json!({"iss": ED_ISSUER, "aud": AUDIENCE, "sub": "ops@test", "scope": scope, "iat": now, "exp": now + 300}),
        )
    }

    pub fn sign_ed(&self, header: &Header, claims: &Value) -> String {
        let key = EncodingKey::from_ed_pem(self.ed_private_pem.as_bytes()).expect("ed key");
        jsonwebtoken::encode(header, claims, &key).expect("sign")
    }

    pub fn sign_rs(&self, header: &Header, claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("rsa key");
        jsonwebtoken::encode(header, claims, &key).expect("sign")
    }

    pub fn sign_hs(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &EncodingKey::from_secret(&self.hs_secret)).expect("sign")
    }

    /// HS256 over `header.payload` with an arbitrary key: for forged tokens (alg confusion).
    pub fn sign_raw_hs256(header_json: &Value, claims: &Value, key: &[u8]) -> String {
        let h = B64URL.encode(header_json.to_string());
        let c = B64URL.encode(claims.to_string());
        let signing_input = format!("{h}.{c}");
        let sig =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &EncodingKey::from_secret(key), Algorithm::HS256)
                .expect("hmac");
        format!("{signing_input}.{sig}")
    }

    pub fn rsa_public_pem() -> &'static str {
        RSA_PUBLIC
    }

    /// GET with an optional bearer token; returns status and JSON body.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        into_json(req.send().await.expect("gateway answers")).await
    }

    /// POST a JSON body with an optional bearer token; returns status and JSON body.
    pub async fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.http.post(self.url(path)).json(body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        into_json(req.send().await.expect("gateway answers")).await
    }

    /// Calls the emulator directly, as any OpenIM client could (no gateway in between).
    pub async fn openim_direct(&self, path: &str, token: Option<&str>, body: &Value) -> Value {
        let mut req =
            self.http.post(format!("{}{}", self.emu.api_url(), path)).header("operationID", "test-direct").json(body);
        if let Some(t) = token {
            req = req.header("token", t);
        }
        req.send().await.expect("emulator answers").json().await.expect("envelope")
    }

    /// Stops the gateway (draining) and the emulator.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if let Ok(emu) = std::sync::Arc::try_unwrap(self.emu) {
            emu.shutdown().await;
        }
    }

    /// Asks the gateway to stop without waiting (for drain tests); returns the join handle.
    pub fn begin_shutdown(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take()
    }
}

type Served = (host::AppState, String, String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>);

/// Opens the audit log and serves a built state on fresh loopback listeners (API and metrics).
async fn serve(state: host::AppState, dir: &std::path::Path) -> Served {
    let state = state.open_audit(dir).await.unwrap_or_else(|e| panic!("harness audit: {e}"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gateway_url = format!("http://{}", listener.local_addr().expect("addr"));
    let metrics = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics_url = format!("http://{}/metrics", metrics.local_addr().expect("addr"));
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(host::run(state.clone(), listener, Some(metrics), async {
        let _ = stop_rx.await;
    }));
    (state, gateway_url, metrics_url, stop, task)
}

pub fn header(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    h
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

pub async fn into_json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let bytes = res.bytes().await.expect("body");
    let value =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

fn config_toml(opts: &Options, api_url: &str, ws_url: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = {max_body}
request_timeout_ms = {req_timeout}
{server}

[openim]
api_url = "{api_url}"
ws_url = "{ws_url}"
admin_user_id = "{admin}"
{secret}
timeout_ms = {timeout}
{openim}

[[gateway.keys]]
id = "gw-1"
private_key_file = "gw.key"

[[admin.issuer]]
issuer = "{ED_ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["EdDSA"]
keys = [{{ kid = "{ED_KID}", file = "ed.pub.pem" }}]

[[admin.issuer]]
issuer = "{RS_ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["RS256"]
keys = [{{ kid = "{RS_KID}", file = "rs.pub.pem" }}]

[[admin.issuer]]
issuer = "{HS_ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["HS256"]
keys = [{{ kid = "{HS_KID}", file = "hs.secret" }}]

[audit]
file = "audit.jsonl"

{rate_limits}
{extra}
"#,
        max_body = opts.max_body_bytes,
        req_timeout = opts.request_timeout_ms,
        admin = opts.emu.admin_user_ids.first().map(String::as_str).unwrap_or("imAdmin"),
        secret = match &opts.openim_secret_file {
            Some(name) => format!("secret_file = \"{name}\""),
            None => format!("secret = \"{}\"", opts.openim_secret.as_deref().unwrap_or(&opts.emu.secret)),
        },
        openim = opts.openim_toml,
        timeout = opts.openim_timeout_ms,
        extra = opts.extra_toml,
        server = opts.server_toml,
        rate_limits = opts.rate_limits_toml,
    )
}
