//! Runs a [`Session`] over a [`Connection`] from the server layer, as [`crate::smtp::driver`]
//! runs SMTP's: feeds it the bytes read, carries out the events it polls (login, maildrop,
//! RETR/TOP streaming, STLS, UPDATE) and batches replies for pipelining clients (RFC 2449 §6.6:
//! replies are flushed when every complete line read is answered). The idle timeout, the
//! session deadline and server shutdown end a session through its hooks
//! ([`crate::session::SessionHooks`]: the same hooks that make an SMTP session say
//! `421 4.3.2`), waited for and said by the server layer's [`Watch`] as in every driver.
//!
//! A login of a *system user* (README "Privileges": a passwd-file entry with its own uid/gid,
//! when the daemon runs a spawner) is not served by the daemon, as Dovecot's pop3 processes
//! run as the user: the daemon asks the spawner ([`crate::server::spawn`]) for a [`POP3_CHILD`]
//! child of that user, on one end of a socketpair. The child ([`run_child`], running as the
//! user with a clean environment) opens the maildrop at the path of the spawner's own lookup,
//! takes the lock and writes the login's reply itself (`+OK`, or the same `-ERR [IN-USE]` /
//! `[SYS/TEMP]` the daemon would send, which the daemon then sends from its own session), then
//! runs TRANSACTION and UPDATE with this same loop. The daemon relays plaintext lines (framed
//! by its session, [`Relaying`]) to the child and its replies to the client through the server
//! layer's [`relay::relay`] (TLS stays in the daemon, as for mimapd's children) and keeps
//! enforcing the idle timeout, the session deadline (RETR and TOP count as progress) and the
//! shutdown `-ERR`; closing the socket ends the child without UPDATE, as a dropped connection.

use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use super::command::{self, Command};
use super::encode::Encoder;
use super::maildrop::{Maildrop, OpenError, READ_CHUNK};
use super::session::{Event, LoginFailure, Policy, Session};
use super::Pop3Config;
use crate::auth::Account;
use crate::lines::{Framed, Line};
use crate::log;
use crate::server::goodbye::{Wait, Watch, Woke};
use crate::server::spawn::{self, Spawner};
use crate::server::{relay, Connection};
use crate::session::SessionHooks as _;

/// Output is sent once this much is buffered, even while more commands are pending, so a
/// pipelined `RETR` of every message does not buffer the whole maildrop.
pub const FLUSH_AT: usize = 256 * 1024;
/// The spawner child kind that serves one system user's session (module doc).
pub const POP3_CHILD: &str = "pop3";
/// A child's own idle timeout and deadline: far beyond the daemon's, which enforces the real
/// ones on the client connection and closes the child's socket when they run out.
const CHILD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

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
    let mut session = Session::new(policy, &timestamp);
    session.greeting();
    let span = Duration::from_secs(ctx.config.session_deadline_secs.max(1));
    serve(conn, &ctx, session, None, span).await
}

/// The command loop of a session, from `session` in whatever state it is (AUTHORIZATION in the
/// daemon, TRANSACTION in a system user's child with its `maildrop`), its output sent first.
/// Shutdown, the idle timeout and the session deadline end it through the session's hooks,
/// said by the server layer's [`Watch`] as for every protocol.
async fn serve<A: LoginCheck>(
    conn: &mut Connection,
    ctx: &Context<A>,
    mut session: Session,
    mut maildrop: Option<Maildrop>,
    span: Duration,
) -> io::Result<()> {
    let peer = conn.peer().map(|a| a.ip());
    // One read buffer for every RETR/TOP of the session.
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out = Vec::new();
    // Logins and messages sent are progress; NOOP, STAT and the like do not move the deadline.
    let mut watch = Watch::new(conn, span);
    loop {
        let ev = session.poll();
        out.extend_from_slice(&session.take_output());
        if out.len() >= FLUSH_AT {
            conn.write_all(&out).await?;
            out.clear();
        }
        match ev {
            Event::NeedInput => {
                // Every complete line buffered is answered: flush (RFC 2449 §6.6 batching).
                conn.write_all(&out).await?;
                out.clear();
                // RFC 1939 §3: the autologout timer says why before hanging up; so do the
                // deadline and shutdown. End of input: the connection is dropped, nothing is
                // deleted.
                if watch
                    .wait(conn, &mut session, Wait::command(READ_CHUNK))
                    .await?
                    == Woke::Eof
                {
                    return Ok(());
                }
            }
            Event::Pending => return Err(io::Error::other("session waits for an answer")),
            Event::Reply(bytes) => out.extend_from_slice(&bytes),
            Event::Authenticate(login) => {
                conn.write_all(&out).await?;
                out.clear();
                match ctx.auth.check(&login, peer).await {
                    Verdict::Ok(account) => match crate::server::spawn::for_user(&account.user) {
                        // A system user: its own process serves the rest of the session.
                        Some(spawner) => match login_in_child(spawner, &account, peer).await {
                            Ok((child, first)) => {
                                let progress = session.progress() + 1;
                                let mut relaying = Relaying { session, progress };
                                return relay::relay(
                                    conn,
                                    child,
                                    &first,
                                    &mut relaying,
                                    watch,
                                    "a command",
                                )
                                .await;
                            }
                            Err(why) => session.login_failed(why),
                        },
                        None => match open_maildrop(&account, &ctx.config).await {
                            Ok(mut m) => {
                                let infos = m.take_infos();
                                log::line(format_args!(
                                    "login user={} peer={} messages={}",
                                    log::sanitize(&account.user),
                                    show(peer),
                                    infos.len()
                                ));
                                session.login_done(&account.user, infos);
                                maildrop = Some(m);
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
                }
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
                session.update_done(ok);
            }
            Event::Close => {
                // Queued, not written: close gives the connection slot back before the
                // last reply goes out, so a client that reconnects at once finds it free.
                conn.queue(&out);
                return conn.close().await;
            }
        }
    }
}

/// Asks the spawner for `account`'s [`POP3_CHILD`] and reads the child's first reply (the
/// login's). `+OK`: the child's socket and that reply (with anything after it) to send on; else
/// the failure the daemon's session answers with (the same text the child wrote).
async fn login_in_child(
    spawner: &Spawner,
    account: &Account,
    peer: Option<IpAddr>,
) -> Result<(tokio::net::UnixStream, Vec<u8>), LoginFailure> {
    let fail = |what: &str, e: io::Error| {
        log::line(format_args!(
            "pop3 child for {}: {what}: {e}",
            log::sanitize(&account.user)
        ));
        LoginFailure::Temporary
    };
    let mut child = spawn::session_child(spawner, POP3_CHILD, &account.user, &[&show(peer)])
        .map_err(|e| fail("asking the spawner", e))?;
    // Opening a big maildrop takes a while (the in-process open has no limit either).
    let mut first = Vec::new();
    let mut buf = [0u8; 512];
    while !first.contains(&b'\n') && first.len() < command::MAX_SASL_LINE {
        match child.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => first.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail("reading its reply", e)),
        }
    }
    if first.starts_with(b"+OK") {
        Ok((child, first))
    } else if first.starts_with(b"-ERR [IN-USE]") {
        Err(LoginFailure::InUse)
    } else {
        // The child logged why (or the spawner refused: logged with its exit above).
        Err(LoginFailure::Temporary)
    }
}

/// The daemon's side of a system user's session relayed to its child (module doc,
/// [`relay::relay`]): the daemon's `session` frames the client's lines (those it holds already
/// came pipelined after the login) and says the goodbyes; RETR and TOP commands are the
/// progress. Lines too long for the daemon reach the child as a line too long for POP3, so its
/// reply and error count are the in-process ones.
struct Relaying {
    session: Session,
    progress: u64,
}

impl relay::Relayed for Relaying {
    type Session = Session;

    fn feed(&mut self, bytes: &[u8]) {
        self.session.feed(bytes);
    }

    fn progress(&self) -> u64 {
        self.progress
    }

    fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    fn for_child(&mut self, to_child: &mut Vec<u8>) -> bool {
        while let Some(framed) = self.session.next_line() {
            let text = match framed {
                Framed::Line(Line::Complete { text, .. }) => text,
                // Too long for POP3 anywhere (RFC 2449 §4): the child answers it.
                Framed::Line(Line::TooLong) => vec![b'X'; command::MAX_COMMAND_LINE],
                Framed::Line(Line::Eof) => continue,
                Framed::NoLineEnd => return false,
            };
            if matches!(
                command::parse(&text),
                Ok(Command::Retr(_) | Command::Top(..))
            ) {
                self.progress += 1;
            }
            to_child.extend_from_slice(&text);
            to_child.extend_from_slice(b"\r\n");
        }
        true
    }

    fn take_goodbye(&mut self) -> Vec<u8> {
        self.session.take_output()
    }
}

/// Sends what the session queued to say (its goodbye) and closes.
async fn say_goodbye(conn: &mut Connection, session: &mut Session) -> io::Result<()> {
    conn.write_all(&session.take_output()).await?;
    conn.close().await
}

/// A child never checks a login (it starts logged in); [`serve`] needs a checker anyway.
struct NoLogins;

impl LoginCheck for NoLogins {
    async fn check(&self, _: &super::session::Login, _: Option<IpAddr>) -> Verdict {
        Verdict::Temporary("no logins in a user's child".into())
    }

    fn apop_available(&self) -> bool {
        false
    }
}

/// `mpopd __child pop3 USER MAILDIR PEER` (running as USER, spawned for the daemon): opens and
/// locks the maildrop at MAILDIR (from the spawner's lookup), writes the login's reply on
/// `conn` (the daemon's socket) and serves TRANSACTION and UPDATE until QUIT or until the
/// daemon closes the socket (then nothing is deleted). PEER is the client, for the log.
pub async fn run_child(
    conn: &mut Connection,
    user: &str,
    maildir: &std::path::Path,
    peer: &str,
    config: Pop3Config,
) -> io::Result<()> {
    conn.set_idle_timeout(CHILD_TIMEOUT);
    let policy = Policy {
        tls_available: false,
        tls_active: true,
        plaintext_allowed: false,
        apop: false,
        max_errors: config.max_errors.max(1),
        max_auth_failures: config.max_auth_failures.max(1),
    };
    let mut session = Session::new(policy, "");
    let account = Account {
        user: user.to_string(),
        maildir: maildir.to_path_buf(),
    };
    let failed = match open_maildrop(&account, &config).await {
        Ok(mut m) => {
            let infos = m.take_infos();
            log::line(format_args!(
                "login user={} peer={} messages={} uid={}",
                log::sanitize(user),
                log::sanitize(peer),
                infos.len(),
                crate::os::euid()
            ));
            session.login_done(user, infos);
            let ctx = Context {
                config,
                hostname: String::new(),
                auth: NoLogins,
            };
            return serve(conn, &ctx, session, Some(m), CHILD_TIMEOUT).await;
        }
        Err(OpenError::InUse) => LoginFailure::InUse,
        Err(OpenError::Io(e)) => {
            log::line(format_args!("maildrop {}: {e}", maildir.display()));
            LoginFailure::Temporary
        }
    };
    session.login_failed(failed);
    // Only the failure's reply: the session's output holds nothing else yet.
    let _ = session.poll();
    say_goodbye(conn, &mut session).await
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
    let nanos = crate::clock::since_epoch().as_nanos();
    let r: u32 = rand::random();
    format!("<{}.{nanos}.{r:08x}@{host}>", std::process::id())
}

fn show(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "local".to_string(), |ip| ip.to_string())
}
