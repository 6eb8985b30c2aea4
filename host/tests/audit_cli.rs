//! `imgate audit verify FILE` as operators run it: a clean chain passes with its record count; an
//! edited or removed record makes it exit 1 and name the line.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::path::{Path, PathBuf};
use std::process::Command;

use host::audit::{AuditEvent, AuditLog};

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imgate-audit-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("audit.jsonl")
}

/// Writes a valid chain of `n` api_call records with AuditLog.
async fn write_chain(path: &Path, n: usize) {
    let log = AuditLog::open(path).await.expect("open audit file");
    for i in 0..n {
        log.record(AuditEvent {
            kind: "api_call".into(),
            request_id: Some(format!("req-{i}")),
            user: Some(format!("user{i}")),
            route: Some("/v1/me".into()),
            method: Some("GET".into()),
            outcome: "ok".into(),
            status: Some(200),
            latency_ms: Some(2.5),
            ..AuditEvent::default()
        });
    }
    log.flush().await;
}

fn verify(path: &Path) -> (bool, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_imgate")).args(["audit", "verify"]).arg(path).output().expect("imgate runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rewrite_lines(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let mut lines: Vec<String> = std::fs::read_to_string(path).expect("read").lines().map(str::to_owned).collect();
    edit(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").expect("write");
}

#[tokio::test]
async fn valid_chain_passes_with_its_count() {
    let path = temp_file("valid");
    write_chain(&path, 4).await;
    let (ok, stdout, stderr) = verify(&path);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("ok (4 records)"), "{stdout}");
}

#[tokio::test]
async fn edited_outcome_is_named_by_line() {
    let path = temp_file("edited");
    write_chain(&path, 4).await;
    rewrite_lines(&path, |lines| {
        assert!(lines[2].contains(r#""outcome":"ok""#));
        lines[2] = lines[2].replace(r#""outcome":"ok""#, r#""outcome":"refused""#);
    });
    let (ok, stdout, stderr) = verify(&path);
    assert!(!ok, "must fail; stdout: {stdout}");
    assert!(stderr.contains("line 3:"), "{stderr}");
}

#[tokio::test]
async fn removed_middle_record_is_named_by_line() {
    let path = temp_file("removed");
    write_chain(&path, 4).await;
    rewrite_lines(&path, |lines| {
        lines.remove(1);
    });
    let (ok, stdout, stderr) = verify(&path);
    assert!(!ok, "must fail; stdout: {stdout}");
    assert!(stderr.contains("line 2:"), "{stderr}");
}
