//! `msend -bs`: an SMTP session on stdin/stdout (sendmail's `-bs`, used by PHP and Symfony
//! mailers). The dialogue is the shared sans-IO server session ([`crate::smtp::server`]); each
//! message it accepts is handed to `submit`, which sends it onward as configured and returns
//! the reply for the client.

use std::io::{Read, Write};

use anyhow::{Context, Result};

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
