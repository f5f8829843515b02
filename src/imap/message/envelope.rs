//! FETCH ENVELOPE (RFC 3501 §7.4.2): the message's date, subject, addresses and ids as
//! written (RFC 2047 encoded words are sent undecoded: the client decodes them), addresses
//! split by an RFC 5322 §3.4 address-list parser, groups as RFC 3501 encodes them (a
//! `(NIL NIL "name" NIL)` start and a `(NIL NIL NIL NIL)` end).

use imap_types::core::{IString, NString};
use imap_types::envelope::{Address, Envelope};

use crate::rfc5322::{self, trim, unfold, Fields, TokenKind};

/// An IMAP string for `bytes`: quoted when RFC 3501's quoted form can carry it (7-bit text),
/// else a literal; NUL (which no IMAP string carries) is dropped.
pub fn istring(bytes: &[u8]) -> IString<'static> {
    let bytes: Vec<u8> = bytes.iter().copied().filter(|&b| b != 0).collect();
    IString::try_from(bytes)
        .unwrap_or_else(|_| IString::Quoted(imap_types::core::Quoted::unvalidated("")))
}

/// `Some` string, or NIL for `None`.
pub fn nstring(bytes: Option<&[u8]>) -> NString<'static> {
    NString(bytes.map(istring))
}

/// The ENVELOPE of the header section `header` (fields only). The first of each field counts;
/// Sender and Reply-To default to From (RFC 3501 §7.4.2: "the server MUST default").
pub fn envelope(header: &[u8]) -> Envelope<'static> {
    let first = |name: &[u8]| {
        Fields::new(header)
            .find(|f| f.is(name))
            .map(|f| unfold(f.value))
    };
    let addresses = |name: &[u8]| first(name).map(|v| parse_addresses(&v));
    let from = addresses(b"from").unwrap_or_default();
    let sender = match addresses(b"sender") {
        Some(a) if !a.is_empty() => a,
        _ => from.clone(),
    };
    let reply_to = match addresses(b"reply-to") {
        Some(a) if !a.is_empty() => a,
        _ => from.clone(),
    };
    Envelope {
        date: nstring(first(b"date").as_deref()),
        subject: nstring(first(b"subject").as_deref()),
        from,
        sender,
        reply_to,
        to: addresses(b"to").unwrap_or_default(),
        cc: addresses(b"cc").unwrap_or_default(),
        bcc: addresses(b"bcc").unwrap_or_default(),
        in_reply_to: nstring(first(b"in-reply-to").as_deref()),
        message_id: nstring(first(b"message-id").as_deref()),
    }
}

/// A lexical item of an address list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An atom (dots included, so `a.b` and `example.org` are one) or a domain literal.
    Atom(Vec<u8>),
    /// A quoted string, unquoted.
    Quoted(Vec<u8>),
    /// One of `<>@,;:`.
    Special(u8),
    /// A comment's text.
    Comment(Vec<u8>),
}

/// The address list `value` as ENVELOPE's parser reads it: the one lexer's tokens
/// ([`rfc5322::address_tokens`], unclosed ones tolerated) with quoting undone and space dropped.
fn lex(value: &[u8]) -> Vec<Tok> {
    rfc5322::address_tokens(value)
        .into_iter()
        .filter_map(|t| {
            let text = &value[t.start..t.end];
            // The text between the delimiters: the opening one, and the closing one if any.
            let inner = || &text[1..text.len() - usize::from(t.closed)];
            Some(match t.kind {
                TokenKind::Space => return None,
                TokenKind::Quoted => Tok::Quoted(unescape(inner())),
                TokenKind::Comment => Tok::Comment(trim(&unescape(inner())).to_vec()),
                TokenKind::Literal | TokenKind::Atom => Tok::Atom(text.to_vec()),
                TokenKind::Special(c) => Tok::Special(c),
            })
        })
        .collect()
}

/// `text` with RFC 5322 §3.2.1 quoted-pairs (`\x`) made `x`; a `\` at the very end stays.
fn unescape(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        match (b, bytes.clone().next()) {
            (b'\\', Some(&next)) => {
                out.push(next);
                bytes.next();
            }
            _ => out.push(b),
        }
    }
    out
}

/// One address as ENVELOPE sends it.
fn address(
    name: Option<Vec<u8>>,
    route: Option<Vec<u8>>,
    mailbox: Option<Vec<u8>>,
    host: Option<Vec<u8>>,
) -> Address<'static> {
    Address {
        name: nstring(name.as_deref()),
        adl: nstring(route.as_deref()),
        mailbox: nstring(mailbox.as_deref()),
        host: nstring(host.as_deref()),
    }
}

/// A mailbox (not a group marker): RFC 3501 §7.4.2 makes a NIL host a group, so a missing
/// mailbox or domain is sent as Dovecot sends it, `MISSING_MAILBOX` / `MISSING_DOMAIN`.
fn mailbox(
    name: Option<Vec<u8>>,
    route: Option<Vec<u8>>,
    local: Vec<u8>,
    host: Option<Vec<u8>>,
) -> Address<'static> {
    let local = if local.is_empty() {
        b"MISSING_MAILBOX".to_vec()
    } else {
        local
    };
    let host = match host {
        Some(h) if !h.is_empty() => h,
        _ => b"MISSING_DOMAIN".to_vec(),
    };
    address(name, route, Some(local), Some(host))
}

/// The words of a phrase (display name) joined by single spaces.
fn phrase(words: &[Vec<u8>]) -> Option<Vec<u8>> {
    (!words.is_empty()).then(|| words.join(&b' '))
}

/// An RFC 5322 §3.4 address list (obsolete forms and errors tolerated) as ENVELOPE addresses.
pub fn parse_addresses(value: &[u8]) -> Vec<Address<'static>> {
    let toks = lex(value);
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_group = false;
    while i < toks.len() {
        // Collect a phrase or a local part: words, '.'s inside atoms, comments aside.
        let mut words: Vec<Vec<u8>> = Vec::new();
        let mut comment: Option<Vec<u8>> = None;
        while let Some(t) = toks.get(i) {
            match t {
                Tok::Atom(a) | Tok::Quoted(a) => words.push(a.clone()),
                Tok::Comment(c) => comment = Some(c.clone()),
                Tok::Special(_) => break,
            }
            i += 1;
        }
        match toks.get(i) {
            Some(Tok::Special(b':')) if !in_group => {
                // group = display-name ":" [group-list] ";"
                i += 1;
                out.push(address(
                    None,
                    None,
                    Some(phrase(&words).unwrap_or_default()),
                    None,
                ));
                in_group = true;
            }
            Some(Tok::Special(b'<')) => {
                i += 1;
                let mut route = Vec::new();
                let mut local = Vec::new();
                let mut host: Option<Vec<u8>> = None;
                // obs-route: "@a,@b:" before the addr-spec.
                if toks.get(i) == Some(&Tok::Special(b'@')) {
                    while let Some(t) = toks.get(i) {
                        i += 1;
                        match t {
                            Tok::Special(b':') => break,
                            Tok::Special(b'>') => {
                                i -= 1;
                                break;
                            }
                            Tok::Special(c) => route.push(*c),
                            Tok::Atom(a) | Tok::Quoted(a) => route.extend_from_slice(a),
                            Tok::Comment(_) => {}
                        }
                    }
                }
                while let Some(t) = toks.get(i) {
                    i += 1;
                    match t {
                        Tok::Special(b'>') => break,
                        Tok::Special(b'@') => host = Some(Vec::new()),
                        Tok::Atom(a) | Tok::Quoted(a) => match host.as_mut() {
                            Some(h) => h.extend_from_slice(a),
                            None => local.extend_from_slice(a),
                        },
                        _ => {}
                    }
                }
                let name = phrase(&words).or(comment);
                out.push(mailbox(
                    name,
                    (!route.is_empty()).then_some(route),
                    local,
                    host,
                ));
                // Skip to the separator.
                while let Some(t) = toks.get(i) {
                    match t {
                        Tok::Special(b',' | b';') => break,
                        Tok::Comment(_) => {}
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {
                // addr-spec: local "@" domain (the words so far are the local part).
                let local: Vec<u8> = words.concat();
                let mut host: Option<Vec<u8>> = None;
                if toks.get(i) == Some(&Tok::Special(b'@')) {
                    i += 1;
                    let mut h = Vec::new();
                    while let Some(t) = toks.get(i) {
                        match t {
                            Tok::Atom(a) | Tok::Quoted(a) => h.extend_from_slice(a),
                            Tok::Comment(c) => comment = Some(c.clone()),
                            Tok::Special(_) => break,
                        }
                        i += 1;
                    }
                    host = Some(h);
                }
                // A trailing comment names the mailbox when nothing else does.
                while let Some(Tok::Comment(c)) = toks.get(i) {
                    comment = Some(c.clone());
                    i += 1;
                }
                if !local.is_empty() || host.is_some() {
                    out.push(mailbox(comment, None, local, host));
                }
            }
        }
        match toks.get(i) {
            Some(Tok::Special(b';')) => {
                if in_group {
                    out.push(address(None, None, None, None));
                    in_group = false;
                }
                i += 1;
            }
            Some(Tok::Special(_)) => i += 1,
            _ => {}
        }
    }
    if in_group {
        out.push(address(None, None, None, None));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: &NString) -> Option<String> {
        n.0.as_ref()
            .map(|i| String::from_utf8_lossy(i.as_ref()).into_owned())
    }

    #[test]
    fn addresses_names_groups_and_routes() {
        let a = parse_addresses(
            b"\"Doe, J.\" <j.doe@example.org>, x@y (Comment Name), undisclosed:;, g: a@b, <@r1,@r2:c@d>;",
        );
        let flat: Vec<_> = a
            .iter()
            .map(|a| (s(&a.name), s(&a.adl), s(&a.mailbox), s(&a.host)))
            .collect();
        let o = |x: &str| Some(x.to_string());
        assert_eq!(
            flat,
            vec![
                (o("Doe, J."), None, o("j.doe"), o("example.org")),
                (o("Comment Name"), None, o("x"), o("y")),
                (None, None, o("undisclosed"), None),
                (None, None, None, None),
                (None, None, o("g"), None),
                (None, None, o("a"), o("b")),
                (None, o("@r1,@r2"), o("c"), o("d")),
                (None, None, None, None),
            ]
        );
    }
}
