//! What Sieve's sending actions remember between deliveries, kept in the Maildir: vacation's
//! `:days` memory per sender (RFC 5230 section 4.1) and the redirects already submitted for a
//! message, so a delivery retried after exit 75 does not redirect twice.
//!
//! One small file, [`FILE`] in the Maildir's top directory: one line per entry, `EXPIRY KEY`
//! (unix seconds, then the lower-case hex SHA-256 of the key: no address is stored in clear).
//! Expired entries are dropped when the file is written, and at most [`MAX_ENTRIES`] are kept
//! (the oldest go first). The file is read and replaced through the Maildir's directory fd,
//! never following a symlink ([`crate::fsroot`]), and replaced durably
//! ([`crate::durable::replace`]: a new file, fsynced, renamed, the directory fsynced), so what
//! was remembered survives a crash. [`Memory::lock`] takes an `flock(2)` on [`LOCK_FILE`]
//! for the time a delivery reads, sends and writes, so two deliveries to one Maildir do not
//! both send, or lose each other's entries. A line that does not parse is ignored (the worst
//! a damaged file does is one more reply).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};

use sha2::Digest as _;

use crate::maildir::Maildir;

/// The memory file in the Maildir's top directory.
pub const FILE: &str = "mailkit-sieve-memory";
/// The lock file next to it (created empty, never truncated).
pub const LOCK_FILE: &str = "mailkit-sieve.lock";
/// Most entries kept.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest file read (bytes); the rest is ignored.
const MAX_FILE: u64 = 4 * 1024 * 1024;
/// Mode of both files (the Maildir's owner only).
const MODE: u32 = 0o600;

/// The entries of one Maildir's memory (key hash → expiry), and the lock while it is held.
#[derive(Debug)]
pub struct Memory {
    inbox: Maildir,
    entries: HashMap<String, u64>,
    _lock: Option<File>,
}

/// Hex SHA-256 of `data`: the stored form of a key, and the message digest in a redirect's key.
pub fn sha256_hex(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Memory {
    /// Reads the memory of `inbox` without locking it (an absent file is an empty memory), for
    /// questions asked while the script runs.
    pub fn read(inbox: &Maildir) -> io::Result<Memory> {
        let mut entries = HashMap::new();
        match inbox.root_dir().open_read(FILE) {
            Ok(f) => {
                let mut text = String::new();
                f.take(MAX_FILE).read_to_string(&mut text)?;
                for line in text.lines() {
                    let Some((exp, key)) = line.split_once(' ') else {
                        continue;
                    };
                    if let Ok(exp) = exp.parse::<u64>() {
                        entries.insert(key.to_string(), exp);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Memory {
            inbox: inbox.clone(),
            entries,
            _lock: None,
        })
    }

    /// Locks the memory of `inbox` (blocking until another delivery lets go) and reads it; the
    /// lock is held until the `Memory` is dropped.
    pub fn lock(inbox: &Maildir) -> io::Result<Memory> {
        let lock = inbox.root_dir().open_lock(LOCK_FILE, MODE)?;
        lock.lock()?;
        let mut m = Memory::read(inbox)?;
        m._lock = Some(lock);
        Ok(m)
    }

    /// Whether `key` is remembered and not expired at `now` (unix seconds).
    pub fn contains(&self, key: &str, now: u64) -> bool {
        self.entries
            .get(&sha256_hex(key.as_bytes()))
            .is_some_and(|&exp| exp > now)
    }

    /// Remembers `key` until `until` and writes the file durably (expired entries dropped).
    pub fn remember(&mut self, key: &str, until: u64, now: u64) -> io::Result<()> {
        self.entries.insert(sha256_hex(key.as_bytes()), until);
        self.entries.retain(|_, exp| *exp > now);
        let mut list: Vec<(&String, &u64)> = self.entries.iter().collect();
        list.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        list.truncate(MAX_ENTRIES);
        let mut text = String::with_capacity(list.len() * 76);
        for (k, exp) in list {
            text.push_str(&format!("{exp} {k}\n"));
        }
        let root = self.inbox.root_dir();
        crate::durable::replace(
            root,
            ".mailkit-sieve-memory",
            root,
            FILE,
            text.as_bytes(),
            MODE,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_durably_expires_and_refuses_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let md = Maildir::create(t.path().join("M")).unwrap();
        let mut m = Memory::lock(&md).unwrap();
        assert!(!m.contains("vacation a", 100));
        m.remember("vacation a", 200, 100).unwrap();
        m.remember("vacation b", 150, 100).unwrap();
        drop(m);
        let m = Memory::read(&md).unwrap();
        assert!(m.contains("vacation a", 149));
        assert!(m.contains("vacation b", 149));
        assert!(!m.contains("vacation b", 150));
        // keys are stored hashed, expired ones dropped on the next write
        let mut m = Memory::lock(&md).unwrap();
        m.remember("redirect c", 300, 160).unwrap();
        drop(m);
        let text = std::fs::read_to_string(t.path().join("M").join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains("vacation"), "{text}");
        // a planted symlink is never read through
        std::fs::remove_file(t.path().join("M").join(FILE)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("M").join(FILE)).unwrap();
        assert!(Memory::read(&md).is_err());
    }
}
