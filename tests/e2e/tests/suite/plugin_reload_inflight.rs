//! attacks.md P13: a plugin swap while 1 000 requests are in flight. Every request that started on
//! the old version finishes on it — its `on_response` runs in the old build after the swap has
//! happened — and requests that start after the swap get the new one. (Its own test binary: it
//! holds a few thousand sockets.)

use std::time::Duration;

use e2e::plugins::version_plugin;
use e2e::reload::{gateway_with, served, within, workdir, write_atomic};
use e2e::*;
use imgate_client::{Client, Session};

const IN_FLIGHT: usize = 1_000;

/// A signed `GET /v1/me/profile` that `version` answers in `on_response`, after OpenIM.
async fn via_response(c: &Client, s: &Session) -> Result<u64, String> {
    let extra = [("x-version-on-response", "1".to_string())];
    let res = c.call_with_headers(s, "GET", "/v1/me/profile", &extra, None).await.map_err(|e| e.to_string())?;
    let (status, body) = into_json(res).await;
    match (status, body["plugin_version"].as_u64(), body["upstream_status"].as_u64()) {
        (200, Some(v), Some(200)) => Ok(v),
        _ => Err(format!("{status} {body}")),
    }
}

/// Each in-flight request holds four sockets in this process (client, gateway, gateway to
/// OpenIM, emulator): make sure the soft limit allows them.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid rlimit for getrlimit/setrlimit to read and write.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < 8192 {
            lim.rlim_cur = lim.rlim_max.min(8192);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_during_1000_in_flight_requests_lets_each_finish_on_the_version_it_started_on() {
    raise_open_files_limit();
    let opts = Options {
        openim_timeout_ms: 120_000,
        request_timeout_ms: 180_000,
        rate_limits_toml: "[rate_limits.default]\nper_second = 100000\nburst = 100000\n\
                           [rate_limits.send]\nper_second = 1000\nburst = 1000\n"
            .into(),
        // All 1 000 wait in OpenIM's msg service at once: no per-service in-flight cap.
        openim_toml: "breaker = { max_in_flight = 0 }".into(),
        ..Options::default()
    };
    // Generous plugin queueing: the 1 000 `on_request` calls arrive at once on 2 cores.
    let work = workdir();
    let (h, alice, path) = gateway_with(&work, &version_plugin(1), "{}", "queue_timeout_ms = 60000", opts).await;
    assert_eq!(via_response(&h.client(), &alice).await, Ok(1), "warm-up (OpenIM token, connections)");

    // 1 000 requests held inside OpenIM: each has run v1's `on_request` and waits for its answer.
    h.emu.set_fault(openim_emu::Fault::Hold);
    let requests: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (c, s) = (h.client(), alice.clone());
            tokio::spawn(async move { via_response(&c, &s).await })
        })
        .collect();
    let all_held = within(Duration::from_secs(60), Duration::from_millis(10), async || h.emu.held() == IN_FLIGHT).await;
    assert!(all_held.is_some(), "only {} of {IN_FLIGHT} requests reached OpenIM", h.emu.held());

    // The swap: v2 serves new requests (answered in `on_request`, not held) while the 1 000 wait.
    write_atomic(&path, &std::fs::read(version_plugin(2)).unwrap());
    let swapped =
        within(Duration::from_secs(10), Duration::from_millis(5), async || served(&h, &alice).await == Ok(2)).await;
    assert!(swapped.is_some(), "the new version never served");
    assert_eq!(h.emu.held(), IN_FLIGHT, "the swap cut no held request short");

    // Released: every one of them is finished by v1's `on_response`.
    h.emu.release();
    let mut answers = Vec::with_capacity(IN_FLIGHT);
    for r in requests {
        answers.push(r.await.expect("task"));
    }
    let failed: Vec<_> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {IN_FLIGHT} failed, e.g. {:?}", failed.len(), failed.first());
    let on_new = answers.iter().filter(|a| **a == Ok(2)).count();
    assert_eq!(on_new, 0, "{on_new} in-flight requests were finished by the new version");
    assert_eq!(answers.iter().filter(|a| **a == Ok(1)).count(), IN_FLIGHT);

    // And a request that starts now runs entirely on v2.
    assert_eq!(via_response(&h.client(), &alice).await, Ok(2));
    h.shutdown().await;
    let _ = std::fs::remove_dir_all(&work);
}
