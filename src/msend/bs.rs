//! `msend -bs`: an SMTP session on stdin/stdout (sendmail's `-bs`, used by PHP and Symfony
//! mailers). The dialogue is the shared sans-IO server session ([`crate::smtp::server`]); each
//! message it accepts is handed to `submit`, which sends it onward as configured and returns
//! the reply for the client ([`serve`] sends it as [`Resolved`] says).

use std::io::{Read, Write};

use anyhow::{Context, Result};

use super::account::Resolved;
use super::deliver::{self, Status};
use super::flush::print_failures;
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

/// Runs the session until QUIT or end of input.
pub fn run(
    hostname: &str,
    input: &mut dyn Read,
    output: &mut dyn Write,
    submit: &mut Submit<'_>,
) -> Result<()> {
    let config = SessionConfig {
        hostname: hostname.to_string(),
        ..SessionConfig::default()
    };
    let mut session = Session::new(config, None);
    session.greeting();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut data = Vec::new();
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
                let n = input.read(&mut buf).context("reading stdin")?;
                if n == 0 {
                    return Ok(());
                }
                session.feed(&buf[..n]);
            }
            Event::Close => return Ok(()),
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
            Event::StartTls | Event::Pending => return Ok(()),
        }
    }
}

/// `-bs` as msend runs it: each message goes onward as `res` says, then is answered. With a
/// spool the temporarily failed recipients are spooled; a permanent failure is still the
/// message's reply (5xx) and, as for the first failed message, the exit code.
pub fn serve(
    res: &Resolved,
    rt: &tokio::runtime::Runtime,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<u8> {
    let mut worst = exit::OK;
    let mut submit = |from: String, rcpts: Vec<String>, data: Vec<u8>| -> Reply {
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
    run(&res.hostname, input, output, &mut submit)?;
    Ok(worst)
}
