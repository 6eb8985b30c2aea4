//! Policy plugins: sandboxed WebAssembly components that imgate runs per route.
//!
//! A plugin implements the `imgate:plugin@0.1.0` world (`wit/plugin.wit`): `init` checks its
//! per-route configuration at load, `on-request` may proceed, modify, reject or respond, and
//! `on-response` may proceed or replace. Plugins can only restrict: they run after
//! authentication and rate limits and before the route, whose allow-list and identity binding
//! still apply to whatever a plugin passes on.
//!
//! - `config.rs`  — `[plugins]`, `[[plugin]]`, chain entries: grants and limits, denied by default.
//! - `runtime.rs` — the engine, the linker, loading checks, one hook call in a fresh instance.
//! - `host.rs`    — the imports plugins may be granted (`log`, `clock`, `config`, `kv`, `openim`).
//! - `kv.rs`      — the plugins' key-value namespaces with quotas.
//! - `chain.rs`   — the middleware running a route's chain, checking every verdict.
//! - `metrics.rs` — per-plugin counters and histograms.

pub mod chain;
pub mod config;
pub mod host;
pub mod kv;
pub mod metrics;
pub mod runtime;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use config::{ChainEntrySpec, FailurePolicy};
pub use host::HostIo;
pub use runtime::{Failure, LoadError, LoadedPlugin, Runtime};

use crate::config::{resolve, Config};

/// Routes outside the `[[route]]` table that `[[route_plugins]]` may name (it may also name
/// table routes, e.g. the shipped `/v1` routes, without restating them).
pub const BUILTIN_ROUTES: &[&str] = &[
    "me",
    "auth.token",
    "auth.logout",
    "admin.health",
    "admin.users.register",
    "admin.devices.enroll",
    "admin.devices.list",
    "admin.devices.delete",
    "admin.users.revoke",
    "admin.sessions.revoke",
    "admin.openim",
];

/// One entry of a loaded chain.
pub struct Entry {
    pub plugin: Arc<LoadedPlugin>,
    /// The entry's config as JSON text (what `init` accepted; what `config.get` returns).
    pub config: Arc<str>,
    pub failure: Option<FailurePolicy>,
}

/// The plugins of one route, in order.
pub struct Chain {
    pub route: String,
    pub entries: Vec<Entry>,
}

/// Every loaded plugin and chain. Without `[[plugin]]` entries no engine is started.
pub struct Plugins {
    pub runtime: Option<Arc<Runtime>>,
    pub io: Arc<HostIo>,
    pub chains: HashMap<String, Arc<Chain>>,
}

impl Plugins {
    pub fn none() -> Plugins {
        Plugins { runtime: None, io: HostIo::detached(), chains: HashMap::new() }
    }

    pub fn chain(&self, route: &str) -> Option<Arc<Chain>> {
        self.chains.get(route).cloned()
    }

    /// Loads every `[[plugin]]` and every chain, running each entry's `init` on its config.
    /// All problems are reported at once.
    pub fn load(config: &Config, base_dir: &Path, io: Arc<HostIo>) -> Result<Plugins, Vec<String>> {
        let mut errors = Vec::new();
        let mut chains_wanted: Vec<(String, &Vec<ChainEntrySpec>)> = Vec::new();
        for r in &config.route {
            if !r.plugins.is_empty() {
                chains_wanted.push((r.name.clone(), &r.plugins));
            }
        }
        let mut seen = BTreeSet::new();
        for c in &config.route_plugins {
            let table = config.route.iter().find(|r| r.name == c.route);
            if table.is_none() && !BUILTIN_ROUTES.contains(&c.route.as_str()) {
                errors.push(format!(
                    "route_plugins: `{}` is neither a [[route]] nor a built-in route ({})",
                    c.route,
                    BUILTIN_ROUTES.join(", ")
                ));
                continue;
            }
            if table.is_some_and(|r| !r.plugins.is_empty()) || !seen.insert(c.route.clone()) {
                errors.push(format!("route_plugins: `{}` has two chains", c.route));
                continue;
            }
            chains_wanted.push((c.route.clone(), &c.plugins));
        }
        let rt_cfg = &config.plugins;
        if rt_cfg.max_concurrent_calls == 0 || rt_cfg.max_concurrent_calls > 4096 {
            errors.push("plugins.max_concurrent_calls: must be between 1 and 4096".into());
        }
        if config.plugin.is_empty() {
            for (route, entries) in &chains_wanted {
                for e in entries.iter() {
                    errors.push(format!("route `{route}`: plugin `{}` is not a [[plugin]]", e.plugin));
                }
            }
            return if errors.is_empty() { Ok(Plugins::none()) } else { Err(errors) };
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let runtime = Arc::new(Runtime::new(rt_cfg, io.clone()).map_err(|e| vec![e])?);
        let mut loaded: HashMap<String, Arc<LoadedPlugin>> = HashMap::new();
        for spec in &config.plugin {
            let what = format!("plugin `{}`", spec.name);
            let valid_name = (1..=64).contains(&spec.name.len())
                && spec.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !valid_name {
                errors.push(format!("{what}: names are 1-64 of a-z 0-9 - _"));
                continue;
            }
            if loaded.contains_key(&spec.name) {
                errors.push(format!("{what}: defined twice"));
                continue;
            }
            let limits = spec.limits.resolve(rt_cfg, &what, &mut errors);
            let path = resolve(base_dir, &spec.path);
            let bytes = match read_capped(&path, rt_cfg.max_component_bytes) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(format!("{what}: {}: {e}", path.display()));
                    continue;
                }
            };
            let grants: BTreeSet<_> = spec.capabilities.iter().copied().collect();
            match runtime.load(&spec.name, &bytes, &grants, limits) {
                Ok(p) => {
                    tracing::info!(plugin = %spec.name, hash = %p.hash, "plugin loaded");
                    loaded.insert(spec.name.clone(), Arc::new(p));
                }
                Err(e) => errors.push(format!("{what}: {}: {e}", path.display())),
            }
        }
        let mut chains = HashMap::new();
        for (route, entries) in chains_wanted {
            let mut chain = Chain { route: route.clone(), entries: Vec::new() };
            for e in entries {
                let Some(plugin) = loaded.get(&e.plugin) else {
                    if !config.plugin.iter().any(|p| p.name == e.plugin) {
                        errors.push(format!("route `{route}`: plugin `{}` is not a [[plugin]]", e.plugin));
                    }
                    continue;
                };
                let text: Arc<str> = Arc::from(e.config.to_string());
                let rid: Arc<str> = Arc::from("init");
                let (answer, _) = runtime.call(plugin, &io, &text, &rid, runtime::Hook::Init(&text));
                match answer {
                    Ok(runtime::HookAnswer::Init(Ok(()))) => {}
                    Ok(runtime::HookAnswer::Init(Err(msg))) => {
                        errors.push(format!("route `{route}`: plugin `{}`: {}", e.plugin, LoadError::InitRefused(msg)))
                    }
                    Ok(_) => errors.push(format!("route `{route}`: plugin `{}`: init answered nothing", e.plugin)),
                    Err(f) => {
                        errors.push(format!("route `{route}`: plugin `{}`: {}", e.plugin, LoadError::InitFailed(f)))
                    }
                }
                chain.entries.push(Entry { plugin: plugin.clone(), config: text, failure: e.failure });
            }
            chains.insert(route, Arc::new(chain));
        }
        if errors.is_empty() {
            Ok(Plugins { runtime: Some(runtime), io, chains })
        } else {
            Err(errors)
        }
    }
}

/// Reads at most `max` bytes (one more tells a larger file apart) so a huge file is refused
/// without being read whole.
fn read_capped(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() > max {
        return Err(format!("the file is larger than plugins.max_component_bytes ({max})"));
    }
    Ok(bytes)
}
