//! mdeliver's Sieve against the reference interpreter: every script of a table runs over every
//! message of a table through mdeliver and through Dovecot Pigeonhole's `sieve-test -e` (Debian
//! dovecot-sieve, installed by tests/peers/install.sh), each storing into a fresh Maildir, and
//! where each message lands (folders, IMAP system flags) must be the same, and so must what
//! redirect and vacation send (envelope sender and recipient of each message: `sieve-test -e`
//! prints them, mdeliver's `--sendmail` is a script here that writes them down). The scripts
//! cover every extension mdeliver claims (`mailkit::mda::sieve::EXTENSIONS`).

mod common;

use std::path::Path;
use std::process::Command;

/// A test message with its envelope.
struct Message {
    name: &'static str,
    sender: &'static str,
    recipient: &'static str,
    text: &'static str,
}

const MESSAGES: &[Message] = &[
    Message {
        name: "list",
        sender: "alice@example.test",
        recipient: "bob+lists@example.test",
        text:
            "Received: from mx1.example.test by mx2.example.test; Tue, 1 Dec 2026 10:00:00 +0000\n\
               Received: from a.other.test by mx1.example.test; Tue, 1 Dec 2026 09:59:00 +0000\n\
               From: Alice <alice@example.test>\n\
               To: bob+lists@example.test\n\
               List-Id: Rust users <rust.lists.example.test>\n\
               Subject: [rust] Release 1.0\n\
               Date: Tue, 1 Dec 2026 10:00:00 +0000\n\
               Message-ID: <list1@example.test>\n\
               \n\
               Hello world, the release is out.\n",
    },
    Message {
        name: "invoice",
        sender: "carol@other.test",
        recipient: "bob@example.test",
        text: "From: Carol <carol@other.test>\n\
               To: Bob <bob@example.test>\n\
               Subject: Invoice 42\n\
               Date: Sat, 14 Mar 2026 08:00:00 +0100\n\
               Message-ID: <inv42@other.test>\n\
               MIME-Version: 1.0\n\
               Content-Type: multipart/mixed; boundary=\"b1\"\n\
               \n\
               --b1\n\
               Content-Type: text/plain; charset=us-ascii\n\
               \n\
               Please pay invoice 42.\n\
               --b1\n\
               Content-Type: application/pdf; name=\"inv.pdf\"\n\
               Content-Transfer-Encoding: base64\n\
               \n\
               JVBERi0xLjQK\n\
               --b1--\n",
    },
    Message {
        name: "urgent",
        sender: "boss@example.test",
        recipient: "bob+work@example.test",
        text: "From: boss@example.test\n\
               To: bob+work@example.test\n\
               Cc: alice@example.test, carol@other.test\n\
               Subject: URGENT meeting\n\
               X-Spam-Score: 7\n\
               Message-ID: <urgent@example.test>\n\
               \n\
               Meeting at 10.\n",
    },
    // sieve-test takes no null sender (`-f ""` and `-f "<>"` are refused, and it reads a
    // `Return-Path: <>` header as no sender at all), so the bounce comes from MAILER-DAEMON.
    Message {
        name: "bounce",
        sender: "MAILER-DAEMON@example.test",
        recipient: "bob@example.test",
        text: "From: Mail Delivery System <MAILER-DAEMON@example.test>\n\
               To: bob@example.test\n\
               Subject: Undelivered Mail Returned to Sender\n\
               Auto-Submitted: auto-replied\n\
               Message-ID: <bounce@example.test>\n\
               \n\
               This is the mail system.\n",
    },
];

/// The scripts: core RFC 5228 and each claimed extension, with the interplay of keep, implicit
/// keep, discard, :copy and stop that RFC 5228 section 2.10 defines.
const SCRIPTS: &[(&str, &str)] = &[
    ("empty", ""),
    ("keep", "keep;\n"),
    ("discard", "discard;\n"),
    ("fileinto", "require \"fileinto\";\nfileinto \"X\";\n"),
    (
        "keep-then-fileinto-create",
        "require [\"fileinto\", \"mailbox\"];\nkeep;\nfileinto :create \"X\";\n",
    ),
    (
        "fileinto-create-then-keep",
        "require [\"fileinto\", \"mailbox\"];\nfileinto :create \"X\";\nkeep;\n",
    ),
    (
        "keep-then-fileinto",
        "require \"fileinto\";\nkeep;\nfileinto \"X\";\n",
    ),
    ("keep-then-discard", "keep;\ndiscard;\n"),
    (
        "fileinto-then-discard",
        "require \"fileinto\";\nfileinto \"X\";\ndiscard;\n",
    ),
    (
        "copy",
        "require [\"fileinto\", \"copy\"];\nfileinto :copy \"X\";\n",
    ),
    (
        "stop",
        "require \"fileinto\";\nfileinto \"A\";\nstop;\nfileinto \"B\";\n",
    ),
    (
        "same-folder-twice",
        "require \"fileinto\";\nfileinto \"A\";\nfileinto \"A\";\nkeep;\nfileinto \"INBOX\";\n",
    ),
    (
        "header-address-size-exists",
        "require \"fileinto\";\n\
         if header :contains \"subject\" \"release\" { fileinto \"Lists.Rust\"; }\n\
         elsif address :domain :is \"from\" \"other.test\" { fileinto \"Other\"; }\n\
         elsif allof (exists \"x-spam-score\", not size :over 1K) { fileinto \"Scored\"; }\n\
         elsif address :localpart :is \"from\" \"mailer-daemon\" { fileinto \"Daemon\"; }\n",
    ),
    (
        "anyof-address-all",
        "require \"fileinto\";\n\
         if anyof (address :all :is [\"to\", \"cc\"] \"alice@example.test\", header :is \"subject\" \"x\") { fileinto \"Alice\"; }\n",
    ),
    (
        "envelope",
        "require [\"envelope\", \"fileinto\"];\n\
         if envelope :localpart :is \"from\" \"mailer-daemon\" { fileinto \"Bounces\"; }\n\
         elsif envelope :domain :is \"from\" \"other.test\" { fileinto \"Other\"; }\n\
         elsif envelope :all :is \"to\" \"bob+work@example.test\" { fileinto \"Work\"; }\n",
    ),
    (
        "subaddress",
        "require [\"envelope\", \"subaddress\", \"fileinto\"];\n\
         if envelope :detail :is \"to\" \"lists\" { fileinto \"Lists\"; }\n\
         elsif envelope :user :is \"to\" \"bob\" { fileinto \"User\"; }\n",
    ),
    (
        "subaddress-variables",
        "require [\"envelope\", \"subaddress\", \"fileinto\", \"variables\"];\n\
         if envelope :matches :detail \"to\" \"*\" { set \"d\" \"${1}\"; fileinto \"D-${d}\"; }\n",
    ),
    (
        "body",
        "require [\"body\", \"fileinto\"];\n\
         if body :text :contains \"pay\" { fileinto \"Bills\"; }\n\
         elsif body :raw :contains \"meeting\" { fileinto \"Meet\"; }\n",
    ),
    (
        "body-content",
        "require [\"body\", \"fileinto\"];\n\
         if body :content \"application\" :contains \"\" { fileinto \"Attached\"; }\n",
    ),
    (
        "variables",
        "require [\"variables\", \"fileinto\"];\n\
         if header :matches \"subject\" \"[*] *\" { fileinto \"tag-${1}\"; }\n\
         set :lower \"s\" \"${0}\";\n",
    ),
    (
        "regex",
        "require [\"regex\", \"fileinto\", \"variables\"];\n\
         if header :regex \"subject\" \"^Invoice ([0-9]+)$\" { fileinto \"inv-${1}\"; }\n\
         elsif address :regex \"from\" \"^boss@\" { fileinto \"Boss\"; }\n",
    ),
    (
        "imap4flags-setflag-keep",
        "require \"imap4flags\";\nsetflag \"\\\\Seen\";\nkeep;\n",
    ),
    (
        "imap4flags-implicit",
        "require \"imap4flags\";\naddflag [\"\\\\Flagged\", \"\\\\Answered\"];\nremoveflag \"\\\\Answered\";\n",
    ),
    (
        "imap4flags-fileinto",
        "require [\"imap4flags\", \"fileinto\"];\n\
         fileinto :flags \"\\\\Seen \\\\Flagged\" \"F\";\n\
         if hasflag :contains \"\\\\Seen\" { fileinto \"G\"; }\n",
    ),
    (
        "imap4flags-keep-flags-then-fileinto",
        "require [\"imap4flags\", \"fileinto\"];\nkeep :flags \"\\\\Seen\";\nfileinto \"X\";\n",
    ),
    (
        "relational",
        "require [\"relational\", \"comparator-i;ascii-numeric\", \"fileinto\"];\n\
         if header :value \"ge\" :comparator \"i;ascii-numeric\" \"x-spam-score\" \"5\" { fileinto \"Spam\"; }\n\
         elsif header :count \"ge\" :comparator \"i;ascii-numeric\" \"received\" \"2\" { fileinto \"Hops\"; }\n",
    ),
    (
        "date",
        "require [\"date\", \"fileinto\", \"variables\", \"relational\"];\n\
         if date :matches :originalzone \"date\" \"year\" \"*\" { fileinto \"y${1}\"; }\n\
         if date :value \"lt\" :originalzone \"date\" \"date\" \"2026-06-01\" { fileinto \"Early\"; }\n",
    ),
    (
        "index",
        "require [\"index\", \"date\", \"fileinto\"];\n\
         if header :index 2 :contains \"received\" \"a.other.test\" { fileinto \"Second\"; }\n\
         if header :index 1 :last :contains \"received\" \"a.other.test\" { fileinto \"Last\"; }\n",
    ),
    (
        "mailboxexists",
        "require [\"mailbox\", \"fileinto\"];\n\
         if mailboxexists \"Nope\" { fileinto \"Yes\"; } else { fileinto \"No\"; }\n",
    ),
    (
        "encoded-character",
        "require [\"encoded-character\", \"fileinto\"];\nfileinto \"${hex:41 42}\";\n",
    ),
    (
        "editheader",
        "require [\"editheader\", \"fileinto\"];\n\
         addheader \"X-Filtered\" \"yes\";\n\
         if header :is \"x-filtered\" \"yes\" { fileinto \"Edited\"; }\n",
    ),
    (
        "mime-foreverypart",
        "require [\"mime\", \"foreverypart\", \"fileinto\"];\n\
         foreverypart { if header :mime :type :is \"content-type\" \"application\" { fileinto \"Attach\"; } }\n",
    ),
    ("redirect", "redirect \"dave@other.test\";\n"),
    ("redirect-then-keep", "redirect \"dave@other.test\";\nkeep;\n"),
    (
        "redirect-copy-fileinto",
        "require [\"copy\", \"fileinto\"];\nredirect :copy \"dave@other.test\";\nfileinto \"X\";\n",
    ),
    (
        "redirect-two-then-discard",
        "redirect \"dave@other.test\";\nredirect \"erin@other.test\";\ndiscard;\n",
    ),
    (
        "vacation",
        "require \"vacation\";\nvacation :days 3 :subject \"Away\" \"I am away.\";\n",
    ),
    (
        "vacation-addresses-handle-from",
        "require \"vacation\";\n\
         vacation :addresses [\"alice@example.test\"] :handle \"h1\" :from \"bob@example.test\" \"Away.\";\n",
    ),
    (
        "vacation-mime-fileinto",
        "require [\"vacation\", \"fileinto\"];\n\
         vacation :mime text:\nContent-Type: text/plain; charset=us-ascii\n\nAway.\n.\n;\nfileinto \"X\";\n",
    ),
    (
        "extracttext",
        "require [\"mime\", \"foreverypart\", \"extracttext\", \"variables\", \"fileinto\"];\n\
         foreverypart { if header :mime :subtype :is \"content-type\" \"plain\" { extracttext :first 6 \"t\"; fileinto \"t-${t}\"; } }\n",
    ),
];

/// What a run sent: (envelope sender with angle brackets, recipient) per message, sorted.
type Sent = Vec<(String, String)>;

/// Where copies landed: (folder, system flags) per stored file, sorted. INBOX is "INBOX",
/// `.Name` is "Name"; flags are the upper-case letters of the `:2,` info (keywords, lower case
/// in Dovecot's names, are not compared: mdeliver does not store them).
fn landed(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![("INBOX".to_string(), root.to_path_buf())];
    dirs.extend(
        folders(root)
            .into_iter()
            .map(|f| (f.clone(), root.join(format!(".{f}")))),
    );
    for (folder, dir) in dirs {
        for sub in ["new", "cur"] {
            let Ok(rd) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let mut flags: Vec<char> = name
                    .split_once(":2,")
                    .map(|(_, f)| f.chars().filter(char::is_ascii_uppercase).collect())
                    .unwrap_or_default();
                flags.sort_unstable();
                out.push((folder.clone(), flags.into_iter().collect()));
            }
        }
    }
    out.sort();
    out
}

/// The Maildir++ folders (names without the leading dot) under `root`.
fn folders(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(f) = name.strip_prefix('.') {
                if e.path().is_dir() && !f.is_empty() {
                    out.push(f.to_string());
                }
            }
        }
    }
    out
}

/// Dovecot settings for `sieve-test`: mail stored as nobody, and the claimed extensions
/// Pigeonhole leaves off by default enabled.
fn dovecot_conf(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("dovecot.conf");
    std::fs::write(
        &p,
        "mail_uid = nobody\nmail_gid = nogroup\nfirst_valid_uid = 1\nfirst_valid_gid = 1\n\
         protocols =\n\
         plugin {\n  sieve_extensions = +editheader\n}\n",
    )
    .unwrap();
    p
}

/// Runs `script` over `msg` through `sieve-test -e` into a fresh Maildir under `dir`, where the
/// folders in `folders` already exist.
fn pigeonhole(
    dir: &Path,
    conf: &Path,
    script: &Path,
    msg: &Message,
    folders: &[String],
) -> (Vec<(String, String)>, Sent) {
    let md = dir.join("pigeonhole");
    for f in std::iter::once(String::new()).chain(folders.iter().map(|f| format!(".{f}"))) {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(md.join(&f).join(sub)).unwrap();
        }
        if !f.is_empty() {
            std::fs::write(md.join(&f).join("maildirfolder"), b"").unwrap();
        }
    }
    let eml = dir.join("msg.eml");
    std::fs::write(&eml, msg.text).unwrap();
    common::give_to_nobody(dir);
    let out = common::run_with_input(
        Command::new("sieve-test")
            .arg("-c")
            .arg(conf)
            .args([
                "-C",
                "-e",
                "-f",
                msg.sender,
                "-a",
                msg.recipient,
                "-r",
                msg.recipient,
            ])
            .arg("-l")
            .arg(format!("maildir:{}", md.display()))
            .arg(script)
            .arg(&eml),
        b"",
    );
    assert!(
        out.status.success(),
        "sieve-test failed (is dovecot-sieve installed? tests/peers/install.sh): {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // `sieve-test -e` logs "sending message from <S>:" for each message it would send and
    // ends with a "RECIPIENT: R" block for each, in the same order.
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let senders = text.lines().filter_map(|l| {
        l.split_once("sending message from ")
            .map(|(_, s)| s.trim_end_matches(':').to_string())
    });
    let recipients = text
        .lines()
        .filter_map(|l| l.strip_prefix("RECIPIENT: ").map(str::to_string));
    let mut sent: Sent = senders.zip(recipients).collect();
    sent.sort();
    (landed(&md), sent)
}

/// Runs `script` over `msg` through mdeliver into a fresh Maildir under `dir`, with a
/// `--sendmail` that writes down each submission's envelope (`-i -f SENDER -- RECIPIENT`).
fn mdeliver(dir: &Path, script: &Path, msg: &Message) -> (Vec<(String, String)>, Sent, String) {
    let md = dir.join("mdeliver");
    let log = dir.join("sent.log");
    let sendmail = dir.join("sendmail");
    std::fs::write(
        &sendmail,
        format!(
            "#!/bin/sh\ncase \"$3\" in '<>') f='<>';; *) f=\"<$3>\";; esac\n\
             echo \"$f $5\" >> '{}'\ncat > /dev/null\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &sendmail,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = common::run_with_input(
        Command::new(common::bin("mdeliver"))
            .env_remove("MAILDIR")
            .env_remove("SENDER")
            .env_remove("RECIPIENT")
            .args(["-f", msg.sender, "-d", msg.recipient, "--sieve"])
            .arg(script)
            .arg("--sendmail")
            .arg(&sendmail)
            .arg(&md),
        msg.text.as_bytes(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mdeliver failed: {stderr}");
    let mut sent: Sent = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(f, r)| (f.to_string(), r.to_string()))
        .collect();
    sent.sort();
    (landed(&md), sent, stderr)
}

#[test]
fn mdeliver_lands_messages_where_pigeonhole_does() {
    let t = common::scratch();
    let conf = dovecot_conf(t.path());
    let mut disagreements = Vec::new();
    let mut runs = 0;
    for (sname, script) in SCRIPTS {
        let mut sending = 0;
        for msg in MESSAGES {
            let dir = t.path().join(format!("{sname}.{}", msg.name));
            std::fs::create_dir(&dir).unwrap();
            let sfile = dir.join("s.sieve");
            std::fs::write(&sfile, script).unwrap();
            let (ours, our_sent, warnings) = mdeliver(&dir, &sfile, msg);
            // mdeliver creates a missing folder on `fileinto`, sieve-test falls back to INBOX
            // (RFC 5228 section 4.1 allows either): Pigeonhole gets the folders mdeliver made.
            let folders = folders(&dir.join("mdeliver"));
            let (theirs, their_sent) = pigeonhole(&dir, &conf, &sfile, msg, &folders);
            assert!(
                !theirs.is_empty() || script.contains("discard") || script.contains("redirect"),
                "{sname}"
            );
            if ours != theirs || our_sent != their_sent {
                disagreements.push(format!(
                    "{sname} × {}: mdeliver {ours:?} sent {our_sent:?}, pigeonhole {theirs:?} sent {their_sent:?} {warnings}",
                    msg.name
                ));
            }
            sending += usize::from(!their_sent.is_empty());
            runs += 1;
        }
        // a sending script sends for some message, and a vacation script not for every one
        // (the list and the bounce are never answered)
        if script.contains("redirect") {
            assert_eq!(sending, MESSAGES.len(), "{sname}");
        } else if script.contains("vacation") {
            assert!(
                sending > 0 && sending < MESSAGES.len(),
                "{sname}: {sending}"
            );
        }
    }
    assert_eq!(runs, SCRIPTS.len() * MESSAGES.len());
    assert!(
        disagreements.is_empty(),
        "{} of {runs} runs disagree:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}

/// Every extension mdeliver claims is exercised by a script above, so a new claim needs a case.
#[test]
fn every_claimed_extension_is_compared() {
    for ext in mailkit::mda::sieve::EXTENSIONS {
        let quoted = format!("\"{ext}\"");
        let covered = SCRIPTS.iter().any(|(_, s)| s.contains(&quoted))
            || matches!(*ext, "comparator-i;octet" | "comparator-i;ascii-casemap");
        assert!(covered, "no reference case requires {ext}");
    }
}

/// The man page lists exactly what mdeliver claims.
#[test]
fn man_page_lists_every_claimed_extension() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/mdeliver.1"))
        .unwrap()
        .replace("\\-", "-");
    for ext in mailkit::mda::sieve::EXTENSIONS {
        assert!(page.contains(ext), "man/mdeliver.1 does not list {ext}");
    }
}
