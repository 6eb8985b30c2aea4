//! Property tests: the client library and the gateway agree on signing for arbitrary requests,
//! and any single-byte change to a covered part is refused (client-auth §4).

use host::auth::signed;
use proptest::prelude::*;

const PATH: &str = "/[a-zA-Z0-9/_%.~-]{0,80}";
const QUERY: &str = "[a-zA-Z0-9=&%+_.~-]{0,80}";

fn both(sid: &str, ts: i64, nonce: &str, method: &str, path: &str, query: &str, body: &[u8]) -> String {
    let c = imgate_client::canonical_string(sid, ts, nonce, method, path, query, body);
    let g = signed::canonical_string(sid, &ts.to_string(), nonce, method, path, query, body);
    assert_eq!(c, g, "client and gateway build the same canonical string");
    g
}

/// Replaces the printable ASCII character at `i` with another one.
fn change_char(s: &str, i: usize, delta: u8) -> String {
    let mut b = s.as_bytes().to_vec();
    let i = i % b.len();
    b[i] = 33 + ((b[i] - 33 + delta) % 94);
    String::from_utf8(b).expect("ascii")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn client_signatures_verify_at_the_gateway(
        sid in "[A-Za-z0-9_-]{22,43}",
        ts in 0i64..4_000_000_000_000,
        nonce in "[A-Za-z0-9_-]{16,64}",
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]),
        path in PATH,
        query in QUERY,
        body in prop::collection::vec(any::<u8>(), 0..2048),
        key in any::<[u8; 32]>(),
    ) {
        let canonical = both(&sid, ts, &nonce, method, &path, &query, &body);
        let sig = imgate_client::sign(&key, &canonical);
        prop_assert!(signed::verify(&key, &canonical, &sig));
    }

    #[test]
    fn any_single_byte_change_is_refused(
        sid in "[A-Za-z0-9_-]{22,43}",
        nonce in "[A-Za-z0-9_-]{16,64}",
        path in "/[a-zA-Z0-9/_%.~-]{1,80}",
        query in "[a-zA-Z0-9=&%+_.~-]{1,80}",
        body in prop::collection::vec(any::<u8>(), 1..2048),
        key in any::<[u8; 32]>(),
        part in 0usize..5,
        at in any::<usize>(),
        delta in 1u8..94,
    ) {
        let ts = 1_767_225_600_000;
        let sig = imgate_client::sign(&key, &both(&sid, ts, &nonce, "POST", &path, &query, &body));
        let (mut p, mut q, mut b, mut n, mut s) = (path.clone(), query.clone(), body.clone(), nonce.clone(), sid.clone());
        match part {
            0 => p = change_char(&path, at, delta),
            1 => q = change_char(&query, at, delta),
            2 => { let i = at % b.len(); b[i] = b[i].wrapping_add(delta); }
            3 => n = change_char(&nonce, at, delta),
            _ => s = change_char(&sid, at, delta),
        }
        let changed = signed::canonical_string(&s, &ts.to_string(), &n, "POST", &p, &q, &b);
        prop_assert!(!signed::verify(&key, &changed, &sig));
        // And a one-character change of the signature itself.
        let bad_sig = change_char(&sig, at, delta);
        let original = signed::canonical_string(&sid, &ts.to_string(), &nonce, "POST", &path, &query, &body);
        prop_assert!(bad_sig == sig || !signed::verify(&key, &original, &bad_sig));
    }
}
