//! Activation: a version checked whole (compiled or from the precompiled cache, linked, instantiated,
//! `init` accepted every route config that uses it), stored by hash, written to the plugin's file
//! and swapped in atomically; rollback to an earlier good version; reloads of the config file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::{lock, Check, Manager, ManagerError, Source, WORLD};
use crate::auth::now_ms;
use crate::plugins::api::LastError;
use crate::plugins::config::{Capability, PluginSpec, RuntimeConfig};
use crate::plugins::runtime::{Hook, HookAnswer, LoadError};
use crate::plugins::store::{write_atomic, ArtifactStore, Manifest};
use crate::plugins::{read_capped, Chain, Entry, HostIo, LoadedPlugin, PluginConfig, Runtime, Snapshot};

/// Reads and loads one plugin file (through the precompiled cache).
pub(crate) fn load_file(
    runtime: &Runtime,
    store: Option<&ArtifactStore>,
    rt: &RuntimeConfig,
    spec: &PluginSpec,
    path: &Path,
) -> Result<(LoadedPlugin, Vec<u8>), String> {
    let bytes = read_capped(path, rt.max_component_bytes)?;
    let p = load_bytes(runtime, store, rt, spec, &bytes).map_err(|e| e.to_string())?;
    Ok((p, bytes))
}

fn load_bytes(
    runtime: &Runtime,
    store: Option<&ArtifactStore>,
    rt: &RuntimeConfig,
    spec: &PluginSpec,
    bytes: &[u8],
) -> Result<LoadedPlugin, ManagerError> {
    let mut errors = Vec::new();
    let limits = spec.limits.resolve(rt, &format!("plugin `{}`", spec.name), &mut errors);
    if !errors.is_empty() {
        // The configuration's limits, not the component: the server's fault.
        return Err(ManagerError::Internal(errors.join("; ")));
    }
    let grants: BTreeSet<Capability> = spec.capabilities.iter().copied().collect();
    let mut plugin = runtime.load_cached(&spec.name, bytes, &grants, limits, store)?;
    // A version whose embedded config schema is unreadable is refused like any broken artifact
    // (the schema checks' words name the section and the bytes, never a file).
    plugin.config_schema = crate::plugins::store::embedded_config_schema(bytes)
        .map_err(|e| ManagerError::refused(Check::ConfigSchema, e.clone(), e))?;
    plugin.hooks = crate::plugins::store::embedded_hooks(bytes)
        .map_err(|e| ManagerError::refused(Check::HookList, e.clone(), e))?
        .unwrap_or(crate::plugins::runtime::Hooks::ALL);
    Ok(plugin)
}

/// Builds the chains of `config` from `plugins`, running every entry's `init` on its config.
pub(crate) fn build_snapshot(
    runtime: &Runtime,
    io: &Arc<HostIo>,
    config: &PluginConfig,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    generation: u64,
) -> Result<Snapshot, Vec<String>> {
    snapshot_of(runtime, io, config, plugins, generation).map_err(|e| e.iter().map(ToString::to_string).collect())
}

/// [`build_snapshot`], with every problem as a [`ManagerError`].
fn snapshot_of(
    runtime: &Runtime,
    io: &Arc<HostIo>,
    config: &PluginConfig,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    generation: u64,
) -> Result<Snapshot, Vec<ManagerError>> {
    let mut errors = Vec::new();
    let mut chains = HashMap::new();
    for (route, entries) in &config.chains {
        let mut chain = Chain { route: route.clone(), entries: Vec::new() };
        for e in entries {
            let Some(plugin) = plugins.get(&e.plugin) else {
                errors.push(ManagerError::Internal(format!("route `{route}`: plugin `{}` is not loaded", e.plugin)));
                continue;
            };
            let text: Arc<str> = Arc::from(e.config.to_string());
            let rid: Arc<str> = Arc::from("init");
            let (answer, _) = runtime.call(plugin, io, &text, &rid, Hook::Init(&text));
            let problem = match answer {
                Ok(HookAnswer::Init(Ok(()))) => None,
                Ok(HookAnswer::Init(Err(msg))) => Some(LoadError::InitRefused(msg).into()),
                Ok(_) => {
                    Some(ManagerError::refused(Check::InitFailed, "init answered nothing", "init answered nothing"))
                }
                Err(f) => Some(LoadError::InitFailed(f).into()),
            };
            match problem {
                // Which route config and plugin it was, in the client's words and the log's.
                Some(ManagerError::Refused { check, message, detail }) => errors.push(ManagerError::Refused {
                    check,
                    message: format!("route `{route}`: plugin `{}`: {message}", e.plugin),
                    detail: format!("route `{route}`: plugin `{}`: {detail}", e.plugin),
                }),
                Some(other) => errors.push(other),
                None => {}
            }
            chain.entries.push(Entry { plugin: plugin.clone(), config: text, failure: e.failure });
        }
        chains.insert(route.clone(), Arc::new(chain));
    }
    if errors.is_empty() {
        Ok(Snapshot { generation, plugins, chains })
    } else {
        Err(errors)
    }
}

impl Manager {
    pub(super) fn manifest_for(
        &self,
        plugin: &LoadedPlugin,
        size: usize,
        source: Source,
        version: Option<&str>,
    ) -> Manifest {
        let (name, hash) = (plugin.name.as_str(), plugin.hash.as_str());
        let caps = lock(&self.config)
            .spec(name)
            .map(|s| s.capabilities.iter().map(|c| c.as_str().to_owned()).collect())
            .unwrap_or_default();
        Manifest {
            name: name.to_owned(),
            hash: hash.to_owned(),
            version: version.map(str::to_owned).unwrap_or_else(|| hash[..12].to_owned()),
            world: WORLD.into(),
            capabilities: caps,
            size: size as u64,
            source: source.as_str().into(),
            stored_at_ms: now_ms(),
            config_schema: plugin.config_schema.clone(),
        }
    }

    /// Checks a version fully against the current configuration without serving it: the
    /// snapshot it would make.
    fn validate(&self, name: &str, bytes: &[u8]) -> Result<(Arc<LoadedPlugin>, Snapshot), ManagerError> {
        let config = lock(&self.config).clone();
        let spec = config.spec(name).ok_or_else(|| ManagerError::UnknownPlugin(name.to_owned()))?;
        let loaded = Arc::new(load_bytes(&self.runtime, Some(&self.store), &self.runtime_config, spec, bytes)?);
        self.metrics.plugins.loaded(name, loaded.from_cache);
        let current = self.current.load_full();
        let mut plugins = current.plugins.clone();
        plugins.insert(name.to_owned(), loaded.clone());
        let snap = snapshot_of(&self.runtime, &self.io, &config, plugins, current.generation + 1)
            .map_err(ManagerError::combine)?;
        Ok((loaded, snap))
    }

    /// Stores a version after checking it, without activating it.
    pub fn upload(&self, name: &str, bytes: &[u8], version: Option<&str>) -> Result<Manifest, ManagerError> {
        let (loaded, _) = self.validate(name, bytes).inspect_err(|e| self.refused(name, bytes, Source::Upload, e))?;
        let manifest = self.manifest_for(&loaded, bytes.len(), Source::Upload, version);
        self.store
            .put(bytes, &manifest)
            .map_err(|e| ManagerError::Store(e.to_string()))
            .inspect_err(|e| self.refused(name, bytes, Source::Upload, e))?;
        self.audit("uploaded", serde_json::json!({ "plugin": name, "hash": loaded.hash, "version": manifest.version }));
        Ok(self.store.manifest(&loaded.hash).unwrap_or(manifest))
    }

    /// Makes `bytes` the serving version of `name` (see the module docs for the checks). Blocks:
    /// call it off the async workers.
    pub fn activate(
        &self,
        name: &str,
        bytes: &[u8],
        source: Source,
        version: Option<&str>,
    ) -> Result<Manifest, ManagerError> {
        let one_at_a_time = lock(&self.activation);
        self.activate_locked(&one_at_a_time, name, bytes, source, version)
    }

    /// [`Manager::activate`] for a caller holding the activation lock (`_held`): whoever decides
    /// *what* to activate (the watcher reading the file, a rollback choosing a version) decides
    /// under the same lock, so no activation can slip in between and be undone by a stale one.
    pub(super) fn activate_locked(
        &self,
        _held: &std::sync::MutexGuard<'_, ()>,
        name: &str,
        bytes: &[u8],
        source: Source,
        version: Option<&str>,
    ) -> Result<Manifest, ManagerError> {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(bytes));
        let current = self.current.load_full();
        if let Some(serving) = current.plugins.get(name).filter(|p| p.hash == hash) {
            // Already serving (e.g. the watcher seeing imgate's own write).
            return Ok(self
                .store
                .manifest(&hash)
                .unwrap_or_else(|| self.manifest_for(serving, bytes.len(), source, version)));
        }
        if source == Source::File {
            // The same broken file seen again (several events of one write): already reported.
            if lock(&self.state).get(name).and_then(|s| s.last_error.as_ref()).is_some_and(|e| e.hash == hash) {
                return Err(ManagerError::AlreadyRefused);
            }
            // (Read into a local: the state lock must be released before `refused` takes it.)
            let quarantined = lock(&self.state)
                .get(name)
                .and_then(|s| s.quarantine.get(&hash))
                .filter(|q| q.until_ms > now_ms())
                .map(|q| q.until_ms);
            if let Some(until_ms) = quarantined {
                let e = ManagerError::Quarantined { hash: hash.clone(), until_ms };
                self.refused(name, bytes, source, &e);
                return Err(e);
            }
        }
        let (loaded, snap) = self.validate(name, bytes).inspect_err(|e| self.refused(name, bytes, source, e))?;
        let manifest = self.manifest_for(&loaded, bytes.len(), source, version);
        self.store
            .put(bytes, &manifest)
            .map_err(|e| ManagerError::Store(e.to_string()))
            .inspect_err(|e| self.refused(name, bytes, source, e))?;
        if source != Source::File {
            let path = {
                let config = lock(&self.config);
                config.spec(name).map(|s| config.path_of(s))
            };
            if let Some(path) = path {
                write_atomic(&path, bytes)
                    .map_err(|e| ManagerError::Store(format!("writing the plugin file {}: {e}", path.display())))
                    .inspect_err(|e| self.refused(name, bytes, source, e))?;
            }
        }
        let generation = snap.generation;
        self.current.store(Arc::new(snap));
        {
            let mut st = lock(&self.state);
            let ps = st.entry(name.to_owned()).or_default();
            ps.history.push(hash.clone());
            ps.last_error = None;
            ps.failures.clear();
        }
        self.metrics.plugins.reload(name, "activated");
        tracing::info!(plugin = name, hash = %hash, source = source.as_str(), generation, "plugin version activated");
        self.audit(
            "activated",
            serde_json::json!({ "plugin": name, "hash": hash, "version": manifest.version, "source": source.as_str() }),
        );
        Ok(self.store.manifest(&hash).unwrap_or(manifest))
    }

    /// Records a version that was not stored or activated: `last_error` (the words safe to show),
    /// the metric, the log and the audit record (the full detail). A server fault is audited as
    /// `failed`, a refused version as `refused`.
    fn refused(&self, name: &str, bytes: &[u8], source: Source, error: &ManagerError) {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(bytes));
        let reason = error.reason();
        lock(&self.state).entry(name.to_owned()).or_default().last_error = Some(LastError {
            hash: hash.clone(),
            source: source.as_str().to_owned(),
            reason: reason.to_owned(),
            error: error.message(),
            at_ms: now_ms(),
        });
        self.metrics.plugins.reload(name, "refused");
        let detail = error.to_string();
        let outcome = if error.is_server_fault() {
            tracing::error!(plugin = name, hash = %hash, source = source.as_str(), reason, error = %detail, "plugin version could not be stored or activated; the serving version stays");
            "failed"
        } else {
            tracing::warn!(plugin = name, hash = %hash, source = source.as_str(), reason, error = %detail, "plugin version refused; the serving version stays");
            "refused"
        };
        self.audit(
            outcome,
            serde_json::json!({ "plugin": name, "hash": hash, "source": source.as_str(), "reason": reason, "error": detail }),
        );
    }

    /// Activates a stored version by hash.
    pub fn activate_hash(&self, name: &str, hash: &str, source: Source) -> Result<Manifest, ManagerError> {
        let one_at_a_time = lock(&self.activation);
        self.activate_hash_locked(&one_at_a_time, name, hash, source)
    }

    fn activate_hash_locked(
        &self,
        held: &std::sync::MutexGuard<'_, ()>,
        name: &str,
        hash: &str,
        source: Source,
    ) -> Result<Manifest, ManagerError> {
        let m = self
            .store
            .manifest(hash)
            .filter(|m| m.name == name)
            .ok_or_else(|| ManagerError::UnknownVersion { name: name.to_owned(), hash: hash.to_owned() })?;
        let bytes = self.store.bytes(hash).map_err(|e| ManagerError::Store(e.to_string()))?;
        self.activate_locked(held, name, &bytes, source, Some(&m.version))
    }

    /// Activates the most recent earlier version that is not quarantined.
    pub fn rollback(&self, name: &str, source: Source) -> Result<Manifest, ManagerError> {
        // Without a precondition `rollback_from` answers a manifest or an error, never `None`.
        self.rollback_from(name, None, source)?.ok_or_else(|| ManagerError::NothingToRollBack(name.to_owned()))
    }

    /// [`Manager::rollback`], when `from` is `None` or still the serving version of `name`
    /// (checked under the activation lock); `Ok(None)` when something else serves by then.
    pub(super) fn rollback_from(
        &self,
        name: &str,
        from: Option<&str>,
        source: Source,
    ) -> Result<Option<Manifest>, ManagerError> {
        let one_at_a_time = lock(&self.activation);
        let current = self.current.load_full().plugins.get(name).map(|p| p.hash.clone());
        if from.is_some_and(|f| current.as_deref() != Some(f)) {
            return Ok(None);
        }
        let now = now_ms();
        let candidates: Vec<String> = {
            let st = lock(&self.state);
            let ps = st.get(name);
            let bad = |h: &String| ps.and_then(|p| p.quarantine.get(h)).is_some_and(|q| q.until_ms > now);
            let mut seen = BTreeSet::new();
            let history = ps.map(|p| p.history.clone()).unwrap_or_default();
            let stored = self.store.versions(name).into_iter().map(|m| m.hash);
            history
                .into_iter()
                .rev()
                .chain(stored.rev())
                .filter(|h| Some(h) != current.as_ref() && !bad(h))
                .filter(|h| seen.insert(h.clone()))
                .collect()
        };
        let target = candidates.first().ok_or_else(|| ManagerError::NothingToRollBack(name.to_owned()))?;
        self.activate_hash_locked(&one_at_a_time, name, target, source).map(Some)
    }

    /// Re-reads the config file: plugins and chains may change; other keys need a restart.
    pub fn reload_config(&self) -> Result<(), String> {
        let Some(file) = &self.config_file else { return Ok(()) };
        let _one_at_a_time = lock(&self.activation);
        let result = (|| {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
            let config = crate::Config::parse(&text).map_err(|e| e.to_string())?;
            let base = lock(&self.config).base_dir.clone();
            let mut errors = Vec::new();
            if config.route.iter().map(|r| r.name.clone()).collect::<BTreeSet<_>>() != self.table_routes {
                errors.push("the route table changed: restart imgate to apply it".into());
            }
            let next = PluginConfig::from_config(&config, &base, &mut errors);
            if !errors.is_empty() {
                return Err(errors.join("; "));
            }
            let current = self.current.load_full();
            let before = lock(&self.config).clone();
            let mut plugins = BTreeMap::new();
            for spec in &next.specs {
                let (p, bytes) =
                    load_file(&self.runtime, Some(&self.store), &self.runtime_config, spec, &next.path_of(spec))?;
                let p = match current.plugins.get(&spec.name) {
                    Some(old) if old.hash == p.hash && before.spec(&spec.name) == Some(spec) => old.clone(),
                    _ => {
                        let m = self.manifest_for(&p, bytes.len(), Source::File, None);
                        self.store.put(&bytes, &m).map_err(|e| format!("storing the artifact: {e}"))?;
                        Arc::new(p)
                    }
                };
                plugins.insert(spec.name.clone(), p);
            }
            let snap = build_snapshot(&self.runtime, &self.io, &next, plugins, current.generation + 1)
                .map_err(|e| e.join("; "))?;
            *lock(&self.config) = next;
            self.current.store(Arc::new(snap));
            self.refresh_watched_names();
            Ok(())
        })();
        match &result {
            Ok(()) => {
                self.metrics.plugins.reload("(config)", "activated");
                tracing::info!("plugin configuration reloaded");
                self.audit("config_reloaded", serde_json::json!({}));
            }
            Err(e) => {
                self.metrics.plugins.reload("(config)", "refused");
                tracing::warn!(error = %e, "config change refused; the serving plugins stay");
                self.audit("config_refused", serde_json::json!({ "error": e }));
            }
        }
        result
    }
}
