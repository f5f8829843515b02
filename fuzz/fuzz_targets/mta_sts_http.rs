//! The `mta_sts_http` fuzz target; its body is [`mailkit::fuzz::mta_sts_http`] so it compiles and is tested
//! with the crate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mailkit::fuzz::mta_sts_http::run(data));
