//! Message transfer encoding for RETR and TOP (sans-IO): CRLF line ends and dot-stuffing.
//!
//! RFC 1939 §3: multi-line responses end lines with CRLF and byte-stuff lines starting with ".".
//! Maildir files usually end lines with a bare LF; some have CRLF. Whatever the file has, a
//! bare LF becomes CRLF and an existing CRLF stays, so the octets a client receives (minus the
//! stuffing) are exactly [`crlf_size`] of the file, the size LIST and STAT report (RFC 1939 §11:
//! the size is that of the message as transmitted without stuffing and terminator).

// The CRLF size counter is the Maildir writer's: it computes the `,W=` size the same way.
use crate::maildir::SizeCounter;

/// Streaming encoder of one message body: feed file bytes with [`Encoder::push`], then call
/// [`Encoder::finish`] for the closing `.` line. Chunk boundaries may fall anywhere.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// At the start of a line (nothing of the current line written yet).
    line_start: bool,
    /// The previous byte was a CR (so an LF now completes an existing CRLF).
    prev_cr: bool,
    /// TOP: how many body lines may still be sent; `None` for RETR (everything).
    body_lines_left: Option<u64>,
    /// TOP: still in the header section (a blank line ends it).
    in_header: bool,
    /// The current line is empty so far (to detect the blank line ending the header).
    line_empty: bool,
    /// TOP: the body line limit is reached; the rest of the input is dropped.
    done: bool,
}

impl Encoder {
    /// An encoder for RETR: the whole message.
    pub fn retr() -> Self {
        Self::new(None)
    }

    /// An encoder for TOP: the header, the blank line, and at most `lines` body lines.
    pub fn top(lines: u64) -> Self {
        Self::new(Some(lines))
    }

    fn new(body_lines_left: Option<u64>) -> Self {
        Encoder {
            line_start: true,
            prev_cr: false,
            body_lines_left,
            in_header: true,
            line_empty: true,
            done: false,
        }
    }

    /// Whether TOP has sent all it should: the caller may stop reading the file.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Encodes `input` onto `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 32 + 4);
        let mut i = 0;
        while i < input.len() && !self.done {
            let b = input[i];
            if self.line_start {
                if self.body_lines_left == Some(0) && !self.in_header {
                    self.done = true;
                    break;
                }
                if b == b'.' {
                    out.push(b'.');
                }
                self.line_start = false;
                self.line_empty = true;
            }
            if b == b'\n' {
                if !self.prev_cr {
                    out.push(b'\r');
                }
                out.push(b'\n');
                self.end_line();
                i += 1;
                continue;
            }
            // Fast path: copy a run of ordinary bytes at once.
            let run_end = input[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(input.len(), |p| i + p);
            let run = &input[i..run_end];
            out.extend_from_slice(run);
            // A run of only a CR (CRLF split as "\r" + "\n") keeps the line empty.
            if run != b"\r" {
                self.line_empty = false;
            }
            self.prev_cr = run.last() == Some(&b'\r');
            i = run_end;
        }
    }

    fn end_line(&mut self) {
        self.prev_cr = false;
        self.line_start = true;
        if self.in_header {
            if self.line_empty {
                self.in_header = false;
            }
        } else if let Some(n) = self.body_lines_left.as_mut() {
            *n = n.saturating_sub(1);
        }
        if self.body_lines_left == Some(0) && !self.in_header {
            self.done = true;
        }
    }

    /// Ends the message: completes an unterminated last line and writes the `.` terminator.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.line_start {
            if !self.prev_cr {
                out.push(b'\r');
            }
            out.push(b'\n');
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// The CRLF size of a whole message (see [`SizeCounter`]).
pub fn crlf_size(message: &[u8]) -> u64 {
    let mut c = SizeCounter::default();
    c.push(message);
    c.size()
}

/// Encodes a whole message for RETR (test and fuzz helper; the driver streams).
pub fn encode_retr(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::retr();
    e.push(message, &mut out);
    e.finish(&mut out);
    out
}

/// Encodes a whole message for TOP with `lines` body lines.
pub fn encode_top(message: &[u8], lines: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::top(lines);
    e.push(message, &mut out);
    e.finish(&mut out);
    out
}

/// Reverses [`encode_retr`] the way a client does (test and fuzz helper): strips the
/// terminator and the stuffing. Returns `None` when the terminator is missing.
pub fn decode(wire: &[u8]) -> Option<Vec<u8>> {
    let body = wire.strip_suffix(b".\r\n")?;
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        match line.strip_prefix(b".") {
            Some(rest) => out.extend_from_slice(rest),
            None => out.extend_from_slice(line),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lf_becomes_crlf_and_dots_are_stuffed() {
        let msg = b"Subject: x\n\n.hidden\nbody\n..two\n.\n";
        let wire = encode_retr(msg);
        assert_eq!(
            wire,
            b"Subject: x\r\n\r\n..hidden\r\nbody\r\n...two\r\n..\r\n.\r\n".to_vec()
        );
        let plain = decode(&wire).unwrap();
        assert_eq!(plain.len() as u64, crlf_size(msg));
        assert_eq!(
            plain,
            b"Subject: x\r\n\r\n.hidden\r\nbody\r\n..two\r\n.\r\n".to_vec()
        );
    }

    #[test]
    fn crlf_files_are_kept_and_sized_as_is() {
        let msg = b"A: b\r\n\r\nline\r\n";
        assert_eq!(encode_retr(msg), b"A: b\r\n\r\nline\r\n.\r\n".to_vec());
        assert_eq!(crlf_size(msg), msg.len() as u64);
        assert_eq!(crlf_size(b"a\nb\r\nc\n"), 9);
    }

    #[test]
    fn unterminated_last_line_is_closed() {
        assert_eq!(
            encode_retr(b"A: b\n\nno newline"),
            b"A: b\r\n\r\nno newline\r\n.\r\n"
        );
        assert_eq!(encode_retr(b""), b".\r\n");
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let msg = b"H: v\r\n\r\n.a\r\nb\n.\r\n\r\nlast\r";
        let whole = encode_retr(msg);
        for split in 0..msg.len() {
            let mut out = Vec::new();
            let mut e = Encoder::retr();
            e.push(&msg[..split], &mut out);
            e.push(&msg[split..], &mut out);
            e.finish(&mut out);
            assert_eq!(out, whole, "split at {split}");
            let mut c = SizeCounter::default();
            c.push(&msg[..split]);
            c.push(&msg[split..]);
            assert_eq!(c.size(), crlf_size(msg));
        }
    }

    #[test]
    fn top_sends_header_blank_line_and_n_body_lines() {
        let msg = b"A: 1\nB: 2\n\none\n.two\nthree\n";
        assert_eq!(encode_top(msg, 0), b"A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(
            encode_top(msg, 2),
            b"A: 1\r\nB: 2\r\n\r\none\r\n..two\r\n.\r\n"
        );
        assert_eq!(encode_top(msg, 99), encode_retr(msg));
        let crlf = b"A: 1\r\n\r\nx\r\ny\r\n";
        assert_eq!(encode_top(crlf, 1), b"A: 1\r\n\r\nx\r\n.\r\n");
        // Split CRLF of the blank line across chunks.
        let mut out = Vec::new();
        let mut e = Encoder::top(0);
        e.push(b"A: 1\r\n\r", &mut out);
        e.push(b"\nbody\r\n", &mut out);
        assert!(e.is_done());
        e.finish(&mut out);
        assert_eq!(out, b"A: 1\r\n\r\n.\r\n");
    }
}
