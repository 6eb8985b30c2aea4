//! Repository tidiness: every Rust file says why it exists on its first line, a `//!` opener.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::path::{Path, PathBuf};

/// Every `.rs` file under `root`, skipping `target/` and hidden directories (`.git`, `.imgate`, …).
/// Symlinks are not followed.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.expect("dir entry");
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    dirs.push(entry.path());
                }
            } else if kind.is_file() && name.ends_with(".rs") {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// The files among `files` whose first line is not a `//!` opener with some text.
fn files_without_opener(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let first = text.lines().next().unwrap_or("");
            first.strip_prefix("//!").is_none_or(|rest| rest.trim().is_empty())
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn every_rust_file_opens_with_a_module_doc_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = rust_files(&root);
    // The walk reaches every crate of the repository, not just this one.
    for known in ["host/src/main.rs", "plugin-sdk", "plugins", "tests/e2e", "tests/openim-emu"] {
        assert!(files.iter().any(|f| f.starts_with(root.join(known))), "the walk missed {known}: {files:?}");
    }
    let missing = files_without_opener(&files);
    assert!(
        missing.is_empty(),
        "these files must start with a `//!` line saying why the file exists:\n{}",
        missing.join("\n")
    );
}

/// The checker itself: it finds a file without an opener and skips `target/` and hidden directories.
#[test]
fn the_check_reports_files_without_opener_and_skips_target_and_hidden_dirs() {
    let root = std::env::temp_dir().join(format!("imgate-tidy-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let write = |rel: &str, text: &str| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, text).expect("write");
    };
    write("a/good.rs", "//! Why this file exists.\nfn main() {}\n");
    write("a/b/no_opener.rs", "fn main() {}\n");
    write("a/late_opener.rs", "\n//! Too late.\n");
    write("a/empty_opener.rs", "//!\nfn main() {}\n");
    write("a/inner_doc.rs", "/// Not a module doc.\nfn main() {}\n");
    write("a/empty.rs", "");
    write("a/not_rust.txt", "no opener\n");
    write("target/debug/build.rs", "fn main() {}\n");
    write("x/target/gen.rs", "fn main() {}\n");
    write(".hidden/skip.rs", "fn main() {}\n");

    let files = rust_files(&root);
    assert_eq!(files.len(), 6, "{files:?}");
    let mut missing: Vec<String> = files_without_opener(&files)
        .iter()
        .map(|f| Path::new(f).strip_prefix(&root).expect("under root").display().to_string())
        .collect();
    missing.sort();
    assert_eq!(missing, ["a/b/no_opener.rs", "a/empty.rs", "a/empty_opener.rs", "a/inner_doc.rs", "a/late_opener.rs"]);
    std::fs::remove_dir_all(&root).expect("cleanup");
}
