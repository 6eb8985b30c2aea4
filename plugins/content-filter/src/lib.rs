//! `content-filter`: keeps blocked words out of user-written text: message texts on
//! `send_text_to_user` / `send_text_to_group` by default, and any string fields a chain names, so
//! one chain can govern a `/v1` route and its `/openim` twin (e.g. `/nickname` of
//! `update_profile` and `/userInfo/nickname` of `openim.user.update_user_info_ex`, whose body
//! imgate hands over canonically decoded: the field names are exact).
//!
//! Words match case-insensitively anywhere in a checked field. With `"action": "block"` a request
//! with one is rejected with 422 `content_blocked`; with `"action": "mask"` every occurrence is
//! replaced by one `*` per character and the other fields are kept as they were (the rewritten
//! body's keys come out sorted). Requests without a match, fields that are absent or not
//! strings, and bodies that are not JSON objects (the route refuses those itself), pass unchanged.
//!
//! Configuration (capability `config`), unknown keys refused:
//!
//! ```json
//! { "words": ["spoiler", "darn"], "action": "mask", "fields": ["/text"] }
//! ```
//!
//! `words` must not be empty and each word is 1-64 characters; `action` is required; `fields`
//! (JSON pointers, default `["/text"]`) lists the string fields to check.

use imgate_plugin_sdk::{config, Config, Plugin, Request, RequestVerdict};
use serde::Deserialize;
use serde_json::Value;

imgate_plugin_sdk::config_schema!(
    r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["words", "action"],
  "properties": {
    "words": { "type": "array", "minItems": 1, "items": { "type": "string", "minLength": 1, "maxLength": 64 } },
    "action": { "enum": ["block", "mask"] },
    "fields": { "type": "array", "minItems": 1, "items": { "type": "string", "pattern": "^/" } }
  }
}"#
);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    words: Vec<String>,
    action: Action,
    #[serde(default = "default_fields")]
    fields: Vec<String>,
}

fn default_fields() -> Vec<String> {
    vec!["/text".into()]
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Action {
    Block,
    Mask,
}

impl Settings {
    fn load(config: &Config) -> Result<Settings, String> {
        let settings: Settings = config.parse()?;
        if settings.words.is_empty() {
            return Err("`words` must list at least one word".into());
        }
        if let Some(bad) = settings.words.iter().find(|w| !(1..=64).contains(&w.chars().count())) {
            return Err(format!("each word must be 1-64 characters, not {bad:?}"));
        }
        if settings.fields.is_empty() || settings.fields.iter().any(|f| !f.starts_with('/')) {
            return Err("`fields` must list JSON pointers, each starting with `/`".into());
        }
        Ok(settings)
    }
}

fn same_letter(a: char, b: char) -> bool {
    a == b || a.to_lowercase().eq(b.to_lowercase())
}

/// For each character of `text`, whether it belongs to an occurrence of one of `words`
/// (case-insensitive); `None` when nothing matches.
fn matches(text: &str, words: &[String]) -> Option<Vec<bool>> {
    let text: Vec<char> = text.chars().collect();
    let words: Vec<Vec<char>> = words.iter().map(|w| w.chars().collect()).collect();
    let mut hit = vec![false; text.len()];
    let mut any = false;
    for start in 0..text.len() {
        for word in &words {
            let end = start + word.len();
            if end <= text.len() && text[start..end].iter().zip(word).all(|(&a, &b)| same_letter(a, b)) {
                hit[start..end].fill(true);
                any = true;
            }
        }
    }
    any.then_some(hit)
}

/// `text` with every occurrence of `words` replaced by `*`s; `None` when nothing matches.
fn mask(text: &str, words: &[String]) -> Option<String> {
    let hit = matches(text, words)?;
    Some(text.chars().zip(hit).map(|(c, hit)| if hit { '*' } else { c }).collect())
}

struct ContentFilter;

impl Plugin for ContentFilter {
    fn init(config: &Config) -> Result<(), String> {
        Settings::load(config).map(drop)
    }

    fn on_request(request: &Request) -> RequestVerdict {
        let Ok(mut body) = request.json::<Value>() else { return RequestVerdict::Proceed };
        if !body.is_object() {
            return RequestVerdict::Proceed;
        }
        let settings = match Settings::load(&config::get()) {
            Ok(settings) => settings,
            Err(e) => return RequestVerdict::reject(403, "content_check_failed", e),
        };
        let mut masked_any = false;
        for field in &settings.fields {
            let Some(Value::String(text)) = body.pointer_mut(field) else { continue };
            match settings.action {
                Action::Block if matches(text, &settings.words).is_some() => {
                    return RequestVerdict::reject(422, "content_blocked", "the text contains a blocked word");
                }
                Action::Mask => {
                    if let Some(masked) = mask(text, &settings.words) {
                        *text = masked;
                        masked_any = true;
                    }
                }
                Action::Block => {}
            }
        }
        if masked_any {
            RequestVerdict::modify_json(&body)
        } else {
            RequestVerdict::Proceed
        }
    }
}

imgate_plugin_sdk::export!(ContentFilter);
imgate_plugin_sdk::hooks!(on_request);

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn masks_case_insensitively_and_per_character() {
        let w = words(&["darn", "ÉTÉ"]);
        assert_eq!(mask("Darn it, DARN", &w).as_deref(), Some("**** it, ****"));
        assert_eq!(mask("un été darné", &w).as_deref(), Some("un *** ****é"));
        assert_eq!(mask("all clean", &w), None);
        assert_eq!(mask("", &w), None);
        assert_eq!(mask("abcd", &words(&["abc", "bcd"])).as_deref(), Some("****"));
    }

    #[test]
    fn config_rules() {
        let load = |json: &str| Settings::load(&Config::new(json));
        assert_eq!(load(r#"{"words":["a"],"action":"block"}"#).unwrap().action, Action::Block);
        assert!(load(r#"{"words":[],"action":"block"}"#).is_err());
        assert!(load(r#"{"words":[""],"action":"mask"}"#).is_err());
        assert!(load(&format!(r#"{{"words":["{}"],"action":"mask"}}"#, "x".repeat(65))).is_err());
        assert!(load(r#"{"words":["a"]}"#).is_err());
        assert!(load(r#"{"words":["a"],"action":"drop"}"#).is_err());
        assert!(load(r#"{"words":["a"],"action":"mask","extra":1}"#).is_err());
        assert_eq!(load(r#"{"words":["a"],"action":"mask"}"#).unwrap().fields, ["/text"]);
        assert!(load(r#"{"words":["a"],"action":"mask","fields":[]}"#).is_err());
        assert!(load(r#"{"words":["a"],"action":"mask","fields":["nickname"]}"#).is_err());
    }
}
