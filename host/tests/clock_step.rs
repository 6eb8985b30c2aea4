//! Exists for attack E20 (`shared/spec/attacks.md`): an NTP step puts a running gateway's wall
//! clock an hour back, and only a clock the gateway does not own can show what follows.
//!
//! The real binary (`imgate dev`: the gateway and the embedded OpenIM emulator in one process) runs
//! under libfaketime, a tool we did not write (`LD_PRELOAD`, Debian package `faketime`). It reads
//! its offset from `FAKETIME_TIMESTAMP_FILE` at every wall-clock read (`FAKETIME_NO_CACHE=1`);
//! this test rewrites that file from `+0` to `-3600` and back. `FAKETIME_DONT_FAKE_MONOTONIC=1`
//! leaves `CLOCK_MONOTONIC` alone, as an NTP step leaves the kernel's.
//!
//! Before the step both rate limiters the test can reach (the handshake's per-address bucket and
//! the per-user bucket of signed routes) are emptied. While the clock is an hour behind:
//! - the process answers (`/healthz`) and never panics (its stderr is searched at the end);
//! - the gateway's clock really is an hour behind: a request signed with the true clock is the
//!   generic 401 for the ±60 s window (client-auth §4, the reason read back from the audit trail,
//!   whose record carries the gateway's time), one signed an hour back is served;
//! - the emptied buckets refill on the monotonic clock: every 429 says `Retry-After: 1` and both
//!   let requests through again within seconds (a window on the stepped wall clock would hold them
//!   for an hour);
//! - the limits still limit: a burst gets no more than burst + refill through, then 429s;
//! - a handshake with the true clock is refused (±300 s, §3); one with the gateway's clock opens a
//!   session that serves.
//!
//! After the clock is set back to `+0`: the session made before the step serves again with the true
//! clock, a new handshake and a signed request on its session succeed, the process stops cleanly on
//! SIGTERM, and `imgate audit verify` accepts the audit file whose timestamps went back an hour.
//!
//! Without libfaketime it prints `SKIPPED: …` on stderr and passes (`make deps` installs it).

#![cfg(all(target_os = "linux", feature = "emulator"))]
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use imgate_client::{Client, DeviceKey, Session};
use serde_json::{json, Value};

/// How far the wall clock steps back, in seconds (libfaketime's offset unit).
const STEP_SECS: i64 = 3600;
const STEP_MS: i64 = STEP_SECS * 1000;
/// The deadline of anything that should happen at once, or within a limiter's refill.
const SOON: Duration = Duration::from_secs(10);
/// The user whose devices handshake here.
const USER: &str = "clockwatcher";

#[tokio::test]
async fn a_wall_clock_stepped_back_an_hour_keeps_the_limits_refuses_true_clock_signatures_and_recovers() {
    let Some(libfaketime) = libfaketime() else {
        // Straight to the stderr stream: libtest captures `eprintln!` of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: clock step test: libfaketime.so.1 is in none of {:?} (`make deps` installs the Debian package `faketime`)",
            libfaketime_candidates()
        );
        return;
    };
    let mut gw = Gateway::start(&libfaketime);
    let http = reqwest::Client::builder().no_proxy().timeout(SOON).build().expect("client");
    let client = Client { http: http.clone(), base_url: gw.env["gateway_url"].as_str().expect("url").to_owned() };
    let config = host::Config::load(Path::new(gw.env["config_path"].as_str().expect("config_path"))).expect("config");
    let handshake_limit = (config.auth.handshake_burst_per_address, config.auth.handshakes_per_address_per_sec);
    let quotas = host::ratelimit::quotas(&config.rate_limits);
    let user_quota = *host::ratelimit::lookup(&quotas, "default", "").expect("the default class");
    let user_limit = (user_quota.burst, user_quota.per_second);

    // +0: a user, two devices, a session made before the step.
    let pem = std::fs::read_to_string(gw.env["admin"]["private_key_pem_path"].as_str().expect("pem")).expect("pem");
    let admin = host::dev::mint_admin_jwt(&pem, "clock-step", "users:write devices:write", 600).expect("jwt");
    let users = json!({"users": [{"user_id": USER, "nickname": "Clock Watcher"}]});
    let res = http.post(client.base_url.clone() + "/v1/admin/users").bearer_auth(&admin).json(&users).send().await;
    assert_eq!(res.expect("answer").status(), 201, "register {USER}");
    let (before, during) = (DeviceKey::generate(), DeviceKey::generate());
    for (device, id, platform) in [(&before, "before", 1), (&during, "during", 2)] {
        let res = client.enroll(&admin, USER, id, platform, &device.public_b64()).await.expect("answer");
        assert_eq!(res.status(), 201, "enroll {id}");
    }
    let (_, gw_key) = client.gateway_key().await.expect("gateway key");
    let old = handshake(&client, &before, &gw_key, "before", now_ms).await.expect("a handshake at +0");
    assert_eq!(me(&client, &old, now_ms()).await.status(), 200, "a signed call at +0");

    // Both buckets empty at the moment of the step.
    burst_until_429("handshakes at +0", &|| garbage_handshake(&client), handshake_limit).await;
    burst_until_429("signed calls at +0", &|| me(&client, &old, now_ms()), user_limit).await;

    gw.set_clock(&format!("-{STEP_SECS}"));
    gw.assert_alive();
    assert_eq!(healthz(&client).await, 200);

    // The gateway's clock is an hour behind: a request signed an hour back is served (401 until
    // the step applies), the per-user bucket emptied before the step having refilled meanwhile.
    let deadline = Instant::now() + SOON;
    loop {
        let res = me(&client, &old, now_ms() - STEP_MS).await;
        match res.status().as_u16() {
            200 => break,
            401 => assert!(Instant::now() < deadline, "libfaketime never stepped the gateway's clock back"),
            429 => check_429("a signed call after the step", &res, deadline),
            other => panic!("a signed call after the step: {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The true clock is now outside the ±60 s window: the generic 401, the reason audited with the
    // gateway's own time.
    let res = me(&client, &old, now_ms()).await;
    assert_eq!(res.status(), 401, "a call signed with the true clock while the gateway's is an hour behind");
    let record = gw.audit_record(&request_id(&res)).await;
    assert!(record["reason"].as_str().is_some_and(|r| r.contains("outside the ±60 s window")), "{record}");
    let behind_ms = now_ms() - record["ts"].as_i64().expect("ts");
    assert!((behind_ms - STEP_MS).abs() < 60_000, "the gateway's clock is an hour behind: {record}");

    // The handshake bucket emptied before the step refills on the monotonic clock.
    let res = past_429("a handshake after the step", &|| garbage_handshake(&client)).await;
    assert_eq!(res.status(), 401, "garbage message 1 after the step");

    // A handshake with the true clock is refused (§3: ±300 s); one with the gateway's clock opens a
    // session that serves on the gateway's clock.
    let refused = handshake(&client, &before, &gw_key, "before", now_ms).await;
    let Err(res) = refused else { panic!("a handshake with the true clock an hour ahead of the gateway's succeeded") };
    assert_eq!(res.status(), 401);
    let record = gw.audit_record(&request_id(&res)).await;
    assert!(record["reason"].as_str().is_some_and(|r| r.contains("outside the ±300 s window")), "{record}");
    let stepped = handshake(&client, &during, &gw_key, "during", || now_ms() - STEP_MS)
        .await
        .unwrap_or_else(|res| panic!("a handshake on the gateway's clock: {}", res.status()));
    let res = past_429("a call on a session made during the step", &|| me(&client, &stepped, now_ms() - STEP_MS)).await;
    assert_eq!(res.status(), 200, "a call on a session made during the step");

    // The limits still limit.
    burst_until_429("handshakes during the step", &|| garbage_handshake(&client), handshake_limit).await;
    burst_until_429("signed calls during the step", &|| me(&client, &old, now_ms() - STEP_MS), user_limit).await;
    gw.assert_alive();
    let res = client.http.get(client.base_url.clone() + "/healthz").send().await.expect("answer");
    assert_eq!(res.status(), 200);
    eprintln!(
        "during the step: the gateway's clock {behind_ms} ms behind (audit record); its Date header says {:?} at true Unix time {} s",
        res.headers().get("date"),
        now_ms() / 1000
    );

    // Back to the true time.
    gw.set_clock("+0");
    assert_eq!(healthz(&client).await, 200);
    let deadline = Instant::now() + SOON;
    loop {
        let res = me(&client, &old, now_ms()).await;
        match res.status().as_u16() {
            200 => break,
            401 => assert!(Instant::now() < deadline, "the session made before the step never served again"),
            429 => check_429("a signed call after the clock came back", &res, deadline),
            other => panic!("a signed call after the clock came back: {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new = handshake(&client, &before, &gw_key, "before", now_ms)
        .await
        .unwrap_or_else(|res| panic!("a handshake after the clock came back: {}", res.status()));
    let res = past_429("a call on a new session", &|| me(&client, &new, now_ms())).await;
    assert_eq!(res.status(), 200, "a call on a session made after the clock came back");
    // Sessions live on the wall clock (`expires_at` is a time of day, client-auth §3): the one made
    // an hour "ago" has been idle an hour by the true clock. Reported, not required.
    let res = past_429("a call on the session made during the step", &|| me(&client, &stepped, now_ms())).await;
    eprintln!("the session made during the step, after it: {}", res.status());

    gw.assert_alive();
    let audit = gw.stop();
    let verify =
        Command::new(env!("CARGO_BIN_EXE_imgate")).args(["audit", "verify"]).arg(&audit).output().expect("run");
    assert!(verify.status.success(), "imgate audit verify: {}", String::from_utf8_lossy(&verify.stderr));
    let stamps: Vec<i64> = std::fs::read_to_string(&audit)
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("record")["ts"].as_i64().expect("ts"))
        .collect();
    assert!(
        stamps.windows(2).any(|w| w[0] - w[1] > STEP_MS - 60_000),
        "the audit file records the step back (and verifies nonetheless)"
    );
}

/// Where Debian and a `make install` of libfaketime put it.
fn libfaketime_candidates() -> Vec<PathBuf> {
    let arch = std::env::consts::ARCH;
    [
        format!("/usr/lib/{arch}-linux-gnu/faketime/libfaketime.so.1"),
        "/usr/lib/faketime/libfaketime.so.1".to_owned(),
        "/usr/local/lib/faketime/libfaketime.so.1".to_owned(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

fn libfaketime() -> Option<PathBuf> {
    libfaketime_candidates().into_iter().find(|p| p.is_file())
}

/// `imgate dev` under libfaketime, in a folder of its own; killed (and the folder removed) on drop.
struct Gateway {
    child: Child,
    /// Kept open: `imgate dev` prints a line when it stops, and a closed pipe would fail that print.
    _stdout: BufReader<ChildStdout>,
    dir: PathBuf,
    env: Value,
}

impl Gateway {
    fn start(libfaketime: &Path) -> Gateway {
        let dir = std::env::temp_dir().join(format!("imgate-clock-step-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        set_clock(&dir, "+0");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("stderr file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_imgate"))
            .args(["dev", "--dir"])
            .arg(dir.join("dev"))
            .env("LD_PRELOAD", libfaketime)
            .env("FAKETIME_TIMESTAMP_FILE", dir.join("faketime.rc"))
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            // FAKETIME has priority over the file (libfaketime's README).
            .env_remove("FAKETIME")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("imgate dev starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let stderr = || std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        let mut line = String::new();
        while !line.contains("is ready") {
            line.clear();
            let read = stdout.read_line(&mut line).expect("read");
            assert!(read > 0, "imgate dev exited before it was ready: {}", stderr());
        }
        let env = serde_json::from_slice(&std::fs::read(dir.join("dev/env.json")).expect("env.json")).expect("json");
        Gateway { child, _stdout: stdout, dir, env }
    }

    /// libfaketime's offset for every later wall-clock read of the gateway.
    fn set_clock(&self, offset: &str) {
        set_clock(&self.dir, offset);
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The process runs and has not panicked (a panic in a task is printed, not fatal).
    fn assert_alive(&mut self) {
        assert!(self.child.try_wait().expect("try_wait").is_none(), "imgate dev exited: {}", self.stderr());
        let stderr = self.stderr();
        assert!(!stderr.contains("panicked"), "imgate dev panicked:\n{stderr}");
    }

    /// The audit record of a request, once the writer has appended it.
    async fn audit_record(&self, request_id: &str) -> Value {
        let path = self.env["audit_log"].as_str().expect("audit_log");
        let deadline = Instant::now() + SOON;
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|r| r["request_id"] == request_id);
            if let Some(record) = found {
                return record;
            }
            assert!(Instant::now() < deadline, "no audit record for request {request_id}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM; the exit must be clean and nothing may have panicked. Returns the audit file.
    fn stop(&mut self) -> PathBuf {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        let status = self.child.wait().expect("exit status");
        let stderr = self.stderr();
        assert!(status.success(), "imgate dev under libfaketime exits cleanly: {status:?}\n{stderr}");
        assert!(!stderr.contains("panicked"), "imgate dev panicked:\n{stderr}");
        PathBuf::from(self.env["audit_log"].as_str().expect("audit_log"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes libfaketime's offset file in `dir` whole, then renames it over the file libfaketime reads,
/// so no wall-clock read of the gateway sees half a line.
fn set_clock(dir: &Path, offset: &str) {
    let tmp = dir.join("faketime.rc.tmp");
    std::fs::write(&tmp, format!("{offset}\n")).expect("write");
    std::fs::rename(&tmp, dir.join("faketime.rc")).expect("rename");
}

/// The true time, Unix ms (this test process is not under libfaketime).
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

async fn healthz(client: &Client) -> u16 {
    client.http.get(client.base_url.clone() + "/healthz").send().await.expect("answer").status().as_u16()
}

/// `GET /v1/me` signed at `ts` with a fresh nonce.
async fn me(client: &Client, session: &Session, ts: i64) -> reqwest::Response {
    let headers = session.sign_request("GET", "/v1/me", b"", ts, &Session::fresh_nonce());
    client.send_with_headers("GET", "/v1/me", &headers, None).await.expect("answer")
}

/// A message 1 of a valid length that decrypts under no key: a 401, after the per-address bucket.
async fn garbage_handshake(client: &Client) -> reqwest::Response {
    let body = json!({"msg": B64.encode([1u8; 100])}).to_string();
    client.handshake_raw(body.as_bytes()).await.expect("answer")
}

/// A handshake whose message 1 says `ts()`; 429s are waited out (see [`check_429`]); the answer
/// that is not 200 is the error.
async fn handshake(
    client: &Client,
    device: &DeviceKey,
    gateway: &[u8; 32],
    device_id: &str,
    ts: impl Fn() -> i64,
) -> Result<Session, reqwest::Response> {
    let deadline = Instant::now() + SOON;
    loop {
        let (pending, msg1) = imgate_client::handshake_message1(device, gateway, device_id, ts()).expect("message 1");
        let res = client.handshake_raw(json!({"msg": B64.encode(msg1)}).to_string().as_bytes()).await.expect("answer");
        match res.status().as_u16() {
            200 => {
                let v: Value = res.json().await.expect("json");
                let msg2 = B64.decode(v["msg"].as_str().expect("msg")).expect("base64");
                return Ok(pending.read_message2(&msg2).expect("message 2"));
            }
            429 => check_429(&format!("handshake of {device_id}"), &res, deadline),
            _ => return Err(res),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn request_id(res: &reqwest::Response) -> String {
    res.headers()["x-request-id"].to_str().expect("ascii").to_owned()
}

/// A 429 while a bucket refills: it must say to come back within a second (a GCRA on the monotonic
/// clock; a window on the stepped-back wall clock would say an hour) and end before the deadline.
fn check_429(what: &str, res: &reqwest::Response, deadline: Instant) {
    let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    assert!(retry.is_some_and(|s| s <= 1), "{what}: 429 with Retry-After {retry:?}");
    assert!(Instant::now() < deadline, "{what}: still 429 after {SOON:?}");
}

/// Sends `request` again while it is answered 429 ([`check_429`]); the first other answer.
async fn past_429<F, Fut>(what: &str, request: &F) -> reqwest::Response
where
    F: Fn() -> Fut,
    Fut: Future<Output = reqwest::Response>,
{
    let deadline = Instant::now() + SOON;
    loop {
        let res = request().await;
        if res.status() != 429 {
            return res;
        }
        check_429(what, &res, deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `request` until the first 429: the ones let through before it are at most the burst plus
/// what the rate refilled meanwhile (and one for rounding), each of them the answer it would get
/// unlimited (401 for garbage, 200 for a good call), and the 429 says `Retry-After: 1`.
async fn burst_until_429<F, Fut>(what: &str, request: &F, (burst, per_second): (u32, u32))
where
    F: Fn() -> Fut,
    Fut: Future<Output = reqwest::Response>,
{
    let started = Instant::now();
    let mut through = 0u32;
    let max = 10 * burst + 100;
    for _ in 0..max {
        let res = request().await;
        match res.status().as_u16() {
            429 => {
                let refill = (started.elapsed().as_secs_f64() * f64::from(per_second)).ceil() as u32;
                assert!(
                    through <= burst + refill + 1,
                    "{what}: {through} through before the first 429 (burst {burst}, {refill} refilled)"
                );
                let retry = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
                assert_eq!(retry.as_deref(), Some("1"), "{what}: the 429's Retry-After");
                return;
            }
            200 | 401 => through += 1,
            other => panic!("{what}: {other}"),
        }
    }
    panic!("{what}: {max} requests and no 429");
}
