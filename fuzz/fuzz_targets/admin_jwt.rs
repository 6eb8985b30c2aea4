//! Fuzz target `admin_jwt`: the admin API's `Authorization` header through
//! `AdminVerifier::verify` (client-auth §7), with two issuers as an operator configures them (an
//! HS256 one, kid `hs`; an EdDSA one, kid `ed`), and the JWKS file reader of the config loader.
//!
//! Input: byte 0 picks the mode.
//! - `S`: the rest is `<header JSON>\n<payload JSON>`; `NOW` in it becomes the current Unix time.
//!   The target signs it with the HS256 issuer's secret and verifies `Bearer <jwt>`.
//! - `J`: the rest is a JWKS file, loaded for an EdDSA issuer (`AdminVerifier::from_config`).
//! - anything else: the rest is the raw header value.
//!
//! Asserts, for every token accepted: its header names `alg: HS256` and `kid: hs` and no
//! forbidden parameter; `iss` is the issuer, `aud` is (or lists) the audience, `sub` is the
//! principal's subject, `exp`/`nbf`/`iat` are integers that keep the token inside the leeway and
//! the maximum lifetime, the scopes are the `scope` claim's words; and the same token with one
//! character of its signature changed is refused.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hmac::{Hmac, Mac};
use host::auth::admin_jwt::{IssuerConfig, KeyConfig, FORBIDDEN_HEADER_PARAMS};
use host::auth::AdminVerifier;
use imgate_fuzz::scratch_dir;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET: &[u8] = b"fuzz-hs256-secret-of-at-least-32-bytes!";
const ISSUER: &str = "https://idp.fuzz";
const AUDIENCE: &str = "imgate-admin";
const LEEWAY: u64 = 30;
const MAX_LIFETIME: u64 = 3600;

fn issuer(iss: &str, alg: &str, keys: Vec<KeyConfig>, jwks_file: Option<PathBuf>) -> IssuerConfig {
    IssuerConfig {
        issuer: iss.into(),
        audience: AUDIENCE.into(),
        algorithms: vec![alg.into()],
        leeway_secs: LEEWAY,
        max_lifetime_secs: MAX_LIFETIME,
        keys,
        jwks_file,
    }
}

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir("admin-jwt");
        std::fs::write(dir.join("hs.secret"), SECRET).expect("secret");
        let ed = host::keys::generate_admin_key().expect("ed25519 key");
        std::fs::write(dir.join("ed.pem"), ed.public_pem).expect("pem");
        dir
    })
}

fn verifier() -> &'static AdminVerifier {
    static V: OnceLock<AdminVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let issuers = [
            issuer(ISSUER, "HS256", vec![KeyConfig { kid: "hs".into(), file: "hs.secret".into() }], None),
            issuer("https://ed.fuzz", "EdDSA", vec![KeyConfig { kid: "ed".into(), file: "ed.pem".into() }], None),
        ];
        AdminVerifier::from_config(&issuers, dir()).unwrap_or_else(|e| panic!("{e:?}"))
    })
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn hs256(signing_input: &str) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET).expect("hmac");
    mac.update(signing_input.as_bytes());
    B64URL.encode(mac.finalize().into_bytes())
}

fn int(claims: &Value, name: &str) -> Option<u64> {
    claims.get(name).map(|v| v.as_u64().unwrap_or_else(|| panic!("accepted a non-integer {name}: {v}")))
}

fn signed(rest: &[u8]) {
    let text = String::from_utf8_lossy(rest).replace("NOW", &now().to_string());
    let (header, payload) = text.split_once('\n').unwrap_or((&text, ""));
    let input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let sig = hs256(&input);
    let token = format!("Bearer {input}.{sig}");
    let before = now();
    let verdict = verifier().verify(Some(token.as_bytes()));
    let after = now();
    let Ok(p) = verdict else { return };

    let h: Value = serde_json::from_str(header).expect("accepted header is JSON");
    assert_eq!((h["alg"].as_str(), h["kid"].as_str()), (Some("HS256"), Some("hs")), "header {h}");
    for param in FORBIDDEN_HEADER_PARAMS {
        assert!(h.get(param).is_none(), "accepted a header with {param}");
    }
    let c: Value = serde_json::from_str(payload).expect("accepted payload is JSON");
    assert_eq!(c["iss"].as_str(), Some(ISSUER));
    assert_eq!(p.issuer, ISSUER);
    let aud_ok = match &c["aud"] {
        Value::String(a) => a == AUDIENCE,
        Value::Array(list) => list.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        other => panic!("accepted aud {other}"),
    };
    assert!(aud_ok, "accepted aud {}", c["aud"]);
    assert_eq!(c["sub"].as_str(), Some(p.subject.as_str()));
    assert!(!p.subject.is_empty());
    let exp = int(&c, "exp").expect("accepted without exp");
    assert!(exp + LEEWAY >= before, "accepted an expired token");
    assert!(exp <= after + LEEWAY + MAX_LIFETIME, "accepted a token living beyond the maximum");
    if let Some(nbf) = int(&c, "nbf") {
        assert!(nbf <= after + LEEWAY, "accepted before nbf");
    }
    if let Some(iat) = int(&c, "iat") {
        assert!(iat <= after + LEEWAY && iat <= exp && exp - iat <= MAX_LIFETIME, "iat {iat}, exp {exp}");
    }
    let scopes: std::collections::BTreeSet<String> = match c.get("scope") {
        None => Default::default(),
        Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
        Some(other) => panic!("accepted scope {other}"),
    };
    assert_eq!(p.scopes, scopes);

    // The same token with one signature character changed.
    let mut bad = sig.into_bytes();
    let i = rest.len() % bad.len();
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let forged = format!("Bearer {input}.{}", String::from_utf8(bad).expect("ascii"));
    assert!(verifier().verify(Some(forged.as_bytes())).is_err(), "a forged signature was accepted");
}

fn jwks(file: &[u8]) {
    let path = dir().join("keys.jwks");
    std::fs::write(&path, file).expect("jwks file");
    let cfg = issuer("https://jwks.fuzz", "EdDSA", Vec::new(), Some(path));
    if let Ok(v) = AdminVerifier::from_config(&[cfg], dir()) {
        // Whatever it loaded verifies without panicking.
        let _ = v.verify(Some(b"Bearer eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.e30.AAAA"));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode {
        b'S' => signed(rest),
        b'J' => jwks(rest),
        _ => {
            if let Ok(p) = verifier().verify(Some(rest)) {
                // Only a correctly signed token could pass; the fuzzer holds no key.
                panic!("an unsigned header value was accepted for {:?}", p.subject);
            }
        }
    }
});
