//! The plugin author's kit (issue 15) through the real `imgate` binary: for each language,
//! `imgate plugin new` scaffolds a plugin, the scaffold's own unit tests pass with the language's
//! own tool, it builds into a component with the language's own toolchain, and `imgate plugin test`
//! runs its hooks against the recorded requests it came with: the one with a denied word is
//! rejected, the other proceeds, and a component given the wrong capabilities fails to load with
//! a report that says what to grant.
//!
//! The binary is `target/debug/imgate`, beside this test's own folder: `cargo test --workspace`
//! (`make test`) builds it, since `host` has integration tests. Running this suite alone
//! (`cargo test -p e2e --test suite plugin_kit`) uses the binary as last built: `cargo build -p host`
//! first. The toolchains are the ones `make deps` installs for the language twins: componentize-js
//! in `plugins/content-filter-js/node_modules` (the scaffold links to it: no network in a test),
//! componentize-py in `plugins/group-join-policy-py/.venv`. Rust builds share
//! `plugins/target/kit`, so only the scaffold itself is compiled after the first run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root")
}

/// `target/debug/imgate`: this test runs from `target/debug/deps/`.
fn imgate() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let bin = exe.parent().and_then(Path::parent).expect("target/debug").join("imgate");
    assert!(bin.is_file(), "no imgate binary at {}: build it (cargo build -p host)", bin.display());
    let help = Command::new(&bin).args(["plugin", "new", "--help"]).output().expect("imgate runs");
    assert!(
        help.status.success(),
        "{} does not know `imgate plugin new`: it is older than this test; cargo build -p host",
        bin.display()
    );
    bin
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd`; panics with its output unless it succeeded.
fn ok(what: &str, cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{what} failed ({}):\n{}{}", out.status, text(&out.stdout), text(&out.stderr));
    out
}

/// A fresh folder for one language's scaffold (removed when the test passes).
fn workspace(lang: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("imgate-kit-{lang}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// `imgate plugin new word-filter --lang LANG --dir WORK/word-filter`; the scaffold's folder.
fn scaffold(work: &Path, lang: &str) -> PathBuf {
    let dir = work.join("word-filter");
    let out = ok(
        "imgate plugin new",
        Command::new(imgate()).args(["plugin", "new", "word-filter", "--lang", lang, "--dir"]).arg(&dir),
    );
    let said = text(&out.stdout);
    assert!(said.contains("created word-filter") && said.contains("imgate plugin test"), "{said}");
    for file in ["README.md", "request.json", "request-denied.json", "config.json"] {
        assert!(dir.join(file).is_file(), "{lang}: no {file} in the scaffold");
    }
    // Refused: a folder that is not empty.
    let again = Command::new(imgate())
        .args(["plugin", "new", "word-filter", "--lang", lang, "--dir"])
        .arg(&dir)
        .output()
        .expect("imgate runs");
    assert!(!again.status.success() && text(&again.stderr).contains("is not empty"), "{lang}: {again:?}");
    dir
}

/// `imgate plugin test COMPONENT --request REQUEST --config config.json --capabilities CAPS --json`
/// from the scaffold's folder: the exit status and the report.
fn plugin_test(dir: &Path, cache: &Path, component: &Path, request: &str, caps: Option<&str>) -> (bool, Value) {
    let mut cmd = Command::new(imgate());
    cmd.current_dir(dir)
        .args(["plugin", "test"])
        .arg(component)
        .args(["--request", request, "--config", "config.json", "--json", "--cache-dir"])
        .arg(cache);
    if let Some(caps) = caps {
        cmd.args(["--capabilities", caps]);
    }
    let out = cmd.output().expect("imgate runs");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}):\n{}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.success(), report)
}

/// What every language's plugin must do under `imgate plugin test`.
fn check_the_component(lang: &str, dir: &Path, component: &Path, caps: &str, wrong_caps: Option<&str>) {
    let cache = dir.join(".imgate-cache");
    let started = Instant::now();

    let (passed, report) = plugin_test(dir, &cache, component, "request-denied.json", Some(caps));
    assert!(passed, "{lang}: {report:#}");
    let verdict = &report["on_request"]["verdict"];
    assert_eq!(
        (verdict["verdict"].as_str(), verdict["status"].as_u64(), verdict["code"].as_str()),
        (Some("reject"), Some(403), Some("denied_word")),
        "{lang}: {report:#}"
    );
    assert_eq!(report["init"]["ok"], true, "{lang}: {report:#}");
    assert_eq!(report["component"]["capabilities_imported"].as_array().map(Vec::len), Some(caps.split(',').count()));

    let (passed, report) = plugin_test(dir, &cache, component, "request.json", Some(caps));
    assert!(passed, "{lang}: {report:#}");
    assert_eq!(report["on_request"]["verdict"]["verdict"], "proceed", "{lang}: {report:#}");

    // The text report says the same, readably.
    let out = ok(
        "imgate plugin test (text)",
        Command::new(imgate())
            .current_dir(dir)
            .args(["plugin", "test"])
            .arg(component)
            .args(["--request", "request-denied.json", "--config", "config.json", "--capabilities", caps])
            .arg("--cache-dir")
            .arg(&cache),
    );
    let report = text(&out.stdout);
    assert!(report.contains("verdict     reject 403 denied_word: the text contains a word"), "{lang}:\n{report}");
    assert!(report.contains("ok: every hook ran"), "{lang}:\n{report}");

    // Too few capabilities: it does not load, non-zero exit, and the report names what to grant.
    let (passed, report) = plugin_test(dir, &cache, component, "request.json", wrong_caps);
    assert!(!passed, "{lang}: loaded with {wrong_caps:?}: {report:#}");
    assert_eq!(report["load"]["ok"], false, "{lang}: {report:#}");
    let wanted: Vec<&str> = caps.split(',').collect();
    assert_eq!(report["load"]["grant"], serde_json::json!(wanted), "{lang}: {report:#}");
    assert!(report["load"]["error"].as_str().unwrap_or("").contains("imports not allowed"), "{lang}: {report:#}");
    assert!(report.get("on_request").is_none(), "{lang}: no hook runs when loading failed");
    eprintln!("{lang}: imgate plugin test, 4 runs: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_rust_scaffold_tests_builds_and_runs_under_imgate_plugin_test() {
    let started = Instant::now();
    let work = workspace("rust");
    let dir = scaffold(&work, "rust");
    let target = repo_root().join("plugins/target/kit");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let cargo_in = |args: &[&str]| {
        let mut c = Command::new(&cargo);
        c.current_dir(&dir)
            .args(args)
            .arg("--target-dir")
            .arg(&target)
            // Flags meant for the outer (native) build have no business here (tests/e2e/src/plugins.rs).
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS");
        c
    };
    // `--locked`: the scaffold's Cargo.lock is complete (the versions imgate's own plugins use).
    let tests = ok("cargo test (the scaffold's unit tests)", &mut cargo_in(&["test", "--locked"]));
    assert!(text(&tests.stdout).contains("test result: ok. 3 passed"), "{}", text(&tests.stdout));
    ok("cargo build (the component)", &mut cargo_in(&["build", "--locked", "--release", "--target", "wasm32-wasip2"]));
    let component = target.join("wasm32-wasip2/release/word_filter.wasm");
    check_the_component("rust", &dir, &component, "config", None);

    // A configuration the plugin's init refuses: non-zero exit, init's message, no hook run.
    std::fs::write(dir.join("config.json"), r#"{"deny": []}"#).unwrap();
    let (passed, report) = plugin_test(&dir, &dir.join(".imgate-cache"), &component, "request.json", Some("config"));
    assert!(!passed, "{report:#}");
    assert_eq!(report["init"]["refused"], "`deny` must list at least one word", "{report:#}");
    assert!(report.get("on_request").is_none(), "{report:#}");
    std::fs::remove_dir_all(&work).unwrap();
    eprintln!("rust: scaffold, test, build, imgate plugin test: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_javascript_scaffold_tests_builds_and_runs_under_imgate_plugin_test() {
    let started = Instant::now();
    let modules = repo_root().join("plugins/content-filter-js/node_modules");
    assert!(
        modules.join("@bytecodealliance/componentize-js").is_dir(),
        "componentize-js is not installed in {} (make deps)",
        modules.display()
    );
    let work = workspace("js");
    let dir = scaffold(&work, "js");
    // The same pinned componentize-js the JavaScript twin builds with.
    std::os::unix::fs::symlink(&modules, dir.join("node_modules")).unwrap();
    let tests = ok("node --test (the scaffold's unit tests)", Command::new("node").current_dir(&dir).arg("--test"));
    assert!(text(&tests.stdout).contains("# pass 3"), "{}", text(&tests.stdout));
    ok("node build.mjs (the component)", Command::new("node").current_dir(&dir).args(["build.mjs", "plugin.wasm"]));
    check_the_component("js", &dir, &dir.join("plugin.wasm"), "config", None);
    std::fs::remove_dir_all(&work).unwrap();
    eprintln!("js: scaffold, test, build, imgate plugin test: {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn a_python_scaffold_tests_builds_and_runs_under_imgate_plugin_test() {
    let started = Instant::now();
    let cpy = repo_root().join("plugins/group-join-policy-py/.venv/bin/componentize-py");
    assert!(cpy.is_file(), "componentize-py is not installed at {} (make deps)", cpy.display());
    let work = workspace("py");
    let dir = scaffold(&work, "python");
    let tests = ok(
        "python3 -m unittest (the scaffold's unit tests)",
        Command::new("python3").current_dir(&dir).args(["-m", "unittest"]),
    );
    assert!(text(&tests.stderr).contains("Ran 3 tests"), "{}", text(&tests.stderr));
    ok("build.sh (the component)", Command::new(dir.join("build.sh")).current_dir(&dir).env("COMPONENTIZE_PY", &cpy));
    // componentize-py's CPython imports WASI clocks, files and sockets and needs random bytes.
    check_the_component("python", &dir, &dir.join("plugin.wasm"), "config,random,wasi-stubs", Some("config"));
    std::fs::remove_dir_all(&work).unwrap();
    eprintln!("python: scaffold, test, build, imgate plugin test: {:.1} s", started.elapsed().as_secs_f64());
}
