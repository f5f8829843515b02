//! One connection of mfetch to its server, over the one client transport
//! ([`crate::net::client`]: connect with a time limit, implicit TLS or STARTTLS with the
//! certificate checks of [`crate::tls`], reads against a deadline, writes bounded per chunk),
//! with the exit codes mfetch gives its failures: network trouble and time limits 75,
//! an untrusted certificate or a failed handshake 69, and those of what the server answers
//! ([`Conn::refused`], [`Conn::login_failed`], [`Conn::hostile`], for POP3 and IMAP alike).

use std::time::Duration;

use anyhow::Result;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use super::account::Job;
use crate::exit;
use crate::net::client::{connect_host, Stream, TlsError, TlsTarget};

/// Bytes read at most per read call.
const READ_CHUNK: usize = 64 * 1024;

/// A server's negative answer (POP3 `-ERR`, IMAP tagged `NO`/`BAD`), as the exit code of a
/// refusal needs it.
pub trait Answer: std::fmt::Display {
    /// Whether it says "try later" (its response code).
    fn is_temporary(&self) -> bool;
}

impl Answer for super::pop3::Status {
    fn is_temporary(&self) -> bool {
        super::pop3::Status::is_temporary(self)
    }
}

impl Answer for super::imap::Tagged {
    fn is_temporary(&self) -> bool {
        super::imap::Tagged::is_temporary(self)
    }
}

/// A connection (module doc).
pub struct Conn {
    stream: Stream<TcpStream>,
    target: TlsTarget,
    timeout: Duration,
    buf: Vec<u8>,
    server: String,
    verbose: bool,
}

impl Conn {
    /// Connects to the job's server, TLS first when the scheme says implicit TLS (RFC 8314).
    pub async fn open(job: &Job, verbose: bool) -> Result<Conn> {
        let server = job.url.shown();
        let config = job
            .verify
            .client_config()
            .map_err(|e| exit::fail(exit::CONFIG, format!("{}: TLS setup: {e:#}", job.name)))?;
        let name = ServerName::try_from(job.url.host.clone())
            .map_err(|e| exit::fail(exit::CONFIG, format!("{}: bad server name: {e}", job.name)))?;
        let tcp = connect_host(&job.url.host, job.url.port, job.timeout)
            .await
            .map_err(|e| exit::fail(exit::TEMPFAIL, format!("connecting to {server}: {e}")))?;
        let mut c = Conn {
            stream: Stream::plain(tcp),
            target: (config, name),
            timeout: job.timeout,
            buf: vec![0; READ_CHUNK],
            server,
            verbose,
        };
        if job.tls == crate::tls::Mode::Implicit {
            c.start_tls().await?;
        }
        Ok(c)
    }

    /// Whether TLS is up.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// The TLS handshake (implicit, or after the server's STARTTLS/STLS go-ahead).
    pub async fn start_tls(&mut self) -> Result<()> {
        match self.stream.start_tls(&self.target, self.timeout).await {
            Ok(()) => {
                if self.verbose {
                    if let Some(c) = self.stream.tls_connection() {
                        crate::log::line(format!(
                            "{}: TLS started: {}",
                            self.server,
                            crate::tls::TlsInfo::from_state(c)
                        ));
                    }
                }
                Ok(())
            }
            Err(TlsError::Timeout) => Err(exit::fail(
                exit::TEMPFAIL,
                format!("{}: TLS handshake timed out", self.server),
            )),
            Err(e) => Err(exit::fail(
                exit::UNAVAILABLE,
                format!("{}: {e}", self.server),
            )),
        }
    }

    /// Sends `bytes` (each 64 KiB piece within the time limit).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes, self.timeout)
            .await
            .map_err(|e| exit::fail(exit::TEMPFAIL, format!("{}: sending: {e}", self.server)))
    }

    /// The next bytes from the server, within the time limit (a server that stalls, after
    /// STARTTLS or in the middle of a message, fails here); the end of input is an error.
    pub async fn read(&mut self) -> Result<&[u8]> {
        self.read_within(self.timeout).await
    }

    /// [`Conn::read`] with another time limit: an IMAP IDLE waits longer than a command's
    /// answer (RFC 2177 §3: up to 29 minutes).
    pub async fn read_within(&mut self, limit: Duration) -> Result<&[u8]> {
        let deadline = tokio::time::Instant::now() + limit;
        match self.stream.read(&mut self.buf, deadline).await {
            Ok(0) => Err(exit::fail(
                exit::TEMPFAIL,
                format!("{}: connection closed by the server", self.server),
            )),
            Ok(n) => Ok(&self.buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(exit::fail(
                exit::TEMPFAIL,
                format!("{}: no answer within {}s", self.server, limit.as_secs()),
            )),
            Err(e) => Err(exit::fail(
                exit::TEMPFAIL,
                format!("{}: reading: {e}", self.server),
            )),
        }
    }

    /// Closes the connection, best effort.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown(Duration::from_secs(2)).await;
    }

    /// The time limit of a connect or read.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The server as shown in messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The server broke the protocol (a hostile or broken response): 69.
    pub fn hostile(&self, e: impl std::fmt::Display) -> anyhow::Error {
        exit::fail(exit::UNAVAILABLE, format!("{}: {e}", self.server))
    }

    /// The server refused `what`: 75 when its answer says try later, else 69.
    pub fn refused(&self, what: &str, answer: &impl Answer) -> anyhow::Error {
        let code = if answer.is_temporary() {
            exit::TEMPFAIL
        } else {
            exit::UNAVAILABLE
        };
        exit::fail(code, format!("{}: {what}: {answer}", self.server))
    }

    /// The server refused the login: 75 when its answer says try later, else 77.
    pub fn login_failed(&self, answer: &impl Answer) -> anyhow::Error {
        if answer.is_temporary() {
            return exit::fail(exit::TEMPFAIL, format!("{}: login: {answer}", self.server));
        }
        exit::fail(
            exit::NOPERM,
            format!("{}: authentication failed: {answer}", self.server),
        )
    }
}
