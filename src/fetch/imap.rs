//! The IMAP client protocol of mfetch (IMAP4rev1, RFC 3501; UIDPLUS RFC 4315, MOVE RFC 6851,
//! SASL-IR RFC 4959), sans-IO: a [`Reader`] is fed the server's bytes and yields [`Event`]s;
//! the command builders return the bytes to send. The driver that runs it over a connection
//! is [`super::imap_fetch`].
//!
//! A hand-written response reader rather than imap-codec's response decoder: the decoder
//! wants a whole response in memory, and a `BODY[]` literal (RFC 3501 §7.4.2) is a whole
//! message, up to [`super::MAX_MESSAGE`]. Here a FETCH response whose literal is `BODY[]` is
//! streamed: [`Event::BodyStart`], then [`Event::BodyData`] pieces as they arrive (CRLF turned
//! into LF, a CR at the end of one piece held until the next shows what follows it), then
//! [`Event::BodyEnd`] once the rest of the response line is read. Other literals (a mailbox
//! name, a header field fetch) are small and kept with their line ([`Untagged::literals`]).
//! `SEARCH` results (RFC 3501 §7.2.5) are streamed too ([`Event::Search`]): a large mailbox's
//! UID list is one line far longer than any other.
//!
//! Hostile servers (fetchmail's CVE history): any other response line, literals included,
//! longer than [`MAX_LINE`] is an error (a 100 KB line is refused, never kept whole); a body
//! literal over the caller's limit is refused at its announcement.

use std::fmt;

use crate::imap::framer::announcement;
use crate::lines::{Framed, Input, Line, LineFramer};

/// Longest response line accepted (literals other than `BODY[]` included).
pub const MAX_LINE: usize = 64 * 1024;
/// Most UIDs accepted in one SEARCH response.
pub const MAX_SEARCH: usize = 10_000_000;

/// The condition of a tagged response (RFC 3501 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// `OK`.
    Ok,
    /// `NO`: the command failed.
    No,
    /// `BAD`: the command was not understood.
    Bad,
}

/// A tagged response: the end of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// The command's tag.
    pub tag: String,
    /// OK, NO or BAD.
    pub cond: Cond,
    /// The response code in brackets (RFC 3501 §7.1), e.g. `UNAVAILABLE`, upper case, with
    /// its arguments.
    pub code: Option<String>,
    /// The human-readable text.
    pub text: String,
}

impl Tagged {
    /// Whether a NO says "try later" (RFC 5530 `UNAVAILABLE`, `INUSE`, `LIMIT`, `SERVERBUG`
    /// and `[TRYCREATE]`-free transient codes).
    pub fn is_temporary(&self) -> bool {
        let word = self
            .code
            .as_deref()
            .and_then(|c| c.split(' ').next())
            .unwrap_or("");
        matches!(word, "UNAVAILABLE" | "INUSE" | "LIMIT" | "SERVERBUG")
    }
}

impl fmt::Display for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = match self.cond {
            Cond::Ok => "OK",
            Cond::No => "NO",
            Cond::Bad => "BAD",
        };
        match &self.code {
            Some(code) => write!(f, "{c} [{code}] {}", self.text),
            None => write!(f, "{c} {}", self.text),
        }
    }
}

/// An untagged response (`* ...`), without the `* `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untagged {
    /// The response's text; each literal stays announced (`{n}`) with its octets in
    /// [`Untagged::literals`], in order.
    pub text: Vec<u8>,
    /// The literals' octets.
    pub literals: Vec<Vec<u8>>,
}

/// What the reader found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An untagged response (the greeting too).
    Untagged(Untagged),
    /// A tagged response.
    Tagged(Tagged),
    /// A continuation request (`+ text`, RFC 3501 §7.5).
    Continue(String),
    /// A FETCH response's `BODY[]` literal begins: its size in octets (CRLF) and the UID when
    /// it came before the literal.
    BodyStart {
        /// The message's sequence number.
        seq: u32,
        /// The UID, if given before the literal.
        uid: Option<u32>,
        /// The literal's size (the RFC822.SIZE).
        size: u64,
    },
    /// A piece of the message, with LF line ends.
    BodyData(Vec<u8>),
    /// The FETCH response is complete; the UID when it came after the literal.
    BodyEnd {
        /// The UID, if given after the literal.
        uid: Option<u32>,
    },
    /// Some numbers of a SEARCH response.
    Search(Vec<u32>),
    /// The end of a SEARCH response.
    SearchEnd,
}

/// Why the server's bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// A line (with its literals) longer than [`MAX_LINE`].
    LineTooLong,
    /// A message larger than the caller's limit.
    MessageTooLarge(u64),
    /// A line that is not an IMAP response.
    Bad(String),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::LineTooLong => write!(f, "server sent a line over {MAX_LINE} bytes"),
            ProtoError::MessageTooLarge(n) => write!(f, "server sent a message of {n} bytes"),
            ProtoError::Bad(l) => write!(f, "not an IMAP response: {l:?}"),
        }
    }
}

impl std::error::Error for ProtoError {}

fn bad(line: &[u8]) -> ProtoError {
    ProtoError::Bad(String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned())
}

/// Where the reader is.
#[derive(Debug)]
enum Part {
    /// At the start of a response.
    Start,
    /// Inside an untagged response with literals: its text so far, its literals, and the
    /// octets still due of the current literal.
    Collect(Untagged, Option<usize>),
    /// Inside a `BODY[]` literal: octets still due, whether the last piece ended in CR.
    Body { left: u64, cr: bool },
    /// After a `BODY[]` literal: the rest of the FETCH line is due.
    AfterBody,
    /// Inside a SEARCH response: the number being read, how many so far.
    Search { num: Option<u64>, count: usize },
}

/// The sans-IO response reader (module doc).
#[derive(Debug)]
pub struct Reader {
    input: Input,
    framer: LineFramer,
    part: Part,
    max_message: u64,
    /// A SEARCH response ended with the numbers just returned: report its end next.
    search_end: bool,
}

/// `s` with CRLF turned into LF; `cr` says the previous piece ended in a held CR and is
/// updated for this piece.
fn crlf_to_lf(s: &[u8], cr: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 1);
    for &b in s {
        if *cr {
            if b != b'\n' {
                out.push(b'\r');
            }
            *cr = false;
        }
        if b == b'\r' {
            *cr = true;
        } else {
            out.push(b);
        }
    }
    out
}

/// Whether `line` (after `* `) is `n FETCH (` whose literal at the end is `BODY[]`'s; the
/// sequence number.
fn body_fetch(text: &[u8]) -> Option<u32> {
    let (seq, rest) = split_word(text);
    let seq: u32 = std::str::from_utf8(seq).ok()?.parse().ok()?;
    let (kw, _) = split_word(rest);
    if !kw.eq_ignore_ascii_case(b"FETCH") {
        return None;
    }
    let open = text.iter().rposition(|&b| b == b'{')?;
    let before = text[..open].strip_suffix(b" ")?;
    let upper = before.to_ascii_uppercase();
    (upper.ends_with(b"BODY[]") || upper.ends_with(b"RFC822")).then_some(seq)
}

/// The first word of `s` and the rest after one space.
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &[]),
    }
}

/// The number after the data item `name` (e.g. `UID`, `RFC822.SIZE`) in a FETCH response.
pub fn fetch_number(text: &[u8], name: &str) -> Option<u64> {
    let upper = text.to_ascii_uppercase();
    let pat = format!("{} ", name.to_ascii_uppercase());
    let mut from = 0;
    while let Some(i) = find(&upper[from..], pat.as_bytes()) {
        let at = from + i;
        let boundary = at == 0 || matches!(upper[at - 1], b' ' | b'(');
        if boundary {
            let digits: Vec<u8> = upper[at + pat.len()..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            return std::str::from_utf8(&digits).ok()?.parse().ok();
        }
        from = at + 1;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn fetch_uid(text: &[u8]) -> Option<u32> {
    fetch_number(text, "UID").and_then(|n| u32::try_from(n).ok())
}

fn parse_tagged(line: &[u8]) -> Result<Tagged, ProtoError> {
    let (tag, rest) = split_word(line);
    let (cond, rest) = split_word(rest);
    let cond = match cond.to_ascii_uppercase().as_slice() {
        b"OK" => Cond::Ok,
        b"NO" => Cond::No,
        b"BAD" => Cond::Bad,
        _ => return Err(bad(line)),
    };
    let (code, text) = resp_code(rest);
    Ok(Tagged {
        tag: String::from_utf8_lossy(tag).into_owned(),
        cond,
        code,
        text,
    })
}

/// `[CODE args] text` → the code (upper-cased word, arguments as sent) and the text.
fn resp_code(rest: &[u8]) -> (Option<String>, String) {
    let s = String::from_utf8_lossy(rest);
    if let Some(r) = s.strip_prefix('[') {
        if let Some(end) = r.find(']') {
            let code = &r[..end];
            let (w, args) = code.split_once(' ').unwrap_or((code, ""));
            let code = if args.is_empty() {
                w.to_ascii_uppercase()
            } else {
                format!("{} {args}", w.to_ascii_uppercase())
            };
            return (Some(code), r[end + 1..].trim_start().to_string());
        }
    }
    (None, s.into_owned())
}

impl Reader {
    /// A reader expecting the greeting; `max_message` bounds a `BODY[]` literal.
    pub fn new(max_message: u64) -> Reader {
        Reader {
            input: Input::default(),
            framer: LineFramer::default(),
            part: Part::Start,
            max_message,
            search_end: false,
        }
    }

    /// Bytes received and not yet consumed (must be none right after STARTTLS's OK: RFC 3501
    /// §6.2.1, RFC 2595 §3.1; anything there came in clear and could be injected).
    pub fn buffered(&self) -> usize {
        self.input.unread().len()
    }

    /// Adds bytes from the server.
    pub fn push(&mut self, bytes: &[u8]) {
        self.input.feed(bytes);
    }

    fn line(&mut self, max: usize) -> Result<Option<Vec<u8>>, ProtoError> {
        let (framed, used) = self.framer.next(self.input.unread(), max);
        self.input.pos += used;
        match framed {
            None => Ok(None),
            Some(Framed::Line(Line::Complete { text, .. })) => Ok(Some(text)),
            Some(_) => Err(ProtoError::LineTooLong),
        }
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    pub fn event(&mut self) -> Result<Option<Event>, ProtoError> {
        if self.search_end {
            self.search_end = false;
            return Ok(Some(Event::SearchEnd));
        }
        loop {
            match &mut self.part {
                Part::Body { left, cr } => {
                    if *left == 0 {
                        let held = *cr;
                        self.part = Part::AfterBody;
                        if held {
                            return Ok(Some(Event::BodyData(b"\r".to_vec())));
                        }
                        continue;
                    }
                    let avail = self.input.unread();
                    if avail.is_empty() {
                        return Ok(None);
                    }
                    let n = (*left).min(avail.len() as u64) as usize;
                    let piece = crlf_to_lf(&avail[..n], cr);
                    *left -= n as u64;
                    self.input.pos += n;
                    return Ok(Some(Event::BodyData(piece)));
                }
                Part::AfterBody => {
                    let Some(line) = self.line(MAX_LINE)? else {
                        return Ok(None);
                    };
                    if announcement(&line).is_some() || !line.ends_with(b")") {
                        // A second literal in one FETCH answer is not asked for.
                        return Err(bad(&line));
                    }
                    self.part = Part::Start;
                    return Ok(Some(Event::BodyEnd {
                        uid: fetch_uid(&line),
                    }));
                }
                Part::Search { num, count } => {
                    let avail = self.input.unread();
                    if avail.is_empty() {
                        return Ok(None);
                    }
                    let mut out = Vec::new();
                    let mut used = 0;
                    let mut end = false;
                    for &b in avail {
                        used += 1;
                        match b {
                            b'0'..=b'9' => {
                                let v = num.unwrap_or(0) * 10 + u64::from(b - b'0');
                                if v > u64::from(u32::MAX) {
                                    return Err(ProtoError::Bad("SEARCH number too big".into()));
                                }
                                *num = Some(v);
                            }
                            b' ' | b'\r' | b'\n' => {
                                if let Some(v) = num.take() {
                                    *count += 1;
                                    if *count > MAX_SEARCH {
                                        return Err(ProtoError::LineTooLong);
                                    }
                                    out.push(v as u32);
                                }
                                if b == b'\n' {
                                    end = true;
                                    break;
                                }
                            }
                            // `(MODSEQ n)` (RFC 7162) is never asked for; anything else is
                            // not a SEARCH response.
                            _ => return Err(ProtoError::Bad("bad SEARCH response".into())),
                        }
                    }
                    self.input.pos += used;
                    if end {
                        self.part = Part::Start;
                        if out.is_empty() {
                            return Ok(Some(Event::SearchEnd));
                        }
                        self.search_end = true;
                    }
                    if out.is_empty() {
                        continue;
                    }
                    return Ok(Some(Event::Search(out)));
                }
                Part::Collect(u, pending @ Some(_)) => {
                    let avail = self.input.unread();
                    if avail.is_empty() {
                        return Ok(None);
                    }
                    let left = pending.unwrap_or(0);
                    let n = left.min(avail.len());
                    if let Some(lit) = u.literals.last_mut() {
                        lit.extend_from_slice(&avail[..n]);
                    }
                    self.input.pos += n;
                    *pending = (left > n).then_some(left - n);
                }
                Part::Collect(u, None) => {
                    let used: usize = u.text.len() + u.literals.iter().map(Vec::len).sum::<usize>();
                    let Some(line) = self.line(MAX_LINE.saturating_sub(used).max(3))? else {
                        return Ok(None);
                    };
                    if let Part::Collect(u, _) = &mut self.part {
                        u.text.extend_from_slice(&line);
                    }
                    if let Some(ev) = self.after_line()? {
                        return Ok(Some(ev));
                    }
                }
                Part::Start => {
                    let avail = self.input.unread();
                    let n = avail.len().min(8);
                    if avail[..n].eq_ignore_ascii_case(&b"* SEARCH"[..n]) {
                        if avail.len() < 9 {
                            return Ok(None);
                        }
                        if matches!(avail[8], b' ' | b'\r' | b'\n') {
                            self.input.pos += 8;
                            self.part = Part::Search {
                                num: None,
                                count: 0,
                            };
                            continue;
                        }
                    }
                    let Some(line) = self.line(MAX_LINE)? else {
                        return Ok(None);
                    };
                    if let Some(rest) = line.strip_prefix(b"* ") {
                        self.part = Part::Collect(
                            Untagged {
                                text: rest.to_vec(),
                                literals: Vec::new(),
                            },
                            None,
                        );
                        if let Some(ev) = self.after_line()? {
                            return Ok(Some(ev));
                        }
                    } else if let Some(rest) = line.strip_prefix(b"+") {
                        let text = String::from_utf8_lossy(rest.strip_prefix(b" ").unwrap_or(rest));
                        return Ok(Some(Event::Continue(text.into_owned())));
                    } else {
                        return parse_tagged(&line).map(|t| Some(Event::Tagged(t)));
                    }
                }
            }
        }
    }

    /// After a line of an untagged response was added to [`Part::Collect`]: the response is
    /// complete, or a literal follows (a body literal starts streaming).
    fn after_line(&mut self) -> Result<Option<Event>, ProtoError> {
        let Part::Collect(u, None) = &mut self.part else {
            return Ok(None);
        };
        let Some((n, _sync)) = announcement(&u.text) else {
            let Part::Collect(u, _) = std::mem::replace(&mut self.part, Part::Start) else {
                unreachable!()
            };
            return Ok(Some(Event::Untagged(u)));
        };
        if u.literals.is_empty() {
            if let Some(seq) = body_fetch(&u.text) {
                if n > self.max_message {
                    return Err(ProtoError::MessageTooLarge(n));
                }
                let uid = fetch_uid(&u.text);
                self.part = Part::Body { left: n, cr: false };
                return Ok(Some(Event::BodyStart { seq, uid, size: n }));
            }
        }
        let used = u.text.len() + u.literals.iter().map(Vec::len).sum::<usize>();
        if n > (MAX_LINE.saturating_sub(used)) as u64 {
            return Err(ProtoError::LineTooLong);
        }
        u.text.extend_from_slice(b"\r\n");
        u.literals.push(Vec::new());
        if let Part::Collect(_, pending) = &mut self.part {
            *pending = (n > 0).then_some(n as usize);
        }
        Ok(None)
    }
}

impl Untagged {
    /// The response's keyword (upper case): `OK`, `PREAUTH`, `BYE`, `CAPABILITY`, `STATUS`,
    /// `FETCH` (after its number), `EXISTS`...
    pub fn keyword(&self) -> String {
        let (first, rest) = split_word(&self.text);
        let word = if first.iter().all(u8::is_ascii_digit) && !first.is_empty() {
            split_word(rest).0
        } else {
            first
        };
        String::from_utf8_lossy(word).to_ascii_uppercase()
    }

    /// The response code of an `OK`/`NO`/`BAD`/`PREAUTH`/`BYE` response and its text.
    pub fn code(&self) -> (Option<String>, String) {
        resp_code(split_word(&self.text).1)
    }

    /// The capabilities of a `CAPABILITY` response or of an `OK [CAPABILITY ...]` code, upper
    /// case.
    pub fn capabilities(&self) -> Option<Vec<String>> {
        let list = match self.keyword().as_str() {
            "CAPABILITY" => String::from_utf8_lossy(split_word(&self.text).1).into_owned(),
            "OK" | "PREAUTH" => {
                let code = self.code().0?;
                code.strip_prefix("CAPABILITY ")?.to_string()
            }
            _ => return None,
        };
        Some(
            list.split_ascii_whitespace()
                .map(str::to_ascii_uppercase)
                .collect(),
        )
    }

    /// A number in a response code, e.g. `UIDVALIDITY` from `OK [UIDVALIDITY 3857529045]`.
    pub fn code_number(&self, name: &str) -> Option<u32> {
        let code = self.code().0?;
        let (w, arg) = code.split_once(' ')?;
        (w == name).then(|| arg.trim().parse().ok())?
    }

    /// The items of a `STATUS mailbox (NAME n ...)` response (RFC 3501 §7.2.4).
    pub fn status_item(&self, name: &str) -> Option<u64> {
        if self.keyword() != "STATUS" {
            return None;
        }
        let open = self.text.iter().rposition(|&b| b == b'(')?;
        let inner = self.text[open + 1..].strip_suffix(b")")?;
        let s = String::from_utf8_lossy(inner);
        let mut words = s.split_ascii_whitespace();
        while let Some(w) = words.next() {
            let v = words.next()?;
            if w.eq_ignore_ascii_case(name) {
                return v.parse().ok();
            }
        }
        None
    }
}

/// An IMAP quoted string (RFC 3501 §4.3), or `None` when `s` cannot be one (CR, LF, NUL or
/// 8-bit: such a value needs a literal).
pub fn quoted(s: &str) -> Option<String> {
    if s.bytes()
        .any(|b| b == 0 || b == b'\r' || b == b'\n' || b >= 0x80)
    {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

/// A mailbox name as a command argument: modified UTF-7 (RFC 3501 §5.1.3), quoted.
pub fn mailbox(name: &str) -> String {
    let encoded: String = name
        .split('/')
        .map(crate::maildir::mutf7_encode)
        .collect::<Vec<_>>()
        .join("/");
    // Printable ASCII after encoding: always quotable.
    quoted(&encoded).unwrap_or_else(|| "\"INBOX\"".into())
}

/// A UID set (RFC 3501 §9 `sequence-set`) of sorted, distinct `uids`, runs as ranges.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Tags the commands of one session: `m1`, `m2`, ...
#[derive(Debug, Default)]
pub struct Tagger {
    n: u64,
}

impl Tagger {
    /// The next command: its tag and its bytes (`text` without tag and CRLF).
    pub fn command(&mut self, text: &str) -> (String, Vec<u8>) {
        self.n += 1;
        let tag = format!("m{}", self.n);
        (tag.clone(), format!("{tag} {text}\r\n").into_bytes())
    }
}

/// The client's line that ends an IDLE (RFC 2177 §3).
pub const IDLE_DONE: &[u8] = b"DONE\r\n";

/// What an event means to a client waiting in IDLE (RFC 2177).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdleStep {
    /// The server's `+` go-ahead: IDLE has begun.
    Idling,
    /// Nothing to act on (`* OK Still here`, flags, EXPUNGE): keep waiting.
    Wait,
    /// New mail (`* n EXISTS`, RFC 3501 §7.3.1): send [`IDLE_DONE`] and fetch.
    NewMail,
    /// The server ends the session (`* BYE`, RFC 3501 §7.1.5): reconnect.
    Bye,
    /// The IDLE command's tagged response: IDLE is over (after DONE, or refused).
    Ended(Tagged),
    /// Something no IDLE answer may be (a message body, SEARCH data).
    Unexpected,
}

/// The IDLE command of one session: what each event read during it means (sans-IO; the
/// caller sends [`IDLE_DONE`] on [`IdleStep::NewMail`] or when it wants to stop, and waits for
/// [`IdleStep::Ended`]).
#[derive(Debug)]
pub struct Idle {
    tag: String,
}

impl Idle {
    /// Starts an IDLE: the tracker and the command's bytes.
    pub fn start(t: &mut Tagger) -> (Idle, Vec<u8>) {
        let (tag, bytes) = t.command("IDLE");
        (Idle { tag }, bytes)
    }

    /// What `e` means.
    pub fn step(&self, e: &Event) -> IdleStep {
        match e {
            Event::Continue(_) => IdleStep::Idling,
            Event::Tagged(t) if t.tag == self.tag => IdleStep::Ended(t.clone()),
            Event::Untagged(u) => match u.keyword().as_str() {
                "EXISTS" => IdleStep::NewMail,
                "BYE" => IdleStep::Bye,
                _ => IdleStep::Wait,
            },
            _ => IdleStep::Unexpected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(r: &mut Reader, bytes: &[u8], step: usize) -> Result<Vec<Event>, ProtoError> {
        let mut out = Vec::new();
        for piece in bytes.chunks(step) {
            r.push(piece);
            while let Some(e) = r.event()? {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Data events joined into one.
    fn joined(evs: Vec<Event>) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for e in evs {
            match (out.last_mut(), e) {
                (Some(Event::BodyData(a)), Event::BodyData(b)) => a.extend(b),
                (Some(Event::Search(a)), Event::Search(b)) => a.extend(b),
                (_, e) => out.push(e),
            }
        }
        out
    }

    #[test]
    fn a_session_in_any_pieces() {
        let script: &[u8] = b"* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN SASL-IR] hi\r\n\
            m1 OK done\r\n\
            * STATUS \"INBOX\" (UIDNEXT 12 UIDVALIDITY 7)\r\n\
            * LIST () \"/\" {4}\r\nA\r\nB\r\n\
            * SEARCH 3 4 10\r\n* SEARCH\r\n\
            * 1 FETCH (UID 3 BODY[] {10}\r\na\r\nb\rc\r\n\r\n)\r\n\
            * 2 FETCH (BODY[] {3}\r\nx\r\r UID 4 FLAGS (\\Seen))\r\n\
            + go\r\n\
            m2 NO [UNAVAILABLE] later\r\n";
        for step in [1, 2, 3, 7, 1000] {
            let mut r = Reader::new(100);
            let ev = joined(events(&mut r, script, step).unwrap());
            let Event::Untagged(g) = &ev[0] else { panic!() };
            assert_eq!(g.keyword(), "OK");
            assert!(g.capabilities().unwrap().contains(&"SASL-IR".to_string()));
            assert!(matches!(&ev[1], Event::Tagged(t) if t.cond == Cond::Ok && t.tag == "m1"));
            let Event::Untagged(s) = &ev[2] else { panic!() };
            assert_eq!(
                (s.status_item("UIDNEXT"), s.status_item("uidvalidity")),
                (Some(12), Some(7))
            );
            let Event::Untagged(l) = &ev[3] else { panic!() };
            assert_eq!(l.literals, vec![b"A\r\nB".to_vec()]);
            assert_eq!(ev[4], Event::Search(vec![3, 4, 10]), "step {step}");
            assert_eq!(ev[5], Event::SearchEnd);
            assert_eq!(ev[6], Event::SearchEnd);
            assert_eq!(
                ev[7],
                Event::BodyStart {
                    seq: 1,
                    uid: Some(3),
                    size: 10
                }
            );
            assert_eq!(ev[8], Event::BodyData(b"a\nb\rc\n\n".to_vec()));
            assert_eq!(ev[9], Event::BodyEnd { uid: None });
            assert_eq!(
                ev[10],
                Event::BodyStart {
                    seq: 2,
                    uid: None,
                    size: 3
                }
            );
            assert_eq!(ev[11], Event::BodyData(b"x\r\r".to_vec()));
            assert_eq!(ev[12], Event::BodyEnd { uid: Some(4) });
            assert_eq!(ev[13], Event::Continue("go".into()));
            let Event::Tagged(t) = &ev[14] else { panic!() };
            assert!(t.cond == Cond::No && t.is_temporary(), "{t}");
            assert_eq!(ev.len(), 15);
        }
    }

    #[test]
    fn hostile_lines_and_messages_are_refused() {
        let mut long = b"* OK ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 100 * 1024));
        long.extend_from_slice(b"\r\n");
        for step in [1000, 100 * 1024 + 10] {
            let mut r = Reader::new(100);
            assert_eq!(events(&mut r, &long, step), Err(ProtoError::LineTooLong));
        }
        let mut r = Reader::new(100);
        assert_eq!(
            events(&mut r, b"* 1 FETCH (UID 1 BODY[] {101}\r\n", 5),
            Err(ProtoError::MessageTooLarge(101))
        );
        let mut r = Reader::new(100);
        assert_eq!(
            events(&mut r, b"* LIST () \"/\" {70000}\r\n", 5),
            Err(ProtoError::LineTooLong)
        );
        let mut r = Reader::new(100);
        assert!(events(&mut r, b"* SEARCH 1 x\r\n", 3).is_err());
        let mut r = Reader::new(100);
        assert!(events(&mut r, b"garbage\r\n", 3).is_err());
    }

    #[test]
    fn commands() {
        assert_eq!(uid_set(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(uid_set(&[]), "");
        assert_eq!(quoted("a\"b\\").as_deref(), Some("\"a\\\"b\\\\\""));
        assert_eq!(quoted("a\r"), None);
        assert_eq!(mailbox("Lists/Rüst"), "\"Lists/R&APw-st\"");
        let mut t = Tagger::default();
        assert_eq!(t.command("NOOP").1, b"m1 NOOP\r\n");
        assert_eq!(t.command("NOOP").0, "m2");
        assert_eq!(
            fetch_number(b"1 FETCH (RFC822.SIZE 10 UID 4)", "UID"),
            Some(4)
        );
        assert_eq!(
            fetch_number(b"1 FETCH (RFC822.SIZE 10 UID 4)", "RFC822.SIZE"),
            Some(10)
        );
    }

    #[test]
    fn idle_new_mail_done_and_its_end_in_any_pieces() {
        let script: &[u8] = b"+ idling\r\n* OK Still here\r\n* 3 EXPUNGE\r\n\
            * 1 FETCH (FLAGS (\\Seen))\r\n* 4 EXISTS\r\n* 1 RECENT\r\nm1 OK Idle completed (0.001 + 5 secs).\r\n";
        for step in [1, 3, 1000] {
            let mut t = Tagger::default();
            let (idle, bytes) = Idle::start(&mut t);
            assert_eq!(bytes, b"m1 IDLE\r\n");
            let mut r = Reader::new(1000);
            let steps: Vec<IdleStep> = events(&mut r, script, step)
                .unwrap()
                .iter()
                .map(|e| idle.step(e))
                .collect();
            assert_eq!(steps.len(), 7);
            assert_eq!(steps[0], IdleStep::Idling);
            assert_eq!(
                &steps[1..4],
                &[IdleStep::Wait, IdleStep::Wait, IdleStep::Wait]
            );
            assert_eq!(steps[4], IdleStep::NewMail);
            assert_eq!(steps[5], IdleStep::Wait);
            assert!(matches!(&steps[6], IdleStep::Ended(t) if t.cond == Cond::Ok));
        }
    }

    #[test]
    fn idle_refused_bye_and_a_body_are_told_apart() {
        let mut t = Tagger::default();
        let _ = t.command("SELECT INBOX");
        let (idle, _) = Idle::start(&mut t);
        let mut r = Reader::new(1000);
        let evs = events(
            &mut r,
            b"m1 OK old\r\nm2 BAD no IDLE here\r\n* BYE shutting down\r\n\
              * 1 FETCH (UID 5 BODY[] {1}\r\nx)\r\n",
            1000,
        )
        .unwrap();
        assert_eq!(idle.step(&evs[0]), IdleStep::Unexpected, "another tag");
        assert!(matches!(idle.step(&evs[1]), IdleStep::Ended(t) if t.cond == Cond::Bad));
        assert_eq!(idle.step(&evs[2]), IdleStep::Bye);
        assert_eq!(idle.step(&evs[3]), IdleStep::Unexpected);
    }
}
