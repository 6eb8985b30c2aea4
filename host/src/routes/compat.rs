//! The OpenIM-compatible surface (client-auth §6): `POST /openim/<OpenIM path>` for unmodified
//! OpenIM SDKs, with a bearer token (§5) in the `token` header and OpenIM's envelope as answer.
//!
//! Only allow-listed routes are served; everything else answers errCode 1002, as OpenIM does for a
//! forbidden call. On served routes every identity field of the body (the fields OpenIM compares
//! with the token, and the ones it forgets to — contract §10) must name the caller or be absent
//! (then it is filled in); a key that differs from an identity field only in letter case is
//! refused, because OpenIM matches JSON keys case-insensitively. Calls carry the caller's own
//! OpenIM token, never the admin token. Routes that cannot be made safe (search over everyone's
//! messages, push tokens of any account, presigned URLs of any object, token minting and parsing,
//! directory enumeration) are refused.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Map, Value};

use crate::auth::{bearer, Caller};
use crate::error::ForeignEnvelope;
use crate::openim::{As, CallCtx, OpenImError};
use crate::state::AppState;
use crate::telemetry::RequestId;

/// What imgate enforces on one field of a compat request.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// Must name the caller; filled in when absent. A dotted path reaches into objects.
    Caller(&'static str),
    /// At least one of two fields must name the caller (OpenIM's SELF-IN).
    CallerIn(&'static str, &'static str),
    /// A list whose every item must be the caller.
    CallerList(&'static str),
    /// Must be absent or an empty list (no adding other users without their consent).
    Empty(&'static str),
    /// The caller must be a member of this group (a string) or of each group (a list).
    Member(&'static str),
    /// The caller must be an owner or admin of this group.
    GroupAdmin(&'static str),
    /// `seqRanges[*].conversationID` must not be a notification (`n_…`) conversation (§10.5).
    NoNotificationConversations,
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
    // OpenIM checks these itself (per-group membership, ROLE with self-edit, self-or-admin).
    ("/group/get_incremental_group_members_batch", &[]),
    ("/group/set_group_member_info", &[]),
    ("/group/get_specified_user_group_request_info", &[]),
    ("/msg/newest_seq", &[Caller("userID")]),
    ("/msg/pull_msg_by_seq", &[Caller("userID"), NoNotificationConversations]),
    ("/msg/revoke_msg", &[Caller("userID")]),
    ("/msg/mark_msgs_as_read", &[Caller("userID")]),
    ("/msg/mark_conversation_as_read", &[Caller("userID")]),
    ("/msg/get_conversations_has_read_and_max_seq", &[Caller("userID")]),
    ("/msg/set_conversation_has_read_seq", &[Caller("userID")]),
    ("/msg/clear_conversation_msg", &[Caller("userID")]),
    ("/msg/user_clear_all_msg", &[Caller("userID")]),
    ("/msg/delete_msgs", &[Caller("userID")]),
    ("/msg/get_server_time", &[]),
    ("/conversation/get_sorted_conversation_list", &[Caller("userID")]),
    ("/conversation/get_conversations_has_read_and_max_seq", &[Caller("userID")]),
    ("/conversation/get_all_conversations", &[Caller("ownerUserID")]),
    ("/conversation/get_conversation", &[Caller("ownerUserID")]),
    ("/conversation/get_conversations", &[Caller("ownerUserID")]),
    ("/conversation/set_conversations", &[CallerList("userIDs")]),
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
    ("/object/initiate_multipart_upload", &[]),
    ("/object/complete_multipart_upload", &[]),
    ("/jssdk/get_conversations", &[Caller("ownerUserID")]),
    ("/jssdk/get_active_conversations", &[Caller("ownerUserID")]),
];

/// OpenIM's envelope, as the compat surface answers.
fn envelope(err_code: i64, err_msg: &str, err_dlt: &str) -> Response {
    let body = json!({ "errCode": err_code, "errMsg": err_msg, "errDlt": err_dlt });
    let mut res = Response::new(Body::from(body.to_string()));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.extensions_mut().insert(ForeignEnvelope);
    res
}

fn no_permission(why: &str) -> Response {
    envelope(1002, "NoPermissionError", why)
}

/// `POST /openim/{*path}`.
pub async fn handle(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // OpenIM's own header rules come first (contract §2).
    if headers.get("operationID").is_none_or(|v| v.is_empty()) {
        return envelope(1001, "ArgsError", "header must have operationID");
    }
    let Some(token) = headers.get("token").and_then(|v| v.to_str().ok()).filter(|t| !t.is_empty()) else {
        return envelope(1001, "ArgsError", "header must have token");
    };
    let Some(caller) = bearer::authenticate(&state, token).await else {
        rid.note_reason("compat: bearer token unknown, expired or revoked");
        return envelope(1505, "TokenUnknownError", "token is not valid");
    };
    rid.note_user(&caller.user_id);
    let key = crate::ratelimit::RateKey {
        user_id: caller.user_id.clone(),
        class: "default".into(),
        tier: caller.tier.clone(),
    };
    if let Err(wait) = state.limiter.check(&key).await {
        // OpenIM's own limiter answers HTTP 429 with errCode 429 (contract §7).
        let mut res = envelope(429, "too many requests, please try again later", "");
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        let secs = crate::ratelimit::retry_after_secs(wait);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    let path = format!("/{path}");
    let Some((_, rules)) = ALLOWED.iter().find(|(p, _)| *p == path) else {
        rid.note_reason(&format!("compat: {path} is not on the allow-list"));
        return no_permission("this route is not available through imgate");
    };
    match serve(&state, &rid, &caller, &path, rules, &body).await {
        Ok(res) => res,
        Err(res) => res,
    }
}

async fn serve(
    state: &AppState,
    rid: &RequestId,
    caller: &Caller,
    path: &str,
    rules: &[Rule],
    body: &[u8],
) -> Result<Response, Response> {
    let parsed =
        crate::strict_json::parse_strict_json(body).map_err(|e| envelope(1001, "ArgsError", &e.to_string()))?;
    let Value::Object(mut obj) = parsed else { return Err(envelope(1001, "ArgsError", "body must be a JSON object")) };
    let ctx = CallCtx::for_request(rid);
    for rule in rules {
        apply(state, &ctx, caller, *rule, &mut obj).await.map_err(|why| {
            rid.note_reason(&format!("compat: {path}: {why}"));
            no_permission(&why)
        })?;
    }
    let who = As::User { user_id: &caller.user_id, platform_id: caller.platform_id };
    let forwarded = Bytes::from(Value::Object(obj).to_string());
    match state.openim.call_raw(&ctx, path, forwarded, who).await {
        Ok(answer) => Ok(crate::error::foreign_answer(answer.status, answer.body)),
        Err(e) => {
            rid.note_reason(&format!("compat: {}", e.outcome()));
            let code = match e {
                OpenImError::Timeout(_) => 4,
                OpenImError::Unavailable(_) => 14,
                _ => 500,
            };
            Err(envelope(code, "ServerInternalError", "OpenIM is unavailable"))
        }
    }
}

/// The object holding the last segment of a dotted path, created as needed; refuses keys that
/// differ from a segment only in case (OpenIM would read them as the same field).
fn slot<'a>(obj: &'a mut Map<String, Value>, dotted: &str) -> Result<(&'a mut Map<String, Value>, String), String> {
    let mut segs = dotted.split('.').peekable();
    let mut cur = obj;
    while let Some(seg) = segs.next() {
        if cur.keys().any(|k| k != seg && k.eq_ignore_ascii_case(seg)) {
            return Err(format!("field `{seg}` given in another letter case"));
        }
        if segs.peek().is_none() {
            return Ok((cur, seg.to_owned()));
        }
        let next = cur.entry(seg.to_owned()).or_insert_with(|| Value::Object(Map::new()));
        cur = next.as_object_mut().ok_or_else(|| format!("`{seg}` must be an object"))?;
    }
    Err("empty field path".into())
}

async fn apply(
    state: &AppState,
    ctx: &CallCtx,
    caller: &Caller,
    rule: Rule,
    obj: &mut Map<String, Value>,
) -> Result<(), String> {
    let me = Value::String(caller.user_id.clone());
    match rule {
        Caller(p) => {
            let (o, k) = slot(obj, p)?;
            match o.get(&k) {
                None | Some(Value::Null) => {
                    o.insert(k, me);
                }
                Some(v) if v == &me => {}
                Some(_) => return Err(format!("`{p}` must be the caller")),
            }
        }
        CallerIn(a, b) => {
            let named = |p: &str, obj: &mut Map<String, Value>| -> Result<bool, String> {
                let (o, k) = slot(obj, p)?;
                Ok(o.get(&k) == Some(&me))
            };
            if !(named(a, obj)? || named(b, obj)?) {
                return Err(format!("`{a}` or `{b}` must be the caller"));
            }
        }
        CallerList(p) => {
            let (o, k) = slot(obj, p)?;
            let ok = o.get(&k).and_then(Value::as_array).is_some_and(|a| !a.is_empty() && a.iter().all(|v| v == &me));
            if !ok {
                return Err(format!("`{p}` must list only the caller"));
            }
        }
        Empty(p) => {
            let (o, k) = slot(obj, p)?;
            match o.get(&k) {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) if a.is_empty() => {}
                Some(_) => return Err(format!("`{p}` must be empty: users join or are invited by group admins")),
            }
        }
        Member(p) | GroupAdmin(p) => {
            let (o, k) = slot(obj, p)?;
            let groups: Vec<String> = match o.get(&k) {
                Some(Value::String(g)) => vec![g.clone()],
                Some(Value::Array(a)) => a.iter().filter_map(|g| g.as_str().map(str::to_owned)).collect(),
                _ => return Err(format!("`{p}` is required")),
            };
            let needed = if matches!(rule, GroupAdmin(_)) { 60 } else { 20 };
            for g in groups.iter().take(100) {
                match state.openim.group_role(ctx, g, &caller.user_id).await.ok().flatten() {
                    Some(r) if r >= needed => {}
                    _ => {
                        return Err(format!(
                            "not {} of group {g}",
                            if needed == 60 { "an owner or admin" } else { "a member" }
                        ))
                    }
                }
            }
        }
        NoNotificationConversations => {
            let ranges = obj.get("seqRanges").and_then(Value::as_array).cloned().unwrap_or_default();
            if ranges.iter().any(|r| r["conversationID"].as_str().is_some_and(|c| c.starts_with("n_"))) {
                return Err("notification conversations are not served".into());
            }
        }
    }
    Ok(())
}

/// For the README and tests: the served paths.
pub fn allowed_paths() -> impl Iterator<Item = &'static str> {
    ALLOWED.iter().map(|(p, _)| *p)
}
