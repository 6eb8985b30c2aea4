//! OpenIM tokens minted once for the whole fleet.
//!
//! OpenIM demotes every older admin token when a new one is issued (contract §4.1), and minting a
//! user token for (user, platform) kicks the previous one at once (§4.2, multi-login policy 1): if
//! every instance minted its own, they would take turns invalidating each other. So a token lives
//! in Redis (`oim:<slot>`: `{token, exp, life}`; the slot is `admin` or `user:<id>:<platform>`) and
//! only the instance holding the slot's lease (`oim:<slot>:lease`, `SET NX PX`) asks OpenIM for a
//! new one; the others wait for it and read it. Tokens are secrets: Redis must be as protected as
//! imgate's own files (docs/deploy.md), nothing here logs one, and [`SharedToken`] has no `Debug`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::Script;
use serde::{Deserialize, Serialize};

use super::{Fleet, Unavailable};

/// A token as the fleet stores it.
#[derive(Clone, Serialize, Deserialize)]
pub struct SharedToken {
    pub token: String,
    /// Unix ms after which it must not be used.
    pub exp: i64,
    /// Its lifetime in seconds, as OpenIM reported it.
    pub life: i64,
}

impl SharedToken {
    fn is_fresh(&self, refresh_before: Duration, now_ms: i64) -> bool {
        let half = Duration::from_secs(u64::try_from(self.life).unwrap_or(0)) / 2;
        let margin = i64::try_from(refresh_before.min(half).as_millis()).unwrap_or(i64::MAX);
        now_ms.saturating_add(margin) < self.exp
    }
}

/// Deletes the slot only if it still holds the given token (another instance may have replaced it).
const DROP_IF: &str = r"
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v).token == ARGV[1] then redis.call('DEL', KEYS[1]) return 1 end
return 0";

/// Releases a lease only if this process still holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

pub struct SharedTokens {
    fleet: Arc<Fleet>,
    drop_if: Script,
    release: Script,
    /// Who holds a lease (this process), unique even if two instances share an instance id.
    holder: String,
}

/// What a mint produced, or why it could not.
pub enum Minted<E> {
    Token(SharedToken),
    Failed(E),
}

impl SharedTokens {
    pub fn new(fleet: Arc<Fleet>) -> SharedTokens {
        SharedTokens {
            fleet,
            drop_if: Script::new(DROP_IF),
            release: Script::new(RELEASE),
            holder: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    fn key(&self, slot: &str) -> String {
        self.fleet.key(&format!("oim:{slot}"))
    }

    async fn read(&self, slot: &str) -> Result<Option<SharedToken>, Unavailable> {
        let mut c = self.fleet.conn();
        let v: Option<String> =
            self.fleet.run("token_read", redis::cmd("GET").arg(self.key(slot)).query_async(&mut c)).await?;
        Ok(v.and_then(|v| serde_json::from_str(&v).ok()))
    }

    /// The fleet's token of `slot`: the stored one if fresh (and not `avoid`, a value OpenIM just
    /// refused), else one minted by whichever instance takes the lease first, this one calling
    /// `mint`. With `force`, this instance mints a new one whatever is stored. Gives up after
    /// `wait` (the instance minting may be stuck on OpenIM); `Err` only when Redis cannot answer.
    pub async fn get_or_mint<E, F, Fut>(
        &self,
        slot: &str,
        refresh_before: Duration,
        avoid: Option<&str>,
        force: bool,
        wait: Duration,
        mint: F,
    ) -> Result<Minted<E>, Unavailable>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SharedToken, E>>,
        E: From<Unavailable>,
    {
        let started = Instant::now();
        let lease = self.key(&format!("{slot}:lease"));
        let lease_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).saturating_add(1_000);
        let mut mint = Some(mint);
        loop {
            if !force {
                if let Some(t) = self.read(slot).await? {
                    if t.is_fresh(refresh_before, crate::auth::now_ms()) && avoid != Some(t.token.as_str()) {
                        return Ok(Minted::Token(t));
                    }
                }
            }
            let mut c = self.fleet.conn();
            let take = redis::cmd("SET").arg(&lease).arg(&self.holder).arg("NX").arg("PX").arg(lease_ms).to_owned();
            let taken: Option<String> = self.fleet.run("token_lease", take.query_async(&mut c)).await?;
            if taken.is_some() {
                let Some(mint) = mint.take() else { return Err(Unavailable("token lease taken twice".into())) };
                let out = mint().await;
                if let Ok(t) = &out {
                    let json = serde_json::to_string(t).map_err(|e| Unavailable(e.to_string()))?;
                    let set = redis::cmd("SET").arg(self.key(slot)).arg(json).arg("PXAT").arg(t.exp.max(1)).to_owned();
                    self.fleet.run("token_write", set.query_async::<()>(&mut c)).await?;
                }
                let mut inv = self.release.key(&lease);
                inv.arg(&self.holder);
                let _: Result<i64, _> = self.fleet.run("token_release", inv.invoke_async(&mut c)).await;
                return Ok(match out {
                    Ok(t) => Minted::Token(t),
                    Err(e) => Minted::Failed(e),
                });
            }
            // Another instance is minting: its token appears shortly.
            if started.elapsed() >= wait {
                return Ok(Minted::Failed(E::from(Unavailable(format!(
                    "another imgate instance is fetching this OpenIM token (waited {} ms)",
                    wait.as_millis()
                )))));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if force {
                // Forced: wait for the other mint to finish, then mint our own.
                continue;
            }
        }
    }

    /// Forgets the slot's token if it is still `rejected` (OpenIM refused it).
    pub async fn drop_if(&self, slot: &str, rejected: &str) -> Result<(), Unavailable> {
        let mut inv = self.drop_if.key(self.key(slot));
        inv.arg(rejected);
        let mut c = self.fleet.conn();
        self.fleet.run("token_drop", inv.invoke_async::<i64>(&mut c)).await.map(|_| ())
    }

    /// Forgets the slot's token whatever it is (after a `force_logout`).
    pub async fn forget(&self, slot: &str) -> Result<(), Unavailable> {
        let mut c = self.fleet.conn();
        self.fleet
            .run("token_forget", redis::cmd("DEL").arg(self.key(slot)).query_async::<i64>(&mut c))
            .await
            .map(|_| ())
    }
}
