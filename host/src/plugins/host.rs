//! The host side of the plugin imports (`log`, `clock`, `config`, `kv`, `openim`): each requires
//! its capability (`capabilities::require`: a trap when not granted), counts against the call's
//! host-call budget, and — when it waits on something — runs under its own timeout, because epoch deadlines do not interrupt host code (attacks.md P10).
//!
//! Nothing here hands a token to a plugin: OpenIM reads are made with imgate's admin token and
//! only the documented fields come back.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::bindings::imgate::plugin::{clock, config, kv, log, openim, types};
use super::capabilities;
use super::config::Capability;
use super::kv::{KvError, MemoryKv, PluginKv, Quota};
use super::runtime::CallState;
use crate::openim::{ops, As, CallCtx, OpenIm, OpenImError};

use types::HostError;

/// Largest key of `kv`.
const MAX_KEY: usize = 256;
/// Largest value of `kv`.
const MAX_VALUE: usize = 64 * 1024;
/// Longest log line kept.
const MAX_LOG: usize = 1024;

/// What host functions reach: OpenIM (with imgate's token) and the plugin store.
pub struct HostIo {
    pub openim: Option<OpenIm>,
    pub kv: Arc<dyn PluginKv>,
}

impl HostIo {
    pub fn new(openim: OpenIm, kv: Arc<dyn PluginKv>) -> Arc<HostIo> {
        Arc::new(HostIo { openim: Some(openim), kv })
    }

    /// No OpenIM (self-checks, benchmarks): `openim` calls answer `unavailable`.
    pub fn detached() -> Arc<HostIo> {
        Arc::new(HostIo { openim: None, kv: Arc::new(MemoryKv::new()) })
    }
}

impl CallState {
    /// Counts one host call against the call's budget (the capability was checked by `require`).
    fn enter(&mut self) -> Result<(), HostError> {
        self.host_calls += 1;
        if self.host_calls > self.limits.max_host_calls {
            return Err(HostError::TooManyCalls);
        }
        Ok(())
    }

    /// Runs `fut` on the gateway's runtime under the host-call timeout; the time is not charged
    /// to the plugin's CPU budget.
    fn wait<T>(&mut self, fut: impl Future<Output = T>) -> Result<T, HostError> {
        if self.in_init {
            return Err(HostError::Denied);
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| HostError::Unavailable)?;
        let (started, cpu) = (Instant::now(), super::runtime::thread_cpu_time());
        let timeout = Duration::from_millis(self.limits.host_call_timeout_ms);
        let result = handle.block_on(tokio::time::timeout(timeout, fut));
        self.host_time += started.elapsed();
        self.host_cpu += super::runtime::thread_cpu_time().saturating_sub(cpu);
        result.map_err(|_| HostError::Timeout)
    }

    fn quota(&self) -> Quota {
        Quota { max_keys: self.limits.kv_max_keys, max_bytes: self.limits.kv_max_bytes }
    }

    /// [`capabilities::require`] for this call's plugin: traps unless `cap` is granted.
    fn require(&self, cap: Capability) -> wasmtime::Result<()> {
        capabilities::require(&self.grants, cap)
    }
}

fn key_ok(key: &str) -> Result<(), HostError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(HostError::Invalid(format!("keys are 1-{MAX_KEY} bytes")));
    }
    Ok(())
}

fn kv_err(e: KvError) -> HostError {
    match e {
        KvError::Quota => HostError::QuotaExceeded,
        KvError::NotACounter => HostError::Invalid("the value is not a counter".into()),
        KvError::Unavailable(_) => HostError::Unavailable,
    }
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

impl types::Host for CallState {}

impl log::Host for CallState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.require(Capability::Log)?;
        if self.enter().is_err() {
            return Ok(()); // over the budget: dropped, the plugin goes on
        }
        let mut end = message.len().min(MAX_LOG);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let (plugin, rid, text) = (&*self.plugin, &*self.request_id, &message[..end]);
        match level {
            log::Level::Debug => tracing::debug!(target: "imgate::plugin", plugin, request_id = rid, "{text}"),
            log::Level::Info => tracing::info!(target: "imgate::plugin", plugin, request_id = rid, "{text}"),
            log::Level::Warn => tracing::warn!(target: "imgate::plugin", plugin, request_id = rid, "{text}"),
            log::Level::Error => tracing::error!(target: "imgate::plugin", plugin, request_id = rid, "{text}"),
        }
        Ok(())
    }
}

impl clock::Host for CallState {
    fn now(&mut self) -> wasmtime::Result<u64> {
        self.require(Capability::Clock)?;
        Ok(crate::auth::now_ms().max(0) as u64)
    }
}

impl config::Host for CallState {
    fn get(&mut self) -> wasmtime::Result<String> {
        self.require(Capability::Config)?;
        Ok(self.config.to_string())
    }
}

impl kv::Host for CallState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, HostError>> {
        self.require(Capability::Kv)?;
        Ok((|| {
            self.enter()?;
            key_ok(&key)?;
            let (kv, ns) = (self.io.kv.clone(), self.plugin.clone());
            self.wait(async move { kv.get(&ns, &key).await })?.map_err(kv_err)
        })())
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> wasmtime::Result<Result<(), HostError>> {
        self.require(Capability::Kv)?;
        Ok((|| {
            self.enter()?;
            key_ok(&key)?;
            if value.len() > MAX_VALUE {
                return Err(HostError::Invalid(format!("values are at most {MAX_VALUE} bytes")));
            }
            let (kv, ns, quota) = (self.io.kv.clone(), self.plugin.clone(), self.quota());
            self.wait(async move { kv.set(&ns, &key, value, ttl(ttl_ms), quota).await })?.map_err(kv_err)
        })())
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), HostError>> {
        self.require(Capability::Kv)?;
        Ok((|| {
            self.enter()?;
            key_ok(&key)?;
            let (kv, ns) = (self.io.kv.clone(), self.plugin.clone());
            self.wait(async move { kv.delete(&ns, &key).await })?.map_err(kv_err)
        })())
    }

    fn increment(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> wasmtime::Result<Result<i64, HostError>> {
        self.require(Capability::Kv)?;
        Ok((|| {
            self.enter()?;
            key_ok(&key)?;
            let (kv, ns, quota) = (self.io.kv.clone(), self.plugin.clone(), self.quota());
            self.wait(async move { kv.increment(&ns, &key, delta, ttl(ttl_ms), quota).await })?.map_err(kv_err)
        })())
    }
}

fn id_ok(id: &str) -> Result<(), HostError> {
    if crate::ids::is_group_id(id) {
        Ok(())
    } else {
        Err(HostError::Invalid("ids are 1-64 of A-Z a-z 0-9 _ -".into()))
    }
}

fn openim_err(e: OpenImError) -> HostError {
    match e {
        OpenImError::Timeout(_) => HostError::Timeout,
        _ => HostError::Unavailable,
    }
}

impl CallState {
    /// One OpenIM read with the admin token; `data` of the answer.
    fn openim_read(&mut self, path: &'static str, body: Value) -> Result<Value, HostError> {
        self.enter()?;
        let openim = self.io.openim.clone().ok_or(HostError::Unavailable)?;
        let ctx = CallCtx::new(&format!("{}-plugin", self.request_id));
        self.wait(async move { openim.call_path(&ctx, path, true, &body, As::Admin).await })?.map_err(openim_err)
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

impl openim::Host for CallState {
    fn get_user(&mut self, user_id: String) -> wasmtime::Result<Result<Option<openim::User>, HostError>> {
        self.require(Capability::Openim)?;
        Ok((|| {
            id_ok(&user_id)?;
            let data = self.openim_read(ops::GET_USERS_INFO.path, json!({ "userIDs": [user_id] }))?;
            Ok(data["usersInfo"].as_array().and_then(|a| a.first()).map(|u| openim::User {
                user_id: text(u, "userID"),
                nickname: text(u, "nickname"),
                face_url: text(u, "faceURL"),
                ex: text(u, "ex"),
            }))
        })())
    }

    fn get_group(&mut self, group_id: String) -> wasmtime::Result<Result<Option<openim::Group>, HostError>> {
        self.require(Capability::Openim)?;
        Ok((|| {
            id_ok(&group_id)?;
            let data = self.openim_read("/group/get_groups_info", json!({ "groupIDs": [group_id] }))?;
            Ok(data["groupInfos"].as_array().and_then(|a| a.first()).map(|g| openim::Group {
                group_id: text(g, "groupID"),
                name: text(g, "groupName"),
                owner_user_id: text(g, "ownerUserID"),
                member_count: g["memberCount"].as_u64().unwrap_or(0).min(u64::from(u32::MAX)) as u32,
                ex: text(g, "ex"),
            }))
        })())
    }

    fn get_membership(
        &mut self,
        group_id: String,
        user_id: String,
    ) -> wasmtime::Result<Result<Option<openim::Role>, HostError>> {
        self.require(Capability::Openim)?;
        Ok((|| {
            id_ok(&group_id)?;
            id_ok(&user_id)?;
            let body = json!({ "groupID": group_id, "userIDs": [user_id] });
            let data = self.openim_read(ops::GET_GROUP_MEMBERS_INFO.path, body)?;
            let level = data["members"].as_array().and_then(|a| a.first()).and_then(|m| m["roleLevel"].as_i64());
            Ok(level.map(|l| match l {
                100 => openim::Role::Owner,
                60 => openim::Role::Admin,
                _ => openim::Role::Member,
            }))
        })())
    }
}
