//! Admin routes authenticate before anything else of the route runs (issue 11): the admin JWT
//! and the route's scope are checked first, then the route's rate-limit class (`admin`), then
//! its plugin chain, then the handler. A plugin on an admin route never sees a request that has
//! not passed authentication and the route's scope — counted by the plugin's own call metric,
//! through the real gateway.

use e2e::plugins::hostile_plugin;
use e2e::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

/// The `echo` plugin (proceeds, or 403 `denied` with `x-deny`) on `admin.health`.
fn echo_on_admin_health() -> String {
    format!(
        "[[plugin]]\nname = \"echo\"\npath = \"{}\"\ncapabilities = []\n\
         [[route_plugins]]\nroute = \"admin.health\"\nplugins = [{{ plugin = \"echo\", config = {{}} }}]\n",
        hostile_plugin("echo").display()
    )
}

async fn echo_calls(h: &Harness) -> f64 {
    h.metric("imgate_plugin_calls_total{plugin=\"echo\",hook=\"on_request\"}").await.unwrap_or(0.0)
}

async fn health(h: &Harness, auth: Option<&str>, extra_header: Option<(&str, &str)>) -> u16 {
    let mut req = h.http.get(h.url("/v1/admin/health"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some((k, v)) = extra_header {
        req = req.header(k, v);
    }
    req.send().await.expect("answer").status().as_u16()
}

#[tokio::test]
async fn a_plugin_on_an_admin_route_sees_only_authenticated_admins_with_the_scope() {
    let h = Harness::start_with(Options { extra_toml: echo_on_admin_health(), ..Options::default() }).await;
    let now = now_secs();
    let expired = h.sign_ed(
        &header(Algorithm::EdDSA, ED_KID),
        &json!({"iss": ED_ISSUER, "aud": AUDIENCE, "sub": "ops@test", "scope": "imgate:admin", "iat": now - 600, "exp": now - 300}),
    );
    let wrong_scope = format!("Bearer {}", h.admin_jwt("devices:write"));
    let refused = [
        (None, 401),
        (Some("Bearer not-a-jwt".to_owned()), 401),
        (Some(format!("Bearer {expired}")), 401),
        (Some(wrong_scope), 403),
    ];
    for (auth, want) in refused {
        assert_eq!(health(&h, auth.as_deref(), None).await, want, "{auth:?}");
    }
    assert_eq!(echo_calls(&h).await, 0.0, "the plugin ran for a request that failed authentication or scope");
    let good = format!("Bearer {}", h.admin_jwt("imgate:admin"));
    assert_eq!(health(&h, Some(&good), None).await, 200);
    assert_eq!(echo_calls(&h).await, 1.0, "the plugin runs for an authenticated admin with the scope");
    assert_eq!(health(&h, Some(&good), Some(("x-deny", "1"))).await, 403, "and its verdict holds");
    assert_eq!(echo_calls(&h).await, 2.0);
    h.shutdown().await;
}

#[tokio::test]
async fn admin_routes_have_a_rate_limit_class_of_their_own() {
    let rate_limits_toml = "[rate_limits.default]\nper_second = 1000\nburst = 1000\n\
                            [rate_limits.send]\nper_second = 1000\nburst = 1000\n\
                            [rate_limits.admin]\nper_second = 1\nburst = 2\n"
        .to_owned();
    let h = Harness::start_with(Options { rate_limits_toml, ..Options::default() }).await;
    let good = format!("Bearer {}", h.admin_jwt("imgate:admin"));
    assert_eq!(health(&h, Some(&good), None).await, 200);
    assert_eq!(health(&h, Some(&good), None).await, 200);
    let res = h.http.get(h.url("/v1/admin/health")).header("authorization", &good).send().await.expect("answer");
    assert_eq!(res.status().as_u16(), 429, "the `admin` class: burst 2");
    assert!(res.headers().contains_key("retry-after"));
    // Unauthenticated requests are refused before the limiter: they cannot spend an admin's quota.
    assert_eq!(health(&h, None, None).await, 401);
    h.shutdown().await;
}

/// Every route but the three public ones authenticates before anything else of it runs: with a
/// plugin on every route that may have a chain, a request without credentials to each route the
/// gateway serves (its descriptors, the router's own source) is refused by authentication, the
/// plugin is never called, and nothing reaches OpenIM.
#[tokio::test]
async fn no_route_runs_a_plugin_or_its_handler_before_authentication() {
    let routes = host::routes::descriptors(&host::routes::table::default_routes());
    let chained: Vec<String> = routes.iter().filter(|r| r.chain).map(|r| format!("\"{}\"", r.name)).collect();
    let extra_toml = format!(
        "[[plugin]]\nname = \"echo\"\npath = \"{}\"\ncapabilities = []\n\
         [[route_plugins]]\nroutes = [{}]\nplugins = [{{ plugin = \"echo\", config = {{}} }}]\n",
        hostile_plugin("echo").display(),
        chained.join(", ")
    );
    let h = Harness::start_with(Options { extra_toml, ..Options::default() }).await;
    let seen_before = h.emu.seen().len();
    let mut checked = 0;
    for r in routes.iter().filter(|r| r.auth != host::routes::Auth::Public) {
        let path: String = r
            .path
            .split('/')
            .map(|seg| match seg {
                "{*path}" => "user/x",
                s if s.starts_with('{') => "x",
                s => s,
            })
            .collect::<Vec<_>>()
            .join("/");
        let res = h
            .http
            .request(r.method.clone(), h.url(&path))
            .header("content-type", "application/json")
            .header("operationID", "op-1")
            .body("{}")
            .send()
            .await
            .expect("answer");
        let status = res.status().as_u16();
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        match r.auth {
            // OpenIM's envelope: HTTP 200 with a token error.
            host::routes::Auth::Bearer => {
                assert_eq!(status, 200, "{} {path}: {body}", r.method);
                assert_eq!(body["errCode"], 1001, "{} {path}: {body}", r.method);
            }
            // OpenIM's msg gateway: HTTP 200 with an argument error (no sendID, no token).
            host::routes::Auth::WsBearer => {
                assert_eq!(status, 200, "{} {path}: {body}", r.method);
                assert_eq!(body["errCode"], 1602, "{} {path}: {body}", r.method);
            }
            _ => {
                assert_eq!(status, 401, "{} {path}: {body}", r.method);
                assert_eq!(body["code"], "unauthenticated", "{} {path}: {body}", r.method);
            }
        }
        checked += 1;
    }
    assert!(checked > 100, "every route was tried: {checked}");
    assert_eq!(echo_calls(&h).await, 0.0, "a plugin ran before authentication");
    assert_eq!(h.emu.seen().len(), seen_before, "a request reached OpenIM before authentication");
    // The same plugin does run once a request is authenticated.
    let good = format!("Bearer {}", h.admin_jwt("imgate:admin"));
    assert_eq!(health(&h, Some(&good), None).await, 200);
    assert_eq!(echo_calls(&h).await, 1.0);
    h.shutdown().await;
}
