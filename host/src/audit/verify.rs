//! `imgate audit verify FILE`: walks a whole audit file and names the first line that breaks the
//! chain, so an edited, removed, inserted or reordered record is found by its line number.
//!
//! Each line must check out on its own (JSON, hash of its own content, canonical bytes — see
//! `record::check_line`) and against its predecessor (`seq` one more, `prev` = its `hash`; no
//! record without `instance` after one with it). [`verify_chain`] also sums up what it read
//! (records, instance ids, first record), which `imgate audit verify` prints and compares across
//! files.
//!
//! A file alone cannot show that records were cut off its end: what remains is a valid chain.
//! With a head anchor (`--head SEQ:HASH`, a head read earlier from the running gateway and kept
//! elsewhere) the file must also hold record `SEQ` with exactly that hash; records after it are
//! fine (the chain went on), a file that ends before it was truncated.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::record::{self, GENESIS};
use super::AuditHead;

/// What [`verify_chain`] read from a file: the records that checked out (all of them, or those
/// before the first bad line). Their `seq`s are 1 to `records`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChainSummary {
    /// Records that checked out.
    pub records: u64,
    /// The `instance` ids of those records, each once, in order of first appearance.
    pub instances: Vec<String>,
    /// How many of them have no `instance` (written before instance ids; they come first).
    pub without_instance: u64,
    /// The `hash` of record 1: two files that start with the same record are copies of one chain.
    pub first_hash: Option<String>,
}

/// Why a file failed verification: the first bad line (1-based; 0 when the file itself could
/// not be read) and what is wrong with it.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("line {line}: {reason}")]
pub struct VerifyError {
    pub line: u64,
    pub reason: String,
}

/// Checks a file's chain. `Ok(number of records)`, or the first bad line and why: not a record
/// (not JSON, missing fields), `seq` not consecutive (a removed, inserted or reordered record),
/// `prev` not the previous record's hash, or a hash or layout that does not match the content (an
/// edited record). An empty file is a valid, empty chain. A chain cut short at its end cannot be
/// detected from the file alone; compare the count and last hash with a copy kept elsewhere.
pub fn verify_file(path: &Path) -> Result<u64, VerifyError> {
    verify_file_with_head(path, None)
}

/// [`verify_file`], and if `head` is given, the file must contain that record: the line with
/// `seq` = `head.seq` must have `hash` = `head.hash` (else the file was rewritten up to there),
/// and a file that ends before it was cut short (records removed from its end). Seq 0 is the
/// empty chain's head (hash [`GENESIS`]), contained in every file.
pub fn verify_file_with_head(path: &Path, head: Option<&AuditHead>) -> Result<u64, VerifyError> {
    let (summary, result) = verify_chain(path, head);
    result.map(|()| summary.records)
}

/// [`verify_file_with_head`], returning what was read along with the verdict: on failure, the
/// summary covers the records before the bad line.
pub fn verify_chain(path: &Path, head: Option<&AuditHead>) -> (ChainSummary, Result<(), VerifyError>) {
    let mut summary = ChainSummary::default();
    let result = walk(path, head, &mut summary);
    (summary, result)
}

fn walk(path: &Path, head: Option<&AuditHead>, summary: &mut ChainSummary) -> Result<(), VerifyError> {
    if let Some(h) = head.filter(|h| h.seq == 0 && h.hash != GENESIS) {
        return Err(VerifyError {
            line: 0,
            reason: format!("head {h}: seq 0 is the empty chain, whose hash is {GENESIS}"),
        });
    }
    let file = File::open(path).map_err(|e| VerifyError { line: 0, reason: format!("cannot open: {e}") })?;
    let mut reader = BufReader::new(file);
    let mut expected_seq = 1u64;
    let mut prev = GENESIS.to_owned();
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    // The line of the first record with an `instance`: no record without one may follow it.
    let mut first_named: Option<u64> = None;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| VerifyError { line: line_no + 1, reason: format!("cannot read: {e}") })?;
        if n == 0 {
            return match head {
                Some(h) if h.seq > line_no => Err(VerifyError {
                    line: line_no + 1,
                    reason: format!(
                        "truncated: the file ends at seq {line_no} but the head anchor is seq {} ({} record(s) \
                         removed from its end)",
                        h.seq,
                        h.seq - line_no
                    ),
                }),
                _ => Ok(()),
            };
        }
        line_no += 1;
        let fail = |reason: String| VerifyError { line: line_no, reason };
        if buf.pop() != Some(b'\n') {
            return Err(fail("no newline at the end (an incomplete record)".into()));
        }
        let line = std::str::from_utf8(&buf).map_err(|_| fail("not UTF-8".into()))?;
        let checked = record::check_line(line).map_err(fail)?;
        if checked.seq != expected_seq {
            return Err(fail(format!(
                "seq {} where {expected_seq} was expected (a record was removed, inserted or reordered)",
                checked.seq
            )));
        }
        if checked.prev != prev {
            let what = if line_no == 1 { "the chain's start".to_owned() } else { format!("line {}", line_no - 1) };
            return Err(fail(format!("prev does not match the hash of {what} (a record was removed or replaced)")));
        }
        if let Some(h) = head.filter(|h| h.seq == checked.seq && h.hash != checked.hash) {
            return Err(fail(format!(
                "seq {} has hash {}, not the head anchor's {} (the file was rewritten up to this record)",
                checked.seq, checked.hash, h.hash
            )));
        }
        match (&checked.instance, first_named) {
            (Some(id), _) => {
                first_named.get_or_insert(line_no);
                if !summary.instances.contains(id) {
                    summary.instances.push(id.clone());
                }
            }
            (None, Some(named)) => {
                return Err(fail(format!(
                    "seq {} has no instance, but line {named} had one (only records written before instance \
                     ids lack it, and they come first)",
                    checked.seq
                )))
            }
            (None, None) => summary.without_instance += 1,
        }
        if line_no == 1 {
            summary.first_hash = Some(checked.hash.clone());
        }
        summary.records = line_no;
        expected_seq += 1;
        prev = checked.hash;
    }
}
