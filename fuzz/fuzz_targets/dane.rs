//! The `dane` fuzz target; its body is [`mailkit::fuzz::dane`] so it compiles and is tested
//! with the crate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mailkit::fuzz::dane::run(data));
