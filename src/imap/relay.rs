//! What the daemon sees of a system user's IMAP session that it relays to the user's child
//! (README "Privileges", [`crate::server::relay`]), sans-IO: the client's bytes go to the child
//! unchanged (the child's session frames and answers them), and [`Commands`] follows their
//! command framing (lines, and `{n}` / `{n+}` literals skipped unread, RFC 3501 §4.3, RFC 7888)
//! only to count the commands that are progress for the session deadline, as the in-process
//! session counts them: every command but NOOP, CAPABILITY, ID, ENABLE and NAMESPACE (and the
//! `DONE` that ends an IDLE, RFC 2177, counts as IDLE's completion does).
//!
//! The count can only fall short, never run ahead of the child's framing: a synchronising
//! literal the child refuses (`NO [TOOBIG]`, never sent by the client) makes the counter wait
//! for octets that are the next commands, which then do not count.

/// Octets of a command's first line kept to find its verb.
const HEAD: usize = 64;
/// Octets of a line's end kept to find a literal announcement (`{` 19 digits `+}`).
const TAIL: usize = 24;

/// Commands that do not move the deadline (module doc).
const NO_PROGRESS: &[&str] = &["NOOP", "CAPABILITY", "ID", "ENABLE", "NAMESPACE"];

/// Counts the client's commands in a relayed session (module doc).
#[derive(Debug, Default, Clone)]
pub struct Commands {
    /// The first octets of the command's first line.
    head: Vec<u8>,
    /// The last octets of the current line.
    tail: Vec<u8>,
    /// Whether the current line is the command's first.
    continued: bool,
    /// Literal octets still to skip.
    literal: u64,
    /// Commands that count, so far.
    count: u64,
}

impl Commands {
    /// A counter at the start of a command.
    pub fn new() -> Commands {
        Commands::default()
    }

    /// The commands that count so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Octets held (a command's verb, a line's end): bounded whatever the input.
    pub fn buffered(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// Follows more of the client's bytes.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.literal > 0 {
                let n = usize::try_from(self.literal)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.literal -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let (part, end) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            bytes = &bytes[part.len() + usize::from(end)..];
            if !self.continued && self.head.len() < HEAD {
                let room = HEAD - self.head.len();
                self.head.extend_from_slice(&part[..part.len().min(room)]);
            }
            self.tail.extend_from_slice(part);
            if self.tail.len() > TAIL {
                self.tail.drain(..self.tail.len() - TAIL);
            }
            if end {
                self.line_end();
            }
        }
    }

    fn line_end(&mut self) {
        let line = self.tail.strip_suffix(b"\r").unwrap_or(&self.tail);
        if let Some((n, _sync)) = super::framer::announcement(line) {
            self.literal = n;
            self.continued = true;
            self.tail.clear();
            return;
        }
        let head = self.head.strip_suffix(b"\r").unwrap_or(&self.head);
        let mut words = head.split(|&b| b == b' ');
        let first = words.next().unwrap_or_default();
        let counts = if first.eq_ignore_ascii_case(b"DONE") {
            true
        } else {
            let verb = words.next().unwrap_or_default();
            !verb.is_empty()
                && !NO_PROGRESS
                    .iter()
                    .any(|v| verb.eq_ignore_ascii_case(v.as_bytes()))
        };
        if counts {
            self.count += 1;
        }
        self.head.clear();
        self.tail.clear();
        self.continued = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(chunks: &[&[u8]]) -> u64 {
        let mut c = Commands::new();
        for ch in chunks {
            c.feed(ch);
        }
        c.count()
    }

    #[test]
    fn commands_count_but_noop_and_the_like_do_not() {
        assert_eq!(
            count(&[b"a NOOP\r\nb CAPABILITY\r\nc id nil\r\nd NAMESPACE\r\ne ENABLE X\r\n"]),
            0
        );
        assert_eq!(count(&[b"a SELECT INBOX\r\nb FETCH 1 FLAGS\n"]), 2);
        // IDLE and its DONE: one command completed, as in process.
        assert_eq!(count(&[b"i IDLE\r\n"]), 1);
        assert_eq!(count(&[b"DONE\r\n"]), 1);
        // A line in pieces, the verb split too.
        assert_eq!(
            count(&[b"a SE", b"LECT INB", b"OX\r", b"\n", b"b NO", b"OP\r\n"]),
            1
        );
        assert_eq!(count(&[b"\r\n", b"lonely\r\n"]), 0);
    }

    #[test]
    fn literals_are_skipped_whatever_they_hold() {
        // The literal holds what looks like commands; only APPEND and the NOOP after count.
        let msg = b"x SELECT a\r\ny FETCH 1 ALL\r\n";
        let mut input = format!("a APPEND INBOX {{{}}}\r\n", msg.len()).into_bytes();
        input.extend_from_slice(msg);
        input.extend_from_slice(b"\r\nb SELECT INBOX\r\nc NOOP\r\n");
        assert_eq!(count(&[&input]), 2);
        for cut in 1..input.len() {
            assert_eq!(count(&[&input[..cut], &input[cut..]]), 2, "cut {cut}");
        }
        // LITERAL+ and a literal in the middle of a command.
        assert_eq!(count(&[b"a LOGIN {3+}\r\nabc {2}\r\nxy\r\nb NOOP\r\n"]), 1);
        // A huge announced literal swallows everything after it.
        assert_eq!(
            count(&[b"a APPEND INBOX {99999999999}\r\nb SELECT x\r\n"]),
            0
        );
    }

    #[test]
    fn long_lines_are_bounded() {
        let mut c = Commands::new();
        c.feed(b"a SEARCH ");
        for _ in 0..10_000 {
            c.feed(b"OR ALL ALL ");
        }
        assert!(c.head.len() <= HEAD && c.tail.len() <= TAIL);
        c.feed(b"{5}\r\nhello\r\nb NOOP\r\n");
        assert_eq!(c.count(), 1);
    }
}
