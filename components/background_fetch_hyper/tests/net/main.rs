//! Integration tests of the hyper network host against servers started on 127.0.0.1 (one
//! test binary, to keep link time down).

mod basics;
mod connect;
mod connectivity;
mod cors;
mod decoding;
mod engine;
pub mod errors;
mod limits;
mod redirects;
mod resume;
mod support;
