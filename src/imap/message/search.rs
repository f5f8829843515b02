//! SEARCH (RFC 3501 §6.4.4) for one message: every search key against the message's metadata
//! ([`Meta`]: sequence number, UID, flags, internal date, size) and, only for the keys that
//! need it ([`needs_content`]), its content ([`Content`]).
//!
//! Text keys match *decoded* text, case-insensitively, as a substring (RFC 3501 §6.4.4: "In
//! all search keys that use strings, a message matches the key if the string is a substring of
//! the field. The matching is case-insensitive."): header values with RFC 2047 encoded words
//! decoded, bodies with their quoted-printable or base64 undone and their charset converted to
//! UTF-8 — never a byte grep of the file.

use chrono::NaiveDate;
use imap_types::core::AString;
use imap_types::flag::Flag;
use imap_types::search::SearchKey;
use imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::parsers::MessageStream;
use mail_parser::HeaderValue;

use super::{Kind, Message, Part};
use crate::rfc5322::unfold;

/// What SEARCH knows of a message without reading its file.
#[derive(Debug, Clone)]
pub struct Meta<'a> {
    /// Message sequence number.
    pub seq: u32,
    /// UID.
    pub uid: u32,
    /// The highest sequence number in the mailbox (what `*` means in a sequence set).
    pub max_seq: u32,
    /// The highest UID in the mailbox (what `*` means in a UID set).
    pub max_uid: u32,
    /// The message's flags (\Recent aside).
    pub flags: &'a [Flag<'a>],
    /// Whether this session sees the message as \Recent (RFC 3501 §2.3.2).
    pub recent: bool,
    /// The day of the internal date in the server's time zone (RFC 3501 §6.4.4: BEFORE, ON
    /// and SINCE compare dates "disregarding time and timezone").
    pub internal_day: NaiveDate,
    /// RFC822.SIZE.
    pub size: u64,
}

/// Whether evaluating `key` reads the message file: header, body and text keys and the Date:
/// header's SENT* keys do; flags, dates, sizes and sets do not.
pub fn needs_content(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(needs_content),
        SearchKey::Not(k) => needs_content(k),
        SearchKey::Or(a, b) => needs_content(a) || needs_content(b),
        SearchKey::Bcc(_)
        | SearchKey::Body(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::Header(..)
        | SearchKey::Subject(_)
        | SearchKey::Text(_)
        | SearchKey::To(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => true,
        _ => false,
    }
}

/// A message's searchable text, decoded once for all the keys of a SEARCH.
#[derive(Debug, Clone)]
pub struct Content {
    /// The top-level header fields: lowercase name, decoded lowercase value.
    fields: Vec<(String, String)>,
    /// The decoded, lowercased text of every part body.
    body: String,
    /// The decoded, lowercased header fields of encapsulated messages (searched by TEXT only).
    nested: String,
    /// The Date: header's day as written (RFC 3501 §6.4.4: SENT* disregard time and zone).
    sent: Option<NaiveDate>,
}

/// RFC 2047 decoding of one unstructured header value (as mail-parser does it).
fn decode_header_value(value: &[u8]) -> String {
    let mut v = value.to_vec();
    v.push(b'\n');
    match MessageStream::new(&v).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        _ => String::from_utf8_lossy(&unfold(value)).into_owned(),
    }
}

fn fold_case(s: &str) -> String {
    s.to_lowercase()
}

/// The decoded text of a leaf part: transfer encoding undone (RFC 2045 §6), charset converted
/// (text parts; RFC 2046 §4.1.2), anything undecodable kept as it is.
fn decoded_body(msg: &Message<'_>, part: &Part) -> String {
    let raw = msg.bytes(&part.body);
    let cte = msg
        .fields(part)
        .find(|f| f.is(b"content-transfer-encoding"))
        .map(|f| unfold(f.value).to_ascii_lowercase());
    let bytes = match cte.as_deref() {
        Some(b"base64") => base64_decode(raw).unwrap_or_else(|| raw.to_vec()),
        Some(b"quoted-printable") => quoted_printable_decode(raw).unwrap_or_else(|| raw.to_vec()),
        _ => raw.to_vec(),
    };
    match part
        .media
        .param("charset")
        .and_then(|c| charset_decoder(c.as_bytes()))
    {
        Some(decode) if part.media.kind == "text" => decode(&bytes),
        _ => String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn collect_body(msg: &Message<'_>, part: &Part, out: &mut String, nested: &mut String) {
    match &part.kind {
        Kind::Multipart(children) => {
            for c in children {
                collect_body(msg, c, out, nested);
            }
        }
        // Dovecot's BODY does not search an encapsulated message's header, its TEXT does:
        // the header goes to `nested`, which only TEXT reads.
        Kind::Message(inner) => {
            for f in msg.fields(inner) {
                nested.push_str(&fold_case(&String::from_utf8_lossy(f.name)));
                nested.push_str(": ");
                nested.push_str(&fold_case(&decode_header_value(f.value)));
                nested.push('\n');
            }
            collect_body(msg, inner, out, nested);
        }
        Kind::Single => {
            out.push_str(&fold_case(&decoded_body(msg, part)));
            out.push('\n');
        }
    }
}

/// The day of an RFC 5322 §3.3 date-time as written (`[day-of-week ","] day month year ...`,
/// obsolete two-digit years as §4.3 reads them), time and zone ignored as RFC 3501 §6.4.4's
/// SENT* keys want.
pub fn date_as_written(value: &str) -> Option<NaiveDate> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let mut words = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .peekable();
    if words.peek()?.chars().all(|c| c.is_ascii_alphabetic()) {
        words.next();
    }
    let day: u32 = words.next()?.parse().ok()?;
    let month = words.next()?.to_ascii_lowercase();
    let month = MONTHS.iter().position(|m| month.starts_with(m))? as u32 + 1;
    let year_text = words.next()?;
    let mut year: i32 = year_text.parse().ok()?;
    if year_text.len() <= 2 {
        year += if year < 50 { 2000 } else { 1900 };
    } else if year_text.len() == 3 {
        year += 1900;
    }
    NaiveDate::from_ymd_opt(year, month, day)
}

impl Content {
    /// Decodes `msg`'s searchable text.
    pub fn new(msg: &Message<'_>) -> Content {
        let root = msg.root();
        let fields: Vec<(String, String)> = msg
            .fields(root)
            .map(|f| {
                (
                    String::from_utf8_lossy(f.name).to_ascii_lowercase(),
                    fold_case(&decode_header_value(f.value)),
                )
            })
            .collect();
        let sent = msg
            .fields(root)
            .find(|f| f.is(b"date"))
            .and_then(|f| date_as_written(&String::from_utf8_lossy(&unfold(f.value))));
        let mut body = String::new();
        let mut nested = String::new();
        collect_body(msg, root, &mut body, &mut nested);
        Content {
            fields,
            body,
            nested,
            sent,
        }
    }

    fn header_has(&self, name: &str, needle: &str) -> bool {
        self.fields
            .iter()
            .any(|(n, v)| n == name && v.contains(needle))
    }
}

fn needle(s: &AString<'_>) -> String {
    fold_case(&String::from_utf8_lossy(s.as_ref()))
}

fn in_set(set: &SequenceSet, value: u32, largest: u32) -> bool {
    let largest = largest.max(1);
    set.0.as_ref().iter().any(|s| {
        let v = |x: &SeqOrUid| match x {
            SeqOrUid::Value(n) => n.get(),
            SeqOrUid::Asterisk => largest,
        };
        match s {
            Sequence::Single(x) => v(x) == value,
            Sequence::Range(a, b) => {
                let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
                (lo..=hi).contains(&value)
            }
        }
    })
}

fn has_flag(meta: &Meta<'_>, flag: &Flag<'_>) -> bool {
    meta.flags.iter().any(|f| match (f, flag) {
        (Flag::Keyword(a), Flag::Keyword(b)) => a.as_ref().eq_ignore_ascii_case(b.as_ref()),
        _ => f == flag,
    })
}

fn day(d: &imap_types::datetime::NaiveDate) -> NaiveDate {
    *d.as_ref()
}

/// Whether the message matches `key`. `content` is needed only when [`needs_content`] says
/// so; without it a content key does not match.
pub fn matches(key: &SearchKey<'_>, meta: &Meta<'_>, content: Option<&Content>) -> bool {
    let text = |f: &dyn Fn(&Content) -> bool| content.is_some_and(f);
    // RFC 3501 §6.4.4 leaves a message without a (valid) Date: to the server; Dovecot dates
    // it at the epoch, so do the same.
    let sent = || {
        content
            .and_then(|c| c.sent)
            .unwrap_or(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default())
    };
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| matches(k, meta, content)),
        SearchKey::Or(a, b) => matches(a, meta, content) || matches(b, meta, content),
        SearchKey::Not(k) => !matches(k, meta, content),
        SearchKey::All => true,
        SearchKey::SequenceSet(set) => in_set(set, meta.seq, meta.max_seq),
        SearchKey::Uid(set) => in_set(set, meta.uid, meta.max_uid),
        SearchKey::Answered => has_flag(meta, &Flag::Answered),
        SearchKey::Deleted => has_flag(meta, &Flag::Deleted),
        SearchKey::Draft => has_flag(meta, &Flag::Draft),
        SearchKey::Flagged => has_flag(meta, &Flag::Flagged),
        SearchKey::Seen => has_flag(meta, &Flag::Seen),
        SearchKey::Unanswered => !has_flag(meta, &Flag::Answered),
        SearchKey::Undeleted => !has_flag(meta, &Flag::Deleted),
        SearchKey::Undraft => !has_flag(meta, &Flag::Draft),
        SearchKey::Unflagged => !has_flag(meta, &Flag::Flagged),
        SearchKey::Unseen => !has_flag(meta, &Flag::Seen),
        SearchKey::Keyword(k) => has_flag(meta, &Flag::Keyword(k.clone())),
        SearchKey::Unkeyword(k) => !has_flag(meta, &Flag::Keyword(k.clone())),
        SearchKey::Recent => meta.recent,
        SearchKey::Old => !meta.recent,
        // NEW = RECENT UNSEEN (RFC 3501 §6.4.4).
        SearchKey::New => meta.recent && !has_flag(meta, &Flag::Seen),
        SearchKey::Before(d) => meta.internal_day < day(d),
        SearchKey::On(d) => meta.internal_day == day(d),
        SearchKey::Since(d) => meta.internal_day >= day(d),
        SearchKey::SentBefore(d) => content.is_some() && sent() < day(d),
        SearchKey::SentOn(d) => content.is_some() && sent() == day(d),
        SearchKey::SentSince(d) => content.is_some() && sent() >= day(d),
        SearchKey::Larger(n) => meta.size > u64::from(*n),
        SearchKey::Smaller(n) => meta.size < u64::from(*n),
        SearchKey::Bcc(s) => text(&|c| c.header_has("bcc", &needle(s))),
        SearchKey::Cc(s) => text(&|c| c.header_has("cc", &needle(s))),
        SearchKey::From(s) => text(&|c| c.header_has("from", &needle(s))),
        SearchKey::To(s) => text(&|c| c.header_has("to", &needle(s))),
        SearchKey::Subject(s) => text(&|c| c.header_has("subject", &needle(s))),
        SearchKey::Header(name, s) => text(&|c| {
            c.header_has(
                &String::from_utf8_lossy(name.as_ref()).to_ascii_lowercase(),
                &needle(s),
            )
        }),
        SearchKey::Body(s) => text(&|c| c.body.contains(&needle(s))),
        SearchKey::Text(s) => text(&|c| {
            let n = needle(s);
            c.fields
                .iter()
                .any(|(name, v)| v.contains(&n) || name.contains(&n))
                || c.body.contains(&n)
                || c.nested.contains(&n)
        }),
    }
}

/// The day of a Unix time `secs` at UTC offset `offset_secs` (for [`Meta::internal_day`]).
pub fn day_of(secs: i64, offset_secs: i32) -> NaiveDate {
    chrono::DateTime::from_timestamp(secs + i64::from(offset_secs), 0)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}
