//! `content-filter`: keeps blocked words out of text messages, on `send_text_to_user` and
//! `send_text_to_group` (JSON bodies with a `text` field next to others).
//!
//! Words match case-insensitively anywhere in `text`. With `"action": "block"` a message that
//! contains one is rejected with 422 `content_blocked`; with `"action": "mask"` every occurrence is
//! replaced by one `*` per character and the other fields are kept as they were (the rewritten
//! body's keys come out sorted). Messages without a
//! match, and bodies that are not JSON objects with a string `text` (the route refuses those
//! itself), pass unchanged.
//!
//! Configuration (capability `config`), unknown keys refused:
//!
//! ```json
//! { "words": ["spoiler", "darn"], "action": "mask" }
//! ```
//!
//! `words` must not be empty and each word is 1-64 characters; `action` is required.

use imgate_plugin_sdk::{config, Config, Plugin, Request, RequestVerdict};
use serde::Deserialize;
use serde_json::{Map, Value};

imgate_plugin_sdk::config_schema!(
    r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["words", "action"],
  "properties": {
    "words": { "type": "array", "minItems": 1, "items": { "type": "string", "minLength": 1, "maxLength": 64 } },
    "action": { "enum": ["block", "mask"] }
  }
}"#
);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    words: Vec<String>,
    action: Action,
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
        let Ok(mut body) = request.json::<Map<String, Value>>() else { return RequestVerdict::Proceed };
        let Some(Value::String(text)) = body.get("text") else { return RequestVerdict::Proceed };
        let settings = match Settings::load(&config::get()) {
            Ok(settings) => settings,
            Err(e) => return RequestVerdict::reject(403, "content_check_failed", e),
        };
        match settings.action {
            Action::Block if matches(text, &settings.words).is_some() => {
                RequestVerdict::reject(422, "content_blocked", "the message contains a blocked word")
            }
            Action::Mask => match mask(text, &settings.words) {
                Some(masked) => {
                    body.insert("text".into(), Value::String(masked));
                    RequestVerdict::modify_json(&body)
                }
                None => RequestVerdict::Proceed,
            },
            Action::Block => RequestVerdict::Proceed,
        }
    }
}

imgate_plugin_sdk::export!(ContentFilter);

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
    }
}
