//! The symlink attack of issue 10 against the real binaries, as root: a Maildir owned by an
//! unprivileged user (nobody) in which that user planted symlinks to files and directories
//! outside it, at every component of every path each program opens (`mpopd.lock`, the size
//! cache and its temporary file, `tmp/`, `new/`, `cur/`, a message, `.Folder/`, `.Folder/new`,
//! the Maildir itself). After mpopd serves a login, mdeliver delivers and mrelayd delivers
//! locally, nothing outside the Maildir may have changed (content, owner, mode, mtime, the
//! names in a directory), and the program must have answered with a clear error or a tempfail
//! naming the path rather than writing through the link.
//!
//! The targets outside belong to root (what a root daemon could be tricked into) and to nobody
//! (what a daemon running as the mail user could still be tricked into: another user's mail).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use mailkit::maildir::Maildir;

const NOBODY: u32 = 65534;
/// A message without `,W=` in its name, so mpopd counts it and writes its size cache.
const OLD_MESSAGE: &str = "1000000000.M1P1.old";
const ROOT_SECRET: &[u8] = b"root secret\n";
const NOBODY_SECRET: &[u8] = b"nobody secret\n";

/// What can change about one path: content (files), link target (symlinks), owner, mode, mtime.
type State = (Option<Vec<u8>>, Option<PathBuf>, u32, u32, u32, SystemTime);

/// Every path below `root` (not following symlinks) with its [`State`].
fn snapshot(root: &Path) -> BTreeMap<PathBuf, State> {
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, State>) {
        let m = std::fs::symlink_metadata(p).unwrap();
        let content = m.is_file().then(|| std::fs::read(p).unwrap());
        let link = m
            .file_type()
            .is_symlink()
            .then(|| std::fs::read_link(p).unwrap());
        out.insert(
            p.to_path_buf(),
            (
                content,
                link,
                m.uid(),
                m.gid(),
                m.mode(),
                m.modified().unwrap(),
            ),
        );
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(&e.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, &mut out);
    out
}

fn chown_tree(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid);
        }
    }
}

fn backdate(p: &Path) {
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::open(p).unwrap().set_modified(old).unwrap();
}

/// `dir/outside`: the attack's targets. `root-secret` (root, 0600), `nobody-secret` (nobody,
/// 0600), `dir/` (nobody, 0700, one message-like file) and `maildir/` (a whole Maildir of
/// nobody's with one message in `new/`).
fn outside(dir: &Path) -> PathBuf {
    let out = dir.join("outside");
    std::fs::create_dir(&out).unwrap();
    let write = |name: &str, data: &[u8], uid: u32| {
        let p = out.join(name);
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::lchown(&p, Some(uid), Some(uid)).unwrap();
        backdate(&p);
    };
    write("root-secret", ROOT_SECRET, 0);
    write("nobody-secret", NOBODY_SECRET, NOBODY);
    std::fs::create_dir(out.join("dir")).unwrap();
    std::fs::write(out.join("dir").join(OLD_MESSAGE), NOBODY_SECRET).unwrap();
    let md = Maildir::create(out.join("maildir")).unwrap();
    std::fs::write(out.join("maildir/new").join(OLD_MESSAGE), NOBODY_SECRET).unwrap();
    drop(md);
    for p in [out.join("dir"), out.join("maildir")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
        chown_tree(&p, NOBODY);
    }
    out
}

/// A Maildir of nobody's at `path` with one message in `new/` and one in `cur/` (neither with
/// a `,W=` size), and a folder `.Folder`.
fn user_maildir(path: &Path) {
    let md = Maildir::create(path).unwrap();
    md.folder("Folder").unwrap();
    std::fs::write(path.join("new").join(OLD_MESSAGE), b"Subject: a\n\nnew\n").unwrap();
    std::fs::write(
        path.join("cur").join("1000000001.M1P1.old:2,S"),
        b"Subject: b\n\ncur\n",
    )
    .unwrap();
    chown_tree(path, NOBODY);
    // the parents were created 0700 by root: let nobody reach the Maildir
    if let Some(parent) = path.parent() {
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Where a case's link goes: `at` below the Maildir, or the Maildir itself for `""`.
fn link_at(maildir: &Path, at: &str) -> PathBuf {
    if at.is_empty() {
        maildir.to_path_buf()
    } else {
        maildir.join(at)
    }
}

/// Replaces `at` (file or directory) with a symlink to `target`, planted by nobody.
fn plant(at: &Path, target: &Path) {
    if let Ok(m) = std::fs::symlink_metadata(at) {
        if m.is_dir() {
            std::fs::remove_dir_all(at).unwrap();
        } else {
            std::fs::remove_file(at).unwrap();
        }
    }
    symlink(target, at).unwrap();
    std::os::unix::fs::lchown(at, Some(NOBODY), Some(NOBODY)).unwrap();
}

/// What changed outside since `before` (empty: nothing).
fn changes(before: &BTreeMap<PathBuf, State>, outside: &Path) -> Vec<String> {
    let after = snapshot(outside);
    let mut out = Vec::new();
    for (p, st) in before {
        if after.get(p) != Some(st) {
            out.push(format!("{} changed", p.display()));
        }
    }
    for p in after.keys() {
        if !before.contains_key(p) {
            out.push(format!("{} appeared outside the Maildir", p.display()));
        }
    }
    out
}

fn assert_unchanged(before: &BTreeMap<PathBuf, State>, outside: &Path, what: &str) {
    let c = changes(before, outside);
    assert!(c.is_empty(), "{what}: {c:?}");
}

/// Collects what went wrong in each case of a table, so one run shows every case.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, what: &str, why: impl std::fmt::Display) {
        if !ok {
            self.0.push(format!("{what}: {why}"));
        }
    }

    fn unchanged(&mut self, before: &BTreeMap<PathBuf, State>, outside: &Path, what: &str) {
        for c in changes(before, outside) {
            self.0.push(format!("{what}: {c}"));
        }
    }

    fn assert_none(self) {
        assert!(self.0.is_empty(), "\n{}", self.0.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// mpopd

/// passwd-file with alice, whose Maildir is `dir/mail/alice`, and an mpopd config for `inetd`.
fn mpopd_config(dir: &Path, extra: &str) -> PathBuf {
    std::fs::write(dir.join("passwd"), "alice:{PLAIN}password::::::\n").unwrap();
    let config = dir.join("mailkit.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"localhost\"\n[users]\npasswd_file = \"{d}/passwd\"\n\
             mail_location = \"{d}/mail/%u\"\n[mpopd]\nallow_plaintext_auth = \"always\"\n{extra}\n\
             [run_as]\nuser = \"nobody\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    config
}

/// One POP3 login of alice through `mpopd inetd`: (stdout, stderr).
fn pop3_session(config: &Path) -> (String, String) {
    let out = common::run_with_input(
        Command::new("/usr/bin/timeout")
            .arg("20")
            .arg(common::bin("mpopd"))
            .arg("-c")
            .arg(config)
            .arg("inetd"),
        b"USER alice\r\nPASS password\r\nSTAT\r\nRETR 1\r\nRETR 2\r\nQUIT\r\n",
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The pids the next processes will probably get (the attack in the issue guessed the pid in
/// `mpopd.sizes.<pid>.tmp`).
fn next_pids(n: u32) -> std::ops::RangeInclusive<u32> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    last + 1..=last + n
}

#[test]
fn mpopd_never_writes_through_a_planted_symlink() {
    // (where the link is, relative to the Maildir; what it points at; whether the login fails)
    let cases: &[(&str, &str, bool)] = &[
        ("mpopd.lock", "root-secret", true),
        ("mpopd.lock", "nobody-secret", true),
        ("mpopd.sizes", "nobody-secret", false),
        ("mpopd.sizes.PID.tmp", "nobody-secret", false),
        ("tmp", "dir", true),
        ("new", "dir", true),
        ("cur", "dir", true),
        ("cur/1000000002.M1P1.link:2,", "nobody-secret", false),
        ("", "maildir", true),
    ];
    let mut f = Failures::default();
    for &(at, target, refused) in cases {
        let dir = common::scratch();
        let out = outside(dir.path());
        let maildir = dir.path().join("mail/alice");
        user_maildir(&maildir);
        if at == "mpopd.sizes.PID.tmp" {
            for pid in next_pids(2000) {
                plant(
                    &maildir.join(format!("mpopd.sizes.{pid}.tmp")),
                    &out.join(target),
                );
            }
        } else {
            let link = link_at(&maildir, at);
            plant(&link, &out.join(target));
        }
        let config = mpopd_config(dir.path(), "");
        let before = snapshot(&out);
        let (text, log) = pop3_session(&config);
        let what = format!("mpopd, link at {at:?} -> {target}");
        f.unchanged(&before, &out, &what);
        f.check(!text.contains("secret"), &what, "served a file outside");
        if refused {
            f.check(
                text.contains("-ERR [SYS/TEMP]"),
                &what,
                format!("login not refused: {text}{log}"),
            );
            f.check(
                log.contains("symlink in path") && log.contains(&maildir.display().to_string()),
                &what,
                format!("no log line naming the path: {log}"),
            );
        } else {
            f.check(text.contains("+OK 2 "), &what, format!("{text}{log}"));
        }
    }
    f.assert_none();
}

#[test]
fn mpopd_follows_a_symlinked_maildir_only_when_allowed() {
    let dir = common::scratch();
    let out = outside(dir.path());
    let maildir = dir.path().join("mail/alice");
    std::fs::create_dir_all(dir.path().join("mail")).unwrap();
    plant(&maildir, &out.join("maildir"));
    let config = mpopd_config(dir.path(), "allow_symlinked_maildir = true");
    let (text, log) = pop3_session(&config);
    assert!(text.contains("+OK 1 "), "{text}{log}");
    // ... and even then the files in it are not followed
    plant(&out.join("maildir/mpopd.lock"), &out.join("nobody-secret"));
    let (text, log) = pop3_session(&config);
    assert!(text.contains("-ERR [SYS/TEMP]"), "{text}{log}");
    assert!(log.contains("symlink in path"), "{log}");
    assert_eq!(
        std::fs::read(out.join("nobody-secret")).unwrap(),
        NOBODY_SECRET
    );
}

// ---------------------------------------------------------------------------------------------
// mdeliver

fn mdeliver(maildir: &Path, args: &[&str]) -> Output {
    common::run_with_input(
        Command::new(common::bin("mdeliver"))
            .args(["-f", "bob@example.test", "-d", "alice@example.test"])
            .args(args)
            .arg(maildir),
        b"Subject: attack\n\nbody\n",
    )
}

#[test]
fn mdeliver_never_writes_through_a_planted_symlink() {
    // (link relative to the Maildir, its target, extra arguments)
    let seen_sieve = "require [\"imap4flags\"];\nkeep :flags \"\\\\Seen\";\n";
    let cases: &[(&str, &str, &[&str])] = &[
        ("", "maildir", &[]),
        ("", "missing", &[]),
        ("tmp", "dir", &[]),
        ("new", "dir", &[]),
        ("cur", "dir", &["--sieve", "SEEN"]),
        (".Folder", "maildir", &["--folder", "Folder"]),
        (".Folder/tmp", "dir", &["--folder", "Folder"]),
        (".Folder/new", "dir", &["--folder", "Folder"]),
        (".Folder/cur", "dir", &["--folder", "Folder"]),
    ];
    let mut f = Failures::default();
    for &(at, target, args) in cases {
        let dir = common::scratch();
        let out = outside(dir.path());
        let maildir = dir.path().join("mail/alice");
        user_maildir(&maildir);
        let sieve = dir.path().join("seen.sieve");
        std::fs::write(&sieve, seen_sieve).unwrap();
        let args: Vec<&str> = args
            .iter()
            .map(|a| {
                if *a == "SEEN" {
                    sieve.to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();
        let link = link_at(&maildir, at);
        plant(&link, &out.join(target));
        let before = snapshot(&out);
        let o = mdeliver(&maildir, &args);
        let what = format!("mdeliver, link at {at:?} -> {target}");
        f.unchanged(&before, &out, &what);
        let err = String::from_utf8_lossy(&o.stderr);
        f.check(
            o.status.code() == Some(75),
            &what,
            format!("exit {:?}: {err}", o.status.code()),
        );
        f.check(
            err.contains("symlink in path") && err.contains(&link.display().to_string()),
            &what,
            format!("no message naming the path: {err}"),
        );
        // nothing was left in the Maildir either
        for sub in ["tmp", "new", "cur"] {
            let p = maildir.join(sub);
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                let n = std::fs::read_dir(&p)
                    .unwrap()
                    .filter(|e| {
                        let n = e.as_ref().unwrap().file_name();
                        !n.to_string_lossy().starts_with("100000000")
                    })
                    .count();
                f.check(n == 0, &what, format!("something was left in {sub}/"));
            }
        }
    }
    f.assert_none();
}

#[test]
fn mdeliver_follows_symlinked_directories_only_when_allowed_and_never_files() {
    let dir = common::scratch();
    let out = outside(dir.path());
    let maildir = dir.path().join("alice-maildir");
    plant(&maildir, &out.join("maildir"));
    let o = mdeliver(&maildir, &["--allow-symlinked-maildir"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        std::fs::read_dir(out.join("maildir/new")).unwrap().count(),
        2
    );
    // A folder's marker file planted as a link is never written through (O_EXCL).
    let real = dir.path().join("real");
    user_maildir(&real);
    std::fs::create_dir(real.join(".New")).unwrap();
    plant(&real.join(".New/maildirfolder"), &out.join("root-secret"));
    let before = snapshot(&out);
    let o = mdeliver(&real, &["--folder", "New"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_unchanged(&before, &out, "maildirfolder link");
    // A symlink above the Maildir (the admin's path) is followed.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    symlink(&data, dir.path().join("home")).unwrap();
    let o = mdeliver(&dir.path().join("home/bob/Maildir"), &[]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        std::fs::read_dir(data.join("bob/Maildir/new"))
            .unwrap()
            .count(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// mrelayd

/// Waits (bounded) until `log` contains `n` lines with `needle`.
fn wait_log(log: &Path, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(needle).count() >= n {
            return text;
        }
        assert!(Instant::now() < deadline, "no {n} × {needle:?} in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One SMTP transaction to all of `rcpts` on 127.0.0.1:`port`; panics unless accepted.
fn smtp_send(port: u16, rcpts: &[&str]) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut reply = |w: &mut TcpStream, cmd: &str| -> String {
        if !cmd.is_empty() {
            w.write_all(cmd.as_bytes()).unwrap();
        }
        let mut all = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    };
    assert!(reply(&mut w, "").starts_with("220"));
    assert!(reply(&mut w, "EHLO client.test\r\n").starts_with("250"));
    assert!(reply(&mut w, "MAIL FROM:<bob@remote.test>\r\n").starts_with("250"));
    for r in rcpts {
        let got = reply(&mut w, &format!("RCPT TO:<{r}>\r\n"));
        assert!(got.starts_with("250"), "{r}: {got}");
    }
    assert!(reply(&mut w, "DATA\r\n").starts_with("354"));
    let got = reply(&mut w, "Subject: attack\r\n\r\nbody\r\n.\r\n");
    assert!(got.starts_with("250"), "{got}");
    let _ = reply(&mut w, "QUIT\r\n");
}

#[test]
fn mrelayd_local_delivery_never_writes_through_a_planted_symlink() {
    let dir = common::scratch();
    // (user, link relative to their Maildir, target); erin's Maildir is sound.
    let cases: &[(&str, &str, &str)] = &[
        ("alice", "", "maildir"),
        ("bob", "tmp", "dir"),
        ("carol", "new", "dir"),
        ("dave", "cur", "dir"),
    ];
    let mut passwd = String::new();
    for u in ["alice", "bob", "carol", "dave", "erin"] {
        passwd.push_str(&format!("{u}:{{PLAIN}}password::::::\n"));
        user_maildir(&dir.path().join("mail").join(u));
    }
    std::fs::write(dir.path().join("passwd"), passwd).unwrap();
    // Outside the directory handed to the daemon's user.
    let ext = common::scratch();
    let out = outside(ext.path());
    for &(user, at, target) in cases {
        let md = dir.path().join("mail").join(user);
        let link = link_at(&md, at);
        plant(&link, &out.join(target));
    }
    // RFC 5321 §4.5.1: mrelayd starts only with a postmaster (erin's Maildir is sound).
    std::fs::write(dir.path().join("aliases"), "postmaster: erin\n").unwrap();
    let config = dir.path().join("mailkit.toml");
    std::fs::write(
        &config,
        format!(
            "hostname = \"mx.example.test\"\nstate_dir = \"{d}/state\"\n\
             [users]\npasswd_file = \"{d}/passwd\"\nmail_location = \"{d}/mail/%n\"\n\
             domains = [\"example.test\"]\n\
             [mrelayd]\ntrusted_networks = []\naliases = \"{d}/aliases\"\n\
             listen = [ {{ address = \"127.0.0.1:0\", role = \"smtp\" }} ]\n\
             [run_as]\nuser = \"nobody\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("mrelayd.log");
    chown_tree(dir.path(), NOBODY);
    let before = snapshot(&out);
    let (_daemon, listening) = common::start_mrelayd(&config, &log, &["smtp"]);
    let port = listening.port("smtp");
    smtp_send(
        port,
        &[
            "alice@example.test",
            "bob@example.test",
            "carol@example.test",
            "dave@example.test",
            "erin@example.test",
        ],
    );
    let text = wait_log(&log, "status=deferred", cases.len());
    assert_unchanged(&before, &out, "mrelayd");
    for &(user, at, _) in cases {
        let md = dir.path().join("mail").join(user);
        let link = link_at(&md, at);
        let line = text
            .lines()
            .find(|l| l.contains(&format!("to=<{user}@example.test> status=deferred")))
            .unwrap_or_else(|| panic!("{user} not deferred:\n{text}"));
        assert!(
            line.contains("symlink in path") && line.contains(&link.display().to_string()),
            "{user}: {line}"
        );
        assert!(line.contains("dsn=4."), "{user}: {line}");
    }
    // erin's sound Maildir got the message
    let erin_new = dir.path().join("mail/erin/new");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&erin_new).unwrap().count() < 2 {
        assert!(Instant::now() < deadline, "erin not delivered:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
