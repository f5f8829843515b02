//! mimapd sharing one Maildir with other processes (issue 13, Storage): two `mimapd serve`
//! processes while `mdeliver` delivers, mpopd on the same Maildir, a lost or damaged
//! `dovecot-uidlist`; and the limits against the IMAP denial-of-service classes (issue 13,
//! Behaviour on bad input), all through the real binaries on loopback.

mod common;

use common::raw::{Imap, Pop};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use mailkit::maildir::{Maildir, Sub};

/// One scratch site: a passwd-file, alice's Maildir and a config with `[mimapd]` and `[mpopd]`
/// (listeners on port 0), served by as many daemons as a test starts.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    daemons: Vec<common::KillOnDrop>,
    logs: Vec<PathBuf>,
}

impl Site {
    fn new() -> Site {
        let dir = common::scratch();
        let d = dir.path();
        std::fs::write(d.join("passwd"), "alice:{PLAIN}password::::::\n").unwrap();
        Maildir::create(d.join("mail").join("alice")).unwrap();
        let text = format!(
            r#"hostname = "localhost"
[tls]
cert = "{cert}"
key = "{key}"
[users]
passwd_file = "{d}/passwd"
mail_location = "{d}/mail/%u"
[auth]
failure_delay_ms = 50
max_delay_ms = 100
[mimapd]
listen = [ {{ address = "127.0.0.1:0" }}, {{ address = "127.0.0.1:0", role = "implicit-tls" }} ]
max_command_size = 8192
[mpopd]
listen = [ {{ address = "127.0.0.1:0" }}, {{ address = "127.0.0.1:0", role = "implicit-tls" }} ]
"#,
            cert = common::peer("PEER_CERT_FILE"),
            key = common::peer("PEER_KEY_FILE"),
            d = d.display(),
        );
        let config = d.join("mailkit.toml");
        std::fs::write(&config, common::with_run_as(&text)).unwrap();
        common::give_to_nobody(d);
        Site {
            dir,
            config,
            daemons: Vec::new(),
            logs: Vec::new(),
        }
    }

    /// Starts `program serve` (mimapd or mpopd) on this site; its plain port.
    fn serve(&mut self, program: &str) -> u16 {
        let log = self
            .dir
            .path()
            .join(format!("{program}{}.log", self.daemons.len()));
        let roles: &[&str] = if program == "mpopd" {
            &["pop3", "pop3s"]
        } else {
            &["imap", "imaps"]
        };
        let (child, l) = common::start_daemon(
            Command::new(common::bin(program))
                .arg("-c")
                .arg(&self.config)
                .arg("serve"),
            &log,
            roles,
        );
        self.daemons.push(child);
        self.logs.push(log);
        l.port(roles[0])
    }

    fn logs(&self) -> String {
        self.logs
            .iter()
            .map(|l| std::fs::read_to_string(l).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("mail").join("alice")
    }

    /// Puts `msg` into alice's `new/` through the maildir module and hands it to mimapd's user.
    fn put(&self, msg: &[u8]) {
        Maildir::open(self.maildir()).unwrap().deliver(msg).unwrap();
        common::give_to_nobody(&self.maildir());
    }
}

/// Delivers `msg` to Maildir `md` with the real `mdeliver`, as the daemons' user (nobody).
fn mdeliver(md: &Path, msg: &[u8]) {
    let out = common::run_with_input(
        Command::new("/usr/bin/timeout")
            .arg("20")
            .arg("setpriv")
            .arg(format!("--reuid={}", common::NOBODY))
            .arg(format!("--regid={}", common::NOBODY))
            .arg("--clear-groups")
            .arg(common::bin("mdeliver"))
            .arg(md)
            .env_remove("MAILDIR")
            .env_remove("SENDER")
            .env_remove("RECIPIENT"),
        msg,
    );
    assert!(out.status.success(), "mdeliver: {out:?}");
}

fn message(i: usize) -> String {
    format!("From: bob@example.test\nSubject: m {i}\nMessage-ID: <m{i}@example.test>\n\nbody {i}\n")
}

/// Connects, logs in as alice and selects the INBOX; the SELECT response.
fn selected(port: u16) -> (Imap, String) {
    let mut c = Imap::connect(port);
    let r = c.run(b"l LOGIN alice password\r\n", "l");
    assert!(r.contains("l OK "), "{r}");
    let r = c.run(b"s SELECT INBOX\r\n", "s");
    assert!(r.contains("s OK [READ-WRITE]"), "{r}");
    (c, r)
}

/// UID → Message-ID of every message, by UID FETCH 1:* (in the order the server sent).
fn message_ids(c: &mut Imap) -> Vec<(u32, String)> {
    let r = c.run(
        b"f UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])\r\n",
        "f",
    );
    assert!(r.contains("f OK "), "{r}");
    fetched_ids(&r)
}

/// The (UID, Message-ID) of each FETCH response in `r`.
fn fetched_ids(r: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for chunk in r.split("\r\n* ").skip_while(|c| c.is_empty()) {
        if !chunk.contains(" FETCH (") {
            continue;
        }
        let uid = chunk
            .split("UID ")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no UID in {chunk}"));
        let id = chunk
            .split("Message-ID: ")
            .nth(1)
            .and_then(|s| s.split("\r\n").next())
            .unwrap_or_else(|| panic!("no Message-ID in {chunk}"));
        out.push((uid, id.to_string()));
    }
    out
}

/// The value of `* OK [UIDVALIDITY n]` in a SELECT response.
fn uidvalidity(r: &str) -> u32 {
    r.split("[UIDVALIDITY ")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no UIDVALIDITY in {r}"))
}

/// `* n RECENT` in a response (0 when absent).
fn recent(r: &str) -> usize {
    r.lines()
        .rev()
        .find_map(|l| l.strip_prefix("* ")?.strip_suffix(" RECENT")?.parse().ok())
        .unwrap_or(0)
}

/// The UIDs FETCH FLAGS reports as \Recent.
fn recent_uids(c: &mut Imap) -> BTreeSet<u32> {
    let r = c.run(b"r UID FETCH 1:* (FLAGS)\r\n", "r");
    assert!(r.contains("r OK "), "{r}");
    r.lines()
        .filter(|l| l.contains("\\Recent"))
        .map(|l| {
            l.split("UID ")
                .nth(1)
                .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("{l}"))
        })
        .collect()
}

/// Two mimapd processes on one Maildir while mdeliver delivers 200 messages: both, polling
/// all the while, report the same UID for every message, in delivery order, none reused.
#[test]
fn two_mimapd_processes_agree_on_every_uid_while_mdeliver_delivers() {
    const N: usize = 200;
    let mut site = Site::new();
    let p1 = site.serve("mimapd");
    let p2 = site.serve("mimapd");
    let (mut a, _) = selected(p1);
    let (mut b, _) = selected(p2);
    let md = site.maildir();
    let delivering = std::thread::spawn(move || {
        for i in 0..N {
            mdeliver(&md, message(i).as_bytes());
        }
    });
    // Every UID → Message-ID either session ever reported; a UID given to two messages fails.
    let mut seen: BTreeMap<u32, String> = BTreeMap::new();
    let check = |ids: Vec<(u32, String)>, seen: &mut BTreeMap<u32, String>| {
        let uids: Vec<u32> = ids.iter().map(|(u, _)| *u).collect();
        assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
        for (uid, id) in ids {
            if let Some(old) = seen.insert(uid, id.clone()) {
                assert_eq!(old, id, "UID {uid} reused");
            }
        }
    };
    while !delivering.is_finished() {
        check(message_ids(&mut a), &mut seen);
        check(message_ids(&mut b), &mut seen);
    }
    delivering.join().unwrap();
    // A UID FETCH names only messages the session was told of (EXISTS comes after it).
    for c in [&mut a, &mut b] {
        let r = c.run(b"n NOOP\r\n", "n");
        assert!(r.contains("n OK "), "{r}");
    }
    let (ia, ib) = (message_ids(&mut a), message_ids(&mut b));
    assert_eq!(ia, ib, "{}", site.logs());
    assert_eq!(ia.len(), N);
    let want: Vec<(u32, String)> = (0..N)
        .map(|i| (i as u32 + 1, format!("<m{i}@example.test>")))
        .collect();
    assert_eq!(ia, want);
    check(ia, &mut seen);
    assert_eq!(seen.len(), N);
    // A third process, in inetd mode, agrees too.
    let out = common::run_with_input(
        Command::new("/usr/bin/timeout")
            .arg("20")
            .arg(common::bin("mimapd"))
            .arg("-c")
            .arg(&site.config)
            .arg("inetd"),
        b"1 LOGIN alice password\r\n2 EXAMINE INBOX\r\nf UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])\r\n3 LOGOUT\r\n",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{out:?}");
    assert_eq!(fetched_ids(&text), want);
}

/// \Recent goes to exactly one session across processes (RFC 3501 §2.3.2): two sessions in
/// two mimapd processes, selecting in turn and then syncing after more deliveries.
#[test]
fn recent_goes_to_exactly_one_session_across_processes() {
    let mut site = Site::new();
    let p1 = site.serve("mimapd");
    let p2 = site.serve("mimapd");
    for i in 0..3 {
        mdeliver(&site.maildir(), message(i).as_bytes());
    }
    let (mut a, ra) = selected(p1);
    let (mut b, rb) = selected(p2);
    assert_eq!((recent(&ra), recent(&rb)), (3, 0), "{ra}{rb}");
    for i in 3..8 {
        mdeliver(&site.maildir(), message(i).as_bytes());
    }
    // Both sync at once (from two threads), each in its own process.
    let ta = std::thread::spawn(move || {
        let r = a.run(b"n NOOP\r\n", "n");
        (a, r)
    });
    let r = b.run(b"n NOOP\r\n", "n");
    let (mut a, ra) = ta.join().unwrap();
    assert!(
        ra.contains("* 8 EXISTS") && r.contains("* 8 EXISTS"),
        "{ra}{r}"
    );
    let (ua, ub) = (recent_uids(&mut a), recent_uids(&mut b));
    assert!(ua.is_disjoint(&ub), "{ua:?} {ub:?}");
    let all: BTreeSet<u32> = ua.union(&ub).copied().collect();
    assert_eq!(all, (1..=8).collect(), "{ua:?} {ub:?}");
    assert!((1..=3).all(|u| ua.contains(&u)), "{ua:?}");
    // A later session gets none.
    let (_c, rc) = selected(p2);
    assert_eq!(recent(&rc), 0, "{rc}");
}

/// mpopd on the same Maildir: its UIDLs survive mimapd's flag renames, its move of `new/` to
/// `cur/` (RETR) does not take \Recent from the next mimapd SELECT, and its DELE reaches an
/// idling mimapd session as EXPUNGE.
#[test]
fn mpopd_and_mimapd_on_one_maildir() {
    let mut site = Site::new();
    let imap = site.serve("mimapd");
    let pop = site.serve("mpopd");
    for i in 0..3 {
        mdeliver(&site.maildir(), message(i).as_bytes());
    }
    let mut p = Pop::logged_in(pop, "alice");
    let uidl = p.lines("UIDL");
    assert_eq!(uidl.len(), 3, "{uidl:?}");
    let body = p.lines("RETR 2");
    assert!(body.contains(&"body 1\r\n".to_string()), "{body:?}");
    assert!(p.cmd("QUIT").starts_with("+OK"));
    let md = Maildir::open(site.maildir()).unwrap();
    assert!(
        md.list(Sub::New).unwrap().is_empty(),
        "mpopd moved new/ to cur/"
    );
    let (mut c, r) = selected(imap);
    assert!(r.contains("* 3 EXISTS"), "{r}");
    assert_eq!(
        recent(&r),
        3,
        "mpopd's move cost the messages their \\Recent: {r}"
    );
    let r = c.run(b"t STORE 1:3 +FLAGS (\\Flagged \\Answered \\Seen)\r\n", "t");
    assert!(r.contains("t OK "), "{r}");
    assert!(md
        .list(Sub::Cur)
        .unwrap()
        .iter()
        .all(|e| e.info.as_deref() == Some("2,FRS")));
    let mut p = Pop::logged_in(pop, "alice");
    assert_eq!(p.lines("UIDL"), uidl, "UIDL changed with the flags");
    assert!(p.cmd("QUIT").starts_with("+OK"));
    // mimapd changes a message's flags during an mpopd session: RETR and DELE still find it.
    mdeliver(&site.maildir(), message(3).as_bytes());
    let mut p = Pop::logged_in(pop, "alice");
    let r = c.run(b"n NOOP\r\n", "n");
    assert!(r.contains("* 4 EXISTS"), "{r}");
    let r = c.run(b"t STORE 4 +FLAGS.SILENT (\\Flagged)\r\n", "t");
    assert_eq!(r, "t OK STORE completed.\r\n");
    assert!(p.lines("RETR 4").contains(&"body 3\r\n".to_string()));
    assert!(p.cmd("DELE 4").starts_with("+OK"));
    assert!(p.cmd("QUIT").starts_with("+OK"));
    let r = c.run(b"n NOOP\r\n", "n");
    assert!(r.starts_with("* 4 EXPUNGE\r\n"), "{r}");
    let mut p = Pop::logged_in(pop, "alice");
    assert_eq!(p.lines("UIDL"), uidl, "{}", site.logs());
    // mpopd deletes message 2 while mimapd's session idles.
    c.send(b"i IDLE\r\n");
    assert_eq!(c.line(), "+ idling\r\n");
    assert!(p.cmd("DELE 2").starts_with("+OK"));
    assert!(p.cmd("QUIT").starts_with("+OK"));
    assert_eq!(c.line(), "* 2 EXPUNGE\r\n", "{}", site.logs());
    assert_eq!(c.run(b"DONE\r\n", "i"), "i OK IDLE terminated.\r\n");
    let ids = message_ids(&mut c);
    assert_eq!(
        ids,
        vec![
            (1, "<m0@example.test>".to_string()),
            (3, "<m2@example.test>".to_string())
        ]
    );
    let mut p = Pop::logged_in(pop, "alice");
    let left = p.lines("UIDL");
    assert_eq!(left.len(), 2);
    // Same unique-ids as before for the two left (`n uid`, renumbered).
    let ids_of = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|l| l.split_once(' ').unwrap().1.to_string())
            .collect()
    };
    let before = ids_of(&uidl);
    assert_eq!(ids_of(&left), vec![before[0].clone(), before[2].clone()]);
}

/// A lost or damaged `dovecot-uidlist` means a new, greater UIDVALIDITY at the next SELECT
/// (never reused UIDs), and a message file that reappears under its old name gets a new UID.
#[test]
fn a_lost_or_corrupt_uid_list_means_a_new_uidvalidity_and_a_returning_file_a_new_uid() {
    let mut site = Site::new();
    let port = site.serve("mimapd");
    for i in 0..3 {
        site.put(message(i).as_bytes());
    }
    let select = || {
        let (mut c, r) = selected(port);
        let ids = message_ids(&mut c);
        (uidvalidity(&r), ids)
    };
    let (v1, ids1) = select();
    assert_eq!(ids1.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    let list = site.maildir().join("dovecot-uidlist");
    std::fs::remove_file(&list).unwrap();
    let (v2, ids2) = select();
    assert!(v2 > v1, "{v1} {v2}");
    assert_eq!(ids2.len(), 3);
    std::fs::write(&list, "this is no uid list\n\0\0\0").unwrap();
    let (v3, _) = select();
    assert!(v3 > v2, "{v2} {v3}");
    // A list whose header is fine but whose records are garbage.
    let text = std::fs::read_to_string(&list).unwrap();
    let header = text.lines().next().unwrap().to_string();
    std::fs::write(&list, format!("{header}\nnot a record\n")).unwrap();
    let (v4, ids4) = select();
    assert!(v4 > v3, "{v3} {v4}\n{}", site.logs());
    assert_eq!(ids4.len(), 3);
    // Message <m1> leaves (moved out of the Maildir), a SELECT sees it gone, it comes back
    // under its old name: a new UID, UIDVALIDITY kept.
    let md = Maildir::open(site.maildir()).unwrap();
    let e = md
        .list(Sub::Cur)
        .unwrap()
        .into_iter()
        .find(|e| {
            std::fs::read_to_string(site.maildir().join("cur").join(&e.name))
                .unwrap()
                .contains("<m1@")
        })
        .unwrap();
    let from = site.maildir().join("cur").join(&e.name);
    let away = site.dir.path().join("away");
    std::fs::rename(&from, &away).unwrap();
    let (v5, ids5) = select();
    assert_eq!(v5, v4);
    assert_eq!(ids5.len(), 2, "{ids5:?}");
    std::fs::rename(&away, &from).unwrap();
    let (v6, ids6) = select();
    assert_eq!(v6, v4);
    let old = ids4.iter().find(|x| x.1.contains("<m1@")).unwrap().0;
    let now = ids6.iter().find(|x| x.1.contains("<m1@")).unwrap().0;
    let max_before = ids4.iter().map(|x| x.0).max().unwrap();
    assert!(now > max_before && now != old, "{ids4:?} {ids6:?}");
}

/// Deep parenthesis nesting in SEARCH is BAD and the session goes on; a LIST pattern of 1000
/// wildcards is answered (bounded by the socket timeout); an over-long line ends the session.
#[test]
fn deep_nesting_and_wildcard_patterns_are_answered_and_overlong_lines_end_the_session() {
    let mut site = Site::new();
    let port = site.serve("mimapd");
    site.put(message(0).as_bytes());
    let (mut c, _) = selected(port);
    let cmd = format!("n SEARCH {}ALL{}\r\n", "(".repeat(1000), ")".repeat(1000));
    let r = c.run(cmd.as_bytes(), "n");
    assert!(r.starts_with("n BAD "), "{r}");
    assert!(c.run(b"o NOOP\r\n", "o").contains("o OK "));
    let cmd = format!("n SEARCH {}ALL{}\r\n", "NOT ".repeat(1000), "");
    let r = c.run(cmd.as_bytes(), "n");
    assert!(r.contains("n BAD ") || r.contains("n OK "), "{r}");
    assert!(c.run(b"o NOOP\r\n", "o").contains("o OK "));
    let cmd = format!("p LIST \"\" \"{}\"\r\n", "*%".repeat(500));
    let r = c.run(cmd.as_bytes(), "p");
    // A run of wildcards is one (`*%*%` is `*`): every folder matches, at once.
    assert!(r.contains("* LIST ") && r.contains("p OK"), "{r}");
    // Over imap::folders' limit of wildcards (MAX_WILDCARDS after collapsing): refused.
    let cmd = format!("p2 LIST \"\" \"{}\"\r\n", "*a".repeat(40));
    let r = c.run(cmd.as_bytes(), "p2");
    assert!(
        r.lines()
            .next_back()
            .unwrap_or_default()
            .starts_with("p2 BAD"),
        "{r}"
    );
    // Within it, matched without backtracking blow-up against every folder name.
    let cmd = format!("p3 LIST \"\" \"{}\"\r\n", "*a%".repeat(10));
    let r = c.run(cmd.as_bytes(), "p3");
    assert!(
        r.lines()
            .next_back()
            .unwrap_or_default()
            .starts_with("p3 OK"),
        "{r}"
    );
    let cmd = format!("q ID ({})\r\n", "\"k\" \"v\" ".repeat(500));
    let r = c.run(cmd.as_bytes(), "q");
    assert!(r.contains("q OK ") || r.contains("q BAD "), "{r}");
    assert!(c.run(b"o NOOP\r\n", "o").contains("o OK "));
    c.send(&vec![b'x'; 100_000]);
    let rest = c.rest();
    assert_eq!(rest, "* BYE Command line too long.\r\n");
    assert!(c.closed());
    assert!(!site.logs().contains("panicked"), "{}", site.logs());
}

/// A message of 10,000 MIME parts and one with a 2 MB header: FETCH BODYSTRUCTURE answers
/// within the parser's limits (one text/plain part), BODY[] is the whole message, and the
/// session goes on.
#[test]
fn mime_bombs_are_answered_within_limits() {
    let mut site = Site::new();
    let port = site.serve("mimapd");
    let mut many = String::from(
        "Subject: parts\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n",
    );
    for i in 0..10_000 {
        many.push_str(&format!("--b\nContent-Type: text/plain\n\npart {i}\n"));
    }
    many.push_str("--b--\n");
    site.put(many.as_bytes());
    let mut big = String::from("Subject: big header\n");
    while big.len() < 2 * 1024 * 1024 {
        big.push_str(
            "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
        );
    }
    big.push_str("\nbody\n");
    site.put(big.as_bytes());
    let (mut c, r) = selected(port);
    assert!(r.contains("* 2 EXISTS"), "{r}");
    for n in [1, 2] {
        let r = c.run(format!("b FETCH {n} (BODYSTRUCTURE)\r\n").as_bytes(), "b");
        // Over the message layer's limits (2000 parts, 1 MiB of header): served as one
        // text/plain part, its structure not read.
        assert!(
            r.to_ascii_lowercase()
                .contains("bodystructure (\"text\" \"plain\""),
            "{r}"
        );
        assert!(r.ends_with("b OK FETCH completed.\r\n"), "{r}");
        assert!(r.len() < 1024 * 1024, "{} bytes", r.len());
        // Its bytes still reach the client whole, as Dovecot serves them.
        let r = c.run(format!("w FETCH {n} (BODY.PEEK[])\r\n").as_bytes(), "w");
        let sent = if n == 1 { many.len() } else { big.len() };
        let got: usize = r
            .split_once("BODY[] {")
            .and_then(|(_, rest)| rest.split_once('}'))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(0);
        // As sent, its LF line ends as CRLF on the wire.
        let lines = if n == 1 {
            many.lines().count()
        } else {
            big.lines().count()
        };
        assert_eq!(got, sent + lines, "{}", &r[..r.len().min(300)]);
        assert!(r.ends_with("w OK FETCH completed.\r\n"));
        let r = c.run(
            format!("e FETCH {n} (ENVELOPE RFC822.SIZE)\r\n").as_bytes(),
            "e",
        );
        let last = r.lines().next_back().unwrap_or_default();
        assert!(last.starts_with("e OK") || last.starts_with("e NO"), "{r}");
        let r = c.run(b"s UID SEARCH BODY part HEADER X-Filler zzz\r\n", "s");
        assert!(r.contains("s OK ") || r.contains("s NO "), "{r}");
    }
    assert!(c.run(b"o NOOP\r\n", "o").contains("o OK "));
    assert!(!site.logs().contains("panicked"), "{}", site.logs());
}

/// RFC 2231 parameter bombs (the parameter-count class of Dovecot's CVEs): a Content-Type of
/// 35,000 distinct `name*0` continuations and a Content-Disposition of 25,000 pieces of one
/// name, both under the header limit so they are parsed. BODYSTRUCTURE answers with at most
/// the parser's 1000 parameters (the first ones, in order) and the session goes on.
#[test]
fn rfc2231_parameter_bombs_are_answered_within_limits() {
    let mut site = Site::new();
    let port = site.serve("mimapd");
    let mut msg =
        String::from("Subject: params\nMIME-Version: 1.0\nContent-Type: application/octet-stream");
    for i in 0..35_000 {
        msg.push_str(&format!(";\n xq{i}*0=v"));
    }
    msg.push_str("\nContent-Disposition: attachment");
    for i in 0..25_000 {
        msg.push_str(&format!(";\n f*{i}=z"));
    }
    msg.push_str("\n\nbody\n");
    assert!(
        msg.len() < 1024 * 1024,
        "{} bytes: over the header limit",
        msg.len()
    );
    site.put(msg.as_bytes());
    let (mut c, r) = selected(port);
    assert!(r.contains("* 1 EXISTS"), "{r}");
    let r = c.run(b"b FETCH 1 (BODYSTRUCTURE)\r\n", "b");
    assert!(
        r.ends_with("b OK FETCH completed.\r\n"),
        "{}",
        &r[r.len().saturating_sub(300)..]
    );
    let lower = r.to_ascii_lowercase();
    assert!(
        lower.contains("bodystructure (\"application\" \"octet-stream\""),
        "{}",
        &r[..300.min(r.len())]
    );
    let listed = r.matches("\"xq").count();
    assert!(
        (500..=1000).contains(&listed),
        "{listed} Content-Type parameters listed"
    );
    assert!(
        r.contains("(\"xq0\" \"v\" \"xq1\" \"v\""),
        "{}",
        &r[..300.min(r.len())]
    );
    // One joined file name of at most 1000 pieces.
    let joined = r
        .split_once("\"f\" \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(v, _)| v.len())
        .unwrap_or(0);
    assert!((1..=1000).contains(&joined), "file name of {joined} octets");
    assert!(c.run(b"o NOOP\r\n", "o").contains("o OK "));
    assert!(!site.logs().contains("panicked"), "{}", site.logs());
}
