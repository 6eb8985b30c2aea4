//! "Nothing lost" (issue 17): a bounded soak with faults injected, shared by the short test in
//! `make test` (`suite/soak.rs`) and the long bench in `make bench` (`benches/soak.rs`).
//!
//! [`run`] starts a gateway in front of the emulator, and for [`Settings::duration`] every user
//! sends messages through each client path while a fault schedule ([`CYCLE`]) plays on OpenIM: it
//! hangs past `openim.timeout_ms`, restarts (every connection dropped, connections refused for a
//! while, its database kept: [`Emulator::restart`](openim_emu::Emulator::restart)), handles sends
//! but drops the connection before answering, answers HTTP 500, answers slowly and late. The paths:
//!
//! - `v1`: imgate's own signed `POST /v1/messages/user/{peer}` (a few with a forbidden body field,
//!   and bursts over the `send` rate limit, so refusals are exercised too);
//! - `openim-ws`: what an unmodified OpenIM SDK sends with: `1003` frames on the relayed
//!   `GET /openim/ws` (a few naming another sender, which the relay refuses), reconnecting when the
//!   relay closes or refuses the socket;
//! - `openim-http`: `POST /openim/msg/send_msg` with the SDK's bearer token, which the compat
//!   surface refuses by design (OpenIM's `send_msg` is admin-only, contract §10): never forwarded.
//!
//! Each attempt has a unique marker in its text and its own request id (`x-request-id`; for the
//! WebSocket, its connection's), and is classified by what the client got ([`Outcome`]). Then
//! [`run`] checks, and lists every violation in [`Report::problems`]: every accepted send is stored
//! in OpenIM exactly once; a refused one never (one imgate refused itself never reached OpenIM at
//! all); one of unknown outcome (imgate answered, but OpenIM may or may not have stored it) at most
//! once, and imgate sent it to OpenIM at most once (it never repeats a `send_msg`: attacks.md
//! E15); every client got an answer; every refused or failed attempt has an audit record with its
//! outcome and a reason, and no record holds message text; the audit chain verifies; nothing is
//! left in flight in OpenIM or in imgate.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use imgate_client::{Client, Session};
use openim_wire::{ident, pb, Codec, Encoding, Req};
use prost::Message as _;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::reload::within;
use crate::{Fault, Harness, Options};

/// Starts every message text (and nothing else): how a stored message is traced to its attempt,
/// and how message text would be spotted in the audit log.
pub const MARK: &str = "NOTHINGLOST";

/// imgate's codes (on `/v1`; in `errDlt` on `/openim`) for a send whose fate imgate cannot know:
/// it went to OpenIM, or may have, and no answer came back.
pub const UNKNOWN_CODES: [&str; 4] = ["upstream_unavailable", "upstream_timeout", "upstream_bad_response", "timeout"];

/// How long a client waits for any answer before it counts the attempt as unanswered.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The soak's shape.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long clients send while the fault schedule repeats (at least one whole pass).
    pub duration: Duration,
    /// Users; each sends on every path at once.
    pub users: usize,
    /// Pause between a client's sends.
    pub pace: Duration,
    /// `openim.timeout_ms`.
    pub openim_timeout_ms: u64,
    /// `server.request_timeout_ms`.
    pub request_timeout_ms: u64,
}

impl Settings {
    /// The form `make test` runs: one pass of the fault schedule.
    pub fn short() -> Settings {
        Settings {
            duration: cycle_length(),
            users: 6,
            pace: Duration::from_millis(40),
            openim_timeout_ms: 300,
            request_timeout_ms: 2_000,
        }
    }

    /// The form `make bench` runs: the schedule repeated for `duration`.
    pub fn long(duration: Duration) -> Settings {
        Settings { duration, ..Settings::short() }
    }
}

/// One step of the fault schedule.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// OpenIM answers normally.
    Normal,
    /// Answers a third of `openim.timeout_ms` late: slow, still in time.
    Slow,
    /// Never answers: every call runs into `openim.timeout_ms`.
    Hang,
    /// HTTP 500 with an empty body (OpenIM's panic recovery).
    Status500,
    /// Handles the request (a send is stored), then drops the connection unanswered.
    DropAfterHandling,
    /// Answers twice `openim.timeout_ms` late: imgate has given up by then.
    Late,
    /// Restarts: connections dropped, then refused for the step's time, the database kept.
    Restart,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Normal => "normal",
            Step::Slow => "slow answers",
            Step::Hang => "hang",
            Step::Status500 => "HTTP 500",
            Step::DropAfterHandling => "drop after handling",
            Step::Late => "answers after the deadline",
            Step::Restart => "restart (down)",
        }
    }
}

/// One pass of the fault schedule: each fault, with normal periods between them (long enough for
/// imgate's circuit breaker to close again), in milliseconds.
pub const CYCLE: [(Step, u64); 12] = [
    (Step::Normal, 700),
    (Step::Slow, 700),
    (Step::Hang, 900),
    (Step::Normal, 1_000),
    (Step::Status500, 600),
    (Step::Normal, 1_000),
    (Step::DropAfterHandling, 700),
    (Step::Normal, 1_000),
    (Step::Restart, 700),
    (Step::Normal, 800),
    (Step::Late, 600),
    (Step::Normal, 700),
];

fn cycle_length() -> Duration {
    Duration::from_millis(CYCLE.iter().map(|(_, ms)| ms).sum())
}

/// A client path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Path {
    /// `POST /v1/messages/user/{peer}`, signed.
    V1,
    /// `1003` frames on `GET /openim/ws`.
    OpenimWs,
    /// `POST /openim/msg/send_msg` with a bearer token (refused by design).
    OpenimHttp,
}

impl Path {
    pub fn name(self) -> &'static str {
        match self {
            Path::V1 => "v1 (signed POST /v1/messages/user/{peer})",
            Path::OpenimWs => "openim-ws (SDK 1003 frames on /openim/ws)",
            Path::OpenimHttp => "openim-http (POST /openim/msg/send_msg)",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Path::V1 => "v1",
            Path::OpenimWs => "ws",
            Path::OpenimHttp => "oh",
        }
    }
}

/// What the client got for one send.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Sent: HTTP 200 with a server message id, errCode 0 with one.
    Accepted,
    /// A "no" with a stable code (imgate's `code`, OpenIM's errCode): nothing was stored.
    Refused(String),
    /// An answer with a code saying imgate could not learn what OpenIM did (one of
    /// [`UNKNOWN_CODES`], or the relay closing the socket before OpenIM's reply).
    Unknown(String),
    /// No answer, or one without a code: imgate must never do this.
    Unanswered(String),
}

/// One send attempt.
#[derive(Clone, Debug)]
struct Attempt {
    path: Path,
    marker: String,
    /// The request id (for the WebSocket, the connection's).
    rid: String,
    /// The HTTP status of the answer (HTTP paths).
    status: Option<u16>,
    outcome: Outcome,
    /// The fault step playing when it was sent.
    step: &'static str,
}

/// One WebSocket connection attempt of a client.
#[derive(Clone, Debug)]
struct WsConn {
    rid: String,
    /// `None`: the relay took it (handshake errCode 0); else why not.
    refused: Option<String>,
    /// The close code the relay ended it with, if it did.
    closed_by_relay: Option<u16>,
    /// Sends on it the relay refused (each must have a `ws_frame` audit record).
    refused_frames: u64,
    /// It ended without an answer or a close frame.
    unanswered: Option<String>,
}

/// The counts of one path.
#[derive(Clone, Debug, Default)]
pub struct PathCounts {
    pub attempted: u64,
    pub accepted: u64,
    /// By code.
    pub refused: BTreeMap<String, u64>,
    /// By code.
    pub unknown: BTreeMap<String, u64>,
    /// Of the unknown ones, how many OpenIM had stored after all.
    pub unknown_stored: u64,
    /// By what happened; must stay empty.
    pub unanswered: BTreeMap<String, u64>,
    /// This path's messages found in OpenIM.
    pub stored: u64,
}

impl PathCounts {
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
    pub fn unknown_total(&self) -> u64 {
        self.unknown.values().sum()
    }
    pub fn unanswered_total(&self) -> u64 {
        self.unanswered.values().sum()
    }
}

/// The `v1` attempts sent during one kind of fault step.
#[derive(Clone, Debug, Default)]
pub struct StepCounts {
    pub attempted: u64,
    pub accepted: u64,
    /// By code.
    pub refused: BTreeMap<String, u64>,
    /// By code.
    pub unknown: BTreeMap<String, u64>,
}

/// The WebSocket connections of the `openim-ws` clients.
#[derive(Clone, Debug, Default)]
pub struct WsCounts {
    /// Handshakes the relay accepted.
    pub opened: u64,
    /// Handshakes it refused, by answer (OpenIM's errCode, or an HTTP status).
    pub refused: BTreeMap<String, u64>,
    /// Connections it closed, by close code (1011: OpenIM's connection was lost).
    pub closed_by_relay: BTreeMap<u16, u64>,
}

/// What a soak did and found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub settings_duration: Duration,
    pub users: usize,
    /// Wall time of the sending part.
    pub elapsed: Duration,
    /// Wall time of the start (gateway, users, sessions) and of the checks.
    pub setup: Duration,
    pub checking: Duration,
    /// Fault steps played, by name.
    pub steps: BTreeMap<&'static str, u64>,
    pub paths: BTreeMap<Path, PathCounts>,
    /// The `v1` attempts by the fault step playing when they were sent.
    pub v1_by_step: BTreeMap<&'static str, StepCounts>,
    pub ws: WsCounts,
    /// HTTP requests that reached OpenIM's API (faulted ones included).
    pub openim_requests: u64,
    /// `send_msg` calls OpenIM handled.
    pub openim_sends_handled: u64,
    /// Records in the audit file (its chain verified).
    pub audit_records: u64,
    /// Every violated invariant, one line each (`kind: what`); empty when nothing was lost.
    pub problems: Vec<String>,
    /// How many problems of each kind.
    pub problem_kinds: BTreeMap<&'static str, u64>,
}

impl Report {
    pub fn path(&self, p: Path) -> PathCounts {
        self.paths.get(&p).cloned().unwrap_or_default()
    }
}

/// Problems the report prints (all are in [`Report::problems`]).
const SHOWN: usize = 25;

fn list<K: fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    if m.is_empty() {
        return "-".into();
    }
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Soak: {} users, {:.1} s of sends (asked {:.0} s; start {:.1} s, checks {:.1} s), fault steps played: {}",
            self.users,
            self.elapsed.as_secs_f64(),
            self.settings_duration.as_secs_f64(),
            self.setup.as_secs_f64(),
            self.checking.as_secs_f64(),
            list(&self.steps.iter().map(|(k, v)| (*k, *v)).collect())
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| path | attempted | accepted | refused | unknown outcome (stored) | unanswered | stored in OpenIM |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|")?;
        for (p, c) in &self.paths {
            writeln!(
                f,
                "| {} | {} | {} | {} | {} ({}) | {} | {} |",
                p.name(),
                c.attempted,
                c.accepted,
                c.refused_total(),
                c.unknown_total(),
                c.unknown_stored,
                c.unanswered_total(),
                c.stored
            )?;
        }
        writeln!(f)?;
        for (p, c) in &self.paths {
            writeln!(f, "- {} refused: {}", p.tag(), list(&c.refused))?;
            writeln!(f, "- {} unknown: {}", p.tag(), list(&c.unknown))?;
            if !c.unanswered.is_empty() {
                writeln!(f, "- {} UNANSWERED: {}", p.tag(), list(&c.unanswered))?;
            }
        }
        writeln!(f)?;
        writeln!(f, "| v1 sends during | attempted | accepted | refused | unknown outcome |")?;
        writeln!(f, "|---|---:|---:|---|---|")?;
        for (step, c) in &self.v1_by_step {
            writeln!(f, "| {step} | {} | {} | {} | {} |", c.attempted, c.accepted, list(&c.refused), list(&c.unknown))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "- openim-ws connections: {} opened, refused {}, closed by the relay {}",
            self.ws.opened,
            list(&self.ws.refused),
            list(&self.ws.closed_by_relay)
        )?;
        writeln!(
            f,
            "- OpenIM: {} HTTP requests received, {} send_msg handled; audit: {} records, chain verified",
            self.openim_requests, self.openim_sends_handled, self.audit_records
        )?;
        if self.problems.is_empty() {
            writeln!(f, "- nothing lost: every invariant held")
        } else {
            writeln!(
                f,
                "- {} PROBLEMS: {}; the first {}:",
                self.problems.len(),
                list(&self.problem_kinds),
                SHOWN.min(self.problems.len())
            )?;
            for p in self.problems.iter().take(SHOWN) {
                writeln!(f, "  - {p}")?;
            }
            Ok(())
        }
    }
}

/// Violated invariants, as they are found.
#[derive(Default)]
struct Problems {
    list: Vec<String>,
    kinds: BTreeMap<&'static str, u64>,
}

impl Problems {
    fn add(&mut self, kind: &'static str, what: impl Into<String>) {
        self.list.push(format!("{kind}: {}", what.into()));
        *self.kinds.entry(kind).or_default() += 1;
    }

    fn extend(&mut self, other: Problems) {
        self.list.extend(other.list);
        for (k, n) in other.kinds {
            *self.kinds.entry(k).or_default() += n;
        }
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// What each client task needs (all cheap clones).
#[derive(Clone)]
struct Ctx {
    client: Client,
    http: reqwest::Client,
    gateway_url: String,
    pace: Duration,
    stop: watch::Receiver<bool>,
    /// The fault step playing now ([`Step::name`]).
    step: watch::Receiver<&'static str>,
}

impl Ctx {
    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Waits for the pace, or less if told to stop.
    async fn pause(&mut self, d: Duration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }
}

fn marker(path: Path, user: &str, n: u64) -> String {
    format!("{MARK}-{}-{user}-{n:06}", path.tag())
}

fn text_of(marker: &str) -> String {
    format!("{marker} the body of a message that must reach OpenIM exactly once")
}

/// Runs the soak and checks it; see the module documentation.
pub async fn run(settings: &Settings) -> Report {
    let setup = Instant::now();
    let send_quota = "[rate_limits.default]\nper_second = 1000\nburst = 1000\n\
                      [rate_limits.send]\nper_second = 60\nburst = 20\n";
    let h = Harness::start_with(Options {
        openim_timeout_ms: settings.openim_timeout_ms,
        request_timeout_ms: settings.request_timeout_ms,
        rate_limits_toml: send_quota.into(),
        ..Options::default()
    })
    .await;
    let users: Vec<String> = (0..settings.users).map(|i| format!("soak{i}")).collect();
    let mut sessions = Vec::new();
    for u in &users {
        sessions.push(h.session(u).await.1);
    }

    let (stop_tx, stop) = watch::channel(false);
    let (step_tx, step) = watch::channel(Step::Normal.name());
    let ctx = Ctx {
        client: h.client(),
        http: h.http.clone(),
        gateway_url: h.gateway_url.clone(),
        pace: settings.pace,
        stop,
        step,
    };
    let mut v1 = Vec::new();
    let mut ws = Vec::new();
    for (i, session) in sessions.iter().enumerate() {
        let peer = users[(i + 1) % users.len()].clone();
        v1.push(tokio::spawn(v1_client(ctx.clone(), session.clone(), peer.clone())));
        ws.push(tokio::spawn(ws_client(ctx.clone(), session.clone(), peer)));
    }

    // The fault schedule, while the clients send.
    let setup = setup.elapsed();
    let started = Instant::now();
    let mut steps: BTreeMap<&'static str, u64> = BTreeMap::new();
    let timeout = Duration::from_millis(settings.openim_timeout_ms);
    let mut problems = Problems::default();
    'schedule: for cycle in 0.. {
        for (step, ms) in CYCLE {
            // The first pass is always played whole (the short form is one pass).
            if cycle > 0 && started.elapsed() >= settings.duration {
                break 'schedule;
            }
            *steps.entry(step.name()).or_default() += 1;
            let _ = step_tx.send(step.name());
            let length = Duration::from_millis(ms);
            match step {
                Step::Restart => {
                    h.emu.set_fault(Fault::None);
                    if let Err(e) = h.emu.restart(length).await {
                        problems.add(
                            "emulator restart failed",
                            format!("the emulator did not come back from a restart: {e}"),
                        );
                        break 'schedule;
                    }
                    continue;
                }
                Step::Normal => h.emu.set_fault(Fault::None),
                Step::Slow => h.emu.set_fault(Fault::Delay(timeout / 3)),
                Step::Hang => h.emu.set_fault(Fault::Hang),
                Step::Status500 => h.emu.set_fault(Fault::Status(500)),
                Step::DropAfterHandling => h.emu.set_fault(Fault::DropAfterHandling),
                Step::Late => h.emu.set_fault(Fault::Delay(timeout * 2)),
            }
            tokio::time::sleep(length).await;
        }
    }
    h.emu.set_fault(Fault::None);
    let _ = stop_tx.send(true);
    let elapsed = started.elapsed();
    let mut attempts = Vec::new();
    for t in v1 {
        attempts.extend(t.await.expect("v1 client"));
    }
    let mut conns = Vec::new();
    for t in ws {
        let (a, c) = t.await.expect("openim-ws client");
        attempts.extend(a);
        conns.extend(c);
    }

    let checking = Instant::now();
    let (mut report, found) = check(&h, attempts, conns).await;
    report.setup = setup;
    report.checking = checking.elapsed();
    problems.extend(found);
    report.problems = problems.list;
    report.problem_kinds = problems.kinds;
    report.settings_duration = settings.duration;
    report.users = settings.users;
    report.elapsed = elapsed;
    report.steps = steps;
    h.shutdown().await;
    report
}

/// A user's `v1` client: one signed send per pace to its peer; every 13th with a body field the
/// route refuses (400); every 50th a burst of 30 at once, over the `send` quota (429).
async fn v1_client(mut ctx: Ctx, session: Session, peer: String) -> Vec<Attempt> {
    let user = session.user_id.clone();
    let mut out = Vec::new();
    let mut n = 0u64;
    while !ctx.stopped() {
        n += 1;
        if n % 50 == 10 {
            let burst: Vec<_> = (0..30)
                .map(|k| {
                    let m = marker(Path::V1, &user, n * 1000 + k);
                    let body = json!({ "text": text_of(&m) });
                    v1_send(&ctx, &session, &peer, m, body)
                })
                .collect();
            out.extend(futures_util::future::join_all(burst).await);
        } else {
            let m = marker(Path::V1, &user, n);
            let body = if n % 13 == 5 {
                // Identity is bound from the session: naming a sender is refused, never forwarded.
                json!({ "text": text_of(&m), "sendID": peer })
            } else {
                json!({ "text": text_of(&m) })
            };
            out.push(v1_send(&ctx, &session, &peer, m, body).await);
        }
        let pace = ctx.pace;
        ctx.pause(pace).await;
    }
    out
}

async fn v1_send(ctx: &Ctx, session: &Session, peer: &str, marker: String, body: Value) -> Attempt {
    let step = *ctx.step.borrow();
    let rid = marker.replace(MARK, "soak");
    let path = format!("/v1/messages/user/{peer}");
    let body = body.to_string();
    let headers = [("x-request-id", rid.clone())];
    let call = ctx.client.call_with_headers(session, "POST", &path, &headers, Some(body.as_bytes()));
    let (status, outcome) = match tokio::time::timeout(ANSWER_WITHIN, async {
        let res = call.await.map_err(|e| format!("transport error: {e}"))?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await.map_err(|e| format!("answer cut short: {e}"))?;
        Ok::<_, String>((status, bytes))
    })
    .await
    {
        Err(_) => (None, Outcome::Unanswered("no answer in 10 s".into())),
        Ok(Err(e)) => (None, Outcome::Unanswered(e)),
        Ok(Ok((status, bytes))) => {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (Some(status), classify_v1(status, &v))
        }
    };
    Attempt { path: Path::V1, marker, rid, status, outcome, step }
}

fn classify_v1(status: u16, v: &Value) -> Outcome {
    if status == 200 {
        return match v["server_msg_id"].as_str() {
            Some(id) if !id.is_empty() => Outcome::Accepted,
            _ => Outcome::Unanswered(format!("200 without a server_msg_id: {v}")),
        };
    }
    match v["code"].as_str() {
        Some(code) if UNKNOWN_CODES.contains(&code) => Outcome::Unknown(code.to_owned()),
        Some(code) => Outcome::Refused(code.to_owned()),
        None => Outcome::Unanswered(format!("HTTP {status} without a code")),
    }
}

/// OpenIM's envelope on `/openim/*`: errCode 0 with a server message id is a send; 4, 14 and 500
/// carry imgate's code in `errDlt` (one of [`UNKNOWN_CODES`]: unknown; `upstream_circuit_open`
/// and the like: refused before forwarding); any other errCode is a refusal.
fn classify_envelope(status: u16, v: &Value) -> Outcome {
    let Some(code) = v["errCode"].as_i64() else {
        return Outcome::Unanswered(format!("HTTP {status} without an envelope"));
    };
    if code == 0 {
        return match v["data"]["serverMsgID"].as_str() {
            Some(id) if !id.is_empty() => Outcome::Accepted,
            _ => Outcome::Unanswered(format!("errCode 0 without a serverMsgID: {v}")),
        };
    }
    let dlt = v["errDlt"].as_str().unwrap_or_default();
    let imgate_code = dlt.split([':', ' ']).next().unwrap_or_default();
    if UNKNOWN_CODES.contains(&imgate_code) {
        return Outcome::Unknown(format!("errCode {code} {imgate_code}"));
    }
    if matches!(code, 4 | 14 | 500) && !imgate_code.is_empty() {
        return Outcome::Refused(format!("errCode {code} {imgate_code}"));
    }
    Outcome::Refused(format!("errCode {code}"))
}

/// A user's SDK-like client: a relayed WebSocket (`/openim/ws`, JSON frames) with one `1003` send
/// per pace, every 17th naming its peer as the sender (refused by the relay); every 10th send is
/// preceded by a `POST /openim/msg/send_msg` with the bearer token. When the relay closes the
/// socket or refuses the handshake, it reconnects. Its bearer token (`POST /v1/auth/token`) is
/// renewed every [`TOKEN_RENEWAL`], within the token's lifetime (`auth.bearer_token_lifetime_secs`).
async fn ws_client(mut ctx: Ctx, session: Session, peer: String) -> (Vec<Attempt>, Vec<WsConn>) {
    const CODEC: Codec = Codec { encoding: Encoding::Json, gzip: false };
    let user = session.user_id.clone();
    let mut attempts = Vec::new();
    let mut conns = Vec::new();
    let mut n = 0u64;
    let mut dials = 0u64;
    let base = ctx.gateway_url.replace("http://", "ws://");
    let mut token = String::new();
    let mut token_at = Instant::now();
    while !ctx.stopped() {
        if token.is_empty() || token_at.elapsed() > TOKEN_RENEWAL {
            token = bearer_token(&ctx.client, &session).await;
            token_at = Instant::now();
        }
        dials += 1;
        let rid = format!("soak-wsc-{user}-{dials:05}");
        let mut conn =
            WsConn { rid: rid.clone(), refused: None, closed_by_relay: None, refused_frames: 0, unanswered: None };
        let url = format!(
            "{base}/openim/ws?sendID={user}&token={token}&platformID=1&operationID={rid}&isBackground=false\
             &isMsgResp=true&sdkType=js"
        );
        let mut request = url.into_client_request().expect("ws request");
        request.headers_mut().insert("x-request-id", rid.parse().expect("header value"));
        let mut ws = match tokio::time::timeout(ANSWER_WITHIN, tokio_tungstenite::connect_async(request)).await {
            Err(_) => {
                conn.unanswered = Some("no handshake answer in 10 s".into());
                conns.push(conn);
                continue;
            }
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(res))) => {
                conn.refused = Some(format!("HTTP {}", res.status().as_u16()));
                conns.push(conn);
                let pace = ctx.pace;
                ctx.pause(pace).await;
                continue;
            }
            Ok(Err(e)) => {
                conn.unanswered = Some(format!("handshake failed: {e}"));
                conns.push(conn);
                let pace = ctx.pace;
                ctx.pause(pace).await;
                continue;
            }
            Ok(Ok((ws, _))) => ws,
        };
        // `isMsgResp=true`: the handshake's verdict comes as a first text frame.
        match tokio::time::timeout(ANSWER_WITHIN, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                match v["errCode"].as_i64() {
                    Some(0) => {}
                    Some(c) => conn.refused = Some(format!("errCode {c}")),
                    None => conn.unanswered = Some(format!("handshake frame without errCode: {t}")),
                }
            }
            other => conn.unanswered = Some(format!("no handshake frame: {other:?}")),
        }
        if conn.refused.is_some() || conn.unanswered.is_some() {
            conns.push(conn);
            let pace = ctx.pace;
            ctx.pause(pace).await;
            continue;
        }
        // Connected: send until told to stop or the relay ends the socket.
        let mut ended = false;
        while !ctx.stopped() && !ended {
            n += 1;
            if n.is_multiple_of(10) {
                attempts.push(openim_http_send(&ctx, &user, &token, &peer, n).await);
            }
            let m = marker(Path::OpenimWs, &user, n);
            let sender = if n % 17 == 3 { peer.clone() } else { user.clone() };
            let data = pb::sdkws::MsgData {
                send_id: sender,
                recv_id: peer.clone(),
                client_msg_id: m.clone(),
                session_type: 1,
                content_type: 101,
                content: json!({ "content": text_of(&m) }).to_string().into_bytes(),
                ..Default::default()
            }
            .encode_to_vec();
            let incr = format!("{n}");
            let step = *ctx.step.borrow();
            let req = Req {
                req_identifier: ident::SEND_MSG,
                send_id: user.clone(),
                operation_id: format!("{rid}-{n}"),
                msg_incr: incr.clone(),
                data,
                ..Req::default()
            };
            let outcome = if let Err(e) = ws.send(Message::Binary(CODEC.encode_req(&req).into())).await {
                ended = true;
                // Written into a socket the relay had already closed: a close frame came first.
                match e {
                    tokio_tungstenite::tungstenite::Error::ConnectionClosed
                    | tokio_tungstenite::tungstenite::Error::AlreadyClosed => {
                        Outcome::Unknown("socket already closed".into())
                    }
                    e => Outcome::Unanswered(format!("send failed: {e}")),
                }
            } else {
                match await_reply(&mut ws, CODEC, &incr).await {
                    Reply::Resp(0, _) => Outcome::Accepted,
                    Reply::Resp(code, why) => {
                        conn.refused_frames += 1;
                        Outcome::Refused(format!("errCode {code} ({why})"))
                    }
                    Reply::Closed(code) => {
                        ended = true;
                        conn.closed_by_relay = Some(code);
                        Outcome::Unknown(format!("socket closed {code} before the reply"))
                    }
                    Reply::Gone(why) => {
                        ended = true;
                        conn.unanswered = Some(why.clone());
                        Outcome::Unanswered(why)
                    }
                    Reply::Invalid(why) => Outcome::Unanswered(why),
                }
            };
            attempts.push(Attempt { path: Path::OpenimWs, marker: m, rid: rid.clone(), status: None, outcome, step });
            if ended {
                break;
            }
            // Pace, reading what comes meanwhile (pushes; a close frame ends the socket).
            let until = tokio::time::Instant::now() + ctx.pace;
            let mut stop = ctx.stop.clone();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    _ = stop.wait_for(|s| *s) => break,
                    frame = ws.next() => match frame {
                        Some(Ok(Message::Close(f))) => {
                            conn.closed_by_relay = Some(f.map(|f| u16::from(f.code)).unwrap_or(1005));
                            ended = true;
                            break;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            conn.unanswered = Some(format!("socket failed: {e}"));
                            ended = true;
                            break;
                        }
                        None => {
                            conn.unanswered = Some("socket ended without a close frame".into());
                            ended = true;
                            break;
                        }
                    }
                }
            }
        }
        if !ended {
            let _ = ws.close(None).await;
        }
        conns.push(conn);
    }
    (attempts, conns)
}

/// How often the SDK-like clients renew their bearer token (it lives 15 minutes by default).
const TOKEN_RENEWAL: Duration = Duration::from_secs(600);

/// A bearer token for the OpenIM-compatible surface (`POST /v1/auth/token`; no OpenIM call).
async fn bearer_token(client: &Client, session: &Session) -> String {
    let res = client.call(session, "POST", "/v1/auth/token", None).await.expect("bearer token");
    let v: Value = res.json().await.expect("token answer");
    v["token"].as_str().expect("token").to_owned()
}

enum Reply {
    /// The reply to our frame: errCode, errMsg.
    Resp(i32, String),
    /// The relay closed the socket (close code) before it.
    Closed(u16),
    /// The socket ended without a close frame, or nothing came.
    Gone(String),
    /// A reply that is not one.
    Invalid(String),
}

/// The reply to frame `incr`, skipping pushes.
async fn await_reply<S>(ws: &mut S, codec: Codec, incr: &str) -> Reply
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Reply::Gone("no reply in 10 s".into()),
            Ok(Some(Ok(Message::Binary(b)))) => match codec.decode_resp(&b) {
                Ok(r) if r.msg_incr == incr => {
                    if r.err_code == 0 {
                        let sent = pb::msg::SendMsgResp::decode(&r.data[..]).unwrap_or_default();
                        if sent.server_msg_id.is_empty() {
                            return Reply::Invalid("errCode 0 without a serverMsgID".into());
                        }
                    }
                    return Reply::Resp(r.err_code, r.err_msg);
                }
                Ok(_) => {}
                Err(e) => return Reply::Gone(format!("undecodable frame: {e:?}")),
            },
            Ok(Some(Ok(Message::Close(f)))) => return Reply::Closed(f.map(|f| u16::from(f.code)).unwrap_or(1005)),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Reply::Gone(format!("socket failed: {e}")),
            Ok(None) => return Reply::Gone("socket ended without a close frame".into()),
        }
    }
}

/// `POST /openim/msg/send_msg` as an OpenIM client would call it with the SDK's token.
async fn openim_http_send(ctx: &Ctx, user: &str, token: &str, peer: &str, n: u64) -> Attempt {
    let step = *ctx.step.borrow();
    let m = marker(Path::OpenimHttp, user, n);
    let rid = m.replace(MARK, "soak");
    let body = json!({
        "sendID": user, "recvID": peer, "senderPlatformID": 1, "contentType": 101, "sessionType": 1,
        "content": { "content": text_of(&m) },
    });
    let req = ctx
        .http
        .post(format!("{}/openim/msg/send_msg", ctx.gateway_url))
        .header("token", token)
        .header("operationID", &rid)
        .header("x-request-id", &rid)
        .body(body.to_string())
        .send();
    let (status, outcome) = match tokio::time::timeout(ANSWER_WITHIN, async {
        let res = req.await.map_err(|e| format!("transport error: {e}"))?;
        let status = res.status().as_u16();
        let bytes = res.bytes().await.map_err(|e| format!("answer cut short: {e}"))?;
        Ok::<_, String>((status, bytes))
    })
    .await
    {
        Err(_) => (None, Outcome::Unanswered("no answer in 10 s".into())),
        Ok(Err(e)) => (None, Outcome::Unanswered(e)),
        Ok(Ok((status, bytes))) => {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            (Some(status), classify_envelope(status, &v))
        }
    };
    Attempt { path: Path::OpenimHttp, marker: m, rid, status, outcome, step }
}

/// Every marker found in OpenIM's stored messages, with how many messages carry it.
fn stored_markers(h: &Harness) -> HashMap<String, u64> {
    let mut found = HashMap::new();
    for m in h.emu.stored_messages() {
        let content = String::from_utf8_lossy(&m.content);
        let mut rest = content.as_ref();
        while let Some(at) = rest.find(MARK) {
            let tail = &rest[at..];
            let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).unwrap_or(tail.len());
            *found.entry(tail[..end].to_owned()).or_default() += 1;
            rest = &tail[end..];
        }
    }
    found
}

/// The checks: see the module documentation.
async fn check(h: &Harness, attempts: Vec<Attempt>, conns: Vec<WsConn>) -> (Report, Problems) {
    let mut problems = Problems::default();
    // Nothing may still change OpenIM's database, and imgate must have answered everything.
    let quiet = within(Duration::from_secs(15), Duration::from_millis(20), async || h.emu.active() == 0).await;
    if quiet.is_none() {
        problems.add(
            "left in flight in OpenIM",
            format!("{} requests still in OpenIM 15 s after the soak", h.emu.active()),
        );
    }
    let drained = within(Duration::from_secs(15), Duration::from_millis(50), async || {
        h.metric("imgate_http_requests_in_flight").await == Some(0.0)
    })
    .await;
    if drained.is_none() {
        let left = h.metric("imgate_http_requests_in_flight").await;
        problems.add(
            "left in flight in imgate",
            format!("imgate_http_requests_in_flight is {left:?}, not 0, 15 s after the soak"),
        );
    }

    let stored = stored_markers(h);
    let seen = h.emu.seen();
    let mut handled_by_rid: HashMap<&str, Vec<i64>> = HashMap::new();
    for s in seen.iter().filter(|s| s.path == "/msg/send_msg") {
        if let Some((rid, _)) = s.operation_id.as_deref().and_then(|o| o.rsplit_once('-')) {
            handled_by_rid.entry(rid).or_default().push(s.err_code);
        }
    }
    let mut report = Report {
        openim_requests: h.emu.received(),
        openim_sends_handled: seen.iter().filter(|s| s.path == "/msg/send_msg").count() as u64,
        ..Report::default()
    };
    let mut attempted_markers = std::collections::HashSet::new();
    for a in &attempts {
        attempted_markers.insert(a.marker.as_str());
        let times = stored.get(&a.marker).copied().unwrap_or(0);
        if a.path == Path::V1 {
            let s = report.v1_by_step.entry(a.step).or_default();
            s.attempted += 1;
            match &a.outcome {
                Outcome::Accepted => s.accepted += 1,
                Outcome::Refused(code) => *s.refused.entry(code.clone()).or_default() += 1,
                Outcome::Unknown(code) => *s.unknown.entry(code.clone()).or_default() += 1,
                Outcome::Unanswered(_) => {}
            }
        }
        let c = report.paths.entry(a.path).or_default();
        c.attempted += 1;
        c.stored += times;
        match &a.outcome {
            Outcome::Accepted => {
                c.accepted += 1;
                if times != 1 {
                    problems.add(
                        "accepted but not stored exactly once",
                        format!("{}: accepted, but stored {times} times (request {})", a.marker, a.rid),
                    );
                }
            }
            Outcome::Refused(code) => {
                *c.refused.entry(code.clone()).or_default() += 1;
                if times != 0 {
                    problems.add(
                        "refused but stored",
                        format!("{}: refused ({code}), but stored {times} times (request {})", a.marker, a.rid),
                    );
                }
            }
            Outcome::Unknown(code) => {
                *c.unknown.entry(code.clone()).or_default() += 1;
                c.unknown_stored += times.min(1);
                if times > 1 {
                    problems.add(
                        "unknown outcome stored more than once",
                        format!("{}: unknown outcome ({code}), stored {times} times (request {})", a.marker, a.rid),
                    );
                }
            }
            Outcome::Unanswered(why) => {
                *c.unanswered.entry(why.clone()).or_default() += 1;
                problems.add("not answered", format!("{}: imgate did not answer: {why} (request {})", a.marker, a.rid));
            }
        }
        // imgate sends a send_msg to OpenIM at most once per client request (attacks.md E15); a
        // stale-token errCode (OpenIM refused it before acting) is the one allowed repeat.
        if a.path != Path::OpenimWs {
            let handled = handled_by_rid.get(a.rid.as_str()).map(Vec::as_slice).unwrap_or_default();
            let effective = handled.iter().filter(|c| !matches!(c, 1501 | 1506 | 1507)).count();
            if effective > 1 {
                problems.add(
                    "send_msg sent to OpenIM more than once",
                    format!("{}: OpenIM handled its send_msg {effective} times (request {})", a.marker, a.rid),
                );
            }
            // Refused by imgate itself (a bad body, the rate limit, an open circuit): never sent.
            let imgates_own = match &a.outcome {
                Outcome::Refused(code) => !code.starts_with("upstream_") || code == "upstream_circuit_open",
                _ => false,
            };
            if a.path == Path::V1 && imgates_own && !handled.is_empty() {
                problems.add(
                    "refused send reached OpenIM",
                    format!(
                        "{}: refused by imgate ({:?}), yet OpenIM handled it (request {})",
                        a.marker, a.outcome, a.rid
                    ),
                );
            }
            if a.path == Path::OpenimHttp && !handled.is_empty() {
                problems.add(
                    "refused route reached OpenIM",
                    format!("{}: /openim/msg/send_msg reached OpenIM (request {})", a.marker, a.rid),
                );
            }
        }
    }
    for (m, times) in &stored {
        if !attempted_markers.contains(m.as_str()) {
            problems.add("stored but never attempted", format!("{m}: stored {times} times but never attempted"));
        }
    }
    for c in &conns {
        match (&c.refused, c.closed_by_relay) {
            (Some(why), _) => *report.ws.refused.entry(why.clone()).or_default() += 1,
            (None, code) => {
                if c.unanswered.is_none() {
                    report.ws.opened += 1;
                }
                if let Some(code) = code {
                    *report.ws.closed_by_relay.entry(code).or_default() += 1;
                }
            }
        }
        if let Some(why) = &c.unanswered {
            problems.add("openim-ws socket not answered", format!("openim-ws connection {}: {why}", c.rid));
        }
    }

    // The audit trail: verified, complete for every refusal and failure, free of message text.
    // Records of sockets the relay closed are written when its loop ends: poll for them.
    let mut audit_problems = Problems::default();
    let mut records = 0;
    let complete = within(Duration::from_secs(10), Duration::from_millis(100), async || {
        let path = h.audit_file().await;
        (records, audit_problems) = check_audit(&path, &attempts, &conns);
        audit_problems.is_empty()
    })
    .await;
    let _ = complete;
    report.audit_records = records;
    problems.extend(audit_problems);
    (report, problems)
}

/// The audit file's checks; returns its record count and what is wrong.
fn check_audit(path: &std::path::Path, attempts: &[Attempt], conns: &[WsConn]) -> (u64, Problems) {
    let mut problems = Problems::default();
    let records = match host::audit::verify_file(path) {
        Ok(n) => n,
        Err(e) => {
            problems.add("audit chain broken", format!("the audit chain does not verify: {e}"));
            0
        }
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines().filter(|l| l.contains(MARK) || l.contains("the body of a message")) {
        problems.add("message text in the audit log", line.chars().take(300).collect::<String>());
    }
    let mut by_rid: HashMap<String, Vec<Value>> = HashMap::new();
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if let Some(rid) = v["request_id"].as_str() {
                by_rid.entry(rid.to_owned()).or_default().push(v);
            }
        }
    }
    let reasoned = |r: &Value| r["reason"].as_str().is_some_and(|s| !s.is_empty());
    for a in attempts.iter().filter(|a| a.path != Path::OpenimWs) {
        let Some(rec) = by_rid.get(&a.rid).and_then(|rs| rs.iter().find(|r| r["kind"] == "api_call")) else {
            problems.add("no audit record", format!("{}: no audit record for request {}", a.marker, a.rid));
            continue;
        };
        if a.status.is_some_and(|s| rec["status"].as_u64() != Some(u64::from(s))) {
            problems.add(
                "audit status differs",
                format!("{}: the audit record says status {}, the client got {:?}", a.marker, rec["status"], a.status),
            );
        }
        let outcome = rec["outcome"].as_str().unwrap_or_default();
        match &a.outcome {
            Outcome::Accepted if outcome != "ok" => {
                problems.add("audit outcome differs", format!("{}: accepted, but audited as {outcome}", a.marker));
            }
            Outcome::Accepted => {}
            other => {
                if !matches!(outcome, "refused" | "rejected" | "error") {
                    problems
                        .add("audit outcome differs", format!("{}: {other:?}, but audited as {outcome:?}", a.marker));
                }
                if !reasoned(rec) {
                    problems.add(
                        "audit record without a reason",
                        format!(
                            "{}: {other:?} (HTTP {:?}), audited as {outcome} without a reason (request {})",
                            a.marker, a.status, a.rid
                        ),
                    );
                }
            }
        }
    }
    for c in conns {
        let recs = by_rid.get(&c.rid).map(Vec::as_slice).unwrap_or_default();
        let frames =
            recs.iter().filter(|r| r["kind"] == "ws_frame" && r["outcome"] == "refused" && reasoned(r)).count();
        if frames as u64 != c.refused_frames {
            problems.add(
                "refused ws frames not audited",
                format!(
                    "openim-ws connection {}: {} frames refused, {frames} ws_frame records with a reason",
                    c.rid, c.refused_frames
                ),
            );
        }
        if let Some(why) = &c.refused {
            let audited = recs.iter().any(|r| {
                r["kind"] == "api_call" && matches!(r["outcome"].as_str(), Some("refused" | "error")) && reasoned(r)
            });
            if !audited {
                problems.add(
                    "refused ws handshake not audited",
                    format!("openim-ws connection {} refused ({why}) without an audit record with a reason", c.rid),
                );
            }
        }
        if let Some(code) = c.closed_by_relay {
            if !recs.iter().any(|r| r["kind"] == "ws_closed" && reasoned(r)) {
                problems.add(
                    "ws close not audited",
                    format!("openim-ws connection {} closed {code} without a ws_closed audit record", c.rid),
                );
            }
        }
    }
    (records, problems)
}
