//! The benchmark's results and their three renderings: `report.json` (everything, per round),
//! `report.md` (tables per payload and concurrency, ratios to nginx and to the floor, round
//! spread warnings, the Redis store against the memory store of the same run with the store
//! round trips per signed request, the WebSocket relay section, the criterion micro-benchmarks)
//! and `latency.svg` (percentiles per HTTP case).

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::{self, Errors, RunResult};
use crate::procs::Machine;
use crate::trips::{self, RoundTrips};
use crate::ws::WsReport;
use crate::{Case, Payload};

/// One measured run of one case.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RoundResult {
    pub(crate) round: u32,
    pub(crate) ok: u64,
    pub(crate) errors: Errors,
    pub(crate) seconds: f64,
    pub(crate) throughput: f64,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    pub(crate) mean_us: f64,
    /// utime+stime deltas over the measured window, in clock ticks: gateway, emulator, load generator.
    pub(crate) cpu_ticks: [u64; 3],
    pub(crate) clock_ticks_per_sec: u64,
}

impl RoundResult {
    pub(crate) fn new(round: u32, r: &RunResult, cpu_ticks: [u64; 3], clock_ticks_per_sec: u64) -> RoundResult {
        let seconds = r.elapsed.as_secs_f64();
        RoundResult {
            round,
            ok: r.ok,
            errors: r.errors.clone(),
            seconds,
            throughput: if seconds > 0.0 { r.ok as f64 / seconds } else { 0.0 },
            p50_us: r.hist.value_at_quantile(0.5),
            p99_us: r.hist.value_at_quantile(0.99),
            p999_us: r.hist.value_at_quantile(0.999),
            mean_us: r.hist.mean(),
            cpu_ticks,
            clock_ticks_per_sec,
        }
    }
}

/// The rounds of one case merged.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Summary {
    pub(crate) ok: u64,
    pub(crate) errors: u64,
    /// Mean of the rounds' throughputs (answers/s).
    pub(crate) throughput: f64,
    /// Percentiles of every round's latencies together.
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) p999_us: u64,
    /// CPU time per request (µs): the case's gateway (emulator for case 1, nginx master+workers for
    /// case 2, the imgate process for 3-6, imgate + redis-server for 7), the emulator, the load
    /// generator.
    pub(crate) gateway_cpu_us: f64,
    pub(crate) emulator_cpu_us: f64,
    pub(crate) client_cpu_us: f64,
    /// (max - min) / mean of the rounds' throughputs; absent with one round.
    pub(crate) throughput_spread: Option<f64>,
}

/// A case's numbers divided by the reference case's (nginx, or the floor).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Ratios {
    pub(crate) throughput: Option<f64>,
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) gateway_cpu: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct CaseResult {
    pub(crate) case: Case,
    pub(crate) label: &'static str,
    pub(crate) payload: Payload,
    pub(crate) concurrency: usize,
    /// Why the case does not apply to this payload.
    pub(crate) not_applicable: Option<String>,
    pub(crate) rounds: Vec<RoundResult>,
    pub(crate) summary: Summary,
    pub(crate) vs_nginx: Ratios,
    pub(crate) vs_floor: Ratios,
    #[serde(skip)]
    hist: Option<Histogram<u64>>,
}

impl CaseResult {
    pub(crate) fn new(case: Case, payload: Payload, concurrency: usize, not_applicable: Option<String>) -> CaseResult {
        CaseResult {
            case,
            label: case.label(),
            payload,
            concurrency,
            not_applicable,
            rounds: Vec::new(),
            summary: Summary::default(),
            vs_nginx: Ratios::default(),
            vs_floor: Ratios::default(),
            hist: None,
        }
    }

    pub(crate) fn add_round(&mut self, r: RoundResult, hist: &Histogram<u64>) -> Result<(), String> {
        let merged = match self.hist.as_mut() {
            Some(h) => h,
            None => self.hist.insert(load::new_hist()?),
        };
        merged.add(hist).map_err(|e| e.to_string())?;
        self.rounds.push(r);
        Ok(())
    }

    fn applicable(&self) -> bool {
        self.not_applicable.is_none()
    }

    fn summarize(&mut self) {
        let n = self.rounds.len();
        if n == 0 {
            return;
        }
        let ok: u64 = self.rounds.iter().map(|r| r.ok).sum();
        let errors: u64 = self.rounds.iter().map(|r| r.errors.total()).sum();
        let tps: Vec<f64> = self.rounds.iter().map(|r| r.throughput).collect();
        let mean = tps.iter().sum::<f64>() / n as f64;
        let spread = spread(&tps);
        let per_req = |j: usize| cpu_us_per(&self.rounds, j, ok + errors);
        let q = |p: f64| self.hist.as_ref().map_or(0, |h| h.value_at_quantile(p));
        self.summary = Summary {
            ok,
            errors,
            throughput: mean,
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            gateway_cpu_us: per_req(0),
            emulator_cpu_us: per_req(1),
            client_cpu_us: per_req(2),
            throughput_spread: spread,
        };
    }

    fn clean(&self) -> bool {
        self.summary.errors == 0 && self.summary.ok > 0
    }
}

/// (max − min) / mean of the rounds' values; absent with one round or a zero mean.
pub(crate) fn spread(values: &[f64]) -> Option<f64> {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    (values.len() > 1 && mean > 0.0).then(|| {
        let max = values.iter().cloned().fold(f64::MIN, f64::max);
        let min = values.iter().cloned().fold(f64::MAX, f64::min);
        (max - min) / mean
    })
}

/// CPU µs per answer of process `j` (gateway, emulator, load generator) over the rounds.
pub(crate) fn cpu_us_per(rounds: &[RoundResult], j: usize, answered: u64) -> f64 {
    let us: f64 = rounds.iter().map(|r| r.cpu_ticks[j] as f64 * 1e6 / r.clock_ticks_per_sec.max(1) as f64).sum();
    us / answered.max(1) as f64
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

fn ratios(c: &Summary, r: &Summary) -> Ratios {
    Ratios {
        throughput: ratio(c.throughput, r.throughput),
        p50: ratio(c.p50_us as f64, r.p50_us as f64),
        p99: ratio(c.p99_us as f64, r.p99_us as f64),
        gateway_cpu: ratio(c.gateway_cpu_us, r.gateway_cpu_us),
    }
}

/// The goal of issue 14: the Redis store's throughput at least this fraction of the memory store's.
pub(crate) const REDIS_GOAL: f64 = 0.7;

/// Case 7 (Redis store) against case 6 (memory store) at one payload and concurrency.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StoreComparison {
    pub(crate) payload: Payload,
    pub(crate) concurrency: usize,
    /// Why there is no ratio (a case n/a, or not clean).
    pub(crate) not_compared: Option<String>,
    pub(crate) memory: Summary,
    pub(crate) redis: Summary,
    /// Redis ÷ memory (gateway CPU: imgate + redis-server ÷ imgate).
    pub(crate) ratios: Ratios,
    /// Redis ÷ memory throughput of each round (the two runs of a round are next to each other in
    /// time): how much the ratio itself moves.
    pub(crate) round_throughput_ratios: Vec<f64>,
    /// The goal on `ratios.throughput`.
    pub(crate) goal: f64,
    pub(crate) goal_met: Option<bool>,
}

/// One comparison per (payload, concurrency) where both case 6 and case 7 were run.
fn store_comparisons(cases: &[CaseResult]) -> Vec<StoreComparison> {
    cases
        .iter()
        .filter(|m| m.case == Case::V1Memory)
        .filter_map(|m| {
            let r = cases
                .iter()
                .find(|r| r.case == Case::V1Redis && r.payload == m.payload && r.concurrency == m.concurrency)?;
            let not_compared = match (&m.not_applicable, &r.not_applicable) {
                (Some(why), _) => Some(format!("case 6 {why}")),
                (_, Some(why)) => Some(format!("case 7 {why}")),
                _ if !m.clean() || !r.clean() => Some("errors: not compared".to_owned()),
                _ => None,
            };
            let ratios = match not_compared {
                None => ratios(&r.summary, &m.summary),
                Some(_) => Ratios::default(),
            };
            let round_throughput_ratios = match not_compared {
                None => m
                    .rounds
                    .iter()
                    .filter_map(|mr| {
                        let rr = r.rounds.iter().find(|rr| rr.round == mr.round)?;
                        ratio(rr.throughput, mr.throughput)
                    })
                    .collect(),
                Some(_) => Vec::new(),
            };
            Some(StoreComparison {
                payload: m.payload,
                concurrency: m.concurrency,
                not_compared,
                memory: m.summary.clone(),
                redis: r.summary.clone(),
                goal: REDIS_GOAL,
                goal_met: ratios.throughput.map(|t| t >= REDIS_GOAL),
                ratios,
                round_throughput_ratios,
            })
        })
        .collect()
}

/// A criterion benchmark's mean (`target/criterion/**/new/estimates.json`).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Criterion {
    pub(crate) id: String,
    pub(crate) mean_ns: f64,
}

/// Every criterion result under `dir` (none if it does not exist).
pub(crate) fn criterion(dir: &Path) -> Vec<Criterion> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<Criterion>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "new") {
                let read = |f: &str| -> Option<serde_json::Value> {
                    serde_json::from_str(&std::fs::read_to_string(p.join(f)).ok()?).ok()
                };
                let Some(est) = read("estimates.json") else { continue };
                let Some(mean_ns) = est["mean"]["point_estimate"].as_f64() else { continue };
                let id = read("benchmark.json")
                    .and_then(|b| b["full_id"].as_str().map(str::to_owned))
                    .or_else(|| p.parent()?.strip_prefix(root).ok().map(|r| r.display().to_string()))
                    .unwrap_or_default();
                out.push(Criterion { id, mean_ns });
            } else if p.file_name().is_none_or(|n| n != "report") {
                walk(&p, root, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

pub(crate) struct Inputs {
    pub(crate) smoke: bool,
    pub(crate) machine: Machine,
    pub(crate) loadavg_end: String,
    pub(crate) rounds: u32,
    pub(crate) duration_ms: u64,
    pub(crate) warmup_ms: u64,
    pub(crate) concurrency: Vec<usize>,
    pub(crate) users: usize,
    pub(crate) log_level: String,
    pub(crate) nginx_workers: usize,
    pub(crate) nginx_conf: String,
    pub(crate) audit_files: Vec<String>,
    pub(crate) configs: Vec<String>,
    pub(crate) emu_rss_mib: Option<f64>,
    pub(crate) imgate_rss_mib: Vec<Option<f64>>,
    /// `redis-server --version` of case 7.
    pub(crate) redis_version: Option<String>,
    /// Case 7's imgate and redis-server after the HTTP cases.
    pub(crate) redis_rss_mib: Option<(Option<f64>, Option<f64>)>,
    /// Case 7's store round trips per signed request, per payload.
    pub(crate) round_trips: Vec<RoundTrips>,
    pub(crate) setup_secs: f64,
    pub(crate) total_secs: f64,
    pub(crate) cases: Vec<CaseResult>,
    pub(crate) websocket: Option<WsReport>,
    pub(crate) criterion: Vec<Criterion>,
    pub(crate) includes: Vec<(String, String)>,
}

#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) smoke: bool,
    pub(crate) machine: Machine,
    pub(crate) loadavg_end: String,
    pub(crate) settings: serde_json::Value,
    pub(crate) notes: Vec<String>,
    /// The largest round-to-round throughput spread of the floor (case 1): the noise.
    pub(crate) noise: Option<f64>,
    pub(crate) warnings: Vec<String>,
    pub(crate) cases: Vec<CaseResult>,
    /// Case 7 ÷ case 6 per payload and concurrency (issue 14).
    pub(crate) redis_vs_memory: Vec<StoreComparison>,
    /// Case 7's store round trips per signed request (empty when case 7 did not run).
    pub(crate) redis_round_trips: Vec<RoundTrips>,
    /// The WebSocket relay section (absent with `--only http`).
    pub(crate) websocket: Option<WsReport>,
    pub(crate) criterion: Vec<Criterion>,
    pub(crate) includes: Vec<(String, String)>,
    pub(crate) setup_secs: f64,
    pub(crate) total_secs: f64,
}

/// The least spread that warrants a warning when the floor looked quieter than that.
const MIN_NOISE: f64 = 0.05;

impl Report {
    pub(crate) fn new(mut i: Inputs) -> Report {
        for c in i.cases.iter_mut() {
            c.summarize();
        }
        // Ratios to nginx and the floor of the same payload and concurrency.
        let refs: Vec<(Payload, usize, Option<Summary>, Option<Summary>)> = i
            .cases
            .iter()
            .filter(|c| c.case == Case::Floor)
            .map(|f| {
                let find = |case: Case| {
                    i.cases
                        .iter()
                        .find(|c| {
                            c.case == case && c.payload == f.payload && c.concurrency == f.concurrency && c.clean()
                        })
                        .map(|c| c.summary.clone())
                };
                (f.payload, f.concurrency, find(Case::Floor), find(Case::Nginx))
            })
            .collect();
        for c in i.cases.iter_mut().filter(|c| c.applicable() && c.clean()) {
            if let Some((_, _, floor, nginx)) = refs.iter().find(|r| r.0 == c.payload && r.1 == c.concurrency) {
                if let Some(n) = nginx {
                    c.vs_nginx = ratios(&c.summary, n);
                }
                if let Some(f) = floor {
                    c.vs_floor = ratios(&c.summary, f);
                }
            }
        }
        let noise = i
            .cases
            .iter()
            .filter(|c| c.case == Case::Floor)
            .filter_map(|c| c.summary.throughput_spread)
            .reduce(f64::max);
        let mut warnings = Vec::new();
        if let Some(noise) = noise {
            let limit = noise.max(MIN_NOISE);
            for c in i.cases.iter().filter(|c| c.case != Case::Floor) {
                if let Some(s) = c.summary.throughput_spread.filter(|&s| s > limit) {
                    warnings.push(format!(
                        "{} · c={} · {}: rounds disagree by {:.0}% of throughput, more than the noise measured on the floor ({:.0}%, at least {:.0}%): take its numbers with care",
                        c.payload.label(),
                        c.concurrency,
                        c.label,
                        s * 100.0,
                        noise * 100.0,
                        MIN_NOISE * 100.0
                    ));
                }
            }
        }
        for c in i.cases.iter().filter(|c| c.applicable() && !c.clean()) {
            warnings.push(format!(
                "{} · c={} · {}: {} errors, {} successful answers: its numbers are not clean",
                c.payload.label(),
                c.concurrency,
                c.label,
                c.summary.errors,
                c.summary.ok
            ));
        }
        for t in i.round_trips.iter().filter(|t| !t.goal_met) {
            warnings.push(format!(
                "{}: {:.2} store round trips per signed request on the Redis store, the goal is {}",
                t.payload.label(),
                t.per_request,
                trips::GOAL
            ));
        }
        if let Some(rss) = i.emu_rss_mib {
            if rss > 2048.0 {
                warnings.push(format!("the emulator kept every message in memory and grew to {rss:.0} MiB"));
            }
        }
        let notes = vec![
            format!("Load generator: this binary, one tokio runtime with one thread (current_thread), a closed loop of N clients, each on its own HTTP/1.1 keep-alive connection (hyper 1 client connection API), the next request sent when the answer is in and checked. Latency = request written to answer read, in an HDR histogram (µs). It runs on the same {} cores as everything it measures.", i.machine.cores),
            "Every answer is verified: HTTP 200, and for OpenIM-shaped answers errCode 0 plus the expected record (usersInfo[0].userID / serverMsgID); for /v1 the success shape (users[0].user_id / server_msg_id). Failures are counted and never timed; a case with any is marked ⚠ and gets no ratios.".into(),
            format!("Rounds: {} × (payloads × concurrency × cases), cases interleaved inside each round (the order rotates per round), {} ms warm-up (not counted) and {} ms measured per run. Throughput = mean over rounds; percentiles over all rounds' latencies together.", i.rounds, i.warmup_ms, i.duration_ms),
            "CPU/request = utime+stime from /proc/<pid>/stat over the measured window ÷ requests answered: gateway = the emulator (case 1), nginx master + workers (case 2), the imgate process (cases 3-6), the imgate process + redis-server (case 7: both are what that deployment costs per request); the emulator's and the load generator's own columns for every case.".into(),
            format!("nginx: `worker_processes auto` ({} workers), `upstream` with `keepalive 64`, `proxy_http_version 1.1`, `Connection \"\"`, access log off; config {}.", i.nginx_workers, i.nginx_conf),
            format!("imgate: release or debug as given, `imgate serve` with every rate limit at 1 000 000/s (burst 1 000 000), max_concurrent_requests 4096, plugins.max_concurrent_calls 64, queue_timeout_ms 5000; audit on as deployed (files {}); log level {} (at info imgate writes one JSON log line per request, batched to stderr, here a file); configs {}.", i.audit_files.join(", "), i.log_level, i.configs.join(", ")),
            "Case 3 runs on an imgate without any plugin; cases 4 and 5 on a second imgate whose chain on `lookup_users`, `openim.user.get_users_info` and `send_text_to_user` is content-filter (on-request, mask of words absent from the traffic) then response-reshaper (on-response, strips `face_url` of other users: it rewrites the /v1 lookup answer).".into(),
            format!("Cases 6 and 7: the /v1 signed requests of case 4 without any plugin. Case 6 runs on case 3's gateway (in-memory store); case 7 on a third plugin-less gateway with `[store] backend = \"redis\"` against a redis-server the harness starts on loopback ({}, `--save \"\" --appendonly no`), with its own users: sessions, nonces and rate limits live in Redis, a signed request is designed to cost one Redis round trip (session from the instance's cache, one Lua script for nonce, session liveness/idle and the route's rate limit). Same configuration otherwise (rate limits out of the way, audit on).", i.redis_version.as_deref().unwrap_or("not started")),
            "Cases 4, 6 and 7's client signs every request (fresh 24-byte nonce, SHA-256 of the body, HMAC-SHA256) on the same machine: that client work shows in the client CPU column.".into(),
            format!("Identities: {} users per party, client i uses user i mod {}; the direct cases use OpenIM user tokens (lookup) and an OpenIM admin token of a second admin id (send_msg), as imgate does; imgate's /openim cases use bearer tokens from POST /v1/auth/token.", i.users, i.users),
            "The 4 KiB send through /openim (cases 3 and 5) does not exist: imgate refuses /openim/msg/send_msg on purpose (an OpenIM admin route, contract §10); OpenIM SDKs send over the WebSocket. Those cells say n/a.".into(),
            "The emulator keeps every sent message in memory (its RSS after the HTTP cases is in report.json, `settings.emulator_rss_mib_end`).".into(),
        ];
        let settings = serde_json::json!({
            "rounds": i.rounds, "duration_ms": i.duration_ms, "warmup_ms": i.warmup_ms,
            "concurrency": i.concurrency, "users_per_party": i.users, "nginx_workers": i.nginx_workers,
            "load_generator_threads": 1, "audit_files": i.audit_files, "configs": i.configs,
            "emulator_rss_mib_end": i.emu_rss_mib, "imgate_rss_mib_end": i.imgate_rss_mib,
            "redis_version": i.redis_version,
            "redis_case_imgate_rss_mib_end": i.redis_rss_mib.and_then(|r| r.0),
            "redis_server_rss_mib_end": i.redis_rss_mib.and_then(|r| r.1),
        });
        let redis_vs_memory = store_comparisons(&i.cases);
        Report {
            smoke: i.smoke,
            machine: i.machine,
            loadavg_end: i.loadavg_end,
            settings,
            notes,
            noise,
            warnings,
            cases: i.cases,
            redis_vs_memory,
            redis_round_trips: i.round_trips,
            websocket: i.websocket,
            criterion: i.criterion,
            includes: i.includes,
            setup_secs: i.setup_secs,
            total_secs: i.total_secs,
        }
    }

    /// What makes the run a failure: an applicable case without a successful answer, or any error
    /// (HTTP, the round-trip count's requests or Redis commands, WebSocket).
    pub(crate) fn failures(&self) -> Vec<String> {
        let ws = self.websocket.as_ref().map(WsReport::failures).unwrap_or_default();
        let trips = self
            .redis_round_trips
            .iter()
            .filter(|t| t.ok < t.requests || t.errors.total() > 0 || t.store_errors > 0)
            .map(|t| {
                format!(
                "store round trips · {}: {} of {} signed requests answered, {} errors {:?}, {} failed Redis commands",
                t.payload.label(),
                t.ok,
                t.requests,
                t.errors.total(),
                t.errors.samples,
                t.store_errors
            )
            });
        self.cases
            .iter()
            .filter(|c| c.applicable() && !c.clean())
            .map(|c| {
                let mut errors = Errors::default();
                for r in &c.rounds {
                    errors.merge(&r.errors);
                }
                format!(
                    "{} · c={} · {}: {} ok, {} errors (transport {}, status {}, answer {}) {:?}",
                    c.payload.label(),
                    c.concurrency,
                    c.label,
                    c.summary.ok,
                    c.summary.errors,
                    errors.transport,
                    errors.status,
                    errors.answer,
                    errors.samples
                )
            })
            .chain(trips)
            .chain(ws)
            .collect()
    }

    pub(crate) fn write(&self, out: &Path) -> Result<(), String> {
        let json = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(out.join("report.json"), json).map_err(|e| format!("report.json: {e}"))?;
        std::fs::write(out.join("report.md"), self.markdown()).map_err(|e| format!("report.md: {e}"))?;
        crate::report::svg(self, &out.join("latency.svg"))
    }

    /// The result tables alone (printed at the end of a run).
    pub(crate) fn summary_markdown(&self) -> String {
        let mut s = self.http_tables();
        s.push_str(&self.redis_section());
        if let Some(ws) = &self.websocket {
            s.push_str("## WebSocket relay\n\n");
            s.push_str(&ws.summary_markdown());
        }
        s
    }

    /// The HTTP cases' tables.
    fn http_tables(&self) -> String {
        let mut s = String::new();
        for payload in Payload::ALL {
            let mut levels: Vec<usize> =
                self.cases.iter().filter(|c| c.payload == payload).map(|c| c.concurrency).collect();
            levels.dedup();
            for conc in levels {
                s.push_str(&format!("### {} · concurrency {conc}\n\n", payload.label()));
                s.push_str("| case | req/s | p50 µs | p99 µs | p99.9 µs | gateway CPU µs/req | emulator CPU µs/req | client CPU µs/req | errors | req/s ÷ nginx | p99 ÷ nginx | CPU ÷ nginx | req/s ÷ floor | p99 ÷ floor | CPU ÷ floor | round spread |\n");
                s.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
                for c in self.cases.iter().filter(|c| c.payload == payload && c.concurrency == conc) {
                    s.push_str(&row(c));
                }
                s.push('\n');
            }
        }
        s
    }

    /// "Redis store vs memory (same run)": case 7 ÷ case 6 and the round trips per signed request
    /// (empty when neither case 6 nor case 7 ran).
    fn redis_section(&self) -> String {
        let mut s = String::new();
        if self.redis_vs_memory.is_empty() && self.redis_round_trips.is_empty() {
            return s;
        }
        s.push_str("## Redis store vs memory (same run)\n\n");
        s.push_str(&format!(
            "Case 7 (imgate `/v1` signed, no plugin, `[store] backend = \"redis\"`) ÷ case 6 (the same requests on an imgate with the in-memory store), measured in the same rounds, interleaved. Goal (issue 14): req/s ≥ {REDIS_GOAL}× the memory store's, checked on the mean over rounds; `per round` is the ratio of each round's two runs (made within half a minute of each other), which shows how much the ratio itself moves with the machine's noise. Case 7's gateway CPU is imgate + redis-server.\n\n"
        ));
        if !self.redis_vs_memory.is_empty() {
            s.push_str("| payload | c | req/s memory | req/s Redis | req/s ÷ memory | per round | p50 µs memory / Redis | p50 ÷ memory | p99 µs memory / Redis | p99 ÷ memory | gateway CPU µs/req memory / Redis | CPU ÷ memory | goal req/s ≥ 0.7× |\n");
            s.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
            for c in &self.redis_vs_memory {
                if let Some(why) = &c.not_compared {
                    s.push_str(&format!("| {} | {} | {why} |||||||||||\n", c.payload.label(), c.concurrency));
                    continue;
                }
                let (m, r) = (&c.memory, &c.redis);
                let rounds: Vec<String> = c.round_throughput_ratios.iter().map(|x| format!("{x:.2}")).collect();
                s.push_str(&format!(
                    "| {} | {} | {:.0} | {:.0} | **{}** | {} | {} / {} | {} | {} / {} | {} | {:.1} / {:.1} | {} | {} |\n",
                    c.payload.label(),
                    c.concurrency,
                    m.throughput,
                    r.throughput,
                    // Three decimals: the goal is checked on the exact ratio, 0.698 is not met.
                    c.ratios.throughput.map_or("–".into(), |x| format!("{x:.3}×")),
                    rounds.join(" · "),
                    m.p50_us,
                    r.p50_us,
                    fmt_ratio(c.ratios.p50),
                    m.p99_us,
                    r.p99_us,
                    fmt_ratio(c.ratios.p99),
                    m.gateway_cpu_us,
                    r.gateway_cpu_us,
                    fmt_ratio(c.ratios.gateway_cpu),
                    match c.goal_met {
                        Some(true) => "met",
                        Some(false) => "**not met**",
                        None => "–",
                    }
                ));
            }
            s.push('\n');
        }
        if self.redis_round_trips.is_empty() {
            s.push_str("Store round trips per signed request: not measured (case 7 did not run).\n\n");
            return s;
        }
        s.push_str(&format!(
            "Store round trips per signed request on the Redis store (goal: {} pipelined round trip for session + nonce + rate limit):\n\n",
            trips::GOAL
        ));
        s.push_str("| payload | signed requests | answered | round trips counted | background subtracted | round trips / request | raw | goal |\n|---|--:|--:|--:|--:|--:|--:|---|\n");
        for t in &self.redis_round_trips {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {:.1} ({:.2}/s × {:.2} s) | **{:.3}** | {:.3} | {} |\n",
                t.payload.label(),
                t.requests,
                t.ok,
                t.round_trips,
                t.background_per_sec * t.seconds,
                t.background_per_sec,
                t.seconds,
                t.per_request,
                t.per_request_raw,
                if t.goal_met { "met" } else { "**not met**" }
            ));
        }
        s.push_str(&format!(
            "\nMethod: after the measured rounds, on case 7's gateway: one unmeasured signed request per session (the sessions were made on this gateway, so its session cache already holds them; the first request of a session on an instance that does not hold it costs one more round trip), then `{}` read from its metrics listener, N signed requests sent one after the other on one connection (each answer checked), the counter read again. Whatever the instance sends to Redis on its own meanwhile (none is expected: its health PINGs are not counted) is measured over an idle window just before and subtracted pro rata; `raw` is the plain quotient.\n\n",
            trips::ROUND_TRIPS
        ));
        s
    }

    fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        s.push_str(if self.smoke {
            "# imgate benchmark — smoke run (timings meaningless)\n\n"
        } else {
            "# imgate benchmark\n\n"
        });
        s.push_str(&format!(
            "Machine: {} cores (nproc), CPU {}, kernel {}; load average {} at the start, {} at the end. Set-up {:.1} s, whole run {:.1} s.\n\n",
            m.cores, m.cpu_model, m.kernel, m.loadavg, self.loadavg_end, self.setup_secs, self.total_secs
        ));
        if self.cases.is_empty() {
            s.push_str("HTTP cases: not run (`--only ws`).\n\n");
        } else {
            s.push_str("Cases: 1 the OpenIM emulator called directly (the floor) · 2 nginx `proxy_pass` to it (the peer) · 3 imgate's OpenIM-compatible surface `/openim/...` with a bearer token, no plugin · 4 imgate `/v1` signed request with identity binding and a plugin chain on request and response · 5 imgate `/openim` with the same chain · 6 imgate `/v1` signed request without plugins, in-memory store · 7 the same with the Redis store (`[store] backend = \"redis\"`, a local redis-server). Payloads: `/user/get_users_info` of one user (/v1 twin `POST /v1/users/lookup`) and `/msg/send_msg` of a 4 KiB text (/v1 twin `POST /v1/messages/user/{peer}`).\n\n");
        }
        if let Some(ws) = &self.websocket {
            s.push_str("WebSocket relay: relayed idle connections held at once by one imgate (memory per connection, time to open them) and the latency a relayed 1003 text send adds over the same send made directly to the emulator's msg gateway (section below).\n\n");
            if let Some(r) = &ws.idle {
                s.push_str(&format!(
                    "Headline: {} relayed idle connections held ({} asked for), {} per idle relayed connection.\n\n",
                    r.held,
                    r.target,
                    r.kib_per_idle_conn.map_or("–".into(), |k| format!("{k:.1} KiB"))
                ));
            }
        }
        if !self.warnings.is_empty() {
            s.push_str("## Warnings\n\n");
            for w in &self.warnings {
                s.push_str(&format!("- ⚠ {w}\n"));
            }
            s.push('\n');
        }
        if !self.cases.is_empty() {
            s.push_str("## Results\n\n");
            s.push_str(&self.http_tables());
            s.push_str(&format!(
                "Round spread = (max − min) / mean of the rounds' throughputs. Noise (largest spread of the floor): {}.\n\n![latency percentiles](latency.svg)\n\n",
                self.noise.map_or("n/a (one round)".into(), |n| format!("{:.1}%", n * 100.0))
            ));
            s.push_str(&self.redis_section());
        }
        if !self.cases.is_empty() {
            s.push_str("## How it was measured\n\n");
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
            s.push_str("\n## Rounds\n\n| payload | c | case | round | req/s | p50 µs | p99 µs | p99.9 µs | errors |\n|---|--:|---|--:|--:|--:|--:|--:|--:|\n");
            for c in &self.cases {
                for r in &c.rounds {
                    s.push_str(&format!(
                        "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |\n",
                        c.payload.label(),
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
        }
        if let Some(ws) = &self.websocket {
            s.push_str(&ws.markdown());
        }
        s.push_str("## Micro-benchmarks (criterion, mean)\n\n");
        if self.criterion.is_empty() {
            s.push_str("None found (run `cargo bench -p host --bench auth --bench plugins --bench engine`; `make bench` does).\n");
        } else {
            s.push_str("| benchmark | mean |\n|---|--:|\n");
            for c in &self.criterion {
                s.push_str(&format!("| {} | {} |\n", c.id, human_ns(c.mean_ns)));
            }
        }
        for (name, text) in &self.includes {
            s.push_str(&format!("\n## {name}\n\n```text\n{}\n```\n", text.trim_end()));
        }
        s
    }
}

fn human_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.3} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("–".into(), |r| format!("{r:.2}×"))
}

fn row(c: &CaseResult) -> String {
    if let Some(why) = &c.not_applicable {
        return format!("| {} | {why} |||||||||||||||\n", c.label);
    }
    let s = &c.summary;
    let mark = if c.clean() { "" } else { "⚠ " };
    let errors = if s.errors == 0 { "0".to_owned() } else { format!("**{} FAILED**", s.errors) };
    format!(
        "| {} | {mark}{:.0} | {mark}{} | {mark}{} | {mark}{} | {mark}{:.1} | {:.1} | {:.1} | {errors} | {} | {} | {} | {} | {} | {} | {} |\n",
        c.label,
        s.throughput,
        s.p50_us,
        s.p99_us,
        s.p999_us,
        s.gateway_cpu_us,
        s.emulator_cpu_us,
        s.client_cpu_us,
        fmt_ratio(c.vs_nginx.throughput),
        fmt_ratio(c.vs_nginx.p99),
        fmt_ratio(c.vs_nginx.gateway_cpu),
        fmt_ratio(c.vs_floor.throughput),
        fmt_ratio(c.vs_floor.p99),
        fmt_ratio(c.vs_floor.gateway_cpu),
        s.throughput_spread.map_or("–".into(), |x| format!("{:.1}%", x * 100.0)),
    )
}

/// One panel per (payload, concurrency): p50 / p99 / p99.9 bars per case, log scale.
fn svg(report: &Report, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| format!("latency.svg: {e}");
    let mut levels: Vec<usize> = report.cases.iter().map(|c| c.concurrency).collect();
    levels.sort_unstable();
    levels.dedup();
    let cols = levels.len().max(1);
    let payloads: Vec<Payload> =
        Payload::ALL.into_iter().filter(|p| report.cases.iter().any(|c| c.payload == *p)).collect();
    let rows = payloads.len().max(1);
    let (w, h) = ((520 * cols as u32).max(640), 330 * rows as u32 + 40);
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root =
        root.titled("Latency per case (µs, log scale): p50 / p99 / p99.9", ("sans-serif", 20)).map_err(|e| err(&e))?;
    let panels = root.split_evenly((rows, cols));
    let colors = [RGBColor(70, 130, 180), RGBColor(255, 140, 0), RGBColor(178, 34, 34)];
    // Head-room above the tallest bar for the legend; the floor a decade under the lowest p50.
    let max = report.cases.iter().map(|c| c.summary.p999_us).max().unwrap_or(1).max(10) as f64 * 6.0;
    let min =
        report.cases.iter().filter(|c| c.summary.ok > 0).map(|c| c.summary.p50_us).min().unwrap_or(10).max(10) as f64;
    let min = 10f64.powf((min / 3.0).log10().floor()).max(1.0);
    for (idx, area) in panels.iter().enumerate() {
        let Some(&payload) = payloads.get(idx / cols) else { continue };
        let Some(&conc) = levels.get(idx % cols) else { continue };
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{} · c={conc}", payload.label()), ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(-0.5f64..(Case::ALL.len() as f64 - 0.5), (min..max).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(Case::ALL.len())
            .x_label_formatter(&|x| format!("case {}", x.round() as i64 + 1))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .y_desc("µs")
            .draw()
            .map_err(|e| err(&e))?;
        for c in
            report.cases.iter().filter(|c| c.payload == payload && c.concurrency == conc && c.not_applicable.is_some())
        {
            let x = c.case.number() as f64 - 1.0;
            chart
                .draw_series(std::iter::once(Text::new("n/a", (x - 0.15, min * 3.0), ("sans-serif", 12).into_font())))
                .map_err(|e| err(&e))?;
        }
        for c in report.cases.iter().filter(|c| c.payload == payload && c.concurrency == conc && c.summary.ok > 0) {
            let x = c.case.number() as f64 - 1.0;
            let s = &c.summary;
            for (j, (v, name)) in [(s.p50_us, "p50"), (s.p99_us, "p99"), (s.p999_us, "p99.9")].into_iter().enumerate() {
                let x0 = x - 0.36 + j as f64 * 0.24;
                let color = colors[j];
                let series = chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, min), (x0 + 0.22, (v as f64).max(min))],
                        color.filled(),
                    )))
                    .map_err(|e| err(&e))?;
                if idx == 0 && c.case == Case::Floor {
                    series
                        .label(name)
                        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
                }
            }
            if !c.clean() {
                chart
                    .draw_series(std::iter::once(Text::new(
                        "errors!",
                        (x - 0.3, max / 2.0),
                        ("sans-serif", 12).into_font().color(&RED),
                    )))
                    .map_err(|e| err(&e))?;
            }
        }
        if idx == 0 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(ok: u64, answer_errors: u64) -> RoundResult {
        RoundResult {
            round: 1,
            ok,
            errors: Errors { answer: answer_errors, ..Errors::default() },
            seconds: 1.0,
            throughput: ok as f64,
            p50_us: 100,
            p99_us: 200,
            p999_us: 300,
            mean_us: 120.0,
            cpu_ticks: [10, 5, 2],
            clock_ticks_per_sec: 100,
        }
    }

    fn case(case: Case, payload: Payload, rounds: &[(u64, u64)]) -> CaseResult {
        let mut c = CaseResult::new(case, payload, 16, None);
        for &(ok, errors) in rounds {
            let mut h = load::new_hist().unwrap();
            for i in 0..ok {
                h.record(100 + i).unwrap();
            }
            c.add_round(round(ok, errors), &h).unwrap();
        }
        c
    }

    fn trips(payload: Payload, ok: u64, round_trips: u64) -> RoundTrips {
        RoundTrips {
            payload,
            requests: 1000,
            ok,
            errors: Errors::default(),
            seconds: 0.5,
            round_trips,
            store_errors: 0,
            background_per_sec: 2.0,
            per_request: (round_trips as f64 - 1.0) / 1000.0,
            per_request_raw: round_trips as f64 / 1000.0,
            goal_met: round_trips <= 1005,
        }
    }

    fn report(cases: Vec<CaseResult>) -> Report {
        report_with(cases, vec![])
    }

    fn report_with(cases: Vec<CaseResult>, round_trips: Vec<RoundTrips>) -> Report {
        Report::new(Inputs {
            smoke: true,
            machine: Machine { cores: 2, cpu_model: "test".into(), loadavg: "0 0 0".into(), kernel: "k".into() },
            loadavg_end: "0 0 0".into(),
            rounds: 2,
            duration_ms: 1,
            warmup_ms: 1,
            concurrency: vec![16],
            users: 1,
            log_level: "info".into(),
            nginx_workers: 2,
            nginx_conf: "nginx.conf".into(),
            audit_files: vec![],
            configs: vec![],
            emu_rss_mib: None,
            imgate_rss_mib: vec![],
            redis_version: Some("Redis server v=7.0.15".into()),
            redis_rss_mib: None,
            round_trips,
            setup_secs: 0.0,
            total_secs: 0.0,
            cases,
            websocket: None,
            criterion: vec![],
            includes: vec![("extra".into(), "swap p50 1 ms".into())],
        })
    }

    #[test]
    fn cases_without_success_or_with_errors_fail_the_run_and_get_no_ratios() {
        let r = report(vec![
            case(Case::Floor, Payload::Lookup, &[(100, 0), (110, 0)]),
            case(Case::Nginx, Payload::Lookup, &[(50, 0), (50, 0)]),
            case(Case::Passthrough, Payload::Lookup, &[(40, 1), (40, 0)]),
            case(Case::V1Plugins, Payload::Lookup, &[]),
            case(Case::CompatPlugins, Payload::Lookup, &[(20, 0), (40, 0)]),
            case(Case::V1Memory, Payload::Lookup, &[(100, 0), (100, 0)]),
            case(Case::V1Redis, Payload::Lookup, &[(100, 0), (100, 0)]),
            CaseResult::new(Case::Passthrough, Payload::Send4k, 16, Some("n/a: refused".into())),
        ]);
        let failures = r.failures();
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert!(failures[0].contains("3 imgate") && failures[1].contains("4 imgate"), "{failures:?}");
        let nginx = &r.cases[1];
        assert_eq!(nginx.vs_floor.throughput.map(|x| (x * 100.0).round()), Some(48.0));
        assert!(r.cases[2].vs_nginx.throughput.is_none(), "a case with errors gets no ratio");
        assert_eq!(r.cases[6].vs_floor.throughput.map(|x| (x * 100.0).round()), Some(95.0), "cases 6 and 7 too");
        // CPU per request: 2 rounds × 10 ticks at 100/s = 200 ms over 210 requests.
        assert!((r.cases[0].summary.gateway_cpu_us - 200_000.0 / 210.0).abs() < 1e-6);
        // Case 5's rounds disagree (20 vs 40 req/s) far more than the floor's (100 vs 110).
        assert!(r.warnings.iter().any(|w| w.contains("5 imgate") && w.contains("rounds disagree")), "{:?}", r.warnings);
        let md = r.markdown();
        assert!(
            md.contains("**1 FAILED**")
                && md.contains("⚠ 40")
                && md.contains("n/a: refused")
                && md.contains("swap p50 1 ms")
        );
    }

    #[test]
    fn the_redis_store_is_compared_with_the_memory_store_of_the_same_run() {
        let r = report_with(
            vec![
                case(Case::Floor, Payload::Lookup, &[(200, 0), (200, 0)]),
                case(Case::V1Memory, Payload::Lookup, &[(100, 0), (100, 0)]),
                case(Case::V1Redis, Payload::Lookup, &[(80, 0), (80, 0)]),
                case(Case::V1Memory, Payload::Send4k, &[(100, 0), (100, 0)]),
                case(Case::V1Redis, Payload::Send4k, &[(50, 0), (50, 0)]),
                case(Case::Passthrough, Payload::Lookup, &[(100, 0)]),
            ],
            vec![trips(Payload::Lookup, 1000, 1001), trips(Payload::Send4k, 1000, 2001)],
        );
        assert_eq!(r.redis_vs_memory.len(), 2, "one per payload and concurrency");
        let (lookup, send) = (&r.redis_vs_memory[0], &r.redis_vs_memory[1]);
        assert_eq!((lookup.payload, send.payload), (Payload::Lookup, Payload::Send4k));
        assert_eq!(lookup.ratios.throughput.map(|x| (x * 100.0).round()), Some(80.0));
        assert_eq!((lookup.goal_met, send.goal_met), (Some(true), Some(false)), "the goal is 0.7×");
        // Case 7's CPU per request is compared too (here the same ticks over fewer requests).
        assert_eq!(lookup.ratios.gateway_cpu.map(|x| (x * 100.0).round()), Some(125.0));
        assert!(r.failures().is_empty(), "missing the goal is reported, not a failure: {:?}", r.failures());
        assert!(
            r.warnings.iter().any(|w| w.contains("4 KiB send") && w.contains("2.00 store round trips")),
            "{:?}",
            r.warnings
        );
        let md = r.markdown();
        assert!(md.contains("## Redis store vs memory (same run)"), "{md}");
        assert!(md.contains("| 80 | **0.800×** | 0.80 · 0.80 |") && md.contains("**not met**"), "{md}");
        assert_eq!(lookup.round_throughput_ratios, vec![0.8, 0.8], "round by round");
        assert!(md.contains("| **1.000** | 1.001 | met |") && md.contains("imgate_store_round_trips_total"), "{md}");
        assert!(md.contains("Redis server v=7.0.15"), "the notes name the Redis server");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["redis_vs_memory"][0]["goal"], 0.7);
        assert_eq!(json["redis_round_trips"][1]["round_trips"], 2001);

        // Case 7 n/a (no redis-server): the section says why, the run does not fail.
        let r = report(vec![
            case(Case::V1Memory, Payload::Lookup, &[(100, 0)]),
            CaseResult::new(Case::V1Redis, Payload::Lookup, 16, Some("n/a: no redis-server".into())),
        ]);
        assert!(r.failures().is_empty());
        assert_eq!(r.redis_vs_memory[0].not_compared.as_deref(), Some("case 7 n/a: no redis-server"));
        assert!(r.markdown().contains("case 7 n/a: no redis-server") && r.markdown().contains("not measured"));

        // A request of the round-trip count that failed fails the run; without case 6, no section.
        let mut bad = trips(Payload::Lookup, 999, 1000);
        bad.errors.status = 1;
        let r = report_with(vec![case(Case::Floor, Payload::Lookup, &[(100, 0)])], vec![bad]);
        assert!(r.failures().iter().any(|f| f.contains("999 of 1000")), "{:?}", r.failures());
        assert!(r.redis_vs_memory.is_empty());
    }

    #[test]
    fn writes_the_three_files() {
        let dir = std::env::temp_dir().join(format!("imgate-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = report(vec![
            case(Case::Floor, Payload::Lookup, &[(100, 0)]),
            CaseResult::new(Case::Passthrough, Payload::Send4k, 16, Some("n/a".into())),
        ]);
        r.write(&dir).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        assert_eq!(json["cases"][0]["summary"]["ok"], 100);
        assert!(std::fs::read_to_string(dir.join("latency.svg")).unwrap().starts_with("<svg"));
        assert!(std::fs::read_to_string(dir.join("report.md")).unwrap().contains("| 1 emulator direct (floor) |"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn criterion_means_are_read() {
        let dir = std::env::temp_dir().join(format!("imgate-bench-criterion-{}", std::process::id()));
        let new = dir.join("auth").join("handshake").join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::create_dir_all(dir.join("report")).unwrap();
        std::fs::write(new.join("estimates.json"), r#"{"mean":{"point_estimate":1234.5}}"#).unwrap();
        std::fs::write(new.join("benchmark.json"), r#"{"full_id":"auth/handshake"}"#).unwrap();
        let found = criterion(&dir);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].id.as_str(), found[0].mean_ns), ("auth/handshake", 1234.5));
        assert_eq!(human_ns(found[0].mean_ns), "1.23 µs");
        assert!(criterion(&dir.join("absent")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
