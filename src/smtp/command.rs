//! SMTP client commands as a server reads them (RFC 5321 §4.1), sans-IO.
//!
//! [`parse`] takes one command line without its CRLF and returns a [`Command`] or a [`ParseError`]
//! that already knows its reply code (500 unknown, 501 syntax, 555 unknown parameter). Paths are
//! parsed to RFC 5321 §4.1.2 (`<local@domain>`, the null path `<>`, source routes accepted and
//! ignored per §4.1.1.3 and Appendix C), with the size limits of §4.5.3.1 as named constants below.
//! ESMTP parameters: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET/ENVID/NOTIFY/ORCPT
//! (RFC 3461), AUTH= (RFC 4954, accepted and kept). UTF-8 in addresses is parsed here and flagged;
//! the session refuses it unless the transaction declared SMTPUTF8.

use std::fmt;

use crate::envelope::{Body, Notify, Ret};

/// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// Longest text line in DATA, CRLF included (RFC 5321 §4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;
/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain (RFC 5321 §4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path including the angle brackets (RFC 5321 §4.5.3.1.3).
pub const MAX_PATH: usize = 256;
/// Recipients a server must accept at least, per transaction (RFC 5321 §4.5.3.1.8).
pub const MIN_RECIPIENTS: usize = 100;
/// Longest ENVID value, xtext-decoded (RFC 3461 §4.4).
pub const MAX_ENVID: usize = 100;
/// Longest ORCPT value, xtext-decoded (RFC 3461 §4.2: original-recipient limited to 500).
pub const MAX_ORCPT: usize = 500;

/// A mailbox `local@domain` from a path, in its canonical form ([`parse`] makes it): the one
/// spelling the queue stores, routing resolves and `mrelayd explain` shows, so a recipient
/// accepted at RCPT is looked up at delivery exactly as it was at RCPT.
///
/// - `local`: a dot-atom when the (unquoted) local part is one, so `"demo"`, `"de\mo"` and
///   `demo` are all `demo` (RFC 5321 §4.1.2: a quoted string that needs no quotes is the same
///   local part); otherwise one quoted string with only `\` and `"` escaped ([`quote_local`]).
///   Case is kept as written: a remote local part may be case-sensitive (RFC 5321 §2.4);
///   local users are matched without case when routing.
/// - `domain`: lower-cased, one trailing dot removed (`Example.ORG.` is `example.org`); an
///   address literal `[...]` is kept as written. A source route is dropped (§4.1.1.3, App. C).
///
/// A bare `Postmaster` recipient (RFC 5321 §4.1.1.3) has an empty domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    /// Local part, canonical (see above).
    pub local: String,
    /// Domain or address literal; empty only for the bare `<Postmaster>` recipient.
    pub domain: String,
}

impl Mailbox {
    /// Whether the address contains non-ASCII characters (needs SMTPUTF8, RFC 6531 §3.4).
    pub fn is_utf8(&self) -> bool {
        !self.local.is_ascii() || !self.domain.is_ascii()
    }

    /// The local part with quoting removed (`"a b"` → `a b`, `"a\"b"` → `a"b`).
    pub fn local_unquoted(&self) -> String {
        unquote_local(&self.local)
    }

    /// Whether this is the bare `<Postmaster>` recipient without a domain.
    pub fn is_bare_postmaster(&self) -> bool {
        self.domain.is_empty() && self.local.eq_ignore_ascii_case("postmaster")
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.domain.is_empty() {
            f.write_str(&self.local)
        } else {
            write!(f, "{}@{}", self.local, self.domain)
        }
    }
}

/// A local part with its quoting removed: `"a b"` → `a b`, `"a\"b"` → `a"b`; a dot-atom is
/// returned as it is.
pub fn unquote_local(local: &str) -> String {
    let Some(inner) = local.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return local.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut esc = false;
    for c in inner.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `s` is a dot-atom (RFC 5322 §3.2.3, with UTF-8 as RFC 6531 §3.3 allows): non-empty
/// atoms of atext separated by single dots.
pub fn is_dot_atom(s: &str) -> bool {
    s.split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// The canonical spelling of an unquoted local part (RFC 5321 §4.1.2): as it is when it is a
/// dot-atom, else one quoted string with `\` and `"` escaped and nothing else.
pub fn quote_local(unquoted: &str) -> String {
    if is_dot_atom(unquoted) {
        return unquoted.to_string();
    }
    let mut out = String::with_capacity(unquoted.len() + 2);
    out.push('"');
    for c in unquoted.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits `local@domain` at the last `@`; without one, the whole is the local part and the
/// domain is empty.
pub fn split_address(addr: &str) -> (&str, &str) {
    match addr.rfind('@') {
        Some(i) => (&addr[..i], &addr[i + 1..]),
        None => (addr, ""),
    }
}

/// The canonical spelling of a domain: an address literal as it is, anything else lower-cased
/// with one trailing dot (the DNS root) removed.
pub fn canonical_domain(domain: &str) -> String {
    if domain.starts_with('[') {
        return domain.to_string();
    }
    domain.strip_suffix('.').unwrap_or(domain).to_lowercase()
}

/// Parameters of MAIL FROM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// Declared message size (RFC 1870).
    pub size: Option<u64>,
    /// Declared body type (RFC 6152).
    pub body: Option<Body>,
    /// SMTPUTF8 was given (RFC 6531).
    pub smtputf8: bool,
    /// DSN RET (RFC 3461).
    pub ret: Option<Ret>,
    /// DSN ENVID, xtext-decoded (RFC 3461).
    pub envid: Option<String>,
    /// AUTH= parameter as given, xtext-decoded (RFC 4954 §5); `<>` when unknown.
    pub auth: Option<String>,
}

/// Parameters of RCPT TO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// DSN NOTIFY (RFC 3461).
    pub notify: Option<Notify>,
    /// DSN ORCPT as `addr-type;address`, xtext-decoded (RFC 3461 §4.2).
    pub orcpt: Option<String>,
}

/// One parsed client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain` (RFC 5321 §4.1.1.1).
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `MAIL FROM:<path> [params]`; `from` is `None` for the null path `<>`.
    Mail {
        /// Reverse path; `None` is the null sender.
        from: Option<Mailbox>,
        /// ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// Forward path.
        to: Mailbox,
        /// ESMTP parameters.
        params: RcptParams,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// Chunk size in octets.
        size: u64,
        /// This is the last chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy(String),
    /// `HELP [topic]`.
    Help,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// Mechanism name, upper-cased.
        mechanism: String,
        /// Initial response (base64 or `=`), if given.
        initial: Option<String>,
    },
}

/// Why a command line was refused; [`ParseError::code`] is the reply to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not a command we know (500 5.5.1).
    Unknown,
    /// Known command, bad arguments (501 5.5.4 / 5.1.7 / 5.1.3).
    Syntax(&'static str),
    /// A bad address in a path (501 5.1.7 for the sender, 5.1.3 for a recipient).
    Address(&'static str),
    /// An ESMTP parameter we do not know or support (555 5.5.4, RFC 5321 §4.1.1.11).
    Parameter(String),
    /// A path or part of it over the §4.5.3.1 limits (501 5.5.2 / 553 5.1.x).
    TooLong(&'static str),
}

impl ParseError {
    /// The reply code for this error.
    pub fn code(&self) -> u16 {
        match self {
            ParseError::Unknown => 500,
            ParseError::Syntax(_) | ParseError::Address(_) => 501,
            ParseError::Parameter(_) => 555,
            ParseError::TooLong(_) => 501,
        }
    }

    /// The enhanced status code (RFC 3463) for this error.
    pub fn enhanced(&self) -> (u8, u16, u16) {
        match self {
            ParseError::Unknown => (5, 5, 1),
            ParseError::Syntax(_) => (5, 5, 4),
            ParseError::Address(_) => (5, 1, 7),
            ParseError::Parameter(_) => (5, 5, 4),
            ParseError::TooLong(_) => (5, 5, 2),
        }
    }

    /// The complete reply for this error.
    pub fn to_reply(&self) -> super::reply::Reply {
        super::reply::Reply::new(self.code(), Some(self.enhanced()), self.text())
    }

    /// Human-readable text for the reply.
    pub fn text(&self) -> String {
        match self {
            ParseError::Unknown => "Error: command not recognized".into(),
            ParseError::Syntax(s) => format!("Syntax error: {s}"),
            ParseError::Address(s) => format!("Bad address syntax: {s}"),
            ParseError::Parameter(p) => format!("Unsupported parameter: {p}"),
            ParseError::TooLong(s) => format!("Too long: {s}"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Parses one command line (without CRLF). Verbs are case-insensitive (RFC 5321 §2.4).
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    parse_qualifying(line, None)
}

/// [`parse`], with a bare MAIL FROM or RCPT TO address (`<root>`, a local part without a
/// domain, which RFC 5321 §4.1.2 does not allow) made `root@bare_domain` when `bare_domain` is
/// given: the server's choice for a local client (a trusted network, an authenticated user,
/// `msend -bs`), as Postfix qualifies local submissions. Without it such an address is refused
/// (501 5.1.7). The bare `<Postmaster>` recipient keeps its own meaning (§4.1.1.3) either way.
pub fn parse_qualifying(line: &[u8], bare_domain: Option<&str>) -> Result<Command, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| {
        // Non-UTF-8 bytes can still be a known verb with garbage arguments.
        ParseError::Syntax("invalid UTF-8")
    })?;
    if line.contains(['\r', '\n', '\0']) {
        return Err(ParseError::Syntax("control character in command"));
    }
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    if verb.len() > 8 {
        return Err(ParseError::Unknown);
    }
    let verb = verb.to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let arg = rest.trim();
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                return Err(ParseError::Syntax(
                    "EHLO/HELO needs exactly one domain or address",
                ));
            }
            if arg.len() > MAX_DOMAIN + 2 {
                return Err(ParseError::TooLong("domain"));
            }
            Ok(if verb == "EHLO" {
                Command::Ehlo(arg.to_string())
            } else {
                Command::Helo(arg.to_string())
            })
        }
        "MAIL" => parse_mail(rest, bare_domain),
        "RCPT" => parse_rcpt(rest, bare_domain),
        "DATA" => no_args(rest, Command::Data),
        "RSET" => no_args(rest, Command::Rset),
        "QUIT" => no_args(rest, Command::Quit),
        "STARTTLS" => no_args(rest, Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => {
            let arg = rest.trim();
            if arg.is_empty() {
                return Err(ParseError::Syntax("VRFY needs an argument"));
            }
            Ok(Command::Vrfy(arg.to_string()))
        }
        "BDAT" => parse_bdat(rest),
        "AUTH" => parse_auth(rest),
        _ => Err(ParseError::Unknown),
    }
}

fn no_args(rest: &str, cmd: Command) -> Result<Command, ParseError> {
    if rest.trim().is_empty() {
        Ok(cmd)
    } else {
        Err(ParseError::Syntax("no arguments allowed"))
    }
}

fn parse_bdat(rest: &str) -> Result<Command, ParseError> {
    let mut words = rest.split_ascii_whitespace();
    let size = words
        .next()
        .filter(|w| !w.is_empty() && w.len() <= 20 && w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or(ParseError::Syntax("BDAT needs a chunk size"))?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(ParseError::Syntax("BDAT size [LAST]")),
    };
    if words.next().is_some() {
        return Err(ParseError::Syntax("BDAT size [LAST]"));
    }
    Ok(Command::Bdat { size, last })
}

fn parse_auth(rest: &str) -> Result<Command, ParseError> {
    let mut words = rest.split_ascii_whitespace();
    let mechanism = words
        .next()
        .filter(|m| {
            m.len() <= 20
                && m.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .ok_or(ParseError::Syntax("AUTH mechanism [initial-response]"))?
        .to_ascii_uppercase();
    let initial = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(ParseError::Syntax("AUTH mechanism [initial-response]"));
    }
    Ok(Command::Auth { mechanism, initial })
}

/// Splits `FROM:<path> params` after the verb; tolerates a space after the colon, as common
/// clients send it and Postfix accepts it.
fn split_path<'a>(rest: &'a str, keyword: &str) -> Result<(&'a str, &'a str), ParseError> {
    let kw_len = keyword.len();
    // `get`: byte `kw_len` of a non-ASCII line need not be a character boundary.
    if !rest
        .get(..kw_len)
        .is_some_and(|kw| kw.eq_ignore_ascii_case(keyword))
    {
        return Err(ParseError::Syntax(if keyword == "FROM:" {
            "use MAIL FROM:<address>"
        } else {
            "use RCPT TO:<address>"
        }));
    }
    let after = rest[kw_len..].trim_start_matches(' ');
    if !after.starts_with('<') {
        return Err(ParseError::Syntax("address must be in angle brackets"));
    }
    // Find the closing '>' honouring quoted strings in the local part.
    let bytes = after.as_bytes();
    let mut i = 1;
    let mut in_quote = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b'>' if !in_quote => break,
            _ => {}
        }
        i += 1;
    }
    if i >= bytes.len() {
        return Err(ParseError::Syntax("missing '>'"));
    }
    let path = &after[..=i];
    let params = &after[i + 1..];
    if !params.is_empty() && !params.starts_with(' ') {
        return Err(ParseError::Syntax("junk after address"));
    }
    if path.len() > MAX_PATH {
        return Err(ParseError::TooLong("path over 256 octets"));
    }
    Ok((path, params.trim()))
}

fn parse_mail(rest: &str, bare_domain: Option<&str>) -> Result<Command, ParseError> {
    let (path, params) = split_path(rest, "FROM:")?;
    let from = if path == "<>" {
        None
    } else {
        Some(parse_path(path, false, bare_domain)?)
    };
    let mut p = MailParams::default();
    let mut seen = Vec::new();
    for param in params.split_ascii_whitespace() {
        let (key, value) = split_param(param, &mut seen)?;
        match (key, value) {
            ("SIZE", Some(v)) => {
                if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseError::Syntax("SIZE=number"));
                }
                p.size = Some(v.parse().unwrap_or(u64::MAX));
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => p.body = Some(Body::SevenBit),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => {
                p.body = Some(Body::EightBitMime)
            }
            ("BODY", Some(_)) => return Err(ParseError::Parameter(param.to_string())),
            ("SMTPUTF8", None) => p.smtputf8 = true,
            ("RET", Some(v)) if v.eq_ignore_ascii_case("FULL") => p.ret = Some(Ret::Full),
            ("RET", Some(v)) if v.eq_ignore_ascii_case("HDRS") => p.ret = Some(Ret::Hdrs),
            ("RET", _) => return Err(ParseError::Syntax("RET=FULL or RET=HDRS")),
            ("ENVID", Some(v)) => {
                let d = xtext_decode(v).ok_or(ParseError::Syntax("ENVID must be xtext"))?;
                if d.is_empty() || d.len() > MAX_ENVID {
                    return Err(ParseError::Syntax("ENVID length"));
                }
                p.envid = Some(d);
            }
            ("AUTH", Some(v)) => {
                p.auth = Some(xtext_decode(v).ok_or(ParseError::Syntax("AUTH= must be xtext"))?)
            }
            _ => return Err(ParseError::Parameter(param.to_string())),
        }
    }
    Ok(Command::Mail { from, params: p })
}

fn parse_rcpt(rest: &str, bare_domain: Option<&str>) -> Result<Command, ParseError> {
    let (path, params) = split_path(rest, "TO:")?;
    if path == "<>" {
        return Err(ParseError::Address("null recipient"));
    }
    let to = parse_path(path, true, bare_domain)?;
    let mut p = RcptParams::default();
    let mut seen = Vec::new();
    for param in params.split_ascii_whitespace() {
        let (key, value) = split_param(param, &mut seen)?;
        match (key, value) {
            ("NOTIFY", Some(v)) => p.notify = Some(parse_notify(v)?),
            ("ORCPT", Some(v)) => {
                let (kind, addr) = v
                    .split_once(';')
                    .ok_or(ParseError::Syntax("ORCPT=addr-type;xtext"))?;
                if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(ParseError::Syntax("ORCPT addr-type"));
                }
                let addr = xtext_decode(addr).ok_or(ParseError::Syntax("ORCPT must be xtext"))?;
                if addr.is_empty() || addr.len() > MAX_ORCPT {
                    return Err(ParseError::Syntax("ORCPT length"));
                }
                p.orcpt = Some(format!("{};{}", kind.to_ascii_lowercase(), addr));
            }
            _ => return Err(ParseError::Parameter(param.to_string())),
        }
    }
    Ok(Command::Rcpt { to, params: p })
}

fn parse_notify(v: &str) -> Result<Notify, ParseError> {
    let mut n = Notify::default();
    for word in v.split(',') {
        match word.to_ascii_uppercase().as_str() {
            "NEVER" => n.never = true,
            "SUCCESS" => n.success = true,
            "FAILURE" => n.failure = true,
            "DELAY" => n.delay = true,
            _ => return Err(ParseError::Syntax("NOTIFY=NEVER or SUCCESS,FAILURE,DELAY")),
        }
    }
    // RFC 3461 §4.1: NEVER must appear alone.
    if n.never && (n.success || n.failure || n.delay) {
        return Err(ParseError::Syntax("NOTIFY=NEVER must be alone"));
    }
    Ok(n)
}

/// Splits one ESMTP parameter into its upper-cased keyword and value, refusing a keyword already
/// in `seen` (each parameter at most once per command); the keyword returned is `seen`'s last.
fn split_param<'a, 's>(
    p: &'a str,
    seen: &'s mut Vec<String>,
) -> Result<(&'s str, Option<&'a str>), ParseError> {
    let (key, value) = match p.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (p, None),
    };
    let key = key.to_ascii_uppercase();
    if seen.contains(&key) {
        return Err(ParseError::Syntax("duplicate parameter"));
    }
    seen.push(key);
    Ok((seen.last().map_or("", String::as_str), value))
}

/// Decodes RFC 3461 §4 xtext (`+XX` hex escapes; printable ASCII except `+` and `=`).
/// UTF-8 is let through as well, since SMTPUTF8 clients send it (RFC 6533 utf-8-addr-xtext).
pub fn xtext_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'=' => return None,
            b if b < 0x21 || b == 0x7f => return None,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes a string as RFC 3461 xtext.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// Parses `<[@route,...:]local@domain>` (RFC 5321 §4.1.2). A recipient may be the bare
/// `<Postmaster>` (§4.1.1.3); another bare local part gets `bare_domain`, if given.
fn parse_path(path: &str, rcpt: bool, bare_domain: Option<&str>) -> Result<Mailbox, ParseError> {
    let err = ParseError::Address;
    let inner = path
        .strip_prefix('<')
        .and_then(|p| p.strip_suffix('>'))
        .ok_or(err("missing angle brackets"))?;
    // Source route: accepted and ignored (RFC 5321 §3.6.1, Appendix C).
    let inner = if inner.starts_with('@') {
        let (route, rest) = inner.split_once(':').ok_or(err("bad source route"))?;
        for hop in route.split(',') {
            let d = hop.strip_prefix('@').ok_or(err("bad source route"))?;
            check_domain(d).map_err(err)?;
        }
        rest
    } else {
        inner
    };
    if rcpt && inner.eq_ignore_ascii_case("postmaster") {
        return Ok(Mailbox {
            local: inner.to_string(),
            domain: String::new(),
        });
    }
    let (local, domain) = match (inner.rfind('@'), bare_domain) {
        (Some(at), _) => (&inner[..at], &inner[at + 1..]),
        (None, Some(domain)) => (inner, domain),
        (None, None) => return Err(err("address needs a domain")),
    };
    if local.is_empty() {
        return Err(err("empty local part"));
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(ParseError::TooLong("local part over 64 octets"));
    }
    if domain.len() > MAX_DOMAIN {
        return Err(ParseError::TooLong("domain over 255 octets"));
    }
    check_local(local).map_err(err)?;
    // `user@example.org.`: the trailing dot is the DNS root, the same domain.
    let bare = match domain.strip_suffix('.') {
        Some(d) if !domain.starts_with('[') => d,
        _ => domain,
    };
    check_domain(bare).map_err(err)?;
    Ok(Mailbox {
        local: quote_local(&unquote_local(local)),
        domain: canonical_domain(domain),
    })
}

/// atext of RFC 5322 §3.2.3, plus any non-ASCII character (RFC 6531 §3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

fn check_local(local: &str) -> Result<(), &'static str> {
    if let Some(q) = local.strip_prefix('"') {
        let q = q.strip_suffix('"').ok_or("unterminated quoted string")?;
        let mut esc = false;
        for c in q.chars() {
            if esc {
                if !(' '..='~').contains(&c) {
                    return Err("bad quoted pair");
                }
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' || (c.is_ascii() && !(' '..='~').contains(&c)) {
                return Err("bad character in quoted string");
            }
        }
        if esc {
            return Err("bad quoted pair");
        }
        return Ok(());
    }
    if !is_dot_atom(local) {
        return Err("bad local part");
    }
    Ok(())
}

/// Whether `domain` is a domain (LDH labels, UTF-8 allowed) or an address literal as a path
/// takes it (RFC 5321 §4.1.2); the error says what is wrong.
pub fn check_domain(domain: &str) -> Result<(), &'static str> {
    if domain.is_empty() {
        return Err("empty domain");
    }
    if let Some(lit) = domain.strip_prefix('[') {
        let lit = lit.strip_suffix(']').ok_or("bad address literal")?;
        if let Some(v6) = lit
            .strip_prefix("IPv6:")
            .or_else(|| lit.strip_prefix("ipv6:"))
        {
            return v6
                .parse::<std::net::Ipv6Addr>()
                .map(|_| ())
                .map_err(|_| "bad IPv6 literal");
        }
        return lit
            .parse::<std::net::Ipv4Addr>()
            .map(|_| ())
            .map_err(|_| "bad address literal");
    }
    for label in domain.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("bad domain");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("bad domain");
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        {
            return Err("bad domain");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        parse(s.as_bytes())
    }

    #[test]
    fn verbs_are_case_insensitive() {
        assert_eq!(
            p("ehlo client.example").unwrap(),
            Command::Ehlo("client.example".into())
        );
        assert_eq!(p("HeLo x").unwrap(), Command::Helo("x".into()));
        assert_eq!(p("data").unwrap(), Command::Data);
        assert_eq!(p("QUIT").unwrap(), Command::Quit);
        assert_eq!(p("noop hello").unwrap(), Command::Noop);
        assert_eq!(p("help me").unwrap(), Command::Help);
        assert_eq!(p("StartTLS").unwrap(), Command::StartTls);
        assert_eq!(p("RSET").unwrap(), Command::Rset);
    }

    #[test]
    fn unknown_and_syntax() {
        assert_eq!(p("FOO").unwrap_err().code(), 500);
        assert_eq!(p("").unwrap_err().code(), 500);
        assert_eq!(p("EHLO").unwrap_err().code(), 501);
        assert_eq!(p("EHLO a b").unwrap_err().code(), 501);
        assert_eq!(p("DATA x").unwrap_err().code(), 501);
        assert_eq!(p("QUIT now").unwrap_err().code(), 501);
        assert_eq!(p("VRFY").unwrap_err().code(), 501);
        assert_eq!(p("MAIL <a@b>").unwrap_err().code(), 501);
        assert_eq!(p("MAIL FROM:a@b").unwrap_err().code(), 501);
        assert_eq!(p("MAIL FROM:<a@b").unwrap_err().code(), 501);
        assert_eq!(p("MAIL FROM:<a@b>x").unwrap_err().code(), 501);
        assert_eq!(p("RCPT TO:<>").unwrap_err().code(), 501);
        assert_eq!(p("RCPT TO:<a>").unwrap_err().code(), 501);
        assert_eq!(p("RCPT TO:<a@>").unwrap_err().code(), 501);
        assert_eq!(p("RCPT TO:<@b>").unwrap_err().code(), 501);
        assert_eq!(p("RCPT TO:<a..b@c>").unwrap_err().code(), 501);
        assert_eq!(p("RCPT TO:<a@b..c>").unwrap_err().code(), 501);
        assert_eq!(p("RCPT TO:<a@-b.c>").unwrap_err().code(), 501);
        assert_eq!(p("RCPT TO:<a b@c>").unwrap_err().code(), 501);
        assert_eq!(p("MAIL FROM:<a@b>\r").unwrap_err().code(), 501);
    }

    #[test]
    fn paths() {
        let Command::Mail { from, params } = p("MAIL FROM:<>").unwrap() else {
            panic!()
        };
        assert_eq!(from, None);
        assert_eq!(params, MailParams::default());
        let Command::Mail { from, .. } = p("mail from: <bob@example.test>").unwrap() else {
            panic!()
        };
        assert_eq!(from.unwrap().to_string(), "bob@example.test");
        let Command::Rcpt { to, .. } = p("RCPT TO:<@relay.a,@relay.b:u@d.test>").unwrap() else {
            panic!()
        };
        assert_eq!(to.to_string(), "u@d.test");
        let Command::Rcpt { to, .. } = p("RCPT TO:<Postmaster>").unwrap() else {
            panic!()
        };
        assert!(to.is_bare_postmaster());
        let Command::Rcpt { to, .. } = p(r#"RCPT TO:<"a b\"c>"@d.test>"#).unwrap() else {
            panic!()
        };
        assert_eq!(to.local_unquoted(), "a b\"c>");
        let Command::Rcpt { to, .. } = p("RCPT TO:<u@[127.0.0.1]>").unwrap() else {
            panic!()
        };
        assert_eq!(to.domain, "[127.0.0.1]");
        assert!(p("RCPT TO:<u@[IPv6:::1]>").is_ok());
        assert!(p("RCPT TO:<u@[999.0.0.1]>").is_err());
        let Command::Rcpt { to, .. } = p("RCPT TO:<jösé@exämple.test>").unwrap() else {
            panic!()
        };
        assert!(to.is_utf8());
    }

    #[test]
    fn bare_addresses_are_qualified_only_when_asked() {
        let q = |line: &str| match parse_qualifying(line.as_bytes(), Some("Local.TEST")) {
            Ok(Command::Mail { from, .. }) => from.map(|m| m.to_string()).unwrap_or_default(),
            Ok(Command::Rcpt { to, .. }) => to.to_string(),
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(q("MAIL FROM:<root>"), "root@local.test");
        assert_eq!(q("RCPT TO:<\"a b\">"), "\"a b\"@local.test");
        assert_eq!(q("RCPT TO:<u@d.test>"), "u@d.test");
        assert_eq!(q("MAIL FROM:<>"), "");
        // The bare Postmaster keeps its meaning (RFC 5321 §4.1.1.3), as a recipient only.
        assert_eq!(q("RCPT TO:<Postmaster>"), "Postmaster");
        assert_eq!(q("MAIL FROM:<Postmaster>"), "Postmaster@local.test");
        for bad in ["RCPT TO:<a b>", "RCPT TO:<a..b>", "RCPT TO:<a@>"] {
            assert!(
                parse_qualifying(bad.as_bytes(), Some("local.test")).is_err(),
                "{bad}"
            );
        }
        let e = p("MAIL FROM:<root>").unwrap_err();
        assert_eq!((e.code(), e.enhanced()), (501, (5, 1, 7)));
    }

    #[test]
    fn addresses_are_canonical() {
        let rcpt = |a: &str| match p(&format!("RCPT TO:<{a}>")) {
            Ok(Command::Rcpt { to, .. }) => to.to_string(),
            other => panic!("{a}: {other:?}"),
        };
        // RFC 5321 §4.1.2: a quoted string that needs no quotes is the same local part.
        assert_eq!(rcpt(r#""demo"@localhost"#), "demo@localhost");
        assert_eq!(rcpt(r#""de\mo"@localhost"#), "demo@localhost");
        assert_eq!(
            rcpt(r#""first.last"@Example.TEST"#),
            "first.last@example.test"
        );
        assert_eq!(rcpt(r#""a+b"@x.test"#), "a+b@x.test");
        // Quotes that are needed stay, with the one minimal escaping.
        assert_eq!(rcpt(r#""a b"@x.test"#), r#""a b"@x.test"#);
        assert_eq!(rcpt(r#""a\ b"@x.test"#), r#""a b"@x.test"#);
        assert_eq!(rcpt(r#""a\"b"@x.test"#), r#""a\"b"@x.test"#);
        assert_eq!(rcpt(r#""a..b"@x.test"#), r#""a..b"@x.test"#);
        assert_eq!(rcpt(r#"".a"@x.test"#), r#"".a"@x.test"#);
        assert_eq!(rcpt(r#""a@b"@x.test"#), r#""a@b"@x.test"#);
        assert_eq!(rcpt(r#""\\"@x.test"#), r#""\\"@x.test"#);
        // Case of the local part is kept; the domain is lower-cased, its root dot dropped.
        assert_eq!(rcpt("Demo@LocalHost."), "Demo@localhost");
        assert_eq!(rcpt("@a.test,@b.test:Demo@X.Test"), "Demo@x.test");
        assert_eq!(rcpt("u@[127.0.0.1]"), "u@[127.0.0.1]");
        assert_eq!(rcpt("jösé@Exämple.test"), "jösé@exämple.test");
        assert!(p("RCPT TO:<u@x.test..>").is_err());
        assert!(p("RCPT TO:<u@.>").is_err());
        assert!(p("RCPT TO:<u@[127.0.0.1].>").is_err());
        assert!(p("RCPT TO:<de\\mo@x.test>").is_err());
        // Canonical forms parse back to themselves.
        for a in [r#""a b"@x.test"#, r#""a\"b"@x.test"#, "Demo@localhost"] {
            assert_eq!(rcpt(&rcpt(a)), rcpt(a));
        }
        let Command::Mail { from, .. } = p(r#"MAIL FROM:<"victim"@Other.Example.>"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(from.unwrap().to_string(), "victim@other.example");
    }

    #[test]
    fn limits_are_enforced() {
        let local = "a".repeat(MAX_LOCAL_PART);
        assert!(p(&format!("RCPT TO:<{local}@d.test>")).is_ok());
        let local = "a".repeat(MAX_LOCAL_PART + 1);
        assert!(matches!(
            p(&format!("RCPT TO:<{local}@d.test>")),
            Err(ParseError::TooLong(_))
        ));
        // A path of exactly MAX_PATH octets is fine, one more is not.
        let dom = |n: usize| {
            let mut labels = Vec::new();
            let mut left = n;
            while left > 0 {
                let take = left.min(63);
                labels.push("d".repeat(take));
                left -= take;
                if left > 0 {
                    left -= 1; // the dot
                    if left == 0 {
                        labels.push("e".into());
                    }
                }
            }
            labels.join(".")
        };
        let d = dom(MAX_PATH - 4); // "<a@" + ">" = 4
        assert_eq!(format!("<a@{d}>").len(), MAX_PATH);
        assert!(p(&format!("RCPT TO:<a@{d}>")).is_ok());
        let d = dom(MAX_PATH - 3);
        assert!(matches!(
            p(&format!("RCPT TO:<a@{d}>")),
            Err(ParseError::TooLong(_))
        ));
    }

    #[test]
    fn a_non_ascii_keyword_is_a_syntax_error_not_a_panic() {
        // Byte 5 of "FRO\u{20ac}:" is inside the euro sign.
        assert_eq!(p("MAIL FRO\u{20ac}:<a@b>").unwrap_err().code(), 501);
        assert_eq!(p("RCPT T\u{e9}:<a@b>").unwrap_err().code(), 501);
    }

    #[test]
    fn mail_params() {
        let Command::Mail { params, .. } = p(
            "MAIL FROM:<a@b.test> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=abc+2Bdef AUTH=<>",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(params.size, Some(1000));
        assert_eq!(params.body, Some(Body::EightBitMime));
        assert!(params.smtputf8);
        assert_eq!(params.ret, Some(Ret::Hdrs));
        assert_eq!(params.envid.as_deref(), Some("abc+def"));
        assert_eq!(params.auth.as_deref(), Some("<>"));
        assert_eq!(p("MAIL FROM:<a@b> FOO=1").unwrap_err().code(), 555);
        assert_eq!(
            p("MAIL FROM:<a@b> BODY=BINARYMIME").unwrap_err().code(),
            555
        );
        assert_eq!(p("MAIL FROM:<a@b> SIZE=x").unwrap_err().code(), 501);
        assert_eq!(p("MAIL FROM:<a@b> SIZE=1 SIZE=2").unwrap_err().code(), 501);
        assert_eq!(p("MAIL FROM:<a@b> RET=X").unwrap_err().code(), 501);
        assert_eq!(p("MAIL FROM:<a@b> ENVID=a=b").unwrap_err().code(), 501);
        assert_eq!(p("MAIL FROM:<a@b> ENVID=+zz").unwrap_err().code(), 501);
        let Command::Mail { params, .. } = p("MAIL FROM:<a@b> SIZE=99999999999999999999").unwrap()
        else {
            panic!()
        };
        assert_eq!(params.size, Some(u64::MAX));
    }

    #[test]
    fn rcpt_params() {
        let Command::Rcpt { params, .. } =
            p("RCPT TO:<a@b.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+40b.test").unwrap()
        else {
            panic!()
        };
        let n = params.notify.unwrap();
        assert!(n.success && n.delay && !n.failure && !n.never);
        assert_eq!(n.to_string(), "SUCCESS,DELAY");
        assert_eq!(params.orcpt.as_deref(), Some("rfc822;a@b.test"));
        assert_eq!(
            p("RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS").unwrap_err().code(),
            501
        );
        assert_eq!(p("RCPT TO:<a@b> NOTIFY=SOMETIMES").unwrap_err().code(), 501);
        assert_eq!(
            p("RCPT TO:<a@b> ORCPT=nosemicolon").unwrap_err().code(),
            501
        );
        assert_eq!(p("RCPT TO:<a@b> SIZE=1").unwrap_err().code(), 555);
    }

    #[test]
    fn bdat_and_auth() {
        assert_eq!(
            p("BDAT 100 LAST").unwrap(),
            Command::Bdat {
                size: 100,
                last: true
            }
        );
        assert_eq!(
            p("bdat 0").unwrap(),
            Command::Bdat {
                size: 0,
                last: false
            }
        );
        assert_eq!(p("BDAT").unwrap_err().code(), 501);
        assert_eq!(p("BDAT -1").unwrap_err().code(), 501);
        assert_eq!(p("BDAT 1 FIRST").unwrap_err().code(), 501);
        assert_eq!(p("BDAT 99999999999999999999999").unwrap_err().code(), 501);
        assert_eq!(
            p("auth plain AGJvYgBwYXNzd29yZA==").unwrap(),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGJvYgBwYXNzd29yZA==".into())
            }
        );
        assert_eq!(p("AUTH").unwrap_err().code(), 501);
        assert_eq!(p("AUTH PLAIN a b").unwrap_err().code(), 501);
    }

    #[test]
    fn xtext_round_trip() {
        for s in ["plain", "a+b=c d", "ünï", "+++"] {
            assert_eq!(xtext_decode(&xtext_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(xtext_decode("+4"), None);
        assert_eq!(xtext_decode("+4g"), None);
    }

    #[test]
    fn garbage_never_panics() {
        let samples: &[&[u8]] = &[
            b"\xff\xfe",
            b"MAIL FROM:<\xff@x>",
            b"MAIL FROM:<\"",
            b"MAIL FROM:<\"\\",
            b"RCPT TO:<@",
            b"RCPT TO:<@a:",
            b"RCPT TO:<@a,b:c@d>",
            b"MAIL FROM:<a@[>",
            b"MAIL FROM:<a@b> ENVID=+",
            b"RCPT TO:<a@b> ORCPT=;",
            b"MAIL FROM:<a@b> =",
            b"MAIL",
            b"RCPT",
            b"MAIL FROM:",
            b"\0",
        ];
        for s in samples {
            let _ = parse(s);
        }
        // Every prefix of a long valid command parses or fails cleanly.
        let full = "MAIL FROM:<\"q\\\"x\"@[IPv6:::1]> SIZE=5 BODY=7BIT RET=FULL ENVID=x+2B";
        for i in 0..=full.len() {
            if full.is_char_boundary(i) {
                let _ = p(&full[..i]);
            }
        }
    }
}
