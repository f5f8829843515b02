//! Dovecot's dotlock protocol (its `file-dotlock.c`, as `dotlock_use_excl = yes`, Dovecot 2.3's
//! default): the lock on file `F` is the file `F.lock`, created with `O_CREAT | O_EXCL`, holding
//! one line `<pid>:<hostname>`; the holder removes it when done. Unlike `flock(2)` it works on
//! network filesystems and is what Dovecot itself takes, so Dovecot and mailkit exclude each
//! other on `dovecot-uidlist` and `dovecot-keywords` (issue 13).
//!
//! A lock whose holder died is *stale* and is broken, by Dovecot's rules: at once when it names
//! a pid on this host that no longer exists, and otherwise when the lock file has not changed
//! for [`STALE_AFTER`] (the holder of a long operation touches it). A waiter gives up after
//! [`GIVE_UP_AFTER`] (a temporary error, sysexits 75 for the caller).
//!
//! [`Dotlock::commit`] is Dovecot's `file_dotlock_replace`: the lock file, written with the new
//! content and fsynced, is renamed over `F` (used for `dovecot-keywords`, whose lock file *is*
//! the new file, as Dovecot writes it).
//!
//! Symlinks: the lock is created through the folder's [`Dir`] (`O_NOFOLLOW`, `O_EXCL` refuses
//! any existing name, a planted symlink included); a symlink at the lock name is never followed,
//! only (when stale by age) removed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

use rustix::fs::OFlags;

use crate::fsroot::Dir;

/// A lock file unchanged this long is stale (Dovecot's `MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT`).
pub const STALE_AFTER: Duration = Duration::from_secs(120);
/// How long a writer waits for a lock before it reports a temporary failure (Dovecot waits
/// the stale time plus two seconds).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(122);
/// Longest sleep between two attempts.
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// A held dotlock; dropping it removes the lock file (when it is still ours).
#[derive(Debug)]
pub struct Dotlock<'d> {
    dir: &'d Dir,
    name: String,
    file: Option<File>,
    ino: u64,
    dev: u64,
}

/// The content of our lock files: `<pid>:<hostname>\n` (what Dovecot writes and reads).
fn content() -> String {
    let host = gethostname::gethostname();
    format!("{}:{}\n", std::process::id(), host.to_string_lossy())
}

/// Whether the lock file's content names a process on this host that is gone.
fn holder_is_dead(text: &str) -> bool {
    let Some((pid, host)) = text.trim_end_matches('\n').split_once(':') else {
        return false;
    };
    if host != gethostname::gethostname().to_string_lossy() {
        return false;
    }
    let Some(pid) = pid
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // ESRCH: no such process. EPERM means it exists (another user's).
    matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

impl<'d> Dotlock<'d> {
    /// Takes the dotlock on `target` in `dir` (the file `<target>.lock`), waiting for another
    /// holder and breaking a stale lock (see the module doc).
    pub fn take(dir: &'d Dir, target: &str, mode: u32) -> io::Result<Dotlock<'d>> {
        let name = format!("{target}.lock");
        let start = std::time::Instant::now();
        let mut backoff = Duration::from_micros(200);
        loop {
            match dir.create_new(&name, mode) {
                Ok(mut file) => {
                    let meta = file.metadata()?;
                    // Built first, so that a failed write removes the lock file again.
                    let mut lock = Dotlock {
                        dir,
                        name,
                        ino: meta.ino(),
                        dev: meta.dev(),
                        file: None,
                    };
                    file.write_all(content().as_bytes())?;
                    lock.file = Some(file);
                    return Ok(lock);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            if Self::break_if_stale(dir, &name)? {
                continue;
            }
            if start.elapsed() > GIVE_UP_AFTER {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{}: lock held too long", dir.path().join(&name).display()),
                ));
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Removes the lock file `name` when it is stale; true when it did (or the lock is gone).
    fn break_if_stale(dir: &Dir, name: &str) -> io::Result<bool> {
        let before = match dir.stat(name) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
        };
        if !before.is_file() {
            // No writer makes anything else: planted (a symlink, a FIFO). Never followed, and
            // not waited on either.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: not a regular file (symlink in path?)",
                    dir.path().join(name).display()
                ),
            ));
        }
        let old = SystemTime::now()
            .duration_since(before.mtime)
            .is_ok_and(|age| age > STALE_AFTER);
        let dead = match dir.open_file(name, OFlags::RDONLY | OFlags::NONBLOCK, 0) {
            Ok(f) => {
                let mut text = String::new();
                let _ = f.take(512).read_to_string(&mut text);
                holder_is_dead(&text)
            }
            Err(_) => false,
        };
        if !(old || dead) {
            return Ok(false);
        }
        // Only the file we judged: another waiter may have broken it and locked anew.
        match dir.stat(name) {
            Ok(now) if now.ino == before.ino && now.dev == before.dev => match dir.unlink(name) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
                Err(e) => Err(e),
            },
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Whether the lock file is still ours (not broken as stale by someone else).
    fn still_ours(&self) -> bool {
        self.dir
            .stat(&self.name)
            .is_ok_and(|m| m.ino == self.ino && m.dev == self.dev)
    }

    /// Writes `bytes` as the new content of `target` through the lock file (Dovecot's
    /// `file_dotlock_replace`): truncated, written, fsynced, renamed over `target`, the directory
    /// fsynced. The lock is released by the rename.
    pub fn commit(mut self, target: &str, bytes: &[u8]) -> io::Result<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("lock closed"))?;
        if !self.still_ours() {
            return Err(io::Error::other(format!(
                "{}: our lock was broken as stale",
                self.dir.path().join(&self.name).display()
            )));
        }
        file.set_len(0)?;
        std::io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        self.dir.rename_replace(&self.name, self.dir, target)?;
        // Renamed away: nothing left to remove on drop.
        self.ino = 0;
        self.dir.sync()
    }
}

impl Drop for Dotlock<'_> {
    fn drop(&mut self) {
        if self.ino != 0 && self.still_ours() {
            let _ = self.dir.unlink(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_breaks_dead_holders_and_commits() {
        let d = tempfile::tempdir().unwrap();
        let dir = Dir::open_root(d.path()).unwrap();
        let lock = Dotlock::take(&dir, "f", 0o600).unwrap();
        let text = std::fs::read_to_string(d.path().join("f.lock")).unwrap();
        assert!(
            text.starts_with(&format!("{}:", std::process::id())),
            "{text}"
        );
        assert!(!holder_is_dead(&text));
        // Held: another taker waits (its creation fails while we hold it).
        assert!(dir.create_new("f.lock", 0o600).is_err());
        drop(lock);
        assert!(!d.path().join("f.lock").exists());
        // A lock of a dead process on this host is broken at once; one of another host is not.
        let host = gethostname::gethostname();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        std::fs::write(
            d.path().join("f.lock"),
            format!("{dead}:{}\n", host.to_string_lossy()),
        )
        .unwrap();
        let lock = Dotlock::take(&dir, "f", 0o600).unwrap();
        lock.commit("f", b"new\n").unwrap();
        assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"new\n");
        assert!(!d.path().join("f.lock").exists());
        std::fs::write(
            d.path().join("f.lock"),
            format!("{dead}:elsewhere.invalid\n"),
        )
        .unwrap();
        assert!(!Dotlock::break_if_stale(&dir, "f.lock").unwrap());
    }
}
