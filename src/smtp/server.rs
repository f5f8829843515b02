//! The SMTP server session as a sans-IO state machine (RFC 5321, with PIPELINING RFC 2920,
//! CHUNKING RFC 3030, STARTTLS RFC 3207, AUTH RFC 4954, SIZE RFC 1870, DSN RFC 3461,
//! SMTPUTF8 RFC 6531, 8BITMIME RFC 6152, ENHANCEDSTATUSCODES RFC 2034).
//!
//! Bytes from the client go in with [`Session::feed`]; [`Session::poll`] advances the machine and
//! returns an [`Event`]; reply bytes accumulate and are taken with [`Session::take_output`]. The
//! caller writes the output whenever `poll` returns [`Event::NeedInput`] (so pipelined replies go
//! out in one write, RFC 2920 §3.2), [`Event::StartTls`] or [`Event::Close`]. Decisions the
//! machine cannot make itself (is this sender allowed, is this recipient local or relayable, is
//! this password right, was the message queued) are [`Event`]s that the caller answers with
//! [`Session::decide`]; until then `poll` returns [`Event::Pending`]. No sockets, no clock, no disk.
//!
//! DATA ends only at CRLF "." CRLF: treating `LF.LF`, `LF.CRLF` or `CRLF.LF` as the end is what
//! makes SMTP smuggling possible. A bare CR anywhere in the content (RFC 5321 §2.3.8) refuses
//! the whole message with 554 5.6.0 once the real end is seen. A bare LF line end, which many
//! local programs write, is [`BareNewline::Normalize`]d to CRLF by default (Postfix ≥ 3.9's
//! `smtpd_forbid_bare_newline = normalize`: the line is taken as if it ended in CRLF, but
//! never as part of the end of data), or refused like a bare CR with
//! [`BareNewline::Reject`]. A line of a lone `.` that is not the end of data (one next to a
//! bare LF) is content and is kept as `.` (RFC 5321 §4.5.2 removes a leading period only when
//! other characters follow); whoever sends the message on dot-stuffs it again. BDAT content
//! (RFC 3030) gets the same line end rules, in the same decoder.
//!
//! Message content is never held whole: when DATA or BDAT starts the machine returns
//! [`Event::DataStart`], then the content (dot-unstuffed, as it will be stored) in pieces of
//! about [`CONTENT_CHUNK`] octets as [`Event::Content`], and at the end [`Event::Message`]; a
//! transaction that ends without a message (refused at its end, RSET, a framing or size error)
//! returns [`Event::DataAbort`] instead, as soon as the content is known to be refused. So a
//! session holds a bounded buffer whatever the message size; the checks (bare CR/LF, line
//! length, SIZE, hop count) keep their state across reads and are exact at any split.

use std::net::IpAddr;

use crate::auth::{SaslError, SaslServer, SaslStep};

use super::command::{
    self, Command, MailParams, Mailbox, RcptParams, MAX_COMMAND_LINE, MAX_TEXT_LINE,
};
use super::hops::{HopCounter, DEFAULT_MAX_HOPS};
use super::reply::Reply;
use crate::lines::{Framed, Input, Line, LineFramer};
use crate::session::SessionHooks;
use crate::tls::TlsInfo;

/// Default largest message accepted, advertised in SIZE (RFC 1870), octets.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 35 * 1024 * 1024;
/// Default most recipients per transaction (RFC 5321 §4.5.3.1.8 requires at least 100).
pub const DEFAULT_MAX_RECIPIENTS: usize = command::MIN_RECIPIENTS;
/// Default number of errors (bad commands, refused recipients) without a delivered message
/// before the session is closed with 421 4.7.0 (Postfix's `smtpd_hard_error_limit`).
pub const DEFAULT_MAX_ERRORS: u32 = 20;
/// Default number of errors after which each further error reply is delayed by the driver
/// (Postfix's `smtpd_soft_error_limit`): slows down directory harvesting.
pub const DEFAULT_SOFT_ERROR_LIMIT: u32 = 10;
/// Default number of NOOP, RSET, VRFY and HELP commands in a row without progress before the
/// session is closed with 421 (Postfix's `smtpd_junk_command_limit`).
pub const DEFAULT_JUNK_COMMAND_LIMIT: u32 = 100;
/// Message content is handed out in pieces of at least this many octets (the last one of a
/// message may be shorter): the unit the driver writes to disk.
pub const CONTENT_CHUNK: usize = 64 * 1024;
/// Most octets of one AUTH response line accepted (RFC 4954 §4 puts no limit; 12288 is Dovecot's).
pub const MAX_AUTH_LINE: usize = 12288;
/// RFC 5321 §4.5.3.2.7: the server waits at least 5 minutes for the next command.
pub const COMMAND_TIMEOUT_SECS: u64 = 300;
/// Wait for each read while receiving DATA or BDAT content. RFC 5321 §4.5.3.2.5 lets a client
/// take 3 minutes to send each data block, and §4.5.3.2.7's 5 minutes is for commands only; 10
/// minutes per read leaves a slow link ample room and still frees a dead session.
pub const DATA_TIMEOUT_SECS: u64 = 600;

/// What the server does with a line of message content that ends in a bare LF instead of
/// CRLF (RFC 5321 §2.3.8), as Postfix's `smtpd_forbid_bare_newline`. Either way only CRLF "."
/// CRLF ends DATA, and a bare CR is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareNewline {
    /// Store the line as if it ended in CRLF (Postfix ≥ 3.9's default).
    #[default]
    Normalize,
    /// Refuse the whole message with 554 5.6.0 at its end.
    Reject,
}

/// What this listener offers and requires.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Name in the greeting and EHLO reply.
    pub hostname: String,
    /// Largest message in octets (SIZE).
    pub max_message_size: u64,
    /// Most recipients per transaction; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Hop limit: a message arriving with this many `Received:` header fields or more (ours
    /// would be one more) is refused at its end with 554 5.4.6 (RFC 5321 §6.3 mail loops).
    pub max_hops: usize,
    /// Errors (bad commands, refused recipients) without a delivered message before 421 and
    /// disconnect (hard error limit).
    pub max_errors: u32,
    /// Errors after which [`Session::take_error_delay`] asks the driver to delay the reply.
    pub soft_error_limit: u32,
    /// NOOP/RSET/VRFY/HELP in a row without progress before 421 and disconnect.
    pub junk_command_limit: u32,
    /// STARTTLS can be offered (a certificate exists and TLS is not already on).
    pub starttls: bool,
    /// AUTH is offered (PLAIN and LOGIN).
    pub auth: bool,
    /// AUTH only after TLS (RFC 4954 §4: plaintext mechanisms need a protected channel).
    pub auth_requires_tls: bool,
    /// MAIL requires AUTH first (submission, RFC 6409 §4.3).
    pub require_auth: bool,
    /// The domain a local client's bare addresses (`MAIL FROM:<root>`) get
    /// ([`command::parse_qualifying`]); `None`: refused with 501 5.1.7 from everyone.
    pub bare_domain: Option<String>,
    /// The client is local from the start (a trusted network, `msend -bs`); otherwise it is
    /// local once it has authenticated. See [`Session::bare_domain`].
    pub local_client: bool,
    /// What a bare LF line end in DATA or BDAT content gets.
    pub bare_newline: BareNewline,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            hostname: "localhost".into(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_hops: DEFAULT_MAX_HOPS,
            max_errors: DEFAULT_MAX_ERRORS,
            soft_error_limit: DEFAULT_SOFT_ERROR_LIMIT,
            junk_command_limit: DEFAULT_JUNK_COMMAND_LIMIT,
            starttls: false,
            auth: false,
            auth_requires_tls: true,
            require_auth: false,
            bare_domain: None,
            local_client: false,
            bare_newline: BareNewline::Normalize,
        }
    }
}

/// The envelope of an accepted transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse path; `None` is the null sender `<>`.
    pub from: Option<Mailbox>,
    /// MAIL FROM parameters.
    pub params: MailParams,
    /// Accepted recipients with their parameters, in order.
    pub rcpts: Vec<(Mailbox, RcptParams)>,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Write the pending output, then read and [`Session::feed`] more bytes.
    NeedInput,
    /// A decision is outstanding; call [`Session::decide`].
    Pending,
    /// Write the pending output (the 220), then run the TLS handshake and call
    /// [`Session::tls_started`]; on handshake failure just close.
    StartTls,
    /// Write the pending output, then close the connection.
    Close,
    /// Is this sender acceptable? (Accept / Reject)
    Mail {
        /// Reverse path.
        from: Option<Mailbox>,
        /// Parameters.
        params: MailParams,
    },
    /// Is this recipient acceptable (local user, relay allowed)? (Accept / Reject)
    Rcpt {
        /// Forward path (a bare `<Postmaster>` has an empty domain).
        to: Mailbox,
        /// Parameters.
        params: RcptParams,
    },
    /// Check these credentials (Accept / Reject with 535 5.7.8).
    Auth {
        /// Authorization identity (may be empty).
        authzid: String,
        /// Authentication identity.
        user: String,
        /// Password.
        password: String,
    },
    /// Message content begins (DATA, or the first BDAT of a transaction): open somewhere to
    /// put it (the queue's `tmp/` file). No decision; a failure to open is answered at
    /// [`Event::Message`].
    DataStart {
        /// The envelope (recipients are final now).
        envelope: Envelope,
    },
    /// The next piece of the message since [`Event::DataStart`]: dot-unstuffed, CRLF line ends,
    /// as received. Append it. No decision.
    Content(Vec<u8>),
    /// The content since [`Event::DataStart`] is refused or the transaction is gone: discard
    /// it. No decision; the reply (if any) is the session's.
    DataAbort,
    /// The content is complete and passed every check: make it durable, then answer
    /// [`Decision::Queued`] or Reject.
    Message {
        /// The envelope.
        envelope: Envelope,
    },
}

/// The caller's answer to a decision event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead (250 / 235).
    Accept,
    /// The message is on disk under this queue id (250 2.0.0 Ok: queued as ID).
    Queued(String),
    /// Refuse with this reply.
    Reject(Reply),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Mail,
    Rcpt,
    Auth,
    Message,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Command,
    /// Receiving DATA lines.
    Data,
    /// Receiving `remaining` octets of a BDAT chunk; `last` marks BDAT LAST.
    Bdat {
        remaining: u64,
        last: bool,
    },
    /// AUTH waiting for the client's next SASL response line.
    AuthResponse,
    /// The content ended and passed its checks: hand out the last piece, then the Message.
    EndOfData,
    /// Waiting for the caller's decision.
    Pending(Pending),
    /// QUIT or fatal: nothing more is read.
    Closed,
}

#[derive(Debug, Default)]
struct Transaction {
    from: Option<Mailbox>,
    params: MailParams,
    rcpts: Vec<(Mailbox, RcptParams)>,
    /// Recipient waiting for its decision.
    pending_rcpt: Option<(Mailbox, RcptParams)>,
    /// Message octets so far (after dot-unstuffing).
    size: u64,
    /// `Received:` fields in the header section so far (RFC 5321 §6.3).
    hops: HopCounter,
    /// Text checks of BDAT content (reported at LAST).
    text: TextCheck,
    /// First problem found in the data; the message is refused at its end.
    data_error: Option<Reply>,
    /// A BDAT sequence has started (DATA is then out of order).
    bdat: bool,
}

/// State of DATA line scanning that spans reads.
#[derive(Debug, Default)]
struct DataScan {
    /// The previous line ended in CRLF (so a "." CRLF line here is the end).
    prev_crlf: bool,
    /// We are inside an over-long line and drop its bytes up to LF.
    in_long_line: bool,
}

/// One SMTP server session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    client_ip: Option<IpAddr>,
    input: Input,
    output: Vec<u8>,
    mode: Mode,
    helo: Option<String>,
    esmtp: bool,
    tls: Option<TlsInfo>,
    user: Option<String>,
    login_user: String,
    sasl: Option<SaslServer>,
    errors: u32,
    /// Junk commands (NOOP, RSET, VRFY, HELP) since the last progress.
    junk: u32,
    /// Transactions completed (message accepted or refused at its end): the session's progress.
    progress: u64,
    /// Errors over the soft limit at the last error, until the driver takes it.
    error_delay: Option<u32>,
    /// Frames command lines and SASL responses (DATA and BDAT content have their own scan).
    framer: LineFramer,
    tx: Option<Transaction>,
    scan: DataScan,
    /// Content not yet handed out as [`Event::Content`] (at most about [`CONTENT_CHUNK`]).
    content: Vec<u8>,
    /// [`Event::DataStart`] went out and neither Message nor DataAbort yet.
    content_open: bool,
}

/// The hooks of the session pattern ([`crate::session`]): the driver's clocks and the server's
/// shutdown end an SMTP session with a 421 (RFC 5321 §3.8) and close it.
impl SessionHooks for Session {
    fn feed(&mut self, bytes: &[u8]) {
        self.input.feed(bytes);
    }

    /// How many transactions have completed (a message accepted or refused at its end): a
    /// reused session (Postfix sends RSET between messages) lives as long as it delivers.
    fn progress(&self) -> u64 {
        self.progress
    }

    /// `421 4.3.2 <host> Service shutting down` (RFC 3463 §3.5: system not accepting messages).
    fn shutdown(&mut self) {
        self.close_421((4, 3, 2), "Service shutting down");
    }

    /// `421 4.4.2 <host> Error: timeout exceeded` (RFC 5321 §4.5.3.2).
    fn timeout(&mut self) {
        self.close_421((4, 4, 2), "Error: timeout exceeded");
    }

    /// `421 4.4.2 <host> Error: session deadline exceeded`.
    fn deadline_exceeded(&mut self) {
        self.close_421((4, 4, 2), "Error: session deadline exceeded");
    }
}

fn r(code: u16, enh: (u8, u16, u16), text: impl AsRef<str>) -> Reply {
    Reply::new(code, Some(enh), text)
}

impl Session {
    /// A new session for a client at `client_ip` (for logs and the Received: header only).
    /// Call [`greeting`](Self::greeting) first.
    pub fn new(config: SessionConfig, client_ip: Option<IpAddr>) -> Session {
        Session {
            config,
            client_ip,
            input: Input::default(),
            output: Vec::new(),
            mode: Mode::Command,
            helo: None,
            esmtp: false,
            tls: None,
            user: None,
            login_user: String::new(),
            sasl: None,
            errors: 0,
            junk: 0,
            progress: 0,
            error_delay: None,
            framer: LineFramer::default(),
            tx: None,
            scan: DataScan::default(),
            content: Vec::new(),
            content_open: false,
        }
    }

    /// After an error beyond the soft error limit: by how many errors the limit is exceeded
    /// (1, 2, ...), once. The driver sleeps that many error delays before writing the reply,
    /// as Postfix's `smtpd_error_sleep_time` does, without blocking other sessions.
    pub fn take_error_delay(&mut self) -> Option<u32> {
        self.error_delay.take()
    }

    /// Replies 421 because message content arrives slower than the minimum data rate, and
    /// closes; the partial message is dropped.
    pub fn too_slow(&mut self) {
        self.close_421((4, 4, 2), "Error: message content arrives too slowly");
        self.tx = None;
    }

    /// Replies 421 with our name and `text` and closes (RFC 5321 §3.8).
    fn close_421(&mut self, enh: (u8, u16, u16), text: &str) {
        let text = format!("{} {text}", self.config.hostname);
        self.push(r(421, enh, text));
        self.mode = Mode::Closed;
    }

    /// A transaction completed; `delivered` when the message was accepted (then the error
    /// count starts over, as Postfix counts errors "without delivering mail").
    fn progressed(&mut self, delivered: bool) {
        self.progress += 1;
        self.junk = 0;
        if delivered {
            self.errors = 0;
        }
    }

    /// Marks the session as running over TLS from the start (implicit TLS, `submissions`).
    pub fn set_implicit_tls(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.config.starttls = false;
    }

    /// Queues the 220 greeting (RFC 5321 §4.3.1).
    pub fn greeting(&mut self) {
        let text = format!("{} ESMTP mrelayd", self.config.hostname);
        self.push(Reply::new(220, None, text));
    }

    /// Refuses a client that sent data before the greeting (an "early talker", typical of spam
    /// bots that do not wait for the server): 554 and close (RFC 5321 §3.1 allows 554 at open).
    pub fn reject_early_talker(&mut self) {
        self.push(r(
            554,
            (5, 5, 0),
            format!(
                "{} Error: you talked before the greeting",
                self.config.hostname
            ),
        ));
        self.mode = Mode::Closed;
    }

    /// Takes the reply bytes produced so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Whether reply bytes are waiting to be written.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The EHLO/HELO name, once given.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// The authenticated user, once AUTH succeeded.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The TLS parameters, when the session runs over TLS.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Whether EHLO (not HELO) was used: the `with` keyword of Received: (RFC 3848).
    pub fn protocol(&self) -> &'static str {
        match (self.esmtp, self.tls.is_some(), self.user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        }
    }

    /// Whether the session is over (QUIT, fatal error).
    pub fn is_closed(&self) -> bool {
        self.mode == Mode::Closed
    }

    /// Whether the machine is receiving message data (for choosing a timeout).
    pub fn in_data(&self) -> bool {
        matches!(self.mode, Mode::Data | Mode::Bdat { .. })
    }

    /// The TLS handshake after STARTTLS finished: the session starts over (RFC 3207 §4.2:
    /// forget everything learned before, including EHLO).
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.helo = None;
        self.esmtp = false;
        self.tx = None;
        self.user = None;
        self.input.clear();
        self.framer = LineFramer::default();
        self.mode = Mode::Command;
    }

    fn push(&mut self, reply: Reply) {
        self.output.extend_from_slice(&reply.to_bytes());
    }

    /// A protocol error: reply and count it; too many close the session (421 4.7.0).
    fn error(&mut self, reply: Reply) {
        self.push(reply);
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            self.close_421((4, 7, 0), "Error: too many errors");
        } else if self.errors > self.config.soft_error_limit {
            self.error_delay = Some(self.errors - self.config.soft_error_limit);
        }
    }

    /// Answers the outstanding decision event. A decision without an outstanding event is ignored.
    pub fn decide(&mut self, decision: Decision) {
        let Mode::Pending(kind) = self.mode else {
            return;
        };
        self.mode = Mode::Command;
        match (kind, decision) {
            (Pending::Mail, Decision::Reject(reply)) => {
                self.tx = None;
                self.push(reply);
            }
            (Pending::Mail, _) => self.push(r(250, (2, 1, 0), "Ok")),
            (Pending::Rcpt, Decision::Reject(reply)) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.pending_rcpt = None;
                }
                // Refused recipients count as errors: directory harvesting (Postfix does so).
                self.error(reply);
            }
            (Pending::Rcpt, _) => {
                if let Some(tx) = self.tx.as_mut() {
                    if let Some(rc) = tx.pending_rcpt.take() {
                        tx.rcpts.push(rc);
                    }
                }
                self.push(r(250, (2, 1, 5), "Ok"));
            }
            (Pending::Auth, Decision::Reject(reply)) => {
                self.login_user.clear();
                self.error(reply);
            }
            (Pending::Auth, _) => {
                self.user = Some(std::mem::take(&mut self.login_user));
                self.push(r(235, (2, 7, 0), "Authentication successful"));
            }
            (Pending::Message, Decision::Reject(reply)) => {
                self.tx = None;
                self.progressed(false);
                self.push(reply);
            }
            (Pending::Message, Decision::Queued(id)) => {
                self.tx = None;
                self.progressed(true);
                self.push(r(250, (2, 0, 0), format!("Ok: queued as {id}")));
            }
            (Pending::Message, Decision::Accept) => {
                self.tx = None;
                self.progressed(true);
                self.push(r(250, (2, 0, 0), "Ok: queued"));
            }
        }
    }

    /// Advances the machine as far as the buffered input allows.
    pub fn poll(&mut self) -> Event {
        loop {
            if let Some(ev) = self.content_event() {
                return ev;
            }
            match self.mode {
                Mode::Closed => return Event::Close,
                Mode::Pending(_) => return Event::Pending,
                Mode::Command | Mode::AuthResponse => {
                    let limit = if matches!(self.mode, Mode::Command) {
                        MAX_COMMAND_LINE
                    } else {
                        MAX_AUTH_LINE
                    };
                    // The one line framer of the line protocols (POP3's too): an over-long line
                    // is dropped up to its end and refused (RFC 5321 §4.5.3.1.4).
                    let (found, used) = self.framer.next(self.input.unread(), limit);
                    self.input.pos += used;
                    let line = match found {
                        // (The framer leaves end of input to the driver.)
                        None | Some(Framed::Line(Line::Eof)) => return Event::NeedInput,
                        Some(Framed::Line(Line::Complete { text, .. })) => text,
                        Some(Framed::Line(Line::TooLong)) => {
                            let line_too_long = r(500, (5, 5, 2), "Error: line too long");
                            self.mode = Mode::Command;
                            self.error(line_too_long);
                            continue;
                        }
                        Some(Framed::NoLineEnd) => {
                            // Not a line protocol: stop reading rather than discard forever.
                            self.push(r(500, (5, 5, 2), "Error: line too long"));
                            self.close_421((4, 7, 0), "Error: no line end, closing");
                            return Event::Close;
                        }
                    };
                    if let Some(ev) = match self.mode {
                        Mode::AuthResponse => self.auth_response(&line),
                        _ => self.command(&line),
                    } {
                        return ev;
                    }
                }
                Mode::Data => {
                    if let Some(ev) = self.data_lines() {
                        return ev;
                    }
                }
                Mode::Bdat { remaining, last } => {
                    let avail = self.input.bytes.len() - self.input.pos;
                    let take = (avail as u64).min(remaining) as usize;
                    let start = self.input.pos;
                    self.input.pos += take;
                    self.bdat_content(start, take);
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        self.mode = Mode::Bdat { remaining, last };
                        if take > 0 {
                            // Content or an abort may be due first (checked at the loop top).
                            continue;
                        }
                        return Event::NeedInput;
                    }
                    self.mode = Mode::Command;
                    if let Some(ev) = self.bdat_done(last) {
                        return ev;
                    }
                }
                Mode::EndOfData => {
                    if !self.content.is_empty() {
                        return Event::Content(self.take_content());
                    }
                    self.mode = Mode::Command;
                    if let Some(ev) = self.finish_message() {
                        return ev;
                    }
                }
            }
        }
    }

    /// An event about content that is due before anything else: the abort of refused content
    /// (as soon as it is known), or a full piece.
    fn content_event(&mut self) -> Option<Event> {
        if !self.content_open {
            return None;
        }
        let refused = self
            .tx
            .as_ref()
            .is_none_or(|tx| tx.data_error.is_some() || tx.text.error.is_some());
        if refused {
            self.content_open = false;
            self.content = Vec::new();
            return Some(Event::DataAbort);
        }
        (self.content.len() >= CONTENT_CHUNK).then(|| Event::Content(self.take_content()))
    }

    fn take_content(&mut self) -> Vec<u8> {
        std::mem::replace(
            &mut self.content,
            Vec::with_capacity(CONTENT_CHUNK + MAX_TEXT_LINE),
        )
    }

    /// Starts the content of the current transaction: the DataStart event.
    fn start_content(&mut self) -> Option<Event> {
        let tx = self.tx.as_ref()?;
        let envelope = Envelope {
            from: tx.from.clone(),
            params: tx.params.clone(),
            rcpts: tx.rcpts.clone(),
        };
        self.content_open = true;
        self.content = Vec::with_capacity(CONTENT_CHUNK + MAX_TEXT_LINE);
        Some(Event::DataStart { envelope })
    }

    /// `take` octets of BDAT content at `input[start..]`: size limit, hop count, text checks
    /// (no dot-unstuffing in BDAT, RFC 3030 §2).
    fn bdat_content(&mut self, start: usize, take: usize) {
        let max = self.config.max_message_size;
        let max_hops = self.config.max_hops;
        let Some(tx) = self.tx.as_mut() else { return };
        if take == 0 || tx.data_error.is_some() || !self.content_open {
            return;
        }
        let bytes = &self.input.bytes[start..start + take];
        if tx.size + take as u64 > max {
            tx.data_error = Some(size_exceeded());
            return;
        }
        tx.size += take as u64;
        let at = self.content.len();
        tx.text
            .feed(bytes, self.config.bare_newline, &mut self.content);
        if let Some(err) = tx.count_hops(&self.content[at..], max_hops) {
            tx.data_error = Some(err);
        }
    }

    fn bdat_done(&mut self, last: bool) -> Option<Event> {
        let Some(tx) = self.tx.as_mut() else {
            // The chunk belonged to no valid transaction; its error was decided at BDAT time.
            return None;
        };
        if let Some(err) = tx.data_error.take() {
            self.tx = None;
            self.progressed(false);
            self.push(err);
            return None;
        }
        if !last {
            let n = tx.size;
            self.push(r(250, (2, 0, 0), format!("{n} octets received")));
            return None;
        }
        // BDAT data must still be CRLF text for 7BIT/8BITMIME (RFC 3030 §3): same checks as DATA.
        if let Some(err) = tx.text.finish() {
            self.tx = None;
            self.progressed(false);
            self.push(err);
            return None;
        }
        self.mode = Mode::EndOfData;
        None
    }

    fn finish_message(&mut self) -> Option<Event> {
        let tx = self.tx.take()?;
        let envelope = Envelope {
            from: tx.from,
            params: tx.params,
            rcpts: tx.rcpts,
        };
        self.content_open = false;
        self.mode = Mode::Pending(Pending::Message);
        Some(Event::Message { envelope })
    }

    /// Scans complete DATA lines into the content buffer. Returns `None` to let
    /// [`poll`](Self::poll) hand out content, an abort or the end (then `mode` has changed).
    fn data_lines(&mut self) -> Option<Event> {
        let max = self.config.max_message_size;
        let max_hops = self.config.max_hops;
        loop {
            if self.content.len() >= CONTENT_CHUNK {
                return None;
            }
            let avail = &self.input.bytes[self.input.pos..];
            let Some(nl) = avail.iter().position(|&b| b == b'\n') else {
                if self.scan.in_long_line || avail.len() >= MAX_TEXT_LINE {
                    if !self.scan.in_long_line {
                        if let Some(tx) = self.tx.as_mut() {
                            tx.data_error.get_or_insert_with(line_too_long);
                        }
                    }
                    // Keep a trailing CR: it may pair with an LF in the next read.
                    let keep = usize::from(avail.last() == Some(&b'\r'));
                    self.input.pos = self.input.bytes.len() - keep;
                    self.scan.in_long_line = true;
                    if self.content_open {
                        return None; // the abort is due
                    }
                }
                return Some(Event::NeedInput);
            };
            let line = &avail[..=nl];
            self.input.pos += nl + 1;
            let crlf = nl >= 1 && line[nl - 1] == b'\r';
            let prev_crlf = self.scan.prev_crlf;
            let was_long = std::mem::take(&mut self.scan.in_long_line);
            self.scan.prev_crlf = crlf;
            if was_long {
                if !crlf && self.config.bare_newline == BareNewline::Reject {
                    // Bare LF ending a long line: record as framing error as well.
                    if let Some(tx) = self.tx.as_mut() {
                        tx.data_error.get_or_insert_with(bare_line_end);
                    }
                }
                continue;
            }
            if prev_crlf && line == b".\r\n" {
                self.mode = Mode::Command;
                self.scan = DataScan::default();
                let tx = self.tx.as_mut()?;
                if let Some(err) = tx.data_error.take() {
                    self.tx = None;
                    self.progressed(false);
                    self.push(err);
                    return None;
                }
                self.mode = Mode::EndOfData;
                return None;
            }
            let Some(tx) = self.tx.as_mut() else { continue };
            if tx.data_error.is_some() {
                continue;
            }
            let body_end = if crlf { nl - 1 } else { nl };
            let bare_lf = !crlf && self.config.bare_newline == BareNewline::Reject;
            if bare_lf || line[..body_end].contains(&b'\r') {
                tx.data_error = Some(bare_line_end());
                return None;
            }
            if line.len() > MAX_TEXT_LINE {
                tx.data_error = Some(line_too_long());
                return None;
            }
            // Dot-unstuffing (RFC 5321 §4.5.2): a leading period goes when other characters
            // follow it; a lone one here is not the end (see the module doc) and stays.
            let text = &line[..body_end];
            let text = if text.len() > 1 && text[0] == b'.' {
                &text[1..]
            } else {
                text
            };
            // The line as stored: its text and CRLF (a bare LF normalised).
            let stored = text.len() as u64 + 2;
            if tx.size + stored > max {
                tx.data_error = Some(size_exceeded());
                return None;
            }
            tx.size += stored;
            let at = self.content.len();
            self.content.extend_from_slice(text);
            self.content.extend_from_slice(b"\r\n");
            if let Some(err) = tx.count_hops(&self.content[at..], max_hops) {
                tx.data_error = Some(err);
                return None;
            }
        }
    }

    fn ehlo_reply(&self, name: &str) -> Reply {
        let mut lines = vec![format!("{} Hello {}", self.config.hostname, name)];
        lines.push("PIPELINING".into());
        lines.push(format!("SIZE {}", self.config.max_message_size));
        if self.config.starttls && self.tls.is_none() {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("ENHANCEDSTATUSCODES".into());
        lines.push("8BITMIME".into());
        lines.push("SMTPUTF8".into());
        lines.push("CHUNKING".into());
        lines.push("DSN".into());
        Reply::multi(250, None, lines)
    }

    fn auth_offered(&self) -> bool {
        self.config.auth && (self.tls.is_some() || !self.config.auth_requires_tls)
    }

    fn hello(&mut self, name: String, esmtp: bool) -> Option<Event> {
        let reply = if esmtp {
            self.ehlo_reply(&name)
        } else {
            Reply::new(250, None, self.config.hostname.clone())
        };
        self.helo = Some(name);
        self.esmtp = esmtp;
        self.tx = None; // RFC 5321 §4.1.4: EHLO/HELO reset the transaction.
        self.push(reply);
        None
    }

    /// The domain this client's bare addresses are qualified with, if it is local (a trusted
    /// network or `msend -bs`, [`SessionConfig::local_client`], or authenticated now), as
    /// Postfix's `local_header_rewrite_clients`: the envelope here, the header fields by the
    /// caller (`rfc5322::HeaderQualifier`). `None`: bare addresses are refused (501 5.1.7).
    pub fn bare_domain(&self) -> Option<&str> {
        let local = self.config.local_client || self.user.is_some();
        self.config.bare_domain.as_deref().filter(|_| local)
    }

    fn command(&mut self, line: &[u8]) -> Option<Event> {
        let cmd = match command::parse_qualifying(line, self.bare_domain()) {
            Ok(c) => c,
            Err(e) => {
                self.error(e.to_reply());
                return None;
            }
        };
        if matches!(
            cmd,
            Command::Noop | Command::Rset | Command::Vrfy(_) | Command::Help
        ) {
            // Postfix's smtpd_junk_command_limit: these keep a session alive without progress.
            self.junk += 1;
            if self.junk > self.config.junk_command_limit {
                self.close_421((4, 7, 0), "Error: too many commands without progress");
                return Some(Event::Close);
            }
        }
        let seq = |s: &mut Session, what: &str| {
            s.error(r(503, (5, 5, 1), format!("Error: {what}")));
            None
        };
        match cmd {
            Command::Ehlo(name) => self.hello(name, true),
            Command::Helo(name) => self.hello(name, false),
            Command::Noop => {
                self.push(r(250, (2, 0, 0), "Ok"));
                None
            }
            Command::Help => {
                self.push(r(214, (2, 0, 0), "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH"));
                None
            }
            Command::Vrfy(_) => {
                // RFC 5321 §3.5.3: 252 instead of revealing who exists.
                self.push(r(
                    252,
                    (2, 1, 5),
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ));
                None
            }
            Command::Quit => {
                self.push(r(221, (2, 0, 0), "Bye"));
                self.mode = Mode::Closed;
                Some(Event::Close)
            }
            Command::Rset => {
                self.tx = None;
                self.push(r(250, (2, 0, 0), "Ok"));
                None
            }
            Command::StartTls => {
                if self.tls.is_some() {
                    return seq(self, "TLS already active");
                }
                if !self.config.starttls {
                    self.error(r(502, (5, 5, 1), "Error: STARTTLS not available"));
                    return None;
                }
                if self.tx.is_some() {
                    return seq(self, "STARTTLS not allowed in a mail transaction");
                }
                self.push(r(220, (2, 0, 0), "Ready to start TLS"));
                // Anything pipelined after STARTTLS was sent in clear and must not be executed
                // inside TLS (CVE-2011-0411 "STARTTLS command injection").
                self.input.clear();
                Some(Event::StartTls)
            }
            Command::Auth { mechanism, initial } => {
                if !self.config.auth {
                    self.error(r(502, (5, 5, 1), "Error: authentication not enabled"));
                    return None;
                }
                if self.config.auth_requires_tls && self.tls.is_none() {
                    self.error(r(
                        538,
                        (5, 7, 11),
                        "Encryption required for requested authentication mechanism",
                    ));
                    return None;
                }
                if self.helo.is_none() || !self.esmtp {
                    return seq(self, "send EHLO first");
                }
                if self.user.is_some() {
                    return seq(self, "already authenticated");
                }
                if self.tx.is_some() {
                    return seq(self, "AUTH not allowed in a mail transaction");
                }
                let (sasl, step) =
                    SaslServer::start(&mechanism, initial.as_deref().map(str::as_bytes));
                self.sasl = Some(sasl);
                self.sasl_step(step)
            }
            Command::Mail { from, params } => {
                if self.helo.is_none() {
                    return seq(self, "send HELO/EHLO first");
                }
                if self.tx.is_some() {
                    return seq(self, "nested MAIL command");
                }
                if self.config.require_auth && self.user.is_none() {
                    self.error(r(530, (5, 7, 0), "Authentication required"));
                    return None;
                }
                if (params.smtputf8
                    || params.body.is_some()
                    || params.size.is_some()
                    || params.ret.is_some()
                    || params.envid.is_some())
                    && !self.esmtp
                {
                    self.error(r(555, (5, 5, 4), "Error: parameters need EHLO"));
                    return None;
                }
                if let Some(size) = params.size {
                    if size > self.config.max_message_size {
                        self.push(size_exceeded());
                        return None;
                    }
                }
                if from.as_ref().is_some_and(Mailbox::is_utf8) && !params.smtputf8 {
                    self.error(r(553, (5, 6, 7), "Error: non-ASCII address needs SMTPUTF8"));
                    return None;
                }
                self.tx = Some(Transaction {
                    from: from.clone(),
                    params: params.clone(),
                    ..Transaction::default()
                });
                self.mode = Mode::Pending(Pending::Mail);
                Some(Event::Mail { from, params })
            }
            Command::Rcpt { to, params } => {
                let Some(tx) = self.tx.as_mut() else {
                    return seq(self, "need MAIL command");
                };
                if tx.bdat {
                    return seq(self, "RCPT after BDAT");
                }
                if tx.rcpts.len() >= self.config.max_recipients {
                    // Not an error that counts: RFC 5321 §4.5.3.1.10 expects clients to retry.
                    self.push(r(452, (4, 5, 3), "Error: too many recipients"));
                    return None;
                }
                if to.is_utf8() && !tx.params.smtputf8 {
                    self.error(r(553, (5, 6, 7), "Error: non-ASCII address needs SMTPUTF8"));
                    return None;
                }
                if (params.notify.is_some() || params.orcpt.is_some()) && !self.esmtp {
                    self.error(r(555, (5, 5, 4), "Error: parameters need EHLO"));
                    return None;
                }
                tx.pending_rcpt = Some((to.clone(), params.clone()));
                self.mode = Mode::Pending(Pending::Rcpt);
                Some(Event::Rcpt { to, params })
            }
            Command::Data => {
                let Some(tx) = self.tx.as_mut() else {
                    return seq(self, "need MAIL command");
                };
                if tx.bdat {
                    return seq(self, "DATA after BDAT");
                }
                if tx.rcpts.is_empty() {
                    // RFC 5321 §3.3: "no valid recipients".
                    self.error(r(554, (5, 5, 1), "Error: no valid recipients"));
                    return None;
                }
                self.push(Reply::new(354, None, "End data with <CR><LF>.<CR><LF>"));
                self.scan = DataScan {
                    prev_crlf: true,
                    in_long_line: false,
                };
                self.mode = Mode::Data;
                self.start_content()
            }
            Command::Bdat { size, last } => {
                // The chunk is always read, even when refused (RFC 3030 §2).
                self.mode = Mode::Bdat {
                    remaining: size,
                    last,
                };
                let refusal = match self.tx.as_mut() {
                    None => Some(r(503, (5, 5, 1), "Error: need MAIL command")),
                    Some(tx) if tx.rcpts.is_empty() => {
                        Some(r(554, (5, 5, 1), "Error: no valid recipients"))
                    }
                    Some(tx) => {
                        let first = !std::mem::replace(&mut tx.bdat, true);
                        if first {
                            return self.start_content();
                        }
                        None
                    }
                };
                if let Some(reply) = refusal {
                    self.tx = None;
                    self.error(reply);
                    if self.mode == Mode::Closed {
                        return None;
                    }
                    self.mode = Mode::Bdat {
                        remaining: size,
                        last,
                    };
                }
                None
            }
        }
    }

    fn auth_response(&mut self, line: &[u8]) -> Option<Event> {
        self.mode = Mode::Command;
        let step = match self.sasl.as_mut() {
            Some(sasl) => sasl.step(line),
            None => SaslStep::Failed(SaslError::Finished),
        };
        self.sasl_step(step)
    }

    /// Turns one SASL step into a 334 challenge, an Auth event or an error reply (RFC 4954 §4).
    fn sasl_step(&mut self, step: SaslStep) -> Option<Event> {
        match step {
            SaslStep::Challenge(c) => {
                self.output
                    .extend_from_slice(format!("334 {c}\r\n").as_bytes());
                self.mode = Mode::AuthResponse;
                None
            }
            SaslStep::Done(creds) => {
                self.sasl = None;
                if creds.login_name().is_err() {
                    self.error(r(
                        535,
                        (5, 7, 8),
                        "Error: authorization identity not allowed",
                    ));
                    return None;
                }
                self.login_user = creds.authcid.clone();
                self.mode = Mode::Pending(Pending::Auth);
                Some(Event::Auth {
                    authzid: creds.authzid,
                    user: creds.authcid,
                    password: creds.password,
                })
            }
            SaslStep::Failed(e) => {
                self.sasl = None;
                let reply = match e {
                    SaslError::Cancelled => r(501, (5, 0, 0), "Authentication cancelled"),
                    SaslError::UnknownMechanism(_) => r(
                        504,
                        (5, 5, 4),
                        "Error: unsupported authentication mechanism",
                    ),
                    SaslError::AuthzidNotAllowed => {
                        r(535, (5, 7, 8), "Error: authorization identity not allowed")
                    }
                    other => r(501, (5, 5, 2), format!("Error: {other}")),
                };
                self.error(reply);
                None
            }
        }
    }

    /// Octets of buffer this session holds (input and content), for the memory bound test.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.input.bytes.capacity() + self.content.capacity()
    }

    /// The client's address given at creation.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_ip
    }
}

fn size_exceeded() -> Reply {
    r(552, (5, 3, 4), "Error: message size exceeds fixed limit")
}

fn line_too_long() -> Reply {
    r(
        500,
        (5, 5, 2),
        "Error: line too long in message data (RFC 5321 §4.5.3.1.6)",
    )
}

fn bare_line_end() -> Reply {
    r(
        554,
        (5, 6, 0),
        "Error: bare CR or LF in message data (RFC 5321 §2.3.8); message refused",
    )
}

fn too_many_hops(received: usize, max_hops: usize) -> Reply {
    r(
        554,
        (5, 4, 6),
        format!(
            "Too many hops: {received} Received: headers, the limit is {max_hops} (RFC 5321 §6.3: mail loop?)"
        ),
    )
}

impl Transaction {
    /// Counts `Received:` fields in the next content piece; the refusal once there are so many
    /// that ours would exceed `max_hops` (RFC 5321 §6.3).
    fn count_hops(&mut self, piece: &[u8], max_hops: usize) -> Option<Reply> {
        if self.hops.in_body() {
            return None;
        }
        self.hops.feed(piece);
        let n = self.hops.received();
        (n.saturating_add(1) > max_hops).then(|| too_many_hops(n, max_hops))
    }
}

/// The decoder of BDAT content, which has no line framing: checks it for bare CR and over-long
/// lines and applies [`BareNewline`] to bare LF, piece by piece (exact across pieces); the
/// first problem is kept.
#[derive(Debug, Default)]
struct TextCheck {
    prev_cr: bool,
    line_len: usize,
    error: Option<Reply>,
}

impl TextCheck {
    /// Appends `bytes` to `out` as they are to be stored (a bare LF as CRLF when `bare`
    /// normalises), up to the first problem.
    fn feed(&mut self, bytes: &[u8], bare: BareNewline, out: &mut Vec<u8>) {
        if self.error.is_some() {
            return;
        }
        for &b in bytes {
            if self.prev_cr && b != b'\n' {
                self.error = Some(bare_line_end());
                return;
            }
            self.line_len += 1;
            if b == b'\n' {
                if !self.prev_cr {
                    if bare == BareNewline::Reject {
                        self.error = Some(bare_line_end());
                        return;
                    }
                    out.push(b'\r');
                }
                if self.line_len > MAX_TEXT_LINE {
                    self.error = Some(line_too_long());
                    return;
                }
                self.line_len = 0;
            }
            out.push(b);
            self.prev_cr = b == b'\r';
        }
    }

    /// The first problem of the whole content, once it has all been fed.
    fn finish(&mut self) -> Option<Reply> {
        if self.error.is_none() {
            if self.prev_cr {
                self.error = Some(bare_line_end());
            } else if self.line_len > MAX_TEXT_LINE {
                self.error = Some(line_too_long());
            }
        }
        self.error.take()
    }
}

/// What goes into a `Received:` header (RFC 5321 §4.4).
#[derive(Debug, Clone, Default)]
pub struct ReceivedInfo<'a> {
    /// Our host name (`by`).
    pub hostname: &'a str,
    /// The EHLO/HELO argument (`from`).
    pub helo: Option<&'a str>,
    /// The client's address (TCP-info).
    pub client_ip: Option<IpAddr>,
    /// The client's verified host name, if known.
    pub client_name: Option<&'a str>,
    /// `with` protocol keyword (RFC 3848: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA).
    pub protocol: &'a str,
    /// TLS parameters when the session ran over TLS.
    pub tls: Option<&'a TlsInfo>,
    /// Authenticated user.
    pub user: Option<&'a str>,
    /// Queue id (`id`).
    pub queue_id: &'a str,
    /// The one recipient, when there is exactly one (`for`); omitted otherwise to not leak Bcc.
    pub single_rcpt: Option<&'a str>,
    /// RFC 5322 date-time.
    pub date: &'a str,
}

/// The `Received:` header for an accepted message, folded, CRLF-terminated. Client-supplied
/// parts are stripped of control characters and comment delimiters so they cannot forge lines.
pub fn received_header(info: &ReceivedInfo<'_>) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_control() && !matches!(c, '(' | ')' | ';' | '<' | '>'))
            .take(255)
            .collect()
    };
    let helo = clean(info.helo.unwrap_or("unknown"));
    let mut out = format!("Received: from {helo}");
    let ip = info.client_ip.map(|ip| match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("IPv6:{a}"),
    });
    match (info.client_name, ip) {
        (Some(n), Some(ip)) => out.push_str(&format!(" ({} [{ip}])", clean(n))),
        (None, Some(ip)) => out.push_str(&format!(" ([{ip}])")),
        (Some(n), None) => out.push_str(&format!(" ({})", clean(n))),
        (None, None) => {}
    }
    out.push_str(&format!("\r\n\tby {} (mrelayd)", clean(info.hostname)));
    if let Some(t) = info.tls {
        out.push_str(&format!(
            " ({} with cipher {})",
            clean(&t.version),
            clean(&t.cipher)
        ));
    }
    if let Some(u) = info.user {
        out.push_str(&format!("\r\n\t(Authenticated sender: {})", clean(u)));
    }
    out.push_str(&format!(
        "\r\n\twith {} id {}",
        info.protocol, info.queue_id
    ));
    if let Some(rcpt) = info.single_rcpt {
        out.push_str(&format!("\r\n\tfor <{}>", clean(rcpt)));
    }
    out.push_str(&format!(";\r\n\t{}\r\n", info.date));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::MAX_DISCARD;

    /// Drives a session over `input` fed in pieces of `step` bytes, accepting everything; the
    /// queue ids handed out are Q1, Q2, ... Returns the output and the messages queued.
    fn drive(cfg: SessionConfig, input: &[u8], step: usize) -> (String, Vec<(Envelope, Vec<u8>)>) {
        drive_with(cfg, input, step, |_| Decision::Accept)
    }

    fn drive_with(
        cfg: SessionConfig,
        input: &[u8],
        step: usize,
        decide: impl FnMut(&Event) -> Decision,
    ) -> (String, Vec<(Envelope, Vec<u8>)>) {
        drive_pieces(cfg, input.chunks(step.max(1)), step, decide)
    }

    /// [`drive_with`] over the given pieces of input (`step` bounds the piece size).
    fn drive_pieces<'a>(
        cfg: SessionConfig,
        mut chunks: impl Iterator<Item = &'a [u8]>,
        step: usize,
        mut decide: impl FnMut(&Event) -> Decision,
    ) -> (String, Vec<(Envelope, Vec<u8>)>) {
        let mut s = Session::new(cfg, None);
        s.greeting();
        let mut out = s.take_output();
        let mut msgs = Vec::new();
        // The content of the open transaction, as the driver would write it.
        let mut content: Option<Vec<u8>> = None;
        'outer: loop {
            let ev = s.poll();
            match ev {
                Event::NeedInput => match chunks.next() {
                    Some(c) => s.feed(c),
                    None => break 'outer,
                },
                Event::Close => break,
                Event::Pending => panic!("pending without decision"),
                Event::StartTls => s.tls_started(TlsInfo {
                    version: "TLSv1.3".into(),
                    cipher: "TLS_AES_128_GCM_SHA256".into(),
                }),
                Event::DataStart { .. } => {
                    assert!(content.is_none(), "DataStart while content is open");
                    content = Some(Vec::new());
                }
                Event::Content(piece) => {
                    assert!(piece.len() <= 2 * CONTENT_CHUNK + step.min(CONTENT_CHUNK));
                    content
                        .as_mut()
                        .expect("Content without DataStart")
                        .extend_from_slice(&piece);
                }
                Event::DataAbort => {
                    assert!(content.take().is_some(), "DataAbort without DataStart");
                }
                Event::Message { ref envelope } => {
                    let data = content.take().expect("Message without DataStart");
                    let d = decide(&ev);
                    if d == Decision::Accept {
                        msgs.push((envelope.clone(), data));
                        s.decide(Decision::Queued(format!("Q{}", msgs.len())));
                    } else {
                        s.decide(d);
                    }
                }
                ref other => {
                    let d = decide(other);
                    s.decide(d);
                }
            }
            out.extend(s.take_output());
        }
        out.extend(s.take_output());
        (String::from_utf8_lossy(&out).into_owned(), msgs)
    }

    fn codes(out: &str) -> Vec<String> {
        out.lines()
            .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
            .map(|l| l[..3].to_string())
            .collect()
    }

    const TX: &str = "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\n";

    #[test]
    fn pipelined_transaction_any_split() {
        let input = format!("{TX}Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n");
        let (whole, msgs) = drive(SessionConfig::default(), input.as_bytes(), usize::MAX);
        assert_eq!(
            codes(&whole),
            ["220", "250", "250", "250", "354", "250", "221"]
        );
        assert!(whole.contains("250 2.0.0 Ok: queued as Q1"));
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].1, b"Subject: hi\r\n\r\n.dot\r\nbody\r\n");
        assert_eq!(msgs[0].0.from.as_ref().unwrap().to_string(), "a@x.test");
        for step in [1, 2, 3, 7, 13] {
            let (out, m) = drive(SessionConfig::default(), input.as_bytes(), step);
            assert_eq!(out, whole, "step {step}");
            assert_eq!(m, msgs);
        }
    }

    #[test]
    fn ehlo_lists_extensions() {
        let cfg = SessionConfig {
            starttls: true,
            auth: true,
            ..SessionConfig::default()
        };
        let (out, _) = drive(cfg, b"EHLO c\r\n", 100);
        for ext in [
            "PIPELINING",
            "SIZE 36700160",
            "STARTTLS",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "SMTPUTF8",
            "CHUNKING",
            "DSN",
        ] {
            assert!(out.contains(ext), "{ext} in {out}");
        }
        // AUTH needs TLS first by default.
        assert!(!out.contains("AUTH"));
        let (out, _) = drive(SessionConfig::default(), b"HELO c\r\n", 100);
        assert!(!out.contains("PIPELINING"));
    }

    /// The smuggling sequences: bare LF next to a "." line, and bare CR.
    const SMUGGLING: [&str; 6] = [
        "\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r\n.\rX",
    ];

    fn reject_cfg() -> SessionConfig {
        SessionConfig {
            bare_newline: BareNewline::Reject,
            ..SessionConfig::default()
        }
    }

    /// SMTP smuggling: none of these sequences ends the data; the real CRLF.CRLF does. The
    /// smuggled MAIL/RCPT/DATA never execute. A bare CR refuses the message; a bare LF does
    /// with `reject`, and with `normalize` (the default) the one message holds it all, its
    /// "." line as content, every line end CRLF.
    #[test]
    fn smuggling_is_refused() {
        let smuggled = "MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\nDATA\r\nsmuggled\r\n";
        for bad in SMUGGLING {
            let input = format!("{TX}hello{bad}{smuggled}.\r\nQUIT\r\n");
            for cfg in [reject_cfg(), SessionConfig::default()] {
                let refused = cfg.bare_newline == BareNewline::Reject
                    || bad.replace("\r\n", "").contains('\r');
                for step in [1, 5, usize::MAX] {
                    let (out, msgs) = drive(cfg.clone(), input.as_bytes(), step);
                    let end = if refused { "554" } else { "250" };
                    assert_eq!(
                        codes(&out),
                        ["220", "250", "250", "250", "354", end, "221"],
                        "{bad:?} {out}"
                    );
                    if refused {
                        assert!(msgs.is_empty(), "{bad:?}: {out}");
                        assert!(out.contains("554 5.6.0"));
                    } else {
                        assert_eq!(msgs.len(), 1, "{bad:?}: {out}");
                        let want = format!("hello\r\n.\r\n{smuggled}");
                        assert_eq!(String::from_utf8_lossy(&msgs[0].1), want, "{bad:?}");
                    }
                }
            }
        }
    }

    /// `normalize`: bare LF lines are stored with CRLF, dot-unstuffed as CRLF lines are, and
    /// counted as stored (SIZE, hops); a bare-LF "." line is content, never the end.
    #[test]
    fn bare_lf_is_normalized() {
        let input =
            format!("{TX}Subject: a\n\nline1\n..dot\n.\nmixed\r\n.x\r\n\nlast\r\n.\r\nQUIT\r\n");
        let (out, msgs) = same_at_every_split(&SessionConfig::default(), input.as_bytes());
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "250", "354", "250", "221"],
            "{out}"
        );
        assert_eq!(
            String::from_utf8_lossy(&msgs[0].1),
            "Subject: a\r\n\r\nline1\r\n.dot\r\n.\r\nmixed\r\nx\r\n\r\nlast\r\n"
        );
        // That was not the end: it comes at CRLF.CRLF only.
        let input = format!("{TX}a\nlast\n.\r\n.\n.\r\n\r\n.\r\n");
        let (_, msgs) = same_at_every_split(&SessionConfig::default(), input.as_bytes());
        assert_eq!(msgs[0].1, b"a\r\nlast\r\n.\r\n.\r\n.\r\n\r\n");
        // Hops are counted in the normalised header.
        let cfg = SessionConfig {
            max_hops: 2,
            ..SessionConfig::default()
        };
        let input = format!("{TX}Received: a\nReceived: b\n\nx\r\n.\r\n");
        let (out, msgs) = drive(cfg, input.as_bytes(), 3);
        assert!(msgs.is_empty() && out.contains("554 5.4.6"), "{out}");
        // Stored octets count against SIZE: 50 lines of 1 octet and LF are 150 stored.
        let cfg = SessionConfig {
            max_message_size: 120,
            ..SessionConfig::default()
        };
        let input = format!("{TX}{}\r\n.\r\n", "x\n".repeat(50));
        let (out, msgs) = drive(cfg, input.as_bytes(), 7);
        assert!(msgs.is_empty() && out.contains("552 5.3.4"), "{out}");
        // BDAT: the same, across chunks and at every split; a bare CR is still refused.
        let input = "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 4\r\na\n.\rBDAT 4 LAST\r\n\nb\n\nQUIT\r\n";
        let (out, msgs) = same_at_every_split(&SessionConfig::default(), input.as_bytes());
        assert_eq!(msgs.len(), 1, "{out}");
        assert_eq!(msgs[0].1, b"a\r\n.\r\nb\r\n\r\n");
        let input =
            "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 4 LAST\r\na\rb\nQUIT\r\n";
        let (out, msgs) = same_at_every_split(&SessionConfig::default(), input.as_bytes());
        assert!(msgs.is_empty() && out.contains("554 5.6.0"), "{out}");
    }

    /// `input` split in two at every byte position gives the same replies and messages as
    /// `input` whole: the checks keep their state across reads.
    fn same_at_every_split(
        cfg: &SessionConfig,
        input: &[u8],
    ) -> (String, Vec<(Envelope, Vec<u8>)>) {
        let whole = drive(cfg.clone(), input, usize::MAX);
        for i in 0..=input.len() {
            let pieces = [&input[..i], &input[i..]];
            let split = drive_pieces(cfg.clone(), pieces.into_iter(), usize::MAX, |_| {
                Decision::Accept
            });
            assert_eq!(
                split,
                whole,
                "split at {i} of {:?}",
                String::from_utf8_lossy(input)
            );
        }
        whole
    }

    #[test]
    fn smuggling_is_refused_at_every_split() {
        for cfg in [reject_cfg(), SessionConfig::default()] {
            smuggling_at_every_split(&cfg);
        }
    }

    fn smuggling_at_every_split(cfg: &SessionConfig) {
        for bad in SMUGGLING {
            let data = format!("{TX}hello{bad}MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@y.test>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n");
            let bdat = format!(
                "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT {} LAST\r\nhello{bad}x\r\nQUIT\r\n",
                bad.len() + 8
            );
            let refused =
                cfg.bare_newline == BareNewline::Reject || bad.replace("\r\n", "").contains('\r');
            for input in [data, bdat] {
                let (out, msgs) = same_at_every_split(cfg, input.as_bytes());
                assert!(out.ends_with("221 2.0.0 Bye\r\n"), "{bad:?}: {out}");
                if refused {
                    assert!(msgs.is_empty(), "{bad:?}: {out}");
                    assert!(out.contains("554 5.6.0"), "{bad:?}: {out}");
                } else {
                    // One message, smuggled commands inside it.
                    assert_eq!(msgs.len(), 1, "{bad:?}: {out}");
                    assert!(msgs[0].1.starts_with(b"hello\r\n.\r\n"), "{bad:?}: {out}");
                }
            }
        }
        // The other inputs of the smuggling and BDAT tests, whole and split.
        for input in [
            "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 6\r\nab\r\ncdBDAT 4 LAST\r\n\r\nx\nQUIT\r\n",
            "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 6\r\nab\r\ncdBDAT 5 LAST\r\n\r\n.\r\nQUIT\r\n",
            "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 3\r\nab\rBDAT 2 LAST\r\n\nxQUIT\r\n",
            &format!("{TX}Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n"),
            &format!("{TX}hello\n.\n"),
        ] {
            same_at_every_split(cfg, input.as_bytes());
        }
    }

    #[test]
    fn content_is_streamed_in_bounded_pieces() {
        // 5 MB of DATA and of BDAT read 64 KiB at a time: the session never holds much of it,
        // and the pieces add up to the message.
        let line = format!("{}\r\n", "m".repeat(997));
        let body: String = std::iter::repeat_n(line.as_str(), 5 * 1024).collect();
        let data = format!("{TX}{}.\r\nQUIT\r\n", body.replace("\r\nm", "\r\n.m"));
        let bdat = format!(
            "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT {}\r\n{body}BDAT 0 LAST\r\nQUIT\r\n",
            body.len()
        );
        let want = body.replace("\r\n.m", "\r\nm");
        for (input, want) in [(data, want.as_bytes()), (bdat, body.as_bytes())] {
            let mut s = Session::new(SessionConfig::default(), None);
            s.greeting();
            let mut got = Vec::new();
            let mut pieces = 0;
            let mut chunks = input.as_bytes().chunks(64 * 1024);
            let mut queued = false;
            loop {
                assert!(s.held() < 8 * CONTENT_CHUNK, "session holds {}", s.held());
                match s.poll() {
                    Event::NeedInput => match chunks.next() {
                        Some(c) => s.feed(c),
                        None => break,
                    },
                    Event::Content(p) => {
                        pieces += 1;
                        got.extend_from_slice(&p);
                    }
                    Event::Message { .. } => {
                        queued = true;
                        s.decide(Decision::Queued("Q".into()));
                    }
                    Event::Close => break,
                    Event::DataStart { .. } => {}
                    Event::Mail { .. } | Event::Rcpt { .. } => s.decide(Decision::Accept),
                    other => panic!("{other:?}"),
                }
            }
            assert!(queued);
            assert!(pieces > 50, "{pieces}");
            assert!(got == want, "content differs");
        }
    }

    #[test]
    fn refused_content_is_aborted_early() {
        // An over-size message: DataAbort comes as soon as the limit is crossed, long before
        // the end, and no Message.
        let cfg = SessionConfig {
            max_message_size: 10_000,
            ..SessionConfig::default()
        };
        let mut s = Session::new(cfg, None);
        s.greeting();
        s.feed(TX.as_bytes());
        let mut events = Vec::new();
        let line = format!("{}\r\n", "z".repeat(98));
        for _ in 0..1000 {
            match s.poll() {
                Event::NeedInput => s.feed(line.as_bytes()),
                Event::Mail { .. } | Event::Rcpt { .. } => s.decide(Decision::Accept),
                Event::DataAbort => break,
                Event::Content(_) => events.push("content"),
                Event::DataStart { .. } => events.push("start"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(events, ["start"]);
        assert!(s.in_data(), "the rest of the data is still read");
        // A framing error in a BDAT chunk, RSET after a chunk: aborted (drive() panics when a
        // DataStart comes while content is still open), nothing queued.
        let (out, msgs) = drive(
            reject_cfg(),
            b"EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 3\r\nab\nRSET\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 4\r\nab\r\nRSET\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 1 LAST\r\n\r",
            3,
        );
        assert!(msgs.is_empty(), "{out}");
        assert_eq!(
            codes(&out),
            [
                "220", "250", "250", "250", "250", "250", "250", "250", "250", "250", "250", "250",
                "554"
            ],
            "{out}"
        );
    }

    #[test]
    fn hop_limit() {
        let received = |n: usize| -> String {
            (0..n)
                .map(|i| {
                    format!("Received: from h{i}\r\n\tby x; Mon, 1 Jan 2024 00:00:00 +0000\r\n")
                })
                .collect()
        };
        let cfg = SessionConfig::default();
        assert_eq!(cfg.max_hops, 50);
        for n in [49, 50, 51] {
            let msg = format!("{}Subject: s\r\n\r\nbody\r\n", received(n));
            let data = format!("{TX}{msg}.\r\nQUIT\r\n");
            let bdat = format!(
                "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT {} LAST\r\n{msg}QUIT\r\n",
                msg.len()
            );
            for input in [data, bdat] {
                let (out, msgs) = drive(cfg.clone(), input.as_bytes(), 77);
                if n < 50 {
                    assert_eq!(msgs.len(), 1, "{n}: {out}");
                    assert!(msgs[0].1 == msg.as_bytes());
                } else {
                    assert!(msgs.is_empty(), "{n}: {out}");
                    assert!(out.contains("554 5.4.6 Too many hops"), "{n}: {out}");
                    assert!(out.ends_with("221 2.0.0 Bye\r\n"), "{out}");
                }
            }
        }
        // Exact at every split, counting only header fields: folded lines are one field,
        // names without case, Received: in the body or an X-Received: do not count.
        let cfg = SessionConfig {
            max_hops: 3,
            ..SessionConfig::default()
        };
        let ok = "Received: a\r\n\tReceived: folded\r\nreceived : b\r\nX-Received: c\r\n\r\nReceived: body\r\n";
        let bad = "Received: a\r\nRECEIVED:\r\n b\r\nreceived\t: c\r\n\r\n";
        for (body, accepted) in [(ok, true), (bad, false)] {
            let data = format!("{TX}{body}.\r\nQUIT\r\n");
            let bdat = format!(
                "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nBDAT {} LAST\r\n{body}QUIT\r\n",
                body.len()
            );
            for input in [data, bdat] {
                let (out, msgs) = same_at_every_split(&cfg, input.as_bytes());
                assert_eq!(msgs.len(), usize::from(accepted), "{body:?}: {out}");
                assert_eq!(out.contains("554 5.4.6"), !accepted, "{out}");
            }
        }
    }

    #[test]
    fn bare_lf_terminator_is_not_end_of_data() {
        // A client that ends with LF.LF never gets a 250: we keep waiting (the I/O layer times out).
        let input = format!("{TX}hello\n.\n");
        for cfg in [reject_cfg(), SessionConfig::default()] {
            let (out, msgs) = drive(cfg, input.as_bytes(), usize::MAX);
            assert!(msgs.is_empty());
            assert_eq!(codes(&out), ["220", "250", "250", "250", "354"]);
        }
    }

    #[test]
    fn long_lines() {
        // Command line: 512 octets with CRLF is fine, 513 is not.
        let ok = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE - 7));
        assert_eq!(ok.len(), MAX_COMMAND_LINE);
        let bad = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE - 6));
        let input = format!("{ok}{bad}NOOP\r\n");
        for step in [1, 100, usize::MAX] {
            let (out, _) = drive(SessionConfig::default(), input.as_bytes(), step);
            assert_eq!(codes(&out), ["220", "250", "500", "250"], "{out}");
            assert!(out.contains("500 5.5.2"));
        }
        // A huge line is dropped without being buffered whole.
        let huge = format!("NOOP {}\r\nNOOP\r\n", "y".repeat(100_000));
        let (out, _) = drive(SessionConfig::default(), huge.as_bytes(), 4096);
        assert_eq!(codes(&out), ["220", "500", "250"]);
        // Text line: 1000 with CRLF is fine, 1001 refuses the message with 500 5.5.2.
        let line = "z".repeat(MAX_TEXT_LINE - 2);
        let input = format!("{TX}{line}\r\n.\r\n");
        let (_, msgs) = drive(SessionConfig::default(), input.as_bytes(), 64);
        assert_eq!(msgs.len(), 1);
        for long in [format!("{line}z"), "w".repeat(50_000)] {
            let input = format!("{TX}{long}\r\nmore\r\n.\r\nNOOP\r\n");
            for step in [1, 64, usize::MAX] {
                let (out, msgs) = drive(SessionConfig::default(), input.as_bytes(), step);
                assert!(msgs.is_empty());
                assert_eq!(
                    codes(&out),
                    ["220", "250", "250", "250", "354", "500", "250"],
                    "{out}"
                );
            }
        }
    }

    #[test]
    fn size_limits() {
        let cfg = SessionConfig {
            max_message_size: 100,
            ..SessionConfig::default()
        };
        let (out, _) = drive(
            cfg.clone(),
            b"EHLO c\r\nMAIL FROM:<a@b.c> SIZE=101\r\n",
            100,
        );
        assert!(out.contains("552 5.3.4"), "{out}");
        let body = "x".repeat(60);
        let input = format!("{TX}{body}\r\n{body}\r\n.\r\nNOOP\r\n");
        let (out, msgs) = drive(cfg.clone(), input.as_bytes(), 10);
        assert!(msgs.is_empty());
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "250", "354", "552", "250"]
        );
        // BDAT over the limit: the chunk is read and refused.
        let input = format!(
            "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 101 LAST\r\n{}NOOP\r\n",
            "q".repeat(101)
        );
        let (out, msgs) = drive(cfg, input.as_bytes(), 7);
        assert!(msgs.is_empty());
        assert_eq!(codes(&out), ["220", "250", "250", "250", "552", "250"]);
    }

    #[test]
    fn too_many_recipients() {
        let cfg = SessionConfig {
            max_recipients: 2,
            ..SessionConfig::default()
        };
        let input = "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<1@e.f>\r\nRCPT TO:<2@e.f>\r\nRCPT TO:<3@e.f>\r\nDATA\r\nx\r\n.\r\n";
        let (out, msgs) = drive(cfg, input.as_bytes(), 3);
        assert!(out.contains("452 4.5.3"), "{out}");
        assert_eq!(msgs[0].0.rcpts.len(), 2);
    }

    #[test]
    fn order_and_syntax_errors() {
        let input = "MAIL FROM:<a@b.c>\r\nEHLO c\r\nRCPT TO:<d@e.f>\r\nDATA\r\nMAIL FROM:<a@b.c>\r\nMAIL FROM:<a@b.c>\r\nDATA\r\nMAIL FROM:bad\r\nXYZZY\r\nRSET\r\nVRFY bob\r\nHELP\r\n";
        let (out, _) = drive(SessionConfig::default(), input.as_bytes(), 5);
        assert_eq!(
            codes(&out),
            [
                "220", "503", "250", "503", "503", "250", "503", "554", "501", "500", "250", "252",
                "214"
            ],
            "{out}"
        );
    }

    #[test]
    fn too_many_errors_disconnects() {
        let cfg = SessionConfig {
            max_errors: 3,
            ..SessionConfig::default()
        };
        let (out, _) = drive(cfg, b"A\r\nB\r\nC\r\nNOOP\r\n", 1);
        assert_eq!(codes(&out), ["220", "500", "500", "500", "421"]);
    }

    #[test]
    fn starttls_discards_injected_commands_and_resets() {
        let cfg = SessionConfig {
            starttls: true,
            auth: true,
            ..SessionConfig::default()
        };
        // The pipelined MAIL after STARTTLS was sent in clear: it must not run inside TLS.
        let input = b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@b.c>\r\n";
        let mut s = Session::new(cfg.clone(), None);
        s.greeting();
        s.feed(input);
        assert_eq!(s.poll(), Event::StartTls);
        s.tls_started(TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "X".into(),
        });
        assert_eq!(s.poll(), Event::NeedInput);
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(out.ends_with("220 2.0.0 Ready to start TLS\r\n"), "{out}");
        // After TLS: EHLO needed again; AUTH is offered now, STARTTLS is not.
        s.feed(b"MAIL FROM:<a@b.c>\r\nEHLO c\r\nSTARTTLS\r\n");
        assert_eq!(s.poll(), Event::NeedInput);
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(out.starts_with("503"), "{out}");
        assert!(out.contains("AUTH PLAIN LOGIN") && !out.contains("250-STARTTLS"));
        assert!(
            out.ends_with("503 5.5.1 Error: TLS already active\r\n"),
            "{out}"
        );
        assert_eq!(s.protocol(), "ESMTPS");
    }

    fn tls_cfg() -> SessionConfig {
        SessionConfig {
            auth: true,
            auth_requires_tls: false,
            require_auth: true,
            ..SessionConfig::default()
        }
    }

    #[test]
    fn auth_plain_and_login() {
        let check = |input: &str, want: &[&str]| {
            let mut seen = Vec::new();
            let (out, _) = drive_with(tls_cfg(), input.as_bytes(), 3, |ev| match ev {
                Event::Auth {
                    authzid,
                    user,
                    password,
                } => {
                    seen.push((authzid.clone(), user.clone(), password.clone()));
                    if password == "password" {
                        Decision::Accept
                    } else {
                        Decision::Reject(Reply::new(535, Some((5, 7, 8)), "Authentication failed"))
                    }
                }
                _ => Decision::Accept,
            });
            assert_eq!(codes(&out), want, "{input}: {out}");
            seen
        };
        // PLAIN with initial response: \0bob\0password
        let seen = check(
            "EHLO c\r\nAUTH PLAIN AGJvYgBwYXNzd29yZA==\r\nMAIL FROM:<bob@x.test>\r\n",
            &["220", "250", "235", "250"],
        );
        assert_eq!(seen, [(String::new(), "bob".into(), "password".into())]);
        // PLAIN with a challenge, wrong password, then MAIL refused (530).
        check(
            "EHLO c\r\nAUTH PLAIN\r\nAGJvYgB3cm9uZw==\r\nMAIL FROM:<bob@x.test>\r\n",
            &["220", "250", "334", "535", "530"],
        );
        // LOGIN: Ym9i = bob, cGFzc3dvcmQ= = password.
        check(
            "EHLO c\r\nAUTH LOGIN\r\nYm9i\r\ncGFzc3dvcmQ=\r\nAUTH PLAIN\r\n",
            &["220", "250", "334", "334", "235", "503"],
        );
        check(
            "EHLO c\r\nAUTH LOGIN Ym9i\r\ncGFzc3dvcmQ=\r\n",
            &["220", "250", "334", "235"],
        );
        // Cancel, bad base64, bad PLAIN layout, unknown mechanism, AUTH before EHLO.
        check(
            "EHLO c\r\nAUTH PLAIN\r\n*\r\n",
            &["220", "250", "334", "501"],
        );
        check("EHLO c\r\nAUTH PLAIN !!!\r\n", &["220", "250", "501"]);
        check("EHLO c\r\nAUTH PLAIN Ym9i\r\n", &["220", "250", "501"]);
        check("EHLO c\r\nAUTH CRAM-MD5\r\n", &["220", "250", "504"]);
        check("AUTH PLAIN AGJvYgBwYXNzd29yZA==\r\n", &["220", "503"]);
        // Without TLS when TLS is required: 538.
        let (out, _) = drive(
            SessionConfig {
                auth: true,
                ..SessionConfig::default()
            },
            b"EHLO c\r\nAUTH PLAIN AGJvYgBwYXNzd29yZA==\r\n",
            100,
        );
        assert!(out.contains("538 5.7.11"), "{out}");
    }

    #[test]
    fn bdat_chunks() {
        let input = "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 6\r\nab\r\ncdBDAT 4 LAST\r\n\r\nx\nQUIT\r\n";
        // "ab\r\ncd" + "\r\nx\n" has a bare LF: refused with reject, else stored with CRLF.
        let (out, msgs) = drive(reject_cfg(), input.as_bytes(), 2);
        assert!(msgs.is_empty());
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "250", "250", "554", "221"],
            "{out}"
        );
        let (out, msgs) = drive(SessionConfig::default(), input.as_bytes(), 2);
        assert_eq!(msgs[0].1, b"ab\r\ncd\r\nx\r\n", "{out}");
        let input = "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 6\r\nab\r\ncdBDAT 5 LAST\r\n\r\n.\r\nQUIT\r\n";
        for step in [1, 4, usize::MAX] {
            let (out, msgs) = drive(SessionConfig::default(), input.as_bytes(), step);
            assert_eq!(
                codes(&out),
                ["220", "250", "250", "250", "250", "250", "221"],
                "{out}"
            );
            // No dot-unstuffing in BDAT.
            assert_eq!(msgs[0].1, b"ab\r\ncd\r\n.\r\n");
        }
        // BDAT without a transaction still consumes its chunk; DATA after BDAT is out of order.
        let input = "EHLO c\r\nBDAT 9\r\nNOOP\r\nXX\rNOOP\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 2\r\nabDATA\r\n";
        let (out, msgs) = drive(SessionConfig::default(), input.as_bytes(), 3);
        assert!(msgs.is_empty());
        assert_eq!(
            codes(&out),
            ["220", "250", "503", "250", "250", "250", "250", "503"],
            "{out}"
        );
        // BDAT 0 LAST ends an empty chunk sequence.
        let input =
            "EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 3\r\nx\r\nBDAT 0 LAST\r\n";
        let (_, msgs) = drive(SessionConfig::default(), input.as_bytes(), 100);
        assert_eq!(msgs[0].1, b"x\r\n");
    }

    #[test]
    fn smtputf8_and_dsn() {
        let input = "EHLO c\r\nMAIL FROM:<ü@x.test>\r\nMAIL FROM:<ü@x.test> SMTPUTF8 RET=HDRS ENVID=e1\r\nRCPT TO:<ö@y.test> NOTIFY=FAILURE ORCPT=rfc822;o+40y.test\r\nDATA\r\nx\r\n.\r\n";
        let (out, msgs) = drive(SessionConfig::default(), input.as_bytes(), 5);
        assert_eq!(
            codes(&out),
            ["220", "250", "553", "250", "250", "354", "250"],
            "{out}"
        );
        let env = &msgs[0].0;
        assert!(env.params.smtputf8);
        assert_eq!(env.params.envid.as_deref(), Some("e1"));
        assert_eq!(env.rcpts[0].1.orcpt.as_deref(), Some("rfc822;o@y.test"));
        // Non-ASCII recipient without SMTPUTF8.
        let input = "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<ö@y.test>\r\n";
        let (out, _) = drive(SessionConfig::default(), input.as_bytes(), 5);
        assert!(out.contains("553 5.6.7"));
    }

    #[test]
    fn decisions_are_honoured() {
        let input = "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<unknown@y.test>\r\nRCPT TO:<ok@y.test>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<ok@y.test>\r\nDATA\r\ny\r\n.\r\n";
        let mut n = 0;
        let (out, _) = drive_with(
            SessionConfig::default(),
            input.as_bytes(),
            4,
            |ev| match ev {
                Event::Rcpt { to, .. } if to.local == "unknown" => {
                    Decision::Reject(Reply::new(550, Some((5, 1, 1)), "no such user"))
                }
                Event::Message { .. } => {
                    n += 1;
                    if n == 1 {
                        Decision::Reject(Reply::new(
                            452,
                            Some((4, 3, 1)),
                            "Insufficient system storage",
                        ))
                    } else {
                        Decision::Accept
                    }
                }
                _ => Decision::Accept,
            },
        );
        assert_eq!(
            codes(&out),
            ["220", "250", "250", "550", "250", "354", "452", "250", "250", "354", "250"],
            "{out}"
        );
    }

    #[test]
    fn early_talker_and_timeout() {
        let mut s = Session::new(SessionConfig::default(), None);
        s.reject_early_talker();
        assert_eq!(s.poll(), Event::Close);
        assert!(String::from_utf8(s.take_output())
            .unwrap()
            .starts_with("554 5.5.0"));
        let mut s = Session::new(SessionConfig::default(), None);
        s.timeout();
        assert_eq!(s.poll(), Event::Close);
        assert!(String::from_utf8(s.take_output())
            .unwrap()
            .starts_with("421 4.4.2"));
    }

    #[test]
    fn junk_commands_without_progress_close_the_session() {
        let mut input = b"EHLO c\r\n".to_vec();
        for _ in 0..DEFAULT_JUNK_COMMAND_LIMIT {
            input.extend_from_slice(b"NOOP\r\n");
        }
        let (out, _) = drive(SessionConfig::default(), &input, 7);
        assert!(!out.contains("421"), "{out}");
        input.extend_from_slice(b"RSET\r\nNOOP\r\n");
        let (out, _) = drive(SessionConfig::default(), &input, 7);
        let c = codes(&out);
        assert_eq!(c.last().map(String::as_str), Some("421"), "{out}");
        assert!(out.contains("421 4.7.0 "), "{out}");
        // The 101st junk command is not answered: the session ends there.
        assert_eq!(c.iter().filter(|c| *c == "250").count(), 101, "{out}");
        // A delivered message is progress: the count starts over.
        let mut input = b"EHLO c\r\n".to_vec();
        for _ in 0..3 {
            for _ in 0..60 {
                input.extend_from_slice(b"NOOP\r\n");
            }
            input.extend_from_slice(
                b"RSET\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n",
            );
        }
        let (out, msgs) = drive(SessionConfig::default(), &input, 64);
        assert!(!out.contains("421"), "{out}");
        assert_eq!(msgs.len(), 3);
    }

    #[test]
    fn refused_recipients_count_as_errors_with_delays_after_the_soft_limit() {
        let cfg = SessionConfig {
            max_errors: 6,
            soft_error_limit: 3,
            ..SessionConfig::default()
        };
        let mut s = Session::new(cfg, None);
        s.greeting();
        s.feed(b"EHLO c\r\nMAIL FROM:<a@b.c>\r\n");
        for i in 0..10 {
            s.feed(format!("RCPT TO:<u{i}@example.test>\r\n").as_bytes());
        }
        let mut delays = Vec::new();
        let mut refused = 0;
        loop {
            match s.poll() {
                Event::Close => break,
                Event::Rcpt { .. } => {
                    refused += 1;
                    s.decide(Decision::Reject(r(550, (5, 1, 1), "no such user")));
                    delays.push(s.take_error_delay());
                }
                Event::Mail { .. } => s.decide(Decision::Accept),
                Event::NeedInput => panic!("did not close"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(refused, 6);
        assert_eq!(delays, vec![None, None, None, Some(1), Some(2), None]);
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(
            out.ends_with("421 4.7.0 localhost Error: too many errors\r\n"),
            "{out}"
        );
        // Errors start over after a delivered message; a refused one does not reset them.
        let (out, _) = drive(
            SessionConfig {
                max_errors: 3,
                ..SessionConfig::default()
            },
            b"EHLO c\r\nBOGUS\r\nBOGUS\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\nBOGUS\r\nBOGUS\r\nQUIT\r\n",
            5,
        );
        assert!(out.ends_with("221 2.0.0 Bye\r\n"), "{out}");
    }

    #[test]
    fn endless_command_line_is_not_discarded_forever() {
        let mut s = Session::new(SessionConfig::default(), None);
        s.greeting();
        let junk = vec![b'x'; 64 * 1024];
        let mut fed = 0;
        let ev = loop {
            match s.poll() {
                Event::NeedInput => {
                    assert!(fed <= MAX_DISCARD + 2 * junk.len(), "still reading");
                    s.feed(&junk);
                    fed += junk.len();
                }
                ev => break ev,
            }
        };
        assert_eq!(ev, Event::Close);
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(out.contains("500 5.5.2 "), "{out}");
        assert!(out.ends_with("Error: no line end, closing\r\n"), "{out}");
        // An over-long line that does end is still just refused (RFC 5321 §4.5.3.1.4).
        let mut input = b"EHLO c\r\n".to_vec();
        input.extend(vec![b'x'; 100_000]);
        input.extend_from_slice(b"\r\nNOOP\r\n");
        let (out, _) = drive(SessionConfig::default(), &input, 4096);
        assert_eq!(codes(&out), ["220", "250", "500", "250"], "{out}");
    }

    #[test]
    fn deadline_and_slow_data_replies() {
        let mut s = Session::new(SessionConfig::default(), None);
        s.deadline_exceeded();
        assert_eq!(s.poll(), Event::Close);
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(out.starts_with("421 4.4.2 ") && out.contains("session deadline"));
        let mut s = Session::new(SessionConfig::default(), None);
        s.too_slow();
        assert_eq!(s.poll(), Event::Close);
        assert!(String::from_utf8(s.take_output())
            .unwrap()
            .starts_with("421 4.4.2 "));
    }

    #[test]
    fn received_header_is_clean() {
        let tls = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_128_GCM_SHA256".into(),
        };
        let h = received_header(&ReceivedInfo {
            hostname: "mx.test",
            helo: Some("evil\r\nX-Injected: yes (c)"),
            client_ip: Some("192.0.2.1".parse().unwrap()),
            protocol: "ESMTPSA",
            tls: Some(&tls),
            user: Some("bob"),
            queue_id: "ABC",
            single_rcpt: Some("d@e.f"),
            date: "Mon, 23 Nov 2026 12:00:00 +0000",
            ..ReceivedInfo::default()
        });
        assert!(h.starts_with("Received: from evilX-Injected: yes c ([192.0.2.1])\r\n\tby mx.test (mrelayd) (TLSv1.3 with cipher TLS_AES_128_GCM_SHA256)"), "{h}");
        assert!(
            h.contains("with ESMTPSA id ABC")
                && h.contains("for <d@e.f>")
                && h.ends_with("+0000\r\n")
        );
        assert_eq!(h.matches("\r\n").count(), h.matches("\r\n\t").count() + 1);
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic "fuzz": pseudo-random bytes drawn from an SMTP-ish alphabet.
        let alphabet: &[&[u8]] = &[
            b"EHLO x\r\n",
            b"MAIL FROM:<a@b>\r\n",
            b"RCPT TO:<c@d>\r\n",
            b"DATA\r\n",
            b"BDAT 3\r\n",
            b"BDAT 2 LAST\r\n",
            b".\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b".",
            b"x",
            b"AUTH PLAIN\r\n",
            b"AUTH LOGIN\r\n",
            b"STARTTLS\r\n",
            b"RSET\r\n",
            b"\xff",
            b"=\r\n",
            b"*\r\n",
        ];
        let mut seed = 0x2545F4914F6CDD1Du64;
        for _ in 0..300 {
            let mut input = Vec::new();
            for _ in 0..40 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                input.extend_from_slice(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let cfg = SessionConfig {
                starttls: true,
                auth: true,
                auth_requires_tls: false,
                max_errors: 1000,
                ..SessionConfig::default()
            };
            let _ = drive(cfg, &input, (seed % 17) as usize + 1);
        }
    }
}
