//! The `rate_limit_state` fuzz target; its body is [`mailkit::fuzz::rate_limit_state`] so it
//! compiles and is tested with the crate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mailkit::fuzz::rate_limit_state::run(data));
