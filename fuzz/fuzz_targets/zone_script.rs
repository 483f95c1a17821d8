#![no_main]
//! Fuzz target `zone_script`: see `zone_core::fuzzing::zone_script` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_core::fuzzing::zone_script(data));
