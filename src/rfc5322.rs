//! The one home for RFC 5322 message byte handling: where the header section ends, LF → CRLF,
//! and SMTP dot-stuffing.
//!
//! The rules (one set, used by every caller):
//! - **Lines** end at LF; a CR directly before that LF belongs to the line end (RFC 5322 §2.1:
//!   lines end in CRLF; bare LF is accepted because local programs write it). A lone CR (not
//!   followed by LF) does not end a line when *reading* (RFC 5322 §2.3 forbids it in a message;
//!   treating it as text is what Postfix's `cleanup` and Dovecot do).
//! - **The header section ends** at the first empty line (RFC 5322 §2.1: "header fields ... followed
//!   by an empty line"): a line end (CRLF or LF) at the start of a line. A line of only white
//!   space is not empty (it is an obs-FWS continuation); a lone CR at the very end is not a
//!   line. Without an empty line the whole message is header.
//! - **On the wire** every line end becomes CRLF (RFC 5321 §2.3.8: bare CR and bare LF must not
//!   be sent), a lone CR too (it cannot be sent as it is, and dropping it would change the
//!   text).
//! - **Dot-stuffing** (RFC 5321 §4.5.2): a line that starts with `.` gets another `.` before it,
//!   so a line that is only `.` cannot end the DATA early.

/// Where the header section of `message` ends (see the module doc for the rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderEnd {
    /// Length of the header section: up to and including the line end of the last header line,
    /// before the empty line.
    pub header: usize,
    /// Where the body starts: after the empty line (`header` plus its CRLF or LF).
    pub body: usize,
}

/// Where the header section of `message` ends; both offsets are `message.len()` when there is no
/// empty line.
pub fn header_end(message: &[u8]) -> HeaderEnd {
    let mut start = 0;
    while start < message.len() {
        let rest = &message[start..];
        let blank = if rest.starts_with(b"\r\n") {
            2
        } else if rest.starts_with(b"\n") {
            1
        } else {
            0
        };
        if blank > 0 {
            return HeaderEnd {
                header: start,
                body: start + blank,
            };
        }
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => start += i + 1,
            None => break,
        }
    }
    HeaderEnd {
        header: message.len(),
        body: message.len(),
    }
}

/// `data` with every line end as CRLF: LF and lone CR become CRLF, CRLF stays.
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 2);
    crlf_into(data, false, &mut out);
    out
}

/// The message as SMTP DATA content (RFC 5321 §4.5.2): line ends as in [`to_crlf`], a line
/// starting with `.` gets another `.`, the last line is terminated, and the `.CRLF` end marker
/// is appended.
pub fn data_bytes(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 5);
    let at_line_start = crlf_into(message, true, &mut out);
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// Appends `data` to `out` with CRLF line ends, dot-stuffed when `stuff`. Returns whether the
/// output ends at a line start (empty input, or a line end last).
fn crlf_into(data: &[u8], stuff: bool, out: &mut Vec<u8>) -> bool {
    let mut at_line_start = true;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b @ (b'\r' | b'\n') => {
                out.extend_from_slice(b"\r\n");
                if b == b'\r' && data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                at_line_start = true;
            }
            b => {
                if stuff && at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = false;
            }
        }
        i += 1;
    }
    at_line_start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn he(m: &[u8]) -> (usize, usize) {
        let e = header_end(m);
        (e.header, e.body)
    }

    #[test]
    fn the_header_section_ends_at_the_first_empty_line() {
        assert_eq!(he(b""), (0, 0));
        assert_eq!(he(b"\r\nbody"), (0, 2));
        assert_eq!(he(b"\nbody"), (0, 1));
        assert_eq!(he(b"A: b\r\n\r\nbody"), (6, 8));
        assert_eq!(he(b"A: b\n\nbody"), (5, 6));
        assert_eq!(he(b"A: b\r\n\nbody"), (6, 7), "mixed line ends");
        // no empty line: all header
        assert_eq!(he(b"A: b\nB: c"), (9, 9));
        assert_eq!(he(b"A: b\r\n"), (6, 6));
        // a line of white space is not empty
        assert_eq!(he(b"A: b\r\n \r\nx"), (10, 10));
        // a lone CR neither ends a line nor makes one empty
        assert_eq!(he(b"A: b\r\rB: c\r\n\r\nx"), (12, 14));
        assert_eq!(he(b"A: b\n\r"), (6, 6));
        assert_eq!(he(b"A: b\n\rx\n\ny"), (8, 9));
    }

    #[test]
    fn line_ends_become_crlf() {
        assert_eq!(to_crlf(b"a\nb\r\nc\rd\r"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(to_crlf(b""), b"");
        assert_eq!(to_crlf(b"\r\r\n\n"), b"\r\n\r\n\r\n");
        assert_eq!(to_crlf(b".x\n"), b".x\r\n", "no stuffing outside DATA");
    }

    #[test]
    fn data_is_dot_stuffed_and_terminated() {
        assert_eq!(
            data_bytes(b"a\n.b\r\n..c\rd"),
            b"a\r\n..b\r\n...c\r\nd\r\n.\r\n"
        );
        assert_eq!(data_bytes(b""), b".\r\n");
        assert_eq!(
            data_bytes(b".\n"),
            b"..\r\n.\r\n",
            "a line that is only a dot"
        );
        assert_eq!(data_bytes(b"."), b"..\r\n.\r\n");
        assert_eq!(data_bytes(b"x\r\n"), b"x\r\n.\r\n");
        assert_eq!(data_bytes(b"x.\r\n.\r\n"), b"x.\r\n..\r\n.\r\n");
        assert_eq!(
            data_bytes(b"a\r.b"),
            b"a\r\n..b\r\n.\r\n",
            "after a lone CR"
        );
    }
}
