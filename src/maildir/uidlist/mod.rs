//! IMAP UIDs for a Maildir++ folder, in Dovecot's own files, and [`View`], a folder's messages
//! in UID order.
//!
//! RFC 3501 §2.3.1.1: every message has a 32-bit UID, strictly ascending in arrival order and
//! never reused within one UIDVALIDITY; UIDVALIDITY changes only when UIDs cannot be kept, and
//! then to a greater value. Maildir has no UIDs, so each folder (the INBOX root, or `.A.B/`)
//! keeps them next to `cur/`; the *base name* of a message file (before `:2,`) is its key, so
//! flag renames and the move from `new/` to `cur/` (by mimapd, mpopd, mutt or Dovecot) keep its
//! UID.
//!
//! # Files (issue 13: Dovecot and mimapd serve one Maildir, in turn or together)
//! - `dovecot-uidlist` ([`UIDLIST_FILE`]): Dovecot's version 3 uid list ([`mod@format`]), with
//!   every header field (the mailbox GUID `G` included, generated when absent) and every record
//!   field kept, so Dovecot never rebuilds it and both report the same UIDVALIDITY and UIDs.
//! - `dovecot-uidlist.lock`: Dovecot's dotlock ([`crate::maildir::dotlock`]), which every writer
//!   of the list (Dovecot or us) holds while it reads, decides and writes.
//! - `dovecot-keywords` ([`KEYWORDS_FILE`]): keyword index → name; keyword `i` is the flag
//!   letter `a`+i in file names. Written through its own dotlock `dovecot-keywords.lock`,
//!   which is also the new file (renamed over the old one), as Dovecot writes it.
//! - `mailkit-imapstate` ([`STATE_FILE`]): ours, one line `V<uidvalidity> R<uidvalidity>:<uid>`:
//!   the greatest UIDVALIDITY given out (so a list lost or damaged beyond its header still gets a greater
//!   one) and the highest UID already reported as `\Recent` to some session (RFC 3501 §2.3.2:
//!   \Recent goes to one session, across processes; mpopd moving a message from `new/` to
//!   `cur/` does not take it). Written under the uid list's lock, replaced whole by rename.
//!
//! # Readers and writers
//! Readers take no lock ([`read_unlocked`]): Dovecot replaces the list by rename and also
//! appends records in place, so a reader can see a file that grows and a partial last line,
//! which it ignores. Writers hold the dotlock; when a sync only adds records to a list that
//! ends with a whole line, they are appended in place and the file fdatasynced; anything else
//! (records dropped, a new UIDVALIDITY, a missing GUID, a partial last line) rewrites the list
//! durably ([`crate::durable::replace`]: temporary file, fsync, rename, fsync of the folder).
//! Either way the list is durable before the lock is released and any UID is returned.
//!
//! # Symlinks
//! The folder belongs to its user, who may plant symlinks: every file here is opened through
//! the folder's [`crate::fsroot::Dir`] with `O_NOFOLLOW` (and `O_NONBLOCK`, so a planted FIFO
//! cannot hang a reader). A symlink (or anything but a regular file) at the list, the keywords
//! or the state file is treated as a corrupt file and replaced by the rename, which replaces
//! the link itself; the dotlocks are created `O_EXCL`, which never follows one.
//!
//! # Syncing a view
//! [`View::open`] and [`View::sync`], under the lock: read the list (missing or corrupt: a new,
//! greater UIDVALIDITY as the crash states below say, and fresh UIDs from 1), move `new/`
//! messages to `cur/` without flags (as Dovecot and mpopd do) and fsync, list `new/` then
//! `cur/` ([`super::Maildir::list_all`]: a message moved in between is seen once), keep the UID
//! of every base name still there, drop the records of the others (expunged; a message that
//! reappears later gets a new UID, never its old one), give each new message UIDNEXT in arrival
//! order (mtime, then name), and write the list. Since a readdir can miss a file that another
//! program renames during the scan, a record whose base name was not found makes the scan run
//! once more before it is dropped. When UIDNEXT would pass 2^32−1 the folder is renumbered
//! under a new UIDVALIDITY.
//!
//! # Crash states
//! - While moving `new/` to `cur/` or renaming for flags: each message has its old or new name;
//!   the base name is the same, so the UID is too.
//! - While writing the new list's temporary file, or appending: the old list is intact, or has a
//!   partial last line that readers ignore and the next writer drops by rewriting. The UIDs
//!   being assigned were reported to nobody.
//! - A crashed writer's dotlock names a dead pid on this host and is broken at once; on
//!   another host it goes stale after two minutes (Dovecot's rule).
//! - A list damaged some other way, or lost: RFC 3501 §2.3.1.1 applies; UIDVALIDITY grows
//!   (the current time, but above the damaged header's and the state file's) and clients
//!   refetch. Only with the list *and* the state file lost does it rest on the clock alone.
//! - A damaged or lost keywords file: keyword names are lost (their letters stay on the
//!   files), and no letter found on a message file is ever given to another keyword.

pub mod format;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;

use rustix::fs::OFlags;
use rustix::io::Errno;

use super::dotlock::Dotlock;
use super::{Entry, Flags, Maildir, Sub, FILE_MODE};
use crate::durable;
use crate::fsroot::{is_refusal, Dir};
pub use format::{Corrupt, Keywords, Record, UidList};

/// The uid list's file name in the folder's directory (Dovecot's).
pub const UIDLIST_FILE: &str = "dovecot-uidlist";
/// The keywords file's name (Dovecot's).
pub const KEYWORDS_FILE: &str = "dovecot-keywords";
/// Our state file's name (last UIDVALIDITY, \Recent).
pub const STATE_FILE: &str = "mailkit-imapstate";
/// Largest UID handed out; past it the folder is renumbered under a new UIDVALIDITY.
pub const MAX_UID: u32 = u32::MAX - 1;

/// Takes the folder's uid list lock (`dovecot-uidlist.lock`), waiting for another holder.
pub fn lock(dir: &Dir) -> io::Result<Dotlock<'_>> {
    Dotlock::take(dir, UIDLIST_FILE, FILE_MODE)
}

/// What `mailkit-imapstate` records (see the module doc): `V<n> R<validity>:<uid>\n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    /// The greatest UIDVALIDITY ever given out in this folder.
    pub validity: u32,
    /// The UIDVALIDITY `recent_upto` belongs to.
    pub recent_validity: u32,
    /// UIDs up to this one were reported as \Recent already (under `recent_validity`).
    pub recent_upto: u32,
}

impl State {
    /// Parses the file; anything else is no state.
    pub fn parse(data: &[u8]) -> Option<State> {
        let text = std::str::from_utf8(data).ok()?.strip_suffix('\n')?;
        let (v, r) = text.split_once(' ')?;
        let (rv, ru) = r.strip_prefix('R')?.split_once(':')?;
        Some(State {
            validity: v.strip_prefix('V')?.parse().ok()?,
            recent_validity: rv.parse().ok()?,
            recent_upto: ru.parse().ok()?,
        })
    }

    /// The file's bytes.
    pub fn serialise(&self) -> Vec<u8> {
        format!(
            "V{} R{}:{}\n",
            self.validity, self.recent_validity, self.recent_upto
        )
        .into_bytes()
    }
}

/// Reads file `name` in `dir` whole: missing (None), its bytes with its inode and device, or
/// Err(()) for a symlink or a non-regular file.
#[allow(clippy::type_complexity)]
fn read_file(dir: &Dir, name: &str) -> io::Result<Option<Result<(Vec<u8>, (u64, u64)), ()>>> {
    let mut f = match dir.open_file(name, OFlags::RDONLY | OFlags::NONBLOCK, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // O_NOFOLLOW on a symlink: ELOOP.
        Err(e) if is_refusal(&e) || e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
            return Ok(Some(Err(())))
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Ok(Some(Err(())));
    }
    let mut data = Vec::new();
    f.read_to_end(&mut data)?;
    Ok(Some(Ok((data, (meta.ino(), meta.dev())))))
}

/// What reading the uid list found.
enum Loaded {
    /// Parsed; with the file's (inode, device) and its length as read.
    Ok(UidList, (u64, u64), u64),
    Missing,
    Corrupt(Corrupt),
}

fn load_list(dir: &Dir) -> io::Result<Loaded> {
    Ok(match read_file(dir, UIDLIST_FILE)? {
        None => Loaded::Missing,
        Some(Err(())) => Loaded::Corrupt(Corrupt {
            reason: "not a regular file",
            validity: None,
        }),
        Some(Ok((data, id))) => match UidList::parse(&data) {
            Ok(l) => Loaded::Ok(l, id, data.len() as u64),
            Err(c) => Loaded::Corrupt(c),
        },
    })
}

fn load_keywords(dir: &Dir) -> io::Result<Keywords> {
    Ok(match read_file(dir, KEYWORDS_FILE)? {
        Some(Ok((data, _))) => Keywords::parse(&data),
        _ => Keywords::new(),
    })
}

fn load_state(dir: &Dir) -> io::Result<State> {
    Ok(match read_file(dir, STATE_FILE)? {
        Some(Ok((data, _))) => State::parse(&data).unwrap_or_default(),
        _ => State::default(),
    })
}

/// A UIDVALIDITY for a list that could not be kept: the current time (as Dovecot picks it),
/// but greater than each of `old` (the damaged list's, the one the state file recorded) known.
fn new_validity(old: &[Option<u32>]) -> u32 {
    let now = u32::try_from(crate::clock::now()).unwrap_or(u32::MAX);
    old.iter()
        .flatten()
        .map(|v| v.saturating_add(1))
        .fold(now.max(1), u32::max)
}

/// A new mailbox GUID: 128 random bits as 32 hex digits (what Dovecot's `G` holds).
pub fn new_guid() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

/// Replaces file `name` in `dir` with `bytes` durably (temporary file in the same directory).
fn store(dir: &Dir, name: &str, bytes: &[u8]) -> io::Result<()> {
    durable::replace(dir, name, dir, name, bytes, FILE_MODE)
}

/// Appends `records` to the uid list, which must still be the file (inode `id`) of `len`
/// bytes that was read under the lock; fdatasynced. Ok(false) when the file is not that one
/// any more (the caller rewrites instead).
fn append(dir: &Dir, id: (u64, u64), len: u64, records: &[Record]) -> io::Result<bool> {
    let mut f: File = match dir.open_file(UIDLIST_FILE, OFlags::WRONLY | OFlags::NONBLOCK, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() || (meta.ino(), meta.dev()) != id || meta.len() != len {
        return Ok(false);
    }
    let mut text = String::new();
    for r in records {
        text.push_str(&UidList::record_line(r));
    }
    std::io::Seek::seek(&mut f, io::SeekFrom::Start(len))?;
    f.write_all(text.as_bytes())?;
    f.sync_data()?;
    Ok(true)
}

/// The folder's uid list as it is on disk, read without the lock (for a quick look such as
/// IMAP STATUS). None when it is missing or corrupt; [`View::open`] then makes a new one. UIDs
/// from here may be from a list whose write is not yet durable: [`View`] is what reports UIDs.
pub fn read_unlocked(maildir: &Maildir) -> io::Result<Option<UidList>> {
    Ok(match load_list(maildir.root_dir())? {
        Loaded::Ok(l, _, _) => Some(l),
        Loaded::Missing | Loaded::Corrupt(_) => None,
    })
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
        self.sync_claiming(false).map(|_| ())
    }

    /// [`View::sync`], and when `claim_recent` the UIDs no session was told about yet become
    /// this caller's \Recent messages (returned; RFC 3501 §2.3.2: exactly one session).
    pub fn sync_claiming(&mut self, claim_recent: bool) -> io::Result<Vec<u32>> {
        let dir = self.maildir.root_dir();
        let _lock = lock(dir)?;
        let mut state = load_state(dir)?;
        let recorded = Some(state.validity).filter(|&v| v > 0);
        let (mut list, mut rewrite, on_disk) = match load_list(dir)? {
            Loaded::Ok(mut l, id, len) => {
                // Dovecot rewrites a list without a GUID; so do we (keeping its UIDs).
                let rewrite = l.guid.is_empty() || !l.complete;
                if l.guid.is_empty() {
                    l.guid = new_guid();
                }
                (l, rewrite, Some((id, len)))
            }
            Loaded::Missing => (
                UidList::fresh(new_validity(&[recorded]), new_guid()),
                true,
                None,
            ),
            Loaded::Corrupt(c) => {
                let v = new_validity(&[c.validity, recorded]);
                (UidList::fresh(v, new_guid()), true, None)
            }
        };
        self.keywords = load_keywords(dir)?;
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
        if list.records.iter().any(|r| !found.contains_key(&r.base)) {
            scan(&mut found)?;
        }
        let known: HashSet<String> = list.records.iter().map(|r| r.base.clone()).collect();
        let before = list.records.len();
        list.records.retain(|r| found.contains_key(&r.base));
        rewrite |= list.records.len() != before;
        let mut fresh: Vec<&Entry> = order
            .iter()
            .filter(|b| !known.contains(*b))
            .filter_map(|b| found.get(b))
            .filter(|e| format::valid_base(&e.unique))
            .collect();
        fresh.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.name.cmp(&b.name)));
        let first_new = list.records.len();
        if !fresh.is_empty() {
            if u64::from(list.next) + fresh.len() as u64 > u64::from(MAX_UID) + 1 {
                // RFC 3501 §2.3.1.1: the UIDs cannot be kept; renumber under a new UIDVALIDITY.
                let v = new_validity(&[Some(list.validity), recorded]);
                let mut renumbered = UidList::fresh(v, list.guid.clone());
                renumbered.header_ext = std::mem::take(&mut list.header_ext);
                for mut r in list.records.drain(..) {
                    r.uid = renumbered.next;
                    renumbered.records.push(r);
                    renumbered.next += 1;
                }
                list = renumbered;
                rewrite = true;
            }
            for e in fresh {
                list.records.push(Record {
                    uid: list.next,
                    ext: Vec::new(),
                    base: e.unique.clone(),
                });
                list.next += 1;
            }
        }
        if list.validity > state.validity {
            // Recorded before any list with it is written (a lost list then gets a greater one).
            state.validity = list.validity;
            store(dir, STATE_FILE, &state.serialise())?;
        }
        let added = &list.records[first_new..];
        if rewrite {
            store(dir, UIDLIST_FILE, &list.serialise())?;
        } else if !added.is_empty() {
            let appended = match on_disk {
                Some((id, len)) => append(dir, id, len, added)?,
                None => false,
            };
            if !appended {
                store(dir, UIDLIST_FILE, &list.serialise())?;
            }
        }
        let mut recent = Vec::new();
        let claimed = if state.recent_validity == list.validity {
            state.recent_upto
        } else {
            0
        };
        if claim_recent && list.next - 1 > claimed {
            recent = list
                .records
                .iter()
                .map(|r| r.uid)
                .filter(|&u| u > claimed)
                .collect();
            state.recent_validity = list.validity;
            state.recent_upto = list.next - 1;
            store(dir, STATE_FILE, &state.serialise())?;
        }
        self.validity = list.validity;
        self.next = list.next;
        self.messages = list
            .records
            .into_iter()
            .filter_map(|r| {
                Some(Message {
                    uid: r.uid,
                    entry: found.remove(&r.base)?,
                })
            })
            .collect();
        Ok(recent)
    }

    /// How many messages of this view no session was given as \Recent yet (STATUS RECENT,
    /// RFC 3501 §6.3.10), read from the state file without claiming them (§2.3.2).
    pub fn unclaimed_recent(&self) -> io::Result<usize> {
        let state = load_state(self.maildir.root_dir())?;
        let claimed = if state.recent_validity == self.validity {
            state.recent_upto
        } else {
            0
        };
        Ok(self.messages.iter().filter(|m| m.uid > claimed).count())
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

    /// Opens message `uid` for reading: its file as last seen, or, when another program renamed
    /// it since our scan (moved it from `new/` to `cur/`, as mpopd and every other mimapd
    /// process do, or changed its flags), the file with the same base name. None when the
    /// message is not in this view or its file is gone (expunged by another process).
    pub fn open_message(&self, uid: u32) -> io::Result<Option<File>> {
        let Some(m) = self.get(uid) else {
            return Ok(None);
        };
        match self.maildir.open_message(&m.entry) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets the flags of message `uid` to `flags` (system flags and keyword letters): renames
    /// its file's info to `:2,<flags>` and fsyncs, so it is durable when this returns; the base
    /// name, hence the UID (and mpopd's UIDL), stays. Ok(false) when the message is no longer
    /// there (expunged by another process).
    pub fn set_flags(&mut self, uid: u32, flags: &Flags) -> io::Result<bool> {
        let Ok(i) = self.messages.binary_search_by_key(&uid, |m| m.uid) else {
            return Ok(false);
        };
        let mut entry = self.messages[i].entry.clone();
        let mut retried = false;
        let moved = loop {
            match self.maildir.move_to_cur(&entry, flags) {
                Ok(m) => break m,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !retried => {
                    // Renamed by another program since our scan: find it by its base name.
                    retried = true;
                    match self.maildir.find(&entry.unique)? {
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

    /// The flag letter of keyword `name`, giving it the first free letter (durably, under
    /// `dovecot-keywords.lock`, as Dovecot writes the file) when it has none; None when the
    /// name is not a valid keyword or all 26 letters are taken. Letters found on the folder's
    /// message files are never given to a new keyword.
    pub fn keyword_letter(&mut self, name: &str) -> io::Result<Option<char>> {
        if let Some(l) = self.keywords.letter(name) {
            return Ok(Some(l));
        }
        if !format::valid_keyword(name) {
            return Ok(None);
        }
        let dir = self.maildir.root_dir();
        let lock = Dotlock::take(dir, KEYWORDS_FILE, FILE_MODE)?;
        let mut keywords = load_keywords(dir)?;
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
        lock.commit(KEYWORDS_FILE, &keywords.serialise())?;
        self.keywords = keywords;
        Ok(Some(letter))
    }
}

#[cfg(test)]
mod tests;
