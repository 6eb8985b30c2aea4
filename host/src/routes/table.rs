//! The configurable route table (`[[route]]`): public `/v1` routes mapped onto OpenIM operations.
//!
//! Each route says who may call it (a signed user request), the OpenIM operation it becomes, whose
//! OpenIM token that operation carries, the fields a client may send (an allow-list with types;
//! anything else is 400), the OpenIM request built from them with identity *bound* from the
//! session (`$user`, `$platform`), membership checks imgate makes where OpenIM makes none, the
//! rate-limit class, and the shape of the answer. The table is validated whole at start-up
//! (every problem reported), and the shipped default (`default_routes.toml`) is the `/v1` API.
//!
//! Expressions (strings starting with `$`): `$user`, `$platform`, `$path.NAME`, `$query.NAME`,
//! `$body.NAME`, `$conv_single(NAME)` / `$conv_group(NAME)` (OpenIM's conversation id with the
//! path parameter NAME), and in `response` only `$data.a.b.0` (`*` = the first value of a map).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Whose OpenIM token the operation carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenChoice {
    /// The caller's own OpenIM token (minted per user and platform by imgate).
    User,
    /// The admin token: only for operations OpenIM allows admins alone, with identity bound.
    Admin,
}

/// One `[[route]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub name: String,
    pub method: String,
    pub path: String,
    /// The OpenIM route, e.g. `/msg/send_msg`.
    pub openim: String,
    pub token: TokenChoice,
    #[serde(default = "default_class")]
    pub class: String,
    /// Path parameter → type.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Query parameter → type (`?` suffix = optional).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Body field → type (`?` suffix = optional). Anything else in the body is refused.
    #[serde(default)]
    pub body: BTreeMap<String, String>,
    /// Checks imgate makes before calling OpenIM, e.g. `group_member:$path.group_id`.
    #[serde(default)]
    pub checks: Vec<String>,
    /// The OpenIM request body, a template.
    pub request: Value,
    /// Answer field → expression or `{ from = "$data.x", each = { field = "openimField" } }`.
    /// Empty = `204 No Content`.
    #[serde(default)]
    pub response: BTreeMap<String, ResponseField>,
    /// The plugin chain, in order: `{ plugin = "name", config = {...}, failure = "closed" | "open" }`.
    #[serde(default)]
    pub plugins: Vec<crate::plugins::config::ChainEntrySpec>,
}

fn default_class() -> String {
    "default".into()
}

/// One field of a route's answer.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ResponseField {
    Expr(String),
    Each { from: String, each: BTreeMap<String, String> },
}

/// A field type of the allow-lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Int,
    Bool,
    UserId,
    GroupId,
    StringList,
    UserIdList,
}

/// A parsed type: the type and whether it may be absent.
pub fn parse_type(t: &str) -> Option<(FieldType, bool)> {
    let (base, optional) = match t.strip_suffix('?') {
        Some(b) => (b, true),
        None => (t, false),
    };
    let ft = match base {
        "string" => FieldType::String,
        "int" => FieldType::Int,
        "bool" => FieldType::Bool,
        "user_id" => FieldType::UserId,
        "group_id" => FieldType::GroupId,
        "string[]" => FieldType::StringList,
        "user_id[]" => FieldType::UserIdList,
        _ => return None,
    };
    Some((ft, optional))
}

/// A `$` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    User,
    Platform,
    Path(String),
    Query(String),
    Body(String),
    ConvSingle(String),
    ConvGroup(String),
    Data(Vec<String>),
}

pub fn parse_expr(s: &str) -> Result<Expr, String> {
    let e = s.strip_prefix('$').ok_or_else(|| format!("`{s}` is not an expression"))?;
    let call = |prefix: &str| e.strip_prefix(prefix).and_then(|r| r.strip_suffix(')')).map(str::to_owned);
    Ok(match e {
        "user" => Expr::User,
        "platform" => Expr::Platform,
        _ if e.starts_with("path.") => Expr::Path(e["path.".len()..].to_owned()),
        _ if e.starts_with("query.") => Expr::Query(e["query.".len()..].to_owned()),
        _ if e.starts_with("body.") => Expr::Body(e["body.".len()..].to_owned()),
        _ if e.starts_with("data") => {
            Expr::Data(e["data".len()..].split('.').filter(|s| !s.is_empty()).map(str::to_owned).collect())
        }
        _ => match (call("conv_single("), call("conv_group(")) {
            (Some(p), _) => Expr::ConvSingle(p),
            (_, Some(p)) => Expr::ConvGroup(p),
            _ => return Err(format!("unknown expression `{s}`")),
        },
    })
}

/// The checks imgate knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    GroupMember,
    GroupAdmin,
    GroupOwner,
}

pub fn parse_check(s: &str) -> Result<(CheckKind, Expr), String> {
    let (kind, expr) = s.split_once(':').ok_or_else(|| format!("check `{s}`: expected kind:$expr"))?;
    let kind = match kind {
        "group_member" => CheckKind::GroupMember,
        "group_admin" => CheckKind::GroupAdmin,
        "group_owner" => CheckKind::GroupOwner,
        other => return Err(format!("check `{s}`: unknown kind `{other}`")),
    };
    Ok((kind, parse_expr(expr)?))
}

/// Paths served by built-in handlers; table routes may not take them.
const BUILT_IN: &[&str] =
    &["/v1/me", "/v1/auth/gateway-key", "/v1/auth/handshake", "/v1/auth/token", "/v1/auth/logout"];

/// The shipped default table.
pub fn default_routes() -> Vec<RouteSpec> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        route: Vec<RouteSpec>,
    }
    // Embedded at build time and covered by a unit test: failing here means a broken build.
    toml::from_str::<File>(include_str!("default_routes.toml"))
        .map(|f| f.route)
        .unwrap_or_else(|e| panic!("default_routes.toml: {e}"))
}

/// Every problem of a route table (with the known rate-limit classes).
pub fn validate(routes: &[RouteSpec], classes: &BTreeSet<String>) -> Vec<String> {
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    let mut matcher = matchit::Router::new();
    for p in BUILT_IN {
        let _ = matcher.insert(*p, ());
    }
    let mut seen = BTreeSet::new();
    for r in routes {
        let at = format!("route `{}`", r.name);
        if !names.insert(r.name.clone()) {
            errors.push(format!("{at}: duplicate name"));
        }
        if !seen.insert((r.method.clone(), r.path.clone())) {
            errors.push(format!("{at}: {} {} is defined twice", r.method, r.path));
        } else if !seen.iter().any(|(m, p)| p == &r.path && m != &r.method) {
            // First time this path is seen: it must not clash with another path's shape.
            if let Err(e) = matcher.insert(r.path.clone(), ()) {
                errors.push(format!("{at}: path conflicts with another route: {e}"));
            }
        }
        errors.extend(validate_one(r, classes).into_iter().map(|e| format!("{at}: {e}")));
    }
    errors
}

fn validate_one(r: &RouteSpec, classes: &BTreeSet<String>) -> Vec<String> {
    let mut errors = Vec::new();
    if !matches!(r.method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
        errors.push(format!("method `{}`: one of GET, POST, PUT, PATCH, DELETE", r.method));
    }
    if !r.path.starts_with("/v1/") || r.path.starts_with("/v1/admin") || r.path.starts_with("/v1/auth") {
        errors.push("path: must be under /v1 and outside /v1/admin and /v1/auth".into());
    }
    let in_path: BTreeSet<String> = r
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')).map(str::to_owned))
        .collect();
    let declared: BTreeSet<String> = r.params.keys().cloned().collect();
    if in_path != declared {
        errors.push(format!("params: must declare exactly the path's parameters {in_path:?}"));
    }
    for (section, fields) in [("params", &r.params), ("query", &r.query), ("body", &r.body)] {
        for (k, t) in fields {
            match parse_type(t) {
                Some((_, true)) if section == "params" => {
                    errors.push(format!("params.{k}: path parameters cannot be optional"))
                }
                Some(_) => {}
                None => errors.push(format!("{section}.{k}: unknown type `{t}`")),
            }
        }
    }
    if r.method == "GET" && !r.body.is_empty() {
        errors.push("body: a GET route takes no body".into());
    }
    if !r.openim.starts_with('/') || r.openim[1..].split('/').count() != 2 {
        errors.push(format!("openim: `{}` is not an OpenIM route like /msg/send_msg", r.openim));
    }
    if r.token == TokenChoice::Admin && !crate::openim::ADMIN_ONLY.contains(&r.openim.as_str()) {
        errors.push(format!("token: `{}` is an operation users may do themselves: use token = \"user\"", r.openim));
    }
    if !classes.contains(&r.class) {
        errors.push(format!("class: no [rate_limits.{}]", r.class));
    }
    if super::is_builtin_route(&r.name) {
        errors.push(format!("name: `{}` is the name of a built-in route", r.name));
    }
    if !r.request.is_object() {
        errors.push("request: must be a table".into());
    }
    let mut exprs = Vec::new();
    collect_exprs(&r.request, &mut exprs);
    for s in exprs {
        match parse_expr(&s) {
            Ok(Expr::Data(_)) => errors.push(format!("request: `{s}`: $data is only for responses")),
            Ok(e) => errors.extend(check_ref(&e, &s, r).err()),
            Err(e) => errors.push(format!("request: {e}")),
        }
    }
    for c in &r.checks {
        match parse_check(c) {
            Ok((_, e)) => errors.extend(check_ref(&e, c, r).err()),
            Err(e) => errors.push(format!("checks: {e}")),
        }
    }
    for (k, f) in &r.response {
        let exprs = match f {
            ResponseField::Expr(s) => vec![s.clone()],
            ResponseField::Each { from, .. } => vec![from.clone()],
        };
        for s in exprs {
            if !matches!(parse_expr(&s), Ok(Expr::Data(_))) {
                errors.push(format!("response.{k}: `{s}` must be a $data expression"));
            }
        }
    }
    errors
}

/// An expression may only name declared parameters and fields.
fn check_ref(e: &Expr, source: &str, r: &RouteSpec) -> Result<(), String> {
    let ok = match e {
        Expr::Path(n) | Expr::ConvSingle(n) | Expr::ConvGroup(n) => r.params.contains_key(n),
        Expr::Query(n) => r.query.contains_key(n),
        Expr::Body(n) => r.body.contains_key(n),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("`{source}` names an undeclared parameter or field"))
    }
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.starts_with('$') => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_exprs(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_exprs(x, out)),
        _ => {}
    }
}

/// One line per route, for the snapshot test and `imgate routes`.
pub fn describe(routes: &[RouteSpec]) -> String {
    let mut out = String::new();
    for r in routes {
        let body: Vec<String> = r.body.iter().map(|(k, t)| format!("{k}:{t}")).collect();
        let query: Vec<String> = r.query.iter().map(|(k, t)| format!("{k}:{t}")).collect();
        out.push_str(&format!(
            "{:<6} {:<45} -> {:<38} token={:<5} class={:<7} body=[{}] query=[{}] checks=[{}] request={}\n",
            r.method,
            r.path,
            r.openim,
            format!("{:?}", r.token).to_lowercase(),
            r.class,
            body.join(","),
            query.join(","),
            r.checks.join(","),
            r.request,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> BTreeSet<String> {
        ["default", "send"].into_iter().map(String::from).collect()
    }

    #[test]
    fn the_default_table_is_valid() {
        let routes = default_routes();
        assert!(routes.len() >= 15);
        assert_eq!(validate(&routes, &classes()), Vec::<String>::new());
    }

    #[test]
    fn every_problem_of_a_bad_route_is_named() {
        let bad: RouteSpec = toml::from_str(
            r#"
            name = "x"
            method = "FETCH"
            path = "/v1/admin/{a}"
            openim = "/user/get_users_info"
            token = "admin"
            class = "nope"
            body = { f = "float" }
            checks = ["guess:$path.a"]
            request = { userIDs = ["$body.g"], when = "$data.x" }
            "#,
        )
        .expect("parses");
        let errs = validate(&[bad], &classes()).join("\n");
        for needle in
            ["method", "path:", "params:", "unknown type", "token:", "class:", "checks:", "$data is only", "undeclared"]
        {
            assert!(errs.contains(needle), "{needle} not in\n{errs}");
        }
    }

    #[test]
    fn conflicting_paths_are_refused() {
        let mut a = default_routes().remove(0);
        a.name = "clash".into();
        a.path = "/v1/me".into();
        a.method = "POST".into();
        let errs = validate(&[a], &classes());
        assert!(errs.iter().any(|e| e.contains("conflicts")), "{errs:?}");
    }
}
