//! Builds the Wasm plugins the suites load: the examples (`plugins/`) and the hostile ones
//! (`tests/hostile-plugins/`), each its own Cargo workspace built for `wasm32-wasip2`.
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
