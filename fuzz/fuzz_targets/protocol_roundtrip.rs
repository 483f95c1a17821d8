#![no_main]
//! Fuzz target `protocol_roundtrip`: see `zone_core::fuzzing::protocol_roundtrip` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_core::fuzzing::protocol_roundtrip(data));
