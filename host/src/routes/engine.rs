//! Runs one route of the table: validate the input, check, bind, call OpenIM, shape the answer.
//!
//! The order for every table route (after the pipeline's authenticate and rate-limit stages):
//! path parameters and query typed → body parsed strictly (duplicate keys 400) and matched
//! against the allow-list (unknown fields 400, wrong types 400) → the route's checks (membership
//! and roles asked of OpenIM with the admin token, because OpenIM skips them) → the OpenIM
//! request built from the template, identity taken from the session → the call, with the
//! caller's own OpenIM token unless the route names an admin-only operation → the answer filtered
//! to what is the caller's (`super::objects`: other users' private fields, messages of other
//! pairs) and built from OpenIM's `data`. Nothing a client sends reaches OpenIM except through
//! the template. Direct sends between two ids whose conversation id is ambiguous are refused.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use super::table::{
    parse_check, parse_expr, parse_type, CheckKind, Expr, FieldType, ResponseField, RouteSpec, TokenChoice,
};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::openim::{As, CallCtx};
use crate::state::AppState;

/// What a route's expressions can see.
struct Env<'a> {
    caller: &'a Caller,
    path: HashMap<String, String>,
    query: Map<String, Value>,
    body: Map<String, Value>,
}

const MAX_STRING: usize = 4096;
const MAX_LIST: usize = 100;

/// Handles one request on `route`.
pub async fn run(
    state: &AppState,
    route: &Arc<RouteSpec>,
    ctx: CallCtx,
    caller: &Caller,
    path: Vec<(String, String)>,
    raw_query: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut env = Env { caller, path: HashMap::new(), query: Map::new(), body: Map::new() };
    for (k, v) in path {
        let t = route.params.get(&k).map(String::as_str).unwrap_or("string");
        check_value(&k, &Value::String(v.clone()), t)?;
        env.path.insert(k, v);
    }
    env.query = parse_query(route, raw_query.as_deref().unwrap_or(""))?;
    env.body = parse_body(route, &body)?;
    for c in &route.checks {
        let (kind, expr) = parse_check(c).map_err(ApiError::internal)?;
        let group = eval(&expr, &env)?
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| ApiError::internal("check without a value"))?;
        check_group_role(state, &ctx, kind, &group, &caller.user_id).await?;
    }
    let request = expand(&route.request, &env)?.unwrap_or(Value::Object(Map::new()));
    let who = match route.token {
        TokenChoice::User => As::User { user_id: &caller.user_id, platform_id: caller.platform_id },
        TokenChoice::Admin => As::Admin,
    };
    refuse_ambiguous_send(&route.openim, &request)?;
    let mut data = state.openim.call_path(&ctx, &route.openim, route.method == "GET", &request, who).await?;
    // Answers carry only what is the caller's (super::objects): other users' private profile
    // fields zeroed, and pulled messages only those between the caller and the route's peer.
    super::objects::redact_other_users(&mut data, &caller.user_id);
    if route.openim == PULL_MSG_BY_SEQ {
        let peer = single_peer(&route.request, &env);
        super::objects::retain_own_messages(&mut data, &caller.user_id, peer.as_deref());
    }
    if route.response.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(shape(&route.response, &data)?).into_response())
}

const SEND_MSG: &str = "/msg/send_msg";
const PULL_MSG_BY_SEQ: &str = "/msg/pull_msg_by_seq";

/// A direct message between two users whose conversation id another pair of ids also yields
/// (ids with `_`, contract §8.3) would land in that pair's history too: refused.
fn refuse_ambiguous_send(openim: &str, request: &Value) -> Result<(), ApiError> {
    if openim != SEND_MSG || request["sessionType"] != 1 {
        return Ok(());
    }
    let (from, to) = (request["sendID"].as_str().unwrap_or(""), request["recvID"].as_str().unwrap_or(""));
    if super::objects::ambiguous_pair(from, to) {
        return Err(ApiError::forbidden().with_message(
            "direct messages between these two user ids are refused: another pair of ids has the same conversation id",
        ));
    }
    Ok(())
}

/// The peer of a single-chat template (`$conv_single(NAME)` anywhere in it), if any.
fn single_peer(tpl: &Value, env: &Env<'_>) -> Option<String> {
    match tpl {
        Value::String(s) => match parse_expr(s) {
            Ok(Expr::ConvSingle(n)) => env.path.get(&n).cloned(),
            _ => None,
        },
        Value::Array(items) => items.iter().find_map(|i| single_peer(i, env)),
        Value::Object(m) => m.values().find_map(|v| single_peer(v, env)),
        _ => None,
    }
}

/// Typed check of one input value (A7: ids follow imgate's id rules, lengths are bounded).
fn check_value(name: &str, v: &Value, t: &str) -> Result<(), ApiError> {
    let Some((ft, _)) = parse_type(t) else { return Err(ApiError::internal(format!("bad type {t}"))) };
    let bad = |what: &str| ApiError::bad_request(format!("{name}: {what}"));
    let is_group =
        |s: &str| (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-".contains(&b));
    let string = |v: &Value| v.as_str().map(str::to_owned);
    match ft {
        FieldType::String => match v.as_str() {
            Some(s) if s.chars().count() <= MAX_STRING => Ok(()),
            _ => Err(bad("expected a string of at most 4096 characters")),
        },
        FieldType::Int => v.as_i64().map(|_| ()).ok_or_else(|| bad("expected an integer")),
        FieldType::Bool => v.as_bool().map(|_| ()).ok_or_else(|| bad("expected true or false")),
        FieldType::UserId => match string(v) {
            Some(s) if super::admin::is_valid_user_id(&s) => Ok(()),
            _ => Err(bad("expected a user id (1-64 of A-Z, a-z, 0-9, _)")),
        },
        FieldType::GroupId => match string(v) {
            Some(s) if is_group(&s) => Ok(()),
            _ => Err(bad("expected a group id (1-64 of A-Z, a-z, 0-9, _, -)")),
        },
        FieldType::StringList | FieldType::UserIdList => {
            let items = v
                .as_array()
                .filter(|a| a.len() <= MAX_LIST)
                .ok_or_else(|| bad("expected a list of at most 100 items"))?;
            let item_type = if ft == FieldType::UserIdList { "user_id" } else { "string" };
            items.iter().try_for_each(|i| check_value(name, i, item_type))
        }
    }
}

fn parse_query(route: &RouteSpec, raw: &str) -> Result<Map<String, Value>, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw).map_err(|_| ApiError::bad_request("malformed query string"))?;
    let mut out = Map::new();
    for (k, v) in pairs {
        let t = route.query.get(&k).ok_or_else(|| ApiError::bad_request(format!("unknown query parameter `{k}`")))?;
        let value = match parse_type(t) {
            Some((FieldType::Int, _)) => {
                Value::from(v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("{k}: expected an integer")))?)
            }
            Some((FieldType::Bool, _)) => Value::from(
                v.parse::<bool>().map_err(|_| ApiError::bad_request(format!("{k}: expected true or false")))?,
            ),
            _ => Value::String(v),
        };
        check_value(&k, &value, t)?;
        if out.insert(k.clone(), value).is_some() {
            return Err(ApiError::bad_request(format!("query parameter `{k}` given twice")));
        }
    }
    require_all(&route.query, &out)?;
    Ok(out)
}

fn parse_body(route: &RouteSpec, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if route.body.is_empty() {
        return if body.iter().all(u8::is_ascii_whitespace) || body == b"{}" {
            Ok(Map::new())
        } else {
            Err(ApiError::bad_request("this route takes no body"))
        };
    }
    // No body at all is an empty object (routes whose fields are all optional).
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    let value = crate::strict_json::parse_strict_json(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let Value::Object(map) = value else { return Err(ApiError::bad_request("the body must be a JSON object")) };
    for (k, v) in &map {
        let t = route.body.get(k).ok_or_else(|| ApiError::bad_request(format!("unknown field `{k}`")))?;
        check_value(k, v, t)?;
    }
    require_all(&route.body, &map)?;
    Ok(map)
}

fn require_all(spec: &std::collections::BTreeMap<String, String>, got: &Map<String, Value>) -> Result<(), ApiError> {
    for (k, t) in spec {
        if !t.ends_with('?') && !got.contains_key(k) {
            return Err(ApiError::bad_request(format!("missing field `{k}`")));
        }
    }
    Ok(())
}

/// Evaluates an expression; `None` = an optional input that is absent.
fn eval(e: &Expr, env: &Env<'_>) -> Result<Option<Value>, ApiError> {
    let path = |n: &str| env.path.get(n).cloned().ok_or_else(|| ApiError::internal(format!("no path parameter {n}")));
    Ok(match e {
        Expr::User => Some(Value::from(env.caller.user_id.clone())),
        Expr::Platform => Some(Value::from(env.caller.platform_id)),
        Expr::Path(n) => Some(Value::from(path(n)?)),
        Expr::Query(n) => env.query.get(n).cloned(),
        Expr::Body(n) => env.body.get(n).cloned(),
        Expr::ConvSingle(n) => {
            Some(Value::from(super::objects::single_conversation_id(&env.caller.user_id, &path(n)?)))
        }
        Expr::ConvGroup(n) => Some(Value::from(format!("sg_{}", path(n)?))),
        Expr::Data(_) => None,
    })
}

/// Expands a request template; absent optional values drop their key or list item.
fn expand(tpl: &Value, env: &Env<'_>) -> Result<Option<Value>, ApiError> {
    Ok(match tpl {
        Value::String(s) if s.starts_with('$') => eval(&parse_expr(s).map_err(ApiError::internal)?, env)?,
        Value::Array(items) => {
            let mut out = Vec::new();
            for i in items {
                out.extend(expand(i, env)?);
            }
            Some(Value::Array(out))
        }
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if let Some(v) = expand(v, env)? {
                    out.insert(k.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
        other => Some(other.clone()),
    })
}

/// Follows `$data.a.0.*` in OpenIM's `data`.
fn lookup<'a>(data: &'a Value, segments: &[String]) -> Option<&'a Value> {
    segments.iter().try_fold(data, |v, seg| match (v, seg.as_str()) {
        (Value::Object(m), "*") => m.values().next(),
        (Value::Object(m), k) => m.get(k),
        (Value::Array(a), i) => i.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn shape(response: &std::collections::BTreeMap<String, ResponseField>, data: &Value) -> Result<Value, ApiError> {
    let data_path = |s: &str| match parse_expr(s) {
        Ok(Expr::Data(p)) => Ok(p),
        _ => Err(ApiError::internal(format!("bad response expression {s}"))),
    };
    let mut out = Map::new();
    for (k, f) in response {
        let v = match f {
            ResponseField::Expr(s) => lookup(data, &data_path(s)?).cloned().unwrap_or(Value::Null),
            ResponseField::Each { from, each } => {
                let items = lookup(data, &data_path(from)?).and_then(Value::as_array).cloned().unwrap_or_default();
                Value::Array(
                    items
                        .iter()
                        .map(|item| {
                            let field = |in_k: &String| {
                                let segs: Vec<String> = in_k.split('.').map(str::to_owned).collect();
                                lookup(item, &segs).cloned().unwrap_or(Value::Null)
                            };
                            Value::Object(each.iter().map(|(out_k, in_k)| (out_k.clone(), field(in_k))).collect())
                        })
                        .collect(),
                )
            }
        };
        out.insert(k.clone(), v);
    }
    Ok(Value::Object(out))
}

/// Asks OpenIM (admin token) for the caller's role in a group; refuses when it is too low.
async fn check_group_role(
    state: &AppState,
    ctx: &CallCtx,
    kind: CheckKind,
    group_id: &str,
    user_id: &str,
) -> Result<(), ApiError> {
    let role = state.openim.group_role(ctx, group_id, user_id).await?;
    let needed = match kind {
        CheckKind::GroupMember => 20,
        CheckKind::GroupAdmin => 60,
        CheckKind::GroupOwner => 100,
    };
    match role {
        Some(r) if r >= needed => Ok(()),
        Some(_) => Err(ApiError::forbidden().with_message("your role in this group does not allow this")),
        None => Err(ApiError::forbidden().with_message("you are not a member of this group")),
    }
}
