//! mpopd against real clients on loopback: python3 poplib (with STLS against the peers' CA),
//! curl pop3:// and pop3s://, fetchmail into an MDA, raw sockets for the edge cases, and the
//! real binary in inetd mode over stdin/stdout.

mod common;

use common::raw::Pop;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailkit::maildir::Maildir;

/// Every socket read and child wait is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(20);

/// A running `mpopd serve` with its own passwd-file, Maildirs and config (killed on drop).
struct Server {
    child: common::KillOnDrop,
    dir: tempfile::TempDir,
    plain: u16,
    tls: u16,
    config: PathBuf,
}

impl Server {
    fn start(extra: &str) -> Server {
        Server::start_with(extra, "")
    }

    /// `extra` is appended to `[mpopd]`, `auth_extra` to `[auth]`.
    fn start_with(extra: &str, auth_extra: &str) -> Server {
        Server::start_full(extra, auth_extra, None)
    }

    /// `mail_location` replaces the scratch Maildirs (e.g. the peers' Maildirs). The listeners
    /// are on port 0; their ports come from the lines mpopd prints.
    fn start_full(extra: &str, auth_extra: &str, mail_location: Option<&str>) -> Server {
        let dir = common::scratch();
        let config = write_config(dir.path(), extra, auth_extra, mail_location);
        common::give_to_nobody(dir.path());
        let (child, l) = common::start_daemon(
            Command::new(common::bin("mpopd"))
                .arg("-c")
                .arg(&config)
                .arg("serve"),
            &dir.path().join("mpopd.log"),
            &["pop3", "pop3s"],
        );
        Server {
            child,
            dir,
            plain: l.port("pop3"),
            tls: l.port("pop3s"),
            config,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mpopd.log")).unwrap_or_default()
    }

    fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }

    fn files(&self, user: &str) -> usize {
        common::maildir_count(&self.maildir(user))
    }

    fn connect(&self) -> Pop {
        Pop::connect(self.plain)
    }
}

/// passwd-file with three users (alice {PLAIN}, bob SHA512-CRYPT, carol {PLAIN}), their Maildirs,
/// and a config using the peers' certificate, its two listeners on port 0.
fn write_config(dir: &Path, extra: &str, auth_extra: &str, mail_location: Option<&str>) -> PathBuf {
    let default_location = format!("{}/mail/%u", dir.display());
    let mail_location = mail_location.unwrap_or(&default_location);
    let bob_hash = "$6$rounds=5000$G34B8m4Gb9kBvfO8$QAx8jwwIuvKU/vHtxx0sQuFRsjPE3jluEN/6gax5cF.NUYTlO0pI8mXUpwOdt.E0EvytSBYOto8TGtVh5USme0";
    let passwd = format!(
        "alice:{{PLAIN}}password::::::\nbob:{{SHA512-CRYPT}}{bob_hash}::::::\ncarol:{{PLAIN}}password::::::\ndave:{{PLAIN}}password::::::\n"
    );
    std::fs::write(dir.join("passwd"), passwd).unwrap();
    for u in ["alice", "bob", "carol", "dave"] {
        Maildir::create(dir.join("mail").join(u)).unwrap();
    }
    let text = format!(
        r#"hostname = "localhost"
[tls]
cert = "{cert}"
key = "{key}"
[users]
passwd_file = "{d}/passwd"
mail_location = "{mail_location}"
[auth]
failure_delay_ms = 50
max_delay_ms = 100
{auth_extra}
[mpopd]
listen = [ {{ address = "127.0.0.1:0" }}, {{ address = "127.0.0.1:0", role = "implicit-tls" }} ]
{extra}
"#,
        cert = common::peer("PEER_CERT_FILE"),
        key = common::peer("PEER_KEY_FILE"),
        d = dir.display(),
    );
    let path = dir.join("mailkit.toml");
    std::fs::write(&path, common::with_run_as(&text)).unwrap();
    path
}

/// Delivers `msg` into `user`'s Maildir through the maildir module (the one writer), then hands
/// the Maildir to mpopd's `[run_as]` user, as a delivery agent running as that user would leave it.
fn deliver(s: &Server, user: &str, msg: &[u8]) {
    Maildir::open(s.maildir(user))
        .unwrap()
        .deliver(msg)
        .unwrap();
    common::give_to_nobody(&s.maildir(user));
}

/// A message in LF form with lines that need dot-stuffing.
fn sample(i: usize) -> Vec<u8> {
    format!(
        "From: bob@example.test\nTo: alice@example.test\nSubject: test {i}\n\nline one\n.starts with a dot\n..two dots\n.\nlast line {i}\n"
    )
    .into_bytes()
}

fn crlf(msg: &[u8]) -> Vec<u8> {
    String::from_utf8(msg.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

/// Runs python3 poplib code with `PORT`, `TLSPORT`, `CA` variables defined.
fn python(s: &Server, code: &str) -> String {
    let prelude = format!(
        "import poplib, ssl, sys\nPORT={}\nTLSPORT={}\nCA={:?}\n",
        s.plain,
        s.tls,
        common::peer("PEER_CA_FILE")
    );
    let out = Command::new("/usr/bin/timeout")
        .arg("30")
        .arg("/usr/bin/python3")
        .arg("-c")
        .arg(format!("{prelude}{code}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn poplib_stls_retrieves_byte_exact_crlf_and_top_uidl() {
    let s = Server::start(r#"allow_plaintext_auth = "never""#);
    for i in 1..=3 {
        deliver(&s, "alice", &sample(i));
    }
    let out = python(
        &s,
        r#"
p = poplib.POP3("localhost", PORT, timeout=10)
caps = p.capa()
assert "STLS" in caps and "USER" not in caps, caps
try:
    p.user("alice")
    sys.exit("USER accepted before STLS")
except poplib.error_proto as e:
    assert e.args[0].startswith(b"-ERR [AUTH]"), e
ctx = ssl.create_default_context(cafile=CA)
p.stls(ctx)
caps = p.capa()
for c in ["TOP", "UIDL", "USER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "SASL", "IMPLEMENTATION"]:
    assert c in caps, (c, caps)
assert "STLS" not in caps
p.user("alice"); p.pass_("password")
n, size = p.stat()
assert p.noop().startswith(b"+OK")
resp, listing, _ = p.list()
total = 0
for i in range(1, n + 1):
    resp, lines, octets = p.retr(i)
    data = b"".join(l + b"\r\n" for l in lines)
    assert len(data) == octets, (len(data), octets)
    total += len(data)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.write(b"=====\n")
assert total == size, (total, size)
sizes = [int(l.split()[1]) for l in listing]
assert sum(sizes) == size
resp, lines, _ = p.top(1, 1)
sys.stdout.buffer.write(b"TOP:" + b"|".join(lines) + b"\n")
resp, uids, _ = p.uidl()
sys.stdout.buffer.write(b"UIDL:" + b" ".join(u.split()[1] for u in uids) + b"\n")
p.quit()
"#,
    );
    let parts: Vec<&str> = out.split("=====\n").collect();
    for i in 1..=3 {
        assert_eq!(
            parts[i - 1].as_bytes(),
            crlf(&sample(i)),
            "message {i} byte-exact as CRLF"
        );
    }
    assert!(out
        .contains("TOP:From: bob@example.test|To: alice@example.test|Subject: test 1||line one\n"));
    let uidl_line = out.lines().find(|l| l.starts_with("UIDL:")).unwrap();
    assert_eq!(uidl_line.split(' ').count(), 3);
    // Nothing deleted: QUIT without DELE keeps everything (now in cur/).
    assert_eq!(s.files("alice"), 3);
    assert_eq!(
        std::fs::read_dir(s.maildir("alice").join("cur"))
            .unwrap()
            .count(),
        3,
        "new/ moved to cur/ at login"
    );
}

#[test]
fn poplib_implicit_tls_auth_plain_and_dele() {
    let s = Server::start(r#"allow_plaintext_auth = "never""#);
    deliver(&s, "bob", &sample(1));
    deliver(&s, "bob", &sample(2));
    python(
        &s,
        r#"
import base64
ctx = ssl.create_default_context(cafile=CA)
p = poplib.POP3_SSL("localhost", TLSPORT, context=ctx, timeout=10)
r = p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0bob\0password").decode())
assert r.startswith(b"+OK"), r
assert p.stat()[0] == 2
p.dele(1)
p.quit()
p = poplib.POP3_SSL("localhost", TLSPORT, context=ctx, timeout=10)
p._putcmd("AUTH PLAIN")
assert p._getline()[0].startswith(b"+"), "continuation"
p._putcmd(base64.b64encode(b"bob\0bob\0password").decode())
assert p._getresp().startswith(b"+OK")
assert p.stat()[0] == 1
p.quit()
"#,
    );
    assert_eq!(s.files("bob"), 1, "DELE+QUIT deleted exactly one");
}

#[test]
fn apop_with_plain_password() {
    let s = Server::start("");
    deliver(&s, "carol", &sample(1));
    python(
        &s,
        r#"
p = poplib.POP3("127.0.0.1", PORT, timeout=10)
assert p.timestamp.search(p.welcome), p.welcome
try:
    p.apop("carol", "wrong")
    sys.exit("wrong APOP secret accepted")
except poplib.error_proto as e:
    assert b"[AUTH]" in e.args[0], e
p.apop("carol", "password")
assert p.stat()[0] == 1
p.quit()
p = poplib.POP3("127.0.0.1", PORT, timeout=10)
try:
    p.apop("bob", "password")
    sys.exit("APOP for a hashed password accepted")
except poplib.error_proto as e:
    assert b"[AUTH]" in e.args[0], e
p.quit()
"#,
    );
}

#[test]
fn curl_pop3_and_pop3s() {
    let s = Server::start("");
    let msg = sample(7);
    deliver(&s, "carol", &msg);
    let ca = common::peer("PEER_CA_FILE");
    let run = |url: String, extra: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "20",
                "--cacert",
                &ca,
                "-u",
                "carol:password",
            ])
            .args(extra)
            .arg(url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.log()
        );
        out.stdout
    };
    // Plain on loopback (allowed by default), STLS with --ssl-reqd, implicit TLS.
    let plain = run(format!("pop3://127.0.0.1:{}/1", s.plain), &[]);
    let stls = run(format!("pop3://localhost:{}/1", s.plain), &["--ssl-reqd"]);
    let tls = run(format!("pop3s://localhost:{}/1", s.tls), &[]);
    for got in [&plain, &stls, &tls] {
        assert_eq!(got, &crlf(&msg));
    }
    let list = run(format!("pop3s://localhost:{}/", s.tls), &[]);
    assert_eq!(
        String::from_utf8(list).unwrap(),
        format!("1 {}\r\n", crlf(&msg).len())
    );
    assert_eq!(s.files("carol"), 1);
}

#[test]
fn fetchmail_fetches_into_an_mda_and_deletes() {
    let s = Server::start("");
    for i in 1..=4 {
        deliver(&s, "dave", &sample(i));
    }
    let d = s.dir.path();
    let target = d.join("fetched");
    // Our own MDA: fetchmail pipes each message into mdeliver.
    let mda = common::bin("mdeliver");
    use std::os::unix::fs::PermissionsExt;
    let rc = d.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no syslog\nset idfile {d}/fetchids\nset pidfile {d}/fetchmail.pid\n\
             poll mpopd via 127.0.0.1 service {port} protocol pop3 auth password\n\
             \x20 user \"dave\" there with password \"password\" is \"root\" here\n\
             \x20 sslproto TLS1.2+ sslcertck sslcertfile \"{ca}\" sslcommonname \"localhost\"\n\
             \x20 fetchall\n\
             \x20 mda \"{mda} {target}\"\n",
            d = d.display(),
            port = s.plain,
            ca = common::peer("PEER_CA_FILE"),
            mda = mda.display(),
            target = target.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("/usr/bin/timeout")
        .args(["60", "fetchmail", "-v", "-f"])
        .arg(&rc)
        .env("HOME", d)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "fetchmail failed: {text}\n{}",
        s.log()
    );
    assert!(text.contains("STLS"), "fetchmail used STLS: {text}");
    let fetched: Vec<Vec<u8>> = std::fs::read_dir(target.join("new"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(fetched.len(), 4);
    for i in 1..=4 {
        let want = String::from_utf8(sample(i)).unwrap();
        let body = want.split_once("\n\n").unwrap().1;
        assert!(
            fetched.iter().any(|f| String::from_utf8_lossy(f)
                .replace("\r\n", "\n")
                .ends_with(body)),
            "message {i} arrived intact"
        );
    }
    assert_eq!(s.files("dave"), 0, "fetchmail deleted what it fetched");
}

#[test]
fn mail_delivered_by_mdeliver_is_retrieved_byte_exact() {
    let s = Server::start("");
    let msg = b"From: bob@example.test\nTo: carol@example.test\nSubject: via mdeliver\n\n.leading dot\nmixed\r\nends\n";
    let out = common::run_with_input(
        Command::new(common::bin("mdeliver"))
            .args(["-f", "bob@example.test", "-d", "carol@example.test"])
            .arg(s.maildir("carol")),
        msg,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // mdeliver ran as root here; mpopd serves the Maildir as its [run_as] user.
    common::give_to_nobody(&s.maildir("carol"));
    let files: Vec<PathBuf> = std::fs::read_dir(s.maildir("carol").join("new"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let stored = std::fs::read(&files[0]).unwrap();
    let out = python(
        &s,
        r#"
p = poplib.POP3("127.0.0.1", PORT, timeout=10)
p.user("carol"); p.pass_("password")
resp, listing, _ = p.list()
resp, lines, octets = p.retr(1)
data = b"".join(l + b"\r\n" for l in lines)
sys.stdout.buffer.write(listing[0] + b"\n" + data)
p.quit()
"#,
    );
    let want = crlf(&stored);
    let (list, data) = out.split_once('\n').unwrap();
    assert_eq!(
        data.as_bytes(),
        want,
        "RETR is the stored message with CRLF"
    );
    assert_eq!(
        list,
        format!("1 {}", want.len()),
        "LIST size is the CRLF size"
    );
}

#[test]
fn dele_then_dropped_connection_keeps_and_dele_quit_deletes() {
    let s = Server::start("");
    deliver(&s, "alice", &sample(1));
    deliver(&s, "alice", &sample(2));
    let mut p = s.connect();
    p.login("alice");
    assert!(p.cmd("DELE 1").starts_with("+OK"));
    assert!(p.cmd("DELE 2").starts_with("+OK"));
    drop(p);
    // The lock is released when the session ends; poll until the server saw the drop.
    let deadline = Instant::now() + TIMEOUT;
    let mut p = loop {
        let mut p = s.connect();
        p.cmd("USER alice");
        let r = p.cmd("PASS password");
        if r.starts_with("+OK") {
            break p;
        }
        assert!(r.contains("[IN-USE]") && Instant::now() < deadline, "{r}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(s.files("alice"), 2, "dropped connection deleted nothing");
    assert!(p.cmd("STAT").starts_with("+OK 2 "));
    assert!(p.cmd("DELE 2").starts_with("+OK"));
    assert!(p.cmd("RSET").starts_with("+OK"));
    assert!(p.cmd("DELE 1").starts_with("+OK"));
    assert!(p.cmd("LIST 1").starts_with("-ERR"));
    assert!(p.cmd("QUIT").starts_with("+OK"));
    assert_eq!(s.files("alice"), 1, "DELE+QUIT deleted message 1 only");
    let mut p = s.connect();
    p.login("alice");
    assert!(p.cmd("RETR 1").starts_with("+OK"));
    let body = p.multi();
    assert!(String::from_utf8_lossy(&body).contains("Subject: test 2"));
}

#[test]
fn uidl_stable_across_sessions_and_concurrent_login_in_use() {
    let s = Server::start("");
    for i in 1..=3 {
        deliver(&s, "bob", &sample(i));
    }
    let mut a = s.connect();
    a.login("bob");
    assert!(a.cmd("UIDL").starts_with("+OK"));
    let first = a.multi();
    // A second session of the same user is refused while the first holds the maildrop.
    let mut b = s.connect();
    assert!(b.cmd("USER bob").starts_with("+OK"));
    assert_eq!(
        b.cmd("PASS password"),
        "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
    );
    assert!(a.cmd("QUIT").starts_with("+OK"));
    assert!(b.cmd("USER bob").starts_with("+OK"));
    assert!(b.cmd("PASS password").starts_with("+OK"));
    assert!(b.cmd("UIDL").starts_with("+OK"));
    assert_eq!(b.multi(), first, "UIDL stable across sessions");
    let uids = String::from_utf8(first).unwrap();
    for l in uids.lines().filter(|l| *l != ".") {
        let uid = l.split(' ').nth(1).unwrap();
        assert!(uid.len() <= 70 && uid.bytes().all(|c| (0x21..=0x7e).contains(&c)));
    }
}

#[test]
fn bad_input_gets_err_and_too_many_errors_disconnect() {
    let s = Server::start("max_errors = 6");
    deliver(&s, "carol", &sample(1));
    let mut p = s.connect();
    assert!(p.cmd("STAT").starts_with("-ERR"), "wrong state");
    let long = format!("USER {}", "x".repeat(300));
    assert_eq!(p.cmd(&long), "-ERR Line too long.\r\n");
    assert!(p.cmd("XYZZY").starts_with("-ERR"));
    p.login("carol");
    assert!(p.cmd("RETR 2").starts_with("-ERR"));
    assert!(p.cmd("TOP 1").starts_with("-ERR"));
    assert!(p.cmd("STAT").starts_with("+OK 1 "), "session kept");
    let last = p.cmd("BOGUS");
    assert!(last.starts_with("-ERR"), "{last}");
    assert!(p.closed(), "disconnected after too many errors");
    // Pipelined commands are answered in order.
    let mut p = s.connect();
    p.send(b"USER carol\r\nPASS password\r\nSTAT\r\nNOOP");
    assert!(p.line().starts_with("+OK"));
    assert!(p.line().starts_with("+OK"));
    assert!(p.line().starts_with("+OK 1 "));
    assert!(p.line().starts_with("+OK"));
}

#[test]
fn failed_logins_do_not_reveal_users() {
    let s = Server::start("");
    let mut p = s.connect();
    p.cmd("USER alice");
    let wrong_pw = p.cmd("PASS nope");
    p.cmd("USER nosuchuser");
    let no_user = p.cmd("PASS nope");
    assert_eq!(wrong_pw, "-ERR [AUTH] Authentication failed.\r\n");
    assert_eq!(no_user, wrong_pw);
    // SHA512-CRYPT user from the Dovecot-format passwd-file logs in.
    let mut p = s.connect();
    p.login("bob");
    // RFC 5034 §4: AUTH lines may exceed 255 octets; a long wrong password is just [AUTH].
    use base64::Engine;
    let long =
        base64::engine::general_purpose::STANDARD.encode(format!("\0carol\0{}", "x".repeat(250)));
    let mut p = s.connect();
    assert_eq!(
        p.cmd(&format!("AUTH PLAIN {long}")),
        "-ERR [AUTH] Authentication failed.\r\n"
    );
}

#[test]
fn idle_timeout_and_shutdown_say_goodbye() {
    let mut s = Server::start("idle_timeout_secs = 1");
    let mut p = s.connect();
    assert_eq!(p.line(), "-ERR Disconnected for inactivity.\r\n");
    assert!(p.closed());
    let mut p = s.connect();
    p.login("alice");
    let pid = s.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    assert_eq!(p.line(), "-ERR [SYS/TEMP] Server shutting down.\r\n");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "mpopd did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {}", s.log());
}

#[test]
fn checkpassword_program_authenticates() {
    let dir = common::scratch();
    let prog = dir.path().join("checkpw.sh");
    // qmail interface: user NUL password NUL on fd 3; exit 0 when right.
    std::fs::write(
        &prog,
        "#!/bin/sh\nIFS= read -r -d '' user <&3; IFS= read -r -d '' pw <&3\n[ \"$user\" = alice ] && [ \"$pw\" = s3cret ] && exec \"$@\"\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = Server::start_with(
        "",
        &format!("checkpassword = [\"/bin/bash\", \"{}\"]", prog.display()),
    );
    deliver(&s, "alice", &sample(1));
    let mut p = s.connect();
    p.cmd("USER alice");
    assert!(p.cmd("PASS password").starts_with("-ERR [AUTH]"));
    p.cmd("USER alice");
    let r = p.cmd("PASS s3cret");
    assert!(r.starts_with("+OK"), "{r}\n{}", s.log());
    assert!(p.cmd("STAT").starts_with("+OK 1 "));
}

#[test]
fn inetd_mode_over_stdin_stdout() {
    let s = Server::start("");
    deliver(&s, "alice", &sample(3));
    let mut child = Command::new(common::bin("mpopd"))
        .arg("-c")
        .arg(&s.config)
        .arg("inetd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"CAPA\r\nUSER alice\r\nPASS password\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n")
        .unwrap();
    drop(stdin);
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "inetd session did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("+OK"), "{text}");
    assert!(text.contains("\r\nUIDL\r\n"));
    let want = String::from_utf8(crlf(&sample(3)))
        .unwrap()
        .replace("\r\n.", "\r\n..");
    assert!(text.contains(&want), "{text}");
    assert!(
        text.ends_with("+OK Logging out, messages deleted.\r\n"),
        "{text}"
    );
    assert_eq!(s.files("alice"), 0);
}

/// One `mpopd inetd` process (another pid than the server's) fed `input`; its stdout.
fn inetd_session(s: &Server, input: &[u8]) -> String {
    let out = common::run_with_input(
        Command::new("/usr/bin/timeout")
            .arg("20")
            .arg(common::bin("mpopd"))
            .arg("-c")
            .arg(&s.config)
            .arg("inetd"),
        input,
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn maildrop_lock_works_across_processes() {
    let s = Server::start("");
    deliver(&s, "dave", &sample(1));
    // The serve process holds dave's maildrop; an inetd process (another pid) must see IN-USE.
    let mut a = s.connect();
    a.login("dave");
    let text = inetd_session(&s, b"USER dave\r\nPASS password\r\nQUIT\r\n");
    assert!(
        text.contains("-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"),
        "{text}"
    );
    assert!(a.cmd("QUIT").starts_with("+OK"));
    let text = inetd_session(&s, b"USER dave\r\nPASS password\r\nSTAT\r\nQUIT\r\n");
    assert!(text.contains("+OK 1 "), "{text}");
}

#[test]
fn same_maildir_as_dovecot_gives_the_same_messages_and_sizes() {
    // The peers' Dovecot serves $PEER_MAIL_DIR/carol; mpopd then serves the same directory.
    // Both must list the same CRLF sizes and send the same bytes (whatever else is there).
    let mail_dir = common::peer("PEER_MAIL_DIR");
    let carol = Path::new(&mail_dir).join("carol");
    let md = Maildir::create(&carol).unwrap();
    for i in 1..=3 {
        md.deliver(&sample(100 + i)).unwrap();
    }
    md.deliver(b"Subject: crlf file\r\n\r\n.dot\r\nno final newline")
        .unwrap();
    // And two files without ,S=/,W= in the name, so both servers must count the CRLF size.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    std::fs::write(
        carol.join("new").join(format!("{stamp}.mk1.test")),
        b"Subject: lf\n\n.a\nb\n\n",
    )
    .unwrap();
    std::fs::write(
        carol.join("new").join(format!("{stamp}.mk2.test")),
        b"Subject: mixed\r\n\nx\r\ny\n",
    )
    .unwrap();
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&carol)
        .status()
        .unwrap();
    assert!(st.success());
    let fetch_all = r#"
import hashlib
resp, listing, _ = p.list()
out = []
for l in listing:
    n, size = l.split()
    resp, lines, octets = p.retr(int(n))
    data = b"".join(x + b"\r\n" for x in lines)
    out.append(f"{int(size)} {len(data)} {hashlib.sha256(data).hexdigest()}")
p.quit()
print("\n".join(sorted(out)))
"#;
    let s = Server::start_full("", "", Some(&format!("{mail_dir}/%u")));
    let dovecot = python(
        &s,
        &format!(
            "p = poplib.POP3('127.0.0.1', {}, timeout=10)\np.user('carol'); p.pass_('password')\n{fetch_all}",
            common::peer("PEER_POP3_PORT")
        ),
    );
    let ours = python(
        &s,
        &format!("p = poplib.POP3('127.0.0.1', PORT, timeout=10)\np.user('carol'); p.pass_('password')\n{fetch_all}"),
    );
    assert!(dovecot.lines().count() >= 6, "{dovecot}");
    assert_eq!(
        ours, dovecot,
        "mpopd and Dovecot serve the same sizes and bytes"
    );
}

#[test]
fn noop_does_not_keep_a_session_past_its_deadline() {
    let s = Server::start("session_deadline_secs = 2");
    let mut p = s.connect();
    p.login("alice");
    // A NOOP every 200 ms never trips the 10-minute inactivity timer; the deadline does.
    let mut last = String::new();
    for _ in 0..100 {
        // The server closes at the deadline on its own, possibly while we sleep: read what it
        // sent before writing into a closed socket.
        let sock = p.socket();
        sock.set_nonblocking(true).unwrap();
        let mut one = [0u8; 1];
        let pending = matches!(sock.peek(&mut one), Ok(n) if n > 0);
        sock.set_nonblocking(false).unwrap();
        last = if pending { p.line() } else { p.cmd("NOOP") };
        if !last.starts_with("+OK") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(last, "-ERR Session deadline exceeded, disconnecting.\r\n");
    assert!(p.closed());
}
