//! One message from stdin to the server (`-bm`, msend's default mode): read it (or compose it),
//! add what is missing, collect the recipients, send, and spool what failed temporarily.

use std::io::{Read, Write};

use anyhow::{Context, Result};

use super::account::Resolved;
use super::message::{self, Prepare};
use super::{compose, deliver, flush};
use crate::exit;
use crate::smtp::client::Stage;

/// Compose mode's flags (`--to`, `--cc`, `--bcc`, `--subject`, `--attach`, `--html`,
/// `--from`): the message is built from a plain text body instead of read whole.
#[derive(Debug, Clone, Default)]
pub struct ComposeFlags {
    /// `To:` recipients.
    pub to: Vec<String>,
    /// `Cc:` recipients.
    pub cc: Vec<String>,
    /// Blind recipients.
    pub bcc: Vec<String>,
    /// Subject.
    pub subject: Option<String>,
    /// Files to attach.
    pub attach: Vec<std::path::PathBuf>,
    /// HTML alternative.
    pub html: Option<std::path::PathBuf>,
    /// `From:` (`addr` or `Name <addr>`).
    pub from: Option<String>,
}

impl ComposeFlags {
    /// Whether any compose flag was given (then the input is a body, not a message).
    pub fn any(&self) -> bool {
        !self.to.is_empty()
            || !self.cc.is_empty()
            || !self.bcc.is_empty()
            || self.subject.is_some()
            || !self.attach.is_empty()
            || self.html.is_some()
    }
}

/// What the command line says about the message.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    /// `-t`: recipients from the headers too.
    pub extract: bool,
    /// `-i` (`-oi`): a lone dot does not end the input.
    pub ignore_dots: bool,
    /// `-f ADDR`: envelope sender (`<>` for the null sender).
    pub sender: Option<String>,
    /// `-F NAME`: full name for a missing `From:`.
    pub full_name: Option<String>,
    /// Recipients given as arguments.
    pub recipients: Vec<String>,
    /// Compose mode.
    pub compose: ComposeFlags,
    /// `--dry-run`: write the message to `output` instead of sending it.
    pub dry_run: bool,
}

/// The login name for a default sender `user@host`: `$USER`, else `$LOGNAME`, else root.
fn login_name() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// Reads the whole input, refusing more than [`message::MAX_MESSAGE_SIZE`] (exit 65).
fn read_input(input: &mut dyn Read) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    input
        .take(message::MAX_MESSAGE_SIZE as u64 + 1)
        .read_to_end(&mut buf)
        .context("reading the message from stdin")?;
    if buf.len() > message::MAX_MESSAGE_SIZE {
        return Err(exit::fail(
            exit::DATAERR,
            format!("message larger than {} bytes", message::MAX_MESSAGE_SIZE),
        ));
    }
    Ok(buf)
}

/// Submits one message read from `input` as `res` says; `--dry-run` writes it to `output`.
/// Returns the exit code (see the man page's EXIT STATUS).
pub fn run(
    sub: &Submission,
    res: &Resolved,
    rt: &tokio::runtime::Runtime,
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> Result<u8> {
    let quit_early = res.opts.quit_after.is_some();
    // Bare names (`-f root`, an account's `from = "me"`) get the mail domain (names.rs).
    let names = &res.names;
    let envelope_default = sub
        .sender
        .clone()
        .map(|s| s.trim_start_matches('<').trim_end_matches('>').to_string())
        .or_else(|| res.account.from.clone())
        .map(|s| names.sender(&s));
    let user_at_host = format!("{}@{}", login_name(), names.domain);
    let (msg, rcpts, from_header) = if quit_early {
        (
            Vec::new(),
            message::split_recipient_args(&sub.recipients),
            None,
        )
    } else if sub.compose.any() {
        let c = &sub.compose;
        let body = String::from_utf8(read_input(input)?).map_err(|_| {
            exit::fail(
                exit::DATAERR,
                "compose mode: the body on stdin is not UTF-8",
            )
        })?;
        let from = c
            .from
            .clone()
            .or_else(|| envelope_default.clone())
            .unwrap_or_else(|| user_at_host.clone());
        let built = compose::build(&compose::Compose {
            from: from.clone(),
            to: c.to.clone(),
            cc: c.cc.clone(),
            bcc: c.bcc.clone(),
            subject: c.subject.clone().unwrap_or_default(),
            text: body,
            html: c.html.clone(),
            attach: c.attach.clone(),
            hostname: res.hostname.clone(),
        })?;
        let mut rcpts = message::split_recipient_args(&c.to);
        rcpts.extend(message::split_recipient_args(&c.cc));
        rcpts.extend(message::split_recipient_args(&c.bcc));
        rcpts.extend(message::split_recipient_args(&sub.recipients));
        (
            built,
            rcpts,
            Some(names.sender(&compose::split_mailbox(&from).1)),
        )
    } else {
        let mut input = read_input(input)?;
        if !sub.ignore_dots {
            message::cut_at_lone_dot(&mut input);
        }
        let p = Prepare {
            extract_recipients: sub.extract,
            from_address: envelope_default
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| user_at_host.clone()),
            full_name: sub.full_name.clone(),
            hostname: res.hostname.clone(),
            now: crate::clock::now() as i64,
        };
        let prepared = message::prepare(&input, &p)
            .map_err(|e| exit::fail(exit::DATAERR, format!("bad message: {e}")))?;
        let mut rcpts = message::split_recipient_args(&sub.recipients);
        rcpts.extend(prepared.header_recipients);
        let from_header = prepared.from_header.map(|f| names.sender(&f));
        (prepared.message, rcpts, from_header)
    };
    // As sendmail for a local submission: bare recipients (cron's `root`) through the aliases
    // file, then the domain; bare addresses in the address fields of the message get it too.
    let mut rcpts = names.recipients(rcpts)?;
    let msg = if msg.is_empty() {
        msg
    } else {
        names.message(&msg)
    };
    message::dedup_recipients(&mut rcpts);
    if sub.dry_run {
        output
            .write_all(&msg)
            .and_then(|()| output.flush())
            .context("writing the message to stdout")?;
        return Ok(exit::OK);
    }
    if rcpts.is_empty() && !matches!(res.opts.quit_after, Some(s) if s <= Stage::Mail) {
        return Err(if sub.extract {
            exit::fail(
                exit::DATAERR,
                "no recipients: none in To/Cc/Bcc and none given",
            )
        } else {
            exit::fail(exit::USAGE, "no recipients given (or use -t)")
        });
    }
    let from = envelope_default.or(from_header).unwrap_or(user_at_host);
    let report = rt.block_on(deliver::send(&res.opts, &from, &rcpts, &msg));
    if let Some(asked) = res.opts.quit_after {
        return quit_after_result(asked, &report);
    }
    flush::spool_temporary(res, &from, &msg, report)
}

/// The exit code of a `--quit-after` session, which is never spooled (it carries no message):
/// 0 when it stopped where asked with every recipient accepted; a refusal on the way (a
/// recipient refused at RCPT: 67, MAIL refused, no STARTTLS, no AUTH: 69, ...) is printed and
/// exits as for a send, so a script sees that the stage was not reached cleanly.
fn quit_after_result(asked: Stage, report: &deliver::Report) -> Result<u8> {
    flush::print_failures(report);
    let code = report.exit_code();
    match report.stopped {
        _ if code != exit::OK => Ok(code),
        Some(stage) => {
            eprintln!("msend: stopped after {stage} as asked (QUIT sent, nothing delivered)");
            Ok(exit::OK)
        }
        None => Err(exit::fail(
            exit::UNAVAILABLE,
            format!("the session ended before {asked}"),
        )),
    }
}
