#![no_main]
//! See relay::fuzzing::control.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relay::fuzzing::control(data));
