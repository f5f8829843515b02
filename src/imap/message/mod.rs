//! One message file as IMAP sees it (RFC 3501 §2.3, §6.4.4, §6.4.5, §7.4.2): its MIME tree,
//! sizes, ENVELOPE, BODY/BODYSTRUCTURE, BODY[section]<partial> and SEARCH, over the file's
//! bytes. A pure library: no sockets and no store; the mailbox layer hands it a file's bytes
//! (and, for SEARCH, the message's metadata) and streams the planned sections from the file.
//!
//! - [`Message::parse`] finds the MIME structure (RFC 2045, RFC 2046 §5.1.1 boundaries,
//!   message/rfc822 nesting) with its own scanner, so every part's byte offsets are exact (the
//!   section plans and the sizes depend on them), within [`Limits`]: too many parts, nesting
//!   too deep or a header section too large is a [`ParseError`], never a panic or unbounded work.
//! - Sizes count the CRLF form (RFC 3501 §2.3.4: a Maildir file has LF line ends, IMAP sends
//!   CRLF), through [`crate::rfc5322::crlf_len`] — the same rule as the bytes sent, which go
//!   through [`crate::rfc5322::CrlfStream`].
//! - [`envelope`]: ENVELOPE with its own RFC 5322 address parser (strings stay as written:
//!   RFC 3501 sends encoded words undecoded). [`structure`]: BODY and BODYSTRUCTURE with the
//!   extension data. [`section`]: what BODY[section]<partial> sends, as a [`section::Plan`] of
//!   file ranges. [`search`]: one SEARCH key against one message, on decoded text.
//!
//! Caching (a design, not built yet): FETCH ENVELOPE/BODYSTRUCTURE over 10,000 messages must not
//! re-parse each file. Everything those items and the section plans need is small and derived
//! only from the file: the [`Part`] tree (offsets and media types, a few dozen bytes per part),
//! RFC822.SIZE, and the ENVELOPE and BODYSTRUCTURE as imap-codec serialises them. The store
//! would keep one such record per message, keyed by the file's base name and size (a Maildir
//! file never changes content under one name), next to the uid list; a record whose key does
//! not match the file is rebuilt, so deleting the cache loses nothing (issue 13, Storage).

pub mod envelope;
pub mod header;
pub mod search;
pub mod section;
pub mod structure;

use std::ops::Range;

use crate::rfc5322;

/// Bounds on the work one message may cause (the MIME-bomb class of IMAP server CVEs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most MIME parts (every node of the tree, the message itself included).
    pub max_parts: usize,
    /// Deepest nesting of multiparts and message/rfc822 parts.
    pub max_depth: usize,
    /// Largest header section of any part, in bytes.
    pub max_header: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_parts: 2000,
            max_depth: 50,
            max_header: 1024 * 1024,
        }
    }
}

/// Why a message was not parsed: it is over one of the [`Limits`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// More MIME parts than [`Limits::max_parts`].
    TooManyParts(usize),
    /// Nesting deeper than [`Limits::max_depth`].
    TooDeep(usize),
    /// A header section larger than [`Limits::max_header`] bytes.
    HeaderTooLarge(usize),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::TooManyParts(n) => write!(f, "message has more than {n} MIME parts"),
            ParseError::TooDeep(n) => write!(f, "MIME parts nested deeper than {n}"),
            ParseError::HeaderTooLarge(n) => write!(f, "a header section exceeds {n} bytes"),
        }
    }
}

impl std::error::Error for ParseError {}

/// A part's media type (RFC 2045 §5.1), names lowercased, parameters as written
/// ([`header::ContentType`] keeps RFC 2231 continuations joined but not decoded).
pub type MediaType = header::ContentType;

/// One node of the MIME tree: the message itself, a part of a multipart, or the message inside
/// a message/rfc822 part. Offsets are into the raw file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Where this part's header section starts.
    pub start: usize,
    /// The header fields, without the empty line that ends them.
    pub header: Range<usize>,
    /// The body: after the empty line, up to the line end before the next boundary line (which
    /// RFC 2046 §5.1.1 makes part of the boundary) or the end of the enclosing part.
    pub body: Range<usize>,
    /// Content-Type, or the default (text/plain, message/rfc822 in a multipart/digest).
    pub media: MediaType,
    /// What the body holds.
    pub kind: Kind,
}

/// What a part's body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A leaf: text, image, application ...
    Single,
    /// multipart/*: its parts in order (at least one: a multipart without a boundary or
    /// without parts gets one empty text/plain part).
    Multipart(Vec<Part>),
    /// message/rfc822 (and message/global): the encapsulated message.
    Message(Box<Part>),
}

/// A parsed message: the raw bytes and their MIME tree.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    raw: &'a [u8],
    root: Part,
}

impl<'a> Message<'a> {
    /// Parses `raw` (a whole message file) within `limits`. Any bytes are a message (RFC 3501
    /// has no invalid message: a file without headers is all body of a text/plain message);
    /// only the limits fail.
    pub fn parse(raw: &'a [u8], limits: Limits) -> Result<Message<'a>, ParseError> {
        let mut count = 0;
        let root = parse_part(raw, 0..raw.len(), false, 0, &limits, &mut count)?;
        Ok(Message { raw, root })
    }

    /// [`Message::parse`], or for a message over `limits` the message as one text/plain part
    /// whose MIME structure is not read ([`ParseError`] says why): its bytes (BODY[], RFC822,
    /// HEADER, TEXT, header fields) are still served and searched, as Dovecot serves such a
    /// message, while its structure costs nothing.
    pub fn parse_or_flat(raw: &'a [u8], limits: Limits) -> (Message<'a>, Option<ParseError>) {
        match Message::parse(raw, limits) {
            Ok(m) => (m, None),
            Err(e) => {
                let end = rfc5322::header_end(raw);
                let root = Part {
                    start: 0,
                    header: 0..end.header,
                    body: end.body..raw.len(),
                    media: header::ContentType::default_for(false),
                    kind: Kind::Single,
                };
                (Message { raw, root }, Some(e))
            }
        }
    }

    /// The raw file bytes.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The top of the MIME tree (the message itself).
    pub fn root(&self) -> &Part {
        &self.root
    }

    /// RFC822.SIZE: the message's size in CRLF form (RFC 3501 §6.4.5).
    pub fn size(&self) -> u64 {
        rfc5322::crlf_len(self.raw)
    }

    /// The bytes of `range` of the file.
    pub fn bytes(&self, range: &Range<usize>) -> &'a [u8] {
        self.raw.get(range.clone()).unwrap_or_default()
    }

    /// The header fields of `part`, in order.
    pub fn fields(&self, part: &Part) -> rfc5322::Fields<'a> {
        rfc5322::Fields::new(self.bytes(&part.header))
    }
}

/// Parses the part in `range` of `raw`: header, media type, and (recursively) its sub-parts.
fn parse_part(
    raw: &[u8],
    range: Range<usize>,
    in_digest: bool,
    depth: usize,
    limits: &Limits,
    count: &mut usize,
) -> Result<Part, ParseError> {
    *count += 1;
    if *count > limits.max_parts {
        return Err(ParseError::TooManyParts(limits.max_parts));
    }
    if depth > limits.max_depth {
        return Err(ParseError::TooDeep(limits.max_depth));
    }
    let bytes = &raw[range.clone()];
    let end = rfc5322::header_end(bytes);
    if end.header > limits.max_header {
        return Err(ParseError::HeaderTooLarge(limits.max_header));
    }
    let header = range.start..range.start + end.header;
    let body = range.start + end.body..range.end;
    let fields = rfc5322::Fields::new(&raw[header.clone()]);
    let media = fields
        .clone()
        .find(|f| f.is(b"content-type"))
        .and_then(|f| header::ContentType::parse(f.value))
        .unwrap_or_else(|| header::ContentType::default_for(in_digest));
    let kind = match media.kind.as_str() {
        "multipart" => match media.param("boundary") {
            Some(boundary) if !boundary.is_empty() => {
                let digest = media.subtype == "digest";
                let mut parts = Vec::new();
                for child in split_multipart(raw, body.clone(), boundary.as_bytes()) {
                    parts.push(parse_part(raw, child, digest, depth + 1, limits, count)?);
                }
                if parts.is_empty() {
                    parts.push(empty_part(body.end));
                }
                Kind::Multipart(parts)
            }
            // No boundary: a multipart of one empty text/plain part, as Dovecot shows it (the
            // body cannot be split, and a multipart must have a part).
            _ => Kind::Multipart(vec![empty_part(body.end)]),
        },
        "message" if matches!(media.subtype.as_str(), "rfc822" | "global") => {
            // An encoded message/rfc822 (base64, against RFC 2046 §5.2.1) is opaque bytes.
            let encoded = fields.clone().any(|f| {
                f.is(b"content-transfer-encoding") && {
                    let v = rfc5322::trim(f.value);
                    v.eq_ignore_ascii_case(b"base64") || v.eq_ignore_ascii_case(b"quoted-printable")
                }
            });
            if encoded {
                Kind::Single
            } else {
                let inner = parse_part(raw, body.clone(), false, depth + 1, limits, count)?;
                Kind::Message(Box::new(inner))
            }
        }
        _ => Kind::Single,
    };
    Ok(Part {
        start: range.start,
        header,
        body,
        media,
        kind,
    })
}

/// An empty text/plain part at `at` (stands for the parts of a multipart that has none).
fn empty_part(at: usize) -> Part {
    Part {
        start: at,
        header: at..at,
        body: at..at,
        media: header::ContentType::default_for(false),
        kind: Kind::Single,
    }
}

/// The byte ranges of the parts of a multipart body (RFC 2046 §5.1.1): between boundary
/// lines `--boundary`, each part ending at the line end before the next boundary line (that
/// line end belongs to the boundary). The preamble and the epilogue are no part; without a
/// closing `--boundary--` the last part runs to the end of the body.
fn split_multipart(raw: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut parts = Vec::new();
    let mut current: Option<usize> = None;
    let mut line = body.start;
    while line < body.end {
        let next = raw[line..body.end]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.end, |i| line + i + 1);
        let text = &raw[line..next];
        if text.starts_with(b"--") && text[2..].starts_with(boundary) {
            let after = &text[2 + boundary.len()..];
            if let Some(start) = current {
                parts.push(start..line_end_before(raw, start, line));
            }
            if after.starts_with(b"--") {
                return parts;
            }
            current = Some(next);
        }
        line = next;
    }
    if let Some(start) = current {
        parts.push(start..body.end.max(start));
    }
    parts
}

/// Where the part that starts at `start` ends when a boundary line begins at `line`: before
/// the CRLF (or LF) that precedes the boundary line, never before `start`.
fn line_end_before(raw: &[u8], start: usize, line: usize) -> usize {
    let mut end = line;
    if end > start && raw[end - 1] == b'\n' {
        end -= 1;
        if end > start && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

#[cfg(test)]
mod tests;
