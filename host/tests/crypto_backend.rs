//! attacks.md J20: a jsonwebtoken without a crypto backend is caught when the gateway is built,
//! not on the first admin request.
//!
//! jsonwebtoken 10/11 pick their backend from crate features; built with neither `rust_crypto` nor
//! `aws_lc_rs` they install a provider whose every factory panics at first use. This test installs
//! exactly that provider (the crate's public `CryptoProvider` API, process-wide, so this file holds
//! one test and runs as its own process) and builds the gateway from a valid config the way
//! `imgate serve` and `imgate check-config` do.

use std::path::Path;

use host::config::Config;
use host::state::{build_with, BuildOptions};
use jsonwebtoken::crypto::{CryptoProvider, KeyUtils};

/// What jsonwebtoken's `CryptoProvider::from_crate_features` answers with no backend feature.
static NO_BACKEND: CryptoProvider = CryptoProvider {
    signer_factory: |_, _| panic!("Could not automatically determine the process-level CryptoProvider"),
    verifier_factory: |_, _| panic!("Could not automatically determine the process-level CryptoProvider"),
    key_utils: KeyUtils::new_unimplemented(),
};

#[test]
fn a_jsonwebtoken_without_a_crypto_backend_is_refused_when_the_gateway_is_built() {
    // First: jsonwebtoken fixes its provider at first use, for the life of the process. (The
    // passing side, the backend imgate ships, is `admin_jwt::tests::crypto_backend_self_test_passes`.)
    NO_BACKEND.install_default().expect("nothing in this process used jsonwebtoken before");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let config = Config::load(&fixtures.join("valid.toml")).expect("the fixture parses");
    let options = BuildOptions { check_only: true, ..BuildOptions::default() };
    let errors = match build_with(config, &fixtures, options) {
        Ok(_) => panic!("a gateway without a JWT crypto backend was built"),
        Err(errors) => errors.to_string(),
    };
    assert!(errors.contains("jsonwebtoken crypto self-test panicked: no usable crypto backend"), "{errors}");
}
