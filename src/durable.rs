//! The one way to write or replace a file durably, and the one `fsync_dir`.
//!
//! A file is durable when its content *and* its name survive a crash. So every write that is
//! relied on (a queue state file, a spooled message, a delivered mail) takes the same steps:
//!
//! 1. **Write a new temporary file** with a random name, created `O_CREAT | O_EXCL` (and, below a
//!    root, `O_NOFOLLOW` through [`fsroot::Dir`]): a crash's leftover or a planted symlink at a
//!    predictable name is never written through or truncated; a name taken is retried with another.
//! 2. **fsync the file** (`fsync(2)`, data and metadata) before it gets its final name: after a
//!    crash a renamed file must not turn out empty or short (ext4 `data=ordered` makes no promise
//!    for a rename of an un-synced file; XFS and btrfs neither).
//! 3. **Rename it into place** in the same filesystem: `rename(2)` is atomic, so a reader sees the
//!    old file or the new one, never a mix ([`replace`], [`replace_path`]); or
//!    `renameat2(RENAME_NOREPLACE)` where nothing may be replaced ([`rename_noreplace`]: Maildir
//!    `new/`, the queue's `msg/`).
//! 4. **fsync the directory** that holds the new name: a rename (or create, or unlink) is a change
//!    of the directory, and is durable only once the directory is fsynced (POSIX `fsync(2)`;
//!    Linux `fsync(2)`: "Calling fsync() does not necessarily ensure that the entry in the
//!    directory containing the file has also reached disk. For that an explicit fsync() on a
//!    file descriptor for the directory is also needed."). Only then may a caller acknowledge
//!    (250, +OK, exit 0).
//!
//! On a failure before the rename the target keeps its old content and the temporary file is
//! removed. When the directory fsync fails after a no-replace rename, the new name is removed
//! again (the caller reports a failure, so the file must not appear later as accepted); after a
//! replacing rename the old content is gone already, so the error is only reported.
//!
//! Files below a Maildir or queue root go through [`fsroot::Dir`] handles (never following a
//! symlink: a symlink at the target name is replaced itself, never written through). The
//! path-based [`replace_path`] is only for files outside such roots (msend's spool in the
//! user's own home, files of the admin's configuration).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::fsroot::Dir;

/// How many random temporary names are tried before giving up (a clash needs a 32-bit collision
/// or a hostile planter).
const TMP_ATTEMPTS: u32 = 16;

/// fsync the directory `dir`, so the names created, renamed or removed in it survive a crash
/// (path based; below a root use [`Dir::sync`]).
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A temporary name `PREFIX.PID.RANDOM`.
fn tmp_name(prefix: &str) -> String {
    let r: u32 = rand::random();
    format!("{prefix}.{}.{r:08x}", std::process::id())
}

/// Creates a new temporary file in `tmp_dir` (`O_EXCL`, never through a symlink), with a random
/// name starting with `prefix`. Returns its name and the open file.
fn create_tmp(tmp_dir: &Dir, prefix: &str, mode: u32) -> io::Result<(String, File)> {
    let mut last = None;
    for _ in 0..TMP_ATTEMPTS {
        let name = tmp_name(prefix);
        match tmp_dir.create_new(&name, mode) {
            Ok(f) => return Ok((name, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free temporary name")))
}

/// Replaces (or creates) `name` in `dir` with `bytes`, durably (steps 1–4 of the module doc):
/// a new temporary file `tmp_prefix.*` in `tmp_dir` (the same directory, or another below the
/// same root: the rename must stay in one filesystem), fsynced, renamed over `name`, `dir`
/// fsynced. On an error before the rename `name` is unchanged; the temporary file is never left.
pub fn replace(
    tmp_dir: &Dir,
    tmp_prefix: &str,
    dir: &Dir,
    name: &str,
    bytes: &[u8],
    mode: u32,
) -> io::Result<()> {
    let (tmp, mut f) = create_tmp(tmp_dir, tmp_prefix, mode)?;
    let res = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        tmp_dir.rename_replace(&tmp, dir, name)?;
        dir.sync()
    })();
    if res.is_err() {
        // Gone already when the rename succeeded (NotFound then): nothing to report.
        let _ = tmp_dir.unlink(&tmp);
    }
    res
}

/// Gives the written and fsynced file `from` in `from_dir` its final name `to` in `to_dir`
/// without ever replacing anything (AlreadyExists when `to` is taken: the caller may pick
/// another name), then fsyncs `to_dir` (step 4). When that fsync fails, `to` is removed again:
/// it was not made durable, so it must not show up later as accepted. `from` is left to the
/// caller on an error (it still exists unless the rename happened).
pub fn rename_noreplace(from_dir: &Dir, from: &str, to_dir: &Dir, to: &str) -> io::Result<()> {
    from_dir.rename_noreplace(from, to_dir, to)?;
    if let Err(e) = to_dir.sync() {
        let _ = to_dir.unlink(to);
        return Err(e);
    }
    Ok(())
}

/// [`replace`] for a file outside any root (path based, following symlinks as the owner's own
/// paths do): a temporary file in `tmp_dir` (same filesystem as `dest`), created `O_EXCL` with
/// `mode` (before the umask), fsynced, renamed over `dest`, `dest`'s directory fsynced. The
/// error says which step failed and on which path. On an error before the rename `dest` is
/// unchanged and the temporary file is removed.
pub fn replace_path(tmp_dir: &Path, dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let prefix = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tmp".into());
    let ctx = |what: &str, p: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
    };
    let mut created = None;
    for _ in 0..TMP_ATTEMPTS {
        let tmp = tmp_dir.join(tmp_name(&prefix));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => {
                created = Some((tmp, f));
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(ctx("creating", &tmp, e)),
        }
    }
    let Some((tmp, mut f)) = created else {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("creating a temporary file in {}", tmp_dir.display()),
        ));
    };
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ctx("writing", &tmp, e));
    drop(f);
    let renamed = written
        .and_then(|()| std::fs::rename(&tmp, dest).map_err(|e| ctx("moving into place", dest, e)));
    if let Err(e) = renamed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fsync_dir(parent).map_err(|e| ctx("syncing", parent, e))
}

/// Creates `path`, which must not exist (`O_EXCL`: AlreadyExists otherwise, and never through a
/// symlink planted there), with `bytes` and `mode` (before the umask), fsyncs it and its
/// directory: for files outside any root that are written once (the quickstart's config and
/// password files). The error says which step failed on which path; a file that could not be
/// written completely is removed again.
pub fn create_new_path(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let ctx = |what: &str, p: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", p.display()))
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| ctx("creating", path, e))?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(ctx("writing", path, e));
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fsync_dir(parent).map_err(|e| ctx("syncing", parent, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn replace_below_a_root_writes_and_replaces() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("r/tmp")).unwrap();
        std::fs::create_dir_all(t.path().join("r/state")).unwrap();
        let root = Dir::open_root(t.path().join("r")).unwrap();
        let (tmp, state) = (
            root.open_dir("tmp").unwrap(),
            root.open_dir("state").unwrap(),
        );
        replace(&tmp, "x", &state, "f", b"one", 0o600).unwrap();
        replace(&tmp, "x", &state, "f", b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(t.path().join("r/state/f")).unwrap(), b"two");
        let mode = std::fs::metadata(t.path().join("r/state/f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(count(&t.path().join("r/tmp")), 0);
    }

    #[test]
    fn a_failure_before_the_rename_keeps_the_old_content_and_no_temporary_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("r/state/f")).unwrap();
        std::fs::write(t.path().join("r/state/g"), b"old").unwrap();
        let root = Dir::open_root(t.path().join("r")).unwrap();
        let state = root.open_dir("state").unwrap();
        // renaming a file over a directory fails (EISDIR): after the write and fsync
        let e = replace(&state, "x", &state, "f", b"new", 0o600).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR), "{e}");
        assert_eq!(count(&t.path().join("r/state")), 2, "temporary file left");
        assert!(t.path().join("r/state/f").is_dir());
        assert_eq!(std::fs::read(t.path().join("r/state/g")).unwrap(), b"old");

        // the same path based
        let dest = t.path().join("p/d");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(t.path().join("p/keep"), b"old").unwrap();
        let e = replace_path(&t.path().join("p"), &dest, b"new", 0o666).unwrap_err();
        assert!(e.to_string().contains("moving into place"), "{e}");
        assert_eq!(count(&t.path().join("p")), 2, "temporary file left");
        // a failure to create the temporary file leaves the target alone
        let e = replace_path(
            &t.path().join("missing"),
            &t.path().join("p/keep"),
            b"new",
            0o666,
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(std::fs::read(t.path().join("p/keep")).unwrap(), b"old");
    }

    #[test]
    fn symlinks_below_a_root_are_never_written_through() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, b"victim").unwrap();
        std::fs::create_dir_all(t.path().join("r/state")).unwrap();
        std::fs::create_dir_all(t.path().join("elsewhere")).unwrap();
        let root = Dir::open_root(t.path().join("r")).unwrap();
        let state = root.open_dir("state").unwrap();
        // a symlink at the target is replaced itself, its target untouched
        symlink(&victim, t.path().join("r/state/f")).unwrap();
        replace(&state, "x", &state, "f", b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"victim");
        assert!(!std::fs::symlink_metadata(t.path().join("r/state/f"))
            .unwrap()
            .file_type()
            .is_symlink());
        // a symlinked directory below the root is refused before anything is written
        symlink(t.path().join("elsewhere"), t.path().join("r/link")).unwrap();
        let e = root.open_dir("link").unwrap_err();
        assert!(crate::fsroot::is_refusal(&e), "{e}");
        assert_eq!(count(&t.path().join("elsewhere")), 0);
    }

    #[test]
    fn rename_noreplace_never_replaces_and_syncs() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("r/tmp")).unwrap();
        std::fs::create_dir_all(t.path().join("r/new")).unwrap();
        std::fs::write(t.path().join("r/tmp/a"), b"a").unwrap();
        std::fs::write(t.path().join("r/new/b"), b"b").unwrap();
        let root = Dir::open_root(t.path().join("r")).unwrap();
        let (tmp, new) = (root.open_dir("tmp").unwrap(), root.open_dir("new").unwrap());
        let e = rename_noreplace(&tmp, "a", &new, "b").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(t.path().join("r/new/b")).unwrap(), b"b");
        rename_noreplace(&tmp, "a", &new, "c").unwrap();
        assert_eq!(std::fs::read(t.path().join("r/new/c")).unwrap(), b"a");
        assert_eq!(count(&t.path().join("r/tmp")), 0);
    }

    #[test]
    fn fsync_dir_syncs_a_directory() {
        let t = tempfile::tempdir().unwrap();
        fsync_dir(t.path()).unwrap();
        assert!(fsync_dir(&t.path().join("missing")).is_err());
    }
}
