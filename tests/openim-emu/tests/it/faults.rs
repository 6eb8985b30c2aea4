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

#[tokio::test]
async fn restart_drops_connections_refuses_for_a_while_and_keeps_the_database() {
    let env = Env::new().await;
    env.register(&["a", "b"]).await;
    assert_eq!(env.send_text("a", "b", "before the restart").await.code(), 0);
    let url = format!("{}/user/get_users_info", env.emu.api_url());
    // A hung request is in flight when OpenIM goes down: its connection is dropped, unanswered.
    env.emu.set_fault(Fault::Hang);
    let hung = {
        let req = env
            .http
            .post(&url)
            .header("operationID", op_id())
            .header("token", &env.admin)
            .body(json!({"userIDs": []}).to_string());
        tokio::spawn(req.send())
    };
    assert!(crate::common::eventually(Duration::from_secs(5), || async { env.emu.active() == 1 }).await);
    env.emu.set_fault(Fault::None);
    let restarting = env.emu.restart(Duration::from_millis(400));
    // While down, connections are refused (no HTTP answer, at once: not a timeout).
    let probe = crate::common::eventually(Duration::from_secs(5), || async {
        env.http.post(&url).timeout(Duration::from_secs(2)).send().await.is_err_and(|e| e.is_connect())
    });
    let (restarted, refused) = tokio::join!(restarting, probe);
    restarted.expect("back up");
    assert!(refused, "a connection was refused while down");
    let dropped = hung.await.expect("task").expect_err("dropped without an answer");
    assert!(!dropped.is_timeout(), "{dropped}");
    assert_eq!(env.emu.active(), 0);
    // Back up with the same database and the same tokens.
    assert_eq!(env.send_text("a", "b", "after the restart").await.code(), 0);
    let stored: Vec<String> =
        env.emu.stored_messages().iter().map(|m| String::from_utf8_lossy(&m.content).into_owned()).collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert!(stored.iter().any(|c| c.contains("before the restart")) && stored.iter().any(|c| c.contains("after")));
}
