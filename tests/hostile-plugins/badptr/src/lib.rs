//! Hostile plugin `badptr` (attacks.md P5): `on_request` returns a rejection whose `message` is a
//! (pointer, length) pair reaching far past the end of the plugin's memory: pointer 1 (a dangling
//! `u8` pointer), length 0x7fff_fff0. The canonical ABI lowering writes the pair as it is, so imgate
//! must bounds-check it.

use imgate_plugin_sdk::{Plugin, Rejection, Request, RequestVerdict};

const BOGUS_LEN: usize = 0x7fff_fff0;

struct BadPtr;

impl Plugin for BadPtr {
    fn on_request(_: &Request) -> RequestVerdict {
        // SAFETY: it is not; that is the point. The string is never read in the guest: the
        // lowering only writes its pointer and length (capacity = length, so nothing reallocates).
        let message = unsafe { String::from_raw_parts(std::ptr::dangling_mut::<u8>(), BOGUS_LEN, BOGUS_LEN) };
        RequestVerdict::Reject(Rejection { status: 403, code: "bad_pointer".into(), message })
    }
}

imgate_plugin_sdk::export!(BadPtr);
