//! `imgate plugin ls|status|push|activate|rollback` (`host::cli_plugin`) against the real gateway:
//! the command line is only a client of the admin API, so these check that what it prints and
//! refuses matches what the gateway then serves and has on disk.

use std::path::{Path, PathBuf};

use e2e::plugins::hostile_plugin;
use e2e::reload::sha256_hex;
use e2e::*;
use host::cli_plugin::{run, Gateway, PluginCmd};
use imgate_client::Session;

/// A gateway running plugin `echo` (from a copy in a fresh folder: activation writes the active
/// version to that file) on `GET /v1/me/profile`; the harness, the file, and echo's bytes.
async fn gateway() -> (Harness, PathBuf, Vec<u8>) {
    let work = std::env::temp_dir().join(format!("imgate-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).unwrap();
    let path = work.join("echo.wasm");
    std::fs::copy(hostile_plugin("echo"), &path).unwrap();
    let toml = format!(
        "[plugins]\nstore_dir = \"{store}\"\n[[plugin]]\nname = \"echo\"\npath = \"{path}\"\ncapabilities = []\n\
         [[route_plugins]]\nroute = \"get_profile\"\nplugins = [{{ plugin = \"echo\", config = {{}} }}]\n",
        store = work.join("store").display(),
        path = path.display(),
    );
    let h = Harness::start_with(Options { extra_toml: toml, ..Options::default() }).await;
    let bytes = std::fs::read(&path).unwrap();
    (h, path, bytes)
}

fn gw(h: &Harness, scope: &str) -> Gateway {
    Gateway { url: h.gateway_url.clone(), token: h.admin_jwt(scope) }
}

/// A token allowed everything `imgate plugin` does.
fn operator(h: &Harness) -> Gateway {
    gw(h, "imgate:admin plugins:write")
}

/// `ls`'s row for `name`, split into its columns (NAME VERSION HASH SOURCE VERSIONS QUARANTINED
/// LAST ERROR); the header is checked too, so a reordered table fails here.
async fn ls_row(h: &Harness, name: &str) -> Vec<String> {
    let out = run(PluginCmd::Ls { gateway: gw(h, "imgate:admin") }).await.expect("ls");
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "VERSION", "HASH", "SOURCE", "VERSIONS", "QUARANTINED", "LAST", "ERROR"], "{out}");
    let row =
        lines.find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("no {name} in\n{out}"));
    row.split_whitespace().map(String::from).collect()
}

/// What answered a signed `GET /v1/me/profile`: `Some(n)` the `version` plugin, `None` OpenIM
/// (echo lets the request through).
async fn served_by(h: &Harness, s: &Session) -> Option<u64> {
    let res = h.client().call(s, "GET", "/v1/me/profile", None).await.expect("call");
    let (status, body) = into_json(res).await;
    assert_eq!(status, 200, "{body}");
    body["plugin_version"].as_u64()
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test]
async fn push_activate_and_rollback_from_the_command_line() {
    let (h, path, echo_bytes) = gateway().await;
    let (_, alice) = h.session("alice").await;
    let echo = sha256_hex(&echo_bytes);
    let version_file = hostile_plugin("version");
    let version_bytes = std::fs::read(&version_file).unwrap();
    let version = sha256_hex(&version_bytes);

    // ls: echo, active, from its file.
    let row = ls_row(&h, "echo").await;
    assert_eq!(row[2], echo[..12], "{row:?}");
    assert_eq!((row[3].as_str(), row[4].as_str(), row[5].as_str(), row[6].as_str()), ("file", "1", "0", "-"));
    assert_eq!(served_by(&h, &alice).await, None);

    // push without --activate: stored, not serving.
    let out = run(PluginCmd::Push {
        name: "echo".into(),
        file: version_file.clone(),
        version: Some("v2".into()),
        activate: false,
        gateway: operator(&h),
    })
    .await
    .expect("push");
    assert!(out.starts_with("stored echo version v2") && out.contains(&version) && out.contains("not active"), "{out}");
    let row = ls_row(&h, "echo").await;
    assert_eq!((row[2].as_str(), row[4].as_str()), (&echo[..12], "2"), "active unchanged, two versions: {row:?}");
    assert_eq!(served_by(&h, &alice).await, None);
    assert_eq!(std::fs::read(&path).unwrap(), echo_bytes);

    // activate, by the 12 digits ls prints.
    let out = run(PluginCmd::Activate { name: "echo".into(), hash: version[..12].into(), gateway: operator(&h) })
        .await
        .expect("activate");
    assert_eq!(out, format!("activated echo version v2 ({version})\n"));
    let row = ls_row(&h, "echo").await;
    assert_eq!((row[1].as_str(), row[2].as_str(), row[3].as_str()), ("v2", &version[..12], "upload"), "{row:?}");
    let status = run(PluginCmd::Status { name: "echo".into(), gateway: gw(&h, "imgate:admin") }).await.expect("status");
    assert!(status.contains(&format!("active        version v2 ({version}), source upload")), "{status}");
    assert!(status.contains(&format!("* {}  v2", &version[..12])), "{status}");
    assert!(status.contains(&format!("history       {} -> {}", &echo[..12], &version[..12])), "{status}");
    assert!(served_by(&h, &alice).await.is_some(), "the version plugin answers");
    assert_eq!(std::fs::read(&path).unwrap(), version_bytes, "the watched file holds the active version");

    // rollback: echo again (its manifest keeps the source it first came from: the file).
    let out = run(PluginCmd::Rollback { name: "echo".into(), gateway: operator(&h) }).await.expect("rollback");
    assert_eq!(out, format!("rolled back echo to version {} ({echo})\n", &echo[..12]));
    let row = ls_row(&h, "echo").await;
    assert_eq!((row[2].as_str(), row[3].as_str(), row[4].as_str()), (&echo[..12], "file", "2"), "{row:?}");
    assert_eq!(served_by(&h, &alice).await, None);
    assert_eq!(std::fs::read(&path).unwrap(), echo_bytes);

    // push --activate in one step; then back to echo by its full hash.
    let out = run(PluginCmd::Push {
        name: "echo".into(),
        file: version_file,
        version: None,
        activate: true,
        gateway: operator(&h),
    })
    .await
    .expect("push --activate");
    assert!(out.starts_with("activated echo version v2") && out.contains(&version), "same bytes, same manifest: {out}");
    assert!(served_by(&h, &alice).await.is_some(), "the version plugin answers");
    let out = run(PluginCmd::Activate { name: "echo".into(), hash: echo.clone(), gateway: operator(&h) })
        .await
        .expect("activate by full hash");
    assert!(out.ends_with(&format!("({echo})\n")), "{out}");
    assert_eq!(served_by(&h, &alice).await, None);
}

#[tokio::test]
async fn refused_pushes_and_unknown_hashes_change_nothing() {
    let (h, path, echo_bytes) = gateway().await;
    let echo = sha256_hex(&echo_bytes);
    let garbage = write_temp(&h.dir, "garbage.wasm", b"definitely not a component");
    for activate in [false, true] {
        let err = run(PluginCmd::Push {
            name: "echo".into(),
            file: garbage.clone(),
            version: None,
            activate,
            gateway: operator(&h),
        })
        .await
        .expect_err("garbage is refused");
        assert!(err.contains("/v1/admin/plugins/echo/versions: 400 "), "{err}");
        assert!(err.contains("request id "), "{err}");
    }
    let row = ls_row(&h, "echo").await;
    assert_eq!((row[2].as_str(), row[4].as_str()), (&echo[..12], "1"), "{row:?}");
    assert_eq!(std::fs::read(&path).unwrap(), echo_bytes);

    let err = run(PluginCmd::Activate { name: "echo".into(), hash: "abcdef".into(), gateway: operator(&h) })
        .await
        .expect_err("no such version");
    assert_eq!(err, "echo: no stored version has a hash starting with abcdef");
    let err = run(PluginCmd::Activate { name: "echo".into(), hash: "v2".into(), gateway: operator(&h) })
        .await
        .expect_err("not a hash");
    assert!(err.contains("expected a hash"), "{err}");
    let err = run(PluginCmd::Activate { name: "echo".into(), hash: format!("{:0>64}", "1"), gateway: operator(&h) })
        .await
        .expect_err("a full hash the store lacks");
    assert!(err.contains("/v1/admin/plugins/echo/activate: 404 not_found: no stored version"), "{err}");
    let err = run(PluginCmd::Status { name: "nope".into(), gateway: operator(&h) }).await.expect_err("unknown");
    assert!(err.contains("404 not_found: no such plugin"), "{err}");
    let missing = h.dir.join("missing.wasm");
    let err = run(PluginCmd::Push {
        name: "echo".into(),
        file: missing,
        version: None,
        activate: false,
        gateway: operator(&h),
    })
    .await
    .expect_err("no file");
    assert!(err.contains("missing.wasm"), "{err}");
    assert_eq!(ls_row(&h, "echo").await[2], echo[..12]);
}

#[tokio::test]
async fn changes_need_plugins_write() {
    let (h, path, echo_bytes) = gateway().await;
    let echo = sha256_hex(&echo_bytes);
    let reader = gw(&h, "imgate:admin");
    let file = hostile_plugin("version");
    let refused = [
        PluginCmd::Push { name: "echo".into(), file, version: None, activate: true, gateway: reader.clone() },
        PluginCmd::Activate { name: "echo".into(), hash: echo.clone(), gateway: reader.clone() },
        PluginCmd::Rollback { name: "echo".into(), gateway: reader.clone() },
    ];
    for cmd in refused {
        let err = run(cmd.clone()).await.expect_err("refused");
        assert!(err.contains(": 403 forbidden"), "{cmd:?}: {err}");
    }
    let err =
        run(PluginCmd::Ls { gateway: Gateway { token: "not-a-jwt".into(), ..reader } }).await.expect_err("bad token");
    assert!(err.contains(": 401 "), "{err}");
    let row = ls_row(&h, "echo").await;
    assert_eq!((row[2].as_str(), row[4].as_str()), (&echo[..12], "1"), "{row:?}");
    assert_eq!(std::fs::read(&path).unwrap(), echo_bytes);
}
