//! Runs an IMAP [`Session`] over a [`Connection`] from the server layer, as
//! [`crate::pop3::driver`] runs POP3's: feeds it the bytes read, carries out the events it
//! polls (the password check through the one auth check, STARTTLS, the mailbox commands on
//! the user's Maildir++ store, APPEND's streamed message, IDLE) and writes its responses,
//! batched while pipelined commands are waiting. The idle timeout, the session deadline and
//! server shutdown end a session through its hooks (`* BYE`), waited for and said by the
//! server layer's [`Watch`] as in every driver; while the session idles (RFC 2177) the same
//! wait also wakes for the mailbox's changes ([`Watch::wait_or`]).
//!
//! Logins: `user` or `user@domain` (any served domain, any case), checked by
//! [`crate::auth::Authenticator`] with its per-address and per-user throttle. A *system user*
//! (README "Privileges": a passwd-file uid other than the one mimapd runs as) is not served
//! yet: mpopd's per-session child is not built for IMAP, and serving the user's Maildir as
//! another user would create files with the wrong owner, so such a login gets
//! `NO [UNAVAILABLE]` and a log line.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::response;
use super::selected::{Reply, Store};
use super::session::{is_folder_command, After, Event, LoginFailure, Policy, Session};
use super::ImapConfig;
use crate::auth::{throttle_ip, Account, AuthResult, Authenticator};
use crate::log;
use crate::maildir::watch::Watch as MailboxWatch;
use crate::server::goodbye::{Wait, Watch, Woke};
use crate::server::Connection;

/// Output is written once this much is buffered, even while more commands are pending.
pub const FLUSH_AT: usize = 256 * 1024;
/// Bytes read at a time.
pub const READ_CHUNK: usize = 64 * 1024;

/// Everything a session needs besides its connection.
pub struct Context {
    /// The `[mimapd]` section.
    pub config: ImapConfig,
    /// The one password check.
    pub auth: Arc<Authenticator>,
}

/// The policy of a session on `conn`.
pub fn policy(conn: &Connection, config: &ImapConfig) -> Policy {
    let peer = conn.peer().map(|a| a.ip());
    Policy {
        tls_available: conn.can_starttls(),
        tls_active: conn.is_tls(),
        plaintext_allowed: config.allow_plaintext_auth.allows(peer),
        limits: config.limits(),
        max_errors: config.max_errors.max(1),
        max_auth_failures: config.max_auth_failures.max(1),
        mailbox_capabilities: vec!["UIDPLUS", "MOVE"],
    }
}

/// Runs one IMAP session to its end. I/O errors (client gone, timeout) end it quietly.
pub async fn run(conn: &mut Connection, ctx: Arc<Context>) -> io::Result<()> {
    let mut session = Session::new(policy(conn, &ctx.config));
    session.greeting();
    let span = Duration::from_secs(ctx.config.session_deadline_secs.max(1));
    let peer = conn.peer().map(|a| a.ip());
    let mut out = Vec::new();
    let mut watch = Watch::new(conn, span);
    let mut account: Option<Account> = None;
    let mut store: Option<Store> = None;
    let mut idle_watch: Option<MailboxWatch> = None;
    loop {
        let ev = session.poll();
        out.extend_from_slice(&session.take_output());
        if out.len() >= FLUSH_AT {
            conn.write_all(&out).await?;
            out.clear();
        }
        match ev {
            Event::NeedInput => {
                conn.write_all(&out).await?;
                out.clear();
                let waiting_for = if session.idling() {
                    "DONE"
                } else {
                    "a command"
                };
                let wait = Wait {
                    waiting_for,
                    ..Wait::command(READ_CHUNK)
                };
                let woke = match idle_watch.as_mut() {
                    // RFC 2177: while idling, the folder's changes wake the wait too.
                    Some(w) if session.idling() => {
                        let mut failed = None;
                        let changed = async {
                            if let Err(e) = w.changed().await {
                                failed = Some(e);
                            }
                        };
                        let woke = watch.wait_or(conn, &mut session, wait, changed).await?;
                        if let Some(e) = failed {
                            log::line(format_args!("mailbox watch: {e}"));
                            idle_watch = None;
                        }
                        woke
                    }
                    _ => watch.wait(conn, &mut session, wait).await?,
                };
                match woke {
                    Woke::Eof => return Ok(()),
                    Woke::Event => {
                        if let Some(s) = store.as_mut() {
                            session.push_output(&s.pending());
                        }
                    }
                    _ => {}
                }
            }
            Event::Pending => return Err(io::Error::other("session waits for an answer")),
            Event::Authenticate(login) => {
                conn.write_all(&out).await?;
                out.clear();
                match check(&ctx, &login.user, &login.password, peer).await {
                    Ok(a) => {
                        log::line(format_args!(
                            "login user={} peer={}",
                            log::sanitize(&a.user),
                            show(peer)
                        ));
                        session.login_done(&a.user);
                        store = Some(Store::new(a.maildir.clone()));
                        account = Some(a);
                    }
                    Err(why) => session.login_failed(why),
                }
            }
            Event::StartTls => {
                conn.write_all(&out).await?;
                out.clear();
                conn.starttls().await?;
                session.tls_started();
            }
            Event::Command { tag, body, .. } => {
                let _ = &account;
                let (reply, after) = match store.as_mut() {
                    // The folder commands come with src/imap/folders.rs (issue 13).
                    _ if is_folder_command(&body) => (unavailable(&tag), After::Same),
                    // The selected state (src/imap/selected.rs).
                    Some(s) => match s.command(&tag, body) {
                        Reply::Done(reply, after) => (reply, after),
                        // Written as it goes: a FETCH of many messages is not held whole.
                        Reply::Fetching(mut job) => loop {
                            if let Some(done) = s.fetch_more(&mut job, &mut out, FLUSH_AT) {
                                break done;
                            }
                            conn.write_all(&out).await?;
                            out.clear();
                        },
                    },
                    None => (unavailable(&tag), After::Same),
                };
                session.command_done(&reply, after);
            }
            Event::AppendBegin { tag, .. } => session.append_refused(&unavailable(&tag)),
            Event::AppendData(_) | Event::AppendAbort => {}
            Event::Idle { .. } => {
                // The watch first, then the changes so far: none falls in between.
                idle_watch = match store.as_ref().and_then(Store::watch) {
                    Some(Ok(w)) => Some(w),
                    Some(Err(e)) => {
                        log::line(format_args!("mailbox watch: {e}"));
                        None
                    }
                    None => None,
                };
                if let Some(s) = store.as_mut() {
                    session.push_output(&s.pending());
                }
            }
            Event::AppendFinish { tag } => {
                session.command_done(&response::no(&tag, "APPEND failed."), After::Same);
            }
            Event::IdleDone { .. } => {
                idle_watch = None;
                let last = store.as_mut().map(Store::pending).unwrap_or_default();
                session.command_done(&last, After::Same);
            }
            Event::Close => {
                // Queued, not written: close gives the slot back before the last reply.
                conn.queue(&out);
                return conn.close().await;
            }
        }
    }
}

/// Checks a login with the one auth check; an unknown peer (inetd on a pipe) is throttled
/// as loopback. A system user is refused for now (module doc).
async fn check(
    ctx: &Context,
    user: &str,
    password: &[u8],
    peer: Option<IpAddr>,
) -> Result<Account, LoginFailure> {
    match ctx
        .auth
        .check_async(user, password, throttle_ip(peer))
        .await
    {
        AuthResult::Ok(u) => {
            if u.uid.is_some_and(|uid| uid != crate::os::euid()) {
                log::line(format_args!(
                    "login user={}: system users are not served by mimapd yet",
                    log::sanitize(&u.name)
                ));
                return Err(LoginFailure::Temporary);
            }
            match ctx.auth.account(&u) {
                Ok(account) => Ok(account),
                Err(e) => {
                    log::line(format_args!("mailbox of {}: {e:#}", log::sanitize(&u.name)));
                    Err(LoginFailure::Temporary)
                }
            }
        }
        AuthResult::Failed | AuthResult::Throttled(_) => {
            log::line(format_args!(
                "failed login user={} peer={}",
                log::sanitize(user),
                show(peer)
            ));
            Err(LoginFailure::BadCredentials)
        }
        AuthResult::TempFail(why) => {
            log::line(format_args!("auth: {}", log::sanitize(&why)));
            Err(LoginFailure::Temporary)
        }
    }
}

/// `NO [UNAVAILABLE]` for what is not served yet.
fn unavailable(tag: &str) -> Vec<u8> {
    response::status(
        Some(tag),
        response::Kind::No,
        Some(response::other_code("UNAVAILABLE")),
        "Mailbox access is not built yet.",
    )
}

fn show(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "local".to_string(), |ip| ip.to_string())
}
