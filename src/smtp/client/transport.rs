//! The async driver of the sans-IO [`Client`](super::Client): runs it over any
//! `AsyncRead + AsyncWrite` stream (TCP in practice), with STARTTLS and implicit TLS through
//! tokio-rustls, a timeout on every read, write and handshake, and an optional transcript.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{Action, Client, Envelope, Error, Outcome, Settings, Stage};
use crate::smtp::reply::{Reply, ReplyError, ReplyParser};

/// Read buffer size for server replies.
const READ_CHUNK: usize = 8192;

/// Time limits (RFC 5321 §4.5.3.2 gives 5 minutes per command and 10 minutes for the end of
/// data as minimums for MTAs; interactive tools pass something shorter).
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// TCP connect.
    pub connect: Duration,
    /// Each command's reply, each write and the TLS handshake.
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
    /// The TLS handshake failed (certificate not trusted, name mismatch, ...).
    Tls(String),
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
            DriverError::Tls(_) => false,
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
            DriverError::Reply(e) => write!(f, "bad reply from server: {e}"),
            DriverError::Smtp(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DriverError {}

/// The transport: plain, or TLS over it after STARTTLS or for implicit TLS.
enum Stream<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
    /// Transient state during the TLS upgrade (or after a failed one).
    Gone,
}

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
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    transcript: Option<Transcript>,
}

/// Connects TCP to `addr` within `timeout`.
pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(r) => {
            let s = r?;
            // Commands are small and latency-bound; don't let Nagle hold them.
            s.set_nodelay(true)?;
            Ok(s)
        }
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {addr} timed out"),
        )),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Wraps a connected stream. `tls` is the client config and the name the certificate must
    /// match; it is needed for [`TlsMode::Implicit`](super::TlsMode) and STARTTLS.
    pub fn new(
        stream: S,
        settings: Settings,
        tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
        timeouts: Timeouts,
        transcript: Option<Transcript>,
    ) -> Connection<S> {
        Connection {
            stream: Stream::Plain(stream),
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
        match &self.stream {
            Stream::Tls(t) => Some(t.get_ref().1),
            _ => None,
        }
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
        let fut = async {
            match &mut self.stream {
                Stream::Plain(s) => s.shutdown().await,
                Stream::Tls(s) => s.shutdown().await,
                Stream::Gone => Ok(()),
            }
        };
        tokio::time::timeout(t, fut).await.unwrap_or(Ok(()))
    }

    fn log(&mut self, prefix: &str, text: &str) {
        if let Some(t) = self.transcript.as_mut() {
            for line in text.split("\r\n").filter(|l| !l.is_empty()) {
                t(&format!("{prefix}{line}"));
            }
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// The time limit for a write or a reply at `stage`: the end of data gets its own.
    fn timeout_for(&self, stage: Stage) -> Duration {
        if stage == Stage::Body {
            self.timeouts.data_end
        } else {
            self.timeouts.command
        }
    }

    async fn write_all(&mut self, bytes: &[u8], stage: Stage) -> Result<(), DriverError> {
        let timeout = self.timeout_for(stage);
        let fut = async {
            match &mut self.stream {
                Stream::Plain(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Stream::Tls(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Stream::Gone => Err(io::Error::from(io::ErrorKind::NotConnected)),
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r.map_err(|source| DriverError::Io { stage, source }),
            Err(_) => Err(DriverError::Timeout(stage)),
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
            let fut = async {
                match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut buf).await,
                    Stream::Tls(s) => s.read(&mut buf).await,
                    Stream::Gone => Err(io::Error::from(io::ErrorKind::NotConnected)),
                }
            };
            let n = match tokio::time::timeout_at(deadline, fut).await {
                Ok(Ok(0)) => return Err(DriverError::Eof(stage)),
                Ok(Ok(n)) => n,
                Ok(Err(source)) => return Err(DriverError::Io { stage, source }),
                Err(_) => return Err(DriverError::Timeout(stage)),
            };
            self.parser.push(&buf[..n]);
        }
    }

    /// The TLS handshake over the current plain stream.
    async fn upgrade(&mut self) -> Result<(), DriverError> {
        let Some((config, name)) = self.tls.clone() else {
            return Err(DriverError::Tls("no TLS configuration given".into()));
        };
        let plain = match std::mem::replace(&mut self.stream, Stream::Gone) {
            Stream::Plain(s) => s,
            other => {
                self.stream = other;
                return Err(DriverError::Tls("TLS already active".into()));
            }
        };
        let connector = TlsConnector::from(config);
        let handshake = connector.connect(name.clone(), plain);
        match tokio::time::timeout(self.timeouts.command, handshake).await {
            Ok(Ok(s)) => {
                self.stream = Stream::Tls(Box::new(s));
                if let Some(c) = self.tls_connection() {
                    let info = crate::tls::TlsInfo::from_state(c);
                    self.log("~~ ", &format!("TLS started: {info}"));
                }
                Ok(())
            }
            Ok(Err(e)) => Err(DriverError::Tls(format!("{}: {e}", name.to_str()))),
            Err(_) => Err(DriverError::Timeout(Stage::Tls)),
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
