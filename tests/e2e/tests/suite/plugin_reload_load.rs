//! The hot-reload load test (issue 6): steady traffic through a plugin route while the plugin file
//! is replaced 50 times, alternating two builds whose answers differ — no failed request, every
//! answer one build's, every swap served. How long a swap takes is a benchmark's business
//! (`tests/e2e/benches/reload.rs`, `make bench`), not a timed assertion here: this test prints the
//! times it saw, and only asks that each swap serve within a generous deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::plugins::version_plugin;
use e2e::reload::{gateway, served, within, workdir, write_atomic};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_swaps_under_steady_traffic_lose_no_request() {
    let (v1, v2) = (version_plugin(1), version_plugin(2));
    let (v1_bytes, v2_bytes) = (std::fs::read(&v1).unwrap(), std::fs::read(&v2).unwrap());
    let work = workdir();
    let (h, alice, path) = gateway(&work, &v1, "{}", "").await;
    let h = Arc::new(h);
    assert_eq!(served(&h, &alice).await, Ok(1));
    // Steady traffic: three clients in a loop, every answer kept.
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (h, s, stop, answers) = (h.clone(), alice.clone(), stop.clone(), answers.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let a = served(&h, &s).await;
                answers.lock().unwrap().push(a);
            }
        }));
    }
    let mut switch_times = Vec::new();
    for i in 0..50 {
        let (bytes, want) = if i % 2 == 0 { (&v2_bytes, 2) } else { (&v1_bytes, 1) };
        write_atomic(&path, bytes);
        let took =
            within(Duration::from_secs(10), Duration::from_millis(5), async || served(&h, &alice).await == Ok(want))
                .await
                .unwrap_or_else(|| panic!("swap {i}: version {want} never served"));
        switch_times.push(took);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let failed: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {} requests failed, e.g. {:?}", failed.len(), answers.len(), failed.first());
    assert!(answers.iter().all(|a| matches!(a, Ok(1) | Ok(2))), "every answer is one version's");
    assert!(answers.len() > 100, "traffic kept flowing: {} requests", answers.len());
    switch_times.sort();
    let worst = *switch_times.last().unwrap();
    eprintln!(
        "50 swaps, {} requests; write→serving p50 {:?}, max {:?}",
        answers.len(),
        switch_times[switch_times.len() / 2],
        worst
    );
    assert_eq!(h.metric("imgate_plugin_reloads_total{plugin=\"p\",outcome=\"activated\"}").await, Some(50.0));
}
