//! The driver side of the session hooks ([`crate::session`]): waiting for a client's input
//! while watching the three ends a sans-IO session cannot see — the server's shutdown signal
//! (SIGTERM), the idle timeout of the [`Connection`] and the session deadline of
//! [`ProgressDeadline`] — and saying the session's goodbye through [`SessionHooks`] when one
//! comes, with its log line. Every protocol driver (SMTP, POP3, IMAP next) waits here, so the
//! three paths are written once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant};

use super::pace::ProgressDeadline;
use super::Connection;
use crate::log;
use crate::session::{Goodbye, SessionHooks};

/// How a [`Watch::wait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// This many bytes were read and fed to the session (never zero).
    Input(usize),
    /// The client closed its end.
    Eof,
    /// The session was told why it ends ([`SessionHooks::goodbye`]): its next poll closes it.
    Said(Goodbye),
    /// Shutdown was requested while [`Wait::shutdown_now`] was off: the caller says the
    /// goodbye later (SMTP lets a message that is arriving end first).
    ShutdownDeferred,
    /// The caller's own [`Wait::due`] came first.
    Due,
    /// The caller's event source ([`Watch::wait_or`]: IMAP IDLE's mailbox watcher) fired.
    Event,
}

/// What one [`Watch::wait`] watches.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// Read at most this many bytes.
    pub max: usize,
    /// What the session waits for, for the timeout's log line ("a command", "message data").
    pub waiting_for: &'static str,
    /// Whether the session deadline applies now (SMTP: not while content arrives, which the
    /// least data rate watches instead).
    pub deadline: bool,
    /// Whether a shutdown says the goodbye at once (else [`Woke::ShutdownDeferred`]).
    pub shutdown_now: bool,
    /// Wake up after this long even from a silent client (the caller's own clocks).
    pub due: Option<Duration>,
}

impl Wait {
    /// A wait for a command under the deadline, goodbye at once at shutdown.
    pub fn command(max: usize) -> Wait {
        Wait {
            max,
            waiting_for: "a command",
            deadline: true,
            shutdown_now: true,
            due: None,
        }
    }
}

/// One session's watch over shutdown, idle timeout and deadline (module doc).
pub struct Watch {
    who: String,
    deadline: ProgressDeadline,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// The shutdown signal has fired (its future must not be polled again).
    shutdown_seen: bool,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("who", &self.who)
            .field("deadline", &self.deadline)
            .field("shutdown_seen", &self.shutdown_seen)
            .finish()
    }
}

impl Watch {
    /// A watch for the session on `conn` (its shutdown signal; its peer names it in the log,
    /// `stdin` in inetd mode) with a deadline of `span` from now.
    pub fn new(conn: &Connection, span: Duration) -> Watch {
        Watch {
            who: who(conn),
            deadline: ProgressDeadline::new(span, Instant::now()),
            shutdown: Box::pin(conn.shutdown_signal()),
            shutdown_seen: false,
        }
    }

    /// The client's name in log lines.
    pub fn who(&self) -> &str {
        &self.who
    }

    /// Takes a progress count (the session's, or what a proxying driver counts itself): when
    /// it grew, the deadline restarts.
    pub fn update(&mut self, progress: u64) {
        self.deadline.update(progress, Instant::now());
    }

    /// Whether shutdown was requested (and seen by a wait).
    pub fn shutdown_seen(&self) -> bool {
        self.shutdown_seen
    }

    /// Tells `session` why it ends, and logs the timeouts. Drivers call it for the goodbyes
    /// they decide themselves (SMTP's deferred shutdown) so every goodbye goes through here.
    pub fn say<S: SessionHooks + ?Sized>(&self, session: &mut S, why: Goodbye, waiting_for: &str) {
        match why {
            Goodbye::Shutdown => {}
            Goodbye::IdleTimeout => log::line(format_args!(
                "{}: timeout waiting for {waiting_for}",
                self.who
            )),
            Goodbye::Deadline => log::line(format_args!("{}: session deadline exceeded", self.who)),
        }
        session.goodbye(why);
    }

    /// Waits for input for `session` (fed to it), for the server's shutdown, the idle timeout
    /// of `conn`, the deadline (when `wait.deadline`) and `wait.due`, whichever comes first.
    /// The progress count is taken from `session` first. A deadline already passed is said
    /// before anything is read.
    pub async fn wait<S: SessionHooks + ?Sized>(
        &mut self,
        conn: &mut Connection,
        session: &mut S,
        wait: Wait,
    ) -> io::Result<Woke> {
        self.wait_or(conn, session, wait, std::future::pending())
            .await
    }

    /// [`wait`](Self::wait), also waking when `event` resolves ([`Woke::Event`]): the session
    /// pattern's event source for push (IMAP IDLE, RFC 2177: the store's watcher of the
    /// selected mailbox). Input already read is fed first; `event` is dropped when anything
    /// else comes first.
    pub async fn wait_or<S: SessionHooks + ?Sized, F: Future<Output = ()>>(
        &mut self,
        conn: &mut Connection,
        session: &mut S,
        wait: Wait,
        event: F,
    ) -> io::Result<Woke> {
        self.update(session.progress());
        let left = self.deadline.remaining(Instant::now());
        if wait.deadline && left.is_zero() {
            self.say(session, Goodbye::Deadline, wait.waiting_for);
            return Ok(Woke::Said(Goodbye::Deadline));
        }
        let due = wait.due.unwrap_or(Duration::MAX);
        let watch_shutdown = !self.shutdown_seen;
        let woke = tokio::select! {
            biased;
            () = &mut self.shutdown, if watch_shutdown => {
                self.shutdown_seen = true;
                if !wait.shutdown_now {
                    return Ok(Woke::ShutdownDeferred);
                }
                Goodbye::Shutdown
            }
            () = tokio::time::sleep(left), if wait.deadline => Goodbye::Deadline,
            () = tokio::time::sleep(due), if wait.due.is_some() => return Ok(Woke::Due),
            () = event => return Ok(Woke::Event),
            read = conn.read_chunk(wait.max) => match read {
                Ok(b) if b.is_empty() => return Ok(Woke::Eof),
                Ok(b) => {
                    session.feed(&b);
                    return Ok(Woke::Input(b.len()));
                }
                Err(e) => idle_timeout(e)?,
            },
        };
        self.say(session, woke, wait.waiting_for);
        Ok(Woke::Said(woke))
    }

    /// For a driver that waits on more than its client (POP3's proxy to a user's child):
    /// resolves at shutdown or when the deadline passes, with the goodbye to [`say`](Self::say).
    pub async fn ends(&mut self) -> Goodbye {
        let left = self.deadline.remaining(Instant::now());
        let watch_shutdown = !self.shutdown_seen;
        tokio::select! {
            biased;
            () = &mut self.shutdown, if watch_shutdown => {
                self.shutdown_seen = true;
                Goodbye::Shutdown
            }
            () = tokio::time::sleep(left) => Goodbye::Deadline,
        }
    }
}

/// The client's name in a session's log lines: its address, `stdin` in inetd mode.
pub fn who(conn: &Connection) -> String {
    conn.peer()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "stdin".into())
}

/// A read error that is the idle timeout ([`io::ErrorKind::TimedOut`] from a [`Connection`]
/// read) is [`Goodbye::IdleTimeout`]; any other error stays an error.
pub fn idle_timeout(e: io::Error) -> io::Result<Goodbye> {
    if e.kind() == io::ErrorKind::TimedOut {
        Ok(Goodbye::IdleTimeout)
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session that records what it was fed and which goodbye it was told.
    #[derive(Default)]
    struct Probe {
        fed: Vec<u8>,
        progress: u64,
        said: Vec<&'static str>,
    }

    impl SessionHooks for Probe {
        fn feed(&mut self, bytes: &[u8]) {
            self.fed.extend_from_slice(bytes);
        }
        fn progress(&self) -> u64 {
            self.progress
        }
        fn shutdown(&mut self) {
            self.said.push("shutdown");
        }
        fn timeout(&mut self) {
            self.said.push("timeout");
        }
        fn deadline_exceeded(&mut self) {
            self.said.push("deadline");
        }
    }

    fn conn(
        idle: Duration,
    ) -> (
        Connection,
        tokio::io::DuplexStream,
        tokio::sync::watch::Sender<bool>,
    ) {
        let (ours, theirs) = tokio::io::duplex(1024);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let c = Connection::new(ours, "test")
            .with_idle_timeout(idle)
            .with_shutdown(rx);
        (c, theirs, tx)
    }

    #[tokio::test]
    async fn input_is_fed_and_end_of_input_reported() {
        use tokio::io::AsyncWriteExt as _;
        let (mut c, mut client, _tx) = conn(Duration::from_secs(5));
        let mut w = Watch::new(&c, Duration::from_secs(5));
        let mut s = Probe::default();
        client.write_all(b"NOOP\r\n").await.unwrap();
        let woke = w.wait(&mut c, &mut s, Wait::command(64)).await.unwrap();
        assert_eq!(woke, Woke::Input(6));
        assert_eq!(s.fed, b"NOOP\r\n");
        drop(client);
        let woke = w.wait(&mut c, &mut s, Wait::command(64)).await.unwrap();
        assert_eq!(woke, Woke::Eof);
        assert!(s.said.is_empty());
    }

    #[tokio::test]
    async fn idle_timeout_deadline_and_shutdown_say_their_goodbye() {
        let (mut c, _client, _tx) = conn(Duration::from_millis(20));
        let mut w = Watch::new(&c, Duration::from_secs(5));
        let mut s = Probe::default();
        let woke = w.wait(&mut c, &mut s, Wait::command(64)).await.unwrap();
        assert_eq!(woke, Woke::Said(Goodbye::IdleTimeout));

        let (mut c, _client, _tx) = conn(Duration::from_secs(5));
        let mut w = Watch::new(&c, Duration::from_millis(20));
        let woke = w.wait(&mut c, &mut s, Wait::command(64)).await.unwrap();
        assert_eq!(woke, Woke::Said(Goodbye::Deadline));
        // Progress restarts the deadline; a passed one is said before reading.
        s.progress = 1;
        let due = Wait {
            due: Some(Duration::from_millis(1)),
            ..Wait::command(64)
        };
        assert_eq!(w.wait(&mut c, &mut s, due).await.unwrap(), Woke::Due);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let woke = w.wait(&mut c, &mut s, Wait::command(64)).await.unwrap();
        assert_eq!(woke, Woke::Said(Goodbye::Deadline));

        let (mut c, _client, tx) = conn(Duration::from_secs(5));
        let mut w = Watch::new(&c, Duration::from_secs(5));
        tx.send(true).unwrap();
        let deferred = Wait {
            shutdown_now: false,
            ..Wait::command(64)
        };
        let woke = w.wait(&mut c, &mut s, deferred).await.unwrap();
        assert_eq!(woke, Woke::ShutdownDeferred);
        assert!(w.shutdown_seen());
        // Seen once: a later wait does not fire it again, the caller says it.
        let woke = w
            .wait(
                &mut c,
                &mut s,
                Wait {
                    due: Some(Duration::from_millis(1)),
                    ..Wait::command(64)
                },
            )
            .await
            .unwrap();
        assert_eq!(woke, Woke::Due);
        let (mut c, _client, tx) = conn(Duration::from_secs(5));
        let mut w = Watch::new(&c, Duration::from_secs(5));
        tx.send(true).unwrap();
        let woke = w.wait(&mut c, &mut s, Wait::command(64)).await.unwrap();
        assert_eq!(woke, Woke::Said(Goodbye::Shutdown));
        assert_eq!(
            s.said,
            ["timeout", "deadline", "deadline", "shutdown"],
            "each goodbye through its hook"
        );
    }
}
