//! mfetch against real servers on loopback: the peers' Dovecot (POP3 and IMAP, each test its
//! own passwd-file user `fetchN` and Maildir), mpopd (POP3), and scripted hostile servers for
//! what no real server does (100 KB lines, stalls, a PREAUTH greeting in clear). Every IMAP
//! test body runs once per [`Imapd`]: against the peers' Dovecot (which proves the test right)
//! and against our mimapd serving the same kind of Maildir (issue 14, "The same against mpopd
//! and mimapd").

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mailkit::maildir::Maildir;

/// One test's client side: a home (state, netrc) and a destination Maildir.
struct Client {
    dir: tempfile::TempDir,
}

impl Client {
    fn new() -> Client {
        Client {
            dir: common::scratch(),
        }
    }

    fn home(&self) -> &Path {
        self.dir.path()
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(common::bin("mfetch"));
        cmd.args(args)
            .env("HOME", self.home())
            .env("XDG_STATE_HOME", self.home().join("state"))
            .env("USER", "tester")
            .env_remove("MAILKIT_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs mfetch to completion (bounded by `timeout 120`).
    fn run(&self, args: &[&str]) -> (i32, String) {
        let mut cmd = Command::new("/usr/bin/timeout");
        cmd.arg("120").arg(common::bin("mfetch")).args(args);
        cmd.env("HOME", self.home())
            .env("XDG_STATE_HOME", self.home().join("state"))
            .env("USER", "tester")
            .env_remove("MAILKIT_CONFIG")
            .stdin(Stdio::null());
        let out: Output = cmd.output().expect("running mfetch");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// The arguments for the peers' CA, the password from a command, this client's Maildir.
    fn peer_args(&self) -> Vec<String> {
        let md = self.maildir();
        [
            "-v",
            "--ca-file",
            &common::peer("PEER_CA_FILE"),
            "--password-command",
            "echo password",
            "--maildir",
            md.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// mfetch with [`Client::peer_args`].
    fn fetch(&self, url: &str, extra: &[&str]) -> (i32, String) {
        let mut args = self.peer_args();
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push(url.to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args)
    }
}

/// The files of a Maildir (new/ and cur/), by Message-ID, with their bytes.
fn by_message_id(md: &Path) -> HashMap<String, Vec<Vec<u8>>> {
    let mut out: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for sub in ["new", "cur"] {
        let Ok(rd) = std::fs::read_dir(md.join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            let id = mailkit::fetch::dest::message_id_of(&bytes).unwrap_or_default();
            out.entry(id).or_default().push(bytes);
        }
    }
    out
}

/// A test message in LF form: dot-stuffing cases, a long line, its own Message-ID.
fn message(tag: &str, i: usize) -> Vec<u8> {
    let filler = "x".repeat(i % 700);
    format!(
        "Return-Path: <bob@example.test>\nFrom: Bob <bob@example.test>\nTo: alice@example.test\n\
         Subject: {tag} message {i}\nMessage-ID: <{tag}-{i}@example.test>\n\n\
         body of {i}\n.leading dot\n..two dots\n.\n{filler}\nlast line\n"
    )
    .into_bytes()
}

/// The Dovecot user `fetchN`'s Maildir, emptied, with `count` messages of `tag`; the
/// messages by Message-ID.
fn dovecot_box(user: &str, tag: &str, count: usize) -> (PathBuf, HashMap<String, Vec<u8>>) {
    let root = PathBuf::from(common::peer("PEER_MAIL_DIR")).join(user);
    let _ = std::fs::remove_dir_all(&root);
    let md = Maildir::create(&root).unwrap();
    let mut sent = HashMap::new();
    for i in 1..=count {
        let m = message(tag, i);
        md.deliver(&m).unwrap();
        sent.insert(format!("<{tag}-{i}@example.test>"), m);
    }
    common::give_to_nobody(&root);
    (root, sent)
}

fn add_messages(root: &Path, tag: &str, range: std::ops::RangeInclusive<usize>) {
    let md = Maildir::open(root).unwrap();
    for i in range {
        md.deliver(&message(tag, i)).unwrap();
    }
    common::give_to_nobody(root);
}

fn pop3_url(user: &str) -> String {
    format!(
        "pop3://{user}@localhost:{}/",
        common::peer("PEER_POP3_PORT")
    )
}

fn pop3s_url(user: &str) -> String {
    format!(
        "pop3s://{user}@localhost:{}/",
        common::peer("PEER_POP3S_PORT")
    )
}

/// Every message sent is there exactly once and byte for byte.
fn assert_exact(md: &Path, sent: &HashMap<String, Vec<u8>>) {
    let got = by_message_id(md);
    for (id, bytes) in sent {
        let copies = got.get(id).map_or(0, Vec::len);
        assert_eq!(copies, 1, "{id}: {copies} copies");
        assert_eq!(
            &got[id][0], bytes,
            "{id} not byte-exact (CRLF turned into LF, nothing else)"
        );
    }
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), sent.len());
}

#[test]
fn pop3_dovecot_thousand_messages_exact_then_nothing_then_only_the_new() {
    let (root, mut sent) = dovecot_box("fetch1", "p1", 1000);
    let c = Client::new();
    let (code, text) = c.fetch(&pop3_url("fetch1"), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("TLS started"), "STLS is used: {text}");
    assert!(text.contains("1000 messages fetched"), "{text}");
    assert_exact(&c.maildir(), &sent);
    // Kept on the server by default.
    assert_eq!(common::maildir_count(&root), 1000);
    let (code, text) = c.fetch(&pop3s_url("fetch1"), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(" 0 messages fetched"), "{text}");
    add_messages(&root, "p1", 1001..=1003);
    for i in 1001..=1003 {
        sent.insert(format!("<p1-{i}@example.test>"), message("p1", i));
    }
    let (code, text) = c.fetch(&pop3_url("fetch1"), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(" 3 messages fetched"), "{text}");
    assert_exact(&c.maildir(), &sent);
}

#[test]
fn pop3_delete_removes_only_what_is_stored_and_limit_counts() {
    let (root, sent) = dovecot_box("fetch2", "p2", 30);
    let c = Client::new();
    let (code, text) = c.fetch(&pop3s_url("fetch2"), &["--delete", "--limit", "10"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("10 messages fetched"), "{text}");
    assert!(text.contains("10 deleted"), "{text}");
    assert_eq!(common::maildir_count(&root), 20);
    let (code, text) = c.fetch(&pop3s_url("fetch2"), &["--delete"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(common::maildir_count(&root), 0, "{text}");
    assert_exact(&c.maildir(), &sent);
}

#[test]
fn pop3_through_mdeliver_and_an_mda_that_says_later() {
    let (root, sent) = dovecot_box("fetch3", "p3", 5);
    let c = Client::new();
    let dest = c.home().join("viamda");
    // An MDA that defers: exit 75, nothing recorded, everything kept.
    let (code, text) = c.fetch(
        &pop3s_url("fetch3"),
        &["--delete", "--mda", "cat >/dev/null; exit 75"],
    );
    assert_eq!(code, 75, "{text}");
    assert_eq!(common::maildir_count(&root), 5);
    let mda = format!("{} {}", common::bin("mdeliver").display(), dest.display());
    let (code, text) = c.fetch(
        &pop3s_url("fetch3"),
        &["--mda", &mda, "--recipient", "fetch3@example.test"],
    );
    assert_eq!(code, 0, "{text}");
    let got = by_message_id(&dest);
    assert_eq!(got.len(), 5, "{got:?}");
    for (id, bytes) in &sent {
        let stored = &got[id][0];
        let text = String::from_utf8_lossy(stored);
        assert!(
            text.starts_with(
                "Return-Path: <bob@example.test>\nDelivered-To: fetch3@example.test\n"
            ),
            "{text}"
        );
        assert!(stored.ends_with(&bytes[bytes.len() - 40..]));
    }
    // A failing MDA stops the account with an error and keeps the mail.
    add_messages(&root, "p3", 6..=6);
    let (code, text) = c.fetch(&pop3s_url("fetch3"), &["--delete", "--mda", "exit 3"]);
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("exited 3"), "{text}");
}

#[test]
fn pop3_errors_have_their_exit_codes() {
    let _ = dovecot_box("fetch4", "p4", 1);
    let c = Client::new();
    let ca = common::peer("PEER_CA_FILE");
    let md = c.maildir();
    let (code, text) = c.run(&[
        "--ca-file",
        &ca,
        "--password-command",
        "echo wrong",
        "--maildir",
        md.to_str().unwrap(),
        &pop3s_url("fetch4"),
    ]);
    assert_eq!(code, 77, "{text}");
    // Without --ca-file the test CA is not trusted.
    let (code, text) = c.run(&[
        "--password-command",
        "echo password",
        "--maildir",
        md.to_str().unwrap(),
        &pop3s_url("fetch4"),
    ]);
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("not trusted"), "{text}");
    // No password anywhere (no terminal, no netrc, no command).
    let (code, text) = c.run(&["--ca-file", &ca, &pop3s_url("fetch4")]);
    assert_eq!(code, 78, "{text}");
    // On a terminal mfetch asks (the password not echoed), as for `mfetch URL` by hand.
    let prompt = r#"
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
seen, deadline = b"", time.time() + 60
while b"Password for" not in seen and time.time() < deadline:
    try:
        seen += os.read(fd, 1024)
    except OSError:
        break
os.write(fd, b"password\n")
rest = b""
while True:
    try:
        d = os.read(fd, 1024)
    except OSError:
        break
    if not d:
        break
    rest += d
_, st = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(st))
print((seen + rest).decode(errors="replace"))
"#;
    let out = Command::new("/usr/bin/timeout")
        .args(["120", "/usr/bin/python3", "-c", prompt])
        .arg(common::bin("mfetch"))
        .args(["--ca-file", &ca, "--maildir", md.to_str().unwrap()])
        .arg(pop3s_url("fetch4"))
        .env("HOME", c.home())
        .env("XDG_STATE_HOME", c.home().join("prompt-state"))
        .env_remove("MAILKIT_CONFIG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, text) = said.split_once('\n').unwrap_or((&said, ""));
    assert_eq!(code.trim(), "0", "{said}");
    assert!(text.contains("Password for fetch4@localhost: "), "{said}");
    assert!(!text.contains("password\r\n"), "echoed: {said}");
    assert_eq!(common::maildir_count(&md), 1, "{said}");
    // ~/.netrc is read as msend reads it (a second account state: it fetches again).
    std::fs::remove_dir_all(&md).unwrap();
    std::fs::write(
        c.home().join(".netrc"),
        "machine localhost login fetch4 password password\n",
    )
    .unwrap();
    let (code, text) = c.run(&[
        "-v",
        "--ca-file",
        &ca,
        "--maildir",
        md.to_str().unwrap(),
        &pop3s_url("fetch4"),
    ]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(common::maildir_count(&md), 1);
    // A password in the URL is refused.
    let (code, _) = c.run(&["pop3s://u:pw@localhost/"]);
    assert_eq!(code, 78);
}

/// A running `mpopd serve` with users alice (APOP-capable {PLAIN}) and its Maildirs.
struct Mpopd {
    _child: common::KillOnDrop,
    dir: tempfile::TempDir,
    plain: u16,
    tls: u16,
}

impl Mpopd {
    fn start(tls: bool) -> Mpopd {
        let dir = common::scratch();
        let d = dir.path();
        std::fs::write(d.join("passwd"), "alice:{PLAIN}password::::::\n").unwrap();
        Maildir::create(d.join("mail/alice")).unwrap();
        let tls_block = if tls {
            format!(
                "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                common::peer("PEER_CERT_FILE"),
                common::peer("PEER_KEY_FILE")
            )
        } else {
            String::new()
        };
        let listen = if tls {
            r#"listen = [ { address = "127.0.0.1:0" }, { address = "127.0.0.1:0", role = "implicit-tls" } ]"#
        } else {
            r#"listen = [ { address = "127.0.0.1:0" } ]"#
        };
        let text = format!(
            "hostname = \"localhost\"\n{tls_block}[users]\npasswd_file = \"{p}/passwd\"\nmail_location = \"{p}/mail/%u\"\n[mpopd]\n{listen}\napop = true\n",
            p = d.display()
        );
        std::fs::write(d.join("mailkit.toml"), common::with_run_as(&text)).unwrap();
        common::give_to_nobody(d);
        let roles: &[&str] = if tls { &["pop3", "pop3s"] } else { &["pop3"] };
        let (child, l) = common::start_daemon(
            Command::new(common::bin("mpopd"))
                .arg("-c")
                .arg(d.join("mailkit.toml"))
                .arg("serve"),
            &d.join("mpopd.log"),
            roles,
        );
        Mpopd {
            _child: child,
            plain: l.port("pop3"),
            tls: if tls { l.port("pop3s") } else { 0 },
            dir,
        }
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail/alice")
    }
}

#[test]
fn pop3_mpopd_stls_pops_and_apop_through_an_account() {
    let s = Mpopd::start(true);
    let md = Maildir::open(s.maildir()).unwrap();
    let mut sent = HashMap::new();
    for i in 1..=50 {
        let m = message("mp", i);
        md.deliver(&m).unwrap();
        sent.insert(format!("<mp-{i}@example.test>"), m);
    }
    common::give_to_nobody(&s.maildir());
    let c = Client::new();
    let dest = c.maildir();
    let config = c.home().join("mailkit.toml");
    std::fs::write(
        &config,
        format!(
            r#"[mfetch]
maildir = "{dest}"
concurrency = 1
[mfetch.accounts.stls]
server = "pop3://alice@localhost:{plain}"
password_command = "echo password"
ca_file = "{ca}"
[mfetch.accounts.apop]
server = "pop3s://alice@localhost:{tls}"
auth = "apop"
password_command = "echo password"
tls_fingerprint = "{pin}"
delete = true
"#,
            dest = dest.display(),
            plain = s.plain,
            tls = s.tls,
            ca = common::peer("PEER_CA_FILE"),
            pin = common::peer_key_sha256(),
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let (code, text) = c.run(&["-c", cfg, "-v", "-a", "stls"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("stls: 50 messages fetched"), "{text}");
    assert_exact(&dest, &sent);
    // The other account shares the Maildir but not the state: it sees its own 50 as new,
    // stores them again (another account), and deletes them on the server.
    let (code, text) = c.run(&["-c", cfg, "-v", "-a", "apop"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("apop: 50 messages fetched"), "{text}");
    assert!(text.contains("50 deleted"), "{text}");
    assert_eq!(common::maildir_count(&s.maildir()), 0);
    // Both accounts at once, nothing new: one summary line each.
    // (concurrency = 1: mpopd, like Dovecot, lets one session at a time have the maildrop)
    let (code, text) = c.run(&["-c", cfg, "-v", "--all"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("stls: 0 messages") && text.contains("apop: 0 messages"),
        "{text}"
    );
}

#[test]
fn pop3_never_sends_a_password_in_clear() {
    let s = Mpopd::start(false);
    Maildir::open(s.maildir())
        .unwrap()
        .deliver(&message("clear", 1))
        .unwrap();
    common::give_to_nobody(&s.maildir());
    let c = Client::new();
    let url = format!("pop3://alice@127.0.0.1:{}/", s.plain);
    let (code, text) = c.fetch(&url, &[]);
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("no STLS"), "{text}");
    assert_eq!(common::maildir_count(&c.maildir()), 0);
    let (code, text) = c.fetch(&url, &["--allow-plaintext"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(common::maildir_count(&c.maildir()), 1);
}

/// A scripted POP3 server on port 0: answers each command line with `answer(line)`; `None`
/// stalls (reads on, never answers). Returns its port.
fn scripted_pop3(answer: impl Fn(&str) -> Option<Vec<u8>> + Send + 'static) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let _ = s.write_all(b"+OK scripted <1.2@test>\r\n");
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = Vec::new();
            let mut stalled = false;
            // Bytes, not text: a TLS ClientHello after STLS is read (and ignored) too.
            while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if !stalled {
                    match answer(String::from_utf8_lossy(&line).trim_end()) {
                        Some(bytes) => {
                            let _ = s.write_all(&bytes);
                            // "+OK begin" (STLS's go-ahead) and then silence.
                            stalled = bytes.starts_with(b"+OK begin");
                        }
                        None => stalled = true,
                    }
                }
                line.clear();
            }
        }
    });
    port
}

fn plain_server(extra: fn(&str) -> Option<Vec<u8>>) -> impl Fn(&str) -> Option<Vec<u8>> {
    move |line: &str| {
        if let Some(a) = extra(line) {
            return if a.is_empty() { None } else { Some(a) };
        }
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        Some(match verb.as_str() {
            "CAPA" => b"+OK\r\nUSER\r\nUIDL\r\n.\r\n".to_vec(),
            "USER" | "PASS" | "QUIT" | "DELE" => b"+OK\r\n".to_vec(),
            "UIDL" => b"+OK\r\n1 a\r\n.\r\n".to_vec(),
            "LIST" => b"+OK\r\n1 20\r\n.\r\n".to_vec(),
            "RETR" => b"+OK\r\nSubject: x\r\n\r\nbody\r\n.\r\n".to_vec(),
            _ => b"-ERR\r\n".to_vec(),
        })
    }
}

#[test]
fn hostile_pop3_servers_are_refused_or_time_out() {
    let c = Client::new();
    let run = |port: u16, extra: &[&str]| {
        let url = format!("pop3://u@127.0.0.1:{port}/");
        let mut args = vec!["--allow-plaintext", "--timeout", "2"];
        args.extend_from_slice(extra);
        let start = Instant::now();
        let r = c.fetch(&url, &args);
        (r.0, r.1, start.elapsed())
    };
    // A 100 KB UIDL line: refused (69), nothing stored.
    let port = scripted_pop3(plain_server(|l| {
        l.eq_ignore_ascii_case("UIDL").then(|| {
            let mut v = b"+OK\r\n1 ".to_vec();
            v.extend(std::iter::repeat_n(b'a', 100 * 1024));
            v.extend_from_slice(b"\r\n.\r\n");
            v
        })
    }));
    let (code, text, _) = run(port, &[]);
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("line over"), "{text}");
    assert_eq!(common::maildir_count(&c.maildir()), 0);
    // A server that stops in the middle of a message: the time limit (75).
    let port = scripted_pop3(plain_server(|l| {
        l.starts_with("RETR")
            .then(|| b"+OK\r\nSubject: half\r\n".to_vec())
    }));
    let (code, text, took) = run(port, &[]);
    assert_eq!(code, 75, "{text}");
    assert!(text.contains("no answer within 2s"), "{text}");
    assert!(took < Duration::from_secs(30));
    // A server that says go ahead to STLS and then never speaks TLS.
    let port = scripted_pop3(plain_server(|l| match l {
        "CAPA" => Some(b"+OK\r\nSTLS\r\nUSER\r\n.\r\n".to_vec()),
        "STLS" => Some(b"+OK begin\r\n".to_vec()),
        _ => None,
    }));
    let url = format!("pop3://u@127.0.0.1:{port}/");
    let (code, text) = c.fetch(&url, &["--timeout", "2"]);
    assert_eq!(code, 75, "{text}");
    assert!(text.contains("timed out"), "{text}");
    // And a well-behaved scripted server works, which shows the three above failed for their
    // one fault.
    let port = scripted_pop3(plain_server(|_| None));
    let (code, text, _) = run(port, &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(common::maildir_count(&c.maildir()), 1);
}

/// Kill -9 at a random instant of a 1,000-message fetch, then a rerun to the end, `rounds`
/// times (each round from an empty Maildir and state): every message exactly once in the
/// Maildir (by Message-ID, byte for byte); through an MDA (`mda_rounds` times) at most one
/// duplicate per kill.
fn kill_nine(url: &str, sent: &HashMap<String, Vec<u8>>, rounds: usize, mda_rounds: usize) {
    let ca = common::peer("PEER_CA_FILE");
    let args = |c: &Client, mda: Option<&str>| -> Vec<String> {
        let mut a = vec![
            "-q".to_string(),
            "--ca-file".into(),
            ca.clone(),
            "--password-command".into(),
            "echo password".into(),
        ];
        match mda {
            Some(m) => a.extend(["--mda".into(), m.into()]),
            None => a.extend(["--maildir".into(), c.maildir().to_str().unwrap().into()]),
        }
        a.push(url.to_string());
        a
    };
    // One whole run, to know how long a fetch takes.
    let c = Client::new();
    let a = args(&c, None);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let start = Instant::now();
    let (code, text) = c.run(&refs);
    assert_eq!(code, 0, "{text}");
    let whole = start.elapsed().as_millis() as u64;
    assert_exact(&c.maildir(), sent);
    // Kills at a random instant of that span, then a rerun to the end.
    // With `progress`, the instant is a random number of messages stored there (not a time, so
    // a loaded machine does not let the fetch finish first); without, a random instant.
    let kill_then_finish = |c: &Client, a: &[String], progress: Option<&Path>| -> bool {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut child = c.command(&refs).stderr(Stdio::null()).spawn().unwrap();
        match progress {
            Some(md) => {
                let at = 1 + (common::rand_u64() % 998) as usize;
                while common::maildir_count(md) < at && child.try_wait().unwrap().is_none() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            None => std::thread::sleep(Duration::from_millis(common::rand_u64() % whole.max(1))),
        }
        let killed = child.try_wait().unwrap().is_none();
        if killed {
            child.kill().unwrap();
        }
        let _ = child.wait();
        let (code, text) = c.run(&refs);
        assert_eq!(code, 0, "{text}");
        killed
    };
    let mut killed = 0;
    for _ in 0..rounds {
        let c = Client::new();
        killed += usize::from(kill_then_finish(&c, &args(&c, None), Some(&c.maildir())));
        assert_exact(&c.maildir(), sent);
    }
    assert!(
        killed >= rounds * 3 / 4,
        "only {killed} of {rounds} runs were killed mid-fetch"
    );
    // Through an MDA.
    for _ in 0..mda_rounds {
        let c = Client::new();
        let dir = c.home().join("viamda");
        let mda = format!("{} {}", common::bin("mdeliver").display(), dir.display());
        let kills = usize::from(kill_then_finish(&c, &args(&c, Some(&mda)), None));
        let got = by_message_id(&dir);
        let extra: usize = got.values().map(|v| v.len() - 1).sum();
        assert_eq!(got.len(), 1000);
        assert!(extra <= kills, "{extra} duplicates after {kills} kill");
    }
}

#[test]
fn pop3_kill_nine_twenty_times_leaves_every_message_exactly_once() {
    let (_root, sent) = dovecot_box("fetch5", "k", 1000);
    kill_nine(&pop3s_url("fetch5"), &sent, 20, 3);
}

/// [`kill_nine`] over imaps:// from `server`.
fn imap_kill_nine_twenty_times(server: Imapd) {
    let user = server.user("fetch9");
    let (_root, sent) = dovecot_box(&user, "k9", 1000);
    let s = server.start(&user);
    kill_nine(&s.imaps_url(&user, "INBOX"), &sent, 20, 3);
}

#[test]
fn imap_kill_nine_twenty_times_leaves_every_message_exactly_once() {
    imap_kill_nine_twenty_times(Imapd::Dovecot);
}

#[test]
fn imap_mimapd_kill_nine_twenty_times_leaves_every_message_exactly_once() {
    imap_kill_nine_twenty_times(Imapd::Mimapd);
}

/// The IMAP server a test fetches from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Imapd {
    /// The peers' Dovecot (tests/peers/templates/dovecot.conf.in), users `fetchN`.
    Dovecot,
    /// Our `mimapd serve`, started by the test on the peers' Maildir of its user.
    Mimapd,
}

/// An IMAP server listening: its STARTTLS port and its implicit-TLS port.
struct ImapServer {
    plain: u16,
    tls: u16,
    _child: Option<common::KillOnDrop>,
    _dir: Option<tempfile::TempDir>,
}

impl Imapd {
    /// The test's user on this server: Dovecot's `fetchN` itself (in the peers' users), or
    /// `fetchN-mimapd` for mimapd (its own passwd-file), so the two never share a Maildir.
    fn user(self, base: &str) -> String {
        match self {
            Imapd::Dovecot => base.to_string(),
            Imapd::Mimapd => format!("{base}-mimapd"),
        }
    }

    /// The server for `user` (password "password"), whose Maildir is `PEER_MAIL_DIR/user`
    /// (see [`dovecot_box`]). Dovecot is the peers'; mimapd is started here.
    fn start(self, user: &str) -> ImapServer {
        match self {
            Imapd::Dovecot => ImapServer {
                plain: common::peer("PEER_IMAP_PORT").parse().unwrap(),
                tls: common::peer("PEER_IMAPS_PORT").parse().unwrap(),
                _child: None,
                _dir: None,
            },
            Imapd::Mimapd => {
                let (child, l, dir, _log) = common::start_mimapd_on_peer_maildirs(&[user]);
                ImapServer {
                    plain: l.port("imap"),
                    tls: l.port("imaps"),
                    _child: Some(child),
                    _dir: Some(dir),
                }
            }
        }
    }
}

impl ImapServer {
    fn imaps_url(&self, user: &str, folder: &str) -> String {
        format!("imaps://{user}@localhost:{}/{folder}", self.tls)
    }

    fn imap_url(&self, user: &str, folder: &str) -> String {
        format!("imap://{user}@localhost:{}/{folder}", self.plain)
    }
}

/// 1,000 messages over imaps://, nothing new, only the new over STARTTLS, all of it over
/// STARTTLS, and all of it through mdeliver.
fn imap_thousand_messages_over_imaps_starttls_and_mdeliver_then_nothing_then_the_new(
    server: Imapd,
) {
    let user = server.user("fetch6");
    let user = user.as_str();
    let (root, mut sent) = dovecot_box(user, "i6", 1000);
    let s = server.start(user);
    let imaps_url = |u: &str, f: &str| s.imaps_url(u, f);
    let imap_url = |u: &str, f: &str| s.imap_url(u, f);
    let c = Client::new();
    let (code, text) = c.fetch(&imaps_url(user, "INBOX"), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1000 messages fetched"), "{text}");
    assert_exact(&c.maildir(), &sent);
    // Kept on the server by default.
    assert_eq!(common::maildir_count(&root), 1000);
    // Nothing new: STATUS shows it, the folder is not even selected.
    let (code, text) = c.fetch(&imaps_url(user, "INBOX"), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(" 0 messages fetched"), "{text}");
    assert!(text.contains("1 folders unchanged"), "{text}");
    add_messages(&root, "i6", 1001..=1003);
    for i in 1001..=1003 {
        sent.insert(format!("<i6-{i}@example.test>"), message("i6", i));
    }
    // The same account over imap:// with STARTTLS fetches only the new.
    let (code, text) = c.fetch(&imap_url(user, "INBOX"), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("TLS started"), "STARTTLS is used: {text}");
    assert!(text.contains(" 3 messages fetched"), "{text}");
    assert_exact(&c.maildir(), &sent);
    // Another client, all of it over STARTTLS.
    let c2 = Client::new();
    let (code, text) = c2.fetch(&imap_url(user, ""), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("1003 messages fetched"), "{text}");
    assert_exact(&c2.maildir(), &sent);
    // Through mdeliver.
    let c3 = Client::new();
    let dest = c3.home().join("viamda");
    let mda = format!("{} {}", common::bin("mdeliver").display(), dest.display());
    let (code, text) = c3.fetch(
        &imaps_url(user, "INBOX"),
        &[
            "--mda",
            &mda,
            "--recipient",
            &format!("{user}@example.test"),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let got = by_message_id(&dest);
    assert_eq!(got.len(), 1003);
    for (id, bytes) in &sent {
        assert_eq!(got[id].len(), 1, "{id}");
        let stored = &got[id][0];
        assert!(
            String::from_utf8_lossy(stored).starts_with(&format!(
                "Return-Path: <bob@example.test>\nDelivered-To: {user}@example.test\n"
            )),
            "{id}"
        );
        assert!(stored.ends_with(&bytes[bytes.len() - 40..]));
    }
}

#[test]
fn imap_dovecot_thousand_messages_over_imaps_starttls_and_mdeliver_then_nothing_then_the_new() {
    imap_thousand_messages_over_imaps_starttls_and_mdeliver_then_nothing_then_the_new(
        Imapd::Dovecot,
    );
}

#[test]
fn imap_mimapd_thousand_messages_over_imaps_starttls_and_mdeliver_then_nothing_then_the_new() {
    imap_thousand_messages_over_imaps_starttls_and_mdeliver_then_nothing_then_the_new(
        Imapd::Mimapd,
    );
}

/// Files in a Dovecot Maildir whose flags contain `flag`.
fn flagged(md: &Path, flag: char) -> usize {
    std::fs::read_dir(md.join("cur"))
        .map(|r| {
            r.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.split_once(":2,").is_some_and(|(_, f)| f.contains(flag))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Keep with --limit, \\Seen only when asked, MOVE to a folder, --delete later.
fn imap_keep_limit_seen_move_and_delete(server: Imapd) {
    let user = server.user("fetch7");
    let (root, sent) = dovecot_box(&user, "i7", 30);
    let s = server.start(&user);
    let c = Client::new();
    let config = c.home().join("mailkit.toml");
    let account = |name: &str, extra: &str| {
        format!(
            "[mfetch.accounts.{name}]\nserver = \"{}\"\npassword_command = \"echo password\"\n\
             ca_file = \"{}\"\nmaildir = \"{}\"\n{extra}\n",
            s.imaps_url(&user, "INBOX"),
            common::peer("PEER_CA_FILE"),
            c.home().join(name).display()
        )
    };
    let text = format!(
        "[mfetch]\n{}{}{}",
        account("keep", ""),
        account("seen", "seen = true"),
        account("mv", "move_to = \"Archive\""),
    );
    std::fs::write(&config, text).unwrap();
    let cfg = config.to_str().unwrap();
    let (code, text) = c.run(&["-c", cfg, "-v", "-a", "keep", "--limit", "10"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("keep: 10 messages fetched"), "{text}");
    let (code, text) = c.run(&["-c", cfg, "-v", "-a", "keep"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("keep: 20 messages fetched"), "{text}");
    assert_exact(&c.home().join("keep"), &sent);
    assert_eq!(common::maildir_count(&root), 30);
    // Fetching sets no \Seen (BODY.PEEK); `seen = true` does.
    assert_eq!(flagged(&root, 'S'), 0);
    let (code, text) = c.run(&["-c", cfg, "-v", "-a", "seen"]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(flagged(&root, 'S'), 30, "{text}");
    // Move 5 to Archive (Dovecot and mimapd have MOVE).
    let (code, text) = c.run(&["-c", cfg, "-v", "-a", "mv", "--limit", "5"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("5 messages fetched") && text.contains("5 deleted"),
        "{text}"
    );
    assert_eq!(common::maildir_count(&root), 25);
    assert_eq!(common::maildir_count(&root.join(".Archive")), 5);
    // --delete on the keep account: nothing new, the 25 fetched earlier are deleted now.
    let (code, text) = c.run(&["-c", cfg, "-v", "-a", "keep", "--delete"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("keep: 0 messages fetched") && text.contains("25 deleted"),
        "{text}"
    );
    assert_eq!(common::maildir_count(&root), 0);
    assert_exact(&c.home().join("keep"), &sent);
    assert_eq!(common::maildir_count(&c.home().join("mv")), 5);
}

#[test]
fn imap_dovecot_keep_limit_seen_move_and_delete() {
    imap_keep_limit_seen_move_and_delete(Imapd::Dovecot);
}

#[test]
fn imap_mimapd_keep_limit_seen_move_and_delete() {
    imap_keep_limit_seen_move_and_delete(Imapd::Mimapd);
}

/// Gives Dovecot's INBOX of `root` a new UIDVALIDITY (RFC 3501 §2.3.1.1): the uidlist's `V`
/// rewritten, the indexes removed, so every message gets a new UID under it.
fn new_uidvalidity(root: &Path) {
    let list = root.join("dovecot-uidlist");
    let text = std::fs::read_to_string(&list).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    let mut header: Vec<String> = first.split(' ').map(String::from).collect();
    for f in &mut header {
        if let Some(v) = f.strip_prefix('V') {
            *f = format!("V{}", v.parse::<u64>().unwrap() + 1000);
        }
    }
    std::fs::write(&list, format!("{}\n{rest}", header.join(" "))).unwrap();
    for e in std::fs::read_dir(root).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("dovecot.index") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    common::give_to_nobody(root);
}

/// Two folders into Maildir++ folders, a UIDVALIDITY change, a 100 MB message streamed, a
/// message with a 2 MB header.
fn imap_folders_into_maildir_folders_and_a_uidvalidity_change_duplicates_nothing(server: Imapd) {
    let user = server.user("fetch8");
    let (root, mut sent) = dovecot_box(&user, "i8", 20);
    let s = server.start(&user);
    let lists = Maildir::open(&root).unwrap().folder("Lists.Rust").unwrap();
    let mut in_lists = HashMap::new();
    for i in 1..=10 {
        let m = message("i8l", i);
        lists.deliver(&m).unwrap();
        in_lists.insert(format!("<i8l-{i}@example.test>"), m);
    }
    common::give_to_nobody(&root);
    let c = Client::new();
    let url = s.imaps_url(&user, "");
    let folders = ["--folder", "INBOX", "--folder", "Lists.Rust"];
    let (code, text) = c.fetch(&url, &folders);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("30 messages fetched"), "{text}");
    assert_exact(&c.maildir(), &sent);
    assert_exact(&c.maildir().join(".Lists.Rust"), &in_lists);
    // INBOX renumbered, two new messages: only those two are fetched.
    new_uidvalidity(&root);
    add_messages(&root, "i8", 21..=22);
    for i in 21..=22 {
        sent.insert(format!("<i8-{i}@example.test>"), message("i8", i));
    }
    let (code, text) = c.fetch(&url, &folders);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("UIDVALIDITY is now"), "{text}");
    assert!(text.contains(" 2 messages fetched"), "{text}");
    assert!(text.contains("1 folders unchanged"), "{text}");
    assert_exact(&c.maildir(), &sent);
    assert_exact(&c.maildir().join(".Lists.Rust"), &in_lists);
    // And the state is in step with the new numbering: nothing on the next run.
    let (code, text) = c.fetch(&url, &folders);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(" 0 messages fetched"), "{text}");
    assert!(text.contains("2 folders unchanged"), "{text}");
    // A 100 MB message is streamed into the Maildir, never whole in memory.
    let big = Maildir::open(&root).unwrap().folder("Big").unwrap();
    let mut m =
        b"From: bob@example.test\nMessage-ID: <big@example.test>\nSubject: big\n\n".to_vec();
    let line = format!("{}\n", "y".repeat(99));
    while m.len() < 100 * 1024 * 1024 {
        m.extend_from_slice(line.as_bytes());
    }
    big.deliver(&m).unwrap();
    common::give_to_nobody(&root);
    let ca = common::peer("PEER_CA_FILE");
    let md = c.maildir();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss=%M", "timeout", "120"])
        .arg(common::bin("mfetch"))
        .args([
            "-v",
            "--ca-file",
            &ca,
            "--password-command",
            "echo password",
            "--maildir",
        ])
        .arg(&md)
        .args(["--folder", "Big", &url])
        .env("HOME", c.home())
        .env("XDG_STATE_HOME", c.home().join("state"))
        .env_remove("MAILKIT_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{text}");
    let kib: u64 = text
        .rsplit("maxrss=")
        .next()
        .and_then(|k| k.trim().parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        kib < 40 * 1024,
        "mfetch used {kib} KiB for a 100 MB message: {text}"
    );
    let got = by_message_id(&md.join(".Big"));
    assert_eq!(got.len(), 1);
    assert!(
        got["<big@example.test>"][0] == m,
        "the 100 MB message is not byte-exact"
    );
    // A 2 MB header section (20,000 fields, one folded over 1,000 lines, its Message-ID
    // last): stored as sent, found again by that Message-ID.
    let huge = Maildir::open(&root).unwrap().folder("Huge").unwrap();
    let mut m = b"From: bob@example.test\nSubject: huge header\n".to_vec();
    for i in 0..20_000 {
        m.extend_from_slice(format!("X-Filler-{i}: {}\n", "h".repeat(90)).as_bytes());
    }
    m.extend_from_slice(b"X-Folded: start\n");
    for _ in 0..1_000 {
        m.extend_from_slice(b"\tcontinued\n");
    }
    m.extend_from_slice(b"Message-ID: <huge@example.test>\n\nbody\n");
    huge.deliver(&m).unwrap();
    common::give_to_nobody(&root);
    let (code, text) = c.fetch(&url, &["--folder", "Huge"]);
    assert_eq!(code, 0, "{text}");
    let got = by_message_id(&md.join(".Huge"));
    assert_eq!(got.len(), 1, "{:?} {text}", got.keys());
    assert!(
        got["<huge@example.test>"][0] == m,
        "the 2 MB header message is not byte-exact"
    );
}

#[test]
fn imap_dovecot_folders_into_maildir_folders_and_a_uidvalidity_change_duplicates_nothing() {
    imap_folders_into_maildir_folders_and_a_uidvalidity_change_duplicates_nothing(Imapd::Dovecot);
}

#[test]
fn imap_mimapd_folders_into_maildir_folders_and_a_uidvalidity_change_duplicates_nothing() {
    imap_folders_into_maildir_folders_and_a_uidvalidity_change_duplicates_nothing(Imapd::Mimapd);
}

/// A scripted IMAP server on port 0 that sends `greeting` and then answers each command line
/// with `OK`. Returns its port and whether a command ever came.
fn scripted_imap(greeting: Vec<u8>) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let spoke = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = spoke.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let _ = s.write_all(&greeting);
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                let tag = line.split(|&b| b == b' ').next().unwrap_or(b"*").to_vec();
                let mut answer = tag;
                answer.extend_from_slice(b" OK done\r\n");
                let _ = s.write_all(&answer);
                line.clear();
            }
        }
    });
    (port, spoke)
}

#[test]
fn hostile_imap_preauth_without_tls_and_a_huge_line_are_refused() {
    let c = Client::new();
    // PREAUTH in clear would skip STARTTLS: refused before any command is sent.
    let (port, spoke) = scripted_imap(b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] hi\r\n".to_vec());
    let (code, text) = c.fetch(
        &format!("imap://u@127.0.0.1:{port}/INBOX"),
        &["--timeout", "5"],
    );
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("PREAUTH"), "{text}");
    assert!(!spoke.load(std::sync::atomic::Ordering::SeqCst));
    // A 100 KB greeting line.
    let mut long = b"* OK ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 100 * 1024));
    long.extend_from_slice(b"\r\n");
    let (port, _) = scripted_imap(long);
    let (code, text) = c.fetch(
        &format!("imap://u@127.0.0.1:{port}/INBOX"),
        &["--timeout", "5", "--allow-plaintext"],
    );
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("line over"), "{text}");
    assert_eq!(common::maildir_count(&c.maildir()), 0);
}

/// A TCP proxy on loopback to `upstream` whose connections the test can cut (a network
/// failure without restarting the server).
struct Proxy {
    port: u16,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let list = std::sync::Arc::clone(&open);
        std::thread::spawn(move || {
            for down in l.incoming().flatten() {
                let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut g = list.lock().unwrap();
                g.push(down.try_clone().unwrap());
                g.push(up.try_clone().unwrap());
                for (mut from, mut to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, open }
    }

    /// Cuts every connection made so far.
    fn cut(&self) -> usize {
        let mut g = self.open.lock().unwrap();
        for s in g.iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        let n = g.len() / 2;
        g.clear();
        n
    }
}

/// Waits (bounded: 30 s) until the Maildir holds each of `ids` (and fails the test if not),
/// then checks that every message is there once.
fn wait_for_ids(md: &Path, ids: &[String], log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = by_message_id(md);
        if ids.iter().all(|id| got.contains_key(id)) {
            for (id, copies) in &got {
                assert_eq!(copies.len(), 1, "{id}: {} copies", copies.len());
            }
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ids:?} not fetched; mfetch said:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `mfetch --idle` started in the background, its stderr in `log`.
fn start_idle(c: &Client, url: &str, extra: &[&str], log: &Path) -> common::KillOnDrop {
    let mut cmd = c.command(&["--idle"]);
    cmd.args(c.peer_args())
        .args(extra)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    common::KillOnDrop(cmd.spawn().expect("starting mfetch --idle"))
}

/// SIGTERM: mfetch logs out and exits 0 (bounded wait).
fn terminate(child: &mut common::KillOnDrop, log: &Path) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "mfetch --idle did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// `--idle`: new mail through IDLE, a cut connection survived, SIGTERM exits 0.
fn imap_idle_fetches_new_mail_as_it_comes_and_survives_a_cut_connection(server: Imapd) {
    let user = server.user("fetch10");
    let (root, _) = dovecot_box(&user, "idle", 1);
    let s = server.start(&user);
    let proxy = Proxy::start(s.tls);
    let url = format!("imaps://{user}@localhost:{}/INBOX", proxy.port);
    let c = Client::new();
    let log = c.home().join("idle.log");
    let md = c.maildir();
    let id = |i: usize| format!("<idle-{i}@example.test>");
    let mut child = start_idle(&c, &url, &[], &log);
    wait_for_ids(&md, &[id(1)], &log);
    add_messages(&root, "idle", 2..=2);
    wait_for_ids(&md, &[id(1), id(2)], &log);
    add_messages(&root, "idle", 3..=3);
    wait_for_ids(&md, &[id(1), id(2), id(3)], &log);
    assert!(proxy.cut() >= 1, "mfetch stayed connected");
    add_messages(&root, "idle", 4..=4);
    wait_for_ids(&md, &[id(1), id(2), id(3), id(4)], &log);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("trying again in"), "{said}");
    // New mail came through IDLE, not by polling (the default poll is 5 minutes).
    assert!(
        said.matches("INBOX: waiting in IDLE").count() >= 3,
        "{said}"
    );
    terminate(&mut child, &log);
    assert_eq!(by_message_id(&md).len(), 4);
}

#[test]
fn imap_dovecot_idle_fetches_new_mail_as_it_comes_and_survives_a_cut_connection() {
    imap_idle_fetches_new_mail_as_it_comes_and_survives_a_cut_connection(Imapd::Dovecot);
}

#[test]
fn imap_mimapd_idle_fetches_new_mail_as_it_comes_and_survives_a_cut_connection() {
    imap_idle_fetches_new_mail_as_it_comes_and_survives_a_cut_connection(Imapd::Mimapd);
}

#[test]
fn pop3_idle_polls_and_fetches_new_mail() {
    let (root, _) = dovecot_box("fetch11", "poll", 1);
    let c = Client::new();
    let log = c.home().join("poll.log");
    let md = c.maildir();
    let id = |i: usize| format!("<poll-{i}@example.test>");
    let mut child = start_idle(&c, &pop3s_url("fetch11"), &["--poll", "1"], &log);
    wait_for_ids(&md, &[id(1)], &log);
    add_messages(&root, "poll", 2..=3);
    wait_for_ids(&md, &[id(1), id(2), id(3)], &log);
    terminate(&mut child, &log);
    assert_eq!(by_message_id(&md).len(), 3);
    // A permanent failure is not retried: a wrong password exits 77.
    let (code, text) = c.run(&[
        "--idle",
        "--ca-file",
        &common::peer("PEER_CA_FILE"),
        "--password-command",
        "echo wrong",
        "--maildir",
        md.to_str().unwrap(),
        &pop3s_url("fetch11"),
    ]);
    assert_eq!(code, 77, "{text}");
}

/// Certificates with a NUL in their names (the CVE-2009-2666 class fetchmail had): a TLS server
/// whose certificate, signed by a CA mfetch trusts, names `localhost\0.evil.test` in its SAN, or
/// `localhost\0` in its CN only, is refused for `localhost` before any command or password is
/// sent, with the certificate error told and exit 69 (a setup problem retrying cannot fix).
#[test]
fn certificate_names_with_a_nul_are_refused_before_anything_is_sent() {
    let c = Client::new();
    let dir = c.home().join("nulcert");
    std::fs::create_dir_all(&dir).unwrap();
    // The CA and the two server certificates, by python3's cryptography (Debian's).
    let make = r#"
import datetime, sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
d = sys.argv[1]
now = datetime.datetime.utcnow()
def cert(subject, issuer, key, sign_key, ca, san):
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san is not None:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return b.sign(sign_key, hashes.SHA256())
def pem(path, data):
    open(f"{d}/{path}", "wb").write(data)
ca_key = ec.generate_private_key(ec.SECP256R1())
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nul test CA")])
ca = cert(ca_name, ca_name, ca_key, ca_key, True, None)
pem("ca.pem", ca.public_bytes(serialization.Encoding.PEM))
for kind, cn, san in [("san", "evil.test", "localhost\x00.evil.test"), ("cn", "localhost\x00", None),
                      ("ok", "localhost", "localhost")]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    pem(f"{kind}.pem", cert(name, ca_name, key, ca_key, False, san).public_bytes(serialization.Encoding.PEM))
    pem(f"{kind}.key", key.private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;
    let st = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(make)
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success(), "making the certificates");
    // An implicit-TLS IMAP server that says whether anything came after the handshake.
    let serve = r#"
import socket, ssl, sys
d, kind = sys.argv[1], sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(f"{d}/{kind}.pem", f"{d}/{kind}.key")
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
print(l.getsockname()[1], flush=True)
l.settimeout(60)
s, _ = l.accept()
s.settimeout(20)
try:
    t = ctx.wrap_socket(s, server_side=True)
    t.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n")
    got = t.recv(4096)
    print("SPOKE" if got else "SILENT", flush=True)
except Exception as e:
    print("REFUSED", type(e).__name__, flush=True)
"#;
    // "ok" (SAN localhost from the same CA) is the control: the same setup passes TLS.
    for kind in ["san", "cn", "ok"] {
        let mut server = common::KillOnDrop(
            Command::new("/usr/bin/timeout")
                .args(["90", "/usr/bin/python3", "-c", serve])
                .arg(&dir)
                .arg(kind)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut out = BufReader::new(server.0.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let port: u16 = line.trim().parse().unwrap();
        let md = c.maildir();
        let (code, text) = c.run(&[
            "--ca-file",
            dir.join("ca.pem").to_str().unwrap(),
            "--password-command",
            "echo password",
            "--maildir",
            md.to_str().unwrap(),
            &format!("imaps://u@localhost:{port}/INBOX"),
        ]);
        let mut verdict = String::new();
        out.read_line(&mut verdict).unwrap();
        if kind == "ok" {
            assert!(verdict.starts_with("SPOKE"), "{verdict} {text}");
            continue;
        }
        assert_eq!(code, 69, "{kind}: {text}");
        assert!(text.contains("certificate"), "{kind}: {text}");
        assert!(verdict.starts_with("REFUSED"), "{kind}: {verdict} {text}");
    }
}
