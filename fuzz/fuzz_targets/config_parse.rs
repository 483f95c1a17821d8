#![no_main]
//! Fuzz target `config_parse`: see `zone_shell::fuzzing::config_parse` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_shell::fuzzing::config_parse(data));
