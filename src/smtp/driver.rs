//! Runs the sans-IO [`Session`] over a [`Connection`] of the server layer: moves bytes between
//! them, keeps the clocks the session does not have (RFC 5321 §4.5.3.2 timeouts, the session
//! deadline and the least data rate of [`crate::server::pace`], the error delay, greet pause)
//! and hands the session's questions to the program that runs it through [`Policy`] (mrelayd's
//! relay rules, password check and queue, in `relay::daemon`), so this module knows
//! nothing of relaying or queues.
//!
//! Server shutdown reaches the session through the hooks of the pattern
//! ([`crate::session::SessionHooks`], the POP3 driver uses the same): the server layer's
//! [`Watch`] waits for input, the shutdown signal, the idle timeout and the session deadline,
//! and at shutdown the session's hook queues `421 4.3.2 <host> Service shutting down` (RFC 5321 §3.8,
//! RFC 3463 §3.5) and closes, at the next point the session can take it: at once while waiting
//! for a command (or between pipelined commands), and after a message whose content is
//! arriving, if it ends within [`Limits::shutdown_finish`] (so an almost delivered message is
//! still queued, as Postfix's smtpd finishes its transaction); otherwise the message is dropped
//! and the client gets the 421 anyway, before the server's grace period runs out.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::command::{MailParams, Mailbox, RcptParams};
use super::server::{Decision, Envelope, Event, Session, SessionConfig};
use crate::log;
use crate::server::goodbye::{self, Wait, Watch, Woke};
use crate::server::pace::RateMeter;
use crate::server::Connection;
use crate::session::Goodbye;

/// Largest read handed to the session at once.
pub const READ_CHUNK: usize = 64 * 1024;

/// How long a message whose content is arriving at shutdown may take to end before the
/// session says 421 anyway: well inside the server's shutdown grace
/// ([`crate::server::DEFAULT_SHUTDOWN_GRACE`]), which aborts what is still running.
pub const SHUTDOWN_FINISH: Duration = Duration::from_secs(5);

/// The driver's clocks for one session (the session's own limits are its [`SessionConfig`]).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wait for the next command (RFC 5321 §4.5.3.2.7).
    pub command_timeout: Duration,
    /// Wait for each read of DATA/BDAT content (RFC 5321 §4.5.3.2.5).
    pub data_timeout: Duration,
    /// Before the greeting, wait this long for a client that talks first (none: zero).
    pub greet_pause: Duration,
    /// No transaction completed for this long: 421 4.4.2.
    pub session_deadline: Duration,
    /// Least content octets per second over each [`Limits::min_data_rate_window`] (0: off).
    pub min_data_rate: u64,
    /// The window of [`Limits::min_data_rate`].
    pub min_data_rate_window: Duration,
    /// Delay per error over the soft error limit (Postfix's `smtpd_error_sleep_time`).
    pub error_sleep: Duration,
    /// At shutdown, how long a message in progress may take to end (module doc).
    pub shutdown_finish: Duration,
}

/// What the program running the session decides; one value per session, so it can keep the
/// session's own state (the authenticated user, the message being written, counters).
pub trait Policy: Send {
    /// Is this sender acceptable? (RFC 5321 §4.1.1.2)
    fn mail(&mut self, from: Option<&Mailbox>, params: &MailParams) -> Decision;

    /// Is this recipient acceptable (local user, relay allowed)? (RFC 5321 §4.1.1.3)
    /// Async: a check may look the client up in DNS (mrelayd's DNSBL, RFC 5782).
    fn rcpt(&mut self, to: &Mailbox, params: &RcptParams) -> impl Future<Output = Decision> + Send;

    /// Check these credentials (Accept, or Reject with 535 5.7.8 / 454 4.7.0, RFC 4954 §6).
    fn auth(
        &mut self,
        authzid: &str,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Decision> + Send;

    /// TLS started after STARTTLS: forget what was learned before (RFC 3207 §4.2).
    fn tls_started(&mut self);

    /// Message content begins ([`Event::DataStart`]): open somewhere to put it. `session`
    /// tells the client's names for the trace header. A failure is answered at
    /// [`Policy::message`].
    fn data_start(&mut self, session: &Session, envelope: &Envelope);

    /// The next piece of the content ([`Event::Content`]).
    fn content(&mut self, piece: &[u8]);

    /// The content is refused or the transaction is gone ([`Event::DataAbort`]): drop it.
    fn data_abort(&mut self);

    /// The content is complete and passed every check: make it durable, then answer
    /// [`Decision::Queued`] or Reject.
    fn message(&mut self, envelope: &Envelope) -> impl Future<Output = Decision> + Send;
}

/// Runs one SMTP session on `conn` to its end: greeting, commands, messages, QUIT (or a
/// timeout, a limit, shutdown). `config.starttls` is set from the connection. I/O errors end
/// the session with an error for the server layer to log.
pub async fn run<P: Policy>(
    mut conn: Connection,
    mut config: SessionConfig,
    limits: &Limits,
    policy: &mut P,
) -> Result<()> {
    let ip = conn.peer().map(|p| p.ip().to_canonical());
    config.starttls = conn.can_starttls();
    let mut s = Session::new(config, ip);
    if let Some(tls) = conn.tls() {
        s.set_implicit_tls(tls.clone());
    }
    // RFC 5321 §4.5.3.2: one wait for the next command, another for each piece of content.
    let command_timeout = limits.command_timeout.max(Duration::from_millis(1));
    let data_timeout = limits.data_timeout.max(Duration::from_millis(1));
    let who = goodbye::who(&conn);
    if !limits.greet_pause.is_zero() && conn.input_pending_within(limits.greet_pause).await? {
        s.reject_early_talker();
        log::line(format_args!("{who}: early talker rejected"));
        conn.queue(&s.take_output());
        let _ = conn.close().await;
        return Ok(());
    }
    // Slowloris (issue 10 §5): a deadline that only completed transactions move, and a least
    // rate for message content; the session itself has no clock.
    let mut watch = Watch::new(&conn, limits.session_deadline);
    let mut rate = RateMeter::new(limits.min_data_rate, limits.min_data_rate_window);
    // Set once shutdown was requested while content was arriving: the 421 comes when the
    // message ends, or at this instant.
    let mut finish_by: Option<Instant> = None;
    s.greeting();
    loop {
        if let Some(n) = s.take_error_delay() {
            // Postfix's smtpd_error_sleep_time, growing with each error over the soft limit;
            // only this session's task waits.
            tokio::time::sleep(limits.error_sleep.saturating_mul(n)).await;
            conn.queue(&s.take_output());
            conn.flush().await?;
        }
        let ev = s.poll();
        match ev {
            Event::NeedInput => {
                let in_data = s.in_data();
                let now = Instant::now();
                let waiting_for = if in_data { "message data" } else { "a command" };
                if finish_by.is_some() && !in_data {
                    // The message in progress at shutdown has ended (its reply is queued).
                    watch.say(&mut s, Goodbye::Shutdown, waiting_for);
                    continue;
                }
                if in_data {
                    rate.start(now);
                } else {
                    rate.stop();
                }
                conn.set_idle_timeout(if in_data {
                    data_timeout
                } else {
                    command_timeout
                });
                if in_data && !rate.check(now) {
                    s.too_slow();
                    log::line(format_args!(
                        "{who}: message content below the minimum rate"
                    ));
                    continue;
                }
                if finish_by.is_some_and(|t| now >= t) {
                    log::line(format_args!("{who}: shutdown: message in progress dropped"));
                    watch.say(&mut s, Goodbye::Shutdown, waiting_for);
                    continue;
                }
                conn.queue(&s.take_output());
                // Flush only when the client has nothing more buffered (RFC 2920 batching).
                if !conn.has_buffered_input() {
                    conn.flush().await?;
                }
                // Wake up when the rate window or the shutdown's finish is due, even from a
                // silent client; the session deadline is the watch's (not while content
                // arrives: the rate watches that).
                let rate_due = if in_data { rate.until_check(now) } else { None };
                let finish_due = finish_by.map(|t| t.saturating_duration_since(now));
                let due = match (rate_due, finish_due) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let wait = Wait {
                    max: READ_CHUNK,
                    waiting_for,
                    deadline: !in_data,
                    // Between commands (RFC 5321 §3.8: the server may close with 421 when it
                    // must shut down; a command already read is not answered). A message
                    // whose content is arriving may end first.
                    shutdown_now: !in_data,
                    due,
                };
                match watch.wait(&mut conn, &mut s, wait).await? {
                    Woke::Eof => break,
                    Woke::Input(n) => {
                        if in_data {
                            rate.add(n);
                        }
                    }
                    Woke::ShutdownDeferred => {
                        finish_by = Some(Instant::now() + limits.shutdown_finish);
                    }
                    // The rate window or the finish is due: judged at the top of the loop;
                    // a goodbye said: the session closes at its next poll.
                    Woke::Due | Woke::Event | Woke::Said(_) => {}
                }
            }
            Event::Close => {
                conn.queue(&s.take_output());
                let _ = conn.close().await;
                break;
            }
            Event::Pending => {
                return Err(anyhow::anyhow!(
                    "internal error: session waits for a decision"
                ));
            }
            Event::StartTls => {
                conn.queue(&s.take_output());
                conn.starttls().await.context("STARTTLS handshake")?;
                match conn.tls() {
                    Some(info) => s.tls_started(info.clone()),
                    None => return Err(anyhow::anyhow!("STARTTLS did not start TLS")),
                }
                policy.tls_started();
            }
            Event::Mail { from, params } => {
                let d = policy.mail(from.as_ref(), &params);
                s.decide(d);
            }
            Event::Rcpt { to, params } => {
                let d = policy.rcpt(&to, &params).await;
                s.decide(d);
            }
            Event::Auth {
                authzid,
                user,
                password,
            } => {
                let d = policy.auth(&authzid, &user, &password).await;
                s.decide(d);
            }
            Event::DataStart { envelope } => policy.data_start(&s, &envelope),
            Event::Content(piece) => policy.content(&piece),
            Event::DataAbort => policy.data_abort(),
            Event::Message { envelope } => {
                let d = policy.message(&envelope).await;
                s.decide(d);
            }
        }
    }
    Ok(())
}
