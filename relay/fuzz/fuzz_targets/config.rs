#![no_main]
//! See relay::fuzzing::config_text.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::config_text(data));
