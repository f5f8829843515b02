//! Hop counting for mail-loop detection (RFC 5321 §6.3): the `Received:` (and `Delivered-To:`)
//! fields in the header section of a message, counted as the message streams past in pieces of
//! any size, so the count is exact whatever the chunk boundaries.
//!
//! The header section ends at the first empty line (RFC 5322 §2.1); fields after it (in the body,
//! in an attached message) are not counted. A field name is matched without case and may be
//! followed by blanks before the colon (RFC 5322 §4.5 obsolete syntax, still seen); a folded
//! continuation line (starting with SP or HTAB, §2.2.3) belongs to the field before it and is
//! never a new field.

/// Default hop limit: more `Received:` headers than this (ours included) is a loop. 50 is
/// Postfix's `hopcount_limit`.
pub const DEFAULT_MAX_HOPS: usize = 50;

const RECEIVED: &[u8] = b"received";
const DELIVERED_TO: &[u8] = b"delivered-to";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the first byte of a line of the header section.
    LineStart,
    /// The line started with CR: an LF now ends the header section.
    EmptyLine,
    /// Inside a field name: `matched` bytes of it so far, with which names it can still be.
    Name {
        matched: usize,
        received: bool,
        delivered: bool,
    },
    /// After a whole `received` / `delivered-to` name: blanks, then the colon.
    AfterName { received: bool },
    /// The rest of a line that is not (or no longer) interesting.
    Skip,
    /// The body: nothing more is counted.
    Body,
}

/// A streaming counter of `Received:` and `Delivered-To:` fields in a header section.
#[derive(Debug, Clone)]
pub struct HopCounter {
    state: State,
    received: usize,
    delivered_to: usize,
}

impl Default for HopCounter {
    fn default() -> Self {
        HopCounter::new()
    }
}

impl HopCounter {
    /// A counter at the start of a message.
    pub fn new() -> HopCounter {
        HopCounter {
            state: State::LineStart,
            received: 0,
            delivered_to: 0,
        }
    }

    /// `Received:` fields seen so far.
    pub fn received(&self) -> usize {
        self.received
    }

    /// `Delivered-To:` fields seen so far.
    pub fn delivered_to(&self) -> usize {
        self.delivered_to
    }

    /// Whether the header section has ended (later bytes cannot change the counts).
    pub fn in_body(&self) -> bool {
        self.state == State::Body
    }

    /// Counts the fields in `bytes`, the next piece of the message. Line ends may be CRLF or LF.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.state == State::Body {
                return;
            }
            self.state = self.step(b);
        }
    }

    fn step(&mut self, b: u8) -> State {
        let lower = b.to_ascii_lowercase();
        match self.state {
            State::Body => State::Body,
            _ if b == b'\n' => {
                if matches!(self.state, State::LineStart | State::EmptyLine) {
                    State::Body
                } else {
                    State::LineStart
                }
            }
            State::LineStart => match b {
                b'\r' => State::EmptyLine,
                // A continuation line of the field before (RFC 5322 §2.2.3).
                b' ' | b'\t' => State::Skip,
                _ => self.name(0, true, true, lower),
            },
            State::EmptyLine => State::Skip,
            State::Name {
                matched,
                received,
                delivered,
            } => self.name(matched, received, delivered, lower),
            State::AfterName { received } => match b {
                b' ' | b'\t' => State::AfterName { received },
                b':' => {
                    if received {
                        self.received += 1;
                    } else {
                        self.delivered_to += 1;
                    }
                    State::Skip
                }
                _ => State::Skip,
            },
            State::Skip => State::Skip,
        }
    }

    /// One more byte of a field name, `matched` bytes matched before it.
    fn name(&self, matched: usize, received: bool, delivered: bool, lower: u8) -> State {
        let received = received && RECEIVED.get(matched) == Some(&lower);
        let delivered = delivered && DELIVERED_TO.get(matched) == Some(&lower);
        let matched = matched + 1;
        if received && matched == RECEIVED.len() {
            State::AfterName { received: true }
        } else if delivered && matched == DELIVERED_TO.len() {
            State::AfterName { received: false }
        } else if received || delivered {
            State::Name {
                matched,
                received,
                delivered,
            }
        } else {
            State::Skip
        }
    }
}

/// `(Received:, Delivered-To:)` counts of a whole message.
pub fn count(message: &[u8]) -> (usize, usize) {
    let mut c = HopCounter::new();
    c.feed(message);
    (c.received(), c.delivered_to())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_header_fields_only() {
        let msg = b"Received: a\r\nreceived : b\r\n\tfolded Received: no\r\nRECEIVED:c\r\nReceivedX: no\r\nX-Received: no\r\nDelivered-To: d\r\ndelivered-to:e\r\nSubject: Received: no\r\n\r\nReceived: body\r\n";
        assert_eq!(count(msg), (3, 2));
        // LF line ends (a Maildir copy) count the same; a header-only message too.
        assert_eq!(count(b"Received: a\nReceived: b\n"), (2, 0));
        assert_eq!(count(b"Subject: x\n\nReceived: a\n"), (0, 0));
        assert_eq!(count(b"\r\nReceived: a\r\n"), (0, 0));
        assert_eq!(count(b"Received"), (0, 0));
        assert_eq!(
            count(b"Receive: x\r\nReceivedd: x\r\nDelivered: x\r\n"),
            (0, 0)
        );
    }

    #[test]
    fn exact_at_every_split() {
        let msg = b"Received: a\r\n\tReceived: folded\r\nReceived\t: b\r\nDelivered-To: x\r\nSubject: s\r\n\r\nReceived: body\r\n";
        let want = count(msg);
        assert_eq!(want, (2, 1));
        for i in 0..=msg.len() {
            for j in i..=msg.len() {
                let mut c = HopCounter::new();
                c.feed(&msg[..i]);
                c.feed(&msg[i..j]);
                c.feed(&msg[j..]);
                assert_eq!((c.received(), c.delivered_to()), want, "split {i} {j}");
            }
        }
    }
}
