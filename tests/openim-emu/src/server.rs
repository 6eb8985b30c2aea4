//! The HTTP API gateway: connection handling, the global middleware chain and the route table.
//!
//! OpenIM's gin chain (contract §1.1-§2) is reproduced in [`api_entry`]: fault injection (an
//! emulator feature) → OPTIONS answer → `operationID` header → `token` header and verification
//! (except the whitelist) → route lookup (404 text) → handler (JSON decode → Check → permission
//! → business). Connections are served by a hand-written accept loop so that a
//! [`Fault::CloseConnection`] can drop the TCP connection without answering, and a restart
//! ([`crate::Emulator::restart`]) can drop every connection and close the listener for a while.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tower::ServiceExt;

use crate::error::{envelope, ApiError};
use crate::state::State;
use crate::token;
use crate::ws::WsRegistry;
use crate::{Config, Fault, SeenRequest};

/// What a handler returns: `Some(data)` or `None` for an empty response (no `data` key).
pub type HResult = Result<Option<Value>, ApiError>;
/// A route handler: synchronous, gets the request context and the raw body.
pub type Handler = fn(&Ctx<'_>, &[u8]) -> HResult;

/// Serialize a response payload.
pub fn data<T: serde::Serialize>(v: T) -> HResult {
    serde_json::to_value(v).map(Some).map_err(|e| ApiError::ServerInternal(e.to_string()))
}

/// Shared emulator state.
pub struct App {
    pub config: Config,
    pub state: Mutex<State>,
    pub fault: Mutex<Fault>,
    pub seen: Mutex<Vec<SeenRequest>>,
    pub ws: WsRegistry,
    /// Requests waiting under [`Fault::Hold`].
    pub held: std::sync::atomic::AtomicUsize,
    /// Bumped by [`crate::Emulator::release`]: held requests wait for a change.
    pub release: tokio::sync::watch::Sender<u64>,
    /// HTTP API requests received (before any fault).
    pub received: std::sync::atomic::AtomicU64,
    /// `share.yml secret`: starts as `config.secret`, replaced by [`crate::Emulator::set_secret`].
    pub secret: std::sync::RwLock<String>,
    /// HTTP API requests being processed now: received, and neither answered nor dropped yet.
    pub active: std::sync::atomic::AtomicUsize,
    /// Restart orders ([`crate::Emulator::restart`]): every listener and connection watches it.
    pub restarts: watch::Sender<Restart>,
    /// Bumped by each listener once it accepts again after a restart.
    pub rebound: watch::Sender<u64>,
    routes: HashMap<&'static str, Handler>,
}

/// An order to restart ([`crate::Emulator::restart`]): which one, and how long the listeners stay
/// closed (connections refused) before they are bound again.
#[derive(Clone, Copy, Debug, Default)]
pub struct Restart {
    pub generation: u64,
    pub down: std::time::Duration,
}

impl App {
    pub fn new(config: Config) -> App {
        let mut routes = HashMap::new();
        for (p, h) in crate::auth::routes()
            .into_iter()
            .chain(crate::user::routes())
            .chain(crate::friend::routes())
            .chain(crate::group::routes())
            .chain(crate::msg::routes())
            .chain(crate::msg_manage::routes())
            .chain(crate::conversation::routes())
            .chain(crate::jssdk::routes())
            .chain(crate::object::routes())
        {
            routes.insert(p, h);
        }
        let mut st = State::default();
        for id in &config.admin_user_ids {
            st.add_user(crate::state::UserInfo {
                user_id: id.clone(),
                nickname: "superAdmin".into(),
                app_manger_level: 2,
                create_time: crate::state::now_ms(),
                ..Default::default()
            });
        }
        let secret = config.secret.clone();
        App {
            config,
            state: Mutex::new(st),
            fault: Mutex::new(Fault::None),
            seen: Mutex::new(Vec::new()),
            ws: WsRegistry::default(),
            held: std::sync::atomic::AtomicUsize::new(0),
            release: tokio::sync::watch::channel(0).0,
            received: std::sync::atomic::AtomicU64::new(0),
            secret: std::sync::RwLock::new(secret),
            active: std::sync::atomic::AtomicUsize::new(0),
            restarts: watch::channel(Restart::default()).0,
            rebound: watch::channel(0).0,
            routes,
        }
    }

    /// Lock the database (a poisoned lock is recovered: the data is plain values).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The secret tokens are signed with now.
    pub fn secret(&self) -> String {
        self.secret.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_admin_id(&self, user_id: &str) -> bool {
        self.config.admin_user_ids.iter().any(|a| a == user_id)
    }
}

/// Per-request context handed to handlers.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub operation_id: String,
    /// The token's userID ("" on whitelisted routes).
    pub op_user: String,
    pub platform_id: i32,
    /// The request's headers (content negotiation of /jssdk, URL prefixes of /object).
    pub headers: &'a HeaderMap,
}

impl Ctx<'_> {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.app.lock()
    }
    pub fn config(&self) -> &Config {
        &self.app.config
    }
    /// `IsAdmin(ctx)`: opUserID is a configured admin.
    pub fn is_admin(&self) -> bool {
        self.app.is_admin_id(&self.op_user)
    }
    /// `CheckAdmin`.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::NoPermission(format!("user {} is not admin userID", self.op_user)))
        }
    }
    /// `CheckAccess(owner)`: opUserID == owner or admin.
    pub fn check_access(&self, owner: &str) -> Result<(), ApiError> {
        if self.op_user == owner || self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::NoPermission(format!("ownerUserID {owner} is not opUserID {}", self.op_user)))
        }
    }
    /// `CheckAccessIn(ids...)`.
    pub fn check_access_in(&self, ids: &[&str]) -> Result<(), ApiError> {
        if ids.contains(&self.op_user.as_str()) || self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::NoPermission(format!("opUserID {} is not in {ids:?}", self.op_user)))
        }
    }
}

/// Paths that need no token (prefix match, §1.2).
const WHITELIST: [&str; 2] = ["/auth/get_admin_token", "/auth/parse_token"];

/// Per-connection handle a handler can use to drop its TCP connection.
#[derive(Clone)]
pub struct ConnKill(pub Arc<Notify>);

/// Build the API router (everything goes through [`api_entry`]).
pub fn api_router(app: Arc<App>) -> Router {
    Router::new().fallback(api_entry).with_state(app)
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert("content-type", HeaderValue::from_static("application/json; charset=utf-8"));
    resp
}

fn add_cors(headers: &mut HeaderMap) {
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert("access-control-allow-methods", HeaderValue::from_static("*"));
    headers.insert("access-control-allow-headers", HeaderValue::from_static("*"));
    headers.insert("access-control-allow-credentials", HeaderValue::from_static("false"));
    headers.insert("access-control-max-age", HeaderValue::from_static("172800"));
}

/// Apply the configured fault. Returns only if the request should be handled, or with the
/// answer that replaces handling it ([`Fault::Status`]).
async fn apply_fault(app: &App, kill: Option<&ConnKill>) -> Option<Response> {
    // Subscribed before the fault is read: `release` clears the fault, then bumps the counter,
    // so a request that reads `Hold` always sees the bump that releases it.
    let mut release = app.release.subscribe();
    let generation = *release.borrow_and_update();
    let fault = app.fault.lock().map(|f| f.clone()).unwrap_or(Fault::None);
    match fault {
        Fault::None | Fault::DropAfterHandling => {}
        Fault::Status(code) => {
            let mut r = Response::new(axum::body::Body::empty());
            *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Some(r);
        }
        Fault::Hold => {
            // Counted while waiting, also when the caller gives up and the request is dropped.
            struct Held<'a>(&'a std::sync::atomic::AtomicUsize);
            impl Drop for Held<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            app.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _held = Held(&app.held);
            let _ = release.wait_for(|g| *g != generation).await;
        }
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Hang => std::future::pending::<()>().await,
        Fault::CloseConnection => {
            if let Some(k) = kill {
                k.0.notify_one();
            }
            std::future::pending::<()>().await
        }
    }
    None
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
}

/// The whole gin middleware chain plus dispatch.
async fn api_entry(AxState(app): AxState<Arc<App>>, req: Request) -> Response {
    let kill = req.extensions().get::<ConnKill>().cloned();
    app.received.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // Counted until answered, also when the request is dropped (its connection closed) before.
    struct Active<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Active<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    app.active.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _active = Active(&app.active);
    if let Some(answer) = apply_fault(&app, kill.as_ref()).await {
        return answer;
    }
    let drop_after = app.fault.lock().is_ok_and(|f| *f == Fault::DropAfterHandling);
    let (parts, body) = req.into_parts();
    let mut resp = if parts.method == Method::OPTIONS {
        (StatusCode::OK, "Options Request!").into_response()
    } else if parts.method != Method::POST {
        // GET /object/<name> and the emulated minio behind the upload URLs; nothing else.
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        crate::object::serve_raw(&app, &parts.method, &parts.uri, &parts.headers, &body).unwrap_or_else(not_found)
    } else {
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        handle_post(&app, parts.uri.path(), &parts.headers, &body)
    };
    add_cors(resp.headers_mut());
    if drop_after {
        if let Some(k) = kill {
            k.0.notify_one();
        }
        std::future::pending::<()>().await
    }
    resp
}

fn not_found() -> Response {
    let mut r = (StatusCode::NOT_FOUND, "404 page not found").into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/plain"));
    r
}

/// Steps operationID → token → route → handler; records a [`SeenRequest`].
fn handle_post(app: &App, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let operation_id = header(headers, "operationid");
    let mut seen = SeenRequest {
        path: path.to_string(),
        operation_id: (!operation_id.is_empty()).then(|| operation_id.clone()),
        token_user_id: None,
        token_platform_id: None,
        err_code: 0,
    };
    let (status, result) = run_post(app, path, headers, body, &operation_id, &mut seen);
    let resp = match result {
        None => {
            seen.err_code = 404;
            not_found()
        }
        Some(Ok(d)) => json_response(status, envelope(None, d)),
        Some(Err(e)) => {
            seen.err_code = e.code();
            json_response(e.http_status(), envelope(Some(&e), None))
        }
    };
    if let Ok(mut s) = app.seen.lock() {
        s.push(seen);
    }
    resp
}

/// `None` = unknown route (404).
fn run_post(
    app: &App,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    operation_id: &str,
    seen: &mut SeenRequest,
) -> (StatusCode, Option<HResult>) {
    if operation_id.is_empty() {
        return (StatusCode::OK, Some(Err(ApiError::Args("header must have operationID".into()))));
    }
    let mut op_user = String::new();
    let mut platform_id = 0;
    let tok = header(headers, "token");
    if !tok.is_empty() {
        let st = app.lock();
        if let Ok(c) = token::verify(&st, &app.secret(), &app.config.admin_user_ids, &tok) {
            seen.token_user_id = Some(c.user_id.clone());
            seen.token_platform_id = Some(c.platform_id);
        }
    }
    if !WHITELIST.iter().any(|w| path.starts_with(w)) {
        if tok.is_empty() {
            return (StatusCode::OK, Some(Err(ApiError::Args("header must have token".into()))));
        }
        let verified = token::verify(&app.lock(), &app.secret(), &app.config.admin_user_ids, &tok);
        match verified {
            Ok(c) => {
                op_user = c.user_id;
                platform_id = c.platform_id;
            }
            Err(e) => return (StatusCode::OK, Some(Err(e))),
        }
    }
    let Some(handler) = app.routes.get(path) else {
        return (StatusCode::OK, None);
    };
    let ctx = Ctx { app, operation_id: operation_id.to_string(), op_user, platform_id, headers };
    (StatusCode::OK, Some(handler(&ctx, body)))
}

/// Accept connections until `shutdown` flips; each connection can be dropped via [`ConnKill`].
///
/// A restart order ([`App::restarts`]) drops every open connection (see [`serve_conn`]; the WS
/// connections watch it themselves), closes the listener for the order's `down` time, so that
/// connections are refused, then binds the same address again and bumps [`App::rebound`].
pub async fn serve(mut listener: TcpListener, router: Router, shutdown: watch::Receiver<bool>, app: Arc<App>) {
    let mut stop = shutdown.clone();
    let mut restarts = app.restarts.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                // Go sets TCP_NODELAY on every TCP connection; so does OpenIM, so does the emulator.
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_conn(stream, router.clone(), shutdown.clone(), app.restarts.subscribe()));
            }
            _ = stop.changed() => break,
            order = restarts.changed() => {
                if order.is_err() {
                    break;
                }
                let down = restarts.borrow_and_update().down;
                let Ok(addr) = listener.local_addr() else { break };
                drop(listener);
                tokio::select! {
                    _ = tokio::time::sleep(down) => {}
                    _ = stop.changed() => break,
                }
                let Some(again) = rebind(addr, &mut stop).await else { break };
                listener = again;
                app.rebound.send_modify(|n| *n += 1);
            }
        }
    }
}

/// Binds `addr` again after a restart. The port was ours a moment ago (`SO_REUSEADDR` is set, so
/// the closed connections' TIME_WAIT does not hold it); tried for 5 s in case another socket
/// took it meanwhile. `None` when it could not be bound or the emulator stops.
async fn rebind(addr: std::net::SocketAddr, stop: &mut watch::Receiver<bool>) -> Option<TcpListener> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                eprintln!("openim-emu: cannot bind {addr} again after a restart: {e}");
                return None;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            _ = stop.changed() => return None,
        }
    }
}

async fn serve_conn(
    stream: tokio::net::TcpStream,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
    mut restarts: watch::Receiver<Restart>,
) {
    let kill = ConnKill(Arc::new(Notify::new()));
    let k = kill.clone();
    let svc = router.map_request(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(k.clone());
        req.map(Body::new)
    });
    let svc = TowerToHyperService::new(svc);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = kill.0.notified() => {}
        _ = shutdown.changed() => {}
        _ = restarts.changed() => {}
    }
}
