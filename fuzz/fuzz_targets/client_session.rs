#![no_main]
//! Fuzz target `client_session`: see `zone_core::fuzzing::client_session` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_core::fuzzing::client_session(data));
