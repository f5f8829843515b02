//! "Something changed in this folder": the event source of an IMAP IDLE (RFC 2177) or of a
//! selected session between commands (issue 13). It says only *that* `new/` or `cur/` changed
//! (a delivery, an expunge, a flag rename by anyone); [`super::mailbox::Mailbox::sync`] then
//! finds out what.
//!
//! Local filesystems: inotify(7) on the folder's `new/` and `cur/` ([`crate::os::inotify_dirs`],
//! the very directories the Maildir holds open), read through a tokio [`AsyncFd`], so 10,000
//! idle sessions cost 10,000 fds and no thread or timer each. Network and FUSE filesystems
//! (detected with statfs, [`crate::os::on_network_fs`]), where inotify misses other hosts'
//! changes, and any failure to set inotify up (no `/proc`, `max_user_watches` reached): a poll
//! every [`POLL_INTERVAL`] of the two directories' mtime, size and inode, and the uid list's
//! (Dovecot appends to it in place).
//!
//! A change may be reported that a sync then finds to be nothing (our own sync's move from
//! `new/` to `cur/`, a temporary file); a caller just syncs again. Events that arrive between
//! two calls are not lost: they wait in the inotify queue, or in the poll's snapshot.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, SystemTime};

use tokio::io::unix::AsyncFd;

use super::uidlist::UIDLIST_FILE;
use super::{Maildir, Sub};

/// How often a folder on a network filesystem is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How a [`Watch`] learns of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// inotify.
    Inotify,
    /// Polling at this interval.
    Poll(Duration),
}

/// What the poll compares: (mtime, size, inode) of `new/`, `cur/` and the uid list.
type Snapshot = Vec<Option<(SystemTime, u64, u64)>>;

/// A change watch on one folder (see the module doc).
#[derive(Debug)]
pub struct Watch {
    maildir: Maildir,
    inotify: Option<AsyncFd<OwnedFd>>,
    interval: Duration,
    last: Snapshot,
}

fn snapshot(md: &Maildir) -> Snapshot {
    let root = md.root_dir();
    ["new", "cur", UIDLIST_FILE]
        .iter()
        .map(|n| root.stat(n).ok().map(|m| (m.mtime, m.len, m.ino)))
        .collect()
}

impl Watch {
    /// Watches folder `md` (inotify where it works, else polling). Must be called within a
    /// tokio runtime.
    pub fn new(md: &Maildir) -> io::Result<Watch> {
        let dirs = [md.sub_dir(Sub::New).as_fd(), md.sub_dir(Sub::Cur).as_fd()];
        let remote = dirs.iter().any(|d| crate::os::on_network_fs(*d));
        let inotify = if remote {
            None
        } else {
            crate::os::inotify_dirs(&dirs)
                .ok()
                .and_then(|fd| crate::os::async_fd(fd).ok())
        };
        Ok(Watch {
            maildir: md.clone(),
            inotify,
            interval: POLL_INTERVAL,
            last: snapshot(md),
        })
    }

    /// A watch that polls every `interval` whatever the filesystem (for tests, and for sites
    /// whose filesystem statfs does not tell apart).
    pub fn polling(md: &Maildir, interval: Duration) -> Watch {
        Watch {
            maildir: md.clone(),
            inotify: None,
            interval,
            last: snapshot(md),
        }
    }

    /// How this watch learns of changes.
    pub fn mode(&self) -> Mode {
        match self.inotify {
            Some(_) => Mode::Inotify,
            None => Mode::Poll(self.interval),
        }
    }

    /// Waits until something changed in the folder since the previous call (or since the
    /// watch was made). Cancel-safe: dropping the future loses no change.
    pub async fn changed(&mut self) -> io::Result<()> {
        if let Some(fd) = &self.inotify {
            loop {
                let mut ready = fd.readable().await?;
                let n = crate::os::inotify_drain(fd.get_ref().as_fd())?;
                ready.clear_ready();
                if n > 0 {
                    return Ok(());
                }
            }
        }
        loop {
            let now = snapshot(&self.maildir);
            if now != self.last {
                self.last = now;
                return Ok(());
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every wait is bounded: a missed change fails the test instead of hanging it.
    const BOUND: Duration = Duration::from_secs(20);

    /// Waits (bounded) for `w` to report a change.
    async fn woken(w: &mut Watch) {
        let r = tokio::time::timeout(BOUND, w.changed()).await;
        assert!(matches!(r, Ok(Ok(()))), "{r:?}");
    }

    #[tokio::test]
    async fn deliveries_renames_and_expunges_wake_the_watch_in_both_modes() {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::create(d.path().join("Maildir")).unwrap();
        let mut w = Watch::new(&md).unwrap();
        assert_eq!(w.mode(), Mode::Inotify, "tmpfs/ext4 has inotify");
        let mut p = Watch::polling(&md, Duration::from_millis(20));
        // Nothing yet: neither reports a change (bounded by a short wait, no timing asserted).
        let quiet = tokio::time::timeout(Duration::from_millis(200), w.changed()).await;
        assert!(quiet.is_err(), "no change, no event");
        let quiet = tokio::time::timeout(Duration::from_millis(200), p.changed()).await;
        assert!(quiet.is_err(), "no change, no event (poll)");
        // A delivery made before the wait starts is not lost.
        let e = md.deliver(b"a\n").unwrap();
        woken(&mut w).await;
        woken(&mut p).await;
        // A delivery while waiting, from another thread.
        let md2 = md.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            md2.deliver(b"b\n").unwrap();
        });
        woken(&mut w).await;
        t.join().unwrap();
        // A flag rename into cur/ and an expunge.
        let entry = md.entry(Sub::New, &e.unique).unwrap();
        let moved = md
            .move_to_cur(&entry, &super::super::Flags::parse("S"))
            .unwrap();
        woken(&mut w).await;
        woken(&mut p).await;
        md.delete(&moved).unwrap();
        woken(&mut w).await;
        woken(&mut p).await;
    }
}
