//! Network isolation (issue 14), proved with Linux network namespaces: a client host reaches OpenIM
//! only through imgate, never its API (10002) or msg-gateway (10001) port directly.
//!
//! Topology (three fresh namespaces per run, named after the test's pid; see docs/isolation.md):
//!
//! ```text
//!  igc-<pid> (client)         igg-<pid> (imgate host)               igi-<pid> (internal)
//!  c0 10.231.1.2/24 ──veth── g0 10.231.1.1/24   g1 10.231.2.1/24 ──veth── i0 10.231.2.2/24
//!  route 10.231.2.0/24        imgate serve on 10.231.1.1:8080       OpenIM emulator on :10002, :10001
//!    via 10.231.1.1           ip_forward = 0 (a new netns's)        route 10.231.1.0/24 via 10.231.2.1
//! ```
//!
//! The client is given a route to the internal subnet through the imgate host, and the internal host a
//! route back, so the only thing between the client and OpenIM is that the imgate host does not forward
//! packets. The test asserts: (a) from the client namespace, authenticated calls through imgate reach
//! OpenIM and bring back its data (admin register + read-back, a user's handshake and signed send, the
//! WebSocket relay's upstream handshake); (b) from the client namespace a TCP connect to
//! 10.231.2.2:10002 and :10001 does not succeed within 2 s (it times out: the imgate host drops a packet
//! it would have to forward, without an ICMP answer); (c) from the imgate host the same connects
//! succeed, so (b) is not vacuous.
//!
//! How each piece runs, and why:
//! - imgate is the real binary, `ip netns exec igg-<pid> $CARGO_BIN_EXE_imgate serve --config …`:
//!   this test lives in `host` (the package of the `imgate` bin), so cargo builds that binary, fresh,
//!   before it runs the test, whatever subset of tests is selected.
//! - The OpenIM emulator runs in this process (the `openim_emu` library, `host`'s `emulator` feature).
//!   The `openim-emu` binary belongs to another package: cargo builds it for `cargo test --workspace`
//!   (openim-emu has integration tests) but not for `cargo test -p host --test isolation`, where a
//!   missing or stale binary would be used. Instead a short-lived thread enters the internal namespace
//!   (`setns(2)` on the thread only) and binds the two listeners there; a socket stays in the namespace
//!   it was created in, so the emulator served from those listeners by an ordinary runtime is, on the
//!   network, a host at 10.231.2.2 and nowhere else.
//! - The client side runs on a thread that enters the client namespace and runs its own current-thread
//!   runtime there (every socket it opens is the client host's).
//!
//! Needs root and iproute2 (`ip`); without them it prints `SKIPPED: …` on stderr and passes. Everything
//! it creates (namespaces, veth pairs, the imgate process) is removed by drop guards, also when an
//! assertion fails.

#![cfg(all(target_os = "linux", feature = "emulator"))]
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{json, Value};

const CLIENT_ADDR: &str = "10.231.1.2";
const GATEWAY_PUBLIC_ADDR: &str = "10.231.1.1";
const GATEWAY_INTERNAL_ADDR: &str = "10.231.2.1";
const OPENIM_ADDR: &str = "10.231.2.2";
const IMGATE_PORT: u16 = 8080;
const OPENIM_API_PORT: u16 = 10002;
const OPENIM_WS_PORT: u16 = 10001;
/// How long a direct connect from the client may take before it counts as "not through".
const CONNECT_BOUND: Duration = Duration::from_secs(2);

const ISSUER: &str = "https://idp.test/netns";
const AUDIENCE: &str = "imgate-admin";
const KID: &str = "netns-1";

#[test]
fn the_client_host_reaches_openim_only_through_imgate() {
    if let Some(why) = cannot_run() {
        // Straight to the stderr stream: libtest captures `eprintln!` of a passing test.
        let _ = writeln!(std::io::stderr(), "SKIPPED: isolation test: {why} (needs root and iproute2)");
        return;
    }
    let started = Instant::now();
    let pid = std::process::id();
    let net = Namespaces::create(pid);
    let (client, gateway, internal) = (net.name('c'), net.name('g'), net.name('i'));

    // The imgate host forwards nothing: a new namespace's default, asserted rather than assumed.
    let (v4, v6) = in_netns(&gateway, || {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned());
        // A kernel without IPv6 has no such file, and forwards no IPv6 either.
        let v6 = read("/proc/sys/net/ipv6/conf/all/forwarding").unwrap_or_else(|_| "0".into());
        (read("/proc/sys/net/ipv4/ip_forward").expect("ip_forward"), v6)
    });
    assert_eq!((v4.as_str(), v6.as_str()), ("0", "0"), "the imgate host's namespace must not forward");
    // The client does have a route to the internal subnet, through the imgate host.
    let route = ip(&["-n", &client, "route", "get", OPENIM_ADDR]);
    assert!(route.contains(&format!("via {GATEWAY_PUBLIC_ADDR}")), "client route to OpenIM: {route}");

    // OpenIM (the emulator) at 10.231.2.2, listening in the internal namespace only.
    let (api, ws) = in_netns(&internal, || {
        let bind = |port| {
            let l = std::net::TcpListener::bind((OPENIM_ADDR, port)).expect("bind in the internal namespace");
            l.set_nonblocking(true).expect("nonblocking");
            l
        };
        (bind(OPENIM_API_PORT), bind(OPENIM_WS_PORT))
    });
    let emu_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let emu = emu_rt.block_on(async {
        let api = tokio::net::TcpListener::from_std(api).expect("api listener");
        let ws = tokio::net::TcpListener::from_std(ws).expect("ws listener");
        openim_emu::Emulator::start_on(openim_emu::Config::default(), api, ws).await.expect("emulator starts")
    });

    // imgate, the real binary, in the gateway namespace.
    let dir = TempDir::new(pid);
    let (admin_pem, gateway_public) = write_config(&dir.0);
    let log = dir.0.join("imgate.log");
    let mut imgate = KillOnDrop(
        ip_command()
            .args(["netns", "exec", &gateway, env!("CARGO_BIN_EXE_imgate"), "serve", "--config"])
            .arg(dir.0.join("imgate.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("imgate starts"),
    );
    let imgate_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Ready when /healthz answers 200 from the client host (polled, within a deadline).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = imgate.0.try_wait().expect("wait") {
            panic!("imgate exited before it was ready ({status}):\n{}", imgate_log());
        }
        if in_netns(&client, healthz_ok) {
            break;
        }
        assert!(Instant::now() < deadline, "imgate did not answer /healthz within 30 s:\n{}", imgate_log());
        std::thread::sleep(Duration::from_millis(50)); // the poll's pace, not a stand-in for readiness
    }

    // (a) + (b): the client host.
    let direct = in_netns(&client, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            through_imgate(&admin_pem, &gateway_public).await;
            let (api, ws) = tokio::join!(try_connect(OPENIM_API_PORT), try_connect(OPENIM_WS_PORT));
            [(OPENIM_API_PORT, api), (OPENIM_WS_PORT, ws)]
        })
    });
    for (port, outcome) in &direct {
        eprintln!("client -> {OPENIM_ADDR}:{port} directly: {outcome}");
    }
    for (port, outcome) in &direct {
        assert_ne!(*outcome, Outcome::Connected, "the client host reached OpenIM's port {port} without imgate");
    }
    // What reached OpenIM came through imgate: the emulator saw the calls made above.
    let seen: Vec<String> = emu.seen().into_iter().map(|r| r.path).collect();
    for path in ["/user/user_register", "/user/get_users_info", "/msg/send_msg"] {
        assert!(seen.iter().any(|p| p == path), "OpenIM never saw {path}: {seen:?}");
    }

    // (c) The control: from the imgate host the same ports answer, so (b) is not vacuous.
    let from_gateway = in_netns(&gateway, || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async { tokio::join!(try_connect(OPENIM_API_PORT), try_connect(OPENIM_WS_PORT)) })
    });
    assert_eq!(from_gateway, (Outcome::Connected, Outcome::Connected), "the imgate host must reach OpenIM");

    assert!(imgate.0.try_wait().expect("wait").is_none(), "imgate still serving:\n{}", imgate_log());
    drop(imgate);
    drop(emu);
    drop(emu_rt);
    eprintln!("isolation test: {:.1} s", started.elapsed().as_secs_f64());
}

/// From the client host, through imgate only: an admin registers two users and reads one back from
/// OpenIM, a user handshakes and sends a message (OpenIM's server message id comes back), and the
/// WebSocket relay completes OpenIM's msg-gateway handshake.
async fn through_imgate(admin_pem: &str, gateway_public: &[u8; 32]) {
    let base = format!("http://{GATEWAY_PUBLIC_ADDR}:{IMGATE_PORT}");
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let admin = admin_jwt(admin_pem, "users:write devices:write openim:call");
    let users = json!({"users": [{"user_id": "alice", "nickname": "Alice of the netns"}, {"user_id": "bob", "nickname": "Bob"}]});
    let res = http.post(format!("{base}/v1/admin/users")).bearer_auth(&admin).json(&users).send().await.expect("up");
    assert_eq!(res.status(), 201, "register: {}", res.text().await.unwrap_or_default());

    let res = http
        .post(format!("{base}/v1/admin/openim/user/get_users_info"))
        .bearer_auth(&admin)
        .json(&json!({"userIDs": ["alice"]}))
        .send()
        .await
        .expect("up");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["errCode"], 0, "{body}");
    assert_eq!(body["data"]["usersInfo"][0]["nickname"], "Alice of the netns", "OpenIM's record: {body}");

    let gw = imgate_client::Client::new(&base);
    let key = imgate_client::DeviceKey::generate();
    let res = gw.enroll(&admin, "alice", "phone", 1, &key.public_b64()).await.expect("enroll");
    assert_eq!(res.status(), 201, "enroll");
    let session = gw.handshake(&key, gateway_public, "phone").await.expect("handshake");
    let res = gw.call(&session, "POST", "/v1/messages/user/bob", Some(br#"{"text":"hello from the client host"}"#));
    let res = res.await.expect("send");
    assert_eq!(res.status(), 200);
    let sent: Value = res.json().await.expect("json");
    assert_eq!(sent["server_msg_id"].as_str().map(str::len), Some(32), "OpenIM's message id: {sent}");

    // The msg gateway (10001), through the relay: imgate dials OpenIM and relays its handshake answer.
    let res = gw.call(&session, "POST", "/v1/auth/token", None).await.expect("token");
    assert_eq!(res.status(), 200);
    let token: Value = res.json().await.expect("json");
    let token = token["token"].as_str().expect("token");
    let url = format!(
        "ws://{GATEWAY_PUBLIC_ADDR}:{IMGATE_PORT}/openim/ws?sendID=alice&token={token}&platformID=1\
         &operationID=netns-1&isBackground=false&isMsgResp=true&sdkType=js"
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("relay upgrade");
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("a frame within 10 s");
    let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = first else {
        panic!("expected OpenIM's handshake answer, got {first:?}")
    };
    let answer: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(answer["errCode"], 0, "OpenIM's msg gateway accepted the relayed connection: {answer}");
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Connected,
    /// No answer at all within the bound (packets dropped on the way).
    TimedOut,
    /// An answer that refused (RST, ICMP unreachable): the error.
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Connected => write!(f, "connected"),
            Outcome::TimedOut => write!(f, "no answer within {CONNECT_BOUND:?} (timed out)"),
            Outcome::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// A TCP connect to OpenIM's `port`, from the namespace of the calling thread.
async fn try_connect(port: u16) -> Outcome {
    match tokio::time::timeout(CONNECT_BOUND, tokio::net::TcpStream::connect((OPENIM_ADDR, port))).await {
        Ok(Ok(_)) => Outcome::Connected,
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Err(_) => Outcome::TimedOut,
    }
}

/// One `GET /healthz` to imgate, true on a 200.
fn healthz_ok() -> bool {
    let addr: SocketAddr = format!("{GATEWAY_PUBLIC_ADDR}:{IMGATE_PORT}").parse().expect("addr");
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: imgate\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

fn admin_jwt(private_pem: &str, scope: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(KID.into());
    let claims =
        json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "ops@netns", "scope": scope, "iat": now, "exp": now + 300});
    let key = jsonwebtoken::EncodingKey::from_ed_pem(private_pem.as_bytes()).expect("ed key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

/// imgate's config and key files in `dir`; returns the admin issuer's private key (PEM) and the
/// gateway's Noise public key.
fn write_config(dir: &Path) -> (String, [u8; 32]) {
    let admin = host::keys::generate_admin_key().expect("admin key");
    std::fs::write(dir.join("admin.pub.pem"), &admin.public_pem).expect("write");
    let gw = host::keys::GatewayKey::generate("gw-1");
    std::fs::write(dir.join("gw.key"), gw.secret_b64()).expect("write");
    let secret = openim_emu::Config::default().secret;
    let toml = format!(
        r#"
[server]
listen = "{GATEWAY_PUBLIC_ADDR}:{IMGATE_PORT}"

[openim]
api_url = "http://{OPENIM_ADDR}:{OPENIM_API_PORT}"
ws_url = "ws://{OPENIM_ADDR}:{OPENIM_WS_PORT}"
secret = "{secret}"

[[gateway.keys]]
id = "gw-1"
private_key_file = "gw.key"

[[admin.issuer]]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
algorithms = ["EdDSA"]
keys = [{{ kid = "{KID}", file = "admin.pub.pem" }}]
"#
    );
    std::fs::write(dir.join("imgate.toml"), toml).expect("write");
    (admin.private_pem, gw.public.to_bytes())
}

/// Why this machine cannot run the test, if it cannot.
fn cannot_run() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    match ip_program() {
        Some(_) => None,
        None => Some("`ip` (iproute2) is not installed".into()),
    }
}

/// `ip`, from `PATH` or where iproute2 installs it (a `PATH` without `sbin` is common).
fn ip_program() -> Option<&'static str> {
    static FOUND: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        ["ip", "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].into_iter().find(|p| {
            Command::new(p).arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
        })
    })
}

/// A command running `ip` (found by [`ip_program`]; the test has skipped if there is none).
fn ip_command() -> Command {
    Command::new(ip_program().expect("ip"))
}

/// Runs `f` on a thread of its own that has entered the network namespace `ns` (`ip netns add`'s
/// `/var/run/netns/<ns>`):
/// sockets it opens, and threads it starts, are that namespace's. The caller's thread is unchanged.
fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("namespace file");
                // SAFETY: a valid namespace fd; setns(CLONE_NEWNET) changes this thread's namespace only.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Runs `ip ARGS`, panicking with its stderr when it fails; returns its stdout.
fn ip(args: &[&str]) -> String {
    let out = ip_command().args(args).output().expect("ip runs");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The three namespaces and their two veth pairs; deleted on drop (which also deletes the veths).
struct Namespaces(u32);

impl Namespaces {
    fn name(&self, role: char) -> String {
        format!("ig{role}-{}", self.0)
    }

    fn create(pid: u32) -> Namespaces {
        // The guard exists first: a failure below deletes whatever was created.
        let net = Namespaces(pid);
        let (c, g, i) = (net.name('c'), net.name('g'), net.name('i'));
        for ns in [&c, &g, &i] {
            // Left over by a killed run with the same pid: start clean.
            let _ = ip_command().args(["netns", "del", ns]).stderr(Stdio::null()).status();
            ip(&["netns", "add", ns]);
        }
        ip(&["-n", &c, "link", "add", "c0", "type", "veth", "peer", "name", "g0", "netns", &g]);
        ip(&["-n", &g, "link", "add", "g1", "type", "veth", "peer", "name", "i0", "netns", &i]);
        for (ns, dev, addr) in [
            (&c, "c0", CLIENT_ADDR),
            (&g, "g0", GATEWAY_PUBLIC_ADDR),
            (&g, "g1", GATEWAY_INTERNAL_ADDR),
            (&i, "i0", OPENIM_ADDR),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        for ns in [&c, &g, &i] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // Routes that would carry a forwarded connection both ways: only the imgate host refusing to
        // forward stands between the client and OpenIM.
        ip(&["-n", &c, "route", "add", "10.231.2.0/24", "via", GATEWAY_PUBLIC_ADDR]);
        ip(&["-n", &i, "route", "add", "10.231.1.0/24", "via", GATEWAY_INTERNAL_ADDR]);
        net
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for role in ['c', 'g', 'i'] {
            let _ = ip_command().args(["netns", "del", &self.name(role)]).stderr(Stdio::null()).status();
        }
    }
}

/// `ip netns exec` execs imgate in place, so this child is imgate itself: killed and reaped on drop.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(pid: u32) -> TempDir {
        let dir = std::env::temp_dir().join(format!("imgate-isolation-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
