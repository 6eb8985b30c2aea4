//! Policy plugins: sandboxed WebAssembly components that imgate runs per route, swapped while
//! traffic flows.
//!
//! A plugin implements the `imgate:plugin@0.1.0` world (`wit/plugin.wit`): `init` checks its
//! per-route configuration at load, `on-request` may proceed, modify, reject or respond, and
//! `on-response` may proceed or replace. Plugins can only restrict: they run after
//! authentication and rate limits and before the route, whose allow-list and identity binding
//! still apply to whatever a plugin passes on.
//!
//! What serves is one immutable [`Snapshot`] (plugins + chains) behind an `ArcSwap`. A request
//! takes the snapshot once and keeps it to the end, so a swap never changes a request in flight
//! and an old version is dropped when its last request finishes. A new version — from the
//! watched file, the admin API, a rollback or a quarantine — becomes a snapshot only after it
//! compiled, linked, instantiated and its `init` accepted every route config that uses it.
//!
//! - `config.rs`  — `[plugins]`, `[[plugin]]`, chain entries: grants and limits, denied by default.
//! - `bindings.rs` — the WIT contract's generated Rust side.
//! - `capabilities.rs` — grants checked at load (imports) and on every host call, one behaviour.
//! - `runtime.rs` — the sandbox: the engine, the linker, loading, one hook call in a fresh store.
//! - `host.rs`    — the imports plugins may be granted (`log`, `clock`, `config`, `kv`, `openim`).
//! - `kv.rs`      — the plugins' key-value namespaces with quotas.
//! - `output.rs`  — a hook's answer read out of the guest under the output limits, before any copy.
//! - `chain.rs`   — the middleware running a route's chain, checking every verdict.
//! - `store.rs`   — artifacts by content hash with manifests; the precompiled cache.
//! - `reload/`    — activation and rollback, quarantine, the file watcher, status.
//! - `api.rs`     — the plugin admin API's wire types, shared with the CLI.
//! - `metrics.rs` — per-plugin counters and histograms.

pub mod api;
mod bindings;
mod capabilities;
pub mod chain;
pub mod config;
pub mod host;
pub mod kv;
pub mod metrics;
mod output;
mod prepared;
pub mod reload;
pub mod runtime;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use api::PluginStatus;
use arc_swap::ArcSwap;
use config::{ChainEntrySpec, FailurePolicy, PluginSpec, RuntimeConfig};
pub use host::HostIo;
pub use reload::Source;
pub use runtime::{Failure, LoadError, LoadedPlugin, Runtime};

use crate::config::{resolve, Config};
use crate::telemetry::Metrics;

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

/// What serves at one moment: every plugin version and every chain built from them.
pub struct Snapshot {
    /// Increases with every swap.
    pub generation: u64,
    pub plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    pub chains: HashMap<String, Arc<Chain>>,
}

impl Snapshot {
    fn empty() -> Snapshot {
        Snapshot { generation: 0, plugins: BTreeMap::new(), chains: HashMap::new() }
    }

    pub fn chain(&self, route: &str) -> Option<Arc<Chain>> {
        self.chains.get(route).cloned()
    }
}

/// The plugin-related part of the configuration (re-read when the config file changes).
#[derive(Clone)]
pub struct PluginConfig {
    pub specs: Vec<PluginSpec>,
    /// Route name → its chain entries.
    pub chains: Vec<(String, Vec<ChainEntrySpec>)>,
    pub base_dir: PathBuf,
}

impl PluginConfig {
    /// The chains a config asks for, checked against the route names that exist.
    pub fn from_config(config: &Config, base_dir: &Path, errors: &mut Vec<String>) -> PluginConfig {
        let mut chains: Vec<(String, Vec<ChainEntrySpec>)> = Vec::new();
        for r in &config.route {
            if !r.plugins.is_empty() {
                chains.push((r.name.clone(), r.plugins.clone()));
            }
        }
        let mut seen = BTreeSet::new();
        for c in &config.route_plugins {
            if c.route.is_some() != c.routes.is_empty() {
                errors.push("route_plugins: give either `route` or a non-empty `routes`".into());
                continue;
            }
            for route in c.route_names() {
                let table = config.route.iter().find(|r| r.name == route);
                let compat = crate::routes::compat::is_route_name(route);
                let builtin = crate::routes::builtin_chain_routes().any(|b| b == route);
                if table.is_none() && !compat && !builtin {
                    errors.push(format!(
                        "route_plugins: `{route}` is neither a [[route]], a built-in route ({}) nor a compat \
                         route (`openim.<group>.<operation>`, docs/plugins.md)",
                        crate::routes::builtin_chain_routes().collect::<Vec<_>>().join(", ")
                    ));
                    continue;
                }
                if table.is_some_and(|r| !r.plugins.is_empty()) || !seen.insert(route.to_owned()) {
                    errors.push(format!("route_plugins: `{route}` has two chains"));
                    continue;
                }
                chains.push((route.to_owned(), c.plugins.clone()));
            }
        }
        for (route, entries) in &chains {
            for e in entries {
                if !config.plugin.iter().any(|p| p.name == e.plugin) {
                    errors.push(format!("route `{route}`: plugin `{}` is not a [[plugin]]", e.plugin));
                }
            }
        }
        PluginConfig { specs: config.plugin.clone(), chains, base_dir: base_dir.to_owned() }
    }

    pub fn spec(&self, name: &str) -> Option<&PluginSpec> {
        self.specs.iter().find(|p| p.name == name)
    }

    pub fn path_of(&self, spec: &PluginSpec) -> PathBuf {
        resolve(&self.base_dir, &spec.path)
    }
}

/// How [`Plugins::load`] treats the disk.
#[derive(Clone, Copy, Debug)]
pub enum LoadMode<'a> {
    /// Serving: versions are kept in `store_dir` (and their machine code cached), the plugin
    /// files — and `config_file`, when known — are watched if `[plugins] watch` is on.
    Serve { config_file: Option<&'a Path> },
    /// `imgate check-config`: compile, link, instantiate and `init` everything, write nothing.
    CheckOnly,
}

/// Every loaded plugin and chain. Without `[[plugin]]` entries no engine is started.
pub struct Plugins {
    pub runtime: Option<Arc<Runtime>>,
    pub io: Arc<HostIo>,
    current: Arc<ArcSwap<Snapshot>>,
    pub manager: Option<Arc<reload::Manager>>,
}

impl Plugins {
    pub fn none() -> Plugins {
        Plugins {
            runtime: None,
            io: HostIo::detached(),
            current: Arc::new(ArcSwap::from_pointee(Snapshot::empty())),
            manager: None,
        }
    }

    /// What serves now; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn chain(&self, route: &str) -> Option<Arc<Chain>> {
        self.current.load().chain(route)
    }

    /// Loads every `[[plugin]]` and every chain, running each entry's `init` on its config.
    /// All problems are reported at once. See [`LoadMode`].
    pub fn load(
        config: &Config,
        base_dir: &Path,
        mode: LoadMode<'_>,
        io: Arc<HostIo>,
        metrics: Arc<Metrics>,
    ) -> Result<Plugins, Vec<String>> {
        let mut errors = Vec::new();
        let pcfg = PluginConfig::from_config(config, base_dir, &mut errors);
        let rt_cfg = &config.plugins;
        check_runtime_config(rt_cfg, &mut errors);
        if config.plugin.is_empty() {
            return if errors.is_empty() { Ok(Plugins::none()) } else { Err(errors) };
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let runtime = Arc::new(Runtime::new(rt_cfg, io.clone()).map_err(|e| vec![e])?);
        let store = match mode {
            LoadMode::CheckOnly => None,
            LoadMode::Serve { .. } => {
                let store_dir = resolve(base_dir, &rt_cfg.store_dir);
                let store = store::ArtifactStore::open(&store_dir, runtime.engine())
                    .map_err(|e| vec![format!("plugins.store_dir: {}: {e}", store_dir.display())])?;
                Some(store)
            }
        };
        let mut loaded = BTreeMap::new();
        let mut sources = HashMap::new();
        for spec in &pcfg.specs {
            let what = format!("plugin `{}`", spec.name);
            if !crate::ids::is_plugin_name(&spec.name) {
                errors.push(format!("{what}: names are 1-64 of a-z 0-9 - _"));
                continue;
            }
            if loaded.contains_key(&spec.name) {
                errors.push(format!("{what}: defined twice"));
                continue;
            }
            spec.limits.resolve(rt_cfg, &what, &mut errors);
            let path = pcfg.path_of(spec);
            match reload::load_file(&runtime, store.as_ref(), rt_cfg, spec, &path) {
                Ok((p, bytes)) => {
                    metrics.plugins.loaded(&spec.name, p.from_cache);
                    tracing::info!(plugin = %spec.name, hash = %p.hash, from_cache = p.from_cache, "plugin loaded");
                    sources.insert(spec.name.clone(), bytes);
                    loaded.insert(spec.name.clone(), Arc::new(p));
                }
                Err(e) => errors.push(format!("{what}: {}: {e}", path.display())),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let snapshot = reload::build_snapshot(&runtime, &io, &pcfg, loaded, 1)?;
        let current = Arc::new(ArcSwap::from_pointee(snapshot));
        let (Some(store), LoadMode::Serve { config_file }) = (store, mode) else {
            return Ok(Plugins { runtime: Some(runtime), io, current, manager: None });
        };
        let manager = reload::Manager::start(reload::ManagerParts {
            runtime: runtime.clone(),
            io: io.clone(),
            store,
            config: pcfg,
            runtime_config: rt_cfg.clone(),
            current: current.clone(),
            metrics,
            config_file: config_file.map(Path::to_owned),
            table_routes: config.route.iter().map(|r| r.name.clone()).collect(),
            sources,
        })
        .map_err(|e| vec![e])?;
        Ok(Plugins { runtime: Some(runtime), io, current, manager: Some(manager) })
    }
}

fn check_runtime_config(rt: &RuntimeConfig, errors: &mut Vec<String>) {
    if rt.max_concurrent_calls == 0 || rt.max_concurrent_calls > 4096 {
        errors.push("plugins.max_concurrent_calls: must be between 1 and 4096".into());
    }
    if rt.quarantine_failures == 0 {
        errors.push("plugins.quarantine_failures: must be at least 1".into());
    }
}

/// Reads at most `max` bytes (one more tells a larger file apart) so a huge file is refused
/// without being read whole.
pub(crate) fn read_capped(path: &Path, max: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.take(max as u64 + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() > max {
        return Err(format!("the file is larger than plugins.max_component_bytes ({max})"));
    }
    Ok(bytes)
}
