//! Real IMAP clients against mimapd and, with the very same test, against the peers' Dovecot
//! (issue 13, "Tests with real clients"): mbsync (isync) syncing a mailbox tree both ways,
//! curl imap:// and imaps:// (LIST, EXAMINE, FETCH by UID, byte-exact), mutt driven headless
//! under tmux (read, change folder, save and delete = move), and Dovecot and mimapd serving one
//! Maildir in turn (same UIDVALIDITY and UIDs, each one's flags seen by the other, both orders).
//!
//! Every client test runs once per [`Server`]: the Dovecot variant proves the test right, the
//! mimapd variant is the finding. Both servers serve the peers' Maildirs (`PEER_MAIL_DIR/<user>`,
//! as uid 65534), filled by mdeliver; each test and server has its own user
//! (tests/peers/templates/dovecot-users.in), so parallel tests never share a Maildir.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mailkit::maildir::Maildir;

/// Every wait for a client or a screen is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The users of this file (every password is `password`), also in the peers' Dovecot users.
const USERS: &[&str] = &[
    "mbsyncdovecot",
    "mbsyncmimapd",
    "curldovecot",
    "curlmimapd",
    "muttdovecot",
    "muttmimapd",
    "sharedovecotfirst",
    "sharemimapdfirst",
];

/// The IMAP server a test talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Server {
    /// The peers' Dovecot (tests/peers/templates/dovecot.conf.in).
    Dovecot,
    /// Our `mimapd serve`, started by the test on the same Maildirs.
    Mimapd,
}

/// A server ready for clients: its STARTTLS/plain port and its implicit-TLS port.
struct Running {
    server: Server,
    plain: u16,
    tls: u16,
    _child: Option<common::KillOnDrop>,
    _dir: Option<tempfile::TempDir>,
    log: PathBuf,
}

impl Server {
    /// Lower-case name, also the suffix of the test's user.
    fn name(self) -> &'static str {
        match self {
            Server::Dovecot => "dovecot",
            Server::Mimapd => "mimapd",
        }
    }

    /// The server, listening. Dovecot is the peers'; mimapd is started here with a passwd-file
    /// of [`USERS`] and `mail_location` at the peers' Maildirs, so both serve the same files.
    fn start(self) -> Running {
        match self {
            Server::Dovecot => Running {
                server: self,
                plain: common::peer("PEER_IMAP_PORT").parse().unwrap(),
                tls: common::peer("PEER_IMAPS_PORT").parse().unwrap(),
                _child: None,
                _dir: None,
                log: Path::new(&common::peer("PEER_LOG_DIR")).join("dovecot.log"),
            },
            Server::Mimapd => {
                let (child, l, dir, log) = common::start_mimapd_on_peer_maildirs(USERS);
                Running {
                    server: self,
                    plain: l.port("imap"),
                    tls: l.port("imaps"),
                    _child: Some(child),
                    _dir: Some(dir),
                    log,
                }
            }
        }
    }
}

impl Running {
    /// The server's log (all of Dovecot's: the peers share one).
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

// ---- Maildirs --------------------------------------------------------------------------------

/// The peer user's Maildir, served by both servers.
fn maildir_of(user: &str) -> PathBuf {
    Path::new(&common::peer("PEER_MAIL_DIR")).join(user)
}

/// A fresh, empty Maildir for `user`, owned by the mail user (a left-over of an earlier run
/// is removed).
fn fresh_maildir(user: &str) -> PathBuf {
    let path = maildir_of(user);
    let _ = std::fs::remove_dir_all(&path);
    Maildir::create(&path).unwrap();
    common::give_to_nobody(&path);
    path
}

/// A test message: unique `subject`, a body line `token`, a long line, trailing blanks,
/// UTF-8 in the body: what a byte-exact FETCH must keep.
fn message(subject: &str, token: &str) -> String {
    format!(
        "From: Bob <bob@example.test>\nTo: Alice <alice@example.test>\nSubject: {subject}\n\
         Date: Fri, 04 Dec 2026 12:00:00 +0000\nMessage-ID: <{token}@example.test>\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\
         Content-Transfer-Encoding: 8bit\n\nHello,\n{token}\nGr\u{fc}\u{df}e aus K\u{f6}ln \u{2014} \
         trailing blanks   \n{long}\n\n-- \nBob\n",
        long = "0123456789".repeat(30),
    )
}

/// Delivers [`message`] with mdeliver, as the mail user, into `folder` (`""` for INBOX).
fn deliver(user: &str, folder: &str, subject: &str, token: &str) {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(common::bin("mdeliver"))
        .env_remove("SENDER")
        .env_remove("RECIPIENT");
    if !folder.is_empty() {
        cmd.arg("--folder").arg(folder);
    }
    cmd.arg(maildir_of(user));
    let out = common::run_with_input(&mut cmd, message(subject, token).as_bytes());
    assert!(out.status.success(), "mdeliver: {out:?}");
}

/// The Subject of the message file at `path`.
fn subject(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("")
        .trim_end()
        .to_string()
}

/// The Maildir flag letters of a message file name (after `:2,`; none in new/).
fn flags_of(name: &str) -> String {
    name.rsplit_once(":2,")
        .map(|(_, f)| f.to_string())
        .unwrap_or_default()
}

/// Every message of a Maildir tree as `(folder, subject, flags)`. `server` selects the naming:
/// Maildir++ (`INBOX` is the root, folder `A.B` is `.A.B/`) or mbsync's near side with
/// `SubFolders Verbatim` (`INBOX/`, folder `A/B` is `A/B/`); folders are named `A/B` in both.
fn snapshot(root: &Path, server: bool) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let rel = dir
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let folder = if server {
            match rel.strip_prefix('.') {
                Some(f) => f.replace('.', "/"),
                None if rel.is_empty() => "INBOX".to_string(),
                None => continue,
            }
        } else {
            rel.clone()
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let path = e.path();
            if !path.is_dir() {
                continue;
            }
            if name == "cur" || name == "new" {
                for m in std::fs::read_dir(&path).unwrap().flatten() {
                    let n = m.file_name().to_string_lossy().to_string();
                    if n.starts_with('.') {
                        continue;
                    }
                    out.insert((folder.clone(), subject(&m.path()), flags_of(&n)));
                }
            } else if name != "tmp" && (!server || (rel.is_empty() && name.starts_with('.'))) {
                dirs.push(path);
            }
        }
    }
    out
}

/// Waits (bounded) until `cond` holds, polling; false at the timeout.
fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < TIMEOUT {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// Runs `cmd` with no input, bounded by [`common::run_with_input`]'s timeout.
fn run(cmd: &mut Command) -> Output {
    common::run_with_input(cmd, b"")
}

/// stdout then stderr, lossy.
fn text(out: &Output) -> String {
    common::status_and_text(out).1
}

// ---- 1. mbsync -------------------------------------------------------------------------------

/// mbsync (isync 1.4) syncing INBOX, `Work` and `Work.Sub` both ways over IMAPS: the server's
/// messages reach the near Maildir; near flags, deletions, new messages and a new folder reach
/// the server; the server's later changes come back; and a last sync changes nothing.
fn mbsync_round_trip(server: Server) {
    let user = format!("mbsync{}", server.name());
    let md = fresh_maildir(&user);
    deliver(&user, "", "inbox one", "tok-in1");
    deliver(&user, "", "inbox two", "tok-in2");
    deliver(&user, "", "inbox three", "tok-in3");
    deliver(&user, "Work", "work one", "tok-w1");
    deliver(&user, "Work.Sub", "sub one", "tok-s1");
    let s = server.start();
    let dir = common::scratch();
    let near = dir.path().join("near");
    std::fs::create_dir_all(&near).unwrap();
    let rc = dir.path().join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount acct\nHost localhost\nPort {port}\nUser {user}\nPass password\n\
             SSLType IMAPS\nCertificateFile {ca}\n\n\
             IMAPStore far\nAccount acct\n\n\
             MaildirStore near\nPath {near}/\nInbox {near}/INBOX\nSubFolders Verbatim\n\n\
             Channel ch\nFar :far:\nNear :near:\nPatterns *\nCreate Both\nExpunge Both\n\
             Sync All\nSyncState *\n",
            port = s.tls,
            ca = common::peer("PEER_CA_FILE"),
            near = near.display(),
        ),
    )
    .unwrap();
    let sync = |what: &str| -> String {
        let out = run(Command::new("timeout")
            .arg("60")
            .arg("mbsync")
            .arg("-c")
            .arg(&rc)
            .arg("ch"));
        let t = text(&out);
        assert!(
            out.status.success(),
            "mbsync ({what}) against {server:?} failed:\n{t}\nserver log:\n{}",
            s.log()
        );
        t
    };
    let set = |items: &[(&str, &str, &str)]| -> BTreeSet<(String, String, String)> {
        items
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    };

    // 1. Pull everything.
    sync("first");
    assert_eq!(
        snapshot(&near, false),
        set(&[
            ("INBOX", "inbox one", ""),
            ("INBOX", "inbox three", ""),
            ("INBOX", "inbox two", ""),
            ("Work", "work one", ""),
            ("Work/Sub", "sub one", ""),
        ]),
        "near side after the first sync"
    );

    // 2. Near changes: flags, a deletion, a new message, a new folder.
    let find = |folder: &Path, subj: &str| -> PathBuf {
        for sub in ["cur", "new"] {
            for e in std::fs::read_dir(folder.join(sub)).unwrap().flatten() {
                if subject(&e.path()) == subj {
                    return e.path();
                }
            }
        }
        panic!("no {subj} in {}", folder.display());
    };
    let one = find(&near.join("INBOX"), "inbox one");
    let base = one
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split(":2,")
        .next()
        .unwrap()
        .to_string();
    std::fs::rename(&one, near.join("INBOX/cur").join(format!("{base}:2,FS"))).unwrap();
    std::fs::remove_file(find(&near.join("INBOX"), "inbox two")).unwrap();
    let put = |folder: &Path, subj: &str, token: &str| {
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(folder.join(sub)).unwrap();
        }
        std::fs::write(
            folder.join("new").join(format!("1700000000.{token}.near")),
            message(subj, token),
        )
        .unwrap();
    };
    put(&near.join("Work"), "near new", "tok-nn");
    put(&near.join("Local"), "local one", "tok-l1");
    sync("push");
    let on_server = set(&[
        ("INBOX", "inbox one", "FS"),
        ("INBOX", "inbox three", ""),
        ("Local", "local one", ""),
        ("Work", "near new", ""),
        ("Work", "work one", ""),
        ("Work/Sub", "sub one", ""),
    ]);
    assert_eq!(
        snapshot(&md, true),
        on_server,
        "server Maildir after the push"
    );
    assert_eq!(
        snapshot(&near, false),
        on_server,
        "near side after the push"
    );

    // 3. Server changes (by another program on the Maildir): a delivery, a flag, a deletion.
    deliver(&user, "", "server new", "tok-sn");
    let three = find(&md, "inbox three");
    let base = three
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split(":2,")
        .next()
        .unwrap()
        .to_string();
    std::fs::rename(&three, md.join("cur").join(format!("{base}:2,S"))).unwrap();
    std::fs::remove_file(find(&md.join(".Work"), "work one")).unwrap();
    sync("pull");
    let both = set(&[
        ("INBOX", "inbox one", "FS"),
        ("INBOX", "inbox three", "S"),
        ("INBOX", "server new", ""),
        ("Local", "local one", ""),
        ("Work", "near new", ""),
        ("Work/Sub", "sub one", ""),
    ]);
    assert_eq!(snapshot(&near, false), both, "near side after the pull");
    assert_eq!(snapshot(&md, true), both, "server Maildir after the pull");

    // 4. Nothing left to do: the same files on both sides, nothing transferred.
    let names = |root: &Path| -> BTreeSet<String> {
        let mut v = BTreeSet::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if matches!(
                    p.parent()
                        .and_then(|p| p.file_name())
                        .and_then(|n| n.to_str()),
                    Some("cur" | "new")
                ) {
                    v.insert(p.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        v
    };
    let (far_before, near_before) = (names(&md), names(&near));
    let out = sync("idle");
    assert_eq!(
        names(&md),
        far_before,
        "a sync with nothing to do changed the server\n{out}"
    );
    assert_eq!(
        names(&near),
        near_before,
        "a sync with nothing to do changed the near side\n{out}"
    );
}

#[test]
fn mbsync_dovecot() {
    mbsync_round_trip(Server::Dovecot);
}

#[test]
fn mbsync_mimapd() {
    mbsync_round_trip(Server::Mimapd);
}

// ---- 2. curl ---------------------------------------------------------------------------------

/// curl with the peers' CA and `user`'s password, bounded; the output (curl must succeed).
fn curl(s: &Running, user: &str, url: &str, extra: &[&str]) -> Vec<u8> {
    let out = run(Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(common::peer("PEER_CA_FILE"))
        .arg("--user")
        .arg(format!("{user}:password"))
        .args(extra)
        .arg(url));
    assert!(
        out.status.success(),
        "curl {extra:?} {url} against {:?}: {}\nserver log:\n{}",
        s.server,
        text(&out),
        s.log()
    );
    out.stdout
}

/// The file of the message with `subj` in the Maildir folder at `dir`.
fn file_with_subject(dir: &Path, subj: &str) -> PathBuf {
    for sub in ["cur", "new"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
            if subject(&e.path()) == subj {
                return e.path();
            }
        }
    }
    panic!("no message {subj} in {}", dir.display());
}

/// A Maildir file as IMAP serves it: LF line ends become CRLF (RFC 3501 section 2.3.1:
/// messages are CRLF text), every other byte as stored.
fn served(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
    for b in raw {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// curl imap:// (plain, on loopback) and imaps:// (`--cacert`): LIST shows the folders,
/// EXAMINE the message count and UIDVALIDITY, and a FETCH by UID (`;UID=n`, which curl sends
/// as `UID FETCH n BODY[]`) returns the message's bytes exactly, in INBOX and in a folder.
fn curl_list_examine_fetch(server: Server) {
    let user = format!("curl{}", server.name());
    let md = fresh_maildir(&user);
    deliver(&user, "", "curl one", "tok-c1");
    deliver(&user, "", "curl two", "tok-c2");
    deliver(&user, "", "curl three", "tok-c3");
    deliver(&user, "Work", "curl work", "tok-cw");
    let s = server.start();
    for (scheme, port) in [("imap", s.plain), ("imaps", s.tls)] {
        let base = format!("{scheme}://localhost:{port}");
        let list = String::from_utf8(curl(&s, &user, &format!("{base}/"), &[])).unwrap();
        let names: BTreeSet<String> = list
            .lines()
            .filter(|l| l.starts_with("* LIST "))
            .filter_map(|l| l.rsplit(' ').next())
            .map(|n| n.trim().trim_matches('"').to_string())
            .collect();
        assert!(
            names.contains("INBOX") && names.contains("Work"),
            "{scheme} LIST: {list}"
        );
        let ex = String::from_utf8(curl(
            &s,
            &user,
            &format!("{base}/"),
            &["-X", "EXAMINE INBOX"],
        ))
        .unwrap();
        assert!(
            ex.contains("* 3 EXISTS") && ex.contains("UIDVALIDITY "),
            "{scheme} EXAMINE: {ex}"
        );
        // Every UID of INBOX: three different messages, each byte-exact.
        let mut seen = BTreeSet::new();
        for uid in 1..=3 {
            let body = curl(&s, &user, &format!("{base}/INBOX;UID={uid}"), &[]);
            let subj = String::from_utf8_lossy(&body)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap_or("")
                .trim_end()
                .to_string();
            assert!(subj.starts_with("curl "), "{scheme} UID {uid}: {body:?}");
            assert_eq!(
                body,
                served(&file_with_subject(&md, &subj)),
                "{scheme} UID {uid} ({subj}) is not byte-exact"
            );
            seen.insert(subj);
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        let body = curl(&s, &user, &format!("{base}/Work;UID=1"), &[]);
        assert_eq!(
            body,
            served(&file_with_subject(&md.join(".Work"), "curl work")),
            "{scheme} Work UID 1"
        );
    }
}

#[test]
fn curl_dovecot() {
    curl_list_examine_fetch(Server::Dovecot);
}

#[test]
fn curl_mimapd() {
    curl_list_examine_fetch(Server::Mimapd);
}

// ---- 3. mutt under tmux ----------------------------------------------------------------------

/// A mutt in a private tmux server (its own socket in the test directory); killed on drop.
struct Tmux {
    sock: PathBuf,
}

impl Tmux {
    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.sock);
        c
    }

    /// Types `keys` (tmux key names: `Enter`, `C-u`, or literal text with `-l`).
    fn keys(&self, keys: &[&str]) {
        let out = run(self.tmux().args(["send-keys", "-t", "mutt"]).args(keys));
        assert!(out.status.success(), "send-keys: {}", text(&out));
    }

    /// Types `s` literally.
    fn type_text(&self, s: &str) {
        let out = run(self.tmux().args(["send-keys", "-t", "mutt", "-l", s]));
        assert!(out.status.success(), "send-keys: {}", text(&out));
    }

    /// The screen now.
    fn screen(&self) -> String {
        let out = run(self.tmux().args(["capture-pane", "-p", "-t", "mutt"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded) until the screen shows `needle`; fails with the screen otherwise.
    fn wait_screen(&self, needle: &str, log: &dyn Fn() -> String) {
        if !wait_for(|| self.screen().contains(needle)) {
            panic!(
                "mutt's screen never showed {needle:?}:\n{}\nserver log:\n{}",
                self.screen(),
                log()
            );
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = run(self.tmux().arg("kill-server"));
    }
}

/// mutt over IMAPS (muttrc in the test directory: `ssl_ca_certificates_file` the peers' CA, no
/// header or body cache) opens INBOX (subjects in the index), reads a message (its body on
/// screen), changes to folder Work, saves a message to folder Archive and expunges it there
/// (a move); the Maildir on disk then has it in `.Archive` and no longer in `.Work`.
fn mutt_reads_and_moves(server: Server) {
    let user = format!("mutt{}", server.name());
    let md = fresh_maildir(&user);
    deliver(&user, "", "mutt alpha", "tok-alpha-body");
    deliver(&user, "", "mutt beta", "tok-beta-body");
    deliver(&user, "Work", "mutt work item", "tok-work-body");
    deliver(&user, "Archive", "mutt archived", "tok-arch-body");
    let s = server.start();
    let dir = common::scratch();
    let d = dir.path();
    let rc = d.join("muttrc");
    std::fs::write(
        &rc,
        format!(
            "set folder=\"imaps://{user}@localhost:{port}/\"\nset spoolfile=\"+INBOX\"\n\
             set imap_user=\"{user}\"\nset imap_pass=\"password\"\n\
             set ssl_ca_certificates_file=\"{ca}\"\nset certificate_file=\"{d}/certificates\"\n\
             set ssl_starttls=no\nunset header_cache\nunset message_cachedir\n\
             set record=\"\"\nset postponed=\"\"\nset move=no\nset delete=yes\n\
             set confirmappend=no\nset confirmcreate=no\nset imap_check_subscribed=no\n\
             set wait_key=no\nset beep=no\nset help=no\nset markers=no\nset pager_stop=yes\n\
             set tmpdir=\"{d}\"\nset mail_check=5\nset timeout=5\nset quit=yes\n\
             set sort=subject\n",
            port = s.tls,
            ca = common::peer("PEER_CA_FILE"),
            d = d.display(),
        ),
    )
    .unwrap();
    let t = Tmux {
        sock: d.join("tmux.sock"),
    };
    let out = run(t
        .tmux()
        .args([
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "mutt",
            "-x",
            "160",
            "-y",
            "40",
        ])
        .arg(format!(
            "env HOME={d} mutt -n -F {rc}; echo MUTT-EXITED $?; sleep 60",
            d = d.display(),
            rc = rc.display()
        )));
    assert!(out.status.success(), "tmux: {}", text(&out));
    let log = || s.log();
    // The index of INBOX.
    t.wait_screen("mutt beta", &log);
    assert!(t.screen().contains("mutt alpha"), "{}", t.screen());
    // Read "mutt beta": search for it, open it, its body shows.
    t.keys(&["/"]);
    t.type_text("beta");
    t.keys(&["Enter"]);
    t.keys(&["Enter"]);
    t.wait_screen("tok-beta-body", &log);
    t.keys(&["i"]);
    // Change to folder Work.
    t.keys(&["c"]);
    t.wait_screen("Open mailbox", &log);
    t.keys(&["C-u"]);
    t.type_text("=Work");
    t.keys(&["Enter"]);
    t.wait_screen("mutt work item", &log);
    // Save it to Archive (mutt marks it deleted), then sync: the move is done.
    t.keys(&["s"]);
    t.wait_screen("Save to mailbox", &log);
    t.keys(&["C-u"]);
    t.type_text("=Archive");
    t.keys(&["Enter"]);
    let work = md.join(".Work");
    let archive = md.join(".Archive");
    let has = |dir: &Path, subj: &str| {
        snapshot(dir, true)
            .iter()
            .any(|(f, s, _)| f == "INBOX" && s == subj)
    };
    assert!(
        wait_for(|| has(&archive, "mutt work item")),
        "not saved to Archive:\n{}\nserver log:\n{}",
        t.screen(),
        s.log()
    );
    t.keys(&["$"]);
    assert!(
        wait_for(|| !has(&work, "mutt work item")),
        "still in Work after the sync:\n{}\nserver log:\n{}",
        t.screen(),
        s.log()
    );
    assert!(has(&archive, "mutt archived"), "Archive lost its message");
    // The moved message kept its bytes.
    let moved = file_with_subject(&archive, "mutt work item");
    let bytes = std::fs::read(&moved).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&bytes).replace("\r\n", "\n"),
        message("mutt work item", "tok-work-body"),
        "the moved message's bytes"
    );
    t.keys(&["q"]);
    t.wait_screen("MUTT-EXITED 0", &log);
}

#[test]
fn mutt_dovecot() {
    mutt_reads_and_moves(Server::Dovecot);
}

#[test]
fn mutt_mimapd() {
    mutt_reads_and_moves(Server::Mimapd);
}

// ---- 4. Dovecot and mimapd on one Maildir ----------------------------------------------------

/// python3 imaplib against `port` as `user`: `state` prints `V<uidvalidity>` (SELECT's) then `<uid>
/// <flags> <subject>` per INBOX message (flags sorted, \Recent left out: it belongs to one
/// session); `store <uid> <flags>` replaces a message's flags (comma separated).
const IMAPLIB: &str = r#"
import imaplib, re, sys
port, user = int(sys.argv[1]), sys.argv[2]
c = imaplib.IMAP4('127.0.0.1', port, timeout=20)
c.login(user, 'password')
def check(r):
    assert r[0] == 'OK', r
    return r[1]
check(c.select('INBOX'))
validity = c.response('UIDVALIDITY')[1][0].decode()
for op in sys.argv[3:]:
    cmd, _, arg = op.partition(' ')
    if cmd == 'store':
        uid, _, flags = arg.partition(' ')
        check(c.uid('STORE', uid, 'FLAGS', '(' + flags.replace(',', ' ') + ')'))
    elif cmd == 'state':
        print('V' + validity)
        typ, data = c.uid('FETCH', '1:*', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
        assert typ == 'OK', data
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta = item[0].decode()
            uid = re.search(r'UID (\d+)', meta).group(1)
            flags = re.search(r'FLAGS \(([^)]*)\)', meta).group(1).split()
            subj = item[1].decode().strip().split(':', 1)[1].strip()
            print('%s %s %s' % (uid, ','.join(sorted(f for f in flags if f != '\\Recent')), subj))
    else:
        raise SystemExit('unknown op ' + cmd)
c.logout()
"#;

/// [`IMAPLIB`] with `ops` against `s` as `user`; what it printed.
fn imaplib(s: &Running, user: &str, ops: &[&str]) -> String {
    let out = run(Command::new("timeout")
        .arg("60")
        .arg("python3")
        .arg("-c")
        .arg(IMAPLIB)
        .arg(s.plain.to_string())
        .arg(user)
        .args(ops));
    assert!(
        out.status.success(),
        "imaplib {ops:?} against {:?}: {}\nserver log:\n{}",
        s.server,
        text(&out),
        s.log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Dovecot and mimapd serve one Maildir (filled by mdeliver) in turn, `first` opening it
/// first (and so assigning the UIDs): the other sees the same UIDVALIDITY, UIDs and flags;
/// flags each sets are seen by the other; a later delivery gets the same UID from both.
fn shared_maildir(first: Server) {
    let second = match first {
        Server::Dovecot => Server::Mimapd,
        Server::Mimapd => Server::Dovecot,
    };
    let user = format!("share{}first", first.name());
    fresh_maildir(&user);
    for i in 1..=3 {
        deliver(&user, "", &format!("shared {i}"), &format!("tok-sh{i}"));
    }
    let (a, b) = (first.start(), second.start());
    let seen = imaplib(&a, &user, &["store 2 \\Flagged,$Work", "state"]);
    assert!(
        seen.starts_with('V') && seen.contains("\n2 $Work,\\Flagged shared 2\n"),
        "{first:?}: {seen}"
    );
    assert_eq!(
        imaplib(&b, &user, &["state"]),
        seen,
        "{second:?} after {first:?}: same UIDVALIDITY, UIDs and flags"
    );
    let changed = imaplib(&b, &user, &["store 3 \\Seen,\\Answered", "state"]);
    assert!(
        changed.contains("\n3 \\Answered,\\Seen shared 3\n"),
        "{changed}"
    );
    assert_eq!(
        imaplib(&a, &user, &["state"]),
        changed,
        "{first:?} sees {second:?}'s flags"
    );
    deliver(&user, "", "shared 4", "tok-sh4");
    let later = imaplib(&b, &user, &["state"]);
    assert!(later.ends_with("\n4  shared 4\n"), "{second:?}: {later}");
    assert_eq!(
        imaplib(&a, &user, &["state"]),
        later,
        "{first:?} after a delivery"
    );
}

#[test]
fn shared_maildir_dovecot_first_then_mimapd() {
    shared_maildir(Server::Dovecot);
}

#[test]
fn shared_maildir_mimapd_first_then_dovecot() {
    shared_maildir(Server::Mimapd);
}
