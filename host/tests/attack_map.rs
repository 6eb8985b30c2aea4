//! Keeps the attack map of `docs/security.md` whole (issue 17): every row of the catalogue
//! `shared/spec/attacks.md` is accounted for — by tests that exist, or by a written reason.
//!
//! The map is the section "The attack catalogue, row by row": tables of `| row | attack | status
//! | proof |`. The check fails when a catalogue row is missing from the map or the map names a row
//! the catalogue lacks, when a row's status is not `tested`, `not applicable` or `gap`, when a
//! `tested` row cites no test, when a cited test (`` `path/file.rs::function` ``, relative to the
//! repository root) names a missing file or a function the file does not define, when a row that
//! is not `tested` gives no reason, or when the section's tally line disagrees with its rows.
//! Every problem is reported at once.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SECTION: &str = "## The attack catalogue, row by row";
const STATUSES: [&str; 3] = ["tested", "not applicable", "gap"];

/// The repository root (the workspace holding `host/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A row id as the catalogue writes them: a capital letter and a number (`H1`, `E22`).
fn is_row_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && s.len() > 1 && chars.all(|c| c.is_ascii_digit())
}

/// The cells of a markdown table line (`| a | b |` → `["a", "b"]`), or `None` for other lines.
fn cells(line: &str) -> Option<Vec<&str>> {
    let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
    Some(inner.split('|').map(str::trim).collect())
}

/// The ids of the catalogue's rows, in order.
fn catalogue_ids(catalogue: &str) -> Vec<String> {
    catalogue
        .lines()
        .filter_map(cells)
        .filter_map(|c| c.first().filter(|id| is_row_id(id)).map(|id| (*id).to_owned()))
        .collect()
}

/// One row of the map.
#[derive(Debug)]
struct Row {
    id: String,
    status: String,
    proof: String,
    /// Line number in the document, for messages.
    line: usize,
}

/// The backticked spans of a cell.
fn spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The tests a cell cites: spans of the form `path/file.rs::function`.
fn citations(text: &str) -> Vec<(&str, &str)> {
    spans(text).into_iter().filter_map(|s| s.split_once(".rs::").map(|(file, f)| (&s[..file.len() + 3], f))).collect()
}

/// A cell's own words: its text without the cited tests and file names, as a reason must be.
fn reason_words(text: &str) -> usize {
    let mut plain = String::new();
    for (i, part) in text.split('`').enumerate() {
        let cited = i % 2 == 1 && (part.contains(".rs::") || part.ends_with(".rs"));
        if !cited {
            plain.push_str(part);
            plain.push(' ');
        }
    }
    plain.split_whitespace().filter(|w| w.chars().any(char::is_alphabetic)).count()
}

/// What the check found.
#[derive(Debug, Default)]
struct Report {
    problems: Vec<String>,
    counts: BTreeMap<&'static str, usize>,
}

/// Checks the map in `doc` against the catalogue; cited files are read under `root`.
fn check(catalogue: &str, doc: &str, root: &Path) -> Report {
    let mut report = Report::default();
    let problems = &mut report.problems;
    let ids = catalogue_ids(catalogue);
    if ids.is_empty() {
        problems.push("the catalogue has no rows".into());
    }
    let Some(start) = doc.lines().position(|l| l.trim_end() == SECTION) else {
        problems.push(format!("docs/security.md has no section `{SECTION}`"));
        return report;
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut tally: Option<String> = None;
    for (i, line) in doc.lines().enumerate().skip(start + 1) {
        if line.starts_with("## ") {
            break;
        }
        if let Some(t) = line.strip_prefix("Tally:") {
            tally = Some(t.trim().to_owned());
        }
        let Some(c) = cells(line) else { continue };
        if !c.first().is_some_and(|id| is_row_id(id)) {
            continue;
        }
        if c.len() != 4 {
            problems.push(format!(
                "line {}: row {} has {} cells, not 4 (row | attack | status | proof)",
                i + 1,
                c[0],
                c.len()
            ));
            continue;
        }
        rows.push(Row { id: c[0].into(), status: c[2].into(), proof: c[3].into(), line: i + 1 });
    }
    // Every catalogue row once, nothing else.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        if let Some(first) = seen.insert(&r.id, r.line) {
            problems.push(format!("line {}: row {} is mapped twice (first at line {first})", r.line, r.id));
        }
        if !ids.contains(&r.id) {
            problems.push(format!("line {}: row {} is not in the catalogue", r.line, r.id));
        }
    }
    for id in &ids {
        if !seen.contains_key(id.as_str()) {
            problems.push(format!("catalogue row {id} is missing from the map"));
        }
    }
    // Each row: a known status, its tests real, a reason where nothing proves it.
    let mut files: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in &rows {
        let Some(status) = STATUSES.iter().find(|s| **s == r.status) else {
            problems.push(format!("line {}: row {} has status {:?}, not one of {STATUSES:?}", r.line, r.id, r.status));
            continue;
        };
        *report.counts.entry(status).or_default() += 1;
        let cited = citations(&r.proof);
        if *status == "tested" && cited.is_empty() {
            problems.push(format!(
                "line {}: row {} is `tested` but cites no test (`path/file.rs::function`)",
                r.line, r.id
            ));
        }
        if *status != "tested" && reason_words(&r.proof) < 3 {
            problems.push(format!("line {}: row {} is `{status}` without a written reason", r.line, r.id));
        }
        for (file, function) in cited {
            let text = files.entry(file.to_owned()).or_insert_with(|| {
                let safe = !file.starts_with('/') && !file.split('/').any(|p| p == "..");
                safe.then(|| std::fs::read_to_string(root.join(file)).ok()).flatten()
            });
            match text {
                None => problems.push(format!("line {}: row {} cites {file}, which does not exist", r.line, r.id)),
                Some(t) if !(t.contains(&format!("fn {function}(")) || t.contains(&format!("fn {function}<"))) => {
                    problems.push(format!(
                        "line {}: row {} cites {file}::{function}, which {file} does not define",
                        r.line, r.id
                    ))
                }
                Some(_) => {}
            }
        }
        for file in spans(&r.proof).into_iter().filter(|s| s.ends_with(".rs") && s.contains('/')) {
            if !root.join(file).is_file() {
                problems.push(format!("line {}: row {} names {file}, which does not exist", r.line, r.id));
            }
        }
    }
    // The tally line says what the rows say.
    let count = |s: &str| report.counts.get(s).copied().unwrap_or(0);
    let expected =
        format!("{} tested, {} not applicable, {} gap.", count("tested"), count("not applicable"), count("gap"));
    match tally {
        Some(t) if t == expected => {}
        Some(t) => report.problems.push(format!("the tally line says {t:?}; the rows say {expected:?}")),
        None => report.problems.push(format!("the section has no tally line (`Tally: {expected}`)")),
    }
    report
}

#[test]
fn every_catalogue_row_is_mapped_to_real_tests_or_a_reason() {
    let root = root();
    let catalogue_path = root.join("../shared/spec/attacks.md");
    let catalogue = std::fs::read_to_string(&catalogue_path)
        .unwrap_or_else(|e| panic!("the attack catalogue {}: {e}", catalogue_path.display()));
    let doc = std::fs::read_to_string(root.join("docs/security.md")).expect("docs/security.md");
    let report = check(&catalogue, &doc, &root);
    let ids = catalogue_ids(&catalogue);
    println!(
        "attack map: {} catalogue rows; {:?}",
        ids.len(),
        report.counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>()
    );
    assert!(ids.len() >= 100, "the catalogue was read ({} rows)", ids.len());
    assert!(
        report.problems.is_empty(),
        "docs/security.md, section {SECTION:?}: {} problem(s):\n{}",
        report.problems.len(),
        report.problems.join("\n")
    );
}

/// The check itself: each kind of defect is reported, all at once, and a sound map passes.
#[test]
fn the_check_reports_every_kind_of_defect() {
    let root = std::env::temp_dir().join(format!("imgate-attack-map-{}", std::process::id()));
    std::fs::create_dir_all(root.join("t")).unwrap();
    std::fs::write(root.join("t/x.rs"), "fn real() {}\nasync fn later<T>() {}\n").unwrap();
    let catalogue = "| ID | Input | Expected |\n|---|---|---|\n| A1 | a | b |\n| A2 | a | b |\n| A3 | a | b |\n\
                     | A4 | a | b |\n| A5 | a | b |\n";
    let table = "| row | attack | status | proof |\n|---|---|---|---|\n";
    let sound = format!(
        "# Doc\n\n{SECTION}\n\nTally: 3 tested, 1 not applicable, 1 gap.\n\n{table}\
         | A1 | x | tested | `t/x.rs::real` |\n| A2 | x | tested | `t/x.rs::later` · `t/x.rs` |\n\
         | A3 | x | tested | `t/x.rs::real` |\n| A4 | x | not applicable | imgate serves no such thing |\n\
         | A5 | x | gap | no test drives this yet |\n\n## Next\n\n| A9 | outside the section | tested | none |\n"
    );
    let ok = check(catalogue, &sound, &root);
    assert!(ok.problems.is_empty(), "{:#?}", ok.problems);
    let broken = format!(
        "{SECTION}\n\nTally: 9 tested, 0 not applicable, 0 gap.\n\n{table}\
         | A1 | x | tested | `t/x.rs::missing` · `t/nope.rs::real` · `../t/x.rs::real` |\n\
         | A2 | x | tested | nothing cited |\n| A2 | x | tested | `t/x.rs::real` |\n\
         | A3 | x | gap | `t/x.rs::real` |\n| A4 | x | maybe | `t/x.rs::real` |\n\
         | B7 | x | tested | `t/x.rs::real` |\n| A6 | too | few | cells | here | now |\n"
    );
    let report = check(catalogue, &broken, &root);
    let expect = [
        "A1 cites t/x.rs::missing, which t/x.rs does not define",
        "A1 cites t/nope.rs, which does not exist",
        "A1 cites ../t/x.rs, which does not exist",
        "A2 is `tested` but cites no test",
        "A2 is mapped twice",
        "A3 is `gap` without a written reason",
        "A4 has status \"maybe\"",
        "B7 is not in the catalogue",
        "catalogue row A5 is missing from the map",
        "A6 has 6 cells",
        "the tally line says \"9 tested, 0 not applicable, 0 gap.\"",
    ];
    for e in expect {
        assert!(report.problems.iter().any(|p| p.contains(e)), "{e:?} not reported in {:#?}", report.problems);
    }
    assert_eq!(report.problems.len(), expect.len(), "{:#?}", report.problems);
    let no_section = check(catalogue, "# Doc\n", &root);
    assert!(no_section.problems.iter().any(|p| p.contains("has no section")), "{:?}", no_section.problems);
    let _ = std::fs::remove_dir_all(&root);
}
