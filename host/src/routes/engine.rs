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
//!
//! Every string of a `[[route]]` (types, checks, template expressions, response paths) is parsed
//! once, into a [`CompiledRoute`], when the router is built; a request only evaluates them.

use std::collections::{BTreeMap, HashMap};
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

/// A `[[route]]` with every string parsed: what a request on it evaluates.
#[derive(Debug)]
pub struct CompiledRoute {
    spec: Arc<RouteSpec>,
    /// Path parameter → type (undeclared parameters are strings).
    params: HashMap<String, FieldType>,
    /// Query parameter → (type, optional).
    query: BTreeMap<String, (FieldType, bool)>,
    /// Body field → (type, optional).
    body: BTreeMap<String, (FieldType, bool)>,
    checks: Vec<(CheckKind, Expr)>,
    request: Template,
    /// The path parameter of a `$conv_single(NAME)` in the template, if any.
    peer_param: Option<String>,
    response: Vec<(String, Shape)>,
}

/// The request template, parsed: a `$` string is an expression, anything else a literal.
#[derive(Debug)]
enum Template {
    Expr(Expr),
    Literal(Value),
    Array(Vec<Template>),
    Object(Vec<(String, Template)>),
}

/// One field of the answer: a path into OpenIM's `data`, or a list built from one.
#[derive(Debug)]
enum Shape {
    Path(Vec<String>),
    Each { from: Vec<String>, each: Vec<(String, Vec<String>)> },
}

impl CompiledRoute {
    /// Parses the route's strings (the config check, `table::validate`, has refused bad ones
    /// already; an error here names the string).
    pub fn compile(spec: &RouteSpec) -> Result<CompiledRoute, String> {
        let ty = |t: &str| parse_type(t).ok_or_else(|| format!("route `{}`: bad type `{t}`", spec.name));
        let typed = |m: &BTreeMap<String, String>| -> Result<BTreeMap<String, (FieldType, bool)>, String> {
            m.iter().map(|(k, t)| Ok((k.clone(), ty(t)?))).collect()
        };
        let data_path = |s: &str| match parse_expr(s) {
            Ok(Expr::Data(p)) => Ok(p),
            _ => Err(format!("route `{}`: bad response expression `{s}`", spec.name)),
        };
        let mut response = Vec::new();
        for (k, f) in &spec.response {
            response.push((
                k.clone(),
                match f {
                    ResponseField::Expr(s) => Shape::Path(data_path(s)?),
                    ResponseField::Each { from, each } => Shape::Each {
                        from: data_path(from)?,
                        each: each
                            .iter()
                            .map(|(out_k, in_k)| (out_k.clone(), in_k.split('.').map(str::to_owned).collect()))
                            .collect(),
                    },
                },
            ));
        }
        let request = template(&spec.request)?;
        Ok(CompiledRoute {
            params: spec.params.iter().map(|(k, t)| Ok((k.clone(), ty(t)?.0))).collect::<Result<_, String>>()?,
            query: typed(&spec.query)?,
            body: typed(&spec.body)?,
            checks: spec.checks.iter().map(|c| parse_check(c)).collect::<Result<_, _>>()?,
            peer_param: single_peer(&request),
            request,
            response,
            spec: Arc::new(spec.clone()),
        })
    }

    /// The route as configured.
    pub fn spec(&self) -> &RouteSpec {
        &self.spec
    }
}

fn template(v: &Value) -> Result<Template, String> {
    Ok(match v {
        Value::String(s) if s.starts_with('$') => Template::Expr(parse_expr(s)?),
        Value::Array(items) => Template::Array(items.iter().map(template).collect::<Result<_, _>>()?),
        Value::Object(m) => {
            Template::Object(m.iter().map(|(k, v)| Ok((k.clone(), template(v)?))).collect::<Result<_, String>>()?)
        }
        other => Template::Literal(other.clone()),
    })
}

/// The path parameter of a single-chat template (`$conv_single(NAME)` anywhere in it), if any.
fn single_peer(tpl: &Template) -> Option<String> {
    match tpl {
        Template::Expr(Expr::ConvSingle(n)) => Some(n.clone()),
        Template::Expr(_) | Template::Literal(_) => None,
        Template::Array(items) => items.iter().find_map(single_peer),
        Template::Object(m) => m.iter().find_map(|(_, v)| single_peer(v)),
    }
}

/// What a request on a table route becomes before anything is asked of OpenIM: the groups its
/// checks name and the OpenIM request built from the template (identity from the session).
pub struct Prepared {
    pub checks: Vec<(CheckKind, String)>,
    pub request: Value,
    /// The peer of a single-chat route (`$conv_single(NAME)`), for filtering pulled messages.
    pub peer: Option<String>,
}

/// Validates one request on `route` and builds its OpenIM request; no I/O.
pub fn prepare(
    route: &CompiledRoute,
    caller: &Caller,
    path: Vec<(String, String)>,
    raw_query: Option<&str>,
    body: &[u8],
) -> Result<Prepared, ApiError> {
    let mut env = Env { caller, path: HashMap::new(), query: Map::new(), body: Map::new() };
    for (k, v) in path {
        let t = route.params.get(&k).copied().unwrap_or(FieldType::String);
        let v = Value::String(v);
        check_value(&k, &v, t)?;
        if let Value::String(v) = v {
            env.path.insert(k, v);
        }
    }
    env.query = parse_query(route, raw_query.unwrap_or(""))?;
    env.body = parse_body(route, body)?;
    let mut checks = Vec::with_capacity(route.checks.len());
    for (kind, expr) in &route.checks {
        let group = eval(expr, &env)?
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| ApiError::internal("check without a value"))?;
        checks.push((*kind, group));
    }
    let request = expand(&route.request, &env)?.unwrap_or(Value::Object(Map::new()));
    let peer = route.peer_param.as_ref().and_then(|n| env.path.get(n).cloned());
    Ok(Prepared { checks, request, peer })
}

/// Handles one request on `route`.
pub async fn run(
    state: &AppState,
    route: &CompiledRoute,
    ctx: CallCtx,
    caller: &Caller,
    path: Vec<(String, String)>,
    raw_query: Option<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Prepared { checks, request, peer } = prepare(route, caller, path, raw_query.as_deref(), &body)?;
    for (kind, group) in checks {
        check_group_role(state, &ctx, kind, &group, &caller.user_id).await?;
    }
    let spec = route.spec();
    let who = match spec.token {
        TokenChoice::User => As::User { user_id: &caller.user_id, platform_id: caller.platform_id },
        TokenChoice::Admin => As::Admin,
    };
    refuse_ambiguous_send(&spec.openim, &request)?;
    let mut data = state.openim.call_path(&ctx, &spec.openim, spec.method == "GET", &request, who).await?;
    finish(route, caller, peer.as_deref(), &mut data)
}

/// The answer built from OpenIM's `data`: filtered to what is the caller's (super::objects:
/// other users' private profile fields zeroed, pulled messages only those between the caller and
/// the route's peer), then shaped by the route's `response`.
pub fn finish(
    route: &CompiledRoute,
    caller: &Caller,
    peer: Option<&str>,
    data: &mut Value,
) -> Result<Response, ApiError> {
    super::objects::redact_other_users(data, &caller.user_id);
    if route.spec.openim == PULL_MSG_BY_SEQ {
        super::objects::retain_own_messages(data, &caller.user_id, peer);
    }
    if route.response.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(shape(&route.response, data)).into_response())
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

/// Typed check of one input value (A7: ids follow imgate's id rules, lengths are bounded).
fn check_value(name: &str, v: &Value, ft: FieldType) -> Result<(), ApiError> {
    let bad = |what: &str| ApiError::bad_request(format!("{name}: {what}"));
    let is_group = crate::ids::is_group_id;
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
            let item_type = if ft == FieldType::UserIdList { FieldType::UserId } else { FieldType::String };
            items.iter().try_for_each(|i| check_value(name, i, item_type))
        }
    }
}

fn parse_query(route: &CompiledRoute, raw: &str) -> Result<Map<String, Value>, ApiError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw).map_err(|_| ApiError::bad_request("malformed query string"))?;
    let mut out = Map::new();
    for (k, v) in pairs {
        let (t, _) =
            *route.query.get(&k).ok_or_else(|| ApiError::bad_request(format!("unknown query parameter `{k}`")))?;
        let value = match t {
            FieldType::Int => {
                Value::from(v.parse::<i64>().map_err(|_| ApiError::bad_request(format!("{k}: expected an integer")))?)
            }
            FieldType::Bool => Value::from(
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

fn parse_body(route: &CompiledRoute, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
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
        let (t, _) = *route.body.get(k).ok_or_else(|| ApiError::bad_request(format!("unknown field `{k}`")))?;
        check_value(k, v, t)?;
    }
    require_all(&route.body, &map)?;
    Ok(map)
}

fn require_all(spec: &BTreeMap<String, (FieldType, bool)>, got: &Map<String, Value>) -> Result<(), ApiError> {
    for (k, (_, optional)) in spec {
        if !optional && !got.contains_key(k) {
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
fn expand(tpl: &Template, env: &Env<'_>) -> Result<Option<Value>, ApiError> {
    Ok(match tpl {
        Template::Expr(e) => eval(e, env)?,
        Template::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                out.extend(expand(i, env)?);
            }
            Some(Value::Array(out))
        }
        Template::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                if let Some(v) = expand(v, env)? {
                    out.insert(k.clone(), v);
                }
            }
            Some(Value::Object(out))
        }
        Template::Literal(v) => Some(v.clone()),
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

fn shape(response: &[(String, Shape)], data: &Value) -> Value {
    let mut out = Map::new();
    for (k, f) in response {
        let v = match f {
            Shape::Path(p) => lookup(data, p).cloned().unwrap_or(Value::Null),
            Shape::Each { from, each } => {
                let items = lookup(data, from).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
                Value::Array(
                    items
                        .iter()
                        .map(|item| {
                            Value::Object(
                                each.iter()
                                    .map(|(out_k, in_k)| {
                                        (out_k.clone(), lookup(item, in_k).cloned().unwrap_or(Value::Null))
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                )
            }
        };
        out.insert(k.clone(), v);
    }
    Value::Object(out)
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
