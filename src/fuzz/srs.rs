//! The `srs` fuzz target: the SRS address parser (`srs::Srs::reverse`) on any text, and the
//! round trip. The input is an address `local@domain`: its local part must reverse without a
//! panic (an error, or an address when the hash happens to match); and the address made from
//! it by `forward` must be an SRS address at our domain that reverses to the input (SRS0), or
//! at least reverses (SRS1 of an SRS1 address: back to the first forwarder, by design).

use crate::srs::{parse_secrets, Srs};

/// 2026-12-04 12:00 UTC.
const NOW: u64 = 20791 * 86400 + 43200;

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(srs) = Srs::new(parse_secrets(b"fuzz secret\n"), "fwd.test", 21) else {
        panic!("a fixed secret and domain were refused");
    };
    let _ = srs.reverse(text, NOW);
    let Some((local, domain)) = text.split_once('@') else {
        return;
    };
    if local.is_empty() || domain.is_empty() || domain.contains(['@', '=']) {
        return;
    }
    let fwd = srs.forward(local, domain, NOW);
    let Some((l, d)) = fwd.rsplit_once('@') else {
        panic!("{fwd:?}: no @");
    };
    assert_eq!(d, "fwd.test", "{fwd:?}");
    assert!(crate::srs::is_srs(l), "{fwd:?}");
    let back = match srs.reverse(l, NOW) {
        Ok(b) => b,
        Err(e) => panic!("{fwd:?} made from {text:?} does not reverse: {e}"),
    };
    let srs1 = local.len() >= 5 && local.as_bytes()[..4].eq_ignore_ascii_case(b"SRS1");
    if !srs1 {
        assert_eq!(back, text, "{fwd:?}");
    }
    // Lower-cased on the way by a relay (ASCII case, as domain names and local parts are
    // compared, RFC 5321 §2.4; the hash is compared without case): still ours. Unicode
    // lowercasing would change a non-ASCII domain itself, which no relay may do.
    assert!(srs.reverse(&l.to_ascii_lowercase(), NOW).is_ok(), "{fwd:?}");
}
