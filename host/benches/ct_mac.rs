//! Exists for attack R11 (`shared/spec/attacks.md`): a timing probe on the signed-request MAC
//! compare. A unit test cannot answer it (timings on shared cores are noise), a statistical test
//! over many samples can: dudect's Welch t-test, from the `dudect-bencher` crate (not ours).
//!
//! Each bench times `host::auth::signed::verify` — the function the gateway runs on every signed
//! request (b64url decode, HMAC-SHA256 over the canonical string, `hmac`'s constant-time
//! `verify_slice`) — on two classes of wrong signatures picked at random per sample, over a pool of
//! random session keys and canonical strings of one length:
//! - `verify_first_vs_last_byte_wrong`: the right MAC with its first byte changed, vs its last byte;
//! - `verify_right_prefix_vs_random`: the right MAC but its last byte (31 bytes right, what a probe
//!   that learned a prefix sends) vs a random MAC.
//!
//! A positive control, `control_early_exit_first_vs_last_byte_wrong`, does the same work but
//! compares byte by byte and stops at the first difference: the leak the probe looks for, about 31
//! loop iterations on top of the HMAC. If the control shows no leak, this run could not have seen
//! one, and the verdict says so.
//!
//! dudect reports the largest |t| over the raw timings and 100 cropped percentiles; |t| < 4.5 is
//! "no leak detected". The bench prints each t and a verdict, and exits 1 if `verify` looks leaky or
//! the control was not detected. `CT_MAC_SAMPLES` sets the samples per bench (default 10⁶, the
//! catalogue's number). Run with `cargo bench -p host --bench ct_mac`.
//!
//! The runner of `dudect-bencher` prints its summaries and keeps the t statistic to itself, so this
//! binary runs itself once more as the runner and reads the summaries it prints.

#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)] // bench code: a panic is a failure

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use dudect_bencher::ctbench::{run_benches_console, BenchMetadata, BenchName, BenchOpts};
use dudect_bencher::rand::RngExt;
use dudect_bencher::{BenchRng, Class, CtRunner};
use hmac::{Hmac, Mac};
use host::auth::signed;
use sha2::Sha256;

/// Set in the child that runs the benches (see the module comment).
const RUNNER: &str = "IMGATE_CT_MAC_RUNNER";
/// dudect's threshold: beyond it, the two classes' timings differ.
const T_THRESHOLD: f64 = 4.5;
/// Session keys and canonical strings the samples draw from.
const POOL: usize = 1024;
/// Samples prepared at once (the signatures of a chunk are built before any of it is timed).
const CHUNK: usize = 100_000;

const CONTROL: &str = "control_early_exit_first_vs_last_byte_wrong";
const BENCHES: [(&str, dudect_bencher::ctbench::BenchFn); 3] = [
    (CONTROL, control_early_exit_first_vs_last_byte_wrong),
    ("verify_first_vs_last_byte_wrong", verify_first_vs_last_byte_wrong),
    ("verify_right_prefix_vs_random", verify_right_prefix_vs_random),
];

/// One session key, a canonical string signed with it, and the right MAC.
struct Signed {
    key: [u8; 32],
    canonical: String,
    mac: [u8; 32],
}

fn pool(rng: &mut BenchRng) -> Vec<Signed> {
    (0..POOL)
        .map(|_| {
            let mut key = [0u8; 32];
            rng.fill(&mut key[..]);
            let mut id = [0u8; 18];
            rng.fill(&mut id[..]);
            let mut body = [0u8; 64];
            rng.fill(&mut body[..]);
            let ts = 1_767_225_600_000u64 + rng.random_range(0..1_000_000_000u64);
            let nonce = format!("n0nce-{:016x}", rng.random::<u64>());
            let canonical = signed::canonical_string(
                &B64URL.encode(id),
                &ts.to_string(),
                &nonce,
                "POST",
                "/v1/messages/user/bob",
                "",
                &body,
            );
            let mac = B64URL.decode(signed::sign(&key, &canonical)).expect("b64url").try_into().expect("32 bytes");
            Signed { key, canonical, mac }
        })
        .collect()
}

/// A byte to XOR in: never 0, so the byte really changes.
fn flip(rng: &mut BenchRng) -> u8 {
    rng.random_range(1..=255u8)
}

fn samples() -> usize {
    std::env::var("CT_MAC_SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000)
}

/// Times `check` on `samples()` signatures, each of a class picked by a fair coin: `left` or
/// `right` makes the (wrong) MAC from the right one. Every signature is refused, or the bench is
/// void.
fn run(
    runner: &mut CtRunner,
    rng: &mut BenchRng,
    check: fn(&[u8; 32], &str, &str) -> bool,
    left: fn(&[u8; 32], &mut BenchRng) -> [u8; 32],
    right: fn(&[u8; 32], &mut BenchRng) -> [u8; 32],
) {
    let pool = pool(rng);
    let mut left_to_do = samples();
    while left_to_do > 0 {
        let n = left_to_do.min(CHUNK);
        left_to_do -= n;
        let inputs: Vec<(Class, usize, String)> = (0..n)
            .map(|_| {
                let i = rng.random_range(0..POOL);
                let (class, mac) = if rng.random::<bool>() {
                    (Class::Left, left(&pool[i].mac, rng))
                } else {
                    (Class::Right, right(&pool[i].mac, rng))
                };
                (class, i, B64URL.encode(mac))
            })
            .collect();
        for (class, i, signature) in inputs {
            let s = &pool[i];
            runner.run_one(class, || {
                let ok = check(black_box(&s.key), black_box(&s.canonical), black_box(&signature));
                assert!(!ok, "a wrong signature verified");
                ok
            });
        }
    }
}

fn first_byte_wrong(mac: &[u8; 32], rng: &mut BenchRng) -> [u8; 32] {
    let mut m = *mac;
    m[0] ^= flip(rng);
    m
}

fn last_byte_wrong(mac: &[u8; 32], rng: &mut BenchRng) -> [u8; 32] {
    let mut m = *mac;
    m[31] ^= flip(rng);
    m
}

fn random_mac(mac: &[u8; 32], rng: &mut BenchRng) -> [u8; 32] {
    let mut m = [0u8; 32];
    rng.fill(&mut m[..]);
    if m == *mac {
        m[0] ^= 1; // one chance in 2^256; the bench needs every signature wrong
    }
    m
}

/// The gateway's verification, as the signed-request stage calls it.
fn verify(key: &[u8; 32], canonical: &str, signature: &str) -> bool {
    signed::verify(key, canonical, signature)
}

/// What the gateway must not do: the same work, but a compare that stops at the first differing
/// byte (`black_box` keeps the compiler from turning the loop into a `bcmp`).
fn early_exit_verify(key: &[u8; 32], canonical: &str, signature: &str) -> bool {
    let Ok(tag) = B64URL.decode(signature.as_bytes()) else { return false };
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(canonical.as_bytes());
    let expected = m.finalize().into_bytes();
    if tag.len() != expected.len() {
        return false;
    }
    for (a, b) in expected.iter().zip(&tag) {
        if black_box(*a) != black_box(*b) {
            return false;
        }
    }
    true
}

fn control_early_exit_first_vs_last_byte_wrong(runner: &mut CtRunner, rng: &mut BenchRng) {
    run(runner, rng, early_exit_verify, first_byte_wrong, last_byte_wrong);
}

fn verify_first_vs_last_byte_wrong(runner: &mut CtRunner, rng: &mut BenchRng) {
    run(runner, rng, verify, first_byte_wrong, last_byte_wrong);
}

fn verify_right_prefix_vs_random(runner: &mut CtRunner, rng: &mut BenchRng) {
    run(runner, rng, verify, last_byte_wrong, random_mac);
}

fn main() {
    if std::env::var_os(RUNNER).is_some() {
        let benches = BENCHES
            .iter()
            .map(|&(name, benchfn)| BenchMetadata { name: BenchName(name), seed: None, benchfn })
            .collect();
        run_benches_console(BenchOpts::default(), benches).expect("dudect runner");
        return;
    }
    // `cargo bench` passes `--bench` (and maybe a filter): the runner takes no arguments.
    let exe = std::env::current_exe().expect("this binary");
    let mut child = Command::new(exe).env(RUNNER, "1").stdout(Stdio::piped()).spawn().expect("runner starts");
    let mut results: Vec<(String, f64)> = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.expect("runner output");
        println!("{line}");
        // `bench NAME ... : n == +1.000M, max t = +1.23456, max tau = ..., (5/tau)^2 = ...`
        let parsed = line.strip_prefix("bench ").and_then(|rest| {
            let (name, summary) = rest.split_once(" ... : ")?;
            let t = summary.split_once("max t = ")?.1.split(',').next()?.trim().parse::<f64>().ok()?;
            Some((name.trim().to_owned(), t))
        });
        results.extend(parsed);
    }
    let status = child.wait().expect("runner exit");
    assert!(status.success(), "the dudect runner failed: {status:?}");
    assert_eq!(results.len(), BENCHES.len(), "a summary per bench: {results:?}");

    let control_seen = results.iter().any(|(name, t)| name == CONTROL && t.abs() >= T_THRESHOLD);
    let mut failed = !control_seen;
    println!("R11, timing of the signed-request MAC check (dudect, |t| < {T_THRESHOLD} = no leak detected):");
    for (name, t) in &results {
        let verdict = match (name == CONTROL, t.abs() < T_THRESHOLD) {
            (true, false) => "leak detected, as it must be: this run can see one",
            (true, true) => "NOT detected: this run was too noisy to see a leak; the verdicts below prove nothing",
            (false, true) if control_seen => "no leak detected",
            (false, true) => "no leak detected (inconclusive: the control was not detected)",
            (false, false) => {
                failed = true;
                "LEAK SUSPECTED: the two classes take different times"
            }
        };
        println!("  {name:<45} max t = {t:+9.3}  {verdict}");
    }
    if failed {
        std::process::exit(1);
    }
}
