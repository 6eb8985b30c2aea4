//! `response-reshaper`: trims and renames fields in the JSON answers of `/v1` routes
//! (`on_response`), so clients see only what they should of other users' records.
//!
//! It walks the response JSON recursively. In every object with a `user_id` field that is not the
//! caller's user id (for an operator, every `user_id` is someone else's), the fields named in
//! `strip_for_others` are removed; then keys are renamed everywhere per `rename` (a rename onto a
//! key the object already has replaces that key). Status and headers are kept; the keys of a
//! rewritten body come out sorted. Responses that are
//! not 2xx or not JSON pass unchanged, and so do responses the rules leave as they were.
//!
//! Configuration (capability `config`), both fields optional, unknown keys refused:
//!
//! ```json
//! { "strip_for_others": ["phone", "email"], "rename": { "face_url": "avatar" } }
//! ```

use std::collections::BTreeMap;

use imgate_plugin_sdk::{config, Config, Plugin, Request, Response, ResponseVerdict};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    strip_for_others: Vec<String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
}

impl Settings {
    fn load(config: &Config) -> Result<Settings, String> {
        let settings: Settings = config.parse()?;
        if settings.rename.iter().any(|(from, to)| from.is_empty() || to.is_empty()) {
            return Err("`rename` keys and values must not be empty".into());
        }
        Ok(settings)
    }

    /// Applies the rules to `value` and below; returns whether anything changed.
    fn reshape(&self, value: &mut Value, caller: Option<&str>) -> bool {
        let mut changed = false;
        match value {
            Value::Array(items) => {
                for item in items {
                    changed |= self.reshape(item, caller);
                }
            }
            Value::Object(fields) => {
                let someone_else = fields.get("user_id").is_some_and(|id| id.as_str() != caller || caller.is_none());
                if someone_else {
                    for name in &self.strip_for_others {
                        changed |= fields.remove(name).is_some();
                    }
                }
                for child in fields.values_mut() {
                    changed |= self.reshape(child, caller);
                }
                if fields.keys().any(|k| self.rename.contains_key(k)) {
                    changed = true;
                    *fields = std::mem::take(fields)
                        .into_iter()
                        .map(|(k, v)| (self.rename.get(&k).cloned().unwrap_or(k), v))
                        .collect();
                }
            }
            _ => {}
        }
        changed
    }
}

struct ResponseReshaper;

impl Plugin for ResponseReshaper {
    fn init(config: &Config) -> Result<(), String> {
        Settings::load(config).map(drop)
    }

    fn on_response(request: &Request, response: &Response) -> ResponseVerdict {
        if !response.is_success() {
            return ResponseVerdict::Proceed;
        }
        let Ok(mut body) = response.json::<Value>() else { return ResponseVerdict::Proceed };
        let settings = match Settings::load(&config::get()) {
            Ok(settings) => settings,
            // Fail closed: an unreadable configuration must not let fields through.
            Err(_) => return ResponseVerdict::replace_json(500, &serde_json::json!({"error": "response_reshaper"})),
        };
        if settings.reshape(&mut body, request.principal.user_id()) {
            ResponseVerdict::Replace(response.with_json_body(&body))
        } else {
            ResponseVerdict::Proceed
        }
    }
}

imgate_plugin_sdk::export!(ResponseReshaper);
imgate_plugin_sdk::hooks!(on_response);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn settings() -> Settings {
        Settings::load(&Config::new(r#"{"strip_for_others":["phone"],"rename":{"face_url":"avatar"}}"#)).unwrap()
    }

    #[test]
    fn strips_for_others_and_renames_everywhere() {
        let mut body = json!({"data": {"users": [
            {"user_id": "me", "phone": "1", "face_url": "a"},
            {"user_id": "you", "phone": "2", "face_url": "b", "nested": {"face_url": "c"}},
        ]}});
        assert!(settings().reshape(&mut body, Some("me")));
        assert_eq!(
            body,
            json!({"data": {"users": [
                {"user_id": "me", "phone": "1", "avatar": "a"},
                {"user_id": "you", "avatar": "b", "nested": {"avatar": "c"}},
            ]}})
        );
    }

    #[test]
    fn operators_and_non_string_ids_are_someone_else() {
        let mut body = json!([{"user_id": "me", "phone": "1"}, {"user_id": 7, "phone": "2"}]);
        assert!(settings().reshape(&mut body, None));
        assert_eq!(body, json!([{"user_id": "me"}, {"user_id": 7}]));
        let mut body = json!({"user_id": 7, "phone": "2"});
        assert!(settings().reshape(&mut body, Some("me")));
        assert_eq!(body, json!({"user_id": 7}));
    }

    #[test]
    fn untouched_bodies_report_no_change() {
        let mut body = json!({"user_id": "me", "phone": "1", "items": [1, "x", null]});
        assert!(!settings().reshape(&mut body, Some("me")));
        assert!(Settings::load(&Config::new(r#"{"strip":[]}"#)).is_err());
        assert!(Settings::load(&Config::new(r#"{"rename":{"a":""}}"#)).is_err());
    }
}
