//! Go `encoding/json`-like request decoding.
//!
//! OpenIM decodes request bodies with Go's `encoding/json` into protobuf structs (contract §1.4):
//! object keys match struct fields case-insensitively (an exact match wins), unknown keys are
//! ignored, `null` leaves a field at its zero value, an empty body is the error
//! "unexpected end of JSON input" and a wrong type is a "cannot unmarshal" error. serde is
//! case-sensitive, so this module folds object keys onto the field names a serde struct declares
//! (found by asking the derived `Deserialize` impl) before deserializing. Nested structs opt in
//! with `#[serde(default, deserialize_with = "crate::json::nested")]`.

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Decode a request body like Go's `json.Unmarshal` into a struct would.
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::JsonDecode("unexpected end of JSON input".into()));
    }
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::JsonDecode(format!("invalid character in JSON input: {e}")))?;
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
    // Exact matches are applied last so that they win over case-folded ones.
    let mut exact = Vec::new();
    for (k, val) in old {
        if val.is_null() {
            continue;
        }
        if fields.contains(&k.as_str()) {
            exact.push((k, val));
        } else if let Some(f) = fields.iter().find(|f| f.eq_ignore_ascii_case(&k)) {
            map.insert((*f).to_string(), val);
        }
    }
    for (k, val) in exact {
        map.insert(k, val);
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
    fn go_errors() {
        let e = decode::<Outer>(b"").unwrap_err();
        assert_eq!(e.msg(), "unexpected end of JSON input");
        assert_eq!(decode::<Outer>(br#"{"userID":1}"#).unwrap_err().code(), 1001);
        let o: Outer = decode(br#"{"userID":null}"#).unwrap();
        assert_eq!(o.user_id, "");
    }
}
