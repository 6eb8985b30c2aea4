//! The single rescue point: every failure becomes `{"code","message","request_id"}` here, and only here.
//!
//! Handlers and stages return [`ApiError`]; its `IntoResponse` only tags an empty response with the
//! error (no logging, no body). The [`rescue`] middleware, one stage of the pipeline, renders the
//! tagged error with the request id, logs the internal detail once, and also turns the bare error
//! responses of lower layers (axum rejections, body limits, the router's 404/405) into the same
//! shape. Codes are stable API: clients branch on `code`, never on `message`. Internal detail
//! (OpenIM's text, file paths, parser errors) goes to the log, never to the client.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::telemetry::RequestId;

/// Stable error codes of the `/v1` API (`shared/spec/client-auth.md` §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    HeadersTooLarge,
    RateLimited,
    Internal,
    UpstreamUnavailable,
    UpstreamBadResponse,
    UpstreamRejected,
    Overloaded,
    UpstreamTimeout,
    Timeout,
    /// A policy plugin refused the request (its own status 4xx and `reason`).
    PolicyDenied,
    /// A policy plugin failed (trap, deadline, memory, invalid answer) on a fail-closed route.
    PolicyUnavailable,
    /// The shared state store (Redis) could not answer; what needed it fails closed.
    StoreUnavailable,
    /// OpenIM refused imgate's own credentials (`openim.secret`, `openim.admin_user_id`).
    UpstreamAuthFailed,
    /// Not sent to OpenIM: its service's circuit is open, or too many of its calls are in flight.
    UpstreamCircuitOpen,
}

impl ErrorCode {
    /// The wire name, part of the API contract.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::UpstreamBadResponse => "upstream_bad_response",
            ErrorCode::UpstreamRejected => "upstream_rejected",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::Timeout => "timeout",
            ErrorCode::PolicyDenied => "policy_denied",
            ErrorCode::PolicyUnavailable => "policy_unavailable",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::UpstreamAuthFailed => "upstream_auth_failed",
            ErrorCode::UpstreamCircuitOpen => "upstream_circuit_open",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::UpstreamUnavailable
            | ErrorCode::UpstreamBadResponse
            | ErrorCode::UpstreamRejected
            | ErrorCode::UpstreamAuthFailed => StatusCode::BAD_GATEWAY,
            ErrorCode::Overloaded
            | ErrorCode::PolicyUnavailable
            | ErrorCode::StoreUnavailable
            | ErrorCode::UpstreamCircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::PolicyDenied => StatusCode::FORBIDDEN,
            ErrorCode::UpstreamTimeout | ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The client-facing sentence used when a stage has nothing more specific (and safe) to say.
    pub fn default_message(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "the request is malformed",
            ErrorCode::Unauthenticated => "authentication required",
            ErrorCode::Forbidden => "not allowed",
            ErrorCode::NotFound => "no such route",
            ErrorCode::MethodNotAllowed => "method not allowed on this route",
            ErrorCode::Conflict => "the resource already exists",
            ErrorCode::PayloadTooLarge => "request body too large",
            ErrorCode::UnsupportedMediaType => "expected Content-Type: application/json",
            ErrorCode::HeadersTooLarge => "request headers too large",
            ErrorCode::RateLimited => "too many requests",
            ErrorCode::Internal => "internal error",
            ErrorCode::UpstreamUnavailable => "OpenIM is unavailable",
            ErrorCode::UpstreamBadResponse => "OpenIM gave an invalid answer",
            ErrorCode::UpstreamRejected => "OpenIM refused the operation",
            ErrorCode::Overloaded => "the gateway is overloaded, retry later",
            ErrorCode::UpstreamTimeout => "OpenIM did not answer in time",
            ErrorCode::Timeout => "the request took too long",
            ErrorCode::PolicyDenied => "refused by policy",
            ErrorCode::PolicyUnavailable => "the policy for this route could not be evaluated, retry later",
            ErrorCode::StoreUnavailable => "the gateway's state store is unavailable, retry later",
            ErrorCode::UpstreamAuthFailed => "OpenIM refused the gateway's own credentials",
            ErrorCode::UpstreamCircuitOpen => "OpenIM is failing; the gateway spares it for a moment, retry later",
        }
    }

    /// The code for a bare error status produced below the handlers (rejections, limits, router).
    fn from_status(status: StatusCode) -> ErrorCode {
        match status.as_u16() {
            401 => ErrorCode::Unauthenticated,
            403 => ErrorCode::Forbidden,
            404 => ErrorCode::NotFound,
            405 => ErrorCode::MethodNotAllowed,
            408 | 504 => ErrorCode::Timeout,
            409 => ErrorCode::Conflict,
            413 => ErrorCode::PayloadTooLarge,
            415 => ErrorCode::UnsupportedMediaType,
            429 => ErrorCode::RateLimited,
            431 => ErrorCode::HeadersTooLarge,
            503 => ErrorCode::Overloaded,
            400..=499 => ErrorCode::BadRequest,
            _ => ErrorCode::Internal,
        }
    }
}

/// An error on its way to the rescue point. `message` is safe for clients; `detail` is for logs.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    pub detail: Option<String>,
    pub retry_after_secs: Option<u64>,
    /// Overrides the code's status (a plugin's rejection status).
    pub status: Option<StatusCode>,
    /// A policy plugin's own stable reason code, sent as `reason`.
    pub reason: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        ApiError {
            code,
            message: Cow::Borrowed(code.default_message()),
            detail: None,
            retry_after_secs: None,
            status: None,
            reason: None,
        }
    }
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = message.into();
        self
    }
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or(self.code.status())
    }
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(ErrorCode::BadRequest).with_message(message)
    }
    pub fn unauthenticated() -> Self {
        ApiError::new(ErrorCode::Unauthenticated)
    }
    pub fn forbidden() -> Self {
        ApiError::new(ErrorCode::Forbidden)
    }
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Internal).with_detail(detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // No body and no logging here: the rescue stage renders and logs, once.
        let mut res = Response::new(Body::empty());
        *res.status_mut() = self.status();
        res.extensions_mut().insert(self);
        res
    }
}

/// Marks a response whose error status and body are another protocol's (OpenIM's envelope on the
/// admin passthrough and the OpenIM-compatible surface, the readiness report) and must reach the
/// client untouched.
#[derive(Debug, Clone, Copy)]
pub struct ForeignEnvelope;

/// OpenIM's answer, relayed as it came (status 200 or 400, OpenIM's envelope).
pub fn foreign_answer(status: u16, body: bytes::Bytes) -> Response {
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.extensions_mut().insert(ForeignEnvelope);
    res
}

/// The rescue stage: renders every error response in one shape and logs it once.
pub async fn rescue(req: Request, next: Next) -> Response {
    let request_id = req.extensions().get::<RequestId>().cloned();
    // The OpenIM-compatible surface (OpenIM's API is POST only) answers every refusal in OpenIM's
    // envelope, those of the outer stages (deadline, load shedding, header and body limits) too.
    // The WebSocket door `GET /openim/ws` answers as OpenIM's msg gateway does (`ws::auth`).
    let compat = req.method() == axum::http::Method::POST && req.uri().path().starts_with("/openim/");
    let res = next.run(req).await;
    let status = res.status();
    if res.extensions().get::<ForeignEnvelope>().is_some() {
        return res;
    }
    let tagged = res.extensions().get::<ApiError>().cloned();
    let err = match tagged {
        Some(e) => e,
        None if status.is_client_error() || status.is_server_error() => ApiError::new(ErrorCode::from_status(status)),
        None => return res,
    };
    let rid = request_id.as_ref().map(|r| r.as_str()).unwrap_or("");
    if err.status().is_server_error() {
        tracing::warn!(
            code = err.code.as_str(),
            status = status.as_u16(),
            detail = err.detail.as_deref(),
            "request failed"
        );
    } else {
        tracing::info!(
            code = err.code.as_str(),
            status = status.as_u16(),
            detail = err.detail.as_deref(),
            "request refused"
        );
    }
    // Every refusal's audit record says why: the stage's own reason if it noted one, else the
    // stable code (and a plugin's reason code) — never the detail, which can name internals.
    if let Some(rid) = &request_id {
        match &err.reason {
            Some(reason) => rid.note_reason_if_none(&format!("{}: {reason}", err.code.as_str())),
            None => rid.note_reason_if_none(err.code.as_str()),
        }
    }
    let mut out = match (&request_id, compat) {
        (Some(rid), true) => crate::routes::compat::refusal(rid, &err),
        _ => render(&err, rid),
    };
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The body was refused unread: the connection cannot carry another request, so say so
        // rather than let a client's pool reuse a connection the server is about to close.
        out.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    out
}

/// The body of every refusal, as the gateway writes it and as clients (the CLI among them) read it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// The stable code ([`ErrorCode::as_str`]).
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub request_id: String,
    /// A finer stable reason, where the code has several (e.g. `does_not_compile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn render(err: &ApiError, request_id: &str) -> Response {
    let body = ErrorBody {
        code: err.code.as_str().to_owned(),
        message: err.message.to_string(),
        request_id: request_id.to_owned(),
        reason: err.reason.clone(),
    };
    let body = serde_json::to_string(&body).unwrap_or_default();
    let mut res = Response::new(Body::from(body));
    *res.status_mut() = err.status();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secs) = err.retry_after_secs {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    if err.code == ErrorCode::Unauthenticated {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        let mut err = ApiError::new(ErrorCode::StoreUnavailable).with_detail(e.to_string());
        err.retry_after_secs = Some(1);
        err
    }
}

impl From<crate::openim::OpenImError> for ApiError {
    fn from(e: crate::openim::OpenImError) -> ApiError {
        use crate::openim::{ErrCode, OpenImError};
        let detail = e.to_string();
        let code = match &e {
            OpenImError::Unavailable(_) => ErrorCode::UpstreamUnavailable,
            OpenImError::Timeout(_) => ErrorCode::UpstreamTimeout,
            OpenImError::BadResponse(_) | OpenImError::NoRoute(_) => ErrorCode::UpstreamBadResponse,
            OpenImError::InvalidCall(_) => ErrorCode::BadRequest,
            OpenImError::TokenStore(_) => ErrorCode::StoreUnavailable,
            OpenImError::AuthFailed(_) => ErrorCode::UpstreamAuthFailed,
            OpenImError::CircuitOpen { retry_after, .. } => {
                let mut err = ApiError::new(ErrorCode::UpstreamCircuitOpen).with_detail(detail);
                err.retry_after_secs = Some(retry_after.as_secs_f64().ceil().max(1.0) as u64);
                return err;
            }
            OpenImError::Api { code, .. } => match code {
                ErrCode::Args => ErrorCode::BadRequest,
                ErrCode::NoPermission => ErrorCode::Forbidden,
                ErrCode::RecordNotFound | ErrCode::UserIdNotFound | ErrCode::GroupIdNotFound => {
                    return ApiError::new(ErrorCode::NotFound).with_message("not found").with_detail(detail)
                }
                ErrCode::RegisteredAlready
                | ErrCode::GroupIdExisted
                | ErrCode::RelationshipAlready
                | ErrCode::DuplicateKey => ErrorCode::Conflict,
                ErrCode::RateLimited => ErrorCode::Overloaded,
                _ => ErrorCode::UpstreamRejected,
            },
        };
        let message = match code {
            ErrorCode::BadRequest => "OpenIM rejected the arguments",
            ErrorCode::Forbidden => "OpenIM refused the operation for this identity",
            other => other.default_message(),
        };
        // OpenIM's errDlt and transport errors stay in the log: they can name internals.
        ApiError::new(code).with_message(message).with_detail(detail)
    }
}
