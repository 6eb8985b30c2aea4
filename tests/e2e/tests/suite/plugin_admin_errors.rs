//! What `/v1/admin/plugins` answers when a change is refused or fails, through the real gateway:
//! a refused component is the client's fault (4xx, a stable `code` and `reason`, a message that
//! says why in stable words), a store that cannot be written is the server's (500 `internal`);
//! neither answer names a server path, file name or I/O error — that detail goes to the audit log.

use std::path::Path;

use e2e::plugins::{example, hostile_plugin, version_plugin};
use e2e::reload::{gateway, served, sha256_hex, workdir};
use e2e::*;
use serde_json::{json, Value};

/// `POST /v1/admin/plugins/p/versions{query}` with `bytes`; the status and the answer.
async fn upload(h: &Harness, bytes: Vec<u8>, query: &str) -> (u16, Value) {
    let req = h
        .http
        .post(h.url(&format!("/v1/admin/plugins/p/versions{query}")))
        .bearer_auth(h.admin_jwt("plugins:write"))
        .header("content-type", "application/wasm")
        .body(bytes);
    into_json(req.send().await.unwrap()).await
}

/// Asserts that `answer` names none of the server's folders or files.
fn assert_no_server_path(answer: &Value, h: &Harness, work: &Path, what: &str) {
    let text = answer.to_string();
    let forbidden = [
        h.dir.display().to_string(),
        work.display().to_string(),
        std::env::temp_dir().display().to_string(),
        "/tmp".to_owned(),
        "p.wasm".to_owned(),
        "plugins/".to_owned(),
        "os error".to_owned(),
    ];
    for f in forbidden {
        assert!(!text.contains(&f), "{what}: the answer names `{f}`: {text}");
    }
}

/// The manager's audit records of plugin `p` with outcome `outcome`.
async fn plugin_records(h: &Harness, outcome: &str) -> Vec<Value> {
    let audit = std::fs::read_to_string(h.audit_file().await).unwrap();
    audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["kind"] == "plugin" && r["outcome"] == outcome && r["detail"]["plugin"] == "p")
        .collect()
}

#[tokio::test]
async fn a_refused_upload_says_why_in_stable_words_and_names_no_server_path() {
    let work = workdir();
    // `in_init` makes the trap plugin trap in `init`; `version` ignores its config.
    let (h, alice, _path) = gateway(&work, &version_plugin(1), "{ in_init = true }", "watch = false").await;
    let broken: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        ("not wasm", b"definitely not a component".to_vec(), "not_a_component", "not a WebAssembly component"),
        (
            "a capability not granted",
            std::fs::read(hostile_plugin("kvuser")).unwrap(),
            "imports_not_allowed",
            "capability `kv` is not granted",
        ),
        ("wrong world", wat::parse_str("(component)").unwrap(), "does_not_link", "imgate:plugin@0.1.0"),
        (
            "init refuses the config",
            std::fs::read(example("content-filter")).unwrap(),
            "init_refused",
            "init refused the configuration",
        ),
        ("traps in init", std::fs::read(hostile_plugin("trap")).unwrap(), "init_failed", "init failed"),
    ];
    for (what, bytes, reason, words) in &broken {
        for query in ["", "?activate=true"] {
            let (code, body) = upload(&h, bytes.clone(), query).await;
            assert_eq!((code, body["code"].as_str()), (400, Some("bad_request")), "{what}{query}: {body}");
            assert_eq!(body["reason"], *reason, "{what}{query}: a stable reason: {body}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains(words), "{what}{query}: says why: {body}");
            assert_no_server_path(&body, &h, &work, &format!("{what}{query}"));
        }
        // The status the admin API shows carries the same safe words, the audit log the rest.
        let (code, status) = h.get("/v1/admin/plugins/p", Some(&h.admin_jwt("imgate:admin"))).await;
        assert_eq!(code, 200, "{status}");
        assert_eq!(status["last_error"]["hash"], sha256_hex(bytes), "{what}: {status}");
        assert_eq!(status["last_error"]["reason"], *reason, "{what}: {status}");
        assert!(status["last_error"]["error"].as_str().unwrap_or_default().contains(words), "{what}: {status}");
        assert_eq!(served(&h, &alice).await, Ok(1), "{what}: the working version still serves");
    }
    let refusals = plugin_records(&h, "refused").await;
    assert_eq!(refusals.len(), broken.len() * 2, "each refusal is audited: {refusals:?}");
}

#[tokio::test]
async fn a_store_that_cannot_be_written_is_an_internal_error_with_the_detail_in_the_audit_log() {
    let work = workdir();
    let (h, alice, path) = gateway(&work, &version_plugin(1), "{}", "watch = false").await;
    let v2 = std::fs::read(version_plugin(2)).unwrap();

    // The artifacts folder replaced by a regular file (tests run as root: a read-only folder
    // would still be written).
    let artifacts = work.join("store/artifacts");
    std::fs::remove_dir_all(&artifacts).unwrap();
    std::fs::write(&artifacts, b"not a folder").unwrap();
    for query in ["", "?activate=true"] {
        let (code, body) = upload(&h, v2.clone(), query).await;
        assert_eq!((code, body["code"].as_str()), (500, Some("internal")), "{query}: {body}");
        assert_no_server_path(&body, &h, &work, query);
        assert_eq!(served(&h, &alice).await, Ok(1), "{query}: the working version still serves");
    }
    let failed = plugin_records(&h, "failed").await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    for r in &failed {
        let error = r["detail"]["error"].as_str().unwrap_or_default();
        assert!(error.contains(&artifacts.display().to_string()), "the audit record names the folder: {r}");
        assert_eq!(r["detail"]["hash"], sha256_hex(&v2), "{r}");
    }
    std::fs::remove_file(&artifacts).unwrap();
    std::fs::create_dir(&artifacts).unwrap();

    // The watched plugin file cannot be replaced (a folder in its place): stored, not activated.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir_all(path.join("in-the-way")).unwrap();
    let (code, body) = upload(&h, v2.clone(), "?activate=true").await;
    assert_eq!((code, body["code"].as_str()), (500, Some("internal")), "{body}");
    assert_no_server_path(&body, &h, &work, "plugin file");
    assert_eq!(served(&h, &alice).await, Ok(1), "the working version still serves");
    let failed = plugin_records(&h, "failed").await;
    let error = failed.last().and_then(|r| r["detail"]["error"].as_str()).unwrap_or_default();
    assert!(error.contains(&path.display().to_string()), "the audit record names the file: {failed:?}");
}

#[tokio::test]
async fn unknown_versions_and_nothing_to_roll_back_are_answered_with_stable_codes() {
    let work = workdir();
    let (h, alice, _path) = gateway(&work, &version_plugin(1), "{}", "watch = false").await;
    let write = h.admin_jwt("plugins:write");
    // A well-formed hash the store does not hold.
    let missing = format!("{:0>64}", "1");
    let (code, body) = h.post("/v1/admin/plugins/p/activate", Some(&write), &json!({ "hash": missing })).await;
    assert_eq!((code, body["code"].as_str()), (404, Some("not_found")), "{body}");
    assert_eq!(body["reason"], "unknown_version", "{body}");
    assert_no_server_path(&body, &h, &work, "unknown hash");
    // Only one version was ever stored or served.
    let (code, body) = h.post("/v1/admin/plugins/p/rollback", Some(&write), &json!({})).await;
    assert_eq!((code, body["code"].as_str()), (409, Some("conflict")), "{body}");
    assert_eq!(body["reason"], "nothing_to_roll_back", "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("no earlier good version"), "{body}");
    assert_eq!(served(&h, &alice).await, Ok(1));
}
