#![no_main]
//! Fuzz target `rules_toml`: see `zone_core::fuzzing::rules_toml` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_core::fuzzing::rules_toml(data));
