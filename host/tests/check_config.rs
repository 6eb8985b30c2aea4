//! `imgate check-config` as operators run it: every problem of a bad file named at once.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::process::Command;

fn check(path: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_imgate"))
        .args(["check-config", path])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("imgate runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_config_passes() {
    let (ok, stdout, stderr) = check("tests/fixtures/valid.toml");
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("ok"));
}

#[test]
fn invalid_config_names_every_bad_key() {
    let (ok, _, stderr) = check("tests/fixtures/invalid.toml");
    assert!(!ok, "must fail");
    for needle in ["server.listen", "max_body_bytez", "openim.timeout_ms", "retries", "colour", "metrics"] {
        assert!(stderr.contains(needle), "`{needle}` not named in:\n{stderr}");
    }
}

#[test]
fn missing_files_named_by_the_config_are_reported() {
    let dir = std::env::temp_dir().join(format!("imgate-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        r#"
[openim]
api_url = "http://127.0.0.1:10002"
ws_url = "ws://127.0.0.1:10001"
secret_file = "nope.secret"
[[gateway.keys]]
id = "gw"
private_key_file = "nope.key"
[[admin.issuer]]
issuer = "i"
audience = "a"
algorithms = ["EdDSA"]
keys = [{ kid = "k", file = "nope.pem" }]
"#,
    )
    .expect("write");
    let (ok, _, stderr) = check(path.to_str().expect("utf8"));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok);
    for needle in ["nope.secret", "nope.key", "nope.pem"] {
        assert!(stderr.contains(needle), "`{needle}` not named in:\n{stderr}");
    }
}
