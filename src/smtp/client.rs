//! The SMTP client shared by msend, mrelayd's remote delivery and mdig-mx.
//!
//! [`Client`] is a sans-IO state machine (RFC 5321 §3-4): feed it each server [`Reply`] with
//! [`Client::on_reply`] and perform the [`Action`]s it returns (bytes to send, a TLS upgrade to do,
//! "session ready", "transaction done", failure). It handles the greeting, EHLO with HELO fallback,
//! the EHLO extensions, STARTTLS (RFC 3207), AUTH (RFC 4954: PLAIN, LOGIN, XOAUTH2, OAUTHBEARER
//! through the one SASL client, [`crate::auth::sasl_client`]), and transactions with
//! MAIL/RCPT/DATA, pipelined when the server offers PIPELINING (RFC 2920). A session can carry
//! several transactions (persistent connections). The async driver that runs it over a socket
//! is [`crate::net::smtp`].

use std::collections::VecDeque;
use std::fmt;

use super::reply::Reply;
use crate::auth::{Mechanism, SaslClient};
use crate::rfc5322;
use crate::tls;

/// Stages of a session, for `--quit-after` and for saying where a failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// TCP (or implicit TLS) connection established.
    Connect,
    /// The server's 220 greeting.
    Banner,
    /// EHLO (or HELO).
    Ehlo,
    /// STARTTLS and the EHLO after it.
    Tls,
    /// AUTH.
    Auth,
    /// MAIL FROM.
    Mail,
    /// RCPT TO.
    Rcpt,
    /// DATA command (354 expected).
    Data,
    /// The message body and its final reply.
    Body,
    /// QUIT.
    Quit,
}

impl Stage {
    /// Parses a `--quit-after` value.
    pub fn parse(s: &str) -> Option<Stage> {
        Some(match s {
            "connect" => Stage::Connect,
            "banner" | "greeting" => Stage::Banner,
            "ehlo" | "helo" => Stage::Ehlo,
            "tls" | "starttls" => Stage::Tls,
            "auth" => Stage::Auth,
            "mail" | "from" => Stage::Mail,
            "rcpt" | "to" => Stage::Rcpt,
            _ => return None,
        })
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Connect => "connect",
            Stage::Banner => "greeting",
            Stage::Ehlo => "EHLO",
            Stage::Tls => "STARTTLS",
            Stage::Auth => "AUTH",
            Stage::Mail => "MAIL FROM",
            Stage::Rcpt => "RCPT TO",
            Stage::Data => "DATA",
            Stage::Body => "end of data",
            Stage::Quit => "QUIT",
        })
    }
}

/// Extensions a server announced in its EHLO reply (RFC 5321 §4.1.1.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extensions {
    /// Whether the server spoke ESMTP at all (EHLO accepted); false after a HELO fallback.
    pub esmtp: bool,
    /// SIZE (RFC 1870): `Some(0)` means announced without a limit.
    pub size: Option<u64>,
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// 8BITMIME (RFC 6152).
    pub eightbitmime: bool,
    /// SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// DSN (RFC 3461).
    pub dsn: bool,
    /// CHUNKING (RFC 3030).
    pub chunking: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// SASL mechanisms from `AUTH ...` (upper case).
    pub auth: Vec<String>,
}

impl Extensions {
    /// Parses an EHLO reply: the first line is the greeting, each further line one keyword with
    /// parameters. Keywords are case-insensitive; `AUTH=LOGIN` (old Outlook form) is accepted.
    pub fn from_ehlo(reply: &Reply) -> Extensions {
        let mut ext = Extensions {
            esmtp: true,
            ..Extensions::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split([' ', '=']).filter(|w| !w.is_empty());
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "SIZE" => {
                    ext.size = Some(words.next().and_then(|w| w.parse().ok()).unwrap_or(0));
                }
                "PIPELINING" => ext.pipelining = true,
                "8BITMIME" => ext.eightbitmime = true,
                "SMTPUTF8" => ext.smtputf8 = true,
                "STARTTLS" => ext.starttls = true,
                "DSN" => ext.dsn = true,
                "CHUNKING" => ext.chunking = true,
                "ENHANCEDSTATUSCODES" => ext.enhanced_status_codes = true,
                "AUTH" => {
                    for m in words {
                        let m = m.to_ascii_uppercase();
                        if !ext.auth.contains(&m) {
                            ext.auth.push(m);
                        }
                    }
                }
                _ => {}
            }
        }
        ext
    }
}

/// Credentials for AUTH. Only ever sent over TLS.
#[derive(Clone)]
pub struct Credentials {
    /// Authentication identity.
    pub user: String,
    /// Password, or the OAuth 2.0 token of XOAUTH2/OAUTHBEARER (never shown in transcripts).
    pub password: String,
    /// The mechanism to use; `None`: PLAIN when offered, else LOGIN.
    pub mechanism: Option<Mechanism>,
    /// The server's host name and port, sent by OAUTHBEARER (RFC 7628 §3.1).
    pub server: (String, u16),
}

impl Credentials {
    /// PLAIN-or-LOGIN credentials (the mechanism chosen by what the server offers), for
    /// `host`:`port`.
    pub fn password(user: String, password: String, host: &str, port: u16) -> Credentials {
        Credentials {
            user,
            password,
            mechanism: None,
            server: (host.to_string(), port),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ user: {:?}, password: <redacted>, mechanism: {:?} }}",
            self.user, self.mechanism
        )
    }
}

/// Session settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Name sent in EHLO/HELO (our host name).
    pub ehlo_name: String,
    /// TLS policy.
    pub tls: tls::Mode,
    /// AUTH credentials, if the session authenticates.
    pub auth: Option<Credentials>,
    /// Stop (QUIT) after this stage instead of going on (`--quit-after`).
    pub quit_after: Option<Stage>,
}

/// What a session failure was about, for exit codes and messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The server answered a command with a negative reply.
    Rejected {
        /// Where.
        stage: Stage,
        /// The server's reply.
        reply: Reply,
    },
    /// STARTTLS was required but the server does not offer it.
    TlsUnavailable,
    /// AUTH was requested but the session is not encrypted (AUTH is never sent in clear).
    AuthNotEncrypted,
    /// The server offers no SASL mechanism we speak (PLAIN, LOGIN), or no AUTH at all.
    AuthUnsupported(Vec<String>),
    /// The message needs an extension the server lacks (8BITMIME, SMTPUTF8) or exceeds its SIZE.
    Unsupported(String),
    /// The server broke the protocol (unexpected reply, data after STARTTLS's 220, ...).
    Protocol(String),
    /// `quit_after` names a stage this session never went through (no STARTTLS happened, no
    /// AUTH was done): stopping there would report something that did not happen.
    NotReached {
        /// The stage asked for.
        stage: Stage,
        /// Why the session did not go through it.
        why: String,
    },
}

impl Error {
    /// Whether retrying later may help: 4xx replies and protocol hiccups are temporary.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Rejected { reply, .. } => !reply.is_permanent(),
            Error::Protocol(_) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Rejected { stage, reply } => write!(f, "{stage} rejected: {reply}"),
            Error::TlsUnavailable => write!(f, "server does not offer STARTTLS"),
            Error::AuthNotEncrypted => {
                write!(f, "refusing to send AUTH over an unencrypted connection")
            }
            Error::AuthUnsupported(m) if m.is_empty() => write!(f, "server does not offer AUTH"),
            Error::AuthUnsupported(m) => {
                write!(
                    f,
                    "no supported AUTH mechanism (server offers {})",
                    m.join(" ")
                )
            }
            Error::Unsupported(s) => f.write_str(s),
            Error::Protocol(s) => write!(f, "protocol error: {s}"),
            Error::NotReached { stage, why } => {
                write!(
                    f,
                    "asked to stop after {stage}, which never happened: {why}"
                )
            }
        }
    }
}

impl std::error::Error for Error {}

/// One transaction: envelope and the message as it should arrive (headers + body, any line ends).
#[derive(Clone, Debug)]
pub struct Envelope {
    /// Reverse path without angle brackets; empty for the null sender `<>`.
    pub from: String,
    /// Forward paths without angle brackets.
    pub rcpts: Vec<String>,
    /// Extra MAIL FROM parameters (e.g. `RET=HDRS`, `ENVID=...`), sent verbatim.
    pub mail_params: Vec<String>,
    /// Extra RCPT TO parameters per recipient (same length as `rcpts` or empty), e.g. `NOTIFY=...`.
    pub rcpt_params: Vec<Vec<String>>,
}

/// The final outcome for one recipient of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RcptResult {
    /// The recipient.
    pub rcpt: String,
    /// Stage that decided it (Body when the message was accepted).
    pub stage: Stage,
    /// The deciding reply (the final 250 on success).
    pub reply: Reply,
}

impl RcptResult {
    /// Whether the server took responsibility for this recipient.
    pub fn accepted(&self) -> bool {
        self.stage == Stage::Body && self.reply.is_positive()
    }
}

/// Result of a transaction: one entry per recipient, in envelope order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Per-recipient results.
    pub rcpts: Vec<RcptResult>,
}

/// What the driver must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes. `shown` is what a transcript shows instead when the bytes carry a
    /// secret (AUTH) or are the message body.
    Send {
        /// Bytes for the wire.
        bytes: Vec<u8>,
        /// Transcript replacement, if the bytes must not be shown as they are.
        shown: Option<String>,
    },
    /// Start TLS on the transport now, then call [`Client::tls_established`].
    StartTls,
    /// The session is ready for [`Client::transaction`] (greeting, EHLO, TLS and AUTH done).
    Ready,
    /// A transaction finished (successfully or not, per recipient); the session is ready again
    /// unless the outcome carries a 421.
    Done(Outcome),
    /// `--quit-after` reached: QUIT has been queued; read its reply, then close.
    Stopped(Stage),
    /// The session failed; QUIT has been queued when the connection is still usable.
    Failed(Error),
    /// The QUIT reply came (or the server closed after a 421): close the connection.
    Closed,
}

/// What the next reply answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Auth,
    Mail,
    Rcpt(usize),
    Data,
    Body,
    Rset,
    Quit,
}

/// A transaction in progress.
#[derive(Debug)]
struct Txn {
    env: Envelope,
    body: Vec<u8>,
    pipelined: bool,
    mail_reply: Option<Reply>,
    rcpt_replies: Vec<Option<Reply>>,
    /// Final failure for everybody (MAIL or DATA rejected), if any.
    failure: Option<(Stage, Reply)>,
    /// Stop after MAIL or RCPT (`--quit-after`).
    stop: Option<Stage>,
}

/// The sans-IO SMTP client session.
#[derive(Debug)]
pub struct Client {
    settings: Settings,
    expect: VecDeque<Expect>,
    ext: Extensions,
    tls_active: bool,
    authenticated: bool,
    /// The SASL exchange of AUTH in progress.
    sasl: Option<SaslClient>,
    ready: bool,
    closed: bool,
    greeting: Option<Reply>,
    /// First line of the latest positive EHLO/HELO reply (the server's name for itself).
    hello_line: Option<String>,
    txn: Option<Txn>,
    /// The RCPT replies of the transaction `quit_after` stopped at [`Stage::Rcpt`].
    stopped_rcpts: Vec<RcptResult>,
}

/// What a message needs from the server (RFC 6152, RFC 6531).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// Bytes above 127 anywhere: BODY=8BITMIME.
    pub eight_bit: bool,
    /// Non-ASCII in an envelope address or in the header section: SMTPUTF8.
    pub smtputf8: bool,
}

/// Works out what the message and envelope need.
pub fn needs(env: &Envelope, message: &[u8]) -> Needs {
    let header_end = rfc5322::header_end(message).body;
    let non_ascii = |s: &[u8]| s.iter().any(|b| *b >= 0x80);
    let smtputf8 = non_ascii(env.from.as_bytes())
        || env.rcpts.iter().any(|r| non_ascii(r.as_bytes()))
        || non_ascii(&message[..header_end]);
    Needs {
        eight_bit: smtputf8 || non_ascii(message),
        smtputf8,
    }
}

fn cmd(text: String) -> Action {
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"\r\n");
    Action::Send { bytes, shown: None }
}

impl Client {
    /// A session about to read the server's greeting. With [`tls::Mode::Implicit`] the transport
    /// must already be TLS.
    pub fn new(settings: Settings) -> Client {
        let tls_active = settings.tls == tls::Mode::Implicit;
        Client {
            settings,
            expect: VecDeque::from([Expect::Greeting]),
            ext: Extensions::default(),
            tls_active,
            authenticated: false,
            sasl: None,
            ready: false,
            closed: false,
            greeting: None,
            hello_line: None,
            txn: None,
            stopped_rcpts: Vec::new(),
        }
    }

    /// Actions right after connecting: QUIT at once for `--quit-after connect`, else nothing
    /// (the server speaks first).
    pub fn start(&mut self) -> Vec<Action> {
        if self.settings.quit_after == Some(Stage::Connect) {
            // The greeting is still read (and ignored) before QUIT's reply.
            self.expect.push_back(Expect::Quit);
            return vec![cmd("QUIT".into()), Action::Stopped(Stage::Connect)];
        }
        Vec::new()
    }

    /// The extensions from the latest EHLO.
    pub fn extensions(&self) -> &Extensions {
        &self.ext
    }

    /// The server's greeting, once received.
    pub fn greeting(&self) -> Option<&Reply> {
        self.greeting.as_ref()
    }

    /// The first line of the latest positive EHLO (or HELO) reply, once received: the name the
    /// server gives itself (RFC 5321 §4.1.1.1), which loop detection compares with ours.
    pub fn hello_line(&self) -> Option<&str> {
        self.hello_line.as_deref()
    }

    /// After a stop at [`Stage::Rcpt`] ([`Action::Stopped`]): each recipient with its RCPT
    /// reply (stage [`Stage::Rcpt`]), in envelope order, so that a refused recipient is
    /// reported although nothing was sent. Empty otherwise.
    pub fn stopped_rcpts(&self) -> &[RcptResult] {
        &self.stopped_rcpts
    }

    /// Whether the transport is TLS.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// Whether the session can take a transaction now.
    pub fn is_ready(&self) -> bool {
        self.ready && !self.closed && self.txn.is_none()
    }

    /// Whether the session is over (QUIT answered or 421 received).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The stage whose reply the client waits for (for timeouts and error messages).
    pub fn expected_stage(&self) -> Option<Stage> {
        self.expect.front().map(|e| match e {
            Expect::Greeting => Stage::Banner,
            Expect::Ehlo | Expect::Helo => Stage::Ehlo,
            Expect::StartTls => Stage::Tls,
            Expect::Auth => Stage::Auth,
            Expect::Mail => Stage::Mail,
            Expect::Rcpt(_) => Stage::Rcpt,
            Expect::Data => Stage::Data,
            Expect::Body => Stage::Body,
            Expect::Rset | Expect::Quit => Stage::Quit,
        })
    }

    /// Ends the session politely: QUIT (when not already closing).
    pub fn quit(&mut self) -> Vec<Action> {
        if self.closed || self.expect.contains(&Expect::Quit) {
            return Vec::new();
        }
        self.ready = false;
        self.expect.push_back(Expect::Quit);
        vec![cmd("QUIT".into())]
    }

    /// Call after the TLS handshake the [`Action::StartTls`] asked for: RFC 3207 §4.2 says to
    /// forget everything learnt before and EHLO again.
    pub fn tls_established(&mut self) -> Vec<Action> {
        self.tls_active = true;
        self.ext = Extensions::default();
        self.expect.push_back(Expect::Ehlo);
        vec![cmd(format!("EHLO {}", self.settings.ehlo_name))]
    }

    fn fail(&mut self, err: Error) -> Vec<Action> {
        self.ready = false;
        let mut out = self.quit();
        out.push(Action::Failed(err));
        out
    }

    fn stop(&mut self, stage: Stage) -> Vec<Action> {
        let mut out = self.quit();
        out.push(Action::Stopped(stage));
        out
    }

    /// Starts a transaction. `message` is the message as it should arrive (any line ends);
    /// the client converts it to DATA form. Call only when [`is_ready`](Self::is_ready).
    pub fn transaction(&mut self, env: Envelope, message: &[u8]) -> Vec<Action> {
        if !self.is_ready() {
            return vec![Action::Failed(Error::Protocol(
                "transaction started while the session is not ready".into(),
            ))];
        }
        self.stopped_rcpts.clear();
        let need = needs(&env, message);
        if need.smtputf8 && !self.ext.smtputf8 {
            return vec![Action::Failed(Error::Unsupported(
                "message needs SMTPUTF8 (non-ASCII addresses or headers) but the server does not offer it"
                    .into(),
            ))];
        }
        if need.eight_bit && !self.ext.eightbitmime {
            return vec![Action::Failed(Error::Unsupported(
                "message has 8-bit data but the server does not offer 8BITMIME".into(),
            ))];
        }
        let body = rfc5322::data_bytes(message);
        // SIZE counts the message as transmitted, CRLFs included (RFC 1870 §3); the ".CRLF"
        // end marker is not part of it.
        let size = body.len().saturating_sub(3) as u64;
        if let Some(limit) = self.ext.size {
            if limit > 0 && size > limit {
                return vec![Action::Failed(Error::Unsupported(format!(
                    "message of {size} bytes exceeds the server's SIZE limit of {limit}"
                )))];
            }
        }
        let mut mail = format!("MAIL FROM:<{}>", env.from);
        if self.ext.size.is_some() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if need.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if need.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        for p in &env.mail_params {
            mail.push(' ');
            mail.push_str(p);
        }
        let stop = match self.settings.quit_after {
            Some(s @ (Stage::Mail | Stage::Rcpt)) => Some(s),
            _ => None,
        };
        let pipelined = self.ext.pipelining && stop.is_none();
        let n = env.rcpts.len();
        let txn = Txn {
            body,
            env,
            pipelined,
            mail_reply: None,
            rcpt_replies: vec![None; n],
            failure: None,
            stop,
        };
        self.ready = false;
        mail.push_str("\r\n");
        self.expect.push_back(Expect::Mail);
        if pipelined {
            // Pipelined commands go out in one write (RFC 2920 §3.1).
            for i in 0..n {
                mail.push_str(&Self::rcpt_line(&txn, i));
                mail.push_str("\r\n");
                self.expect.push_back(Expect::Rcpt(i));
            }
            mail.push_str("DATA\r\n");
            self.expect.push_back(Expect::Data);
        }
        self.txn = Some(txn);
        vec![Action::Send {
            bytes: mail.into_bytes(),
            shown: None,
        }]
    }

    /// `RCPT TO:<...> [params]` for recipient `i`, without CRLF.
    fn rcpt_line(txn: &Txn, i: usize) -> String {
        let mut c = format!("RCPT TO:<{}>", txn.env.rcpts[i]);
        if let Some(params) = txn.env.rcpt_params.get(i) {
            for p in params {
                c.push(' ');
                c.push_str(p);
            }
        }
        c
    }

    /// Feeds one server reply; returns what to do.
    pub fn on_reply(&mut self, reply: Reply) -> Vec<Action> {
        let Some(expect) = self.expect.pop_front() else {
            self.closed = true;
            return vec![
                Action::Failed(Error::Protocol(format!("unexpected reply {reply}"))),
                Action::Closed,
            ];
        };
        // 421: the server is closing the channel (§3.8) whatever we asked.
        if reply.code == 421 && expect != Expect::Quit {
            return self.server_closed(reply, expect);
        }
        match expect {
            Expect::Greeting => self.on_greeting(reply),
            Expect::Ehlo => self.on_ehlo(reply),
            Expect::Helo => self.on_helo(reply),
            Expect::StartTls => self.on_starttls(reply),
            Expect::Auth => self.on_auth(reply),
            Expect::Mail => self.on_mail(reply),
            Expect::Rcpt(i) => self.on_rcpt(i, reply),
            Expect::Data => self.on_data(reply),
            Expect::Body => self.on_body(reply),
            Expect::Rset => self.finish_txn(),
            Expect::Quit => {
                self.closed = true;
                self.expect.clear();
                vec![Action::Closed]
            }
        }
    }

    fn server_closed(&mut self, reply: Reply, expect: Expect) -> Vec<Action> {
        self.closed = true;
        self.ready = false;
        self.expect.clear();
        let mut out = Vec::new();
        if let Some(txn) = self.txn.take() {
            let stage = match expect {
                Expect::Mail => Stage::Mail,
                Expect::Rcpt(_) => Stage::Rcpt,
                Expect::Data => Stage::Data,
                _ => Stage::Body,
            };
            let rcpts = txn
                .env
                .rcpts
                .iter()
                .map(|r| RcptResult {
                    rcpt: r.clone(),
                    stage,
                    reply: reply.clone(),
                })
                .collect();
            out.push(Action::Done(Outcome { rcpts }));
        } else {
            let stage = match expect {
                Expect::Greeting => Stage::Banner,
                Expect::Ehlo | Expect::Helo => Stage::Ehlo,
                Expect::StartTls => Stage::Tls,
                Expect::Rset | Expect::Quit => Stage::Quit,
                _ => Stage::Auth,
            };
            out.push(Action::Failed(Error::Rejected { stage, reply }));
        }
        out.push(Action::Closed);
        out
    }

    fn on_greeting(&mut self, reply: Reply) -> Vec<Action> {
        self.greeting = Some(reply.clone());
        if self.expect.front() == Some(&Expect::Quit) {
            return Vec::new(); // quit-after connect: QUIT already sent
        }
        if reply.code != 220 {
            return self.fail(Error::Rejected {
                stage: Stage::Banner,
                reply,
            });
        }
        if self.settings.quit_after == Some(Stage::Banner) {
            return self.stop(Stage::Banner);
        }
        self.expect.push_back(Expect::Ehlo);
        vec![cmd(format!("EHLO {}", self.settings.ehlo_name))]
    }

    fn on_ehlo(&mut self, reply: Reply) -> Vec<Action> {
        if reply.is_positive() {
            self.hello_line = reply.lines.first().cloned();
            self.ext = Extensions::from_ehlo(&reply);
            return self.after_ehlo();
        }
        // EHLO not understood: plain SMTP (RFC 5321 §3.2). A server that refuses EHLO after
        // STARTTLS is broken; fail rather than continue without its extensions.
        if self.tls_active && self.settings.tls != tls::Mode::Implicit {
            return self.fail(Error::Rejected {
                stage: Stage::Tls,
                reply,
            });
        }
        self.expect.push_back(Expect::Helo);
        vec![cmd(format!("HELO {}", self.settings.ehlo_name))]
    }

    fn on_helo(&mut self, reply: Reply) -> Vec<Action> {
        if !reply.is_positive() {
            return self.fail(Error::Rejected {
                stage: Stage::Ehlo,
                reply,
            });
        }
        self.hello_line = reply.lines.first().cloned();
        self.ext = Extensions::default();
        self.after_ehlo()
    }

    /// After a successful EHLO/HELO: STARTTLS, AUTH or ready.
    fn after_ehlo(&mut self) -> Vec<Action> {
        let upgraded = self.tls_active && self.settings.tls != tls::Mode::Implicit;
        if !upgraded && self.settings.quit_after == Some(Stage::Ehlo) {
            return self.stop(Stage::Ehlo);
        }
        if !self.tls_active {
            match self.settings.tls {
                tls::Mode::Starttls | tls::Mode::Opportunistic if self.ext.starttls => {
                    self.expect.push_back(Expect::StartTls);
                    return vec![cmd("STARTTLS".into())];
                }
                tls::Mode::Starttls => return self.fail(Error::TlsUnavailable),
                _ => {}
            }
        }
        if self.settings.quit_after == Some(Stage::Tls) {
            if !self.tls_active {
                let why = if self.ext.starttls {
                    "TLS is off for this session"
                } else {
                    "the server does not offer STARTTLS"
                };
                return self.fail(Error::NotReached {
                    stage: Stage::Tls,
                    why: why.into(),
                });
            }
            return self.stop(Stage::Tls);
        }
        if self.settings.auth.is_some() && !self.authenticated {
            return self.start_auth();
        }
        self.session_ready()
    }

    fn session_ready(&mut self) -> Vec<Action> {
        if self.settings.quit_after == Some(Stage::Auth) {
            if !self.authenticated {
                return self.fail(Error::NotReached {
                    stage: Stage::Auth,
                    why: "no AUTH credentials were given".into(),
                });
            }
            return self.stop(Stage::Auth);
        }
        self.ready = true;
        vec![Action::Ready]
    }

    fn on_starttls(&mut self, reply: Reply) -> Vec<Action> {
        if reply.code == 220 {
            return vec![Action::StartTls];
        }
        if self.settings.tls == tls::Mode::Starttls {
            return self.fail(Error::Rejected {
                stage: Stage::Tls,
                reply,
            });
        }
        // Opportunistic: carry on in clear (RFC 3207 §4.1 leaves this to the client).
        self.settings.tls = tls::Mode::Off;
        self.after_ehlo()
    }

    fn start_auth(&mut self) -> Vec<Action> {
        if !self.tls_active {
            return self.fail(Error::AuthNotEncrypted);
        }
        let Some(creds) = &self.settings.auth else {
            return self.session_ready(); // not reached: called only with credentials
        };
        let offered = |m: Mechanism| self.ext.auth.iter().any(|a| a == m.name());
        let mech = match creds.mechanism {
            Some(m) if offered(m) => m,
            None if offered(Mechanism::Plain) => Mechanism::Plain,
            None if offered(Mechanism::Login) => Mechanism::Login,
            _ => {
                let offered = self.ext.auth.clone();
                return self.fail(Error::AuthUnsupported(offered));
            }
        };
        let (host, port) = &creds.server;
        let mut sasl = SaslClient::new(mech, &creds.user, &creds.password, host, *port);
        // RFC 4954 §4: the initial response goes with the command.
        let action = match sasl.initial_response() {
            Some(ir) => Action::Send {
                bytes: format!("AUTH {mech} {ir}\r\n").into_bytes(),
                shown: Some(format!("AUTH {mech} <redacted>")),
            },
            None => cmd(format!("AUTH {mech}")),
        };
        self.sasl = Some(sasl);
        self.expect.push_back(Expect::Auth);
        vec![action]
    }

    fn on_auth(&mut self, reply: Reply) -> Vec<Action> {
        let Some(sasl) = self.sasl.as_mut() else {
            return self.fail(Error::Protocol("AUTH reply without credentials".into()));
        };
        if reply.code == 334 {
            let challenge = reply.lines.first().map(String::as_str).unwrap_or("");
            let r = sasl.step(challenge.as_bytes());
            let shown = if r.secret {
                "<redacted>".to_string()
            } else {
                r.line.clone()
            };
            self.expect.push_back(Expect::Auth);
            let mut bytes = r.line.into_bytes();
            bytes.extend_from_slice(b"\r\n");
            return vec![Action::Send {
                bytes,
                shown: Some(shown),
            }];
        }
        let sasl = self.sasl.take();
        if reply.code == 235 {
            self.authenticated = true;
            return self.session_ready();
        }
        let mut reply = reply;
        if let Some(e) = sasl.as_ref().and_then(|s| s.server_error()) {
            // RFC 7628 §3.2.2: say why the token was refused.
            if let Some(last) = reply.lines.last_mut() {
                last.push_str(&format!(" (server said: {})", e.trim()));
            }
        }
        self.fail(Error::Rejected {
            stage: Stage::Auth,
            reply,
        })
    }

    fn on_mail(&mut self, reply: Reply) -> Vec<Action> {
        let Some(txn) = self.txn.as_mut() else {
            return self.fail(Error::Protocol("MAIL reply outside a transaction".into()));
        };
        let ok = reply.is_positive();
        txn.mail_reply = Some(reply.clone());
        if !ok && txn.stop.is_some() {
            // Stopping after MAIL or RCPT: the refusal is the answer, even without recipients.
            self.txn = None;
            return self.fail(Error::Rejected {
                stage: Stage::Mail,
                reply,
            });
        }
        if !ok {
            txn.failure = Some((Stage::Mail, reply));
            if txn.pipelined {
                return Vec::new(); // RCPT and DATA replies still come
            }
            return self.reset();
        }
        if txn.stop == Some(Stage::Mail) {
            return self.stop_txn(Stage::Mail);
        }
        if txn.pipelined {
            return Vec::new();
        }
        if txn.env.rcpts.is_empty() {
            return self.reset();
        }
        let a = cmd(Self::rcpt_line(txn, 0));
        self.expect.push_back(Expect::Rcpt(0));
        vec![a]
    }

    fn on_rcpt(&mut self, i: usize, reply: Reply) -> Vec<Action> {
        let Some(txn) = self.txn.as_mut() else {
            return self.fail(Error::Protocol("RCPT reply outside a transaction".into()));
        };
        if let Some(slot) = txn.rcpt_replies.get_mut(i) {
            *slot = Some(reply);
        }
        if txn.pipelined {
            return Vec::new();
        }
        if i + 1 < txn.env.rcpts.len() {
            let a = cmd(Self::rcpt_line(txn, i + 1));
            self.expect.push_back(Expect::Rcpt(i + 1));
            return vec![a];
        }
        if txn.stop == Some(Stage::Rcpt) {
            self.stopped_rcpts = txn
                .env
                .rcpts
                .iter()
                .zip(&txn.rcpt_replies)
                .map(|(rcpt, reply)| RcptResult {
                    rcpt: rcpt.clone(),
                    stage: Stage::Rcpt,
                    reply: reply
                        .clone()
                        .unwrap_or_else(|| Reply::new(451, None, "no reply to RCPT")),
                })
                .collect();
            return self.stop_txn(Stage::Rcpt);
        }
        let any_ok = txn
            .rcpt_replies
            .iter()
            .any(|r| r.as_ref().is_some_and(Reply::is_positive));
        if !any_ok {
            return self.reset();
        }
        self.expect.push_back(Expect::Data);
        vec![cmd("DATA".into())]
    }

    fn on_data(&mut self, reply: Reply) -> Vec<Action> {
        let Some(txn) = self.txn.as_mut() else {
            return self.fail(Error::Protocol("DATA reply outside a transaction".into()));
        };
        let any_ok = txn
            .rcpt_replies
            .iter()
            .any(|r| r.as_ref().is_some_and(Reply::is_positive));
        if reply.code == 354 {
            if txn.failure.is_none() && any_ok {
                self.expect.push_back(Expect::Body);
                let body = std::mem::take(&mut txn.body);
                let shown = format!("<message, {} bytes>\r\n.", body.len().saturating_sub(3));
                return vec![Action::Send {
                    bytes: body,
                    shown: Some(shown),
                }];
            }
            // Pipelined DATA accepted although nothing can be delivered: send an empty
            // message's end so the server ends the transaction (RFC 2920 §3.1), then RSET.
            self.expect.push_back(Expect::Body);
            txn.failure.get_or_insert((Stage::Data, reply));
            return vec![cmd(".".into())];
        }
        if txn.failure.is_none() && any_ok {
            txn.failure = Some((Stage::Data, reply));
        }
        self.reset()
    }

    fn on_body(&mut self, reply: Reply) -> Vec<Action> {
        let Some(txn) = self.txn.as_mut() else {
            return self.fail(Error::Protocol(
                "end-of-data reply outside a transaction".into(),
            ));
        };
        if txn.failure.is_some() {
            return self.reset();
        }
        if !reply.is_positive() {
            txn.failure = Some((Stage::Body, reply));
            return self.reset();
        }
        txn.failure = None;
        txn.mail_reply = Some(reply);
        self.finish_txn()
    }

    fn reset(&mut self) -> Vec<Action> {
        self.expect.push_back(Expect::Rset);
        vec![cmd("RSET".into())]
    }

    fn stop_txn(&mut self, stage: Stage) -> Vec<Action> {
        self.txn = None;
        self.stop(stage)
    }

    /// Builds the per-recipient outcome and makes the session ready again.
    fn finish_txn(&mut self) -> Vec<Action> {
        let Some(txn) = self.txn.take() else {
            self.ready = true;
            return Vec::new();
        };
        let rcpts = txn
            .env
            .rcpts
            .iter()
            .enumerate()
            .map(|(i, rcpt)| {
                let (stage, reply) =
                    match (&txn.failure, txn.rcpt_replies.get(i).cloned().flatten()) {
                        (Some((Stage::Mail, r)), _) => (Stage::Mail, r.clone()),
                        (_, Some(r)) if !r.is_positive() => (Stage::Rcpt, r),
                        (_, None) => (
                            Stage::Rcpt,
                            Reply::new(451, None, "no reply to RCPT (transaction aborted)"),
                        ),
                        (Some((stage, r)), _) => (*stage, r.clone()),
                        (None, Some(_)) => (
                            Stage::Body,
                            txn.mail_reply
                                .clone()
                                .unwrap_or_else(|| Reply::new(250, None, "")),
                        ),
                    };
                RcptResult {
                    rcpt: rcpt.clone(),
                    stage,
                    reply,
                }
            })
            .collect();
        self.ready = true;
        vec![Action::Done(Outcome { rcpts })]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(code: u16, text: &str) -> Reply {
        Reply::new(code, None, text)
    }

    fn sent(actions: &[Action]) -> String {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { bytes, .. } => Some(String::from_utf8_lossy(bytes).into_owned()),
                _ => None,
            })
            .collect()
    }

    fn settings(tls: tls::Mode, auth: bool) -> Settings {
        Settings {
            ehlo_name: "client.test".into(),
            tls,
            auth: auth
                .then(|| Credentials::password("alice".into(), "secret".into(), "mx.test", 25)),
            quit_after: None,
        }
    }

    fn env(rcpts: &[&str]) -> Envelope {
        Envelope {
            from: "a@x.test".into(),
            rcpts: rcpts.iter().map(|s| s.to_string()).collect(),
            mail_params: vec![],
            rcpt_params: vec![],
        }
    }

    #[test]
    fn extensions_parsed() {
        let e = Extensions::from_ehlo(&Reply::multi(
            250,
            None,
            vec![
                "mx hello".into(),
                "size 1000".into(),
                "PIPELINING".into(),
                "AUTH PLAIN login".into(),
                "AUTH=LOGIN".into(),
                "STARTTLS".into(),
                "8BITMIME".into(),
                "SMTPUTF8".into(),
                "DSN".into(),
                "CHUNKING".into(),
            ],
        ));
        assert_eq!(e.size, Some(1000));
        assert!(e.pipelining && e.starttls && e.eightbitmime && e.smtputf8 && e.dsn && e.chunking);
        assert_eq!(e.auth, vec!["PLAIN", "LOGIN"]);
    }

    #[test]
    fn pipelined_session_with_starttls_and_auth() {
        let mut c = Client::new(settings(tls::Mode::Starttls, true));
        assert!(c.start().is_empty());
        assert_eq!(sent(&c.on_reply(r(220, "hi"))), "EHLO client.test\r\n");
        let ehlo = Reply::multi(250, None, vec!["hi".into(), "STARTTLS".into()]);
        assert_eq!(sent(&c.on_reply(ehlo)), "STARTTLS\r\n");
        assert_eq!(c.on_reply(r(220, "go")), vec![Action::StartTls]);
        assert_eq!(sent(&c.tls_established()), "EHLO client.test\r\n");
        let ehlo = Reply::multi(
            250,
            None,
            vec![
                "hi".into(),
                "PIPELINING".into(),
                "AUTH LOGIN PLAIN".into(),
                "SIZE 100".into(),
            ],
        );
        let a = c.on_reply(ehlo);
        assert_eq!(sent(&a), "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
        assert!(matches!(&a[0], Action::Send { shown: Some(s), .. } if !s.contains("secret")));
        assert_eq!(c.on_reply(r(235, "ok")), vec![Action::Ready]);
        let a = c.transaction(env(&["b@y.test", "c@y.test"]), b"Subject: x\n\nhi\n");
        assert_eq!(
            sent(&a),
            "MAIL FROM:<a@x.test> SIZE=18\r\nRCPT TO:<b@y.test>\r\nRCPT TO:<c@y.test>\r\nDATA\r\n"
        );
        assert!(c.on_reply(r(250, "ok")).is_empty());
        assert!(c.on_reply(r(550, "no")).is_empty());
        assert!(c.on_reply(r(250, "ok")).is_empty());
        assert_eq!(
            sent(&c.on_reply(r(354, "go"))),
            "Subject: x\r\n\r\nhi\r\n.\r\n"
        );
        let a = c.on_reply(r(250, "queued"));
        let Action::Done(out) = &a[0] else {
            panic!("{a:?}")
        };
        assert!(!out.rcpts[0].accepted());
        assert_eq!(out.rcpts[0].stage, Stage::Rcpt);
        assert!(out.rcpts[1].accepted());
        assert!(c.is_ready());
        assert_eq!(sent(&c.quit()), "QUIT\r\n");
        assert_eq!(c.on_reply(r(221, "bye")), vec![Action::Closed]);
    }

    #[test]
    fn helo_fallback_and_no_pipelining_all_rcpts_rejected() {
        let mut c = Client::new(settings(tls::Mode::Off, false));
        c.on_reply(r(220, "hi"));
        assert_eq!(sent(&c.on_reply(r(502, "what"))), "HELO client.test\r\n");
        assert_eq!(c.on_reply(r(250, "hello")), vec![Action::Ready]);
        assert_eq!(
            sent(&c.transaction(env(&["b@y.test"]), b"x")),
            "MAIL FROM:<a@x.test>\r\n"
        );
        assert_eq!(sent(&c.on_reply(r(250, "ok"))), "RCPT TO:<b@y.test>\r\n");
        assert_eq!(sent(&c.on_reply(r(450, "later"))), "RSET\r\n");
        let a = c.on_reply(r(250, "ok"));
        let Action::Done(out) = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(out.rcpts[0].reply.code, 450);
    }

    #[test]
    fn eight_bit_needs_8bitmime() {
        let mut c = Client::new(settings(tls::Mode::Off, false));
        c.on_reply(r(220, "hi"));
        c.on_reply(r(250, "hi"));
        let a = c.transaction(env(&["b@y.test"]), "Subject: x\n\nk\u{e4}se\n".as_bytes());
        assert!(matches!(&a[0], Action::Failed(Error::Unsupported(_))));
    }

    #[test]
    fn smtputf8_declared_when_needed_and_size_limit() {
        let mut c = Client::new(settings(tls::Mode::Off, false));
        c.on_reply(r(220, "hi"));
        c.on_reply(Reply::multi(
            250,
            None,
            vec![
                "hi".into(),
                "SMTPUTF8".into(),
                "8BITMIME".into(),
                "SIZE 20".into(),
            ],
        ));
        let mut e = env(&["j\u{f6}rg@y.test"]);
        let a = c.transaction(e.clone(), b"Subject: x\n\nok\n");
        assert_eq!(
            sent(&a),
            "MAIL FROM:<a@x.test> SIZE=18 BODY=8BITMIME SMTPUTF8\r\n"
        );
        let mut c = Client::new(settings(tls::Mode::Off, false));
        c.on_reply(r(220, "hi"));
        c.on_reply(Reply::multi(250, None, vec!["hi".into(), "SIZE 20".into()]));
        let a = c.transaction(e.clone(), b"x");
        assert!(matches!(&a[0], Action::Failed(Error::Unsupported(m)) if m.contains("SMTPUTF8")));
        e.rcpts = vec!["b@y.test".into()];
        let a = c.transaction(e, &[b'x'; 30]);
        assert!(matches!(&a[0], Action::Failed(Error::Unsupported(m)) if m.contains("SIZE")));
    }

    #[test]
    fn auth_login_with_redacted_password() {
        let mut c = Client::new(settings(tls::Mode::Implicit, true));
        c.on_reply(r(220, "hi"));
        let a = c.on_reply(Reply::multi(
            250,
            None,
            vec!["hi".into(), "AUTH LOGIN".into()],
        ));
        assert_eq!(sent(&a), "AUTH LOGIN\r\n");
        let a = c.on_reply(r(334, "VXNlcm5hbWU6"));
        assert_eq!(sent(&a), "YWxpY2U=\r\n");
        let a = c.on_reply(r(334, "UGFzc3dvcmQ6"));
        assert_eq!(sent(&a), "c2VjcmV0\r\n");
        assert!(matches!(&a[0], Action::Send { shown: Some(s), .. } if s == "<redacted>"));
        let a = c.on_reply(r(535, "no"));
        assert!(a.iter().any(|x| matches!(
            x,
            Action::Failed(Error::Rejected {
                stage: Stage::Auth,
                ..
            })
        )));
    }

    #[test]
    fn auth_never_in_clear_and_required_tls() {
        let mut c = Client::new(settings(tls::Mode::Off, true));
        c.on_reply(r(220, "hi"));
        let a = c.on_reply(Reply::multi(
            250,
            None,
            vec!["hi".into(), "AUTH PLAIN".into()],
        ));
        assert_eq!(sent(&a), "QUIT\r\n");
        assert!(a.contains(&Action::Failed(Error::AuthNotEncrypted)));
        let mut c = Client::new(settings(tls::Mode::Starttls, false));
        c.on_reply(r(220, "hi"));
        let a = c.on_reply(r(250, "hi"));
        assert!(a.contains(&Action::Failed(Error::TlsUnavailable)));
    }

    #[test]
    fn server_closing_421_fails_transaction() {
        let mut c = Client::new(settings(tls::Mode::Off, false));
        c.on_reply(r(220, "hi"));
        c.on_reply(Reply::multi(
            250,
            None,
            vec!["hi".into(), "PIPELINING".into()],
        ));
        c.transaction(env(&["b@y.test"]), b"x");
        let a = c.on_reply(r(421, "bye"));
        let Action::Done(out) = &a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(out.rcpts[0].reply.code, 421);
        assert!(c.is_closed());
    }

    #[test]
    fn unexpected_reply_is_protocol_error() {
        let mut c = Client::new(settings(tls::Mode::Off, false));
        c.on_reply(r(220, "hi"));
        c.on_reply(r(250, "hi"));
        let a = c.on_reply(r(250, "extra"));
        assert!(matches!(a[0], Action::Failed(Error::Protocol(_))));
    }

    fn stopping(tls: tls::Mode, auth: bool, stage: Stage) -> Client {
        Client::new(Settings {
            quit_after: Some(stage),
            ..settings(tls, auth)
        })
    }

    fn not_reached(a: &[Action]) -> Option<Stage> {
        a.iter().find_map(|a| match a {
            Action::Failed(Error::NotReached { stage, .. }) => Some(*stage),
            _ => None,
        })
    }

    #[test]
    fn quit_after_tls_or_auth_never_reports_a_stage_that_did_not_happen() {
        // Opportunistic TLS, no STARTTLS offered: no TLS happened, so no stop "after tls".
        let mut c = stopping(tls::Mode::Opportunistic, false, Stage::Tls);
        c.on_reply(r(220, "hi"));
        let a = c.on_reply(r(250, "hi"));
        assert_eq!(not_reached(&a), Some(Stage::Tls), "{a:?}");
        assert!(sent(&a).contains("QUIT"), "{a:?}");
        assert!(!a.iter().any(|a| matches!(a, Action::Stopped(_))), "{a:?}");
        // No credentials: no AUTH happened.
        let mut c = stopping(tls::Mode::Off, false, Stage::Auth);
        c.on_reply(r(220, "hi"));
        let a = c.on_reply(r(250, "hi"));
        assert_eq!(not_reached(&a), Some(Stage::Auth), "{a:?}");
        // Both really done: the stops are reported.
        for (auth, stage, ehlo_after_tls, last) in [
            (true, Stage::Auth, "AUTH PLAIN", r(235, "ok")),
            (false, Stage::Tls, "SIZE 100", r(250, "hi")),
        ] {
            let mut c = stopping(tls::Mode::Starttls, auth, stage);
            c.on_reply(r(220, "hi"));
            c.on_reply(Reply::multi(
                250,
                None,
                vec!["hi".into(), "STARTTLS".into()],
            ));
            c.on_reply(r(220, "go"));
            c.tls_established();
            let ehlo = Reply::multi(250, None, vec!["hi".into(), ehlo_after_tls.into()]);
            let a = if auth {
                c.on_reply(ehlo);
                c.on_reply(last)
            } else {
                c.on_reply(ehlo)
            };
            assert!(a.contains(&Action::Stopped(stage)), "{stage}: {a:?}");
        }
    }

    #[test]
    fn quit_after_rcpt_keeps_the_rcpt_replies_and_mail_refused_fails() {
        let mut c = stopping(tls::Mode::Off, false, Stage::Rcpt);
        c.on_reply(r(220, "hi"));
        c.on_reply(Reply::multi(
            250,
            None,
            vec!["hi".into(), "PIPELINING".into()],
        ));
        // No pipelining while stopping early: one command at a time.
        let a = c.transaction(env(&["b@y.test", "c@y.test"]), b"x");
        assert_eq!(sent(&a), "MAIL FROM:<a@x.test>\r\n");
        assert_eq!(sent(&c.on_reply(r(250, "ok"))), "RCPT TO:<b@y.test>\r\n");
        assert_eq!(
            sent(&c.on_reply(r(550, "no such user"))),
            "RCPT TO:<c@y.test>\r\n"
        );
        let a = c.on_reply(r(250, "ok"));
        assert!(a.contains(&Action::Stopped(Stage::Rcpt)), "{a:?}");
        let got: Vec<(&str, u16)> = c
            .stopped_rcpts()
            .iter()
            .map(|r| (r.rcpt.as_str(), r.reply.code))
            .collect();
        assert_eq!(got, [("b@y.test", 550), ("c@y.test", 250)]);
        // MAIL refused while stopping after MAIL (even without recipients): a failure.
        let mut c = stopping(tls::Mode::Off, false, Stage::Mail);
        c.on_reply(r(220, "hi"));
        c.on_reply(r(250, "hi"));
        c.transaction(env(&[]), b"x");
        let a = c.on_reply(r(553, "sender refused"));
        assert!(
            a.iter().any(|a| matches!(
                a,
                Action::Failed(Error::Rejected { stage: Stage::Mail, reply }) if reply.code == 553
            )),
            "{a:?}"
        );
    }
}
