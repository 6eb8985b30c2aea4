//! The report of `imgate plugin test`: what each step did, as JSON (`--json`, the structs below as
//! they serialize) or as text for a terminal. Bodies appear in the recorded files' forms (`body`
//! when JSON, `body_text`, `body_base64`); a `modify` or `replace` comes with its changes as JSON
//! pointers when both bodies are JSON; a failure says what the gateway would do with the request.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};

use crate::plugins::config::Limits;
use crate::plugins::runtime::{
    CallStats, Failure, Header, Principal, Request, RequestVerdict, Response, ResponseVerdict,
};

#[derive(Serialize)]
pub(super) struct Report {
    pub(super) component: ComponentInfo,
    /// The capabilities granted for the run (`--capabilities`).
    pub(super) grants: Vec<&'static str>,
    pub(super) limits: LimitsOut,
    pub(super) load: Load,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) init: Option<InitRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) on_request: Option<HookRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) on_response: Option<HookRun>,
    pub(super) notes: Vec<String>,
    /// Every step ran: loaded, `init` accepted, no hook failed (whatever the verdicts).
    pub(super) ok: bool,
}

#[derive(Serialize)]
pub(super) struct ComponentInfo {
    pub(super) path: String,
    pub(super) bytes: usize,
    pub(super) sha256: String,
    pub(super) imports: Vec<String>,
    /// The capabilities its imports need (`wasi-stubs`, `random` included).
    pub(super) capabilities_imported: Vec<String>,
    /// The hooks it declares (`imgate:hooks`); `null`: none declared, every hook is called.
    pub(super) declared_hooks: Option<Vec<&'static str>>,
    pub(super) config_schema: Option<Value>,
}

#[derive(Serialize)]
pub(super) struct LimitsOut {
    pub(super) cpu_ms: u64,
    pub(super) memory_bytes: u64,
    pub(super) max_output_bytes: usize,
    pub(super) max_host_calls: u32,
}

impl LimitsOut {
    pub(super) fn of(l: &Limits) -> LimitsOut {
        LimitsOut {
            cpu_ms: l.cpu_ms,
            memory_bytes: l.memory_bytes,
            max_output_bytes: l.max_output_bytes,
            max_host_calls: l.max_host_calls,
        }
    }
}

#[derive(Serialize)]
pub(super) struct Load {
    pub(super) ok: bool,
    /// Reading the sections, compiling (or loading from `--cache-dir`), checking, instantiating.
    pub(super) ms: u64,
    pub(super) from_cache: bool,
    pub(super) error: Option<String>,
    /// The imports the grants do not allow, each with the reason.
    pub(super) refused_imports: Vec<RefusedImport>,
    /// When imports were refused and capabilities can allow them: the grants that would load it.
    pub(super) grant: Option<Vec<String>>,
}

#[derive(Serialize)]
pub(super) struct RefusedImport {
    pub(super) import: String,
    pub(super) why: String,
}

#[derive(Serialize)]
pub(super) struct InitRun {
    pub(super) config: Value,
    pub(super) ok: bool,
    /// `init` refused the configuration with this message.
    pub(super) refused: Option<String>,
    pub(super) failure: Option<FailureOut>,
    pub(super) stats: StatsOut,
    pub(super) log: Vec<LogLine>,
}

#[derive(Serialize)]
pub(super) struct HookRun {
    /// What the hook was given.
    pub(super) input: String,
    pub(super) ran: bool,
    pub(super) skipped: Option<String>,
    pub(super) verdict: Option<Value>,
    pub(super) failure: Option<FailureOut>,
    pub(super) stats: Option<StatsOut>,
    pub(super) log: Vec<LogLine>,
    pub(super) kv_calls: u32,
}

impl HookRun {
    pub(super) fn new(input: String) -> HookRun {
        HookRun {
            input,
            ran: false,
            skipped: None,
            verdict: None,
            failure: None,
            stats: None,
            log: vec![],
            kv_calls: 0,
        }
    }
}

#[derive(Serialize)]
pub(super) struct FailureOut {
    /// The `kind` label of `imgate_plugin_failures_total`.
    pub(super) kind: String,
    pub(super) detail: String,
    /// What the gateway does with a request when this happens.
    pub(super) gateway: String,
}

impl FailureOut {
    pub(super) fn of(f: &Failure, hook: &str) -> FailureOut {
        FailureOut { kind: f.kind().into(), detail: f.to_string(), gateway: consequence(hook, f.is_the_plugins()) }
    }

    pub(super) fn invalid(what: &str, hook: &str) -> FailureOut {
        FailureOut {
            kind: "invalid_output".into(),
            detail: format!("invalid output: {what}"),
            gateway: consequence(hook, true),
        }
    }
}

fn consequence(hook: &str, counts: bool) -> String {
    let quarantine = if counts { "; it counts toward quarantine" } else { "" };
    match hook {
        "init" => "the gateway refuses the configuration: it does not start, or keeps the serving version".into(),
        "on-request" => format!(
            "the gateway follows the entry's failure policy: `closed` (the default for on-request) \
             answers 503 policy_unavailable, `open` skips the plugin{quarantine}"
        ),
        _ => format!(
            "the gateway follows the entry's failure policy: `open` (the default for on-response) \
             passes the response on unchanged, `closed` answers 503 policy_unavailable{quarantine}"
        ),
    }
}

#[derive(Serialize)]
pub(super) struct StatsOut {
    pub(super) wall_us: u64,
    pub(super) cpu_us: u64,
    pub(super) memory_high_water_bytes: u64,
}

impl From<CallStats> for StatsOut {
    fn from(s: CallStats) -> StatsOut {
        StatsOut {
            wall_us: s.wall.as_micros() as u64,
            cpu_us: s.cpu.as_micros() as u64,
            memory_high_water_bytes: s.memory_high_water,
        }
    }
}

#[derive(Serialize)]
pub(super) struct LogLine {
    pub(super) level: String,
    pub(super) message: String,
}

/// `POST send_text_to_user /v1/... as user alice (...)`.
pub(super) fn describe_request(r: &Request) -> String {
    let query = if r.query.is_empty() { String::new() } else { format!("?{}", r.query) };
    let who = match &r.principal {
        Principal::User(u) => {
            format!("user {} (platform {}, device {}, tier {})", u.user_id, u.platform, u.device_id, u.tier)
        }
        Principal::Admin(a) => format!("admin {} (issuer {}, scopes {})", a.subject, a.issuer, a.scopes.join(" ")),
    };
    format!("{} {} {}{} as {who}", r.method, r.route, r.path, query)
}

/// A body as the report shows it: `{"body": json}`, `{"body_text": ...}` or `{"body_base64": ...}`
/// (the recorded files' forms).
fn body_out(bytes: &[u8]) -> (&'static str, Value) {
    if bytes.is_empty() {
        return ("body_text", Value::String(String::new()));
    }
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return ("body", v);
    }
    match std::str::from_utf8(bytes) {
        Ok(t) => ("body_text", Value::String(t.to_owned())),
        Err(_) => ("body_base64", Value::String(B64.encode(bytes))),
    }
}

fn headers_out(h: &[Header]) -> Value {
    Value::Array(h.iter().map(|h| json!({"name": h.name, "value": h.value})).collect())
}

fn response_out(r: &Response) -> Value {
    let (key, body) = body_out(&r.body);
    json!({"status": r.status, "headers": headers_out(&r.headers), key: body})
}

/// What changed between two bodies: JSON pointer changes when both are JSON, else `null`.
fn changes(before: &[u8], after: &[u8]) -> Value {
    match (serde_json::from_slice::<Value>(before), serde_json::from_slice::<Value>(after)) {
        (Ok(a), Ok(b)) => {
            let mut out = Vec::new();
            diff("", &a, &b, &mut out);
            Value::Array(out)
        }
        _ => Value::Null,
    }
}

/// JSON pointer escaping of one key (RFC 6901).
fn token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<Value>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{}", token(k));
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => diff(&p, u, v, out),
                    (Some(u), None) => out.push(json!({"op": "removed", "path": p, "before": u})),
                    (None, Some(v)) => out.push(json!({"op": "added", "path": p, "after": v})),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}/{i}");
                match (x.get(i), y.get(i)) {
                    (Some(u), Some(v)) => diff(&p, u, v, out),
                    (Some(u), None) => out.push(json!({"op": "removed", "path": p, "before": u})),
                    (None, Some(v)) => out.push(json!({"op": "added", "path": p, "after": v})),
                    (None, None) => {}
                }
            }
        }
        _ if a != b => out
            .push(json!({"op": "changed", "path": if path.is_empty() { "/" } else { path }, "before": a, "after": b})),
        _ => {}
    }
}

pub(super) fn request_verdict_out(req: &Request, v: &RequestVerdict) -> Value {
    match v {
        RequestVerdict::Proceed => json!({"verdict": "proceed"}),
        RequestVerdict::Modify(m) => {
            let mut out = json!({"verdict": "modify", "set_headers": headers_out(&m.set_headers)});
            if let Some(b) = &m.body {
                let (kb, before) = body_out(&req.body);
                let (ka, after) = body_out(b);
                out["before"] = json!({ kb: before });
                out["after"] = json!({ ka: after });
                out["changes"] = changes(&req.body, b);
            }
            out
        }
        RequestVerdict::Reject(r) => {
            json!({"verdict": "reject", "status": r.status, "code": r.code, "message": r.message})
        }
        RequestVerdict::Respond(r) => json!({"verdict": "respond", "response": response_out(r)}),
    }
}

pub(super) fn response_verdict_out(before: &Response, v: &ResponseVerdict) -> Value {
    match v {
        ResponseVerdict::Proceed => json!({"verdict": "proceed"}),
        ResponseVerdict::Replace(r) => json!({
            "verdict": "replace",
            "response": response_out(r),
            "status_before": before.status,
            "changes": changes(&before.body, &r.body),
        }),
    }
}

impl Report {
    /// One line: the first failure, or the verdicts.
    pub(super) fn summary(&self) -> String {
        if !self.load.ok {
            if !self.load.refused_imports.is_empty() {
                let n = self.load.refused_imports.len();
                return match &self.load.grant {
                    Some(g) => format!(
                        "the component did not load: {n} import(s) not allowed; grant --capabilities {}",
                        g.join(",")
                    ),
                    None => {
                        format!("the component did not load: {n} import(s) not allowed, and no capability allows them")
                    }
                };
            }
            return format!("the component did not load: {}", self.load.error.as_deref().unwrap_or("?"));
        }
        if let Some(i) = &self.init {
            if let Some(why) = &i.refused {
                return format!("init refused the configuration: {why}");
            }
            if let Some(f) = &i.failure {
                return format!("init failed: {}", f.detail);
            }
        }
        let mut parts = Vec::new();
        for (hook, run) in [("on-request", &self.on_request), ("on-response", &self.on_response)] {
            let Some(run) = run else { continue };
            if let Some(f) = &run.failure {
                return format!("{hook} failed: {}", f.detail);
            }
            if let Some(v) = &run.verdict {
                parts.push(format!("{hook}: {}", v["verdict"].as_str().unwrap_or("?")));
            }
        }
        parts.join(", ")
    }

    pub(super) fn render(&self) -> String {
        let mut out = String::new();
        let c = &self.component;
        let _ = writeln!(
            out,
            "component     {} ({}, sha256 {})",
            c.path,
            megabytes(c.bytes),
            c.sha256.get(..12).unwrap_or(&c.sha256)
        );
        let _ = writeln!(out, "imports       {}", list_or_dash(&c.capabilities_imported, "no capability"));
        let _ = writeln!(out, "granted       {}", list_or_dash(&self.grants, "nothing"));
        let hooks = match &c.declared_hooks {
            Some(h) => format!("declares {}", list_or_dash(h, "none")),
            None => "declares none: every hook is called".into(),
        };
        let _ = writeln!(out, "hooks         {hooks}");
        let _ = writeln!(out, "config schema {}", if c.config_schema.is_some() { "embedded" } else { "-" });
        let l = &self.limits;
        let _ = writeln!(
            out,
            "limits        the defaults: cpu {} ms, memory {}, output {}, {} host calls per hook",
            l.cpu_ms,
            megabytes(l.memory_bytes as usize),
            megabytes(l.max_output_bytes),
            l.max_host_calls
        );
        if self.load.ok {
            let how = if self.load.from_cache { "from the cache" } else { "compiled" };
            let _ = writeln!(out, "load          ok ({how}, checked and instantiated in {} ms)", self.load.ms);
        } else if !self.load.refused_imports.is_empty() {
            let _ = writeln!(out, "load          FAILED: imports not allowed");
            // One line per reason, with the imports it refuses.
            let mut by_why: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for r in &self.load.refused_imports {
                by_why.entry(&r.why).or_default().push(&r.import);
            }
            for (why, imports) in by_why {
                let _ = writeln!(out, "              {}: {why}", imports.join(", "));
            }
            if let Some(grant) = &self.load.grant {
                let quoted: Vec<String> = grant.iter().map(|g| format!("\"{g}\"")).collect();
                let _ = writeln!(
                    out,
                    "              to load it, grant: --capabilities {}  ([[plugin]] capabilities = [{}])",
                    grant.join(","),
                    quoted.join(", ")
                );
            }
        } else {
            let _ = writeln!(out, "load          FAILED: {}", self.load.error.as_deref().unwrap_or("?"));
        }
        if let Some(init) = &self.init {
            let _ = writeln!(out, "\ninit          config {}", init.config);
            if init.ok {
                let _ = writeln!(out, "  answer      ok: the configuration is accepted");
            } else if let Some(why) = &init.refused {
                let _ = writeln!(out, "  answer      REFUSED: {why}");
                let _ = writeln!(
                    out,
                    "  gateway     refuses this configuration: it does not start, or keeps the serving version"
                );
            }
            render_failure(&mut out, init.failure.as_ref());
            render_log(&mut out, &init.log);
        }
        for (hook, run) in [("on-request", &self.on_request), ("on-response", &self.on_response)] {
            let Some(run) = run else { continue };
            if let Some(why) = &run.skipped {
                let _ = writeln!(out, "\n{hook:<13} {why}");
                continue;
            }
            let _ = writeln!(out, "\n{hook:<13} {}", run.input);
            if let Some(v) = &run.verdict {
                render_verdict(&mut out, v);
            }
            render_failure(&mut out, run.failure.as_ref());
            if let Some(s) = &run.stats {
                let _ = writeln!(
                    out,
                    "  cost        {} wall (fresh instance included), {} CPU in the guest, memory high water {}",
                    micros(s.wall_us),
                    micros(s.cpu_us),
                    megabytes(s.memory_high_water_bytes as usize)
                );
            }
            if run.kv_calls > 0 {
                let _ = writeln!(out, "  kv          {} call(s) to the in-memory store of this run", run.kv_calls);
            }
            render_log(&mut out, &run.log);
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "note: {n}");
            }
        }
        let _ = writeln!(out, "\n{}", if self.ok { "ok: every hook ran" } else { "FAILED" });
        out
    }
}

fn list_or_dash<S: AsRef<str>>(items: &[S], none: &str) -> String {
    if items.is_empty() {
        none.to_owned()
    } else {
        items.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
    }
}

fn megabytes(n: usize) -> String {
    if n >= 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    } else if n >= 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

fn render_failure(out: &mut String, f: Option<&FailureOut>) {
    if let Some(f) = f {
        let _ = writeln!(out, "  FAILED      {} ({})", f.detail, f.kind);
        let _ = writeln!(out, "  gateway     {}", f.gateway);
    }
}

fn render_log(out: &mut String, log: &[LogLine]) {
    for l in log {
        let _ = writeln!(out, "  log         {:<5} {}", l.level, l.message);
    }
}

/// At most 400 characters of a value, on one line.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(400) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s,
    }
}

fn render_body(out: &mut String, label: &str, holder: &Value) {
    for key in ["body", "body_text", "body_base64"] {
        if let Some(v) = holder.get(key) {
            let shown = match (key, v) {
                ("body", v) => short(v),
                (_, Value::String(s)) if s.is_empty() => "(empty)".into(),
                (k, v) => format!("{} ({k})", short(v)),
            };
            let _ = writeln!(out, "  {label:<11} {shown}");
        }
    }
}

fn render_changes(out: &mut String, changes: &Value) {
    let Some(list) = changes.as_array() else { return };
    if list.is_empty() {
        let _ = writeln!(out, "  changes     none (the same JSON)");
    }
    for (i, c) in list.iter().enumerate() {
        if i == 50 {
            let _ = writeln!(out, "              ... and {} more", list.len() - 50);
            break;
        }
        let path = c["path"].as_str().unwrap_or("?");
        let line = match c["op"].as_str() {
            Some("added") => format!("+ {path}: {}", short(&c["after"])),
            Some("removed") => format!("- {path}: {}", short(&c["before"])),
            _ => format!("~ {path}: {} -> {}", short(&c["before"]), short(&c["after"])),
        };
        let label = if i == 0 { "changes" } else { "" };
        let _ = writeln!(out, "  {label:<11} {line}");
    }
}

fn render_headers(out: &mut String, label: &str, headers: &Value) {
    for (i, h) in headers.as_array().into_iter().flatten().enumerate() {
        let l = if i == 0 { label } else { "" };
        let _ = writeln!(out, "  {l:<11} {}: {}", h["name"].as_str().unwrap_or(""), h["value"].as_str().unwrap_or(""));
    }
}

fn render_verdict(out: &mut String, v: &Value) {
    match v["verdict"].as_str().unwrap_or("?") {
        "proceed" => {
            let _ = writeln!(out, "  verdict     proceed: unchanged");
        }
        "reject" => {
            let _ = writeln!(
                out,
                "  verdict     reject {} {}: {}",
                v["status"],
                v["code"].as_str().unwrap_or(""),
                v["message"].as_str().unwrap_or("")
            );
            let client = json!({"code": "policy_denied", "reason": v["code"], "message": v["message"]});
            let _ = writeln!(out, "  client gets {} {client} (and its request_id)", v["status"]);
        }
        "modify" => {
            let _ = writeln!(out, "  verdict     modify");
            if v.get("after").is_some() {
                render_body(out, "body before", &v["before"]);
                render_body(out, "body after", &v["after"]);
                render_changes(out, &v["changes"]);
            } else {
                let _ = writeln!(out, "  body        unchanged");
            }
            render_headers(out, "sets header", &v["set_headers"]);
        }
        "respond" => {
            let r = &v["response"];
            let _ = writeln!(out, "  verdict     respond {}: the route does not run", r["status"]);
            render_headers(out, "header", &r["headers"]);
            render_body(out, "body", r);
        }
        "replace" => {
            let r = &v["response"];
            let _ = writeln!(out, "  verdict     replace: status {} -> {}", v["status_before"], r["status"]);
            render_headers(out, "header", &r["headers"]);
            render_body(out, "body", r);
            render_changes(out, &v["changes"]);
        }
        other => {
            let _ = writeln!(out, "  verdict     {other}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_changes_are_listed_by_pointer() {
        let c = changes(
            br#"{"text":"a spam","keep":1,"old":true,"l":[1,2]}"#,
            br#"{"text":"a ****","keep":1,"new/x":2,"l":[1]}"#,
        );
        assert_eq!(
            c,
            json!([
                {"op": "removed", "path": "/l/1", "before": 2},
                {"op": "added", "path": "/new~1x", "after": 2},
                {"op": "removed", "path": "/old", "before": true},
                {"op": "changed", "path": "/text", "before": "a spam", "after": "a ****"},
            ])
        );
        assert_eq!(changes(b"1", b"2"), json!([{"op": "changed", "path": "/", "before": 1, "after": 2}]));
        assert_eq!(changes(b"not json", b"{}"), Value::Null);
    }
}
