#![no_main]
//! Fuzz target `capture`: the example plugin's decoders and action path, through the kit's fuzz
//! entries; see `zone_capture::fuzz`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| zone_capture::fuzz(data));
