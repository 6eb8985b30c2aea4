//! OpenIM's privileged accounts, which imgate keeps off devices, sessions and bearer tokens.
//!
//! OpenIM treats two kinds of user as more than a user (contract §1.2, §5.7, §8.3): the ids of
//! `share.yml imAdminUser.userIDs` (`send_msg` with their `sendID` skips every friend, blacklist
//! and membership check), and users whose `appMangerLevel` is 2 or more (2 AppAdmin, 3
//! notification account, 4 robot: single-chat sends skip the blacklist and friend checks, and
//! only they may send OA notifications, contentType 1400). imgate sends user messages with the
//! admin token and `sendID` = the session's user, so a session for such an account would act
//! with those privileges. Devices, sessions and tokens are therefore refused for them unless the
//! operator names the account in `[openim.privileged] allow_user_ids`.
//!
//! The admin ids come from the config (OpenIM has no API that lists them). The level is read from
//! `get_users_info`; handshakes reuse a read for `level_cache` so that one device cannot make
//! OpenIM answer once per handshake, and enrollment always reads it fresh (refreshing the cache).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `appMangerLevel` from which OpenIM privileges a user (contract §8.3: 2 AppAdmin, 3
/// notification, 4 robot; 0 and 1 are ordinary users).
pub const PRIVILEGED_LEVEL: i32 = 2;

/// What the client needs to know about OpenIM's privileged accounts (from `[openim]`).
#[derive(Debug, Clone, Default)]
pub struct PrivilegedSettings {
    /// Every id OpenIM treats as an admin: `openim.admin_user_id` and `other_admin_user_ids`.
    pub admin_user_ids: Vec<String>,
    /// Privileged accounts the operator allows devices, sessions and tokens for.
    pub allow_user_ids: Vec<String>,
    /// How long a level read is reused by [`crate::openim::OpenIm::privilege`] (0 = never).
    pub level_cache: Duration,
}

/// Why OpenIM treats a user as more than a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Listed in OpenIM's `imAdminUser.userIDs` (as configured in imgate).
    Admin,
    /// `appMangerLevel` ≥ 2, with that level.
    AppManager(i32),
}

impl Privilege {
    /// A short description for operators (admin answers, the audit trail); names no secret.
    pub fn describe(self) -> &'static str {
        match self {
            Privilege::Admin => "an OpenIM admin account (imAdminUser.userIDs)",
            Privilege::AppManager(2) => "an OpenIM app manager (appMangerLevel 2, system account)",
            Privilege::AppManager(3) => "an OpenIM notification account (appMangerLevel 3)",
            Privilege::AppManager(4) => "an OpenIM robot account (appMangerLevel 4)",
            Privilege::AppManager(_) => "an OpenIM account with appMangerLevel of 2 or more",
        }
    }
}

/// user → (`appMangerLevel`, or `None` if OpenIM does not know the user; when it was read).
type Levels = HashMap<String, (Option<i32>, Instant)>;

/// Entries kept at most; beyond it the cache is cleared (it refills from OpenIM).
const MAX_ENTRIES: usize = 100_000;

/// The configured lists and the level cache, held by the OpenIM client.
pub(crate) struct Privileged {
    admins: HashSet<String>,
    allowed: HashSet<String>,
    ttl: Duration,
    levels: Mutex<Levels>,
}

impl Privileged {
    pub(super) fn new(settings: &PrivilegedSettings) -> Privileged {
        Privileged {
            admins: settings.admin_user_ids.iter().cloned().collect(),
            allowed: settings.allow_user_ids.iter().cloned().collect(),
            ttl: settings.level_cache,
            levels: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Levels> {
        self.levels.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn is_admin_id(&self, user_id: &str) -> bool {
        self.admins.contains(user_id)
    }

    pub(super) fn is_allowed(&self, user_id: &str) -> bool {
        self.allowed.contains(user_id)
    }

    /// What the config alone says: `Admin` for an admin id the operator did not allow.
    pub(super) fn configured(&self, user_id: &str) -> Option<Privilege> {
        (self.is_admin_id(user_id) && !self.is_allowed(user_id)).then_some(Privilege::Admin)
    }

    /// The verdict for a user whose level is known (`None` = unknown to OpenIM: not privileged there).
    pub(super) fn judge(&self, user_id: &str, level: Option<i32>) -> Option<Privilege> {
        if self.is_allowed(user_id) {
            return None;
        }
        if self.is_admin_id(user_id) {
            return Some(Privilege::Admin);
        }
        level.filter(|l| *l >= PRIVILEGED_LEVEL).map(Privilege::AppManager)
    }

    /// A cached level still young enough: `Some(level read)`, or `None` to ask OpenIM.
    pub(super) fn cached_level(&self, user_id: &str) -> Option<Option<i32>> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.lock();
        let (level, at) = map.get(user_id)?;
        (at.elapsed() < self.ttl).then_some(*level)
    }

    pub(super) fn remember_level(&self, user_id: &str, level: Option<i32>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(user_id.to_owned(), (level, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn privileged(ttl: Duration) -> Privileged {
        Privileged::new(&PrivilegedSettings {
            admin_user_ids: vec!["imAdmin".into(), "imAdmin2".into()],
            allow_user_ids: vec!["imAdmin2".into(), "ops_bot".into()],
            level_cache: ttl,
        })
    }

    #[test]
    fn admins_and_app_managers_are_privileged_unless_allowed() {
        let p = privileged(Duration::ZERO);
        assert_eq!(p.configured("imAdmin"), Some(Privilege::Admin));
        assert_eq!(p.configured("imAdmin2"), None, "allowed explicitly");
        assert_eq!(p.configured("alice"), None);
        assert_eq!(p.judge("imAdmin", Some(0)), Some(Privilege::Admin), "the config wins over the level");
        assert_eq!(p.judge("bot", Some(4)), Some(Privilege::AppManager(4)));
        assert_eq!(p.judge("sys", Some(2)), Some(Privilege::AppManager(2)));
        assert_eq!(p.judge("ops_bot", Some(3)), None, "allowed explicitly");
        assert_eq!(p.judge("alice", Some(1)), None);
        assert_eq!(p.judge("ghost", None), None);
    }

    #[test]
    fn levels_are_cached_only_with_a_ttl() {
        let off = privileged(Duration::ZERO);
        off.remember_level("bot", Some(4));
        assert_eq!(off.cached_level("bot"), None);
        let on = privileged(Duration::from_secs(60));
        on.remember_level("bot", Some(4));
        on.remember_level("ghost", None);
        assert_eq!(on.cached_level("bot"), Some(Some(4)));
        assert_eq!(on.cached_level("ghost"), Some(None));
        assert_eq!(on.cached_level("alice"), None);
    }
}
