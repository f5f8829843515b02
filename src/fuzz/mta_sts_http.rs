//! Fuzz the HTTP/1.1 response reader of the MTA-STS policy fetch
//! ([`crate::outbound::mta_sts::http`]): whatever a policy host sends, fed whole and in two
//! parts, gives the same answer and never panics; a response read is re-encoded (with
//! Content-Length and chunked) and reads back the same (round trip).

use crate::outbound::mta_sts::http::{Parsed, ResponseParser};

/// Body limit of the fuzz parser (small, so the limit paths are reached).
const LIMIT: usize = 4096;

fn read(parts: &[&[u8]]) -> Result<crate::outbound::mta_sts::http::Response, String> {
    let mut p = ResponseParser::new(LIMIT);
    for part in parts {
        match p.feed(part) {
            Ok(Parsed::Done(r)) => return Ok(r),
            Ok(Parsed::NeedMore) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    p.eof().map_err(|e| e.to_string())
}

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let whole = read(&[data]);
    let split = data.first().map_or(0, |&b| usize::from(b)) % (data.len() + 1);
    let parts = read(&[&data[..split], &data[split..]]);
    assert_eq!(
        whole.is_ok(),
        parts.is_ok(),
        "split at {split} changed the answer"
    );
    let Ok(r) = whole else { return };
    assert!(r.body.len() <= LIMIT);
    assert_eq!(Ok(&r), parts.as_ref());
    // Only a value without CR/LF survives re-encoding as a header field.
    if r.content_type
        .as_deref()
        .is_some_and(|t| t.contains(['\r', '\n']) || t.trim() != t)
    {
        return;
    }
    for chunked in [None, Some(7)] {
        assert_eq!(
            read(&[&r.encode(chunked)]).as_ref(),
            Ok(&r),
            "round trip {chunked:?}"
        );
    }
}
