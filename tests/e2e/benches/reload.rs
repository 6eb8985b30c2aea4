//! How long a plugin swap takes: from the moment a new build is in place at a plugin's `path`
//! (atomic rename) until the gateway serves it, for a small Rust plugin (`version`, ~0.1 MB) and a
//! large component (`big`, > 5 MB of code), cold (a build imgate has never seen: compiled) and
//! with the precompiled cache (a build it has activated before: deserialized).
//!
//! Issue 6. Run with `make bench`. A real gateway (release build) with its real file watcher
//! (default 50 ms debounce) and traffic through the plugin route: after each write one client
//! polls `GET /v1/me/profile` every 2 ms until the answer carries the new build's version, so the
//! resolution is about 2 ms plus one request. Prints p50 / p99 / max over every swap; not
//! criterion, whose samples-of-iterations model does not give percentiles of a multi-second
//! operation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::plugins::{big_plugin, version_plugin};
use e2e::reload::{gateway, served, with_custom_section, within, workdir, write_atomic};
use e2e::Harness;
use imgate_client::Session;

/// Writes `bytes` (a build answering `want`) and returns how long until it is served.
async fn swap(h: &Harness, s: &Session, path: &Path, bytes: &[u8], want: u64) -> Duration {
    write_atomic(path, bytes);
    within(Duration::from_secs(60), Duration::from_millis(2), async || served(h, s).await == Ok(want))
        .await
        .unwrap_or_else(|| panic!("version {want} never served"))
}

fn report(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |q: f64| times[((q * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{label:<22} n={:<3} p50 {:>8.1} ms   p99 {:>8.1} ms   min {:>8.1} ms   max {:>8.1} ms",
        times.len(),
        ms(at(0.50)),
        ms(at(0.99)),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
}

async fn bench(label: &str, plugin: fn(u32) -> PathBuf, cold_swaps: usize, cached_swaps: usize) {
    let builds = [std::fs::read(plugin(1)).unwrap(), std::fs::read(plugin(2)).unwrap()];
    let work = workdir();
    let (h, alice, path) = gateway(&work, &plugin(1), "{}", "").await;
    assert_eq!(served(&h, &alice).await, Ok(1));
    println!("{label}: component {:.2} MB", builds[0].len() as f64 / 1e6);

    // Cold: every write is a build never seen (a fresh custom section), alternating the answers.
    let mut cold = Vec::new();
    for i in 0..cold_swaps {
        let want = if i % 2 == 0 { 2 } else { 1 };
        let bytes = with_custom_section(&builds[want - 1], "imgate-bench", format!("{label}-{i}").as_bytes());
        cold.push(swap(&h, &alice, &path, &bytes, want as u64).await);
    }
    // Cached: both plain builds once (compiled, cached), then alternate them.
    swap(&h, &alice, &path, &builds[1], 2).await;
    swap(&h, &alice, &path, &builds[0], 1).await;
    let mut cached = Vec::new();
    for i in 0..cached_swaps {
        let want = if i % 2 == 0 { 2 } else { 1 };
        cached.push(swap(&h, &alice, &path, &builds[want - 1], want as u64).await);
    }
    report(&format!("{label} cold"), cold);
    report(&format!("{label} cached"), cached);
    h.shutdown().await;
    let _ = std::fs::remove_dir_all(&work);
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters the cases by name.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("plugin swap: file in place -> new version served (watcher debounce 50 ms)");
    if wanted("small") {
        rt.block_on(bench("small", version_plugin, 40, 40));
    }
    if wanted("large") {
        rt.block_on(bench("large", big_plugin, 12, 40));
    }
}
