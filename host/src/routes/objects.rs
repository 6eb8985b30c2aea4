//! Object-level authorization shared by both surfaces: which conversations a caller may name,
//! which messages and user fields an answer may carry back.
//!
//! OpenIM checks who a request is *for* (its `userID`), rarely which *objects* it names
//! (contract §10.5, §10.8b): a conversation id adopted with `set_conversations` is then served to
//! the adopter by `pull_msg_by_seq`, and `get_users_info` answers anyone's private fields. And a
//! single-chat conversation id, `si_` + the two sorted user ids joined by `_`, is ambiguous when
//! ids contain `_` (contract §8.3): users `a` + `b_c` and `a_b` + `c` share `si_a_b_c`. So a
//! conversation id is never trusted as a statement of who is in it: named conversations are
//! checked against the caller, and the messages an answer carries are filtered by their actual
//! sender and recipient.

use serde_json::Value;

/// What a conversation id names, as far as the caller's rights go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation<'a> {
    /// A single chat (`si_` or notification chat `sn_`) in which the caller can be one side.
    Single,
    /// A group's conversation (`sg_<group>`): the caller must be a member.
    Group(&'a str),
    /// Not the caller's: refused.
    Foreign,
}

/// Classifies a conversation id for `caller`. Single-chat ids are only a pre-filter here (the
/// caller is one side under *some* split at `_`): answers are filtered by [`retain_own_messages`].
/// `n_<id>` (the notification twin of a conversation) is classified as `<id>`.
pub fn classify<'a>(caller: &str, cid: &'a str) -> Conversation<'a> {
    let cid = cid.strip_prefix("n_").unwrap_or(cid);
    // Only well-formed ids are anyone's: OpenIM matches some conversation ids as a regular
    // expression (`^<id>:`, `mgo/msg.go:1006-1014`), so `si_.*_alice` would name many chats.
    if let Some(g) = cid.strip_prefix("sg_") {
        return if crate::ids::is_group_id(g) { Conversation::Group(g) } else { Conversation::Foreign };
    }
    let Some(pair) = cid.strip_prefix("si_").or_else(|| cid.strip_prefix("sn_")) else {
        return Conversation::Foreign;
    };
    let mine = pair.match_indices('_').any(|(i, _)| {
        let (a, b) = (&pair[..i], &pair[i + 1..]);
        crate::ids::is_user_id(a) && crate::ids::is_user_id(b) && (a == caller || b == caller)
    });
    if mine {
        Conversation::Single
    } else {
        Conversation::Foreign
    }
}

/// OpenIM's single-chat conversation id of two users (contract §5.6: the two ids sorted).
pub fn single_conversation_id(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("si_{x}_{y}")
}

/// Whether another pair of user ids yields the same single-chat conversation id as `a` + `b`
/// (possible only when an id contains `_`). A send into such a conversation would land in the
/// other pair's history too, so sends are refused; reads are filtered by message instead.
pub fn ambiguous_pair(a: &str, b: &str) -> bool {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    let joined = format!("{x}_{y}");
    joined.match_indices('_').any(|(i, _)| {
        let (p, q) = (&joined[..i], &joined[i + 1..]);
        (p, q) != (x, y) && !p.is_empty() && !q.is_empty() && p <= q
    })
}

/// Keeps, in a `pull_msg_by_seq` answer (`data`), only the messages the caller may see: in a
/// single chat, messages the caller sent or received (with `peer`, when the route knows it); in
/// a group conversation, messages of that group. Returns how many were dropped.
pub fn retain_own_messages(data: &mut Value, caller: &str, peer: Option<&str>) -> usize {
    let mut dropped = 0;
    for key in ["msgs", "notificationMsgs"] {
        let Some(convs) = data.get_mut(key).and_then(Value::as_object_mut) else { continue };
        for (cid, pulled) in convs.iter_mut() {
            let Some(msgs) = pulled.get_mut("Msgs").and_then(Value::as_array_mut) else { continue };
            let before = msgs.len();
            msgs.retain(|m| message_visible(m, cid, caller, peer));
            dropped += before - msgs.len();
        }
    }
    dropped
}

fn message_visible(m: &Value, cid: &str, caller: &str, peer: Option<&str>) -> bool {
    let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
    let (send, recv) = (field("sendID"), field("recvID"));
    match classify(caller, cid) {
        Conversation::Group(g) => field("groupID") == g,
        Conversation::Single => match peer {
            Some(p) => (send == caller && recv == p) || (send == p && recv == caller),
            None => send == caller || recv == caller,
        },
        Conversation::Foreign => false,
    }
}

/// OpenIM `UserInfo` fields that are nobody else's business (contract §10.6), with the zero
/// value they are replaced by in answers about users other than the caller, on both surfaces
/// (`/v1/users/lookup` never maps them). Numbers are 0, `ex` is "".
const PRIVATE_USER_FIELDS: [&str; 3] = ["ex", "appMangerLevel", "globalRecvMsgOpt"];

fn zero_of(field: &str) -> Value {
    if field == "ex" {
        Value::from("")
    } else {
        Value::from(0)
    }
}

/// Walks an answer and zeroes the private fields of every user record (`UserInfo`: an object
/// with `userID` and `globalRecvMsgOpt`) that is not the caller's, keeping the answer's shape for
/// SDKs. Group-member records keep their group-level `ex` but lose `appMangerLevel`. Returns how
/// many records were changed.
pub fn redact_other_users(v: &mut Value, caller: &str) -> usize {
    match v {
        Value::Array(items) => items.iter_mut().map(|i| redact_other_users(i, caller)).sum(),
        Value::Object(m) => {
            let mut n: usize = m.values_mut().map(|i| redact_other_users(i, caller)).sum();
            let other = m.get("userID").and_then(Value::as_str).is_some_and(|u| u != caller);
            let is_user = m.contains_key("globalRecvMsgOpt");
            let is_member = m.contains_key("roleLevel");
            if other && (is_user || (is_member && m.contains_key("appMangerLevel"))) {
                for k in PRIVATE_USER_FIELDS {
                    if m.contains_key(k) && (is_user || k == "appMangerLevel") {
                        m.insert(k.to_owned(), zero_of(k));
                    }
                }
                n += 1;
            }
            n
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conversations_are_classified_for_the_caller() {
        assert_eq!(classify("a", "si_a_b"), Conversation::Single);
        assert_eq!(classify("b", "si_a_b"), Conversation::Single);
        assert_eq!(classify("c", "si_a_b"), Conversation::Foreign);
        assert_eq!(classify("a_b", "si_a_b_c"), Conversation::Single);
        assert_eq!(classify("a", "si_a_b_c"), Conversation::Single, "a pre-filter only: answers are filtered");
        assert_eq!(classify("x", "sg_g1"), Conversation::Group("g1"));
        assert_eq!(classify("x", "n_sg_g1"), Conversation::Group("g1"));
        assert_eq!(classify("x", "sg_"), Conversation::Foreign);
        assert_eq!(classify("a", "si_a_"), Conversation::Foreign);
        assert_eq!(classify("a", "g_x"), Conversation::Foreign);
        // Ids OpenIM would read as a regular expression are nobody's.
        assert_eq!(classify("alice", "si_.*_alice"), Conversation::Foreign);
        assert_eq!(classify("x", "sg_.*"), Conversation::Foreign);
        assert_eq!(classify("x", "sg_1|2"), Conversation::Foreign);
    }

    #[test]
    fn ambiguity_is_found_only_where_another_pair_yields_the_id() {
        assert!(ambiguous_pair("a", "b_c"), "a_b + c shares si_a_b_c");
        assert!(ambiguous_pair("a_b", "c"));
        assert!(!ambiguous_pair("alice", "bob"));
        assert!(!ambiguous_pair("alice_1", "bob"), "alice + 1_bob sorts as si_1_bob_alice");
        assert_eq!(single_conversation_id("b", "a"), "si_a_b");
    }

    #[test]
    fn pulled_messages_are_filtered_by_their_real_parties() {
        let mut data = json!({"msgs": {
            "si_a_b_c": {"Msgs": [
                {"sendID": "a_b", "recvID": "c", "seq": 1},
                {"sendID": "a", "recvID": "b_c", "seq": 2},
            ], "isEnd": true},
            "sg_g": {"Msgs": [{"sendID": "x", "groupID": "g", "seq": 1}, {"sendID": "x", "groupID": "h", "seq": 2}]},
        }});
        assert_eq!(retain_own_messages(&mut data, "a", Some("b_c")), 2);
        assert_eq!(data["msgs"]["si_a_b_c"]["Msgs"], json!([{"sendID": "a", "recvID": "b_c", "seq": 2}]));
        assert_eq!(data["msgs"]["sg_g"]["Msgs"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn other_users_private_fields_are_zeroed() {
        let mut v = json!({"usersInfo": [
            {"userID": "me", "ex": "mine", "appMangerLevel": 1, "globalRecvMsgOpt": 2, "nickname": "M"},
            {"userID": "you", "ex": "secret", "appMangerLevel": 2, "globalRecvMsgOpt": 1, "nickname": "Y"},
        ], "members": [{"userID": "you", "roleLevel": 20, "ex": "group note", "appMangerLevel": 2}]});
        assert_eq!(redact_other_users(&mut v, "me"), 2);
        assert_eq!(v["usersInfo"][0]["ex"], "mine");
        assert_eq!(
            v["usersInfo"][1],
            json!({"userID": "you", "ex": "", "appMangerLevel": 0, "globalRecvMsgOpt": 0, "nickname": "Y"})
        );
        assert_eq!(v["members"][0]["ex"], "group note");
        assert_eq!(v["members"][0]["appMangerLevel"], 0);
    }
}
