//! Go `encoding/json`-like request decoding.
//!
//! OpenIM decodes request bodies with Go's `encoding/json` into protobuf structs (contract §1.4,
//! §10.8c): object keys match struct fields case-insensitively with Unicode simple case folding
//! (`ſ` U+017F matches `s`, the Kelvin sign U+212A matches `k`), unknown keys are ignored, `null`
//! leaves a scalar field as it was, an empty body is the error "unexpected end of JSON input" and
//! a wrong type is a "cannot unmarshal" error. When several keys match one field, each is decoded
//! in document order, so the last one wins (and two objects for one struct field merge). serde is
//! case-sensitive and serde_json's map is sorted, so this module parses in document order, merges
//! keys that fold alike as Go would ([`GoValue`]), then renames the keys to the field names a
//! serde struct declares (found by asking the derived `Deserialize` impl). Nested structs opt in
//! with `#[serde(default, deserialize_with = "crate::json::nested")]`. Known gap: map fields'
//! keys are folded too (Go keeps map keys exact); no request this emulator serves has one.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Decode a request body like Go's `json.Unmarshal` into a struct would.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::JsonDecode("unexpected end of JSON input".into()));
    }
    let mut v: Value = serde_json::from_slice::<GoValue>(body)
        .map_err(|e| ApiError::JsonDecode(format!("invalid character in JSON input: {e}")))?
        .0;
    match &v {
        Value::Null => v = Value::Object(Map::new()),
        Value::Object(_) => {}
        other => {
            return Err(ApiError::JsonDecode(format!(
                "json: cannot unmarshal {} into Go value of type struct",
                go_kind(other)
            )))
        }
    }
    fold::<T>(&mut v);
    serde_json::from_value(v).map_err(|e| ApiError::JsonDecode(format!("json: cannot unmarshal: {e}")))
}

/// Go's name of a JSON value kind, for error texts.
fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Rename the keys of an object to `T`'s field names (case-insensitively) and drop `null`s.
pub fn fold<T: for<'de> Deserialize<'de>>(v: &mut Value) {
    let fields = struct_fields::<T>();
    let Value::Object(map) = v else { return };
    let old = std::mem::take(map);
    // Keys that fold alike were merged at parse time (last wins), so at most one key matches.
    for (k, val) in old {
        if val.is_null() {
            continue;
        }
        if let Some(f) = fields.iter().find(|f| **f == k).or_else(|| fields.iter().find(|f| go_fold(f) == go_fold(&k)))
        {
            map.insert((*f).to_string(), val);
        }
    }
}

/// Go's folded form of a key (`foldName`): ASCII letters upper-cased, and each rune replaced by
/// the smallest rune of its simple-fold orbit — for the runes that can match an ASCII field name
/// that is ſ → S and K (Kelvin) → K; other runes never match an ASCII name and stay as they are.
pub fn go_fold(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{017F}' => 'S',
            '\u{212A}' => 'K',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// A JSON value parsed in document order with Go's duplicate-key semantics: of several keys that
/// fold alike, the last one's value is kept (objects are merged into the earlier one, as Go
/// decodes a second object into the same struct; `null` resets objects and lists and leaves
/// scalars as they were).
pub struct GoValue(pub Value);

impl<'de> Deserialize<'de> for GoValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(GoVisitor).map(GoValue)
    }
}

struct GoVisitor;

impl<'de> Visitor<'de> for GoVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(GoValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(String, Value)> = Vec::new();
        while let Some(key) = access.next_key::<String>()? {
            let GoValue(value) = access.next_value()?;
            merge_entry(&mut entries, key, value);
        }
        Ok(Value::Object(entries.into_iter().collect()))
    }
}

fn merge_entry(entries: &mut Vec<(String, Value)>, key: String, value: Value) {
    let folded = go_fold(&key);
    let Some(slot) = entries.iter_mut().find(|(k, _)| go_fold(k) == folded) else {
        entries.push((key, value));
        return;
    };
    slot.0 = key;
    match (&mut slot.1, value) {
        (Value::Object(old), Value::Object(new)) => {
            let mut merged: Vec<(String, Value)> = std::mem::take(old).into_iter().collect();
            for (k, v) in new {
                merge_entry(&mut merged, k, v);
            }
            *old = merged.into_iter().collect();
        }
        (old @ (Value::Object(_) | Value::Array(_)), Value::Null) => *old = Value::Null,
        (_, Value::Null) => {}
        (old, new) => *old = new,
    }
}

/// `deserialize_with` helper for an optional nested struct: folds its keys too.
pub fn nested<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(mut v) => {
            fold::<T>(&mut v);
            serde_json::from_value(v).map(Some).map_err(de::Error::custom)
        }
    }
}

/// `deserialize_with` helper for an optional list of nested structs.
pub fn nested_vec<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for mut item in items {
                fold::<T>(&mut item);
                out.push(serde_json::from_value(item).map_err(de::Error::custom)?);
            }
            Ok(Some(out))
        }
        Some(other) => Err(de::Error::custom(format!("cannot unmarshal {} into a list", go_kind(&other)))),
    }
}

/// The field names a derived `Deserialize` declares for a struct (empty for non-structs).
fn struct_fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldProbe(&mut fields));
    fields
}

/// A deserializer that only records the field list passed to `deserialize_struct`.
struct FieldProbe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("probe"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _v: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("probe"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, Default)]
    #[serde(default)]
    struct Inner {
        #[serde(rename = "pageNumber")]
        page_number: i32,
    }

    #[derive(Deserialize, Debug, Default)]
    #[serde(default)]
    struct Outer {
        #[serde(rename = "userID")]
        user_id: String,
        #[serde(deserialize_with = "nested")]
        pagination: Option<Inner>,
    }

    #[test]
    fn keys_fold_case_insensitively() {
        let o: Outer = decode(br#"{"USERID":"u1","Pagination":{"PAGENUMBER":3},"x":1}"#).unwrap();
        assert_eq!(o.user_id, "u1");
        assert_eq!(o.pagination.unwrap().page_number, 3);
        let o: Outer = decode(br#"{"userid":"a","userID":"b"}"#).unwrap();
        assert_eq!(o.user_id, "b");
    }

    #[test]
    fn the_last_of_keys_that_fold_alike_wins_as_in_go() {
        let o: Outer = decode(br#"{"userID":"b","userid":"a"}"#).unwrap();
        assert_eq!(o.user_id, "a", "document order, not exact-match preference");
        let o: Outer = decode("{\"userID\":\"me\",\"u\u{017F}erID\":\"victim\"}".as_bytes()).unwrap();
        assert_eq!(o.user_id, "victim", "long s folds to s");
        let o: Outer = decode(br#"{"userID":"me","USERID":null}"#).unwrap();
        assert_eq!(o.user_id, "me", "null leaves a string as it was");
        let o: Outer = decode(br#"{"pagination":{"pageNumber":2},"PAGINATION":{"x":1}}"#).unwrap();
        assert_eq!(o.pagination.unwrap().page_number, 2, "objects merge");
    }

    #[test]
    fn go_errors() {
        let e = decode::<Outer>(b"").unwrap_err();
        assert_eq!(e.msg(), "unexpected end of JSON input");
        assert_eq!(decode::<Outer>(br#"{"userID":1}"#).unwrap_err().code(), 1001);
        let o: Outer = decode(br#"{"userID":null}"#).unwrap();
        assert_eq!(o.user_id, "");
    }
}
