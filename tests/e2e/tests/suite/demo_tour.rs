//! What `make demo` runs: `imgate dev` with the example plugins, then the `tour` binary against
//! its env.json. The tour exits non-zero when any step does not behave as it says, so this keeps
//! the demo (the README's first command) true, plugin step included.

use std::time::Duration;

use e2e::reload::within;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_tour_passes_against_imgate_dev_with_the_example_plugins() {
    let dir = std::env::temp_dir().join(format!("imgate-demo-{}", uuid::Uuid::new_v4().simple()));
    let opts = host::dev::DevOptions {
        port: None,
        dir: dir.clone(),
        example_plugins: Some(e2e::plugins::examples().to_path_buf()),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let dev = tokio::spawn(host::dev::run(opts, async {
        let _ = stopped.await;
    }));
    let env = dir.join("env.json");
    let ready =
        within(Duration::from_secs(60), Duration::from_millis(20), async || env.is_file() || dev.is_finished()).await;
    assert!(ready.is_some() && env.is_file(), "imgate dev never became ready");

    // The tour blocks this thread; the gateway keeps running on the runtime's workers.
    let env_arg = env.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tour")).arg(&env_arg).output().expect("tour runs")
    })
    .await
    .expect("task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the tour failed:\n{stdout}");
    assert!(stdout.contains("content-filter"), "the plugin steps ran:\n{stdout}");
    assert!(
        stdout.contains("bob's socket gets the push (2001): \"****, this came over the WebSocket\""),
        "the WebSocket steps ran, masked:\n{stdout}"
    );
    assert!(!stdout.contains("UNEXPECTED"), "{stdout}");

    let _ = stop.send(());
    dev.await.expect("task").expect("imgate dev stops cleanly");
    assert!(!env.exists(), "env.json removed on exit");
    let _ = std::fs::remove_dir_all(&dir);
}
