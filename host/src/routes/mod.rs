//! The route table: every path imgate answers, and nothing else (unknown paths are 404).
//!
//! `/v1` is imgate's own, versioned API: its request and response shapes are imgate's, not
//! OpenIM's. Admin routes sit under `/v1/admin` and each names the scope it needs.

mod admin;
pub mod compat;
mod devices;
mod engine;
pub mod objects;
mod plugin_admin;
mod public;
pub mod table;
mod user;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Extension;

use crate::auth::Caller;
use crate::openim::CallCtx;
use crate::telemetry::RequestId;
use table::RouteSpec;

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;

use crate::auth::{handshake, scopes, signed};
use crate::plugins::chain as plugin_chain;
use crate::ratelimit;
use crate::state::AppState;

pub fn router(state: &AppState) -> Router<AppState> {
    let on = |name: &str, filter: MethodFilter| Op { state, name: name.to_owned(), filter, auth: OpAuth::Outer };
    // Admin routes: the admin JWT and the route's scope are checked first (`auth::admin`), then
    // the `admin` rate-limit class, then the plugin chain, then the handler.
    let admin = |name: &str, filter: MethodFilter, scope: &'static str| Op {
        state,
        name: name.to_owned(),
        filter,
        auth: OpAuth::Admin(scope),
    };
    // User routes: every request must be a valid signed request (client-auth §4).
    let user = Router::new()
        .route("/v1/me", on("me", MethodFilter::GET).to(user::me))
        .route("/v1/auth/token", on("auth.token", MethodFilter::POST).to(user::token))
        .route("/v1/auth/logout", on("auth.logout", MethodFilter::POST).to(user::logout))
        // Route layers run bottom-up: authenticate, then rate-limit by the caller's user id.
        .route_layer(from_fn_with_state((state.clone(), Arc::from("default")), ratelimit::limit_user))
        .route_layer(from_fn_with_state(state.clone(), signed::require));
    Router::new()
        .route("/healthz", get(public::liveness))
        .route("/v1/auth/gateway-key", get(public::gateway_key))
        // The handshake body is capped at 4 KiB before it is read (client-auth §3), tighter than the global cap.
        .route(
            "/v1/auth/handshake",
            post(handshake::handle).layer(axum::extract::DefaultBodyLimit::max(handshake::MAX_BODY)),
        )
        .route("/v1/admin/health", admin("admin.health", MethodFilter::GET, scopes::ADMIN).to(admin::health))
        // Not a plugin-chain route (not in `plugins::BUILTIN_ROUTES`): nothing may rewrite the
        // anchor the audit trail is checked against.
        .route(
            "/v1/admin/audit/head",
            admin("admin.audit.head", MethodFilter::GET, scopes::ADMIN).to(admin::audit_head),
        )
        .route(
            "/v1/admin/users",
            admin("admin.users.register", MethodFilter::POST, scopes::USERS_WRITE).to(admin::register_users),
        )
        .route(
            "/v1/admin/users/{user_id}/devices",
            admin("admin.devices.enroll", MethodFilter::POST, scopes::DEVICES_WRITE)
                .to(devices::enroll)
                .merge(admin("admin.devices.list", MethodFilter::GET, scopes::DEVICES_WRITE).to(devices::list)),
        )
        .route(
            "/v1/admin/users/{user_id}/devices/{device_id}",
            admin("admin.devices.delete", MethodFilter::DELETE, scopes::DEVICES_WRITE).to(devices::delete),
        )
        .route(
            "/v1/admin/users/{user_id}/revoke",
            admin("admin.users.revoke", MethodFilter::POST, scopes::SESSIONS_REVOKE).to(devices::revoke_user),
        )
        .route(
            "/v1/admin/sessions/{session_id}",
            admin("admin.sessions.revoke", MethodFilter::DELETE, scopes::SESSIONS_REVOKE).to(devices::revoke_session),
        )
        .route(
            "/v1/admin/openim/{*path}",
            admin("admin.openim", MethodFilter::POST, scopes::OPENIM_CALL).to(admin::openim_passthrough),
        )
        .merge(compat_router(state))
        .route(
            "/v1/admin/plugins",
            admin("admin.plugins.list", MethodFilter::GET, scopes::ADMIN).to(plugin_admin::list),
        )
        .route(
            "/v1/admin/plugins/{name}",
            admin("admin.plugins.status", MethodFilter::GET, scopes::ADMIN).to(plugin_admin::status),
        )
        .route(
            "/v1/admin/plugins/{name}/activate",
            admin("admin.plugins.activate", MethodFilter::POST, scopes::PLUGINS_WRITE).to(plugin_admin::activate),
        )
        .route(
            "/v1/admin/plugins/{name}/rollback",
            admin("admin.plugins.rollback", MethodFilter::POST, scopes::PLUGINS_WRITE).to(plugin_admin::rollback),
        )
        .merge(user)
        .merge(table_router(state))
        .layer(RequestBodyLimitLayer::new(state.config.server.max_body_bytes))
        // Components are larger than API bodies: the upload route has the component cap instead.
        .merge(
            Router::new()
                .route(
                    "/v1/admin/plugins/{name}/versions",
                    admin("admin.plugins.upload", MethodFilter::POST, scopes::PLUGINS_WRITE).to(plugin_admin::upload),
                )
                .layer(RequestBodyLimitLayer::new(
                    state.config.server.max_body_bytes.max(state.config.plugins.max_component_bytes),
                )),
        )
}

/// The `[[route]]` table as axum routes: signed requests only; each route rate-limited by its class.
fn table_router(state: &AppState) -> Router<AppState> {
    let mut by_path: BTreeMap<String, Vec<Arc<RouteSpec>>> = BTreeMap::new();
    for r in &state.config.route {
        by_path.entry(r.path.clone()).or_default().push(Arc::new(r.clone()));
    }
    let mut router = Router::new();
    for (path, specs) in by_path {
        let mut methods = MethodRouter::new();
        for spec in specs {
            // Validated at start-up: the method is one of GET/POST/PUT/PATCH/DELETE.
            let Some(filter) =
                Method::from_bytes(spec.method.as_bytes()).ok().and_then(|m| MethodFilter::try_from(m).ok())
            else {
                continue;
            };
            let class: Arc<str> = Arc::from(spec.class.as_str());
            let name = spec.name.clone();
            let handler = move |State(st): State<AppState>,
                                Extension(rid): Extension<RequestId>,
                                Extension(caller): Extension<Caller>,
                                params: RawPathParams,
                                RawQuery(query): RawQuery,
                                body: Bytes| {
                let spec = spec.clone();
                async move {
                    let params = params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
                    engine::run(&st, &spec, CallCtx::for_request(&rid), &caller, params, query, body).await
                }
            };
            // Layers run outside in: rate limit, then the plugin chain, then the route.
            let limit = from_fn_with_state((state.clone(), class), ratelimit::limit_user);
            methods = if state.plugins.runtime.is_some() {
                let route: Arc<str> = Arc::from(name.as_str());
                let chain = from_fn_with_state((state.clone(), route), plugin_chain::layer);
                methods.on(filter, handler.layer(chain).layer(limit))
            } else {
                methods.on(filter, handler.layer(limit))
            };
        }
        router = router.route(&path, methods);
    }
    router.route_layer(from_fn_with_state(state.clone(), signed::require))
}

/// The OpenIM-compatible surface: one route per allow-listed operation (named
/// `openim.<group>.<operation>` for `[[route_plugins]]`), and every other `/openim/` path
/// refused after the same authentication.
fn compat_router(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for path in compat::allowed_paths() {
        let op = Op { state, name: compat::route_name(path), filter: MethodFilter::POST, auth: OpAuth::Bearer };
        router = router.route(&format!("/openim{path}"), op.to(compat::handle));
    }
    let unlisted = post(compat::unlisted).layer(from_fn_with_state(state.clone(), compat::authenticate));
    router.route("/openim/{*path}", unlisted)
}

/// How a built-in route authenticates (a stage outside the rest of the route).
enum OpAuth {
    /// By a layer of the router it is merged into (the user router's signed requests).
    Outer,
    /// Admin JWT with this scope (`auth::admin`), then the `admin` rate-limit class.
    Admin(&'static str),
    /// A bearer token on the compat surface (`compat::authenticate`), then the `default` class,
    /// then the body decoded canonically (`compat::canonicalize`) for the plugins.
    Bearer,
}

/// One method of a built-in route, named so that `[[route_plugins]]` can give it a chain (the
/// names in `plugins::BUILTIN_ROUTES`), and, on admin routes, the scope its admin JWT needs.
struct Op<'a> {
    state: &'a AppState,
    name: String,
    filter: MethodFilter,
    auth: OpAuth,
}

impl Op<'_> {
    /// The handler behind the route's stages, outermost first: admin authentication (admin
    /// routes), the `admin` rate-limit class (admin routes), the plugin chain (looked up per
    /// request in the serving snapshot), the handler. User routes get authentication and their
    /// rate limit as route layers of the user router.
    fn to<H, T>(self, handler: H) -> MethodRouter<AppState>
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        // With plugins configured every named route may get a chain by a reload; without, none can.
        // Stages are route layers: a wrong method is 405 before any of them runs.
        let named = crate::plugins::BUILTIN_ROUTES.contains(&self.name.as_str()) || compat::is_route_name(&self.name);
        let chained = self.state.plugins.runtime.is_some() && named;
        let method = if chained {
            let route: Arc<str> = Arc::from(self.name.as_str());
            let chain = from_fn_with_state((self.state.clone(), route), plugin_chain::layer);
            MethodRouter::new().on(self.filter, handler.layer(chain))
        } else {
            MethodRouter::new().on(self.filter, handler)
        };
        let limit = |class: &str| {
            let class: Arc<str> = Arc::from(class);
            from_fn_with_state((self.state.clone(), class), ratelimit::limit_user)
        };
        match self.auth {
            OpAuth::Outer => method,
            OpAuth::Admin(scope) => method
                .route_layer(limit("admin"))
                .route_layer(from_fn_with_state((self.state.clone(), scope), crate::auth::admin)),
            OpAuth::Bearer => method
                .route_layer(axum::middleware::from_fn(compat::canonicalize))
                .route_layer(limit("default"))
                .route_layer(from_fn_with_state(self.state.clone(), compat::authenticate)),
        }
    }
}
