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

pub fn generate_admin_key() -> Result<AdminSigningKey, String> {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey, EncodePublicKey};
    let signing = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let private_pem = signing.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?.to_string();
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
}
