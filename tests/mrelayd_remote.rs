//! mrelayd remote delivery (issue 5) end to end, against real peers on loopback: a private
//! dnsmasq per test with its own zone (MX, implicit MX, null MX, NXDOMAIN), receivers on
//! 127.55.T.N (python3 aiosmtpd `tests/remote/receiver.py`, Postfix's smtp-sink, a second
//! mrelayd, the peers' Postfix submission as a smarthost), and DSNs read back from the sender's
//! Maildir with python3's `email` module (`tests/remote/dsn.py`).
//!
//! Every MX receiver of one test listens on the same port (the config's `[mrelayd.remote]
//! port`) on its own loopback address; each test has its own third octet T in 127.55.T.N
//! (Linux routes all of 127/8 to lo), so tests running in parallel never meet. 127.55.T.1 is
//! always left without a listener: connecting to it is refused (the "first MX down" case).

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

const PY: &str = "/usr/bin/python3";
const SMTP_SINK: &str = "/usr/sbin/smtp-sink";
/// Upper bound for anything a test waits for (a delivery, a retry, a DSN).
const WAIT: Duration = Duration::from_secs(60);

/// A script under tests/remote/.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/remote")
        .join(name)
}

/// Loopback address 127.55.`test`.`host`: one third octet per test.
fn ip(test: u8, host: u8) -> String {
    format!("127.55.{test}.{host}")
}

/// A TCP port nobody uses on any address, so that "nothing listens on 127.55.T.1:PORT" holds
/// and receivers can bind it on their address.
fn remote_port() -> u16 {
    common::port_free_everywhere()
}

fn token(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{tag}-{}-{nanos}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// Receivers.

/// `tests/remote/receiver.py` (aiosmtpd) on one address: stores messages byte-exact and logs
/// connections and RCPT replies. Killed on drop.
struct Receiver {
    child: Child,
    dir: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a [`Receiver`] answers.
#[derive(Default)]
struct Behaviour {
    /// Fixed RCPT replies per address (e.g. a 550 5.1.1).
    rcpt: Vec<(String, String)>,
    /// Every other recipient gets 451 while this file does not exist.
    tempfail_until: Option<PathBuf>,
    /// Greeting 421 (and close) while this file does not exist.
    greeting_421_until: Option<PathBuf>,
    /// Advertise DSN and accept its parameters.
    dsn: bool,
    /// Refuse EHLO (502): HELO only.
    no_ehlo: bool,
    /// Wait this long before answering the message body.
    data_delay_ms: u64,
    /// Do not offer SMTPUTF8.
    no_smtputf8: bool,
    /// Offer STARTTLS with the peers' certificate.
    tls: bool,
}

impl Behaviour {
    /// The default behaviour changed by `f`, e.g. `Behaviour::with(|b| b.tls = true)`.
    fn with(f: impl FnOnce(&mut Behaviour)) -> Behaviour {
        let mut b = Behaviour::default();
        f(&mut b);
        b
    }
}

impl Receiver {
    fn start(ip: &str, port: u16, b: Behaviour) -> Receiver {
        Receiver::start_on(&[format!("{ip}:{port}")], b)
    }

    /// One receiver process listening on several `IP:PORT`s (one shared event log).
    fn start_on(listen: &[String], b: Behaviour) -> Receiver {
        let scratch = common::scratch();
        let dir = scratch.path().join("rx");
        let mut cmd = Command::new(PY);
        cmd.arg(script("receiver.py")).arg("--dir").arg(&dir);
        for l in listen {
            cmd.arg("--listen").arg(l);
        }
        if b.tls {
            cmd.arg("--cert")
                .arg(common::peer("PEER_CERT_FILE"))
                .arg("--key")
                .arg(common::peer("PEER_KEY_FILE"));
        }
        for (addr, reply) in &b.rcpt {
            cmd.arg("--rcpt").arg(format!("{addr}={reply}"));
        }
        if let Some(f) = &b.tempfail_until {
            cmd.arg("--tempfail-until").arg(f);
        }
        if let Some(f) = &b.greeting_421_until {
            cmd.arg("--greeting-421-until").arg(f);
        }
        if b.dsn {
            cmd.arg("--dsn");
        }
        if b.no_ehlo {
            cmd.arg("--no-ehlo");
        }
        if b.no_smtputf8 {
            cmd.arg("--no-smtputf8");
        }
        if b.data_delay_ms > 0 {
            cmd.arg(format!("--data-delay-ms={}", b.data_delay_ms));
        }
        let log = std::fs::File::create(scratch.path().join("receiver.log")).unwrap();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let ready = common::wait_for(Duration::from_secs(20), || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "receiver on {listen:?} exited ({st}): {}",
                    std::fs::read_to_string(scratch.path().join("receiver.log"))
                        .unwrap_or_default()
                );
            }
            dir.join("ready").exists().then_some(())
        });
        assert!(ready.is_some(), "receiver on {listen:?} did not start");
        Receiver {
            child,
            dir,
            _scratch: scratch,
        }
    }

    fn jsonl(&self, name: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// One record per message received.
    fn envelopes(&self) -> Vec<Value> {
        self.jsonl("envelopes.jsonl")
    }

    /// The stored bytes of one message.
    fn bytes(&self, env: &Value) -> Vec<u8> {
        std::fs::read(self.dir.join(env["file"].as_str().unwrap())).unwrap()
    }

    /// The stored bytes of one message as (lossy) text.
    fn text(&self, env: &Value) -> String {
        String::from_utf8_lossy(&self.bytes(env)).into_owned()
    }

    /// Waits until at least `n` messages arrived; returns all records.
    fn wait_messages(&self, n: usize) -> Vec<Value> {
        common::wait_for(WAIT, || {
            let v = self.envelopes();
            (v.len() >= n).then_some(v)
        })
        .unwrap_or_else(|| self.envelopes())
    }

    /// Waits until `n` messages arrived and asserts that exactly `n` did; the failure message
    /// shows `m`'s queue and log.
    fn expect_messages(&self, n: usize, m: &Mrelayd) -> Vec<Value> {
        let envs = self.wait_messages(n);
        assert_eq!(
            envs.len(),
            n,
            "expected {n} message(s) at the receiver\nqueue: {}\nlog:\n{}",
            m.queue(),
            m.log_tail()
        );
        envs
    }

    /// TCP connections accepted so far.
    fn sessions(&self) -> usize {
        self.jsonl("events.jsonl")
            .iter()
            .filter(|e| e["event"] == "connect")
            .count()
    }

    /// The most transactions (MAIL accepted .. reply to the body pending) open at once.
    fn max_in_flight(&self) -> usize {
        let (mut now, mut max) = (0usize, 0usize);
        for e in self.jsonl("events.jsonl") {
            if e["event"] == "mail" {
                now += 1;
                max = max.max(now);
            } else if e["event"] == "data-done" {
                now = now.saturating_sub(1);
            }
        }
        max
    }

    /// RCPT commands seen for `addr`.
    fn rcpt_attempts(&self, addr: &str) -> usize {
        self.jsonl("events.jsonl")
            .iter()
            .filter(|e| e["event"] == "rcpt" && e["address"] == addr)
            .count()
    }

    /// Waits until at least `n` RCPT commands for `addr` were seen; false on timeout.
    fn wait_rcpt_attempts(&self, addr: &str, n: usize) -> bool {
        common::wait_for(WAIT, || (self.rcpt_attempts(addr) >= n).then_some(())).is_some()
    }
}

/// Postfix's smtp-sink on `ip:port`, dumping every transaction into a file under its dir.
struct Sink {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sink {
    fn start(ip: &str, port: u16) -> Sink {
        let dir = common::scratch();
        // smtp-sink drops to nobody after binding: its dump directory must be nobody's.
        let dumps = dir.path().join("dump");
        std::fs::create_dir(&dumps).unwrap();
        Command::new("chown")
            .arg("65534:65534")
            .arg(&dumps)
            .status()
            .unwrap();
        let child = Command::new(SMTP_SINK)
            .args(["-u", "nobody", "-d"])
            .arg(format!("{}/%H%M%S.", dumps.display()))
            .arg(format!("{ip}:{port}"))
            .arg("10")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink (postfix) must be installed");
        let up = common::wait_for(Duration::from_secs(10), || {
            // A probe connection; smtp-sink dumps nothing for a session without DATA.
            TcpStream::connect((ip, port)).ok().map(|_| ())
        });
        assert!(up.is_some(), "smtp-sink on {ip}:{port} did not start");
        Sink { child, dir }
    }

    /// Contents of every dump file.
    fn dumps(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path().join("dump")) {
            for e in rd.flatten() {
                if let Ok(b) = std::fs::read(e.path()) {
                    out.push(String::from_utf8_lossy(&b).into_owned());
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// mrelayd under test (adapted from tests/mrelayd.rs: own listen addresses, remote section).

/// Test users of every mrelayd here: alice, bob (password `password`).
const PASSWD: &str = "alice:{PLAIN}password::::::\nbob:{PLAIN}password::::::\n";

/// The sender of every test message and the user whose Maildir gets the DSNs.
const ALICE: &str = "alice@example.test";

/// What one mrelayd instance looks like.
struct Setup<'a> {
    hostname: &'a str,
    /// Local domain (users alice and bob).
    domain: &'a str,
    /// Address of the `smtp` role listener, port 0 for any (the submission listener is on
    /// 127.0.0.1, port 0).
    smtp_listen: String,
    trusted_networks: &'a str,
    /// Lines in `[mrelayd.remote]` (and tables after it).
    remote: String,
}

impl Setup<'_> {
    /// mrelayd "A": mx.example.test, local domain example.test, relays for 127.0.0.0/8,
    /// MX lookups via `dns`, MX port `port`.
    fn a(dns: &common::Dns, port: u16, remote_extra: &str) -> Setup<'static> {
        Setup {
            hostname: "mx.example.test",
            domain: "example.test",
            smtp_listen: "127.0.0.1:0".to_string(),
            trusted_networks: "[\"127.0.0.0/8\"]",
            remote: format!(
                "resolver = \"{}\"\nport = {port}\n{remote_extra}\n",
                dns.addr()
            ),
        }
    }
}

/// A running `mrelayd serve` (killed on drop).
struct Mrelayd {
    dir: PathBuf,
    config: PathBuf,
    /// The `smtp` listener's address as it printed it (`IP:PORT`).
    smtp: String,
    _child: common::KillOnDrop,
    log: PathBuf,
}

impl Mrelayd {
    /// Starts it and waits for its listeners; `Err` with its log when it does not listen
    /// (e.g. [`common::port_taken`] for a fixed `smtp_listen`).
    fn try_start(dir: &Path, s: Setup) -> Result<Mrelayd, String> {
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, PASSWD).unwrap();
        let aliases = dir.join("aliases");
        std::fs::write(&aliases, "postmaster: alice\nmailer-daemon: alice\n").unwrap();
        let config = dir.join("mailkit.toml");
        let text = format!(
            "hostname = \"{hostname}\"\nstate_dir = \"{state}\"\n\
[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
[users]\npasswd_file = \"{passwd}\"\nmail_location = \"{mail}/%n\"\ndomains = [\"{domain}\"]\n\
[mrelayd]\ntrusted_networks = {trusted}\naliases = \"{aliases}\"\n\
listen = [ {{ address = \"{smtp}\", role = \"smtp\" }}, {{ address = \"127.0.0.1:0\", role = \"submission\" }} ]\n\
\n[mrelayd.remote]\n{remote}\n",
            hostname = s.hostname,
            state = dir.join("state").display(),
            cert = common::peer("PEER_CERT_FILE"),
            key = common::peer("PEER_KEY_FILE"),
            passwd = passwd.display(),
            mail = dir.join("mail").display(),
            domain = s.domain,
            trusted = s.trusted_networks,
            aliases = aliases.display(),
            smtp = s.smtp_listen,
            remote = s.remote,
        );
        std::fs::write(&config, common::with_run_as(&text)).unwrap();
        let log = dir.join("mrelayd.log");
        let (child, listening) = common::try_start_daemon(
            &mut common::mrelayd_serve(&config),
            &log,
            &["smtp", "submission"],
        )?;
        Ok(Mrelayd {
            dir: dir.to_path_buf(),
            config,
            smtp: listening.addr("smtp").to_string(),
            _child: child,
            log,
        })
    }

    fn smtp_port(&self) -> u16 {
        self.smtp.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log, for failure messages.
    fn log_tail(&self) -> String {
        let t = self.log_text();
        let lines: Vec<&str> = t.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Asserts that the log (as it is now) contains `needle`.
    fn assert_logged(&self, needle: &str) {
        assert!(self.log_text().contains(needle), "{}", self.log_tail());
    }

    fn maildir(&self, user: &str) -> PathBuf {
        self.dir.join("mail").join(user)
    }

    /// Runs `mrelayd -c CONFIG args...`.
    fn cli(&self, args: &[&str]) -> Output {
        common::mrelayd_cli(&self.config, args)
    }

    /// `mrelayd queue` output.
    fn queue(&self) -> String {
        let o = self.cli(&["queue"]);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// Waits until `mrelayd queue` says the queue is empty.
    fn wait_queue_empty(&self) {
        let q = common::wait_for(WAIT, || {
            let q = self.queue();
            q.contains("Mail queue is empty").then_some(q)
        });
        assert!(
            q.is_some(),
            "queue not empty: {}\n{}",
            self.queue(),
            self.log_tail()
        );
    }

    /// Waits until `mrelayd queue` output satisfies `ok`; returns it, or fails with `what`.
    fn wait_queue(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        common::wait_for(WAIT, || {
            let q = self.queue();
            ok(&q).then_some(q)
        })
        .unwrap_or_else(|| panic!("{what}: {}\n{}", self.queue(), self.log_tail()))
    }

    /// Waits until the log contains `needle`.
    fn wait_log(&self, needle: &str) -> String {
        common::wait_for(WAIT, || {
            let t = self.log_text();
            t.contains(needle).then_some(t)
        })
        .unwrap_or_else(|| panic!("log never showed {needle:?}:\n{}", self.log_tail()))
    }

    /// Waits for the log line of queue id `id` and recipient `rcpt`, and asserts that it says
    /// `status=sent` and contains `relay` (the MX or relayhost actually used).
    fn assert_sent_via(&self, id: &str, rcpt: &str, relay: &str) {
        let to = format!("{id}: to=<{rcpt}>");
        let log = self.wait_log(&to);
        assert!(
            log.lines()
                .any(|l| l.contains(&to) && l.contains("status=sent") && l.contains(relay)),
            "no status=sent line for {to} with {relay}:\n{log}"
        );
    }

    /// Starts a submission from alice to `rcpts` (see [`Submission`]).
    fn mail<'a>(&'a self, rcpts: &[&'a str]) -> Submission<'a> {
        Submission {
            m: self,
            from: ALICE,
            header_from: None,
            rcpts: rcpts.to_vec(),
            to: None,
            body: "x\r\n",
            mail_opts: Vec::new(),
            rcpt_opts: Vec::new(),
        }
    }

    /// Submits the messages (CRLF bytes) in one SMTP session to the smtp listener with
    /// python's smtplib; returns the queue ids.
    fn send(
        &self,
        from: &str,
        rcpts: &[&str],
        msgs: &[Vec<u8>],
        mail_opts: &[&str],
        rcpt_opts: &[&str],
    ) -> Vec<String> {
        let tmp = common::scratch();
        let mut cmd = Command::new(PY);
        cmd.arg(script("send.py"))
            .arg(self.smtp_port().to_string())
            .arg(from)
            .arg(rcpts.join(","));
        for (i, m) in msgs.iter().enumerate() {
            let p = tmp.path().join(format!("m{i}.eml"));
            std::fs::write(&p, m).unwrap();
            cmd.arg(p);
        }
        for o in mail_opts {
            cmd.arg(format!("--mail-opt={o}"));
        }
        for o in rcpt_opts {
            cmd.arg(format!("--rcpt-opt={o}"));
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "send.py: {text}\n{}", self.log_tail());
        text.lines()
            .filter(|l| l.starts_with("QUEUED "))
            .map(|l| {
                let i = l.find("queued as ").expect(l) + "queued as ".len();
                l[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect()
            })
            .collect()
    }

    /// Every message in alice's Maildir (the DSNs: postmaster and mailer-daemon go there too),
    /// parsed.
    fn dsns(&self) -> Vec<Value> {
        parsed(&self.maildir("alice"))
    }

    /// Waits until alice's Maildir holds at least `n` messages, then returns them parsed.
    fn wait_dsns(&self, n: usize) -> Vec<Value> {
        let dir = self.maildir("alice");
        common::wait_for(WAIT, || (maildir_files(&dir).len() >= n).then_some(()));
        let v = parsed(&dir);
        assert!(
            v.len() >= n,
            "expected {n} message(s) in alice's Maildir, found {}\nqueue: {}\nlog:\n{}",
            v.len(),
            self.queue(),
            self.log_tail()
        );
        v
    }

    /// Waits until a DSN returning the message with subject `tok` is in alice's Maildir.
    fn wait_dsn_for(&self, tok: &str) -> Value {
        common::wait_for(WAIT, || {
            self.dsns()
                .into_iter()
                .find(|d| d["returned"]["subject"] == tok)
        })
        .unwrap_or_else(|| panic!("no DSN returning {tok}:\n{}", self.log_tail()))
    }

    /// Asserts that alice's Maildir is empty: no DSN (`why` says why none is expected).
    fn assert_no_dsn(&self, why: &str) {
        assert!(maildir_files(&self.maildir("alice")).is_empty(), "{why}");
    }
}

/// One SMTP session to mrelayd's smtp listener, built up by a test: alice sends one small
/// message (subject: a fresh token) unless told otherwise.
struct Submission<'a> {
    m: &'a Mrelayd,
    /// Envelope sender (`<>` for the null sender).
    from: &'a str,
    /// The message's From: (default: the envelope sender).
    header_from: Option<&'a str>,
    rcpts: Vec<&'a str>,
    /// The message's To: (default: the first recipient).
    to: Option<&'a str>,
    body: &'a str,
    mail_opts: Vec<&'a str>,
    rcpt_opts: Vec<&'a str>,
}

/// What a [`Submission`] sent: the subject token and the queue ids.
struct Sent {
    tok: String,
    ids: Vec<String>,
}

impl Sent {
    /// The queue id of the (first) message.
    fn id(&self) -> &str {
        &self.ids[0]
    }
}

impl<'a> Submission<'a> {
    fn from(mut self, from: &'a str, header_from: &'a str) -> Self {
        self.from = from;
        self.header_from = Some(header_from);
        self
    }

    fn to(mut self, to: &'a str) -> Self {
        self.to = Some(to);
        self
    }

    fn body(mut self, body: &'a str) -> Self {
        self.body = body;
        self
    }

    /// ESMTP parameters of MAIL FROM.
    fn mail_opts(mut self, opts: &[&'a str]) -> Self {
        self.mail_opts = opts.to_vec();
        self
    }

    /// ESMTP parameters of every RCPT TO.
    fn rcpt_opts(mut self, opts: &[&'a str]) -> Self {
        self.rcpt_opts = opts.to_vec();
        self
    }

    fn message(&self, subject: &str) -> Vec<u8> {
        message(
            self.header_from.unwrap_or(self.from),
            self.to.unwrap_or(self.rcpts[0]),
            subject,
            self.body,
        )
    }

    /// Sends one message with subject `token(tag)`.
    fn send(self, tag: &str) -> Sent {
        let tok = token(tag);
        let ids = self.send_bytes(&[self.message(&tok)]);
        Sent { tok, ids }
    }

    /// Sends `n` messages with subjects `TOKEN-0` .. in one session; `tok` is `TOKEN`.
    fn send_many(self, tag: &str, n: usize) -> Sent {
        let tok = token(tag);
        let msgs: Vec<Vec<u8>> = (0..n)
            .map(|i| self.message(&format!("{tok}-{i}")))
            .collect();
        let ids = self.send_bytes(&msgs);
        Sent { tok, ids }
    }

    /// Sends `msgs` as they are; returns the queue ids.
    fn send_bytes(&self, msgs: &[Vec<u8>]) -> Vec<String> {
        self.m.send(
            self.from,
            &self.rcpts,
            msgs,
            &self.mail_opts,
            &self.rcpt_opts,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// One test's world.

/// What every test starts from: its third octet `t` (addresses 127.55.t.N), the MX port all
/// its receivers listen on, a private dnsmasq with its zone, and a scratch dir for flag files
/// and the mrelayd instances. Receivers and mrelayds are started from it and dropped before it.
struct World {
    t: u8,
    port: u16,
    dns: common::Dns,
    dir: tempfile::TempDir,
}

impl World {
    /// A world whose DNS serves `zone` (dnsmasq lines, built with [`ip`]`(T, n)`).
    fn new(t: u8, zone: &str) -> World {
        let port = remote_port();
        World {
            t,
            port,
            dns: common::Dns::start(zone),
            dir: common::scratch(),
        }
    }

    /// a.test has one MX, mx.a.test at 127.55.t.2.
    fn one_mx(t: u8) -> World {
        World::new(
            t,
            &format!(
                "mx-host=a.test,mx.a.test,10\nhost-record=mx.a.test,{}",
                ip(t, 2)
            ),
        )
    }

    /// a.test has two MXs: mx1.a.test (preference 10) at 127.55.t.`h1` and mx2.a.test (20) at
    /// 127.55.t.`h2`.
    fn two_mx(t: u8, h1: u8, h2: u8) -> World {
        World::new(
            t,
            &format!(
                "mx-host=a.test,mx1.a.test,10\nmx-host=a.test,mx2.a.test,20\n\
                 host-record=mx1.a.test,{}\nhost-record=mx2.a.test,{}",
                ip(t, h1),
                ip(t, h2)
            ),
        )
    }

    fn ip(&self, host: u8) -> String {
        ip(self.t, host)
    }

    /// `127.55.t.host:PORT`.
    fn addr(&self, host: u8) -> String {
        format!("{}:{}", self.ip(host), self.port)
    }

    /// `[127.55.t.host]:PORT`, as the log names a relay.
    fn at(&self, host: u8) -> String {
        format!("[{}]:{}", self.ip(host), self.port)
    }

    /// A receiver on 127.55.t.`host`, the MX port.
    fn receiver(&self, host: u8, b: Behaviour) -> Receiver {
        Receiver::start(&self.ip(host), self.port, b)
    }

    /// A receiver on 127.55.t.`host` that answers 451 to every recipient, for ever.
    fn tempfailing_receiver(&self, host: u8) -> Receiver {
        let never = self.flag("never-created");
        self.receiver(host, Behaviour::with(|b| b.tempfail_until = Some(never)))
    }

    /// smtp-sink on 127.55.t.`host`, the MX port.
    fn sink(&self, host: u8) -> Sink {
        Sink::start(&self.ip(host), self.port)
    }

    /// A path in the scratch dir that does not exist until the test creates it.
    fn flag(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// [`Setup::a`] with this world's DNS and MX port.
    fn setup_a(&self, remote_extra: &str) -> Setup<'static> {
        Setup::a(&self.dns, self.port, remote_extra)
    }

    /// mrelayd A with `remote_extra` in `[mrelayd.remote]`.
    fn mrelayd(&self, remote_extra: &str) -> Mrelayd {
        self.start("m", self.setup_a(remote_extra))
    }

    /// An mrelayd as `s` says, in its own directory `name` of the scratch dir.
    fn start(&self, name: &str, s: Setup) -> Mrelayd {
        self.try_start(name, s).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`World::start`], `Err` with the log when it does not listen (a retry may reuse `name`).
    fn try_start(&self, name: &str, s: Setup) -> Result<Mrelayd, String> {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Mrelayd::try_start(&dir, s)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading what arrived.

/// Files in `<maildir>/new` and `cur`.
fn maildir_files(maildir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(maildir.join(sub)) {
            for e in rd.flatten() {
                if let Ok(b) = std::fs::read(e.path()) {
                    out.push(b);
                }
            }
        }
    }
    out
}

/// Every message of a Maildir parsed by python3's email module (`tests/remote/dsn.py`).
fn parsed(maildir: &Path) -> Vec<Value> {
    let out = Command::new(PY)
        .arg(script("dsn.py"))
        .arg(maildir)
        .output()
        .unwrap();
    assert!(out.status.success(), "dsn.py: {out:?}");
    match serde_json::from_slice::<Value>(&out.stdout).unwrap() {
        Value::Array(v) => v,
        v => panic!("dsn.py: {v}"),
    }
}

/// The DSN among `dsns` that returns the message with subject `tok`.
fn dsn_for<'a>(dsns: &'a [Value], tok: &str) -> &'a Value {
    dsns.iter()
        .find(|d| d["returned"]["subject"] == tok)
        .unwrap_or_else(|| panic!("no DSN returning {tok}: {dsns:#?}"))
}

/// A small message with `subject`, CRLF line endings.
fn message(from: &str, to: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@sender.test>\r\n\r\n{body}"
    )
    .into_bytes()
}

/// A receiver record's ESMTP parameters (`mail_options`/`rcpt_options`), upper-cased
/// (aiosmtpd upper-cases some of the parameters it records).
fn options(env: &Value, key: &str) -> Vec<String> {
    env[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_ascii_uppercase())
        .collect()
}

/// Header field `name` of a parsed message (`dsn.py` "headers"/"per_message"/recipient maps),
/// case-insensitively.
fn field<'a>(map: &'a Value, name: &str) -> Option<&'a str> {
    map.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// `rfc822; x@a.test` and `rfc822;x@a.test` compare equal (RFC 3464 allows the space).
fn norm(v: &str) -> String {
    v.split(';')
        .map(|p| p.trim().to_string())
        .collect::<Vec<_>>()
        .join(";")
        .to_ascii_lowercase()
}

/// Asserts the MIME types of a parsed DSN's parts, in order.
fn assert_parts(d: &Value, parts: &[&str]) {
    assert_eq!(d["parts"], serde_json::json!(parts), "{d:#}");
}

/// Checks the top of a failure DSN built by mrelayd A for `sender`.
fn assert_failure_dsn_top(d: &Value, sender: &str) {
    let h = &d["headers"];
    assert_eq!(d["content_type"], "multipart/report", "{d:#}");
    assert_eq!(d["report_type"], "delivery-status", "{d:#}");
    assert_eq!(
        field(h, "Subject"),
        Some("Undelivered Mail Returned to Sender"),
        "{d:#}"
    );
    assert!(
        field(h, "From")
            .unwrap_or("")
            .contains("MAILER-DAEMON@mx.example.test"),
        "{d:#}"
    );
    assert!(field(h, "To").unwrap_or("").contains(sender), "{d:#}");
    assert_eq!(field(h, "Auto-Submitted"), Some("auto-replied"), "{d:#}");
    // Delivered locally from the null sender (RFC 3461 §6.2: DSNs are sent with MAIL FROM:<>).
    assert_eq!(field(h, "Return-Path"), Some("<>"), "{d:#}");
    let pm = &d["per_message"];
    assert_eq!(
        field(pm, "Reporting-MTA").map(norm),
        Some("dns;mx.example.test".into()),
        "{d:#}"
    );
    assert!(field(pm, "Arrival-Date").is_some(), "{d:#}");
}

// ---------------------------------------------------------------------------------------------
// Tests.

/// A message relayed for a trusted client arrives at the second MX byte-exact, with only our
/// Received: field added on top; the first MX (nothing listening) is skipped.
#[test]
fn relays_byte_exact_to_second_mx_when_first_refuses() {
    const T: u8 = 1;
    let w = World::two_mx(T, 1, 2);
    let rx = w.receiver(2, Behaviour::default());
    let m = w.mrelayd("");
    let tok = token("exact");
    // Dots at line starts, a 998-octet line, trailing spaces, an empty last line.
    let original = format!(
        "From: Alice <alice@example.test>\r\nTo: rcpt@a.test\r\nSubject: {tok}\r\n\
         Message-ID: <{tok}@example.test>\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n\
         {}\r\ntrailing spaces   \r\n\r\n",
        "x".repeat(998)
    )
    .into_bytes();
    let ids = m
        .mail(&["rcpt@a.test"])
        .send_bytes(std::slice::from_ref(&original));
    assert_eq!(ids.len(), 1);
    let envs = rx.expect_messages(1, &m);
    let env = &envs[0];
    assert_eq!(env["mail_from"], ALICE);
    assert_eq!(env["rcpt_tos"], serde_json::json!(["rcpt@a.test"]));
    let got = rx.bytes(env);
    // Exactly one header field (Received:, possibly folded) added in front of the original.
    assert!(
        got.starts_with(b"Received: from "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let mut end = got.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    while got[end] == b' ' || got[end] == b'\t' {
        end += got[end..].windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    }
    let received = String::from_utf8_lossy(&got[..end]).into_owned();
    assert!(received.contains("by mx.example.test"), "{received}");
    assert!(
        received.contains(&ids[0]),
        "queue id in Received: {received}"
    );
    assert_eq!(
        String::from_utf8_lossy(&got[end..]),
        String::from_utf8_lossy(&original),
        "body changed in transit"
    );
    assert_eq!(&got[end..], &original[..]);
    // The log names the recipient, the outcome and the MX actually used.
    m.assert_sent_via(
        &ids[0],
        "rcpt@a.test",
        &format!("relay=mx2.a.test{}", w.at(2)),
    );
    m.wait_queue_empty();
}

/// A world whose b.test has one MX, mx.b.test at 127.55.T.2, and there mrelayd B (host name
/// `hostname`, local domain b.test, users alice and bob) at the MX port.
fn b_test_world(t: u8, hostname: &'static str) -> (World, Mrelayd) {
    let w = World::new(
        t,
        &format!(
            "mx-host=b.test,mx.b.test,10\nhost-record=mx.b.test,{}",
            ip(t, 2)
        ),
    );
    let b = w.start(
        "b",
        Setup {
            hostname,
            domain: "b.test",
            smtp_listen: w.addr(2),
            trusted_networks: "[]",
            remote: format!("resolver = \"{}\"\n", w.dns.addr()),
        },
    );
    (w, b)
}

/// mrelayd A relays to mrelayd B, the MX of b.test, which delivers into its Maildir.
#[test]
fn relays_to_a_second_mrelayd_into_its_maildir() {
    const T: u8 = 2;
    let (w, b) = b_test_world(T, "mx.b.test");
    let a = w.mrelayd("");
    let sent = a.mail(&["bob@b.test"]).body("hello b\r\n").send("a2b");
    assert_eq!(sent.ids.len(), 1);
    let got =
        common::wait_for(WAIT, || maildir_files(&b.maildir("bob")).pop()).unwrap_or_else(|| {
            panic!(
                "not in B's Maildir\nA queue: {}\nA log:\n{}\nB log:\n{}",
                a.queue(),
                a.log_tail(),
                b.log_tail()
            )
        });
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        text.starts_with("Return-Path: <alice@example.test>\nDelivered-To: bob@b.test\n"),
        "{text}"
    );
    // B's Received: names A's EHLO; A's own Received: follows.
    let rec: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("Received: "))
        .collect();
    assert_eq!(rec.len(), 2, "{text}");
    assert!(
        rec[0].starts_with("Received: from mx.example.test"),
        "{text}"
    );
    assert!(text.contains(&format!("Subject: {}\n", sent.tok)), "{text}");
    assert!(text.ends_with("\n\nhello b\n"), "{text}");
    a.wait_queue_empty();
    drop(b);
}

/// A receiver answering 451 keeps the recipient queued (with the error and next try shown);
/// once it accepts, a retry from the short schedule delivers.
#[test]
fn temporary_failure_is_retried_until_delivered() {
    const T: u8 = 3;
    let w = World::one_mx(T);
    let flag = w.flag("receiver-good");
    let rx = w.receiver(
        2,
        Behaviour::with(|b| b.tempfail_until = Some(flag.clone())),
    );
    let m = w.mrelayd("retry_initial_secs = 1\nretry_max_secs = 2\nconnection_idle_secs = 0");
    let sent = m.mail(&["later@a.test"]).body("retry me\r\n").send("retry");
    // Deferred: the queue lists the recipient with the 4xx text and a next try.
    let q = m.wait_queue("no deferral in the queue", |q| {
        q.contains("Try again later")
    });
    assert!(q.contains(sent.id()), "{q}");
    assert!(q.contains("<later@a.test>"), "{q}");
    assert!(q.contains("451") && q.contains("4.3.0"), "{q}");
    assert!(q.contains("next try"), "{q}");
    assert!(
        m.log_text()
            .contains(&format!("{}: to=<later@a.test>", sent.id()))
            && m.log_text().contains("status=deferred"),
        "{}",
        m.log_tail()
    );
    // It is retried on the short schedule (a second RCPT while still failing).
    assert!(
        rx.wait_rcpt_attempts("later@a.test", 2),
        "no retry seen: {}",
        m.log_tail()
    );
    assert!(rx.envelopes().is_empty());
    std::fs::write(&flag, b"").unwrap();
    let envs = rx.expect_messages(1, &m);
    assert_eq!(envs[0]["rcpt_tos"], serde_json::json!(["later@a.test"]));
    assert!(rx.text(&envs[0]).contains(&sent.tok));
    m.wait_queue_empty();
    // Exactly once.
    assert_eq!(rx.envelopes().len(), 1);
}

/// A server greeting with 421 defers the message; with a long retry interval only
/// `mrelayd flush` makes the retry happen now.
#[test]
fn flush_retries_a_deferred_message_at_once() {
    const T: u8 = 4;
    let w = World::one_mx(T);
    let flag = w.flag("receiver-good");
    let rx = w.receiver(
        2,
        Behaviour::with(|b| b.greeting_421_until = Some(flag.clone())),
    );
    let m = w.mrelayd("retry_initial_secs = 3600\nretry_max_secs = 3600");
    let sent = m.mail(&["later@a.test"]).body("flush me\r\n").send("flush");
    let q = m.wait_queue("no deferral in the queue", |q| {
        q.contains("Service not available")
    });
    assert!(q.contains("<later@a.test>") && q.contains("421"), "{q}");
    // The next try is about an hour away (not "now").
    assert!(
        q.contains("next try in 59m") || q.contains("next try in 60m"),
        "{q}"
    );
    assert!(rx.sessions() >= 1);
    assert!(rx.envelopes().is_empty());
    std::fs::write(&flag, b"").unwrap();
    let out = m.cli(&["flush"]);
    assert!(out.status.success(), "{out:?}");
    let envs = rx.expect_messages(1, &m);
    assert!(rx.text(&envs[0]).contains(&sent.tok));
    m.wait_queue_empty();
}

/// The receiver for 5xx tests: `bad@a.test` is refused with 550 5.1.1.
const REJECT_550: &str = "550 5.1.1 <bad@a.test>: Recipient address rejected: User unknown";

/// a.test's first MX refuses connections; the second (127.55.t.2) refuses `bad@a.test`.
fn rejecting_world(t: u8) -> (World, Receiver) {
    let w = World::two_mx(t, 1, 2);
    let rx = w.receiver(
        2,
        Behaviour::with(|b| b.rcpt = vec![("bad@a.test".into(), REJECT_550.into())]),
    );
    (w, rx)
}

/// 5xx → exactly one DSN to the local sender, checked field by field: RET=HDRS returns the
/// headers, RET=FULL the whole message; ENVID and ORCPT come back.
#[test]
fn permanent_failure_bounces_one_dsn_with_ret_envid_orcpt() {
    const T: u8 = 5;
    let (w, rx) = rejecting_world(T);
    let m = w.mrelayd("");

    // RET=HDRS, ENVID, NOTIFY=FAILURE, ORCPT.
    let sent = m
        .mail(&["bad@a.test"])
        .to("x@a.test")
        .body("secret body text\r\n")
        .mail_opts(&["RET=HDRS", "ENVID=abc"])
        .rcpt_opts(&["NOTIFY=FAILURE", "ORCPT=rfc822;x@a.test"])
        .send("hdrs");
    let dsns = m.wait_dsns(1);
    assert_eq!(dsns.len(), 1, "{dsns:#?}");
    let d = &dsns[0];
    assert_failure_dsn_top(d, ALICE);
    assert_parts(
        d,
        &[
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers",
        ],
    );
    assert_eq!(
        field(&d["per_message"], "Original-Envelope-Id"),
        Some("abc"),
        "{d:#}"
    );
    let rcpts = d["recipients"].as_array().unwrap();
    assert_eq!(rcpts.len(), 1, "{d:#}");
    let r = &rcpts[0];
    assert_eq!(
        field(r, "Final-Recipient").map(norm),
        Some("rfc822;bad@a.test".into()),
        "{d:#}"
    );
    assert_eq!(
        field(r, "Original-Recipient").map(norm),
        Some("rfc822;x@a.test".into()),
        "{d:#}"
    );
    assert_eq!(field(r, "Action"), Some("failed"), "{d:#}");
    assert_eq!(field(r, "Status"), Some("5.1.1"), "{d:#}");
    let diag = field(r, "Diagnostic-Code").unwrap_or("");
    assert!(norm(diag).starts_with("smtp;550"), "{d:#}");
    assert!(
        diag.contains("Recipient address rejected: User unknown"),
        "{d:#}"
    );
    let mta = field(r, "Remote-MTA").map(norm).unwrap_or_default();
    assert!(mta.starts_with("dns;mx2.a.test"), "{d:#}");
    assert!(field(r, "Last-Attempt-Date").is_some(), "{d:#}");
    let ret = &d["returned"];
    assert_eq!(ret["subject"], sent.tok.as_str(), "{d:#}");
    assert!(
        !ret["raw"]
            .as_str()
            .unwrap_or("")
            .contains("secret body text"),
        "{d:#}"
    );
    assert!(
        d["text"].as_str().unwrap_or("").contains("bad@a.test"),
        "{d:#}"
    );
    // The log says bounced; the message is gone from the queue.
    m.wait_log(&format!("{}: to=<bad@a.test>", sent.id()));
    m.assert_logged("status=bounced");

    // RET=FULL: the whole message comes back as message/rfc822.
    let full = m
        .mail(&["bad@a.test"])
        .body("full body text\r\n")
        .mail_opts(&["RET=FULL"])
        .send("full");
    let dsns = m.wait_dsns(2);
    assert_eq!(dsns.len(), 2);
    let d = dsn_for(&dsns, &full.tok);
    assert_failure_dsn_top(d, ALICE);
    assert_parts(
        d,
        &["text/plain", "message/delivery-status", "message/rfc822"],
    );
    assert!(
        field(&d["per_message"], "Original-Envelope-Id").is_none(),
        "{d:#}"
    );
    let r = &d["recipients"][0];
    assert!(
        field(r, "Original-Recipient").is_none(),
        "no ORCPT given: {d:#}"
    );
    assert_eq!(field(r, "Status"), Some("5.1.1"), "{d:#}");
    assert!(
        d["returned"]["body"]
            .as_str()
            .unwrap_or("")
            .contains("full body text"),
        "{d:#}"
    );
    // Nothing was delivered to the receiver.
    assert!(rx.envelopes().is_empty());
    // Once the queue is empty every DSN has been delivered: still exactly two.
    m.wait_queue_empty();
    assert_eq!(m.dsns().len(), 2);
}

/// Two recipients, one refused: the other is delivered and the DSN lists only the refused one.
#[test]
fn partial_success_delivers_the_rest_and_bounces_only_the_failed() {
    const T: u8 = 6;
    let (w, rx) = rejecting_world(T);
    let m = w.mrelayd("");
    m.mail(&["good@a.test", "bad@a.test"])
        .body("partial\r\n")
        .send("partial");
    let envs = rx.expect_messages(1, &m);
    assert_eq!(envs[0]["rcpt_tos"], serde_json::json!(["good@a.test"]));
    let dsns = m.wait_dsns(1);
    assert_eq!(dsns.len(), 1, "{dsns:#?}");
    let d = &dsns[0];
    assert_failure_dsn_top(d, ALICE);
    let rcpts = d["recipients"].as_array().unwrap();
    assert_eq!(rcpts.len(), 1, "only the failed recipient: {d:#}");
    assert_eq!(
        field(&rcpts[0], "Final-Recipient").map(norm),
        Some("rfc822;bad@a.test".into())
    );
    assert_eq!(field(&rcpts[0], "Action"), Some("failed"));
    // RET absent: the full message is returned for a failure.
    assert_eq!(d["returned"]["type"], "message/rfc822", "{d:#}");
    m.wait_queue_empty();
    assert_eq!(rx.envelopes().len(), 1, "delivered once");
    assert_eq!(m.dsns().len(), 1, "one DSN per message");
}

/// Sends a control bounce (alice → bad@a.test, NOTIFY default) and waits for its DSN, so that a
/// DSN that should NOT exist for an earlier message would have arrived by then as well.
fn control_bounce(m: &Mrelayd) -> String {
    let sent = m.mail(&["bad@a.test"]).body("control\r\n").send("control");
    let found = common::wait_for(WAIT, || {
        m.dsns()
            .iter()
            .any(|d| d["returned"]["subject"] == sent.tok.as_str())
            .then_some(())
    });
    assert!(found.is_some(), "control DSN never came:\n{}", m.log_tail());
    sent.tok
}

/// Mail from the null sender is never bounced: no DSN anywhere, queue empty in the end.
#[test]
fn null_sender_is_never_bounced() {
    const T: u8 = 7;
    let (w, rx) = rejecting_world(T);
    let m = w.mrelayd("");
    // One recipient refused, one accepted: the accepted one is relayed with MAIL FROM:<>.
    let sent = m
        .mail(&["bad@a.test", "good@a.test"])
        .from("<>", "mailer-daemon@example.test")
        .send("nullsender");
    m.wait_log(&format!("{}: to=<bad@a.test>", sent.id()));
    m.wait_queue_empty();
    let ctl = control_bounce(&m);
    m.wait_queue_empty();
    // Only the control DSN exists: in alice's Maildir (postmaster, mailer-daemon go there too)
    // and in bob's.
    let all = m.dsns();
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0]["returned"]["subject"], ctl.as_str());
    assert!(maildir_files(&m.maildir("bob")).is_empty());
    // The good recipient got it from the null sender; no bounce went out to a remote server.
    let envs = rx.envelopes();
    assert_eq!(envs.len(), 1, "{envs:?}");
    // aiosmtpd records the null reverse-path as "<>".
    assert_eq!(envs[0]["mail_from"], "<>", "{envs:?}");
    assert_eq!(envs[0]["rcpt_tos"], serde_json::json!(["good@a.test"]));
    let log = m.log_text();
    let bounced: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(sent.id()) && l.contains("status=bounced"))
        .collect();
    assert_eq!(bounced.len(), 1, "{log}");
}

/// NOTIFY=NEVER: a refused recipient produces no DSN.
#[test]
fn notify_never_gives_no_dsn() {
    const T: u8 = 8;
    let (w, _rx) = rejecting_world(T);
    let m = w.mrelayd("");
    let sent = m
        .mail(&["bad@a.test"])
        .rcpt_opts(&["NOTIFY=NEVER"])
        .send("never");
    m.wait_log(&format!("{}: to=<bad@a.test>", sent.id()));
    m.wait_queue_empty();
    let ctl = control_bounce(&m);
    let all = m.dsns();
    assert_eq!(all.len(), 1, "only the control DSN: {all:#?}");
    assert_eq!(all[0]["returned"]["subject"], ctl.as_str());
}

/// A receiver that keeps answering 451 and `delay_warning_secs = 1`: one "delayed" DSN
/// (headers only), the message stays queued, and no second warning follows on later retries.
#[test]
fn delay_warning_is_sent_once_and_message_stays_queued() {
    const T: u8 = 9;
    let w = World::one_mx(T);
    let rx = w.tempfailing_receiver(2);
    let m = w.mrelayd("retry_initial_secs = 1\nretry_max_secs = 1\ndelay_warning_secs = 1");
    let sent = m
        .mail(&["slow@a.test"])
        .body("delay body\r\n")
        .mail_opts(&["ENVID=delay-env"])
        .rcpt_opts(&["NOTIFY=DELAY,FAILURE"])
        .send("delay");
    let dsns = m.wait_dsns(1);
    let d = &dsns[0];
    let h = &d["headers"];
    assert_eq!(d["content_type"], "multipart/report", "{d:#}");
    assert_eq!(d["report_type"], "delivery-status", "{d:#}");
    assert!(
        field(h, "Subject")
            .unwrap_or("")
            .starts_with("Delayed Mail"),
        "{d:#}"
    );
    assert_eq!(field(h, "Auto-Submitted"), Some("auto-replied"), "{d:#}");
    assert_eq!(field(h, "Return-Path"), Some("<>"), "{d:#}");
    assert_eq!(
        field(&d["per_message"], "Original-Envelope-Id"),
        Some("delay-env"),
        "{d:#}"
    );
    let r = &d["recipients"][0];
    assert_eq!(d["recipients"].as_array().unwrap().len(), 1, "{d:#}");
    assert_eq!(
        field(r, "Final-Recipient").map(norm),
        Some("rfc822;slow@a.test".into())
    );
    assert_eq!(field(r, "Action"), Some("delayed"), "{d:#}");
    assert_eq!(field(r, "Status"), Some("4.3.0"), "{d:#}");
    assert!(
        field(r, "Diagnostic-Code")
            .unwrap_or("")
            .contains("Try again later"),
        "{d:#}"
    );
    assert!(field(r, "Will-Retry-Until").is_some(), "{d:#}");
    // Delay warnings carry only the headers (RFC 3461 §6.2 suggests that; REMOTE.md says always).
    assert_parts(
        d,
        &[
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers",
        ],
    );
    assert_eq!(d["returned"]["subject"], sent.tok.as_str());
    // Still queued.
    let q = m.queue();
    assert!(q.contains(sent.id()) && q.contains("<slow@a.test>"), "{q}");
    // Two more retries after the warning, then everything queued besides our message is gone
    // (a second warning would have been queued by then): still exactly one DSN.
    let seen = rx.rcpt_attempts("slow@a.test");
    assert!(
        rx.wait_rcpt_attempts("slow@a.test", seen + 2),
        "no further retries:\n{}",
        m.log_tail()
    );
    m.wait_queue("not only our message queued", |q| {
        q.contains("-- 1 message(s)")
    });
    assert_eq!(m.dsns().len(), 1, "more than one delay warning");
    assert!(rx.envelopes().is_empty());
}

/// Null MX (RFC 7505) and NXDOMAIN are permanent: a bounce at once, and the null MX domain's
/// A record is not used.
#[test]
fn null_mx_and_nxdomain_bounce() {
    const T: u8 = 10;
    let w = World::new(
        T,
        &format!(
            "mx-host=nullmx.test,.,0\nhost-record=nullmx.test,{}",
            ip(T, 4)
        ),
    );
    // A receiver on the null MX domain's A address: it must see no connection at all.
    let rx = w.receiver(4, Behaviour::default());
    let m = w.mrelayd("");
    m.mail(&["x@nullmx.test"]).send("nullmx");
    let dsns = m.wait_dsns(1);
    let d = &dsns[0];
    assert_failure_dsn_top(d, ALICE);
    let r = &d["recipients"][0];
    assert_eq!(
        field(r, "Final-Recipient").map(norm),
        Some("rfc822;x@nullmx.test".into())
    );
    assert_eq!(field(r, "Action"), Some("failed"), "{d:#}");
    // RFC 7505 §4.2: a null MX yields 5.1.10 ("Recipient address has null MX", RFC 7505 §5).
    assert_eq!(field(r, "Status"), Some("5.1.10"), "{d:#}");
    assert!(
        field(r, "Remote-MTA").is_none(),
        "no server answered: {d:#}"
    );
    assert_eq!(rx.sessions(), 0, "the null MX domain's A record was used");

    let sent = m.mail(&["x@missing.test"]).send("nxdomain");
    let dsns = m.wait_dsns(2);
    let d = dsn_for(&dsns, &sent.tok);
    let r = &d["recipients"][0];
    assert_eq!(
        field(r, "Final-Recipient").map(norm),
        Some("rfc822;x@missing.test".into())
    );
    assert_eq!(field(r, "Action"), Some("failed"), "{d:#}");
    // RFC 3463: 5.1.2 "bad destination system address" (the domain does not exist); 5.4.4
    // "unable to route" is what Postfix says. Either is correct.
    let status = field(r, "Status").unwrap_or("");
    assert!(status == "5.1.2" || status == "5.4.4", "{d:#}");
    m.wait_queue_empty();
}

/// A domain without MX is delivered to its own address (implicit MX, RFC 5321 §5.1), here
/// Postfix's smtp-sink.
#[test]
fn implicit_mx_delivers_to_smtp_sink() {
    const T: u8 = 11;
    let w = World::new(T, &format!("host-record=implicit.test,{}", ip(T, 3)));
    let sink = w.sink(3);
    let m = w.mrelayd("");
    let sent = m
        .mail(&["user@implicit.test"])
        .body("to the sink\r\n")
        .send("implicit");
    let dump = common::wait_for(WAIT, || {
        sink.dumps().into_iter().find(|d| d.contains(&sent.tok))
    })
    .unwrap_or_else(|| panic!("smtp-sink got nothing:\n{}", m.log_tail()));
    assert!(dump.contains("user@implicit.test"), "{dump}");
    assert!(dump.contains(ALICE), "{dump}");
    assert!(dump.contains("to the sink"), "{dump}");
    m.assert_sent_via(sent.id(), "user@implicit.test", &w.at(3));
    m.wait_queue_empty();
}

/// tls.test's MX is mx2.example.test (a name in the peers' certificate) at 127.55.t.2.
fn tls_world(t: u8) -> World {
    World::new(
        t,
        &format!(
            "mx-host=tls.test,mx2.example.test,10\nhost-record=mx2.example.test,{}",
            ip(t, 2)
        ),
    )
}

/// `tls = "verify"` with the peers' CA: STARTTLS, certificate verified for the MX name
/// (mx2.example.test is in the peers' certificate), delivered over TLS. smtp-sink has no
/// STARTTLS (PEERS.md), so the aiosmtpd receiver with the peers' certificate stands in for it.
#[test]
fn tls_verify_with_ca_file_delivers_over_tls() {
    const T: u8 = 12;
    let w = tls_world(T);
    let rx = w.receiver(2, Behaviour::with(|b| b.tls = true));
    let m = w.mrelayd(&format!(
        "tls = \"verify\"\nca_file = \"{}\"",
        common::peer("PEER_CA_FILE")
    ));
    let sent = m.mail(&["user@tls.test"]).body("secret\r\n").send("tls");
    let envs = rx.expect_messages(1, &m);
    assert_eq!(envs[0]["tls"], true, "delivered without TLS");
    assert!(rx.text(&envs[0]).contains(&sent.tok));
    m.wait_queue_empty();
}

/// `tls = "verify"` without ca_file trusts only webpki-roots: the peers' test CA is unknown, so
/// the message is deferred with a certificate error and nothing is sent (not even in clear).
#[test]
fn tls_verify_against_webpki_roots_defers() {
    const T: u8 = 13;
    let w = tls_world(T);
    let rx = w.receiver(2, Behaviour::with(|b| b.tls = true));
    let m = w.mrelayd("tls = \"verify\"\nretry_initial_secs = 3600");
    let sent = m
        .mail(&["user@tls.test"])
        .body("secret\r\n")
        .send("untrusted");
    let q = m.wait_queue("no certificate error queued", |q| {
        q.contains("<user@tls.test>") && q.to_ascii_lowercase().contains("certificate")
    });
    assert!(q.contains(sent.id()), "{q}");
    m.assert_logged("status=deferred");
    // Deferred as Postfix does, with the TLS status (RFC 3463 X.7.5), not bounced.
    m.assert_logged("dsn=4.7.5");
    // The receiver saw the connection but no transaction.
    assert!(rx.sessions() >= 1);
    assert_eq!(
        rx.rcpt_attempts("user@tls.test"),
        0,
        "RCPT sent despite failed verification"
    );
    assert!(rx.envelopes().is_empty());
    m.assert_no_dsn("temporary: no bounce");
}

/// 20 messages to one domain go over fewer connections than messages (persistent sessions).
#[test]
fn persistent_connections_carry_many_messages() {
    const T: u8 = 14;
    const N: usize = 20;
    let w = World::one_mx(T);
    let rx = w.receiver(2, Behaviour::default());
    let m = w.mrelayd("destination_concurrency = 2\nconnection_idle_secs = 10");
    let sent = m
        .mail(&["many@a.test"])
        .body("persistent\r\n")
        .send_many("persist", N);
    assert_eq!(sent.ids.len(), N);
    let envs = rx.expect_messages(N, &m);
    let mut subjects: Vec<String> = envs
        .iter()
        .map(|e| {
            rx.text(e)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or("")
                .to_string()
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), N, "each message exactly once");
    let sessions = rx.sessions();
    eprintln!("persistent connections: {sessions} connection(s) for {N} messages");
    assert!(
        sessions * 2 <= N,
        "{sessions} connections for {N} messages: not reused"
    );
    m.wait_queue_empty();
}

/// A smarthost for everything: the peers' Postfix submission port, STARTTLS verified with the
/// peers' CA, AUTH alice with a password command; Postfix delivers into carol's Maildir.
#[test]
fn relayhost_postfix_submission_with_starttls_and_auth() {
    // The zone knows nothing of example.test: only the relayhost can deliver it. (No receiver
    // of its own: 15 is this test's T only nominally.)
    let w = World::new(15, "");
    let m = w.start(
        "m",
        Setup {
            // carol@example.test is remote for this mrelayd (its own domain is local.test).
            domain: "local.test",
            ..w.setup_a(&format!(
                "relayhost = \"[127.0.0.1]:{}\"\nrelayhost_tls = \"starttls\"\n\
                 ca_file = \"{}\"\nrelayhost_user = \"alice\"\n\
                 relayhost_password_command = \"echo password\"",
                common::peer("PEER_SUBMISSION_PORT"),
                common::peer("PEER_CA_FILE")
            ))
        },
    );
    let sent = m
        .mail(&["carol@example.test"])
        .body("via postfix\r\n")
        .send("smarthost");
    let carol = PathBuf::from(common::peer("PEER_MAIL_DIR")).join("carol");
    let got = common::wait_for(WAIT, || {
        maildir_files(&carol)
            .into_iter()
            .find(|b| String::from_utf8_lossy(b).contains(&sent.tok))
    })
    .unwrap_or_else(|| panic!("not in carol's Maildir:\n{}\n{}", m.queue(), m.log_tail()));
    let text = String::from_utf8_lossy(&got).into_owned();
    // Postfix's Received: says it got it over TLS from an authenticated client: "ESMTPSA" is
    // ESMTP with STARTTLS and AUTH (RFC 3848). (Postfix adds "Authenticated sender:" only with
    // smtpd_sasl_authenticated_header = yes, which the peers do not set.)
    let postfix_received = text
        .split("\nReceived: ")
        .find(|r| r.contains("(Postfix)"))
        .unwrap_or_else(|| panic!("no Received: by Postfix: {text}"));
    assert!(postfix_received.contains("with ESMTPSA"), "{text}");
    assert!(
        postfix_received.starts_with("from mx.example.test"),
        "our EHLO name: {text}"
    );
    assert!(
        text.contains("by mx.example.test"),
        "our Received: kept: {text}"
    );
    m.assert_sent_via(
        sent.id(),
        "carol@example.test",
        &common::peer("PEER_SUBMISSION_PORT"),
    );
    m.wait_queue_empty();
}

/// A per-domain relayhost overrides MX routing for that domain only (x.test has no DNS at all).
#[test]
fn per_domain_relayhost() {
    const T: u8 = 16;
    let w = World::one_mx(T);
    let relay_port = remote_port();
    let mx = w.receiver(2, Behaviour::default());
    let smarthost = Receiver::start(&w.ip(9), relay_port, Behaviour::default());
    let m = w.mrelayd(&format!(
        "[mrelayd.remote.domains.\"x.test\"]\nrelayhost = \"[{}]:{relay_port}\"\n\
         relayhost_tls = \"none\"",
        w.ip(9)
    ));
    m.mail(&["u@x.test", "v@a.test"]).send("perdomain");
    let via_relay = smarthost.expect_messages(1, &m);
    let via_mx = mx.expect_messages(1, &m);
    assert_eq!(via_relay[0]["rcpt_tos"], serde_json::json!(["u@x.test"]));
    assert_eq!(via_mx[0]["rcpt_tos"], serde_json::json!(["v@a.test"]));
    m.wait_queue_empty();
}

/// `msend --direct` uses the same MX walk: first MX refused, second MX receives it.
#[test]
fn msend_direct_through_the_same_zone() {
    const T: u8 = 17;
    let w = World::two_mx(T, 1, 2);
    let rx = w.receiver(2, Behaviour::default());
    let home = common::scratch();
    let tok = token("msend");
    let out = common::run_with_input(
        Command::new(common::bin("msend"))
            .env("HOME", home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("MAILKIT_CONFIG")
            .args(["--timeout", "10", "-v", "--direct", "--resolver"])
            .arg(w.dns.addr())
            .args(["--smtp-port", &w.port.to_string(), "-f", "bob@example.test"])
            .arg("someone@a.test"),
        format!("Subject: {tok}\n\ndirect\n").as_bytes(),
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let envs = rx.wait_messages(1);
    assert_eq!(envs.len(), 1, "{err}");
    assert_eq!(envs[0]["mail_from"], "bob@example.test");
    assert_eq!(envs[0]["rcpt_tos"], serde_json::json!(["someone@a.test"]));
    let text = rx.text(&envs[0]);
    assert!(text.contains(&format!("Subject: {tok}\r\n")), "{text}");
    assert!(text.ends_with("\r\n\r\ndirect\r\n"), "{text}");
    assert!(err.contains(&format!("mx2.a.test[{}]", w.ip(2))), "{err}");
}

/// RFC 3461 §5.2: relaying to a server that offers DSN passes RET and ENVID with MAIL and NOTIFY
/// and ORCPT with RCPT, unchanged.
#[test]
fn dsn_parameters_are_passed_on_to_a_dsn_capable_next_hop() {
    const T: u8 = 18;
    let w = World::one_mx(T);
    let rx = w.receiver(2, Behaviour::with(|b| b.dsn = true));
    let m = w.mrelayd("");
    m.mail(&["r@a.test"])
        .mail_opts(&["RET=HDRS", "ENVID=env+2Bid"])
        .rcpt_opts(&["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig@a.test"])
        .send("dsnparams");
    let envs = rx.expect_messages(1, &m);
    // aiosmtpd upper-cases the parameters it records.
    let mail = options(&envs[0], "mail_options");
    let rcpt = options(&envs[0], "rcpt_options");
    assert!(mail.contains(&"RET=HDRS".to_string()), "{mail:?}");
    assert!(mail.contains(&"ENVID=ENV+2BID".to_string()), "{mail:?}");
    assert!(
        rcpt.contains(&"NOTIFY=SUCCESS,FAILURE".to_string()),
        "{rcpt:?}"
    );
    assert!(
        rcpt.contains(&"ORCPT=RFC822;ORIG@A.TEST".to_string()),
        "{rcpt:?}"
    );
    m.wait_queue_empty();
}

/// A recipient that keeps failing temporarily beyond `max_lifetime_secs` bounces once, with
/// the last error; the queue is empty afterwards.
#[test]
fn lifetime_expiry_bounces_with_the_last_error() {
    const T: u8 = 19;
    let w = World::one_mx(T);
    let rx = w.tempfailing_receiver(2);
    let m = w.mrelayd(
        "retry_initial_secs = 1\nretry_max_secs = 1\nmax_lifetime_secs = 3\n\
         delay_warning_secs = 0",
    );
    let sent = m.mail(&["slow@a.test"]).send("expire");
    m.wait_dsns(1);
    // Once the queue is empty every DSN has been delivered.
    m.wait_queue_empty();
    let dsns = m.dsns();
    assert_eq!(dsns.len(), 1, "exactly one DSN: {dsns:#?}");
    let d = &dsns[0];
    assert_failure_dsn_top(d, ALICE);
    let r = &d["recipients"][0];
    assert_eq!(field(r, "Action"), Some("failed"), "{d:#}");
    assert!(
        field(r, "Diagnostic-Code")
            .unwrap_or("")
            .contains("Try again later"),
        "the last error: {d:#}"
    );
    // RFC 3463: the class of the last error (4: persistent transient, e.g. 4.4.7 "delivery time
    // expired") or 5 are both seen in practice; the field must be a valid status code.
    let status = field(r, "Status").unwrap_or("");
    assert!(
        (status.starts_with("4.") || status.starts_with("5.")) && status.split('.').count() == 3,
        "{d:#}"
    );
    assert!(
        rx.rcpt_attempts("slow@a.test") >= 2,
        "retried before expiry"
    );
    m.assert_logged(&format!("{}: to=<slow@a.test>", sent.id()));
    assert!(rx.envelopes().is_empty());
}

/// A per-domain `tls = "encrypt"` refuses to send to a server without STARTTLS (smtp-sink):
/// deferred, nothing sent; another domain on the same server is delivered in clear.
#[test]
fn per_domain_tls_encrypt_defers_without_starttls() {
    const T: u8 = 20;
    let w = World::new(
        T,
        &format!(
            "mx-host=enc.test,mx.sink.test,10\nmx-host=plain.test,mx.sink.test,10\n\
             host-record=mx.sink.test,{}",
            ip(T, 2)
        ),
    );
    let sink = w.sink(2);
    let m = w.mrelayd(
        "retry_initial_secs = 3600\n[mrelayd.remote.domains.\"enc.test\"]\ntls = \"encrypt\"",
    );
    let enc = m.mail(&["u@enc.test"]).send("enc");
    let plain = m.mail(&["u@plain.test"]).send("plain");
    let delivered = common::wait_for(WAIT, || {
        sink.dumps().into_iter().find(|d| d.contains(&plain.tok))
    });
    assert!(
        delivered.is_some(),
        "plain.test not delivered:\n{}",
        m.log_tail()
    );
    let q = m.wait_queue("no STARTTLS error queued", |q| {
        q.contains("<u@enc.test>") && q.to_ascii_lowercase().contains("starttls")
    });
    assert!(q.contains(enc.id()), "{q}");
    assert!(!q.contains("<u@plain.test>"), "{q}");
    assert!(
        sink.dumps().iter().all(|d| !d.contains(&enc.tok)),
        "sent in clear despite tls = encrypt"
    );
}

/// An 8-bit body goes out with BODY=8BITMIME (the receiver offers it), SIZE is declared, and
/// SMTPUTF8 is not used for ASCII addresses; the bytes arrive unchanged.
#[test]
fn eight_bit_body_is_sent_with_body_8bitmime_and_size() {
    const T: u8 = 21;
    let w = World::one_mx(T);
    let rx = w.receiver(2, Behaviour::default());
    let m = w.mrelayd("");
    let tok = token("8bit");
    let original = format!(
        "From: <alice@example.test>\r\nSubject: {tok}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Grüße aus Köln\r\n"
    )
    .into_bytes();
    m.mail(&["r@a.test"])
        .mail_opts(&["BODY=8BITMIME"])
        .send_bytes(std::slice::from_ref(&original));
    let envs = rx.expect_messages(1, &m);
    let got = rx.bytes(&envs[0]);
    assert!(
        got.ends_with(&original),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let mail = options(&envs[0], "mail_options");
    assert!(mail.contains(&"BODY=8BITMIME".to_string()), "{mail:?}");
    assert!(!mail.contains(&"SMTPUTF8".to_string()), "{mail:?}");
    let size: usize = mail
        .iter()
        .find_map(|o| o.strip_prefix("SIZE="))
        .unwrap_or_else(|| panic!("no SIZE= (RFC 1870) in {mail:?}"))
        .parse()
        .unwrap();
    // RFC 1870 §6: the declared size is an estimate of the message as sent; it must not be
    // smaller than what was sent by more than the line-ending difference.
    assert!(
        size + 64 >= got.len(),
        "SIZE={size} for {} octets",
        got.len()
    );
    m.wait_queue_empty();
}

/// Every address of an MX host is tried before the next host: mx1's first address refuses,
/// its second accepts, and mx2 never sees a connection.
#[test]
fn all_addresses_of_a_host_before_the_next_host() {
    const T: u8 = 22;
    let w = World::new(
        T,
        &format!(
            "mx-host=a.test,mx1.a.test,10\nmx-host=a.test,mx2.a.test,20\n\
             host-record=mx1.a.test,{}\nhost-record=mx1.a.test,{}\nhost-record=mx2.a.test,{}",
            ip(T, 1),
            ip(T, 2),
            ip(T, 3)
        ),
    );
    let mx1b = w.receiver(2, Behaviour::default());
    let mx2 = w.receiver(3, Behaviour::default());
    let m = w.mrelayd("");
    let sent = m.mail(&["r@a.test"]).send("addrs");
    mx1b.expect_messages(1, &m);
    assert_eq!(
        mx2.sessions(),
        0,
        "went to mx2 before trying all of mx1's addresses"
    );
    m.assert_sent_via(
        sent.id(),
        "r@a.test",
        &format!("relay=mx1.a.test{}", w.at(2)),
    );
    m.wait_queue_empty();
}

/// A server that refuses EHLO gets HELO (RFC 5321 §4.1.4, §3.2) and then no ESMTP parameters
/// (aiosmtpd answers 501 to MAIL parameters after HELO, which would bounce the message).
#[test]
fn helo_fallback_when_ehlo_is_refused() {
    const T: u8 = 23;
    let w = World::one_mx(T);
    let rx = w.receiver(2, Behaviour::with(|b| b.no_ehlo = true));
    let m = w.mrelayd("");
    let sent = m.mail(&["r@a.test"]).send("helo");
    let envs = rx.expect_messages(1, &m);
    assert!(
        rx.jsonl("events.jsonl")
            .iter()
            .any(|e| e["event"] == "ehlo-refused"),
        "EHLO was not even tried"
    );
    assert_eq!(envs[0]["helo"], "mx.example.test");
    assert_eq!(envs[0]["mail_options"], serde_json::json!([]));
    assert!(rx.text(&envs[0]).contains(&sent.tok));
    m.wait_queue_empty();
    m.assert_no_dsn("no bounce expected");
}

/// `destination_concurrency = 2` with one message per connection: six sessions, never more
/// than two transactions open at once (the receiver holds each body reply for 300 ms).
#[test]
fn destination_concurrency_limit_and_one_message_per_connection() {
    const T: u8 = 24;
    const N: usize = 6;
    let w = World::one_mx(T);
    let rx = w.receiver(2, Behaviour::with(|b| b.data_delay_ms = 300));
    let m = w.mrelayd("destination_concurrency = 2\nmax_messages_per_connection = 1");
    m.mail(&["r@a.test"]).send_many("destconc", N);
    rx.expect_messages(N, &m);
    assert!(
        rx.sessions() >= N,
        "max_messages_per_connection = 1 but {} sessions for {N} messages",
        rx.sessions()
    );
    assert!(
        rx.max_in_flight() <= 2,
        "{} transactions at once with destination_concurrency = 2",
        rx.max_in_flight()
    );
    m.wait_queue_empty();
}

/// `concurrency = 1`: across two destinations (one receiver process on two addresses) never
/// more than one transaction at once.
#[test]
fn global_concurrency_limit_across_destinations() {
    const T: u8 = 25;
    let w = World::new(
        T,
        &format!(
            "mx-host=a.test,mx.a.test,10\nhost-record=mx.a.test,{}\n\
             mx-host=b.test,mx.b.test,10\nhost-record=mx.b.test,{}",
            ip(T, 2),
            ip(T, 3)
        ),
    );
    let rx = Receiver::start_on(
        &[w.addr(2), w.addr(3)],
        Behaviour::with(|b| b.data_delay_ms = 200),
    );
    let m = w.mrelayd("concurrency = 1\nmax_messages_per_connection = 1");
    for rcpt in ["r@a.test", "r@b.test", "s@a.test", "s@b.test"] {
        m.mail(&[rcpt]).send("globalconc");
    }
    rx.expect_messages(4, &m);
    assert_eq!(
        rx.max_in_flight(),
        1,
        "more than one remote transaction at once with concurrency = 1"
    );
    m.wait_queue_empty();
}

/// Delay warnings follow NOTIFY: absent NOTIFY means FAILURE,DELAY (RFC 3461 §4.1) and gets a
/// warning; NOTIFY=FAILURE alone gets none, however often the recipient is retried.
#[test]
fn delay_warning_follows_notify() {
    const T: u8 = 26;
    let w = World::one_mx(T);
    let rx = w.tempfailing_receiver(2);
    let m = w.mrelayd("retry_initial_secs = 1\nretry_max_secs = 1\ndelay_warning_secs = 1");
    let failure_only = m
        .mail(&["slow1@a.test"])
        .rcpt_opts(&["NOTIFY=FAILURE"])
        .send("failureonly");
    let default_notify = m.mail(&["slow2@a.test"]).send("defaultnotify");
    let warned = m.wait_dsn_for(&default_notify.tok);
    assert_eq!(
        field(&warned["recipients"][0], "Action"),
        Some("delayed"),
        "{warned:#}"
    );
    assert_eq!(
        field(&warned["recipients"][0], "Final-Recipient").map(norm),
        Some("rfc822;slow2@a.test".into())
    );
    // slow1 (older, NOTIFY=FAILURE) keeps being retried; by now it would have had its warning.
    let seen = rx.rcpt_attempts("slow1@a.test");
    assert!(
        rx.wait_rcpt_attempts("slow1@a.test", seen + 2),
        "slow1 not retried:\n{}",
        m.log_tail()
    );
    m.wait_queue("not both messages queued", |q| {
        q.contains("-- 2 message(s)")
    });
    let all = m.dsns();
    assert!(
        all.iter()
            .all(|d| d["returned"]["subject"] != failure_only.tok.as_str()),
        "delay warning despite NOTIFY=FAILURE: {all:#?}"
    );
    assert_eq!(all.len(), 1, "{all:#?}");
}

/// SMTPUTF8 (RFC 6531): a non-ASCII recipient goes out with SMTPUTF8 to a server offering it;
/// to a server that does not, it cannot be relayed and bounces (status 5.6.x; RFC 6531 §3.2
/// says such a message must be rejected, X.6.7 names non-ASCII addresses and X.6.3 a
/// conversion that is not possible, so any 5.6.x detail is accepted).
#[test]
fn smtputf8_is_used_when_needed_and_bounces_when_not_offered() {
    const T: u8 = 27;
    let w = World::new(
        T,
        &format!(
            "mx-host=a.test,mx.a.test,10\nhost-record=mx.a.test,{}\n\
             mx-host=c.test,mx.c.test,10\nhost-record=mx.c.test,{}",
            ip(T, 2),
            ip(T, 3)
        ),
    );
    let utf8 = w.receiver(2, Behaviour::default());
    let ascii = w.receiver(3, Behaviour::with(|b| b.no_smtputf8 = true));
    let m = w.mrelayd("");
    m.mail(&["jösé@a.test"])
        .mail_opts(&["SMTPUTF8"])
        .send("utf8");
    let envs = utf8.expect_messages(1, &m);
    assert_eq!(envs[0]["rcpt_tos"], serde_json::json!(["jösé@a.test"]));
    let mail = options(&envs[0], "mail_options");
    assert!(mail.contains(&"SMTPUTF8".to_string()), "{mail:?}");

    m.mail(&["jösé@c.test"])
        .mail_opts(&["SMTPUTF8"])
        .send("utf8bounce");
    let dsns = m.wait_dsns(1);
    assert_eq!(dsns.len(), 1, "{dsns:#?}");
    let d = &dsns[0];
    let r = &d["recipients"][0];
    assert!(
        field(r, "Final-Recipient").unwrap_or("").contains("c.test"),
        "{d:#}"
    );
    assert_eq!(field(r, "Action"), Some("failed"), "{d:#}");
    assert!(
        field(r, "Status").unwrap_or("").starts_with("5.6."),
        "{d:#}"
    );
    assert!(ascii.envelopes().is_empty(), "{:?}", ascii.envelopes());
    m.wait_queue_empty();
}

/// An MX that greets with 421 is connection-level trouble: the next MX is used at once.
#[test]
fn first_mx_greeting_421_falls_through_to_second_mx() {
    const T: u8 = 28;
    let w = World::two_mx(T, 2, 3);
    let busy = w.receiver(
        2,
        Behaviour::with(|b| b.greeting_421_until = Some(w.flag("never-created"))),
    );
    let good = w.receiver(3, Behaviour::default());
    let m = w.mrelayd("retry_initial_secs = 3600");
    let sent = m.mail(&["r@a.test"]).send("greet421");
    good.expect_messages(1, &m);
    assert!(busy.sessions() >= 1, "mx1 was not tried first");
    m.assert_sent_via(
        sent.id(),
        "r@a.test",
        &format!("relay=mx2.a.test{}", w.at(3)),
    );
    m.wait_queue_empty();
}

/// No reply to the message body within `data_timeout_secs`: a temporary failure, queued with
/// a timeout error (RFC 5321 §4.5.3.2.6), not a bounce.
#[test]
fn data_timeout_defers() {
    const T: u8 = 29;
    let w = World::one_mx(T);
    let _rx = w.receiver(2, Behaviour::with(|b| b.data_delay_ms = 8000));
    let m = w.mrelayd("data_timeout_secs = 1\nretry_initial_secs = 3600");
    let sent = m.mail(&["r@a.test"]).send("timeout");
    let q = m.wait_queue("no timeout queued", |q| {
        let l = q.to_ascii_lowercase();
        q.contains("<r@a.test>") && (l.contains("timeout") || l.contains("timed out"))
    });
    assert!(q.contains(sent.id()), "{q}");
    m.assert_logged("status=deferred");
    m.assert_no_dsn("no bounce");
}

/// Many recipients for one destination go in transactions of at most
/// `max_recipients_per_transaction` (the next ones right away, over the same session), not
/// one huge transaction a server would cut with 452 and not a retry later.
#[test]
fn many_recipients_are_split_into_transactions_over_one_session() {
    const T: u8 = 30;
    const N: usize = 100;
    let w = World::one_mx(T);
    let rx = w.receiver(2, Behaviour::default());
    let m = w.mrelayd("max_recipients_per_transaction = 40\nconnection_idle_secs = 10");
    let rcpts: Vec<String> = (0..N).map(|i| format!("r{i}@a.test")).collect();
    let refs: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let sent = m.mail(&refs).body("split\r\n").send("split");
    assert_eq!(sent.ids.len(), 1);
    let envs = rx.expect_messages(3, &m);
    let mut sizes: Vec<usize> = envs
        .iter()
        .map(|e| e["rcpt_tos"].as_array().map(Vec::len).unwrap_or(0))
        .collect();
    sizes.sort();
    assert_eq!(sizes, vec![20, 40, 40], "recipients per transaction");
    let mut got: Vec<String> = envs
        .iter()
        .flat_map(|e| e["rcpt_tos"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    got.sort();
    let mut want = rcpts.clone();
    want.sort();
    assert_eq!(got, want, "every recipient exactly once");
    assert_eq!(rx.sessions(), 1, "one session for the three transactions");
    m.wait_queue_empty();
}

/// NOTIFY=SUCCESS (RFC 3461 §6.2.1): a local delivery gets a `delivered` DSN, a relay to a
/// next hop without DSN a `relayed` one (in one report for the attempt); a next hop that
/// speaks DSN got NOTIFY along and reports itself, so nothing comes from us.
#[test]
fn success_notifications_delivered_relayed_and_passed_on() {
    const T: u8 = 31;
    let w = World::new(
        T,
        &format!(
            "mx-host=a.test,mx.a.test,10\nhost-record=mx.a.test,{}\n\
             mx-host=b.test,mx.b.test,10\nhost-record=mx.b.test,{}",
            ip(T, 2),
            ip(T, 3)
        ),
    );
    let plain = w.receiver(2, Behaviour::default());
    let dsn_hop = w.receiver(3, Behaviour::with(|b| b.dsn = true));
    let m = w.mrelayd("");
    // First to the DSN-capable hop: it must not give a report from us.
    m.mail(&["d@b.test"])
        .rcpt_opts(&["NOTIFY=SUCCESS"])
        .send("passed-on");
    dsn_hop.expect_messages(1, &m);
    m.wait_queue_empty();
    m.assert_no_dsn("a DSN-capable next hop reports itself");
    // Then one local and one relayed recipient, both asking for SUCCESS.
    let sent = m
        .mail(&["bob@example.test", "r@a.test"])
        .rcpt_opts(&["NOTIFY=SUCCESS"])
        .send("success");
    plain.expect_messages(1, &m);
    let dsns = m.wait_dsns(1);
    m.wait_queue_empty();
    assert_eq!(dsns.len(), 1, "{dsns:#?}");
    let d = dsn_for(&dsns, &sent.tok);
    let mut actions: Vec<(String, String, String)> = d["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                field(r, "Final-Recipient").map(norm).unwrap_or_default(),
                field(r, "Action").unwrap_or("").to_string(),
                field(r, "Status").unwrap_or("").to_string(),
            )
        })
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        vec![
            (
                "rfc822;bob@example.test".into(),
                "delivered".into(),
                "2.0.0".into()
            ),
            ("rfc822;r@a.test".into(), "relayed".into(), "2.0.0".into()),
        ],
        "{d:#}"
    );
    assert_eq!(wait_bob(&m), 1, "bob got the message once");
}

/// Messages in bob's Maildir (waits for the first).
fn wait_bob(m: &Mrelayd) -> usize {
    let dir = m.maildir("bob");
    common::wait_for(WAIT, || (!maildir_files(&dir).is_empty()).then_some(()));
    maildir_files(&dir).len()
}

/// An MX with only an AAAA record: delivery over IPv6 loopback.
#[test]
fn ipv6_only_mx_is_reached_over_ipv6() {
    const T: u8 = 32;
    let w = World::new(
        T,
        "mx-host=v6.test,mx.v6.test,10\nhost-record=mx.v6.test,::1",
    );
    let rx = Receiver::start("::1", w.port, Behaviour::default());
    let m = w.mrelayd("");
    let sent = m.mail(&["six@v6.test"]).send("ipv6");
    let envs = rx.expect_messages(1, &m);
    assert_eq!(envs[0]["rcpt_tos"], serde_json::json!(["six@v6.test"]));
    m.assert_sent_via(
        sent.id(),
        "six@v6.test",
        &format!("mx.v6.test[::1]:{}", w.port),
    );
    m.wait_queue_empty();
}

/// A relayhost that refuses our login (535) defers the mail with the reason in the queue: a
/// wrong relay password is the admin's to fix, never a reason to bounce everything.
#[test]
fn relayhost_login_refused_defers_instead_of_bouncing() {
    let w = World::new(33, "");
    let m = w.start(
        "m",
        Setup {
            domain: "local.test",
            ..w.setup_a(&format!(
                "relayhost = \"[127.0.0.1]:{}\"\nrelayhost_tls = \"starttls\"\n\
                 ca_file = \"{}\"\nrelayhost_user = \"alice\"\n\
                 relayhost_password_command = \"echo wrong-password\"",
                common::peer("PEER_SUBMISSION_PORT"),
                common::peer("PEER_CA_FILE")
            ))
        },
    );
    let sent = m.mail(&["carol@example.test"]).send("badlogin");
    let q = m.wait_queue("the 535 in the listing", |q| {
        q.contains(sent.id()) && q.contains("<carol@example.test>") && q.contains("535")
    });
    assert!(q.contains("next try"), "{q}");
    m.assert_logged("status=deferred dsn=4.7.0");
    assert!(!m.log_text().contains("status=bounced"), "{}", m.log_text());
}

// ---------------------------------------------------------------------------------------------
// Mail loops (issue 10 item 3, RFC 5321 §5.1): a next hop that is this mrelayd.

/// mrelayd A of world `w` listening (smtp role) on `listen`, with `remote` in
/// `[mrelayd.remote]` (after the world's resolver).
fn loop_setup(w: &World, listen: String, remote: &str) -> Mrelayd {
    w.start("m", loop_config(w, listen, remote))
}

/// The [`Setup`] of [`loop_setup`].
fn loop_config(w: &World, listen: String, remote: &str) -> Setup<'static> {
    Setup {
        smtp_listen: listen,
        remote: format!("resolver = \"{}\"\n{remote}\n", w.dns.addr()),
        ..w.setup_a("")
    }
}

/// [`loop_setup`] for a config that names mrelayd's own smtp port (`config` gets it): the port
/// is picked before the start, and picked again when a parallel test took it meanwhile.
fn loop_setup_on_own_port(w: &World, config: impl Fn(u16) -> String) -> Mrelayd {
    common::with_unused_ports(|[port]| {
        let s = loop_config(w, format!("127.0.0.1:{port}"), &config(port));
        match w.try_start("m", s) {
            Ok(m) => Some(m),
            Err(e) if common::port_taken(&e) => None,
            Err(e) => panic!("{e}"),
        }
    })
}

/// The message `sent` to `rcpt` bounced with one DSN, status 5.4.6, saying that mail for
/// `domain` loops back to myself, and nothing but the message and its DSN was ever queued
/// (no copy went round in the loop).
fn assert_loop_bounce(m: &Mrelayd, sent: &Sent, rcpt: &str, domain: &str) {
    let d = m.wait_dsn_for(&sent.tok);
    let rcpts = d["recipients"].as_array().unwrap();
    assert_eq!(rcpts.len(), 1, "{d:#}");
    assert_eq!(field(&rcpts[0], "Status"), Some("5.4.6"), "{d:#}");
    m.wait_queue_empty();
    let log = m.log_text();
    let to = format!(
        "{}: to=<{rcpt}> status=bounced dsn=5.4.6 (mail for {domain} loops back to myself",
        sent.id()
    );
    assert!(log.contains(&to), "no {to:?} in\n{log}");
    // The message and its one bounce: nothing else was ever queued.
    assert_eq!(log.matches(" queued").count(), 1, "{log}");
    assert_eq!(log.matches("sender bounce: ").count(), 1, "{log}");
    assert_eq!(m.dsns().len(), 1, "{log}");
}

/// relayhost = our own listener: one 5.4.6 bounce, not thousands of queued copies.
#[test]
fn relayhost_that_is_our_own_listener_bounces_5_4_6() {
    let w = World::new(60, "");
    let m = loop_setup_on_own_port(&w, |port| {
        format!("relayhost = \"[127.0.0.1]:{port}\"\nrelayhost_tls = \"none\"")
    });
    let sent = m.mail(&["someone@far.test"]).send("loop-relayhost");
    assert_loop_bounce(&m, &sent, "someone@far.test", "far.test");
}

/// The only MX of a domain resolves to 127.0.0.1, and the MX port is our listener's: 5.4.6.
#[test]
fn mx_that_resolves_to_our_own_listener_bounces_5_4_6() {
    let w = World::new(
        61,
        "mx-host=loop.test,mx.loop.test,10\nhost-record=mx.loop.test,127.0.0.1",
    );
    let m = loop_setup_on_own_port(&w, |port| format!("port = {port}"));
    let sent = m.mail(&["someone@loop.test"]).send("loop-mx");
    assert_loop_bounce(&m, &sent, "someone@loop.test", "loop.test");
}

/// A more preferred MX that is down, then us: we are a backup MX and keep the mail (deferred),
/// never bouncing it for a loop nor sending it to ourselves.
#[test]
fn backup_mx_that_is_ourselves_defers() {
    const T: u8 = 62;
    let w = World::new(
        T,
        &format!(
            "mx-host=loop.test,mx1.loop.test,10\nmx-host=loop.test,mx2.loop.test,20\n\
             host-record=mx1.loop.test,{}\nhost-record=mx2.loop.test,127.0.0.1",
            ip(T, 1)
        ),
    );
    // Nothing listens on 127.55.T.1 (the primary is down); we are 127.0.0.1 at the MX port.
    let m = loop_setup(
        &w,
        format!("127.0.0.1:{}", w.port),
        &format!("port = {}", w.port),
    );
    let sent = m.mail(&["someone@loop.test"]).send("loop-backup");
    let q = m.wait_queue("deferred for the primary MX", |q| {
        q.contains(sent.id()) && q.contains("hosts after it not tried")
    });
    assert!(q.contains("connect"), "{q}");
    let log = m.log_text();
    assert!(!log.contains("status=bounced"), "{log}");
    assert_eq!(log.matches(" queued").count(), 1, "{log}");
}

/// A second mrelayd on another port, configured with the same hostname: its greeting names
/// us, so that is a loop too (5.4.6), and it never gets the message.
#[test]
fn next_hop_greeting_with_our_hostname_bounces_5_4_6() {
    const T: u8 = 63;
    let (w, b) = b_test_world(T, "mx.example.test");
    let m = w.mrelayd("");
    let sent = m.mail(&["bob@b.test"]).send("loop-hostname");
    assert_loop_bounce(&m, &sent, "bob@b.test", "b.test");
    assert!(
        m.log_text().contains("greets with our own hostname"),
        "{}",
        m.log_tail()
    );
    assert!(
        maildir_files(&b.maildir("bob")).is_empty(),
        "{}",
        b.log_tail()
    );
}

/// Another server on our IP address at another port is another host: delivered (the
/// capture peer on 127.0.0.1, where our listener is too).
#[test]
fn another_server_on_our_address_at_another_port_is_not_a_loop() {
    let w = World::new(64, "");
    let capture = common::peer("PEER_CAPTURE_PORT");
    let m = loop_setup(
        &w,
        "127.0.0.1:0".to_string(),
        &format!("relayhost = \"[127.0.0.1]:{capture}\"\nrelayhost_tls = \"none\""),
    );
    let sent = m.mail(&["someone@far.test"]).send("not-a-loop");
    m.assert_sent_via(
        sent.id(),
        "someone@far.test",
        &format!("[127.0.0.1]:{capture}"),
    );
    m.wait_queue_empty();
    let dir = PathBuf::from(common::peer("PEER_CAPTURE_DIR"));
    let found = common::wait_for(WAIT, || {
        ["new", "cur"]
            .iter()
            .flat_map(|s| {
                std::fs::read_dir(dir.join(s))
                    .into_iter()
                    .flatten()
                    .flatten()
            })
            .any(|e| {
                std::fs::read(e.path())
                    .map(|b| String::from_utf8_lossy(&b).contains(&sent.tok))
                    .unwrap_or(false)
            })
            .then_some(())
    });
    assert!(
        found.is_some(),
        "not at the capture peer:\n{}",
        m.log_tail()
    );
}
