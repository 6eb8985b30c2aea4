//! Keeps `docs/security.md` true: every served route has its row, and the compat rows say what
//! the code enforces (issue 10: "a test checks that every allowed compat route and every `/v1`
//! route appears in it").

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use host::routes::compat::ALLOWED;

const DOC: &str = include_str!("../../docs/security.md");

/// A rule as the doc writes it: `Caller(userID)`, `CallerIn(a, b)`.
fn rendered(rules: &[host::routes::compat::Rule]) -> String {
    if rules.is_empty() {
        return "—".into();
    }
    rules.iter().map(|r| format!("{r:?}").replace('"', "")).collect::<Vec<_>>().join(" · ")
}

#[test]
fn every_compat_route_has_a_row_that_matches_its_rules() {
    for (path, rules) in ALLOWED {
        let prefix = format!("| `{path}` |");
        let row = DOC.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no row for {path}"));
        let cell = row[prefix.len()..].split('|').next().unwrap_or("").trim();
        assert_eq!(cell, rendered(rules), "docs/security.md row of {path} disagrees with compat::ALLOWED");
    }
}

#[test]
fn every_v1_route_has_a_row() {
    for r in host::routes::table::default_routes() {
        let named = format!("`{} {}`", r.method, r.path);
        assert!(DOC.contains(&named), "docs/security.md lacks {named} (route table `{}`)", r.name);
    }
    // Every other route, from the descriptors the router is assembled from.
    let mut n = 0;
    for r in host::routes::descriptors(&[]) {
        if r.path.starts_with("/openim") {
            continue;
        }
        n += 1;
        let row = format!("`{} {}`", r.method, r.path);
        assert!(DOC.contains(&row), "docs/security.md lacks {row} (route `{}`)", r.name);
    }
    assert!(n >= 15, "the router's routes were found ({n})");
}
