//! `imgate audit verify FILE...` as operators run it: a clean chain passes with its record count
//! (and instance id); an edited or removed record makes it exit 1 and name the file and line;
//! several files pass only if no instance id appears in two of them.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::path::{Path, PathBuf};
use std::process::Command;

use host::audit::{AuditEvent, AuditLog};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imgate-audit-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn temp_file(name: &str) -> PathBuf {
    temp_dir(name).join("audit.jsonl")
}

/// Writes a valid chain of `n` api_call records with AuditLog.
async fn write_chain(path: &Path, n: usize) {
    write_chain_as(path, "gw-cli", n).await;
}

/// Writes a valid chain of `n` api_call records with AuditLog, as instance `instance`.
async fn write_chain_as(path: &Path, instance: &str, n: usize) {
    let log = AuditLog::open(path, instance).await.expect("open audit file");
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
    log.close().await;
}

fn verify(path: &Path) -> (bool, String, String) {
    let (code, stdout, stderr) = verify_args(&[path.as_os_str()]);
    (code == Some(0), stdout, stderr)
}

/// Runs `imgate audit verify ARGS...`: exit code, stdout, stderr.
fn verify_args(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_imgate")).args(["audit", "verify"]).args(args).output().expect("imgate runs");
    (
        out.status.code(),
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

#[tokio::test]
async fn single_file_output_names_its_seqs_and_instance() {
    let path = temp_file("single");
    write_chain_as(&path, "gw-one", 3).await;
    let (ok, stdout, stderr) = verify(&path);
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout, format!("{}: ok (3 records) seq 1..3, instance gw-one\n", path.display()));
}

#[tokio::test]
async fn several_files_two_instances_then_a_tampered_line_then_one_instance_twice() {
    let dir = temp_dir("multi");
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    write_chain_as(&a, "gw-a", 3).await;
    write_chain_as(&b, "gw-b", 2).await;

    // Two gateways, two files, two instance ids: each file passes and says whose it is.
    let (code, stdout, stderr) = verify_args(&[a.as_os_str(), b.as_os_str()]);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("{}: ok (3 records) seq 1..3, instance gw-a\n", a.display())), "{stdout}");
    assert!(stdout.contains(&format!("{}: ok (2 records) seq 1..2, instance gw-b\n", b.display())), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");

    // A tampered line in one file: that file and line are named, the other file still passes.
    let original_b = std::fs::read_to_string(&b).expect("read");
    rewrite_lines(&b, |lines| lines[1] = lines[1].replace("user1", "user9"));
    let (code, stdout, stderr) = verify_args(&[a.as_os_str(), b.as_os_str()]);
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("{}: ok (3 records)", a.display())), "{stdout}");
    assert!(stderr.contains(&format!("{}: line 2: record seq 2 was modified", b.display())), "{stderr}");
    assert!(stderr.contains("[before it: seq 1..1, instance gw-b]"), "{stderr}");
    std::fs::write(&b, original_b).expect("restore");

    // A third file written under gw-a too: two chains from one instance id.
    let c = dir.join("c.jsonl");
    write_chain_as(&c, "gw-a", 1).await;
    let (code, stdout, stderr) = verify_args(&[a.as_os_str(), b.as_os_str(), c.as_os_str()]);
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("{}: ok (1 record) seq 1..1, instance gw-a", c.display())), "each chain is valid");
    assert!(
        stderr.contains(&format!("{}, {}: all hold records of instance gw-a", a.display(), c.display())),
        "{stderr}"
    );
    assert!(!stderr.contains(&b.display().to_string()), "b is not involved: {stderr}");

    // A copy of a file: same instance and same first record; the same file named twice.
    let copy = dir.join("copy.jsonl");
    std::fs::copy(&a, &copy).expect("copy");
    let (code, _, stderr) = verify_args(&[a.as_os_str(), copy.as_os_str()]);
    assert_eq!(code, Some(1), "{stderr}");
    let pair = format!("{}, {}", a.display(), copy.display());
    assert!(stderr.contains(&format!("{pair}: all hold records of instance gw-a")), "{stderr}");
    assert!(stderr.contains(&format!("{pair}: all start with the same record")), "{stderr}");
    let (code, _, stderr) = verify_args(&[a.as_os_str(), a.as_os_str()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr, format!("{0}, {0}: one file named 2 times\n", a.display()), "and nothing else");
}

#[tokio::test]
async fn head_anchor_takes_exactly_one_file() {
    let dir = temp_dir("headone");
    let (a, b) = (dir.join("a.jsonl"), dir.join("b.jsonl"));
    write_chain_as(&a, "gw-a", 2).await;
    write_chain_as(&b, "gw-b", 2).await;
    let head = format!("1:{}", "ab".repeat(32));
    let (code, stdout, stderr) = verify_args(&[a.as_os_str(), b.as_os_str(), "--head".as_ref(), head.as_ref()]);
    assert_eq!(code, Some(2), "a usage error, as clap reports them; stdout: {stdout}");
    assert!(stderr.contains("exactly one FILE") && stderr.contains("imgate audit verify"), "{stderr}");
    assert!(stdout.is_empty(), "nothing verified: {stdout}");
}
