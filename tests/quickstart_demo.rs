//! The quickstart's demo as a new user meets it (issue 12): the directory `mrelayd quickstart`
//! writes, served by `mrelayd serve` and `mpopd serve` from its own config (on port 0 instead of
//! the fixed 2525/2587/1110, so tests run in parallel), tried with the clients people have:
//! swaks (SMTP AUTH), curl (pop3://), getmail6 (POP3 USER/PASS).
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `mrelayd quickstart DEMO --no-run`: the demo's files only; its config's path.
fn quickstart_no_run(demo: &Path) -> PathBuf {
    let out = Command::new(common::bin("mrelayd"))
        .arg("quickstart")
        .arg(demo)
        .arg("--no-run")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    demo.join("mailkit.toml")
}

/// A quickstart directory served by mrelayd and mpopd (both killed on drop).
struct Demo {
    _dir: tempfile::TempDir,
    demo: PathBuf,
    password: String,
    smtp: u16,
    submission: u16,
    pop3: u16,
    _relay: common::KillOnDrop,
    _pop: common::KillOnDrop,
}

impl Demo {
    /// `mrelayd quickstart DIR --no-run`, its ports replaced by 0 and `edit` applied to its
    /// config, then both daemons started from that config.
    fn start(edit: impl FnOnce(String) -> String) -> Demo {
        let dir = common::scratch();
        let demo = dir.path().join("demo");
        let config = common::quickstart_on_port_zero(&demo);
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, edit(text)).unwrap();
        let (relay, l) = common::start_daemon(
            Command::new(common::bin("mrelayd"))
                .arg("-c")
                .arg(&config)
                .arg("serve"),
            &dir.path().join("mrelayd.log"),
            &["smtp", "submission"],
        );
        let (pop, p) = common::start_daemon(
            Command::new(common::bin("mpopd"))
                .arg("-c")
                .arg(&config)
                .arg("serve"),
            &dir.path().join("mpopd.log"),
            &["pop3"],
        );
        let password = std::fs::read_to_string(demo.join("demo-password"))
            .unwrap()
            .trim()
            .to_string();
        Demo {
            _dir: dir,
            demo,
            password,
            smtp: l.port("smtp"),
            submission: l.port("submission"),
            pop3: p.port("pop3"),
            _relay: relay,
            _pop: pop,
        }
    }

    fn logs(&self) -> String {
        let dir = self.demo.parent().unwrap();
        std::fs::read_to_string(dir.join("mrelayd.log")).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("mpopd.log")).unwrap_or_default()
    }

    fn new_mail(&self) -> PathBuf {
        self.demo.join("mail/demo/Maildir/new")
    }

    /// Waits until the demo Maildir's `new/` holds `n` messages and returns them.
    fn wait_mail(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let got: Vec<String> = std::fs::read_dir(self.new_mail())
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The banner's submission command with `user` as the login name: STARTTLS against the
    /// demo's CA, then AUTH `mech`.
    fn swaks_submit(&self, mech: &str, user: &str, subject: &str) -> (bool, String) {
        let ca = self.demo.join("ca.pem");
        common::swaks(&[
            "--server",
            &format!("localhost:{}", self.submission),
            "--tls",
            "--tls-ca-path",
            ca.to_str().unwrap(),
            "--auth",
            mech,
            "--auth-user",
            user,
            "--auth-password",
            &self.password,
            "--from",
            "demo@localhost",
            "--to",
            "demo@localhost",
            "--header",
            &format!("Subject: {subject}"),
        ])
    }

    /// The banner's curl command with `user` as the login name.
    fn curl_pop3(&self, user: &str, path: &str) -> std::process::Output {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "--user"])
            .arg(format!("{user}:{}", self.password))
            .arg(format!("pop3://127.0.0.1:{}/{path}", self.pop3))
            .output()
            .unwrap()
    }
}

/// getmail6 (POP3 USER/PASS, SimplePOP3Retriever) as `user`, into a fresh Maildir (written as
/// nobody); returns the messages it retrieved.
fn getmail(d: &Demo, user: &str, into: &Path) -> Vec<String> {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(into.join("got").join(sub)).unwrap();
    }
    let rc = format!(
        "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\nport = {port}\n\
username = {user}\npassword = {pw}\n\
[destination]\ntype = Maildir\npath = {got}/\nuser = nobody\n\
[options]\nread_all = true\ndelete = false\nverbose = 0\n",
        port = d.pop3,
        pw = d.password,
        got = into.join("got").display(),
    );
    std::fs::write(into.join("getmailrc"), rc).unwrap();
    // getmail refuses to deliver as root; as root it delivers as the destination's `user`.
    common::give_to_nobody(&into.join("got"));
    let out = Command::new("timeout")
        .arg("60")
        .arg("getmail")
        .arg("--getmaildir")
        .arg(into)
        .arg("--rcfile")
        .arg(into.join("getmailrc"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "getmail as {user}: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.logs()
    );
    std::fs::read_dir(into.join("got/new"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

/// The banner says `user: demo@localhost`: that name, any case of it, and the plain `demo` log
/// in on SMTP AUTH (PLAIN and LOGIN, swaks) and POP3 (curl's AUTH, getmail's USER/PASS); each
/// is the one user demo, with its Maildir and its sender addresses.
#[test]
fn every_spelling_of_the_banner_user_logs_in() {
    let d = Demo::start(|t| t);
    let logins = [
        ("PLAIN", "demo@localhost"),
        ("LOGIN", "demo@localhost"),
        ("PLAIN", "DEMO@LocalHost"),
        ("PLAIN", "Demo"),
        ("PLAIN", "demo"),
    ];
    for (i, (mech, user)) in logins.iter().enumerate() {
        let (ok, out) = d.swaks_submit(mech, user, &format!("login {i}"));
        assert!(ok, "AUTH {mech} as {user}: {out}\n{}", d.logs());
        assert!(out.contains("235 "), "{out}");
    }
    let got = d.wait_mail(logins.len());
    assert_eq!(got.len(), logins.len(), "{}", d.logs());
    assert!(
        d.logs().contains("authenticated as demo\n")
            && !d.logs().contains("authenticated as demo@"),
        "the session's user is the passwd-file entry: {}",
        d.logs()
    );
    // A wrong password under the full name still fails.
    let (ok, out) = common::swaks(&[
        "--server",
        &format!("localhost:{}", d.submission),
        "--tls",
        "--tls-ca-path",
        d.demo.join("ca.pem").to_str().unwrap(),
        "--auth",
        "PLAIN",
        "--auth-user",
        "demo@localhost",
        "--auth-password",
        "wrong",
        "--to",
        "demo@localhost",
    ]);
    assert!(!ok && out.contains("535 5.7.8"), "{out}");
    // POP3: curl (SASL AUTH when the server offers it) as every spelling.
    for user in ["demo@localhost", "DEMO@localhost", "demo"] {
        let out = d.curl_pop3(user, "");
        assert!(
            out.status.success(),
            "curl as {user}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            d.logs()
        );
        let list = String::from_utf8_lossy(&out.stdout);
        assert_eq!(list.lines().count(), logins.len(), "{list}");
    }
    let out = d.curl_pop3("demo@localhost", "1");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Subject: login"));
    // getmail6: USER/PASS with the full address.
    let scratch = common::scratch();
    let got = getmail(&d, "demo@localhost", scratch.path());
    assert_eq!(got.len(), logins.len(), "{}", d.logs());
    // A name at a domain the demo does not serve is no one.
    let out = d.curl_pop3("demo@example.org", "");
    assert!(!out.status.success(), "{out:?}");
    let _ = d.smtp;
}

/// A running `mrelayd quickstart` (it supervises an mpopd): stopped with SIGTERM on drop, as
/// Ctrl-C stops it, so its mpopd is stopped too (a SIGKILL would orphan it).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        // Our own child, not reaped before the wait below: the pid is still its.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A second quickstart on the ports of one that runs fails before its banner, with one line
/// naming the address and exit 75 (issue 12, small quickstart habits).
#[test]
fn a_second_quickstart_on_the_same_ports_fails_before_the_banner() {
    let dir = common::scratch();
    let demo = dir.path().join("demo");
    let config = quickstart_no_run(&demo);
    let original = std::fs::read_to_string(&config).unwrap();
    let log = dir.path().join("first.log");
    let (first, smtp) = common::with_unused_ports(|[smtp, submission, pop3]| {
        let text = original
            .replace("127.0.0.1:2525", &format!("127.0.0.1:{smtp}"))
            .replace("127.0.0.1:2587", &format!("127.0.0.1:{submission}"))
            .replace("127.0.0.1:1110", &format!("127.0.0.1:{pop3}"));
        std::fs::write(&config, text).unwrap();
        let from = common::log_len(&log);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(common::bin("mrelayd"))
            .arg("quickstart")
            .arg(&demo)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut running = Running(child);
        match common::try_wait_listening(&mut running.0, &log, from, &["smtp", "submission"]) {
            Ok(_) => Some((running, smtp)),
            Err(e) if common::port_taken(&e) => None,
            Err(e) => panic!("the first quickstart did not start: {e}"),
        }
    });
    let second = common::run_with_input(
        Command::new(common::bin("mrelayd"))
            .arg("quickstart")
            .arg(&demo),
        b"",
    );
    let stdout = String::from_utf8_lossy(&second.stdout);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "{stdout}\n{stderr}");
    assert!(!stdout.contains("mailkit demo"), "banner printed: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "mrelayd: 127.0.0.1:{smtp} is already in use (is another quickstart running?)"
        )),
        "{stderr}"
    );
    drop(first);
}
