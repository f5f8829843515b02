//! Directory handles that never follow a symlink below a root (Maildirs, the queue).
//!
//! A process that writes into a directory owned by someone else (a user's Maildir) must not let
//! that someone redirect it with a symlink: `Maildir/mpopd.lock -> /etc/shadow` or
//! `Maildir/tmp -> /etc` would make a root process write or chown a file of the attacker's
//! choice. So every file and directory below a root is opened relative to a directory fd:
//!
//! - [`Dir::open_root`] opens the root once (`O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC`): the root
//!   itself must not be a symlink; the components *above* it are resolved normally (the path is
//!   the admin's: `/home -> /data/home` is followed, and whoever controls those components
//!   controls the root anyway). [`Dir::open_root_following`] also follows the root itself, for
//!   an admin who allows symlinked Maildirs.
//! - Relative paths below it are resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//!   (Linux 5.6+), or where that returns `ENOSYS`, by a walk of `O_NOFOLLOW | O_DIRECTORY` opens
//!   one component at a time. A symlink in any component, `..`, or an absolute path is refused
//!   with an error whose text says "symlink in path" ([`is_refusal`] tells it apart).
//! - Single names (the common case, `name` in a directory fd already open) use the plain `*at`
//!   call with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW`: no extra syscall per file.
//! - New files are created with `O_CREAT | O_EXCL` ([`Dir::create_new`]); renames stay inside
//!   directory fds (`renameat2(RENAME_NOREPLACE)` or `renameat`), so nothing is ever replaced
//!   through a link, and nothing here changes ownership.
//!
//! No `unsafe`: everything goes through rustix.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags};
use rustix::io::Errno;

/// Set once `openat2` returned ENOSYS (kernel older than 5.6): walk instead from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
/// How often `openat2` is retried when it reports a concurrent rename (EAGAIN).
const OPENAT2_RETRIES: u32 = 8;

/// The error of a refused path: a symlink or `..` below the root. Wrapped in an `io::Error`
/// (kind `Other`) so callers can tell it from other failures with [`is_refusal`].
#[derive(Debug)]
pub struct SymlinkRefused {
    /// The path that was refused (root joined with the relative path).
    pub path: PathBuf,
    /// Why (`symlink in path`, `".." or absolute path`).
    pub why: &'static str,
}

impl std::fmt::Display for SymlinkRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (refused: symlinks are not followed here)",
            self.path.display(),
            self.why
        )
    }
}

impl std::error::Error for SymlinkRefused {}

/// Whether `e` is a refusal by this module (a symlink or `..` below a root).
pub fn is_refusal(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<SymlinkRefused>().is_some())
}

fn refused(path: PathBuf, why: &'static str) -> io::Error {
    io::Error::other(SymlinkRefused { path, why })
}

/// What [`Dir::stat`] found (the entry itself, never a link's target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// File type.
    pub kind: FileType,
    /// Size in bytes.
    pub len: u64,
    /// Modification time.
    pub mtime: SystemTime,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Inode number: with `dev`, tells whether a name still names the same file (a dotlock
    /// removes only its own lock file).
    pub ino: u64,
    /// Device number.
    pub dev: u64,
}

impl Meta {
    fn from_stat(st: &rustix::fs::Stat) -> Meta {
        let secs = st.st_mtime;
        let nanos = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
        let mtime = crate::clock::from_unix(secs, nanos);
        Meta {
            kind: FileType::from_raw_mode(st.st_mode),
            len: u64::try_from(st.st_size).unwrap_or(0),
            mtime,
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            ino: st.st_ino,
            dev: st.st_dev,
        }
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.kind == FileType::RegularFile
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }
}

/// An open directory below (or at) a root; everything opened through it stays below it and
/// never follows a symlink. Cheap to share (`Arc` it); the fd closes on drop.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

impl Dir {
    /// Opens the root directory `path`. Its last component must not be a symlink (ELOOP becomes
    /// a "symlink in path" refusal); the components above it are followed (see the module doc).
    pub fn open_root(path: impl AsRef<Path>) -> io::Result<Dir> {
        let path = path.as_ref();
        match rustix::fs::open(path, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Dir {
                fd,
                path: path.to_path_buf(),
            }),
            // O_DIRECTORY is checked before O_NOFOLLOW: a symlink reports ENOTDIR.
            Err(Errno::NOTDIR)
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) =>
            {
                Err(refused(path.to_path_buf(), "symlink in path"))
            }
            Err(e) => Err(map_err(e, path.to_path_buf())),
        }
    }

    /// Opens the root directory `path`, following a symlink at its last component too (for an
    /// admin who allows symlinked Maildirs). Everything below is still never followed.
    pub fn open_root_following(path: impl AsRef<Path>) -> io::Result<Dir> {
        let path = path.as_ref();
        let fd = rustix::fs::open(path, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The directory's path (for messages and for callers that show paths).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the directory `rel` below this one (no symlinks, no `..`).
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> io::Result<Dir> {
        let rel = rel.as_ref();
        let fd = self.open_raw(rel, DIR_FLAGS, Mode::empty())?;
        Ok(Dir {
            fd,
            path: self.path.join(rel),
        })
    }

    /// Opens the directory `name` in this one, following a symlink at `name` itself (only for
    /// an admin's explicit "allow symlinked Maildir"); `name` must be one plain component.
    pub fn open_dir_following(&self, name: &str) -> io::Result<Dir> {
        let name_path = single(name, &self.path)?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            DIR_FLAGS.difference(OFlags::NOFOLLOW),
            Mode::empty(),
        )?;
        Ok(Dir {
            fd,
            path: name_path,
        })
    }

    /// Opens the file `rel` for reading.
    pub fn open_read(&self, rel: impl AsRef<Path>) -> io::Result<File> {
        self.open_file(rel, OFlags::RDONLY, 0)
    }

    /// Opens the file `rel` with `flags` (`O_CLOEXEC | O_NOFOLLOW` are added; `mode` is used
    /// with `O_CREAT`). Use [`Dir::create_new`] for files that must not exist yet.
    pub fn open_file(&self, rel: impl AsRef<Path>, flags: OFlags, mode: u32) -> io::Result<File> {
        let fd = self.open_raw(rel.as_ref(), flags, Mode::from_raw_mode(mode))?;
        Ok(File::from(fd))
    }

    /// Opens (creating it with `mode` if missing) the lock file `rel`, for `flock`: read-write,
    /// `O_NONBLOCK` so a FIFO planted there cannot hang the open, and anything but a regular
    /// file there (a FIFO, a device; a symlink is refused by the open) is an error. The one
    /// way mpopd's maildrop lock, the Sieve memory lock and the uid-list lock are opened.
    pub fn open_lock(&self, rel: impl AsRef<Path>, mode: u32) -> io::Result<File> {
        self.open_lock_with(rel, OFlags::empty(), mode)
    }

    /// [`Dir::open_lock`] with `extra` flags too (`O_APPEND` for the rate-limit journal, whose
    /// appends are atomic only so).
    pub fn open_lock_with(
        &self,
        rel: impl AsRef<Path>,
        extra: OFlags,
        mode: u32,
    ) -> io::Result<File> {
        let rel = rel.as_ref();
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NONBLOCK | extra;
        let file = self.open_file(rel, flags, mode)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a regular file", self.path.join(rel).display()),
            ));
        }
        Ok(file)
    }

    /// Creates the file `rel` for writing, failing with AlreadyExists when anything (a file or a
    /// symlink) is there already (`O_CREAT | O_EXCL`).
    pub fn create_new(&self, rel: impl AsRef<Path>, mode: u32) -> io::Result<File> {
        self.open_file(rel, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL, mode)
    }

    /// Creates the directory `rel` with `mode`. Returns false when a directory is there already
    /// (a symlink or another file there is an error).
    pub fn create_dir(&self, rel: impl AsRef<Path>, mode: u32) -> io::Result<bool> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        let dirfd = parent.as_ref().map_or(self.fd.as_fd(), |d| d.fd.as_fd());
        match rustix::fs::mkdirat(dirfd, name.as_os_str(), Mode::from_raw_mode(mode)) {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => {
                let meta = self.stat(rel)?;
                if meta.is_dir() {
                    Ok(false)
                } else if meta.kind == FileType::Symlink {
                    Err(refused(self.path.join(rel), "symlink in path"))
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!(
                            "{} exists and is not a directory",
                            self.path.join(rel).display()
                        ),
                    ))
                }
            }
            Err(e) => Err(map_err(e, self.path.join(rel))),
        }
    }

    /// The entry `rel` itself (a symlink is reported as one, never followed).
    pub fn stat(&self, rel: impl AsRef<Path>) -> io::Result<Meta> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        let dirfd = parent.as_ref().map_or(self.fd.as_fd(), |d| d.fd.as_fd());
        let st = rustix::fs::statat(dirfd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| map_err(e, self.path.join(rel)))?;
        Ok(Meta::from_stat(&st))
    }

    /// This directory itself.
    pub fn stat_self(&self) -> io::Result<Meta> {
        Ok(Meta::from_stat(&rustix::fs::fstat(&self.fd)?))
    }

    /// Removes the entry `rel` (a symlink there is removed itself, never its target).
    pub fn unlink(&self, rel: impl AsRef<Path>) -> io::Result<()> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        let dirfd = parent.as_ref().map_or(self.fd.as_fd(), |d| d.fd.as_fd());
        rustix::fs::unlinkat(dirfd, name.as_os_str(), AtFlags::empty())
            .map_err(|e| map_err(e, self.path.join(rel)))
    }

    /// Removes the empty directory `rel` (a symlink there is an error, never followed).
    pub fn remove_dir(&self, rel: impl AsRef<Path>) -> io::Result<()> {
        let rel = rel.as_ref();
        let (parent, name) = self.parent_of(rel)?;
        let dirfd = parent.as_ref().map_or(self.fd.as_fd(), |d| d.fd.as_fd());
        rustix::fs::unlinkat(dirfd, name.as_os_str(), AtFlags::REMOVEDIR)
            .map_err(|e| map_err(e, self.path.join(rel)))
    }

    /// Renames `from` (in this directory) to `to` in `to_dir` (the same directory, or another
    /// opened below the same root), never replacing anything: AlreadyExists when `to` exists.
    /// Uses `renameat2(RENAME_NOREPLACE)`, or `linkat` + `unlinkat` where the filesystem lacks
    /// it (both refuse to replace). Names are single components.
    pub fn rename_noreplace(&self, from: &str, to_dir: &Dir, to: &str) -> io::Result<()> {
        single(from, &self.path)?;
        single(to, &to_dir.path)?;
        match rustix::fs::renameat_with(&self.fd, from, &to_dir.fd, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(()),
            Err(e) if e == Errno::INVAL || e == Errno::NOSYS => {
                rustix::fs::linkat(&self.fd, from, &to_dir.fd, to, AtFlags::empty())?;
                if let Err(e) = rustix::fs::unlinkat(&self.fd, from, AtFlags::empty()) {
                    let _ = rustix::fs::unlinkat(&to_dir.fd, to, AtFlags::empty());
                    return Err(e.into());
                }
                Ok(())
            }
            Err(e) => Err(map_err(e, to_dir.path.join(to))),
        }
    }

    /// Renames `from` (in this directory) over `to` in `to_dir` (`renameat`: replaces `to`; a
    /// symlink at `to` is replaced itself). Names are single components.
    pub fn rename_replace(&self, from: &str, to_dir: &Dir, to: &str) -> io::Result<()> {
        single(from, &self.path)?;
        single(to, &to_dir.path)?;
        rustix::fs::renameat(&self.fd, from, &to_dir.fd, to)
            .map_err(|e| map_err(e, to_dir.path.join(to)))
    }

    /// The names in this directory (without `.` and `..`) with their types as the directory
    /// reports them (`Unknown` on filesystems that do not; [`Dir::stat`] then).
    pub fn list(&self) -> io::Result<Vec<(OsString, FileType)>> {
        let mut out = Vec::new();
        for de in rustix::fs::Dir::read_from(&self.fd)? {
            let de = de?;
            let name = de.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            out.push((OsString::from_vec(name.to_vec()), de.file_type()));
        }
        Ok(out)
    }

    /// fsync this directory, so the names created, renamed or removed in it survive a crash.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    /// The parent directory of `rel` (None: this one) and its last component.
    fn parent_of(&self, rel: &Path) -> io::Result<(Option<Dir>, PathBuf)> {
        check_relative(rel, &self.path)?;
        let name = match rel.file_name() {
            Some(n) => PathBuf::from(n),
            None => return Err(refused(self.path.join(rel), "not a plain name")),
        };
        match rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            None => Ok((None, name)),
            Some(p) => Ok((Some(self.open_dir(p)?), name)),
        }
    }

    /// Opens `rel` below this directory with `flags` (plus CLOEXEC and NOFOLLOW): `openat` for a
    /// single name, `openat2(BENEATH | NO_SYMLINKS)` or the walk for longer paths.
    fn open_raw(&self, rel: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        check_relative(rel, &self.path)?;
        let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        match self.open_raw_once(rel, flags, mode) {
            // O_DIRECTORY is checked before O_NOFOLLOW: a symlink at the end reports ENOTDIR.
            Err(Errno::NOTDIR) => match self.stat(rel) {
                Ok(m) if m.kind == FileType::Symlink => {
                    Err(refused(self.path.join(rel), "symlink in path"))
                }
                Err(e) if is_refusal(&e) => Err(e),
                _ => Err(map_err(Errno::NOTDIR, self.path.join(rel))),
            },
            Err(e) => Err(map_err(e, self.path.join(rel))),
            Ok(fd) => Ok(fd),
        }
    }

    fn open_raw_once(&self, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
        if rel.components().count() == 1 {
            return rustix::fs::openat(&self.fd, rel, flags, mode);
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
            let mut tries = 0;
            loop {
                match rustix::fs::openat2(&self.fd, rel, flags, mode, resolve) {
                    Ok(fd) => return Ok(fd),
                    Err(Errno::AGAIN) if tries + 1 < OPENAT2_RETRIES => tries += 1,
                    Err(Errno::NOSYS) => {
                        NO_OPENAT2.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        walk(self.fd.as_fd(), rel, flags, mode)
    }
}

/// `rel` must be relative, without `..` (`.` components are harmless and skipped by the kernel).
fn check_relative(rel: &Path, base: &Path) -> io::Result<()> {
    let mut any = false;
    for c in rel.components() {
        match c {
            Component::Normal(_) => any = true,
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(refused(base.join(rel), "\"..\" or absolute path"))
            }
        }
    }
    if any {
        Ok(())
    } else {
        Err(refused(base.join(rel), "not a plain name"))
    }
}

/// `name` must be one plain component; returns `base/name`.
fn single(name: &str, base: &Path) -> io::Result<PathBuf> {
    let p = Path::new(name);
    let mut c = p.components();
    match (c.next(), c.next()) {
        (Some(Component::Normal(_)), None) if !name.contains('/') => Ok(base.join(name)),
        _ => Err(refused(base.join(name), "not a plain name")),
    }
}

/// The fallback for kernels without `openat2`: open each directory component with
/// `O_NOFOLLOW | O_DIRECTORY`, then the last one with `flags` (which include NOFOLLOW).
fn walk(start: BorrowedFd<'_>, rel: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    let comps: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some((last, dirs)) = comps.split_last() else {
        return Err(Errno::INVAL);
    };
    let mut cur: Option<OwnedFd> = None;
    for d in dirs {
        let at = cur.as_ref().map_or(start, |f| f.as_fd());
        let next = match rustix::fs::openat(at, *d, DIR_FLAGS, Mode::empty()) {
            Err(Errno::NOTDIR)
                if rustix::fs::statat(at, *d, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink) =>
            {
                return Err(Errno::LOOP)
            }
            r => r?,
        };
        cur = Some(next);
    }
    let at = cur.as_ref().map_or(start, |f| f.as_fd());
    rustix::fs::openat(at, *last, flags, mode)
}

/// An errno as an `io::Error`; a symlink (ELOOP from NOFOLLOW or NO_SYMLINKS) or an escape
/// (EXDEV from BENEATH) becomes a [`SymlinkRefused`] naming `path`.
fn map_err(e: Errno, path: PathBuf) -> io::Error {
    match e {
        Errno::LOOP => refused(path, "symlink in path"),
        Errno::XDEV => refused(path, "path leaves its root"),
        // Kept raw: callers tell ENOSPC, EACCES, ... apart by raw_os_error and add context.
        e => io::Error::from(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;

    struct Fixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        outside: PathBuf,
    }

    /// root/a/b/file, and outside/secret with a known content.
    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("a/b/file"), b"inside").unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        std::fs::create_dir_all(outside.join("b")).unwrap();
        std::fs::write(outside.join("b/file"), b"secret").unwrap();
        Fixture {
            _tmp: tmp,
            root,
            outside,
        }
    }

    fn assert_refused(r: io::Result<impl std::fmt::Debug>, what: &str) {
        match r {
            Err(e) => {
                assert!(is_refusal(&e), "{what}: not a refusal: {e}");
                let text = e.to_string();
                assert!(
                    text.contains("symlink in path") || text.contains("leaves its root"),
                    "{what}: {text}"
                );
            }
            Ok(v) => panic!("{what}: followed a symlink: {v:?}"),
        }
    }

    #[test]
    fn opens_creates_lists_renames_and_unlinks_below_the_root() {
        let f = fixture();
        let root = Dir::open_root(&f.root).unwrap();
        let mut s = String::new();
        root.open_read("a/b/file")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inside");
        let b = root.open_dir("a/b").unwrap();
        assert_eq!(b.path(), f.root.join("a/b"));
        b.create_new("new", 0o600).unwrap().write_all(b"x").unwrap();
        assert_eq!(
            b.create_new("new", 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(root.stat("a/b/new").unwrap().len, 1);
        assert_eq!(root.stat("a/b/new").unwrap().mode, 0o600);
        assert!(root.create_dir("a/c", 0o700).unwrap());
        assert!(!root.create_dir("a/c", 0o700).unwrap());
        let c = root.open_dir("a/c").unwrap();
        b.rename_noreplace("new", &c, "moved").unwrap();
        b.create_new("new", 0o600).unwrap();
        assert_eq!(
            b.rename_noreplace("new", &c, "moved").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        b.rename_replace("new", &c, "moved").unwrap();
        let mut names: Vec<_> = c.list().unwrap().into_iter().map(|(n, _)| n).collect();
        names.sort();
        assert_eq!(names, vec![OsString::from("moved")]);
        c.unlink("moved").unwrap();
        root.unlink("a/b/file").unwrap();
        assert_eq!(
            root.stat("a/b/file").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        c.sync().unwrap();
        assert!(root.stat_self().unwrap().is_dir());
    }

    #[test]
    fn a_symlink_at_any_component_is_refused() {
        for at in ["root", "a", "b", "file"] {
            let f = fixture();
            let link = match at {
                "root" => f.root.clone(),
                "a" => f.root.join("a"),
                "b" => f.root.join("a/b"),
                _ => f.root.join("a/b/file"),
            };
            std::fs::rename(&link, f.root.parent().unwrap().join("moved-away")).unwrap();
            let target = if at == "file" {
                f.outside.join("secret")
            } else if at == "root" || at == "a" {
                // root/a/b/file and a/b/file exist under outside-like trees
                std::fs::create_dir_all(f.outside.join("a/b")).unwrap();
                std::fs::write(f.outside.join("a/b/file"), b"secret").unwrap();
                if at == "root" {
                    f.outside.clone()
                } else {
                    f.outside.join("a")
                }
            } else {
                f.outside.join("b")
            };
            symlink(&target, &link).unwrap();
            if at == "root" {
                assert_refused(Dir::open_root(&f.root), "root");
                // An admin may allow a symlinked root; below it nothing is followed still.
                let r = Dir::open_root_following(&f.root).unwrap();
                r.open_read("a/b/file").unwrap();
                continue;
            }
            let root = Dir::open_root(&f.root).unwrap();
            assert_refused(root.open_read("a/b/file"), at);
            assert_refused(
                root.open_file("a/b/file", OFlags::WRONLY | OFlags::CREATE, 0o600),
                at,
            );
            if at != "file" {
                assert_refused(root.create_new("a/b/other", 0o600), at);
                assert_refused(root.open_dir("a/b"), at);
                assert_refused(root.create_dir("a/b/d", 0o700), at);
                assert_refused(root.stat("a/b/file"), at);
                assert_refused(root.unlink("a/b/file"), at);
                // the fallback walk refuses the same
                let w = walk(
                    root.as_fd(),
                    Path::new("a/b/file"),
                    OFlags::RDONLY | OFlags::NOFOLLOW,
                    Mode::empty(),
                );
                assert_eq!(w.unwrap_err(), Errno::LOOP, "walk {at}");
            } else {
                let b = root.open_dir("a/b").unwrap();
                assert_refused(b.open_read("file"), "file in dir");
                // a symlink is seen as one, and unlinking removes the link only
                assert_eq!(b.stat("file").unwrap().kind, FileType::Symlink);
                assert_refused(b.create_dir("file", 0o700), "mkdir over a link");
                b.unlink("file").unwrap();
            }
            assert_eq!(
                std::fs::read(f.outside.join("secret")).unwrap(),
                b"secret",
                "{at}"
            );
        }
    }

    #[test]
    fn dotdot_and_absolute_paths_are_refused() {
        let f = fixture();
        let root = Dir::open_root(&f.root).unwrap();
        let b = root.open_dir("a/b").unwrap();
        for bad in ["../../outside/secret", "../b/file", "/etc/passwd", "", "."] {
            assert!(is_refusal(&root.open_read(bad).unwrap_err()), "{bad}");
        }
        assert!(is_refusal(&b.open_read("..").unwrap_err()));
        assert!(is_refusal(
            &b.rename_noreplace("file", &root, "../x").unwrap_err()
        ));
        assert!(is_refusal(
            &b.rename_replace("a/file", &root, "x").unwrap_err()
        ));
        // a plain error stays a plain error (raw, for callers that look at the errno)
        let e = root.open_read("a/missing").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert!(!is_refusal(&e));
    }

    #[test]
    fn the_walk_opens_what_openat2_opens() {
        let f = fixture();
        let root = Dir::open_root(&f.root).unwrap();
        let fd = walk(
            root.as_fd(),
            Path::new("a/./b/file"),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let mut s = String::new();
        File::from(fd).read_to_string(&mut s).unwrap();
        assert_eq!(s, "inside");
    }
}
