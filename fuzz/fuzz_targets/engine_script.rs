//! cargo-fuzz entry point: see `background_fetch_fuzz::engine_script`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| background_fetch_fuzz::engine_script::run(data));
