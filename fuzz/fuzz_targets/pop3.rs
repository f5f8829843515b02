//! Fuzzes the POP3 session (parser and state machine in every state) and the RETR/TOP
//! encoder; the body lives in `mailkit::pop3::fuzz` so it is compiled and unit-tested with the
//! crate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mailkit::pop3::fuzz::session_and_encoder(data);
});
