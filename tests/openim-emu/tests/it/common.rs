//! Shared helpers: an emulator plus an HTTP client speaking the OpenIM envelope.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openim_emu::{Config, Emulator};
use serde_json::{json, Value};

static OP: AtomicU64 = AtomicU64::new(1);

/// A fresh operationID.
pub fn op_id() -> String {
    format!("op-{}", OP.fetch_add(1, Ordering::Relaxed))
}

pub struct Env {
    pub emu: Emulator,
    pub http: reqwest::Client,
    pub admin: String,
}

/// One HTTP answer: status and parsed JSON body (Null if not JSON).
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn code(&self) -> i64 {
        self.body["errCode"].as_i64().unwrap_or(-1)
    }
}

impl Env {
    pub async fn new() -> Env {
        Env::with(Config::default()).await
    }

    pub async fn with(config: Config) -> Env {
        let emu = Emulator::start(config.clone()).await.expect("start emulator");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
        let mut env = Env { emu, http, admin: String::new() };
        let a = env
            .raw(
                "/auth/get_admin_token",
                None,
                Some(&op_id()),
                json!({"secret": config.secret, "userID": config.admin_user_ids[0]}).to_string(),
            )
            .await;
        assert_eq!(a.code(), 0, "admin token: {}", a.text);
        env.admin = a.body["data"]["token"].as_str().expect("token").to_string();
        env
    }

    /// POST with full control over headers and body.
    pub async fn raw(&self, path: &str, token: Option<&str>, op: Option<&str>, body: String) -> Answer {
        let mut req = self.http.post(format!("{}{}", self.emu.api_url(), path)).body(body);
        if let Some(t) = token {
            req = req.header("token", t);
        }
        if let Some(o) = op {
            req = req.header("operationID", o);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        Answer { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), text }
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.raw(path, Some(token), Some(&op_id()), body.to_string()).await
    }

    /// errCode of a call.
    pub async fn code(&self, path: &str, token: &str, body: Value) -> i64 {
        self.post(path, token, body).await.code()
    }

    /// Asserts success and returns `data` (Null when absent).
    pub async fn ok(&self, path: &str, token: &str, body: Value) -> Value {
        let a = self.post(path, token, body).await;
        assert_eq!(a.code(), 0, "{path}: {}", a.text);
        a.body.get("data").cloned().unwrap_or(Value::Null)
    }

    pub async fn register(&self, ids: &[&str]) {
        let users: Vec<Value> = ids.iter().map(|id| json!({"userID": id, "nickname": format!("nick_{id}")})).collect();
        self.ok("/user/user_register", &self.admin, json!({ "users": users })).await;
    }

    pub async fn user_token(&self, user: &str, platform: i32) -> String {
        let d = self.ok("/auth/get_user_token", &self.admin, json!({"userID": user, "platformID": platform})).await;
        d["token"].as_str().expect("token").to_string()
    }

    /// Admin send of a text message; returns the whole answer.
    pub async fn send_text(&self, from: &str, to: &str, text: &str) -> Answer {
        let body =
            json!({"sendID": from, "recvID": to, "content": {"content": text}, "contentType": 101, "sessionType": 1});
        self.post("/msg/send_msg", &self.admin, body).await
    }

    pub async fn send_group(&self, from: &str, group: &str, text: &str) -> Answer {
        let body = json!({"sendID": from, "groupID": group, "content": {"content": text}, "contentType": 101, "sessionType": 3});
        self.post("/msg/send_msg", &self.admin, body).await
    }

    /// Create a group owned by `owner` (via its own token) with members.
    pub async fn group(&self, owner_token: &str, owner: &str, id: &str, members: &[&str], need_verification: i32) {
        let body = json!({"ownerUserID": owner, "memberUserIDs": members, "adminUserIDs": [],
            "groupInfo": {"groupID": id, "groupName": id, "groupType": 2, "needVerification": need_verification}});
        self.ok("/group/create_group", owner_token, body).await;
    }
}

/// Poll `check` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
