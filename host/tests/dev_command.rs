//! `imgate dev` as tools use it: start it, wait for env.json, drive it, stop it with SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

#[tokio::test]
async fn dev_writes_env_json_serves_and_stops_cleanly_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("imgate-dev-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_imgate"))
        .arg("dev")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("imgate dev starts");
    // `imgate dev` prints its ready line only after env.json is in place.
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    while !line.contains("is ready") {
        line.clear();
        assert!(stdout.read_line(&mut line).expect("read") > 0, "imgate dev exited before it was ready");
    }
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

    let pem = std::fs::read_to_string(pem_path).expect("pem");
    let token = host::dev::mint_admin_jwt(&pem, "test", "imgate:admin", 60).expect("jwt");
    let health = http.get(format!("{gw}/v1/admin/health")).bearer_auth(token).send().await.expect("up");
    assert_eq!(health.status(), 200);
    let metrics =
        http.get(env["metrics_url"].as_str().expect("url")).send().await.expect("up").text().await.expect("text");
    assert!(metrics.contains("imgate_http_requests_total"), "{metrics}");

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = child.wait().expect("exit status");
    assert!(status.success(), "clean exit: {status:?}");
    assert!(!env_path.exists(), "env.json removed on exit");
    let _ = std::fs::remove_dir_all(&dir);
}
