//! What a plugin costs in each language it can be written in (issue 15): the content filter in
//! Rust and JavaScript (componentize-js), the group-join policy in Rust and Python
//! (componentize-py). For each: the component's size, its compile time (Cranelift, no cache),
//! its load time from imgate's precompiled cache (what a restart or a swap back pays), and one
//! `on-request` hook's latency in a fresh instance (instantiated for the call) and in a prepared
//! one (`limits.prepared_instances = 2`), through the runtime the gateway serves with.
//!
//! Hook latency is measured at 200 calls per mode, one every 5 ms (so the prepared instances are
//! ready, as they are below the pool's refill rate), p50 / p99 of the wall time of `Runtime::call`
//! on this thread; CPU is the guest's own. Run with `make bench`; prints a markdown table (also
//! written to `target/bench/languages.md`).

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // bench code: a panic is a failure

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use host::plugins::config::{Capability, Limits, RuntimeConfig};
use host::plugins::runtime::{Hook, Principal, Request, UserPrincipal};
use host::plugins::store::ArtifactStore;
use host::plugins::{HostIo, Runtime};

struct Twin {
    label: &'static str,
    path: std::path::PathBuf,
    grants: &'static [Capability],
    config: &'static str,
    request: Request,
}

fn request(path: &str, body: &[u8]) -> Request {
    Request {
        method: "POST".into(),
        route: "bench".into(),
        path: path.into(),
        query: String::new(),
        headers: vec![],
        body: body.to_vec(),
        principal: Principal::User(UserPrincipal {
            user_id: "alice".into(),
            platform: 5,
            session_id: "s".repeat(32),
            device_id: "laptop".into(),
            tier: "standard".into(),
        }),
        operation_id: "bench".into(),
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// p50, p99 of the wall time and p50 of the guest CPU of `calls` hook calls.
fn hook_latency(
    rt: &Runtime,
    io: &Arc<HostIo>,
    twin: &Twin,
    limits: Limits,
    store: &ArtifactStore,
) -> (Duration, Duration, Duration, usize) {
    let bytes = std::fs::read(&twin.path).unwrap();
    let grants: BTreeSet<Capability> = twin.grants.iter().copied().collect();
    let plugin = rt.load_cached(twin.label, &bytes, &grants, limits, Some(store)).expect("loads");
    let (config, rid): (Arc<str>, Arc<str>) = (Arc::from(twin.config), Arc::from("bench"));
    let (mut wall, mut cpu, mut prepared) = (Vec::new(), Vec::new(), 0);
    for i in 0..220 {
        let started = Instant::now();
        let (answer, stats) = rt.call(&plugin, io, &config, &rid, Hook::Request(&twin.request));
        answer.expect("an answer");
        if i >= 20 {
            wall.push(started.elapsed());
            cpu.push(stats.cpu);
            prepared += usize::from(stats.prepared);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    wall.sort();
    cpu.sort();
    (percentile(&wall, 50), percentile(&wall, 99), percentile(&cpu, 50), prepared)
}

fn main() {
    let twins = [
        Twin {
            label: "content-filter (Rust)",
            path: e2e::plugins::example("content-filter"),
            grants: &[Capability::Config],
            config: r#"{"words":["darn"],"action":"mask"}"#,
            request: request("/v1/messages/user/bob", br#"{"text":"hello darn bob"}"#),
        },
        Twin {
            label: "content-filter (JavaScript)",
            path: e2e::plugins::js_content_filter(),
            grants: &[Capability::Config],
            config: r#"{"words":["darn"],"action":"mask"}"#,
            request: request("/v1/messages/user/bob", br#"{"text":"hello darn bob"}"#),
        },
        Twin {
            label: "group-join-policy (Rust)",
            path: e2e::plugins::example("group-join-policy"),
            grants: &[Capability::Config, Capability::Openim, Capability::Log],
            config: "{}",
            request: request("/v1/groups/g1/join", b""),
        },
        Twin {
            label: "group-join-policy (Python)",
            path: e2e::plugins::py_group_join_policy(),
            grants: &[Capability::Config, Capability::Openim, Capability::Random, Capability::WasiStubs],
            config: "{}",
            request: request("/v1/groups/g1/join", b""),
        },
    ];
    let io = HostIo::detached();
    let config = RuntimeConfig { compile_timeout_ms: 300_000, ..RuntimeConfig::default() };
    let rt = Runtime::new(&config, io.clone()).expect("runtime");
    let dir = std::env::temp_dir().join(format!("imgate-bench-languages-{}", std::process::id()));
    let store = ArtifactStore::open(&dir, rt.engine()).expect("store");
    let mut table = String::from(
        "| plugin | component | compile (no cache) | load from cache | hook, fresh instance p50 / p99 | hook, prepared p50 / p99 | guest CPU p50 fresh / prepared |\n|---|--:|--:|--:|--:|--:|--:|\n",
    );
    for twin in &twins {
        let bytes = std::fs::read(&twin.path).unwrap();
        let grants: BTreeSet<Capability> = twin.grants.iter().copied().collect();
        let limits = Limits { memory_bytes: 64 << 20, ..Limits::default() };
        let started = Instant::now();
        rt.load_cached(twin.label, &bytes, &grants, limits, Some(&store)).expect("compiles");
        let compile = started.elapsed();
        let started = Instant::now();
        let cached = rt.load_cached(twin.label, &bytes, &grants, limits, Some(&store)).expect("loads");
        let load = started.elapsed();
        assert!(cached.from_cache, "{}: the second load came from the cache", twin.label);
        let (f50, f99, fcpu, _) = hook_latency(&rt, &io, twin, limits, &store);
        let prepared = Limits { prepared_instances: 2, ..limits };
        let (p50, p99, pcpu, served) = hook_latency(&rt, &io, twin, prepared, &store);
        let line = format!(
            "| {} | {:.1} MB | {:.2} s | {:.0} ms | {} / {} | {} / {} ({served}/200 prepared) | {} / {} |\n",
            twin.label,
            bytes.len() as f64 / 1e6,
            compile.as_secs_f64(),
            load.as_secs_f64() * 1e3,
            us(f50),
            us(f99),
            us(p50),
            us(p99),
            us(fcpu),
            us(pcpu),
        );
        print!("{line}");
        table.push_str(&line);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("\n{table}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("languages.md"), &table);
    }
}
