//! Request ids, JSON logs and Prometheus metrics: what an operator sees of the gateway.
//!
//! Each request gets a [`RequestId`] (the client's `X-Request-Id` when it is short and plain, a
//! fresh one otherwise); it names the request's tracing span, comes back in the `X-Request-Id`
//! response header and the error body, and prefixes every OpenIM `operationID` the request causes,
//! so one id finds a request in imgate's log and in OpenIM's. Metrics live in a per-gateway
//! [`Metrics`] registry (not a global one), so tests can run several gateways in one process.

pub mod log_writer;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use crate::audit::{outcome, AuditEvent};
use crate::config::TelemetryConfig;
use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of one client request, and what the request's stages noted for its audit record.
#[derive(Debug, Clone)]
pub struct RequestId(Arc<str>, Arc<Mutex<Trail>>);

/// What stages note about a request for its audit record (never secrets or bodies).
#[derive(Debug, Default, Clone)]
pub struct Trail {
    pub user: Option<String>,
    pub reason: Option<String>,
    pub operation_ids: Vec<String>,
    /// A handler refused the request ([`RequestId::note_refusal`]), whatever the HTTP status says.
    pub refused: bool,
    /// The request failed on imgate's or OpenIM's side ([`RequestId::note_failure`]), whatever
    /// the HTTP status says.
    pub failed: bool,
}

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn trail(&self) -> std::sync::MutexGuard<'_, Trail> {
        self.1.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Who the request turned out to be (a user id, or `admin:<sub>`).
    pub fn note_user(&self, user: &str) {
        self.trail().user = Some(user.to_owned());
    }

    /// Why the request was refused (an audit-only reason).
    pub fn note_reason(&self, reason: &str) {
        self.trail().reason = Some(reason.to_owned());
    }

    /// [`Self::note_reason`] unless a stage noted one already (the rescue point's fallback: the
    /// error's stable code, for refusals no stage explained).
    pub fn note_reason_if_none(&self, reason: &str) {
        let mut trail = self.trail();
        if trail.reason.is_none() {
            trail.reason = Some(reason.to_owned());
        }
    }

    /// The request is refused, for `reason` (stable text naming the rule, never a token or a
    /// body): its audit record says `refused` even when the answer is HTTP 200 — the
    /// OpenIM-compatible surface answers refusals in OpenIM's envelope, and the status alone
    /// would record them as `ok`. A 5xx answer still records `error`.
    pub fn note_refusal(&self, reason: &str) {
        let mut trail = self.trail();
        trail.reason = Some(reason.to_owned());
        trail.refused = true;
    }

    /// The request failed (OpenIM unreachable, a policy failure) for `reason`: its audit record
    /// says `error` even when the answer is HTTP 200 (OpenIM's envelope on the compat surface).
    pub fn note_failure(&self, reason: &str) {
        let mut trail = self.trail();
        trail.reason = Some(reason.to_owned());
        trail.failed = true;
    }

    /// An OpenIM operationID this request caused.
    pub fn note_operation(&self, operation_id: &str) {
        self.trail().operation_ids.push(operation_id.to_owned());
    }

    pub fn take_trail(&self) -> Trail {
        std::mem::take(&mut *self.trail())
    }

    /// Accepts a client-chosen id only if it cannot inject anything into logs or OpenIM headers.
    fn from_client(value: &HeaderValue) -> Option<RequestId> {
        let s = value.to_str().ok()?;
        let plain = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        plain.then(|| RequestId(Arc::from(s), Arc::default()))
    }

    /// A fresh random id (a v4 UUID, 32 hex digits). Its randomness comes from the thread's
    /// CSPRNG (`rand::thread_rng`, seeded from the OS), not a `getrandom` call per request.
    pub fn generate() -> RequestId {
        let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
        RequestId(Arc::from(id.simple().to_string()), Arc::default())
    }
}

/// Pipeline stage "trace": assigns the request id, opens the request span, records metrics and
/// the request's audit record (`api_call`).
pub async fn trace(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let metrics = &state.metrics;
    let started = Instant::now();
    let id = req.headers().get(REQUEST_ID_HEADER).and_then(RequestId::from_client).unwrap_or_else(RequestId::generate);
    req.extensions_mut().insert(id.clone());
    // Labels (and the span, the log and the audit record) take only values from closed sets: the
    // matched route template, never the raw path (paths carry ids), and a known method name or
    // `other` (a client may send any token as a method; each would be a new series).
    let route =
        req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_else(|| UNMATCHED.into());
    let method = method_label(req.method()).to_owned();
    let span = tracing::info_span!("request", request_id = id.as_str(), method = %method, route = %route);
    metrics.in_flight.inc();
    let res = next.run(req).instrument(span.clone()).await;
    metrics.in_flight.dec();
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    let (route_for_audit, method_for_audit) = (route.clone(), method.clone());
    metrics.http_requests.get_or_create(&HttpLabels { route: route.clone(), method: method.clone(), status }).inc();
    metrics.http_duration.get_or_create(&RouteLabels { route, method }).observe(elapsed.as_secs_f64());
    span.in_scope(|| tracing::info!(status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request done"));
    let trail = id.take_trail();
    // Liveness probes are not API calls: auditing them would bury the trail in noise.
    if route_for_audit == "/healthz" {
        return finish(res, &id);
    }
    let outcome = match status {
        500.. => outcome::ERROR,
        _ if trail.failed => outcome::ERROR,
        _ if trail.refused => outcome::REFUSED,
        200..=399 => outcome::OK,
        401 | 403 => outcome::REFUSED,
        400..=499 => outcome::REJECTED,
        _ => outcome::ERROR,
    };
    state.audit.record(AuditEvent {
        kind: "api_call".into(),
        request_id: Some(id.as_str().to_owned()),
        user: trail.user,
        route: Some(route_for_audit),
        method: Some(method_for_audit),
        operation_ids: trail.operation_ids,
        outcome: outcome.into(),
        status: Some(status),
        // Whole microseconds: short decimals that survive any JSON round trip.
        latency_ms: Some((elapsed.as_secs_f64() * 1e6).round() / 1e3),
        reason: trail.reason,
        detail: Default::default(),
    });
    finish(res, &id)
}

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// A request method as a label: the methods routes can have, or `other`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Stamps the request id on the answer.
fn finish(mut res: Response, id: &RequestId) -> Response {
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    res
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpenImLabels {
    pub operation: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

/// Which listener a connection came in on: `api` or `metrics`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// An OpenIM service (`openim::breaker::SERVICES`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

/// A retry the budget allowed or denied, by OpenIM service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub service: String,
    pub outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the gateway exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: HistogramFamily<RouteLabels>,
    pub in_flight: Gauge,
    pub openim_calls: Family<OpenImLabels, Counter>,
    pub openim_duration: HistogramFamily<OperationLabels>,
    pub openim_admin_token_fetches: Family<ReasonLabels, Counter>,
    pub openim_user_token_mints: Counter,
    /// 1 while OpenIM refuses imgate's admin credentials.
    pub openim_auth_failed: Gauge,
    /// 1 while an OpenIM service's circuit is open or half-open (`openim::breaker`).
    pub openim_breaker_open: Family<ServiceLabels, Gauge>,
    /// Times a service's circuit opened.
    pub openim_breaker_trips: Family<ServiceLabels, Counter>,
    /// Calls refused without reaching OpenIM (circuit open, or the service's in-flight cap).
    pub openim_breaker_refused: Family<ServiceLabels, Counter>,
    /// Retries of idempotent reads the retry budget allowed or denied.
    pub openim_retries: Family<RetryLabels, Counter>,
    pub handshake_dh_operations: Counter,
    /// Open client connections, by listener (`server::serve`).
    pub connections_open: Family<ListenerLabels, Gauge>,
    /// Connections closed at once because the listener was at `server.max_connections`.
    pub connections_shed: Family<ListenerLabels, Counter>,
    /// `seq` of the audit chain's last record (kept by the audit writer, see `AuditLog::export_head_seq`).
    pub audit_head_seq: Gauge,
    pub plugins: crate::plugins::metrics::PluginMetrics,
    /// Relayed WebSocket connections open.
    pub ws_connections: Gauge,
    /// Client frames the relay forwarded to OpenIM, and refused.
    pub ws_frames_forwarded: Counter,
    pub ws_frames_refused: Counter,
    /// Relayed connections ended, by reason (`ws::relay`).
    pub ws_closed: Family<ReasonLabels, Counter>,
    /// `[store] backend = "redis"`: 1 while Redis answers, 0 while it does not.
    pub store_up: Gauge,
    /// Redis round trips sent, and those that failed or timed out.
    pub store_round_trips: Counter,
    pub store_errors: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("imgate");
        let m = Metrics {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            openim_calls: Family::default(),
            openim_duration: Family::new_with_constructor(latency_histogram),
            openim_admin_token_fetches: Family::default(),
            openim_user_token_mints: Counter::default(),
            openim_auth_failed: Gauge::default(),
            openim_breaker_open: Family::default(),
            openim_breaker_trips: Family::default(),
            openim_breaker_refused: Family::default(),
            openim_retries: Family::default(),
            handshake_dh_operations: Counter::default(),
            connections_open: Family::default(),
            connections_shed: Family::default(),
            audit_head_seq: Gauge::default(),
            plugins: crate::plugins::metrics::PluginMetrics::new(),
            ws_connections: Gauge::default(),
            ws_frames_forwarded: Counter::default(),
            ws_frames_refused: Counter::default(),
            ws_closed: Family::default(),
            store_up: Gauge::default(),
            store_round_trips: Counter::default(),
            store_errors: Counter::default(),
            registry: Registry::default(),
        };
        registry.register("http_requests", "Client requests by route, method and status", m.http_requests.clone());
        registry.register("http_request_duration_seconds", "Client request latency", m.http_duration.clone());
        registry.register("http_requests_in_flight", "Client requests being handled", m.in_flight.clone());
        registry.register("openim_calls", "Calls to OpenIM by operation and outcome", m.openim_calls.clone());
        registry.register("openim_call_duration_seconds", "OpenIM call latency", m.openim_duration.clone());
        registry.register(
            "openim_admin_token_fetches",
            "Admin tokens fetched from OpenIM, by reason",
            m.openim_admin_token_fetches.clone(),
        );
        registry.register("openim_user_token_mints", "User tokens minted in OpenIM", m.openim_user_token_mints.clone());
        registry.register(
            "openim_auth_failed",
            "1 while OpenIM refuses imgate's own admin credentials (openim.secret, openim.admin_user_id)",
            m.openim_auth_failed.clone(),
        );
        registry.register(
            "openim_breaker_open",
            "1 while the circuit of an OpenIM service is open or half-open",
            m.openim_breaker_open.clone(),
        );
        registry.register(
            "openim_breaker_trips",
            "Times an OpenIM service's circuit opened",
            m.openim_breaker_trips.clone(),
        );
        registry.register(
            "openim_breaker_refused",
            "Calls refused without reaching OpenIM: circuit open or the service's in-flight cap",
            m.openim_breaker_refused.clone(),
        );
        registry.register(
            "openim_retries",
            "Retries of idempotent OpenIM reads the retry budget allowed or denied",
            m.openim_retries.clone(),
        );
        registry.register(
            "handshake_dh_operations",
            "X25519 operations spent on handshakes (refusals are padded to the cost of an acceptance)",
            m.handshake_dh_operations.clone(),
        );
        registry.register("connections_open", "Client connections open, by listener", m.connections_open.clone());
        registry.register(
            "connections_shed",
            "Connections closed at once because the listener had server.max_connections open",
            m.connections_shed.clone(),
        );
        registry.register(
            "audit_head_seq",
            "Seq of the last audit record written (its hash: GET /v1/admin/audit/head)",
            m.audit_head_seq.clone(),
        );
        registry.register("ws_connections", "Relayed WebSocket connections open", m.ws_connections.clone());
        registry.register(
            "ws_frames_forwarded",
            "Client WebSocket frames checked and forwarded to OpenIM",
            m.ws_frames_forwarded.clone(),
        );
        registry.register(
            "ws_frames_refused",
            "Client WebSocket frames refused by the frame policy",
            m.ws_frames_refused.clone(),
        );
        registry.register("ws_closed", "Relayed WebSocket connections ended, by reason", m.ws_closed.clone());
        registry.register("store_up", "1 while the shared store (Redis) answers", m.store_up.clone());
        registry.register("store_round_trips", "Round trips to the shared store (Redis)", m.store_round_trips.clone());
        registry.register(
            "store_errors",
            "Shared-store (Redis) commands that failed or timed out",
            m.store_errors.clone(),
        );
        m.plugins.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// The connection metrics of one listener (`"api"` or `"metrics"`), for `server::serve`.
    pub fn connections(&self, listener: &'static str) -> crate::server::ConnectionMetrics {
        let labels = ListenerLabels { listener };
        crate::server::ConnectionMetrics {
            open: self.connections_open.get_or_create(&labels).clone(),
            shed: self.connections_shed.get_or_create(&labels).clone(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Installs the global log subscriber (binary start-up only; tests do not call it).
///
/// Lines are formatted on the thread that logs and reach stderr through a buffer written every
/// 50 ms ([`log_writer`]). Keep the returned guard until the process ends: dropping it writes
/// what is buffered.
#[must_use = "dropping the guard stops the log writer"]
pub fn init_logging(cfg: &TelemetryConfig) -> Option<log_writer::FlushGuard> {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = match log_writer::BufferedStderr::start() {
        Ok((writer, guard)) => (tracing_subscriber::fmt::writer::BoxMakeWriter::new(writer), Some(guard)),
        // No thread for the buffer: lines go to stderr one by one.
        Err(_) => (tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr), None),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let result = if cfg.log_format == "pretty" {
        builder.try_init()
    } else {
        builder.json().with_current_span(true).with_span_list(false).flatten_event(true).try_init()
    };
    // A subscriber already installed (e.g. `imgate dev` embedding) is fine: it keeps its writer.
    result.ok().and(guard)
}
