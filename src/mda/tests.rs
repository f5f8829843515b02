//! Unit tests for message preparation and delivery.

use super::*;
use crate::maildir::Sub;

fn env(sender: Option<&str>, rcpt: Option<&str>) -> Envelope {
    Envelope {
        sender: sender.map(str::to_string),
        recipient: rcpt.map(str::to_string),
    }
}

fn code(e: &anyhow::Error) -> u8 {
    exit::code_of(e)
}

#[test]
fn prepends_headers_and_converts_crlf() {
    let out = prepare(
        b"Subject: x\r\n\r\nbody\r\n",
        &env(Some("a@x"), Some("b@y")),
    )
    .unwrap();
    assert_eq!(
        out,
        b"Return-Path: <a@x>\nDelivered-To: b@y\nSubject: x\n\nbody\n"
    );
}

#[test]
fn no_envelope_means_bytes_unchanged() {
    let raw = b"X: 1\n\nbin\x00ary\rcr\xff\n";
    assert_eq!(prepare(raw, &env(None, None)).unwrap(), raw);
}

#[test]
fn null_and_bracketed_senders() {
    assert!(prepare(b"x\n", &env(Some(""), None))
        .unwrap()
        .starts_with(b"Return-Path: <>\n"));
    assert!(prepare(b"x\n", &env(Some("<a@b>"), None))
        .unwrap()
        .starts_with(b"Return-Path: <a@b>\n"));
}

#[test]
fn empty_recipient_means_none() {
    assert_eq!(prepare(b"x\n", &env(None, Some(" "))).unwrap(), b"x\n");
    assert_eq!(
        prepare(b"Delivered-To: \n\nx\n", &env(None, Some(""))).unwrap(),
        b"Delivered-To: \n\nx\n"
    );
}

#[test]
fn header_injection_refused() {
    for bad in ["a@b\nX-Evil: 1", "a@b\r", "a\0b"] {
        let e = prepare(b"x\n", &env(Some(bad), None)).unwrap_err();
        assert_eq!(code(&e), exit::USAGE);
        let e = prepare(b"x\n", &env(None, Some(bad))).unwrap_err();
        assert_eq!(code(&e), exit::USAGE);
    }
}

#[test]
fn crlf_conversion_keeps_lone_cr() {
    let mut out = Vec::new();
    crlf_to_lf(b"a\r\nb\rc\r\r\nd\r", &mut out);
    assert_eq!(out, b"a\nb\rc\r\nd\r");
}

#[test]
fn mail_loop_detected() {
    let raw = b"Delivered-To: Bob@Example.test\nSubject: x\n\nhi\n";
    let e = prepare(raw, &env(None, Some("bob@example.test"))).unwrap_err();
    assert_eq!(code(&e), exit::DATAERR);
    assert!(e.to_string().contains("mail loop"), "{e}");
    // another recipient is fine
    assert!(prepare(raw, &env(None, Some("alice@example.test"))).is_ok());
    // folded and bracketed, CRLF
    let raw = b"Received: x\r\nDelivered-To:\r\n  <bob@example.test>\r\n\r\n";
    assert!(prepare(raw, &env(None, Some("bob@example.test"))).is_err());
}

#[test]
fn delivered_to_in_body_is_not_a_loop() {
    let raw = b"Subject: x\n\nDelivered-To: bob@example.test\n";
    assert!(prepare(raw, &env(None, Some("bob@example.test"))).is_ok());
    // nor after a non-header line that ends a header block without a blank line
    let raw = b"Subject: x\nnot a header\nDelivered-To: bob@example.test\n";
    assert!(prepare(raw, &env(None, Some("bob@example.test"))).is_ok());
}

#[test]
fn delivered_to_adversarial_inputs() {
    for raw in [
        &b""[..],
        b"\n",
        b":",
        b" continuation first\n",
        b"Delivered-To",
        b"Delivered-To:",
        b"\xff\xfe:\xff\n",
        b"Delivered-To: \xff\n\tx\n",
    ] {
        let _ = delivered_to(raw);
    }
    assert_eq!(
        delivered_to(b"delivered-to: a\n\tb\nDELIVERED-TO :c\n"),
        vec!["a b", "c"]
    );
    // scanning stops at MAX_HEADER_SCAN
    let mut big = vec![b'X'; MAX_HEADER_SCAN];
    big.extend_from_slice(b"\nDelivered-To: a\n");
    assert!(delivered_to(&big).is_empty());
}

#[test]
fn read_message_limits() {
    assert_eq!(read_message(&b"abc"[..], 3).unwrap(), b"abc");
    let e = read_message(&b"abcd"[..], 3).unwrap_err();
    assert_eq!(code(&e), exit::DATAERR);
    assert!(e.to_string().contains("too big"));
    let e = read_message(&b""[..], 3).unwrap_err();
    assert_eq!(code(&e), exit::DATAERR);
    // the default cap is what mdeliver uses without --max-size
    assert_eq!(DEFAULT_MAX_SIZE, 256 * 1024 * 1024);
}

#[test]
fn io_errors_map_to_exit_codes() {
    let c = |errno| {
        code(&exit_io(
            io::Error::from_raw_os_error(errno),
            exit::TEMPFAIL,
        ))
    };
    assert_eq!(c(libc::ENOSPC), exit::TEMPFAIL);
    assert_eq!(c(libc::EIO), exit::TEMPFAIL);
    assert_eq!(c(libc::EACCES), exit::CANTCREAT);
    assert_eq!(c(libc::EROFS), exit::CANTCREAT);
    assert_eq!(c(libc::ENOTDIR), exit::CANTCREAT);
    assert_eq!(c(libc::EBADF), exit::TEMPFAIL);
}

fn count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn deliver_into_folder_and_inbox() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("Maildir");
    let r = deliver(&root, b"a\r\n", &env(None, None), &Options::default()).unwrap();
    assert_eq!(r.stored.len(), 1);
    assert_eq!(std::fs::read(&r.stored[0].path).unwrap(), b"a\n");
    let opts = Options {
        folder: Some("Work".into()),
        sieve: None,
        ..Options::default()
    };
    let r = deliver(&root, b"b\n", &env(None, None), &opts).unwrap();
    assert!(r.stored[0].path.starts_with(root.join(".Work/new")));
    let opts = Options {
        folder: Some("../../etc".into()),
        sieve: None,
        ..Options::default()
    };
    let e = deliver(&root, b"b\n", &env(None, None), &opts).unwrap_err();
    assert_eq!(code(&e), exit::USAGE);
}

#[test]
fn uncreatable_maildir_is_73() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("f"), b"").unwrap();
    let e = deliver(
        &t.path().join("f/Maildir"),
        b"x\n",
        &env(None, None),
        &Options::default(),
    )
    .unwrap_err();
    assert_eq!(code(&e), exit::CANTCREAT, "{e:#}");
}

fn sieve_opts(script: &str) -> Options {
    Options {
        folder: None,
        sieve: Some(sieve::Script::compile(script.as_bytes())),
        ..Options::default()
    }
}

/// Delivers [`MSG`] without envelope through `script` (which must succeed).
fn deliver_sieve(root: &std::path::Path, script: &str) -> Report {
    deliver(root, MSG, &env(None, None), &sieve_opts(script)).unwrap()
}

const MSG: &[u8] = b"From: Boss <boss@work.test>\nTo: me@home.test\nSubject: Report due\nList-Id: <dev.lists.test>\n\nPlease send it.\n";

#[test]
fn sieve_fileinto_keep_discard() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    let e = env(Some("boss@work.test"), Some("me@home.test"));
    // header + fileinto: only the folder gets it (implicit keep cancelled)
    let r = deliver(
        &root,
        MSG,
        &e,
        &sieve_opts("require \"fileinto\";\nif header :contains \"subject\" \"report\" { fileinto \"Work\"; }"),
    )
    .unwrap();
    assert_eq!(r.stored.len(), 1, "{r:?}");
    assert_eq!(r.stored[0].folder.as_deref(), Some("Work"));
    assert_eq!(count(&root.join("new")), 0);
    assert_eq!(count(&root.join(".Work/new")), 1);
    // address + envelope + size tests, fileinto and explicit keep: two copies
    let script = "require [\"fileinto\", \"envelope\"];\n\
        if allof (address :domain \"from\" \"work.test\", envelope :is \"to\" \"me@home.test\", size :under 10K) {\n\
          fileinto \"Lists/Dev\"; keep;\n}";
    let r = deliver(&root, MSG, &e, &sieve_opts(script)).unwrap();
    assert_eq!(r.stored.len(), 2, "{r:?}");
    assert_eq!(count(&root.join(".Lists.Dev/new")), 1);
    assert_eq!(count(&root.join("new")), 1);
    // discard: nothing stored, no warning
    let r = deliver(&root, MSG, &e, &sieve_opts("discard;")).unwrap();
    assert!(r.stored.is_empty() && r.warnings.is_empty(), "{r:?}");
    // no match: implicit keep into INBOX
    let r = deliver(&root, MSG, &e, &sieve_opts("if size :over 1M { discard; }")).unwrap();
    assert_eq!(r.stored.len(), 1);
    assert_eq!(r.stored[0].folder, None);
    assert_eq!(count(&root.join("new")), 2);
}

#[test]
fn sieve_flags_put_message_in_cur() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    let r = deliver_sieve(
        &root,
        "require [\"imap4flags\"];\nkeep :flags [\"\\\\Seen\", \"\\\\Flagged\"];",
    );
    assert_eq!(r.stored.len(), 1);
    assert!(
        r.stored[0].path.to_string_lossy().ends_with(":2,FS"),
        "{r:?}"
    );
    let md = Maildir::open(&root).unwrap();
    assert_eq!(md.list(Sub::Cur).unwrap().len(), 1);
    assert!(md.list(Sub::New).unwrap().is_empty());
}

#[test]
fn sieve_error_reports_line_and_keeps() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    let opts = sieve_opts("require \"fileinto\";\n\nif header :bogus \"x\" { fileinto \"A\"; }\n");
    match &opts.sieve {
        Some(Err(e)) => assert_eq!(e.line, 3, "{e}"),
        other => panic!("compiled: {other:?}"),
    }
    let r = deliver(&root, MSG, &env(None, None), &opts).unwrap();
    assert_eq!(r.stored.len(), 1);
    assert_eq!(r.stored[0].folder, None);
    assert!(r.warnings[0].contains("line 3"), "{:?}", r.warnings);
    // a script that cannot be read at all is an error too, message still delivered
    let opts = Options {
        folder: None,
        sieve: Some(sieve::Script::load(&t.path().join("missing.sieve"))),
        ..Options::default()
    };
    let r = deliver(&root, MSG, &env(None, None), &opts).unwrap();
    assert_eq!(r.stored.len(), 1);
    assert!(r.warnings[0].contains("missing.sieve"), "{:?}", r.warnings);
}

#[test]
fn sieve_unsupported_actions_keep() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    // a redirect whose submission fails for good (the command exits 69) is kept
    let mut opts = sieve_opts("redirect \"x@y.test\";");
    opts.submit = Some(std::sync::Arc::new(send::Sendmail(vec![
        "sh".into(),
        "-c".into(),
        "exit 69".into(),
    ])));
    let r = deliver(&root, MSG, &env(None, None), &opts).unwrap();
    assert_eq!(r.stored.len(), 1, "{r:?}");
    assert!(r.warnings[0].contains("exited 69"), "{r:?}");
    let r = deliver_sieve(&root, "require \"reject\";\nreject \"no\";");
    assert_eq!(r.stored.len(), 1, "{r:?}");
    // a bad folder name from a script is kept in INBOX, not an error
    let r = deliver_sieve(&root, "require \"fileinto\";\nfileinto \"../../x\";");
    assert_eq!(r.stored.len(), 1);
    assert_eq!(r.stored[0].folder, None);
}

#[test]
fn sieve_duplicate_fileinto_stores_once() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    let r = deliver_sieve(
        &root,
        "require \"fileinto\";\nfileinto \"A\"; fileinto \"A\"; fileinto \"INBOX\"; keep;",
    );
    assert_eq!(r.stored.len(), 2, "{r:?}");
}

#[test]
fn failed_copy_rolls_back_earlier_copies() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    Maildir::create(&root).unwrap();
    // the folder path is taken by a file: the folder copy fails after the INBOX copy
    std::fs::write(root.join(".B"), b"").unwrap();
    let e = deliver(
        &root,
        MSG,
        &env(None, None),
        &sieve_opts("require \"fileinto\";\nkeep; fileinto \"B\";"),
    )
    .unwrap_err();
    assert_eq!(code(&e), exit::CANTCREAT, "{e:#}");
    for d in ["tmp", "new", "cur"] {
        assert_eq!(count(&root.join(d)), 0, "{d}");
    }
}

#[test]
fn sieve_limits() {
    // scripts over MAX_SCRIPT_SIZE are refused before compiling
    let big = vec![b'#'; sieve::MAX_SCRIPT_SIZE + 1];
    let e = sieve::Script::compile(&big).unwrap_err();
    assert!(e.message.contains("larger"), "{e}");
    // a script that runs past CPU_LIMIT instructions stops with a warning, and the message is kept
    let script = "if true { }\n".repeat(sieve::CPU_LIMIT / 2 + 1000);
    assert!(script.len() < sieve::MAX_SCRIPT_SIZE);
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    let r = deliver_sieve(&root, &format!("{script}discard;\n"));
    assert_eq!(r.stored.len(), 1, "{r:?}");
    assert!(
        r.warnings.iter().any(|w| w.contains("runtime error")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn sieve_runtime_error_after_fileinto_still_keeps() {
    let script = format!(
        "require \"fileinto\";\nfileinto \"A\";\n{}",
        "if true { }\n".repeat(sieve::CPU_LIMIT / 2 + 1000)
    );
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    let r = deliver_sieve(&root, &script);
    let folders: Vec<_> = r.stored.iter().map(|s| s.folder.clone()).collect();
    assert_eq!(folders, vec![Some("A".to_string()), None], "{r:?}");
}

/// RFC 5228 section 4.2: a redirect to a constant that is no `local@domain` is refused when
/// the script is compiled, as Pigeonhole refuses it ("specified redirect address 'bob' is
/// invalid"); sieve-rs alone would compile it and drop the redirect without a word.
#[test]
fn sieve_redirect_to_a_constant_that_is_no_address_is_refused_at_compile_time() {
    for address in ["bob", "@example.org", "bob@", "bob@exa mple.org", ""] {
        let script = format!("keep;\nredirect \"{address}\";\n");
        let e = sieve::Script::compile(script.as_bytes()).unwrap_err();
        assert!(
            e.message
                .contains(&format!("redirect address '{address}' is invalid")),
            "{script}: {e}"
        );
        assert_eq!(e.line, 2, "{script}: {e}");
    }
    for address in ["bob@localhost", "bob@example.org", "\"a b\"@example.org"] {
        let script = format!("redirect \"{}\";\n", address.replace('"', "\\\""));
        assert!(
            sieve::Script::compile(script.as_bytes()).is_ok(),
            "{script}"
        );
    }
}

#[test]
fn sieve_unclaimed_extensions_are_refused_at_compile_time() {
    // sieve-rs compiles these, but mdeliver would then drop or fake their actions and tests
    for (script, name) in [
        (
            "require \"duplicate\";\nif duplicate { discard; }",
            "duplicate",
        ),
        (
            "require [\"fileinto\",\n \"reject\"];\nreject \"no\";",
            "reject",
        ),
        ("require \"x-unknown\";\nkeep;", "x-unknown"),
        (
            "require [\"vacation\",\n \"vacation-seconds\"];\nvacation :seconds 60 \"x\";",
            "vacation-seconds",
        ),
        (
            "if true {\n  require \"include\";\n  include \"a\";\n}",
            "include",
        ),
    ] {
        let e = sieve::Script::compile(script.as_bytes()).unwrap_err();
        assert!(
            e.message
                .contains(&format!("extension \"{name}\" is not supported")),
            "{script}: {e}"
        );
        assert!(
            e.line >= 1 && script.lines().nth(e.line - 1).unwrap().contains(name),
            "{e}"
        );
    }
    for &ext in sieve::EXTENSIONS {
        let script = format!("require \"{ext}\";\n");
        assert!(sieve::Script::compile(script.as_bytes()).is_ok(), "{ext}");
    }
}

#[test]
fn sieve_explicit_keep_survives_fileinto_redirect_and_discard() {
    // RFC 5228 sections 2.10.2 and 4.3: only the implicit keep is cancelled
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    for script in [
        "require \"fileinto\";\nkeep;\nfileinto \"X\";",
        "require [\"fileinto\", \"mailbox\"];\nkeep;\nfileinto :create \"X\";",
        "require \"fileinto\";\nfileinto \"X\";\nkeep;",
    ] {
        let r = deliver_sieve(&root, script);
        let mut folders: Vec<_> = r.stored.iter().map(|s| s.folder.clone()).collect();
        folders.sort();
        assert_eq!(folders, [None, Some("X".to_string())], "{script}");
    }
    let r = deliver_sieve(&root, "keep;\ndiscard;");
    assert_eq!(r.stored.len(), 1, "{r:?}");
    assert_eq!(r.stored[0].folder, None);
}

#[test]
fn an_mtas_stamp_composes_with_ours() {
    // mrelayd (or Postfix local, qmail-local) piped the message with its stamp for this
    // delivery on top: one Return-Path and one Delivered-To come out, and it is no loop
    let stamped = b"Return-Path: <s@x.test>\r\nDelivered-To: carol@y.test\r\nReceived: by mx\r\nSubject: a\r\n\r\nb\r\n";
    let want =
        b"Return-Path: <s@x.test>\nDelivered-To: carol@y.test\nReceived: by mx\nSubject: a\n\nb\n";
    let e = env(Some("s@x.test"), Some("carol@y.test"));
    assert_eq!(prepare(stamped, &e).unwrap(), want);
    // RECIPIENT unset: the stamp's Delivered-To stays, our Return-Path replaces theirs
    let out = prepare(stamped, &env(Some("s@x.test"), None)).unwrap();
    assert_eq!(out, want);
    // no sender either: the stamp stays as it is
    assert_eq!(prepare(stamped, &env(None, None)).unwrap(), want);
    // mdeliver -d dave under an alias for carol: both Delivered-To lines, ours first
    let out = prepare(stamped, &env(Some("s@x.test"), Some("dave@y.test"))).unwrap();
    assert!(
        out.starts_with(b"Return-Path: <s@x.test>\nDelivered-To: dave@y.test\nDelivered-To: carol@y.test\nReceived: by mx\n"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // a Delivered-To for us below the stamp is an earlier delivery: a loop
    let looped = b"Return-Path: <s@x.test>\nDelivered-To: carol@y.test\nReceived: by mx\nDelivered-To: carol@y.test\n\nb\n";
    let err = prepare(looped, &e).unwrap_err();
    assert!(err.to_string().contains("mail loop"), "{err}");
    // a stamp starts with Return-Path: a folded one, or Delivered-To alone on top, is not one
    assert_eq!(stamp_len(b"Delivered-To: carol@y.test\n\nb\n"), 0);
    assert_eq!(stamp_len(b"Return-Path: <s@x.test>\n <x>\n\nb\n"), 0);
    assert_eq!(
        stamp_len(b"Return-Path: <s@x.test>\nDelivered-To: a\nDelivered-To: b\nX: y\n"),
        56
    );
}

/// A sendmail command that appends each message to `base` and its recipient (`$5` after
/// `-i -f SENDER --`) and sender to `base.log`, failing with 75 for recipients starting
/// with `b@` until `base.ok` exists.
fn recording_sendmail(base: &std::path::Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "case \"$5\" in b@*) [ -e \"$0.ok\" ] || exit 75;; esac; cat >> \"$0\"; echo \"$3 $5\" >> \"$0.log\"".into(),
        base.display().to_string(),
    ]
}

#[test]
fn sieve_redirect_submits_then_stores_and_a_retry_sends_nothing_twice() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    let base = t.path().join("sent");
    let mut opts =
        sieve_opts("require \"copy\";\nredirect :copy \"a@x.test\";\nredirect :copy \"b@x.test\";");
    opts.submit = Some(std::sync::Arc::new(send::Sendmail(recording_sendmail(
        &base,
    ))));
    let e = env(Some("boss@work.test"), Some("me@home.test"));
    // b@ fails temporarily: 75, nothing stored, a@ sent once
    let err = deliver(&root, MSG, &e, &opts).unwrap_err();
    assert_eq!(crate::exit::code_of(&err), crate::exit::TEMPFAIL, "{err:#}");
    assert!(Maildir::open(&root).unwrap().list_all().unwrap().is_empty());
    std::fs::write(t.path().join("sent.ok"), b"").unwrap();
    // the retry sends only b@ and stores one copy (:copy keeps the implicit keep)
    let r = deliver(&root, MSG, &e, &opts).unwrap();
    assert_eq!(r.stored.len(), 1, "{r:?}");
    let log = std::fs::read_to_string(t.path().join("sent.log")).unwrap();
    assert_eq!(log, "boss@work.test a@x.test\nboss@work.test b@x.test\n");
    // what was sent: the stored message without its Return-Path, with its Delivered-To
    let sent = std::fs::read_to_string(&base).unwrap();
    assert!(
        sent.starts_with("Delivered-To: me@home.test\nFrom: Boss"),
        "{sent}"
    );
    // without :copy the implicit keep is cancelled: sent, nothing stored
    let root2 = t.path().join("M2");
    let mut opts = sieve_opts("redirect \"c@x.test\";");
    opts.submit = Some(std::sync::Arc::new(send::Sendmail(recording_sendmail(
        &base,
    ))));
    let r = deliver(&root2, MSG, &env(None, Some("me@home.test")), &opts).unwrap();
    assert!(r.stored.is_empty(), "{r:?}");
    assert_eq!(r.submitted.len(), 1);
    let log = std::fs::read_to_string(t.path().join("sent.log")).unwrap();
    assert!(log.ends_with("<> c@x.test\n"), "{log}");
}

#[test]
fn sieve_redirect_loops_and_too_many_redirects_keep() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    let base = t.path().join("sent");
    // to the recipient itself, or to an address of an earlier Delivered-To: not sent, kept
    let msg = b"Delivered-To: old@home.test\nSubject: x\n\nb\n";
    for to in ["ME@home.test", "old@home.test"] {
        let mut opts = sieve_opts(&format!("redirect \"{to}\";"));
        opts.submit = Some(std::sync::Arc::new(send::Sendmail(recording_sendmail(
            &base,
        ))));
        let r = deliver(&root, msg, &env(None, Some("me@home.test")), &opts).unwrap();
        assert_eq!(r.stored.len(), 1, "{r:?}");
        assert!(r.warnings[0].contains("mail loop"), "{r:?}");
        assert!(r.submitted.is_empty());
    }
    // five redirects: four sent, the fifth a warning, the message kept
    let script: String = (1..=5)
        .map(|i| format!("redirect \"r{i}@x.test\";\n"))
        .collect();
    let mut opts = sieve_opts(&script);
    opts.submit = Some(std::sync::Arc::new(send::Sendmail(recording_sendmail(
        &base,
    ))));
    let r = deliver(&root, msg, &env(None, Some("me@home.test")), &opts).unwrap();
    assert_eq!(r.submitted.len(), 4, "{r:?}");
    assert!(
        r.warnings.iter().any(|w| w.contains("more than 4")),
        "{r:?}"
    );
    assert_eq!(r.stored.len(), 1, "{r:?}");
}

#[test]
fn sieve_vacation_replies_once_per_days_and_never_to_lists() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    let base = t.path().join("sent");
    let mut opts =
        sieve_opts("require \"vacation\";\nvacation :days 3 :subject \"Away\" \"I am away.\";");
    opts.submit = Some(std::sync::Arc::new(send::Sendmail(recording_sendmail(
        &base,
    ))));
    let msg = b"From: Boss <boss@work.test>\nTo: me@home.test\nSubject: Report\nMessage-ID: <r1@work.test>\n\nPlease.\n";
    let e = env(Some("boss@work.test"), Some("me@home.test"));
    let r = deliver(&root, msg, &e, &opts).unwrap();
    assert_eq!(r.stored.len(), 1, "{r:?}");
    assert_eq!(r.submitted.len(), 1, "{r:?}");
    let sent = std::fs::read_to_string(&base).unwrap();
    for want in [
        "Auto-Submitted: auto-replied\r\n",
        "In-Reply-To: <r1@work.test>\r\n",
        "Subject: Away\r\n",
        "From: me@home.test\r\n",
        "MIME-Version: 1.0\r\n",
        "\r\n\r\nI am away.",
    ] {
        assert!(sent.contains(want), "{want:?} in {sent}");
    }
    assert_eq!(
        std::fs::read_to_string(t.path().join("sent.log")).unwrap(),
        "<> boss@work.test\n"
    );
    // the same sender again within :days: stored, not answered
    let r = deliver(&root, msg, &e, &opts).unwrap();
    assert_eq!((r.stored.len(), r.submitted.len()), (1, 0), "{r:?}");
    // list mail (List-Id, Precedence: list), auto-submitted mail, <>, not addressed to us
    for (m, s) in [
        (MSG, "boss2@work.test"),
        (
            &b"From: a@work.test\nTo: me@home.test\nPrecedence: list\nSubject: x\n\nb\n"[..],
            "a@work.test",
        ),
        (
            &b"From: a@work.test\nTo: me@home.test\nPrecedence: junk\nSubject: x\n\nb\n"[..],
            "a@work.test",
        ),
        (
            &b"From: a@work.test\nTo: me@home.test\nAuto-Submitted: auto-generated\n\nb\n"[..],
            "a@work.test",
        ),
        (&b"From: a@work.test\nTo: me@home.test\n\nb\n"[..], ""),
        (
            &b"From: a@work.test\nTo: other@home.test\n\nb\n"[..],
            "a@work.test",
        ),
    ] {
        let r = deliver(&root, m, &env(Some(s), Some("me@home.test")), &opts).unwrap();
        assert_eq!(
            (r.stored.len(), r.submitted.len()),
            (1, 0),
            "{}: {r:?}",
            String::from_utf8_lossy(m)
        );
    }
}

/// sieve-rs drops a redirect to a domain without a dot; ours go out, to the address as
/// written (constant or computed), without the dot added to get them past it.
#[test]
fn sieve_redirect_to_a_domain_without_a_dot_is_sent() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("M");
    let base = t.path().join("sent");
    let mut opts = sieve_opts(
        "require [\"copy\", \"variables\"];\nset \"u\" \"carol\";\n\
         redirect :copy \"alice@localhost\";\nredirect \"${u}@localhost\";",
    );
    opts.submit = Some(std::sync::Arc::new(send::Sendmail(recording_sendmail(
        &base,
    ))));
    let e = env(Some("boss@work.test"), Some("me@localhost"));
    let r = deliver(&root, MSG, &e, &opts).unwrap();
    assert!(r.stored.is_empty(), "{r:?}");
    let log = std::fs::read_to_string(t.path().join("sent.log")).unwrap();
    assert_eq!(
        log,
        "boss@work.test alice@localhost\nboss@work.test carol@localhost\n"
    );
}
