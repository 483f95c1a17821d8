#![no_main]
//! Fuzz target `connect_token`: see `zone_core::fuzzing::connect_token` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_core::fuzzing::connect_token(data));
