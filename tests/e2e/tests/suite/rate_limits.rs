//! Per-user rate limits through the gateway (attacks.md A8; issue 4's limiter acceptance).

use e2e::*;

#[tokio::test]
async fn burst_then_429_with_retry_after_keyed_by_user_not_session() {
    let opts = Options {
        rate_limits_toml:
            "[rate_limits.default]\nper_second = 1\nburst = 3\n[rate_limits.send]\nper_second = 1\nburst = 2\n".into(),
        ..Options::default()
    };
    let h = Harness::start_with(opts).await;
    let (key, s1) = h.session("olga").await;
    // A second session of the same user shares the user's budget.
    let s2 = h.client().handshake(&key, &h.gateway_public(), "phone").await.expect("second session");
    let (_, other) = h.session("pete").await;
    let c = h.client();
    let mut statuses = Vec::new();
    for s in [&s1, &s2, &s1] {
        statuses.push(c.call(s, "GET", "/v1/me", None).await.expect("answer").status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200]);
    let res = c.call(&s2, "GET", "/v1/me", None).await.expect("answer");
    assert_eq!(res.status(), 429, "the 4th call of the user, whichever session");
    let retry: u64 = res.headers()["retry-after"].to_str().expect("ascii").parse().expect("seconds");
    assert_eq!(retry, 1, "1 per second: the next token comes within a second");
    let (status, body) = into_json(res).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    // Another user is not slowed by olga's burst.
    assert_eq!(c.call(&other, "GET", "/v1/me", None).await.expect("answer").status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn sending_has_its_own_class() {
    let opts = Options {
        rate_limits_toml:
            "[rate_limits.default]\nper_second = 100\nburst = 100\n[rate_limits.send]\nper_second = 1\nburst = 2\n"
                .into(),
        ..Options::default()
    };
    let h = Harness::start_with(opts).await;
    let (_, alice) = h.session("alice").await;
    h.session("bob").await;
    let c = h.client();
    let body = br#"{"text":"hi"}"#;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses
            .push(c.call(&alice, "POST", "/v1/messages/user/bob", Some(body)).await.expect("answer").status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 429]);
    // Reading is another class: still allowed.
    assert_eq!(c.call(&alice, "GET", "/v1/me", None).await.expect("answer").status(), 200);
    assert_eq!(
        h.emu.seen().iter().filter(|r| r.path == "/msg/send_msg").count(),
        2,
        "the refused send never reached OpenIM"
    );
    h.shutdown().await;
}
