//! The plugin keys of the config file: `[plugins]` (the runtime), `[[plugin]]` (each component and
//! what it may do), and the chain entries of `[[route]] plugins` and `[[route_plugins]]`.
//!
//! Everything is denied by default: a plugin gets no capability it is not granted here, and its
//! limits have safe defaults an operator may only tighten below the runtime's ceilings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[plugins]`: the shared runtime.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Plugin calls running at once (each on a blocking thread, each with a fresh instance).
    pub max_concurrent_calls: usize,
    /// How long a request waits for a free call slot before it is refused with 503.
    pub queue_timeout_ms: u64,
    /// Largest component file accepted (checked before anything parses it).
    pub max_component_bytes: usize,
    /// Time budget for compiling one component; slower components are refused.
    pub compile_timeout_ms: u64,
    /// Ceiling of every plugin's `memory_bytes` (the pooling allocator's slot size).
    pub max_memory_bytes: u64,
    /// Largest response body an `on-response` hook is shown; larger answers skip `on-response`
    /// hooks under the entry's failure policy.
    pub max_response_bytes: usize,
    /// Where activated artifacts (by content hash, with manifests) and the precompiled cache are
    /// kept, relative to the config file's folder.
    pub store_dir: PathBuf,
    /// Watch the plugin files and the config file and swap in changes while serving.
    pub watch: bool,
    /// Quiet time after the last file event before a change is loaded (writers often write twice).
    pub watch_debounce_ms: u64,
    /// A version that fails by its own doing (`Failure::is_the_plugins`: traps, deadlines, memory,
    /// invalid output, exits, ...) more than this many times within `quarantine_window_ms` is
    /// pulled back to the last good version.
    pub quarantine_failures: u32,
    pub quarantine_window_ms: u64,
    /// How long a quarantined version may not come back from the watched file; doubles each
    /// time the same version is quarantined again (at most one hour).
    pub quarantine_backoff_ms: u64,
    /// Instances all plugins together may keep prepared (`limits.prepared_instances`): slots of
    /// the instance pool set aside for them. A plugin that finds the budget spent runs its calls
    /// on fresh instances (and says so in the log).
    pub max_prepared_instances: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_concurrent_calls: 32,
            queue_timeout_ms: 200,
            // Python components (componentize-py) are ~18 MB, JavaScript ones (componentize-js) ~12 MB.
            max_component_bytes: 32 * 1024 * 1024,
            compile_timeout_ms: 20_000,
            max_memory_bytes: 64 * 1024 * 1024,
            max_response_bytes: 1024 * 1024,
            store_dir: PathBuf::from(".imgate/plugin-store"),
            watch: true,
            watch_debounce_ms: 50,
            quarantine_failures: 20,
            quarantine_window_ms: 10_000,
            quarantine_backoff_ms: 60_000,
            max_prepared_instances: 16,
        }
    }
}

/// A host capability a plugin may be granted (the WIT interfaces of `imgate:plugin`, WASI random,
/// and the empty WASI stubs language runtimes import).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// `imgate:plugin/log`: lines in imgate's log.
    Log,
    /// `imgate:plugin/clock`: Unix time in ms.
    Clock,
    /// `imgate:plugin/config`: the route's config of the plugin, per call.
    Config,
    /// `imgate:plugin/kv`: the plugin's own key-value namespace, with quotas.
    Kv,
    /// `imgate:plugin/openim`: user, group and membership reads, made with imgate's token.
    Openim,
    /// `wasi:random/*`: random bytes (Rust's `HashMap` seeds itself from them).
    Random,
    /// `wasi:clocks/*`, `wasi:filesystem/*`, `wasi:sockets/*` linked with nothing behind them, for
    /// language runtimes that import them whether or not the plugin uses them (a Python component
    /// built by componentize-py imports all of them): both clocks read 0, no directory is opened,
    /// every socket operation is refused. Grants no file, network or time.
    #[serde(rename = "wasi-stubs")]
    WasiStubs,
}

impl Capability {
    pub const ALL: [Capability; 7] = [
        Capability::Log,
        Capability::Clock,
        Capability::Config,
        Capability::Kv,
        Capability::Openim,
        Capability::Random,
        Capability::WasiStubs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Clock => "clock",
            Capability::Config => "config",
            Capability::Kv => "kv",
            Capability::Openim => "openim",
            Capability::Random => "random",
            Capability::WasiStubs => "wasi-stubs",
        }
    }
}

/// One `[[plugin]]`: a component file, its grants and limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// The name chains refer to: 1-64 of `a-z 0-9 - _`.
    pub name: String,
    /// The component (`.wasm`), relative to the config file's folder. Precompiled `.cwasm` files
    /// are refused: imgate only loads machine code it compiled itself.
    pub path: PathBuf,
    /// Granted capabilities; a component importing anything else is refused at load.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub limits: LimitsSpec,
}

/// `[plugin.limits]`: every key optional; absent keys take the defaults of [`Limits`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    pub memory_bytes: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub max_output_bytes: Option<usize>,
    pub max_host_calls: Option<u32>,
    pub host_call_timeout_ms: Option<u64>,
    pub kv_max_keys: Option<u64>,
    pub kv_max_bytes: Option<u64>,
    pub prepared_instances: Option<usize>,
}

/// The effective limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory a call may grow to (all memories of the instance together).
    pub memory_bytes: u64,
    /// CPU time of the guest per call, host calls excluded (epoch deadline, thread CPU clock).
    pub cpu_ms: u64,
    /// Largest body a verdict may carry (headers and texts have their own fixed caps).
    pub max_output_bytes: usize,
    /// Host calls (`kv`, `openim`, `log`, ...) per hook call.
    pub max_host_calls: u32,
    /// Deadline of one host call that waits on something (`kv`, `openim`).
    pub host_call_timeout_ms: u64,
    /// Keys the plugin may keep in `kv`.
    pub kv_max_keys: u64,
    /// Bytes (keys + values) the plugin may keep in `kv`.
    pub kv_max_bytes: u64,
    /// Instances kept ready for this plugin's calls (0: each call instantiates its own). Each is
    /// instantiated off the request path, serves exactly one call, and is dropped off the request
    /// path: a call still gets an instance nothing ran in before (P15), without waiting for a large
    /// component's memory image to be copied. From `[plugins] max_prepared_instances`.
    pub prepared_instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 16 * 1024 * 1024,
            cpu_ms: 20,
            max_output_bytes: 64 * 1024,
            max_host_calls: 32,
            host_call_timeout_ms: 250,
            kv_max_keys: 10_000,
            kv_max_bytes: 4 * 1024 * 1024,
            prepared_instances: 0,
        }
    }
}

impl LimitsSpec {
    /// The limits with defaults filled in; problems are pushed to `errors`.
    pub fn resolve(&self, runtime: &RuntimeConfig, what: &str, errors: &mut Vec<String>) -> Limits {
        let d = Limits::default();
        let l = Limits {
            memory_bytes: self.memory_bytes.unwrap_or(d.memory_bytes.min(runtime.max_memory_bytes)),
            cpu_ms: self.cpu_ms.unwrap_or(d.cpu_ms),
            max_output_bytes: self.max_output_bytes.unwrap_or(d.max_output_bytes),
            max_host_calls: self.max_host_calls.unwrap_or(d.max_host_calls),
            host_call_timeout_ms: self.host_call_timeout_ms.unwrap_or(d.host_call_timeout_ms),
            kv_max_keys: self.kv_max_keys.unwrap_or(d.kv_max_keys),
            kv_max_bytes: self.kv_max_bytes.unwrap_or(d.kv_max_bytes),
            prepared_instances: self.prepared_instances.unwrap_or(d.prepared_instances),
        };
        if l.prepared_instances > 8 || l.prepared_instances > runtime.max_prepared_instances {
            errors.push(format!(
                "{what}.limits.prepared_instances: at most 8 and at most plugins.max_prepared_instances ({})",
                runtime.max_prepared_instances
            ));
        }
        if l.memory_bytes < 64 * 1024 || l.memory_bytes > runtime.max_memory_bytes {
            errors.push(format!(
                "{what}.limits.memory_bytes: must be between 65536 and plugins.max_memory_bytes ({})",
                runtime.max_memory_bytes
            ));
        }
        if !(1..=10_000).contains(&l.cpu_ms) {
            errors.push(format!("{what}.limits.cpu_ms: must be between 1 and 10000"));
        }
        if !(1..=16 * 1024 * 1024).contains(&l.max_output_bytes) {
            errors.push(format!("{what}.limits.max_output_bytes: must be between 1 and 16777216"));
        }
        if l.max_host_calls > 10_000 {
            errors.push(format!("{what}.limits.max_host_calls: at most 10000"));
        }
        if !(1..=60_000).contains(&l.host_call_timeout_ms) {
            errors.push(format!("{what}.limits.host_call_timeout_ms: must be between 1 and 60000"));
        }
        l
    }
}

/// What happens to a request when a plugin fails (traps, runs out of time or memory, answers
/// something invalid, or no call slot is free).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// The request is refused (503 `policy_unavailable`).
    Closed,
    /// The plugin is skipped: the request or answer goes on as if it had said "proceed".
    Open,
}

/// One entry of a plugin chain.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChainEntrySpec {
    /// A `[[plugin]]` name.
    pub plugin: String,
    /// The plugin's configuration for this route, checked by its `init` at load (JSON-like TOML).
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// Unset: `on-request` failures are `closed` (policy) and `on-response` failures `open`
    /// (reshaping). Set: both hooks follow it.
    #[serde(default)]
    pub failure: Option<FailurePolicy>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// One `[[route_plugins]]`: a chain on a route named elsewhere: a built-in route (admin routes,
/// `/v1/me`, ...) or a `[[route]]` of the table (the shipped defaults included).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinChainSpec {
    /// A route name, e.g. `admin.users.register` or `send_text_to_user` (see `docs/plugins.md`).
    #[serde(default)]
    pub route: Option<String>,
    /// Several route names sharing this one chain (e.g. a `/v1` route and its `/openim` twin,
    /// `["update_profile", "openim.user.update_user_info_ex"]`); exclusive with `route`.
    #[serde(default)]
    pub routes: Vec<String>,
    pub plugins: Vec<ChainEntrySpec>,
}

impl BuiltinChainSpec {
    /// The route names this chain governs.
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.route.iter().map(String::as_str).chain(self.routes.iter().map(String::as_str))
    }
}
