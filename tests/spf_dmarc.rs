//! SPF (RFC 7208) and DMARC (RFC 7489) in mrelayd (issue 15), against real DNS servers on
//! loopback: dnsmasq serves the SPF, DKIM and DMARC TXT records of the test domains; names
//! under `servfail.test` go (through dnsmasq) to a validating unbound whose trust anchor for
//! that zone cannot match, so it answers SERVFAIL, as a resolver does for a DNSSEC-bogus zone;
//! names under `timeout.test` go to a UDP socket that never answers. Mail comes from swaks on
//! 127.0.0.1, which is not a trusted network here, so every message is checked.
//!
//! - Each SPF result (pass, fail, softfail, neutral, none, permerror, temperror; void lookups
//!   of a:, mx: and exists: under and over the limit; a null sender) is the one python3-spf (Debian's python3-spf,
//!   an independent implementation) gives for the same records and identities.
//! - A forged From: under `p=reject` is refused with 550 5.7.1, and accepted with
//!   `dmarc=fail` under `dmarc_reject = "mark"`; `p=quarantine` is marked, as is a subdomain
//!   under its organizational domain's `sp=quarantine`; SPF alignment is
//!   strict or relaxed as `aspf` says; a DKIM signature (python3-dkim's dkimsign) aligned with
//!   From: passes DMARC when SPF fails.
//! - The DNS outcome table: timeout, SERVFAIL, NXDOMAIN and void lookups over the limit, and
//!   the reply or header each gives, with `temperror = "mark"` and `"tempfail"`: a temporary
//!   failure is never a 5xx.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The DNS servers of one test: the main dnsmasq (mrelayd's and python3-spf's resolver), the
/// unbound behind `servfail.test` with its own dnsmasq, and the silent socket behind
/// `timeout.test`.
struct Dns {
    main: common::Dns,
    _bogus_data: common::Dns,
    _unbound: common::KillOnDrop,
    _silent: std::net::UdpSocket,
    _dir: tempfile::TempDir,
}

/// The records of the test domains (dnsmasq lines). 127.0.0.1 is the client's address.
const ZONE: &str = r#"txt-record=helo.test,"v=spf1 ip4:127.0.0.1 -all"
txt-record=pass.test,"v=spf1 ip4:127.0.0.1 -all"
txt-record=fail.test,"v=spf1 ip4:192.0.2.1 -all"
txt-record=softfail.test,"v=spf1 ip4:192.0.2.1 ~all"
txt-record=neutral.test,"v=spf1 ?all"
txt-record=none.test,"not an SPF record"
txt-record=permerror.test,"v=spf1 include:none.test -all"
txt-record=include.test,"v=spf1 include:pass.test -all"
txt-record=void2.test,"v=spf1 a:nx1.void2.test mx:nx2.void2.test ip4:127.0.0.1 -all"
txt-record=void3.test,"v=spf1 a:nx1.void3.test a:nx2.void3.test a:nx3.void3.test ip4:127.0.0.1 -all"
txt-record=exists2.test,"v=spf1 exists:a.%{d} exists:b.%{d} ip4:127.0.0.1 -all"
txt-record=exists3.test,"v=spf1 exists:a.%{d} exists:b.%{d} exists:c.%{d} ip4:127.0.0.1 -all"
txt-record=existsmix.test,"v=spf1 a:nx1.%{d} exists:a.%{d} include:exists2.test -all"
txt-record=existsok.test,"v=spf1 exists:ok.%{d} -all"
host-record=ok.existsok.test,127.0.0.2
txt-record=existsv6.test,"v=spf1 exists:v6.%{d} -all"
host-record=v6.existsv6.test,::2
txt-record=existstemp.test,"v=spf1 exists:a.%{d} exists:b.%{d} exists:x.servfail.test ip4:127.0.0.1 -all"
txt-record=_dmarc.pass.test,"v=DMARC1; p=reject"
txt-record=forged.test,"v=spf1 ip4:192.0.2.1 -all"
txt-record=_dmarc.forged.test,"v=DMARC1; p=reject"
txt-record=quarantine.test,"v=spf1 ip4:192.0.2.1 -all"
txt-record=_dmarc.quarantine.test,"v=DMARC1; p=quarantine"
txt-record=_dmarc.org.test,"v=DMARC1; p=reject; sp=quarantine"
txt-record=mail.strict.test,"v=spf1 ip4:127.0.0.1 -all"
txt-record=_dmarc.strict.test,"v=DMARC1; p=reject; aspf=s"
txt-record=mail.relaxed.test,"v=spf1 ip4:127.0.0.1 -all"
txt-record=_dmarc.relaxed.test,"v=DMARC1; p=reject; aspf=r"
txt-record=signed.test,"v=spf1 ip4:192.0.2.1 -all"
txt-record=_dmarc.signed.test,"v=DMARC1; p=reject; adkim=s"
txt-record=tfrom.test,"v=spf1 include:x.servfail.test -all"
txt-record=_dmarc.tfrom.test,"v=DMARC1; p=reject"
"#;

impl Dns {
    /// Starts them all; `extra`: more dnsmasq lines for the main one (a DKIM key).
    fn start(extra: &str) -> Dns {
        let dir = common::scratch();
        // The zone unbound forwards to: answers, but unsigned.
        let bogus_data = common::Dns::start(r#"txt-record=x.servfail.test,"v=spf1 +all""#);
        let unbound_conf = dir.path().join("unbound.conf");
        let (unbound, unbound_port) = common::with_unused_ports(|[port]| {
            std::fs::write(
                &unbound_conf,
                format!(
                    "server:\n  interface: 127.0.0.1\n  port: {port}\n  do-daemonize: no\n\
                     use-syslog: no\n  logfile: \"\"\n  chroot: \"\"\n  username: \"\"\n\
                     pidfile: \"\"\n  directory: \"{dir}\"\n  do-not-query-localhost: no\n\
                     do-ip6: no\n  module-config: \"validator iterator\"\n\
                     local-zone: \"test.\" nodefault\n\
                     trust-anchor: \"servfail.test. DS 12345 13 2 {zeros}\"\n\
                     forward-zone:\n  name: \"servfail.test.\"\n  forward-addr: 127.0.0.1@{data}\n",
                    dir = dir.path().display(),
                    zeros = "0".repeat(64),
                    data = bogus_data.port,
                ),
            )
            .unwrap();
            let mut child = Command::new("unbound")
                .args(["-d", "-c"])
                .arg(&unbound_conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("unbound (Debian unbound) must be installed");
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return None; // the port was taken meanwhile
                }
                let status = dig(port, "x.servfail.test", "TXT");
                if status.contains("status: SERVFAIL") {
                    return Some((common::KillOnDrop(child), port));
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            None
        });
        // A UDP socket nobody reads: queries to it time out.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let main = common::Dns::start(&format!(
            "server=/servfail.test/127.0.0.1#{unbound_port}\n\
             server=/timeout.test/127.0.0.1#{silent_port}\n{ZONE}{extra}"
        ));
        let status = dig(main.port, "x.servfail.test", "TXT");
        assert!(status.contains("status: SERVFAIL"), "{status}");
        Dns {
            main,
            _bogus_data: bogus_data,
            _unbound: unbound,
            _silent: silent,
            _dir: dir,
        }
    }
}

/// dig's answer header for NAME TYPE asked of 127.0.0.1:`port`.
fn dig(port: u16, name: &str, ty: &str) -> String {
    Command::new("dig")
        .args(["+time=1", "+tries=1", "@127.0.0.1", "-p"])
        .arg(port.to_string())
        .args([name, ty])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// One mrelayd with the smtp listener, no trusted networks, DNS from `resolver` and
/// `[mrelayd.spf_dmarc]` set to `policy`; local delivery into `mail/bob`.
struct Relay {
    _child: common::KillOnDrop,
    port: u16,
    dir: PathBuf,
    sent: std::cell::Cell<usize>,
}

impl Relay {
    fn start(dir: &Path, resolver: &str, policy: &str) -> Relay {
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, "bob:{PLAIN}password::::::\n").unwrap();
        let aliases = dir.join("aliases");
        std::fs::write(&aliases, "postmaster: bob\n").unwrap();
        let config = dir.join("mailkit.toml");
        let text = format!(
            "hostname = \"mx.example.test\"\nstate_dir = \"{state}\"\n\
[users]\npasswd_file = \"{passwd}\"\nmail_location = \"{mail}/%n\"\ndomains = [\"example.test\"]\n\
[mrelayd]\naliases = \"{aliases}\"\ntrusted_networks = []\nlisten = [{{ address = \"127.0.0.1:0\", role = \"smtp\" }}]\n\
[mrelayd.spf_dmarc]\n{policy}\n\
[mrelayd.remote]\nresolver = \"{resolver}\"\nrelayhost = \"[127.0.0.1]:1\"\nrelayhost_tls = \"none\"\n",
            state = dir.join("state").display(),
            passwd = passwd.display(),
            mail = dir.join("mail").display(),
            aliases = aliases.display(),
        );
        std::fs::write(&config, common::with_run_as(&text)).unwrap();
        let (child, l) = common::start_mrelayd(&config, &dir.join("mrelayd.log"), &["smtp"]);
        Relay {
            _child: child,
            port: l.port("smtp"),
            dir: dir.to_path_buf(),
            sent: std::cell::Cell::new(0),
        }
    }

    /// Sends a message with HELO `helo`, MAIL FROM `mail_from` (`<>` for the null sender) and
    /// `From: <from>` (or `message` as it is) to bob: Ok(our Authentication-Results:,
    /// unfolded) when it was accepted and delivered, Err(swaks' transcript) when refused.
    fn send(
        &self,
        helo: &str,
        mail_from: &str,
        from: &str,
        message: Option<&str>,
    ) -> Result<String, String> {
        let n = self.sent.get();
        self.sent.set(n + 1);
        let subject = format!("case-{n}");
        let text = match message {
            Some(m) => m.to_string(),
            None => plain(from, &subject),
        };
        let subject_line = text
            .lines()
            .find(|l| l.starts_with("Subject:"))
            .expect("a Subject")
            .to_string();
        let file = self.dir.join(format!("msg{n}.eml"));
        std::fs::write(&file, &text).unwrap();
        let before = common::maildir_count(&self.dir.join("mail/bob"));
        let port = self.port.to_string();
        let data = format!("@{}", file.display());
        let (ok, out) = common::swaks(&[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--helo",
            helo,
            "--from",
            mail_from,
            "--to",
            "bob@example.test",
            "--data",
            &data,
            "--timeout",
            "120",
        ]);
        if !ok {
            return Err(out);
        }
        let got = common::wait_maildir(&self.dir.join("mail/bob"), before + 1);
        let m = got
            .iter()
            .find(|m| m.contains(&subject_line))
            .unwrap_or_else(|| panic!("accepted but not delivered: {out}"));
        Ok(common::auth_results(m))
    }
}

/// A plain message from `from`.
fn plain(from: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\
Date: Fri, 04 Dec 2026 19:00:00 +0000\r\nMessage-ID: <{subject}@spf.test>\r\n\r\nHello.\r\n"
    )
}

/// python3-spf's result for client 127.0.0.1, sender `s` (empty: null) and HELO `h`, with
/// its resolver pointed at 127.0.0.1:`port`.
fn pyspf(port: u16, s: &str, h: &str) -> String {
    let script = format!(
        "import spf, dns.resolver\n\
         r = dns.resolver.Resolver(configure=False)\n\
         r.nameservers = ['127.0.0.1']\n\
         r.port = {port}\n\
         dns.resolver.default_resolver = r\n\
         print(spf.check2(i='127.0.0.1', s={s:?}, h={h:?}, timeout=4)[0])\n"
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    let (ok, text) = common::status_and_text(&out);
    assert!(
        ok,
        "python3-spf (Debian python3-spf) must be installed: {text}"
    );
    text.trim().to_string()
}

/// The `spf=RESULT` of the entry with `property=value` in an A-R line.
fn spf_of(ar: &str, property: &str) -> String {
    ar.split(';')
        .map(str::trim)
        .find(|e| e.starts_with("spf=") && e.contains(property))
        .and_then(|e| e.split_whitespace().next())
        .map(|w| w.trim_start_matches("spf=").to_string())
        .unwrap_or_else(|| panic!("no spf entry with {property} in {ar}"))
}

/// Every SPF result, for MAIL FROM and HELO, is python3-spf's for the same records.
#[test]
fn spf_results_match_python3_spf() {
    let dns = Dns::start("");
    let dir = common::scratch();
    let relay = Relay::start(dir.path(), &dns.main.addr(), "");
    // (HELO, MAIL FROM, the result both must give)
    let cases = [
        ("helo.test", "alice@pass.test", "pass"),
        ("helo.test", "alice@fail.test", "fail"),
        ("helo.test", "alice@softfail.test", "softfail"),
        ("helo.test", "alice@neutral.test", "neutral"),
        ("helo.test", "alice@none.test", "none"),
        ("helo.test", "alice@nx.test", "none"),
        ("helo.test", "alice@permerror.test", "permerror"),
        ("helo.test", "alice@include.test", "pass"),
        // Two void lookups are allowed, a third is a permerror (RFC 7208 §4.6.4).
        ("helo.test", "alice@void2.test", "pass"),
        ("helo.test", "alice@void3.test", "permerror"),
        ("helo.test", "alice@x.servfail.test", "temperror"),
        // exists: look-ups are counted too: two void ones pass, a third is a permerror, also
        // with an a: void and an include's exists: voids; an exists: name that has an
        // address matches; a SERVFAIL after two voids stays a temperror.
        ("helo.test", "alice@exists2.test", "pass"),
        ("helo.test", "alice@exists3.test", "permerror"),
        ("helo.test", "alice@existsmix.test", "permerror"),
        ("helo.test", "alice@existsok.test", "pass"),
        ("helo.test", "alice@existstemp.test", "temperror"),
        // exists: asks for A records only (RFC 7208 §5.7): a name with only AAAA matches not.
        ("helo.test", "alice@existsv6.test", "fail"),
        // A null sender is checked as postmaster@HELO (RFC 7208 §2.4).
        ("fail.test", "", "fail"),
        ("softfail.test", "", "softfail"),
    ];
    let mut table = Vec::new();
    for (helo, mail_from, want) in cases {
        let py = pyspf(dns.main.port, mail_from, helo);
        assert_eq!(py, want, "python3-spf for {mail_from:?} HELO {helo}");
        let envelope = if mail_from.is_empty() {
            "<>"
        } else {
            mail_from
        };
        let identity = if mail_from.is_empty() {
            format!("postmaster@{helo}")
        } else {
            mail_from.to_string()
        };
        let ar = relay
            .send(helo, envelope, "carol@nodmarc.test", None)
            .unwrap_or_else(|e| panic!("{mail_from:?} refused: {e}"));
        let ours = spf_of(&ar, &format!("smtp.mailfrom={identity}"));
        table.push(format!("{identity:28} python3-spf={py:10} mrelayd={ours}"));
        assert_eq!(ours, py, "{ar}");
        // The HELO identity's own check (RFC 7208 §2.3), also as python3-spf sees it.
        let helo_py = pyspf(dns.main.port, "", helo);
        assert_eq!(spf_of(&ar, &format!("smtp.helo={helo}")), helo_py, "{ar}");
    }
    eprintln!("{}", table.join("\n"));
}

/// Forged From: domains under p=reject are refused (or marked, as configured); alignment.
#[test]
fn dmarc_policy_and_alignment() {
    // A DKIM key for signed.test, and messages signed with it by python3-dkim's dkimsign.
    let keys = common::scratch();
    let key = keys.path().join("s1.pem");
    let out = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl genrsa: {out:?}");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl rsa -in {} -pubout -outform DER 2>/dev/null | base64 -w0",
            key.display()
        ))
        .output()
        .expect("openssl");
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(public.len() > 300, "public key: {out:?}");
    let dns = Dns::start(&format!(
        "txt-record=s1._domainkey.signed.test,\"v=DKIM1; k=rsa; p={public}\"\n"
    ));
    let sign = |msg: &str| -> String {
        let out = common::run_with_input(
            Command::new("dkimsign").args(["s1", "signed.test", key.to_str().unwrap()]),
            msg.as_bytes(),
        );
        let (ok, text) = common::status_and_text(&out);
        assert!(ok, "dkimsign: {text}");
        String::from_utf8(out.stdout).unwrap()
    };

    let dir = common::scratch();
    let relay = Relay::start(dir.path(), &dns.main.addr(), "");
    // A From: of forged.test from a host its SPF does not list, with a MAIL FROM that passes
    // SPF but is not aligned: DMARC fails, p=reject, 550 5.7.1.
    let e = relay
        .send("helo.test", "bounce@pass.test", "ceo@forged.test", None)
        .expect_err("forged From: accepted");
    assert!(e.contains("550 5.7.1"), "{e}");
    assert!(e.contains("DMARC"), "{e}");
    // p=quarantine: accepted and marked. So is a subdomain without a record of its own under
    // its organizational domain's sp=quarantine (RFC 7489 §6.6.3; the policy mdig-mx reports
    // for it, tests/mdig_auth.rs), while that domain's own mail gets its p=reject.
    for domain in ["quarantine.test", "sub.org.test"] {
        let ar = relay
            .send(
                "helo.test",
                "bounce@pass.test",
                &format!("ceo@{domain}"),
                None,
            )
            .unwrap_or_else(|e| panic!("{domain}: quarantine refused: {e}"));
        let want = format!("dmarc=fail reason=\"p=quarantine\" header.from={domain}");
        assert!(ar.contains(&want), "{ar}");
    }
    let e = relay
        .send("helo.test", "bounce@pass.test", "ceo@org.test", None)
        .expect_err("forged org.test accepted");
    assert!(e.contains("550 5.7.1"), "{e}");
    // Aligned SPF pass.
    let ar = relay
        .send("helo.test", "alice@pass.test", "alice@pass.test", None)
        .expect("aligned");
    assert!(
        ar.contains("dmarc=pass reason=\"p=reject\" header.from=pass.test"),
        "{ar}"
    );
    // aspf=r: mail.relaxed.test aligns with relaxed.test; aspf=s: mail.strict.test does not.
    let ar = relay
        .send("helo.test", "a@mail.relaxed.test", "a@relaxed.test", None)
        .expect("relaxed alignment");
    assert!(ar.contains("dmarc=pass"), "{ar}");
    let e = relay
        .send("helo.test", "a@mail.strict.test", "a@strict.test", None)
        .expect_err("strict alignment accepted");
    assert!(e.contains("550 5.7.1"), "{e}");
    // SPF fails for signed.test, but an aligned DKIM signature passes DMARC (adkim=s)...
    let signed = sign(&plain("news@signed.test", "dkim-aligned"));
    let ar = relay
        .send("helo.test", "news@signed.test", "", Some(signed.as_str()))
        .expect("DKIM-aligned accepted");
    assert!(ar.contains("dkim=pass header.d=signed.test"), "{ar}");
    assert!(
        ar.contains("spf=fail smtp.mailfrom=news@signed.test"),
        "{ar}"
    );
    assert!(ar.contains("dmarc=pass"), "{ar}");
    // ... and the same message with its body changed fails it.
    let tampered = sign(&plain("news@signed.test", "dkim-tampered")).replace("Hello.", "Pay me.");
    let e = relay
        .send("helo.test", "news@signed.test", "", Some(tampered.as_str()))
        .expect_err("tampered DKIM accepted");
    assert!(e.contains("550 5.7.1"), "{e}");

    // dmarc_reject = "mark": the forged From: is accepted and marked.
    let dir = common::scratch();
    let relay = Relay::start(dir.path(), &dns.main.addr(), "dmarc_reject = \"mark\"");
    let ar = relay
        .send("helo.test", "bounce@pass.test", "ceo@forged.test", None)
        .expect("marked, not refused");
    assert!(
        ar.contains("dmarc=fail reason=\"p=reject\" header.from=forged.test"),
        "{ar}"
    );
    // spf_fail = "reject": an SPF fail of MAIL FROM is refused with 550 5.7.23.
    let dir = common::scratch();
    let relay = Relay::start(dir.path(), &dns.main.addr(), "spf_fail = \"reject\"");
    let e = relay
        .send("helo.test", "alice@fail.test", "carol@nodmarc.test", None)
        .expect_err("SPF fail accepted");
    assert!(e.contains("550 5.7.23"), "{e}");
    assert!(relay
        .send(
            "helo.test",
            "alice@softfail.test",
            "carol@nodmarc.test",
            None
        )
        .is_ok());
}

/// One row of the DNS outcome table: what, MAIL FROM, From:, what the A-R says with
/// `temperror = "mark"`, the reply with `"tempfail"` (None: accepted and marked the same).
type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    Option<&'static str>,
);

/// The DNS outcome table: what mrelayd answers or writes for each kind of DNS failure, with
/// `temperror = "mark"` (the default) and `"tempfail"`. Never a 5xx for a temporary failure.
#[test]
fn dns_outcomes_table() {
    let dns = Dns::start("");
    let mark_dir = common::scratch();
    let mark = Relay::start(mark_dir.path(), &dns.main.addr(), "");
    let temp_dir = common::scratch();
    let tempfail = Relay::start(
        temp_dir.path(),
        &dns.main.addr(),
        "temperror = \"tempfail\"",
    );
    let rows: [Row; 7] = [
        (
            "SPF timeout",
            "a@x.timeout.test",
            "a@nodmarc.test",
            &["spf=temperror smtp.mailfrom=a@x.timeout.test"],
            Some("451 4.7.24"),
        ),
        (
            "SPF SERVFAIL",
            "a@x.servfail.test",
            "a@nodmarc.test",
            &["spf=temperror smtp.mailfrom=a@x.servfail.test"],
            Some("451 4.7.24"),
        ),
        (
            "SPF NXDOMAIN",
            "a@nx.test",
            "a@nodmarc.test",
            &[
                "spf=none smtp.mailfrom=a@nx.test",
                "dmarc=none header.from=nodmarc.test",
            ],
            None,
        ),
        (
            "SPF void lookups over the limit",
            "a@void3.test",
            "a@nodmarc.test",
            &["spf=permerror reason=", "smtp.mailfrom=a@void3.test"],
            None,
        ),
        (
            "SPF SERVFAIL, aligned, p=reject",
            "a@tfrom.test",
            "a@tfrom.test",
            &[
                "spf=temperror smtp.mailfrom=a@tfrom.test",
                "dmarc=temperror",
            ],
            Some("451 4.7.24"),
        ),
        (
            "DMARC SERVFAIL",
            "a@pass.test",
            "a@x.servfail.test",
            &["spf=pass", "dmarc=temperror header.from=x.servfail.test"],
            Some("451 4.7.1"),
        ),
        (
            "DMARC timeout",
            "a@pass.test",
            "a@x.timeout.test",
            &["spf=pass", "dmarc=temperror header.from=x.timeout.test"],
            Some("451 4.7.1"),
        ),
    ];
    let mut table = Vec::new();
    for (what, mail_from, from, marks, reply) in rows {
        let ar = mark
            .send("helo.test", mail_from, from, None)
            .unwrap_or_else(|e| panic!("{what}: refused with temperror = mark: {e}"));
        for m in marks {
            assert!(ar.contains(m), "{what}: no {m:?} in {ar}");
        }
        let got = tempfail.send("helo.test", mail_from, from, None);
        let said = match (&got, reply) {
            (Err(e), Some(want)) => {
                assert!(e.contains(want), "{what}: not {want}: {e}");
                want.to_string()
            }
            (Ok(ar2), None) => {
                for m in marks {
                    assert!(ar2.contains(m), "{what}: no {m:?} in {ar2}");
                }
                "accepted, marked".to_string()
            }
            (got, want) => panic!("{what}: want {want:?}, got {got:?}"),
        };
        if let Err(e) = &got {
            assert!(!e.contains("<** 5"), "{what}: a 5xx for a DNS failure: {e}");
        }
        table.push(format!(
            "{what:34} mark: {:60} tempfail: {said}",
            ar.trim_start_matches("Authentication-Results: mx.example.test; ")
        ));
    }
    eprintln!("{}", table.join("\n"));
}
