//! Hostile plugin `bigmem` (attacks.md P3): a 1 GiB zero-filled static makes the module declare a
//! minimum memory above 1 GiB, so instantiating it must fail under a smaller memory cap.

use core::hint::black_box;

use imgate_plugin_sdk::{Plugin, Request, RequestVerdict};

const SIZE: usize = 1 << 30;

static mut BIG: [u8; SIZE] = [0; SIZE];

struct BigMem;

impl Plugin for BigMem {
    fn on_request(_: &Request) -> RequestVerdict {
        // Touch the array at places the optimiser cannot predict, so it stays whole.
        let i = black_box(SIZE - 1);
        unsafe {
            let big = &raw mut BIG;
            (*big)[i] = black_box(1);
            black_box((*big)[black_box(SIZE / 2)]);
        }
        RequestVerdict::Proceed
    }
}

imgate_plugin_sdk::export!(BigMem);
