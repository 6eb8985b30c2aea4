//! What every request can reach: the validated config and the services built from it.
//!
//! [`build`] turns a [`Config`] into an [`AppState`], loading every file the config names and
//! reporting every problem at once (so `imgate check-config` finds them all). Handlers see the
//! state only through `Arc`s; nothing in it is mutated after start-up except the caches inside
//! the OpenIM client.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::audit::AuditLog;
use crate::auth::handshake::HandshakeLimits;
use crate::auth::AdminVerifier;
use crate::config::{resolve, Config, ConfigErrors};
use crate::fleet::kv::RedisKv;
use crate::fleet::limiter::RedisLimiter;
use crate::fleet::store::RedisStore;
use crate::fleet::tokens::SharedTokens;
use crate::fleet::Fleet;
use crate::keys::{self, GatewayKey};
use crate::openim::{OpenIm, OpenImSettings};
use crate::plugins::kv::{MemoryKv, PluginKv};
use crate::plugins::{HostIo, Plugins};
use crate::ratelimit::{DynLimiter, MemoryLimiter};
use crate::store::{DynStore, MemoryStore};
use crate::telemetry::Metrics;

/// The state every route layer and handler holds: one `Arc`, so that handing it to each stage of
/// a request costs one reference count, not one per service.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    pub config: Arc<Config>,
    pub openim: OpenIm,
    pub admin: Arc<AdminVerifier>,
    pub gateway_keys: Arc<Vec<GatewayKey>>,
    pub metrics: Arc<Metrics>,
    /// Permits for requests in flight (the load-shedding guard).
    pub in_flight: Arc<Semaphore>,
    /// Devices, sessions, nonces, tokens.
    pub store: DynStore,
    pub handshake_limits: Arc<HandshakeLimits>,
    /// Per-user limits of the user routes.
    pub limiter: DynLimiter,
    /// The audit log (in memory until [`AppState::open_audit`] opens the configured file).
    pub audit: AuditLog,
    /// Policy plugins and the chains of the routes that use them.
    pub plugins: Arc<Plugins>,
    /// Live relayed WebSockets (so revocation can end them).
    pub ws: Arc<crate::ws::Registry>,
    /// Live direct-mode grants (`[ws] direct_mode`).
    pub direct: Arc<crate::ws::direct::Grants>,
    /// The Redis backend shared with the other instances (`[store] backend = "redis"`).
    pub fleet: Option<Arc<Fleet>>,
}

impl AppState {
    /// Opens `[audit] file` (relative to `base_dir`), continuing its chain; a corrupt file is an
    /// error, and so is a file another imgate holds (locked for the log's lifetime). Either way
    /// records carry `[store] instance_id`, and the head's seq is exported as the
    /// `imgate_audit_head_seq` gauge.
    pub async fn open_audit(self, base_dir: &Path) -> Result<AppState, ConfigErrors> {
        let mut services = Arc::try_unwrap(self.0)
            .map_err(|_| ConfigErrors(vec!["audit.file: the audit log is opened once, before serving".into()]))?;
        let instance = services.config.store.instance_id();
        if let Some(file) = &services.config.audit.file {
            let path = resolve(base_dir, file);
            services.audit = AuditLog::open(&path, &instance)
                .await
                .map_err(|e| ConfigErrors(vec![format!("audit.file: {}: {e}", path.display())]))?;
        } else {
            services.audit = AuditLog::memory_as(&instance);
        }
        let this = AppState(Arc::new(services));
        this.audit.export_head_seq(this.metrics.audit_head_seq.clone());
        if let Some(m) = &this.plugins.manager {
            m.set_audit(this.audit.clone());
        }
        Ok(this)
    }
}

/// What a caller embedding the gateway may supply instead of the defaults.
#[derive(Default, Clone)]
pub struct BuildOptions {
    /// The plugins' key-value store (default: in memory).
    pub plugin_kv: Option<Arc<dyn PluginKv>>,
    /// The config file, watched for plugin changes when `[plugins] watch` is on.
    pub config_file: Option<std::path::PathBuf>,
    /// `imgate check-config`: load and check everything, write nothing (plugins are compiled and
    /// initialised, but neither stored nor cached, and nothing is watched).
    pub check_only: bool,
}

/// Builds the state, resolving relative paths against `base_dir` (the config file's folder).
pub fn build(config: Config, base_dir: &Path) -> Result<AppState, ConfigErrors> {
    build_with(config, base_dir, BuildOptions::default())
}

/// [`build`] with [`BuildOptions`].
pub fn build_with(config: Config, base_dir: &Path, options: BuildOptions) -> Result<AppState, ConfigErrors> {
    let mut errors = Vec::new();
    let secret = match (&config.openim.secret, &config.openim.secret_file) {
        (Some(s), _) => Some(s.clone()),
        (None, Some(file)) => {
            let path = resolve(base_dir, file);
            match std::fs::read_to_string(&path) {
                Ok(s) if !s.trim().is_empty() => Some(s.trim_end_matches(['\r', '\n']).to_owned()),
                Ok(_) => {
                    errors.push(format!("openim.secret_file: {} is empty", path.display()));
                    None
                }
                Err(e) => {
                    errors.push(format!("openim.secret_file: {}: {e}", path.display()));
                    None
                }
            }
        }
        (None, None) => {
            errors.push("openim.secret / openim.secret_file: one is required".into());
            None
        }
    };
    let admin = AdminVerifier::from_config(&config.admin.issuer, base_dir).map_err(|es| errors.extend(es)).ok();
    let gateway_keys = keys::load(&config.gateway.keys, base_dir).map_err(|es| errors.extend(es)).ok();
    let metrics = Arc::new(Metrics::new());
    // Connecting waits for nothing: imgate starts while Redis is down, and is not ready until
    // Redis answers (`/readyz`).
    let fleet = if config.store.is_redis() {
        let url = match (&config.store.url, &config.store.url_file) {
            (Some(u), _) => Some(u.clone()),
            (None, Some(file)) => {
                let path = resolve(base_dir, file);
                match std::fs::read_to_string(&path) {
                    Ok(s) if crate::config::is_redis_url(s.trim()) => Some(s.trim().to_owned()),
                    Ok(_) => {
                        errors.push(format!(
                            "store.url_file: {} does not hold a redis:// or rediss:// URL",
                            path.display()
                        ));
                        None
                    }
                    Err(e) => {
                        errors.push(format!("store.url_file: {}: {e}", path.display()));
                        None
                    }
                }
            }
            (None, None) => None,
        };
        match url {
            // `imgate check-config` checks the URL and connects to nothing.
            Some(url) if options.check_only => {
                let _ = Fleet::check_url(&url).map_err(|e| errors.push(e));
                None
            }
            Some(url) => Fleet::connect(&config.store, &url, &metrics).map_err(|e| errors.push(e)).ok(),
            None => None,
        }
    } else {
        None
    };
    let openim = secret.and_then(|secret| {
        let o = &config.openim;
        let settings = OpenImSettings {
            api_url: o.api_url.clone(),
            admin_user_id: o.admin_user_id.clone(),
            secret,
            secret_file: o.secret_file.as_ref().filter(|_| o.secret.is_none()).map(|f| resolve(base_dir, f)),
            timeout: Duration::from_millis(o.timeout_ms),
            read_retries: o.read_retries,
            refresh_before: Duration::from_secs(o.admin_token_refresh_before_secs),
            max_response_bytes: o.max_response_bytes,
            membership_cache: Duration::from_millis(o.membership_cache_ms),
            privileged: crate::openim::PrivilegedSettings {
                admin_user_ids: o.admin_user_ids(),
                allow_user_ids: o.privileged.allow_user_ids.clone(),
                level_cache: Duration::from_millis(o.privileged.level_cache_ms),
            },
            breaker: o.breaker.settings(),
        };
        let openim = OpenIm::new(settings, metrics.clone()).map_err(|e| errors.push(format!("openim: {e}"))).ok()?;
        if let Some(fleet) = &fleet {
            openim.share_tokens(Arc::new(SharedTokens::new(fleet.clone())));
        }
        Some(openim)
    });
    let kv: Arc<dyn PluginKv> = match (&options.plugin_kv, &fleet) {
        (Some(kv), _) => kv.clone(),
        (None, Some(fleet)) => Arc::new(RedisKv::new(fleet.clone())),
        (None, None) => Arc::new(MemoryKv::new()),
    };
    let plugins = openim.as_ref().and_then(|openim| {
        let io = HostIo::new(openim.clone(), kv.clone());
        let mode = if options.check_only {
            crate::plugins::LoadMode::CheckOnly
        } else {
            crate::plugins::LoadMode::Serve { config_file: options.config_file.as_deref() }
        };
        Plugins::load(&config, base_dir, mode, io, metrics.clone()).map_err(|es| errors.extend(es)).ok()
    });
    match (openim, admin, gateway_keys, plugins) {
        (Some(openim), Some(admin), Some(gateway_keys), Some(plugins)) if errors.is_empty() => {
            Ok(AppState(Arc::new(Services {
                plugins: Arc::new(plugins),
                ws: Arc::new(crate::ws::Registry::with_capacity(config.ws.max_connections)),
                direct: Arc::default(),
                store: match &fleet {
                    Some(f) => Arc::new(RedisStore::new(f.clone())),
                    None => Arc::new(MemoryStore::new()),
                },
                audit: AuditLog::memory(),
                limiter: match &fleet {
                    Some(f) => Arc::new(RedisLimiter::new(f.clone(), &config.rate_limits)),
                    None => Arc::new(MemoryLimiter::new(&config.rate_limits)),
                },
                fleet,
                handshake_limits: Arc::new(HandshakeLimits::new(
                    config.auth.handshakes_per_address_per_sec,
                    config.auth.handshake_burst_per_address,
                    config.auth.handshakes_per_sec,
                )),
                in_flight: Arc::new(Semaphore::new(config.server.max_concurrent_requests)),
                config: Arc::new(config),
                openim,
                admin: Arc::new(admin),
                gateway_keys: Arc::new(gateway_keys),
                metrics,
            })))
        }
        _ => Err(ConfigErrors(errors)),
    }
}
