//! The plugin store: every activated artifact kept by content hash with its manifest, and the
//! precompiled cache, so a restart with unchanged plugins does not compile again.
//!
//! Layout under `[plugins] store_dir`:
//! - `artifacts/<sha256>.wasm` and `artifacts/<sha256>.json` (the [`Manifest`]);
//! - `cache/<sha256>-<engine key>.cwasm`: machine code imgate compiled itself. It is the only
//!   precompiled code imgate ever loads (`Component::deserialize_file` is `unsafe` because
//!   loading foreign machine code is unsound: attacks.md P12); the engine key changes with
//!   wasmtime's version and every setting that affects code, so a stale entry is never used.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wasmtime::component::Component;
use wasmtime::Engine;

/// What is known of one stored artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The `[[plugin]]` name it was activated as.
    pub name: String,
    /// SHA-256 of the component, hex.
    pub hash: String,
    /// The uploader's version label, or the first 12 hex digits of the hash.
    pub version: String,
    /// The WIT world it links against.
    #[serde(default)]
    pub world: String,
    /// Capabilities granted when it was activated.
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub size: u64,
    /// `file` (the watched path), `upload` (admin API), `rollback`, `quarantine`.
    #[serde(default)]
    pub source: String,
    /// Unix ms of the first activation.
    #[serde(default)]
    pub stored_at_ms: i64,
    /// The JSON Schema of the plugin's route config, when the component embeds one (the SDK's
    /// `config_schema!`): documentation for operators; the plugin's `init` is what checks configs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_schema: Option<serde_json::Value>,
}

/// The custom section a component carries its config schema in (`plugin-sdk`'s `config_schema!`).
pub const CONFIG_SCHEMA_SECTION: &str = "imgate:config-schema";
const MAX_CONFIG_SCHEMA_BYTES: usize = 64 * 1024;

/// The config schema embedded in a component (in any of its core modules), if any. A schema that
/// is not a JSON object, is too large, or is declared twice is an error: the version is refused.
pub fn embedded_config_schema(bytes: &[u8]) -> Result<Option<serde_json::Value>, String> {
    let mut found: Option<&[u8]> = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("reading the component: {e}"))?;
        if let wasmparser::Payload::CustomSection(c) = payload {
            if c.name() == CONFIG_SCHEMA_SECTION {
                if found.is_some() {
                    return Err(format!("the component declares `{CONFIG_SCHEMA_SECTION}` more than once"));
                }
                found = Some(c.data());
            }
        }
    }
    let Some(data) = found else { return Ok(None) };
    if data.len() > MAX_CONFIG_SCHEMA_BYTES {
        return Err(format!(
            "the embedded config schema (`{CONFIG_SCHEMA_SECTION}`) is {} bytes, over {MAX_CONFIG_SCHEMA_BYTES}",
            data.len()
        ));
    }
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(v) if v.is_object() => Ok(Some(v)),
        Ok(_) => Err(format!("the embedded config schema (`{CONFIG_SCHEMA_SECTION}`) is not a JSON object")),
        Err(e) => Err(format!("the embedded config schema (`{CONFIG_SCHEMA_SECTION}`) is not JSON: {e}")),
    }
}

/// The custom section in which a component declares the hooks it implements (the SDK's `hooks!`):
/// space-separated `on_request` / `on_response`.
pub const HOOKS_SECTION: &str = "imgate:hooks";

/// The hooks a component declares (`None` when it declares nothing: every hook is called). An
/// unknown name or a second declaration refuses the version, like a broken config schema.
pub fn embedded_hooks(bytes: &[u8]) -> Result<Option<crate::plugins::runtime::Hooks>, String> {
    let mut found: Option<&[u8]> = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("reading the component: {e}"))?;
        if let wasmparser::Payload::CustomSection(c) = payload {
            if c.name() == HOOKS_SECTION {
                if found.is_some() {
                    return Err(format!("the component declares `{HOOKS_SECTION}` more than once"));
                }
                found = Some(c.data());
            }
        }
    }
    let Some(data) = found else { return Ok(None) };
    let text = std::str::from_utf8(data).map_err(|_| format!("`{HOOKS_SECTION}` is not UTF-8"))?;
    let mut hooks = crate::plugins::runtime::Hooks { on_request: false, on_response: false };
    for name in text.split_whitespace() {
        match name {
            "on_request" => hooks.on_request = true,
            "on_response" => hooks.on_response = true,
            _ => return Err(format!("`{HOOKS_SECTION}` names an unknown hook (on_request and on_response exist)")),
        }
    }
    Ok(Some(hooks))
}

/// A read or write of the store that failed: the server's fault. Its text names the file, so it
/// belongs in the log and the audit record, never in an answer to a client.
#[derive(Debug, thiserror::Error)]
#[error("{action} {}: {source}", path.display())]
pub struct StoreError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl StoreError {
    fn new(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.to_owned();
        move |source| StoreError { action, path, source }
    }
}

/// Artifacts and the precompiled cache on disk.
pub struct ArtifactStore {
    root: PathBuf,
    engine_key: String,
}

impl ArtifactStore {
    pub fn open(root: &Path, engine: &Engine) -> std::io::Result<ArtifactStore> {
        std::fs::create_dir_all(root.join("artifacts"))?;
        std::fs::create_dir_all(root.join("cache"))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(ArtifactStore { root: root.to_owned(), engine_key: format!("{:016x}", h.finish()) })
    }

    fn artifact(&self, hash: &str) -> PathBuf {
        self.root.join("artifacts").join(format!("{hash}.wasm"))
    }

    fn manifest_path(&self, hash: &str) -> PathBuf {
        self.root.join("artifacts").join(format!("{hash}.json"))
    }

    fn cached(&self, hash: &str) -> PathBuf {
        self.root.join("cache").join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    /// Keeps an artifact and its manifest (an existing manifest is kept: it records the first
    /// activation).
    pub fn put(&self, bytes: &[u8], manifest: &Manifest) -> Result<(), StoreError> {
        let artifact = self.artifact(&manifest.hash);
        if !artifact.exists() {
            write_atomic(&artifact, bytes).map_err(StoreError::new("writing the artifact", &artifact))?;
        }
        let path = self.manifest_path(&manifest.hash);
        if !path.exists() {
            let json = serde_json::to_vec_pretty(manifest)
                .map_err(std::io::Error::other)
                .map_err(StoreError::new("encoding the manifest", &path))?;
            write_atomic(&path, &json).map_err(StoreError::new("writing the manifest", &path))?;
        }
        Ok(())
    }

    pub fn bytes(&self, hash: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.artifact(hash);
        if !is_hash(hash) {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a sha256 hex hash");
            return Err(StoreError::new("reading the artifact", &path)(e));
        }
        std::fs::read(&path).map_err(StoreError::new("reading the artifact", &path))
    }

    pub fn manifest(&self, hash: &str) -> Option<Manifest> {
        if !is_hash(hash) {
            return None;
        }
        serde_json::from_slice(&std::fs::read(self.manifest_path(hash)).ok()?).ok()
    }

    /// Every stored manifest of plugin `name`, oldest first.
    pub fn versions(&self, name: &str) -> Vec<Manifest> {
        let mut out: Vec<Manifest> = std::fs::read_dir(self.root.join("artifacts"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice::<Manifest>(&std::fs::read(e.path()).ok()?).ok())
            .filter(|m| m.name == name)
            .collect();
        out.sort_by_key(|m| m.stored_at_ms);
        out
    }

    /// The component compiled earlier for this engine, if the cache has it.
    pub fn load_compiled(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let path = self.cached(hash);
        if !path.is_file() {
            return None;
        }
        // SAFETY: files in `cache/` are written only by `save_compiled` below, from components
        // this process compiled from `.wasm` itself, and are keyed by the engine's compatibility
        // hash; wasmtime still checks the header and refuses a mismatch.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "precompiled cache entry refused; compiling again");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    pub fn save_compiled(&self, hash: &str, component: &Component) {
        let result =
            component.serialize().map_err(std::io::Error::other).and_then(|b| write_atomic(&self.cached(hash), &b));
        if let Err(e) = result {
            tracing::warn!(hash, error = %e, "could not write the precompiled cache");
        }
    }
}

pub fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `component` with a top-level custom section `name` holding `data`.
    fn with_section(mut component: Vec<u8>, name: &str, data: &[u8]) -> Vec<u8> {
        let mut section = vec![name.len() as u8];
        section.extend_from_slice(name.as_bytes());
        section.extend_from_slice(data);
        assert!(section.len() < 128, "one-byte LEB128 length in this helper");
        component.push(0);
        component.push(section.len() as u8);
        component.extend_from_slice(&section);
        component
    }

    fn empty() -> Vec<u8> {
        wat::parse_str("(component)").unwrap()
    }

    #[test]
    fn declared_hooks_are_read_and_a_bad_declaration_refuses_the_version() {
        use crate::plugins::runtime::Hooks;
        assert_eq!(embedded_hooks(&empty()), Ok(None), "nothing declared: every hook is called");
        let one = with_section(empty(), HOOKS_SECTION, b"on_request ");
        assert_eq!(embedded_hooks(&one), Ok(Some(Hooks { on_request: true, on_response: false })));
        let both = with_section(empty(), HOOKS_SECTION, b"on_response on_request");
        assert_eq!(embedded_hooks(&both), Ok(Some(Hooks::ALL)));
        assert!(embedded_hooks(&with_section(empty(), HOOKS_SECTION, b"on_request on_init")).is_err());
        assert!(embedded_hooks(&with_section(one.clone(), HOOKS_SECTION, b"on_response")).is_err(), "twice");
    }

    #[test]
    fn a_component_without_a_schema_has_none() {
        assert_eq!(embedded_config_schema(&empty()).unwrap(), None);
    }

    #[test]
    fn the_schema_is_found_at_the_top_level_and_inside_a_core_module() {
        let top = with_section(empty(), CONFIG_SCHEMA_SECTION, br#"{"type":"object"}"#);
        assert_eq!(embedded_config_schema(&top).unwrap(), Some(serde_json::json!({"type": "object"})));
        // Where the Rust SDK's `config_schema!` puts it: in the component's core module.
        let nested = wat::parse_str(
            r#"(component (core module (@custom "imgate:config-schema" "{\"required\":[\"words\"]}")))"#,
        )
        .unwrap();
        assert_eq!(embedded_config_schema(&nested).unwrap(), Some(serde_json::json!({"required": ["words"]})));
    }

    #[test]
    fn an_unreadable_or_repeated_schema_is_an_error() {
        let not_json = with_section(empty(), CONFIG_SCHEMA_SECTION, b"{not json");
        assert!(embedded_config_schema(&not_json).unwrap_err().contains("is not JSON"));
        let array = with_section(empty(), CONFIG_SCHEMA_SECTION, b"[1]");
        assert!(embedded_config_schema(&array).unwrap_err().contains("not a JSON object"));
        let twice = with_section(with_section(empty(), CONFIG_SCHEMA_SECTION, b"{}"), CONFIG_SCHEMA_SECTION, b"{}");
        assert!(embedded_config_schema(&twice).unwrap_err().contains("more than once"));
        // Other custom sections are not schemas.
        let other = with_section(empty(), "imgate:other", b"{not json");
        assert_eq!(embedded_config_schema(&other).unwrap(), None);
    }
}
