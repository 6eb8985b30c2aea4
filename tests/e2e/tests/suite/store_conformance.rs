//! The shared backends behave as the in-memory ones do: the same assertions run against
//! `MemoryStore` / `MemoryKv` / `MemoryLimiter` and against their Redis twins on a real
//! `redis-server` (issue 14), plus what only a shared backend can get wrong: two instances
//! (two connections) racing for the same nonce, ticket, handshake `ts` or quota.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use e2e::redis_server::RedisServer;
use host::config::StoreConfig;
use host::fleet::kv::RedisKv;
use host::fleet::limiter::RedisLimiter;
use host::fleet::store::RedisStore;
use host::fleet::Fleet;
use host::plugins::kv::{KvError, MemoryKv, PluginKv, Quota};
use host::ratelimit::{ClassConfig, Limiter, MemoryLimiter, RateKey};
use host::store::{Accepted, Device, EnrollError, MemoryStore, Session, Store};

/// A connection to `redis` as one imgate instance would hold it (each call: a new instance).
fn fleet(redis: &RedisServer) -> Arc<Fleet> {
    let cfg = StoreConfig { backend: "redis".into(), url: Some(redis.url()), ..StoreConfig::default() };
    Fleet::connect(&cfg, &redis.url(), &host::telemetry::Metrics::new()).expect("fleet")
}

fn session(id: &str, user: &str, device: &str, now: i64) -> Session {
    Session {
        session_id: id.into(),
        session_key: [7; 32],
        user_id: user.into(),
        device_id: device.into(),
        platform_id: 1,
        tier: "gold".into(),
        created_at_ms: now,
        expires_at_ms: now + 100_000,
        last_used_ms: now,
    }
}

fn device(user: &str, id: &str, key: u8) -> Device {
    Device {
        user_id: user.into(),
        device_id: id.into(),
        platform_id: 2,
        public_key: [key; 32],
        tier: String::new(),
        created_at_ms: 5,
    }
}

/// Everything the Store trait promises, on one backend. Times are real (Redis expires keys on its
/// own clock), so sessions end relative to now.
async fn store_conformance(s: &dyn Store) {
    let now = host::auth::now_ms();
    // Devices: one key one device, listed in order, deleted with their handshake ts.
    assert_eq!(s.enroll_device(device("u", "b", 3)).await.unwrap(), Ok(()));
    assert_eq!(s.enroll_device(device("u", "a", 4)).await.unwrap(), Ok(()));
    assert_eq!(s.enroll_device(device("v", "a", 3)).await.unwrap(), Err(EnrollError::KeyTaken));
    assert_eq!(s.enroll_device(device("u", "a", 9)).await.unwrap(), Err(EnrollError::DeviceExists));
    assert_eq!(s.device_by_key(&[3; 32]).await.unwrap(), Some(device("u", "b", 3)));
    let listed: Vec<String> = s.list_devices("u").await.unwrap().into_iter().map(|d| d.device_id).collect();
    assert_eq!(listed, ["a", "b"]);
    assert!(s.advance_handshake_ts(&[3; 32], 10).await.unwrap());
    assert!(!s.advance_handshake_ts(&[3; 32], 10).await.unwrap(), "the same ts again");
    assert!(!s.advance_handshake_ts(&[3; 32], 9).await.unwrap());
    assert!(s.advance_handshake_ts(&[3; 32], 11).await.unwrap());
    assert_eq!(s.delete_device("u", "b").await.unwrap(), Some(device("u", "b", 3)));
    assert_eq!(s.delete_device("u", "b").await.unwrap(), None);
    assert_eq!(s.device_by_key(&[3; 32]).await.unwrap(), None);
    assert!(s.advance_handshake_ts(&[3; 32], 1).await.unwrap(), "a deleted device's ts is forgotten");

    // Sessions: live, idle, revoked; nonces once per session.
    s.put_session(session("s1", "u", "a", now)).await.unwrap();
    let live = s.live_session("s1", now + 1, 60_000).await.unwrap().expect("live");
    assert_eq!((live.session_key, live.tier.as_str(), live.expires_at_ms), ([7; 32], "gold", now + 100_000));
    assert_eq!(s.accept_request("s1", "n1", 4_000, now + 2, 60_000).await.unwrap(), Accepted::Yes);
    assert_eq!(s.accept_request("s1", "n1", 4_000, now + 3, 60_000).await.unwrap(), Accepted::Replay);
    assert_eq!(s.accept_request("s9", "n1", 4_000, now + 3, 60_000).await.unwrap(), Accepted::NoSession);
    assert_eq!(s.live_session("s1", now + 4, 60_000).await.unwrap().expect("live").last_used_ms, now + 2);
    s.touch_session("s1", now + 50).await.unwrap();
    assert!(s.live_session("s1", now + 100, 60).await.unwrap().is_some(), "touched at +50, idle 60 ms");
    assert!(s.live_session("s1", now + 200, 60).await.unwrap().is_none(), "idle since +50");
    assert!(s.live_session("s1", now + 201, 60_000).await.unwrap().is_none(), "an idle session is gone");

    // Revocation: by id, by user, by device; tokens and tickets die with their session.
    s.put_session(session("s2", "u", "a", now)).await.unwrap();
    s.put_session(session("s3", "u", "b", now)).await.unwrap();
    s.put_session(session("s4", "w", "a", now)).await.unwrap();
    s.put_token([1; 32], "s2", now + 50_000).await.unwrap();
    assert_eq!(s.token_session(&[1; 32], now).await.unwrap().as_deref(), Some("s2"));
    assert!(s.put_ticket([2; 32], "s2", now + 30_000, now, 2).await.unwrap());
    assert!(s.put_ticket([3; 32], "s2", now + 30_000, now, 2).await.unwrap());
    assert!(!s.put_ticket([4; 32], "s2", now + 30_000, now, 2).await.unwrap(), "a third live ticket");
    assert_eq!(s.take_ticket(&[2; 32], now).await.unwrap().as_deref(), Some("s2"));
    assert_eq!(s.take_ticket(&[2; 32], now).await.unwrap(), None, "single use");
    assert!(s.put_ticket([4; 32], "s2", now + 30_000, now, 2).await.unwrap(), "a redeemed ticket no longer counts");
    let ended: Vec<String> =
        s.revoke_sessions_of("u", Some("a")).await.unwrap().into_iter().map(|x| x.session_id).collect();
    assert_eq!(ended, ["s2"]);
    assert_eq!(s.token_session(&[1; 32], now).await.unwrap(), None, "the token died with its session");
    assert_eq!(s.take_ticket(&[3; 32], now).await.unwrap(), None, "so did the ticket");
    assert!(s.live_session("s3", now, 60_000).await.unwrap().is_some(), "another device's session stays");
    assert!(s.revoke_session("s3").await.unwrap());
    assert!(!s.revoke_session("s3").await.unwrap());
    assert!(s.live_session("s4", now, 60_000).await.unwrap().is_some(), "another user's session stays");
    assert_eq!(s.revoke_sessions_of("w", None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_redis_store_keeps_every_promise_the_memory_store_does() {
    store_conformance(&MemoryStore::new()).await;
    let redis = RedisServer::start();
    store_conformance(&RedisStore::new(fleet(&redis))).await;
}

#[tokio::test]
async fn instances_racing_for_one_nonce_ticket_or_handshake_ts_let_exactly_one_win() {
    let redis = RedisServer::start();
    let stores: Vec<RedisStore> = (0..4).map(|_| RedisStore::new(fleet(&redis))).collect();
    let now = host::auth::now_ms();
    stores[0].put_session(session("s", "u", "d", now)).await.unwrap();
    for round in 0..20 {
        let nonce = format!("nonce-{round}");
        let accepts = stores.iter().map(|s| s.accept_request("s", &nonce, 4_000, now + round, 60_000));
        let wins =
            futures_util::future::join_all(accepts).await.into_iter().filter(|a| *a == Ok(Accepted::Yes)).count();
        assert_eq!(wins, 1, "nonce {nonce}");
        let ticket = [round as u8; 32];
        assert!(stores[1].put_ticket(ticket, "s", now + 30_000, now, 100).await.unwrap());
        let takes = stores.iter().map(|s| s.take_ticket(&ticket, now));
        let wins = futures_util::future::join_all(takes).await.into_iter().filter(|t| matches!(t, Ok(Some(_)))).count();
        assert_eq!(wins, 1, "ticket of round {round}");
        let ts = stores.iter().map(|s| s.advance_handshake_ts(&[9; 32], 1_000 + round));
        let wins = futures_util::future::join_all(ts).await.into_iter().filter(|t| *t == Ok(true)).count();
        assert_eq!(wins, 1, "handshake ts of round {round}");
    }
}

const Q: Quota = Quota { max_keys: 2, max_bytes: 20 };

async fn kv_conformance(kv: &dyn PluginKv) {
    kv.set("a", "k", b"1234".to_vec(), None, Q).await.unwrap();
    assert_eq!(kv.get("b", "k").await.unwrap(), None, "another plugin's namespace");
    assert_eq!(kv.get("a", "k").await.unwrap(), Some(b"1234".to_vec()));
    kv.set("a", "k2", b"x".to_vec(), None, Q).await.unwrap();
    assert_eq!(kv.set("a", "k3", b"x".to_vec(), None, Q).await, Err(KvError::Quota), "third key");
    assert_eq!(kv.set("a", "k", vec![0; 30], None, Q).await, Err(KvError::Quota), "too many bytes");
    assert_eq!(kv.get("a", "k").await.unwrap(), Some(b"1234".to_vec()), "a refused write changes nothing");
    kv.delete("a", "k2").await.unwrap();
    kv.set("a", "k3", b"x".to_vec(), None, Q).await.unwrap();
    // Counters.
    assert_eq!(kv.increment("c", "n", 2, None, Q).await, Ok(2));
    assert_eq!(kv.increment("c", "n", -5, None, Q).await, Ok(-3));
    assert_eq!(kv.increment("c", "n", i64::MAX, None, Q).await, Ok(i64::MAX - 3));
    assert_eq!(kv.increment("c", "n", i64::MAX, None, Q).await, Ok(i64::MAX), "saturates");
    kv.set("c2", "s", b"text".to_vec(), None, Q).await.unwrap();
    assert_eq!(kv.increment("c2", "s", 1, None, Q).await, Err(KvError::NotACounter));
    // Expiry: gone at once with a zero TTL; an expired key frees its quota.
    kv.set("e", "gone", b"v".to_vec(), Some(Duration::ZERO), Q).await.unwrap();
    assert_eq!(kv.get("e", "gone").await.unwrap(), None, "an expired value is gone");
    kv.set("e", "k1", b"v".to_vec(), None, Q).await.unwrap();
    kv.set("e", "k2", b"v".to_vec(), None, Q).await.unwrap();
    assert_eq!(kv.get("e", "k2").await.unwrap(), Some(b"v".to_vec()));
}

#[tokio::test]
async fn the_redis_kv_keeps_the_memory_kvs_quotas_counters_and_expiry_and_instances_cannot_overshoot() {
    kv_conformance(&MemoryKv::new()).await;
    let redis = RedisServer::start();
    kv_conformance(&RedisKv::new(fleet(&redis))).await;
    // Four instances writing 50 distinct keys at once into a namespace of at most 10.
    let kvs: Vec<RedisKv> = (0..4).map(|_| RedisKv::new(fleet(&redis))).collect();
    let q = Quota { max_keys: 10, max_bytes: 1_000 };
    let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
    let writes = keys.iter().enumerate().map(|(i, k)| kvs[i % 4].set("race", k, b"v".to_vec(), None, q));
    let stored = futures_util::future::join_all(writes).await.into_iter().filter(|r| r.is_ok()).count();
    assert_eq!(stored, 10, "exactly the quota was stored");
}

#[tokio::test]
async fn the_redis_limiter_has_the_memory_limiters_burst_wait_and_tiers_across_instances() {
    let mut classes = BTreeMap::new();
    classes.insert("default".to_owned(), ClassConfig { per_second: 1, burst: 3, tiers: BTreeMap::new() });
    let redis = RedisServer::start();
    let shared: Vec<Box<dyn Limiter>> =
        (0..3).map(|_| Box::new(RedisLimiter::new(fleet(&redis), &classes)) as Box<dyn Limiter>).collect();
    let memory = MemoryLimiter::new(&classes);
    let key = |u: &str| RateKey { user_id: u.into(), class: "default".into(), tier: String::new() };
    for _ in 0..3 {
        assert_eq!(memory.check(&key("a")).await, Ok(()));
    }
    assert!(memory.check(&key("a")).await.is_err());
    // The same quota held by three instances together.
    for (i, l) in shared.iter().enumerate() {
        assert_eq!(l.check(&key("a")).await, Ok(()), "burst request {i}");
    }
    for l in &shared {
        let wait = l.check(&key("a")).await.expect_err("over the burst on every instance");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
    }
    assert_eq!(shared[0].check(&key("b")).await, Ok(()), "another user has their own budget");
}
