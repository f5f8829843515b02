//! msend against real peers: aiosmtpd capture (byte-exact), smtp-sink, Postfix submission and
//! submissions with Dovecot SASL, dnsmasq MX records, and small scripted SMTP servers on
//! loopback sockets for replies at each stage.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every child gets at most this long.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

fn msend(home: &Path) -> Command {
    let mut c = Command::new(common::bin("msend"));
    c.env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("MSEND_PASSWORD")
        .env_remove("MAILKIT_CONFIG")
        .env("USER", "tester")
        .arg("--timeout")
        .arg("10");
    c
}

/// Runs with `input` on stdin, killing the child after [`CHILD_LIMIT`].
fn run(cmd: &mut Command, input: &[u8]) -> Output {
    run_keeping_stdin(cmd, input, false)
}

/// [`run`]; with `keep_open` stdin stays open after `input` until the child ended (a client
/// that stops talking without closing).
fn run_keeping_stdin(cmd: &mut Command, input: &[u8], keep_open: bool) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        // Returned (and dropped) only after the child ended.
        keep_open.then_some(stdin)
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            panic!("msend did not finish within {CHILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---------------------------------------------------------------------------------------------
// A scripted SMTP server: real socket, fixed replies per command, records what it received.

#[derive(Clone)]
struct Script {
    greeting: &'static str,
    ehlo: &'static str,
    helo: &'static str,
    mail: &'static str,
    rcpt: &'static str,
    data: &'static str,
    end: &'static str,
    starttls: &'static str,
    /// RCPT replies by recipient: the first entry whose text the RCPT line contains wins over
    /// `rcpt`.
    rcpt_to: &'static [(&'static str, &'static str)],
}

impl Default for Script {
    fn default() -> Self {
        Script {
            greeting: "220 scripted ESMTP\r\n",
            ehlo: "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            helo: "250 scripted\r\n",
            mail: "250 2.1.0 ok\r\n",
            rcpt: "250 2.1.5 ok\r\n",
            data: "354 go\r\n",
            end: "250 2.0.0 queued\r\n",
            starttls: "220 2.0.0 go ahead\r\n",
            rcpt_to: &[],
        }
    }
}

/// Starts a one-connection scripted server on `ip`; returns its port and a receiver for the
/// bytes it received.
fn scripted_on(ip: &str, script: Script) -> (u16, mpsc::Receiver<Vec<u8>>) {
    scripted_multi(ip, script, 1)
}

/// Like [`scripted_on`] for `conns` connections one after the other (bytes of all of them).
fn scripted_multi(ip: &str, script: Script, conns: usize) -> (u16, mpsc::Receiver<Vec<u8>>) {
    let (port, each) = scripted_seq(ip, vec![script; conns]);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..conns {
            let Ok(bytes) = each.recv() else { return };
            seen.extend(bytes);
        }
        let _ = tx.send(seen);
    });
    (port, rx)
}

/// Scripted servers on one port of `ip`, one script per connection in turn; the bytes of each
/// connection as it ends.
fn scripted_seq(ip: &str, scripts: Vec<Script>) -> (u16, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for script in scripts {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut seen = Vec::new();
            serve_one(stream, &script, &mut seen);
            let _ = tx.send(seen);
        }
    });
    (port, rx)
}

fn serve_one(stream: TcpStream, script: &Script, seen: &mut Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let _ = w.write_all(script.greeting.as_bytes());
    if !script.greeting.starts_with("220") {
        // Wait for QUIT (or the close) after a refusing greeting.
        let mut line = Vec::new();
        let _ = r.read_until(b'\n', &mut line);
        seen.extend_from_slice(&line);
        let _ = w.write_all(b"221 bye\r\n");
        return;
    }
    loop {
        let mut line = Vec::new();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        seen.extend_from_slice(&line);
        let upper = String::from_utf8_lossy(&line).to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            script.ehlo
        } else if upper.starts_with("HELO") {
            script.helo
        } else if upper.starts_with("MAIL") {
            script.mail
        } else if upper.starts_with("RCPT") {
            let line = String::from_utf8_lossy(&line);
            script
                .rcpt_to
                .iter()
                .find(|(who, _)| line.contains(who))
                .map_or(script.rcpt, |(_, reply)| reply)
        } else if upper.starts_with("DATA") {
            script.data
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            "250 ok\r\n"
        } else if upper.starts_with("QUIT") {
            let _ = w.write_all(b"221 bye\r\n");
            break;
        } else if upper.starts_with("STARTTLS") {
            let _ = w.write_all(script.starttls.as_bytes());
            // Whatever comes now must be a TLS handshake, never SMTP in clear.
            let mut rest = vec![0u8; 4096];
            if let Ok(n) = r.read(&mut rest) {
                seen.extend_from_slice(&rest[..n]);
            }
            break;
        } else {
            "500 what\r\n"
        };
        let _ = w.write_all(reply.as_bytes());
        if upper.starts_with("DATA") && reply.starts_with("354") {
            loop {
                let mut l = Vec::new();
                match r.read_until(b'\n', &mut l) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                seen.extend_from_slice(&l);
                if l == b".\r\n" {
                    break;
                }
            }
            let _ = w.write_all(script.end.as_bytes());
        }
    }
}

fn scripted(script: Script) -> (u16, mpsc::Receiver<Vec<u8>>) {
    scripted_on("127.0.0.1", script)
}

const SIMPLE: &[u8] = b"From: a@example.test\nTo: b@example.test\nSubject: hi\n\nhello\n";

// ---------------------------------------------------------------------------------------------

#[test]
fn capture_receives_byte_exact_with_bcc_removed_and_dots_intact() {
    let home = common::scratch();
    let tok = common::token();
    let input = format!(
        "From: Alice <alice@example.test>\n\
         To: Bob <bob@example.test>, carol@example.test\n\
         Cc: dave@example.test\n\
         Bcc: secret@example.test\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\n\
         Message-ID: <{tok}@example.test>\n\
         Subject: {tok}\n\
         \n\
         .leading dot\n\
         ..two dots\n\
         .\n\
         last line without newline"
    );
    let o = run(
        msend(home.path())
            .args(["-t", "-i", "-oem", "-odi", "-f", "alice@example.test"])
            .args(["--no-tls", "--server"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT"))),
        input.as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (bytes, env) = common::captured(&common::capture_dir(), &tok).expect("message captured");
    let expected = format!(
        "From: Alice <alice@example.test>\r\n\
         To: Bob <bob@example.test>, carol@example.test\r\n\
         Cc: dave@example.test\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{tok}@example.test>\r\n\
         Subject: {tok}\r\n\
         \r\n\
         .leading dot\r\n\
         ..two dots\r\n\
         .\r\n\
         last line without newline\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&bytes), expected);
    assert_eq!(env["mail_from"], "alice@example.test");
    let rcpts: Vec<&str> = env["rcpt_tos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        rcpts,
        [
            "bob@example.test",
            "carol@example.test",
            "dave@example.test",
            "secret@example.test"
        ]
    );
}

#[test]
fn lone_dot_ends_input_without_i_and_headers_are_added() {
    let home = common::scratch();
    let tok = common::token();
    let input = format!("Subject: {tok}\n\nfirst\n.\nnot sent\n");
    let o = run(
        msend(home.path())
            .args(["-F", "Test User", "-f", "sender@example.test", "--no-tls"])
            .arg("--server")
            .arg(format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT")))
            .arg("rcpt@example.test"),
        input.as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (bytes, env) = common::captured(&common::capture_dir(), &tok).expect("captured");
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("From: Test User <sender@example.test>\r\nDate: "),
        "{text}"
    );
    assert!(text.contains("\r\nMessage-ID: <"), "{text}");
    assert!(text.ends_with("\r\n\r\nfirst\r\n"), "{text}");
    assert!(!text.contains("not sent"));
    assert_eq!(env["rcpt_tos"][0], "rcpt@example.test");
}

#[test]
fn smtp_sink_accepts() {
    let home = common::scratch();
    let o = run(
        msend(home.path())
            .args(["-oi", "--no-tls", "--server"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_SINK_PORT")))
            .args(["-f", "a@example.test", "x@example.test,y@example.test"]),
        SIMPLE,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn starttls_submission_with_auth_delivers_and_transcript_redacts_password() {
    let home = common::scratch();
    let tok = common::token();
    let msg = format!("Subject: {tok}\n\nvia submission\n");
    let o = run(
        msend(home.path())
            .env("MSEND_PASSWORD", "password")
            .args(["-v", "--user", "alice", "-f", "alice@example.test"])
            .arg("--ca-file")
            .arg(common::peer("PEER_CA_FILE"))
            .arg("--server")
            .arg(format!(
                "localhost:{}",
                common::peer("PEER_SUBMISSION_PORT")
            ))
            .arg("bob@example.test"),
        msg.as_bytes(),
    );
    let err = stderr(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(err.contains("-> STARTTLS"), "{err}");
    assert!(err.contains("AUTH PLAIN <redacted>"), "{err}");
    assert!(
        !err.contains("AGFsaWNlAHBhc3N3b3Jk"),
        "password leaked: {err}"
    );
    // Postfix delivers to bob's Maildir; wait for it.
    let maildir = PathBuf::from(common::peer("PEER_MAIL_DIR"))
        .join("bob")
        .join("new");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = std::fs::read_dir(&maildir)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&tok)));
        if found {
            break;
        }
        assert!(Instant::now() < deadline, "message not delivered to bob");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn implicit_tls_auth_and_wrong_password() {
    let home = common::scratch();
    let server = format!("localhost:{}", common::peer("PEER_SUBMISSIONS_PORT"));
    let base = |pw: &str| {
        let mut c = msend(home.path());
        c.env("MSEND_PASSWORD", pw)
            .args(["--tls", "--user", "alice", "-f", "alice@example.test"])
            .arg("--ca-file")
            .arg(common::peer("PEER_CA_FILE"))
            .arg("--server")
            .arg(&server)
            .arg("carol@example.test");
        c
    };
    let o = run(&mut base("password"), SIMPLE);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&mut base("wrong"), SIMPLE);
    assert_eq!(code(&o), 77, "{}", stderr(&o));
    assert!(stderr(&o).contains("535"), "{}", stderr(&o));
    // ... or from ~/.netrc.
    std::fs::write(
        home.path().join(".netrc"),
        "machine other.test login x password y\nmachine localhost login alice password password\n",
    )
    .unwrap();
    let mut c = base("unused");
    c.env_remove("MSEND_PASSWORD");
    let o = run(&mut c, SIMPLE);
    assert_eq!(code(&o), 0, "netrc: {}", stderr(&o));
    // The password may also come from --password-command.
    let mut c = base("wrong");
    c.env_remove("MSEND_PASSWORD")
        .args(["--password-command", "echo password"]);
    let o = run(&mut c, SIMPLE);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn hanging_password_command_times_out_and_its_children_are_killed() {
    let home = common::scratch();
    let cfgdir = home.path().join(".config/mailkit");
    std::fs::create_dir_all(&cfgdir).unwrap();
    let pidfile = home.path().join("bg.pid");
    // The command never ends, and leaves a background child holding msend's stderr.
    std::fs::write(
        cfgdir.join("msend.toml"),
        format!(
            "default = \"hang\"\n[accounts.hang]\nserver = \"localhost\"\nport = {}\nuser = \"alice\"\npassword_command = \"sleep 100 & echo $! > {}; sleep 100\"\npassword_command_timeout = 1\nca_file = \"{}\"\n",
            common::peer("PEER_SUBMISSION_PORT"),
            pidfile.display(),
            common::peer("PEER_CA_FILE")
        ),
    )
    .unwrap();
    let o = run(msend(home.path()).arg("x@example.test"), SIMPLE);
    assert_eq!(code(&o), 78, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("password command") && stderr(&o).contains("timed out after 1s"),
        "{}",
        stderr(&o)
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    // Killed with the command's process group: gone, or a zombie not yet reaped.
    let gone = std::fs::read_to_string(&stat).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim().starts_with('Z'))
    });
    assert!(gone, "background child {} survived", pid.trim());
}

#[test]
fn untrusted_certificate_fails_and_nothing_goes_in_clear() {
    let home = common::scratch();
    // The scripted server offers STARTTLS; its "TLS" is whatever it receives next. The peers'
    // CA is not among the webpki roots, and the scripted server has no certificate at all.
    let script = Script {
        ehlo: "250-scripted\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n",
        ..Script::default()
    };
    let (port, rx) = scripted(script);
    let o = run(
        msend(home.path())
            .env("MSEND_PASSWORD", "topsecret")
            .args(["--user", "alice", "-f", "a@example.test", "--server"])
            .arg(format!("localhost:{port}"))
            .arg("b@example.test"),
        SIMPLE,
    );
    let c = code(&o);
    assert!(c == 75 || c == 69, "exit {c}: {}", stderr(&o));
    assert!(stderr(&o).contains("TLS"), "{}", stderr(&o));
    let seen = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let seen = String::from_utf8_lossy(&seen);
    assert!(!seen.contains("AUTH"), "{seen}");
    assert!(!seen.contains("MAIL FROM"), "{seen}");
    assert!(!seen.contains("hello"), "{seen}");

    // A real TLS server (capture, certificate from the peers' CA) against the webpki roots.
    let o = run(
        msend(home.path())
            .args(["-f", "a@example.test", "--server"])
            .arg(format!("localhost:{}", common::peer("PEER_CAPTURE_PORT")))
            .arg("b@example.test"),
        b"Subject: must-not-arrive-untrusted\n\nx\n",
    );
    let c = code(&o);
    assert!(c == 75 || c == 69, "exit {c}: {}", stderr(&o));
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));
}

/// Sends `input` to b@example.test through `server` with the defaults (STARTTLS required,
/// webpki roots) and `--queue queue`.
fn send_with_queue(home: &Path, queue: &Path, server: &str, input: &[u8]) -> Output {
    run(
        msend(home)
            .args(["-f", "a@example.test", "--queue"])
            .arg(queue)
            .args(["--server", server, "b@example.test"]),
        input,
    )
}

/// An untrusted certificate is permanent for msend (exit 69, not spooled): retrying cannot help
/// until the trust anchors or the server change. mrelayd defers the same failure
/// (tests/mrelayd_remote.rs `tls_verify_against_webpki_roots_defers`).
#[test]
fn untrusted_certificate_is_permanent_and_not_spooled() {
    let home = common::scratch();
    let queue = home.path().join("spool");
    let server = format!("localhost:{}", common::peer("PEER_CAPTURE_PORT"));
    let o = send_with_queue(
        home.path(),
        &queue,
        &server,
        b"Subject: must-not-arrive-untrusted-2\n\nx\n",
    );
    assert_eq!(code(&o), 69, "{}", stderr(&o));
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));
    let spooled = std::fs::read_dir(&queue)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(spooled, 0, "a trust failure must not be spooled");
}

#[test]
fn auth_refused_without_tls() {
    let home = common::scratch();
    let o = run(
        msend(home.path()).env("MSEND_PASSWORD", "x").args([
            "--no-tls",
            "--user",
            "alice",
            "--server",
            "127.0.0.1:1",
            "b@x.test",
        ]),
        SIMPLE,
    );
    assert_eq!(code(&o), 78, "{}", stderr(&o));
}

/// The first free port on 127.0.0.2 that nothing listens on at 127.0.0.1.
fn port_down_on_mx1() -> (TcpListener, u16) {
    for _ in 0..50 {
        let l = TcpListener::bind("127.0.0.2:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(300),
        )
        .is_err()
        {
            return (l, port);
        }
    }
    panic!("no port free on both addresses");
}

#[test]
fn direct_delivery_falls_back_to_second_mx_with_starttls() {
    let home = common::scratch();
    let dir = common::scratch();
    let cap = dir.path().join("cap");
    std::fs::create_dir(&cap).unwrap();
    let (probe, port) = port_down_on_mx1();
    drop(probe);
    // capture.py binds, then drops to nobody: its directory must be nobody's.
    Command::new("chown")
        .args(["65534:65534"])
        .arg(&cap)
        .status()
        .unwrap();
    let server = Daemon::start(
        Command::new("/usr/bin/python3")
            .arg(PathBuf::from(common::peer("PEER_BIN_DIR")).join("capture.py"))
            .args(["127.0.0.2", &port.to_string()])
            .arg(&cap)
            .arg(common::peer("PEER_CERT_FILE"))
            .arg(common::peer("PEER_KEY_FILE")),
        "127.0.0.2",
        port,
    );
    let tok = common::token();
    let o = run(
        msend(home.path())
            .args(["-v", "--direct", "--resolver"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_DNS_PORT")))
            .args(["--smtp-port", &port.to_string(), "-f", "bob@other.test"])
            .arg("alice@example.test"),
        format!("Subject: {tok}\n\ndirect\n").as_bytes(),
    );
    let found = common::captured(&cap, &tok);
    drop(server);
    let err = stderr(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(err.contains("mx1.example.test[127.0.0.1]"), "{err}");
    assert!(
        err.contains("Connected to mx2.example.test[127.0.0.2]"),
        "{err}"
    );
    let (bytes, env) = found.expect("captured on mx2");
    assert!(String::from_utf8_lossy(&bytes).ends_with("\r\n\r\ndirect\r\n"));
    assert_eq!(env["tls"], true, "opportunistic STARTTLS used");
    assert_eq!(env["rcpt_tos"][0], "alice@example.test");
}

#[test]
fn direct_null_mx_and_nxdomain_are_permanent() {
    let home = common::scratch();
    for (rcpt, what) in [
        ("x@nullmx.test", "null MX"),
        ("x@nonexistent-domain.test", "NXDOMAIN"),
    ] {
        let o = run(
            msend(home.path())
                .args(["--direct", "--resolver"])
                .arg(format!("127.0.0.1:{}", common::peer("PEER_DNS_PORT")))
                .args(["--smtp-port", "9", "-f", "a@example.test", rcpt]),
            SIMPLE,
        );
        assert_eq!(code(&o), 69, "{rcpt}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(rcpt) && err.contains(what), "{err}");
    }
}

#[test]
fn replies_at_each_stage_give_the_documented_exit_codes() {
    let cases: Vec<(Script, i32, &str)> = vec![
        (
            Script {
                greeting: "421 busy\r\n",
                ..Script::default()
            },
            75,
            "421",
        ),
        (
            Script {
                greeting: "554 go away\r\n",
                ..Script::default()
            },
            69,
            "554",
        ),
        (
            Script {
                mail: "451 4.3.0 try later\r\n",
                ..Script::default()
            },
            75,
            "451",
        ),
        (
            Script {
                mail: "553 5.7.1 sender refused\r\n",
                ..Script::default()
            },
            69,
            "553",
        ),
        (
            Script {
                rcpt: "550 5.1.1 no such user\r\n",
                ..Script::default()
            },
            67,
            "550 5.1.1",
        ),
        (
            Script {
                rcpt: "452 4.2.2 mailbox full\r\n",
                ..Script::default()
            },
            75,
            "452",
        ),
        (
            Script {
                data: "554 5.5.1 no data\r\n",
                ..Script::default()
            },
            69,
            "554",
        ),
        (
            Script {
                end: "451 4.3.0 local error\r\n",
                ..Script::default()
            },
            75,
            "451",
        ),
        (
            Script {
                end: "552 5.3.4 too big\r\n",
                ..Script::default()
            },
            69,
            "552",
        ),
        // EHLO refused: HELO fallback, then success.
        (
            Script {
                ehlo: "502 no ehlo\r\n",
                ..Script::default()
            },
            0,
            "",
        ),
    ];
    for (script, want, text) in cases {
        let home = common::scratch();
        let (port, rx) = scripted(script);
        let o = run(
            msend(home.path())
                .args(["--no-tls", "-f", "a@example.test", "--server"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("b@example.test"),
            SIMPLE,
        );
        let err = stderr(&o);
        assert_eq!(code(&o), want, "{text}: {err}");
        if want != 0 {
            assert!(
                err.contains(text) && err.contains("b@example.test"),
                "{err}"
            );
            assert_eq!(err.lines().count(), 1, "one line per failure: {err}");
        } else {
            let seen = String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(20)).unwrap())
                .into_owned();
            assert!(seen.contains("HELO "), "{seen}");
        }
    }
}

#[test]
fn temporary_failure_is_spooled_then_flushed() {
    let home = common::scratch();
    let spool = common::scratch();
    let q = spool.path().join("q");
    let tok = common::token();
    let msg = format!("From: a@example.test\nSubject: {tok}\n\nspooled body\n.dot\n");
    let (port, _rx) = scripted(Script {
        rcpt: "451 4.7.1 greylisted\r\n",
        ..Script::default()
    });
    let o = run(
        msend(home.path())
            .args(["-i", "--no-tls", "-f", "a@example.test", "--queue"])
            .arg(&q)
            .arg("--server")
            .arg(format!("127.0.0.1:{port}"))
            .arg("spooled@example.test"),
        msg.as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("greylisted"), "{}", stderr(&o));
    let o = run(msend(home.path()).arg("--queue").arg(&q).arg("--list"), b"");
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(listing.contains("spooled@example.test"), "{listing}");
    assert!(listing.contains("greylisted"), "{listing}");
    // Flush while the server still fails: stays queued, exit 75.
    let o = run(
        msend(home.path())
            .args(["--flush", "--no-tls", "--server", "127.0.0.1:1", "--queue"])
            .arg(&q),
        b"",
    );
    assert_eq!(code(&o), 75, "{}", stderr(&o));
    assert_eq!(
        std::fs::read_dir(&q)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "msg"))
            .count(),
        1
    );
    // Flush to capture: delivered byte-exact, then removed from the spool.
    let o = run(
        msend(home.path())
            .args(["--flush", "--no-tls", "--server"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT")))
            .arg("--queue")
            .arg(&q),
        b"",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (bytes, env) =
        common::captured(&common::capture_dir(), &tok).expect("flushed message captured");
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.ends_with("\r\n\r\nspooled body\r\n.dot\r\n"), "{text}");
    assert_eq!(env["rcpt_tos"][0], "spooled@example.test");
    assert_eq!(env["mail_from"], "a@example.test");
    let o = run(msend(home.path()).arg("--queue").arg(&q).arg("--list"), b"");
    assert!(String::from_utf8_lossy(&o.stdout).contains("empty"));
}

#[test]
fn flush_moves_permanent_failures_to_failed() {
    let home = common::scratch();
    let spool = common::scratch();
    let q = spool.path().join("q");
    let (port, _rx) = scripted(Script {
        greeting: "421 down\r\n",
        ..Script::default()
    });
    let o = run(
        msend(home.path())
            .args(["--no-tls", "-f", "a@example.test", "--queue"])
            .arg(&q)
            .arg("--server")
            .arg(format!("127.0.0.1:{port}"))
            .arg("gone@example.test"),
        SIMPLE,
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (port, _rx) = scripted(Script {
        rcpt: "550 5.1.1 unknown user\r\n",
        ..Script::default()
    });
    let o = run(
        msend(home.path())
            .args(["--flush", "--no-tls", "--server"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--queue")
            .arg(&q),
        b"",
    );
    let err = stderr(&o);
    assert_eq!(
        code(&o),
        67,
        "a rejected recipient, as for a direct send: {err}"
    );
    assert!(
        err.contains("550 5.1.1") && err.contains("gone@example.test"),
        "{err}"
    );
    let failed: Vec<_> = std::fs::read_dir(q.join("failed"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(failed.len(), 1);
    let o = run(msend(home.path()).arg("--queue").arg(&q).arg("--list"), b"");
    assert!(String::from_utf8_lossy(&o.stdout).contains("empty"));
}

#[test]
fn recipients_missing_and_bad_usage() {
    let home = common::scratch();
    let o = run(
        msend(home.path()).args(["-t", "--no-tls", "--server", "127.0.0.1:1"]),
        b"Subject: none\n\nx\n",
    );
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    let o = run(
        msend(home.path()).args(["--no-tls", "--server", "127.0.0.1:1"]),
        b"Subject: none\n\nx\n",
    );
    assert_eq!(code(&o), 64, "{}", stderr(&o));
    let o = run(
        msend(home.path()).args(["-t", "--no-tls", "--server", "127.0.0.1:1"]),
        b"To: a@x.test\nthis is not a header\n\nx\n",
    );
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    let o = run(msend(home.path()).args(["--bogus-flag"]), b"");
    assert_eq!(code(&o), 64);
    let o = run(msend(home.path()).arg("a@x.test"), SIMPLE);
    assert_eq!(code(&o), 78, "no server configured: {}", stderr(&o));
}

#[test]
fn server_with_port_zero_or_junk_is_bad_usage() {
    // One host:port parser (mrelayd's relayhost too): port 0, a non-decimal port, an empty
    // host and anything after `]` but `:PORT` are refused before any connection (exit 64).
    let home = common::scratch();
    for bad in [
        "127.0.0.1:0",
        "[127.0.0.1]:0",
        "[127.0.0.1]x",
        "[127.0.0.1]:+25",
        ":25",
        "127.0.0.1:",
    ] {
        let o = run(
            msend(home.path()).args(["--no-tls", "--server", bad, "a@x.test"]),
            SIMPLE,
        );
        assert_eq!(code(&o), 64, "--server {bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("--server"), "{bad}: {}", stderr(&o));
    }
}

#[test]
fn unknown_account_is_a_config_error_for_list_too() {
    // One account resolution: `-a NAME` that the configuration lacks is exit 78 whether the
    // run sends, flushes or lists.
    let home = common::scratch();
    let q = home.path().join("q");
    let o = run(
        msend(home.path())
            .args(["-a", "nosuch", "--queue"])
            .arg(&q)
            .arg("--list"),
        b"",
    );
    assert_eq!(code(&o), 78, "{}", stderr(&o));
    assert!(stderr(&o).contains("nosuch"), "{}", stderr(&o));
}

#[test]
fn accounts_from_user_config() {
    let home = common::scratch();
    let cfgdir = home.path().join(".config/mailkit");
    std::fs::create_dir_all(&cfgdir).unwrap();
    std::fs::write(
        cfgdir.join("msend.toml"),
        format!(
            "default = \"cap\"\n[accounts.cap]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"acct@example.test\"\n[accounts.sub]\nserver = \"localhost\"\nport = {}\nuser = \"alice\"\npassword_command = \"echo password\"\nca_file = \"{}\"\n",
            common::peer("PEER_CAPTURE_PORT"),
            common::peer("PEER_SUBMISSION_PORT"),
            common::peer("PEER_CA_FILE")
        ),
    )
    .unwrap();
    let tok = common::token();
    let o = run(
        msend(home.path()).arg("x@example.test"),
        format!("Subject: {tok}\n\nacct\n").as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (_, env) = common::captured(&common::capture_dir(), &tok).unwrap();
    assert_eq!(env["mail_from"], "acct@example.test");
    let o = run(
        msend(home.path()).args(["-a", "sub", "--quit-after", "auth", "-v"]),
        b"",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("235"), "{}", stderr(&o));
    let o = run(msend(home.path()).args(["-a", "nope", "x@y.test"]), SIMPLE);
    assert_eq!(code(&o), 78);
    std::fs::write(cfgdir.join("msend.toml"), "bogus_key = 1\n").unwrap();
    let o = run(msend(home.path()).arg("x@y.test"), SIMPLE);
    assert_eq!(code(&o), 78);
    assert!(stderr(&o).contains("bogus_key"), "{}", stderr(&o));
}

/// `-C FILE` takes a msend.toml (keys at the top level) as well as a mailkit config (keys in
/// [msend]), as msend(1) describes both (issue 12, docs).
#[test]
fn c_flag_reads_both_file_formats() {
    let home = common::scratch();
    let account = format!(
        "server = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"viac@example.test\"\n",
        common::peer("PEER_CAPTURE_PORT")
    );
    let user_format = home.path().join("mine.toml");
    std::fs::write(
        &user_format,
        format!("default = \"cap\"\n[accounts.cap]\n{account}"),
    )
    .unwrap();
    let system_format = home.path().join("mailkit.toml");
    std::fs::write(
        &system_format,
        format!("hostname = \"h.example.test\"\n[msend]\ndefault = \"cap\"\n[msend.accounts.cap]\n{account}"),
    )
    .unwrap();
    for file in [&user_format, &system_format] {
        let tok = common::token();
        let o = run(
            msend(home.path()).arg("-C").arg(file).arg("x@example.test"),
            format!("Subject: {tok}\n\nvia -C\n").as_bytes(),
        );
        assert_eq!(code(&o), 0, "{}: {}", file.display(), stderr(&o));
        let (_, env) = common::captured(&common::capture_dir(), &tok).unwrap();
        assert_eq!(env["mail_from"], "viac@example.test");
    }
    // A typo in either format still names the file, the line and the key.
    std::fs::write(&user_format, "default = \"cap\"\nbogus_key = 1\n").unwrap();
    let o = run(
        msend(home.path())
            .arg("-C")
            .arg(&user_format)
            .arg("x@y.test"),
        SIMPLE,
    );
    assert_eq!(code(&o), 78);
    assert!(
        stderr(&o).contains("mine.toml:2: key `bogus_key`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn quit_after_stops_without_sending() {
    let home = common::scratch();
    for stage in ["connect", "banner", "ehlo", "mail", "rcpt"] {
        let (port, rx) = scripted(Script::default());
        let o = run(
            msend(home.path())
                .args([
                    "--no-tls",
                    "--quit-after",
                    stage,
                    "-f",
                    "a@example.test",
                    "--server",
                ])
                .arg(format!("127.0.0.1:{port}"))
                .arg("b@example.test"),
            b"",
        );
        assert_eq!(code(&o), 0, "{stage}: {}", stderr(&o));
        let seen = String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(20)).unwrap())
            .into_owned();
        assert!(!seen.contains("DATA"), "{stage}: {seen}");
        assert!(seen.contains("QUIT"), "{stage}: {seen}");
        assert_eq!(
            seen.contains("MAIL"),
            stage == "mail" || stage == "rcpt",
            "{stage}: {seen}"
        );
        assert_eq!(seen.contains("RCPT"), stage == "rcpt", "{stage}: {seen}");
    }
}

#[test]
fn compose_dry_run_is_valid_mime() {
    let home = common::scratch();
    let att = home.path().join("report.pdf");
    std::fs::write(&att, b"%PDF-1.4 fake\x00\x01\x02").unwrap();
    let o = run(
        msend(home.path())
            .args([
                "--dry-run",
                "--from",
                "Jörg <joerg@example.test>",
                "--to",
                "a@example.test",
            ])
            .args(["--cc", "c@example.test", "--bcc", "hidden@example.test"])
            .args(["--subject", "Grüße aus Köln"])
            .arg("--attach")
            .arg(&att),
        "Hallo Welt — ünïcödé body\n".as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let dir = common::scratch();
    let eml = dir.path().join("m.eml");
    std::fs::write(&eml, &o.stdout).unwrap();
    let script = r#"
import sys, email, email.policy
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)
print(m['subject'])
print(m['from'])
print(m['to'])
print(m['cc'])
print(m['bcc'])
print(m.get_content_type())
body = m.get_body(preferencelist=('plain',))
print(body.get_content().strip())
atts = list(m.iter_attachments())
print(len(atts), atts[0].get_filename(), atts[0].get_content_type(), atts[0].get_content() == open(sys.argv[2], 'rb').read())
print(bool(m['date']), bool(m['message-id']))
"#;
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(&eml)
        .arg(&att)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Grüße aus Köln");
    assert_eq!(lines[1], "Jörg <joerg@example.test>");
    assert_eq!(lines[2], "a@example.test");
    assert_eq!(lines[3], "c@example.test");
    assert_eq!(lines[4], "None");
    assert_eq!(lines[5], "multipart/mixed");
    assert_eq!(lines[6], "Hallo Welt — ünïcödé body");
    assert_eq!(lines[7], "1 report.pdf application/pdf True");
    assert_eq!(lines[8], "True True");
}

#[test]
fn compose_sends_to_all_recipients_without_bcc_header() {
    let home = common::scratch();
    let tok = common::token();
    let o = run(
        msend(home.path())
            .args(["--no-tls", "--server"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT")))
            .args([
                "--from",
                "me@example.test",
                "--to",
                "a@example.test",
                "--bcc",
                "b@example.test",
            ])
            .args(["--subject", &tok]),
        b"body\n",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (bytes, env) = common::captured(&common::capture_dir(), &tok).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("b@example.test"));
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!(["a@example.test", "b@example.test"])
    );
    assert_eq!(env["mail_from"], "me@example.test");
}

#[test]
fn recipients_named_twice_get_one_rcpt_and_only_the_domain_is_folded() {
    // Compose mode: --to a, --cc b, --bcc a (domain in other case), and A as an argument: the
    // local part may be case-sensitive (RFC 5321 §2.4), so A is another recipient.
    let home = common::scratch();
    let tok = common::token();
    let o = run(
        msend(home.path())
            .args(["--no-tls", "--server"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT")))
            .args(["--from", "me@example.test", "--to", "a@example.test"])
            .args(["--cc", "b@example.test", "--bcc", "a@EXAMPLE.test"])
            .args(["--subject", &tok, "A@example.test"]),
        b"body\n",
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (_, env) = common::captured(&common::capture_dir(), &tok).unwrap();
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!(["a@example.test", "b@example.test", "A@example.test"])
    );
    // -t: To: a, Cc: b, Bcc: a, and a given again as an argument.
    let tok = common::token();
    let input = format!(
        "From: me@example.test\nTo: a@example.test\nCc: b@example.test\n\
         Bcc: a@Example.Test\nSubject: {tok}\n\nbody\n"
    );
    let o = run(
        msend(home.path())
            .args(["-t", "-i", "-f", "me@example.test", "--no-tls", "--server"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT")))
            .arg("b@example.test"),
        input.as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (_, env) = common::captured(&common::capture_dir(), &tok).unwrap();
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!(["b@example.test", "a@example.test"])
    );
}

#[test]
fn bs_with_queue_reports_a_permanent_failure_and_spools_the_temporary_one() {
    let home = common::scratch();
    let spool = common::scratch();
    let q = spool.path().join("q");
    let (port, rx) = scripted(Script {
        ehlo: "250-scripted\r\n250 8BITMIME\r\n",
        rcpt_to: &[
            ("<perm@", "550 5.1.1 no such user here\r\n"),
            ("<temp@", "451 4.7.1 greylisted\r\n"),
        ],
        ..Script::default()
    });
    let session = "EHLO php.example\r\nMAIL FROM:<app@example.test>\r\n\
                   RCPT TO:<perm@example.test>\r\nRCPT TO:<temp@example.test>\r\n\
                   DATA\r\nSubject: mixed\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    let o = run(
        msend(home.path())
            .args(["-bs", "--no-tls", "--queue"])
            .arg(&q)
            .arg("--server")
            .arg(format!("127.0.0.1:{port}")),
        session.as_bytes(),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let seen =
        String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(30)).unwrap()).into_owned();
    assert!(seen.contains("RCPT TO:<perm@example.test>"), "{seen}");
    // The answer to the message is the permanent failure, not "spooled"; the exit code is
    // that of a rejected recipient.
    let reply = out
        .lines()
        .find(|l| l.contains("no such user here"))
        .unwrap_or_else(|| panic!("permanent failure not reported: {out}"));
    assert!(reply.starts_with("554 5."), "{out}");
    assert!(reply.contains("spooled"), "{out}");
    assert!(out.contains("\r\n221 "), "{out}");
    assert_eq!(code(&o), 67, "{}", stderr(&o));
    assert!(stderr(&o).contains("perm@example.test"), "{}", stderr(&o));
    // The temporary one is spooled for the next flush.
    assert_eq!(queued(&q), 1);
    let o = run(msend(home.path()).arg("--queue").arg(&q).arg("--list"), b"");
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(listing.contains("temp@example.test"), "{listing}");
    assert!(!listing.contains("perm@example.test"), "{listing}");
}

#[test]
fn bs_mode_relays_an_smtp_session() {
    let home = common::scratch();
    let tok = common::token();
    let session = format!(
        "EHLO php.example\r\nMAIL FROM:<app@example.test>\r\nRCPT TO:<user@example.test>\r\nDATA\r\nSubject: {tok}\r\n\r\n..dotted\r\n.\r\nQUIT\r\n"
    );
    let o = run(
        msend(home.path())
            .args(["-bs", "--no-tls", "--server"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT"))),
        session.as_bytes(),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(out.starts_with("220 "), "{out}");
    assert!(out.contains("\r\n354 "), "{out}");
    assert!(out.contains("\r\n250 2.0.0"), "{out}");
    assert!(out.contains("\r\n221 "), "{out}");
    let (bytes, env) = common::captured(&common::capture_dir(), &tok).unwrap();
    assert!(String::from_utf8_lossy(&bytes).ends_with("\r\n\r\n.dotted\r\n"));
    assert_eq!(env["mail_from"], "app@example.test");
}

#[test]
fn eight_bit_body_needs_8bitmime() {
    let home = common::scratch();
    let (port, rx) = scripted(Script {
        ehlo: "250-scripted\r\n250 PIPELINING\r\n",
        ..Script::default()
    });
    let o = run(
        msend(home.path())
            .args(["--no-tls", "-f", "a@example.test", "--server"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("b@example.test"),
        "Subject: x\n\nkäse\n".as_bytes(),
    );
    assert_eq!(code(&o), 69, "{}", stderr(&o));
    assert!(stderr(&o).contains("8BITMIME"), "{}", stderr(&o));
    let seen =
        String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(20)).unwrap()).into_owned();
    assert!(!seen.contains("MAIL"), "{seen}");
    // With 8BITMIME offered, BODY=8BITMIME is declared.
    let (port, rx) = scripted(Script::default());
    let o = run(
        msend(home.path())
            .args(["--no-tls", "-f", "a@example.test", "--server"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("b@example.test"),
        "Subject: x\n\nkäse\n".as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let seen =
        String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(20)).unwrap()).into_owned();
    assert!(
        seen.contains("MAIL FROM:<a@example.test> BODY=8BITMIME"),
        "{seen}"
    );
}

#[test]
fn reply_injected_before_tls_is_refused() {
    let home = common::scratch();
    // A man in the middle appends a reply after the 220 to STARTTLS (RFC 3207 §5).
    let (port, rx) = scripted(Script {
        ehlo: "250-scripted\r\n250 STARTTLS\r\n",
        starttls: "220 go\r\n250-fake\r\n250 AUTH PLAIN\r\n",
        ..Script::default()
    });
    let o = run(
        msend(home.path())
            .args(["-f", "a@example.test", "--server"])
            .arg(format!("localhost:{port}"))
            .arg("b@example.test"),
        SIMPLE,
    );
    let c = code(&o);
    assert!(c == 75 || c == 69, "exit {c}: {}", stderr(&o));
    assert!(
        stderr(&o).contains("after the STARTTLS reply"),
        "{}",
        stderr(&o)
    );
    let seen =
        String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(30)).unwrap()).into_owned();
    assert!(!seen.contains("MAIL"), "{seen}");
}

#[test]
fn direct_implicit_mx_and_clear_fallback_when_opportunistic_tls_fails() {
    let home = common::scratch();
    // aonly.test has no MX, only A 127.0.0.3. Its server offers STARTTLS but cannot do TLS:
    // msend must retry the same host in clear.
    let (port, rx) = scripted_multi(
        "127.0.0.3",
        Script {
            ehlo: "250-scripted\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
            ..Script::default()
        },
        2,
    );
    let o = run(
        msend(home.path())
            .args(["-v", "--direct", "--resolver"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_DNS_PORT")))
            .args(["--smtp-port", &port.to_string(), "-f", "a@example.test"])
            .arg("user@aonly.test"),
        SIMPLE,
    );
    let err = stderr(&o);
    assert_eq!(code(&o), 0, "{err}");
    assert!(err.contains("implicit MX aonly.test"), "{err}");
    assert!(err.contains("retrying without TLS"), "{err}");
    let seen =
        String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(30)).unwrap()).into_owned();
    assert!(seen.contains("RCPT TO:<user@aonly.test>"), "{seen}");
    assert!(seen.contains("\r\nhello\r\n.\r\n"), "{seen}");
}

#[test]
fn dns_server_down_is_temporary() {
    let home = common::scratch();
    // A UDP port nobody serves: queries fail or time out, which is worth retrying.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = run(
        msend(home.path())
            .args(["--direct", "--resolver"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-f", "a@example.test", "x@example.test"]),
        SIMPLE,
    );
    assert_eq!(code(&o), 75, "{}", stderr(&o));
    assert!(stderr(&o).contains("x@example.test"), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------------------------
// sendmail -q and the exit code of --flush.

/// Spooled messages waiting in `q` (not those in `q/failed`).
fn queued(q: &Path) -> usize {
    std::fs::read_dir(q)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "msg"))
                .count()
        })
        .unwrap_or(0)
}

/// Messages moved to `q/failed`.
fn failed(q: &Path) -> usize {
    std::fs::read_dir(q.join("failed"))
        .map(|rd| rd.flatten().count())
        .unwrap_or(0)
}

/// Spools one message for `rcpt` in `q`: the server (port 1 on loopback) refuses the
/// connection, a temporary failure. `extra` picks e.g. the account it is spooled with.
fn spool_one(home: &Path, q: &Path, extra: &[&str], rcpt: &str, tok: &str) {
    let before = queued(q);
    let o = run(
        msend(home)
            .args(extra)
            .args(["--server", "127.0.0.1:1", "-f", "a@example.test", "--queue"])
            .arg(q)
            .arg(rcpt),
        format!("Subject: {tok}\n\nspooled for a later run\n").as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("spooled"), "{}", stderr(&o));
    assert_eq!(queued(q), before + 1);
}

/// A peer started by one test; killed when dropped, so it never outlives a failed assertion.
struct Daemon {
    _child: common::KillOnDrop,
    port: u16,
    /// Holds its stderr.
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `cmd` (stdout discarded) and waits until `ip:port` accepts connections.
    fn start(cmd: &mut Command, ip: &str, port: u16) -> Daemon {
        Daemon::try_start(cmd, ip, port).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Daemon::start`]; `Err` with its stderr when it exits first (e.g. the port was taken:
    /// [`common::port_taken`]) or does not listen within [`common::START_TIMEOUT`].
    fn try_start(cmd: &mut Command, ip: &str, port: u16) -> Result<Daemon, String> {
        let dir = common::scratch();
        let err = dir.path().join("stderr");
        let mut child = common::KillOnDrop(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&err).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("{cmd:?}: {e}")),
        );
        let deadline = Instant::now() + common::START_TIMEOUT;
        while TcpStream::connect((ip, port)).is_err() {
            let text = || std::fs::read_to_string(&err).unwrap_or_default();
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("{cmd:?} exited ({st}): {}", text()));
            }
            if Instant::now() >= deadline {
                return Err(format!("{cmd:?}: not listening on {ip}:{port}: {}", text()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Daemon {
            _child: child,
            port,
            _dir: dir,
        })
    }

    /// Postfix's smtp-sink answering `cmd` with a hard error (`-f cmd`: 500 5.3.0). It cannot
    /// bind port 0 and say where: a port taken meanwhile makes it exit, and another is tried.
    fn hard_sink(cmd: &str) -> Daemon {
        common::with_unused_ports(|[port]| {
            match Daemon::try_start(
                Command::new("/usr/sbin/smtp-sink")
                    .args(["-u", "nobody", "-f", cmd])
                    .args([format!("127.0.0.1:{port}"), "10".into()]),
                "127.0.0.1",
                port,
            ) {
                Ok(d) => Some(d),
                Err(e) if common::port_taken(&e) => None,
                Err(e) => panic!("{e}"),
            }
        })
    }
}

#[test]
fn sendmail_q_flushes_the_spool() {
    let home = common::scratch();
    let spool = common::scratch();
    let q = spool.path().join("q");
    let capture = format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT"));
    let flush_to = |args: &[&str]| {
        run(
            msend(home.path())
                .args(args)
                .args(["--no-tls", "--server", &capture, "--queue"])
                .arg(&q),
            b"",
        )
    };
    // `sendmail -q` as cron runs it; an attached interval (daemon period) and -qf change nothing.
    for flag in ["-q", "-q30m", "-q1h30m", "-qf"] {
        let tok = common::token();
        spool_one(home.path(), &q, &["--no-tls"], "qrun@example.test", &tok);
        let o = flush_to(&[flag]);
        assert_eq!(code(&o), 0, "{flag}: {}", stderr(&o));
        let (bytes, env) = common::captured(&common::capture_dir(), &tok).expect("flushed by -q");
        assert!(
            String::from_utf8_lossy(&bytes).ends_with("\r\n\r\nspooled for a later run\r\n"),
            "{flag}"
        );
        assert_eq!(env["rcpt_tos"][0], "qrun@example.test");
        assert_eq!(env["mail_from"], "a@example.test");
        assert_eq!(queued(&q), 0, "{flag}: delivered message left the spool");
    }
    // Selecting messages is refused, not widened to the whole spool; so are recipients.
    spool_one(
        home.path(),
        &q,
        &["--no-tls"],
        "qrun@example.test",
        &common::token(),
    );
    for args in [
        &["-qRexample.test"][..],
        &["-qx"],
        &["-q", "someone@example.test"],
        &["--flush", "someone@example.test"],
    ] {
        let o = flush_to(args);
        assert_eq!(code(&o), 64, "{args:?}: {}", stderr(&o));
        assert_eq!(queued(&q), 1, "{args:?}");
    }
    // No spool configured: a clear usage error.
    let o = run(
        msend(home.path()).args(["-q", "--no-tls", "--server", &capture]),
        b"",
    );
    assert_eq!(code(&o), 64, "{}", stderr(&o));
    assert!(stderr(&o).contains("--queue"), "{}", stderr(&o));
}

#[test]
fn flush_exit_code_separates_rejected_recipients_from_other_failures() {
    let home = common::scratch();
    let spool = common::scratch();
    let q = spool.path().join("q");
    // 69: smtp-sink refuses DATA with a hard error.
    let sink = Daemon::hard_sink("data");
    // 67: the real Postfix submission service rejects RCPT (554 5.7.1) without AUTH;
    // 77: its implicit-TLS service refuses a wrong password (535).
    let cfgdir = home.path().join(".config/mailkit");
    std::fs::create_dir_all(&cfgdir).unwrap();
    // `down`: every account's server is down (port 1), for spooling.
    let write_config = |down: bool| {
        let port = |p: String| if down { "1".to_string() } else { p };
        std::fs::write(
            cfgdir.join("msend.toml"),
            format!(
                "default = \"down\"\n\
                 [accounts.down]\nserver = \"127.0.0.1\"\nport = 1\ntls = \"none\"\n\
                 [accounts.data]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
                 [accounts.rcpt]\nserver = \"localhost\"\nport = {}\nca_file = \"{ca}\"\n\
                 [accounts.badauth]\nserver = \"localhost\"\nport = {}\ntls = \"tls\"\n\
                 user = \"alice\"\npassword_command = \"echo wrong\"\nca_file = \"{ca}\"\n",
                port(sink.port.to_string()),
                port(common::peer("PEER_SUBMISSION_PORT")),
                port(common::peer("PEER_SUBMISSIONS_PORT")),
                ca = common::peer("PEER_CA_FILE"),
            ),
        )
        .unwrap();
    };
    // Each message is spooled with its account (its server is down at that moment) and
    // flushed with it once the server is up: `--flush` alone picks every message's own
    // account. Only the account is named, so the account is where it was spooled for.
    let spool_with = |account: &str, rcpt: &str| {
        write_config(true);
        let before = queued(&q);
        let o = run(
            msend(home.path())
                .args(["-a", account, "-f", "a@example.test", "--queue"])
                .arg(&q)
                .arg(rcpt),
            format!("Subject: {}\n\nspooled for a later run\n", common::token()).as_bytes(),
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stderr(&o).contains("spooled"), "{}", stderr(&o));
        assert_eq!(queued(&q), before + 1);
        write_config(false);
    };
    // One `--flush` run: its exit code, words its stderr must contain, and (queued, failed)
    // counts afterwards.
    let flush = |want: i32, words: &[&str], counts: (usize, usize)| {
        let o = run(
            msend(home.path()).arg("--flush").arg("--queue").arg(&q),
            b"",
        );
        let err = stderr(&o);
        assert_eq!(code(&o), want, "{err}");
        for w in words {
            assert!(err.contains(w), "{w:?} missing: {err}");
        }
        assert_eq!((queued(&q), failed(&q)), counts, "{err}");
    };

    spool_with("rcpt", "rejected@example.test");
    flush(67, &["rejected@example.test", "554 5.7.1"], (0, 1));

    spool_with("data", "refused-data@example.test");
    flush(69, &["refused-data@example.test", "5.3.0"], (0, 2));

    // Both in one run: a rejected recipient wins over another permanent failure (67 before
    // 69, not the larger number nor the last message), both move to failed/.
    spool_with("rcpt", "rejected@example.test");
    spool_with("data", "refused-data@example.test");
    flush(67, &["554 5.7.1", "5.3.0"], (0, 4));

    // A temporary failure wins over both and its message stays queued.
    spool_with("down", "later@example.test");
    spool_with("rcpt", "rejected@example.test");
    spool_with("data", "refused-data@example.test");
    flush(75, &["later@example.test", "still queued"], (1, 6));

    // A refused login wins over all: the message is fine, so it stays queued too.
    spool_with("badauth", "authfail@example.test");
    flush(77, &["535", "authfail@example.test"], (2, 6));
}

// ---------------------------------------------------------------------------------------------
// TLS: key pin, required STARTTLS, --quit-after stages that never happened.

/// The SHA-256 of `cert`'s public key as the man page tells users to get it (openssl).
fn spki_sha256_by_openssl(cert: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in '{cert}' | openssl pkey -pubin -outform der | sha256sum"
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pin = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    assert_eq!(pin.len(), 64, "{pin:?}");
    pin
}

/// `--tls-fingerprint` (and an account's `tls_fingerprint`): the SHA-256 of the server's key
/// replaces the CA and name checks. The capture peer's certificate comes from the peers' CA
/// (not among the webpki roots) and is reached by IP (not a name in it): the right pin
/// delivers; a wrong one is a trust failure, exit 69, and is not spooled with --queue.
#[test]
fn tls_fingerprint_pins_the_server_key() {
    let home = common::scratch();
    let pin = spki_sha256_by_openssl(&common::peer("PEER_CERT_FILE"));
    let server = format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT"));
    let tok = common::token();
    let o = run(
        msend(home.path())
            .args(["-v", "-f", "a@example.test", "--tls-fingerprint", &pin])
            .args(["--server", &server, "b@example.test"]),
        format!("Subject: {tok}\n\npinned\n").as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("-> STARTTLS"), "{}", stderr(&o));
    assert!(
        common::captured(&common::capture_dir(), &tok).is_some(),
        "not delivered"
    );

    // msmtp's colon form of the same hash works too, from an account.
    let colons: Vec<String> = (0..32)
        .map(|i| pin[2 * i..2 * i + 2].to_uppercase())
        .collect();
    let cfgdir = home.path().join(".config/mailkit");
    std::fs::create_dir_all(&cfgdir).unwrap();
    std::fs::write(
        cfgdir.join("msend.toml"),
        format!(
            "default = \"pinned\"\n[accounts.pinned]\nserver = \"{server}\"\ntls_fingerprint = \"{}\"\n",
            colons.join(":")
        ),
    )
    .unwrap();
    let tok = common::token();
    let o = run(
        msend(home.path()).args(["-f", "a@example.test", "b@example.test"]),
        format!("Subject: {tok}\n\npinned by account\n").as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        common::captured(&common::capture_dir(), &tok).is_some(),
        "not delivered"
    );

    // A wrong pin: permanent (69), says what the server's key is, and nothing is spooled.
    let last = if pin.ends_with('0') { "1" } else { "0" };
    let wrong = format!("{}{last}", &pin[..63]);
    let queue = home.path().join("spool");
    let tok = common::token();
    let o = run(
        msend(home.path())
            .args([
                "-f",
                "a@example.test",
                "--tls-fingerprint",
                &wrong,
                "--queue",
            ])
            .arg(&queue)
            .args(["--server", &server, "b@example.test"]),
        format!("Subject: {tok}\n\nmust not arrive\n").as_bytes(),
    );
    assert_eq!(code(&o), 69, "{}", stderr(&o));
    assert!(stderr(&o).contains(&pin), "{}", stderr(&o));
    assert_eq!(queued(&queue), 0, "a pin mismatch must not be spooled");
    assert!(
        common::captured(&common::capture_dir(), &tok).is_none(),
        "sent despite the pin"
    );

    // A pin is no hash: bad usage; a pin without TLS: a configuration error.
    let o = run(
        msend(home.path()).args(["--tls-fingerprint", "abc", "--server", &server, "b@x.test"]),
        SIMPLE,
    );
    assert_eq!(code(&o), 64, "{}", stderr(&o));
    std::fs::write(
        cfgdir.join("msend.toml"),
        format!("default = \"p\"\n[accounts.p]\nserver = \"{server}\"\ntls = \"none\"\ntls_fingerprint = \"{pin}\"\n"),
    )
    .unwrap();
    let o = run(msend(home.path()).arg("b@x.test"), SIMPLE);
    assert_eq!(code(&o), 78, "{}", stderr(&o));
}

/// mrelayd's own certificate, as `mrelayd quickstart` generates it, is not among the webpki
/// roots: submission to its STARTTLS port fails before AUTH or MAIL with exit 69 and is not
/// spooled; with `--ca-file` its `ca.pem` the same submission is delivered into the Maildir.
#[test]
fn mrelayd_generated_certificate_is_untrusted_until_its_ca_is_given() {
    let dir = common::scratch();
    let demo = dir.path().join("demo");
    let config = common::quickstart_on_port_zero(&demo);
    let (_relay, l) = common::start_daemon(
        Command::new(common::bin("mrelayd"))
            .arg("-c")
            .arg(&config)
            .arg("serve"),
        &dir.path().join("mrelayd.log"),
        &["submission"],
    );
    let password = std::fs::read_to_string(demo.join("demo-password")).unwrap();
    let server = format!("localhost:{}", l.port("submission"));
    let home = common::scratch();
    let queue = home.path().join("spool");
    let submit = |extra: &[&str], tok: &str| {
        run(
            msend(home.path())
                .env("MSEND_PASSWORD", password.trim())
                .args(extra)
                .args(["--user", "demo", "-f", "demo@localhost", "--queue"])
                .arg(&queue)
                .args(["--server", &server, "demo@localhost"]),
            format!("Subject: {tok}\n\nto the demo\n").as_bytes(),
        )
    };
    let untrusted = common::token();
    let o = submit(&[], &untrusted);
    let err = stderr(&o);
    assert_eq!(code(&o), 69, "{err}");
    assert!(err.contains("certificate"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert_eq!(
        queued(&queue),
        0,
        "an untrusted certificate must not be spooled"
    );
    let trusted = common::token();
    let ca = demo.join("ca.pem");
    let o = submit(&["--ca-file", ca.to_str().unwrap()], &trusted);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let new = demo.join("mail/demo/Maildir/new");
    let deadline = Instant::now() + Duration::from_secs(20);
    let texts = loop {
        let texts: Vec<String> = std::fs::read_dir(&new)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        if !texts.is_empty() || Instant::now() > deadline {
            break texts;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(texts.iter().any(|t| t.contains(&trusted)), "not delivered");
    assert!(
        !texts.iter().any(|t| t.contains(&untrusted)),
        "sent despite the certificate"
    );
}

/// TLS is required by default (`--starttls`): smtp-sink offers no STARTTLS. Retrying cannot
/// help until the server or the account changes, so msend exits 69 and spools nothing (mrelayd
/// defers the same failure: tests/mrelayd_remote.rs `per_domain_tls_encrypt_defers_without_starttls`).
#[test]
fn required_starttls_missing_is_permanent_and_not_spooled() {
    let home = common::scratch();
    let queue = home.path().join("spool");
    let sink = format!("127.0.0.1:{}", common::peer("PEER_SINK_PORT"));
    let o = send_with_queue(home.path(), &queue, &sink, SIMPLE);
    let err = stderr(&o);
    assert_eq!(code(&o), 69, "{err}");
    assert!(err.contains("does not offer STARTTLS"), "{err}");
    assert!(err.contains("b@example.test"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert_eq!(queued(&queue), 0, "no STARTTLS must not be spooled");
}

/// `--quit-after rcpt` against the real Postfix submission service without AUTH: it refuses
/// the recipient (554 5.7.1), which is exit 67 as for a send, not 0; a scripted server's
/// 550 5.1.1 for one of two recipients too. Nothing is sent (no DATA) and nothing spooled.
#[test]
fn quit_after_rcpt_with_a_refused_recipient_exits_67() {
    let home = common::scratch();
    let queue = home.path().join("spool");
    let o = run(
        msend(home.path())
            .args(["--quit-after", "rcpt", "-f", "a@example.test", "--ca-file"])
            .arg(common::peer("PEER_CA_FILE"))
            .arg("--queue")
            .arg(&queue)
            .arg("--server")
            .arg(format!(
                "localhost:{}",
                common::peer("PEER_SUBMISSION_PORT")
            ))
            .arg("rejected@example.test"),
        b"",
    );
    let err = stderr(&o);
    assert_eq!(code(&o), 67, "{err}");
    assert!(
        err.contains("rejected@example.test") && err.contains("554 5.7.1"),
        "{err}"
    );
    assert!(!err.contains("stopped after"), "{err}");
    assert_eq!(queued(&queue), 0);

    let (port, rx) = scripted(Script {
        rcpt_to: &[("<nobody@", "550 5.1.1 no such user\r\n")],
        ..Script::default()
    });
    let o = run(
        msend(home.path())
            .args(["--no-tls", "--quit-after", "rcpt", "-f", "a@example.test"])
            .arg("--server")
            .arg(format!("127.0.0.1:{port}"))
            .args(["nobody@example.test", "somebody@example.test"]),
        b"",
    );
    let err = stderr(&o);
    assert_eq!(code(&o), 67, "{err}");
    assert!(
        err.contains("nobody@example.test") && err.contains("5.1.1"),
        "{err}"
    );
    assert!(
        !err.contains("somebody@"),
        "accepted recipient reported: {err}"
    );
    let seen =
        String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(30)).unwrap()).into_owned();
    assert!(seen.contains("RCPT TO:<somebody@example.test>"), "{seen}");
    assert!(!seen.contains("DATA") && seen.contains("QUIT"), "{seen}");
}

/// `--quit-after tls` and `--quit-after auth` never say "stopped after" a stage that did not
/// happen: impossible by the flags is bad usage (64), before connecting; a server that skips
/// it fails (69), saying why. A refused MAIL and a refused connection are not exit 0 either,
/// with no recipients to carry them.
#[test]
fn quit_after_a_stage_that_never_happened_fails_and_says_why() {
    let home = common::scratch();
    let sink = format!("127.0.0.1:{}", common::peer("PEER_SINK_PORT"));
    for (args, why) in [
        (
            &["--no-tls", "--quit-after", "tls"][..],
            "no STARTTLS would happen",
        ),
        (
            &["--no-tls", "--quit-after", "auth"][..],
            "no AUTH would happen",
        ),
        (&["--quit-after", "auth"][..], "no AUTH would happen"),
    ] {
        let o = run(msend(home.path()).args(args).args(["--server", &sink]), b"");
        let err = stderr(&o);
        assert_eq!(code(&o), 64, "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let o = run(
        msend(home.path()).args(["--direct", "--quit-after", "auth", "x@example.test"]),
        b"",
    );
    assert_eq!(code(&o), 64, "{}", stderr(&o));

    // smtp-sink offers no STARTTLS: STARTTLS is required, so the session fails (69).
    let o = run(
        msend(home.path()).args(["--quit-after", "tls", "--server", &sink]),
        b"",
    );
    let err = stderr(&o);
    assert_eq!(code(&o), 69, "{err}");
    assert!(err.contains("does not offer STARTTLS"), "{err}");
    assert!(!err.contains("stopped after"), "{err}");

    // --direct is opportunistic: an MX without STARTTLS is fine for mail, but no TLS happened.
    let (port, rx) = scripted_on("127.0.0.3", Script::default());
    let o = run(
        msend(home.path())
            .args(["--direct", "--quit-after", "tls", "--resolver"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_DNS_PORT")))
            .args(["--smtp-port", &port.to_string(), "user@aonly.test"]),
        b"",
    );
    let err = stderr(&o);
    assert_eq!(code(&o), 69, "{err}");
    assert!(
        err.contains("never happened") && err.contains("does not offer STARTTLS"),
        "{err}"
    );
    let seen =
        String::from_utf8_lossy(&rx.recv_timeout(Duration::from_secs(30)).unwrap()).into_owned();
    assert!(seen.contains("QUIT") && !seen.contains("MAIL"), "{seen}");

    // MAIL refused with no recipients given (allowed for --quit-after mail).
    let (port, _rx) = scripted(Script {
        mail: "553 5.7.1 sender refused\r\n",
        ..Script::default()
    });
    let o = run(
        msend(home.path())
            .args(["--no-tls", "--quit-after", "mail", "-f", "a@example.test"])
            .arg("--server")
            .arg(format!("127.0.0.1:{port}")),
        b"",
    );
    let err = stderr(&o);
    assert_eq!(code(&o), 69, "{err}");
    assert!(err.contains("553 5.7.1"), "{err}");

    // Nobody listens: the banner never came (temporary, 75), and nothing is spooled.
    let queue = home.path().join("spool");
    let o = run(
        msend(home.path())
            .args(["--no-tls", "--quit-after", "banner", "--queue"])
            .arg(&queue)
            .args(["--server", "127.0.0.1:1"]),
        b"",
    );
    let err = stderr(&o);
    assert_eq!(code(&o), 75, "{err}");
    assert!(err.contains("connect"), "{err}");
    assert_eq!(queued(&queue), 0);
}

// ---------------------------------------------------------------------------------------------
// -bs with a client that stops talking.

/// Starts `msend -bs` with `input` on stdin and keeps stdin open (a client that stops talking,
/// as a hung PHP worker does); returns msend's output once it ends on its own.
fn bs_stalled(home: &Path, extra: &[&str], input: &str) -> Output {
    // Not msend(): its --timeout 10 would be given twice.
    let mut cmd = Command::new(common::bin("msend"));
    cmd.env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("MAILKIT_CONFIG")
        .args(["-bs", "--no-tls"])
        .args(extra);
    run_keeping_stdin(&mut cmd, input.as_bytes(), true)
}

/// A `-bs` client that falls silent, between commands or in the middle of a message, gets the
/// session's 421 4.4.2 after the limit (`--timeout 1` here; 300 s and 600 s by default) and
/// msend exits 75; the half-received message is not sent.
#[test]
fn bs_client_that_stops_talking_gets_421_and_exit_75() {
    let home = common::scratch();
    let (port, rx) = scripted(Script::default());
    let server = format!("127.0.0.1:{port}");
    let o = bs_stalled(
        home.path(),
        &["--timeout", "1", "--server", &server],
        "EHLO php.example\r\n",
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(code(&o), 75, "{out} {}", stderr(&o));
    assert!(out.contains("\r\n250"), "{out}");
    assert!(out.contains("421 4.4.2"), "{out}");
    let o = bs_stalled(
        home.path(),
        &["--timeout", "1", "--server", &server],
        "EHLO php.example\r\nMAIL FROM:<app@example.test>\r\nRCPT TO:<u@example.test>\r\n\
         DATA\r\nSubject: half a message\r\n",
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(code(&o), 75, "{out} {}", stderr(&o));
    assert!(out.contains("\r\n354 "), "{out}");
    assert!(out.contains("421 4.4.2"), "{out}");
    assert!(
        rx.recv_timeout(Duration::from_secs(3)).is_err(),
        "half a message went to the server"
    );
}

// ---------------------------------------------------------------------------------------------
// sendmail's other names and where --flush sends.

/// A directory with msend installed as `name` (a symlink, as the README says to install it).
fn installed_as(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = common::scratch();
    let link = dir.path().join(name);
    std::os::unix::fs::symlink(common::bin("msend"), &link).unwrap();
    (dir, link)
}

/// `mailq` lists the spool as `msend --list` does; `newaliases` (and `-bi`) exits 0 with a
/// one-line note (Postfix's sendmail does both).
#[test]
fn mailq_lists_the_spool_and_newaliases_is_a_no_op() {
    let home = common::scratch();
    let spool = common::scratch();
    let q = spool.path().join("q");
    spool_one(
        home.path(),
        &q,
        &["--no-tls"],
        "mailq@example.test",
        &common::token(),
    );
    let cfgdir = home.path().join(".config/mailkit");
    std::fs::create_dir_all(&cfgdir).unwrap();
    std::fs::write(
        cfgdir.join("msend.toml"),
        format!("queue = \"{}\"\n", q.display()),
    )
    .unwrap();
    let (_dir, mailq) = installed_as("mailq");
    let mut cmd = Command::new(&mailq);
    cmd.env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("MAILKIT_CONFIG");
    let o = run(&mut cmd, b"");
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(listing.contains("mailq@example.test"), "{listing}");
    let o = run(msend(home.path()).arg("--list"), b"");
    assert_eq!(String::from_utf8_lossy(&o.stdout), listing.as_str());

    let (_dir, newaliases) = installed_as("newaliases");
    for o in [
        run(Command::new(&newaliases).env("HOME", home.path()), b""),
        run(msend(home.path()).arg("-bi"), b""),
    ] {
        let err = stderr(&o);
        assert_eq!(code(&o), 0, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("aliases"), "{err}");
    }
}

/// `--flush` sends a message to the server it was spooled for (`--server` and `--no-tls`
/// given then), not to the default account of the day, and without a default at all.
#[test]
fn flush_sends_to_the_server_the_message_was_spooled_for() {
    let home = common::scratch();
    let spool = common::scratch();
    let q = spool.path().join("q");
    // One message: greylisted (451 at RCPT) when sent, so spooled; then flushed without
    // --server, and the second connection to the same server must carry it.
    let spool_and_flush = |when: &str| {
        let greylisting = Script {
            rcpt: "451 4.7.1 greylisted, come back later\r\n",
            ..Script::default()
        };
        let (port, rx) = scripted_seq("127.0.0.1", vec![greylisting, Script::default()]);
        let tok = common::token();
        let o = run(
            msend(home.path())
                .args(["--no-tls", "-f", "a@example.test", "--queue"])
                .arg(&q)
                .arg("--server")
                .arg(format!("127.0.0.1:{port}"))
                .arg("grey@example.test"),
            format!("Subject: {tok}\n\nlater\n").as_bytes(),
        );
        assert_eq!(code(&o), 0, "{when}: {}", stderr(&o));
        assert_eq!(queued(&q), 1, "{when}");
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let o = run(
            msend(home.path()).arg("--flush").arg("--queue").arg(&q),
            b"",
        );
        assert_eq!(code(&o), 0, "{when}: {}", stderr(&o));
        let seen = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let seen = String::from_utf8_lossy(&seen);
        assert!(
            seen.contains(&tok) && seen.contains("RCPT TO:<grey@example.test>"),
            "{when}: not sent to the server it was spooled for: {seen}"
        );
        assert_eq!(queued(&q), 0, "{when}");
    };
    // Without any configuration: only the spooled message knows the server.
    spool_and_flush("no configuration");
    // With a default account pointing elsewhere (the capture peer), at spool and flush time.
    let cfgdir = home.path().join(".config/mailkit");
    std::fs::create_dir_all(&cfgdir).unwrap();
    std::fs::write(
        cfgdir.join("msend.toml"),
        format!(
            "default = \"cap\"\n[accounts.cap]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
            common::peer("PEER_CAPTURE_PORT")
        ),
    )
    .unwrap();
    spool_and_flush("a default account elsewhere");
}

/// A `-C` config whose mail domain is `local.example.test`, with msmtp's aliases file
/// `root: admin@example.test`.
fn bare_names_config(dir: &Path) -> PathBuf {
    let aliases = dir.join("aliases");
    std::fs::write(&aliases, "# msmtp format\nroot: admin@example.test\n").unwrap();
    let config = dir.join("mailkit.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"host.example.test\"\n[msend]\ndomain = \"local.example.test\"\naliases = \"{}\"\n",
            aliases.display()
        ),
    )
    .unwrap();
    config
}

/// As sendmail for a local submission: bare envelope names (-f, arguments, -t's To/Cc/Bcc) get
/// the mail domain, bare recipients go through msmtp's aliases file first, and the bare
/// addresses in every address field (From, Sender, Reply-To, To, Cc, Errors-To, ...: the
/// fields Postfix rewrites) get the domain in the message, which is otherwise unchanged.
/// Checked byte for byte at the capture peer.
#[test]
fn bare_names_get_the_mail_domain_in_envelope_and_headers() {
    let home = common::scratch();
    let config = bare_names_config(home.path());
    let tok = common::token();
    let input = format!(
        "From: root (Cron Daemon)\n\
         To: root, Bob <bob>,\n carol@example.test\n\
         Cc: dave\n\
         Bcc: erin\n\
         Sender: root\n\
         Reply-To: root\n\
         Errors-To: root\n\
         Return-Receipt-To: root\n\
         X-Original-To: root\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\n\
         Message-ID: <{tok}@example.test>\n\
         Subject: {tok} to root\n\
         \n\
         To: root\n"
    );
    let o = run(
        msend(home.path())
            .arg("-C")
            .arg(&config)
            .args(["-t", "-i", "-f", "cron", "--no-tls", "--server"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT")))
            .arg("frank"),
        input.as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (bytes, env) = common::captured(&common::capture_dir(), &tok).expect("message captured");
    let expected = format!(
        "From: root@local.example.test (Cron Daemon)\r\n\
         To: root@local.example.test, Bob <bob@local.example.test>,\r\n carol@example.test\r\n\
         Cc: dave@local.example.test\r\n\
         Sender: root@local.example.test\r\n\
         Reply-To: root@local.example.test\r\n\
         Errors-To: root@local.example.test\r\n\
         Return-Receipt-To: root@local.example.test\r\n\
         X-Original-To: root\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{tok}@example.test>\r\n\
         Subject: {tok} to root\r\n\
         \r\n\
         To: root\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&bytes), expected);
    assert_eq!(env["mail_from"], "cron@local.example.test");
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!([
            "frank@local.example.test",
            "admin@example.test",
            "bob@local.example.test",
            "carol@example.test",
            "dave@local.example.test",
            "erin@local.example.test"
        ])
    );
}

/// A forwarded message (RFC 5322 §3.6.6): with -t the envelope recipients are the Resent-To,
/// -Cc and -Bcc ones only (the original To is not mailed again), qualified and through the
/// aliases file like any bare recipient; every bare Resent- address in the message gets the
/// domain and Resent-Bcc is removed.
#[test]
fn resent_fields_are_the_recipients_and_are_qualified() {
    let home = common::scratch();
    let config = bare_names_config(home.path());
    let tok = common::token();
    let input = format!(
        "Resent-From: root\n\
         Resent-Sender: cron\n\
         Resent-To: gina, root\n\
         Resent-Cc: Hank <hank>\n\
         Resent-Bcc: ivan\n\
         Resent-Date: Tue, 24 Nov 2026 10:00:00 +0000\n\
         From: x@example.test\n\
         To: jo\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\n\
         Message-ID: <{tok}@example.test>\n\
         Subject: {tok} resent\n\
         \n\
         body\n"
    );
    let o = run(
        msend(home.path())
            .arg("-C")
            .arg(&config)
            .args(["-t", "-i", "--no-tls", "--server"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT"))),
        input.as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (bytes, env) = common::captured(&common::capture_dir(), &tok).expect("message captured");
    let expected = format!(
        "Resent-From: root@local.example.test\r\n\
         Resent-Sender: cron@local.example.test\r\n\
         Resent-To: gina@local.example.test, root@local.example.test\r\n\
         Resent-Cc: Hank <hank@local.example.test>\r\n\
         Resent-Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n\
         From: x@example.test\r\n\
         To: jo@local.example.test\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{tok}@example.test>\r\n\
         Subject: {tok} resent\r\n\
         \r\n\
         body\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&bytes), expected);
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!([
            "gina@local.example.test",
            "admin@example.test",
            "hank@local.example.test",
            "ivan@local.example.test"
        ])
    );
}

/// `-bs`: a bare MAIL FROM and RCPT TO (sendmail -bs takes them from a local program) get the
/// mail domain, the RCPT through the aliases file, and so do the message's bare To and From.
#[test]
fn bs_mode_qualifies_bare_names() {
    let home = common::scratch();
    let config = bare_names_config(home.path());
    let tok = common::token();
    let session = format!(
        "EHLO php.example\r\nMAIL FROM:<app>\r\nRCPT TO:<user>\r\nRCPT TO:<root>\r\nDATA\r\n\
         From: app\r\nTo: user\r\nSubject: {tok}\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    );
    let o = run(
        msend(home.path())
            .arg("-C")
            .arg(&config)
            .args(["-bs", "--no-tls", "--server"])
            .arg(format!("127.0.0.1:{}", common::peer("PEER_CAPTURE_PORT"))),
        session.as_bytes(),
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!out.contains("\r\n501 "), "{out}");
    let (bytes, env) = common::captured(&common::capture_dir(), &tok).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        format!(
            "From: app@local.example.test\r\nTo: user@local.example.test\r\nSubject: {tok}\r\n\r\nbody\r\n"
        )
    );
    assert_eq!(env["mail_from"], "app@local.example.test");
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!(["user@local.example.test", "admin@example.test"])
    );
}

/// The queued path: a message spooled after a temporary failure keeps the qualified envelope
/// (what `--flush` later sends), and msend's default sender is the login name at the mail
/// domain.
#[test]
fn spooled_bare_names_are_stored_qualified() {
    let home = common::scratch();
    let config = bare_names_config(home.path());
    let q = home.path().join("q");
    let tok = common::token();
    let o = run(
        msend(home.path())
            .arg("-C")
            .arg(&config)
            .args(["--server", "127.0.0.1:1", "--no-tls", "--queue"])
            .arg(&q)
            .args(["root", "bob"]),
        format!("Subject: {tok}\n\nspooled\n").as_bytes(),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(
        msend(home.path())
            .arg("-C")
            .arg(&config)
            .arg("--list")
            .arg("--queue")
            .arg(&q),
        b"",
    );
    let listing = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        listing.contains(
            "from <tester@local.example.test>  to admin@example.test, bob@local.example.test"
        ),
        "{listing}"
    );
}
