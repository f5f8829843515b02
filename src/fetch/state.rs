//! The per-account state file of mfetch: what has been fetched, so nothing is fetched twice
//! and nothing is deleted on the server before its copy is durable.
//!
//! One file per account, `<name>.state` in the state directory, locked (`flock` on
//! `<name>.lock`) for the whole run so two mfetch processes never fetch one account at once
//! (the second exits 75). Text, one record per line, fields separated by tabs, `%`, tab, CR
//! and LF inside a field written as `%XX`:
//!
//! ```text
//! mfetch-state 1
//! P  <uidl>  <size>  <message-id>                         POP3: one fetched message
//! I  <folder>  <uidvalidity>  <uid>  <size>  <message-id>  IMAP: one fetched message
//! F  <folder>  <uidvalidity>  <uidnext>                    IMAP: a folder fully fetched up to
//! ```
//! (an empty Message-ID field: the message had none). The file is rewritten whole and
//! atomically ([`crate::durable::replace`]) when the run starts and when it ends (pruned of
//! what the server no longer has); in between each durable delivery appends its one line and
//! `fdatasync`s it before anything else happens (the message's deletion on the server among
//! them). A line cut short by a crash has no line end and is ignored; the rewrite at the next
//! start drops it, so later appends never join it. A lost last line costs nothing: the copy in
//! the Maildir carries the same key in its name (see [`super::dest`]) and is found there.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use rustix::fs::OFlags;

use crate::durable;
use crate::fsroot::Dir;

/// First line of the file.
const MAGIC: &str = "mfetch-state 1";
/// Mode of the state and lock files (the account's history is private).
const MODE: u32 = 0o600;

/// What is remembered of one fetched message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// RFC 822 size as the server counts it (CRLF).
    pub size: u64,
    /// Its Message-ID, for resynchronisation (`None`: it had none).
    pub message_id: Option<String>,
}

/// An IMAP message's key: folder, UIDVALIDITY, UID.
type ImapKey = (String, u32, u32);

/// The state of one account, locked while it lives.
#[derive(Debug)]
pub struct State {
    dir: Dir,
    name: String,
    log: File,
    _lock: File,
    pop: HashMap<String, Record>,
    imap: HashMap<ImapKey, Record>,
    folders: HashMap<String, (u32, u32)>,
}

/// `%`, tab, CR, LF as `%XX`.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '\t' | '\r' | '\n' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn dec(s: &str) -> String {
    super::account::percent_decode(s)
}

fn msgid_field(m: &Option<String>) -> String {
    m.as_deref().map(enc).unwrap_or_default()
}

fn msgid_of(f: &str) -> Option<String> {
    (!f.is_empty()).then(|| dec(f))
}

impl State {
    /// Opens (creating the directory and file when missing) and locks the state of account
    /// `name` (a file name: the caller makes it safe). Another process holding the lock is an
    /// error of kind `WouldBlock`.
    pub fn open(dir: &Path, name: &str) -> io::Result<State> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let dir = Dir::open_root_following(dir)?;
        let lock = dir.open_lock(format!("{name}.lock"), MODE)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("another mfetch is fetching account {name}"),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let file = format!("{name}.state");
        let text = match dir.open_read(&file) {
            Ok(mut f) => {
                let mut s = String::new();
                io::Read::read_to_string(&mut f, &mut s)?;
                s
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut st = State {
            log: dir.open_file(
                &file,
                OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND,
                MODE,
            )?,
            dir,
            name: name.to_string(),
            _lock: lock,
            pop: HashMap::new(),
            imap: HashMap::new(),
            folders: HashMap::new(),
        };
        st.parse(&text)?;
        st.rewrite()?;
        Ok(st)
    }

    fn parse(&mut self, text: &str) -> io::Result<()> {
        let mut lines = text.split_inclusive('\n');
        match lines.next() {
            None => return Ok(()),
            Some(l) if l.trim_end() == MAGIC => {}
            Some(l) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "state file {}: not an mfetch state file (first line {:?})",
                        self.path_shown(),
                        l.trim_end()
                    ),
                ))
            }
        }
        for line in lines {
            // A line without its line end was cut short by a crash.
            let Some(line) = line.strip_suffix('\n') else {
                continue;
            };
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["P", uidl, size, mid] => {
                    if let Ok(size) = size.parse() {
                        self.pop.insert(
                            dec(uidl),
                            Record {
                                size,
                                message_id: msgid_of(mid),
                            },
                        );
                    }
                }
                ["I", folder, v, uid, size, mid] => {
                    if let (Ok(v), Ok(uid), Ok(size)) = (v.parse(), uid.parse(), size.parse()) {
                        self.imap.insert(
                            (dec(folder), v, uid),
                            Record {
                                size,
                                message_id: msgid_of(mid),
                            },
                        );
                    }
                }
                ["F", folder, v, next] => {
                    if let (Ok(v), Ok(next)) = (v.parse(), next.parse()) {
                        self.folders.insert(dec(folder), (v, next));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn path_shown(&self) -> String {
        self.dir
            .path()
            .join(format!("{}.state", self.name))
            .display()
            .to_string()
    }

    /// Writes the whole state atomically (temporary file, fsync, rename, fsync directory).
    fn rewrite(&mut self) -> io::Result<()> {
        let mut text = String::from(MAGIC);
        text.push('\n');
        let mut pop: Vec<_> = self.pop.iter().collect();
        pop.sort_by(|a, b| a.0.cmp(b.0));
        for (uidl, r) in pop {
            text.push_str(&format!(
                "P\t{}\t{}\t{}\n",
                enc(uidl),
                r.size,
                msgid_field(&r.message_id)
            ));
        }
        let mut imap: Vec<_> = self.imap.iter().collect();
        imap.sort_by(|a, b| a.0.cmp(b.0));
        for ((folder, v, uid), r) in imap {
            text.push_str(&format!(
                "I\t{}\t{v}\t{uid}\t{}\t{}\n",
                enc(folder),
                r.size,
                msgid_field(&r.message_id)
            ));
        }
        let mut folders: Vec<_> = self.folders.iter().collect();
        folders.sort();
        for (folder, (v, next)) in folders {
            text.push_str(&format!("F\t{}\t{v}\t{next}\n", enc(folder)));
        }
        let file = format!("{}.state", self.name);
        durable::replace(&self.dir, ".tmp-", &self.dir, &file, text.as_bytes(), MODE)?;
        // The old file's append handle points at the replaced inode: reopen.
        self.log = self
            .dir
            .open_file(&file, OFlags::WRONLY | OFlags::APPEND, MODE)?;
        Ok(())
    }

    fn append(&mut self, line: &str) -> io::Result<()> {
        self.log.write_all(line.as_bytes())?;
        self.log.sync_data()
    }

    /// Whether POP3 message `uidl` was fetched.
    pub fn has_pop(&self, uidl: &str) -> bool {
        self.pop.contains_key(uidl)
    }

    /// Whether a POP3 message with this Message-ID and size was fetched (the fallback key of a
    /// server without UIDL).
    pub fn pop_by_message_id(&self, message_id: &str, size: u64) -> bool {
        self.pop
            .values()
            .any(|r| r.size == size && r.message_id.as_deref() == Some(message_id))
    }

    /// Records POP3 message `uidl` as durably delivered (appended and synced).
    pub fn record_pop(&mut self, uidl: &str, r: Record) -> io::Result<()> {
        let line = format!(
            "P\t{}\t{}\t{}\n",
            enc(uidl),
            r.size,
            msgid_field(&r.message_id)
        );
        self.append(&line)?;
        self.pop.insert(uidl.to_string(), r);
        Ok(())
    }

    /// Forgets the POP3 messages the server no longer has, and writes the state.
    pub fn finish_pop(&mut self, on_server: &HashSet<String>) -> io::Result<()> {
        self.pop.retain(|k, _| on_server.contains(k));
        self.rewrite()
    }

    /// Whether IMAP message `uid` of `folder` under `uidvalidity` was fetched.
    pub fn has_imap(&self, folder: &str, uidvalidity: u32, uid: u32) -> bool {
        self.imap
            .contains_key(&(folder.to_string(), uidvalidity, uid))
    }

    /// Whether a message of `folder` with this Message-ID and size was fetched under any
    /// UIDVALIDITY (resynchronisation after a UIDVALIDITY change).
    pub fn imap_by_message_id(&self, folder: &str, message_id: &str, size: u64) -> bool {
        self.imap.iter().any(|((f, _, _), r)| {
            f == folder && r.size == size && r.message_id.as_deref() == Some(message_id)
        })
    }

    /// The UIDVALIDITY the state knows for `folder`, from its records or its last `F` line.
    pub fn imap_uidvalidity(&self, folder: &str) -> Option<u32> {
        self.folders.get(folder).map(|f| f.0).or_else(|| {
            self.imap
                .keys()
                .find(|(f, _, _)| f == folder)
                .map(|(_, v, _)| *v)
        })
    }

    /// Whether the state knows messages of `folder` under another UIDVALIDITY than
    /// `uidvalidity` (RFC 3501 §2.3.1.1: the server renumbered the folder, so those are found
    /// again by Message-ID and size).
    pub fn imap_other_uidvalidity(&self, folder: &str, uidvalidity: u32) -> bool {
        self.imap
            .keys()
            .any(|(f, v, _)| f == folder && *v != uidvalidity)
    }

    /// The (UIDVALIDITY, UIDNEXT) `folder` was fully fetched up to.
    pub fn imap_folder(&self, folder: &str) -> Option<(u32, u32)> {
        self.folders.get(folder).copied()
    }

    /// Records IMAP message `uid` as durably delivered (appended and synced).
    pub fn record_imap(
        &mut self,
        folder: &str,
        uidvalidity: u32,
        uid: u32,
        r: Record,
    ) -> io::Result<()> {
        let line = format!(
            "I\t{}\t{uidvalidity}\t{uid}\t{}\t{}\n",
            enc(folder),
            r.size,
            msgid_field(&r.message_id)
        );
        self.append(&line)?;
        self.imap.insert((folder.to_string(), uidvalidity, uid), r);
        Ok(())
    }

    /// Records that `folder` was fetched completely up to `uidnext` (appended and synced).
    pub fn record_folder(
        &mut self,
        folder: &str,
        uidvalidity: u32,
        uidnext: u32,
    ) -> io::Result<()> {
        self.append(&format!("F\t{}\t{uidvalidity}\t{uidnext}\n", enc(folder)))?;
        self.folders
            .insert(folder.to_string(), (uidvalidity, uidnext));
        Ok(())
    }

    /// Forgets the messages of `folder` the server no longer has: those of another
    /// UIDVALIDITY than the current one (once resynchronised) and UIDs not in `on_server`.
    pub fn prune_imap(&mut self, folder: &str, uidvalidity: u32, on_server: &HashSet<u32>) {
        self.imap
            .retain(|(f, v, uid), _| f != folder || (*v == uidvalidity && on_server.contains(uid)));
    }

    /// Writes the state (at the end of a run).
    pub fn finish(&mut self) -> io::Result<()> {
        self.rewrite()
    }
}

use std::os::unix::fs::DirBuilderExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_a_torn_line_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        {
            let mut s = State::open(d.path(), "acct").unwrap();
            s.record_pop(
                "u1",
                Record {
                    size: 10,
                    message_id: Some("<a@b>".into()),
                },
            )
            .unwrap();
            s.record_imap(
                "INBOX\tx%",
                7,
                3,
                Record {
                    size: 5,
                    message_id: None,
                },
            )
            .unwrap();
            s.record_folder("INBOX\tx%", 7, 4).unwrap();
            // A second process is refused while this one holds the lock.
            let e = State::open(d.path(), "acct").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
        let path = d.path().join("acct.state");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"P\tu2\t1").unwrap();
        drop(f);
        let mut s = State::open(d.path(), "acct").unwrap();
        assert!(s.has_pop("u1") && !s.has_pop("u2"));
        assert!(s.pop_by_message_id("<a@b>", 10));
        assert!(s.has_imap("INBOX\tx%", 7, 3));
        assert_eq!(s.imap_folder("INBOX\tx%"), Some((7, 4)));
        assert!(!std::fs::read_to_string(&path).unwrap().contains("u2"));
        s.finish_pop(&HashSet::new()).unwrap();
        s.prune_imap("INBOX\tx%", 8, &HashSet::new());
        s.finish().unwrap();
        drop(s);
        let s = State::open(d.path(), "acct").unwrap();
        assert!(!s.has_pop("u1") && !s.has_imap("INBOX\tx%", 7, 3));
        std::fs::write(&path, "something else\n").unwrap();
        drop(s);
        assert_eq!(
            State::open(d.path(), "acct").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
