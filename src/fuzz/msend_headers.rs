//! Fuzzes msend's message preparation: header splitting, recipient extraction (-t, Resent-*),
//! Bcc removal and the DATA encoding of the result. Any bytes must give a prepared message or
//! an error, never a panic; a Bcc field must never survive. And the qualification of bare
//! addresses (msend's and mrelayd's): it only ever inserts `@domain`, and streamed in two
//! pieces it gives what it gives for the whole message.

use crate::msend::message::{prepare, split_headers, Prepare};
use crate::rfc5322::{data_bytes, header_end, qualify_header, HeaderQualifier, ADDRESS_FIELDS};

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
    qualify(data);
}

/// The qualification properties (module doc) for `data`.
fn qualify(data: &[u8]) {
    let end = header_end(data);
    let mut whole = qualify_header(&data[..end.header], ADDRESS_FIELDS, "q.test");
    whole.extend_from_slice(&data[end.header..]);
    let strip = |b: &[u8]| String::from_utf8_lossy(b).replace("@q.test", "");
    assert_eq!(strip(&whole), strip(data), "more than @domain inserted");
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut h = HeaderQualifier::new(ADDRESS_FIELDS, "q.test");
    let mut streamed = h.feed(&data[..cut]).into_owned();
    streamed.extend_from_slice(&h.feed(&data[cut..]));
    streamed.extend_from_slice(&h.finish());
    assert_eq!(streamed, whole, "streamed differently");
}
