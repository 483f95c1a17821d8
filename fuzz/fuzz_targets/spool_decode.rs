#![no_main]
//! Fuzz target `spool_decode`: see `zone_shell::fuzzing::spool_decode` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_shell::fuzzing::spool_decode(data));
