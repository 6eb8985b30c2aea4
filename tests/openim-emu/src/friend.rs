//! `/friend/*` routes: friend requests, friend list, import, blacklist.
//!
//! Friendships are stored per direction as in OpenIM (delete_friend removes only the owner's
//! edge). Not implemented (404): designated/specified lookups, remarks, incremental sync,
//! unhandled counts, update_friends.

use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::json::{decode, nested};
use crate::server::{Ctx, HResult, Handler};
use crate::state::{now_ms, now_s, Black, Friend, FriendRequest, PublicUserInfo, State};
use crate::user::{check_pagination, Pagination};

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

fn make_friends(st: &mut State, a: &str, b: &str, source: i32, op: &str) {
    for (o, f) in [(a, b), (b, a)] {
        st.friends.entry((o.to_string(), f.to_string())).or_insert_with(|| Friend {
            create_time_s: now_s(),
            add_source: source,
            operator_user_id: op.to_string(),
            ..Default::default()
        });
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
        st.friends.iter().filter(|((o, _), _)| *o == r.user_id).map(|((o, f), fr)| st.friend_info(o, f, fr)).collect();
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
