//! ARC verification and DNSBL checks of mrelayd's `smtp` listener (issue 15).
//!
//! - **ARC** (RFC 8617): chains made by the independent signer, python3-dkim's `arcsign`
//!   (one hop, two hops), keys published by dnsmasq on loopback; mrelayd says `arc=pass`
//!   with `smtp.remote-ip`, `arc=fail` for a changed body (the newest ARC-Message-Signature)
//!   and for a changed first ARC-Authentication-Results (only the seals cover it), `arc=none`
//!   without ARC fields. Each verdict is cross-checked with python3-dkim's own verifier
//!   (`dkim.arc_verify`, what `arcverify` runs) on the same message, its keys fetched from
//!   the same dnsmasq (`dig`), so the tests cannot pass on a chain that is not what they say.
//! - **DNSBL** (RFC 5782): dnsmasq serves the RFC 5782 §5 test entry `2.0.0.127.zen.example`
//!   (A 127.0.0.2, with a TXT reason); a client bound to 127.0.0.2 (swaks
//!   `--local-interface`, any 127/8 address is loopback) is refused at RCPT with Postfix's
//!   `554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example`,
//!   127.0.0.3 (not listed) is not, nor is 127.0.0.2 after AUTH or when in `trusted_networks`; IPv6 `::1`
//!   in nibble form; a resolver that answers SERVFAIL lets the listed client through, logged.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{auth_results, txt_line};

/// One mrelayd with the smtp listener on `listen`, no trusted networks unless `trusted`,
/// DNS from `resolver`, `extra` lines in `[mrelayd]`, local delivery into `mail/bob`.
struct Relay {
    _child: common::KillOnDrop,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
}

impl Relay {
    fn start(dir: &Path, listen: &str, resolver: &str, trusted: &str, extra: &str) -> Relay {
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, "bob:{PLAIN}password::::::\n").unwrap();
        let aliases = dir.join("aliases");
        std::fs::write(&aliases, "postmaster: bob\n").unwrap();
        let config = dir.join("mailkit.toml");
        let text = format!(
            "hostname = \"mx.example.test\"\nstate_dir = \"{state}\"\n\
[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
[users]\npasswd_file = \"{passwd}\"\nmail_location = \"{mail}/%n\"\ndomains = [\"example.test\"]\n\
[mrelayd]\naliases = \"{aliases}\"\ntrusted_networks = [{trusted}]\n{extra}\n\
listen = [{{ address = \"{listen}\", role = \"smtp\" }}]\n\
[mrelayd.remote]\nresolver = \"{resolver}\"\nrelayhost = \"[127.0.0.1]:1\"\nrelayhost_tls = \"none\"\n",
            state = dir.join("state").display(),
            cert = common::peer("PEER_CERT_FILE"),
            key = common::peer("PEER_KEY_FILE"),
            passwd = passwd.display(),
            mail = dir.join("mail").display(),
            aliases = aliases.display(),
        );
        std::fs::write(&config, common::with_run_as(&text)).unwrap();
        let log = dir.join("mrelayd.log");
        let (child, l) = common::start_mrelayd(&config, &log, &["smtp"]);
        Relay {
            _child: child,
            port: l.port("smtp"),
            dir: dir.to_path_buf(),
            log,
        }
    }

    /// swaks from `from_ip` (its local address) to the relay at `server`, `message` to bob:
    /// (success, swaks's transcript).
    fn send(&self, server: &str, from_ip: &str, message: &str) -> (bool, String) {
        self.send_with(server, from_ip, message, &[])
    }

    /// [`Relay::send`] with more swaks options (`--tls --auth ...`).
    fn send_with(
        &self,
        server: &str,
        from_ip: &str,
        message: &str,
        extra: &[&str],
    ) -> (bool, String) {
        let n = common::rand_u64();
        let file = self.dir.join(format!("msg{n}.eml"));
        std::fs::write(&file, message).unwrap();
        let port = self.port.to_string();
        let data = format!("@{}", file.display());
        // `extra` last: swaks takes an option's last value (`--from`).
        let mut args = vec![
            "--server",
            server,
            "--port",
            &port,
            "--local-interface",
            from_ip,
            "--from",
            "carol@signer.test",
            "--to",
            "bob@example.test",
            "--data",
            &data,
        ];
        args.extend_from_slice(extra);
        common::swaks(&args)
    }

    /// Sends `message` from 127.0.0.1 and returns it as delivered to bob, CRLF line ends.
    fn deliver(&self, message: &str) -> String {
        self.deliver_from("127.0.0.1", message)
    }

    /// Sends `message` from `from_ip` and returns it as delivered to bob, CRLF line ends.
    fn deliver_from(&self, from_ip: &str, message: &str) -> String {
        let before = common::maildir_count(&self.dir.join("mail/bob"));
        let (ok, out) = self.send("127.0.0.1", from_ip, message);
        assert!(ok, "swaks: {out}");
        let got = common::wait_maildir(&self.dir.join("mail/bob"), before + 1);
        assert_eq!(got.len(), before + 1, "not delivered: {out}");
        let subject = message.lines().find(|l| l.starts_with("Subject:")).unwrap();
        got.into_iter()
            .map(|m| m.replace("\r\n", "\n").replace('\n', "\r\n"))
            .find(|m| m.contains(subject))
            .unwrap_or_else(|| panic!("no delivered message with {subject}"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A new 2048-bit RSA key (openssl): its PEM file and its DKIM key record.
fn rsa_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.pem"));
    let out = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&path)
        .arg("2048")
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl genrsa: {out:?}");
    let out = Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&path)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "openssl rsa -pubout: {out:?}");
    use base64::Engine as _;
    let p = base64::engine::general_purpose::STANDARD.encode(&out.stdout);
    (path, format!("v=DKIM1; k=rsa; p={p}"))
}

/// `arcsign SELECTOR DOMAIN KEY DOMAIN` (python3-dkim): the message with one more ARC set on
/// top. arcsign seals only a message carrying an Authentication-Results: of its own authserv-id
/// (its verdict on what it received), so one is added first, with `arc=pass` after a first hop.
fn arcsign(message: &str, selector: &str, domain: &str, key: &Path) -> String {
    let verdict = if message.contains("ARC-Seal:") {
        "arc=pass"
    } else {
        "spf=pass smtp.mailfrom=carol@signer.test"
    };
    let input = format!("Authentication-Results: {domain}; {verdict}\r\n{message}");
    let out = common::run_with_input(
        Command::new("arcsign")
            .args([selector, domain])
            .arg(key)
            .arg(domain),
        input.as_bytes(),
    );
    let signed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && signed.starts_with("ARC-Seal: "),
        "arcsign: {:?}",
        common::status_and_text(&out)
    );
    signed
}

/// python3-dkim's chain verdict (`dkim.arc_verify`, as `arcverify` runs it) on `message`,
/// keys looked up in the dnsmasq on `port` with dig: `pass`, `fail` or `none`.
fn dkimpy_arc_verdict(message: &str, port: u16) -> String {
    let script = r#"
import re, subprocess, sys
import dkim
port = sys.argv[1]
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    out = subprocess.run(["dig", "+short", "+time=2", "+tries=1", "@127.0.0.1", "-p", port,
                          name, "TXT"], capture_output=True, text=True).stdout
    return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', out)).encode()
cv, results, comment = dkim.arc_verify(sys.stdin.buffer.read(), dnsfunc=dnsfunc)
print(cv.decode())
"#;
    let out = common::run_with_input(
        Command::new("/usr/bin/python3").args(["-c", script, &port.to_string()]),
        message.as_bytes(),
    );
    let (ok, text) = common::status_and_text(&out);
    assert!(ok, "dkim.arc_verify: {text}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn message(subject: &str) -> String {
    format!(
        "From: Carol <carol@signer.test>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\
Date: Fri, 04 Dec 2026 19:00:00 +0000\r\nMessage-ID: <{subject}@signer.test>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
Hello  Bob,\r\n  forwarded   by a list\r\n"
    )
}

/// Chains of one and two hops pass; a changed body or sealed result fails; none without ARC.
#[test]
fn arc_chains_from_arcsign() {
    let dir = common::scratch();
    let (k1, r1) = rsa_key(dir.path(), "hop1");
    let (k2, r2) = rsa_key(dir.path(), "hop2");
    let zone = format!(
        "local=/hop1.test/\nlocal=/hop2.test/\n{}\n{}",
        txt_line("s1._domainkey.hop1.test", &r1),
        txt_line("s2._domainkey.hop2.test", &r2)
    );
    let dns = common::Dns::start(&zone);
    let relay = Relay::start(dir.path(), "127.0.0.1:0", &dns.addr(), "", "");
    let arc = |m: &str| {
        let ar = auth_results(m);
        assert!(ar.contains("smtp.remote-ip=127.0.0.1"), "{ar}");
        ar
    };

    let one = arcsign(&message("arc-one"), "s1", "hop1.test", &k1);
    assert_eq!(dkimpy_arc_verdict(&one, dns.port), "pass", "{one}");
    let got = relay.deliver(&one);
    assert!(arc(&got).contains("arc=pass"), "{got}");

    let two = arcsign(&one.replace("arc-one", "arc-two"), "s2", "hop2.test", &k2);
    assert!(two.contains("ARC-Seal: i=2; cv=pass"), "{two}");
    assert_eq!(dkimpy_arc_verdict(&two, dns.port), "pass", "{two}");
    let got = relay.deliver(&two);
    assert!(arc(&got).contains("arc=pass"), "{got}");

    // The body after the newest ARC-Message-Signature was made.
    let body = two
        .replace("arc-two", "arc-body")
        .replace("Hello  Bob", "Hello  Eve");
    assert_eq!(dkimpy_arc_verdict(&body, dns.port), "fail");
    let got = relay.deliver(&body);
    assert!(arc(&got).contains("arc=fail"), "{got}");

    // The first hop's sealed verdict: no message signature covers it, only the seals do.
    let sealed = two.replace("arc-two", "arc-seal").replace(
        "ARC-Authentication-Results: i=1; hop1.test; spf=pass",
        "ARC-Authentication-Results: i=1; hop1.test; spf=fail",
    );
    assert_ne!(
        sealed,
        two.replace("arc-two", "arc-seal"),
        "nothing changed"
    );
    assert_eq!(dkimpy_arc_verdict(&sealed, dns.port), "fail");
    let got = relay.deliver(&sealed);
    assert!(arc(&got).contains("arc=fail"), "{got}");

    let plain = message("arc-none");
    assert_eq!(dkimpy_arc_verdict(&plain, dns.port), "none");
    let got = relay.deliver(&plain);
    assert!(arc(&got).contains("arc=none"), "{got}");
    // The first hop's own Authentication-Results: stays (not our authserv-id).
    let got_two = relay.deliver(&two.replace("arc-two", "arc-kept"));
    assert!(
        got_two.contains("Authentication-Results: hop2.test; arc=pass"),
        "{got_two}"
    );
}

/// The dnsmasq zone of the DNSBL tests: RFC 5782 §5's test entry for IPv4 (127.0.0.2) and
/// the same for IPv6 ::1 in nibble form, each with a TXT reason; every other name in the
/// zone is NXDOMAIN.
fn dnsbl_zone() -> String {
    let v6 = format!("1.{}zen.example", "0.".repeat(31));
    format!(
        "local=/zen.example/\nhost-record=2.0.0.127.zen.example,127.0.0.2\n\
         txt-record=2.0.0.127.zen.example,\"listed: RFC 5782 test entry\"\n\
         host-record={v6},127.0.0.2\ntxt-record={v6},\"listed: v6 loopback\"\n"
    )
}

/// A listed client is refused at RCPT with Postfix's text; others and trusted ones are not.
#[test]
fn dnsbl_refuses_listed_clients() {
    let dir = common::scratch();
    let dns = common::Dns::start(&dnsbl_zone());
    let relay = Relay::start(
        dir.path(),
        "127.0.0.1:0",
        &dns.addr(),
        "",
        "dnsbl = [\"zen.example\"]",
    );
    let (ok, out) = relay.send("127.0.0.1", "127.0.0.2", &message("listed"));
    assert!(!ok, "a listed client was accepted: {out}");
    assert!(
        out.contains(
            "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using \
             zen.example; listed: RFC 5782 test entry"
        ),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("RCPT TO:")),
        "refused before RCPT: {out}"
    );
    // Not listed: delivered.
    let before = common::maildir_count(&dir.path().join("mail/bob"));
    let (ok, out) = relay.send("127.0.0.1", "127.0.0.3", &message("control"));
    assert!(ok, "an unlisted client was refused: {out}");
    assert_eq!(
        common::wait_maildir(&dir.path().join("mail/bob"), before + 1).len(),
        before + 1
    );
    assert!(relay.log().contains("listed in DNSBL zen.example"));
    // The listed address, authenticated (AUTH after STARTTLS, before MAIL): not looked up.
    let (ok, out) = relay.send_with(
        "127.0.0.1",
        "127.0.0.2",
        &message("authenticated"),
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob",
            "--auth-password",
            "password",
            "--from",
            "bob@example.test",
        ],
    );
    assert!(ok, "an authenticated client was refused: {out}");

    // The same client from a trusted network is never looked up; a configured reply text.
    let trusted = common::scratch();
    let relay = Relay::start(
        trusted.path(),
        "127.0.0.1:0",
        &dns.addr(),
        "\"127.0.0.2/32\"",
        "dnsbl = [\"zen.example\"]\ndnsbl_reply = { \"zen.example\" = \"see https://zen.example/\" }",
    );
    let (ok, out) = relay.send("127.0.0.1", "127.0.0.2", &message("trusted"));
    assert!(ok, "a trusted client was refused: {out}");
    // 127.0.0.4 is not trusted there, and not listed.
    let (ok, out) = relay.send("127.0.0.1", "127.0.0.4", &message("control2"));
    assert!(ok, "{out}");
}

/// IPv6: ::1 is looked up in nibble form (RFC 5782 §2.4) and refused with the zone's
/// configured reply in place of the TXT record.
#[test]
fn dnsbl_ipv6_nibbles() {
    let dir = common::scratch();
    let dns = common::Dns::start(&dnsbl_zone());
    let relay = Relay::start(
        dir.path(),
        "[::1]:0",
        &dns.addr(),
        "",
        "dnsbl = [\"zen.example\"]\ndnsbl_reply = { \"zen.example\" = \"see https://zen.example/\" }",
    );
    let (ok, out) = relay.send("::1", "::1", &message("listed6"));
    assert!(!ok, "a listed IPv6 client was accepted: {out}");
    assert!(
        out.contains(
            "554 5.7.1 Service unavailable; Client host [::1] blocked using zen.example; \
             see https://zen.example/"
        ),
        "{out}"
    );
}

/// A resolver that answers SERVFAIL to everything: the listed client is let through (a
/// temporary DNS failure never refuses), the failure is logged, and its ARC chain, whose key
/// cannot be fetched, is `arc=temperror` (not fail).
#[test]
fn dnsbl_dns_failure_never_blocks() {
    let servfail = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = servfail.local_addr().unwrap().to_string();
    let answering = servfail.try_clone().unwrap();
    // RFC 1035 §4.1.1: the query's header back with QR set and RCODE 2 (SERVFAIL).
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = answering.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let mut reply = buf[..n].to_vec();
            reply[2] |= 0x80;
            reply[3] = (reply[3] & 0xf0) | 2;
            let _ = answering.send_to(&reply, from);
        }
    });
    let dir = common::scratch();
    let relay = Relay::start(
        dir.path(),
        "127.0.0.1:0",
        &addr,
        "",
        "dnsbl = [\"zen.example\"]",
    );
    let (key, _) = rsa_key(dir.path(), "hop1");
    let chained = arcsign(&message("servfail"), "s1", "hop1.test", &key);
    let got = relay.deliver_from("127.0.0.2", &chained);
    let ar = auth_results(&got);
    assert!(
        ar.contains("arc=temperror") && ar.contains("smtp.remote-ip=127.0.0.2"),
        "{got}"
    );
    let log = relay.log();
    assert!(log.contains("DNSBL zen.example not checked"), "{log}");
    drop(servfail);
}
