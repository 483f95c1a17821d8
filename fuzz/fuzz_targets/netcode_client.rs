#![no_main]
//! Fuzz target `netcode_client`: see `zone_core::fuzzing::netcode_client` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_core::fuzzing::netcode_client(data));
