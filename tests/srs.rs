//! SRS (issue 15) end to end: swaks sends to mrelayd (domain fwd.test), an alias and a Sieve
//! redirect forward to remote.test, whose MX (dnsmasq on loopback) is an aiosmtpd capture
//! server (`tests/remote/receiver.py`). The forwarded copy's MAIL FROM is an SRS0 address at
//! fwd.test, and python3-spf, reading the same dnsmasq, says it passes SPF where the original
//! sender fails; a bounce (null sender) to that address reaches the original sender through
//! the same MX; forged and expired SRS addresses (the expired one made with python3's hmac)
//! are refused with 550 5.1.1. Debian's postsrsd, with the same secret, reverses our SRS0 and
//! SRS1 addresses, and mrelayd routes postsrsd's back.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PY: &str = "/usr/bin/python3";
const SECRET: &str = "srs test secret\n";
/// Upper bound for a delivery to arrive.
const WAIT: Duration = Duration::from_secs(60);

/// The capture server: `tests/remote/receiver.py` on one address; killed on drop.
struct Receiver {
    _child: common::KillOnDrop,
    dir: PathBuf,
    _scratch: tempfile::TempDir,
}

impl Receiver {
    fn start(ip: &str) -> (Receiver, u16) {
        let scratch = common::scratch();
        let dir = scratch.path().join("rx");
        // A port free on every address: the MX port of this test's mrelayd.
        let port = std::net::TcpListener::bind("0.0.0.0:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/remote/receiver.py");
        let log = std::fs::File::create(scratch.path().join("receiver.log")).unwrap();
        let mut child = Command::new(PY)
            .arg(script)
            .arg("--dir")
            .arg(&dir)
            .arg("--listen")
            .arg(format!("{ip}:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !dir.join("ready").exists() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("receiver exited ({st})");
            }
            assert!(Instant::now() < deadline, "receiver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let r = Receiver {
            _child: common::KillOnDrop(child),
            dir,
            _scratch: scratch,
        };
        (r, port)
    }

    /// Waits for the message whose recipients include `rcpt`: its envelope record.
    fn wait_for(&self, rcpt: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let text =
                std::fs::read_to_string(self.dir.join("envelopes.jsonl")).unwrap_or_default();
            let found = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|e| {
                    e["rcpt_tos"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|r| r.as_str() == Some(rcpt)))
                });
            if let Some(e) = found {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "nothing arrived for {rcpt}; received: {text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// dnsmasq, the capture server as MX of remote.test, origin.test and other.test, and an
/// mrelayd for fwd.test with SRS on.
struct World {
    _dns: common::Dns,
    dns_port: u16,
    rx: Receiver,
    _relay: common::KillOnDrop,
    smtp: String,
    dir: tempfile::TempDir,
}

impl World {
    fn start(ip: &str) -> World {
        let (rx, port) = Receiver::start(ip);
        let zone = format!(
            "mx-host=remote.test,mx.remote.test,10\nmx-host=origin.test,mx.remote.test,10\n\
             mx-host=other.test,mx.remote.test,10\nhost-record=mx.remote.test,{ip}\n\
             txt-record=fwd.test,\"v=spf1 ip4:127.0.0.0/8 -all\"\n\
             txt-record=origin.test,\"v=spf1 ip4:192.0.2.0/24 -all\"\n"
        );
        let dns = common::Dns::start(&zone);
        let dir = common::scratch();
        let d = dir.path();
        std::fs::write(
            d.join("passwd"),
            "bob:{PLAIN}password::::::\ncarol:{PLAIN}pw::::::\n",
        )
        .unwrap();
        std::fs::write(
            d.join("aliases"),
            "postmaster: bob\nfan: dest@remote.test\n",
        )
        .unwrap();
        std::fs::write(d.join("carol.sieve"), "redirect \"dest2@remote.test\";\n").unwrap();
        let secret = d.join("srs.secret");
        std::fs::write(&secret, SECRET).unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let config = d.join("mailkit.toml");
        let text = format!(
            "hostname = \"mx.fwd.test\"\nstate_dir = \"{d}/state\"\n\
[users]\npasswd_file = \"{d}/passwd\"\nmail_location = \"{d}/mail/%n\"\ndomains = [\"fwd.test\"]\n\
[mrelayd]\naliases = \"{d}/aliases\"\ntrusted_networks = []\nsieve = \"{d}/%n.sieve\"\n\
listen = [{{ address = \"127.0.0.1:0\", role = \"smtp\" }}]\n\
[mrelayd.srs]\nenable = true\nsecret_file = \"{secret}\"\n\
[mrelayd.remote]\nresolver = \"{resolver}\"\nport = {port}\n",
            d = d.display(),
            secret = secret.display(),
            resolver = dns.addr(),
        );
        std::fs::write(&config, common::with_run_as(&text)).unwrap();
        let (relay, l) = common::start_mrelayd(&config, &d.join("mrelayd.log"), &["smtp"]);
        World {
            dns_port: dns.port,
            _dns: dns,
            rx,
            _relay: relay,
            smtp: l.port("smtp").to_string(),
            dir,
        }
    }

    /// swaks from `from` to `to`: whether it succeeded, and what it said.
    fn send(&self, from: &str, to: &str) -> (bool, String) {
        // swaks takes an empty --from as "the default"; <> is the null sender.
        let from = if from.is_empty() { "<>" } else { from };
        common::swaks(&[
            "--server",
            "127.0.0.1",
            "--port",
            &self.smtp,
            "--from",
            from,
            "--to",
            to,
        ])
    }

    /// Sends and asserts it was accepted.
    fn send_ok(&self, from: &str, to: &str) {
        let (ok, out) = self.send(from, to);
        assert!(ok, "swaks {from} -> {to}: {out}\n{}", self.log());
    }

    /// Sends and asserts RCPT was refused with 550 5.1.1.
    fn send_refused(&self, from: &str, to: &str) {
        let (ok, out) = self.send(from, to);
        assert!(
            !ok && out.contains("550 5.1.1"),
            "{to} should be refused with 550 5.1.1: {out}"
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mrelayd.log")).unwrap_or_default()
    }

    /// python3-spf's result for `sender` from 127.0.0.1 (mrelayd's address on loopback),
    /// asking this world's dnsmasq.
    fn spf(&self, sender: &str) -> String {
        let script = format!(
            "import sys, dns.resolver, spf\n\
             r = dns.resolver.Resolver(configure=False)\n\
             r.nameservers = ['127.0.0.1']\nr.port = {}\n\
             dns.resolver.default_resolver = r\n\
             print(spf.check2(i='127.0.0.1', s=sys.argv[1], h='mx.fwd.test')[0])\n",
            self.dns_port
        );
        let out = Command::new(PY)
            .args(["-c", &script, sender])
            .output()
            .expect("python3");
        let (ok, text) = common::status_and_text(&out);
        assert!(ok, "python3-spf: {text}");
        text.trim().to_string()
    }
}

fn mail_from(env: &Value) -> String {
    env["mail_from"].as_str().unwrap_or_default().to_string()
}

/// An SRS0 address at fwd.test computed with python3's hmac, base64 and the day `days_ago`
/// days before today: the format independently of mrelayd.
fn python_srs0(local: &str, domain: &str, days_ago: u64) -> String {
    let script = "import sys, hmac, hashlib, base64, time\n\
        day = (int(time.time()) // 86400 - int(sys.argv[4])) % 1024\n\
        b32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'\n\
        tt = b32[day >> 5] + b32[day & 31]\n\
        msg = (tt + sys.argv[3] + sys.argv[2]).lower().encode()\n\
        h = base64.b64encode(hmac.new(sys.argv[1].encode(), msg, hashlib.sha1).digest())[:4]\n\
        print('SRS0=%s=%s=%s=%s@fwd.test' % (h.decode(), tt, sys.argv[3], sys.argv[2]))\n";
    let out = Command::new(PY)
        .args(["-c", script, SECRET.trim(), local, domain])
        .arg(days_ago.to_string())
        .output()
        .expect("python3");
    let (ok, text) = common::status_and_text(&out);
    assert!(ok, "python3: {text}");
    text.trim().to_string()
}

#[test]
fn forwarded_mail_passes_spf_and_bounces_come_back() {
    let w = World::start("127.57.1.2");
    // The alias: the copy to remote.test goes out from an SRS0 address of ours.
    w.send_ok("alice@origin.test", "fan@fwd.test");
    let env = w.rx.wait_for("dest@remote.test");
    let srs = mail_from(&env);
    assert!(
        srs.starts_with("SRS0=") && srs.ends_with("=origin.test=alice@fwd.test"),
        "{env}"
    );
    // SPF at the next hop: our record passes, the original sender's would fail.
    assert_eq!(w.spf(&srs), "pass");
    assert_eq!(w.spf("alice@origin.test"), "fail");

    // A bounce to it reaches the original sender (through origin.test's MX); also with the
    // address lower-cased on the way (the hash is compared without case).
    w.send_ok("", &srs);
    let bounce = w.rx.wait_for("alice@origin.test");
    assert_eq!(mail_from(&bounce), "<>", "{bounce}");
    let lower = srs.to_lowercase();
    w.send_ok("", &lower);

    // A Sieve redirect in mrelayd's own local delivery: the same rewrite.
    w.send_ok("dave@origin.test", "carol@fwd.test");
    let env = w.rx.wait_for("dest2@remote.test");
    let redirected = mail_from(&env);
    assert!(
        redirected.starts_with("SRS0=") && redirected.ends_with("=origin.test=dave@fwd.test"),
        "{env}"
    );

    // Not rewritten: our own domain's senders and the null sender.
    w.send_ok("bob@fwd.test", "fan@fwd.test");
    w.send_ok("", "fan@fwd.test");
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(w.rx.dir.join("envelopes.jsonl")).unwrap_or_default();
        let froms: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["rcpt_tos"][0] == "dest@remote.test")
            .map(|e| mail_from(&e))
            .collect();
        if froms.len() >= 3 {
            assert!(froms.contains(&"bob@fwd.test".to_string()), "{froms:?}");
            assert!(froms.contains(&"<>".to_string()), "{froms:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{froms:?}\n{}", w.log());
        std::thread::sleep(Duration::from_millis(100));
    }

    // Forged: one hash character changed; another domain under a valid-looking hash.
    let (head, tail) = srs.split_at(5);
    let c = tail.chars().next().unwrap();
    let other = if c == 'A' { 'B' } else { 'A' };
    let forged = format!("{head}{other}{}", &tail[1..]);
    w.send_refused("", &forged);
    w.send_refused("", &srs.replace("=origin.test=", "=evil.test="));
    w.send_refused("", "SRS0=junk@fwd.test");
    // Expired: a correct hash over a timestamp 30 days old (21 allowed); the same
    // computation for today is accepted, so only the age differs.
    let fresh = python_srs0("erin", "origin.test", 0);
    w.send_ok("", &fresh);
    w.rx.wait_for("erin@origin.test");
    let expired = python_srs0("frank", "origin.test", 30);
    w.send_refused("", &expired);
}

/// postsrsd's tcp_table: `get ADDRESS` on `port`, the reply with %XX decoded.
fn postsrsd_get(port: u16, address: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("postsrsd");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    writeln!(s, "get {address}").unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    let b = line.trim_end().as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(v) if b[i] == b'%' => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn postsrsd_and_mrelayd_read_each_others_addresses() {
    let w = World::start("127.57.2.2");
    let secret = w.dir.path().join("srs.secret");
    let (postsrsd, ports) = common::with_unused_ports(|[f, r]| {
        let mut child = common::KillOnDrop(
            Command::new("postsrsd")
                .arg(format!("-s{}", secret.display()))
                .args(["-dfwd.test", "-l127.0.0.1", "-4"])
                .arg(format!("-f{f}"))
                .arg(format!("-r{r}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("postsrsd must be installed"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return None;
            }
            if TcpStream::connect(("127.0.0.1", r)).is_ok() {
                return Some((child, (f, r)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    let (fwd_port, rev_port) = ports;

    // Ours, reversed by postsrsd: SRS0 of a plain sender.
    w.send_ok("alice@origin.test", "fan@fwd.test");
    let ours = mail_from(&w.rx.wait_for("dest@remote.test"));
    assert!(ours.starts_with("SRS0="), "{ours}");
    assert_eq!(postsrsd_get(rev_port, &ours), "200 alice@origin.test");
    // SRS1 of an SRS0 sender (another forwarder's): postsrsd sends it back to that forwarder.
    let theirs_srs0 = "SRS0=abcd=AA=origin.test=gina@other.test";
    w.send_ok(theirs_srs0, "fan@fwd.test");
    let deadline = Instant::now() + WAIT;
    let srs1 = loop {
        let text = std::fs::read_to_string(w.rx.dir.join("envelopes.jsonl")).unwrap_or_default();
        let f = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|e| mail_from(&e))
            .find(|f| f.starts_with("SRS1="));
        if let Some(f) = f {
            break f;
        }
        assert!(Instant::now() < deadline, "no SRS1 sender: {text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        srs1.ends_with("=other.test==abcd=AA=origin.test=gina@fwd.test"),
        "{srs1}"
    );
    assert_eq!(postsrsd_get(rev_port, &srs1), format!("200 {theirs_srs0}"));
    // And mrelayd routes a bounce to it to the first forwarder.
    w.send_ok("", &srs1);
    w.rx.wait_for(theirs_srs0);

    // postsrsd's, reversed by mrelayd: a bounce to them reaches the original sender.
    let reply = postsrsd_get(fwd_port, "henry@origin.test");
    let theirs = reply
        .strip_prefix("200 ")
        .unwrap_or_else(|| panic!("{reply}"));
    assert!(
        theirs.starts_with("SRS0=") && theirs.ends_with("@fwd.test"),
        "{theirs}"
    );
    w.send_ok("", theirs);
    let env = w.rx.wait_for("henry@origin.test");
    assert_eq!(mail_from(&env), "<>", "{env}");
    let reply = postsrsd_get(fwd_port, "SRS0=wxyz=AA=origin.test=ivan@other.test");
    let theirs1 = reply
        .strip_prefix("200 ")
        .unwrap_or_else(|| panic!("{reply}"));
    assert!(theirs1.starts_with("SRS1="), "{theirs1}");
    w.send_ok("", theirs1);
    w.rx.wait_for("SRS0=wxyz=AA=origin.test=ivan@other.test");
    // postsrsd refuses what mrelayd refuses: a forged hash.
    let forged = ours.replacen("=origin.test=", "=evil.test=", 1);
    assert!(postsrsd_get(rev_port, &forged).starts_with("500"));
    w.send_refused("", &forged);
    drop(postsrsd);
}
