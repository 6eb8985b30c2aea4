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
//!
//! - `activation.rs` — checking a version, storing it, swapping it in; rollback; config reloads.
//! - `quarantine.rs` — counting the serving version's failures; quarantine and automatic rollback.
//! - `watch.rs`      — the file watcher: plugin files and the config file.

mod activation;
mod quarantine;
mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use super::api::{LastError, PluginStatus, Quarantined};
use super::config::RuntimeConfig;
use super::runtime::{Failure, LoadError};
use super::store::ArtifactStore;
use super::{HostIo, PluginConfig, Runtime, Snapshot};
use crate::audit::{AuditEvent, AuditLog};
use crate::telemetry::Metrics;
pub(crate) use activation::{build_snapshot, load_file};

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
    /// Another instance of the fleet activated it (admin API there).
    Fleet,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Upload => "upload",
            Source::Rollback => "rollback",
            Source::Quarantine => "quarantine",
            Source::Fleet => "fleet",
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
    HookList,
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
            Check::HookList => "hook_list",
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
    /// The file names the watcher passes on (see `watch.rs`).
    watched_names: Arc<std::sync::RwLock<BTreeSet<std::ffi::OsString>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
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
            watched_names: Default::default(),
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

    /// Whether `name` is a configured plugin (no disk access, unlike [`Manager::status`]).
    /// A stored version's bytes (none if this instance never stored it).
    pub fn stored_bytes(&self, hash: &str) -> Option<Vec<u8>> {
        self.store.manifest(hash)?;
        self.store.bytes(hash).ok()
    }

    /// A stored version's label.
    pub fn stored_version(&self, hash: &str) -> Option<String> {
        self.store.manifest(hash).map(|m| m.version)
    }

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
                    failures: ps
                        .map(|p| p.failure_counts.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect())
                        .unwrap_or_default(),
                }
            })
            .collect()
    }
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
