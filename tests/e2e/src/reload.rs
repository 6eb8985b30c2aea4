//! What the hot-reload suites and the reload benchmark share: a gateway serving one watched plugin
//! file on a route, replacing that file the way deploy tools do, and asking which build answered.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use imgate_client::Session;

use crate::{into_json, Harness, Options};

/// A fresh folder for the watched plugin file (`plugins/`) and the plugin store (`store/`).
pub fn workdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imgate-reload-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    dir
}

/// Replaces `path` the way deploy tools do: a temporary file in the same folder, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A gateway serving plugin `p` (granted `config`; the file `work/plugins/p.wasm`, initially
/// `initial`) on `GET /v1/me/profile` with `chain_config` as its route config, `extra` appended to
/// `[plugins]`; with a session of alice. Returns the watched file's path too.
pub async fn gateway(work: &Path, initial: &Path, chain_config: &str, extra: &str) -> (Harness, Session, PathBuf) {
    gateway_with(work, initial, chain_config, extra, Options::default()).await
}

/// [`gateway`] with the harness options of `opts` (its `extra_toml` is replaced).
pub async fn gateway_with(
    work: &Path,
    initial: &Path,
    chain_config: &str,
    extra: &str,
    opts: Options,
) -> (Harness, Session, PathBuf) {
    let path = work.join("plugins/p.wasm");
    std::fs::copy(initial, &path).unwrap();
    let toml = format!(
        "[plugins]\nstore_dir = \"{store}\"\n{extra}\n[[plugin]]\nname = \"p\"\npath = \"{path}\"\ncapabilities = [\"config\"]\n\
         [[route_plugins]]\nroute = \"get_profile\"\nplugins = [{{ plugin = \"p\", config = {chain_config} }}]\n",
        store = work.join("store").display(),
        path = path.display(),
    );
    let h = Harness::start_with(Options { extra_toml: toml, ..opts }).await;
    let (_, alice) = h.session("alice").await;
    (h, alice, path)
}

/// One signed `GET /v1/me/profile`: the `plugin_version` of the build that answered (the
/// `version` and `big` plugins), or the failure.
pub async fn served(h: &Harness, s: &Session) -> Result<u64, String> {
    let res = h.client().call(s, "GET", "/v1/me/profile", None).await.map_err(|e| e.to_string())?;
    let (status, body) = into_json(res).await;
    match (status, body["plugin_version"].as_u64()) {
        (200, Some(v)) => Ok(v),
        _ => Err(format!("{status} {body}")),
    }
}

/// Polls `f` every `every` until it is true, for at most `limit`; the time it took.
pub async fn within(limit: Duration, every: Duration, mut f: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(every).await;
    }
    None
}

/// Lowercase hex SHA-256: how imgate names a stored plugin version.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `component` with one more (top-level) custom section `name` holding `data`: the same program
/// under another content hash, or with metadata such as a config schema.
pub fn with_custom_section(component: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { b } else { b | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}
