//! The quickstart's demo as a new user meets it (issue 12): the directory `mrelayd quickstart`
//! writes, served by `mrelayd serve` and `mpopd serve` from its own config (on port 0 instead of
//! the fixed 2525/2587/1110, so tests run in parallel), tried with the clients people have:
//! swaks (SMTP AUTH), curl (pop3://, smtp:// upload), getmail6 (POP3 USER/PASS), and mutt,
//! s-nail and git send-email with msend as their sendmail.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A quickstart directory served by mrelayd and mpopd (both killed on drop).
struct Demo {
    _dir: tempfile::TempDir,
    demo: PathBuf,
    password: String,
    smtp: u16,
    submission: u16,
    pop3: u16,
    imaps: u16,
    _relay: common::KillOnDrop,
    _pop: common::KillOnDrop,
    _imap: common::KillOnDrop,
}

/// `mrelayd quickstart DIR --no-run` into a scratch directory: the directory and DIR.
fn quickstart_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = common::scratch();
    let demo = dir.path().join("demo");
    common::quickstart_no_run(&demo);
    (dir, demo)
}

impl Demo {
    /// `mrelayd quickstart DIR --no-run`, its ports replaced by 0 and `edit` applied to its
    /// config, then both daemons started from that config.
    fn start(edit: impl FnOnce(String) -> String) -> Demo {
        let (dir, demo) = quickstart_dir();
        Demo::serve(dir, demo, edit)
    }

    /// Serves the quickstart directory `demo` (made by `mrelayd quickstart`) as the quickstart
    /// does, on port 0 instead of 2525/2587/1110/1143/1993: `mrelayd serve`, `mpopd serve` and
    /// `mimapd serve` from its
    /// config, with `edit` applied to it first.
    fn serve(dir: tempfile::TempDir, demo: PathBuf, edit: impl FnOnce(String) -> String) -> Demo {
        let config = demo.join("mailkit.toml");
        common::quickstart_config_on_port_zero(&config);
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
        let (imap, i) = common::start_daemon(
            Command::new(common::bin("mimapd"))
                .arg("-c")
                .arg(&config)
                .arg("serve"),
            &dir.path().join("mimapd.log"),
            &["imap", "imaps"],
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
            imaps: i.port("imaps"),
            _relay: relay,
            _pop: pop,
            _imap: imap,
        }
    }

    fn logs(&self) -> String {
        let dir = self.demo.parent().unwrap();
        std::fs::read_to_string(dir.join("mrelayd.log")).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("mpopd.log")).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("mimapd.log")).unwrap_or_default()
    }

    fn new_mail(&self) -> PathBuf {
        self.demo.join("mail/demo/Maildir/new")
    }

    /// Waits until the demo Maildir holds `n` messages (in `new/`, or in `cur/` once a POP3
    /// session saw them) and returns them.
    fn wait_mail(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        let cur = self.new_mail().with_file_name("cur");
        loop {
            let got: Vec<String> = [self.new_mail(), cur.clone()]
                .iter()
                .flat_map(|d| std::fs::read_dir(d).unwrap().flatten())
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
        ("PLAIN", "demo@mail.localhost"),
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
    for user in [
        "demo@localhost",
        "DEMO@localhost",
        "demo",
        "demo@mail.localhost",
    ] {
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

/// Postfix's smtp-source: `-s 20` sessions at once from loopback, `-m` messages to
/// demo@localhost; whether it succeeded and what it said.
fn smtp_source(port: u16, messages: usize) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["120", "/usr/sbin/smtp-source", "-s", "20", "-m"])
        .arg(messages.to_string())
        .args(["-f", "demo@localhost", "-t", "demo@localhost"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    common::status_and_text(&out)
}

/// Issue 12: 20 parallel sessions from loopback (smtp-source -s 20, the default max_per_ip)
/// got `421 Too many connections`: a session that had said 221 still counted while the client
/// was already connecting again. The quickstart exempts loopback from the per-address limit
/// (as Postfix exempts $mynetworks), and the count is exact even without the exemption.
#[test]
fn twenty_parallel_loopback_sessions_are_never_refused() {
    let d = Demo::start(|t| t);
    let (ok, out) = smtp_source(d.smtp, 200);
    assert!(ok && !out.contains("421"), "{out}\n{}", d.logs());
    assert_eq!(d.wait_mail(200).len(), 200, "{}", d.logs());
    assert!(!d.logs().contains("refused"), "{}", d.logs());
    // No exemption: loopback is held to max_per_ip = 20, and 20 sessions that close and
    // reconnect at once still fit, since a closing session no longer counts.
    let strict = Demo::start(|t| {
        t.replace(
            "trusted_networks = []\n",
            "trusted_networks = []\nmax_per_ip_exceptions = []\n",
        )
    });
    let (ok, out) = smtp_source(strict.smtp, 500);
    assert!(ok && !out.contains("421"), "{out}\n{}", strict.logs());
    assert_eq!(strict.wait_mail(500).len(), 500, "{}", strict.logs());
    assert!(!strict.logs().contains("refused"), "{}", strict.logs());
    // The limit itself still holds for loopback then: 21 open sessions, the 21st refused.
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", strict.smtp)).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut b = [0u8; 3];
        std::io::Read::read_exact(&mut s, &mut b).unwrap();
        assert_eq!(&b, b"220");
        held.push(s);
    }
    let mut s = std::net::TcpStream::connect(("127.0.0.1", strict.smtp)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut reply = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut reply);
    assert!(
        reply.starts_with("421 4.7.0 Too many connections"),
        "{reply}"
    );
    drop(held);
}

/// RFC 5321 §4.5.1 (postmaster MUST be accepted) and RFC 2142 (abuse): the quickstart's aliases
/// send both to demo; `<Postmaster>` without a domain, any case, and abuse@localhost are
/// accepted and delivered (swaks).
#[test]
fn postmaster_and_abuse_are_accepted_and_delivered() {
    let d = Demo::start(|t| t);
    let rcpts = [
        "Postmaster",
        "postmaster@localhost",
        "PostMaster@LocalHost",
        "abuse@localhost",
    ];
    for (i, to) in rcpts.iter().enumerate() {
        let (ok, out) = common::swaks(&[
            "--server",
            &format!("127.0.0.1:{}", d.smtp),
            "--from",
            "someone@example.org",
            "--to",
            to,
            "--header",
            &format!("Subject: to {i}"),
        ]);
        assert!(ok, "RCPT TO:<{to}>: {out}\n{}", d.logs());
        assert!(out.contains(&format!("RCPT TO:<{to}>\n<-  250 ")), "{out}");
    }
    let got = d.wait_mail(rcpts.len());
    assert_eq!(got.len(), rcpts.len(), "{}", d.logs());
    for i in 0..rcpts.len() {
        assert!(got.iter().any(|m| m.contains(&format!("Subject: to {i}"))));
    }
    assert!(got
        .iter()
        .any(|m| m.contains("Delivered-To: abuse@localhost")));
    assert!(got
        .iter()
        .any(|m| m.contains("Delivered-To: postmaster@localhost")));
}

/// Starts `mrelayd serve` on the quickstart directory with `edit` applied to its config and
/// expects it to refuse: its exit code and what it said.
fn refused_start(edit: impl FnOnce(String) -> String, aliases: Option<&str>) -> (i32, String) {
    let (_dir, demo) = quickstart_dir();
    let config = demo.join("mailkit.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(":2525", ":0");
    std::fs::write(&config, edit(text.replace(":2587", ":0"))).unwrap();
    if let Some(a) = aliases {
        std::fs::write(demo.join("aliases"), a).unwrap();
    }
    let out = Command::new("timeout")
        .arg("30")
        .arg(common::bin("mrelayd"))
        .arg("-c")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    let (_, text) = common::status_and_text(&out);
    (out.status.code().unwrap_or(-1), text)
}

/// mrelayd refuses to start (exit 78) when postmaster resolves to nobody, naming the aliases
/// file or key to fix and the key that makes it a warning; with that key it starts and warns.
#[test]
fn mrelayd_refuses_to_start_without_postmaster() {
    // An aliases file without postmaster: named.
    let (code, text) = refused_start(|t| t, Some("abuse: demo\n"));
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains("postmaster@localhost")
            && text.contains("/demo/aliases")
            && text.contains("require_postmaster = false"),
        "{text}"
    );
    // No aliases file at all: the key to set is named.
    let (code, text) = refused_start(|t| t.replace("aliases = \"aliases\"\n", ""), None);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("[mrelayd] aliases"), "{text}");
    // A postmaster alias naming an unknown user is no postmaster either.
    let (code, text) = refused_start(|t| t, Some("postmaster: nobody-here\n"));
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("nobody-here"), "{text}");
    // The admin says warn: it starts (without an aliases file), and says it once.
    let d = Demo::start(|t| t.replace("aliases = \"aliases\"\n", "require_postmaster = false\n"));
    let log = d.logs();
    assert_eq!(
        log.matches("warning: postmaster resolves to no mailbox")
            .count(),
        1,
        "{log}"
    );
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
    let config = common::quickstart_no_run(&demo);
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

/// Shell commands in `text`: lines, a trailing `\` joining the next one.
fn commands(lines: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(line);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

/// The banner's "Try:" commands: the indented lines after `Try:`.
fn banner_commands(banner: &str) -> Vec<String> {
    let (_, tail) = banner
        .split_once("\nTry:\n")
        .unwrap_or_else(|| panic!("no Try: in the banner: {banner}"));
    let lines: Vec<&str> = tail.lines().take_while(|l| l.starts_with("  ")).collect();
    commands(&lines)
}

/// README.md's "Try it" section.
fn readme_try_it() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let (_, section) = readme
        .split_once("\n## Try it\n")
        .expect("README: ## Try it");
    section.split("\n## ").next().unwrap_or("").to_string()
}

/// The commands of README.md's "Try it" section: every line of its ```sh blocks.
fn readme_commands() -> Vec<String> {
    let section = readme_try_it();
    let mut lines = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        if line.starts_with("```") {
            in_block = line == "```sh";
            continue;
        }
        if in_block {
            lines.push(line);
        }
    }
    commands(&lines)
}

/// The commands README.md's "Try it" section gives inline: code spans that start with one of
/// the programs.
fn readme_inline_commands() -> Vec<String> {
    let section = readme_try_it();
    let prose: String = section
        .split("```")
        .step_by(2)
        .collect::<Vec<_>>()
        .join(" ")
        .replace('\n', " ");
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| {
            ["mdeliver ", "msend ", "mrelayd ", "mpopd ", "mdig-mx "]
                .iter()
                .any(|p| span.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

/// How a printed command finds mailkit's programs.
#[derive(Clone, Copy, PartialEq)]
enum Installed {
    /// Not installed (right after `cargo run --release -- quickstart`): the command must name
    /// them by path, as the README's `target/release/msend` and the banner's commands do.
    No,
    /// Installed in PATH (`cargo install`), as the README's pipe examples assume.
    InPath,
}

/// Runs one printed command with `sh -c` in `cwd` (also its HOME, as a new user's), the built
/// binaries in PATH only when `installed` says so, and only
/// what a test must change substituted (`subst`: the quickstart's fixed ports by the ones this
/// test's daemons got, `target/release/` by the built binaries); its status and output.
fn run_printed(
    cmd: &str,
    cwd: &Path,
    subst: &[(String, String)],
    installed: Installed,
) -> (bool, String, String) {
    let mut run = cmd.to_string();
    for (from, to) in subst {
        run = run.replace(from, to);
    }
    let bin_dir = common::bin("mrelayd").parent().unwrap().to_path_buf();
    let system_path = std::env::var("PATH").unwrap_or_default();
    let path = match installed {
        Installed::InPath => format!("{}:{system_path}", bin_dir.display()),
        // A mailkit installed on this machine must not hide a command that only works installed.
        Installed::No => system_path
            .split(':')
            .filter(|d| !Path::new(d).join("mrelayd").exists())
            .collect::<Vec<_>>()
            .join(":"),
    };
    let out = Command::new("timeout")
        .args(["60", "sh", "-c", &run])
        .current_dir(cwd)
        .env("HOME", cwd)
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let (ok, text) = common::status_and_text(&out);
    (
        ok,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        format!("`{run}`: {text}"),
    )
}

/// Issue 12, done when: the README's "Try it" commands and the quickstart banner's "Try"
/// commands, read from README.md and from the banner as printed, each work. The quickstart
/// runs as the README says (`cargo run --release -- quickstart` is `mrelayd quickstart`, the
/// default-run binary, making ./mailkit-demo); only its serving is done here on port 0, by
/// `mrelayd serve` and `mpopd serve` from its config (what the quickstart runs), since the
/// fixed ports may be taken on a test machine, and the commands get those ports.
#[test]
fn readme_and_banner_commands_work_as_printed() {
    let readme = readme_commands();
    assert!(readme.len() >= 3, "{readme:?}");
    let cargo =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(
        cargo.contains("default-run = \"mrelayd\""),
        "cargo run is mrelayd"
    );
    let (first, rest) = readme.split_first().unwrap();
    let quickstart = first
        .strip_prefix("cargo run --release -- ")
        .unwrap_or_else(|| panic!("README's first command: {first}"));
    assert!(quickstart.starts_with("quickstart"), "{first}");
    let cwd = common::scratch();
    let (ok, banner, text) = run_printed(
        &format!(
            "mrelayd {} --no-run",
            quickstart.split('#').next().unwrap().trim()
        ),
        cwd.path(),
        &[],
        Installed::InPath,
    );
    assert!(ok, "{text}");
    // The user's name for programs that want a dot in the domain (git send-email; used in
    // mutt_s_nail_and_git_send_email_send_through_msend).
    assert!(
        banner.contains("demo@mail.localhost where a domain needs a dot (git send-email)"),
        "{banner}"
    );
    let tried = banner_commands(&banner);
    assert!(tried.len() >= 5, "{banner}");
    let demo = cwd.path().join("mailkit-demo");
    assert!(banner.contains(&demo.display().to_string()), "{banner}");
    let d = Demo::serve(cwd, demo, |t| t);
    let subst = [
        ("127.0.0.1:2525", d.smtp),
        ("localhost:2587", d.submission),
        ("127.0.0.1:2587", d.submission),
        ("127.0.0.1:1110", d.pop3),
        ("localhost:1993", d.imaps),
    ]
    .iter()
    .map(|(from, port)| {
        let host = from.split(':').next().unwrap();
        (from.to_string(), format!("{host}:{port}"))
    })
    .chain([(
        "target/release/".to_string(),
        format!("{}/", common::bin("mrelayd").parent().unwrap().display()),
    )])
    .collect::<Vec<_>>();
    let mut mails = 0;
    for cmd in tried.iter().chain(rest) {
        let (ok, stdout, text) = run_printed(cmd, d.demo.parent().unwrap(), &subst, Installed::No);
        assert!(ok, "{text}\n{}", d.logs());
        if cmd.contains("swaks") || cmd.contains("msend") {
            mails += 1;
            assert_eq!(d.wait_mail(mails).len(), mails, "{text}\n{}", d.logs());
        }
        if cmd.contains("pop3://") || cmd.contains("imaps://") {
            assert!(stdout.contains("Subject: "), "{text}");
        }
        if cmd.starts_with("ls ") {
            assert_eq!(stdout.lines().count(), mails, "{text}");
        }
    }
    assert!(mails >= 3, "{tried:?} {rest:?}");
    // The inline one: a message.eml of the reader's into ~/Maildir.
    let inline = readme_inline_commands();
    assert!(
        inline.iter().any(|c| c.starts_with("mdeliver ")),
        "{inline:?}"
    );
    for cmd in &inline {
        let home = common::scratch();
        std::fs::write(home.path().join("message.eml"), "Subject: eml\n\nhello\n").unwrap();
        let (ok, _, text) = run_printed(cmd, home.path(), &[], Installed::InPath);
        assert!(ok, "{text}");
        let new = std::fs::read_dir(home.path().join("Maildir/new"))
            .unwrap()
            .count();
        assert_eq!(new, 1, "{text}");
    }
}

/// A client that logs in, QUITs and connects again at once (python3's poplib, 100 times)
/// against mpopd with max_per_ip = 1 and no exemption: never refused, since a session that
/// said `+OK` to QUIT no longer counts (the class of the SMTP 421 above), and never told the
/// maildrop is still locked by itself.
#[test]
fn pop3_sessions_that_quit_and_reconnect_are_never_refused() {
    let d = Demo::start(|t| {
        t.replace(
            "[mpopd]\n",
            "[mpopd]\nmax_per_ip = 1\nmax_per_ip_exceptions = []\n",
        )
    });
    let script = r#"
import poplib, sys
port, pw = int(sys.argv[1]), sys.argv[2]
refused = []
for _ in range(100):
    try:
        p = poplib.POP3("127.0.0.1", port, timeout=20)
        p.user("demo"); p.pass_(pw); p.stat(); p.quit()
    except Exception as e:
        refused.append(repr(e))
print(len(refused), refused[:3])
"#;
    let out = Command::new("timeout")
        .args(["300", "python3", "-c", script])
        .arg(d.pop3.to_string())
        .arg(&d.password)
        .output()
        .unwrap();
    let (ok, text) = common::status_and_text(&out);
    assert!(ok && text.starts_with("0 []"), "{text}\n{}", d.logs());
}

/// curl's SMTP upload sends the file as it is: a unix text file (bare LF), uploaded with the
/// command mrelayd(1) MESSAGE CONTENT gives (no --crlf; STARTTLS submission as
/// `demo@localhost`), is stored with its lines as lines (bare_newline = "normalize", the
/// quickstart as shipped), and curl reads it back over POP3 with STLS byte for byte in CRLF.
/// A line starting with "." needs --crlf, as the man page says: without it curl does not
/// dot-stuff it.
#[test]
fn curl_submits_as_the_man_page_says() {
    let man = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/mrelayd.1"))
        .unwrap();
    assert!(
        man.contains("MESSAGE CONTENT")
            && man.contains("curl --ssl-reqd --cacert")
            && man.contains("give it --crlf when a line"),
        "mrelayd(1) does not say how curl uploads"
    );
    let d = Demo::start(|t| t);
    let msg = d.demo.parent().unwrap().join("message.txt");
    std::fs::write(
        &msg,
        "From: demo@localhost\nTo: demo@localhost\nSubject: curl upload\n\nhello from curl\n.\nbye\n",
    )
    .unwrap();
    let ca = d.demo.join("ca.pem");
    let curl = |crlf: bool| {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "20", "--ssl-reqd"]);
        if crlf {
            c.arg("--crlf");
        }
        c.arg("--cacert")
            .arg(&ca)
            .arg("--user")
            .arg(format!("demo@localhost:{}", d.password))
            .args([
                "--mail-from",
                "demo@localhost",
                "--mail-rcpt",
                "demo@localhost",
            ])
            .arg("-T")
            .arg(&msg)
            .arg(format!("smtp://localhost:{}", d.submission))
            .output()
            .unwrap()
    };
    let out = curl(false);
    assert!(out.status.success(), "{out:?}\n{}", d.logs());
    let got = d.wait_mail(1);
    // The Maildir has LF line ends; the "." line is a line (not an end of data).
    assert!(
        got.len() == 1 && got[0].contains("\nSubject: curl upload\n\nhello from curl\n.\nbye\n"),
        "{got:?}"
    );
    assert!(!got[0].contains('\r'), "{got:?}");
    let pop = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--ssl-reqd", "--cacert"])
        .arg(&ca)
        .arg("--user")
        .arg(format!("demo@localhost:{}", d.password))
        .arg(format!("pop3://localhost:{}/1", d.pop3))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&pop.stdout);
    assert!(
        pop.status.success()
            && text.contains("\r\nSubject: curl upload\r\n\r\nhello from curl\r\n.\r\nbye\r\n"),
        "{pop:?}"
    );
    assert!(
        !text.replace("\r\n", "").contains(['\r', '\n']),
        "a bare line end: {text:?}"
    );
    // --crlf: the same message again, and a "..dot" line arrives as "..dot" only with it.
    std::fs::write(&msg, "Subject: dots\n\n..dot\n").unwrap();
    let out = curl(true);
    assert!(out.status.success(), "{out:?}\n{}", d.logs());
    let got = d.wait_mail(2);
    assert!(
        got.iter().any(|m| m.contains("\nSubject: dots\n\n..dot\n")),
        "{got:?}"
    );
}

/// The MUAs msend(1) names, with msend as their sendmail and an account of msend.toml for the
/// demo's submission port (STARTTLS, AUTH as `demo@localhost`): mutt (`set sendmail`, which
/// splits at blanks, so the account carries the password command), s-nail (`-S mta=`) and git
/// send-email (`--smtp-server=msend`, full addresses) all deliver to the demo Maildir, the
/// quickstart as shipped. git refuses `demo@localhost` (its address check wants a dot in the
/// domain); the banner's other name for the user, `demo@mail.localhost`, it takes.
#[test]
fn mutt_s_nail_and_git_send_email_send_through_msend() {
    let man =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/msend.1")).unwrap();
    assert!(
        man.contains("mutt splits its sendmail command at blanks"),
        "msend(1) does not say how mutt must name the password command"
    );
    let d = Demo::start(|t| t);
    let dir = d.demo.parent().unwrap().to_path_buf();
    let msend = common::bin("msend");
    let accounts = dir.join("msend.toml");
    std::fs::write(
        &accounts,
        format!(
            "default = \"demo\"\n[accounts.demo]\nserver = \"localhost:{}\"\n\
ca_file = \"{}\"\nuser = \"demo@localhost\"\npassword_command = \"cat {}\"\n\
from = \"demo@localhost\"\n",
            d.submission,
            d.demo.join("ca.pem").display(),
            d.demo.join("demo-password").display()
        ),
    )
    .unwrap();
    // mutt, as msend(1) COMPATIBILITY says.
    let muttrc = dir.join("muttrc");
    std::fs::write(
        &muttrc,
        format!(
            "set sendmail=\"{} -C {} -a demo\"\nset from=demo@localhost\nset use_from=yes\n\
set record=\"\"\nset folder={dir}\n",
            msend.display(),
            accounts.display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    // A message body on the client's stdin, as a user pipes one in; its output.
    let run = |c: &mut Command| {
        use std::io::Write as _;
        let mut child = c
            .env("HOME", &dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"body\n").unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(Command::new("mutt").args(["-n", "-F"]).arg(&muttrc).args([
        "-s",
        "via mutt",
        "demo@localhost",
    ]));
    assert!(out.status.success(), "mutt: {out:?}\n{}", d.logs());
    // s-nail.
    let out = run(Command::new("s-nail")
        .arg("-n")
        .arg("-S")
        .arg(format!("mta={}", msend.display()))
        .arg("-S")
        .arg(format!("mta-arguments=-C {} -a demo", accounts.display()))
        .args(["-r", "demo@localhost", "-s", "via s-nail", "demo@localhost"]));
    assert!(out.status.success(), "s-nail: {out:?}\n{}", d.logs());
    // git send-email: a domain with a dot, as git's own address check wants one.
    let repo = dir.join("repo");
    let git = |args: &[&str]| {
        Command::new("git")
            .args([
                "-c",
                "user.name=Demo",
                "-c",
                "user.email=demo@mail.localhost",
            ])
            .args(args)
            .current_dir(&repo)
            .env("HOME", &dir)
            .output()
            .unwrap()
    };
    std::fs::create_dir_all(&repo).unwrap();
    assert!(git(&["init", "-q"]).status.success());
    assert!(
        git(&["commit", "-q", "--allow-empty", "-m", "via git send-email"])
            .status
            .success()
    );
    let send = |to: &str| {
        git(&[
            "send-email",
            "--confirm=never",
            &format!("--smtp-server={}", msend.display()),
            "--smtp-server-option=-C",
            &format!("--smtp-server-option={}", accounts.display()),
            "--from=demo@mail.localhost",
            &format!("--to={to}"),
            "-1",
        ])
    };
    let out = send("demo@localhost");
    // git 2.47 says so and exits 0, sending nothing (the count of queued ones below is exact).
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unable to extract a valid address"),
        "git send-email took demo@localhost: {out:?}"
    );
    let out = send("demo@mail.localhost");
    assert!(
        out.status.success(),
        "git send-email: {out:?}\n{}",
        d.logs()
    );
    let got = d.wait_mail(3);
    // Three accepted: each client waited for its 250, so a demo@localhost one would be there.
    assert_eq!(d.logs().matches(" queued\n").count(), 3, "{}", d.logs());
    assert!(
        got.iter()
            .any(|m| m.contains("\nTo: demo@mail.localhost\n") && m.contains("via git send-email")),
        "{got:?}"
    );
    for subject in ["via mutt", "via s-nail", "via git send-email"] {
        assert!(
            got.iter().any(|m| m.contains(subject)),
            "{subject} not delivered: {got:?}\n{}",
            d.logs()
        );
    }
}

/// How many header fields named `name` the message's header section has.
fn fields(message: &str, name: &str) -> usize {
    let head = message.split("\n\n").next().unwrap_or("");
    head.lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .count()
}

/// Sieve redirect and vacation in mrelayd's own local delivery (issue 12): the demo user's
/// script (`[mrelayd] sieve =`) redirects with and without :copy and answers with vacation;
/// with no msend configuration anywhere, the redirected copies and the reply go through
/// mrelayd's own queue and arrive in the other users' Maildirs, each with one Return-Path and
/// its own Delivered-To on top, the reply from <>, and only once within its :days.
#[test]
fn sieve_redirect_and_vacation_go_through_mrelayds_own_queue() {
    let (dir, demo) = quickstart_dir();
    let mut passwd = std::fs::read_to_string(demo.join("passwd")).unwrap();
    passwd.push_str("bob:{PLAIN}pw\ncarol:{PLAIN}pw\ndave:{PLAIN}pw\n");
    std::fs::write(demo.join("passwd"), passwd).unwrap();
    std::fs::write(
        demo.join("demo.sieve"),
        "require [\"copy\", \"vacation\"];\n\
         if header :contains \"subject\" \"copy me\" { redirect :copy \"bob@localhost\"; }\n\
         if header :contains \"subject\" \"move me\" { redirect \"carol@localhost\"; }\n\
         vacation :days 1 :subject \"Away\" \"demo is away.\";\n",
    )
    .unwrap();
    let script = format!("{}/%n.sieve", demo.display());
    // The quickstart's own domain, `localhost`: sieve-rs alone drops a redirect to a domain
    // without a dot (mda::sieve, "Redirect addresses").
    let d = Demo::serve(dir, demo.clone(), |t| {
        t.replacen(
            "trusted_networks = []\n",
            &format!("trusted_networks = []\nsieve = \"{script}\"\n"),
            1,
        )
    });
    for subject in ["copy me", "move me"] {
        let (ok, out) = common::swaks(&[
            "--server",
            &format!("127.0.0.1:{}", d.smtp),
            "--from",
            "dave@localhost",
            "--to",
            "demo@localhost",
            "--header",
            &format!("Subject: {subject}"),
        ]);
        assert!(ok, "{subject}: {out}\n{}", d.logs());
    }
    let mail = demo.join("mail");
    let bob = common::wait_maildir(&mail.join("bob/Maildir"), 1);
    let carol = common::wait_maildir(&mail.join("carol/Maildir"), 1);
    let dave = common::wait_maildir(&mail.join("dave/Maildir"), 1);
    let own = d.wait_mail(1);
    let logs = d.logs();
    assert_eq!(bob.len(), 1, "bob: {bob:?}\n{logs}");
    assert_eq!(carol.len(), 1, "carol: {carol:?}\n{logs}");
    assert_eq!(dave.len(), 1, "dave: {dave:?}\n{logs}");
    // :copy kept the first, the plain redirect cancelled the keep of the second.
    assert_eq!(own.len(), 1, "demo: {own:?}\n{logs}");
    assert!(own[0].contains("Subject: copy me"), "{}", own[0]);
    for (who, m, subject) in [("bob", &bob[0], "copy me"), ("carol", &carol[0], "move me")] {
        assert!(m.contains(&format!("Subject: {subject}")), "{who}: {m}");
        assert!(
            m.starts_with(&format!(
                "Return-Path: <dave@localhost>\nDelivered-To: {who}@localhost\n"
            )),
            "{who}: {m}"
        );
        assert_eq!(fields(m, "Return-Path"), 1, "{who}: {m}");
        // Its own, and the demo delivery's below it (a copy coming back is a loop).
        assert_eq!(fields(m, "Delivered-To"), 2, "{who}: {m}");
        assert!(m.contains("\nDelivered-To: demo@localhost\n"), "{who}: {m}");
        // Through the queue: our Sieve hop above the original SMTP hop.
        assert!(m.contains("(mrelayd, Sieve)"), "{who}: {m}");
        assert_eq!(fields(m, "Received"), 2, "{who}: {m}");
    }
    let reply = &dave[0];
    assert!(
        reply.starts_with("Return-Path: <>\nDelivered-To: dave@localhost\n"),
        "{reply}"
    );
    assert!(reply.contains("Subject: Away"), "{reply}");
    assert!(reply.contains("Auto-Submitted: auto-replied"), "{reply}");
    assert!(reply.contains("demo is away."), "{reply}");
    assert!(!logs.contains("msend"), "{logs}");
    // Everything left the queue (the reply only once: a second one would be here or in dave's).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let out = Command::new(common::bin("mrelayd"))
            .arg("-c")
            .arg(demo.join("mailkit.toml"))
            .args(["queue", "list"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{out:?}");
        if !text.contains('@') {
            break;
        }
        assert!(Instant::now() < deadline, "still queued: {text}\n{logs}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(common::wait_maildir(&mail.join("dave/Maildir"), 0).len(), 1);
}
