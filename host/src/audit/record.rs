//! The record line format and its hash chain, in one place so the writer and the verifier cannot
//! disagree about what a record's canonical bytes are.
//!
//! A record is serialized by [`Canonical`], a struct whose field order *is* the key order of the
//! line; `detail` objects are written with their keys sorted (recursively), so the bytes do not
//! depend on how a `serde_json::Map` happens to order keys. The hash covers the record serialized
//! without its `hash` key; the line on disk is the same serialization with `"hash"` appended last.
//!
//! `instance` (the id of the imgate that wrote the record) is written right after `ts` and is
//! covered by the hash. Records written before instance ids existed have no `instance` key: they
//! are read, hashed and checked without it, so files from before the upgrade still verify and
//! are continued; every record written now has one.

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::AuditEvent;

/// `prev` of the first record: 64 zeros.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The canonical serialization of one record; field order here is the key order on disk.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: u64,
    ts: u64,
    /// Absent only in records written before instance ids (see the module documentation).
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
    prev: &'a str,
    kind: &'a str,
    request_id: &'a Option<String>,
    user: &'a Option<String>,
    route: &'a Option<String>,
    method: &'a Option<String>,
    operation_ids: &'a [String],
    outcome: &'a str,
    status: Option<u16>,
    latency_ms: Option<f64>,
    reason: &'a Option<String>,
    detail: SortedMap<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash: Option<&'a str>,
}

/// A record as read back from a line (any key order; the canonical check compares bytes).
#[derive(Deserialize)]
struct Stored {
    seq: u64,
    ts: u64,
    /// `None` for a record without the key (the old format). An explicit `null` also reads as
    /// `None`, but the canonical check then fails: `null` is never written.
    #[serde(default)]
    instance: Option<String>,
    prev: String,
    #[serde(flatten)]
    event: AuditEvent,
    hash: String,
}

/// Serializes a JSON object with its keys in byte order, recursively.
struct SortedMap<'a>(&'a Map<String, Value>);
struct SortedValue<'a>(&'a Value);

impl Serialize for SortedMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&String, &Value)> = self.0.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut map = s.serialize_map(Some(entries.len()))?;
        for (k, v) in entries {
            map.serialize_entry(k, &SortedValue(v))?;
        }
        map.end()
    }
}

impl Serialize for SortedValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(m) => SortedMap(m).serialize(s),
            Value::Array(items) => s.collect_seq(items.iter().map(SortedValue)),
            other => other.serialize(s),
        }
    }
}

/// One record ready to append: its line (without the newline) and its hash.
pub(crate) struct Sealed {
    pub seq: u64,
    pub hash: String,
    pub line: String,
}

/// Serializes `event` as record `seq` written by `instance` (`None`: the old format), with
/// `hash` appended if given.
fn serialize(
    seq: u64,
    ts: u64,
    instance: Option<&str>,
    prev: &str,
    event: &AuditEvent,
    hash: Option<&str>,
) -> Result<String, serde_json::Error> {
    let canonical = Canonical {
        seq,
        ts,
        instance,
        prev,
        kind: &event.kind,
        request_id: &event.request_id,
        user: &event.user,
        route: &event.route,
        method: &event.method,
        operation_ids: &event.operation_ids,
        outcome: &event.outcome,
        status: event.status,
        // serde_json would write NaN/inf as null, which reads back differently; drop them first.
        latency_ms: event.latency_ms.filter(|l| l.is_finite()),
        reason: &event.reason,
        detail: SortedMap(&event.detail),
        hash,
    };
    serde_json::to_string(&canonical)
}

/// Lowercase hex SHA-256.
fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Seals `event` as record `seq` written by `instance` following `prev`: computes its hash and
/// its line. (`instance` is `None` only to build old-format records in tests.)
pub(crate) fn seal(
    seq: u64,
    ts: u64,
    instance: Option<&str>,
    prev: &str,
    event: &AuditEvent,
) -> Result<Sealed, serde_json::Error> {
    let mut line = serialize(seq, ts, instance, prev, event, None)?;
    let hash = sha256_hex(line.as_bytes());
    // The line is the hashed body with `hash` as its last key: what `serialize(.., Some(hash))`
    // writes, without serializing the record a second time (checked by the tests).
    line.pop(); // the closing `}`
    line.push_str(",\"hash\":\"");
    line.push_str(&hash);
    line.push_str("\"}");
    Ok(Sealed { seq, hash, line })
}

/// What a line that checked out on its own says about the chain.
#[derive(Debug)]
pub(crate) struct Checked {
    pub seq: u64,
    /// The instance that wrote the record; `None` for a record from before instance ids.
    pub instance: Option<String>,
    pub prev: String,
    pub hash: String,
}

/// Checks one line on its own (without its neighbours): it is a record, its hash is the hash of
/// its content, and it is byte-for-byte canonical (no added, missing, reordered or respaced keys).
pub(crate) fn check_line(line: &str) -> Result<Checked, String> {
    let stored: Stored = serde_json::from_str(line).map_err(|e| format!("not a valid audit record: {e}"))?;
    let instance = stored.instance.as_deref();
    let body = serialize(stored.seq, stored.ts, instance, &stored.prev, &stored.event, None)
        .map_err(|e| format!("cannot re-serialize record: {e}"))?;
    let recomputed = sha256_hex(body.as_bytes());
    if recomputed != stored.hash {
        return Err(format!("record seq {} was modified: its hash does not match its content", stored.seq));
    }
    let canonical = serialize(stored.seq, stored.ts, instance, &stored.prev, &stored.event, Some(&stored.hash))
        .map_err(|e| format!("cannot re-serialize record: {e}"))?;
    if canonical != line {
        return Err(format!(
            "record seq {} was modified: it is not in canonical form (keys added, removed, reordered or reformatted)",
            stored.seq
        ));
    }
    Ok(Checked { seq: stored.seq, instance: stored.instance, prev: stored.prev, hash: stored.hash })
}

/// The chain's head: the last record written (seq 0 and [`GENESIS`] before the first).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chain {
    pub seq: u64,
    pub hash: String,
}

impl Chain {
    pub(crate) fn genesis() -> Chain {
        Chain { seq: 0, hash: GENESIS.to_owned() }
    }

    /// Seals `event` as the next record, written by `instance`; the head moves only when
    /// [`Chain::advance`] is called (after the line was written), so a failed write does not
    /// leave a gap in `seq`.
    pub(crate) fn next(&self, instance: &str, event: &AuditEvent, ts: u64) -> Result<Sealed, serde_json::Error> {
        seal(self.seq + 1, ts, Some(instance), &self.hash, event)
    }

    pub(crate) fn advance(&mut self, sealed: &Sealed) {
        self.seq = sealed.seq;
        self.hash.clone_from(&sealed.hash);
    }
}

/// Unix time in milliseconds (0 if the clock is before 1970).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_line_is_the_canonical_serialization_with_its_hash() {
        let mut event = AuditEvent {
            kind: "api_call".into(),
            request_id: Some("r-1".into()),
            user: Some("ünïcode \"quoted\" \\ user".into()),
            route: None,
            operation_ids: vec!["r-1-1".into(), "r-1-2".into()],
            outcome: "ok".into(),
            status: Some(200),
            latency_ms: Some(f64::NAN),
            reason: Some("line\nbreak".into()),
            ..AuditEvent::default()
        };
        event.detail.insert("z".into(), serde_json::json!({"b": 1, "a": [2, {"d": 3, "c": 4}]}));
        event.detail.insert("a".into(), serde_json::json!(null));
        for instance in [Some("gw-a"), None] {
            let sealed = seal(7, 1_700_000_000_000, instance, GENESIS, &event).expect("seal");
            let body = serialize(7, 1_700_000_000_000, instance, GENESIS, &event, None).expect("body");
            assert_eq!(sealed.hash, sha256_hex(body.as_bytes()));
            let twice = serialize(7, 1_700_000_000_000, instance, GENESIS, &event, Some(&sealed.hash)).expect("line");
            assert_eq!(sealed.line, twice);
            assert_eq!(check_line(&sealed.line).expect("checks").instance.as_deref(), instance);
        }
    }
}
