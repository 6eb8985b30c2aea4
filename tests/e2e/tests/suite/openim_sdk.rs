//! The unmodified OpenIM JavaScript SDK (`@openim/client-sdk`, pinned in `tests/sdk-node`) works
//! through imgate (issue 13): two SDK instances in Node log in with imgate bearer tokens
//! (`apiAddr = <gateway>/openim`, `wsAddr = ws://<gateway>/openim/ws`), befriend each other, create
//! and join a group, A sends B a text that B receives masked by the content filter, B reads the
//! history and the conversation list; then revoking A's session fires the SDK's kicked/invalid
//! event on A while B stays logged in. The scenario is `tests/sdk-node/flow.mjs`; this test
//! starts the gateway and emulator, provides users and tokens, drives the revoke and checks every
//! step line the script prints.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::plugins::example;
use e2e::*;
use imgate_client::Session;
use serde_json::Value;
use tokio::sync::mpsc;

/// The platform both SDK sessions use: OpenIM's Web platform, the one `@openim/client-sdk` is for.
const WEB: i32 = 5;
/// What A sends, and what B must receive once `content-filter` has masked it.
const TEXT: &str = "hello B, darn it";
const MASKED: &str = "hello B, **** it";
/// The steps flow.mjs prints, in order (`ready_for_revoke` is where this test revokes A).
const STEPS: [&str; 15] = [
    "login_a",
    "login_b",
    "friend_request",
    "friend_accept",
    "friends",
    "group_create",
    "group_join",
    "send_text",
    "recv_text",
    "history",
    "conversations",
    "ready_for_revoke",
    "revoked_a",
    "b_still_logged",
    "done",
];
/// The longest wait for one line of the script (its own steps are bounded at 10 s each).
const LINE_WAIT: Duration = Duration::from_secs(30);

/// `content-filter` masking "darn" in direct texts: the chain of the REST send route, which the
/// relay applies to the WebSocket sends (`SendMsg`, 1003) of a text to a user as well.
fn masking_chain() -> String {
    format!(
        "[[plugin]]\nname = \"content-filter\"\npath = \"{}\"\ncapabilities = [\"config\"]\n\
         [[route_plugins]]\nroute = \"send_text_to_user\"\n\
         plugins = [{{ plugin = \"content-filter\", config = {{ words = [\"darn\"], action = \"mask\" }} }}]\n",
        example("content-filter").display()
    )
}

fn sdk_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk-node")
}

/// A user with a Web device and a live session, and a bearer token of that session.
async fn web_user(h: &Harness, user: &str) -> (Session, String) {
    let key = h.user_with_device(user, "web", WEB).await;
    let session = h.client().handshake(&key, &h.gateway_public(), "web").await.expect("handshake");
    let (status, tok) =
        into_json(h.client().call(&session, "POST", "/v1/auth/token", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{tok}");
    (session, tok["token"].as_str().expect("token").to_owned())
}

/// The running script: its stdout lines arrive on a channel, its stderr is kept for the report.
struct Flow {
    lines: mpsc::UnboundedReceiver<String>,
    stdin: std::process::ChildStdin,
    stderr: Arc<Mutex<String>>,
    exit: mpsc::UnboundedReceiver<Option<i32>>,
}

impl Flow {
    fn start(envs: &[(&str, String)]) -> Flow {
        let dir = sdk_dir();
        assert!(
            dir.join("node_modules/@openim/client-sdk/package.json").is_file(),
            "{} has no node_modules: `make deps` installs Node and the SDK (npm ci --prefix tests/sdk-node)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("flow.mjs"))
            .current_dir(&dir)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting node ({e}): `make deps` installs Node and the SDK"));
        let (line_tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("stderr").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdin = child.stdin.take().expect("stdin");
        let (exit_tx, exit) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let status = child.wait().ok().and_then(|s| s.code());
            let _ = exit_tx.send(status);
        });
        Flow { lines, stdin, stderr, exit }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    /// The next step line, parsed; fails the test with the script's stderr if none comes.
    async fn next(&mut self, expected: &str) -> Value {
        match tokio::time::timeout(LINE_WAIT, self.lines.recv()).await {
            Ok(Some(line)) => serde_json::from_str(&line)
                .unwrap_or_else(|_| panic!("not a step line: {line}\n--- flow stderr ---\n{}", self.stderr())),
            Ok(None) => panic!("flow.mjs ended before step {expected}\n--- flow stderr ---\n{}", self.stderr()),
            Err(_) => panic!(
                "no line from flow.mjs within {LINE_WAIT:?} (step {expected})\n--- flow stderr ---\n{}",
                self.stderr()
            ),
        }
    }

    async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(LINE_WAIT, self.exit.recv()).await.expect("flow.mjs exits").flatten()
    }
}

/// How the test ends A's session at the script's `ready_for_revoke`.
#[derive(Clone, Copy)]
enum Revoke {
    /// `DELETE /v1/admin/sessions/{id}`: that session only.
    Session,
    /// `POST /v1/admin/users/{user}/revoke`: every session of A, and OpenIM's `force_logout`.
    User,
}

#[tokio::test]
async fn the_openim_js_sdk_logs_in_chats_and_is_kicked_when_its_session_is_revoked() {
    sdk_flow(Revoke::Session).await;
}

#[tokio::test]
async fn the_openim_js_sdk_is_kicked_when_its_user_is_revoked() {
    sdk_flow(Revoke::User).await;
}

async fn sdk_flow(revoke: Revoke) {
    let h = Harness::start_with(Options { extra_toml: masking_chain(), ..Options::default() }).await;
    let (a, a_token) = web_user(&h, "sdka").await;
    let (_b, b_token) = web_user(&h, "sdkb").await;
    let ws = h.gateway_url.replacen("http://", "ws://", 1);
    let mut flow = Flow::start(&[
        ("SDK_API_ADDR", format!("{}/openim", h.gateway_url)),
        ("SDK_WS_ADDR", format!("{ws}/openim/ws")),
        ("SDK_A_USER", "sdka".into()),
        ("SDK_A_TOKEN", a_token),
        ("SDK_B_USER", "sdkb".into()),
        ("SDK_B_TOKEN", b_token),
        ("SDK_PLATFORM_ID", WEB.to_string()),
        ("SDK_TEXT", TEXT.into()),
        ("SDK_EXPECT_TEXT", MASKED.into()),
        ("SDK_STEP_TIMEOUT_MS", "10000".into()),
        ("SDK_REVOKE_TIMEOUT_MS", "5000".into()),
        ("SDK_TRACE", "1".into()),
    ]);
    let ops = h.admin_jwt("sessions:revoke");
    for expected in STEPS {
        let line = flow.next(expected).await;
        let ctx = || format!("{line}\n--- flow stderr ---\n{}", flow.stderr());
        assert_eq!(line["step"].as_str(), Some(expected), "out of order or failed: {}", ctx());
        if expected == "ready_for_revoke" {
            let req = match revoke {
                Revoke::Session => h.http.delete(h.url(&format!("/v1/admin/sessions/{}", a.session_id))),
                Revoke::User => h.http.post(h.url("/v1/admin/users/sdka/revoke")).json(&serde_json::json!({})),
            };
            let res = req.bearer_auth(&ops).send().await.expect("answer");
            assert!(res.status().is_success(), "revoking A: {}", res.status());
            writeln!(flow.stdin, "revoked").expect("flow stdin");
            continue;
        }
        assert_eq!(line["ok"], true, "{}", ctx());
        match expected {
            "login_a" | "login_b" => assert_eq!(line["loginStatus"], 3, "{}", ctx()),
            "recv_text" => {
                assert_eq!(line["text"], MASKED, "the content filter masked the WebSocket send: {}", ctx());
                assert_eq!(line["masked"], true, "{}", ctx());
            }
            "done" => assert_eq!(
                line["sdkUnhandledRejections"],
                serde_json::json!([]),
                "a call the SDK made on its own (a refresh after a push or a change) failed: {}",
                ctx()
            ),
            "revoked_a" => assert!(
                ["OnKickedOffline", "OnUserTokenInvalid", "OnUserTokenExpired"]
                    .contains(&line["event"].as_str().unwrap_or("")),
                "{}",
                ctx()
            ),
            _ => {}
        }
    }
    let code = flow.exit_code().await;
    assert_eq!(code, Some(0), "flow.mjs exit status\n--- flow stderr ---\n{}", flow.stderr());
    h.shutdown().await;
}
