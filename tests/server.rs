//! The server layer over real loopback sockets, real TLS (rustls, openssl s_client, python3 ssl)
//! and real processes (SIGTERM, privilege drop, inetd and socket activation through systemd's
//! `systemd-socket-activate`). The protocol is a tiny line echo defined here: the server layer is
//! protocol-agnostic, and the daemons' own tests cover SMTP, POP3 and IMAP on top of it.
//!
//! Child processes re-run this test binary with `MK_CHILD_MODE` set: the `child_main` test is
//! then the daemon's main (and a no-op in a normal run).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailkit::lines::Line;
use mailkit::server::{self, Connection, Handler, Limits, ListenerSpec, Listeners, Settings};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Longest echo line (including CRLF).
const MAX_LINE: usize = 100;
/// Bound on every wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

/// The echo protocol: greeting `HELLO <role> <peer> <tls>`; `ECHO x` → `x`; `PEER`; `WHOAMI` →
/// `UID n`; `STARTTLS` → `GO` then TLS; `QUIT` → `BYE`; idle timeout → `TIMEOUT`; shutdown →
/// `SHUTDOWN` (except in role `stubborn`, which ignores it).
fn echo_handler() -> Handler {
    server::handler(|mut conn: Connection| async move {
        let peer = conn.peer().map(|p| p.to_string()).unwrap_or("none".into());
        let tls = conn
            .tls()
            .map(|t| t.version.clone())
            .unwrap_or("plain".into());
        let greeting = format!("HELLO {} {peer} {tls}\r\n", conn.role());
        conn.write_all(greeting.as_bytes()).await?;
        let stop = conn.shutdown_signal();
        tokio::pin!(stop);
        let stubborn = conn.role() == "stubborn";
        loop {
            let line = tokio::select! {
                line = conn.read_line(MAX_LINE) => line,
                _ = &mut stop, if !stubborn => {
                    conn.write_all(b"SHUTDOWN\r\n").await?;
                    return Ok(());
                }
            };
            let text = match line {
                Ok(Line::Complete { text, .. }) => String::from_utf8_lossy(&text).into_owned(),
                Ok(Line::TooLong) => {
                    conn.write_all(b"TOOLONG\r\n").await?;
                    continue;
                }
                Ok(Line::Eof) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    conn.write_all(b"TIMEOUT\r\n").await?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            let reply = match text
                .split_once(' ')
                .map_or((text.as_str(), ""), |(a, b)| (a, b))
            {
                ("ECHO", rest) => rest.to_string(),
                ("PEER", _) => format!(
                    "PEER {} LOCAL {} TLS {}",
                    conn.peer().map(|p| p.to_string()).unwrap_or("none".into()),
                    conn.local().map(|p| p.to_string()).unwrap_or("none".into()),
                    conn.tls().map(|t| t.to_string()).unwrap_or("none".into()),
                ),
                ("WHOAMI", _) => format!("UID {}", mailkit::os::euid()),
                ("STARTTLS", _) => {
                    conn.queue(b"GO\r\n");
                    conn.starttls().await?;
                    continue;
                }
                ("QUIT", _) => {
                    conn.write_all(b"BYE\r\n").await?;
                    return Ok(());
                }
                (other, _) => format!("UNKNOWN {other}"),
            };
            conn.write_all(format!("{reply}\r\n").as_bytes()).await?;
        }
    })
}

/// A fresh CA + server certificate for localhost in `dir`: (ca, cert, key).
fn certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    mailkit::tls::write_self_signed(dir, &["localhost".into(), "127.0.0.1".into()]).unwrap()
}

fn acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    tokio_rustls::TlsAcceptor::from(mailkit::tls::server_config(cert, key).unwrap())
}

/// Default settings with a TLS acceptor (implicit TLS and STARTTLS available).
fn tls_settings(cert: &Path, key: &Path) -> Settings {
    Settings {
        tls: Some(acceptor(cert, key)),
        ..Settings::default()
    }
}

/// An in-process server on its own runtime thread; dropping `stop` (or sending) shuts it down.
struct InProcess {
    addrs: Vec<(SocketAddr, String)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: std::sync::mpsc::Receiver<anyhow::Result<()>>,
}

impl InProcess {
    fn start(specs: &[ListenerSpec], settings: Settings) -> InProcess {
        let listeners = Listeners::bind_addresses(specs).unwrap();
        let addrs = listeners.addrs();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let r = rt.block_on(server::serve(listeners, settings, echo_handler(), async {
                let _ = stop_rx.await;
            }));
            let _ = done_tx.send(r);
        });
        InProcess {
            addrs,
            stop: Some(stop_tx),
            done,
        }
    }

    fn addr(&self, role: &str) -> SocketAddr {
        self.addrs.iter().find(|(_, r)| r == role).unwrap().0
    }

    /// Requests shutdown and waits (bounded) for serve to return.
    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.done.recv_timeout(WAIT).expect("serve did not return")
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A blocking line client with timeouts.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect_timeout(&addr, WAIT).unwrap())
    }

    /// Connects from a chosen loopback source address (127.0.0.0/8 is all ours on Linux).
    fn connect_from(src: [u8; 4], addr: SocketAddr) -> Client {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::from((src, 0))).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stream = rt.block_on(async { sock.connect(addr).await.unwrap().into_std().unwrap() });
        stream.set_nonblocking(false).unwrap();
        Client::from_stream(stream)
    }

    fn from_stream(s: TcpStream) -> Client {
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    }

    fn send(&mut self, data: &str) {
        self.writer.write_all(data.as_bytes()).unwrap();
    }

    fn ask(&mut self, cmd: &str) -> String {
        self.send(&format!("{cmd}\r\n"));
        self.line()
    }

    /// Reads to end of stream (bounded by the read timeout): what is left.
    fn rest(&mut self) -> String {
        let mut s = String::new();
        let _ = self.reader.read_to_string(&mut s);
        s
    }
}

fn plain(role: &str) -> ListenerSpec {
    ListenerSpec::new(loopback(0), role).busy_reply(b"BUSY\r\n")
}

#[test]
fn several_listeners_on_port_zero_with_their_roles() {
    let mut srv = InProcess::start(&[plain("alpha"), plain("beta")], Settings::default());
    let (a, b) = (srv.addr("alpha"), srv.addr("beta"));
    assert_ne!(a.port(), 0);
    assert_ne!(a.port(), b.port());
    let mut ca = Client::connect(a);
    let mut cb = Client::connect(b);
    let ga = ca.line();
    assert!(ga.starts_with("HELLO alpha 127.0.0.1:"), "{ga}");
    assert!(ga.ends_with(" plain"), "{ga}");
    assert!(cb.line().starts_with("HELLO beta 127.0.0.1:"));
    assert_eq!(ca.ask("ECHO one two"), "one two");
    let peer = cb.ask("PEER");
    assert!(peer.contains(&format!("LOCAL {b}")), "{peer}");
    assert!(
        peer.contains(&format!("PEER {}", cb.writer.local_addr().unwrap())),
        "{peer}"
    );
    assert_eq!(ca.ask("QUIT"), "BYE");
    // Over-long lines are refused and the session goes on.
    assert_eq!(cb.ask(&"x".repeat(MAX_LINE * 3)), "TOOLONG");
    assert_eq!(cb.ask("ECHO still here"), "still here");
    srv.stop().unwrap();
}

#[test]
fn implicit_tls_is_verified_by_rustls_openssl_and_python() {
    let dir = common::scratch();
    let (ca, cert, key) = certs(dir.path());
    let settings = tls_settings(&cert, &key);
    let mut srv = InProcess::start(&[plain("secure").implicit_tls(true)], settings);
    let addr = srv.addr("secure");

    // rustls client trusting only our CA.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = mailkit::tls::client_config(Some(&ca)).unwrap();
    let (hello, peer) = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(
            WAIT,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .unwrap()
        .unwrap();
        let mut s = tokio::io::BufReader::new(tls);
        let mut hello = String::new();
        s.read_line(&mut hello).await.unwrap();
        s.get_mut().write_all(b"PEER\r\n").await.unwrap();
        let mut peer = String::new();
        tokio::time::timeout(WAIT, s.read_line(&mut peer))
            .await
            .unwrap()
            .unwrap();
        (hello, peer)
    });
    assert!(hello.starts_with("HELLO secure 127.0.0.1:"), "{hello}");
    assert!(hello.trim_end().ends_with("TLSv1.3"), "{hello}");
    assert!(peer.contains("TLS TLSv1.3 with cipher TLS_"), "{peer}");

    // A client that does not trust our CA fails the handshake (and the server survives it).
    let public_roots = mailkit::tls::client_config(None).unwrap();
    let refused = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        tokio::time::timeout(
            WAIT,
            tokio_rustls::TlsConnector::from(public_roots).connect(name, tcp),
        )
        .await
        .unwrap()
    });
    assert!(refused.is_err());

    // openssl s_client, an independent TLS stack, verifying against the CA file.
    let out = common::run_with_input(
        Command::new("timeout").args([
            "20",
            "openssl",
            "s_client",
            "-connect",
            &addr.to_string(),
            "-CAfile",
            ca.to_str().unwrap(),
            "-verify_return_error",
            "-verify_hostname",
            "localhost",
            "-servername",
            "localhost",
            "-quiet",
        ]),
        b"ECHO via openssl\r\nQUIT\r\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("HELLO secure") && stdout.contains("via openssl") && stdout.contains("BYE"),
        "openssl s_client: {stdout} / {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // python3's ssl module with hostname checking.
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=20) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        f = s.makefile("rwb")
        print(f.readline().decode().strip())
        f.write(b"ECHO via python\r\n"); f.flush()
        print(f.readline().decode().strip(), s.version())
"#;
    let out = Command::new("timeout")
        .args(["20", "/usr/bin/python3", "-c", script])
        .arg(&ca)
        .arg(addr.port().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("HELLO secure"), "{stdout}");
    assert!(stdout.contains("via python TLSv1.3"), "{stdout}");
    srv.stop().unwrap();
}

#[test]
fn starttls_discards_plaintext_injected_after_the_command() {
    let dir = common::scratch();
    let (ca, cert, key) = certs(dir.path());
    let settings = tls_settings(&cert, &key);
    let mut srv = InProcess::start(&[plain("smtp")], settings);
    let addr = srv.addr("smtp");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = mailkit::tls::client_config(Some(&ca)).unwrap();
    let lines = rt.block_on(async {
        let mut tcp =
            tokio::io::BufReader::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let mut l = String::new();
        tcp.read_line(&mut l).await.unwrap();
        assert!(l.ends_with("plain\r\n"), "{l}");
        // The attack (CVE-2011-0411 style): the command and a plaintext "injected" command in
        // one packet. The injected line must never be executed as if it came over TLS.
        tcp.get_mut()
            .write_all(b"STARTTLS\r\nECHO INJECTED\r\n")
            .await
            .unwrap();
        l.clear();
        tcp.read_line(&mut l).await.unwrap();
        assert_eq!(l, "GO\r\n");
        assert!(tcp.buffer().is_empty());
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(
            WAIT,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp.into_inner()),
        )
        .await
        .unwrap()
        .unwrap();
        let mut tls = tokio::io::BufReader::new(tls);
        tls.get_mut()
            .write_all(b"ECHO after\r\nPEER\r\nQUIT\r\n")
            .await
            .unwrap();
        let mut all = Vec::new();
        for _ in 0..3 {
            let mut l = String::new();
            tokio::time::timeout(WAIT, tls.read_line(&mut l))
                .await
                .unwrap()
                .unwrap();
            all.push(l.trim_end().to_string());
        }
        all
    });
    assert_eq!(
        lines[0], "after",
        "injected plaintext was executed: {lines:?}"
    );
    assert!(lines[1].contains("TLS TLSv1.3 with cipher"), "{lines:?}");
    assert_eq!(lines[2], "BYE");
    assert!(!lines.iter().any(|l| l.contains("INJECTED")));
    srv.stop().unwrap();
}

#[test]
fn plaintext_instead_of_a_tls_handshake_ends_only_that_session() {
    // A client that says STARTTLS and then sends plaintext instead of a ClientHello: the
    // handshake fails, the session ends, the server keeps serving others.
    let dir = common::scratch();
    let (_ca, cert, key) = certs(dir.path());
    let settings = tls_settings(&cert, &key);
    let mut srv = InProcess::start(&[plain("smtp")], settings);
    let addr = srv.addr("smtp");
    let mut c = Client::connect(addr);
    c.line();
    assert_eq!(c.ask("STARTTLS"), "GO");
    c.send("HELO not tls at all\r\n");
    let rest = c.rest();
    assert!(!rest.contains("HELO"), "{rest}");
    let mut again = Client::connect(addr);
    assert!(again.line().starts_with("HELLO smtp"));
    srv.stop().unwrap();
}

/// Waits until a fresh connection from `src` is admitted again (a closed session's slot is
/// returned asynchronously).
fn wait_admitted(src: [u8; 4], addr: SocketAddr) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = Client::connect_from(src, addr);
        let l = c.line();
        if l.starts_with("HELLO") {
            return c;
        }
        assert_eq!(l, "BUSY");
        assert!(Instant::now() < deadline, "slot never came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn per_ip_limit_refuses_with_the_busy_reply() {
    // Loopback addresses stand for clients: none exempt from the per-address limit.
    let settings = Settings {
        limits: Limits {
            max_connections: 10,
            max_per_ip: 2,
            per_ip_exempt: Vec::new(),
            ..Limits::default()
        },
        ..Settings::default()
    };
    let mut srv = InProcess::start(&[plain("smtp")], settings);
    let addr = srv.addr("smtp");
    let mut a1 = Client::connect_from([127, 0, 0, 1], addr);
    let mut a2 = Client::connect_from([127, 0, 0, 1], addr);
    assert!(a1.line().starts_with("HELLO"));
    assert!(a2.line().starts_with("HELLO"));
    let mut a3 = Client::connect_from([127, 0, 0, 1], addr);
    assert_eq!(a3.line(), "BUSY");
    assert_eq!(a3.rest(), "", "a refused connection is closed");
    // Another address is not affected.
    let mut b1 = Client::connect_from([127, 0, 0, 2], addr);
    assert!(b1.line().starts_with("HELLO smtp 127.0.0.2:"));
    // A finished session frees its slot.
    assert_eq!(a1.ask("QUIT"), "BYE");
    let mut a4 = wait_admitted([127, 0, 0, 1], addr);
    assert_eq!(a4.ask("ECHO in"), "in");
    srv.stop().unwrap();
}

#[test]
fn total_limit_refuses_with_the_busy_reply() {
    let settings = Settings {
        limits: Limits {
            max_connections: 2,
            max_per_ip: 10,
            ..Limits::default()
        },
        ..Settings::default()
    };
    let mut srv = InProcess::start(&[plain("pop3"), plain("other")], settings);
    let (addr, other) = (srv.addr("pop3"), srv.addr("other"));
    let mut a = Client::connect_from([127, 0, 0, 3], addr);
    let mut b = Client::connect_from([127, 0, 0, 4], other);
    assert!(a.line().starts_with("HELLO pop3"));
    assert!(b.line().starts_with("HELLO other"));
    // The limit counts over all listeners and addresses.
    let mut c = Client::connect_from([127, 0, 0, 5], addr);
    assert_eq!(c.line(), "BUSY");
    drop(b);
    let mut d = wait_admitted([127, 0, 0, 5], addr);
    assert_eq!(d.ask("ECHO ok"), "ok");
    drop(a);
    srv.stop().unwrap();
}

#[test]
fn idle_timeout_ends_the_session() {
    let settings = Settings {
        limits: Limits {
            idle_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        ..Settings::default()
    };
    let mut srv = InProcess::start(&[plain("smtp")], settings);
    let mut c = Client::connect(srv.addr("smtp"));
    assert!(c.line().starts_with("HELLO"));
    // Activity keeps it alive...
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(c.ask("ECHO alive"), "alive");
    }
    // ...silence ends it: the handler sees TimedOut, says so, and the connection closes.
    assert_eq!(c.line(), "TIMEOUT");
    assert_eq!(c.rest(), "");
    srv.stop().unwrap();
}

#[test]
fn implicit_tls_handshake_is_bounded_by_the_idle_timeout() {
    let dir = common::scratch();
    let (_ca, cert, key) = certs(dir.path());
    let settings = Settings {
        tls: Some(acceptor(&cert, &key)),
        limits: Limits {
            idle_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        ..Settings::default()
    };
    let mut srv = InProcess::start(&[plain("pop3s").implicit_tls(true)], settings);
    // Connect and say nothing: the server gives up on the handshake and closes.
    let mut c = Client::connect(srv.addr("pop3s"));
    let start = Instant::now();
    assert_eq!(c.rest(), "");
    assert!(start.elapsed() < WAIT);
    srv.stop().unwrap();
}

#[test]
fn implicit_tls_listener_without_certificate_is_a_config_error() {
    let listeners = Listeners::bind_addresses(&[plain("x").implicit_tls(true)]).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt
        .block_on(server::serve(
            listeners,
            Settings::default(),
            echo_handler(),
            async {},
        ))
        .unwrap_err();
    assert!(format!("{err:#}").contains("needs TLS"), "{err:#}");
    assert_eq!(mailkit::exit::code_of(&err), mailkit::exit::CONFIG);
}

#[test]
fn binding_a_busy_port_fails_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = ListenerSpec::new(taken.local_addr().unwrap(), "smtp");
    let err = Listeners::bind_addresses(&[spec]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("listening on 127.0.0.1:") && msg.contains("(smtp)"),
        "{msg}"
    );
    assert!(Listeners::bind_addresses(&[]).is_err());
}

#[test]
fn shutdown_tells_sessions_stops_accepting_and_returns() {
    let mut srv = InProcess::start(&[plain("smtp")], Settings::default());
    let addr = srv.addr("smtp");
    let mut c = Client::connect(addr);
    assert!(c.line().starts_with("HELLO"));
    srv.stop().unwrap();
    assert_eq!(c.line(), "SHUTDOWN");
    assert_eq!(c.rest(), "");
    // The listening socket is closed.
    assert!(TcpStream::connect_timeout(&addr, WAIT).is_err());
}

#[test]
fn shutdown_aborts_sessions_that_outlive_the_grace_period() {
    let settings = Settings {
        limits: Limits {
            shutdown_grace: Duration::from_millis(300),
            ..Limits::default()
        },
        ..Settings::default()
    };
    let mut srv = InProcess::start(&[plain("stubborn")], settings);
    let mut c = Client::connect(srv.addr("stubborn"));
    assert!(c.line().starts_with("HELLO stubborn"));
    let start = Instant::now();
    srv.stop().unwrap();
    assert!(start.elapsed() < WAIT);
    // Aborted without a goodbye: the connection is simply closed.
    assert_eq!(c.rest(), "");
}

// ---------------------------------------------------------------------------------------------
// Child processes: this test binary re-run as a daemon.

/// The daemon side of the process tests. `MK_CHILD_MODE=serve`: listeners from `MK_CHILD_SPECS`
/// (`role=addr[/tls],...`), SIGTERM/SIGINT shutdown, optional `MK_CHILD_RUN_AS`.
/// `MK_CHILD_MODE=inetd`: one session on stdin/stdout for role `MK_CHILD_ROLE`.
/// TLS from `MK_CHILD_CERT`/`MK_CHILD_KEY`. Without `MK_CHILD_MODE` it does nothing.
#[test]
fn child_main() {
    let Ok(mode) = std::env::var("MK_CHILD_MODE") else {
        return;
    };
    mailkit::log::set_program("mkchild");
    let env = |k: &str| std::env::var(k).ok();
    let mut settings = Settings::default();
    if let (Some(cert), Some(key)) = (env("MK_CHILD_CERT"), env("MK_CHILD_KEY")) {
        settings.tls = Some(acceptor(Path::new(&cert), Path::new(&key)));
    }
    settings.run_as = env("MK_CHILD_RUN_AS").map(|user| server::RunAs { user, group: None });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        match mode.as_str() {
            "serve" => {
                let shutdown = server::shutdown_signal()?;
                let specs: Vec<ListenerSpec> = env("MK_CHILD_SPECS")
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| {
                        let (role, addr) = s.split_once('=').unwrap();
                        let (addr, tls) = match addr.strip_suffix("/tls") {
                            Some(a) => (a, true),
                            None => (addr, false),
                        };
                        ListenerSpec::new(addr.parse().unwrap(), role)
                            .implicit_tls(tls)
                            .busy_reply(b"BUSY\r\n")
                    })
                    .collect();
                let listeners = Listeners::bind(&specs)?;
                // As the daemon frame does: root is dropped after binding, before serving.
                if let Some(run_as) = &settings.run_as {
                    server::drop_privileges(run_as)?;
                }
                if listeners.is_activated() {
                    mailkit::log::line("socket activated");
                }
                server::serve(listeners, settings, echo_handler(), shutdown).await
            }
            "inetd" => {
                let role = env("MK_CHILD_ROLE").unwrap_or("inetd".into());
                let tls = env("MK_CHILD_IMPLICIT_TLS").is_some();
                server::inetd(&role, tls, settings, echo_handler()).await
            }
            other => panic!("unknown MK_CHILD_MODE {other}"),
        }
    });
    // Exit here: a pending blocking stdin read must not keep the process alive, and the
    // test harness's own output is not wanted after the session.
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("mkchild: {e:#}");
            std::process::exit(mailkit::exit::code_of(&e) as i32)
        }
    }
}

/// The args that make this test binary run only `child_main`.
fn child_args() -> Vec<String> {
    [
        "child_main",
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn child_command(mode: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(child_args()).env("MK_CHILD_MODE", mode);
    cmd
}

/// A running child daemon whose stderr is read line by line on a thread.
struct ChildDaemon {
    child: common::KillOnDrop,
    stderr: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl ChildDaemon {
    fn spawn(mut cmd: Command) -> ChildDaemon {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, stderr) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildDaemon {
            child: common::KillOnDrop(child),
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        self.try_wait_for(needle)
            .unwrap_or_else(|| panic!("no stderr line with {needle:?}; saw {:?}", self.seen))
    }

    /// Waits for a stderr line containing `needle`; `None` when stderr ends (the child
    /// exited) or after [`WAIT`].
    fn try_wait_for(&mut self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + WAIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return Some(l);
                    }
                }
                Err(_) => break,
            }
        }
        None
    }

    /// The port from `mkchild: listening on 127.0.0.1:PORT (role)`.
    fn port_of(&mut self, role: &str) -> u16 {
        let l = self.wait_for(&format!("({role})"));
        let (got, addr) =
            common::listening_line(&l).unwrap_or_else(|| panic!("unexpected line {l}"));
        assert_eq!(got, role, "{l}");
        addr.port()
    }

    /// systemd-socket-activate `cmd` ([`activate_command`]) once it says it listens on
    /// `port`; `None` when it could not bind it because a parallel test took it meanwhile.
    fn activated(cmd: Command, port: u16) -> Option<ChildDaemon> {
        let mut d = ChildDaemon::spawn(cmd);
        if d.try_wait_for(&format!("Listening on 127.0.0.1:{port} as "))
            .is_some()
        {
            return Some(d);
        }
        let seen = d.seen.join("\n");
        assert!(common::port_taken(&seen), "systemd-socket-activate: {seen}");
        None
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("child did not exit; stderr {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn sigterm_stops_a_daemon_cleanly_and_it_reports_its_ports() {
    let mut cmd = child_command("serve");
    cmd.env("MK_CHILD_SPECS", "one=127.0.0.1:0,two=127.0.0.1:0");
    let mut d = ChildDaemon::spawn(cmd);
    let p1 = d.port_of("one");
    let p2 = d.port_of("two");
    let mut c = Client::connect(loopback(p1));
    assert!(c.line().starts_with("HELLO one"));
    let mut c2 = Client::connect(loopback(p2));
    assert!(c2.line().starts_with("HELLO two"));
    d.signal("-TERM");
    assert_eq!(c.line(), "SHUTDOWN");
    assert_eq!(c2.line(), "SHUTDOWN");
    let st = d.wait_exit();
    assert!(st.success(), "exit {st:?}; stderr {:?}", d.seen);
    d.wait_for("SIGTERM received");
}

#[test]
fn sigint_stops_a_daemon_too() {
    let mut cmd = child_command("serve");
    cmd.env("MK_CHILD_SPECS", "one=127.0.0.1:0");
    let mut d = ChildDaemon::spawn(cmd);
    let p = d.port_of("one");
    let mut c = Client::connect(loopback(p));
    assert!(c.line().starts_with("HELLO one"));
    d.signal("-INT");
    assert_eq!(c.line(), "SHUTDOWN");
    assert!(d.wait_exit().success());
}

#[test]
fn root_is_dropped_to_the_configured_user_after_binding() {
    assert_eq!(
        mailkit::os::euid(),
        0,
        "this test runs as root (the CI container does)"
    );
    let mut cmd = child_command("serve");
    cmd.env("MK_CHILD_SPECS", "one=127.0.0.1:0")
        .env("MK_CHILD_RUN_AS", "nobody");
    let mut d = ChildDaemon::spawn(cmd);
    let p = d.port_of("one");
    let mut c = Client::connect(loopback(p));
    assert!(c.line().starts_with("HELLO one"));
    let (uid, _) = mailkit::os::lookup_user("nobody").unwrap().unwrap();
    assert_eq!(c.ask("WHOAMI"), format!("UID {uid}"));
    d.signal("-TERM");
    assert!(d.wait_exit().success());
}

#[test]
fn an_unknown_run_as_user_stops_the_daemon() {
    let mut cmd = child_command("serve");
    cmd.env("MK_CHILD_SPECS", "one=127.0.0.1:0")
        .env("MK_CHILD_RUN_AS", "no-such-user-mailkit");
    let mut d = ChildDaemon::spawn(cmd);
    let st = d.wait_exit();
    assert_eq!(
        st.code(),
        Some(mailkit::exit::CONFIG as i32),
        "{:?}",
        d.seen
    );
    d.wait_for("switching to user no-such-user-mailkit");
}

/// Port from `systemd-socket-activate`'s own log line (it binds the socket itself).
fn activate_command(listen: SocketAddr, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg(format!("--listen={listen}"));
    cmd.args(extra);
    for (k, v) in env {
        // systemd-socket-activate passes only what -E names (plus LISTEN_*) to the child.
        cmd.arg(format!("--setenv={k}={v}"));
    }
    // Through sh only to send the test harness's own banner on stdout to /dev/null: with
    // `--inetd` stdout is the client socket too, and the session must use stdin's socket.
    cmd.args(["/bin/sh", "-c", "exec \"$0\" \"$@\" >/dev/null"]);
    cmd.arg(std::env::current_exe().unwrap());
    cmd.args(child_args());
    cmd
}

#[test]
fn systemd_socket_activation_passes_named_listeners() {
    // The specs say port 0 and two roles; the inherited fd named "second" must be used for the
    // "second" role, with its real address. systemd-socket-activate cannot bind port 0: a
    // port taken meanwhile makes it exit, and another is tried.
    let (mut d, port) = common::with_unused_ports(|[port]| {
        let cmd = activate_command(
            loopback(port),
            &["--fdname=second"],
            &[
                ("MK_CHILD_MODE", "serve"),
                ("MK_CHILD_SPECS", "first=127.0.0.1:0,second=127.0.0.1:0"),
            ],
        );
        ChildDaemon::activated(cmd, port).map(|d| (d, port))
    });
    let addr = loopback(port);
    // systemd-socket-activate starts the daemon on the first connection.
    let deadline = Instant::now() + WAIT;
    let mut c = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => break Client::from_stream(s),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!(
                "connect to socket-activated {addr}: {e}; stderr {:?}",
                d.seen
            ),
        }
    };
    let hello = c.line();
    assert!(
        hello.starts_with("HELLO second 127.0.0.1:"),
        "{hello}; stderr {:?}",
        d.seen
    );
    d.wait_for("socket activated");
    assert_eq!(d.port_of("second"), port);
    assert_eq!(c.ask("ECHO activated"), "activated");
    d.signal("-TERM");
    let _ = d.wait_exit();
}

#[test]
fn inetd_mode_on_a_socket_from_a_superserver_with_implicit_tls() {
    let dir = common::scratch();
    let (ca, cert, key) = certs(dir.path());
    // systemd-socket-activate --accept --inetd: one child per connection with the socket on
    // stdin/stdout, as inetd does (on a port picked up front, again when it was taken).
    let (d, port) = common::with_unused_ports(|[port]| {
        let cmd = activate_command(
            loopback(port),
            &["--accept", "--inetd"],
            &[
                ("MK_CHILD_MODE", "inetd"),
                ("MK_CHILD_ROLE", "pop3s"),
                ("MK_CHILD_IMPLICIT_TLS", "1"),
                ("MK_CHILD_CERT", cert.to_str().unwrap()),
                ("MK_CHILD_KEY", key.to_str().unwrap()),
            ],
        );
        ChildDaemon::activated(cmd, port).map(|d| (d, port))
    });
    let addr = loopback(port);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let config = mailkit::tls::client_config(Some(&ca)).unwrap();
    let (lines, local) = rt.block_on(async {
        let deadline = Instant::now() + WAIT;
        let tcp = loop {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("connect {addr}: {e}"),
            }
        };
        let local = tcp.local_addr().unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(
            WAIT,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .unwrap()
        .unwrap();
        let mut tls = tokio::io::BufReader::new(tls);
        tls.get_mut().write_all(b"PEER\r\nQUIT\r\n").await.unwrap();
        let mut lines = Vec::new();
        for _ in 0..3 {
            let mut l = String::new();
            tokio::time::timeout(WAIT, tls.read_line(&mut l))
                .await
                .unwrap()
                .unwrap();
            lines.push(l.trim_end().to_string());
        }
        (lines, local)
    });
    drop(d);
    assert_eq!(
        lines[0],
        format!("HELLO pop3s {local} TLSv1.3"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(&format!("PEER {local} LOCAL {addr} TLS TLSv1.3")),
        "{lines:?}"
    );
    assert_eq!(lines[2], "BYE");
}

/// Runs the child `cmd` (under `timeout 20`, so it cannot hang) with `input` on stdin and
/// asserts it exited 0.
fn run_on_pipes(cmd: &Command, input: &[u8]) -> std::process::Output {
    let out = common::run_with_input(
        Command::new("timeout")
            .arg("20")
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .envs(
                cmd.get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            ),
        input,
    );
    assert!(
        out.status.success(),
        "{} / {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn inetd_mode_on_pipes_takes_the_peer_from_tcpremoteip() {
    let mut cmd = child_command("inetd");
    cmd.env("MK_CHILD_ROLE", "smtp")
        .env("TCPREMOTEIP", "192.0.2.9")
        .env("TCPREMOTEPORT", "4711")
        .env("TCPLOCALIP", "198.51.100.1")
        .env("TCPLOCALPORT", "25");
    let out = run_on_pipes(&cmd, b"ECHO over pipes\r\nPEER\r\nQUIT\r\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The test harness may print its own banner first; the session lines follow in order.
    let session: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("HELLO"))
        .collect();
    assert_eq!(
        session,
        vec![
            "HELLO smtp 192.0.2.9:4711 plain",
            "over pipes",
            "PEER 192.0.2.9:4711 LOCAL 198.51.100.1:25 TLS none",
            "BYE",
        ],
        "{stdout}"
    );
}

#[test]
fn inetd_mode_on_pipes_without_env_has_no_peer_and_ends_at_eof() {
    let cmd = child_command("inetd");
    let out = run_on_pipes(&cmd, b"ECHO x\r\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("HELLO inetd none plain\r\nx\r\n"),
        "{stdout:?}"
    );
}

#[test]
fn a_handler_panic_does_not_take_the_server_down() {
    // A session task that panics is logged; the server keeps accepting.
    let listeners = Listeners::bind_addresses(&[plain("p")]).unwrap();
    let addr = listeners.addrs()[0].0;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handler: Handler = Arc::new(|mut conn: Connection| {
        Box::pin(async move {
            if let Ok(Line::Complete { text, .. }) = conn.read_line(MAX_LINE).await {
                if text == b"PANIC" {
                    panic!("handler bug");
                }
                conn.write_all(b"FINE\r\n").await?;
            }
            Ok(())
        })
    });
    let t = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(server::serve(
            listeners,
            Settings::default(),
            handler,
            async {
                let _ = stop_rx.await;
            },
        ))
    });
    let mut c = Client::connect(addr);
    c.send("PANIC\r\n");
    assert_eq!(c.rest(), "");
    let mut c = Client::connect(addr);
    assert_eq!(c.ask("OK"), "FINE");
    let _ = stop_tx.send(());
    t.join().unwrap().unwrap();
}
