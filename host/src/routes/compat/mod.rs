//! The OpenIM-compatible surface (client-auth §6): `POST /openim/<OpenIM path>` for unmodified
//! OpenIM SDKs, with a bearer token (§5) in the `token` header and OpenIM's envelope as answer.
//!
//! Only allow-listed routes are served; everything else answers errCode 1002, as OpenIM does for a
//! forbidden call. A served body is *decoded* the way OpenIM decodes it (Go's key matching, see
//! [`gojson`]) against the route's request schema ([`schema`]): two keys for one field, wrong
//! types and over-long lists are refused (1001), unknown keys are dropped. The rules then run on
//! that canonical object — identity fields must name the caller (filled in when absent), every
//! group and conversation the body names must be the caller's ([`super::objects`]) — and the
//! canonical object is what OpenIM receives, so it decodes exactly what imgate checked. Answers
//! are filtered too: messages of a pull only if the caller sent or received them, other users'
//! private profile fields zeroed. Calls carry the caller's own OpenIM token, never the admin
//! token. Routes that cannot be made safe (search over everyone's messages, push tokens of any
//! account, presigned URLs of any object, token minting and parsing, directory enumeration) are
//! refused. The route × field × rule table is `docs/security.md`.

pub mod gojson;
mod jssdk;
pub mod schema;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Map, Value};

use super::objects::{self, Conversation};
use crate::auth::{bearer, Caller};
use crate::error::{ApiError, ForeignEnvelope};
use crate::openim::{As, CallCtx, OpenImError};
use crate::state::AppState;
use crate::telemetry::RequestId;

/// Distinct groups one request may name; above it the request is refused (each is a role lookup).
pub const MAX_GROUPS_CHECKED: usize = 100;

/// What imgate enforces on one field of a compat request. Paths are dotted field names of the
/// canonical body; `name[]` walks every item of a list.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Must name the caller; filled in when absent. No list steps.
    Caller(&'static str),
    /// At least one of two fields must name the caller (OpenIM's SELF-IN).
    CallerIn(&'static str, &'static str),
    /// A non-empty list whose every item is the caller.
    CallerList(&'static str),
    /// Must be absent or an empty list (no adding other users without their consent).
    Empty(&'static str),
    /// The caller must be a member of every group named here.
    Member(&'static str),
    /// The caller must be an owner or admin of every group named here.
    GroupAdmin(&'static str),
    /// Every conversation named here must be the caller's: a single chat with the caller on one
    /// side, or a group the caller is a member of; answers are filtered by message.
    Conversations(&'static str),
    /// As `Conversations`, and no `n_…` notification conversation (OpenIM serves those to
    /// anyone, contract §10.5).
    PullConversations(&'static str),
    /// An object-storage name must lie under `<caller>/` (OpenIM's own rule, checked here too).
    OwnObject(&'static str),
    /// A conversation record (`ConversationReq` at this path) names its parties consistently:
    /// `userID`, when set, is the caller's peer of that very single-chat id (OpenIM writes the
    /// peer's record too for private chats), `groupID`, when set, the group of that `sg_` id.
    ConversationParties(&'static str),
}

use Rule::*;

/// The allow-list: OpenIM path → rules. A path not listed is refused with errCode 1002.
pub const ALLOWED: &[(&str, &[Rule])] = &[
    ("/user/get_users_info", &[]),
    ("/user/update_user_info", &[Caller("userInfo.userID")]),
    ("/user/update_user_info_ex", &[Caller("userInfo.userID")]),
    ("/user/set_global_msg_recv_opt", &[Caller("userID")]),
    ("/user/get_user_client_config", &[Caller("userID")]),
    ("/user/subscribe_users_status", &[Caller("userID")]),
    ("/user/get_subscribe_users_status", &[Caller("userID")]),
    ("/user/process_user_command_add", &[Caller("userID")]),
    ("/user/process_user_command_delete", &[Caller("userID")]),
    ("/user/process_user_command_update", &[Caller("userID")]),
    ("/user/process_user_command_get", &[Caller("userID")]),
    ("/user/process_user_command_get_all", &[Caller("userID")]),
    ("/friend/add_friend", &[Caller("fromUserID")]),
    ("/friend/add_friend_response", &[Caller("toUserID")]),
    ("/friend/delete_friend", &[Caller("ownerUserID")]),
    ("/friend/get_friend_apply_list", &[Caller("userID")]),
    ("/friend/get_self_friend_apply_list", &[Caller("userID")]),
    ("/friend/get_friend_list", &[Caller("userID")]),
    ("/friend/get_designated_friends", &[Caller("ownerUserID")]),
    ("/friend/set_friend_remark", &[Caller("ownerUserID")]),
    ("/friend/add_black", &[Caller("ownerUserID")]),
    ("/friend/get_black_list", &[Caller("userID")]),
    ("/friend/get_specified_blacks", &[Caller("ownerUserID")]),
    ("/friend/remove_black", &[Caller("ownerUserID")]),
    ("/friend/is_friend", &[Caller("userID1")]),
    ("/friend/get_designated_friend_apply", &[CallerIn("fromUserID", "toUserID")]),
    ("/friend/get_friend_id", &[Caller("userID")]),
    ("/friend/get_specified_friends_info", &[Caller("ownerUserID")]),
    ("/friend/update_friends", &[Caller("ownerUserID")]),
    ("/friend/get_incremental_friends", &[Caller("userID")]),
    ("/friend/get_full_friend_user_ids", &[Caller("userID")]),
    ("/friend/get_self_unhandled_apply_count", &[Caller("userID")]),
    ("/group/create_group", &[Caller("ownerUserID"), Empty("memberUserIDs"), Empty("adminUserIDs")]),
    ("/group/join_group", &[Caller("inviterUserID")]),
    ("/group/quit_group", &[Caller("userID")]),
    ("/group/get_groups_info", &[Member("groupIDs")]),
    ("/group/get_joined_group_list", &[Caller("fromUserID")]),
    ("/group/get_group_member_list", &[Member("groupID")]),
    ("/group/get_group_members_info", &[Member("groupID")]),
    ("/group/invite_user_to_group", &[GroupAdmin("groupID")]),
    ("/group/kick_group", &[GroupAdmin("groupID")]),
    ("/group/mute_group_member", &[GroupAdmin("groupID")]),
    ("/group/cancel_mute_group_member", &[GroupAdmin("groupID")]),
    ("/group/mute_group", &[GroupAdmin("groupID")]),
    ("/group/cancel_mute_group", &[GroupAdmin("groupID")]),
    ("/group/set_group_info_ex", &[GroupAdmin("groupID")]),
    ("/group/group_application_response", &[GroupAdmin("groupID")]),
    ("/group/transfer_group", &[Caller("oldOwnerUserID")]),
    ("/group/dismiss_group", &[GroupAdmin("groupID")]),
    ("/group/get_recv_group_applicationList", &[Caller("fromUserID")]),
    ("/group/get_user_req_group_applicationList", &[Caller("userID")]),
    ("/group/get_full_join_group_ids", &[Caller("userID")]),
    ("/group/get_incremental_join_groups", &[Caller("userID")]),
    ("/group/get_group_application_unhandled_count", &[Caller("userID")]),
    ("/group/get_full_group_member_user_ids", &[Member("groupID")]),
    ("/group/get_incremental_group_members", &[Member("groupID")]),
    // OpenIM checks these itself too (per-group membership, ROLE with self-edit, self-or-admin).
    ("/group/get_incremental_group_members_batch", &[Caller("userID"), Member("reqList[].groupID")]),
    ("/group/set_group_member_info", &[Member("members[].groupID")]),
    ("/group/get_specified_user_group_request_info", &[]),
    ("/msg/newest_seq", &[Caller("userID")]),
    ("/msg/pull_msg_by_seq", &[Caller("userID"), PullConversations("seqRanges[].conversationID")]),
    ("/msg/revoke_msg", &[Caller("userID"), Conversations("conversationID")]),
    ("/msg/mark_msgs_as_read", &[Caller("userID"), Conversations("conversationID")]),
    ("/msg/mark_conversation_as_read", &[Caller("userID"), Conversations("conversationID")]),
    ("/msg/get_conversations_has_read_and_max_seq", &[Caller("userID"), Conversations("conversationIDs")]),
    ("/msg/set_conversation_has_read_seq", &[Caller("userID"), Conversations("conversationID")]),
    ("/msg/clear_conversation_msg", &[Caller("userID"), Conversations("conversationIDs")]),
    ("/msg/user_clear_all_msg", &[Caller("userID")]),
    ("/msg/delete_msgs", &[Caller("userID"), Conversations("conversationID")]),
    ("/msg/get_server_time", &[]),
    ("/conversation/get_sorted_conversation_list", &[Caller("userID"), Conversations("conversationIDs")]),
    ("/conversation/get_conversations_has_read_and_max_seq", &[Caller("userID"), Conversations("conversationIDs")]),
    ("/conversation/get_all_conversations", &[Caller("ownerUserID")]),
    ("/conversation/get_conversation", &[Caller("ownerUserID"), Conversations("conversationID")]),
    ("/conversation/get_conversations", &[Caller("ownerUserID"), Conversations("conversationIDs")]),
    (
        "/conversation/set_conversations",
        &[CallerList("userIDs"), Conversations("conversation.conversationID"), ConversationParties("conversation")],
    ),
    ("/conversation/get_full_conversation_ids", &[Caller("userID")]),
    ("/conversation/get_incremental_conversations", &[Caller("userID")]),
    ("/conversation/get_owner_conversation", &[Caller("userID")]),
    ("/conversation/get_not_notify_conversation_ids", &[Caller("userID")]),
    ("/conversation/get_pinned_conversation_ids", &[Caller("userID")]),
    ("/conversation/delete_conversations", &[Caller("ownerUserID")]),
    ("/conversation/update_conversations_by_user", &[Caller("userID")]),
    ("/third/set_app_badge", &[Caller("userID")]),
    // Object uploads: OpenIM requires names under "<caller>/" for non-admins (contract §1.3).
    ("/object/part_limit", &[]),
    ("/object/part_size", &[]),
    ("/object/initiate_multipart_upload", &[OwnObject("name")]),
    ("/object/complete_multipart_upload", &[OwnObject("name")]),
    ("/jssdk/get_conversations", &[Caller("ownerUserID"), Conversations("conversationIDs")]),
    ("/jssdk/get_active_conversations", &[Caller("ownerUserID")]),
];

/// OpenIM's envelope, as the compat surface answers.
pub(super) fn envelope(err_code: i64, err_msg: &str, err_dlt: &str) -> Response {
    let body = json!({ "errCode": err_code, "errMsg": err_msg, "errDlt": err_dlt });
    let mut res = Response::new(Body::from(body.to_string()));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.extensions_mut().insert(ForeignEnvelope);
    res
}

/// A refusal in OpenIM's words, recorded as refused (with the reason) in the audit trail.
fn refuse(rid: &RequestId, err_code: i64, why: &str) -> Response {
    rid.note_refusal(&format!("compat: {why}"));
    let name = if err_code == 1001 { "ArgsError" } else { "NoPermissionError" };
    envelope(err_code, name, why)
}

/// The name of a compat operation in `[[route_plugins]]`: `openim` + its OpenIM path with `.`
/// for `/` (`/user/update_user_info_ex` → `openim.user.update_user_info_ex`).
pub fn route_name(path: &str) -> String {
    format!("openim{}", path.replace('/', "."))
}

/// Whether `name` is the route name of an allow-listed compat operation.
pub fn is_route_name(name: &str) -> bool {
    ALLOWED.iter().any(|(p, _)| route_name(p) == name)
}

/// The OpenIM path of a compat request (`/openim/user/x` → `/user/x`).
fn openim_path(uri: &axum::http::Uri) -> String {
    uri.path().strip_prefix("/openim").unwrap_or(uri.path()).to_owned()
}

/// Stage "authenticate" of the compat surface (a route layer, outermost of each compat route):
/// OpenIM's own header rules first (contract §2), then the bearer token (client-auth §5) → the
/// [`Caller`] extension. Everything inside it (rate limit, canonical decoding, the plugin chain,
/// the handler) answers in OpenIM's envelope: refusals of the inner stages, rendered as imgate
/// errors, are turned into envelopes here, so an unmodified SDK always reads OpenIM's shape.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(rid) = req.extensions().get::<RequestId>().cloned() else {
        return envelope(500, "ServerInternalError", "no request id");
    };
    let headers = req.headers();
    if headers.get("operationID").is_none_or(|v| v.is_empty()) {
        return refuse(&rid, 1001, "header must have operationID");
    }
    let Some(token) = headers.get("token").and_then(|v| v.to_str().ok()).filter(|t| !t.is_empty()) else {
        return refuse(&rid, 1001, "header must have token");
    };
    let found = match bearer::authenticate(&state, token).await {
        Ok(found) => found,
        Err(e) => return as_envelope(&rid, ApiError::from(e).into_response()),
    };
    let Some(caller) = found else {
        rid.note_refusal("compat: bearer token unknown, expired or revoked");
        return envelope(1505, "TokenUnknownError", "token is not valid");
    };
    rid.note_user(&caller.user_id);
    req.extensions_mut().insert(caller);
    let res = next.run(req).await;
    as_envelope(&rid, res)
}

/// An inner stage's imgate error (rate limit, plugin verdict, policy failure) in OpenIM's words.
fn as_envelope(rid: &RequestId, res: Response) -> Response {
    if res.extensions().get::<ForeignEnvelope>().is_some() {
        return res;
    }
    let Some(err) = res.extensions().get::<ApiError>().cloned() else { return res };
    refusal(rid, &err)
}

/// Any imgate refusal of a `/openim/*` request in OpenIM's envelope, with the code OpenIM itself
/// would answer (contract §3): an unmodified SDK reads nothing else, and never a token errCode
/// unless its own bearer token is at fault. Recorded in the request's audit record. Used by the
/// compat stages and, for refusals of the outer stages (deadline, load shedding, header limits),
/// by the rescue point.
///
/// | imgate | OpenIM answer |
/// |---|---|
/// | `rate_limited`, `overloaded` | HTTP 429, errCode 429 (OpenIM's own limiter), `Retry-After` |
/// | `timeout`, `upstream_timeout` | errCode 4 (gRPC DeadlineExceeded) |
/// | `upstream_unavailable`, `upstream_circuit_open`, `store_unavailable`, `policy_unavailable` | errCode 14 (gRPC Unavailable), `Retry-After` when known |
/// | other 5xx (`upstream_auth_failed`, `upstream_bad_response`, `internal`, …) | errCode 500 `ServerInternalError` |
/// | `unauthenticated` | errCode 1505 `TokenUnknownError` (the bearer token) |
/// | `bad_request`, `payload_too_large`, `headers_too_large`, `unsupported_media_type` | errCode 1001 `ArgsError` |
/// | other 4xx (`policy_denied`, `forbidden`, …) | errCode 1002 `NoPermissionError` |
///
/// errDlt carries imgate's stable code (and a plugin's reason), never internal detail.
pub fn refusal(rid: &RequestId, err: &ApiError) -> Response {
    use crate::error::ErrorCode as C;
    let status = err.status();
    let retry_after = |mut res: Response| {
        if let Some(v) = err.retry_after_secs.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        res
    };
    if status == StatusCode::TOO_MANY_REQUESTS || err.code == C::Overloaded {
        // OpenIM's own limiter answers HTTP 429 with errCode 429 (contract §7).
        rid.note_refusal(&format!("compat: {}", err.code.as_str()));
        let mut out = envelope(429, "too many requests, please try again later", "");
        *out.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if err.retry_after_secs.is_none() {
            out.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        return retry_after(out);
    }
    if status.is_server_error() {
        rid.note_failure(&format!("compat: {}", err.code.as_str()));
        let (code, name) = match err.code {
            C::Timeout | C::UpstreamTimeout => (4, "DeadlineExceeded"),
            C::UpstreamUnavailable | C::UpstreamCircuitOpen | C::StoreUnavailable | C::PolicyUnavailable => {
                (14, "Unavailable")
            }
            _ => (500, "ServerInternalError"),
        };
        return retry_after(envelope(code, name, err.code.as_str()));
    }
    if err.code == C::Unauthenticated {
        rid.note_refusal("compat: bearer token unknown, expired or revoked");
        return envelope(1505, "TokenUnknownError", "token is not valid");
    }
    let why = match &err.reason {
        Some(reason) => format!("{reason}: {}", err.message),
        None => format!("{}: {}", err.code.as_str(), err.message),
    };
    let args = matches!(err.code, C::BadRequest | C::PayloadTooLarge | C::HeadersTooLarge | C::UnsupportedMediaType);
    refuse(rid, if args { 1001 } else { 1002 }, &why)
}

/// Stage "canonical body" (inside the rate limit, before the plugin chain): the body decoded
/// as OpenIM decodes it and re-encoded, so plugins read exact field names — a plugin looking at
/// `userInfo.nickname` cannot be walked around with `UserInfo.NickName`.
pub async fn canonicalize(req: Request, next: Next) -> Response {
    let Some(rid) = req.extensions().get::<RequestId>().cloned() else {
        return envelope(500, "ServerInternalError", "no request id");
    };
    let path = openim_path(req.uri());
    let Some(schema) = schema::request_schema(&path) else {
        return refuse(&rid, 1002, &format!("{path} is not on the allow-list"));
    };
    let (mut parts, body) = req.into_parts();
    // The route's body cap (`server.max_body_bytes`) already bounds what can be read here.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return refuse(&rid, 1001, "the body could not be read");
    };
    if jssdk::is_protobuf(&parts.headers) {
        // `/jssdk/*` negotiate protobuf (contract §1.3): plugins and rules read it as JSON.
        let canonical = match jssdk::to_json(&path, &bytes) {
            Ok(obj) => Value::Object(obj).to_string(),
            Err(e) => return refuse(&rid, 1001, &format!("{path}: {e}")),
        };
        parts.headers.remove(header::CONTENT_LENGTH);
        return next.run(Request::from_parts(parts, Body::from(canonical))).await;
    }
    let canonical = match gojson::decode(schema, &bytes) {
        Ok(obj) => Value::Object(obj).to_string(),
        Err(e) => return refuse(&rid, 1001, &format!("{path}: {e}")),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    next.run(Request::from_parts(parts, Body::from(canonical))).await
}

/// `POST /openim/<allow-listed path>`: the body (canonical, possibly changed by a plugin, so
/// decoded again) bound to the caller, its objects checked, forwarded with the caller's token.
pub async fn handle(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(caller): Extension<Caller>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let path = openim_path(&uri);
    let (Some((_, rules)), Some(schema)) = (ALLOWED.iter().find(|(p, _)| *p == path), schema::request_schema(&path))
    else {
        return refuse(&rid, 1002, &format!("{path} is not on the allow-list"));
    };
    let mut obj = match gojson::decode(schema, &body) {
        Ok(obj) => obj,
        Err(e) => return refuse(&rid, 1001, &format!("{path}: {e}")),
    };
    if let Err(why) = bind_identity(rules, &caller.user_id, &mut obj) {
        return refuse(&rid, 1002, &format!("{path}: {why}"));
    }
    let ctx = CallCtx::for_request(&rid);
    for rule in *rules {
        if let Err(why) = check_objects(&state, &ctx, &caller.user_id, *rule, &obj).await {
            return refuse(&rid, 1002, &format!("{path}: {why}"));
        }
    }
    if jssdk::is_protobuf(&headers) {
        return jssdk::forward(&state, &rid, &ctx, &caller, &path, &obj).await;
    }
    forward(&state, &rid, &ctx, &caller, &path, obj).await
}

/// `POST /openim/{*path}` for every path not on the allow-list (after [`authenticate`]).
pub async fn unlisted(Extension(rid): Extension<RequestId>, uri: axum::http::Uri) -> Response {
    let path = openim_path(&uri);
    rid.note_refusal(&format!("compat: {path} is not on the allow-list"));
    envelope(1002, "NoPermissionError", "this route is not available through imgate")
}

/// Sends the canonical body with the caller's token; filters what the answer may carry back.
async fn forward(
    state: &AppState,
    rid: &RequestId,
    ctx: &CallCtx,
    caller: &Caller,
    path: &str,
    obj: Map<String, Value>,
) -> Response {
    let who = As::User { user_id: &caller.user_id, platform_id: caller.platform_id };
    let forwarded = Bytes::from(Value::Object(obj).to_string());
    let answer = match state.openim.call_raw(ctx, path, forwarded, who).await {
        Ok(answer) => answer,
        Err(e) => {
            if matches!(e, OpenImError::NoRoute(_)) {
                rid.note_failure(&format!("compat: {}", e.outcome()));
                // As OpenIM itself answers a route it does not have (gin's default).
                let mut res = Response::new(Body::from("404 page not found"));
                *res.status_mut() = StatusCode::NOT_FOUND;
                res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                res.extensions_mut().insert(ForeignEnvelope);
                return res;
            }
            return refusal(rid, &ApiError::from(e));
        }
    };
    if answer.err_code != 0 {
        // OpenIM's own refusal: the audit trail says refused, with OpenIM's code (not its text).
        rid.note_refusal(&format!("compat: {path}: OpenIM answered errCode {}", answer.err_code));
        return crate::error::foreign_answer(answer.status, answer.body);
    }
    // Only answers with data can carry other users' records or messages.
    let Ok(mut envelope_value) = serde_json::from_slice::<Value>(&answer.body) else {
        return crate::error::foreign_answer(answer.status, answer.body);
    };
    let Some(data) = envelope_value.get_mut("data") else {
        return crate::error::foreign_answer(answer.status, answer.body);
    };
    let mut changed = objects::redact_other_users(data, &caller.user_id);
    if path == "/msg/pull_msg_by_seq" {
        let dropped = objects::retain_own_messages(data, &caller.user_id, None);
        if dropped > 0 {
            rid.note_reason(&format!("compat: {dropped} messages of other users withheld"));
        }
        changed += dropped;
    }
    if changed == 0 {
        return crate::error::foreign_answer(answer.status, answer.body);
    }
    crate::error::foreign_answer(answer.status, Bytes::from(envelope_value.to_string()))
}

/// The object holding the last segment of a dotted path (no list steps), created as needed.
fn slot<'a>(obj: &'a mut Map<String, Value>, dotted: &str) -> Result<(&'a mut Map<String, Value>, String), String> {
    let mut segs = dotted.split('.').peekable();
    let mut cur = obj;
    while let Some(seg) = segs.next() {
        if segs.peek().is_none() {
            return Ok((cur, seg.to_owned()));
        }
        let next = cur.entry(seg.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        cur = next.as_object_mut().ok_or_else(|| format!("`{seg}` must be an object"))?;
    }
    Err("empty field path".into())
}

/// Why the compat surface refuses a request's identity or objects (OpenIM's errCode 1002,
/// `NoPermissionError`). The words name the request's own fields and ids, never a server detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("`{0}` must be the caller")]
    NotTheCaller(&'static str),
    #[error("`{0}` or `{1}` must be the caller")]
    NeitherIsTheCaller(&'static str, &'static str),
    #[error("`{0}` must list only the caller")]
    NotOnlyTheCaller(&'static str),
    #[error("`{0}` must be empty: users join or are invited by group admins")]
    MustBeEmpty(&'static str),
    #[error("`{0}` is required")]
    Required(&'static str),
    #[error("{0}")]
    Shape(String),
    #[error("notification conversations are not served")]
    NotificationConversation,
    #[error("conversation {0} is not the caller's")]
    ForeignConversation(String),
    #[error("`{0}` must start with the caller's id and `/`")]
    NotOwnObject(&'static str),
    #[error("`{0}.userID` is not the other side of {1}")]
    NotThePeer(&'static str, String),
    #[error("`{0}.groupID` is not the group of {1}")]
    NotTheGroup(&'static str, String),
    #[error("more than {MAX_GROUPS_CHECKED} groups in one request")]
    TooManyGroups,
    #[error("not an owner or admin of group {0}")]
    NotGroupAdmin(String),
    #[error("not a member of group {0}")]
    NotMember(String),
}

/// The identity rules (`Caller`, `CallerIn`, `CallerList`, `Empty`) on a decoded body: every
/// identity field names `caller` (filled in when absent), or the body is refused. Pure, so the
/// Go differential test can hold it against Go's decoder.
pub fn bind_identity(rules: &[Rule], caller: &str, obj: &mut Map<String, Value>) -> Result<(), Refusal> {
    for rule in rules {
        match *rule {
            Caller(p) => {
                let (o, k) = slot(obj, p).map_err(Refusal::Shape)?;
                match o.get(&k) {
                    None => {
                        o.insert(k, Value::from(caller));
                    }
                    Some(v) if v == caller => {}
                    Some(_) => return Err(Refusal::NotTheCaller(p)),
                }
            }
            CallerIn(a, b) => {
                let named = |p: &str| gojson::strings_at(obj, p) == [caller];
                if !(named(a) || named(b)) {
                    return Err(Refusal::NeitherIsTheCaller(a, b));
                }
            }
            CallerList(p) => {
                let items = gojson::strings_at(obj, p);
                if items.is_empty() || items.iter().any(|u| *u != caller) {
                    return Err(Refusal::NotOnlyTheCaller(p));
                }
            }
            Empty(p) if !gojson::strings_at(obj, p).is_empty() => {
                return Err(Refusal::MustBeEmpty(p));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The object rules: every group and conversation the body names is the caller's.
async fn check_objects(
    state: &AppState,
    ctx: &CallCtx,
    me: &str,
    rule: Rule,
    obj: &Map<String, Value>,
) -> Result<(), Refusal> {
    match rule {
        Member(p) | GroupAdmin(p) => {
            let needed = if matches!(rule, GroupAdmin(_)) { 60 } else { 20 };
            let groups = gojson::strings_at(obj, p);
            if groups.is_empty() && !p.contains("[]") {
                return Err(Refusal::Required(p));
            }
            check_groups(state, ctx, me, &groups, needed).await?;
        }
        Conversations(p) | PullConversations(p) => {
            let mut groups = Vec::new();
            for cid in gojson::strings_at(obj, p) {
                if matches!(rule, PullConversations(_)) && cid.starts_with("n_") {
                    return Err(Refusal::NotificationConversation);
                }
                match objects::classify(me, cid) {
                    Conversation::Single => {}
                    Conversation::Group(g) => groups.push(g),
                    Conversation::Foreign => return Err(Refusal::ForeignConversation(cid.to_owned())),
                }
            }
            check_groups(state, ctx, me, &groups, 20).await?;
        }
        OwnObject(p) => {
            let prefix = format!("{me}/");
            if gojson::strings_at(obj, p).iter().any(|name| !name.starts_with(&prefix)) {
                return Err(Refusal::NotOwnObject(p));
            }
        }
        ConversationParties(p) => {
            let field = |f: &str| gojson::strings_at(obj, &format!("{p}.{f}")).first().copied().unwrap_or("");
            let (cid, peer, group) = (field("conversationID"), field("userID"), field("groupID"));
            if !peer.is_empty() {
                let single = objects::single_conversation_id(me, peer);
                let notification = single.replacen("si_", "sn_", 1);
                if cid != single && cid != notification {
                    return Err(Refusal::NotThePeer(p, cid.to_owned()));
                }
            }
            if !group.is_empty() && cid.strip_prefix("sg_") != Some(group) {
                return Err(Refusal::NotTheGroup(p, cid.to_owned()));
            }
        }
        Caller(_) | CallerIn(..) | CallerList(_) | Empty(_) => {}
    }
    Ok(())
}

/// The caller's role must be at least `needed` in every distinct group; more than
/// [`MAX_GROUPS_CHECKED`] distinct groups are refused, never partly checked.
pub(crate) async fn check_groups(
    state: &AppState,
    ctx: &CallCtx,
    me: &str,
    groups: &[&str],
    needed: i64,
) -> Result<(), Refusal> {
    let mut distinct: Vec<&str> = groups.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() > MAX_GROUPS_CHECKED {
        return Err(Refusal::TooManyGroups);
    }
    for g in distinct {
        // An OpenIM failure is a refusal: the check fails closed.
        match state.openim.group_role(ctx, g, me).await.ok().flatten() {
            Some(r) if r >= needed => {}
            _ if needed >= 60 => return Err(Refusal::NotGroupAdmin(g.to_owned())),
            _ => return Err(Refusal::NotMember(g.to_owned())),
        }
    }
    Ok(())
}

/// For the README and tests: the served paths.
pub fn allowed_paths() -> impl Iterator<Item = &'static str> {
    ALLOWED.iter().map(|(p, _)| *p)
}

#[cfg(test)]
mod tests {
    use super::gojson::{Ty, F};
    use super::*;

    /// The type a rule path reaches in a schema, walking `[]` steps.
    fn reach(schema: &'static [F], path: &str) -> Option<(Ty, bool)> {
        let mut fields = schema;
        let mut in_list = false;
        let segs: Vec<&str> = path.split('.').collect();
        for (i, seg) in segs.iter().enumerate() {
            let (name, each) = seg.strip_suffix("[]").map_or((*seg, false), |n| (n, true));
            let F(_, ty) = *fields.iter().find(|f| f.0 == name)?;
            in_list |= each;
            if i + 1 == segs.len() {
                return Some((ty, in_list));
            }
            fields = match ty {
                Ty::Obj(f) if !each => f,
                Ty::Objs(f) if each => f,
                _ => return None,
            };
        }
        None
    }

    /// Every rule names a field of its route's schema, of a type the rule can read: a typo in
    /// a rule would otherwise check nothing.
    #[test]
    fn every_rule_path_is_a_string_field_of_the_schema() {
        for (path, rules) in ALLOWED {
            let schema = schema::request_schema(path).unwrap_or_else(|| panic!("{path} has no schema"));
            for rule in *rules {
                let fields: Vec<&str> = match *rule {
                    CallerIn(a, b) => vec![a, b],
                    Caller(p) | CallerList(p) | Empty(p) | Member(p) | GroupAdmin(p) | Conversations(p)
                    | PullConversations(p) | OwnObject(p) => vec![p],
                    ConversationParties(p) => {
                        assert!(matches!(reach(schema, p), Some((Ty::Obj(_), false))), "{path}: {rule:?}");
                        vec![]
                    }
                };
                for f in fields {
                    let got = reach(schema, f);
                    let ok = match (rule, got) {
                        (Caller(_), Some((Ty::Str, false))) => true,
                        (CallerList(_) | Empty(_), Some((Ty::Strs, false))) => true,
                        (_, Some((Ty::Str | Ty::Strs, _))) => !matches!(rule, Caller(_) | CallerList(_) | Empty(_)),
                        _ => false,
                    };
                    assert!(ok, "{path}: rule {rule:?} reaches {got:?}");
                }
            }
        }
    }
}
