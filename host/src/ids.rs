//! The identifiers imgate accepts, each rule written once: users, groups, devices, gateway keys,
//! plugins and plugin versions. Every place that takes one of these from a client, a token or the
//! config checks it here.
//!
//! The rules are stricter than OpenIM's (which allows any Unicode letter in ids), so homoglyphs,
//! spaces and control characters never become an identity, a key or a file name.

/// `len` within `range` bytes, each byte allowed by `ok`.
fn rule(s: &str, max: usize, ok: impl Fn(u8) -> bool) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(ok)
}

/// A user id: 1-64 ASCII letters, digits or `_` (enrollment, registration, the route table's
/// `user_id` fields, privileged accounts in the config).
pub fn is_user_id(s: &str) -> bool {
    rule(s, 64, |b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A group id (and the ids a plugin may ask OpenIM about): 1-64 ASCII letters, digits, `_`, `-`.
pub fn is_group_id(s: &str) -> bool {
    rule(s, 64, |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A device id, a gateway key id: 1-64 ASCII letters, digits, `.`, `_`, `-`.
pub fn is_device_id(s: &str) -> bool {
    rule(s, 64, |b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A gateway key id: the device-id rule.
pub fn is_key_id(s: &str) -> bool {
    is_device_id(s)
}

/// A `[[plugin]]` name (also a file and metric label): 1-64 of `a-z 0-9 - _`.
pub fn is_plugin_name(s: &str) -> bool {
    rule(s, 64, |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A plugin version label: 1-64 of `A-Z a-z 0-9 . _ - +`.
pub fn is_version_label(s: &str) -> bool {
    rule(s, 64, |b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_takes_what_it_says_and_nothing_else() {
        let long = "a".repeat(65);
        for bad in ["", long.as_str(), "al ice", "alice\n", "аlice", "a/b", "a\0"] {
            for check in [is_user_id, is_group_id, is_device_id, is_plugin_name, is_version_label] {
                assert!(!check(bad), "{bad:?}");
            }
        }
        assert!(is_user_id("alice_01") && !is_user_id("alice-01") && !is_user_id("a.b"));
        assert!(is_group_id("g-1_x") && !is_group_id("g.1"));
        assert!(is_device_id("phone.1-a_b") && is_key_id("k-2026.1") && !is_device_id("phone+1"));
        assert!(is_plugin_name("content-filter_2") && !is_plugin_name("Content"));
        assert!(is_version_label("1.2.0+build-3") && !is_version_label("1 2"));
        assert!(is_user_id(&"a".repeat(64)));
    }
}
