//! `imgate plugin test COMPONENT --request FILE [--response FILE] [--config FILE] [--capabilities ..]`:
//! a plugin's hooks run once against a recorded request (and response) by the gateway's own runtime,
//! with no gateway: load (compile, import check against the grants, instantiation), `init` with the
//! route configuration, `on-request`, and `on-response` when there is a response to show it. The
//! report says what each hook answered, what a `modify` or `replace` changed (a JSON diff when both
//! bodies are JSON), what each call cost, what the plugin logged, and — for an answer the gateway's
//! chain would refuse, or a failure — what the gateway would do with it.
//!
//! No gateway means: no OpenIM (`openim` calls answer `unavailable`), a `kv` store in memory that
//! starts empty, `log` lines collected into the report. Limits are the defaults of `[[plugin]]
//! limits`, the runtime's `[plugins]` defaults but for the compile budget (generous here: the report
//! says how long compiling took against the gateway's 20 s default).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::recorded::{request_from, response_from, RecordedRequest, REQUEST_ID};
use super::report::{
    describe_request, request_verdict_out, response_verdict_out, ComponentInfo, FailureOut, HookRun, InitRun,
    LimitsOut, Load, LogLine, RefusedImport, Report,
};
use crate::plugins::config::{Capability, Limits, RuntimeConfig};
use crate::plugins::kv::{KvError, MemoryKv, PluginKv, Quota};
use crate::plugins::runtime::{Hook, HookAnswer, Hooks, LoadError, RequestVerdict, Response, ResponseVerdict};
use crate::plugins::store::{embedded_config_schema, embedded_hooks, ArtifactStore};
use crate::plugins::{HostIo, LoadedPlugin, Runtime};

/// What `imgate plugin test` was asked.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// The component (`.wasm`).
    pub component: PathBuf,
    /// The recorded request (JSON, see `docs/plugin-guide.md`).
    pub request: PathBuf,
    /// The route's recorded response, for `on-response`.
    pub response: Option<PathBuf>,
    /// The route configuration of the plugin (JSON; default `{}`).
    pub config: Option<PathBuf>,
    /// What the plugin is granted (default: nothing, as in `[[plugin]] capabilities`).
    pub capabilities: Vec<Capability>,
    /// The report as JSON instead of text.
    pub json: bool,
    /// Keep compiled code here between runs (imgate's precompiled cache, by content hash).
    pub cache_dir: Option<PathBuf>,
}

/// The result of a run: the report to print, and whether every step ran (whatever the verdicts).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub report: String,
    /// The component loaded, `init` accepted the configuration, and no hook failed.
    pub ok: bool,
    /// One line: what went wrong, or the verdict.
    pub summary: String,
}

/// Runs the hooks; `Err` only when the inputs cannot be read (a failing plugin is an `Outcome`
/// with `ok: false`).
pub async fn test_plugin(opts: TestOptions) -> Result<Outcome, String> {
    let bytes = std::fs::read(&opts.component).map_err(|e| format!("{}: {e}", opts.component.display()))?;
    let request = read_json(&opts.request).and_then(|v| request_from(v).map_err(|e| at(&opts.request, e)))?;
    let response = match &opts.response {
        Some(p) => Some(read_json(p).and_then(|v| response_from(v).map_err(|e| at(p, e)))?),
        None => None,
    };
    let config = match &opts.config {
        Some(p) => read_json(p)?,
        None => json!({}),
    };
    let json_out = opts.json;
    let inputs = Inputs { opts, bytes, request, response, config };
    let report =
        tokio::task::spawn_blocking(move || run(inputs)).await.map_err(|e| format!("the test run stopped: {e}"))?;
    let summary = report.summary();
    let ok = report.ok;
    let text = if json_out {
        let mut s = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        s.push('\n');
        s
    } else {
        report.render()
    };
    Ok(Outcome { report: text, ok, summary })
}

fn at(path: &Path, e: String) -> String {
    format!("{}: {e}", path.display())
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

// ---- The run

struct Inputs {
    opts: TestOptions,
    bytes: Vec<u8>,
    request: RecordedRequest,
    response: Option<Response>,
    config: Value,
}

/// A `kv` store in memory that counts the calls made to it.
#[derive(Default)]
struct CountingKv {
    inner: MemoryKv,
    calls: AtomicU32,
}

impl CountingKv {
    fn take(&self) -> u32 {
        self.calls.swap(0, Ordering::Relaxed)
    }
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl PluginKv for CountingKv {
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.count();
        self.inner.get(ns, key).await
    }
    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: Quota,
    ) -> Result<(), KvError> {
        self.count();
        self.inner.set(ns, key, value, ttl, quota).await
    }
    async fn delete(&self, ns: &str, key: &str) -> Result<(), KvError> {
        self.count();
        self.inner.delete(ns, key).await
    }
    async fn increment(
        &self,
        ns: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
        quota: Quota,
    ) -> Result<i64, KvError> {
        self.count();
        self.inner.increment(ns, key, delta, ttl, quota).await
    }
}

/// What the runtime of a test run is configured with: the gateway's defaults, but one call at a
/// time, no prepared instances, and time enough to compile a large component on a slow machine.
fn runtime_config() -> RuntimeConfig {
    RuntimeConfig {
        max_concurrent_calls: 1,
        max_prepared_instances: 0,
        compile_timeout_ms: 600_000,
        watch: false,
        ..RuntimeConfig::default()
    }
}

fn run(inputs: Inputs) -> Report {
    let Inputs { opts, bytes, request, response, config } = inputs;
    let grants: BTreeSet<Capability> = opts.capabilities.iter().copied().collect();
    let imports = component_imports(&bytes).unwrap_or_default();
    let mut report = Report {
        component: ComponentInfo {
            path: opts.component.display().to_string(),
            bytes: bytes.len(),
            sha256: {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(&bytes))
            },
            capabilities_imported: imported_capabilities(&imports),
            imports,
            declared_hooks: None,
            config_schema: None,
        },
        grants: grants.iter().map(|c| c.as_str()).collect(),
        limits: LimitsOut::of(&Limits::default()),
        load: Load { ok: false, ms: 0, from_cache: false, error: None, refused_imports: Vec::new(), grant: None },
        init: None,
        on_request: None,
        on_response: None,
        notes: Vec::new(),
        ok: false,
    };
    if !request.removed_headers.is_empty() {
        report.notes.push(format!(
            "header(s) {} removed from the request: the gateway never shows them to a plugin",
            request.removed_headers.join(", ")
        ));
    }
    let kv = Arc::new(CountingKv::default());
    let io = Arc::new(HostIo { openim: None, kv: kv.clone() });
    let started = Instant::now();
    let loaded = load(&opts, &bytes, &grants, &io, &mut report);
    report.load.ms = started.elapsed().as_millis() as u64;
    let Some((runtime, plugin)) = loaded else {
        return report;
    };
    report.load.ok = true;
    report.load.from_cache = plugin.from_cache;
    if report.component.capabilities_imported.iter().any(|c| c == "openim") {
        report.notes.push(
            "no OpenIM without a gateway: every `openim` call (get-user, get-group, get-membership) \
             answered `unavailable`"
                .into(),
        );
    }

    // init, with the route configuration as the gateway passes it (compact JSON).
    let config_text: Arc<str> = Arc::from(config.to_string());
    let rid: Arc<str> = Arc::from(REQUEST_ID);
    let ((answer, stats), log) =
        capture_log(|| runtime.call(&plugin, &io, &config_text, &rid, Hook::Init(&config_text)));
    let mut init = InitRun { config, ok: false, refused: None, failure: None, stats: stats.into(), log };
    match answer {
        Ok(HookAnswer::Init(Ok(()))) => init.ok = true,
        Ok(HookAnswer::Init(Err(why))) => init.refused = Some(why),
        Ok(_) => init.failure = Some(FailureOut::invalid("init answered something else", "init")),
        Err(f) => init.failure = Some(FailureOut::of(&f, "init")),
    }
    let init_ok = init.ok;
    report.init = Some(init);
    if !init_ok {
        return report;
    }

    // on-request, as the chain calls it.
    let mut request = request.request;
    let mut early: Option<Response> = None;
    let mut rejected = false;
    let mut failed = false;
    let mut run_req = HookRun::new(describe_request(&request));
    if !plugin.hooks.on_request {
        run_req.skipped = Some(
            "not run: the component declares it does not implement on-request (the gateway does not call it)".into(),
        );
    } else {
        let ((answer, stats), log) =
            capture_log(|| runtime.call(&plugin, &io, &config_text, &rid, Hook::Request(&request)));
        run_req.ran = true;
        run_req.stats = Some(stats.into());
        run_req.log = log;
        run_req.kv_calls = kv.take();
        let verdict = match answer {
            Ok(HookAnswer::Request(v)) => check_request_verdict(&v).map(|()| v),
            Ok(_) => Err(FailureOut::invalid("wrong answer kind", "on-request")),
            Err(f) => Err(FailureOut::of(&f, "on-request")),
        };
        match verdict {
            Ok(v) => {
                run_req.verdict = Some(request_verdict_out(&request, &v));
                match v {
                    RequestVerdict::Proceed => {}
                    RequestVerdict::Modify(m) => {
                        if let Some(b) = m.body {
                            request.body = b;
                        }
                        for h in m.set_headers {
                            request.headers.retain(|x| x.name != h.name);
                            request.headers.push(h);
                        }
                    }
                    RequestVerdict::Reject(_) => rejected = true,
                    RequestVerdict::Respond(r) => early = Some(r),
                }
            }
            Err(f) => {
                run_req.failure = Some(f);
                failed = true;
            }
        }
    }
    report.on_request = Some(run_req);

    // on-response: with the plugin's own answer (`respond`), or the recorded one.
    let shown = early.as_ref().or(response.as_ref());
    let mut run_res = HookRun::new(match (&early, &response) {
        (Some(_), _) => "the answer on-request gave (respond)".to_owned(),
        (None, Some(r)) => format!("the recorded response (status {})", r.status),
        (None, None) => "-".to_owned(),
    });
    let skipped = if failed {
        Some("not run: on-request failed".to_owned())
    } else if rejected {
        Some("not run: on-request rejected the request (the route does not run)".to_owned())
    } else if shown.is_none() {
        Some("not run: no --response given".to_owned())
    } else if !plugin.hooks.on_response {
        Some(
            "not run: the component declares it does not implement on-response (the gateway does not call it)"
                .to_owned(),
        )
    } else {
        None
    };
    if early.is_some() && response.is_some() {
        report.notes.push("--response was not used: on-request answered itself (respond)".into());
    }
    match (skipped, shown) {
        (Some(why), _) => run_res.skipped = Some(why),
        (None, Some(res)) if res.body.len() > runtime_config().max_response_bytes => {
            run_res.skipped = Some(format!(
                "not run: the response is over plugins.max_response_bytes ({} bytes); the gateway counts \
                 response_too_large under the entry's failure policy (open by default)",
                runtime_config().max_response_bytes
            ));
        }
        (None, Some(res)) => {
            let ((answer, stats), log) =
                capture_log(|| runtime.call(&plugin, &io, &config_text, &rid, Hook::Response(&request, res)));
            run_res.ran = true;
            run_res.stats = Some(stats.into());
            run_res.log = log;
            run_res.kv_calls = kv.take();
            let verdict = match answer {
                Ok(HookAnswer::Response(v)) => check_response_verdict(&v).map(|()| v),
                Ok(_) => Err(FailureOut::invalid("wrong answer kind", "on-response")),
                Err(f) => Err(FailureOut::of(&f, "on-response")),
            };
            match verdict {
                Ok(v) => run_res.verdict = Some(response_verdict_out(res, &v)),
                Err(f) => {
                    run_res.failure = Some(f);
                    failed = true;
                }
            }
        }
        (None, None) => {}
    }
    report.on_response = Some(run_res);
    report.ok = !failed;
    report
}

/// Builds the runtime and loads the component as the gateway does; on failure the report says why
/// (and which capabilities to grant when imports were refused).
fn load(
    opts: &TestOptions,
    bytes: &[u8],
    grants: &BTreeSet<Capability>,
    io: &Arc<HostIo>,
    report: &mut Report,
) -> Option<(Runtime, LoadedPlugin)> {
    let rt = runtime_config();
    // The sections the gateway reads when it activates a version; a broken one refuses it.
    let hooks = match embedded_hooks(bytes) {
        Ok(h) => h,
        Err(e) => {
            report.load.error = Some(e);
            return None;
        }
    };
    report.component.declared_hooks = hooks.map(|h| {
        [("on_request", h.on_request), ("on_response", h.on_response)]
            .into_iter()
            .filter_map(|(n, on)| on.then_some(n))
            .collect()
    });
    match embedded_config_schema(bytes) {
        Ok(s) => report.component.config_schema = s,
        Err(e) => {
            report.load.error = Some(e);
            return None;
        }
    }
    let runtime = match Runtime::new(&rt, io.clone()) {
        Ok(r) => r,
        Err(e) => {
            report.load.error = Some(e);
            return None;
        }
    };
    let store = match &opts.cache_dir {
        Some(dir) => match ArtifactStore::open(dir, runtime.engine()) {
            Ok(s) => Some(s),
            Err(e) => {
                report.notes.push(format!("--cache-dir {}: {e}; compiling without a cache", dir.display()));
                None
            }
        },
        None => None,
    };
    let name = plugin_name(&opts.component);
    match runtime.load_cached(&name, bytes, grants, Limits::default(), store.as_ref()) {
        Ok(mut plugin) => {
            plugin.hooks = hooks.unwrap_or(Hooks::ALL);
            Some((runtime, plugin))
        }
        Err(e) => {
            if let LoadError::Imports(refused) = &e {
                report.load.refused_imports = refused
                    .iter()
                    .map(|(import, why)| RefusedImport { import: import.clone(), why: why.clone() })
                    .collect();
                let mut need: BTreeSet<&str> = grants.iter().map(|c| c.as_str()).collect();
                let mut grantable = true;
                for (import, _) in refused {
                    match capability_of(import) {
                        Needs::Capability(c) => {
                            need.insert(c.as_str());
                        }
                        Needs::Nothing => {}
                        Needs::Never => grantable = false,
                    }
                }
                if grantable {
                    report.load.grant = Some(need.into_iter().map(str::to_owned).collect());
                }
            }
            report.load.error = Some(e.to_string());
            None
        }
    }
}

/// A `[[plugin]]`-like name for the run (the `kv` namespace, `log` lines): the file's stem.
fn plugin_name(path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin");
    let name: String = stem
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .take(64)
        .collect();
    if name.is_empty() {
        "plugin".into()
    } else {
        name
    }
}

/// The top-level imports of a component (the interfaces it asks the host for).
fn component_imports(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| e.to_string())? {
            wasmparser::Payload::Version { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let import = import.map_err(|e| e.to_string())?;
                    // Types the world `use`s (`request`, ...) are imported too; they ask for nothing.
                    if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_)) {
                        out.push(import.name.0.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// What granting an import takes (the rules of `plugins/capabilities.rs`, for the report's hints;
/// the runtime's check is what decides).
enum Needs {
    Capability(Capability),
    /// Always linked (the contract's types, the inert WASI interfaces of Rust's std).
    Nothing,
    /// No capability grants it.
    Never,
}

fn capability_of(import: &str) -> Needs {
    let unversioned = import.split('@').next().unwrap_or(import);
    if let Some(iface) = unversioned.strip_prefix("imgate:plugin/") {
        if iface == "types" {
            return Needs::Nothing;
        }
        return match Capability::ALL.into_iter().find(|c| c.as_str() == iface) {
            Some(c) => Needs::Capability(c),
            None => Needs::Never,
        };
    }
    let Some(rest) = unversioned.strip_prefix("wasi:") else { return Needs::Never };
    match rest.split('/').next().unwrap_or("") {
        "cli" | "io" => Needs::Nothing,
        "random" => Needs::Capability(Capability::Random),
        "clocks" | "filesystem" | "sockets" => Needs::Capability(Capability::WasiStubs),
        _ => Needs::Never,
    }
}

fn imported_capabilities(imports: &[String]) -> Vec<String> {
    let set: BTreeSet<&str> = imports
        .iter()
        .filter_map(|i| match capability_of(i) {
            Needs::Capability(c) => Some(c.as_str()),
            _ => None,
        })
        .collect();
    set.into_iter().map(str::to_owned).collect()
}

/// `log` lines the plugin wrote during one call (the host writes them as `imgate::plugin` events).
fn capture_log<R>(f: impl FnOnce() -> R) -> (R, Vec<LogLine>) {
    use tracing_subscriber::layer::SubscriberExt as _;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Capture(lines.clone()));
    let result = tracing::subscriber::with_default(subscriber, f);
    let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|p| p.into_inner()));
    (result, lines)
}

struct Capture(Arc<Mutex<Vec<LogLine>>>);

const PLUGIN_LOG_TARGET: &str = "imgate::plugin";

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn register_callsite(&self, meta: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        if meta.target() == PLUGIN_LOG_TARGET {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>, _: tracing_subscriber::layer::Context<'_, S>) -> bool {
        meta.target() == PLUGIN_LOG_TARGET
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != PLUGIN_LOG_TARGET {
            return;
        }
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(LogLine { level, message: m.0 });
    }
}

// ---- The checks the gateway's chain applies to every verdict, the chain's own functions (so an
// ---- answer this run shows is one the gateway would take). A failing check is `invalid_output`.

fn check_request_verdict(v: &RequestVerdict) -> Result<(), FailureOut> {
    crate::plugins::chain::validate_request_verdict(v).map_err(|f| invalid_output(f, "on-request"))
}

fn check_response_verdict(v: &ResponseVerdict) -> Result<(), FailureOut> {
    crate::plugins::chain::validate_response_verdict(v).map_err(|f| invalid_output(f, "on-response"))
}

fn invalid_output(f: crate::plugins::runtime::Failure, hook: &str) -> FailureOut {
    match f {
        crate::plugins::runtime::Failure::InvalidOutput(why) => FailureOut::invalid(&why, hook),
        other => FailureOut::invalid(&format!("{other:?}"), hook),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_the_gateway_refuses_are_invalid_output() {
        use crate::plugins::runtime::{Header, Modification, Rejection};
        let reject = |status: u16, code: &str| {
            RequestVerdict::Reject(Rejection { status, code: code.into(), message: "m".into() })
        };
        assert!(check_request_verdict(&reject(403, "denied_word")).is_ok());
        assert_eq!(check_request_verdict(&reject(500, "x")).unwrap_err().kind, "invalid_output");
        assert!(check_request_verdict(&reject(403, "Bad Code")).is_err());
        let modify = |body: &[u8], header: &str| {
            RequestVerdict::Modify(Modification {
                body: Some(body.to_vec()),
                set_headers: vec![Header { name: header.into(), value: "v".into() }],
            })
        };
        assert!(check_request_verdict(&modify(b"{}", "x-mine")).is_ok());
        assert!(check_request_verdict(&modify(b"not json", "x-mine")).is_err());
        assert!(check_request_verdict(&modify(b"{}", "x-imgate-user")).is_err());
        assert!(check_request_verdict(&modify(b"{}", "Content-Type")).is_err());
        let replace = ResponseVerdict::Replace(Response { status: 99, headers: vec![], body: vec![] });
        assert!(check_response_verdict(&replace).is_err());
    }

    #[test]
    fn refused_imports_map_to_the_capability_that_allows_them() {
        assert!(matches!(capability_of("imgate:plugin/config@0.1.0"), Needs::Capability(Capability::Config)));
        assert!(matches!(capability_of("imgate:plugin/types@0.1.0"), Needs::Nothing));
        assert!(matches!(capability_of("wasi:random/insecure-seed@0.2.3"), Needs::Capability(Capability::Random)));
        assert!(matches!(capability_of("wasi:sockets/tcp@0.2.0"), Needs::Capability(Capability::WasiStubs)));
        assert!(matches!(capability_of("wasi:cli/stdout@0.2.0"), Needs::Nothing));
        assert!(matches!(capability_of("wasi:http/outgoing-handler@0.2.0"), Needs::Never));
        assert!(matches!(capability_of("evil:thing/x"), Needs::Never));
    }

    /// A file that is not a component: the run reports the load failure (not ok), it is no error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_component_that_does_not_load_is_an_outcome_and_unreadable_inputs_are_errors() {
        let dir = std::env::temp_dir().join(format!("imgate-kit-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let request = dir.join("request.json");
        std::fs::write(&request, r#"{"route": "r", "path": "/v1/x", "body": {"text": "hi"}}"#).unwrap();
        // Not a component: a load failure is an outcome that is not ok, not an error of the inputs.
        let component = dir.join("bad.wasm");
        std::fs::write(&component, b"\0asm\x01\0\0\0").unwrap();
        let opts = TestOptions { component, request: request.clone(), ..TestOptions::default() };
        let out = test_plugin(opts).await.unwrap();
        assert!(!out.ok && out.summary.starts_with("the component did not load"), "{}", out.report);
        assert!(out.report.contains("load          FAILED"), "{}", out.report);
        // Unreadable inputs are errors.
        let missing = TestOptions { component: dir.join("none.wasm"), request, ..TestOptions::default() };
        assert!(test_plugin(missing).await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
