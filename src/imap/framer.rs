//! IMAP command framing, sans-IO: command lines with their literals (RFC 3501 §4.3, §7.5;
//! RFC 7888 LITERAL+), fed in any pieces, whole commands out.
//!
//! A command is one or more lines: a line ending in `{n}` (synchronising) or `{n+}`
//! (non-synchronising) is followed by `n` octets of literal and then the rest of the command
//! (RFC 3501 §4.3). The framer collects a command's lines and literals into one buffer, so
//! that [`imap_codec`] can parse the command whole, and holds that buffer to a limit
//! ([`Limits::max_command`]):
//!
//! - a synchronising literal that fits is announced ([`Frame::Continue`]: the session sends
//!   `+`, RFC 3501 §7.5) and read; one that does not fit is refused before a byte of it is
//!   read ([`Frame::TooBig`] with `read: false`: the client sends nothing more of that command
//!   once it sees the tagged response instead of `+`);
//! - a non-synchronising literal over the limit is read and thrown away with the rest of its
//!   command, which is then refused ([`Frame::TooBig`] with `read: true`), as RFC 7888 §4
//!   allows; one over [`MAX_DISCARD_LITERAL`] is not worth reading and ends the session
//!   ([`Frame::Hopeless`]);
//! - a line longer than what is left of the limit ends the session ([`Frame::Hopeless`]): a
//!   line cannot be skipped without risking reading literal data as commands.
//!
//! APPEND's message literal is the one literal that is not collected: it can be as large as a
//! message may be ([`Limits::max_append`]), so the framer stops at its announcement
//! ([`Frame::AppendStart`]) until the session decides ([`Framer::accept_append`],
//! [`Framer::discard_append`], [`Framer::refuse_append`]), then hands its octets out as they
//! arrive ([`Frame::AppendData`], which the driver writes to a file in the Maildir's `tmp/`)
//! and the rest of the command after it ([`Frame::AppendEnd`]). Which literal is APPEND's
//! message is decided by the grammar, not by guessing: the command so far with an empty
//! literal in its place must parse as a complete APPEND.
//!
//! A bare LF ends a line as CRLF does (as Dovecot accepts it); the collected command always
//! has CRLF, which the codec requires.

use imap_codec::decode::Decoder as _;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::CommandCodec;

/// A non-synchronising literal larger than this is not read to be thrown away: the session
/// ends instead (RFC 7888 §4 allows either).
pub const MAX_DISCARD_LITERAL: u64 = 16 * 1024 * 1024;

/// How much one command may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Octets of one command, its lines and literals together, APPEND's message excluded.
    pub max_command: usize,
    /// Octets of one APPEND message literal.
    pub max_append: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_command: 64 * 1024,
            max_append: 64 * 1024 * 1024,
        }
    }
}

/// What [`Framer::next`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A whole command: its lines (each ending CRLF) with their literals.
    Command(Vec<u8>),
    /// A synchronising literal within the limit was announced: send a continuation request
    /// (`+ ...`), then the client sends it.
    Continue,
    /// A literal over the limit: refuse the command (`tag` as far as it could be read).
    /// `read: false`: a synchronising literal, not read (the client sends no more of the
    /// command); `read: true`: a non-synchronising one, read and discarded with the rest of
    /// its command.
    TooBig {
        /// The command's tag, if its first line had one.
        tag: Option<String>,
        /// Whether the literal was read (non-synchronising) or not (synchronising).
        read: bool,
    },
    /// The input cannot be framed any more (a line over the limit, a huge non-synchronising
    /// literal): say BYE and close.
    Hopeless,
    /// APPEND's message literal was announced: `head` is the command up to and including the
    /// announcement's line (CRLF included), `len` the literal's size, `sync` whether the
    /// client waits for `+`. The framer waits for the session's decision.
    AppendStart {
        /// The command up to the literal, with the `{len}` line end.
        head: Vec<u8>,
        /// The literal's size in octets.
        len: u64,
        /// Synchronising (`{n}`) or not (`{n+}`).
        sync: bool,
    },
    /// Octets of an accepted APPEND message, in order.
    AppendData(Vec<u8>),
    /// APPEND's message is complete (or was discarded); `rest` is the rest of its command
    /// line (CRLF only, for a single APPEND).
    AppendEnd {
        /// The command line after the literal, line end included.
        rest: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a line of the current command.
    Line,
    /// Reading `left` octets of a collected literal.
    Literal { left: u64 },
    /// Discarding a non-synchronising literal, then the rest of its command.
    Discard { left: u64 },
    /// Discarding the rest of a command whose literal was discarded.
    DiscardLine,
    /// Waiting for the session's decision on an APPEND literal.
    AppendDecision { len: u64, sync: bool },
    /// Handing out (or dropping) APPEND data.
    AppendData { left: u64, keep: bool },
    /// Reading the line after APPEND's literal.
    AppendRest,
    /// Hopeless: nothing more is framed.
    Dead,
}

/// The framer (module doc). Feed it input with [`Framer::feed`] and call [`Framer::next`]
/// until it returns `None`.
#[derive(Debug, Clone)]
pub struct Framer {
    limits: Limits,
    state: State,
    input: Vec<u8>,
    /// The command collected so far.
    command: Vec<u8>,
    /// The current line collected so far (without its end).
    line: Vec<u8>,
    /// The tag of the command being discarded.
    discard_tag: Option<String>,
}

impl Framer {
    /// A framer holding commands to `limits`.
    pub fn new(limits: Limits) -> Framer {
        Framer {
            limits,
            state: State::Line,
            input: Vec::new(),
            command: Vec::new(),
            line: Vec::new(),
            discard_tag: None,
        }
    }

    /// Appends bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Octets fed and not yet framed.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Takes the octets fed and not framed yet: what a client pipelined after the last
    /// command framed (mimapd hands it to a system user's child with the rest of the session).
    pub fn take_input(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.input)
    }

    /// Forgets everything fed and collected (STARTTLS: input before the handshake is not
    /// carried over, RFC 3501 §6.2.1).
    pub fn clear(&mut self) {
        self.input.clear();
        self.command.clear();
        self.line.clear();
        if self.state != State::Dead {
            self.state = State::Line;
        }
    }

    /// Whether the framer waits for a decision on an APPEND literal.
    pub fn awaiting_append_decision(&self) -> bool {
        matches!(self.state, State::AppendDecision { .. })
    }

    /// Whether the framer is between commands (nothing of a command collected).
    pub fn between_commands(&self) -> bool {
        self.state == State::Line && self.command.is_empty() && self.line.is_empty()
    }

    /// The session takes APPEND's message: its octets come out as [`Frame::AppendData`].
    pub fn accept_append(&mut self) {
        if let State::AppendDecision { len, .. } = self.state {
            self.state = State::AppendData {
                left: len,
                keep: true,
            };
        }
    }

    /// The session refuses an APPEND whose literal is non-synchronising: its octets are read
    /// and dropped, then [`Frame::AppendEnd`] comes as for an accepted one.
    pub fn discard_append(&mut self) {
        if let State::AppendDecision { len, .. } = self.state {
            self.state = State::AppendData {
                left: len,
                keep: false,
            };
        }
    }

    /// The session refuses an APPEND whose literal is synchronising: the client sends none of
    /// it (it got a tagged response instead of `+`), so framing goes on with the next command.
    pub fn refuse_append(&mut self) {
        if let State::AppendDecision { .. } = self.state {
            self.reset();
        }
    }

    fn reset(&mut self) {
        self.command.clear();
        self.line.clear();
        self.discard_tag = None;
        self.state = State::Line;
    }

    /// The next frame, or `None` when more input is needed (or a decision is awaited).
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.state.clone() {
                State::Dead | State::AppendDecision { .. } => return None,
                State::Line => {
                    let budget = self.limits.max_command.saturating_sub(self.command.len());
                    let (line, bare_lf) = match self.take_line(budget) {
                        Ok(Some(l)) => l,
                        Ok(None) => return None,
                        Err(()) => return Some(self.hopeless()),
                    };
                    let _ = bare_lf;
                    if let Some(frame) = self.line_done(line) {
                        return Some(frame);
                    }
                }
                State::Literal { left } => {
                    if self.input.is_empty() {
                        return None;
                    }
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.input.len());
                    self.command.extend(self.input.drain(..n));
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Line
                    } else {
                        State::Literal { left }
                    };
                }
                State::Discard { left } => {
                    if self.input.is_empty() {
                        return None;
                    }
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.input.len());
                    self.input.drain(..n);
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DiscardLine
                    } else {
                        State::Discard { left }
                    };
                }
                State::DiscardLine => {
                    // The rest of the refused command: its lines may announce more literals,
                    // discarded too (a synchronising one is never answered with `+`, so the
                    // client stops there).
                    let (line, _) = match self.take_line(self.limits.max_command) {
                        Ok(Some(l)) => l,
                        Ok(None) => return None,
                        Err(()) => return Some(self.hopeless()),
                    };
                    match announcement(&line) {
                        Some((len, false)) if len <= MAX_DISCARD_LITERAL => {
                            self.state = State::Discard { left: len };
                        }
                        Some((_, false)) => return Some(self.hopeless()),
                        _ => {
                            let tag = self.discard_tag.take();
                            self.reset();
                            return Some(Frame::TooBig { tag, read: true });
                        }
                    }
                }
                State::AppendData { left, keep } => {
                    if left == 0 {
                        self.state = State::AppendRest;
                        continue;
                    }
                    if self.input.is_empty() {
                        return None;
                    }
                    let n = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.input.len());
                    let chunk: Vec<u8> = self.input.drain(..n).collect();
                    self.state = State::AppendData {
                        left: left - n as u64,
                        keep,
                    };
                    if keep {
                        return Some(Frame::AppendData(chunk));
                    }
                }
                State::AppendRest => {
                    let (line, _) = match self.take_line(self.limits.max_command) {
                        Ok(Some(l)) => l,
                        Ok(None) => return None,
                        Err(()) => return Some(self.hopeless()),
                    };
                    let mut rest = line;
                    rest.extend_from_slice(b"\r\n");
                    let announced = announcement(&rest[..rest.len() - 2]);
                    self.reset();
                    if let Some((len, sync)) = announced {
                        // MULTIAPPEND (RFC 3502) is not offered: the rest is refused, and a
                        // further literal is not read if it is synchronising, else discarded.
                        if sync {
                            return Some(Frame::AppendEnd { rest });
                        }
                        if len > MAX_DISCARD_LITERAL {
                            return Some(self.hopeless());
                        }
                        self.state = State::Discard { left: len };
                        return Some(Frame::AppendEnd { rest });
                    }
                    return Some(Frame::AppendEnd { rest });
                }
            }
        }
    }

    /// The framer has given up.
    fn hopeless(&mut self) -> Frame {
        self.state = State::Dead;
        self.input.clear();
        self.command.clear();
        self.line.clear();
        Frame::Hopeless
    }

    /// Takes one line from the input (without its end) within `budget` octets (line end
    /// included). `Ok(None)`: incomplete; `Err`: over the budget.
    fn take_line(&mut self, budget: usize) -> Result<Option<(Vec<u8>, bool)>, ()> {
        match self.input.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                if self.line.len() + pos + 1 > budget {
                    return Err(());
                }
                let mut line = std::mem::take(&mut self.line);
                line.extend(self.input.drain(..=pos));
                line.pop();
                let bare_lf = line.last() != Some(&b'\r');
                if !bare_lf {
                    line.pop();
                }
                // Collected with CRLF whatever ended it: a bare LF counts as two octets.
                if line.len() + 2 > budget {
                    return Err(());
                }
                Ok(Some((line, bare_lf)))
            }
            None => {
                if self.line.len() + self.input.len() >= budget {
                    return Err(());
                }
                self.line.append(&mut self.input);
                Ok(None)
            }
        }
    }

    /// A line of the current command is complete.
    fn line_done(&mut self, line: Vec<u8>) -> Option<Frame> {
        let announced = announcement(&line);
        let brace = line.iter().rposition(|&b| b == b'{');
        self.command.extend_from_slice(&line);
        self.command.extend_from_slice(b"\r\n");
        let Some((len, sync)) = announced else {
            let command = std::mem::take(&mut self.command);
            self.reset();
            return Some(Frame::Command(command));
        };
        if let Some(brace) = brace {
            if self.is_append_message(brace, &line) {
                self.state = State::AppendDecision { len, sync };
                return Some(Frame::AppendStart {
                    head: std::mem::take(&mut self.command),
                    len,
                    sync,
                });
            }
        }
        let budget = self.limits.max_command.saturating_sub(self.command.len());
        if len > budget as u64 {
            if sync {
                let tag = tag_of(&self.command);
                self.reset();
                return Some(Frame::TooBig { tag, read: false });
            }
            if len > MAX_DISCARD_LITERAL {
                return Some(self.hopeless());
            }
            self.discard_tag = tag_of(&self.command);
            self.command.clear();
            self.state = State::Discard { left: len };
            return None;
        }
        self.state = State::Literal { left: len };
        if sync {
            return Some(Frame::Continue);
        }
        None
    }

    /// Whether the literal announced at `brace` of the last `line` (already in the command)
    /// is APPEND's message: the command with an empty literal in its place parses as APPEND.
    fn is_append_message(&self, brace: usize, line: &[u8]) -> bool {
        let start = self.command.len() - line.len() - 2;
        let mut probe = self.command[..start + brace].to_vec();
        probe.extend_from_slice(b"{0}\r\n\r\n");
        matches!(
            CommandCodec::default().decode(&probe),
            Ok((rest, cmd)) if rest.is_empty() && matches!(cmd.body, CommandBody::Append { .. })
        )
    }
}

/// The literal a line announces at its end: `{n}` (synchronising) or `{n+}`, with its size.
pub fn announcement(line: &[u8]) -> Option<(u64, bool)> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let spec = &inner[open + 1..];
    let (digits, sync) = match spec.strip_suffix(b"+") {
        Some(d) => (d, false),
        None => (spec, true),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
    Some((n, sync))
}

/// The tag of a command (its first word), if it is a valid IMAP tag (RFC 3501 §9 `tag`).
pub fn tag_of(command: &[u8]) -> Option<String> {
    let end = command
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .unwrap_or(command.len());
    let tag = &command[..end];
    let ok = !tag.is_empty()
        && tag.iter().all(|&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        });
    ok.then(|| String::from_utf8_lossy(tag).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Framer {
        Framer::new(Limits {
            max_command: 100,
            max_append: 1000,
        })
    }

    fn all(f: &mut Framer) -> Vec<Frame> {
        std::iter::from_fn(|| f.next_frame()).collect()
    }

    #[test]
    fn lines_and_literals_in_any_pieces() {
        let input = b"a1 NOOP\r\nb LOGIN {3}\r\nbob {2+}\r\npw\r\nc LOGOUT\n";
        for split in 1..input.len() {
            let mut f = small();
            let mut got = Vec::new();
            for piece in input.chunks(split) {
                f.feed(piece);
                got.extend(all(&mut f));
            }
            assert_eq!(
                got,
                vec![
                    Frame::Command(b"a1 NOOP\r\n".to_vec()),
                    Frame::Continue,
                    Frame::Command(b"b LOGIN {3}\r\nbob {2+}\r\npw\r\n".to_vec()),
                    Frame::Command(b"c LOGOUT\r\n".to_vec()),
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn oversized_literals_are_refused_sync_unread_nonsync_discarded() {
        let mut f = small();
        f.feed(b"t1 LOGIN {500}\r\nt2 NOOP\r\n");
        assert_eq!(
            all(&mut f),
            vec![
                Frame::TooBig {
                    tag: Some("t1".into()),
                    read: false
                },
                Frame::Command(b"t2 NOOP\r\n".to_vec())
            ]
        );
        let mut f = small();
        f.feed(b"t1 LOGIN {200+}\r\n");
        f.feed(&[b'x'; 200]);
        f.feed(b" {3+}\r\nabc\r\nt2 NOOP\r\n");
        assert_eq!(
            all(&mut f),
            vec![
                Frame::TooBig {
                    tag: Some("t1".into()),
                    read: true
                },
                Frame::Command(b"t2 NOOP\r\n".to_vec())
            ]
        );
        let mut f = small();
        f.feed(format!("t LOGIN {{{}+}}\r\n", MAX_DISCARD_LITERAL + 1).as_bytes());
        assert_eq!(all(&mut f), vec![Frame::Hopeless]);
        f.feed(b"t NOOP\r\n");
        assert_eq!(all(&mut f), vec![]);
    }

    #[test]
    fn a_line_over_the_limit_is_hopeless() {
        let mut f = small();
        f.feed(&[b'a'; 150]);
        assert_eq!(all(&mut f), vec![Frame::Hopeless]);
        let mut f = small();
        f.feed(&[b'a'; 99]);
        f.feed(b"\r\n");
        assert_eq!(all(&mut f), vec![Frame::Hopeless]);
    }

    #[test]
    fn append_message_literals_are_streamed() {
        let mut f = small();
        f.feed(b"A APPEND {5}\r\nINBOX (\\Seen) {10}\r\n");
        assert_eq!(f.next_frame(), Some(Frame::Continue));
        let start = f.next_frame();
        assert_eq!(
            start,
            Some(Frame::AppendStart {
                head: b"A APPEND {5}\r\nINBOX (\\Seen) {10}\r\n".to_vec(),
                len: 10,
                sync: true
            })
        );
        assert_eq!(f.next_frame(), None);
        f.accept_append();
        f.feed(b"0123");
        assert_eq!(f.next_frame(), Some(Frame::AppendData(b"0123".to_vec())));
        f.feed(b"456789\r\nB NOOP\r\n");
        assert_eq!(
            all(&mut f),
            vec![
                Frame::AppendData(b"456789".to_vec()),
                Frame::AppendEnd {
                    rest: b"\r\n".to_vec()
                },
                Frame::Command(b"B NOOP\r\n".to_vec())
            ]
        );
        // Refused: a synchronising literal is not read, a non-synchronising one dropped.
        let mut f = small();
        f.feed(b"A APPEND nosuch {4}\r\nB NOOP\r\n");
        assert!(matches!(
            f.next_frame(),
            Some(Frame::AppendStart { sync: true, .. })
        ));
        f.refuse_append();
        assert_eq!(all(&mut f), vec![Frame::Command(b"B NOOP\r\n".to_vec())]);
        let mut f = small();
        f.feed(b"A APPEND nosuch {4+}\r\nabcd\r\nB NOOP\r\n");
        assert!(matches!(
            f.next_frame(),
            Some(Frame::AppendStart { sync: false, .. })
        ));
        f.discard_append();
        assert_eq!(
            all(&mut f),
            vec![
                Frame::AppendEnd {
                    rest: b"\r\n".to_vec()
                },
                Frame::Command(b"B NOOP\r\n".to_vec())
            ]
        );
    }

    #[test]
    fn announcements_and_tags() {
        assert_eq!(announcement(b"a LOGIN {12}"), Some((12, true)));
        assert_eq!(announcement(b"a LOGIN {12+}"), Some((12, false)));
        assert_eq!(announcement(b"a LOGIN {}"), None);
        assert_eq!(announcement(b"a LOGIN {1a}"), None);
        assert_eq!(announcement(b"a LOGIN \"{1}\" x"), None);
        assert_eq!(announcement(b"{99999999999999999999}"), None);
        assert_eq!(tag_of(b"a1 NOOP\r\n"), Some("a1".into()));
        assert_eq!(tag_of(b"* NOOP"), None);
        assert_eq!(tag_of(b""), None);
    }
}
