//! Capabilities: the one place a plugin's grants are checked, with one behaviour on denial.
//!
//! At load, every import of the component is checked against the allow-list and the plugin's
//! grants ([`check_imports`]): a component importing what it was not granted never loads. At call
//! time every host function checks again ([`require`]) and *traps* when the capability is not
//! granted: only a component that bypassed the load check could get there, and a trap fails the
//! call closed and counts toward quarantine. (`host-error::denied` is for a call the capability
//! allows in general but not here: `openim` during `init`.)

use std::collections::BTreeSet;

use wasmtime::component::Component;
use wasmtime::Engine;

use super::config::Capability;
use super::runtime::LoadError;

/// WASI interfaces linked with an empty context: what `wasm32-wasip2` std imports even when
/// nothing uses it. Anything else from `wasi:` is refused at load.
const INERT_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
];
const RANDOM_WASI: &[&str] = &["wasi:random/random", "wasi:random/insecure", "wasi:random/insecure-seed"];
/// WASI interfaces linked to stubs (capability `wasi-stubs`): clocks that read 0, a filesystem
/// with no directory opened, sockets that refuse every address and name.
const STUB_WASI: &[&str] = &[
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// Checks every import of the component against the allow-list and the plugin's grants; names
/// every import refused, not just the first.
pub(crate) fn check_imports(
    engine: &Engine,
    component: &Component,
    grants: &BTreeSet<Capability>,
) -> Result<(), LoadError> {
    let mut refused = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        if let Err(why) = import_allowed(name, grants) {
            refused.push((name.to_owned(), why));
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Imports(refused))
    }
}

fn import_allowed(name: &str, grants: &BTreeSet<Capability>) -> Result<(), String> {
    let unversioned = name.split('@').next().unwrap_or(name);
    if INERT_WASI.contains(&unversioned) {
        return Ok(());
    }
    if STUB_WASI.contains(&unversioned) {
        return if grants.contains(&Capability::WasiStubs) {
            Ok(())
        } else {
            Err("plugins get no WASI capability (files, sockets, clocks); a language runtime that imports them needs capability `wasi-stubs` (they stay empty)".into())
        };
    }
    if RANDOM_WASI.contains(&unversioned) {
        return if grants.contains(&Capability::Random) {
            Ok(())
        } else {
            Err("capability `random` is not granted".into())
        };
    }
    if let Some(iface) = unversioned.strip_prefix("imgate:plugin/") {
        if !name.ends_with("@0.1.0") {
            return Err("this imgate serves imgate:plugin@0.1.0".into());
        }
        if iface == "types" {
            return Ok(());
        }
        return match Capability::ALL.iter().find(|c| c.as_str() == iface) {
            Some(c) if grants.contains(c) => Ok(()),
            Some(c) => Err(format!("capability `{}` is not granted", c.as_str())),
            None => Err("no such interface".into()),
        };
    }
    if unversioned.starts_with("wasi:") {
        Err("plugins get no WASI capability (files, sockets, clocks, HTTP); use imgate's imports".into())
    } else {
        Err("not an interface imgate provides".into())
    }
}

/// At call time: `cap` is granted, or the guest traps.
pub(crate) fn require(grants: &BTreeSet<Capability>, cap: Capability) -> wasmtime::Result<()> {
    if grants.contains(&cap) {
        Ok(())
    } else {
        Err(wasmtime::Error::msg(format!("capability `{}` is not granted", cap.as_str())))
    }
}
