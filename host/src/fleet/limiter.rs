//! Rate limits shared by the fleet: GCRA, one Lua script per check, on Redis's clock.
//!
//! The state of a key is its theoretical arrival time (TAT, µs on Redis's `TIME`, so instances'
//! clocks never matter) in `rl:<class>:<tier>:<user>`, expiring when it no longer limits
//! anything. The script reads, decides and writes in one step, so the sum of what all instances
//! admit stays within the quota. While Redis is out of reach every instance limits with its own
//! buckets ([`MemoryLimiter`], same quotas): a fleet of N may then admit up to N times the quota
//! for that while, never an unlimited amount.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::Fleet;
use crate::ratelimit::{self, ClassConfig, Limiter, MemoryLimiter, Rate, RateKey};

/// `gcra(key, interval µs, burst)`: 0 admitted (and recorded); n > 0 refused, admitted again in
/// n µs. A Lua function, so a signed request's accept script can call it in the same step.
pub(super) const GCRA_FN: &str = r"
local function gcra(key, interval, burst)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  interval = tonumber(interval)
  local tolerance = interval * (tonumber(burst) - 1)
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  if now < tat - tolerance then return math.ceil(tat - tolerance - now) end
  local next = tat + interval
  redis.call('SET', key, string.format('%.0f', next), 'PX', math.ceil((next - now) / 1000) + 1)
  return 0
end
";

pub struct RedisLimiter {
    fleet: Arc<Fleet>,
    quotas: HashMap<(String, String), Rate>,
    script: Script,
    local: MemoryLimiter,
}

impl RedisLimiter {
    pub fn new(fleet: Arc<Fleet>, classes: &std::collections::BTreeMap<String, ClassConfig>) -> RedisLimiter {
        RedisLimiter {
            fleet,
            quotas: ratelimit::quotas(classes),
            script: Script::new(&format!("{GCRA_FN}\nreturn gcra(KEYS[1], ARGV[1], ARGV[2])")),
            local: MemoryLimiter::new(classes),
        }
    }

    fn invocation(&self, key: &RateKey) -> Option<redis::ScriptInvocation<'_>> {
        let rate = ratelimit::lookup(&self.quotas, &key.class, &key.tier)?;
        let mut inv = self.script.key(rate_key(&self.fleet, key));
        inv.arg(interval_us(*rate)).arg(rate.burst);
        Some(inv)
    }
}

/// Where a key's GCRA state lives.
pub(super) fn rate_key(fleet: &Fleet, key: &RateKey) -> String {
    fleet.key(&format!("rl:{}:{}:{}", key.class, key.tier, key.user_id))
}

/// The emission interval of a quota, in µs.
pub(super) fn interval_us(rate: Rate) -> u64 {
    (1_000_000 / u64::from(rate.per_second.max(1))).max(1)
}

#[async_trait]
impl Limiter for RedisLimiter {
    fn quota(&self, class: &str, tier: &str) -> Option<Rate> {
        ratelimit::lookup(&self.quotas, class, tier).copied()
    }

    async fn check(&self, key: &RateKey) -> Result<(), Duration> {
        let Some(inv) = self.invocation(key) else { return Ok(()) };
        let mut c = self.fleet.conn();
        match self.fleet.run("rate_limit", inv.invoke_async::<i64>(&mut c)).await {
            Ok(0) => Ok(()),
            Ok(wait_us) => Err(Duration::from_micros(wait_us.max(1) as u64)),
            // Never unlimited: this instance's own buckets hold while Redis is away.
            Err(_) => self.local.check(key).await,
        }
    }
}
