//! The `queue_files` fuzz target; its body is [`mailkit::fuzz::queue_files`] so it compiles and is tested
//! with the crate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mailkit::fuzz::queue_files::run(data));
