//! `imgate dev` as tools use it: start it, wait for env.json, drive it, stop it with SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

// The harness's plugin builder (the example and hostile plugins, built for wasm32-wasip2).
#[allow(dead_code)]
#[path = "../../tests/e2e/src/plugins.rs"]
mod plugins;

#[tokio::test]
async fn dev_writes_env_json_serves_and_stops_cleanly_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("imgate-dev-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (mut child, _stdout) = start_dev(&dir, &[]);
    let env_path = dir.join(".imgate/dev/env.json");
    let env: Value = serde_json::from_slice(&std::fs::read(&env_path).expect("env.json exists")).expect("json");
    for key in [
        "gateway_url",
        "metrics_url",
        "openim_api_url",
        "openim_ws_url",
        "gateway_public_key",
        "openim_admin_user_id",
        "openim_secret",
    ] {
        assert!(env[key].as_str().is_some_and(|s| !s.is_empty()), "env.json lacks {key}: {env}");
    }
    assert_eq!(env["admin"]["alg"], "EdDSA");
    let pem_path = env["admin"]["private_key_pem_path"].as_str().expect("pem path");
    assert!(std::path::Path::new(pem_path).is_absolute());

    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let gw = env["gateway_url"].as_str().expect("url");
    let key: Value =
        http.get(format!("{gw}/v1/auth/gateway-key")).send().await.expect("up").json().await.expect("json");
    assert_eq!(key["public_key"], env["gateway_public_key"]);

    let failures = outside_tools_refusing_the_admin_key(std::path::Path::new(pem_path));
    assert!(failures.is_empty(), "tools we did not write must read the dev admin key:\n{}", failures.join("\n"));

    let pem = std::fs::read_to_string(pem_path).expect("pem");
    let token = host::dev::mint_admin_jwt(&pem, "test", "imgate:admin", 60).expect("jwt");
    let health = http.get(format!("{gw}/v1/admin/health")).bearer_auth(token).send().await.expect("up");
    assert_eq!(health.status(), 200);
    let metrics =
        http.get(env["metrics_url"].as_str().expect("url")).send().await.expect("up").text().await.expect("text");
    assert!(metrics.contains("imgate_http_requests_total"), "{metrics}");

    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = child.0.wait().expect("exit status");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(!env_path.exists(), "env.json removed on exit");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `imgate dev --example-plugins` applies edits to its own config file while it runs, as `serve`
/// does: a `[[plugin]]` appended to `.imgate/dev/imgate.toml` is loaded and listed by the admin API.
#[tokio::test]
async fn dev_applies_plugin_edits_to_its_own_config_file() {
    let examples = plugins::examples();
    let echo = plugins::hostile_plugin("echo");
    let dir = std::env::temp_dir().join(format!("imgate-dev-config-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let (child, mut stdout) = start_dev(&dir, &["--example-plugins".as_ref(), examples.as_os_str()]);
    let mut said = String::new();
    stdout.read_line(&mut said).expect("read"); // env: ...
    said.clear();
    stdout.read_line(&mut said).expect("read");
    assert!(said.contains("edits to") && said.contains("apply while imgate dev runs"), "{said}");
    let env: Value =
        serde_json::from_slice(&std::fs::read(dir.join(".imgate/dev/env.json")).expect("env.json")).expect("json");
    let config_path = env["config_path"].as_str().expect("config_path");
    let pem = std::fs::read_to_string(env["admin"]["private_key_pem_path"].as_str().expect("pem")).expect("pem");
    let token = host::dev::mint_admin_jwt(&pem, "test", "imgate:admin", 60).expect("jwt");
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let list_url = format!("{}/v1/admin/plugins", env["gateway_url"].as_str().expect("url"));
    let names = || async {
        let list: Value = http.get(&list_url).bearer_auth(&token).send().await.expect("up").json().await.expect("json");
        list["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .map(|p| p["name"].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names().await, ["content-filter"]);

    let mut config = std::fs::read_to_string(config_path).expect("config");
    config.push_str(&format!("\n[[plugin]]\nname = \"echo\"\npath = \"{}\"\n", echo.display()));
    let tmp = format!("{config_path}.tmp");
    std::fs::write(&tmp, config).expect("write");
    std::fs::rename(&tmp, config_path).expect("rename");
    // Applied by the watcher after its debounce: poll, within a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = names().await;
        if now.iter().any(|n| n == "echo") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the edit never applied: {now:?}");
        // Admin routes are rate-limited (10/s, burst 50): poll below that.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `imgate dev` in `dir` and waits for its ready line, which it prints only after env.json
/// is in place; returns the child and the rest of its stdout.
fn start_dev(dir: &std::path::Path, args: &[&std::ffi::OsStr]) -> (KillOnDrop, BufReader<std::process::ChildStdout>) {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_imgate"))
            .arg("dev")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("imgate dev starts"),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().expect("piped"));
    let mut line = String::new();
    while !line.contains("is ready") {
        line.clear();
        assert!(stdout.read_line(&mut line).expect("read") > 0, "imgate dev exited before it was ready");
    }
    (child, stdout)
}

/// A failed assertion must not leave `imgate dev` running: the child is killed when the test unwinds.
/// (After the test's own `wait`, `kill` no longer signals anything.)
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `make deps` installs for these checks (the Makefile's `deps` target).
const TOOLS_HINT: &str = "(`make deps` installs openssl, node and python3's `cryptography`)";

const NODE_SIGN: &str = r#"
const crypto = require('crypto'), fs = require('fs');
const [privPath, pubPath] = process.argv.slice(1);
const key = crypto.createPrivateKey(fs.readFileSync(privPath));
if (key.asymmetricKeyType !== 'ed25519') throw new Error('not ed25519: ' + key.asymmetricKeyType);
const msg = Buffer.from('signed by node');
const sig = crypto.sign(null, msg, key);
if (!crypto.verify(null, msg, crypto.createPublicKey(fs.readFileSync(pubPath)), sig)) throw new Error('signature does not verify');
process.stdout.write(sig.toString('hex'));
"#;

const PYTHON_SIGN: &str = r#"
import sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
key = load_pem_private_key(open(sys.argv[1], 'rb').read(), password=None)
assert isinstance(key, Ed25519PrivateKey), type(key)
msg = b'signed by python'
sig = key.sign(msg)
load_pem_public_key(open(sys.argv[2], 'rb').read()).verify(sig, msg)
sys.stdout.write(sig.hex())
"#;

/// Runs a tool; its stdout, or why it failed.
fn run(tool: &str, args: &[&std::ffi::OsStr]) -> Result<String, String> {
    let out = Command::new(tool).args(args).output().map_err(|e| format!("{tool} does not run: {e} {TOOLS_HINT}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{tool} {:?}: {}{}", out.status, String::from_utf8_lossy(&out.stderr), TOOLS_HINT))
    }
}

/// OpenSSL, Node and Python's `cryptography` load the admin private key `imgate dev` wrote;
/// OpenSSL derives the public key written next to it, and Node and Python make signatures that
/// public key verifies (checked by the tool itself and again here). Returns every refusal.
fn outside_tools_refusing_the_admin_key(private: &std::path::Path) -> Vec<String> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let public = private.with_file_name("admin_ed25519.pub.pem");
    let public_pem = std::fs::read_to_string(&public).expect("public pem");
    let verifying = ed25519_dalek::VerifyingKey::from_public_key_pem(&public_pem).expect("public key");
    let (private, public) = (private.as_os_str(), public.as_os_str());
    let mut failures = Vec::new();

    if let Err(e) = run("openssl", &["pkey".as_ref(), "-in".as_ref(), private, "-noout".as_ref()]) {
        failures.push(format!("openssl pkey -noout: {e}"));
    }
    match run("openssl", &["pkey".as_ref(), "-in".as_ref(), private, "-pubout".as_ref()]) {
        Ok(derived) if derived.trim() == public_pem.trim() => {}
        Ok(derived) => failures.push(format!("openssl derives another public key:\n{derived}\nnot\n{public_pem}")),
        Err(e) => failures.push(format!("openssl pkey -pubout: {e}")),
    }

    let signers = [
        ("node", ["-e".as_ref(), NODE_SIGN.as_ref(), private, public], "signed by node"),
        ("python3", ["-c".as_ref(), PYTHON_SIGN.as_ref(), private, public], "signed by python"),
    ];
    for (tool, args, message) in signers {
        match run(tool, &args) {
            Ok(hex_sig) => {
                let verified = hex::decode(hex_sig.trim())
                    .ok()
                    .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
                    .is_some_and(|sig| verifying.verify_strict(message.as_bytes(), &sig).is_ok());
                if !verified {
                    failures.push(format!("{tool}'s signature {hex_sig:?} does not verify with {public_pem}"));
                }
            }
            Err(e) => failures.push(format!("{tool}: {e}")),
        }
    }
    failures
}
