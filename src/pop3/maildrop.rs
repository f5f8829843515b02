//! A user's maildrop for one POP3 session: lock, scan (moving new/ to cur/), read, delete.
//!
//! RFC 1939 §8 asks for an exclusive-access lock on the maildrop for the session. We take an
//! `flock(2)` on `mpopd.lock` in the Maildir: it is released by the kernel when the session's
//! process dies (no stale locks), and two opens conflict even inside one process, so it works
//! the same for `serve` (many sessions, one process) and `inetd` (one process per session).
//! All Maildir access goes through [`crate::maildir`]; this module only adds the POP3 view.
//!
//! The Maildir belongs to its user, who may plant symlinks in it, so the lock and the size cache
//! are opened through the Maildir's directory fd without following symlinks
//! ([`crate::fsroot`]): the lock with `O_CREAT` and no truncation, the cache written to a new
//! `O_EXCL` file with a random name and renamed over the old one inside that directory. Nothing
//! is chowned: the process serving a user runs as that user (or as the one mail user of virtual
//! Maildirs), so what it creates already has the right owner.

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::io::{self, Read, Write};
use std::path::Path;

use super::session::{uid_for, MessageInfo};
use crate::fsroot::Dir;
use crate::maildir::{Entry, Flags, Links, Maildir, SizeCounter, Sub, FILE_MODE};

/// Name of the lock file in the Maildir's top directory.
pub const LOCK_FILE: &str = "mpopd.lock";
/// Name of the CRLF size cache in the Maildir's top directory (see [`Maildrop::open`]).
pub const SIZE_CACHE_FILE: &str = "mpopd.sizes";
/// Read buffer for computing CRLF sizes and sending messages.
pub const READ_CHUNK: usize = 64 * 1024;

/// Why a maildrop could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another POP3 session holds the lock (`-ERR [IN-USE]`).
    InUse,
    /// Anything else (`-ERR [SYS/TEMP]`), with its cause for the log.
    Io(io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::InUse => f.write_str("maildrop is locked by another POP3 session"),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// A locked, scanned maildrop. Dropping it releases the lock and deletes nothing.
#[derive(Debug)]
pub struct Maildrop {
    maildir: Option<Maildir>,
    entries: Vec<Entry>,
    infos: Vec<MessageInfo>,
    _lock: Option<File>,
}

impl Maildrop {
    /// Locks the Maildir at `path`, moves new/ messages into cur/ (RFC 1939 leaves "seen" state
    /// to the server; Maildir readers mark what they have shown) and lists the messages in a
    /// stable order (arrival time, then name), with CRLF sizes: `,W=` from the file name when
    /// present, else from the size cache, else counted from the file (and cached). A Maildir
    /// that is a symlink, or whose `tmp/`, `new/`, `cur/` are, is refused (see
    /// [`Maildrop::open_with`]).
    pub fn open(path: &Path) -> Result<Maildrop, OpenError> {
        Maildrop::open_with(path, Links::Refuse)
    }

    /// [`Maildrop::open`] with a symlink policy for the Maildir's directories (the lock, cache
    /// and message files are never followed).
    pub fn open_with(path: &Path, links: Links) -> Result<Maildrop, OpenError> {
        // A user who never got mail has no Maildir yet: an empty maildrop, as with Dovecot.
        // Nothing is created (a directory made by a root daemon would lock out the MDA), and
        // with no messages there is nothing another session could delete under us. (A dangling
        // symlink is not "no Maildir": opening it is refused below.)
        if matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
        {
            return Ok(Maildrop {
                maildir: None,
                entries: Vec::new(),
                infos: Vec::new(),
                _lock: None,
            });
        }
        let maildir = Maildir::open_with(path, links).map_err(OpenError::Io)?;
        let dir = maildir.root_dir();
        let lock = dir.open_lock(LOCK_FILE, FILE_MODE).map_err(OpenError::Io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(OpenError::InUse),
            Err(TryLockError::Error(e)) => return Err(OpenError::Io(e)),
        }
        let listed = maildir.list_all().map_err(OpenError::Io)?;
        let mut entries = Vec::with_capacity(listed.len());
        let mut moved = false;
        for e in listed {
            if e.sub == Sub::New {
                match maildir.move_to_cur(&e, &Flags::empty()) {
                    Ok(m) => {
                        moved = true;
                        entries.push(m);
                    }
                    // Another reader (IMAP) moved it meanwhile: find it again next session.
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(OpenError::Io(err)),
                }
            } else {
                entries.push(e);
            }
        }
        if moved {
            maildir.sync().map_err(OpenError::Io)?;
        }
        let mut kept = Vec::with_capacity(entries.len());
        let mut infos = Vec::with_capacity(entries.len());
        let cache = SizeCache::load(dir);
        let mut fresh = SizeCache::default();
        let mut computed = false;
        for e in entries {
            let size = match e.rfc822_size {
                Some(w) => w,
                None => match cache.get(&e.unique, e.size) {
                    Some(s) => {
                        fresh.insert(&e.unique, e.size, s);
                        s
                    }
                    None => match crlf_size_of(&maildir, &e) {
                        Ok(s) => {
                            computed = true;
                            fresh.insert(&e.unique, e.size, s);
                            s
                        }
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) => return Err(OpenError::Io(err)),
                    },
                },
            };
            infos.push(MessageInfo {
                size,
                uid: uid_for(&e.unique),
            });
            kept.push(e);
        }
        // Rewrite the cache when sizes were computed or entries went away; failing to write
        // it only costs a recount next time.
        if computed || fresh.len() != cache.len() {
            let _ = fresh.store(dir);
        }
        Ok(Maildrop {
            maildir: Some(maildir),
            entries: kept,
            infos,
            _lock: Some(lock),
        })
    }

    /// The messages as the session numbers them (index 0 is message 1).
    pub fn infos(&self) -> &[MessageInfo] {
        &self.infos
    }

    /// Hands the message list to the session (it keeps the only copy; a maildrop of many
    /// messages is not held twice).
    pub fn take_infos(&mut self) -> Vec<MessageInfo> {
        std::mem::take(&mut self.infos)
    }

    /// Opens message `index` for RETR/TOP.
    pub fn open_message(&self, index: usize) -> io::Result<File> {
        match (self.entries.get(index), &self.maildir) {
            (Some(e), Some(md)) => md.open_message(e),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "no such message")),
        }
    }

    /// UPDATE state (RFC 1939 §6): removes the messages at `indices` and makes that durable.
    /// A message already gone (removed by another reader) counts as removed.
    pub fn delete(&self, indices: &[usize]) -> io::Result<()> {
        let Some(maildir) = &self.maildir else {
            return Ok(());
        };
        let mut first_err = None;
        for &i in indices {
            if let Some(e) = self.entries.get(i) {
                // Renamed meanwhile (mimapd or mutt changed its flags): the same message,
                // found by its base name; gone: removed by another reader.
                let removed = match maildir.delete(e) {
                    Ok(false) => match maildir.find(&e.unique) {
                        Ok(Some(now)) => maildir.delete(&now),
                        Ok(None) => Ok(false),
                        Err(err) => Err(err),
                    },
                    r => r,
                };
                if let Err(err) = removed {
                    first_err.get_or_insert(err);
                }
            }
        }
        maildir.sync()?;
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// CRLF sizes of messages whose names carry no `,W=`, kept in [`SIZE_CACHE_FILE`] so each
/// message file is read once, not at every login (and across inetd processes). Maildir messages
/// never change, so the unique name and file size are the key. The file is only a cache: a
/// missing, unreadable or damaged one means recounting, never a wrong size (each line must parse
/// whole and its CRLF size can only be at least the file size).
#[derive(Debug, Default)]
struct SizeCache {
    map: HashMap<String, (u64, u64)>,
}

impl SizeCache {
    fn load(dir: &Dir) -> SizeCache {
        let mut map = HashMap::new();
        let mut text = String::new();
        let read = dir
            .open_read(SIZE_CACHE_FILE)
            .and_then(|mut f| f.read_to_string(&mut text));
        if read.is_err() {
            return SizeCache { map };
        }
        for line in text.lines() {
            let mut f = line.split(' ');
            let (Some(u), Some(size), Some(crlf), None) = (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            if let (Ok(size), Ok(crlf)) = (size.parse::<u64>(), crlf.parse::<u64>()) {
                if !u.is_empty() && crlf >= size {
                    map.insert(u.to_string(), (size, crlf));
                }
            }
        }
        SizeCache { map }
    }

    fn get(&self, unique: &str, size: u64) -> Option<u64> {
        match self.map.get(unique) {
            Some(&(s, crlf)) if s == size => Some(crlf),
            _ => None,
        }
    }

    fn insert(&mut self, unique: &str, size: u64, crlf: u64) {
        // A name with a space or line break could not be read back: not cached.
        if !unique.contains([' ', '\n', '\r']) {
            self.map.insert(unique.to_string(), (size, crlf));
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// Writes the cache atomically: a new file (`O_EXCL`, a random name nobody can plant in
    /// advance), fsync, renamed over the old cache inside the Maildir's directory fd.
    fn store(&self, dir: &Dir) -> io::Result<()> {
        let mut text = String::with_capacity(self.map.len() * 64);
        for (u, (size, crlf)) in &self.map {
            text.push_str(&format!("{u} {size} {crlf}\n"));
        }
        let tmp = format!("{SIZE_CACHE_FILE}.{:016x}.tmp", rand::random::<u64>());
        let mut f = dir.create_new(&tmp, FILE_MODE)?;
        let result = (|| {
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
            dir.rename_replace(&tmp, dir, SIZE_CACHE_FILE)
        })();
        if result.is_err() {
            let _ = dir.unlink(&tmp);
        }
        result
    }
}

/// Counts the CRLF size of a message file.
fn crlf_size_of(maildir: &Maildir, e: &Entry) -> io::Result<u64> {
    let mut f = maildir.open_message(e)?;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut c = SizeCounter::default();
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        c.push(&buf[..n]);
    }
    Ok(c.size())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn scans_moves_to_cur_sizes_and_locks() {
        let dir = tmp();
        let md = Maildir::create(dir.path()).unwrap();
        md.deliver(b"A: 1\n\nbody\n").unwrap();
        std::fs::write(dir.path().join("new/100.M1P1.h"), b"B: 2\r\n\r\nx\r\n").unwrap();
        let drop1 = Maildrop::open(dir.path()).unwrap();
        let infos = drop1.infos().to_vec();
        assert_eq!(infos.len(), 2);
        let mut sizes: Vec<u64> = infos.iter().map(|i| i.size).collect();
        sizes.sort();
        assert_eq!(sizes, vec![11, 14]);
        assert_eq!(
            std::fs::read_dir(dir.path().join("new")).unwrap().count(),
            0
        );
        assert!(matches!(Maildrop::open(dir.path()), Err(OpenError::InUse)));
        drop(drop1);
        let drop2 = Maildrop::open(dir.path()).unwrap();
        assert_eq!(
            drop2.infos(),
            infos,
            "same numbering and UIDLs across sessions"
        );
        drop2.delete(&[0]).unwrap();
        drop(drop2);
        assert_eq!(Maildrop::open(dir.path()).unwrap().infos().len(), 1);
    }

    #[test]
    fn crlf_sizes_are_cached_and_a_damaged_cache_is_ignored() {
        let dir = tmp();
        Maildir::create(dir.path()).unwrap();
        std::fs::write(dir.path().join("new/100.M1P1.h"), b"A: 1\n\nx\n").unwrap();
        // Nothing is chowned: files belong to the process that serves the user (issue 10).
        let _ = std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534));
        assert_eq!(Maildrop::open(dir.path()).unwrap().infos()[0].size, 11);
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::metadata(dir.path().join("cur")).unwrap().uid();
        let meta = std::fs::metadata(dir.path().join(SIZE_CACHE_FILE)).unwrap();
        assert_eq!(meta.uid(), me);
        let lock = std::fs::metadata(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(lock.uid(), me);
        // no temporary file is left behind
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(SIZE_CACHE_FILE))
            .collect();
        assert_eq!(names, vec![SIZE_CACHE_FILE.to_string()]);
        let cache = std::fs::read_to_string(dir.path().join(SIZE_CACHE_FILE)).unwrap();
        assert_eq!(cache, "100.M1P1.h 8 11\n");
        // The cached value is used (proved by planting a different, still plausible one) ...
        std::fs::write(dir.path().join(SIZE_CACHE_FILE), "100.M1P1.h 8 9\n").unwrap();
        assert_eq!(Maildrop::open(dir.path()).unwrap().infos()[0].size, 9);
        // ... but a wrong file size, a torn line or garbage means recounting.
        for bad in [
            "100.M1P1.h 7 11\n",
            "100.M1P1.h 8",
            "100.M1P1.h 8 3\n",
            "\0\0\0",
        ] {
            std::fs::write(dir.path().join(SIZE_CACHE_FILE), bad).unwrap();
            assert_eq!(
                Maildrop::open(dir.path()).unwrap().infos()[0].size,
                11,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn missing_maildir_is_empty_and_not_created_and_a_file_is_an_error() {
        let dir = tmp();
        let m = Maildrop::open(&dir.path().join("nope")).unwrap();
        assert!(m.infos().is_empty());
        m.delete(&[0]).unwrap();
        assert!(!dir.path().join("nope").exists());
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        assert!(matches!(
            Maildrop::open(&dir.path().join("file")),
            Err(OpenError::Io(_))
        ));
    }
}
