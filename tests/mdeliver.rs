//! mdeliver end to end: the real binary, real directories, a real Dovecot reading what we wrote.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Uid/gid the Dovecot peer reads mail as (nobody:nogroup).
const MAIL_UID: u32 = 65534;

struct Out {
    code: i32,
    stderr: String,
}

/// Runs `cmd` with `input` on stdin, killing it after [`common::CHILD_TIMEOUT`].
fn run(cmd: &mut Command, input: &[u8]) -> Out {
    let out = common::run_with_input(cmd, input);
    Out {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `mdeliver` with a clean environment (no MAILDIR/SENDER/RECIPIENT from the caller).
fn mdeliver() -> Command {
    let mut c = Command::new(common::bin("mdeliver"));
    c.env_remove("MAILDIR")
        .env_remove("SENDER")
        .env_remove("RECIPIENT");
    c
}

/// `mdeliver` running as uid/gid 65534 (root ignores permissions, so failure injection and the
/// Dovecot test need an ordinary user).
fn mdeliver_as_nobody() -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={MAIL_UID}"))
        .arg(format!("--regid={MAIL_UID}"))
        .arg("--clear-groups")
        .arg(common::bin("mdeliver"));
    c.env_remove("MAILDIR")
        .env_remove("SENDER")
        .env_remove("RECIPIENT");
    c
}

fn files(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Nothing delivered and nothing left in tmp/ (the Maildir may or may not exist).
fn assert_nothing_left(maildir: &Path) {
    for d in ["tmp", "new", "cur"] {
        let f = files(&maildir.join(d));
        assert!(f.is_empty(), "{}/{d} not empty: {f:?}", maildir.display());
    }
}

fn chown_tree(p: &Path) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{MAIL_UID}:{MAIL_UID}"))
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

const MSG_CRLF: &[u8] = b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: bytes\r\n\r\nline one\r\n\r\n.dot line\r\nlone\rcr and \xc3\xa9 utf8\r\ntabs\t \r\nlast line without newline";

#[test]
fn stores_exact_bytes_with_headers_and_lf() {
    let t = common::scratch();
    let md = t.path().join("Maildir");
    let out = run(
        mdeliver()
            .args(["-f", "alice@example.test", "-d", "bob@example.test"])
            .arg(&md),
        MSG_CRLF,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let new = files(&md.join("new"));
    assert_eq!(new.len(), 1);
    let mut want = b"Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\n".to_vec();
    want.extend_from_slice(
        &String::from_utf8_lossy(MSG_CRLF)
            .replace("\r\n", "\n")
            .into_bytes(),
    );
    assert_eq!(std::fs::read(&new[0]).unwrap(), want);
    // the name carries the sizes, and the file and Maildir are private
    let name = new[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(name.contains(&format!(",S={}", want.len())), "{name}");
    assert!(!name.contains(':'), "{name}");
    assert_eq!(
        std::fs::metadata(&new[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&md).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(files(&md.join("tmp")).is_empty());
    assert!(files(&md.join("cur")).is_empty());
}

#[test]
fn without_envelope_the_message_is_unchanged() {
    let t = common::scratch();
    let md = t.path().join("M");
    let msg = b"Subject: x\n\nbinary \x00\xff bytes\n";
    let out = run(mdeliver().arg(&md), msg);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let new = files(&md.join("new"));
    assert_eq!(std::fs::read(&new[0]).unwrap(), msg);
}

#[test]
fn environment_fallbacks() {
    let t = common::scratch();
    let md = t.path().join("FromEnv");
    let out = run(
        mdeliver()
            .env("MAILDIR", &md)
            .env("SENDER", "s@example.test")
            .env("RECIPIENT", "r@example.test"),
        b"Subject: env\n\nx\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let new = files(&md.join("new"));
    assert_eq!(
        std::fs::read(&new[0]).unwrap(),
        b"Return-Path: <s@example.test>\nDelivered-To: r@example.test\nSubject: env\n\nx\n"
    );
    // flags win over the environment
    let out = run(
        mdeliver()
            .env("MAILDIR", &md)
            .env("SENDER", "s@example.test")
            .args(["-f", "f@example.test"]),
        b"x\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let latest = files(&md.join("new"))
        .into_iter()
        .find(|p| !new.contains(p))
        .unwrap();
    assert_eq!(
        std::fs::read(latest).unwrap(),
        b"Return-Path: <f@example.test>\nx\n"
    );
    // no MAILDIR (or an empty one): ~/Maildir
    let out = run(mdeliver().env("HOME", t.path()), b"home\n");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(files(&t.path().join("Maildir/new")).len(), 1);
    let out = run(
        mdeliver().env("HOME", t.path()).env("MAILDIR", ""),
        b"home\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(files(&t.path().join("Maildir/new")).len(), 2);
    // SENDER= (empty, as qmail sets it for bounces) is the null sender; RECIPIENT= is none
    let md = t.path().join("Bounce");
    let out = run(
        mdeliver().env("SENDER", "").env("RECIPIENT", "").arg(&md),
        b"x\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read(&files(&md.join("new"))[0]).unwrap(),
        b"Return-Path: <>\nx\n"
    );
}

#[test]
fn creates_missing_maildir_and_parents() {
    let t = common::scratch();
    let md = t.path().join("a/b/c/Maildir");
    let out = run(mdeliver().arg(&md), b"x\n");
    assert_eq!(out.code, 0, "{}", out.stderr);
    for d in [
        "a",
        "a/b",
        "a/b/c/Maildir",
        "a/b/c/Maildir/tmp",
        "a/b/c/Maildir/new",
        "a/b/c/Maildir/cur",
    ] {
        let m = std::fs::metadata(t.path().join(d)).unwrap();
        assert!(m.is_dir(), "{d}");
        assert_eq!(m.permissions().mode() & 0o777, 0o700, "{d}");
    }
    assert_eq!(files(&md.join("new")).len(), 1);
}

#[test]
fn folder_option_uses_maildir_plus_plus() {
    let t = common::scratch();
    let md = t.path().join("M");
    let out = run(mdeliver().args(["--folder", "Lists/Rust"]).arg(&md), b"x\n");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(files(&md.join(".Lists.Rust/new")).len(), 1);
    assert!(md.join(".Lists.Rust/maildirfolder").is_file());
    assert!(files(&md.join("new")).is_empty());
    let out = run(mdeliver().args(["--folder", "../escape"]).arg(&md), b"x\n");
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert!(out.stderr.starts_with("mdeliver: "), "{}", out.stderr);
    assert!(!t.path().join("escape").exists());
}

#[test]
fn eight_processes_times_200_messages_are_1600_files() {
    let t = common::scratch();
    let md = t.path().join("M");
    std::thread::scope(|s| {
        for p in 0..8 {
            let md = md.clone();
            s.spawn(move || {
                for m in 0..200 {
                    let body = format!("Subject: p{p} m{m}\n\nprocess {p} message {m}\n");
                    let out = run(mdeliver().arg(&md), body.as_bytes());
                    assert_eq!(out.code, 0, "p{p} m{m}: {}", out.stderr);
                }
            });
        }
    });
    let new = files(&md.join("new"));
    assert_eq!(new.len(), 1600);
    let names: HashSet<_> = new
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 1600);
    let mut bodies = HashSet::new();
    for p in &new {
        bodies.insert(std::fs::read(p).unwrap());
    }
    for p in 0..8 {
        for m in 0..200 {
            let body = format!("Subject: p{p} m{m}\n\nprocess {p} message {m}\n");
            assert!(bodies.contains(body.as_bytes()), "missing p{p} m{m}");
        }
    }
    assert!(files(&md.join("tmp")).is_empty());
}

#[test]
fn empty_input_is_65() {
    let t = common::scratch();
    let md = t.path().join("M");
    let out = run(mdeliver().arg(&md), b"");
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("empty"), "{}", out.stderr);
    assert_nothing_left(&md);
}

#[test]
fn max_size_is_65_and_exact_size_passes() {
    let t = common::scratch();
    let md = t.path().join("M");
    let out = run(
        mdeliver().args(["--max-size", "100"]).arg(&md),
        &[b'x'; 101],
    );
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("too big"), "{}", out.stderr);
    assert_nothing_left(&md);
    let out = run(
        mdeliver().args(["--max-size", "100"]).arg(&md),
        &[b'x'; 100],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(files(&md.join("new")).len(), 1);
}

#[test]
fn mail_loop_is_65() {
    let t = common::scratch();
    let md = t.path().join("M");
    let msg = b"Delivered-To: Bob@Example.Test\r\nSubject: loop\r\n\r\nx\r\n";
    let out = run(mdeliver().args(["-d", "bob@example.test"]).arg(&md), msg);
    assert_eq!(out.code, 65, "{}", out.stderr);
    assert!(out.stderr.contains("mail loop"), "{}", out.stderr);
    assert_nothing_left(&md);
    // the same message for someone else is delivered
    let out = run(mdeliver().args(["-d", "carol@example.test"]).arg(&md), msg);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn usage_errors_are_64() {
    let t = common::scratch();
    let md = t.path().join("M");
    for args in [
        vec!["--bogus"],
        vec!["--max-size", "0"],
        vec!["--max-size", "ten"],
        vec!["a", "b"],
    ] {
        let out = run(mdeliver().args(&args).arg(&md), b"x\n");
        assert_eq!(out.code, 64, "{args:?}: {}", out.stderr);
    }
    let out = run(
        mdeliver().args(["-f", "a@b\nX-Injected: 1"]).arg(&md),
        b"x\n",
    );
    assert_eq!(out.code, 64, "{}", out.stderr);
    assert_nothing_left(&md);
}

#[test]
fn missing_parent_that_cannot_be_created_is_73() {
    let t = common::scratch();
    std::fs::write(t.path().join("file"), b"not a dir").unwrap();
    let md = t.path().join("file/sub/Maildir");
    let out = run(mdeliver().arg(&md), b"x\n");
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("mdeliver: creating Maildir"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[test]
fn read_only_parent_is_73() {
    let t = common::scratch();
    let ro = t.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let md = ro.join("Maildir");
    let out = run(mdeliver_as_nobody().arg(&md), b"x\n");
    assert_eq!(out.code, 73, "{}", out.stderr);
    assert!(!md.exists());
}

#[test]
fn read_only_tmp_or_new_is_73_and_leaves_nothing() {
    for ro in ["tmp", "new"] {
        let t = common::scratch();
        let md = t.path().join("M");
        let out = run(mdeliver().arg(&md), b"first\n");
        assert_eq!(out.code, 0, "{}", out.stderr);
        for p in files(&md.join("new")) {
            std::fs::remove_file(p).unwrap();
        }
        chown_tree(&md);
        std::fs::set_permissions(md.join(ro), std::fs::Permissions::from_mode(0o500)).unwrap();
        let out = run(mdeliver_as_nobody().arg(&md), b"second\n");
        assert_eq!(out.code, 73, "{ro}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert_nothing_left(&md);
    }
}

/// A tmpfs mounted for the life of the value (ENOSPC injection).
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(dir: PathBuf, size: &str) -> SmallFs {
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mount tmpfs on {} failed (tests run as root)",
            dir.display()
        );
        SmallFs(dir)
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_is_75_and_leaves_nothing() {
    let t = common::scratch();
    let fs = SmallFs::mount(t.path().join("small"), "256k");
    let md = fs.0.join("M");
    let big = vec![b'y'; 1024 * 1024];
    let out = run(mdeliver().arg(&md), &big);
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(out.stderr.contains("No space left"), "{}", out.stderr);
    assert_nothing_left(&md);
    // and once there is room the Maildir works
    let out = run(mdeliver().arg(&md), b"small\n");
    assert_eq!(out.code, 0, "{}", out.stderr);
}

fn write_script(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join(format!("s{}.sieve", rand_suffix()));
    std::fs::write(&p, text).unwrap();
    p
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

const LIST_MSG: &[u8] =
    b"From: Dev List <dev@lists.example.test>\r\nTo: bob@example.test\r\nSubject: [dev] release\r\nList-Id: <dev.lists.example.test>\r\n\r\nship it\r\n";

#[test]
fn sieve_fileinto_keep_discard_and_tests() {
    let t = common::scratch();
    let md = t.path().join("M");
    let script = write_script(
        t.path(),
        "require [\"fileinto\", \"envelope\"];\n\
         if header :contains \"list-id\" \"dev.lists\" { fileinto \"Lists/Dev\"; }\n\
         elsif address :is :domain \"from\" \"spam.test\" { discard; }\n\
         elsif allof (envelope :is \"from\" \"boss@work.test\", size :under 1K) { fileinto \"Boss\"; keep; }\n",
    );
    let run_one = |sender: &str, msg: &[u8]| {
        let out = run(
            mdeliver()
                .args(["-f", sender, "-d", "bob@example.test", "--sieve"])
                .arg(&script)
                .arg(&md),
            msg,
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stderr.is_empty(), "{}", out.stderr);
    };
    run_one("dev@lists.example.test", LIST_MSG);
    assert_eq!(files(&md.join(".Lists.Dev/new")).len(), 1);
    assert!(files(&md.join("new")).is_empty());
    run_one("x@spam.test", b"From: x@spam.test\n\nbuy\n");
    assert!(files(&md.join("new")).is_empty());
    assert_nothing_left_except(&md);
    run_one("boss@work.test", b"From: boss@work.test\n\nhi\n");
    assert_eq!(files(&md.join(".Boss/new")).len(), 1);
    assert_eq!(files(&md.join("new")).len(), 1);
    // envelope :is "from" does not match someone else: implicit keep only
    run_one("other@work.test", b"From: boss@work.test\n\nhi\n");
    assert_eq!(files(&md.join(".Boss/new")).len(), 1);
    assert_eq!(files(&md.join("new")).len(), 2);
    // the filed copy is byte for byte what INBOX would have got
    let filed = &files(&md.join(".Lists.Dev/new"))[0];
    let mut want =
        b"Return-Path: <dev@lists.example.test>\nDelivered-To: bob@example.test\n".to_vec();
    want.extend_from_slice(
        &String::from_utf8_lossy(LIST_MSG)
            .replace("\r\n", "\n")
            .into_bytes(),
    );
    assert_eq!(std::fs::read(filed).unwrap(), want);
}

fn assert_nothing_left_except(md: &Path) {
    assert!(files(&md.join("tmp")).is_empty());
}

#[test]
fn sieve_script_error_reports_line_and_delivers_to_inbox() {
    let t = common::scratch();
    let md = t.path().join("M");
    let script = write_script(
        t.path(),
        "require \"fileinto\";\nif header :contains \"subject\" \"x\" {\n  fileinto \"A\"\n}\n",
    );
    let out = run(mdeliver().arg("--sieve").arg(&script).arg(&md), LIST_MSG);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.starts_with("mdeliver: "), "{}", out.stderr);
    assert!(out.stderr.contains("line 4"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&script.display().to_string()),
        "{}",
        out.stderr
    );
    assert_eq!(files(&md.join("new")).len(), 1);
    assert!(!md.join(".A").exists());
    // an unreadable script too
    let out = run(
        mdeliver()
            .arg("--sieve")
            .arg(t.path().join("nope.sieve"))
            .arg(&md),
        LIST_MSG,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("nope.sieve"), "{}", out.stderr);
    assert_eq!(files(&md.join("new")).len(), 2);
}

/// The python3 imaplib client used against Dovecot: logs in, selects a folder, and for each
/// Message-ID token writes `<token>.eml` (BODY.PEEK[]) and `<token>.meta` (INTERNALDATE epoch,
/// FLAGS) into the output directory.
const IMAP_FETCH_PY: &str = r#"
import imaplib, sys, time, os
host, port, user, password, folder, outdir = sys.argv[1:7]
tokens = sys.argv[7:]
M = imaplib.IMAP4(host, int(port), timeout=30)
M.login(user, password)
typ, _ = M.select('"%s"' % folder, readonly=True)
assert typ == 'OK', typ
for tok in tokens:
    typ, data = M.search(None, 'HEADER', 'Message-ID', tok)
    ids = data[0].split()
    assert len(ids) == 1, (tok, ids)
    typ, data = M.fetch(ids[0], '(FLAGS INTERNALDATE BODY.PEEK[])')
    assert typ == 'OK', typ
    meta, body = data[0]
    with open(os.path.join(outdir, tok + '.eml'), 'wb') as f:
        f.write(body)
    flags = ' '.join(x.decode() for x in imaplib.ParseFlags(meta))
    ts = time.mktime(imaplib.Internaldate2tuple(meta))
    with open(os.path.join(outdir, tok + '.meta'), 'w') as f:
        f.write('%d\n%s\n' % (ts, flags))
M.logout()
"#;

#[test]
fn dovecot_imap_returns_the_same_bytes() {
    let mail_dir = PathBuf::from(common::peer("PEER_MAIL_DIR"));
    let port = common::peer("PEER_IMAP_PORT");
    let host = common::peer("PEER_HOST");
    let carol = mail_dir.join("carol");
    assert!(carol.is_dir(), "{} missing", carol.display());
    let t = common::scratch();
    let stamp = format!(
        "{}.{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
        std::process::id()
    );
    let tok_plain = format!("mdtest-plain-{stamp}");
    let tok_seen = format!("mdtest-seen-{stamp}");
    let msg_plain = format!(
        "From: Alice <alice@example.test>\r\nTo: carol@example.test\r\nSubject: imap bytes\r\nMessage-ID: <{tok_plain}@example.test>\r\n\r\nbody line\r\n\r\n.leading dot\r\ntrailing spaces   \r\nété\r\n"
    );
    let out = run(
        mdeliver_as_nobody()
            .args([
                "-f",
                "alice@example.test",
                "-d",
                "carol@example.test",
                "--folder",
                "mdtest",
            ])
            .arg(&carol),
        msg_plain.as_bytes(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // a second one filed by Sieve with \Seen: Dovecot must show the flag from the :2,S suffix
    let script = write_script(
        t.path(),
        "require [\"fileinto\", \"imap4flags\"];\nfileinto :flags \"\\\\Seen\" \"mdtest\";\n",
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let msg_seen =
        format!("Subject: seen\nMessage-ID: <{tok_seen}@example.test>\n\nalready read\n");
    let out = run(
        mdeliver_as_nobody().arg("--sieve").arg(&script).arg(&carol),
        msg_seen.as_bytes(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let folder = carol.join(".mdtest");
    assert!(folder.join("maildirfolder").is_file());
    let find = |sub: &str, tok: &str| -> PathBuf {
        files(&folder.join(sub))
            .into_iter()
            .find(|p| {
                std::fs::read(p)
                    .unwrap()
                    .windows(tok.len())
                    .any(|w| w == tok.as_bytes())
            })
            .unwrap_or_else(|| panic!("{tok} not in {sub}/"))
    };
    let stored_plain = find("new", &tok_plain);
    let stored_seen = find("cur", &tok_seen);
    // read before Dovecot sees them: it moves new/ files into cur/
    let mut stored = Vec::new();
    for p in [&stored_plain, &stored_seen] {
        let md = std::fs::metadata(p).unwrap();
        assert_eq!(md.uid(), MAIL_UID);
        stored.push((std::fs::read(p).unwrap(), md.mtime()));
    }

    let outdir = t.path().join("imap");
    std::fs::create_dir(&outdir).unwrap();
    std::fs::set_permissions(&outdir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let py = t.path().join("fetch.py");
    std::fs::write(&py, IMAP_FETCH_PY).unwrap();
    let out = run(
        Command::new("/usr/bin/python3")
            .arg(&py)
            .args([&host, &port, "carol", "password", "mdtest"])
            .arg(&outdir)
            .args([&tok_plain, &tok_seen]),
        b"",
    );
    assert_eq!(out.code, 0, "imaplib: {}", out.stderr);

    for (tok, (on_disk, mtime)) in [&tok_plain, &tok_seen].into_iter().zip(stored) {
        assert!(!on_disk.contains(&b'\r'), "stored with CR");
        // IMAP sends CRLF line ends (RFC 3501 section 2.3.1.1 / 4.3)
        let want = String::from_utf8(on_disk)
            .unwrap()
            .replace('\n', "\r\n")
            .into_bytes();
        let got = std::fs::read(outdir.join(format!("{tok}.eml"))).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{tok}"
        );
        assert_eq!(got, want);
        let meta = std::fs::read_to_string(outdir.join(format!("{tok}.meta"))).unwrap();
        let mut lines = meta.lines();
        let internal: i64 = lines.next().unwrap().parse().unwrap();
        assert!(
            (internal - mtime).abs() <= 1,
            "INTERNALDATE {internal} vs mtime {mtime}"
        );
        let flags = lines.next().unwrap_or("");
        if tok == &tok_seen {
            assert!(flags.contains("\\Seen"), "flags {flags:?}");
        } else {
            assert!(!flags.contains("\\Seen"), "flags {flags:?}");
        }
    }
    // the message starts with our headers, exactly
    let got = std::fs::read(outdir.join(format!("{tok_plain}.eml"))).unwrap();
    assert!(got.starts_with(
        b"Return-Path: <alice@example.test>\r\nDelivered-To: carol@example.test\r\nFrom: Alice"
    ));
}

// ---------------------------------------------------------------------------------------------
// Sieve redirect and vacation, submitted through the real msend to the aiosmtpd capture peer.

/// mdeliver's `--sendmail`: msend submitting to the capture peer (or to `port`), no TLS, with
/// no configuration of the caller's.
fn msend_to(port: &str) -> String {
    format!(
        "{} --timeout 10 --no-tls --server 127.0.0.1:{port}",
        common::bin("msend").display()
    )
}

/// mdeliver with `script` (written under `dir`) and `--sendmail` submitting to `port`.
fn mdeliver_sieve(dir: &Path, script: &str, port: &str) -> Command {
    let sfile = dir.join(format!("s{}.sieve", common::rand_u64()));
    std::fs::write(&sfile, script).unwrap();
    let mut c = mdeliver();
    c.env("HOME", dir)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("MAILKIT_CONFIG")
        .env_remove("MDELIVER_SENDMAIL")
        .arg("--sieve")
        .arg(&sfile)
        .arg("--sendmail")
        .arg(msend_to(port));
    c
}

#[test]
fn sieve_redirect_is_submitted_through_msend_and_cancels_the_implicit_keep() {
    let t = common::scratch();
    let md = t.path().join("Maildir");
    let tok = common::token();
    let msg = format!(
        "From: Alice <alice@example.test>\nTo: bob@example.test\nSubject: {tok}\nMessage-ID: <{tok}@example.test>\n\nhello\n"
    );
    let port = common::peer("PEER_CAPTURE_PORT");
    let o = run(
        mdeliver_sieve(t.path(), "redirect \"dave@other.test\";\n", &port)
            .args(["-f", "alice@example.test", "-d", "bob@example.test"])
            .arg(&md),
        msg.as_bytes(),
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
    let (bytes, env) = common::captured(&common::capture_dir(), &tok).expect("redirect captured");
    assert_eq!(
        env["mail_from"], "alice@example.test",
        "RFC 5228 4.2: original sender"
    );
    assert_eq!(env["rcpt_tos"], serde_json::json!(["dave@other.test"]));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("\nDelivered-To: bob@example.test\r\nFrom: Alice")
            && !text.contains("Return-Path"),
        "our Delivered-To stays (loop detection), our Return-Path does not: {text}"
    );
    // no :copy: nothing stored
    assert!(files(&md.join("new")).is_empty());
    // the redirected copy coming back to bob is a loop (65), not a second redirect
    let o = run(
        mdeliver_sieve(t.path(), "redirect \"dave@other.test\";\n", &port)
            .args(["-f", "alice@example.test", "-d", "bob@example.test"])
            .arg(&md),
        &bytes,
    );
    assert_eq!(o.code, 65, "{}", o.stderr);
    assert_eq!(common::captured_now(&common::capture_dir(), &tok).len(), 1);
}

#[test]
fn sieve_redirect_that_fails_temporarily_is_75_and_the_retry_stores_once() {
    let t = common::scratch();
    let md = t.path().join("Maildir");
    let tok = common::token();
    let msg = format!("From: alice@example.test\nTo: bob@example.test\nSubject: {tok}\n\nhello\n");
    let script = "require \"copy\";\nredirect :copy \"dave@other.test\";\n";
    // msend finds the server refusing: 75, nothing stored, nothing left in tmp/
    let refused = common::refused_port().to_string();
    let o = run(
        mdeliver_sieve(t.path(), script, &refused)
            .args(["-f", "alice@example.test", "-d", "bob@example.test"])
            .arg(&md),
        msg.as_bytes(),
    );
    assert_eq!(o.code, 75, "{}", o.stderr);
    assert!(
        o.stderr
            .contains("redirect to dave@other.test failed temporarily"),
        "{}",
        o.stderr
    );
    assert_nothing_left(&md);
    // the MTA retries: sent once, stored once; a retry after that sends nothing more
    let port = common::peer("PEER_CAPTURE_PORT");
    for _ in 0..2 {
        let o = run(
            mdeliver_sieve(t.path(), script, &port)
                .args(["-f", "alice@example.test", "-d", "bob@example.test"])
                .arg(&md),
            msg.as_bytes(),
        );
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
    common::captured(&common::capture_dir(), &tok).expect("redirect captured");
    assert_eq!(common::captured_now(&common::capture_dir(), &tok).len(), 1);
    assert_eq!(
        files(&md.join("new")).len(),
        2,
        "one copy per delivery (:copy)"
    );
}

#[test]
fn sieve_vacation_replies_from_null_sender_once_within_days_and_not_to_lists() {
    let t = common::scratch();
    let md = t.path().join("Maildir");
    let tok = common::token();
    let script = format!(
        "require \"vacation\";\nvacation :days 2 :subject \"Away {tok}\" \"I am away until Monday.\";\n"
    );
    let port = common::peer("PEER_CAPTURE_PORT");
    let deliver = |sender: &str, msg: String| {
        deliver_to_bob(t.path(), &md, &script, &port, sender, msg.as_bytes());
    };
    deliver(
        "alice@example.test",
        "From: Alice <alice@example.test>\nTo: Bob <bob@example.test>\nSubject: Lunch?\nMessage-ID: <m1@example.test>\n\nhi\n".into(),
    );
    let (bytes, env) = common::captured(&common::capture_dir(), &tok).expect("reply captured");
    assert_eq!(env["mail_from"], "<>", "RFC 5230 section 5: null sender");
    assert_eq!(env["rcpt_tos"], serde_json::json!(["alice@example.test"]));
    let text = String::from_utf8_lossy(&bytes);
    for want in [
        "Auto-Submitted: auto-replied\r\n",
        "In-Reply-To: <m1@example.test>\r\n",
        "References: <m1@example.test>\r\n",
        "From: bob@example.test\r\n",
        "\r\n\r\nI am away until Monday.",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    // alice again within :days, and a list message from carol: stored, not answered
    deliver(
        "alice@example.test",
        "From: alice@example.test\nTo: bob@example.test\nSubject: Lunch??\nMessage-ID: <m2@example.test>\n\nhi\n".into(),
    );
    deliver(
        "carol@example.test",
        "From: carol@example.test\nTo: bob@example.test\nList-Id: <dev.example.test>\nPrecedence: list\nSubject: [dev] x\n\nhi\n".into(),
    );
    assert_eq!(common::captured_now(&common::capture_dir(), &tok).len(), 1);
    assert_eq!(files(&md.join("new")).len(), 3);
    // the memory is a file of the Maildir's, hashed (no address in clear)
    let memory = std::fs::read_to_string(md.join("mailkit-sieve-memory")).unwrap();
    assert_eq!(memory.lines().count(), 1, "{memory}");
    assert!(!memory.contains("alice"), "{memory}");
}

/// mdeliver with `script` delivers `msg` from `sender` to bob@example.test into `md`
/// (redirect and vacation submitted to `port`), successfully.
fn deliver_to_bob(dir: &Path, md: &Path, script: &str, port: &str, sender: &str, msg: &[u8]) {
    let o = run(
        mdeliver_sieve(dir, script, port)
            .args(["-f", sender, "-d", "bob@example.test"])
            .arg(md),
        msg,
    );
    assert_eq!(o.code, 0, "{}", o.stderr);
}

/// The reply's Subject, From display name and From address as python3's email module
/// (policy=default, the RFC 2047 decoder people's mail programs have) reads them.
fn python_reads(message: &[u8]) -> (String, String, String) {
    use std::io::Write as _;
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, email, email.policy\n\
             m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)\n\
             a = m['from'].addresses[0]\n\
             print(json.dumps([str(m['subject']), a.display_name, a.addr_spec]))\n",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().unwrap().write_all(message).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    (v[0].clone(), v[1].clone(), v[2].clone())
}

/// vacation's :subject and :from with non-ASCII text, and the default "Auto: " subject of a
/// message whose own subject was RFC 2047 encoded, go out RFC 2047 encoded (an all-ASCII
/// header section, folded, no line over 76 characters) and decode to the original text.
#[test]
fn sieve_vacation_subject_and_from_are_rfc2047_encoded() {
    let t = common::scratch();
    let md = t.path().join("Maildir");
    let port = common::peer("PEER_CAPTURE_PORT");
    let subject = "Abwesend: Jörg ist im Urlaub, zurück am Montag, dem fünfzehnten — ganz sicher ✓";
    let name = "Jörg Müller (IT), Köln";
    let tok1 = common::token();
    let tok2 = common::token();
    let cases = [
        (
            format!(
                "require \"vacation\";\nvacation :subject \"{subject}\" :from \"\\\"{name}\\\" <bob@example.test>\" \"away {tok1}\";\n"
            ),
            "alice@example.test",
            "Subject: Lunch?".to_string(),
            &tok1,
            subject.to_string(),
            name,
        ),
        (
            format!("require \"vacation\";\nvacation \"away {tok2}\";\n"),
            "carol@example.test",
            "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= aus =?UTF-8?B?S8O2bG4=?=".to_string(),
            &tok2,
            "Auto: Grüße aus Köln".to_string(),
            "",
        ),
    ];
    for (script, sender, subject_line, tok, want_subject, want_name) in cases {
        let msg = format!(
            "From: {sender}\nTo: bob@example.test\n{subject_line}\nMessage-ID: <{tok}@example.test>\n\nhi\n"
        );
        deliver_to_bob(t.path(), &md, &script, &port, sender, msg.as_bytes());
        let (bytes, _) = common::captured(&common::capture_dir(), tok).expect("reply captured");
        let text = String::from_utf8_lossy(&bytes);
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        assert!(head.is_ascii(), "raw non-ASCII in the header: {head}");
        for line in head.split("\r\n") {
            assert!(line.len() <= 76, "{line:?} in {head}");
        }
        let (got_subject, got_name, got_addr) = python_reads(&bytes);
        assert_eq!(got_subject, want_subject, "{head}");
        assert_eq!(got_name, want_name, "{head}");
        assert_eq!(got_addr, "bob@example.test", "{head}");
    }
}
