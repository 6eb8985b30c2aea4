//! Brings up what the benchmark measures, on loopback: the OpenIM emulator, two imgate gateways
//! (one without plugins for cases 3 and 6, one with the plugin chain for cases 4 and 5), nginx in
//! front of the emulator (HTTP cases only), for case 7 a `redis-server` (no persistence) and a
//! gateway without plugins whose `[store]` is that Redis (with a metrics listener: its store round
//! trips are counted), and, for the WebSocket section, a gateway without plugins that only relays
//! WebSockets (so its memory is the relay's); then seeds users, devices, sessions, bearer tokens
//! and OpenIM tokens.
//!
//! The three parties that hold OpenIM tokens use disjoint users, because OpenIM's default
//! multi-login policy keeps one token per (user, platform) and a new one kicks the old (contract
//! §4.2); and the harness fetches its admin token as a second admin id (`benchAdmin`), because
//! every `get_admin_token` demotes the previous tokens of the same admin id (contract §4.1).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use imgate_client::{Client, DeviceKey, Session};
use rand::RngCore;
use serde_json::{json, Value};

use crate::procs::{self, Proc};

/// The user every lookup asks for and every message goes to.
pub(crate) const PEER: &str = "benchpeer";
const BENCH_ADMIN: &str = "benchAdmin";
const ISSUER: &str = "imgate-bench";
const AUDIENCE: &str = "imgate-admin";
const KID: &str = "bench-1";

pub(crate) struct SetupOptions {
    pub(crate) imgate: PathBuf,
    pub(crate) emu: PathBuf,
    pub(crate) plugins_dir: PathBuf,
    pub(crate) nginx: String,
    pub(crate) nginx_workers: String,
    /// imgate's `telemetry.log_level`.
    pub(crate) log_level: String,
    pub(crate) dir: PathBuf,
    /// Users (and so sessions, tokens) per party; connection i uses user i mod this.
    pub(crate) users: usize,
    /// A command the plugin-less gateway runs under (valgrind's callgrind: the plugin engine's
    /// pooling allocator reserves more address space than valgrind can give), with its arguments.
    pub(crate) wrap: Option<Vec<String>>,
    /// Start nginx (the HTTP cases' peer).
    pub(crate) start_nginx: bool,
    /// The `redis-server` binary of case 7 (a Redis server and a gateway on it are started), or
    /// why case 7 does not run (the reason its cells give).
    pub(crate) redis: Result<PathBuf, String>,
    /// The WebSocket section's gateway and users.
    pub(crate) ws: Option<WsOptions>,
}

/// What the WebSocket section needs.
pub(crate) struct WsOptions {
    /// Users the idle connections are spread over.
    pub(crate) idle_users: usize,
    /// Users of the latency runs per party (one per connection of the highest concurrency).
    pub(crate) latency_users: usize,
    /// `[ws] max_connections` of every gateway.
    pub(crate) max_connections: usize,
}

/// nginx in front of the emulator.
pub(crate) struct Nginx {
    pub(crate) proc: Proc,
    pub(crate) url: String,
    /// The master and its workers.
    pub(crate) pids: Vec<u32>,
    pub(crate) conf: PathBuf,
}

/// The WebSocket section's gateway and identities.
pub(crate) struct WsEnv {
    /// The relay-only gateway (no plugins): idle connections and the plugin-less latency case.
    pub(crate) gateway: Gateway,
    /// Its metrics listener (`imgate_ws_connections`).
    pub(crate) metrics_url: String,
    /// `(user, bearer token)` on `gateway`, for the idle connections.
    pub(crate) idle: Vec<(String, String)>,
    /// `(user, bearer token)` on `gateway`, one per latency connection.
    pub(crate) relay: Vec<(String, String)>,
    /// `(user, bearer token)` on the plugin gateway, one per latency connection.
    pub(crate) plugged: Vec<(String, String)>,
    /// `(user, OpenIM user token)` for direct connections to the emulator's msg gateway.
    pub(crate) direct: Vec<(String, String)>,
    /// The emulator's msg gateway, `127.0.0.1:port`.
    pub(crate) emu_ws_addr: String,
}

/// Case 7: a redis-server and the plugin-less gateway whose store it is.
pub(crate) struct RedisEnv {
    pub(crate) server: Proc,
    /// `redis-server --version`.
    pub(crate) version: String,
    pub(crate) gateway: Gateway,
    /// The gateway's metrics listener (`imgate_store_round_trips_total`).
    pub(crate) metrics_url: String,
}

/// One imgate process and its seeded clients.
pub(crate) struct Gateway {
    pub(crate) proc: Proc,
    pub(crate) url: String,
    pub(crate) sessions: Vec<Session>,
    /// Bearer tokens for `/openim/*` (header `token`), one per session.
    pub(crate) bearers: Vec<String>,
    /// `(user, bearer token)` of the WebSocket users seeded on this gateway.
    pub(crate) ws_bearers: Vec<(String, String)>,
    pub(crate) audit_file: PathBuf,
    pub(crate) config_file: PathBuf,
}

pub(crate) struct Env {
    pub(crate) emu: Proc,
    pub(crate) emu_url: String,
    /// Absent when only the WebSocket section runs.
    pub(crate) nginx: Option<Nginx>,
    pub(crate) plain: Gateway,
    pub(crate) plugged: Gateway,
    /// Case 7's Redis and gateway, or why they were not started.
    pub(crate) redis: Result<RedisEnv, String>,
    pub(crate) ws: Option<WsEnv>,
    /// OpenIM user tokens of the direct users (emulator and nginx cases).
    pub(crate) direct_tokens: Vec<String>,
    pub(crate) direct_users: Vec<String>,
    /// An OpenIM admin token (of `benchAdmin`) for direct sends.
    pub(crate) admin_token: String,
}

impl Env {
    /// An error if any process under test has died.
    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        self.emu.check_alive()?;
        if let Some(n) = self.nginx.as_mut() {
            n.proc.check_alive()?;
        }
        if let Some(ws) = self.ws.as_mut() {
            ws.gateway.proc.check_alive()?;
        }
        if let Ok(r) = self.redis.as_mut() {
            r.server.check_alive()?;
            r.gateway.proc.check_alive()?;
        }
        self.plain.proc.check_alive()?;
        self.plugged.proc.check_alive()
    }

    /// Stops every process: gateways first (they drain), then Redis, nginx, the emulator.
    pub(crate) fn stop(&mut self) {
        self.plain.proc.stop(Duration::from_secs(5));
        self.plugged.proc.stop(Duration::from_secs(5));
        if let Some(ws) = self.ws.as_mut() {
            ws.gateway.proc.stop(Duration::from_secs(5));
        }
        if let Ok(r) = self.redis.as_mut() {
            r.gateway.proc.stop(Duration::from_secs(5));
            r.server.stop(Duration::from_secs(5));
        }
        if let Some(n) = self.nginx.as_mut() {
            n.proc.stop(Duration::from_secs(5));
        }
        self.emu.stop(Duration::from_secs(5));
    }
}

fn http() -> Result<reqwest::Client, String> {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())
}

/// A call to the emulator in OpenIM's envelope; `data` if errCode is 0.
async fn openim(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Result<Value, String> {
    let mut req = http.post(format!("{base}{path}")).header("operationID", "bench-setup").json(&body);
    if let Some(t) = token {
        req = req.header("token", t);
    }
    let res = req.send().await.map_err(|e| format!("{path}: {e}"))?;
    let v: Value = res.json().await.map_err(|e| format!("{path}: {e}"))?;
    if v["errCode"] != 0 {
        return Err(format!("{path}: {v}"));
    }
    Ok(v["data"].clone())
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) async fn start(opts: &SetupOptions) -> Result<Env, String> {
    let _ = std::fs::remove_dir_all(&opts.dir);
    std::fs::create_dir_all(&opts.dir).map_err(|e| format!("{}: {e}", opts.dir.display()))?;
    let dir = opts.dir.canonicalize().map_err(|e| e.to_string())?;
    let http = http()?;

    // The emulator.
    let secret = random_hex(16);
    let (api_port, ws_port) = (procs::free_port()?, procs::free_port()?);
    let mut cmd = Command::new(&opts.emu);
    cmd.args(["--api-listen", &format!("127.0.0.1:{api_port}"), "--ws-listen", &format!("127.0.0.1:{ws_port}")])
        .args(["--secret", &secret, "--admin-user-id", "imAdmin", "--admin-user-id", BENCH_ADMIN])
        .env("RUST_LOG", "warn");
    let mut emu = Proc::spawn("openim-emu", cmd, &dir.join("openim-emu.log"))?;
    let emu_url = format!("http://127.0.0.1:{api_port}");
    let admin_token = wait_for(Duration::from_secs(20), &mut emu, || async {
        let data =
            openim(&http, &emu_url, "/auth/get_admin_token", None, json!({"secret": secret, "userID": BENCH_ADMIN}))
                .await?;
        data["token"].as_str().map(str::to_owned).ok_or_else(|| format!("no token: {data}"))
    })
    .await?;

    // Users: the peer, and one set per party.
    let n = opts.users.max(1);
    let names = |prefix: &str| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    let (direct_users, plain_users, plugged_users) = (names("benchdirect"), names("benchplain"), names("benchplugged"));
    // Case 7's users: their own, so no session or token is shared with another gateway.
    let redis_users = if opts.redis.is_ok() { names("benchredis") } else { Vec::new() };
    // The WebSocket section's users: disjoint from the HTTP parties' (their OpenIM tokens stay
    // theirs) and from each other (a send is pushed to every connection of its sender).
    let ws_names = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>();
    let (ws_idle, ws_relay, ws_plugged, ws_direct) = match &opts.ws {
        Some(w) => (
            ws_names("benchwsidle", w.idle_users.max(1)),
            ws_names("benchwsrelay", w.latency_users.max(1)),
            ws_names("benchwsplug", w.latency_users.max(1)),
            ws_names("benchwsdirect", w.latency_users.max(1)),
        ),
        None => Default::default(),
    };
    let mut users = vec![
        json!({"userID": PEER, "nickname": "Bench Peer", "faceURL": "https://example.invalid/avatar/benchpeer.png"}),
    ];
    for u in direct_users.iter().chain(&plain_users).chain(&plugged_users).chain(&redis_users) {
        users.push(json!({"userID": u, "nickname": u, "faceURL": ""}));
    }
    for u in ws_idle.iter().chain(&ws_relay) {
        users.push(json!({"userID": u, "nickname": u, "faceURL": ""}));
    }
    for u in ws_plugged.iter().chain(&ws_direct) {
        users.push(json!({"userID": u, "nickname": u, "faceURL": ""}));
    }
    openim(&http, &emu_url, "/user/user_register", Some(&admin_token), json!({ "users": users })).await?;
    let mut direct_tokens = Vec::new();
    for u in &direct_users {
        let data =
            openim(&http, &emu_url, "/auth/get_user_token", Some(&admin_token), json!({"platformID": 5, "userID": u}))
                .await?;
        direct_tokens.push(data["token"].as_str().ok_or("get_user_token: no token")?.to_owned());
    }
    // Direct WebSocket users log in on platform 1, as the relay's sessions do.
    let mut ws_direct_tokens = Vec::new();
    for u in &ws_direct {
        let data =
            openim(&http, &emu_url, "/auth/get_user_token", Some(&admin_token), json!({"platformID": 1, "userID": u}))
                .await?;
        let token = data["token"].as_str().ok_or("get_user_token: no token")?.to_owned();
        ws_direct_tokens.push((u.clone(), token));
    }

    // The gateways.
    let emu_ws = format!("ws://127.0.0.1:{ws_port}");
    let upstream = Upstream { api: &emu_url, ws: &emu_ws, secret: &secret };
    let plain =
        start_gateway(opts, &http, &dir.join("imgate-plain"), &upstream, Kind::Plain, &plain_users, &[]).await?;
    let plugged =
        start_gateway(opts, &http, &dir.join("imgate-plugins"), &upstream, Kind::Plugins, &plugged_users, &ws_plugged)
            .await?;
    let redis = match &opts.redis {
        Ok(bin) => Ok(start_redis_case(opts, &http, &dir, bin, &upstream, &redis_users).await?),
        Err(why) => Err(why.clone()),
    };
    let ws = match &opts.ws {
        Some(_) => {
            let metrics_port = procs::free_port()?;
            let relay_users: Vec<String> = ws_idle.iter().chain(&ws_relay).cloned().collect();
            let gateway = start_gateway(
                opts,
                &http,
                &dir.join("imgate-ws"),
                &upstream,
                Kind::Relay { metrics_port },
                &[],
                &relay_users,
            )
            .await?;
            let (idle, relay) = gateway.ws_bearers.split_at(ws_idle.len());
            let (idle, relay) = (idle.to_vec(), relay.to_vec());
            Some(WsEnv {
                metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
                idle,
                relay,
                plugged: plugged.ws_bearers.clone(),
                direct: ws_direct_tokens,
                emu_ws_addr: format!("127.0.0.1:{ws_port}"),
                gateway,
            })
        }
        None => None,
    };

    // nginx.
    let nginx = match opts.start_nginx {
        true => Some(start_nginx(opts, &http, &dir.join("nginx"), api_port).await?),
        false => None,
    };

    Ok(Env { emu, emu_url, nginx, plain, plugged, redis, ws, direct_tokens, direct_users, admin_token })
}

/// Case 7: `redis-server` on a free loopback port without persistence (`--save "" --appendonly
/// no`), then a plugin-less gateway with `[store] backend = "redis"` on it and a metrics listener,
/// with sessions for `users` (made on this gateway: its session cache is warm).
async fn start_redis_case(
    opts: &SetupOptions,
    http: &reqwest::Client,
    dir: &Path,
    bin: &Path,
    upstream: &Upstream<'_>,
    users: &[String],
) -> Result<RedisEnv, String> {
    let version = Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .map_err(|e| format!("{} --version: {e}", bin.display()))?;
    let redis_dir = dir.join("redis");
    std::fs::create_dir_all(&redis_dir).map_err(|e| format!("{}: {e}", redis_dir.display()))?;
    let port = procs::free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&redis_dir);
    let mut server = Proc::spawn("redis-server", cmd, &dir.join("redis-server.log"))?;
    wait_for(Duration::from_secs(10), &mut server, || redis_ping(port)).await?;
    let metrics_port = procs::free_port()?;
    let gateway = start_gateway(
        opts,
        http,
        &dir.join("imgate-redis"),
        upstream,
        Kind::Redis { metrics_port, redis_port: port },
        users,
        &[],
    )
    .await?;
    Ok(RedisEnv { server, version, gateway, metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics") })
}

/// `PING` answered `+PONG` on `127.0.0.1:port`.
async fn redis_ping(port: u16) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    s.write_all(b"PING\r\n").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf))
        .await
        .map_err(|_| "no answer to PING".to_owned())?
        .map_err(|e| e.to_string())?;
    match buf[..n].starts_with(b"+PONG") {
        true => Ok(()),
        false => Err(format!("PING answered {:?}", String::from_utf8_lossy(&buf[..n]))),
    }
}

/// Retries `f` every 50 ms until it succeeds, `proc` dies or `limit` passes.
async fn wait_for<T, F, Fut>(limit: Duration, proc: &mut Proc, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                proc.check_alive()?;
                if Instant::now() > deadline {
                    return Err(format!("{} not ready after {limit:?}: {e}", proc.name));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn admin_jwt(secret: &[u8], scope: &str) -> Result<String, String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(KID.into());
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "scope": scope, "iat": now, "exp": now + 600});
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).map_err(|e| e.to_string())
}

/// `[ws] max_connections` when the WebSocket section does not run (imgate's default).
const WS_DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// Rate limits far above what two cores can push, so no request is refused for quota.
const NO_LIMITS: &str = r#"
[rate_limits.default]
per_second = 1000000
burst = 1000000

[rate_limits.send]
per_second = 1000000
burst = 1000000

[rate_limits.admin]
per_second = 1000000
burst = 1000000
"#;

/// The OpenIM emulator as the gateways see it.
struct Upstream<'a> {
    api: &'a str,
    ws: &'a str,
    secret: &'a str,
}

/// Which of the bench's gateways.
#[derive(Clone, Copy)]
enum Kind {
    /// Cases 3 and 6 (and the instruction counts): no plugin, the in-memory store.
    Plain,
    /// Cases 4 and 5, and the WebSocket send through a plugin chain.
    Plugins,
    /// The WebSocket section's relay: no plugin, a metrics listener.
    Relay { metrics_port: u16 },
    /// Case 7: no plugin, `[store] backend = "redis"` on `127.0.0.1:redis_port`, a metrics listener.
    Redis { metrics_port: u16, redis_port: u16 },
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Plain => "imgate (plain)",
            Kind::Plugins => "imgate (plugins)",
            Kind::Relay { .. } => "imgate (ws relay)",
            Kind::Redis { .. } => "imgate (redis store)",
        }
    }
}

/// `[ws]` of every generated config: `max_connections` above what the bench opens, and clients
/// that send nothing kept for 10 minutes (an SDK's heartbeat would reset the 60 s default; the
/// bench's idle connections send nothing while they are held).
fn ws_section(max_connections: usize) -> String {
    format!(
        r#"
[ws]
max_connections = {max_connections}
client_idle_timeout_secs = 600
"#
    )
}

fn gateway_config(
    port: u16,
    upstream: &Upstream<'_>,
    log_level: &str,
    plugins: Option<&Path>,
    ws_max_connections: usize,
    metrics_port: Option<u16>,
    redis_port: Option<u16>,
) -> String {
    let (emu_url, emu_ws, secret) = (upstream.api, upstream.ws, upstream.secret);
    let metrics = metrics_port.map(|p| format!("metrics_listen = \"127.0.0.1:{p}\"\n")).unwrap_or_default();
    let ws = ws_section(ws_max_connections);
    let mut c = format!(
        r#"# Generated by imgate-bench: a gateway as deployed, with every quota raised out of the way.
[server]
listen = "127.0.0.1:{port}"
max_connections = 256
max_concurrent_requests = 4096

[openim]
api_url = "{emu_url}"
ws_url = "{emu_ws}"
admin_user_id = "imAdmin"
secret = "{secret}"

[openim.privileged]
other_admin_user_ids = ["{BENCH_ADMIN}"]

[[gateway.keys]]
id = "bench-gw"
private_key_file = "gateway_x25519.key"

[[admin.issuer]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["HS256"]
keys = [{{ kid = "{KID}", file = "admin_hs256.secret" }}]

[auth]
bearer_token_lifetime_secs = 7200
# The WebSocket section's sessions wait through the HTTP cases unused.
session_idle_timeout_secs = 7200
handshakes_per_address_per_sec = 10000
handshake_burst_per_address = 10000
handshakes_per_sec = 100000

[audit]
file = "audit.jsonl"

[telemetry]
log_format = "json"
log_level = "{log_level}"
{metrics}{ws}{NO_LIMITS}"#
    );
    if let Some(p) = redis_port {
        c.push_str(&format!(
            r#"
# Case 7: sessions, nonces and rate limits in Redis (a signed request: one round trip).
[store]
backend = "redis"
url = "redis://127.0.0.1:{p}/"
instance_id = "bench"
"#
        ));
    }
    if let Some(dir) = plugins {
        let cf = dir.join("content_filter.wasm");
        let rr = dir.join("response_reshaper.wasm");
        c.push_str(&format!(
            r#"
# Plugin calls at once: one per connection of the highest concurrency, and a long queue, so no
# request is refused for a plugin slot.
[plugins]
store_dir = "plugin-store"
max_concurrent_calls = 64
queue_timeout_ms = 5000

[[plugin]]
name = "content-filter"
path = "{cf}"
capabilities = ["config"]

[[plugin]]
name = "response-reshaper"
path = "{rr}"
capabilities = ["config"]

# The chain of cases 4 and 5: on-request (content-filter) and on-response (response-reshaper) on
# the /v1 lookup, its /openim twin and the /v1 send.
[[route_plugins]]
routes = ["lookup_users", "openim.user.get_users_info", "send_text_to_user"]
plugins = [
  {{ plugin = "content-filter", config = {{ words = ["forbiddenword", "spoiler"], action = "mask" }} }},
  {{ plugin = "response-reshaper", config = {{ strip_for_others = ["face_url"] }} }},
]
"#,
            cf = cf.display(),
            rr = rr.display()
        ));
    }
    c
}

/// Starts one gateway and seeds a device, a session and a bearer token for each of `users` and
/// `ws_users`.
async fn start_gateway(
    opts: &SetupOptions,
    http: &reqwest::Client,
    dir: &Path,
    upstream: &Upstream<'_>,
    kind: Kind,
    users: &[String],
    ws_users: &[String],
) -> Result<Gateway, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let plugins = matches!(kind, Kind::Plugins).then_some(opts.plugins_dir.as_path());
    let (metrics_port, redis_port) = match kind {
        Kind::Relay { metrics_port } => (Some(metrics_port), None),
        Kind::Redis { metrics_port, redis_port } => (Some(metrics_port), Some(redis_port)),
        Kind::Plain | Kind::Plugins => (None, None),
    };
    if let Some(p) = plugins {
        for f in ["content_filter.wasm", "response_reshaper.wasm"] {
            if !p.join(f).is_file() {
                return Err(format!(
                    "no {} (build the example plugins: cd plugins && cargo build --release --locked --target wasm32-wasip2)",
                    p.join(f).display()
                ));
            }
        }
    }
    let mut gw_key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut gw_key);
    write(&dir.join("gateway_x25519.key"), &base64::engine::general_purpose::STANDARD.encode(gw_key))?;
    let mut admin_secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut admin_secret);
    std::fs::write(dir.join("admin_hs256.secret"), admin_secret).map_err(|e| e.to_string())?;
    let port = procs::free_port()?;
    let config_file = dir.join("imgate.toml");
    let ws_max = opts.ws.as_ref().map_or(WS_DEFAULT_MAX_CONNECTIONS, |w| w.max_connections);
    write(&config_file, &gateway_config(port, upstream, &opts.log_level, plugins, ws_max, metrics_port, redis_port))?;
    let name = kind.name();
    let mut cmd = match opts.wrap.as_ref().filter(|_| matches!(kind, Kind::Plain)) {
        Some(wrap) => {
            let mut cmd = Command::new(&wrap[0]);
            cmd.args(&wrap[1..]).arg(&opts.imgate);
            cmd
        }
        None => Command::new(&opts.imgate),
    };
    cmd.arg("serve").arg("--config").arg(&config_file).current_dir(dir);
    // The log goes next to the folder, not into it: imgate's plugin watcher watches the config
    // file's folder, and the harness should not add a write event per log line there.
    let mut proc = Proc::spawn(name, cmd, &dir.with_extension("log"))?;
    let url = format!("http://127.0.0.1:{port}");
    // Under valgrind, start-up (and the plugins' compilation) is tens of times slower.
    let limit = Duration::from_secs(if opts.wrap.is_some() && matches!(kind, Kind::Plain) { 900 } else { 60 });
    wait_for(limit, &mut proc, || async {
        let r = http.get(format!("{url}/healthz")).send().await.map_err(|e| e.to_string())?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!("healthz {}", r.status()))
        }
    })
    .await?;

    // Devices, sessions and bearer tokens.
    let client = Client::new(&url);
    let admin = admin_jwt(&admin_secret, "devices:write")?;
    let (_, gw_public) = client.gateway_key().await.map_err(|e| format!("{name}: gateway key: {e}"))?;
    let (mut sessions, mut bearers) = (Vec::new(), Vec::new());
    for u in users.iter().chain(ws_users) {
        let key = DeviceKey::generate();
        let res = client.enroll(&admin, u, "benchdev", 1, &key.public_b64()).await.map_err(|e| e.to_string())?;
        if res.status().as_u16() != 201 {
            let status = res.status();
            return Err(format!("{name}: enroll {u}: {status} {}", res.text().await.unwrap_or_default()));
        }
        let session =
            client.handshake(&key, &gw_public, "benchdev").await.map_err(|e| format!("{name}: handshake {u}: {e}"))?;
        let res = client.call(&session, "POST", "/v1/auth/token", None).await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let v: Value = res.json().await.map_err(|e| e.to_string())?;
        let token = v["token"]
            .as_str()
            .filter(|_| status == 200)
            .ok_or_else(|| format!("{name}: /v1/auth/token: {status} {v}"))?;
        bearers.push(token.to_owned());
        sessions.push(session);
    }
    let ws_bearers = ws_users.iter().cloned().zip(bearers.split_off(users.len())).collect();
    sessions.truncate(users.len());
    Ok(Gateway { proc, url, sessions, bearers, ws_bearers, audit_file: dir.join("audit.jsonl"), config_file })
}

fn nginx_config(dir: &Path, port: u16, upstream_port: u16, workers: &str) -> String {
    let d = dir.display();
    format!(
        r#"# Generated by imgate-bench: the peer case, nginx proxy_pass with upstream keep-alive.
daemon off;
master_process on;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;

    upstream openim {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://openim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    )
}

async fn start_nginx(
    opts: &SetupOptions,
    http: &reqwest::Client,
    dir: &Path,
    upstream_port: u16,
) -> Result<Nginx, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let port = procs::free_port()?;
    let conf = dir.join("nginx.conf");
    write(&conf, &nginx_config(dir, port, upstream_port, &opts.nginx_workers))?;
    let mut cmd = Command::new(&opts.nginx);
    cmd.arg("-p").arg(dir).arg("-c").arg(&conf).arg("-e").arg(dir.join("error.log"));
    let mut proc = Proc::spawn("nginx", cmd, &dir.join("nginx.out"))?;
    let url = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(20), &mut proc, || async {
        // Through to the emulator: an unauthenticated call answers in OpenIM's envelope.
        let r = http.post(format!("{url}/user/get_users_info")).body("{}").send().await.map_err(|e| e.to_string())?;
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        if v.get("errCode").is_some() {
            Ok(())
        } else {
            Err(format!("not OpenIM's envelope: {v}"))
        }
    })
    .await?;
    let master = proc.pid();
    let mut pids = vec![master];
    pids.extend(procs::children_of(master));
    Ok(Nginx { proc, url, pids, conf })
}
