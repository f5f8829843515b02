//! mimapd against real clients on loopback: python3 imaplib (LOGIN with literals, AUTHENTICATE
//! PLAIN, STARTTLS against the peers' CA, implicit TLS), curl imap:// and imaps://, raw
//! sockets for the framing edge cases (LITERAL+, oversize literals, over-long lines, wrong
//! states), and the real binary in inetd mode over stdin/stdout.

mod common;

use common::raw::Imap;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mailkit::maildir::{Maildir, Sub};

/// A running `mimapd serve` with its own passwd-file, Maildirs and config (killed on drop).
struct Server {
    _child: common::KillOnDrop,
    dir: tempfile::TempDir,
    plain: u16,
    tls: u16,
    config: PathBuf,
}

impl Server {
    /// `extra` is appended to `[mimapd]`. The listeners are on port 0; their ports come from
    /// the lines mimapd prints.
    fn start(extra: &str) -> Server {
        Server::start_with(extra, None)
    }

    /// [`Server::start`] serving `user` (password "password") with the peers' Maildir of that
    /// user, the one the peers' Dovecot serves.
    fn start_for_peer_user(user: &str) -> Server {
        Server::start_with("", Some(user))
    }

    fn start_with(extra: &str, peer_user: Option<&str>) -> Server {
        let dir = common::scratch();
        let config = write_config(dir.path(), extra, peer_user);
        common::give_to_nobody(dir.path());
        let (child, l) = common::start_daemon(
            Command::new(common::bin("mimapd"))
                .arg("-c")
                .arg(&config)
                .arg("serve"),
            &dir.path().join("mimapd.log"),
            &["imap", "imaps"],
        );
        Server {
            _child: child,
            dir,
            plain: l.port("imap"),
            tls: l.port("imaps"),
            config,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mimapd.log")).unwrap_or_default()
    }

    fn connect(&self) -> Imap {
        Imap::connect(self.plain)
    }
}

/// passwd-file with alice and bob ({PLAIN}), their Maildirs, and a config using the peers'
/// certificate, its two listeners on port 0.
/// With `peer_user`, that user alone, with the peers' Maildir of that user (`mail_location`
/// under `PEER_MAIL_DIR`). `extra` may set `max_message_size` instead of the default here.
fn write_config(dir: &Path, extra: &str, peer_user: Option<&str>) -> PathBuf {
    let mut passwd = "alice:{PLAIN}password::::::\nbob:{PLAIN}secret::::::\n".to_string();
    let mut location = format!("{}/mail/%u", dir.display());
    match peer_user {
        Some(u) => {
            passwd = format!("{u}:{{PLAIN}}password::::::\n");
            location = format!("{}/%u", common::peer("PEER_MAIL_DIR"));
        }
        None => {
            for u in ["alice", "bob"] {
                Maildir::create(dir.join("mail").join(u)).unwrap();
            }
        }
    }
    std::fs::write(dir.join("passwd"), passwd).unwrap();
    let size = if extra.contains("max_message_size") {
        ""
    } else {
        "max_message_size = 100000"
    };
    let text = format!(
        r#"hostname = "localhost"
[tls]
cert = "{cert}"
key = "{key}"
[users]
passwd_file = "{d}/passwd"
mail_location = "{location}"
[auth]
failure_delay_ms = 50
max_delay_ms = 100
[mimapd]
listen = [ {{ address = "127.0.0.1:0" }}, {{ address = "127.0.0.1:0", role = "implicit-tls" }} ]
max_command_size = 4096
{size}
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

/// Runs python3 code with `imaplib`, `ssl`, `PORT`, `TLSPORT`, `CA` defined; its stdout.
fn python(s: &Server, code: &str) -> String {
    let prelude = format!(
        "import imaplib, ssl, sys, base64\nPORT={}\nTLSPORT={}\nCA={:?}\n",
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
fn imaplib_logs_in_as_user_and_user_at_domain_with_quoted_and_literal_passwords() {
    let s = Server::start("");
    let out = python(
        &s,
        r#"
for user in ["alice", "alice@localhost", "ALICE@LocalHost"]:
    M = imaplib.IMAP4("127.0.0.1", PORT)
    assert "AUTH=PLAIN" in M.capabilities and "LITERAL+" in M.capabilities, M.capabilities
    typ, data = M.login(user, "password")
    assert typ == "OK", (typ, data)
    typ, data = M.noop()
    assert typ == "OK"
    typ, data = M.logout()
    assert typ == "BYE", (typ, data)
# A synchronising literal: imaplib waits for "+" before sending it.
M = imaplib.IMAP4("127.0.0.1", PORT)
M.literal = b"secret"
typ, data = M._simple_command("LOGIN", "bob")
assert typ == "OK", (typ, data)
M.state = "AUTH"
typ, data = M.namespace()
assert typ == "OK" and data == [b'(("" ".")) NIL NIL'], data
typ, data = M.xatom("ID", '("name" "imaplib")')
assert typ == "OK", (typ, data)
print(M.untagged_responses.get("ID"))
typ, data = M.xatom("ENABLE", "CONDSTORE")
assert typ == "OK", (typ, data)
M.logout()
# Wrong password: NO [AUTHENTICATIONFAILED], the same for a user that does not exist.
for user in ["alice", "nobody"]:
    M = imaplib.IMAP4("127.0.0.1", PORT)
    try:
        M.login(user, "wrong")
        sys.exit("login with a wrong password succeeded")
    except imaplib.IMAP4.error as e:
        assert "AUTHENTICATIONFAILED" in str(e), e
    M.logout()
print("ok")
"#,
    );
    assert!(
        out.contains("mailkit-mimapd") && out.ends_with("ok\n"),
        "{out}"
    );
}

#[test]
fn imaplib_authenticate_plain_and_sasl_ir() {
    let s = Server::start("");
    let out = python(
        &s,
        r#"
M = imaplib.IMAP4("127.0.0.1", PORT)
typ, data = M.authenticate("PLAIN", lambda _: b"\0alice@localhost\0password")
assert typ == "OK", (typ, data)
M.logout()
print("ok")
"#,
    );
    assert_eq!(out, "ok\n");
    // SASL-IR (RFC 4959): the initial response on the command line.
    let mut c = s.connect();
    let r = c.run(b"a AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ=\r\n", "a");
    assert!(r.starts_with("a OK [CAPABILITY IMAP4rev1 "), "{r}");
    assert!(r.contains(" IDLE ") || r.contains(" IDLE]"), "{r}");
}

#[test]
fn starttls_and_logindisabled_when_plaintext_is_never_allowed() {
    let s = Server::start(r#"allow_plaintext_auth = "never""#);
    let out = python(
        &s,
        r#"
M = imaplib.IMAP4("127.0.0.1", PORT)
assert "LOGINDISABLED" in M.capabilities and "STARTTLS" in M.capabilities, M.capabilities
assert "AUTH=PLAIN" not in M.capabilities
typ, data = M._simple_command("LOGIN", "alice", "password")
assert typ == "NO" and b"PRIVACYREQUIRED" in data[0], (typ, data)
ctx = ssl.create_default_context(cafile=CA)
M.starttls(ssl_context=ctx)
assert "LOGINDISABLED" not in M.capabilities and "STARTTLS" not in M.capabilities, M.capabilities
typ, data = M.login("alice", "password")
assert typ == "OK", (typ, data)
M.logout()
# Implicit TLS (port 993 style).
M = imaplib.IMAP4_SSL("localhost", TLSPORT, ssl_context=ctx)
assert "STARTTLS" not in M.capabilities and "AUTH=PLAIN" in M.capabilities, M.capabilities
typ, data = M.login("bob@localhost", "secret")
assert typ == "OK", (typ, data)
M.logout()
print("ok")
"#,
    );
    assert_eq!(out, "ok\n");
}

#[test]
fn literals_literal_plus_and_oversize_refusals() {
    let s = Server::start("");
    let mut c = s.connect();
    // A synchronising literal within the limit gets "+" first.
    c.send(b"a LOGIN alice {8}\r\n");
    assert_eq!(c.line(), "+ Ready for literal data.\r\n");
    let r = c.run(b"password\r\n", "a");
    assert!(r.starts_with("a OK "), "{r}");
    let mut c = s.connect();
    // LITERAL+ (RFC 7888): no "+", the data follows at once.
    let r = c.run(b"b LOGIN {5+}\r\nalice {8+}\r\npassword\r\n", "b");
    assert!(r.starts_with("b OK "), "{r}");
    let mut c = s.connect();
    // Over max_command_size: a synchronising literal is refused before it is sent ...
    let r = c.run(b"c LOGIN alice {10000}\r\n", "c");
    assert_eq!(r, "c NO [TOOBIG] Literal too big.\r\n");
    // ... a non-synchronising one is read, thrown away and refused, and framing goes on.
    let mut big = b"d LOGIN alice {10000+}\r\n".to_vec();
    big.extend_from_slice(&vec![b'x'; 10000]);
    big.extend_from_slice(b"\r\ne NOOP\r\n");
    let r = c.run(&big, "e");
    assert_eq!(
        r,
        "d NO [TOOBIG] Literal too big.\r\ne OK NOOP completed.\r\n"
    );
    // A line over the limit ends the session.
    c.send(&vec![b'y'; 5000]);
    c.send(b"\r\n");
    assert_eq!(c.line(), "* BYE Command line too long.\r\n");
    assert!(c.closed());
}

#[test]
fn wrong_state_and_unknown_commands_are_bad_and_too_many_end_the_session() {
    let s = Server::start("max_errors = 5");
    let mut c = s.connect();
    let r = c.run(b"a SELECT INBOX\r\nb XYZZY\r\nc FETCH 1 FLAGS\r\n", "c");
    assert_eq!(
        r,
        "a BAD Log in first.\r\nb BAD Unknown command.\r\nc BAD Log in first.\r\n"
    );
    let r = c.run(b"d LOGIN alice password\r\ne STARTTLS\r\n", "e");
    assert!(r.contains("d OK ") && r.contains("e BAD "), "{r}");
    c.send(b"f BOGUS\r\n");
    assert_eq!(c.line(), "f BAD Unknown command.\r\n");
    assert_eq!(c.line(), "* BYE Too many invalid commands.\r\n");
    assert!(c.closed());
}

#[test]
fn inetd_mode_over_stdin_stdout() {
    let s = Server::start("");
    let out = common::run_with_input(
        Command::new("/usr/bin/timeout")
            .arg("20")
            .arg(common::bin("mimapd"))
            .arg("-c")
            .arg(&s.config)
            .arg("inetd"),
        b"1 CAPABILITY\r\n2 LOGIN alice@localhost password\r\n3 LOGOUT\r\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{out:?}");
    assert!(text.starts_with("* OK [CAPABILITY IMAP4rev1 "), "{text}");
    assert!(text.contains("\r\n2 OK [CAPABILITY "), "{text}");
    assert!(
        text.ends_with("* BYE Logging out.\r\n3 OK LOGOUT completed.\r\n"),
        "{text}"
    );
}

/// IDLE outside a mailbox just waits for DONE.
#[test]
fn idle_outside_a_mailbox_waits_for_done() {
    let s = Server::start("");
    let mut c = s.connect();
    c.run(b"a LOGIN alice password\r\n", "a");
    let r = c.run(b"d IDLE\r\n", "+");
    assert_eq!(r, "+ idling\r\n");
    let r = c.run(b"DONE\r\n", "d");
    assert_eq!(r, "d OK IDLE terminated.\r\n");
}

/// curl logs in over imap:// with STARTTLS required and over imaps://, as `user@domain` too,
/// and runs a command (`-X NOOP`: the mailbox commands curl uses for listing and fetching are
/// still to come); a wrong password fails.
#[test]
fn curl_logs_in_over_imap_starttls_and_imaps() {
    let s = Server::start(r#"allow_plaintext_auth = "never""#);
    let curl = |url: String, user: &str| {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "--ssl-reqd", "--cacert"])
            .arg(common::peer("PEER_CA_FILE"))
            .arg("--user")
            .arg(user)
            .args(["-X", "NOOP"])
            .arg(url)
            .output()
            .unwrap()
    };
    for (url, user) in [
        (format!("imap://localhost:{}/", s.plain), "alice:password"),
        (
            format!("imaps://localhost:{}/", s.tls),
            "alice@localhost:password",
        ),
    ] {
        let out = curl(url.clone(), user);
        assert!(
            out.status.success(),
            "{url}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            s.log()
        );
    }
    let out = curl(format!("imaps://localhost:{}/", s.tls), "alice:wrong");
    assert!(!out.status.success());
    assert!(s.log().contains("failed login user=alice"), "{}", s.log());
}

impl Server {
    fn maildir(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user)
    }
}

/// Delivers `msg` to `user` with the real `mdeliver`, running as the daemon's user (nobody), as
/// a delivery agent of that user would.
fn mdeliver(s: &Server, user: &str, msg: &[u8]) {
    let out = common::run_with_input(
        Command::new("/usr/bin/timeout")
            .arg("20")
            .arg("setpriv")
            .arg(format!("--reuid={}", common::NOBODY))
            .arg(format!("--regid={}", common::NOBODY))
            .arg("--clear-groups")
            .arg(common::bin("mdeliver"))
            .arg(s.maildir(user))
            .env_remove("MAILDIR")
            .env_remove("SENDER")
            .env_remove("RECIPIENT"),
        msg,
    );
    assert!(out.status.success(), "mdeliver: {out:?}");
}

/// A Maildir++ folder made as the Maildir's owner would (CREATE is not served yet).
fn folder(s: &Server, user: &str, name: &str) {
    Maildir::open(s.maildir(user))
        .unwrap()
        .folder(name)
        .unwrap();
    common::give_to_nobody(&s.maildir(user));
}

/// The info suffixes (`2,FS`) of the files in folder directory `dir` (`""` for INBOX).
fn infos(s: &Server, user: &str, dir: &str) -> Vec<String> {
    let md = Maildir::open(s.maildir(user).join(dir)).unwrap();
    let mut v: Vec<String> = [Sub::New, Sub::Cur]
        .into_iter()
        .flat_map(|sub| md.list(sub).unwrap())
        .map(|e| e.info.unwrap_or_default())
        .collect();
    v.sort();
    v
}

const PLAIN_MSG: &str = "From: Ann Example <ann@example.org>\nTo: alice@localhost\n\
Subject: Hello world\nDate: Mon, 02 Mar 2026 10:00:00 +0000\nX-Tag: foo-bar\n\n\
first body line\nsecond line\n";

const QP_MSG: &str = "From: bob@example.org\nTo: alice@localhost\n\
Subject: =?UTF-8?Q?caf=C3=A9_talk?=\nDate: Tue, 03 Mar 2026 10:00:00 +0000\nMIME-Version: 1.0\n\
Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
Une cr=C3=A8me br=C3=BBl=C3=A9e au caf=C3=A9.\n";

/// multipart/mixed: text, multipart/alternative (text, html), a message/rfc822 holding a
/// multipart, and a base64 attachment whose decoded text is "the secretword inside".
const NESTED_MSG: &str = "From: carol@example.org\nTo: alice@localhost\nSubject: nested\n\
Date: Wed, 04 Mar 2026 10:00:00 +0000\nMIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=\"outer\"\n\npreamble\n\
--outer\nContent-Type: text/plain; charset=us-ascii\n\nplain part\n\
--outer\nContent-Type: multipart/alternative; boundary=\"alt\"\n\n\
--alt\nContent-Type: text/plain\n\nalt text\n\
--alt\nContent-Type: text/html\n\n<p>alt html</p>\n--alt--\n\
--outer\nContent-Type: message/rfc822\n\nFrom: dave@example.org\nSubject: inner\n\
MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"in\"\n\n\
--in\nContent-Type: text/plain\n\ninner text\n\
--in\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAECAw==\n--in--\n\
--outer\nContent-Type: application/pdf; name=\"a.pdf\"\nContent-Disposition: attachment; filename=\"a.pdf\"\n\
Content-Transfer-Encoding: base64\n\ndGhlIHNlY3JldHdvcmQgaW5zaWRl\n--outer--\nepilogue\n";

/// A whole session with python3 imaplib over a Maildir that mdeliver filled: SELECT, FETCH
/// items, macros and partials, BODYSTRUCTURE of a nested multipart against python's email
/// parser, SEARCH keys, STORE (seen on disk as info letters), COPY and MOVE with COPYUID,
/// EXPUNGE, EXAMINE, CLOSE.
#[test]
fn imaplib_session_over_a_maildir_filled_by_mdeliver() {
    let s = Server::start("");
    for m in [PLAIN_MSG, QP_MSG, NESTED_MSG] {
        mdeliver(&s, "alice", m.as_bytes());
    }
    folder(&s, "alice", "Archive");
    let code = format!(
        "NESTED = {:?}\n{}",
        NESTED_MSG,
        r#"
import email, email.policy, re
def parse(b):
    # IMAP data (atoms, quoted strings, literals {n}, lists) into python values.
    pos = 0
    def value():
        nonlocal pos
        while b[pos:pos+1] == b" ":
            pos += 1
        c = b[pos:pos+1]
        if c == b"(":
            pos += 1
            out = []
            while True:
                while b[pos:pos+1] == b" ":
                    pos += 1
                if b[pos:pos+1] == b")":
                    pos += 1
                    return out
                out.append(value())
        if c == b'"':
            pos += 1
            s = b""
            while b[pos:pos+1] != b'"':
                if b[pos:pos+1] == b"\\":
                    pos += 1
                s += b[pos:pos+1]
                pos += 1
            pos += 1
            return s.decode()
        if c == b"{":
            end = b.index(b"}", pos)
            n = int(b[pos+1:end])
            pos = end + 1
            if b[pos:pos+2] == b"\r\n":
                pos += 2
            s = b[pos:pos+n]
            pos += n
            return s.decode()
        start = pos
        m = re.compile(rb"[^ ()]+").match(b, pos)
        pos = m.end()
        if b"[" in m.group() and b"]" not in m.group():
            # BODY[HEADER.FIELDS (A B)]<n> is one name.
            pos = re.compile(rb"[^ ()]*").match(b, b.index(b"]", pos) + 1).end()
        t = b[start:pos].decode()
        return None if t == "NIL" else t
    return value()
def flat(data):
    out = b""
    for d in data:
        if isinstance(d, tuple):
            out += d[0] + b"\r\n" + d[1]
        else:
            out += d
    return out
def items(data):
    b = flat(data)
    i = b.index(b"(")
    v = parse(b[i:])
    return dict(zip(v[0::2], v[1::2]))
def types(bs):
    # Pre-order (type, encoding) of a BODYSTRUCTURE, as email's walk() visits parts.
    if isinstance(bs[0], list):
        kids = []
        i = 0
        while isinstance(bs[i], list):
            kids.append(bs[i])
            i += 1
        out = [("multipart/" + bs[i].lower(), None)]
        for k in kids:
            out += types(k)
        return out
    t = (bs[0] + "/" + bs[1]).lower()
    out = [(t, bs[5].lower())]
    if t == "message/rfc822":
        out += types(bs[8])
    return out

M = imaplib.IMAP4("127.0.0.1", PORT)
M.login("alice", "password")
typ, data = M.capability()
assert b" UIDPLUS" in data[0] and b" MOVE" in data[0], data
typ, data = M.select("INBOX")
assert typ == "OK" and data == [b"3"], (typ, data)
assert M.untagged_responses.get("RECENT") == [b"3"], M.untagged_responses
assert M.untagged_responses.get("UIDNEXT") == [b"4"], M.untagged_responses
assert M.untagged_responses.get("UNSEEN") == [b"1"], M.untagged_responses
validity = M.untagged_responses["UIDVALIDITY"][0]

# FETCH: macros, UID, sizes, envelope, header fields, partials; PEEK keeps \Seen off.
typ, data = M.fetch("1:*", "ALL")
assert typ == "OK" and len(data) == 3, data
it = items([data[0]])
assert it["FLAGS"] == ["\\Recent"], it
env = it["ENVELOPE"]
assert env[1] == "Hello world" and env[2][0][0] == "Ann Example", env
assert env[2][0][2] == "ann" and env[2][0][3] == "example.org", env
typ, data = M.fetch("1", "(RFC822.SIZE BODY.PEEK[HEADER.FIELDS (Subject X-Tag)] BODY.PEEK[TEXT]<6.4>)")
it = items(data)
assert it["BODY[HEADER.FIELDS (SUBJECT X-TAG)]"] == "Subject: Hello world\r\nX-Tag: foo-bar\r\n\r\n", it
assert it["BODY[TEXT]<6>"] == "body", it
size = int(it["RFC822.SIZE"])
typ, data = M.fetch("1", "(FLAGS BODY.PEEK[])")
it = items(data)
assert it["FLAGS"] == ["\\Recent"], it
assert len(it["BODY[]"].encode()) == size and it["BODY[]"].endswith("second line\r\n"), it
typ, data = M.uid("FETCH", "1", "(BODY[TEXT])")
it = items(data)
assert it["UID"] == "1" and it["BODY[TEXT]"] == "first body line\r\nsecond line\r\n", it
assert "\\Seen" in it["FLAGS"], it
typ, data = M.fetch("1", "FAST")
assert "\\Seen" in items(data)["FLAGS"], data

# BODYSTRUCTURE of the nested message against python's email parser.
typ, data = M.fetch("3", "(BODYSTRUCTURE BODY)")
it = items(data)
mine = types(it["BODYSTRUCTURE"])
msg = email.message_from_string(NESTED, policy=email.policy.default)
theirs = [(p.get_content_type(), None if p.is_multipart() and p.get_content_maintype() == "multipart" else p.get("Content-Transfer-Encoding", "7bit").lower()) for p in msg.walk()]
assert mine == theirs, (mine, theirs)
assert types(it["BODY"]) == theirs, it["BODY"]
typ, data = M.fetch("3", "(BODY.PEEK[2.2] BODY.PEEK[3.1] BODY.PEEK[3.HEADER.FIELDS (SUBJECT)] BODY.PEEK[4.MIME] BODY.PEEK[4])")
it = items(data)
assert it["BODY[2.2]"] == "<p>alt html</p>", it
assert it["BODY[3.1]"] == "inner text", it
assert it["BODY[3.HEADER.FIELDS (SUBJECT)]"] == "Subject: inner\r\n\r\n", it
assert it["BODY[4.MIME]"].startswith("Content-Type: application/pdf"), it
assert it["BODY[4]"] == "dGhlIHNlY3JldHdvcmQgaW5zaWRl", it

# SEARCH on decoded text, dates, sizes, flags, OR/NOT, CHARSET.
def search(*keys, uid=False):
    typ, data = M.uid("SEARCH", *keys) if uid else M.search(None, *keys)
    assert typ == "OK", (typ, data)
    return data[0].split()
assert search("SUBJECT", "hello") == [b"1"]
assert search("SUBJECT", "CAFE") == []
assert search("HEADER", "X-Tag", "FOO-BAR") == [b"1"]
assert search("FROM", "ann@example") == [b"1"]
assert search("TEXT", "secretword") == [b"3"], "base64 attachment decoded"
assert search("BODY", "secretword") == [b"3"]
assert search("BODY", '"inner text"') == [b"3"]
assert search("SENTON", "03-Mar-2026") == [b"2"]
assert search("SENTBEFORE", "03-Mar-2026") == [b"1"]
assert search("SENTSINCE", "04-Mar-2026") == [b"3"]
assert search("SINCE", "1-Jan-2000") == [b"1", b"2", b"3"]
assert search("BEFORE", "1-Jan-2000") == []
assert search("LARGER", str(size - 1)) == [b"1", b"2", b"3"]
assert b"1" not in search("LARGER", str(size))
assert search("SMALLER", str(size + 1)) == [b"1"]
assert search("OR", "SUBJECT", "hello", "SUBJECT", "nested") == [b"1", b"3"]
assert search("NOT", "SEEN") == [b"2", b"3"]
assert search("SEEN") == [b"1"]
assert search("RECENT", "UNSEEN", "2:*") == [b"2", b"3"]
assert search("UID", "2:3", "NOT", "UID", "3") == [b"2"]
assert search("ALL", uid=True) == [b"1", b"2", b"3"]
M.literal = "crème".encode()
typ, data = M.search("UTF-8", "BODY")
assert typ == "OK" and data == [b"2"], (typ, data)
M.literal = "café".encode()
typ, data = M.search("UTF-8", "SUBJECT")
assert typ == "OK" and data == [b"2"], (typ, data)
typ, data = M._simple_command("SEARCH", "CHARSET", "KOI8-R", "ALL")
assert typ == "NO" and data[0].startswith(b"[BADCHARSET (UTF-8)]"), (typ, data)

# STORE: visible on disk as info letters (checked by the test), keywords included.
typ, data = M.store("1", "+FLAGS", "(\\Flagged $Work)")
assert typ == "OK" and b"\\Flagged" in data[0] and b"$Work" in data[0], data
typ, data = M.store("2", "FLAGS.SILENT", "(\\Answered \\Draft)")
assert typ == "OK" and data == [None], data
typ, data = M.store("1", "-FLAGS", "(\\Seen)")
assert b"\\Seen" not in data[0] and b"\\Flagged" in data[0], data
typ, data = M.fetch("1:2", "FLAGS")
assert typ == "OK"

# COPY and MOVE with COPYUID (RFC 4315, RFC 6851); EXPUNGE.
typ, data = M.copy("1:2", "Archive")
assert typ == "OK", (typ, data)
copyuid = re.match(rb"\[COPYUID (\d+) (\S+) (\S+)\]", data[0]).groups()
assert copyuid[1:] == (b"1:2", b"1:2"), copyuid
typ, data = M.copy("1", "NoSuchFolder")
assert typ == "NO" and b"TRYCREATE" in data[0], (typ, data)
typ, data = M.uid("MOVE", "3", "Archive")
assert typ == "OK", (typ, data)
assert M.untagged_responses.pop("EXPUNGE") == [b"3"], M.untagged_responses
copyuid = M.response("COPYUID")[1][-1].split()
assert copyuid[1:] == [b"3", b"3"], copyuid
M.store("2", "+FLAGS", "(\\Deleted)")
typ, data = M.expunge()
assert typ == "OK" and data == [b"2"], (typ, data)
typ, data = M.fetch("1:*", "UID")
assert data == [b"1 (UID 1)"], data
try:
    M.fetch("2", "UID")
    raise SystemExit("FETCH 2 of a one-message mailbox was not BAD")
except imaplib.IMAP4.error as e:
    assert "sequence" in str(e).lower(), e

# EXAMINE: read-only, no STORE; the Archive's copies are \Recent for the one who looks.
typ, data = M.select("Archive", readonly=True)
assert typ == "OK" and data == [b"3"], (typ, data)
typ, data = M.store("1", "+FLAGS", "(\\Seen)")
assert typ == "NO", (typ, data)
typ, data = M.search(None, "KEYWORD", "$Work")
assert data == [b"1"], data
typ, data = M.close()
assert typ == "OK", (typ, data)
typ, data = M.select("NoSuchFolder")
assert typ == "NO", (typ, data)
M.logout()
print("ok")
"#
    );
    let out = python(&s, &code);
    assert_eq!(out, "ok\n");
    // STORE renamed the files: \Flagged is F, $Work a keyword letter, \Answered \Draft R D.
    let inbox = infos(&s, "alice", "");
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert!(
        inbox[0].starts_with("2,F") && inbox[0].ends_with('a'),
        "{inbox:?}"
    );
    let keywords = std::fs::read_to_string(s.maildir("alice").join("dovecot-keywords")).unwrap();
    assert_eq!(keywords.trim(), "0 $Work", "{keywords}");
    let archive = infos(&s, "alice", ".Archive");
    assert_eq!(archive.len(), 3, "{archive:?}");
    assert!(
        archive.contains(&"2,DR".to_string()) && archive.contains(&"2,Fa".to_string()),
        "{archive:?}"
    );
}

/// Sequence sets: a number beyond the mailbox and any sequence number in an empty mailbox are
/// BAD; UIDs that name nothing are ignored; SELECT of a missing mailbox deselects.
#[test]
fn bad_sequence_sets_and_the_empty_mailbox() {
    let s = Server::start("");
    let mut c = s.connect();
    c.run(b"a LOGIN alice password\r\n", "a");
    let r = c.run(b"b SELECT INBOX\r\n", "b");
    assert!(
        r.contains("* 0 EXISTS\r\n") && r.contains("[UIDNEXT 1]"),
        "{r}"
    );
    assert!(
        r.ends_with("b OK [READ-WRITE] SELECT completed.\r\n"),
        "{r}"
    );
    let r = c.run(b"c FETCH 1:* FLAGS\r\n", "c");
    assert_eq!(r, "c BAD Invalid sequence set.\r\n");
    let r = c.run(b"d UID FETCH 1:* FLAGS\r\n", "d");
    assert_eq!(r, "d OK FETCH completed.\r\n");
    let r = c.run(b"e SEARCH ALL\r\n", "e");
    assert_eq!(r, "* SEARCH\r\ne OK SEARCH completed.\r\n");
    mdeliver(&s, "alice", PLAIN_MSG.as_bytes());
    let r = c.run(b"f NOOP\r\n", "f");
    assert_eq!(r, "* 1 EXISTS\r\n* 1 RECENT\r\nf OK NOOP completed.\r\n");
    let r = c.run(b"g FETCH 2 FLAGS\r\n", "g");
    assert_eq!(r, "g BAD Invalid sequence set.\r\n");
    let r = c.run(b"h UID FETCH 5:7 FLAGS\r\n", "h");
    assert_eq!(r, "h OK FETCH completed.\r\n");
    // n:* with n beyond the largest UID still names the last message (RFC 3501 6.4.8).
    let r = c.run(b"i UID FETCH 9:* FLAGS\r\n", "i");
    assert_eq!(
        r,
        "* 1 FETCH (UID 1 FLAGS (\\Recent))\r\ni OK FETCH completed.\r\n"
    );
    // UID EXPUNGE (RFC 4315 2.1) removes only the \Deleted messages of its set.
    mdeliver(&s, "alice", QP_MSG.as_bytes());
    // Message 2 has no number for the client before its EXISTS.
    let r = c.run(b"i1 STORE 1:2 +FLAGS.SILENT (\\Deleted)\r\n", "i1");
    assert_eq!(
        r,
        "* 2 EXISTS\r\n* 2 RECENT\r\ni1 BAD Invalid sequence set.\r\n"
    );
    let r = c.run(b"i2 STORE 1:2 +FLAGS.SILENT (\\Deleted)\r\n", "i2");
    assert_eq!(r, "i2 OK STORE completed.\r\n");
    let r = c.run(b"i3 UID EXPUNGE 2:5\r\n", "i3");
    assert_eq!(r, "* 2 EXPUNGE\r\ni3 OK UID EXPUNGE completed.\r\n");
    let r = c.run(b"i4 UID FETCH 1:* FLAGS\r\n", "i4");
    assert_eq!(
        r,
        "* 1 FETCH (UID 1 FLAGS (\\Deleted \\Recent))\r\ni4 OK FETCH completed.\r\n"
    );
    let r = c.run(b"j SELECT Nope\r\n", "j");
    assert_eq!(r, "j NO Mailbox doesn't exist.\r\n");
    let r = c.run(b"k FETCH 1 FLAGS\r\n", "k");
    assert_eq!(r, "k BAD No mailbox selected.\r\n");
}

/// IDLE (RFC 2177) over the raw protocol: an mdeliver delivery, a flag change and an expunge
/// by a second session reach the idling client while it idles (each wait bounded by the
/// socket timeout; no time is asserted).
#[test]
fn idle_sees_an_mdeliver_delivery_and_another_sessions_changes() {
    let s = Server::start("");
    mdeliver(&s, "alice", PLAIN_MSG.as_bytes());
    let mut idler = s.connect();
    idler.run(b"a LOGIN alice password\r\n", "a");
    let r = idler.run(b"b SELECT INBOX\r\n", "b");
    assert!(r.contains("* 1 EXISTS\r\n"), "{r}");
    idler.send(b"c IDLE\r\n");
    assert_eq!(idler.line(), "+ idling\r\n");
    mdeliver(&s, "alice", QP_MSG.as_bytes());
    assert_eq!(idler.line(), "* 2 EXISTS\r\n");
    assert_eq!(idler.line(), "* 2 RECENT\r\n");
    let mut other = s.connect();
    other.run(b"a LOGIN alice@localhost password\r\n", "a");
    other.run(b"b SELECT INBOX\r\n", "b");
    let r = other.run(b"c STORE 1 +FLAGS.SILENT (\\Flagged)\r\n", "c");
    assert_eq!(r, "c OK STORE completed.\r\n");
    assert_eq!(
        idler.line(),
        "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\n"
    );
    let r = other.run(b"d STORE 2 +FLAGS.SILENT (\\Deleted)\r\ne EXPUNGE\r\n", "e");
    assert!(
        r.ends_with("* 2 EXPUNGE\r\ne OK EXPUNGE completed.\r\n"),
        "{r}"
    );
    // The \Deleted flag may reach the idler before the expunge does, or not at all.
    let mut l = idler.line();
    if l.starts_with("* 2 FETCH ") {
        assert_eq!(l, "* 2 FETCH (UID 2 FLAGS (\\Deleted \\Recent))\r\n");
        l = idler.line();
    }
    assert_eq!(l, "* 2 EXPUNGE\r\n");
    let r = idler.run(b"DONE\r\n", "c");
    assert_eq!(r, "c OK IDLE terminated.\r\n");
    let r = idler.run(b"d FETCH 1:* (UID FLAGS)\r\n", "d");
    assert_eq!(
        r,
        "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))\r\nd OK FETCH completed.\r\n"
    );
}

/// curl fetches a message by UID (`imap://host/INBOX;UID=1`: SELECT, then UID FETCH BODY[]).
#[test]
fn curl_fetches_a_message_by_uid() {
    let s = Server::start("");
    mdeliver(&s, "alice", PLAIN_MSG.as_bytes());
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--user", "alice:password"])
        .arg(format!("imap://127.0.0.1:{}/INBOX;UID=1", s.plain))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        PLAIN_MSG.replace('\n', "\r\n")
    );
}

/// A FETCH of more than the driver's batch (256 KiB) arrives whole and in order.
#[test]
fn a_fetch_larger_than_one_batch_arrives_whole() {
    let s = Server::start("");
    // The same messages are made in python to compare (a command line holds no 600 KiB).
    let make = |i: usize| {
        let line = format!("message {i} line of text to fill the file\n");
        format!("Subject: big {i}\n\n{}", line.repeat(3000))
    };
    for i in 0..5 {
        mdeliver(&s, "alice", make(i).as_bytes());
    }
    let code = r#"
SENT = [("Subject: big %d\n\n" % i + ("message %d line of text to fill the file\n" % i) * 3000).replace("\n", "\r\n") for i in range(5)]
M = imaplib.IMAP4("127.0.0.1", PORT)
M.login("alice", "password")
M.select("INBOX")
typ, data = M.fetch("1:*", "(BODY.PEEK[])")
assert typ == "OK", (typ, data)
got = [d[1].decode() for d in data if isinstance(d, tuple)]
assert len(got) == 5 and sum(len(g) for g in got) > 512 * 1024, [len(g) for g in got]
assert got == SENT, "contents differ"
M.logout()
print("ok")
"#;
    assert_eq!(python(&s, code), "ok\n");
}

/// The folder directories (`.A.B`) of a Maildir, sorted.
fn folder_dirs(md: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(md)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    v.sort();
    v
}

/// LIST and LSUB with `*` and `%` against a tree, the SPECIAL-USE folders a first login
/// makes, CREATE/DELETE/RENAME (INBOX too), SUBSCRIBE as Dovecot writes the file, STATUS not
/// taking \Recent, and bad names refused without touching anything outside the Maildir;
/// python3 imaplib.
#[test]
fn imaplib_list_lsub_create_delete_rename_subscribe_status() {
    let s = Server::start("");
    let md = s.maildir("alice");
    let before = std::fs::read_dir(s.dir.path()).unwrap().count();
    let out = python(
        &s,
        r#"
M = imaplib.IMAP4("127.0.0.1", PORT)
M.login("alice", "password")
typ, data = M.capability()
assert b" SPECIAL-USE" in data[0], data
def ok(r):
    assert r[0] == "OK", r
    return r[1]
def no(r, code):
    assert r[0] == "NO" and code in r[1][0], r
ok(M.create("Lists.Rust"))
ok(M.create("Lists.Go."))
ok(M.create("&AMQ-rger"))
no(M.create("Lists"), b"ALREADYEXISTS")
no(M.create("INBOX"), b"ALREADYEXISTS")
for bad in ['"a..b"', '".hidden"', '"a/b"', '"../../x"', '"&AMQ"', "x" * 300]:
    no(M.create(bad), b"CANNOT")
print("LIST*", ok(M.list('""', "*")))
print("LIST%", ok(M.list('""', "%")))
print("LISTref", ok(M.list("Lists.", "%")))
print("LISTempty", ok(M.list('""', '""')))
print("LISTinbox", ok(M.list('""', "inbox")))
try:
    M.list('""', "%a" * 40 + "x")
    sys.exit("a too complex pattern was accepted")
except imaplib.IMAP4.error as e:
    assert "Pattern too complex" in str(e), e
ok(M.subscribe("Lists.Rust"))
ok(M.subscribe("&AMQ-rger"))
ok(M.unsubscribe("Junk"))
print("LSUB%", ok(M.lsub('""', "%")))
print("LSUB*", ok(M.lsub('""', "*")))
print("STATUS", ok(M.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")))
ok(M.delete("Lists"))
print("LISTdel", ok(M.list('""', "Lists*")))
no(M.delete("Lists"), b"CANNOT")
no(M.delete("INBOX"), b"CANNOT")
no(M.delete("Nope"), b"NONEXISTENT")
ok(M.rename("Lists", "Listen"))
no(M.rename("Sent", "Drafts"), b"ALREADYEXISTS")
print("LISTren", ok(M.list('""', "List*")))
M.logout()
print("ok")
"#,
    );
    let line = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .unwrap_or_else(|| panic!("{k} in {out}"))
            .to_string()
    };
    let all = line("LIST*");
    for want in [
        r#"b'(\\HasNoChildren) "." INBOX'"#,
        r#"b'(\\HasNoChildren \\Sent) "." Sent'"#,
        r#"b'(\\HasNoChildren \\Drafts) "." Drafts'"#,
        r#"b'(\\HasNoChildren \\Trash) "." Trash'"#,
        r#"b'(\\HasNoChildren \\Junk) "." Junk'"#,
        r#"b'(\\HasNoChildren \\Archive) "." Archive'"#,
        r#"b'(\\HasChildren) "." Lists'"#,
        r#"b'(\\HasNoChildren) "." Lists.Rust'"#,
        r#"b'(\\HasNoChildren) "." Lists.Go'"#,
        r#"b'(\\HasNoChildren) "." &AMQ-rger'"#,
    ] {
        assert!(all.contains(want), "{want} in {all}");
    }
    assert!(!line("LIST%").contains("Lists.Rust") && line("LIST%").contains("Lists'"));
    assert_eq!(
        line("LISTref"),
        r#"[b'(\\HasNoChildren) "." Lists.Go', b'(\\HasNoChildren) "." Lists.Rust']"#
    );
    assert_eq!(line("LISTempty"), r#"[b'(\\Noselect) "." ""']"#);
    assert_eq!(line("LISTinbox"), r#"[b'(\\HasNoChildren) "." INBOX']"#);
    let lsub = line("LSUB%");
    assert!(lsub.contains(r#"b'(\\Noselect) "." Lists'"#), "{lsub}");
    assert!(lsub.contains(r#"b'(\\Sent) "." Sent'"#), "{lsub}");
    assert!(lsub.contains(r#""." &AMQ-rger'"#), "{lsub}");
    assert!(!lsub.contains("Junk") && !lsub.contains("Rust"), "{lsub}");
    assert!(line("LSUB*").contains(r#"b'() "." Lists.Rust'"#));
    assert!(
        line("STATUS").starts_with("[b'INBOX (MESSAGES 0 RECENT 0 UIDNEXT 1 UIDVALIDITY "),
        "{}",
        line("STATUS")
    );
    assert!(line("LISTdel").contains(r#"b'(\\Noselect \\HasChildren) "." Lists'"#));
    let ren = line("LISTren");
    assert!(
        ren.contains("Listen.Rust") && ren.contains("Listen.Go"),
        "{ren}"
    );
    assert!(!ren.contains("Lists"), "{ren}");
    // The file as Dovecot writes it: TAB between levels, modified UTF-7.
    assert_eq!(
        std::fs::read_to_string(md.join("subscriptions")).unwrap(),
        "V\t2\n\nSent\nDrafts\nTrash\nArchive\nLists\tRust\n&AMQ-rger\n"
    );
    assert_eq!(
        folder_dirs(&md),
        [
            ".&AMQ-rger",
            ".Archive",
            ".Drafts",
            ".Junk",
            ".Listen.Go",
            ".Listen.Rust",
            ".Sent",
            ".Trash"
        ]
    );
    // Nothing was made outside the Maildir by the bad names.
    assert_eq!(std::fs::read_dir(s.dir.path()).unwrap().count(), before);
    assert!(out.ends_with("ok\n"), "{out}");
}

/// A folder CREATEd by mimapd is the one mdeliver's Sieve `fileinto` writes (modified UTF-7
/// on disk, as Dovecot), STATUS counts what mdeliver delivered and takes no \Recent, and
/// RENAME INBOX moves INBOX's messages into the new folder (RFC 3501 §6.3.5).
#[test]
fn folders_are_the_ones_mdeliver_files_into_and_status_and_inbox_rename() {
    let s = Server::start("");
    let md = s.maildir("alice");
    let mut c = s.connect();
    c.run(b"a LOGIN alice password\r\n", "a");
    let r = c.run(b"b CREATE &AMQ-rger\r\n", "b");
    assert_eq!(r, "b OK CREATE completed.\r\n");
    let script = s.dir.path().join("filter.sieve");
    std::fs::write(
        &script,
        "require \"fileinto\";\nif header :contains \"subject\" \"file\" { fileinto \"Ärger\"; }\n",
    )
    .unwrap();
    common::give_to_nobody(&script);
    for subject in ["file me", "keep me", "file me too"] {
        let out = common::run_with_input(
            Command::new("setpriv")
                .arg(format!("--reuid={}", common::NOBODY))
                .arg(format!("--regid={}", common::NOBODY))
                .arg("--clear-groups")
                .arg(common::bin("mdeliver"))
                .args(["-f", "x@example.test", "-d", "alice@localhost", "--sieve"])
                .arg(&script)
                .arg(&md)
                .env_remove("MAILDIR"),
            format!("Subject: {subject}\n\nbody\n").as_bytes(),
        );
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(
        folder_dirs(&md)
            .iter()
            .filter(|d| d.contains("rger"))
            .count(),
        1,
        "{:?}",
        folder_dirs(&md)
    );
    let r = c.run(
        b"c STATUS &AMQ-rger (MESSAGES RECENT UIDNEXT UNSEEN)\r\n",
        "c",
    );
    assert_eq!(
        r,
        "* STATUS &AMQ-rger (MESSAGES 2 RECENT 2 UIDNEXT 3 UNSEEN 2)\r\nc OK STATUS completed.\r\n"
    );
    let r = c.run(b"d STATUS &AMQ-rger (RECENT)\r\n", "d");
    assert!(r.starts_with("* STATUS &AMQ-rger (RECENT 2)\r\n"), "{r}");
    let r = c.run(b"e RENAME INBOX Old\r\n", "e");
    assert_eq!(r, "e OK RENAME completed.\r\n");
    let r = c.run(
        b"f STATUS INBOX (MESSAGES)\r\ng STATUS Old (MESSAGES)\r\n",
        "g",
    );
    assert!(r.contains("* STATUS INBOX (MESSAGES 0)\r\n"), "{r}");
    assert!(r.contains("* STATUS Old (MESSAGES 1)\r\n"), "{r}");
    assert_eq!(std::fs::read_dir(md.join(".Old/cur")).unwrap().count(), 1);
}

/// The process's peak resident memory (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// APPEND with flags and a date (imaplib), to a missing folder (`NO [TRYCREATE]`), and a
/// 20 MB synchronising literal over a raw socket: the file lands whole with its UID in
/// `APPENDUID`, and the server's peak memory does not grow by anything like the message.
#[test]
fn append_with_flags_date_trycreate_and_a_20_mb_literal() {
    let s = Server::start("max_message_size = 30000000");
    let md = s.maildir("alice");
    let out = python(
        &s,
        r#"
M = imaplib.IMAP4("127.0.0.1", PORT)
M.login("alice", "password")
date = '"09-Sep-2001 03:46:40 +0200"'
typ, data = M.append("Sent", r"(\Seen $Label1)", date, b"Subject: sent\r\n\r\nhello\r\n")
assert typ == "OK", (typ, data)
print("APPEND", data)
typ, data = M.append("Nope", None, None, b"Subject: x\r\n\r\nx\r\n")
assert typ == "NO" and b"TRYCREATE" in data[0], (typ, data)
print("STATUS", M.status("Sent", "(MESSAGES UNSEEN UIDNEXT)"))
M.logout()
"#,
    );
    assert!(out.contains("APPEND [b'[APPENDUID "), "{out}");
    assert!(out.contains(" 1] APPEND completed.']"), "{out}");
    assert!(
        out.contains("STATUS ('OK', [b'Sent (MESSAGES 1 UNSEEN 0 UIDNEXT 2)'])"),
        "{out}"
    );
    let cur: Vec<PathBuf> = std::fs::read_dir(md.join(".Sent/cur"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(cur.len(), 1);
    let name = cur[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(":2,Sa"), "{name}");
    let mtime = std::fs::metadata(&cur[0]).unwrap().modified().unwrap();
    let secs = mtime
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // 2001-09-09 03:46:40 local time: within a day of 1_000_000_000 whatever the zone.
    assert!(secs.abs_diff(1_000_000_000) <= 14 * 3600 + 7200, "{secs}");
    assert_eq!(
        std::fs::read_to_string(md.join(".Sent/dovecot-keywords")).unwrap(),
        "0 $Label1\n"
    );

    // 20 MB through a synchronising literal.
    let pid = s._child.0.id();
    let mut c = s.connect();
    c.run(b"a LOGIN alice password\r\n", "a");
    let base = peak_kib(pid);
    let line = [b'x'; 98];
    let mut msg = b"Subject: big\r\n\r\n".to_vec();
    while msg.len() + 100 <= 20 * 1024 * 1024 {
        msg.extend_from_slice(&line);
        msg.extend_from_slice(b"\r\n");
    }
    c.send(format!("b APPEND INBOX (\\Flagged) {{{}}}\r\n", msg.len()).as_bytes());
    assert_eq!(c.line(), "+ Ready for literal data.\r\n");
    for chunk in msg.chunks(256 * 1024) {
        c.send(chunk);
    }
    let r = c.run(b"\r\n", "b");
    assert!(r.starts_with("b OK [APPENDUID "), "{r}");
    assert!(r.ends_with(" 1] APPEND completed.\r\n"), "{r}");
    let grown = peak_kib(pid).saturating_sub(base);
    assert!(
        grown < 8 * 1024,
        "peak memory grew by {grown} KiB for a 20 MB APPEND"
    );
    let cur: Vec<PathBuf> = std::fs::read_dir(md.join("cur"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(cur.len(), 1, "{cur:?}");
    assert_eq!(std::fs::read(&cur[0]).unwrap(), msg);
    assert_eq!(std::fs::read_dir(md.join("tmp")).unwrap().count(), 0);
    // Over the limit: refused before the data.
    let r = c.run(b"c APPEND INBOX {40000000}\r\n", "c");
    assert_eq!(r, "c NO [TOOBIG] Message too big.\r\n");
}

/// curl's `imap://` URL with no mailbox lists the folders (`LIST "" *`).
#[test]
fn curl_lists_the_folders() {
    let s = Server::start("");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--user", "alice:password"])
        .arg(format!("imap://127.0.0.1:{}/", s.plain))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{out:?}\n{}", s.log());
    for want in [
        "* LIST (\\HasNoChildren) \".\" INBOX",
        "* LIST (\\HasNoChildren \\Sent) \".\" Sent",
        "* LIST (\\HasNoChildren \\Archive) \".\" Archive",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
}

/// mimapd and the peers' Dovecot serving one Maildir list the same folders and the same
/// subscriptions: the `subscriptions` file mimapd writes is the one Dovecot reads.
#[test]
fn dovecot_lists_the_folders_and_subscriptions_mimapd_made() {
    let user = "imapfold1";
    let path = Path::new(&common::peer("PEER_MAIL_DIR")).join(user);
    let _ = std::fs::remove_dir_all(&path);
    Maildir::create(&path).unwrap();
    common::give_to_nobody(&path);
    let s = Server::start_for_peer_user(user);
    let script = r#"
def run(M):
    out = []
    for verb in ("LIST", "LSUB"):
        typ, data = M._simple_command(verb, '""', "*")
        assert typ == "OK", (verb, typ, data)
        for d in M.untagged_responses.pop(verb, []):
            if d is None:
                continue
            d = d.decode()
            name = d.rsplit(" ", 1)[1].strip('"')
            out.append(verb + " " + name)
    return sorted(out)
"#;
    let ours = python(
        &s,
        &format!(
            r#"{script}
M = imaplib.IMAP4("127.0.0.1", PORT)
M.login("{user}", "password")
for n in ["Lists.Rust", "&AMQ-rger", "Projekte.&AMQ-2026"]:
    assert M.create(n)[0] == "OK", n
for n in ["Lists.Rust", "&AMQ-rger", "Gone"]:
    assert M.subscribe(n)[0] == "OK", n
assert M.unsubscribe("Junk")[0] == "OK"
for l in run(M):
    print(l)
M.logout()
"#
        ),
    );
    let theirs = python(
        &s,
        &format!(
            r#"{script}
M = imaplib.IMAP4("127.0.0.1", {port})
M.login("{user}", "password")
for l in run(M):
    print(l)
M.logout()
"#,
            port = common::peer("PEER_IMAP_PORT")
        ),
    );
    assert_eq!(ours, theirs);
    for want in [
        "LIST &AMQ-rger",
        "LIST Projekte",
        "LIST Projekte.&AMQ-2026",
        "LIST Sent",
        "LSUB Lists.Rust",
        "LSUB &AMQ-rger",
        "LSUB Gone",
        "LSUB Archive",
    ] {
        assert!(ours.lines().any(|l| l == want), "{want} in {ours}");
    }
    assert!(!ours.contains("LSUB Junk"), "{ours}");
}

/// An APPEND to the selected mailbox is reported to it (`* 1 EXISTS` before the tagged OK,
/// RFC 3501 §6.3.11), and a folder CREATEd by mimapd can be selected.
#[test]
fn append_to_the_selected_mailbox_reports_exists() {
    let s = Server::start("");
    let mut c = s.connect();
    c.run(b"a LOGIN alice password\r\n", "a");
    let r = c.run(b"b CREATE Work\r\nc SELECT Work\r\n", "c");
    assert!(
        r.contains("* 0 EXISTS\r\n") && r.contains("c OK [READ-WRITE]"),
        "{r}"
    );
    let r = c.run(b"d APPEND Work {10+}\r\nSubject: x\r\n", "d");
    assert!(r.starts_with("* 1 EXISTS\r\n"), "{r}");
    assert!(r.contains("d OK [APPENDUID "), "{r}");
}

/// `allow_symlinked_maildir = true` (a Maildir root that is a symlink, as some sites move
/// mail stores) holds for the whole session: the folder commands and the selected state open
/// the same Maildir with the same rule, so SELECT works where LIST does.
#[test]
fn a_symlinked_maildir_allowed_by_the_config_serves_select_and_list() {
    let s = Server::start("allow_symlinked_maildir = true");
    let mail = s.dir.path().join("mail");
    std::fs::rename(mail.join("alice"), mail.join("alice-real")).unwrap();
    std::os::unix::fs::symlink(mail.join("alice-real"), mail.join("alice")).unwrap();
    let out = python(
        &s,
        r#"
M = imaplib.IMAP4("127.0.0.1", PORT)
M.login("alice", "password")
typ, data = M.list()
assert typ == "OK" and any(b"INBOX" in l for l in data), (typ, data)
typ, data = M.select("INBOX")
assert typ == "OK", (typ, data)
typ, data = M.append("INBOX", None, None, b"Subject: via link\r\n\r\nhi\r\n")
assert typ == "OK", (typ, data)
typ, data = M.search(None, "SUBJECT", "link")
print(typ, data[0].decode())
M.logout()
"#,
    );
    assert_eq!(out.trim(), "OK 1", "{}", s.log());
    assert_eq!(
        std::fs::read_dir(mail.join("alice-real/cur"))
            .unwrap()
            .count()
            + std::fs::read_dir(mail.join("alice-real/new"))
                .unwrap()
                .count(),
        1
    );
}

/// `mimapd serve` under systemd socket activation (LISTEN_FDS, the real
/// systemd-socket-activate): the passed sockets are matched to the listeners by name
/// (`imaps:imap`, the other order than the config's), the config's own port-0 addresses are
/// not bound, and both serve a mailbox (IMAPS and plain with STARTTLS).
#[test]
fn serve_under_systemd_socket_activation() {
    let dir = common::scratch();
    let config = write_config(dir.path(), "", None);
    common::give_to_nobody(dir.path());
    let log = dir.path().join("mimapd.log");
    // systemd-socket-activate needs its ports before it starts (it cannot bind port 0): one
    // taken meanwhile by a parallel test makes it exit, and other ports are tried.
    let (child, [tls, plain]) = common::with_unused_ports(|[tls, plain]| {
        let from = common::log_len(&log);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = common::KillOnDrop(
            Command::new("systemd-socket-activate")
                .arg(format!("--listen=127.0.0.1:{tls}"))
                .arg(format!("--listen=127.0.0.1:{plain}"))
                .arg("--fdname=imaps:imap")
                .arg(common::bin("mimapd"))
                .arg("-c")
                .arg(&config)
                .arg("serve")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(out)
                .spawn()
                .unwrap(),
        );
        let want = [tls, plain].map(|p| format!("Listening on 127.0.0.1:{p} as "));
        let deadline = std::time::Instant::now() + common::START_TIMEOUT;
        loop {
            let text = common::log_since(&log, from);
            if want.iter().all(|w| text.contains(w.as_str())) {
                return Some((child, [tls, plain]));
            }
            if let Ok(Some(st)) = child.try_wait() {
                assert!(common::port_taken(&text), "exited ({st}): {text}");
                return None;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "systemd-socket-activate did not listen: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let s = Server {
        _child: child,
        dir,
        plain,
        tls,
        config,
    };
    let out = python(
        &s,
        r#"
ctx = ssl.create_default_context(cafile=CA)
M = imaplib.IMAP4_SSL("localhost", TLSPORT, ssl_context=ctx)
M.login("alice", "password")
typ, data = M.append("INBOX", None, None, b"Subject: activated\r\n\r\nhi\r\n")
assert typ == "OK", (typ, data)
M.logout()
M = imaplib.IMAP4("127.0.0.1", PORT)
M.starttls(ssl_context=ctx)
M.login("alice", "password")
M.select("INBOX")
typ, data = M.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
print(data[0][1].decode().strip())
M.logout()
"#,
    );
    assert_eq!(out.trim(), "Subject: activated", "{}", s.log());
    let text = s.log();
    for l in [
        format!("listening on 127.0.0.1:{plain} (imap)"),
        format!("listening on 127.0.0.1:{tls} (imaps)"),
    ] {
        assert!(text.contains(&l), "{l}: {text}");
    }
    let listening: Vec<_> = text.lines().filter_map(common::listening_line).collect();
    assert_eq!(listening.len(), 2, "{text}");
}
