//! The one client transport (`mailkit::net`) over real loopback sockets and real TLS: a pinned
//! server key replaces the CA and name checks, a wrong pin is a trust failure, and a long body's
//! writes are bounded per chunk (a slow but steady reader gets it all, one that stops reading
//! makes the write fail after one limit).

use std::time::{Duration, Instant};

use mailkit::net::client::{connect_tcp, Stream, TlsError, TlsTarget};
use mailkit::net::smtp::{Connection, DriverError, Progress, Timeouts};
use mailkit::smtp::client::{Envelope, Settings};
use mailkit::tls::Mode;
use mailkit::tls::SpkiPin;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket};

/// A truly self-signed certificate for `self.example` only (in no CA list, and no CA signs
/// it): (cert PEM, key PEM, its key pin).
fn self_signed_leaf() -> (String, String, SpkiPin) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["self.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let pin = SpkiPin::of_certificate(cert.der()).unwrap();
    (cert.pem(), key.serialize_pem(), pin)
}

/// An implicit-TLS server with that certificate: each connection gets `hello\r\n` after the
/// handshake. Returns its address.
async fn tls_hello_server(cert: &str, key: &str) -> std::net::SocketAddr {
    let config = mailkit::tls::server_config_from_pem(cert, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(sock).await {
                    let _ = tls.write_all(b"hello\r\n").await;
                    let _ = tls.flush().await;
                    let mut rest = Vec::new();
                    let _ = tls.read_to_end(&mut rest).await;
                }
            });
        }
    });
    addr
}

/// Connects and does the TLS handshake with `config`, sending `name`.
async fn handshake(
    addr: std::net::SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
    name: &str,
) -> (Stream, Result<(), TlsError>) {
    let tcp = connect_tcp(addr, Duration::from_secs(5)).await.unwrap();
    let mut stream = Stream::plain(tcp);
    let target: TlsTarget = (config, ServerName::try_from(name.to_string()).unwrap());
    let r = stream.start_tls(&target, Duration::from_secs(5)).await;
    (stream, r)
}

#[tokio::test]
async fn pinned_key_replaces_the_ca_and_name_checks_and_a_wrong_pin_is_not_trusted() {
    let (cert, key, pin) = self_signed_leaf();
    let addr = tls_hello_server(&cert, &key).await;

    // The right pin: connected although no CA knows the certificate and the name differs.
    let (mut stream, r) = handshake(
        addr,
        mailkit::tls::client_config_pinned(pin),
        "other.example",
    )
    .await;
    r.unwrap();
    assert!(stream.is_tls());
    let mut buf = [0u8; 64];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let n = stream.read(&mut buf, deadline).await.unwrap();
    assert_eq!(&buf[..n], b"hello\r\n");

    // The pin written as msmtp writes fingerprints (uppercase hex, colons) is the same pin.
    let colons = pin
        .bytes()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(colons.parse::<SpkiPin>().unwrap(), pin);

    // A wrong pin: a trust failure, which says what the server's key is.
    let mut wrong = *pin.bytes();
    wrong[0] ^= 1;
    let wrong = SpkiPin::of_spki(&wrong);
    let (_, r) = handshake(
        addr,
        mailkit::tls::client_config_pinned(wrong),
        "self.example",
    )
    .await;
    match r {
        Err(TlsError::Trust(e)) => assert!(e.contains(&pin.to_string()), "{e}"),
        other => panic!("expected a trust failure, got {other:?}"),
    }

    // Without the pin the same certificate is not trusted (webpki-roots), also as a trust
    // failure, even for its own name.
    let (_, r) = handshake(
        addr,
        mailkit::tls::client_config(None).unwrap(),
        "self.example",
    )
    .await;
    assert!(matches!(r, Err(TlsError::Trust(_))), "{r:?}");
}

#[tokio::test]
async fn smtp_session_with_a_pinned_key_reports_a_wrong_pin_as_trust() {
    let (cert, key, _pin) = self_signed_leaf();
    let addr = tls_hello_server(&cert, &key).await;
    let tcp = connect_tcp(addr, Duration::from_secs(5)).await.unwrap();
    let mut conn = Connection::new(
        tcp,
        settings(Mode::Implicit),
        Some((
            mailkit::tls::client_config_pinned(SpkiPin::of_spki(b"not the key")),
            ServerName::try_from("self.example".to_string()).unwrap(),
        )),
        Timeouts::uniform(Duration::from_secs(5)),
        None,
    );
    let e = conn.open().await.unwrap_err();
    assert!(matches!(e, DriverError::Trust(_)), "{e:?}");
    assert!(!e.is_temporary(), "{e}");
    assert!(e.to_string().contains("not trusted"), "{e}");
}

fn settings(tls: Mode) -> Settings {
    Settings {
        ehlo_name: "client.test".into(),
        tls,
        auth: None,
        quit_after: None,
    }
}

/// How the scripted SMTP server reads the message body.
#[derive(Clone, Copy)]
enum BodyReader {
    /// 64 KiB at most per read, then a pause: slow but steady.
    Slow(Duration),
    /// Reads nothing after the 354 (but keeps the connection open).
    Stalled,
}

/// A minimal SMTP server (no extensions) with a small receive buffer, so the client's writes
/// wait for it rather than for the kernel. Sends the body length it received on `got`.
async fn smtp_server(
    reader: BodyReader,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<usize>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(128 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::with_capacity(128 * 1024, r);
        w.write_all(b"220 scripted ESMTP\r\n").await.unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let cmd = line.get(..4).unwrap_or("").to_ascii_uppercase();
            match cmd.as_str() {
                "EHLO" => w.write_all(b"250 scripted\r\n").await.unwrap(),
                "MAIL" | "RCPT" => w.write_all(b"250 ok\r\n").await.unwrap(),
                "QUIT" => {
                    let _ = w.write_all(b"221 bye\r\n").await;
                    return;
                }
                "DATA" => {
                    w.write_all(b"354 go ahead\r\n").await.unwrap();
                    let pause = match reader {
                        BodyReader::Slow(p) => p,
                        BodyReader::Stalled => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                    };
                    let mut body = Vec::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    while !body.ends_with(b"\r\n.\r\n") {
                        let n = r.read(&mut buf).await.unwrap();
                        if n == 0 {
                            return;
                        }
                        body.extend_from_slice(&buf[..n]);
                        tokio::time::sleep(pause).await;
                    }
                    let _ = tx.send(body.len());
                    w.write_all(b"250 queued\r\n").await.unwrap();
                    // One message per test.
                    return;
                }
                _ => w.write_all(b"500 what\r\n").await.unwrap(),
            }
        }
    });
    (addr, rx)
}

/// About `mb` MiB of 100-byte CRLF lines after a header.
fn big_message(mb: usize) -> Vec<u8> {
    let mut m = b"Subject: big\r\n\r\n".to_vec();
    let line = [b"x".repeat(98), b"\r\n".to_vec()].concat();
    while m.len() < mb * 1024 * 1024 {
        m.extend_from_slice(&line);
    }
    m
}

fn envelope() -> Envelope {
    Envelope {
        from: "a@client.test".into(),
        rcpts: vec!["b@server.test".into()],
        mail_params: Vec::new(),
        rcpt_params: Vec::new(),
    }
}

#[tokio::test]
async fn a_slow_but_steady_reader_gets_a_big_body_within_a_short_per_chunk_timeout() {
    let (addr, got) = smtp_server(BodyReader::Slow(Duration::from_millis(10))).await;
    // Writes get 500 ms per chunk and the final reply 3 s. The server reads at most 64 KiB per
    // 10 ms, so the 24 MiB body takes 4 s or more: one limit for the whole body would cut it
    // off, but no chunk waits anywhere near 500 ms (and what the kernel buffers when the last
    // write returns, a few MiB, is read well within the 3 s of the final reply).
    let timeouts = Timeouts {
        connect: Duration::from_secs(5),
        command: Duration::from_millis(500),
        data_end: Duration::from_secs(3),
    };
    let tcp = connect_tcp(addr, timeouts.connect).await.unwrap();
    let mut conn = Connection::new(tcp, settings(Mode::Off), None, timeouts, None);
    assert_eq!(conn.open().await.unwrap(), Progress::Ready);
    let message = big_message(24);
    let start = Instant::now();
    let done = conn.send(envelope(), &message).await.unwrap();
    let elapsed = start.elapsed();
    let Progress::Done(outcome) = done else {
        panic!("{done:?}")
    };
    assert!(outcome.rcpts[0].accepted(), "{outcome:?}");
    // Body plus the final ".\r\n" (no dot-stuffing needed).
    assert_eq!(got.await.unwrap(), message.len() + 3);
    assert!(
        elapsed > timeouts.data_end,
        "the body went too fast to test anything: {elapsed:?}"
    );
    conn.quit().await;
}

#[tokio::test]
async fn a_reader_that_stops_makes_the_write_fail_after_the_per_chunk_timeout() {
    let (addr, _got) = smtp_server(BodyReader::Stalled).await;
    let timeout = Duration::from_millis(300);
    let tcp = connect_tcp(addr, timeout).await.unwrap();
    let mut conn = Connection::new(
        tcp,
        settings(Mode::Off),
        None,
        Timeouts::uniform(timeout),
        None,
    );
    assert_eq!(conn.open().await.unwrap(), Progress::Ready);
    let start = Instant::now();
    let e = conn.send(envelope(), &big_message(16)).await.unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(e, DriverError::Timeout(_)), "{e:?}");
    // Filling the socket buffers takes a moment; then one chunk waits 300 ms and fails.
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}
