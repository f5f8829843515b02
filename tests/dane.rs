//! DANE for SMTP (RFC 7672, issue 15) end to end: mrelayd delivers by MX through a validating
//! resolver (unbound, with the test zone's DS as its only trust anchor) in front of an
//! authoritative server (nsd) serving a zone signed with ldnsutils' `ldns-keygen` and
//! `ldns-signzone`, and an unsigned one. Every daemon listens on its own loopback port.
//!
//! The MX hosts all point at one aiosmtpd capture server (tests/peers/lib/capture.py) offering
//! STARTTLS with a throwaway CA's certificate and the CA in its chain, named for
//! `mx-ta.dane.test` only:
//! - `ee.dane.test`: TLSA 3 1 1 (DANE-EE, the key's SHA-256) for a host the certificate does
//!   not name: delivered over TLS (DANE-EE ignores names, RFC 7672 §3.1.1).
//! - `ta.dane.test`: TLSA 2 0 1 (DANE-TA, the CA certificate's SHA-256): delivered over TLS.
//! - `bad.dane.test`: a TLSA 3 1 1 that matches nothing: deferred (4.7.5), nothing sent.
//! - `plain.test` (unsigned): the same mismatching TLSA is not trusted; delivered as
//!   opportunistic TLS.
//!
//! With `dane = false` the mismatching domain is delivered opportunistically.
//!
//! DANE ahead of MTA-STS (RFC 8461 §2): `ee.dane.test` and `sts.dane.test` also publish an
//! MTA-STS `enforce` policy (served by tests/mta_sts/https.py) whose CA did not issue the
//! receiver's certificate: `ee.dane.test`, with usable TLSA records, is delivered by DANE;
//! `sts.dane.test`, with a secure MX but no TLSA records, follows the policy and is deferred.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

const WAIT: Duration = Duration::from_secs(30);

fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .to_vec()
}

fn spki_sha256(cert_der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(cert_der).expect("cert");
    hex(&sha2::Sha256::digest(c.tbs_certificate.subject_pki.raw))
}

/// Runs `cmd` in `dir`, failing the test with its output unless it succeeds; its stdout.
fn run(dir: &Path, cmd: &mut Command) -> String {
    let out = cmd
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (ldnsutils, nsd and unbound must be installed)"));
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether `dig @127.0.0.1 -p PORT NAME TYPE` answers (any data).
fn dig(port: u16, name: &str, rtype: &str, ad: bool) -> String {
    let out = Command::new("dig")
        .args(["+time=1", "+tries=1", "@127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg(if ad { "+adflag" } else { "+noadflag" })
        .args([name, rtype])
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts a daemon on fixed ports picked by [`common::with_unused_ports`]; ready when `ready`.
fn start(cmd: &mut Command, log: &Path, ready: impl Fn() -> bool) -> Option<common::KillOnDrop> {
    let file = std::fs::File::create(log).unwrap();
    let mut child = common::KillOnDrop(
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
    );
    let up = wait_for(Duration::from_secs(10), || {
        if let Ok(Some(_)) = child.0.try_wait() {
            return Some(false);
        }
        ready().then_some(true)
    });
    if up == Some(true) {
        Some(child)
    } else {
        eprintln!(
            "{cmd:?} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        None
    }
}

struct World {
    dir: tempfile::TempDir,
    capture_dir: PathBuf,
    resolver: u16,
    smtp_port: u16,
    /// The TLSA data of `ee.dane.test`'s host: the receiver key's SHA-256.
    leaf_key: String,
    _daemons: Vec<common::KillOnDrop>,
}

fn world() -> World {
    let dir = common::scratch();
    let d = dir.path().to_path_buf();
    // The receiver's certificate: a throwaway CA and a leaf for mx-ta.dane.test only.
    let pair = mailkit::tls::self_signed(&["mx-ta.dane.test".to_string()]).unwrap();
    std::fs::write(
        d.join("chain.pem"),
        format!("{}{}", pair.cert_pem, pair.ca_pem),
    )
    .unwrap();
    std::fs::write(d.join("key.pem"), &pair.key_pem).unwrap();
    let leaf_key = spki_sha256(&der(&pair.cert_pem));
    let ca_cert = hex(&sha2::Sha256::digest(der(&pair.ca_pem)));
    let wrong = hex(&sha2::Sha256::digest(b"no such key"));

    let capture_dir = d.join("capture");
    std::fs::create_dir_all(&capture_dir).unwrap();
    common::give_to_nobody(&capture_dir);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/lib/capture.py");
    let (capture, smtp_port) = common::with_unused_ports(|[port]| {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(&script)
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(&capture_dir)
            .arg(d.join("chain.pem"))
            .arg(d.join("key.pem"));
        start(&mut cmd, &d.join("capture.log"), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .map(|c| (c, port))
    });

    let p = smtp_port;
    let signed = format!(
        "$ORIGIN dane.test.\n$TTL 300\n\
@ IN SOA ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 300\n\
@ IN NS ns.dane.test.\nns IN A 127.0.0.1\n\
ee IN MX 10 mx-ee.dane.test.\nmx-ee IN A 127.0.0.1\n\
_{p}._tcp.mx-ee IN TLSA 3 1 1 {leaf_key}\n\
ta IN MX 10 mx-ta.dane.test.\nmx-ta IN A 127.0.0.1\n\
_{p}._tcp.mx-ta IN TLSA 2 0 1 {ca_cert}\n\
bad IN MX 10 mx-bad.dane.test.\nmx-bad IN A 127.0.0.1\n\
_{p}._tcp.mx-bad IN TLSA 3 1 1 {wrong}\n\
_mta-sts.ee IN TXT \"v=STSv1; id=dane1\"\nmta-sts.ee IN A 127.0.0.1\n\
sts IN MX 10 mx-sts.dane.test.\nmx-sts IN A 127.0.0.1\n\
_mta-sts.sts IN TXT \"v=STSv1; id=dane1\"\nmta-sts.sts IN A 127.0.0.1\n"
    );
    let unsigned = format!(
        "$ORIGIN plain.test.\n$TTL 300\n\
@ IN SOA ns.plain.test. hostmaster.plain.test. 1 3600 600 86400 300\n\
@ IN NS ns.plain.test.\nns IN A 127.0.0.1\n\
@ IN MX 10 mx.plain.test.\nmx IN A 127.0.0.1\n\
_{p}._tcp.mx IN TLSA 3 1 1 {wrong}\n"
    );
    std::fs::write(d.join("dane.test.zone"), signed).unwrap();
    std::fs::write(d.join("plain.test.zone"), unsigned).unwrap();
    let key = run(
        &d,
        Command::new("ldns-keygen").args(["-k", "-a", "ECDSAP256SHA256", "dane.test"]),
    );
    run(
        &d,
        Command::new("ldns-signzone").args(["dane.test.zone", key.as_str()]),
    );

    let (nsd, nsd_port) = common::with_unused_ports(|[port]| {
        std::fs::write(
            d.join("nsd.conf"),
            format!(
                "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  zonesdir: \"{dir}\"\n\
  pidfile: \"{dir}/nsd.pid\"\n  database: \"\"\n  zonelistfile: \"{dir}/zone.list\"\n\
  xfrdfile: \"{dir}/xfrd.state\"\n  username: \"\"\n  chroot: \"\"\n  do-ip6: no\n\
remote-control:\n  control-enable: no\n\
zone:\n  name: dane.test\n  zonefile: dane.test.zone.signed\n\
zone:\n  name: plain.test\n  zonefile: plain.test.zone\n",
                dir = d.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("nsd");
        cmd.arg("-d").arg("-c").arg(d.join("nsd.conf"));
        start(&mut cmd, &d.join("nsd.log"), || {
            dig(port, "mx.plain.test", "A", false).contains("127.0.0.1")
        })
        .map(|c| (c, port))
    });
    // test. is answered by unbound itself (NXDOMAIN: offline, asking the root would be a
    // SERVFAIL, e.g. for the DMARC tree walk's _dmarc.test); the two zones go to their stubs.
    let (unbound, resolver) = common::with_unused_ports(|[port]| {
        std::fs::write(
            d.join("unbound.conf"),
            format!(
                "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-ip6: no\n\
  username: \"\"\n  chroot: \"\"\n  directory: \"{dir}\"\n  pidfile: \"{dir}/unbound.pid\"\n\
  use-syslog: no\n  logfile: \"\"\n  do-not-query-localhost: no\n\
  access-control: 127.0.0.0/8 allow\n  module-config: \"validator iterator\"\n\
  trust-anchor-file: \"{dir}/{key}.ds\"\n  local-zone: \"test.\" static\n\
  local-zone: \"dane.test.\" transparent\n  local-zone: \"plain.test.\" transparent\n\
  qname-minimisation: no\n  val-log-level: 2\n\
stub-zone:\n  name: \"dane.test\"\n  stub-addr: 127.0.0.1@{nsd_port}\n\
stub-zone:\n  name: \"plain.test\"\n  stub-addr: 127.0.0.1@{nsd_port}\n\
remote-control:\n  control-enable: no\n",
                dir = d.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("unbound");
        cmd.arg("-d").arg("-c").arg(d.join("unbound.conf"));
        start(&mut cmd, &d.join("unbound.log"), || {
            dig(port, "mx-ee.dane.test", "A", true).contains("127.0.0.1")
        })
        .map(|c| (c, port))
    });
    // The setup itself: the signed zone validates (AD), the unsigned one does not.
    let signed = dig(
        resolver,
        &format!("_{p}._tcp.mx-ee.dane.test"),
        "TLSA",
        true,
    );
    assert!(
        signed.contains(" ad;") || signed.contains(" ad "),
        "unbound does not validate dane.test: {signed}"
    );
    let plain = dig(resolver, &format!("_{p}._tcp.mx.plain.test"), "TLSA", true);
    assert!(
        plain.contains("TLSA") && !plain.contains(" ad;"),
        "plain.test: {plain}"
    );
    World {
        dir,
        capture_dir,
        resolver,
        smtp_port,
        leaf_key,
        _daemons: vec![capture, nsd, unbound],
    }
}

/// A running mrelayd relaying for loopback, MX look-ups through `w`'s unbound.
struct Relay {
    config: PathBuf,
    log: PathBuf,
    port: u16,
    _child: common::KillOnDrop,
}

impl Relay {
    fn start(w: &World, extra: &str) -> Relay {
        let d = w.dir.path().join("relay");
        std::fs::create_dir_all(&d).unwrap();
        let passwd = d.join("passwd");
        std::fs::write(&passwd, "alice:{PLAIN}password::::::\n").unwrap();
        let aliases = d.join("aliases");
        std::fs::write(&aliases, "postmaster: alice\nmailer-daemon: alice\n").unwrap();
        let config = d.join("mailkit.toml");
        let text = format!(
            "hostname = \"relay.example.test\"\nstate_dir = \"{state}\"\n\
[users]\npasswd_file = \"{passwd}\"\nmail_location = \"{mail}/%n\"\ndomains = [\"example.test\"]\n\
[mrelayd]\ntrusted_networks = [\"127.0.0.0/8\"]\naliases = \"{aliases}\"\n\
listen = [ {{ address = \"127.0.0.1:0\", role = \"smtp\" }} ]\n\
[mrelayd.remote]\nresolver = \"127.0.0.1:{resolver}\"\nport = {port}\nretry_initial_secs = 3600\n{extra}\n",
            state = d.join("state").display(),
            passwd = passwd.display(),
            mail = d.join("mail").display(),
            aliases = aliases.display(),
            resolver = w.resolver,
            port = w.smtp_port,
        );
        std::fs::write(&config, common::with_run_as(&text)).unwrap();
        common::give_to_nobody(&d);
        let log = d.join("mrelayd.log");
        let (child, l) = common::start_mrelayd(&config, &log, &["smtp"]);
        Relay {
            config,
            log,
            port: l.port("smtp"),
            _child: child,
        }
    }

    fn send(&self, rcpt: &str, token: &str) {
        let port = self.port.to_string();
        let (ok, out) = common::swaks(&[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--from",
            "alice@example.test",
            "--to",
            rcpt,
            "--header",
            &format!("Subject: {token}"),
            "--body",
            token,
        ]);
        assert!(ok, "swaks: {out}");
    }

    fn queue(&self) -> String {
        let o = common::mrelayd_cli(&self.config, &["queue"]);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[test]
fn dane_ee_ta_mismatch_and_unsigned_zone() {
    let w = world();
    let relay = Relay::start(&w, "");
    let cases = [
        ("user@ee.dane.test", true),
        ("user@ta.dane.test", true),
        ("user@plain.test", true),
        ("user@bad.dane.test", false),
    ];
    let tokens: Vec<String> = cases.iter().map(|_| common::token()).collect();
    for ((rcpt, _), tok) in cases.iter().zip(&tokens) {
        relay.send(rcpt, tok);
    }
    for ((rcpt, delivered), tok) in cases.iter().zip(&tokens) {
        if !delivered {
            continue;
        }
        let (_, env) = common::captured(&w.capture_dir, tok).unwrap_or_else(|| {
            panic!(
                "{rcpt} not delivered; queue: {}\nlog: {}",
                relay.queue(),
                relay.log()
            )
        });
        assert_eq!(env["rcpt_tos"][0], *rcpt, "{env}");
        assert_eq!(env["tls"], true, "{rcpt} delivered without TLS: {env}");
    }
    // Authenticated by DANE where the zone is signed, not where it is not.
    let log = relay.log();
    for (rcpt, host, dane) in [
        ("user@ee.dane.test", "mx-ee.dane.test", true),
        ("user@ta.dane.test", "mx-ta.dane.test", true),
        ("user@plain.test", "mx.plain.test", false),
    ] {
        let sent = format!(
            "to=<{rcpt}> status=sent (<{rcpt}> relay={host}[127.0.0.1]:{}{}",
            w.smtp_port,
            if dane { " (DANE) (" } else { " (" }
        );
        assert!(log.contains(&sent), "{sent} not in {log}");
    }
    // The mismatching TLSA: deferred with the reason (in the queue, as a DSN would say it),
    // with TLS status 4.7.5, and never sent.
    let q = wait_for(WAIT, || {
        let q = relay.queue();
        (q.contains("<user@bad.dane.test>") && q.contains("TLSA")).then_some(q)
    })
    .unwrap_or_else(|| panic!("no TLSA deferral: {}\n{}", relay.queue(), relay.log()));
    assert!(q.contains("no TLSA record matches"), "{q}");
    let log = relay.log();
    assert!(
        log.contains("status=deferred") && log.contains("dsn=4.7.5"),
        "{log}"
    );
    let bad = &tokens[3];
    assert!(
        common::captured_now(&w.capture_dir, bad).is_empty(),
        "the mismatching host got the message"
    );
}

/// `dane = false`: the same mismatching TLSA is ignored and the mail goes out opportunistically.
#[test]
fn dane_off_ignores_tlsa() {
    let w = world();
    let relay = Relay::start(&w, "dane = false");
    let tok = common::token();
    relay.send("user@bad.dane.test", &tok);
    let (_, env) = common::captured(&w.capture_dir, &tok)
        .unwrap_or_else(|| panic!("not delivered: {}\n{}", relay.queue(), relay.log()));
    assert_eq!(env["tls"], true, "{env}");
}

/// mdig-mx reports each MX host's TLSA records and whether they were validated, as text and
/// JSON; the unsigned zone's record is flagged as ignored by senders.
#[test]
fn mdig_mx_reports_tlsa() {
    let w = world();
    let resolver = format!("127.0.0.1:{}", w.resolver);
    let port = w.smtp_port.to_string();
    let mdig = |args: &[&str]| {
        let out = Command::new(common::bin("mdig-mx"))
            .args(["--resolver", &resolver, "--port", &port])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, json) = mdig(&["--json", "ee.dane.test", "ta.dane.test", "plain.test"]);
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let p = w.smtp_port;
    let ee = &v["domains"][0]["tlsa"][0];
    assert_eq!(ee["name"], format!("_{p}._tcp.mx-ee.dane.test"), "{json}");
    assert_eq!(
        (
            &ee["mx_authenticated"],
            &ee["addresses_authenticated"],
            &ee["authenticated"]
        ),
        (&true.into(), &true.into(), &true.into()),
        "{json}"
    );
    assert_eq!(ee["dane"], "dane", "{json}");
    let rec = &ee["records"][0];
    assert_eq!(
        (
            &rec["usage"],
            &rec["selector"],
            &rec["matching"],
            &rec["usable"]
        ),
        (&3.into(), &1.into(), &1.into(), &true.into()),
        "{json}"
    );
    assert_eq!(rec["data"], w.leaf_key.as_str());
    assert_eq!(
        v["domains"][1]["tlsa"][0]["records"][0]["usage"], 2,
        "{json}"
    );
    let plain = &v["domains"][2]["tlsa"][0];
    assert_eq!(plain["authenticated"], false, "{json}");
    assert_eq!(plain["dane"], "none", "{json}");
    assert_eq!(plain["records"].as_array().map(Vec::len), Some(1), "{json}");
    let warnings = v["domains"][2]["warnings"].to_string();
    assert!(warnings.contains("not DNSSEC-validated"), "{json}");
    // MX hosts on loopback are warnings only: exit 0.
    assert_eq!(code, Some(0), "{json}");

    let (_, text) = mdig(&["ee.dane.test"]);
    let want = format!("  TLSA _{p}._tcp.mx-ee.dane.test (DNSSEC-validated):\n    3 1 1 {}\n    DANE: TLS required", w.leaf_key);
    assert!(text.contains(&want), "{text}");
}

/// An MTA-STS `enforce` policy and usable DANE TLSA records for the same MX: DANE decides the
/// certificate check (RFC 8461 §2); where there are no TLSA records the policy does.
#[test]
fn dane_takes_precedence_over_mta_sts() {
    let w = world();
    let d = w.dir.path().join("sts");
    std::fs::create_dir_all(&d).unwrap();
    // The policy server's own CA, which the MX receiver's certificate does not chain to.
    let names = [
        "mta-sts.ee.dane.test".to_string(),
        "mta-sts.sts.dane.test".to_string(),
    ];
    let pair = mailkit::tls::self_signed(&names).unwrap();
    std::fs::write(
        d.join("cert.pem"),
        format!("{}{}", pair.cert_pem, pair.ca_pem),
    )
    .unwrap();
    std::fs::write(d.join("key.pem"), &pair.key_pem).unwrap();
    std::fs::write(d.join("ca.pem"), &pair.ca_pem).unwrap();
    let policies = d.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for (host, mx) in [
        ("mta-sts.ee.dane.test", "mx-ee.dane.test"),
        ("mta-sts.sts.dane.test", "mx-sts.dane.test"),
    ] {
        std::fs::write(
            policies.join(format!("{host}.txt")),
            format!("version: STSv1\nmode: enforce\nmx: {mx}\nmax_age: 86400\n"),
        )
        .unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mta_sts/https.py");
    let (_https, https_port) = common::with_unused_ports(|[port]| {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(&script)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--cert")
            .arg(d.join("cert.pem"))
            .arg("--key")
            .arg(d.join("key.pem"))
            .arg("--dir")
            .arg(&policies);
        let ready = policies.join("ready");
        start(&mut cmd, &d.join("https.log"), || ready.exists()).map(|c| (c, port))
    });
    let relay = Relay::start(
        &w,
        &format!(
            "mta_sts = true\nmta_sts_ca_file = \"{}\"\nmta_sts_port = {https_port}\nmta_sts_timeout_secs = 10",
            d.join("ca.pem").display()
        ),
    );
    let (ee, sts) = (common::token(), common::token());
    relay.send("user@ee.dane.test", &ee);
    relay.send("user@sts.dane.test", &sts);
    let (_, env) = common::captured(&w.capture_dir, &ee).unwrap_or_else(|| {
        panic!(
            "ee.dane.test not delivered: {}\n{}",
            relay.queue(),
            relay.log()
        )
    });
    assert_eq!(env["tls"], true, "{env}");
    let sent = format!(
        "to=<user@ee.dane.test> status=sent (<user@ee.dane.test> relay=mx-ee.dane.test[127.0.0.1]:{} (DANE) (",
        w.smtp_port
    );
    let log = relay.log();
    assert!(log.contains(&sent), "{sent} not in {log}");
    // The policy was there (fetched for both domains) and decides where DANE does not apply.
    let q = wait_for(WAIT, || {
        let q = relay.queue();
        (q.contains("<user@sts.dane.test>") && q.contains("MTA-STS")).then_some(q)
    })
    .unwrap_or_else(|| {
        panic!(
            "sts.dane.test not deferred by its policy: {}\n{}",
            relay.queue(),
            relay.log()
        )
    });
    assert!(
        q.contains("MTA-STS policy dane1 of sts.dane.test (enforce)"),
        "{q}"
    );
    let requests = std::fs::read_to_string(policies.join("requests.log")).unwrap_or_default();
    assert!(
        requests.contains("mta-sts.ee.dane.test /.well-known/mta-sts.txt"),
        "no policy fetch for ee.dane.test: {requests}"
    );
    assert!(
        common::captured_now(&w.capture_dir, &sts).is_empty(),
        "sts.dane.test was delivered despite its enforce policy"
    );
}

/// `msend --direct` walks MX hosts with mrelayd's engine, DANE included: the DANE-EE host is
/// delivered to (exit 0), the mismatching TLSA is an untrusted certificate (exit 69, as
/// msend(1) documents: mrelayd defers it, msend says so at once) with nothing sent, in one
/// readable line.
#[test]
fn msend_direct_uses_dane() {
    let w = world();
    let home = w.dir.path().join("msend-home");
    std::fs::create_dir_all(&home).unwrap();
    let send = |rcpt: &str, tok: &str| {
        let mut child = Command::new(common::bin("msend"))
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("MAILKIT_CONFIG")
            .args(["-v", "--direct", "--resolver"])
            .arg(format!("127.0.0.1:{}", w.resolver))
            .args(["--smtp-port", &w.smtp_port.to_string()])
            .args(["-f", "alice@example.test", rcpt])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("Subject: {tok}\n\n{tok}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (good, bad) = (common::token(), common::token());
    let (code, err) = send("user@ee.dane.test", &good);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("DANE: 1 usable TLSA record(s), TLS required"),
        "{err}"
    );
    let (_, env) = common::captured(&w.capture_dir, &good).expect("ee.dane.test delivered");
    assert_eq!(env["tls"], true, "{env}");
    let (code, err) = send("user@bad.dane.test", &bad);
    assert_eq!(code, Some(69), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("msend: user@bad.dane.test: "))
        .unwrap_or_else(|| panic!("no failure line: {err}"));
    assert!(
        line.contains("certificate not trusted: mx-bad.dane.test: invalid peer certificate: no TLSA record matches the server's certificate"),
        "{line}"
    );
    assert!(!line.contains("OtherError"), "{line}");
    assert!(
        common::captured_now(&w.capture_dir, &bad).is_empty(),
        "the mismatching host got the message"
    );
}
