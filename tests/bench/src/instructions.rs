//! Instructions per request: the gateway without plugins runs under valgrind's callgrind with
//! instrumentation off; after a warm-up it is switched on (`callgrind_control -i on`), a closed loop
//! of one client runs, and the counters are dumped (`callgrind_control -d`). Total instructions
//! (`Ir`, every thread of the gateway: workers, the audit writer, the log writer) over the answers
//! counted in that window: a number that does not move with the machine's load.
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

/// One line of the instruction report.
#[derive(Debug, serde::Serialize)]
struct Row {
    case: &'static str,
    payload: &'static str,
    requests: u64,
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

/// The `totals:` (or `summary:`) Ir of the newest dump of `pid` in `dir`.
fn dumped_instructions(dir: &Path, pid: u32) -> Result<u64, String> {
    let prefix = format!("callgrind.out.{pid}");
    let newest = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .ok_or_else(|| format!("no callgrind dump {prefix}* in {}", dir.display()))?;
    let text = std::fs::read_to_string(newest.path()).map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{}: no totals line", newest.path().display()))
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
            let step = if marks == 1 { callgrind_control(&["-i", "on"], pid) } else { callgrind_control(&["-d"], pid) };
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
        let instructions = dumped_instructions(&dir, pid)?;
        let row = Row {
            case: label,
            payload: Payload::Lookup.label(),
            requests: r.ok,
            instructions,
            per_request: instructions / r.ok,
        };
        println!(
            "  {:<32} {:>8} requests  {:>14} instructions  {:>10} per request",
            row.case, row.requests, row.instructions, row.per_request
        );
        rows.push(row);
    }
    let mut md =
        String::from("| case | payload | requests | instructions (Ir) | per request |\n|---|---|--:|--:|--:|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.case, r.payload, r.requests, r.instructions, r.per_request
        ));
    }
    md.push_str(
        "\nvalgrind --tool=callgrind, instrumentation on only in the measured window; every thread of the gateway.\n",
    );
    std::fs::create_dir_all(&s.out).map_err(|e| e.to_string())?;
    std::fs::write(s.out.join("instructions.md"), &md).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
    std::fs::write(s.out.join("instructions.json"), json).map_err(|e| e.to_string())?;
    println!("\n{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_dump_of_the_process_gives_the_total() {
        let dir = std::env::temp_dir().join(format!("imgate-bench-cg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("callgrind.out.77.1"), "events: Ir\nsummary: 12345\n").unwrap();
        std::fs::write(dir.join("callgrind.out.78.1"), "events: Ir\ntotals: 999\n").unwrap();
        assert_eq!(dumped_instructions(&dir, 77), Ok(12345));
        assert_eq!(dumped_instructions(&dir, 78), Ok(999));
        assert!(dumped_instructions(&dir, 79).is_err(), "no dump of that process");
        std::fs::write(dir.join("callgrind.out.80.1"), "events: Ir\n").unwrap();
        assert!(dumped_instructions(&dir, 80).is_err(), "a dump without totals");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
