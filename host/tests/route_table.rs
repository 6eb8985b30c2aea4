//! The route table as operators see it: the shipped default (snapshot) and config fixtures.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::process::Command;

use host::routes::table::{default_routes, describe};

/// The default `/v1` table, one line per route. A change here is an API change: review the diff,
/// then regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p host --test route_table`.
#[test]
fn default_route_table_snapshot() {
    let actual = describe(&default_routes());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/default_routes.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &actual).expect("write snapshot");
    }
    let expected = std::fs::read_to_string(path).expect("snapshot exists (UPDATE_SNAPSHOTS=1 creates it)");
    assert_eq!(actual, expected, "the default route table changed");
}

/// Every route imgate serves with the default table, as the router is assembled from it: method,
/// path, name, authentication, rate-limit class, whether a plugin chain may run, body cap. A change
/// here changes who may call what: review the diff, then regenerate with
/// `UPDATE_SNAPSHOTS=1 cargo test -p host --test route_table`.
#[test]
fn route_descriptors_snapshot() {
    let actual = host::routes::describe_routes(&host::routes::descriptors(&default_routes()));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/routes.txt");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &actual).expect("write snapshot");
    }
    let expected = std::fs::read_to_string(path).expect("snapshot exists (UPDATE_SNAPSHOTS=1 creates it)");
    assert_eq!(actual, expected, "the route descriptors changed");
}

/// Only the four public routes go without authentication; every other route authenticates first
/// and is rate-limited by the caller (its class), unless it is the `/openim/` catch-all, which
/// refuses everything it is given once authenticated.
#[test]
fn only_public_routes_go_without_authentication() {
    let routes = host::routes::descriptors(&default_routes());
    let public: Vec<_> =
        routes.iter().filter(|r| r.auth == host::routes::Auth::Public).map(|r| r.path.as_str()).collect();
    assert_eq!(public, ["/healthz", "/readyz", "/v1/auth/gateway-key", "/v1/auth/handshake"]);
    for r in routes.iter().filter(|r| r.auth != host::routes::Auth::Public && r.name != "openim.unlisted") {
        assert!(r.class.is_some(), "{} has no rate-limit class", r.name);
    }
    for r in routes.iter().filter(|r| r.path.starts_with("/v1/admin")) {
        assert!(matches!(r.auth, host::routes::Auth::Admin(_)), "{} is an admin path without admin auth", r.name);
    }
}

fn check(path: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_imgate"))
        .args(["check-config", path])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("imgate runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_custom_route_table_is_accepted() {
    let (ok, stderr) = check("tests/fixtures/routes_valid.toml");
    assert!(ok, "{stderr}");
}

#[test]
fn every_problem_of_a_bad_route_table_is_listed() {
    let (ok, stderr) = check("tests/fixtures/routes_invalid.toml");
    assert!(!ok);
    for needle in [
        "route `admin_token_for_user_op`: token:",
        "route `bad_method`: method",
        "route `undeclared`: params:",
        "route `dup`: duplicate name",
        "route[5].sendID: unknown field",
        "`$body.x` names an undeclared",
        "route `bad_class`: class:",
    ] {
        assert!(stderr.contains(needle), "`{needle}` not in:\n{stderr}");
    }
}
