//! The hash-chained audit log: every API call, authentication decision and admin action as one
//! JSON line, chained so that an edited or removed record is detected by `imgate audit verify`.
//!
//! Operators need a trail they can trust after an incident: who did what, through which route,
//! which OpenIM `operationID`s it caused, and how it ended. Tracing logs are neither complete
//! nor tamper-evident, so audit events go here instead. Secrets, tokens and message bodies never
//! belong in an [`AuditEvent`]; callers put ids, counts and reasons in it, nothing else.
//!
//! # Record format (one line per record, `\n`-terminated, UTF-8)
//!
//! A JSON object with exactly these keys, in this order:
//! `seq` (u64, 1 for the first record, +1 each record), `ts` (unix ms when written), `instance`
//! (the id of the imgate that wrote it: `[store] instance_id`, default the host name), `prev`
//! (the `hash` of the previous record; 64 `0`s for seq 1), then the [`AuditEvent`] fields
//! `kind`, `request_id`, `user`, `route`, `method`, `operation_ids`, `outcome`, `status`,
//! `latency_ms`, `reason`, `detail` (absent values are `null`, never omitted; a non-finite
//! `latency_ms` is written as `null`), and last `hash`.
//!
//! **Canonical form and hash.** The canonical serialization of a record is the compact
//! `serde_json` serialization (no whitespace, serde_json's string escaping and shortest
//! round-trip numbers) of the keys above *without* `hash`, in the order above, with the keys of
//! `detail` — and of any object nested in it — sorted by their UTF-8 bytes. `hash` is the
//! lowercase hex SHA-256 of those bytes. The line on disk is the same serialization with
//! `,"hash":"<hex>"` inserted before the final `}`. A verifier re-serializes each parsed record,
//! recomputes the hash, and also requires the line to equal the canonical line byte for byte, so
//! added, dropped, reordered or reformatted keys are detected too.
//!
//! **Instance ids and files from before them.** Several gateways may share one Redis, each with
//! its own file; `instance` says which gateway wrote a record, and is hashed like every other
//! key. Records written before instance ids existed have no `instance` key (never `null`): they
//! are canonical, hashed and verified without it, so an old file still verifies, and an upgraded
//! gateway continues it (its new records carry `instance`). A file is therefore a run of records
//! without `instance` followed by records with it; a record without one after a record with one
//! fails verification (no imgate writes that: an older imgate reads the new records as modified
//! and refuses to continue the file). A file may change instance id between records (a gateway
//! renamed, or its host name changed on a restart: see `writer::open_file` for why that is
//! allowed); `imgate audit verify A B …` fails when one id appears in two files, the mark of a
//! copied or forked file, or when two files start with the same record.
//!
//! **Injection (attacks.md E21).** Every string goes through serde_json's escaping: a newline,
//! an ANSI escape (`\u001b`) or a quote in a user id stays inside its JSON string, so a field can
//! neither end a line nor forge keys or records.
//!
//! **What the chain proves.** Editing a record breaks its `hash`; removing or reordering one
//! breaks `seq`/`prev` at the next line. Someone able to rewrite the whole file from a point on
//! can recompute every hash after it, and cutting records off the end leaves a valid chain. The
//! chain's head ([`AuditLog::head`]: `seq` and `hash` of the last record written, served at
//! `GET /v1/admin/audit/head` and counted in the `imgate_audit_head_seq` gauge) is the anchor
//! against both: kept somewhere else, it is checked with `imgate audit verify FILE --head
//! SEQ:HASH` ([`verify_file_with_head`]), which fails when the file no longer holds that record.
//! Because every hash covers the previous one, a matching record `SEQ` vouches for all before it.
//!
//! **Outcomes of `api_call` records** ([`outcome`]): `ok`, `refused` (authentication, permission
//! or a policy said no — also when the answer is HTTP 200, as the OpenIM-compatible surface
//! answers refusals in OpenIM's envelope), `rejected` (a malformed or throttled request, other
//! 4xx) and `error` (5xx). Admin actions carry the action's name, `audit_loss` records `lost`.
//!
//! # Writing (attacks.md E19)
//!
//! [`AuditLog::record`] never blocks: it queues the event on a bounded channel (10 000) for one
//! writer thread (`writer`), which assigns `seq`, `ts`, `prev`, `hash` and appends the line. When
//! the channel is full the event is dropped and counted ([`AuditLog::dropped`]); user traffic
//! goes on. If a write fails (disk full), the chain does not move and any partial line is cut
//! off; once writes succeed again, an `audit_loss` record (`detail.dropped`, `detail.unwritten`)
//! states how many events were lost. [`AuditLog::record_durable`] waits until its record is
//! written and `fsync`ed and fails otherwise, so admin actions can fail closed. Open one
//! `AuditLog` per file and clone it; call [`AuditLog::close`] (or at least [`AuditLog::flush`])
//! at shutdown.
//!
//! **One writer per file.** [`AuditLog::open`] takes an exclusive lock on the file (`flock` on
//! unix) and holds it until the log is closed: a second gateway pointed at the same file would
//! otherwise continue the chain from the same head and fork it, so it refuses to start instead,
//! naming the file. Readers (`imgate audit verify`) take no lock and work while a gateway runs.

mod record;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, oneshot};

pub use verify::{verify_chain, verify_file, verify_file_with_head, ChainSummary, VerifyError};

use record::Chain;
use writer::{FileSink, Msg, Shared, Sink, Writer};

/// Capacity of the channel between [`AuditLog::record`] and the writer.
pub const CHANNEL_CAPACITY: usize = 10_000;
/// An in-memory log keeps at most this many records (the oldest go first); `seq` keeps counting.
pub const MEMORY_CAPACITY: usize = 100_000;
/// The instance id of [`AuditLog::memory`] (`[store] instance_id`'s last fallback too).
pub const DEFAULT_INSTANCE: &str = "imgate";

/// The `outcome` values of `api_call` records (see the module documentation).
pub mod outcome {
    /// The request was served (2xx/3xx, and no refusal noted).
    pub const OK: &str = "ok";
    /// Authentication, permission or policy said no: 401/403, or a refusal a handler noted with
    /// `RequestId::note_refusal` whatever the status (OpenIM's envelope answers refusals with 200).
    pub const REFUSED: &str = "refused";
    /// A malformed, oversized, unknown or throttled request (other 4xx).
    pub const REJECTED: &str = "rejected";
    /// imgate or OpenIM failed (5xx).
    pub const ERROR: &str = "error";
}

/// The head of a chain: `seq` and `hash` of the last record written (`seq` 0 and 64 zeros before
/// the first). Written `SEQ:HASH` on the command line (`imgate audit verify --head`), and
/// `{"seq":N,"hash":"hex"}` in JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    /// Lowercase hex SHA-256 of the record (see "Canonical form and hash").
    pub hash: String,
}

impl fmt::Display for AuditHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for AuditHead {
    type Err = String;

    /// Parses `SEQ:HASH` (a decimal seq, 64 hex digits; upper case is accepted and lowered).
    fn from_str(s: &str) -> Result<AuditHead, String> {
        let (seq, hash) = s.split_once(':').ok_or("expected SEQ:HASH, e.g. 42:<64 hex digits>")?;
        let seq = seq.parse::<u64>().map_err(|_| format!("SEQ must be a record number, not {seq:?}"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("HASH must be 64 hex digits (a record's `hash`)".into());
        }
        Ok(AuditHead { seq, hash: hash.to_ascii_lowercase() })
    }
}

impl From<&Chain> for AuditHead {
    fn from(chain: &Chain) -> AuditHead {
        AuditHead { seq: chain.seq, hash: chain.hash.clone() }
    }
}

/// One audit record's content (the writer adds seq, ts, prev, hash).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct AuditEvent {
    /// e.g. "api_call", "auth", "admin_action", "handshake"
    pub kind: String,
    pub request_id: Option<String>,
    /// user id or admin subject
    pub user: Option<String>,
    /// matched route template, e.g. "/v1/me"
    pub route: Option<String>,
    pub method: Option<String>,
    /// OpenIM operationIDs this request caused
    pub operation_ids: Vec<String>,
    /// `api_call`: one of [`outcome`]; admin actions: the action; `audit_loss`: "lost"
    pub outcome: String,
    pub status: Option<u16>,
    pub latency_ms: Option<f64>,
    /// e.g. why auth failed (never a secret)
    pub reason: Option<String>,
    /// small extra fields (ids, counts), never bodies or tokens
    pub detail: serde_json::Map<String, serde_json::Value>,
}

/// Why a durable record was not written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The sink failed (disk full, file unwritable, fsync failed).
    #[error("audit sink failed: {0}")]
    Sink(#[source] std::io::Error),
    /// The event could not be serialized (not expected: every field is plain data).
    #[error("audit record could not be encoded: {0}")]
    Encode(#[source] serde_json::Error),
    /// The writer is gone (it stopped or panicked).
    #[error("audit writer stopped")]
    Closed,
}

/// Where records go. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Channel { tx: mpsc::Sender<Msg>, shared: Arc<Shared> },
    Memory(Arc<Mutex<MemoryLog>>),
}

/// An in-memory log: chained synchronously, so `records()` is current right after `record()`.
struct MemoryLog {
    chain: Chain,
    instance: String,
    records: VecDeque<serde_json::Value>,
    head_gauge: Option<Gauge>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Channel { .. } => f.write_str("AuditLog(file)"),
            Inner::Memory(_) => f.write_str("AuditLog(memory)"),
        }
    }
}

impl AuditLog {
    /// Opens (creating if needed, mode 0600) a JSON-lines file and continues its chain from its
    /// last line, whose own hash is checked; a corrupt or incomplete tail is an error naming the
    /// file (the operator decides what to do with it, imgate does not paper over it). The file is
    /// locked for this log's lifetime: if another log (another imgate) holds it, this is an error
    /// naming the file, of kind [`std::io::ErrorKind::WouldBlock`].
    ///
    /// Every record is written with `instance` (`[store] instance_id`). A file from before
    /// instance ids is continued; so is one whose last record has another id, with a warning
    /// (see the module documentation).
    pub async fn open(path: &Path, instance: &str) -> std::io::Result<AuditLog> {
        let owned = path.to_path_buf();
        let id = instance.to_owned();
        let (file, chain, len) = tokio::task::spawn_blocking(move || writer::open_file(&owned, &id))
            .await
            .map_err(std::io::Error::other)??;
        let (log, writer) =
            AuditLog::channel(Box::new(FileSink::new(file, len)), chain, instance.to_owned(), CHANNEL_CAPACITY);
        writer.spawn()?;
        Ok(log)
    }

    /// A log that keeps records in memory only (tests, and configs without an audit file);
    /// `records()` returns them. Each record is also emitted as a tracing event (target
    /// `imgate::audit`, field `record` = the JSON line), so it reaches the process log. Its
    /// records carry the instance id [`DEFAULT_INSTANCE`]; [`AuditLog::memory_as`] names another.
    pub fn memory() -> AuditLog {
        AuditLog::memory_as(DEFAULT_INSTANCE)
    }

    /// [`AuditLog::memory`] whose records carry `instance`.
    pub fn memory_as(instance: &str) -> AuditLog {
        let log = MemoryLog {
            chain: Chain::genesis(),
            instance: instance.to_owned(),
            records: VecDeque::new(),
            head_gauge: None,
        };
        AuditLog { inner: Inner::Memory(Arc::new(Mutex::new(log))) }
    }

    /// Messages waiting for the writer (tests).
    #[cfg(test)]
    fn queued(&self) -> usize {
        match &self.inner {
            Inner::Channel { tx, .. } => tx.max_capacity() - tx.capacity(),
            Inner::Memory(_) => 0,
        }
    }

    /// A channel-backed log whose writer has not started yet (tests start it when they want).
    fn channel(sink: Box<dyn Sink>, chain: Chain, instance: String, capacity: usize) -> (AuditLog, Writer) {
        let (tx, rx) = mpsc::channel(capacity);
        let shared = Arc::new(Shared::new(&chain));
        let writer = Writer::new(sink, chain, instance, shared.clone(), rx);
        (AuditLog { inner: Inner::Channel { tx, shared } }, writer)
    }

    /// Records an event without ever blocking: if the channel is full (or the writer is gone)
    /// the event is dropped, [`AuditLog::dropped`] increases, and an error is logged once per burst.
    pub fn record(&self, event: AuditEvent) {
        match &self.inner {
            Inner::Memory(log) => {
                memory_record(log, &event).unwrap_or_else(|e| tracing::error!(error = %e, "audit record not kept"))
            }
            Inner::Channel { tx, shared } => {
                if tx.try_send(Msg::Event(event)).is_err() {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    if !shared.overflowing.swap(true, Ordering::Relaxed) {
                        tracing::error!("audit channel full: dropping audit events until the writer catches up");
                    }
                }
            }
        }
    }

    /// Records an event and waits until it is written and synced to disk. `Err` if the sink
    /// failed (disk full, file unwritable) or the writer is gone: admin actions use this to fail
    /// closed. It waits for room in the channel rather than dropping the event.
    pub async fn record_durable(&self, event: AuditEvent) -> Result<(), AuditError> {
        match &self.inner {
            Inner::Memory(log) => memory_record(log, &event),
            Inner::Channel { tx, .. } => {
                let (ack, done) = oneshot::channel();
                tx.send(Msg::Durable(event, ack)).await.map_err(|_| AuditError::Closed)?;
                done.await.map_err(|_| AuditError::Closed)?
            }
        }
    }

    /// Events dropped because the channel was full (or the writer gone).
    pub fn dropped(&self) -> u64 {
        match &self.inner {
            Inner::Channel { shared, .. } => shared.dropped.load(Ordering::Relaxed),
            Inner::Memory(_) => 0,
        }
    }

    /// Events the writer took but could not write (sink failure, e.g. disk full).
    pub fn unwritten(&self) -> u64 {
        match &self.inner {
            Inner::Channel { shared, .. } => shared.unwritten.load(Ordering::Relaxed),
            Inner::Memory(_) => 0,
        }
    }

    /// Waits until every record accepted so far is written (and synced), including an
    /// `audit_loss` record for anything dropped so far (tests, shutdown).
    pub async fn flush(&self) {
        if let Inner::Channel { tx, .. } = &self.inner {
            let (ack, done) = oneshot::channel();
            if tx.send(Msg::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        }
    }

    /// Flushes, then closes the file and releases its lock before returning, so another log (a
    /// restarted gateway) can open it at once. Dropping every handle releases it too, but only
    /// once the writer thread has drained, at a moment nobody can wait for. Events recorded
    /// through any clone after this are not written (counted in [`AuditLog::unwritten`]).
    pub async fn close(&self) {
        if let Inner::Channel { tx, .. } = &self.inner {
            let (ack, done) = oneshot::channel();
            if tx.send(Msg::Close(ack)).await.is_ok() {
                let _ = done.await;
            }
        }
    }

    /// The chain's head: the last record written so far (records still queued are not in it;
    /// [`AuditLog::flush`] first for a head that includes everything recorded before).
    pub fn head(&self) -> AuditHead {
        match &self.inner {
            Inner::Channel { shared, .. } => shared.head(),
            Inner::Memory(log) => AuditHead::from(&log.lock().unwrap_or_else(|p| p.into_inner()).chain),
        }
    }

    /// Keeps `gauge` at the head's `seq` from now on (the `imgate_audit_head_seq` metric). Only
    /// the number: a hash as a metric label would be a new time series for every record.
    pub fn export_head_seq(&self, gauge: Gauge) {
        match &self.inner {
            Inner::Channel { shared, .. } => shared.export_head_seq(gauge),
            Inner::Memory(log) => {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                gauge.set(gauge_value(log.chain.seq));
                log.head_gauge = Some(gauge);
            }
        }
    }

    /// In-memory logs only: the records written so far (with seq/hash), in order. Empty for a
    /// file log (read the file).
    pub fn records(&self) -> Vec<serde_json::Value> {
        match &self.inner {
            Inner::Memory(log) => match log.lock() {
                Ok(log) => log.records.iter().cloned().collect(),
                Err(poisoned) => poisoned.into_inner().records.iter().cloned().collect(),
            },
            Inner::Channel { .. } => Vec::new(),
        }
    }
}

/// Chains `event` onto an in-memory log.
fn memory_record(log: &Mutex<MemoryLog>, event: &AuditEvent) -> Result<(), AuditError> {
    let mut log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let sealed = log.chain.next(&log.instance, event, record::now_ms()).map_err(AuditError::Encode)?;
    let value = serde_json::from_str(&sealed.line).map_err(AuditError::Encode)?;
    tracing::info!(target: "imgate::audit", record = %sealed.line, "audit");
    log.chain.advance(&sealed);
    if let Some(gauge) = &log.head_gauge {
        gauge.set(gauge_value(sealed.seq));
    }
    if log.records.len() >= MEMORY_CAPACITY {
        log.records.pop_front();
    }
    log.records.push_back(value);
    Ok(())
}

/// A seq as a gauge value (gauges are i64; a chain never gets near 2^63 records).
pub(crate) fn gauge_value(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}
