//! Unit tests of the uid list, the keywords file and [`View`], and a multi-process test that
//! re-executes this test binary.

use super::format::{valid_keyword, Keywords, UidList};
use super::*;
use std::collections::BTreeMap;
use std::path::Path;

fn maildir() -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::create(dir.path().join("Maildir")).unwrap();
    (dir, md)
}

fn uids(v: &View) -> Vec<(u32, String)> {
    v.messages()
        .iter()
        .map(|m| (m.uid, m.base().to_string()))
        .collect()
}

fn list_file(md: &Maildir) -> std::path::PathBuf {
    md.path().join(UIDLIST_FILE)
}

#[test]
fn format_round_trips_and_every_truncation_is_corrupt() {
    let list = UidList {
        validity: 1_700_000_000,
        next: 13,
        records: vec![
            (3, "1.M1P2.host,S=5,W=6".into()),
            (12, "2.M3P4.host".into()),
        ],
    };
    let bytes = list.serialise();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        "mailkit-uidlist 1 V1700000000 N13\n3 1.M1P2.host,S=5,W=6\n12 2.M3P4.host\nend 2\n"
    );
    assert_eq!(UidList::parse(&bytes), Ok(list.clone()));
    for n in 0..bytes.len() {
        assert!(UidList::parse(&bytes[..n]).is_err(), "prefix {n} parsed");
    }
    // The header's UIDVALIDITY survives in the error once the header line is whole.
    let cut = UidList::parse(&bytes[..40]).unwrap_err();
    assert_eq!(cut.validity, Some(1_700_000_000));
    for bad in [
        "mailkit-uidlist 1 V0 N1\nend 0\n",
        "mailkit-uidlist 2 V1 N1\nend 0\n",
        "mailkit-uidlist 1 V1 N3\n2 a\n1 b\nend 2\n",
        "mailkit-uidlist 1 V1 N3\n1 a\n2 a\nend 2\n",
        "mailkit-uidlist 1 V1 N2\n2 a\nend 1\n",
        "mailkit-uidlist 1 V1 N3\n1 a:2,S\nend 1\n",
        "mailkit-uidlist 1 V1 N3\n01 a\nend 1\n",
        "mailkit-uidlist 1 V1 N3\n1 a\nend 2\n",
        "mailkit-uidlist 1 V1 N3\n1 a\nend 1\nextra\n",
    ] {
        assert!(UidList::parse(bad.as_bytes()).is_err(), "{bad:?}");
    }
    let mut k = Keywords::new();
    assert_eq!(k.assign("$Junk", &[]), Some('a'));
    assert_eq!(k.assign("work", &['b']), Some('c'));
    assert_eq!(k.assign("$Junk", &[]), Some('a'));
    assert_eq!(k.assign("\\Seen", &[]), None);
    assert_eq!(k.assign("a b", &[]), None);
    let bytes = k.serialise();
    assert_eq!(bytes, b"mailkit-keywords 1\na $Junk\nc work\nend 2\n");
    assert_eq!(Keywords::parse(&bytes), Ok(k));
    for n in 0..bytes.len() {
        assert!(Keywords::parse(&bytes[..n]).is_err(), "prefix {n} parsed");
    }
    assert!(Keywords::parse(b"mailkit-keywords 1\na x\na y\nend 2\n").is_err());
    assert!(Keywords::parse(b"mailkit-keywords 1\na x\nb x\nend 2\n").is_err());
    assert!(valid_keyword("$Forwarded") && !valid_keyword("x(") && !valid_keyword(""));
}

#[test]
fn uids_follow_arrival_and_survive_a_restart() {
    let (_d, md) = maildir();
    let a = md.deliver(b"Subject: a\n\na\n").unwrap();
    let b = md.deliver(b"Subject: b\n\nb\n").unwrap();
    let mut v = View::open(&md).unwrap();
    assert_eq!(uids(&v), vec![(1, a.unique.clone()), (2, b.unique.clone())]);
    assert_eq!(v.uid_next(), 3);
    let validity = v.uid_validity();
    assert!(validity > 0);
    // new/ was moved to cur/ (as mpopd does), keeping the base name.
    assert!(md.list(Sub::New).unwrap().is_empty());
    assert_eq!(md.list(Sub::Cur).unwrap().len(), 2);
    let c = md.deliver(b"Subject: c\n\nc\n").unwrap();
    v.sync().unwrap();
    assert_eq!(v.get(3).map(Message::base), Some(c.unique.as_str()));
    assert_eq!(v.get(3).map(Message::size), Some(c.size));
    drop(v);
    let v = View::open(&md).unwrap();
    assert_eq!(v.uid_validity(), validity);
    assert_eq!(v.uid_next(), 4);
    assert_eq!(uids(&v).len(), 3);
    assert_eq!(v.get(1).map(Message::base), Some(a.unique.as_str()));
}

#[test]
fn flag_renames_keep_the_uid_and_expunged_uids_are_never_reused() {
    let (_d, md) = maildir();
    let a = md.deliver(b"a\n").unwrap();
    let b = md.deliver(b"b\n").unwrap();
    let mut v = View::open(&md).unwrap();
    assert!(v.set_flags(2, &Flags::parse("SF")).unwrap());
    assert_eq!(v.get(2).map(|m| m.flags().as_str()), Some("FS"));
    assert!(md
        .path()
        .join("cur")
        .join(format!("{}:2,FS", b.unique))
        .exists());
    // Another program (mutt) renames a file for its flags: the UID stays.
    let cur = md.path().join("cur");
    std::fs::rename(
        cur.join(format!("{}:2,", a.unique)),
        cur.join(format!("{}:2,RS", a.unique)),
    )
    .unwrap();
    // ... and set_flags on the stale entry still finds it by its base name.
    assert!(v.set_flags(1, &Flags::parse("T")).unwrap());
    assert!(cur.join(format!("{}:2,T", a.unique)).exists());
    let mut v = View::open(&md).unwrap();
    assert_eq!(uids(&v), vec![(1, a.unique.clone()), (2, b.unique.clone())]);
    assert_eq!(v.get(1).map(|m| m.flags().as_str()), Some("T"));
    // Expunge UID 1, then put the very same file back: it is a new message with a new UID.
    let gone = v.get(1).unwrap().entry.clone();
    let bytes = std::fs::read(&gone.path).unwrap();
    assert!(md.delete(&gone).unwrap());
    v.sync().unwrap();
    assert_eq!(uids(&v), vec![(2, b.unique.clone())]);
    assert_eq!(v.uid_next(), 3);
    assert!(!v.set_flags(1, &Flags::empty()).unwrap());
    std::fs::write(&gone.path, bytes).unwrap();
    v.sync().unwrap();
    assert_eq!(uids(&v), vec![(2, b.unique.clone()), (3, a.unique.clone())]);
}

#[test]
fn a_corrupt_or_lost_list_means_a_greater_uidvalidity_and_fresh_uids() {
    let (_d, md) = maildir();
    for i in 0..3 {
        md.deliver(format!("m{i}\n").as_bytes()).unwrap();
    }
    let v = View::open(&md).unwrap();
    let old = v.uid_validity();
    let bases: Vec<String> = uids(&v).into_iter().map(|(_, b)| b).collect();
    // Expunge the first message so the old UIDs (2, 3) differ from fresh ones (1, 2).
    md.delete(&v.get(1).unwrap().entry).unwrap();
    let path = list_file(&md);
    let full = std::fs::read(&path).unwrap();
    // Truncated: the trailer is missing.
    std::fs::write(&path, &full[..full.len() - 6]).unwrap();
    let v = View::open(&md).unwrap();
    assert!(v.uid_validity() > old, "{} > {old}", v.uid_validity());
    assert_eq!(uids(&v), vec![(1, bases[1].clone()), (2, bases[2].clone())]);
    // Garbage without a readable header: still greater (the lock file recorded the old value).
    let old = v.uid_validity();
    std::fs::write(&path, b"\x00garbage").unwrap();
    let v = View::open(&md).unwrap();
    assert!(v.uid_validity() > old);
    assert_eq!(v.uid_next(), 3);
    // A lost list too: the lock file's record keeps the new value greater.
    let old = v.uid_validity();
    std::fs::remove_file(&path).unwrap();
    let v = View::open(&md).unwrap();
    assert!(v.uid_validity() > old);
    // The rewritten list is whole again and keeps the new value.
    let again = View::open(&md).unwrap();
    assert_eq!(again.uid_validity(), v.uid_validity());
    assert_eq!(uids(&again), uids(&v));
}

#[test]
fn uids_running_out_renumber_under_a_new_uidvalidity() {
    let (_d, md) = maildir();
    let a = md.deliver(b"a\n").unwrap();
    let list = UidList {
        validity: 5,
        next: MAX_UID,
        records: vec![(MAX_UID - 1, a.unique.clone())],
    };
    std::fs::write(list_file(&md), list.serialise()).unwrap();
    let b = md.deliver(b"b\n").unwrap();
    let v = View::open(&md).unwrap();
    assert_eq!(v.uid_validity(), 5);
    assert_eq!(
        uids(&v),
        vec![(MAX_UID - 1, a.unique.clone()), (MAX_UID, b.unique.clone())]
    );
    assert_eq!(v.uid_next(), u32::MAX);
    let c = md.deliver(b"c\n").unwrap();
    let v = View::open(&md).unwrap();
    assert!(v.uid_validity() > 5);
    assert_eq!(uids(&v), vec![(1, a.unique), (2, b.unique), (3, c.unique)]);
}

#[test]
fn keywords_get_letters_durably_and_letters_on_files_keep_their_meaning() {
    let (_d, md) = maildir();
    md.deliver(b"a\n").unwrap();
    let mut v = View::open(&md).unwrap();
    assert_eq!(v.keyword_letter("$Junk").unwrap(), Some('a'));
    assert_eq!(v.keyword_letter("work").unwrap(), Some('b'));
    assert_eq!(v.keyword_letter("bad keyword").unwrap(), None);
    assert!(v.set_flags(1, &Flags::parse("Sb")).unwrap());
    let mut other = View::open(&md).unwrap();
    assert_eq!(other.keywords().name('b'), Some("work"));
    assert_eq!(other.keyword_letter("work").unwrap(), Some('b'));
    // The keywords file is lost: 'b' is on a file, so a new keyword never gets it.
    std::fs::remove_file(md.path().join(KEYWORDS_FILE)).unwrap();
    let mut v = View::open(&md).unwrap();
    assert_eq!(v.keywords().iter().count(), 0);
    assert_eq!(v.keyword_letter("new").unwrap(), Some('a'));
    // A letter another program set after this view's sync is seen too.
    let other = md.list_all().unwrap().remove(0);
    md.move_to_cur(&other, &Flags::parse("bc")).unwrap();
    assert_eq!(v.keyword_letter("newer").unwrap(), Some('d'));
    for i in 0..22 {
        assert!(v.keyword_letter(&format!("k{i}")).unwrap().is_some(), "{i}");
    }
    assert_eq!(v.keyword_letter("one-too-many").unwrap(), None);
}

/// Creates a symlink `at` in the folder pointing to `target`.
fn plant(md: &Maildir, at: &str, target: &Path) {
    std::os::unix::fs::symlink(target, md.path().join(at)).unwrap();
}

#[test]
fn a_symlink_at_the_list_keywords_or_lock_file_is_never_followed() {
    let (d, md) = maildir();
    let victim = d.path().join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    let absent = d.path().join("absent");
    md.deliver(b"a\n").unwrap();
    // At the list: treated as corrupt, the link itself replaced; the target untouched.
    plant(&md, UIDLIST_FILE, &victim);
    let mut v = View::open(&md).unwrap();
    assert_eq!(v.uid_next(), 2);
    let meta = std::fs::symlink_metadata(list_file(&md)).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    // At the keywords file: the same.
    plant(&md, KEYWORDS_FILE, &victim);
    assert_eq!(v.keyword_letter("$Junk").unwrap(), Some('a'));
    assert!(std::fs::symlink_metadata(md.path().join(KEYWORDS_FILE))
        .unwrap()
        .file_type()
        .is_file());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    // At the lock: an error, and neither the target nor a dangling link's target is created.
    std::fs::remove_file(md.path().join(LOCK_FILE)).unwrap();
    plant(&md, LOCK_FILE, &absent);
    let err = View::open(&md).unwrap_err();
    assert!(
        crate::fsroot::is_refusal(&err) || err.raw_os_error() == Some(Errno::LOOP.raw_os_error()),
        "{err}"
    );
    assert!(!absent.exists());
    assert!(v.set_flags(1, &Flags::parse("S")).is_err());
    std::fs::remove_file(md.path().join(LOCK_FILE)).unwrap();
    plant(&md, LOCK_FILE, &victim);
    assert!(View::open(&md).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
}

/// Environment variable naming the Maildir a re-executed child works on.
const CHILD_ENV: &str = "MAILKIT_UIDLIST_TEST_CHILD";
/// Rounds of deliver + sync each child does.
const CHILD_ROUNDS: usize = 25;

/// Not a test of its own: the body of the processes [`processes_delivering_and_syncing_agree`]
/// starts. Each round delivers one message (as mdeliver would, without the lock), syncs a view,
/// checks its UIDs ascend, changes a flag now and then, and writes what it saw to its report file.
#[test]
fn child_process() {
    let (Some(dir), Some(report)) = (
        std::env::var_os(CHILD_ENV),
        std::env::var_os("MAILKIT_UIDLIST_TEST_REPORT"),
    ) else {
        return;
    };
    let md = Maildir::open(&dir).unwrap();
    let mut out = String::new();
    let mut view = View::open(&md).unwrap();
    for round in 0..CHILD_ROUNDS {
        md.deliver(format!("Subject: {round}\n\nbody\n").as_bytes())
            .unwrap();
        view.sync().unwrap();
        let ms = view.messages();
        assert!(ms.windows(2).all(|w| w[0].uid < w[1].uid));
        assert!(ms.iter().all(|m| m.uid < view.uid_next()));
        out.push_str(&format!("V{} N{}\n", view.uid_validity(), view.uid_next()));
        for m in ms {
            out.push_str(&format!("{} {}\n", m.uid, m.base()));
        }
        if round % 4 == 0 {
            if let Some(uid) = ms.get(round % ms.len().max(1)).map(|m| m.uid) {
                let flags = if round % 8 == 0 { "S" } else { "FS" };
                view.set_flags(uid, &Flags::parse(flags)).unwrap();
            }
        }
    }
    std::fs::write(report, out).unwrap();
}

#[test]
fn processes_delivering_and_syncing_agree() {
    const CHILDREN: usize = 4;
    let (d, md) = maildir();
    let exe = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    for i in 0..CHILDREN {
        let report = d.path().join(format!("report{i}"));
        let child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "maildir::uidlist::tests::child_process",
                "--test-threads=1",
                "--quiet",
            ])
            .env(CHILD_ENV, md.path())
            .env("MAILKIT_UIDLIST_TEST_REPORT", &report)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        children.push((child, report));
    }
    // Meanwhile a reader without the lock always finds a whole list (once there is one).
    let mut last_next = 0;
    while children
        .iter_mut()
        .any(|(c, _)| c.try_wait().unwrap().is_none())
    {
        if list_file(&md).exists() {
            let list = read_unlocked(&md).unwrap().expect("a whole list");
            assert!(list.next >= last_next);
            last_next = list.next;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let mut uid_of: BTreeMap<String, u32> = BTreeMap::new();
    let mut base_of: BTreeMap<u32, String> = BTreeMap::new();
    let mut validities = std::collections::BTreeSet::new();
    for (mut child, report) in children {
        assert!(child.wait().unwrap().success(), "a child failed");
        let text = std::fs::read_to_string(report).unwrap();
        let mut last_next = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix('V') {
                let (v, n) = rest.split_once(" N").unwrap();
                validities.insert(v.to_string());
                let n: u32 = n.parse().unwrap();
                assert!(n >= last_next, "UIDNEXT went down: {last_next} then {n}");
                last_next = n;
                continue;
            }
            let (uid, base) = line.split_once(' ').unwrap();
            let uid: u32 = uid.parse().unwrap();
            assert_eq!(
                *uid_of.entry(base.to_string()).or_insert(uid),
                uid,
                "{base}"
            );
            assert_eq!(
                *base_of.entry(uid).or_insert(base.to_string()),
                base,
                "{uid}"
            );
        }
    }
    assert_eq!(validities.len(), 1, "{validities:?}");
    let v = View::open(&md).unwrap();
    assert_eq!(v.messages().len(), CHILDREN * CHILD_ROUNDS);
    assert_eq!(uid_of.len(), CHILDREN * CHILD_ROUNDS);
    for m in v.messages() {
        assert_eq!(uid_of.get(m.base()), Some(&m.uid), "{}", m.base());
    }
    // Every message was delivered once, so UIDs are exactly 1..=n: none skipped, none twice.
    let all: Vec<u32> = v.messages().iter().map(|m| m.uid).collect();
    assert_eq!(all, (1..=all.len() as u32).collect::<Vec<_>>());
}

#[test]
fn what_a_crashed_writer_leaves_is_harmless() {
    let (_d, md) = maildir();
    let a = md.deliver(b"a\n").unwrap();
    let v = View::open(&md).unwrap();
    let validity = v.uid_validity();
    // A temporary list a writer died writing, and a lock record of a UIDVALIDITY whose list
    // was never written (a crash between the two steps).
    std::fs::write(
        md.path().join("mailkit-uidlist.123.deadbeef"),
        b"mailkit-uidlist 1 V9",
    )
    .unwrap();
    std::fs::write(md.path().join(LOCK_FILE), b"V4000000000\n").unwrap();
    let v = View::open(&md).unwrap();
    assert_eq!(v.uid_validity(), validity);
    assert_eq!(uids(&v), vec![(1, a.unique.clone())]);
    // The list is lost now: the new UIDVALIDITY is past the recorded one, and recorded itself.
    std::fs::remove_file(list_file(&md)).unwrap();
    let v = View::open(&md).unwrap();
    assert_eq!(v.uid_validity(), 4_000_000_001);
    assert_eq!(
        std::fs::read(md.path().join(LOCK_FILE)).unwrap(),
        b"V4000000001\n"
    );
    // A half-written record is ignored (the list, intact, still decides).
    std::fs::write(md.path().join(LOCK_FILE), b"V40").unwrap();
    assert_eq!(View::open(&md).unwrap().uid_validity(), 4_000_000_001);
}
