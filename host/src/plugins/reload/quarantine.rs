//! Quarantine: the serving version's own failures counted in a sliding window; past the
//! threshold the version is quarantined with a doubling backoff and the plugin rolled back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{lock, Manager, Source, MAX_BACKOFF};
use crate::auth::now_ms;
use crate::plugins::api::Quarantined;
use crate::plugins::runtime::Failure;

impl Manager {
    /// Counts a failure of the plugin's own making ([`Failure::is_the_plugins`]: traps,
    /// deadlines, memory, invalid output, exits, ...) of the serving version; past the threshold
    /// the version is quarantined and the plugin rolled back (on another thread).
    pub fn report_failure(self: &Arc<Self>, name: &str, hash: &str, failure: &Failure) {
        let kind = failure.kind();
        // Not counted toward quarantine: failures that are not the plugin's doing, and those of
        // an old version finishing its last requests.
        let counts = failure.is_the_plugins() && self.current.load().plugins.get(name).is_some_and(|p| p.hash == hash);
        let window = Duration::from_millis(self.runtime_config.quarantine_window_ms);
        let now = Instant::now();
        let quarantine = {
            let mut st = lock(&self.state);
            let ps = st.entry(name.to_owned()).or_default();
            *ps.failure_counts.entry(kind).or_default() += 1;
            if !counts {
                return;
            }
            ps.failures.push_back((now, kind));
            while ps.failures.front().is_some_and(|(t, _)| now.duration_since(*t) > window) {
                ps.failures.pop_front();
            }
            if ps.failures.len() as u32 > self.runtime_config.quarantine_failures && !ps.rollback_pending {
                ps.rollback_pending = true;
                let mut kinds = BTreeMap::new();
                for (_, k) in ps.failures.drain(..) {
                    *kinds.entry(k.to_owned()).or_default() += 1;
                }
                let q = ps.quarantine.entry(hash.to_owned()).or_insert(Quarantined {
                    hash: hash.to_owned(),
                    until_ms: 0,
                    times: 0,
                    kinds: BTreeMap::new(),
                });
                q.kinds = kinds;
                q.times += 1;
                let base = Duration::from_millis(self.runtime_config.quarantine_backoff_ms);
                let backoff = base.saturating_mul(1 << (q.times - 1).min(16)).min(MAX_BACKOFF);
                q.until_ms = now_ms() + backoff.as_millis() as i64;
                Some(q.clone())
            } else {
                None
            }
        };
        let Some(q) = quarantine else { return };
        self.metrics.plugins.reload(name, "quarantined");
        tracing::warn!(
            plugin = name,
            hash,
            until_ms = q.until_ms,
            "plugin version quarantined after repeated failures; rolling back"
        );
        self.audit(
            "quarantined",
            serde_json::json!({ "plugin": name, "hash": hash, "until_ms": q.until_ms, "times": q.times, "kinds": q.kinds }),
        );
        let (me, name, hash) = (self.clone(), name.to_owned(), hash.to_owned());
        std::thread::spawn(move || {
            // Only from the quarantined version: an operator may have activated another meanwhile.
            match me.rollback_from(&name, Some(&hash), Source::Quarantine) {
                Ok(Some(_)) => {}
                Ok(None) => tracing::info!(plugin = %name, "another version serves already; no rollback needed"),
                Err(e) => {
                    tracing::error!(plugin = %name, error = %e, "no version to roll back to; the failure policy applies")
                }
            }
            if let Some(ps) = lock(&me.state).get_mut(&name) {
                ps.rollback_pending = false;
            }
        });
    }
}
