//! IMAP UIDs for a Maildir++ folder: the per-folder uid list and keywords file mimapd keeps,
//! and [`View`], a folder's messages in UID order.
//!
//! RFC 3501 §2.3.1.1: every message has a 32-bit UID, strictly ascending in arrival order and
//! never reused within one UIDVALIDITY; UIDVALIDITY changes only when UIDs cannot be kept, and
//! then to a greater value. Maildir has no UIDs, so each folder (the INBOX root, or `.A.B/`)
//! keeps two files of its own next to `cur/`; the unique part of a message's file name (the
//! *base name*, before `:2,`) is its key, so flag renames and the move from `new/` to `cur/`
//! (by mimapd, mpopd or mutt) keep its UID.
//!
//! # Files
//! `mailkit-uidlist` ([`UIDLIST_FILE`]), text, one record a line, every line ending in `\n`:
//! ```text
//! mailkit-uidlist 1 V<uidvalidity> N<uidnext>
//! <uid> <base name>
//! ...
//! end <number of records>
//! ```
//! Numbers are decimal without leading zeros; UIDs are strictly increasing, nonzero and below
//! UIDNEXT; base names are printable ASCII without space, `/` or `:`, each once. The trailer
//! makes a truncated file detectable. Anything else is corrupt ([`format::UidList::parse`]).
//! A message file whose base name could not be written there (a space, non-ASCII) gets no UID
//! and is not in the view.
//! This is our own format, not Dovecot's `dovecot-uidlist` (see the note at the end).
//!
//! `mailkit-keywords` ([`KEYWORDS_FILE`]): IMAP keywords (flags other than the system flags,
//! RFC 3501 §2.3.2) stored in a file name's info as the lower case letters `a`–`z`, as Dovecot
//! does with its `dovecot-keywords`:
//! ```text
//! mailkit-keywords 1
//! <letter> <keyword>
//! end <number of records>
//! ```
//! A keyword is an IMAP atom not starting with `\`; letters and keywords each appear once.
//!
//! `mailkit-uidlist.lock` ([`LOCK_FILE`]): the file whose `flock(2)` every writer of either
//! file holds while it reads, decides and writes, and while it renames a message file to change
//! its flags; the kernel drops it when a process dies, so no lock is ever stale. It holds one
//! line, `V<uidvalidity>\n`: the last UIDVALIDITY given out, written and fsynced in place
//! before a list with a new UIDVALIDITY is, so a list lost or damaged beyond its header still
//! gets a greater one ([`Lock::recorded_validity`]; unreadable content is ignored). Readers need
//! no lock: both files are only ever replaced whole by rename ([`crate::durable::replace`]: a new
//! file `O_EXCL` under a random name, fsynced, renamed over the old one, the folder fsynced), so
//! a reader sees the old list or the new one.
//!
//! # Symlinks
//! The folder belongs to its user, who may plant symlinks: all three files are opened through
//! the folder's [`crate::fsroot::Dir`] with `O_NOFOLLOW` (and `O_NONBLOCK`, so a planted FIFO
//! cannot hang a reader). A symlink (or anything but a regular file) at the list or the keywords
//! file is treated as a corrupt file and replaced by the rename, which replaces the link itself;
//! at the lock file it is an error ("symlink in path"), since a lock cannot be taken on it.
//!
//! # Syncing a view
//! [`View::open`] and [`View::sync`], under the lock: read the list (missing or corrupt: a new,
//! greater UIDVALIDITY as the crash states below say, and fresh UIDs from 1), move `new/` messages to `cur/` without flags (as
//! mpopd does) and fsync, list `new/` then `cur/` ([`super::Maildir::list_all`]: a message moved
//! in between is seen once), keep the UID of every base name still there, drop the records of
//! the others (expunged; a message that reappears later gets a new UID, never its old one),
//! give each new message UIDNEXT in arrival order (mtime, then name), and when anything changed
//! write the list durably *before* the lock is released and any UID is returned. Since a
//! readdir can miss a file that another program (mutt) renames during the scan, a record whose
//! base name was not found makes the scan run once more before it is dropped. When UIDNEXT
//! would pass 2^32−1 the folder is renumbered under a new UIDVALIDITY.
//!
//! # Crash states
//! What a crash (of the process or the machine) at each step leaves, and why it is safe:
//! - While moving `new/` to `cur/` or renaming for flags: each message has its old or new name;
//!   the base name is the same, so the UID is too. A flag change not yet fsynced may be lost,
//!   but it was not acknowledged either ([`View::set_flags`] returns after the fsync).
//! - While writing the new list's temporary file: the old list is intact; the temporary
//!   `mailkit-uidlist.<pid>.<random>` is left behind (never read, harmless). The UIDs that were
//!   being assigned were reported to nobody, so assigning them again (maybe to other messages)
//!   breaks no client's cache.
//! - After the rename, before the folder's fsync returned: after a machine crash the list is the
//!   old or the new one. The writer still holds the lock and has returned nothing, and every
//!   [`View`] reads the list only under the lock, so no UID from an undurable list reaches a
//!   client. ([`read_unlocked`] could see it during that fsync, which is why UIDs it returns are
//!   not for clients.)
//! - A list damaged some other way (disk error, an edit): the trailer or the strict grammar
//!   catches it, and RFC 3501 §2.3.1.1's rule applies: UIDs could not be kept, so UIDVALIDITY
//!   grows and clients refetch. A lost list likewise. The new UIDVALIDITY is the current time
//!   or, when that is not greater, one more than the damaged list's header or the lock file's
//!   record. A crash after the record is written and before the list is leaves a record that
//!   was never used: the next value is greater still, which is all §2.3.1.1 asks. Only with
//!   the list *and* the lock file lost does it rest on the clock alone.
//! - A damaged or lost keywords file: keyword names are lost (their letters stay on the
//!   files), and no letter found on a message file is ever given to another keyword, so a letter
//!   never changes its meaning.
//!
//! # Not Dovecot's format
//! Dovecot's `dovecot-uidlist` (version 3, its dotlock, records appended in place, header fields
//! like the mailbox GUID that must be preserved) is not read or written here; the parser and
//! serialiser are in [`mod@format`] alone, and the lock in [`lock`], so that a Dovecot-compatible
//! list replaces them without touching [`View`]. Issue 13 asks for exactly that (Dovecot and
//! mimapd on one Maildir) and for dotlocks, since `flock(2)` does not lock across the hosts of a
//! network filesystem; the `flock` here serves one host.

pub mod format;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};

use std::io::{Seek, SeekFrom, Write};

use rustix::fs::OFlags;
use rustix::io::Errno;

use super::{Entry, Flags, Maildir, Sub, FILE_MODE};
use crate::durable;
use crate::fsroot::{is_refusal, Dir};
pub use format::{Corrupt, Keywords, UidList};

/// The uid list's file name in the folder's directory.
pub const UIDLIST_FILE: &str = "mailkit-uidlist";
/// The keywords file's name.
pub const KEYWORDS_FILE: &str = "mailkit-keywords";
/// The lock file's name.
pub const LOCK_FILE: &str = "mailkit-uidlist.lock";
/// Largest UID handed out; past it the folder is renumbered under a new UIDVALIDITY.
pub const MAX_UID: u32 = u32::MAX - 1;

/// The folder's lock, held until dropped (the kernel releases it when the file is closed).
/// The file also records the last UIDVALIDITY given out (`V<n>\n`), so that a list lost or
/// damaged beyond its header still gets a greater one (RFC 3501 §2.3.1.1).
#[derive(Debug)]
pub struct Lock {
    file: File,
}

impl Lock {
    /// The UIDVALIDITY recorded in the lock file, if it holds a readable one.
    pub fn recorded_validity(&mut self) -> Option<u32> {
        let mut text = String::new();
        self.file.seek(SeekFrom::Start(0)).ok()?;
        (&self.file).take(32).read_to_string(&mut text).ok()?;
        let v: u32 = text.strip_prefix('V')?.strip_suffix('\n')?.parse().ok()?;
        Some(v)
    }

    /// Records `validity` in the lock file, durably (before a list using it is written).
    pub fn record_validity(&mut self, validity: u32) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(format!("V{validity}\n").as_bytes())?;
        self.file.sync_all()
    }
}

/// Takes the folder's lock, waiting for another holder (see the module doc). A symlink or a
/// non-regular file at [`LOCK_FILE`] is an error.
pub fn lock(dir: &Dir) -> io::Result<Lock> {
    let file = dir.open_lock(LOCK_FILE, FILE_MODE)?;
    file.lock()?;
    Ok(Lock { file })
}

/// What reading one of the two files found.
enum Loaded<T> {
    Ok(T),
    Missing,
    Corrupt(Corrupt),
}

/// Reads file `name` in `dir` whole: missing, or its bytes; a symlink or a non-regular file is
/// reported as corrupt.
fn read_file(dir: &Dir, name: &str) -> io::Result<Option<Result<Vec<u8>, Corrupt>>> {
    let not_regular = Corrupt {
        reason: "not a regular file",
        validity: None,
    };
    let mut f = match dir.open_file(name, OFlags::RDONLY | OFlags::NONBLOCK, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // O_NOFOLLOW on a symlink: ELOOP.
        Err(e) if is_refusal(&e) || e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
            return Ok(Some(Err(not_regular)))
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Ok(Some(Err(not_regular)));
    }
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    Ok(Some(Ok(data)))
}

/// Reads and parses file `name`.
fn load<T>(dir: &Dir, name: &str, parse: fn(&[u8]) -> Result<T, Corrupt>) -> io::Result<Loaded<T>> {
    Ok(match read_file(dir, name)? {
        None => Loaded::Missing,
        Some(Err(c)) => Loaded::Corrupt(c),
        Some(Ok(data)) => match parse(&data) {
            Ok(t) => Loaded::Ok(t),
            Err(c) => Loaded::Corrupt(c),
        },
    })
}

/// A UIDVALIDITY for a list that could not be kept: the current time (as Dovecot picks it),
/// but greater than each of `old` (the damaged list's, the one the lock file recorded) known.
fn new_validity(old: &[Option<u32>]) -> u32 {
    let now = u32::try_from(crate::clock::now()).unwrap_or(u32::MAX);
    old.iter()
        .flatten()
        .map(|v| v.saturating_add(1))
        .fold(now.max(1), u32::max)
}

/// Replaces file `name` in `dir` with `bytes` durably (temporary file in the same directory).
fn store(dir: &Dir, name: &str, bytes: &[u8]) -> io::Result<()> {
    durable::replace(dir, name, dir, name, bytes, FILE_MODE)
}

/// The folder's uid list as it is on disk, read without the lock (for a quick look such as
/// IMAP STATUS; the file is only ever replaced whole, so this is the old or the new list, never a
/// mix). None when it is missing or corrupt; [`View::open`] then makes a new one. UIDs from here
/// may be from a list whose rename is not yet durable: [`View`] is what reports UIDs.
pub fn read_unlocked(maildir: &Maildir) -> io::Result<Option<UidList>> {
    Ok(
        match load(maildir.root_dir(), UIDLIST_FILE, UidList::parse)? {
            Loaded::Ok(l) => Some(l),
            Loaded::Missing | Loaded::Corrupt(_) => None,
        },
    )
}

/// One message of a [`View`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its UID.
    pub uid: u32,
    /// Its file as last seen (base name in `unique`, flags, size, RFC 822 size, mtime).
    pub entry: Entry,
}

impl Message {
    /// The base name (the file name before `:2,`), the uid list's key.
    pub fn base(&self) -> &str {
        &self.entry.unique
    }

    /// The flags of the file name's info (system flags upper case, keywords `a`–`z`).
    pub fn flags(&self) -> &Flags {
        &self.entry.flags
    }

    /// Size in bytes on disk.
    pub fn size(&self) -> u64 {
        self.entry.size
    }
}

/// A folder's messages with their UIDs, as of the last sync (see the module doc).
#[derive(Debug)]
pub struct View {
    maildir: Maildir,
    validity: u32,
    next: u32,
    messages: Vec<Message>,
    keywords: Keywords,
}

impl View {
    /// Syncs the folder `maildir` (the INBOX or a [`Maildir::folder`]) and returns its view.
    pub fn open(maildir: &Maildir) -> io::Result<View> {
        let mut view = View {
            maildir: maildir.clone(),
            validity: 0,
            next: 1,
            messages: Vec::new(),
            keywords: Keywords::new(),
        };
        view.sync()?;
        Ok(view)
    }

    /// Rescans the folder: new messages get UIDs, expunged ones go (see the module doc).
    pub fn sync(&mut self) -> io::Result<()> {
        let dir = self.maildir.root_dir();
        let mut lock = lock(dir)?;
        let (mut list, mut dirty) = match load(dir, UIDLIST_FILE, UidList::parse)? {
            Loaded::Ok(l) => (l, false),
            Loaded::Missing => (
                UidList::fresh(new_validity(&[lock.recorded_validity()])),
                true,
            ),
            Loaded::Corrupt(c) => {
                let v = new_validity(&[c.validity, lock.recorded_validity()]);
                (UidList::fresh(v), true)
            }
        };
        let mut validity_changed = dirty;
        self.keywords = match load(dir, KEYWORDS_FILE, Keywords::parse)? {
            Loaded::Ok(k) => k,
            Loaded::Missing | Loaded::Corrupt(_) => Keywords::new(),
        };
        let mut moved = false;
        for e in self.maildir.list(Sub::New)? {
            match self.maildir.move_to_cur(&e, &e.flags) {
                Ok(_) => moved = true,
                // Moved or expunged by another reader meanwhile: the listing below finds it.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err),
            }
        }
        if moved {
            self.maildir.sync()?;
        }
        let mut found: HashMap<String, Entry> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut scan = |found: &mut HashMap<String, Entry>| -> io::Result<()> {
            for e in self.maildir.list_all()? {
                if !found.contains_key(&e.unique) {
                    order.push(e.unique.clone());
                    found.insert(e.unique.clone(), e);
                }
            }
            Ok(())
        };
        scan(&mut found)?;
        if list.records.iter().any(|(_, b)| !found.contains_key(b)) {
            scan(&mut found)?;
        }
        let known: HashSet<String> = list.records.iter().map(|(_, b)| b.clone()).collect();
        let before = list.records.len();
        list.records.retain(|(_, b)| found.contains_key(b));
        dirty |= list.records.len() != before;
        let mut fresh: Vec<&Entry> = order
            .iter()
            .filter(|b| !known.contains(*b))
            .filter_map(|b| found.get(b))
            .filter(|e| format::valid_base(&e.unique))
            .collect();
        fresh.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.name.cmp(&b.name)));
        if !fresh.is_empty() {
            dirty = true;
            if u64::from(list.next) + fresh.len() as u64 > u64::from(MAX_UID) + 1 {
                // RFC 3501 §2.3.1.1: the UIDs cannot be kept; renumber under a new UIDVALIDITY.
                let v = new_validity(&[Some(list.validity), lock.recorded_validity()]);
                let mut renumbered = UidList::fresh(v);
                validity_changed = true;
                for (_, b) in list.records.drain(..) {
                    renumbered.records.push((renumbered.next, b));
                    renumbered.next += 1;
                }
                list = renumbered;
            }
            for e in fresh {
                list.records.push((list.next, e.unique.clone()));
                list.next += 1;
            }
        }
        if validity_changed {
            lock.record_validity(list.validity)?;
        }
        if dirty {
            store(dir, UIDLIST_FILE, &list.serialise())?;
        }
        self.validity = list.validity;
        self.next = list.next;
        self.messages = list
            .records
            .into_iter()
            .filter_map(|(uid, b)| {
                Some(Message {
                    uid,
                    entry: found.remove(&b)?,
                })
            })
            .collect();
        Ok(())
    }

    /// UIDVALIDITY (RFC 3501 §2.3.1.1).
    pub fn uid_validity(&self) -> u32 {
        self.validity
    }

    /// UIDNEXT: the UID the next new message will get (at least).
    pub fn uid_next(&self) -> u32 {
        self.next
    }

    /// The messages in UID order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The message with UID `uid`.
    pub fn get(&self, uid: u32) -> Option<&Message> {
        let i = self.messages.binary_search_by_key(&uid, |m| m.uid).ok()?;
        self.messages.get(i)
    }

    /// The folder's keywords as of the last sync or assignment.
    pub fn keywords(&self) -> &Keywords {
        &self.keywords
    }

    /// The Maildir this view is of.
    pub fn maildir(&self) -> &Maildir {
        &self.maildir
    }

    /// Sets the flags of message `uid` to `flags` (system flags and keyword letters): renames
    /// its file's info to `:2,<flags>` under the lock and fsyncs, so it is durable when this
    /// returns. Ok(false) when the message is no longer there (expunged by another process).
    pub fn set_flags(&mut self, uid: u32, flags: &Flags) -> io::Result<bool> {
        let Ok(i) = self.messages.binary_search_by_key(&uid, |m| m.uid) else {
            return Ok(false);
        };
        let _lock = lock(self.maildir.root_dir())?;
        let mut entry = self.messages[i].entry.clone();
        let mut retried = false;
        let moved = loop {
            match self.maildir.move_to_cur(&entry, flags) {
                Ok(m) => break m,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !retried => {
                    // Renamed by another program since our scan: find it by its base name.
                    retried = true;
                    let base = entry.unique.clone();
                    let again = self.maildir.list_all()?;
                    match again.into_iter().find(|e| e.unique == base) {
                        Some(e) => entry = e,
                        None => return Ok(false),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
        };
        self.maildir.sync()?;
        self.messages[i].entry = moved;
        Ok(true)
    }

    /// The flag letter of keyword `name`, giving it the first free letter (durably, under the
    /// lock) when it has none; None when the name is not a valid keyword or all 26 letters are
    /// taken. Letters found on the folder's message files are never given to a new keyword.
    pub fn keyword_letter(&mut self, name: &str) -> io::Result<Option<char>> {
        if let Some(l) = self.keywords.letter(name) {
            return Ok(Some(l));
        }
        if !format::valid_keyword(name) {
            return Ok(None);
        }
        let dir = self.maildir.root_dir();
        let _lock = lock(dir)?;
        let mut keywords = match load(dir, KEYWORDS_FILE, Keywords::parse)? {
            Loaded::Ok(k) => k,
            Loaded::Missing | Loaded::Corrupt(_) => Keywords::new(),
        };
        if let Some(l) = keywords.letter(name) {
            self.keywords = keywords;
            return Ok(Some(l));
        }
        // The files as they are now, not as of our last sync: another session may have set a
        // letter on a message since.
        let mut in_use: Vec<char> = Vec::new();
        for e in self.maildir.list_all()? {
            for c in e.flags.as_str().chars().filter(char::is_ascii_lowercase) {
                if !in_use.contains(&c) {
                    in_use.push(c);
                }
            }
        }
        // Letters in use that the file still names keep their name; only unnamed ones are
        // reserved.
        in_use.retain(|&c| keywords.name(c).is_none());
        let Some(letter) = keywords.assign(name, &in_use) else {
            return Ok(None);
        };
        store(dir, KEYWORDS_FILE, &keywords.serialise())?;
        self.keywords = keywords;
        Ok(Some(letter))
    }
}

#[cfg(test)]
mod tests;
