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
    // The gateway's `[store] instance_id` (the harness sets none: the host name) names every record.
    let instance = send["instance"].as_str().expect("records carry the instance id");
    assert!(!instance.is_empty() && recs.iter().all(|r| r["instance"] == instance), "{send}");
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

fn audit_records(path: &std::path::Path) -> Vec<Value> {
    records(&std::fs::read_to_string(path).expect("audit file"))
}

#[tokio::test]
async fn a_compat_refusal_answered_200_is_audited_as_refused_with_its_reason() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    let (status, tok) = into_json(h.client().call(&alice, "POST", "/v1/auth/token", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{tok}");
    let tok = tok["token"].as_str().expect("token").to_owned();
    let openim = |path: &str, rid: &str| {
        h.http
            .post(h.url(&format!("/openim{path}")))
            .header("operationID", "sdk-op-1")
            .header("token", &tok)
            .header("x-request-id", rid)
            .body(r#"{"userIDs":["alice"]}"#)
            .send()
    };
    // OpenIM's envelope says "no" with HTTP 200: the status alone would record this as ok.
    let (status, body) = into_json(openim("/msg/search_msg", "compat-refused-1").await.expect("answer")).await;
    assert_eq!((status, body["errCode"].as_i64()), (200, Some(1002)), "{body}");
    let (status, body) = into_json(openim("/user/get_users_info", "compat-served-1").await.expect("answer")).await;
    assert_eq!((status, body["errCode"].as_i64()), (200, Some(0)), "{body}");
    // OpenIM unreachable: the SDK gets OpenIM's envelope (HTTP 200), the trail says error.
    h.emu.set_fault(Fault::CloseConnection);
    let (status, body) = into_json(openim("/user/get_users_info", "compat-failed-1").await.expect("answer")).await;
    h.emu.set_fault(Fault::None);
    assert_eq!((status, body["errCode"].as_i64()), (200, Some(14)), "{body}");

    let path = h.audit_file().await;
    host::audit::verify_file(&path).expect("the chain verifies");
    let recs = audit_records(&path);
    let refused = recs.iter().find(|r| r["request_id"] == "compat-refused-1").expect("the refusal is audited");
    assert_eq!(refused["outcome"], "refused", "{refused}");
    assert_eq!(refused["status"], 200);
    assert_eq!(refused["user"], "alice");
    let reason = refused["reason"].as_str().expect("a reason");
    assert!(reason.contains("/msg/search_msg") && reason.contains("allow-list"), "{reason}");
    let served = recs.iter().find(|r| r["request_id"] == "compat-served-1").expect("the served call is audited");
    assert_eq!(served["outcome"], "ok", "{served}");
    assert_eq!(served["reason"], Value::Null);
    let failed = recs.iter().find(|r| r["request_id"] == "compat-failed-1").expect("the failure is audited");
    assert_eq!(failed["outcome"], "error", "{failed}");
    let text = std::fs::read_to_string(&path).expect("audit file");
    assert!(!text.contains(&tok), "the bearer token leaked into the audit log");
    h.shutdown().await;
}

#[tokio::test]
async fn a_second_gateway_on_the_same_audit_file_refuses_to_start() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    // A second gateway built from the same config file, through the path `imgate serve` takes.
    let config = host::Config::load(&h.dir.join("imgate.toml")).expect("the harness config loads");
    let second = host::state::build(config, &h.dir).expect("everything but the audit file is shareable");
    let err = match second.open_audit(&h.dir).await {
        Ok(_) => panic!("a second writer opened the audit file the running gateway holds"),
        Err(e) => e.to_string(),
    };
    let file = h.dir.join("audit.jsonl");
    assert!(err.contains(&file.display().to_string()), "the message names the file: {err}");
    assert!(err.contains("another imgate holds it"), "{err}");

    // The first gateway goes on writing one unbroken chain, and the (read-only) verifier works on
    // the file while the gateway holds its lock.
    let res = h.client().call(&alice, "GET", "/v1/me", None).await.expect("answer");
    assert_eq!(res.status(), 200);
    let rid = res.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    let path = h.audit_file().await;
    let count = host::audit::verify_file(&path).expect("the chain stays valid");
    let recs = audit_records(&path);
    assert_eq!(count as usize, recs.len());
    assert_eq!(recs.last().expect("records")["request_id"], rid.as_str());
    h.shutdown().await;
}

#[tokio::test]
async fn the_head_anchors_the_chain_so_a_cut_off_end_is_detected() {
    let h = Harness::start().await;
    let (_, alice) = h.session("alice").await;
    assert_eq!(h.client().call(&alice, "GET", "/v1/me", None).await.expect("answer").status(), 200);
    let (status, _) = h.get("/v1/admin/audit/head", Some(&h.admin_jwt("devices:write"))).await;
    assert_eq!(status, 403, "the head needs scope imgate:admin");
    let admin = h.admin_jwt("imgate:admin");
    let head = |rid: &'static str| {
        let req = h.http.get(h.url("/v1/admin/audit/head")).bearer_auth(&admin).header("x-request-id", rid);
        async move {
            let (status, body) = into_json(req.send().await.expect("answer")).await;
            assert_eq!(status, 200, "{body}");
            let seq = body["seq"].as_u64().expect("seq");
            let hash = body["hash"].as_str().expect("hash").to_owned();
            assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
            host::audit::AuditHead { seq, hash }
        }
    };

    // The head is the last record written when the request was answered: the request's own
    // record comes right after it.
    let first = head("head-1").await;
    let path = h.audit_file().await;
    let recs = audit_records(&path);
    let own = recs.iter().find(|r| r["request_id"] == "head-1").expect("the head request is audited");
    assert_eq!((own["seq"].as_u64(), own["prev"].as_str()), (Some(first.seq + 1), Some(first.hash.as_str())));

    // With nothing in flight, it is the file's last record; the gauge says the same seq.
    let last = recs.last().expect("records").clone();
    assert_eq!(h.metric("imgate_audit_head_seq").await, last["seq"].as_f64(), "the gauge follows the file");
    let anchor = head("head-2").await;
    assert_eq!((Some(anchor.seq), Some(anchor.hash.as_str())), (last["seq"].as_u64(), last["hash"].as_str()));
    let path = h.audit_file().await;
    let lines: Vec<String> = std::fs::read_to_string(&path).expect("audit file").lines().map(str::to_owned).collect();
    assert_eq!(h.metric("imgate_audit_head_seq").await, Some(lines.len() as f64));

    // The anchor as an operator would keep it and pass it: `imgate audit verify FILE --head SEQ:HASH`.
    let anchor: host::audit::AuditHead = anchor.to_string().parse().expect("SEQ:HASH");
    let intact = host::audit::verify_file_with_head(&path, Some(&anchor));
    assert_eq!(intact, Ok(lines.len() as u64), "records after the anchor are the chain going on");

    // Someone removes the file's last lines, the anchored record with them: what is left is a
    // valid chain on its own, so only the anchor tells.
    let cut_at = (anchor.seq - 1) as usize;
    let tampered = h.dir.join("tampered.jsonl");
    std::fs::write(&tampered, lines[..cut_at].join("\n") + "\n").expect("write");
    assert_eq!(host::audit::verify_file(&tampered), Ok(cut_at as u64), "without the anchor, nothing to see");
    let err = host::audit::verify_file_with_head(&tampered, Some(&anchor)).expect_err("truncation detected");
    assert!(err.reason.contains("truncated") && err.reason.contains(&format!("seq {}", anchor.seq)), "{err}");
    h.shutdown().await;
}
