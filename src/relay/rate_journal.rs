//! The rate-limit table of every mrelayd process of one queue (issue 15): `QUEUE_DIR/rate-limits`
//! is a journal of what each accepted message added ([`Limiter::record_lines`]), appended by
//! whichever process accepted it, and each process's [`Limiter`] is the journal read so far.
//! Without it, inetd and socket-activated processes (one a session) would each count from
//! zero, and a killed daemon would forget its hour.
//!
//! - **Appends** are one `write` of whole lines on an `O_APPEND` descriptor, under a shared
//!   `flock`: processes append at once without losing each other's lines, and a reader that
//!   meets a line being written reads it next time (only whole lines are taken).
//! - **Before each check** a process reads what was appended since it last looked, so a
//!   message accepted by another process counts at once. A process's own message counts when
//!   it reads its own line back: one way for all.
//! - **Compaction**: past [`COMPACT_BYTES`] (and several times the table's own size) the
//!   journal is replaced, under an exclusive `flock`, by the table saved whole
//!   ([`Limiter::save`], durably, by [`crate::durable::replace`]); processes holding the old file
//!   see its inode change and read the new one from its start. A clean stop compacts too.
//! - **Durability**: appends are not fsynced. A killed process loses nothing (its lines are in
//!   the page cache); a power loss may forget the last counts, which only gives a sender a
//!   little more of its hour. The message itself was fsynced before its 250, as always.
//! - **Failures** (a file another user owns, a full disk) are logged once and the process
//!   counts alone in memory: a rate limit never stops mail from being accepted.
//!
//! The file is opened below the queue root without following symlinks ([`crate::fsroot`]), and
//! only after the daemon dropped root, so it belongs to the `[run_as]` user.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rustix::fs::OFlags;

use super::rate_limit::{Limiter, Sender};
use super::Role;
use crate::fsroot::Dir;
use crate::log;
use crate::smtp::reply::Reply;

/// The journal's name in the queue directory.
pub const STATE_FILE: &str = "rate-limits";

/// A journal larger than this is compacted when it is also [`COMPACT_RATIO`] times the size
/// of the table saved whole.
pub const COMPACT_BYTES: u64 = 256 * 1024;

/// See [`COMPACT_BYTES`].
const COMPACT_RATIO: u64 = 4;

/// About the bytes of one saved bucket, for the compaction test.
const LINE_BYTES: u64 = 64;

/// A tail without a line end longer than this is not a line being written but damage: it is
/// skipped.
const MAX_LINE: usize = 64 * 1024;

/// The limits of one queue, in step with its journal: what the SMTP sessions ask.
pub struct SharedLimits {
    limiter: Limiter,
    journal: Mutex<Journal>,
}

/// The open journal and how far this process has read it.
struct Journal {
    /// The queue directory.
    root: PathBuf,
    /// Its fd, once opened.
    dir: Option<Dir>,
    /// The journal, its (device, inode) and the offset read up to.
    file: Option<(File, (u64, u64), u64)>,
    /// Set once a failure was logged: the process counts alone from then on.
    failed: bool,
}

impl SharedLimits {
    /// `limiter` kept in step with the journal in the queue directory `root`. Nothing is
    /// opened yet (the first check opens the journal, after root was dropped).
    pub fn new(limiter: Limiter, root: PathBuf) -> SharedLimits {
        SharedLimits {
            limiter,
            journal: Mutex::new(Journal {
                root,
                dir: None,
                file: None,
                failed: false,
            }),
        }
    }

    /// [`Limiter::applies`].
    pub fn applies(&self, role: Role) -> bool {
        self.limiter.applies(role)
    }

    /// [`Limiter::sender`].
    pub fn sender(&self, user: Option<&str>, ip: Option<IpAddr>) -> Sender {
        self.limiter.sender(user, ip)
    }

    /// [`Limiter::check_mail`] after reading what other processes counted.
    pub fn check_mail(&self, sender: &Sender, now: Duration) -> Option<Reply> {
        self.with_journal(|j, l| j.catch_up(l, now));
        self.limiter.check_mail(sender, now)
    }

    /// [`Limiter::check_rcpt`] after reading what other processes counted.
    pub fn check_rcpt(&self, sender: &Sender, pending: usize, now: Duration) -> Option<Reply> {
        self.with_journal(|j, l| j.catch_up(l, now));
        self.limiter.check_rcpt(sender, pending, now)
    }

    /// Counts an accepted message: appended to the journal and read back (or, once the
    /// journal failed, counted in this process alone).
    pub fn record(&self, sender: &Sender, recipients: usize, now: Duration) {
        let lines = self.limiter.record_lines(sender, recipients, now);
        if lines.is_empty() {
            return;
        }
        if !self.with_journal(|j, l| j.append(l, lines.as_bytes(), now)) {
            self.limiter.apply(&lines, now);
            return;
        }
        // Apart from the append: a failed compaction must not count the message twice.
        self.with_journal(|j, l| match j.wants_compaction(l) {
            true => j.compact(l, now),
            false => Ok(()),
        });
    }

    /// At a clean stop: the journal compacted to the table (a smaller file to read next).
    pub fn stop(&self, now: Duration) {
        self.with_journal(|j, l| j.compact(l, now));
    }

    /// Runs `step` on the journal unless it failed before; a failure is logged (once) and the
    /// process counts alone from then on. Returns whether `step` ran and succeeded.
    fn with_journal(&self, step: impl FnOnce(&mut Journal, &Limiter) -> io::Result<()>) -> bool {
        let mut j = self.journal.lock().unwrap_or_else(|e| e.into_inner());
        if j.failed {
            return false;
        }
        match step(&mut j, &self.limiter) {
            Ok(()) => true,
            Err(e) => {
                j.failed = true;
                log::line(format_args!(
                    "rate limits: {}: {e}; counting in this process only",
                    j.root.join(STATE_FILE).display()
                ));
                false
            }
        }
    }
}

/// A file's (device, inode).
fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

impl Journal {
    fn dir(&mut self) -> io::Result<&Dir> {
        if self.dir.is_none() {
            // The root may be the admin's symlink, as for the queue itself; nothing below it is.
            self.dir = Some(Dir::open_root_following(&self.root)?);
        }
        self.dir
            .as_ref()
            .ok_or_else(|| io::Error::other("queue directory not open"))
    }

    /// The journal under its name now: `(file, identity)`, created when missing.
    fn open_current(&mut self) -> io::Result<(File, (u64, u64))> {
        let file = self
            .dir()?
            .open_lock_with(STATE_FILE, OFlags::APPEND, 0o600)?;
        let id = identity(&file.metadata()?);
        Ok((file, id))
    }

    /// Whether the name still names the file this process has open.
    fn is_current(&mut self) -> io::Result<bool> {
        let Some((_, id, _)) = &self.file else {
            return Ok(false);
        };
        let id = *id;
        match self.dir()?.stat(STATE_FILE) {
            Ok(meta) => Ok((meta.dev, meta.ino) == id),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads what was appended since the last call into `limiter`; when the journal was
    /// replaced (compacted) or is new to this process, the table is read again from its start.
    fn catch_up(&mut self, limiter: &Limiter, now: Duration) -> io::Result<()> {
        if !self.is_current()? {
            let (file, id) = self.open_current()?;
            limiter.clear();
            self.file = Some((file, id, 0));
        }
        let Some((file, _, offset)) = self.file.as_mut() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(*offset))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)?;
        // Only whole lines: the rest is a line being appended, read next time.
        let whole = match tail.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if tail.len() > MAX_LINE => tail.len(),
            None => 0,
        };
        if whole > 0 {
            limiter.apply(&String::from_utf8_lossy(&tail[..whole]), now);
            *offset += whole as u64;
        }
        Ok(())
    }

    /// Appends `lines` (one `write` under a shared lock, to the journal under its name now),
    /// then reads them back into `limiter` with whatever others appended before them.
    fn append(&mut self, limiter: &Limiter, lines: &[u8], now: Duration) -> io::Result<()> {
        // A compaction between our look and our lock replaces the file: look again, a few times.
        for _ in 0..8 {
            self.catch_up(limiter, now)?;
            let Some((file, _, _)) = self.file.as_ref() else {
                break;
            };
            file.lock_shared()?;
            let current = self.is_current();
            let written = match (&current, self.file.as_mut()) {
                (Ok(true), Some((file, _, _))) => Some(file.write_all(lines)),
                _ => None,
            };
            if let Some((file, _, _)) = self.file.as_ref() {
                file.unlock()?;
            }
            match written {
                Some(r) => {
                    r?;
                    return self.catch_up(limiter, now);
                }
                None => {
                    current?;
                }
            }
        }
        Err(io::Error::other("the journal kept being replaced"))
    }

    /// Whether the journal has grown well past the table it holds.
    fn wants_compaction(&self, limiter: &Limiter) -> bool {
        let Some((_, _, offset)) = &self.file else {
            return false;
        };
        let table = limiter.len() as u64 * LINE_BYTES;
        *offset > COMPACT_BYTES && *offset > COMPACT_RATIO * table
    }

    /// Replaces the journal by the table saved whole, under an exclusive lock (appenders
    /// wait, then see the new file); this process then reads the new file from its start.
    fn compact(&mut self, limiter: &Limiter, now: Duration) -> io::Result<()> {
        self.catch_up(limiter, now)?;
        let Some((file, _, _)) = self.file.as_ref() else {
            return Ok(());
        };
        file.lock()?;
        let replaced: io::Result<bool> = (|| {
            if !self.is_current()? {
                // Another process compacted first: nothing to do.
                return Ok(false);
            }
            // Under the lock nobody appends: the table is the whole journal.
            self.catch_up(limiter, now)?;
            let text = limiter.save(now);
            let dir = self.dir()?;
            crate::durable::replace(dir, ".rate-limits", dir, STATE_FILE, text.as_bytes(), 0o600)?;
            Ok(true)
        })();
        if let Some((file, _, _)) = self.file.as_ref() {
            file.unlock()?;
        }
        if replaced? {
            // Read back from the new file, which others may already append to.
            self.file = None;
            self.catch_up(limiter, now)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::rate_limit::RateLimitConfig;

    fn shared(root: &std::path::Path) -> SharedLimits {
        let config = RateLimitConfig {
            messages_per_hour_per_user: 3,
            recipients_per_hour_per_address: 1,
            ..Default::default()
        };
        let limiter = Limiter::new(&config, &[]).unwrap();
        SharedLimits::new(limiter, root.to_path_buf())
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn processes_share_one_count_through_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (shared(dir.path()), shared(dir.path()));
        let s = a.sender(Some("alice"), None);
        // Both look first (as two inetd sessions open at once), then each sends.
        assert_eq!(a.check_mail(&s, secs(0)), None);
        assert_eq!(b.check_mail(&s, secs(0)), None);
        a.record(&s, 1, secs(0));
        b.record(&s, 1, secs(0));
        a.record(&s, 1, secs(0));
        // Three in all: both refuse the fourth, and so does a process started now.
        assert!(a.check_mail(&s, secs(1)).is_some());
        assert!(b.check_mail(&s, secs(1)).is_some());
        let c = shared(dir.path());
        assert!(c.check_mail(&s, secs(1)).is_some());
        // A process's own message counts once, not twice (it reads its own line back).
        let d = tempfile::tempdir().unwrap();
        let alone = shared(d.path());
        for _ in 0..3 {
            assert_eq!(alone.check_mail(&s, secs(0)), None);
            alone.record(&s, 1, secs(0));
        }
        assert!(alone.check_mail(&s, secs(0)).is_some());
    }

    #[test]
    fn compaction_keeps_the_counts_of_every_process() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (shared(dir.path()), shared(dir.path()));
        let path = dir.path().join(STATE_FILE);
        // Many addresses' recipients until the journal is compacted at least once.
        let mut n = 0u32;
        let mut compacted = false;
        let mut last = std::fs::metadata(&path).map(|m| m.ino()).ok();
        while !compacted {
            let ip = IpAddr::from((0x0a00_0000u32 + n % 50).to_be_bytes());
            let who = if n.is_multiple_of(2) { &a } else { &b };
            let s = who.sender(Some("alice"), Some(ip));
            who.record(&s, 1, secs(u64::from(n) / 1000));
            let ino = std::fs::metadata(&path).unwrap().ino();
            compacted = last.is_some_and(|l| l != ino);
            last = Some(ino);
            n += 1;
            assert!(n < 100_000, "never compacted");
        }
        assert!(std::fs::metadata(&path).unwrap().len() < COMPACT_BYTES);
        // Both still see alice over her 3 messages and the same table.
        let s = a.sender(Some("alice"), None);
        assert!(a.check_mail(&s, secs(200)).is_some());
        assert!(b.check_mail(&s, secs(200)).is_some());
        assert_eq!(a.limiter.len(), b.limiter.len());
        assert_eq!(a.limiter.len(), 51);
        // A clean stop compacts; a new process reads the same table.
        a.stop(secs(200));
        let c = shared(dir.path());
        assert!(c.check_mail(&s, secs(200)).is_some());
        assert_eq!(c.limiter.len(), 51);
    }

    #[test]
    fn a_journal_that_cannot_be_opened_counts_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(STATE_FILE)).unwrap();
        let l = shared(dir.path());
        let s = l.sender(Some("alice"), None);
        for _ in 0..3 {
            assert_eq!(l.check_mail(&s, secs(0)), None);
            l.record(&s, 1, secs(0));
        }
        assert!(l.check_mail(&s, secs(0)).is_some());
    }
}
