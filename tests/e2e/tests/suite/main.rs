//! The e2e suites as one test binary: the real gateway against the real emulator over loopback.
//!
//! One binary links host, wasmtime and the emulator once instead of once per suite (a clean build
//! linked 24 such binaries; CI ran out of disk). The suite that measures the process itself
//! (`plugin_reload_memory`, its RSS) stays a test binary of its own, so nothing else runs beside it.

mod admin_api;
mod admin_auth;
mod admin_pipeline;
mod attack_gaps;
mod audit_trail;
mod client_api;
mod compat_plugins;
mod compat_sdk;
mod compat_surface;
mod connections;
mod demo_tour;
mod edge_and_faults;
mod fleet;
mod go_json_differential;
mod object_authorization;
mod openim_sdk;
mod plugin_admin_errors;
mod plugin_attacks;
mod plugin_cli;
mod plugin_examples;
mod plugin_kit;
mod plugin_reload;
mod plugin_reload_inflight;
mod plugin_reload_load;
mod privileged_accounts;
mod rate_limits;
mod sign_props;
mod soak;
mod store_conformance;
mod user_auth;
mod ws_relay;
