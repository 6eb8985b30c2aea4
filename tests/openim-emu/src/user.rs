//! `/user/*` routes: registration, profile reads/updates, directory listings and the global
//! receive option.
//!
//! Faithful weaknesses (§10): `get_users_info`, `get_users` and `get_all_users_uid` answer for
//! any token, and `set_global_msg_recv_opt` has no permission check at all. The two
//! subscription routes are accepted no-ops, as in OpenIM (`S internal/rpc/user/online.go:42-44,
//! 70-73`). A nickname or faceURL change is logged in the version logs of everyone who has the
//! user as a friend and of the groups where the member has no own nickname/face
//! (`S internal/rpc/user/user.go:680-710`). Not implemented (404): online status, user commands,
//! notification accounts, client config.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::json::{decode, nested, nested_vec};
use crate::server::{Ctx, HResult, Handler};
use crate::state::{now_ms, paginate, State, UserInfo};
use crate::versionlog::STATE_UPDATE;

pub fn routes() -> Vec<(&'static str, Handler)> {
    vec![
        ("/user/user_register", user_register as Handler),
        ("/user/get_users_info", get_users_info),
        ("/user/update_user_info", update_user_info),
        ("/user/update_user_info_ex", update_user_info_ex),
        ("/user/account_check", account_check),
        ("/user/get_users", get_users),
        ("/user/get_all_users_uid", get_all_users_uid),
        ("/user/set_global_msg_recv_opt", set_global_msg_recv_opt),
        ("/user/subscribe_users_status", subscribe_users_status),
        ("/user/get_subscribe_users_status", get_subscribe_users_status),
    ]
}

/// `sdkws.RequestPagination`.
#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct Pagination {
    #[serde(rename = "pageNumber")]
    pub page_number: i32,
    #[serde(rename = "showNumber")]
    pub show_number: i32,
}

/// The common `Check()`: pagination present and pageNumber ≥ 1.
pub fn check_pagination(p: &Option<Pagination>) -> Result<Pagination, ApiError> {
    match p {
        None => Err(ApiError::Args("pagination is empty".into())),
        Some(p) if p.page_number < 1 => Err(ApiError::Args("pageNumber is invalid".into())),
        Some(p) => Ok(p.clone()),
    }
}

/// `sdkws.UserInfo` on input.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct UserIn {
    #[serde(rename = "userID")]
    user_id: String,
    nickname: String,
    #[serde(rename = "faceURL")]
    face_url: String,
    ex: String,
    #[serde(rename = "appMangerLevel")]
    app_manger_level: i32,
    #[serde(rename = "globalRecvMsgOpt")]
    global_recv_msg_opt: i32,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RegisterReq {
    #[serde(deserialize_with = "nested_vec")]
    users: Option<Vec<UserIn>>,
}

/// `datautil.IsLegalUserID`: non-empty, letters, digits and `_` only.
fn legal_user_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(|c| c.is_alphanumeric() || c == '_')
}

fn user_register(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: RegisterReq = decode(body)?;
    let users = req.users.ok_or_else(|| ApiError::Args("users are empty".into()))?;
    if users.iter().any(|u| !legal_user_id(&u.user_id)) {
        return Err(ApiError::Args("userID is legal".into()));
    }
    if users.iter().any(|u| u.nickname.is_empty()) {
        return Err(ApiError::Args("user name is empty".into()));
    }
    if users.is_empty() {
        return Err(ApiError::Args("users is empty".into()));
    }
    ctx.require_admin()?;
    let ids: HashSet<&str> = users.iter().map(|u| u.user_id.as_str()).collect();
    if ids.len() != users.len() {
        return Err(ApiError::Args("userID repeated".into()));
    }
    let mut st = ctx.lock();
    if users.iter().any(|u| st.user(&u.user_id).is_some()) {
        return Err(ApiError::RegisteredAlready("userID registered already".into()));
    }
    let now = now_ms();
    for u in users {
        st.add_user(UserInfo {
            user_id: u.user_id,
            nickname: u.nickname,
            face_url: u.face_url,
            ex: u.ex,
            create_time: now,
            app_manger_level: u.app_manger_level,
            global_recv_msg_opt: u.global_recv_msg_opt,
            order: 0,
        });
    }
    Ok(None)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserIdsReq {
    #[serde(rename = "userIDs")]
    user_ids: Option<Vec<String>>,
}

fn get_users_info(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: UserIdsReq = decode(body)?;
    let ids = req.user_ids.ok_or_else(|| ApiError::Args("UserIDs is empty".into()))?;
    let st = ctx.lock();
    let mut seen = HashSet::new();
    let users: Vec<&UserInfo> = ids.iter().filter(|id| seen.insert(id.as_str())).filter_map(|id| st.user(id)).collect();
    Ok(Some(json!({ "usersInfo": users })))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UpdateReq {
    #[serde(rename = "userInfo", deserialize_with = "nested")]
    user_info: Option<UserIn>,
}

fn update_user_info(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: UpdateReq = decode(body)?;
    let info = req.user_info.ok_or_else(|| ApiError::Args("UserInfo is empty".into()))?;
    if info.user_id.is_empty() {
        return Err(ApiError::Args("UserID is empty".into()));
    }
    ctx.check_access(&info.user_id)?;
    let mut st = ctx.lock();
    let u = st.users.get_mut(&info.user_id).ok_or_else(|| ApiError::RecordNotFound(info.user_id.clone()))?;
    let old = (u.nickname.clone(), u.face_url.clone());
    if !info.nickname.is_empty() {
        u.nickname = info.nickname;
    }
    if !info.face_url.is_empty() {
        u.face_url = info.face_url;
    }
    if !info.ex.is_empty() {
        u.ex = info.ex;
    }
    user_info_updated(&mut st, &info.user_id, old);
    Ok(None)
}

/// `NotificationUserInfoUpdate`: when the nickname or faceURL changed, an update of the user in
/// the friend log of every owner who has them as a friend, and in the member log of every group
/// where their member record lacks its own nickname or faceURL.
fn user_info_updated(st: &mut State, user_id: &str, (old_nick, old_face): (String, String)) {
    let Some(u) = st.user(user_id) else { return };
    if u.nickname == old_nick && u.face_url == old_face {
        return;
    }
    let owners: Vec<String> = st.friends.keys().filter(|(_, f)| f == user_id).map(|(o, _)| o.clone()).collect();
    for o in owners {
        st.friend_versions.incr(&o, &[user_id], STATE_UPDATE);
    }
    let groups: Vec<String> = st
        .groups
        .values()
        .filter(|g| g.member(user_id).is_some_and(|m| m.nickname.is_empty() || m.face_url.is_empty()))
        .map(|g| g.group_id.clone())
        .collect();
    for g in groups {
        st.member_versions.incr(&g, &[user_id], STATE_UPDATE);
    }
}

/// `sdkws.UserInfoWithEx`: wrapper fields, absent/null = keep.
#[derive(Deserialize, Default)]
#[serde(default)]
struct UserInfoEx {
    #[serde(rename = "userID")]
    user_id: String,
    nickname: Option<String>,
    #[serde(rename = "faceURL")]
    face_url: Option<String>,
    ex: Option<String>,
    #[serde(rename = "globalRecvMsgOpt")]
    global_recv_msg_opt: Option<i32>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UpdateExReq {
    #[serde(rename = "userInfo", deserialize_with = "nested")]
    user_info: Option<UserInfoEx>,
}

fn update_user_info_ex(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: UpdateExReq = decode(body)?;
    let info = req.user_info.ok_or_else(|| ApiError::Args("userInfo is empty".into()))?;
    if info.user_id.is_empty() {
        return Err(ApiError::Args("userID is empty".into()));
    }
    ctx.check_access(&info.user_id)?;
    let mut st = ctx.lock();
    let u = st.users.get_mut(&info.user_id).ok_or_else(|| ApiError::RecordNotFound(info.user_id.clone()))?;
    let old = (u.nickname.clone(), u.face_url.clone());
    if let Some(v) = info.nickname {
        u.nickname = v;
    }
    if let Some(v) = info.face_url {
        u.face_url = v;
    }
    if let Some(v) = info.ex {
        u.ex = v;
    }
    if let Some(v) = info.global_recv_msg_opt {
        u.global_recv_msg_opt = v;
    }
    user_info_updated(&mut st, &info.user_id, old);
    Ok(None)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AccountCheckReq {
    #[serde(rename = "checkUserIDs")]
    check_user_ids: Option<Vec<String>>,
}

fn account_check(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: AccountCheckReq = decode(body)?;
    let ids = req.check_user_ids.ok_or_else(|| ApiError::Args("CheckUserIDs is empty".into()))?;
    ctx.require_admin()?;
    if ids.iter().collect::<HashSet<_>>().len() != ids.len() {
        return Err(ApiError::Args("userID repeated".into()));
    }
    let st = ctx.lock();
    let results: Vec<_> =
        ids.iter().map(|id| json!({"userID": id, "accountStatus": i32::from(st.user(id).is_some())})).collect();
    Ok(Some(json!({ "results": results })))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GetUsersReq {
    #[serde(deserialize_with = "nested")]
    pagination: Option<Pagination>,
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "nickName")]
    nick_name: String,
}

/// All users in registration order.
fn all_users(ctx: &Ctx<'_>) -> Vec<UserInfo> {
    let st = ctx.lock();
    let mut users: Vec<UserInfo> = st.users.values().cloned().collect();
    users.sort_by_key(|u| u.order);
    users
}

fn get_users(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: GetUsersReq = decode(body)?;
    let p = check_pagination(&req.pagination)?;
    let users: Vec<UserInfo> = all_users(ctx)
        .into_iter()
        .filter(|u| req.user_id.is_empty() || u.user_id.contains(&req.user_id))
        .filter(|u| req.nick_name.is_empty() || u.nickname.contains(&req.nick_name))
        .collect();
    let page = paginate(&users, p.page_number, p.show_number);
    Ok(Some(json!({"total": users.len() as i64, "users": page})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PageReq {
    #[serde(deserialize_with = "nested")]
    pagination: Option<Pagination>,
}

fn get_all_users_uid(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: PageReq = decode(body)?;
    let p = check_pagination(&req.pagination)?;
    let ids: Vec<String> = all_users(ctx).into_iter().map(|u| u.user_id).collect();
    let page = paginate(&ids, p.page_number, p.show_number);
    Ok(Some(json!({"total": ids.len() as i64, "userIDs": page})))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RecvOptReq {
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "globalRecvMsgOpt")]
    global_recv_msg_opt: i32,
}

/// ⚠ No permission check at all (contract §10.3): any token may set any user's option.
fn set_global_msg_recv_opt(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: RecvOptReq = decode(body)?;
    if !(0..=2).contains(&req.global_recv_msg_opt) {
        return Err(ApiError::Args("GlobalRecvMsgOpt is invalid".into()));
    }
    if req.user_id.is_empty() {
        return Err(ApiError::Args("UserID is empty".into()));
    }
    let mut st = ctx.lock();
    let u = st.users.get_mut(&req.user_id).ok_or_else(|| ApiError::RecordNotFound(req.user_id.clone()))?;
    u.global_recv_msg_opt = req.global_recv_msg_opt;
    Ok(None)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SubscribeReq {
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(rename = "userIDs")]
    user_ids: Option<Vec<String>>,
    genre: i32,
}

/// ANY: `Check()` only (userID, userIDs, genre 1 subscribe / 2 cancel), then a no-op.
fn subscribe_users_status(_ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: SubscribeReq = decode(body)?;
    if req.user_id.is_empty() {
        return Err(ApiError::Args("UserID is empty".into()));
    }
    if req.user_ids.is_none() {
        return Err(ApiError::Args("subscription User-list is empty".into()));
    }
    if !(1..=2).contains(&req.genre) {
        return Err(ApiError::Args("invalid subscription type parameter".into()));
    }
    Ok(Some(json!({ "statusList": null })))
}

/// ANY: `Check()` only (userID), then a no-op.
fn get_subscribe_users_status(_ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let req: SubscribeReq = decode(body)?;
    if req.user_id.is_empty() {
        return Err(ApiError::Args("UserID is empty".into()));
    }
    Ok(Some(json!({ "statusList": null })))
}
