//! OpenIM protobuf package `sdkws` (the messages imgate and the emulator read): field numbers
//! and types of `P sdkws/sdkws.proto` (protocol v0.0.73-alpha.18), written by hand with
//! `prost` derives so that no `protoc` is needed to build. Maps are `BTreeMap`s so that an
//! encoding is deterministic (Go's is not, and decoders do not care).

use std::collections::BTreeMap;

/// A message, as sent (WS 1003), stored and pushed (`sdkws.proto:176-199`). There is no field 13.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MsgData {
    /// Sender user ID.
    #[prost(string, tag = "1")]
    pub send_id: String,
    /// Recipient user ID (single and notification chats).
    #[prost(string, tag = "2")]
    pub recv_id: String,
    /// Group ID (group chats).
    #[prost(string, tag = "3")]
    pub group_id: String,
    /// Client-chosen message ID (not deduplicated by OpenIM).
    #[prost(string, tag = "4")]
    pub client_msg_id: String,
    /// Server-assigned message ID.
    #[prost(string, tag = "5")]
    pub server_msg_id: String,
    /// Platform the sender claims (trusted by OpenIM).
    #[prost(int32, tag = "6")]
    pub sender_platform_id: i32,
    /// Nickname the sender claims (trusted by OpenIM).
    #[prost(string, tag = "7")]
    pub sender_nickname: String,
    /// Face URL the sender claims (trusted by OpenIM).
    #[prost(string, tag = "8")]
    pub sender_face_url: String,
    /// 1 single, 2 write group, 3 read (super) group, 4 notification chat.
    #[prost(int32, tag = "9")]
    pub session_type: i32,
    /// 100 user, 200 system.
    #[prost(int32, tag = "10")]
    pub msg_from: i32,
    /// 101 text, …; 1000–5000 notifications; 1400 OA notification.
    #[prost(int32, tag = "11")]
    pub content_type: i32,
    /// The content, usually JSON.
    #[prost(bytes = "vec", tag = "12")]
    pub content: Vec<u8>,
    /// Position in its conversation.
    #[prost(int64, tag = "14")]
    pub seq: i64,
    /// Milliseconds.
    #[prost(int64, tag = "15")]
    pub send_time: i64,
    /// Milliseconds.
    #[prost(int64, tag = "16")]
    pub create_time: i64,
    /// 1 sending, 2 sent, 3 failed, 4 deleted.
    #[prost(int32, tag = "17")]
    pub status: i32,
    /// Read flag.
    #[prost(bool, tag = "18")]
    pub is_read: bool,
    /// Switches such as `history`, `senderSync`; a missing key means true.
    #[prost(btree_map = "string, bool", tag = "19")]
    pub options: BTreeMap<String, bool>,
    /// Offline push texts.
    #[prost(message, optional, tag = "20")]
    pub offline_push_info: Option<OfflinePushInfo>,
    /// Mentioned users.
    #[prost(string, repeated, tag = "21")]
    pub at_user_id_list: Vec<String>,
    /// Free-form.
    #[prost(string, tag = "22")]
    pub attached_info: String,
    /// Free-form.
    #[prost(string, tag = "23")]
    pub ex: String,
}

/// Offline push texts (`sdkws.proto:204-211`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OfflinePushInfo {
    /// Title.
    #[prost(string, tag = "1")]
    pub title: String,
    /// Description.
    #[prost(string, tag = "2")]
    pub desc: String,
    /// Free-form.
    #[prost(string, tag = "3")]
    pub ex: String,
    /// iOS sound (`iOSPushSound`).
    #[prost(string, tag = "4")]
    pub ios_push_sound: String,
    /// iOS badge (`iOSBadgeCount`).
    #[prost(bool, tag = "5")]
    pub ios_badge_count: bool,
    /// Signalling payload.
    #[prost(string, tag = "6")]
    pub signal_info: String,
}

/// The payload of a 2001 push (`sdkws.proto:200-203`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushMessages {
    /// conversationID → messages.
    #[prost(btree_map = "string, message", tag = "1")]
    pub msgs: BTreeMap<String, PullMsgs>,
    /// `n_…` conversationID → notification messages.
    #[prost(btree_map = "string, message", tag = "2")]
    pub notification_msgs: BTreeMap<String, PullMsgs>,
}

/// Messages of one conversation (`sdkws.proto:150-154`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullMsgs {
    /// The messages (the proto field is named `Msgs`).
    #[prost(message, repeated, tag = "1")]
    pub msgs: Vec<MsgData>,
    /// No more messages in the pulled direction.
    #[prost(bool, tag = "2")]
    pub is_end: bool,
    /// Where the pull stopped, when it ran past the stored range.
    #[prost(int64, tag = "3")]
    pub end_seq: i64,
}

/// WS 1001 request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMaxSeqReq {
    /// Whose conversations.
    #[prost(string, tag = "1")]
    pub user_id: String,
}

/// WS 1001 reply.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetMaxSeqResp {
    /// conversationID → max seq.
    #[prost(btree_map = "string, int64", tag = "1")]
    pub max_seqs: BTreeMap<String, i64>,
    /// conversationID → min seq.
    #[prost(btree_map = "string, int64", tag = "2")]
    pub min_seqs: BTreeMap<String, i64>,
}

/// Pull direction (`sdkws.proto:133-136`), the value of the `order` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PullOrder {
    /// Ascending seqs.
    PullOrderAsc = 0,
    /// Descending seqs.
    PullOrderDesc = 1,
}

/// WS 1002 request (`sdkws.proto:137-141`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullMessageBySeqsReq {
    /// Whose conversations.
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// One range per conversation.
    #[prost(message, repeated, tag = "2")]
    pub seq_ranges: Vec<SeqRange>,
    /// [`PullOrder`]: 0 ascending, 1 descending.
    #[prost(enumeration = "PullOrder", tag = "3")]
    pub order: i32,
}

/// A seq range of one conversation (`sdkws.proto:143-148`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeqRange {
    /// The conversation.
    #[prost(string, tag = "1")]
    pub conversation_id: String,
    /// First seq.
    #[prost(int64, tag = "2")]
    pub begin: i64,
    /// Last seq.
    #[prost(int64, tag = "3")]
    pub end: i64,
    /// At most this many messages.
    #[prost(int64, tag = "4")]
    pub num: i64,
}

/// WS 1002 reply.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullMessageBySeqsResp {
    /// conversationID → messages.
    #[prost(btree_map = "string, message", tag = "1")]
    pub msgs: BTreeMap<String, PullMsgs>,
    /// `n_…` conversationID → messages.
    #[prost(btree_map = "string, message", tag = "2")]
    pub notification_msgs: BTreeMap<String, PullMsgs>,
}

/// WS 2004 request (`sdkws.proto:554-557`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetAppBackgroundStatusReq {
    /// The user (not checked).
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// The new background flag of this connection.
    #[prost(bool, tag = "2")]
    pub is_background: bool,
}

/// WS 2005 request (`sdkws.proto:588-591`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubUserOnlineStatus {
    /// Users to watch.
    #[prost(string, repeated, tag = "1")]
    pub subscribe_user_id: Vec<String>,
    /// Users to stop watching.
    #[prost(string, repeated, tag = "2")]
    pub unsubscribe_user_id: Vec<String>,
}

/// WS 2005 reply and push (`sdkws.proto:584-586`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubUserOnlineStatusTips {
    /// One element per user.
    #[prost(message, repeated, tag = "1")]
    pub subscribers: Vec<SubUserOnlineStatusElem>,
}

/// Online platforms of one user (`sdkws.proto:579-582`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SubUserOnlineStatusElem {
    /// The user.
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// Platforms with a live connection (`onlinePlatformIDs`); empty = offline.
    #[prost(int32, repeated, tag = "2")]
    pub online_platform_ids: Vec<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Tags checked byte by byte, and a map entry as Go writes it (value present even when
    /// false; prost omits default values inside entries, which decodes the same).
    #[test]
    fn msg_data_wire_format() {
        let mut bytes = vec![0x0a, 0x01, b'a', 0x62, 0x01, b'x', 0x70, 0x05];
        bytes.extend_from_slice(&[0x9a, 0x01, 0x0b, 0x0a, 0x07]);
        bytes.extend_from_slice(b"history");
        bytes.extend_from_slice(&[0x10, 0x00]);
        let m = MsgData::decode(bytes.as_slice()).unwrap();
        assert_eq!((m.send_id.as_str(), m.content.as_slice(), m.seq), ("a", &b"x"[..], 5));
        assert_eq!(m.options.get("history"), Some(&false));
        let again = MsgData::decode(m.encode_to_vec().as_slice()).unwrap();
        assert_eq!(again, m);
        let push = PushMessages {
            notification_msgs: [("n_a_b".to_string(), PullMsgs { msgs: vec![m], is_end: true, end_seq: 0 })].into(),
            ..Default::default()
        };
        let enc = push.encode_to_vec();
        assert_eq!(enc[0], 0x12, "notificationMsgs is field 2");
        assert_eq!(PushMessages::decode(enc.as_slice()).unwrap(), push);
    }
}
