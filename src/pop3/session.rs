//! The POP3 session state machine (sans-IO), in the shape of the SMTP one
//! ([`crate::smtp::server`]): bytes from the client go in with [`Session::feed`] (the session
//! frames the lines itself), [`Session::poll`] advances it and returns an [`Event`], and reply
//! bytes accumulate for [`Session::take_output`]. The driver ([`super::driver`]) writes the
//! output whenever `poll` returns [`Event::NeedInput`], [`Event::Send`], [`Event::StartTls`] or
//! [`Event::Close`].
//!
//! States follow RFC 1939 §3: AUTHORIZATION (USER/PASS, APOP, AUTH, STLS, CAPA), TRANSACTION
//! (STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL) and UPDATE (entered by QUIT; the driver
//! removes the messages marked deleted and reports back). Everything that needs the outside
//! world (checking a password, locking and scanning the maildrop, reading a message, starting
//! TLS, deleting) is an [`Event`] for the driver, which answers through the `*_done`/`*_failed`
//! methods; until then `poll` returns [`Event::Pending`]. The driver's clocks and the server's
//! shutdown end a session through its [`SessionHooks`], as in SMTP. The session never blocks and never panics on input.

use std::collections::VecDeque;

use super::command::{self, Command, ParseError};
use crate::lines::{Framed, Input, Line, LineFramer};
use crate::session::SessionHooks;

/// Default number of client errors (bad commands, wrong state, bad numbers) before we hang up.
pub const DEFAULT_MAX_ERRORS: u32 = 10;
/// Default number of failed logins in one session before we hang up.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 3;
/// RFC 1939 §7: a unique-id is 1 to 70 characters in 0x21..=0x7E.
pub const MAX_UID_LEN: usize = 70;
/// Name in the CAPA IMPLEMENTATION line (RFC 2449 §6.9).
pub const IMPLEMENTATION: &str = "mailkit-mpopd";

/// What the session may offer on this connection; fixed by the driver from the listener role,
/// the peer address and the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// STLS can be offered (plain listener with a certificate).
    pub tls_available: bool,
    /// The connection is already encrypted (implicit TLS listener).
    pub tls_active: bool,
    /// USER/PASS, APOP and AUTH PLAIN are allowed before TLS (RFC 2595 §2.2 says servers
    /// should refuse them; the config allows it on loopback by default).
    pub plaintext_allowed: bool,
    /// APOP is offered (the greeting then carries a timestamp, RFC 1939 §7).
    pub apop: bool,
    /// Client errors before we hang up.
    pub max_errors: u32,
    /// Failed logins before we hang up.
    pub max_auth_failures: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            tls_available: false,
            tls_active: false,
            plaintext_allowed: false,
            apop: false,
            max_errors: DEFAULT_MAX_ERRORS,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
        }
    }
}

/// One message of the maildrop as the session sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Size in octets with CRLF line ends, before dot-stuffing (RFC 1939 §5 LIST).
    pub size: u64,
    /// Unique-id for UIDL: stable across sessions (RFC 1939 §7), 1..=70 chars of 0x21..=0x7E.
    pub uid: String,
}

/// The secret a client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A password (USER/PASS or AUTH PLAIN).
    Password(String),
    /// An APOP digest over the greeting's timestamp (RFC 1939 §7).
    Apop {
        /// The timestamp from our greeting, angle brackets included.
        timestamp: String,
        /// The client's digest, lower-case hex.
        digest: String,
    },
}

/// A login attempt for the driver to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The user name as given.
    pub user: String,
    /// What proves it.
    pub credential: Credential,
}

/// Why a login did not succeed; each maps to one RFC 3206 / RFC 2449 response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// Wrong user or password; the reply never says which (`[AUTH]`, RFC 3206 §4).
    BadCredentials,
    /// Another POP3 session holds the maildrop (`[IN-USE]`, RFC 2449 §8.1.2).
    InUse,
    /// Something on our side failed, try later (`[SYS/TEMP]`, RFC 3206 §4).
    Temporary,
}

/// Something the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Write the pending output, then read and [`Session::feed`] more bytes.
    NeedInput,
    /// An answer to an earlier event is outstanding (a driver bug).
    Pending,
    /// Send these octets. The line-level steps produce it; [`Session::poll`] never returns it
    /// but appends the octets to the output.
    Reply(Vec<u8>),
    /// Check this login; then call [`Session::login_done`] or [`Session::login_failed`].
    Authenticate(Login),
    /// Send message `index` (0-based): first `ok`, then the file through
    /// [`super::encode::Encoder`] (`top` body lines for TOP, all for RETR). If the file cannot
    /// be read, send [`Session::send_failed`] instead of `ok`.
    Send {
        /// 0-based message index.
        index: usize,
        /// TOP's body line count; `None` for RETR.
        top: Option<u32>,
        /// The `+OK` line to send before the message.
        ok: Vec<u8>,
    },
    /// Start TLS now (the `+OK` is already in a preceding `Reply`); then call
    /// [`Session::tls_started`].
    StartTls,
    /// UPDATE state: delete these messages (0-based), then call [`Session::update_done`].
    Update(Vec<usize>),
    /// Write the pending output, then close the connection.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// AUTHORIZATION; `user` after a successful USER.
    Authorization { user: Option<String> },
    /// AUTH PLAIN sent `+ `, waiting for the client's response line.
    SaslPlain,
    /// Waiting for the driver's verdict on a login.
    Authenticating,
    /// TRANSACTION.
    Transaction,
    /// UPDATE, waiting for the driver to delete.
    Update,
    /// Done; nothing more is accepted.
    Closed,
}

/// One POP3 session.
#[derive(Debug)]
pub struct Session {
    policy: Policy,
    timestamp: String,
    state: State,
    messages: Vec<MessageInfo>,
    deleted: Vec<bool>,
    errors: u32,
    auth_failures: u32,
    user: Option<String>,
    /// Client bytes not framed yet, from `pos`.
    input: Input,
    framer: LineFramer,
    /// Reply bytes for the driver.
    output: Vec<u8>,
    /// Events of the last step not yet returned by `poll`.
    events: VecDeque<Event>,
    /// An Authenticate, StartTls or Update went out and its answer has not come.
    waiting: bool,
    /// Logins and messages sent: the driver's session deadline moves with it.
    progress: u64,
}

/// The hooks of the session pattern ([`crate::session`]): the driver's clocks and the server's
/// shutdown end a POP3 session with `-ERR` and close it. Nothing is deleted (no UPDATE,
/// RFC 1939 §6).
impl SessionHooks for Session {
    fn feed(&mut self, bytes: &[u8]) {
        self.input.feed(bytes);
    }

    /// Logins and messages sent so far (NOOP, STAT and the like do not count).
    fn progress(&self) -> u64 {
        self.progress
    }

    /// `-ERR [SYS/TEMP] Server shutting down.` (RFC 3206 §4).
    fn shutdown(&mut self) {
        self.say_and_close(b"-ERR [SYS/TEMP] Server shutting down.\r\n");
    }

    /// `-ERR Disconnected for inactivity.`: the autologout timer (RFC 1939 §3).
    fn timeout(&mut self) {
        self.say_and_close(b"-ERR Disconnected for inactivity.\r\n");
    }

    /// `-ERR Session deadline exceeded, disconnecting.`
    fn deadline_exceeded(&mut self) {
        self.say_and_close(b"-ERR Session deadline exceeded, disconnecting.\r\n");
    }
}

impl Session {
    /// A new session. `timestamp` is the APOP timestamp (`<pid.clock@host>`, RFC 1939 §7),
    /// used only when the policy enables APOP. Call [`greeting`](Self::greeting) first.
    pub fn new(policy: Policy, timestamp: &str) -> Session {
        Session {
            policy,
            timestamp: timestamp.to_string(),
            state: State::Authorization { user: None },
            messages: Vec::new(),
            deleted: Vec::new(),
            errors: 0,
            auth_failures: 0,
            user: None,
            input: Input::default(),
            framer: LineFramer::default(),
            output: Vec::new(),
            events: VecDeque::new(),
            waiting: false,
            progress: 0,
        }
    }

    /// Queues the `+OK` greeting, with the APOP timestamp when APOP is on (RFC 1939 §4, §7).
    pub fn greeting(&mut self) {
        let greeting = if self.policy.apop {
            format!("+OK mailkit POP3 server ready. {}\r\n", self.timestamp)
        } else {
            "+OK mailkit POP3 server ready.\r\n".to_string()
        };
        self.output.extend_from_slice(greeting.as_bytes());
    }

    /// Takes the reply bytes produced so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Whether reply bytes are waiting to be written.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Advances the session as far as the buffered input allows.
    pub fn poll(&mut self) -> Event {
        loop {
            if let Some(ev) = self.events.pop_front() {
                match ev {
                    Event::Reply(b) => self.output.extend_from_slice(&b),
                    Event::Close => {
                        self.events.clear();
                        return Event::Close;
                    }
                    Event::Send { .. } => {
                        self.progress += 1;
                        return ev;
                    }
                    ev => {
                        self.waiting = true;
                        return ev;
                    }
                }
                continue;
            }
            if self.state == State::Closed {
                return Event::Close;
            }
            if self.waiting {
                return Event::Pending;
            }
            match self.next_line() {
                Some(Framed::Line(Line::Complete { text, .. })) => {
                    let ev = self.handle_line(&text);
                    self.events.extend(ev);
                }
                Some(Framed::Line(Line::TooLong)) => {
                    let ev = self.line_too_long();
                    self.events.extend(ev);
                }
                // Not a line protocol: hang up without a word (the framer has given up).
                Some(Framed::NoLineEnd) => {
                    self.state = State::Closed;
                }
                Some(Framed::Line(Line::Eof)) | None => return Event::NeedInput,
            }
        }
    }

    /// The next line of the buffered input, framed with [`Session::line_limit`], if one is
    /// complete. [`Session::poll`] runs the commands of the lines it frames; a driver relaying
    /// a session served elsewhere (a system user's child, [`super::driver`]) frames with this
    /// alone.
    pub fn next_line(&mut self) -> Option<Framed> {
        let (found, used) = self.framer.next(self.input.unread(), self.line_limit());
        self.input.pos += used;
        found
    }

    fn say_and_close(&mut self, text: &[u8]) {
        self.events.clear();
        self.output.extend_from_slice(text);
        self.waiting = false;
        self.state = State::Closed;
    }

    /// The logged-in user, once in TRANSACTION.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether the next line is a SASL response (it may be longer, RFC 5034 §4).
    pub fn expecting_sasl(&self) -> bool {
        self.state == State::SaslPlain
    }

    /// The longest line (CRLF included) the driver should read. AUTH lines and SASL responses
    /// may reach [`command::MAX_SASL_LINE`] (RFC 5034 §4); [`command::parse`] holds every
    /// other command to the 255 octets of RFC 2449 §4, so both get a precise `-ERR`.
    pub fn line_limit(&self) -> usize {
        command::MAX_SASL_LINE
    }

    /// Whether the session has ended (the driver should close).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether TLS is active on the connection.
    pub fn tls_active(&self) -> bool {
        self.policy.tls_active
    }

    /// The driver read a line longer than [`Session::line_limit`] (and discarded it).
    pub fn line_too_long(&mut self) -> Vec<Event> {
        if self.state == State::SaslPlain {
            self.state = State::Authorization { user: None };
        }
        self.error(ParseError::TooLong.text())
    }

    /// Handles one line from the client (without CRLF): the step [`Session::poll`] takes for
    /// each line it frames.
    pub fn handle_line(&mut self, line: &[u8]) -> Vec<Event> {
        match self.state {
            State::Closed | State::Authenticating | State::Update => {
                // The driver does not read while it works on an event; be safe anyway.
                return self.error("Command not valid now.");
            }
            State::SaslPlain => return self.sasl_response(line),
            _ => {}
        }
        let cmd = match command::parse(line) {
            Ok(c) => c,
            Err(e) => return self.error(e.text()),
        };
        match cmd {
            Command::Capa => self.reply(self.capabilities()),
            Command::Quit => self.quit(),
            Command::Noop if self.state == State::Transaction => ok("OK"),
            c if self.state == State::Transaction => self.transaction(c),
            c => self.authorization(c),
        }
    }

    /// The CAPA response (RFC 2449 §5); USER, SASL and STLS only where they can be used.
    fn capabilities(&self) -> Vec<u8> {
        let mut s = String::from("+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
        let authorizing = matches!(self.state, State::Authorization { .. });
        if authorizing && self.login_allowed() {
            s.push_str("USER\r\nSASL PLAIN\r\n");
        }
        if authorizing && self.policy.tls_available && !self.policy.tls_active {
            s.push_str("STLS\r\n");
        }
        s.push_str("IMPLEMENTATION ");
        s.push_str(IMPLEMENTATION);
        s.push_str("\r\n.\r\n");
        s.into_bytes()
    }

    fn login_allowed(&self) -> bool {
        self.policy.tls_active || self.policy.plaintext_allowed
    }

    fn authorization(&mut self, cmd: Command) -> Vec<Event> {
        let pending_user = match &self.state {
            State::Authorization { user } => user.clone(),
            _ => None,
        };
        // Any command but PASS forgets a pending USER (RFC 1939 §7: PASS must follow USER).
        self.state = State::Authorization { user: None };
        match cmd {
            Command::Stls => {
                if self.policy.tls_active {
                    self.error("TLS is already active.")
                } else if !self.policy.tls_available {
                    self.error("TLS support isn't enabled.")
                } else {
                    vec![
                        Event::Reply(b"+OK Begin TLS negotiation now.\r\n".to_vec()),
                        Event::StartTls,
                    ]
                }
            }
            Command::User(name) => {
                if !self.login_allowed() {
                    return self.plaintext_refused();
                }
                self.state = State::Authorization { user: Some(name) };
                ok("Send your password.")
            }
            Command::Pass(secret) => match pending_user {
                Some(user) if self.login_allowed() => self.authenticate(Login {
                    user,
                    credential: Credential::Password(secret),
                }),
                Some(_) => self.plaintext_refused(),
                None => self.error("No username given."),
            },
            Command::Apop { user, digest } => {
                if !self.policy.apop {
                    self.error("APOP is not available.")
                } else if !self.login_allowed() {
                    self.plaintext_refused()
                } else {
                    let timestamp = self.timestamp.clone();
                    self.authenticate(Login {
                        user,
                        credential: Credential::Apop { timestamp, digest },
                    })
                }
            }
            Command::Auth { mechanism, initial } => match mechanism.as_deref() {
                // Bare AUTH lists the mechanisms (the pre-RFC 5034 form clients still use).
                None => self.reply(b"+OK\r\nPLAIN\r\n.\r\n".to_vec()),
                Some("PLAIN") => {
                    if !self.login_allowed() {
                        return self.plaintext_refused();
                    }
                    match initial {
                        Some(resp) => self.sasl_response(resp.as_bytes()),
                        None => {
                            self.state = State::SaslPlain;
                            // RFC 5034 §4: an empty challenge is "+ " (with the space).
                            vec![Event::Reply(b"+ \r\n".to_vec())]
                        }
                    }
                }
                Some(_) => self.error("Unsupported authentication mechanism."),
            },
            _ => self.error("Unknown command in AUTHORIZATION state."),
        }
    }

    fn plaintext_refused(&mut self) -> Vec<Event> {
        self.error(
            "[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.",
        )
    }

    /// The client's answer to `+ ` (or the initial response): base64 of
    /// `authzid NUL authcid NUL password`, `=` for empty, `*` to cancel (RFC 5034 §4).
    fn sasl_response(&mut self, line: &[u8]) -> Vec<Event> {
        self.state = State::Authorization { user: None };
        if line == b"*" {
            return self.error("Authentication cancelled.");
        }
        match decode_plain(line) {
            Some((user, password)) => self.authenticate(Login {
                user,
                credential: Credential::Password(password),
            }),
            None => self.error("Invalid base64 data in continued response."),
        }
    }

    fn authenticate(&mut self, login: Login) -> Vec<Event> {
        self.state = State::Authenticating;
        vec![Event::Authenticate(login)]
    }

    /// The driver verified the login, locked the maildrop and scanned it.
    pub fn login_done(&mut self, user: &str, messages: Vec<MessageInfo>) {
        self.deleted = vec![false; messages.len()];
        self.messages = messages;
        self.user = Some(user.to_string());
        self.state = State::Transaction;
        self.answered(ok("Logged in."));
        self.progress += 1;
    }

    /// The answer to the outstanding event: its events come from `poll` next.
    fn answered(&mut self, events: Vec<Event>) {
        self.waiting = false;
        self.events.extend(events);
    }

    /// The login did not succeed. The driver applies the per-IP delay before calling this.
    pub fn login_failed(&mut self, why: LoginFailure) {
        self.state = State::Authorization { user: None };
        let text: &[u8] = match why {
            LoginFailure::BadCredentials => {
                self.auth_failures += 1;
                b"-ERR [AUTH] Authentication failed.\r\n"
            }
            LoginFailure::InUse => b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n",
            LoginFailure::Temporary => {
                b"-ERR [SYS/TEMP] Temporary server failure, try again later.\r\n"
            }
        };
        let mut ev = vec![Event::Reply(text.to_vec())];
        if self.auth_failures >= self.policy.max_auth_failures {
            ev.push(Event::Reply(
                b"-ERR [AUTH] Too many authentication failures, closing.\r\n".to_vec(),
            ));
            ev.push(self.close());
        }
        self.answered(ev);
    }

    /// TLS is up after STLS (RFC 2595 §4: the session starts over in AUTHORIZATION). Input
    /// that came before the handshake is dropped, never read as if it came over TLS (RFC 2595
    /// §3.1; CVE-2011-0411).
    pub fn tls_started(&mut self) {
        self.policy.tls_active = true;
        self.state = State::Authorization { user: None };
        self.input.clear();
        self.framer = LineFramer::default();
        self.answered(Vec::new());
    }

    /// The message for a [`Event::Send`] could not be read.
    pub fn send_failed(&self) -> Vec<u8> {
        b"-ERR [SYS/TEMP] Cannot read the message, try again later.\r\n".to_vec()
    }

    /// The driver finished UPDATE: `ok` when every marked message is gone.
    pub fn update_done(&mut self, ok: bool) {
        let text: &[u8] = if ok {
            b"+OK Logging out, messages deleted.\r\n"
        } else {
            b"-ERR [SYS/TEMP] Some deleted messages were not removed.\r\n"
        };
        let ev = vec![Event::Reply(text.to_vec()), self.close()];
        self.answered(ev);
    }

    fn quit(&mut self) -> Vec<Event> {
        if self.state == State::Transaction {
            let marked: Vec<usize> = (0..self.messages.len())
                .filter(|&i| self.deleted[i])
                .collect();
            if !marked.is_empty() {
                self.state = State::Update;
                return vec![Event::Update(marked)];
            }
        }
        // QUIT in AUTHORIZATION (or with nothing marked): no UPDATE state (RFC 1939 §6).
        vec![Event::Reply(b"+OK Logging out.\r\n".to_vec()), self.close()]
    }

    fn close(&mut self) -> Event {
        self.state = State::Closed;
        Event::Close
    }

    fn transaction(&mut self, cmd: Command) -> Vec<Event> {
        match cmd {
            Command::Stat => {
                let (n, size) = self.totals();
                ok(&format!("{n} {size}"))
            }
            Command::List(None) => {
                let (n, size) = self.totals();
                let mut out = format!("+OK {n} messages ({size} octets)\r\n").into_bytes();
                for (i, m) in self.live() {
                    out.extend_from_slice(format!("{} {}\r\n", i + 1, m.size).as_bytes());
                }
                out.extend_from_slice(b".\r\n");
                self.reply(out)
            }
            Command::List(Some(n)) => match self.message(n) {
                Ok(i) => ok(&format!("{n} {}", self.messages[i].size)),
                Err(e) => e,
            },
            Command::Uidl(None) => {
                let mut out = b"+OK\r\n".to_vec();
                for (i, m) in self.live() {
                    out.extend_from_slice(format!("{} {}\r\n", i + 1, m.uid).as_bytes());
                }
                out.extend_from_slice(b".\r\n");
                self.reply(out)
            }
            Command::Uidl(Some(n)) => match self.message(n) {
                Ok(i) => ok(&format!("{n} {}", self.messages[i].uid)),
                Err(e) => e,
            },
            Command::Retr(n) => match self.message(n) {
                Ok(i) => vec![Event::Send {
                    index: i,
                    top: None,
                    ok: format!("+OK {} octets\r\n", self.messages[i].size).into_bytes(),
                }],
                Err(e) => e,
            },
            Command::Top(n, lines) => match self.message(n) {
                Ok(i) => vec![Event::Send {
                    index: i,
                    top: Some(lines),
                    ok: b"+OK\r\n".to_vec(),
                }],
                Err(e) => e,
            },
            Command::Dele(n) => match self.message(n) {
                Ok(i) => {
                    self.deleted[i] = true;
                    ok("Marked to be deleted.")
                }
                Err(e) => e,
            },
            Command::Rset => {
                self.deleted.iter_mut().for_each(|d| *d = false);
                let (n, size) = self.totals();
                ok(&format!("{n} messages ({size} octets)"))
            }
            Command::Stls => self.error("STLS is only valid in AUTHORIZATION state."),
            _ => self.error("Unknown command in TRANSACTION state."),
        }
    }

    fn live(&self) -> impl Iterator<Item = (usize, &MessageInfo)> {
        self.messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
    }

    fn totals(&self) -> (usize, u64) {
        self.live()
            .fold((0, 0), |(n, s), (_, m)| (n + 1, s.saturating_add(m.size)))
    }

    /// Resolves a 1-based message number to an index of a message not marked deleted.
    fn message(&mut self, n: u32) -> Result<usize, Vec<Event>> {
        let i = (n as usize).wrapping_sub(1);
        if n == 0 || i >= self.messages.len() {
            return Err(self.error(&format!("There's no message {n}.")));
        }
        if self.deleted[i] {
            return Err(self.error("Message is deleted."));
        }
        Ok(i)
    }

    fn reply(&self, bytes: Vec<u8>) -> Vec<Event> {
        vec![Event::Reply(bytes)]
    }

    /// A client error: `-ERR text`, counted; too many and we hang up.
    fn error(&mut self, text: &str) -> Vec<Event> {
        self.errors += 1;
        if self.errors >= self.policy.max_errors {
            return vec![
                Event::Reply(b"-ERR Too many bad commands, closing.\r\n".to_vec()),
                self.close(),
            ];
        }
        vec![Event::Reply(format!("-ERR {text}\r\n").into_bytes())]
    }
}

fn ok(text: &str) -> Vec<Event> {
    vec![Event::Reply(format!("+OK {text}\r\n").into_bytes())]
}

/// Decodes a SASL PLAIN response with the shared decoder (RFC 4616 §2); only acting as
/// oneself is allowed (a non-empty authzid must equal the authcid).
fn decode_plain(b64: &[u8]) -> Option<(String, String)> {
    let creds = crate::auth::sasl::sasl_plain_decode(b64).ok()?;
    let user = creds.login_name().ok()?.to_string();
    Some((user, creds.password))
}

/// Makes a Maildir unique name a valid RFC 1939 unique-id: already valid names pass unchanged;
/// anything else is replaced by a stable hex digest of it (FNV-1a 128, so still stable across
/// sessions).
pub fn uid_for(unique: &str) -> String {
    let valid = !unique.is_empty()
        && unique.len() <= MAX_UID_LEN
        && unique.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if valid {
        return unique.to_string();
    }
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for &b in unique.as_bytes() {
        h ^= b as u128;
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    format!("{h:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(ev: &[Event]) -> String {
        let mut s = String::new();
        for e in ev {
            match e {
                Event::Reply(b) => s.push_str(&String::from_utf8_lossy(b)),
                Event::Send { ok, .. } => s.push_str(&String::from_utf8_lossy(ok)),
                other => s.push_str(&format!("<{other:?}>")),
            }
        }
        s
    }

    /// The events an answer method queued, as `poll` would hand them out.
    fn answered(s: &mut Session) -> Vec<Event> {
        s.events.drain(..).collect()
    }

    /// A new session and its greeting.
    fn greeted(policy: Policy, timestamp: &str) -> (Session, Vec<u8>) {
        let mut s = Session::new(policy, timestamp);
        s.greeting();
        let g = s.take_output();
        (s, g)
    }

    fn plain_policy() -> Policy {
        Policy {
            plaintext_allowed: true,
            tls_available: true,
            ..Policy::default()
        }
    }

    fn msgs() -> Vec<MessageInfo> {
        vec![
            MessageInfo {
                size: 100,
                uid: "a1".into(),
            },
            MessageInfo {
                size: 200,
                uid: "b2".into(),
            },
        ]
    }

    fn logged_in() -> Session {
        let mut s = Session::new(plain_policy(), "<1.2@h>");
        s.handle_line(b"USER alice");
        let ev = s.handle_line(b"PASS pw");
        assert_eq!(
            ev,
            vec![Event::Authenticate(Login {
                user: "alice".into(),
                credential: Credential::Password("pw".into())
            })]
        );
        s.login_done("alice", msgs());
        assert_eq!(text(&answered(&mut s)), "+OK Logged in.\r\n");
        s
    }

    #[test]
    fn user_pass_then_transaction_commands() {
        let mut s = logged_in();
        assert_eq!(text(&s.handle_line(b"STAT")), "+OK 2 300\r\n");
        assert_eq!(
            text(&s.handle_line(b"LIST")),
            "+OK 2 messages (300 octets)\r\n1 100\r\n2 200\r\n.\r\n"
        );
        assert_eq!(text(&s.handle_line(b"LIST 2")), "+OK 2 200\r\n");
        assert_eq!(
            text(&s.handle_line(b"UIDL")),
            "+OK\r\n1 a1\r\n2 b2\r\n.\r\n"
        );
        assert_eq!(text(&s.handle_line(b"UIDL 1")), "+OK 1 a1\r\n");
        assert_eq!(
            s.handle_line(b"RETR 2"),
            vec![Event::Send {
                index: 1,
                top: None,
                ok: b"+OK 200 octets\r\n".to_vec()
            }]
        );
        assert_eq!(
            s.handle_line(b"TOP 1 5"),
            vec![Event::Send {
                index: 0,
                top: Some(5),
                ok: b"+OK\r\n".to_vec()
            }]
        );
        assert_eq!(
            text(&s.handle_line(b"DELE 1")),
            "+OK Marked to be deleted.\r\n"
        );
        assert_eq!(text(&s.handle_line(b"STAT")), "+OK 1 200\r\n");
        assert_eq!(
            text(&s.handle_line(b"RETR 1")),
            "-ERR Message is deleted.\r\n"
        );
        assert_eq!(
            text(&s.handle_line(b"LIST")),
            "+OK 1 messages (200 octets)\r\n2 200\r\n.\r\n"
        );
        assert_eq!(
            text(&s.handle_line(b"RSET")),
            "+OK 2 messages (300 octets)\r\n"
        );
        assert_eq!(text(&s.handle_line(b"NOOP")), "+OK OK\r\n");
        s.handle_line(b"DELE 2");
        assert_eq!(s.handle_line(b"QUIT"), vec![Event::Update(vec![1])]);
        s.update_done(true);
        let ev = answered(&mut s);
        assert_eq!(ev.last(), Some(&Event::Close));
        assert!(s.is_closed());
    }

    #[test]
    fn quit_without_deletions_and_in_authorization_deletes_nothing() {
        let mut s = logged_in();
        assert_eq!(
            s.handle_line(b"QUIT"),
            vec![Event::Reply(b"+OK Logging out.\r\n".to_vec()), Event::Close]
        );
        let mut s = Session::new(plain_policy(), "<x>");
        assert_eq!(s.handle_line(b"QUIT").last(), Some(&Event::Close));
    }

    #[test]
    fn out_of_range_and_wrong_state_keep_the_session() {
        let mut s = logged_in();
        assert_eq!(
            text(&s.handle_line(b"RETR 0")),
            "-ERR There's no message 0.\r\n"
        );
        assert_eq!(
            text(&s.handle_line(b"RETR 3")),
            "-ERR There's no message 3.\r\n"
        );
        assert_eq!(
            text(&s.handle_line(b"RETR 4294967295")),
            "-ERR There's no message 4294967295.\r\n"
        );
        assert!(text(&s.handle_line(b"USER bob")).starts_with("-ERR"));
        assert!(text(&s.handle_line(b"STLS")).starts_with("-ERR"));
        assert!(text(&s.handle_line(b"XYZZY")).starts_with("-ERR Unknown command"));
        assert!(!s.is_closed());
        assert_eq!(text(&s.handle_line(b"STAT")), "+OK 2 300\r\n");
        let mut s = Session::new(plain_policy(), "<x>");
        assert!(text(&s.handle_line(b"STAT")).starts_with("-ERR"));
        assert!(text(&s.handle_line(b"PASS x")).starts_with("-ERR No username"));
    }

    #[test]
    fn too_many_errors_disconnect() {
        let mut s = Session::new(plain_policy(), "<x>");
        for _ in 0..DEFAULT_MAX_ERRORS - 1 {
            assert!(!s.handle_line(b"BOGUS").contains(&Event::Close));
        }
        assert!(s.handle_line(b"BOGUS").contains(&Event::Close));
        assert!(s.is_closed());
    }

    #[test]
    fn long_lines_are_refused_but_session_kept() {
        let mut s = Session::new(plain_policy(), "<x>");
        let long = vec![b'A'; 300];
        assert_eq!(text(&s.handle_line(&long)), "-ERR Line too long.\r\n");
        assert_eq!(text(&s.line_too_long()), "-ERR Line too long.\r\n");
        assert!(!s.is_closed());
        assert_eq!(s.line_limit(), command::MAX_SASL_LINE);
        let auth = format!("AUTH PLAIN {}", "A".repeat(300));
        assert_eq!(
            text(&s.handle_line(auth.as_bytes())),
            "-ERR Invalid base64 data in continued response.\r\n"
        );
    }

    #[test]
    fn failed_logins_say_auth_and_hang_up_after_the_limit() {
        let mut s = Session::new(plain_policy(), "<x>");
        for i in 1..=DEFAULT_MAX_AUTH_FAILURES {
            s.handle_line(b"USER nobody");
            assert!(matches!(
                s.handle_line(b"PASS x").as_slice(),
                [Event::Authenticate(_)]
            ));
            s.login_failed(LoginFailure::BadCredentials);
            let ev = answered(&mut s);
            assert!(text(&ev).starts_with("-ERR [AUTH] Authentication failed.\r\n"));
            assert_eq!(ev.contains(&Event::Close), i == DEFAULT_MAX_AUTH_FAILURES);
        }
        let mut s = Session::new(plain_policy(), "<x>");
        s.handle_line(b"USER a");
        s.handle_line(b"PASS b");
        s.login_failed(LoginFailure::InUse);
        assert!(text(&answered(&mut s)).starts_with("-ERR [IN-USE]"));
        s.handle_line(b"USER a");
        s.handle_line(b"PASS b");
        s.login_failed(LoginFailure::Temporary);
        assert!(text(&answered(&mut s)).starts_with("-ERR [SYS/TEMP]"));
    }

    #[test]
    fn plaintext_refused_without_tls_unless_allowed() {
        let policy = Policy {
            tls_available: true,
            ..Policy::default()
        };
        let mut s = Session::new(policy, "<x>");
        let capa = text(&s.handle_line(b"CAPA"));
        assert!(capa.contains("STLS\r\n"));
        assert!(!capa.contains("USER\r\n"));
        assert!(!capa.contains("SASL"));
        assert!(text(&s.handle_line(b"USER alice")).starts_with("-ERR [AUTH] Plaintext"));
        assert!(text(&s.handle_line(b"AUTH PLAIN")).starts_with("-ERR [AUTH] Plaintext"));
        assert_eq!(
            s.handle_line(b"STLS"),
            vec![
                Event::Reply(b"+OK Begin TLS negotiation now.\r\n".to_vec()),
                Event::StartTls
            ]
        );
        s.tls_started();
        let capa = text(&s.handle_line(b"CAPA"));
        assert!(!capa.contains("STLS"));
        assert!(capa.contains("USER\r\nSASL PLAIN\r\n"));
        assert!(text(&s.handle_line(b"STLS")).starts_with("-ERR"));
        assert_eq!(
            text(&s.handle_line(b"USER alice")),
            "+OK Send your password.\r\n"
        );
    }

    #[test]
    fn capa_lists_rfc2449_capabilities() {
        let mut s = Session::new(plain_policy(), "<x>");
        let capa = text(&s.handle_line(b"CAPA"));
        for c in [
            "TOP",
            "UIDL",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "PIPELINING",
            "USER",
            "SASL PLAIN",
            "STLS",
        ] {
            assert!(capa.contains(&format!("\r\n{c}\r\n")), "{c} in {capa}");
        }
        assert!(capa.starts_with("+OK"));
        assert!(capa.ends_with("\r\nIMPLEMENTATION mailkit-mpopd\r\n.\r\n"));
    }

    #[test]
    fn auth_plain_initial_response_continuation_and_cancel() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"\0alice\0pw d");
        let mut s = Session::new(plain_policy(), "<x>");
        let ev = s.handle_line(format!("AUTH PLAIN {b64}").as_bytes());
        assert_eq!(
            ev,
            vec![Event::Authenticate(Login {
                user: "alice".into(),
                credential: Credential::Password("pw d".into())
            })]
        );
        let mut s = Session::new(plain_policy(), "<x>");
        assert_eq!(text(&s.handle_line(b"AUTH PLAIN")), "+ \r\n");
        assert!(s.expecting_sasl());
        assert!(matches!(
            s.handle_line(b64.as_bytes()).as_slice(),
            [Event::Authenticate(_)]
        ));
        let mut s = Session::new(plain_policy(), "<x>");
        s.handle_line(b"AUTH PLAIN");
        assert_eq!(
            text(&s.handle_line(b"*")),
            "-ERR Authentication cancelled.\r\n"
        );
        assert_eq!(
            text(&s.handle_line(b"AUTH PLAIN !!!")),
            "-ERR Invalid base64 data in continued response.\r\n"
        );
        let other = base64::engine::general_purpose::STANDARD.encode(b"bob\0alice\0pw");
        assert!(text(&s.handle_line(format!("AUTH PLAIN {other}").as_bytes())).starts_with("-ERR"));
        assert!(text(&s.handle_line(b"AUTH CRAM-MD5")).starts_with("-ERR Unsupported"));
        assert_eq!(text(&s.handle_line(b"AUTH")), "+OK\r\nPLAIN\r\n.\r\n");
    }

    #[test]
    fn apop_only_when_enabled_and_greeting_has_timestamp() {
        let (mut s, g) = greeted(plain_policy(), "<1.2@h>");
        assert!(!String::from_utf8(g).unwrap().contains('<'));
        assert!(
            text(&s.handle_line(b"APOP a 0123456789abcdef0123456789abcdef")).starts_with("-ERR")
        );
        let policy = Policy {
            apop: true,
            ..plain_policy()
        };
        let (mut s, g) = greeted(policy, "<1.2@h>");
        assert!(String::from_utf8(g).unwrap().ends_with(" <1.2@h>\r\n"));
        assert_eq!(
            s.handle_line(b"APOP a 0123456789ABCDEF0123456789abcdef"),
            vec![Event::Authenticate(Login {
                user: "a".into(),
                credential: Credential::Apop {
                    timestamp: "<1.2@h>".into(),
                    digest: "0123456789abcdef0123456789abcdef".into()
                }
            })]
        );
    }

    #[test]
    fn uids_are_valid_and_stable() {
        assert_eq!(uid_for("1700000000.M1P2Q3.host"), "1700000000.M1P2Q3.host");
        let long = "x".repeat(100);
        assert_eq!(uid_for(&long).len(), 32);
        assert_eq!(uid_for(&long), uid_for(&long));
        assert_ne!(uid_for("a b"), uid_for("a c"));
        assert_eq!(uid_for(""), uid_for(""));
    }

    #[test]
    fn adversarial_lines_never_panic() {
        let lines: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b" ".to_vec(),
            b"\0".to_vec(),
            vec![0xff; 10],
            b"TOP 1 99999999999999".to_vec(),
            b"LIST 0".to_vec(),
            b"AUTH PLAIN =".to_vec(),
            vec![b'x'; 10_000],
        ];
        let mut s = logged_in();
        for l in &lines {
            s.handle_line(l);
        }
        let mut s = Session::new(plain_policy(), "<x>");
        for l in &lines {
            s.handle_line(l);
        }
    }
}
