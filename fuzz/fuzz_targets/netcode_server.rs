#![no_main]
//! Fuzz target `netcode_server`: see `zone_core::fuzzing::netcode_server` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_core::fuzzing::netcode_server(data));
