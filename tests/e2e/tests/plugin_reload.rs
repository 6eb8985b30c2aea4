//! Plugin hot reload through the real gateway: versions swapped under steady traffic, broken
//! artifacts that never replace a working one, quarantine with automatic rollback, the admin
//! API's upload / activate / rollback, and the precompiled cache across a restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::plugins::{example, hostile_plugin};
use e2e::*;
use imgate_client::Session;
use serde_json::{json, Value};

/// TEMPORARY stand-in for e2e::plugins::version_plugin.
fn version_plugin(n: u32) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap();
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../hostile-plugins");
    let target = ws.join(format!("target/version-{n}"));
    let out = target.join("wasm32-wasip2/release/version.wasm");
    let st = std::process::Command::new("cargo")
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "-p", "version", "--target-dir"])
        .arg(&target)
        .current_dir(&ws)
        .env("PLUGIN_VERSION", n.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    out
}

/// A folder for the watched plugin file and the plugin store.
fn workdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imgate-reload-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    dir
}

/// Replaces `path` the way deploy tools do: a temporary file in the same folder, then a rename.
fn write_atomic(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A gateway serving plugin `p` (the file `work/plugins/p.wasm`, initially `initial`) on
/// `GET /v1/me/profile`, with `chain_config` as its route config.
async fn gateway(work: &Path, initial: &Path, chain_config: &str, extra: &str) -> (Harness, Session, PathBuf) {
    let path = work.join("plugins/p.wasm");
    std::fs::copy(initial, &path).unwrap();
    let toml = format!(
        "[plugins]\nstore_dir = \"{store}\"\n{extra}\n[[plugin]]\nname = \"p\"\npath = \"{path}\"\ncapabilities = [\"config\"]\n\
         [[route_plugins]]\nroute = \"get_profile\"\nplugins = [{{ plugin = \"p\", config = {chain_config} }}]\n",
        store = work.join("store").display(),
        path = path.display(),
    );
    let h = Harness::start_with(Options { extra_toml: toml, ..Options::default() }).await;
    let (_, alice) = h.session("alice").await;
    (h, alice, path)
}

/// One signed `GET /v1/me/profile`: the plugin version that answered, or the failure.
async fn served(h: &Harness, s: &Session) -> Result<u64, String> {
    let res = h.client().call(s, "GET", "/v1/me/profile", None).await.map_err(|e| e.to_string())?;
    let (status, body) = into_json(res).await;
    match (status, body["plugin_version"].as_u64()) {
        (200, Some(v)) => Ok(v),
        _ => Err(format!("{status} {body}")),
    }
}

async fn status(h: &Harness) -> Value {
    let (code, body) = h.get("/v1/admin/plugins/p", Some(&h.admin_jwt("imgate:admin"))).await;
    assert_eq!(code, 200, "{body}");
    body
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Polls `f` every 5 ms until it is true, for at most `limit`; the time it took.
async fn within(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if f().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

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
        let took = within(Duration::from_secs(10), async || served(&h, &alice).await == Ok(want))
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
    assert!(worst <= Duration::from_millis(500), "a switch took {worst:?}");
    assert_eq!(h.metric("imgate_plugin_reloads_total{plugin=\"p\",outcome=\"activated\"}").await, Some(50.0));
}

#[tokio::test]
async fn a_broken_artifact_never_replaces_a_working_one() {
    let v1 = version_plugin(1);
    let work = workdir();
    // `in_init` makes the trap plugin trap in `init`; `version` ignores its config.
    let (h, alice, path) = gateway(&work, &v1, "{ in_init = true }", "").await;
    let empty_component = wat::parse_str("(component)").unwrap();
    let broken: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not wasm", b"definitely not a component".to_vec(), "WebAssembly"),
        ("wrong world", empty_component, "imgate:plugin@0.1.0"),
        (
            "init refuses the config",
            std::fs::read(example("content-filter")).unwrap(),
            "init refused the configuration",
        ),
        ("traps in init", std::fs::read(hostile_plugin("trap")).unwrap(), "init failed"),
    ];
    for (i, (what, bytes, needle)) in broken.iter().enumerate() {
        write_atomic(&path, bytes);
        let hash = sha256_hex(bytes);
        let mut last = Value::Null;
        let seen = within(Duration::from_secs(10), async || {
            last = status(&h).await;
            last["last_error"]["hash"] == hash.as_str()
        })
        .await;
        assert!(seen.is_some(), "{what}: the refusal is reported: {last}");
        let error = last["last_error"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{what}: {error}");
        assert_eq!(served(&h, &alice).await, Ok(1), "{what}: the working version still serves");
        let refused = h.metric("imgate_plugin_reloads_total{plugin=\"p\",outcome=\"refused\"}").await;
        assert_eq!(refused, Some((i + 1) as f64), "{what}");
    }
    assert_eq!(status(&h).await["active"]["hash"], sha256_hex(&std::fs::read(&v1).unwrap()));
    let audit = std::fs::read_to_string(h.audit_file().await).unwrap();
    let refusals = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "plugin" && r["outcome"] == "refused")
        .count();
    assert_eq!(refusals, 4, "each refusal is audited");
}

#[tokio::test]
async fn a_version_that_keeps_trapping_is_quarantined_and_rolled_back() {
    let v1 = version_plugin(1);
    let work = workdir();
    let extra = "quarantine_failures = 3\nquarantine_window_ms = 60000\nquarantine_backoff_ms = 60000";
    let (h, alice, path) = gateway(&work, &v1, "{}", extra).await;
    let trap = std::fs::read(hostile_plugin("trap")).unwrap();
    write_atomic(&path, &trap);
    let activated = within(Duration::from_secs(10), async || served(&h, &alice).await.is_err()).await;
    assert!(activated.is_some(), "the trapping version was activated (its init is fine)");
    // Every failing request follows the failure policy (closed: 503) until the fourth failure
    // quarantines the version; then the last good version serves again.
    let failures = AtomicUsize::new(0);
    let back = within(Duration::from_secs(10), async || match served(&h, &alice).await {
        Ok(1) => true,
        Ok(_) => false,
        Err(e) => {
            assert!(e.starts_with("503"), "{e}");
            failures.fetch_add(1, Ordering::Relaxed);
            false
        }
    })
    .await;
    assert!(back.is_some(), "rolled back to version 1");
    // The threshold is 3: the fourth failure quarantined it (later ones ran while the rollback
    // was being applied, each answered by the failure policy).
    assert!(failures.load(Ordering::Relaxed) >= 3, "{failures:?}");
    assert_eq!(h.metric("imgate_plugin_reloads_total{plugin=\"p\",outcome=\"quarantined\"}").await, Some(1.0));
    let s = status(&h).await;
    assert_eq!(s["active"]["hash"], sha256_hex(&std::fs::read(&v1).unwrap()), "{s}");
    assert_eq!(s["quarantined"][0]["hash"], sha256_hex(&trap), "{s}");
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&v1).unwrap(), "the file holds the active version again");
    // The quarantined version may not come back from the file during its backoff.
    write_atomic(&path, &trap);
    let refused = within(Duration::from_secs(10), async || {
        status(&h).await["last_error"]["error"].as_str().is_some_and(|e| e.contains("quarantined"))
    })
    .await;
    assert!(refused.is_some(), "{}", status(&h).await);
    assert_eq!(served(&h, &alice).await, Ok(1));
    let audit = std::fs::read_to_string(h.audit_file().await).unwrap();
    assert!(audit.contains("\"quarantined\"") && audit.contains("\"source\":\"quarantine\""), "audited");
}

#[tokio::test]
async fn admin_api_uploads_activates_and_rolls_back() {
    let (v1, v2) = (version_plugin(1), version_plugin(2));
    let v2_bytes = std::fs::read(&v2).unwrap();
    let work = workdir();
    let (h, alice, path) = gateway(&work, &v1, "{}", "watch = false").await;
    let write = h.admin_jwt("plugins:write");
    let upload = |bytes: Vec<u8>, query: &'static str| {
        let req = h
            .http
            .post(h.url(&format!("/v1/admin/plugins/p/versions{query}")))
            .bearer_auth(&write)
            .header("content-type", "application/wasm")
            .body(bytes);
        async move { into_json(req.send().await.unwrap()).await }
    };
    // Upload only: stored and checked, not serving.
    let (code, body) = upload(v2_bytes.clone(), "?version=2.0.0").await;
    assert_eq!(code, 201, "{body}");
    let hash = body["manifest"]["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash, sha256_hex(&v2_bytes));
    assert_eq!(body["manifest"]["version"], "2.0.0");
    assert_eq!(body["manifest"]["world"], "imgate:plugin@0.1.0");
    assert_eq!(served(&h, &alice).await, Ok(1));
    // A broken upload is refused with the reason.
    let (code, body) = upload(b"garbage".to_vec(), "").await;
    assert_eq!((code, body["code"].as_str()), (400, Some("bad_request")), "{body}");
    // Activate by hash; the watched file now holds it (a restart serves it).
    let (code, body) = h.post("/v1/admin/plugins/p/activate", Some(&write), &json!({ "hash": hash })).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(served(&h, &alice).await, Ok(2));
    assert_eq!(std::fs::read(&path).unwrap(), v2_bytes);
    // Roll back.
    let (code, body) = h.post("/v1/admin/plugins/p/rollback", Some(&write), &json!({})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(served(&h, &alice).await, Ok(1));
    let s = status(&h).await;
    assert_eq!(s["versions"].as_array().map(Vec::len), Some(2), "{s}");
    assert_eq!(s["history"].as_array().map(Vec::len), Some(3), "v1, v2, v1: {s}");
    // Reading needs imgate:admin; changing needs plugins:write.
    let (code, _) = h.post("/v1/admin/plugins/p/rollback", Some(&h.admin_jwt("imgate:admin")), &json!({})).await;
    assert_eq!(code, 403);
    let audit = std::fs::read_to_string(h.audit_file().await).unwrap();
    for action in ["plugin_upload", "plugin_activate", "plugin_rollback"] {
        assert!(audit.contains(&format!("\"outcome\":\"{action}\"")), "{action} is audited");
    }
}

#[tokio::test]
async fn a_restart_with_unchanged_plugins_uses_the_precompiled_cache() {
    let v1 = version_plugin(1);
    let work = workdir();
    let (h, alice, _) = gateway(&work, &v1, "{}", "").await;
    assert_eq!(served(&h, &alice).await, Ok(1));
    let miss = "imgate_plugin_loads_total{plugin=\"p\",cache=\"miss\"}";
    let hit = "imgate_plugin_loads_total{plugin=\"p\",cache=\"hit\"}";
    assert_eq!((h.metric(miss).await, h.metric(hit).await), (Some(1.0), None), "compiled once");
    h.shutdown().await;
    let (h, alice, _) = gateway(&work, &v1, "{}", "").await;
    assert_eq!(served(&h, &alice).await, Ok(1));
    assert_eq!((h.metric(miss).await, h.metric(hit).await), (None, Some(1.0)), "not compiled again");
}
