//! Integration tests of the OpenIM emulator: each test starts a real emulator on loopback and
//! drives its HTTP API (reqwest) or WS gateway (tokio-tungstenite), one binary to keep link time
//! low on small machines.

mod auth;
mod common;
mod faults;
mod groups_friends;
mod sdk_routes;
mod send;
mod weaknesses;
mod ws;
mod ws_frames;
