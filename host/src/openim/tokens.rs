//! OpenIM tokens held by imgate: the admin token and one token per (user, platform).
//!
//! Tokens are secrets: [`Token`] has no `Debug` output of its value, and nothing here logs one.
//! Each slot sits behind its own async mutex, so one fetch serves every concurrent caller (a
//! second fetch would supersede the first in OpenIM). A token is "fresh" until `refresh_before`
//! (at most half its lifetime) before it expires; a token errCode from OpenIM drops it at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An OpenIM token and when imgate must stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: Arc<str>,
    lifetime: Duration,
    expires_at: Instant,
}

impl Token {
    /// A token whose end is a Unix time in ms (as the fleet stores it).
    pub(super) fn from_shared(t: &crate::fleet::tokens::SharedToken) -> Token {
        let lifetime = Duration::from_secs(u64::try_from(t.life).unwrap_or(0));
        let left = Duration::from_millis(u64::try_from(t.exp - crate::auth::now_ms()).unwrap_or(0));
        Token { value: Arc::from(t.token.as_str()), lifetime, expires_at: Instant::now() + left }
    }

    pub(super) fn lifetime_secs(&self) -> i64 {
        i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX)
    }

    /// Still accepted by OpenIM (before its end), fresh or not.
    pub(super) fn is_valid(&self) -> bool {
        Instant::now() < self.expires_at
    }

    pub(super) fn is_fresh(&self, refresh_before: Duration) -> bool {
        let margin = refresh_before.min(self.lifetime / 2);
        Instant::now() + margin < self.expires_at
    }
}

/// A user's token slot: the same shared-failure rules as the admin token's.
type Slot = Arc<tokio::sync::Mutex<TokenSlot>>;

/// A token's slot (the admin token's, and each user's): the token, the last failed fetch (shared
/// by every caller until the backoff passes), and whether a refresh ahead of expiry is under way
/// (admin token only: a user token minted early would kick the one a relayed socket uses).
#[derive(Default)]
pub(crate) struct TokenSlot {
    pub token: Option<Token>,
    pub failure: Option<(Instant, super::OpenImError)>,
    pub backoff: Duration,
    pub refreshing: bool,
}

/// First wait after a failed fetch before the next one; doubles up to [`MAX_BACKOFF`], so an
/// OpenIM that stays down sees one fetch every 5 s, and one that comes back is used again within
/// that.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(200);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl TokenSlot {
    /// The failure every caller gets while the backoff after it runs.
    pub(crate) fn recent_failure(&self) -> Option<super::OpenImError> {
        self.failure.as_ref().filter(|(at, _)| at.elapsed() < self.backoff).map(|(_, e)| e.clone())
    }

    pub(crate) fn succeeded(&mut self, token: Token) {
        self.token = Some(token);
        self.failure = None;
        self.backoff = Duration::ZERO;
    }

    pub(crate) fn failed(&mut self, e: &super::OpenImError) {
        self.backoff = (self.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
        self.failure = Some((Instant::now(), e.clone()));
    }
}

#[derive(Default)]
pub(crate) struct TokenCache {
    pub admin: tokio::sync::Mutex<TokenSlot>,
    users: Mutex<HashMap<(String, i32), Slot>>,
}

impl TokenCache {
    pub(super) fn user_slot(&self, user_id: &str, platform_id: i32) -> Slot {
        // A poisoned map only means another thread panicked mid-insert; the map itself is intact.
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.entry((user_id.to_owned(), platform_id)).or_default().clone()
    }

    /// Drops the admin token if it is still the one that was rejected (another caller may
    /// already have replaced it).
    pub(super) async fn drop_admin(&self, rejected: &Token) {
        let mut slot = self.admin.lock().await;
        if slot.token.as_ref().is_some_and(|t| t.value == rejected.value) {
            slot.token = None;
        }
    }

    pub(super) async fn drop_user(&self, user_id: &str, platform_id: i32, rejected: &Token) {
        self.drop_user_value(user_id, platform_id, &rejected.value).await;
    }

    pub(super) async fn drop_user_value(&self, user_id: &str, platform_id: i32, rejected: &str) {
        let slot = self.user_slot(user_id, platform_id);
        let mut slot = slot.lock().await;
        if slot.token.as_ref().is_some_and(|t| &*t.value == rejected) {
            slot.token = None;
        }
    }

    pub(super) async fn forget_user(&self, user_id: &str, platform_id: i32) {
        let slot = self.user_slot(user_id, platform_id);
        slot.lock().await.token = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_shared_during_its_backoff_which_doubles_up_to_its_cap_and_success_clears_it() {
        let mut slot = TokenSlot::default();
        assert!(slot.recent_failure().is_none());
        let e = crate::openim::OpenImError::Timeout(Duration::from_millis(1500));
        slot.failed(&e);
        assert_eq!(slot.backoff, MIN_BACKOFF);
        assert!(matches!(slot.recent_failure(), Some(crate::openim::OpenImError::Timeout(_))));
        for _ in 0..10 {
            slot.failed(&e);
        }
        assert_eq!(slot.backoff, MAX_BACKOFF);
        slot.failure = Some((Instant::now() - MAX_BACKOFF, e.clone()));
        assert!(slot.recent_failure().is_none(), "past its backoff the next caller fetches");
        slot.succeeded(Token {
            value: Arc::from("t"),
            lifetime: Duration::from_secs(60),
            expires_at: Instant::now() + Duration::from_secs(60),
        });
        assert!(slot.failure.is_none() && slot.backoff == Duration::ZERO && slot.token.is_some());
    }
}
