//! The async driver of the sans-IO SMTP [`Client`]: runs it over a [`Stream`] of the one
//! client transport ([`super::client`]: implicit TLS, STARTTLS, reads against a deadline, writes
//! bounded per chunk), with a time limit on every reply and an optional transcript.

use std::fmt;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::client::{Stream, TlsError, TlsTarget};
use crate::smtp::client::{Action, Client, Envelope, Error, Outcome, Settings, Stage};
use crate::smtp::reply::{Reply, ReplyError, ReplyParser};

/// Read buffer size for server replies.
const READ_CHUNK: usize = 8192;

/// Time limits (RFC 5321 §4.5.3.2 gives 5 minutes per command and 10 minutes for the end of
/// data as minimums for MTAs; interactive tools pass something shorter).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Each command's reply, the TLS handshake, and each [`WRITE_CHUNK`](super::client::WRITE_CHUNK)
    /// of a write (RFC 5321 §4.5.3.2.5: a limit per chunk sent, not for the whole body).
    pub command: Duration,
    /// The reply after the message body.
    pub data_end: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(30),
            command: Duration::from_secs(300),
            data_end: Duration::from_secs(600),
        }
    }
}

impl Timeouts {
    /// The same limit for everything (`--timeout`).
    pub fn uniform(d: Duration) -> Timeouts {
        Timeouts {
            connect: d,
            command: d,
            data_end: d,
        }
    }
}

/// Why a session could not go on.
#[derive(Debug)]
pub enum DriverError {
    /// Reading or writing failed.
    Io {
        /// Stage in progress.
        stage: Stage,
        /// The I/O error.
        source: io::Error,
    },
    /// No reply (or write progress) within the time limit.
    Timeout(Stage),
    /// The server closed the connection while we waited for a reply.
    Eof(Stage),
    /// The TLS handshake failed for another reason than trust (no common version or cipher,
    /// an alert, the server closed, TLS not configured).
    Tls(String),
    /// The server's certificate is not trusted (no chain to a trusted CA, name mismatch,
    /// expired, not the pinned key).
    Trust(String),
    /// The server sent something that is not an SMTP reply.
    Reply(ReplyError),
    /// The SMTP dialogue failed (negative reply, missing extension, ...).
    Smtp(Error),
}

impl DriverError {
    /// Whether retrying later may help (sysexits 75 versus a permanent failure).
    pub fn is_temporary(&self) -> bool {
        match self {
            DriverError::Io { source, .. } => {
                crate::exit::io_is_temporary(source)
                    || source.kind() == io::ErrorKind::ConnectionRefused
            }
            DriverError::Timeout(_) | DriverError::Eof(_) | DriverError::Reply(_) => true,
            DriverError::Tls(_) | DriverError::Trust(_) => false,
            DriverError::Smtp(e) => e.is_temporary(),
        }
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriverError::Io { stage, source } => write!(f, "{stage}: {source}"),
            DriverError::Timeout(stage) => write!(f, "timed out waiting at {stage}"),
            DriverError::Eof(stage) => write!(f, "connection closed by server at {stage}"),
            DriverError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            DriverError::Trust(e) => {
                write!(f, "TLS handshake failed: certificate not trusted: {e}")
            }
            DriverError::Reply(e) => write!(f, "bad reply from server: {e}"),
            DriverError::Smtp(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DriverError {}

/// A line sink for `-v` transcripts: `-> ` for what we send, `<- ` for replies (`~>`/`<~`
/// inside TLS), like swaks.
pub type Transcript = Box<dyn FnMut(&str) + Send>;

/// What a driving step ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Session ready for a transaction.
    Ready,
    /// A transaction finished; per-recipient results inside.
    Done(Outcome),
    /// `--quit-after` reached; the session was closed with QUIT.
    Stopped(Stage),
}

/// An SMTP client connection: [`Client`] plus its stream.
pub struct Connection<S> {
    stream: Stream<S>,
    client: Client,
    parser: ReplyParser,
    timeouts: Timeouts,
    tls: Option<TlsTarget>,
    transcript: Option<Transcript>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Wraps a connected stream. `tls` is the client config and the server's name; it is
    /// needed for [`Mode::Implicit`](crate::tls::Mode) and STARTTLS.
    pub fn new(
        stream: S,
        settings: Settings,
        tls: Option<TlsTarget>,
        timeouts: Timeouts,
        transcript: Option<Transcript>,
    ) -> Connection<S> {
        Connection {
            stream: Stream::plain(stream),
            client: Client::new(settings),
            parser: ReplyParser::new(),
            timeouts,
            tls,
            transcript,
        }
    }

    /// Runs the session up to "ready for a transaction": implicit TLS handshake when configured,
    /// greeting, EHLO, STARTTLS, AUTH. Returns [`Progress::Stopped`] for an early `--quit-after`.
    pub async fn open(&mut self) -> Result<Progress, DriverError> {
        if self.client.tls_active() {
            self.upgrade().await?;
        }
        let actions = self.client.start();
        self.drive(actions).await
    }

    /// The sans-IO session (extensions, greeting, TLS and AUTH state).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The rustls connection once TLS is up (for certificate and cipher details).
    pub fn tls_connection(&self) -> Option<&rustls::ClientConnection> {
        self.stream.tls_connection()
    }

    /// Sends one message in one transaction; per-recipient results in the outcome.
    pub async fn send(&mut self, env: Envelope, message: &[u8]) -> Result<Progress, DriverError> {
        let actions = self.client.transaction(env, message);
        self.drive(actions).await
    }

    /// QUIT and close, best effort (errors ignored: the mail is already decided).
    pub async fn quit(mut self) {
        let actions = self.client.quit();
        if !actions.is_empty() {
            let _ = self.drive(actions).await;
        }
        let _ = self.shutdown().await;
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        let t = Duration::from_secs(2).min(self.timeouts.command);
        match self.stream.shutdown(t).await {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(()),
            other => other,
        }
    }

    fn log(&mut self, prefix: &str, text: &str) {
        if let Some(t) = self.transcript.as_mut() {
            for line in text.split("\r\n").filter(|l| !l.is_empty()) {
                t(&format!("{prefix}{line}"));
            }
        }
    }

    fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// The time limit for a reply at `stage`: the end of data gets its own.
    fn timeout_for(&self, stage: Stage) -> Duration {
        if stage == Stage::Body {
            self.timeouts.data_end
        } else {
            self.timeouts.command
        }
    }

    /// Writes `bytes`, each chunk within the command timeout (a long body to a slow but
    /// steady server goes through; one that stops reading fails after one limit).
    async fn write_all(&mut self, bytes: &[u8], stage: Stage) -> Result<(), DriverError> {
        match self.stream.write_all(bytes, self.timeouts.command).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Err(DriverError::Timeout(stage)),
            Err(source) => Err(DriverError::Io { stage, source }),
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, DriverError> {
        let stage = self.client.expected_stage().unwrap_or(Stage::Quit);
        let deadline = tokio::time::Instant::now() + self.timeout_for(stage);
        let mut buf = [0u8; READ_CHUNK];
        loop {
            if let Some(r) = self.parser.next_reply().map_err(DriverError::Reply)? {
                return Ok(r);
            }
            let n = match self.stream.read(&mut buf, deadline).await {
                Ok(0) => return Err(DriverError::Eof(stage)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return Err(DriverError::Timeout(stage))
                }
                Err(source) => return Err(DriverError::Io { stage, source }),
            };
            self.parser.push(&buf[..n]);
        }
    }

    /// The TLS handshake over the current plain stream.
    async fn upgrade(&mut self) -> Result<(), DriverError> {
        let Some(target) = self.tls.as_ref() else {
            return Err(DriverError::Tls("no TLS configuration given".into()));
        };
        match self.stream.start_tls(target, self.timeouts.command).await {
            Ok(()) => {
                if let Some(c) = self.tls_connection() {
                    let info = crate::tls::TlsInfo::from_state(c);
                    self.log("~~ ", &format!("TLS started: {info}"));
                }
                Ok(())
            }
            Err(TlsError::Timeout) => Err(DriverError::Timeout(Stage::Tls)),
            Err(TlsError::Trust(e)) => Err(DriverError::Trust(e)),
            Err(TlsError::Handshake(e)) => Err(DriverError::Tls(e)),
        }
    }

    /// Performs actions and feeds replies until the session reaches a resting point.
    async fn drive(&mut self, actions: Vec<Action>) -> Result<Progress, DriverError> {
        let mut pending = std::collections::VecDeque::from(actions);
        let mut stopped = None;
        loop {
            while let Some(action) = pending.pop_front() {
                match action {
                    Action::Send { bytes, shown } => {
                        let prefix = if self.is_tls() { "~> " } else { "-> " };
                        match shown {
                            Some(s) => self.log(prefix, &s),
                            None => self.log(prefix, &String::from_utf8_lossy(&bytes)),
                        }
                        let stage = self.client.expected_stage().unwrap_or(Stage::Quit);
                        self.write_all(&bytes, stage).await?;
                    }
                    Action::StartTls => {
                        // Anything the server sent after its 220 came in clear and could be an
                        // injected reply (RFC 3207 §5); refuse rather than act on it.
                        if self.parser.buffered() > 0 {
                            return Err(DriverError::Smtp(Error::Protocol(
                                "data received after the STARTTLS reply, before TLS".into(),
                            )));
                        }
                        self.upgrade().await?;
                        pending.extend(self.client.tls_established());
                    }
                    Action::Ready => return Ok(Progress::Ready),
                    Action::Done(o) => return Ok(Progress::Done(o)),
                    Action::Stopped(s) => stopped = Some(s),
                    Action::Failed(e) => {
                        // The QUIT queued before this is sent already; close quietly.
                        let _ = self.shutdown().await;
                        return Err(DriverError::Smtp(e));
                    }
                    Action::Closed => {
                        return match stopped {
                            Some(s) => Ok(Progress::Stopped(s)),
                            None => Err(DriverError::Eof(Stage::Quit)),
                        };
                    }
                }
            }
            let reply = match self.read_reply().await {
                Ok(r) => r,
                Err(e) => {
                    if let Some(s) = stopped {
                        // The QUIT reply did not come; we stopped anyway.
                        let _ = e;
                        return Ok(Progress::Stopped(s));
                    }
                    return Err(e);
                }
            };
            // Formatting the reply back to text is for the transcript only (once per reply).
            if self.transcript.is_some() {
                let prefix = if self.is_tls() { "<~ " } else { "<- " };
                let text = String::from_utf8_lossy(&reply.to_bytes()).into_owned();
                self.log(prefix, &text);
            }
            pending.extend(self.client.on_reply(reply));
        }
    }
}
