//! The gateway's X25519 static keys (its identity in the Noise IK handshake) and `imgate keygen`.
//!
//! Private keys live in files as base64 of the 32 raw bytes. The first configured key is the
//! current one; a second is the key being rotated out, still accepted until it is removed.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::rngs::OsRng;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::config::{resolve, GatewayKeyConfig};

/// One gateway static key. Its secret half is never logged or served.
#[derive(Clone)]
pub struct GatewayKey {
    pub id: String,
    pub secret: StaticSecret,
    pub public: PublicKey,
}

impl GatewayKey {
    pub fn generate(id: &str) -> GatewayKey {
        let secret = StaticSecret::random_from_rng(OsRng);
        let public = PublicKey::from(&secret);
        GatewayKey { id: id.to_owned(), secret, public }
    }

    pub fn from_b64(id: &str, text: &str) -> Result<GatewayKey, String> {
        let bytes = B64.decode(text.trim()).map_err(|e| format!("not base64: {e}"))?;
        let raw: [u8; 32] = bytes.try_into().map_err(|_| "must decode to exactly 32 bytes".to_string())?;
        let secret = StaticSecret::from(raw);
        let public = PublicKey::from(&secret);
        Ok(GatewayKey { id: id.to_owned(), secret, public })
    }

    pub fn secret_b64(&self) -> String {
        B64.encode(self.secret.to_bytes())
    }

    pub fn public_b64(&self) -> String {
        B64.encode(self.public.as_bytes())
    }
}

/// Loads every configured key, reporting every unreadable one.
pub fn load(keys: &[GatewayKeyConfig], base_dir: &Path) -> Result<Vec<GatewayKey>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for k in keys {
        let path = resolve(base_dir, &k.private_key_file);
        match std::fs::read_to_string(&path) {
            Ok(text) => match GatewayKey::from_b64(&k.id, &text) {
                Ok(key) => out.push(key),
                Err(e) => errors.push(format!("gateway.keys `{}`: {}: {e}", k.id, path.display())),
            },
            Err(e) => errors.push(format!("gateway.keys `{}`: {}: {e}", k.id, path.display())),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// An Ed25519 key pair for signing admin JWTs, as PKCS#8 / SPKI PEM.
pub struct AdminSigningKey {
    pub private_pem: String,
    pub public_pem: String,
}

/// A fresh admin key pair. The private key is a PKCS#8 v1 `PrivateKeyInfo` (RFC 8410, no public
/// key attached): the form OpenSSL 3, Node's `crypto` and Python's `cryptography` read. They
/// refuse the v2 form (`OneAsymmetricKey` with the public key) that `SigningKey::to_pkcs8_pem` writes.
pub fn generate_admin_key() -> Result<AdminSigningKey, String> {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey, EncodePublicKey, KeypairBytes};
    let signing = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let v1 = KeypairBytes { secret_key: signing.to_bytes(), public_key: None };
    let private_pem = v1.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?.to_string();
    let public_pem = signing.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| e.to_string())?;
    Ok(AdminSigningKey { private_pem, public_pem })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_round_trips_through_base64() {
        let k = GatewayKey::generate("k1");
        let back = GatewayKey::from_b64("k1", &k.secret_b64()).expect("valid");
        assert_eq!(back.public.as_bytes(), k.public.as_bytes());
    }

    #[test]
    fn short_key_is_refused() {
        assert!(GatewayKey::from_b64("k", &B64.encode([1u8; 31])).is_err());
    }

    #[test]
    fn admin_private_key_is_pkcs8_v1_of_the_public_key() {
        use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, PrivateKeyInfo, SecretDocument};
        let key = generate_admin_key().expect("key");
        let (label, der) = SecretDocument::from_pem(&key.private_pem).expect("pem");
        assert_eq!(label, "PRIVATE KEY");
        let info = PrivateKeyInfo::try_from(der.as_bytes()).expect("PrivateKeyInfo");
        assert!(info.public_key.is_none(), "no public key attached (PKCS#8 v2)");
        // SEQUENCE { INTEGER 0 (v1), ... }
        assert_eq!(&der.as_bytes()[2..5], &[0x02, 0x01, 0x00], "version v1");
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(&key.private_pem).expect("private key");
        let verifying = ed25519_dalek::VerifyingKey::from_public_key_pem(&key.public_pem).expect("public key");
        assert_eq!(signing.verifying_key(), verifying);
    }

    #[test]
    fn admin_key_signs_jwts_its_public_key_verifies() {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
        let key = generate_admin_key().expect("key");
        let enc = EncodingKey::from_ed_pem(key.private_pem.as_bytes()).expect("jsonwebtoken reads the private key");
        let claims = serde_json::json!({ "sub": "s", "exp": 4_000_000_000u64 });
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &enc).expect("sign");
        let dec = DecodingKey::from_ed_pem(key.public_pem.as_bytes()).expect("public key");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(&token, &dec, &validation).expect("verifies");
    }
}
