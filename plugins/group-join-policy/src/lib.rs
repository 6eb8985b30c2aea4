//! `group-join-policy`: keeps private groups closed to callers the route's configuration does not
//! name, on the `join_group` route (`POST /v1/groups/{group_id}/join`).
//!
//! It reads the group from OpenIM (capability `openim`) and looks at its free-form `ex` field: when
//! `ex` is a JSON object with `"private": true`, the caller may join only if their device tier is in
//! `allowed_tiers` or their user id is in `allowed_users`; otherwise the request is rejected with
//! 403 `group_private`. Groups without that flag, and groups OpenIM does not know (it answers those
//! itself), pass. When OpenIM cannot be asked (timeout, outage, quota) the join is refused with 403
//! `group_check_failed`: a private group is never opened by an error.
//!
//! Configuration (capability `config`), both lists optional, unknown keys refused:
//!
//! ```json
//! { "allowed_tiers": ["gold"], "allowed_users": ["u-support"] }
//! ```

use imgate_plugin_sdk::{config, openim, Config, Plugin, Principal, Request, RequestVerdict};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    allowed_tiers: Vec<String>,
    #[serde(default)]
    allowed_users: Vec<String>,
}

impl Settings {
    fn admits(&self, principal: &Principal) -> bool {
        let listed = |list: &[String], value: Option<&str>| value.is_some_and(|v| list.iter().any(|l| l == v));
        listed(&self.allowed_tiers, principal.tier()) || listed(&self.allowed_users, principal.user_id())
    }
}

/// Whether a group's `ex` text marks it private.
fn is_private(ex: Option<Value>) -> bool {
    ex.is_some_and(|ex| ex.get("private") == Some(&Value::Bool(true)))
}

fn check_failed(why: &str) -> RequestVerdict {
    RequestVerdict::reject(403, "group_check_failed", format!("the group could not be checked: {why}"))
}

struct GroupJoinPolicy;

impl Plugin for GroupJoinPolicy {
    fn init(config: &Config) -> Result<(), String> {
        config.parse::<Settings>().map(drop)
    }

    fn on_request(request: &Request) -> RequestVerdict {
        let ["v1", "groups", group_id, "join"] = request.path_segments()[..] else {
            return check_failed("not a group join request");
        };
        let group = match openim::get_group(group_id) {
            Ok(Some(group)) => group,
            Ok(None) => return RequestVerdict::Proceed,
            Err(e) => return check_failed(&e.to_string()),
        };
        if !is_private(group.ex_json()) {
            return RequestVerdict::Proceed;
        }
        let settings: Settings = match config::get().parse() {
            Ok(settings) => settings,
            Err(e) => return check_failed(&e),
        };
        if settings.admits(&request.principal) {
            RequestVerdict::Proceed
        } else {
            RequestVerdict::reject(403, "group_private", "this group is private: joining it needs an invitation")
        }
    }
}

imgate_plugin_sdk::export!(GroupJoinPolicy);
imgate_plugin_sdk::hooks!(on_request);

#[cfg(test)]
mod tests {
    use imgate_plugin_sdk::UserPrincipal;
    use serde_json::json;

    use super::*;

    fn user(id: &str, tier: &str) -> Principal {
        Principal::User(UserPrincipal {
            user_id: id.into(),
            platform: 5,
            session_id: "s".into(),
            device_id: "d".into(),
            tier: tier.into(),
        })
    }

    #[test]
    fn private_flag() {
        assert!(is_private(Some(json!({"private": true}))));
        assert!(!is_private(Some(json!({"private": "true"}))));
        assert!(!is_private(Some(json!([true]))));
        assert!(!is_private(None));
    }

    #[test]
    fn admits_listed_tiers_and_users() {
        let s: Settings = Config::new(r#"{"allowed_tiers":["gold"],"allowed_users":["u9"]}"#).parse().unwrap();
        assert!(s.admits(&user("u1", "gold")));
        assert!(s.admits(&user("u9", "standard")));
        assert!(!s.admits(&user("u1", "standard")));
        assert!(!Settings::default().admits(&user("u1", "gold")));
        assert!(GroupJoinPolicy::init(&Config::new(r#"{"allowed_tier":[]}"#)).is_err());
        assert!(GroupJoinPolicy::init(&Config::new("{}")).is_ok());
    }
}
