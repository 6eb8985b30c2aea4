//! Generates the code that makes `big` a large component: `FUNCTIONS` distinct hash rounds (no
//! two alike, so the optimiser can neither merge nor drop them) and a table that keeps them all
//! reachable; and `VERSION`, from `PLUGIN_VERSION` (1 when unset).

use std::fmt::Write;

const FUNCTIONS: usize = 12_500;
const ROUNDS: usize = 12;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PLUGIN_VERSION");
    let version: u32 = match std::env::var("PLUGIN_VERSION") {
        Ok(v) => v.parse().expect("PLUGIN_VERSION must be a number"),
        Err(_) => 1,
    };
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        seed
    };
    let mut out = format!("const VERSION: u32 = {version};\n");
    for i in 0..FUNCTIONS {
        writeln!(out, "#[inline(never)] fn f{i}(mut x: u64) -> u64 {{").unwrap();
        for _ in 0..ROUNDS {
            let (c, m, r, s) = (next(), next() | 1, next() % 63 + 1, next() % 31 + 1);
            writeln!(out, "x ^= {c:#x}; x = x.wrapping_mul({m:#x}).rotate_left({r}); x ^= x >> {s};").unwrap();
        }
        writeln!(out, "x }}").unwrap();
    }
    writeln!(out, "static TABLE: [fn(u64) -> u64; {FUNCTIONS}] = [").unwrap();
    for i in 0..FUNCTIONS {
        write!(out, "f{i},").unwrap();
    }
    writeln!(out, "];").unwrap();
    let path = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("generated.rs");
    std::fs::write(path, out).unwrap();
}
