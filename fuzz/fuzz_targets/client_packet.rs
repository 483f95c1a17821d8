#![no_main]
//! Fuzz target `client_packet`: see `zone_core::fuzzing::client_packet` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_core::fuzzing::client_packet(data));
