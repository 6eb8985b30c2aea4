//! `imgate dev`: the embedded OpenIM emulator and the gateway in one process, for demos and tools.
//!
//! It generates fresh dev keys (the gateway's X25519 key, an Ed25519 admin-JWT key) and a random
//! OpenIM secret, writes a real config file next to them, starts the emulator and the gateway on
//! free loopback ports (or `--port`), checks that an admin call goes all the way through to the
//! emulator, and only then writes `env.json` — so a tool that sees the file can use it at once.
//! On SIGINT/SIGTERM it drains the gateway, stops the emulator and removes `env.json`.
//!
//! `env.json` is a contract for tools and tests: keys may be added, none removed or renamed.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::net::TcpListener;

use crate::keys::{self, GatewayKey};

pub const DEV_ISSUER: &str = "imgate-dev";
pub const DEV_AUDIENCE: &str = "imgate-admin";
pub const DEV_KID: &str = "dev-admin-1";
pub const DEV_GATEWAY_KEY_ID: &str = "dev-gw-1";

pub struct DevOptions {
    pub port: Option<u16>,
    pub dir: PathBuf,
    /// The folder of the example plugins' `.wasm` files (`plugins/target/wasm32-wasip2/release`):
    /// when given, `content-filter` is copied into `dir/plugins/` and masks words in direct text
    /// messages.
    pub example_plugins: Option<PathBuf>,
}

/// The example plugin `imgate dev` configures, and the words it masks.
pub const DEV_PLUGIN: &str = "content-filter";
pub const DEV_MASKED_WORDS: [&str; 2] = ["darn", "heck"];

/// Runs until `shutdown` resolves.
pub async fn run(opts: DevOptions, shutdown: impl Future<Output = ()> + Send) -> Result<(), String> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| format!("{}: {e}", opts.dir.display()))?;
    let dir = opts.dir.canonicalize().map_err(|e| format!("{}: {e}", opts.dir.display()))?;
    let env_path = dir.join("env.json");
    // A file from an earlier run must never be mistaken for this one being ready.
    let _ = std::fs::remove_file(&env_path);

    let secret = hex_random(24);
    let emu = openim_emu::Emulator::start(openim_emu::Config { secret: secret.clone(), ..Default::default() })
        .await
        .map_err(|e| format!("starting the OpenIM emulator: {e}"))?;

    let api = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], opts.port.unwrap_or(0))))
        .await
        .map_err(|e| format!("cannot listen on the gateway port: {e}"))?;
    let metrics = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.map_err(|e| e.to_string())?;
    let api_addr = api.local_addr().map_err(|e| e.to_string())?;
    let metrics_addr = metrics.local_addr().map_err(|e| e.to_string())?;

    let gateway_key = GatewayKey::generate(DEV_GATEWAY_KEY_ID);
    let admin_key = keys::generate_admin_key()?;
    write_private(&dir.join("gateway_x25519.key"), &gateway_key.secret_b64())?;
    write_private(&dir.join("admin_ed25519.pem"), &admin_key.private_pem)?;
    write_private(&dir.join("admin_ed25519.pub.pem"), &admin_key.public_pem)?;
    let mut config_text = dev_config(api_addr, metrics_addr, &emu.api_url(), &emu.ws_url(), &secret);
    let mut plugins = Vec::new();
    if let Some(folder) = &opts.example_plugins {
        config_text.push_str(&dev_plugin_config(folder, &dir)?);
        plugins.push(DEV_PLUGIN);
    }
    let config_path = dir.join("imgate.toml");
    write_private(&config_path, &config_text)?;

    let config = crate::Config::load(&config_path).map_err(|e| e.to_string())?;
    let _log_writer = crate::telemetry::init_logging(&config.telemetry);
    // Like `imgate serve`: the config file is handed to the plugin watcher, so `[[plugin]]` and
    // `[[route_plugins]]` edits to it apply while dev runs (once it runs with plugins at all:
    // without any, no plugin engine is started and the first plugin needs a restart).
    let options = crate::state::BuildOptions { config_file: Some(config_path.clone()), ..Default::default() };
    let state = crate::state::build_with(config, &dir, options)
        .map_err(|e| e.to_string())?
        .open_audit(&dir)
        .await
        .map_err(|e| e.to_string())?;
    let audit = state.audit.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(crate::run(state, api, Some(metrics), async {
        let _ = stop_rx.await;
    }));

    let gateway_url = format!("http://{api_addr}");
    let ready = wait_until_ready(&gateway_url, &admin_key.private_pem).await;
    if let Err(e) = ready {
        let _ = stop_tx.send(());
        let _ = gateway.await;
        emu.shutdown().await;
        return Err(e);
    }

    let env = json!({
        "gateway_url": gateway_url,
        "metrics_url": format!("http://{metrics_addr}/metrics"),
        "openim_api_url": emu.api_url(),
        "openim_ws_url": emu.ws_url(),
        "gateway_public_key": gateway_key.public_b64(),
        "gateway_key_id": DEV_GATEWAY_KEY_ID,
        "admin": {
            "issuer": DEV_ISSUER,
            "audience": DEV_AUDIENCE,
            "alg": "EdDSA",
            "kid": DEV_KID,
            "private_key_pem_path": dir.join("admin_ed25519.pem").display().to_string(),
        },
        "openim_admin_user_id": "imAdmin",
        "openim_secret": secret,
        "config_path": config_path.display().to_string(),
        "audit_log": dir.join("audit.jsonl").display().to_string(),
        "plugins": plugins,
    });
    let tmp = dir.join("env.json.tmp");
    write_private(&tmp, &serde_json::to_string_pretty(&env).map_err(|e| e.to_string())?)?;
    std::fs::rename(&tmp, &env_path).map_err(|e| format!("{}: {e}", env_path.display()))?;
    println!("imgate dev is ready: gateway {gateway_url}, OpenIM emulator {}", emu.api_url());
    println!("env: {}", env_path.display());
    if plugins.is_empty() {
        println!("no plugins configured: a [[plugin]] added to {} applies after a restart", config_path.display());
    } else {
        println!("plugin and chain edits to {} apply while imgate dev runs", config_path.display());
    }

    shutdown.await;
    let _ = std::fs::remove_file(&env_path);
    let _ = stop_tx.send(());
    let _ = gateway.await;
    audit.flush().await;
    emu.shutdown().await;
    println!("imgate dev stopped");
    Ok(())
}

fn dev_config(api: SocketAddr, metrics: SocketAddr, openim_api: &str, openim_ws: &str, secret: &str) -> String {
    format!(
        r#"# Generated by `imgate dev`: a throwaway config with throwaway keys. Do not use in production.
[server]
listen = "{api}"

[openim]
api_url = "{openim_api}"
ws_url = "{openim_ws}"
admin_user_id = "imAdmin"
secret = "{secret}"

[[gateway.keys]]
id = "{DEV_GATEWAY_KEY_ID}"
private_key_file = "gateway_x25519.key"

[[admin.issuer]]
issuer = "{DEV_ISSUER}"
audience = "{DEV_AUDIENCE}"
algorithms = ["EdDSA"]
keys = [{{ kid = "{DEV_KID}", file = "admin_ed25519.pub.pem" }}]

[audit]
file = "audit.jsonl"

# Browser builds of OpenIM SDKs may call /openim/* and open the relayed WebSocket from any page.
[browser]
allowed_origins = ["*"]

[telemetry]
log_format = "json"
log_level = "info"
metrics_listen = "{metrics}"
"#
    )
}

/// Copies the `content-filter` example from `folder` into `dir/plugins/` and returns its config:
/// the plugin masks [`DEV_MASKED_WORDS`] in `POST /v1/messages/user/{peer}`.
fn dev_plugin_config(folder: &Path, dir: &Path) -> Result<String, String> {
    let built = folder.join("content_filter.wasm");
    if !built.is_file() {
        return Err(format!(
            "--example-plugins: no {} (build them: cd plugins && cargo build --release --target wasm32-wasip2)",
            built.display()
        ));
    }
    std::fs::create_dir_all(dir.join("plugins")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("plugins").join(format!("{DEV_PLUGIN}.wasm"));
    std::fs::copy(&built, &path).map_err(|e| format!("copying {}: {e}", built.display()))?;
    let words = DEV_MASKED_WORDS.map(|w| format!("\"{w}\"")).join(", ");
    Ok(format!(
        r#"
# Policy plugins (docs/plugins.md). Replace plugins/{DEV_PLUGIN}.wasm while imgate runs: it is
# checked, then swapped in without dropping a request.
[plugins]
store_dir = "plugin-store"

[[plugin]]
name = "{DEV_PLUGIN}"
path = "plugins/{DEV_PLUGIN}.wasm"
capabilities = ["config"]

[[route_plugins]]
routes = ["send_text_to_user", "send_text_to_group"]
plugins = [{{ plugin = "{DEV_PLUGIN}", config = {{ words = [{words}], action = "mask" }} }}]
"#
    ))
}

/// Polls the gateway until an admin health call succeeds end to end (gateway → emulator).
async fn wait_until_ready(gateway_url: &str, admin_pem: &str) -> Result<(), String> {
    let token = mint_admin_jwt(admin_pem, "imgate-dev", "imgate:admin", 300)?;
    let http = reqwest::Client::builder().no_proxy().build().map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match http.get(format!("{gateway_url}/v1/admin/health")).bearer_auth(&token).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("health answered {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(format!("the gateway did not become ready: {last}"))
}

/// Mints an admin JWT with the dev key (the tour and tools do the same with `env.json`).
pub fn mint_admin_jwt(private_pem: &str, sub: &str, scope: &str, ttl_secs: u64) -> Result<String, String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(DEV_KID.into());
    let claims = json!({ "iss": DEV_ISSUER, "aud": DEV_AUDIENCE, "sub": sub, "scope": scope, "iat": now, "exp": now + ttl_secs });
    let key = jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()).map_err(|e| e.to_string())?;
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
}

fn hex_random(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Writes a file readable by its owner only (it may hold a key or a secret).
fn write_private(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(contents.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
}
