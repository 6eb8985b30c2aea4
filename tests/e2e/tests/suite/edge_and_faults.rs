//! Bad input and upstream faults: clear errors with stable codes, nothing passed on half-done.
//! (attacks.md B6: E4/E5 limits, E10/E11 OpenIM hanging or dropping, E17 draining.)

use std::time::Duration;

use e2e::*;
use serde_json::json;

async fn closed_port_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    drop(l);
    url
}

/// Issue 17, behaviour 1: one stuck admin-token fetch is every waiter's answer. OpenIM hangs
/// before imgate has a token; three calls needing it at once all fail after one OpenIM timeout
/// (504), not one after the other (1.6 s, 3.1 s, 4.1 s before).
#[tokio::test]
async fn a_stuck_admin_token_fetch_fails_every_waiter_together() {
    let opts = Options { openim_timeout_ms: 1_500, request_timeout_ms: 4_000, ..Options::default() };
    let h = Harness::start_with(opts).await;
    h.emu.set_fault(Fault::Hang);
    let admin = h.admin_jwt("users:write");
    let body = json!({"users": [{"user_id": "u1", "nickname": "u"}]});
    let started = std::time::Instant::now();
    let calls = (0..3).map(|_| h.post("/v1/admin/users", Some(&admin), &body));
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!((status, body["code"].as_str()), (504, Some("upstream_timeout")), "{body}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2_500), "three waiters answered after {took:?}");
    h.shutdown().await;
}

/// Issue 17, behaviour 1, for a user's own OpenIM token: alice has none yet when OpenIM hangs;
/// three of her calls that need it fail together after one OpenIM timeout.
#[tokio::test]
async fn a_stuck_user_token_mint_fails_every_waiter_together() {
    let opts = Options { openim_timeout_ms: 1_500, request_timeout_ms: 4_000, ..Options::default() };
    let h = Harness::start_with(opts).await;
    let (_, alice) = h.session("alice").await;
    h.emu.set_fault(Fault::Hang);
    let client = h.client();
    let started = std::time::Instant::now();
    let calls = (0..3).map(|_| client.call(&alice, "GET", "/v1/conversations", None));
    for res in futures_util::future::join_all(calls).await {
        let (status, body) = into_json(res.expect("answer")).await;
        assert_eq!((status, body["code"].as_str()), (504, Some("upstream_timeout")), "{body}");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2_500), "three waiters answered after {took:?}");
    h.shutdown().await;
}

/// Issue 17, behaviour 3: OpenIM refusing imgate's own admin-token request (a wrong
/// `openim.secret`) is the gateway's misconfiguration: 502 `upstream_auth_failed` on every call
/// that needs the admin token, health included, and a gauge that says so — never the caller's 403.
#[tokio::test]
async fn openim_refusing_imgates_own_credentials_is_502_upstream_auth_failed() {
    let h = Harness::start_with(Options { openim_secret: Some("not-the-secret".into()), ..Options::default() }).await;
    let admin = h.admin_jwt("imgate:admin users:write");
    let (status, body) = h.get("/v1/admin/health", Some(&admin)).await;
    assert_eq!((status, body["code"].as_str()), (502, Some("upstream_auth_failed")), "{body}");
    let (status, body) =
        h.post("/v1/admin/users", Some(&admin), &json!({"users": [{"user_id": "u1", "nickname": "u"}]})).await;
    assert_eq!((status, body["code"].as_str()), (502, Some("upstream_auth_failed")), "{body}");
    assert_eq!(h.metric("imgate_openim_auth_failed").await, Some(1.0));
    h.shutdown().await;
}

#[tokio::test]
async fn openim_down_is_502_upstream_unavailable() {
    let opts = Options { openim_api_url: Some(closed_port_url().await), ..Options::default() };
    let h = Harness::start_with(opts).await;
    let (status, body) = h.get("/v1/admin/health", Some(&h.admin_jwt("imgate:admin"))).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "upstream_unavailable");
    // Internals (addresses, OS error text) stay in the log.
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    assert!(!body.to_string().to_lowercase().contains("refused"), "{body}");
    h.shutdown().await;
}

#[tokio::test]
async fn openim_hanging_is_504_upstream_timeout() {
    let opts = Options { openim_timeout_ms: 300, ..Options::default() };
    let h = Harness::start_with(opts).await;
    h.emu.set_fault(Fault::Hang);
    let (status, body) = h.get("/v1/admin/health", Some(&h.admin_jwt("imgate:admin"))).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], "upstream_timeout");
    // Once OpenIM answers again, so does the gateway, within the failed fetch's backoff (200 ms):
    // nothing was left stuck.
    h.emu.set_fault(Fault::None);
    let admin = h.admin_jwt("imgate:admin");
    let back = e2e::reload::within(Duration::from_secs(2), Duration::from_millis(50), async || {
        h.get("/v1/admin/health", Some(&admin)).await.0 == 200
    })
    .await;
    assert!(back.is_some(), "the gateway answers again once OpenIM does");
    assert_eq!(h.metric("imgate_http_requests_in_flight").await, Some(0.0));
    h.shutdown().await;
}

#[tokio::test]
async fn openim_dropping_the_connection_is_502_never_a_partial_200() {
    let h = Harness::start().await;
    h.emu.set_fault(Fault::CloseConnection);
    let token = h.admin_jwt("openim:call");
    let (status, body) = h.post("/v1/admin/openim/msg/get_server_time", Some(&token), &json!({})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "upstream_unavailable");
    h.shutdown().await;
}

#[tokio::test]
async fn oversized_body_is_413_and_never_reaches_openim() {
    let h = Harness::start().await; // max_body_bytes = 64 KiB
    let token = h.admin_jwt("openim:call");
    let big = json!({"userIDs": ["x".repeat(70 * 1024)]});
    let (status, body) = h.post("/v1/admin/openim/user/get_users_info", Some(&token), &big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "payload_too_large");
    assert!(!h.emu.seen().iter().any(|s| s.path == "/user/get_users_info"));
    // The refused body was never read: the answer says the connection ends, so no client pool
    // sends its next request on a connection the server is closing.
    let res = h.http.post(h.url("/v1/admin/openim/user/get_users_info")).bearer_auth(&token).json(&big).send();
    let res = res.await.expect("answer");
    assert_eq!(res.headers().get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]));
    assert_eq!(h.get("/healthz", None).await.0, 200, "the next request goes through");
    h.shutdown().await;
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431() {
    let h = Harness::start().await;
    let mut req = h.http.get(h.url("/healthz"));
    for i in 0..80 {
        req = req.header(format!("x-filler-{i}"), "v");
    }
    let (status, body) = into_json(req.send().await.expect("answer")).await;
    assert_eq!((status, body["code"].as_str()), (431, Some("headers_too_large")), "{body}");
    let req = h.http.get(h.url("/healthz")).header("x-big", "v".repeat(20 * 1024));
    let (status, _) = into_json(req.send().await.expect("answer")).await;
    assert_eq!(status, 431);
    let req = h.http.get(h.url("/healthz")).header("x_user_id", "bob");
    let (status, _) = into_json(req.send().await.expect("answer")).await;
    assert_eq!(status, 400, "underscore header names are refused");
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_error_shape() {
    let h = Harness::start().await;
    let (status, body) = h.get("/v1/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    assert!(body["message"].is_string() && body["request_id"].is_string(), "{body}");
    let (status, body) = h.post("/v1/admin/health", None, &json!({})).await;
    assert_eq!((status, body["code"].as_str()), (405, Some("method_not_allowed")), "{body}");
    // A client-chosen request id is kept only if it is plain.
    let res = h.http.get(h.url("/v1/nope")).header("x-request-id", "bad id\twith tab").send().await.expect("answer");
    let rid = res.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert!(!rid.contains(' ') && !rid.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn gateway_key_is_served_for_discovery() {
    let h = Harness::start().await;
    let (status, body) = h.get("/v1/auth/gateway-key", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["protocol"], "Noise_IK_25519_ChaChaPoly_SHA256");
    assert_eq!(body["prologue"], "imgate/1");
    assert_eq!(body["key_id"], "gw-1");
    assert_eq!(body["public_key"].as_str().map(str::len), Some(44), "32 bytes, base64 with padding");
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_ones() {
    let mut h = Harness::start().await;
    // OpenIM holds every request until released: the request is in flight for as long as the
    // test says, not for as long as a delay happens to last.
    h.emu.set_fault(Fault::Hold);
    let token = h.admin_jwt("imgate:admin");
    let http = h.http.clone();
    let url = h.url("/v1/admin/health");
    let in_flight =
        tokio::spawn(async move { http.get(url).bearer_auth(token).send().await.map(|r| r.status().as_u16()) });
    // Wait (with a deadline) until the request is inside OpenIM.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.emu.held() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "request never reached OpenIM");
        tokio::task::yield_now().await;
    }
    assert_eq!(h.metric("imgate_http_requests_in_flight").await, Some(1.0));
    let server = h.begin_shutdown().expect("running");
    assert!(!in_flight.is_finished(), "the in-flight request waits for OpenIM, shutdown or not");
    h.emu.release();
    let status = in_flight.await.expect("task").expect("the in-flight request was answered, not cut");
    assert_eq!(status, 200);
    server.await.expect("server stopped cleanly");
    let refused = h.http.get(h.url("/healthz")).send().await;
    assert!(refused.is_err(), "new connections are refused after shutdown");
    h.shutdown().await;
}

#[tokio::test]
async fn liveness_is_never_shed_when_the_gateway_is_full() {
    // Two requests at most; OpenIM hangs (holds every request) and both slots fill up.
    let h = Harness::start_with(Options { server_toml: "max_concurrent_requests = 2\n".into(), ..Options::default() })
        .await;
    let token = h.admin_jwt("imgate:admin");
    assert_eq!(h.get("/v1/admin/health", Some(&token)).await.0, 200, "warm-up: imgate's admin token");
    h.emu.set_fault(Fault::Hold);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (http, url, token) = (h.http.clone(), h.url("/v1/admin/health"), token.clone());
            tokio::spawn(async move { http.get(url).bearer_auth(token).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.emu.held() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the requests never reached OpenIM");
        tokio::task::yield_now().await;
    }
    let (status, body) = h.get("/v1/admin/health", Some(&token)).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("overloaded")), "a third API request is shed");
    assert_eq!(h.get("/healthz", None).await.0, 200, "liveness answers while the gateway is full");
    h.emu.release();
    for r in held {
        assert_eq!(r.await.expect("task").expect("answered"), 200);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn metrics_count_requests_and_openim_calls() {
    let h = Harness::start().await;
    let (status, _) = h.get("/v1/admin/health", Some(&h.admin_jwt("imgate:admin"))).await;
    assert_eq!(status, 200);
    let text = h.http.get(&h.metrics_url).send().await.expect("metrics").text().await.expect("text");
    assert!(
        text.contains("imgate_http_requests_total{route=\"/v1/admin/health\",method=\"GET\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(text.contains("imgate_openim_calls_total{operation=\"/msg/get_server_time\",outcome=\"ok\"} 1"), "{text}");
    assert!(text.contains("imgate_openim_admin_token_fetches_total{reason=\"missing\"} 1"), "{text}");
    h.shutdown().await;
}

/// A bearer token for the OpenIM-compatible surface (client-auth §5).
async fn bearer(h: &Harness, s: &imgate_client::Session) -> String {
    let (status, tok) = into_json(h.client().call(s, "POST", "/v1/auth/token", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{tok}");
    tok["token"].as_str().expect("token").to_owned()
}

/// `POST /openim<path>` as an unmodified OpenIM SDK sends it; the raw response.
async fn sdk_call(h: &Harness, token: &str, path: &str, body: &str) -> reqwest::Response {
    h.http
        .post(h.url(&format!("/openim{path}")))
        .header("operationID", "sdk-op")
        .header("token", token)
        .body(body.to_owned())
        .send()
        .await
        .expect("answer")
}

/// Issue 17, E12: OpenIM's msg service answering HTTP 500 to everything. After
/// `[openim.breaker] failures` (5) failures its circuit opens: calls are refused at once with 503
/// `upstream_circuit_open` and `Retry-After` (errCode 14 on `/openim/*`) and OpenIM sees none of
/// them; another service is still called; readiness names the open circuit; once OpenIM answers
/// again a probe closes it.
#[tokio::test]
async fn a_5xx_storm_opens_the_breaker_and_openim_is_spared() {
    let opts = Options { extra_toml: "[openim.breaker]\nfailures = 5\nopen_ms = 400\n".into(), ..Options::default() };
    let h = Harness::start_with(opts).await;
    let admin = h.admin_jwt("openim:call");
    let (_, alice) = h.session("alice").await;
    let tok = bearer(&h, &alice).await;
    let msg = "/v1/admin/openim/msg/get_server_time";
    assert_eq!(h.post(msg, Some(&admin), &json!({})).await.0, 200, "warm-up: imgate's admin token");
    let (_, body) = into_json(sdk_call(&h, &tok, "/msg/newest_seq", "{}").await).await;
    assert_eq!(body["errCode"], 0, "warm-up: alice's OpenIM token {body}");

    h.emu.set_fault(Fault::Status(500));
    let before = h.emu.received();
    let mut codes = Vec::new();
    for _ in 0..20 {
        let res = h.http.post(h.url(msg)).bearer_auth(&admin).json(&json!({})).send().await.expect("answer");
        let retry_after = res.headers().get("retry-after").is_some();
        let (status, body) = into_json(res).await;
        codes.push((status, body["code"].as_str().unwrap_or("").to_owned(), retry_after));
    }
    assert_eq!(h.emu.received() - before, 5, "OpenIM saw the 5 failures that opened the circuit, no more: {codes:?}");
    assert!(codes[..5].iter().all(|(s, c, _)| *s == 502 && c == "upstream_bad_response"), "{codes:?}");
    assert!(codes[5..].iter().all(|(s, c, ra)| *s == 503 && c == "upstream_circuit_open" && *ra), "{codes:?}");
    assert_eq!(h.metric("imgate_openim_breaker_open{service=\"msg\"}").await, Some(1.0));

    // The SDK gets OpenIM's own words for "service unavailable", never imgate's JSON.
    let res = sdk_call(&h, &tok, "/msg/newest_seq", "{}").await;
    assert!(res.headers().get("retry-after").is_some(), "Retry-After on the compat surface too");
    let (status, body) = into_json(res).await;
    assert_eq!(
        (status, body["errCode"].as_i64(), body["errDlt"].as_str()),
        (200, Some(14), Some("upstream_circuit_open"))
    );
    assert_eq!(h.emu.received() - before, 5, "the SDK's call did not reach OpenIM either");

    // Another OpenIM service is not refused: it is called (and fails on its own).
    let (status, body) =
        h.post("/v1/admin/openim/user/get_users_info", Some(&admin), &json!({"userIDs": ["alice"]})).await;
    assert_eq!((status, body["code"].as_str()), (502, Some("upstream_bad_response")), "{body}");
    assert_eq!(h.emu.received() - before, 6);

    // Readiness says which circuit is open, and stays ready (every instance shares this OpenIM).
    let (status, ready) = h.get("/readyz", None).await;
    assert_eq!((status, ready["ready"].as_bool()), (200, Some(true)), "{ready}");
    assert_eq!(ready["openim"]["circuits"], json!([{"service": "msg", "state": "open"}]), "{ready}");

    // OpenIM answers again: after the open period one probe goes through and closes the circuit.
    h.emu.set_fault(Fault::None);
    let back = e2e::reload::within(Duration::from_secs(5), Duration::from_millis(50), async || {
        h.post(msg, Some(&admin), &json!({})).await.0 == 200
    })
    .await;
    assert!(back.is_some(), "the circuit closes once OpenIM answers");
    assert_eq!(h.metric("imgate_openim_breaker_open{service=\"msg\"}").await, Some(0.0));
    assert_eq!(h.get("/readyz", None).await.1["openim"]["circuits"], json!([]));
    h.shutdown().await;
}

/// Issue 17, E12: the retry budget. OpenIM drops every connection (a transport failure, which
/// idempotent reads retry, `read_retries = 2`) and the breaker is off: without a budget 40 reads
/// would reach OpenIM 120 times; with 20 % and no per-second allowance, at most 40 + 20 % of the
/// calls.
#[tokio::test]
async fn the_retry_budget_caps_retries_in_a_storm() {
    let opts = Options {
        openim_toml: "read_retries = 2".into(),
        extra_toml: "[openim.breaker]\nfailures = 0\nretry_budget_percent = 20\nretry_budget_min_per_sec = 0\n".into(),
        ..Options::default()
    };
    let h = Harness::start_with(opts).await;
    let admin = h.admin_jwt("imgate:admin");
    assert_eq!(h.get("/v1/admin/health", Some(&admin)).await.0, 200, "warm-up: imgate's admin token");
    h.emu.set_fault(Fault::CloseConnection);
    let before = h.emu.received();
    for _ in 0..40 {
        let (status, body) = h.get("/v1/admin/health", Some(&admin)).await;
        assert_eq!((status, body["code"].as_str()), (502, Some("upstream_unavailable")), "{body}");
    }
    let reached = h.emu.received() - before;
    // 41 calls counted (the warm-up's too) allow 8 retries; each read reached OpenIM once at least.
    assert!((40..=40 + 9).contains(&reached), "40 reads reached OpenIM {reached} times");
    let denied = h.metric("imgate_openim_retries_total{service=\"msg\",outcome=\"denied\"}").await;
    assert!(denied.is_some_and(|d| d >= 20.0), "the budget denied retries: {denied:?}");
    h.shutdown().await;
}

/// Issue 17, behaviour 4: OpenIM's secret rotated (OpenIM restarted with another `share.yml
/// secret`, its database kept): every token imgate holds now fails with errCode 1505. OpenIM
/// checks tokens first, so imgate drops the refused token and repeats the call once with a fresh
/// one — with the rotated secret read again from `openim.secret_file` — and the SDK never sees
/// 1505, which it would read as its own logout. A secret OpenIM refuses even then is
/// `upstream_auth_failed`, still never a token errCode.
#[tokio::test]
async fn a_rotated_openim_secret_never_reaches_an_sdk_as_its_own_token_error() {
    let opts = Options { openim_secret_file: Some("openim.secret".into()), ..Options::default() };
    let h = Harness::start_with(opts).await;
    let (_, alice) = h.session("alice").await;
    let tok = bearer(&h, &alice).await;
    let (_, body) = into_json(sdk_call(&h, &tok, "/msg/newest_seq", "{}").await).await;
    assert_eq!(body["errCode"], 0, "before the rotation {body}");

    // The rotation, done by the operator in both places.
    h.emu.set_secret("rotated-secret");
    std::fs::write(h.dir.join("openim.secret"), "rotated-secret\n").expect("write");
    let (status, body) = into_json(sdk_call(&h, &tok, "/msg/newest_seq", "{}").await).await;
    assert_eq!((status, body["errCode"].as_i64()), (200, Some(0)), "served after the rotation: {body}");
    let rejected: Vec<i64> = h.emu.seen().iter().map(|s| s.err_code).filter(|c| (1501..=1507).contains(c)).collect();
    assert!(rejected.contains(&1505), "OpenIM did refuse the old tokens with 1505: {rejected:?}");
    let client = h.client();
    let (status, body) = into_json(client.call(&alice, "GET", "/v1/conversations", None).await.expect("answer")).await;
    assert_eq!(status, 200, "{body}");

    // Rotated in OpenIM only: imgate cannot get a token OpenIM accepts.
    h.emu.set_secret("rotated-again");
    let (status, body) = into_json(sdk_call(&h, &tok, "/msg/newest_seq", "{}").await).await;
    assert_eq!((status, body["errCode"].as_i64()), (200, Some(500)), "{body}");
    assert_eq!(body["errDlt"], "upstream_auth_failed", "{body}");
    let (status, body) = into_json(client.call(&alice, "GET", "/v1/conversations", None).await.expect("answer")).await;
    assert_eq!((status, body["code"].as_str()), (502, Some("upstream_auth_failed")), "{body}");
    let (status, ready) = h.get("/readyz", None).await;
    assert_eq!((status, ready["code"].as_str()), (503, Some("upstream_auth_failed")), "{ready}");
    assert_eq!(ready["openim"]["credentials"], "refused");
    h.shutdown().await;
}

/// Issue 17: what the outer stages refuse on `/openim/*` (the request deadline, load shedding,
/// header rules) is answered in OpenIM's envelope with OpenIM's codes, as the stages inside do:
/// an unmodified SDK reads nothing else.
#[tokio::test]
async fn the_compat_surface_answers_deadline_overload_and_header_refusals_in_openims_envelope() {
    let opts = Options {
        openim_timeout_ms: 1_000,
        request_timeout_ms: 1_500,
        server_toml: "max_concurrent_requests = 1".into(),
        ..Options::default()
    };
    let h = Harness::start_with(opts).await;
    let (_, alice) = h.session("alice").await;
    let tok = bearer(&h, &alice).await;

    // Every OpenIM call answers within its own timeout (0.9 s of 1 s), but alice's first call
    // needs two (her OpenIM token minted, then the call): the gateway's deadline (1.5 s) passes
    // first. OpenIM's word for it is gRPC's DeadlineExceeded (4).
    h.emu.set_fault(Fault::Delay(Duration::from_millis(900)));
    let (status, body) = into_json(sdk_call(&h, &tok, "/msg/newest_seq", "{}").await).await;
    assert_eq!((status, body["errCode"].as_i64(), body["errDlt"].as_str()), (200, Some(4), Some("timeout")), "{body}");
    h.emu.set_fault(Fault::None);
    let (_, body) = into_json(sdk_call(&h, &tok, "/msg/newest_seq", "{}").await).await;
    assert_eq!(body["errCode"], 0, "{body}");

    // The gateway is full (one request held in OpenIM): OpenIM's own overload answer, 429.
    h.emu.set_fault(Fault::Hold);
    let held = {
        let (http, url) = (h.http.clone(), h.url("/openim/msg/newest_seq"));
        let tok = tok.clone();
        tokio::spawn(
            async move { http.post(url).header("operationID", "o").header("token", tok).body("{}").send().await },
        )
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.emu.held() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the request never reached OpenIM");
        tokio::task::yield_now().await;
    }
    let res = sdk_call(&h, &tok, "/msg/newest_seq", "{}").await;
    assert_eq!(res.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let (status, body) = into_json(res).await;
    assert_eq!((status, body["errCode"].as_i64()), (429, Some(429)), "{body}");
    h.emu.release();
    let _ = held.await.expect("task");

    // A header name with `_` (attacks.md E8): OpenIM's ArgsError.
    let res = h
        .http
        .post(h.url("/openim/msg/newest_seq"))
        .header("operationID", "o")
        .header("token", &tok)
        .header("X_User_ID", "bob")
        .body("{}")
        .send()
        .await
        .expect("answer");
    let (_, body) = into_json(res).await;
    assert_eq!(body["errCode"], 1001, "{body}");
    h.shutdown().await;
}
