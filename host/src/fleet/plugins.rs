//! Plugin versions across the fleet: an artifact uploaded or activated through the admin API of
//! one instance serves on all of them.
//!
//! The instance that took the admin call stores the component under `plugin:art:<hash>` (content
//! addressed: the hash is its SHA-256, checked again by whoever fetches it) and its manifest under
//! `plugin:man:<hash>`; an activation also sets `plugin:active` (hash: plugin name → hash) and is
//! announced on the events channel. Every other instance fetches the bytes by hash and activates
//! them through its own manager, with every check a local activation has (compile, link, `init`
//! against its routes' configs); each keeps its own precompiled cache. An instance that missed the
//! announcement catches up from `plugin:active` when it re-synchronises. What each instance's file
//! watcher or quarantine does stays local to that instance (docs/deploy.md).

use sha2::{Digest, Sha256};

use super::events::{self, Event};
use super::{Fleet, Unavailable};
use crate::plugins::reload::Source;
use crate::plugins::store::Manifest;
use crate::state::AppState;

fn art_key(fleet: &Fleet, hash: &str) -> String {
    fleet.key(&format!("plugin:art:{hash}"))
}

/// Stores a version the admin API accepted here, so every instance can fetch it by hash.
pub async fn share(fleet: &Fleet, bytes: &[u8], manifest: &Manifest) -> Result<(), Unavailable> {
    let json = serde_json::to_string(manifest).map_err(|e| Unavailable(e.to_string()))?;
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg(art_key(fleet, &manifest.hash)).arg(bytes).arg("NX").ignore();
    pipe.cmd("SET").arg(fleet.key(&format!("plugin:man:{}", manifest.hash))).arg(json).ignore();
    let mut c = fleet.conn();
    fleet.run("plugin_share", pipe.query_async::<()>(&mut c)).await
}

/// Records `name` → `hash` as the fleet's active version and tells the other instances.
pub async fn announce(fleet: &Fleet, name: &str, hash: &str) -> Result<(), Unavailable> {
    let mut c = fleet.conn();
    let set = redis::cmd("HSET").arg(fleet.key("plugin:active")).arg(name).arg(hash).to_owned();
    fleet.run("plugin_active", set.query_async::<i64>(&mut c)).await?;
    fleet.note_plugin(name, hash);
    let event =
        Event::PluginActivated { from: fleet.process().to_owned(), name: name.to_owned(), hash: hash.to_owned() };
    events::publish(fleet, &event).await
}

/// The bytes of a version stored by any instance, checked against its hash.
pub async fn fetch(fleet: &Fleet, hash: &str) -> Result<Option<(Vec<u8>, Option<Manifest>)>, Unavailable> {
    let mut pipe = redis::pipe();
    pipe.cmd("GET").arg(art_key(fleet, hash));
    pipe.cmd("GET").arg(fleet.key(&format!("plugin:man:{hash}")));
    let mut c = fleet.conn();
    let (bytes, manifest): (Option<Vec<u8>>, Option<String>) =
        fleet.run("plugin_fetch", pipe.query_async(&mut c)).await?;
    let Some(bytes) = bytes else { return Ok(None) };
    if hex::encode(Sha256::digest(&bytes)) != hash {
        tracing::error!(hash, "a plugin artifact in Redis does not match its hash; refused");
        return Ok(None);
    }
    Ok(Some((bytes, manifest.and_then(|m| serde_json::from_str(&m).ok()))))
}

/// Makes this instance serve `hash` for `name`, as another instance announced.
pub async fn follow(state: &AppState, name: &str, hash: &str) {
    let (Some(fleet), Some(manager)) = (state.fleet.clone(), state.plugins.manager.clone()) else { return };
    if !manager.is_configured(name) {
        return;
    }
    fleet.note_plugin(name, hash);
    if state.plugins.snapshot().plugins.get(name).is_some_and(|p| p.hash == hash) {
        return;
    }
    let (bytes, version) = match manager.stored_bytes(hash) {
        Some(b) => (b, manager.stored_version(hash)),
        None => match fetch(&fleet, hash).await {
            Ok(Some((b, m))) => (b, m.map(|m| m.version)),
            Ok(None) => {
                tracing::error!(plugin = name, hash, "the fleet activated a version this instance cannot find");
                return;
            }
            Err(e) => {
                tracing::warn!(plugin = name, hash, error = %e, "could not fetch the fleet's plugin version; retried at the next resync");
                fleet.forget_plugin(name);
                return;
            }
        },
    };
    let (n, h) = (name.to_owned(), hash.to_owned());
    let outcome =
        tokio::task::spawn_blocking(move || manager.activate(&n, &bytes, Source::Fleet, version.as_deref())).await;
    match outcome {
        Ok(Ok(_)) => tracing::info!(plugin = name, hash = %h, "plugin version activated by the fleet"),
        // Refused here (a route config this instance has, a limit): reported by the manager
        // (log, metric, audit, status); this instance keeps serving what it had.
        Ok(Err(e)) => {
            tracing::error!(plugin = name, hash = %h, error = %e, "the fleet's plugin version was refused on this instance")
        }
        Err(e) => tracing::error!(plugin = name, error = %e, "plugin activation task failed"),
    }
}

/// After a gap: every version the fleet activated that this instance has not followed yet.
pub async fn catch_up(state: &AppState, fleet: &Fleet) -> Result<(), Unavailable> {
    let mut c = fleet.conn();
    let active: std::collections::HashMap<String, String> =
        fleet.run("plugin_active", redis::cmd("HGETALL").arg(fleet.key("plugin:active")).query_async(&mut c)).await?;
    for (name, hash) in active {
        if !fleet.plugin_noted(&name, &hash) {
            follow(state, &name, &hash).await;
        }
    }
    Ok(())
}
