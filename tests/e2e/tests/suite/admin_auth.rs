//! Admin JWT rules of client-auth §7 (attacks.md B3), through the real gateway over HTTP.
//!
//! Every failure must be the same `401 {"code":"unauthenticated"}`; a valid token lacking the
//! route's scope is `403 {"code":"forbidden"}`. The route used is `GET /v1/admin/health`
//! (scope `imgate:admin`), which also reaches the emulator when the token is good.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use e2e::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

const ROUTE: &str = "/v1/admin/health";

fn claims(iss: &str) -> Value {
    let now = now_secs();
    json!({"iss": iss, "aud": AUDIENCE, "sub": "ops@test", "scope": "imgate:admin", "iat": now, "exp": now + 300})
}

async fn expect_401(h: &Harness, token: &str, why: &str) {
    let (status, body) = h.get(ROUTE, Some(token)).await;
    assert_eq!(status, 401, "{why}: {body}");
    assert_eq!(body["code"], "unauthenticated", "{why}: {body}");
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()), "{why}: {body}");
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}.", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()))
}

#[tokio::test]
async fn valid_tokens_of_each_algorithm_family_are_accepted() {
    let h = Harness::start().await;
    let ed = h.sign_ed(&header(Algorithm::EdDSA, ED_KID), &claims(ED_ISSUER));
    let rs = h.sign_rs(&header(Algorithm::RS256, RS_KID), &claims(RS_ISSUER));
    let hs = h.sign_hs(&header(Algorithm::HS256, HS_KID), &claims(HS_ISSUER));
    for (name, token) in [("EdDSA", ed), ("RS256", rs), ("HS256", hs)] {
        let (status, body) = h.get(ROUTE, Some(&token)).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["openim"]["reachable"], true);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn missing_or_garbled_authorization_is_401() {
    let h = Harness::start().await;
    let (status, body) = h.get(ROUTE, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));
    for token in ["", "a.b", "a.b.c.d", "!!!.???.***", "eyJhbGciOiJFZERTQSJ9.e30"] {
        expect_401(&h, token, &format!("garbled {token:?}")).await;
    }
    // An 8 KiB+ header is refused before any decoding.
    expect_401(&h, &"a".repeat(9000), "oversized").await;
    h.shutdown().await;
}

#[tokio::test]
async fn alg_none_in_every_spelling_is_401() {
    let h = Harness::start().await;
    for alg in ["none", "None", "NONE"] {
        let token = unsigned(&json!({"alg": alg, "kid": ED_KID, "typ": "JWT"}), &claims(ED_ISSUER));
        expect_401(&h, &token, alg).await;
    }
    h.shutdown().await;
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_401() {
    // CVE-2015-9235: the attacker knows the RS256 issuer's public key and uses it as an HMAC secret.
    let h = Harness::start().await;
    let forged = Harness::sign_raw_hs256(
        &json!({"alg": "HS256", "kid": RS_KID, "typ": "JWT"}),
        &claims(RS_ISSUER),
        Harness::rsa_public_pem().as_bytes(),
    );
    expect_401(&h, &forged, "HS/RS confusion").await;
    h.shutdown().await;
}

#[tokio::test]
async fn time_claims_are_enforced() {
    let h = Harness::start().await;
    let now = now_secs();
    let base = claims(ED_ISSUER);
    let with = |patch: Value| {
        let mut c = base.clone();
        for (k, v) in patch.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let ed = |c: &Value| h.sign_ed(&header(Algorithm::EdDSA, ED_KID), c);
    expect_401(&h, &ed(&with(json!({"exp": now - 3600, "iat": now - 3700}))), "expired").await;
    expect_401(&h, &ed(&with(json!({"iat": now - 100, "exp": now - 45}))), "expired beyond the 30 s leeway").await;
    expect_401(&h, &ed(&with(json!({"nbf": now + 3600}))), "nbf in the future").await;
    expect_401(&h, &ed(&with(json!({"exp": "never"}))), "exp as a string").await;
    let mut no_exp = base.clone();
    no_exp.as_object_mut().expect("object").remove("exp");
    expect_401(&h, &ed(&no_exp), "no exp").await;
    // Within the leeway is still fine.
    let (status, body) = h.get(ROUTE, Some(&ed(&with(json!({"iat": now - 60, "exp": now - 5}))))).await;
    assert_eq!(status, 200, "exp 5 s ago is within the leeway: {body}");
    h.shutdown().await;
}

#[tokio::test]
async fn lifetime_longer_than_the_maximum_is_401() {
    let h = Harness::start().await;
    let now = now_secs();
    let mut c = claims(ED_ISSUER);
    c["iat"] = json!(now);
    c["exp"] = json!(now + 2 * 3600);
    expect_401(&h, &h.sign_ed(&header(Algorithm::EdDSA, ED_KID), &c), "2 h lifetime > 1 h max").await;
    h.shutdown().await;
}

#[tokio::test]
async fn issuer_audience_and_subject_are_required_and_checked() {
    let h = Harness::start().await;
    let ed = |c: &Value| h.sign_ed(&header(Algorithm::EdDSA, ED_KID), c);
    let mut wrong_aud = claims(ED_ISSUER);
    wrong_aud["aud"] = json!("someone-else");
    expect_401(&h, &ed(&wrong_aud), "wrong aud").await;
    let mut wrong_iss = claims(ED_ISSUER);
    wrong_iss["iss"] = json!(RS_ISSUER);
    expect_401(&h, &ed(&wrong_iss), "iss of another issuer").await;
    for missing in ["aud", "iss", "sub"] {
        let mut c = claims(ED_ISSUER);
        c.as_object_mut().expect("object").remove(missing);
        expect_401(&h, &ed(&c), &format!("missing {missing}")).await;
    }
    let mut aud_list = claims(ED_ISSUER);
    aud_list["aud"] = json!(["other", AUDIENCE]);
    let (status, body) = h.get(ROUTE, Some(&ed(&aud_list))).await;
    assert_eq!(status, 200, "an aud list containing ours is accepted: {body}");
    h.shutdown().await;
}

#[tokio::test]
async fn unknown_or_hostile_kid_is_401() {
    let h = Harness::start().await;
    for kid in ["nope", "../../dev/null", "' OR 1=1--", &"k".repeat(10_000)] {
        let token = h.sign_ed(&header(Algorithm::EdDSA, kid), &claims(ED_ISSUER));
        expect_401(&h, &token, &format!("kid {:.20}", kid)).await;
    }
    // A key of one issuer cannot vouch for another issuer's kid.
    let token = h.sign_ed(&header(Algorithm::EdDSA, RS_KID), &claims(RS_ISSUER));
    expect_401(&h, &token, "EdDSA under the RS256 issuer's kid").await;
    h.shutdown().await;
}

#[tokio::test]
async fn crit_and_key_url_headers_are_401() {
    let h = Harness::start().await;
    for (name, value) in [
        ("crit", json!(["exp"])),
        ("jku", json!("http://127.0.0.1:9/jwks.json")),
        ("x5u", json!("http://127.0.0.1:9/cert.pem")),
        ("jwk", json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})),
        ("x5c", json!(["MIIB"])),
    ] {
        let mut header = header(Algorithm::EdDSA, ED_KID);
        match name {
            "crit" => header.crit = Some(vec!["exp".into()]),
            "jku" => header.jku = value.as_str().map(String::from),
            "x5u" => header.x5u = value.as_str().map(String::from),
            "x5c" => header.x5c = Some(vec!["MIIB".into()]),
            _ => header.jwk = Some(serde_json::from_value(value.clone()).expect("jwk")),
        }
        let token = h.sign_ed(&header, &claims(ED_ISSUER));
        expect_401(&h, &token, name).await;
    }
    h.shutdown().await;
}

#[tokio::test]
async fn valid_token_without_the_scope_is_403() {
    let h = Harness::start().await;
    let token = h.admin_jwt("openim:call users:write");
    let (status, body) = h.get(ROUTE, Some(&token)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    let (status, _) = h.get(ROUTE, Some(&h.admin_jwt("imgate:admin"))).await;
    assert_eq!(status, 200);
    h.shutdown().await;
}
