//! The plugin admin API's wire types, defined once: the gateway serializes them
//! (`/v1/admin/plugins`, `routes/plugin_admin.rs`) and `imgate plugin` (`cli_plugin.rs`) reads them.
//!
//! Reading is lenient on purpose: unknown fields are ignored and fields a gateway may omit have
//! defaults, so an older CLI still reads a newer gateway's answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::store::Manifest;

/// `GET /v1/admin/plugins`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginList {
    /// The serving snapshot's generation (each activation or config reload adds one).
    #[serde(default)]
    pub generation: u64,
    pub plugins: Vec<PluginStatus>,
}

/// What `/v1/admin/plugins` shows of one plugin (`GET /v1/admin/plugins/{name}` answers one).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginStatus {
    pub name: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub active: Option<Manifest>,
    /// Versions activated since start, oldest first (hashes).
    #[serde(default)]
    pub history: Vec<String>,
    /// Every stored version of this plugin.
    #[serde(default)]
    pub versions: Vec<Manifest>,
    pub last_error: Option<LastError>,
    #[serde(default)]
    pub quarantined: Vec<Quarantined>,
    /// The plugin's failures since start, by kind (every version; the same counts as the
    /// `imgate_plugin_failures_total` metric, summed over hooks and policies).
    #[serde(default)]
    pub failures: BTreeMap<String, u64>,
}

/// The last refused activation of a plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastError {
    pub hash: String,
    /// `file`, `upload`, `rollback` or `quarantine`.
    #[serde(default)]
    pub source: String,
    /// The stable code (`ManagerError::reason`).
    #[serde(default)]
    pub reason: String,
    /// What went wrong, in words safe to show (`ManagerError::message`); the full detail is in
    /// the log and the audit record.
    pub error: String,
    #[serde(default)]
    pub at_ms: i64,
}

/// A version that may not come back from the watched file before `until_ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Quarantined {
    pub hash: String,
    pub until_ms: i64,
    /// How many times this version was quarantined (the backoff doubles each time).
    pub times: u32,
    /// The failures that put it there (the last time), by kind (`trap`, `deadline`, `exit`, ...).
    #[serde(default)]
    pub kinds: BTreeMap<String, u32>,
}

/// `POST /v1/admin/plugins/{name}/versions`: the stored version, and whether it now serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Uploaded {
    pub manifest: Manifest,
    pub active: bool,
}

/// `POST /v1/admin/plugins/{name}/activate` and `/rollback`: the version that now serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Changed {
    pub manifest: Manifest,
}

/// `POST /v1/admin/plugins/{name}/activate`'s body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    /// SHA-256 of a stored version, 64 lowercase hex digits.
    pub hash: String,
}
