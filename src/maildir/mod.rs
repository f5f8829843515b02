//! The one Maildir writer and reader of mailkit (mdeliver, mrelayd, mpopd, mimapd all use this).
//!
//! Format: <https://cr.yp.to/proto/maildir.html>, Maildir++ folders as Courier and Dovecot use
//! them (<https://www.courier-mta.org/imap/README.maildirquota.html>), flags in the `:2,` info suffix
//! as Dovecot and mutt write them (sorted ASCII, no duplicates).
//!
//! # API
//! - [`Maildir::open`] an existing Maildir (`tmp/`, `new/`, `cur/` must exist);
//!   [`Maildir::create`] it when missing (directories mode 0700, parents as needed, fsynced).
//! - [`Maildir::folder`] a Maildir++ subfolder (`Sent`, `Lists/Rust` or `Lists.Rust` →
//!   `.Lists.Rust/`), created when missing with an empty `maildirfolder` file as Dovecot does.
//!   Non-ASCII names are stored in IMAP modified UTF-7 ([`folder_dir_name`]).
//! - [`Maildir::deliver`] / [`Maildir::deliver_from`] store one message durably and return
//!   [`Delivered`] (path, unique name, size). Steps: unique name ([`unique_base`]), write into
//!   `tmp/`, fdatasync, `renameat2(RENAME_NOREPLACE)` into `new/` (or `link()`+`unlink()` where the
//!   filesystem lacks it) so an existing file is never replaced, fsync `new/`; on any failure the
//!   tmp file (and a half-acknowledged `new/` file) is removed. File names are
//!   `<unique>,S=<size>,W=<size with CRLF line ends>` (Dovecot's fields: `S=` is the byte size on
//!   disk, `W=` the RFC 822 size that POP3 and IMAP report; [`SizeCounter`] counts it).
//!   [`Maildir::deliver_tagged`] adds `,X=<tag>` before them: a fetcher's key ([`tag_of`]).
//! - [`Maildir::stage`] a message written piecewise into `tmp/` (an IMAP APPEND literal) and
//!   [`Staging::commit`] it with flags and an arrival time (into `cur/` as `:2,<flags>`).
//! - [`Maildir::list`] one of `new/`/`cur/`, [`Maildir::list_all`] both (new first, deduplicated):
//!   [`Entry`] carries the unique name (stable, for UIDL), flags, size (from `,S=` or stat),
//!   RFC 822 size when known, path and mtime. Dot files are skipped as the spec requires.
//! - [`Maildir::move_to_cur`], which also sets the flags of a message already in `cur/`
//!   (renames, never replacing; a rename keeps the mtime, which is the arrival time / IMAP
//!   INTERNALDATE and is never changed),
//!   [`Maildir::delete`], and [`Maildir::sync`] to fsync `new/` and `cur/` after a batch of
//!   those (they do not fsync on their own, so a POP3 session can expunge many messages cheaply).
//!
//! # Symlinks
//! A Maildir belongs to its user, who may plant symlinks in it; a process delivering or reading
//! for that user must never write, read or rename through one. So a [`Maildir`] holds directory
//! fds ([`crate::fsroot::Dir`]) for its root, `tmp/`, `new/` and `cur/`, opened once without
//! following symlinks, and every file and folder is opened, created (`O_EXCL`), renamed and
//! removed relative to them (`*at` calls, `O_NOFOLLOW`). A Maildir whose root or `tmp/`, `new/`,
//! `cur/` (or a folder's directory) is a symlink is refused with an error saying "symlink in path"
//! ([`crate::fsroot::is_refusal`]) unless it is opened with [`Links::FollowDirs`] (the admin's
//! `allow_symlinked_maildir`); message files and the files readers keep (locks, caches) are
//! never followed. The components *above* the root are the admin's and are followed
//! (`/home -> /data/home` works). Names that are not UTF-8 are not listed (Maildir names are
//! ASCII).
//!
//! # IMAP UIDs
//! [`uidlist`]: per-folder UIDVALIDITY, UIDNEXT and message UIDs in Dovecot's own
//! `dovecot-uidlist`, keyword letters in `dovecot-keywords`, both under Dovecot's dotlock
//! protocol ([`dotlock`]), so Dovecot and mimapd can serve one Maildir; and [`uidlist::View`], a
//! folder's messages in UID order.
//!
//! Errors are plain `std::io::Error`s; callers attach context and exit codes
//! (`crate::exit::io_is_temporary` tells disk full from permanent failures).

use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use crate::durable;
use crate::fsroot::{Dir, Meta};

pub mod dotlock;
pub mod folders;
pub mod mailbox;
pub mod uidlist;
pub mod watch;

/// Mode of every directory we create (Maildir spec: private to the user).
pub const DIR_MODE: u32 = 0o700;
/// Mode of every message file we create.
pub const FILE_MODE: u32 = 0o600;
/// How many fresh unique names delivery tries when a name is already taken in `tmp/` or `new/`
/// (names are unique by construction, so more than one attempt means a broken clock or a clash).
pub const MAX_NAME_ATTEMPTS: u32 = 8;
/// The Maildir++ marker file Dovecot and Courier put into every subfolder.
pub const FOLDER_MARKER: &str = "maildirfolder";
/// Longest folder name accepted (bytes, before encoding): keeps the directory name below
/// NAME_MAX (255) even after modified UTF-7 growth.
pub const MAX_FOLDER_NAME: usize = 160;
/// Buffer size for copying a message from a reader into `tmp/`.
const COPY_BUFFER: usize = 64 * 1024;

/// Which subdirectory of a Maildir a message is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sub {
    /// `new/`: delivered, not yet seen by any reader; names carry no info suffix.
    New,
    /// `cur/`: seen by a reader; names carry `:2,<flags>`.
    Cur,
}

impl Sub {
    /// The directory name (`new` or `cur`).
    pub fn dir_name(self) -> &'static str {
        match self {
            Sub::New => "new",
            Sub::Cur => "cur",
        }
    }
}

/// Message flags of the `:2,` info suffix: sorted ASCII letters without duplicates, the way
/// Dovecot and mutt write them. Standard flags are upper case (D draft, F flagged, P passed,
/// R replied, S seen, T trashed); Dovecot uses lower case letters for keywords.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Flags(String);

impl Flags {
    /// Draft.
    pub const DRAFT: char = 'D';
    /// Flagged.
    pub const FLAGGED: char = 'F';
    /// Passed (resent/forwarded).
    pub const PASSED: char = 'P';
    /// Replied.
    pub const REPLIED: char = 'R';
    /// Seen.
    pub const SEEN: char = 'S';
    /// Trashed (deleted, to be expunged).
    pub const TRASHED: char = 'T';

    /// No flags.
    pub fn empty() -> Flags {
        Flags(String::new())
    }

    /// Flags from the characters after `:2,`. Only ASCII letters count (Maildir spec: other
    /// characters are reserved); they are sorted and deduplicated.
    pub fn parse(s: &str) -> Flags {
        let mut v: Vec<u8> = s.bytes().filter(u8::is_ascii_alphabetic).collect();
        v.sort_unstable();
        v.dedup();
        Flags(v.into_iter().map(char::from).collect())
    }

    /// Whether `flag` is set.
    pub fn contains(&self, flag: char) -> bool {
        self.0.contains(flag)
    }

    /// These flags plus `flag` (ignored unless an ASCII letter).
    pub fn with(&self, flag: char) -> Flags {
        let mut s = self.0.clone();
        s.push(flag);
        Flags::parse(&s)
    }

    /// These flags without `flag`.
    pub fn without(&self, flag: char) -> Flags {
        Flags(self.0.chars().filter(|&c| c != flag).collect())
    }

    /// The flags as written after `:2,`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message that [`Maildir::deliver`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Full path of the file in `new/`.
    pub path: PathBuf,
    /// The unique name (the file name; in `new/` there is no info suffix).
    pub unique: String,
    /// Bytes written.
    pub size: u64,
}

/// A message being written into `tmp/` ([`Maildir::stage`]): a [`Write`]r that counts the
/// sizes for the file name. Dropped without [`Staging::commit`], the file is removed.
#[derive(Debug)]
pub struct Staging {
    maildir: Maildir,
    name: String,
    file: Option<File>,
    size: u64,
    rfc822: SizeCounter,
}

impl Write for Staging {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("staged message already committed"))?;
        let n = file.write(buf)?;
        self.rfc822.push(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Staging {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Makes the message durable under its final name and returns it: fdatasync, the arrival
    /// time set to `mtime` when given (IMAP APPEND's date-time, RFC 3501 §6.3.11: the
    /// INTERNALDATE), renamed without replacing into `new/` (no flags) or into `cur/` as
    /// `<unique>:2,<flags>`, that directory fsynced. On an error nothing is left.
    pub fn commit(self, flags: &Flags, mtime: Option<SystemTime>) -> io::Result<Delivered> {
        self.finish(None, Some(flags), mtime)
    }

    fn finish(
        mut self,
        tag: Option<&str>,
        flags: Option<&Flags>,
        mtime: Option<SystemTime>,
    ) -> io::Result<Delivered> {
        let md = self.maildir.clone();
        let tmp = &md.dirs.tmp;
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("staged message already committed"))?;
        let synced = (|| {
            if let Some(t) = mtime {
                file.set_modified(t)?;
            }
            file.sync_data()
        })();
        drop(file);
        if let Err(e) = synced {
            let _ = tmp.unlink(&self.name);
            return Err(e);
        }
        let flags = flags.filter(|f| !f.as_str().is_empty());
        let (sub, dest) = match flags {
            Some(_) => ("cur", &md.dirs.cur),
            None => ("new", &md.dirs.new),
        };
        let (size, rfc822) = (self.size, self.rfc822.size());
        let mut base = self.name.clone();
        let mut attempt = 0;
        let (unique, name) = loop {
            let unique = match tag {
                Some(t) => format!("{base},X={t},S={size},W={rfc822}"),
                None => format!("{base},S={size},W={rfc822}"),
            };
            let name = match flags {
                Some(f) => format!("{unique}:2,{}", f.as_str()),
                None => unique.clone(),
            };
            // Syncs the directory, and takes the message back out of it when that fails (not
            // durable, so not delivered).
            match durable::rename_noreplace(tmp, &self.name, dest, &name) {
                Ok(()) => break (unique, name),
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists
                        && attempt + 1 < MAX_NAME_ATTEMPTS =>
                {
                    attempt += 1;
                    base = unique_base();
                }
                Err(e) => {
                    let _ = tmp.unlink(&self.name);
                    return Err(e);
                }
            }
        };
        // Renamed away: nothing for drop to remove.
        self.name.clear();
        let path = md.path.join(sub).join(&name);
        Ok(Delivered { path, unique, size })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            self.file = None;
            let _ = self.maildir.dirs.tmp.unlink(&self.name);
        }
    }
}

/// One message file found by [`Maildir::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where it is.
    pub sub: Sub,
    /// The whole file name.
    pub name: String,
    /// The unique name: the file name up to the info separator `:`. Stable across moves and
    /// flag changes, so it serves as the POP3 UIDL.
    pub unique: String,
    /// The info suffix after `:` (`2,FS`), if any.
    pub info: Option<String>,
    /// Flags from a `2,` info suffix (empty otherwise).
    pub flags: Flags,
    /// Size in bytes on disk: from `,S=` in the name, else from stat.
    pub size: u64,
    /// RFC 822 size (line ends counted as CRLF) from `,W=` in the name, when present.
    pub rfc822_size: Option<u64>,
    /// Full path.
    pub path: PathBuf,
    /// Modification time: the arrival time (IMAP INTERNALDATE).
    pub mtime: SystemTime,
}

impl Entry {
    /// The entry for file `name` at `path` in `sub`, with `meta` from its stat.
    fn new(sub: Sub, name: String, path: PathBuf, meta: &Meta) -> Entry {
        let (unique, info, flags, size, rfc822_size) = parse_name(&name);
        Entry {
            sub,
            unique,
            info,
            flags,
            size: size.unwrap_or(meta.len),
            rfc822_size,
            path,
            mtime: meta.mtime,
            name,
        }
    }
}

/// The parts of a Maildir file name: (unique, info, flags, `S=` size, `W=` size).
pub fn parse_name(name: &str) -> (String, Option<String>, Flags, Option<u64>, Option<u64>) {
    let (unique, info) = match name.split_once(':') {
        Some((u, i)) => (u, Some(i.to_string())),
        None => (name, None),
    };
    let flags = match info.as_deref().and_then(|i| i.strip_prefix("2,")) {
        Some(f) => Flags::parse(f),
        None => Flags::empty(),
    };
    let mut size = None;
    let mut vsize = None;
    for field in unique.split(',').skip(1) {
        if let Some(v) = field.strip_prefix("S=") {
            size = v.parse().ok();
        } else if let Some(v) = field.strip_prefix("W=") {
            vsize = v.parse().ok();
        }
    }
    (unique.to_string(), info, flags, size, vsize)
}

/// The `,X=` tag [`Maildir::deliver_tagged`] put in a unique name.
pub fn tag_of(unique: &str) -> Option<&str> {
    unique.split(',').skip(1).find_map(|f| f.strip_prefix("X="))
}

/// Whether the Maildir's directories may be symlinks (see the module doc). Files below them
/// are never followed either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Links {
    /// The root, `tmp/`, `new/`, `cur/` and folder directories must not be symlinks (default).
    #[default]
    Refuse,
    /// Follow a symlink at the root, `tmp/`, `new/`, `cur/` or a folder directory (the admin's
    /// `allow_symlinked_maildir = true`).
    FollowDirs,
}

impl Links {
    /// The policy of an `allow_symlinked_maildir` setting.
    pub fn allowing(allow: bool) -> Links {
        if allow {
            Links::FollowDirs
        } else {
            Links::Refuse
        }
    }
}

/// The directory fds of one Maildir, opened once (see the module doc).
#[derive(Debug)]
struct Dirs {
    root: Dir,
    tmp: Dir,
    new: Dir,
    cur: Dir,
}

/// A Maildir on disk (the INBOX, or a Maildir++ subfolder from [`Maildir::folder`]). Holds its
/// directories open; clones share them.
#[derive(Debug, Clone)]
pub struct Maildir {
    path: PathBuf,
    links: Links,
    dirs: Arc<Dirs>,
}

impl PartialEq for Maildir {
    fn eq(&self, other: &Maildir) -> bool {
        self.path == other.path
    }
}

impl Eq for Maildir {}

/// Opens directory `name` in `parent` under the `links` policy.
fn open_sub(parent: &Dir, name: &str, links: Links) -> io::Result<Dir> {
    match links {
        Links::Refuse => parent.open_dir(name),
        Links::FollowDirs => parent.open_dir_following(name),
    }
}

impl Maildir {
    /// An existing Maildir: `tmp/`, `new/` and `cur/` must be directories, and neither they nor
    /// the root may be symlinks.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Maildir> {
        Maildir::open_with(path, Links::Refuse)
    }

    /// [`Maildir::open`] with a symlink policy for its directories.
    pub fn open_with(path: impl AsRef<Path>, links: Links) -> io::Result<Maildir> {
        let path = path.as_ref();
        let root = match links {
            Links::Refuse => Dir::open_root(path)?,
            Links::FollowDirs => Dir::open_root_following(path)?,
        };
        Maildir::from_root(root, links)
    }

    fn from_root(root: Dir, links: Links) -> io::Result<Maildir> {
        let tmp = open_sub(&root, "tmp", links)?;
        let new = open_sub(&root, "new", links)?;
        let cur = open_sub(&root, "cur", links)?;
        Ok(Maildir {
            path: root.path().to_path_buf(),
            links,
            dirs: Arc::new(Dirs {
                root,
                tmp,
                new,
                cur,
            }),
        })
    }

    /// Opens the Maildir, creating it (and missing parents) with mode 0700 when missing. Each
    /// directory created is made durable by fsyncing its parent.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Maildir> {
        Maildir::create_with(path, Links::Refuse)
    }

    /// [`Maildir::create`] with a symlink policy for its directories.
    pub fn create_with(path: impl AsRef<Path>, links: Links) -> io::Result<Maildir> {
        let path = path.as_ref();
        match Maildir::open_with(path, links) {
            Ok(md) => return Ok(md),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        create_dir_durable(path)?;
        let root = match links {
            Links::Refuse => Dir::open_root(path)?,
            Links::FollowDirs => Dir::open_root_following(path)?,
        };
        create_subdirs(&root)?;
        Maildir::from_root(root, links)
    }

    /// The Maildir's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sub_dir(&self, sub: Sub) -> &Dir {
        match sub {
            Sub::New => &self.dirs.new,
            Sub::Cur => &self.dirs.cur,
        }
    }

    /// The Maildir++ subfolder `name` of this (INBOX) Maildir, created when missing (with the
    /// `maildirfolder` marker file). `INBOX` (any case) is this Maildir itself; see
    /// [`folder_dir_name`] for the name rules.
    pub fn folder(&self, name: &str) -> io::Result<Maildir> {
        let Some(dir) = folder_dir_name(name)? else {
            return Ok(self.clone());
        };
        match self.open_folder_dir(&dir) {
            Ok(md) => return Ok(md),
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            Err(_) => {}
        }
        let root = &self.dirs.root;
        if root.create_dir(&dir, DIR_MODE)? {
            root.sync()?;
        }
        let folder = open_sub(root, &dir, self.links)?;
        create_subdirs(&folder)?;
        match folder.create_new(FOLDER_MARKER, FILE_MODE) {
            Ok(f) => f.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        folder.sync()?;
        Maildir::from_root(folder, self.links)
    }

    /// Whether folder `name` exists (INBOX always does); never creates anything.
    pub fn has_folder(&self, name: &str) -> bool {
        match folder_dir_name(name) {
            Ok(None) => true,
            Ok(Some(dir)) => self.open_folder_dir(&dir).is_ok(),
            Err(_) => false,
        }
    }

    fn open_folder_dir(&self, dir: &str) -> io::Result<Maildir> {
        let folder = open_sub(&self.dirs.root, dir, self.links)?;
        Maildir::from_root(folder, self.links)
    }

    /// The Maildir's own directory handle, for files a reader keeps next to the messages
    /// (locks, caches): opened through it, they are never reached through a symlink either.
    pub fn root_dir(&self) -> &Dir {
        &self.dirs.root
    }

    /// Stores `data` as a new message (see the module doc for the steps).
    pub fn deliver(&self, data: &[u8]) -> io::Result<Delivered> {
        self.deliver_from(data)
    }

    /// Stores the bytes read from `reader` as a new message. Returns only once the file and
    /// `new/` are fsynced; on any error nothing is left in `tmp/` or `new/`.
    pub fn deliver_from<R: Read>(&self, reader: R) -> io::Result<Delivered> {
        self.deliver_inner(reader, None)
    }

    /// [`Maildir::deliver`] with `tag` (ASCII letters and digits) in the file name, as a
    /// `,X=<tag>` field before `,S=`: the key of a fetching program (mfetch: account, folder,
    /// UIDVALIDITY and UID), which finds the message again by it ([`tag_of`]) after a crash
    /// between this delivery and its own record of it.
    pub fn deliver_tagged(&self, data: &[u8], tag: &str) -> io::Result<Delivered> {
        self.deliver_tagged_from(data, tag)
    }

    /// [`Maildir::deliver_tagged`] of the bytes read from `reader` (a message streamed from a
    /// server, never whole in memory); an error from `reader` leaves nothing behind.
    pub fn deliver_tagged_from<R: Read>(&self, reader: R, tag: &str) -> io::Result<Delivered> {
        if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad Maildir tag {tag:?}"),
            ));
        }
        self.deliver_inner(reader, Some(tag))
    }

    fn deliver_inner<R: Read>(&self, mut reader: R, tag: Option<&str>) -> io::Result<Delivered> {
        let mut staged = self.stage()?;
        copy_into(&mut staged, &mut reader)?;
        staged.finish(tag, None, None)
    }

    /// A new message file in `tmp/` to write into (an IMAP APPEND literal streams there as it
    /// arrives); [`Staging::commit`] gives it its final name, dropping it removes it.
    pub fn stage(&self) -> io::Result<Staging> {
        let (name, file) = open_tmp(&self.dirs.tmp)?;
        Ok(Staging {
            maildir: self.clone(),
            name,
            file: Some(file),
            size: 0,
            rfc822: SizeCounter::default(),
        })
    }

    /// Removes a message [`Maildir::deliver`] stored (undoing a delivery that cannot be
    /// completed), made durable.
    pub fn remove_delivered(&self, d: &Delivered) -> io::Result<()> {
        self.dirs.new.unlink(&d.unique)?;
        self.dirs.new.sync()
    }

    /// Opens a listed message for reading; when another program renamed it since it was
    /// listed (moved it from `new/` to `cur/`, changed its flags: the base name stays), the
    /// file with the same base name. NotFound when it was deleted; a symlink planted in its
    /// place is refused.
    pub fn open_message(&self, entry: &Entry) -> io::Result<File> {
        match self.sub_dir(entry.sub).open_read(&entry.name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self.find(&entry.unique)? {
                Some(now) => self.sub_dir(now.sub).open_read(&now.name),
                None => Err(e),
            },
            r => r,
        }
    }

    /// The message whose base name (before `:2,`) is `unique`, wherever it is now (one listing
    /// of `new/` and `cur/`).
    pub fn find(&self, unique: &str) -> io::Result<Option<Entry>> {
        Ok(self.list_all()?.into_iter().find(|e| e.unique == unique))
    }

    /// The messages in `new/` or `cur/`, oldest first (by mtime, then name). Files that vanish
    /// while listing (moved by another reader) are skipped; an unreadable directory is an error.
    pub fn list(&self, sub: Sub) -> io::Result<Vec<Entry>> {
        use rustix::fs::FileType;
        let dir = self.sub_dir(sub);
        let mut out = Vec::new();
        for (os_name, kind) in dir.list()? {
            let Ok(name) = os_name.into_string() else {
                continue;
            };
            if name.starts_with('.') || !matches!(kind, FileType::RegularFile | FileType::Unknown) {
                continue;
            }
            let meta = match dir.stat(&name) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if !meta.is_file() {
                continue;
            }
            let path = dir.path().join(&name);
            out.push(Entry::new(sub, name, path, &meta));
        }
        out.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// The entry for file `name` in `sub` (one stat; NotFound if it is not there).
    pub fn entry(&self, sub: Sub, name: &str) -> io::Result<Entry> {
        let dir = self.sub_dir(sub);
        let meta = dir.stat(name)?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: not a message file", dir.path().join(name).display()),
            ));
        }
        Ok(Entry::new(
            sub,
            name.to_string(),
            dir.path().join(name),
            &meta,
        ))
    }

    /// All messages: `new/` listed first, then `cur/`, so one moved in between is still seen;
    /// a unique name seen twice is reported once (its `cur/` entry). Oldest first.
    pub fn list_all(&self) -> io::Result<Vec<Entry>> {
        let mut all = self.list(Sub::New)?;
        let cur = self.list(Sub::Cur)?;
        let in_cur: std::collections::HashSet<&str> =
            cur.iter().map(|e| e.unique.as_str()).collect();
        all.retain(|e| !in_cur.contains(e.unique.as_str()));
        all.extend(cur);
        all.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.name.cmp(&b.name)));
        Ok(all)
    }

    /// Moves a message into `cur/` with `flags` (from `new/`, or renames it within `cur/` to set
    /// its flags), never replacing an existing file. The mtime is kept (a rename does not touch
    /// it). Not fsynced: call [`Maildir::sync`] after a batch.
    pub fn move_to_cur(&self, entry: &Entry, flags: &Flags) -> io::Result<Entry> {
        let name = format!("{}:2,{}", entry.unique, flags.as_str());
        if entry.sub == Sub::Cur && entry.name == name {
            return Ok(entry.clone());
        }
        let cur = &self.dirs.cur;
        self.sub_dir(entry.sub)
            .rename_noreplace(&entry.name, cur, &name)?;
        let dest = cur.path().join(&name);
        let (unique, info, flags, _, _) = parse_name(&name);
        Ok(Entry {
            sub: Sub::Cur,
            name,
            unique,
            info,
            flags,
            path: dest,
            ..entry.clone()
        })
    }

    /// Deletes a message. Returns false when it was already gone (another session expunged it).
    /// Not fsynced: call [`Maildir::sync`] after a batch.
    pub fn delete(&self, entry: &Entry) -> io::Result<bool> {
        self.remove(entry.sub, &entry.name)
    }

    /// Deletes file `name` in `sub` (false when it was not there). Not fsynced.
    pub fn remove(&self, sub: Sub, name: &str) -> io::Result<bool> {
        match self.sub_dir(sub).unlink(name) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes earlier moves, flag changes and deletions durable (fsyncs `new/` and `cur/`).
    pub fn sync(&self) -> io::Result<()> {
        self.dirs.new.sync()?;
        self.dirs.cur.sync()
    }
}

/// The directory name of Maildir++ folder `name` (`None` for INBOX itself).
///
/// `/` and `.` both separate levels (`Lists/Rust` and `Lists.Rust` are `.Lists.Rust`); a leading
/// `INBOX/` or `INBOX.` is dropped as Courier-style clients send it. Names are encoded in IMAP
/// modified UTF-7 (RFC 3501 section 5.1.3) as Dovecot stores them. Empty levels, `..`, control
/// characters and names longer than [`MAX_FOLDER_NAME`] are refused (InvalidInput), so a name can
/// never leave the Maildir.
pub fn folder_dir_name(name: &str) -> io::Result<Option<String>> {
    let bad = |why: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad folder name {name:?}: {why}"),
        )
    };
    if name.len() > MAX_FOLDER_NAME {
        return Err(bad("too long"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("control character"));
    }
    let mut rest = name;
    if rest.eq_ignore_ascii_case("INBOX") {
        return Ok(None);
    }
    let b = rest.as_bytes();
    if b.len() > 6 && b[..5].eq_ignore_ascii_case(b"INBOX") && matches!(b[5], b'/' | b'.') {
        // bytes 0..6 are ASCII, so 6 is a char boundary
        rest = rest.get(6..).unwrap_or_default();
    }
    let mut dir = String::new();
    for level in rest.split(['/', '.']) {
        if level.is_empty() {
            return Err(bad("empty level"));
        }
        dir.push('.');
        dir.push_str(&mutf7_encode(level));
    }
    if dir.is_empty() {
        return Err(bad("empty"));
    }
    Ok(Some(dir))
}

/// IMAP modified UTF-7 (RFC 3501 section 5.1.3): printable ASCII as is (`&` as `&-`), anything
/// else as `&<modified base64 of UTF-16>-`.
pub fn mutf7_encode(s: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    let mut out = String::new();
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out.push('-');
        pending.clear();
    };
    for c in s.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// The text modified UTF-7 `s` stands for ([`mutf7_encode`] reversed); None when `s` is not
/// modified UTF-7 (RFC 3501 §5.1.3: a bad base64 run, an unpaired surrogate, a run of
/// printable ASCII that should not have been encoded is still accepted).
pub fn mutf7_decode(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find('-')?;
        let run = &after[..end];
        rest = &after[end + 1..];
        if run.is_empty() {
            out.push('&');
            continue;
        }
        let mut bits: u32 = 0;
        let mut nbits = 0;
        let mut units: Vec<u16> = Vec::new();
        let mut bytes: Vec<u8> = Vec::new();
        for c in run.bytes() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b',' => 63,
                _ => return None,
            };
            bits = (bits << 6) | u32::from(v);
            nbits += 6;
            if nbits >= 8 {
                nbits -= 8;
                bytes.push(((bits >> nbits) & 0xff) as u8);
            }
        }
        // RFC 2152 (modified by RFC 3501 §5.1.3): the run ends on a whole UTF-16 unit, its
        // spare bits (fewer than 6) zero; "&Z-" would decode to nothing and not come back.
        if !bytes.len().is_multiple_of(2) || nbits >= 6 || bits & ((1 << nbits) - 1) != 0 {
            return None;
        }
        for pair in bytes.chunks(2) {
            units.push(u16::from_be_bytes([pair[0], pair[1]]));
        }
        out.push_str(&String::from_utf16(&units).ok()?);
    }
    out.push_str(rest);
    Some(out)
}

/// This host's name for unique names, with `/` as `\057` and `:` as `\072` (Maildir spec), and
/// `,` as `\054` so it cannot be mistaken for a `,S=` field.
pub fn hostname() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| sanitize_hostname(&gethostname::gethostname()))
}

/// See [`hostname`].
pub fn sanitize_hostname(raw: &OsStr) -> String {
    let raw = raw.to_string_lossy();
    let mut out = String::new();
    for c in raw.chars() {
        match c {
            '/' => out.push_str("\\057"),
            ':' => out.push_str("\\072"),
            ',' => out.push_str("\\054"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push_str("localhost");
    }
    out
}

/// A fresh unique name without size fields:
/// `<secs>.M<usecs>P<pid>Q<counter>R<random>.<hostname>` (Maildir spec: time, microseconds,
/// process id, per-process delivery counter, random bits, host).
pub fn unique_base() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = crate::clock::since_epoch();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r: u64 = rand::random();
    format!(
        "{}.M{}P{}Q{}R{:016x}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        n,
        r,
        hostname()
    )
}

/// Creates a fresh file in `tmp/` (never reusing a name, `O_EXCL`): (base name, file).
fn open_tmp(tmp: &Dir) -> io::Result<(String, File)> {
    let mut attempt = 0;
    loop {
        let base = unique_base();
        match tmp.create_new(&base, FILE_MODE) {
            Ok(f) => return Ok((base, f)),
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists && attempt + 1 < MAX_NAME_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Copies `reader` into `staged` (which counts the sizes).
fn copy_into<R: Read>(staged: &mut Staging, reader: &mut R) -> io::Result<()> {
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        staged.write_all(&buf[..n])?;
    }
}

/// Streaming counter of the CRLF size of a file: its length plus one for each bare LF (the
/// `,W=` size; also what POP3 LIST reports).
#[derive(Debug, Clone, Default)]
pub struct SizeCounter {
    size: u64,
    prev_cr: bool,
}

impl SizeCounter {
    /// Counts `input`.
    pub fn push(&mut self, input: &[u8]) {
        let mut bare = 0u64;
        let mut prev = self.prev_cr;
        for &b in input {
            if b == b'\n' && !prev {
                bare += 1;
            }
            prev = b == b'\r';
        }
        if let Some(&last) = input.last() {
            self.prev_cr = last == b'\r';
        }
        self.size += input.len() as u64 + bare;
    }

    /// The CRLF size so far.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// Creates the missing ones of `tmp/`, `new/` and `cur/` in `root`, durably (never through a
/// symlink: one there is an error).
fn create_subdirs(root: &Dir) -> io::Result<()> {
    let mut created = false;
    for d in ["tmp", "new", "cur"] {
        created |= root.create_dir(d, DIR_MODE)?;
    }
    if created {
        root.sync()?;
    }
    Ok(())
}

/// Creates `dir` (mode 0700) and missing parents, fsyncing each parent we added an entry to.
/// An existing directory is fine; an existing non-directory is an error. Path based: used for a
/// Maildir root and its parents only (the admin's path, see the module doc); what is below a
/// root is created with [`Dir::create_dir`].
fn create_dir_durable(dir: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return if fs::metadata(dir)?.is_dir() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} exists and is not a directory", dir.display()),
                ))
            };
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .ok_or(e)?;
            create_dir_durable(parent)?;
            match DirBuilder::new().mode(DIR_MODE).create(dir) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == io::ErrorKind::AlreadyExists && fs::metadata(dir)?.is_dir() =>
                {
                    return Ok(())
                }
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => durable::fsync_dir(parent),
        None => durable::fsync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests;
