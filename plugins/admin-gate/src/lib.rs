//! `admin-gate`: narrows who may call a route beyond imgate's own authentication, on admin routes
//! (by token subject and scopes) and user routes (by device tier).
//!
//! An operator passes when their token's subject is in `admin_subjects` (when that list is given)
//! and the token carries every scope of `require_scopes`. An end user passes when their device
//! tier is in `user_tiers` (when that list is given). Everyone else is rejected with 403
//! `not_allowed`.
//!
//! Configuration (capability `config`), all fields optional, unknown keys refused:
//!
//! ```json
//! { "admin_subjects": ["ops-bot"], "require_scopes": ["users:write"], "user_tiers": ["gold"] }
//! ```

use imgate_plugin_sdk::{config, Config, Plugin, Principal, Request, RequestVerdict};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    admin_subjects: Option<Vec<String>>,
    #[serde(default)]
    require_scopes: Vec<String>,
    user_tiers: Option<Vec<String>>,
}

/// `None` (no list) lets everyone in; a list lets in only what it names.
fn listed(list: &Option<Vec<String>>, value: &str) -> bool {
    list.as_ref().is_none_or(|list| list.iter().any(|l| l == value))
}

impl Settings {
    fn allows(&self, principal: &Principal) -> bool {
        match principal {
            Principal::Admin(admin) => {
                listed(&self.admin_subjects, &admin.subject) && self.require_scopes.iter().all(|s| admin.has_scope(s))
            }
            Principal::User(user) => listed(&self.user_tiers, &user.tier),
        }
    }
}

struct AdminGate;

impl Plugin for AdminGate {
    fn init(config: &Config) -> Result<(), String> {
        config.parse::<Settings>().map(drop)
    }

    fn on_request(request: &Request) -> RequestVerdict {
        match config::get().parse::<Settings>() {
            Ok(settings) if settings.allows(&request.principal) => RequestVerdict::Proceed,
            Ok(_) => RequestVerdict::reject(403, "not_allowed", "this caller may not use this route"),
            Err(e) => RequestVerdict::reject(403, "not_allowed", e),
        }
    }
}

imgate_plugin_sdk::export!(AdminGate);
imgate_plugin_sdk::hooks!(on_request);

#[cfg(test)]
mod tests {
    use imgate_plugin_sdk::{AdminPrincipal, UserPrincipal};

    use super::*;

    fn admin(subject: &str, scopes: &[&str]) -> Principal {
        Principal::Admin(AdminPrincipal {
            subject: subject.into(),
            issuer: "https://idp".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn user(tier: &str) -> Principal {
        Principal::User(UserPrincipal {
            user_id: "u1".into(),
            platform: 1,
            session_id: "s".into(),
            device_id: "d".into(),
            tier: tier.into(),
        })
    }

    #[test]
    fn rules() {
        let s: Settings = Config::new(r#"{"admin_subjects":["ops"],"require_scopes":["a","b"],"user_tiers":["gold"]}"#)
            .parse()
            .unwrap();
        assert!(s.allows(&admin("ops", &["b", "a", "c"])));
        assert!(!s.allows(&admin("ops", &["a"])));
        assert!(!s.allows(&admin("eve", &["a", "b"])));
        assert!(s.allows(&user("gold")));
        assert!(!s.allows(&user("standard")));
        let open = Settings::default();
        assert!(open.allows(&admin("anyone", &[])) && open.allows(&user("standard")));
        assert!(AdminGate::init(&Config::new(r#"{"user_tier":[]}"#)).is_err());
    }
}
