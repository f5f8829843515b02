//! mrelayd's submission rate limits (`[mrelayd.rate_limit]`, issue 15) with real clients on
//! loopback: swaks submitting (STARTTLS, AUTH PLAIN) as one user until refused with
//! `450 4.7.1`, a second user unaffected, the per-address limit from another loopback address
//! (127.0.0.2), the recipient limit at the RCPT that passes it, msend exiting 75
//! (EX_TEMPFAIL) when refused, and a restart that keeps the counters. Each test runs its own
//! `mrelayd serve` (as nobody) with a submission listener.
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
    /// `mail/USER`.
    fn start(dir: &Path, limits: &str) -> Relay {
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
        let mut r = Relay {
            dir: dir.to_path_buf(),
            config,
            log: dir.join("mrelayd.log"),
            port: 0,
            child: None,
        };
        r.restart();
        r
    }

    fn restart(&mut self) {
        let (child, l) = common::start_mrelayd(&self.config, &self.log, &["submission"]);
        self.port = l.port("submission");
        self.child = Some(child);
    }

    /// SIGTERM, and wait until it exited (a clean stop saves the counters).
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "mrelayd did not stop on SIGTERM");
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
    assert!(
        r.log_text().contains("rate limits: 2 counters read"),
        "{}",
        r.log_text()
    );
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
