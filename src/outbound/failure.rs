//! What a delivery came to, per recipient: [`Sent`] or a [`Failure`] with what a DSN needs
//! (RFC 3464: status, diagnostic, remote MTA).

use crate::dns::DnsError;
use crate::net::smtp::DriverError;
use crate::smtp::client::{Error as SmtpError, Stage};
use crate::smtp::reply::Reply;

/// What failed, so that a caller with its own policy can decide differently from the MTA's
/// reading in [`Failure::temporary`]: msend takes an untrusted certificate, a server without
/// the required STARTTLS and a server without a usable AUTH as permanent (the user or the
/// server's admin must act, exit 69), mrelayd defers them as Postfix does (4.7.x).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum What {
    /// Nothing on the wire: local delivery, the queue, configuration, a task that failed.
    #[default]
    Other,
    /// The DNS answer for the destination or one of its hosts.
    Dns,
    /// The TCP connection could not be made (refused, unreachable, timed out).
    Connect,
    /// The connection broke, timed out or carried something that is not SMTP, mid-session.
    Connection,
    /// The TLS handshake failed (not for trust).
    TlsHandshake,
    /// TLS is required but the server does not offer STARTTLS (RFC 3207 §4; a refusing reply
    /// to STARTTLS is [`What::Reply`] at [`Stage::Tls`]).
    TlsUnavailable,
    /// The server's certificate is not trusted (unknown issuer, name mismatch, expired).
    CertificateTrust,
    /// AUTH could not be done: no mechanism, not encrypted, no password (a refusing reply is
    /// [`What::Reply`] at [`Stage::Auth`]).
    Auth,
    /// A server reply decided, with this code; [`Failure::stage`] says where and
    /// [`Failure::status`] carries its enhanced status code (RFC 3463).
    Reply(u16),
    /// The next hop is this host (RFC 5321 §5.1 mail loop).
    Loop,
}

/// Why a recipient was not delivered, with what a DSN needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Worth retrying, as an MTA reads it (mrelayd; [`Failure::what`] for other policies).
    pub temporary: bool,
    /// What failed.
    pub what: What,
    /// One line for logs and the queue listing.
    pub message: String,
    /// RFC 3463 status code (`5.1.1`).
    pub status: String,
    /// The remote server's reply, for `Diagnostic-Code: smtp; ...`.
    pub diagnostic: Option<String>,
    /// The server that answered, for `Remote-MTA: dns; ...`.
    pub remote_mta: Option<String>,
    /// The SMTP stage whose reply decided (RCPT, MAIL, AUTH, ...), when a server answered.
    pub stage: Option<Stage>,
}

impl Failure {
    /// A temporary failure with a generic status.
    pub fn temp(message: impl Into<String>) -> Failure {
        Failure::new(true, message, "4.0.0")
    }

    /// A permanent failure with a generic status.
    pub fn perm(message: impl Into<String>) -> Failure {
        Failure::new(false, message, "5.0.0")
    }

    /// A failure with an explicit RFC 3463 status.
    pub fn new(temporary: bool, message: impl Into<String>, status: &str) -> Failure {
        Failure {
            temporary,
            what: What::Other,
            message: message.into(),
            status: status.to_string(),
            diagnostic: None,
            remote_mta: None,
            stage: None,
        }
    }

    /// This failure, saying what failed.
    pub fn because(mut self, what: What) -> Failure {
        self.what = what;
        self
    }
}

/// A failure decided by a server reply.
pub(super) fn reply_failure(reply: &Reply, host: &str, where_: &str, stage: Stage) -> Failure {
    let line = one_line(reply);
    Failure {
        temporary: !reply.is_permanent(),
        what: What::Reply(reply.code),
        message: format!("{where_} said at {stage}: {line}"),
        // The whole reply: `text()` has the enhanced code taken off.
        status: status_of_reply(reply.code, &line),
        diagnostic: Some(line),
        remote_mta: Some(host.to_string()),
        stage: Some(stage),
    }
}

/// A reply as one line (`550 5.1.1 no such user`), multi-line replies joined.
pub(super) fn one_line(reply: &Reply) -> String {
    let text = String::from_utf8_lossy(&reply.to_bytes()).into_owned();
    let parts: Vec<&str> = text
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.get(4..).unwrap_or(""))
        .collect();
    format!("{} {}", reply.code, parts.join(" "))
}

/// A recipient the next hop accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// `relay=host[ip]:port (250 ...)`, for logs.
    pub how: String,
    /// The next hop announced DSN, so NOTIFY/ORCPT went along and it reports from now on; a
    /// hop without DSN means a `relayed` DSN is owed for NOTIFY=SUCCESS (RFC 3461 §6.2.1.2).
    pub dsn_passed: bool,
    /// The host that accepted it (DSN Remote-MTA).
    pub host: String,
}

/// Delivery of one recipient: where it went, or why not.
pub type RcptOutcome = Result<Sent, Failure>;

/// A DNS answer as a delivery failure (RFC 7505 §4.2: null MX is 5.1.10; RFC 3463 5.1.2 for
/// a destination that does not exist).
pub fn dns_failure(e: &DnsError) -> Failure {
    match e {
        DnsError::NullMx(_) => Failure::new(false, e.to_string(), "5.1.10").because(What::Dns),
        DnsError::NxDomain(_) | DnsError::NoAddress(_) | DnsError::BadName(_) => {
            Failure::new(false, e.to_string(), "5.1.2").because(What::Dns)
        }
        DnsError::Temporary(_) => Failure::new(true, e.to_string(), "4.4.3").because(What::Dns),
    }
}

/// A session error as a failure. TLS trouble with a host is temporary for mail (the
/// certificate or the policy may be fixed; Postfix defers too).
pub(super) fn session_failure(e: &DriverError, host: &str, where_: &str) -> Failure {
    if let DriverError::Smtp(SmtpError::Rejected { stage, reply }) = e {
        return reply_failure(reply, host, where_, *stage);
    }
    let (temporary, status, what) = match e {
        DriverError::Trust(_) => (true, "4.7.5", What::CertificateTrust),
        DriverError::Tls(_) => (true, "4.7.5", What::TlsHandshake),
        DriverError::Smtp(SmtpError::TlsUnavailable) => (true, "4.7.4", What::TlsUnavailable),
        DriverError::Smtp(SmtpError::AuthNotEncrypted | SmtpError::AuthUnsupported(_)) => {
            (true, "4.7.0", What::Auth)
        }
        DriverError::Smtp(SmtpError::Unsupported(_)) => (false, "5.6.3", What::Other),
        // A stage asked for by msend's --quit-after that this session never went through.
        DriverError::Smtp(SmtpError::NotReached { .. }) => (false, "5.0.0", What::Other),
        DriverError::Timeout(_) => (true, "4.4.2", What::Connection),
        DriverError::Eof(_) | DriverError::Io { .. } => (true, "4.4.2", What::Connection),
        _ if e.is_temporary() => (true, "4.0.0", What::Connection),
        _ => (false, "5.0.0", What::Connection),
    };
    Failure {
        temporary,
        what,
        message: format!("{where_}: {e}"),
        status: status.to_string(),
        diagnostic: None,
        remote_mta: Some(host.to_string()),
        stage: None,
    }
}

/// Enhanced status code from an SMTP reply: the reply's own `X.Y.Z` when present and its class
/// matches the reply code's first digit, else `5.0.0` for 5xx, `2.0.0` for 2xx and `4.0.0`
/// for anything else (RFC 3463 §3; an unexpected code is treated as temporary so it is retried).
/// `text` may be the whole reply (`550 5.1.1 no such user`, `550-5.1.1 ...` lines) or the text
/// after the code (`5.1.1 no such user`); only its first line is looked at (RFC 2034 §4: every
/// line carries the same code).
pub fn status_of_reply(code: u16, text: &str) -> String {
    let class = code / 100;
    let first = text.lines().next().unwrap_or("").trim_start();
    let digits = format!("{code:03}");
    let rest = match first.strip_prefix(digits.as_str()) {
        Some(r) if r.is_empty() => r,
        Some(r) if r.starts_with(' ') || r.starts_with('-') => &r[1..],
        _ => first,
    };
    if let Some((c, s, d)) = rest.split_whitespace().next().and_then(parse_enhanced) {
        if u16::from(c) == class {
            return format!("{c}.{s}.{d}");
        }
    }
    match class {
        2 => "2.0.0",
        5 => "5.0.0",
        _ => "4.0.0",
    }
    .to_string()
}

/// Parses a whole `class.subject.detail` (RFC 3463 §2) with the reply parser's rule, nothing
/// after it.
pub fn parse_enhanced(s: &str) -> Option<(u8, u16, u16)> {
    match crate::smtp::reply::parse_enhanced(s) {
        Some((code, "")) => Some(code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_answers_map_to_rfc_statuses() {
        assert_eq!(dns_failure(&DnsError::NullMx("x".into())).status, "5.1.10");
        assert!(!dns_failure(&DnsError::NxDomain("x".into())).temporary);
        assert!(dns_failure(&DnsError::Temporary("x".into())).temporary);
    }

    #[test]
    fn reply_failure_keeps_the_enhanced_code() {
        let r = Reply::new(550, Some((5, 1, 1)), "no such user");
        let f = reply_failure(&r, "mx.test", "mx.test[127.0.0.1]:25", Stage::Rcpt);
        assert_eq!(f.status, "5.1.1");
        assert!(!f.temporary);
        assert_eq!(f.stage, Some(Stage::Rcpt));
        assert_eq!(f.diagnostic.as_deref(), Some("550 5.1.1 no such user"));
        let t = reply_failure(&Reply::new(451, None, "later"), "h", "h", Stage::Rcpt);
        assert!(t.temporary && t.status == "4.0.0", "{t:?}");
    }

    #[test]
    fn multi_line_reply_is_one_line() {
        let r = Reply::multi(550, Some((5, 1, 1)), vec!["no such".into(), "user".into()]);
        let l = one_line(&r);
        assert!(l.starts_with("550 ") && !l.contains('\n'), "{l}");
    }

    #[test]
    fn status_of_reply_cases() {
        assert_eq!(
            status_of_reply(550, "550 5.1.1 <x@y>: no such user"),
            "5.1.1"
        );
        assert_eq!(status_of_reply(550, "5.1.1 <x@y>: no such user"), "5.1.1");
        assert_eq!(
            status_of_reply(550, "550-5.7.1 first\r\n550 5.7.1 second"),
            "5.7.1"
        );
        assert_eq!(status_of_reply(452, "452 4.2.2 mailbox full"), "4.2.2");
        assert_eq!(status_of_reply(250, "250 2.1.5 ok"), "2.1.5");
        // Class mismatch: the reply code wins.
        assert_eq!(status_of_reply(550, "550 4.2.2 mailbox full"), "5.0.0");
        assert_eq!(status_of_reply(451, "5.1.1 nope"), "4.0.0");
        // No or malformed enhanced code.
        assert_eq!(status_of_reply(550, "550 no such user"), "5.0.0");
        assert_eq!(status_of_reply(421, ""), "4.0.0");
        assert_eq!(status_of_reply(550, "550 5.1"), "5.0.0");
        assert_eq!(status_of_reply(550, "550 5.1.1.1 x"), "5.0.0");
        assert_eq!(status_of_reply(550, "550 5.1111.1 x"), "5.0.0");
        assert_eq!(status_of_reply(550, "550 5.a.1 x"), "5.0.0");
        assert_eq!(status_of_reply(550, "550 3.1.1 x"), "5.0.0");
        assert_eq!(status_of_reply(550, "5501 5.1.1"), "5.0.0");
        // Leading zeros are normalised.
        assert_eq!(status_of_reply(550, "550 5.01.001 x"), "5.1.1");
        // Unexpected codes are temporary; 2xx success.
        assert_eq!(status_of_reply(354, "354 go ahead"), "4.0.0");
        assert_eq!(status_of_reply(0, "garbage"), "4.0.0");
        assert_eq!(status_of_reply(u16::MAX, "\u{0}\u{ffff}"), "4.0.0");
        assert_eq!(status_of_reply(220, "220"), "2.0.0");
    }
}
