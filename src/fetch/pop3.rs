//! The POP3 client protocol of mfetch (RFC 1939, CAPA RFC 2449, STLS RFC 2595, SASL RFC 5034,
//! response codes RFC 2449 §8 / RFC 3206), sans-IO: [`Reader`] is fed the server's bytes and
//! yields one [`Response`] per command in the order the commands were sent, so a caller can
//! pipeline (RFC 2449 §6.6) by queueing several expectations before reading; the command
//! builders return the bytes to send. The driver that runs it over a connection is
//! [`super::pop3_fetch`].
//!
//! Hostile servers (fetchmail's CVE history): a status or list line longer than [`MAX_LINE`]
//! (RFC 1939 §3 allows 512 octets; a 100 KB UIDL line is an attack) is an error, read and
//! dropped as it comes, never kept; a message body is bounded by the caller's size limit, not per line, since real messages
//! carry long lines. Message bodies are dot-unstuffed (RFC 1939 §3) and their CRLF line ends
//! turned into LF; nothing else in them changes.

use std::collections::VecDeque;
use std::fmt;

use crate::lines::{Framed, Input, Line, LineFramer};

/// Longest status or list line accepted, CRLF included.
pub const MAX_LINE: usize = 8192;

/// A status line: `+OK text`, `-ERR text`, or a SASL continuation `+ data` (RFC 5034 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `+OK` (or a continuation).
    pub ok: bool,
    /// `+ ` continuation of a SASL exchange.
    pub continuation: bool,
    /// The text after the status indicator.
    pub text: String,
}

impl Status {
    /// The RFC 2449 §8 response code in brackets at the start of the text (`IN-USE`,
    /// `LOGIN-DELAY`, `SYS/TEMP`, `SYS/PERM`, `AUTH`), upper case.
    pub fn code(&self) -> Option<String> {
        let rest = self.text.strip_prefix('[')?;
        let end = rest.find(']')?;
        Some(rest[..end].to_ascii_uppercase())
    }

    /// Whether a negative answer says "try later" (RFC 2449 §8.1.1 IN-USE and LOGIN-DELAY,
    /// RFC 3206 SYS/TEMP).
    pub fn is_temporary(&self) -> bool {
        matches!(
            self.code().as_deref(),
            Some("IN-USE" | "LOGIN-DELAY" | "SYS/TEMP")
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ind = match (self.ok, self.continuation) {
            (_, true) => "+",
            (true, false) => "+OK",
            (false, false) => "-ERR",
        };
        write!(f, "{ind} {}", self.text)
    }
}

/// What the next response to a command looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One status line (USER, PASS, DELE, QUIT, STLS, the greeting, SASL steps).
    Status,
    /// A status line and, after `+OK`, lines up to `.` (CAPA, UIDL, LIST), dot-unstuffed.
    Lines,
    /// A status line and, after `+OK`, a message up to `.` (RETR, TOP), dot-unstuffed with
    /// LF line ends, at most this many bytes.
    Message(usize),
}

/// One complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A status line alone (also the answer to [`Expect::Lines`] or [`Expect::Message`] when
    /// it is `-ERR`).
    Status(Status),
    /// `+OK` and its lines (without line ends).
    Lines(Status, Vec<String>),
    /// `+OK` and the message (LF line ends, dot-unstuffed).
    Message(Status, Vec<u8>),
}

impl Response {
    /// The status line.
    pub fn status(&self) -> &Status {
        match self {
            Response::Status(s) | Response::Lines(s, _) | Response::Message(s, _) => s,
        }
    }
}

/// Why the server's bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// A status or list line longer than [`MAX_LINE`].
    LineTooLong,
    /// A message larger than the caller's limit.
    MessageTooLarge(usize),
    /// A line that is not `+OK`, `-ERR` or `+ ` where a status was due.
    BadStatus(String),
    /// Bytes arrived with no command waiting for them.
    Unexpected,
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::LineTooLong => write!(f, "server sent a line over {MAX_LINE} bytes"),
            ProtoError::MessageTooLarge(n) => write!(f, "message larger than {n} bytes"),
            ProtoError::BadStatus(l) => write!(f, "not a POP3 status line: {l:?}"),
            ProtoError::Unexpected => write!(f, "server sent data no command asked for"),
        }
    }
}

impl std::error::Error for ProtoError {}

/// Where the reader is inside the current response.
#[derive(Debug)]
enum Part {
    /// Waiting for the status line.
    Status,
    /// After `+OK` of a multi-line response: lines so far.
    Lines(Status, Vec<String>),
    /// After `+OK` of a message: bytes so far, the limit.
    Message(Status, Vec<u8>, usize),
}

/// The sans-IO response reader (module doc), framing lines with the one framer
/// ([`crate::lines`]).
#[derive(Debug)]
pub struct Reader {
    input: Input,
    framer: LineFramer,
    expect: VecDeque<Expect>,
    part: Part,
}

impl Default for Reader {
    fn default() -> Reader {
        Reader::new()
    }
}

fn parse_status(line: &[u8]) -> Result<Status, ProtoError> {
    let text = String::from_utf8_lossy(line);
    let (ok, cont, rest) = if let Some(r) = text.strip_prefix("+OK") {
        (true, false, r)
    } else if let Some(r) = text.strip_prefix("-ERR") {
        (false, false, r)
    } else if let Some(r) = text.strip_prefix('+') {
        (true, true, r)
    } else {
        return Err(ProtoError::BadStatus(text.chars().take(80).collect()));
    };
    if !(cont || rest.is_empty() || rest.starts_with(' ')) {
        return Err(ProtoError::BadStatus(text.chars().take(80).collect()));
    }
    Ok(Status {
        ok,
        continuation: cont,
        text: rest.strip_prefix(' ').unwrap_or(rest).to_string(),
    })
}

impl Reader {
    /// A reader expecting the greeting (a status line).
    pub fn new() -> Reader {
        let mut r = Reader::after_tls();
        r.expect(Expect::Status);
        r
    }

    /// A reader with nothing due yet: the session after STLS (RFC 2595 §4 discards what came
    /// before).
    pub fn after_tls() -> Reader {
        Reader {
            input: Input::default(),
            framer: LineFramer::default(),
            expect: VecDeque::new(),
            part: Part::Status,
        }
    }

    /// Queues the expectation for one more command sent.
    pub fn expect(&mut self, e: Expect) {
        self.expect.push_back(e);
    }

    /// How many responses are still due.
    pub fn pending(&self) -> usize {
        self.expect.len()
    }

    /// Bytes received and not yet consumed (must be none right after `STLS`'s `+OK`: RFC 2595
    /// §4, anything there came in clear and could be injected).
    pub fn buffered(&self) -> usize {
        self.input.unread().len()
    }

    /// Adds bytes from the server.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.feed(bytes);
    }

    /// The next line within `max` bytes (line end included); `Ok(None)`: more input needed.
    fn line(&mut self, max: usize, too_long: ProtoError) -> Result<Option<Vec<u8>>, ProtoError> {
        let (framed, used) = self.framer.next(self.input.unread(), max);
        self.input.pos += used;
        match framed {
            None => Ok(None),
            Some(Framed::Line(Line::Complete { text, .. })) => Ok(Some(text)),
            Some(_) => Err(too_long),
        }
    }

    /// The next complete response, `Ok(None)` when more bytes are needed.
    pub fn response(&mut self) -> Result<Option<Response>, ProtoError> {
        loop {
            let Some(&expect) = self.expect.front() else {
                return if self.buffered() == 0 {
                    Ok(None)
                } else {
                    Err(ProtoError::Unexpected)
                };
            };
            let max = match &self.part {
                Part::Message(_, body, max) => max.saturating_sub(body.len()) + 3,
                _ => MAX_LINE,
            };
            let too_long = match &self.part {
                Part::Message(_, _, max) => ProtoError::MessageTooLarge(*max),
                _ => ProtoError::LineTooLong,
            };
            let Some(line) = self.line(max, too_long)? else {
                return Ok(None);
            };
            let done = line == b".";
            match &mut self.part {
                Part::Status => {
                    let status = parse_status(&line)?;
                    match expect {
                        Expect::Lines if status.ok && !status.continuation => {
                            self.part = Part::Lines(status, Vec::new());
                            continue;
                        }
                        Expect::Message(max) if status.ok && !status.continuation => {
                            self.part = Part::Message(status, Vec::new(), max);
                            continue;
                        }
                        _ => {
                            self.expect.pop_front();
                            return Ok(Some(Response::Status(status)));
                        }
                    }
                }
                Part::Lines(_, lines) if !done => {
                    let line = line.strip_prefix(b".").unwrap_or(&line);
                    lines.push(String::from_utf8_lossy(line).into_owned());
                    continue;
                }
                Part::Message(_, body, max) if !done => {
                    let line = line.strip_prefix(b".").unwrap_or(&line);
                    if body.len() + line.len() + 1 > *max {
                        return Err(ProtoError::MessageTooLarge(*max));
                    }
                    // CRLF becomes LF; a bare LF stays one (RFC 1939 says CRLF, servers
                    // differ).
                    body.extend_from_slice(line);
                    body.push(b'\n');
                    continue;
                }
                _ => {}
            }
            self.expect.pop_front();
            return Ok(Some(
                match std::mem::replace(&mut self.part, Part::Status) {
                    Part::Lines(status, lines) => Response::Lines(status, lines),
                    Part::Message(status, body, _) => Response::Message(status, body),
                    Part::Status => unreachable!("a status line returned above"),
                },
            ));
        }
    }
}

/// What the server's CAPA lists (RFC 2449 §5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// CAPA answered at all.
    pub known: bool,
    /// STLS (RFC 2595 §4).
    pub stls: bool,
    /// UIDL.
    pub uidl: bool,
    /// TOP.
    pub top: bool,
    /// PIPELINING.
    pub pipelining: bool,
    /// USER (USER/PASS offered).
    pub user: bool,
    /// SASL mechanisms, upper case.
    pub sasl: Vec<String>,
}

impl Capabilities {
    /// From CAPA's lines.
    pub fn parse(lines: &[String]) -> Capabilities {
        let mut c = Capabilities {
            known: true,
            ..Capabilities::default()
        };
        for line in lines {
            let mut words = line.split_ascii_whitespace();
            match words.next().map(str::to_ascii_uppercase).as_deref() {
                Some("STLS") => c.stls = true,
                Some("UIDL") => c.uidl = true,
                Some("TOP") => c.top = true,
                Some("PIPELINING") => c.pipelining = true,
                Some("USER") => c.user = true,
                Some("SASL") => c.sasl = words.map(str::to_ascii_uppercase).collect(),
                _ => {}
            }
        }
        c
    }
}

/// `n value` lines of UIDL or LIST (RFC 1939 §7, §5): (message number, value). A line that
/// does not parse is an error naming it.
pub fn parse_numbered(lines: &[String]) -> Result<Vec<(u32, String)>, String> {
    lines
        .iter()
        .map(|l| {
            let mut w = l.split_ascii_whitespace();
            let n = w.next().and_then(|n| n.parse::<u32>().ok());
            match (n, w.next()) {
                (Some(n), Some(v)) if n > 0 => Ok((n, v.to_string())),
                _ => Err(format!(
                    "bad listing line {:?}",
                    l.chars().take(80).collect::<String>()
                )),
            }
        })
        .collect()
}

/// The APOP timestamp of a greeting (RFC 1939 §7: `<...>` with an `@`).
pub fn apop_timestamp(greeting: &str) -> Option<&str> {
    let start = greeting.find('<')?;
    let end = start + greeting[start..].find('>')?;
    let stamp = &greeting[start..=end];
    stamp.contains('@').then_some(stamp)
}

/// `APOP user digest` (RFC 1939 §7: MD5 of the timestamp and the password, lowercase hex).
pub fn apop_command(user: &str, timestamp: &str, password: &str) -> Vec<u8> {
    use md5::Digest;
    let digest = md5::Md5::digest(format!("{timestamp}{password}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("APOP {user} {hex}\r\n").into_bytes()
}

/// A command line with CRLF; `arg` must not hold CR or LF (the caller's values are checked
/// before: user names come from the configuration).
pub fn command(verb: &str, arg: Option<&str>) -> Vec<u8> {
    match arg {
        Some(a) => format!("{verb} {a}\r\n").into_bytes(),
        None => format!("{verb}\r\n").into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    // The full path: `super` would be `fetch` to the layer check, a layer above.
    use crate::fetch::pop3::*;

    fn feed(r: &mut Reader, bytes: &[u8]) -> Vec<Response> {
        r.push(bytes);
        let mut out = Vec::new();
        while let Some(x) = r.response().unwrap() {
            out.push(x);
        }
        out
    }

    #[test]
    fn greeting_lines_and_messages_in_pieces() {
        let mut r = Reader::new();
        r.expect(Expect::Lines);
        r.expect(Expect::Message(1000));
        r.expect(Expect::Message(1000));
        let all = b"+OK ready <1.2@x>\r\n+OK\r\nUIDL\r\n..dots\r\n.\r\n+OK 12 octets\r\nA: b\r\n\r\n..x\r\n.\r\n-ERR no such message\r\n";
        let mut got = Vec::new();
        for b in all.chunks(3) {
            got.extend(feed(&mut r, b));
        }
        assert_eq!(got.len(), 4);
        assert_eq!(apop_timestamp(&got[0].status().text), Some("<1.2@x>"));
        assert_eq!(
            got[1],
            Response::Lines(
                Status {
                    ok: true,
                    continuation: false,
                    text: String::new()
                },
                vec!["UIDL".into(), ".dots".into()]
            )
        );
        match &got[2] {
            Response::Message(_, body) => assert_eq!(body, b"A: b\n\n.x\n"),
            other => panic!("{other:?}"),
        }
        assert!(!got[3].status().ok);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn long_lines_and_big_messages_are_refused() {
        let mut r = Reader::new();
        r.push(&vec![b'+'; 100 * 1024]);
        // Read and dropped as it comes (never kept), refused at its end.
        assert_eq!(r.response(), Ok(None));
        assert_eq!(r.buffered(), 0);
        r.push(b"\r\n");
        assert_eq!(r.response(), Err(ProtoError::LineTooLong));
        let mut r = Reader::new();
        r.expect(Expect::Lines);
        r.push(b"+OK hi\r\n+OK\r\n1 ");
        r.push(&vec![b'a'; 100 * 1024]);
        r.push(b"\r\n.\r\n");
        assert!(matches!(r.response(), Ok(Some(Response::Status(_)))));
        assert_eq!(r.response(), Err(ProtoError::LineTooLong));
        let mut r = Reader::new();
        r.expect(Expect::Message(10));
        r.push(b"+OK\r\n+OK\r\n0123456789abc\r\n.\r\n");
        assert!(r.response().unwrap().is_some());
        assert_eq!(r.response(), Err(ProtoError::MessageTooLarge(10)));
    }

    #[test]
    fn status_codes_and_bad_lines() {
        let s = parse_status(b"-ERR [IN-USE] locked").unwrap();
        assert!(s.is_temporary());
        assert!(!parse_status(b"-ERR [AUTH] bad").unwrap().is_temporary());
        assert!(parse_status(b"* OK imap").is_err());
        assert!(parse_status(b"+OKAY").is_err());
        let mut r = Reader::new();
        r.push(b"+OK hi\r\nextra\r\n");
        assert!(r.response().unwrap().is_some());
        assert_eq!(r.response(), Err(ProtoError::Unexpected));
    }

    #[test]
    fn capa_uidl_and_apop() {
        let c = Capabilities::parse(&[
            "TOP".into(),
            "UIDL".into(),
            "sasl plain login".into(),
            "PIPELINING".into(),
            "STLS".into(),
        ]);
        assert!(c.top && c.uidl && c.pipelining && c.stls && !c.user);
        assert_eq!(c.sasl, ["PLAIN", "LOGIN"]);
        assert_eq!(
            parse_numbered(&["1 abc".into(), "2 def".into()]).unwrap(),
            [(1, "abc".into()), (2, "def".into())]
        );
        assert!(parse_numbered(&["x abc".into()]).is_err());
        // RFC 1939 §7's example.
        assert_eq!(
            apop_command("mrose", "<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"),
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n"
        );
        assert_eq!(apop_timestamp("+OK POP3 ready"), None);
    }
}
