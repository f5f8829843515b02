//! mrelayd's durable mail queue: a crash-proof state machine made of files and renames.
//!
//! # Layout (under `<state_dir>/queue/`)
//! ```text
//! tmp/ID       a message being received: envelope line, our Received: header, then the
//!              content as it arrives from the client. Never acknowledged; locked (flock) by
//!              its writer for as long as it is being received.
//! msg/ID       an accepted message: envelope (one JSON line) then the message, as it will be
//!              delivered (our Received: header first, CRLF line ends). Never modified.
//! hold/ID      an accepted message set aside by `mrelayd queue hold ID`; not delivered.
//! state/ID     delivery progress of msg/ID or hold/ID: per-recipient result, attempts, next
//!              retry, last error. Replaced atomically ([`crate::durable::replace`]:
//!              tmp/ID.state.*, fsync, rename, fsync state/).
//! flush        a trigger file: `mrelayd flush` creates it, the running daemon retries now.
//! ```
//! An ID is 23 upper-case hex digits (time, microseconds, pid, counter): unique across the
//! processes sharing the queue (`serve` and any number of `inetd` sessions), sortable by age, and
//! safe as a file name.
//!
//! The envelope and our Received: header are known when DATA or the first BDAT starts (the
//! recipients are final then, and the header carries that moment's date, as Postfix's does), so
//! they are written first and the content streams after them: a session holds no more than a
//! buffer of the message ([`Queue::begin`], [`Incoming`]), whatever its size, and `msg/ID` keeps
//! the one format every reader knows.
//!
//! # Transitions (each is one atomic rename or unlink, made durable before it is relied on)
//! 1. **receive**: create `tmp/ID` (O_EXCL) and lock it, write envelope and header, then the
//!    content as it arrives (buffered, 64 KiB writes), and at its end `fsync` it.
//!    A crash here leaves `tmp/ID`, which [`Queue::recover`] deletes: the client got no 250, so
//!    the message must not be delivered, and is not. A transaction that ends without a message
//!    (refused at its end, RSET, timeout, lost connection) removes `tmp/ID` at once.
//! 2. **commit**: rename `tmp/ID` → `msg/ID`, `fsync` the `msg/` directory, *then* reply 250.
//!    A crash after the rename but before the client read the 250 delivers the message and the
//!    client may send it again: the unavoidable duplicate of RFC 1047, never a loss.
//!    Any error before this point (ENOSPC, EIO, ...) removes `tmp/ID` and the client gets
//!    `452 4.3.1`: nothing half-written is ever in `msg/`.
//! 3. **deliver**: a delivery holds an exclusive lock on `msg/ID` (so `serve` and `inetd`
//!    processes never deliver the same message twice at once) and delivers each recipient not yet
//!    done. When some recipients remain to retry, `state/ID` records who is done (written in
//!    `tmp/`, fsynced, renamed over `state/ID`, directory fsynced). A crash between a delivery
//!    and that record repeats that recipient's delivery: the only window for duplicates, counted
//!    by the crash test.
//! 4. **done**: when every recipient is delivered or failed permanently: unlink `msg/ID`,
//!    fsync `msg/`, then unlink `state/ID`. A crash between the two leaves a `state/ID` without a
//!    message, which [`Queue::recover`] deletes.
//! 5. **hold / release**: rename `msg/ID` ↔ `hold/ID`, fsync both directories.
//!
//! # Symlinks
//! The queue root is the admin's (`queue_dir`, which may be a symlink to another disk); every
//! file and directory below it is opened through directory fds ([`crate::fsroot`]) without
//! following symlinks, and new files are created with `O_EXCL`, so a link planted in the queue
//! cannot redirect a write, a rename or a removal.
//!
//! So after a crash at any instant: `tmp/*` is garbage (never acknowledged), every `msg/ID` is a
//! complete message that was or may have been acknowledged and will be delivered, and a
//! recipient recorded as delivered in `state/ID` is never delivered again.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::durable;
use crate::envelope::{Body, Notify, Ret};
use crate::fsroot::Dir;

/// First retry after a temporary failure; doubled per attempt up to [`MAX_RETRY_INTERVAL`].
pub const FIRST_RETRY_INTERVAL: Duration = Duration::from_secs(300);
/// Longest interval between two attempts.
pub const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(3600);
/// Give up after a message has been queued this long (RFC 5321 §4.5.4.1: 4-5 days).
pub const MAX_QUEUE_LIFETIME: Duration = Duration::from_secs(5 * 24 * 3600);
/// Longest envelope line read back (a bound on memory when reading a damaged file).
pub const MAX_ENVELOPE_LINE: usize = 16 * 1024 * 1024;
/// Length of a queue id.
pub const ID_LEN: usize = 23;

/// One recipient with its DSN parameters (RFC 3461), kept for part 2's bounces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address as given in RCPT TO (`local@domain`).
    pub address: String,
    /// NOTIFY=, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// ORCPT= as `type;address`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
}

/// Everything known about a message besides its content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Reverse path; empty for the null sender `<>`.
    pub sender: String,
    /// Recipients in RCPT order.
    pub recipients: Vec<Recipient>,
    /// Seconds since the epoch when the message was accepted.
    pub time: u64,
    /// Client IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// EHLO/HELO name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helo: Option<String>,
    /// Authenticated user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_user: Option<String>,
    /// DSN RET=.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<Ret>,
    /// DSN ENVID=.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// BODY=.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    /// SMTPUTF8 was declared.
    #[serde(default)]
    pub smtputf8: bool,
}

/// Delivery result of one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RcptState {
    /// Not delivered yet.
    Pending,
    /// Delivered.
    Delivered,
    /// Failed permanently, with the reason.
    Failed(String),
}

/// The contents of `state/ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// One entry per recipient, same order as the envelope.
    pub rcpts: Vec<RcptState>,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Seconds since the epoch before which no retry is made.
    pub next_try: u64,
    /// Last temporary error, for `mrelayd queue`.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Per pending recipient (by index), the targets of its expansion (aliases, several
    /// Maildirs or commands) already delivered, so a retry after a partial failure does not
    /// deliver them again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delivered_targets: BTreeMap<usize, Vec<String>>,
    /// Per pending recipient (by index), its last temporary error, for `mrelayd queue`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rcpt_errors: BTreeMap<usize, String>,
    /// A delay warning (DSN Action: delayed) went out already.
    #[serde(default)]
    pub delay_warned: bool,
}

/// The retry schedule: `initial` seconds after the first temporary failure, doubling per
/// attempt up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// First wait (seconds).
    pub initial: u64,
    /// Longest wait (seconds).
    pub max: u64,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            initial: FIRST_RETRY_INTERVAL.as_secs(),
            max: MAX_RETRY_INTERVAL.as_secs(),
        }
    }
}

impl Status {
    /// Fresh status: everybody pending.
    pub fn new(n: usize) -> Status {
        Status {
            rcpts: vec![RcptState::Pending; n],
            attempts: 0,
            next_try: 0,
            last_error: None,
            delivered_targets: BTreeMap::new(),
            rcpt_errors: BTreeMap::new(),
            delay_warned: false,
        }
    }

    /// Whether no recipient is pending any more.
    pub fn finished(&self) -> bool {
        !self.rcpts.contains(&RcptState::Pending)
    }

    /// Schedules the next attempt after a temporary failure (exponential back-off).
    pub fn defer(&mut self, now: u64, error: String, retry: Retry) {
        self.attempts = self.attempts.saturating_add(1);
        let shift = self.attempts.saturating_sub(1).min(16);
        let wait = retry
            .initial
            .saturating_mul(1u64 << shift)
            .min(retry.max.max(retry.initial));
        self.next_try = now.saturating_add(wait);
        self.last_error = Some(error);
    }
}

/// Where a message sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `msg/`: will be delivered.
    Active,
    /// `hold/`: set aside.
    Held,
}

/// A queue entry that could not be read (its message or its state file).
#[derive(Debug)]
pub struct Unreadable {
    /// Queue id.
    pub id: String,
    /// The message file of the entry (the state file may be the one that failed).
    pub path: PathBuf,
    /// Why it could not be read.
    pub error: io::Error,
}

/// One line of `mrelayd queue`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Queue id.
    pub id: String,
    /// Active or held.
    pub place: Place,
    /// File size in octets (envelope included).
    pub size: u64,
    /// The envelope.
    pub envelope: Envelope,
    /// Delivery progress (fresh when no `state/ID` exists yet).
    pub status: Status,
}

/// A queue directory. Holds the directory fds of its root and subdirectories, each opened
/// once on first use (clones share them).
#[derive(Debug, Clone)]
pub struct Queue {
    root: PathBuf,
    dirs: Arc<Dirs>,
}

/// The subdirectories of a queue, in the order of [`Dirs::sub`].
const SUBDIRS: [&str; 4] = ["tmp", "msg", "hold", "state"];

/// Lazily opened directory fds (a queue opened by `mrelayd queue` may lack some directories).
#[derive(Debug, Default)]
struct Dirs {
    root: OnceLock<Dir>,
    sub: [OnceLock<Dir>; 4],
}

/// Mode of the queue's directories (before the umask, as before: `mkdir -p`).
const QUEUE_DIR_MODE: u32 = 0o777;
/// Mode of every queue file.
const QUEUE_FILE_MODE: u32 = 0o600;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Whether `id` has the shape of a queue id (so it is safe to use as a file name).
pub fn valid_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

/// A new queue id: seconds (8 hex), microseconds (5), pid (6), counter (4).
pub fn new_id() -> String {
    let t = crate::clock::since_epoch();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xFFFF;
    format!(
        "{:08X}{:05X}{:06X}{:04X}",
        t.as_secs() & 0xFFFF_FFFF,
        t.subsec_micros(),
        std::process::id() & 0xFF_FFFF,
        n
    )
}

fn not_found(id: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no queue entry {id}"))
}

fn bad_id(id: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{id:?} is not a queue id"),
    )
}

impl Queue {
    /// Opens the queue at `root`, creating its directories as needed. Does not clean up: see
    /// [`recover`](Self::recover).
    pub fn open(root: impl AsRef<Path>) -> io::Result<Queue> {
        let q = Queue::open_existing(root)?;
        fs::create_dir_all(&q.root)?;
        let root = q.root_dir()?;
        let mut created = false;
        for d in SUBDIRS {
            created |= root.create_dir(d, QUEUE_DIR_MODE)?;
        }
        if created {
            root.sync()?;
        }
        Ok(q)
    }

    /// Opens the queue without creating or cleaning anything (for `mrelayd queue`).
    pub fn open_existing(root: impl AsRef<Path>) -> io::Result<Queue> {
        Ok(Queue {
            root: root.as_ref().to_path_buf(),
            dirs: Arc::new(Dirs::default()),
        })
    }

    /// The queue directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root's fd (the root itself may be a symlink: it is the admin's path).
    fn root_dir(&self) -> io::Result<&Dir> {
        if let Some(d) = self.dirs.root.get() {
            return Ok(d);
        }
        let d = Dir::open_root_following(&self.root)?;
        Ok(self.dirs.root.get_or_init(|| d))
    }

    /// The fd of subdirectory `name` (one of [`SUBDIRS`]), never through a symlink.
    fn dir(&self, name: &str) -> io::Result<&Dir> {
        let i = SUBDIRS
            .iter()
            .position(|d| *d == name)
            .ok_or_else(|| io::Error::other(format!("internal: no queue directory {name}")))?;
        if let Some(d) = self.dirs.sub[i].get() {
            return Ok(d);
        }
        let d = self.root_dir()?.open_dir(name)?;
        Ok(self.dirs.sub[i].get_or_init(|| d))
    }

    /// Whether `dir/id` exists (a symlink there counts: it is not followed, only seen).
    fn exists(&self, dir: &str, id: &str) -> io::Result<bool> {
        match self.dir(dir)?.stat(id) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes crash leftovers (see the module doc): files in `tmp/` older than `grace` that no
    /// live writer holds locked, and `state/` files without a message. A message being
    /// received stays locked by its session ([`Incoming`]) however slowly it arrives, so no
    /// `grace` removes a live one, even with `inetd` sessions running next to `serve`; the lock
    /// dies with its process, so a crashed writer's file goes. Deleting a live `tmp/ID.state`
    /// would only make that status write fail and be retried.
    pub fn recover(&self, grace: Duration) -> io::Result<usize> {
        let mut removed = 0;
        let now = SystemTime::now();
        let tmp = self.dir("tmp")?;
        for (name, _) in tmp.list()? {
            let old = tmp
                .stat(&name)
                .map(|m| now.duration_since(m.mtime).unwrap_or_default() >= grace)
                .unwrap_or(false);
            if old && !being_received(tmp, &name) && tmp.unlink(&name).is_ok() {
                removed += 1;
            }
        }
        let state = self.dir("state")?;
        for (name, _) in state.list()? {
            let Some(id) = name.to_str() else {
                continue;
            };
            if !self.exists("msg", id)? && !self.exists("hold", id)? && state.unlink(id).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes a message durably and returns its id (transitions 1 and 2 of the module doc).
    /// `header` (our Received: line) goes before `data`. On any error nothing is left behind.
    pub fn enqueue(&self, envelope: &Envelope, header: &[u8], data: &[u8]) -> io::Result<String> {
        for _ in 0..100 {
            let id = new_id();
            match self.enqueue_with_id(&id, envelope, header, data) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                other => return other.map(|()| id),
            }
        }
        Err(io::Error::other("could not find a free queue id"))
    }

    /// [`enqueue`](Self::enqueue) under an id chosen in advance (from [`new_id`], so it can go
    /// into the Received: header). `AlreadyExists` if the id is taken.
    pub fn enqueue_with_id(
        &self,
        id: &str,
        envelope: &Envelope,
        header: &[u8],
        data: &[u8],
    ) -> io::Result<()> {
        let mut incoming = self.begin(id, envelope, header)?;
        incoming.write(data)?;
        incoming.commit()
    }

    /// Starts receiving a message under `id` (transition 1): creates and locks `tmp/ID` and
    /// writes the envelope and `header` (our Received: line) into its buffer; the content
    /// follows with [`Incoming::write`], and [`Incoming::commit`] makes it an accepted message.
    /// Dropping the [`Incoming`] uncommitted removes `tmp/ID`. `AlreadyExists` if the id is
    /// taken.
    pub fn begin(&self, id: &str, envelope: &Envelope, header: &[u8]) -> io::Result<Incoming> {
        if !valid_id(id) {
            return Err(bad_id(id));
        }
        let mut json = serde_json::to_vec(envelope).map_err(io::Error::other)?;
        json.push(b'\n');
        self.dir("msg")?;
        if self.exists("msg", id)? {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("queue id {id} taken"),
            ));
        }
        let file = self.dir("tmp")?.create_new(id, QUEUE_FILE_MODE)?;
        let mut incoming = Incoming {
            id: id.to_string(),
            queue: self.clone(),
            writer: Some(io::BufWriter::with_capacity(WRITE_BUFFER, file)),
            size: 0,
            envelope_len: json.len() as u64,
            header_len: header.len() as u64,
        };
        // Marks the file live for recover() in every process; released when the file closes.
        // A fresh O_EXCL file cannot be locked by anyone else, so only an error can stop this.
        if let Some(w) = incoming.writer.as_mut() {
            match w.get_ref().try_lock() {
                Ok(()) | Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
            w.write_all(&json)?;
            w.write_all(header)?;
        }
        Ok(incoming)
    }

    /// Where `id` is, if anywhere.
    pub fn place(&self, id: &str) -> io::Result<Place> {
        if !valid_id(id) {
            return Err(bad_id(id));
        }
        if self.exists("msg", id)? {
            Ok(Place::Active)
        } else if self.exists("hold", id)? {
            Ok(Place::Held)
        } else {
            Err(not_found(id))
        }
    }

    /// The directory `id` is in (`msg` or `hold`).
    fn dir_of(&self, id: &str) -> io::Result<&'static str> {
        Ok(match self.place(id)? {
            Place::Active => "msg",
            Place::Held => "hold",
        })
    }

    /// Reads the envelope of `id` and returns it with a reader positioned at the message.
    pub fn open_message(&self, id: &str) -> io::Result<(Envelope, BufReader<File>)> {
        let file = self.dir(self.dir_of(id)?)?.open_read(id)?;
        read_envelope(file)
    }

    /// Opens `msg/ID` and takes an exclusive lock on it, so only one process delivers it.
    /// `Ok(None)`: someone else holds it, or it is gone.
    pub fn lock(&self, id: &str) -> io::Result<Option<Locked>> {
        if !valid_id(id) {
            return Err(bad_id(id));
        }
        let file = match self.dir("msg")?.open_read(id) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        // It may have been completed and unlinked between open and lock.
        if !self.exists("msg", id)? {
            return Ok(None);
        }
        let (envelope, reader) = read_envelope(file)?;
        let status = self
            .status(id)?
            .unwrap_or_else(|| Status::new(envelope.recipients.len()));
        if status.rcpts.len() != envelope.recipients.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{id}: state file does not match the envelope"),
            ));
        }
        Ok(Some(Locked {
            id: id.to_string(),
            envelope,
            status,
            reader,
        }))
    }

    /// Reads `state/ID`, if it exists.
    pub fn status(&self, id: &str) -> io::Result<Option<Status>> {
        let read = self.dir("state")?.open_read(id).and_then(|mut f| {
            let mut b = Vec::new();
            f.read_to_end(&mut b).map(|_| b)
        });
        match read {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("state/{id}: {e}"))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces `state/ID` atomically and durably.
    pub fn write_status(&self, id: &str, status: &Status) -> io::Result<()> {
        if !valid_id(id) {
            return Err(bad_id(id));
        }
        let (tmp_dir, state) = (self.dir("tmp")?, self.dir("state")?);
        let json = serde_json::to_vec(status).map_err(io::Error::other)?;
        // tmp/ID.state.PID.RANDOM (O_EXCL): a crash's leftover is removed by `recover`.
        durable::replace(
            tmp_dir,
            &format!("{id}.state"),
            state,
            id,
            &json,
            QUEUE_FILE_MODE,
        )
    }

    /// Removes a finished message (transition 4).
    pub fn complete(&self, id: &str) -> io::Result<()> {
        if !valid_id(id) {
            return Err(bad_id(id));
        }
        let msg = self.dir("msg")?;
        msg.unlink(id)?;
        msg.sync()?;
        match self.dir("state")?.unlink(id) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// `mrelayd queue remove ID`: deletes the message wherever it is.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let dir = self.dir(self.dir_of(id)?)?;
        dir.unlink(id)?;
        dir.sync()?;
        match self.dir("state")?.unlink(id) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// `mrelayd queue hold ID`.
    pub fn hold(&self, id: &str) -> io::Result<()> {
        self.move_between(id, "msg", "hold")
    }

    /// `mrelayd queue release ID`: back to `msg/`, due at once.
    pub fn release(&self, id: &str) -> io::Result<()> {
        self.move_between(id, "hold", "msg")?;
        if let Some(mut st) = self.status(id)? {
            st.next_try = 0;
            self.write_status(id, &st)?;
        }
        Ok(())
    }

    fn move_between(&self, id: &str, from: &str, to: &str) -> io::Result<()> {
        if !valid_id(id) {
            return Err(bad_id(id));
        }
        if !self.exists(from, id)? {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no queue entry {id} in {from}/"),
            ));
        }
        let (src, dest) = (self.dir(from)?, self.dir(to)?);
        src.rename_replace(id, dest, id)?;
        dest.sync()?;
        src.sync()
    }

    /// Ids in `msg/` (active), oldest first.
    pub fn active_ids(&self) -> io::Result<Vec<String>> {
        self.ids("msg")
    }

    fn ids(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        let names = match self.dir(dir).and_then(Dir::list) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(e),
        };
        for (name, _) in names {
            let name = name.to_string_lossy().into_owned();
            if valid_id(&name) {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Every message, active and held, oldest first (for `mrelayd queue`); the first entry
    /// that cannot be read is an error (see [`list_all`](Self::list_all) for a listing that
    /// goes on).
    pub fn list(&self) -> io::Result<Vec<Entry>> {
        let (out, bad) = self.list_all()?;
        match bad.into_iter().next() {
            Some(b) => Err(b.error),
            None => Ok(out),
        }
    }

    /// Every readable message, oldest first, and every entry that could not be read (message
    /// or state file: permission, damage) with its path and error, so that `mrelayd queue`
    /// shows them instead of hiding them.
    pub fn list_all(&self) -> io::Result<(Vec<Entry>, Vec<Unreadable>)> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for (dir, place) in [("msg", Place::Active), ("hold", Place::Held)] {
            for id in self.ids(dir)? {
                match self.entry_in(&id, dir, place) {
                    Ok(e) => out.push(e),
                    // Delivered and removed while we were listing.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => bad.push(Unreadable {
                        path: self.root.join(dir).join(&id),
                        id,
                        error,
                    }),
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok((out, bad))
    }

    /// One entry (for `mrelayd queue show ID`).
    pub fn entry(&self, id: &str) -> io::Result<Entry> {
        match self.place(id)? {
            Place::Active => self.entry_in(id, "msg", Place::Active),
            Place::Held => self.entry_in(id, "hold", Place::Held),
        }
    }

    fn entry_in(&self, id: &str, dir: &str, place: Place) -> io::Result<Entry> {
        let file = self.dir(dir)?.open_read(id)?;
        let size = file.metadata()?.len();
        let (envelope, _) = read_envelope(file)?;
        let status = self
            .status(id)?
            .unwrap_or_else(|| Status::new(envelope.recipients.len()));
        Ok(Entry {
            id: id.to_string(),
            place,
            size,
            envelope,
            status,
        })
    }

    /// Asks a running daemon to retry everything now (it watches for this file).
    pub fn request_flush(&self) -> io::Result<()> {
        use rustix::fs::OFlags;
        let flags = OFlags::WRONLY | OFlags::CREATE;
        self.root_dir()?
            .open_file("flush", flags, QUEUE_FILE_MODE)
            .map(|_| ())
    }

    /// Consumes a flush request, if one was made.
    pub fn take_flush_request(&self) -> bool {
        self.root_dir().and_then(|d| d.unlink("flush")).is_ok()
    }
}

fn read_envelope(file: File) -> io::Result<(Envelope, BufReader<File>)> {
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut line = Vec::new();
    (&mut reader)
        .take(MAX_ENVELOPE_LINE as u64)
        .read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "queue file without an envelope line",
        ));
    }
    let envelope = serde_json::from_slice(&line)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad envelope: {e}")))?;
    Ok((envelope, reader))
}

/// A message locked for delivery (the lock is released when this is dropped).
#[derive(Debug)]
pub struct Locked {
    /// Queue id.
    pub id: String,
    /// Its envelope.
    pub envelope: Envelope,
    /// Delivery progress so far.
    pub status: Status,
    /// Reader positioned at the start of the message (holds the lock).
    pub reader: BufReader<File>,
}

impl Locked {
    /// Reads the whole message.
    pub fn read_message(&mut self) -> io::Result<Vec<u8>> {
        let mut data = Vec::new();
        self.reader.read_to_end(&mut data)?;
        Ok(data)
    }
}

/// Octets buffered before each write to a message being received.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// Whether a live writer holds `tmp/name` locked ([`Incoming`]). A file that cannot be opened
/// or locked for another reason is not live.
fn being_received(tmp: &Dir, name: &std::ffi::OsStr) -> bool {
    let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK;
    match tmp.open_file(name, flags, 0) {
        Ok(f) => matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// A message being received into `tmp/ID` ([`Queue::begin`]). Dropped without
/// [`commit`](Self::commit), its file is removed.
#[derive(Debug)]
pub struct Incoming {
    id: String,
    queue: Queue,
    /// `None` once committed.
    writer: Option<io::BufWriter<File>>,
    size: u64,
    /// Octets of the envelope line at the start of the file.
    envelope_len: u64,
    /// Octets of the header given to [`Queue::begin`] (our Received: line) after it.
    header_len: u64,
}

impl Incoming {
    /// The queue id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Message octets written so far (the envelope and header not counted).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends message content (buffered: one write(2) per [`WRITE_BUFFER`] octets).
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("message already committed"))?;
        w.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }

    /// The message written so far (our Received: header, then the content), for reading:
    /// the buffer is flushed and `tmp/ID` opened read-only at the first octet after the
    /// envelope line. mrelayd's content filter reads it as its stdin.
    pub fn message_file(&mut self) -> io::Result<File> {
        use std::io::{Seek as _, SeekFrom};
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("message already committed"))?;
        w.flush()?;
        let mut f = self.queue.dir("tmp")?.open_read(&self.id)?;
        f.seek(SeekFrom::Start(self.envelope_len))?;
        Ok(f)
    }

    /// Puts `extra` (complete header lines, CRLF) into the message right after the header
    /// given to [`Queue::begin`] (our Received: line), before the content ([`Self::splice`]);
    /// mrelayd does it only for a content filter's header lines, at the end of the content.
    pub fn insert_after_header(&mut self, extra: &[u8]) -> io::Result<()> {
        self.splice(self.header_len, 0, extra)?;
        self.header_len += extra.len() as u64;
        Ok(())
    }

    /// Replaces the first `old_len` octets of the message (its header section, as
    /// [`Self::header_section`] gave it) with `head`, before the commit: header fields added
    /// on top or removed at the end of DATA (DKIM, [`crate::relay::sender_auth`]).
    pub fn rewrite_header(&mut self, head: &[u8], old_len: u64) -> io::Result<()> {
        self.splice(0, old_len, head)?;
        // Our Received: line is inside the rewritten head, wherever it went.
        self.header_len = 0;
        Ok(())
    }

    /// The message written so far (our Received: header first), read back whole, for checks
    /// that need all of it at the end of DATA (DKIM). In memory: the message size limit bounds it.
    pub fn content(&mut self) -> io::Result<Vec<u8>> {
        let mut data = Vec::new();
        self.message_file()?.read_to_end(&mut data)?;
        Ok(data)
    }

    /// The start of the message (our Received: header first) up to the end of its header
    /// section (the empty line not included), at most `max` octets: what the checks at the
    /// end of DATA look at before deciding whether they need all of it ([`Self::content`]).
    pub fn header_section(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut f = self.message_file()?;
        let mut head = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        while head.len() < max {
            let n = f.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&chunk[..n]);
            // header_end says `len` while no empty line has arrived yet.
            let end = crate::rfc5322::header_end(&head);
            if end.header < head.len() {
                head.truncate(end.header.min(max));
                return Ok(head);
            }
        }
        head.truncate(max);
        Ok(head)
    }

    /// Replaces the `old_len` octets of the message at `at` with `new`, before the commit: the
    /// file is copied with the change to `tmp/ID.splice` (created and locked as `tmp/ID` was),
    /// which then replaces `tmp/ID`; receiving goes on in the new file. The file is never
    /// acknowledged before the commit, so a crash halfway leaves only what [`Queue::recover`]
    /// removes; on an error `tmp/ID` is as it was. It costs one read and write of the message.
    fn splice(&mut self, at: u64, old_len: u64, new: &[u8]) -> io::Result<()> {
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| io::Error::other("message already committed"))?;
        w.flush()?;
        let tmp = self.queue.dir("tmp")?;
        let name = format!("{}.splice", self.id);
        let file = tmp.create_new(&name, QUEUE_FILE_MODE)?;
        let copied = (|| -> io::Result<io::BufWriter<File>> {
            // As in begin(): marks the file live for recover() while it is being written.
            match file.try_lock() {
                Ok(()) | Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
            let mut out = io::BufWriter::with_capacity(WRITE_BUFFER, file);
            let mut old = tmp.open_read(&self.id)?;
            let keep = self.envelope_len + at;
            if io::copy(&mut (&mut old).take(keep), &mut out)? != keep {
                return Err(io::Error::other("queue file shorter than its header"));
            }
            if io::copy(&mut (&mut old).take(old_len), &mut io::sink())? != old_len {
                return Err(io::Error::other("queue file shorter than its header"));
            }
            out.write_all(new)?;
            io::copy(&mut old, &mut out)?;
            out.flush()?;
            tmp.rename_replace(&name, tmp, &self.id)?;
            Ok(out)
        })();
        match copied {
            Ok(out) => {
                // The old file (replaced, so unlinked) closes here, its lock with it.
                self.writer = Some(out);
                self.size = (self.size + new.len() as u64).saturating_sub(old_len);
                Ok(())
            }
            Err(e) => {
                let _ = tmp.unlink(&name);
                Err(e)
            }
        }
    }

    /// Makes the message durable and accepted (transition 2): flush, `fsync` the file, rename
    /// `tmp/ID` → `msg/ID`, `fsync` `msg/`. Only after `Ok` may the client get its 250. On any
    /// error nothing is left behind.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(w) = self.writer.take() else {
            return Err(io::Error::other("message already committed"));
        };
        let id = self.id.as_str();
        let (tmp, msg) = (self.queue.dir("tmp")?, self.queue.dir("msg")?);
        let written = (|| -> io::Result<()> {
            let file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
            file.sync_all()?;
            // Undoes the rename when the directory sync fails: the client will be told 452
            // and must not see the message delivered.
            durable::rename_noreplace(tmp, id, msg, id)
        })();
        if let Err(e) = written {
            let _ = tmp.unlink(id);
            return Err(e);
        }
        Ok(())
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            // Discard the buffer rather than write it: the file goes away.
            drop(w.into_parts());
            if let Ok(tmp) = self.queue.dir("tmp") {
                let _ = tmp.unlink(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: usize) -> Envelope {
        Envelope {
            sender: "a@b.test".into(),
            recipients: (0..n)
                .map(|i| Recipient {
                    address: format!("r{i}@c.test"),
                    notify: None,
                    orcpt: None,
                })
                .collect(),
            time: 1,
            ..Envelope::default()
        }
    }

    #[test]
    fn ids_are_unique_and_valid() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = new_id();
            assert!(valid_id(&id), "{id}");
            assert!(seen.insert(id));
        }
        assert!(!valid_id("../../etc/passwd"));
        assert!(!valid_id("abc"));
    }

    #[test]
    fn lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let id = q
            .enqueue(&env(2), b"Received: x\r\n", b"Subject: s\r\n\r\nbody\r\n")
            .unwrap();
        assert!(dir.path().join("msg").join(&id).exists());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let list = q.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].envelope, env(2));
        let mut l = q.lock(&id).unwrap().unwrap();
        // A second locker (another process or thread) is refused while we hold it.
        assert!(q.lock(&id).unwrap().is_none());
        assert_eq!(
            l.read_message().unwrap(),
            b"Received: x\r\nSubject: s\r\n\r\nbody\r\n"
        );
        l.status.rcpts[0] = RcptState::Delivered;
        l.status.defer(100, "mailbox busy".into(), Retry::default());
        assert_eq!(l.status.next_try, 100 + FIRST_RETRY_INTERVAL.as_secs());
        q.write_status(&id, &l.status).unwrap();
        drop(l);
        let l = q.lock(&id).unwrap().unwrap();
        assert_eq!(l.status.rcpts[0], RcptState::Delivered);
        assert_eq!(l.status.last_error.as_deref(), Some("mailbox busy"));
        drop(l);
        q.hold(&id).unwrap();
        assert_eq!(q.place(&id).unwrap(), Place::Held);
        assert!(
            q.lock(&id).unwrap().is_none(),
            "held messages are not delivered"
        );
        q.release(&id).unwrap();
        assert_eq!(q.status(&id).unwrap().unwrap().next_try, 0);
        q.complete(&id).unwrap();
        assert!(q.list().unwrap().is_empty());
        assert!(q.remove(&id).is_err());
        assert!(q.remove("../x").is_err());
    }

    #[test]
    fn recovery_cleans_crash_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let keep = q.enqueue(&env(1), b"", b"x\r\n").unwrap();
        q.write_status(&keep, &Status::new(1)).unwrap();
        // A half-received message and an orphaned state file.
        fs::write(dir.path().join("tmp").join(new_id()), b"{\"partial").unwrap();
        fs::write(dir.path().join("state").join(new_id()), b"{}").unwrap();
        let q = Queue::open(dir.path()).unwrap();
        assert_eq!(
            q.recover(Duration::from_secs(60)).unwrap(),
            1,
            "young tmp files stay"
        );
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 1);
        assert_eq!(q.recover(Duration::ZERO).unwrap(), 1);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(dir.path().join("state")).unwrap().count(), 1);
        assert_eq!(q.active_ids().unwrap(), vec![keep]);
    }

    #[test]
    fn streamed_message_commit_and_abort() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let tmp_count = || fs::read_dir(dir.path().join("tmp")).unwrap().count();
        // Content in many pieces, over several buffer sizes.
        let id = new_id();
        let mut m = q.begin(&id, &env(1), b"Received: x\r\n").unwrap();
        let piece = vec![b'a'; 1000];
        for _ in 0..300 {
            m.write(&piece).unwrap();
        }
        assert_eq!(m.size(), 300_000);
        assert_eq!(tmp_count(), 1);
        // A live message is never recovered away, however old.
        assert_eq!(q.recover(Duration::ZERO).unwrap(), 0);
        assert!(
            q.active_ids().unwrap().is_empty(),
            "not accepted before commit"
        );
        m.commit().unwrap();
        assert_eq!(tmp_count(), 0);
        let mut l = q.lock(&id).unwrap().unwrap();
        let data = l.read_message().unwrap();
        assert_eq!(data.len(), 13 + 300_000);
        assert!(data.starts_with(b"Received: x\r\naaa"));
        drop(l);
        // Dropped before commit: nothing left, and the id is free again.
        let id2 = new_id();
        let mut m = q.begin(&id2, &env(1), b"").unwrap();
        m.write(&piece).unwrap();
        drop(m);
        assert_eq!(tmp_count(), 0);
        assert_eq!(q.active_ids().unwrap(), vec![id.clone()]);
        // A taken id is refused.
        assert_eq!(
            q.begin(&id, &env(1), b"").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn content_read_back_and_header_rewritten_before_commit() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let id = new_id();
        let mut inc = q.begin(&id, &env(1), b"Received: x\r\n").unwrap();
        inc.write(b"Subject: a\r\n\r\nbody\r\n").unwrap();
        let all = b"Received: x\r\nSubject: a\r\n\r\nbody\r\n";
        assert_eq!(inc.content().unwrap(), all);
        let head = inc.header_section(1 << 20).unwrap();
        assert_eq!(head, b"Received: x\r\nSubject: a\r\n");
        assert_eq!(inc.header_section(5).unwrap(), b"Recei");
        inc.rewrite_header(b"X-New: 1\r\nReceived: x\r\n", head.len() as u64)
            .unwrap();
        inc.write(b"more\r\n").unwrap();
        assert_eq!(q.dir("tmp").unwrap().list().unwrap().len(), 1);
        inc.commit().unwrap();
        let (e, mut r) = q.open_message(&id).unwrap();
        assert_eq!(e, env(1));
        let mut m = Vec::new();
        r.read_to_end(&mut m).unwrap();
        assert_eq!(m, b"X-New: 1\r\nReceived: x\r\n\r\nbody\r\nmore\r\n");
        // Without an empty line the whole message is header.
        let mut inc = q.begin(&new_id(), &env(1), b"").unwrap();
        inc.write(b"A: b\nC: d\n").unwrap();
        assert_eq!(inc.header_section(1 << 20).unwrap(), b"A: b\nC: d\n");
        let mut inc = q.begin(&new_id(), &env(1), b"").unwrap();
        inc.write(b"A: b\n\nC: d\n").unwrap();
        assert_eq!(inc.header_section(1 << 20).unwrap(), b"A: b\n");
    }

    #[test]
    fn message_file_and_inserted_headers() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let tmp_count = || fs::read_dir(dir.path().join("tmp")).unwrap().count();
        let id = new_id();
        let mut m = q.begin(&id, &env(1), b"Received: x\r\n").unwrap();
        let body = vec![b'a'; 100_000];
        m.write(b"Subject: s\r\n\r\n").unwrap();
        m.write(&body).unwrap();
        // What a filter reads: the message without the envelope line, buffer included.
        let mut seen = Vec::new();
        m.message_file().unwrap().read_to_end(&mut seen).unwrap();
        assert!(seen.starts_with(b"Received: x\r\nSubject: s\r\n\r\naaa"));
        assert_eq!(seen.len(), 13 + 14 + 100_000);
        m.insert_after_header(b"X-A: 1\r\n").unwrap();
        m.insert_after_header(b"X-B: 2\r\n").unwrap();
        // Receiving goes on in the new file; the old one is gone.
        m.write(b"zz").unwrap();
        assert_eq!(tmp_count(), 1);
        assert_eq!(
            q.recover(Duration::ZERO).unwrap(),
            0,
            "the new file is live"
        );
        m.commit().unwrap();
        assert_eq!(tmp_count(), 0);
        let mut l = q.lock(&id).unwrap().unwrap();
        let data = l.read_message().unwrap();
        let mut want = b"Received: x\r\nX-A: 1\r\nX-B: 2\r\nSubject: s\r\n\r\n".to_vec();
        want.extend_from_slice(&body);
        want.extend_from_slice(b"zz");
        assert_eq!(data, want);
        drop(l);
        // A failed insert (its name taken) leaves the message as it was.
        let id = new_id();
        let mut m = q.begin(&id, &env(1), b"R: y\r\n").unwrap();
        m.write(b"S: t\r\n\r\nb").unwrap();
        fs::write(dir.path().join("tmp").join(format!("{id}.splice")), b"").unwrap();
        assert!(m.insert_after_header(b"X-C: 3\r\n").is_err());
        m.commit().unwrap();
        let data = q.lock(&id).unwrap().unwrap().read_message().unwrap();
        assert_eq!(data, b"R: y\r\nS: t\r\n\r\nb");
    }

    #[test]
    fn backoff_is_bounded() {
        let mut s = Status::new(1);
        for _ in 0..40 {
            s.defer(0, "x".into(), Retry::default());
        }
        assert_eq!(s.next_try, MAX_RETRY_INTERVAL.as_secs());
    }

    #[test]
    fn links_planted_in_the_queue_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().join("q")).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"victim").unwrap();
        let id = q.enqueue(&env(1), b"", b"x\r\n").unwrap();
        // a predictable temporary name planted as a link: replaced, not written through
        std::os::unix::fs::symlink(&victim, dir.path().join(format!("q/tmp/{id}.state"))).unwrap();
        q.write_status(&id, &Status::new(1)).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        // a directory of the queue replaced by a link: refused (a fresh handle opens it anew)
        let q2 = Queue::open_existing(dir.path().join("q")).unwrap();
        fs::rename(dir.path().join("q/state"), dir.path().join("state-moved")).unwrap();
        fs::create_dir(dir.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("q/state"))
            .unwrap();
        let e = q2.write_status(&id, &Status::new(1)).unwrap_err();
        assert!(crate::fsroot::is_refusal(&e), "{e}");
        assert_eq!(
            fs::read_dir(dir.path().join("elsewhere")).unwrap().count(),
            0
        );
        // the flush trigger planted as a link
        std::os::unix::fs::symlink(&victim, dir.path().join("q/flush")).unwrap();
        assert!(q2.request_flush().is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"victim");
        assert!(q2.take_flush_request(), "the link itself is removed");
    }

    #[test]
    fn damaged_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let id = new_id();
        fs::write(dir.path().join("msg").join(&id), b"no newline").unwrap();
        assert!(q.lock(&id).is_err());
        assert!(q.list().is_err());
        let (ok, bad) = q.list_all().unwrap();
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].id, id);
        assert_eq!(bad[0].path, dir.path().join("msg").join(&id));
        fs::write(dir.path().join("msg").join(&id), b"{bad json}\nx").unwrap();
        assert!(q.entry(&id).is_err());
    }
}
