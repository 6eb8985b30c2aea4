//! `imgate-bench`: what imgate costs on top of OpenIM, measured against the floor (the OpenIM
//! emulator called directly) and a peer (nginx `proxy_pass` with upstream keep-alive), in one
//! session with the cases interleaved round by round so machine drift hits them alike.
//!
//! Cases: 1 direct to the emulator, 2 nginx, 3 imgate's `/openim` surface without plugins, 4 imgate
//! `/v1` signed with a plugin chain, 5 `/openim` with the same chain (issue 12); 6 imgate `/v1`
//! signed without plugins on the in-memory store and 7 the same on the Redis store, against a
//! `redis-server` the harness starts (issue 14: case 7 ÷ case 6 of the same run, and the store
//! round trips per signed request, `trips.rs`). Payloads: a one-user lookup and a 4 KiB text send;
//! concurrency 1, 16, 64 by default. Writes `report.md`, `report.json` and `latency.svg`.
//! Without a `redis-server` (`--redis-server`, else on `PATH`, else /usr/bin/redis-server) case 7
//! is n/a, except under `--smoke`, which then fails (`make deps` installs it).
//!
//! Then the WebSocket relay section (issue 13, `ws.rs`): N relayed idle connections held at once
//! (imgate's memory per connection, the time to open them), and the latency a relayed 1003 send
//! adds over the same send made directly to the emulator's msg gateway. `--only http` or
//! `--only ws` runs one section.
//!
//! `--smoke` is the quick run `make test` uses so the harness cannot rot: it fails on any wrong
//! answer, any case without a successful answer, any failed request of the round-trip count, and
//! when case 7 has no redis-server.

mod instructions;
mod load;
mod procs;
mod report;
mod setup;
mod trips;
mod ws;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use serde_json::json;

use load::{Auth, Check, Target};
use report::{CaseResult, Report, RoundResult};
use setup::{Env, PEER};

#[derive(Parser, Debug)]
#[command(name = "imgate-bench", about = "imgate vs the OpenIM emulator alone and behind nginx (make bench)")]
struct Cli {
    /// The imgate binary.
    #[arg(long, default_value = "target/release/imgate")]
    imgate: PathBuf,
    /// The openim-emu binary.
    #[arg(long, default_value = "target/release/openim-emu")]
    emu: PathBuf,
    /// The folder of the built example plugins (content_filter.wasm, response_reshaper.wasm).
    #[arg(long, default_value = "plugins/target/wasm32-wasip2/release")]
    plugins: PathBuf,
    /// The nginx binary.
    #[arg(long, default_value = "nginx")]
    nginx: String,
    /// nginx `worker_processes` (auto = one per core).
    #[arg(long, default_value = "auto")]
    nginx_workers: String,
    /// Where report.md, report.json, latency.svg and the run's files (configs, logs, audit) go.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Rounds: each runs every case once.
    #[arg(long)]
    rounds: Option<u32>,
    /// Measured time per case, payload and concurrency, per round (ms).
    #[arg(long)]
    duration_ms: Option<u64>,
    /// Unmeasured warm-up before each measured run (ms).
    #[arg(long)]
    warmup_ms: Option<u64>,
    /// Concurrency levels (closed-loop clients), comma-separated.
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// imgate's `telemetry.log_level` (info, as deployed: one JSON line per request).
    #[arg(long, default_value = "info")]
    imgate_log_level: String,
    /// Only these cases (1-7), comma-separated (e.g. to profile one). Ratios need cases 1 and 2
    /// (to the floor and nginx) or 6 and 7 (Redis store ÷ memory store).
    #[arg(long, value_delimiter = ',')]
    cases: Option<Vec<usize>>,
    /// Only this payload: lookup or send.
    #[arg(long)]
    payload: Option<String>,
    /// Users (sessions, tokens) per party; client i uses user i mod this.
    #[arg(long, default_value_t = 8)]
    users: usize,
    /// Criterion's output folder: every `**/new/estimates.json` is listed in the report.
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// Text files to include verbatim in the report, as `FILE` or `TITLE=FILE` (e.g. the plugin
    /// swap times of `make bench`); missing files are skipped.
    #[arg(long)]
    include: Vec<String>,
    /// Instead of the timed run: instructions per request (valgrind's callgrind, all of the
    /// gateway's threads) of cases 3 and 4 on the lookup at concurrency 1, written to
    /// `instructions.md` and `instructions.json` in the output folder. Stable where timings are not.
    #[arg(long)]
    instructions: bool,
    /// Quick check: one round, concurrency 16, 0.15 s per case, report in target/bench-smoke;
    /// WebSocket: 20 idle connections, 50 sends per case at 1 and 4 connections.
    /// Fails on any wrong answer or any case without a successful answer, and when no
    /// redis-server is found for case 7 (`make deps` installs it).
    #[arg(long)]
    smoke: bool,
    /// The redis-server binary of case 7 (default: `redis-server` on PATH, else
    /// /usr/bin/redis-server; none found: case 7 is n/a, and `--smoke` fails).
    #[arg(long)]
    redis_server: Option<String>,
    /// Signed requests per payload over which case 7's store round trips are counted.
    #[arg(long)]
    trips_requests: Option<u64>,
    /// Only one section: `http` (the seven cases) or `ws` (the WebSocket relay).
    #[arg(long, value_parser = ["http", "ws"])]
    only: Option<String>,
    /// WebSocket: relayed idle connections to hold at once (10000; clamped to what the open-file
    /// limits allow, reported with the reason).
    #[arg(long)]
    ws_idle: Option<usize>,
    /// WebSocket: users the idle connections are spread over (many connections share a user's
    /// bearer token).
    #[arg(long)]
    ws_users: Option<usize>,
    /// WebSocket: handshakes in flight while the idle connections open.
    #[arg(long, default_value_t = 64)]
    ws_open_concurrency: usize,
    /// WebSocket: wait after the last idle connection opened before imgate's memory is read (ms).
    #[arg(long)]
    ws_settle_ms: Option<u64>,
    /// WebSocket: measured 1003 sends per case, concurrency level and round.
    #[arg(long)]
    ws_sends: Option<u64>,
    /// WebSocket: connections sending at once in the latency runs, comma-separated.
    #[arg(long, value_delimiter = ',')]
    ws_concurrency: Option<Vec<usize>>,
}

/// The five cases of issue 12 and the two of issue 14 (the store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) enum Case {
    Floor,
    Nginx,
    Passthrough,
    V1Plugins,
    CompatPlugins,
    /// `/v1` signed, no plugin, the in-memory store (the gateway of case 3).
    V1Memory,
    /// `/v1` signed, no plugin, `[store] backend = "redis"`.
    V1Redis,
}

impl Case {
    pub(crate) const ALL: [Case; 7] = [
        Case::Floor,
        Case::Nginx,
        Case::Passthrough,
        Case::V1Plugins,
        Case::CompatPlugins,
        Case::V1Memory,
        Case::V1Redis,
    ];

    pub(crate) fn number(self) -> usize {
        self as usize + 1
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Case::Floor => "1 emulator direct (floor)",
            Case::Nginx => "2 nginx proxy_pass (peer)",
            Case::Passthrough => "3 imgate /openim, no plugin",
            Case::V1Plugins => "4 imgate /v1 signed + plugins",
            Case::CompatPlugins => "5 imgate /openim + plugins",
            Case::V1Memory => "6 imgate /v1 signed, memory store",
            Case::V1Redis => "7 imgate /v1 signed, Redis store",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) enum Payload {
    Lookup,
    Send4k,
}

impl Payload {
    pub(crate) const ALL: [Payload; 2] = [Payload::Lookup, Payload::Send4k];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Payload::Lookup => "lookup (get_users_info of one user)",
            Payload::Send4k => "4 KiB send (send_msg, text)",
        }
    }
}

/// A ~4 KiB message text (no word the content filter looks for).
fn text_4k() -> String {
    let line = "The quick brown fox jumps over the lazy dog while the gateway checks every byte. ";
    line.repeat(4096 / line.len() + 1)[..4096].to_owned()
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

fn nginx(env: &Env) -> Result<&setup::Nginx, String> {
    env.nginx.as_ref().ok_or_else(|| "n/a: nginx was not started".to_owned())
}

/// The `/v1` requests (lookup, 4 KiB send) of a gateway's sessions.
fn v1(gw: &setup::Gateway, payload: Payload, plugins: bool) -> Target {
    let (path, body, check) = match payload {
        Payload::Lookup => (
            "/v1/users/lookup".to_owned(),
            json!({ "user_ids": [PEER] }),
            if plugins { Check::V1Lookup } else { Check::V1LookupPlain },
        ),
        Payload::Send4k => (format!("/v1/messages/user/{PEER}"), json!({ "text": text_4k() }), Check::V1Send),
    };
    Target {
        addr: addr(&gw.url),
        path,
        body: Bytes::from(body.to_string()),
        auth: Auth::Signed(gw.sessions.clone()),
        check,
    }
}

/// The request of `case` × `payload`, or why there is none.
fn target(env: &Env, case: Case, payload: Payload) -> Result<Target, String> {
    let lookup = Bytes::from(json!({ "userIDs": [PEER] }).to_string());
    let text = text_4k();
    let direct_send = |i: usize| {
        json!({"sendID": env.direct_users[i % env.direct_users.len()], "recvID": PEER, "senderPlatformID": 5,
               "content": {"content": text}, "contentType": 101, "sessionType": 1})
    };
    let openim = |url: &str, path: &str, body: Bytes, tokens: Vec<String>, check| Target {
        addr: addr(url),
        path: path.to_owned(),
        body,
        auth: Auth::Token(tokens),
        check,
    };
    match (case, payload) {
        (Case::Floor | Case::Nginx, Payload::Lookup) => {
            let url = if case == Case::Floor { &env.emu_url } else { &nginx(env)?.url };
            Ok(openim(url, "/user/get_users_info", lookup, env.direct_tokens.clone(), Check::OpenImLookup))
        }
        (Case::Floor | Case::Nginx, Payload::Send4k) => {
            // send_msg takes the admin token (as imgate's /v1 send does); one sender per party user
            // would need one body per client, so the first direct user sends.
            let url = if case == Case::Floor { &env.emu_url } else { &nginx(env)?.url };
            let body = Bytes::from(direct_send(0).to_string());
            Ok(openim(url, "/msg/send_msg", body, vec![env.admin_token.clone()], Check::OpenImSend))
        }
        (Case::Passthrough, Payload::Lookup) => {
            Ok(openim(&env.plain.url, "/openim/user/get_users_info", lookup, env.plain.bearers.clone(), Check::OpenImLookup))
        }
        (Case::CompatPlugins, Payload::Lookup) => Ok(openim(
            &env.plugged.url,
            "/openim/user/get_users_info",
            lookup,
            env.plugged.bearers.clone(),
            Check::OpenImLookup,
        )),
        (Case::Passthrough | Case::CompatPlugins, Payload::Send4k) => {
            Err("n/a: /openim/msg/send_msg is refused by design (an OpenIM admin route, contract §10; SDKs send over the WebSocket)".into())
        }
        (Case::V1Plugins, _) => Ok(v1(&env.plugged, payload, true)),
        (Case::V1Memory, _) => Ok(v1(&env.plain, payload, false)),
        (Case::V1Redis, _) => env.redis.as_ref().map(|r| v1(&r.gateway, payload, false)).map_err(Clone::clone),
    }
}

/// The processes whose CPU time is the case's gateway cost.
fn gateway_pids(env: &Env, case: Case) -> Vec<u32> {
    match case {
        Case::Floor => vec![env.emu.pid()],
        Case::Nginx => env.nginx.as_ref().map(|n| n.pids.clone()).unwrap_or_default(),
        Case::Passthrough | Case::V1Memory => vec![env.plain.proc.pid()],
        Case::V1Plugins | Case::CompatPlugins => vec![env.plugged.proc.pid()],
        // Both are what that deployment costs per request.
        Case::V1Redis => env.redis.as_ref().map(|r| vec![r.gateway.proc.pid(), r.server.pid()]).unwrap_or_default(),
    }
}

struct Settings {
    cases: Vec<Case>,
    payloads: Vec<Payload>,
    out: PathBuf,
    rounds: u32,
    duration: Duration,
    warmup: Duration,
    concurrency: Vec<usize>,
    /// Run the HTTP cases.
    http: bool,
    /// Signed requests per payload over which case 7's store round trips are counted.
    trips_requests: u64,
    /// Run the WebSocket section.
    ws: Option<ws::WsSettings>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = Settings {
        cases: Case::ALL.into_iter().filter(|c| cli.cases.as_ref().is_none_or(|l| l.contains(&c.number()))).collect(),
        payloads: Payload::ALL
            .into_iter()
            .filter(|p| match cli.payload.as_deref() {
                Some("lookup") => *p == Payload::Lookup,
                Some("send") => *p == Payload::Send4k,
                _ => true,
            })
            .collect(),
        out: cli
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(if cli.smoke { "target/bench-smoke" } else { "target/bench" })),
        rounds: cli.rounds.unwrap_or(if cli.smoke { 1 } else { 3 }).max(1),
        duration: Duration::from_millis(cli.duration_ms.unwrap_or(if cli.smoke { 150 } else { 3000 })),
        warmup: Duration::from_millis(cli.warmup_ms.unwrap_or(if cli.smoke { 50 } else { 500 })),
        concurrency: cli.concurrency.clone().unwrap_or_else(|| if cli.smoke { vec![16] } else { vec![1, 16, 64] }),
        http: cli.only.as_deref() != Some("ws"),
        trips_requests: cli.trips_requests.unwrap_or(if cli.smoke { 50 } else { 1000 }).max(1),
        ws: (cli.only.as_deref() != Some("http") && !cli.instructions).then(|| ws::WsSettings {
            idle: cli.ws_idle.unwrap_or(if cli.smoke { 20 } else { 10_000 }),
            open_concurrency: cli.ws_open_concurrency.max(1),
            settle: Duration::from_millis(cli.ws_settle_ms.unwrap_or(if cli.smoke { 200 } else { 3000 })),
            sends: cli.ws_sends.unwrap_or(if cli.smoke { 50 } else { 20_000 }).max(1),
            concurrency: cli
                .ws_concurrency
                .clone()
                .unwrap_or_else(|| if cli.smoke { vec![1, 4] } else { vec![1, 16] })
                .into_iter()
                .map(|c| c.max(1))
                .collect(),
            rounds: cli.rounds.unwrap_or(if cli.smoke { 1 } else { 3 }).max(1),
            smoke: cli.smoke,
        }),
    };
    // One thread for the harness and the load generator alike: the clients never compete with
    // each other for more than one core.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imgate-bench: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&cli, &settings)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("imgate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything; `Ok(false)` when a case failed (report written).
async fn run(cli: &Cli, s: &Settings) -> Result<bool, String> {
    for (what, p) in [("imgate", &cli.imgate), ("openim-emu", &cli.emu)] {
        if !p.is_file() {
            return Err(format!(
                "no {what} binary at {} (build it first, or pass --{})",
                p.display(),
                what.replace("openim-", "")
            ));
        }
    }
    let redis = redis_server(cli, s)?;
    if let Err(why) = &redis {
        if s.cases.contains(&Case::V1Redis) && s.http && !cli.instructions {
            println!("case 7: {why}");
        }
    }
    let started = Instant::now();
    // The processes started below inherit it: thousands of WebSockets need as many descriptors in
    // the harness, the emulator and imgate (which raises its own limit only as far as
    // `server.max_connections` needs).
    let nofile = procs::raise_open_file_limit()?;
    let machine = procs::machine();
    println!(
        "machine: {} cores (nproc), CPU {}, load average {}, kernel {}; open-file limit {nofile}",
        machine.cores, machine.cpu_model, machine.loadavg, machine.kernel
    );
    std::fs::create_dir_all(&s.out).map_err(|e| format!("{}: {e}", s.out.display()))?;
    let abs = |p: &PathBuf| p.canonicalize().map_err(|e| format!("{}: {e}", p.display()));
    let opts = setup::SetupOptions {
        imgate: abs(&cli.imgate)?,
        emu: abs(&cli.emu)?,
        plugins_dir: abs(&cli.plugins)?,
        nginx: cli.nginx.clone(),
        nginx_workers: cli.nginx_workers.clone(),
        log_level: cli.imgate_log_level.clone(),
        dir: s.out.join("run"),
        users: cli.users,
        wrap: cli.instructions.then(|| {
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=callgrind.out.%p"]
                .map(str::to_owned)
                .to_vec()
        }),
        start_nginx: s.http || cli.instructions,
        redis,
        ws: s.ws.as_ref().map(|w| setup::WsOptions {
            idle_users: cli.ws_users.unwrap_or(if cli.smoke { 4 } else { 64 }).clamp(1, w.idle.max(1)),
            latency_users: w.concurrency.iter().copied().max().unwrap_or(1),
            max_connections: w.idle + 1000,
        }),
    };
    if cli.instructions {
        let mut env = setup::start(&opts).await?;
        let result = instructions::measure(&mut env, s).await;
        env.stop();
        return result.map(|()| true);
    }
    let mut env = setup::start(&opts).await?;
    let setup_secs = started.elapsed().as_secs_f64();
    let nginx_workers = env.nginx.as_ref().map_or(0, |n| n.pids.len().saturating_sub(1));
    println!(
        "set up in {setup_secs:.1} s: emulator {}, nginx {} ({nginx_workers} workers), imgate plain {}, imgate plugins {}, imgate redis store {}, imgate ws relay {}",
        env.emu_url,
        env.nginx.as_ref().map_or("not started", |n| n.url.as_str()),
        env.plain.url,
        env.plugged.url,
        env.redis.as_ref().map_or("not started", |r| r.gateway.url.as_str()),
        env.ws.as_ref().map_or("not started", |w| w.gateway.url.as_str()),
    );
    let result = match s.http {
        true => measure(&mut env, s).await,
        false => Ok(Vec::new()),
    };
    let round_trips = match (&result, &env.redis) {
        (Ok(_), Ok(r)) if s.cases.contains(&Case::V1Redis) => {
            println!("store round trips (case 7's gateway)");
            let targets = s.payloads.iter().map(|&p| (p, v1(&r.gateway, p, false))).collect();
            let idle = Duration::from_millis(if cli.smoke { 1000 } else { 3000 });
            match trips::measure(&r.metrics_url, targets, r.gateway.sessions.len(), s.trips_requests, idle).await {
                Ok(t) => t,
                Err(e) => {
                    env.stop();
                    return Err(e);
                }
            }
        }
        _ => Vec::new(),
    };
    // Read before the WebSocket section: its 10 000 connections leave their memory in the
    // emulator's allocator.
    let emu_rss = procs::rss_mib(env.emu.pid());
    let imgate_rss = [procs::rss_mib(env.plain.proc.pid()), procs::rss_mib(env.plugged.proc.pid())];
    let redis_rss =
        env.redis.as_ref().ok().map(|r| (procs::rss_mib(r.gateway.proc.pid()), procs::rss_mib(r.server.pid())));
    let websocket = match (&result, &s.ws) {
        (Ok(_), Some(w)) => match ws::measure(&mut env, w).await {
            Ok(r) => Some(r),
            Err(e) => {
                env.stop();
                return Err(e);
            }
        },
        _ => None,
    };
    env.stop();
    let cases = result?;
    let (mut audit_files, mut configs) = (
        vec![env.plain.audit_file.display().to_string(), env.plugged.audit_file.display().to_string()],
        vec![env.plain.config_file.display().to_string(), env.plugged.config_file.display().to_string()],
    );
    if let Ok(r) = &env.redis {
        audit_files.push(r.gateway.audit_file.display().to_string());
        configs.push(r.gateway.config_file.display().to_string());
    }

    let report = Report::new(report::Inputs {
        smoke: cli.smoke,
        machine,
        loadavg_end: procs::loadavg(),
        rounds: s.rounds,
        duration_ms: s.duration.as_millis() as u64,
        warmup_ms: s.warmup.as_millis() as u64,
        concurrency: s.concurrency.clone(),
        users: cli.users,
        log_level: cli.imgate_log_level.clone(),
        nginx_workers,
        nginx_conf: env.nginx.as_ref().map(|n| n.conf.display().to_string()).unwrap_or_default(),
        audit_files,
        configs,
        emu_rss_mib: emu_rss,
        imgate_rss_mib: imgate_rss.to_vec(),
        redis_version: env.redis.as_ref().ok().map(|r| r.version.clone()),
        redis_rss_mib: redis_rss,
        round_trips,
        setup_secs,
        total_secs: started.elapsed().as_secs_f64(),
        cases,
        websocket,
        criterion: report::criterion(&cli.criterion),
        includes: cli
            .include
            .iter()
            .filter_map(|arg| {
                let (title, file) = arg.split_once('=').unwrap_or((arg, arg));
                Some((title.to_owned(), std::fs::read_to_string(file).ok()?))
            })
            .collect(),
    });
    report.write(&s.out)?;
    println!();
    println!("{}", report.summary_markdown());
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    println!("report: {} (also report.json, latency.svg)", s.out.join("report.md").display());
    let failures = report.failures();
    for f in &failures {
        eprintln!("FAILED: {f}");
    }
    Ok(failures.is_empty())
}

/// Case 7's redis-server: `Ok(path)`, or `Ok(Err(why))` when case 7 is not run (its cells say
/// why); an error when `--redis-server` names no executable, or when `--smoke` (which `make test`
/// runs) finds none.
fn redis_server(cli: &Cli, s: &Settings) -> Result<Result<PathBuf, String>, String> {
    if !s.http || cli.instructions || !s.cases.contains(&Case::V1Redis) {
        return Ok(Err("n/a: not started".into()));
    }
    if let Some(p) = &cli.redis_server {
        return procs::which(p, &[]).map(Ok).ok_or_else(|| format!("--redis-server {p}: no such executable"));
    }
    match procs::which("redis-server", &["/usr/bin/redis-server"]) {
        Some(p) => Ok(Ok(p)),
        None if cli.smoke => Err("case 7 (the Redis store) needs redis-server: none on PATH nor at /usr/bin/redis-server; `make deps` installs it (Debian package redis-server), or pass --redis-server PATH".into()),
        None => Ok(Err("n/a: no redis-server on PATH nor at /usr/bin/redis-server (`make deps` installs it, or pass --redis-server PATH)".into())),
    }
}

/// Every round runs every (payload, concurrency, case) once; the case order rotates per round.
async fn measure(env: &mut Env, s: &Settings) -> Result<Vec<CaseResult>, String> {
    let ticks = procs::clock_ticks();
    let me = std::process::id();
    let mut results: Vec<CaseResult> = Vec::new();
    for &payload in &s.payloads {
        for &conc in &s.concurrency {
            for &case in &s.cases {
                let na = target(env, case, payload).err();
                results.push(CaseResult::new(case, payload, conc, na));
            }
        }
    }
    for round in 1..=s.rounds {
        println!("round {round}/{}", s.rounds);
        for &payload in &s.payloads {
            for &conc in &s.concurrency {
                for k in 0..s.cases.len() {
                    let case = s.cases[(k + round as usize - 1) % s.cases.len()];
                    let Ok(t) = target(env, case, payload) else { continue };
                    env.check_alive()?;
                    let gw = gateway_pids(env, case);
                    let emu = env.emu.pid();
                    let mut samples: Vec<[u64; 3]> = Vec::new();
                    let r = load::run(Arc::new(t), conc, s.warmup, s.duration, || {
                        samples.push([procs::cpu_ticks_of(&gw), procs::cpu_ticks(emu), procs::cpu_ticks(me)]);
                    })
                    .await?;
                    let delta = |j: usize| match (samples.first(), samples.get(1)) {
                        (Some(a), Some(b)) => b[j].saturating_sub(a[j]),
                        _ => 0,
                    };
                    let rr = RoundResult::new(round, &r, [delta(0), delta(1), delta(2)], ticks);
                    println!(
                        "  {:<36} c={conc:<3} {:<34} {:>9.0} req/s  p50 {:>7} µs  p99 {:>7} µs  errors {}",
                        payload.label(),
                        case.label(),
                        rr.throughput,
                        rr.p50_us,
                        rr.p99_us,
                        rr.errors.total()
                    );
                    if let Some(c) =
                        results.iter_mut().find(|c| c.case == case && c.payload == payload && c.concurrency == conc)
                    {
                        c.add_round(rr, &r.hist)?;
                    }
                }
            }
        }
    }
    Ok(results)
}
