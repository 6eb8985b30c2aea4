//! Plugin hot reload through the real gateway: broken artifacts that never replace a working one,
//! quarantine with automatic rollback, the admin API's upload / activate / rollback, and the
//! precompiled cache across a restart. (Swaps under traffic: `plugin_reload_load.rs`; memory
//! across swaps: `plugin_reload_memory.rs`.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use e2e::plugins::{example, hostile_plugin, version_plugin};
use e2e::reload::{gateway, served, sha256_hex, with_custom_section, within, workdir, write_atomic};
use e2e::*;
use host::cli_plugin::{run, Gateway, PluginCmd};
use serde_json::{json, Value};

async fn status(h: &Harness) -> Value {
    let (code, body) = h.get("/v1/admin/plugins/p", Some(&h.admin_jwt("imgate:admin"))).await;
    assert_eq!(code, 200, "{body}");
    body
}

#[tokio::test]
async fn a_version_shows_the_config_schema_it_embeds() {
    // content-filter declares its schema with the SDK's `config_schema!`; `version` declares none.
    let work = workdir();
    let config = r#"{ words = ["darn"], action = "mask" }"#;
    let (h, _alice, _) = gateway(&work, &example("content-filter"), config, "").await;
    let s = status(&h).await;
    let schema = &s["active"]["config_schema"];
    assert_eq!(schema["required"], json!(["words", "action"]), "{s}");
    assert_eq!(schema["properties"]["action"]["enum"], json!(["block", "mask"]), "{s}");
    assert_eq!(schema["additionalProperties"], json!(false), "{s}");
    // The same manifest in the list of stored versions, and after a restart from the store.
    assert_eq!(s["versions"][0]["config_schema"], *schema, "{s}");
    // And in `imgate plugin status`, on one line.
    let gateway_arg = Gateway { url: h.gateway_url.clone(), token: h.admin_jwt("imgate:admin") };
    let out = run(PluginCmd::Status { name: "p".into(), gateway: gateway_arg }).await.expect("status");
    let line = out.lines().find(|l| l.starts_with("config schema ")).unwrap_or_default();
    assert!(line.contains(r#""required":["words","action"]"#), "{out}");
    h.shutdown().await;
    let (h, _alice, _) = gateway(&work, &example("content-filter"), config, "").await;
    assert_eq!(status(&h).await["active"]["config_schema"], *schema);
    // A plugin without one shows none.
    let (h2, _, _) = gateway(&workdir(), &version_plugin(1), "{}", "").await;
    assert!(status(&h2).await["active"].get("config_schema").is_none());
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
        (
            "unreadable config schema",
            with_custom_section(&std::fs::read(&v1).unwrap(), "imgate:config-schema", b"{not json"),
            "config schema (`imgate:config-schema`) is not JSON",
        ),
    ];
    for (i, (what, bytes, needle)) in broken.iter().enumerate() {
        write_atomic(&path, bytes);
        let hash = sha256_hex(bytes);
        let mut last = Value::Null;
        let seen = within(Duration::from_secs(10), Duration::from_millis(5), async || {
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
    assert_eq!(refusals, broken.len(), "each refusal is audited");
}

#[tokio::test]
async fn a_version_that_keeps_trapping_is_quarantined_and_rolled_back() {
    quarantined_and_rolled_back("trap", "trap").await;
}

/// A version whose every call ends in `exit()` never answers: as broken as one that traps.
#[tokio::test]
async fn a_version_that_always_exits_is_quarantined_and_rolled_back() {
    quarantined_and_rolled_back("exiter", "exit").await;
}

/// A version whose every answer is over `max_output_bytes` never gives a usable answer.
#[tokio::test]
async fn a_version_that_always_answers_too_much_is_quarantined_and_rolled_back() {
    quarantined_and_rolled_back("hugeout", "invalid_output").await;
}

/// Version 1 serves; the file is replaced by hostile plugin `bad`, whose every call fails with
/// `kind`; after the threshold the bad version is quarantined and version 1 serves again.
async fn quarantined_and_rolled_back(bad: &str, kind: &str) {
    let v1 = version_plugin(1);
    let work = workdir();
    let extra = "quarantine_failures = 3\nquarantine_window_ms = 60000\nquarantine_backoff_ms = 60000";
    let (h, alice, path) = gateway(&work, &v1, "{}", extra).await;
    let trap = std::fs::read(hostile_plugin(bad)).unwrap();
    write_atomic(&path, &trap);
    let activated =
        within(Duration::from_secs(10), Duration::from_millis(5), async || served(&h, &alice).await.is_err()).await;
    assert!(activated.is_some(), "the {bad} version was activated (its init is fine)");
    // Every failing request follows the failure policy (closed: 503) until the fourth failure
    // quarantines the version; then the last good version serves again.
    let failures = AtomicUsize::new(0);
    let back = within(Duration::from_secs(10), Duration::from_millis(5), async || match served(&h, &alice).await {
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
    // What put it there, by kind: the four failures of the window, all of this plugin's kind.
    assert_eq!(s["quarantined"][0]["kinds"], json!({ kind: 4 }), "{s}");
    assert!(s["failures"][kind].as_u64().is_some_and(|n| n >= 4), "{s}");
    let metric = format!("imgate_plugin_failures_total{{plugin=\"p\",kind=\"{kind}\",policy=\"closed\"}}");
    assert!(h.metric(&metric).await.is_some_and(|n| n >= 4.0), "{metric}");
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&v1).unwrap(), "the file holds the active version again");
    // The quarantined version may not come back from the file during its backoff.
    write_atomic(&path, &trap);
    let refused = within(Duration::from_secs(10), Duration::from_millis(5), async || {
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

#[tokio::test]
async fn check_config_loads_every_plugin_and_writes_nothing() {
    // The harness's own config, with the plugin store moved to a folder that does not exist yet.
    let work = workdir();
    let (h, _alice, path) = gateway(&work, &version_plugin(1), "{}", "").await;
    let fresh_store = work.join("check-store");
    let text = std::fs::read_to_string(h.dir.join("imgate.toml")).unwrap();
    let text = text.replace(&work.join("store").display().to_string(), &fresh_store.display().to_string());
    assert!(text.contains("check-store"), "{text}");
    let check = |text: &str| {
        let config = host::Config::parse(text).unwrap();
        let options = host::state::BuildOptions { check_only: true, ..Default::default() };
        host::state::build_with(config, &h.dir, options).map(|_| ()).map_err(|e| e.to_string())
    };
    assert_eq!(check(&text), Ok(()));
    assert!(!fresh_store.exists(), "check-config wrote the plugin store");
    // A broken plugin is still named, with why.
    let broken = work.join("plugins/broken.wasm");
    std::fs::write(&broken, b"not a component").unwrap();
    let err = check(&text.replace(&path.display().to_string(), &broken.display().to_string())).unwrap_err();
    assert!(err.contains("plugin `p`") && err.contains("broken.wasm"), "{err}");
    assert!(!fresh_store.exists());
}
