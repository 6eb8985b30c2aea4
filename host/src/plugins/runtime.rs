//! The sandbox: one wasmtime `Engine` and `Linker`, components loaded and checked, and hook calls
//! each in a fresh `Store` with a memory cap, an epoch deadline and host-call limits.
//!
//! Why each setting (shared/spec/attacks.md B7):
//! - a fresh `Store` and instance per (request, plugin): nothing survives between calls (P15);
//! - `epoch_interruption` with a 1 ms ticker thread: a loop is stopped at its CPU budget (P1),
//!   counted in thread CPU time (preemption by a busy machine is not charged), host calls excluded;
//! - a `ResourceLimiter` per store: memory growth past the plugin's cap fails (P2), and the
//!   pooling allocator's slot size refuses instances that *declare* more (P3);
//! - `max_wasm_stack`: recursion traps instead of aborting the process (P4);
//! - no WASI capability: the WASI interfaces Rust's std links are present but empty (no
//!   environment, arguments, stdin; stdout/stderr discarded); a component importing files,
//!   sockets or clocks fails at load (P14) unless granted `wasi-stubs`, and then finds them
//!   empty: no directory opened, every socket refused, both clocks frozen at 0;
//! - only `.wasm` from the config is compiled, off the request path, with a size cap and a time
//!   budget (P11); precompiled artifacts are refused (P12);
//! - [`Runtime::new`] runs a self-check and refuses to start when interruption or the memory
//!   cap do not work (P16).

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    AsContextMut, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::config::{Capability, Limits, RuntimeConfig};
use super::host::HostIo;

use super::bindings;
pub use super::bindings::{
    AdminPrincipal, Header, Modification, Principal, Rejection, Request, RequestVerdict, Response, ResponseVerdict,
    UserPrincipal, WORLD_PACKAGE,
};
use super::capabilities::check_imports;

/// The epoch ticker's period: the resolution of CPU deadlines.
const TICK: Duration = Duration::from_millis(1);
/// Wasm stack per call (wasmtime's default, stated so it cannot drift).
const MAX_WASM_STACK: usize = 512 * 1024;

/// Which of `on-request` and `on-response` a plugin implements (`init` is always called).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hooks {
    pub on_request: bool,
    pub on_response: bool,
}

impl Hooks {
    pub const ALL: Hooks = Hooks { on_request: true, on_response: true };
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Io(String),
    #[error("the component is {size} bytes, more than plugins.max_component_bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("precompiled artifacts are refused: imgate only runs machine code it compiled itself from a .wasm")]
    Precompiled,
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("does not compile within the runtime's limits: {0}")]
    Compile(String),
    #[error("compiling took longer than plugins.compile_timeout_ms ({0} ms)")]
    CompileTimeout(u64),
    #[error("imports not allowed: {}", .0.iter().map(|(i, why)| format!("`{i}` ({why})")).collect::<Vec<_>>().join(", "))]
    Imports(Vec<(String, String)>),
    #[error("does not link against imgate:plugin@0.1.0: {0}")]
    Link(String),
    #[error("instantiation failed: {0}")]
    Instantiate(String),
    #[error("init refused the configuration: {0}")]
    InitRefused(String),
    #[error("init failed: {0}")]
    InitFailed(Failure),
}

/// Why one hook call failed (the `kind` label of `imgate_plugin_failures`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("CPU deadline exceeded")]
    Deadline,
    #[error("memory limit reached")]
    Memory,
    #[error("stack overflow")]
    StackOverflow,
    #[error("trap: {0}")]
    Trap(String),
    #[error("invalid output: {0}")]
    InvalidOutput(String),
    #[error("instantiation failed: {0}")]
    Instantiate(String),
    #[error("a host function panicked")]
    HostPanic,
    #[error("no call slot free within plugins.queue_timeout_ms")]
    Overloaded,
    /// The guest called `exit` (WASI `wasi:cli/exit`): its answer never came.
    #[error("the plugin exited (code {0})")]
    Exit(i32),
    /// The route's response was larger than `plugins.max_response_bytes`, so `on-response`
    /// could not be given it. Not the plugin's fault: never counted toward quarantine.
    #[error("the response is larger than plugins.max_response_bytes")]
    ResponseTooLarge,
}

impl Failure {
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Deadline => "deadline",
            Failure::Memory => "memory",
            Failure::StackOverflow => "stack_overflow",
            Failure::Trap(_) => "trap",
            Failure::InvalidOutput(_) => "invalid_output",
            Failure::Instantiate(_) => "instantiate",
            Failure::HostPanic => "host_panic",
            Failure::Overloaded => "overloaded",
            Failure::Exit(_) => "exit",
            Failure::ResponseTooLarge => "response_too_large",
        }
    }

    /// Whether the plugin itself caused this failure (what quarantine counts): traps, deadlines,
    /// memory, stack overflows, answers that break the contract or the limits, exits, and
    /// instantiation failures. Not: a host function's panic (imgate's bug), no free call slot
    /// (contention), a route response too large to show the plugin.
    pub fn is_the_plugins(&self) -> bool {
        match self {
            Failure::Deadline
            | Failure::Memory
            | Failure::StackOverflow
            | Failure::Trap(_)
            | Failure::InvalidOutput(_)
            | Failure::Instantiate(_)
            | Failure::Exit(_) => true,
            Failure::HostPanic | Failure::Overloaded | Failure::ResponseTooLarge => false,
        }
    }
}

/// The shared engine, linker and call slots.
pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    pub(crate) config: RuntimeConfig,
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// Prepared instances left to hand out (`plugins.max_prepared_instances`).
    prepared_budget: Arc<std::sync::atomic::AtomicUsize>,
    _ticker: Ticker,
}

/// A compiled, checked plugin version, ready to instantiate.
pub struct LoadedPlugin {
    pub name: String,
    /// SHA-256 of the component bytes, hex.
    pub hash: String,
    /// Whether the machine code came from the precompiled cache.
    pub from_cache: bool,
    pub grants: BTreeSet<Capability>,
    pub limits: Limits,
    /// The config schema the component embeds (set by the plugin manager, which reads it once
    /// when it loads the bytes; see `store::embedded_config_schema`).
    pub config_schema: Option<serde_json::Value>,
    /// The hooks the component declares it implements (`store::embedded_hooks`); the chain does
    /// not call the others (they would answer `proceed`). All of them when it declares nothing.
    pub hooks: Hooks,
    pre: bindings::PluginPre<CallState>,
    exports: Exports,
    /// Instances kept ready (`limits.prepared_instances`), started at the first call.
    prepared: std::sync::OnceLock<Option<super::prepared::Prepared>>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin").field("name", &self.name).field("hash", &self.hash).finish()
    }
}

/// One hook to call.
pub enum Hook<'a> {
    Init(&'a str),
    Request(&'a Request),
    Response(&'a Request, &'a Response),
}

/// What a hook answered.
#[derive(Debug)]
pub enum HookAnswer {
    Init(Result<(), String>),
    Request(RequestVerdict),
    Response(ResponseVerdict),
}

/// What one call cost (for metrics).
#[derive(Debug, Default, Clone, Copy)]
pub struct CallStats {
    pub wall: Duration,
    /// CPU time of the calling thread, host calls excluded.
    pub cpu: Duration,
    pub memory_high_water: u64,
    /// The call ran in a prepared instance (instantiated ahead of it, off the request path).
    pub prepared: bool,
}

/// The data of one call's `Store`.
pub struct CallState {
    limiter: MemoryCap,
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pub(crate) io: Arc<HostIo>,
    pub(crate) plugin: Arc<str>,
    pub(crate) grants: BTreeSet<Capability>,
    pub(crate) limits: Limits,
    pub(crate) config: Arc<str>,
    pub(crate) request_id: Arc<str>,
    /// Host calls made so far in this call.
    pub(crate) host_calls: u32,
    /// Time spent inside host calls (wall clock; for the latency of the call).
    pub(crate) host_time: Duration,
    /// CPU time this thread spent inside host calls (not counted against the CPU budget).
    pub(crate) host_cpu: Duration,
    /// This thread's CPU time when the call started.
    cpu_start: Duration,
    /// `init` may not reach OpenIM or the store.
    pub(crate) in_init: bool,
    started: Instant,
}

impl CallState {
    fn new(plugin: &LoadedPlugin, io: &Arc<HostIo>, config: Arc<str>, request_id: Arc<str>, in_init: bool) -> Self {
        CallState::of(Arc::from(plugin.name.as_str()), &plugin.grants, plugin.limits, io, config, request_id, in_init)
    }

    fn of(
        plugin: Arc<str>,
        grants: &BTreeSet<Capability>,
        limits: Limits,
        io: &Arc<HostIo>,
        config: Arc<str>,
        request_id: Arc<str>,
        in_init: bool,
    ) -> Self {
        CallState {
            limiter: MemoryCap { max: limits.memory_bytes, used: 0, high_water: 0, hit: false },
            wasi: None,
            table: ResourceTable::new(),
            io: io.clone(),
            plugin,
            grants: grants.clone(),
            limits,
            config,
            request_id,
            host_calls: 0,
            host_time: Duration::ZERO,
            host_cpu: Duration::ZERO,
            cpu_start: thread_cpu_time(),
            in_init,
            started: Instant::now(),
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        // Built only when the guest touches WASI at all; empty: no env, args, preopens, stdin;
        // stdout/stderr are sinks; no TCP, UDP or name lookup (and every address refused); the
        // clocks read 0 (the `clock` capability is the plugins' clock).
        let ctx = self.wasi.get_or_insert_with(|| {
            WasiCtxBuilder::new()
                .allow_tcp(false)
                .allow_udp(false)
                .allow_ip_name_lookup(false)
                .wall_clock(FrozenClock)
                .monotonic_clock(FrozenClock)
                .build()
        });
        WasiCtxView { ctx, table: &mut self.table }
    }
}

/// The clocks a plugin's WASI sees: always 0 (no time, no timing).
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Memory cap and high-water mark of one store.
struct MemoryCap {
    max: u64,
    used: u64,
    high_water: u64,
    hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        let grown = self.used - (current as u64).min(self.used) + desired as u64;
        if grown > self.max {
            self.hit = true;
            return Ok(false);
        }
        self.used = grown;
        self.high_water = self.high_water.max(grown);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _max: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Increments the engine's epoch every [`TICK`] until the engine is dropped.
struct Ticker;

impl Ticker {
    fn start(engine: &Engine) -> std::io::Result<Ticker> {
        let weak = engine.weak();
        std::thread::Builder::new().name("imgate-plugin-epoch".into()).spawn(move || loop {
            std::thread::sleep(TICK);
            match weak.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return,
            }
        })?;
        Ok(Ticker)
    }
}

/// The engine configuration every plugin runs under.
pub(crate) fn engine_config(rt: &RuntimeConfig) -> wasmtime::Config {
    // Calls in flight, prepared instances and used ones waiting to be dropped, and a margin.
    let slots = (rt.max_concurrent_calls + rt.max_prepared_instances + 16) as u32;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 16)
        .total_memories(slots * 4)
        .total_tables(slots * 8)
        .max_memory_size(rt.max_memory_bytes as usize)
        .max_core_instances_per_component(32)
        .max_memories_per_component(4)
        .max_tables_per_component(16)
        .table_elements(100_000)
        // A used slot's memory beyond what is kept resident goes back to the system when its
        // call ends (an madvise each time): batching them left up to a batch of whole memories
        // resident while idle (issue 16), and the call cost did not measurably change. Small
        // tables are cheaper to memset than to fault back in.
        .decommit_batch_size(1)
        .table_keep_resident(64 * 1024)
        .linear_memory_keep_resident(256 * 1024)
        // A freed memory slot stays "warm" (its first 256 KiB resident). By default wasmtime
        // keeps up to 100 warm slots affine to their module and hands cold slots to other
        // modules; every plugin version is a new module, so each swap would warm new slots
        // until 100 are resident. Affinity buys nothing without copy-on-write images
        // (disabled below), so a new instance always reuses a warm slot: the resident set is
        // bounded by peak concurrency, not by the number of versions ever loaded.
        .max_unused_warm_slots(0);
    let mut c = wasmtime::Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .memory_init_cow(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    c
}

impl Runtime {
    /// Builds the engine and linker and runs the self-check.
    pub fn new(config: &RuntimeConfig, io: Arc<HostIo>) -> Result<Runtime, String> {
        let engine = Engine::new(&engine_config(config)).map_err(|e| format!("plugins: engine: {e:#}"))?;
        let ticker = Ticker::start(&engine).map_err(|e| format!("plugins: the epoch thread: {e}"))?;
        let linker = build_linker(&engine).map_err(|e| format!("plugins: linker: {e:#}"))?;
        let rt = Runtime {
            slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_calls)),
            prepared_budget: Arc::new(std::sync::atomic::AtomicUsize::new(config.max_prepared_instances)),
            engine,
            linker,
            config: config.clone(),
            _ticker: ticker,
        };
        self_check(&rt.engine, io).map_err(|e| format!("plugins: self-check failed, refusing to run plugins: {e}"))?;
        Ok(rt)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Reads, compiles and checks a component: size, not precompiled, compiles within its
    /// budget, imports only what `grants` allow, links.
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        grants: &BTreeSet<Capability>,
        limits: Limits,
    ) -> Result<LoadedPlugin, LoadError> {
        self.load_cached(name, bytes, grants, limits, None)
    }

    /// [`Runtime::load`], taking the compiled code from `store`'s precompiled cache when it has
    /// it (and filling the cache when it does not).
    pub fn load_cached(
        &self,
        name: &str,
        bytes: &[u8],
        grants: &BTreeSet<Capability>,
        limits: Limits,
        store: Option<&super::store::ArtifactStore>,
    ) -> Result<LoadedPlugin, LoadError> {
        if bytes.len() > self.config.max_component_bytes {
            return Err(LoadError::TooLarge { size: bytes.len(), max: self.config.max_component_bytes });
        }
        if Engine::detect_precompiled(bytes).is_some() {
            return Err(LoadError::Precompiled);
        }
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::NotAComponent("the file does not start with the WebAssembly magic".into()));
        }
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(bytes));
        let cached = store.and_then(|s| s.load_compiled(&self.engine, &hash));
        let from_cache = cached.is_some();
        let component = match cached {
            Some(c) => c,
            None => {
                let c = self.compile(bytes)?;
                if let Some(s) = store {
                    s.save_compiled(&hash, &c);
                }
                c
            }
        };
        check_imports(&self.engine, &component, grants)?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = bindings::PluginPre::new(pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let exports = Exports::of(&component)?;
        let plugin = LoadedPlugin {
            name: name.to_owned(),
            hash,
            from_cache,
            grants: grants.clone(),
            limits,
            config_schema: None,
            hooks: Hooks::ALL,
            pre,
            exports,
            prepared: std::sync::OnceLock::new(),
        };
        // An instance must fit its limits before the plugin is accepted (declared memory or
        // tables beyond the caps fail here, not on a request: attacks.md P3).
        let state = CallState::new(&plugin, &HostIo::detached(), Arc::from("{}"), Arc::from("load"), true);
        let mut store = new_store(&self.engine, state, plugin.limits.cpu_ms);
        let instance =
            plugin.pre.instance_pre().instantiate(&mut store).map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        plugin.exports.typecheck(&instance, &mut store).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        Ok(plugin)
    }

    /// Compiles on another thread and waits at most the compile budget (Cranelift cannot be
    /// interrupted; a compile that overruns is abandoned and finishes in the background).
    fn compile(&self, bytes: &[u8]) -> Result<Component, LoadError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (engine, bytes) = (self.engine.clone(), bytes.to_vec());
        std::thread::Builder::new()
            .name("imgate-plugin-compile".into())
            .spawn(move || {
                let _ = tx.send(Component::new(&engine, &bytes));
            })
            .map_err(|e| LoadError::Io(format!("spawning the compile thread: {e}")))?;
        match rx.recv_timeout(Duration::from_millis(self.config.compile_timeout_ms)) {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(LoadError::Compile(format!("{e:#}"))),
            Err(_) => Err(LoadError::CompileTimeout(self.config.compile_timeout_ms)),
        }
    }

    /// Calls one hook in a fresh instance, on the current thread (a blocking one: the caller
    /// runs this under `spawn_blocking`). Panics of host functions are caught here.
    pub fn call(
        &self,
        plugin: &LoadedPlugin,
        io: &Arc<HostIo>,
        config: &Arc<str>,
        request_id: &Arc<str>,
        hook: Hook<'_>,
    ) -> (Result<HookAnswer, Failure>, CallStats) {
        if let (Some(pool), false) = (self.prepared(plugin, io), matches!(hook, Hook::Init(_))) {
            if let Some(mut ready) = pool.take() {
                let data = ready.store.data_mut();
                data.config = config.clone();
                data.request_id = request_id.clone();
                data.started = Instant::now();
                let started = data.started;
                let instance = ready.instance;
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    call_instance(&mut ready.store, &instance, &plugin.exports, hook)
                }));
                let (result, mut stats) = finish(&ready.store, started, result);
                stats.prepared = true;
                pool.retire(ready);
                return (result, stats);
            }
        }
        let state = CallState::new(plugin, io, config.clone(), request_id.clone(), matches!(hook, Hook::Init(_)));
        let started = state.started;
        let mut store = new_store(&self.engine, state, plugin.limits.cpu_ms);
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| run_hook(&mut store, &plugin.pre, &plugin.exports, hook)));
        finish(&store, started, result)
    }

    /// The plugin's prepared instances, started at its first call (when it has any).
    fn prepared<'p>(&self, plugin: &'p LoadedPlugin, io: &Arc<HostIo>) -> Option<&'p super::prepared::Prepared> {
        if plugin.limits.prepared_instances == 0 {
            return None;
        }
        plugin
            .prepared
            .get_or_init(|| {
                let (cpu_ms, name) = (plugin.limits.cpu_ms, Arc::<str>::from(plugin.name.as_str()));
                let (grants, limits, io) = (plugin.grants.clone(), plugin.limits, io.clone());
                super::prepared::Prepared::start(
                    &plugin.name,
                    plugin.limits.prepared_instances,
                    &self.prepared_budget,
                    plugin.pre.instance_pre().clone(),
                    move |engine| {
                        let state = CallState::of(
                            name.clone(),
                            &grants,
                            limits,
                            &io,
                            Arc::from("{}"),
                            Arc::from("prepared"),
                            false,
                        );
                        new_store(engine, state, cpu_ms)
                    },
                )
            })
            .as_ref()
    }
}

/// A call's answer and figures, from its store.
fn finish(
    store: &Store<CallState>,
    started: Instant,
    result: std::thread::Result<Result<HookAnswer, HookError>>,
) -> (Result<HookAnswer, Failure>, CallStats) {
    let data = store.data();
    let stats = CallStats {
        wall: started.elapsed(),
        cpu: data.wasm_cpu(),
        memory_high_water: data.limiter.high_water,
        prepared: false,
    };
    let hit = data.limiter.hit;
    let result = match result {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(classify(e, hit)),
        Err(_) => Err(Failure::HostPanic),
    };
    (result, stats)
}

/// One instance kept across calls. Only for measuring what a fresh instance costs (the
/// benchmark compares the two): serving requests never reuses an instance, since state would
/// leak from one call to the next (attacks.md P15).
pub struct ReusedInstance {
    store: Store<CallState>,
    instance: bindings::Plugin,
    cpu_ms: u64,
}

impl ReusedInstance {
    pub fn on_request(&mut self, req: &Request) -> wasmtime::Result<RequestVerdict> {
        self.store.set_epoch_deadline(ticks(Duration::from_millis(self.cpu_ms)));
        let data = self.store.data_mut();
        data.started = Instant::now();
        data.cpu_start = thread_cpu_time();
        data.host_cpu = Duration::ZERO;
        self.instance.call_on_request(&mut self.store, req)
    }
}

impl Runtime {
    /// See [`ReusedInstance`].
    pub fn reused_instance(&self, plugin: &LoadedPlugin, io: &Arc<HostIo>) -> wasmtime::Result<ReusedInstance> {
        let state = CallState::new(plugin, io, Arc::from("{}"), Arc::from("bench"), false);
        let mut store = new_store(&self.engine, state, plugin.limits.cpu_ms);
        let instance = plugin.pre.instantiate(&mut store)?;
        Ok(ReusedInstance { store, instance, cpu_ms: plugin.limits.cpu_ms })
    }
}

fn run_hook(
    store: &mut Store<CallState>,
    pre: &bindings::PluginPre<CallState>,
    exports: &Exports,
    hook: Hook<'_>,
) -> Result<HookAnswer, HookError> {
    // Instantiation (the guest's start functions included) runs under the CPU budget; the hook
    // then gets the whole budget again, so a slow instantiation on a loaded machine (pool pages
    // faulted in, counted in the thread's CPU time) never eats into the hook's own time.
    let instance = pre.instance_pre().instantiate(&mut *store).map_err(HookError::Instantiate)?;
    call_instance(store, &instance, exports, hook)
}

/// One hook on an instance nothing ran in yet, under the whole CPU budget.
fn call_instance(
    store: &mut Store<CallState>,
    instance: &wasmtime::component::Instance,
    exports: &Exports,
    hook: Hook<'_>,
) -> Result<HookAnswer, HookError> {
    use super::output::{RawRequestVerdict, RawResponseVerdict, Reader};
    use wasmtime::component::WasmStr;
    let budget = Duration::from_millis(store.data().limits.cpu_ms);
    store.data_mut().cpu_start = thread_cpu_time();
    store.set_epoch_deadline(ticks(budget));
    let max_body = store.data().limits.max_output_bytes;
    // The answers are lifted lazily (lengths and pointers only) and read under the output limits
    // (`output.rs`); the instance is dropped afterwards, so no `post_return` is owed.
    let answer = match hook {
        Hook::Init(config) => {
            let f = instance
                .get_typed_func::<(&str,), (Result<(), WasmStr>,)>(&mut *store, &exports.init)
                .map_err(HookError::Call)?;
            let (raw,) = f.call(&mut *store, (config,)).map_err(HookError::Call)?;
            HookAnswer::Init(Reader::new(store.as_context_mut(), max_body).init_result(raw).map_err(HookError::Output)?)
        }
        Hook::Request(req) => {
            let f = instance
                .get_typed_func::<(&Request,), (RawRequestVerdict,)>(&mut *store, &exports.on_request)
                .map_err(HookError::Call)?;
            let (raw,) = f.call(&mut *store, (req,)).map_err(HookError::Call)?;
            HookAnswer::Request(
                Reader::new(store.as_context_mut(), max_body).request_verdict(raw).map_err(HookError::Output)?,
            )
        }
        Hook::Response(req, res) => {
            let f = instance
                .get_typed_func::<(&Request, &Response), (RawResponseVerdict,)>(&mut *store, &exports.on_response)
                .map_err(HookError::Call)?;
            let (raw,) = f.call(&mut *store, (req, res)).map_err(HookError::Call)?;
            HookAnswer::Response(
                Reader::new(store.as_context_mut(), max_body).response_verdict(raw).map_err(HookError::Output)?,
            )
        }
    };
    Ok(answer)
}

/// The hooks' export indices, looked up once per loaded version.
pub(crate) struct Exports {
    init: wasmtime::component::ComponentExportIndex,
    on_request: wasmtime::component::ComponentExportIndex,
    on_response: wasmtime::component::ComponentExportIndex,
}

impl Exports {
    fn of(component: &Component) -> Result<Exports, LoadError> {
        let find = |name: &str| {
            component
                .get_export_index(None, name)
                .ok_or_else(|| LoadError::Link(format!("the component does not export `{name}`")))
        };
        Ok(Exports { init: find("init")?, on_request: find("on-request")?, on_response: find("on-response")? })
    }

    /// The lazily lifted answer types match the component's (checked once, at load).
    fn typecheck(
        &self,
        instance: &wasmtime::component::Instance,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<()> {
        use super::output::{RawRequestVerdict, RawResponseVerdict};
        use wasmtime::component::WasmStr;
        instance.get_typed_func::<(&str,), (Result<(), WasmStr>,)>(&mut *store, &self.init)?;
        instance.get_typed_func::<(&Request,), (RawRequestVerdict,)>(&mut *store, &self.on_request)?;
        instance.get_typed_func::<(&Request, &Response), (RawResponseVerdict,)>(&mut *store, &self.on_response)?;
        Ok(())
    }
}

enum HookError {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
    /// The answer broke an output limit (checked before it was copied).
    Output(Failure),
}

fn classify(e: HookError, memory_hit: bool) -> Failure {
    match e {
        HookError::Instantiate(e) => Failure::Instantiate(format!("{e:#}")),
        HookError::Output(f) => f,
        HookError::Call(e) => {
            if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                return Failure::Exit(exit.0);
            }
            match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => Failure::Deadline,
                Some(Trap::StackOverflow) => Failure::StackOverflow,
                // Rust aborts (`unreachable`) when an allocation fails: the cap was the cause.
                Some(_) if memory_hit => Failure::Memory,
                Some(t) => Failure::Trap(t.to_string()),
                // Not a trap: the canonical ABI refused what the guest returned (out-of-bounds
                // pointers, invalid UTF-8, unknown discriminants, ...).
                None => Failure::InvalidOutput(format!("{e:#}")),
            }
        }
    }
}

/// A store for one call: memory cap, CPU deadline. The epoch ticks every millisecond of wall
/// time; when the deadline passes, the callback charges the thread's *CPU* time (host calls
/// excluded), so a call preempted by a busy machine is not cut short, and extends the deadline by
/// what is left of the budget.
fn new_store(engine: &Engine, state: CallState, cpu_ms: u64) -> Store<CallState> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    let budget = Duration::from_millis(cpu_ms);
    store.set_epoch_deadline(ticks(budget));
    store.epoch_deadline_callback(move |ctx| {
        let used = ctx.data().wasm_cpu();
        if used >= budget {
            Err(Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Continue(ticks(budget - used)))
        }
    });
    store
}

impl CallState {
    /// CPU time spent in the guest so far.
    pub(crate) fn wasm_cpu(&self) -> Duration {
        thread_cpu_time().saturating_sub(self.cpu_start).saturating_sub(self.host_cpu)
    }
}

/// CPU time consumed by the current thread.
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on every unix
    // imgate supports. On failure the zeroed value makes the budget a wall-clock one.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn ticks(d: Duration) -> u64 {
    (d.as_micros().div_ceil(TICK.as_micros())).max(1) as u64
}

fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<CallState>> {
    let mut l = Linker::new(engine);
    bindings::Plugin::add_to_linker::<CallState, wasmtime::component::HasSelf<CallState>>(&mut l, |s| s)?;
    // All of WASI p2, backed by the empty context of `CallState::ctx`: which of it a plugin may
    // import is decided at load (`capabilities::check_imports`), not here.
    wasmtime_wasi::p2::add_to_linker_sync(&mut l)?;
    Ok(l)
}

/// Proves, with the very store settings real calls use, that a spinning guest is interrupted and
/// that memory growth past the cap fails. Refuses to run plugins otherwise (P16).
pub(crate) fn self_check(engine: &Engine, io: Arc<HostIo>) -> Result<(), String> {
    const PROBE: &str = r#"(component
        (core module $m
            (memory 1)
            (func (export "spin") (local $n i64)
                (local.set $n (i64.const 4000000000))
                (loop $l
                    (local.set $n (i64.sub (local.get $n) (i64.const 1)))
                    (br_if $l (i64.ne (local.get $n) (i64.const 0)))))
            (func (export "grow") (result i32) (memory.grow (i32.const 1024))))
        (core instance $i (instantiate $m))
        (func (export "spin") (canon lift (core func $i "spin")))
        (func (export "grow") (result s32) (canon lift (core func $i "grow"))))"#;
    let component = Component::new(engine, PROBE).map_err(|e| format!("probe: {e:#}"))?;
    let linker: Linker<CallState> = Linker::new(engine);
    // The memory probe gets a generous CPU budget: the first instantiation in a process (or on
    // a loaded machine) may fault in pool pages, and that must not read as "interrupted".
    let state = |cpu_ms: u64| {
        let limits = Limits { memory_bytes: 1024 * 1024, cpu_ms, ..Limits::default() };
        CallState {
            limiter: MemoryCap { max: limits.memory_bytes, used: 0, high_water: 0, hit: false },
            wasi: None,
            table: ResourceTable::new(),
            io: io.clone(),
            plugin: Arc::from("self-check"),
            grants: BTreeSet::new(),
            limits,
            config: Arc::from("{}"),
            request_id: Arc::from("self-check"),
            host_calls: 0,
            host_time: Duration::ZERO,
            host_cpu: Duration::ZERO,
            cpu_start: thread_cpu_time(),
            in_init: true,
            started: Instant::now(),
        }
    };
    // Memory: growing 64 MiB past a 1 MiB cap must fail (-1).
    let mut store = new_store(engine, state(10_000), 10_000);
    let inst = linker.instantiate(&mut store, &component).map_err(|e| format!("probe: {e:#}"))?;
    let grow = inst.get_typed_func::<(), (i32,)>(&mut store, "grow").map_err(|e| format!("probe: {e:#}"))?;
    let (grown,) = grow.call(&mut store, ()).map_err(|e| format!("probe: {e:#}"))?;
    if grown != -1 {
        return Err("memory growth past the cap succeeded".into());
    }
    // CPU: a loop of a few seconds must be interrupted after 5 ms of its own CPU time (the
    // budget starts at the call, not at instantiation). Bounded, so that a broken configuration
    // is reported instead of hanging start-up.
    let mut store = new_store(engine, state(5), 5);
    let spin = linker
        .instantiate(&mut store, &component)
        .and_then(|i| i.get_typed_func::<(), ()>(&mut store, "spin"))
        .map_err(|e| format!("probe: {e:#}"))?;
    store.data_mut().cpu_start = thread_cpu_time();
    store.set_epoch_deadline(ticks(Duration::from_millis(5)));
    let r = spin.call(&mut store, ());
    match r.err().and_then(|e| e.downcast_ref::<Trap>().copied()) {
        Some(Trap::Interrupt) => Ok(()),
        None => Err("a spinning guest was not interrupted (epoch interruption is not working)".into()),
        Some(other) => Err(format!("a spinning guest ended with {other:?} instead of an interrupt")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_check_refuses_an_engine_without_epoch_interruption() {
        let mut c = engine_config(&RuntimeConfig::default());
        c.epoch_interruption(false);
        let engine = Engine::new(&c).unwrap();
        let _t = Ticker::start(&engine).unwrap();
        let err = self_check(&engine, HostIo::detached()).unwrap_err();
        assert!(err.contains("not interrupted"), "{err}");
    }

    #[test]
    fn self_check_passes_with_the_real_configuration() {
        let engine = Engine::new(&engine_config(&RuntimeConfig::default())).unwrap();
        let _t = Ticker::start(&engine).unwrap();
        self_check(&engine, HostIo::detached()).unwrap();
    }
}
