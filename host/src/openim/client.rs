//! One call to OpenIM: envelope, `operationID`, deadline, bounded retries for reads, token refresh.
//!
//! Every call carries a fresh `operationID` derived from the client's request id
//! (`<request id>-<n>`), so a line in OpenIM's log leads back to the imgate request. A call has one
//! deadline (`openim.timeout_ms`) that includes any retry. Only idempotent reads are retried, and
//! only after a transport failure (the request may not have arrived); writes such as `send_msg`
//! are never repeated on a transport failure, because OpenIM does not deduplicate them; reads are
//! repeated only within their service's retry budget, and not at all while its circuit is open
//! (`breaker.rs`). The one repeat every call may get is after a token errCode (1501-1507): OpenIM
//! rejects those before acting, so the call had no effect and is sent once more with a freshly
//! fetched token; a fresh token refused too is `AuthFailed`, never a token errCode for a client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::breaker::{BreakerSettings, Breakers, Outcome};
use super::errors::{ErrCode, OpenImError};
use super::ops::{self, Op};
use super::privileged::{Privilege, Privileged, PrivilegedSettings};
use super::roles::RoleCache;
use super::tokens::{Token, TokenCache};
use crate::fleet::tokens::{Minted, SharedToken, SharedTokens};
use crate::telemetry::{Metrics, OpenImLabels, OperationLabels, ReasonLabels, RequestId};

/// Whose OpenIM token a call carries.
#[derive(Debug, Clone, Copy)]
pub enum As<'a> {
    /// The admin token: only for operations a user could not do themselves.
    Admin,
    /// The user's own token for one platform, minted and cached by imgate.
    User { user_id: &'a str, platform_id: i32 },
}

/// The request a call belongs to; gives each call its `operationID`.
#[derive(Debug, Clone)]
pub struct CallCtx {
    request_id: Arc<str>,
    /// The client request, when there is one: its operationIDs go to its audit record.
    request: Option<RequestId>,
}

impl CallCtx {
    pub fn new(request_id: &str) -> CallCtx {
        CallCtx { request_id: Arc::from(request_id), request: None }
    }

    /// For calls a client request causes.
    pub fn for_request(request: &RequestId) -> CallCtx {
        CallCtx { request_id: Arc::from(request.as_str()), request: Some(request.clone()) }
    }

    /// For work not caused by a client request (start-up checks, the demo).
    pub fn background() -> CallCtx {
        CallCtx::new(&format!("imgate-{}", uuid::Uuid::new_v4().simple()))
    }

    fn operation_id(&self, seq: &AtomicU64) -> String {
        let id = format!("{}-{}", self.request_id, seq.fetch_add(1, Ordering::Relaxed));
        if let Some(r) = &self.request {
            r.note_operation(&id);
        }
        id
    }
}

/// What the client needs to know about the OpenIM it talks to.
#[derive(Clone)]
pub struct OpenImSettings {
    pub api_url: String,
    pub admin_user_id: String,
    /// `openim.secret`, or the content of `openim.secret_file` at start-up ...
    pub secret: String,
    /// ... which is read again before every admin-token fetch, so a rotated secret is picked up
    /// without a restart (the last readable one is kept if the file cannot be read).
    pub secret_file: Option<std::path::PathBuf>,
    pub timeout: Duration,
    pub read_retries: u32,
    pub refresh_before: Duration,
    pub max_response_bytes: usize,
    /// How long a group-role lookup is reused (0 = never).
    pub membership_cache: Duration,
    /// OpenIM's admin ids, the accounts allowed despite their privilege, the level cache.
    pub privileged: PrivilegedSettings,
    /// `[openim.breaker]`.
    pub breaker: BreakerSettings,
}

/// See [`OpenIm::standing`].
#[derive(Debug, Clone, Serialize)]
pub struct Standing {
    pub credentials_refused: bool,
    /// `valid`, `expiring` (valid, a refresh is due), `none`, or `fetching`.
    pub admin_token: &'static str,
    /// How the last admin-token fetch failed (`timeout`, `unavailable`, `auth_failed`, …) while
    /// its backoff runs.
    pub last_failure: Option<&'static str>,
    /// Services whose circuit is `open` or `half_open`.
    pub circuits: Vec<(&'static str, &'static str)>,
}

/// OpenIM's answer to a passthrough call, as it sent it.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: u16,
    pub body: Bytes,
    pub err_code: i64,
}

/// OpenIM's envelope (contract §3.1).
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "errCode")]
    err_code: i64,
    #[serde(rename = "errMsg", default)]
    err_msg: String,
    #[serde(rename = "errDlt", default)]
    err_dlt: String,
    #[serde(default)]
    data: Option<serde_json::Value>,
}

struct Answer {
    status: u16,
    body: Bytes,
    envelope: Envelope,
}

impl Answer {
    fn err_code(&self) -> ErrCode {
        ErrCode::from_code(self.envelope.err_code)
    }

    fn into_data<T: DeserializeOwned>(self) -> Result<T, OpenImError> {
        let env = self.envelope;
        if env.err_code != 0 {
            return Err(OpenImError::Api {
                code: ErrCode::from_code(env.err_code),
                msg: env.err_msg,
                detail: env.err_dlt,
            });
        }
        // OpenIM omits `data` for empty answers; treat that as an empty object.
        let data = env.data.unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        serde_json::from_value(data).map_err(|e| OpenImError::BadResponse(format!("unexpected data: {e}")))
    }
}

/// At most this many distinct OpenIM paths keep a parsed URL (every path imgate calls is a constant
/// of `ops`, the compat allow-list or the route table: a few hundred at most).
const MAX_CACHED_URLS: usize = 1024;

/// The body format of every OpenIM call but the `/jssdk` protobuf ones.
const JSON: &str = "application/json";
/// The protobuf body format `/jssdk/*` negotiate (contract §1.3).
pub const PROTOBUF: &str = "application/x-protobuf";
/// The OpenIM client. Cheap to clone; clones share the token cache.
#[derive(Clone)]
pub struct OpenIm {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    /// `base` + path, parsed once per path: parsing a URL (with IDNA processing of the host) for
    /// every call was a measurable share of a passthrough request.
    urls: std::sync::RwLock<HashMap<Box<str>, reqwest::Url>>,
    settings: OpenImSettings,
    tokens: TokenCache,
    /// The fleet's tokens (`[store] backend = "redis"`): minted once for every instance.
    shared: std::sync::OnceLock<Arc<SharedTokens>>,
    seq: AtomicU64,
    metrics: Arc<Metrics>,
    roles: RoleCache,
    privileged: Privileged,
    breakers: Arc<Breakers>,
    /// The secret last read (`secret_file`) or configured.
    secret: std::sync::RwLock<String>,
}

impl OpenIm {
    pub fn new(settings: OpenImSettings, metrics: Arc<Metrics>) -> Result<OpenIm, OpenImError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            // OpenIM never redirects; a gateway must not follow one elsewhere with its tokens (and
            // the redirect layer parsed every request's URL again).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| OpenImError::InvalidCall(format!("HTTP client: {e}")))?;
        let base = settings.api_url.trim_end_matches('/').to_owned();
        let roles = RoleCache::new(settings.membership_cache);
        let privileged = Privileged::new(&settings.privileged);
        let breakers = Breakers::new(settings.breaker.clone(), &metrics);
        Ok(OpenIm {
            inner: Arc::new(Inner {
                http,
                base,
                urls: Default::default(),
                tokens: TokenCache::default(),
                shared: std::sync::OnceLock::new(),
                seq: AtomicU64::new(1),
                metrics,
                roles,
                privileged,
                breakers,
                secret: std::sync::RwLock::new(settings.secret.clone()),
                settings,
            }),
        })
    }

    /// What imgate knows of its standing with OpenIM without asking it (readiness): whether
    /// OpenIM refuses its credentials, the admin token's state, the last failed fetch while its
    /// backoff runs, and the services whose circuit is not closed.
    pub fn standing(&self) -> Standing {
        let (admin_token, last_failure) = match self.inner.tokens.admin.try_lock() {
            Err(_) => ("fetching", None),
            Ok(slot) => {
                let state = match slot.token.as_ref() {
                    Some(t) if t.is_fresh(self.inner.settings.refresh_before) => "valid",
                    Some(t) if t.is_valid() => "expiring",
                    _ => "none",
                };
                (state, slot.recent_failure().map(|e| e.outcome()))
            }
        };
        Standing {
            credentials_refused: self.inner.metrics.openim_auth_failed.get() == 1,
            admin_token,
            last_failure,
            circuits: self.inner.breakers.not_closed(),
        }
    }

    /// Shares OpenIM tokens with the other instances of a fleet (set once, at start-up).
    pub fn share_tokens(&self, shared: Arc<SharedTokens>) {
        let _ = self.inner.shared.set(shared);
    }

    /// Calls `op` and decodes its `data`; a non-zero errCode becomes [`OpenImError::Api`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        ctx: &CallCtx,
        op: Op,
        body: &impl Serialize,
        who: As<'_>,
    ) -> Result<T, OpenImError> {
        let body = serde_json::to_vec(body).map_err(|e| OpenImError::InvalidCall(e.to_string()))?;
        self.answer(ctx, op.path, op.path, op.idempotent, &Bytes::from(body), JSON, who).await?.into_data()
    }

    /// Calls an OpenIM route named at run time (the route table) with a JSON body; returns `data`.
    pub async fn call_path(
        &self,
        ctx: &CallCtx,
        path: &str,
        idempotent: bool,
        body: &serde_json::Value,
        who: As<'_>,
    ) -> Result<serde_json::Value, OpenImError> {
        let body = serde_json::to_vec(body).map_err(|e| OpenImError::InvalidCall(e.to_string()))?;
        self.answer(ctx, path, path, idempotent, &Bytes::from(body), JSON, who).await?.into_data()
    }

    /// A user's role level in a group (100 owner, 60 admin, 20 member), or `None` if not a member.
    /// Asked with the admin token: OpenIM has no route a user could use to check another's role.
    pub async fn group_role(&self, ctx: &CallCtx, group_id: &str, user_id: &str) -> Result<Option<i64>, OpenImError> {
        if let Some(role) = self.inner.roles.get(group_id, user_id) {
            return Ok(role);
        }
        let req = serde_json::json!({ "groupID": group_id, "userIDs": [user_id] });
        let data = self.call_path(ctx, ops::GET_GROUP_MEMBERS_INFO.path, true, &req, As::Admin).await?;
        let role = data["members"]
            .as_array()
            .and_then(|m| m.iter().find(|x| x["userID"] == user_id))
            .and_then(|m| m["roleLevel"].as_i64());
        self.inner.roles.put(group_id, user_id, role);
        Ok(role)
    }

    /// One user's OpenIM profile, read now with the admin token (`get_users_info` answers for any
    /// id, contract §10.6); `None` if OpenIM does not know the user. Refreshes the cached level.
    pub async fn user_info(&self, ctx: &CallCtx, user_id: &str) -> Result<Option<ops::UserInfo>, OpenImError> {
        let ids = [user_id.to_owned()];
        let found: ops::GetUsersInfoResp =
            self.call(ctx, ops::GET_USERS_INFO, &ops::GetUsersInfoReq { user_ids: &ids }, As::Admin).await?;
        let info = found.users_info.unwrap_or_default().into_iter().find(|u| u.user_id == user_id);
        self.inner.privileged.remember_level(user_id, info.as_ref().map(|u| u.app_manger_level));
        Ok(info)
    }

    /// Whether `user_id` is one of the ids OpenIM treats as admins (as configured), allowed or not.
    pub fn is_admin_user_id(&self, user_id: &str) -> bool {
        self.inner.privileged.is_admin_id(user_id)
    }

    /// The privilege the config alone establishes (an admin id not in `allow_user_ids`); no call.
    pub fn configured_privilege(&self, user_id: &str) -> Option<Privilege> {
        self.inner.privileged.configured(user_id)
    }

    /// The privilege of a profile just read: an admin id or `appMangerLevel` ≥ 2, unless allowed.
    pub fn privilege_of(&self, info: &ops::UserInfo) -> Option<Privilege> {
        self.inner.privileged.judge(&info.user_id, Some(info.app_manger_level))
    }

    /// The privilege of `user_id`, asking OpenIM for its level unless the config decides or a read
    /// younger than `level_cache_ms` exists. A user OpenIM does not know is not privileged there.
    pub async fn privilege(&self, ctx: &CallCtx, user_id: &str) -> Result<Option<Privilege>, OpenImError> {
        let p = &self.inner.privileged;
        if p.is_allowed(user_id) || p.is_admin_id(user_id) {
            return Ok(p.judge(user_id, None));
        }
        let level = match p.cached_level(user_id) {
            Some(level) => level,
            None => self.user_info(ctx, user_id).await?.map(|u| u.app_manger_level),
        };
        Ok(p.judge(user_id, level))
    }

    /// Forwards a body to any OpenIM path with the given token and returns OpenIM's answer as sent
    /// (errCode and all). Never retried after a transport failure: the operation is unknown.
    pub async fn call_raw(
        &self,
        ctx: &CallCtx,
        path: &str,
        body: Bytes,
        who: As<'_>,
    ) -> Result<RawAnswer, OpenImError> {
        self.call_raw_as(ctx, path, body, JSON, who).await
    }

    /// [`OpenIm::call_raw`] with another body format (`/jssdk/*` take protobuf, contract §1.3).
    pub async fn call_raw_as(
        &self,
        ctx: &CallCtx,
        path: &str,
        body: Bytes,
        content_type: &'static str,
        who: As<'_>,
    ) -> Result<RawAnswer, OpenImError> {
        let a = self.answer(ctx, "passthrough", path, false, &body, content_type, who).await?;
        Ok(RawAnswer { status: a.status, err_code: a.envelope.err_code, body: a.body })
    }

    #[allow(clippy::too_many_arguments)]
    async fn answer(
        &self,
        ctx: &CallCtx,
        label: &str,
        path: &str,
        idempotent: bool,
        body: &Bytes,
        ct: &'static str,
        who: As<'_>,
    ) -> Result<Answer, OpenImError> {
        let answer = match who {
            As::Admin => self.as_admin(ctx, label, path, idempotent, body, ct).await,
            As::User { user_id, platform_id } => {
                self.as_user(ctx, label, path, idempotent, body, ct, user_id, platform_id).await
            }
        };
        // A successful group write may change roles: forget that group's cached roles.
        if !idempotent && path.starts_with("/group/") && answer.as_ref().is_ok_and(|a| a.envelope.err_code == 0) {
            let group = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["groupID"].as_str().map(str::to_owned));
            if let Some(g) = group {
                self.inner.roles.forget_group(&g);
            }
        }
        answer
    }

    async fn as_admin(
        &self,
        ctx: &CallCtx,
        label: &str,
        path: &str,
        idempotent: bool,
        body: &Bytes,
        ct: &'static str,
    ) -> Result<Answer, OpenImError> {
        let mut attempt = 0;
        loop {
            let token = self.admin_token(ctx).await?;
            let a = self.exchange(ctx, label, path, idempotent, body, ct, Some(&token.value)).await?;
            if refuses_carried_token(path, &a) {
                self.inner.tokens.drop_admin(&token).await;
                self.drop_shared("admin", &token.value).await;
                if attempt == 0 {
                    tracing::info!(
                        err_code = a.envelope.err_code,
                        "admin token rejected by OpenIM; fetching a new one"
                    );
                    attempt += 1;
                    continue;
                }
                return Err(token_refused_twice("admin", &a));
            }
            return Ok(a);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn as_user(
        &self,
        ctx: &CallCtx,
        label: &str,
        path: &str,
        idempotent: bool,
        body: &Bytes,
        ct: &'static str,
        user_id: &str,
        platform_id: i32,
    ) -> Result<Answer, OpenImError> {
        if !super::is_user_platform(platform_id) {
            // OpenIM would mint a token for platform 0 or 99 that its WebSocket then refuses (§4.2).
            return Err(OpenImError::InvalidCall(format!("platform {platform_id} is not a user platform")));
        }
        let mut attempt = 0;
        loop {
            let token = self.user_token(ctx, user_id, platform_id).await?;
            let a = self.exchange(ctx, label, path, idempotent, body, ct, Some(&token.value)).await?;
            if refuses_carried_token(path, &a) {
                self.inner.tokens.drop_user(user_id, platform_id, &token).await;
                self.drop_shared(&format!("user:{user_id}:{platform_id}"), &token.value).await;
                if attempt == 0 {
                    tracing::info!(err_code = a.envelope.err_code, "user token rejected by OpenIM; minting a new one");
                    attempt += 1;
                    continue;
                }
                return Err(token_refused_twice("user", &a));
            }
            return Ok(a);
        }
    }

    /// The cached admin token. Concurrent callers wait for one fetch (each fetch demotes the
    /// previous admin token in OpenIM, §4.1) and share its outcome: a failed fetch answers every
    /// caller at once and is not retried before its backoff (200 ms, doubling to 5 s) has passed. A
    /// token close to its end but still valid is used while a refresh runs in the background, so
    /// no request waits for OpenIM while a valid token exists.
    async fn admin_token(&self, ctx: &CallCtx) -> Result<Token, OpenImError> {
        let s = &self.inner.settings;
        let mut slot = self.inner.tokens.admin.lock().await;
        if let Some(t) = slot.token.as_ref() {
            if t.is_fresh(s.refresh_before) {
                return Ok(t.clone());
            }
            if t.is_valid() {
                let t = t.clone();
                if !slot.refreshing && slot.recent_failure().is_none() {
                    slot.refreshing = true;
                    let me = self.clone();
                    tokio::spawn(async move {
                        let mut slot = me.inner.tokens.admin.lock().await;
                        let out = me.fetch_admin_into(&mut slot, &CallCtx::background(), "expiring").await;
                        slot.refreshing = false;
                        if let Err(e) = out {
                            tracing::warn!(error = %e, "refreshing the admin token ahead of its end failed; the current one is used meanwhile");
                        }
                    });
                }
                return Ok(t);
            }
        }
        if let Some(e) = slot.recent_failure() {
            return Err(e);
        }
        let reason = if slot.token.is_some() { "expiring" } else { "missing" };
        self.fetch_admin_into(&mut slot, ctx, reason).await
    }

    /// One admin-token fetch (through the fleet when there is one) whose outcome goes into the
    /// slot the caller holds.
    async fn fetch_admin_into(
        &self,
        slot: &mut super::tokens::TokenSlot,
        ctx: &CallCtx,
        reason: &'static str,
    ) -> Result<Token, OpenImError> {
        let out = self.fetch_admin(ctx, reason).await;
        match &out {
            Ok(t) => slot.succeeded(t.clone()),
            Err(e) => slot.failed(e),
        }
        out
    }

    async fn fetch_admin(&self, ctx: &CallCtx, reason: &'static str) -> Result<Token, OpenImError> {
        let s = &self.inner.settings;
        let fetch = || fetch_admin_token(ctx, self, reason);
        let token = match self.inner.shared.get() {
            Some(shared) => match shared.get_or_mint("admin", s.refresh_before, None, false, s.timeout, fetch).await {
                Ok(Minted::Token(t)) => Token::from_shared(&t),
                Ok(Minted::Failed(e)) => return Err(e),
                // Redis out of reach: fetch one for this instance. The fleet's token keeps working
                // for OpenIM's 5-minute grace (contract §4.1), and the fleet fetches anew after.
                Err(e) => {
                    tracing::warn!(error = %e, "fleet token store unavailable; fetching an admin token for this instance");
                    Token::from_shared(&fetch_admin_token(ctx, self, reason).await?)
                }
            },
            None => Token::from_shared(&fetch().await?),
        };
        Ok(token)
    }

    /// The cached token of (user, platform), minted with the admin token when missing. Minting
    /// kicks the previous token of that pair (multi-login policy 1), so it happens once per pair,
    /// under that pair's lock.
    async fn user_token(&self, ctx: &CallCtx, user_id: &str, platform_id: i32) -> Result<Token, OpenImError> {
        self.user_token_with(ctx, user_id, platform_id, false).await
    }

    /// [`Self::user_token`]; with `fresh`, a new token replaces even a fresh cached one.
    async fn user_token_with(
        &self,
        ctx: &CallCtx,
        user_id: &str,
        platform_id: i32,
        fresh: bool,
    ) -> Result<Token, OpenImError> {
        let slot = self.inner.tokens.user_slot(user_id, platform_id);
        let mut slot = slot.lock().await;
        if let Some(t) = slot.token.as_ref().filter(|t| !fresh && t.is_fresh(self.inner.settings.refresh_before)) {
            return Ok(t.clone());
        }
        // The outcome of the mint the caller waited for (or one within its backoff) is its answer.
        if let Some(e) = slot.recent_failure() {
            return Err(e);
        }
        let mint = || async move {
            let req = ops::GetUserTokenReq { platform_id, user_id };
            let body = Bytes::from(serde_json::to_vec(&req).map_err(|e| OpenImError::InvalidCall(e.to_string()))?);
            let op = ops::GET_USER_TOKEN;
            let resp: ops::TokenResp = self.as_admin(ctx, op.path, op.path, false, &body, JSON).await?.into_data()?;
            self.inner.metrics.openim_user_token_mints.inc();
            Ok::<_, OpenImError>(shared_token(resp))
        };
        let token = match self.inner.shared.get() {
            // Never minted apart from the fleet: it would kick the token another instance uses
            // (multi-login policy 1). Without Redis the call fails closed.
            Some(shared) => {
                let slot_name = format!("user:{user_id}:{platform_id}");
                let s = &self.inner.settings;
                match shared.get_or_mint(&slot_name, s.refresh_before, None, fresh, s.timeout, mint).await {
                    Ok(Minted::Token(t)) => Ok(Token::from_shared(&t)),
                    Ok(Minted::Failed(e)) => Err(e),
                    Err(e) => Err(e.into()),
                }
            }
            None => mint().await.map(|t| Token::from_shared(&t)),
        };
        match &token {
            Ok(t) => slot.succeeded(t.clone()),
            Err(e) => slot.failed(e),
        }
        token
    }

    /// The OpenIM token of (user, platform) the HTTP path uses too, for the WebSocket relay's
    /// upstream dial (a second token would kick the first, contract §5.8). Never shown to a client.
    pub async fn relay_token(&self, ctx: &CallCtx, user_id: &str, platform_id: i32) -> Result<Arc<str>, OpenImError> {
        if !super::is_user_platform(platform_id) {
            return Err(OpenImError::InvalidCall(format!("platform {platform_id} is not a user platform")));
        }
        Ok(self.user_token(ctx, user_id, platform_id).await?.value)
    }

    /// A freshly minted OpenIM token of (user, platform) for the WebSocket direct mode: it replaces
    /// the cached one (OpenIM kicks the older token of that pair, contract §5.8), so the HTTP path
    /// and the client share it instead of kicking each other. Returns it and its lifetime (s).
    pub async fn fresh_relay_token(
        &self,
        ctx: &CallCtx,
        user_id: &str,
        platform_id: i32,
    ) -> Result<(Arc<str>, i64), OpenImError> {
        if !super::is_user_platform(platform_id) {
            return Err(OpenImError::InvalidCall(format!("platform {platform_id} is not a user platform")));
        }
        let token = self.user_token_with(ctx, user_id, platform_id, true).await?;
        Ok((token.value.clone(), token.lifetime_secs()))
    }

    /// Drops the cached token of (user, platform) if it is still `rejected` (OpenIM's msg gateway
    /// refused it), so the next use mints a fresh one.
    pub async fn drop_relay_token(&self, user_id: &str, platform_id: i32, rejected: &str) {
        self.inner.tokens.drop_user_value(user_id, platform_id, rejected).await;
        if let Some(shared) = self.inner.shared.get() {
            if let Err(e) = shared.drop_if(&format!("user:{user_id}:{platform_id}"), rejected).await {
                tracing::warn!(error = %e, "could not drop a refused OpenIM token from the fleet's store");
            }
        }
    }

    /// Forgets the cached tokens of a user on one platform (after a force_logout).
    pub async fn forget_user_token(&self, user_id: &str, platform_id: i32) {
        self.inner.tokens.forget_user(user_id, platform_id).await;
        if let Some(shared) = self.inner.shared.get() {
            if let Err(e) = shared.forget(&format!("user:{user_id}:{platform_id}")).await {
                tracing::warn!(error = %e, "could not forget an OpenIM token in the fleet's store");
            }
        }
    }

    /// A token OpenIM refused: forgotten here and, for the fleet, in Redis (if still the same).
    async fn drop_shared(&self, slot: &str, rejected: &str) {
        if let Some(shared) = self.inner.shared.get() {
            if let Err(e) = shared.drop_if(slot, rejected).await {
                tracing::warn!(error = %e, "could not drop a refused OpenIM token from the fleet's store");
            }
        }
    }

    /// One HTTP exchange under the call deadline; retries reads after transport failures.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        ctx: &CallCtx,
        label: &str,
        path: &str,
        idempotent: bool,
        body: &Bytes,
        ct: &'static str,
        token: Option<&str>,
    ) -> Result<Answer, OpenImError> {
        let s = &self.inner.settings;
        let op_id = ctx.operation_id(&self.inner.seq);
        let started = Instant::now();
        let attempts = if idempotent { 1 + s.read_retries } else { 1 };
        let breakers = &self.inner.breakers;
        let result = match breakers.admit(path) {
            Err(refused) => Err(refused),
            Ok(permit) => {
                let work = async {
                    let mut attempt = 1;
                    loop {
                        match self.once(path, &op_id, body, ct, token).await {
                            Err(OpenImError::Unavailable(e)) if attempt < attempts && breakers.may_retry(path) => {
                                tracing::debug!(operation_id = %op_id, attempt, error = %e, "retrying idempotent OpenIM read");
                                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                                attempt += 1;
                            }
                            other => return other,
                        }
                    }
                };
                let result =
                    tokio::time::timeout(s.timeout, work).await.unwrap_or(Err(OpenImError::Timeout(s.timeout)));
                let code = result.as_ref().map(|a| a.envelope.err_code).map_err(Clone::clone);
                permit.finish(Outcome::of(&code));
                result
            }
        };
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(a) if a.envelope.err_code == 0 => "ok".to_owned(),
            Ok(a) => super::errors::errcode_label(a.envelope.err_code),
            Err(e) => e.outcome().to_owned(),
        };
        let m = &self.inner.metrics;
        m.openim_calls.get_or_create(&OpenImLabels { operation: label.to_owned(), outcome: outcome.clone() }).inc();
        m.openim_duration
            .get_or_create(&OperationLabels { operation: label.to_owned() })
            .observe(elapsed.as_secs_f64());
        // Never the body or the token: only what identifies the call and how it went. A call that
        // went well is in the request's own log line and the metrics; the line is for debugging.
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        if matches!(result, Ok(ref a) if a.envelope.err_code == 0) {
            tracing::debug!(operation_id = %op_id, openim_path = path, outcome = %outcome, latency_ms, "openim call");
        } else {
            tracing::info!(operation_id = %op_id, openim_path = path, outcome = %outcome, latency_ms, "openim call");
        }
        result
    }

    /// The URL of `path` on OpenIM (cached: the paths are a fixed set, at most [`MAX_CACHED_URLS`]).
    fn url(&self, path: &str) -> Result<reqwest::Url, OpenImError> {
        let cache = &self.inner.urls;
        if let Some(url) = cache.read().unwrap_or_else(|p| p.into_inner()).get(path) {
            return Ok(url.clone());
        }
        let url = reqwest::Url::parse(&format!("{}{}", self.inner.base, path))
            .map_err(|e| OpenImError::InvalidCall(format!("OpenIM URL for {path}: {e}")))?;
        let mut cache = cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() < MAX_CACHED_URLS {
            cache.insert(path.into(), url.clone());
        }
        Ok(url)
    }

    async fn once(
        &self,
        path: &str,
        op_id: &str,
        body: &Bytes,
        ct: &'static str,
        token: Option<&str>,
    ) -> Result<Answer, OpenImError> {
        let url = self.url(path)?;
        let mut req = self
            .inner
            .http
            .post(url)
            .header("operationID", op_id)
            .header(reqwest::header::CONTENT_TYPE, ct)
            .body(body.clone());
        if let Some(t) = token {
            req = req.header("token", t);
        }
        let mut resp = req.send().await.map_err(|e| OpenImError::Unavailable(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let max = self.inner.settings.max_response_bytes;
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(OpenImError::BadResponse(format!("answer larger than {max} bytes")));
        }
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| OpenImError::Unavailable(error_chain(&e)))? {
            if buf.len() + chunk.len() > max {
                return Err(OpenImError::BadResponse(format!("answer larger than {max} bytes")));
            }
            buf.extend_from_slice(&chunk);
        }
        // OpenIM answers 200 for every business error and 400 (with the envelope) for binding
        // errors of its hand-written routes; anything else is not an answer imgate understands.
        if status == 404 {
            return Err(OpenImError::NoRoute(path.to_owned()));
        }
        if status != 200 && status != 400 {
            return Err(OpenImError::BadResponse(format!("HTTP status {status}")));
        }
        let envelope: Envelope = serde_json::from_slice(&buf)
            .map_err(|e| OpenImError::BadResponse(format!("not an OpenIM envelope: {e}")))?;
        Ok(Answer { status, body: Bytes::from(buf), envelope })
    }
}

/// Whether OpenIM refused the token the call carried (imgate's own, see
/// [`ErrCode::is_token_error`]). `/auth/parse_token` answers token errCodes about the token in its
/// body: those are its answer.
fn refuses_carried_token(path: &str, a: &Answer) -> bool {
    a.err_code().is_token_error() && path != "/auth/parse_token"
}

/// OpenIM refused a token imgate had just fetched or minted: imgate's standing with OpenIM is at
/// fault (a secret rotated in OpenIM only, clocks apart), so the caller gets
/// `upstream_auth_failed`, never OpenIM's token errCode, which an SDK reads as its own logout.
fn token_refused_twice(whose: &str, a: &Answer) -> OpenImError {
    tracing::warn!(
        err_code = a.envelope.err_code,
        whose,
        "OpenIM refused a fresh {whose} token too; check openim.secret against OpenIM's share.yml"
    );
    OpenImError::AuthFailed(format!("OpenIM refused a fresh {whose} token: errCode {}", a.envelope.err_code))
}

/// reqwest's error with its causes ("error sending request: connection refused").
fn error_chain(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A token as OpenIM gave it, with its end as a Unix time (what the fleet stores).
fn shared_token(resp: ops::TokenResp) -> SharedToken {
    let life = resp.expire_time_seconds.max(0);
    SharedToken { token: resp.token, exp: crate::auth::now_ms().saturating_add(life.saturating_mul(1000)), life }
}

/// OpenIM's secret as of now: `openim.secret_file` read again (a rotation needs no restart), or
/// the one configured. A file that cannot be read (or is empty) keeps the last secret read.
async fn current_secret(openim: &OpenIm) -> String {
    let inner = &openim.inner;
    if let Some(path) = &inner.settings.secret_file {
        match tokio::fs::read_to_string(path).await {
            Ok(s) if !s.trim().is_empty() => {
                let s = s.trim_end_matches(['\r', '\n']).to_owned();
                *inner.secret.write().unwrap_or_else(|e| e.into_inner()) = s.clone();
                return s;
            }
            Ok(_) => {
                tracing::warn!(file = %path.display(), "openim.secret_file is empty; the last secret read is used")
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "openim.secret_file cannot be read; the last secret read is used")
            }
        }
    }
    inner.secret.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Asks OpenIM for an admin token. OpenIM refusing it (a wrong `openim.secret`, an
/// `admin_user_id` it does not list) is imgate's own misconfiguration, never the caller's fault:
/// [`OpenImError::AuthFailed`] (502 `upstream_auth_failed`), logged at ERROR when it starts and at
/// INFO when it ends, and exported as `imgate_openim_auth_failed`.
async fn fetch_admin_token(ctx: &CallCtx, openim: &OpenIm, reason: &'static str) -> Result<SharedToken, OpenImError> {
    let s = &openim.inner.settings;
    openim.inner.metrics.openim_admin_token_fetches.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    let secret = current_secret(openim).await;
    let req = ops::GetAdminTokenReq { secret: &secret, user_id: &s.admin_user_id };
    let body = Bytes::from(serde_json::to_vec(&req).map_err(|e| OpenImError::InvalidCall(e.to_string()))?);
    let op = ops::GET_ADMIN_TOKEN;
    let answer = openim.exchange(ctx, op.path, op.path, false, &body, JSON, None).await?;
    let resp: Result<ops::TokenResp, _> = answer.into_data();
    let failed = &openim.inner.metrics.openim_auth_failed;
    match resp {
        Ok(resp) => {
            if failed.set(0) == 1 {
                tracing::info!("OpenIM accepts imgate's admin credentials again");
            }
            Ok(shared_token(resp))
        }
        Err(OpenImError::Api { code, msg, .. }) => {
            let why = format!("get_admin_token answered errCode {} ({msg})", code.code());
            if failed.set(1) == 0 {
                tracing::error!(
                    admin_user_id = %s.admin_user_id,
                    error = %why,
                    "OpenIM refuses imgate's admin credentials (openim.secret / openim.admin_user_id): every call that needs them fails with 502 upstream_auth_failed until they are fixed"
                );
            }
            Err(OpenImError::AuthFailed(why))
        }
        Err(e) => Err(e),
    }
}
