//! imgate: the gateway every OpenIM deployment runs in front of OpenIM.
//!
//! Clients never reach OpenIM's HTTP API: they call imgate, which authenticates them, applies
//! policy, and calls OpenIM itself with tokens that never leave it. This crate is the gateway;
//! the binary `imgate` (`main.rs`) is its command line.
//!
//! Codemap (each module opens with why it exists):
//! - `config`    — the typed TOML config; every error reported at once.
//! - `state`     — config → the services a request can reach ([`AppState`]).
//! - `pipeline`  — THE order of request stages; read it first.
//! - `telemetry` — request ids, JSON logs, Prometheus metrics.
//! - `error`     — the single rescue point: error → status + stable code.
//! - `ratelimit` — per-user GCRA limits by route class and tier (429 + Retry-After).
//! - `guard`     — header limits, deadline, load shedding.
//! - `routes`    — the route table and handlers.
//! - `auth`      — admin JWTs, the client handshake, signed requests, bearer tokens.
//! - `ids`       — the identifier rules (users, groups, devices, keys, plugins), written once.
//! - `openim`    — the only code that knows OpenIM's JSON, tokens and errCodes.
//! - `plugins`   — Wasm policy plugins: the sandbox, the host imports, per-route chains.
//! - `store`     — devices, sessions, nonces, tokens behind one trait (memory by default).
//! - `fleet`     — every line that speaks Redis: the shared store, limits, kv, tokens, events.
//! - `keys`      — the gateway's X25519 keys, `imgate keygen`.
//! - `server`    — the accept loop: connection deadlines and cap, graceful drain.
//! - `dev`       — `imgate dev`: the emulator and the gateway in one process.
//! - `cli_plugin` — `imgate plugin ...`: the admin API's plugin routes from the command line.
//! - `plugin_kit` — `imgate plugin new|test`: scaffolds plugins, runs their hooks without a gateway.
//! - `fuzzing`   — hidden: the entry points `fuzz/`'s targets need (`make fuzz`).

pub mod audit;
pub mod auth;
pub mod cli_plugin;
pub mod config;
#[cfg(feature = "emulator")]
pub mod dev;
pub mod error;
pub mod fleet;
/// Entry points of the fuzz targets in `fuzz/` (thin wrappers of crate-private parsers); not an API.
#[doc(hidden)]
pub mod fuzzing;
mod guard;
pub mod ids;
pub mod keys;
pub mod openim;
pub mod pipeline;
pub mod plugin_kit;
pub mod plugins;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod state;
pub mod store;
pub mod strict_json;
pub mod telemetry;
pub mod ws;

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::Config;
pub use pipeline::app;
pub use state::{build as build_state, AppState};

/// Connections the metrics listener keeps open at once (its own cap, beside `server.max_connections`).
const METRICS_MAX_CONNECTIONS: usize = 16;

/// Serves the gateway on `api` (and `/metrics` on `metrics`, if given) until `shutdown`
/// resolves, then drains in-flight requests for at most `server.drain_timeout_ms`.
pub async fn run(
    state: AppState,
    api: TcpListener,
    metrics: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let cfg = &state.config.server;
    let ms = Duration::from_millis;
    let budget = server::fit_to_fd_limit(cfg.max_connections, METRICS_MAX_CONNECTIONS, state.config.ws.max_connections);
    state.ws.set_capacity(budget.relayed);
    let opts = server::ServeOptions {
        first_byte: ms(cfg.first_byte_timeout_ms),
        head: ms(cfg.header_read_timeout_ms),
        idle: ms(cfg.idle_timeout_ms),
        // Never shorter than the request deadline: a handler may work that long without a byte
        // moving, and it answers (504) before its connection is cut.
        stall: ms(cfg.idle_timeout_ms.max(cfg.request_timeout_ms)),
        max_connections: budget.connections,
        drain: ms(cfg.drain_timeout_ms),
    };
    // Scrapers use a connection or two; a flood of the API listener must not take their slots.
    let metrics_opts = server::ServeOptions { max_connections: METRICS_MAX_CONNECTIONS, ..opts };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let metrics_task = metrics.map(|l| {
        let conns = state.metrics.connections("metrics");
        tokio::spawn(server::serve(l, pipeline::metrics_app(&state), metrics_opts, conns, stopped()))
    });
    let events = state.fleet.clone().map(|fleet| tokio::spawn(fleet::events::run(state.clone(), fleet)));
    let conns = state.metrics.connections("api");
    let ws = state.ws.clone();
    let drain = opts.drain;
    let api_task = server::serve(api, pipeline::app(state), opts, conns, stopped());
    let signal = async move {
        shutdown.await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
        // Relayed WebSockets are upgraded connections the HTTP drain does not see: each is told
        // to close with 1001 "going away" (attacks.md E17), and waited for within the drain time.
        let told = ws.end_all(ws::Ended::Shutdown);
        if told > 0 && tokio::time::timeout(drain, ws.drained()).await.is_err() {
            tracing::warn!(sockets = ws.len(), "relayed WebSockets still open at the end of the drain");
        }
    };
    tokio::join!(api_task, signal);
    if let Some(t) = events {
        t.abort();
    }
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}
