//! DKIM (issue 15) against independent implementations: mail signed by mrelayd (RSA and
//! Ed25519 keys from `mrelayd dkim keygen`) is verified by python3-dkim's `dkimverify` and by
//! OpenDKIM's `opendkim-testmsg`; mail signed by python3-dkim's `dkimsign` is verified by
//! mrelayd (`Authentication-Results: ...; dkim=pass`), a tampered body gives `dkim=fail`, a
//! DNS server that never answers gives `dkim=temperror` and the message is still accepted.
//! Keys are published by dnsmasq on loopback (`txt-record=`). The external verifiers read
//! /etc/resolv.conf (port 53 only), so they run in a private network and mount namespace
//! (`unshare`, as root, as CI runs) with their own dnsmasq on 127.0.0.1:53 and a resolv.conf
//! bound over the system's.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{auth_results, txt_line};

/// The signing domain of mrelayd's users (a local domain).
const DOMAIN: &str = "example.test";

/// One mrelayd with the smtp listener, keys `r1` (RSA) and `e1` (Ed25519) for example.test,
/// DNS from `resolver`, and local delivery into `mail/bob`.
struct Relay {
    _child: common::KillOnDrop,
    port: u16,
    dir: PathBuf,
}

/// A key made by `mrelayd dkim keygen`: its file and its TXT record value.
struct MadeKey {
    path: PathBuf,
    txt: String,
}

fn keygen(dir: &Path, selector: &str, algo: &str) -> MadeKey {
    let path = dir.join(format!("{selector}.pem"));
    let txt = common::dkim_keygen(dir, DOMAIN, selector, algo, &path);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "key file mode");
    assert!(txt.starts_with("v=DKIM1; k="), "{txt}");
    MadeKey { path, txt }
}

impl Relay {
    /// `trusted`: loopback is a trusted network (its mail is signed, not verified); else
    /// every client is from outside (verified, never signed).
    fn start(dir: &Path, resolver: &str, keys: &[(&str, &Path)], trusted: bool) -> Relay {
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, "bob:{PLAIN}password::::::\n").unwrap();
        let aliases = dir.join("aliases");
        std::fs::write(&aliases, "postmaster: bob\n").unwrap();
        let keys: Vec<String> = keys
            .iter()
            .map(|(s, p)| format!("{s} = \"{}\"", p.display()))
            .collect();
        let config = dir.join("mailkit.toml");
        let text = format!(
            "hostname = \"mx.example.test\"\nstate_dir = \"{state}\"\n\
[users]\npasswd_file = \"{passwd}\"\nmail_location = \"{mail}/%n\"\ndomains = [\"{DOMAIN}\"]\n\
[mrelayd]\naliases = \"{aliases}\"\n{trust}listen = [{{ address = \"127.0.0.1:0\", role = \"smtp\" }}]\n\
[mrelayd.dkim.\"{DOMAIN}\"]\nkeys = {{ {keys} }}\n\
[mrelayd.remote]\nresolver = \"{resolver}\"\nrelayhost = \"[127.0.0.1]:1\"\nrelayhost_tls = \"none\"\n",
            state = dir.join("state").display(),
            passwd = passwd.display(),
            mail = dir.join("mail").display(),
            aliases = aliases.display(),
            keys = keys.join(", "),
            trust = if trusted { "" } else { "trusted_networks = []\n" },
        );
        std::fs::write(&config, common::with_run_as(&text)).unwrap();
        let (child, l) = common::start_mrelayd(&config, &dir.join("mrelayd.log"), &["smtp"]);
        Relay {
            _child: child,
            port: l.port("smtp"),
            dir: dir.to_path_buf(),
        }
    }

    /// Sends `message` from 127.0.0.1 to bob and returns what was delivered into bob's
    /// Maildir, with CRLF line ends.
    fn deliver(&self, message: &str) -> String {
        let before = common::maildir_count(&self.dir.join("mail/bob"));
        let file = self.dir.join(format!("msg{before}.eml"));
        std::fs::write(&file, message).unwrap();
        let port = self.port.to_string();
        let data = format!("@{}", file.display());
        let (ok, out) = common::swaks(&[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--from",
            "alice@example.test",
            "--to",
            "bob@example.test",
            "--data",
            &data,
            "--timeout",
            "90",
        ]);
        assert!(ok, "swaks: {out}");
        let got = common::wait_maildir(&self.dir.join("mail/bob"), before + 1);
        assert_eq!(got.len(), before + 1, "not delivered: {out}");
        // Maildir keeps LF line ends; the verifiers get the message as it goes on the wire.
        let got: Vec<String> = got
            .into_iter()
            .map(|m| m.replace("\r\n", "\n").replace('\n', "\r\n"))
            .collect();
        // The newest: the one whose text is this message's Subject.
        let subject = message.lines().find(|l| l.starts_with("Subject:")).unwrap();
        got.into_iter()
            .find(|m| m.contains(subject))
            .unwrap_or_else(|| panic!("no delivered message with {subject}"))
    }
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: Alice <{from}>\r\nTo: bob@example.test\r\nSubject: {subject}\r\n\
Date: Fri, 04 Dec 2026 19:00:00 +0000\r\nMessage-ID: <{subject}@example.test>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
Hello  Bob,\r\n  spaces   and trailing blanks   \r\n\r\n\r\n"
    )
}

/// Runs `cmd` with `input` on stdin in a private network and mount namespace whose
/// /etc/resolv.conf names a dnsmasq on 127.0.0.1:53 serving `zone` (the verifiers take no
/// DNS port). Returns (success, stdout+stderr).
fn in_dns_namespace(zone: &str, cmd: &str, input: &[u8]) -> (bool, String) {
    let dir = common::scratch();
    let conf = dir.path().join("dnsmasq.conf");
    std::fs::write(
        &conf,
        format!(
            "port=53\npid-file=\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
             no-poll\nlocal=/test/\nhost-record=ready.test,127.0.0.1\n{zone}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    let script = format!(
        "set -e; ip link set lo up; mount --bind {d}/resolv.conf /etc/resolv.conf; \
         dnsmasq -k -C {d}/dnsmasq.conf 2>{d}/dnsmasq.log & \
         for i in $(seq 50); do [ \"$(dig +time=1 +tries=1 +short ready.test A)\" = 127.0.0.1 ] && break; sleep 0.1; done; \
         set +e; {cmd} <{d}/input; rc=$?; kill $!; exit $rc",
        d = dir.path().display()
    );
    std::fs::write(dir.path().join("input"), input).unwrap();
    let out = Command::new("timeout")
        .args(["60", "unshare", "--net", "--mount", "sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("unshare (util-linux) must be installed");
    common::status_and_text(&out)
}

/// mrelayd signs with RSA and Ed25519; dkimverify and opendkim-testmsg check each signature.
#[test]
fn mrelayd_signatures_verify_with_dkimpy_and_opendkim() {
    let dir = common::scratch();
    let rsa = keygen(dir.path(), "r1", "rsa");
    let ed = keygen(dir.path(), "e1", "ed25519");
    assert!(rsa.txt.contains("k=rsa") && ed.txt.contains("k=ed25519"));
    // mrelayd's own resolver: the zone with both keys (nothing inbound is verified here).
    let zone = format!(
        "{}\n{}",
        txt_line(&format!("r1._domainkey.{DOMAIN}"), &rsa.txt),
        txt_line(&format!("e1._domainkey.{DOMAIN}"), &ed.txt)
    );
    let dns = common::Dns::start(&zone);
    let relay = Relay::start(
        dir.path(),
        &dns.addr(),
        &[("r1", &rsa.path), ("e1", &ed.path)],
        true,
    );
    let got = relay.deliver(&message("alice@example.test", "signed1"));
    assert_eq!(got.matches("DKIM-Signature:").count(), 2, "{got}");
    assert!(
        got.contains("a=rsa-sha256") && got.contains("a=ed25519-sha256"),
        "{got}"
    );

    // Each verifier sees one key at a time in DNS, so each signature is checked on its own.
    // mrelayd writes the signatures in key order (e1, then r1): dkimverify --index picks one.
    for (sel, key, index) in [("r1", &rsa, 1), ("e1", &ed, 0)] {
        let zone = txt_line(&format!("{sel}._domainkey.{DOMAIN}"), &key.txt);
        let cmd = format!("dkimverify --index {index}");
        let (ok, out) = in_dns_namespace(&zone, &cmd, got.as_bytes());
        assert!(ok, "dkimverify {sel}: {out}");
        // OpenDKIM passes when one signature verifies (RFC 6376 §6.1), here the one whose
        // key is published.
        let (ok, out) = in_dns_namespace(&zone, "opendkim-testmsg", got.as_bytes());
        assert!(ok && out.trim().is_empty(), "opendkim-testmsg {sel}: {out}");
    }
    // A changed body fails with both verifiers: the checks above can fail.
    let tampered = got.replace("Hello  Bob", "Hello  Eve");
    let zone = txt_line(&format!("r1._domainkey.{DOMAIN}"), &rsa.txt);
    let (ok, out) = in_dns_namespace(&zone, "dkimverify --index 1", tampered.as_bytes());
    assert!(!ok, "dkimverify accepted a tampered body: {out}");
    let (ok, out) = in_dns_namespace(&zone, "opendkim-testmsg", tampered.as_bytes());
    assert!(
        !ok || !out.trim().is_empty(),
        "opendkim accepted a tampered body: {out}"
    );
}

/// OpenDKIM on an Ed25519-only signature (a relay with only the Ed25519 key).
#[test]
fn ed25519_signature_verifies_with_opendkim() {
    let dir = common::scratch();
    let ed = keygen(dir.path(), "e1", "ed25519");
    let zone = txt_line(&format!("e1._domainkey.{DOMAIN}"), &ed.txt);
    let dns = common::Dns::start(&zone);
    let relay = Relay::start(dir.path(), &dns.addr(), &[("e1", &ed.path)], true);
    let got = relay.deliver(&message("alice@example.test", "signed2"));
    assert_eq!(got.matches("DKIM-Signature:").count(), 1, "{got}");
    let (ok, out) = in_dns_namespace(&zone, "opendkim-testmsg", got.as_bytes());
    assert!(
        ok && out.trim().is_empty(),
        "opendkim-testmsg ed25519: {out}"
    );
    let (ok, out) = in_dns_namespace(&zone, "dkimverify", got.as_bytes());
    assert!(ok, "dkimverify ed25519: {out}");
    // The key file is one OpenSSL reads (PKCS#8 v1, RFC 8410), with the published public key:
    // the last 32 bytes of its SubjectPublicKeyInfo are the TXT record's p=.
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&ed.path)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl cannot read the keygen key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spki = out.stdout;
    assert_eq!(spki.len(), 44, "{spki:?}");
    let p = ed.txt.rsplit("p=").next().unwrap();
    let out = common::run_with_input(Command::new("base64").arg("-w0"), &spki[12..]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), p, "{}", ed.txt);
}

/// python3-dkim's dkimsign signs (RSA with a key of ours, Ed25519 with one of PyNaCl's);
/// mrelayd says dkim=pass for each, fail for a tampered body, temperror without DNS.
#[test]
fn mrelayd_verifies_dkimsign_signatures() {
    let dir = common::scratch();
    let rsa = keygen(dir.path(), "r9", "rsa");
    // An Ed25519 key as dkimpy takes it: the base64 seed; the DNS key is the raw public key.
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import nacl.signing,base64;k=nacl.signing.SigningKey.generate();\
             print(base64.b64encode(bytes(k)).decode());print(base64.b64encode(bytes(k.verify_key)).decode())",
        ])
        .output()
        .expect("python3");
    let (ok, text) = common::status_and_text(&out);
    assert!(ok, "python3-nacl: {text}");
    let mut lines = text.lines();
    let (seed, public) = (lines.next().unwrap(), lines.next().unwrap());
    let ed_key = dir.path().join("ed.key");
    std::fs::write(&ed_key, seed).unwrap();
    let signer = "signer.test";
    let zone = format!(
        "{}\n{}",
        txt_line(&format!("r9._domainkey.{signer}"), &rsa.txt),
        txt_line(
            &format!("e9._domainkey.{signer}"),
            &format!("v=DKIM1; k=ed25519; p={public}")
        )
    );
    let dns = common::Dns::start(&zone);
    // Keys for example.test too: mail from outside is never signed, whatever its From: says.
    let own = keygen(dir.path(), "r1", "rsa");
    let relay = Relay::start(dir.path(), &dns.addr(), &[("r1", &own.path)], false);
    let sign = |msg: &str, args: &[&str]| -> String {
        let mut cmd = Command::new("dkimsign");
        cmd.args(args);
        let out = common::run_with_input(&mut cmd, msg.as_bytes());
        let (ok, text) = common::status_and_text(&out);
        assert!(ok, "dkimsign: {text}");
        String::from_utf8(out.stdout).unwrap()
    };
    let from = "carol@signer.test";
    let rsa_signed = sign(
        &message(from, "dkimpy-rsa"),
        &["r9", signer, rsa.path.to_str().unwrap()],
    );
    let ed_signed = sign(
        &message(from, "dkimpy-ed"),
        &[
            "--signalg",
            "ed25519-sha256",
            "e9",
            signer,
            ed_key.to_str().unwrap(),
        ],
    );
    // A forged Authentication-Results: claiming our authserv-id goes; another host's stays.
    let forged = format!(
        "Authentication-Results: mx.example.test; dkim=pass header.d=bank.test\r\n\
         Authentication-Results: other.test; dkim=none\r\n{rsa_signed}"
    );
    let got = relay.deliver(&forged);
    let ar = common::auth_results(&got);
    assert!(
        ar.contains("dkim=pass header.d=signer.test header.s=r9"),
        "{got}"
    );
    assert!(!got.contains("bank.test"), "forged A-R kept: {got}");
    assert!(
        got.contains("Authentication-Results: other.test; dkim=none"),
        "{got}"
    );
    assert!(
        !got.contains("a=rsa-sha256; c=relaxed/relaxed; d=example.test"),
        "signed: {got}"
    );

    let got = relay.deliver(&ed_signed);
    assert!(
        common::auth_results(&got)
            .contains("dkim=pass header.d=signer.test header.s=e9 header.a=ed25519-sha256"),
        "{got}"
    );
    // OpenDKIM's opendkim-testmsg signs too, with rsa-sha1 only (it has no algorithm
    // option; Ed25519 signing fails in it): RFC 8301 §3.1 forbids verifying rsa-sha1, so
    // the same key that passes with dkimsign's rsa-sha256 gives dkim=policy, and DMARC
    // does not count it.
    let mut cmd = Command::new("opendkim-testmsg");
    cmd.args(["-C", "-d", signer, "-s", "r9", "-k"])
        .arg(&rsa.path);
    let out = common::run_with_input(&mut cmd, message(from, "opendkim-rsa").as_bytes());
    let (ok, text) = common::status_and_text(&out);
    assert!(ok, "opendkim-testmsg signing: {text}");
    let odk_signed = String::from_utf8(out.stdout).unwrap();
    assert!(odk_signed.contains("a=rsa-sha1;"), "{odk_signed}");
    let got = relay.deliver(&odk_signed);
    let ar = common::auth_results(&got);
    assert!(
        ar.contains(
            "dkim=policy reason=\"rsa-sha1 is not accepted (RFC 8301 3.1)\" \
             header.d=signer.test header.s=r9 header.a=rsa-sha1"
        ),
        "{got}"
    );
    assert!(!ar.contains("dkim=pass"), "rsa-sha1 passed: {got}");
    let tampered = rsa_signed
        .replace("dkimpy-rsa", "dkimpy-tampered")
        .replace("Hello  Bob", "Hello  Eve");
    let got = relay.deliver(&tampered);
    assert!(common::auth_results(&got).contains("dkim=fail"), "{got}");
    let unsigned = relay.deliver(&message(from, "unsigned"));
    assert!(
        common::auth_results(&unsigned).contains("dkim=none"),
        "{unsigned}"
    );
    let forged_from = relay.deliver(&message("alice@example.test", "forged-from"));
    assert!(!forged_from.contains("DKIM-Signature:"), "{forged_from}");
    assert!(
        common::auth_results(&forged_from).contains("dkim=none"),
        "{forged_from}"
    );
}

/// A resolver that never answers: dkim=temperror, and the message is accepted.
#[test]
fn dns_timeout_is_temperror_not_rejection() {
    let dir = common::scratch();
    let rsa = keygen(dir.path(), "r9", "rsa");
    // A UDP socket nobody reads: every query times out (TCP to it is refused).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = silent.local_addr().unwrap().to_string();
    let relay = Relay::start(dir.path(), &resolver, &[], false);
    let out = common::run_with_input(
        Command::new("dkimsign").args(["r9", "signer.test", rsa.path.to_str().unwrap()]),
        message("carol@signer.test", "timeout").as_bytes(),
    );
    let signed = String::from_utf8(out.stdout).unwrap();
    assert!(signed.contains("DKIM-Signature:"), "dkimsign: {signed}");
    let got = relay.deliver(&signed);
    assert!(auth_results(&got).contains("dkim=temperror"), "{got}");
}
/// Mail mrelayd writes itself is signed once, when queued (relay::own_mail): a bounce (From
/// MAILER-DAEMON@mx.example.test, the hostname's keys) and a Sieve vacation reply (From
/// bob@example.test) are verified by dkimverify; the Sieve redirect of mail from outside,
/// whose From: claims example.test, is not signed.
#[test]
fn bounces_and_vacation_replies_are_signed_redirects_of_outside_mail_are_not() {
    let dir = common::scratch();
    let ed = keygen(dir.path(), "e1", "ed25519");
    let host = "mx.example.test";
    let zone = format!(
        "{}\n{}",
        txt_line(&format!("e1._domainkey.{DOMAIN}"), &ed.txt),
        txt_line(&format!("e1._domainkey.{host}"), &ed.txt)
    );
    let d = dir.path();
    std::fs::write(
        d.join("passwd"),
        "bob:{PLAIN}password::::::\ncarol:{PLAIN}password::::::\ndave:{PLAIN}password::::::\n",
    )
    .unwrap();
    std::fs::write(d.join("aliases"), "postmaster: dave\nfail: \"|exit 67\"\n").unwrap();
    std::fs::create_dir_all(d.join("sieve")).unwrap();
    std::fs::write(
        d.join("sieve/bob.sieve"),
        "require \"vacation\";\nvacation :days 1 :subject \"away\" \"I am away.\";\n\
         redirect \"dave@example.test\";\nkeep;\n",
    )
    .unwrap();
    let key = ed.path.display();
    let config = d.join("mailkit.toml");
    let text = format!(
        "hostname = \"{host}\"\nstate_dir = \"{state}\"\n\
[users]\npasswd_file = \"{dir}/passwd\"\nmail_location = \"{dir}/mail/%n\"\ndomains = [\"{DOMAIN}\"]\n\
[mrelayd]\naliases = \"{dir}/aliases\"\ntrusted_networks = []\ndkim_verify = false\n\
sieve = \"{dir}/sieve/%n.sieve\"\nlisten = [{{ address = \"127.0.0.1:0\", role = \"smtp\" }}]\n\
[mrelayd.dkim.\"{DOMAIN}\"]\nkeys = {{ e1 = \"{key}\" }}\n\
[mrelayd.dkim.\"{host}\"]\nkeys = {{ e1 = \"{key}\" }}\n\
[mrelayd.remote]\nrelayhost = \"[127.0.0.1]:1\"\nrelayhost_tls = \"none\"\n",
        state = d.join("state").display(),
        dir = d.display(),
    );
    std::fs::write(&config, common::with_run_as(&text)).unwrap();
    let (_child, l) = common::start_mrelayd(&config, &d.join("mrelayd.log"), &["smtp"]);
    let port = l.port("smtp").to_string();
    // From outside (no trusted network): carol@example.test to bob (vacation, redirect) and
    // to fail (a pipe exiting 67: a bounce to carol).
    for (to, subject) in [
        ("bob@example.test", "to bob"),
        ("fail@example.test", "to fail"),
    ] {
        let header = format!("Subject: {subject}");
        let (ok, out) = common::swaks(&[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--from",
            "carol@example.test",
            "--to",
            to,
            "--header",
            &header,
        ]);
        assert!(ok, "swaks: {out}");
    }
    let crlf = |m: &String| m.replace("\r\n", "\n").replace('\n', "\r\n");
    let carol = common::wait_maildir(&d.join("mail/carol"), 2);
    let find = |needle: &str| {
        carol
            .iter()
            .find(|m| m.contains(needle))
            .map(crlf)
            .unwrap_or_else(|| panic!("no {needle} in carol's mail: {carol:#?}"))
    };
    let bounce = find("MAILER-DAEMON@mx.example.test");
    let vacation = find("I am away.");
    for (what, m, d) in [("bounce", &bounce, host), ("vacation", &vacation, DOMAIN)] {
        assert_eq!(m.matches("DKIM-Signature:").count(), 1, "{what}: {m}");
        assert!(m.contains(&format!("d={d};")), "{what}: {m}");
        let (ok, out) = in_dns_namespace(&zone, "dkimverify", m.as_bytes());
        assert!(ok, "dkimverify {what}: {out}\n{m}");
    }
    let dave = common::wait_maildir(&d.join("mail/dave"), 1);
    let redirected = dave
        .iter()
        .find(|m| m.contains("Subject: to bob"))
        .unwrap_or_else(|| panic!("no redirect in dave's mail: {dave:#?}"));
    assert!(!redirected.contains("DKIM-Signature:"), "{redirected}");
}
