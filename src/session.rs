//! The one session pattern of the server protocols, and its hooks.
//!
//! Every server protocol (SMTP in [`crate::smtp::server`], POP3 in [`crate::pop3::session`],
//! IMAP next) is a sans-IO session: bytes read from the client go in with `feed`, `poll`
//! advances it and returns an event for the driver (`src/<proto>/driver.rs`), reply bytes
//! accumulate for `take_output`. The session owns its framing (command lines through
//! [`crate::lines::LineFramer`]; SMTP's DATA/BDAT content and IMAP's `{n}` literals through
//! their own scanners) and has no clock and no socket.
//!
//! What the session cannot see happens in the driver: the server shuts down, the client is
//! silent for the idle timeout, or the session makes no progress within its deadline. The
//! driver tells the session through [`SessionHooks`], and the session queues its goodbye and
//! closes: SMTP `421 4.3.2` / `421 4.4.2` (RFC 5321 §3.8, §4.5.3.2), POP3 `-ERR` (RFC 1939
//! §3), and IMAP's `* BYE` (RFC 9051 §7.1.5) will be one more implementation. The waiting
//! itself — input, the server's shutdown signal, the idle timeout and the deadline in one
//! place, with the log line of each goodbye — is written once, in
//! `server::goodbye::Watch`, which every driver uses.

/// Why a driver ends a session that did not end itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goodbye {
    /// The server is shutting down (SIGTERM).
    Shutdown,
    /// The client sent nothing within the idle timeout.
    IdleTimeout,
    /// The session made no progress within its deadline (issue 10 §5: slowloris).
    Deadline,
}

/// What every server session offers its driver beyond its own events: input, its progress
/// count for the deadline, and the goodbyes for the three ends it cannot see. Each goodbye
/// queues the session's reply and closes it (its next `poll` says close); what was pending
/// (a decision, a command not answered yet) is dropped and nothing is committed (no POP3
/// UPDATE, no SMTP message).
pub trait SessionHooks {
    /// Appends bytes read from the client.
    fn feed(&mut self, bytes: &[u8]);

    /// The session's progress count (SMTP: transactions completed; POP3: logins and messages
    /// sent). The driver restarts the session deadline whenever it grows.
    fn progress(&self) -> u64;

    /// The server is shutting down: SMTP `421 4.3.2 Service shutting down`, POP3
    /// `-ERR [SYS/TEMP]`, IMAP `* BYE`.
    fn shutdown(&mut self);

    /// The client was silent for the idle timeout (RFC 5321 §4.5.3.2, RFC 1939 §3).
    fn timeout(&mut self);

    /// The session made no progress within its deadline.
    fn deadline_exceeded(&mut self);

    /// The goodbye for `why`: one of the three hooks above.
    fn goodbye(&mut self, why: Goodbye) {
        match why {
            Goodbye::Shutdown => self.shutdown(),
            Goodbye::IdleTimeout => self.timeout(),
            Goodbye::Deadline => self.deadline_exceeded(),
        }
    }
}
