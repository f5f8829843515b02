//! One POP3 account's fetch: the sans-IO [`super::pop3`] protocol over a [`Conn`].
//!
//! Greeting, CAPA (RFC 2449), STLS (RFC 2595) unless the URL says implicit TLS, login (SASL
//! PLAIN (RFC 5034, RFC 4616) when offered, else USER/PASS; APOP when configured), UIDL and
//! LIST, then RETR of each message not in the state, pipelined when CAPA lists PIPELINING.
//! Each message is stored durably and recorded in the state before anything else happens;
//! with `delete` its DELE is sent only then, and the deletions take effect at QUIT (RFC 1939
//! §6), so a kill before QUIT deletes nothing. Messages fetched by an earlier run and still
//! on the server are deleted too.
//!
//! Without UIDL a message's key is its Message-ID and size (from TOP n 0 when offered, else
//! from the message itself), or a hash of its header when it has no Message-ID.

use std::collections::{HashSet, VecDeque};

use anyhow::Result;

use super::account::{Auth, Job};
use super::conn::Conn;
use super::dest::{self, Delivery, Destination};
use super::pop3::{self, Capabilities, Expect, Reader, Response, Status};
use super::state::{Record, State};
use super::{Progress, Summary, MAX_MESSAGE};
use crate::auth::{Mechanism, SaslClient};
use crate::exit;

/// Most commands outstanding when the server pipelines.
const WINDOW: usize = 16;

async fn next(c: &mut Conn, r: &mut Reader) -> Result<Response> {
    loop {
        match r.response() {
            Ok(Some(x)) => return Ok(x),
            Ok(None) => {}
            Err(e) => return Err(c.hostile(e)),
        }
        let data = c.read().await?;
        r.push(data);
    }
}

async fn command(c: &mut Conn, r: &mut Reader, bytes: &[u8], e: Expect) -> Result<Response> {
    r.expect(e);
    c.send(bytes).await?;
    next(c, r).await
}

async fn ask_capa(c: &mut Conn, r: &mut Reader) -> Result<Capabilities> {
    Ok(
        match command(c, r, &pop3::command("CAPA", None), Expect::Lines).await? {
            Response::Lines(_, lines) => Capabilities::parse(&lines),
            _ => Capabilities::default(),
        },
    )
}

/// STLS when the job wants it; the CAPA of the session that logs in.
async fn secure(
    job: &Job,
    c: &mut Conn,
    r: &mut Reader,
    capa: Capabilities,
) -> Result<Capabilities> {
    if job.tls != crate::tls::Mode::Starttls || c.is_tls() {
        return Ok(capa);
    }
    if capa.known && !capa.stls {
        if job.allow_plaintext {
            return Ok(capa);
        }
        return Err(exit::fail(
            exit::UNAVAILABLE,
            format!(
                "{}: the server offers no STLS, and the password is never sent in clear \
                 (use pop3s://, or allow_plaintext)",
                c.server()
            ),
        ));
    }
    let s = command(c, r, &pop3::command("STLS", None), Expect::Status).await?;
    let s = s.status().clone();
    if !s.ok {
        if job.allow_plaintext {
            return Ok(capa);
        }
        return Err(c.refused("STLS refused", &s));
    }
    if r.buffered() > 0 {
        // RFC 2595 §4 / RFC 3207 §5: what came in clear after the go-ahead could be injected.
        return Err(exit::fail(
            exit::UNAVAILABLE,
            format!("{}: data received after STLS's +OK, before TLS", c.server()),
        ));
    }
    c.start_tls().await?;
    *r = Reader::after_tls();
    ask_capa(c, r).await
}

async fn login(
    job: &Job,
    password: &str,
    c: &mut Conn,
    r: &mut Reader,
    greeting: &Status,
    capa: &Capabilities,
) -> Result<()> {
    if !c.is_tls() && !job.allow_plaintext {
        return Err(exit::fail(
            exit::UNAVAILABLE,
            format!(
                "{}: not encrypted; the password is never sent in clear",
                c.server()
            ),
        ));
    }
    let sasl_plain = capa.sasl.iter().any(|m| m == "PLAIN");
    let how = match job.auth {
        Auth::Any if sasl_plain => Auth::SaslPlain,
        Auth::Any => Auth::User,
        other => other,
    };
    // The JSON error of a refused token (RFC 7628 §3.2.2).
    let mut refused = None;
    let s = match how {
        Auth::Apop => {
            let Some(stamp) = pop3::apop_timestamp(&greeting.text) else {
                return Err(exit::fail(
                    exit::UNAVAILABLE,
                    format!(
                        "{}: APOP asked for, but the greeting has no timestamp",
                        c.server()
                    ),
                ));
            };
            let cmd = pop3::apop_command(&job.user, stamp, password);
            command(c, r, &cmd, Expect::Status).await?
        }
        Auth::SaslPlain | Auth::Xoauth2 | Auth::Oauthbearer => {
            let mech = how.sasl().unwrap_or(Mechanism::Plain);
            if mech != Mechanism::Plain && !capa.sasl.iter().any(|m| m == mech.name()) {
                return Err(exit::fail(
                    exit::UNAVAILABLE,
                    format!("{}: the server does not offer SASL {mech}", c.server()),
                ));
            }
            let mut sasl = SaslClient::new(mech, &job.user, password, &job.url.host, job.url.port);
            // RFC 5034 §4: AUTH with the initial response.
            let ir = sasl.initial_response().unwrap_or_default();
            let mut s = command(
                c,
                r,
                format!("AUTH {mech} {ir}\r\n").as_bytes(),
                Expect::Status,
            )
            .await?;
            // Each `+ challenge` gets one response line; at most a few rounds.
            for _ in 0..4 {
                if !s.status().continuation {
                    break;
                }
                let step = sasl.step(s.status().text.as_bytes());
                s = command(
                    c,
                    r,
                    format!("{}\r\n", step.line).as_bytes(),
                    Expect::Status,
                )
                .await?;
            }
            refused = sasl.server_error().map(str::to_string);
            s
        }
        Auth::User | Auth::Any => {
            let s = command(
                c,
                r,
                &pop3::command("USER", Some(&job.user)),
                Expect::Status,
            )
            .await?;
            if !s.status().ok {
                return Err(c.login_failed(s.status()));
            }
            command(
                c,
                r,
                format!("PASS {password}\r\n").as_bytes(),
                Expect::Status,
            )
            .await?
        }
    };
    let s = s.status();
    if s.ok && !s.continuation {
        Ok(())
    } else {
        if s.continuation {
            let _ = c.send(b"*\r\n").await;
        }
        match refused {
            Some(why) => Err(c.login_failed(s).context(format!("token refused: {why}"))),
            None => Err(c.login_failed(s)),
        }
    }
}

/// One message on the server.
struct Msg {
    n: u32,
    size: u64,
    /// The state key: UIDL, or Message-ID and size, or a header hash and size.
    key: Option<String>,
}

fn fallback_key(message: &[u8], size: u64) -> String {
    match dest::message_id_of(message) {
        Some(id) => format!("{id} {size}"),
        None => {
            let head = &message[..crate::rfc5322::header_end(message).header];
            let h = crate::mda::memory::sha256_hex(head);
            format!("header:{} {size}", &h[..32])
        }
    }
}

/// What is waiting for an answer, in order.
enum Pending {
    Retr(usize),
    Dele,
}

/// Fetches the job's POP3 maildrop.
pub async fn run(
    job: &Job,
    password: &str,
    state: &mut State,
    dest: &mut Destination,
    progress: &Progress,
    verbose: bool,
) -> Result<Summary> {
    let mut sum = Summary::default();
    let mut c = Conn::open(job, verbose).await?;
    let mut r = Reader::new();
    let greeting = next(&mut c, &mut r).await?.status().clone();
    if !greeting.ok || greeting.continuation {
        return Err(c.refused("greeting", &greeting));
    }
    let first = ask_capa(&mut c, &mut r).await?;
    let capa = secure(job, &mut c, &mut r, first).await?;
    login(job, password, &mut c, &mut r, &greeting, &capa).await?;

    let uidl = match command(&mut c, &mut r, &pop3::command("UIDL", None), Expect::Lines).await? {
        Response::Lines(_, lines) => Some(
            pop3::parse_numbered(&lines)
                .map_err(|e| exit::fail(exit::UNAVAILABLE, format!("{}: UIDL: {e}", c.server())))?,
        ),
        _ => None,
    };
    let list = match command(&mut c, &mut r, &pop3::command("LIST", None), Expect::Lines).await? {
        Response::Lines(_, lines) => pop3::parse_numbered(&lines)
            .map_err(|e| exit::fail(exit::UNAVAILABLE, format!("{}: LIST: {e}", c.server())))?,
        Response::Status(s) | Response::Message(s, _) => return Err(c.refused("LIST", &s)),
    };
    let mut msgs: Vec<Msg> = list
        .iter()
        .map(|(n, size)| Msg {
            n: *n,
            size: size.parse().unwrap_or(0),
            key: None,
        })
        .collect();
    match &uidl {
        Some(u) => {
            for m in &mut msgs {
                m.key = u.iter().find(|(n, _)| *n == m.n).map(|(_, k)| k.clone());
            }
            // UIDL is in message-number order; a linear match is enough for the common case.
        }
        None if capa.top || !capa.known => {
            for m in &mut msgs {
                let cmd = format!("TOP {} 0\r\n", m.n);
                if let Response::Message(_, head) =
                    command(&mut c, &mut r, cmd.as_bytes(), Expect::Message(MAX_MESSAGE)).await?
                {
                    m.key = Some(fallback_key(&head, m.size));
                }
            }
        }
        None => {}
    }
    let keyless = msgs.iter().any(|m| m.key.is_none());

    // What to fetch; what was fetched before (and is deleted now with `delete`).
    let mut wanted = Vec::new();
    let mut old = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        match &m.key {
            Some(k) if state.has_pop(k) => old.push(m.n),
            Some(k) => {
                let tag = dest::tag(&job.state_name, &["pop3", k]);
                if dest.already("INBOX", &tag)? {
                    // Delivered by a run killed before it could record it.
                    state.record_pop(
                        k,
                        Record {
                            size: m.size,
                            message_id: None,
                        },
                    )?;
                    sum.found += 1;
                    old.push(m.n);
                } else {
                    wanted.push(i);
                }
            }
            None => wanted.push(i),
        }
    }
    if let Some(limit) = job.limit {
        wanted.truncate(limit);
    }
    progress.start(wanted.len() as u64);

    let window = if capa.pipelining { WINDOW } else { 1 };
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut queue = wanted.iter().copied();
    let mut deleted = 0usize;
    if job.delete {
        for n in &old {
            r.expect(Expect::Status);
            pending.push_back(Pending::Dele);
            c.send(&pop3::command("DELE", Some(&n.to_string()))).await?;
            if pending.len() >= window {
                if let Response::Status(s) = next(&mut c, &mut r).await? {
                    pending.pop_front();
                    deleted += usize::from(s.ok);
                }
            }
        }
    }
    let mut later: Option<String> = None;
    loop {
        let mut batch = Vec::new();
        while pending.len() < window {
            let Some(i) = queue.next() else { break };
            batch.extend_from_slice(&pop3::command("RETR", Some(&msgs[i].n.to_string())));
            r.expect(Expect::Message(MAX_MESSAGE));
            pending.push_back(Pending::Retr(i));
        }
        if !batch.is_empty() {
            c.send(&batch).await?;
        }
        let Some(p) = pending.pop_front() else { break };
        let resp = next(&mut c, &mut r).await?;
        match (p, resp) {
            (Pending::Dele, Response::Status(s)) => deleted += usize::from(s.ok),
            (Pending::Retr(i), Response::Message(_, body)) => {
                let m = &msgs[i];
                let key = m.key.clone().unwrap_or_else(|| fallback_key(&body, m.size));
                if m.key.is_none() && state.has_pop(&key) {
                    progress.inc(m.size);
                    continue;
                }
                let tag = dest::tag(&job.state_name, &["pop3", &key]);
                match dest.deliver("INBOX", &body, &tag).await? {
                    Delivery::Done => {
                        state.record_pop(
                            &key,
                            Record {
                                size: m.size,
                                message_id: dest::message_id_of(&body),
                            },
                        )?;
                        sum.fetched += 1;
                        sum.bytes += body.len() as u64;
                        if job.delete {
                            r.expect(Expect::Status);
                            c.send(&pop3::command("DELE", Some(&m.n.to_string())))
                                .await?;
                            pending.push_back(Pending::Dele);
                        }
                    }
                    Delivery::Later(why) => later = Some(why),
                }
                progress.inc(m.size);
            }
            (Pending::Retr(i), other) => {
                // Gone since LIST (another client deleted it): nothing to do.
                crate::log::line(format!(
                    "{}: message {}: {}",
                    job.name,
                    msgs[i].n,
                    other.status()
                ));
            }
            (Pending::Dele, other) => {
                return Err(exit::fail(
                    exit::UNAVAILABLE,
                    format!(
                        "{}: unexpected answer to DELE: {}",
                        c.server(),
                        other.status()
                    ),
                ))
            }
        }
    }
    sum.deleted = deleted;
    let quit = command(&mut c, &mut r, &pop3::command("QUIT", None), Expect::Status).await;
    c.close().await;
    let committed = matches!(&quit, Ok(q) if q.status().ok);
    if !keyless {
        // What was deleted now is forgotten at the next run, when the server no longer lists it.
        let on_server: HashSet<String> = msgs.iter().filter_map(|m| m.key.clone()).collect();
        state.finish_pop(&on_server)?;
    } else {
        state.finish()?;
    }
    if job.delete && deleted > 0 && !committed {
        return Err(exit::fail(
            exit::TEMPFAIL,
            format!(
                "{}: QUIT failed, so the server did not delete what was fetched; the next run will",
                job.name
            ),
        ));
    }
    if let Some(why) = later {
        sum.later = Some(why);
    }
    Ok(sum)
}
