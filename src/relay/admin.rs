//! mrelayd's administration commands: the queue listing (`mrelayd queue`, like mailq), one
//! entry in full, remove/hold/release, `flush`, and `explain` (what the running config answers
//! a client, stage by stage, and why).
//!
//! Reports are written to an `impl Write` (the command line passes stdout), so they can be
//! tested on a buffer. Actions on one entry log one line on stderr; an id that names no entry
//! exits 67 (`NOUSER`), as `mrelayd queue` documents.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use super::daemon;
use super::runner;
use super::{Client, RelayConfig, Resolution, Role, Router, Target};
use crate::auth::Authenticator;
use crate::clock::rfc5322_date;
use crate::config::Config;
use crate::exit;
use crate::log;
use crate::outbound::config::{mx_tls_name, relayhost_tls_name};
use crate::outbound::route::NextHop;
use crate::outbound::Engine;
use crate::queue::{Entry, Place, Queue, RcptState, Recipient};
use crate::server::daemon::ListenerRole as _;
use crate::smtp::command::{self, Command};

/// The queue of this config, as it is (nothing created or cleaned up).
pub fn open_queue(config: &Config, relay: &RelayConfig) -> Result<Queue> {
    Ok(Queue::open_existing(daemon::queue_dir(config, relay))?)
}

/// `mrelayd queue`: every message with size, age, sender and pending recipients with their
/// last error; held entries are marked `!`.
/// Entries that cannot be read are listed too, loudly (and logged with path and error): a
/// queue file the daemon cannot read must not wait there unnoticed.
pub fn list(queue: &Queue, json: bool, out: &mut impl Write) -> Result<()> {
    let (list, bad) = queue
        .list_all()
        .with_context(|| format!("reading queue {}", queue.root().display()))?;
    for b in &bad {
        log::line(format_args!(
            "{}: cannot read queue entry {}: {}",
            b.id,
            b.path.display(),
            b.error
        ));
    }
    if json {
        let doc = JsonQueue {
            messages: list.iter().map(JsonMessage::of).collect(),
            unreadable: bad
                .iter()
                .map(|b| JsonUnreadable {
                    id: b.id.clone(),
                    path: b.path.display().to_string(),
                    error: b.error.to_string(),
                })
                .collect(),
        };
        return write_json(&doc, out);
    }
    write_list(&list, crate::clock::now(), out)?;
    for b in &bad {
        writeln!(
            out,
            "{:<24} UNREADABLE {}: {}",
            format!("{}?", b.id),
            b.path.display(),
            b.error
        )?;
    }
    Ok(())
}

/// `mrelayd queue list --json`: the one document (field names documented in mrelayd(1) under
/// QUEUE JSON; they are stable, and new fields may be added).
#[derive(serde::Serialize)]
struct JsonQueue<'a> {
    messages: Vec<JsonMessage<'a>>,
    unreadable: Vec<JsonUnreadable>,
}

/// An entry that could not be read (also logged on stderr).
#[derive(serde::Serialize)]
struct JsonUnreadable {
    id: String,
    path: String,
    error: String,
}

/// One queue entry, as `queue show --json` prints it and `queue list --json` lists it.
#[derive(serde::Serialize)]
struct JsonMessage<'a> {
    id: &'a str,
    /// `active` or `held`.
    state: &'static str,
    size: u64,
    arrival_time: u64,
    arrival_date: String,
    /// Empty for the null sender `<>`.
    sender: &'a str,
    client: Option<&'a str>,
    helo: Option<&'a str>,
    auth_user: Option<&'a str>,
    envid: Option<&'a str>,
    /// `full` or `hdrs` (DSN RET=), or null.
    ret: Option<&'static str>,
    smtputf8: bool,
    attempts: u32,
    next_attempt_time: Option<u64>,
    next_attempt_date: Option<String>,
    last_error: Option<&'a str>,
    recipients: Vec<JsonRecipient<'a>>,
}

/// One recipient of a [`JsonMessage`].
#[derive(serde::Serialize)]
struct JsonRecipient<'a> {
    address: &'a str,
    /// `pending`, `delivered` or `failed`.
    status: &'static str,
    /// Pending: its last temporary error; failed: why; else null.
    last_error: Option<&'a str>,
    /// Pending: when it is tried next (the message's next attempt); else null.
    next_attempt_time: Option<u64>,
    next_attempt_date: Option<String>,
    /// DSN NOTIFY= as given (`SUCCESS,FAILURE`, `NEVER`), or null.
    notify: Option<String>,
    /// DSN ORCPT= as `type;address`, or null.
    orcpt: Option<&'a str>,
}

impl<'a> JsonMessage<'a> {
    fn of(e: &'a Entry) -> JsonMessage<'a> {
        let next = (e.status.next_try > 0).then_some(e.status.next_try);
        let recipients = recipients(e)
            .map(|(i, r, st)| {
                let (status, last_error, next) = match st {
                    RcptState::Pending => (
                        "pending",
                        e.status.rcpt_errors.get(&i).map(String::as_str),
                        next,
                    ),
                    RcptState::Delivered => ("delivered", None, None),
                    RcptState::Failed(why) => ("failed", Some(why.as_str()), None),
                };
                JsonRecipient {
                    address: &r.address,
                    status,
                    last_error,
                    next_attempt_time: next,
                    next_attempt_date: next.map(rfc5322_date),
                    notify: r.notify.map(|n| n.to_string()),
                    orcpt: r.orcpt.as_deref(),
                }
            })
            .collect();
        let env = &e.envelope;
        JsonMessage {
            id: &e.id,
            state: state_name(e.place),
            size: e.size,
            arrival_time: env.time,
            arrival_date: rfc5322_date(env.time),
            sender: &env.sender,
            client: env.client.as_deref(),
            helo: env.helo.as_deref(),
            auth_user: env.auth_user.as_deref(),
            envid: env.envid.as_deref(),
            ret: env.ret.map(|r| match r {
                crate::envelope::Ret::Full => "full",
                crate::envelope::Ret::Hdrs => "hdrs",
            }),
            smtputf8: env.smtputf8,
            attempts: e.status.attempts,
            next_attempt_time: next,
            next_attempt_date: next.map(rfc5322_date),
            last_error: e.status.last_error.as_deref(),
            recipients,
        }
    }
}

/// `active` or `held`, as the listings say.
fn state_name(place: Place) -> &'static str {
    match place {
        Place::Held => "held",
        Place::Active => "active",
    }
}

/// One pretty-printed JSON document and a newline.
fn write_json(doc: &impl serde::Serialize, out: &mut impl Write) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, doc).context("writing JSON")?;
    writeln!(out)?;
    Ok(())
}

/// Before a command touches the queue as root (`flush`, `queue ...`): switches to the
/// `[run_as]` user the daemon runs as, so that nothing (a `|pipe` alias, a state file) runs or
/// is written as root, and the daemon can read every file it finds. Not root, or no
/// `[run_as]`: nothing to do.
pub fn become_run_as(config: &Config) -> Result<()> {
    if crate::os::euid() != 0 {
        return Ok(());
    }
    match crate::server::RunAs::from_config(config) {
        Some(run_as) => crate::server::drop_privileges(&run_as),
        None => Ok(()),
    }
}

fn write_list(list: &[Entry], now: u64, out: &mut impl Write) -> std::io::Result<()> {
    if list.is_empty() {
        return writeln!(out, "Mail queue is empty");
    }
    writeln!(
        out,
        "{:<24} {:>9} {:>5}  Sender/Recipients",
        "Queue ID", "Size", "Age"
    )?;
    for e in list {
        let held = if e.place == Place::Held { "!" } else { "" };
        writeln!(
            out,
            "{:<24} {:>9} {:>5}  <{}>",
            format!("{}{held}", e.id),
            e.size,
            fmt_age(now.saturating_sub(e.envelope.time)),
            e.envelope.sender
        )?;
        let next = if e.status.next_try > now {
            format!("next try in {}", fmt_age(e.status.next_try - now))
        } else {
            "next try now".to_string()
        };
        for (i, r, st) in recipients(e) {
            if st == &RcptState::Pending {
                writeln!(out, "{:45}<{}>", "", r.address)?;
                if let Some(err) = e.status.rcpt_errors.get(&i) {
                    writeln!(out, "{:47}({err}; {next})", "")?;
                }
            }
        }
    }
    writeln!(out, "-- {} message(s)", list.len())
}

/// Each recipient of an entry with its index and state (a recipient without a state, from a
/// damaged status file, is left out).
fn recipients(e: &Entry) -> impl Iterator<Item = (usize, &Recipient, &RcptState)> {
    e.envelope
        .recipients
        .iter()
        .zip(&e.status.rcpts)
        .enumerate()
        .map(|(i, (r, st))| (i, r, st))
}

/// An age in the listing's short form: `59s`, `119m`, `47h`, `5d`.
fn fmt_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// `mrelayd queue show ID`: one entry in full (envelope, DSN parameters, each recipient's
/// state, attempts, next attempt, last error).
pub fn show(queue: &Queue, id: &str, json: bool, out: &mut impl Write) -> Result<()> {
    let e = queue.entry(id).map_err(|e| entry_error(e, id))?;
    if json {
        return write_json(&JsonMessage::of(&e), out);
    }
    write_entry(&e, out)?;
    Ok(())
}

fn write_entry(e: &Entry, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "id: {}", e.id)?;
    writeln!(out, "state: {}", state_name(e.place))?;
    writeln!(out, "size: {}", e.size)?;
    writeln!(out, "arrival: {}", rfc5322_date(e.envelope.time))?;
    writeln!(out, "sender: <{}>", e.envelope.sender)?;
    if let Some(c) = &e.envelope.client {
        writeln!(out, "client: {c}")?;
    }
    if let Some(h) = &e.envelope.helo {
        writeln!(out, "helo: {h}")?;
    }
    if let Some(u) = &e.envelope.auth_user {
        writeln!(out, "auth: {u}")?;
    }
    if let Some(v) = &e.envelope.envid {
        writeln!(out, "envid: {v}")?;
    }
    if let Some(r) = &e.envelope.ret {
        writeln!(out, "ret: {r:?}")?;
    }
    for (i, r, st) in recipients(e) {
        let mut extra = String::new();
        if let Some(n) = &r.notify {
            extra.push_str(&format!(" NOTIFY={n}"));
        }
        if let Some(o) = &r.orcpt {
            extra.push_str(&format!(" ORCPT={o}"));
        }
        let st = match st {
            RcptState::Pending => match e.status.rcpt_errors.get(&i) {
                Some(err) => format!("pending: {err}"),
                None => "pending".to_string(),
            },
            RcptState::Delivered => "delivered".to_string(),
            RcptState::Failed(why) => format!("failed: {why}"),
        };
        writeln!(out, "recipient: <{}>{extra} ({st})", r.address)?;
    }
    writeln!(out, "attempts: {}", e.status.attempts)?;
    if e.status.next_try > 0 {
        writeln!(out, "next attempt: {}", rfc5322_date(e.status.next_try))?;
    }
    if let Some(err) = &e.status.last_error {
        writeln!(out, "last error: {err}")?;
    }
    Ok(())
}

/// `mrelayd queue remove ID`: deletes the entry.
pub fn remove(queue: &Queue, id: &str) -> Result<()> {
    queue.remove(id).map_err(|e| entry_error(e, id))?;
    log::line(format_args!("{id}: removed by the administrator"));
    Ok(())
}

/// `mrelayd queue hold ID`: sets the entry aside; it is not delivered until released.
pub fn hold(queue: &Queue, id: &str) -> Result<()> {
    queue.hold(id).map_err(|e| entry_error(e, id))?;
    log::line(format_args!("{id}: held"));
    Ok(())
}

/// `mrelayd queue release ID`: puts a held entry back; it is tried at the next queue run.
pub fn release(queue: &Queue, id: &str) -> Result<()> {
    queue.release(id).map_err(|e| entry_error(e, id))?;
    log::line(format_args!("{id}: released"));
    Ok(())
}

/// A queue id that names no entry (or is no id at all) exits 67; other errors are I/O.
fn entry_error(e: std::io::Error, id: &str) -> anyhow::Error {
    if matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
    ) {
        exit::fail(exit::NOUSER, format!("{id}: {e}"))
    } else {
        anyhow::Error::new(e).context(format!("queue entry {id}"))
    }
}

/// What `mrelayd flush` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// A `serve` daemon runs: it was asked to retry the whole queue.
    Requested,
    /// No daemon runs: the queue was run here; this many entries are left.
    Ran {
        /// Entries still in the queue (deferred or busy).
        left: usize,
    },
}

impl std::fmt::Display for Flushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flushed::Requested => f.write_str("flush requested from the running daemon"),
            Flushed::Ran { left } => {
                write!(f, "queue run done, {left} message(s) left in the queue")
            }
        }
    }
}

/// `mrelayd flush`: asks the running daemon to retry every queued message now, or, when none
/// runs, delivers them in this process ([`runner::run_once`]).
pub fn flush(config: &Config, relay: &RelayConfig) -> Result<Flushed> {
    // Delivery here runs `|pipe` aliases and writes state files: never as root.
    become_run_as(config)?;
    let (_auth, router, queue) = daemon::open(config, relay)?;
    if runner::daemon_running(&queue) {
        queue.request_flush().context("requesting a flush")?;
        return Ok(Flushed::Requested);
    }
    let deliverer = daemon::deliverer(config, relay, router, &queue)?;
    let left = runner::run_once(&deliverer)?;
    deliverer.close();
    Ok(Flushed::Ran { left })
}

/// The client and transaction `mrelayd explain` walks through.
#[derive(Debug, Clone)]
pub struct Query {
    /// The client's IP address.
    pub client: IpAddr,
    /// The EHLO name.
    pub helo: Option<String>,
    /// The user the client authenticated as.
    pub auth: Option<String>,
    /// Listener role name (smtp, submission, submissions).
    pub role: String,
    /// Envelope sender; empty or `<>` for the null sender.
    pub from: String,
    /// Recipients.
    pub rcpts: Vec<String>,
}

/// `mrelayd explain`: what the config answers the client at each stage (trusted network, EHLO,
/// AUTH, MAIL, each RCPT) and why, and where each accepted recipient would be delivered.
pub fn explain(
    config: &Config,
    relay: &RelayConfig,
    q: &Query,
    out: &mut impl Write,
) -> Result<()> {
    let ip = q.client;
    let role = Role::from_arg(&q.role)?;
    let auth_db = Arc::new(Authenticator::from_config(config)?);
    let router = Router::new(config, relay, auth_db.clone())?;
    let remote =
        Engine::new(relay.remote.clone(), &config.hostname).context("remote delivery settings")?;
    writeln!(
        out,
        "config: {}",
        config
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(built-in defaults)".into())
    )?;
    writeln!(out, "local domains: {}", router.domains.join(", "))?;
    if let Some(a) = router.aliases_path() {
        writeln!(out, "aliases: {}", a.display())?;
    }
    writeln!(out, "role: {} (client {ip})", role.name())?;
    match router.trusted_network(Some(ip)) {
        Some(n) if role == Role::Smtp => {
            writeln!(out, "  client is in trusted network {n}: may relay")?
        }
        Some(n) => writeln!(
            out,
            "  client is in trusted network {n}, which does not count on {}",
            role.name()
        )?,
        None => writeln!(out, "  client is in no trusted network")?,
    }
    writeln!(
        out,
        "EHLO {}: 250 (any name is accepted)",
        q.helo.as_deref().unwrap_or("(none given)")
    )?;
    if let Some(u) = &q.auth {
        match auth_db.lookup_login(u) {
            Some(user) => writeln!(
                out,
                "AUTH as {u}: user {} (passwd-file line {}); a correct password gives 235",
                user.name, user.line
            )?,
            None => writeln!(
                out,
                "AUTH as {u}: no such user in the passwd-file: 535 5.7.8"
            )?,
        }
    } else if role != Role::Smtp {
        writeln!(
            out,
            "AUTH: none given; {} requires it: MAIL would get 530 5.7.0",
            role.name()
        )?;
    }
    // The session knows the canonical user a login stands for (its passwd-file name).
    let client = Client {
        ip: Some(ip),
        user: q.auth.as_ref().map(|u| {
            auth_db
                .lookup_login(u)
                .map_or_else(|| u.clone(), |e| e.name)
        }),
        role,
    };
    let from = &q.from;
    // A local client's bare names get our first domain, as in the session.
    let bare = router.bare_domain(&client);
    let from_mb = if from.is_empty() || from == "<>" {
        None
    } else {
        let line = format!("MAIL FROM:<{}>", from.trim_matches(['<', '>']));
        match command::parse_qualifying(line.as_bytes(), bare) {
            Ok(Command::Mail { from, .. }) => from,
            Ok(_) => None,
            Err(e) => {
                writeln!(out, "MAIL FROM:<{from}>: {}", e.to_reply())?;
                return Ok(());
            }
        }
    };
    let v = router.check_sender(&client, from_mb.as_ref());
    match &v.refusal {
        None => writeln!(out, "MAIL FROM:<{from}>: 250 2.1.0 ({})", v.reason)?,
        Some(r) => writeln!(out, "MAIL FROM:<{from}>: {r} ({})", v.reason)?,
    }
    for rcpt in &q.rcpts {
        let line = format!("RCPT TO:<{}>", rcpt.trim_matches(['<', '>']));
        let to = match command::parse_qualifying(line.as_bytes(), bare) {
            Ok(Command::Rcpt { to, .. }) => to,
            Ok(_) => continue,
            Err(e) => {
                writeln!(out, "RCPT TO:<{rcpt}>: {}", e.to_reply())?;
                continue;
            }
        };
        let v = router.check_rcpt(&client, &to);
        match &v.refusal {
            None => writeln!(out, "RCPT TO:<{rcpt}>: 250 2.1.5 ({})", v.reason)?,
            Some(r) => writeln!(out, "RCPT TO:<{rcpt}>: {r} ({})", v.reason)?,
        }
        // The one spelling the queue stores and delivery resolves (smtp::command::Mailbox).
        let canonical = router.rcpt_address(&to);
        if canonical != rcpt.trim_matches(['<', '>']) {
            writeln!(out, "    canonical address: <{canonical}>")?;
        }
        if let Some(Resolution::Targets { targets, .. }) = &v.resolution {
            if v.refusal.is_none() {
                for t in targets {
                    match t {
                        Target::Remote(a) => {
                            let hop = remote.next_hop(crate::smtp::command::split_address(a).1);
                            let tls = match &hop {
                                NextHop::Mx { tls, .. } => mx_tls_name(tls),
                                NextHop::Relayhost(r) => relayhost_tls_name(&r.tls),
                            };
                            writeln!(out, "    delivers to {t} via {hop} (tls {tls})")?;
                        }
                        _ => writeln!(out, "    delivers to {t}")?,
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Envelope, Status};

    fn entry(id: &str, place: Place, time: u64, status: Status) -> Entry {
        Entry {
            id: id.into(),
            place,
            size: 455,
            envelope: Envelope {
                sender: "s@remote.test".into(),
                recipients: vec![
                    Recipient {
                        address: "far@remote.test".into(),
                        notify: None,
                        orcpt: Some("rfc822;x@y.test".into()),
                    },
                    Recipient {
                        address: "team@example.test".into(),
                        notify: None,
                        orcpt: None,
                    },
                ],
                time,
                client: Some("127.0.0.1".into()),
                helo: Some("pipe".into()),
                ..Envelope::default()
            },
            status,
        }
    }

    fn text(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn listing_like_mailq() {
        assert_eq!(text(|o| write_list(&[], 0, o)), "Mail queue is empty\n");
        let mut st = Status::new(2);
        st.rcpts[1] = RcptState::Delivered;
        st.next_try = 1000 + 300;
        st.rcpt_errors.insert(0, "connect: refused".into());
        let list = [
            entry("6B0475707895F000A460000", Place::Held, 1000, st),
            entry("6B0475707C37B000A4D0000", Place::Active, 0, Status::new(2)),
        ];
        let want = "\
Queue ID                      Size   Age  Sender/Recipients
6B0475707895F000A460000!       455    5s  <s@remote.test>
                                             <far@remote.test>
                                               (connect: refused; next try in 4m)
6B0475707C37B000A4D0000        455   16m  <s@remote.test>
                                             <far@remote.test>
                                             <team@example.test>
-- 2 message(s)
";
        assert_eq!(text(|o| write_list(&list, 1005, o)), want);
    }

    #[test]
    fn ages() {
        assert_eq!(fmt_age(119), "119s");
        assert_eq!(fmt_age(120), "2m");
        assert_eq!(fmt_age(7199), "119m");
        assert_eq!(fmt_age(7200), "2h");
        assert_eq!(fmt_age(172_800), "2d");
    }

    #[test]
    fn one_entry_in_full() {
        let mut st = Status::new(2);
        st.rcpts[1] = RcptState::Failed("5.1.1 unknown".into());
        st.attempts = 1;
        st.next_try = 1_795_430_400;
        st.last_error = Some("<far@remote.test>: refused".into());
        let e = entry("ID1", Place::Active, 951_782_400, st);
        let want = "\
id: ID1
state: active
size: 455
arrival: Tue, 29 Feb 2000 00:00:00 +0000
sender: <s@remote.test>
client: 127.0.0.1
helo: pipe
recipient: <far@remote.test> ORCPT=rfc822;x@y.test (pending)
recipient: <team@example.test> (failed: 5.1.1 unknown)
attempts: 1
next attempt: Mon, 23 Nov 2026 10:40:00 +0000
last error: <far@remote.test>: refused
";
        assert_eq!(text(|o| write_entry(&e, o)), want);
    }

    #[test]
    fn unknown_ids_exit_67() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        for id in ["00000000000000000000000", "../../etc"] {
            assert_eq!(
                exit::code_of(&show(&q, id, false, &mut Vec::new()).unwrap_err()),
                67
            );
            assert_eq!(exit::code_of(&remove(&q, id).unwrap_err()), 67);
            assert_eq!(exit::code_of(&hold(&q, id).unwrap_err()), 67);
            assert_eq!(exit::code_of(&release(&q, id).unwrap_err()), 67);
        }
        assert_eq!(
            Flushed::Ran { left: 2 }.to_string(),
            "queue run done, 2 message(s) left in the queue"
        );
    }
}
