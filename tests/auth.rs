//! Users and authentication against the real Dovecot: its passwd-file and hashes verify here,
//! our hashes verify in Dovecot, and a private Dovecot auth server reading the same tricky
//! passwd-file agrees with us on every login. Plus the Authenticator (throttle, reload, async),
//! and the qmail checkpassword interface with a real program on fd 3.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailkit::auth::{
    self, hash_password, AuthResult, Authenticator, Checkpassword, CheckpasswordResult, Scheme,
    ThrottleConfig, UserDb,
};
use mailkit::config::Config;
use mailkit::exit;

const SECRET: &str = "secret";
const WRONG: &[&str] = &["Secret", "secret ", "secre", "", "password"];

fn doveadm(args: &[&str]) -> std::process::Output {
    // coreutils timeout bounds every call (a wedged auth server must fail the test, not hang it).
    let out = Command::new("timeout")
        .arg("60")
        .arg("doveadm")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("doveadm (dovecot-core) must be installed");
    out
}

/// `doveadm pw -s SCHEME -p PASSWORD [extra...]`.
fn dovecot_hash(scheme: &str, password: &str, extra: &[&str]) -> String {
    let mut args = vec!["pw", "-s", scheme, "-p", password];
    args.extend_from_slice(extra);
    let out = doveadm(&args);
    assert!(out.status.success(), "doveadm pw -s {scheme}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn no_throttle() -> ThrottleConfig {
    ThrottleConfig {
        failure_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        max_failures: 0,
        lockout: Duration::from_secs(60),
        max_tracked: 100,
        user_failure_delay: Duration::ZERO,
        user_max_delay: Duration::ZERO,
        max_tracked_users: 100,
    }
}

#[test]
fn peers_passwd_file_verifies() {
    let path = common::peer("PEER_PASSWD_FILE");
    let password = common::peer("PEER_PASSWORD");
    let db = UserDb::load(Path::new(&path)).unwrap();
    assert!(db.warnings().is_empty(), "{:?}", db.warnings());
    let want = [
        ("alice", "PLAIN"),
        ("bob", "SHA512-CRYPT"),
        ("carol", "ARGON2ID"),
    ];
    for (user, scheme) in want {
        let u = db.lookup(user).unwrap_or_else(|| panic!("{user} missing"));
        assert_eq!(u.scheme_name(), scheme);
        assert!(db.verify(user, password.as_bytes()).is_some(), "{user}");
        for w in [
            "passwor",
            "Password",
            "password\n",
            "password ",
            "",
            "passwordx",
        ] {
            assert!(db.verify(user, w.as_bytes()).is_none(), "{user} with {w:?}");
        }
    }
    assert_eq!(
        db.lookup("alice").unwrap().plaintext_password(),
        Some(password.as_bytes())
    );
    assert_eq!(db.lookup("bob").unwrap().plaintext_password(), None);
    assert!(db.verify("mallory", password.as_bytes()).is_none());
}

#[test]
fn dovecot_generated_hashes_verify() {
    let mut cases: Vec<(String, &str)> = [
        "SHA512-CRYPT",
        "SHA256-CRYPT",
        "BLF-CRYPT",
        "ARGON2ID",
        "ARGON2I",
        "CRYPT",
        "PLAIN",
        "CLEAR",
        "SSHA512",
        "SHA512",
        "SSHA256",
        "SHA256",
        "SHA256.HEX",
        "PLAIN.b64",
    ]
    .iter()
    .map(|s| (dovecot_hash(s, SECRET, &[]), *s))
    .collect();
    cases.push((
        dovecot_hash("SHA512-CRYPT", SECRET, &["-r", "12000"]),
        "rounds",
    ));
    cases.push((
        dovecot_hash("BLF-CRYPT", SECRET, &["-r", "6"]),
        "bcrypt cost",
    ));
    // Without {SCHEME} the passwd-file default CRYPT applies.
    let bare = dovecot_hash("SHA512-CRYPT", SECRET, &[]);
    cases.push((bare["{SHA512-CRYPT}".len()..].to_string(), "bare"));
    for (field, what) in &cases {
        let stored =
            auth::StoredPassword::parse(field).unwrap_or_else(|e| panic!("{what}: {field}: {e}"));
        assert!(stored.verify(SECRET.as_bytes()), "{what}: {field}");
        // Argon2 is deliberately slow (seconds in an unoptimized build): one wrong try is enough.
        let wrong = if what.starts_with("ARGON2") {
            &WRONG[..1]
        } else {
            WRONG
        };
        for w in wrong {
            assert!(!stored.verify(w.as_bytes()), "{what}: {field} with {w:?}");
        }
    }
}

#[test]
fn our_hashes_verify_in_dovecot() {
    for scheme in [
        Scheme::Sha512Crypt,
        Scheme::Sha256Crypt,
        Scheme::BlfCrypt,
        Scheme::Argon2id,
        Scheme::Argon2i,
        Scheme::Ssha512,
        Scheme::Plain,
    ] {
        let field = hash_password(scheme, SECRET.as_bytes()).unwrap();
        let ok = doveadm(&["pw", "-t", &field, "-p", SECRET]);
        assert!(
            ok.status.success(),
            "{scheme}: dovecot rejects {field}: {ok:?}"
        );
        let bad = doveadm(&["pw", "-t", &field, "-p", "Secret"]);
        assert!(
            !bad.status.success(),
            "{scheme}: dovecot accepts a wrong password"
        );
    }
    // A password with characters a passwd-file cannot hold raw.
    let field = hash_password(Scheme::Plain, b"a:b").unwrap();
    assert!(
        doveadm(&["pw", "-t", &field, "-p", "a:b"]).status.success(),
        "{field}"
    );
}

/// A private Dovecot (no protocols, only its auth service) reading a passwd-file we write.
struct Dovecot {
    conf: PathBuf,
    _child: common::KillOnDrop,
    _dir: tempfile::TempDir,
}

impl Dovecot {
    fn start(users: &Path) -> Dovecot {
        let u = users.display();
        Dovecot::start_with(&format!(
            "passdb {{\n  driver = passwd-file\n  args = {u}\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = {u}\n}}\n"
        ))
    }

    /// A private Dovecot with these passdb/userdb blocks.
    fn start_with(dbs: &str) -> Dovecot {
        let dir = common::scratch();
        let d = dir.path();
        std::fs::create_dir(d.join("run")).unwrap();
        std::fs::create_dir(d.join("state")).unwrap();
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        let conf = d.join("dovecot.conf");
        std::fs::write(
            &conf,
            format!(
                "protocols = none\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
                 instance_name = mkauth-{name}\nlog_path = {d}/dovecot.log\n\
                 disable_plaintext_auth = no\nssl = no\nauth_failure_delay = 0\n{dbs}",
                d = d.display(),
            ),
        )
        .unwrap();
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot must be installed");
        let socket = d.join("run/auth-client");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "private dovecot did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Dovecot {
            conf,
            _child: common::KillOnDrop(child),
            _dir: dir,
        }
    }

    fn login_ok(&self, user: &str, password: &str) -> bool {
        match self.login(user, password) {
            Some(0) => true,
            Some(77) => false,
            other => panic!("doveadm auth test {user}: exit {other:?}"),
        }
    }

    /// `doveadm auth test` exit code: 0 success, 77 failure, others internal errors.
    fn login(&self, user: &str, password: &str) -> Option<i32> {
        // Dovecot delays logins from an address after its failures (auth penalty, up to 15 s):
        // a fresh client address per try keeps this test fast without changing any verdict.
        static N: AtomicU32 = AtomicU32::new(1);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let rip = format!("rip=10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
        let out = doveadm(&[
            "-c",
            self.conf.to_str().unwrap(),
            "auth",
            "test",
            "-x",
            &rip,
            user,
            password,
        ]);
        out.status.code()
    }

    /// `doveadm user` fields (uid, gid, home, mail), or None for a user without userdb data.
    fn userdb(&self, user: &str) -> Option<std::collections::HashMap<String, String>> {
        let out = doveadm(&["-c", self.conf.to_str().unwrap(), "user", user]);
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8(out.stdout).unwrap();
        Some(
            text.lines()
                .skip(1)
                .filter_map(|l| l.split_once('\t'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

#[test]
fn dovecot_and_mailkit_agree_on_a_tricky_passwd_file() {
    let dir = common::scratch();
    let sha512 = dovecot_hash("SHA512-CRYPT", "pw-dave", &[]);
    let bare_crypt = &dovecot_hash("SHA256-CRYPT", "pw-erin", &[])["{SHA256-CRYPT}".len()..];
    let blf = dovecot_hash("BLF-CRYPT", "pw-frank", &[]);
    let argon = dovecot_hash("ARGON2ID", "pw-gina", &[]);
    let ours512 = hash_password(Scheme::Sha512Crypt, b"pw-heidi").unwrap();
    let ours256 = hash_password(Scheme::Sha256Crypt, b"pw-ivan").unwrap();
    let oursblf = hash_password(Scheme::BlfCrypt, b"pw-judy").unwrap();
    let oursargon = hash_password(Scheme::Argon2id, b"pw-ken").unwrap();
    let ssha = dovecot_hash("SSHA512", "pw-leo", &[]);
    let text = format!(
        "# Dovecot passwd-file with every feature we claim\n\
         \n\
         :comment-like line dovecot skips\n\
         alice:{{PLAIN}}pw-alice:1000:1000::/home/alice::\n\
         bob@example.test:{{PLAIN}}pw-bob:1001:1001:Bob B:/home/bob:/bin/false:userdb_mail=maildir:~/Mail\n\
         carol:{{PLAIN}}pw-carol:1002:1002::/home/carol\n\
         dave:{sha512}:1003:1003::/home/dave::\n\
         erin:{bare_crypt}:1004:1004::/home/erin::\n\
         frank:{blf}:1005:1005::/home/frank::\n\
         gina:{argon}:1006:1006::/home/gina::\n\
         heidi:{ours512}:1007:1007::/home/heidi::\n\
         ivan:{ours256}:1008:1008::/home/ivan::\n\
         judy:{oursblf}:1009:1009::/home/judy::\n\
         ken:{oursargon}:1010:1010::/home/ken::\n\
         leo:{ssha}:1011:1011::/home/leo::\n\
         mike:{{PLAIN}}pw-mike\r\n\
         nina:{{PLAIN}}first:1012:1012::/home/nina::\n\
         nina:{{PLAIN}}second:1013:1013::/home/nina2::\n\
         oscar::1014:1014::/home/oscar::\n\
         # the last line has no newline\n\
         pat:{{PLAIN.b64}}cHctcGF0:1015:1015::/home/pat::"
    );
    let users = dir.path().join("users");
    std::fs::write(&users, &text).unwrap();
    let db = UserDb::load(&users).unwrap();
    let dovecot = Dovecot::start(&users);

    let names = [
        "alice",
        "bob@example.test",
        "carol",
        "dave",
        "erin",
        "frank",
        "gina",
        "heidi",
        "ivan",
        "judy",
        "ken",
        "leo",
        "mike",
        "nina",
        "oscar",
        "pat",
        "nobody",
    ];
    let mut agreed_logins = 0;
    for name in names {
        let local = name.split('@').next().unwrap();
        let mut tries = vec![format!("pw-{local}"), format!("pw-{local}x")];
        // Argon2 costs seconds per try in an unoptimized build: two tries are enough there.
        if !matches!(name, "gina" | "ken") {
            tries.push(String::new());
        }
        if name == "nina" {
            tries.extend(["first".to_string(), "second".to_string()]);
        }
        for pw in tries {
            let theirs = dovecot.login_ok(name, &pw);
            let ours = db.verify(name, pw.as_bytes()).is_some();
            assert_eq!(
                ours, theirs,
                "{name} / {pw:?}: mailkit {ours}, dovecot {theirs}"
            );
            agreed_logins += usize::from(ours);
        }
    }
    // Every user with a password logs in exactly once (nina with her first entry).
    assert_eq!(agreed_logins, 15, "logins that succeeded in both");
    // Dovecot lower-cases login names (auth_username_format = %Lu): so do we (issue 12).
    for (name, pw) in [
        ("ALICE", "pw-alice"),
        ("Bob@Example.TEST", "pw-bob"),
        ("BOB@example.test", "pw-bob"),
        ("Carol", "pw-carol"),
        ("Carol", "pw-carolx"),
    ] {
        let theirs = dovecot.login_ok(name, pw);
        let ours = db.verify(name, pw.as_bytes()).is_some();
        assert_eq!(
            ours, theirs,
            "{name} / {pw:?}: mailkit {ours}, dovecot {theirs}"
        );
        assert_eq!(ours, !pw.ends_with('x'), "{name} / {pw:?}");
    }
    assert!(db.verify("nina", b"first").is_some());

    for name in names {
        let theirs = dovecot.userdb(name);
        let ours = db.lookup(name);
        let Some(fields) = theirs else {
            // Dovecot has no userdb data for these (no uid/home in the file).
            assert!(
                ours.is_none_or(|u| u.home.is_none()),
                "{name}: dovecot has no userdb entry"
            );
            continue;
        };
        let u = ours.unwrap_or_else(|| panic!("{name}: dovecot knows it, mailkit does not"));
        assert_eq!(
            fields.get("uid").map(String::as_str),
            u.uid.map(|v| v.to_string()).as_deref(),
            "{name} uid"
        );
        assert_eq!(
            fields.get("gid").map(String::as_str),
            u.gid.map(|v| v.to_string()).as_deref(),
            "{name} gid"
        );
        let home = u.home.as_ref().map(|h| h.display().to_string());
        assert_eq!(fields.get("home"), home.as_ref(), "{name} home");
        // Dovecot prints its (empty) global mail_location when the user has none.
        let mail = fields
            .get("mail")
            .map(String::as_str)
            .filter(|m| !m.is_empty());
        assert_eq!(mail, u.extra_field("userdb_mail"), "{name} mail");
    }
    let bob = db.lookup("bob@example.test").unwrap();
    assert_eq!(bob.local_part(), "bob");
    assert_eq!(bob.domain(), Some("example.test"));
    assert_eq!(bob.gecos, "Bob B");
    assert_eq!(
        bob.mail_location("/var/mail/%d/%n").unwrap(),
        Path::new("/home/bob/Mail")
    );
    assert_eq!(
        db.lookup("alice")
            .unwrap()
            .mail_location("%h/Maildir")
            .unwrap(),
        Path::new("/home/alice/Maildir")
    );
    assert!(db
        .warnings()
        .iter()
        .any(|w| w.contains("nina") && w.contains("more than once")));
}

#[test]
fn passwd_file_warnings_name_the_line() {
    let dir = common::scratch();
    let users = dir.path().join("users");
    let long = "x".repeat(auth::MAX_LINE_LEN + 1);
    std::fs::write(
        &users,
        format!(
            "ok:{{PLAIN}}x\nbad:{{NOPE}}x\n{long}\ntrunc:{{SHA512-CRYPT}}$6$abc\nmd5:$1$abc$def\n\
             uidname:{{PLAIN}}x:no-such-user-here:0\nsp ace:{{PLAIN}}x\n"
        ),
    )
    .unwrap();
    let db = UserDb::load(&users).unwrap();
    let w = db.warnings().join("\n");
    let file = users.display().to_string();
    for (line, what) in [
        (2, "unknown password scheme {NOPE}"),
        (3, "longer than"),
        (4, "malformed SHA512-CRYPT"),
        (5, "MD5-CRYPT"),
        (6, "unknown uid"),
        (7, "spaces"),
    ] {
        let prefix = format!("{file}:{line}: ");
        assert!(
            db.warnings()
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(what)),
            "no warning for line {line} ({what}) in:\n{w}"
        );
    }
    assert!(db.verify("ok", b"x").is_some());
    // Users with unusable passwords exist (for delivery) but cannot log in.
    assert!(db.lookup("bad").is_some());
    assert!(db.verify("bad", b"x").is_none());
    assert!(db.lookup("sp ace").is_none());
    assert_eq!(db.lookup("uidname").unwrap().gid, Some(0));
}

#[test]
fn adversarial_passwd_files_do_not_panic() {
    let mut cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\n\n\n".to_vec(),
        b":".to_vec(),
        b"::::::::::::::".to_vec(),
        b"a".to_vec(),
        b"a:".to_vec(),
        b"a:{".to_vec(),
        b"a:{}".to_vec(),
        b"a:{PLAIN".to_vec(),
        b"a:$6$$".to_vec(),
        b"a:$2y$".to_vec(),
        b"a:$argon2id$".to_vec(),
        b"a:{ARGON2ID}$argon2id$v=19$m=1,t=1,p=1$$".to_vec(),
        b"a:{PLAIN}x:99999999999999999999:-1:::::::::::".to_vec(),
        b"\xff\xfe:{PLAIN}x".to_vec(),
        b"a:{PLAIN}\x00x".to_vec(),
        vec![b':'; 100_000],
        vec![b'\n'; 100_000],
    ];
    cases.push(format!("{}:{{PLAIN}}x", "u".repeat(auth::MAX_USERNAME_LEN + 1)).into_bytes());
    for c in cases {
        let db = UserDb::parse(&c);
        for u in db.users() {
            let _ = u.verify_password(b"x");
            let _ = u.mail_location("%h/Maildir");
            let _ = u.mail_location("/var/mail/%d/%n");
        }
        let _ = db.verify("a", b"x");
    }
}

#[test]
fn mail_location_templates() {
    let db = UserDb::parse(
        b"a@Example.Test:{PLAIN}x:1:1::/home/a::\nplain:{PLAIN}x:1:1::/srv/plain\n\
          evil/../x@d:{PLAIN}x\nnohome:{PLAIN}x\n",
    );
    let a = db
        .lookup("a@example.test")
        .expect("domain is case-insensitive");
    assert_eq!(a.name, "a@Example.Test");
    let cases = [
        ("%h/Maildir", "/home/a/Maildir"),
        ("maildir:~/Maildir", "/home/a/Maildir"),
        ("maildir:~/Mail:LAYOUT=fs", "/home/a/Mail"),
        ("/var/mail/%d/%n", "/var/mail/Example.Test/a"),
        (
            "/var/mail/%{domain}/%{username}",
            "/var/mail/Example.Test/a",
        ),
        ("/srv/%u/100%%", "/srv/a@Example.Test/100%"),
        ("%{home}/x", "/home/a/x"),
    ];
    for (t, want) in cases {
        assert_eq!(a.mail_location(t).unwrap(), Path::new(want), "{t}");
    }
    for bad in ["Maildir", "%h/%q", "%h/%", "%{home", "relative/%n"] {
        assert!(a.mail_location(bad).is_err(), "{bad}");
    }
    let plain = db.lookup("plain").unwrap();
    assert_eq!(plain.domain(), None);
    assert_eq!(
        plain.mail_location("/var/mail/%n").unwrap(),
        Path::new("/var/mail/plain")
    );
    let evil = db.lookup("evil/../x@d").unwrap();
    assert!(evil.mail_location("/var/mail/%d/%n").is_err());
    let nohome = db.lookup("nohome").unwrap();
    assert!(nohome.mail_location("%h/Maildir").is_err());
    assert_eq!(
        nohome.mail_location("/var/mail/%u").unwrap(),
        Path::new("/var/mail/nohome")
    );
    // Local domains map plain users to addresses.
    let domains = vec!["example.org".to_string()];
    assert_eq!(
        db.lookup_address("plain@EXAMPLE.org", &domains)
            .map(|u| u.name.as_str()),
        Some("plain")
    );
    assert!(db.lookup_address("plain@other.test", &domains).is_none());
    assert_eq!(
        db.lookup_address("a@example.test", &domains)
            .map(|u| u.name.as_str()),
        Some("a@Example.Test")
    );
}

fn write_users(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("users");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn authenticator_checks_throttles_and_reloads() {
    let dir = common::scratch();
    let hash = hash_password(Scheme::Sha512Crypt, b"pw1").unwrap();
    let users = write_users(dir.path(), &format!("u1:{hash}:1:1::/home/u1::\n"));
    let throttle = ThrottleConfig {
        failure_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        max_failures: 3,
        lockout: Duration::from_secs(600),
        max_tracked: 10,
        user_failure_delay: Duration::from_millis(1),
        user_max_delay: Duration::from_millis(4),
        max_tracked_users: 10,
    };
    let a = Authenticator::passwd_file(&users, throttle).unwrap();
    let me = ip("192.0.2.10");
    let v = a.check("u1", b"pw1", me);
    assert!(
        matches!(&v.result, AuthResult::Ok(u) if u.name == "u1"),
        "{v:?}"
    );
    assert_eq!(v.delay, Duration::ZERO);
    // Unknown user and wrong password look the same.
    let v1 = a.check("nobody", b"pw1", me);
    let v2 = a.check("u1", b"nope", me);
    assert!(matches!(v1.result, AuthResult::Failed));
    assert!(matches!(v2.result, AuthResult::Failed));
    assert_eq!(v1.delay, Duration::from_millis(1));
    assert_eq!(v2.delay, Duration::from_millis(2));
    let v3 = a.check("u1", b"", me);
    assert!(matches!(v3.result, AuthResult::Failed));
    // Locked out now: even the right password is not checked.
    let v = a.check("u1", b"pw1", me);
    assert!(matches!(v.result, AuthResult::Throttled(_)), "{v:?}");
    // Another address is unaffected.
    assert!(matches!(
        a.check("u1", b"pw1", ip("192.0.2.11")).result,
        AuthResult::Ok(_)
    ));

    // The file changes: the new user works without a restart.
    let hash2 = hash_password(Scheme::Argon2id, b"pw2").unwrap();
    let text = format!("u1:{hash}:1:1::/home/u1::\nu2:{hash2}:2:2::/home/u2::\n");
    let tmp = dir.path().join("users.new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &users).unwrap();
    // Looked at once a second (auth::PASSWD_CHECK_INTERVAL): wait for it, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while a.lookup("u2").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "passwd-file never reloaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let other = ip("2001:db8::1");
    let v = a.check("u2", b"pw2", other);
    assert!(
        matches!(&v.result, AuthResult::Ok(u) if u.home.as_deref() == Some(Path::new("/home/u2"))),
        "{v:?}"
    );
    assert_eq!(a.lookup("u2").unwrap().uid, Some(2));
    // A file that disappears keeps the last good users.
    std::fs::remove_file(&users).unwrap();
    assert!(matches!(
        a.check("u2", b"pw2", other).result,
        AuthResult::Ok(_)
    ));
    // Bad user names fail without panicking.
    let long = "x".repeat(auth::MAX_USERNAME_LEN + 1);
    for (i, name) in ["", "a\u{0}b", "a\nb", &long].into_iter().enumerate() {
        let peer = ip(&format!("203.0.113.{i}"));
        assert!(
            matches!(a.check(name, b"pw2", peer).result, AuthResult::Failed),
            "{name:?}"
        );
    }
}

#[test]
fn apop_style_plaintext_check() {
    let dir = common::scratch();
    let hash = hash_password(Scheme::Sha512Crypt, b"h").unwrap();
    let users = write_users(dir.path(), &format!("p:{{PLAIN}}plainpw\nh:{hash}\n"));
    let a = Authenticator::passwd_file(&users, no_throttle()).unwrap();
    assert!(a.has_plaintext_passwords());
    let peer = ip("127.0.0.1");
    let v = a.check_with_plaintext("p", peer, |pw| pw == b"plainpw");
    assert!(matches!(v.result, AuthResult::Ok(_)));
    let v = a.check_with_plaintext("p", peer, |pw| pw == b"other");
    assert!(matches!(v.result, AuthResult::Failed));
    // Hashed users and unknown users cannot use it, and the closure still runs.
    for user in ["h", "unknown"] {
        let mut ran = false;
        let v = a.check_with_plaintext(user, peer, |_| {
            ran = true;
            true
        });
        assert!(matches!(v.result, AuthResult::Failed), "{user}");
        assert!(ran, "{user}: timing must not depend on the user existing");
    }
}

#[test]
fn authenticator_from_config_and_async_check() {
    let dir = common::scratch();
    let hash = hash_password(Scheme::BlfCrypt, b"pw").unwrap();
    write_users(
        dir.path(),
        &format!("x@example.test:{hash}:1:1::/home/x::\n"),
    );
    let cfg_path = dir.path().join("mailkit.toml");
    std::fs::write(
        &cfg_path,
        "[users]\npasswd_file = \"users\"\nmail_location = \"/var/mail/%d/%n\"\n\
         [auth]\nfailure_delay_ms = 1\nmax_failures = 2\n",
    )
    .unwrap();
    let config = Config::load(Some(&cfg_path)).unwrap();
    let a = Arc::new(Authenticator::from_config(&config).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peer = ip("198.51.100.7");
    let (ok, bad) = rt.block_on(async {
        let ok = a.check_async("x@example.test", b"pw", peer).await;
        let bad = a.check_async("x@example.test", b"pX", peer).await;
        (ok, bad)
    });
    let AuthResult::Ok(user) = ok else {
        panic!("{ok:?}")
    };
    assert_eq!(
        a.mailbox(&user).unwrap(),
        Path::new("/var/mail/example.test/x")
    );
    assert!(matches!(bad, AuthResult::Failed));
    assert_eq!(a.throttle().failures(peer), 1);

    // No passwd-file and no checkpassword: a config error (78).
    std::fs::write(&cfg_path, "[users]\npasswd_file = \"missing\"\n").unwrap();
    let config = Config::load(Some(&cfg_path)).unwrap();
    let e = Authenticator::from_config(&config).unwrap_err();
    assert_eq!(exit::code_of(&e), exit::CONFIG);
    assert!(format!("{e:#}").contains("missing"), "{e:#}");
}

/// A qmail-style checkpassword as a shell script: reads `user\0password\0timestamp\0` on fd 3,
/// records what it saw, accepts `good`/`p a$s'"w`, and chains to its subprogram with $HOME set.
fn checkpassword_script(dir: &Path) -> PathBuf {
    let p = dir.join("checkpw");
    let seen = dir.join("seen");
    std::fs::write(
        &p,
        format!(
            r#"#!/bin/sh
data=$(head -c 2048 <&3 | tr '\0' '\n')
user=$(printf '%s\n' "$data" | sed -n 1p)
pass=$(printf '%s\n' "$data" | sed -n 2p)
ts=$(printf '%s\n' "$data" | sed -n 3p)
stdin=$(cat | wc -c)
printf 'user=%s\nts=%s\nremote=%s\nstdin=%s\n' "$user" "$ts" "$TCPREMOTEIP" "$stdin" > {seen}
case "$user" in
  temp) exit 111 ;;
  hang) sleep 30; exit 1 ;;
  weird) exit 2 ;;
esac
if [ "$user" = good ] && [ "$pass" = 'p a$s'"'"'"w' ]; then
  HOME=/home/good; export HOME
  exec "$@"
fi
if [ "$user" = nochain ] && [ "$pass" = x ]; then exit 0; fi
exit 1
"#,
            seen = seen.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn checkpassword_interface() {
    let dir = common::scratch();
    let script = checkpassword_script(dir.path());
    let cp =
        Checkpassword::new(vec![script.display().to_string()]).with_timeout(Duration::from_secs(5));
    let peer = Some(ip("192.0.2.44"));
    let pw = "p a$s'\"w";
    match cp.check("good", pw.as_bytes(), peer) {
        CheckpasswordResult::Ok { home, uid, gid } => {
            assert_eq!(home.as_deref(), Some(Path::new("/home/good")));
            assert!(uid.is_some() && gid.is_some());
        }
        other => panic!("{other:?}"),
    }
    let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap();
    assert!(seen.contains("user=good\n"), "{seen}");
    assert!(seen.contains("remote=192.0.2.44\n"), "{seen}");
    assert!(
        seen.contains("stdin=0\n"),
        "stdin must be /dev/null: {seen}"
    );
    let ts_ok = seen
        .lines()
        .find_map(|l| l.strip_prefix("ts="))
        .is_some_and(|t| t.starts_with('<') && t.ends_with('>'));
    assert!(ts_ok, "{seen}");

    assert_eq!(cp.check("good", b"wrong", peer), CheckpasswordResult::Bad);
    assert_eq!(
        cp.check("other", pw.as_bytes(), peer),
        CheckpasswordResult::Bad
    );
    match cp.check("nochain", b"x", peer) {
        CheckpasswordResult::TempFail(why) => assert!(why.contains("subprogram"), "{why}"),
        other => panic!("exit 0 without the subprogram must not log in: {other:?}"),
    }
    assert!(matches!(
        cp.check("temp", b"x", peer),
        CheckpasswordResult::TempFail(_)
    ));
    assert!(matches!(
        cp.check("weird", b"x", peer),
        CheckpasswordResult::TempFail(_)
    ));
    // NUL would shift the fields: refused without running the program.
    assert_eq!(cp.check("good", b"a\0b", peer), CheckpasswordResult::Bad);
    assert_eq!(cp.check("go\0od", b"x", peer), CheckpasswordResult::Bad);
    let missing = Checkpassword::new(vec![dir.path().join("nope").display().to_string()]);
    assert!(matches!(
        missing.check("good", b"x", peer),
        CheckpasswordResult::TempFail(_)
    ));
    let slow = Checkpassword::new(vec![script.display().to_string()])
        .with_timeout(Duration::from_millis(300));
    match slow.check("hang", b"x", peer) {
        CheckpasswordResult::TempFail(why) => assert!(why.contains("timed out"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn authenticator_with_checkpassword_backend() {
    let dir = common::scratch();
    let script = checkpassword_script(dir.path());
    let users = write_users(dir.path(), "good:{PLAIN}ignored:5:6::/home/from-file::\n");
    let a = Authenticator::checkpassword(
        Checkpassword::new(vec![script.display().to_string()]),
        Some(&users),
        no_throttle(),
    )
    .unwrap();
    let peer = ip("192.0.2.45");
    // The passwd-file password is not what counts: checkpassword decides.
    assert!(matches!(
        a.check("good", b"ignored", peer).result,
        AuthResult::Failed
    ));
    match a.check("good", "p a$s'\"w".as_bytes(), peer).result {
        AuthResult::Ok(u) => {
            assert_eq!(u.home.as_deref(), Some(Path::new("/home/good")));
            assert_eq!(u.plaintext_password(), None);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        a.check("temp", b"x", peer).result,
        AuthResult::TempFail(_)
    ));
    // Config form.
    let cfg = Config::parse(
        &format!(
            "[auth]\ncheckpassword = [\"{}\"]\n[users]\npasswd_file = \"/nonexistent/users\"\n",
            script.display()
        ),
        None,
    )
    .unwrap();
    let a = Authenticator::from_config(&cfg).unwrap();
    assert!(matches!(
        a.check("good", "p a$s'\"w".as_bytes(), peer).result,
        AuthResult::Ok(_)
    ));
    assert!(a.lookup("good").is_none());
}

/// A login as `user@domain` of a served domain, in any case, is the passwd-file's `user`
/// (issue 12): one entry, one Maildir, one throttle counter; the exact key wins over the plain
/// user, and an unserved domain is no one. The checkpassword program is asked about the
/// passwd-file's name.
#[test]
fn login_names_of_served_domains() {
    let dir = common::scratch();
    let users = write_users(
        dir.path(),
        "demo:{PLAIN}pw::::::\nalice@example.test:{PLAIN}pw-a::::::\nbob:{PLAIN}pw-bob::::::\n\
         bob@example.test:{PLAIN}pw-virtual::::::\n",
    );
    let domains = ["localhost".to_string(), "example.test".to_string()];
    let a = Authenticator::passwd_file(&users, no_throttle())
        .unwrap()
        .with_domains(&domains)
        .with_mail_location("/var/mail/%u");
    let peer = ip("192.0.2.60");
    let logged_in = |name: &str, pw: &str| match a.check(name, pw.as_bytes(), peer).result {
        AuthResult::Ok(u) => Some(u.name),
        AuthResult::Failed => None,
        other => panic!("{name}: {other:?}"),
    };
    for name in [
        "demo",
        "DEMO",
        "demo@localhost",
        "Demo@LOCALHOST",
        "demo@localhost.",
    ] {
        assert_eq!(logged_in(name, "pw").as_deref(), Some("demo"), "{name}");
        let u = a.lookup_login(name).unwrap();
        assert_eq!(a.mailbox(&u).unwrap(), Path::new("/var/mail/demo"));
        assert_eq!(a.throttle_key(name), "demo");
    }
    assert_eq!(
        logged_in("demo@example.test", "pw").as_deref(),
        Some("demo")
    );
    assert_eq!(logged_in("demo@other.test", "pw"), None);
    assert_eq!(logged_in("demo@localhost", "wrong"), None);
    // The exact key first: bob@example.test is the virtual user, bob the plain one.
    assert_eq!(
        logged_in("bob@example.test", "pw-virtual").as_deref(),
        Some("bob@example.test")
    );
    assert_eq!(logged_in("bob@example.test", "pw-bob"), None);
    assert_eq!(logged_in("BOB", "pw-bob").as_deref(), Some("bob"));
    assert_eq!(
        logged_in("ALICE@example.test", "pw-a").as_deref(),
        Some("alice@example.test")
    );
    assert_eq!(logged_in("alice", "pw-a"), None);
    // Failures under any spelling count against the one user.
    let before = a.throttle().user_failures("demo");
    for name in ["DEMO@localhost", "demo", "Demo@localhost"] {
        assert_eq!(logged_in(name, "wrong"), None);
    }
    assert_eq!(a.throttle().user_failures("demo"), before + 3);
    // APOP's plaintext check finds the same entry.
    let v = a.check_with_plaintext("Demo@localhost", peer, |s| s == b"pw");
    assert!(
        matches!(v.result, AuthResult::Ok(ref u) if u.name == "demo"),
        "{v:?}"
    );

    // checkpassword: asked about `good`, the passwd-file's name, for `GOOD@localhost`.
    let script = checkpassword_script(dir.path());
    let users = write_users(
        dir.path(),
        "good:{PLAIN}ignored:5:6::/home/from-file::
",
    );
    let cp = Authenticator::checkpassword(
        Checkpassword::new(vec![script.display().to_string()]),
        Some(&users),
        no_throttle(),
    )
    .unwrap()
    .with_domains(&domains);
    match cp
        .check("GOOD@localhost", "p a$s'\"w".as_bytes(), peer)
        .result
    {
        AuthResult::Ok(u) => assert_eq!(u.name, "good"),
        other => panic!("{other:?}"),
    }
    let seen = std::fs::read_to_string(dir.path().join("seen")).unwrap();
    assert!(seen.contains("user=good\n"), "{seen}");
}

#[test]
fn checkpassword_verdicts_match_dovecot() {
    // Dovecot's own checkpassword passdb runs the same program: the two callers of the
    // interface must get the same verdicts (this also proves the test program is a real one).
    let dir = common::scratch();
    let script = checkpassword_script(dir.path());
    let dovecot = Dovecot::start_with(&format!(
        "passdb {{\n  driver = checkpassword\n  args = {}\n}}\n\
         userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home=/tmp\n}}\n",
        script.display()
    ));
    let cp = Checkpassword::new(vec![script.display().to_string()]);
    let pw = "p a$s'\"w";
    // "ok", "bad" or "temp" (internal failure: exit 111, or exit 0 without the subprogram).
    let cases = [
        ("good", pw, "ok"),
        ("good", "p a$s'\"W", "bad"),
        ("good", "", "bad"),
        ("other", pw, "bad"),
        ("nochain", "x", "temp"),
        ("nochain", "y", "bad"),
        ("temp", "x", "temp"),
    ];
    for (user, password, want) in cases {
        // doveadm reports Dovecot's internal failures as plain failures (exit 77), so on its
        // side only "logged in or not" is comparable.
        let theirs = dovecot.login(user, password);
        assert_eq!(
            theirs == Some(0),
            want == "ok",
            "dovecot: {user} / {password:?}: {theirs:?}"
        );
        let ours = match cp.check(user, password.as_bytes(), None) {
            CheckpasswordResult::Ok { .. } => "ok",
            CheckpasswordResult::Bad => "bad",
            CheckpasswordResult::TempFail(_) => "temp",
        };
        assert_eq!(ours, want, "mailkit: {user} / {password:?}");
    }
}

/// Issue 10 item 6: the per-address throttle can no longer be walked around, and guesses
/// against one user from many addresses are slowed down per user (without locking the victim
/// out, and the same for unknown users).
#[test]
fn login_throttle_per_user_across_addresses() {
    let dir = common::scratch();
    let users = write_users(
        dir.path(),
        "victim:{PLAIN}right:1:1::/home/v::\nme:{PLAIN}mine:1:1::/home/m::\n",
    );
    let throttle = ThrottleConfig {
        failure_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
        max_failures: 5,
        lockout: Duration::from_secs(600),
        max_tracked: 100,
        user_failure_delay: Duration::from_millis(100),
        user_max_delay: Duration::from_millis(15_000),
        max_tracked_users: 100,
    };
    let a = Authenticator::passwd_file(&users, throttle)
        .unwrap()
        .with_domains(&["example.test".to_string()]);

    // Guesses at the victim interleaved with logins to the attacker's own account: locked out
    // after max_failures (before: every success reset the count, never locked out).
    let attacker = ip("192.0.2.66");
    let mut locked = false;
    for _ in 0..10 {
        if matches!(
            a.check("victim", b"guess", attacker).result,
            AuthResult::Throttled(_)
        ) {
            locked = true;
            break;
        }
        let _ = a.check("me", b"mine", attacker);
    }
    assert!(locked, "interleaved own logins walked around the throttle");

    // 20 guesses against one user (spelled three ways) from 10 addresses: growing delays.
    let spellings = ["victim", "VICTIM", "victim@Example.test"];
    let mut delays = Vec::new();
    for i in 0..20u8 {
        let from = IpAddr::from([198, 51, 100, i / 2]);
        let v = a.check(spellings[usize::from(i) % 3], b"guess", from);
        assert!(matches!(v.result, AuthResult::Failed), "{v:?}");
        delays.push(v.delay);
    }
    assert!(delays[19] >= Duration::from_secs(10), "{delays:?}");
    assert!(delays.windows(2).all(|w| w[1] >= w[0]), "{delays:?}");
    // The victim from a fresh address still gets in (after the capped delay at most).
    let v = a.check("victim", b"right", ip("203.0.113.9"));
    assert!(matches!(v.result, AuthResult::Ok(_)), "{v:?}");
    assert!(v.delay <= Duration::from_millis(15_000));

    // Unknown and known users: the same reply and the same delay, guess for guess.
    for k in 0..6u8 {
        let known = a.check("me", b"bad", IpAddr::from([203, 0, 113, 100 + k]));
        let unknown = a.check("ghost", b"bad", IpAddr::from([203, 0, 113, 200 + k]));
        assert!(matches!(known.result, AuthResult::Failed));
        assert!(matches!(unknown.result, AuthResult::Failed));
        assert_eq!(known.delay, unknown.delay, "guess {k}");
    }
    assert!(a.check("ghost", b"bad", ip("203.0.113.250")).delay >= Duration::from_millis(3200));
}

/// A uid or gid field that names a system user or group (created here with groupadd and
/// useradd; tests run as root) is resolved through NSS; a name that does not exist is a
/// warning and no id.
#[test]
fn passwd_file_uid_and_gid_names_are_system_users_and_groups() {
    // Names and ids of their own: other test binaries create system users in parallel.
    let name = "mk-auth-nss";
    let (uid, gid) = (48_611, 48_612);
    let _group = common::SystemGroup::add(name, gid);
    let _user = common::SystemUser::add(name, uid);
    let db = UserDb::parse(
        format!(
            "sys:{{PLAIN}}x:{name}:{name}\nnone:{{PLAIN}}x:no-such-user-mailkit:no-such-group-mailkit\n"
        )
        .as_bytes(),
    );
    let sys = db.lookup("sys").unwrap();
    assert_eq!((sys.uid, sys.gid), (Some(uid), Some(gid)));
    let none = db.lookup("none").unwrap();
    assert_eq!((none.uid, none.gid), (None, None));
    let w = db.warnings().join("\n");
    assert!(
        w.contains("2: none: unknown uid \"no-such-user-mailkit\""),
        "{w}"
    );
    assert!(
        w.contains("2: none: unknown gid \"no-such-group-mailkit\""),
        "{w}"
    );
    assert!(!w.contains("1: "), "{w}");
}
