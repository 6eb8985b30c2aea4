//! "Nothing lost" (issue 17) in its long form: the soak of `e2e::soak` (six users sending through
//! `/v1`, the relayed `/openim/ws` and `/openim/msg/send_msg` while OpenIM hangs, restarts, drops
//! connections after handling, answers 500, slowly and late, the schedule repeated) for
//! `SOAK_SECONDS` (default 300), then every check of the short test in `make test`. Prints the
//! counts (also written to `target/bench/soak.md`) and exits 1 if anything was lost, duplicated,
//! left unanswered or unaudited. Run with `make bench`, or `SOAK_SECONDS=120 cargo bench -p e2e
//! --bench soak`.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // bench code: a panic is a failure

use std::path::Path;
use std::time::Duration;

use e2e::soak::{self, Settings};

fn main() {
    let seconds = match std::env::var("SOAK_SECONDS") {
        Ok(s) => s.parse::<u64>().expect("SOAK_SECONDS: a number of seconds"),
        Err(_) => 300,
    };
    let settings = Settings::long(Duration::from_secs(seconds));
    println!("nothing lost: {seconds} s of sends with faults injected (SOAK_SECONDS)");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = rt.block_on(soak::run(&settings));
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("soak.md"), report.to_string());
    }
    if !report.problems.is_empty() {
        eprintln!("nothing lost: {} problems", report.problems.len());
        std::process::exit(1);
    }
}
