//! The request schema of every allow-listed compat route: the fields of the protobuf request
//! message OpenIM's Go server decodes that route's JSON body into (`openimsdk/protocol`
//! v0.0.73-alpha.18, the version open-im-server fbca49d requires; route → RPC from its
//! `internal/api/router.go` and `internal/api/*.go`), typed as the generated Go struct declares
//! them (wrapper values are plain JSON scalars, enums are `int32`). [`super::gojson`] decodes a body
//! against it and forwards only what it holds, so a field missing here is silently dropped (an SDK
//! feature breaks) and a field present here is one a client may set. Fields of a request message
//! that OpenIM applies without checking who asks and that an ordinary user must not set (levels,
//! authorship, timestamps, delete-for-everyone) are left out on purpose, each with a `//` note;
//! identity fields stay, because imgate's rules bind them to the caller.

use super::gojson::{Ty::*, F};

/// The request schema of an allow-listed OpenIM path.
pub fn request_schema(path: &str) -> Option<&'static [F]> {
    SCHEMAS.iter().find(|(p, _)| *p == path).map(|(_, s)| *s)
}

/// Every allow-listed path with its request schema, in the order of [`super::ALLOWED`].
pub const SCHEMAS: &[(&str, &[F])] = &[
    ("/user/get_users_info", USERS_INFO),
    ("/user/update_user_info", UPDATE_USER_INFO),
    ("/user/update_user_info_ex", UPDATE_USER_INFO_EX),
    ("/user/set_global_msg_recv_opt", SET_GLOBAL_RECV_MSG_OPT),
    ("/user/get_user_client_config", USER_ID),
    ("/user/subscribe_users_status", SUBSCRIBE_USERS_STATUS),
    ("/user/get_subscribe_users_status", USER_ID),
    ("/user/process_user_command_add", USER_COMMAND_ADD),
    ("/user/process_user_command_delete", USER_COMMAND_DELETE),
    ("/user/process_user_command_update", USER_COMMAND_UPDATE),
    ("/user/process_user_command_get", USER_COMMAND_GET),
    ("/user/process_user_command_get_all", USER_ID),
    ("/friend/add_friend", APPLY_TO_ADD_FRIEND),
    ("/friend/add_friend_response", RESPOND_FRIEND_APPLY),
    ("/friend/delete_friend", DELETE_FRIEND),
    ("/friend/get_friend_apply_list", FRIEND_APPLY_PAGE),
    ("/friend/get_self_friend_apply_list", FRIEND_APPLY_PAGE),
    ("/friend/get_friend_list", USER_PAGE),
    ("/friend/get_designated_friends", DESIGNATED_FRIENDS),
    ("/friend/set_friend_remark", SET_FRIEND_REMARK),
    ("/friend/add_black", ADD_BLACK),
    ("/friend/get_black_list", USER_PAGE),
    ("/friend/get_specified_blacks", OWNER_USER_ID_LIST),
    ("/friend/remove_black", REMOVE_BLACK),
    ("/friend/is_friend", IS_FRIEND),
    ("/friend/get_designated_friend_apply", DESIGNATED_FRIEND_APPLY),
    ("/friend/get_friend_id", USER_ID),
    ("/friend/get_specified_friends_info", OWNER_USER_ID_LIST),
    ("/friend/update_friends", UPDATE_FRIENDS),
    ("/friend/get_incremental_friends", INCREMENTAL_BY_USER),
    ("/friend/get_full_friend_user_ids", FULL_IDS_BY_USER),
    ("/friend/get_self_unhandled_apply_count", UNHANDLED_COUNT),
    ("/group/create_group", CREATE_GROUP),
    ("/group/join_group", JOIN_GROUP),
    ("/group/quit_group", GROUP_AND_USER),
    ("/group/get_groups_info", GROUP_IDS),
    ("/group/get_joined_group_list", JOINED_GROUP_LIST),
    ("/group/get_group_member_list", GROUP_MEMBER_LIST),
    ("/group/get_group_members_info", GROUP_MEMBERS_INFO),
    ("/group/invite_user_to_group", INVITE_USER_TO_GROUP),
    ("/group/kick_group", KICK_GROUP_MEMBER),
    ("/group/mute_group_member", MUTE_GROUP_MEMBER),
    ("/group/cancel_mute_group_member", GROUP_AND_USER),
    ("/group/mute_group", GROUP_ID),
    ("/group/cancel_mute_group", GROUP_ID),
    ("/group/set_group_info_ex", SET_GROUP_INFO_EX),
    ("/group/group_application_response", GROUP_APPLICATION_RESPONSE),
    ("/group/transfer_group", TRANSFER_GROUP_OWNER),
    ("/group/dismiss_group", DISMISS_GROUP),
    ("/group/get_recv_group_applicationList", GROUP_APPLICATION_LIST),
    ("/group/get_user_req_group_applicationList", USER_REQ_APPLICATION_LIST),
    ("/group/get_full_join_group_ids", FULL_IDS_BY_USER),
    ("/group/get_incremental_join_groups", INCREMENTAL_BY_USER),
    ("/group/get_group_application_unhandled_count", UNHANDLED_COUNT),
    ("/group/get_full_group_member_user_ids", FULL_IDS_BY_GROUP),
    ("/group/get_incremental_group_members", INCREMENTAL_GROUP_MEMBER),
    ("/group/get_incremental_group_members_batch", BATCH_INCREMENTAL_GROUP_MEMBER),
    ("/group/set_group_member_info", SET_GROUP_MEMBERS_INFO),
    ("/group/get_specified_user_group_request_info", GROUP_AND_USER),
    ("/msg/newest_seq", USER_ID),
    ("/msg/pull_msg_by_seq", PULL_MESSAGE_BY_SEQS),
    ("/msg/revoke_msg", REVOKE_MSG),
    ("/msg/mark_msgs_as_read", MARK_MSGS_AS_READ),
    ("/msg/mark_conversation_as_read", MARK_CONVERSATION_AS_READ),
    ("/msg/get_conversations_has_read_and_max_seq", HAS_READ_AND_MAX_SEQ),
    ("/msg/set_conversation_has_read_seq", SET_CONVERSATION_HAS_READ_SEQ),
    ("/msg/clear_conversation_msg", CLEAR_CONVERSATIONS_MSG),
    ("/msg/user_clear_all_msg", USER_CLEAR_ALL_MSG),
    ("/msg/delete_msgs", DELETE_MSGS),
    ("/msg/get_server_time", EMPTY),
    ("/conversation/get_sorted_conversation_list", SORTED_CONVERSATION_LIST),
    // Not registered by OpenIM (fbca49d nor HEAD): only `/msg/get_conversations_has_read_and_max_seq` is.
    ("/conversation/get_conversations_has_read_and_max_seq", HAS_READ_AND_MAX_SEQ),
    ("/conversation/get_all_conversations", OWNER_USER_ID),
    ("/conversation/get_conversation", GET_CONVERSATION),
    ("/conversation/get_conversations", OWNER_CONVERSATIONS),
    ("/conversation/set_conversations", SET_CONVERSATIONS),
    ("/conversation/get_full_conversation_ids", FULL_IDS_BY_USER),
    ("/conversation/get_incremental_conversations", INCREMENTAL_BY_USER),
    ("/conversation/get_owner_conversation", USER_PAGE),
    ("/conversation/get_not_notify_conversation_ids", USER_ID),
    ("/conversation/get_pinned_conversation_ids", USER_ID),
    ("/conversation/delete_conversations", DELETE_CONVERSATIONS),
    ("/conversation/update_conversations_by_user", UPDATE_CONVERSATIONS_BY_USER),
    ("/third/set_app_badge", SET_APP_BADGE),
    ("/object/part_limit", EMPTY),
    ("/object/part_size", PART_SIZE),
    ("/object/initiate_multipart_upload", INITIATE_MULTIPART_UPLOAD),
    ("/object/complete_multipart_upload", COMPLETE_MULTIPART_UPLOAD),
    ("/jssdk/get_conversations", OWNER_CONVERSATIONS),
    ("/jssdk/get_active_conversations", ACTIVE_CONVERSATIONS),
];

// Shared nested messages.

/// `sdkws.RequestPagination`.
const PAGINATION: &[F] = &[F("pageNumber", I32), F("showNumber", I32)];

/// `sdkws.UserInfo` as `/user/update_user_info` may set it.
const USER_INFO: &[F] = &[
    F("userID", Str),
    F("nickname", Str),
    F("faceURL", Str),
    F("ex", Str),
    // `createTime` left out: a server-set timestamp (UserPb2DBMap ignores it today; webhooks still see it).
    // `appMangerLevel` left out: UserPb2DBMap writes any non-zero value (≥ 2 = notification/app-manager account).
    F("globalRecvMsgOpt", I32),
];

/// `sdkws.UserInfoWithEx` (wrapper values).
const USER_INFO_WITH_EX: &[F] =
    &[F("userID", Str), F("nickname", Str), F("faceURL", Str), F("ex", Str), F("globalRecvMsgOpt", I32)];

/// `sdkws.GroupInfo` as `/group/create_group` may set it.
const GROUP_INFO_FOR_CREATE: &[F] = &[
    F("groupID", Str),
    F("groupName", Str),
    F("notification", Str),
    F("introduction", Str),
    F("faceURL", Str),
    // `ownerUserID` left out: ignored by CreateGroup (the owner is the request's own, caller-bound `ownerUserID`).
    // `createTime` left out: ignored by Pb2DBGroupInfo (time.Now()).
    // `memberCount` left out: ignored (counted by the server).
    F("ex", Str),
    // `status` left out: Pb2DBGroupInfo stores it unchecked (1 banChat, 2 dismissed, 3 muted).
    // `creatorUserID` left out: stored unchecked, so a caller could name any user as the group's creator.
    F("groupType", I32),
    F("needVerification", I32),
    F("lookMemberInfo", I32),
    F("applyMemberFriend", I32),
    // `notificationUpdateTime` left out: stored unchecked (a forged announcement time).
    // `notificationUserID` left out: stored unchecked, so the announcement could be attributed to any user.
];

/// `group.SetGroupMemberInfo` (wrapper values; OpenIM applies its role rules to `roleLevel`).
const SET_GROUP_MEMBER_INFO: &[F] =
    &[F("groupID", Str), F("userID", Str), F("nickname", Str), F("faceURL", Str), F("roleLevel", I32), F("ex", Str)];

/// `group.getIncrementalGroupMemberReq`.
const INCREMENTAL_GROUP_MEMBER: &[F] = &[F("groupID", Str), F("versionID", Str), F("version", U64)];

/// `sdkws.SeqRange`.
const SEQ_RANGE: &[F] = &[F("conversationID", Str), F("begin", I64), F("end", I64), F("num", I64)];

/// `msg.DeleteSyncOpt` (capitalised names, as in the proto).
const DELETE_SYNC_OPT: &[F] = &[
    F("IsSyncSelf", Bool),
    // `IsSyncOther` left out: OpenIM then deletes the seqs / clears the conversation for every member, unchecked.
];

/// `conversation.ConversationReq` (wrapper values from `recvMsgOpt` on).
const CONVERSATION_REQ: &[F] = &[
    F("conversationID", Str),
    F("conversationType", I32),
    F("userID", Str),
    F("groupID", Str),
    F("recvMsgOpt", I32),
    F("isPinned", Bool),
    F("attachedInfo", Str),
    F("isPrivateChat", Bool),
    F("ex", Str),
    F("burnDuration", I32),
    // `minSeq`/`maxSeq` left out: the visible history window (SetConversations ignores them today).
    F("groupAtType", I32),
    F("msgDestructTime", I64),
    F("isMsgDestruct", Bool),
];

// Request messages (several routes share one).

const EMPTY: &[F] = &[];
const USER_ID: &[F] = &[F("userID", Str)];
const OWNER_USER_ID: &[F] = &[F("ownerUserID", Str)];
const GROUP_ID: &[F] = &[F("groupID", Str)];
const GROUP_IDS: &[F] = &[F("groupIDs", Strs)];
const GROUP_AND_USER: &[F] = &[F("groupID", Str), F("userID", Str)];
const USER_PAGE: &[F] = &[F("userID", Str), F("pagination", Obj(PAGINATION))];

const USERS_INFO: &[F] = &[F("userIDs", Strs)];
const UPDATE_USER_INFO: &[F] = &[F("userInfo", Obj(USER_INFO))];
const UPDATE_USER_INFO_EX: &[F] = &[F("userInfo", Obj(USER_INFO_WITH_EX))];
const SET_GLOBAL_RECV_MSG_OPT: &[F] = &[F("userID", Str), F("globalRecvMsgOpt", I32)];
const SUBSCRIBE_USERS_STATUS: &[F] = &[F("userID", Str), F("userIDs", Strs), F("genre", I32)];
const USER_COMMAND_ADD: &[F] = &[F("userID", Str), F("type", I32), F("uuid", Str), F("value", Str), F("ex", Str)];
const USER_COMMAND_DELETE: &[F] = &[F("userID", Str), F("type", I32), F("uuid", Str)];
const USER_COMMAND_UPDATE: &[F] = &[F("userID", Str), F("type", I32), F("uuid", Str), F("value", Str), F("ex", Str)];
const USER_COMMAND_GET: &[F] = &[F("userID", Str), F("type", I32)];

const APPLY_TO_ADD_FRIEND: &[F] = &[F("fromUserID", Str), F("toUserID", Str), F("reqMsg", Str), F("ex", Str)];
const RESPOND_FRIEND_APPLY: &[F] =
    &[F("fromUserID", Str), F("toUserID", Str), F("handleResult", I32), F("handleMsg", Str)];
const DELETE_FRIEND: &[F] = &[F("ownerUserID", Str), F("friendUserID", Str)];
/// `getPaginationFriendsApplyToReq` and `getPaginationFriendsApplyFromReq`.
const FRIEND_APPLY_PAGE: &[F] = &[F("userID", Str), F("pagination", Obj(PAGINATION)), F("handleResults", I32s)];
const DESIGNATED_FRIENDS: &[F] = &[F("ownerUserID", Str), F("friendUserIDs", Strs)];
const SET_FRIEND_REMARK: &[F] = &[F("ownerUserID", Str), F("friendUserID", Str), F("remark", Str)];
const ADD_BLACK: &[F] = &[F("ownerUserID", Str), F("blackUserID", Str), F("ex", Str)];
/// `GetSpecifiedBlacksReq` and `getSpecifiedFriendsInfoReq`.
const OWNER_USER_ID_LIST: &[F] = &[F("ownerUserID", Str), F("userIDList", Strs)];
const REMOVE_BLACK: &[F] = &[F("ownerUserID", Str), F("blackUserID", Str)];
const IS_FRIEND: &[F] = &[F("userID1", Str), F("userID2", Str)];
const DESIGNATED_FRIEND_APPLY: &[F] = &[F("fromUserID", Str), F("toUserID", Str)];
const UPDATE_FRIENDS: &[F] =
    &[F("ownerUserID", Str), F("friendUserIDs", Strs), F("isPinned", Bool), F("remark", Str), F("ex", Str)];
/// `getIncrementalFriendsReq`, `getIncrementalJoinGroupReq`, `GetIncrementalConversationReq`.
const INCREMENTAL_BY_USER: &[F] = &[F("userID", Str), F("versionID", Str), F("version", U64)];
/// `getFullFriendUserIDsReq`, `GetFullJoinGroupIDsReq`, `GetFullOwnerConversationIDsReq`.
const FULL_IDS_BY_USER: &[F] = &[F("userID", Str), F("idHash", U64)];
/// `getSelfUnhandledApplyCountReq` and `GetGroupApplicationUnhandledCountReq`.
const UNHANDLED_COUNT: &[F] = &[F("userID", Str), F("time", I64)];

const CREATE_GROUP: &[F] = &[
    F("memberUserIDs", Strs),
    F("groupInfo", Obj(GROUP_INFO_FOR_CREATE)),
    F("adminUserIDs", Strs),
    F("ownerUserID", Str),
    F("sendMessage", Bool),
];
const JOIN_GROUP: &[F] =
    &[F("groupID", Str), F("reqMessage", Str), F("joinSource", I32), F("inviterUserID", Str), F("ex", Str)];
const JOINED_GROUP_LIST: &[F] = &[F("pagination", Obj(PAGINATION)), F("fromUserID", Str)];
const GROUP_MEMBER_LIST: &[F] =
    &[F("pagination", Obj(PAGINATION)), F("groupID", Str), F("filter", I32), F("keyword", Str)];
const GROUP_MEMBERS_INFO: &[F] = &[F("groupID", Str), F("userIDs", Strs)];
const INVITE_USER_TO_GROUP: &[F] =
    &[F("groupID", Str), F("reason", Str), F("invitedUserIDs", Strs), F("sendMessage", Bool)];
const KICK_GROUP_MEMBER: &[F] =
    &[F("groupID", Str), F("kickedUserIDs", Strs), F("reason", Str), F("sendMessage", Bool)];
const MUTE_GROUP_MEMBER: &[F] = &[F("groupID", Str), F("userID", Str), F("mutedSeconds", U32)];
const SET_GROUP_INFO_EX: &[F] = &[
    F("groupID", Str),
    F("groupName", Str),
    F("notification", Str),
    F("introduction", Str),
    F("faceURL", Str),
    F("ex", Str),
    F("needVerification", I32),
    F("lookMemberInfo", I32),
    F("applyMemberFriend", I32),
];
const GROUP_APPLICATION_RESPONSE: &[F] =
    &[F("groupID", Str), F("fromUserID", Str), F("handledMsg", Str), F("handleResult", I32)];
const TRANSFER_GROUP_OWNER: &[F] = &[F("groupID", Str), F("oldOwnerUserID", Str), F("newOwnerUserID", Str)];
const DISMISS_GROUP: &[F] = &[F("groupID", Str), F("deleteMember", Bool), F("sendMessage", Bool)];
const GROUP_APPLICATION_LIST: &[F] =
    &[F("pagination", Obj(PAGINATION)), F("fromUserID", Str), F("groupIDs", Strs), F("handleResults", I32s)];
const USER_REQ_APPLICATION_LIST: &[F] =
    &[F("pagination", Obj(PAGINATION)), F("userID", Str), F("groupIDs", Strs), F("handleResults", I32s)];
/// `GetFullGroupMemberUserIDsReq`.
const FULL_IDS_BY_GROUP: &[F] = &[F("groupID", Str), F("idHash", U64)];
const BATCH_INCREMENTAL_GROUP_MEMBER: &[F] = &[F("userID", Str), F("reqList", Objs(INCREMENTAL_GROUP_MEMBER))];
const SET_GROUP_MEMBERS_INFO: &[F] = &[F("members", Objs(SET_GROUP_MEMBER_INFO))];

/// `sdkws.PullMessageBySeqsReq` (`order` is the enum `PullOrder`).
const PULL_MESSAGE_BY_SEQS: &[F] = &[F("userID", Str), F("seqRanges", Objs(SEQ_RANGE)), F("order", I32)];
const REVOKE_MSG: &[F] = &[F("conversationID", Str), F("seq", I64), F("userID", Str)];
const MARK_MSGS_AS_READ: &[F] = &[F("conversationID", Str), F("seqs", I64s), F("userID", Str)];
const MARK_CONVERSATION_AS_READ: &[F] =
    &[F("conversationID", Str), F("userID", Str), F("hasReadSeq", I64), F("seqs", I64s)];
const HAS_READ_AND_MAX_SEQ: &[F] = &[F("userID", Str), F("conversationIDs", Strs), F("returnPinned", Bool)];
const SET_CONVERSATION_HAS_READ_SEQ: &[F] =
    &[F("conversationID", Str), F("userID", Str), F("hasReadSeq", I64), F("noNotification", Bool)];
const CLEAR_CONVERSATIONS_MSG: &[F] =
    &[F("conversationIDs", Strs), F("userID", Str), F("deleteSyncOpt", Obj(DELETE_SYNC_OPT))];
const USER_CLEAR_ALL_MSG: &[F] = &[F("userID", Str), F("deleteSyncOpt", Obj(DELETE_SYNC_OPT))];
const DELETE_MSGS: &[F] =
    &[F("conversationID", Str), F("seqs", I64s), F("userID", Str), F("deleteSyncOpt", Obj(DELETE_SYNC_OPT))];

const SORTED_CONVERSATION_LIST: &[F] =
    &[F("userID", Str), F("conversationIDs", Strs), F("pagination", Obj(PAGINATION))];
const GET_CONVERSATION: &[F] = &[F("conversationID", Str), F("ownerUserID", Str)];
/// `conversation.GetConversationsReq` and `jssdk.GetConversationsReq`.
const OWNER_CONVERSATIONS: &[F] = &[F("ownerUserID", Str), F("conversationIDs", Strs)];
const SET_CONVERSATIONS: &[F] = &[F("userIDs", Strs), F("conversation", Obj(CONVERSATION_REQ))];
const DELETE_CONVERSATIONS: &[F] = &[F("ownerUserID", Str), F("needDeleteTime", I64), F("conversationIDs", Strs)];
const UPDATE_CONVERSATIONS_BY_USER: &[F] = &[F("userID", Str), F("ex", Str)];

const SET_APP_BADGE: &[F] = &[F("userID", Str), F("appUnreadCount", I32)];
const PART_SIZE: &[F] = &[F("size", I64)];
// `urlPrefix` is overwritten by OpenIM's API layer (BindAfter setURLPrefix) whatever the body says.
const INITIATE_MULTIPART_UPLOAD: &[F] = &[
    F("hash", Str),
    F("size", I64),
    F("partSize", I64),
    F("maxParts", I32),
    F("cause", Str),
    F("name", Str),
    F("contentType", Str),
    F("urlPrefix", Str),
];
const COMPLETE_MULTIPART_UPLOAD: &[F] = &[
    F("uploadID", Str),
    F("parts", Strs),
    F("name", Str),
    F("contentType", Str),
    F("cause", Str),
    F("urlPrefix", Str),
];

/// `jssdk.GetActiveConversationsReq` (`count` is an `int64` in the proto).
const ACTIVE_CONVERSATIONS: &[F] = &[F("ownerUserID", Str), F("count", I64)];

#[cfg(test)]
mod tests {
    use super::super::gojson::{decode, go_key_matches, Ty};
    use super::super::{allowed_paths, ALLOWED};
    use super::*;

    /// The type a schema gives a dotted field.
    fn field(schema: &'static [F], dotted: &str) -> Option<Ty> {
        let mut fields = schema;
        let mut segs = dotted.split('.').peekable();
        while let Some(seg) = segs.next() {
            let F(_, ty) = *fields.iter().find(|f| f.0 == seg)?;
            if segs.peek().is_none() {
                return Some(ty);
            }
            fields = match ty {
                Obj(f) | Objs(f) => f,
                _ => return None,
            };
        }
        None
    }

    #[test]
    fn every_allowed_path_has_exactly_one_schema_and_vice_versa() {
        let allowed: Vec<&str> = allowed_paths().collect();
        let schemas: Vec<&str> = SCHEMAS.iter().map(|(p, _)| *p).collect();
        for p in &allowed {
            let n = schemas.iter().filter(|s| *s == p).count();
            assert_eq!(n, 1, "{p}: {n} schemas");
            assert!(request_schema(p).is_some(), "{p}");
        }
        for s in &schemas {
            assert!(allowed.contains(s), "{s} has a schema but is not allow-listed");
        }
        assert_eq!(allowed, schemas, "SCHEMAS lists the paths in the order of ALLOWED");
        assert_eq!(ALLOWED.len(), SCHEMAS.len());
        assert!(request_schema("/auth/get_admin_token").is_none());
    }

    fn no_two_fields_fold_alike(fields: &'static [F], at: &str) {
        for (i, a) in fields.iter().enumerate() {
            assert!(a.0.is_ascii() && !a.0.is_empty(), "{at}: field name {:?}", a.0);
            for b in &fields[i + 1..] {
                assert!(
                    !go_key_matches(a.0, b.0) && !go_key_matches(b.0, a.0),
                    "{at}: `{}` and `{}` are one field to Go",
                    a.0,
                    b.0
                );
            }
            if let Obj(inner) | Objs(inner) = a.1 {
                no_two_fields_fold_alike(inner, &format!("{at}.{}", a.0));
            }
        }
    }

    #[test]
    fn no_schema_object_holds_two_fields_go_would_match_to_each_other() {
        for (path, schema) in SCHEMAS {
            no_two_fields_fold_alike(schema, path);
        }
    }

    /// Whether any field at `dotted`'s parent object folds to its last segment (Go's matching).
    fn reachable(path: &str, dotted: &str) -> bool {
        let schema = request_schema(path).expect("allow-listed");
        let (parent, last) = dotted.rsplit_once('.').map_or((None, dotted), |(p, l)| (Some(p), l));
        let fields = match parent.map(|p| field(schema, p)) {
            None => schema,
            Some(Some(Obj(f) | Objs(f))) => f,
            Some(other) => panic!("{path}: {dotted}: parent is {other:?}"),
        };
        fields.iter().any(|f| go_key_matches(f.0, last))
    }

    #[test]
    fn privileged_fields_are_left_out() {
        for (path, dotted) in [
            ("/user/update_user_info", "userInfo.appMangerLevel"),
            ("/user/update_user_info", "userInfo.createTime"),
            ("/group/create_group", "groupInfo.ownerUserID"),
            ("/group/create_group", "groupInfo.creatorUserID"),
            ("/group/create_group", "groupInfo.status"),
            ("/group/create_group", "groupInfo.memberCount"),
            ("/group/create_group", "groupInfo.createTime"),
            ("/group/create_group", "groupInfo.notificationUserID"),
            ("/group/create_group", "groupInfo.notificationUpdateTime"),
            ("/msg/delete_msgs", "deleteSyncOpt.IsSyncOther"),
            ("/msg/clear_conversation_msg", "deleteSyncOpt.IsSyncOther"),
            ("/msg/user_clear_all_msg", "deleteSyncOpt.IsSyncOther"),
            ("/conversation/set_conversations", "conversation.minSeq"),
            ("/conversation/set_conversations", "conversation.maxSeq"),
        ] {
            assert!(!reachable(path, dotted), "{path}: {dotted} must not be in the schema");
        }
        // The identity fields imgate binds stay.
        for (path, dotted) in [
            ("/user/update_user_info", "userInfo.userID"),
            ("/group/create_group", "ownerUserID"),
            ("/group/create_group", "groupInfo.groupType"),
            ("/msg/delete_msgs", "deleteSyncOpt.IsSyncSelf"),
        ] {
            assert!(reachable(path, dotted), "{path}: {dotted} must be in the schema");
        }
    }

    #[test]
    fn left_out_fields_are_dropped_before_forwarding() {
        let body = br#"{"userInfo":{"userID":"a","nickname":"n","AppMangerLevel":3,"createTime":1}}"#;
        let got = decode(UPDATE_USER_INFO, body).expect("decodes");
        assert_eq!(serde_json::Value::Object(got), serde_json::json!({"userInfo":{"userID":"a","nickname":"n"}}));
        let body = br#"{"userID":"a","seqs":[1],"deleteSyncOpt":{"isSyncSelf":true,"isSyncOther":true}}"#;
        let got = decode(DELETE_MSGS, body).expect("decodes");
        assert_eq!(got["deleteSyncOpt"], serde_json::json!({"IsSyncSelf": true}));
    }
}
