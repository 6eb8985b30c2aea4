//! Store round trips per signed request (issue 14): what case 7's gateway (`[store] backend =
//! "redis"`) asks of Redis for one signed `/v1` request. The design is one round trip: the session
//! comes from the instance's session cache and one Lua script checks the nonce, the session's
//! liveness and idle time, and the route's rate limit.
//!
//! Method, after the measured rounds: one unmeasured request per session (every session is in the
//! gateway's cache, as it is after the first request of a session on an instance: a cache miss
//! costs one more trip), then the gateway's counter `imgate_store_round_trips_total` is read from
//! its metrics listener, N signed requests are sent one after the other (each answer checked), and
//! the counter is read again. Whatever the instance sends to Redis on its own meanwhile (none is
//! expected: its health PINGs are not counted) is measured over an idle window just before and
//! subtracted pro rata; the raw quotient is reported too.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::{self, Errors, Target};
use crate::Payload;

/// The counter of store round trips on imgate's metrics listener.
pub(crate) const ROUND_TRIPS: &str = "imgate_store_round_trips_total";
/// The counter of store commands that failed or timed out.
pub(crate) const STORE_ERRORS: &str = "imgate_store_errors_total";
/// The goal: round trips per signed request.
pub(crate) const GOAL: f64 = 1.0;

/// The round trips of one payload.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RoundTrips {
    pub(crate) payload: Payload,
    /// Signed requests sent one after the other.
    pub(crate) requests: u64,
    /// Of them, answered as expected.
    pub(crate) ok: u64,
    pub(crate) errors: Errors,
    pub(crate) seconds: f64,
    /// `imgate_store_round_trips_total` after − before.
    pub(crate) round_trips: u64,
    /// `imgate_store_errors_total` after − before.
    pub(crate) store_errors: u64,
    /// Round trips per second of the idle gateway (measured before), subtracted pro rata.
    pub(crate) background_per_sec: f64,
    /// (round trips − background × seconds) ÷ requests.
    pub(crate) per_request: f64,
    /// round trips ÷ requests.
    pub(crate) per_request_raw: f64,
    /// `per_request` is the goal's one round trip (to two decimals).
    pub(crate) goal_met: bool,
}

/// The sum of the samples of metric `name` (every label set) in Prometheus/OpenMetrics text.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let value = match rest.chars().next() {
            Some(' ') => rest.split_whitespace().next(),
            Some('{') => rest.rsplit_once('}').and_then(|(_, v)| v.split_whitespace().next()),
            _ => continue,
        };
        if let Some(v) = value.and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

async fn read(http: &reqwest::Client, url: &str) -> Result<(u64, u64), String> {
    let text = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .text()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let trips = metric(&text, ROUND_TRIPS).ok_or_else(|| format!("{url}: no {ROUND_TRIPS}"))?;
    let errors = metric(&text, STORE_ERRORS).unwrap_or(0.0);
    Ok((trips as u64, errors as u64))
}

/// `requests` signed requests of each of `targets` to the gateway whose metrics are at
/// `metrics_url`; `sessions` unmeasured ones first (one per session), `idle` without any request
/// to measure the background.
pub(crate) async fn measure(
    metrics_url: &str,
    targets: Vec<(Payload, Target)>,
    sessions: usize,
    requests: u64,
    idle: Duration,
) -> Result<Vec<RoundTrips>, String> {
    let http =
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    for (payload, t) in &targets {
        let (_, errors) = load::sequential(t, sessions.max(1) as u64).await?;
        if errors.total() > 0 {
            return Err(format!("round trips, {} warm-up: {errors:?}", payload.label()));
        }
    }
    let (idle_start, started) = (read(&http, metrics_url).await?.0, Instant::now());
    tokio::time::sleep(idle).await;
    let (idle_end, idle_secs) = (read(&http, metrics_url).await?.0, started.elapsed().as_secs_f64());
    let background_per_sec = idle_end.saturating_sub(idle_start) as f64 / idle_secs.max(1e-3);
    let mut out = Vec::new();
    for (payload, t) in targets {
        let before = read(&http, metrics_url).await?;
        let started = Instant::now();
        let (ok, errors) = load::sequential(&t, requests).await?;
        let seconds = started.elapsed().as_secs_f64();
        let after = read(&http, metrics_url).await?;
        let round_trips = after.0.saturating_sub(before.0);
        let n = requests.max(1) as f64;
        let per_request = (round_trips as f64 - background_per_sec * seconds).max(0.0) / n;
        let r = RoundTrips {
            payload,
            requests,
            ok,
            errors,
            seconds,
            round_trips,
            store_errors: after.1.saturating_sub(before.1),
            background_per_sec,
            per_request,
            per_request_raw: round_trips as f64 / n,
            goal_met: (per_request * 100.0).round() <= GOAL * 100.0,
        };
        println!(
            "  round trips, {:<36} {} signed requests in {:.2} s: {} store round trips ({:.2}/s in the background) = {:.3} per request (raw {:.3})",
            payload.label(),
            r.requests,
            r.seconds,
            r.round_trips,
            r.background_per_sec,
            r.per_request,
            r.per_request_raw
        );
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_from_the_exposition() {
        let text = "# HELP imgate_store_round_trips Round trips to the shared store (Redis).\n\
                    # TYPE imgate_store_round_trips counter\n\
                    imgate_store_round_trips_total 1234\n\
                    imgate_store_round_trips_total_other 9\n\
                    imgate_store_errors_total{kind=\"a\"} 2\n\
                    imgate_store_errors_total{kind=\"b\"} 3\n\
                    # EOF\n";
        assert_eq!(metric(text, ROUND_TRIPS), Some(1234.0));
        assert_eq!(metric(text, STORE_ERRORS), Some(5.0), "every label set");
        assert_eq!(metric(text, "imgate_store_up"), None);
    }
}
