//! Fuzz target `openim_response`: OpenIM's answers through the OpenIM client (`openim::OpenIm`:
//! HTTP status, size cap, the envelope, `data` into imgate's types, admin and user token answers,
//! stale-token retries), then, for passthrough answers, the filters the compatible surface runs on
//! `data` before a client sees it (`routes::objects::redact_other_users`, `retain_own_messages`).
//! OpenIM is a fake on loopback that plays the fuzzer's answers in order, one per HTTP request;
//! each input gets a fresh gateway state (empty token and role caches), built from its config.
//!
//! Input: line 1 = the calls to make, one letter each (`U` user_info, `G` group_role, `P`
//! privilege, `R` passthrough pull_msg_by_seq as alice, `Q` passthrough get_users_info as alice,
//! `T` get_server_time, `A` call_path get_users_info); then the answers, separated by lines
//! `===`, each `<HTTP status>\n<body>`. Answers run out → 503.
//!
//! Asserts: a profile read is the one asked for; a passthrough answer has status 200 or 400, fits
//! `openim.max_response_bytes`, and its `errCode` is the body's; after the filters no other
//! user's private fields are left, only messages the caller may see remain, and running the
//! filters again changes nothing.
#![no_main]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use host::openim::{As, CallCtx};
use host::routes::objects::{classify, redact_other_users, retain_own_messages, Conversation};
use host::Config;
use imgate_fuzz::{fake_openim, rt, scratch_dir, USER};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const MAX_RESPONSE: usize = 2048;

type Script = Arc<Mutex<VecDeque<(u16, Vec<u8>)>>>;

fn script() -> &'static Script {
    static S: OnceLock<Script> = OnceLock::new();
    S.get_or_init(Script::default)
}

/// The config of every input's state (parsed once; the state is built per input).
fn config() -> &'static (Config, std::path::PathBuf) {
    static C: OnceLock<(Config, std::path::PathBuf)> = OnceLock::new();
    C.get_or_init(|| {
        let s = script().clone();
        let url = fake_openim(Arc::new(move |_path: &str, _body: &[u8]| {
            s.lock().expect("script").pop_front().unwrap_or((503, b"no more answers".to_vec()))
        }));
        let dir = scratch_dir("openim");
        std::fs::write(dir.join("gw.key"), imgate_fuzz::gateway_key().secret_b64()).expect("key");
        let toml = format!(
            "[openim]\napi_url = \"{url}\"\nws_url = \"ws://127.0.0.1:9\"\nsecret = \"s\"\ntimeout_ms = 2000\n\
             read_retries = 0\nmax_response_bytes = {MAX_RESPONSE}\n\n[[gateway.keys]]\nid = \"k1\"\nprivate_key_file = \"gw.key\"\n"
        );
        (Config::parse(&toml).unwrap_or_else(|e| panic!("{e}")), dir)
    })
}

/// Every user record left in `v` that is not the caller's has its private fields zeroed.
fn no_private_fields(v: &Value) {
    match v {
        Value::Array(items) => items.iter().for_each(no_private_fields),
        Value::Object(m) => {
            m.values().for_each(no_private_fields);
            let other = m.get("userID").and_then(Value::as_str).is_some_and(|u| u != USER);
            if other && m.contains_key("globalRecvMsgOpt") {
                for k in ["appMangerLevel", "globalRecvMsgOpt"] {
                    assert!(m.get(k).is_none_or(|x| x == 0), "{k} of another user left: {v}");
                }
                assert!(m.get("ex").is_none_or(|x| x == ""), "ex of another user left: {v}");
            }
            if other && m.contains_key("roleLevel") && m.contains_key("appMangerLevel") {
                assert_eq!(m["appMangerLevel"], 0, "a member's appMangerLevel left: {v}");
            }
        }
        _ => {}
    }
}

/// Only messages the caller may see are left (by their own parties, not the conversation id).
fn only_own_messages(data: &Value) {
    for key in ["msgs", "notificationMsgs"] {
        let Some(convs) = data.get(key).and_then(Value::as_object) else { continue };
        for (cid, pulled) in convs {
            let Some(msgs) = pulled.get("Msgs").and_then(Value::as_array) else { continue };
            for m in msgs {
                let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
                let ok = match classify(USER, cid) {
                    Conversation::Group(g) => field("groupID") == g,
                    Conversation::Single => field("sendID") == USER || field("recvID") == USER,
                    Conversation::Foreign => false,
                };
                assert!(ok, "message {m} of {cid} left");
            }
        }
    }
}

fn filters(body: &[u8]) {
    let Ok(mut envelope) = serde_json::from_slice::<Value>(body) else { return };
    let Some(data) = envelope.get_mut("data") else { return };
    redact_other_users(data, USER);
    retain_own_messages(data, USER, None);
    no_private_fields(data);
    only_own_messages(data);
    let before = data.clone();
    redact_other_users(data, USER);
    assert_eq!(retain_own_messages(data, USER, None), 0, "a second pass dropped messages");
    assert_eq!(*data, before, "the filters are not idempotent");
}

fn raw(state: &host::AppState, ctx: &CallCtx, path: &str, body: &str) {
    let who = As::User { user_id: USER, platform_id: 1 };
    let Ok(a) = rt().block_on(state.openim.call_raw(ctx, path, Bytes::from(body.to_owned()), who)) else { return };
    assert!(a.status == 200 || a.status == 400, "passthrough answer with status {}", a.status);
    assert!(a.body.len() <= MAX_RESPONSE, "an answer of {} bytes", a.body.len());
    let v: Value = serde_json::from_slice(&a.body).expect("an accepted answer is JSON");
    assert_eq!(v["errCode"].as_i64(), Some(a.err_code), "errCode read two ways");
    if a.err_code == 0 {
        filters(&a.body);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (calls, answers) = text.split_once('\n').unwrap_or((&text, ""));
    {
        let mut s = script().lock().expect("script");
        s.clear();
        for answer in answers.split("\n===\n") {
            let (status, body) = answer.split_once('\n').unwrap_or((answer, ""));
            // 1xx would make the client wait for a final answer; anything else goes.
            let status = status.trim().parse::<u16>().ok().filter(|s| (200..=599).contains(s)).unwrap_or(200);
            s.push_back((status, body.as_bytes().to_vec()));
        }
    }
    let (config, dir) = config();
    let state = {
        let _guard = rt().enter();
        host::build_state(config.clone(), dir).unwrap_or_else(|e| panic!("{e}"))
    };
    let ctx = CallCtx::new("fuzz");
    for call in calls.chars().take(8) {
        match call {
            'U' => {
                if let Ok(Some(u)) = rt().block_on(state.openim.user_info(&ctx, "bob")) {
                    assert_eq!(u.user_id, "bob", "asked for bob's profile");
                }
            }
            'G' => {
                let _ = rt().block_on(state.openim.group_role(&ctx, "g1", "bob"));
            }
            'P' => {
                let _ = rt().block_on(state.openim.privilege(&ctx, "bob"));
            }
            'R' => raw(&state, &ctx, "/msg/pull_msg_by_seq", r#"{"userID":"alice","seqRanges":[]}"#),
            'Q' => raw(&state, &ctx, "/user/get_users_info", r#"{"userIDs":["alice","bob"]}"#),
            'T' => {
                let r: Result<host::openim::ops::ServerTimeResp, _> = rt().block_on(state.openim.call(
                    &ctx,
                    host::openim::ops::GET_SERVER_TIME,
                    &serde_json::json!({}),
                    As::Admin,
                ));
                let _ = r;
            }
            'A' => {
                let body = serde_json::json!({ "userIDs": ["bob"] });
                let _ = rt().block_on(state.openim.call_path(&ctx, "/user/get_users_info", true, &body, As::Admin));
            }
            _ => {}
        }
    }
});
