//! `{{name}}`: an imgate policy plugin. It rejects (403 `denied_word`) a request whose JSON body's
//! `text` contains one of the words the route's configuration denies, matched case-insensitively,
//! and lets every other request through unchanged.
//!
//! Configuration (capability `config`), unknown keys refused:
//!
//! ```json
//! { "deny": ["spam", "scam"] }
//! ```
//!
//! The policy is plain functions (`Settings::parse`, `decide`) that `cargo test` checks natively;
//! the glue at the bottom connects them to imgate's contract through the SDK. Each hook call runs
//! in a fresh instance: keep nothing in statics, read the configuration where it is needed.

use imgate_plugin_sdk::{config, Config, Plugin, Request, RequestVerdict};
use serde::Deserialize;
use serde_json::Value;

// Shown to operators by `imgate plugin status`; `init` is still what accepts or refuses a config.
imgate_plugin_sdk::config_schema!(
    r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["deny"],
  "properties": {
    "deny": { "type": "array", "minItems": 1, "items": { "type": "string", "minLength": 1, "maxLength": 64 } }
  }
}"#
);

/// The route's configuration of the plugin.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Words a message text may not contain.
    deny: Vec<String>,
}

impl Settings {
    /// Parses and checks a configuration (a JSON text); the error says what is wrong.
    fn parse(json: &str) -> Result<Settings, String> {
        let settings: Settings = Config::new(json).parse()?;
        if settings.deny.is_empty() {
            return Err("`deny` must list at least one word".into());
        }
        if let Some(bad) = settings
            .deny
            .iter()
            .find(|w| !(1..=64).contains(&w.chars().count()))
        {
            return Err(format!("each word must be 1-64 characters, not {bad:?}"));
        }
        Ok(settings)
    }
}

/// The first denied word `text` contains, compared case-insensitively.
fn denied_word<'a>(text: &str, deny: &'a [String]) -> Option<&'a str> {
    let text = text.to_lowercase();
    deny.iter()
        .map(String::as_str)
        .find(|word| text.contains(&word.to_lowercase()))
}

/// The verdict on a request body: reject when its `text` holds a denied word. A body that is not a
/// JSON object, or has no string `text`, goes on (the route refuses malformed bodies itself).
fn decide(body: &[u8], settings: &Settings) -> RequestVerdict {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return RequestVerdict::Proceed;
    };
    match fields.get("text") {
        Some(Value::String(text)) if denied_word(text, &settings.deny).is_some() => {
            RequestVerdict::reject(
                403,
                "denied_word",
                "the text contains a word this conversation does not allow",
            )
        }
        _ => RequestVerdict::Proceed,
    }
}

// ---- The glue: imgate's contract (wit/plugin.wit) through the SDK.

struct Policy;

impl Plugin for Policy {
    /// Runs when imgate loads a route's configuration: an error refuses it before it serves.
    fn init(config: &Config) -> Result<(), String> {
        Settings::parse(config.as_str()).map(drop)
    }

    fn on_request(request: &Request) -> RequestVerdict {
        match Settings::parse(config::get().as_str()) {
            Ok(settings) => decide(&request.body, &settings),
            // `init` accepted this configuration, so this does not happen; if it did, refuse.
            Err(e) => RequestVerdict::reject(403, "policy_misconfigured", e),
        }
    }
}

imgate_plugin_sdk::export!(Policy);
// imgate calls only the hooks declared here (on-response is then never called: no instance, no copy).
imgate_plugin_sdk::hooks!(on_request);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(words: &[&str]) -> Settings {
        Settings {
            deny: words.iter().map(|w| w.to_string()).collect(),
        }
    }

    #[test]
    fn rejects_a_text_with_a_denied_word_in_any_case() {
        let verdict = decide(
            br#"{"text": "cheap SPAM, click here"}"#,
            &settings(&["spam", "scam"]),
        );
        assert!(
            matches!(&verdict, RequestVerdict::Reject(r) if r.status == 403 && r.code == "denied_word"),
            "{verdict:?}"
        );
    }

    #[test]
    fn lets_everything_else_through() {
        let s = settings(&["spam"]);
        assert_eq!(
            decide(br#"{"text": "hello bob"}"#, &s),
            RequestVerdict::Proceed
        );
        assert_eq!(
            decide(br#"{"title": "spam"}"#, &s),
            RequestVerdict::Proceed,
            "only `text` is checked"
        );
        assert_eq!(decide(br#"{"text": 42}"#, &s), RequestVerdict::Proceed);
        assert_eq!(decide(b"not json", &s), RequestVerdict::Proceed);
    }

    #[test]
    fn checks_the_configuration() {
        assert_eq!(
            Settings::parse(r#"{"deny": ["spam"]}"#),
            Ok(settings(&["spam"]))
        );
        assert!(Settings::parse(r#"{"deny": []}"#).is_err());
        assert!(Settings::parse(r#"{"deny": [""]}"#).is_err());
        assert!(Settings::parse(r#"{"deny": ["spam"], "extra": 1}"#).is_err());
        assert!(Settings::parse("{}").is_err());
        assert!(Settings::parse("not json").is_err());
    }
}
