//! mrelayd's content filter (`[mrelayd.filter.NAME]`, issue 15) with real parts: swaks and a
//! raw pipelined BDAT session as clients, Debian's SpamAssassin (`spamassassin -L`, local tests
//! only, no network, nothing written to $HOME) as the filter on the GTUBE test message and on
//! clean mail, and small shell filters that add a header, sleep past the timeout, crash with
//! SIGSEGV or exit 75. Each test runs its own `mrelayd serve` (as nobody) on loopback.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SPAMASSASSIN: &str = "/usr/bin/spamassassin";

/// SpamAssassin as a filter: local tests only (`-L`), no user preferences (`-x`), no Bayes
/// database (which would be written under $HOME), exit 1 for spam (`-e 1`).
const SA_ARGS: &[&str] = &[
    "-L",
    "-x",
    "-e",
    "1",
    "--cf=use_bayes 0",
    "--cf=bayes_auto_learn 0",
];

/// The GTUBE test message (SpamAssassin's test signature scores 1000).
const GTUBE: &str = "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: gtube\r\n\
Date: Fri, 04 Dec 2026 19:00:00 +0000\r\nMessage-ID: <gtube.1@remote.test>\r\n\r\n\
XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";

/// Clean mail.
const CLEAN: &str = "From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: lunch\r\n\
Date: Fri, 04 Dec 2026 19:00:00 +0000\r\nMessage-ID: <lunch.1@remote.test>\r\n\r\n\
Shall we have lunch tomorrow at noon?\r\nThe usual place.\r\n";

/// A running `mrelayd serve` with one smtp listener and the filter `filter` (TOML body of
/// `[mrelayd.filter.f]`).
struct Relay {
    dir: PathBuf,
    port: u16,
    log: PathBuf,
    _child: common::KillOnDrop,
}

impl Relay {
    fn start(dir: &Path, filter: &str) -> Relay {
        let config = write_config(dir, filter);
        let log = dir.join("mrelayd.log");
        let (child, l) = common::start_mrelayd(&config, &log, &["smtp"]);
        Relay {
            dir: dir.to_path_buf(),
            port: l.port("smtp"),
            log,
            _child: child,
        }
    }

    fn maildir(&self) -> PathBuf {
        self.dir.join("mail").join("alice")
    }

    /// Files in the queue's `msg/` and `tmp/` (nothing stays after a refusal).
    fn queued(&self) -> usize {
        ["msg", "tmp"]
            .iter()
            .map(|d| {
                std::fs::read_dir(self.dir.join("state/queue").join(d))
                    .map(|r| r.count())
                    .unwrap_or(0)
            })
            .sum()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// swaks sending `message` (a file it reads) from sender@remote.test to alice.
    fn send(&self, message: &str) -> (bool, String) {
        let file = self.dir.join(format!("msg-{}.eml", common::rand_u64()));
        // swaks ends the data with CRLF "." CRLF itself.
        std::fs::write(&file, message.strip_suffix("\r\n").unwrap_or(message)).unwrap();
        let port = self.port.to_string();
        common::swaks(&[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--ehlo",
            "client.remote.test",
            "--from",
            "sender@remote.test",
            "--to",
            "alice@example.test",
            "--data",
            file.to_str().unwrap(),
        ])
    }
}

/// Writes users (alice, bob), aliases and a config with one smtp listener on port 0 and the
/// filter `filter` (TOML body of `[mrelayd.filter.f]`) into `dir`.
fn write_config(dir: &Path, filter: &str) -> PathBuf {
    std::fs::write(
        dir.join("passwd"),
        "alice:{PLAIN}password::::::\nbob:{PLAIN}password::::::\n",
    )
    .unwrap();
    std::fs::write(dir.join("aliases"), "postmaster: alice\n").unwrap();
    let config = dir.join("mailkit.toml");
    let text = format!(
        "hostname = \"mx.example.test\"\nstate_dir = \"{state}\"\n\
[users]\npasswd_file = \"{passwd}\"\nmail_location = \"{mail}/%n\"\ndomains = [\"example.test\"]\n\
[mrelayd]\ntrusted_networks = []\naliases = \"{aliases}\"\n\
listen = [ {{ address = \"127.0.0.1:0\", role = \"smtp\" }} ]\n\
[mrelayd.filter.f]\n{filter}\n\
[mrelayd.remote]\nrelayhost = \"[127.0.0.1]:1\"\nrelayhost_tls = \"none\"\n",
        state = dir.join("state").display(),
        passwd = dir.join("passwd").display(),
        mail = dir.join("mail").display(),
        aliases = dir.join("aliases").display(),
    );
    std::fs::write(&config, common::with_run_as(&text)).unwrap();
    config
}

/// A shell script `name` in `dir`, executable by the daemon's user.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The TOML `command = [...]` of `argv`.
fn command(argv: &[&str]) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    format!("command = [{}]", quoted.join(", "))
}

/// The stored message `stored` (LF line ends, Maildir) is `sent` (CRLF) byte for byte after
/// header lines of its own: returns their field names.
fn added_fields(stored: &str, sent: &str) -> Vec<String> {
    let sent = sent.replace("\r\n", "\n");
    let prefix = stored
        .strip_suffix(sent.as_str())
        .unwrap_or_else(|| panic!("stored message does not end with the one sent:\n{stored}"));
    prefix
        .lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .map(|l| l.split(':').next().unwrap_or("").to_string())
        .collect()
}

/// The last reply line swaks printed (`<** 550 ...` or `<-  250 ...`).
fn last_reply_to_data(out: &str) -> String {
    // swaks prints the reply to the end of DATA right after the dot it sent.
    let mut after_dot = false;
    for line in out.lines() {
        if line.trim_end() == " -> ." {
            after_dot = true;
        } else if after_dot && line.starts_with('<') {
            return line.trim_start_matches(['<', '*', '-', ' ']).to_string();
        }
    }
    panic!("no reply to the end of DATA in swaks output:\n{out}")
}

/// Whether process `pid` is gone (or a zombie), waiting up to 10 s.
fn gone(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim().starts_with('Z')) =>
            {
                return true
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    false
}

#[test]
fn spamassassin_rejects_gtube_and_accepts_clean_mail() {
    assert!(
        Path::new(SPAMASSASSIN).exists(),
        "spamassassin missing: run tests/peers/install.sh"
    );
    let dir = common::scratch();
    let mut argv = vec![SPAMASSASSIN];
    argv.extend_from_slice(SA_ARGS);
    let r = Relay::start(
        dir.path(),
        &format!("{}\ntimeout_secs = 120", command(&argv)),
    );
    let (ok, out) = r.send(GTUBE);
    assert!(!ok, "{out}");
    let reply = last_reply_to_data(&out);
    assert!(reply.starts_with("550 5.7.1 "), "{out}");
    assert_eq!(r.queued(), 0, "a rejected message leaves nothing queued");
    assert!(
        r.log_text().contains("filter f: rejected"),
        "{}",
        r.log_text()
    );

    let (ok, out) = r.send(CLEAN);
    assert!(ok, "{out}\n{}", r.log_text());
    assert!(last_reply_to_data(&out).starts_with("250 "), "{out}");
    let msgs = common::wait_maildir(&r.maildir(), 1);
    assert_eq!(msgs.len(), 1, "only the clean message is delivered");
    assert_eq!(
        added_fields(&msgs[0], CLEAN),
        [
            "Return-Path",
            "Delivered-To",
            "Authentication-Results",
            "Received"
        ],
        "{}",
        msgs[0]
    );
}

#[test]
fn spamassassin_headers_are_added_to_clean_mail() {
    let dir = common::scratch();
    // spamassassin -L prints the whole message; the wrapper keeps its X-Spam-* fields (with
    // their folded lines) and ends the block with an empty line, exiting as spamassassin did.
    let sa = [SPAMASSASSIN]
        .iter()
        .chain(SA_ARGS)
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let wrapper = script(
        dir.path(),
        "sa-headers",
        &format!(
            "out=$({sa}); rc=$?\n\
             printf '%s\\n' \"$out\" | tr -d '\\r' | awk '\
             /^$/ {{ exit }} \
             /^[ \\t]/ {{ if (keep) print; next }} \
             {{ keep = /^X-Spam-/; if (keep) print }}'\n\
             echo\nexit $rc\n"
        ),
    );
    let r = Relay::start(
        dir.path(),
        &format!(
            "{}\nheaders = true\ntimeout_secs = 120",
            command(&[wrapper.to_str().unwrap()])
        ),
    );
    let (ok, out) = r.send(CLEAN);
    assert!(ok, "{out}\n{}", r.log_text());
    let msgs = common::wait_maildir(&r.maildir(), 1);
    assert_eq!(msgs.len(), 1);
    let fields = added_fields(&msgs[0], CLEAN);
    assert_eq!(
        fields[..4],
        [
            "Return-Path",
            "Delivered-To",
            "Authentication-Results",
            "Received"
        ]
    );
    assert!(
        fields[4..].iter().all(|f| f.starts_with("X-Spam-")) && fields.len() > 4,
        "{fields:?}\n{}",
        msgs[0]
    );
    assert!(msgs[0].contains("X-Spam-Status: No"), "{}", msgs[0]);
    // GTUBE through the same wrapper: exit 1, refused.
    let (ok, out) = r.send(GTUBE);
    assert!(!ok, "{out}");
    assert!(last_reply_to_data(&out).starts_with("550 5.7.1"), "{out}");
}

#[test]
fn a_header_filter_sees_the_message_and_the_envelope() {
    let dir = common::scratch();
    let seen = dir.path().join("seen");
    let f = script(
        dir.path(),
        "x-filter",
        &format!(
            "cat > {seen}.msg\n\
             env | grep -E '^(SENDER|RECIPIENTS?|CLIENT_ADDRESS|HELO|AUTH_USER|QUEUE_ID|PATH|HOME)=' \
             | sort > {seen}.env\n\
             env | wc -l > {seen}.count\n\
             printf 'X-Filter: ok\\r\\n  folded\\r\\n\\r\\n'\n",
            seen = seen.display()
        ),
    );
    let r = Relay::start(
        dir.path(),
        &format!("{}\nheaders = true", command(&[f.to_str().unwrap()])),
    );
    let (ok, out) = r.send(CLEAN);
    assert!(ok, "{out}\n{}", r.log_text());
    let msgs = common::wait_maildir(&r.maildir(), 1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        added_fields(&msgs[0], CLEAN),
        [
            "Return-Path",
            "Delivered-To",
            "Authentication-Results",
            "Received",
            "X-Filter"
        ],
        "{}",
        msgs[0]
    );
    assert!(msgs[0].contains("X-Filter: ok\n  folded\n"), "{}", msgs[0]);
    // Its stdin: our Received: header, then the message as sent.
    let input = std::fs::read_to_string(seen.with_extension("msg")).unwrap();
    assert!(
        input.starts_with("Received: from client.remote.test"),
        "{input}"
    );
    assert!(input.ends_with(CLEAN), "{input}");
    let env = std::fs::read_to_string(seen.with_extension("env")).unwrap();
    let id = env
        .lines()
        .find_map(|l| l.strip_prefix("QUEUE_ID="))
        .unwrap_or_default()
        .to_string();
    assert_eq!(id.len(), 23, "{env}");
    assert_eq!(
        env,
        format!(
            "CLIENT_ADDRESS=127.0.0.1\nHELO=client.remote.test\nHOME=/\n\
             PATH=/usr/local/bin:/usr/bin:/bin\nQUEUE_ID={id}\nRECIPIENT=alice@example.test\n\
             RECIPIENTS=alice@example.test\nSENDER=sender@remote.test\n"
        )
    );
    // A clean environment: those, and what sh itself sets (PWD, SHLVL, _).
    let count: usize = std::fs::read_to_string(seen.with_extension("count"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(count <= 7 + 3, "{count} variables");
    assert!(msgs[0].contains(&format!("id {id}")), "{}", msgs[0]);
}

#[test]
fn a_filter_past_its_timeout_is_killed_and_the_message_tempfailed() {
    let dir = common::scratch();
    let pids = dir.path().join("pids");
    let f = script(
        dir.path(),
        "hang",
        &format!(
            "sleep 300 &\necho $! > {p}\necho $$ >> {p}\nsleep 300\n",
            p = pids.display()
        ),
    );
    let r = Relay::start(
        dir.path(),
        &format!("{}\ntimeout_secs = 2", command(&[f.to_str().unwrap()])),
    );
    let (ok, out) = r.send(CLEAN);
    assert!(!ok, "{out}");
    assert!(last_reply_to_data(&out).starts_with("451 4.7.1"), "{out}");
    assert_eq!(r.queued(), 0, "nothing queued");
    assert_eq!(common::maildir_count(&r.maildir()), 0);
    let text = std::fs::read_to_string(&pids).unwrap();
    let pids: Vec<u32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(pids.len(), 2, "{text}");
    for pid in pids {
        assert!(gone(pid), "filter process {pid} survived its timeout");
    }
    assert!(
        r.log_text().contains("filter f: no decision within 2s"),
        "{}",
        r.log_text()
    );
}

#[test]
fn crashing_tempfailing_and_rejecting_filters() {
    let dir = common::scratch();
    // One filter, three behaviours chosen by the Subject, so one daemon serves them all.
    let f = script(
        dir.path(),
        "moody",
        "msg=$(cat)\n\
         case \"$msg\" in\n\
         *'Subject: crash'*) kill -SEGV $$ ;;\n\
         *'Subject: later'*) echo 'busy, come back' >&2; exit 75 ;;\n\
         *'Subject: reject'*) printf 'no thanks\\r\\n\\033[1mbold\\nsecond line\\n' >&2; exit 1 ;;\n\
         *'Subject: odd'*) exit 3 ;;\n\
         esac\nexit 0\n",
    );
    let r = Relay::start(dir.path(), &command(&[f.to_str().unwrap()]));
    let with_subject = |s: &str| CLEAN.replace("Subject: lunch", &format!("Subject: {s}"));
    for (subject, want) in [
        ("crash", "451 4.7.1 "),
        ("later", "451 4.7.1 busy, come back"),
        ("reject", "550 5.7.1 no thanks"),
        ("odd", "451 4.7.1 "),
    ] {
        let (ok, out) = r.send(&with_subject(subject));
        assert!(!ok, "{subject}: {out}");
        let reply = last_reply_to_data(&out);
        assert!(reply.starts_with(want), "{subject}: {reply}\n{out}");
        if subject == "reject" {
            assert_eq!(reply.trim_end(), "550 5.7.1 no thanks", "first line only");
        }
        assert_eq!(r.queued(), 0, "{subject}: nothing queued");
    }
    assert!(
        r.log_text().contains("killed by signal 11"),
        "{}",
        r.log_text()
    );
    // And the same filter accepts the rest.
    let (ok, out) = r.send(CLEAN);
    assert!(ok, "{out}");
    assert_eq!(common::wait_maildir(&r.maildir(), 1).len(), 1);
    assert_eq!(common::maildir_count(&r.maildir()), 1);
}

/// A raw pipelined session: two BDAT transactions and two DATA ones in one write; the
/// filter's decisions come in order, one per message, whatever the recipients.
#[test]
fn pipelined_bdat_and_data_get_their_replies_in_order() {
    let dir = common::scratch();
    let f = script(
        dir.path(),
        "grep-filter",
        "if grep -q REJECTME; then echo 'bad word' >&2; exit 1; fi\nexit 0\n",
    );
    let r = Relay::start(dir.path(), &command(&[f.to_str().unwrap()]));
    let bad = "Subject: b\r\n\r\nREJECTME\r\n";
    let good = "Subject: g\r\n\r\nfine\r\n";
    let mut input = String::from("EHLO client.remote.test\r\n");
    for body in [bad, good] {
        input.push_str(&format!(
            "MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n\
             RCPT TO:<bob@example.test>\r\nBDAT {} LAST\r\n{body}",
            body.len()
        ));
    }
    for body in [good, bad] {
        input.push_str(&format!(
            "MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n{body}.\r\n"
        ));
    }
    input.push_str("QUIT\r\n");
    let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut greeting = [0u8; 512];
    let _ = s.read(&mut greeting).unwrap();
    // EHLO first (PIPELINING is offered by its reply), then everything else at once.
    let (ehlo, rest) = input.split_at(input.find("MAIL").unwrap());
    s.write_all(ehlo.as_bytes()).unwrap();
    let mut out = String::new();
    let mut buf = [0u8; 65536];
    while !out.contains("\r\n250 ") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "{out}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        out.contains("CHUNKING") && out.contains("PIPELINING"),
        "{out}"
    );
    s.write_all(rest.as_bytes()).unwrap();
    let mut out = String::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    let codes: Vec<&str> = out
        .lines()
        .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
        .map(|l| &l[..3])
        .collect();
    assert_eq!(
        codes,
        [
            "250", "250", "250", "550", // BDAT: rejected
            "250", "250", "250", "250", // BDAT: queued, two recipients
            "250", "250", "354", "250", // DATA: queued
            "250", "250", "354", "550", // DATA: rejected
            "221"
        ],
        "{out}"
    );
    assert!(out.contains("550 5.7.1 bad word"), "{out}");
    assert_eq!(common::wait_maildir(&r.maildir(), 2).len(), 2);
    assert_eq!(
        common::wait_maildir(&r.dir.join("mail").join("bob"), 1).len(),
        1
    );
}

/// A filter without a command, one whose program is not there (a bare name is looked up in
/// the filter's PATH, not the daemon's), a timeout of 0, or two filters for one role, is a
/// config error at start: each would tempfail every message.
#[test]
fn bad_filter_settings_refuse_to_start() {
    for (extra, want) in [
        ("command = []", "mrelayd.filter.f.command"),
        (
            "command = [\"/nonexistent/filter\"]",
            "mrelayd.filter.f.command`: /nonexistent/filter: No such file",
        ),
        (
            "command = [\"/etc/passwd\"]",
            "/etc/passwd: not an executable file",
        ),
        (
            "command = [\"no-such-filter-r15\"]",
            "no-such-filter-r15: no such program in the filter's PATH",
        ),
        (
            "command = [\"/bin/true\"]\ntimeout_secs = 0",
            "mrelayd.filter.f.timeout_secs`: must be at least 1",
        ),
        (
            "command = [\"/bin/true\"]\n[mrelayd.filter.g]\ncommand = [\"/bin/true\"]",
            "mrelayd.filter.g.roles",
        ),
    ] {
        let dir = common::scratch();
        let config = write_config(dir.path(), extra);
        let out = common::run_with_input(&mut common::mrelayd_serve(&config), b"");
        let (_, text) = common::status_and_text(&out);
        assert_eq!(out.status.code(), Some(78), "{text}");
        assert!(text.contains(want), "{want}: {text}");
    }
}

/// `mrelayd inetd --role smtp` (one session on stdin/stdout) runs the smtp role's filter too.
#[test]
fn inetd_sessions_get_their_roles_filter() {
    let dir = common::scratch();
    let f = script(
        dir.path(),
        "refuse",
        "echo 'inetd filter said no' >&2\nexit 1\n",
    );
    let config = write_config(dir.path(), &command(&[f.to_str().unwrap()]));
    // As the daemon's user (nobody), as serve would run.
    common::give_to_nobody(dir.path());
    let mut cmd = std::process::Command::new(common::bin("mrelayd"));
    cmd.arg("-c").arg(&config).args(["inetd", "--role", "smtp"]);
    cmd.env("TCPREMOTEIP", "127.0.0.1");
    let out = common::run_with_input(
        &mut cmd,
        b"EHLO client.remote.test\r\nMAIL FROM:<s@remote.test>\r\n\
RCPT TO:<alice@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("550 5.7.1 inetd filter said no\r\n"),
        "{text}\n{out:?}"
    );
    assert!(text.contains("221 "), "{text}");
    assert_eq!(common::maildir_count(&dir.path().join("mail/alice")), 0);
}

/// A parent that ignores SIGCHLD (swaks `--pipe` does; the ignore survives exec) must not
/// break the filter: mrelayd sets SIGCHLD back to its default at start, else the kernel reaps
/// the filter itself, the wait fails with ECHILD and every message is tempfailed 451.
#[test]
fn inetd_under_a_parent_ignoring_sigchld_still_runs_its_filter() {
    let dir = common::scratch();
    let f = script(
        dir.path(),
        "mark",
        "cat >/dev/null\nprintf 'X-Checked: yes\\n\\n'\nexit 0\n",
    );
    let config = write_config(
        dir.path(),
        &format!("{}\nheaders = true", command(&[f.to_str().unwrap()])),
    );
    common::give_to_nobody(dir.path());
    let inetd = format!(
        "{} -c {} inetd --role smtp",
        common::bin("mrelayd").display(),
        config.display()
    );
    // The parent's SIGCHLD ignore is what swaks --pipe gives its child: checked here, so the
    // test keeps testing what it says.
    let probe = std::process::Command::new("swaks")
        .args([
            "--pipe",
            "grep SigIgn /proc/self/status",
            "--quit-after",
            "CONNECT",
        ])
        .output()
        .unwrap();
    let probe = String::from_utf8_lossy(&probe.stdout);
    let mask = probe
        .split("SigIgn:")
        .nth(1)
        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no SigIgn in {probe}"));
    assert_ne!(
        mask & (1 << (17 - 1)),
        0,
        "swaks --pipe does not ignore SIGCHLD: {probe}"
    );
    let out = std::process::Command::new("swaks")
        .args(["--timeout", "15", "--hide-informational", "--pipe", &inetd])
        .args([
            "--ehlo",
            "client.remote.test",
            "--from",
            "sender@remote.test",
        ])
        .args(["--to", "alice@example.test"])
        .env("TCPREMOTEIP", "127.0.0.1")
        .output()
        .unwrap();
    let (_, text) = common::status_and_text(&out);
    assert!(last_reply_to_data(&text).starts_with("250 "), "{text}");
    let stored = common::wait_maildir(&dir.path().join("mail/alice"), 1);
    assert!(stored[0].contains("X-Checked: yes"), "{}", stored[0]);
}
