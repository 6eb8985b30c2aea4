//! OpenIM protobuf package `jssdk` (`P jssdk/jssdk.proto`): the bodies of `/jssdk/get_conversations`
//! and `/jssdk/get_active_conversations` when a client speaks `application/x-protobuf` (contract
//! §1.3; the npm SDK always does), plus the messages they embed from other packages.
//!
//! `MsgData` comes from [`super::sdkws`]. `conversation.Conversation` and
//! `relation.FriendInfoOnly` belong to packages this crate has no module for, and `sdkws.UserInfo`
//! / `sdkws.GroupInfo` were not in `sdkws` when this was written: they are defined here (move them
//! to `sdkws` if another reader needs them).

use super::sdkws::MsgData;

/// `jssdk.ConversationMsg` (`jssdk.proto:11-19`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConversationMsg {
    #[prost(message, optional, tag = "1")]
    pub conversation: Option<Conversation>,
    #[prost(message, optional, tag = "2")]
    pub last_msg: Option<MsgData>,
    #[prost(message, optional, tag = "3")]
    pub user: Option<UserInfo>,
    #[prost(message, optional, tag = "4")]
    pub friend: Option<FriendInfoOnly>,
    #[prost(message, optional, tag = "5")]
    pub group: Option<GroupInfo>,
    #[prost(int64, tag = "6")]
    pub max_seq: i64,
    #[prost(int64, tag = "7")]
    pub read_seq: i64,
}

/// `jssdk.GetActiveConversationsReq` (`:21-24`; `count` is int64 in the proto, contract §1.3
/// says int32: the varint encoding is the same for the values a client sends).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetActiveConversationsReq {
    #[prost(string, tag = "1")]
    pub owner_user_id: String,
    #[prost(int64, tag = "2")]
    pub count: i64,
}

/// `jssdk.GetActiveConversationsResp` (`:26-29`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetActiveConversationsResp {
    #[prost(int64, tag = "1")]
    pub unread_count: i64,
    #[prost(message, repeated, tag = "2")]
    pub conversations: Vec<ConversationMsg>,
}

/// `jssdk.GetConversationsReq` (`:31-34`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetConversationsReq {
    #[prost(string, tag = "1")]
    pub owner_user_id: String,
    #[prost(string, repeated, tag = "2")]
    pub conversation_ids: Vec<String>,
}

/// `jssdk.GetConversationsResp` (`:36-39`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetConversationsResp {
    #[prost(int64, tag = "1")]
    pub unread_count: i64,
    #[prost(message, repeated, tag = "2")]
    pub conversations: Vec<ConversationMsg>,
}

/// `conversation.Conversation` (`P conversation/conversation.proto:9-27`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Conversation {
    #[prost(string, tag = "1")]
    pub owner_user_id: String,
    #[prost(string, tag = "2")]
    pub conversation_id: String,
    #[prost(int32, tag = "3")]
    pub recv_msg_opt: i32,
    #[prost(int32, tag = "4")]
    pub conversation_type: i32,
    #[prost(string, tag = "5")]
    pub user_id: String,
    #[prost(string, tag = "6")]
    pub group_id: String,
    #[prost(bool, tag = "7")]
    pub is_pinned: bool,
    #[prost(string, tag = "8")]
    pub attached_info: String,
    #[prost(bool, tag = "9")]
    pub is_private_chat: bool,
    #[prost(int32, tag = "10")]
    pub group_at_type: i32,
    #[prost(string, tag = "11")]
    pub ex: String,
    #[prost(int32, tag = "12")]
    pub burn_duration: i32,
    #[prost(int64, tag = "13")]
    pub min_seq: i64,
    #[prost(int64, tag = "14")]
    pub max_seq: i64,
    #[prost(int64, tag = "15")]
    pub msg_destruct_time: i64,
    #[prost(int64, tag = "16")]
    pub latest_msg_destruct_time: i64,
    #[prost(bool, tag = "17")]
    pub is_msg_destruct: bool,
}

/// `relation.FriendInfoOnly` (`P relation/relation.proto:273-282`; `createTime` in ms).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FriendInfoOnly {
    #[prost(string, tag = "1")]
    pub owner_user_id: String,
    #[prost(string, tag = "2")]
    pub friend_user_id: String,
    #[prost(string, tag = "3")]
    pub remark: String,
    #[prost(int64, tag = "4")]
    pub create_time: i64,
    #[prost(int32, tag = "5")]
    pub add_source: i32,
    #[prost(string, tag = "6")]
    pub operator_user_id: String,
    #[prost(string, tag = "7")]
    pub ex: String,
    #[prost(bool, tag = "8")]
    pub is_pinned: bool,
}

/// `sdkws.UserInfo` (`P sdkws/sdkws.proto:64-72`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct UserInfo {
    #[prost(string, tag = "1")]
    pub user_id: String,
    #[prost(string, tag = "2")]
    pub nickname: String,
    #[prost(string, tag = "3")]
    pub face_url: String,
    #[prost(string, tag = "4")]
    pub ex: String,
    #[prost(int64, tag = "5")]
    pub create_time: i64,
    #[prost(int32, tag = "6")]
    pub app_manger_level: i32,
    #[prost(int32, tag = "7")]
    pub global_recv_msg_opt: i32,
}

/// `sdkws.GroupInfo` (`P sdkws/sdkws.proto:10-28`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GroupInfo {
    #[prost(string, tag = "1")]
    pub group_id: String,
    #[prost(string, tag = "2")]
    pub group_name: String,
    #[prost(string, tag = "3")]
    pub notification: String,
    #[prost(string, tag = "4")]
    pub introduction: String,
    #[prost(string, tag = "5")]
    pub face_url: String,
    #[prost(string, tag = "6")]
    pub owner_user_id: String,
    #[prost(int64, tag = "7")]
    pub create_time: i64,
    #[prost(uint32, tag = "8")]
    pub member_count: u32,
    #[prost(string, tag = "9")]
    pub ex: String,
    #[prost(int32, tag = "10")]
    pub status: i32,
    #[prost(string, tag = "11")]
    pub creator_user_id: String,
    #[prost(int32, tag = "12")]
    pub group_type: i32,
    #[prost(int32, tag = "13")]
    pub need_verification: i32,
    #[prost(int32, tag = "14")]
    pub look_member_info: i32,
    #[prost(int32, tag = "15")]
    pub apply_member_friend: i32,
    #[prost(int64, tag = "16")]
    pub notification_update_time: i64,
    #[prost(string, tag = "17")]
    pub notification_user_id: String,
}
