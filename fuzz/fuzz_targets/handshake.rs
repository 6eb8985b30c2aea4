//! Fuzz target `handshake`: `POST /v1/auth/handshake`'s parsing — the JSON body
//! (`auth::handshake::decode_body`, via `host::fuzzing::handshake_body`) and Noise IK message 1
//! (`auth::handshake::read_message1`, the function the handler runs), with message 2 back.
//!
//! Input: byte 0 picks the mode.
//! - `B` (or anything else): the rest is the HTTP body; what decodes goes to `read_message1`.
//! - `M`: the rest is message 1 itself.
//! - `P`: the rest is the payload of a genuine message 1 that a client (`snow` initiator, a fixed
//!   device key) encrypts to the gateway's key.
//! - `T`: bytes 1-2 are a position, byte 3 a bit mask, the rest a payload: a genuine message 1
//!   with that bit flipped.
//!
//! Asserts: nothing that is not a genuine message 1 opens (a flipped bit anywhere is refused);
//! a genuine one with a payload of at most 256 bytes opens iff the payload is the expected JSON,
//! yields the client's static key and exactly the payload's `device_id` and `ts`; its message 2
//! completes the client's handshake and carries what the gateway put in it; the body
//! `{"msg": base64(m1)}` decodes to m1.
#![no_main]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use host::auth::handshake::{read_message1, Msg1Payload, Reject, PROLOGUE, PROTOCOL};
use host::auth::x25519::DhCounter;
use host::keys::GatewayKey;
use imgate_fuzz::gateway_key;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// The device's static key (fixed, so runs are reproducible).
const DEVICE_SECRET: [u8; 32] = [0x42; 32];

fn keys() -> &'static [GatewayKey] {
    static KEYS: OnceLock<Vec<GatewayKey>> = OnceLock::new();
    // Two keys, as during a rotation: the second one is the one clients use here.
    KEYS.get_or_init(|| vec![GatewayKey::generate("old"), gateway_key()])
}

fn device_public() -> [u8; 32] {
    let key = GatewayKey::from_b64("device", &B64.encode(DEVICE_SECRET)).expect("device key");
    *key.public.as_bytes()
}

/// A client's message 1 with `payload`, and its handshake state to read message 2 with.
fn message1(payload: &[u8]) -> Option<(snow::HandshakeState, Vec<u8>)> {
    let gw = gateway_key();
    let mut hs = snow::Builder::new(PROTOCOL.parse().expect("pattern"))
        .local_private_key(&DEVICE_SECRET)
        .and_then(|b| b.remote_public_key(gw.public.as_bytes()))
        .and_then(|b| b.prologue(PROLOGUE))
        .and_then(|b| b.build_initiator())
        .expect("initiator");
    let mut out = vec![0u8; payload.len() + 200];
    let n = hs.write_message(payload, &mut out).ok()?;
    out.truncate(n);
    Some((hs, out))
}

fn genuine(payload: &[u8]) {
    let Some((mut client, m1)) = message1(payload) else { return };
    // The HTTP body carrying it decodes to it.
    let body = serde_json::json!({ "msg": B64.encode(&m1) }).to_string();
    assert_eq!(host::fuzzing::handshake_body(body.as_bytes()).ok().as_deref(), Some(&m1[..]));
    let expected: Option<Msg1Payload> = serde_json::from_slice(payload).ok();
    match read_message1(keys(), &DhCounter::default(), &m1) {
        Ok(incoming) => {
            assert!(payload.len() <= 256, "a {}-byte payload was read", payload.len());
            assert_eq!(incoming.remote_static, device_public(), "wrong remote static key");
            let want = expected.expect("opened, but the payload is not Msg1Payload");
            assert_eq!((&incoming.payload.device_id, incoming.payload.ts), (&want.device_id, want.ts));
            let answer = br#"{"session_id":"s","session_key":"k"}"#;
            let m2 = incoming.respond(answer).expect("message 2");
            let mut buf = vec![0u8; m2.len()];
            let n = client.read_message(&m2, &mut buf).expect("the client reads message 2");
            assert_eq!(&buf[..n], answer);
            assert!(client.is_handshake_finished());
        }
        Err(Reject::Malformed(_)) => assert!(payload.len() > 256, "a genuine message 1 was malformed"),
        Err(Reject::Unauthenticated(why)) => {
            assert!(expected.is_none() && payload.len() <= 256, "a genuine message 1 was refused: {why}")
        }
        Err(other) => panic!("read_message1 cannot fail with {other:?}"),
    }
}

fn tampered(pos: usize, mask: u8, payload: &[u8]) {
    let Some((_, mut m1)) = message1(payload) else { return };
    if mask == 0 || m1.is_empty() {
        return;
    }
    let i = pos % m1.len();
    m1[i] ^= mask;
    if let Ok(incoming) = read_message1(keys(), &DhCounter::default(), &m1) {
        panic!("message 1 with byte {i} ^ {mask:#04x} opened (payload {:?})", incoming.payload);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode {
        b'M' => {
            let _ = read_message1(keys(), &DhCounter::default(), rest);
        }
        b'P' => genuine(rest),
        b'T' => {
            if let [a, b, mask, payload @ ..] = rest {
                tampered(usize::from(u16::from_be_bytes([*a, *b])), *mask, payload);
            }
        }
        _ => {
            // A replayed genuine message 1 may open (the handler's `ts` check refuses it later).
            if let Ok(m1) = host::fuzzing::handshake_body(rest) {
                let _ = read_message1(keys(), &DhCounter::default(), &m1);
            }
        }
    }
});
