//! The audit trail of real traffic: one chained record per API call and per admin action, with
//! request id, user, route, OpenIM operationIDs, outcome and latency — and no secrets.

use e2e::*;
use serde_json::{json, Value};

fn records(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect()
}

#[tokio::test]
async fn every_call_is_audited_chained_and_free_of_secrets() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let secret_text = "the-launch-code-is-0000";
    let res = h
        .client()
        .call(&alice, "POST", "/v1/messages/user/bob", Some(json!({"text": secret_text}).to_string().as_bytes()))
        .await
        .expect("answer");
    let rid = res.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert_eq!(res.status(), 200);
    let bad = h
        .client()
        .call(&alice, "POST", "/v1/messages/user/bob", Some(br#"{"text":"x","sendID":"bob"}"#))
        .await
        .expect("answer");
    assert_eq!(bad.status(), 400);
    let unsigned = h.http.get(h.url("/v1/me")).send().await.expect("answer");
    assert_eq!(unsigned.status(), 401);

    let path = h.audit_file().await;
    let count = host::audit::verify_file(&path).expect("the chain verifies");
    let text = std::fs::read_to_string(&path).expect("audit file");
    let recs = records(&text);
    assert_eq!(count as usize, recs.len());

    let send = recs.iter().find(|r| r["request_id"] == rid.as_str()).expect("the send is audited");
    assert_eq!(send["kind"], "api_call");
    assert_eq!(send["user"], "alice");
    assert_eq!(send["route"], "/v1/messages/user/{peer}");
    assert_eq!(send["status"], 200);
    assert!(send["latency_ms"].as_f64().is_some());
    let ops = send["operation_ids"].as_array().expect("operation ids");
    assert!(ops.iter().any(|o| o.as_str().is_some_and(|o| o.starts_with(&format!("{rid}-")))), "{send}");
    // The emulator saw the same operationIDs: one id finds the call on both sides.
    assert!(h
        .emu
        .seen()
        .iter()
        .any(|s| s.path == "/msg/send_msg" && s.operation_id.as_ref().is_some_and(|o| ops.contains(&json!(o)))));

    assert!(recs.iter().any(|r| r["status"] == 400 && r["user"] == "alice"), "refusals are audited too");
    assert!(recs
        .iter()
        .any(|r| r["status"] == 401 && r["reason"].as_str().is_some_and(|s| s.contains("signed request"))));
    assert!(recs.iter().any(|r| r["kind"] == "admin_action" && r["outcome"] == "device_enroll"), "admin actions");
    assert!(recs.iter().any(|r| r["reason"].as_str().is_some_and(|s| s.contains("handshake accepted"))));

    // Never message bodies, session keys or tokens.
    assert!(!text.contains(secret_text), "message text leaked into the audit log");
    let key_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, alice.session_key);
    assert!(!text.contains(&key_b64), "session key leaked");
    assert!(!text.contains("eyJ"), "a JWT leaked");
    h.shutdown().await;
}
