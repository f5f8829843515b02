//! Delivery status notifications (RFC 3464): the bounce and delay-warning messages mrelayd sends
//! back to an envelope sender. Pure: bytes in, bytes out, no IO.
//!
//! [`build`] returns a complete RFC 5322 message (CRLF line ends), `multipart/report;
//! report-type=delivery-status` (RFC 6522) with three parts:
//! 1. `text/plain`: a plain-English explanation (which recipients, why), in the style of Postfix's
//!    bounce messages;
//! 2. `message/delivery-status`: the machine-readable report (RFC 3464 §2), always 7-bit ASCII;
//! 3. `message/rfc822` with the original message, or `text/rfc822-headers` with only its header
//!    section: for RET=HDRS, for every report that is not a failure (RFC 3461 §4.3 asks for
//!    the full content only in failed DSNs), and when the message is larger than
//!    [`MAX_RETURNED_MESSAGE`] (as Postfix does beyond its `bounce_size_limit`).
//!
//! The MIME structure is written by `mail-builder`: a leaf part that carries its own
//! `Content-Transfer-Encoding` header is written verbatim, which is exactly what parts 2 and 3
//! need (RFC 2046 §5.2.1: message/rfc822 may only be 7bit, 8bit or binary, never re-encoded).
//!
//! Internationalised addresses (RFC 6533): a non-ASCII address is reported with the `utf-8`
//! address type in its `utf-8-addr-xtext` form (`\x{HEX}` escapes), the form RFC 6533 §3 requires
//! inside a plain `message/delivery-status`; the human-readable part shows it as UTF-8.

use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{make_boundary, MimePart};
use mail_builder::MessageBuilder;

use crate::clock::{self, rfc5322_date};
use crate::outbound::failure::parse_enhanced;
use crate::rfc5322::{self, to_crlf};
use crate::smtp::command::MAX_DOMAIN;

/// Largest original message returned in full in a failure DSN; beyond it only the header section
/// is returned, and part 1 says so (Postfix's `bounce_size_limit` default).
pub const MAX_RETURNED_MESSAGE: usize = 50_000;
/// Largest header section returned in a `text/rfc822-headers` part; longer ones are cut at a line
/// end (Postfix's `header_size_limit` default).
pub const MAX_RETURNED_HEADERS: usize = 102_400;
/// Longest Diagnostic-Code text kept (characters after folding a multi-line reply to one line);
/// RFC 5321 replies are at most 512 octets a line, this leaves room for several lines.
pub const MAX_DIAGNOSTIC: usize = 4096;
/// Part 1 is wrapped at this many columns (plain ASCII then stays 7bit: mail-builder
/// quoted-printable-encodes lines longer than 76).
pub const TEXT_WIDTH: usize = 72;
/// Header fields of the report are folded at spaces to stay within this many columns
/// (RFC 5322 §2.1.1: SHOULD be at most 78).
pub const FOLD_WIDTH: usize = 78;
/// A word longer than this is broken even without a space, so no line comes near the hard
/// limit of 998 octets (RFC 5322 §2.1.1).
pub const MAX_UNBROKEN_WORD: usize = 900;
/// Longest envelope sender written into the To: field. Real ones are at most 256 octets
/// (RFC 5321 §4.5.3.1.3, [`crate::smtp::command::MAX_PATH`]); only garbage is longer, and it is cut so the header line
/// stays below 998 octets.
pub const MAX_HEADER_ADDRESS: usize = 900;
/// Tries at finding a MIME boundary that does not occur in the returned message.
const BOUNDARY_TRIES: usize = 16;

/// What happened to one recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnAction {
    /// Could not be delivered and will not be retried.
    Failed,
    /// Not delivered yet; still being retried.
    Delayed,
    /// Delivered to the recipient's mailbox.
    Delivered,
    /// Handed to a system that does not send DSNs itself.
    Relayed,
    /// Delivered, then forwarded to several addresses (alias or list expansion).
    Expanded,
}

impl DsnAction {
    /// The `Action:` field value.
    pub fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
            DsnAction::Expanded => "expanded",
        }
    }

    /// The status class to fall back to when a recipient's status is not a valid code.
    fn default_status(self) -> &'static str {
        match self {
            DsnAction::Failed => "5.0.0",
            DsnAction::Delayed => "4.0.0",
            _ => "2.0.0",
        }
    }
}

/// One per-recipient block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// The address delivery was attempted to → `Final-Recipient: rfc822; address` (`utf-8;`
    /// with RFC 6533 escapes when it is not ASCII).
    pub address: String,
    /// ORCPT as stored (`rfc822;user@x`), xtext-encoded or not → `Original-Recipient`.
    pub orcpt: Option<String>,
    /// What happened.
    pub action: DsnAction,
    /// RFC 3463 status code (`5.1.1`); an invalid one is replaced by `5.0.0`/`4.0.0`/`2.0.0`
    /// after the action.
    pub status: String,
    /// The full remote reply (`550 5.1.1 <x@y>: no such user`, multi-line replies are folded to
    /// one line) → `Diagnostic-Code: smtp; ...`. A text that is not an SMTP reply (a local
    /// error such as "connection refused") is typed `x-mailkit` instead of `smtp`.
    pub diagnostic: Option<String>,
    /// The server that answered (`mx1.example.test`) → `Remote-MTA: dns; mx1.example.test`.
    pub remote_mta: Option<String>,
    /// Unix seconds of the last attempt → `Last-Attempt-Date`.
    pub last_attempt: Option<u64>,
    /// Unix seconds until which a delayed recipient is retried → `Will-Retry-Until`.
    pub will_retry_until: Option<u64>,
}

/// What part 3 holds (RFC 3461 §4.3 RET).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsnReturn {
    /// The whole message (`message/rfc822`), within [`MAX_RETURNED_MESSAGE`].
    Full,
    /// Its header section only (`text/rfc822-headers`).
    Headers,
}

/// Everything [`build`] needs.
#[derive(Debug, Clone)]
pub struct DsnInput<'a> {
    /// Our hostname → `Reporting-MTA: dns; ...`, `From: MAILER-DAEMON@...`, the Message-ID.
    pub reporting_mta: &'a str,
    /// The report offers `postmaster@` this domain for help: a local domain of the mrelayd
    /// that sends it ([`crate::relay::Router::postmaster`]), so that mrelayd accepts the
    /// address (RFC 5321 §4.5.1; the hostname need not be a local domain).
    pub postmaster_domain: &'a str,
    /// ENVID (xtext-encoded or not) → `Original-Envelope-Id`.
    pub envid: Option<&'a str>,
    /// Unix seconds the message was accepted → `Arrival-Date`.
    pub arrival: u64,
    /// The envelope sender; the DSN goes `To:` this address.
    pub original_sender: &'a str,
    /// One block each, in this order.
    pub recipients: Vec<DsnRecipient>,
    /// What part 3 holds (failure reports only; other reports always return headers).
    pub ret: DsnReturn,
    /// The original message as queued (LF or CRLF line ends).
    pub message: &'a [u8],
    /// Unix seconds now → `Date`.
    pub now: u64,
}

/// The complete DSN message (RFC 5322 bytes, CRLF): From `MAILER-DAEMON@<reporting_mta>`, To the
/// original sender, Subject "Undelivered Mail Returned to Sender" when any recipient failed,
/// "Delayed Mail (still being retried)" when any is delayed, else "Successful Mail Delivery
/// Report"; `Auto-Submitted: auto-replied` (RFC 3834 §5), Date, Message-ID, MIME-Version and
/// `multipart/report; report-type=delivery-status` with the three parts described at the top.
pub fn build(input: &DsnInput) -> Vec<u8> {
    let host = host_token(input.reporting_mta);
    let failed = input
        .recipients
        .iter()
        .any(|r| r.action == DsnAction::Failed);
    let delayed = input
        .recipients
        .iter()
        .any(|r| r.action == DsnAction::Delayed);
    let subject = if failed {
        "Undelivered Mail Returned to Sender"
    } else if delayed {
        "Delayed Mail (still being retried)"
    } else {
        "Successful Mail Delivery Report"
    };

    let returned = returned_part(input.message, input.ret, failed);
    let human = human_text(input, &host, failed, delayed, &returned);
    let report = delivery_status(input, &host);

    // A boundary that cannot be confused with a line of the returned message (RFC 2046 §5.1.1).
    let mut boundary = make_boundary("_");
    for _ in 0..BOUNDARY_TRIES {
        if !contains(&returned.bytes, boundary.as_bytes()) {
            break;
        }
        boundary = make_boundary("_");
    }

    let part3_type = match returned.kind {
        Kind::Full => "message/rfc822",
        Kind::Headers(_) => "text/rfc822-headers",
    };
    let part3_cte = if returned.bytes.iter().any(|&b| b >= 0x80 || b == 0) {
        "8bit"
    } else {
        "7bit"
    };
    let part3_desc = match returned.kind {
        Kind::Full => "Undelivered Message",
        Kind::Headers(_) if failed => "Undelivered Message Headers",
        Kind::Headers(_) => "Message Headers",
    };
    let parts = vec![
        MimePart::new(
            ContentType::new("text/plain").attribute("charset", "utf-8"),
            human,
        )
        .header("Content-Description", Raw::new("Notification")),
        MimePart::new("message/delivery-status", report.into_bytes())
            .header("Content-Description", Raw::new("Delivery report"))
            .transfer_encoding("7bit"),
        MimePart::new(part3_type, returned.bytes)
            .header("Content-Description", Raw::new(part3_desc))
            .transfer_encoding(part3_cte),
    ];

    let mut sender: String = input
        .original_sender
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    sender.truncate(floor_char_boundary(&sender, MAX_HEADER_ADDRESS));
    let message_id = format!(
        "{}.{:016x}@{}",
        input.now,
        rand::random::<u64>(),
        host_token_for_id(&host)
    );
    let mut out = Vec::new();
    MessageBuilder::new()
        .from(Address::new_address(
            Some("Mail Delivery System"),
            format!("MAILER-DAEMON@{host}"),
        ))
        .to(Address::new_address(None::<&str>, sender))
        .subject(subject)
        .date(clock::date(input.now))
        .message_id(MessageId::new(message_id))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .header("MIME-Version", Raw::new("1.0"))
        .body(
            // Raw, so report-type stays an unquoted token as in RFC 6522's examples (mail-builder
            // would quote it; equivalent, but some parsers and greps expect the plain form).
            MimePart::raw(parts)
                .header(
                    "Content-Type",
                    Raw::new(format!(
                        "multipart/report; report-type=delivery-status; boundary=\"{boundary}\""
                    )),
                )
                .header(
                    "Content-Description",
                    Raw::new("Delivery Status Notification"),
                ),
        )
        .serialize(&mut out);
    out
}

/// The status written for `r`: its own when valid, else the action's generic one.
fn status_for(r: &DsnRecipient) -> String {
    match parse_enhanced(r.status.trim()) {
        Some((c, s, d)) => format!("{c}.{s}.{d}"),
        None => r.action.default_status().to_string(),
    }
}

/// Why part 3 holds only headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadersWhy {
    /// RET=HDRS, or a report that is not a failure.
    Asked,
    /// The message is larger than [`MAX_RETURNED_MESSAGE`].
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Full,
    Headers(HeadersWhy),
}

/// Part 3's content, CRLF line ends.
struct Returned {
    kind: Kind,
    bytes: Vec<u8>,
    /// The header section was longer than [`MAX_RETURNED_HEADERS`] and was cut.
    truncated: bool,
}

fn returned_part(message: &[u8], ret: DsnReturn, failed: bool) -> Returned {
    if ret == DsnReturn::Full && failed {
        let full = to_crlf(message);
        if full.len() <= MAX_RETURNED_MESSAGE {
            return Returned {
                kind: Kind::Full,
                bytes: full,
                truncated: false,
            };
        }
    }
    let why = if ret == DsnReturn::Full && failed {
        HeadersWhy::TooLarge
    } else {
        HeadersWhy::Asked
    };
    let end = rfc5322::header_end(message).header;
    let mut head = &message[..end];
    let mut truncated = false;
    if head.len() > MAX_RETURNED_HEADERS {
        truncated = true;
        let cut = &head[..MAX_RETURNED_HEADERS];
        head = match cut.iter().rposition(|&b| b == b'\n') {
            Some(i) => &cut[..=i],
            None => cut,
        };
    }
    let mut bytes = to_crlf(head);
    if !bytes.is_empty() && !bytes.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    Returned {
        kind: Kind::Headers(why),
        bytes,
        truncated,
    }
}

/// The largest index `<= at` that is a char boundary of `s` (`s.len()` when `at` is beyond it).
fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut i = at;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Part 2, the `message/delivery-status` body (RFC 3464 §2.1-2.3): the per-message block, then
/// one block per recipient, each ended by an empty line. 7-bit ASCII throughout.
fn delivery_status(input: &DsnInput, host: &str) -> String {
    let mut out = String::new();
    if let Some(envid) = input.envid {
        // RFC 3464 §2.2.1: the ENVID as given to us, xtext-decoded.
        let envid = field_text(&xtext_decode_lenient(envid));
        if !envid.is_empty() {
            push_field(&mut out, "Original-Envelope-Id", &envid);
        }
    }
    push_field(
        &mut out,
        "Reporting-MTA",
        &format!("dns; {}", field_text(host)),
    );
    push_field(&mut out, "Arrival-Date", &rfc5322_date(input.arrival));
    for r in &input.recipients {
        out.push_str("\r\n");
        if let Some(orcpt) = r.orcpt.as_deref().and_then(original_recipient) {
            push_field(&mut out, "Original-Recipient", &orcpt);
        }
        push_field(&mut out, "Final-Recipient", &typed_address(&r.address));
        push_field(&mut out, "Action", r.action.as_str());
        push_field(&mut out, "Status", &status_for(r));
        if let Some(mta) = r.remote_mta.as_deref().map(field_text) {
            if !mta.is_empty() {
                push_field(&mut out, "Remote-MTA", &format!("dns; {mta}"));
            }
        }
        if let Some(d) = r.diagnostic.as_deref() {
            let text = diagnostic_text(d);
            if !text.is_empty() {
                let kind = if looks_like_smtp_reply(&text) {
                    "smtp"
                } else {
                    "x-mailkit"
                };
                push_field(&mut out, "Diagnostic-Code", &format!("{kind}; {text}"));
            }
        }
        if let Some(t) = r.last_attempt {
            push_field(&mut out, "Last-Attempt-Date", &rfc5322_date(t));
        }
        if let Some(t) = r.will_retry_until {
            push_field(&mut out, "Will-Retry-Until", &rfc5322_date(t));
        }
    }
    out
}

/// Appends `Name: value` CRLF, folded at spaces (RFC 5322 §2.2.3) so that unfolding gives back
/// `value` exactly. `value` must be ASCII without line breaks or runs of spaces ([`field_text`]).
fn push_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut col = name.len() + 1;
    for word in value.split(' ') {
        if col + 1 + word.len() > FOLD_WIDTH && col > 1 {
            out.push_str("\r\n");
            col = 0;
        }
        out.push(' ');
        col += 1;
        let mut rest = word;
        while rest.len() > MAX_UNBROKEN_WORD {
            // Only a word of garbage gets here: breaking it inserts a space, but keeps every line
            // far below 998 octets.
            let (head, tail) = rest.split_at(floor_char_boundary(rest, MAX_UNBROKEN_WORD).max(1));
            out.push_str(head);
            out.push_str("\r\n ");
            col = 1;
            rest = tail;
        }
        out.push_str(rest);
        col += rest.len();
    }
    out.push_str("\r\n");
}

/// A value fit for a report field: non-ASCII characters as RFC 6533 `\x{HEX}` escapes, control
/// characters and line breaks as spaces, runs of whitespace collapsed, trimmed.
fn field_text(s: &str) -> String {
    let mut ascii = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_control() {
            ascii.push(' ');
        } else if c.is_ascii() {
            ascii.push(c);
        } else {
            ascii.push_str(&format!("\\x{{{:X}}}", c as u32));
        }
    }
    ascii.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A remote reply for Diagnostic-Code: lines joined by one space, made ASCII, bounded.
fn diagnostic_text(d: &str) -> String {
    let mut t = field_text(d);
    if t.len() > MAX_DIAGNOSTIC {
        t.truncate(floor_char_boundary(&t, MAX_DIAGNOSTIC));
        t.push_str("...");
    }
    t
}

/// `250`, `550 text`, `550-text`: a reply code 2xx-5xx opening the text (RFC 5321 §4.2).
fn looks_like_smtp_reply(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() >= 3
        && matches!(b[0], b'2'..=b'5')
        && b[1].is_ascii_digit()
        && b[2].is_ascii_digit()
        && matches!(b.get(3), None | Some(b' ') | Some(b'-'))
}

/// `rfc822; addr` for an ASCII address, else `utf-8; ` and the RFC 6533 utf-8-addr-xtext form.
fn typed_address(addr: &str) -> String {
    let addr: String = addr.chars().filter(|c| !c.is_control()).collect();
    let addr = addr.trim();
    if addr.is_ascii() && !addr.contains(' ') {
        format!("rfc822; {addr}")
    } else if addr.is_ascii() {
        // A quoted local part with spaces: still rfc822, spaces kept single for folding.
        format!("rfc822; {}", field_text(addr))
    } else {
        format!("utf-8; {}", utf8_addr_xtext(addr))
    }
}

/// RFC 6533 §3 utf-8-addr-xtext: QCHAR (printable ASCII except `+`, `=`, `\`) as is, anything
/// else as `\x{HEX}` (upper-case hex, no leading zeros beyond two digits).
fn utf8_addr_xtext(addr: &str) -> String {
    let mut out = String::with_capacity(addr.len() + 16);
    for c in addr.chars() {
        if matches!(c, '\x21'..='\x7e') && !matches!(c, '+' | '=' | '\\') {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:02X}}}", c as u32));
        }
    }
    out
}

/// Undoes [`utf8_addr_xtext`]: `\x{HEX}` escapes back to characters; anything else is kept.
fn utf8_addr_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\\x{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let decoded = after.find('}').and_then(|j| {
            let hex = &after[..j];
            let ok = (1..=6).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit());
            let c = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
            ok.then_some(c).flatten().map(|c| (c, j))
        });
        match decoded {
            Some((c, j)) => {
                out.push(c);
                rest = &after[j + 1..];
            }
            None => {
                out.push_str("\\x{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `Original-Recipient` value from a stored ORCPT (`type;address`, RFC 3461 §4.2, RFC 3464
/// §2.3.1): xtext decoded; a non-ASCII rfc822 or utf-8 address becomes `utf-8;` with escapes
/// (RFC 6533 §3). `None` when there is nothing usable.
fn original_recipient(orcpt: &str) -> Option<String> {
    let (kind, value) = match orcpt.split_once(';') {
        Some((k, v)) => (k.trim(), v.trim()),
        None => ("rfc822", orcpt.trim()),
    };
    let kind: String = kind
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let value = xtext_decode_lenient(value);
    if value.is_empty() {
        return None;
    }
    if kind.eq_ignore_ascii_case("utf-8")
        || (kind.eq_ignore_ascii_case("rfc822") && !value.is_ascii())
    {
        let addr = utf8_addr_unescape(&value);
        let addr: String = addr.chars().filter(|c| !c.is_control()).collect();
        return Some(if addr.is_ascii() && !addr.contains(' ') {
            format!("rfc822; {addr}")
        } else {
            format!("utf-8; {}", utf8_addr_xtext(&addr))
        });
    }
    let kind = if kind.is_empty() {
        "rfc822".into()
    } else {
        kind
    };
    Some(format!("{kind}; {}", field_text(&value)))
}

/// Decodes the RFC 3461 §4 xtext escapes `+HH` of a value that may or may not be encoded
/// already. Only escapes of characters xtext must encode (below `!`, above `~`, `+`, `=`) are
/// decoded, since an encoder never writes any other; so a decoded address like `user+4A@x`
/// keeps its `+4A`. Never fails: anything else is kept as is. (Not
/// [`crate::smtp::command::xtext_decode`], which is the strict parser of SMTP input.)
fn xtext_decode_lenient(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let hex = hex.filter(|h| h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'A'..=b'F')));
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                if !(0x21..=0x7e).contains(&v) || v == b'+' || v == b'=' {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `host` reduced to characters of a domain name or address literal (it goes into Reporting-MTA,
/// From and Message-ID), at most [`MAX_DOMAIN`] octets; `localhost` when nothing is left.
fn host_token(host: &str) -> String {
    let mut h: String = host
        .trim()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'))
        .collect();
    h.truncate(floor_char_boundary(&h, MAX_DOMAIN));
    if h.is_empty() {
        "localhost".to_string()
    } else {
        h
    }
}

/// The host part of a Message-ID must be ASCII (RFC 5322 §3.6.4 id-right).
fn host_token_for_id(host: &str) -> String {
    let h: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .collect();
    if h.is_empty() {
        "localhost".to_string()
    } else {
        h
    }
}

/// "3 hours", "2 days 4 hours", "25 minutes": for part 1.
fn human_duration(secs: u64) -> String {
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, m) => plural(m, "minute"),
        (0, h, 0) => plural(h, "hour"),
        (0, h, m) => format!("{} {}", plural(h, "hour"), plural(m, "minute")),
        (d, 0, _) => plural(d, "day"),
        (d, h, _) => format!("{} {}", plural(d, "day"), plural(h, "hour")),
    }
}

/// A short English description of common RFC 3463 subject.detail codes (§3.1-3.8).
fn status_meaning(status: &str) -> Option<&'static str> {
    let (_, rest) = status.split_once('.')?;
    Some(match rest {
        "1.1" => "bad destination mailbox address",
        "1.2" => "bad destination system address",
        "1.3" => "bad destination mailbox address syntax",
        "1.6" => "destination mailbox has moved",
        "1.10" => "the recipient's domain does not accept mail",
        "2.1" => "mailbox disabled, not accepting messages",
        "2.2" => "mailbox full",
        "2.3" => "message length exceeds administrative limit",
        "3.4" => "message too big for system",
        "4.1" => "no answer from host",
        "4.2" => "bad connection",
        "4.4" => "unable to route",
        "4.6" => "routing loop detected",
        "4.7" => "delivery time expired",
        "5.3" => "too many recipients",
        "6.0" => "message content not accepted",
        "7.0" => "delivery not authorized",
        "7.1" => "delivery not authorized, message refused",
        "7.26" | "7.27" => "sender authentication failed",
        _ => return None,
    })
}

/// Appends `text` wrapped at spaces to [`TEXT_WIDTH`] columns, each line starting with `indent`.
fn push_wrapped(out: &mut String, indent: &str, text: &str) {
    let mut col = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if col == 0 {
            out.push_str(indent);
            col = indent.len();
        } else if col + 1 + len > TEXT_WIDTH {
            out.push('\n');
            out.push_str(indent);
            col = indent.len();
        } else {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += len;
    }
    if col > 0 {
        out.push('\n');
    }
}

/// Part 1: the explanation for people. Wrapped so that plain ASCII text goes out as 7bit
/// (mail-builder picks the transfer encoding and writes CRLF line ends).
fn human_text(input: &DsnInput, host: &str, failed: bool, delayed: bool, ret: &Returned) -> String {
    let mut t = String::new();
    push_wrapped(
        &mut t,
        "",
        &format!("This is the mail system at host {host}."),
    );
    t.push('\n');
    if failed {
        push_wrapped(
            &mut t,
            "",
            "I'm sorry to have to tell you that your message could not be delivered to one \
             or more recipients. The mail system has given up on them; the reasons are \
             listed below.",
        );
    } else if delayed {
        t.push_str(
            "####################################################################\n\
             # THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n\
             ####################################################################\n\n",
        );
        let waited = human_duration(input.now.saturating_sub(input.arrival));
        let mut p = format!(
            "Your message could not be delivered yet to the recipients listed below; \
             it has been waiting for {waited}."
        );
        let until = input
            .recipients
            .iter()
            .filter_map(|r| r.will_retry_until)
            .max();
        if let Some(until) = until {
            p.push_str(&format!(
                " The mail system keeps trying until {}, and tells you if it gives up.",
                rfc5322_date(until)
            ));
        }
        push_wrapped(&mut t, "", &p);
    } else {
        push_wrapped(
            &mut t,
            "",
            "Your message was delivered to the recipients listed below.",
        );
    }
    t.push('\n');
    push_wrapped(
        &mut t,
        "",
        &format!(
            "If you need help, write to postmaster@{} and include this report.",
            host_token(input.postmaster_domain)
        ),
    );
    t.push_str("\n                   The mail system\n\n");

    for r in &input.recipients {
        let what = match r.action {
            DsnAction::Failed => "delivery failed",
            DsnAction::Delayed => "delivery delayed, still trying",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed to a system that does not send delivery reports itself",
            DsnAction::Expanded => "delivered and forwarded to further addresses",
        };
        let addr: String = r.address.chars().filter(|c| !c.is_control()).collect();
        t.push_str(&format!("<{addr}>: {what}\n"));
        let diag = r.diagnostic.as_deref().map(diagnostic_text_utf8);
        let mta = r.remote_mta.as_deref().map(field_text);
        match (
            mta.filter(|m| !m.is_empty()),
            diag.filter(|d| !d.is_empty()),
        ) {
            (Some(m), Some(d)) => push_wrapped(&mut t, "    ", &format!("host {m} said: {d}")),
            (None, Some(d)) => push_wrapped(&mut t, "    ", &d),
            (Some(m), None) => push_wrapped(&mut t, "    ", &format!("(host {m})")),
            (None, None) => {}
        }
        let status = status_for(r);
        match status_meaning(&status) {
            Some(m) => push_wrapped(&mut t, "    ", &format!("(status {status}: {m})")),
            None => push_wrapped(&mut t, "    ", &format!("(status {status})")),
        }
        t.push('\n');
    }

    match ret.kind {
        Kind::Full => t.push_str("Your message is attached below.\n"),
        Kind::Headers(HeadersWhy::TooLarge) => push_wrapped(
            &mut t,
            "",
            &format!(
                "Your message was larger than {MAX_RETURNED_MESSAGE} bytes, so only its \
                 headers are attached below."
            ),
        ),
        Kind::Headers(HeadersWhy::Asked) => {
            t.push_str("The headers of your message are attached below.\n")
        }
    }
    if ret.truncated {
        push_wrapped(
            &mut t,
            "",
            &format!(
                "(They were longer than {MAX_RETURNED_HEADERS} bytes and have been cut short.)"
            ),
        );
    }
    t
}

/// A diagnostic for part 1: like [`diagnostic_text`] but keeping UTF-8 (the part is UTF-8).
fn diagnostic_text_utf8(d: &str) -> String {
    let t: String = d
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
    match t.char_indices().nth(MAX_DIAGNOSTIC) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(address: &str, action: DsnAction, status: &str) -> DsnRecipient {
        DsnRecipient {
            address: address.to_string(),
            orcpt: None,
            action,
            status: status.to_string(),
            diagnostic: None,
            remote_mta: None,
            last_attempt: None,
            will_retry_until: None,
        }
    }

    fn input<'a>(message: &'a [u8], recipients: Vec<DsnRecipient>) -> DsnInput<'a> {
        DsnInput {
            reporting_mta: "mx.example.test",
            postmaster_domain: "example.test",
            envid: None,
            arrival: 1_700_000_000,
            original_sender: "alice@example.org",
            recipients,
            ret: DsnReturn::Full,
            message,
            now: 1_700_003_600,
        }
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// Header fields of the delivery-status part, unfolded.
    fn status_part(dsn: &str) -> String {
        let start = dsn.find("Content-Type: message/delivery-status").unwrap();
        let body = &dsn[start..];
        let body = &body[body.find("\r\n\r\n").unwrap() + 4..];
        let end = body.find("\r\n--").unwrap();
        body[..end].replace("\r\n ", " ")
    }

    const MSG: &[u8] =
        b"From: alice@example.org\nTo: bob@example.net\nSubject: hello\n\nbody line\n";

    #[test]
    fn xtext_lenient() {
        assert_eq!(xtext_decode_lenient("a+2Bb@x"), "a+b@x");
        assert_eq!(xtext_decode_lenient("a+3Db@x"), "a=b@x");
        assert_eq!(xtext_decode_lenient("a+20b"), "a b");
        assert_eq!(xtext_decode_lenient("j+C3+B6rg@x"), "jörg@x");
        // Already decoded values survive.
        assert_eq!(xtext_decode_lenient("user+4A@x"), "user+4A@x");
        assert_eq!(xtext_decode_lenient("a+b@x"), "a+b@x");
        assert_eq!(xtext_decode_lenient("a+"), "a+");
        assert_eq!(xtext_decode_lenient("a+2"), "a+2");
        assert_eq!(xtext_decode_lenient("a+2b@x"), "a+2b@x"); // lower-case hex is not xtext
        assert_eq!(xtext_decode_lenient("jörg+"), "jörg+");
        // Invalid UTF-8 after decoding does not panic.
        assert_eq!(xtext_decode_lenient("+FF"), "\u{FFFD}");
    }

    #[test]
    fn original_recipient_forms() {
        assert_eq!(original_recipient("rfc822;bob@x").unwrap(), "rfc822; bob@x");
        assert_eq!(
            original_recipient("RFC822; a+2Bb@x").unwrap(),
            "RFC822; a+b@x"
        );
        assert_eq!(original_recipient("bob@x").unwrap(), "rfc822; bob@x");
        assert_eq!(original_recipient("rfc822;").as_deref(), None);
        assert_eq!(
            original_recipient("rfc822;j+C3+B6rg@x").unwrap(),
            "utf-8; j\\x{F6}rg@x"
        );
        assert_eq!(
            original_recipient("utf-8;j\\x{F6}rg@x").unwrap(),
            "utf-8; j\\x{F6}rg@x"
        );
        assert_eq!(
            original_recipient("utf-8;jörg@x").unwrap(),
            "utf-8; j\\x{F6}rg@x"
        );
        assert_eq!(original_recipient("utf-8;bob@x").unwrap(), "rfc822; bob@x");
        assert_eq!(
            original_recipient("x400;c=de\r\nX: y").unwrap(),
            "x400; c=de X: y"
        );
        // Broken escapes are kept, not a panic.
        assert_eq!(
            original_recipient("utf-8;a\\x{zz}@\\x{").unwrap(),
            "rfc822; a\\x{zz}@\\x{"
        );
        assert!(original_recipient("utf-8;\\x{110000}@x").is_some());
    }

    #[test]
    fn addresses_typed() {
        assert_eq!(typed_address("bob@example.net"), "rfc822; bob@example.net");
        assert_eq!(
            typed_address("用户@例子.测试"),
            "utf-8; \\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.\\x{6D4B}\\x{8BD5}"
        );
        assert_eq!(
            typed_address("jörg+x@ex.de"),
            "utf-8; j\\x{F6}rg\\x{2B}x@ex.de"
        );
        assert_eq!(typed_address("a\r\nb@x"), "rfc822; ab@x");
        assert_eq!(
            utf8_addr_unescape(&utf8_addr_xtext("ä+b=c\\d@x")),
            "ä+b=c\\d@x"
        );
    }

    #[test]
    fn fields_formatted() {
        let mut r = rcpt("bob@example.net", DsnAction::Failed, "5.1.1");
        r.orcpt = Some("rfc822;Bob+2BList@example.net".into());
        r.diagnostic = Some("550 5.1.1 <bob@example.net>: no such user".into());
        r.remote_mta = Some("mx1.example.net".into());
        r.last_attempt = Some(1_700_003_600);
        let mut inp = input(MSG, vec![r]);
        inp.envid = Some("ID+2B1");
        let dsn = text(&build(&inp));
        let ds = status_part(&dsn);
        assert_eq!(
            ds,
            "Original-Envelope-Id: ID+1\r\n\
             Reporting-MTA: dns; mx.example.test\r\n\
             Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\
             \r\n\
             Original-Recipient: rfc822; Bob+List@example.net\r\n\
             Final-Recipient: rfc822; bob@example.net\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Remote-MTA: dns; mx1.example.net\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: no such user\r\n\
             Last-Attempt-Date: Tue, 14 Nov 2023 23:13:20 +0000\r\n"
        );
        let head = &dsn[..dsn.find("\r\n\r\n").unwrap()];
        assert!(
            head.contains("From: \"Mail Delivery System\" <MAILER-DAEMON@mx.example.test>\r\n"),
            "{head}"
        );
        assert!(head.contains("To: <alice@example.org>\r\n"), "{head}");
        assert!(
            head.contains("Subject: Undelivered Mail Returned to Sender\r\n"),
            "{head}"
        );
        assert!(head.contains("Auto-Submitted: auto-replied\r\n"), "{head}");
        assert!(
            head.contains("Date: Tue, 14 Nov 2023 23:13:20 +0000\r\n"),
            "{head}"
        );
        assert!(head.contains("@mx.example.test>\r\n"), "{head}");
        assert!(head.contains("MIME-Version: 1.0\r\n"), "{head}");
        assert_eq!(head.matches("MIME-Version").count(), 1, "{head}");
        assert!(
            head.contains("multipart/report; report-type=delivery-status;"),
            "{head}"
        );
        // Part 3 holds the original message, CRLF.
        assert!(dsn.contains("Content-Type: message/rfc822\r\n"));
        assert!(dsn.contains("\r\n\r\nFrom: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\n\r\nbody line\r\n"));
        // Part 1 explains in English.
        assert!(dsn.contains("<bob@example.net>: delivery failed"), "{dsn}");
        assert!(
            dsn.contains("host mx1.example.net said: 550 5.1.1"),
            "{dsn}"
        );
        assert!(dsn.contains("bad destination mailbox address"), "{dsn}");
        // Every line ends with CRLF.
        assert!(!dsn.replace("\r\n", "").contains('\n'));
        assert!(!dsn.replace("\r\n", "").contains('\r'));
    }

    #[test]
    fn delay_report() {
        let mut r = rcpt("bob@example.net", DsnAction::Delayed, "4.4.1");
        r.diagnostic = Some("connect to mx1.example.net[192.0.2.1]:25: Connection refused".into());
        r.will_retry_until = Some(1_700_432_000);
        let inp = input(MSG, vec![r]);
        let dsn = text(&build(&inp));
        assert!(dsn.contains("Subject: Delayed Mail (still being retried)\r\n"));
        let ds = status_part(&dsn);
        assert!(ds.contains("Action: delayed\r\nStatus: 4.4.1\r\n"), "{ds}");
        assert!(ds.contains("Diagnostic-Code: x-mailkit; connect to mx1.example.net[192.0.2.1]:25: Connection refused\r\n"), "{ds}");
        assert!(
            ds.contains("Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000\r\n"),
            "{ds}"
        );
        assert!(
            !ds.contains("Original-Recipient") && !ds.contains("Remote-MTA"),
            "{ds}"
        );
        // Delay warnings carry headers only, even with RET=FULL.
        assert!(dsn.contains("Content-Type: text/rfc822-headers\r\n"));
        assert!(!dsn.contains("body line"));
        assert!(dsn.contains("THIS IS A WARNING ONLY"));
        assert!(dsn.contains("waiting for 1 hour"), "{dsn}");
    }

    #[test]
    fn subjects_and_default_status() {
        let dsn = text(&build(&input(
            MSG,
            vec![rcpt("a@x", DsnAction::Delivered, "")],
        )));
        assert!(dsn.contains("Subject: Successful Mail Delivery Report\r\n"));
        assert!(status_part(&dsn).contains("Action: delivered\r\nStatus: 2.0.0\r\n"));
        let dsn = text(&build(&input(
            MSG,
            vec![
                rcpt("a@x", DsnAction::Delayed, "bogus"),
                rcpt("b@x", DsnAction::Failed, "5.x"),
            ],
        )));
        assert!(dsn.contains("Subject: Undelivered Mail Returned to Sender\r\n"));
        let ds = status_part(&dsn);
        assert!(ds.contains("Action: delayed\r\nStatus: 4.0.0\r\n"), "{ds}");
        assert!(ds.contains("Action: failed\r\nStatus: 5.0.0\r\n"), "{ds}");
        for a in [DsnAction::Relayed, DsnAction::Expanded] {
            let dsn = text(&build(&input(MSG, vec![rcpt("a@x", a, "2.0.0")])));
            assert!(status_part(&dsn).contains(&format!("Action: {}\r\n", a.as_str())));
        }
    }

    #[test]
    fn long_multiline_diagnostic_folded() {
        let long = format!(
            "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n\
             550-5.1.1 double-checking the recipient's email address for typos or\n\
             550 5.1.1 unnecessary spaces. {} - gsmtp",
            "x".repeat(5000)
        );
        let mut r = rcpt("bob@example.net", DsnAction::Failed, "5.1.1");
        r.diagnostic = Some(long);
        let dsn = text(&build(&input(MSG, vec![r])));
        let start = dsn.find("Diagnostic-Code:").unwrap();
        let field_end = start + dsn[start..].find("\r\n\r\n").unwrap();
        let raw = &dsn[start..field_end];
        for line in raw.split("\r\n") {
            assert!(line.len() <= MAX_UNBROKEN_WORD + 2, "{}", line.len());
        }
        let unfolded = raw.replace("\r\n ", " ");
        assert!(unfolded.starts_with(
            "Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try 550-5.1.1 double-checking"
        ), "{unfolded}");
        assert!(
            raw.split("\r\n").take(3).all(|l| l.len() <= FOLD_WIDTH),
            "{raw}"
        );
        // Bounded, marked as cut.
        assert!(unfolded.len() <= MAX_DIAGNOSTIC + 100);
        assert!(unfolded.trim_end().ends_with("..."), "{unfolded}");
    }

    #[test]
    fn non_ascii_recipient() {
        let mut r = rcpt("用户@例子.测试", DsnAction::Failed, "5.1.1");
        r.diagnostic = Some("550 5.1.1 <用户@例子.测试> unknown".into());
        let mut inp = input("Subject: grüße\n\nhällo\n".as_bytes(), vec![r]);
        inp.original_sender = "jörg@example.de";
        let out = build(&inp);
        let dsn = text(&out);
        let ds = status_part(&dsn);
        assert!(ds.is_ascii(), "{ds}");
        assert!(ds.contains("Final-Recipient: utf-8; \\x{7528}\\x{6237}@\\x{4F8B}\\x{5B50}.\\x{6D4B}\\x{8BD5}\r\n"), "{ds}");
        assert!(
            ds.contains("Diagnostic-Code: smtp; 550 5.1.1 <\\x{7528}"),
            "{ds}"
        );
        assert!(dsn.contains("To: <jörg@example.de>\r\n"), "{dsn}");
        // 8-bit original: declared 8bit, bytes unchanged.
        assert!(dsn.contains("Content-Type: message/rfc822\r\nContent-Description: Undelivered Message\r\nContent-Transfer-Encoding: 8bit\r\n"), "{dsn}");
        assert!(dsn.contains("Subject: grüße\r\n\r\nhällo\r\n"));
    }

    #[test]
    fn huge_message_returns_headers_only() {
        let mut msg = b"Subject: big\r\nX-Test: 1\r\n\r\n".to_vec();
        // '~' is in no boundary or Message-ID, so a run of it can only come from the body.
        msg.extend(std::iter::repeat_n(b'~', MAX_RETURNED_MESSAGE));
        let dsn = text(&build(&input(
            &msg,
            vec![rcpt("a@x", DsnAction::Failed, "5.3.4")],
        )));
        assert!(dsn.contains("Content-Type: text/rfc822-headers\r\n"));
        assert!(
            dsn.contains("\r\n\r\nSubject: big\r\nX-Test: 1\r\n\r\n--"),
            "{}",
            &dsn[dsn.len() - 400..]
        );
        assert!(!dsn.contains("~~~~"));
        assert!(dsn.contains(&format!("larger than {MAX_RETURNED_MESSAGE} bytes")));
        // Exactly at the limit it is still returned whole.
        let mut msg = b"Subject: edge\r\n\r\n".to_vec();
        msg.resize(MAX_RETURNED_MESSAGE, b'b');
        let dsn = text(&build(&input(
            &msg,
            vec![rcpt("a@x", DsnAction::Failed, "5.3.4")],
        )));
        assert!(dsn.contains("Content-Type: message/rfc822\r\n"));
        assert!(dsn.contains("bbbb"));
    }

    #[test]
    fn ret_headers_and_huge_headers() {
        let mut inp = input(MSG, vec![rcpt("a@x", DsnAction::Failed, "5.1.1")]);
        inp.ret = DsnReturn::Headers;
        let dsn = text(&build(&inp));
        assert!(dsn.contains("Content-Type: text/rfc822-headers\r\n"));
        assert!(dsn.contains("Subject: hello\r\n\r\n--"));
        assert!(!dsn.contains("body line"));
        assert!(dsn.contains("The headers of your message are attached below."));

        let line = format!("X-Long: {}\n", "h".repeat(100));
        let msg = line.repeat(2 * MAX_RETURNED_HEADERS / line.len());
        inp.message = msg.as_bytes();
        let dsn = text(&build(&inp));
        let part = &dsn[dsn.find("Content-Type: text/rfc822-headers").unwrap()..];
        let body = &part[part.find("\r\n\r\n").unwrap() + 4..];
        let body = &body[..body.find("\r\n--").unwrap()];
        assert!(body.len() <= MAX_RETURNED_HEADERS + MAX_RETURNED_HEADERS / 50);
        assert!(body.len() > MAX_RETURNED_HEADERS / 2);
        assert!(body.ends_with("h\r\n"));
        assert!(body
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .all(|l| l.len() == line.len() - 1));
        assert!(dsn.contains("cut short"));
    }

    #[test]
    fn garbage_does_not_panic() {
        let garbage: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let nasty = [
            "",
            "\r\n",
            "\u{0}",
            "a\r\nX-Injected: 1",
            "\\x{",
            "+",
            "+F",
            "<>",
            "é".repeat(600).as_str(),
            &"x".repeat(5000),
        ]
        .map(String::from);
        for (i, s) in nasty.iter().enumerate() {
            for ret in [DsnReturn::Full, DsnReturn::Headers] {
                for msg in [
                    &garbage[..],
                    b"",
                    b"no blank line at all",
                    b"\r\r\n\n\0\xff",
                ] {
                    let mut r = rcpt(s, DsnAction::Failed, s);
                    r.orcpt = Some(s.clone());
                    r.diagnostic = Some(s.clone());
                    r.remote_mta = Some(s.clone());
                    r.last_attempt = Some(u64::MAX);
                    r.will_retry_until = Some(u64::MAX - i as u64);
                    let inp = DsnInput {
                        reporting_mta: s,
                        postmaster_domain: s,
                        envid: Some(s),
                        arrival: u64::MAX,
                        original_sender: s,
                        recipients: vec![r.clone(), r],
                        ret,
                        message: msg,
                        now: 0,
                    };
                    let out = build(&inp);
                    let dsn = text(&out);
                    let head = &dsn[..dsn.find("\r\n\r\n").unwrap()];
                    assert!(!head.contains("\nX-Injected"), "{head}");
                    // Everything we generate stays within the line limit.
                    let report = status_part(&dsn);
                    assert!(report.is_ascii());
                    for l in dsn.split("\r\n").take_while(|l| {
                        !l.starts_with("Content-Type: message/rfc822")
                            && !l.starts_with("Content-Type: text/rfc822-headers")
                    }) {
                        assert!(l.len() <= 998, "{}", l.len());
                    }
                    assert!(status_part(&dsn).contains("Status: 5.0.0"));
                }
            }
        }
        // No recipients at all is odd but fine.
        let dsn = text(&build(&input(MSG, vec![])));
        assert!(dsn.contains("Reporting-MTA: dns; mx.example.test"));
    }

    #[test]
    fn boundary_not_in_message() {
        let dsn = text(&build(&input(
            MSG,
            vec![rcpt("a@x", DsnAction::Failed, "5.0.0")],
        )));
        let b = dsn
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(dsn.matches(&format!("\r\n--{b}\r\n")).count(), 3);
        assert!(dsn.ends_with(&format!("\r\n--{b}--\r\n")));
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "0 minutes");
        assert_eq!(human_duration(60), "1 minute");
        assert_eq!(human_duration(4 * 3600), "4 hours");
        assert_eq!(human_duration(3600 + 120), "1 hour 2 minutes");
        assert_eq!(human_duration(5 * 86400), "5 days");
        assert_eq!(human_duration(86400 + 3 * 3600 + 5), "1 day 3 hours");
        assert_eq!(human_duration(u64::MAX).split(' ').count(), 4);
    }
}
