//! Tests of the audit chain: continuation across restarts, detection of edited and removed
//! records (and, with a head anchor, of records cut off the end), the one-writer lock,
//! injection-proof lines, the fail-closed / drop-and-count behaviour under pressure, and the
//! instance id of each record (with files from before instance ids).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::record::Chain;
use super::writer::{FileSink, Sink};
use super::*;

/// A fresh, empty directory for one test.
fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "imgate-audit-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The instance id the tests' logs write under.
const GW: &str = "gw-test";

fn event(kind: &str, user: &str) -> AuditEvent {
    AuditEvent {
        kind: kind.into(),
        request_id: Some("req-1".into()),
        user: Some(user.into()),
        route: Some("/v1/me".into()),
        method: Some("GET".into()),
        operation_ids: vec!["req-1-1".into()],
        outcome: "ok".into(),
        status: Some(200),
        latency_ms: Some(1.25),
        ..AuditEvent::default()
    }
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).expect("read").lines().map(str::to_owned).collect()
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).expect("json line")
}

/// Writes `n` records to a fresh file and returns its path.
async fn file_with(n: usize, name: &str) -> PathBuf {
    let path = temp_dir(name).join("audit.jsonl");
    let log = AuditLog::open(&path, GW).await.expect("open");
    for i in 0..n {
        log.record(event("api_call", &format!("user{i}")));
    }
    // Closed, not just dropped: the lock is released now, not whenever the writer thread ends.
    log.close().await;
    path
}

#[tokio::test]
async fn chain_continues_across_reopen() {
    let path = file_with(3, "reopen").await;
    let log = AuditLog::open(&path, GW).await.expect("reopen");
    log.record(event("auth", "u4"));
    log.record(event("auth", "u5"));
    log.close().await;
    assert_eq!(verify_file(&path), Ok(5));
    let seqs: Vec<u64> = lines(&path).iter().map(|l| parse(l)["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let first = parse(&lines(&path)[0]);
    assert_eq!(first["prev"], record::GENESIS);
}

#[tokio::test]
async fn edited_record_is_named() {
    let path = file_with(5, "edit").await;
    let mut all = lines(&path);
    assert!(all[2].contains(r#""outcome":"ok""#));
    all[2] = all[2].replace(r#""outcome":"ok""#, r#""outcome":"refused""#);
    fs::write(&path, all.join("\n") + "\n").expect("write");
    let err = verify_file(&path).expect_err("edited");
    assert_eq!(err.line, 3, "{err}");
    assert!(err.reason.contains("modified"), "{err}");
}

#[tokio::test]
async fn added_key_is_detected_even_with_a_valid_hash() {
    let path = file_with(2, "addkey").await;
    let mut all = lines(&path);
    all[1] = all[1].replacen('{', r#"{"admin":true,"#, 1);
    fs::write(&path, all.join("\n") + "\n").expect("write");
    let err = verify_file(&path).expect_err("added key");
    assert_eq!(err.line, 2, "{err}");
    assert!(err.reason.contains("canonical"), "{err}");
}

#[tokio::test]
async fn removed_record_is_named() {
    let path = file_with(5, "remove").await;
    let mut all = lines(&path);
    all.remove(1);
    fs::write(&path, all.join("\n") + "\n").expect("write");
    let err = verify_file(&path).expect_err("removed");
    assert_eq!(err.line, 2, "{err}");
    assert!(err.reason.contains("seq 3 where 2"), "{err}");
}

#[tokio::test]
async fn replaced_record_breaks_prev() {
    // Line 2 replaced by a validly hashed record with the right seq but a different prev.
    let path = file_with(3, "replace").await;
    let forged = record::seal(2, 0, Some(GW), record::GENESIS, &event("admin_action", "mallory")).expect("seal");
    let mut all = lines(&path);
    all[1] = forged.line;
    fs::write(&path, all.join("\n") + "\n").expect("write");
    let err = verify_file(&path).expect_err("replaced");
    assert_eq!(err.line, 2, "{err}");
    assert!(err.reason.contains("prev"), "{err}");
}

#[tokio::test]
async fn injected_user_id_stays_one_escaped_line() {
    let path = temp_dir("inject").join("audit.jsonl");
    let log = AuditLog::open(&path, GW).await.expect("open");
    let nasty = "eve\n{\"seq\":99,\"hash\":\"00\"}\r\n\x1b[31mred\x1b[0m\"}\u{2028}";
    let mut ev = event("auth", nasty);
    ev.reason = Some("bad\nreason".into());
    ev.detail.insert("device\n".into(), Value::String("\x1b[2J".into()));
    log.record(ev);
    log.flush().await;
    let bytes = fs::read(&path).expect("read");
    assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1, "exactly one line");
    assert!(!bytes.contains(&b'\r') && !bytes.contains(&0x1b), "control characters are escaped");
    assert_eq!(verify_file(&path), Ok(1));
    let rec = parse(&lines(&path)[0]);
    assert_eq!(rec["user"], nasty);
    assert_eq!(rec["seq"], 1);
}

#[tokio::test]
async fn detail_keys_are_written_sorted() {
    let path = temp_dir("detail").join("audit.jsonl");
    let log = AuditLog::open(&path, GW).await.expect("open");
    let mut ev = event("admin_action", "ops");
    ev.detail.insert("zeta".into(), 1.into());
    ev.detail.insert("alpha".into(), serde_json::json!({"y": 1, "x": [{"b": 2, "a": 1}]}));
    log.record(ev);
    log.flush().await;
    let line = &lines(&path)[0];
    assert!(line.contains(r#""detail":{"alpha":{"x":[{"a":1,"b":2}],"y":1},"zeta":1}"#), "{line}");
    assert_eq!(verify_file(&path), Ok(1));
}

#[test]
fn memory_log_keeps_order_and_seq() {
    let log = AuditLog::memory();
    for kind in ["a", "b", "c"] {
        log.record(event(kind, "u"));
    }
    let records = log.records();
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["a", "b", "c"]);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(records[0]["prev"], record::GENESIS);
    assert_eq!(records[1]["prev"], records[0]["hash"]);
    assert_eq!(records[2]["prev"], records[1]["hash"]);
    assert_eq!(log.dropped(), 0);
}

#[tokio::test]
async fn durable_record_is_on_disk_when_it_returns() {
    let path = temp_dir("durable").join("audit.jsonl");
    let log = AuditLog::open(&path, GW).await.expect("open");
    log.record_durable(event("admin_action", "ops")).await.expect("durable");
    assert_eq!(verify_file(&path), Ok(1));
}

/// `/dev/full` is a real file whose every write fails with ENOSPC — a full disk that behaves the
/// same for root (who ignores permission bits) and needs no mount. `open()` cannot be used on it
/// (it reads the file's tail, and /dev/full reads as endless zeros), so the test builds the same
/// `FileSink` + writer that `open()` builds, on an already opened /dev/full.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn durable_record_fails_on_a_full_disk() {
    let file = fs::OpenOptions::new().append(true).open("/dev/full").expect("/dev/full exists on Linux");
    let (log, writer) = AuditLog::channel(Box::new(FileSink::new(file, 0)), Chain::genesis(), GW.into(), 16);
    writer.spawn().expect("spawn");
    let err = log.record_durable(event("admin_action", "ops")).await.expect_err("disk full");
    match &err {
        AuditError::Sink(e) => assert_eq!(e.kind(), io::ErrorKind::StorageFull, "{e}"),
        other => panic!("unexpected {other}"),
    }
    log.record(event("api_call", "u"));
    log.flush().await;
    assert_eq!(log.unwritten(), 2);
    assert_eq!(log.dropped(), 0);
}

#[tokio::test]
async fn open_fails_when_the_file_cannot_be_created() {
    // A path whose parent is a regular file: refused whoever runs the test (root included).
    let dir = temp_dir("parentfile");
    fs::write(dir.join("not-a-dir"), b"x").expect("write");
    assert!(AuditLog::open(&dir.join("not-a-dir").join("audit.jsonl"), GW).await.is_err());
}

/// A sink that fails while `full` is set and otherwise appends to `data`.
struct ToggleSink {
    full: Arc<AtomicBool>,
    data: Arc<Mutex<Vec<u8>>>,
}

impl Sink for ToggleSink {
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        self.data.lock().expect("data").extend_from_slice(line);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn chain_survives_a_full_disk_and_reports_the_loss() {
    let full = Arc::new(AtomicBool::new(false));
    let data = Arc::new(Mutex::new(Vec::new()));
    let sink = ToggleSink { full: full.clone(), data: data.clone() };
    let (log, writer) = AuditLog::channel(Box::new(sink), Chain::genesis(), GW.into(), 16);
    writer.spawn().expect("spawn");
    log.record(event("api_call", "before"));
    log.flush().await;
    full.store(true, Ordering::SeqCst);
    assert!(log.record_durable(event("admin_action", "ops")).await.is_err(), "admin action fails closed");
    log.record(event("api_call", "lost"));
    log.flush().await;
    full.store(false, Ordering::SeqCst);
    log.record_durable(event("admin_action", "ops")).await.expect("writable again");
    log.flush().await;
    let path = temp_dir("toggle").join("audit.jsonl");
    fs::write(&path, data.lock().expect("data").as_slice()).expect("write");
    assert_eq!(verify_file(&path), Ok(3));
    let all = lines(&path);
    let loss = parse(&all[1]);
    assert_eq!(loss["kind"], "audit_loss");
    assert_eq!(loss["detail"]["unwritten"], 2);
    assert_eq!(parse(&all[2])["kind"], "admin_action");
    assert_eq!(log.unwritten(), 2);
}

#[tokio::test]
async fn full_channel_drops_and_counts() {
    let path = temp_dir("drop").join("audit.jsonl");
    let (file, chain, len) = writer::open_file(&path, GW).expect("open");
    // The writer is not started yet, so the channel (capacity 2) fills deterministically.
    let (log, writer) = AuditLog::channel(Box::new(FileSink::new(file, len)), chain, GW.into(), 2);
    for i in 0..5 {
        log.record(event("api_call", &format!("u{i}")));
    }
    assert_eq!(log.dropped(), 3);
    writer.spawn().expect("spawn");
    log.flush().await;
    assert_eq!(verify_file(&path), Ok(3));
    let last = parse(&lines(&path)[2]);
    assert_eq!(last["kind"], "audit_loss");
    assert_eq!(last["detail"]["dropped"], 3);
    assert_eq!(log.dropped(), 3);
}

#[tokio::test]
async fn open_refuses_a_corrupt_tail() {
    let path = file_with(2, "tail").await;
    let mut all = lines(&path);
    all[1] = all[1].replace("user1", "user9");
    fs::write(&path, all.join("\n") + "\n").expect("write");
    let err = AuditLog::open(&path, GW).await.expect_err("corrupt tail");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");

    let path = file_with(2, "partial").await;
    let mut bytes = fs::read(&path).expect("read");
    bytes.truncate(bytes.len() - 10);
    fs::write(&path, &bytes).expect("write");
    let err = AuditLog::open(&path, GW).await.expect_err("partial tail");
    assert!(err.to_string().contains("newline"), "{err}");
    assert_eq!(verify_file(&path).map_err(|e| e.line), Err(2));
}

#[tokio::test]
async fn open_reads_a_tail_longer_than_one_chunk() {
    let path = temp_dir("longtail").join("audit.jsonl");
    let log = AuditLog::open(&path, GW).await.expect("open");
    log.record(event("api_call", "short"));
    let mut long = event("api_call", "long");
    long.detail.insert("ids".into(), Value::String("x".repeat(20_000)));
    log.record(long);
    log.close().await;
    let log = AuditLog::open(&path, GW).await.expect("reopen");
    log.record(event("api_call", "after"));
    log.flush().await;
    assert_eq!(verify_file(&path), Ok(3));
}

#[test]
fn verify_reports_unreadable_and_empty_files() {
    let dir = temp_dir("empty");
    let empty = dir.join("empty.jsonl");
    fs::write(&empty, b"").expect("write");
    assert_eq!(verify_file(&empty), Ok(0));
    assert_eq!(verify_file(&dir.join("missing")).map_err(|e| e.line), Err(0));
    fs::write(&empty, b"not json\n").expect("write");
    let err = verify_file(&empty).expect_err("garbage");
    assert_eq!(err.line, 1);
    assert!(err.to_string().starts_with("line 1: not a valid audit record"), "{err}");
}

#[tokio::test]
async fn a_second_writer_is_refused_while_the_first_holds_the_file() {
    let path = temp_dir("lock").join("audit.jsonl");
    let first = AuditLog::open(&path, GW).await.expect("open");
    first.record(event("api_call", "a"));
    let err = AuditLog::open(&path, GW).await.expect_err("the file is held");
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("another imgate holds it"), "{msg}");
    // Readers take no lock.
    first.flush().await;
    assert_eq!(verify_file(&path), Ok(1));
    first.record(event("api_call", "b"));
    first.close().await;
    assert_eq!(first.unwritten(), 0);
    // Once closed, the next writer continues the same chain.
    let second = AuditLog::open(&path, GW).await.expect("released by close");
    assert_eq!(second.head().seq, 2);
    second.record(event("api_call", "c"));
    second.close().await;
    assert_eq!(verify_file(&path), Ok(3));
    // A record through a stale handle after close is counted, not appended without the lock.
    first.record(event("api_call", "late"));
    first.flush().await;
    assert_eq!(first.unwritten(), 1);
    assert_eq!(verify_file(&path), Ok(3));
}

#[tokio::test]
async fn head_is_the_last_record_written_and_feeds_the_gauge() {
    let path = temp_dir("head").join("audit.jsonl");
    let log = AuditLog::open(&path, GW).await.expect("open");
    assert_eq!(log.head(), AuditHead { seq: 0, hash: record::GENESIS.into() });
    let gauge = prometheus_client::metrics::gauge::Gauge::default();
    log.export_head_seq(gauge.clone());
    for i in 0..3 {
        log.record(event("api_call", &format!("u{i}")));
    }
    log.flush().await;
    let last = parse(lines(&path).last().expect("a line"));
    let head = log.head();
    assert_eq!((head.seq, head.hash.as_str()), (3, last["hash"].as_str().expect("hash")));
    assert_eq!(gauge.get(), 3);
    log.close().await;
    // A reopened log starts from the file's head, and says so at once.
    let log = AuditLog::open(&path, GW).await.expect("reopen");
    let gauge = prometheus_client::metrics::gauge::Gauge::default();
    log.export_head_seq(gauge.clone());
    assert_eq!((log.head(), gauge.get()), (head, 3));
    log.close().await;

    let memory = AuditLog::memory();
    let gauge = prometheus_client::metrics::gauge::Gauge::default();
    memory.export_head_seq(gauge.clone());
    memory.record(event("api_call", "m"));
    let rec = &memory.records()[0];
    assert_eq!(memory.head(), AuditHead { seq: 1, hash: rec["hash"].as_str().expect("hash").into() });
    assert_eq!(gauge.get(), 1);
}

#[tokio::test]
async fn a_head_anchor_detects_records_cut_off_the_end() {
    let path = file_with(5, "anchor").await;
    let all = lines(&path);
    let head_of = |i: usize| {
        let r = parse(&all[i]);
        AuditHead { seq: r["seq"].as_u64().expect("seq"), hash: r["hash"].as_str().expect("hash").into() }
    };
    let head4 = head_of(3);
    // The anchored record is there; records after it are the chain going on.
    assert_eq!(verify_file_with_head(&path, Some(&head4)), Ok(5));
    assert_eq!(verify_file_with_head(&path, Some(&head_of(4))), Ok(5));
    assert_eq!(verify_file_with_head(&path, Some(&AuditHead { seq: 0, hash: record::GENESIS.into() })), Ok(5));

    // The last two lines removed: still a valid chain on its own, but not the anchored one.
    fs::write(&path, all[..3].join("\n") + "\n").expect("write");
    assert_eq!(verify_file(&path), Ok(3));
    let err = verify_file_with_head(&path, Some(&head4)).expect_err("truncated");
    assert_eq!(err.line, 4, "{err}");
    assert!(err.reason.contains("truncated") && err.reason.contains("seq 3") && err.reason.contains("seq 4"), "{err}");

    // The same seq with another hash: the file was rewritten up to it.
    let forged = AuditHead { seq: 2, hash: "0".repeat(63) + "1" };
    let err = verify_file_with_head(&path, Some(&forged)).expect_err("other hash");
    assert_eq!(err.line, 2, "{err}");
    assert!(err.reason.contains("head anchor"), "{err}");
    let err = verify_file_with_head(&path, Some(&AuditHead { seq: 0, hash: forged.hash })).expect_err("seq 0");
    assert_eq!(err.line, 0, "{err}");
}

#[test]
fn heads_parse_from_seq_colon_hash() {
    let hash = "AB".repeat(32);
    let head: AuditHead = format!("12:{hash}").parse().expect("parses");
    assert_eq!(head, AuditHead { seq: 12, hash: hash.to_ascii_lowercase() });
    assert_eq!(head.to_string(), format!("12:{}", hash.to_ascii_lowercase()));
    assert_eq!(
        serde_json::to_value(&head).expect("json"),
        serde_json::json!({"seq": 12, "hash": hash.to_ascii_lowercase()})
    );
    for bad in
        ["", "12", ":ab", "-1:ab", &format!("x:{hash}"), "12:abc", &format!("12:{hash}0"), &format!("12: {hash}")]
    {
        assert!(bad.parse::<AuditHead>().is_err(), "{bad:?}");
    }
}

/// A [`ToggleSink`] that also notes how many records each `append` carried (one `append` is
/// one `write` of the file sink).
struct CountingSink {
    inner: ToggleSink,
    appends: Arc<Mutex<Vec<usize>>>,
}

impl Sink for CountingSink {
    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        self.appends.lock().expect("appends").push(line.iter().filter(|b| **b == b'\n').count());
        self.inner.append(line)
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn waiting_events_are_written_in_one_append_and_a_failed_batch_leaves_the_chain_whole() {
    let full = Arc::new(AtomicBool::new(true));
    let data = Arc::new(Mutex::new(Vec::new()));
    let appends = Arc::new(Mutex::new(Vec::new()));
    let sink = CountingSink { inner: ToggleSink { full: full.clone(), data: data.clone() }, appends: appends.clone() };
    // The writer is not started yet: the events wait in the channel and make one batch.
    let (log, writer) = AuditLog::channel(Box::new(sink), Chain::genesis(), GW.into(), 64);
    for i in 0..3 {
        log.record(event("api_call", &format!("lost{i}")));
    }
    writer.spawn().expect("spawn");
    log.flush().await;
    assert_eq!(log.unwritten(), 3, "a failed batch loses all of its events, and says so");
    // The three waiting events went in one append (the later ones are the failed loss reports).
    assert_eq!(appends.lock().expect("appends").first(), Some(&3), "{appends:?}");
    assert!(data.lock().expect("data").is_empty(), "nothing partial reaches the file");

    full.store(false, Ordering::SeqCst);
    log.record(event("api_call", "after"));
    log.flush().await;
    let path = temp_dir("batch").join("audit.jsonl");
    fs::write(&path, data.lock().expect("data").as_slice()).expect("write");
    assert_eq!(verify_file(&path), Ok(2), "the chain continues from before the failed batch");
    let all = lines(&path);
    assert_eq!(parse(&all[0])["detail"]["unwritten"], 3);
    assert_eq!(parse(&all[1])["user"], "after");
}

#[tokio::test]
async fn a_durable_record_behind_waiting_events_is_written_after_them() {
    let path = temp_dir("batchorder").join("audit.jsonl");
    let (file, chain, len) = writer::open_file(&path, GW).expect("open");
    let (log, writer) = AuditLog::channel(Box::new(FileSink::new(file, len)), chain, GW.into(), 64);
    for i in 0..4 {
        log.record(event("api_call", &format!("u{i}")));
    }
    let durable = {
        let log = log.clone();
        tokio::spawn(async move { log.record_durable(event("admin_action", "ops")).await })
    };
    // The durable record is in the channel behind the four events once the task has sent it.
    while log.queued() < 5 {
        tokio::task::yield_now().await;
    }
    writer.spawn().expect("spawn");
    durable.await.expect("join").expect("durable record written");
    log.flush().await;
    assert_eq!(verify_file(&path), Ok(5));
    let kinds: Vec<String> = lines(&path).iter().map(|l| parse(l)["kind"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(kinds, ["api_call", "api_call", "api_call", "api_call", "admin_action"]);
}

/// Two records in the format from before instance ids, hashed by hand (Python's hashlib over the
/// canonical body the module documentation describes), not by this crate: what an old gateway
/// left on disk.
const OLD_FORMAT: &str = concat!(
    r#"{"seq":1,"ts":1700000000000,"prev":"0000000000000000000000000000000000000000000000000000000000000000","kind":"api_call","request_id":"req-1","user":"alice","route":"/v1/me","method":"GET","operation_ids":["req-1-1"],"outcome":"ok","status":200,"latency_ms":1.25,"reason":null,"detail":{},"hash":"8fa6334b7c256fba7cfb0e8ebcd6fbcadc30e7e56db72fb9581d7ec9142e0ae5"}"#,
    "\n",
    r#"{"seq":2,"ts":1700000000001,"prev":"8fa6334b7c256fba7cfb0e8ebcd6fbcadc30e7e56db72fb9581d7ec9142e0ae5","kind":"api_call","request_id":"req-2","user":"bob","route":"/v1/me","method":"GET","operation_ids":["req-2-1"],"outcome":"ok","status":200,"latency_ms":1.25,"reason":null,"detail":{},"hash":"3c0a6a021e49ba4a90688817e6a39013ab62071a05fec130210823d57013a931"}"#,
    "\n",
);

fn old_format_file(name: &str) -> PathBuf {
    let path = temp_dir(name).join("audit.jsonl");
    fs::write(&path, OLD_FORMAT).expect("write");
    path
}

#[tokio::test]
async fn records_carry_their_instance_right_after_ts() {
    let path = temp_dir("instance").join("audit.jsonl");
    let log = AuditLog::open(&path, "gw-a").await.expect("open");
    log.record(event("api_call", "u"));
    log.record_durable(event("admin_action", "ops")).await.expect("durable");
    log.close().await;
    for line in lines(&path) {
        let rec = parse(&line);
        assert_eq!(rec["instance"], "gw-a", "{line}");
        let ts = rec["ts"].as_u64().expect("ts");
        assert!(line.contains(&format!(r#","ts":{ts},"instance":"gw-a","prev":""#)), "{line}");
    }
    let (summary, result) = verify_chain(&path, None);
    assert_eq!(result, Ok(()));
    assert_eq!((summary.records, summary.instances, summary.without_instance), (2, vec!["gw-a".to_owned()], 0));

    let memory = AuditLog::memory();
    memory.record(event("api_call", "m"));
    assert_eq!(memory.records()[0]["instance"], DEFAULT_INSTANCE);
    let named = AuditLog::memory_as("gw-m");
    named.record(event("api_call", "m"));
    assert_eq!(named.records()[0]["instance"], "gw-m");
}

#[tokio::test]
async fn an_edited_or_removed_instance_fails_at_its_line() {
    let path = file_with(3, "editinstance").await;
    let original = lines(&path);
    let needle = format!(r#""instance":"{GW}","#);
    assert!(original[1].contains(&needle), "{}", original[1]);
    for (forged, what) in [
        (original[1].replace(&needle, r#""instance":"gw-other","#), "renamed"),
        (original[1].replace(&needle, ""), "removed"),
        (original[1].replace(&needle, r#""instance":null,"#), "null"),
    ] {
        let mut all = original.clone();
        all[1] = forged;
        fs::write(&path, all.join("\n") + "\n").expect("write");
        let err = verify_file(&path).expect_err(what);
        assert_eq!(err.line, 2, "{what}: {err}");
        assert!(err.reason.contains("modified"), "{what}: {err}");
    }
}

#[test]
fn old_format_lines_still_verify() {
    let path = old_format_file("oldformat");
    assert_eq!(verify_file(&path), Ok(2));
    let (summary, result) = verify_chain(&path, None);
    assert_eq!(result, Ok(()));
    assert!(summary.instances.is_empty(), "{summary:?}");
    assert_eq!(summary.without_instance, 2);
    // They are still hash-checked: an edit is found as before.
    let edited = OLD_FORMAT.replace(r#""user":"bob""#, r#""user":"eve""#);
    fs::write(&path, edited).expect("write");
    assert_eq!(verify_file(&path).map_err(|e| e.line), Err(2));
    // `"instance":null` is not the old format: absent means absent.
    let null = OLD_FORMAT.replacen(r#""ts":1700000000000,"#, r#""ts":1700000000000,"instance":null,"#, 1);
    fs::write(&path, null).expect("write");
    let err = verify_file(&path).expect_err("explicit null");
    assert_eq!(err.line, 1, "{err}");
    assert!(err.reason.contains("canonical") && err.reason.contains("seq 1"), "{err}");
}

#[tokio::test]
async fn an_old_file_is_continued_with_instance_records_and_the_mixed_file_verifies() {
    let path = old_format_file("mixed");
    let log = AuditLog::open(&path, "gw-a").await.expect("an upgraded gateway opens an old file");
    assert_eq!(log.head().seq, 2);
    log.record(event("api_call", "new1"));
    log.record(event("api_call", "new2"));
    log.close().await;
    assert_eq!(verify_file(&path), Ok(4));
    let all = lines(&path);
    assert_eq!(all[..2].join("\n") + "\n", OLD_FORMAT, "old lines are left as they were");
    assert!(all[..2].iter().all(|l| !l.contains("\"instance\"")));
    assert!(all[2..].iter().all(|l| parse(l)["instance"] == "gw-a"));
    let (summary, result) = verify_chain(&path, None);
    assert_eq!(result, Ok(()));
    assert_eq!((summary.records, summary.without_instance), (4, 2));
    assert_eq!(summary.instances, ["gw-a"]);
}

#[test]
fn a_record_without_instance_after_one_with_it_fails() {
    let first = record::seal(1, 1, Some("gw-a"), record::GENESIS, &event("api_call", "a")).expect("seal");
    let second = record::seal(2, 2, None, &first.hash, &event("api_call", "b")).expect("seal");
    let path = temp_dir("downgrade").join("audit.jsonl");
    fs::write(&path, format!("{}\n{}\n", first.line, second.line)).expect("write");
    let (summary, result) = verify_chain(&path, None);
    let err = result.expect_err("an old-format record after a new one");
    assert_eq!(err.line, 2, "{err}");
    assert!(err.reason.contains("no instance") && err.reason.contains("line 1"), "{err}");
    assert_eq!((summary.records, summary.instances), (1, vec!["gw-a".to_owned()]));
}

/// The decision for a file whose last record has another instance id: continued (a host name
/// changes with every container restart), and the change of id is visible in the chain.
#[tokio::test]
async fn a_file_last_written_by_another_instance_is_continued_and_lists_both() {
    let path = file_with(2, "rename").await;
    let log = AuditLog::open(&path, "gw-renamed").await.expect("continued under the new id");
    assert_eq!(log.head().seq, 2);
    log.record(event("api_call", "after"));
    log.close().await;
    let (summary, result) = verify_chain(&path, None);
    assert_eq!(result, Ok(()));
    assert_eq!(summary.records, 3);
    assert_eq!(summary.instances, [GW, "gw-renamed"]);
    assert_eq!(parse(&lines(&path)[2])["instance"], "gw-renamed");
}
