//! The route table as operators see it: the shipped default (snapshot) and config fixtures.

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
