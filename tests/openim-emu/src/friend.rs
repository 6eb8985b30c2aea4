//! `/friend/*` routes: friend requests, friend list, import, blacklist, designated lookups,
//! `update_friends` and the incremental sync of the friend list.
//!
//! Friendships are stored per direction as in OpenIM (delete_friend removes only the owner's
//! edge). Every write of an owner's friend list is logged in the owner's friend version log
//! ([`crate::versionlog`]), as `FriendMgo` does (`S pkg/common/storage/database/mgo/friend.go`):
//! insert on becoming friends, delete on delete_friend, update on update_friends (plus the sort
//! pseudo-ID when `isPinned` is set) and on a friend's nickname/faceURL change. Lists are in
//! OpenIM's order: pinned first, then creation order. Not implemented (404): remarks,
//! get_specified_friends_info, unhandled counts, get_incremental_blacks (unimplemented in OpenIM
//! too: gRPC `Unimplemented`).

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::json::{decode, nested};
use crate::server::{Ctx, HResult, Handler};
use crate::state::{now_ms, Black, Friend, FriendRequest, PublicUserInfo, State};
use crate::user::{check_pagination, Pagination};
use crate::versionlog::{id_hash, SORT_CHANGE_ID, STATE_DELETE, STATE_INSERT, STATE_UPDATE};

pub fn routes() -> Vec<(&'static str, Handler)> {
    vec![
        ("/friend/add_friend", add_friend as Handler),
        ("/friend/add_friend_response", add_friend_response),
        ("/friend/get_friend_apply_list", get_friend_apply_list),
        ("/friend/get_self_friend_apply_list", get_self_friend_apply_list),
        ("/friend/get_friend_list", get_friend_list),
        ("/friend/delete_friend", delete_friend),
        ("/friend/is_friend", is_friend),
        ("/friend/import_friend", import_friend),
        ("/friend/add_black", add_black),
        ("/friend/remove_black", remove_black),
        ("/friend/get_black_list", get_black_list),
        ("/friend/get_designated_friend_apply", get_designated_friend_apply),
        ("/friend/get_designated_friends", get_designated_friends),
        ("/friend/get_specified_blacks", get_specified_blacks),
        ("/friend/update_friends", update_friends),
        ("/friend/get_full_friend_user_ids", get_full_friend_user_ids),
        ("/friend/get_incremental_friends", get_incremental_friends),
    ]
}

/// Every request shape of this module folded into one struct (unused keys stay empty).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Req {
    #[serde(rename = "fromUserID")]
    from_user_id: String,
    #[serde(rename = "toUserID")]
    to_user_id: String,
    #[serde(rename = "reqMsg")]
    req_msg: String,
    ex: String,
    #[serde(rename = "handleResult")]
    handle_result: i32,
    #[serde(rename = "handleMsg")]
    handle_msg: String,
    #[serde(rename = "userID")]
    user_id: String,
    #[serde(deserialize_with = "nested")]
    pagination: Option<Pagination>,
    #[serde(rename = "handleResults")]
    handle_results: Option<Vec<i32>>,
    #[serde(rename = "ownerUserID")]
    owner_user_id: String,
    #[serde(rename = "friendUserID")]
    friend_user_id: String,
    #[serde(rename = "friendUserIDs")]
    friend_user_ids: Option<Vec<String>>,
    #[serde(rename = "userID1")]
    user_id1: String,
    #[serde(rename = "userID2")]
    user_id2: String,
    #[serde(rename = "blackUserID")]
    black_user_id: String,
    #[serde(rename = "userIDList")]
    user_id_list: Option<Vec<String>>,
    #[serde(rename = "versionID")]
    version_id: String,
    version: u64,
    #[serde(rename = "idHash")]
    id_hash: u64,
}

fn require(v: &str, what: &str) -> Result<(), ApiError> {
    if v.is_empty() {
        Err(ApiError::Args(format!("{what} is empty")))
    } else {
        Ok(())
    }
}

/// `GetUsersInfoMap(ids, complete=true)`: every ID must exist.
fn users_exist(st: &State, ids: &[&str]) -> Result<(), ApiError> {
    match ids.iter().find(|id| st.user(id).is_none()) {
        Some(id) => Err(ApiError::UserIdNotFound(format!("user {id} not found"))),
        None => Ok(()),
    }
}

/// `BecomeFriends`: the missing edges are created, each logged as an insert in its owner's log.
fn make_friends(st: &mut State, a: &str, b: &str, source: i32, op: &str) {
    for (o, f) in [(a, b), (b, a)] {
        let key = (o.to_string(), f.to_string());
        if st.friends.contains_key(&key) {
            continue;
        }
        st.friend_order += 1;
        let now = now_ms();
        let friend = Friend {
            create_time_s: now / 1000,
            create_time_ms: now,
            add_source: source,
            operator_user_id: op.to_string(),
            order: st.friend_order,
            ..Default::default()
        };
        st.friends.insert(key, friend);
        st.friend_versions.incr(o, &[f], STATE_INSERT);
    }
}

/// The owner's friends in OpenIM's order (`friendSort`: is_pinned desc, then `_id`).
pub fn sorted_friends<'s>(st: &'s State, owner: &str) -> Vec<(&'s str, &'s Friend)> {
    let mut v: Vec<(&str, &Friend)> =
        st.friends.iter().filter(|((o, _), _)| o == owner).map(|((_, f), fr)| (f.as_str(), fr)).collect();
    v.sort_by_key(|(_, f)| (std::cmp::Reverse(f.is_pinned), f.order));
    v
}

/// `FriendsDB2Pb` of the owner's friends among `ids` (missing ones skipped).
fn friend_infos(st: &State, owner: &str, ids: &[String]) -> Vec<Value> {
    sorted_friends(st, owner)
        .into_iter()
        .filter(|(f, _)| ids.iter().any(|i| i == f))
        .map(|(f, fr)| st.friend_info(owner, f, fr))
        .collect()
}

fn has_duplicates(ids: &[String]) -> bool {
    ids.iter().collect::<std::collections::HashSet<_>>().len() != ids.len()
}

/// A Go nil slice: `null` when empty.
pub fn list_or_null<T: serde::Serialize>(v: Vec<T>) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        json!(v)
    }
}

fn add_friend(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.to_user_id, "toUserID")?;
    require(&r.from_user_id, "fromUserID")?;
    ctx.check_access(&r.from_user_id)?;
    if r.from_user_id == r.to_user_id {
        return Err(ApiError::CanNotAddYourself("req.ToUserID == req.FromUserID".into()));
    }
    let mut st = ctx.lock();
    users_exist(&st, &[&r.to_user_id, &r.from_user_id])?;
    if st.is_friend(&r.from_user_id, &r.to_user_id) && st.is_friend(&r.to_user_id, &r.from_user_id) {
        return Err(ApiError::RelationshipAlready("has been friends".into()));
    }
    let now = now_ms();
    let pos = st.friend_requests.iter().position(|q| q.from_user_id == r.from_user_id && q.to_user_id == r.to_user_id);
    let req = FriendRequest {
        from_user_id: r.from_user_id,
        to_user_id: r.to_user_id,
        req_msg: r.req_msg,
        ex: r.ex,
        create_time: now,
        ..Default::default()
    };
    match pos {
        Some(i) => st.friend_requests[i] = req,
        None => st.friend_requests.push(req),
    }
    Ok(None)
}

fn add_friend_response(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.to_user_id, "toUserID")?;
    require(&r.from_user_id, "fromUserID")?;
    ctx.check_access(&r.to_user_id)?;
    if r.handle_result != 1 && r.handle_result != -1 {
        return Err(ApiError::Args("req.HandleResult != -1/1".into()));
    }
    let mut st = ctx.lock();
    let idx = st
        .friend_requests
        .iter()
        .position(|q| q.from_user_id == r.from_user_id && q.to_user_id == r.to_user_id)
        .ok_or_else(|| ApiError::RecordNotFound("friend request not found".into()))?;
    if st.friend_requests[idx].handle_result != 0 {
        return Err(ApiError::Args("the friend request has been processed".into()));
    }
    let q = &mut st.friend_requests[idx];
    q.handle_result = r.handle_result;
    q.handle_msg = r.handle_msg;
    q.handler_user_id = ctx.op_user.clone();
    q.handle_time = now_ms();
    if r.handle_result == 1 {
        make_friends(&mut st, &r.to_user_id, &r.from_user_id, 2, &ctx.op_user);
    }
    Ok(None)
}

/// Shared body of both apply lists; `to_me` selects requests addressed to `userID`.
fn apply_list(ctx: &Ctx<'_>, body: &[u8], to_me: bool) -> HResult {
    let r: Req = decode(body)?;
    require(&r.user_id, "userID")?;
    let p = check_pagination(&r.pagination)?;
    ctx.check_access(&r.user_id)?;
    let st = ctx.lock();
    let mut list: Vec<FriendRequest> = st
        .friend_requests
        .iter()
        .filter(|q| if to_me { q.to_user_id == r.user_id } else { q.from_user_id == r.user_id })
        .filter(|q| r.handle_results.as_ref().is_none_or(|h| h.is_empty() || h.contains(&q.handle_result)))
        .map(|q| st.friend_request_view(q))
        .collect();
    list.sort_by_key(|q| std::cmp::Reverse(q.create_time));
    let page = crate::state::paginate(&list, p.page_number, p.show_number);
    let key = if to_me { "FriendRequests" } else { "friendRequests" };
    Ok(Some(json!({ key: page, "total": list.len() as i32 })))
}

fn get_friend_apply_list(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    apply_list(ctx, body, true)
}

fn get_self_friend_apply_list(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    apply_list(ctx, body, false)
}

fn get_friend_list(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    let p = check_pagination(&r.pagination)?;
    require(&r.user_id, "userID")?;
    ctx.check_access(&r.user_id)?;
    let st = ctx.lock();
    let all: Vec<_> =
        sorted_friends(&st, &r.user_id).into_iter().map(|(f, fr)| st.friend_info(&r.user_id, f, fr)).collect();
    let page = crate::state::paginate(&all, p.page_number, p.show_number);
    Ok(Some(json!({"friendsInfo": page, "total": all.len() as i32})))
}

fn delete_friend(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.owner_user_id, "userID1")?;
    require(&r.friend_user_id, "userID2")?;
    ctx.check_access(&r.owner_user_id)?;
    let mut st = ctx.lock();
    if st.friends.remove(&(r.owner_user_id.clone(), r.friend_user_id.clone())).is_none() {
        return Err(ApiError::RecordNotFound("friend not found".into()));
    }
    st.friend_versions.incr(&r.owner_user_id, &[&r.friend_user_id], STATE_DELETE);
    Ok(None)
}

fn is_friend(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.user_id1, "userID1")?;
    require(&r.user_id2, "userID2")?;
    ctx.check_access_in(&[&r.user_id1, &r.user_id2])?;
    let st = ctx.lock();
    Ok(Some(json!({
        "inUser1Friends": st.is_friend(&r.user_id1, &r.user_id2),
        "inUser2Friends": st.is_friend(&r.user_id2, &r.user_id1),
    })))
}

fn import_friend(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.owner_user_id, "ownerUserID")?;
    let ids = r.friend_user_ids.ok_or_else(|| ApiError::Args("friendUserIDS is empty".into()))?;
    ctx.require_admin()?;
    let mut st = ctx.lock();
    let mut all: Vec<&str> = vec![&r.owner_user_id];
    all.extend(ids.iter().map(String::as_str));
    users_exist(&st, &all)?;
    if ids.contains(&r.owner_user_id) {
        return Err(ApiError::CanNotAddYourself("can not add yourself".into()));
    }
    if ids.iter().collect::<std::collections::HashSet<_>>().len() != ids.len() {
        return Err(ApiError::Args("friend userID repeated".into()));
    }
    for f in &ids {
        make_friends(&mut st, &r.owner_user_id, f, 1, &ctx.op_user);
    }
    Ok(None)
}

fn add_black(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.owner_user_id, "ownerUserID")?;
    require(&r.black_user_id, "blackUserID")?;
    ctx.check_access(&r.owner_user_id)?;
    let mut st = ctx.lock();
    users_exist(&st, &[&r.owner_user_id, &r.black_user_id])?;
    let black = Black { create_time: now_ms(), operator_user_id: ctx.op_user.clone(), ex: r.ex, ..Default::default() };
    st.blacks.insert((r.owner_user_id, r.black_user_id), black);
    Ok(None)
}

fn remove_black(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.owner_user_id, "ownerUserID")?;
    require(&r.black_user_id, "blackUserID")?;
    ctx.check_access(&r.owner_user_id)?;
    ctx.lock().blacks.remove(&(r.owner_user_id, r.black_user_id));
    Ok(None)
}

fn get_black_list(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.user_id, "userID")?;
    let p = check_pagination(&r.pagination)?;
    ctx.check_access(&r.user_id)?;
    let st = ctx.lock();
    let all: Vec<_> = st
        .blacks
        .iter()
        .filter(|((o, _), _)| *o == r.user_id)
        .map(|((o, b), e)| {
            let info = st.user(b).map(PublicUserInfo::from);
            json!({"ownerUserID": o, "createTime": e.create_time, "blackUserInfo": info,
                   "addSource": e.add_source, "operatorUserID": e.operator_user_id, "ex": e.ex})
        })
        .collect();
    let page = crate::state::paginate(&all, p.page_number, p.show_number);
    Ok(Some(json!({"blacks": page, "total": all.len() as i32})))
}

/// SELF-IN(fromUserID, toUserID): the requests between the two users, both directions.
fn get_designated_friend_apply(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.from_user_id, "ownerUserID")?;
    require(&r.to_user_id, "toUserID")?;
    ctx.check_access_in(&[&r.from_user_id, &r.to_user_id])?;
    let st = ctx.lock();
    let list: Vec<FriendRequest> = st
        .friend_requests
        .iter()
        .filter(|q| {
            (q.from_user_id == r.from_user_id && q.to_user_id == r.to_user_id)
                || (q.from_user_id == r.to_user_id && q.to_user_id == r.from_user_id)
        })
        .map(|q| st.friend_request_view(q))
        .collect();
    Ok(Some(json!({ "friendRequests": list_or_null(list) })))
}

/// SELF(ownerUserID): the owner's friends among `friendUserIDs`.
fn get_designated_friends(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.owner_user_id, "ownerUserID")?;
    let ids = r.friend_user_ids.ok_or_else(|| ApiError::Args("friendUserIDS is empty".into()))?;
    ctx.check_access(&r.owner_user_id)?;
    if has_duplicates(&ids) {
        return Err(ApiError::Args("friend userID repeated".into()));
    }
    let st = ctx.lock();
    Ok(Some(json!({ "friendsInfo": list_or_null(friend_infos(&st, &r.owner_user_id, &ids)) })))
}

/// SELF(ownerUserID): the owner's black entries among `userIDList`, in request order.
fn get_specified_blacks(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    ctx.check_access(&r.owner_user_id)?;
    let ids = r.user_id_list.unwrap_or_default();
    if ids.is_empty() {
        return Err(ApiError::Args("userIDList is empty".into()));
    }
    if has_duplicates(&ids) {
        return Err(ApiError::Args("userIDList repeated".into()));
    }
    let st = ctx.lock();
    let blacks: Vec<Value> = ids
        .iter()
        .filter_map(|id| st.blacks.get(&(r.owner_user_id.clone(), id.clone())).map(|b| (id, b)))
        .map(|(id, b)| {
            json!({"ownerUserID": r.owner_user_id, "createTime": b.create_time,
                   "blackUserInfo": st.user(id).map(PublicUserInfo::from), "addSource": b.add_source,
                   "operatorUserID": b.operator_user_id, "ex": b.ex})
        })
        .collect();
    let total = blacks.len() as i32;
    Ok(Some(json!({"blacks": blacks, "total": total})))
}

/// `relation.UpdateFriendsReq`: wrapper fields, absent/null = keep.
#[derive(Deserialize, Default)]
#[serde(default)]
struct UpdateFriendsReq {
    #[serde(rename = "ownerUserID")]
    owner_user_id: String,
    #[serde(rename = "friendUserIDs")]
    friend_user_ids: Option<Vec<String>>,
    #[serde(rename = "isPinned")]
    is_pinned: Option<bool>,
    remark: Option<String>,
    ex: Option<String>,
}

/// SELF(ownerUserID). IDs that are not friends are ignored by the update but still logged, as
/// OpenIM logs the request's IDs.
fn update_friends(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: UpdateFriendsReq = decode(body)?;
    require(&r.owner_user_id, "ownerUserID")?;
    let ids = r.friend_user_ids.ok_or_else(|| ApiError::Args("friendUserIDs is empty".into()))?;
    if ids.len() > 1000 {
        return Err(ApiError::Args("too many FriendUserIDs, need to be less than 1000".into()));
    }
    if ids.is_empty() {
        return Err(ApiError::Args("friendIDList is empty".into()));
    }
    if has_duplicates(&ids) {
        return Err(ApiError::Args("friendIDList repeated".into()));
    }
    ctx.check_access(&r.owner_user_id)?;
    if r.is_pinned.is_none() && r.remark.is_none() && r.ex.is_none() {
        return Ok(None);
    }
    let mut st = ctx.lock();
    for id in &ids {
        if let Some(f) = st.friends.get_mut(&(r.owner_user_id.clone(), id.clone())) {
            f.is_pinned = r.is_pinned.unwrap_or(f.is_pinned);
            f.remark = r.remark.clone().unwrap_or_else(|| f.remark.clone());
            f.ex = r.ex.clone().unwrap_or_else(|| f.ex.clone());
        }
    }
    let mut logged: Vec<&str> = Vec::with_capacity(ids.len() + 1);
    if r.is_pinned.is_some() {
        logged.push(SORT_CHANGE_ID);
    }
    logged.extend(ids.iter().map(String::as_str));
    st.friend_versions.incr(&r.owner_user_id, &logged, STATE_UPDATE);
    Ok(None)
}

/// SELF(userID): every friend ID plus the log's current version (`idHash` equal ⇒ no IDs).
fn get_full_friend_user_ids(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    require(&r.user_id, "userID")?;
    ctx.check_access(&r.user_id)?;
    let mut st = ctx.lock();
    let (version_id, version) = st.friend_versions.max(&r.user_id);
    let ids: Vec<String> = sorted_friends(&st, &r.user_id).into_iter().map(|(f, _)| f.to_string()).collect();
    let equal = r.id_hash == id_hash(&ids);
    let ids = if equal { Value::Null } else { list_or_null(ids) };
    Ok(Some(json!({"version": version, "versionID": version_id, "equal": equal, "userIDs": ids})))
}

/// SELF(userID): the friend changes since `(versionID, version)`, or `full: true`.
fn get_incremental_friends(ctx: &Ctx<'_>, body: &[u8]) -> HResult {
    let r: Req = decode(body)?;
    ctx.check_access(&r.user_id)?;
    let mut st = ctx.lock();
    let sync = st.friend_versions.sync(&r.user_id, &r.version_id, r.version);
    let insert = friend_infos(&st, &r.user_id, &sync.insert);
    let update = friend_infos(&st, &r.user_id, &sync.update);
    Ok(Some(json!({
        "version": sync.version, "versionID": sync.version_id, "full": sync.full,
        "delete": list_or_null(sync.delete), "insert": list_or_null(insert), "update": list_or_null(update),
        "sortVersion": sync.sort_version,
    })))
}
