//! The OpenIM operations imgate calls, with their request and response bodies (contract §1.5).
//!
//! An [`Op`] says whether repeating it is harmless: only idempotent reads are ever retried after
//! a transport failure. `send_msg` and every other write is sent at most once per client request.

use serde::{Deserialize, Serialize};

/// One OpenIM HTTP route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub path: &'static str,
    pub idempotent: bool,
}

impl Op {
    pub const fn read(path: &'static str) -> Op {
        Op { path, idempotent: true }
    }
    pub const fn write(path: &'static str) -> Op {
        Op { path, idempotent: false }
    }
}

pub const GET_ADMIN_TOKEN: Op = Op::write("/auth/get_admin_token");
pub const GET_USER_TOKEN: Op = Op::write("/auth/get_user_token");
pub const FORCE_LOGOUT: Op = Op::write("/auth/force_logout");
pub const USER_REGISTER: Op = Op::write("/user/user_register");
pub const GET_USERS_INFO: Op = Op::read("/user/get_users_info");
pub const GET_SERVER_TIME: Op = Op::read("/msg/get_server_time");
pub const SEND_MSG: Op = Op::write("/msg/send_msg");
pub const GET_GROUP_MEMBERS_INFO: Op = Op::read("/group/get_group_members_info");

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GetAdminTokenReq<'a> {
    pub secret: &'a str,
    #[serde(rename = "userID")]
    pub user_id: &'a str,
}

#[derive(Debug, Serialize)]
pub struct GetUserTokenReq<'a> {
    #[serde(rename = "platformID")]
    pub platform_id: i32,
    #[serde(rename = "userID")]
    pub user_id: &'a str,
}

/// `data` of get_admin_token / get_user_token. Deliberately not `Debug`: it holds a secret.
#[derive(Deserialize)]
pub struct TokenResp {
    pub token: String,
    #[serde(rename = "expireTimeSeconds")]
    pub expire_time_seconds: i64,
}

#[derive(Debug, Serialize)]
pub struct UserRegisterReq {
    pub users: Vec<NewUser>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewUser {
    #[serde(rename = "userID")]
    pub user_id: String,
    pub nickname: String,
    #[serde(rename = "faceURL")]
    pub face_url: String,
    pub ex: String,
}

#[derive(Debug, Serialize)]
pub struct GetUsersInfoReq<'a> {
    #[serde(rename = "userIDs")]
    pub user_ids: &'a [String],
}

#[derive(Debug, Deserialize)]
pub struct GetUsersInfoResp {
    #[serde(rename = "usersInfo", default)]
    pub users_info: Option<Vec<UserInfo>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserInfo {
    #[serde(rename = "userID")]
    pub user_id: String,
    #[serde(default)]
    pub nickname: String,
    #[serde(rename = "faceURL", default)]
    pub face_url: String,
    #[serde(rename = "createTime", default)]
    pub create_time: i64,
    /// 0/1 ordinary, 2 AppAdmin (system), 3 notification account, 4 robot (contract §8.3).
    #[serde(rename = "appMangerLevel", default)]
    pub app_manger_level: i32,
}

#[derive(Debug, Deserialize)]
pub struct ServerTimeResp {
    #[serde(rename = "serverTime")]
    pub server_time: i64,
}

/// For operations whose answer has no `data`.
#[derive(Debug, Deserialize)]
pub struct Empty {}
