//! Hostile plugin `membomb` (attacks.md P2): `on_request` allocates 1 MiB chunks, writing to each
//! page, and keeps them all, until an allocation fails: Rust then aborts (an `unreachable` trap)
//! once imgate's memory cap makes `memory.grow` fail.

use core::hint::black_box;

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict};

const CHUNK: usize = 1 << 20;

struct MemBomb;

impl Plugin for MemBomb {
    fn on_request(_: &Request) -> RequestVerdict {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = vec![0u8; CHUNK];
            // Touch every page so the memory is really used, not only reserved.
            for i in (0..CHUNK).step_by(4096) {
                chunk[i] = black_box(1);
            }
            chunks.push(black_box(chunk));
        }
    }
}

imgate_plugin_sdk::export!(MemBomb);
