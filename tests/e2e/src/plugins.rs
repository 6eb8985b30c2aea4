//! Builds the Wasm plugins the suites load: the examples (`plugins/`) and the hostile ones
//! (`tests/hostile-plugins/`), each its own Cargo workspace built for `wasm32-wasip2`, and the
//! examples in other languages (`plugins/*-js` with componentize-js, `plugins/*-py` with
//! componentize-py; `make deps` installs both toolchains).
//!
//! Each workspace is built once per test process; several processes building at once are
//! serialised by cargo's lock on the workspace's target directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const TARGET: &str = "wasm32-wasip2";

/// The repository root: the first folder above the including crate that holds
/// `tests/hostile-plugins` (this file is also compiled into `host`'s tests, one level down).
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("tests/hostile-plugins/Cargo.toml").is_file())
        .expect("the repository root is above the crate")
}

/// Builds the workspace at `dir` (release, locked) and returns the folder holding its `.wasm` files.
fn build(dir: &Path) -> PathBuf {
    build_into(dir, &dir.join("target"), &[], &[])
}

/// [`build`] into `target_dir`, with extra cargo arguments and environment.
fn build_into(dir: &Path, target_dir: &Path, args: &[&str], env: &[(&str, String)]) -> PathBuf {
    let manifest = dir.join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("--manifest-path")
        .arg(&manifest)
        // From the workspace's folder, so its `.cargo/config.toml` (the plugins' stack size) applies.
        .current_dir(dir)
        .arg("--target-dir")
        .arg(target_dir)
        // Flags meant for the outer (native) build have no business in a Wasm build.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?}: {e}"));
    if !output.status.success() {
        panic!("building the plugins of {} failed:\n{}", dir.display(), String::from_utf8_lossy(&output.stderr));
    }
    target_dir.join(TARGET).join("release")
}

/// The folder of the example plugins' `.wasm` files, built on first use.
pub fn examples() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build(&repo_root().join("plugins")))
}

/// The folder of the hostile plugins' `.wasm` files, built on first use.
pub fn hostile() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build(&repo_root().join("tests/hostile-plugins")))
}

fn wasm(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "no plugin {name} at {}", path.display());
    path
}

/// The `.wasm` file of example plugin `name` (its crate name, e.g. `group-join-policy`).
pub fn example(name: &str) -> PathBuf {
    wasm(examples(), name)
}

/// The `.wasm` file of hostile plugin `name` (its crate name, e.g. `spin`).
pub fn hostile_plugin(name: &str) -> PathBuf {
    wasm(hostile(), name)
}

/// The `version` plugin built with `PLUGIN_VERSION=n` (it answers `{"plugin_version": n}`), in a
/// target folder of its own per `n`, once per process: two builds that tell which one served.
pub fn version_plugin(n: u32) -> PathBuf {
    versioned("version", n)
}

/// The `big` plugin (a component of more than 5 MB, answering like `version`) built with
/// `PLUGIN_VERSION=n`. Not part of the hostile workspace's default build: about a minute each.
pub fn big_plugin(n: u32) -> PathBuf {
    versioned("big", n)
}

fn versioned(krate: &str, n: u32) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, u32, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, _, p)) = built.iter().find(|(k, v, _)| k == krate && *v == n) {
        return p.clone();
    }
    let dir = repo_root().join("tests/hostile-plugins");
    let target = dir.join(format!("target/{krate}-{n}"));
    let out = build_into(&dir, &target, &["-p", krate], &[("PLUGIN_VERSION", n.to_string())]);
    let path = wasm(&out, krate);
    built.push((krate.to_string(), n, path.clone()));
    path
}

/// The JavaScript content filter (`plugins/content-filter-js`), built with componentize-js.
pub fn js_content_filter() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = repo_root().join("plugins/content-filter-js");
        foreign(&dir, "content_filter_js.wasm", |out| {
            let mut c = Command::new("node");
            c.arg(dir.join("build.mjs")).arg(out);
            c
        })
    })
    .clone()
}

/// The Python group-join policy (`plugins/group-join-policy-py`), built with componentize-py.
pub fn py_group_join_policy() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = repo_root().join("plugins/group-join-policy-py");
        foreign(&dir, "group_join_policy_py.wasm", |out| {
            let mut c = Command::new(dir.join("build.sh"));
            c.arg(out);
            c
        })
    })
    .clone()
}

/// Builds a plugin with its own toolchain into `plugins/target/foreign/OUT`, again only when its
/// sources (every file of `dir` but installed packages) or the contract (`wit/plugin.wit`) changed
/// since the last build (a stamp of their SHA-256 beside the output): these toolchains take 10-20 s.
fn foreign(dir: &Path, out: &str, command: impl Fn(&Path) -> Command) -> PathBuf {
    use sha2::{Digest, Sha256};
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())).flatten() {
            let p = e.path();
            let name = e.file_name();
            if name == "node_modules" || name == ".venv" || name == "__pycache__" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.push(repo_root().join("wit/plugin.wit"));
    files.sort();
    let mut h = Sha256::new();
    for f in &files {
        h.update(f.strip_prefix(repo_root()).unwrap_or(f).to_string_lossy().as_bytes());
        h.update(std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    let stamp = hex::encode(h.finalize());
    let target = repo_root().join("plugins/target/foreign");
    std::fs::create_dir_all(&target).expect("plugins/target/foreign");
    let path = target.join(out);
    let stamp_file = target.join(format!("{out}.sha256"));
    if path.is_file() && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
        return path;
    }
    // Built beside, then renamed: a test process that races this one never reads half a file.
    let tmp = target.join(format!("{out}.{}.tmp", std::process::id()));
    let output = command(&tmp)
        .output()
        .unwrap_or_else(|e| panic!("building {}: {e} (make deps installs the toolchain)", dir.display()));
    if !output.status.success() {
        panic!(
            "building {} failed (make deps installs its toolchain):\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&tmp, &path).expect("rename the built component");
    std::fs::write(&stamp_file, &stamp).expect("stamp");
    path
}
