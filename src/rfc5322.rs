//! The one home for RFC 5322 message byte handling: where the header section ends, its fields
//! ([`Fields`], the one field splitter: IMAP's message layer, address qualifying, mdeliver's
//! and mfetch's header lookups), LF → CRLF
//! (whole, [`to_crlf`], or streamed, [`CrlfStream`], and its length [`crlf_len`]),
//! SMTP dot-stuffing, qualifying bare addresses in address header fields
//! ([`qualify_header`], [`HeaderQualifier`]), and the one RFC 2047 encoder for header text we
//! write ([`encode_words`]: msend's display names, Sieve vacation's Subject, From, Reply-To).
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

/// One header field: its name and its raw value (after the colon, folding and line end kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name as written.
    pub name: &'a [u8],
    /// The value as written: everything after the colon, continuation lines included.
    pub value: &'a [u8],
    /// The whole field, name to final line end.
    pub raw: &'a [u8],
    /// Where `raw` starts in the header section.
    pub at: usize,
}

impl Field<'_> {
    /// Whether the field is named `lower` (a lowercase name; RFC 5322 §1.2.2: names are
    /// case-insensitive).
    pub fn is(&self, lower: &[u8]) -> bool {
        self.name.eq_ignore_ascii_case(lower)
    }

    /// The value unfolded (RFC 5322 §2.2.3: CRLF before white space removed) and trimmed.
    pub fn unfolded(&self) -> Vec<u8> {
        unfold(self.value)
    }
}

/// The fields of a header section in order. A line that is no field (no colon, or a
/// continuation line before any field) is skipped, as Dovecot's parser does.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    rest: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    /// The fields of `header` (the header section without its empty line).
    pub fn new(header: &'a [u8]) -> Fields<'a> {
        Fields {
            rest: header,
            at: 0,
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            // A field is its first line plus every following line that starts with SP or HTAB.
            let mut end = 0;
            loop {
                end = self.rest[end..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(self.rest.len(), |i| end + i + 1);
                if end >= self.rest.len() || !matches!(self.rest[end], b' ' | b'\t') {
                    break;
                }
            }
            let raw = &self.rest[..end];
            let at = self.at;
            self.rest = &self.rest[end..];
            self.at += end;
            let Some(colon) = raw.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = trim(&raw[..colon]);
            if name.is_empty() || name.iter().any(|&b| b == b' ' || b == b'\t') {
                continue;
            }
            return Some(Field {
                name,
                value: &raw[colon + 1..],
                raw,
                at,
            });
        }
    }
}

/// `data` without leading and trailing white space (SP, HTAB, CR, LF).
pub fn trim(data: &[u8]) -> &[u8] {
    let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let start = data.iter().position(|b| !ws(b)).unwrap_or(data.len());
    let end = data.iter().rposition(|b| !ws(b)).map_or(start, |i| i + 1);
    &data[start..end]
}

/// A field value unfolded (every CR and LF removed, RFC 5322 §2.2.3) and trimmed.
pub fn unfold(value: &[u8]) -> Vec<u8> {
    let out: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    trim(&out).to_vec()
}

/// `data` with every line end as CRLF: LF and lone CR become CRLF, CRLF stays.
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32 + 2);
    CrlfStream::default().push(data, &mut out);
    out
}

/// How many bytes [`to_crlf`] makes of `data`, without building them: the size IMAP's
/// RFC822.SIZE and BODYSTRUCTURE report (RFC 3501 §2.3.4: sizes count the CRLF form).
pub fn crlf_len(data: &[u8]) -> u64 {
    let mut len = data.len() as u64;
    let mut prev_cr = false;
    for &b in data {
        match b {
            b'\r' => {
                len += 1;
                prev_cr = true;
            }
            b'\n' => {
                // CRLF: the CR already counted the pair; a bare LF gains its CR.
                if prev_cr {
                    len -= 1;
                } else {
                    len += 1;
                }
                prev_cr = false;
            }
            _ => prev_cr = false,
        }
    }
    len
}

/// The LF → CRLF conversion of [`to_crlf`] over a stream of chunks (a message file read piece
/// by piece): a CRLF split across two chunks stays one line end. Only the previous byte is
/// state, so no byte is held back and output follows input at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrlfStream {
    prev_cr: bool,
}

impl CrlfStream {
    /// Appends `input` to `out` with every line end as CRLF.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut start = 0;
        for (i, &b) in input.iter().enumerate() {
            match b {
                b'\r' => {
                    out.extend_from_slice(&input[start..i]);
                    out.extend_from_slice(b"\r\n");
                    start = i + 1;
                    self.prev_cr = true;
                }
                b'\n' => {
                    out.extend_from_slice(&input[start..i]);
                    if !self.prev_cr {
                        out.extend_from_slice(b"\r\n");
                    }
                    start = i + 1;
                    self.prev_cr = false;
                }
                _ => self.prev_cr = false,
            }
        }
        out.extend_from_slice(&input[start..]);
    }
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

/// The address fields whose bare addresses a local submission gets qualified, by msend (as
/// sendmail does) and by mrelayd for its local clients: the sender and recipient fields
/// Postfix's cleanup rewrites for `local_header_rewrite_clients` (its `header_opts.c`): the
/// originator fields of RFC 5322 §3.6.2, the destination fields of §3.6.3, the resent fields
/// of §3.6.6, and the older `Errors-To`, `Return-Receipt-To` and `Apparently-To`. One list
/// for both, so a bare `Reply-To: root` fares the same whichever program qualifies it.
pub const ADDRESS_FIELDS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Bcc",
    "Resent-From",
    "Resent-Sender",
    "Resent-Reply-To",
    "Resent-To",
    "Resent-Cc",
    "Resent-Bcc",
    "Errors-To",
    "Return-Receipt-To",
    "Apparently-To",
];

/// Largest header section [`HeaderQualifier`] holds back to rewrite; a longer one passes
/// through unchanged.
pub const MAX_QUALIFIED_HEADER: usize = 256 * 1024;

/// The header section `header` (fields only, as [`header_end`] delimits it) with every bare
/// address (a local part without `@domain`, such as cron's `To: root`) in the fields named
/// `names` (any case) made `local@domain`. Nothing else changes, byte for byte: display names,
/// comments, groups, folding and line ends stay as written, and a field whose address list
/// cannot be read (an unterminated quote, comment or angle bracket) is left alone.
pub fn qualify_header(header: &[u8], names: &[&str], domain: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 64);
    let mut copied = 0;
    for f in Fields::new(header) {
        if !names.iter().any(|n| f.is(n.as_bytes())) {
            continue;
        }
        if let Some(v) = qualify_addresses(f.value, domain) {
            let value_at = f.at + f.raw.len() - f.value.len();
            out.extend_from_slice(&header[copied..value_at]);
            out.extend_from_slice(&v);
            copied = f.at + f.raw.len();
        }
    }
    out.extend_from_slice(&header[copied..]);
    out
}

/// What a token of an address list is (RFC 5322 §3.2, §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// White space and line ends (FWS).
    Space,
    /// `( ... )`, nested.
    Comment,
    /// `" ... "`.
    Quoted,
    /// `[ ... ]`.
    Literal,
    /// A run of atext and dots (and, read leniently, any stray byte that starts no other token).
    Atom,
    /// One of `< > , : ; @`.
    Special(u8),
}

/// One token of an address list, as [`address_tokens`] splits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressToken {
    /// What it is.
    pub kind: TokenKind,
    /// Where it starts in the text.
    pub start: usize,
    /// Where it ends (exclusive).
    pub end: usize,
    /// Whether a comment, quoted string or domain literal is closed (it runs to the end of the
    /// text when not); always true for the other kinds.
    pub closed: bool,
}

/// The one lexer of address lists (RFC 5322 §3.2.2 comments, §3.2.4 quoted strings, §3.4.1
/// domain literals, backslash quoting in all three), used by [`qualify_header`] and by IMAP's
/// ENVELOPE. It never fails: an unclosed comment, quoted string or literal runs to the end
/// (`closed: false`), and a stray `)`, `]` or `\` is part of an atom, which is what a tolerant
/// reader wants; a strict one checks [`AddressToken::closed`] and the atoms itself.
pub fn address_tokens(v: &[u8]) -> Vec<AddressToken> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = i;
        let mut closed = true;
        let kind = match v[i] {
            b' ' | b'\t' | b'\r' | b'\n' => {
                while i < v.len() && matches!(v[i], b' ' | b'\t' | b'\r' | b'\n') {
                    i += 1;
                }
                TokenKind::Space
            }
            b'(' => {
                let mut depth = 0usize;
                closed = false;
                while let Some(&c) = v.get(i) {
                    i += 1;
                    match c {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                closed = true;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                TokenKind::Comment
            }
            open @ (b'"' | b'[') => {
                let close = if open == b'"' { b'"' } else { b']' };
                i += 1;
                closed = false;
                while let Some(&c) = v.get(i) {
                    i += 1;
                    if c == b'\\' {
                        i += 1;
                    } else if c == close {
                        closed = true;
                        break;
                    }
                }
                if open == b'"' {
                    TokenKind::Quoted
                } else {
                    TokenKind::Literal
                }
            }
            c @ (b'<' | b'>' | b',' | b':' | b';' | b'@') => {
                i += 1;
                TokenKind::Special(c)
            }
            _ => {
                i += 1;
                while i < v.len() && !b" \t\r\n(\"[<>,:;@".contains(&v[i]) {
                    i += 1;
                }
                TokenKind::Atom
            }
        };
        let end = i.min(v.len());
        out.push(AddressToken {
            kind,
            start,
            end,
            closed,
        });
        i = end;
    }
    out
}

/// [`address_tokens`] as `(kind, start, end)` for [`qualify_addresses`], which reads only what
/// RFC 5322 allows: `None` when a comment, quoted string or domain literal does not end, or a
/// stray `)`, `]` or `\` stands outside them.
fn tokens(v: &[u8]) -> Option<Vec<(TokenKind, usize, usize)>> {
    address_tokens(v)
        .into_iter()
        .map(|t| {
            let stray =
                t.kind == TokenKind::Atom && v[t.start..t.end].iter().any(|b| b")]\\".contains(b));
            (t.closed && !stray).then_some((t.kind, t.start, t.end))
        })
        .collect()
}

/// Where `@domain` goes after the significant tokens `sig` of one addr-spec, if it is a bare
/// local part: exactly one dot-atom or one quoted string (RFC 5322 §3.4.1), nothing else.
fn bare_local_end(v: &[u8], sig: &[(TokenKind, usize, usize)]) -> Option<usize> {
    let [(kind, start, end)] = sig else {
        return None;
    };
    let text = &v[*start..*end];
    let ok = match kind {
        TokenKind::Quoted => true,
        TokenKind::Atom => text.split(|&b| b == b'.').all(|a| !a.is_empty()),
        _ => false,
    };
    ok.then_some(*end)
}

/// The value of an address field (after the colon) with `@domain` after each bare local part;
/// `None` when nothing is bare or the list cannot be read.
fn qualify_addresses(v: &[u8], domain: &str) -> Option<Vec<u8>> {
    let toks = tokens(v)?;
    let mut inserts = Vec::new();
    // Significant tokens of the mailbox being read; inside `<...>` those of the angle-addr.
    let mut unit: Vec<(TokenKind, usize, usize)> = Vec::new();
    let mut angle: Option<Vec<(TokenKind, usize, usize)>> = None;
    let mut had_angle = false;
    let finish = |unit: &mut Vec<(TokenKind, usize, usize)>,
                  had_angle: &mut bool,
                  inserts: &mut Vec<usize>| {
        if !*had_angle {
            inserts.extend(bare_local_end(v, unit));
        }
        unit.clear();
        *had_angle = false;
    };
    for &(kind, s, e) in &toks {
        if matches!(kind, TokenKind::Space | TokenKind::Comment) {
            continue;
        }
        if let Some(inner) = angle.as_mut() {
            match kind {
                TokenKind::Special(b'>') => {
                    inserts.extend(bare_local_end(v, inner));
                    angle = None;
                    had_angle = true;
                }
                TokenKind::Special(b'<') => return None,
                _ => inner.push((kind, s, e)),
            }
            continue;
        }
        match kind {
            TokenKind::Special(b'<') => angle = Some(Vec::new()),
            TokenKind::Special(b'>') => return None,
            TokenKind::Special(b',') | TokenKind::Special(b';') => {
                finish(&mut unit, &mut had_angle, &mut inserts)
            }
            // A group's display name (RFC 5322 §3.4): its members follow.
            TokenKind::Special(b':') => {
                unit.clear();
                had_angle = false;
            }
            _ => unit.push((kind, s, e)),
        }
    }
    if angle.is_some() {
        return None;
    }
    finish(&mut unit, &mut had_angle, &mut inserts);
    if inserts.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(v.len() + inserts.len() * (domain.len() + 1));
    let mut at = 0;
    for i in inserts {
        out.extend_from_slice(&v[at..i]);
        out.push(b'@');
        out.extend_from_slice(domain.as_bytes());
        at = i;
    }
    out.extend_from_slice(&v[at..]);
    Some(out)
}

/// [`qualify_header`] for a message that streams past in pieces (mrelayd's DATA): the header
/// section is held back until its empty line (or [`MAX_QUALIFIED_HEADER`] octets, or the end),
/// rewritten, and passed on; the body passes through as it comes. Whatever [`feed`] and
/// [`finish`] return, in order, is the message to store.
///
/// [`feed`]: HeaderQualifier::feed
/// [`finish`]: HeaderQualifier::finish
#[derive(Debug)]
pub struct HeaderQualifier {
    names: &'static [&'static str],
    domain: String,
    held: Vec<u8>,
    /// The header section has been passed on: everything else goes through as it is.
    done: bool,
}

impl HeaderQualifier {
    /// A qualifier of the fields `names` with `domain`, at the start of a message.
    pub fn new(names: &'static [&'static str], domain: &str) -> HeaderQualifier {
        HeaderQualifier {
            names,
            domain: domain.to_string(),
            held: Vec::new(),
            done: false,
        }
    }

    /// The next piece of the message; returns what can be passed on now (empty while the
    /// header section is still incomplete).
    pub fn feed<'a>(&mut self, piece: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if self.done {
            return std::borrow::Cow::Borrowed(piece);
        }
        self.held.extend_from_slice(piece);
        let end = header_end(&self.held);
        if end.body > end.header {
            return std::borrow::Cow::Owned(self.release(end.header));
        }
        if self.held.len() > MAX_QUALIFIED_HEADER {
            self.done = true;
            return std::borrow::Cow::Owned(std::mem::take(&mut self.held));
        }
        std::borrow::Cow::Owned(Vec::new())
    }

    /// The end of the message: what is still held back (a message that is all header).
    pub fn finish(&mut self) -> Vec<u8> {
        if self.done {
            return Vec::new();
        }
        let len = self.held.len();
        self.release(len)
    }

    /// Passes on the held bytes, the first `header` of them qualified.
    fn release(&mut self, header: usize) -> Vec<u8> {
        self.done = true;
        let held = std::mem::take(&mut self.held);
        let mut out = qualify_header(&held[..header], self.names, &self.domain);
        out.extend_from_slice(&held[header..]);
        out
    }
}

/// Where [`encode_words`] text goes (RFC 2047 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordContext {
    /// An unstructured field body (`Subject:`, RFC 2047 section 5 (1)): plain ASCII text stays
    /// as it is.
    Unstructured,
    /// A phrase (a display name, RFC 2047 section 5 (3)): all-atom text stays plain, other
    /// ASCII text becomes a quoted string, and a word that is not an atom is encoded when
    /// the text needs encoded words anyway.
    Phrase,
}

/// Longest encoded-word (RFC 2047 section 2).
pub const MAX_ENCODED_WORD: usize = 75;
/// Where [`encode_words`] folds: the line length RFC 2047 section 2 limits a line with an
/// encoded-word to (76, without the CRLF).
pub const MAX_ENCODED_LINE: usize = 76;

/// `text` as a header field body, RFC 2047 encoded only where needed: words with non-ASCII
/// characters (or that look like an encoded-word, `=?`; in a phrase, words that are not atoms)
/// become `=?UTF-8?B?...?=` encoded-words of at most [`MAX_ENCODED_WORD`] characters, split on
/// character boundaries; neighbouring such words share one run, the spaces between them
/// inside it (white space between encoded-words is dropped when decoding, section 6.2).
/// When encoding was needed the result is folded (CRLF and a space) before a word that would
/// take the line past [`MAX_ENCODED_LINE`]; `used` is how much of the first line the field
/// name has taken (`"Subject: "` is 9). Line breaks in `text` become spaces.
pub fn encode_words(text: &str, context: WordContext, used: usize) -> String {
    let text: String = text
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect();
    let atom = |w: &str| {
        w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
    };
    let needs_encoding = |w: &str| !w.is_ascii() || w.contains("=?");
    if !needs_encoding(&text) {
        return match context {
            WordContext::Unstructured => text,
            WordContext::Phrase if text.split(' ').all(atom) => text,
            WordContext::Phrase => {
                let escaped: String = text
                    .chars()
                    .flat_map(|c| match c {
                        '"' | '\\' => vec!['\\', c],
                        _ => vec![c],
                    })
                    .collect();
                format!("\"{escaped}\"")
            }
        };
    }
    let encode = |w: &str| match context {
        WordContext::Unstructured => needs_encoding(w),
        WordContext::Phrase => needs_encoding(w) || !atom(w),
    };
    // Tokens as they go on the lines: plain words and encoded-words.
    let mut tokens: Vec<String> = Vec::new();
    let mut run: Vec<&str> = Vec::new();
    let words: Vec<&str> = text.split_whitespace().collect();
    for (i, w) in words.iter().enumerate() {
        if encode(w) {
            run.push(w);
        }
        let last = i + 1 == words.len();
        if (!encode(w) || last) && !run.is_empty() {
            tokens.extend(encoded_words(&run.join(" ")));
            run.clear();
        }
        if !encode(w) {
            tokens.push((*w).to_string());
        }
    }
    let mut out = String::new();
    let mut line = used;
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 && line + 1 + t.len() > MAX_ENCODED_LINE {
            out.push_str("\r\n ");
            line = 1;
        } else if i > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(t);
        line += t.len();
    }
    out
}

/// `text` as `=?UTF-8?B?...?=` words of at most [`MAX_ENCODED_WORD`] characters, each holding
/// whole characters (RFC 2047 section 5: a multi-octet character is never split).
fn encoded_words(text: &str) -> Vec<String> {
    use base64::Engine as _;
    const PREFIX: &str = "=?UTF-8?B?";
    // 4 base64 characters per 3 bytes in what is left after "=?UTF-8?B?" and "?=".
    const MAX_BYTES: usize = (MAX_ENCODED_WORD - PREFIX.len() - 2) / 4 * 3;
    let mut out = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        if chunk.len() + c.len_utf8() > MAX_BYTES {
            out.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        out.push(chunk);
    }
    out.iter()
        .map(|c| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(c.as_bytes());
            format!("{PREFIX}{b64}?=")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_tokens_tolerate_what_qualifying_refuses() {
        fn kinds(v: &[u8]) -> Vec<(TokenKind, &[u8], bool)> {
            address_tokens(v)
                .iter()
                .map(|t| (t.kind, &v[t.start..t.end], t.closed))
                .collect()
        }
        assert_eq!(
            kinds(b"\"a\\\"b\" (c (d)) <x@[1.2]>"),
            vec![
                (TokenKind::Quoted, &b"\"a\\\"b\""[..], true),
                (TokenKind::Space, b" ", true),
                (TokenKind::Comment, b"(c (d))", true),
                (TokenKind::Space, b" ", true),
                (TokenKind::Special(b'<'), b"<", true),
                (TokenKind::Atom, b"x", true),
                (TokenKind::Special(b'@'), b"@", true),
                (TokenKind::Literal, b"[1.2]", true),
                (TokenKind::Special(b'>'), b">", true),
            ]
        );
        assert_eq!(
            kinds(b"(open \\"),
            vec![(TokenKind::Comment, &b"(open \\"[..], false)]
        );
        assert_eq!(kinds(b"a)b"), vec![(TokenKind::Atom, &b"a)b"[..], true)]);
        assert!(tokens(b"a)b").is_none() && tokens(b"\"open").is_none());
        assert!(tokens(b"a <b>").is_some());
    }

    #[test]
    fn fields_follow_folding_and_skip_junk() {
        let h = b"Subject: a\r\n b\r\nnot a field\r\nX-Y:z\n";
        let f: Vec<_> = Fields::new(h).collect();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, b"Subject");
        assert_eq!(f[0].unfolded(), b"a b");
        assert_eq!(f[1].value, b"z\n");
    }

    fn q(field: &str) -> String {
        String::from_utf8(qualify_header(field.as_bytes(), ADDRESS_FIELDS, "ex.test")).unwrap()
    }

    #[test]
    fn bare_addresses_in_address_fields_are_qualified_and_nothing_else_changes() {
        // Debian cron's headers.
        assert_eq!(
            q("From: root (Cron Daemon)\r\nTo: root\r\nSubject: root\r\n"),
            "From: root@ex.test (Cron Daemon)\r\nTo: root@ex.test\r\nSubject: root\r\n"
        );
        assert_eq!(
            q("to:\tJo Doe <jo>, \"a b\", x@y.test,\r\n  <first.last> (c)\n"),
            "to:\tJo Doe <jo@ex.test>, \"a b\"@ex.test, x@y.test,\r\n  <first.last@ex.test> (c)\n"
        );
        assert_eq!(
            q("Cc: team: a, b@y.test;, undisclosed-recipients:;\r\n"),
            "Cc: team: a@ex.test, b@y.test;, undisclosed-recipients:;\r\n"
        );
        // Every address field of ADDRESS_FIELDS, in any case.
        for name in ADDRESS_FIELDS {
            let lower = name.to_ascii_lowercase();
            assert_eq!(
                q(&format!("{lower}: root\r\n")),
                format!("{lower}: root@ex.test\r\n")
            );
        }
        // Obsolete blanks before the colon; a display name of two words is no address.
        assert_eq!(q("Bcc : joe\r\n"), "Bcc : joe@ex.test\r\n");
        for same in [
            "To: Jo Doe\r\n",
            "To: <>\r\n",
            "To: \"unterminated\r\n",
            "To: <root\r\n",
            "To: a..b, .a, (comment only)\r\n",
            "To: x@[192.0.2.1], <@route.test:y@z.test>\r\n",
            "X-To: root\r\nResent-Date: root\r\nSubject: To: root\r\n",
        ] {
            assert_eq!(q(same), same);
        }
    }

    #[test]
    fn the_streaming_qualifier_holds_back_only_the_header_section() {
        let msg = b"From: root\r\nTo: a,\r\n b\r\n\r\nTo: body\r\n";
        let want = b"From: root@ex.test\r\nTo: a@ex.test,\r\n b@ex.test\r\n\r\nTo: body\r\n";
        for cut in 1..msg.len() {
            for split in [cut, msg.len()] {
                let mut h = HeaderQualifier::new(ADDRESS_FIELDS, "ex.test");
                let mut out = h.feed(&msg[..split]).into_owned();
                out.extend_from_slice(&h.feed(&msg[split..]));
                out.extend_from_slice(&h.finish());
                assert_eq!(out, want, "split at {split}");
            }
        }
        // All header, no empty line: released at the end.
        let mut h = HeaderQualifier::new(ADDRESS_FIELDS, "ex.test");
        assert!(h.feed(b"To: root").is_empty());
        assert_eq!(h.finish(), b"To: root@ex.test");
        // Too long a header section passes unchanged.
        let mut h = HeaderQualifier::new(ADDRESS_FIELDS, "ex.test");
        let mut big = b"To: root\r\nX: ".to_vec();
        big.resize(MAX_QUALIFIED_HEADER + 10, b'a');
        assert_eq!(h.feed(&big).as_ref(), &big[..]);
        assert_eq!(h.feed(b"\r\n\r\nbody").as_ref(), b"\r\n\r\nbody");
        assert!(h.finish().is_empty());
    }

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
    fn crlf_stream_splits_anywhere_and_agrees_with_crlf_len() {
        let data = b"a\nb\r\nc\rd\r\r\n\n\rx";
        let whole = to_crlf(data);
        assert_eq!(crlf_len(data), whole.len() as u64);
        for cut in 0..data.len() {
            let mut s = CrlfStream::default();
            let mut out = Vec::new();
            s.push(&data[..cut], &mut out);
            s.push(&data[cut..], &mut out);
            assert_eq!(out, whole, "cut at {cut}");
        }
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

    #[test]
    fn encoded_words_only_where_needed_short_and_folded() {
        use super::{encode_words, WordContext::Phrase, WordContext::Unstructured};
        assert_eq!(
            encode_words("plain (text)", Unstructured, 9),
            "plain (text)"
        );
        assert_eq!(encode_words("Joe", Phrase, 6), "Joe");
        assert_eq!(encode_words("Doe, J.", Phrase, 6), "\"Doe, J.\"");
        let e = encode_words("Auto: Grüße aus Köln", Unstructured, 9);
        assert!(e.starts_with("Auto: =?UTF-8?B?"), "{e}");
        let long = "Jörg ".repeat(40);
        let e = encode_words(&long, Unstructured, 9);
        for (i, line) in e.split("\r\n").enumerate() {
            assert!(line.len() <= super::MAX_ENCODED_LINE, "{line}");
            assert_eq!(line.starts_with(' '), i > 0, "{e}");
            for w in line.split_whitespace() {
                assert!(w.len() <= super::MAX_ENCODED_WORD, "{w}");
            }
        }
        assert!(e.contains("\r\n "), "{e}");
        // A word that looks encoded is encoded, so it decodes to itself.
        assert!(encode_words("=?x?=", Unstructured, 0).starts_with("=?UTF-8?B?"));
    }
}
