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

use crate::auth::{handshake, signed};
use crate::plugins::chain as plugin_chain;
use crate::ratelimit;
use crate::state::AppState;

pub fn router(state: &AppState) -> Router<AppState> {
    let on = |name: &str, filter: MethodFilter| Op { state, name: name.to_owned(), filter };
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
        .route("/v1/admin/health", on("admin.health", MethodFilter::GET).to(admin::health))
        // Not a plugin-chain route: nothing may rewrite the anchor the audit trail is checked against.
        .route("/v1/admin/audit/head", get(admin::audit_head))
        .route("/v1/admin/users", on("admin.users.register", MethodFilter::POST).to(admin::register_users))
        .route(
            "/v1/admin/users/{user_id}/devices",
            on("admin.devices.enroll", MethodFilter::POST)
                .to(devices::enroll)
                .merge(on("admin.devices.list", MethodFilter::GET).to(devices::list)),
        )
        .route(
            "/v1/admin/users/{user_id}/devices/{device_id}",
            on("admin.devices.delete", MethodFilter::DELETE).to(devices::delete),
        )
        .route(
            "/v1/admin/users/{user_id}/revoke",
            on("admin.users.revoke", MethodFilter::POST).to(devices::revoke_user),
        )
        .route(
            "/v1/admin/sessions/{session_id}",
            on("admin.sessions.revoke", MethodFilter::DELETE).to(devices::revoke_session),
        )
        .route("/v1/admin/openim/{*path}", on("admin.openim", MethodFilter::POST).to(admin::openim_passthrough))
        .route("/openim/{*path}", post(compat::handle))
        .route("/v1/admin/plugins", get(plugin_admin::list))
        .route("/v1/admin/plugins/{name}", get(plugin_admin::status))
        .route("/v1/admin/plugins/{name}/activate", post(plugin_admin::activate))
        .route("/v1/admin/plugins/{name}/rollback", post(plugin_admin::rollback))
        .merge(user)
        .merge(table_router(state))
        .layer(RequestBodyLimitLayer::new(state.config.server.max_body_bytes))
        // Components are larger than API bodies: the upload route has the component cap instead.
        .merge(Router::new().route("/v1/admin/plugins/{name}/versions", post(plugin_admin::upload)).layer(
            RequestBodyLimitLayer::new(
                state.config.server.max_body_bytes.max(state.config.plugins.max_component_bytes),
            ),
        ))
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

/// One method of a built-in route, named so that `[[route_plugins]]` can give it a chain.
struct Op<'a> {
    state: &'a AppState,
    name: String,
    filter: MethodFilter,
}

impl Op<'_> {
    /// The handler, behind the route's plugin chain (looked up per request in the serving snapshot).
    fn to<H, T>(self, handler: H) -> MethodRouter<AppState>
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        // With plugins configured every named route may get a chain by a reload; without, none can.
        if self.state.plugins.runtime.is_some() {
            let route: Arc<str> = Arc::from(self.name.as_str());
            let chain = from_fn_with_state((self.state.clone(), route), plugin_chain::layer);
            MethodRouter::new().on(self.filter, handler.layer(chain))
        } else {
            MethodRouter::new().on(self.filter, handler)
        }
    }
}
