//! The middleware that runs a route's plugin chain, and the checks every verdict must pass.
//!
//! Order: `on-request` of each entry in turn (a `modify` is seen by the next entry; a `reject`
//! or `respond` ends the walk), then the route itself with the possibly modified body (its
//! allow-list and identity binding run on it, so a plugin can only restrict), then `on-response`
//! of the entries that ran, last first. Error answers of the route are not shown to
//! `on-response`. Each call runs on a blocking thread under a call slot; a failure follows the
//! entry's failure policy (default: `closed` for `on-request`, `open` for `on-response`).
//! Nothing a plugin returns is trusted: statuses, codes, header names and sizes are checked, and
//! an answer that fails a check is a failure of the plugin (`invalid_output`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::config::FailurePolicy;
use super::output::{MAX_HEADERS, MAX_HEADER_NAME, MAX_HEADER_VALUE, MAX_MESSAGE};
use super::runtime::{
    AdminPrincipal, Failure, Header, Hook, HookAnswer, Principal, Request as PRequest, RequestVerdict,
    Response as PResponse, ResponseVerdict, UserPrincipal,
};
use super::{Chain, Entry};

use crate::auth::signed::{HEADER_NONCE, HEADER_SESSION, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;
use crate::telemetry::RequestId;

/// Request headers never shown to plugins: they carry credentials.
const HIDDEN_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "token",
    HEADER_SESSION,
    HEADER_SIGNATURE,
    HEADER_NONCE,
    HEADER_TIMESTAMP,
];
/// Headers a plugin may not set (on the request or on a response it gives).
const FORBIDDEN_SET: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "x-request-id",
    "token",
];

/// The chain middleware: `State` is the gateway and the route's name. The serving snapshot is
/// taken once, so the whole request runs on one version of every plugin even if a swap happens
/// meanwhile; the snapshot (and with it an old version) is released when the request ends.
pub async fn layer(State((state, route)): State<(AppState, Arc<str>)>, req: Request, next: Next) -> Response {
    let snapshot = state.plugins.snapshot();
    let Some(chain) = snapshot.chain(&route) else { return next.run(req).await };
    match run(&state, &chain, req, next).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(state: &AppState, chain: &Chain, req: Request, next: Next) -> Result<Response, ApiError> {
    let rid = req.extensions().get::<RequestId>().cloned().unwrap_or_else(RequestId::generate);
    let Some(principal) = principal(&req) else {
        // Authentication runs before every chain (routes::Op, the user and table routers): a
        // request without a principal here is a wiring fault, and plugins only ever see
        // authenticated callers, so it is refused rather than passed on.
        return Err(ApiError::internal("plugin chain reached without an authenticated principal"));
    };
    let (mut parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, state.config.server.max_body_bytes)
        .await
        .map_err(|_| ApiError::new(ErrorCode::PayloadTooLarge))?;
    let preq = PRequest {
        method: parts.method.as_str().to_owned(),
        route: chain.route.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: visible_headers(&parts.headers),
        body: body.to_vec(),
        principal,
        operation_id: rid.as_str().to_owned(),
    };
    let walked = on_request(state, chain, &rid, preq).await?;
    let (mut preq, modified, ran, early) = (walked.request, walked.modified, walked.ran, walked.early);
    let response = match early {
        Some(r) => r,
        None => {
            if modified {
                parts.headers.remove(header::CONTENT_LENGTH);
            }
            let body = if modified { Bytes::from(std::mem::take(&mut preq.body)) } else { body };
            next.run(Request::from_parts(parts, Body::from(body))).await
        }
    };
    on_response(state, &chain.entries[..ran], &rid, preq, response).await
}

/// What the `on-request` walk of a chain left: the request as the plugins modified it, whether
/// they did, how many entries ran (their `on-response` runs later), and an early answer
/// (`respond`) if one gave it.
pub(crate) struct Walked {
    pub request: PRequest,
    pub modified: bool,
    pub ran: usize,
    pub early: Option<Response>,
}

/// The `on-request` hooks of a chain in order: a `modify` is seen by the next entry, a `reject`
/// is the error returned, a `respond` ends the walk. Used by the HTTP stage and by the WebSocket
/// relay's frame policy, so one chain governs both paths.
pub(crate) async fn on_request(
    state: &AppState,
    chain: &Chain,
    rid: &RequestId,
    mut preq: PRequest,
) -> Result<Walked, ApiError> {
    let mut modified = false;
    let mut ran = 0;
    let mut early: Option<Response> = None;
    for entry in &chain.entries {
        ran += 1;
        if !entry.plugin.hooks.on_request {
            continue; // declared without `on-request`: it would proceed
        }
        let shared = Arc::new(preq.clone());
        let outcome = call(state, entry, rid, Owned::Request(shared)).await;
        let verdict = match outcome {
            Ok(HookAnswer::Request(v)) => check_request_verdict(v),
            Ok(_) => Err(Failure::InvalidOutput("wrong answer kind".into())),
            Err(f) => Err(f),
        };
        match verdict {
            Ok(RequestVerdict::Proceed) => {}
            Ok(RequestVerdict::Modify(m)) => {
                if let Some(b) = m.body {
                    preq.body = b;
                    modified = true;
                }
                for h in m.set_headers {
                    preq.headers.retain(|x| x.name != h.name);
                    preq.headers.push(h);
                }
            }
            Ok(RequestVerdict::Reject(r)) => {
                metrics(state).rejections.get_or_create(&label(entry)).inc();
                rid.note_reason(&format!("plugin {} rejected: {}", entry.plugin.name, r.code));
                let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
                return Err(ApiError::new(ErrorCode::PolicyDenied)
                    .with_status(status)
                    .with_reason(r.code)
                    .with_message(r.message));
            }
            Ok(RequestVerdict::Respond(r)) => {
                early = Some(build_response(r));
                break;
            }
            Err(f) => fail(state, entry, rid, "on_request", f, entry.failure.unwrap_or(FailurePolicy::Closed))?,
        }
    }
    Ok(Walked { request: preq, modified, ran, early })
}

async fn on_response(
    state: &AppState,
    entries: &[Entry],
    rid: &RequestId,
    preq: PRequest,
    response: Response,
) -> Result<Response, ApiError> {
    // Refusals of the route are rendered by the rescue stage; plugins do not reshape them.
    // Only the plugins that implement `on-response` see it; without any, the answer goes on as
    // it is, unbuffered.
    let wants_response = entries.iter().any(|e| e.plugin.hooks.on_response);
    if !wants_response || response.extensions().get::<ApiError>().is_some() {
        return Ok(response);
    }
    let limit = state.plugins.runtime.as_ref().map(|r| r.config.max_response_bytes).unwrap_or(0);
    let fits = response.body().size_hint().upper().is_some_and(|n| n <= limit as u64);
    if !fits {
        for entry in entries.iter().rev().filter(|e| e.plugin.hooks.on_response) {
            let f = Failure::ResponseTooLarge;
            fail(state, entry, rid, "on_response", f, entry.failure.unwrap_or(FailurePolicy::Open))?;
        }
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let bytes =
        axum::body::to_bytes(body, limit).await.map_err(|e| ApiError::internal(format!("response body: {e}")))?;
    let mut current =
        PResponse { status: parts.status.as_u16(), headers: visible_headers(&parts.headers), body: bytes.to_vec() };
    let request = Arc::new(preq);
    let mut replaced = false;
    for entry in entries.iter().rev().filter(|e| e.plugin.hooks.on_response) {
        let outcome = call(state, entry, rid, Owned::Response(request.clone(), Arc::new(current.clone()))).await;
        let verdict = match outcome {
            Ok(HookAnswer::Response(v)) => check_response_verdict(v),
            Ok(_) => Err(Failure::InvalidOutput("wrong answer kind".into())),
            Err(f) => Err(f),
        };
        match verdict {
            Ok(ResponseVerdict::Proceed) => {}
            Ok(ResponseVerdict::Replace(r)) => {
                current = r;
                replaced = true;
            }
            Err(f) => fail(state, entry, rid, "on_response", f, entry.failure.unwrap_or(FailurePolicy::Open))?,
        }
    }
    if replaced {
        return Ok(build_response(current));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Ok(Response::from_parts(parts, Body::from(current.body)))
}

/// Applies the failure policy: `closed` refuses the request, `open` skips the plugin.
fn fail(
    state: &AppState,
    entry: &Entry,
    rid: &RequestId,
    hook: &str,
    failure: Failure,
    policy: FailurePolicy,
) -> Result<(), ApiError> {
    let policy_name = match policy {
        FailurePolicy::Closed => "closed",
        FailurePolicy::Open => "open",
    };
    metrics(state)
        .failures
        .get_or_create(&super::metrics::FailureLabels {
            plugin: entry.plugin.name.clone(),
            kind: failure.kind().into(),
            policy: policy_name.into(),
        })
        .inc();
    tracing::warn!(plugin = %entry.plugin.name, hook, kind = failure.kind(), policy = policy_name, detail = %failure, "plugin failed");
    if let Some(m) = &state.plugins.manager {
        m.report_failure(&entry.plugin.name, &entry.plugin.hash, &failure);
    }
    match policy {
        FailurePolicy::Open => Ok(()),
        FailurePolicy::Closed => {
            rid.note_reason(&format!("plugin {} failed in {hook}: {}", entry.plugin.name, failure.kind()));
            let code =
                if failure == Failure::Overloaded { ErrorCode::Overloaded } else { ErrorCode::PolicyUnavailable };
            Err(ApiError::new(code).with_detail(format!("plugin {} ({hook}): {failure}", entry.plugin.name)))
        }
    }
}

fn metrics(state: &AppState) -> &super::metrics::PluginMetrics {
    &state.metrics.plugins
}

fn label(entry: &Entry) -> super::metrics::PluginLabels {
    super::metrics::PluginLabels { plugin: entry.plugin.name.clone() }
}

/// What a hook call takes into its blocking thread.
enum Owned {
    Request(Arc<PRequest>),
    Response(Arc<PRequest>, Arc<PResponse>),
}

/// One hook call: a call slot (or `overloaded` after the queue timeout), then the call on a
/// blocking thread, so a plugin spending its whole budget never holds up the async workers.
async fn call(state: &AppState, entry: &Entry, rid: &RequestId, hook: Owned) -> Result<HookAnswer, Failure> {
    let runtime = state.plugins.runtime.clone().ok_or_else(|| Failure::Instantiate("no plugin runtime".into()))?;
    let wait = Duration::from_millis(runtime.config.queue_timeout_ms);
    let permit = match tokio::time::timeout(wait, runtime.slots.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => return Err(Failure::Overloaded),
    };
    let (plugin, io, config) = (entry.plugin.clone(), state.plugins.io.clone(), entry.config.clone());
    let request_id: Arc<str> = Arc::from(rid.as_str());
    let hook_name = match hook {
        Owned::Request(_) => "on_request",
        Owned::Response(..) => "on_response",
    };
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let hook = match &hook {
            Owned::Request(r) => Hook::Request(r),
            Owned::Response(r, s) => Hook::Response(r, s),
        };
        runtime.call(&plugin, &io, &config, &request_id, hook)
    });
    match task.await {
        Ok((result, stats)) => {
            metrics(state).observe(&entry.plugin.name, hook_name, &stats);
            result
        }
        Err(_) => Err(Failure::HostPanic),
    }
}

/// The authenticated caller: a signed user (the `Caller` the auth stage set) or a valid admin JWT.
/// The principal the authentication stage left on the request (the JWT is never read again).
fn principal(req: &Request) -> Option<Principal> {
    if let Some(c) = req.extensions().get::<Caller>() {
        return Some(Principal::User(UserPrincipal {
            user_id: c.user_id.clone(),
            platform: u32::try_from(c.platform_id).unwrap_or(0),
            session_id: c.session_id.clone(),
            device_id: c.device_id.clone(),
            tier: c.tier.clone(),
        }));
    }
    let admin = req.extensions().get::<crate::auth::AdminPrincipal>()?.clone();
    Some(Principal::Admin(AdminPrincipal {
        subject: admin.subject,
        issuer: admin.issuer,
        scopes: admin.scopes.into_iter().collect(),
    }))
}

/// Framing headers: imgate sets them for whatever body goes out; plugins neither see nor set them.
const FRAMING: &[&str] = &["content-length", "transfer-encoding", "connection"];

fn visible_headers(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .filter(|(n, _)| !HIDDEN_HEADERS.contains(&n.as_str()) && !FRAMING.contains(&n.as_str()))
        .filter_map(|(n, v)| Some(Header { name: n.as_str().to_owned(), value: v.to_str().ok()?.to_owned() }))
        .collect()
}

fn invalid(what: impl Into<String>) -> Failure {
    Failure::InvalidOutput(what.into())
}

fn check_headers(headers: &[Header]) -> Result<(), Failure> {
    if headers.len() > MAX_HEADERS {
        return Err(invalid(format!("more than {MAX_HEADERS} headers")));
    }
    for h in headers {
        let name_ok = !h.name.is_empty()
            && h.name.len() <= MAX_HEADER_NAME
            && h.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok || HeaderName::from_bytes(h.name.as_bytes()).is_err() {
            return Err(invalid("a header name is not a lowercase token"));
        }
        if FORBIDDEN_SET.contains(&h.name.as_str()) || h.name.starts_with("x-imgate-") {
            return Err(invalid(format!("header `{}` may not be set by a plugin", h.name)));
        }
        if h.value.len() > MAX_HEADER_VALUE || HeaderValue::from_str(&h.value).is_err() {
            return Err(invalid(format!("header `{}` has an invalid value", h.name)));
        }
    }
    Ok(())
}

fn check_request_verdict(v: RequestVerdict) -> Result<RequestVerdict, Failure> {
    validate_request_verdict(&v)?;
    Ok(v)
}

/// What an `on-request` answer may say (sizes were checked in the guest's memory, `output.rs`):
/// also what `imgate plugin test` holds an answer to, so both refuse the same answers.
pub(crate) fn validate_request_verdict(v: &RequestVerdict) -> Result<(), Failure> {
    match v {
        RequestVerdict::Proceed => {}
        RequestVerdict::Modify(m) => {
            // Sizes (bodies, headers, strings) were checked before the answer left the guest
            // (`output.rs`); what follows is what the answer may say.
            if let Some(b) = &m.body {
                // Every route imgate serves takes JSON: a body that is not JSON is the plugin's fault.
                if serde_json::from_slice::<serde::de::IgnoredAny>(b).is_err() {
                    return Err(invalid("a modified body that is not JSON"));
                }
            }
            check_headers(&m.set_headers)?;
        }
        RequestVerdict::Reject(r) => {
            if !(400..=499).contains(&r.status) {
                return Err(invalid(format!("a rejection with status {} (must be 400-499)", r.status)));
            }
            let code_ok = (1..=64).contains(&r.code.len())
                && r.code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
            if !code_ok {
                return Err(invalid("a rejection code that is not 1-64 of a-z 0-9 _ . -"));
            }
            if r.message.chars().count() > MAX_MESSAGE || r.message.chars().any(char::is_control) {
                return Err(invalid("a rejection message longer than 512 characters or with control characters"));
            }
        }
        RequestVerdict::Respond(r) => check_response(r)?,
    }
    Ok(())
}

fn check_response(r: &PResponse) -> Result<(), Failure> {
    if !(200..=599).contains(&r.status) {
        return Err(invalid(format!("a response with status {}", r.status)));
    }
    check_headers(&r.headers)
}

fn check_response_verdict(v: ResponseVerdict) -> Result<ResponseVerdict, Failure> {
    validate_response_verdict(&v)?;
    Ok(v)
}

/// What an `on-response` answer may say (see [`validate_request_verdict`]).
pub(crate) fn validate_response_verdict(v: &ResponseVerdict) -> Result<(), Failure> {
    if let ResponseVerdict::Replace(r) = v {
        check_response(r)?;
    }
    Ok(())
}

/// A checked plugin response as an HTTP response (JSON unless the plugin says otherwise).
fn build_response(r: PResponse) -> Response {
    let mut res = Response::new(Body::from(r.body));
    *res.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for h in r.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(h.name.as_bytes()), HeaderValue::from_str(&h.value)) {
            res.headers_mut().insert(n, v);
        }
    }
    // A plugin's error status is the plugin's answer, not one of imgate's refusals.
    res.extensions_mut().insert(crate::error::ForeignEnvelope);
    res
}
