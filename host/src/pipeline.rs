//! THE one place the order of the request pipeline is written.
//!
//! A request passes these stages top to bottom (outermost first); the answer goes back up:
//!
//! 1. trace    — request id, span, access log line, metrics            (`telemetry::trace`)
//! 2. respond  — the rescue point: every error rendered in one shape   (`error::rescue`)
//! 3. guard    — header limits, path hygiene, request deadline, load shedding, body cap
//!    (`guard`, tower-http)
//! 4. route    — the route table; unknown paths are 404                (`routes`)
//! 5. authenticate — signed requests for user routes (`auth::signed`), the admin JWT and the
//!    route's scope for admin routes (`auth::admin`), bearer tokens on `/openim/*`; route layers
//!    set in `routes`, outside everything else of the route: handlers and plugins receive the
//!    principal (`Caller` / `AdminPrincipal`) and never authenticate
//! 6. rate limit (per user, or per admin with the `admin` class) → plugin chain
//!    (`plugins::chain`) → validate + bind identity (`routes::engine`, `routes::compat`) →
//!    dispatch to OpenIM (`openim`) → plugin chain `on-response`
//!
//! Stages are added here and nowhere else.

use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::Router;
use tower::ServiceBuilder;

use crate::state::AppState;
use crate::{error, guard, routes, telemetry};

/// The gateway's public router, with every stage in place.
pub fn app(state: AppState) -> Router {
    let stages = ServiceBuilder::new()
        .layer(from_fn_with_state(state.clone(), telemetry::trace))
        .layer(from_fn(error::rescue))
        .layer(from_fn_with_state(state.clone(), guard::guard));
    // The body cap (`server.max_body_bytes`, 413) is set on the routes in `routes::router`,
    // because plugin uploads have their own (`plugins.max_component_bytes`).
    routes::router(&state)
        // tower-http's limit replaces axum's implicit 2 MiB one, so there is one number to configure.
        .layer(DefaultBodyLimit::disable())
        .layer(stages)
        .with_state(state)
}

/// The metrics listener's router: `GET /metrics` only.
pub fn metrics_app(state: &AppState) -> Router {
    let metrics = state.metrics.clone();
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    metrics.render(),
                )
            }
        }),
    )
}
