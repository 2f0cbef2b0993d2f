#![no_main]
//! See relay::fuzzing::frame.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::frame(data));
