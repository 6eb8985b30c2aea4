//! Watching: the folders of the plugin files and of the config file, events debounced, and
//! what changed activated (a plugin file) or reloaded (the config file).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{lock, Manager, Source};
use crate::plugins::read_capped;

impl Manager {
    /// Watches the folders of the plugin files and of the config file; a thread debounces the
    /// events and activates what changed.
    pub(super) fn watch(self: &Arc<Self>) -> Result<(), String> {
        use notify::Watcher;
        let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
        self.refresh_watched_names();
        let names = self.watched_names.clone();
        // Only events of the watched files go on: the folders hold other files too (the audit log
        // next to the config file is written for every request), and each event would wake the
        // watch thread for nothing.
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if !matches!(ev.kind, notify::EventKind::Access(_)) {
                    let names = names.read().unwrap_or_else(|p| p.into_inner());
                    for p in ev.paths {
                        if p.file_name().is_some_and(|n| names.contains(n)) {
                            let _ = tx.send(p);
                        }
                    }
                }
            }
        })
        .map_err(|e| format!("plugins.watch: {e}"))?;
        let mut dirs = BTreeSet::new();
        {
            let config = lock(&self.config);
            for spec in &config.specs {
                if let Some(dir) = config.path_of(spec).parent() {
                    dirs.insert(dir.to_owned());
                }
            }
        }
        if let Some(dir) = self.config_file.as_ref().and_then(|f| f.parent()) {
            dirs.insert(dir.to_owned());
        }
        for dir in &dirs {
            watcher
                .watch(dir, notify::RecursiveMode::NonRecursive)
                .map_err(|e| format!("plugins.watch: {}: {e}", dir.display()))?;
        }
        *lock(&self.watcher) = Some(watcher);
        let me: Weak<Manager> = Arc::downgrade(self);
        let debounce = Duration::from_millis(self.runtime_config.watch_debounce_ms);
        std::thread::Builder::new()
            .name("imgate-plugin-watch".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut changed = BTreeSet::from([first]);
                    while let Ok(p) = rx.recv_timeout(debounce) {
                        changed.insert(p);
                    }
                    let Some(m) = me.upgrade() else { return };
                    m.apply_changes(&changed);
                }
            })
            .map_err(|e| format!("plugins.watch: {e}"))?;
        Ok(())
    }

    /// The file names whose events matter: every plugin's file and the config file.
    pub(super) fn refresh_watched_names(&self) {
        let mut names = BTreeSet::new();
        {
            let config = lock(&self.config);
            for spec in &config.specs {
                names.extend(config.path_of(spec).file_name().map(ToOwned::to_owned));
            }
        }
        names.extend(self.config_file.as_ref().and_then(|f| f.file_name()).map(ToOwned::to_owned));
        *self.watched_names.write().unwrap_or_else(|p| p.into_inner()) = names;
    }

    fn apply_changes(&self, changed: &BTreeSet<PathBuf>) {
        let same = |a: &Path, b: &Path| a.file_name() == b.file_name() && canonical_dir(a) == canonical_dir(b);
        if self.config_file.as_ref().is_some_and(|f| changed.iter().any(|p| same(p, f))) {
            let _ = self.reload_config();
            return;
        }
        let config = lock(&self.config).clone();
        for spec in &config.specs {
            let path = config.path_of(spec);
            if !changed.iter().any(|p| same(p, &path)) {
                continue;
            }
            // Read under the activation lock: an admin activation or rollback writes this file
            // and swaps under the same lock, so what is read here is never older than what serves.
            let one_at_a_time = lock(&self.activation);
            match read_capped(&path, self.runtime_config.max_component_bytes) {
                Ok(bytes) => {
                    let _ = self.activate_locked(&one_at_a_time, &spec.name, &bytes, Source::File, None);
                }
                // Removed or mid-replacement: the next event brings the new file.
                Err(e) => tracing::debug!(plugin = %spec.name, error = %e, "plugin file not readable"),
            }
        }
    }
}

fn canonical_dir(p: &Path) -> Option<PathBuf> {
    p.parent().and_then(|d| std::fs::canonicalize(if d.as_os_str().is_empty() { Path::new(".") } else { d }).ok())
}
