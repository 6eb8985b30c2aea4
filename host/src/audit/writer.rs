//! The single writer behind an [`AuditLog`](super::AuditLog): a dedicated OS thread that takes
//! events off the bounded channel, chains them and appends them to the sink.
//!
//! It is a thread rather than a tokio task because every write is a blocking file write (and
//! durable records an `fsync`), which must not stall a runtime worker; it also lets a log be
//! created outside a runtime. A failed write never advances the chain, and a partially written
//! line is cut off again, so the file stays verifiable through a full disk; once writes succeed
//! again an `audit_loss` record says how many events were lost meanwhile.
//!
//! The file is opened with an exclusive lock (see [`open_file`]) that lives as long as the sink:
//! two writers continuing one chain from the same head would fork it, and neither could tell.
//! Every record the writer seals carries its log's instance id.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{mpsc, oneshot};

use super::record::{self, Chain};
use super::{gauge_value, AuditError, AuditEvent, AuditHead};

/// How often, at most, loss is reported while the channel never drains.
const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How often a busy writer looks for new events (see [`Writer::run`]).
const POLL: Duration = Duration::from_millis(5);
/// How long the writer keeps polling after the last message before it sleeps until the next.
const IDLE_AFTER: Duration = Duration::from_millis(200);
/// At most about this many bytes of records go into one `write` (see [`Writer::run`]).
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// What one request's record takes, roughly: the batch's size estimate.
const APPROX_RECORD_BYTES: usize = 512;
/// A record line longer than this at the end of a file is treated as corruption.
const MAX_TAIL_LINE: u64 = 16 * 1024 * 1024;

/// What travels from [`AuditLog`](super::AuditLog) handles to the writer.
pub(crate) enum Msg {
    Event(AuditEvent),
    Durable(AuditEvent, oneshot::Sender<Result<(), AuditError>>),
    Flush(oneshot::Sender<()>),
    /// Flush, then drop the file (releasing its lock) before acknowledging.
    Close(oneshot::Sender<()>),
}

/// Counters and the chain's head, shared by the handles and the writer.
pub(crate) struct Shared {
    /// Events refused because the channel was full (or the writer gone).
    pub dropped: AtomicU64,
    /// Events the sink failed to write.
    pub unwritten: AtomicU64,
    /// Set by the first drop of a burst (which logs an error); cleared when the writer reports it.
    pub overflowing: AtomicBool,
    /// The last record written, and the gauge that mirrors its seq (one lock: they never disagree
    /// for longer than one update, and a head read never pairs one record's seq with another's hash).
    head: Mutex<Head>,
}

struct Head {
    chain: Chain,
    gauge: Option<Gauge>,
}

impl Shared {
    pub(super) fn new(chain: &Chain) -> Shared {
        Shared {
            dropped: AtomicU64::new(0),
            unwritten: AtomicU64::new(0),
            overflowing: AtomicBool::new(false),
            head: Mutex::new(Head { chain: chain.clone(), gauge: None }),
        }
    }

    fn lock_head(&self) -> std::sync::MutexGuard<'_, Head> {
        self.head.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn head(&self) -> AuditHead {
        AuditHead::from(&self.lock_head().chain)
    }

    pub(super) fn export_head_seq(&self, gauge: Gauge) {
        let mut head = self.lock_head();
        gauge.set(gauge_value(head.chain.seq));
        head.gauge = Some(gauge);
    }

    fn set_head(&self, chain: &Chain) {
        let mut head = self.lock_head();
        head.chain.clone_from(chain);
        if let Some(gauge) = &head.gauge {
            gauge.set(gauge_value(chain.seq));
        }
    }
}

/// Where lines go. `append` writes one whole line or, on error, nothing.
pub(crate) trait Sink: Send {
    fn append(&mut self, line: &[u8]) -> io::Result<()>;
    fn sync(&mut self) -> io::Result<()>;
}

/// What replaces the file once the log is closed: every write fails, so late records are
/// counted as unwritten rather than appended after the lock was given up.
struct Closed;

impl Sink for Closed {
    fn append(&mut self, _line: &[u8]) -> io::Result<()> {
        Err(io::Error::other("the audit log was closed (the gateway is shutting down)"))
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An append-only file. Tracks its length so a partial line left by a failed write is cut off.
pub(crate) struct FileSink {
    file: File,
    len: u64,
    /// Set when a partial line could not be removed: writing on would glue records together.
    poisoned: Option<String>,
}

impl FileSink {
    pub(super) fn new(file: File, len: u64) -> FileSink {
        FileSink { file, len, poisoned: None }
    }

    /// Writes all of `line`, returning how much was written before an error.
    fn write_fully(&mut self, line: &[u8]) -> Result<(), (usize, io::Error)> {
        let mut written = 0;
        while written < line.len() {
            match self.file.write(&line[written..]) {
                Ok(0) => {
                    return Err((written, io::Error::new(io::ErrorKind::WriteZero, "audit file accepted no bytes")))
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((written, e)),
            }
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if let Some(why) = &self.poisoned {
            return Err(io::Error::other(why.clone()));
        }
        match self.write_fully(line) {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err((0, e)) => Err(e),
            Err((_, e)) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    self.poisoned = Some(format!("a partial audit record could not be removed ({cut}) after a failed write ({e}); restart required"));
                }
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// The writer's state; [`Writer::spawn`] moves it onto its thread.
pub(crate) struct Writer {
    sink: Box<dyn Sink>,
    chain: Chain,
    /// The `instance` of every record this writer seals.
    instance: String,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Msg>,
    reported_dropped: u64,
    pending_unwritten: u64,
    failing: bool,
    last_report: Instant,
}

impl Writer {
    pub(super) fn new(
        sink: Box<dyn Sink>,
        chain: Chain,
        instance: String,
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Msg>,
    ) -> Writer {
        Writer {
            sink,
            chain,
            instance,
            shared,
            rx,
            reported_dropped: 0,
            pending_unwritten: 0,
            failing: false,
            last_report: Instant::now(),
        }
    }

    pub(super) fn spawn(self) -> io::Result<()> {
        std::thread::Builder::new().name("imgate-audit".into()).spawn(move || self.run()).map(|_| ())
    }

    /// Runs until every handle is gone and the channel is drained.
    ///
    /// While events keep coming the writer *polls* the channel every [`POLL`] instead of sleeping
    /// until the next one arrives: a sender then never has to wake this thread, which on a busy
    /// gateway cost a futex call and a context switch per request. Waiting events are written
    /// together, one `write` for up to [`MAX_BATCH_BYTES`] of records. A batch is all or nothing,
    /// like a single record: on failure the file is cut back and the chain stays where it was.
    /// Durable records, flushes and closes are handled one by one after the events before them
    /// (so they wait at most one [`POLL`] more). After [`IDLE_AFTER`] without a message the
    /// writer sleeps until the next one, so an idle gateway costs nothing.
    fn run(mut self) {
        let mut idle_since: Option<Instant> = None;
        let mut next: Option<Msg> = None;
        loop {
            let msg = match next.take() {
                Some(msg) => msg,
                None => match self.rx.try_recv() {
                    Ok(msg) => msg,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if idle_since.get_or_insert_with(Instant::now).elapsed() < IDLE_AFTER {
                            std::thread::sleep(POLL);
                            continue;
                        }
                        match self.rx.blocking_recv() {
                            Some(msg) => msg,
                            None => break,
                        }
                    }
                },
            };
            idle_since = None;
            match msg {
                Msg::Event(event) => {
                    let mut batch = vec![event];
                    let mut bytes = 0;
                    while bytes < MAX_BATCH_BYTES {
                        match self.rx.try_recv() {
                            Ok(Msg::Event(e)) => {
                                bytes += APPROX_RECORD_BYTES;
                                batch.push(e);
                            }
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write_batch(&batch);
                }
                Msg::Durable(event, ack) => {
                    let result = self.write(&event, true);
                    let _ = ack.send(result);
                }
                Msg::Flush(ack) => {
                    self.report_loss();
                    if let Err(e) = self.sink.sync() {
                        self.on_failure(&e);
                    }
                    let _ = ack.send(());
                }
                Msg::Close(ack) => {
                    self.report_loss();
                    if let Err(e) = self.sink.sync() {
                        self.on_failure(&e);
                    }
                    // Dropping the file sink closes the file and with it the lock.
                    self.sink = Box::new(Closed);
                    let _ = ack.send(());
                }
            }
            if self.rx.is_empty() || self.last_report.elapsed() >= LOSS_REPORT_INTERVAL {
                self.report_loss();
            }
        }
        self.report_loss();
        let _ = self.sink.sync();
    }

    /// Appends `events` in one write; on failure none of them is in the file or the chain, and
    /// all count as unwritten.
    fn write_batch(&mut self, events: &[AuditEvent]) {
        if let [one] = events {
            let _ = self.write(one, false);
            return;
        }
        if self.pending_unwritten > 0 {
            self.report_loss();
        }
        let mut chain = self.chain.clone();
        let mut lines = Vec::with_capacity(events.len() * APPROX_RECORD_BYTES);
        let ts = record::now_ms();
        for event in events {
            match chain.next(&self.instance, event, ts) {
                Ok(sealed) => {
                    lines.extend_from_slice(sealed.line.as_bytes());
                    lines.push(b'\n');
                    chain.advance(&sealed);
                }
                // Cannot happen for events built by the gateway; counted, never half-written.
                Err(_) => {
                    self.pending_unwritten += 1;
                    self.shared.unwritten.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        match self.sink.append(&lines) {
            Ok(()) => {
                self.chain = chain;
                self.shared.set_head(&self.chain);
                if self.failing {
                    self.failing = false;
                    tracing::warn!("audit sink writable again");
                }
            }
            Err(e) => {
                self.on_failure(&e);
                let n = events.len() as u64;
                self.pending_unwritten += n;
                self.shared.unwritten.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Appends `event` (and syncs it if `durable`); counts it as unwritten if that fails.
    fn write(&mut self, event: &AuditEvent, durable: bool) -> Result<(), AuditError> {
        if self.pending_unwritten > 0 {
            // The sink failed before: say what was lost ahead of the next record, if it works now.
            self.report_loss();
        }
        if let Err(e) = self.append(event) {
            self.pending_unwritten += 1;
            self.shared.unwritten.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
        if durable {
            // The line is in the file already (the chain moved on); only its durability failed.
            self.sink.sync().map_err(|e| {
                self.on_failure(&e);
                AuditError::Sink(e)
            })?;
        }
        Ok(())
    }

    /// Seals `event` as the next record and appends it; the chain moves only on success.
    fn append(&mut self, event: &AuditEvent) -> Result<(), AuditError> {
        let sealed = self.chain.next(&self.instance, event, record::now_ms()).map_err(AuditError::Encode)?;
        let mut line = sealed.line.clone().into_bytes();
        line.push(b'\n');
        match self.sink.append(&line) {
            Ok(()) => {
                self.chain.advance(&sealed);
                self.shared.set_head(&self.chain);
                if self.failing {
                    self.failing = false;
                    tracing::warn!("audit sink writable again");
                }
                Ok(())
            }
            Err(e) => {
                self.on_failure(&e);
                Err(AuditError::Sink(e))
            }
        }
    }

    fn on_failure(&mut self, e: &io::Error) {
        if !self.failing {
            self.failing = true;
            tracing::error!(error = %e, "audit sink failed: events are not being recorded and durable records (admin actions) are refused");
        }
    }

    /// Writes an `audit_loss` record if events were dropped or unwritten since the last one.
    fn report_loss(&mut self) {
        self.last_report = Instant::now();
        self.shared.overflowing.store(false, Ordering::Relaxed);
        let dropped_total = self.shared.dropped.load(Ordering::Relaxed);
        let dropped = dropped_total - self.reported_dropped;
        if dropped == 0 && self.pending_unwritten == 0 {
            return;
        }
        let mut event = AuditEvent { kind: "audit_loss".into(), outcome: "lost".into(), ..AuditEvent::default() };
        event.reason = Some("events were not recorded (channel full or sink failing)".into());
        event.detail.insert("dropped".into(), dropped.into());
        event.detail.insert("unwritten".into(), self.pending_unwritten.into());
        if self.append(&event).is_ok() {
            self.reported_dropped = dropped_total;
            self.pending_unwritten = 0;
        }
    }
}

/// Opens (creating, mode 0600 on unix) the audit file for appending, locks it exclusively, and
/// returns it with the head of its chain, after checking that the file ends with a complete,
/// intact record. The lock is taken before the tail is read, so the head read is the one no other
/// writer can move; it is released when the returned `File` is dropped.
///
/// `instance` is the id this log will write. If the last record was written under another id
/// the file is continued anyway, with a warning. Refusing was considered and rejected: the
/// default id is the host name, which changes on every restart of a container (a Kubernetes
/// Deployment's pod, a recreated Docker container), so a refusal would stop a gateway with a
/// persistent audit volume from starting after each rollout. Nothing is hidden by allowing it:
/// the lock already keeps two running gateways off one file, the change of id is in the chain
/// itself (the next record carries the new id, under the hash), `imgate audit verify` lists every
/// id a file holds, and given several files it fails when an id appears in two of them (a copied
/// or forked file).
pub(crate) fn open_file(path: &Path, instance: &str) -> io::Result<(File, Chain, u64)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "audit log {} is locked: another imgate holds it (one gateway per audit file; stop \
                     the other one or give this one its own [audit] file)",
                    path.display()
                ),
            ))
        }
        // A file system without locks: refuse rather than risk two writers forking the chain.
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(io::Error::new(e.kind(), format!("audit log {}: cannot lock it: {e}", path.display())))
        }
    }
    let len = file.metadata()?.len();
    let corrupt = |why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("audit log {}: {why}; refusing to continue its chain (run `imgate audit verify`)", path.display()),
        )
    };
    let chain = match last_line(&mut file, len).map_err(|e| corrupt(e.to_string()))? {
        None => Chain::genesis(),
        Some(line) => {
            let line = String::from_utf8(line).map_err(|_| corrupt("its last line is not UTF-8".into()))?;
            let checked = record::check_line(&line).map_err(|why| corrupt(format!("last line: {why}")))?;
            if let Some(last) = checked.instance.as_deref().filter(|last| *last != instance) {
                tracing::warn!(
                    file = %path.display(),
                    last_instance = last,
                    instance,
                    "audit log: continuing a chain last written by another instance id (renamed, or a new \
                     host name?); a file copied from another gateway shows up in `imgate audit verify` \
                     with the other gateway's file"
                );
            }
            Chain { seq: checked.seq, hash: checked.hash }
        }
    };
    Ok((file, chain, len))
}

/// The last line of a file of `len` bytes, without its newline; `None` if the file is empty.
/// Errors if the file does not end with a newline (an interrupted write).
fn last_line(file: &mut File, len: u64) -> io::Result<Option<Vec<u8>>> {
    if len == 0 {
        return Ok(None);
    }
    let mut start = len - 1; // the final newline
    let mut tail = read_at(file, start, 1)?;
    if tail != b"\n" {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "it does not end with a newline (an interrupted write?)",
        ));
    }
    tail.clear();
    while start > 0 {
        let chunk_start = start.saturating_sub(8192);
        let chunk = read_at(file, chunk_start, (start - chunk_start) as usize)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            tail.splice(0..0, chunk[i + 1..].iter().copied());
            return Ok(Some(tail));
        }
        tail.splice(0..0, chunk);
        start = chunk_start;
        if tail.len() as u64 > MAX_TAIL_LINE {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "its last line is implausibly long"));
        }
    }
    Ok(Some(tail))
}

fn read_at(file: &mut File, offset: u64, n: usize) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0; n];
    file.read_exact(&mut buf)?;
    Ok(buf)
}
