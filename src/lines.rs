//! Line framing of the line protocols (SMTP, POP3, later IMAP), sans-IO: input goes in in any
//! pieces, whole lines come out with how they ended, over-long lines are discarded up to their
//! end (RFC 5321 §4.5.3.1.4 lets a server refuse them; it must still find the next command).
//! The server layer's `Connection` and the protocol sessions share it.

/// A line over its limit is read and thrown away up to its end; past this many bytes without a
/// line end the client is not speaking a line protocol and reading fails instead.
pub const MAX_DISCARD: usize = 1024 * 1024;

/// How a complete line ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// CR LF, the only line end the mail protocols allow (RFC 5321 §2.3.8).
    CrLf,
    /// A bare LF. Protocols decide whether to tolerate it (SMTP DATA must not: smuggling).
    Lf,
}

/// One line of input, as [`LineFramer`] and `server::Connection::read_line` return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A whole line; `text` excludes the line end. A CR inside `text` is a bare CR.
    Complete {
        /// The line's bytes without the terminating CRLF or LF.
        text: Vec<u8>,
        /// How the line ended.
        end: LineEnd,
    },
    /// The line was longer than the limit; it has been read and discarded up to its end, so the
    /// next read starts at the next line.
    TooLong,
    /// The peer closed the connection (any partial last line is dropped).
    Eof,
}

/// What [`LineFramer::next`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// A complete line or [`Line::TooLong`] (never [`Line::Eof`]: end of input is the
    /// caller's to see).
    Line(Line),
    /// More than [`MAX_DISCARD`] bytes without a line end: not a line protocol.
    NoLineEnd,
}

/// Sans-IO line framing (behind `server::Connection::read_line` and the protocol sessions): give it the unread input, it says how
/// many bytes it used and whether a line is complete. It remembers only whether it is in the
/// middle of discarding an over-long line, so it can be fed input in any pieces (and fuzzed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineFramer {
    discarding: Option<usize>,
}

impl LineFramer {
    /// Looks for the next line in `avail` with limit `max_len` (including the line end).
    /// Returns the result, if any, and how many bytes of `avail` were used (the caller drops
    /// them). `None` means: read more input and call again with what is left.
    pub fn next(&mut self, avail: &[u8], max_len: usize) -> (Option<Framed>, usize) {
        if let Some(pos) = avail.iter().position(|&b| b == b'\n') {
            let len = pos + 1;
            if self.discarding.take().is_some() || len > max_len {
                return (Some(Framed::Line(Line::TooLong)), len);
            }
            let (text, end) = match avail[..pos].strip_suffix(b"\r") {
                Some(t) => (t.to_vec(), LineEnd::CrLf),
                None => (avail[..pos].to_vec(), LineEnd::Lf),
            };
            return (Some(Framed::Line(Line::Complete { text, end })), len);
        }
        let n = avail.len();
        if let Some(discarded) = self.discarding {
            let total = discarded.saturating_add(n);
            if total > MAX_DISCARD {
                self.discarding = None;
                return (Some(Framed::NoLineEnd), n);
            }
            self.discarding = Some(total);
            return (None, n);
        }
        if n >= max_len {
            // The line end, when it comes, makes this line longer than allowed.
            self.discarding = Some(n);
            return (None, n);
        }
        (None, 0)
    }
}

/// Once this much input has been consumed, [`Input::feed`] moves the unread rest to the front.
const COMPACT_AFTER: usize = 64 * 1024;

/// A sans-IO session's input: the bytes fed so far and how far the session has read them.
/// Sessions index `bytes[pos..]` directly (the SMTP DATA scanner borrows it beside other
/// fields); `feed` reclaims consumed space so a long session does not grow the buffer.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Bytes fed and not yet reclaimed.
    pub bytes: Vec<u8>,
    /// How many of `bytes` the session has used.
    pub pos: usize,
}

impl Input {
    /// Appends bytes read from the peer, first dropping what has been used: all of it when
    /// everything was read, else once more than [`COMPACT_AFTER`] bytes were used.
    pub fn feed(&mut self, more: &[u8]) {
        if self.pos > 0 && self.pos == self.bytes.len() {
            self.clear();
        } else if self.pos > COMPACT_AFTER {
            self.bytes.drain(..self.pos);
            self.pos = 0;
        }
        self.bytes.extend_from_slice(more);
    }

    /// The bytes not yet used.
    pub fn unread(&self) -> &[u8] {
        &self.bytes[self.pos..]
    }

    /// Forgets all input, read or not (e.g. what came before STARTTLS: RFC 3207 §4.2, RFC 2595 §4).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.pos = 0;
    }
}
