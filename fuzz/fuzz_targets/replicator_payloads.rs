#![no_main]
//! Fuzz target `replicator_payloads`: see `zone_core::fuzzing::replicator_payloads` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_core::fuzzing::replicator_payloads(data));
