//! Unit tests for the Maildir writer and reader.

use super::*;
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn flags_sorted_and_deduplicated() {
    assert_eq!(Flags::parse("TSSRa").as_str(), "RSTa");
    assert_eq!(Flags::parse("S,F:1").as_str(), "FS");
    assert!(Flags::parse("FS").contains(Flags::SEEN));
    assert_eq!(Flags::parse("S").with('F').with('S').as_str(), "FS");
    assert_eq!(Flags::parse("FRS").without('R').as_str(), "FS");
    assert_eq!(Flags::empty().with('1').as_str(), "");
}

#[test]
fn unique_names_distinct() {
    let names: HashSet<String> = (0..10_000).map(|_| unique_base()).collect();
    assert_eq!(names.len(), 10_000);
    let n = unique_base();
    assert!(
        n.contains(".M") && n.contains('P') && n.contains('Q') && n.contains('R'),
        "{n}"
    );
    assert!(!n.contains('/') && !n.contains(':'), "{n}");
}

#[test]
fn hostname_is_sanitised() {
    assert_eq!(
        sanitize_hostname(OsStr::new("a/b:c,d")),
        "a\\057b\\072c\\054d"
    );
    assert_eq!(sanitize_hostname(OsStr::new("")), "localhost");
    assert_eq!(sanitize_hostname(OsStr::new("mx\n1")), "mx1");
}

#[test]
fn parse_names_as_dovecot_writes_them() {
    let (u, info, flags, s, w) = parse_name("1700000000.M1P2Q3.host,S=120,W=124:2,SF");
    assert_eq!(u, "1700000000.M1P2Q3.host,S=120,W=124");
    assert_eq!(info.as_deref(), Some("2,SF"));
    assert_eq!(flags.as_str(), "FS");
    assert_eq!((s, w), (Some(120), Some(124)));
    let (u, info, flags, s, w) = parse_name("12345.abc.host");
    assert_eq!(
        (u.as_str(), info, flags, s, w),
        ("12345.abc.host", None, Flags::empty(), None, None)
    );
    // experimental "1," info carries no flags
    assert_eq!(parse_name("x:1,foo").2, Flags::empty());
    // garbage sizes are ignored, not a panic
    assert_eq!(parse_name("x,S=abc,W=").3, None);
}

#[test]
fn maildir_plus_plus_names() {
    assert_eq!(folder_dir_name("INBOX").unwrap(), None);
    assert_eq!(folder_dir_name("inbox").unwrap(), None);
    assert_eq!(folder_dir_name("Sent").unwrap().as_deref(), Some(".Sent"));
    assert_eq!(
        folder_dir_name("Lists/Rust").unwrap().as_deref(),
        Some(".Lists.Rust")
    );
    assert_eq!(
        folder_dir_name("Lists.Rust").unwrap().as_deref(),
        Some(".Lists.Rust")
    );
    assert_eq!(
        folder_dir_name("INBOX.Lists").unwrap().as_deref(),
        Some(".Lists")
    );
    assert_eq!(
        folder_dir_name("INBOX/Lists").unwrap().as_deref(),
        Some(".Lists")
    );
    assert_eq!(
        folder_dir_name("Entwürfe").unwrap().as_deref(),
        Some(".Entw&APw-rfe")
    );
    assert_eq!(folder_dir_name("A&B").unwrap().as_deref(), Some(".A&-B"));
    // RFC 3501 section 5.1.3 example
    assert_eq!(
        mutf7_encode("~peter/mail/台北/日本語"),
        "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    );
    for bad in [
        "", ".", "..", "a..b", "/a", "a/", "../etc", "a\nb", "a\0b", "INBOX.",
    ] {
        assert!(folder_dir_name(bad).is_err(), "{bad:?} accepted");
    }
    assert!(folder_dir_name(&"x".repeat(MAX_FOLDER_NAME + 1)).is_err());
    assert!(folder_dir_name(&"x".repeat(MAX_FOLDER_NAME)).is_ok());
}

#[test]
fn create_makes_private_dirs_with_parents() {
    let t = tmp();
    let root = t.path().join("a/b/Maildir");
    let md = Maildir::create(&root).unwrap();
    for d in ["", "tmp", "new", "cur"] {
        let m = fs::metadata(root.join(d)).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.permissions().mode() & 0o777, DIR_MODE, "{d}");
    }
    assert_eq!(
        fs::metadata(t.path().join("a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        DIR_MODE
    );
    assert_eq!(md.path(), root);
    // idempotent
    Maildir::create(&root).unwrap();
    // a file in the way is an error, not a panic
    fs::write(t.path().join("file"), b"x").unwrap();
    assert!(Maildir::create(t.path().join("file")).is_err());
    assert!(Maildir::create(t.path().join("file/Maildir")).is_err());
    assert!(Maildir::open(t.path().join("missing")).is_err());
}

#[test]
fn deliver_writes_exact_bytes_and_size_fields() {
    let t = tmp();
    let md = Maildir::create(t.path().join("M")).unwrap();
    let body = b"Subject: hi\n\nline1\nline2\r\n";
    let d = md.deliver(body).unwrap();
    assert_eq!(fs::read(&d.path).unwrap(), body);
    assert_eq!(d.size, body.len() as u64);
    // 3 bare LFs become CRLF in the RFC 822 size; the CRLF stays 2 bytes
    assert!(
        d.unique
            .ends_with(&format!(",S={},W={}", body.len(), body.len() + 3)),
        "{}",
        d.unique
    );
    assert_eq!(d.path, md.path().join("new").join(&d.unique));
    assert_eq!(
        fs::metadata(&d.path).unwrap().permissions().mode() & 0o777,
        FILE_MODE
    );
    assert_eq!(fs::read_dir(md.path().join("tmp")).unwrap().count(), 0);
    let l = md.list(Sub::New).unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].unique, d.unique);
    assert_eq!(l[0].size, body.len() as u64);
    assert_eq!(l[0].rfc822_size, Some(body.len() as u64 + 3));
    assert!(md.list(Sub::Cur).unwrap().is_empty());
}

#[test]
fn crlf_across_buffer_boundary_counts_once() {
    let t = tmp();
    let md = Maildir::create(t.path().join("M")).unwrap();
    let mut data = vec![b'a'; COPY_BUFFER - 1];
    data.extend_from_slice(b"\r\nb\n");
    // a reader returning small pieces splits the CRLF across reads
    struct Chunks<'a>(&'a [u8]);
    impl Read for Chunks<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let d = md.deliver_from(Chunks(&data)).unwrap();
    assert!(d
        .unique
        .ends_with(&format!(",S={},W={}", data.len(), data.len() + 1)));
}

#[test]
fn failed_delivery_leaves_nothing() {
    let t = tmp();
    let md = Maildir::create(t.path().join("M")).unwrap();
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            self.0 -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }
    let e = md.deliver_from(Failing(5)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
    for d in ["tmp", "new", "cur"] {
        assert_eq!(fs::read_dir(md.path().join(d)).unwrap().count(), 0, "{d}");
    }
}

#[test]
fn rename_never_replaces() {
    let t = tmp();
    let a = t.path().join("a");
    let b = t.path().join("b");
    fs::write(&a, b"A").unwrap();
    fs::write(&b, b"B").unwrap();
    let dir = crate::fsroot::Dir::open_root(t.path()).unwrap();
    let e = dir.rename_noreplace("a", &dir, "b").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(fs::read(&b).unwrap(), b"B");
    assert_eq!(fs::read(&a).unwrap(), b"A");
    let c = t.path().join("c");
    dir.rename_noreplace("a", &dir, "c").unwrap();
    assert!(!a.exists());
    assert_eq!(fs::read(&c).unwrap(), b"A");
}

#[test]
fn move_to_cur_refuses_to_replace() {
    let t = tmp();
    let md = Maildir::create(t.path().join("M")).unwrap();
    let d = md.deliver(b"one\n").unwrap();
    let e = md.entry(Sub::New, &d.unique).unwrap();
    // someone already has a file with that name in cur/
    let clash = md.path().join("cur").join(format!("{}:2,S", d.unique));
    fs::write(&clash, b"other").unwrap();
    assert_eq!(
        md.move_to_cur(&e, &Flags::parse("S")).unwrap_err().kind(),
        io::ErrorKind::AlreadyExists
    );
    assert_eq!(fs::read(&clash).unwrap(), b"other");
    assert_eq!(fs::read(&e.path).unwrap(), b"one\n");
}

#[test]
fn moves_and_flags_keep_mtime_and_unique() {
    let t = tmp();
    let md = Maildir::create(t.path().join("M")).unwrap();
    let d = md.deliver(b"Subject: x\n\nbody\n").unwrap();
    // backdate the arrival time so a changed mtime would show
    let arrival = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    File::options()
        .write(true)
        .open(&d.path)
        .unwrap()
        .set_modified(arrival)
        .unwrap();
    let e = md.entry(Sub::New, &d.unique).unwrap();
    assert_eq!(e.mtime, arrival);
    let e = md.move_to_cur(&e, &Flags::empty()).unwrap();
    assert_eq!(e.sub, Sub::Cur);
    assert_eq!(e.name, format!("{}:2,", d.unique));
    let e = md.move_to_cur(&e, &Flags::parse("SR")).unwrap();
    assert_eq!(e.name, format!("{}:2,RS", d.unique));
    md.sync().unwrap();
    let listed = md.list_all().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].unique, d.unique);
    assert_eq!(listed[0].flags.as_str(), "RS");
    assert_eq!(listed[0].mtime, arrival);
    assert_eq!(listed[0].size, 17);
    assert!(md.list(Sub::New).unwrap().is_empty());
    assert!(md.delete(&listed[0]).unwrap());
    assert!(!md.delete(&listed[0]).unwrap());
    assert!(md.list_all().unwrap().is_empty());
}

#[test]
fn list_skips_dotfiles_and_dirs_sorts_by_arrival() {
    let t = tmp();
    let md = Maildir::create(t.path().join("M")).unwrap();
    let first = md.deliver(b"1\n").unwrap();
    let second = md.deliver(b"2\n").unwrap();
    File::options()
        .write(true)
        .open(&second.path)
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10))
        .unwrap();
    fs::write(md.path().join("new/.hidden"), b"x").unwrap();
    fs::create_dir(md.path().join("new/subdir")).unwrap();
    // a file without ,S= gets its size from stat
    fs::write(md.path().join("cur/123.plain.host:2,S"), b"12345").unwrap();
    let l = md.list_all().unwrap();
    let names: Vec<&str> = l.iter().map(|e| e.unique.as_str()).collect();
    assert_eq!(names.len(), 3);
    assert_eq!(names[0], second.unique);
    assert!(names.contains(&first.unique.as_str()));
    let plain = l.iter().find(|e| e.unique == "123.plain.host").unwrap();
    assert_eq!((plain.size, plain.rfc822_size), (5, None));
    assert_eq!(plain.flags.as_str(), "S");
}

#[test]
fn list_all_reports_a_message_in_both_dirs_once() {
    let t = tmp();
    let md = Maildir::create(t.path().join("M")).unwrap();
    let d = md.deliver(b"x\n").unwrap();
    // a crash between link() and unlink() can leave both names
    fs::hard_link(
        &d.path,
        md.path().join("cur").join(format!("{}:2,S", d.unique)),
    )
    .unwrap();
    let l = md.list_all().unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].sub, Sub::Cur);
}

#[test]
fn unreadable_dir_is_an_error_not_empty() {
    let t = tmp();
    let md = Maildir::create(t.path().join("M")).unwrap();
    fs::remove_dir(md.path().join("cur")).unwrap();
    fs::write(md.path().join("cur"), b"").unwrap();
    // A handle keeps the directories it opened (issue 10: no path is resolved twice), so the
    // swap shows when the Maildir is opened again, as every session does.
    let e = Maildir::open(md.path()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotADirectory, "{e}");
    assert!(
        md.list(Sub::Cur).unwrap().is_empty(),
        "the removed cur/ is empty"
    );
}

#[test]
fn folders_created_with_marker() {
    let t = tmp();
    let inbox = Maildir::create(t.path().join("M")).unwrap();
    let f = inbox.folder("Lists/Rust").unwrap();
    assert_eq!(f.path(), inbox.path().join(".Lists.Rust"));
    assert!(f.path().join(FOLDER_MARKER).is_file());
    assert_eq!(
        fs::metadata(f.path()).unwrap().permissions().mode() & 0o777,
        DIR_MODE
    );
    let d = f.deliver(b"x\n").unwrap();
    assert!(d.path.starts_with(inbox.path().join(".Lists.Rust/new")));
    // opening again is fine, INBOX is the root
    assert_eq!(inbox.folder("Lists.Rust").unwrap(), f);
    assert_eq!(inbox.folder("INBOX").unwrap(), inbox);
    assert_eq!(
        inbox.folder("../x").unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn many_threads_deliver_distinct_files() {
    let t = tmp();
    let md = Maildir::create(t.path().join("M")).unwrap();
    std::thread::scope(|s| {
        for i in 0..8 {
            let md = &md;
            s.spawn(move || {
                for j in 0..50 {
                    md.deliver(format!("{i}-{j}\n").as_bytes()).unwrap();
                }
            });
        }
    });
    let l = md.list(Sub::New).unwrap();
    assert_eq!(l.len(), 400);
    let bodies: HashSet<Vec<u8>> = l.iter().map(|e| fs::read(&e.path).unwrap()).collect();
    assert_eq!(bodies.len(), 400);
}

#[test]
fn a_tagged_delivery_carries_its_tag_in_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::create(dir.path().join("m")).unwrap();
    let d = md.deliver_tagged(b"Subject: t\n\nx\n", "abc123").unwrap();
    assert_eq!(super::tag_of(&d.unique), Some("abc123"));
    let e = md.list_all().unwrap();
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].size, e[0].rfc822_size), (14, Some(17)));
    assert_eq!(super::tag_of(&e[0].unique), Some("abc123"));
    assert_eq!(super::tag_of("1.M2P3.host,S=4"), None);
    for bad in ["", "a,b", "a/b", "a:2"] {
        assert!(md.deliver_tagged(b"x", bad).is_err(), "{bad}");
    }
}
