//! A short-lived cache of group roles, for the membership checks imgate makes where OpenIM skips them.
//!
//! Correctness rule: every group change that goes through imgate (any successful write to a
//! `/group/...` route) drops that group's entries at once, so a user kicked through imgate is
//! refused on the very next request. Changes made to OpenIM directly (its admin console, another
//! client with an admin token) are seen after at most `openim.membership_cache_ms`; 0 disables
//! the cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// (group, user) → (role level or `None` = not a member, when it was read).
type Entries = HashMap<(String, String), (Option<i64>, Instant)>;

/// Role levels by (group, user).
pub(crate) struct RoleCache {
    ttl: Duration,
    entries: Mutex<Entries>,
}

/// Entries kept at most; beyond it the cache is cleared (it refills from OpenIM).
const MAX_ENTRIES: usize = 100_000;

impl RoleCache {
    pub(super) fn new(ttl: Duration) -> RoleCache {
        RoleCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, group_id: &str, user_id: &str) -> Option<Option<i64>> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.lock();
        let (role, at) = map.get(&(group_id.to_owned(), user_id.to_owned()))?;
        (at.elapsed() < self.ttl).then_some(*role)
    }

    pub(super) fn put(&self, group_id: &str, user_id: &str, role: Option<i64>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert((group_id.to_owned(), user_id.to_owned()), (role, Instant::now()));
    }

    pub(super) fn forget_group(&self, group_id: &str) {
        self.lock().retain(|(g, _), _| g != group_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_group_writes_forget_them() {
        let c = RoleCache::new(Duration::from_secs(60));
        c.put("g", "u", Some(20));
        c.put("h", "u", None);
        assert_eq!(c.get("g", "u"), Some(Some(20)));
        assert_eq!(c.get("h", "u"), Some(None));
        c.forget_group("g");
        assert_eq!(c.get("g", "u"), None);
        assert_eq!(c.get("h", "u"), Some(None));
        let off = RoleCache::new(Duration::ZERO);
        off.put("g", "u", Some(100));
        assert_eq!(off.get("g", "u"), None);
    }
}
