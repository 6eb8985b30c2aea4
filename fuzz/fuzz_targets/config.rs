//! Fuzz target `config`: TOML text through the config loader (`Config::parse`: the TOML parser,
//! the retry loop that removes each bad key to report every error at once, the semantic checks
//! of every table, the `[[route]]` table and `[[admin.issuer]]` validation).
//!
//! Input: the file's text (invalid UTF-8 is replaced, as no config file could hold it).
//!
//! Asserts: an accepted config serializes back to TOML, that TOML is accepted too, and it
//! serializes to the same text (parse → serialize → parse is the identity on what a config
//! says); a refused one comes with at least one error, none of them empty.
#![no_main]

use host::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The loader does at most 100 passes over the tree: keep a pass cheap.
    if data.len() > 16 * 1024 {
        return;
    }
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text) {
        Ok(config) => {
            let first =
                toml::to_string(&config).unwrap_or_else(|e| panic!("an accepted config does not serialize: {e}"));
            let again = Config::parse(&first)
                .unwrap_or_else(|e| panic!("the serialized form of an accepted config is refused: {e}\n{first}"));
            let second = toml::to_string(&again).expect("serializes");
            assert_eq!(first, second, "parse → serialize is not stable");
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without an error");
            assert!(errors.0.iter().all(|e| !e.trim().is_empty()), "an empty error: {errors:?}");
        }
    }
});
