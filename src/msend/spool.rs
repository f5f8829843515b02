//! The `--queue DIR` spool: a message that failed temporarily is kept here, durably, and
//! `--flush` retries it later (msmtp's most-asked gap: never lose mail on a bad day).
//!
//! Layout: `DIR/tmp/` (files being written), `DIR/<id>.msg` (spooled, oldest id first),
//! `DIR/failed/<id>.msg` (permanently failed, kept for the user), `DIR/.lock` (one flusher at a
//! time). A spool file is one JSON line (envelope, account, [`Destination`]) followed by the
//! message bytes.
//! Writes go to `tmp/`, are fsynced, renamed into place, and the directory is fsynced: a file
//! in `DIR` is always complete.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::durable::{self, fsync_dir};

/// Suffix of spooled message files.
pub const SUFFIX: &str = ".msg";
/// Largest spool file read back (the envelope line plus the largest message).
pub const MAX_SPOOL_FILE: u64 = super::message::MAX_MESSAGE_SIZE as u64 + 1024 * 1024;

/// The envelope stored with a spooled message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Meta {
    /// Envelope sender.
    pub from: String,
    /// Recipients still to deliver.
    pub rcpts: Vec<String>,
    /// Account it was sent with, if any (reused by `--flush` unless overridden).
    pub account: Option<String>,
    /// Unix time it was spooled.
    pub queued_at: u64,
    /// Last error seen.
    pub last_error: String,
    /// The server it was spooled for, when the command line named one (`--server`, TLS,
    /// `--user`, `--direct`, ...): `--flush` sends it there, not to the default of the day.
    /// Files spooled before this field existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
}

/// The command-line flags that chose where a message goes, as given when it was spooled
/// (the account is [`Meta::account`]); `None`/`false`: not given.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Destination {
    /// `--server HOST[:PORT]`.
    pub server: Option<String>,
    /// `--tls`, `--starttls`, `--no-tls` as an account's `tls` keyword.
    pub tls: Option<String>,
    /// `--ca-file`.
    pub ca_file: Option<PathBuf>,
    /// `--tls-fingerprint` (hex).
    pub tls_fingerprint: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `--password-command` (the command, never a password).
    pub password_command: Option<String>,
    /// `--direct`.
    pub direct: bool,
    /// `--resolver`.
    pub resolver: Option<String>,
    /// `--smtp-port`.
    pub smtp_port: Option<u16>,
}

/// One spooled message.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path of the file in the spool.
    pub path: PathBuf,
    /// File name without the suffix.
    pub id: String,
    /// Envelope.
    pub meta: Meta,
    /// The message.
    pub message: Vec<u8>,
}

fn ensure_dirs(dir: &Path) -> Result<()> {
    for d in [dir.to_path_buf(), dir.join("tmp"), dir.join("failed")] {
        fs::create_dir_all(&d)
            .with_context(|| format!("creating spool directory {}", d.display()))?;
    }
    Ok(())
}

/// Writes `bytes` as `dest` durably ([`durable::replace_path`]: a tmp file in `DIR/tmp/`,
/// fsync, rename, fsync of the directory). Mode 0666 before the umask, as before.
fn write_durably(dir: &Path, dest: &Path, bytes: &[u8]) -> Result<()> {
    durable::replace_path(&dir.join("tmp"), dest, bytes, 0o666)
        .with_context(|| format!("spooling {}", dest.display()))
}

fn encode(meta: &Meta, message: &[u8]) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec(meta).context("encoding spool envelope")?;
    out.push(b'\n');
    out.extend_from_slice(message);
    Ok(out)
}

/// Spools a message durably; returns its id. Exit 0 is only allowed after this returns.
pub fn put(dir: &Path, meta: &Meta, message: &[u8]) -> Result<String> {
    put_into(dir, dir, meta, message)
}

/// Keeps a copy of a message in `DIR/failed/` (recipients that failed permanently while others
/// of the same message are still queued).
pub fn put_failed(dir: &Path, meta: &Meta, message: &[u8]) -> Result<String> {
    put_into(dir, &dir.join("failed"), meta, message)
}

fn put_into(dir: &Path, dest_dir: &Path, meta: &Meta, message: &[u8]) -> Result<String> {
    ensure_dirs(dir)?;
    let now = crate::clock::since_epoch().as_nanos();
    let r: u32 = rand::random();
    // Zero-padded time first so names sort in spooling order.
    let id = format!("{now:020}.{}.{r:08x}", std::process::id());
    write_durably(
        dir,
        &dest_dir.join(format!("{id}{SUFFIX}")),
        &encode(meta, message)?,
    )?;
    Ok(id)
}

/// Reads one spool file.
pub fn read(path: &Path) -> Result<Entry> {
    let reading = || format!("reading {}", path.display());
    // One open: the size check and the read see the same file.
    let mut f = File::open(path).with_context(reading)?;
    let len = f.metadata().with_context(reading)?.len();
    if len > MAX_SPOOL_FILE {
        anyhow::bail!("{}: larger than {MAX_SPOOL_FILE} bytes", path.display());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.read_to_end(&mut bytes).with_context(reading)?;
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .with_context(|| format!("{}: no envelope line", path.display()))?;
    let meta: Meta = serde_json::from_slice(&bytes[..nl])
        .with_context(|| format!("{}: bad envelope line", path.display()))?;
    let id = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(SUFFIX).to_string())
        .unwrap_or_default();
    // The message is the rest: drop the envelope line in place rather than copy the message.
    bytes.drain(..=nl);
    Ok(Entry {
        path: path.to_path_buf(),
        id,
        meta,
        message: bytes,
    })
}

/// Spooled messages, oldest first. A missing directory is an empty spool.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading spool {}", dir.display())),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.with_context(|| format!("reading spool {}", dir.display()))?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.ends_with(SUFFIX) && !name.starts_with('.') {
            out.push(ent.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Rewrites an entry with fewer recipients and the latest error (after a partial delivery).
pub fn update(dir: &Path, entry: &Entry, meta: &Meta) -> Result<()> {
    ensure_dirs(dir)?;
    write_durably(dir, &entry.path, &encode(meta, &entry.message)?)
}

/// Removes a delivered entry (after the server's 250).
pub fn remove(entry: &Entry) -> Result<()> {
    fs::remove_file(&entry.path).with_context(|| format!("removing {}", entry.path.display()))?;
    if let Some(parent) = entry.path.parent() {
        fsync_dir(parent).with_context(|| format!("syncing {}", parent.display()))?;
    }
    Ok(())
}

/// Moves a permanently failed entry to `DIR/failed/`, recording why.
pub fn move_to_failed(dir: &Path, entry: &Entry, meta: &Meta) -> Result<PathBuf> {
    ensure_dirs(dir)?;
    let dest = dir.join("failed").join(format!("{}{SUFFIX}", entry.id));
    write_durably(dir, &dest, &encode(meta, &entry.message)?)?;
    remove(entry)?;
    Ok(dest)
}

/// An exclusive lock on the spool so two `--flush` runs (cron overlap) never send twice.
/// Returns `None` when another process holds it.
pub fn lock(dir: &Path) -> Result<Option<File>> {
    ensure_dirs(dir)?;
    let path = dir.join(".lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta {
            from: "a@x".into(),
            rcpts: vec!["b@y".into()],
            account: None,
            queued_at: 1,
            last_error: "451 later".into(),
            destination: Some(Destination {
                server: Some("[::1]:2525".into()),
                tls: Some("none".into()),
                ..Destination::default()
            }),
        };
        let id1 = put(dir.path(), &meta, b"Subject: 1\r\n\r\nx\n").unwrap();
        let id2 = put(dir.path(), &meta, b"Subject: 2\r\n\r\n").unwrap();
        let l = list(dir.path()).unwrap();
        assert_eq!(l.len(), 2);
        let e = read(&l[0]).unwrap();
        assert_eq!(e.id, id1);
        assert_eq!(e.meta, meta);
        assert_eq!(e.message, b"Subject: 1\r\n\r\nx\n");
        let failed = move_to_failed(dir.path(), &e, &meta).unwrap();
        assert!(failed.exists());
        let e2 = read(&list(dir.path()).unwrap()[0]).unwrap();
        assert_eq!(e2.id, id2);
        remove(&e2).unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
        let kept = put_failed(dir.path(), &meta, b"x").unwrap();
        assert!(dir
            .path()
            .join("failed")
            .join(format!("{kept}{SUFFIX}"))
            .exists());
        assert!(
            list(dir.path()).unwrap().is_empty(),
            "failed copies are not queued"
        );
        let held = lock(dir.path()).unwrap();
        assert!(held.is_some());
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
    }

    #[test]
    fn a_file_spooled_without_a_destination_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.msg");
        let old = br#"{"from":"a@x","rcpts":["b@y"],"account":null,"queued_at":1,"last_error":""}"#;
        fs::write(&p, [&old[..], b"\nbody"].concat()).unwrap();
        let e = read(&p).unwrap();
        assert_eq!(e.meta.destination, None);
        assert_eq!(e.message, b"body");
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.msg");
        fs::write(&p, b"no json here").unwrap();
        assert!(read(&p).is_err());
        fs::write(&p, b"{bad json}\nbody").unwrap();
        assert!(read(&p).is_err());
    }
}
