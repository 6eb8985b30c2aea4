//! What user authentication costs the gateway: handshakes against the X25519 floor, and
//! signed-request verification for a 1 KiB body (issue 3's goals: handshake ≤ 1.3 × the cost of
//! 4 raw X25519 operations; verification ≤ 5 µs). Run with `cargo bench -p host --bench auth`.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // test code: a panic is a failure

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use host::auth::handshake::read_message1;
use host::auth::signed;
use host::auth::x25519::DhCounter;
use host::keys::GatewayKey;
use x25519_dalek::{PublicKey, StaticSecret};

fn handshake(c: &mut Criterion) {
    let gw = GatewayKey::generate("bench");
    let keys = vec![gw.clone()];
    let device = imgate_client::DeviceKey::generate();
    let (_, msg1) =
        imgate_client::handshake_message1(&device, &gw.public.to_bytes(), "phone", 1_767_225_600_000).expect("msg1");
    let payload = br#"{"session_id":"AAAAAAAAAAAAAAAAAAAAAAAA","session_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","user_id":"alice","platform_id":1,"expires_at":1767268800000}"#;
    let mut g = c.benchmark_group("handshake");
    // The floor: the four DH operations of an IK responder (es, ss, ee, se).
    let a = StaticSecret::random_from_rng(rand::rngs::OsRng);
    let b = PublicKey::from(&StaticSecret::random_from_rng(rand::rngs::OsRng));
    g.bench_function("x25519_raw_x4", |bench| {
        bench.iter(|| {
            for _ in 0..4 {
                black_box(a.diffie_hellman(black_box(&b)));
            }
        })
    });
    g.bench_function("responder_msg1_to_msg2", |bench| {
        let counter = DhCounter::default();
        bench.iter(|| {
            let incoming = read_message1(&keys, &counter, black_box(&msg1)).expect("valid msg1");
            black_box(incoming.respond(payload).expect("msg2"))
        })
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let key = [7u8; 32];
    let body = vec![b'x'; 1024];
    let canonical = signed::canonical_string(
        "c2Vzc2lvbi0xYWJjZGVmZ2hp",
        "1767225600000",
        "n0nce-0000000001",
        "POST",
        "/v1/messages",
        "dry=1",
        &body,
    );
    let sig = signed::sign(&key, &canonical);
    c.bench_function("signed_request_verify_1KiB", |bench| {
        bench.iter(|| {
            let canonical = signed::canonical_string(
                "c2Vzc2lvbi0xYWJjZGVmZ2hp",
                "1767225600000",
                "n0nce-0000000001",
                "POST",
                "/v1/messages",
                "dry=1",
                black_box(&body),
            );
            assert!(signed::verify(&key, &canonical, black_box(&sig)));
        })
    });
}

criterion_group!(benches, handshake, verify);
criterion_main!(benches);
