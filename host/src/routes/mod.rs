//! The route table: every path imgate answers, and nothing else (unknown paths are 404).
//!
//! `/v1` is imgate's own, versioned API: its request and response shapes are imgate's, not
//! OpenIM's. Admin routes sit under `/v1/admin` and each names the scope it needs.

mod admin;
pub mod compat;
mod devices;
pub mod engine;
pub mod objects;
mod plugin_admin;
mod public;
pub mod table;
mod user;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawPathParams, RawQuery, State};
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use axum::Extension;

use crate::auth::Caller;
use crate::openim::CallCtx;
use crate::telemetry::RequestId;
use table::RouteSpec;

use axum::middleware::from_fn_with_state;
use axum::routing::post;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;

use crate::auth::{handshake, scopes, signed};
use crate::plugins::chain as plugin_chain;
use crate::ratelimit;
use crate::state::AppState;

/// How a route authenticates: the outermost stage of every route that is not public. Nothing of
/// the route (rate limit, plugins, handler) runs for a request this stage refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No credentials: liveness, the gateway key, the handshake.
    Public,
    /// A signed request (client-auth §4); the caller is the session's user.
    Signed,
    /// An admin JWT carrying this scope (client-auth §7, `auth::admin`).
    Admin(&'static str),
    /// An OpenIM-style bearer token minted by imgate (client-auth §5, `compat::authenticate`);
    /// refusals in OpenIM's envelope.
    Bearer,
    /// A WebSocket upgrade with OpenIM's handshake query and a bearer token in it
    /// (`ws::auth::sdk`); refusals as OpenIM's msg gateway answers them.
    WsBearer,
    /// A WebSocket upgrade with a single-use ticket (`ws::auth::ticket`).
    Ticket,
}

impl std::fmt::Display for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Public => f.write_str("public"),
            Auth::Signed => f.write_str("signed"),
            Auth::Admin(scope) => write!(f, "admin({scope})"),
            Auth::Bearer => f.write_str("bearer"),
            Auth::WsBearer => f.write_str("ws-bearer"),
            Auth::Ticket => f.write_str("ws-ticket"),
        }
    }
}

/// The body cap a route has (the global `server.max_body_bytes` unless said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyCap {
    /// `server.max_body_bytes`.
    Default,
    /// 4 KiB, checked before the body is read (client-auth §3), inside the default cap.
    Handshake,
    /// The larger of `server.max_body_bytes` and `plugins.max_component_bytes` (plugin uploads).
    Component,
}

/// What serves a route.
#[derive(Debug, Clone)]
enum Serve {
    Builtin(H),
    /// A `[[route]]` of the table, compiled once, run by `engine.rs`.
    Table(Arc<engine::CompiledRoute>),
    /// An allow-listed OpenIM operation (`compat::handle`), its body decoded canonically first.
    Compat,
    /// Every other `/openim/` path: refused (after authentication) by `compat::unlisted`.
    CompatUnlisted,
}

/// The handlers of the built-in routes (a closed set: the router's `match` is exhaustive).
#[derive(Debug, Clone, Copy)]
enum H {
    Liveness,
    Readiness,
    GatewayKey,
    Handshake,
    Me,
    Token,
    Logout,
    AdminHealth,
    AuditHead,
    RegisterUsers,
    EnrollDevice,
    ListDevices,
    DeleteDevice,
    RevokeUser,
    RevokeSession,
    OpenimPassthrough,
    PluginsList,
    PluginStatus,
    PluginActivate,
    PluginRollback,
    PluginUpload,
    WsTicket,
    WsCredentials,
    WsRelay,
}

/// One route as data. The router is assembled from these and nothing else, so what
/// [`describe_routes`] prints (and the snapshot test holds) is what serves.
#[derive(Debug, Clone)]
pub struct RouteDescriptor {
    pub method: Method,
    /// The axum path, `{param}` segments included.
    pub path: String,
    /// The route's name: what `[[route_plugins]]`, the logs and the audit trail call it.
    pub name: String,
    pub auth: Auth,
    /// The rate-limit class, applied after authentication (none on public routes).
    pub class: Option<String>,
    /// Whether a plugin chain may run on it (once plugins are configured).
    pub chain: bool,
    pub body: BodyCap,
    serve: Serve,
}

/// The built-in routes: (method, path, name, auth, plugin chain allowed, handler). Admin routes
/// are in the `admin` rate-limit class, signed routes in `default`. Plugin management and the
/// audit head take no chain: nothing may rewrite the anchor the audit trail is checked against,
/// nor stand between an operator and a broken plugin.
const BUILTIN: &[(Method, &str, &str, Auth, bool, H)] = &[
    (Method::GET, "/healthz", "public.liveness", Auth::Public, false, H::Liveness),
    (Method::GET, "/readyz", "public.readiness", Auth::Public, false, H::Readiness),
    (Method::GET, "/v1/auth/gateway-key", "public.gateway_key", Auth::Public, false, H::GatewayKey),
    (Method::POST, "/v1/auth/handshake", "auth.handshake", Auth::Public, false, H::Handshake),
    (Method::GET, "/v1/me", "me", Auth::Signed, true, H::Me),
    (Method::POST, "/v1/auth/token", "auth.token", Auth::Signed, true, H::Token),
    (Method::POST, "/v1/auth/logout", "auth.logout", Auth::Signed, true, H::Logout),
    (Method::POST, "/v1/ws/ticket", "ws.ticket", Auth::Signed, true, H::WsTicket),
    (Method::POST, "/v1/ws/credentials", "ws.credentials", Auth::Signed, true, H::WsCredentials),
    (Method::GET, "/v1/ws", "ws.native", Auth::Ticket, false, H::WsRelay),
    (Method::GET, "/openim/ws", "ws.openim", Auth::WsBearer, false, H::WsRelay),
    (Method::GET, "/v1/admin/health", "admin.health", Auth::Admin(scopes::ADMIN), true, H::AdminHealth),
    (Method::GET, "/v1/admin/audit/head", "admin.audit.head", Auth::Admin(scopes::ADMIN), false, H::AuditHead),
    (Method::POST, "/v1/admin/users", "admin.users.register", Auth::Admin(scopes::USERS_WRITE), true, H::RegisterUsers),
    (
        Method::POST,
        "/v1/admin/users/{user_id}/devices",
        "admin.devices.enroll",
        Auth::Admin(scopes::DEVICES_WRITE),
        true,
        H::EnrollDevice,
    ),
    (
        Method::GET,
        "/v1/admin/users/{user_id}/devices",
        "admin.devices.list",
        Auth::Admin(scopes::DEVICES_WRITE),
        true,
        H::ListDevices,
    ),
    (
        Method::DELETE,
        "/v1/admin/users/{user_id}/devices/{device_id}",
        "admin.devices.delete",
        Auth::Admin(scopes::DEVICES_WRITE),
        true,
        H::DeleteDevice,
    ),
    (
        Method::POST,
        "/v1/admin/users/{user_id}/revoke",
        "admin.users.revoke",
        Auth::Admin(scopes::SESSIONS_REVOKE),
        true,
        H::RevokeUser,
    ),
    (
        Method::DELETE,
        "/v1/admin/sessions/{session_id}",
        "admin.sessions.revoke",
        Auth::Admin(scopes::SESSIONS_REVOKE),
        true,
        H::RevokeSession,
    ),
    (
        Method::POST,
        "/v1/admin/openim/{*path}",
        "admin.openim",
        Auth::Admin(scopes::OPENIM_CALL),
        true,
        H::OpenimPassthrough,
    ),
    (Method::GET, "/v1/admin/plugins", "admin.plugins.list", Auth::Admin(scopes::ADMIN), false, H::PluginsList),
    (
        Method::GET,
        "/v1/admin/plugins/{name}",
        "admin.plugins.status",
        Auth::Admin(scopes::ADMIN),
        false,
        H::PluginStatus,
    ),
    (
        Method::POST,
        "/v1/admin/plugins/{name}/activate",
        "admin.plugins.activate",
        Auth::Admin(scopes::PLUGINS_WRITE),
        false,
        H::PluginActivate,
    ),
    (
        Method::POST,
        "/v1/admin/plugins/{name}/rollback",
        "admin.plugins.rollback",
        Auth::Admin(scopes::PLUGINS_WRITE),
        false,
        H::PluginRollback,
    ),
    (
        Method::POST,
        "/v1/admin/plugins/{name}/versions",
        "admin.plugins.upload",
        Auth::Admin(scopes::PLUGINS_WRITE),
        false,
        H::PluginUpload,
    ),
];

/// The names of the built-in routes a `[[route_plugins]]` chain may name.
pub fn builtin_chain_routes() -> impl Iterator<Item = &'static str> {
    // `ws.send_msg`: WebSocket sends whose content type has no REST twin (`ws::policy`).
    BUILTIN.iter().filter(|b| b.4).map(|b| b.2).chain([crate::ws::WS_SEND_ROUTE])
}

/// Whether `name` is a built-in route's name (a `[[route]]` may not take one).
pub fn is_builtin_route(name: &str) -> bool {
    BUILTIN.iter().any(|b| b.2 == name)
}

/// Every route imgate serves with this `[[route]]` table: the built-in ones, the table's, the
/// OpenIM-compatible operations and the `/openim/` catch-all.
pub fn descriptors(table: &[RouteSpec]) -> Vec<RouteDescriptor> {
    let mut out = Vec::new();
    for (method, path, name, auth, chain, h) in BUILTIN {
        let (path, name, auth, chain, h) = (*path, *name, *auth, *chain, *h);
        let class = match auth {
            Auth::Public => None,
            Auth::Admin(_) => Some("admin".to_owned()),
            Auth::Signed | Auth::Bearer | Auth::WsBearer | Auth::Ticket => Some("default".to_owned()),
        };
        let body = match h {
            H::Handshake => BodyCap::Handshake,
            H::PluginUpload => BodyCap::Component,
            _ => BodyCap::Default,
        };
        out.push(RouteDescriptor {
            method: method.clone(),
            path: path.to_owned(),
            name: name.to_owned(),
            auth,
            class,
            chain,
            body,
            serve: Serve::Builtin(h),
        });
    }
    for spec in table {
        // Validated at start-up: the method is one of GET/POST/PUT/PATCH/DELETE.
        let Ok(method) = Method::from_bytes(spec.method.as_bytes()) else { continue };
        // `table::validate` refused, at start-up, every route whose strings do not parse.
        let compiled = match engine::CompiledRoute::compile(spec) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::error!(route = %spec.name, error = %e, "route not served");
                continue;
            }
        };
        out.push(RouteDescriptor {
            method,
            path: spec.path.clone(),
            name: spec.name.clone(),
            auth: Auth::Signed,
            class: Some(spec.class.clone()),
            chain: true,
            body: BodyCap::Default,
            serve: Serve::Table(compiled),
        });
    }
    for path in compat::allowed_paths() {
        out.push(RouteDescriptor {
            method: Method::POST,
            path: format!("/openim{path}"),
            name: compat::route_name(path),
            auth: Auth::Bearer,
            class: Some("default".to_owned()),
            chain: true,
            body: BodyCap::Default,
            serve: Serve::Compat,
        });
    }
    out.push(RouteDescriptor {
        method: Method::POST,
        path: "/openim/{*path}".to_owned(),
        name: "openim.unlisted".to_owned(),
        auth: Auth::Bearer,
        class: None,
        chain: false,
        body: BodyCap::Default,
        serve: Serve::CompatUnlisted,
    });
    out
}

/// The routes, one line each: method, path, name, auth, class, chain, body cap.
pub fn describe_routes(routes: &[RouteDescriptor]) -> String {
    let mut out = String::new();
    for r in routes {
        out.push_str(&format!(
            "{:<6} {:<58} {:<48} auth={:<24} class={:<8} chain={:<3} body={:?}\n",
            r.method.as_str(),
            r.path,
            r.name,
            r.auth.to_string(),
            r.class.as_deref().unwrap_or("-"),
            if r.chain { "yes" } else { "no" },
            r.body
        ));
    }
    out
}

/// Assembles the router from [`descriptors`]. Every route's stages, outermost first:
/// authentication (by [`Auth`]), its rate-limit class, the canonical body (compat operations),
/// the plugin chain (looked up per request in the serving snapshot), the handler. Stages are
/// route layers, so a wrong method is 405 before any of them runs.
pub fn router(state: &AppState) -> Router<AppState> {
    let mut default = Router::new();
    let mut component = Router::new();
    // `/openim/*` operations: CORS answers for the configured browser origins, outside auth.
    let mut openim = Router::new();
    for d in descriptors(&state.config.route) {
        let Ok(filter) = MethodFilter::try_from(d.method.clone()) else { continue };
        let method = match &d.serve {
            Serve::Builtin(h) => builtin(*h, filter),
            Serve::Table(spec) => table_handler(spec.clone(), filter),
            Serve::Compat => MethodRouter::new().on(filter, compat::handle),
            // The catch-all authenticates before anything, a wrong method included.
            Serve::CompatUnlisted => {
                let unlisted = post(compat::unlisted).layer(from_fn_with_state(state.clone(), compat::authenticate));
                openim = openim.route(&d.path, unlisted);
                continue;
            }
        };
        let method = stages(state, &d, method);
        if matches!(d.serve, Serve::Compat) {
            openim = openim.route(&d.path, method);
            continue;
        }
        match d.body {
            BodyCap::Component => component = component.route(&d.path, method),
            BodyCap::Default => default = default.route(&d.path, method),
            BodyCap::Handshake => {
                default =
                    default.route(&d.path, method.layer(axum::extract::DefaultBodyLimit::max(handshake::MAX_BODY)))
            }
        }
    }
    if let Some(cors) = cors(&state.config.browser.allowed_origins) {
        openim = openim.layer(cors);
    }
    let default = default.merge(openim);
    default.layer(RequestBodyLimitLayer::new(state.config.server.max_body_bytes)).merge(component.layer(
        RequestBodyLimitLayer::new(state.config.server.max_body_bytes.max(state.config.plugins.max_component_bytes)),
    ))
}

/// CORS for browser builds of OpenIM SDKs on `/openim/*` (`[browser] allowed_origins`), as
/// OpenIM answers it (contract §1.1: any method and header, no credentials, max-age 172800) but
/// only for the listed origins; `None` when none is listed.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| axum::http::HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers(AllowHeaders::mirror_request())
            .max_age(std::time::Duration::from_secs(172_800)),
    )
}

/// The stages of one route around its handler (route layers: the last added runs first).
fn stages(state: &AppState, d: &RouteDescriptor, method: MethodRouter<AppState>) -> MethodRouter<AppState> {
    let mut m = method;
    // With plugins configured every chain route may get a chain by a reload; without, none can.
    if d.chain && state.plugins.runtime.is_some() {
        let route: Arc<str> = Arc::from(d.name.as_str());
        m = m.route_layer(from_fn_with_state((state.clone(), route), plugin_chain::layer));
    }
    if matches!(d.serve, Serve::Compat) {
        m = m.route_layer(axum::middleware::from_fn(compat::canonicalize));
    }
    if let Some(class) = &d.class {
        let class: Arc<str> = Arc::from(class.as_str());
        m = m.route_layer(from_fn_with_state((state.clone(), class), ratelimit::limit_user));
    }
    match d.auth {
        Auth::Public => m,
        Auth::Signed => {
            let class: Option<Arc<str>> = d.class.as_deref().map(Arc::from);
            m.route_layer(from_fn_with_state((state.clone(), class), signed::require))
        }
        Auth::Admin(scope) => m.route_layer(from_fn_with_state((state.clone(), scope), crate::auth::admin)),
        Auth::Bearer => m.route_layer(from_fn_with_state(state.clone(), compat::authenticate)),
        Auth::WsBearer => m.route_layer(from_fn_with_state(state.clone(), crate::ws::auth::sdk)),
        Auth::Ticket => m.route_layer(from_fn_with_state(state.clone(), crate::ws::auth::ticket)),
    }
}

fn builtin(h: H, filter: MethodFilter) -> MethodRouter<AppState> {
    let m = MethodRouter::new();
    match h {
        H::Liveness => m.on(filter, public::liveness),
        H::Readiness => m.on(filter, public::readiness),
        H::GatewayKey => m.on(filter, public::gateway_key),
        H::Handshake => m.on(filter, handshake::handle),
        H::Me => m.on(filter, user::me),
        H::Token => m.on(filter, user::token),
        H::Logout => m.on(filter, user::logout),
        H::AdminHealth => m.on(filter, admin::health),
        H::AuditHead => m.on(filter, admin::audit_head),
        H::RegisterUsers => m.on(filter, admin::register_users),
        H::EnrollDevice => m.on(filter, devices::enroll),
        H::ListDevices => m.on(filter, devices::list),
        H::DeleteDevice => m.on(filter, devices::delete),
        H::RevokeUser => m.on(filter, devices::revoke_user),
        H::RevokeSession => m.on(filter, devices::revoke_session),
        H::OpenimPassthrough => m.on(filter, admin::openim_passthrough),
        H::PluginsList => m.on(filter, plugin_admin::list),
        H::PluginStatus => m.on(filter, plugin_admin::status),
        H::PluginActivate => m.on(filter, plugin_admin::activate),
        H::PluginRollback => m.on(filter, plugin_admin::rollback),
        H::PluginUpload => m.on(filter, plugin_admin::upload),
        H::WsTicket => m.on(filter, crate::ws::auth::mint),
        H::WsCredentials => m.on(filter, crate::ws::direct::credentials),
        H::WsRelay => m.on(filter, crate::ws::relay::handler),
    }
}

/// A `[[route]]` of the table, run by the route engine.
fn table_handler(spec: Arc<engine::CompiledRoute>, filter: MethodFilter) -> MethodRouter<AppState> {
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
    MethodRouter::new().on(filter, handler)
}
