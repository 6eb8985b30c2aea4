//! OpenIM protobuf package `msg` (the messages imgate and the emulator read): field numbers and
//! types of `P msg/msg.proto` (protocol v0.0.73-alpha.18), hand-written `prost` messages.

use std::collections::BTreeMap;

use super::sdkws::{MsgData, PullMsgs};

/// The send RPC's request (`msg.proto:37-39`); WS 1003 carries the bare `MsgData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SendMsgReq {
    /// The message.
    #[prost(message, optional, tag = "3")]
    pub msg_data: Option<MsgData>,
}

/// WS 1003 reply (`msg.proto:41-46`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SendMsgResp {
    /// Server-assigned ID.
    #[prost(string, tag = "1")]
    pub server_msg_id: String,
    /// The client's ID, echoed.
    #[prost(string, tag = "2")]
    pub client_msg_id: String,
    /// Milliseconds.
    #[prost(int64, tag = "3")]
    pub send_time: i64,
    /// The message as a beforeMsgModify webhook changed it, if it did.
    #[prost(message, optional, tag = "4")]
    pub modify: Option<MsgData>,
}

/// WS 1005 request (`msg.proto:333-337`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSeqMessageReq {
    /// Whose view (not checked by OpenIM).
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// The seqs wanted, per conversation.
    #[prost(message, repeated, tag = "2")]
    pub conversations: Vec<ConversationSeqs>,
    /// [`super::sdkws::PullOrder`].
    #[prost(enumeration = "super::sdkws::PullOrder", tag = "3")]
    pub order: i32,
}

/// Seqs of one conversation (`msg.proto:328-331`; numbered from 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConversationSeqs {
    /// The conversation.
    #[prost(string, tag = "2")]
    pub conversation_id: String,
    /// The seqs.
    #[prost(int64, repeated, tag = "3")]
    pub seqs: Vec<i64>,
}

/// WS 1005 reply (`msg.proto:339-342`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetSeqMessageResp {
    /// conversationID → messages.
    #[prost(btree_map = "string, message", tag = "1")]
    pub msgs: BTreeMap<String, PullMsgs>,
    /// `n_…` conversationID → messages.
    #[prost(btree_map = "string, message", tag = "2")]
    pub notification_msgs: BTreeMap<String, PullMsgs>,
}

/// WS 1006 request (`msg.proto:188-192`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetConversationsHasReadAndMaxSeqReq {
    /// Whose conversations.
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// Restrict to these (`conversationIDs`; empty = all of the user's).
    #[prost(string, repeated, tag = "2")]
    pub conversation_ids: Vec<String>,
    /// Also return the pinned conversation IDs.
    #[prost(bool, tag = "3")]
    pub return_pinned: bool,
}

/// Seqs of one conversation (`msg.proto:194-198`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Seqs {
    /// Highest seq.
    #[prost(int64, tag = "1")]
    pub max_seq: i64,
    /// The user's read position.
    #[prost(int64, tag = "2")]
    pub has_read_seq: i64,
    /// Send time of the highest seq, milliseconds.
    #[prost(int64, tag = "3")]
    pub max_seq_time: i64,
}

/// WS 1006 reply (`msg.proto:200-203`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetConversationsHasReadAndMaxSeqResp {
    /// conversationID → seqs.
    #[prost(btree_map = "string, message", tag = "1")]
    pub seqs: BTreeMap<String, Seqs>,
    /// Pinned conversations (`pinnedConversationIDs`), when asked for.
    #[prost(string, repeated, tag = "2")]
    pub pinned_conversation_ids: Vec<String>,
}

/// WS 1007 request (`msg.proto:382-385`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetLastMessageReq {
    /// Whose view (not checked by OpenIM).
    #[prost(string, tag = "1")]
    pub user_id: String,
    /// The conversations (`conversationIDs`).
    #[prost(string, repeated, tag = "2")]
    pub conversation_ids: Vec<String>,
}

/// WS 1007 reply (`msg.proto:386-388`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetLastMessageResp {
    /// conversationID → its last message.
    #[prost(btree_map = "string, message", tag = "1")]
    pub msgs: BTreeMap<String, MsgData>,
}
