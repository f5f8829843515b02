//! A selected IMAP mailbox: the operations mimapd's mailbox commands call (issue 13), on top of
//! a folder's [`View`] (UIDs in Dovecot's `dovecot-uidlist`).
//!
//! - [`Mailbox::open`] a folder for SELECT ([`Access::ReadWrite`]: this session takes the
//!   \Recent messages no other session was given, RFC 3501 §2.3.2) or EXAMINE
//!   ([`Access::ReadOnly`]: no \Recent taken, no change allowed, RFC 3501 §6.3.2), or as the
//!   destination of COPY/MOVE/APPEND ([`Access::Target`]: changes allowed, no \Recent taken).
//! - [`Mailbox::sync`] the changes since the last sync: new messages (with their UIDs), flag
//!   changes made by others, expunges (what the session reports as EXISTS, FETCH, EXPUNGE).
//! - [`Mailbox::store`] flags (a rename of the info part, `:2,FLAGS`; keywords are letters
//!   from `dovecot-keywords`), [`Mailbox::expunge`] (removes the files).
//! - [`Mailbox::append`] a message staged in `tmp/` ([`super::Maildir::stage`], the APPEND
//!   literal streamed there), committed with flags and INTERNALDATE, returning its UID (for
//!   APPENDUID, RFC 4315) once the file and the uid list are durable.
//! - [`Mailbox::copy_to`] / [`Mailbox::move_to`] another mailbox, returning (source UID,
//!   destination UID) pairs for COPYUID (RFC 4315 §3). COPY writes new files through the one
//!   Maildir writer; MOVE (RFC 6851) renames each file into the other folder, so a crash leaves
//!   every message in exactly one of the two.
//!
//! Keyword letters are per folder, so copying and moving translate them by name.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::SystemTime;

use super::uidlist::View;
use super::{Flags, Maildir, Staging, Sub};

/// How a mailbox is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// SELECT: changes allowed, \Recent taken.
    ReadWrite,
    /// EXAMINE: read only.
    ReadOnly,
    /// The destination of a COPY, MOVE or APPEND: changes allowed, no \Recent taken (the
    /// messages stay \Recent for the session that selects the folder, RFC 3501 §6.4.7).
    Target,
}

/// What changed since the previous [`Mailbox::sync`] (UIDs, ascending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Messages that appeared.
    pub new: Vec<u32>,
    /// Messages whose flags another session or program changed.
    pub flags: Vec<u32>,
    /// Messages that are gone.
    pub expunged: Vec<u32>,
}

/// A selected mailbox (see the module doc).
#[derive(Debug)]
pub struct Mailbox {
    view: View,
    access: Access,
    recent: BTreeSet<u32>,
    seen: BTreeMap<u32, Flags>,
}

fn read_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "mailbox is open read-only (EXAMINE)",
    )
}

impl Mailbox {
    /// Opens folder `folder` (`INBOX`, or a Maildir++ name, [`super::folder_dir_name`]) of the
    /// user's Maildir `root`; NotFound when it does not exist (never created here).
    pub fn open(root: &Maildir, folder: &str, access: Access) -> io::Result<Mailbox> {
        if !root.has_folder(folder) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no folder {folder:?}"),
            ));
        }
        let md = root.folder(folder)?;
        let mut view = View::open(&md)?;
        let recent = if access == Access::ReadWrite {
            view.sync_claiming(true)?.into_iter().collect()
        } else {
            BTreeSet::new()
        };
        let seen = view
            .messages()
            .iter()
            .map(|m| (m.uid, m.flags().clone()))
            .collect();
        Ok(Mailbox {
            view,
            access,
            recent,
            seen,
        })
    }

    /// The folder's view as of the last sync (messages, UIDVALIDITY, UIDNEXT, keywords).
    pub fn view(&self) -> &View {
        &self.view
    }

    /// Whether message `uid` is \Recent in this session.
    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(&uid)
    }

    /// How many messages are \Recent in this session.
    pub fn recent_count(&self) -> usize {
        self.recent.len()
    }

    /// How the mailbox was opened.
    pub fn access(&self) -> Access {
        self.access
    }

    /// Rescans the folder and reports what changed since the last call (see [`Changes`]).
    pub fn sync(&mut self) -> io::Result<Changes> {
        let claimed = self.view.sync_claiming(self.access == Access::ReadWrite)?;
        self.recent.extend(claimed);
        let mut changes = Changes::default();
        let mut now: BTreeMap<u32, Flags> = BTreeMap::new();
        for m in self.view.messages() {
            match self.seen.get(&m.uid) {
                None => changes.new.push(m.uid),
                Some(f) if f != m.flags() => changes.flags.push(m.uid),
                Some(_) => {}
            }
            now.insert(m.uid, m.flags().clone());
        }
        changes.expunged = self
            .seen
            .keys()
            .filter(|u| !now.contains_key(u))
            .copied()
            .collect();
        for u in &changes.expunged {
            self.recent.remove(u);
        }
        self.seen = now;
        Ok(changes)
    }

    /// The flag letter for keyword `name` in this folder (given one when new), None when not a
    /// valid keyword or none is left (RFC 3501 §2.3.2: the server may refuse new keywords).
    pub fn keyword_letter(&mut self, name: &str) -> io::Result<Option<char>> {
        if self.access == Access::ReadOnly {
            return Ok(self.view.keywords().letter(name));
        }
        self.view.keyword_letter(name)
    }

    /// Sets the flags of message `uid` (durable on return; the UID stays). Ok(false) when it
    /// was expunged meanwhile.
    pub fn store(&mut self, uid: u32, flags: &Flags) -> io::Result<bool> {
        if self.access == Access::ReadOnly {
            return Err(read_only());
        }
        let done = self.view.set_flags(uid, flags)?;
        if done {
            // Our own change: not reported back as someone else's.
            self.seen.insert(uid, flags.clone());
        }
        Ok(done)
    }

    /// Removes the files of messages `uids` (EXPUNGE, UID EXPUNGE) durably; returns the UIDs
    /// removed. The next [`Mailbox::sync`] reports them as expunged.
    pub fn expunge(&mut self, uids: &[u32]) -> io::Result<Vec<u32>> {
        if self.access == Access::ReadOnly {
            return Err(read_only());
        }
        let md = self.view.maildir().clone();
        let mut gone = Vec::new();
        for &uid in uids {
            if let Some(m) = self.view.get(uid) {
                if md.delete(&m.entry)? {
                    gone.push(uid);
                }
            }
        }
        md.sync()?;
        Ok(gone)
    }

    /// The UIDs of the messages flagged \Deleted (what a plain EXPUNGE removes).
    pub fn deleted(&self) -> Vec<u32> {
        self.view
            .messages()
            .iter()
            .filter(|m| m.flags().contains(Flags::TRASHED))
            .map(|m| m.uid)
            .collect()
    }

    /// A new message file in this folder's `tmp/` for an APPEND literal.
    pub fn stage(&self) -> io::Result<Staging> {
        self.view.maildir().stage()
    }

    /// Commits `staged` with `flags` (letters, keywords from [`Mailbox::keyword_letter`]) and
    /// INTERNALDATE `date`, assigns its UID and returns it, both durable.
    pub fn append(
        &mut self,
        staged: Staging,
        flags: &Flags,
        date: Option<SystemTime>,
    ) -> io::Result<u32> {
        if self.access == Access::ReadOnly {
            return Err(read_only());
        }
        let d = staged.commit(flags, date)?;
        self.uid_after_sync(&d.unique)
    }

    /// The UID of base name `base`, after a sync of the view (which assigns it, durably).
    /// The message stays unreported to this session until its next [`Mailbox::sync`].
    fn uid_after_sync(&mut self, base: &str) -> io::Result<u32> {
        self.view.sync()?;
        self.view
            .messages()
            .iter()
            .find(|m| m.base() == base)
            .map(|m| m.uid)
            .ok_or_else(|| io::Error::other("appended message vanished before it got a UID"))
    }

    /// `flags` of a message here, with keyword letters translated to `dst`'s letters by name
    /// (a keyword `dst` cannot take is dropped).
    fn flags_for(&self, flags: &Flags, dst: &mut Mailbox) -> io::Result<Flags> {
        let mut out = String::new();
        for c in flags.as_str().chars() {
            if !c.is_ascii_lowercase() {
                out.push(c);
            } else if let Some(name) = self.view.keywords().name(c) {
                if let Some(l) = dst.keyword_letter(name)? {
                    out.push(l);
                }
            }
        }
        Ok(Flags::parse(&out))
    }

    /// COPY / UID COPY: a copy of each message `uids` (that still exists) in `dst`, with its
    /// flags and INTERNALDATE; (source UID, destination UID) pairs, durable on return.
    pub fn copy_to(&mut self, uids: &[u32], dst: &mut Mailbox) -> io::Result<Vec<(u32, u32)>> {
        if dst.access == Access::ReadOnly {
            return Err(read_only());
        }
        let mut bases = Vec::new();
        for &uid in uids {
            let Some(m) = self.view.get(uid).cloned() else {
                continue;
            };
            // Renamed by another program since the scan: found by its base name. Expunged by
            // another session meanwhile: not copied (RFC 3501 §6.4.7 allows it).
            let Some(mut src) = self.view.open_message(uid)? else {
                continue;
            };
            let flags = self.flags_for(m.flags(), dst)?;
            let mut staged = dst.stage()?;
            io::copy(&mut src, &mut staged)?;
            let d = staged.commit(&flags, Some(m.entry.mtime))?;
            bases.push((uid, d.unique));
        }
        dst.pairs(bases)
    }

    /// The destination UIDs of `(source UID, base name)` after one sync of this mailbox.
    fn pairs(&mut self, bases: Vec<(u32, String)>) -> io::Result<Vec<(u32, u32)>> {
        if bases.is_empty() {
            return Ok(Vec::new());
        }
        self.view.sync()?;
        let by_base: BTreeMap<&str, u32> = self
            .view
            .messages()
            .iter()
            .map(|m| (m.base(), m.uid))
            .collect();
        Ok(bases
            .iter()
            .filter_map(|(src, b)| Some((*src, *by_base.get(b.as_str())?)))
            .collect())
    }

    /// MOVE / UID MOVE (RFC 6851): each message `uids` renamed into `dst` (keeping its base
    /// name, flags and INTERNALDATE), both folders fsynced; (source UID, destination UID)
    /// pairs. The next [`Mailbox::sync`] here reports the sources as expunged.
    pub fn move_to(&mut self, uids: &[u32], dst: &mut Mailbox) -> io::Result<Vec<(u32, u32)>> {
        if self.access == Access::ReadOnly || dst.access == Access::ReadOnly {
            return Err(read_only());
        }
        let md = self.view.maildir().clone();
        let dst_md = dst.view.maildir().clone();
        let mut bases = Vec::new();
        for &uid in uids {
            let Some(m) = self.view.get(uid).cloned() else {
                continue;
            };
            let flags = self.flags_for(m.flags(), dst)?;
            let name = format!("{}:2,{}", m.entry.unique, flags.as_str());
            match md.sub_dir(m.entry.sub).rename_noreplace(
                &m.entry.name,
                dst_md.sub_dir(Sub::Cur),
                &name,
            ) {
                Ok(()) => bases.push((uid, m.entry.unique.clone())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        // Durable in the destination before it is gone from the source's directory listing
        // on disk (a crash in between: the file is in the destination, listed there).
        dst_md.sync()?;
        md.sync()?;
        dst.pairs(bases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, Maildir) {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::create(d.path().join("Maildir")).unwrap();
        (d, md)
    }

    #[test]
    fn sync_reports_new_flag_changes_and_expunges_and_recent_goes_to_one_session() {
        let (_d, md) = root();
        md.deliver(b"Subject: a\n\na\n").unwrap();
        let mut a = Mailbox::open(&md, "INBOX", Access::ReadWrite).unwrap();
        let mut b = Mailbox::open(&md, "inbox", Access::ReadWrite).unwrap();
        let ro = Mailbox::open(&md, "INBOX", Access::ReadOnly).unwrap();
        assert!(a.is_recent(1) && !b.is_recent(1) && !ro.is_recent(1));
        assert!(ro.view().get(1).is_some());
        md.deliver(b"Subject: b\n\nb\n").unwrap();
        assert!(b.store(1, &Flags::parse("S")).unwrap());
        let ch = a.sync().unwrap();
        assert_eq!(
            ch,
            Changes {
                new: vec![2],
                flags: vec![1],
                expunged: vec![]
            }
        );
        assert!(a.is_recent(2));
        // b's own store is not reported back to b; its sync sees the new message, not \Recent.
        let ch = b.sync().unwrap();
        assert_eq!(ch.new, vec![2]);
        assert!(ch.flags.is_empty() && !b.is_recent(2));
        assert!(b.store(2, &Flags::parse("T")).unwrap());
        let del = b.deleted();
        assert_eq!(b.expunge(&del).unwrap(), vec![2]);
        assert_eq!(a.sync().unwrap().expunged, vec![2]);
        assert_eq!(a.recent_count(), 1);
        assert!(Mailbox::open(&md, "Nope", Access::ReadOnly).is_err());
        let mut ro = ro;
        assert!(ro.store(1, &Flags::empty()).is_err());
    }

    #[test]
    fn append_copy_and_move_return_uid_pairs_and_translate_keywords() {
        let (_d, md) = root();
        md.folder("Archive").unwrap();
        let mut inbox = Mailbox::open(&md, "INBOX", Access::ReadWrite).unwrap();
        let mut arch = Mailbox::open(&md, "Archive", Access::ReadWrite).unwrap();
        // Give the Archive a keyword first, so letters differ between the folders.
        assert_eq!(arch.keyword_letter("other").unwrap(), Some('a'));
        let mut st = inbox.stage().unwrap();
        std::io::Write::write_all(&mut st, b"Subject: x\r\n\r\nbody\r\n").unwrap();
        assert_eq!(st.size(), 20);
        let date = crate::clock::from_unix(1_000_000_000, 0);
        let k = inbox.keyword_letter("$Junk").unwrap().unwrap();
        let uid = inbox
            .append(st, &Flags::parse(&format!("S{k}")), Some(date))
            .unwrap();
        assert_eq!(uid, 1);
        let m = inbox.view().get(1).unwrap().clone();
        assert_eq!(m.entry.mtime, date);
        assert_eq!(m.flags().as_str(), "Sa");
        // A dropped staging leaves nothing in tmp/.
        drop(inbox.stage().unwrap());
        assert_eq!(std::fs::read_dir(md.path().join("tmp")).unwrap().count(), 0);
        md.deliver(b"Subject: y\n\ny\n").unwrap();
        inbox.sync().unwrap();
        let pairs = inbox.copy_to(&[1, 2, 9], &mut arch).unwrap();
        assert_eq!(pairs, vec![(1, 1), (2, 2)]);
        let copied = arch.view().get(1).unwrap();
        assert_eq!(copied.flags().as_str(), "Sb", "$Junk is b in the Archive");
        assert_eq!(copied.entry.mtime, date);
        let pairs = inbox.move_to(&[2], &mut arch).unwrap();
        assert_eq!(pairs, vec![(2, 3)]);
        assert_eq!(inbox.sync().unwrap().expunged, vec![2]);
        assert_eq!(arch.view().messages().len(), 3);
        assert_eq!(
            std::fs::read(&arch.view().get(3).unwrap().entry.path).unwrap(),
            b"Subject: y\n\ny\n"
        );
    }
}
