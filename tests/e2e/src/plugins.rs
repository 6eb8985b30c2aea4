//! Builds the Wasm plugins the suites load: the examples (`plugins/`) and the hostile ones
//! (`tests/hostile-plugins/`), each its own Cargo workspace built for `wasm32-wasip2`.
//!
//! Each workspace is built once per test process; several processes building at once are
//! serialised by cargo's lock on the workspace's target directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const TARGET: &str = "wasm32-wasip2";

/// The repository root (this crate is `tests/e2e`).
fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().and_then(Path::parent).expect("tests/e2e sits two levels down")
}

/// Builds the workspace at `dir` (release, locked) and returns the folder holding its `.wasm` files.
fn build(dir: &Path) -> PathBuf {
    let manifest = dir.join("Cargo.toml");
    let target_dir = dir.join("target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(["build", "--release", "--locked", "--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        // From the workspace's folder, so its `.cargo/config.toml` (the plugins' stack size) applies.
        .current_dir(dir)
        .arg("--target-dir")
        .arg(&target_dir)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plugin_builds() {
        for name in "group-join-policy content-filter response-reshaper admin-gate".split(' ') {
            example(name);
        }
        let hostile =
            "spin membomb bigmem recurse trap bigout badptr badverdict kvuser fsuser leak yes slowhost echo version";
        for name in hostile.split(' ') {
            hostile_plugin(name);
        }
    }
}
