//! Runs a [`Session`] over a [`Connection`] from the server layer: reads lines, carries out
//! the session's events (login, maildrop, RETR/TOP streaming, STLS, UPDATE) and batches replies
//! for pipelining clients (RFC 2449 §6.6: replies are flushed when no more input is buffered).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::encode::Encoder;
use super::maildrop::{Maildrop, OpenError, READ_CHUNK};
use super::session::{Event, LoginFailure, Policy, Session};
use super::Pop3Config;
use crate::server::pace::ProgressDeadline;
use crate::server::{log, Connection, Line};

/// Output is sent once this much is buffered, even while more commands are pending, so a
/// pipelined `RETR` of every message does not buffer the whole maildrop.
pub const FLUSH_AT: usize = 256 * 1024;

/// What a successful login yields: the canonical user name and the Maildir to open.
#[derive(Debug, Clone)]
pub struct Account {
    /// The user name as the user database knows it.
    pub user: String,
    /// The user's Maildir.
    pub maildir: std::path::PathBuf,
}

/// The verdict of a credential check.
#[derive(Debug)]
pub enum Verdict {
    /// The credentials are right.
    Ok(Account),
    /// Wrong user or password (the client is told only `[AUTH]`).
    Bad,
    /// The check itself failed (database unreadable, checkpassword crashed): `[SYS/TEMP]`.
    Temporary(String),
}

/// Checks logins for the driver. [`super::login::Backend`] implements it over
/// [`crate::auth`]; a trait so the driver does not depend on the backend.
pub trait LoginCheck: Send + Sync + 'static {
    /// Checks `login` from `peer`; applies the failed-login delay before returning `Bad`.
    fn check(
        &self,
        login: &super::session::Login,
        peer: Option<IpAddr>,
    ) -> impl std::future::Future<Output = Verdict> + Send;

    /// Whether APOP can succeed for anyone (some user has a plaintext-capable password).
    fn apop_available(&self) -> bool;
}

/// Everything a session needs besides its connection.
pub struct Context<A> {
    /// The `[mpopd]` section.
    pub config: Pop3Config,
    /// Host name for the APOP timestamp.
    pub hostname: String,
    /// The login checker.
    pub auth: A,
}

/// Runs one POP3 session to its end. I/O errors (client gone, timeout) end it quietly: a
/// dropped connection never reaches UPDATE, so nothing is deleted (RFC 1939 §6).
pub async fn run<A: LoginCheck>(conn: &mut Connection, ctx: Arc<Context<A>>) -> io::Result<()> {
    let peer = conn.peer().map(|a| a.ip());
    let policy = Policy {
        tls_available: conn.can_starttls(),
        tls_active: conn.is_tls(),
        plaintext_allowed: ctx.config.allow_plaintext_auth.allows(peer),
        apop: ctx.config.apop && ctx.auth.apop_available(),
        max_errors: ctx.config.max_errors.max(1),
        max_auth_failures: ctx.config.max_auth_failures.max(1),
    };
    let timestamp = apop_timestamp(&ctx.hostname);
    let (mut session, greeting) = Session::new(policy, &timestamp);
    let mut out = greeting;
    let mut maildrop: Option<Maildrop> = None;
    // One read buffer for every RETR/TOP of the session.
    let mut buf = vec![0u8; READ_CHUNK];
    let shutdown = conn.shutdown_signal();
    tokio::pin!(shutdown);
    // Logins and messages sent are progress; NOOP, STAT and the like do not move the deadline.
    let mut deadline = ProgressDeadline::new(
        Duration::from_secs(ctx.config.session_deadline_secs.max(1)),
        Instant::now(),
    );
    let mut progress: u64 = 0;
    loop {
        if !conn.has_buffered_input() || out.len() >= FLUSH_AT {
            conn.write_all(&out).await?;
            out.clear();
        }
        deadline.update(progress, Instant::now());
        let left = deadline.remaining(Instant::now());
        let line = tokio::select! {
            _ = tokio::time::sleep(left) => {
                log::line(format_args!("session deadline exceeded peer={}", show(peer)));
                out.extend_from_slice(b"-ERR Session deadline exceeded, disconnecting.\r\n");
                conn.write_all(&out).await?;
                return conn.close().await;
            }
            line = conn.read_line(session.line_limit()) => match line {
                Ok(l) => l,
                // RFC 1939 §3: the autologout timer; say why before hanging up.
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    let _ = conn.write_all(b"-ERR Disconnected for inactivity.\r\n").await;
                    return Ok(());
                }
                Err(e) => return Err(e),
            },
            _ = &mut shutdown => {
                out.extend_from_slice(b"-ERR [SYS/TEMP] Server shutting down.\r\n");
                conn.write_all(&out).await?;
                return conn.close().await;
            }
        };
        let events = match line {
            Line::Complete { text, .. } => session.handle_line(&text),
            Line::TooLong => session.line_too_long(),
            Line::Eof => return Ok(()),
        };
        let mut queue: VecDeque<Event> = events.into();
        while let Some(ev) = queue.pop_front() {
            match ev {
                Event::Reply(bytes) => out.extend_from_slice(&bytes),
                Event::Authenticate(login) => {
                    conn.write_all(&out).await?;
                    out.clear();
                    let next = match ctx.auth.check(&login, peer).await {
                        Verdict::Ok(account) => match open_maildrop(&account, &ctx.config).await {
                            Ok(mut m) => {
                                let infos = m.take_infos();
                                log::line(format_args!(
                                    "login user={} peer={} messages={}",
                                    log::sanitize(&account.user),
                                    show(peer),
                                    infos.len()
                                ));
                                let ev = session.login_done(&account.user, infos);
                                progress += 1;
                                maildrop = Some(m);
                                ev
                            }
                            Err(OpenError::InUse) => session.login_failed(LoginFailure::InUse),
                            Err(OpenError::Io(e)) => {
                                log::line(format_args!(
                                    "maildrop {}: {e}",
                                    account.maildir.display()
                                ));
                                session.login_failed(LoginFailure::Temporary)
                            }
                        },
                        Verdict::Bad => {
                            log::line(format_args!(
                                "failed login user={} peer={}",
                                log::sanitize(&login.user),
                                show(peer)
                            ));
                            session.login_failed(LoginFailure::BadCredentials)
                        }
                        Verdict::Temporary(why) => {
                            log::line(format_args!("auth: {}", log::sanitize(&why)));
                            session.login_failed(LoginFailure::Temporary)
                        }
                    };
                    queue.extend(next);
                }
                Event::Send { index, top, ok } => {
                    let file = match &maildrop {
                        Some(m) => m.open_message(index),
                        None => Err(io::Error::other("no maildrop")),
                    };
                    match file {
                        Ok(f) => {
                            out.extend_from_slice(&ok);
                            let enc = match top {
                                Some(n) => Encoder::top(u64::from(n)),
                                None => Encoder::retr(),
                            };
                            // The +OK is out: a read error now can only end the session
                            // (the client sees no terminator and retries the message).
                            send_message(conn, f, enc, &mut buf, &mut out).await?;
                            progress += 1;
                        }
                        Err(e) => {
                            log::line(format_args!("message {}: {e}", index + 1));
                            out.extend_from_slice(&session.send_failed());
                        }
                    }
                }
                Event::StartTls => {
                    conn.write_all(&out).await?;
                    out.clear();
                    conn.starttls().await?;
                    session.tls_started();
                }
                Event::Update(indices) => {
                    let ok = match maildrop.as_ref() {
                        Some(m) => match m.delete(&indices) {
                            Ok(()) => true,
                            Err(e) => {
                                log::line(format_args!("delete: {e}"));
                                false
                            }
                        },
                        None => false,
                    };
                    queue.extend(session.update_done(ok));
                }
                Event::Close => {
                    conn.write_all(&out).await?;
                    return conn.close().await;
                }
            }
        }
    }
}

/// Opens (locks, scans) a maildrop off the async threads: scanning reads every file whose
/// name lacks a `,W=` size.
async fn open_maildrop(account: &Account, config: &Pop3Config) -> Result<Maildrop, OpenError> {
    let path = account.maildir.clone();
    let links = crate::maildir::Links::allowing(config.allow_symlinked_maildir);
    match tokio::task::spawn_blocking(move || Maildrop::open_with(&path, links)).await {
        Ok(r) => r,
        Err(e) => Err(OpenError::Io(io::Error::other(e.to_string()))),
    }
}

/// Streams one message through `enc` into `out`, sending whenever [`FLUSH_AT`] is reached.
/// Local file reads are short; they run inline rather than paying a thread hop per chunk.
async fn send_message(
    conn: &mut Connection,
    mut file: std::fs::File,
    mut enc: Encoder,
    buf: &mut [u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    while !enc.is_done() {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        enc.push(&buf[..n], out);
        if out.len() >= FLUSH_AT {
            conn.write_all(out).await?;
            out.clear();
        }
    }
    enc.finish(out);
    Ok(())
}

/// The APOP timestamp `<pid.nanos@host>` (RFC 1939 §7: unique per greeting).
fn apop_timestamp(host: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let r: u32 = rand::random();
    format!("<{}.{nanos}.{r:08x}@{host}>", std::process::id())
}

fn show(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "local".to_string(), |ip| ip.to_string())
}
