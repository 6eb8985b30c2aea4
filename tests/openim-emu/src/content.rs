//! Content validation of REST `/msg/send_msg` (contract §1.5, `pkg/apistruct/msg.go`).
//!
//! OpenIM decodes `content` with mapstructure into a per-contentType struct and runs the
//! validator's `required` tags: a required scalar must be non-zero, a required list/object must
//! be present. Unsupported contentTypes are rejected with 1001 "unsupported content type".

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Required keys per supported contentType (nested picture objects are checked separately).
fn required_keys(content_type: i32) -> Option<&'static [&'static str]> {
    Some(match content_type {
        101 | 118 => &["content"],
        102 => &["sourcePicture", "bigPicture", "snapshotPicture"],
        103 => &["sourceUrl", "duration"],
        104 => &["videoUrl", "videoType", "videoSize", "duration", "snapshotUrl", "snapshotWidth", "snapshotHeight"],
        105 => &["sourceUrl", "fileName", "fileSize"],
        106 => &["atUserList"],
        110 => &["data"],
        114 => &[],
        1400 => &["notificationName", "notificationType", "text"],
        _ => return None,
    })
}

/// Find a key the way mapstructure does (case-insensitive).
fn get<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// The validator's `required`: non-zero scalar, non-nil list/object.
fn has_value(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::Bool(b)) => *b,
        Some(Value::Array(_)) | Some(Value::Object(_)) => true,
    }
}

fn missing(key: &str) -> ApiError {
    ApiError::Args(format!("Key: '{key}' Error:Field validation for '{key}' failed on the 'required' tag"))
}

/// Validate `content` for `content_type`.
pub fn validate(content_type: i32, content: &Map<String, Value>) -> Result<(), ApiError> {
    let keys = required_keys(content_type).ok_or_else(|| ApiError::Args("unsupported content type".into()))?;
    for k in keys {
        if !has_value(get(content, k)) {
            return Err(missing(k));
        }
    }
    match content_type {
        102 => {
            for pic in ["sourcePicture", "bigPicture", "snapshotPicture"] {
                let Some(Value::Object(p)) = get(content, pic) else {
                    return Err(ApiError::Args(format!("'{pic}' expected a map")));
                };
                for k in ["type", "width", "height", "url"] {
                    if !has_value(get(p, k)) {
                        return Err(missing(k));
                    }
                }
            }
        }
        103 if get(content, "duration").and_then(Value::as_i64).unwrap_or(0) < 1 => {
            return Err(ApiError::Args("duration must be at least 1".into()));
        }
        106 => {
            let n = get(content, "atUserList").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            if n > 1000 {
                return Err(ApiError::Args("atUserList must have at most 1000 items".into()));
            }
        }
        1400 => {
            let mix = get(content, "mixType").and_then(Value::as_i64).unwrap_or(0);
            if !(0..=5).contains(&mix) {
                return Err(ApiError::Args("mixType must be between 0 and 5".into()));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn text_and_unsupported() {
        assert!(validate(101, &obj(json!({"content":"hi"}))).is_ok());
        assert!(validate(101, &obj(json!({"content":""}))).is_err());
        assert_eq!(validate(107, &obj(json!({}))).unwrap_err().detail(), "unsupported content type");
    }

    #[test]
    fn picture_nested_fields() {
        let p = json!({"type":"png","width":1,"height":1,"url":"u"});
        assert!(validate(102, &obj(json!({"sourcePicture":p,"bigPicture":p,"snapshotPicture":p}))).is_ok());
        let bad = json!({"type":"png","width":0,"height":1,"url":"u"});
        assert!(validate(102, &obj(json!({"sourcePicture":p,"bigPicture":bad,"snapshotPicture":p}))).is_err());
    }
}
