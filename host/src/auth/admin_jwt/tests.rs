//! Unit tests of the admin JWT verifier: one accepted token per algorithm family, and the
//! attacks.md B3 cases (J1–J16, J18–J20) plus the config checks. Ed25519 keys are generated per
//! run; the P-256 and RSA keys are fixed test-only PEMs (an RSA keygen in a debug build is too
//! slow), never used anywhere else. No sleeps: times are set relative to "now" with wide margins.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
use jsonwebtoken::EncodingKey;
use serde_json::json;

use super::*;

// ---- fixed test keys (test-only; generated with openssl for these tests) ---------------------

const EC_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8Cea9TVOxqOvYDUw
N/8zm1/CPrSzDZcn/w2+5N0GV9uhRANCAATHZVyhgMmh1poPY7G4cFkCqk8i0QQE
OhOBNROvMfgXYi7EDKYQwywlI1NguKYxOabl9mYmqhDCgSiWWG/tcgLL
-----END PRIVATE KEY-----
";

const EC_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEx2VcoYDJodaaD2OxuHBZAqpPItEE
BDoTgTUTrzH4F2IuxAymEMMsJSNTYLimMTmm5fZmJqoQwoEollhv7XICyw==
-----END PUBLIC KEY-----
";

const EC_P384_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEYGcruMMAUXWEPOS2BzhejOSStaxHBx2X
OwjtgJXpxsEx6LIn8WuTfcmWpe1/6mzrUPwSXqc6USBfncaQXhGwQ8W10Kt/AGB+
qlV1dUOcT8uqEyusN5pAiFcabo9/GvKO
-----END PUBLIC KEY-----
";

const RSA_PRIVATE_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEArGwaAybP7/b3BnVcW9ypUuaLwNbZU0WztJSWFD7BMdLhb76j
kciNFDBry36lbNrzWh7/+WVQ99P09LE5BCKfQvEt6oa+CTAN84cHJM2NjSUH7oAf
Pzm37RuJQFfQDRfRUZOl6KNsCUORDBl6V+C7AFZa+02D5MOyj7FVRzuMKb27RL08
i1p8LrriGh64BklXEptoKYDXZ4/HG+M7iF7Yae4GGjaqDqSdQjXEa52V3gn+O1ih
8zjRTjgBoGbBA6u4ATMd7LNTWNRjKX7pBOfz/QPDscQ9RdFIEwjiL5SNrTmV9KoD
OdwHKy7DJ/npdxSDu7sX0pTmeRiNCJsaYyxmlwIDAQABAoIBADFBiITR96ETqin8
KPBNL0nxdocWWWtChD3YHK+X5dT361Li4RNqeXMFCiZN/bAFNHPQW0vBt8m0kUu9
vQ4DXf/fqkBPUcaKJdImBtJqrj9eDtABZevH71UbArCQ5Wx4G2H0jfbRiLF0zeDo
/lxQZNuJz9/umvklNsN542TADCB4DPVDI9PHEguTnNL+hIHilL2miz6DiPruJIVU
P0jpPpYjkdNqR7IUxHIlXVgtt34qhq98aOSfSxgnVfZt7MbPNwMisEEe8TfaDDvC
keO5ir9rqMcBDiDvGnlPA0gHMYUOh+sQ5U12TuWmhoLTNv0vpObGZlczdkSN9zk4
CPeyv+ECgYEA3EbnyfW90Fg6bLSlydRhC8JDFiVmREKMswIEaR/z4xW9tAuDcxjO
gxZOLCJKbMmrS0SlHgrFg5/gcCyGw1KP8MeoToZXh+anJTb3/pOzPa07R792RNN3
bIiZ75C7XVqD43YUPCoWfEaNiNvOgtMyEUmnQZ1qky6MXpbeahXgwgkCgYEAyGJx
pEMloUXdkkRdEfXBXsE3yr2lXsuLAM0KbsrckRTSi+JJSFku+XOOxvKQZWHmW8CX
x5s375X4NLFvjISPPeh9AgzOdUpeaWC5+na85XISQ9kCqtWpCWWacxW4tMN9fBsV
bkJlr0QNmorTkDPxS6k/ONQHme35HAzxvYOxi58CgYAKySoGWJMPxZIuynWnuU97
LOruBazJQNz00u92Wkst3l2omDu6ggdyob/4J0Gvq/xINjdDjlF3jXeG5pc+ryc/
KfeSyL82d1PN3bAs9fx706SocbaPzi710IaBFXwnKQx2Mczx2Tm6ohXCEsk83KyB
7jJTYyrZxBi5dPe1CBc2SQKBgQCFTR/GIzkMMNr1625yfSbW7vg7ca9qAUOGE+CF
1YOnK8/oaG9RpqpeHWZ0qHYwS1Ef5l3R1kr+oahM/WB0fNaBW4CVdYl+cyudNFBj
8ss0Y48M/XcNyDa73pBBUMjfz1BR1/6Iq7jTQBVAomuc+UDikUNSfZJU7v8Rjvbd
mJbqhwKBgQDHsm4kG94UzYjiMhNIAGad2wf5ESYwuXdIkT/cCP+UIOCjwsIGNJEg
3XGUWjWx8AWJ1ULXYodXqdzd/ebn0zobmaY7kTZAlngkfwfvYZig6mNM/Dw8jfyG
iFuGCuSViI5Xwlm51FTjM2rSFyvVUjwzcEscITnay5veenKuE7T1qg==
-----END RSA PRIVATE KEY-----
";

const RSA_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEArGwaAybP7/b3BnVcW9yp
UuaLwNbZU0WztJSWFD7BMdLhb76jkciNFDBry36lbNrzWh7/+WVQ99P09LE5BCKf
QvEt6oa+CTAN84cHJM2NjSUH7oAfPzm37RuJQFfQDRfRUZOl6KNsCUORDBl6V+C7
AFZa+02D5MOyj7FVRzuMKb27RL08i1p8LrriGh64BklXEptoKYDXZ4/HG+M7iF7Y
ae4GGjaqDqSdQjXEa52V3gn+O1ih8zjRTjgBoGbBA6u4ATMd7LNTWNRjKX7pBOfz
/QPDscQ9RdFIEwjiL5SNrTmV9KoDOdwHKy7DJ/npdxSDu7sX0pTmeRiNCJsaYyxm
lwIDAQAB
-----END PUBLIC KEY-----
";

const RSA_PUBLIC_PKCS1_PEM: &str = "-----BEGIN RSA PUBLIC KEY-----
MIIBCgKCAQEArGwaAybP7/b3BnVcW9ypUuaLwNbZU0WztJSWFD7BMdLhb76jkciN
FDBry36lbNrzWh7/+WVQ99P09LE5BCKfQvEt6oa+CTAN84cHJM2NjSUH7oAfPzm3
7RuJQFfQDRfRUZOl6KNsCUORDBl6V+C7AFZa+02D5MOyj7FVRzuMKb27RL08i1p8
LrriGh64BklXEptoKYDXZ4/HG+M7iF7Yae4GGjaqDqSdQjXEa52V3gn+O1ih8zjR
TjgBoGbBA6u4ATMd7LNTWNRjKX7pBOfz/QPDscQ9RdFIEwjiL5SNrTmV9KoDOdwH
Ky7DJ/npdxSDu7sX0pTmeRiNCJsaYyxmlwIDAQAB
-----END RSA PUBLIC KEY-----
";

const RSA_1024_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDZK7JnIDYBQZPtWQCXA3aYvRzm
CMdZIBxZ8RQUwOJwrrrisGQsLWhmOs5OFdNLDDENgRV65lBg2IjPQEponEnKAP0X
tJD2B+mL/kMMPXNaCxQ5rxCcHEp2Ds4HA1IFNviHXlgYAaFtauaJTjX9mxQXGQkg
lTW7nGNVIOKsA/KDpwIDAQAB
-----END PUBLIC KEY-----
";

/// Order of the P-256 group.
const P256_N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xBC, 0xE6, 0xFA,
    0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

const AUD: &str = "imgate-admin";
const ED_ISS: &str = "https://ed.issuer.example";
const ES_ISS: &str = "https://es.issuer.example";
const RS_ISS: &str = "https://rs.issuer.example";
const HS_ISS: &str = "https://hs.issuer.example";

// ---- helpers -------------------------------------------------------------------------------

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "imgate-admin-jwt-test-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct EdPair {
    signing: EncodingKey,
    public_pem: String,
    raw_public: [u8; 32],
}

fn ed_pair() -> EdPair {
    let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let private_pem = sk.to_pkcs8_pem(LineEnding::LF).unwrap();
    let vk = sk.verifying_key();
    EdPair {
        signing: EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap(),
        public_pem: vk.to_public_key_pem(LineEnding::LF).unwrap(),
        raw_public: vk.to_bytes(),
    }
}

fn key(kid: &str, file: &str) -> KeyConfig {
    KeyConfig { kid: kid.into(), file: file.into() }
}

fn issuer(iss: &str, alg: &str, keys: Vec<KeyConfig>) -> IssuerConfig {
    IssuerConfig {
        issuer: iss.into(),
        audience: AUD.into(),
        algorithms: vec![alg.into()],
        leeway_secs: DEFAULT_LEEWAY_SECS,
        max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
        keys,
        jwks_file: None,
    }
}

struct Fixture {
    verifier: AdminVerifier,
    ed: EncodingKey,
    ed_other: EncodingKey,
    es: EncodingKey,
    rs: EncodingKey,
    hs: EncodingKey,
}

/// One verifier with an issuer per family, built once per test binary.
fn fx() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = TempDir::new();
        let ed = ed_pair();
        let ed_other = ed_pair();
        let secret: [u8; 32] = rand::random();
        dir.write("ed.pem", &ed.public_pem);
        dir.write("es.pem", EC_PUBLIC_PEM);
        dir.write("rs.pem", RSA_PUBLIC_PEM);
        dir.write("rs-pkcs1.pem", RSA_PUBLIC_PKCS1_PEM);
        dir.write("hs.secret", secret);
        let config = vec![
            issuer(ED_ISS, "EdDSA", vec![key("ed-1", "ed.pem")]),
            issuer(ES_ISS, "ES256", vec![key("es-1", "es.pem")]),
            issuer(RS_ISS, "RS256", vec![key("rs-1", "rs.pem"), key("rs-2", "rs-pkcs1.pem")]),
            issuer(HS_ISS, "HS256", vec![key("hs-1", "hs.secret")]),
        ];
        let verifier = AdminVerifier::from_config(&config, dir.path()).expect("fixture config");
        Fixture {
            verifier,
            ed: ed.signing,
            ed_other: ed_other.signing,
            es: EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap(),
            rs: EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap(),
            hs: EncodingKey::from_secret(&secret),
        }
    })
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn claims(iss: &str) -> Value {
    let now = now();
    json!({
        "iss": iss, "aud": AUD, "sub": "alice", "iat": now, "exp": now + 300,
        "scope": "imgate:admin devices:write",
    })
}

fn header(alg: &str, kid: &str) -> String {
    json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string()
}

/// Signs `header.payload` (given as raw JSON text) with `key` under `alg`.
fn sign_raw(header_json: &str, claims_json: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header_json), b64(claims_json));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

fn ed_token(claims: &Value) -> String {
    sign_raw(&header("EdDSA", "ed-1"), &claims.to_string(), &fx().ed, Algorithm::EdDSA)
}

/// An Ed token whose claims are `claims(ED_ISS)` edited by `edit`.
fn ed_token_with(edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut c = claims(ED_ISS);
    edit(c.as_object_mut().unwrap());
    ed_token(&c)
}

fn verify_header(value: &[u8]) -> Result<AdminPrincipal, AdminAuthError> {
    fx().verifier.verify(Some(value))
}

fn verify(token: &str) -> Result<AdminPrincipal, AdminAuthError> {
    verify_header(format!("Bearer {token}").as_bytes())
}

/// A rejected claim value: jsonwebtoken reports a structured value of the wrong type (e.g. an
/// array `exp`) as a JSON error, which surfaces as `Malformed`; scalars give `Invalid`.
macro_rules! assert_rejected_claim {
    ($result:expr) => {{
        let result = $result;
        assert!(
            matches!(result, Err(AdminAuthError::Invalid(_) | AdminAuthError::Malformed(_))),
            "unexpected result: {result:?}"
        );
    }};
}

macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {{
        let result = $result;
        assert!(matches!(result, Err($pattern)), "unexpected result: {result:?}");
    }};
}

// ---- accepted tokens -----------------------------------------------------------------------

#[test]
fn accepts_valid_eddsa_token() {
    let p = verify(&ed_token(&claims(ED_ISS))).unwrap();
    assert_eq!(p.subject, "alice");
    assert_eq!(p.issuer, ED_ISS);
    let expected: BTreeSet<String> = ["imgate:admin", "devices:write"].iter().map(|s| s.to_string()).collect();
    assert_eq!(p.scopes, expected);
}

#[test]
fn accepts_valid_es256_token() {
    let t = sign_raw(&header("ES256", "es-1"), &claims(ES_ISS).to_string(), &fx().es, Algorithm::ES256);
    assert_eq!(verify(&t).unwrap().issuer, ES_ISS);
}

#[test]
fn accepts_valid_rs256_token_with_spki_and_pkcs1_keys() {
    let c = claims(RS_ISS).to_string();
    for kid in ["rs-1", "rs-2"] {
        let t = sign_raw(&header("RS256", kid), &c, &fx().rs, Algorithm::RS256);
        assert_eq!(verify(&t).unwrap().issuer, RS_ISS, "kid {kid}");
    }
}

#[test]
fn accepts_valid_hs256_token() {
    let t = sign_raw(&header("HS256", "hs-1"), &claims(HS_ISS).to_string(), &fx().hs, Algorithm::HS256);
    assert_eq!(verify(&t).unwrap().issuer, HS_ISS);
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    let t = ed_token(&claims(ED_ISS));
    assert!(verify_header(format!("bearer {t}").as_bytes()).is_ok());
    assert!(verify_header(format!("BEARER  {t} ").as_bytes()).is_ok());
}

// ---- J1, J2, J3, J4: algorithms and signatures ---------------------------------------------

#[test]
fn rejects_alg_none_in_any_case() {
    let payload = b64(claims(ED_ISS).to_string());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = b64(header(alg, "ed-1"));
        assert_err!(verify(&format!("{h}.{payload}.")), AdminAuthError::AlgorithmNotAllowed);
        // Also with some signature bytes present.
        assert_err!(verify(&format!("{h}.{payload}.{}", b64([0u8; 64]))), AdminAuthError::AlgorithmNotAllowed);
    }
}

#[test]
fn rejects_alg_of_another_family_or_not_listed() {
    let c = claims(ED_ISS).to_string();
    // ES256 header on the EdDSA issuer's kid.
    let t = sign_raw(&header("ES256", "ed-1"), &c, &fx().es, Algorithm::ES256);
    assert_err!(verify(&t), AdminAuthError::AlgorithmNotAllowed);
    // HS512 is in the HMAC family but not in the HS issuer's list.
    let t = sign_raw(&header("HS512", "hs-1"), &claims(HS_ISS).to_string(), &fx().hs, Algorithm::HS512);
    assert_err!(verify(&t), AdminAuthError::AlgorithmNotAllowed);
    // A non-string alg.
    let h = json!({"alg": 1, "kid": "ed-1"}).to_string();
    let t = format!("{}.{}.{}", b64(h), b64(&c), b64([0u8; 64]));
    assert_err!(verify(&t), AdminAuthError::Malformed(_));
}

#[test]
fn rejects_hs256_signed_with_public_key_bytes() {
    // CVE-2015-9235 style: the attacker HMACs with the verifier's public key.
    let rsa_der =
        STANDARD.decode(RSA_PUBLIC_PKCS1_PEM.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap();
    let ed_public_pem = ed_pair().public_pem;
    let cases: [(&str, &str, &[u8]); 4] = [
        ("rs-1", RS_ISS, RSA_PUBLIC_PEM.as_bytes()),
        ("rs-2", RS_ISS, &rsa_der),
        ("es-1", ES_ISS, EC_PUBLIC_PEM.as_bytes()),
        ("ed-1", ED_ISS, ed_public_pem.as_bytes()),
    ];
    for (kid, iss, secret) in cases {
        let t = sign_raw(
            &header("HS256", kid),
            &claims(iss).to_string(),
            &EncodingKey::from_secret(secret),
            Algorithm::HS256,
        );
        assert_err!(verify(&t), AdminAuthError::AlgorithmNotAllowed);
    }
    // On the HS issuer's own kid, a public key is just a wrong secret.
    let t = sign_raw(
        &header("HS256", "hs-1"),
        &claims(HS_ISS).to_string(),
        &EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()),
        Algorithm::HS256,
    );
    assert_err!(verify(&t), AdminAuthError::Invalid(_));
}

fn es_token_parts() -> (String, Vec<u8>) {
    let t = sign_raw(&header("ES256", "es-1"), &claims(ES_ISS).to_string(), &fx().es, Algorithm::ES256);
    let (message, sig) = t.rsplit_once('.').unwrap();
    (message.to_owned(), URL_SAFE_NO_PAD.decode(sig).unwrap())
}

#[test]
fn rejects_es256_zero_signature() {
    // CVE-2022-21449 ("psychic signatures"): r = s = 0.
    let (message, _) = es_token_parts();
    assert_err!(verify(&format!("{message}.{}", b64([0u8; 64]))), AdminAuthError::Invalid(_));
}

#[test]
fn rejects_es256_out_of_range_and_wrong_length_signatures() {
    let (message, sig) = es_token_parts();
    assert_eq!(sig.len(), 64);
    assert!(verify(&format!("{message}.{}", b64(&sig))).is_ok());
    let mut bad: Vec<Vec<u8>> = Vec::new();
    let mut r_is_n = sig.clone();
    r_is_n[..32].copy_from_slice(&P256_N);
    bad.push(r_is_n);
    let mut s_is_n = sig.clone();
    s_is_n[32..].copy_from_slice(&P256_N);
    bad.push(s_is_n);
    let mut r_zero = sig.clone();
    r_zero[..32].fill(0);
    bad.push(r_zero);
    bad.push(sig[..63].to_vec());
    bad.push([sig.as_slice(), &[0u8]].concat());
    bad.push(Vec::new());
    let mut flipped = sig.clone();
    flipped[10] ^= 0x01;
    bad.push(flipped);
    for s in bad {
        let r = verify(&format!("{message}.{}", b64(&s)));
        assert!(matches!(r, Err(AdminAuthError::Invalid(_))), "signature {s:02x?}: {r:?}");
    }
}

#[test]
fn rejects_tampered_payload_and_foreign_key() {
    let t = ed_token(&claims(ED_ISS));
    let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
    let mut c = claims(ED_ISS);
    c["sub"] = json!("mallory");
    parts[1] = b64(c.to_string());
    assert_err!(verify(&parts.join(".")), AdminAuthError::Invalid(_));

    let t = sign_raw(&header("EdDSA", "ed-1"), &claims(ED_ISS).to_string(), &fx().ed_other, Algorithm::EdDSA);
    assert_err!(verify(&t), AdminAuthError::Invalid(_));
}

// ---- J7, J8, J9, J12: time claims ----------------------------------------------------------

#[test]
fn rejects_expired_token() {
    let t = ed_token_with(|c| {
        c.insert("iat".into(), json!(now() - 7200));
        c.insert("exp".into(), json!(now() - 3600));
    });
    assert_err!(verify(&t), AdminAuthError::Invalid(_));
}

#[test]
fn exp_within_leeway_is_accepted_beyond_it_rejected() {
    // Default leeway is 30 s (jsonwebtoken's own default, 60 s, would accept -45 s).
    let inside = ed_token_with(|c| {
        c.insert("iat".into(), json!(now() - 600));
        c.insert("exp".into(), json!(now() - 20));
    });
    assert!(verify(&inside).is_ok());
    let outside = ed_token_with(|c| {
        c.insert("iat".into(), json!(now() - 600));
        c.insert("exp".into(), json!(now() - 45));
    });
    assert_err!(verify(&outside), AdminAuthError::Invalid(_));
}

#[test]
fn rejects_exp_that_is_not_an_integer_or_missing() {
    let bad_values = [
        json!("never"),
        json!((now() + 300) as f64 + 0.5),
        json!(-1),
        json!(18446744073709551616.0_f64), // 2^64
        json!(null),
        json!([now() + 300]),
    ];
    for v in bad_values {
        let t = ed_token_with(|c| {
            c.insert("exp".into(), v.clone());
        });
        assert_rejected_claim!(verify(&t));
    }
    // 2^64 written as an integer literal (serde_json reads it as a float).
    let text = format!(r#"{{"iss":"{ED_ISS}","aud":"{AUD}","sub":"alice","exp":18446744073709551616}}"#);
    let t = sign_raw(&header("EdDSA", "ed-1"), &text, &fx().ed, Algorithm::EdDSA);
    assert_rejected_claim!(verify(&t));
    let t = ed_token_with(|c| {
        c.remove("exp");
    });
    assert_err!(verify(&t), AdminAuthError::Invalid(_));
}

#[test]
fn nbf_is_checked_when_present() {
    let future = ed_token_with(|c| {
        c.insert("nbf".into(), json!(now() + 3600));
    });
    assert_err!(verify(&future), AdminAuthError::Invalid(_));
    let as_string = ed_token_with(|c| {
        c.insert("nbf".into(), json!("yesterday"));
    });
    assert_err!(verify(&as_string), AdminAuthError::Invalid(_));
    let within_leeway = ed_token_with(|c| {
        c.insert("nbf".into(), json!(now() + 10));
    });
    assert!(verify(&within_leeway).is_ok());
    let past = ed_token_with(|c| {
        c.insert("nbf".into(), json!(now() - 10));
    });
    assert!(verify(&past).is_ok());
}

#[test]
fn rejects_lifetime_too_long() {
    let t = ed_token_with(|c| {
        c.insert("iat".into(), json!(now()));
        c.insert("exp".into(), json!(now() + DEFAULT_MAX_LIFETIME_SECS + 1));
    });
    assert_err!(verify(&t), AdminAuthError::LifetimeTooLong);
    // Without iat, exp may still not lie further than the maximum lifetime from now.
    let t = ed_token_with(|c| {
        c.remove("iat");
        c.insert("exp".into(), json!(now() + DEFAULT_MAX_LIFETIME_SECS + 600));
    });
    assert_err!(verify(&t), AdminAuthError::LifetimeTooLong);
    let t = ed_token_with(|c| {
        c.remove("iat");
        c.insert("exp".into(), json!(now() + 600));
    });
    assert!(verify(&t).is_ok());
    // Exactly the maximum is fine.
    let t = ed_token_with(|c| {
        c.insert("iat".into(), json!(now()));
        c.insert("exp".into(), json!(now() + DEFAULT_MAX_LIFETIME_SECS));
    });
    assert!(verify(&t).is_ok());
}

#[test]
fn rejects_iat_in_the_future_or_after_exp() {
    // A far-future iat must not stretch the lifetime window.
    let t = ed_token_with(|c| {
        c.insert("iat".into(), json!(now() + 86_400));
        c.insert("exp".into(), json!(now() + 86_400 + 60));
    });
    assert!(verify(&t).is_err());
    let t = ed_token_with(|c| {
        c.insert("iat".into(), json!(now() + 1000));
        c.insert("exp".into(), json!(now() + 1300));
    });
    assert_err!(verify(&t), AdminAuthError::Invalid(_));
    let t = ed_token_with(|c| {
        c.insert("iat".into(), json!(now() + 10));
        c.insert("exp".into(), json!(now() + 5));
    });
    assert_err!(verify(&t), AdminAuthError::Invalid(_));
    let t = ed_token_with(|c| {
        c.insert("iat".into(), json!("now"));
    });
    assert_err!(verify(&t), AdminAuthError::Invalid(_));
}

// ---- J10, J11: iss, aud, sub ---------------------------------------------------------------

#[test]
fn rejects_wrong_audience() {
    for aud in [json!("someone-else"), json!(["a", "b"]), json!([]), json!(7), json!([AUD, 7])] {
        let t = ed_token_with(|c| {
            c.insert("aud".into(), aud.clone());
        });
        assert_rejected_claim!(verify(&t));
    }
}

#[test]
fn accepts_audience_array_containing_ours() {
    let t = ed_token_with(|c| {
        c.insert("aud".into(), json!(["other-service", AUD, "third"]));
    });
    assert!(verify(&t).is_ok());
}

#[test]
fn rejects_wrong_issuer() {
    for iss in [json!("https://evil.example"), json!(ES_ISS), json!([ED_ISS]), json!(1)] {
        let t = ed_token_with(|c| {
            c.insert("iss".into(), iss.clone());
        });
        assert_rejected_claim!(verify(&t));
    }
}

#[test]
fn rejects_missing_iss_aud_or_sub() {
    for claim in ["iss", "aud", "sub"] {
        let t = ed_token_with(|c| {
            c.remove(claim);
        });
        let r = verify(&t);
        assert!(matches!(&r, Err(AdminAuthError::Invalid(m)) if m.contains(claim)), "{claim}: {r:?}");
    }
}

#[test]
fn rejects_bad_subject_values() {
    for sub in [json!(""), json!(42), json!(["alice"]), json!("ali\nce")] {
        let t = ed_token_with(|c| {
            c.insert("sub".into(), sub.clone());
        });
        assert_rejected_claim!(verify(&t));
    }
}

// ---- J5: kid -------------------------------------------------------------------------------

#[test]
fn rejects_unknown_and_hostile_kids() {
    let c = claims(ED_ISS).to_string();
    let long = "k".repeat(300);
    for kid in ["nope", "../../dev/null", "/etc/passwd", "' OR 1=1--", "", long.as_str()] {
        let t = sign_raw(&header("EdDSA", kid), &c, &fx().ed, Algorithm::EdDSA);
        assert_err!(verify(&t), AdminAuthError::UnknownKid);
    }
    // A 10 kB kid does not even fit in the header cap.
    let t = sign_raw(&header("EdDSA", &"k".repeat(10_000)), &c, &fx().ed, Algorithm::EdDSA);
    assert_err!(verify(&t), AdminAuthError::TooLarge);
    // No kid at all.
    let t = sign_raw(&json!({"alg": "EdDSA"}).to_string(), &c, &fx().ed, Algorithm::EdDSA);
    assert_err!(verify(&t), AdminAuthError::UnknownKid);
    // A non-string kid.
    let t = sign_raw(&json!({"alg": "EdDSA", "kid": 1}).to_string(), &c, &fx().ed, Algorithm::EdDSA);
    assert_err!(verify(&t), AdminAuthError::Malformed(_));
}

// ---- J6, J16: forbidden header parameters ---------------------------------------------------

#[test]
fn rejects_forbidden_header_parameters() {
    let c = claims(ED_ISS).to_string();
    let values = [
        ("crit", json!(["x"])),
        ("jku", json!("http://127.0.0.1:9/jwks.json")),
        ("x5u", json!("http://127.0.0.1:9/cert.pem")),
        ("jwk", json!({"kty": "OKP", "crv": "Ed25519", "x": b64([7u8; 32])})),
        ("x5c", json!(["MIIB"])),
        ("b64", json!(false)),
    ];
    for (name, value) in values {
        let mut h = json!({"alg": "EdDSA", "typ": "JWT", "kid": "ed-1"});
        h[name] = value;
        let t = sign_raw(&h.to_string(), &c, &fx().ed, Algorithm::EdDSA);
        let r = verify(&t);
        assert!(matches!(&r, Err(AdminAuthError::ForbiddenHeader(n)) if n == name), "{name}: {r:?}");
    }
}

// ---- scopes --------------------------------------------------------------------------------

#[test]
fn scopes_present_and_missing() {
    let p = verify(&ed_token(&claims(ED_ISS))).unwrap();
    assert!(p.has_scope("imgate:admin"));
    assert!(p.require_scope("devices:write").is_ok());
    assert!(!p.has_scope("plugins:write"));
    let err = p.require_scope("plugins:write").unwrap_err();
    assert!(matches!(&err, AdminAuthError::MissingScope(s) if s == "plugins:write"));
    assert!(err.is_forbidden());
    assert!(!AdminAuthError::Invalid("x".into()).is_forbidden());
    assert!(!AdminAuthError::Missing.is_forbidden());

    let t = ed_token_with(|c| {
        c.remove("scope");
    });
    let p = verify(&t).unwrap();
    assert!(p.scopes.is_empty());
    assert!(p.require_scope("imgate:admin").unwrap_err().is_forbidden());

    let t = ed_token_with(|c| {
        c.insert("scope".into(), json!("  sessions:revoke \t plugins:write  "));
    });
    let p = verify(&t).unwrap();
    assert_eq!(p.scopes.len(), 2);
    assert!(p.has_scope("sessions:revoke") && p.has_scope("plugins:write"));
    // Prefixes do not match.
    assert!(!p.has_scope("sessions"));

    let t = ed_token_with(|c| {
        c.insert("scope".into(), json!(["imgate:admin"]));
    });
    assert_err!(verify(&t), AdminAuthError::Invalid(_));
}

// ---- J14, J15: malformed input -------------------------------------------------------------

#[test]
fn rejects_missing_or_non_bearer_header() {
    assert_err!(fx().verifier.verify(None), AdminAuthError::Missing);
    assert_err!(verify_header(b""), AdminAuthError::Missing);
    assert_err!(verify_header(b"Bearer"), AdminAuthError::Missing);
    assert_err!(verify_header(b"Bearer    "), AdminAuthError::Missing);
    assert_err!(verify_header(b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"), AdminAuthError::Missing);
    let t = ed_token(&claims(ED_ISS));
    assert_err!(verify_header(t.as_bytes()), AdminAuthError::Missing);
}

#[test]
fn rejects_oversized_authorization_header() {
    // A 9 KiB header segment.
    let h = json!({"alg": "EdDSA", "kid": "ed-1", "pad": "x".repeat(9 * 1024)}).to_string();
    let t = sign_raw(&h, &claims(ED_ISS).to_string(), &fx().ed, Algorithm::EdDSA);
    assert_err!(verify(&t), AdminAuthError::TooLarge);
    let raw = vec![b'a'; MAX_AUTHORIZATION_LEN + 1];
    assert_err!(verify_header(&raw), AdminAuthError::TooLarge);
    // 1 MB token.
    let big = format!("Bearer {}", "A".repeat(1 << 20));
    assert_err!(verify_header(big.as_bytes()), AdminAuthError::TooLarge);
}

#[test]
fn rejects_wrong_segment_counts() {
    let t = ed_token(&claims(ED_ISS));
    let parts: Vec<&str> = t.split('.').collect();
    assert_err!(verify(&parts[..2].join(".")), AdminAuthError::Malformed(_));
    assert_err!(verify(&format!("{t}.{}", parts[2])), AdminAuthError::Malformed(_));
    assert_err!(verify(parts[0]), AdminAuthError::Malformed(_));
    // JWE compact serialization (5 segments).
    assert_err!(verify(&format!("{t}.AAAA.BBBB")), AdminAuthError::Malformed(_));
    // JSON serialization instead of compact.
    let json_ser = json!({"protected": parts[0], "payload": parts[1], "signature": parts[2]});
    assert_err!(verify(&json_ser.to_string()), AdminAuthError::Malformed(_));
}

#[test]
fn rejects_non_base64url_and_padding() {
    let t = ed_token(&claims(ED_ISS));
    let parts: Vec<&str> = t.split('.').collect();
    for header in ["e30!", "eyJ+", "eyJ/", "e30=", "e3 0"] {
        let r = verify(&format!("{header}.{}.{}", parts[1], parts[2]));
        assert!(matches!(r, Err(AdminAuthError::Malformed(_))), "{header}: {r:?}");
    }
    // Padded header segment of an otherwise valid token.
    let padded = format!("{}==.{}.{}", parts[0], parts[1], parts[2]);
    assert_err!(verify(&padded), AdminAuthError::Malformed(_));
    // Invalid UTF-8 and a BOM in the header value.
    assert_err!(verify_header(b"Bearer \xff\xfe.a.b"), AdminAuthError::Malformed(_));
    assert_err!(verify_header(format!("Bearer \u{feff}{t}").as_bytes()), AdminAuthError::Malformed(_));
    // Non-canonical trailing bits in the header segment ("e30" is "{}"; "e31" has stray bits).
    let r = verify(&format!("e31.{}.{}", parts[1], parts[2]));
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn rejects_header_that_is_not_a_json_object() {
    let t = ed_token(&claims(ED_ISS));
    let parts: Vec<&str> = t.split('.').collect();
    let headers: [&[u8]; 6] = [
        b"not json",
        b"[\"EdDSA\"]",
        b"\"EdDSA\"",
        b"\xef\xbb\xbf{\"alg\":\"EdDSA\",\"kid\":\"ed-1\"}",
        b"{\"alg\":\"EdDSA\",\"kid\":\"ed-1\"} trailing",
        b"{\"alg\":\"EdDSA\",\"kid\":\"ed-\xff\"}",
    ];
    for h in headers {
        let r = verify(&format!("{}.{}.{}", b64(h), parts[1], parts[2]));
        assert!(matches!(r, Err(AdminAuthError::Malformed(_))), "{h:?}: {r:?}");
    }
    // 1000-deep nesting stops at serde_json's recursion limit without a stack overflow.
    let deep = format!("{{\"alg\":\"EdDSA\",\"kid\":\"ed-1\",\"x\":{}{}}}", "[".repeat(1000), "]".repeat(1000));
    assert_err!(verify(&format!("{}.{}.{}", b64(deep), parts[1], parts[2])), AdminAuthError::Malformed(_));
}

#[test]
fn rejects_duplicate_keys_in_header_and_claims() {
    let c = claims(ED_ISS).to_string();
    let dup_alg = r#"{"alg":"EdDSA","kid":"ed-1","alg":"EdDSA"}"#;
    let t = sign_raw(dup_alg, &c, &fx().ed, Algorithm::EdDSA);
    assert_err!(verify(&t), AdminAuthError::Malformed(_));
    let dup_alg_none = r#"{"alg":"none","kid":"ed-1","alg":"EdDSA"}"#;
    let t = sign_raw(dup_alg_none, &c, &fx().ed, Algorithm::EdDSA);
    assert_err!(verify(&t), AdminAuthError::Malformed(_));
    // A duplicated claim in a correctly signed payload.
    let dup_scope = c.replacen('{', r#"{"scope":"nothing","#, 1);
    let t = sign_raw(&header("EdDSA", "ed-1"), &dup_scope, &fx().ed, Algorithm::EdDSA);
    assert_err!(verify(&t), AdminAuthError::Malformed(_));
    let dup_sub = c.replacen('{', r#"{"sub":"root","#, 1);
    let t = sign_raw(&header("EdDSA", "ed-1"), &dup_sub, &fx().ed, Algorithm::EdDSA);
    assert!(verify(&t).is_err());
}

#[test]
fn rejects_empty_signature_with_an_allowed_alg() {
    let t = ed_token(&claims(ED_ISS));
    let (message, _) = t.rsplit_once('.').unwrap();
    assert_err!(verify(&format!("{message}.")), AdminAuthError::Invalid(_));
}

#[test]
fn rejects_payload_that_is_not_a_json_object() {
    for payload in ["[1,2]", "\"x\"", "null"] {
        let t = sign_raw(&header("EdDSA", "ed-1"), payload, &fx().ed, Algorithm::EdDSA);
        assert!(verify(&t).is_err(), "{payload}");
    }
}

// ---- config (J18, J19, J20 and the rest of §7) ----------------------------------------------

#[test]
fn config_defaults_and_unknown_fields() {
    let cfg: IssuerConfig = serde_json::from_value(json!({
        "issuer": ED_ISS, "audience": AUD, "algorithms": ["EdDSA"],
        "keys": [{"kid": "a", "file": "a.pem"}],
    }))
    .unwrap();
    assert_eq!(cfg.leeway_secs, 30);
    assert_eq!(cfg.max_lifetime_secs, 3600);
    assert_eq!(cfg.jwks_file, None);
    assert!(validate_config(&[cfg]).is_empty());
    let unknown = serde_json::from_value::<IssuerConfig>(json!({
        "issuer": ED_ISS, "audience": AUD, "algorithms": ["EdDSA"], "jwks_url": "http://x",
    }));
    assert!(unknown.is_err());
    let unknown_key_field = serde_json::from_value::<KeyConfig>(json!({"kid": "a", "file": "a", "url": "x"}));
    assert!(unknown_key_field.is_err());
}

#[test]
fn config_rejects_mixed_families() {
    for algs in [vec!["RS256", "HS256"], vec!["EdDSA", "ES256"], vec!["ES256", "RS256"]] {
        let mut cfg = issuer(ED_ISS, "EdDSA", vec![key("k", "k.pem")]);
        cfg.algorithms = algs.iter().map(|s| s.to_string()).collect();
        let errors = validate_config(&[cfg]);
        assert_eq!(errors.len(), 1, "{algs:?}: {errors:?}");
        assert!(errors[0].contains("mix"), "{errors:?}");
    }
}

#[test]
fn config_rejects_none_unknown_and_empty_algorithms() {
    for (algs, needle) in [
        (vec!["none"], "never allowed"),
        (vec!["NONE"], "never allowed"),
        (vec!["HS384"], "unsupported"),
        (vec!["eddsa"], "unsupported"),
        (vec![], "at least one"),
    ] {
        let mut cfg = issuer(ED_ISS, "EdDSA", vec![key("k", "k.pem")]);
        cfg.algorithms = algs.iter().map(|s| s.to_string()).collect();
        let errors = validate_config(&[cfg]);
        assert!(errors.iter().any(|e| e.contains(needle)), "{algs:?}: {errors:?}");
    }
}

#[test]
fn config_leeway_cap() {
    let mut cfg = issuer(ED_ISS, "EdDSA", vec![key("k", "k.pem")]);
    cfg.leeway_secs = 60;
    assert!(validate_config(std::slice::from_ref(&cfg)).is_empty());
    cfg.leeway_secs = 61;
    let errors = validate_config(&[cfg]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("leeway_secs"));
}

#[test]
fn config_rejects_duplicate_kid_across_issuers() {
    let errors = validate_config(&[
        issuer(ED_ISS, "EdDSA", vec![key("shared", "a.pem")]),
        issuer(ES_ISS, "ES256", vec![key("shared", "b.pem")]),
    ]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("\"shared\"") && errors[0].contains("unique"));
}

#[test]
fn config_reports_every_problem_at_once() {
    let mut a = issuer(ED_ISS, "EdDSA", vec![key("k1", "a.pem")]);
    a.leeway_secs = 61;
    let mut b = issuer(RS_ISS, "RS256", vec![key("k2", "b.pem")]);
    b.algorithms = vec!["RS256".into(), "HS256".into()];
    let c = issuer(ES_ISS, "ES256", vec![key("k1", "c.pem")]);
    let errors = validate_config(&[a, b, c]);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].contains("admin.issuer[0]") && errors[0].contains("leeway"));
    assert!(errors[1].contains("admin.issuer[1]") && errors[1].contains("mix"));
    assert!(errors[2].contains("admin.issuer[2]") && errors[2].contains("\"k1\""));
}

#[test]
fn config_rejects_other_static_problems() {
    let mut empty = issuer("", "EdDSA", vec![]);
    empty.audience = " ".into();
    let errors = validate_config(&[empty]);
    assert!(errors.iter().any(|e| e.contains("`issuer`")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("`audience`")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("no keys")), "{errors:?}");

    let mut hs_jwks = issuer(HS_ISS, "HS256", vec![]);
    hs_jwks.jwks_file = Some("keys.json".into());
    let errors = validate_config(&[hs_jwks]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("JWKS"));

    let mut zero_life = issuer(ED_ISS, "EdDSA", vec![key("k", "k.pem")]);
    zero_life.max_lifetime_secs = 0;
    assert_eq!(validate_config(&[zero_life]).len(), 1);

    let bad_kids = issuer(ED_ISS, "EdDSA", vec![key("", "a.pem"), key(&"k".repeat(257), "b.pem")]);
    assert_eq!(validate_config(&[bad_kids]).len(), 2);
}

#[test]
fn from_config_checks_key_files_and_reports_all() {
    let dir = TempDir::new();
    dir.write("short.secret", [7u8; 31]);
    dir.write("ec-private.pem", EC_PRIVATE_PEM);
    dir.write("rsa1024.pem", RSA_1024_PUBLIC_PEM);
    dir.write("p384.pem", EC_P384_PUBLIC_PEM);
    dir.write("rsa.pem", RSA_PUBLIC_PEM);
    dir.write("ec.pem", EC_PUBLIC_PEM);
    dir.write("pem-as-secret.pem", RSA_PUBLIC_PEM);
    let config = vec![
        issuer(HS_ISS, "HS256", vec![key("hs-short", "short.secret"), key("hs-pem", "pem-as-secret.pem")]),
        issuer(
            ES_ISS,
            "ES256",
            vec![key("es-private", "ec-private.pem"), key("es-p384", "p384.pem"), key("es-rsa", "rsa.pem")],
        ),
        issuer(RS_ISS, "RS256", vec![key("rs-1024", "rsa1024.pem"), key("rs-ec", "ec.pem")]),
        issuer(ED_ISS, "EdDSA", vec![key("ed-missing", "missing.pem"), key("ed-ec", "ec.pem")]),
    ];
    let errors = AdminVerifier::from_config(&config, dir.path()).unwrap_err();
    let expect = [
        ("hs-short", "31 bytes"),
        ("hs-pem", "PEM"),
        ("es-private", "private key"),
        ("es-p384", "unusable"),
        ("es-rsa", "EC public key"),
        ("rs-1024", "1024 bits"),
        ("rs-ec", "RSA public key"),
        ("ed-missing", "missing.pem"),
        ("ed-ec", "Ed25519"),
    ];
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    for (kid, needle) in expect {
        assert!(
            errors.iter().any(|e| e.contains(&format!("{kid:?}")) && e.contains(needle)),
            "no error for {kid} mentioning {needle:?}: {errors:#?}"
        );
    }
}

#[test]
fn from_config_includes_static_errors_and_absolute_paths() {
    let dir = TempDir::new();
    let abs = dir.write("ed.pem", ed_pair().public_pem);
    let mut cfg = issuer(ED_ISS, "EdDSA", vec![key("ed-abs", abs.to_str().unwrap())]);
    cfg.leeway_secs = 61;
    let errors = AdminVerifier::from_config(&[cfg.clone()], Path::new("/nonexistent")).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    cfg.leeway_secs = 60;
    assert!(AdminVerifier::from_config(&[cfg], Path::new("/nonexistent")).is_ok());
}

#[test]
fn empty_config_verifies_nothing() {
    let v = AdminVerifier::from_config(&[], Path::new(".")).unwrap();
    assert_err!(v.verify(Some(format!("Bearer {}", ed_token(&claims(ED_ISS))).as_bytes())), AdminAuthError::UnknownKid);
}

fn rsa_components() -> (Vec<u8>, Vec<u8>) {
    let der =
        STANDARD.decode(RSA_PUBLIC_PKCS1_PEM.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap();
    let (n, e) = pkcs1_rsa_public_key(&der).unwrap();
    (n.to_vec(), e.to_vec())
}

fn ec_xy() -> (Vec<u8>, Vec<u8>) {
    let der = STANDARD.decode(EC_PUBLIC_PEM.lines().filter(|l| !l.starts_with("-----")).collect::<String>()).unwrap();
    let point = &der[der.len() - 65..];
    assert_eq!(point[0], 0x04);
    (point[1..33].to_vec(), point[33..].to_vec())
}

#[test]
fn jwks_file_keys_verify_tokens() {
    let dir = TempDir::new();
    let ed = ed_pair();
    let (n, e) = rsa_components();
    let (x, y) = ec_xy();
    let jwks = json!({"keys": [
        {"kty": "OKP", "crv": "Ed25519", "kid": "jwks-ed", "alg": "EdDSA", "use": "sig", "x": b64(ed.raw_public)},
        {"kty": "EC", "crv": "P-256", "kid": "jwks-es", "x": b64(&x), "y": b64(&y)},
        {"kty": "RSA", "kid": "jwks-rs", "alg": "RS256", "n": b64(&n), "e": b64(&e)},
        // Skipped: an encryption key, and a key whose alg the issuer does not allow.
        {"kty": "RSA", "kid": "jwks-enc", "use": "enc", "n": b64(&n), "e": b64(&e)},
        {"kty": "RSA", "kid": "jwks-ps", "alg": "PS256", "n": b64(&n), "e": b64(&e)},
    ]});
    dir.write("jwks.json", jwks.to_string());
    let mut config = Vec::new();
    for (iss, alg) in [(ED_ISS, "EdDSA"), (ES_ISS, "ES256"), (RS_ISS, "RS256")] {
        let mut cfg = issuer(iss, alg, vec![]);
        cfg.jwks_file = Some("jwks.json".into());
        config.push(cfg);
    }
    let v = AdminVerifier::from_config(&config, dir.path()).unwrap();
    let cases = [
        ("jwks-ed", "EdDSA", ED_ISS, &ed.signing, Algorithm::EdDSA),
        ("jwks-es", "ES256", ES_ISS, &fx().es, Algorithm::ES256),
        ("jwks-rs", "RS256", RS_ISS, &fx().rs, Algorithm::RS256),
    ];
    for (kid, alg_name, iss, signing, alg) in cases {
        let t = sign_raw(&header(alg_name, kid), &claims(iss).to_string(), signing, alg);
        let p = v.verify(Some(format!("Bearer {t}").as_bytes()));
        assert_eq!(p.unwrap().issuer, iss, "{kid}");
    }
    for kid in ["jwks-enc", "jwks-ps"] {
        let t = sign_raw(&header("RS256", kid), &claims(RS_ISS).to_string(), &fx().rs, Algorithm::RS256);
        assert_err!(v.verify(Some(format!("Bearer {t}").as_bytes())), AdminAuthError::UnknownKid);
    }
}

#[test]
fn jwks_file_problems_are_reported() {
    let dir = TempDir::new();
    let ed = ed_pair();
    let (n, e) = rsa_components();
    let short_n = n[..128].to_vec(); // the top 1024 bits of the 2048-bit modulus
    dir.write("ed.pem", &ed.public_pem);
    dir.write(
        "ed.json",
        json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": b64(ed.raw_public)},
            {"kty": "OKP", "crv": "Ed25519", "kid": "with-d", "x": b64(ed.raw_public), "d": b64([1u8; 32])},
            {"kty": "OKP", "crv": "Ed25519", "kid": "static-ed", "x": b64(ed.raw_public)},
            {"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": b64(ed.raw_public)},
        ]})
        .to_string(),
    );
    dir.write(
        "rs.json",
        json!({"keys": [
            {"kty": "RSA", "kid": "weak", "n": b64(&short_n), "e": b64(&e)},
            {"kty": "RSA", "kid": "bad-e", "n": b64(&n), "e": b64([1u8])},
        ]})
        .to_string(),
    );
    dir.write("empty.json", json!({"keys": []}).to_string());
    dir.write("broken.json", "{\"keys\": [");
    let mut ed_issuer = issuer(ED_ISS, "EdDSA", vec![key("static-ed", "ed.pem")]);
    ed_issuer.jwks_file = Some("ed.json".into());
    let mut rs_issuer = issuer(RS_ISS, "RS256", vec![]);
    rs_issuer.jwks_file = Some("rs.json".into());
    let mut es_issuer = issuer(ES_ISS, "ES256", vec![]);
    es_issuer.jwks_file = Some("empty.json".into());
    let mut broken = issuer("https://broken.example", "ES256", vec![]);
    broken.jwks_file = Some("broken.json".into());
    let errors = AdminVerifier::from_config(&[ed_issuer, rs_issuer, es_issuer, broken], dir.path()).unwrap_err();
    let expect = [
        "key #0 has no usable `kid`",
        "\"with-d\") contains private key material",
        "\"static-ed\" is defined twice",
        "\"x25519\"): `crv` must be Ed25519",
        "\"weak\"): RSA modulus is 1024 bits",
        "\"bad-e\"): RSA public exponent",
        "no usable Ec signing key",
        "broken.json: not valid JSON",
    ];
    assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    for needle in expect {
        assert!(errors.iter().any(|e| e.contains(needle)), "missing {needle:?}: {errors:#?}");
    }
}

#[test]
fn crypto_backend_self_test_passes() {
    crypto_self_test().unwrap();
}

#[test]
fn strict_json_parser() {
    assert!(parse_strict_json(br#"{"a":1,"b":{"c":[1,2,{"d":null}]}}"#).is_ok());
    assert!(parse_strict_json(br#"{"a":1,"a":1}"#).is_err());
    assert!(parse_strict_json(br#"{"a":{"b":1,"b":2}}"#).is_err());
    assert!(parse_strict_json(br#"[{"x":1},{"x":1,"x":2}]"#).is_err());
    assert_eq!(parse_strict_json(b"1.5").unwrap(), json!(1.5));
    assert_eq!(parse_strict_json(b"-3").unwrap(), json!(-3));
}

#[test]
fn debug_output_lists_issuers_and_kids_only() {
    let text = format!("{:?}", fx().verifier);
    assert!(text.contains("ed-1") && text.contains(HS_ISS), "{text}");
}
