//! `/group/*` routes: creation, joining, membership, roles, muting, dismissal, requests, member
//! info, and the incremental sync of joined groups and group members.
//!
//! Faithful weaknesses (§10): `create_group` and `invite_user_to_group` add any existing users
//! without consent, `join_group` joins the body's `inviterUserID` (never compared with the token),
//! `get_groups_info` answers for any group, members or not (so a client can look at a group
//! before joining it). Role rules follow contract §1.3 (owner 100 / admin 60 / member 20; app
//! admins bypass). Membership changes are logged as `GroupMemberMgo` does (`S pkg/common/storage/
//! database/mgo/group_member.go:66-155`): the group's member log (insert/delete/update of userIDs,
//! the sort pseudo-ID on role changes, the group pseudo-ID on group info changes) and each user's
//! joined-group log (insert/delete of groupIDs; group info changes are not logged there).
//! Not implemented (404): set_group_info, abstract info, get_groups, and the application-list
//! variants other than
//! `get_recv_group_applicationList`, `get_user_req_group_applicationList` and
//! `get_specified_user_group_request_info`.

use std::collections::HashSet;

use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::json::{decode, nested};
use crate::server::{Ctx, HResult, Handler};
use crate::state::*;
use crate::user::{check_pagination, Pagination};
use crate::versionlog::{id_hash, GROUP_CHANGE_ID, SORT_CHANGE_ID, STATE_DELETE, STATE_INSERT, STATE_UPDATE};

pub fn routes() -> Vec<(&'static str, Handler)> {
    vec![
        ("/group/create_group", create_group as Handler),
        ("/group/join_group", join_group),
        ("/group/quit_group", quit_group),
        ("/group/invite_user_to_group", invite_user_to_group),
        ("/group/kick_group", kick_group),
        ("/group/get_groups_info", get_groups_info),
        ("/group/get_group_member_list", get_group_member_list),
        ("/group/get_group_members_info", get_group_members_info),
        ("/group/get_joined_group_list", get_joined_group_list),
        ("/group/dismiss_group", dismiss_group),
        ("/group/group_application_response", group_application_response),
        ("/group/get_recv_group_applicationList", get_recv_group_application_list),
        ("/group/get_user_req_group_applicationList", get_user_req_group_application_list),
        ("/group/mute_group_member", mute_group_member),
        ("/group/cancel_mute_group_member", cancel_mute_group_member),
        ("/group/mute_group", mute_group),
        ("/group/cancel_mute_group", cancel_mute_group),
        ("/group/transfer_group", transfer_group),
        ("/group/set_group_info_ex", set_group_info_ex),
        ("/group/set_group_member_info", set_group_member_info),
        ("/group/get_specified_user_group_request_info", get_specified_user_group_request_info),
        ("/group/get_full_group_member_user_ids", get_full_group_member_user_ids),
        ("/group/get_full_join_group_ids", get_full_join_group_ids),
        ("/group/get_incremental_join_groups", get_incremental_join_groups),
        ("/group/get_incremental_group_members", get_incremental_group_members),
        ("/group/get_incremental_group_members_batch", get_incremental_group_members_batch),
    ]
}

/// A membership insert: the group's member log and each user's joined-group log.
fn log_joined(st: &mut State, gid: &str, users: &[String]) {
    st.member_versions.incr(gid, users, STATE_INSERT);
    for u in users {
        st.join_versions.incr(u, &[gid], STATE_INSERT);
    }
}

/// A membership delete, logged like [`log_joined`].
fn log_left(st: &mut State, gid: &str, users: &[String]) {
    st.member_versions.incr(gid, users, STATE_DELETE);
    for u in users {
        st.join_versions.incr(u, &[gid], STATE_DELETE);
    }
}

/// `UpdateGroup`: the group pseudo-ID in the member log (members re-fetch the group info).
fn log_group_changed(st: &mut State, gid: &str) {
    st.member_versions.incr(gid, &[GROUP_CHANGE_ID], STATE_UPDATE);
}

/// All request shapes of this module folded into one struct (unused keys stay empty).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Req {
    #[serde(rename = "groupID")]
    group_id: String,
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "userIDs")]
    user_ids: Option<Vec<String>>,
    #[serde(rename = "groupIDs")]
    group_ids: Option<Vec<String>>,
    #[serde(rename = "reqMessage")]
    req_message: String,
    #[serde(rename = "joinSource")]
    join_source: i32,
    #[serde(rename = "inviterUserID")]
    inviter_user_id: String,
    ex: String,
    #[serde(rename = "invitedUserIDs")]
    invited_user_ids: Option<Vec<String>>,
    #[serde(rename = "kickedUserIDs")]
    kicked_user_ids: Option<Vec<String>>,
    #[serde(deserialize_with = "nested")]
    pagination: Option<Pagination>,
    filter: i32,
    keyword: String,
    #[serde(rename = "fromUserID")]
    from_user_id: String,
    #[serde(rename = "deleteMember")]
    delete_member: bool,
    #[serde(rename = "handledMsg")]
    handled_msg: String,
    #[serde(rename = "handleResult")]
    handle_result: i32,
    #[serde(rename = "mutedSeconds")]
    muted_seconds: i64,
    #[serde(rename = "oldOwnerUserID")]
    old_owner_user_id: String,
    #[serde(rename = "newOwnerUserID")]
    new_owner_user_id: String,
}

fn require(v: &str, what: &str) -> Result<(), ApiError> {
    if v.is_empty() {
        Err(ApiError::Args(format!("{what} is empty")))
    } else {
        Ok(())
    }
}

fn not_found(gid: &str) -> ApiError {
    ApiError::RecordNotFound(format!("group {gid} not found"))
}

fn group<'s>(st: &'s State, gid: &str) -> Result<&'s Group, ApiError> {
    st.groups.get(gid).ok_or_else(|| not_found(gid))
}

fn group_mut<'s>(st: &'s mut State, gid: &str) -> Result<&'s mut Group, ApiError> {
    st.groups.get_mut(gid).ok_or_else(|| not_found(gid))
}

/// Role of the op user in a group, `None` when not a member.
fn op_role(ctx: &Ctx<'_>, g: &Group) -> Option<i32> {
    g.member(&ctx.op_user).map(|m| m.role_level)
}

/// `checkManageGroup`: owner/admin of the group, or app admin.
fn check_manage(ctx: &Ctx<'_>, g: &Group) -> Result<(), ApiError> {
    if ctx.is_admin() || matches!(op_role(ctx, g), Some(ROLE_OWNER | ROLE_ADMIN)) {
        Ok(())
    } else {
        Err(ApiError::NoPermission("no group owner or admin".into()))
    }
}

/// `checkAdminOrInGroup`: member of the group, or app admin.
fn check_in_group(ctx: &Ctx<'_>, g: &Group) -> Result<(), ApiError> {
    if ctx.is_admin() || op_role(ctx, g).is_some() {
        Ok(())
    } else {
        Err(ApiError::NoPermission("op user not in group".into()))
    }
}

fn new_member(user_id: &str, role: i32, source: i32, inviter: &str, op: &str) -> Member {
    Member {
        user_id: user_id.to_string(),
        role_level: role,
        join_time: now_ms(),
        join_source: source,
        inviter_user_id: inviter.to_string(),
        operator_user_id: op.to_string(),
        ..Default::default()
    }
}

/// `GenGroupID`: decimal of the first 8 hex digits of an md5 (§8.3).
fn gen_group_id(st: &State) -> String {
    loop {
        let mut h = Md5::new();
        h.update(random_md5().as_bytes());
        let hexs = hex::encode(h.finalize());
        let id = u64::from_str_radix(&hexs[..8], 16).unwrap_or(0).to_string();
        if !st.groups.contains_key(&id) {
            return id;
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GroupInfoIn {
    #[serde(rename = "groupID")]
    group_id: String,
    #[serde(rename = "groupName")]
    group_name: String,
    notification: String,
    introduction: String,
    #[serde(rename = "faceURL")]
    face_url: String,
    ex: String,
    #[serde(rename = "groupType")]
    group_type: i32,
    #[serde(rename = "needVerification")]
    need_verification: i32,
    #[serde(rename = "lookMemberInfo")]
    look_member_info: i32,
    #[serde(rename = "applyMemberFriend")]
    apply_member_friend: i32,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateReq {
    #[serde(rename = "ownerUserID")]
    owner_user_id: String,
    #[serde(rename = "memberUserIDs")]
    member_user_ids: Vec<String>,
    #[serde(rename = "adminUserIDs")]
    admin_user_ids: Vec<String>,
    #[serde(rename = "groupInfo", deserialize_with = "nested")]
    group_info: Option<GroupInfoIn>,
}

/// Everyone named in a create request plus the op user; duplicates are an ArgsError.
fn create_member_ids<'a>(ctx: &'a Ctx<'_>, r: &'a CreateReq) -> Result<Vec<&'a str>, ApiError> {
    let mut ids: Vec<&str> = r.member_user_ids.iter().chain(&r.admin_user_ids).map(String::as_str).collect();
    ids.push(&r.owner_user_id);
    if !ids.contains(&ctx.op_user.as_str()) {
        ids.push(&ctx.op_user);
    }
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
        return Err(ApiError::Args("group member repeated".into()));
    }
    Ok(ids)
}

/// ⚠ Members/admins may be any existing users, added without consent (§10.2).
fn create_group(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let mut r: CreateReq = decode(body)?;
    let info = r.group_info.take().ok_or_else(|| ApiError::Args("groupInfo is empty".into()))?;
    if !(0..=2).contains(&info.group_type) {
        return Err(ApiError::Args("GroupType is invalid".into()));
    }
    require(&r.owner_user_id, "ownerUserID")?;
    if info.group_type != 2 {
        return Err(ApiError::Args("group type only supports 2".into()));
    }
    ctx.check_access(&r.owner_user_id)?;
    let ids = create_member_ids(ctx, &r)?;
    let mut st = ctx.lock();
    if let Some(id) = ids.iter().find(|id| st.user(id).is_none()) {
        return Err(ApiError::UserIdNotFound(format!("user {id} not found")));
    }
    let gid = if info.group_id.is_empty() { gen_group_id(&st) } else { info.group_id.clone() };
    if st.groups.contains_key(&gid) {
        return Err(ApiError::GroupIdExisted("group id existed".into()));
    }
    let op = ctx.op_user.clone();
    let roles = [
        (ROLE_OWNER, std::slice::from_ref(&r.owner_user_id)),
        (ROLE_ADMIN, &r.admin_user_ids[..]),
        (ROLE_MEMBER, &r.member_user_ids[..]),
    ];
    let members = roles.iter().flat_map(|(role, ids)| ids.iter().map(|u| new_member(u, *role, 2, &op, &op))).collect();
    let g = Group {
        group_id: gid.clone(),
        group_name: info.group_name,
        notification: info.notification,
        introduction: info.introduction,
        face_url: info.face_url,
        create_time: now_ms(),
        ex: info.ex,
        creator_user_id: op,
        group_type: info.group_type,
        need_verification: info.need_verification,
        look_member_info: info.look_member_info,
        apply_member_friend: info.apply_member_friend,
        members,
        ..Default::default()
    };
    let out = st.group_info(&g);
    let ids: Vec<String> = g.members.iter().map(|m| m.user_id.clone()).collect();
    st.groups.insert(gid.clone(), g);
    log_joined(&mut st, &gid, &ids);
    Ok(Some(json!({ "groupInfo": out })))
}

/// ⚠ The joining user is `inviterUserID` from the body; no check against the token (§10.1).
fn join_group(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.group_id, "groupID")?;
    if !(1..=4).contains(&r.join_source) {
        return Err(ApiError::Args("joinSource is invalid".into()));
    }
    let mut st = ctx.lock();
    if st.user(&r.inviter_user_id).is_none() {
        return Err(ApiError::RecordNotFound(format!("user {} not found", r.inviter_user_id)));
    }
    let g = group(&st, &r.group_id)?;
    if g.status == GROUP_DISMISSED {
        return Err(ApiError::DismissedAlready(String::new()));
    }
    if g.member(&r.inviter_user_id).is_some() {
        return Err(ApiError::Args(String::new()));
    }
    if g.need_verification == 2 {
        let m = new_member(&r.inviter_user_id, ROLE_MEMBER, r.join_source, &r.inviter_user_id, &ctx.op_user);
        group_mut(&mut st, &r.group_id)?.members.push(m);
        log_joined(&mut st, &r.group_id, std::slice::from_ref(&r.inviter_user_id));
        return Ok(None);
    }
    let req = GroupRequest {
        user_id: r.inviter_user_id.clone(),
        group_id: r.group_id.clone(),
        req_msg: r.req_message,
        req_time: now_ms(),
        ex: r.ex,
        join_source: r.join_source,
        inviter_user_id: r.inviter_user_id,
        ..Default::default()
    };
    upsert_request(&mut st, req);
    Ok(None)
}

fn upsert_request(st: &mut State, req: GroupRequest) {
    st.group_requests.retain(|q| !(q.group_id == req.group_id && q.user_id == req.user_id));
    st.group_requests.push(req);
}

fn quit_group(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.group_id, "groupID")?;
    let uid = if r.user_id.is_empty() { ctx.op_user.clone() } else { r.user_id.clone() };
    ctx.check_access(&uid)?;
    let mut st = ctx.lock();
    let g = group_mut(&mut st, &r.group_id)?;
    let m = g.member(&uid).ok_or_else(|| ApiError::RecordNotFound("not in group".into()))?;
    if m.role_level == ROLE_OWNER {
        return Err(ApiError::NoPermission("group owner can't quit".into()));
    }
    g.members.retain(|m| m.user_id != uid);
    log_left(&mut st, &r.group_id, &[uid]);
    Ok(None)
}

/// Any member (or app admin) may invite; in `needVerification == 1` groups an ordinary member's
/// invitations become join requests.
fn invite_user_to_group(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.group_id, "groupID")?;
    let invited = r.invited_user_ids.ok_or_else(|| ApiError::Args("invitedUserIDs is empty".into()))?;
    if invited.is_empty() {
        return Err(ApiError::Args("user empty".into()));
    }
    if invited.iter().collect::<HashSet<_>>().len() != invited.len() {
        return Err(ApiError::Args("userID duplicate".into()));
    }
    let mut st = ctx.lock();
    let g = group(&st, &r.group_id)?;
    if g.status == GROUP_DISMISSED {
        return Err(ApiError::DismissedAlready(String::new()));
    }
    if invited.iter().any(|u| st.user(u).is_none()) {
        return Err(ApiError::RecordNotFound("user not found".into()));
    }
    let role = if ctx.is_admin() {
        None
    } else {
        Some(op_role(ctx, g).ok_or_else(|| ApiError::RecordNotFound("op user not in group".into()))?)
    };
    let op = ctx.op_user.clone();
    if g.need_verification == 1 && matches!(role, Some(ROLE_MEMBER)) {
        for u in &invited {
            let req = GroupRequest {
                user_id: u.clone(),
                group_id: r.group_id.clone(),
                req_msg: String::new(),
                req_time: now_ms(),
                join_source: 2,
                inviter_user_id: op.clone(),
                ..Default::default()
            };
            upsert_request(&mut st, req);
        }
        return Ok(None);
    }
    if invited.iter().any(|u| g.member(u).is_some()) {
        return Err(ApiError::DuplicateKey("user already in group".into()));
    }
    let g = group_mut(&mut st, &r.group_id)?;
    g.members.extend(invited.iter().map(|u| new_member(u, ROLE_MEMBER, 2, &op, &op)));
    log_joined(&mut st, &r.group_id, &invited);
    Ok(None)
}

fn kick_group(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.group_id, "groupID")?;
    let kicked = r.kicked_user_ids.ok_or_else(|| ApiError::Args("kickUserIDs is empty".into()))?;
    let mut st = ctx.lock();
    let g = group(&st, &r.group_id)?;
    if kicked.is_empty() || kicked.iter().collect::<HashSet<_>>().len() != kicked.len() {
        return Err(ApiError::Args("KickedUserIDs empty or duplicate".into()));
    }
    if kicked.contains(&ctx.op_user) {
        return Err(ApiError::Args("opUserID in KickedUserIDs".into()));
    }
    if g.owner().is_some_and(|o| kicked.contains(&o.user_id)) {
        return Err(ApiError::Args("ownerUID can not Kick".into()));
    }
    let op = op_role(ctx, g);
    for u in &kicked {
        let m = g.member(u).ok_or_else(|| ApiError::UserIdNotFound(u.clone()))?;
        if ctx.is_admin() {
            continue;
        }
        match op {
            Some(ROLE_OWNER) => {}
            Some(ROLE_ADMIN) if m.role_level == ROLE_MEMBER => {}
            None => return Err(ApiError::NoPermission("opUserID no in group".into())),
            _ => return Err(ApiError::NoPermission("no permission to kick".into())),
        }
    }
    group_mut(&mut st, &r.group_id)?.members.retain(|m| !kicked.contains(&m.user_id));
    log_left(&mut st, &r.group_id, &kicked);
    Ok(None)
}

/// ⚠ Info of any group for any token (§10.6).
fn get_groups_info(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    let ids = r.group_ids.ok_or_else(|| ApiError::Args("GroupIDs is empty".into()))?;
    let st = ctx.lock();
    let infos: Vec<_> = ids.iter().filter_map(|id| st.groups.get(id)).map(|g| st.group_info(g)).collect();
    Ok(Some(json!({ "groupInfos": infos })))
}

fn member_filter(filter: i32, role: i32) -> bool {
    match filter {
        1 => role == ROLE_OWNER,
        2 => role == ROLE_ADMIN,
        3 => role == ROLE_MEMBER,
        4 => role == ROLE_ADMIN || role == ROLE_MEMBER,
        5 => role == ROLE_OWNER || role == ROLE_ADMIN,
        _ => true,
    }
}

fn get_group_member_list(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.group_id, "groupID")?;
    let p = check_pagination(&r.pagination)?;
    if !(0..=5).contains(&r.filter) {
        return Err(ApiError::Args("filter is invalid".into()));
    }
    let st = ctx.lock();
    let g = group(&st, &r.group_id)?;
    check_in_group(ctx, g)?;
    let all: Vec<_> = g
        .members
        .iter()
        .filter(|m| member_filter(r.filter, m.role_level))
        .map(|m| st.member_info(&g.group_id, m))
        .filter(|v| {
            r.keyword.is_empty()
                || v["nickname"].as_str().is_some_and(|n| n.contains(&r.keyword))
                || v["userID"].as_str().is_some_and(|n| n.contains(&r.keyword))
        })
        .collect();
    let page = paginate(&all, p.page_number, p.show_number);
    Ok(Some(json!({"total": all.len() as u32, "members": page})))
}

fn get_group_members_info(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.group_id, "groupID")?;
    let ids = r.user_ids.ok_or_else(|| ApiError::Args("userIDs is empty".into()))?;
    let st = ctx.lock();
    let g = group(&st, &r.group_id)?;
    check_in_group(ctx, g)?;
    let members: Vec<_> = ids.iter().filter_map(|u| g.member(u)).map(|m| st.member_info(&g.group_id, m)).collect();
    Ok(Some(json!({ "members": members })))
}

fn get_joined_group_list(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    let p = check_pagination(&r.pagination)?;
    require(&r.from_user_id, "fromUserID")?;
    ctx.check_access(&r.from_user_id)?;
    let st = ctx.lock();
    let all: Vec<_> =
        st.groups.values().filter(|g| g.member(&r.from_user_id).is_some()).map(|g| st.group_info(g)).collect();
    let page = paginate(&all, p.page_number, p.show_number);
    Ok(Some(json!({"total": all.len() as u32, "groups": page})))
}

fn dismiss_group(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.group_id, "groupID")?;
    let mut st = ctx.lock();
    let g = group_mut(&mut st, &r.group_id)?;
    let owner = g.owner().map(|m| m.user_id.clone()).unwrap_or_default();
    if !ctx.is_admin() && owner != ctx.op_user {
        return Err(ApiError::NoPermission("not group owner".into()));
    }
    if !r.delete_member && g.status == GROUP_DISMISSED {
        return Err(ApiError::DismissedAlready("group status is dismissed".into()));
    }
    g.status = GROUP_DISMISSED;
    if !r.delete_member {
        log_group_changed(&mut st, &r.group_id);
        return Ok(None);
    }
    // The member log document is deleted (its next read starts a new one, new versionID).
    let gone: Vec<String> = g.members.drain(..).map(|m| m.user_id).collect();
    st.member_versions.delete(&r.group_id);
    for u in &gone {
        st.join_versions.incr(u, &[&r.group_id], STATE_DELETE);
    }
    Ok(None)
}

fn group_application_response(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.group_id, "groupID")?;
    require(&r.from_user_id, "fromUserID")?;
    if r.handle_result != 1 && r.handle_result != -1 {
        return Err(ApiError::Args("HandleResult unknown".into()));
    }
    let mut st = ctx.lock();
    check_manage(ctx, group(&st, &r.group_id)?)?;
    let idx = st
        .group_requests
        .iter()
        .position(|q| q.group_id == r.group_id && q.user_id == r.from_user_id)
        .ok_or_else(|| ApiError::RecordNotFound("group request not found".into()))?;
    if st.group_requests[idx].handle_result != 0 {
        return Err(ApiError::GroupRequestHandled("group request already processed".into()));
    }
    if st.user(&r.from_user_id).is_none() {
        return Err(ApiError::RecordNotFound(format!("user {} not found", r.from_user_id)));
    }
    let q = &mut st.group_requests[idx];
    q.handle_result = r.handle_result;
    q.handle_msg = r.handled_msg;
    q.handle_user_id = ctx.op_user.clone();
    q.handle_time = now_ms();
    let (source, inviter) = (q.join_source, q.inviter_user_id.clone());
    let g = group_mut(&mut st, &r.group_id)?;
    if r.handle_result == 1 && g.member(&r.from_user_id).is_none() {
        g.members.push(new_member(&r.from_user_id, ROLE_MEMBER, source, &inviter, &ctx.op_user));
        log_joined(&mut st, &r.group_id, std::slice::from_ref(&r.from_user_id));
    }
    Ok(None)
}

fn request_view(st: &State, q: &GroupRequest) -> serde_json::Value {
    let user = st.user(&q.user_id).map(PublicUserInfo::from);
    let group = st.groups.get(&q.group_id).map(|g| st.group_info(g));
    json!({"userInfo": user, "groupInfo": group, "handleResult": q.handle_result, "reqMsg": q.req_msg,
           "handleMsg": q.handle_msg, "reqTime": q.req_time, "handleUserID": q.handle_user_id,
           "handleTime": q.handle_time, "ex": q.ex, "joinSource": q.join_source, "inviterUserID": q.inviter_user_id})
}

/// Requests to the groups `fromUserID` owns or administers.
fn get_recv_group_application_list(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    let p = check_pagination(&r.pagination)?;
    require(&r.from_user_id, "fromUserID")?;
    ctx.check_access(&r.from_user_id)?;
    let st = ctx.lock();
    let all: Vec<_> = st
        .group_requests
        .iter()
        .filter(|q| {
            st.groups
                .get(&q.group_id)
                .and_then(|g| g.member(&r.from_user_id))
                .is_some_and(|m| m.role_level != ROLE_MEMBER)
        })
        .map(|q| request_view(&st, q))
        .collect();
    let page = paginate(&all, p.page_number, p.show_number);
    Ok(Some(json!({"total": all.len() as u32, "groupRequests": page})))
}

fn get_user_req_group_application_list(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.user_id, "UserID")?;
    let p = check_pagination(&r.pagination)?;
    ctx.check_access(&r.user_id)?;
    let st = ctx.lock();
    let all: Vec<_> =
        st.group_requests.iter().filter(|q| q.user_id == r.user_id).map(|q| request_view(&st, q)).collect();
    let page = paginate(&all, p.page_number, p.show_number);
    Ok(Some(json!({"total": all.len() as u32, "groupRequests": page})))
}

/// Shared body of mute/cancel-mute member: role rules of `MuteGroupMember`.
fn set_member_mute(ctx: &Ctx<'_>, body: &[u8], mute: bool) -> HResult {
    let r: Req = decode(body)?;
    require(&r.group_id, "groupID")?;
    require(&r.user_id, "userID")?;
    if mute && r.muted_seconds <= 0 {
        return Err(ApiError::Args("mutedSeconds is empty".into()));
    }
    let mut st = ctx.lock();
    let g = group_mut(&mut st, &r.group_id)?;
    let target = g.member(&r.user_id).ok_or_else(|| ApiError::RecordNotFound("member not found".into()))?.role_level;
    if !ctx.is_admin() {
        let op = g
            .member(&ctx.op_user)
            .map(|m| m.role_level)
            .ok_or_else(|| ApiError::RecordNotFound("op user not in group".into()))?;
        let allowed = match target {
            ROLE_OWNER => false,
            ROLE_ADMIN => op == ROLE_OWNER,
            _ => op == ROLE_OWNER || op == ROLE_ADMIN,
        };
        if !allowed {
            return Err(ApiError::NoPermission("no permission to (un)mute this member".into()));
        }
    }
    if let Some(m) = g.member_mut(&r.user_id) {
        m.mute_end_time = if mute { now_ms() + r.muted_seconds * 1000 } else { 0 };
    }
    st.member_versions.incr(&r.group_id, &[&r.user_id], STATE_UPDATE);
    Ok(None)
}

fn mute_group_member(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    set_member_mute(ctx, body, true)
}

fn cancel_mute_group_member(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    set_member_mute(ctx, body, false)
}

fn set_group_status(ctx: &Ctx<'_>, body: &[u8], status: i32) -> HResult {
    let r: Req = decode(body)?;
    require(&r.group_id, "groupID")?;
    let mut st = ctx.lock();
    check_manage(ctx, group(&st, &r.group_id)?)?;
    group_mut(&mut st, &r.group_id)?.status = status;
    log_group_changed(&mut st, &r.group_id);
    Ok(None)
}

fn mute_group(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    set_group_status(ctx, body, GROUP_MUTED)
}

fn cancel_mute_group(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    set_group_status(ctx, body, GROUP_OK)
}

fn transfer_group(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.group_id, "groupID")?;
    require(&r.old_owner_user_id, "oldOwnerUserID")?;
    require(&r.new_owner_user_id, "newOwnerUserID")?;
    let mut st = ctx.lock();
    let g = group_mut(&mut st, &r.group_id)?;
    if g.status == GROUP_DISMISSED {
        return Err(ApiError::DismissedAlready(String::new()));
    }
    if r.old_owner_user_id == r.new_owner_user_id {
        return Err(ApiError::Args("OldOwnerUserID == NewOwnerUserID".into()));
    }
    if !ctx.is_admin() && ctx.op_user != r.old_owner_user_id {
        return Err(ApiError::NoPermission("no permission transfer group owner".into()));
    }
    let old = g.member(&r.old_owner_user_id).ok_or_else(|| ApiError::Args("OldOwnerUser not in group".into()))?;
    let old_role = old.role_level;
    g.member(&r.new_owner_user_id).ok_or_else(|| ApiError::Args("NewOwnerUser not in group".into()))?;
    if old_role != ROLE_OWNER {
        return Err(ApiError::NoPermission("OldOwnerUser is not group owner".into()));
    }
    for m in g.members.iter_mut() {
        if m.user_id == r.old_owner_user_id {
            m.role_level = ROLE_MEMBER;
        } else if m.user_id == r.new_owner_user_id {
            m.role_level = ROLE_OWNER;
        }
    }
    let ids = [SORT_CHANGE_ID, r.old_owner_user_id.as_str(), r.new_owner_user_id.as_str()];
    st.member_versions.incr(&r.group_id, &ids, STATE_UPDATE);
    Ok(None)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SetInfoExReq {
    #[serde(rename = "groupID")]
    group_id: String,
    #[serde(rename = "groupName")]
    group_name: Option<String>,
    notification: Option<String>,
    introduction: Option<String>,
    #[serde(rename = "faceURL")]
    face_url: Option<String>,
    ex: Option<String>,
    #[serde(rename = "needVerification")]
    need_verification: Option<i32>,
    #[serde(rename = "lookMemberInfo")]
    look_member_info: Option<i32>,
    #[serde(rename = "applyMemberFriend")]
    apply_member_friend: Option<i32>,
}

fn set_group_info_ex(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: SetInfoExReq = decode(body)?;
    require(&r.group_id, "groupID")?;
    let mut st = ctx.lock();
    check_manage(ctx, group(&st, &r.group_id)?)?;
    let g = group_mut(&mut st, &r.group_id)?;
    if g.status == GROUP_DISMISSED {
        return Err(ApiError::DismissedAlready(String::new()));
    }
    let changes = [r.group_name.is_some(), r.notification.is_some(), r.introduction.is_some(), r.face_url.is_some()];
    let more = [r.ex.is_some(), r.need_verification.is_some(), r.look_member_info.is_some()];
    if !changes.iter().chain(&more).any(|c| *c) && r.apply_member_friend.is_none() {
        return Ok(None);
    }
    if let Some(v) = r.notification {
        g.notification = v;
        g.notification_update_time = now_ms();
        g.notification_user_id = ctx.op_user.clone();
    }
    g.group_name = r.group_name.unwrap_or(std::mem::take(&mut g.group_name));
    g.introduction = r.introduction.unwrap_or(std::mem::take(&mut g.introduction));
    g.face_url = r.face_url.unwrap_or(std::mem::take(&mut g.face_url));
    g.ex = r.ex.unwrap_or(std::mem::take(&mut g.ex));
    g.need_verification = r.need_verification.unwrap_or(g.need_verification);
    g.look_member_info = r.look_member_info.unwrap_or(g.look_member_info);
    g.apply_member_friend = r.apply_member_friend.unwrap_or(g.apply_member_friend);
    log_group_changed(&mut st, &r.group_id);
    Ok(None)
}

/// One entry of `SetGroupMemberInfoReq.members`: wrapper fields, absent/null = keep.
#[derive(Deserialize, Default)]
#[serde(default)]
struct MemberSet {
    #[serde(rename = "groupID")]
    group_id: String,
    #[serde(rename = "userID")]
    user_id: String,
    nickname: Option<String>,
    #[serde(rename = "faceURL")]
    face_url: Option<String>,
    #[serde(rename = "roleLevel")]
    role_level: Option<i32>,
    ex: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SetMemberInfoReq {
    #[serde(deserialize_with = "crate::json::nested_vec")]
    members: Option<Vec<MemberSet>>,
}

/// ROLE: an owner edits anyone (not their own role); an admin edits ordinary members and itself;
/// an ordinary member edits only itself and cannot raise its role; app admins edit anyone, even
/// from outside the group (`S internal/rpc/group/group.go:1587-1741`).
fn set_group_member_info(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: SetMemberInfoReq = decode(body)?;
    let members = r.members.ok_or_else(|| ApiError::Args("members is empty".into()))?;
    if members.len() > 1000 {
        return Err(ApiError::Args("too many Members, need to be less than 1000".into()));
    }
    if members.is_empty() {
        return Err(ApiError::Args("members empty".into()));
    }
    for m in &members {
        match m.role_level {
            Some(ROLE_OWNER) => return Err(ApiError::NoPermission("cannot set ungroup owner".into())),
            None | Some(ROLE_ADMIN | ROLE_MEMBER) => {}
            Some(_) => return Err(ApiError::Args("invalid role level".into())),
        }
    }
    let mut st = ctx.lock();
    let mut group_ids: Vec<&str> = members.iter().map(|m| m.group_id.as_str()).collect();
    group_ids.sort_unstable();
    group_ids.dedup();
    for gid in group_ids {
        let of_group: Vec<&MemberSet> = members.iter().filter(|m| m.group_id == gid).collect();
        check_member_set(ctx, &st, gid, &of_group)?;
    }
    for m in &members {
        let g = st
            .groups
            .get_mut(&m.group_id)
            .ok_or_else(|| ApiError::RecordNotFound("mongo update not matched".into()))?;
        let target =
            g.member_mut(&m.user_id).ok_or_else(|| ApiError::RecordNotFound("mongo update not matched".into()))?;
        if let Some(v) = &m.nickname {
            target.nickname = v.clone();
        }
        if let Some(v) = &m.face_url {
            target.face_url = v.clone();
        }
        if let Some(v) = m.role_level {
            target.role_level = v;
        }
        if let Some(v) = &m.ex {
            target.ex = v.clone();
        }
        let has_update = m.nickname.is_some() || m.face_url.is_some() || m.role_level.is_some() || m.ex.is_some();
        if m.role_level.is_some() {
            st.member_versions.incr(&m.group_id, &[SORT_CHANGE_ID, &m.user_id], STATE_UPDATE);
        } else if has_update {
            st.member_versions.incr(&m.group_id, &[&m.user_id], STATE_UPDATE);
        }
    }
    Ok(None)
}

/// The per-group permission part of `SetGroupMemberInfo`.
fn check_member_set(ctx: &Ctx<'_>, st: &State, gid: &str, sets: &[&MemberSet]) -> Result<(), ApiError> {
    let mut ids: Vec<&str> = Vec::with_capacity(sets.len() + 1);
    for m in sets {
        if ids.contains(&m.user_id.as_str()) {
            return Err(ApiError::Args(format!("repeat group {gid} user {}", m.user_id)));
        }
        ids.push(&m.user_id);
    }
    if !ids.contains(&ctx.op_user.as_str()) {
        ids.push(&ctx.op_user);
    }
    let g = st.groups.get(gid);
    let db: Vec<&Member> = ids.iter().filter_map(|u| g.and_then(|g| g.member(u))).collect();
    let op = db.iter().find(|m| m.user_id == ctx.op_user);
    match (ids.len() - db.len(), op) {
        (0, Some(op)) if !ctx.is_admin() => {
            let self_req = sets.iter().find(|m| m.user_id == ctx.op_user);
            for m in &db {
                let denied = match op.role_level {
                    ROLE_OWNER => None,
                    ROLE_ADMIN if m.role_level == ROLE_OWNER => Some("admin can not change group owner"),
                    ROLE_ADMIN if m.role_level == ROLE_ADMIN && m.user_id != op.user_id => {
                        Some("admin can not change other group admin")
                    }
                    ROLE_ADMIN => None,
                    ROLE_MEMBER if !(m.role_level == ROLE_MEMBER && m.user_id == op.user_id) => {
                        Some("ordinary users can not change other role level")
                    }
                    ROLE_MEMBER => None,
                    _ if m.role_level >= op.role_level => Some("can not change higher role level"),
                    _ => None,
                };
                if let Some(why) = denied {
                    return Err(ApiError::NoPermission(why.into()));
                }
            }
            if let Some(level) = self_req.and_then(|m| m.role_level) {
                if level > op.role_level {
                    return Err(ApiError::NoPermission("can not improve role level by self".into()));
                }
                if op.role_level == ROLE_OWNER {
                    return Err(ApiError::Args("group owner can not change own role level".into()));
                }
            }
            Ok(())
        }
        (0, _) => Ok(()),
        (1, Some(_)) => Err(ApiError::Args("user not in group".into())),
        (1, None) if !ctx.is_admin() => Err(ApiError::NoPermission("user not in group".into())),
        (1, None) => Ok(()),
        _ => Err(ApiError::Args("user not in group".into())),
    }
}

/// The user's own requests, or, for someone else's, the group's owner/admins and app admins.
/// A group without an owner makes OpenIM index an empty owner list (`owners[0]`): a panic,
/// answered as errCode 500.
fn get_specified_user_group_request_info(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    let st = ctx.lock();
    let g = st.groups.get(&r.group_id);
    let owner = g.and_then(|g| g.owner()).map(|o| o.user_id.clone());
    let panic = || ApiError::Panic("runtime error: index out of range [0] with length 0".into());
    if r.user_id != ctx.op_user {
        let owner = owner.as_ref().ok_or_else(panic)?;
        let manager = g.and_then(|g| g.member(&ctx.op_user)).is_some_and(|m| m.role_level == ROLE_ADMIN);
        if !(manager || *owner == ctx.op_user || ctx.is_admin()) {
            return Err(ApiError::NoPermission("opUser no permission".into()));
        }
    }
    let requests: Vec<&GroupRequest> =
        st.group_requests.iter().filter(|q| q.group_id == r.group_id && q.user_id == r.user_id).collect();
    if requests.is_empty() {
        return Ok(Some(json!({"total": 0, "groupRequests": null})));
    }
    owner.ok_or_else(panic)?;
    let list: Vec<serde_json::Value> = requests.into_iter().map(|q| request_view(&st, q)).collect();
    Ok(Some(json!({"total": list.len() as u32, "groupRequests": list})))
}

/// Member IDs in OpenIM's order (`memberSort`: role_level desc, then join time).
fn member_ids(g: &Group) -> Vec<String> {
    let mut m: Vec<&Member> = g.members.iter().collect();
    m.sort_by_key(|m| (std::cmp::Reverse(m.role_level), m.join_time));
    m.into_iter().map(|m| m.user_id.clone()).collect()
}

/// The user's groups in OpenIM's order (their membership rows by role_level desc, join time).
fn joined_group_ids(st: &State, user_id: &str) -> Vec<String> {
    let mut rows: Vec<(i32, i64, &str)> = st
        .groups
        .values()
        .filter_map(|g| g.member(user_id).map(|m| (m.role_level, m.join_time, g.group_id.as_str())))
        .collect();
    rows.sort_by_key(|(role, time, _)| (std::cmp::Reverse(*role), *time));
    rows.into_iter().map(|(_, _, id)| id.to_string()).collect()
}

/// The `get_full_*` answer: IDs omitted when the client's `idHash` already matches.
fn full_ids(version_id: String, version: u64, ids: Vec<String>, key: &str, client_hash: u64) -> serde_json::Value {
    let equal = client_hash == id_hash(&ids);
    let ids = if equal { serde_json::Value::Null } else { crate::friend::list_or_null(ids) };
    json!({"version": version, "versionID": version_id, "equal": equal, key: ids})
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SyncReq {
    #[serde(rename = "groupID")]
    group_id: String,
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "idHash")]
    id_hash: u64,
    #[serde(rename = "versionID")]
    version_id: String,
    version: u64,
    #[serde(rename = "reqList", deserialize_with = "crate::json::nested_vec")]
    req_list: Option<Vec<SyncReq>>,
}

/// Members only (CheckAccessIn over the member IDs), or app admin.
fn get_full_group_member_user_ids(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: SyncReq = decode(body)?;
    require(&r.group_id, "groupID")?;
    let mut st = ctx.lock();
    let ids = st.groups.get(&r.group_id).map(member_ids).unwrap_or_default();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    ctx.check_access_in(&refs)?;
    let (version_id, version) = st.member_versions.max(&r.group_id);
    Ok(Some(full_ids(version_id, version, ids, "userIDs", r.id_hash)))
}

/// SELF(userID).
fn get_full_join_group_ids(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: SyncReq = decode(body)?;
    require(&r.user_id, "userID")?;
    ctx.check_access(&r.user_id)?;
    let mut st = ctx.lock();
    let (version_id, version) = st.join_versions.max(&r.user_id);
    let ids = joined_group_ids(&st, &r.user_id);
    Ok(Some(full_ids(version_id, version, ids, "groupIDs", r.id_hash)))
}

/// SELF(userID): joined-group changes; inserted/updated groups as `GroupInfo`.
fn get_incremental_join_groups(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: SyncReq = decode(body)?;
    ctx.check_access(&r.user_id)?;
    let mut st = ctx.lock();
    let sync = st.join_versions.sync(&r.user_id, &r.version_id, r.version);
    let infos = |ids: &[String]| -> Vec<serde_json::Value> {
        ids.iter().filter_map(|id| st.groups.get(id)).map(|g| st.group_info(g)).collect()
    };
    let (insert, update) = (infos(&sync.insert), infos(&sync.update));
    Ok(Some(json!({
        "version": sync.version, "versionID": sync.version_id, "full": sync.full,
        "delete": crate::friend::list_or_null(sync.delete), "insert": crate::friend::list_or_null(insert),
        "update": crate::friend::list_or_null(update), "sortVersion": 0,
    })))
}

/// `GetIncrementalGroupMember` of one group: member (or app admin) only; dismissed groups fail.
fn group_member_sync(ctx: &Ctx<'_>, st: &mut State, req: &SyncReq) -> Result<serde_json::Value, ApiError> {
    let g = st.groups.get(&req.group_id);
    if !ctx.is_admin() && g.is_none_or(|g| g.member(&ctx.op_user).is_none()) {
        return Err(ApiError::NoPermission("op user not in group".into()));
    }
    let g = group(st, &req.group_id)?;
    if g.status == GROUP_DISMISSED {
        return Err(ApiError::DismissedAlready(String::new()));
    }
    let sync = st.member_versions.sync(&req.group_id, &req.version_id, req.version);
    let g = group(st, &req.group_id)?;
    let infos = |ids: &[String]| -> Vec<serde_json::Value> {
        ids.iter().filter_map(|id| g.member(id)).map(|m| st.member_info(&g.group_id, m)).collect()
    };
    let (insert, update) = (infos(&sync.insert), infos(&sync.update));
    let group_info = if sync.full || sync.group_changed { st.group_info(g) } else { serde_json::Value::Null };
    Ok(json!({
        "version": sync.version, "versionID": sync.version_id, "full": sync.full,
        "delete": crate::friend::list_or_null(sync.delete), "insert": crate::friend::list_or_null(insert),
        "update": crate::friend::list_or_null(update), "group": group_info, "sortVersion": sync.sort_version,
    }))
}

/// `GetIncrementalGroupMember`: member or app admin; a dismissed group is 1204.
fn get_incremental_group_members(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: SyncReq = decode(body)?;
    let mut st = ctx.lock();
    group_member_sync(ctx, &mut st, &r).map(Some)
}

/// `BatchGetIncrementalGroupMember`: `userID` is ignored; each group is checked on its own and
/// any failure but "dismissed" (skipped) fails the whole batch; stops after 500 changes.
fn get_incremental_group_members_batch(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: SyncReq = decode(body)?;
    let mut st = ctx.lock();
    let mut out = serde_json::Map::new();
    let mut changes = 0;
    for req in r.req_list.unwrap_or_default() {
        if out.contains_key(&req.group_id) {
            continue;
        }
        let resp = match group_member_sync(ctx, &mut st, &req) {
            Ok(v) => v,
            Err(ApiError::DismissedAlready(_)) => continue,
            Err(e) => return Err(e),
        };
        changes +=
            ["insert", "update", "delete"].iter().filter_map(|k| resp[*k].as_array()).map(Vec::len).sum::<usize>();
        out.insert(req.group_id.clone(), resp);
        if changes >= 500 {
            break;
        }
    }
    let mut data = serde_json::Map::new();
    if !out.is_empty() {
        data.insert("respList".into(), serde_json::Value::Object(out));
    }
    Ok(Some(serde_json::Value::Object(data)))
}
