//! cargo-fuzz entry point: see `background_fetch_fuzz::request_matching`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| background_fetch_fuzz::request_matching::run(data));
