//! The WPT background-fetch conformance suite, ported to Rust (see README.md).
