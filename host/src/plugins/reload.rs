//! Plugin lifecycle while serving: activation (from the watched file, the admin API, a rollback
//! or a quarantine), validation before any swap, the atomic swap itself, quarantine of a version
//! that keeps trapping, the file watcher, and the status the admin API shows.
//!
//! One rule for every source: a version becomes active only after it compiled (or came from the
//! precompiled cache), linked, instantiated within its limits and its `init` accepted every route
//! config that uses it; then a new [`Snapshot`] replaces the old one in one atomic store.
//! Anything else leaves the serving snapshot untouched and is reported (log, metric, audit record,
//! status). The file at the plugin's `path` stays the source of truth: activating an uploaded or
//! rolled-back version writes it there (atomically), so a restart serves what was active.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;

use super::config::{Capability, PluginSpec, RuntimeConfig};
use super::runtime::{Failure, Hook, HookAnswer, LoadError};
use super::store::{write_atomic, ArtifactStore, Manifest};
use super::{read_capped, Chain, Entry, HostIo, LoadedPlugin, PluginConfig, Runtime, Snapshot};
use crate::audit::{AuditEvent, AuditLog};
use crate::auth::now_ms;
use crate::telemetry::Metrics;

const WORLD: &str = "imgate:plugin@0.1.0";
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The watched file at the plugin's `path` (and start-up).
    File,
    /// The admin API or `imgate plugin`.
    Upload,
    Rollback,
    Quarantine,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Upload => "upload",
            Source::Rollback => "rollback",
            Source::Quarantine => "quarantine",
        }
    }
}

/// The load check a component failed: a stable reason, the `reason` of the admin API's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    TooLarge,
    Precompiled,
    NotAComponent,
    DoesNotCompile,
    CompileTimeout,
    ImportsNotAllowed,
    DoesNotLink,
    InstantiationFailed,
    ConfigSchema,
    InitRefused,
    InitFailed,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::TooLarge => "too_large",
            Check::Precompiled => "precompiled",
            Check::NotAComponent => "not_a_component",
            Check::DoesNotCompile => "does_not_compile",
            Check::CompileTimeout => "compile_timeout",
            Check::ImportsNotAllowed => "imports_not_allowed",
            Check::DoesNotLink => "does_not_link",
            Check::InstantiationFailed => "instantiation_failed",
            Check::ConfigSchema => "config_schema",
            Check::InitRefused => "init_refused",
            Check::InitFailed => "init_failed",
        }
    }
}

/// Why a change of the plugin manager was not made. Its `Display` is the full detail, for the
/// log and the audit record (it may name files and carry I/O errors); [`ManagerError::message`]
/// is what a client may read, [`ManagerError::reason`] the stable code. The admin API maps each
/// variant to a status in one place (`routes::plugin_admin`).
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No `[[plugin]]` of that name.
    #[error("no [[plugin]] named `{0}`")]
    UnknownPlugin(String),
    /// No stored version of the plugin has that hash.
    #[error("no stored version {hash} of `{name}`")]
    UnknownVersion { name: String, hash: String },
    /// The component failed a load check (compile, imports, link, instantiation, config schema,
    /// `init` on a route config). `message` is the check's own words, without paths or I/O.
    #[error("{detail}")]
    Refused { check: Check, message: String, detail: String },
    /// The version is quarantined (it kept trapping) and may not come back before `until_ms`.
    #[error("version {} is quarantined until {until_ms} (unix ms)", short(hash))]
    Quarantined { hash: String, until_ms: i64 },
    /// No earlier version that is not quarantined.
    #[error("`{0}` has no earlier good version to roll back to")]
    NothingToRollBack(String),
    /// The watcher saw a file it refused already (several events of one write).
    #[error("already refused")]
    AlreadyRefused,
    /// The server's fault: the plugin store or the plugin file could not be read or written.
    #[error("{0}")]
    Store(String),
    /// The server's fault: anything else (a thread that did not start, an inconsistent config).
    #[error("{0}")]
    Internal(String),
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

impl ManagerError {
    /// The stable code of this error (the `reason` of the admin API's answer and of `last_error`).
    pub fn reason(&self) -> &'static str {
        match self {
            ManagerError::UnknownPlugin(_) => "unknown_plugin",
            ManagerError::UnknownVersion { .. } => "unknown_version",
            ManagerError::Refused { check, .. } => check.as_str(),
            ManagerError::Quarantined { .. } => "quarantined",
            ManagerError::NothingToRollBack(_) => "nothing_to_roll_back",
            ManagerError::AlreadyRefused => "already_refused",
            ManagerError::Store(_) => "store_failed",
            ManagerError::Internal(_) => "internal",
        }
    }

    /// What a client may read: never a server path, file name or I/O error.
    pub fn message(&self) -> String {
        match self {
            ManagerError::UnknownPlugin(_) => "no such plugin".into(),
            ManagerError::UnknownVersion { .. } => "no stored version of this plugin has this hash".into(),
            ManagerError::Refused { message, .. } => message.clone(),
            ManagerError::Quarantined { hash, until_ms } => {
                format!("version {} is quarantined until {until_ms} (unix ms)", short(hash))
            }
            ManagerError::NothingToRollBack(_) => "no earlier good version to roll back to".into(),
            ManagerError::AlreadyRefused => "this version was refused already".into(),
            ManagerError::Store(_) => {
                "the gateway could not read or write the plugin store or file; the serving version stays".into()
            }
            ManagerError::Internal(_) => "internal error".into(),
        }
    }

    /// Whether the server, not the request, is at fault.
    pub fn is_server_fault(&self) -> bool {
        matches!(self, ManagerError::Store(_) | ManagerError::Internal(_))
    }

    fn refused(check: Check, message: impl Into<String>, detail: impl Into<String>) -> ManagerError {
        ManagerError::Refused { check, message: message.into(), detail: detail.into() }
    }

    /// Several problems as one: the first server fault, else every refusal (the first's check).
    fn combine(mut errors: Vec<ManagerError>) -> ManagerError {
        if let Some(i) = errors.iter().position(ManagerError::is_server_fault) {
            return errors.swap_remove(i);
        }
        if errors.len() == 1 {
            return errors.remove(0);
        }
        let check = match errors.first() {
            Some(ManagerError::Refused { check, .. }) => *check,
            _ => Check::InitFailed,
        };
        let message = errors.iter().map(ManagerError::message).collect::<Vec<_>>().join("; ");
        let detail = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        ManagerError::refused(check, message, detail)
    }
}

impl From<LoadError> for ManagerError {
    fn from(e: LoadError) -> ManagerError {
        let detail = e.to_string();
        let (check, message): (Check, String) = match &e {
            // A thread that did not start, a host function that panicked: not the component's fault.
            LoadError::Io(_) | LoadError::InitFailed(Failure::HostPanic) => return ManagerError::Internal(detail),
            LoadError::TooLarge { .. } => (Check::TooLarge, detail.clone()),
            LoadError::Precompiled => (Check::Precompiled, detail.clone()),
            LoadError::NotAComponent(_) => (Check::NotAComponent, "not a WebAssembly component".into()),
            LoadError::Compile(_) => (Check::DoesNotCompile, "does not compile within the runtime's limits".into()),
            LoadError::CompileTimeout(_) => (Check::CompileTimeout, detail.clone()),
            // The import names come from the component itself, the reasons are imgate's words.
            LoadError::Imports(_) => (Check::ImportsNotAllowed, detail.clone()),
            LoadError::Link(_) => (Check::DoesNotLink, format!("does not link against {WORLD}")),
            LoadError::Instantiate(_) => (Check::InstantiationFailed, "instantiation failed".into()),
            LoadError::InitRefused(why) => (Check::InitRefused, init_refused(why)),
            LoadError::InitFailed(f) => (Check::InitFailed, init_failed(f)),
        };
        ManagerError::refused(check, message, detail)
    }
}

const MAX_PLUGIN_REASON_CHARS: usize = 300;

/// `init`'s refusal with the plugin's own words (from the sandbox, which reads no server file),
/// capped in length.
fn init_refused(why: &str) -> String {
    let mut capped: String = why.chars().take(MAX_PLUGIN_REASON_CHARS).collect();
    if capped.len() < why.len() {
        capped.push('…');
    }
    format!("init refused the configuration: {capped}")
}

/// `init` failed: the limit it hit, or the kind of failure only (the text of a trap or of an
/// instantiation error is wasmtime's and may carry the plugin's build paths or the host's).
fn init_failed(f: &Failure) -> String {
    match f {
        Failure::Trap(_) | Failure::InvalidOutput(_) | Failure::Instantiate(_) => format!("init failed: {}", f.kind()),
        _ => format!("init failed: {f}"),
    }
}

/// The last refused activation of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub hash: String,
    pub source: &'static str,
    /// The stable code ([`ManagerError::reason`]).
    pub reason: &'static str,
    /// What went wrong, in words safe to show ([`ManagerError::message`]); the full detail is in
    /// the log and the audit record.
    pub error: String,
    pub at_ms: i64,
}

/// A version that may not come back from the watched file before `until_ms`.
#[derive(Debug, Clone, Serialize)]
pub struct Quarantined {
    pub hash: String,
    pub until_ms: i64,
    /// How many times this version was quarantined (the backoff doubles each time).
    pub times: u32,
    /// The failures that put it there (the last time), by kind (`trap`, `deadline`, `exit`, ...).
    pub kinds: BTreeMap<&'static str, u32>,
}

/// What `/v1/admin/plugins` shows of one plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub path: String,
    pub capabilities: Vec<String>,
    pub active: Option<Manifest>,
    /// Versions activated since start, oldest first (hashes).
    pub history: Vec<String>,
    /// Every stored version of this plugin.
    pub versions: Vec<Manifest>,
    pub last_error: Option<LastError>,
    pub quarantined: Vec<Quarantined>,
    /// The plugin's failures since start, by kind (every version; the same counts as the
    /// `imgate_plugin_failures_total` metric, summed over hooks and policies).
    pub failures: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
struct PluginState {
    history: Vec<String>,
    last_error: Option<LastError>,
    quarantine: HashMap<String, Quarantined>,
    /// The serving version's own failures inside the quarantine window.
    failures: VecDeque<(Instant, &'static str)>,
    /// Every failure since start, by kind.
    failure_counts: BTreeMap<&'static str, u64>,
    rollback_pending: bool,
}

/// What [`Manager::start`] needs.
pub struct ManagerParts {
    pub runtime: Arc<Runtime>,
    pub io: Arc<HostIo>,
    pub store: ArtifactStore,
    pub config: PluginConfig,
    pub runtime_config: RuntimeConfig,
    pub current: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub config_file: Option<PathBuf>,
    pub table_routes: BTreeSet<String>,
    /// The bytes each plugin was loaded from at start-up.
    pub sources: HashMap<String, Vec<u8>>,
}

/// Owns every change to the serving snapshot.
pub struct Manager {
    runtime: Arc<Runtime>,
    io: Arc<HostIo>,
    store: ArtifactStore,
    runtime_config: RuntimeConfig,
    config: Mutex<PluginConfig>,
    current: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    config_file: Option<PathBuf>,
    table_routes: BTreeSet<String>,
    /// Serialises activations: each builds on the snapshot the previous one left.
    activation: Mutex<()>,
    state: Mutex<BTreeMap<String, PluginState>>,
    audit: Mutex<AuditLog>,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads and loads one plugin file (through the precompiled cache).
pub(crate) fn load_file(
    runtime: &Runtime,
    store: Option<&ArtifactStore>,
    rt: &RuntimeConfig,
    spec: &PluginSpec,
    path: &Path,
) -> Result<(LoadedPlugin, Vec<u8>), String> {
    let bytes = read_capped(path, rt.max_component_bytes)?;
    let p = load_bytes(runtime, store, rt, spec, &bytes).map_err(|e| e.to_string())?;
    Ok((p, bytes))
}

fn load_bytes(
    runtime: &Runtime,
    store: Option<&ArtifactStore>,
    rt: &RuntimeConfig,
    spec: &PluginSpec,
    bytes: &[u8],
) -> Result<LoadedPlugin, ManagerError> {
    let mut errors = Vec::new();
    let limits = spec.limits.resolve(rt, &format!("plugin `{}`", spec.name), &mut errors);
    if !errors.is_empty() {
        // The configuration's limits, not the component: the server's fault.
        return Err(ManagerError::Internal(errors.join("; ")));
    }
    let grants: BTreeSet<Capability> = spec.capabilities.iter().copied().collect();
    let mut plugin = runtime.load_cached(&spec.name, bytes, &grants, limits, store)?;
    // A version whose embedded config schema is unreadable is refused like any broken artifact
    // (the schema checks' words name the section and the bytes, never a file).
    plugin.config_schema = super::store::embedded_config_schema(bytes)
        .map_err(|e| ManagerError::refused(Check::ConfigSchema, e.clone(), e))?;
    Ok(plugin)
}

/// Builds the chains of `config` from `plugins`, running every entry's `init` on its config.
pub(crate) fn build_snapshot(
    runtime: &Runtime,
    io: &Arc<HostIo>,
    config: &PluginConfig,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    generation: u64,
) -> Result<Snapshot, Vec<String>> {
    snapshot_of(runtime, io, config, plugins, generation).map_err(|e| e.iter().map(ToString::to_string).collect())
}

/// [`build_snapshot`], with every problem as a [`ManagerError`].
fn snapshot_of(
    runtime: &Runtime,
    io: &Arc<HostIo>,
    config: &PluginConfig,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    generation: u64,
) -> Result<Snapshot, Vec<ManagerError>> {
    let mut errors = Vec::new();
    let mut chains = HashMap::new();
    for (route, entries) in &config.chains {
        let mut chain = Chain { route: route.clone(), entries: Vec::new() };
        for e in entries {
            let Some(plugin) = plugins.get(&e.plugin) else {
                errors.push(ManagerError::Internal(format!("route `{route}`: plugin `{}` is not loaded", e.plugin)));
                continue;
            };
            let text: Arc<str> = Arc::from(e.config.to_string());
            let rid: Arc<str> = Arc::from("init");
            let (answer, _) = runtime.call(plugin, io, &text, &rid, Hook::Init(&text));
            let problem = match answer {
                Ok(HookAnswer::Init(Ok(()))) => None,
                Ok(HookAnswer::Init(Err(msg))) => Some(LoadError::InitRefused(msg).into()),
                Ok(_) => {
                    Some(ManagerError::refused(Check::InitFailed, "init answered nothing", "init answered nothing"))
                }
                Err(f) => Some(LoadError::InitFailed(f).into()),
            };
            match problem {
                // Which route config and plugin it was, in the client's words and the log's.
                Some(ManagerError::Refused { check, message, detail }) => errors.push(ManagerError::Refused {
                    check,
                    message: format!("route `{route}`: plugin `{}`: {message}", e.plugin),
                    detail: format!("route `{route}`: plugin `{}`: {detail}", e.plugin),
                }),
                Some(other) => errors.push(other),
                None => {}
            }
            chain.entries.push(Entry { plugin: plugin.clone(), config: text, failure: e.failure });
        }
        chains.insert(route.clone(), Arc::new(chain));
    }
    if errors.is_empty() {
        Ok(Snapshot { generation, plugins, chains })
    } else {
        Err(errors)
    }
}

impl Manager {
    pub fn start(parts: ManagerParts) -> Result<Arc<Manager>, String> {
        let watch = parts.runtime_config.watch;
        let manager = Arc::new(Manager {
            runtime: parts.runtime,
            io: parts.io,
            store: parts.store,
            runtime_config: parts.runtime_config,
            config: Mutex::new(parts.config),
            current: parts.current,
            metrics: parts.metrics,
            config_file: parts.config_file,
            table_routes: parts.table_routes,
            activation: Mutex::new(()),
            state: Mutex::new(BTreeMap::new()),
            audit: Mutex::new(AuditLog::memory()),
            watcher: Mutex::new(None),
        });
        let snap = manager.current.load_full();
        for (name, p) in &snap.plugins {
            if let Some(bytes) = parts.sources.get(name) {
                let manifest = manager.manifest_for(p, bytes.len(), Source::File, None);
                manager.store.put(bytes, &manifest).map_err(|e| format!("plugins.store_dir: {e}"))?;
            }
            lock(&manager.state).entry(name.clone()).or_default().history.push(p.hash.clone());
        }
        if watch {
            manager.watch()?;
        }
        Ok(manager)
    }

    /// Where change records go (the gateway's audit log, once it is open).
    pub fn set_audit(&self, audit: AuditLog) {
        *lock(&self.audit) = audit;
    }

    fn audit(&self, outcome: &str, detail: serde_json::Value) {
        let detail = match detail {
            serde_json::Value::Object(m) => m,
            _ => Default::default(),
        };
        lock(&self.audit).record(AuditEvent {
            kind: "plugin".into(),
            outcome: outcome.to_owned(),
            detail,
            ..Default::default()
        });
    }

    fn manifest_for(&self, plugin: &LoadedPlugin, size: usize, source: Source, version: Option<&str>) -> Manifest {
        let (name, hash) = (plugin.name.as_str(), plugin.hash.as_str());
        let caps = lock(&self.config)
            .spec(name)
            .map(|s| s.capabilities.iter().map(|c| c.as_str().to_owned()).collect())
            .unwrap_or_default();
        Manifest {
            name: name.to_owned(),
            hash: hash.to_owned(),
            version: version.map(str::to_owned).unwrap_or_else(|| hash[..12].to_owned()),
            world: WORLD.into(),
            capabilities: caps,
            size: size as u64,
            source: source.as_str().into(),
            stored_at_ms: now_ms(),
            config_schema: plugin.config_schema.clone(),
        }
    }

    /// Checks a version fully against the current configuration without serving it: the
    /// snapshot it would make.
    fn validate(&self, name: &str, bytes: &[u8]) -> Result<(Arc<LoadedPlugin>, Snapshot), ManagerError> {
        let config = lock(&self.config).clone();
        let spec = config.spec(name).ok_or_else(|| ManagerError::UnknownPlugin(name.to_owned()))?;
        let loaded = Arc::new(load_bytes(&self.runtime, Some(&self.store), &self.runtime_config, spec, bytes)?);
        self.metrics.plugins.loaded(name, loaded.from_cache);
        let current = self.current.load_full();
        let mut plugins = current.plugins.clone();
        plugins.insert(name.to_owned(), loaded.clone());
        let snap = snapshot_of(&self.runtime, &self.io, &config, plugins, current.generation + 1)
            .map_err(ManagerError::combine)?;
        Ok((loaded, snap))
    }

    /// Stores a version after checking it, without activating it.
    pub fn upload(&self, name: &str, bytes: &[u8], version: Option<&str>) -> Result<Manifest, ManagerError> {
        let (loaded, _) = self.validate(name, bytes).inspect_err(|e| self.refused(name, bytes, Source::Upload, e))?;
        let manifest = self.manifest_for(&loaded, bytes.len(), Source::Upload, version);
        self.store
            .put(bytes, &manifest)
            .map_err(|e| ManagerError::Store(e.to_string()))
            .inspect_err(|e| self.refused(name, bytes, Source::Upload, e))?;
        self.audit("uploaded", serde_json::json!({ "plugin": name, "hash": loaded.hash, "version": manifest.version }));
        Ok(self.store.manifest(&loaded.hash).unwrap_or(manifest))
    }

    /// Makes `bytes` the serving version of `name` (see the module docs for the checks). Blocks:
    /// call it off the async workers.
    pub fn activate(
        &self,
        name: &str,
        bytes: &[u8],
        source: Source,
        version: Option<&str>,
    ) -> Result<Manifest, ManagerError> {
        let one_at_a_time = lock(&self.activation);
        self.activate_locked(&one_at_a_time, name, bytes, source, version)
    }

    /// [`Manager::activate`] for a caller holding the activation lock (`_held`): whoever decides
    /// *what* to activate (the watcher reading the file, a rollback choosing a version) decides
    /// under the same lock, so no activation can slip in between and be undone by a stale one.
    fn activate_locked(
        &self,
        _held: &std::sync::MutexGuard<'_, ()>,
        name: &str,
        bytes: &[u8],
        source: Source,
        version: Option<&str>,
    ) -> Result<Manifest, ManagerError> {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(bytes));
        let current = self.current.load_full();
        if let Some(serving) = current.plugins.get(name).filter(|p| p.hash == hash) {
            // Already serving (e.g. the watcher seeing imgate's own write).
            return Ok(self
                .store
                .manifest(&hash)
                .unwrap_or_else(|| self.manifest_for(serving, bytes.len(), source, version)));
        }
        if source == Source::File {
            // The same broken file seen again (several events of one write): already reported.
            if lock(&self.state).get(name).and_then(|s| s.last_error.as_ref()).is_some_and(|e| e.hash == hash) {
                return Err(ManagerError::AlreadyRefused);
            }
            // (Read into a local: the state lock must be released before `refused` takes it.)
            let quarantined = lock(&self.state)
                .get(name)
                .and_then(|s| s.quarantine.get(&hash))
                .filter(|q| q.until_ms > now_ms())
                .map(|q| q.until_ms);
            if let Some(until_ms) = quarantined {
                let e = ManagerError::Quarantined { hash: hash.clone(), until_ms };
                self.refused(name, bytes, source, &e);
                return Err(e);
            }
        }
        let (loaded, snap) = self.validate(name, bytes).inspect_err(|e| self.refused(name, bytes, source, e))?;
        let manifest = self.manifest_for(&loaded, bytes.len(), source, version);
        self.store
            .put(bytes, &manifest)
            .map_err(|e| ManagerError::Store(e.to_string()))
            .inspect_err(|e| self.refused(name, bytes, source, e))?;
        if source != Source::File {
            let path = {
                let config = lock(&self.config);
                config.spec(name).map(|s| config.path_of(s))
            };
            if let Some(path) = path {
                write_atomic(&path, bytes)
                    .map_err(|e| ManagerError::Store(format!("writing the plugin file {}: {e}", path.display())))
                    .inspect_err(|e| self.refused(name, bytes, source, e))?;
            }
        }
        let generation = snap.generation;
        self.current.store(Arc::new(snap));
        {
            let mut st = lock(&self.state);
            let ps = st.entry(name.to_owned()).or_default();
            ps.history.push(hash.clone());
            ps.last_error = None;
            ps.failures.clear();
        }
        self.metrics.plugins.reload(name, "activated");
        tracing::info!(plugin = name, hash = %hash, source = source.as_str(), generation, "plugin version activated");
        self.audit(
            "activated",
            serde_json::json!({ "plugin": name, "hash": hash, "version": manifest.version, "source": source.as_str() }),
        );
        Ok(self.store.manifest(&hash).unwrap_or(manifest))
    }

    /// Records a version that was not stored or activated: `last_error` (the words safe to show),
    /// the metric, the log and the audit record (the full detail). A server fault is audited as
    /// `failed`, a refused version as `refused`.
    fn refused(&self, name: &str, bytes: &[u8], source: Source, error: &ManagerError) {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(bytes));
        let reason = error.reason();
        lock(&self.state).entry(name.to_owned()).or_default().last_error = Some(LastError {
            hash: hash.clone(),
            source: source.as_str(),
            reason,
            error: error.message(),
            at_ms: now_ms(),
        });
        self.metrics.plugins.reload(name, "refused");
        let detail = error.to_string();
        let outcome = if error.is_server_fault() {
            tracing::error!(plugin = name, hash = %hash, source = source.as_str(), reason, error = %detail, "plugin version could not be stored or activated; the serving version stays");
            "failed"
        } else {
            tracing::warn!(plugin = name, hash = %hash, source = source.as_str(), reason, error = %detail, "plugin version refused; the serving version stays");
            "refused"
        };
        self.audit(
            outcome,
            serde_json::json!({ "plugin": name, "hash": hash, "source": source.as_str(), "reason": reason, "error": detail }),
        );
    }

    /// Activates a stored version by hash.
    pub fn activate_hash(&self, name: &str, hash: &str, source: Source) -> Result<Manifest, ManagerError> {
        let one_at_a_time = lock(&self.activation);
        self.activate_hash_locked(&one_at_a_time, name, hash, source)
    }

    fn activate_hash_locked(
        &self,
        held: &std::sync::MutexGuard<'_, ()>,
        name: &str,
        hash: &str,
        source: Source,
    ) -> Result<Manifest, ManagerError> {
        let m = self
            .store
            .manifest(hash)
            .filter(|m| m.name == name)
            .ok_or_else(|| ManagerError::UnknownVersion { name: name.to_owned(), hash: hash.to_owned() })?;
        let bytes = self.store.bytes(hash).map_err(|e| ManagerError::Store(e.to_string()))?;
        self.activate_locked(held, name, &bytes, source, Some(&m.version))
    }

    /// Activates the most recent earlier version that is not quarantined.
    pub fn rollback(&self, name: &str, source: Source) -> Result<Manifest, ManagerError> {
        // Without a precondition `rollback_from` answers a manifest or an error, never `None`.
        self.rollback_from(name, None, source)?.ok_or_else(|| ManagerError::NothingToRollBack(name.to_owned()))
    }

    /// [`Manager::rollback`], when `from` is `None` or still the serving version of `name`
    /// (checked under the activation lock); `Ok(None)` when something else serves by then.
    fn rollback_from(&self, name: &str, from: Option<&str>, source: Source) -> Result<Option<Manifest>, ManagerError> {
        let one_at_a_time = lock(&self.activation);
        let current = self.current.load_full().plugins.get(name).map(|p| p.hash.clone());
        if from.is_some_and(|f| current.as_deref() != Some(f)) {
            return Ok(None);
        }
        let now = now_ms();
        let candidates: Vec<String> = {
            let st = lock(&self.state);
            let ps = st.get(name);
            let bad = |h: &String| ps.and_then(|p| p.quarantine.get(h)).is_some_and(|q| q.until_ms > now);
            let mut seen = BTreeSet::new();
            let history = ps.map(|p| p.history.clone()).unwrap_or_default();
            let stored = self.store.versions(name).into_iter().map(|m| m.hash);
            history
                .into_iter()
                .rev()
                .chain(stored.rev())
                .filter(|h| Some(h) != current.as_ref() && !bad(h))
                .filter(|h| seen.insert(h.clone()))
                .collect()
        };
        let target = candidates.first().ok_or_else(|| ManagerError::NothingToRollBack(name.to_owned()))?;
        self.activate_hash_locked(&one_at_a_time, name, target, source).map(Some)
    }

    /// Counts a failure of the plugin's own making ([`super::Failure::is_the_plugins`]: traps,
    /// deadlines, memory, invalid output, exits, ...) of the serving version; past the threshold
    /// the version is quarantined and the plugin rolled back (on another thread).
    pub fn report_failure(self: &Arc<Self>, name: &str, hash: &str, failure: &super::Failure) {
        let kind = failure.kind();
        // Not counted toward quarantine: failures that are not the plugin's doing, and those of
        // an old version finishing its last requests.
        let counts = failure.is_the_plugins() && self.current.load().plugins.get(name).is_some_and(|p| p.hash == hash);
        let window = Duration::from_millis(self.runtime_config.quarantine_window_ms);
        let now = Instant::now();
        let quarantine = {
            let mut st = lock(&self.state);
            let ps = st.entry(name.to_owned()).or_default();
            *ps.failure_counts.entry(kind).or_default() += 1;
            if !counts {
                return;
            }
            ps.failures.push_back((now, kind));
            while ps.failures.front().is_some_and(|(t, _)| now.duration_since(*t) > window) {
                ps.failures.pop_front();
            }
            if ps.failures.len() as u32 > self.runtime_config.quarantine_failures && !ps.rollback_pending {
                ps.rollback_pending = true;
                let mut kinds = BTreeMap::new();
                for (_, k) in ps.failures.drain(..) {
                    *kinds.entry(k).or_default() += 1;
                }
                let q = ps.quarantine.entry(hash.to_owned()).or_insert(Quarantined {
                    hash: hash.to_owned(),
                    until_ms: 0,
                    times: 0,
                    kinds: BTreeMap::new(),
                });
                q.kinds = kinds;
                q.times += 1;
                let base = Duration::from_millis(self.runtime_config.quarantine_backoff_ms);
                let backoff = base.saturating_mul(1 << (q.times - 1).min(16)).min(MAX_BACKOFF);
                q.until_ms = now_ms() + backoff.as_millis() as i64;
                Some(q.clone())
            } else {
                None
            }
        };
        let Some(q) = quarantine else { return };
        self.metrics.plugins.reload(name, "quarantined");
        tracing::warn!(
            plugin = name,
            hash,
            until_ms = q.until_ms,
            "plugin version quarantined after repeated failures; rolling back"
        );
        self.audit(
            "quarantined",
            serde_json::json!({ "plugin": name, "hash": hash, "until_ms": q.until_ms, "times": q.times, "kinds": q.kinds }),
        );
        let (me, name, hash) = (self.clone(), name.to_owned(), hash.to_owned());
        std::thread::spawn(move || {
            // Only from the quarantined version: an operator may have activated another meanwhile.
            match me.rollback_from(&name, Some(&hash), Source::Quarantine) {
                Ok(Some(_)) => {}
                Ok(None) => tracing::info!(plugin = %name, "another version serves already; no rollback needed"),
                Err(e) => {
                    tracing::error!(plugin = %name, error = %e, "no version to roll back to; the failure policy applies")
                }
            }
            if let Some(ps) = lock(&me.state).get_mut(&name) {
                ps.rollback_pending = false;
            }
        });
    }

    /// Whether `name` is a configured plugin (no disk access, unlike [`Manager::status`]).
    pub fn is_configured(&self, name: &str) -> bool {
        lock(&self.config).spec(name).is_some()
    }

    pub fn status(&self) -> Vec<PluginStatus> {
        let config = lock(&self.config).clone();
        let snap = self.current.load_full();
        let st = lock(&self.state);
        config
            .specs
            .iter()
            .map(|spec| {
                let ps = st.get(&spec.name);
                PluginStatus {
                    name: spec.name.clone(),
                    path: config.path_of(spec).display().to_string(),
                    capabilities: spec.capabilities.iter().map(|c| c.as_str().to_owned()).collect(),
                    active: snap.plugins.get(&spec.name).and_then(|p| self.store.manifest(&p.hash)),
                    history: ps.map(|p| p.history.clone()).unwrap_or_default(),
                    versions: self.store.versions(&spec.name),
                    last_error: ps.and_then(|p| p.last_error.clone()),
                    quarantined: ps.map(|p| p.quarantine.values().cloned().collect()).unwrap_or_default(),
                    failures: ps.map(|p| p.failure_counts.clone()).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Re-reads the config file: plugins and chains may change; other keys need a restart.
    pub fn reload_config(&self) -> Result<(), String> {
        let Some(file) = &self.config_file else { return Ok(()) };
        let _one_at_a_time = lock(&self.activation);
        let result = (|| {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let config = crate::Config::parse(&text).map_err(|e| e.to_string())?;
            let base = lock(&self.config).base_dir.clone();
            let mut errors = Vec::new();
            if config.route.iter().map(|r| r.name.clone()).collect::<BTreeSet<_>>() != self.table_routes {
                errors.push("the route table changed: restart imgate to apply it".into());
            }
            let next = PluginConfig::from_config(&config, &base, &mut errors);
            if !errors.is_empty() {
                return Err(errors.join("; "));
            }
            let current = self.current.load_full();
            let before = lock(&self.config).clone();
            let mut plugins = BTreeMap::new();
            for spec in &next.specs {
                let (p, bytes) =
                    load_file(&self.runtime, Some(&self.store), &self.runtime_config, spec, &next.path_of(spec))?;
                let p = match current.plugins.get(&spec.name) {
                    Some(old) if old.hash == p.hash && before.spec(&spec.name) == Some(spec) => old.clone(),
                    _ => {
                        let m = self.manifest_for(&p, bytes.len(), Source::File, None);
                        self.store.put(&bytes, &m).map_err(|e| format!("storing the artifact: {e}"))?;
                        Arc::new(p)
                    }
                };
                plugins.insert(spec.name.clone(), p);
            }
            let snap = build_snapshot(&self.runtime, &self.io, &next, plugins, current.generation + 1)
                .map_err(|e| e.join("; "))?;
            *lock(&self.config) = next;
            self.current.store(Arc::new(snap));
            Ok(())
        })();
        match &result {
            Ok(()) => {
                self.metrics.plugins.reload("(config)", "activated");
                tracing::info!("plugin configuration reloaded");
                self.audit("config_reloaded", serde_json::json!({}));
            }
            Err(e) => {
                self.metrics.plugins.reload("(config)", "refused");
                tracing::warn!(error = %e, "config change refused; the serving plugins stay");
                self.audit("config_refused", serde_json::json!({ "error": e }));
            }
        }
        result
    }

    /// Watches the folders of the plugin files and of the config file; a thread debounces the
    /// events and activates what changed.
    fn watch(self: &Arc<Self>) -> Result<(), String> {
        use notify::Watcher;
        let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if !matches!(ev.kind, notify::EventKind::Access(_)) {
                    for p in ev.paths {
                        let _ = tx.send(p);
                    }
                }
            }
        })
        .map_err(|e| format!("plugins.watch: {e}"))?;
        let mut dirs = BTreeSet::new();
        {
            let config = lock(&self.config);
            for spec in &config.specs {
                if let Some(dir) = config.path_of(spec).parent() {
                    dirs.insert(dir.to_owned());
                }
            }
        }
        if let Some(dir) = self.config_file.as_ref().and_then(|f| f.parent()) {
            dirs.insert(dir.to_owned());
        }
        for dir in &dirs {
            watcher
                .watch(dir, notify::RecursiveMode::NonRecursive)
                .map_err(|e| format!("plugins.watch: {}: {e}", dir.display()))?;
        }
        *lock(&self.watcher) = Some(watcher);
        let me: Weak<Manager> = Arc::downgrade(self);
        let debounce = Duration::from_millis(self.runtime_config.watch_debounce_ms);
        std::thread::Builder::new()
            .name("imgate-plugin-watch".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut changed = BTreeSet::from([first]);
                    while let Ok(p) = rx.recv_timeout(debounce) {
                        changed.insert(p);
                    }
                    let Some(m) = me.upgrade() else { return };
                    m.apply_changes(&changed);
                }
            })
            .map_err(|e| format!("plugins.watch: {e}"))?;
        Ok(())
    }

    fn apply_changes(&self, changed: &BTreeSet<PathBuf>) {
        let same = |a: &Path, b: &Path| a.file_name() == b.file_name() && canonical_dir(a) == canonical_dir(b);
        if self.config_file.as_ref().is_some_and(|f| changed.iter().any(|p| same(p, f))) {
            let _ = self.reload_config();
            return;
        }
        let config = lock(&self.config).clone();
        for spec in &config.specs {
            let path = config.path_of(spec);
            if !changed.iter().any(|p| same(p, &path)) {
                continue;
            }
            // Read under the activation lock: an admin activation or rollback writes this file
            // and swaps under the same lock, so what is read here is never older than what serves.
            let one_at_a_time = lock(&self.activation);
            match read_capped(&path, self.runtime_config.max_component_bytes) {
                Ok(bytes) => {
                    let _ = self.activate_locked(&one_at_a_time, &spec.name, &bytes, Source::File, None);
                }
                // Removed or mid-replacement: the next event brings the new file.
                Err(e) => tracing::debug!(plugin = %spec.name, error = %e, "plugin file not readable"),
            }
        }
    }
}

fn canonical_dir(p: &Path) -> Option<PathBuf> {
    p.parent().and_then(|d| std::fs::canonicalize(if d.as_os_str().is_empty() { Path::new(".") } else { d }).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_check_keeps_its_stable_words_and_leaves_wasmtime_text_to_the_detail() {
        let leak = "/home/build/plugin/src/lib.rs:12";
        let cases = [
            (LoadError::NotAComponent(leak.into()), "not_a_component", "not a WebAssembly component"),
            (LoadError::Compile(leak.into()), "does_not_compile", "does not compile"),
            (LoadError::Link(leak.into()), "does_not_link", "imgate:plugin@0.1.0"),
            (LoadError::Instantiate(leak.into()), "instantiation_failed", "instantiation failed"),
            (LoadError::InitFailed(Failure::Trap(leak.into())), "init_failed", "init failed: trap"),
            (LoadError::InitFailed(Failure::Deadline), "init_failed", "init failed: CPU deadline exceeded"),
            (
                LoadError::Imports(vec![("imgate:plugin/kv@0.1.0".into(), "capability `kv` is not granted".into())]),
                "imports_not_allowed",
                "capability `kv` is not granted",
            ),
        ];
        for (load, reason, words) in cases {
            let e = ManagerError::from(load);
            assert!(!e.is_server_fault(), "{e}");
            assert_eq!(e.reason(), reason, "{e}");
            assert!(e.message().contains(words) && !e.message().contains("/home"), "{}", e.message());
        }
        // Not the component's fault.
        for load in [LoadError::Io(leak.into()), LoadError::InitFailed(Failure::HostPanic)] {
            let e = ManagerError::from(load);
            assert!(e.is_server_fault() && !e.message().contains("/home"), "{e}");
        }
        // A long refusal by the plugin is capped.
        let e = ManagerError::from(LoadError::InitRefused("x".repeat(10_000)));
        assert!(e.message().len() < 400 && e.message().ends_with('…'), "{}", e.message());
    }

    #[test]
    fn several_problems_are_one_error_and_a_server_fault_wins() {
        let refused = |w: &str| ManagerError::refused(Check::InitRefused, w, w);
        let e = ManagerError::combine(vec![refused("a"), refused("b")]);
        assert_eq!((e.reason(), e.message()), ("init_refused", "a; b".to_owned()));
        let e = ManagerError::combine(vec![refused("a"), ManagerError::Internal("x".into())]);
        assert!(e.is_server_fault());
    }
}
