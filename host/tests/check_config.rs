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

/// Issue 17: a gateway no user could authenticate with (no `[[gateway.keys]]`) is refused with
/// what to do about it, unless it says it is admin-only (`[auth] users = false`).
#[test]
fn a_config_without_a_gateway_key_is_refused_unless_users_are_off() {
    let dir = std::env::temp_dir().join(format!("imgate-cc-nokey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let base = "[openim]\napi_url = \"http://127.0.0.1:10002\"\nws_url = \"ws://127.0.0.1:10001\"\nsecret = \"s\"\n";
    let no_key = dir.join("no-key.toml");
    std::fs::write(&no_key, base).expect("write");
    let admin_only = dir.join("admin-only.toml");
    std::fs::write(&admin_only, format!("[auth]\nusers = false\n{base}")).expect("write");
    let refused = check(no_key.to_str().expect("utf8"));
    let accepted = check(admin_only.to_str().expect("utf8"));
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, _, stderr) = refused;
    assert!(!ok, "a config without a gateway key must fail");
    assert!(stderr.contains("gateway.keys") && stderr.contains("users = false"), "{stderr}");
    let (ok, stdout, stderr) = accepted;
    assert!(ok, "an admin-only gateway is a valid config\nstdout: {stdout}\nstderr: {stderr}");
}
