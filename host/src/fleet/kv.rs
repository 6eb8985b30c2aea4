//! The plugins' `kv` shared by the fleet: a value written through one instance is read through
//! every other.
//!
//! One namespace (plugin) is three keys: `kv:<ns>` a hash of the values, `kvx:<ns>` a sorted set
//! of the keys that expire (score: when, ms on Redis's clock), `kvb:<ns>` the bytes held (key +
//! value, as the in-memory store counts them). Every operation is one script: expired entries are
//! purged first (the one touched, and a few more each time), then the quota is checked against
//! what is live in the same step as the write, so concurrent writers on several instances cannot
//! overshoot it.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::Fleet;
use crate::plugins::kv::{KvError, PluginKv, Quota};

/// Shared by every script: `now()`, `purge(k, now)` (drops `k` if expired), `sweep(now, n)`.
const PRELUDE: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function drop(k)
  local v = redis.call('HGET', KEYS[1], k)
  if v then redis.call('DECRBY', KEYS[3], #k + #v) end
  redis.call('HDEL', KEYS[1], k)
  redis.call('ZREM', KEYS[2], k)
end
local function purge(k, now)
  local e = redis.call('ZSCORE', KEYS[2], k)
  if e and tonumber(e) <= now then drop(k) end
end
local function sweep(now, n)
  for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, n)) do drop(k) end
end
local function fits(k, new_len, old, max_keys, max_bytes)
  local bytes = tonumber(redis.call('GET', KEYS[3]) or '0')
  local old_len = 0
  if old then old_len = #k + #old end
  local keys = redis.call('HLEN', KEYS[1])
  if not old then keys = keys + 1 end
  return keys <= max_keys and bytes - old_len + new_len <= max_bytes
end
";

/// ARGV: key, value, ttl ms (-1: none), max keys, max bytes. 0 stored, 1 over quota.
const SET: &str = r"
local now = now_ms()
local k, v = ARGV[1], ARGV[2]
sweep(now, 16)
purge(k, now)
local old = redis.call('HGET', KEYS[1], k)
local mk, mb = tonumber(ARGV[4]), tonumber(ARGV[5])
if not fits(k, #k + #v, old, mk, mb) then
  sweep(now, 1000)
  old = redis.call('HGET', KEYS[1], k)
  if not fits(k, #k + #v, old, mk, mb) then return 1 end
end
local old_len = 0
if old then old_len = #k + #old end
redis.call('HSET', KEYS[1], k, v)
redis.call('INCRBY', KEYS[3], #k + #v - old_len)
if tonumber(ARGV[3]) >= 0 then
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), k)
else
  redis.call('ZREM', KEYS[2], k)
end
return 0";

/// ARGV: key, delta, ttl ms (-1: none), max keys, max bytes. {0, value} | {1} quota | {2} not a counter.
const INCR: &str = r"
local now = now_ms()
local k = ARGV[1]
sweep(now, 16)
purge(k, now)
local old = redis.call('HGET', KEYS[1], k)
if old and not string.match(old, '^[+-]?%d+$') then return {2} end
local ok = redis.pcall('HINCRBY', KEYS[1], k, ARGV[2])
if type(ok) == 'table' and ok.err then
  if not old then redis.call('HDEL', KEYS[1], k) end
  if string.find(ok.err, 'overflow') then
    if string.sub(ARGV[2], 1, 1) == '-' then
      redis.call('HSET', KEYS[1], k, '-9223372036854775808')
    else
      redis.call('HSET', KEYS[1], k, '9223372036854775807')
    end
  else
    return {2}
  end
end
local v = redis.call('HGET', KEYS[1], k)
local old_len = 0
if old then old_len = #k + #old end
local keys = redis.call('HLEN', KEYS[1])
local bytes = tonumber(redis.call('GET', KEYS[3]) or '0') - old_len + #k + #v
if keys > tonumber(ARGV[4]) or bytes > tonumber(ARGV[5]) then
  if old then redis.call('HSET', KEYS[1], k, old) else redis.call('HDEL', KEYS[1], k) end
  return {1}
end
redis.call('INCRBY', KEYS[3], #k + #v - old_len)
if not old and tonumber(ARGV[3]) >= 0 then redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), k) end
return {0, v}";

const GET: &str = r"
purge(ARGV[1], now_ms())
return redis.call('HGET', KEYS[1], ARGV[1])";

const DEL: &str = r"
drop(ARGV[1])
return 0";

pub struct RedisKv {
    fleet: Arc<Fleet>,
    get: Script,
    set: Script,
    del: Script,
    incr: Script,
}

impl RedisKv {
    pub fn new(fleet: Arc<Fleet>) -> RedisKv {
        let script = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        RedisKv { fleet, get: script(GET), set: script(SET), del: script(DEL), incr: script(INCR) }
    }

    fn keys(&self, ns: &str) -> [String; 3] {
        [
            self.fleet.key(&format!("kv:{ns}")),
            self.fleet.key(&format!("kvx:{ns}")),
            self.fleet.key(&format!("kvb:{ns}")),
        ]
    }

    async fn call<T: redis::FromRedisValue>(
        &self,
        what: &'static str,
        script: &Script,
        ns: &str,
        args: &[&[u8]],
    ) -> Result<T, KvError> {
        let [a, b, c] = self.keys(ns);
        let mut inv = script.key(a);
        inv.key(b).key(c);
        for arg in args {
            inv.arg(*arg);
        }
        let mut conn = self.fleet.conn();
        self.fleet.run(what, inv.invoke_async(&mut conn)).await.map_err(|e| KvError::Unavailable(e.0))
    }
}

fn ttl_arg(ttl: Option<Duration>) -> String {
    ttl.map_or(-1, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX)).to_string()
}

#[async_trait::async_trait]
impl PluginKv for RedisKv {
    async fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.call("kv_get", &self.get, ns, &[key.as_bytes()]).await
    }

    async fn set(
        &self,
        ns: &str,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        quota: Quota,
    ) -> Result<(), KvError> {
        let (ttl, mk, mb) = (ttl_arg(ttl), quota.max_keys.to_string(), quota.max_bytes.to_string());
        let args: [&[u8]; 5] = [key.as_bytes(), &value, ttl.as_bytes(), mk.as_bytes(), mb.as_bytes()];
        match self.call::<i64>("kv_set", &self.set, ns, &args).await? {
            0 => Ok(()),
            _ => Err(KvError::Quota),
        }
    }

    async fn delete(&self, ns: &str, key: &str) -> Result<(), KvError> {
        self.call::<i64>("kv_delete", &self.del, ns, &[key.as_bytes()]).await.map(|_| ())
    }

    async fn increment(
        &self,
        ns: &str,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
        quota: Quota,
    ) -> Result<i64, KvError> {
        let (d, ttl, mk, mb) =
            (delta.to_string(), ttl_arg(ttl), quota.max_keys.to_string(), quota.max_bytes.to_string());
        let args: [&[u8]; 5] = [key.as_bytes(), d.as_bytes(), ttl.as_bytes(), mk.as_bytes(), mb.as_bytes()];
        let reply: Vec<redis::Value> = self.call("kv_increment", &self.incr, ns, &args).await?;
        let code = reply.first().and_then(|v| redis::from_redis_value_ref::<i64>(v).ok());
        match code {
            Some(0) => reply
                .get(1)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                .and_then(|s| s.trim_start_matches('+').parse().ok())
                .ok_or_else(|| KvError::Unavailable("kv_increment: unexpected answer".into())),
            Some(1) => Err(KvError::Quota),
            _ => Err(KvError::NotACounter),
        }
    }
}
