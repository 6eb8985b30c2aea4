//! Token model (contract §4) and the header/decoding chain (§1.2, §2).

use std::time::Duration;

use openim_emu::Config;
use serde_json::json;

use crate::common::{eventually, op_id, Env};

#[tokio::test]
async fn admin_token_issue_and_parse() {
    let env = Env::new().await;
    let a = env
        .raw("/auth/get_admin_token", None, Some("o1"), json!({"secret":"openIM123","userID":"imAdmin"}).to_string())
        .await;
    assert_eq!(a.code(), 0);
    assert_eq!(a.body["data"]["expireTimeSeconds"], 7_776_000);
    let tok = a.body["data"]["token"].as_str().unwrap();
    let p = env.raw("/auth/parse_token", None, Some("o2"), json!({"token": tok}).to_string()).await;
    assert_eq!(p.code(), 0, "{}", p.text);
    assert_eq!(p.body["data"]["userID"], "imAdmin");
    assert_eq!(p.body["data"]["platformID"], 10);
    let exp = p.body["data"]["expireTimeSeconds"].as_i64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((exp - now - 7_776_000).abs() < 5, "parse_token reports the absolute exp");
    let bad = env
        .raw("/auth/get_admin_token", None, Some("o3"), json!({"secret":"nope","userID":"imAdmin"}).to_string())
        .await;
    assert_eq!((bad.code(), bad.body["errMsg"].as_str()), (1002, Some("NoPermissionError")));
    let not_admin = env
        .raw("/auth/get_admin_token", None, Some("o4"), json!({"secret":"openIM123","userID":"u1"}).to_string())
        .await;
    assert_eq!(not_admin.code(), 1001);
}

#[tokio::test]
async fn superseded_admin_token_has_a_grace_period() {
    let env = Env::with(Config { admin_token_grace: Duration::from_millis(300), ..Config::default() }).await;
    let old = env.admin.clone();
    let body = json!({"secret":"openIM123","userID":"imAdmin"}).to_string();
    let new = env.raw("/auth/get_admin_token", None, Some(&op_id()), body).await;
    let new = new.body["data"]["token"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    // Still accepted right after being superseded...
    assert_eq!(env.code("/user/get_users_info", &old, json!({"userIDs": []})).await, 0);
    // ...and refused with 1507 once the grace period is over.
    let expired = eventually(Duration::from_secs(5), || async {
        env.code("/user/get_users_info", &old, json!({"userIDs": []})).await == 1507
    })
    .await;
    assert!(expired, "old admin token must end with 1507");
    assert_eq!(env.code("/user/get_users_info", &new, json!({"userIDs": []})).await, 0);
}

#[tokio::test]
async fn user_token_reissue_kicks_the_old_one() {
    let env = Env::new().await;
    env.register(&["u1"]).await;
    let t1 = env.user_token("u1", 1).await;
    let t2 = env.user_token("u1", 1).await;
    assert_ne!(t1, t2);
    let a = env.post("/user/get_users_info", &t1, json!({"userIDs": ["u1"]})).await;
    assert_eq!((a.code(), a.body["errMsg"].as_str()), (1506, Some("TokenKickedError")));
    assert_eq!(env.code("/user/get_users_info", &t2, json!({"userIDs": ["u1"]})).await, 0);
    // Another platform is unaffected.
    let web = env.user_token("u1", 5).await;
    assert_eq!(env.code("/user/get_users_info", &t2, json!({"userIDs": []})).await, 0);
    assert_eq!(env.code("/user/get_users_info", &web, json!({"userIDs": []})).await, 0);
}

#[tokio::test]
async fn get_user_token_rules() {
    let env = Env::new().await;
    env.register(&["u1"]).await;
    let t = env.user_token("u1", 1).await;
    assert_eq!(env.code("/auth/get_user_token", &t, json!({"userID":"u1","platformID":2})).await, 1002);
    assert_eq!(env.code("/auth/get_user_token", &env.admin, json!({"userID":"u1","platformID":10})).await, 1002);
    assert_eq!(env.code("/auth/get_user_token", &env.admin, json!({"userID":"imAdmin","platformID":1})).await, 1002);
    assert_eq!(env.code("/auth/get_user_token", &env.admin, json!({"userID":"ghost","platformID":1})).await, 1004);
    env.ok("/user/user_register", &env.admin, json!({"users":[{"userID":"bot","nickname":"b","appMangerLevel":3}]}))
        .await;
    assert_eq!(env.code("/auth/get_user_token", &env.admin, json!({"userID":"bot","platformID":1})).await, 1001);
}

#[tokio::test]
async fn force_logout_kicks_tokens_of_that_platform() {
    let env = Env::new().await;
    env.register(&["u1"]).await;
    let ios = env.user_token("u1", 1).await;
    let android = env.user_token("u1", 2).await;
    assert_eq!(env.code("/auth/force_logout", &ios, json!({"userID":"u1","platformID":1})).await, 1002);
    assert_eq!(env.code("/auth/force_logout", &env.admin, json!({"userID":"u1","platformID":11})).await, 1001);
    env.ok("/auth/force_logout", &env.admin, json!({"userID":"u1","platformID":1})).await;
    assert_eq!(env.code("/user/get_users_info", &ios, json!({"userIDs": []})).await, 1506);
    assert_eq!(env.code("/user/get_users_info", &android, json!({"userIDs": []})).await, 0);
    let p = env.raw("/auth/parse_token", None, Some("x"), json!({"token": ios}).to_string()).await;
    assert_eq!(p.code(), 1506);
    let fresh = env.user_token("u1", 1).await;
    assert_eq!(env.code("/user/get_users_info", &fresh, json!({"userIDs": []})).await, 0);
}

#[tokio::test]
async fn expired_token_is_1501() {
    let env = Env::with(Config { token_expire: Duration::from_secs(1), ..Config::default() }).await;
    env.register(&["u1"]).await;
    let t = env.user_token("u1", 1).await;
    assert_eq!(env.code("/user/get_users_info", &t, json!({"userIDs": []})).await, 0);
    let expired = eventually(Duration::from_secs(5), || async {
        env.code("/user/get_users_info", &t, json!({"userIDs": []})).await == 1501
    })
    .await;
    assert!(expired);
}

#[tokio::test]
async fn header_and_token_errors() {
    let env = Env::new().await;
    let a = env.raw("/user/get_users_info", Some(&env.admin), None, "{}".into()).await;
    assert_eq!((a.status, a.code()), (200, 1001));
    assert_eq!(a.body["errMsg"], "ArgsError");
    assert_eq!(a.body["errDlt"], "header must have operationID");
    assert!(a.body.get("data").is_none());
    let a = env.raw("/user/get_users_info", None, Some("o"), "{}".into()).await;
    assert_eq!((a.code(), a.body["errDlt"].as_str()), (1001, Some("header must have token")));
    // Whitelisted routes still need operationID.
    let a = env.raw("/auth/parse_token", None, None, "{}".into()).await;
    assert_eq!(a.code(), 1001);
    assert_eq!(env.code("/user/get_users_info", "garbage", json!({})).await, 1503);
    let foreign = {
        let other = Env::with(Config { secret: "other".into(), ..Config::default() }).await;
        other.admin.clone()
    };
    let a = env.post("/user/get_users_info", &foreign, json!({"userIDs": []})).await;
    assert_eq!((a.code(), a.body["errMsg"].as_str()), (1505, Some("signature is invalid")));
    // Unknown path with valid headers → gin's 404 text; without token → 1001 first.
    let a = env.post("/nope/route", &env.admin, json!({})).await;
    assert_eq!((a.status, a.text.as_str()), (404, "404 page not found"));
    let a = env.raw("/nope/route", None, Some("o"), "{}".into()).await;
    assert_eq!(a.code(), 1001);
    let opt = env
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/user/get_users_info", env.emu.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(opt.status(), 200);
    assert_eq!(opt.headers()["access-control-allow-origin"], "*");
    assert_eq!(opt.text().await.unwrap(), "Options Request!");
}

#[tokio::test]
async fn json_decoding_is_go_like() {
    let env = Env::new().await;
    env.register(&["u1"]).await;
    let a = env.raw("/user/get_users_info", Some(&env.admin), Some("o"), String::new()).await;
    assert_eq!((a.code(), a.body["errMsg"].as_str()), (1001, Some("unexpected end of JSON input")));
    assert_eq!(env.code("/user/get_users_info", &env.admin, json!({"userIDs": "u1"})).await, 1001);
    // Check(): userIDs nil → 1001; keys match case-insensitively; unknown keys are ignored.
    assert_eq!(env.code("/user/get_users_info", &env.admin, json!({})).await, 1001);
    let d = env.ok("/user/get_users_info", &env.admin, json!({"USERIDS": ["u1"], "whatever": 1})).await;
    let u = &d["usersInfo"][0];
    assert_eq!(u["userID"], "u1");
    assert_eq!(u["ex"], "", "zero values are emitted");
    assert_eq!(u["appMangerLevel"], 0);
    let d = env.ok("/user/get_users", &env.admin, json!({"Pagination": {"PageNumber": 1, "showNumber": 10}})).await;
    assert_eq!(d["total"], 2, "imAdmin and u1");
}

#[tokio::test]
async fn user_registration_rules() {
    let env = Env::new().await;
    env.register(&["u1"]).await;
    let reg = |users: serde_json::Value| env.code("/user/user_register", &env.admin, json!({ "users": users }));
    assert_eq!(reg(json!([{"userID":"u1","nickname":"x"}])).await, 1102);
    assert_eq!(reg(json!([{"userID":"u2","nickname":"x"},{"userID":"u1","nickname":"y"}])).await, 1102);
    assert_eq!(reg(json!([{"userID":"u3","nickname":"x"},{"userID":"u3","nickname":"y"}])).await, 1001);
    assert_eq!(reg(json!([{"userID":"bad:id","nickname":"x"}])).await, 1001);
    assert_eq!(reg(json!([{"userID":"u4","nickname":""}])).await, 1001);
    let d = env.ok("/user/account_check", &env.admin, json!({"checkUserIDs": ["u1", "u2"]})).await;
    assert_eq!(d["results"], json!([{"userID":"u1","accountStatus":1},{"userID":"u2","accountStatus":0}]));
    let t = env.user_token("u1", 1).await;
    assert_eq!(env.code("/user/user_register", &t, json!({"users":[{"userID":"u9","nickname":"n"}]})).await, 1002);
    assert_eq!(env.code("/user/account_check", &t, json!({"checkUserIDs": ["u1"]})).await, 1002);
    env.ok("/user/update_user_info_ex", &t, json!({"userInfo": {"userID": "u1", "nickname": "Alice"}})).await;
    assert_eq!(
        env.code("/user/update_user_info_ex", &t, json!({"userInfo": {"userID": "imAdmin", "nickname": "x"}})).await,
        1002
    );
    let d = env.ok("/user/get_users_info", &t, json!({"userIDs": ["u1"]})).await;
    assert_eq!(d["usersInfo"][0]["nickname"], "Alice");
    assert_eq!(d["usersInfo"][0]["faceURL"], "", "absent wrapper fields are kept");
}

#[tokio::test]
async fn seen_records_identity_and_codes() {
    let env = Env::new().await;
    env.register(&["u1"]).await;
    let t = env.user_token("u1", 3).await;
    env.raw("/user/get_users_info", Some(&t), Some("seen-op"), json!({"userIDs": []}).to_string()).await;
    let seen = env.emu.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.path, "/user/get_users_info");
    assert_eq!(last.operation_id.as_deref(), Some("seen-op"));
    assert_eq!(last.token_user_id.as_deref(), Some("u1"));
    assert_eq!(last.token_platform_id, Some(3));
    assert_eq!(last.err_code, 0);
    assert_eq!(seen[0].path, "/auth/get_admin_token");
}
