//! Memory across plugin swaps (its own test binary, so nothing else runs in the process): after
//! 200 swaps of a plugin file, the process's resident memory is within 10 % of what it was after
//! 10 — old versions are freed once no request holds them.

use std::time::Duration;

use e2e::plugins::version_plugin;
use e2e::reload::{gateway, served, within, workdir, write_atomic};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_after_200_swaps_is_within_10_percent_of_rss_after_10() {
    let versions = [std::fs::read(version_plugin(1)).unwrap(), std::fs::read(version_plugin(2)).unwrap()];
    let work = workdir();
    let (h, alice, path) = gateway(&work, &version_plugin(1), "{}", "").await;
    assert_eq!(served(&h, &alice).await, Ok(1));
    let mut rss_at_10 = 0;
    for i in 1..=200u64 {
        let want = if i % 2 == 1 { 2 } else { 1 };
        write_atomic(&path, &versions[(want - 1) as usize]);
        let switched =
            within(Duration::from_secs(10), Duration::from_millis(5), async || served(&h, &alice).await == Ok(want))
                .await;
        assert!(switched.is_some(), "swap {i}: version {want} never served");
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
    let _ = std::fs::remove_dir_all(&work);
}
