//! The plugin author's kit: `imgate plugin new` scaffolds a plugin that builds and tests in Rust,
//! JavaScript or Python, and `imgate plugin test` runs a built component's hooks against a recorded
//! request (and response) with the gateway's own runtime, without a gateway.
//!
//! Neither holds plugin logic of its own: a scaffold is a set of templates (`plugin_kit/templates/`)
//! around the contract this imgate serves (`wit/plugin.wit`, embedded), and `test` loads the
//! component through [`crate::plugins::Runtime`] exactly as the gateway does — same compile, same
//! import check against the granted capabilities (none unless given), same limits, a fresh
//! instance per hook — then applies the checks the gateway's chain applies to every verdict. What
//! a gateway would supply is replaced by what a single run can have: the `kv` store is in memory
//! and starts empty, `openim` answers `unavailable`, `log` lines are printed with the report.
//!
//! - `scaffold.rs` — `new`: names, templates, the Rust SDK's path and a `Cargo.lock` pinned to the
//!   versions imgate's own plugins are built with.
//! - `tester.rs` — `test`: the run, and the checks the gateway's chain applies to every verdict.
//! - `recorded.rs` — the recorded request and response files `test` reads.
//! - `report.rs` — what `test` prints: text, or JSON with `--json`.
//!
//! The author's guide, with both commands and the file formats, is `docs/plugin-guide.md`.

mod recorded;
mod report;
mod scaffold;
mod tester;

pub use scaffold::{new_plugin, Lang, NewOptions};
pub use tester::{test_plugin, Outcome, TestOptions};

/// Parses one capability name as the config file spells it (`config`, `wasi-stubs`, ...).
pub fn parse_capability(s: &str) -> Result<crate::plugins::config::Capability, String> {
    use crate::plugins::config::Capability;
    let s = s.trim();
    Capability::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
        let all: Vec<&str> = Capability::ALL.iter().map(|c| c.as_str()).collect();
        format!("unknown capability {s:?}: expected one of {}", all.join(", "))
    })
}
