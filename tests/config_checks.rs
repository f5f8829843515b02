//! Configurations that parse but cannot work are refused when the daemon starts (exit 78,
//! one line naming the file, line and key), and doubtful but legitimate ones get one warning
//! at start (issue 12, unsafe or useless configurations). The real binaries are started.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("mailkit.toml");
    let d = dir.display();
    let text = format!(
        "hostname = \"localhost\"\nstate_dir = \"{d}/state\"\n[users]\npasswd_file = \"{d}/passwd\"\n\
         mail_location = \"{d}/mail/%u\"\n{text}"
    );
    std::fs::write(&p, common::with_run_as(&text)).unwrap();
    // postmaster is a user, so mrelayd's postmaster check (RFC 5321 §4.5.1) passes without an
    // aliases file and the lines the tests name stay where they are.
    std::fs::write(
        dir.join("passwd"),
        "alice:{PLAIN}password::::::\npostmaster:{PLAIN}password::::::\n",
    )
    .unwrap();
    p
}

/// Runs `PROGRAM -c CONFIG args...` to its end; its exit code and stderr.
fn run(program: &str, config: &Path, args: &[&str]) -> (Option<i32>, String) {
    common::give_to_nobody(config.parent().unwrap());
    // With a time limit: a daemon that does not refuse the config would serve forever.
    let out = common::run_with_input(
        Command::new(common::bin(program))
            .arg("-c")
            .arg(config)
            .args(args),
        b"",
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit 78 with one line `PROG: FILE:LINE: key `KEY`: ...` containing `why`.
fn assert_refused(program: &str, config: &Path, args: &[&str], line: usize, key: &str, why: &str) {
    let (code, err) = run(program, config, args);
    assert_eq!(code, Some(78), "{program} {args:?}: {err}");
    let prefix = format!("{program}: {}:{line}: key `{key}`: ", config.display());
    assert!(err.starts_with(&prefix), "{err}\nexpected {prefix}");
    assert!(err.contains(why), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_submission_listener_without_a_certificate_is_refused() {
    let dir = common::scratch();
    for role in ["submission", "submissions"] {
        let config = write(
            dir.path(),
            &format!(
                "[mrelayd]\nlisten = [ {{ address = \"127.0.0.1:0\" }}, {{ address = \"127.0.0.1:0\", role = \"{role}\" }} ]\n"
            ),
        );
        let why = format!("a {role} listener needs [tls] cert and key");
        assert_refused("mrelayd", &config, &["serve"], 7, "mrelayd.listen", &why);
        // inetd with that role, too; the smtp role needs no certificate.
        let args = ["inetd", "--role", role];
        assert_refused("mrelayd", &config, &args, 7, "mrelayd.listen", &why);
    }
}

#[test]
fn relayhost_credentials_without_tls_or_password_are_refused() {
    let dir = common::scratch();
    let relay = "[mrelayd]\nlisten = [ { address = \"127.0.0.1:0\" } ]\n[mrelayd.remote]\n\
                 relayhost = \"[127.0.0.1]:1\"\nrelayhost_user = \"me\"\n";
    let config = write(
        dir.path(),
        &format!("{relay}relayhost_password_command = \"echo pw\"\nrelayhost_tls = \"none\"\n"),
    );
    let why = "\"none\" with relayhost_user \"me\": AUTH is never sent without TLS";
    assert_refused(
        "mrelayd",
        &config,
        &["serve"],
        12,
        "mrelayd.remote.relayhost_tls",
        why,
    );
    let config = write(dir.path(), relay);
    let why = "relayhost_user \"me\" needs relayhost_password_command";
    assert_refused(
        "mrelayd",
        &config,
        &["serve"],
        10,
        "mrelayd.remote.relayhost_user",
        why,
    );
    // A domain's own relayhost: its own key is named.
    let config = write(
        dir.path(),
        "[mrelayd]\nlisten = [ { address = \"127.0.0.1:0\" } ]\n\
         [mrelayd.remote.domains.\"bank.test\"]\nrelayhost = \"[127.0.0.1]:1\"\n\
         relayhost_user = \"me\"\nrelayhost_password_command = \"echo pw\"\nrelayhost_tls = \"none\"\n",
    );
    let key = "mrelayd.remote.domains.\"bank.test\".relayhost_tls";
    let why = "\"none\" with relayhost_user \"me\" (for bank.test)";
    assert_refused("mrelayd", &config, &["serve"], 12, key, why);
}

#[test]
fn opportunistic_tls_with_relayhost_credentials_is_one_warning_at_start() {
    let dir = common::scratch();
    let config = write(
        dir.path(),
        "[mrelayd]\nlisten = [ { address = \"127.0.0.1:0\" } ]\n[mrelayd.remote]\n\
         relayhost = \"[127.0.0.1]:1\"\nrelayhost_user = \"me\"\n\
         relayhost_password_command = \"echo pw\"\nrelayhost_tls = \"may\"\n",
    );
    let log = dir.path().join("mrelayd.log");
    let (_child, _l) = common::start_mrelayd(&config, &log, &["smtp"]);
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    let want = format!(
        "mrelayd: warning: {}:12: key `mrelayd.remote.relayhost_tls`: \"may\" with relayhost_user",
        config.display()
    );
    assert!(warnings[0].starts_with(&want), "{text}");
}

#[test]
fn a_pop3_setup_where_no_one_can_log_in_is_refused() {
    let dir = common::scratch();
    let config = write(
        dir.path(),
        "[mpopd]\nlisten = [ { address = \"127.0.0.1:0\" } ]\nallow_plaintext_auth = \"never\"\n",
    );
    let why = "\"never\" without [tls] cert and key: no TLS, so no one could ever log in";
    let key = "mpopd.allow_plaintext_auth";
    assert_refused("mpopd", &config, &["serve"], 8, key, why);
    assert_refused("mpopd", &config, &["inetd"], 8, key, why);
    let config = write(
        dir.path(),
        "[mpopd]\nlisten = [ { address = \"127.0.0.1:0\", role = \"implicit-tls\" } ]\n",
    );
    let why = "an implicit-tls listener needs [tls] cert and key";
    assert_refused("mpopd", &config, &["serve"], 7, "mpopd.listen", why);
    assert_refused(
        "mpopd",
        &config,
        &["inetd", "--implicit-tls"],
        7,
        "mpopd.listen",
        why,
    );
}

/// A DKIM key that cannot sign (an RSA key under 2048 bits made by OpenSSL, a key file
/// readable by its group, a missing file) and an SRS secret file that cannot be used (empty,
/// missing) or a bad SRS domain are refused at start with the line of their key.
#[test]
fn unusable_dkim_keys_and_srs_secrets_are_refused_with_their_line() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = common::scratch();
    let d = dir.path();
    let small = d.join("small.pem");
    let out = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&small)
        .arg("1024")
        .output()
        .expect("openssl (Debian's openssl package)");
    assert!(out.status.success(), "{out:?}");
    let shared = d.join("shared.pem");
    let out = Command::new(common::bin("mrelayd"))
        .args(["dkim", "keygen", "example.test", "s1", "-o"])
        .arg(&shared)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::set_permissions(&small, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o640)).unwrap();
    let listen = "[mrelayd]\nlisten = [ { address = \"127.0.0.1:0\" } ]\n";
    let key = "mrelayd.dkim.\"example.test\".keys.s1";
    for (file, why) in [
        (small.clone(), "an RSA key under 2048 bits"),
        (
            shared,
            "readable by group or others (mode 640); chmod 600 it",
        ),
        (d.join("missing.pem"), "missing.pem: No such file"),
    ] {
        let text = format!(
            "{listen}[mrelayd.dkim.\"example.test\"]\nkeys = {{ s1 = \"{}\" }}\n",
            file.display()
        );
        let config = write(d, &text);
        assert_refused("mrelayd", &config, &["serve"], 9, key, why);
    }
    let empty = d.join("empty.secret");
    std::fs::write(&empty, "").unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o600)).unwrap();
    let good = d.join("srs.secret");
    std::fs::write(&good, "s3cret\n").unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (secret, domain, line, key, why) in [
        (
            &empty,
            "",
            10,
            "secret_file",
            "no SRS secret (the file is empty)",
        ),
        (
            &d.join("missing.secret"),
            "",
            10,
            "secret_file",
            "No such file",
        ),
        (
            &good,
            "domain = \"a b\"\n",
            11,
            "domain",
            "bad SRS domain \"a b\"",
        ),
    ] {
        let text = format!(
            "{listen}[mrelayd.srs]\nenable = true\nsecret_file = \"{}\"\n{domain}",
            secret.display()
        );
        let config = write(d, &text);
        let key = format!("mrelayd.srs.{key}");
        assert_refused("mrelayd", &config, &["serve"], line, &key, why);
    }
}

/// `[mrelayd.remote]` values the delivery engine cannot use are configuration errors (exit
/// 78, as EXIT STATUS says; they were 70): a resolver given by name, CA files without a PEM
/// certificate, a relayhost that does not parse.
#[test]
fn unusable_remote_settings_are_configuration_errors() {
    let dir = common::scratch();
    let d = dir.path();
    let garbage = d.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let head = "[mrelayd]\nlisten = [ { address = \"127.0.0.1:0\" } ]\n[mrelayd.remote]\n";
    for (line, key, why) in [
        (
            "resolver = \"localhost:53\"".to_string(),
            "resolver",
            "\"localhost:53\" is not IP or IP:PORT",
        ),
        (
            format!("ca_file = \"{}\"", garbage.display()),
            "ca_file",
            "no PEM certificate found",
        ),
        (
            format!(
                "mta_sts = true\nmta_sts_ca_file = \"{}/missing.pem\"",
                d.display()
            ),
            "mta_sts_ca_file",
            "No such file",
        ),
    ] {
        let config = write(d, &format!("{head}{line}\n"));
        let n = if key == "mta_sts_ca_file" { 10 } else { 9 };
        let key = format!("mrelayd.remote.{key}");
        assert_refused("mrelayd", &config, &["serve"], n, &key, why);
    }
    let config = write(d, &format!("{head}relayhost = \"[bad:host\"\n"));
    let (code, err) = run("mrelayd", &config, &["serve"]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains("mrelayd.remote.relayhost: \"[bad:host\""),
        "{err}"
    );
}

/// A `dnsbl` entry that is no zone name (an empty label, a CIDR) is refused at start: every
/// look-up in it would fail, and a DNS failure lets the client through, so the check would be
/// off unnoticed. A `dnsbl_reply` for a zone not in `dnsbl` is one warning.
#[test]
fn dnsbl_zones_that_are_no_domain_names_are_refused() {
    let dir = common::scratch();
    let head = "[mrelayd]\nlisten = [ { address = \"127.0.0.1:0\" } ]\n";
    for zone in ["zen..example", "192.0.2.0/24", ""] {
        let config = write(
            dir.path(),
            &format!("{head}dnsbl = [\"zen.example\", \"{zone}\"]\n"),
        );
        let why = format!("{zone:?} is not a DNSBL zone");
        assert_refused("mrelayd", &config, &["serve"], 8, "mrelayd.dnsbl", &why);
    }
    let config = write(
        dir.path(),
        &format!(
            "{head}dnsbl = [\"zen.example.\"]\n\
             dnsbl_reply = {{ \"ZEN.example\" = \"see one\", \"other.example\" = \"see two\" }}\n"
        ),
    );
    let log = dir.path().join("mrelayd.log");
    let (_child, _l) = common::start_mrelayd(&config, &log, &["smtp"]);
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    let want = format!(
        "mrelayd: warning: {}:9: key `mrelayd.dnsbl_reply.\"other.example\"`: \"other.example\" is not in dnsbl",
        config.display()
    );
    assert!(warnings[0].starts_with(&want), "{text}");
}
