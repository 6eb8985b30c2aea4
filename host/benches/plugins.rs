//! What a plugin call costs: one `on-request` hook of a small Rust plugin (`echo` from
//! `tests/hostile-plugins`) in a fresh instance — store, instantiation from the `InstancePre`,
//! call, teardown, as every request pays it — next to the same call on one reused instance.
//!
//! Goal (issue 5): ≤ 10 µs per (request, plugin) at p50 with a fresh instance. Run with
//! `make bench` (it builds the plugin for wasm32-wasip2 first).

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use host::plugins::config::{Limits, RuntimeConfig};
use host::plugins::runtime::{Hook, Principal, Request, UserPrincipal};
use host::plugins::{HostIo, Runtime};

fn echo_plugin() -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/hostile-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .current_dir(&root)
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the hostile-plugins workspace failed");
    std::fs::read(root.join("target/wasm32-wasip2/release/echo.wasm")).expect("echo.wasm")
}

fn request() -> Request {
    Request {
        method: "POST".into(),
        route: "send_text_to_user".into(),
        path: "/v1/messages/user/bob".into(),
        query: String::new(),
        headers: vec![host::plugins::runtime::Header { name: "content-type".into(), value: "application/json".into() }],
        body: br#"{"text":"hello bob"}"#.to_vec(),
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

fn bench(c: &mut Criterion) {
    let io = HostIo::detached();
    let rt = Runtime::new(&RuntimeConfig::default(), io.clone()).expect("runtime");
    let plugin = rt.load("echo", &echo_plugin(), &BTreeSet::new(), Limits::default()).expect("loads");
    let req = request();
    let (config, rid): (Arc<str>, Arc<str>) = (Arc::from("{}"), Arc::from("bench"));
    let mut g = c.benchmark_group("plugin_on_request");
    g.bench_function("fresh_instance", |b| {
        b.iter(|| {
            let (r, _) = rt.call(&plugin, &io, &config, &rid, Hook::Request(&req));
            r.expect("answer")
        })
    });
    g.bench_function("instantiate_only", |b| b.iter(|| rt.reused_instance(&plugin, &io).expect("instance")));
    let mut reused = rt.reused_instance(&plugin, &io).expect("instance");
    g.bench_function("reused_instance", |b| b.iter(|| reused.on_request(&req).expect("answer")));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
