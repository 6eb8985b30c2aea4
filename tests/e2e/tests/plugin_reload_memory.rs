//! Memory across plugin swaps (its own test binary, so nothing else runs in the process): after
//! 200 swaps of a plugin file, the process's resident memory is within 10 % of what it was after
//! 10 — old versions are freed once no request holds them.

use std::path::Path;
use std::time::{Duration, Instant};

use e2e::plugins::version_plugin;
use e2e::*;
use imgate_client::Session;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
    pages * 4096
}

fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn served(h: &Harness, s: &Session) -> Option<u64> {
    let res = h.client().call(s, "GET", "/v1/me/profile", None).await.ok()?;
    let (status, body) = into_json(res).await;
    (status == 200).then(|| body["plugin_version"].as_u64()).flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_after_200_swaps_is_within_10_percent_of_rss_after_10() {
    let versions = [std::fs::read(version_plugin(1)).unwrap(), std::fs::read(version_plugin(2)).unwrap()];
    let work = std::env::temp_dir().join(format!("imgate-rss-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).unwrap();
    let path = work.join("p.wasm");
    std::fs::write(&path, &versions[0]).unwrap();
    let toml = format!(
        "[plugins]\nstore_dir = \"{}\"\n[[plugin]]\nname = \"p\"\npath = \"{}\"\n\
         [[route_plugins]]\nroute = \"get_profile\"\nplugins = [{{ plugin = \"p\", config = {{}} }}]\n",
        work.join("store").display(),
        path.display()
    );
    let h = Harness::start_with(Options { extra_toml: toml, ..Options::default() }).await;
    let (_, alice) = h.session("alice").await;
    assert_eq!(served(&h, &alice).await, Some(1));
    let mut rss_at_10 = 0;
    for i in 1..=200u64 {
        let want = if i % 2 == 1 { 2 } else { 1 };
        write_atomic(&path, &versions[(want - 1) as usize]);
        let started = Instant::now();
        while served(&h, &alice).await != Some(want) {
            assert!(started.elapsed() < Duration::from_secs(10), "swap {i}: version {want} never served");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if i == 10 {
            rss_at_10 = rss_bytes();
        }
    }
    let rss_at_200 = rss_bytes();
    eprintln!("RSS after 10 swaps: {} KiB; after 200: {} KiB", rss_at_10 / 1024, rss_at_200 / 1024);
    assert!(
        rss_at_200 as f64 <= rss_at_10 as f64 * 1.10,
        "RSS grew from {rss_at_10} to {rss_at_200} bytes over 190 swaps"
    );
    h.shutdown().await;
}
