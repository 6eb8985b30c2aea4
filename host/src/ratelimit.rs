//! Per-user rate limits (GCRA), keyed by user, route class and tier; 429 + `Retry-After`.
//!
//! The key is the *user*, never the session or the address, so opening 500 sessions does not buy
//! 500 budgets (attacks.md A8). Each route names a class (`[rate_limits.<class>]`); a tier (from
//! the device enrollment today; sessions and plugins later) picks a different quota inside the
//! class. Limits sit behind the [`Limiter`] trait: [`MemoryLimiter`] (governor's GCRA, monotonic
//! clock) is the embedded default; `fleet::limiter::RedisLimiter` (one GCRA state per key in
//! Redis, shared by every instance) replaces it when several instances serve.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// One quota: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// `[rate_limits.<class>]`: the class's default quota and per-tier overrides.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    pub per_second: u32,
    pub burst: u32,
    #[serde(default)]
    pub tiers: BTreeMap<String, Rate>,
}

/// The classes every config has unless it overrides them.
pub fn default_classes() -> BTreeMap<String, ClassConfig> {
    let class = |per_second, burst| ClassConfig { per_second, burst, tiers: BTreeMap::new() };
    BTreeMap::from([
        ("default".to_owned(), class(20, 40)),
        ("send".to_owned(), class(5, 10)),
        ("admin".to_owned(), class(10, 50)),
    ])
}

pub fn validate(classes: &BTreeMap<String, ClassConfig>) -> Vec<String> {
    let mut errors = Vec::new();
    if !classes.contains_key("default") {
        errors.push("rate_limits.default: the `default` class is required".into());
    }
    for (name, c) in classes {
        let rates = std::iter::once((name.clone(), Rate { per_second: c.per_second, burst: c.burst }))
            .chain(c.tiers.iter().map(|(t, r)| (format!("{name}.tiers.{t}"), *r)));
        for (key, r) in rates {
            if r.per_second == 0 || r.burst == 0 {
                errors.push(format!("rate_limits.{key}: per_second and burst must be at least 1"));
            }
        }
    }
    errors
}

/// Who is being limited, for what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateKey {
    pub user_id: String,
    pub class: String,
    pub tier: String,
}

/// A rate-limit backend.
#[async_trait]
pub trait Limiter: Send + Sync + 'static {
    /// Ok if the key may go now; otherwise how long until it may.
    async fn check(&self, key: &RateKey) -> Result<(), Duration>;

    /// The quota of a (class, tier), for a backend that checks it elsewhere in the same step (a
    /// signed request's store call on Redis: `Store::accept_and_limit`). None: only
    /// [`Limiter::check`].
    fn quota(&self, _class: &str, _tier: &str) -> Option<Rate> {
        None
    }
}

/// A request whose rate limit was already checked in the step that authenticated it (one round
/// trip for nonce, session and limit); the rate-limit stage uses this verdict instead of asking.
#[derive(Debug, Clone, Copy)]
pub struct LimitChecked(pub Result<(), Duration>);

/// In-process GCRA limits, one governor limiter per (class, tier), keyed by user.
pub struct MemoryLimiter {
    limiters: HashMap<(String, String), DefaultKeyedRateLimiter<String>>,
}

fn quota(r: Rate) -> Quota {
    let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(nz(r.per_second)).allow_burst(nz(r.burst))
}

/// Every (class, tier) quota of a config; tier "" is the class's own. Admin routes always have a
/// class of their own: the built-in one unless configured (a strict user `default` must not
/// throttle operators).
pub fn quotas(classes: &BTreeMap<String, ClassConfig>) -> HashMap<(String, String), Rate> {
    let mut out = HashMap::new();
    let builtin_admin = default_classes().remove("admin").map(|c| ("admin".to_owned(), c));
    let missing_admin = builtin_admin.filter(|_| !classes.contains_key("admin"));
    for (name, c) in classes.iter().map(|(n, c)| (n.clone(), c.clone())).chain(missing_admin) {
        out.insert((name.clone(), String::new()), Rate { per_second: c.per_second, burst: c.burst });
        for (tier, r) in &c.tiers {
            out.insert((name.clone(), tier.clone()), *r);
        }
    }
    out
}

/// The quota of a key: its tier's, else its class's, else `default`'s (a route naming an unknown
/// class; config validation prevents it).
pub fn lookup<'a, T>(table: &'a HashMap<(String, String), T>, class: &str, tier: &str) -> Option<&'a T> {
    table
        .get(&(class.to_owned(), tier.to_owned()))
        .or_else(|| table.get(&(class.to_owned(), String::new())))
        .or_else(|| table.get(&("default".to_owned(), String::new())))
}

impl MemoryLimiter {
    pub fn new(classes: &BTreeMap<String, ClassConfig>) -> MemoryLimiter {
        let limiters = quotas(classes).into_iter().map(|(k, r)| (k, RateLimiter::keyed(quota(r)))).collect();
        MemoryLimiter { limiters }
    }

    fn limiter(&self, class: &str, tier: &str) -> Option<&DefaultKeyedRateLimiter<String>> {
        lookup(&self.limiters, class, tier)
    }
}

#[async_trait]
impl Limiter for MemoryLimiter {
    async fn check(&self, key: &RateKey) -> Result<(), Duration> {
        // A route naming an unknown class falls back to `default`; config validation prevents it.
        let Some(limiter) = self.limiter(&key.class, &key.tier) else { return Ok(()) };
        let verdict = limiter.check_key(&key.user_id);
        if limiter.len() > 100_000 {
            limiter.retain_recent();
        }
        verdict.map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

pub type DynLimiter = Arc<dyn Limiter>;

/// `Retry-After` seconds for a wait: rounded up (a client that waits that long finds budget), ≥ 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Pipeline stage "rate limit" (after authentication): the class is the route's; the key is the
/// user (never the session) or, on admin routes, the admin's issuer and subject.
pub async fn limit_user(State((state, class)): State<(AppState, Arc<str>)>, req: Request, next: Next) -> Response {
    let key = if let Some(caller) = req.extensions().get::<Caller>() {
        RateKey { user_id: caller.user_id.clone(), class: class.to_string(), tier: caller.tier.clone() }
    } else if let Some(admin) = req.extensions().get::<crate::auth::AdminPrincipal>() {
        RateKey {
            user_id: format!("admin:{}:{}", admin.issuer, admin.subject),
            class: class.to_string(),
            tier: String::new(),
        }
    } else {
        return ApiError::internal("rate limit stage without an authenticated caller").into_response();
    };
    let verdict = match req.extensions().get::<LimitChecked>() {
        Some(LimitChecked(v)) => *v,
        None => state.limiter.check(&key).await,
    };
    match verdict {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            let mut e = ApiError::new(ErrorCode::RateLimited).with_detail(format!("class {class}, tier {}", key.tier));
            e.retry_after_secs = Some(retry_after_secs(wait));
            e.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_then_refusal_with_a_wait_and_users_are_independent() {
        let mut classes = default_classes();
        classes.insert(
            "t".into(),
            ClassConfig {
                per_second: 1,
                burst: 3,
                tiers: BTreeMap::from([("gold".into(), Rate { per_second: 1, burst: 6 })]),
            },
        );
        let l = MemoryLimiter::new(&classes);
        let key = |u: &str, tier: &str| RateKey { user_id: u.into(), class: "t".into(), tier: tier.into() };
        for _ in 0..3 {
            assert_eq!(l.check(&key("a", "")).await, Ok(()));
        }
        let wait = l.check(&key("a", "")).await.expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert_eq!(l.check(&key("b", "")).await, Ok(()), "another user has their own budget");
        for _ in 0..6 {
            assert_eq!(l.check(&key("g", "gold")).await, Ok(()), "the gold tier has a bigger burst");
        }
        assert!(l.check(&key("g", "gold")).await.is_err());
    }

    #[test]
    fn config_checks() {
        let mut c = BTreeMap::new();
        c.insert("send".to_owned(), ClassConfig { per_second: 0, burst: 1, tiers: BTreeMap::new() });
        let errs = validate(&c);
        assert!(errs.iter().any(|e| e.contains("rate_limits.default")), "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("rate_limits.send")), "{errs:?}");
    }
}
