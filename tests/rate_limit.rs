//! mrelayd's submission rate limits (`[mrelayd.rate_limit]`, issue 15) with real clients on
//! loopback: swaks submitting (STARTTLS, AUTH PLAIN) as one user until refused with
//! `450 4.7.1`, a second user unaffected, the per-address limit from another loopback address
//! (127.0.0.2), the recipient limit at the RCPT that passes it, msend exiting 75
//! (EX_TEMPFAIL) when refused, a restart and a `kill -9` that keep the counters, and
//! concurrent `mrelayd inetd` processes under a real superserver (systemd-socket-activate
//! --accept --inetd, python3's smtplib as client) sharing one count through the queue's journal.
//! Each test runs its own `mrelayd` (as nobody) with a submission listener.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWD: &str = "alice:{PLAIN}password::::::\nbob:{PLAIN}password::::::\n";

struct Relay {
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<common::KillOnDrop>,
}

impl Relay {
    /// mrelayd with `limits` (the body of `[mrelayd.rate_limit]`), local delivery to
    /// `mail/USER`, serving.
    fn start(dir: &Path, limits: &str) -> Relay {
        let mut r = Relay::configure(dir, limits);
        r.restart();
        r
    }

    /// The config of [`Relay::start`], written, nothing started.
    fn configure(dir: &Path, limits: &str) -> Relay {
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, PASSWD).unwrap();
        let aliases = dir.join("aliases");
        std::fs::write(&aliases, "postmaster: alice\n").unwrap();
        let config = dir.join("mailkit.toml");
        let text = format!(
            "hostname = \"mx.example.test\"\nstate_dir = \"{state}\"\n\
[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
[users]\npasswd_file = \"{passwd}\"\nmail_location = \"{mail}/%n\"\ndomains = [\"example.test\"]\n\
[mrelayd]\ntrusted_networks = []\naliases = \"{aliases}\"\n\
listen = [ {{ address = \"127.0.0.1:0\", role = \"submission\" }} ]\n\
[mrelayd.rate_limit]\n{limits}\n\
[mrelayd.remote]\nrelayhost = \"[127.0.0.1]:1\"\nrelayhost_tls = \"none\"\n",
            state = dir.join("state").display(),
            cert = common::peer("PEER_CERT_FILE"),
            key = common::peer("PEER_KEY_FILE"),
            passwd = passwd.display(),
            mail = dir.join("mail").display(),
            aliases = aliases.display(),
        );
        std::fs::write(&config, common::with_run_as(&text)).unwrap();
        Relay {
            dir: dir.to_path_buf(),
            config,
            log: dir.join("mrelayd.log"),
            port: 0,
            child: None,
        }
    }

    fn restart(&mut self) {
        let (child, l) = common::start_mrelayd(&self.config, &self.log, &["submission"]);
        self.port = l.port("submission");
        self.child = Some(child);
    }

    /// SIGTERM, and wait until it exited (a clean stop compacts the journal).
    fn stop(&mut self) {
        self.signal("-TERM");
    }

    /// Sends `signal` (`-TERM`, `-KILL`) and waits until mrelayd exited.
    fn signal(&mut self, signal: &str) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let st = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "mrelayd did not stop on {signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// swaks from `local` (the client's address) as `user` to `to` (comma separated).
    fn swaks(&self, local: &str, user: &str, to: &str, subject: &str) -> (bool, String) {
        let port = self.port.to_string();
        let header = format!("Subject: {subject}");
        common::swaks(&[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "-li",
            local,
            "-tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            user,
            "--auth-password",
            "password",
            "--from",
            &format!("{user}@example.test"),
            "--to",
            to,
            "--header",
            &header,
        ])
    }
}

/// The server's error replies in swaks's transcript (`<**` in clear, `<~*` under TLS).
fn errors(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.strip_prefix("<** ").or_else(|| l.strip_prefix("<~* ")))
        .collect()
}

/// Whether swaks's transcript has the server refusing with `450 4.7.1` and `text`.
fn refused(out: &str, text: &str) -> bool {
    errors(out)
        .iter()
        .any(|l| l.starts_with("450 4.7.1 ") && l.contains(text))
}

#[test]
fn messages_per_user_until_refused_other_user_unaffected_msend_75_and_restart_keeps_count() {
    let dir = common::scratch();
    let mut r = Relay::start(dir.path(), "messages_per_hour_per_user = 3\n");
    for i in 0..3 {
        let (ok, out) = r.swaks("127.0.0.1", "alice", "bob@example.test", &format!("a{i}"));
        assert!(ok, "message {i} refused: {out}");
    }
    let (ok, out) = r.swaks("127.0.0.1", "alice", "bob@example.test", "a3");
    assert!(!ok, "fourth accepted: {out}");
    assert!(
        refused(&out, "Error: too much mail from user alice"),
        "{out}"
    );
    // At MAIL: no RCPT was sent.
    assert!(!out.contains("RCPT TO"), "{out}");
    // Another user from the same address is not affected.
    let (ok, out) = r.swaks("127.0.0.1", "bob", "alice@example.test", "b0");
    assert!(ok, "bob refused: {out}");
    assert_eq!(
        common::wait_maildir(&dir.path().join("mail/bob"), 3).len(),
        3
    );
    assert_eq!(
        common::wait_maildir(&dir.path().join("mail/alice"), 1).len(),
        1
    );

    // msend as alice: a temporary failure, EX_TEMPFAIL.
    let home = common::scratch();
    let o = common::run_with_input(
        Command::new(common::bin("msend"))
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("MAILKIT_CONFIG")
            .env("MSEND_PASSWORD", "password")
            .args([
                "--timeout",
                "10",
                "--user",
                "alice",
                "-f",
                "alice@example.test",
            ])
            .arg("--ca-file")
            .arg(common::peer("PEER_CA_FILE"))
            .arg("--server")
            .arg(format!("localhost:{}", r.port))
            .arg("bob@example.test"),
        b"Subject: via msend\n\nhi\n",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(err.contains("4.7.1"), "{err}");

    // A clean restart keeps the counters: alice is still over her limit, bob is not.
    r.stop();
    assert!(r.dir.join("state/queue/rate-limits").exists());
    r.restart();
    let (ok, out) = r.swaks("127.0.0.1", "alice", "bob@example.test", "a4");
    assert!(
        !ok && refused(&out, "too much mail from user alice"),
        "{out}"
    );
    let (ok, out) = r.swaks("127.0.0.1", "bob", "alice@example.test", "b1");
    assert!(ok, "bob refused after restart: {out}");
    assert!(r.log_text().contains("MAIL refused: 450 4.7.1"));
}

#[test]
fn messages_per_address_counts_every_user_of_that_address() {
    let dir = common::scratch();
    let r = Relay::start(dir.path(), "messages_per_hour_per_address = 2\n");
    let (ok, out) = r.swaks("127.0.0.2", "alice", "bob@example.test", "x0");
    assert!(ok, "{out}");
    let (ok, out) = r.swaks("127.0.0.2", "bob", "alice@example.test", "x1");
    assert!(ok, "{out}");
    // A third message from 127.0.0.2, whoever sends it, is refused.
    for user in ["alice", "bob"] {
        let (ok, out) = r.swaks("127.0.0.2", user, "bob@example.test", "x2");
        assert!(
            !ok && refused(&out, "too much mail from 127.0.0.2"),
            "{out}"
        );
    }
    // The same user from another address is not.
    let (ok, out) = r.swaks("127.0.0.1", "bob", "alice@example.test", "x3");
    assert!(ok, "{out}");
}

#[test]
fn recipients_per_user_refused_at_the_rcpt_that_passes_the_limit() {
    let dir = common::scratch();
    let r = Relay::start(dir.path(), "recipients_per_hour_per_user = 5\n");
    let to = |tags: &[&str]| {
        tags.iter()
            .map(|t| format!("bob+{t}@example.test"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (ok, out) = r.swaks("127.0.0.1", "alice", &to(&["1", "2", "3"]), "three");
    assert!(ok, "{out}");
    // Two more fit; the third RCPT of this message is refused, the message goes to two.
    let (_, out) = r.swaks("127.0.0.1", "alice", &to(&["4", "5", "6"]), "three more");
    assert!(
        refused(&out, "Error: too many recipients from user alice"),
        "{out}"
    );
    assert!(out.contains("bob+6@example.test"), "{out}");
    assert_eq!(errors(&out).len(), 1, "{out}");
    assert!(out.contains("queued as"), "{out}");
    // Five copies in all reached bob.
    assert_eq!(
        common::wait_maildir(&dir.path().join("mail/bob"), 5).len(),
        5
    );
    // Now even one recipient is over; another user is not limited by alice's count.
    let (ok, out) = r.swaks("127.0.0.1", "alice", "bob@example.test", "one more");
    assert!(!ok && refused(&out, "too many recipients"), "{out}");
    let (ok, out) = r.swaks("127.0.0.1", "bob", &to(&["a", "b", "c", "d", "e"]), "bob's");
    assert!(ok, "{out}");
}

#[test]
fn a_killed_daemon_keeps_its_counts() {
    let dir = common::scratch();
    let mut r = Relay::start(dir.path(), "messages_per_hour_per_user = 3\n");
    for i in 0..3 {
        let (ok, out) = r.swaks("127.0.0.1", "alice", "bob@example.test", &format!("k{i}"));
        assert!(ok, "message {i} refused: {out}");
    }
    // kill -9: no clean stop, nothing saved at the end; what was counted is in the journal.
    r.signal("-KILL");
    r.restart();
    let (ok, out) = r.swaks("127.0.0.1", "alice", "bob@example.test", "k3");
    assert!(
        !ok && refused(&out, "too much mail from user alice"),
        "accepted after kill -9: {out}"
    );
    let (ok, out) = r.swaks("127.0.0.1", "bob", "alice@example.test", "b");
    assert!(ok, "{out}");
    assert!(!r.log_text().contains("counting in this process only"));
}

/// python3 smtplib: opens `sessions` submission sessions at once to `port` (STARTTLS, AUTH
/// PLAIN as alice), then sends one message on each in turn; prints a line per session,
/// `ok` or the refusal.
const CONCURRENT_CLIENT: &str = r#"
import smtplib, ssl, sys
port, ca, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
sessions = []
for i in range(n):
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("client.test")
    s.starttls(context=ctx)
    s.ehlo("client.test")
    s.login("alice", "password")
    sessions.append(s)
for i, s in enumerate(sessions):
    msg = "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: inetd %d\r\n\r\nhi\r\n" % i
    try:
        s.sendmail("alice@example.test", ["bob@example.test"], msg)
        print("ok")
    except smtplib.SMTPSenderRefused as e:
        print(e.smtp_code, e.smtp_error.decode())
for s in sessions:
    s.quit()
"#;

#[test]
fn inetd_processes_share_one_count() {
    let dir = common::scratch();
    let r = Relay::configure(dir.path(), "messages_per_hour_per_user = 3\n");
    common::give_to_nobody(dir.path());
    // systemd-socket-activate --accept --inetd: one `mrelayd inetd` process a connection, as
    // inetd and tcpserver run it (on a port picked up front, again when it was taken).
    let (_superserver, port) = common::with_unused_ports(|[port]| {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&r.log)
            .unwrap();
        let from = common::log_len(&r.log);
        let mut child = common::KillOnDrop(
            Command::new("systemd-socket-activate")
                .arg(format!("--listen=127.0.0.1:{port}"))
                .args(["--accept", "--inetd"])
                .arg(common::bin("mrelayd"))
                .arg("-c")
                .arg(&r.config)
                .args(["inetd", "--role", "submission"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + common::START_TIMEOUT;
        loop {
            let text = common::log_since(&r.log, from);
            if text.contains(&format!("Listening on 127.0.0.1:{port}")) {
                return Some((child, port));
            }
            if let Ok(Some(st)) = child.try_wait() {
                assert!(common::port_taken(&text), "exited ({st}): {text}");
                return None;
            }
            assert!(Instant::now() < deadline, "did not listen: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    // Four processes, each looking at the count before any of them sent: three messages fit,
    // the fourth is refused at MAIL although its process never saw the others' sessions.
    let out = Command::new("timeout")
        .args(["60", "python3", "-c", CONCURRENT_CLIENT])
        .arg(port.to_string())
        .arg(common::peer("PEER_CA_FILE"))
        .arg("4")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}; log: {}",
        String::from_utf8_lossy(&out.stderr),
        r.log_text()
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        &lines[..3],
        ["ok", "ok", "ok"],
        "{text}; log: {}",
        r.log_text()
    );
    assert!(
        lines[3].starts_with("450 4.7.1 Error: too much mail from user alice"),
        "{text}; log: {}",
        r.log_text()
    );
    // A session opened afterwards is refused too, and bob got the three.
    let out = Command::new("timeout")
        .args(["60", "python3", "-c", CONCURRENT_CLIENT])
        .arg(port.to_string())
        .arg(common::peer("PEER_CA_FILE"))
        .arg("1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("450 4.7.1"), "{text}");
    assert_eq!(
        common::wait_maildir(&dir.path().join("mail/bob"), 3).len(),
        3
    );
    assert!(!r.log_text().contains("counting in this process only"));
}
