//! Capability `config`: the route's configuration of this plugin, as `init` gets it and as hooks
//! read it with [`get`].

use serde::de::DeserializeOwned;

use crate::bindings::imgate::plugin::config as host;

/// The route's configuration of a plugin: a JSON text (`{}` when the route gives none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    json: String,
}

impl Config {
    /// Wraps a JSON text (imgate does this for you; useful in tests).
    pub fn new(json: impl Into<String>) -> Self {
        Config { json: json.into() }
    }

    /// The JSON text as imgate passed it.
    pub fn as_str(&self) -> &str {
        &self.json
    }

    /// Parses the configuration into `T`. The error says where and why, ready to be returned from
    /// [`Plugin::init`](crate::Plugin::init).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.json).map_err(|e| format!("invalid plugin configuration: {e}"))
    }
}

/// The route's configuration of this plugin (needs the `config` capability).
pub fn get() -> Config {
    Config::new(host::get())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Words {
        words: Vec<String>,
    }

    #[test]
    fn parse_reports_errors() {
        let ok = Config::new(r#"{"words":["a"]}"#);
        assert_eq!(ok.parse::<Words>().unwrap(), Words { words: vec!["a".into()] });
        assert_eq!(ok.as_str(), r#"{"words":["a"]}"#);
        let err = Config::new(r#"{"wrods":[]}"#).parse::<Words>().unwrap_err();
        assert!(err.starts_with("invalid plugin configuration: unknown field `wrods`"), "{err}");
    }
}
