//! Unit tests of the uid list, the keywords file and [`View`], and a multi-process test that
//! re-executes this test binary.

use super::format::{valid_keyword, Keywords, UidList};
use super::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
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
fn dovecot_format_round_trips_keeps_unknown_fields_and_ignores_a_partial_line() {
    // As the peers' Dovecot 2.3 wrote it (header N stale after appends), plus fields we do
    // not use.
    let text = "3 V1796304282 N1 G8b0b4b0c9a6d116b4642000083ecc375 Xkept\n\
                1 :170000001.M1P1.host,S=20\n\
                2 W22 S20 :170000002.M1P1.host,S=20\n\
                5 :a b\n";
    let list = UidList::parse(text.as_bytes()).unwrap();
    assert_eq!(list.validity, 1_796_304_282);
    assert_eq!(list.next, 6, "UIDNEXT past the last record");
    assert_eq!(list.guid, "8b0b4b0c9a6d116b4642000083ecc375");
    assert_eq!(list.header_ext, vec!["Xkept".to_string()]);
    assert_eq!(list.records[1].ext, vec!["W22".to_string(), "S20".into()]);
    assert_eq!(list.records[2].base, "a b");
    assert!(list.complete);
    assert_eq!(
        String::from_utf8(list.serialise()).unwrap(),
        text.replace(" N1 ", " N6 ")
    );
    // An append in progress: the partial line is not a record (yet).
    let partial = format!("{text}6 :xy");
    let p = UidList::parse(partial.as_bytes()).unwrap();
    assert_eq!(p.records.len(), 3);
    assert!(!p.complete);
    // A base name listed again has its later UID (Dovecot's rule).
    let dup =
        UidList::parse(b"3 V1 N1 G00000000000000000000000000000000\n1 :a\n2 :b\n3 :a\n").unwrap();
    let got: Vec<(u32, &str)> = dup
        .records
        .iter()
        .map(|r| (r.uid, r.base.as_str()))
        .collect();
    assert_eq!(got, vec![(2, "b"), (3, "a")]);
    // No GUID (older Dovecot): parses, the writer adds one.
    assert_eq!(UidList::parse(b"3 V1 N1\n").unwrap().guid, "");
    // The header's UIDVALIDITY survives in the error once the header line is whole.
    let cut = UidList::parse(b"3 V77 N1\n2 :a\n1 :b\n").unwrap_err();
    assert_eq!(cut.validity, Some(77));
    for bad in [
        "",
        "3 V1 N1",
        "1 1 1\n",
        "3 V0 N1\n",
        "3 V1 N0\n",
        "3 V1 N1 Gxyz\n",
        "3 V1 N3\n2 :a\n1 :b\n",
        "3 V1 N3\n1 :a/b\n",
        "3 V1 N3\n1 a\n",
        "3 V1 N3\n0 :a\n",
        "3 V1 N3\n1 :\n",
        "3 V1 N3\n4294967295 :a\n",
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
    assert_eq!(bytes, b"0 $Junk\n2 work\n");
    assert_eq!(Keywords::parse(&bytes), k);
    // Lines Dovecot would not use are skipped; the first of a repeated index or name counts.
    let k = Keywords::parse(b"0 x\n0 y\n1 x\n26 z\nq\n3 Work\n2 ok");
    let got: Vec<(char, &str)> = k.iter().collect();
    assert_eq!(got, vec![('a', "x"), ('c', "ok"), ('d', "Work")]);
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

/// A message another process renamed after our scan (a `new/` file moved to `cur/` by the
/// other mimapd process or mpopd, or a flag rename) is still opened by its base name.
#[test]
fn open_message_follows_a_rename_by_another_process() {
    let (_d, md) = maildir();
    let a = md.deliver(b"a\n").unwrap();
    let b = md.deliver(b"b\n").unwrap();
    let v = View::open(&md).unwrap();
    // Both files are in cur/ now; one goes elsewhere under its base name (into new/, as a
    // view that listed it in new/ would find it moved to cur/), one gets new flags.
    let cur = md.path().join("cur");
    std::fs::rename(
        cur.join(format!("{}:2,", b.unique)),
        md.path().join("new").join(&b.unique),
    )
    .unwrap();
    std::fs::rename(
        cur.join(format!("{}:2,", a.unique)),
        cur.join(format!("{}:2,F", a.unique)),
    )
    .unwrap();
    let mut text = String::new();
    for uid in [1, 2] {
        let mut f = v.open_message(uid).unwrap().unwrap();
        f.read_to_string(&mut text).unwrap();
    }
    assert_eq!(text, "a\nb\n");
    std::fs::remove_file(cur.join(format!("{}:2,F", a.unique))).unwrap();
    assert!(v.open_message(1).unwrap().is_none());
    assert!(v.open_message(3).unwrap().is_none());
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
    // Damaged: records out of order.
    let mut damaged = full.clone();
    damaged.extend_from_slice(b"1 :late\n");
    std::fs::write(&path, &damaged).unwrap();
    let v = View::open(&md).unwrap();
    assert!(v.uid_validity() > old, "{} > {old}", v.uid_validity());
    assert_eq!(uids(&v), vec![(1, bases[1].clone()), (2, bases[2].clone())]);
    // Garbage without a readable header: still greater (the state file recorded the old value).
    let old = v.uid_validity();
    std::fs::write(&path, b"\x00garbage").unwrap();
    let v = View::open(&md).unwrap();
    assert!(v.uid_validity() > old);
    assert_eq!(v.uid_next(), 3);
    // A lost list too: the state file's record keeps the new value greater.
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
    let mut list = UidList::fresh(5, super::new_guid());
    list.next = MAX_UID;
    list.records.push(Record {
        uid: MAX_UID - 1,
        ext: vec!["W2".into()],
        base: a.unique.clone(),
    });
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
    // The GUID and the record's fields survive the renumbering.
    let again = read_unlocked(&md).unwrap().unwrap();
    assert_eq!(again.guid, list.guid);
    assert_eq!(again.records[0].ext, vec!["W2".to_string()]);
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
    // At the lock (or the state file): the dotlock is created O_EXCL, so a planted link is
    // an error, never followed, and neither its target nor a dangling link's target is made.
    let lock_file = format!("{UIDLIST_FILE}.lock");
    plant(&md, &lock_file, &absent);
    let err = View::open(&md).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    assert!(!absent.exists());
    std::fs::remove_file(md.path().join(&lock_file)).unwrap();
    std::fs::remove_file(md.path().join(STATE_FILE)).unwrap();
    plant(&md, STATE_FILE, &victim);
    let v = View::open(&md).unwrap();
    assert_eq!(v.uid_next(), 2);
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
    // A temporary list a writer died writing, a half-appended record, a dotlock of a dead
    // process on this host, and a state record of a UIDVALIDITY whose list was never written.
    std::fs::write(md.path().join("dovecot-uidlist.tmp"), b"3 V9").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(list_file(&md))
        .unwrap();
    f.write_all(b"7 :half").unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let host = gethostname::gethostname();
    std::fs::write(
        md.path().join("dovecot-uidlist.lock"),
        format!("{dead}:{}\n", host.to_string_lossy()),
    )
    .unwrap();
    std::fs::write(md.path().join(STATE_FILE), b"V4000000000 R0:0\n").unwrap();
    let b = md.deliver(b"b\n").unwrap();
    let v = View::open(&md).unwrap();
    assert_eq!(v.uid_validity(), validity);
    assert_eq!(uids(&v), vec![(1, a.unique.clone()), (2, b.unique.clone())]);
    let list = std::fs::read_to_string(list_file(&md)).unwrap();
    assert!(!list.contains("half") && list.ends_with('\n'), "{list}");
    // The list is lost now: the new UIDVALIDITY is past the recorded one, and recorded itself.
    std::fs::remove_file(list_file(&md)).unwrap();
    let v = View::open(&md).unwrap();
    assert_eq!(v.uid_validity(), 4_000_000_001);
    assert_eq!(
        State::parse(&std::fs::read(md.path().join(STATE_FILE)).unwrap()).map(|s| s.validity),
        Some(4_000_000_001)
    );
    // A damaged state file is ignored (the list, intact, still decides).
    std::fs::write(md.path().join(STATE_FILE), b"V40").unwrap();
    assert_eq!(View::open(&md).unwrap().uid_validity(), 4_000_000_001);
}

#[test]
fn new_records_are_appended_and_recent_goes_to_one_claimer() {
    let (_d, md) = maildir();
    md.deliver(b"a\n").unwrap();
    let mut v = View::open(&md).unwrap();
    let ino = std::fs::metadata(list_file(&md)).unwrap().ino();
    md.deliver(b"b\n").unwrap();
    let mut w = View::open(&md).unwrap();
    assert_eq!(w.uid_next(), 3);
    // Only records added: appended in place (Dovecot does the same), the header untouched.
    assert_eq!(std::fs::metadata(list_file(&md)).unwrap().ino(), ino);
    assert_eq!(v.sync_claiming(true).unwrap(), vec![1, 2]);
    assert_eq!(w.sync_claiming(true).unwrap(), Vec::<u32>::new());
    md.deliver(b"c\n").unwrap();
    assert_eq!(w.sync_claiming(true).unwrap(), vec![3]);
    assert_eq!(v.sync_claiming(true).unwrap(), Vec::<u32>::new());
}
