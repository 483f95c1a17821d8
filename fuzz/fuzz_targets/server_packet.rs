#![no_main]
//! Fuzz target `server_packet`: see `zone_core::fuzzing::server_packet` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_core::fuzzing::server_packet(data));
