//! A content filter's stdout and stderr of any shape (mrelayd's `[mrelayd.filter.NAME]`):
//! the header block check and the reply text never panic, and what they accept holds their
//! promises.

use crate::relay::filter;

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    if let Ok(block) = filter::header_block(data) {
        assert!(block.is_empty() || block.ends_with(b"\r\n"));
        // Every line is CRLF-ended, with no bare CR or LF inside, and not empty.
        for line in block.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let line = line.strip_suffix(b"\r").expect("CRLF line end");
            assert!(!line.is_empty() && !line.contains(&b'\r'));
            assert!(line.len() <= filter::MAX_LINE);
        }
    }
    if let Some(r) = filter::reason(data) {
        assert!(r.len() <= filter::MAX_REASON);
        assert!(r.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }
}
