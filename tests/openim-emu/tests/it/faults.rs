//! Fault injection on the HTTP API.

use std::time::{Duration, Instant};

use openim_emu::Fault;
use serde_json::json;

use crate::common::{op_id, Env};

#[tokio::test]
async fn delay_hang_and_close() {
    let env = Env::new().await;
    let url = format!("{}/user/get_users_info", env.emu.api_url());
    let call = |timeout: Duration| {
        env.http
            .post(&url)
            .header("operationID", op_id())
            .header("token", &env.admin)
            .body(json!({"userIDs": []}).to_string())
            .timeout(timeout)
            .send()
    };
    env.emu.set_fault(Fault::Delay(Duration::from_millis(300)));
    let start = Instant::now();
    let r = call(Duration::from_secs(5)).await.expect("delayed answer");
    assert_eq!(r.status(), 200);
    assert!(start.elapsed() >= Duration::from_millis(300));

    env.emu.set_fault(Fault::Hang);
    let e = call(Duration::from_millis(300)).await.expect_err("hang");
    assert!(e.is_timeout(), "{e}");

    env.emu.set_fault(Fault::CloseConnection);
    let e = call(Duration::from_secs(5)).await.expect_err("closed");
    assert!(!e.is_timeout(), "connection must be dropped, not left hanging: {e}");
    assert!(e.status().is_none());

    env.emu.set_fault(Fault::None);
    assert_eq!(env.code("/user/get_users_info", &env.admin, json!({"userIDs": []})).await, 0);
}

#[tokio::test]
async fn shutdown_stops_listening() {
    let env = Env::new().await;
    let url = env.emu.api_url();
    let crate::common::Env { emu, http, .. } = env;
    emu.shutdown().await;
    let r = http.post(format!("{url}/user/get_users_info")).timeout(Duration::from_secs(2)).send().await;
    assert!(r.is_err());
}
