#![no_main]
//! Fuzz target `bus_decode`: see `zone_shell::fuzzing::bus_decode` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_shell::fuzzing::bus_decode(data));
