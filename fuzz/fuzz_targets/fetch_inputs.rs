//! cargo-fuzz entry point: see `background_fetch_fuzz::fetch_inputs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| background_fetch_fuzz::fetch_inputs::run(data));
