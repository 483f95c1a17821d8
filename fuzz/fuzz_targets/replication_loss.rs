#![no_main]
//! Fuzz target `replication_loss`: see `zone_core::fuzzing::replication_loss` for what it attacks and asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_core::fuzzing::replication_loss(data));
