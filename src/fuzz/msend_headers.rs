//! Fuzzes msend's message preparation: header splitting, recipient extraction (-t, Resent-*),
//! Bcc removal and the DATA encoding of the result. Any bytes must give a prepared message or
//! an error, never a panic; a Bcc field must never survive.

use crate::msend::message::{prepare, split_headers, Prepare};
use crate::rfc5322::data_bytes;

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let p = Prepare {
        extract_recipients: true,
        from_address: "fuzz@example.test".into(),
        full_name: Some("Fuzz \"Q\" Tester".into()),
        hostname: "example.test".into(),
        now: 0,
    };
    if let Ok(out) = prepare(data, &p) {
        if let Ok((fields, _)) = split_headers(&out.message) {
            assert!(!fields.iter().any(|f| f.is("Bcc") || f.is("Resent-Bcc")));
        }
        let wire = data_bytes(&out.message);
        assert!(wire.ends_with(b"\r\n.\r\n") || wire == b".\r\n");
    }
}
