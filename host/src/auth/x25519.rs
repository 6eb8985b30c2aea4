//! X25519 for the handshake: key checks, and the `snow` resolver that routes Noise's DH through
//! x25519-dalek and refuses non-contributory results.
//!
//! `snow`'s default Curve25519 accepts any 32 bytes and returns an all-zero shared secret for a
//! low-order point. Here every DH goes through `x25519_dalek::StaticSecret::diffie_hellman` and
//! fails unless `was_contributory()`; known low-order encodings are refused before any curve
//! operation; device keys must be canonical (u < p, top bit clear) so two byte strings never name
//! one identity. Each DH (not key generation) is counted, so the handshake can give every rejection the same work.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use x25519_dalek::{PublicKey, StaticSecret};

/// The u-coordinates of points of small order (RFC 7748 §7, libsodium's blacklist), little
/// endian, top bit cleared: 0, 1, the two points of order 8, p−1, p, p+1.
pub const LOW_ORDER: [[u8; 32]; 7] = [
    [0; 32],
    {
        let mut one = [0u8; 32];
        one[0] = 1;
        one
    },
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09,
        0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44,
        0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57,
    ],
    field_elem(0xec),
    field_elem(0xed),
    field_elem(0xee),
];

/// p − 1 + (low − 0xec): 2^255 − 19 + (low − 0xed), little endian, top bit cleared.
const fn field_elem(low: u8) -> [u8; 32] {
    let mut b = [0xffu8; 32];
    b[0] = low;
    b[31] = 0x7f;
    b
}

/// True for an encoding of a small-order point (the top bit is ignored, as X25519 does).
pub fn is_low_order(u: &[u8; 32]) -> bool {
    let mut masked = *u;
    masked[31] &= 0x7f;
    LOW_ORDER.contains(&masked)
}

/// Canonical: top bit clear and u < p = 2^255 − 19.
pub fn is_canonical(u: &[u8; 32]) -> bool {
    if u[31] & 0x80 != 0 {
        return false;
    }
    // u ≥ p only if u = 2^255 − 19 … 2^255 − 1: bytes 1..=30 all 0xff, byte 31 = 0x7f, byte 0 ≥ 0xed.
    let high_all_ones = u[1..31].iter().all(|b| *b == 0xff) && u[31] == 0x7f;
    !(high_all_ones && u[0] >= 0xed)
}

/// A key fit to enroll: canonical, not small-order, and contributory against a random scalar.
pub fn is_acceptable_static_key(u: &[u8; 32]) -> bool {
    if !is_canonical(u) || is_low_order(u) {
        return false;
    }
    let probe = StaticSecret::random_from_rng(rand::rngs::OsRng);
    probe.diffie_hellman(&PublicKey::from(*u)).was_contributory()
}

/// Counts the X25519 operations of one gateway (exported as a metric; equal-work checks).
#[derive(Clone, Default)]
pub struct DhCounter(Arc<AtomicU64>);

impl DhCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn bump(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// One throwaway X25519 operation, to give a rejected handshake the work of an accepted one.
    pub fn dummy_dh(&self) {
        let a = StaticSecret::random_from_rng(rand::rngs::OsRng);
        let b = PublicKey::from([9u8; 32]);
        std::hint::black_box(a.diffie_hellman(&b));
        self.bump();
    }
}

/// `snow` resolver: Curve25519 by x25519-dalek (contributory only), the rest from snow's default.
pub struct DalekResolver {
    pub counter: DhCounter,
}

impl CryptoResolver for DalekResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        DefaultResolver.resolve_rng()
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(DalekDh {
                secret: None,
                public: [0; 32],
                private: [0; 32],
                counter: self.counter.clone(),
            })),
            _ => None,
        }
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

struct DalekDh {
    secret: Option<StaticSecret>,
    public: [u8; 32],
    /// snow's trait hands out the private key as a slice; kept only because the trait requires it.
    private: [u8; 32],
    counter: DhCounter,
}

impl DalekDh {
    fn install(&mut self, private: [u8; 32]) {
        let secret = StaticSecret::from(private);
        self.public = PublicKey::from(&secret).to_bytes();
        self.private = private;
        self.secret = Some(secret);
    }
}

impl Dh for DalekDh {
    fn name(&self) -> &'static str {
        "25519"
    }
    fn pub_len(&self) -> usize {
        32
    }
    fn priv_len(&self) -> usize {
        32
    }
    fn set(&mut self, privkey: &[u8]) {
        let mut k = [0u8; 32];
        let n = privkey.len().min(32);
        k[..n].copy_from_slice(&privkey[..n]);
        self.install(k);
    }
    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut k = [0u8; 32];
        rng.try_fill_bytes(&mut k)?;
        self.install(k);
        Ok(())
    }
    fn pubkey(&self) -> &[u8] {
        &self.public
    }
    fn privkey(&self) -> &[u8] {
        &self.private
    }
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // Never panic on hostile lengths (snow's default asserts here).
        let remote: [u8; 32] = pubkey.get(..32).and_then(|s| s.try_into().ok()).ok_or(snow::Error::Dh)?;
        let secret = self.secret.as_ref().ok_or(snow::Error::Dh)?;
        self.counter.bump();
        let shared = secret.diffie_hellman(&PublicKey::from(remote));
        if !shared.was_contributory() {
            return Err(snow::Error::Dh);
        }
        let dst = out.get_mut(..32).ok_or(snow::Error::Dh)?;
        dst.copy_from_slice(shared.as_bytes());
        Ok(())
    }
}

impl Drop for DalekDh {
    fn drop(&mut self) {
        self.private = [0; 32];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_blacklisted_point_really_is_low_order() {
        // A small-order point gives an all-zero X25519 result with any scalar: this checks the table.
        for u in LOW_ORDER {
            let s = StaticSecret::random_from_rng(rand::rngs::OsRng);
            assert!(!s.diffie_hellman(&PublicKey::from(u)).was_contributory(), "{u:02x?}");
            let mut top = u;
            top[31] |= 0x80;
            assert!(is_low_order(&top), "top-bit variant of {u:02x?}");
        }
    }

    #[test]
    fn static_keys_must_be_canonical_and_contributory() {
        let good = PublicKey::from(&StaticSecret::random_from_rng(rand::rngs::OsRng)).to_bytes();
        assert!(is_acceptable_static_key(&good));
        let mut top = good;
        top[31] |= 0x80;
        assert!(!is_acceptable_static_key(&top), "top bit set is non-canonical");
        assert!(!is_acceptable_static_key(&field_elem(0xf0)), "u >= p");
        for u in LOW_ORDER {
            assert!(!is_acceptable_static_key(&u));
        }
    }
}
