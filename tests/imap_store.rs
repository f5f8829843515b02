//! mimapd's store (`mailkit::maildir::uidlist`) and the peers' real Dovecot on one Maildir
//! (issue 13): Dovecot's `dovecot-uidlist`, `dovecot-keywords` and dotlock, in both
//! directions. Dovecot is driven over IMAP with python3 imaplib; our side runs in a child
//! process as the mail user (nobody, as Dovecot's userdb says), like mimapd after its privilege
//! drop, so both write the same files as the same user. Each test has its own peer user.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mailkit::maildir::uidlist::{read_unlocked, View};
use mailkit::maildir::{folders, mutf7_encode, Flags, Maildir};

/// Environment variable carrying the operations a re-executed child performs.
const CHILD_OPS: &str = "MAILKIT_STORE_CHILD_OPS";
/// Environment variable naming the Maildir the child works on.
const CHILD_DIR: &str = "MAILKIT_STORE_CHILD_DIR";

/// The peer user's Maildir.
fn maildir_of(user: &str) -> PathBuf {
    Path::new(&common::peer("PEER_MAIL_DIR")).join(user)
}

/// The Subject of the message file at `path`.
fn subject(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("")
        .to_string()
}

/// IMAP names of a file's flags (system flags and the folder's keywords), sorted as python's
/// `sorted` sorts them, comma separated (the format [`DOVECOT`] prints).
fn imap_flags(v: &View, f: &Flags) -> String {
    let mut names: Vec<String> = f
        .as_str()
        .chars()
        .filter_map(|c| {
            Some(
                match c {
                    'D' => "\\Draft",
                    'F' => "\\Flagged",
                    'R' => "\\Answered",
                    'S' => "\\Seen",
                    'T' => "\\Deleted",
                    c => return v.keywords().name(c).map(str::to_string),
                }
                .to_string(),
            )
        })
        .collect();
    names.sort();
    names.join(",")
}

/// What our store sees: `V<validity> N<next>`, then `<uid> <flags> <subject>` per message.
fn listing(v: &View) -> String {
    let mut out = format!("V{} N{}\n", v.uid_validity(), v.uid_next());
    for m in v.messages() {
        out.push_str(&format!(
            "{} {} {}\n",
            m.uid,
            imap_flags(v, m.flags()),
            subject(&m.entry.path)
        ));
    }
    out
}

/// Not a test of its own: the body of the child processes [`ours`] starts. Operations, one a
/// line: `deliver <subject>`, `flags <uid> <IMAP flag or keyword>,...` (replaces the flags),
/// `expunge <uid>`, `list` (prints [`listing`]), `rounds <n>` (n times: deliver, sync, print
/// `<uid> <subject>` of what it delivered).
#[test]
fn child_process() {
    let (Some(ops), Some(dir)) = (std::env::var_os(CHILD_OPS), std::env::var_os(CHILD_DIR)) else {
        return;
    };
    let md = Maildir::create(&dir).unwrap();
    let mut v = View::open(&md).unwrap();
    let mut out = String::new();
    for op in ops.to_string_lossy().lines() {
        let (cmd, arg) = op.split_once(' ').unwrap_or((op, ""));
        match cmd {
            "deliver" => {
                md.deliver(format!("Subject: {arg}\n\nbody\n").as_bytes())
                    .unwrap();
                v.sync().unwrap();
            }
            "flags" => {
                let (uid, names) = arg.split_once(' ').unwrap_or((arg, ""));
                let mut letters = String::new();
                for n in names.split(',').filter(|n| !n.is_empty()) {
                    letters.push(match n {
                        "\\Draft" => 'D',
                        "\\Flagged" => 'F',
                        "\\Answered" => 'R',
                        "\\Seen" => 'S',
                        "\\Deleted" => 'T',
                        k => v.keyword_letter(k).unwrap().unwrap(),
                    });
                }
                assert!(v
                    .set_flags(uid.parse().unwrap(), &Flags::parse(&letters))
                    .unwrap());
            }
            "expunge" => {
                let m = v.get(arg.parse().unwrap()).unwrap().entry.clone();
                assert!(md.delete(&m).unwrap());
                md.sync().unwrap();
                v.sync().unwrap();
            }
            "list" => {
                v.sync().unwrap();
                out.push_str(&listing(&v));
            }
            "rounds" => {
                for i in 0..arg.parse::<usize>().unwrap() {
                    let s = format!("ours-{}-{i}", std::process::id());
                    let d = md
                        .deliver(format!("Subject: {s}\n\nbody\n").as_bytes())
                        .unwrap();
                    v.sync().unwrap();
                    let m = v.messages().iter().find(|m| m.base() == d.unique).unwrap();
                    out.push_str(&format!("{} {s}\n", m.uid));
                }
            }
            "mkfolder" => {
                folders::create(&md, arg).unwrap();
                folders::set_subscribed(&md, arg, true).unwrap();
            }
            "special" => folders::create_special_use(&md).unwrap(),
            "folders" => {
                let wire = |n: &str| n.split('.').map(mutf7_encode).collect::<Vec<_>>().join(".");
                let mut lines: Vec<String> = folders::list(&md)
                    .unwrap()
                    .iter()
                    .map(|f| format!("F {} {}", wire(&f.name), f.selectable))
                    .chain(
                        folders::subscriptions(&md)
                            .unwrap()
                            .iter()
                            .map(|n| format!("S {}", wire(n))),
                    )
                    .collect();
                lines.sort();
                for l in lines {
                    out.push_str(&l);
                    out.push('\n');
                }
            }
            other => panic!("unknown op {other}"),
        }
    }
    for l in out.lines() {
        println!("OUT {l}");
    }
}

/// Starts this test binary as the mail user (uid/gid 65534) running `ops` on `user`'s Maildir.
fn spawn_ours(user: &str, ops: &str) -> std::process::Child {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_OPS, ops)
        .env(CHILD_DIR, maildir_of(user))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The lines a child printed for us (our children mark theirs with `OUT `; the test
/// harness's own lines are dropped).
fn child_output(child: std::process::Child) -> String {
    child.wait_with_output_bounded()
}

/// Our store's operations `ops` (see [`child_process`]) on `user`'s Maildir; what it printed.
fn ours(user: &str, ops: &str) -> String {
    child_output(spawn_ours(user, ops))
}

/// The python driver for Dovecot: argv is port, user, then operations (`append <subject>
/// [flags]`, `store <uid> <flags>`, `expunge <uid>`, `list`, `rounds <n> <prefix>`); `list`
/// prints what [`listing`] prints, from Dovecot over IMAP (lines marked `OUT `, as ours).
const DOVECOT: &str = r#"
import imaplib, re, sys
port, user = int(sys.argv[1]), sys.argv[2]
c = imaplib.IMAP4('127.0.0.1', port, timeout=20)
c.login(user, 'password')
def check(r):
    assert r[0] == 'OK', r
    return r[1]
check(c.select('INBOX'))
out = []
for op in sys.argv[3:]:
    cmd, _, arg = op.partition(' ')
    if cmd == 'append':
        subj, _, flags = arg.partition(' ')
        check(c.append('INBOX', flags and '(' + flags.replace(',', ' ') + ')' or None, None,
                       ('Subject: %s\r\n\r\nbody\r\n' % subj).encode()))
    elif cmd == 'rounds':
        n, _, prefix = arg.partition(' ')
        for i in range(int(n)):
            s = 'dovecot-%s-%d' % (prefix, i)
            r = check(c.append('INBOX', None, None, ('Subject: %s\r\n\r\nbody\r\n' % s).encode()))
            uid = re.search(rb'APPENDUID \d+ (\d+)', r[0]).group(1).decode()
            out.append('%s %s' % (uid, s))
    elif cmd == 'store':
        uid, _, flags = arg.partition(' ')
        check(c.uid('STORE', uid, 'FLAGS', '(' + flags.replace(',', ' ') + ')'))
    elif cmd == 'expunge':
        check(c.uid('STORE', arg, '+FLAGS', '(\\Deleted)'))
        check(c.expunge())
    elif cmd == 'create':
        check(c.create(arg)); check(c.subscribe(arg))
    elif cmd == 'folders':
        lines = []
        for l in check(c.list()):
            m = re.match(rb'\(([^)]*)\) "\." (.*)', l)
            lines.append('F %s %s' % (m.group(2).decode().strip('"'), 'false' if b'Noselect' in m.group(1) else 'true'))
        for l in check(c.lsub()):
            m = re.match(rb'\(([^)]*)\) "\." (.*)', l)
            lines.append('S %s' % m.group(2).decode().strip('"'))
        out.extend(sorted(lines))
    elif cmd == 'list':
        check(c.noop())
        st = check(c.status('INBOX', '(UIDVALIDITY UIDNEXT)'))[0].decode()
        out.append('V%s N%s' % (re.search(r'UIDVALIDITY (\d+)', st).group(1),
                                re.search(r'UIDNEXT (\d+)', st).group(1)))
        typ, data = c.uid('FETCH', '1:*', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta = item[0].decode()
            uid = re.search(r'UID (\d+)', meta).group(1)
            flags = re.search(r'FLAGS \(([^)]*)\)', meta).group(1).split()
            subj = item[1].decode().strip().split(':', 1)[1].strip()
            out.append('%s %s %s' % (uid, ','.join(sorted(f for f in flags if f != '\\Recent')), subj))
    else:
        raise SystemExit('unknown op ' + cmd)
c.logout()
for l in out:
    print('OUT ' + l)
"#;

/// Starts the Dovecot driver for `user` with `ops`.
fn spawn_dovecot(user: &str, ops: &[&str]) -> std::process::Child {
    Command::new("python3")
        .arg("-c")
        .arg(DOVECOT)
        .arg(common::peer("PEER_IMAP_PORT"))
        .arg(user)
        .args(ops)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Dovecot's answers to `ops` for `user` (see [`DOVECOT`]).
fn dovecot(user: &str, ops: &[&str]) -> String {
    child_output(spawn_dovecot(user, ops))
}

/// Bounded wait for a child's output, failing the test on a nonzero exit.
trait WaitBounded {
    fn wait_with_output_bounded(self) -> String;
}

impl WaitBounded for std::process::Child {
    fn wait_with_output_bounded(mut self) -> String {
        let start = std::time::Instant::now();
        while self.try_wait().unwrap().is_none() {
            if start.elapsed() > common::CHILD_TIMEOUT {
                let _ = self.kill();
                panic!("child timed out");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = self.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix("OUT "))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

/// Dovecot's log lines about `user` that report a broken uid list or keywords file (it would
/// then rebuild them: UIDs lost for clients).
fn dovecot_complaints(user: &str) -> Vec<String> {
    let log = Path::new(&common::peer("PEER_LOG_DIR")).join("dovecot.log");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("({user})")))
        .filter(|l| l.contains("Error") || l.contains("Warning") || l.contains("orrupt"))
        .map(str::to_string)
        .collect()
}

/// A fresh, empty Maildir for `user`, owned by the mail user (a left-over from an earlier run
/// of the same peers is removed).
fn fresh_maildir(user: &str) {
    let path = maildir_of(user);
    let _ = std::fs::remove_dir_all(&path);
    Maildir::create(&path).unwrap();
    common::give_to_nobody(&path);
}

/// The uid list's header fields V and G as on disk.
fn header(user: &str) -> (u32, String) {
    let md = Maildir::open(maildir_of(user)).unwrap();
    let l = read_unlocked(&md).unwrap().expect("a uid list");
    (l.validity, l.guid)
}

#[test]
fn uids_dovecot_assigned_are_the_ones_our_store_reads() {
    let u = "store1";
    fresh_maildir(u);
    let seen = dovecot(
        u,
        &[
            "append one",
            "append two \\Seen",
            "append three",
            "expunge 2",
            "append four \\Flagged,$Junk",
            "store 3 \\Answered,Work",
            "list",
        ],
    );
    assert!(
        seen.contains(" four\n") && !seen.contains(" two\n"),
        "{seen}"
    );
    let text = std::fs::read_to_string(maildir_of(u).join("dovecot-uidlist")).unwrap();
    assert!(text.starts_with("3 V"), "{text}");
    assert_eq!(ours(u, "list"), seen, "our store reads Dovecot's UIDs");
    assert_eq!(dovecot_complaints(u), Vec::<String>::new());
}

#[test]
fn uids_keywords_and_flags_our_store_assigned_are_the_ones_dovecot_serves() {
    let u = "store2";
    fresh_maildir(u);
    let mine = ours(
        u,
        "deliver one\ndeliver two\ndeliver three\ndeliver four\nexpunge 1\n\
         flags 2 \\Seen,$Junk\nflags 3 \\Flagged,\\Answered,Work,$Junk\nflags 4 \\Draft\nlist",
    );
    assert!(
        mine.starts_with("V") && mine.contains("\n2 $Junk,\\Seen two\n"),
        "{mine}"
    );
    let before = header(u);
    assert_eq!(
        dovecot(u, &["list"]),
        mine,
        "Dovecot serves our UIDs and flags"
    );
    // Dovecot kept the list: same UIDVALIDITY and GUID, no complaint, and it adds after ours.
    assert_eq!(header(u), before);
    let more = dovecot(u, &["append five", "list"]);
    assert!(more.ends_with("5  five\n"), "{more}");
    assert_eq!(header(u), before);
    let kw = std::fs::read_to_string(maildir_of(u).join("dovecot-keywords")).unwrap();
    assert_eq!(kw, "0 $Junk\n1 Work\n");
    assert_eq!(dovecot_complaints(u), Vec::<String>::new());
}

#[test]
fn mail_added_by_each_side_in_turn_keeps_uids_and_flags_consistent() {
    let u = "store3";
    fresh_maildir(u);
    dovecot(u, &["append d1", "append d2 \\Seen"]);
    ours(u, "deliver o1\nflags 1 \\Flagged");
    dovecot(u, &["append d3", "store 3 \\Seen,Later"]);
    ours(u, "deliver o2\nexpunge 2\nflags 4 Later");
    dovecot(u, &["append d4"]);
    let theirs = dovecot(u, &["list"]);
    let mine = ours(u, "list");
    assert_eq!(mine, theirs);
    let rows: Vec<&str> = theirs.lines().skip(1).collect();
    assert_eq!(
        rows,
        vec![
            "1 \\Flagged d1",
            "3 Later,\\Seen o1",
            "4 Later d3",
            "5  o2",
            "6  d4"
        ]
    );
    assert_eq!(dovecot_complaints(u), Vec::<String>::new());
}

#[test]
fn our_processes_and_dovecot_appending_at_once_agree_on_every_uid() {
    let u = "store4";
    fresh_maildir(u);
    // Three processes of ours and two Dovecot sessions, all adding mail at once.
    let children: Vec<std::process::Child> = (0..3)
        .map(|_| spawn_ours(u, "rounds 15"))
        .chain(["rounds 15 a", "rounds 15 b"].map(|r| spawn_dovecot(u, &[r])))
        .collect();
    let mut claimed: BTreeMap<u32, String> = BTreeMap::new();
    let mut subjects = 0;
    for c in children {
        for line in child_output(c).lines() {
            if line.starts_with('V') {
                continue;
            }
            let mut f = line.splitn(3, ' ');
            let uid: u32 = f.next().unwrap().parse().unwrap();
            let rest: Vec<&str> = f.collect();
            let subj = rest.last().unwrap().to_string();
            if rest.len() == 1 {
                // A `rounds` line: the UID its writer was told for its own message.
                subjects += 1;
                if let Some(old) = claimed.insert(uid, subj.clone()) {
                    assert!(old == subj, "UID {uid} given to {old} and to {subj}");
                }
            }
        }
    }
    assert_eq!(subjects, 75);
    // Every UID a writer was told is the one both sides serve now.
    let theirs = dovecot(u, &["list"]);
    let mine = ours(u, "list");
    assert_eq!(mine, theirs);
    let served: BTreeMap<u32, String> = theirs
        .lines()
        .skip(1)
        .map(|l| {
            let (uid, rest) = l.split_once(' ').unwrap();
            (uid.parse().unwrap(), rest.trim_start().to_string())
        })
        .collect();
    for (uid, subj) in &claimed {
        assert_eq!(served.get(uid), Some(subj), "UID {uid}");
    }
    assert_eq!(served.len(), 75);
    assert_eq!(dovecot_complaints(u), Vec::<String>::new());
}

#[test]
fn mpopd_uidl_is_unchanged_when_our_store_changes_flags() {
    let u = "store5";
    fresh_maildir(u);
    ours(u, "deliver one\ndeliver two");
    let dir = common::scratch();
    std::fs::write(
        dir.path().join("passwd"),
        format!("{u}:{{PLAIN}}password::::::\n"),
    )
    .unwrap();
    let config = dir.path().join("mailkit.toml");
    std::fs::write(
        &config,
        common::with_run_as(&format!(
            "hostname = \"localhost\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n[users]\npasswd_file = \"{}/passwd\"\nmail_location = \"{}/%u\"\n\
             [auth]\nfailure_delay_ms = 50\nmax_delay_ms = 100\n[mpopd]\nlisten = [ {{ address = \"127.0.0.1:0\" }} ]\n",
            common::peer("PEER_CERT_FILE"),
            common::peer("PEER_KEY_FILE"),
            dir.path().display(),
            common::peer("PEER_MAIL_DIR"),
        )),
    )
    .unwrap();
    common::give_to_nobody(dir.path());
    let uidl = || {
        let out = common::run_with_input(
            Command::new("/usr/bin/timeout")
                .arg("20")
                .arg(common::bin("mpopd"))
                .arg("-c")
                .arg(&config)
                .arg("inetd"),
            format!("USER {u}\r\nPASS password\r\nUIDL\r\nQUIT\r\n").as_bytes(),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let list: Vec<String> = text
            .lines()
            .filter(|l| l.split(' ').count() == 2 && l.starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_string)
            .collect();
        assert_eq!(list.len(), 2, "{text}");
        list
    };
    let before = uidl();
    ours(u, "flags 1 \\Seen,$Junk\nflags 2 \\Answered");
    assert_eq!(uidl(), before, "UIDL unchanged by flag renames");
    // And Dovecot, after mpopd and our store, still serves the same UIDs.
    let theirs = dovecot(u, &["list"]);
    assert!(
        theirs.contains("\n1 $Junk,\\Seen one\n2 \\Answered two\n"),
        "{theirs}"
    );
}

#[test]
fn folders_and_subscriptions_are_the_same_for_dovecot_and_our_store() {
    let u = "store6";
    fresh_maildir(u);
    // Ours: the SPECIAL-USE folders, a nested one and a non-ASCII one; Dovecot: two more.
    ours(u, "special\nmkfolder Lists.Rust\nmkfolder Ärger");
    dovecot(u, &["create Projekte.&AMQ-2026", "create Work"]);
    let mine = ours(u, "folders");
    let theirs = dovecot(u, &["folders"]);
    assert_eq!(mine, theirs);
    for want in [
        "F &AMQ-rger true",
        "F Lists false",
        "S Lists.Rust",
        "S Projekte.&AMQ-2026",
        "S Sent",
    ] {
        assert!(mine.lines().any(|l| l == want), "{want} in {mine}");
    }
    assert!(maildir_of(u).join(".&AMQ-rger").is_dir());
    assert_eq!(dovecot_complaints(u), Vec::<String>::new());
}
