//! The one client transport: a TCP connection with a connect timeout, TLS on it (implicit from
//! the first byte, RFC 8314, or after a protocol's STARTTLS go-ahead, RFC 3207 / RFC 2595), reads
//! against a deadline and writes bounded per chunk.
//!
//! What the server's certificate must satisfy is the rustls config's business, built from a
//! [`crate::tls::Verify`] (webpki-roots, one CA file, a SHA-256 pin of the server's public key,
//! or nothing for opportunistic TLS) by [`crate::tls::Verify::client_config`]; this module only tells a failed trust check ([`TlsError::Trust`]) from
//! any other handshake failure, because callers treat them differently (msend gives up, mrelayd
//! defers, an opportunistic client retries in clear).
//!
//! Writes are cut into [`WRITE_CHUNK`] pieces, each with its own time limit, as the server side
//! does (`server::conn`) and as RFC 5321 §4.5.3.2.5 puts it ("while awaiting the completion of
//! each TCP SEND call transmitting a chunk of data"): a 35 MB body to a server that reads slowly
//! but steadily goes through, one that stops reading fails after one limit.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// Largest piece written under one time limit; the same size as the server side's.
pub const WRITE_CHUNK: usize = 64 * 1024;

/// What a TLS handshake needs: the rustls config (whose verifier decides what is trusted) and
/// the name sent as SNI (RFC 6066 §3) and, unless the config pins a key, checked against the
/// certificate.
pub type TlsTarget = (Arc<ClientConfig>, ServerName<'static>);

/// Connects TCP to `addr` within `timeout`, with Nagle off (commands are small and
/// latency-bound).
pub async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(r) => {
            let s = r?;
            s.set_nodelay(true)?;
            Ok(s)
        }
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {addr} timed out"),
        )),
    }
}

/// Connects TCP to `host:port` (a name is looked up first, its addresses tried in turn) within
/// `timeout` in all, as [`connect_tcp`] does for one address (mfetch's servers are named, not
/// routed by MX).
pub async fn connect_host(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port))).await {
            Ok(r) => r?.collect(),
            Err(_) => return Err(timed_out(&format!("looking up {host}"))),
        };
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(&format!("connect to {host}:{port}")));
        }
        match connect_tcp(addr, left).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Why a TLS handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// The handshake did not finish within the time limit.
    Timeout,
    /// The server's certificate is not trusted: no chain to a trusted CA, not valid for the
    /// name, expired, or not the pinned key.
    Trust(String),
    /// Any other failure (no common version or cipher, a TLS alert, the peer closed, TLS not
    /// configured or already active).
    Handshake(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Timeout => write!(f, "TLS handshake timed out"),
            TlsError::Trust(e) => write!(f, "certificate not trusted: {e}"),
            TlsError::Handshake(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// Whether a handshake error is our verifier refusing the server's certificate (rustls reports
/// it as `InvalidCertificate`; tokio-rustls wraps it in the `io::Error`).
fn is_trust_failure(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        })
}

/// A handshake error as one readable phrase: a reason our own verifier gave (DANE's "no TLSA
/// record matches ...") as it is, where rustls would print its `Debug` form
/// (`Other(OtherError(...))`), anything else as rustls or the OS says it.
fn handshake_reason(e: &io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) => {
            format!("invalid peer certificate: {}", o.0)
        }
        _ => e.to_string(),
    }
}

/// One client connection: plain, or TLS over it.
pub struct Stream<S = TcpStream> {
    inner: Inner<S>,
}

enum Inner<S> {
    Plain(S),
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
    /// Transient state during the TLS upgrade (or after a failed one).
    Gone,
}

fn not_connected() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream<S> {
    /// A plain connection over `stream` (TCP in practice; anything in tests).
    pub fn plain(stream: S) -> Stream<S> {
        Stream {
            inner: Inner::Plain(stream),
        }
    }

    /// Whether TLS is up.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// The rustls connection once TLS is up (certificate chain, version, cipher).
    pub fn tls_connection(&self) -> Option<&rustls::ClientConnection> {
        match &self.inner {
            Inner::Tls(t) => Some(t.get_ref().1),
            _ => None,
        }
    }

    /// The TLS handshake over the plain connection, within `timeout`: right after connecting
    /// for implicit TLS, after the protocol's go-ahead for STARTTLS (the caller must have
    /// dropped anything read before it: RFC 3207 §5). A failed handshake leaves the stream
    /// unusable.
    pub async fn start_tls(
        &mut self,
        target: &TlsTarget,
        timeout: Duration,
    ) -> Result<(), TlsError> {
        let (config, name) = target;
        let plain = match std::mem::replace(&mut self.inner, Inner::Gone) {
            Inner::Plain(s) => s,
            other => {
                let active = matches!(other, Inner::Tls(_));
                self.inner = other;
                return Err(TlsError::Handshake(
                    if active {
                        "TLS already active"
                    } else {
                        "not connected"
                    }
                    .into(),
                ));
            }
        };
        let handshake = TlsConnector::from(config.clone()).connect(name.clone(), plain);
        match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(s)) => {
                self.inner = Inner::Tls(Box::new(s));
                Ok(())
            }
            Ok(Err(e)) => {
                let why = format!("{}: {}", name.to_str(), handshake_reason(&e));
                Err(if is_trust_failure(&e) {
                    TlsError::Trust(why)
                } else {
                    TlsError::Handshake(why)
                })
            }
            Err(_) => Err(TlsError::Timeout),
        }
    }

    /// Reads what is there (at most `buf.len()` bytes) before `deadline`; `Ok(0)` is the end of
    /// input, an error of kind `TimedOut` the deadline passing.
    pub async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        let fut = async {
            match &mut self.inner {
                Inner::Plain(s) => s.read(buf).await,
                Inner::Tls(s) => s.read(buf).await,
                Inner::Gone => Err(not_connected()),
            }
        };
        tokio::time::timeout_at(deadline, fut)
            .await
            .unwrap_or_else(|_| Err(timed_out("read")))
    }

    /// Writes all of `bytes` and flushes, each [`WRITE_CHUNK`] (and the flush) within
    /// `per_chunk`: a peer that reads steadily never times out, one that stops reading does
    /// after `per_chunk` (an error of kind `TimedOut`).
    pub async fn write_all(&mut self, bytes: &[u8], per_chunk: Duration) -> io::Result<()> {
        for piece in bytes.chunks(WRITE_CHUNK) {
            let fut = async {
                match &mut self.inner {
                    Inner::Plain(s) => s.write_all(piece).await,
                    Inner::Tls(s) => s.write_all(piece).await,
                    Inner::Gone => Err(not_connected()),
                }
            };
            within(per_chunk, "write", fut).await?;
        }
        let fut = async {
            match &mut self.inner {
                Inner::Plain(s) => s.flush().await,
                Inner::Tls(s) => s.flush().await,
                Inner::Gone => Err(not_connected()),
            }
        };
        within(per_chunk, "write", fut).await
    }

    /// Closes the write side (TLS close_notify first) within `timeout`.
    pub async fn shutdown(&mut self, timeout: Duration) -> io::Result<()> {
        let fut = async {
            match &mut self.inner {
                Inner::Plain(s) => s.shutdown().await,
                Inner::Tls(s) => s.shutdown().await,
                Inner::Gone => Ok(()),
            }
        };
        within(timeout, "shutdown", fut).await
    }
}

/// `step` within `limit`, its elapsing an error of kind `TimedOut`.
async fn within<T>(
    limit: Duration,
    what: &str,
    step: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(limit, step)
        .await
        .unwrap_or_else(|_| Err(timed_out(what)))
}
