//! The Rust SDK for imgate policy plugins.
//!
//! Plugins are WebAssembly components that implement the `imgate:plugin` WIT world (see `wit/`).
//! This crate will hold the one trait plugin authors implement and the export macro; it is empty
//! until the plugin issue defines that contract, and it never depends on the host.
