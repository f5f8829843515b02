//! MTA-STS (RFC 8461, issue 15) in mrelayd's MX delivery, end to end on loopback: policies
//! served over HTTPS by python3's http.server + ssl (`tests/mta_sts/https.py`) with a test CA
//! made here by openssl, the `_mta-sts` TXT, MX and address records by a private dnsmasq, and
//! the MX hosts by the aiosmtpd receiver (`tests/remote/receiver.py`) with STARTTLS and the
//! peers' certificate (valid for mx1/mx2.example.test, from the peers' CA).
//!
//! Every test has its own third octet T: the receiver on 127.61.T.2, the policy server on
//! 127.61.T.3, a second receiver on 127.61.T.4.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const PY: &str = "/usr/bin/python3";
const WAIT: Duration = Duration::from_secs(60);

fn script(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(path)
}

fn ip(t: u8, host: u8) -> String {
    format!("127.61.{t}.{host}")
}

/// A child process killed on drop, with its scratch directory.
struct Proc {
    child: Child,
    dir: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` (which writes `dir/ready` once it listens) and waits for it.
fn start_ready(mut cmd: Command, dir: &Path, what: &str) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let ready = common::wait_for(Duration::from_secs(20), || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited ({st}): {}",
                std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
            );
        }
        dir.join("ready").exists().then_some(())
    });
    assert!(ready.is_some(), "{what} did not start");
    Proc {
        child,
        dir: dir.to_path_buf(),
    }
}

/// A test CA and a server certificate from it for `names` (openssl): (ca, cert, key).
fn test_ca(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be installed");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"],
        &ec[..],
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=mailkit MTA-STS test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    ]
    .concat());
    run(&[
        &["req"],
        &ec[..],
        &[
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=mta-sts",
        ],
    ]
    .concat());
    let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        dir.join("ext.cnf"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            sans.join(",")
        ),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("ca.crt"), dir.join("srv.crt"), dir.join("srv.key"))
}

/// One test's world: DNS, the policy server (its CA) and the scratch directory.
struct World {
    t: u8,
    smtp_port: u16,
    https_port: u16,
    dir: tempfile::TempDir,
    ca: PathBuf,
    https: Option<Proc>,
    dns: common::Dns,
}

/// dnsmasq lines: `domain`'s MX `mx` at 127.61.T.`host`, its policy host at 127.61.T.3 and its
/// `_mta-sts` TXT record with `id`.
fn zone(t: u8, domain: &str, mx: &str, host: u8, id: &str) -> String {
    format!(
        "mx-host={domain},{mx},10\nhost-record={mx},{}\nhost-record=mta-sts.{domain},{}\n\
         txt-record=_mta-sts.{domain},\"v=STSv1; id={id};\"\n",
        ip(t, host),
        ip(t, 3)
    )
}

impl World {
    /// `domain` with MX `mx` at 127.61.T.2 and `policy` served for it.
    fn new(t: u8, domain: &str, mx: &str, policy: &str) -> World {
        let dir = common::scratch();
        let (ca, cert, key) = test_ca(&dir.path().join("ca"), &[&format!("mta-sts.{domain}")]);
        let www = dir.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join(format!("mta-sts.{domain}.txt")), policy).unwrap();
        let https_port = common::port_free_everywhere();
        let mut cmd = Command::new(PY);
        cmd.arg(script("mta_sts/https.py"))
            .arg("--listen")
            .arg(format!("{}:{https_port}", ip(t, 3)))
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .arg("--dir")
            .arg(&www);
        let https = start_ready(cmd, &www, "policy server");
        World {
            t,
            smtp_port: common::port_free_everywhere(),
            https_port,
            ca,
            https: Some(https),
            dns: common::Dns::start(&zone(t, domain, mx, 2, "1")),
            dir,
        }
    }

    /// The aiosmtpd receiver with STARTTLS (the peers' certificate) on 127.61.T.`host`.
    fn receiver(&self, host: u8) -> Proc {
        let dir = self.dir.path().join(format!("rx{host}"));
        let mut cmd = Command::new(PY);
        cmd.arg(script("remote/receiver.py"))
            .arg("--dir")
            .arg(&dir)
            .arg("--listen")
            .arg(format!("{}:{}", ip(self.t, host), self.smtp_port))
            .arg("--cert")
            .arg(common::peer("PEER_CERT_FILE"))
            .arg("--key")
            .arg(common::peer("PEER_KEY_FILE"));
        start_ready(cmd, &dir, "receiver")
    }

    /// `mdig-mx ARGS DOMAIN` with this world's DNS, CA and policy port: exit code, stdout.
    fn mdig_run(&self, json: bool, domain: &str) -> (i32, String) {
        let mut cmd = Command::new(common::bin("mdig-mx"));
        cmd.arg("--resolver")
            .arg(self.dns.addr())
            .arg("--ca-file")
            .arg(&self.ca)
            .arg("--mta-sts-port")
            .arg(self.https_port.to_string())
            .arg("--timeout")
            .arg("10");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.arg(domain).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code().unwrap_or(-1), text)
    }

    /// `mdig-mx --json DOMAIN`: exit code and the document.
    fn mdig(&self, domain: &str) -> (i32, Value) {
        let (code, text) = self.mdig_run(true, domain);
        let doc = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (code, doc)
    }

    /// `mdig-mx DOMAIN`'s text report.
    fn mdig_text(&self, domain: &str) -> String {
        self.mdig_run(false, domain).1
    }

    /// Policy fetches the server answered so far.
    fn fetches(&self) -> usize {
        let log = self.dir.path().join("www/requests.log");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .count()
    }

    /// mrelayd relaying for loopback by MX with MTA-STS on (the default: the config does not
    /// say `mta_sts`), DNS from `dns`, state in `m/`.
    fn mrelayd(&self, dns: &common::Dns) -> Mrelayd {
        self.mrelayd_with(dns, "")
    }

    /// [`World::mrelayd`] with `extra` lines in `[mrelayd.remote]`.
    fn mrelayd_with(&self, dns: &common::Dns, extra: &str) -> Mrelayd {
        let dir = self.dir.path().join("m");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("passwd"), "alice:{PLAIN}password::::::\n").unwrap();
        std::fs::write(
            dir.join("aliases"),
            "postmaster: alice\nmailer-daemon: alice\n",
        )
        .unwrap();
        let config = dir.join("mailkit.toml");
        let text = format!(
            "hostname = \"mx.example.test\"\nstate_dir = \"{state}\"\n\
[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
[users]\npasswd_file = \"{dir}/passwd\"\nmail_location = \"{dir}/mail/%n\"\ndomains = [\"example.test\"]\n\
[mrelayd]\ntrusted_networks = [\"127.0.0.0/8\"]\naliases = \"{dir}/aliases\"\n\
listen = [ {{ address = \"127.0.0.1:0\", role = \"smtp\" }} ]\n\
[mrelayd.remote]\nresolver = \"{resolver}\"\nport = {port}\nca_file = \"{peer_ca}\"\n\
retry_initial_secs = 3600\nconnect_timeout_secs = 10\n\
mta_sts_ca_file = \"{ca}\"\nmta_sts_port = {https}\nmta_sts_timeout_secs = 10\n{extra}",
            state = dir.join("state").display(),
            cert = common::peer("PEER_CERT_FILE"),
            key = common::peer("PEER_KEY_FILE"),
            dir = dir.display(),
            resolver = dns.addr(),
            port = self.smtp_port,
            peer_ca = common::peer("PEER_CA_FILE"),
            ca = self.ca.display(),
            https = self.https_port,
        );
        std::fs::write(&config, common::with_run_as(&text)).unwrap();
        let log = dir.join("mrelayd.log");
        let (child, listening) = common::start_mrelayd(&config, &log, &["smtp"]);
        Mrelayd {
            _child: child,
            port: listening.port("smtp"),
            config,
            log,
            state: dir.join("state"),
        }
    }
}

struct Mrelayd {
    _child: common::KillOnDrop,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    state: PathBuf,
}

impl Mrelayd {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn queue(&self) -> String {
        let o = common::mrelayd_cli(&self.config, &["queue"]);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// Sends one message from alice@example.test to `rcpt`; returns its subject token.
    fn send(&self, rcpt: &str) -> String {
        let tok = format!("mtasts-{:016x}", common::rand_u64());
        let tmp = common::scratch();
        let msg = tmp.path().join("m.eml");
        std::fs::write(
            &msg,
            format!(
                "From: alice@example.test\r\nTo: {rcpt}\r\nSubject: {tok}\r\n\r\nbody {tok}\r\n"
            ),
        )
        .unwrap();
        let out = Command::new(PY)
            .arg(script("remote/send.py"))
            .arg(self.port.to_string())
            .arg("alice@example.test")
            .arg(rcpt)
            .arg(&msg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "send.py: {out:?}\n{}",
            self.log_text()
        );
        tok
    }

    /// Waits until the queue listing shows `rcpt` deferred with every one of `needles` in it.
    fn wait_deferred(&self, rcpt: &str, needles: &[&str]) -> String {
        common::wait_for(WAIT, || {
            let q = self.queue();
            (q.contains(rcpt) && needles.iter().all(|n| q.contains(n))).then_some(q)
        })
        .unwrap_or_else(|| {
            panic!(
                "{rcpt} never deferred with {needles:?}:\n{}\nlog:\n{}",
                self.queue(),
                self.log_text()
            )
        })
    }
}

/// The receiver's envelopes (one JSON line per message).
fn envelopes(rx: &Proc) -> Vec<Value> {
    std::fs::read_to_string(rx.dir.join("envelopes.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// RCPT commands the receiver saw.
fn rcpts_seen(rx: &Proc) -> usize {
    std::fs::read_to_string(rx.dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"rcpt\""))
        .count()
}

/// Waits for a message with `tok` at `rx`; returns its envelope.
fn wait_delivered(rx: &Proc, tok: &str, m: &Mrelayd) -> Value {
    common::wait_for(WAIT, || {
        envelopes(rx).into_iter().find(|e| {
            let file = e["file"].as_str().unwrap_or("");
            std::fs::read_to_string(rx.dir.join(file))
                .or_else(|_| std::fs::read_to_string(file))
                .is_ok_and(|t| t.contains(tok))
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "{tok} not delivered:\n{}\nlog:\n{}",
            m.queue(),
            m.log_text()
        )
    })
}

fn policy(mode: &str, mx: &[&str]) -> String {
    let mut s = format!("version: STSv1\r\nmode: {mode}\r\n");
    for m in mx {
        s.push_str(&format!("mx: {m}\r\n"));
    }
    s + "max_age: 86400\r\n"
}

/// enforce, the MX in the policy (by wildcard), its certificate valid for its name: delivered
/// over TLS; the policy was fetched once and cached durably in the state directory.
#[test]
fn enforce_with_valid_tls_delivers() {
    let w = World::new(
        1,
        "good.test",
        "mx2.example.test",
        &policy("enforce", &["*.example.test"]),
    );
    let rx = w.receiver(2);
    let m = w.mrelayd(&w.dns);
    let tok = m.send("user@good.test");
    let env = wait_delivered(&rx, &tok, &m);
    assert_eq!(env["tls"], true, "delivered without TLS");
    assert!(
        m.log_text().contains("policy id 1 fetched: mode enforce"),
        "{}",
        m.log_text()
    );
    assert_eq!(w.fetches(), 1);
    let cached = std::fs::read_to_string(m.state.join("mta-sts/good.test")).unwrap();
    assert!(cached.contains("mode: enforce"), "{cached}");
    // mdig-mx shows the policy and that the MX matches it.
    let (code, doc) = w.mdig("good.test");
    assert_eq!(code, 0, "{doc}");
    let p = &doc["domains"][0]["mta_sts_policy"];
    assert_eq!(p["id"], "1");
    assert_eq!(p["policy"]["mode"], "enforce");
    assert_eq!(p["policy"]["mx"], serde_json::json!(["*.example.test"]));
    assert_eq!(p["policy"]["max_age"], 86400);
    assert_eq!(
        p["mx"],
        serde_json::json!([{"host": "mx2.example.test", "matches": true}])
    );
}

/// enforce, the domain's only MX not in the policy: deferred (4.7.5, the queue says why),
/// nothing sent to it.
#[test]
fn enforce_mx_not_in_policy_defers() {
    let w = World::new(
        2,
        "notmx.test",
        "mx2.example.test",
        &policy("enforce", &["mx.elsewhere.test"]),
    );
    let rx = w.receiver(2);
    let m = w.mrelayd(&w.dns);
    m.send("user@notmx.test");
    m.wait_deferred(
        "<user@notmx.test>",
        &[
            "MTA-STS policy 1 of notmx.test (enforce)",
            "no MX host matches",
        ],
    );
    assert!(m.log_text().contains("dsn=4.7.5"), "{}", m.log_text());
    assert_eq!(rcpts_seen(&rx), 0, "sent to an MX the policy does not name");
    assert!(envelopes(&rx).is_empty());
    // mdig-mx says so too (exit 1: a problem), in text and JSON.
    let (code, doc) = w.mdig("notmx.test");
    assert_eq!(code, 1, "{doc}");
    let d = &doc["domains"][0];
    assert_eq!(
        d["mta_sts_policy"]["mx"],
        serde_json::json!([{"host": "mx2.example.test", "matches": false}])
    );
    assert!(d["problems"][0]
        .as_str()
        .unwrap()
        .contains("MX mx2.example.test is not in the MTA-STS policy (enforce)"));
    let text = w.mdig_text("notmx.test");
    assert!(text.contains("MTA-STS policy (https://mta-sts.notmx.test/.well-known/mta-sts.txt): mode enforce, max_age 86400"), "{text}");
    assert!(text.contains("    mx: mx.elsewhere.test\n"), "{text}");
    assert!(
        text.contains("    MX mx2.example.test: NOT in the policy\n"),
        "{text}"
    );
}

/// `mta_sts = false`: the same enforce policy that defers above is not looked at (no TXT
/// query's policy fetched), the mail goes to the MX the policy does not name.
#[test]
fn mta_sts_false_ignores_policies() {
    let w = World::new(
        7,
        "off.test",
        "mx2.example.test",
        &policy("enforce", &["mx.elsewhere.test"]),
    );
    let rx = w.receiver(2);
    let m = w.mrelayd_with(&w.dns, "mta_sts = false\n");
    let tok = m.send("user@off.test");
    wait_delivered(&rx, &tok, &m);
    assert_eq!(w.fetches(), 0, "policy fetched with mta_sts = false");
    assert!(!m.log_text().contains("mta-sts:"), "{}", m.log_text());
}

/// enforce, the MX in the policy but its certificate not valid for its name: deferred with
/// the certificate error, no RCPT sent (not even in clear).
#[test]
fn enforce_with_bad_certificate_defers() {
    let w = World::new(
        3,
        "badcert.test",
        "mx.badcert.test",
        &policy("enforce", &["mx.badcert.test"]),
    );
    let rx = w.receiver(2);
    let m = w.mrelayd(&w.dns);
    m.send("user@badcert.test");
    let q = m.wait_deferred(
        "<user@badcert.test>",
        &["MTA-STS policy 1 of badcert.test (enforce)"],
    );
    assert!(q.to_ascii_lowercase().contains("certificate"), "{q}");
    assert!(m.log_text().contains("dsn=4.7.5"), "{}", m.log_text());
    assert_eq!(
        rcpts_seen(&rx),
        0,
        "RCPT sent despite the failed verification"
    );
}

/// testing, the same bad certificate and an MX not in the policy: delivered anyway (the
/// configured opportunistic TLS), both failures logged.
#[test]
fn testing_mode_delivers_and_logs() {
    let w = World::new(
        4,
        "testing.test",
        "mx.testing.test",
        &policy("testing", &["mx.other.test"]),
    );
    let rx = w.receiver(2);
    let m = w.mrelayd(&w.dns);
    let tok = m.send("user@testing.test");
    wait_delivered(&rx, &tok, &m);
    let log = m.log_text();
    assert!(
        log.contains("MX mx.testing.test not in the policy; delivering anyway (testing)"),
        "{log}"
    );
    assert!(
        log.contains("delivering anyway (testing)")
            && log.to_ascii_lowercase().contains("certificate"),
        "{log}"
    );
}

/// The cached policy outlives a restart: with the policy server down and the domain's MX
/// moved to a host the policy does not name, the restarted mrelayd defers (the cache
/// applied); without the cache it would have delivered there.
#[test]
fn cached_policy_survives_restart_with_server_down() {
    let mut w = World::new(
        5,
        "cache.test",
        "mx2.example.test",
        &policy("enforce", &["mx2.example.test"]),
    );
    let rx = w.receiver(2);
    let m = w.mrelayd(&w.dns);
    let tok = m.send("user@cache.test");
    wait_delivered(&rx, &tok, &m);
    assert_eq!(w.fetches(), 1);
    drop(m);
    w.https = None;
    // Same TXT id, the MX now mx1.example.test (a valid certificate) at 127.61.5.4.
    let dns2 = common::Dns::start(&zone(5, "cache.test", "mx1.example.test", 4, "1"));
    let rx2 = w.receiver(4);
    let m = w.mrelayd(&dns2);
    m.send("user@cache.test");
    m.wait_deferred(
        "<user@cache.test>",
        &[
            "MTA-STS policy 1 of cache.test (enforce)",
            "no MX host matches",
        ],
    );
    assert_eq!(
        rcpts_seen(&rx2),
        0,
        "cached policy not applied after the restart"
    );
    assert_eq!(
        w.fetches(),
        1,
        "fetched again although the id did not change"
    );
}

/// A new id in the TXT record fetches the policy again (RFC 8461 §5.1) and the new policy
/// applies at once, although the cached one has not expired.
#[test]
fn new_txt_id_refreshes_the_policy() {
    let w = World::new(
        6,
        "refresh.test",
        "mx2.example.test",
        &policy("enforce", &["mx2.example.test"]),
    );
    let rx = w.receiver(2);
    let m = w.mrelayd(&w.dns);
    let tok = m.send("user@refresh.test");
    wait_delivered(&rx, &tok, &m);
    drop(m);
    let www = w.dir.path().join("www/mta-sts.refresh.test.txt");
    std::fs::write(&www, policy("enforce", &["mx.elsewhere.test"])).unwrap();
    let dns2 = common::Dns::start(&zone(6, "refresh.test", "mx2.example.test", 2, "2"));
    let m = w.mrelayd(&dns2);
    m.send("user@refresh.test");
    m.wait_deferred(
        "<user@refresh.test>",
        &[
            "MTA-STS policy 2 of refresh.test (enforce)",
            "no MX host matches",
        ],
    );
    assert_eq!(w.fetches(), 2, "the new id was not fetched");
    assert_eq!(envelopes(&rx).len(), 1, "the new policy did not apply");
}
