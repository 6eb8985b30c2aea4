//! Compat request bodies read the way OpenIM reads them, then re-encoded canonically.
//!
//! OpenIM decodes JSON with Go's `encoding/json` into protobuf structs (contract §1.4, §10.8c):
//! a key matches a field case-insensitively with Unicode simple case folding (`ſ` U+017F is an
//! `s`, `K` U+212A a `k`), unknown keys are ignored, `null` leaves a field unset, and when several
//! keys match one field the last one wins. A gateway rule that looks a field up by its exact
//! spelling is therefore no rule. This module decodes a body against the route's [`Ty`] schema
//! with Go's matching, refuses what Go would read differently from us (two keys for one field,
//! wrong types, `null` list items), and yields a canonical object: every key spelled exactly as
//! the field, unknown keys gone, `null`s gone. The rules check that object, and it is what is
//! forwarded, so OpenIM decodes exactly what imgate checked. The Go differential test
//! (`tests/e2e/tests/suite/go_json_differential.rs`) holds this against Go's own decoder.

use serde_json::{Map, Value};

/// A field type of a request schema, as the protobuf-generated Go struct declares it.
#[derive(Debug, Clone, Copy)]
pub enum Ty {
    /// `string`, and the wrapper `StringValue` (a plain JSON string; `null` = unset).
    Str,
    /// `int32` / enums, `Int32Value`.
    I32,
    /// `int64`, `Int64Value`.
    I64,
    /// `uint32`.
    U32,
    /// `uint64` (version counters, id-list hashes of the incremental sync routes).
    U64,
    /// `bool`, `BoolValue`.
    Bool,
    /// `repeated string`.
    Strs,
    /// `repeated int32`.
    I32s,
    /// `repeated int64`.
    I64s,
    /// A message (a pointer to a struct in Go).
    Obj(&'static [F]),
    /// `repeated` message.
    Objs(&'static [F]),
    /// `map<string, string>` (Go matches map keys exactly).
    MapStr,
    /// `map<string, bool>`.
    MapBool,
}

/// One field: its JSON name (the proto field name) and type.
#[derive(Debug, Clone, Copy)]
pub struct F(pub &'static str, pub Ty);

/// Items a list field may hold; longer lists are refused, never cut (OpenIM would act on all).
pub const MAX_LIST: usize = 1000;

/// Why a body was refused (errCode 1001 on the compat surface).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("invalid JSON: {0}")]
    Syntax(String),
    #[error("the body must be a JSON object")]
    NotObject,
    #[error("`{0}`: given by more than one key (OpenIM would take the last, imgate takes none)")]
    Ambiguous(String),
    #[error("`{0}`: expected {1}")]
    Type(String, &'static str),
    #[error("`{0}`: more than {MAX_LIST} items")]
    TooMany(String),
}

/// Whether Go's `encoding/json` matches object key `key` to the struct field named `field`.
///
/// Field names are ASCII. Go compares under simple case folding; the only non-ASCII runes whose
/// fold orbit holds an ASCII letter are U+017F (ſ, with s/S) and U+212A (Kelvin, with k/K), so
/// the rule is: same length in runes, and each rune equal, equal ignoring ASCII case, or one of
/// those two against its letter (Go 1.19 `equalFoldRight`; Go 1.21+ `foldName` agrees).
pub fn go_key_matches(field: &str, key: &str) -> bool {
    let mut k = key.chars();
    for f in field.chars() {
        let Some(c) = k.next() else { return false };
        let same = c == f
            || (c.is_ascii() && c.eq_ignore_ascii_case(&f))
            || (c == '\u{017F}' && f.eq_ignore_ascii_case(&'s'))
            || (c == '\u{212A}' && f.eq_ignore_ascii_case(&'k'));
        if !same {
            return false;
        }
    }
    k.next().is_none()
}

/// Decodes `body` against `schema` as OpenIM would, or refuses it. An empty body is refused (Go:
/// "unexpected end of JSON input"); `null` is an empty object.
pub fn decode(schema: &'static [F], body: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Syntax("unexpected end of JSON input".into()));
    }
    // Exact duplicate keys (at any depth) are refused here already.
    let value = crate::strict_json::parse_strict_json(body).map_err(|e| DecodeError::Syntax(e.to_string()))?;
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => object(schema, m, ""),
        _ => Err(DecodeError::NotObject),
    }
}

fn object(schema: &'static [F], input: Map<String, Value>, at: &str) -> Result<Map<String, Value>, DecodeError> {
    let mut out = Map::new();
    let mut seen = vec![false; schema.len()];
    for (key, v) in input {
        // An exact match first, as Go does (schemas never hold two fields that fold alike).
        let found =
            schema.iter().position(|f| f.0 == key).or_else(|| schema.iter().position(|f| go_key_matches(f.0, &key)));
        let Some(i) = found else { continue };
        let F(name, ty) = schema[i];
        let path = if at.is_empty() { name.to_owned() } else { format!("{at}.{name}") };
        if std::mem::replace(&mut seen[i], true) {
            return Err(DecodeError::Ambiguous(path));
        }
        if v.is_null() {
            continue;
        }
        out.insert(name.to_owned(), typed(ty, v, &path)?);
    }
    Ok(out)
}

fn typed(ty: Ty, v: Value, path: &str) -> Result<Value, DecodeError> {
    let bad = |what: &'static str| DecodeError::Type(path.to_owned(), what);
    let int = |v: &Value, lo: i64, hi: i64, what: &'static str| match v.as_i64() {
        Some(n) if (lo..=hi).contains(&n) => Ok(()),
        _ => Err(bad(what)),
    };
    match ty {
        Ty::Str => v.is_string().then_some(v).ok_or_else(|| bad("a string")),
        Ty::Bool => v.is_boolean().then_some(v).ok_or_else(|| bad("true or false")),
        Ty::I32 => int(&v, i32::MIN.into(), i32::MAX.into(), "a 32-bit integer").map(|()| v),
        Ty::U32 => int(&v, 0, u32::MAX.into(), "an unsigned 32-bit integer").map(|()| v),
        Ty::I64 => int(&v, i64::MIN, i64::MAX, "a 64-bit integer").map(|()| v),
        Ty::U64 => v.as_u64().map(|_| v).ok_or_else(|| bad("an unsigned 64-bit integer")),
        Ty::Strs => list(v, path, |i, p| typed(Ty::Str, i, p)),
        Ty::I32s => list(v, path, |i, p| typed(Ty::I32, i, p)),
        Ty::I64s => list(v, path, |i, p| typed(Ty::I64, i, p)),
        Ty::Obj(fields) => match v {
            Value::Object(m) => object(fields, m, path).map(Value::Object),
            _ => Err(bad("an object")),
        },
        Ty::Objs(fields) => list(v, path, |i, p| typed(Ty::Obj(fields), i, p)),
        Ty::MapStr | Ty::MapBool => {
            let Value::Object(m) = v else { return Err(bad("an object")) };
            let item = if matches!(ty, Ty::MapStr) { Ty::Str } else { Ty::Bool };
            let mut out = Map::new();
            for (k, i) in m {
                // Go stores a null map value as the zero value; refusing it is simpler than guessing.
                out.insert(k.clone(), typed(item, i, &format!("{path}.{k}"))?);
            }
            Ok(Value::Object(out))
        }
    }
}

fn list(v: Value, path: &str, item: impl Fn(Value, &str) -> Result<Value, DecodeError>) -> Result<Value, DecodeError> {
    let Value::Array(items) = v else { return Err(DecodeError::Type(path.to_owned(), "a list")) };
    if items.len() > MAX_LIST {
        return Err(DecodeError::TooMany(path.to_owned()));
    }
    let p = format!("{path}[]");
    // `null` items decode to "" / 0 / nil in Go: a value the client did not write, so refused.
    items
        .into_iter()
        .map(|i| if i.is_null() { Err(DecodeError::Type(p.clone(), "no null items")) } else { item(i, &p) })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// Every string value at a dotted path of a canonical object; `[]` after a segment walks a list
/// (`seqRanges[].conversationID`). Used by the rules, on decoded bodies only.
pub fn strings_at<'a>(obj: &'a Map<String, Value>, path: &str) -> Vec<&'a str> {
    let mut cur: Vec<&'a Value> = Vec::new();
    let mut first = true;
    for seg in path.split('.') {
        let (name, each) = match seg.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (seg, false),
        };
        let next: Vec<&'a Value> =
            if first { obj.get(name).into_iter().collect() } else { cur.iter().filter_map(|v| v.get(name)).collect() };
        first = false;
        cur = if each { next.into_iter().flat_map(|v| v.as_array().into_iter().flatten()).collect() } else { next };
    }
    cur.into_iter()
        .flat_map(|v| match v {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INNER: &[F] = &[F("userID", Ty::Str), F("nickname", Ty::Str)];
    const SCHEMA: &[F] =
        &[F("userID", Ty::Str), F("seqs", Ty::I64s), F("userInfo", Ty::Obj(INNER)), F("isPinned", Ty::Bool)];

    #[test]
    fn keys_match_as_go_matches_them() {
        assert!(go_key_matches("userID", "USERid"));
        assert!(go_key_matches("userID", "u\u{017F}erID"));
        assert!(go_key_matches("isPinned", "i\u{017F}Pinned"));
        assert!(go_key_matches("kickedUserIDs", "\u{212A}ickedUserIDs"));
        assert!(!go_key_matches("userID", "userid2"));
        assert!(!go_key_matches("userID", "user_ID"));
        assert!(!go_key_matches("userID", "\u{0130}serID"), "dotted capital I is not in i's simple fold orbit");
        assert!(!go_key_matches("groupID", "group\u{0130}D"));
    }

    #[test]
    fn canonical_object_has_exact_names_and_no_unknowns() {
        let got = decode(SCHEMA, br#"{"USERID":"a","UserInfo":{"NICKNAME":"n","x":1},"other":[1],"seqs":null}"#);
        let want = serde_json::json!({"userID":"a","userInfo":{"nickname":"n"}});
        assert_eq!(Value::Object(got.expect("decodes")), want);
    }

    #[test]
    fn two_keys_for_one_field_are_refused_at_any_depth() {
        for body in [
            r#"{"userID":"a","u\u017ferID":"b"}"#,
            r#"{"userID":"a","USERID":null}"#,
            r#"{"userInfo":{"userID":"a","UserID":"b"}}"#,
            r#"{"userInfo":{},"USERINFO":{}}"#,
        ] {
            assert!(matches!(decode(SCHEMA, body.as_bytes()), Err(DecodeError::Ambiguous(_))), "{body}");
        }
    }

    #[test]
    fn types_are_go_types() {
        for body in
            [r#"{"userID":1}"#, r#"{"seqs":[1.5]}"#, r#"{"seqs":[null]}"#, r#"{"isPinned":"true"}"#, r#"[]"#, ""]
        {
            assert!(decode(SCHEMA, body.as_bytes()).is_err(), "{body}");
        }
        assert_eq!(decode(SCHEMA, b"null"), Ok(Map::new()));
        let long = format!(r#"{{"seqs":[{}]}}"#, vec!["1"; MAX_LIST + 1].join(","));
        assert!(matches!(decode(SCHEMA, long.as_bytes()), Err(DecodeError::TooMany(_))));
    }

    #[test]
    fn strings_at_walks_lists() {
        let v = serde_json::json!({"r":[{"c":"x"},{"c":"y"}],"ids":["a","b"],"o":{"u":"z"}});
        let m = v.as_object().expect("object");
        assert_eq!(strings_at(m, "r[].c"), ["x", "y"]);
        assert_eq!(strings_at(m, "ids"), ["a", "b"]);
        assert_eq!(strings_at(m, "o.u"), ["z"]);
        assert!(strings_at(m, "missing.x").is_empty());
    }
}
