//! Instructions per request: the gateway without plugins runs under valgrind's callgrind with
//! instrumentation off; after a warm-up it is switched on (`callgrind_control -i on`), a closed loop
//! of one client runs, the counters are dumped (`callgrind_control -d`) and instrumentation is
//! switched off again, so the next case's warm-up stays out of its window. Total instructions
//! (`Ir`, every thread of the gateway: workers, the audit writer, the log writer) over the answers
//! counted in that window: a number that does not move with the machine's load. The dump's own
//! call count of [`PER_REQUEST_FN`] (once per request the gateway handles) cross-checks that the
//! window holds the requests counted; a mismatch is reported beside the figure.
//!
//! Measured: case 3 (`/openim` lookup, bearer) and case 4's core path (the `/v1` signed lookup
//! with identity binding) *without* its plugin chain, i.e. case 6 (in-memory store): the plugin
//! engine's pooling allocator reserves more address space than valgrind can give, so the plugin
//! gateway cannot run under it.
//! What a plugin hook costs is the criterion benchmark `plugin_on_request` in the same report.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use crate::setup::Env;
use crate::{load, target, Case, Payload, Settings};

/// A gateway function called once per request (the request id is minted at the outermost stage).
const PER_REQUEST_FN: &str = "host::telemetry::RequestId::generate";

/// One line of the instruction report.
#[derive(Debug, serde::Serialize)]
struct Row {
    case: &'static str,
    payload: &'static str,
    requests: u64,
    /// Calls of [`PER_REQUEST_FN`] in the dump: the requests the gateway handled in the window.
    seen_in_dump: Option<u64>,
    instructions: u64,
    per_request: u64,
}

fn callgrind_control(args: &[&str], pid: u32) -> Result<(), String> {
    let out = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()
        .map_err(|e| format!("callgrind_control (install valgrind): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("callgrind_control {args:?}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// The newest dump of `pid` in `dir`: its `totals:` (or `summary:`) Ir, and the calls of
/// [`PER_REQUEST_FN`] it recorded (`None` if it has none, e.g. the function was inlined).
fn dumped_instructions(dir: &Path, pid: u32) -> Result<(u64, Option<u64>), String> {
    let prefix = format!("callgrind.out.{pid}");
    let newest = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .ok_or_else(|| format!("no callgrind dump {prefix}* in {}", dir.display()))?;
    let text = std::fs::read_to_string(newest.path()).map_err(|e| e.to_string())?;
    // `totals:` (the sum of the dump's cost lines) before `summary:`: callgrind computes the
    // summary from counters that instrumentation switched off and on again leaves wrong (a dump
    // after `-i off` … `-i on` said 108 M in its summary and 669 M in its totals, 2 084 requests).
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let total = field("totals:")
        .or_else(|| field("summary:"))
        .ok_or_else(|| format!("{}: no totals line", newest.path().display()))?;
    Ok((total, calls_to(&text, PER_REQUEST_FN)))
}

/// The calls a callgrind dump recorded to the function named `name`, summed over its callers.
/// In the format, a `calls=<n> …` line follows the `cfn=` naming its callee; names are
/// compressed: `cfn=(7) name` defines id 7 (for `fn=` too), a later `cfn=(7)` refers to it.
fn calls_to(dump: &str, name: &str) -> Option<u64> {
    let mut names = std::collections::HashMap::new();
    let mut callee_is_it = false;
    let mut calls = None;
    for line in dump.lines() {
        let (is_cfn, spec) = match (line.strip_prefix("cfn="), line.strip_prefix("fn=")) {
            (Some(spec), _) => (true, spec),
            (None, Some(spec)) => (false, spec),
            (None, None) => {
                if let Some(n) = line.strip_prefix("calls=").filter(|_| callee_is_it) {
                    let n: u64 = n.split_whitespace().next().and_then(|n| n.parse().ok())?;
                    *calls.get_or_insert(0) += n;
                }
                continue;
            }
        };
        let fn_name = match spec.strip_prefix('(').and_then(|rest| rest.split_once(')')) {
            Some((id, "")) => names.get(id).cloned().unwrap_or_default(),
            Some((id, named)) => {
                let named = named.trim_start().to_owned();
                names.insert(id.to_owned(), named.clone());
                named
            }
            None => spec.to_owned(),
        };
        if is_cfn {
            callee_is_it = fn_name == name;
        }
    }
    calls
}

pub(crate) async fn measure(env: &mut Env, s: &Settings) -> Result<(), String> {
    let mut rows = Vec::new();
    let v1 = target(env, Case::V1Memory, Payload::Lookup)?;
    let passthrough = target(env, Case::Passthrough, Payload::Lookup)?;
    let cases = [("3 imgate /openim, no plugin", passthrough), ("4 imgate /v1 signed, without its plugins", v1)];
    let gw = &env.plain;
    let (pid, dir) = (gw.proc.pid(), gw.config_file.parent().map(Path::to_owned).unwrap_or_default());
    for (label, t) in cases {
        let mut failure = None;
        let mut marks = 0;
        let r = load::run(Arc::new(t), 1, Duration::from_secs(2), s.duration.max(Duration::from_secs(5)), || {
            marks += 1;
            let step = if marks == 1 {
                callgrind_control(&["-i", "on"], pid)
            } else {
                // Off after the dump, or the next case's warm-up would count in its window.
                callgrind_control(&["-d"], pid).and_then(|()| callgrind_control(&["-i", "off"], pid))
            };
            if let Err(e) = step {
                failure.get_or_insert(e);
            }
        })
        .await?;
        if let Some(e) = failure {
            return Err(e);
        }
        if r.errors.total() > 0 || r.ok == 0 {
            return Err(format!("{label}: {} answers, {} errors", r.ok, r.errors.total()));
        }
        let (instructions, seen_in_dump) = dumped_instructions(&dir, pid)?;
        let row = Row {
            case: label,
            payload: Payload::Lookup.label(),
            requests: r.ok,
            seen_in_dump,
            instructions,
            per_request: instructions / r.ok,
        };
        println!(
            "  {:<32} {:>8} requests ({} in the dump)  {:>14} instructions  {:>10} per request",
            row.case,
            row.requests,
            seen(row.seen_in_dump),
            row.instructions,
            row.per_request
        );
        rows.push(row);
    }
    let mut md = String::from(
        "| case | payload | requests | requests in the dump | instructions (Ir) | per request |\n|---|---|--:|--:|--:|--:|\n",
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.case,
            r.payload,
            r.requests,
            seen(r.seen_in_dump),
            r.instructions,
            r.per_request
        ));
    }
    md.push_str(&format!(
        "\nvalgrind --tool=callgrind, instrumentation on only in the measured window; every thread of the gateway. \
         Requests in the dump: calls of `{PER_REQUEST_FN}` it recorded, once per request handled in the window.\n"
    ));
    for r in rows.iter().filter(|r| r.seen_in_dump.is_some_and(|n| n.abs_diff(r.requests) > 2 + r.requests / 100)) {
        md.push_str(&format!(
            "\n⚠ {}: the dump saw {} requests, the client counted {}: the window is not the measured one, \
             its figure is not to be trusted.\n",
            r.case,
            seen(r.seen_in_dump),
            r.requests
        ));
    }
    std::fs::create_dir_all(&s.out).map_err(|e| e.to_string())?;
    std::fs::write(s.out.join("instructions.md"), &md).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
    std::fs::write(s.out.join("instructions.json"), json).map_err(|e| e.to_string())?;
    println!("\n{md}");
    Ok(())
}

fn seen(n: Option<u64>) -> String {
    n.map_or_else(|| "?".to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_dump_of_the_process_gives_the_total() {
        let dir = std::env::temp_dir().join(format!("imgate-bench-cg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("callgrind.out.77.1"), "events: Ir\nsummary: 12345\n").unwrap();
        std::fs::write(dir.join("callgrind.out.78.1"), "events: Ir\nsummary: 1\nfn=(1) f\n0 999\ntotals: 999\n")
            .unwrap();
        assert_eq!(dumped_instructions(&dir, 77), Ok((12345, None)));
        assert_eq!(dumped_instructions(&dir, 78), Ok((999, None)), "totals win over a summary");
        assert!(dumped_instructions(&dir, 79).is_err(), "no dump of that process");
        std::fs::write(dir.join("callgrind.out.80.1"), "events: Ir\n").unwrap();
        assert!(dumped_instructions(&dir, 80).is_err(), "a dump without totals");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn calls_are_summed_over_callers_through_compressed_names() {
        let dump = "events: Ir\n\
            fn=(1) main\n\
            cfn=(2) host::telemetry::RequestId::generate\n\
            calls=3 0x10\n\
            5 100\n\
            cfn=(3) other\n\
            calls=7 0x20\n\
            5 10\n\
            fn=(4) worker\n\
            cfn=(2)\n\
            calls=4 0x10\n\
            6 40\n\
            fn=(2)\n\
            cfn=(3)\n\
            calls=1 0x20\n\
            7 1\n\
            totals: 151\n";
        assert_eq!(calls_to(dump, PER_REQUEST_FN), Some(7), "3 from main, 4 from worker; not its own calls out");
        assert_eq!(calls_to(dump, "other"), Some(8));
        assert_eq!(calls_to(dump, "absent"), None);
    }
}
