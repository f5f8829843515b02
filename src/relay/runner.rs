//! The queue runner: who calls [`Deliverer::deliver`] and when.
//!
//! `mrelayd serve` starts a [`Runner`]: a pool of worker threads fed through a channel, and one
//! thread that feeds them
//! - ids of messages the SMTP sessions just queued (and bounces the workers queued), at once;
//! - every active queue entry each [`RESCAN_INTERVAL`] (or the first retry interval, when that
//!   is shorter): entries queued by `inetd` processes and retries that came due;
//! - every active entry, due or not, when `mrelayd flush` left a flush request in the queue
//!   (destinations remote delivery had just found unreachable are tried again too).
//!
//! An id is handed to at most one worker at a time; the queue's own entry lock
//! ([`crate::queue::Queue::lock`]) also keeps other processes (`inetd`, `flush`) off it.
//!
//! While `serve` runs it holds the queue's [`SERVE_LOCK`] file locked; `flush` looks at that
//! lock ([`daemon_running`]) to decide between asking the daemon and running the queue itself
//! ([`run_once`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::deliver::{Deliverer, Outcome};
use crate::exit;
use crate::log;
use crate::queue::Queue;

/// How often the queue runner looks for a flush request and due retries.
pub const RUNNER_TICK: Duration = Duration::from_millis(200);
/// How often the queue runner rescans the whole queue (new entries from inetd sessions,
/// retries that came due), at most; a shorter first retry interval rescans as often.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(30);
/// `tmp/` files older than this are crash leftovers (see [`Queue::recover`]).
pub const TMP_GRACE: Duration = Duration::from_secs(60);
/// The file in the queue directory that a running `serve` keeps locked.
pub const SERVE_LOCK: &str = "serve.lock";

/// The delivery workers and the thread that feeds them.
pub struct Runner {
    tx: mpsc::Sender<String>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Runner {
    /// Starts `workers` delivery threads and the feeding thread; they run until `stop` is set
    /// (checked each [`RUNNER_TICK`]) and [`Runner::join`] is called.
    pub fn start(deliverer: Deliverer, workers: usize, stop: Arc<AtomicBool>) -> Runner {
        let (tx, rx) = mpsc::channel::<String>();
        // Bounces queued by the workers go through the same door as new mail.
        *deliverer.wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx.clone());
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut threads = Vec::new();
        // Workers take ids from the channel; an id is in `in_flight` while queued or being
        // delivered. `true`: a flush, deliver even when the retry time has not come.
        let (work_tx, work_rx) = mpsc::channel::<(String, bool)>();
        let work_rx = Arc::new(Mutex::new(work_rx));
        for _ in 0..workers {
            let work_rx = work_rx.clone();
            let deliverer = deliverer.clone();
            let in_flight = in_flight.clone();
            threads.push(std::thread::spawn(move || loop {
                let next = work_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok((id, force)) = next else { break };
                match deliverer.deliver(&id, force) {
                    Ok(Outcome::Done | Outcome::Deferred | Outcome::Busy | Outcome::NotDue) => {}
                    Err(e) => log_failure(&deliverer.queue, &id, &e),
                }
                in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            }));
        }
        // The runner: new ids from sessions, plus periodic scans and flush requests.
        let queue = deliverer.queue.clone();
        let remote = deliverer.remote.clone();
        let rescan = RESCAN_INTERVAL.min(Duration::from_secs(
            deliverer.remote.config().retry().initial,
        ));
        threads.push(std::thread::spawn(move || {
            let mut last_scan: Option<Instant> = None;
            let dispatch = |id: String, force: bool| {
                let mut f = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                if f.insert(id.clone()) {
                    let _ = work_tx.send((id, force));
                }
            };
            let mut last_tick = Instant::now();
            loop {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                match rx.recv_timeout(RUNNER_TICK) {
                    Ok(id) => {
                        dispatch(id, false);
                        // A steady stream of new mail must not starve flushes and rescans.
                        if last_tick.elapsed() < RUNNER_TICK {
                            continue;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
                last_tick = Instant::now();
                let flush = queue.take_flush_request();
                if flush || last_scan.is_none_or(|t| t.elapsed() >= rescan) {
                    if flush {
                        log::line("flush requested: retrying the whole queue");
                        // A flush retries everything now, destinations just found dead too.
                        remote.forget_dead();
                    }
                    last_scan = Some(Instant::now());
                    if let Err(e) = queue.recover(TMP_GRACE) {
                        log::line(format_args!("queue cleanup: {e}"));
                    }
                    match queue.active_ids() {
                        Ok(ids) => {
                            for id in ids {
                                dispatch(id, flush);
                            }
                        }
                        Err(e) => log::line(format_args!("scanning the queue: {e}")),
                    }
                }
            }
            drop(work_tx);
        }));
        Runner { tx, threads }
    }

    /// Where to announce a newly queued id so it is delivered at once.
    pub fn sender(&self) -> mpsc::Sender<String> {
        self.tx.clone()
    }

    /// Waits for the threads to end (after `stop` was set, or once every sender is gone).
    pub fn join(self) {
        drop(self.tx);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Delivers every active entry now, due or not, in this process; bounces this run queues are
/// delivered in the same run. Returns how many entries are left in the queue.
pub fn run_once(deliverer: &Deliverer) -> Result<usize> {
    let (tx, rx) = mpsc::channel::<String>();
    *deliverer.wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    let mut left = 0;
    let mut todo = deliverer.queue.active_ids().context("reading the queue")?;
    while !todo.is_empty() {
        for id in std::mem::take(&mut todo) {
            match deliverer.deliver(&id, true) {
                Ok(Outcome::Done) => {}
                Ok(_) => left += 1,
                Err(e) => {
                    left += 1;
                    log_failure(&deliverer.queue, &id, &e);
                }
            }
        }
        todo.extend(rx.try_iter());
    }
    Ok(left)
}

/// Takes the queue's [`SERVE_LOCK`] for a `serve` daemon; held until the returned file is
/// dropped. A second daemon on the same queue gets a temporary failure.
pub fn lock_serve(queue: &Queue) -> Result<std::fs::File> {
    let lock = std::fs::File::create(queue.root().join(SERVE_LOCK))
        .context("creating the queue's serve.lock")?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(exit::fail(
            exit::TEMPFAIL,
            format!(
                "another mrelayd serve runs on queue {}",
                queue.root().display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context("locking the queue"))
        }
    }
}

/// Whether a `serve` daemon holds the queue (it keeps [`SERVE_LOCK`] locked).
pub fn daemon_running(queue: &Queue) -> bool {
    match std::fs::File::open(queue.root().join(SERVE_LOCK)) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

/// Says loudly which queue file could not be handled and what to do, so an entry the daemon
/// cannot read (wrong owner after a manual edit, a damaged file) is not retried in silence; it
/// also shows as UNREADABLE in `mrelayd queue`.
fn log_failure(queue: &Queue, id: &str, e: &std::io::Error) {
    let path = queue.root().join("msg").join(id);
    log::line(format_args!(
        "{id}: delivery failed: {e} (queue file {}; fix its owner or permissions, or run `mrelayd queue remove {id}`)",
        path.display()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_lock_is_exclusive_and_seen_by_flush() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(dir.path()).unwrap();
        assert!(!daemon_running(&queue));
        let held = lock_serve(&queue).unwrap();
        assert!(daemon_running(&queue));
        let second = lock_serve(&queue).unwrap_err();
        assert_eq!(exit::code_of(&second), exit::TEMPFAIL);
        assert!(format!("{second:#}").contains("another mrelayd serve runs"));
        drop(held);
        assert!(!daemon_running(&queue));
    }
}
