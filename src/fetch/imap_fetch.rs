//! One IMAP account's fetch: the sans-IO [`super::imap`] protocol over a [`Conn`].
//!
//! Greeting, CAPABILITY, STARTTLS (RFC 3501 §6.2.1) unless the URL says implicit TLS (RFC
//! 8314), then AUTHENTICATE PLAIN (RFC 4616; the response in the command with SASL-IR, RFC
//! 4959) when offered, else LOGIN; never a password without TLS unless `allow_plaintext`. A
//! `* PREAUTH` greeting on a connection without TLS is refused likewise: it would skip
//! STARTTLS (only allowed before authentication), so accepting it would let a man in the
//! middle strip TLS (the STARTTLS-stripping CVEs of fetchmail and others).
//!
//! Per folder:
//! 1. `STATUS (UIDNEXT UIDVALIDITY MESSAGES)`: when UIDVALIDITY and UIDNEXT are those the
//!    state recorded after the last complete fetch, nothing was added, and the folder is
//!    skipped without selecting it ([`Summary::unchanged`]); with delete or move only when it
//!    is also empty (what an earlier keep run left is deleted now).
//! 2. `EXAMINE` (read-only) or `SELECT` (to set flags, delete, move), for its UIDVALIDITY.
//! 3. `UID SEARCH ALL` (or `SINCE` the `--since` date): every UID; those not in the state are
//!    new. A new one already in the Maildir (its file name carries the tag of account, folder,
//!    UIDVALIDITY and UID: a run killed after the delivery and before the state line) is
//!    recorded, not fetched again.
//! 4. After a UIDVALIDITY change (RFC 3501 §2.3.1.1) the new ones' Message-ID and size are
//!    fetched first (`BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]`, `RFC822.SIZE`); those the state
//!    knows under the old UIDVALIDITY are recorded under the new one, not fetched. Nothing is
//!    ever deleted locally.
//! 5. `UID FETCH (UID BODY.PEEK[])` in batches of [`BATCH`], each message streamed into the
//!    destination, then recorded in the state. PEEK: fetching sets no `\Seen` (RFC 3501
//!    §6.4.5); `seen` sets it explicitly after the copy is durable.
//! 6. After each batch, for what is durable (and, deleting or moving, what earlier runs
//!    fetched): `UID STORE +FLAGS.SILENT (\Seen)`; or `UID MOVE` (RFC 6851), else `UID COPY`
//!    and the deletion (the target folder created on `[TRYCREATE]`, RFC 3501 §6.4.7); or
//!    `UID STORE +FLAGS.SILENT (\Deleted)` and `UID EXPUNGE` (UIDPLUS, RFC 4315). Without
//!    UIDPLUS a plain `EXPUNGE` would also remove messages another client flagged `\Deleted`
//!    without expunging them yet, so it is sent only when `UID SEARCH DELETED` finds no
//!    other; otherwise ours stay flagged and the next run (or that client) expunges them.
//! 7. A folder fetched completely records its UIDVALIDITY and UIDNEXT (step 1), and the state
//!    forgets the UIDs the server no longer has (not with `--since`: SINCE lists only some).
//!
//! `--idle` ([`watch`]): the same session does all that, then `EXAMINE`s the first folder
//! (read-only: waiting changes no flag) and waits in `IDLE` (RFC 2177, the exchange in
//! [`imap::Idle`]); `* n EXISTS` ends it with `DONE` and the folders are fetched again by the
//! same steps, so IDLE adds no second path to the state or the Maildir.

use std::collections::HashSet;

use anyhow::Result;

use super::account::{Auth, Job};
use super::conn::Conn;
use super::dest::{self, Delivery, Destination, Sink};
use super::imap::{self, Cond, Event, Reader, Tagged, Tagger, Untagged};
use super::state::{Record, State};
use super::{Progress, Summary, MAX_MESSAGE};
use crate::auth::{Mechanism, SaslClient};
use crate::exit;

/// Messages per `UID FETCH`.
pub const BATCH: usize = 100;
/// UIDs per flag-setting or deleting command.
const ACT_BATCH: usize = 500;

/// The connection, the reader and the tags of one session.
struct Session {
    c: Conn,
    r: Reader,
    t: Tagger,
    caps: Vec<String>,
    /// `--idle`: turns true on SIGTERM/SIGINT; the fetch stops after the batch in progress
    /// (every message of it stored and recorded).
    stop: Option<tokio::sync::watch::Receiver<bool>>,
}

/// The untagged responses, SEARCH numbers and tagged end of one command.
struct Answer {
    tagged: Tagged,
    untagged: Vec<Untagged>,
    search: Vec<u32>,
}

impl Session {
    async fn event(&mut self) -> Result<Event> {
        let limit = self.c.timeout();
        self.event_within(limit).await
    }

    /// The next event, each read within `limit` (longer than a command's during IDLE).
    async fn event_within(&mut self, limit: std::time::Duration) -> Result<Event> {
        loop {
            match self.r.event() {
                Ok(Some(e)) => return Ok(e),
                Ok(None) => {}
                Err(e) => return Err(self.c.hostile(e)),
            }
            let data = self.c.read_within(limit).await?;
            self.r.push(data);
        }
    }

    /// Whether to stop fetching (module doc of [`watch`]).
    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|r| *r.borrow())
    }

    fn has(&self, cap: &str) -> bool {
        self.caps.iter().any(|c| c == cap)
    }

    /// Sends a command and reads up to its tagged response (a message body in between is a
    /// protocol error: only [`fetch_batch`] asks for bodies).
    async fn command(&mut self, text: &str) -> Result<Answer> {
        let (tag, bytes) = self.t.command(text);
        self.c.send(&bytes).await?;
        self.answer(&tag).await
    }

    async fn answer(&mut self, tag: &str) -> Result<Answer> {
        let mut untagged = Vec::new();
        let mut search = Vec::new();
        loop {
            match self.event().await? {
                Event::Tagged(t) if t.tag == tag => {
                    return Ok(Answer {
                        tagged: t,
                        untagged,
                        search,
                    })
                }
                Event::Untagged(u) => untagged.push(u),
                Event::Search(n) => search.extend(n),
                Event::SearchEnd => {}
                other => {
                    return Err(exit::fail(
                        exit::UNAVAILABLE,
                        format!("{}: unexpected {other:?}", self.c.server()),
                    ))
                }
            }
        }
    }

    /// CAPABILITY, asked.
    async fn capability(&mut self) -> Result<()> {
        let a = self.command("CAPABILITY").await?;
        self.caps = a
            .untagged
            .iter()
            .find_map(Untagged::capabilities)
            .unwrap_or_default();
        Ok(())
    }

    /// Capabilities from a tagged OK's `[CAPABILITY ...]` code (RFC 3501 §7.1), else asked.
    async fn capabilities_after(&mut self, t: &Tagged) -> Result<()> {
        match t
            .code
            .as_deref()
            .and_then(|c| c.strip_prefix("CAPABILITY "))
        {
            Some(list) => {
                self.caps = list
                    .split_ascii_whitespace()
                    .map(str::to_ascii_uppercase)
                    .collect()
            }
            None => self.capability().await?,
        }
        Ok(())
    }
}

/// STARTTLS when the job wants it (its answer checked for injected bytes).
async fn secure(job: &Job, s: &mut Session) -> Result<()> {
    if job.tls != crate::tls::Mode::Starttls || s.c.is_tls() {
        return Ok(());
    }
    if !s.has("STARTTLS") {
        if job.allow_plaintext {
            return Ok(());
        }
        return Err(exit::fail(
            exit::UNAVAILABLE,
            format!(
                "{}: the server offers no STARTTLS, and the password is never sent in clear \
                 (use imaps://, or allow_plaintext)",
                s.c.server()
            ),
        ));
    }
    let a = s.command("STARTTLS").await?;
    if a.tagged.cond != Cond::Ok {
        if job.allow_plaintext {
            return Ok(());
        }
        return Err(s.c.refused("STARTTLS refused", &a.tagged));
    }
    if s.r.buffered() > 0 {
        // RFC 3501 §6.2.1 / RFC 2595 §3.1: what came in clear after the OK could be injected.
        return Err(exit::fail(
            exit::UNAVAILABLE,
            format!(
                "{}: data received after STARTTLS's OK, before TLS",
                s.c.server()
            ),
        ));
    }
    s.c.start_tls().await?;
    s.r = Reader::new(MAX_MESSAGE as u64);
    // Capabilities from before TLS are forgotten (RFC 3501 §6.2.1).
    s.capability().await
}

async fn login(job: &Job, password: &str, s: &mut Session) -> Result<()> {
    if !s.c.is_tls() && !job.allow_plaintext {
        return Err(exit::fail(
            exit::UNAVAILABLE,
            format!(
                "{}: not encrypted; the password is never sent in clear",
                s.c.server()
            ),
        ));
    }
    let how = match job.auth {
        Auth::Any if s.has("AUTH=PLAIN") => Auth::SaslPlain,
        Auth::Any => Auth::User,
        other => other,
    };
    // The JSON error of a refused token (RFC 7628 §3.2.2).
    let mut refused = None;
    let t = match how {
        Auth::SaslPlain | Auth::Xoauth2 | Auth::Oauthbearer => {
            let mech = how.sasl().unwrap_or(Mechanism::Plain);
            if !s.has(&format!("AUTH={mech}")) && mech != Mechanism::Plain {
                return Err(exit::fail(
                    exit::UNAVAILABLE,
                    format!("{}: the server does not offer AUTH={mech}", s.c.server()),
                ));
            }
            let mut sasl = SaslClient::new(mech, &job.user, password, &job.url.host, job.url.port);
            // RFC 4959: the initial response goes with the command when SASL-IR is offered.
            let text = match s.has("SASL-IR").then(|| sasl.initial_response()).flatten() {
                Some(ir) => format!("AUTHENTICATE {mech} {ir}"),
                None => format!("AUTHENTICATE {mech}"),
            };
            let (tag, bytes) = s.t.command(&text);
            s.c.send(&bytes).await?;
            let t = loop {
                match s.event().await? {
                    // RFC 3501 §6.2.2: each challenge gets one response line.
                    Event::Continue(challenge) => {
                        let r = sasl.step(challenge.as_bytes());
                        s.c.send(format!("{}\r\n", r.line).as_bytes()).await?;
                    }
                    Event::Tagged(t) if t.tag == tag => break t,
                    Event::Untagged(_) => {}
                    other => {
                        return Err(exit::fail(
                            exit::UNAVAILABLE,
                            format!("{}: unexpected {other:?} in login", s.c.server()),
                        ))
                    }
                }
            };
            refused = sasl.server_error().map(str::to_string);
            t
        }
        Auth::User | Auth::Any | Auth::Apop => {
            if s.has("LOGINDISABLED") {
                return Err(exit::fail(
                    exit::UNAVAILABLE,
                    format!(
                        "{}: LOGIN is disabled and AUTH=PLAIN not offered",
                        s.c.server()
                    ),
                ));
            }
            let (Some(u), Some(p)) = (imap::quoted(&job.user), imap::quoted(password)) else {
                return Err(exit::fail(
                    exit::CONFIG,
                    "the user or password cannot be sent with LOGIN (8-bit or a line end); \
                     use auth = \"sasl-plain\"",
                ));
            };
            s.command(&format!("LOGIN {u} {p}")).await?.tagged
        }
    };
    match (t.cond, refused) {
        (Cond::Ok, _) => s.capabilities_after(&t).await,
        (_, None) => Err(s.c.login_failed(&t)),
        (_, Some(why)) => Err(s
            .c
            .login_failed(&t)
            .context(format!("token refused: {why}"))),
    }
}

/// Fetches the job's IMAP folders.
pub async fn run(
    job: &Job,
    password: &str,
    state: &mut State,
    dest: &mut Destination,
    progress: &Progress,
    verbose: bool,
) -> Result<Summary> {
    let mut s = open(job, password, verbose).await?;
    let sum = fetch_all(job, &mut s, state, dest, progress, verbose).await?;
    let _ = s.command("LOGOUT").await;
    s.c.close().await;
    state.finish()?;
    Ok(sum)
}

/// How a [`watch`] ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// Asked to stop (SIGTERM/SIGINT): logged out.
    Stopped,
    /// The server offers no IDLE (or refused it): the caller polls instead.
    NoIdle,
}

/// An IDLE is ended and begun again after this long (RFC 2177 §3: servers may log a client
/// out after 30 minutes of inactivity, so clients re-issue IDLE at least every 29 minutes).
pub const IDLE_RENEW: std::time::Duration = std::time::Duration::from_secs(29 * 60);

/// `mfetch --idle` on one IMAP account (RFC 2177): the normal fetch ([`fetch_all`], the same
/// durability and state path as a run), then `EXAMINE` of the first folder and `IDLE` until
/// the server says `* n EXISTS`, [`IDLE_RENEW`] passes or `stop` turns true; `DONE`, and
/// again. `report` is told each round's summary. Errors are the run's (the caller reconnects
/// after temporary ones).
#[allow(clippy::too_many_arguments)]
pub async fn watch(
    job: &Job,
    password: &str,
    state: &mut State,
    dest: &mut Destination,
    progress: &Progress,
    verbose: bool,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    report: &mut (dyn FnMut(&Summary) + Send),
) -> Result<Watched> {
    let mut s = open(job, password, verbose).await?;
    s.stop = Some(stop.clone());
    let folder = job.folders.first().map_or("INBOX", String::as_str);
    let ended = loop {
        let sum = fetch_all(job, &mut s, state, dest, progress, verbose).await?;
        state.finish()?;
        report(&sum);
        if *stop.borrow() {
            break Watched::Stopped;
        }
        if !s.has("IDLE") {
            break Watched::NoIdle;
        }
        let a = s
            .command(&format!("EXAMINE {}", imap::mailbox(folder)))
            .await?;
        if a.tagged.cond != Cond::Ok {
            return Err(s.c.refused(&format!("EXAMINE {folder}"), &a.tagged));
        }
        // Mail that came between the fetch's STATUS and this EXAMINE raises no EXISTS during
        // the IDLE: a UIDNEXT other than the one recorded means fetch again first.
        let uidnext = a.untagged.iter().find_map(|u| u.code_number("UIDNEXT"));
        let v = a.untagged.iter().find_map(|u| u.code_number("UIDVALIDITY"));
        let recorded = state.imap_folder(folder);
        if sum.later.is_none() && recorded.is_some() && (v.zip(uidnext)) != recorded {
            continue;
        }
        if verbose {
            crate::log::line(format!("{}: {folder}: waiting in IDLE", job.name));
        }
        match idle(job, &mut s, stop).await? {
            IdleEnd::Again => {}
            IdleEnd::Stop => break Watched::Stopped,
            IdleEnd::Refused => break Watched::NoIdle,
        }
    };
    let _ = s.command("LOGOUT").await;
    s.c.close().await;
    Ok(ended)
}

enum IdleEnd {
    /// New mail, or time to renew: fetch and IDLE again.
    Again,
    /// Asked to stop; IDLE is over.
    Stop,
    /// The server refused IDLE.
    Refused,
}

/// One IDLE command, to its end (module doc of [`imap::Idle`]).
async fn idle(
    job: &Job,
    s: &mut Session,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<IdleEnd> {
    let (idle, bytes) = imap::Idle::start(&mut s.t);
    s.c.send(&bytes).await?;
    let renew = tokio::time::Instant::now() + IDLE_RENEW;
    let mut done_sent: Option<IdleEnd> = None;
    loop {
        let e = if done_sent.is_some() {
            s.event().await?
        } else {
            let woke = tokio::select! {
                e = s.event_within(IDLE_RENEW + job.timeout) => Ok(e?),
                _ = tokio::time::sleep_until(renew) => Err(IdleEnd::Again),
                _ = stopped(stop) => Err(IdleEnd::Stop),
            };
            match woke {
                Ok(e) => e,
                Err(end) => {
                    s.c.send(imap::IDLE_DONE).await?;
                    done_sent = Some(end);
                    continue;
                }
            }
        };
        match idle.step(&e) {
            imap::IdleStep::Idling | imap::IdleStep::Wait => {}
            imap::IdleStep::NewMail => {
                if done_sent.is_none() {
                    s.c.send(imap::IDLE_DONE).await?;
                    done_sent = Some(IdleEnd::Again);
                }
            }
            imap::IdleStep::Bye => {
                return Err(exit::fail(
                    exit::TEMPFAIL,
                    format!("{}: the server ended the session (BYE)", s.c.server()),
                ))
            }
            imap::IdleStep::Ended(t) => {
                return Ok(match done_sent {
                    Some(end) if t.cond == Cond::Ok => end,
                    Some(IdleEnd::Stop) => IdleEnd::Stop,
                    _ => {
                        crate::log::line(format!("{}: IDLE refused: {t}; polling", job.name));
                        IdleEnd::Refused
                    }
                })
            }
            imap::IdleStep::Unexpected => {
                return Err(exit::fail(
                    exit::UNAVAILABLE,
                    format!("{}: unexpected {e:?} during IDLE", s.c.server()),
                ))
            }
        }
    }
}

/// Returns once `stop` is true (never if its sender is gone without saying so).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    if stop.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Connects, secures and logs in (or accepts a PREAUTH over TLS).
async fn open(job: &Job, password: &str, verbose: bool) -> Result<Session> {
    let c = Conn::open(job, verbose).await?;
    let mut s = Session {
        c,
        r: Reader::new(MAX_MESSAGE as u64),
        t: Tagger::default(),
        caps: Vec::new(),
        stop: None,
    };
    let greeting = match s.event().await? {
        Event::Untagged(u) => u,
        other => {
            return Err(exit::fail(
                exit::UNAVAILABLE,
                format!("{}: not an IMAP greeting: {other:?}", s.c.server()),
            ))
        }
    };
    let preauth = match greeting.keyword().as_str() {
        "OK" => false,
        "PREAUTH" => true,
        "BYE" => {
            return Err(exit::fail(
                exit::TEMPFAIL,
                format!(
                    "{}: {}",
                    s.c.server(),
                    String::from_utf8_lossy(&greeting.text)
                ),
            ))
        }
        _ => {
            return Err(exit::fail(
                exit::UNAVAILABLE,
                format!(
                    "{}: not an IMAP greeting: {}",
                    s.c.server(),
                    String::from_utf8_lossy(&greeting.text)
                ),
            ))
        }
    };
    if preauth && !s.c.is_tls() && !job.allow_plaintext {
        return Err(exit::fail(
            exit::UNAVAILABLE,
            format!(
                "{}: PREAUTH greeting without TLS refused: it would skip STARTTLS (use \
                 imaps://, or allow_plaintext)",
                s.c.server()
            ),
        ));
    }
    match greeting.capabilities() {
        Some(c) => s.caps = c,
        None => s.capability().await?,
    }
    if !preauth {
        secure(job, &mut s).await?;
        login(job, password, &mut s).await?;
    }
    Ok(s)
}

/// Every folder of the job, once.
async fn fetch_all(
    job: &Job,
    s: &mut Session,
    state: &mut State,
    dest: &mut Destination,
    progress: &Progress,
    verbose: bool,
) -> Result<Summary> {
    let mut sum = Summary::default();
    for folder in &job.folders {
        fetch_folder(job, s, folder, state, dest, progress, verbose, &mut sum).await?;
        if job.limit.is_some_and(|l| sum.fetched >= l) || s.stopping() {
            break;
        }
    }
    Ok(sum)
}

fn store_err(e: std::io::Error) -> anyhow::Error {
    exit::fail(exit::CANTCREAT, format!("state: {e}"))
}

/// What a UID FETCH batch delivered.
#[derive(Default)]
struct Fetched {
    done: Vec<u32>,
    incomplete: bool,
}

/// The message being received.
enum Current {
    /// Streamed into the destination (its UID came before the literal).
    Sink(Sink, u32, u64),
    /// Held until its UID, which came after the literal.
    Held(Vec<u8>, u64),
}

#[allow(clippy::too_many_arguments)]
async fn fetch_batch(
    job: &Job,
    s: &mut Session,
    folder: &str,
    v: u32,
    uids: &[u32],
    state: &mut State,
    dest: &mut Destination,
    progress: &Progress,
    sum: &mut Summary,
) -> Result<Fetched> {
    let wanted: HashSet<u32> = uids.iter().copied().collect();
    let (tag, bytes) = s.t.command(&format!(
        "UID FETCH {} (UID BODY.PEEK[])",
        imap::uid_set(uids)
    ));
    s.c.send(&bytes).await?;
    let mut out = Fetched::default();
    let mut cur: Option<Current> = None;
    let tag_of = |uid: u32| {
        dest::tag(
            &job.state_name,
            &["imap", folder, &v.to_string(), &uid.to_string()],
        )
    };
    loop {
        match s.event().await? {
            Event::BodyStart { uid, size, .. } => {
                cur = Some(match uid.filter(|u| wanted.contains(u)) {
                    Some(u) => Current::Sink(dest.begin(folder, &tag_of(u))?, u, size),
                    None => Current::Held(Vec::new(), size),
                });
            }
            Event::BodyData(piece) => match &mut cur {
                Some(Current::Sink(sink, _, _)) => sink.write(piece).await?,
                Some(Current::Held(buf, _)) => buf.extend_from_slice(&piece),
                None => {}
            },
            Event::BodyEnd { uid: after } => {
                let (delivery, uid, size, message_id) = match cur.take() {
                    Some(Current::Sink(sink, uid, size)) => {
                        let mid = sink.message_id();
                        (dest.finish(sink).await?, uid, size, mid)
                    }
                    Some(Current::Held(buf, size)) => {
                        let Some(uid) = after.filter(|u| wanted.contains(u)) else {
                            // Not a message asked for (an unsolicited FETCH): dropped.
                            continue;
                        };
                        let mid = dest::message_id_of(&buf);
                        (
                            dest.deliver(folder, &buf, &tag_of(uid)).await?,
                            uid,
                            size,
                            mid,
                        )
                    }
                    None => continue,
                };
                match delivery {
                    Delivery::Done => {
                        state
                            .record_imap(folder, v, uid, Record { size, message_id })
                            .map_err(store_err)?;
                        sum.fetched += 1;
                        sum.bytes += size;
                        out.done.push(uid);
                    }
                    Delivery::Later(why) => {
                        sum.later = Some(why);
                        out.incomplete = true;
                    }
                }
                progress.inc(size);
            }
            Event::Tagged(t) if t.tag == tag => {
                if t.cond != Cond::Ok {
                    // E.g. a message expunged by another client meanwhile (RFC 2180 §4.1).
                    crate::log::line(format!("{}: {folder}: UID FETCH: {t}", job.name));
                    out.incomplete = true;
                }
                if out.done.len() < uids.len() {
                    out.incomplete = true;
                }
                return Ok(out);
            }
            Event::Untagged(_) | Event::Search(_) | Event::SearchEnd => {}
            other => {
                return Err(exit::fail(
                    exit::UNAVAILABLE,
                    format!("{}: unexpected {other:?}", s.c.server()),
                ))
            }
        }
    }
}

/// Sets \Seen on, deletes or moves `uids` (durably stored), per the job; how many were
/// deleted or moved.
async fn act(job: &Job, s: &mut Session, folder: &str, uids: &[u32]) -> Result<usize> {
    let deleting = job.delete || job.move_to.is_some();
    if uids.is_empty() || !(deleting || job.seen) {
        return Ok(0);
    }
    let mut n = 0;
    for chunk in uids.chunks(ACT_BATCH) {
        let set = imap::uid_set(chunk);
        if let Some(to) = &job.move_to {
            let to = imap::mailbox(to);
            let verb = if s.has("MOVE") { "MOVE" } else { "COPY" };
            let mut a = s.command(&format!("UID {verb} {set} {to}")).await?;
            if a.tagged.cond == Cond::No && a.tagged.code.as_deref() == Some("TRYCREATE") {
                // The folder does not exist yet: create it and try once more (RFC 3501
                // §6.4.7).
                let _ = s.command(&format!("CREATE {to}")).await?;
                a = s.command(&format!("UID {verb} {set} {to}")).await?;
            }
            if verb == "MOVE" {
                if a.tagged.cond != Cond::Ok {
                    return Err(s.c.refused(&format!("{folder}: UID MOVE"), &a.tagged));
                }
                n += chunk.len();
                continue;
            }
            if a.tagged.cond != Cond::Ok {
                return Err(s.c.refused(&format!("{folder}: UID COPY"), &a.tagged));
            }
        }
        if !deleting {
            let a = s
                .command(&format!("UID STORE {set} +FLAGS.SILENT (\\Seen)"))
                .await?;
            if a.tagged.cond != Cond::Ok {
                return Err(s.c.refused(&format!("{folder}: UID STORE"), &a.tagged));
            }
            continue;
        }
        let a = s
            .command(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
            .await?;
        if a.tagged.cond != Cond::Ok {
            return Err(s.c.refused(&format!("{folder}: UID STORE"), &a.tagged));
        }
        if s.has("UIDPLUS") {
            let a = s.command(&format!("UID EXPUNGE {set}")).await?;
            if a.tagged.cond != Cond::Ok {
                return Err(s.c.refused(&format!("{folder}: UID EXPUNGE"), &a.tagged));
            }
            n += chunk.len();
            continue;
        }
        // Without UIDPLUS: EXPUNGE only when no other message is flagged \Deleted (module doc).
        let flagged = s.command("UID SEARCH DELETED").await?.search;
        let ours: HashSet<u32> = chunk.iter().copied().collect();
        if flagged.iter().all(|u| ours.contains(u)) {
            let a = s.command("EXPUNGE").await?;
            if a.tagged.cond != Cond::Ok {
                return Err(s.c.refused(&format!("{folder}: EXPUNGE"), &a.tagged));
            }
            n += chunk.len();
        } else {
            crate::log::line(format!(
                "{}: {folder}: other messages are flagged \\Deleted and the server has no \
                 UIDPLUS: not expunging; those fetched stay flagged \\Deleted",
                job.name
            ));
        }
    }
    Ok(n)
}

/// Message-ID and size of `uids`, for resynchronisation after a UIDVALIDITY change.
async fn identities(s: &mut Session, uids: &[u32]) -> Result<Vec<(u32, u64, Option<String>)>> {
    let mut out = Vec::new();
    for chunk in uids.chunks(ACT_BATCH) {
        let a = s
            .command(&format!(
                "UID FETCH {} (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
                imap::uid_set(chunk)
            ))
            .await?;
        if a.tagged.cond != Cond::Ok {
            return Err(s.c.refused("UID FETCH of Message-IDs", &a.tagged));
        }
        for u in a.untagged.iter().filter(|u| u.keyword() == "FETCH") {
            let uid = imap::fetch_number(&u.text, "UID").and_then(|n| u32::try_from(n).ok());
            let size = imap::fetch_number(&u.text, "RFC822.SIZE");
            if let (Some(uid), Some(size)) = (uid, size) {
                let mid = u.literals.first().and_then(|h| dest::message_id_of(h));
                out.push((uid, size, mid));
            }
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn fetch_folder(
    job: &Job,
    s: &mut Session,
    folder: &str,
    state: &mut State,
    dest: &mut Destination,
    progress: &Progress,
    verbose: bool,
    sum: &mut Summary,
) -> Result<()> {
    let mbox = imap::mailbox(folder);
    let deleting = job.delete || job.move_to.is_some();
    let a = s
        .command(&format!("STATUS {mbox} (UIDNEXT UIDVALIDITY MESSAGES)"))
        .await?;
    if a.tagged.cond != Cond::Ok {
        return Err(s.c.refused(&format!("STATUS {folder}"), &a.tagged));
    }
    let status = a.untagged.iter().find(|u| u.keyword() == "STATUS");
    let item = |n: &str| status.and_then(|u| u.status_item(n));
    let uidnext = item("UIDNEXT").and_then(|n| u32::try_from(n).ok());
    let status_v = item("UIDVALIDITY").and_then(|n| u32::try_from(n).ok());
    if let (Some(v), Some(next)) = (status_v, uidnext) {
        if state.imap_folder(folder) == Some((v, next))
            && (!deleting || item("MESSAGES") == Some(0))
        {
            if verbose {
                crate::log::line(format!("{}: {folder}: unchanged (STATUS)", job.name));
            }
            sum.unchanged += 1;
            return Ok(());
        }
    }
    let verb = if deleting || job.seen {
        "SELECT"
    } else {
        "EXAMINE"
    };
    let a = s.command(&format!("{verb} {mbox}")).await?;
    if a.tagged.cond != Cond::Ok {
        return Err(s.c.refused(&format!("{verb} {folder}"), &a.tagged));
    }
    let Some(v) = a
        .untagged
        .iter()
        .find_map(|u| u.code_number("UIDVALIDITY"))
        .or(status_v)
    else {
        return Err(exit::fail(
            exit::UNAVAILABLE,
            format!("{}: {folder} has no UIDVALIDITY", s.c.server()),
        ));
    };
    let search = match &job.since {
        Some(d) => format!("UID SEARCH SINCE {d}"),
        None => "UID SEARCH ALL".to_string(),
    };
    let a = s.command(&search).await?;
    if a.tagged.cond != Cond::Ok {
        return Err(s.c.refused(&format!("{folder}: UID SEARCH"), &a.tagged));
    }
    let mut uids = a.search;
    uids.sort_unstable();
    uids.dedup();
    let resync = state.imap_other_uidvalidity(folder, v);
    let mut old = Vec::new();
    let mut new = Vec::new();
    let mut found = Vec::new();
    for &uid in &uids {
        if state.has_imap(folder, v, uid) {
            old.push(uid);
            continue;
        }
        let tag = dest::tag(
            &job.state_name,
            &["imap", folder, &v.to_string(), &uid.to_string()],
        );
        if dest.already(folder, &tag).map_err(store_err)? {
            // Delivered by a run killed before it could record it: recorded below, with its
            // Message-ID and size for a later resynchronisation.
            found.push(uid);
            old.push(uid);
        } else {
            new.push(uid);
        }
    }
    if !found.is_empty() {
        let ids = identities(s, &found).await?;
        for uid in found {
            let (size, message_id) = ids
                .iter()
                .find(|(u, _, _)| *u == uid)
                .map_or((0, None), |(_, size, mid)| (*size, mid.clone()));
            state
                .record_imap(folder, v, uid, Record { size, message_id })
                .map_err(store_err)?;
            sum.found += 1;
        }
    }
    if resync && !new.is_empty() {
        if verbose {
            crate::log::line(format!(
                "{}: {folder}: UIDVALIDITY is now {v}: matching by Message-ID and size",
                job.name
            ));
        }
        let mut known = HashSet::new();
        for (uid, size, mid) in identities(s, &new).await? {
            if let Some(m) = &mid {
                if state.imap_by_message_id(folder, m, size) {
                    state
                        .record_imap(
                            folder,
                            v,
                            uid,
                            Record {
                                size,
                                message_id: mid.clone(),
                            },
                        )
                        .map_err(store_err)?;
                    known.insert(uid);
                    old.push(uid);
                }
            }
        }
        new.retain(|u| !known.contains(u));
    }
    let mut complete = true;
    if let Some(limit) = job.limit {
        let left = limit.saturating_sub(sum.fetched);
        if new.len() > left {
            new.truncate(left);
            complete = false;
        }
    }
    if verbose {
        crate::log::line(format!(
            "{}: {folder}: {} messages, {} new",
            job.name,
            uids.len(),
            new.len()
        ));
    }
    progress.start(new.len() as u64);
    if deleting {
        sum.deleted += act(job, s, folder, &old).await?;
    }
    for batch in new.chunks(BATCH) {
        if s.stopping() {
            complete = false;
            break;
        }
        let got = fetch_batch(job, s, folder, v, batch, state, dest, progress, sum).await?;
        complete &= !got.incomplete;
        sum.deleted += if deleting {
            act(job, s, folder, &got.done).await?
        } else {
            act(job, s, folder, &got.done).await?;
            0
        };
    }
    if job.since.is_none() && (complete || !resync) {
        let on_server: HashSet<u32> = uids.iter().copied().collect();
        state.prune_imap(folder, v, &on_server);
    }
    if complete {
        if let (Some(next), Some(sv)) = (uidnext, status_v) {
            if sv == v {
                state.record_folder(folder, v, next).map_err(store_err)?;
            }
        }
    }
    Ok(())
}
