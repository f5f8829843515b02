//! SASL XOAUTH2 and OAUTHBEARER (RFC 7628) of the one SASL client (`auth::sasl_client`):
//! mfetch against a Dovecot of its own whose oauth2 passdb asks a local token-introspection
//! endpoint (python3 http.server, `introspection_mode = post`) about each token; msend and
//! mrelayd's relayhost against a scripted aiosmtpd server that checks the exact client message
//! (Dovecot's submission service is not installed with the peers).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mailkit::maildir::Maildir;

/// The token-introspection endpoint (RFC 7662 shape): a POST `token=T` answers
/// `{"active": true, "username": U}` when the file `tokens` has a line `T U`, else
/// `{"active": false}`. Prints its port first.
const INTROSPECT: &str = r#"
import sys, json, urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
tokens = sys.argv[1]
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get('Content-Length') or 0)
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        token = (form.get('token') or [''])[0]
        users = dict(l.split() for l in open(tokens) if l.strip())
        body = {'active': True, 'username': users[token]} if token in users else {'active': False}
        out = json.dumps(body).encode()
        self.send_response(200)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
s = HTTPServer(('127.0.0.1', 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// A Dovecot of this test file: IMAPS and POP3S, users authenticated by OAuth 2.0 tokens only.
struct Dovecot {
    dir: tempfile::TempDir,
    conf: PathBuf,
    imaps: u16,
    pop3s: u16,
    _introspect: common::KillOnDrop,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("dovecot")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .status();
    }
}

/// Reads the first line of a child's stdout (bounded: the child is expected to print at once).
fn first_line(child: &mut std::process::Child) -> String {
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).expect("read");
    line.trim().to_string()
}

fn wait_tcp(port: u16, log: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "dovecot did not listen on {port}:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

impl Dovecot {
    fn start() -> Dovecot {
        let dir = common::scratch();
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "").unwrap();
        let mut py = Command::new("python3")
            .args(["-c", INTROSPECT])
            .arg(&tokens)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let http: u16 = first_line(&mut py).parse().expect("introspection port");
        let introspect = common::KillOnDrop(py);
        let d = dir.path();
        std::fs::create_dir_all(d.join("mail")).unwrap();
        common::give_to_nobody(&d.join("mail"));
        std::fs::write(
            d.join("oauth2.conf.ext"),
            format!(
                "introspection_mode = post\n\
                 introspection_url = http://127.0.0.1:{http}/introspect\n\
                 username_attribute = username\n\
                 active_attribute = active\n\
                 active_value = true\n"
            ),
        )
        .unwrap();
        let log = d.join("dovecot.log");
        let conf = d.join("dovecot.conf");
        let (imaps, pop3s) = common::with_unused_ports(|[imaps, pop3s]| {
            std::fs::write(
                &conf,
                format!(
                    "protocols = imap pop3\nlisten = 127.0.0.1\n\
                     base_dir = {d}/run\nstate_dir = {d}/state\ninstance_name = oauth-{imaps}\n\
                     log_path = {log}\nauth_verbose = yes\n\
                     auth_mechanisms = xoauth2 oauthbearer\n\
                     ssl = required\nssl_cert = <{cert}\nssl_key = <{key}\n\
                     first_valid_uid = 1\nmail_location = maildir:~\n\
                     passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  \
                     args = {d}/oauth2.conf.ext\n}}\n\
                     userdb {{\n  driver = static\n  \
                     args = uid=65534 gid=65534 home={d}/mail/%u\n}}\n\
                     service imap-login {{\n  inet_listener imap {{\n    port = 0\n  }}\n  \
                     inet_listener imaps {{\n    port = {imaps}\n    ssl = yes\n  }}\n}}\n\
                     service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n  \
                     inet_listener pop3s {{\n    port = {pop3s}\n    ssl = yes\n  }}\n}}\n",
                    d = d.display(),
                    log = log.display(),
                    cert = common::peer("PEER_CERT_FILE"),
                    key = common::peer("PEER_KEY_FILE"),
                ),
            )
            .unwrap();
            // The daemon keeps what it inherits open: its output goes to a file, not a pipe.
            let start_log = d.join("dovecot.start.log");
            let status = Command::new("dovecot")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&start_log).unwrap())
                .stderr(std::fs::File::create(&start_log).unwrap())
                .status()
                .expect("dovecot");
            let text = format!(
                "{}{}",
                std::fs::read_to_string(&start_log).unwrap_or_default(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            if common::port_taken(&text) {
                return None;
            }
            assert!(status.success(), "dovecot did not start: {text}");
            Some((imaps, pop3s))
        });
        wait_tcp(imaps, &log);
        wait_tcp(pop3s, &log);
        Dovecot {
            dir,
            conf,
            imaps,
            pop3s,
            _introspect: introspect,
        }
    }

    /// Makes `token` valid for `user` at the introspection endpoint.
    fn grant(&self, token: &str, user: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("tokens"))
            .unwrap();
        writeln!(f, "{token} {user}").unwrap();
    }

    /// `user`'s Maildir on the server, with `count` messages of `tag`.
    fn mailbox(&self, user: &str, tag: &str, count: usize) -> PathBuf {
        let root = self.dir.path().join("mail").join(user);
        let md = Maildir::create(&root).unwrap();
        for i in 1..=count {
            md.deliver(&message(tag, i)).unwrap();
        }
        common::give_to_nobody(&self.dir.path().join("mail"));
        root
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

fn message(tag: &str, i: usize) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.test>\nTo: alice@example.test\nSubject: {tag} {i}\n\
         Message-ID: <{tag}-{i}@example.test>\n\nbody {i}\n"
    )
    .into_bytes()
}

fn count(md: &Path) -> usize {
    common::maildir_count(md)
}

/// One mfetch client: home, state and Maildir in a scratch directory.
struct Fetcher {
    dir: tempfile::TempDir,
}

impl Fetcher {
    fn new() -> Fetcher {
        Fetcher {
            dir: common::scratch(),
        }
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    /// A config with one account `a` of `url`, `auth`, and the password command `cmd`.
    fn config(&self, url: &str, auth: &str, cmd: &str) -> PathBuf {
        let path = self.dir.path().join("mailkit.toml");
        std::fs::write(
            &path,
            format!(
                "[mfetch]\nmaildir = {md:?}\nstate_dir = {st:?}\n\n\
                 [mfetch.accounts.a]\nserver = {url:?}\nauth = {auth:?}\n\
                 password_command = {cmd:?}\nca_file = {ca:?}\ntimeout = 20\n",
                md = self.maildir(),
                st = self.dir.path().join("state"),
                ca = common::peer("PEER_CA_FILE"),
            ),
        )
        .unwrap();
        path
    }

    fn command(&self, config: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/timeout");
        cmd.arg("120")
            .arg(common::bin("mfetch"))
            .arg("-c")
            .arg(config)
            .args(["-v", "-a", "a"])
            .args(extra)
            .env("HOME", self.dir.path())
            .env_remove("MAILKIT_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, config: &Path) -> (i32, String) {
        let out = self.command(config, &[]).output().expect("mfetch");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }
}

#[test]
fn mfetch_imap_and_pop3_with_xoauth2_and_oauthbearer_tokens_from_dovecots_oauth2_passdb() {
    let dc = Dovecot::start();
    dc.grant("tok-imap-1", "oimap");
    dc.grant("tok-pop-1", "opop");
    dc.mailbox("oimap", "oi", 3);
    dc.mailbox("opop", "op", 4);
    for (url, user, good, n) in [
        (
            format!("imaps://oimap@localhost:{}/INBOX", dc.imaps),
            "oimap",
            "tok-imap-1",
            3,
        ),
        (
            format!("pop3s://opop@localhost:{}/", dc.pop3s),
            "opop",
            "tok-pop-1",
            4,
        ),
    ] {
        for auth in ["xoauth2", "oauthbearer"] {
            let f = Fetcher::new();
            // A token the endpoint does not know: refused, exit 77 (EX_NOPERM).
            let (code, text) = f.run(&f.config(&url, auth, "echo not-a-token"));
            assert_eq!(code, 77, "{user} {auth} with a bad token: {text}");
            assert!(text.contains("authentication failed"), "{text}");
            assert_eq!(count(&f.maildir()), 0);
            // The valid token: every message fetched.
            let (code, text) = f.run(&f.config(&url, auth, &format!("echo {good}")));
            assert_eq!(code, 0, "{user} {auth}: {text}\n{}", dc.log());
            assert_eq!(count(&f.maildir()), n, "{text}");
        }
    }
    // Dovecot offers nothing but XOAUTH2 and OAUTHBEARER, so each login above was one of them.
    assert!(!dc.log().contains("Fatal"), "{}", dc.log());
}

#[test]
fn mfetch_idle_gets_a_fresh_token_when_the_server_refuses_the_old_one() {
    let dc = Dovecot::start();
    dc.grant("fresh-token", "oidle");
    let root = dc.mailbox("oidle", "idle", 1);
    for (url, poll) in [
        (format!("imaps://oidle@localhost:{}/INBOX", dc.imaps), None),
        (format!("pop3s://oidle@localhost:{}/", dc.pop3s), Some("1")),
    ] {
        let f = Fetcher::new();
        // The password command's first run prints an expired token, the next ones a fresh one.
        let flag = f.dir.path().join("ran");
        let cmd = format!(
            "if [ -e {0} ]; then echo fresh-token; else touch {0}; echo expired-token; fi",
            flag.display()
        );
        let config = f.config(&url, "oauthbearer", &cmd);
        let log = f.dir.path().join("idle.log");
        let mut extra = vec!["--idle"];
        if let Some(p) = poll {
            extra.extend(["--poll", p]);
        }
        let mut child = common::KillOnDrop(
            f.command(&config, &extra)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("mfetch --idle"),
        );
        let md = f.maildir();
        let wait_for = |n: usize, child: &mut common::KillOnDrop| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while count(&md) < n {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "mfetch --idle ended: {said}"
                );
                assert!(Instant::now() < deadline, "{n} not fetched: {said}");
                std::thread::sleep(Duration::from_millis(100));
            }
        };
        let before = count(&root);
        wait_for(before, &mut child);
        let md_srv = Maildir::open(&root).unwrap();
        md_srv.deliver(&message("idle", 100 + before)).unwrap();
        common::give_to_nobody(&root);
        wait_for(before + 1, &mut child);
        let said = std::fs::read_to_string(&log).unwrap();
        assert!(said.contains("fresh token"), "{said}");
        assert_eq!(said.matches("fresh token").count(), 1, "{said}");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "no stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(0));
    }
    // A command that only ever prints a refused token: one refresh, then 77.
    let f = Fetcher::new();
    let config = f.config(
        &format!("imaps://oidle@localhost:{}/INBOX", dc.imaps),
        "xoauth2",
        "echo expired-token",
    );
    let out = f.command(&config, &["--idle"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{said}");
    assert_eq!(said.matches("fresh token").count(), 1, "{said}");
}

/// A scripted SMTP server (aiosmtpd) with STARTTLS and AUTH XOAUTH2 and OAUTHBEARER: accepts
/// exactly the initial response RFC 7628 §3.1 (or Google's XOAUTH2 format) gives for
/// argv's user, token, host and port; anything else gets the error challenge of RFC 7628
/// §3.2.2, and what the client answered to it goes, as hex, into `acks`. Accepted messages
/// are appended to `messages`, each after a line `MECH`. Prints its port first.
const SMTP_SERVER: &str = r#"
import asyncio, ssl, sys, os
from aiosmtpd.smtp import SMTP, AuthResult
cert, key, d, user, token, host = sys.argv[1:7]
def want(mech, port):
    if mech == 'XOAUTH2':
        return ('user=%s\x01auth=Bearer %s\x01\x01' % (user, token)).encode()
    return ('n,a=%s,\x01host=%s\x01port=%d\x01auth=Bearer %s\x01\x01' % (user, host, port, token)).encode()
class H:
    async def check(self, server, args, mech):
        import base64
        got = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth('')
        port = server.transport.get_extra_info('sockname')[1]
        if got == want(mech, port):
            server.session.mech = mech
            return AuthResult(success=True)
        ack = await server.challenge_auth('{"status":"invalid_token","scope":"mail"}')
        with open(os.path.join(d, 'acks'), 'a') as f:
            f.write('%s %s\n' % (mech, ack.hex() if isinstance(ack, bytes) else 'missing'))
        return AuthResult(success=False, handled=False, message='535 5.7.8 token refused')
    async def auth_XOAUTH2(self, server, args):
        return await self.check(server, args, 'XOAUTH2')
    async def auth_OAUTHBEARER(self, server, args):
        return await self.check(server, args, 'OAUTHBEARER')
    async def handle_DATA(self, server, session, envelope):
        with open(os.path.join(d, 'messages'), 'ab') as f:
            f.write(getattr(session, 'mech', 'NONE').encode() + b'\n' + envelope.original_content)
        return '250 OK'
async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(lambda: SMTP(H(), hostname='oauth.example.test',
        tls_context=ctx, require_starttls=True, decode_data=False, auth_require_tls=True,
        auth_exclude_mechanism=['PLAIN', 'LOGIN']), '127.0.0.1', 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"#;

/// [`SMTP_SERVER`] started for `user` and `token`, in a scratch directory.
fn smtp_server(user: &str, token: &str) -> (tempfile::TempDir, u16, common::KillOnDrop) {
    let dir = common::scratch();
    let mut py = Command::new("/usr/bin/python3")
        .args(["-c", SMTP_SERVER])
        .arg(common::peer("PEER_CERT_FILE"))
        .arg(common::peer("PEER_KEY_FILE"))
        .arg(dir.path())
        .args([user, token, "localhost"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 aiosmtpd");
    let port: u16 = first_line(&mut py).parse().expect("smtp port");
    (dir, port, common::KillOnDrop(py))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn msend_authenticates_with_xoauth2_and_oauthbearer_and_a_refused_token_exits_77() {
    let (srv, port, _child) = smtp_server("me@example.test", "good-token");
    let home = common::scratch();
    for mech in ["xoauth2", "oauthbearer"] {
        for (token, want) in [("bad-token", 77), ("good-token", 0)] {
            let config = home.path().join("mailkit.toml");
            std::fs::write(
                &config,
                format!(
                    "[msend]\ndefault = \"o\"\n[msend.accounts.o]\nserver = \"localhost\"\n\
                     port = {port}\ntls = \"starttls\"\nuser = \"me@example.test\"\n\
                     auth = {mech:?}\npassword_command = \"echo {token}\"\n\
                     from = \"me@example.test\"\nca_file = {ca:?}\n",
                    ca = common::peer("PEER_CA_FILE"),
                ),
            )
            .unwrap();
            let out = common::run_with_input(
                Command::new(common::bin("msend"))
                    .env("HOME", home.path())
                    .env_remove("MAILKIT_CONFIG")
                    .env_remove("MSEND_PASSWORD")
                    .args(["--timeout", "10", "-C"])
                    .arg(&config)
                    .arg("you@example.test"),
                format!("Subject: {mech} {token}\n\nhello\n").as_bytes(),
            );
            let said = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(want), "{mech} {token}: {said}");
            if want == 77 {
                assert!(said.contains("invalid_token"), "{said}");
            }
        }
    }
    let messages = read(&srv.path().join("messages"));
    assert!(messages.starts_with("XOAUTH2\n"), "{messages}");
    assert!(messages.contains("OAUTHBEARER\n"), "{messages}");
    assert!(
        messages.contains("Subject: oauthbearer good-token"),
        "{messages}"
    );
    // The error challenge was answered: XOAUTH2 with an empty response, OAUTHBEARER with %x01.
    assert_eq!(read(&srv.path().join("acks")), "XOAUTH2 \nOAUTHBEARER 01\n");
}

#[test]
fn mrelayd_relayhost_authenticates_with_oauthbearer() {
    let (srv, port, _child) = smtp_server("relay@example.test", "relay-token");
    let dir = common::scratch();
    let d = dir.path().display();
    let config = dir.path().join("mailkit.toml");
    std::fs::write(
        dir.path().join("passwd"),
        "alice:{PLAIN}password::::::\npostmaster:{PLAIN}password::::::\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        common::with_run_as(&format!(
            "hostname = \"mx.example.test\"\nstate_dir = \"{d}/state\"\n\
             [users]\npasswd_file = \"{d}/passwd\"\nmail_location = \"{d}/mail/%u\"\n\
             domains = [\"example.test\"]\n\
             [mrelayd]\nlisten = [ {{ address = \"127.0.0.1:0\", role = \"smtp\" }} ]\n\
             [mrelayd.remote]\nrelayhost = \"localhost:{port}\"\nrelayhost_tls = \"starttls\"\n\
             ca_file = {ca:?}\nrelayhost_user = \"relay@example.test\"\n\
             relayhost_auth = \"oauthbearer\"\nrelayhost_password_command = \"echo relay-token\"\n",
            ca = common::peer("PEER_CA_FILE"),
        )),
    )
    .unwrap();
    let log = dir.path().join("mrelayd.log");
    let (_daemon, listening) = common::start_mrelayd(&config, &log, &["smtp"]);
    let out = common::run_with_input(
        Command::new(common::bin("msend"))
            .env("HOME", dir.path())
            .env_remove("MAILKIT_CONFIG")
            .args([
                "--timeout",
                "10",
                "--no-tls",
                "-f",
                "alice@example.test",
                "--server",
            ])
            .arg(format!("127.0.0.1:{}", listening.port("smtp")))
            .arg("someone@remote.test"),
        b"Subject: via the relayhost\n\nhello\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let messages = srv.path().join("messages");
    while !read(&messages).contains("Subject: via the relayhost") {
        assert!(Instant::now() < deadline, "not relayed:\n{}", read(&log));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        read(&messages).starts_with("OAUTHBEARER\n"),
        "{}",
        read(&messages)
    );
    assert_eq!(read(&srv.path().join("acks")), "", "the token was refused");
}
