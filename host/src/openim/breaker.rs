//! Circuit breaking and a retry budget per OpenIM service, so a failing OpenIM is spared and
//! answered fast (attacks.md E12) instead of being called by every client request.
//!
//! OpenIM's API gateway fronts one gRPC service per path prefix (`/msg/*` the msg service,
//! `/group/*` the group service, …; contract §1): a service that is down fails every call of its
//! prefix while the others keep working. imgate keeps one [`Service`] per prefix, in the manner of
//! Envoy's cluster circuit breakers and outlier detection:
//!
//! - **Closed**: calls go through; `failures` consecutive infrastructure failures open it. A
//!   failure is what says the service is unwell, never what a caller can cause with its input:
//!   no answer (transport failure, timeout), an answer that is not OpenIM's envelope (HTTP 5xx
//!   among them, OpenIM's panic recovery), or errCode 14 / 4 (gRPC Unavailable / DeadlineExceeded,
//!   a service down or drowning). An errCode OpenIM answers after reading the request (1001,
//!   1002, 500, …) is an answer: it resets the count.
//! - **Open** for `open_ms`: calls are refused at once (`upstream_circuit_open`, 503 with
//!   `Retry-After`) without reaching OpenIM.
//! - **Half-open** after that: one call goes through as a probe, the others are still refused.
//!   The probe's success closes the breaker; its failure opens it again for twice as long (up to
//!   `max_open_ms`).
//!
//! Besides, at most `max_in_flight` calls of one service wait on OpenIM at once (Envoy's
//! `max_requests`): a hung service cannot take every request slot of the gateway from the others.
//!
//! The **retry budget** (after Finagle's `RetryBudget`) bounds the only automatic retries imgate
//! makes, those of idempotent reads after a transport failure: over the last 10 to 20 seconds a
//! service may retry `percent` % of its calls plus `min_per_sec` per second (so a quiet gateway can
//! still retry). In a storm retries add at most that to the load instead of multiplying it by
//! `1 + openim.read_retries`. (The one repeat after OpenIM refused imgate's own
//! stale token is not counted here: it is bounded to once per call and its token fetch is shared.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::errors::{ErrCode, OpenImError};
use crate::telemetry::{Metrics, RetryLabels, ServiceLabels};

/// OpenIM's services as imgate tells them apart: the first segment of the API path.
pub const SERVICES: [&str; 11] =
    ["auth", "user", "friend", "group", "msg", "conversation", "third", "object", "jssdk", "statistics", "other"];

/// The service of an OpenIM path (`/msg/send_msg` → `msg`); unknown prefixes share `other`.
pub fn service_of(path: &str) -> usize {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    SERVICES.iter().position(|s| *s == first).unwrap_or(SERVICES.len() - 1)
}

/// `[openim.breaker]`, as the breakers use it.
#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// Consecutive failures that open a service's breaker; 0 = never opens.
    pub failures: u32,
    pub open: Duration,
    pub max_open: Duration,
    /// Calls of one service in flight at once; 0 = no cap.
    pub max_in_flight: usize,
    /// Retries as a share of calls (percent).
    pub retry_percent: u32,
    /// Retries the budget allows per second however few calls there are.
    pub retry_min_per_sec: u32,
}

/// What an exchange with OpenIM came to, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// OpenIM answered (any errCode that is not infrastructure).
    Answered,
    /// The service looks unwell (see the module docs).
    Failed,
}

impl Outcome {
    /// The breaker's reading of one exchange's result.
    pub fn of(result: &Result<i64, OpenImError>) -> Outcome {
        match result {
            Ok(code) if matches!(ErrCode::from_code(*code), ErrCode::Other(14) | ErrCode::Other(4)) => Outcome::Failed,
            Ok(_) => Outcome::Answered,
            Err(OpenImError::Unavailable(_) | OpenImError::Timeout(_) | OpenImError::BadResponse(_)) => Outcome::Failed,
            // A route OpenIM lacks, a call imgate refused to make, a token store: not the service.
            Err(_) => Outcome::Answered,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        period: Duration,
    },
    /// One probe is out; `period` is how long to open again if it fails.
    HalfOpen {
        period: Duration,
    },
}

/// Calls and retries of a service in the current and the previous window.
#[derive(Debug)]
struct Budget {
    since: Instant,
    calls: [u64; 2],
    retries: [u64; 2],
}

/// The budget's window: it counts what happened in the current and the previous one.
const BUDGET_WINDOW: Duration = Duration::from_secs(10);

impl Budget {
    /// Moves the windows on to `now`.
    fn roll(&mut self, now: Instant) {
        let passed = now.duration_since(self.since);
        if passed >= BUDGET_WINDOW * 2 {
            *self = Budget { since: now, calls: [0; 2], retries: [0; 2] };
        } else if passed >= BUDGET_WINDOW {
            self.calls = [0, self.calls[0]];
            self.retries = [0, self.retries[0]];
            self.since += BUDGET_WINDOW;
        }
    }
}

struct Service {
    name: &'static str,
    state: Mutex<State>,
    in_flight: AtomicUsize,
    budget: Mutex<Budget>,
    open_gauge: Gauge,
    trips: Counter,
}

/// Every service's breaker and budget. Cheap to share (`Arc`).
pub struct Breakers {
    settings: BreakerSettings,
    /// The monotonic clock: `Instant::now`, or a test's hand-moved one.
    now: Box<dyn Fn() -> Instant + Send + Sync>,
    services: Vec<Service>,
    retries: Family<RetryLabels, Counter>,
    refused: Family<ServiceLabels, Counter>,
}

/// A call admitted to OpenIM: counts it in flight until dropped; [`Permit::finish`] tells the
/// breaker how it went. A permit dropped unfinished (the client went away) is no verdict, except
/// for a probe, which opens the breaker again rather than leave it half-open forever.
pub struct Permit {
    breakers: Arc<Breakers>,
    service: usize,
    probe: bool,
    finished: bool,
}

impl Breakers {
    pub fn new(settings: BreakerSettings, metrics: &Metrics) -> Arc<Breakers> {
        Breakers::with_clock(settings, metrics, Box::new(Instant::now))
    }

    fn with_clock(
        settings: BreakerSettings,
        metrics: &Metrics,
        clock: Box<dyn Fn() -> Instant + Send + Sync>,
    ) -> Arc<Breakers> {
        let now = clock();
        let services = SERVICES
            .iter()
            .map(|name| {
                let labels = ServiceLabels { service: (*name).to_owned() };
                Service {
                    name,
                    state: Mutex::new(State::Closed { failures: 0 }),
                    in_flight: AtomicUsize::new(0),
                    budget: Mutex::new(Budget { since: now, calls: [0; 2], retries: [0; 2] }),
                    open_gauge: metrics.openim_breaker_open.get_or_create(&labels).clone(),
                    trips: metrics.openim_breaker_trips.get_or_create(&labels).clone(),
                }
            })
            .collect();
        Arc::new(Breakers {
            settings,
            now: clock,
            services,
            retries: metrics.openim_retries.clone(),
            refused: metrics.openim_breaker_refused.clone(),
        })
    }

    /// Admits a call to `path`'s service, or refuses it at once with [`OpenImError::CircuitOpen`].
    pub fn admit(self: &Arc<Self>, path: &str) -> Result<Permit, OpenImError> {
        let i = service_of(path);
        let svc = &self.services[i];
        let mut probe = false;
        {
            let mut state = svc.state.lock().unwrap_or_else(|e| e.into_inner());
            match *state {
                State::Closed { .. } => {}
                State::Open { until, period } => {
                    let now = (self.now)();
                    if now < until {
                        return Err(self.refuse(i, "open", until - now));
                    }
                    *state = State::HalfOpen { period };
                    probe = true;
                }
                State::HalfOpen { .. } => return Err(self.refuse(i, "open", self.settings.open)),
            }
        }
        let max = self.settings.max_in_flight;
        let before = svc.in_flight.fetch_add(1, Ordering::AcqRel);
        let permit = Permit { breakers: self.clone(), service: i, probe, finished: false };
        if max > 0 && before >= max {
            // Dropping the permit gives the slot back (and re-opens a probe's breaker: it never ran).
            drop(permit);
            return Err(self.refuse(i, "max_in_flight", Duration::from_secs(1)));
        }
        Ok(permit)
    }

    fn refuse(&self, i: usize, why: &'static str, retry_after: Duration) -> OpenImError {
        let svc = &self.services[i];
        self.refused.get_or_create(&ServiceLabels { service: svc.name.to_owned() }).inc();
        OpenImError::CircuitOpen { service: svc.name, why, retry_after }
    }

    /// Whether `path`'s service may retry once more now; spends from its budget if so.
    pub fn may_retry(&self, path: &str) -> bool {
        let i = service_of(path);
        let svc = &self.services[i];
        let allowed = {
            let mut b = svc.budget.lock().unwrap_or_else(|e| e.into_inner());
            let now = (self.now)();
            b.roll(now);
            let s = &self.settings;
            // The previous window counts in full: a storm that began just before a roll-over
            // does not get a fresh allowance.
            let calls: u64 = b.calls.iter().sum();
            let window_secs = BUDGET_WINDOW.as_secs() + now.duration_since(b.since).as_secs();
            let allowance = calls * u64::from(s.retry_percent) / 100 + u64::from(s.retry_min_per_sec) * window_secs;
            if b.retries.iter().sum::<u64>() < allowance {
                b.retries[0] += 1;
                true
            } else {
                false
            }
        };
        let outcome = if allowed { "allowed" } else { "denied" };
        self.retries.get_or_create(&RetryLabels { service: svc.name.to_owned(), outcome: outcome.into() }).inc();
        allowed
    }

    fn count_call(&self, i: usize) {
        let mut b = self.services[i].budget.lock().unwrap_or_else(|e| e.into_inner());
        b.roll((self.now)());
        b.calls[0] += 1;
    }

    fn record(&self, i: usize, probe: bool, outcome: Outcome) {
        let svc = &self.services[i];
        let s = &self.settings;
        let mut state = svc.state.lock().unwrap_or_else(|e| e.into_inner());
        match (outcome, &mut *state) {
            (Outcome::Answered, State::Closed { failures }) => *failures = 0,
            (Outcome::Failed, State::Closed { failures }) => {
                *failures += 1;
                if s.failures > 0 && *failures >= s.failures {
                    *state = State::Open { until: (self.now)() + s.open, period: s.open };
                    svc.open_gauge.set(1);
                    svc.trips.inc();
                    tracing::warn!(
                        service = svc.name,
                        failures = s.failures,
                        open_ms = s.open.as_millis() as u64,
                        "OpenIM's service fails every call: its circuit is open, calls are refused without reaching it"
                    );
                }
            }
            (Outcome::Answered, State::HalfOpen { .. }) if probe => {
                *state = State::Closed { failures: 0 };
                svc.open_gauge.set(0);
                tracing::info!(service = svc.name, "OpenIM's service answers again: its circuit is closed");
            }
            (Outcome::Failed, State::HalfOpen { period }) if probe => {
                let period = (*period * 2).min(s.max_open.max(s.open));
                *state = State::Open { until: (self.now)() + period, period };
                svc.trips.inc();
                tracing::warn!(
                    service = svc.name,
                    open_ms = period.as_millis() as u64,
                    "OpenIM's service still fails: its circuit opens again"
                );
            }
            // Calls admitted before the breaker opened, finishing after: their verdict is moot.
            _ => {}
        }
    }

    /// The services whose breaker is not closed, for readiness: name and state.
    pub fn not_closed(&self) -> Vec<(&'static str, &'static str)> {
        self.services
            .iter()
            .filter_map(|svc| match *svc.state.lock().unwrap_or_else(|e| e.into_inner()) {
                State::Closed { .. } => None,
                State::Open { .. } => Some((svc.name, "open")),
                State::HalfOpen { .. } => Some((svc.name, "half_open")),
            })
            .collect()
    }
}

impl Permit {
    /// Tells the breaker how the call went, and counts it for the retry budget.
    pub fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.breakers.count_call(self.service);
        self.breakers.record(self.service, self.probe, outcome);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let b = &self.breakers;
        b.services[self.service].in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.probe && !self.finished {
            b.record(self.service, true, Outcome::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock only the test moves.
    #[derive(Clone)]
    struct Clock(Arc<Mutex<Instant>>);

    impl Clock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    fn breakers(failures: u32, open_ms: u64, max_in_flight: usize) -> Arc<Breakers> {
        breakers_on(&Clock(Arc::new(Mutex::new(Instant::now()))), failures, open_ms, max_in_flight)
    }

    fn breakers_on(clock: &Clock, failures: u32, open_ms: u64, max_in_flight: usize) -> Arc<Breakers> {
        let settings = BreakerSettings {
            failures,
            open: Duration::from_millis(open_ms),
            max_open: Duration::from_millis(open_ms * 4),
            max_in_flight,
            retry_percent: 20,
            retry_min_per_sec: 0,
        };
        let clock = clock.clone();
        Breakers::with_clock(settings, &Metrics::new(), Box::new(move || *clock.0.lock().unwrap()))
    }

    fn fail(b: &Arc<Breakers>, path: &str) {
        b.admit(path).expect("admitted").finish(Outcome::Failed);
    }

    #[test]
    fn paths_map_to_openim_services() {
        assert_eq!(SERVICES[service_of("/msg/send_msg")], "msg");
        assert_eq!(SERVICES[service_of("/group/get_groups_info")], "group");
        assert_eq!(SERVICES[service_of("/nosuch/x")], "other");
        assert_eq!(SERVICES[service_of("")], "other");
    }

    #[test]
    fn consecutive_failures_open_only_that_service_and_an_answer_resets_the_count() {
        let b = breakers(3, 60_000, 0);
        fail(&b, "/msg/send_msg");
        fail(&b, "/msg/send_msg");
        b.admit("/msg/pull_msg_by_seq").expect("closed").finish(Outcome::Answered);
        fail(&b, "/msg/send_msg");
        fail(&b, "/msg/send_msg");
        assert!(b.admit("/msg/send_msg").is_ok(), "two failures after an answer do not open it");
        fail(&b, "/msg/send_msg");
        let refused = b.admit("/msg/send_msg").err().expect("open");
        assert!(matches!(refused, OpenImError::CircuitOpen { service: "msg", why: "open", .. }), "{refused:?}");
        assert!(b.admit("/user/get_users_info").is_ok(), "another service is not affected");
        assert_eq!(b.not_closed(), vec![("msg", "open")]);
    }

    #[test]
    fn after_the_open_period_one_probe_goes_and_its_answer_closes_the_breaker() {
        let clock = Clock(Arc::new(Mutex::new(Instant::now())));
        let b = breakers_on(&clock, 1, 1000, 0);
        fail(&b, "/msg/x");
        clock.advance(Duration::from_millis(999));
        assert!(b.admit("/msg/x").is_err(), "still open until the period has passed");
        clock.advance(Duration::from_millis(1));
        let probe = b.admit("/msg/x").expect("the probe");
        assert!(b.admit("/msg/x").is_err(), "only one probe at a time");
        probe.finish(Outcome::Answered);
        assert!(b.admit("/msg/x").is_ok());
        assert!(b.not_closed().is_empty());
    }

    #[test]
    fn a_failed_or_abandoned_probe_opens_again_for_longer() {
        let clock = Clock(Arc::new(Mutex::new(Instant::now())));
        let b = breakers_on(&clock, 1, 1000, 0);
        fail(&b, "/msg/x");
        clock.advance(Duration::from_millis(1000));
        b.admit("/msg/x").expect("probe").finish(Outcome::Failed);
        let Err(OpenImError::CircuitOpen { retry_after, .. }) = b.admit("/msg/x") else { panic!("open again") };
        assert_eq!(retry_after, Duration::from_millis(2000), "twice the period");
        clock.advance(Duration::from_millis(2000));
        drop(b.admit("/msg/x").expect("probe")); // the client went away
        let Err(OpenImError::CircuitOpen { retry_after, .. }) = b.admit("/msg/x") else {
            panic!("an abandoned probe is no success")
        };
        assert_eq!(retry_after, Duration::from_millis(4000), "max_open caps the doubling");
        clock.advance(Duration::from_millis(4000));
        b.admit("/msg/x").expect("probe").finish(Outcome::Failed);
        let Err(OpenImError::CircuitOpen { retry_after, .. }) = b.admit("/msg/x") else { panic!("open again") };
        assert_eq!(retry_after, Duration::from_millis(4000), "never beyond max_open");
    }

    #[test]
    fn only_what_says_the_service_is_unwell_counts_as_a_failure() {
        let t = Duration::from_secs(1);
        for failed in [
            Ok(14),
            Ok(4),
            Err(OpenImError::Unavailable("reset".into())),
            Err(OpenImError::Timeout(t)),
            Err(OpenImError::BadResponse("HTTP status 500".into())),
        ] {
            assert_eq!(Outcome::of(&failed), Outcome::Failed, "{failed:?}");
        }
        // Answers a caller's input can provoke (500 is any Go error in OpenIM) never open a circuit.
        for answered in [
            Ok(0),
            Ok(500),
            Ok(1001),
            Ok(1002),
            Ok(1505),
            Err(OpenImError::NoRoute("/x".into())),
            Err(OpenImError::InvalidCall("platform".into())),
        ] {
            assert_eq!(Outcome::of(&answered), Outcome::Answered, "{answered:?}");
        }
    }

    #[test]
    fn zero_failures_never_opens() {
        let b = breakers(0, 60_000, 0);
        for _ in 0..100 {
            fail(&b, "/msg/x");
        }
        assert!(b.admit("/msg/x").is_ok());
    }

    #[test]
    fn in_flight_calls_of_one_service_are_capped() {
        let b = breakers(5, 1000, 2);
        let p1 = b.admit("/msg/x").expect("1");
        let _p2 = b.admit("/msg/x").expect("2");
        let refused = b.admit("/msg/x").err().expect("third refused");
        assert!(matches!(refused, OpenImError::CircuitOpen { why: "max_in_flight", .. }), "{refused:?}");
        assert!(b.admit("/group/x").is_ok(), "per service");
        drop(p1);
        assert!(b.admit("/msg/x").is_ok(), "a finished call gives its slot back");
    }

    #[test]
    fn the_retry_budget_is_a_share_of_the_calls() {
        let b = breakers(0, 1000, 0); // retry_min_per_sec 0: only the share of calls counts
        assert!(!b.may_retry("/msg/x"), "no calls, no retries");
        for _ in 0..100 {
            b.admit("/msg/x").expect("admitted").finish(Outcome::Failed);
        }
        let mut retries = 0;
        while b.may_retry("/msg/x") {
            retries += 1;
        }
        assert_eq!(retries, 20, "20 % of 100 calls");
        assert!(!b.may_retry("/group/x"), "per service");
    }

    #[test]
    fn the_retry_budget_counts_the_last_two_windows_only() {
        let clock = Clock(Arc::new(Mutex::new(Instant::now())));
        let b = breakers_on(&clock, 0, 1000, 0);
        for _ in 0..100 {
            b.admit("/msg/x").expect("admitted").finish(Outcome::Failed);
        }
        clock.advance(BUDGET_WINDOW);
        let mut retries = 0;
        while b.may_retry("/msg/x") {
            retries += 1;
        }
        assert_eq!(retries, 20, "the previous window's calls count in full");
        clock.advance(BUDGET_WINDOW * 2);
        for _ in 0..10 {
            b.admit("/msg/x").expect("admitted").finish(Outcome::Failed);
        }
        assert!(b.may_retry("/msg/x"), "two windows later the old calls and retries are forgotten: 10 calls allow 2");
        assert!(b.may_retry("/msg/x"));
        assert!(!b.may_retry("/msg/x"), "and no more");
    }
}
