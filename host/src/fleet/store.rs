//! The `Store` on Redis: every decision ("is this nonce new?", "is this ts newer?", "is this
//! ticket still there?") is one Lua script, so two instances can never both accept the same one.
//!
//! Keys (all under `store.key_prefix`):
//! - `dev:<key hex>` the device (JSON); `udev:<user>` hash device id → key hex; `hts:<key hex>` the
//!   last accepted handshake ts of the device.
//! - `sess:<id>` hash {`d` the session (JSON, with its HMAC key), `u` user, `v` device, `l` last
//!   use}, expiring at the session's absolute end; `usess:<user>` the user's session ids (a sorted
//!   set by end, pruned as sessions are added, expiring with the last of them).
//! - `nonce:<session>:<nonce>` (SET NX, expiring with the signature window).
//! - `tok:<hash hex>` → session (bearer tokens, by SHA-256); `tkt:<hash hex>` → session (tickets)
//!   and `stkt:<session>` the session's unredeemed tickets (a sorted set by expiry).
//!
//! Revoking a session deletes `sess:<id>`; tokens, tickets and the nonce check all look it up, so
//! nothing else needs deleting. A session's record is immutable but for `l`, so an instance may
//! keep it in [`SessionCache`] for the *pre-signature* lookup of a signed request; the
//! post-signature script ([`Store::accept_request`]) asks Redis every time, so a revocation made on
//! any instance holds at the next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redis::Script;
use serde::{Deserialize, Serialize};

use super::Fleet;
use crate::store::{Accepted, Device, EnrollError, Session, Store, StoreError};

/// The `Store` of a fleet.
pub struct RedisStore {
    fleet: Arc<Fleet>,
    scripts: Scripts,
    cache: SessionCache,
}

struct Scripts {
    enroll: Script,
    list_devices: Script,
    delete_device: Script,
    advance_ts: Script,
    accept: Script,
    accept_limit: Script,
    touch: Script,
    revoke: Script,
    revoke_of: Script,
    token_session: Script,
    put_ticket: Script,
    take_ticket: Script,
}

/// `accept(session key, nonce key, now, idle ms, nonce ttl ms)`: 0 accepted (nonce recorded, idle
/// timeout restarted), 1 replayed nonce, 2 no live session. Only called after the MAC verified.
const ACCEPT_FN: &str = r"
local function accept(sk, nk, now, idle, ttl)
  local l = redis.call('HGET', sk, 'l')
  if not l then return 2 end
  now = tonumber(now)
  if now - tonumber(l) >= tonumber(idle) then
    redis.call('DEL', sk)
    return 2
  end
  if not redis.call('SET', nk, '1', 'NX', 'PX', ttl) then return 1 end
  if now > tonumber(l) then redis.call('HSET', sk, 'l', tostring(now)) end
  return 0
end
";

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            enroll: Script::new(
                r"if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
                  if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 2 end
                  redis.call('SET', KEYS[1], ARGV[2])
                  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
                  return 0",
            ),
            list_devices: Script::new(
                r"local out = {}
                  for _, k in ipairs(redis.call('HVALS', KEYS[1])) do
                    local d = redis.call('GET', ARGV[1] .. 'dev:' .. k)
                    if d then table.insert(out, d) end
                  end
                  return out",
            ),
            delete_device: Script::new(
                r"local k = redis.call('HGET', KEYS[1], ARGV[1])
                  if not k then return false end
                  local d = redis.call('GET', ARGV[2] .. 'dev:' .. k)
                  redis.call('DEL', ARGV[2] .. 'dev:' .. k, ARGV[2] .. 'hts:' .. k)
                  redis.call('HDEL', KEYS[1], ARGV[1])
                  return d",
            ),
            advance_ts: Script::new(
                r"local cur = redis.call('GET', KEYS[1])
                  if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
                  redis.call('SET', KEYS[1], ARGV[1])
                  return 1",
            ),
            accept: Script::new(&format!("{ACCEPT_FN}\nreturn accept(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])")),
            accept_limit: Script::new(&format!(
                "{ACCEPT_FN}{}\nlocal a = accept(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])\n\
                 if a ~= 0 then return {{a, 0}} end\nreturn {{0, gcra(KEYS[3], ARGV[4], ARGV[5])}}",
                super::limiter::GCRA_FN
            )),
            touch: Script::new(
                r"local l = redis.call('HGET', KEYS[1], 'l')
                  if l and tonumber(ARGV[1]) > tonumber(l) then redis.call('HSET', KEYS[1], 'l', ARGV[1]) end
                  return 0",
            ),
            revoke: Script::new(
                r"local u = redis.call('HGET', KEYS[1], 'u')
                  if not u then return 0 end
                  redis.call('DEL', KEYS[1])
                  redis.call('ZREM', ARGV[1] .. 'usess:' .. u, ARGV[2])
                  return 1",
            ),
            revoke_of: Script::new(
                r"local out = {}
                  for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
                    local k = ARGV[1] .. 'sess:' .. sid
                    local h = redis.call('HMGET', k, 'd', 'v')
                    if not h[1] then
                      redis.call('ZREM', KEYS[1], sid)
                    elseif ARGV[2] == '' or h[2] == ARGV[2] then
                      redis.call('DEL', k)
                      redis.call('ZREM', KEYS[1], sid)
                      table.insert(out, h[1])
                    end
                  end
                  return out",
            ),
            token_session: Script::new(
                r"local sid = redis.call('GET', KEYS[1])
                  if not sid then return false end
                  if redis.call('EXISTS', ARGV[1] .. 'sess:' .. sid) == 0 then return false end
                  return sid",
            ),
            put_ticket: Script::new(
                r"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
                  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
                  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
                  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
                  redis.call('SET', KEYS[2], ARGV[5], 'PXAT', ARGV[2])
                  return 1",
            ),
            take_ticket: Script::new(
                r"local sid = redis.call('GET', KEYS[1])
                  if not sid then return false end
                  redis.call('DEL', KEYS[1])
                  redis.call('ZREM', ARGV[1] .. 'stkt:' .. sid, ARGV[2])
                  if redis.call('EXISTS', ARGV[1] .. 'sess:' .. sid) == 0 then return false end
                  return sid",
            ),
        }
    }
}

/// A device as stored (the key in hex).
#[derive(Serialize, Deserialize)]
struct DeviceRec {
    user: String,
    device: String,
    platform: i32,
    key: String,
    tier: String,
    created: i64,
}

impl DeviceRec {
    fn of(d: &Device) -> DeviceRec {
        DeviceRec {
            user: d.user_id.clone(),
            device: d.device_id.clone(),
            platform: d.platform_id,
            key: hex::encode(d.public_key),
            tier: d.tier.clone(),
            created: d.created_at_ms,
        }
    }

    fn parse(json: &str) -> Result<Device, StoreError> {
        let r: DeviceRec = serde_json::from_str(json).map_err(|_| corrupt("device"))?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(&r.key, &mut key).map_err(|_| corrupt("device key"))?;
        Ok(Device {
            user_id: r.user,
            device_id: r.device,
            platform_id: r.platform,
            public_key: key,
            tier: r.tier,
            created_at_ms: r.created,
        })
    }
}

/// A session as stored (`last_used_ms` lives beside it, in field `l`).
#[derive(Serialize, Deserialize)]
struct SessionRec {
    id: String,
    key: String,
    user: String,
    device: String,
    platform: i32,
    tier: String,
    created: i64,
    expires: i64,
}

impl SessionRec {
    fn of(s: &Session) -> SessionRec {
        SessionRec {
            id: s.session_id.clone(),
            key: hex::encode(s.session_key),
            user: s.user_id.clone(),
            device: s.device_id.clone(),
            platform: s.platform_id,
            tier: s.tier.clone(),
            created: s.created_at_ms,
            expires: s.expires_at_ms,
        }
    }

    fn parse(json: &str, last_used_ms: i64) -> Result<Session, StoreError> {
        let r: SessionRec = serde_json::from_str(json).map_err(|_| corrupt("session"))?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(&r.key, &mut key).map_err(|_| corrupt("session key"))?;
        Ok(Session {
            session_id: r.id,
            session_key: key,
            user_id: r.user,
            device_id: r.device,
            platform_id: r.platform,
            tier: r.tier,
            created_at_ms: r.created,
            expires_at_ms: r.expires,
            last_used_ms,
        })
    }
}

/// A record that does not parse was not written by imgate: refuse, as if Redis were unavailable.
fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("a stored {what} record does not parse"))
}

/// Sessions this instance has read, for the lookup before a signature is checked (the key it is
/// checked with). Bounded; an entry is used only until the session's absolute end.
#[derive(Default)]
struct SessionCache {
    map: Mutex<HashMap<String, Session>>,
}

/// Entries kept at most; beyond, the cache is cleared (it refills from Redis).
const SESSION_CACHE_MAX: usize = 100_000;

impl SessionCache {
    fn get(&self, sid: &str, now_ms: i64) -> Option<Session> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(sid).filter(|s| s.expires_at_ms > now_ms).cloned()
    }

    fn put(&self, s: &Session) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SESSION_CACHE_MAX {
            map.clear();
        }
        map.insert(s.session_id.clone(), s.clone());
    }

    fn forget(&self, sid: &str) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).remove(sid);
    }
}

impl RedisStore {
    pub fn new(fleet: Arc<Fleet>) -> RedisStore {
        RedisStore { fleet, scripts: Scripts::new(), cache: SessionCache::default() }
    }

    fn k(&self, rest: &str) -> String {
        self.fleet.key(rest)
    }

    fn prefix(&self) -> String {
        self.fleet.key("")
    }

    async fn run<T>(
        &self,
        what: &'static str,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        self.fleet.run(what, fut).await.map_err(|e| StoreError::Unavailable(e.0))
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn enroll_device(&self, device: Device) -> Result<Result<(), EnrollError>, StoreError> {
        let hex_key = hex::encode(device.public_key);
        let json = serde_json::to_string(&DeviceRec::of(&device)).map_err(|_| corrupt("device"))?;
        let mut inv = self.scripts.enroll.key(self.k(&format!("dev:{hex_key}")));
        inv.key(self.k(&format!("udev:{}", device.user_id))).arg(&device.device_id).arg(json).arg(&hex_key);
        let mut c = self.fleet.conn();
        let code: i64 = self.run("enroll", inv.invoke_async(&mut c)).await?;
        Ok(match code {
            0 => Ok(()),
            1 => Err(EnrollError::KeyTaken),
            _ => Err(EnrollError::DeviceExists),
        })
    }

    async fn device_by_key(&self, public_key: &[u8; 32]) -> Result<Option<Device>, StoreError> {
        let mut c = self.fleet.conn();
        let key = self.k(&format!("dev:{}", hex::encode(public_key)));
        let json: Option<String> = self.run("device", redis::cmd("GET").arg(key).query_async(&mut c)).await?;
        json.map(|j| DeviceRec::parse(&j)).transpose()
    }

    async fn list_devices(&self, user_id: &str) -> Result<Vec<Device>, StoreError> {
        let mut inv = self.scripts.list_devices.key(self.k(&format!("udev:{user_id}")));
        inv.arg(self.prefix());
        let mut c = self.fleet.conn();
        let jsons: Vec<String> = self.run("list_devices", inv.invoke_async(&mut c)).await?;
        let mut out = jsons.iter().map(|j| DeviceRec::parse(j)).collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        Ok(out)
    }

    async fn delete_device(&self, user_id: &str, device_id: &str) -> Result<Option<Device>, StoreError> {
        let mut inv = self.scripts.delete_device.key(self.k(&format!("udev:{user_id}")));
        inv.arg(device_id).arg(self.prefix());
        let mut c = self.fleet.conn();
        let json: Option<String> = self.run("delete_device", inv.invoke_async(&mut c)).await?;
        json.map(|j| DeviceRec::parse(&j)).transpose()
    }

    async fn advance_handshake_ts(&self, public_key: &[u8; 32], ts_ms: i64) -> Result<bool, StoreError> {
        let mut inv = self.scripts.advance_ts.key(self.k(&format!("hts:{}", hex::encode(public_key))));
        inv.arg(ts_ms);
        let mut c = self.fleet.conn();
        let moved: i64 = self.run("advance_handshake_ts", inv.invoke_async(&mut c)).await?;
        Ok(moved == 1)
    }

    async fn put_session(&self, session: Session) -> Result<(), StoreError> {
        let json = serde_json::to_string(&SessionRec::of(&session)).map_err(|_| corrupt("session"))?;
        let key = self.k(&format!("sess:{}", session.session_id));
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                &key,
                &[
                    ("d", json.as_str()),
                    ("u", session.user_id.as_str()),
                    ("v", session.device_id.as_str()),
                    ("l", session.last_used_ms.to_string().as_str()),
                ],
            )
            .ignore()
            .pexpire_at(&key, session.expires_at_ms)
            .ignore();
        // The user's index: this session, minus those past their end; it lives as long as the
        // longest of them (NX sets a first expiry, GT only ever extends it).
        let index = self.k(&format!("usess:{}", session.user_id));
        pipe.zadd(&index, &session.session_id, session.expires_at_ms)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(session.created_at_ms)
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&index)
            .arg(session.expires_at_ms)
            .arg("NX")
            .ignore()
            .cmd("PEXPIREAT")
            .arg(&index)
            .arg(session.expires_at_ms)
            .arg("GT")
            .ignore();
        let mut c = self.fleet.conn();
        self.run("put_session", pipe.query_async::<()>(&mut c)).await?;
        self.cache.put(&session);
        Ok(())
    }

    async fn live_session(&self, session_id: &str, now_ms: i64, idle_ms: i64) -> Result<Option<Session>, StoreError> {
        let key = self.k(&format!("sess:{session_id}"));
        let mut c = self.fleet.conn();
        let (d, l): (Option<String>, Option<i64>) =
            self.run("live_session", redis::cmd("HMGET").arg(&key).arg("d").arg("l").query_async(&mut c)).await?;
        let (Some(d), Some(l)) = (d, l) else {
            self.cache.forget(session_id);
            return Ok(None);
        };
        let s = SessionRec::parse(&d, l)?;
        if now_ms >= s.expires_at_ms || now_ms - s.last_used_ms >= idle_ms {
            self.cache.forget(session_id);
            let _: Result<i64, _> = self.run("end_session", redis::cmd("DEL").arg(&key).query_async(&mut c)).await;
            return Ok(None);
        }
        self.cache.put(&s);
        Ok(Some(s))
    }

    async fn session_to_verify(
        &self,
        session_id: &str,
        now_ms: i64,
        idle_ms: i64,
    ) -> Result<Option<Session>, StoreError> {
        match self.cache.get(session_id, now_ms) {
            // Idle and revocation are checked after the signature, by `accept_request`.
            Some(s) => Ok(Some(s)),
            None => self.live_session(session_id, now_ms, idle_ms).await,
        }
    }

    async fn accept_request(
        &self,
        session_id: &str,
        nonce: &str,
        nonce_ttl_ms: i64,
        now_ms: i64,
        idle_ms: i64,
    ) -> Result<Accepted, StoreError> {
        let mut inv = self.scripts.accept.key(self.k(&format!("sess:{session_id}")));
        inv.key(self.k(&format!("nonce:{session_id}:{nonce}"))).arg(now_ms).arg(idle_ms).arg(nonce_ttl_ms.max(1));
        let mut c = self.fleet.conn();
        let code: i64 = self.run("accept_request", inv.invoke_async(&mut c)).await?;
        Ok(match code {
            0 => Accepted::Yes,
            1 => Accepted::Replay,
            _ => {
                self.cache.forget(session_id);
                Accepted::NoSession
            }
        })
    }

    async fn accept_and_limit(
        &self,
        session_id: &str,
        nonce: &str,
        nonce_ttl_ms: i64,
        now_ms: i64,
        idle_ms: i64,
        limit: &crate::ratelimit::RateKey,
        quota: crate::ratelimit::Rate,
    ) -> Result<Option<(Accepted, Result<(), std::time::Duration>)>, StoreError> {
        let mut inv = self.scripts.accept_limit.key(self.k(&format!("sess:{session_id}")));
        inv.key(self.k(&format!("nonce:{session_id}:{nonce}")))
            .key(super::limiter::rate_key(&self.fleet, limit))
            .arg(now_ms)
            .arg(idle_ms)
            .arg(nonce_ttl_ms.max(1))
            .arg(super::limiter::interval_us(quota))
            .arg(quota.burst);
        let mut c = self.fleet.conn();
        let (code, wait_us): (i64, i64) = self.run("accept_and_limit", inv.invoke_async(&mut c)).await?;
        let accepted = match code {
            0 => Accepted::Yes,
            1 => Accepted::Replay,
            _ => {
                self.cache.forget(session_id);
                Accepted::NoSession
            }
        };
        let verdict = if wait_us > 0 { Err(std::time::Duration::from_micros(wait_us as u64)) } else { Ok(()) };
        Ok(Some((accepted, verdict)))
    }

    async fn touch_session(&self, session_id: &str, now_ms: i64) -> Result<(), StoreError> {
        let mut inv = self.scripts.touch.key(self.k(&format!("sess:{session_id}")));
        inv.arg(now_ms);
        let mut c = self.fleet.conn();
        self.run("touch_session", inv.invoke_async::<()>(&mut c)).await
    }

    async fn revoke_session(&self, session_id: &str) -> Result<bool, StoreError> {
        let mut inv = self.scripts.revoke.key(self.k(&format!("sess:{session_id}")));
        inv.arg(self.prefix()).arg(session_id);
        let mut c = self.fleet.conn();
        let found: i64 = self.run("revoke_session", inv.invoke_async(&mut c)).await?;
        self.cache.forget(session_id);
        Ok(found == 1)
    }

    async fn revoke_sessions_of(&self, user_id: &str, device_id: Option<&str>) -> Result<Vec<Session>, StoreError> {
        let mut inv = self.scripts.revoke_of.key(self.k(&format!("usess:{user_id}")));
        inv.arg(self.prefix()).arg(device_id.unwrap_or(""));
        let mut c = self.fleet.conn();
        let jsons: Vec<String> = self.run("revoke_sessions_of", inv.invoke_async(&mut c)).await?;
        let ended = jsons.iter().map(|j| SessionRec::parse(j, 0)).collect::<Result<Vec<_>, _>>()?;
        for s in &ended {
            self.cache.forget(&s.session_id);
        }
        Ok(ended)
    }

    async fn put_token(&self, token_hash: [u8; 32], session_id: &str, expires_at_ms: i64) -> Result<(), StoreError> {
        let key = self.k(&format!("tok:{}", hex::encode(token_hash)));
        let mut c = self.fleet.conn();
        let cmd = redis::cmd("SET").arg(key).arg(session_id).arg("PXAT").arg(expires_at_ms).to_owned();
        self.run("put_token", cmd.query_async::<()>(&mut c)).await
    }

    async fn token_session(&self, token_hash: &[u8; 32], _now_ms: i64) -> Result<Option<String>, StoreError> {
        let mut inv = self.scripts.token_session.key(self.k(&format!("tok:{}", hex::encode(token_hash))));
        inv.arg(self.prefix());
        let mut c = self.fleet.conn();
        self.run("token_session", inv.invoke_async(&mut c)).await
    }

    async fn put_ticket(
        &self,
        ticket_hash: [u8; 32],
        session_id: &str,
        expires_at_ms: i64,
        now_ms: i64,
        max_per_session: usize,
    ) -> Result<bool, StoreError> {
        let h = hex::encode(ticket_hash);
        let mut inv = self.scripts.put_ticket.key(self.k(&format!("stkt:{session_id}")));
        inv.key(self.k(&format!("tkt:{h}")))
            .arg(now_ms)
            .arg(expires_at_ms)
            .arg(max_per_session)
            .arg(&h)
            .arg(session_id);
        let mut c = self.fleet.conn();
        let stored: i64 = self.run("put_ticket", inv.invoke_async(&mut c)).await?;
        Ok(stored == 1)
    }

    async fn take_ticket(&self, ticket_hash: &[u8; 32], _now_ms: i64) -> Result<Option<String>, StoreError> {
        let h = hex::encode(ticket_hash);
        let mut inv = self.scripts.take_ticket.key(self.k(&format!("tkt:{h}")));
        inv.arg(self.prefix()).arg(&h);
        let mut c = self.fleet.conn();
        self.run("take_ticket", inv.invoke_async(&mut c)).await
    }
}
