//! OpenIM's version logs, the change journal behind the incremental-sync routes
//! (`get_incremental_friends`, `get_incremental_join_groups`, `get_incremental_group_members*`,
//! `get_incremental_conversations`) and the `version`/`versionID` of the `get_full_*` routes.
//!
//! OpenIM keeps one MongoDB document per owner ID (`S pkg/common/storage/database/mgo/
//! version_log.go`): an ObjectID (`versionID`), a counter (`version`, 1 when the document is
//! created) and, per element ID, only its latest change `(state, version)`. Every write bumps the
//! counter by one and re-stamps the written IDs (`writeLogBatch2`), so "everything that changed
//! after version v" is the set of elements stamped > v. A client that sends a `versionID` other
//! than the document's (e.g. the document was deleted and recreated) gets `full: true`. Two
//! pseudo-IDs carry no element: [`SORT_CHANGE_ID`] (an order-relevant field changed: isPinned,
//! roleLevel) and [`GROUP_CHANGE_ID`] (the group's own info changed, member logs only).
//!
//! [`VersionLogs::sync`] is `incrversion.Option.Build` (`S internal/rpc/incrversion/option.go:
//! 78-153`) with a cached max version, which all four routes use. Simplifications, all invisible
//! through the API: the `deleted` watermark is omitted (nothing at this commit raises it above 0)
//! and old documents are never garbage-collected.

use std::collections::HashMap;

use crate::state::now_ms;

/// `model.VersionStateInsert`.
pub const STATE_INSERT: i32 = 1;
/// `model.VersionStateDelete`.
pub const STATE_DELETE: i32 = 2;
/// `model.VersionStateUpdate`.
pub const STATE_UPDATE: i32 = 3;
/// `model.VersionSortChangeID`: the order of the elements changed.
pub const SORT_CHANGE_ID: &str = "____S_O_R_T_I_D____";
/// `model.VersionGroupChangeID`: the group's own info changed (group member logs only).
pub const GROUP_CHANGE_ID: &str = "";
/// `incrversion.syncLimit`: more changes than this since the client's version ⇒ full sync.
const SYNC_LIMIT: usize = 200;

/// The latest change of one element.
#[derive(Clone, Debug)]
struct Elem {
    e_id: String,
    state: i32,
    version: u64,
}

/// One owner's log document.
#[derive(Clone, Debug)]
struct Doc {
    id: String,
    version: u64,
    logs: Vec<Elem>,
}

impl Doc {
    /// `initDoc`: a fresh ObjectID at version 1 (`database.FirstVersion`).
    fn new() -> Doc {
        Doc { id: object_id(), version: 1, logs: Vec::new() }
    }
}

/// A MongoDB ObjectID in hex: 4 bytes of Unix seconds, then 8 random bytes.
fn object_id() -> String {
    format!("{:08x}{:016x}", (now_ms() / 1000) as u32, rand::random::<u64>())
}

/// `primitive.ObjectIDFromHex(id)` succeeds and the ID is not all zeroes.
fn is_object_id(id: &str) -> bool {
    id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id.bytes().any(|b| b != b'0')
}

/// What an incremental route answers, before the element IDs are turned into records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sync {
    pub version_id: String,
    pub version: u64,
    pub full: bool,
    pub insert: Vec<String>,
    pub delete: Vec<String>,
    pub update: Vec<String>,
    /// Version of the last [`SORT_CHANGE_ID`] stamp among the changes (0 if none or not queried).
    pub sort_version: u64,
    /// The group member route's `hasGroupUpdate`: [`GROUP_CHANGE_ID`] or any member changed.
    pub group_changed: bool,
}

/// All documents of one collection (friends, joined groups, group members or conversations).
#[derive(Default)]
pub struct VersionLogs {
    docs: HashMap<String, Doc>,
}

impl VersionLogs {
    /// `IncrVersion(dId, eIds, state)`: one new version stamping every ID (creating the
    /// document at version 1 when absent). OpenIM rejects an empty ID list; callers never pass one.
    pub fn incr<S: AsRef<str>>(&mut self, d_id: &str, e_ids: &[S], state: i32) {
        if e_ids.is_empty() {
            return;
        }
        let stamp = |e: &S, version| Elem { e_id: e.as_ref().to_string(), state, version };
        match self.docs.get_mut(d_id) {
            Some(doc) => {
                doc.version += 1;
                doc.logs.retain(|l| !e_ids.iter().any(|e| e.as_ref() == l.e_id));
                let v = doc.version;
                doc.logs.extend(e_ids.iter().map(|e| stamp(e, v)));
            }
            None => {
                let mut doc = Doc::new();
                doc.logs = e_ids.iter().map(|e| stamp(e, 1)).collect();
                self.docs.insert(d_id.to_string(), doc);
            }
        }
    }

    /// `VersionLog.Delete(dId)`: drop the document; the next read creates a new one (new ID).
    pub fn delete(&mut self, d_id: &str) {
        self.docs.remove(d_id);
    }

    /// `FindMaxVersionCache` / `FindChangeLog(dId, 0, 0)`: `(versionID, version)`, creating an
    /// empty document when there is none.
    pub fn max(&mut self, d_id: &str) -> (String, u64) {
        let doc = self.docs.entry(d_id.to_string()).or_insert_with(Doc::new);
        (doc.id.clone(), doc.version)
    }

    /// `Option.Build` for a client at `(version_id, version)`.
    pub fn sync(&mut self, d_id: &str, version_id: &str, version: u64) -> Sync {
        let (id, current) = self.max(d_id);
        let mut out = Sync { version_id: id.clone(), version: current, ..Default::default() };
        if !(is_object_id(version_id) && version > 0) || version_id != id {
            out.full = true;
            return out;
        }
        if version == current {
            return out;
        }
        // findChangeLog(dId, version, syncLimit): the elements stamped after `version`, or none
        // (but still counted) when there are more than the limit.
        let doc = self.docs.entry(d_id.to_string()).or_insert_with(Doc::new);
        let mut logs: Vec<Elem> = if doc.version < version {
            Vec::new()
        } else {
            doc.logs.iter().filter(|l| l.version > version).cloned().collect()
        };
        let mut log_len = logs.len();
        if log_len > SYNC_LIMIT {
            logs.clear();
        }
        // The routes' Version callbacks take the pseudo-IDs out of the list and the count.
        let mut had_group_change = false;
        logs.retain(|l| match l.e_id.as_str() {
            SORT_CHANGE_ID => {
                out.sort_version = l.version;
                log_len -= 1;
                false
            }
            GROUP_CHANGE_ID => {
                had_group_change = true;
                log_len -= 1;
                false
            }
            _ => true,
        });
        out.group_changed = had_group_change || log_len > 0;
        out.full = doc.id != version_id || doc.version < version || logs.len() != log_len;
        if !out.full {
            for l in logs {
                match l.state {
                    STATE_INSERT => out.insert.push(l.e_id),
                    STATE_DELETE => out.delete.push(l.e_id),
                    _ => out.update.push(l.e_id),
                }
            }
        }
        out
    }
}

/// `hashutil.IdHash`: the first 8 bytes (big-endian) of the md5 of the JSON array of IDs (Go's
/// `json.Marshal`, which escapes `<`, `>`, `&`, U+2028 and U+2029); 0 for an empty list.
pub fn id_hash(ids: &[String]) -> u64 {
    use md5::{Digest, Md5};
    if ids.is_empty() {
        return 0;
    }
    let json = serde_json::to_string(ids).unwrap_or_default();
    let go_json = json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    let sum = Md5::digest(go_json.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&sum[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_client_gets_a_full_sync_then_only_changes() {
        let mut v = VersionLogs::default();
        v.incr("u1", &["a", "b"], STATE_INSERT);
        let first = v.sync("u1", "", 0);
        assert!(first.full);
        assert_eq!(first.version, 1);
        v.incr("u1", &["c"], STATE_INSERT);
        v.incr("u1", &["a"], STATE_UPDATE);
        v.incr("u1", &["b"], STATE_DELETE);
        let next = v.sync("u1", &first.version_id, first.version);
        assert!(!next.full);
        assert_eq!(next.version, 4);
        assert_eq!(
            (next.insert, next.update, next.delete),
            (vec!["c".to_string()], vec!["a".into()], vec!["b".into()])
        );
        let same = v.sync("u1", &first.version_id, 4);
        assert!(!same.full && same.insert.is_empty() && same.update.is_empty());
    }

    #[test]
    fn an_element_keeps_only_its_latest_state() {
        let mut v = VersionLogs::default();
        let (id, _) = v.max("g");
        v.incr("g", &["x"], STATE_INSERT);
        v.incr("g", &["x"], STATE_DELETE);
        let s = v.sync("g", &id, 1);
        assert_eq!((s.insert.len(), s.delete), (0, vec!["x".to_string()]));
    }

    #[test]
    fn unknown_or_recreated_documents_force_full() {
        let mut v = VersionLogs::default();
        let (id, _) = v.max("u");
        v.incr("u", &["a"], STATE_INSERT);
        assert!(v.sync("u", "not-an-object-id", 1).full);
        assert!(v.sync("u", &id, 9).full, "client ahead of the server");
        v.delete("u");
        let s = v.sync("u", &id, 2);
        assert!(s.full);
        assert_ne!(s.version_id, id);
    }

    #[test]
    fn pseudo_ids_and_the_limit() {
        let mut v = VersionLogs::default();
        let (id, _) = v.max("g");
        v.incr("g", &[GROUP_CHANGE_ID], STATE_UPDATE);
        let s = v.sync("g", &id, 1);
        assert!(!s.full && s.group_changed && s.update.is_empty());
        v.incr("g", &[SORT_CHANGE_ID, "m"], STATE_UPDATE);
        let s = v.sync("g", &id, 2);
        assert_eq!((s.sort_version, s.update), (3, vec!["m".to_string()]));
        let many: Vec<String> = (0..=SYNC_LIMIT).map(|i| i.to_string()).collect();
        v.incr("g", &many, STATE_INSERT);
        assert!(v.sync("g", &id, 3).full);
    }

    #[test]
    fn id_hash_matches_go() {
        use md5::Digest;
        assert_eq!(id_hash(&[]), 0);
        let h = id_hash(&["a".to_string(), "b".to_string()]);
        assert_eq!(h.to_be_bytes(), md5::Md5::digest(br#"["a","b"]"#)[..8]);
        let h = id_hash(&["<&>".to_string()]);
        assert_eq!(h.to_be_bytes(), md5::Md5::digest(br#"["\u003c\u0026\u003e"]"#)[..8]);
    }
}
