//! `imgate plugin new NAME --lang rust|js|python`: writes a minimal but real policy plugin — pure
//! logic with unit tests in the language's own test tool, the glue to the contract, a build
//! script, a README, a recorded request and a route configuration for `imgate plugin test`.
//!
//! The contract travels with the scaffold (the `wit/plugin.wit` this imgate was built with, embedded),
//! so a JavaScript or Python plugin builds without imgate's source tree. A Rust plugin depends on
//! the SDK crate by path (it is not published): `--sdk`, or the `plugin-sdk/` of the source tree
//! this binary was built from, and gets a `Cargo.lock` holding the versions imgate's own plugins
//! are built and tested with (`plugins/Cargo.lock`, embedded), so it builds with `--locked` and
//! offline once those crates are in cargo's cache.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The contract the scaffolds are built against (`wit/deps/imgate/plugin.wit` of JS and Python).
const CONTRACT: &str = include_str!("../../../wit/plugin.wit");
/// The lock file of imgate's own plugins: the versions a Rust scaffold's dependencies are pinned to.
const PLUGINS_LOCK: &str = include_str!("../../../plugins/Cargo.lock");
/// Where the SDK is in the source tree this binary was built from.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk");

/// Files every scaffold gets.
const COMMON: &[(&str, &str)] = &[
    ("request.json", include_str!("templates/common/request.json")),
    ("request-denied.json", include_str!("templates/common/request-denied.json")),
    ("config.json", include_str!("templates/common/config.json")),
];
const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml.tmpl")),
    (".cargo/config.toml", include_str!("templates/rust/cargo-config.toml")),
    ("src/lib.rs", include_str!("templates/rust/src/lib.rs")),
    ("README.md", include_str!("templates/rust/README.md")),
    (".gitignore", include_str!("templates/rust/gitignore")),
];
const JS: &[(&str, &str)] = &[
    ("package.json", include_str!("templates/js/package.json")),
    ("build.mjs", include_str!("templates/js/build.mjs")),
    ("src/logic.js", include_str!("templates/js/src/logic.js")),
    ("src/plugin.js", include_str!("templates/js/src/plugin.js")),
    ("test/logic.test.mjs", include_str!("templates/js/test/logic.test.mjs")),
    ("wit/world.wit", include_str!("templates/common/world.wit")),
    ("wit/deps/imgate/plugin.wit", CONTRACT),
    ("README.md", include_str!("templates/js/README.md")),
    (".gitignore", include_str!("templates/js/gitignore")),
];
const PYTHON: &[(&str, &str)] = &[
    ("requirements.txt", include_str!("templates/python/requirements.txt")),
    ("build.sh", include_str!("templates/python/build.sh")),
    ("src/logic.py", include_str!("templates/python/src/logic.py")),
    ("src/app.py", include_str!("templates/python/src/app.py")),
    ("tests/__init__.py", include_str!("templates/python/tests/__init__.py")),
    ("tests/test_logic.py", include_str!("templates/python/tests/test_logic.py")),
    ("wit/world.wit", include_str!("templates/common/world.wit")),
    ("wit/deps/imgate/plugin.wit", CONTRACT),
    ("README.md", include_str!("templates/python/README.md")),
    (".gitignore", include_str!("templates/python/gitignore")),
];
/// Files written executable.
const EXECUTABLE: &[&str] = &["build.sh"];

/// A language a plugin can be scaffolded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with imgate's SDK (`imgate-plugin-sdk`), built for `wasm32-wasip2` by cargo.
    Rust,
    /// JavaScript, built with componentize-js 0.23.0 (npm).
    Js,
    /// Python, built with componentize-py 0.25.1 (PyPI).
    Python,
}

impl Lang {
    fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }
}

/// What `imgate plugin new` was asked.
#[derive(Debug, Clone)]
pub struct NewOptions {
    /// The plugin's `[[plugin]]` name: 1-64 of `a-z 0-9 - _`.
    pub name: String,
    pub lang: Lang,
    /// Where to write it (default `./NAME`); must not exist or be empty.
    pub dir: Option<PathBuf>,
    /// The Rust SDK's folder (Rust only; default: the source tree's `plugin-sdk/`).
    pub sdk: Option<PathBuf>,
}

/// Writes the scaffold; `Ok` is what to print (the files and the next commands).
pub fn new_plugin(opts: &NewOptions) -> Result<String, String> {
    let name = opts.name.as_str();
    if !crate::ids::is_plugin_name(name) {
        return Err(format!("{name:?}: a plugin name is 1-64 of a-z 0-9 - _ (as in [[plugin]] name)"));
    }
    let dir = opts.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    check_empty(&dir)?;
    let files = files(opts)?;
    write_all(&dir, &files)?;
    Ok(summary(opts, &dir, &files))
}

/// The files of a scaffold, placeholders filled in.
fn files(opts: &NewOptions) -> Result<Vec<(String, String)>, String> {
    let name = opts.name.as_str();
    let krate = crate_name(name);
    let wasm = format!("{}.wasm", krate.replace('-', "_"));
    let mut vars: Vec<(&str, String)> = vec![("name", name.to_owned()), ("crate", krate.clone()), ("wasm", wasm)];
    let templates = match opts.lang {
        Lang::Rust => {
            let sdk = sdk_dir(opts.sdk.as_deref())?;
            let display = sdk.display().to_string();
            vars.push(("sdk", toml::Value::String(display.clone()).to_string()));
            vars.push(("sdk_display", display));
            RUST
        }
        Lang::Js => JS,
        Lang::Python => PYTHON,
    };
    let mut out: Vec<(String, String)> =
        templates.iter().chain(COMMON).map(|(path, text)| ((*path).to_owned(), fill(text, &vars))).collect();
    if opts.lang == Lang::Rust {
        if let Some(lock) = cargo_lock(&krate, &["imgate-plugin-sdk", "serde", "serde_json"]) {
            out.push(("Cargo.lock".into(), lock));
        }
    }
    Ok(out)
}

/// `{{key}}` replaced by each value. The contract is inserted as it is (it has no placeholders).
fn fill(text: &str, vars: &[(&str, String)]) -> String {
    let mut out = text.to_owned();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

/// The Rust package name for a plugin name: the same, unless cargo would refuse it (a name that
/// does not start with a letter, a Rust keyword): then `plugin-NAME`.
fn crate_name(name: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "abstract",
        "as",
        "async",
        "await",
        "become",
        "box",
        "break",
        "const",
        "continue",
        "crate",
        "do",
        "dyn",
        "else",
        "enum",
        "extern",
        "false",
        "final",
        "fn",
        "for",
        "gen",
        "if",
        "impl",
        "in",
        "let",
        "loop",
        "macro",
        "match",
        "mod",
        "move",
        "mut",
        "override",
        "priv",
        "pub",
        "ref",
        "return",
        "self",
        "static",
        "struct",
        "super",
        "trait",
        "true",
        "try",
        "type",
        "typeof",
        "unsafe",
        "unsized",
        "use",
        "virtual",
        "where",
        "while",
        "yield",
        "test",
        "core",
        "std",
        "alloc",
        "proc_macro",
        "proc-macro",
    ];
    let starts_with_letter = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if starts_with_letter && !KEYWORDS.contains(&name) {
        name.to_owned()
    } else {
        format!("plugin-{name}")
    }
}

/// The SDK folder: `given`, or the built tree's; it must hold the `imgate-plugin-sdk` crate.
fn sdk_dir(given: Option<&Path>) -> Result<PathBuf, String> {
    let (dir, how) = match given {
        Some(d) => (d.to_path_buf(), "--sdk"),
        None => (PathBuf::from(BUILT_SDK), "the source tree this imgate was built from"),
    };
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    if !manifest.lines().any(|l| l.replace(' ', "") == "name=\"imgate-plugin-sdk\"") {
        return Err(format!(
            "the Rust SDK (crate imgate-plugin-sdk) is not in {} ({how}); pass --sdk with the path of \
             imgate's plugin-sdk/ folder (a checkout of imgate's source)",
            dir.display()
        ));
    }
    dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))
}

/// A `Cargo.lock` for a package `krate` depending on `roots`: the packages `roots` need, at the
/// versions of `plugins/Cargo.lock`. `None` when that lock does not hold them all (cargo then
/// resolves versions itself on the first build).
fn cargo_lock(krate: &str, roots: &[&str]) -> Option<String> {
    let lock: toml::Table = toml::from_str(PLUGINS_LOCK).ok()?;
    let packages = lock.get("package")?.as_array()?;
    let version_of = |p: &toml::Value, key: &str| p.get(key).and_then(toml::Value::as_str).map(str::to_owned);
    // (name, version) -> the package's table.
    let mut all: BTreeMap<(String, String), &toml::Value> = BTreeMap::new();
    for p in packages {
        all.insert((version_of(p, "name")?, version_of(p, "version")?), p);
    }
    // A dependency as the lock writes it: `name`, `name version` or `name version (source)`.
    let resolve = |dep: &str| -> Option<(String, String)> {
        let mut parts = dep.split_whitespace();
        let name = parts.next()?;
        let version = parts.next();
        let mut found = all.keys().filter(|(n, v)| n == name && version.is_none_or(|want| want == v));
        let one = found.next()?.clone();
        found.next().is_none().then_some(one)
    };
    let mut needed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut todo: Vec<(String, String)> = roots.iter().map(|r| resolve(r)).collect::<Option<_>>()?;
    while let Some(key) = todo.pop() {
        if !needed.insert(key.clone()) {
            continue;
        }
        let deps = all.get(&key)?.get("dependencies").and_then(toml::Value::as_array);
        for d in deps.into_iter().flatten() {
            todo.push(resolve(d.as_str()?)?);
        }
    }
    let mut out = String::from(
        "# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 4\n",
    );
    let root_deps: Vec<String> = roots.iter().map(|r| (*r).to_owned()).collect();
    let mut entries: Vec<(String, String, Option<&toml::Value>)> =
        needed.iter().map(|(n, v)| (n.clone(), v.clone(), all.get(&(n.clone(), v.clone())).copied())).collect();
    entries.push((krate.to_owned(), "0.1.0".into(), None));
    entries.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    for (name, version, table) in entries {
        let _ = write!(out, "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n");
        let deps: Vec<String> = match table {
            Some(t) => {
                for key in ["source", "checksum"] {
                    if let Some(v) = t.get(key).and_then(toml::Value::as_str) {
                        let _ = writeln!(out, "{key} = \"{v}\"");
                    }
                }
                let deps = t.get("dependencies").and_then(toml::Value::as_array);
                deps.into_iter().flatten().filter_map(|d| d.as_str().map(str::to_owned)).collect()
            }
            None => root_deps.clone(),
        };
        if !deps.is_empty() {
            out.push_str("dependencies = [\n");
            for d in deps {
                let _ = writeln!(out, " \"{d}\",");
            }
            out.push_str("]\n");
        }
    }
    Some(out)
}

/// `dir` does not exist, or is an empty folder.
fn check_empty(dir: &Path) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(format!("{} exists and is not empty: choose another --dir", dir.display()))
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

fn write_all(dir: &Path, files: &[(String, String)]) -> Result<(), String> {
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        // `create_new`: never overwrite a file that appeared meanwhile.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if EXECUTABLE.contains(&rel.as_str()) {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o755);
        }
        let mut file = options.open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// What was written and what to run next.
fn summary(opts: &NewOptions, dir: &Path, files: &[(String, String)]) -> String {
    let name = &opts.name;
    let mut paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort();
    let mut out = format!("created {name} ({}) in {}:\n", opts.lang.as_str(), dir.display());
    for p in paths {
        let _ = writeln!(out, "  {p}");
    }
    let wasm = format!("{}.wasm", crate_name(name).replace('-', "_"));
    let (steps, component, caps): (&[&str], String, &str) = match opts.lang {
        Lang::Rust => (
            &["cargo test", "cargo build --release --target wasm32-wasip2"],
            format!("target/wasm32-wasip2/release/{wasm}"),
            "config",
        ),
        Lang::Js => (&["npm install", "npm test", "npm run build"], "plugin.wasm".into(), "config"),
        Lang::Python => (
            &[
                "python3 -m unittest",
                "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt",
                "./build.sh",
            ],
            "plugin.wasm".into(),
            "config,random,wasi-stubs",
        ),
    };
    let _ = writeln!(out, "next:\n  cd {}", dir.display());
    for s in steps {
        let _ = writeln!(out, "  {s}");
    }
    let _ = writeln!(
        out,
        "  imgate plugin test {component} --request request.json --config config.json --capabilities {caps}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("imgate-kit-{tag}-{}", uuid::Uuid::new_v4().simple()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn crate_names_are_ones_cargo_accepts() {
        assert_eq!(crate_name("word-filter"), "word-filter");
        assert_eq!(crate_name("2fa"), "plugin-2fa");
        assert_eq!(crate_name("_x"), "plugin-_x");
        assert_eq!(crate_name("match"), "plugin-match");
    }

    #[test]
    fn placeholders_are_all_filled() {
        for lang in [Lang::Rust, Lang::Js, Lang::Python] {
            let opts = NewOptions { name: "word-filter".into(), lang, dir: None, sdk: None };
            for (path, text) in files(&opts).unwrap() {
                assert!(!text.contains("{{"), "{lang:?} {path}: a placeholder is left");
            }
        }
    }

    #[test]
    fn the_lock_holds_the_sdks_dependencies_and_the_plugin() {
        let lock = cargo_lock("word-filter", &["imgate-plugin-sdk", "serde", "serde_json"]).expect("a lock");
        let parsed: toml::Table = toml::from_str(&lock).unwrap();
        let names: Vec<&str> =
            parsed["package"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        for needed in ["word-filter", "imgate-plugin-sdk", "wit-bindgen", "serde", "serde_derive", "serde_json"] {
            assert!(names.contains(&needed), "{needed} missing from {names:?}");
        }
        for example in ["content-filter", "admin-gate"] {
            assert!(!names.contains(&example), "{example} does not belong in a plugin's lock");
        }
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "cargo's order");
    }

    #[test]
    fn refuses_bad_names_and_non_empty_folders() {
        let dir = temp("refuse");
        let bad = NewOptions { name: "Bad Name".into(), lang: Lang::Js, dir: Some(dir.clone()), sdk: None };
        assert!(new_plugin(&bad).unwrap_err().contains("a plugin name is"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keep.txt"), "mine").unwrap();
        let opts = NewOptions { name: "ok".into(), lang: Lang::Js, dir: Some(dir.clone()), sdk: None };
        assert!(new_plugin(&opts).unwrap_err().contains("is not empty"));
        assert_eq!(std::fs::read_to_string(dir.join("keep.txt")).unwrap(), "mine");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writes_each_language_with_the_contract_and_an_executable_build_script() {
        let dir = temp("py");
        let opts = NewOptions { name: "word-filter".into(), lang: Lang::Python, dir: Some(dir.clone()), sdk: None };
        let out = new_plugin(&opts).unwrap();
        assert!(out.contains("--capabilities config,random,wasi-stubs"), "{out}");
        assert_eq!(std::fs::read_to_string(dir.join("wit/deps/imgate/plugin.wit")).unwrap(), CONTRACT);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("build.sh")).unwrap().permissions().mode();
            assert_eq!(mode & 0o111, 0o111, "build.sh is executable");
        }
        std::fs::remove_dir_all(&dir).unwrap();

        let dir = temp("rust");
        let sdk = Some(PathBuf::from(BUILT_SDK));
        let opts = NewOptions { name: "word-filter".into(), lang: Lang::Rust, dir: Some(dir.clone()), sdk };
        new_plugin(&opts).unwrap();
        let manifest: toml::Table = toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).unwrap()).unwrap();
        let sdk_path = manifest["dependencies"]["imgate-plugin-sdk"]["path"].as_str().unwrap();
        assert!(Path::new(sdk_path).join("src/lib.rs").is_file(), "{sdk_path}");
        assert!(dir.join("Cargo.lock").is_file() && dir.join(".cargo/config.toml").is_file());
        std::fs::remove_dir_all(&dir).unwrap();

        let missing = NewOptions {
            name: "x".into(),
            lang: Lang::Rust,
            dir: Some(temp("nosdk")),
            sdk: Some(PathBuf::from("/nonexistent")),
        };
        assert!(new_plugin(&missing).unwrap_err().contains("pass --sdk"));
    }
}
