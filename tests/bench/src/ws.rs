//! The WebSocket relay section (issue 13): how many relayed idle connections one imgate holds and
//! what each costs it in memory, and the latency the relay adds to a send (1003) over the same send
//! made directly to OpenIM's msg gateway (here the emulator's).
//!
//! Idle: N OpenIM-SDK connections through `GET /openim/ws` (bearer tokens of a few users, many
//! connections each: the relay dials OpenIM with that user's one cached OpenIM token, so OpenIM
//! kicks none of them), opened with a bounded number of handshakes in flight and held all at once
//! on a gateway that does nothing else; imgate's RSS (VmRSS) before and after, its open files and
//! its `imgate_ws_connections` gauge; then one 1001 round trip on each (each of them relayed end to
//! end), RSS again, and close. N is clamped to what the open-file limits allow (imgate holds two
//! descriptors per relayed connection), and the report says so and why.
//!
//! Latency: closed loops of c connections, each sending a text message (1003, contentType 101,
//! sessionType 1, to the peer user) and timing it from the frame written to its `Resp` (same
//! `msgIncr`) read — directly to the emulator's msg gateway with an OpenIM user token, through the
//! relay, and through the relay of the gateway whose `send_text_to_user` chain holds the
//! content-filter plugin; the cases interleaved round by round as the HTTP cases are. Every answer
//! is checked; before each run one send carrying a filtered word checks what OpenIM received (the
//! push of the message back to its sender): unchanged directly and through the plain relay, masked
//! through the plugin chain.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use openim_wire::{ident, pb, Codec, Encoding, Req, Resp};
use prost::Message as _;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::load::{new_hist, Errors, RunResult};
use crate::procs;
use crate::report::RoundResult;
use crate::setup::{Env, PEER};

type Ws = WebSocketStream<TcpStream>;

/// `sdkType=js`: OpenIM's JSON envelope, what the JS SDK and the e2e suites speak.
const CODEC: Codec = Codec { encoding: Encoding::Json, gzip: false };
/// Every WebSocket user of the bench logs in on platform 1 (the relay's sessions are enrolled so).
const PLATFORM: i32 = 1;
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one frame before it counts as a transport error.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Descriptors left free beyond the held connections' (OpenIM calls, a handshake in flight, logs).
const FD_RESERVE: u64 = 16;
/// What imgate keeps of its open-file limit for other than relayed connections: its reserve
/// (`host::server::FD_RESERVE`, 64), the metrics listener's 16 and its HTTP listener's
/// `server.max_connections` (256 in the bench's configs) counted 4/3 (`server::fit_to_fd_limit`).
const IMGATE_FD_RESERVE: u64 = 64 + 16 + 256 * 4 / 3;
/// Whether the measured sends are pushed back to their sender too (OpenIM's default,
/// `senderSync`): on, as in a real deployment. (It needs TCP_NODELAY on the emulator's side, as
/// Go sets it; without it the reply written right after the push waited for a delayed ACK.)
const SENDER_SYNC: bool = true;
/// A word of the content-filter's list (`setup.rs`), masked by the plugin case.
const FILTERED_WORD: &str = "spoiler";

pub(crate) struct WsSettings {
    /// Idle connections to hold at once (before the open-file clamp).
    pub(crate) idle: usize,
    /// Handshakes in flight while opening them.
    pub(crate) open_concurrency: usize,
    /// Wait after the last one is open before imgate's memory is read.
    pub(crate) settle: Duration,
    /// Measured sends per case, concurrency level and round.
    pub(crate) sends: u64,
    pub(crate) concurrency: Vec<usize>,
    pub(crate) rounds: u32,
    /// Debug builds at a tiny scale: the goals are not judged.
    pub(crate) smoke: bool,
}

/// Why one connection or frame went wrong.
#[derive(Debug)]
enum Fail {
    /// Connect, upgrade, I/O, a timeout, a closed connection.
    Transport(String),
    /// The handshake was answered with an errCode.
    Refused(String),
    /// A reply that is not the expected one.
    Answer(String),
}

fn record(errors: &mut Errors, f: Fail) {
    match f {
        Fail::Transport(m) => {
            errors.transport += 1;
            errors.note(m);
        }
        Fail::Refused(m) => {
            errors.status += 1;
            errors.note(m);
        }
        Fail::Answer(m) => {
            errors.answer += 1;
            errors.note(m);
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// `127.0.0.1:port` of an `http://` URL.
fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// Opens an SDK connection (`isMsgResp=true`) and reads its handshake answer, which must be
/// errCode 0. `path` is `/openim/ws` on imgate; the emulator answers on any path.
async fn open(addr: &str, path: &str, user: &str, token: &str, operation_id: &str) -> Result<Ws, Fail> {
    let connect = tokio::time::timeout(OPEN_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| Fail::Transport(format!("connect {addr}: timed out")))?;
    let stream = connect.map_err(|e| Fail::Transport(format!("connect {addr}: {e}")))?;
    stream.set_nodelay(true).map_err(|e| Fail::Transport(e.to_string()))?;
    let url = format!(
        "ws://{addr}{path}?sendID={user}&token={token}&platformID={PLATFORM}&operationID={operation_id}\
         &isBackground=false&isMsgResp=true&sdkType=js"
    );
    // Small buffers, as the relay's own: thousands of them are held.
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let handshake = async {
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
            .await
            .map_err(|e| Fail::Transport(format!("upgrade: {e}")))?;
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str())
                    .map_err(|_| Fail::Answer(format!("handshake answer is not JSON: {}", t.as_str())))?;
                if v["errCode"] == 0 {
                    Ok(ws)
                } else {
                    Err(Fail::Refused(format!("handshake refused: {}", t.as_str())))
                }
            }
            Some(Ok(other)) => Err(Fail::Answer(format!("handshake answer is not a text frame: {other:?}"))),
            Some(Err(e)) => Err(Fail::Transport(format!("no handshake answer: {e}"))),
            None => Err(Fail::Transport("closed before the handshake answer".into())),
        }
    };
    tokio::time::timeout(OPEN_TIMEOUT, handshake)
        .await
        .map_err(|_| Fail::Transport(format!("handshake not answered within {OPEN_TIMEOUT:?}")))?
}

/// The next server frame, decoded (heartbeats skipped).
async fn next_resp(ws: &mut Ws) -> Result<Resp, Fail> {
    loop {
        let m = tokio::time::timeout(FRAME_TIMEOUT, ws.next())
            .await
            .map_err(|_| Fail::Transport(format!("no frame within {FRAME_TIMEOUT:?}")))?;
        match m {
            Some(Ok(Message::Binary(b))) => {
                return CODEC.decode_resp(&b).map_err(|e| Fail::Answer(format!("undecodable frame: {e}")))
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Text(t))) => return Err(Fail::Answer(format!("text frame: {}", t.as_str()))),
            Some(Ok(Message::Close(f))) => return Err(Fail::Transport(format!("closed by the server: {f:?}"))),
            Some(Err(e)) => return Err(Fail::Transport(e.to_string())),
            None => return Err(Fail::Transport("connection ended".into())),
        }
    }
}

/// Sends `req` and reads until its reply (same identifier and `msgIncr`); pushes (the sender's
/// copy of each message it sends) are skipped.
async fn exchange(ws: &mut Ws, req: &Req) -> Result<Resp, Fail> {
    ws.send(Message::Binary(CODEC.encode_req(req).into())).await.map_err(|e| Fail::Transport(format!("send: {e}")))?;
    loop {
        let r = next_resp(ws).await?;
        if r.req_identifier == req.req_identifier && r.msg_incr == req.msg_incr {
            return Ok(r);
        }
    }
}

/// A 1003 frame: a text message from `user` to the peer, clientMsgID `{tag}-{n}`. Without
/// `sender_sync` (option `senderSync: false`) OpenIM does not push the message back to its sender.
fn send_req(user: &str, tag: &str, n: u64, text: &str, sender_sync: bool) -> Req {
    let id = format!("{tag}-{n}");
    let msg = pb::sdkws::MsgData {
        send_id: user.into(),
        recv_id: PEER.into(),
        client_msg_id: id.clone(),
        sender_platform_id: PLATFORM,
        session_type: 1,
        msg_from: 100,
        content_type: 101,
        content: json!({ "content": text }).to_string().into_bytes(),
        create_time: now_ms(),
        options: if sender_sync { Default::default() } else { [("senderSync".to_owned(), false)].into() },
        ..Default::default()
    };
    Req {
        req_identifier: ident::SEND_MSG,
        token: String::new(),
        send_id: user.into(),
        operation_id: id.clone(),
        msg_incr: id,
        data: msg.encode_to_vec(),
    }
}

/// A send's reply must be errCode 0 and a `SendMsgResp` with a server id and our client id.
fn check_sent(r: &Resp, client_msg_id: &str) -> Result<(), Fail> {
    if r.err_code != 0 {
        return Err(Fail::Answer(format!("1003 answered errCode {} {}", r.err_code, r.err_msg)));
    }
    let s = pb::msg::SendMsgResp::decode(&r.data[..]).map_err(|e| Fail::Answer(format!("not a SendMsgResp: {e}")))?;
    if s.server_msg_id.is_empty() || s.client_msg_id != client_msg_id {
        return Err(Fail::Answer(format!("wrong SendMsgResp: {s:?}")));
    }
    Ok(())
}

/// The text of message `client_msg_id` in a 2001 push, if it is there.
fn pushed_text(r: &Resp, client_msg_id: &str) -> Option<String> {
    if r.req_identifier != ident::PUSH_MSG {
        return None;
    }
    let push = pb::sdkws::PushMessages::decode(&r.data[..]).ok()?;
    let m = push.msgs.values().flat_map(|p| &p.msgs).find(|m| m.client_msg_id == client_msg_id)?;
    let content: Value = serde_json::from_slice(&m.content).ok()?;
    content["content"].as_str().map(str::to_owned)
}

/// One send carrying a filtered word; what OpenIM received (its push to the sender) must be the
/// text as sent, or masked when `masked`.
async fn check_delivery(ws: &mut Ws, user: &str, tag: &str, masked: bool) -> Result<(), Fail> {
    let text = format!("imgate-bench checks what is delivered: {FILTERED_WORD}");
    let req = send_req(user, tag, 0, &text, true);
    let want = if masked { text.replace(FILTERED_WORD, &"*".repeat(FILTERED_WORD.len())) } else { text.clone() };
    ws.send(Message::Binary(CODEC.encode_req(&req).into())).await.map_err(|e| Fail::Transport(format!("send: {e}")))?;
    let (mut replied, mut delivered) = (false, None);
    while !replied || delivered.is_none() {
        let r = next_resp(ws).await?;
        if r.req_identifier == ident::SEND_MSG && r.msg_incr == req.msg_incr {
            check_sent(&r, &req.msg_incr)?;
            replied = true;
        } else if let Some(t) = pushed_text(&r, &req.msg_incr) {
            delivered = Some(t);
        }
    }
    match delivered {
        Some(got) if got == want => Ok(()),
        got => Err(Fail::Answer(format!("OpenIM received {got:?}, expected {want:?}"))),
    }
}

/// A 1001 round trip (GetNewestSeq of the connection's own user): proves the connection is relayed
/// end to end.
async fn newest_seq(ws: &mut Ws, user: &str, n: usize) -> Result<(), Fail> {
    let req = Req {
        req_identifier: ident::GET_NEWEST_SEQ,
        token: String::new(),
        send_id: user.into(),
        operation_id: format!("bench-idle-{n}"),
        msg_incr: format!("idle-{n}"),
        data: pb::sdkws::GetMaxSeqReq { user_id: user.into() }.encode_to_vec(),
    };
    let r = exchange(ws, &req).await?;
    if r.err_code != 0 {
        return Err(Fail::Answer(format!("1001 answered errCode {} {}", r.err_code, r.err_msg)));
    }
    pb::sdkws::GetMaxSeqResp::decode(&r.data[..]).map_err(|e| Fail::Answer(format!("not a GetMaxSeqResp: {e}")))?;
    Ok(())
}

/// `imgate_ws_connections` from a gateway's metrics listener.
async fn ws_gauge(http: &reqwest::Client, url: &str) -> Option<f64> {
    let text = http.get(url).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix("imgate_ws_connections "))?.trim().parse().ok()
}

/// Polls `f` every 200 ms until it holds or `limit` passes; whether it held.
async fn until<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A process's RSS once it stops moving: read every 500 ms until two readings agree within 0.5%
/// (or 64 KiB), at most 10 s.
async fn settled_rss(pid: u32) -> Option<u64> {
    let mut last = procs::rss_kib(pid)?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = procs::rss_kib(pid)?;
        if now.abs_diff(last) <= (now / 200).max(64) {
            return Some(now);
        }
        last = now;
    }
    Some(last)
}

/// Per-connection KiB between two RSS readings.
fn per_conn(before: Option<u64>, after: Option<u64>, n: usize) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if n > 0 => Some((a as f64 - b as f64) / n as f64),
        _ => None,
    }
}

/// The idle-connection measurement.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct IdleResult {
    pub(crate) target: usize,
    /// Connections opened: the target, or less when an open-file limit does not allow it.
    pub(crate) attempted: usize,
    /// Why `attempted` is below `target`.
    pub(crate) clamp_reason: Option<String>,
    /// Open at once, handshake answered with errCode 0.
    pub(crate) held: usize,
    pub(crate) open_errors: Errors,
    pub(crate) users: usize,
    pub(crate) open_concurrency: usize,
    pub(crate) open_secs: f64,
    pub(crate) opens_per_sec: f64,
    /// Connect + upgrade + handshake answer, with `open_concurrency` in flight.
    pub(crate) open_p50_us: u64,
    pub(crate) open_p99_us: u64,
    pub(crate) open_max_us: u64,
    /// imgate's CPU time over the opening, per connection opened.
    pub(crate) imgate_cpu_us_per_open: f64,
    /// imgate's open-file limit (soft, hard), its descriptors before opening and while holding.
    pub(crate) imgate_fd_limit: Option<(u64, u64)>,
    pub(crate) imgate_fds_before: Option<usize>,
    pub(crate) imgate_fds_held: Option<usize>,
    /// imgate's own count of relayed connections while holding.
    pub(crate) imgate_ws_gauge: Option<f64>,
    /// imgate's VmRSS (KiB): before opening, all held (settled), after one 1001 on each, after
    /// closing them all.
    pub(crate) rss_before_kib: Option<u64>,
    pub(crate) rss_idle_kib: Option<u64>,
    pub(crate) rss_used_kib: Option<u64>,
    pub(crate) rss_closed_kib: Option<u64>,
    /// (all held − before) ÷ held: the headline figure.
    pub(crate) kib_per_idle_conn: Option<f64>,
    /// (after one 1001 each − before) ÷ held.
    pub(crate) kib_per_used_conn: Option<f64>,
    pub(crate) emu_rss_before_kib: Option<u64>,
    pub(crate) emu_rss_idle_kib: Option<u64>,
    pub(crate) emu_kib_per_conn: Option<f64>,
    /// Connections that answered a 1001 round trip while all were held.
    pub(crate) verified: usize,
    pub(crate) verify_errors: Errors,
    pub(crate) verify_secs: f64,
}

impl IdleResult {
    fn failures(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.held < self.attempted || self.held == 0 {
            f.push(format!(
                "WebSocket idle: {} of {} connections opened; errors {:?}",
                self.held, self.attempted, self.open_errors
            ));
        }
        if self.verified < self.held {
            f.push(format!(
                "WebSocket idle: {} of {} held connections answered a 1001 round trip; errors {:?}",
                self.verified, self.held, self.verify_errors
            ));
        }
        if let Some(g) = self.imgate_ws_gauge {
            if g as usize != self.held {
                f.push(format!("WebSocket idle: imgate_ws_connections is {g} while {} are held", self.held));
            }
        }
        f
    }
}

/// How many connections the three processes' open-file limits allow, and why fewer than `target`.
fn clamp(
    target: usize,
    imgate: Option<((u64, u64), usize)>,
    emu: Option<((u64, u64), usize)>,
    me: Option<((u64, u64), usize)>,
) -> (usize, Option<String>) {
    // (process, descriptors per connection, soft limit, hard limit, open now, connections that fit)
    let mut fits = Vec::new();
    for (name, per, keep, l) in
        [("imgate", 2, IMGATE_FD_RESERVE, imgate), ("the emulator", 1, 0, emu), ("the harness", 1, 0, me)]
    {
        if let Some(((soft, hard), open)) = l {
            let max = soft.saturating_sub(open as u64 + FD_RESERVE + keep) / per;
            fits.push((name, per, soft, hard, open, usize::try_from(max).unwrap_or(usize::MAX)));
        }
    }
    let Some(&(name, per, soft, hard, open, max)) = fits.iter().min_by_key(|f| f.5) else { return (target, None) };
    if max >= target {
        return (target, None);
    }
    let held = if per == 2 {
        "2 descriptors per relayed connection (the client's socket and the relay's socket to OpenIM)"
    } else {
        "1 descriptor per connection"
    };
    let reason = format!(
        "the open-file limit (RLIMIT_NOFILE) of {name} is {soft} (hard limit {hard}: no process goes above its hard \
         limit, and raising it takes the administrator); {name} holds {held} and had {open} open before, \
         {FD_RESERVE} kept free (imgate also keeps {IMGATE_FD_RESERVE} for its HTTP listener, metrics and files): \
         at most {max}"
    );
    (max, Some(reason))
}

/// Opens the idle connections, holds them, measures, closes.
async fn idle(env: &mut Env, s: &WsSettings, http: &reqwest::Client) -> Result<IdleResult, String> {
    let ws = env.ws.as_ref().ok_or("the WebSocket gateway was not started")?;
    let pid = ws.gateway.proc.pid();
    let emu = env.emu.pid();
    let addr = addr_of(&ws.gateway.url);
    let users = ws.idle.clone();
    let metrics = ws.metrics_url.clone();
    let mut r =
        IdleResult { target: s.idle, users: users.len(), open_concurrency: s.open_concurrency, ..Default::default() };

    // Warm-up: one connection per user (mints and caches each user's OpenIM token, warms the
    // gateway's pools), each used once, then closed; the measure starts from there.
    let mut warm = Vec::new();
    for (i, (user, token)) in users.iter().enumerate() {
        let mut c = open(&addr, "/openim/ws", user, token, &format!("bench-warm-{i}"))
            .await
            .map_err(|e| format!("WebSocket warm-up: {e:?}"))?;
        newest_seq(&mut c, user, i).await.map_err(|e| format!("WebSocket warm-up: {e:?}"))?;
        warm.push(c);
    }
    for mut c in warm {
        let _ = c.close(None).await;
    }
    let gauge_is_zero = || {
        let m = &metrics;
        async move { ws_gauge(http, m).await == Some(0.0) }
    };
    if !until(Duration::from_secs(10), gauge_is_zero).await {
        return Err("WebSocket warm-up: imgate_ws_connections did not return to 0".into());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The clamp: every process must hold its descriptors.
    let limits = |p: u32| Some((procs::open_file_limit(p)?, procs::open_fds(p)?));
    r.imgate_fd_limit = procs::open_file_limit(pid);
    r.imgate_fds_before = procs::open_fds(pid);
    let (attempted, reason) = clamp(s.idle, limits(pid), limits(emu), limits(std::process::id()));
    r.attempted = attempted;
    r.clamp_reason = reason;
    if let Some(why) = &r.clamp_reason {
        println!("  WebSocket idle: {attempted} connections instead of {}: {why}", s.idle);
    }

    r.rss_before_kib = settled_rss(pid).await;
    r.emu_rss_before_kib = procs::rss_kib(emu);
    let cpu0 = procs::cpu_ticks(pid);
    let started = Instant::now();
    let mut hist = new_hist()?;
    let mut held: Vec<(usize, Ws)> = Vec::with_capacity(attempted);
    {
        let jobs = (0..attempted).map(|i| {
            let u = i % users.len().max(1);
            let (user, token) = (&users[u].0, &users[u].1);
            let addr = addr.as_str();
            async move {
                let t = Instant::now();
                let res = open(addr, "/openim/ws", user, token, &format!("bench-idle-{i}")).await;
                (u, res, t.elapsed())
            }
        });
        let mut opened = futures_util::stream::iter(jobs).buffer_unordered(s.open_concurrency.max(1));
        while let Some((u, res, took)) = opened.next().await {
            match res {
                Ok(c) => {
                    hist.saturating_record(micros(took));
                    held.push((u, c));
                }
                Err(e) => record(&mut r.open_errors, e),
            }
        }
    }
    let open_time = started.elapsed();
    let cpu1 = procs::cpu_ticks(pid);
    r.held = held.len();
    r.open_secs = open_time.as_secs_f64();
    r.opens_per_sec = if r.open_secs > 0.0 { r.held as f64 / r.open_secs } else { 0.0 };
    r.open_p50_us = hist.value_at_quantile(0.5);
    r.open_p99_us = hist.value_at_quantile(0.99);
    r.open_max_us = hist.max();
    r.imgate_cpu_us_per_open =
        cpu1.saturating_sub(cpu0) as f64 * 1e6 / procs::clock_ticks() as f64 / r.held.max(1) as f64;
    println!(
        "  WebSocket idle: {} of {} connections open in {:.1} s ({:.0}/s, handshake p50 {} µs, p99 {} µs), {} failed",
        r.held,
        attempted,
        r.open_secs,
        r.opens_per_sec,
        r.open_p50_us,
        r.open_p99_us,
        r.open_errors.total()
    );

    // Held, settled: the figures.
    tokio::time::sleep(s.settle).await;
    env.check_alive()?;
    r.rss_idle_kib = settled_rss(pid).await;
    r.emu_rss_idle_kib = procs::rss_kib(emu);
    r.imgate_fds_held = procs::open_fds(pid);
    r.imgate_ws_gauge = ws_gauge(http, &metrics).await;
    r.kib_per_idle_conn = per_conn(r.rss_before_kib, r.rss_idle_kib, r.held);
    r.emu_kib_per_conn = per_conn(r.emu_rss_before_kib, r.emu_rss_idle_kib, r.held);

    // Every held connection relayed end to end: a 1001 round trip on each, all still open.
    let verify_started = Instant::now();
    {
        let users = &users;
        let checks = held.iter_mut().enumerate().map(|(n, (u, c))| async move { newest_seq(c, &users[*u].0, n).await });
        let mut checked = futures_util::stream::iter(checks).buffer_unordered(s.open_concurrency.max(1));
        while let Some(res) = checked.next().await {
            match res {
                Ok(()) => r.verified += 1,
                Err(e) => record(&mut r.verify_errors, e),
            }
        }
    }
    r.verify_secs = verify_started.elapsed().as_secs_f64();
    r.rss_used_kib = settled_rss(pid).await;
    r.kib_per_used_conn = per_conn(r.rss_before_kib, r.rss_used_kib, r.held);

    // Close them all (the client side goes away, as a device losing its network would).
    drop(held);
    let back = r.imgate_fds_before.unwrap_or(0) + FD_RESERVE as usize;
    until(Duration::from_secs(30), || async move { procs::open_fds(pid).is_some_and(|n| n <= back) }).await;
    r.rss_closed_kib = settled_rss(pid).await;
    let mib = |k: Option<u64>| k.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0));
    println!(
        "  WebSocket idle: imgate RSS {} MiB before, {} MiB with {} held ({} KiB each), {} MiB after one 1001 each ({} verified in {:.1} s), {} MiB after closing",
        mib(r.rss_before_kib),
        mib(r.rss_idle_kib),
        r.held,
        r.kib_per_idle_conn.map_or("?".into(), |k| format!("{k:.1}")),
        mib(r.rss_used_kib),
        r.verified,
        r.verify_secs,
        mib(r.rss_closed_kib)
    );
    Ok(r)
}

/// The three latency cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum WsCase {
    Direct,
    Relayed,
    RelayedPlugin,
}

impl WsCase {
    const ALL: [WsCase; 3] = [WsCase::Direct, WsCase::Relayed, WsCase::RelayedPlugin];

    pub(crate) fn label(self) -> &'static str {
        match self {
            WsCase::Direct => "emulator msg gateway, direct",
            WsCase::Relayed => "imgate /openim/ws relay, no plugin",
            WsCase::RelayedPlugin => "imgate relay + content-filter plugin",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            WsCase::Direct => "d",
            WsCase::Relayed => "r",
            WsCase::RelayedPlugin => "p",
        }
    }
}

/// Where a case's connections go.
struct Party {
    addr: String,
    path: &'static str,
    /// `(user, token)`, one per connection.
    users: Vec<(String, String)>,
    /// The gateway whose CPU time is the relay's cost (none for the direct case).
    gateway: Option<u32>,
    /// What OpenIM must receive of a filtered word.
    masked: bool,
}

fn party(env: &Env, case: WsCase) -> Result<Party, String> {
    let ws = env.ws.as_ref().ok_or("the WebSocket gateway was not started")?;
    Ok(match case {
        WsCase::Direct => {
            Party { addr: ws.emu_ws_addr.clone(), path: "/", users: ws.direct.clone(), gateway: None, masked: false }
        }
        WsCase::Relayed => Party {
            addr: addr_of(&ws.gateway.url),
            path: "/openim/ws",
            users: ws.relay.clone(),
            gateway: Some(ws.gateway.proc.pid()),
            masked: false,
        },
        WsCase::RelayedPlugin => Party {
            addr: addr_of(&env.plugged.url),
            path: "/openim/ws",
            users: ws.plugged.clone(),
            gateway: Some(env.plugged.proc.pid()),
            masked: true,
        },
    })
}

/// What one connection of a latency run saw.
struct ConnResult {
    hist: Histogram<u64>,
    errors: Errors,
    ws: Ws,
}

/// One connection's closed loop: `warmup` unmeasured sends, the barrier, `sends` measured ones.
async fn sender(
    mut ws: Ws,
    user: String,
    tag: String,
    warmup: u64,
    sends: u64,
    barrier: Arc<tokio::sync::Barrier>,
) -> Result<ConnResult, String> {
    let mut hist = new_hist()?;
    let mut errors = Errors::default();
    let text = "hello from imgate-bench, a short text message";
    let mut alive = true;
    for n in 1..=warmup {
        let req = send_req(&user, &tag, n, text, SENDER_SYNC);
        if let Err(e) = exchange(&mut ws, &req).await.and_then(|r| check_sent(&r, &req.msg_incr)) {
            alive = !matches!(e, Fail::Transport(_));
            record(&mut errors, e);
            if !alive {
                break;
            }
        }
    }
    barrier.wait().await;
    for n in warmup + 1..=warmup + sends {
        if !alive {
            break;
        }
        let req = send_req(&user, &tag, n, text, SENDER_SYNC);
        let begin = Instant::now();
        match exchange(&mut ws, &req).await {
            Ok(r) => {
                let took = begin.elapsed();
                match check_sent(&r, &req.msg_incr) {
                    Ok(()) => hist.saturating_record(micros(took)),
                    Err(e) => record(&mut errors, e),
                }
            }
            Err(e) => {
                alive = !matches!(e, Fail::Transport(_));
                record(&mut errors, e);
            }
        }
    }
    Ok(ConnResult { hist, errors, ws })
}

/// One run of `case` at `conc` connections: open, check delivery, warm up, measure, close.
async fn run_case(
    env: &Env,
    case: WsCase,
    conc: usize,
    s: &WsSettings,
    round: u32,
) -> Result<(RoundResult, Histogram<u64>), String> {
    let p = party(env, case)?;
    let emu = env.emu.pid();
    let me = std::process::id();
    let mut errors = Errors::default();
    let mut conns = Vec::new();
    for i in 0..conc.min(p.users.len()) {
        let (user, token) = &p.users[i];
        match open(&p.addr, p.path, user, token, &format!("bench-{}{round}-{conc}-{i}", case.tag())).await {
            Ok(c) => conns.push((user.clone(), c)),
            Err(e) => record(&mut errors, e),
        }
    }
    if let Some((user, c)) = conns.first_mut() {
        let tag = format!("bench-{}{round}c{conc}check", case.tag());
        if let Err(e) = check_delivery(c, user, &tag, p.masked).await {
            record(&mut errors, e);
        }
    }
    let per_conn = s.sends.div_ceil(conc.max(1) as u64);
    let warmup = (per_conn / 10).max(5);
    let barrier = Arc::new(tokio::sync::Barrier::new(conns.len() + 1));
    let mut tasks = Vec::new();
    for (i, (user, c)) in conns.into_iter().enumerate() {
        let tag = format!("bench-{}{round}c{conc}i{i}", case.tag());
        tasks.push(tokio::spawn(sender(c, user, tag, warmup, per_conn, barrier.clone())));
    }
    barrier.wait().await;
    // Nothing else runs on this thread until the next await: the window starts with the sends.
    let sample = || [p.gateway.map_or(0, procs::cpu_ticks), procs::cpu_ticks(emu), procs::cpu_ticks(me)];
    let cpu0 = sample();
    let started = Instant::now();
    let mut hist = new_hist()?;
    let mut open = Vec::new();
    for t in tasks {
        let r = t.await.map_err(|e| format!("WebSocket sender panicked: {e}"))??;
        hist.add(&r.hist).map_err(|e| e.to_string())?;
        errors.merge(&r.errors);
        open.push(r.ws);
    }
    let elapsed = started.elapsed();
    let cpu1 = sample();
    for mut c in open {
        let _ = tokio::time::timeout(Duration::from_secs(2), c.close(None)).await;
    }
    let run = RunResult { ok: hist.len(), hist, errors, elapsed };
    let ticks = [0, 1, 2].map(|j| cpu1[j].saturating_sub(cpu0[j]));
    Ok((RoundResult::new(round, &run, ticks, procs::clock_ticks()), run.hist))
}

/// `(round, p50 µs, p99 µs)` of each round of a case.
type RoundPercentiles = Vec<(u32, u64, u64)>;

/// Added latency of a relayed case over the direct one at the same concurrency (µs).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Added {
    pub(crate) p50_us: i64,
    pub(crate) p99_us: i64,
    pub(crate) p999_us: i64,
    /// Relayed − direct p50 of each round (the two ran back to back in it).
    pub(crate) per_round_p50_us: Vec<i64>,
    pub(crate) per_round_p99_us: Vec<i64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct WsSummary {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// Mean of the rounds' sends per second.
    pub(crate) throughput: f64,
    /// Over every round's latencies together.
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    /// CPU time per send (µs): the relaying gateway (none for the direct case), the emulator, the
    /// harness.
    pub(crate) gateway_cpu_us: Option<f64>,
    pub(crate) emulator_cpu_us: f64,
    pub(crate) client_cpu_us: f64,
    /// (max − min) / mean of the rounds' p50s; absent with one round.
    pub(crate) p50_spread: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct WsCaseResult {
    pub(crate) case: WsCase,
    pub(crate) label: &'static str,
    pub(crate) concurrency: usize,
    pub(crate) rounds: Vec<RoundResult>,
    pub(crate) summary: WsSummary,
    /// Relayed cases: over the direct case at the same concurrency.
    pub(crate) added_over_direct: Option<Added>,
    #[serde(skip)]
    hist: Option<Histogram<u64>>,
}

impl WsCaseResult {
    fn clean(&self) -> bool {
        self.summary.errors == 0 && self.summary.ok > 0
    }

    fn summarize(&mut self) {
        let n = self.rounds.len();
        if n == 0 {
            return;
        }
        let ok: u64 = self.rounds.iter().map(|r| r.ok).sum();
        let errors: u64 = self.rounds.iter().map(|r| r.errors.total()).sum();
        let per_send = |j: usize| crate::report::cpu_us_per(&self.rounds, j, ok + errors);
        let p50s: Vec<f64> = self.rounds.iter().map(|r| r.p50_us as f64).collect();
        let spread = crate::report::spread(&p50s);
        let q = |p: f64| self.hist.as_ref().map_or(0, |h| h.value_at_quantile(p));
        self.summary = WsSummary {
            ok,
            errors,
            throughput: self.rounds.iter().map(|r| r.throughput).sum::<f64>() / n as f64,
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            gateway_cpu_us: (self.case != WsCase::Direct).then(|| per_send(0)),
            emulator_cpu_us: per_send(1),
            client_cpu_us: per_send(2),
            p50_spread: spread,
        };
    }
}

/// The section's results, in report.json under `websocket` and in report.md.
#[derive(Serialize)]
pub(crate) struct WsReport {
    /// A smoke run: timings meaningless, goals not judged.
    pub(crate) smoke: bool,
    pub(crate) settings: Value,
    pub(crate) idle: Option<IdleResult>,
    pub(crate) latency: Vec<WsCaseResult>,
    pub(crate) notes: Vec<String>,
    pub(crate) seconds: f64,
}

/// Runs the section: the idle connections first (on a gateway that has done nothing else yet),
/// then the latency rounds.
pub(crate) async fn measure(env: &mut Env, s: &WsSettings) -> Result<WsReport, String> {
    let started = Instant::now();
    let http =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    println!("WebSocket relay: {} idle connections, then latency rounds", s.idle);
    let idle = if s.idle > 0 { Some(idle(env, s, &http).await?) } else { None };

    let mut latency: Vec<WsCaseResult> = Vec::new();
    for &conc in &s.concurrency {
        for case in WsCase::ALL {
            latency.push(WsCaseResult {
                case,
                label: case.label(),
                concurrency: conc,
                rounds: Vec::new(),
                summary: WsSummary::default(),
                added_over_direct: None,
                hist: None,
            });
        }
    }
    for round in 1..=s.rounds {
        println!("WebSocket round {round}/{}", s.rounds);
        for &conc in &s.concurrency {
            for k in 0..WsCase::ALL.len() {
                let case = WsCase::ALL[(k + round as usize - 1) % WsCase::ALL.len()];
                env.check_alive()?;
                let (rr, h) = run_case(env, case, conc, s, round).await?;
                println!(
                    "  1003 text send c={conc:<3} {:<40} {:>8.0} sends/s  p50 {:>6} µs  p99 {:>6} µs  errors {}",
                    case.label(),
                    rr.throughput,
                    rr.p50_us,
                    rr.p99_us,
                    rr.errors.total()
                );
                if let Some(c) = latency.iter_mut().find(|c| c.case == case && c.concurrency == conc) {
                    match c.hist.as_mut() {
                        Some(m) => m.add(&h).map_err(|e| e.to_string())?,
                        None => c.hist = Some(h),
                    }
                    c.rounds.push(rr);
                }
            }
        }
    }
    for c in latency.iter_mut() {
        c.summarize();
    }
    // Added latency: each relayed case over the direct one, overall and round by round.
    let direct: Vec<(usize, WsSummary, RoundPercentiles)> = latency
        .iter()
        .filter(|c| c.case == WsCase::Direct && c.clean())
        .map(|c| (c.concurrency, c.summary.clone(), c.rounds.iter().map(|r| (r.round, r.p50_us, r.p99_us)).collect()))
        .collect();
    for c in latency.iter_mut().filter(|c| c.case != WsCase::Direct && c.clean()) {
        let Some((_, d, rounds)) = direct.iter().find(|d| d.0 == c.concurrency) else { continue };
        let diff = |a: u64, b: u64| a as i64 - b as i64;
        let by_round = |f: fn(&(u32, u64, u64)) -> u64, g: fn(&RoundResult) -> u64| {
            c.rounds
                .iter()
                .filter_map(|r| rounds.iter().find(|x| x.0 == r.round).map(|x| diff(g(r), f(x))))
                .collect::<Vec<_>>()
        };
        c.added_over_direct = Some(Added {
            p50_us: diff(c.summary.p50_us, d.p50_us),
            p99_us: diff(c.summary.p99_us, d.p99_us),
            p999_us: diff(c.summary.p999_us, d.p999_us),
            per_round_p50_us: by_round(|x| x.1, |r| r.p50_us),
            per_round_p99_us: by_round(|x| x.2, |r| r.p99_us),
        });
    }
    let settings = json!({
        "idle_target": s.idle, "open_concurrency": s.open_concurrency, "settle_ms": s.settle.as_millis() as u64,
        "sends_per_run": s.sends, "concurrency": s.concurrency, "rounds": s.rounds,
        "envelope": "JSON (sdkType=js), no compression", "platform_id": PLATFORM,
    });
    Ok(WsReport { smoke: s.smoke, settings, idle, latency, notes: notes(s), seconds: started.elapsed().as_secs_f64() })
}

fn notes(s: &WsSettings) -> Vec<String> {
    vec![
        format!("Client: this binary (tokio-tungstenite, one thread), OpenIM SDK handshakes (`GET /openim/ws?sendID=…&token=<bearer>&platformID={PLATFORM}&operationID=…&isBackground=false&isMsgResp=true&sdkType=js`, first frame the text `{{\"errCode\":0,…}}`, checked), JSON envelopes, no compression."),
        format!("Idle connections: opened {} handshakes at a time on a gateway without plugins that serves nothing else (`imgate-ws`), spread over its users (bearer tokens from `POST /v1/auth/token`; the relay dials OpenIM with each user's one cached OpenIM token, so OpenIM kicks none of them). Before opening, one connection per user was opened, used and closed (the users' OpenIM tokens minted, pools warm). Memory = VmRSS from /proc/<pid>/status, read once it stops moving (two readings 0.5 s apart within 0.5%), {} ms after the last connection opened. While held, the relay pings OpenIM every 20 s per connection (`ws.upstream_ping_secs`), as deployed.", s.open_concurrency, s.settle.as_millis()),
        "`[ws] client_idle_timeout_secs = 600` in the bench's configs: an SDK's heartbeat (every 24 s for the Go SDK) would keep a connection alive under the 60 s default; the bench's idle connections send nothing while held.".into(),
        "Held = handshakes answered errCode 0; then each held connection made a 1001 (GetNewestSeq) round trip through the relay to the emulator while all were open, and imgate's own gauge `imgate_ws_connections` and its open descriptors were read.".into(),
        format!("Latency: each connection a closed loop of 1003 sends (text, contentType 101, sessionType 1, to `{PEER}`, who has no connection; a ~45-byte text), timed from the frame written to its reply (same msgIncr) read, one user per connection. {} measured sends per run (split over the connections) after 10% unmeasured warm-up; the runs of the three cases interleaved in each round, the order rotating.", s.sends),
        if SENDER_SYNC {
            "The measured sends keep OpenIM's default `senderSync` (`SENDER_SYNC` in tests/bench/src/ws.rs): the message is pushed back to its sender (2001) right before the reply, so each send is one frame up and two down, as an SDK sees it; both sides set TCP_NODELAY, as Go does.".into()
        } else {
            "The measured sends carry the option `senderSync: false` (`SENDER_SYNC` in tests/bench/src/ws.rs), so each is one frame up and one down.".into()
        },
        "Direct = the emulator's msg gateway with an OpenIM user token (platform 1) of another user set; relayed = imgate `/openim/ws` with a bearer token. Added latency = relayed − direct percentile, at the same concurrency; per round, the two runs of that round.".into(),
        "Plugin case: the gateway of HTTP cases 4-5, whose `send_text_to_user` chain is content-filter (on-request; response-reshaper has no request hook): every relayed text send runs it. Before every run one send carrying a filtered word checks what OpenIM received (its push back to the sender): unchanged directly and through the plain relay, masked through the plugin.".into(),
        "CPU/send = utime+stime from /proc/<pid>/stat over the measured window ÷ sends: the relaying imgate (not applicable to the direct case), the emulator, the harness.".into(),
    ]
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("–".into(), |v| v.to_string())
}

fn mib(k: Option<u64>) -> String {
    k.map_or("–".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

impl WsReport {
    /// Whether a goal was met, written `before` + "met" / "NOT met" + `after`; nothing in a smoke
    /// run (debug builds: no goal is judged).
    fn verdict(&self, met: bool, before: &str, after: &str) -> String {
        match (self.smoke, met) {
            (true, _) => String::new(),
            (false, true) => format!("{before}met{after}"),
            (false, false) => format!("{before}NOT met{after}"),
        }
    }

    /// Every reason the section failed.
    pub(crate) fn failures(&self) -> Vec<String> {
        let mut f = self.idle.as_ref().map(IdleResult::failures).unwrap_or_default();
        for c in self.latency.iter().filter(|c| !c.clean()) {
            let mut errors = Errors::default();
            for r in &c.rounds {
                errors.merge(&r.errors);
            }
            f.push(format!(
                "WebSocket 1003 c={} · {}: {} ok, {} errors (transport {}, refused {}, answer {}) {:?}",
                c.concurrency,
                c.label,
                c.summary.ok,
                c.summary.errors,
                errors.transport,
                errors.status,
                errors.answer,
                errors.samples
            ));
        }
        f
    }

    /// The result tables (also printed at the end of a run).
    pub(crate) fn summary_markdown(&self) -> String {
        let mut s = String::new();
        if let Some(r) = &self.idle {
            s.push_str("### Idle relayed connections\n\n| | |\n|---|--:|\n");
            s.push_str(&format!("| connections asked for (`--ws-idle`) | {} |\n", r.target));
            let held = match &r.clamp_reason {
                Some(why) => format!("{} (of {} attempted: {why})", r.held, r.attempted),
                None => format!("{} (of {} attempted)", r.held, r.attempted),
            };
            s.push_str(&format!("| **held open at once** | {held} |\n"));
            s.push_str(&format!(
                "| **imgate memory per idle relayed connection** (goal ≤ 24 KiB) | **{}** |\n",
                r.kib_per_idle_conn
                    .map_or("–".into(), |k| format!("{k:.1} KiB{}", self.verdict(k <= 24.0, " (", ")")))
            ));
            s.push_str(&format!(
                "| imgate memory per relayed connection after one 1001 each | {} |\n",
                r.kib_per_used_conn.map_or("–".into(), |k| format!("{k:.1} KiB"))
            ));
            s.push_str(&format!(
                "| imgate RSS: before · all held · after one 1001 each · after closing | {} · {} · {} · {} |\n",
                mib(r.rss_before_kib),
                mib(r.rss_idle_kib),
                mib(r.rss_used_kib),
                mib(r.rss_closed_kib)
            ));
            s.push_str(&format!(
                "| time to open them ({} handshakes in flight) | {:.2} s ({:.0}/s) |\n",
                r.open_concurrency, r.open_secs, r.opens_per_sec
            ));
            s.push_str(&format!(
                "| handshake (connect → errCode 0 frame) p50 · p99 · max | {} · {} · {} µs |\n",
                r.open_p50_us, r.open_p99_us, r.open_max_us
            ));
            s.push_str(&format!("| imgate CPU per connection opened | {:.0} µs |\n", r.imgate_cpu_us_per_open));
            s.push_str(&format!(
                "| imgate open files: limit (soft/hard) · before · held | {} · {} · {} |\n",
                r.imgate_fd_limit.map_or("–".into(), |(a, b)| format!("{a}/{b}")),
                opt(r.imgate_fds_before),
                opt(r.imgate_fds_held)
            ));
            s.push_str(&format!("| imgate_ws_connections while held | {} |\n", opt(r.imgate_ws_gauge)));
            s.push_str(&format!(
                "| 1001 round trips through the relay while all were held | {} of {} in {:.2} s |\n",
                r.verified, r.held, r.verify_secs
            ));
            s.push_str(&format!("| users the connections are spread over | {} |\n", r.users));
            s.push_str(&format!(
                "| emulator memory per connection (for comparison) | {} |\n",
                r.emu_kib_per_conn.map_or("–".into(), |k| format!("{k:.1} KiB"))
            ));
            s.push_str(&format!("| failed opens | {} |\n\n", r.open_errors.total()));
        }
        let mut levels: Vec<usize> = self.latency.iter().map(|c| c.concurrency).collect();
        levels.dedup();
        for conc in levels {
            s.push_str(&format!("### Relayed 1003 text send · {conc} connection(s)\n\n"));
            s.push_str("| case | sends/s | p50 µs | p99 µs | p99.9 µs | added p50 µs | added p99 µs | added p50 per round µs | imgate CPU µs/send | emulator CPU µs/send | client CPU µs/send | errors | p50 round spread |\n");
            s.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
            for c in self.latency.iter().filter(|c| c.concurrency == conc) {
                let m = &c.summary;
                let mark = if c.clean() { "" } else { "⚠ " };
                let errors = if m.errors == 0 { "0".to_owned() } else { format!("**{} FAILED**", m.errors) };
                let (a50, a99, rounds) = match &c.added_over_direct {
                    Some(a) => (
                        format!("{:+}", a.p50_us),
                        format!("{:+}", a.p99_us),
                        a.per_round_p50_us.iter().map(|v| format!("{v:+}")).collect::<Vec<_>>().join(", "),
                    ),
                    None => ("–".into(), "–".into(), "–".into()),
                };
                s.push_str(&format!(
                    "| {} | {mark}{:.0} | {mark}{} | {mark}{} | {mark}{} | {a50} | {a99} | {rounds} | {} | {:.1} | {:.1} | {errors} | {} |\n",
                    c.label,
                    m.throughput,
                    m.p50_us,
                    m.p99_us,
                    m.p999_us,
                    m.gateway_cpu_us.map_or("–".into(), |v| format!("{v:.1}")),
                    m.emulator_cpu_us,
                    m.client_cpu_us,
                    m.p50_spread.map_or("–".into(), |x| format!("{:.1}%", x * 100.0)),
                ));
            }
            s.push('\n');
        }
        if let Some(a) = self
            .latency
            .iter()
            .find(|c| c.case == WsCase::Relayed && c.concurrency == 1)
            .and_then(|c| c.added_over_direct.as_ref())
        {
            s.push_str(&format!(
                "Added latency of a relayed 1003 at one connection: p50 {:+} µs (goal ≤ 100 µs{}), p99 {:+} µs.\n\n",
                a.p50_us,
                self.verdict(a.p50_us <= 100, ": ", ""),
                a.p99_us
            ));
        }
        s
    }

    pub(crate) fn markdown(&self) -> String {
        let mut s = String::from("## WebSocket relay\n\n");
        s.push_str(&self.summary_markdown());
        s.push_str("### How it was measured\n\n");
        for n in &self.notes {
            s.push_str(&format!("- {n}\n"));
        }
        s.push_str(&format!("- Section time: {:.1} s.\n", self.seconds));
        s.push_str("\n### Rounds\n\n| c | case | round | sends/s | p50 µs | p99 µs | p99.9 µs | errors |\n|--:|---|--:|--:|--:|--:|--:|--:|\n");
        for c in &self.latency {
            for r in &c.rounds {
                s.push_str(&format!(
                    "| {} | {} | {} | {:.0} | {} | {} | {} | {} |\n",
                    c.concurrency,
                    c.label,
                    r.round,
                    r.throughput,
                    r.p50_us,
                    r.p99_us,
                    r.p999_us,
                    r.errors.total()
                ));
            }
        }
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clamp_names_the_process_that_binds() {
        // imgate: 2 per connection, 20000 limit, 40 open, 16 + its own 421 kept → (20000 − 40 − 16 − 421) / 2.
        let (n, why) = clamp(10_000, Some(((20_000, 20_000), 40)), Some(((20_000, 20_000), 30)), None);
        assert_eq!(n, 9761);
        let why = why.unwrap();
        assert!(why.contains("imgate") && why.contains("20000") && why.contains("9761"), "{why}");
        assert_eq!(clamp(100, Some(((20_000, 20_000), 40)), None, None), (100, None));
        let (n, why) = clamp(10_000, Some(((65_536, 65_536), 40)), Some(((4096, 4096), 20)), None);
        assert_eq!(n, 4060);
        assert!(why.unwrap().contains("the emulator"));
    }

    #[test]
    fn sends_and_their_answers_are_checked() {
        let req = send_req("u1", "t", 3, "hi", false);
        assert_eq!((req.req_identifier, req.msg_incr.as_str(), req.send_id.as_str()), (1003, "t-3", "u1"));
        let m = pb::sdkws::MsgData::decode(&req.data[..]).unwrap();
        assert_eq!((m.recv_id.as_str(), m.session_type, m.content_type), (PEER, 1, 101));
        assert_eq!(m.content, br#"{"content":"hi"}"#);
        assert_eq!(m.options.get("senderSync"), Some(&false));
        let synced = pb::sdkws::MsgData::decode(&send_req("u1", "t", 3, "hi", true).data[..]).unwrap();
        assert!(synced.options.is_empty(), "OpenIM's default: pushed back to the sender");
        let ok =
            pb::msg::SendMsgResp { server_msg_id: "s".into(), client_msg_id: "t-3".into(), send_time: 1, modify: None };
        let resp = |code: i32, data: Vec<u8>| Resp {
            req_identifier: 1003,
            msg_incr: "t-3".into(),
            err_code: code,
            data,
            ..Resp::default()
        };
        assert!(check_sent(&resp(0, ok.encode_to_vec()), "t-3").is_ok());
        assert!(matches!(check_sent(&resp(1002, Vec::new()), "t-3"), Err(Fail::Answer(_))));
        assert!(check_sent(&resp(0, ok.encode_to_vec()), "t-4").is_err(), "another message's answer");
        let no_id = pb::msg::SendMsgResp { server_msg_id: String::new(), ..ok };
        assert!(check_sent(&resp(0, no_id.encode_to_vec()), "t-3").is_err());
    }

    fn latency_case(case: WsCase, answer_errors: u64) -> WsCaseResult {
        let mut h = new_hist().unwrap();
        for v in [50, 60, 70] {
            h.record(v).unwrap();
        }
        let run = RunResult {
            ok: 3,
            hist: h.clone(),
            errors: Errors { answer: answer_errors, ..Errors::default() },
            elapsed: Duration::from_millis(1),
        };
        let mut c = WsCaseResult {
            case,
            label: case.label(),
            concurrency: 1,
            rounds: vec![RoundResult::new(1, &run, [1, 1, 1], 100)],
            summary: WsSummary::default(),
            added_over_direct: None,
            hist: Some(h),
        };
        c.summarize();
        c
    }

    #[test]
    fn wrong_answers_and_missing_connections_fail_the_section() {
        let held = IdleResult {
            target: 20,
            attempted: 20,
            held: 20,
            verified: 20,
            imgate_ws_gauge: Some(20.0),
            ..IdleResult::default()
        };
        let report = |idle: IdleResult, latency: Vec<WsCaseResult>| WsReport {
            smoke: true,
            settings: Value::Null,
            idle: Some(idle),
            latency,
            notes: Vec::new(),
            seconds: 0.0,
        };
        assert!(report(held.clone(), vec![latency_case(WsCase::Direct, 0)]).failures().is_empty());
        let f = report(held.clone(), vec![latency_case(WsCase::Relayed, 1)]).failures();
        assert!(f.len() == 1 && f[0].contains("relay"), "{f:?}");
        for broken in [
            IdleResult { held: 19, verified: 19, imgate_ws_gauge: Some(19.0), ..held.clone() },
            IdleResult { verified: 19, ..held.clone() },
            IdleResult { imgate_ws_gauge: Some(18.0), ..held.clone() },
            IdleResult { attempted: 0, held: 0, verified: 0, imgate_ws_gauge: Some(0.0), ..held.clone() },
        ] {
            assert_eq!(report(broken, Vec::new()).failures().len(), 1);
        }
        let r = report(held, vec![latency_case(WsCase::Direct, 0)]);
        assert!(!r.summary_markdown().contains("met"), "a smoke run judges no goal");
        assert_eq!(r.latency[0].summary.gateway_cpu_us, None, "the direct case has no gateway");
    }

    #[test]
    fn the_delivered_text_is_read_from_the_push() {
        let msg = pb::sdkws::MsgData {
            client_msg_id: "c-0".into(),
            content: br#"{"content":"a *******"}"#.to_vec(),
            ..Default::default()
        };
        let push = pb::sdkws::PushMessages {
            msgs: [("si_a_b".to_owned(), pb::sdkws::PullMsgs { msgs: vec![msg], ..Default::default() })].into(),
            ..Default::default()
        };
        let r = Resp { req_identifier: ident::PUSH_MSG, data: push.encode_to_vec(), ..Resp::default() };
        assert_eq!(pushed_text(&r, "c-0").as_deref(), Some("a *******"));
        assert_eq!(pushed_text(&r, "c-1"), None);
        assert_eq!(pushed_text(&Resp { req_identifier: 1003, ..r }, "c-0"), None);
    }
}
