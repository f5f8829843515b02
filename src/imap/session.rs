//! The IMAP session state machine (sans-IO), on the one session pattern
//! ([`crate::session`]): bytes from the client go in with [`SessionHooks::feed`] (framed by
//! [`super::framer`], parsed by [`imap_codec`]), [`Session::poll`] advances it and returns an
//! [`Event`], and response bytes accumulate for [`Session::take_output`].
//!
//! States follow RFC 3501 §3: not authenticated, authenticated, selected, logout. The session
//! answers what needs no outside world itself — CAPABILITY, NOOP and LOGOUT outside a mailbox,
//! STARTTLS (RFC 3501 §6.2.1), LOGIN and AUTHENTICATE PLAIN with SASL-IR (RFC 4959) up to the
//! password check, ID (RFC 2971), ENABLE (RFC 5161), NAMESPACE (RFC 2342), wrong-state and
//! unknown commands (`BAD`, RFC 3501 §6) — and hands everything else to the driver as an
//! event: the password check ([`Event::Authenticate`]), TLS ([`Event::StartTls`]), every
//! mailbox command ([`Event::Command`], answered with [`Session::command_done`]), APPEND's
//! streamed message ([`Event::AppendBegin`], [`Event::AppendData`], [`Event::AppendFinish`])
//! and IDLE (RFC 2177: [`Event::Idle`], while the driver reports the mailbox's changes, until
//! `DONE` gives [`Event::IdleDone`]).
//!
//! Limits: a command is held to [`Limits::max_command`] octets (a line over it, or too many
//! errors, ends the session with `* BYE`), an APPEND message to [`Limits::max_append`]
//! (`NO [TOOBIG]`, RFC 7888 §4 for LITERAL+), ID to RFC 2971's 30 pairs, logins to
//! [`Policy::max_auth_failures`] per session. Logins are refused before TLS unless the policy
//! allows them (`LOGINDISABLED`, RFC 3501 §6.2.3, §11.1). The session never blocks and never
//! panics on input.

use std::collections::VecDeque;

use imap_codec::decode::{AuthenticateDataDecodeError, CommandDecodeError, Decoder as _};
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{IString, NString, QuotedChar};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::namespace::Namespace;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::response::{Data, StatusKind};
use imap_codec::imap_types::IntoStatic as _;
use imap_codec::{AuthenticateDataCodec, CommandCodec};

use super::framer::{Frame, Framer, Limits, MAX_DISCARD_LITERAL};
use super::response::{self, bad, no, ok, other_code, status};
use crate::session::SessionHooks;

/// Default number of client errors (BAD responses) before the session says BYE.
pub const DEFAULT_MAX_ERRORS: u32 = 20;
/// Default number of failed logins in one session before it says BYE.
pub const DEFAULT_MAX_AUTH_FAILURES: u32 = 3;
/// RFC 2971 §3.3: at most 30 field-value pairs in ID.
pub const MAX_ID_PAIRS: usize = 30;
/// RFC 2971 §3.3: a field is at most 30 octets, a value at most 1024.
pub const MAX_ID_FIELD: usize = 30;
/// See [`MAX_ID_FIELD`].
pub const MAX_ID_VALUE: usize = 1024;
/// The server's name in ID (RFC 2971 §3.3 `name`).
pub const IMPLEMENTATION: &str = "mailkit-mimapd";
/// The hierarchy delimiter of Maildir++ folders (`.A.B/` is `A.B`).
pub const DELIMITER: char = '.';

/// What the session may offer on this connection, fixed by the driver.
#[derive(Debug, Clone)]
pub struct Policy {
    /// STARTTLS can be offered (plain listener with a certificate).
    pub tls_available: bool,
    /// The connection is already encrypted.
    pub tls_active: bool,
    /// LOGIN and AUTHENTICATE are allowed before TLS (loopback by default).
    pub plaintext_allowed: bool,
    /// Command and APPEND size limits.
    pub limits: Limits,
    /// BAD responses before BYE.
    pub max_errors: u32,
    /// Failed logins before BYE.
    pub max_auth_failures: u32,
    /// Capabilities of the mailbox commands the driver serves, advertised once logged in
    /// (`UIDPLUS`, `MOVE`, ...).
    pub mailbox_capabilities: Vec<&'static str>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            tls_available: false,
            tls_active: false,
            plaintext_allowed: false,
            limits: Limits::default(),
            max_errors: DEFAULT_MAX_ERRORS,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
            mailbox_capabilities: Vec::new(),
        }
    }
}

/// A login for the driver to check (LOGIN or AUTHENTICATE PLAIN).
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The user name as given (`user` or `user@domain`).
    pub user: String,
    /// The password.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why a login did not succeed; each has its RFC 5530 response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailure {
    /// Wrong user or password (`NO [AUTHENTICATIONFAILED]`; never says which).
    BadCredentials,
    /// Something on our side failed (`NO [UNAVAILABLE]`).
    Temporary,
}

/// How a mailbox command leaves the session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// As it was.
    Same,
    /// A mailbox is selected (SELECT, EXAMINE: `read_only` for EXAMINE).
    Selected {
        /// EXAMINE, or a mailbox that cannot be written.
        read_only: bool,
    },
    /// No mailbox is selected any more (CLOSE, UNSELECT, a failed SELECT).
    Authenticated,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Write the pending output, then read and feed more bytes.
    NeedInput,
    /// An answer to an earlier event is outstanding (a driver bug).
    Pending,
    /// Check this login; then [`Session::login_done`] or [`Session::login_failed`].
    Authenticate(Login),
    /// Start TLS now (the tagged OK is in the output); then [`Session::tls_started`].
    StartTls,
    /// Run a mailbox command of the authenticated or selected state; then
    /// [`Session::command_done`] with its responses.
    Command {
        /// The command's tag.
        tag: String,
        /// The command.
        body: CommandBody<'static>,
        /// Whether a mailbox is selected read-only (EXAMINE).
        read_only: bool,
    },
    /// APPEND: open a file for a message of `len` octets for `mailbox`; then
    /// [`Session::append_ready`] or [`Session::append_refused`].
    AppendBegin {
        /// The command's tag.
        tag: String,
        /// The target mailbox.
        mailbox: Mailbox<'static>,
        /// The message's flags.
        flags: Vec<Flag<'static>>,
        /// Its internal date.
        date: Option<DateTime>,
        /// Its size.
        len: u64,
    },
    /// Octets of the APPEND message, in order (no answer).
    AppendData(Vec<u8>),
    /// The APPEND message is complete: store it durably; then [`Session::command_done`].
    AppendFinish {
        /// The command's tag.
        tag: String,
    },
    /// The APPEND was refused after its file was opened: remove the file (no answer).
    AppendAbort,
    /// IDLE began (`+ idling` is in the output): report mailbox changes as untagged
    /// responses until [`Event::IdleDone`].
    Idle {
        /// The IDLE command's tag.
        tag: String,
    },
    /// The client ended IDLE with `DONE`: answer with [`Session::command_done`] (any last
    /// untagged responses, then the tagged OK the session queues for `tag`).
    IdleDone {
        /// The IDLE command's tag.
        tag: String,
    },
    /// Write the pending output, then close the connection.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    NotAuthenticated,
    /// AUTHENTICATE PLAIN sent `+`, waiting for the response line.
    Sasl {
        tag: String,
    },
    Authenticated,
    Selected {
        read_only: bool,
    },
    /// IDLE in the authenticated or selected state; `DONE` ends it.
    Idling {
        tag: String,
        selected: Option<bool>,
    },
    /// APPEND's message is being read; `Some` when the driver has a file for it.
    Appending {
        tag: String,
        kept: bool,
        prior: Box<State>,
    },
    Closed,
}

/// One IMAP session (module doc).
#[derive(Debug)]
pub struct Session {
    policy: Policy,
    state: State,
    framer: Framer,
    output: Vec<u8>,
    events: VecDeque<Event>,
    /// An event that needs an answer went out and its answer has not come.
    waiting: bool,
    /// BAD responses so far.
    errors: u32,
    auth_failures: u32,
    /// The tag of the login or command being answered.
    answering: Option<String>,
    user: Option<String>,
    progress: u64,
    /// An APPEND waits for the driver's file: whether its literal is synchronising.
    pending_append: Option<bool>,
}

/// The hooks of the session pattern: the driver's clocks and the server's shutdown end an
/// IMAP session with `* BYE` (RFC 3501 §7.1.5) and close it.
impl SessionHooks for Session {
    fn feed(&mut self, bytes: &[u8]) {
        self.framer.feed(bytes);
    }

    /// Logins and commands completed (NOOP, CAPABILITY and IDLE's wait do not count).
    fn progress(&self) -> u64 {
        self.progress
    }

    /// `* BYE [UNAVAILABLE] Server shutting down.`
    fn shutdown(&mut self) {
        self.say_bye("Server shutting down.");
    }

    /// `* BYE Disconnected for inactivity.` (RFC 3501 §5.4: the autologout timer).
    fn timeout(&mut self) {
        self.say_bye("Disconnected for inactivity.");
    }

    /// `* BYE Session deadline exceeded, disconnecting.`
    fn deadline_exceeded(&mut self) {
        self.say_bye("Session deadline exceeded, disconnecting.");
    }
}

impl Session {
    /// A new session; call [`greeting`](Self::greeting) first.
    pub fn new(policy: Policy) -> Session {
        let framer = Framer::new(policy.limits);
        Session {
            policy,
            state: State::NotAuthenticated,
            framer,
            output: Vec::new(),
            events: VecDeque::new(),
            waiting: false,
            errors: 0,
            auth_failures: 0,
            answering: None,
            user: None,
            progress: 0,
            pending_append: None,
        }
    }

    /// A session that starts logged in as `user` (RFC 3501 §3.2, the authenticated state), for
    /// a system user's child (README "Privileges"): no greeting (the daemon's session sent it
    /// and checked the login), and the tagged OK of that login, command `tag`, queued first, so
    /// the capabilities it lists are those of the process that serves the mailbox.
    pub fn authenticated(policy: Policy, user: &str, tag: &str) -> Session {
        let mut s = Session::new(policy);
        s.answering = Some(tag.to_string());
        s.login_done(user);
        s
    }

    /// The tag of the login or command being answered (set while an event waits for its
    /// answer, e.g. [`Event::Authenticate`]).
    pub fn answering(&self) -> Option<&str> {
        self.answering.as_deref()
    }

    /// Takes the input fed and not framed yet: after [`Event::Authenticate`], what the client
    /// pipelined after its login (for a system user's child, which runs the rest).
    pub fn take_unframed(&mut self) -> Vec<u8> {
        self.framer.take_input()
    }

    /// Queues the greeting `* OK [CAPABILITY ...] ...` (RFC 3501 §7.1.1).
    pub fn greeting(&mut self) {
        let caps = self.capabilities().join(" ");
        self.output.extend_from_slice(
            format!("* OK [CAPABILITY {caps}] mailkit IMAP server ready.\r\n").as_bytes(),
        );
    }

    /// Takes the response bytes produced so far.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Appends untagged responses the driver produced (mailbox changes while idling).
    pub fn push_output(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// The logged-in user.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the session is in IDLE (the driver watches the mailbox while it waits).
    pub fn idling(&self) -> bool {
        matches!(self.state, State::Idling { .. })
    }

    /// Whether a mailbox is selected (also while idling in it).
    pub fn selected(&self) -> bool {
        matches!(
            self.state,
            State::Selected { .. }
                | State::Idling {
                    selected: Some(_),
                    ..
                }
        )
    }

    /// Whether TLS is active.
    pub fn tls_active(&self) -> bool {
        self.policy.tls_active
    }

    fn say_bye(&mut self, text: &str) {
        self.events.clear();
        self.output.extend_from_slice(&response::bye(text));
        self.waiting = false;
        self.state = State::Closed;
    }

    /// The capabilities for the current state (RFC 3501 §7.2.1).
    pub fn capabilities(&self) -> Vec<&'static str> {
        let mut caps = vec!["IMAP4rev1", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"];
        let authenticated = !matches!(self.state, State::NotAuthenticated | State::Sasl { .. });
        if authenticated {
            caps.push("NAMESPACE");
            caps.push("UNSELECT");
            caps.extend(self.policy.mailbox_capabilities.iter().copied());
        } else {
            if self.policy.tls_available && !self.policy.tls_active {
                caps.push("STARTTLS");
            }
            if self.login_allowed() {
                caps.push("AUTH=PLAIN");
            } else {
                caps.push("LOGINDISABLED");
            }
        }
        caps
    }

    fn login_allowed(&self) -> bool {
        self.policy.tls_active || self.policy.plaintext_allowed
    }

    /// Advances the session as far as the buffered input allows.
    pub fn poll(&mut self) -> Event {
        loop {
            if let Some(ev) = self.events.pop_front() {
                match ev {
                    Event::Close => {
                        self.events.clear();
                        self.state = State::Closed;
                        return Event::Close;
                    }
                    Event::AppendData(_) | Event::AppendAbort | Event::Idle { .. } => return ev,
                    ev => {
                        self.waiting = true;
                        return ev;
                    }
                }
            }
            if self.state == State::Closed {
                return Event::Close;
            }
            if self.waiting {
                return Event::Pending;
            }
            let Some(frame) = self.framer.next_frame() else {
                return Event::NeedInput;
            };
            self.frame(frame);
        }
    }

    fn frame(&mut self, frame: Frame) {
        match frame {
            Frame::Continue => {
                if let State::Idling { .. } = self.state {
                    // `DONE` has no literal: a line announcing one is not DONE.
                    return;
                }
                self.output
                    .extend_from_slice(&response::continuation("Ready for literal data."));
            }
            Frame::Hopeless => {
                self.say_bye("Command line too long.");
            }
            Frame::TooBig { tag, .. } => {
                let t = tag.as_deref();
                let msg = status(
                    t,
                    StatusKind::No,
                    Some(other_code("TOOBIG")),
                    "Literal too big.",
                );
                self.output.extend_from_slice(&msg);
                self.count_error();
            }
            Frame::Command(bytes) => self.command(&bytes),
            Frame::AppendStart { head, len, sync } => self.append_start(&head, len, sync),
            Frame::AppendData(chunk) => {
                if let State::Appending { kept: true, .. } = self.state {
                    self.events.push_back(Event::AppendData(chunk));
                }
            }
            Frame::AppendEnd { rest } => self.append_end(&rest),
        }
    }

    /// One complete command.
    fn command(&mut self, bytes: &[u8]) {
        match self.state.clone() {
            State::Sasl { tag } => return self.sasl_response(&tag, bytes),
            State::Idling { tag, .. } => {
                let line = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
                if line.eq_ignore_ascii_case(b"DONE") {
                    self.answering = Some(tag.clone());
                    self.events.push_back(Event::IdleDone { tag });
                } else {
                    // RFC 2177 §3: anything but DONE is a protocol error.
                    let out = bad(Some(&tag), "Expected DONE.");
                    self.output.extend_from_slice(&out);
                    self.state = self.idle_prior();
                    self.count_error();
                }
                return;
            }
            _ => {}
        }
        if let Some(tag) = starttls(bytes) {
            return self.starttls(&tag);
        }
        let decoded = CommandCodec::default().decode(bytes);
        let cmd = match decoded {
            Ok(([], cmd)) => cmd.into_static(),
            Ok(_) | Err(CommandDecodeError::Failed) | Err(CommandDecodeError::Incomplete) => {
                return self.parse_error(bytes)
            }
            Err(CommandDecodeError::LiteralFound { .. }) => return self.parse_error(bytes),
        };
        self.run(cmd);
    }

    fn parse_error(&mut self, bytes: &[u8]) {
        let tag = super::framer::tag_of(bytes);
        let known = bytes
            .splitn(3, |&b| b == b' ')
            .nth(1)
            .map(|w| {
                let w = w.strip_suffix(b"\r\n").unwrap_or(w);
                KNOWN.iter().any(|k| w.eq_ignore_ascii_case(k.as_bytes()))
            })
            .unwrap_or(false);
        let text = if tag.is_none() {
            "Invalid tag."
        } else if known {
            "Invalid arguments."
        } else {
            "Unknown command."
        };
        let out = bad(tag.as_deref(), text);
        self.output.extend_from_slice(&out);
        self.count_error();
    }

    /// A BAD: counted; too many and the session says BYE.
    fn count_error(&mut self) {
        self.errors += 1;
        if self.errors >= self.policy.max_errors {
            self.say_bye("Too many invalid commands.");
        }
    }

    fn reply_bad(&mut self, tag: &str, text: &str) {
        let out = bad(Some(tag), text);
        self.output.extend_from_slice(&out);
        self.count_error();
    }

    fn run(&mut self, cmd: Command<'static>) {
        let tag = cmd.tag.as_ref().to_string();
        let authenticated = matches!(self.state, State::Authenticated | State::Selected { .. });
        let selected = match self.state {
            State::Selected { read_only } => Some(read_only),
            _ => None,
        };
        match cmd.body {
            CommandBody::Capability => {
                let caps = self.capabilities().join(" ");
                self.output
                    .extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes());
                self.output
                    .extend_from_slice(&ok(&tag, "CAPABILITY completed."));
            }
            CommandBody::Noop if selected.is_none() => {
                self.output.extend_from_slice(&ok(&tag, "NOOP completed."));
            }
            CommandBody::Logout => {
                self.output
                    .extend_from_slice(&response::bye("Logging out."));
                self.output
                    .extend_from_slice(&ok(&tag, "LOGOUT completed."));
                self.events.push_back(Event::Close);
            }
            CommandBody::Id { parameters } => self.id(&tag, parameters),
            CommandBody::Login { username, password } => {
                if self.state != State::NotAuthenticated {
                    return self.reply_bad(&tag, "Already logged in.");
                }
                if !self.login_allowed() {
                    return self.privacy_required(&tag);
                }
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = password.declassify().as_ref().to_vec();
                self.authenticate(tag, Login { user, password });
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => {
                if self.state != State::NotAuthenticated {
                    return self.reply_bad(&tag, "Already logged in.");
                }
                if mechanism != AuthMechanism::Plain {
                    let out = no(&tag, "Unsupported authentication mechanism.");
                    return self.output.extend_from_slice(&out);
                }
                if !self.login_allowed() {
                    return self.privacy_required(&tag);
                }
                match initial_response {
                    // RFC 4959 §3: an initial response; "=" is an empty one.
                    Some(ir) => self.plain(&tag, ir.declassify().as_ref()),
                    None => {
                        self.output
                            .extend_from_slice(&response::sasl_continuation());
                        self.state = State::Sasl { tag };
                    }
                }
            }
            CommandBody::Enable { .. } => {
                // RFC 5161 §3.1: only in the authenticated state. No extension of ours is
                // enabled by it (CONDSTORE, UTF8=ACCEPT are part 2): `* ENABLED` is empty.
                if self.state != State::Authenticated {
                    return self.reply_bad(&tag, "ENABLE is only valid in authenticated state.");
                }
                self.output
                    .extend_from_slice(&response::data(Data::Enabled {
                        capabilities: Vec::new(),
                    }));
                self.output
                    .extend_from_slice(&ok(&tag, "ENABLE completed."));
            }
            CommandBody::Namespace => {
                if !authenticated {
                    return self.reply_bad(&tag, "Log in first.");
                }
                self.output.extend_from_slice(&namespace());
                self.output
                    .extend_from_slice(&ok(&tag, "NAMESPACE completed."));
            }
            CommandBody::Idle => {
                if !authenticated {
                    return self.reply_bad(&tag, "Log in first.");
                }
                self.output
                    .extend_from_slice(&response::continuation("idling"));
                self.state = State::Idling {
                    tag: tag.clone(),
                    selected,
                };
                self.events.push_back(Event::Idle { tag });
            }
            body => {
                let needs_selected = matches!(
                    body,
                    CommandBody::Check
                        | CommandBody::Close
                        | CommandBody::Unselect
                        | CommandBody::Expunge
                        | CommandBody::ExpungeUid { .. }
                        | CommandBody::Search { .. }
                        | CommandBody::Fetch { .. }
                        | CommandBody::Store { .. }
                        | CommandBody::Copy { .. }
                        | CommandBody::Move { .. }
                        | CommandBody::Noop
                );
                let mailbox_command = needs_selected
                    || matches!(
                        body,
                        CommandBody::Select { .. } | CommandBody::Examine { .. }
                    )
                    || is_folder_command(&body);
                if !mailbox_command {
                    return self.reply_bad(&tag, "Unknown command.");
                }
                if !authenticated {
                    return self.reply_bad(&tag, "Log in first.");
                }
                if needs_selected && selected.is_none() {
                    return self.reply_bad(&tag, "No mailbox selected.");
                }
                self.answering = Some(tag.clone());
                self.events.push_back(Event::Command {
                    tag,
                    body,
                    read_only: selected.unwrap_or(false),
                });
            }
        }
    }

    /// STARTTLS (RFC 3501 §6.2.1): only before login, only where TLS is available and not
    /// active yet.
    fn starttls(&mut self, tag: &str) {
        if self.state != State::NotAuthenticated {
            return self.reply_bad(tag, "STARTTLS is only valid before login.");
        }
        if self.policy.tls_active || !self.policy.tls_available {
            return self.reply_bad(tag, "TLS is not available here.");
        }
        self.output
            .extend_from_slice(&ok(tag, "Begin TLS negotiation now."));
        self.events.push_back(Event::StartTls);
    }

    fn privacy_required(&mut self, tag: &str) {
        // RFC 3501 §6.2.3 (LOGINDISABLED), RFC 5530 PRIVACYREQUIRED.
        let out = status(
            Some(tag),
            StatusKind::No,
            Some(other_code("PRIVACYREQUIRED")),
            "Plaintext authentication is disallowed before TLS (use STARTTLS).",
        );
        self.output.extend_from_slice(&out);
    }

    fn authenticate(&mut self, tag: String, login: Login) {
        self.answering = Some(tag);
        self.events.push_back(Event::Authenticate(login));
    }

    /// A SASL PLAIN message (RFC 4616 §2), decoded by the shared decoder.
    fn plain(&mut self, tag: &str, message: &[u8]) {
        self.state = State::NotAuthenticated;
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(message);
        let creds = crate::auth::sasl::sasl_plain_decode(b64.as_bytes()).ok();
        let login = creds.and_then(|c| {
            let user = c.login_name().ok()?.to_string();
            Some(Login {
                user,
                password: c.password.into_bytes(),
            })
        });
        match login {
            Some(login) => self.authenticate(tag.to_string(), login),
            None => {
                let out = bad(Some(tag), "Invalid SASL PLAIN message.");
                self.output.extend_from_slice(&out);
                self.count_error();
            }
        }
    }

    /// The client's answer to AUTHENTICATE's `+` (RFC 3501 §6.2.2): base64, or `*` to cancel.
    fn sasl_response(&mut self, tag: &str, bytes: &[u8]) {
        self.state = State::NotAuthenticated;
        match AuthenticateDataCodec::default().decode(bytes) {
            Ok((_, AuthenticateData::Continue(data))) => {
                let data = data.declassify().to_vec();
                self.plain(tag, &data)
            }
            Ok((_, AuthenticateData::Cancel)) => {
                let out = bad(Some(tag), "Authentication cancelled.");
                self.output.extend_from_slice(&out);
            }
            Err(AuthenticateDataDecodeError::Incomplete | AuthenticateDataDecodeError::Failed) => {
                let out = bad(Some(tag), "Invalid base64 in SASL response.");
                self.output.extend_from_slice(&out);
                self.count_error();
            }
        }
    }

    fn id(&mut self, tag: &str, parameters: Option<Vec<(IString<'static>, NString<'static>)>>) {
        let params = parameters.unwrap_or_default();
        let too_much = params.len() > MAX_ID_PAIRS
            || params.iter().any(|(k, v)| {
                k.as_ref().len() > MAX_ID_FIELD
                    || v.0
                        .as_ref()
                        .is_some_and(|v| v.as_ref().len() > MAX_ID_VALUE)
            });
        if too_much {
            return self.reply_bad(tag, "Too many or too long ID parameters (RFC 2971 3.3).");
        }
        let ours = vec![
            (
                IString::try_from("name").ok(),
                NString::try_from(IMPLEMENTATION).ok(),
            ),
            (
                IString::try_from("vendor").ok(),
                NString::try_from("mailkit").ok(),
            ),
            (
                IString::try_from("version").ok(),
                NString::try_from(env!("CARGO_PKG_VERSION")).ok(),
            ),
        ];
        let parameters = ours
            .into_iter()
            .filter_map(|(k, v)| Some((k?, v?)))
            .collect();
        self.output.extend_from_slice(&response::data(Data::Id {
            parameters: Some(parameters),
        }));
        self.output.extend_from_slice(&ok(tag, "ID completed."));
    }

    fn append_start(&mut self, head: &[u8], len: u64, sync: bool) {
        let tag = super::framer::tag_of(head).unwrap_or_default();
        let mut probe = head.to_vec();
        // The head ends with the `{n}` line: parse it with an empty literal instead.
        if let Some(line_start) = probe[..probe.len().saturating_sub(2)]
            .iter()
            .rposition(|&b| b == b'{')
        {
            probe.truncate(line_start);
            probe.extend_from_slice(b"{0}\r\n\r\n");
        }
        let parsed = match CommandCodec::default().decode(&probe) {
            Ok((_, cmd)) => match cmd.body.into_static() {
                CommandBody::Append {
                    mailbox,
                    flags,
                    date,
                    ..
                } => Some((mailbox, flags, date)),
                _ => None,
            },
            Err(_) => None,
        };
        let refuse = |s: &mut Session, out: Vec<u8>, bye: bool| {
            s.output.extend_from_slice(&out);
            if sync {
                s.framer.refuse_append();
            } else if len > MAX_DISCARD_LITERAL || bye {
                s.say_bye("Literal too big.");
            } else {
                s.framer.discard_append();
                s.state = State::Appending {
                    tag: String::new(),
                    kept: false,
                    prior: Box::new(s.state.clone()),
                };
            }
        };
        let Some((mailbox, flags, date)) = parsed else {
            let out = bad(Some(&tag), "Invalid arguments.");
            self.count_error();
            return refuse(self, out, false);
        };
        if !matches!(self.state, State::Authenticated | State::Selected { .. }) {
            let out = bad(Some(&tag), "Log in first.");
            self.count_error();
            return refuse(self, out, false);
        }
        if len > self.policy.limits.max_append {
            let out = status(
                Some(&tag),
                StatusKind::No,
                Some(other_code("TOOBIG")),
                "Message too big.",
            );
            return refuse(self, out, false);
        }
        self.answering = Some(tag.clone());
        self.events.push_back(Event::AppendBegin {
            tag,
            mailbox,
            flags,
            date,
            len,
        });
        self.pending_append = Some(sync);
    }

    /// The driver has a file for the APPEND message: the data is read now.
    pub fn append_ready(&mut self) {
        let Some(sync) = self.pending_append.take() else {
            return;
        };
        self.waiting = false;
        let tag = self.answering.take().unwrap_or_default();
        if sync {
            self.output
                .extend_from_slice(&response::continuation("Ready for literal data."));
        }
        self.framer.accept_append();
        self.state = State::Appending {
            tag,
            kept: true,
            prior: Box::new(self.state.clone()),
        };
    }

    /// The driver refuses the APPEND before its data (`NO [TRYCREATE]` for a missing mailbox,
    /// RFC 3501 §6.3.11): `response` is the tagged reply.
    pub fn append_refused(&mut self, response: &[u8]) {
        let Some(sync) = self.pending_append.take() else {
            return;
        };
        self.waiting = false;
        self.answering = None;
        self.output.extend_from_slice(response);
        if sync {
            self.framer.refuse_append();
        } else {
            self.framer.discard_append();
            self.state = State::Appending {
                tag: String::new(),
                kept: false,
                prior: Box::new(self.state.clone()),
            };
        }
    }

    fn append_end(&mut self, rest: &[u8]) {
        let State::Appending { tag, kept, prior } = self.state.clone() else {
            return;
        };
        self.state = *prior;
        if !kept {
            return;
        }
        if rest != b"\r\n" {
            self.events.push_back(Event::AppendAbort);
            let out = bad(Some(&tag), "Only one message per APPEND (no MULTIAPPEND).");
            self.output.extend_from_slice(&out);
            self.count_error();
            return;
        }
        self.answering = Some(tag.clone());
        self.events.push_back(Event::AppendFinish { tag });
    }

    /// The login was right: `OK [CAPABILITY ...]`, authenticated state (RFC 3501 §6.2.3).
    pub fn login_done(&mut self, user: &str) {
        self.waiting = false;
        let tag = self.answering.take().unwrap_or_default();
        self.user = Some(user.to_string());
        self.state = State::Authenticated;
        self.progress += 1;
        let caps = self.capabilities().join(" ");
        self.output
            .extend_from_slice(format!("{tag} OK [CAPABILITY {caps}] Logged in.\r\n").as_bytes());
    }

    /// The login failed: `NO [AUTHENTICATIONFAILED]` or `NO [UNAVAILABLE]` (RFC 5530); after
    /// [`Policy::max_auth_failures`] the session says BYE.
    pub fn login_failed(&mut self, why: LoginFailure) {
        self.waiting = false;
        let tag = self.answering.take().unwrap_or_default();
        let (code, text) = match why {
            LoginFailure::BadCredentials => ("AUTHENTICATIONFAILED", "Authentication failed."),
            LoginFailure::Temporary => ("UNAVAILABLE", "Temporary failure, try again later."),
        };
        let out = status(Some(&tag), StatusKind::No, Some(other_code(code)), text);
        self.output.extend_from_slice(&out);
        self.auth_failures += 1;
        if self.auth_failures >= self.policy.max_auth_failures {
            self.say_bye("Too many failed logins.");
        }
    }

    /// TLS is up: new capabilities, input before the handshake forgotten (RFC 3501 §6.2.1).
    pub fn tls_started(&mut self) {
        self.waiting = false;
        self.policy.tls_active = true;
        self.framer.clear();
    }

    /// The driver's answer to [`Event::Command`], [`Event::AppendFinish`] or
    /// [`Event::IdleDone`]: its responses (untagged ones and the tagged one; for IDLE the
    /// session adds the tagged OK) and the state it leaves.
    pub fn command_done(&mut self, responses: &[u8], after: After) {
        self.waiting = false;
        let tag = self.answering.take().unwrap_or_default();
        self.output.extend_from_slice(responses);
        if let State::Idling { .. } = self.state {
            self.state = self.idle_prior();
            self.output.extend_from_slice(&ok(&tag, "IDLE terminated."));
        }
        self.progress += 1;
        match after {
            After::Same => {}
            After::Selected { read_only } => self.state = State::Selected { read_only },
            After::Authenticated => self.state = State::Authenticated,
        }
    }

    fn idle_prior(&self) -> State {
        match self.state {
            State::Idling {
                selected: Some(read_only),
                ..
            } => State::Selected { read_only },
            _ => State::Authenticated,
        }
    }
}

/// The tag of a `tag STARTTLS` command. The codec is built without its `starttls` feature
/// (the project pins its features), so this one command is recognised here.
fn starttls(bytes: &[u8]) -> Option<String> {
    let line = bytes.strip_suffix(b"\r\n")?;
    let (tag, verb) = line.split_at(line.iter().position(|&b| b == b' ')?);
    if !verb[1..].eq_ignore_ascii_case(b"STARTTLS") {
        return None;
    }
    super::framer::tag_of(tag)
}

/// `* NAMESPACE (("" ".")) NIL NIL` (RFC 2342 §5): one personal namespace, Maildir++'s.
fn namespace() -> Vec<u8> {
    let personal = IString::try_from("").map(|prefix| Namespace {
        prefix,
        delimiter: QuotedChar::try_from(DELIMITER).ok(),
        extensions: Vec::new(),
    });
    response::data(Data::Namespace {
        personal: personal.into_iter().collect(),
        other: Vec::new(),
        shared: Vec::new(),
    })
}

/// Whether `body` is a folder command of the authenticated state (RFC 3501 §6.3.3-§6.3.10:
/// CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS), which work on the
/// folder tree rather than the selected mailbox.
pub fn is_folder_command(body: &CommandBody<'_>) -> bool {
    matches!(
        body,
        CommandBody::Create { .. }
            | CommandBody::Delete { .. }
            | CommandBody::Rename { .. }
            | CommandBody::Subscribe { .. }
            | CommandBody::Unsubscribe { .. }
            | CommandBody::List { .. }
            | CommandBody::Lsub { .. }
            | CommandBody::Status { .. }
    )
}

/// Command names, for telling an unknown command from known one with bad arguments.
const KNOWN: &[&str] = &[
    "CAPABILITY",
    "NOOP",
    "LOGOUT",
    "STARTTLS",
    "AUTHENTICATE",
    "LOGIN",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "STATUS",
    "APPEND",
    "CHECK",
    "CLOSE",
    "EXPUNGE",
    "SEARCH",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "UID",
    "IDLE",
    "UNSELECT",
    "NAMESPACE",
    "ID",
    "ENABLE",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn session(policy: Policy) -> Session {
        let mut s = Session::new(policy);
        s.greeting();
        s
    }

    fn plain() -> Policy {
        Policy {
            plaintext_allowed: true,
            tls_available: true,
            ..Policy::default()
        }
    }

    /// Feeds `input`, polls until input is needed or an event comes; returns the output.
    fn say(s: &mut Session, input: &[u8]) -> (String, Event) {
        s.feed(input);
        let ev = s.poll();
        (String::from_utf8_lossy(&s.take_output()).into_owned(), ev)
    }

    fn logged_in() -> Session {
        let mut s = session(plain());
        s.take_output();
        let (_, ev) = say(&mut s, b"a LOGIN demo secret\r\n");
        assert_eq!(
            ev,
            Event::Authenticate(Login {
                user: "demo".into(),
                password: b"secret".to_vec()
            })
        );
        s.login_done("demo");
        assert_eq!(s.poll(), Event::NeedInput);
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(out.starts_with("a OK [CAPABILITY IMAP4rev1 "), "{out}");
        s
    }

    #[test]
    fn authenticated_session_answers_the_login_and_runs_commands() {
        let mut s = Session::authenticated(plain(), "sys", "a1");
        assert_eq!(s.user(), Some("sys"));
        assert_eq!(s.poll(), Event::NeedInput);
        let out = String::from_utf8(s.take_output()).unwrap();
        assert!(out.starts_with("a1 OK [CAPABILITY IMAP4rev1 "), "{out}");
        assert!(
            out.ends_with("] Logged in.\r\n") && out.contains(" NAMESPACE "),
            "{out}"
        );
        assert_eq!(out.matches("\r\n").count(), 1, "no greeting: {out}");
        let (out, _) = say(&mut s, b"b LOGIN x y\r\n");
        assert!(out.starts_with("b BAD Already"), "{out}");
        let (_, ev) = say(&mut s, b"c SELECT INBOX\r\n");
        assert!(matches!(ev, Event::Command { ref tag, .. } if tag == "c"));
    }

    #[test]
    fn input_pipelined_after_a_login_is_left_unframed() {
        let mut s = session(plain());
        s.take_output();
        let (_, ev) = say(&mut s, b"a LOGIN sys pw\r\nb NOOP\r\nc SEL");
        assert!(matches!(ev, Event::Authenticate(_)));
        assert_eq!(s.answering(), Some("a"));
        assert_eq!(s.take_unframed(), b"b NOOP\r\nc SEL");
        assert!(s.take_unframed().is_empty());
    }

    #[test]
    fn greeting_capability_noop_logout() {
        let mut s = Session::new(plain());
        s.greeting();
        let g = String::from_utf8(s.take_output()).unwrap();
        assert!(g.starts_with("* OK [CAPABILITY IMAP4rev1 "), "{g}");
        assert!(g.contains(" STARTTLS ") && g.contains("AUTH=PLAIN"), "{g}");
        let (out, ev) = say(&mut s, b"1 CAPABILITY\r\n2 noop\r\n");
        assert_eq!(ev, Event::NeedInput);
        assert!(out.starts_with("* CAPABILITY IMAP4rev1 "), "{out}");
        assert!(out.ends_with("1 OK CAPABILITY completed.\r\n2 OK NOOP completed.\r\n"));
        let (out, ev) = say(&mut s, b"3 LOGOUT\r\n");
        assert_eq!(ev, Event::Close);
        assert_eq!(out, "* BYE Logging out.\r\n3 OK LOGOUT completed.\r\n");
    }

    #[test]
    fn logins_refused_before_tls_with_logindisabled() {
        let mut s = session(Policy {
            tls_available: true,
            ..Policy::default()
        });
        let g = String::from_utf8(s.take_output()).unwrap();
        assert!(
            g.contains("LOGINDISABLED") && !g.contains("AUTH=PLAIN"),
            "{g}"
        );
        let (out, _) = say(&mut s, b"a LOGIN demo pw\r\nb AUTHENTICATE PLAIN\r\n");
        assert!(out.starts_with("a NO [PRIVACYREQUIRED] "), "{out}");
        assert!(out.contains("\r\nb NO [PRIVACYREQUIRED] "), "{out}");
        let (out, ev) = say(&mut s, b"c STARTTLS\r\nd NOOP\r\n");
        assert_eq!(out, "c OK Begin TLS negotiation now.\r\n");
        assert_eq!(ev, Event::StartTls);
        s.tls_started();
        // What was pipelined after STARTTLS is dropped (RFC 3501 §6.2.1).
        let (out, ev) = say(&mut s, b"e CAPABILITY\r\n");
        assert_eq!(ev, Event::NeedInput);
        assert!(!out.contains("d OK") && out.contains("AUTH=PLAIN"), "{out}");
        assert!(
            !out.contains("STARTTLS") && !out.contains("LOGINDISABLED"),
            "{out}"
        );
        let (out, _) = say(&mut s, b"f STARTTLS\r\n");
        assert!(out.starts_with("f BAD"), "{out}");
    }

    #[test]
    fn authenticate_plain_with_and_without_initial_response() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"\0demo@localhost\0pw");
        let mut s = session(plain());
        s.take_output();
        let (_, ev) = say(&mut s, format!("a AUTHENTICATE PLAIN {b64}\r\n").as_bytes());
        assert_eq!(
            ev,
            Event::Authenticate(Login {
                user: "demo@localhost".into(),
                password: b"pw".to_vec()
            })
        );
        s.login_failed(LoginFailure::BadCredentials);
        assert_eq!(s.poll(), Event::NeedInput);
        assert_eq!(
            String::from_utf8(s.take_output()).unwrap(),
            "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        );
        let (out, ev) = say(&mut s, b"b AUTHENTICATE PLAIN\r\n");
        assert_eq!((out.as_str(), ev), ("+ \r\n", Event::NeedInput));
        let (_, ev) = say(&mut s, format!("{b64}\r\n").as_bytes());
        assert!(matches!(ev, Event::Authenticate(_)));
        s.login_failed(LoginFailure::Temporary);
        s.poll();
        s.take_output();
        let (out, _) = say(&mut s, b"c AUTHENTICATE PLAIN\r\n*\r\n");
        assert_eq!(out, "+ \r\nc BAD Authentication cancelled.\r\n");
        let (out, _) = say(&mut s, b"d AUTHENTICATE CRAM-MD5\r\n");
        assert!(out.starts_with("d NO "), "{out}");
        // The third failure says BYE.
        let (_, ev) = say(&mut s, b"e LOGIN a b\r\n");
        assert!(matches!(ev, Event::Authenticate(_)));
        s.login_failed(LoginFailure::BadCredentials);
        assert_eq!(s.poll(), Event::Close);
        assert!(String::from_utf8(s.take_output())
            .unwrap()
            .contains("* BYE "));
    }

    #[test]
    fn wrong_state_and_unknown_commands_are_bad() {
        let mut s = session(plain());
        s.take_output();
        let (out, _) = say(
            &mut s,
            b"a SELECT INBOX\r\nb FETCH 1 FLAGS\r\nc XYZZY\r\nd NAMESPACE\r\n* NOOP\r\ne LOGIN\r\n",
        );
        assert_eq!(
            out,
            "a BAD Log in first.\r\nb BAD Log in first.\r\nc BAD Unknown command.\r\n\
             d BAD Log in first.\r\n* BAD Invalid tag.\r\ne BAD Invalid arguments.\r\n"
        );
        let mut s = logged_in();
        let (out, _) = say(
            &mut s,
            b"f FETCH 1 FLAGS\r\ng LOGIN a b\r\nh ENABLE CONDSTORE\r\n",
        );
        assert!(
            out.starts_with("f BAD No mailbox selected.\r\ng BAD Already"),
            "{out}"
        );
        assert!(
            out.ends_with("* ENABLED\r\nh OK ENABLE completed.\r\n"),
            "{out}"
        );
        let (out, _) = say(&mut s, b"i NAMESPACE\r\n");
        assert_eq!(
            out,
            "* NAMESPACE ((\"\" \".\")) NIL NIL\r\ni OK NAMESPACE completed.\r\n"
        );
    }

    #[test]
    fn too_many_errors_say_bye() {
        let mut s = session(plain());
        for _ in 0..DEFAULT_MAX_ERRORS - 1 {
            s.feed(b"x BOGUS\r\n");
        }
        assert_eq!(s.poll(), Event::NeedInput);
        let (out, ev) = say(&mut s, b"x BOGUS\r\n");
        assert_eq!(ev, Event::Close);
        assert!(
            out.ends_with("* BYE Too many invalid commands.\r\n"),
            "{out}"
        );
    }

    #[test]
    fn id_answers_and_limits_its_parameters() {
        let mut s = session(plain());
        s.take_output();
        let (out, _) = say(&mut s, b"a ID (\"name\" \"imaplib\")\r\nb ID NIL\r\n");
        assert!(
            out.starts_with("* ID (\"name\" \"mailkit-mimapd\""),
            "{out}"
        );
        assert!(out.contains("a OK ID completed.\r\n") && out.ends_with("b OK ID completed.\r\n"));
        let many: String = (0..31).map(|i| format!("\"k{i}\" \"v\" ")).collect();
        let (out, _) = say(&mut s, format!("c ID ({})\r\n", many.trim_end()).as_bytes());
        assert!(out.starts_with("c BAD "), "{out}");
    }

    #[test]
    fn literals_continuation_and_oversize_refusal() {
        let mut s = session(Policy {
            limits: Limits {
                max_command: 2048,
                max_append: 100,
            },
            ..plain()
        });
        s.take_output();
        let (out, ev) = say(&mut s, b"a LOGIN {4}\r\n");
        assert_eq!(
            (out.as_str(), &ev),
            ("+ Ready for literal data.\r\n", &Event::NeedInput)
        );
        let (_, ev) = say(&mut s, b"demo {2+}\r\npw\r\n");
        assert_eq!(
            ev,
            Event::Authenticate(Login {
                user: "demo".into(),
                password: b"pw".to_vec()
            })
        );
        s.login_failed(LoginFailure::BadCredentials);
        s.poll();
        s.take_output();
        let (out, _) = say(&mut s, b"b LOGIN {5000}\r\nc NOOP\r\n");
        assert_eq!(
            out,
            "b NO [TOOBIG] Literal too big.\r\nc OK NOOP completed.\r\n"
        );
        let mut big = b"d LOGIN {3000+}\r\n".to_vec();
        big.extend_from_slice(&[b'x'; 3000]);
        big.extend_from_slice(b" x\r\ne NOOP\r\n");
        let (out, _) = say(&mut s, &big);
        assert_eq!(
            out,
            "d NO [TOOBIG] Literal too big.\r\ne OK NOOP completed.\r\n"
        );
        let (out, ev) = say(&mut s, &[b'y'; 4000]);
        assert_eq!(ev, Event::Close);
        assert_eq!(out, "* BYE Command line too long.\r\n");
    }

    #[test]
    fn append_is_streamed_and_refusals_keep_framing() {
        let mut s = logged_in();
        let (_, ev) = say(&mut s, b"a APPEND Drafts (\\Seen) {11}\r\n");
        let Event::AppendBegin {
            tag,
            mailbox,
            flags,
            len,
            ..
        } = ev
        else {
            panic!("{ev:?}")
        };
        assert_eq!((tag.as_str(), len, flags.len()), ("a", 11, 1));
        assert_eq!(mailbox, Mailbox::try_from("Drafts").unwrap());
        s.append_ready();
        let (out, ev) = say(&mut s, b"hello");
        assert_eq!(out, "+ Ready for literal data.\r\n");
        assert_eq!(ev, Event::AppendData(b"hello".to_vec()));
        let (_, ev) = say(&mut s, b" world\r\n");
        assert_eq!(ev, Event::AppendData(b" world".to_vec()));
        assert_eq!(s.poll(), Event::AppendFinish { tag: "a".into() });
        s.command_done(b"a OK [APPENDUID 1 1] APPEND completed.\r\n", After::Same);
        assert_eq!(s.poll(), Event::NeedInput);
        // Refused by the driver: synchronising data is never sent, LITERAL+ data is dropped.
        let (_, ev) = say(&mut s, b"b APPEND nosuch {3}\r\n");
        assert!(matches!(ev, Event::AppendBegin { .. }));
        s.append_refused(b"b NO [TRYCREATE] No such mailbox.\r\n");
        let (out, _) = say(&mut s, b"c NOOP\r\n");
        assert!(out.starts_with("b NO [TRYCREATE]"), "{out}");
        let (_, ev) = say(&mut s, b"d APPEND nosuch {3+}\r\nabc\r\n");
        assert!(matches!(ev, Event::AppendBegin { .. }));
        s.append_refused(b"d NO [TRYCREATE] No such mailbox.\r\n");
        let (_, ev) = say(&mut s, b"e LOGOUT\r\n");
        assert_eq!(ev, Event::Close);
        // Over the APPEND limit: refused before the data.
        let mut s = logged_in();
        let (out, ev) = say(&mut s, b"f APPEND INBOX {999999999}\r\ng NOOP\r\n");
        assert_eq!(ev, Event::NeedInput);
        assert!(out.starts_with("f NO [TOOBIG]"), "{out}");
        assert!(out.ends_with("g OK NOOP completed.\r\n"), "{out}");
    }

    #[test]
    fn idle_until_done() {
        let mut s = logged_in();
        let (out, ev) = say(&mut s, b"i IDLE\r\n");
        assert_eq!(
            (out.as_str(), &ev),
            ("+ idling\r\n", &Event::Idle { tag: "i".into() })
        );
        assert!(s.idling());
        s.push_output(b"* 3 EXISTS\r\n");
        let (out, ev) = say(&mut s, b"done\r\n");
        assert_eq!(out, "* 3 EXISTS\r\n");
        assert_eq!(ev, Event::IdleDone { tag: "i".into() });
        s.command_done(b"", After::Same);
        assert_eq!(s.poll(), Event::NeedInput);
        assert_eq!(s.take_output(), b"i OK IDLE terminated.\r\n");
        assert!(!s.idling());
    }

    #[test]
    fn mailbox_commands_go_to_the_driver_with_state() {
        let mut s = logged_in();
        let (_, ev) = say(&mut s, b"s SELECT INBOX\r\n");
        assert!(matches!(ev, Event::Command { ref tag, read_only: false, .. } if tag == "s"));
        s.command_done(
            b"s OK [READ-WRITE] SELECT completed.\r\n",
            After::Selected { read_only: false },
        );
        assert_eq!(s.poll(), Event::NeedInput);
        assert!(s.selected());
        let (_, ev) = say(&mut s, b"f UID FETCH 1:* (FLAGS)\r\n");
        assert!(matches!(
            ev,
            Event::Command {
                body: CommandBody::Fetch { uid: true, .. },
                ..
            }
        ));
        s.command_done(b"f OK\r\n", After::Same);
        let (_, ev) = say(&mut s, b"n NOOP\r\n");
        assert!(matches!(
            ev,
            Event::Command {
                body: CommandBody::Noop,
                ..
            }
        ));
    }

    #[test]
    fn adversarial_input_never_panics() {
        let inputs: Vec<&[u8]> = vec![
            b"\r\n",
            b" \r\n",
            b"a\r\n",
            b"a SEARCH ((((((((((((((((((((((ALL))))))))))))))))))))))\r\n",
            b"a FETCH 1:*,0 BODY[1.2.3.4.5.6.7.8.9]\r\n",
            b"\xff\xfe LOGIN\r\n",
            b"a APPEND {0}\r\n\r\n",
            b"a LOGIN {0}\r\n {0}\r\n\r\n",
            b"}{+}{4294967296}\r\n",
        ];
        for policy in [plain(), Policy::default()] {
            let mut s = session(policy);
            for i in &inputs {
                s.feed(i);
                for _ in 0..20 {
                    match s.poll() {
                        Event::NeedInput | Event::Close => break,
                        Event::Authenticate(_) => s.login_done("x"),
                        Event::Command { .. } => s.command_done(b"", After::Same),
                        Event::AppendBegin { .. } => s.append_ready(),
                        Event::AppendFinish { .. } | Event::IdleDone { .. } => {
                            s.command_done(b"", After::Same)
                        }
                        Event::StartTls => s.tls_started(),
                        _ => {}
                    }
                }
            }
        }
    }
}
