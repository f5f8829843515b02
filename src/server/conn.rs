//! [`Connection`]: one client session's byte stream (TCP, TLS or stdin/stdout) with an input
//! buffer, line framing, idle timeouts, STARTTLS and what is known about the peer.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::lines::{Framed, Line, LineFramer, MAX_DISCARD};
use crate::tls::TlsInfo;

/// Any byte stream a session can run over: a TCP socket, a TLS stream, stdin/stdout, or an
/// in-memory `tokio::io::duplex` in tests.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// How many bytes one read asks the stream for.
const READ_CHUNK: usize = 16 * 1024;
/// Largest piece written under one idle-timeout period, so a big write (a POP3 RETR) to a slow
/// but live client is not cut off by the idle timeout.
const WRITE_CHUNK: usize = 64 * 1024;
/// One client session. Created by [`super::serve`], [`super::inetd`] or [`Connection::new`]
/// (tests, in-memory drivers). All reads and writes fail with `io::ErrorKind::TimedOut` after
/// the idle timeout without progress; `read_line` is cancel-safe (usable in `tokio::select!`).
pub struct Connection {
    stream: Option<Box<dyn Stream>>,
    inbuf: Vec<u8>,
    start: usize,
    framer: LineFramer,
    outbuf: Vec<u8>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    role: String,
    tls: Option<TlsInfo>,
    acceptor: Option<TlsAcceptor>,
    idle_timeout: Duration,
    shutdown: Option<watch::Receiver<bool>>,
    /// The connection-limit slot this session holds ([`super::serve`]); given back at
    /// [`Connection::close`] or when the connection is dropped.
    slot: Option<super::Slot>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .field("role", &self.role)
            .field("tls", &self.tls)
            .field("buffered", &self.buffered())
            .finish()
    }
}

fn not_connected() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection is closed")
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "idle timeout")
}

/// Runs one I/O step under the idle timeout; running out of time is a `TimedOut` error.
async fn within<T>(
    limit: Duration,
    step: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(limit, step)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

impl Connection {
    /// A session over `stream` for listener role `role`, with the default idle timeout and no
    /// peer address, TLS acceptor or shutdown signal (set them with the `with_*` methods).
    pub fn new(stream: impl Stream, role: &str) -> Connection {
        Connection {
            stream: Some(Box::new(stream)),
            inbuf: Vec::with_capacity(READ_CHUNK),
            start: 0,
            framer: LineFramer::default(),
            outbuf: Vec::new(),
            peer: None,
            local: None,
            role: role.to_string(),
            tls: None,
            acceptor: None,
            idle_timeout: super::DEFAULT_IDLE_TIMEOUT,
            shutdown: None,
            slot: None,
        }
    }

    /// Sets the peer address.
    pub fn with_peer(mut self, peer: Option<SocketAddr>) -> Connection {
        self.peer = peer;
        self
    }

    /// Sets the local address.
    pub fn with_local(mut self, local: Option<SocketAddr>) -> Connection {
        self.local = local;
        self
    }

    /// Sets the acceptor used by [`Connection::starttls`] (and advertised by
    /// [`Connection::can_starttls`]).
    pub fn with_tls_acceptor(mut self, acceptor: Option<TlsAcceptor>) -> Connection {
        self.acceptor = acceptor;
        self
    }

    /// Sets the idle timeout.
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Connection {
        self.idle_timeout = timeout;
        self
    }

    /// Connects the session to a shutdown signal ([`Connection::shutdown_requested`]).
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Connection {
        self.shutdown = Some(shutdown);
        self
    }

    /// Makes the session hold `slot` until it closes (see [`Connection::close`]).
    pub(crate) fn with_slot(mut self, slot: super::Slot) -> Connection {
        self.slot = Some(slot);
        self
    }

    /// The client's address: the TCP peer, or in inetd mode `TCPREMOTEIP`/`TCPREMOTEPORT` or the
    /// socket on stdin. `None` when unknown (a pipe).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The local address the client connected to, when known.
    pub fn local(&self) -> Option<SocketAddr> {
        self.local
    }

    /// The listener role this session came in on (`smtp`, `submission`, `pop3s`, ...).
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The negotiated TLS parameters, once the session is encrypted.
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Whether the session is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether STARTTLS/STLS can be offered: an acceptor is configured and TLS is not yet on.
    pub fn can_starttls(&self) -> bool {
        self.acceptor.is_some() && self.tls.is_none()
    }

    /// The configured TLS acceptor, if any.
    pub(crate) fn acceptor(&self) -> Option<TlsAcceptor> {
        self.acceptor.clone()
    }

    /// The current idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Changes the idle timeout, e.g. per protocol state (RFC 5321 §4.5.3.2 gives different
    /// timeouts while waiting for a command and for DATA blocks).
    pub fn set_idle_timeout(&mut self, timeout: Duration) {
        self.idle_timeout = timeout;
    }

    /// Whether the server is shutting down; a handler checks this between commands and says
    /// goodbye (SMTP `421`, POP3 `-ERR`) instead of waiting for the next one.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolves when shutdown is requested (never, without a shutdown signal). Use in
    /// `tokio::select!` against [`Connection::read_line`], which is cancel-safe.
    pub fn shutdown_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let rx = self.shutdown.clone();
        async move {
            match rx {
                Some(mut rx) => {
                    // An error means the sender is gone: the server is stopping.
                    let _ = rx.wait_for(|stop| *stop).await;
                }
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn buffered(&self) -> usize {
        self.inbuf.len() - self.start
    }

    /// Whether input is already buffered: a pipelining client (RFC 2920) sent more than one
    /// command, so replies can be batched until the buffer runs dry.
    pub fn has_buffered_input(&self) -> bool {
        self.buffered() > 0
    }

    /// Drops all buffered input and any half-framed line; returns how many bytes were dropped.
    fn discard_input(&mut self) -> usize {
        let n = self.buffered();
        self.consume(n);
        self.framer = LineFramer::default();
        n
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.inbuf.len() {
            self.inbuf.clear();
            self.start = 0;
        }
    }

    /// Reads more input into the buffer under the idle timeout; returns the number of new bytes
    /// (0 at end of input). Cancel-safe: bytes read are kept in the buffer.
    async fn fill(&mut self, limit: Duration) -> io::Result<usize> {
        if self.start > 0 && self.start * 2 >= self.inbuf.len() {
            self.inbuf.drain(..self.start);
            self.start = 0;
        }
        self.inbuf.reserve(READ_CHUNK);
        let stream = self.stream.as_mut().ok_or_else(not_connected)?;
        within(limit, stream.read_buf(&mut self.inbuf)).await
    }

    /// Reads one line of at most `max_len` bytes INCLUDING its line end (as the RFCs count:
    /// RFC 5321 §4.5.3.1.4 512 octets for a command line, RFC 2449 255 for POP3). Lines end at
    /// LF; a preceding CR makes it [`LineEnd::CrLf`]. A longer line is discarded up to its end
    /// and reported as [`Line::TooLong`]; more than [`MAX_DISCARD`] bytes without a line end is
    /// an `InvalidData` error.
    pub async fn read_line(&mut self, max_len: usize) -> io::Result<Line> {
        loop {
            let (line, used) = self.framer.next(&self.inbuf[self.start..], max_len);
            self.consume(used);
            match line {
                Some(Framed::Line(line)) => return Ok(line),
                Some(Framed::NoLineEnd) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("no line end within {MAX_DISCARD} bytes"),
                    ))
                }
                None => {}
            }
            if self.fill(self.idle_timeout).await? == 0 {
                self.discard_input();
                return Ok(Line::Eof);
            }
        }
    }

    /// Returns buffered input, or reads once: at most `max` bytes, empty at end of input. For
    /// bulk data (SMTP DATA/BDAT) where line framing is done by the caller.
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Vec<u8>> {
        if self.buffered() == 0 && self.fill(self.idle_timeout).await? == 0 {
            return Ok(Vec::new());
        }
        let n = self.buffered().min(max);
        let out = self.inbuf[self.start..self.start + n].to_vec();
        self.consume(n);
        Ok(out)
    }

    /// Reads exactly `n` bytes (SMTP BDAT chunk). The caller bounds `n` (message size limit)
    /// before calling; end of input first is an `UnexpectedEof` error.
    pub async fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n.min(READ_CHUNK * 64));
        while out.len() < n {
            let chunk = self.read_chunk(n - out.len()).await?;
            if chunk.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed in the middle of a data block",
                ));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Whether input arrives (or is already buffered, or the peer closed) within `wait`. For
    /// SMTP early-talker detection (RFC 5321 §4.3.1: the client waits for the greeting): call it
    /// before sending the greeting; whatever arrived stays buffered for the next read.
    pub async fn input_pending_within(&mut self, wait: Duration) -> io::Result<bool> {
        if self.has_buffered_input() {
            return Ok(true);
        }
        match self.fill(wait).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Queues bytes to be sent with the next [`Connection::flush`] or
    /// [`Connection::write_all`] (batched replies for pipelining clients).
    pub fn queue(&mut self, data: &[u8]) {
        self.outbuf.extend_from_slice(data);
    }

    /// Sends everything queued and flushes the stream.
    pub async fn flush(&mut self) -> io::Result<()> {
        let pending = std::mem::take(&mut self.outbuf);
        self.send(&pending).await
    }

    /// Sends anything queued, then `data`, then flushes.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.outbuf.is_empty() {
            self.send(data).await
        } else {
            self.outbuf.extend_from_slice(data);
            self.flush().await
        }
    }

    async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        let limit = self.idle_timeout;
        let stream = self.stream.as_mut().ok_or_else(not_connected)?;
        for piece in data.chunks(WRITE_CHUNK) {
            within(limit, stream.write_all(piece)).await?;
        }
        within(limit, stream.flush()).await
    }

    /// Upgrades the session to TLS after the protocol's "go ahead" reply (SMTP `220`, POP3
    /// `+OK`) has been queued or written; it is flushed first. Any input the client sent after
    /// the STARTTLS command is DISCARDED, never read as if it came over TLS (RFC 3207 §6,
    /// RFC 2595 §3.1; CVE-2011-0411 and friends). Returns how many bytes were discarded. On a
    /// failed handshake the connection is unusable and the caller ends the session.
    pub async fn starttls(&mut self) -> io::Result<usize> {
        if self.tls.is_some() {
            return Err(io::Error::other("TLS is already active"));
        }
        let acceptor = self
            .acceptor
            .clone()
            .ok_or_else(|| io::Error::other("TLS is not configured"))?;
        self.flush().await?;
        let discarded = self.discard_input();
        self.accept_tls(&acceptor).await?;
        Ok(discarded)
    }

    /// Runs the server side of a TLS handshake on the raw stream (implicit TLS, or STARTTLS).
    pub(crate) async fn accept_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        let stream = self.stream.take().ok_or_else(not_connected)?;
        let tls = within(self.idle_timeout, acceptor.accept(stream)).await?;
        self.tls = Some(TlsInfo::from_state(tls.get_ref().1));
        self.stream = Some(Box::new(tls));
        Ok(())
    }

    /// Flushes queued output and shuts the stream down (TLS close_notify, TCP FIN). The
    /// session's connection-limit slot is given back first: a session that is closing no longer
    /// counts, so a client that read the last reply (`221`) and connects again is not refused
    /// because this one has not quite gone yet.
    pub async fn close(&mut self) -> io::Result<()> {
        drop(self.slot.take());
        let flushed = self.flush().await;
        if let Some(mut stream) = self.stream.take() {
            let _ = tokio::time::timeout(self.idle_timeout, stream.shutdown()).await;
        }
        flushed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::LineEnd;
    use tokio::io::AsyncWriteExt;

    fn complete(text: &[u8], end: LineEnd) -> Line {
        Line::Complete {
            text: text.to_vec(),
            end,
        }
    }

    async fn conn_with(input: &[u8]) -> Connection {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let input = input.to_vec();
        // The client half writes, half-closes, and stays alive draining replies.
        tokio::spawn(async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut buf = [0u8; 64];
            while client.read(&mut buf).await.unwrap_or(0) > 0 {}
        });
        Connection::new(server, "test").with_idle_timeout(Duration::from_secs(5))
    }

    /// Feeds `input` to a framer in pieces of `piece` bytes and collects what it frames.
    fn frame_all(input: &[u8], piece: usize, max_len: usize) -> Vec<Framed> {
        let mut framer = LineFramer::default();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            buf.extend_from_slice(chunk);
            loop {
                let (found, used) = framer.next(&buf, max_len);
                assert!(used <= buf.len());
                buf.drain(..used);
                match found {
                    Some(f) => out.push(f),
                    None => break,
                }
            }
        }
        out
    }

    #[test]
    fn framing_does_not_depend_on_how_input_is_split() {
        let mut input = b"HELO a\r\nbare\n".to_vec();
        input.extend_from_slice(&[b'x'; 40]);
        input.extend_from_slice(b"\r\nQUIT\r\n\r\n");
        let whole = frame_all(&input, input.len(), 16);
        assert_eq!(
            whole,
            vec![
                Framed::Line(complete(b"HELO a", LineEnd::CrLf)),
                Framed::Line(complete(b"bare", LineEnd::Lf)),
                Framed::Line(Line::TooLong),
                Framed::Line(complete(b"QUIT", LineEnd::CrLf)),
                Framed::Line(complete(b"", LineEnd::CrLf)),
            ]
        );
        for piece in 1..input.len() {
            assert_eq!(frame_all(&input, piece, 16), whole, "pieces of {piece}");
        }
    }

    #[test]
    fn framer_gives_up_after_max_discard() {
        let input = vec![b'a'; MAX_DISCARD + 100];
        let framed = frame_all(&input, 4096, 512);
        assert_eq!(framed, vec![Framed::NoLineEnd]);
    }

    #[tokio::test]
    async fn lines_and_their_ends() {
        let mut c = conn_with(b"HELO a\r\nbare\nx\ry\r\nlast-no-end").await;
        assert_eq!(
            c.read_line(512).await.unwrap(),
            complete(b"HELO a", LineEnd::CrLf)
        );
        assert_eq!(
            c.read_line(512).await.unwrap(),
            complete(b"bare", LineEnd::Lf)
        );
        assert_eq!(
            c.read_line(512).await.unwrap(),
            complete(b"x\ry", LineEnd::CrLf)
        );
        assert_eq!(c.read_line(512).await.unwrap(), Line::Eof);
        assert_eq!(c.read_line(512).await.unwrap(), Line::Eof);
    }

    #[tokio::test]
    async fn limit_counts_the_line_end() {
        // Exactly 8 bytes including CRLF fits a limit of 8; 9 does not.
        let mut c = conn_with(b"123456\r\n1234567\r\nnext\r\n").await;
        assert_eq!(
            c.read_line(8).await.unwrap(),
            complete(b"123456", LineEnd::CrLf)
        );
        assert_eq!(c.read_line(8).await.unwrap(), Line::TooLong);
        assert_eq!(
            c.read_line(8).await.unwrap(),
            complete(b"next", LineEnd::CrLf)
        );
    }

    #[tokio::test]
    async fn long_line_is_discarded_to_its_end() {
        let mut input = vec![b'a'; 100_000];
        input.extend_from_slice(b"\r\nQUIT\r\n");
        let mut c = conn_with(&input).await;
        assert_eq!(c.read_line(512).await.unwrap(), Line::TooLong);
        assert_eq!(
            c.read_line(512).await.unwrap(),
            complete(b"QUIT", LineEnd::CrLf)
        );
    }

    #[tokio::test]
    async fn endless_line_is_an_error() {
        let input = vec![b'a'; MAX_DISCARD + 2 * READ_CHUNK];
        let mut c = conn_with(&input).await;
        let e = c.read_line(512).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test]
    async fn chunks_and_exact_reads() {
        let mut c = conn_with(b"BDAT 5\r\nhelloBDAT 3 LAST\r\nabc").await;
        assert_eq!(
            c.read_line(512).await.unwrap(),
            complete(b"BDAT 5", LineEnd::CrLf)
        );
        assert_eq!(c.read_exact(5).await.unwrap(), b"hello");
        assert!(c.has_buffered_input());
        assert_eq!(
            c.read_line(512).await.unwrap(),
            complete(b"BDAT 3 LAST", LineEnd::CrLf)
        );
        assert_eq!(c.read_exact(3).await.unwrap(), b"abc");
        assert!(!c.has_buffered_input());
        assert_eq!(
            c.read_exact(1).await.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert!(c.read_chunk(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn idle_timeout_on_read() {
        let (_client, server) = tokio::io::duplex(64);
        let mut c = Connection::new(server, "t").with_idle_timeout(Duration::from_millis(50));
        let e = c.read_line(512).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(!c
            .input_pending_within(Duration::from_millis(20))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn early_talker_is_seen_and_input_kept() {
        let mut c = conn_with(b"EHLO early\r\n").await;
        assert!(c
            .input_pending_within(Duration::from_secs(5))
            .await
            .unwrap());
        assert_eq!(
            c.read_line(512).await.unwrap(),
            complete(b"EHLO early", LineEnd::CrLf)
        );
    }

    #[tokio::test]
    async fn queued_replies_go_out_together() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut c = Connection::new(server, "t");
        c.queue(b"250 a\r\n");
        c.queue(b"250 b\r\n");
        c.write_all(b"250 c\r\n").await.unwrap();
        let mut buf = vec![0u8; 21];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, b"250 a\r\n250 b\r\n250 c\r\n");
    }

    #[tokio::test]
    async fn starttls_without_acceptor_is_an_error() {
        let (_client, server) = tokio::io::duplex(64);
        let mut c = Connection::new(server, "t");
        assert!(!c.can_starttls());
        assert!(c.starttls().await.is_err());
    }

    #[tokio::test]
    async fn shutdown_signal_resolves() {
        let (tx, rx) = watch::channel(false);
        let (_client, server) = tokio::io::duplex(64);
        let c = Connection::new(server, "t").with_shutdown(rx);
        assert!(!c.shutdown_requested());
        let sig = c.shutdown_signal();
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), sig)
            .await
            .unwrap();
        assert!(c.shutdown_requested());
    }
}
