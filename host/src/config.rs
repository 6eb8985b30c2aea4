//! Typed configuration: the TOML file an operator writes, parsed strictly and validated whole.
//!
//! Every table denies unknown keys, and a bad file is reported with *every* problem at once (not
//! just the first one serde trips over): parsing repeatedly removes the offending key and tries
//! again, then the semantic checks of [`Config::validate`] run on what is left. Defaults are
//! chosen so that a config naming only `[openim]` runs safely on loopback. Every key is documented
//! in `docs/config.md`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::auth::admin_jwt::{self, IssuerConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    pub openim: OpenImConfig,
    #[serde(default)]
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[rate_limits.<class>]`: per-user quotas by route class (and tier).
    #[serde(default = "crate::ratelimit::default_classes")]
    pub rate_limits: std::collections::BTreeMap<String, crate::ratelimit::ClassConfig>,
    /// `[[route]]`: the `/v1` route table; absent = the shipped default table (`routes/default_routes.toml`).
    #[serde(default = "crate::routes::table::default_routes")]
    pub route: Vec<crate::routes::table::RouteSpec>,
    /// `[plugins]`: the plugin runtime's shared limits.
    #[serde(default)]
    pub plugins: crate::plugins::config::RuntimeConfig,
    /// `[[plugin]]`: policy plugins (Wasm components), their capabilities and limits.
    #[serde(default)]
    pub plugin: Vec<crate::plugins::config::PluginSpec>,
    /// `[[route_plugins]]`: plugin chains on built-in routes (table routes say `plugins` themselves).
    #[serde(default)]
    pub route_plugins: Vec<crate::plugins::config::BuiltinChainSpec>,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[ws]`: the WebSocket relay to OpenIM's msg gateway (client-auth §8).
    #[serde(default)]
    pub ws: WsConfig,
    /// `[browser]`: which web origins may use the OpenIM-compatible surface and the WebSocket.
    #[serde(default)]
    pub browser: BrowserConfig,
    /// `[store]`: where shared state lives (this process, or Redis for several instances).
    #[serde(default)]
    pub store: StoreConfig,
}

/// `[store]`: the state backend. `memory` (the default) keeps everything in this process; `redis`
/// shares sessions, nonces, tickets, rate limits, the plugins' `kv`, OpenIM tokens, the plugin
/// registry and revocations with every imgate instance pointed at the same Redis.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `memory` or `redis`.
    pub backend: String,
    /// `redis://[user:password@]host:port[/db]` or `rediss://…` (TLS); `url` or `url_file` is
    /// required for `redis`.
    pub url: Option<String>,
    /// A file holding the URL (it carries the password): keeps the secret out of this file.
    pub url_file: Option<PathBuf>,
    /// Prefix of every key and channel imgate uses, so several fleets can share one Redis.
    pub key_prefix: String,
    /// How long one Redis command may take before the request it serves fails closed (503).
    pub timeout_ms: u64,
    /// This instance's name in audit records, logs and metrics; default: the host name.
    pub instance_id: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: "memory".into(),
            url: None,
            url_file: None,
            key_prefix: "imgate:".into(),
            timeout_ms: 1_000,
            instance_id: None,
        }
    }
}

/// Whether `u` names a Redis server the backend can use.
pub fn is_redis_url(u: &str) -> bool {
    u.starts_with("redis://") || u.starts_with("rediss://")
}

impl StoreConfig {
    pub fn is_redis(&self) -> bool {
        self.backend == "redis"
    }

    /// The configured instance id, or the host name (`HOSTNAME`, then `/etc/hostname`), or `imgate`.
    pub fn instance_id(&self) -> String {
        if let Some(id) = &self.instance_id {
            return id.clone();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty() && h.len() <= 64);
        host.unwrap_or_else(|| "imgate".into())
    }

    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        match (self.backend.as_str(), &self.url, &self.url_file) {
            ("memory", _, _) => {}
            ("redis", None, None) => {
                errors.push("store.url / store.url_file: one is required when store.backend is redis".into())
            }
            ("redis", Some(_), Some(_)) => errors.push("store.url / store.url_file: set only one".into()),
            ("redis", Some(u), None) if !is_redis_url(u) => {
                errors.push("store.url: must be a redis:// or rediss:// URL".into())
            }
            ("redis", _, _) => {}
            (other, _, _) => errors.push(format!("store.backend: `{other}` is not one of memory, redis")),
        }
        if self.key_prefix.len() > 64 || self.key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errors.push("store.key_prefix: at most 64 characters, no spaces".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            errors.push("store.timeout_ms: must be 1-60000".into());
        }
        if let Some(id) = &self.instance_id {
            if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                errors.push(format!("store.instance_id: `{id}` must be 1-64 chars of [A-Za-z0-9._-]"));
            }
        }
        errors
    }
}

/// `[browser]`: browser builds of OpenIM SDKs run on some origin; only listed ones get CORS
/// answers on `/openim/*` and may open a relayed WebSocket.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserConfig {
    /// Exact origins (`https://app.example`), or `*` for any. An upgrade carrying an `Origin`
    /// header not listed is refused (403): a page on another site must not ride a user's
    /// credentials (CSWSH). Clients that send no `Origin` are not affected. Default: none.
    pub allowed_origins: Vec<String>,
}

impl BrowserConfig {
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for o in &self.allowed_origins {
            let host = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
            let ok = o == "*" || host.is_some_and(|h| !h.is_empty() && !h.contains('/') && h.is_ascii());
            if !ok {
                errors.push(format!("browser.allowed_origins: `{o}` is not `*` or an origin like https://app.example"));
            }
        }
        errors
    }
}

/// `[ws]`: the WebSocket relay (`GET /v1/ws?ticket=…`, `GET /openim/ws`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// Relayed connections this instance holds at most; upgrades beyond are refused (503).
    pub max_connections: usize,
    /// Lifetime of a `POST /v1/ws/ticket` ticket (1-30 s).
    pub ticket_lifetime_secs: u64,
    /// Unredeemed tickets one session may hold; minting more is refused (429).
    pub max_tickets_per_session: usize,
    /// A client that sends nothing (no frame, ping or heartbeat) for this long is disconnected;
    /// OpenIM itself allows 30 s.
    pub client_idle_timeout_secs: u64,
    /// The relay pings OpenIM this often, so OpenIM's 30 s read deadline never ends an idle
    /// relayed connection (must be under 30).
    pub upstream_ping_secs: u64,
    /// Direct mode (`POST /v1/ws/credentials`): hands clients an OpenIM token. Off by default;
    /// see docs/config.md for why the relay is the default.
    pub direct_mode: bool,
    /// The msg-gateway address direct-mode clients dial (required with `direct_mode`).
    pub direct_ws_url: Option<String>,
    /// How long a direct-mode grant lives at most (then OpenIM `force_logout`).
    pub direct_grant_secs: u64,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig {
            max_connections: 20_000,
            ticket_lifetime_secs: 30,
            max_tickets_per_session: 8,
            client_idle_timeout_secs: 60,
            upstream_ping_secs: 20,
            direct_mode: false,
            direct_ws_url: None,
            direct_grant_secs: 600,
        }
    }
}

impl WsConfig {
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !(1..=30).contains(&self.ticket_lifetime_secs) {
            errors.push("ws.ticket_lifetime_secs: must be 1-30".into());
        }
        if !(1..30).contains(&self.upstream_ping_secs) {
            errors.push("ws.upstream_ping_secs: must be 1-29 (OpenIM's read deadline is 30 s)".into());
        }
        if self.direct_mode && self.direct_ws_url.is_none() {
            errors.push("ws.direct_ws_url: required when ws.direct_mode is on".into());
        }
        if let Some(u) = &self.direct_ws_url {
            if !matches!(reqwest::Url::parse(u), Ok(p) if matches!(p.scheme(), "ws" | "wss")) {
                errors.push(format!("ws.direct_ws_url: `{u}` is not a ws(s) URL"));
            }
        }
        for (key, v) in [
            ("ws.direct_grant_secs", self.direct_grant_secs),
            ("ws.max_connections", self.max_connections as u64),
            ("ws.max_tickets_per_session", self.max_tickets_per_session as u64),
            ("ws.client_idle_timeout_secs", self.client_idle_timeout_secs),
        ] {
            if v == 0 {
                errors.push(format!("{key}: must be greater than 0"));
            }
        }
        errors
    }
}

/// `[audit]`: where the hash-chained audit log goes.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// JSON-lines file, appended to and chained across restarts (`imgate audit verify FILE`).
    /// Unset: records go to the process log only (tracing target `imgate::audit`).
    pub file: Option<PathBuf>,
}

/// `[server]`: the public listener and the guard stage of the pipeline.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Largest request body accepted; larger ones get 413 before they are buffered.
    pub max_body_bytes: usize,
    /// Largest total size of all request header names and values; larger → 431.
    pub max_header_bytes: usize,
    /// Most request headers accepted; more → 431.
    pub max_headers: usize,
    /// Deadline for a whole request, from routing to the last byte of the answer.
    pub request_timeout_ms: u64,
    /// How long a client may take to send its request headers, from their first byte, on
    /// HTTP/1 and HTTP/2 alike (slowloris guard).
    pub header_read_timeout_ms: u64,
    /// How long a new connection may stay silent before it is closed.
    pub first_byte_timeout_ms: u64,
    /// How long a keep-alive connection may wait for its next request; also the longest a
    /// connection with a request in flight may go without a byte moving (never less than
    /// `request_timeout_ms`), so a client that stops reading its answer loses its connection.
    pub idle_timeout_ms: u64,
    /// Client connections open at once; beyond it new connections are closed at once (shed).
    pub max_connections: usize,
    /// On SIGTERM, how long in-flight requests may take to finish before connections are cut.
    pub drain_timeout_ms: u64,
    /// Requests handled at once; beyond that the gateway sheds load with 503.
    pub max_concurrent_requests: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 1024 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            request_timeout_ms: 15_000,
            header_read_timeout_ms: 10_000,
            first_byte_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            // 2 048 connections hold a few tens of MB and need ~2 750 files, which imgate gets by
            // raising its soft open-file limit toward the hard one (4 096 and up on common
            // systems); where it cannot, it caps lower and says so (`server::fit_to_fd_limit`).
            max_connections: 2_048,
            drain_timeout_ms: 10_000,
            max_concurrent_requests: 1024,
        }
    }
}

/// `[openim]`: where OpenIM's API gateway is and how imgate talks to it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenImConfig {
    /// OpenIM's HTTP API gateway, e.g. `http://127.0.0.1:10002`.
    pub api_url: String,
    /// OpenIM's WebSocket msg gateway, e.g. `ws://127.0.0.1:10001`.
    pub ws_url: String,
    /// An `imAdminUser.userIDs` entry of OpenIM's `share.yml`.
    #[serde(default = "default_admin_user_id")]
    pub admin_user_id: String,
    /// OpenIM's `share.yml secret`, inline (dev only) ...
    #[serde(default)]
    pub secret: Option<String>,
    /// ... or in a file (its content, trailing newline trimmed). Exactly one of the two.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Deadline for one call to OpenIM (connect + answer); a slower OpenIM gives 504.
    #[serde(default = "default_openim_timeout")]
    pub timeout_ms: u64,
    /// Extra attempts for idempotent reads after a transport failure (never for writes).
    #[serde(default = "default_read_retries")]
    pub read_retries: u32,
    /// Refresh the cached admin token when it has less than this left to live.
    #[serde(default = "default_refresh_before")]
    pub admin_token_refresh_before_secs: u64,
    /// Largest OpenIM answer read; larger ones are a 502.
    #[serde(default = "default_max_response")]
    pub max_response_bytes: usize,
    /// How long a group-role lookup (membership checks) is reused; writes through imgate forget
    /// it at once, changes made in OpenIM directly show after at most this long. 0 = no cache.
    #[serde(default = "default_membership_cache")]
    pub membership_cache_ms: u64,
    /// `[openim.privileged]`: the accounts OpenIM privileges, kept off devices and sessions.
    #[serde(default)]
    pub privileged: PrivilegedConfig,
    /// `[openim.breaker]`: circuit breaking and the retry budget, per OpenIM service.
    #[serde(default)]
    pub breaker: BreakerConfig,
}

/// `[openim.breaker]`: each OpenIM service (the first segment of its paths: `msg`, `group`, …)
/// has a circuit breaker, a cap on its calls in flight and a retry budget (`openim::breaker`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures (no answer, not an envelope, HTTP 5xx, errCode 14 or 4) that open a
    /// service's circuit; 0 = never open it.
    pub failures: u32,
    /// How long an open circuit refuses calls before one probe may go; doubles after each failed
    /// probe, up to `max_open_ms`.
    pub open_ms: u64,
    pub max_open_ms: u64,
    /// Calls of one service waiting on OpenIM at once; beyond it 503 `upstream_circuit_open` at
    /// once. 0 = no cap of its own (`server.max_concurrent_requests` still applies).
    pub max_in_flight: usize,
    /// Retries of idempotent reads, as a share (percent) of the service's calls over the last
    /// 10-20 s ...
    pub retry_budget_percent: u32,
    /// ... plus this many per second, however few calls there are.
    pub retry_budget_min_per_sec: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            open_ms: 1_000,
            max_open_ms: 5_000,
            max_in_flight: 512,
            retry_budget_percent: 20,
            retry_budget_min_per_sec: 3,
        }
    }
}

impl BreakerConfig {
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.open_ms == 0 || self.open_ms > self.max_open_ms {
            errors.push("openim.breaker.open_ms: at least 1 and at most max_open_ms".into());
        }
        if self.max_open_ms > 3_600_000 {
            errors.push("openim.breaker.max_open_ms: at most an hour (3600000)".into());
        }
        if self.retry_budget_percent > 100 {
            errors.push("openim.breaker.retry_budget_percent: at most 100".into());
        }
        errors
    }

    /// As the OpenIM client uses it.
    pub fn settings(&self) -> crate::openim::breaker::BreakerSettings {
        crate::openim::breaker::BreakerSettings {
            failures: self.failures,
            open: std::time::Duration::from_millis(self.open_ms),
            max_open: std::time::Duration::from_millis(self.max_open_ms),
            max_in_flight: self.max_in_flight,
            retry_percent: self.retry_budget_percent,
            retry_min_per_sec: self.retry_budget_min_per_sec,
        }
    }
}

fn default_membership_cache() -> u64 {
    2_000
}

/// `[openim.privileged]`: OpenIM's admin ids and app managers (`appMangerLevel` ≥ 2) get no
/// device, session or bearer token, because imgate sends as the session's user with the admin
/// token and OpenIM exempts these senders from its friend and blacklist checks (contract §5.7).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivilegedConfig {
    /// The other entries of OpenIM's `share.yml imAdminUser.userIDs`; `openim.admin_user_id` is
    /// always one. OpenIM has no API that lists them, so imgate only knows those named here.
    pub other_admin_user_ids: Vec<String>,
    /// Privileged accounts (admin ids or app managers) that may nevertheless have devices,
    /// sessions and bearer tokens: an explicit opt-in, e.g. for an operations bot.
    pub allow_user_ids: Vec<String>,
    /// How long an `appMangerLevel` read is reused at handshakes; 0 = ask OpenIM every time.
    /// Enrollment always reads it fresh.
    pub level_cache_ms: u64,
}

use crate::ids::is_user_id;

impl Default for PrivilegedConfig {
    fn default() -> Self {
        PrivilegedConfig { other_admin_user_ids: Vec::new(), allow_user_ids: Vec::new(), level_cache_ms: 60_000 }
    }
}

impl PrivilegedConfig {
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (key, ids) in [
            ("openim.privileged.other_admin_user_ids", &self.other_admin_user_ids),
            ("openim.privileged.allow_user_ids", &self.allow_user_ids),
        ] {
            let mut seen = std::collections::HashSet::new();
            for id in ids {
                // imgate's own user-id rule: an id outside it can never have a device, so listing
                // it could only be a typo (a space, a look-alike letter) that hides the real one.
                if !is_user_id(id) {
                    errors.push(format!("{key}: `{id}` is not a user id (1-64 characters of A-Z, a-z, 0-9 and _)"));
                } else if !seen.insert(id.as_str()) {
                    errors.push(format!("{key}: `{id}` is listed twice"));
                }
            }
        }
        if self.level_cache_ms > 3_600_000 {
            errors.push("openim.privileged.level_cache_ms: at most 3600000 (one hour)".into());
        }
        errors
    }
}

fn default_admin_user_id() -> String {
    "imAdmin".into()
}
fn default_openim_timeout() -> u64 {
    5_000
}
fn default_read_retries() -> u32 {
    2
}
fn default_refresh_before() -> u64 {
    3_600
}
fn default_max_response() -> usize {
    8 * 1024 * 1024
}

/// `[gateway]`: the gateway's own identity towards clients.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// X25519 static keys (Noise IK responder keys). The first is the current key; a second one
    /// is still accepted during a rotation. At most two.
    pub keys: Vec<GatewayKeyConfig>,
}

/// One `[[gateway.keys]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayKeyConfig {
    /// Public name of the key, served as `key_id`.
    pub id: String,
    /// File holding the 32-byte private key, base64 (as printed by `imgate keygen`).
    pub private_key_file: PathBuf,
}

/// `[admin]`: who may call `/v1/admin/*`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `[[admin.issuer]]` tables; with none, every admin route answers 401.
    pub issuer: Vec<IssuerConfig>,
}

/// `[auth]`: user sessions and handshake limits (client-auth §3–5).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Whether users authenticate here (the Noise handshake, sessions, the user and compat
    /// routes). `false` is an admin-only gateway: no `[[gateway.keys]]`, and the handshake answers
    /// 404. With `true` (the default) a config without a gateway key is refused: it would serve
    /// while every handshake failed.
    pub users: bool,
    /// A session with no accepted request for this long ends.
    pub session_idle_timeout_secs: u64,
    /// Absolute lifetime of a session (`expires_at`).
    pub session_lifetime_secs: u64,
    /// Lifetime of a bearer token (never beyond its session).
    pub bearer_token_lifetime_secs: u64,
    /// Handshakes per second per source address (IPv6: per /64).
    pub handshakes_per_address_per_sec: u32,
    /// Burst of handshakes one address may make at once.
    pub handshake_burst_per_address: u32,
    /// Handshakes per second for the whole gateway.
    pub handshakes_per_sec: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            users: true,
            session_idle_timeout_secs: 15 * 60,
            session_lifetime_secs: 12 * 3600,
            bearer_token_lifetime_secs: 15 * 60,
            handshakes_per_address_per_sec: 5,
            handshake_burst_per_address: 20,
            handshakes_per_sec: 2_000,
        }
    }
}

impl AuthConfig {
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for (key, v) in [
            ("auth.session_idle_timeout_secs", self.session_idle_timeout_secs),
            ("auth.session_lifetime_secs", self.session_lifetime_secs),
            ("auth.bearer_token_lifetime_secs", self.bearer_token_lifetime_secs),
            ("auth.handshakes_per_address_per_sec", u64::from(self.handshakes_per_address_per_sec)),
            ("auth.handshake_burst_per_address", u64::from(self.handshake_burst_per_address)),
            ("auth.handshakes_per_sec", u64::from(self.handshakes_per_sec)),
        ] {
            if v == 0 {
                errors.push(format!("{key}: must be greater than 0"));
            }
        }
        if self.session_lifetime_secs > 30 * 86_400 {
            errors.push("auth.session_lifetime_secs: at most 30 days".into());
        }
        errors
    }
}

/// `[telemetry]`: logs and metrics.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `json` (one object per line) or `pretty`.
    pub log_format: String,
    /// A tracing filter, e.g. `info` or `host=debug,info`.
    pub log_level: String,
    /// Where Prometheus `/metrics` is served; unset = not served. Kept off the public listener.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { log_format: "json".into(), log_level: "info".into(), metrics_listen: None }
    }
}

/// Every problem found in a configuration, one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// How many structural errors are collected before giving up (a file of garbage keys).
const MAX_STRUCTURAL_ERRORS: usize = 100;

impl Config {
    /// Reads and parses a file; relative paths inside it are later resolved against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors(vec![format!("{}: {e}", path.display())]))?;
        Config::parse(&text)
    }

    /// Parses TOML text, reporting every unknown key, wrong type and failed check at once.
    pub fn parse(text: &str) -> Result<Config, ConfigErrors> {
        let mut value: toml::Value =
            toml::from_str(text).map_err(|e| ConfigErrors(vec![format!("TOML syntax: {e}")]))?;
        let mut errors = Vec::new();
        let mut removed: Vec<String> = Vec::new();
        while errors.len() < MAX_STRUCTURAL_ERRORS {
            match serde_path_to_error::deserialize::<_, Config>(value.clone()) {
                Ok(config) => {
                    // Semantic checks run on what is left, so one pass names every problem;
                    // checks about a key that was removed (it now holds its default) are skipped.
                    let semantic =
                        config.validate().into_iter().filter(|e| !removed.iter().any(|r| e.starts_with(r.as_str())));
                    errors.extend(semantic);
                    return if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) };
                }
                Err(e) => {
                    let segments: Vec<String> = e.path().iter().map(|s| s.to_string()).collect();
                    let message = describe(&e);
                    // A missing key cannot be removed to make progress: report it and stop.
                    let removable = !e.inner().to_string().starts_with("missing field");
                    errors.push(message);
                    if !removable || !remove_at(&mut value, &segments) {
                        break;
                    }
                    removed.push(e.path().to_string());
                }
            }
        }
        Err(ConfigErrors(errors))
    }

    /// Semantic checks that types alone cannot express. Returns every problem.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let s = &self.server;
        if s.max_body_bytes == 0 || s.max_body_bytes > 64 * 1024 * 1024 {
            errors.push("server.max_body_bytes: must be between 1 and 67108864".into());
        }
        if s.max_header_bytes < 1024 || s.max_header_bytes > 1024 * 1024 {
            errors.push("server.max_header_bytes: must be between 1024 and 1048576".into());
        }
        if s.max_headers == 0 {
            errors.push("server.max_headers: must be at least 1".into());
        }
        for (key, v) in [
            ("server.request_timeout_ms", s.request_timeout_ms),
            ("server.header_read_timeout_ms", s.header_read_timeout_ms),
            ("server.first_byte_timeout_ms", s.first_byte_timeout_ms),
            ("server.idle_timeout_ms", s.idle_timeout_ms),
            ("server.drain_timeout_ms", s.drain_timeout_ms),
            ("openim.timeout_ms", self.openim.timeout_ms),
        ] {
            if v == 0 {
                errors.push(format!("{key}: must be greater than 0"));
            }
        }
        // Beyond a million, the file-descriptor limit (`server::fit_to_fd_limit`) caps it anyway.
        if s.max_connections == 0 || s.max_connections > 1_000_000 {
            errors.push("server.max_connections: must be between 1 and 1000000".into());
        }
        for (key, v) in [
            ("server.header_read_timeout_ms", s.header_read_timeout_ms),
            ("server.first_byte_timeout_ms", s.first_byte_timeout_ms),
            ("server.idle_timeout_ms", s.idle_timeout_ms),
        ] {
            // A connection deadline of more than an hour is no deadline.
            if v > 3_600_000 {
                errors.push(format!("{key}: at most 3600000 (one hour)"));
            }
        }
        if s.max_concurrent_requests == 0 {
            errors.push("server.max_concurrent_requests: must be at least 1".into());
        }
        if self.openim.timeout_ms >= s.request_timeout_ms {
            errors.push(
                "openim.timeout_ms: must be shorter than server.request_timeout_ms, so a slow OpenIM gives 504 before the request deadline"
                    .into(),
            );
        }
        errors.extend(self.openim.validate());
        errors.extend(self.gateway.validate());
        errors.extend(self.auth.validate());
        match (self.auth.users, self.gateway.keys.is_empty()) {
            (true, true) => errors.push(
                "gateway.keys: none configured, so no user could ever authenticate (every handshake would fail); \
                 add a [[gateway.keys]] entry (`imgate keygen`), or set [auth] users = false for an admin-only gateway"
                    .into(),
            ),
            (false, false) => errors.push(
                "auth.users = false (admin-only gateway) but [[gateway.keys]] are configured: remove them, or enable users"
                    .into(),
            ),
            _ => {}
        }
        errors.extend(self.ws.validate());
        errors.extend(self.browser.validate());
        errors.extend(self.store.validate());
        errors.extend(crate::ratelimit::validate(&self.rate_limits));
        errors.extend(crate::routes::table::validate(&self.route, &self.rate_limits.keys().cloned().collect()));
        errors.extend(admin_jwt::validate_config(&self.admin.issuer));
        if !matches!(self.telemetry.log_format.as_str(), "json" | "pretty") {
            errors.push(format!("telemetry.log_format: `{}` is not one of json, pretty", self.telemetry.log_format));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_level) {
            errors.push(format!("telemetry.log_level: {e}"));
        }
        errors
    }
}

impl OpenImConfig {
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        match reqwest::Url::parse(&self.api_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => errors.push(format!("openim.api_url: `{}` is not an http(s) URL", self.api_url)),
        }
        match reqwest::Url::parse(&self.ws_url) {
            Ok(u) if matches!(u.scheme(), "ws" | "wss") && u.host().is_some() => {}
            _ => errors.push(format!("openim.ws_url: `{}` is not a ws(s) URL", self.ws_url)),
        }
        if self.admin_user_id.is_empty() {
            errors.push("openim.admin_user_id: must not be empty".into());
        }
        match (&self.secret, &self.secret_file) {
            (Some(_), Some(_)) => errors.push("openim.secret / openim.secret_file: set only one".into()),
            (None, None) => errors.push("openim.secret / openim.secret_file: one is required".into()),
            (Some(s), None) if s.is_empty() => errors.push("openim.secret: must not be empty".into()),
            _ => {}
        }
        if self.max_response_bytes < 1024 {
            errors.push("openim.max_response_bytes: must be at least 1024".into());
        }
        if self.read_retries > 5 {
            errors.push("openim.read_retries: at most 5".into());
        }
        errors.extend(self.privileged.validate());
        errors.extend(self.breaker.validate());
        errors
    }

    /// Every id OpenIM treats as an admin, as far as the config says: `admin_user_id` first.
    pub fn admin_user_ids(&self) -> Vec<String> {
        let mut ids = vec![self.admin_user_id.clone()];
        ids.extend(self.privileged.other_admin_user_ids.iter().filter(|id| **id != self.admin_user_id).cloned());
        ids
    }
}

impl GatewayConfig {
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.keys.len() > 2 {
            errors.push("gateway.keys: at most two keys (the current one and the one being rotated out)".into());
        }
        if self.keys.len() == 2 && self.keys[0].id == self.keys[1].id {
            errors.push(format!("gateway.keys: duplicate id `{}`", self.keys[0].id));
        }
        for k in &self.keys {
            if !crate::ids::is_key_id(&k.id) {
                errors.push(format!("gateway.keys.id: `{}` must be 1-64 chars of [A-Za-z0-9._-]", k.id));
            }
        }
        errors
    }
}

/// Resolves a path from the config against the folder the config file is in.
pub fn resolve(base_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

/// `path.to.key: what is wrong`, the form operators read.
fn describe(e: &serde_path_to_error::Error<toml::de::Error>) -> String {
    let path = e.path().to_string();
    // toml's message may span lines; keep the first one, it carries the meaning.
    let inner = e.inner().to_string();
    let inner = inner.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid value").trim();
    if path == "." || path.is_empty() {
        inner.to_string()
    } else {
        format!("{path}: {inner}")
    }
}

/// Removes the value at a serde_path_to_error path from a TOML tree; false if nothing was found.
fn remove_at(value: &mut toml::Value, segments: &[String]) -> bool {
    let Some((last, parents)) = segments.split_last() else { return false };
    let mut cur = value;
    for seg in parents {
        cur = match (cur, seg.strip_prefix('[').and_then(|s| s.strip_suffix(']'))) {
            (toml::Value::Array(a), Some(i)) => match i.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            (toml::Value::Table(t), None) => match t.get_mut(seg.as_str()) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (cur, last.strip_prefix('[').and_then(|s| s.strip_suffix(']'))) {
        (toml::Value::Array(a), Some(i)) => match i.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        (toml::Value::Table(t), None) => t.remove(last.as_str()).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [openim]
        api_url = "http://127.0.0.1:10002"
        ws_url = "ws://127.0.0.1:10001"
        secret = "openIM123"
        [[gateway.keys]]
        id = "gw-1"
        private_key_file = "gw.key"
    "#;

    #[test]
    fn a_gateway_no_user_could_authenticate_with_is_refused_unless_users_are_off() {
        let no_key = r#"
            [openim]
            api_url = "http://127.0.0.1:10002"
            ws_url = "ws://127.0.0.1:10001"
            secret = "openIM123"
        "#;
        let all = Config::parse(no_key).expect_err("no gateway key").0.join("\n");
        assert!(all.contains("gateway.keys: none configured") && all.contains("[auth] users = false"), "{all}");
        let admin_only = format!("[auth]\nusers = false\n{no_key}");
        assert!(!Config::parse(&admin_only).expect("admin-only gateway").auth.users);
        let both = format!("[auth]\nusers = false\n{MINIMAL}");
        let all = Config::parse(&both).expect_err("keys but no users").0.join("\n");
        assert!(all.contains("auth.users = false") && all.contains("remove them"), "{all}");
    }

    #[test]
    fn minimal_config_gets_safe_defaults() {
        let c = Config::parse(MINIMAL).expect("valid");
        assert_eq!(c.server.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(c.openim.admin_user_id, "imAdmin");
        assert!(c.admin.issuer.is_empty());
        assert_eq!(c.telemetry.metrics_listen, None);
    }

    #[test]
    fn connection_limits_have_defaults_and_bounds() {
        let c = Config::parse(MINIMAL).expect("valid");
        let s = &c.server;
        assert_eq!((s.first_byte_timeout_ms, s.header_read_timeout_ms, s.idle_timeout_ms), (10_000, 10_000, 60_000));
        assert_eq!(s.max_connections, 2_048);
        let text =
            format!("[server]\nfirst_byte_timeout_ms = 0\nidle_timeout_ms = 3600001\nmax_connections = 0\n{MINIMAL}");
        let all = Config::parse(&text).expect_err("invalid").0.join("\n");
        for needle in ["server.first_byte_timeout_ms", "server.idle_timeout_ms", "server.max_connections"] {
            assert!(all.contains(needle), "{needle} not named in:\n{all}");
        }
    }

    #[test]
    fn the_store_is_memory_unless_redis_is_named_with_a_usable_url() {
        let c = Config::parse(MINIMAL).expect("valid");
        assert!(!c.store.is_redis());
        let ok = format!(
            "[store]\nbackend = \"redis\"\nurl = \"redis://10.0.0.5:6379/2\"\ninstance_id = \"gw-a\"\n{MINIMAL}"
        );
        let c = Config::parse(&ok).expect("valid");
        assert_eq!((c.store.is_redis(), c.store.instance_id().as_str()), (true, "gw-a"));
        for (bad, needle) in [
            ("backend = \"redis\"", "store.url / store.url_file: one is required"),
            ("backend = \"redis\"\nurl = \"http://x\"", "store.url: must be a redis://"),
            ("backend = \"redis\"\nurl = \"redis://x\"\nurl_file = \"u\"", "set only one"),
            ("backend = \"etcd\"", "store.backend: `etcd`"),
            ("timeout_ms = 0", "store.timeout_ms"),
            ("instance_id = \"a b\"", "store.instance_id"),
            ("key_prefix = \"a b\"", "store.key_prefix"),
        ] {
            let text = format!("[store]\n{bad}\n{MINIMAL}");
            let all = Config::parse(&text).expect_err(bad).0.join("\n");
            assert!(all.contains(needle), "{bad}: {needle} not in:\n{all}");
        }
    }

    #[test]
    fn every_unknown_key_and_bad_type_is_reported_at_once() {
        let text = r#"
            [server]
            listen = "not an address"
            max_body_bytez = 5
            [openim]
            api_url = "http://127.0.0.1:10002"
            ws_url = "ws://127.0.0.1:10001"
            secret = "x"
            timeout_ms = "fast"
            colour = "blue"
            [telemetry]
            log_format = "xml"
            [surprise]
            a = 1
        "#;
        let errs = Config::parse(text).expect_err("invalid").0;
        let all = errs.join("\n");
        for needle in ["server.listen", "max_body_bytez", "openim.timeout_ms", "colour", "surprise"] {
            assert!(all.contains(needle), "{needle} not named in:\n{all}");
        }
    }

    #[test]
    fn semantic_errors_are_all_listed() {
        let text = r#"
            [server]
            max_body_bytes = 0
            request_timeout_ms = 1000
            [openim]
            api_url = "ftp://x"
            ws_url = "http://x"
            timeout_ms = 2000
            [telemetry]
            log_format = "xml"
        "#;
        let errs = Config::parse(text).expect_err("invalid").0;
        let all = errs.join("\n");
        for needle in [
            "server.max_body_bytes",
            "openim.timeout_ms",
            "openim.api_url",
            "openim.ws_url",
            "openim.secret",
            "telemetry.log_format",
        ] {
            assert!(all.contains(needle), "{needle} not named in:\n{all}");
        }
    }

    #[test]
    fn privileged_accounts_are_listed_by_valid_user_ids() {
        let c = Config::parse(&format!(
            "{MINIMAL}\n[openim.privileged]\nother_admin_user_ids = [\"imAdmin2\"]\nallow_user_ids = [\"ops_bot\"]\n"
        ))
        .expect("valid");
        assert_eq!(c.openim.admin_user_ids(), vec!["imAdmin".to_owned(), "imAdmin2".to_owned()]);
        assert_eq!(c.openim.privileged.allow_user_ids, vec!["ops_bot".to_owned()]);
        assert_eq!(c.openim.privileged.level_cache_ms, 60_000);
        let errs = Config::parse(&format!(
            "{MINIMAL}\n[openim.privileged]\nother_admin_user_ids = [\"im Admin\", \"\"]\nallow_user_ids = [\"bot\", \"bot\"]\nlevel_cache_ms = 99999999\n"
        ))
        .expect_err("invalid")
        .0;
        let all = errs.join("\n");
        let needles = ["`im Admin` is not a user id", "`` is not a user id", "`bot` is listed twice", "level_cache_ms"];
        for needle in needles {
            assert!(all.contains(needle), "{needle} not named in:\n{all}");
        }
    }

    #[test]
    fn missing_required_table_is_named() {
        let errs = Config::parse("[server]\n").expect_err("invalid").0;
        assert!(errs.iter().any(|e| e.contains("openim")), "{errs:?}");
    }
}
