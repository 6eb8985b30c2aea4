//! Capability `openim`: reads from OpenIM, made by imgate with its own token (a plugin never sees
//! an OpenIM token).

use serde::de::DeserializeOwned;

use crate::bindings::imgate::plugin::openim as host;
use crate::HostError;

pub use host::{Group, Role, User};

/// The user `user_id`, `None` when OpenIM does not know it.
pub fn get_user(user_id: &str) -> Result<Option<User>, HostError> {
    host::get_user(user_id)
}

/// The group `group_id`, `None` when OpenIM does not know it.
pub fn get_group(group_id: &str) -> Result<Option<Group>, HostError> {
    host::get_group(group_id)
}

/// The role of `user_id` in `group_id`, `None` when they are not a member.
pub fn get_membership(group_id: &str, user_id: &str) -> Result<Option<Role>, HostError> {
    host::get_membership(group_id, user_id)
}

/// Parses OpenIM's free-form `ex` text as JSON; `None` when it is empty or not valid JSON for `T`.
fn parse_ex<T: DeserializeOwned>(ex: &str) -> Option<T> {
    serde_json::from_str(ex).ok()
}

impl User {
    /// The user's `ex` field parsed as JSON (`None` when empty or not JSON of that shape).
    pub fn ex_json<T: DeserializeOwned>(&self) -> Option<T> {
        parse_ex(&self.ex)
    }
}

impl Group {
    /// The group's `ex` field parsed as JSON (`None` when empty or not JSON of that shape).
    pub fn ex_json<T: DeserializeOwned>(&self) -> Option<T> {
        parse_ex(&self.ex)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn ex_json_parses_or_gives_none() {
        let group = |ex: &str| Group {
            group_id: "g".into(),
            name: "n".into(),
            owner_user_id: "o".into(),
            member_count: 1,
            ex: ex.into(),
        };
        assert_eq!(group(r#"{"private":true}"#).ex_json::<Value>(), Some(json!({"private": true})));
        assert_eq!(group("").ex_json::<Value>(), None);
        assert_eq!(group("not json").ex_json::<Value>(), None);
    }
}
