//! `msend -bs`: an SMTP session on stdin/stdout (sendmail's `-bs`, used by PHP and Symfony
//! mailers). The dialogue is the shared sans-IO server session ([`crate::smtp::server`]); each
//! message it accepts is handed to `submit`, which sends it onward as configured and returns
//! the reply for the client ([`serve`] sends it as [`Resolved`] says).
//!
//! A client that stops talking does not hold msend forever: each wait for a command is limited
//! to [`Timeouts::command`] and each wait for more message content to [`Timeouts::data`]
//! (RFC 5321 §4.5.3.2.7 and §4.5.3.2.5: 5 and 10 minutes, as mrelayd; `--timeout SECS` sets
//! both). Then the client gets the session's `421 4.4.2` and msend exits 75 unless a message
//! failed before; a message whose content was still arriving was never acknowledged.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result};

use super::account::Resolved;
use super::deliver::{self, Status};
use super::flush::print_failures;
use super::names;
use super::spool;
use crate::exit;
use crate::session::SessionHooks as _;
use crate::smtp::reply::Reply;
use crate::smtp::server::{Decision, Event, Session, SessionConfig};

/// Bytes read from stdin at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What [`run`] hands over for each message: envelope sender (empty for `<>`), recipients and
/// the message (CRLF line ends, dot-unstuffed). The returned reply goes to the client: a 250
/// once the message was sent or spooled, 4xx/5xx otherwise.
pub type Submit<'a> = dyn FnMut(String, Vec<String>, Vec<u8>) -> Reply + 'a;

/// How long [`run`] waits for the client on stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the next command (RFC 5321 §4.5.3.2.7).
    pub command: Duration,
    /// For each read of message content (RFC 5321 §4.5.3.2.5).
    pub data: Duration,
}

impl Timeouts {
    /// RFC 5321's server timeouts, as mrelayd's defaults ([`crate::smtp::server`]).
    pub const DEFAULT: Timeouts = Timeouts {
        command: Duration::from_secs(crate::smtp::server::COMMAND_TIMEOUT_SECS),
        data: Duration::from_secs(crate::smtp::server::DATA_TIMEOUT_SECS),
    };

    /// One limit for both waits (`--timeout SECS`).
    pub fn both(limit: Duration) -> Timeouts {
        Timeouts {
            command: limit,
            data: limit,
        }
    }
}

/// How a session on stdin ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// QUIT, end of input, or the session closed itself (too many errors).
    Closed,
    /// The client was silent for a [`Timeouts`] limit; it got `421 4.4.2`.
    TimedOut,
}

/// Runs the session until QUIT, end of input or a silent client ([`Timeouts`]). `input` is
/// read without a buffer of its own in front of the fd (a `File`, not `Stdin`'s lock), so that
/// waiting on the fd sees every byte that is not read yet. The client is local (whoever runs
/// msend): a bare `MAIL FROM:<root>` or `RCPT TO:<root>` is taken, as sendmail -bs takes it,
/// with `bare_domain` (for [`serve`]: [`names::UNQUALIFIED`], qualified in its `submit`).
pub fn run<R: Read + AsFd>(
    hostname: &str,
    bare_domain: &str,
    input: &mut R,
    output: &mut dyn Write,
    timeouts: Timeouts,
    submit: &mut Submit<'_>,
) -> Result<End> {
    let config = SessionConfig {
        hostname: hostname.to_string(),
        bare_domain: Some(bare_domain.to_string()),
        local_client: true,
        ..SessionConfig::default()
    };
    let mut session = Session::new(config, None);
    session.greeting();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut data = Vec::new();
    let mut end = End::Closed;
    loop {
        let event = session.poll();
        if session.has_output() {
            output
                .write_all(&session.take_output())
                .and_then(|_| output.flush())
                .context("writing to stdout")?;
        }
        match event {
            Event::NeedInput => {
                let limit = if session.in_data() {
                    timeouts.data
                } else {
                    timeouts.command
                };
                if !crate::os::readable_within(input.as_fd(), limit).context("waiting for stdin")? {
                    // The session's own goodbye (421 4.4.2), then its Close.
                    session.timeout();
                    end = End::TimedOut;
                    continue;
                }
                let n = input.read(&mut buf).context("reading stdin")?;
                if n == 0 {
                    return Ok(end);
                }
                session.feed(&buf[..n]);
            }
            Event::Close => return Ok(end),
            Event::Mail { .. } | Event::Rcpt { .. } => session.decide(Decision::Accept),
            Event::Auth { .. } => session.decide(Decision::Reject(Reply::new(
                502,
                Some((5, 5, 1)),
                "AUTH not available in -bs mode",
            ))),
            // `-bs` hands whole messages to `submit`: collect the streamed content.
            Event::DataStart { .. } => data.clear(),
            Event::Content(piece) => data.extend_from_slice(&piece),
            Event::DataAbort => data = Vec::new(),
            Event::Message { envelope } => {
                let data = std::mem::take(&mut data);
                let from = envelope.from.map(|m| m.to_string()).unwrap_or_default();
                let rcpts = envelope.rcpts.iter().map(|(m, _)| m.to_string()).collect();
                let reply = submit(from, rcpts, data);
                if reply.is_positive() {
                    let id = reply.text();
                    session.decide(Decision::Queued(id));
                } else {
                    session.decide(Decision::Reject(reply));
                }
            }
            // No TLS on a pipe; a pending decision cannot happen (all are answered at once).
            Event::StartTls | Event::Pending => return Ok(end),
        }
    }
}

/// `-bs` as msend runs it: each message goes onward as `res` says, then is answered. With a
/// spool the temporarily failed recipients are spooled; a permanent failure is still the
/// message's reply (5xx) and, as for the first failed message, the exit code; a client that
/// fell silent ([`End::TimedOut`]) exits 75 when nothing failed before.
pub fn serve<R: Read + AsFd>(
    res: &Resolved,
    rt: &tokio::runtime::Runtime,
    input: &mut R,
    output: &mut dyn Write,
    timeouts: Timeouts,
) -> Result<u8> {
    let mut worst = exit::OK;
    let mut submit = |from: String, rcpts: Vec<String>, data: Vec<u8>| -> Reply {
        // The session marked bare MAIL and RCPT addresses (names::UNQUALIFIED): the names
        // qualify them (recipients through the aliases file), and bare addresses in the address fields.
        let from = res.names.sender(&names::unmark(from));
        let rcpts = rcpts.into_iter().map(names::unmark).collect();
        let rcpts = match res.names.recipients(rcpts) {
            Ok(r) => r,
            Err(e) => {
                if worst == exit::OK {
                    worst = exit::code_of(&e);
                }
                return Reply::new(451, Some((4, 3, 0)), format!("{e:#}"));
            }
        };
        let data = res.names.message(&data);
        let mut report = rt.block_on(deliver::send(&res.opts, &from, &rcpts, &data));
        let temp = report.temporary();
        let mut spooled = None;
        if let (Some(dir), false) = (&res.queue, temp.is_empty()) {
            let meta = spool::Meta {
                from: from.clone(),
                rcpts: temp,
                account: res.account_name.clone(),
                queued_at: crate::clock::now(),
                last_error: String::new(),
                destination: res.destination.clone(),
            };
            match spool::put(dir, &meta, &data) {
                Ok(id) => spooled = Some(id),
                Err(e) => {
                    if worst == exit::OK {
                        worst = exit::TEMPFAIL;
                    }
                    return Reply::new(451, Some((4, 3, 0)), format!("cannot spool: {e:#}"));
                }
            }
            report.rcpts.retain(|r| r.status != Status::Temporary);
        }
        print_failures(&report);
        let detail = report
            .rcpts
            .iter()
            .find(|r| r.status != Status::Sent)
            .map(|r| r.detail.clone())
            .unwrap_or_default();
        let code = report.exit_code();
        if worst == exit::OK {
            worst = code;
        }
        let also = spooled
            .as_ref()
            .map(|id| format!(" (other recipients spooled as {id})"))
            .unwrap_or_default();
        match (code, spooled) {
            (exit::OK, Some(id)) => Reply::new(250, Some((2, 0, 0)), format!("spooled {id}")),
            (exit::OK, None) => Reply::new(250, Some((2, 0, 0)), "sent"),
            (exit::TEMPFAIL, _) => Reply::new(451, Some((4, 4, 0)), detail),
            _ => Reply::new(554, Some((5, 0, 0)), format!("{detail}{also}")),
        }
    };
    let end = run(
        &res.hostname,
        names::UNQUALIFIED,
        input,
        output,
        timeouts,
        &mut submit,
    )?;
    if end == End::TimedOut {
        eprintln!("msend: -bs: the client sent nothing for too long; session closed (421)");
        if worst == exit::OK {
            worst = exit::TEMPFAIL;
        }
    }
    Ok(worst)
}
