//! Message preparation for submission, sendmail(8) style: reading stdin (`-i`), finding
//! recipients in the headers (`-t`, RFC 5322 §3.6.3 and §3.6.6 for `Resent-*`), removing `Bcc`,
//! and adding `Date`, `Message-ID` and `From` when missing (RFC 5322 §3.6, RFC 6409 §8).
//!
//! Headers are split here (a simple, total function of the bytes); address lists inside them are
//! parsed with mail-parser (groups, comments, encoded words).

use mail_parser::{HeaderValue, MessageParser};

/// Largest message msend reads from stdin.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Largest header section accepted (a bad message, exit 65, beyond it).
pub const MAX_HEADER_SIZE: usize = 1024 * 1024;

/// Why a message cannot be sent as it is (exit 65).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// The header section is larger than [`MAX_HEADER_SIZE`].
    HeadersTooLarge,
    /// A header line that is neither `Name: value` nor a continuation.
    BadHeader(String),
    /// `-t` found no recipient and none was given.
    NoRecipients,
    /// The message is larger than [`MAX_MESSAGE_SIZE`].
    TooLarge,
}

impl std::fmt::Display for MessageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageError::HeadersTooLarge => {
                write!(f, "header section larger than {MAX_HEADER_SIZE} bytes")
            }
            MessageError::BadHeader(l) => write!(f, "malformed header line {l:?}"),
            MessageError::NoRecipients => write!(f, "no recipients"),
            MessageError::TooLarge => write!(f, "message larger than {MAX_MESSAGE_SIZE} bytes"),
        }
    }
}

impl std::error::Error for MessageError {}

/// Cuts the input at a line holding a lone `.` (sendmail without `-i`/`-oi`), dropping it and
/// everything after it.
pub fn cut_at_lone_dot(input: &mut Vec<u8>) {
    let mut start = 0;
    while start < input.len() {
        let end = input[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| start + p)
            .unwrap_or(input.len());
        let line = &input[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line == b"." {
            input.truncate(start);
            return;
        }
        start = end + 1;
    }
}

/// One header field as found in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Field name as written.
    pub name: String,
    /// Raw bytes of the whole field, continuation lines and line ends included.
    pub raw: Vec<u8>,
}

impl Field {
    /// Whether the field is named `name` (case-insensitive, RFC 5322 §1.2.2).
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// Splits a message into its header fields and the rest (the blank line and the body).
/// A message that does not start with headers has none (everything is body).
pub fn split_headers(message: &[u8]) -> Result<(Vec<Field>, &[u8]), MessageError> {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| pos + p + 1)
            .unwrap_or(message.len());
        let line = &message[pos..end];
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            break; // the blank line: body follows
        }
        if pos > MAX_HEADER_SIZE {
            return Err(MessageError::HeadersTooLarge);
        }
        if content[0] == b' ' || content[0] == b'\t' {
            match fields.last_mut() {
                Some(f) => f.raw.extend_from_slice(line),
                None => return Err(MessageError::BadHeader(lossy(content))),
            }
        } else {
            let colon = content.iter().position(|&b| b == b':');
            let name = match colon {
                Some(c) if c > 0 && content[..c].iter().all(|b| (33..=126).contains(b)) => {
                    &content[..c]
                }
                _ => {
                    if fields.is_empty() && pos == 0 {
                        // No header section at all (e.g. `echo hi | msend user`).
                        return Ok((Vec::new(), message));
                    }
                    return Err(MessageError::BadHeader(lossy(content)));
                }
            };
            fields.push(Field {
                name: String::from_utf8_lossy(name).into_owned(),
                raw: line.to_vec(),
            });
        }
        pos = end;
    }
    Ok((fields, &message[pos..]))
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(80).collect()
}

/// Addresses (`local@domain`) in the given header fields, parsed by mail-parser; a bare name
/// (cron's `To: root`) comes out bare, for [`super::names`] to qualify.
pub fn addresses_in(fields: &[&Field]) -> Vec<String> {
    let mut raw = Vec::new();
    for f in fields {
        raw.extend_from_slice(&f.raw);
        if !f.raw.ends_with(b"\n") {
            raw.extend_from_slice(b"\r\n");
        }
    }
    // mail-parser takes a bare name for a display name: mark it as an address first.
    let names: Vec<&str> = fields.iter().map(|f| f.name.trim_end()).collect();
    let mut raw = crate::rfc5322::qualify_header(&raw, &names, super::names::UNQUALIFIED);
    raw.extend_from_slice(b"\r\n");
    let mut out = Vec::new();
    let Some(msg) = MessageParser::new().parse_headers(&raw) else {
        return out;
    };
    for h in msg.headers() {
        if let HeaderValue::Address(a) = &h.value {
            for addr in a.iter() {
                if let Some(s) = addr.address() {
                    let s = s.trim();
                    let s = super::names::unmark(s.to_string());
                    if !s.is_empty() && !out.iter().any(|o: &String| o.eq_ignore_ascii_case(&s)) {
                        out.push(s);
                    }
                }
            }
        }
    }
    out
}

/// What to add when missing, and how to treat recipients.
#[derive(Debug, Clone, Default)]
pub struct Prepare {
    /// `-t`: take recipients from the headers.
    pub extract_recipients: bool,
    /// Address for a missing `From:` (from `-f`, the account, or user@hostname).
    pub from_address: String,
    /// `-F`: full name for a missing `From:`.
    pub full_name: Option<String>,
    /// Host name for `Message-ID`.
    pub hostname: String,
    /// Unix time for `Date` (seconds).
    pub now: i64,
}

/// A message ready to send: final bytes and the recipients found in it.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The message as it goes on the wire (before dot-stuffing), Bcc removed.
    pub message: Vec<u8>,
    /// Recipients from the headers (`-t`), in header order, without duplicates.
    pub header_recipients: Vec<String>,
    /// Address of the first `From:` mailbox, if the message had one.
    pub from_header: Option<String>,
}

/// Prepares a message: adds missing Date, Message-ID and From at the top, extracts recipients
/// with `-t` (only the `Resent-*` fields when there are any, RFC 5322 §3.6.6), removes every
/// `Bcc` and `Resent-Bcc` field (RFC 5322 §3.6.3: recipients must not see it).
pub fn prepare(input: &[u8], p: &Prepare) -> Result<Prepared, MessageError> {
    if input.len() > MAX_MESSAGE_SIZE {
        return Err(MessageError::TooLarge);
    }
    let (fields, rest) = split_headers(input)?;
    let header_recipients = if p.extract_recipients {
        let resent: Vec<&Field> = fields
            .iter()
            .filter(|f| f.is("Resent-To") || f.is("Resent-Cc") || f.is("Resent-Bcc"))
            .collect();
        let chosen = if resent.is_empty() {
            fields
                .iter()
                .filter(|f| f.is("To") || f.is("Cc") || f.is("Bcc"))
                .collect()
        } else {
            resent
        };
        addresses_in(&chosen)
    } else {
        Vec::new()
    };
    let from_fields: Vec<&Field> = fields.iter().filter(|f| f.is("From")).collect();
    let from_header = addresses_in(&from_fields).into_iter().next();
    let has = |n: &str| fields.iter().any(|f| f.is(n));
    let mut out = Vec::with_capacity(input.len() + 256);
    if !has("From") {
        let addr = &p.from_address;
        match p.full_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => {
                let quoted = crate::rfc5322::encode_words(
                    name,
                    crate::rfc5322::WordContext::Phrase,
                    "From: ".len(),
                );
                out.extend_from_slice(format!("From: {quoted} <{addr}>\r\n").as_bytes());
            }
            None => out.extend_from_slice(format!("From: {addr}\r\n").as_bytes()),
        }
    }
    if !has("Date") {
        let date = mail_builder::headers::date::Date::new(p.now).to_rfc822();
        out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    if !has("Message-ID") {
        out.extend_from_slice(
            format!("Message-ID: <{}@{}>\r\n", unique_id(p.now), p.hostname).as_bytes(),
        );
    }
    for f in &fields {
        if f.is("Bcc") || f.is("Resent-Bcc") {
            continue;
        }
        out.extend_from_slice(&f.raw);
        if !f.raw.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    if fields.is_empty() && !rest.is_empty() {
        // No header section in the input: the blank line separates our headers from the body.
        out.extend_from_slice(b"\r\n");
    } else if rest.is_empty() && !out.is_empty() {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(rest);
    Ok(Prepared {
        message: out,
        header_recipients,
        from_header,
    })
}

/// A unique local part for Message-ID: time, process id and randomness.
pub fn unique_id(now: i64) -> String {
    let r: u64 = rand::random();
    format!("{now}.{}.{r:016x}", std::process::id())
}

/// Splits sendmail-style recipient arguments: several addresses may be given in one argument
/// separated by commas.
pub fn split_recipient_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for a in args {
        for part in a.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            // Accept `Name <addr>` as well as the bare address.
            out.push(super::compose::split_mailbox(part).1);
        }
    }
    out
}

/// Removes repeated recipients, keeping the first of each in order. Two addresses are the same
/// when their local parts are equal and their domains equal ignoring case: the local part may
/// be case-sensitive (RFC 5321 §2.4), the domain never is. A recipient named twice (`-t` with
/// `To: a, Bcc: a`, or `--to a --bcc a`) gets one RCPT and one copy.
pub fn dedup_recipients(rcpts: &mut Vec<String>) {
    let key = |r: &str| match r.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => r.to_string(),
    };
    let mut seen = std::collections::HashSet::new();
    rcpts.retain(|r| seen.insert(key(r)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_the_first_of_each_and_folds_only_the_domain() {
        let mut r: Vec<String> = [
            "a@x.test", "b@x.test", "a@X.TEST", "A@x.test", "b@x.test", "c",
        ]
        .map(String::from)
        .to_vec();
        dedup_recipients(&mut r);
        assert_eq!(r, ["a@x.test", "b@x.test", "A@x.test", "c"]);
    }

    fn prep(t: bool) -> Prepare {
        Prepare {
            extract_recipients: t,
            from_address: "me@host.test".into(),
            full_name: Some("Me Myself".into()),
            hostname: "host.test".into(),
            now: 1_700_000_000,
        }
    }

    #[test]
    fn lone_dot_cuts_input() {
        let mut v = b"a\n.\nb\n".to_vec();
        cut_at_lone_dot(&mut v);
        assert_eq!(v, b"a\n");
        let mut v = b"a\r\n..\r\n.x\r\n.\r\n".to_vec();
        cut_at_lone_dot(&mut v);
        assert_eq!(v, b"a\r\n..\r\n.x\r\n");
    }

    #[test]
    fn extracts_and_removes_bcc() {
        let m = b"To: A <a@x.test>, b@x.test\nCc: c@x.test\nBcc: secret@x.test,\n d@x.test\nSubject: hi\n\n.body\n";
        let p = prepare(m, &prep(true)).unwrap();
        assert_eq!(
            p.header_recipients,
            vec![
                "a@x.test",
                "b@x.test",
                "c@x.test",
                "secret@x.test",
                "d@x.test"
            ]
        );
        let s = String::from_utf8(p.message).unwrap();
        assert!(!s.contains("secret"), "{s}");
        assert!(!s.contains("d@x.test"), "{s}");
        assert!(
            s.starts_with("From: Me Myself <me@host.test>\r\nDate: "),
            "{s}"
        );
        assert!(s.contains("\r\nMessage-ID: <"));
        assert!(s.ends_with("Subject: hi\n\n.body\n"));
    }

    #[test]
    fn resent_fields_win() {
        let m = b"To: a@x.test\nResent-To: r@x.test\nResent-Bcc: rb@x.test\nFrom: f@x.test\n\nb";
        let p = prepare(m, &prep(true)).unwrap();
        assert_eq!(p.header_recipients, vec!["r@x.test", "rb@x.test"]);
        assert_eq!(p.from_header.as_deref(), Some("f@x.test"));
        assert!(!String::from_utf8_lossy(&p.message).contains("rb@x.test"));
    }

    #[test]
    fn no_headers_at_all() {
        let p = prepare(b"just a body\n", &prep(false)).unwrap();
        let s = String::from_utf8(p.message).unwrap();
        assert!(s.ends_with("\r\n\r\njust a body\n"), "{s}");
        let p = prepare(b"", &prep(false)).unwrap();
        assert!(String::from_utf8(p.message).unwrap().ends_with(">\r\n\r\n"));
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(matches!(
            prepare(b"To: a@x.test\nbad line here\n\nx", &prep(true)),
            Err(MessageError::BadHeader(_))
        ));
        let mut big = b"X-A: ".to_vec();
        big.resize(MAX_HEADER_SIZE + 10, b'a');
        big.extend_from_slice(b"\nX-B: b\n\nbody");
        // One huge field is allowed up to the point a new line starts beyond the limit.
        assert_eq!(
            prepare(&big, &prep(false)).unwrap_err(),
            MessageError::HeadersTooLarge
        );
    }

    #[test]
    fn a_non_ascii_full_name_is_rfc2047_encoded_in_from() {
        let mut p = prep(false);
        p.full_name = Some("Jörg Müller".into());
        let out = prepare(b"Subject: x\r\n\r\nbody\r\n", &p).unwrap();
        let text = String::from_utf8(out.message).unwrap();
        assert!(
            text.starts_with("From: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <me@host.test>\r\n"),
            "{text}"
        );
    }

    #[test]
    fn recipient_args_are_split_at_commas() {
        assert_eq!(
            split_recipient_args(&["a@x, B <b@y>".into(), "c@z".into()]),
            vec!["a@x", "b@y", "c@z"]
        );
    }
}
