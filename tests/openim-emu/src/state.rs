//! The emulator's in-memory database: users, token state, relations, groups, messages,
//! conversations, the version logs of the incremental-sync routes, per-user message visibility
//! (deleted-for-me, cleared-for-me) and object storage.
//!
//! It stands in for OpenIM's MongoDB + Redis. The record types double as the JSON shapes the
//! API returns (field names and time units of contract §1.5), so handlers can serialize them
//! directly. Everything lives behind one mutex in [`crate::server::App`]; handlers are short and
//! synchronous, so no lock is ever held across an await.

use std::collections::{BTreeMap, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use md5::{Digest, Md5};
use serde::{Serialize, Serializer};

use crate::versionlog::VersionLogs;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now_s() -> i64 {
    now_ms() / 1000
}

/// A 32-hex md5 of random input, as OpenIM's `idutil` generates message IDs (§8.3).
pub fn random_md5() -> String {
    let mut h = Md5::new();
    h.update(rand::random::<u128>().to_le_bytes());
    h.update(now_ms().to_le_bytes());
    hex::encode(h.finalize())
}

/// `sdkws.UserInfo`.
#[derive(Clone, Debug, Serialize, Default)]
pub struct UserInfo {
    #[serde(rename = "userID")]
    pub user_id: String,
    pub nickname: String,
    #[serde(rename = "faceURL")]
    pub face_url: String,
    pub ex: String,
    #[serde(rename = "createTime")]
    pub create_time: i64,
    #[serde(rename = "appMangerLevel")]
    pub app_manger_level: i32,
    #[serde(rename = "globalRecvMsgOpt")]
    pub global_recv_msg_opt: i32,
    /// Registration order, for stable listings.
    #[serde(skip)]
    pub order: u64,
}

/// `sdkws.PublicUserInfo`.
#[derive(Clone, Debug, Serialize)]
pub struct PublicUserInfo {
    #[serde(rename = "userID")]
    pub user_id: String,
    pub nickname: String,
    #[serde(rename = "faceURL")]
    pub face_url: String,
    pub ex: String,
}

impl From<&UserInfo> for PublicUserInfo {
    fn from(u: &UserInfo) -> Self {
        PublicUserInfo {
            user_id: u.user_id.clone(),
            nickname: u.nickname.clone(),
            face_url: u.face_url.clone(),
            ex: u.ex.clone(),
        }
    }
}

/// A friendship edge owner → friend (OpenIM stores both directions separately).
#[derive(Clone, Debug, Default)]
pub struct Friend {
    pub remark: String,
    pub create_time_s: i64,
    pub add_source: i32,
    pub operator_user_id: String,
    pub ex: String,
    pub is_pinned: bool,
    /// Creation time in milliseconds (`FriendInfoOnly.createTime` of the /jssdk routes).
    pub create_time_ms: i64,
    /// Creation order (OpenIM sorts friends by `is_pinned` desc, then `_id`).
    pub order: u64,
}

/// `sdkws.FriendRequest` (names are filled in at output time).
#[derive(Clone, Debug, Serialize, Default)]
pub struct FriendRequest {
    #[serde(rename = "fromUserID")]
    pub from_user_id: String,
    #[serde(rename = "fromNickname")]
    pub from_nickname: String,
    #[serde(rename = "fromFaceURL")]
    pub from_face_url: String,
    #[serde(rename = "toUserID")]
    pub to_user_id: String,
    #[serde(rename = "toNickname")]
    pub to_nickname: String,
    #[serde(rename = "toFaceURL")]
    pub to_face_url: String,
    #[serde(rename = "handleResult")]
    pub handle_result: i32,
    #[serde(rename = "reqMsg")]
    pub req_msg: String,
    #[serde(rename = "createTime")]
    pub create_time: i64,
    #[serde(rename = "handlerUserID")]
    pub handler_user_id: String,
    #[serde(rename = "handleMsg")]
    pub handle_msg: String,
    #[serde(rename = "handleTime")]
    pub handle_time: i64,
    pub ex: String,
}

/// A blacklist edge owner → blocked user.
#[derive(Clone, Debug, Default)]
pub struct Black {
    pub create_time: i64,
    pub add_source: i32,
    pub operator_user_id: String,
    pub ex: String,
}

/// Group role levels (§1.5).
pub const ROLE_OWNER: i32 = 100;
pub const ROLE_ADMIN: i32 = 60;
pub const ROLE_MEMBER: i32 = 20;
/// Group status values.
pub const GROUP_OK: i32 = 0;
pub const GROUP_DISMISSED: i32 = 2;
pub const GROUP_MUTED: i32 = 3;

/// A stored group (`sdkws.GroupInfo` without the computed fields) plus its members.
#[derive(Clone, Debug, Default)]
pub struct Group {
    pub group_id: String,
    pub group_name: String,
    pub notification: String,
    pub introduction: String,
    pub face_url: String,
    pub create_time: i64,
    pub ex: String,
    pub status: i32,
    pub creator_user_id: String,
    pub group_type: i32,
    pub need_verification: i32,
    pub look_member_info: i32,
    pub apply_member_friend: i32,
    pub notification_update_time: i64,
    pub notification_user_id: String,
    /// Members in join order.
    pub members: Vec<Member>,
}

/// A stored group member (`sdkws.GroupMemberFullInfo` minus user-derived fields).
#[derive(Clone, Debug, Default)]
pub struct Member {
    pub user_id: String,
    pub role_level: i32,
    pub join_time: i64,
    pub nickname: String,
    pub face_url: String,
    pub join_source: i32,
    pub operator_user_id: String,
    pub ex: String,
    pub mute_end_time: i64,
    pub inviter_user_id: String,
}

impl Group {
    pub fn member(&self, user_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.user_id == user_id)
    }
    pub fn member_mut(&mut self, user_id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.user_id == user_id)
    }
    pub fn owner(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.role_level == ROLE_OWNER)
    }
}

/// A group join request.
#[derive(Clone, Debug, Default)]
pub struct GroupRequest {
    pub user_id: String,
    pub group_id: String,
    pub handle_result: i32,
    pub req_msg: String,
    pub handle_msg: String,
    pub req_time: i64,
    pub handle_user_id: String,
    pub handle_time: i64,
    pub ex: String,
    pub join_source: i32,
    pub inviter_user_id: String,
}

fn ser_base64<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
}

fn is_empty_map(m: &BTreeMap<String, bool>) -> bool {
    m.is_empty()
}

/// `sdkws.OfflinePushInfo`.
#[derive(Clone, Debug, Serialize, Default, serde::Deserialize)]
#[serde(default)]
pub struct OfflinePushInfo {
    pub title: String,
    pub desc: String,
    pub ex: String,
    #[serde(rename = "iOSPushSound")]
    pub ios_push_sound: String,
    #[serde(rename = "iOSBadgeCount")]
    pub ios_badge_count: bool,
    #[serde(rename = "signalInfo")]
    pub signal_info: String,
}

/// `sdkws.MsgData` as stored and returned (content serialized as base64, §1.4).
#[derive(Clone, Debug, Serialize, Default)]
pub struct MsgData {
    #[serde(rename = "sendID")]
    pub send_id: String,
    #[serde(rename = "recvID")]
    pub recv_id: String,
    #[serde(rename = "groupID")]
    pub group_id: String,
    #[serde(rename = "clientMsgID")]
    pub client_msg_id: String,
    #[serde(rename = "serverMsgID")]
    pub server_msg_id: String,
    #[serde(rename = "senderPlatformID")]
    pub sender_platform_id: i32,
    #[serde(rename = "senderNickname")]
    pub sender_nickname: String,
    #[serde(rename = "senderFaceURL")]
    pub sender_face_url: String,
    #[serde(rename = "sessionType")]
    pub session_type: i32,
    #[serde(rename = "msgFrom")]
    pub msg_from: i32,
    #[serde(rename = "contentType")]
    pub content_type: i32,
    #[serde(serialize_with = "ser_base64")]
    pub content: Vec<u8>,
    pub seq: i64,
    #[serde(rename = "sendTime")]
    pub send_time: i64,
    #[serde(rename = "createTime")]
    pub create_time: i64,
    pub status: i32,
    #[serde(rename = "isRead")]
    pub is_read: bool,
    #[serde(skip_serializing_if = "is_empty_map")]
    pub options: BTreeMap<String, bool>,
    #[serde(rename = "offlinePushInfo")]
    pub offline_push_info: Option<OfflinePushInfo>,
    #[serde(rename = "atUserIDList")]
    pub at_user_id_list: Option<Vec<String>>,
    #[serde(rename = "attachedInfo")]
    pub attached_info: String,
    pub ex: String,
}

impl MsgData {
    /// An option switch; a missing key means true (§5.6).
    pub fn option(&self, key: &str) -> bool {
        self.options.get(key).copied().unwrap_or(true)
    }
}

/// `conversation.Conversation`.
#[derive(Clone, Debug, Serialize, Default)]
pub struct Conversation {
    #[serde(rename = "ownerUserID")]
    pub owner_user_id: String,
    #[serde(rename = "conversationID")]
    pub conversation_id: String,
    #[serde(rename = "recvMsgOpt")]
    pub recv_msg_opt: i32,
    #[serde(rename = "conversationType")]
    pub conversation_type: i32,
    #[serde(rename = "userID")]
    pub user_id: String,
    #[serde(rename = "groupID")]
    pub group_id: String,
    #[serde(rename = "isPinned")]
    pub is_pinned: bool,
    #[serde(rename = "attachedInfo")]
    pub attached_info: String,
    #[serde(rename = "isPrivateChat")]
    pub is_private_chat: bool,
    #[serde(rename = "groupAtType")]
    pub group_at_type: i32,
    pub ex: String,
    #[serde(rename = "burnDuration")]
    pub burn_duration: i32,
    #[serde(rename = "minSeq")]
    pub min_seq: i64,
    #[serde(rename = "maxSeq")]
    pub max_seq: i64,
    #[serde(rename = "msgDestructTime")]
    pub msg_destruct_time: i64,
    #[serde(rename = "latestMsgDestructTime")]
    pub latest_msg_destruct_time: i64,
    #[serde(rename = "isMsgDestruct")]
    pub is_msg_destruct: bool,
    /// The user's read position (for unread counts); not part of the proto.
    #[serde(skip)]
    pub has_read_seq: i64,
}

/// `MsgData.status` of a deleted message (`constant.MsgDeleted` = `MsgStatusHasDeleted` = 4).
pub const MSG_STATUS_DELETED: i32 = 4;

/// Token states of the Redis state map (§4.2).
pub const TOKEN_NORMAL: i32 = 0;
pub const TOKEN_KICKED: i32 = 2;

/// The whole in-memory database.
#[derive(Default)]
pub struct State {
    pub users: HashMap<String, UserInfo>,
    pub user_order: u64,
    /// (userID, platformID) → token → state.
    pub tokens: HashMap<(String, i32), HashMap<String, i32>>,
    /// Superseded admin tokens → end of their grace period.
    pub admin_grace: HashMap<String, Instant>,
    /// (owner, friend) → friendship.
    pub friends: BTreeMap<(String, String), Friend>,
    pub friend_requests: Vec<FriendRequest>,
    /// (owner, blocked) → black entry.
    pub blacks: BTreeMap<(String, String), Black>,
    pub groups: BTreeMap<String, Group>,
    pub group_requests: Vec<GroupRequest>,
    /// conversationID → messages; message i has seq i+1.
    pub messages: HashMap<String, Vec<MsgData>>,
    /// (owner, conversationID) → conversation record.
    pub conversations: BTreeMap<(String, String), Conversation>,
    /// operationID → send status (2 = sent), for check_msg_is_send_success.
    pub send_status: HashMap<String, i32>,
    /// Friend creation counter ([`Friend::order`]).
    pub friend_order: u64,
    /// Version logs of the incremental-sync routes ([`crate::versionlog`]), keyed by owner userID.
    pub friend_versions: VersionLogs,
    /// Joined-group version logs, keyed by userID (elements: groupIDs).
    pub join_versions: VersionLogs,
    /// Group member version logs, keyed by groupID (elements: userIDs and the pseudo-IDs).
    pub member_versions: VersionLogs,
    /// Conversation version logs, keyed by owner userID (elements: conversationIDs).
    pub conversation_versions: VersionLogs,
    /// (conversationID, seq) → users who deleted that message for themselves (OpenIM's
    /// `del_list`, `/msg/delete_msgs` without `isSyncOther`).
    pub msg_del_lists: HashMap<(String, i64), Vec<String>>,
    /// (userID, conversationID) → the user's own min seq (`seqUser`, raised by clearing a
    /// conversation for oneself): older messages are hidden from that user.
    pub user_min_seqs: HashMap<(String, String), i64>,
    /// conversationID → the conversation's min seq (`seqConversation`, raised by clearing it for
    /// everyone).
    pub conversation_min_seqs: HashMap<String, i64>,
    /// The object storage behind `/object/*` ([`crate::object`]).
    pub objects: crate::object::ObjectStore,
}

impl State {
    pub fn user(&self, id: &str) -> Option<&UserInfo> {
        self.users.get(id)
    }

    pub fn is_friend(&self, owner: &str, friend: &str) -> bool {
        self.friends.contains_key(&(owner.to_string(), friend.to_string()))
    }

    pub fn is_black(&self, owner: &str, black: &str) -> bool {
        self.blacks.contains_key(&(owner.to_string(), black.to_string()))
    }

    /// Insert a user (registration order recorded).
    pub fn add_user(&mut self, mut u: UserInfo) {
        self.user_order += 1;
        u.order = self.user_order;
        self.users.insert(u.user_id.clone(), u);
    }

    /// The highest seq of a conversation (0 when empty).
    pub fn max_seq(&self, cid: &str) -> i64 {
        self.messages.get(cid).map(|v| v.len() as i64).unwrap_or(0)
    }

    /// Create the conversation record of `owner` if it does not exist yet (and log the insert
    /// in the owner's conversation version log, as `ConversationMgo.Create` does).
    pub fn ensure_conversation(&mut self, owner: &str, cid: &str, ctype: i32, user_id: &str, group_id: &str) {
        let key = (owner.to_string(), cid.to_string());
        if self.conversations.contains_key(&key) {
            return;
        }
        self.conversations.insert(
            key,
            Conversation {
                owner_user_id: owner.to_string(),
                conversation_id: cid.to_string(),
                conversation_type: ctype,
                user_id: user_id.to_string(),
                group_id: group_id.to_string(),
                ..Default::default()
            },
        );
        self.conversation_versions.incr(owner, &[cid], crate::versionlog::STATE_INSERT);
    }

    /// The lowest seq `user` may read in `cid`: the higher of the conversation's and the user's
    /// own min seq (both 0 unless a clear raised them).
    pub fn min_seq_for(&self, user: &str, cid: &str) -> i64 {
        let conv = self.conversation_min_seqs.get(cid).copied().unwrap_or(0);
        let own = self.user_min_seqs.get(&(user.to_string(), cid.to_string())).copied().unwrap_or(0);
        conv.max(own)
    }

    /// The message `seq` of `cid` as `user` reads it (`GetMessageBySeqs` +
    /// `handlerDeleteAndRevoked`): `None` outside the user's window `[min seq, max seq]`; a
    /// physically deleted message is the stored `{seq, status: 4}` placeholder; a message the user
    /// deleted for themselves has empty content and status 4 (`MsgDeleted`). Revoked messages
    /// were rewritten in place when revoked (contentType 2101).
    pub fn msg_for_user(&self, user: &str, cid: &str, seq: i64) -> Option<MsgData> {
        if seq < 1 || seq < self.min_seq_for(user, cid) || seq > self.max_seq(cid) {
            return None;
        }
        let mut m = self.messages.get(cid)?.get((seq - 1) as usize)?.clone();
        if self.msg_del_lists.get(&(cid.to_string(), seq)).is_some_and(|d| d.iter().any(|u| u == user)) {
            m.content = Vec::new();
            m.status = MSG_STATUS_DELETED;
        }
        Some(m)
    }

    /// `sdkws.GroupInfo` JSON of a group.
    pub fn group_info(&self, g: &Group) -> serde_json::Value {
        serde_json::json!({
            "groupID": g.group_id, "groupName": g.group_name, "notification": g.notification,
            "introduction": g.introduction, "faceURL": g.face_url,
            "ownerUserID": g.owner().map(|m| m.user_id.clone()).unwrap_or_default(),
            "createTime": g.create_time, "memberCount": g.members.len() as u32, "ex": g.ex,
            "status": g.status, "creatorUserID": g.creator_user_id, "groupType": g.group_type,
            "needVerification": g.need_verification, "lookMemberInfo": g.look_member_info,
            "applyMemberFriend": g.apply_member_friend,
            "notificationUpdateTime": g.notification_update_time,
            "notificationUserID": g.notification_user_id,
        })
    }

    /// `sdkws.GroupMemberFullInfo` JSON; empty nickname/faceURL are filled from the user.
    pub fn member_info(&self, group_id: &str, m: &Member) -> serde_json::Value {
        let user = self.user(&m.user_id);
        let nickname = if m.nickname.is_empty() {
            user.map(|u| u.nickname.clone()).unwrap_or_default()
        } else {
            m.nickname.clone()
        };
        let face = if m.face_url.is_empty() {
            user.map(|u| u.face_url.clone()).unwrap_or_default()
        } else {
            m.face_url.clone()
        };
        serde_json::json!({
            "groupID": group_id, "userID": m.user_id, "roleLevel": m.role_level,
            "joinTime": m.join_time, "nickname": nickname, "faceURL": face,
            "appMangerLevel": user.map(|u| u.app_manger_level).unwrap_or(0),
            "joinSource": m.join_source, "operatorUserID": m.operator_user_id, "ex": m.ex,
            "muteEndTime": m.mute_end_time, "inviterUserID": m.inviter_user_id,
        })
    }

    /// `sdkws.FriendInfo` JSON (createTime in seconds, §1.5).
    pub fn friend_info(&self, owner: &str, friend_id: &str, f: &Friend) -> serde_json::Value {
        let user = self
            .user(friend_id)
            .cloned()
            .unwrap_or_else(|| UserInfo { user_id: friend_id.to_string(), ..Default::default() });
        serde_json::json!({
            "ownerUserID": owner, "remark": f.remark, "createTime": f.create_time_s,
            "friendUser": user, "addSource": f.add_source, "operatorUserID": f.operator_user_id,
            "ex": f.ex, "isPinned": f.is_pinned,
        })
    }

    /// A friend request with the names/faces of both sides filled in.
    pub fn friend_request_view(&self, r: &FriendRequest) -> FriendRequest {
        let mut r = r.clone();
        if let Some(u) = self.user(&r.from_user_id) {
            r.from_nickname = u.nickname.clone();
            r.from_face_url = u.face_url.clone();
        }
        if let Some(u) = self.user(&r.to_user_id) {
            r.to_nickname = u.nickname.clone();
            r.to_face_url = u.face_url.clone();
        }
        r
    }
}

/// Conversation ID of a single chat: `si_<a>_<b>` with the two IDs sorted (§5.6).
pub fn single_conversation_id(a: &str, b: &str) -> String {
    if a <= b {
        format!("si_{a}_{b}")
    } else {
        format!("si_{b}_{a}")
    }
}

/// Conversation ID of a notification chat: `sn_<a>_<b>` sorted.
pub fn notification_conversation_id(a: &str, b: &str) -> String {
    if a <= b {
        format!("sn_{a}_{b}")
    } else {
        format!("sn_{b}_{a}")
    }
}

/// Conversation ID of a group chat: `sg_<groupID>`.
pub fn group_conversation_id(group_id: &str) -> String {
    format!("sg_{group_id}")
}

/// Apply OpenIM pagination (1-based pageNumber; showNumber ≤ 0 → empty, §8.2).
pub fn paginate<T: Clone>(items: &[T], page_number: i32, show_number: i32) -> Vec<T> {
    if show_number <= 0 || page_number < 1 {
        return Vec::new();
    }
    let skip = (page_number as usize - 1).saturating_mul(show_number as usize);
    items.iter().skip(skip).take(show_number as usize).cloned().collect()
}
