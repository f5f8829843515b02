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
//! (README "Privileges": a passwd-file entry with its own uid/gid, when the daemon runs a
//! spawner) is served by a process of its own, as Dovecot's imap processes run as the user and
//! as mpopd does: once the daemon's session has checked the login, the daemon asks the spawner
//! ([`crate::server::spawn::session_child`]) for an [`IMAP_CHILD`] of that user with the
//! login's tag. The child ([`run_child`], running as the user with a clean environment, the
//! Maildir of the spawner's own lookup) starts in the authenticated state
//! ([`Session::authenticated`]), writes the login's tagged `OK [CAPABILITY ...]` itself and
//! runs the rest of the session with this same loop ([`serve`]), so every command runs there
//! as it runs in process. The daemon relays the plaintext both ways through the server
//! layer's [`relay::relay`] (TLS stays in the daemon; the child's output goes out as it comes,
//! so IDLE's untagged responses are not held back) and keeps the idle timeout, the session
//! deadline (counted by [`super::relay::Commands`]) and the shutdown `* BYE`. LOGOUT ends the
//! child and with it the relay; a client gone closes the child's socket, which ends it. A
//! child that cannot start or serve gets the login `NO [UNAVAILABLE]` from the daemon. A
//! system user with no spawner to serve it (mimapd not started as root) is refused the same
//! way: serving the user's Maildir as another user would create files with the wrong owner.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use imap_codec::imap_types::command::CommandBody;

use super::folders::{self, Append};
use super::response;
use super::selected::{Reply, Store};
use super::session::{is_folder_command, After, Event, LoginFailure, Policy, Session};
use super::ImapConfig;
use crate::auth::{throttle_ip, Account, AuthResult, Authenticator};
use crate::log;
use crate::maildir::watch::Watch as MailboxWatch;
use crate::maildir::{Links, Maildir};
use crate::server::goodbye::{Wait, Watch, Woke};
use crate::server::spawn::{self, Spawner};
use crate::server::{relay, Connection};
use crate::session::SessionHooks as _;

/// Output is written once this much is buffered, even while more commands are pending.
pub const FLUSH_AT: usize = 256 * 1024;
/// Bytes read at a time.
pub const READ_CHUNK: usize = 64 * 1024;
/// The spawner child kind that serves one system user's session (module doc).
pub const IMAP_CHILD: &str = "imap";
/// A child's own idle timeout and deadline: far beyond the daemon's, which enforces the real
/// ones on the client connection and closes the child's socket when they run out.
const CHILD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The longest first line (the login's tagged OK with its capabilities) read from a child.
const MAX_CHILD_FIRST_LINE: usize = 16 * 1024;

/// Everything a session needs besides its connection.
pub struct Context {
    /// The `[mimapd]` section.
    pub config: ImapConfig,
    /// The one password check (`None` in a system user's child, which never checks one).
    pub auth: Option<Arc<Authenticator>>,
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
        // RFC 6154 §5: LIST shows the folders' special-use attributes (imap::folders).
        mailbox_capabilities: vec!["UIDPLUS", "MOVE", "SPECIAL-USE"],
    }
}

/// Runs one IMAP session to its end. I/O errors (client gone, timeout) end it quietly.
pub async fn run(conn: &mut Connection, ctx: Arc<Context>) -> io::Result<()> {
    let mut session = Session::new(policy(conn, &ctx.config));
    session.greeting();
    let span = Duration::from_secs(ctx.config.session_deadline_secs.max(1));
    serve(conn, &ctx, session, None, span).await
}

/// The command loop of a session, from `session` in whatever state it is (not authenticated
/// in the daemon, authenticated as `account` in a system user's child), its output sent first.
async fn serve(
    conn: &mut Connection,
    ctx: &Context,
    mut session: Session,
    mut account: Option<Account>,
    span: Duration,
) -> io::Result<()> {
    let peer = conn.peer().map(|a| a.ip());
    let mut out = Vec::new();
    let mut watch = Watch::new(conn, span);
    // The user's Maildir++, opened at login (in a system user's child: now): the folder
    // commands and APPEND (imap::folders) work on `root`, the selected state on `store`.
    let mut root: Option<Maildir> = match account.as_ref() {
        Some(a) => open_store(ctx, a).await,
        None => None,
    };
    let mut store: Option<Store> = root.clone().map(Store::new);
    let mut idle_watch: Option<MailboxWatch> = None;
    let mut append: Option<Append> = None;
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
                match check(ctx, &login.user, &login.password, peer).await {
                    Ok(a) if spawn::for_user(&a.user).is_some() => {
                        // A system user: its own process serves the rest of the session.
                        let tag = session.answering().unwrap_or_default().to_string();
                        match login_in_child(&a, &tag, peer).await {
                            Ok((child, first)) => {
                                let mut relaying = Relaying {
                                    base: session.progress() + 1,
                                    commands: super::relay::Commands::new(),
                                    pending: Vec::new(),
                                    session,
                                };
                                let unframed = relaying.session.take_unframed();
                                relay::Relayed::feed(&mut relaying, &unframed);
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
                        }
                    }
                    Ok(a) => {
                        log::line(format_args!(
                            "login user={} peer={}",
                            log::sanitize(&a.user),
                            show(peer)
                        ));
                        root = open_store(ctx, &a).await;
                        store = root.clone().map(Store::new);
                        session.login_done(&a.user);
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
                if let Some(reply) = mailbox_level(&root, &tag, &body).await {
                    // Then what it changed in the selected mailbox (RFC 3501 §7.3.1 EXISTS).
                    let mut out = store.as_mut().map(Store::pending).unwrap_or_default();
                    out.extend_from_slice(&reply);
                    session.command_done(&out, After::Same);
                    continue;
                }
                let (reply, after) = match store.as_mut() {
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
            Event::AppendBegin {
                tag,
                mailbox,
                flags,
                date,
                ..
            } => {
                let t = tag.clone();
                let begun = blocking(root.clone(), move |st| {
                    Append::begin(st, &t, &mailbox, &flags, date.as_ref())
                })
                .await;
                match begun {
                    Some(Ok(a)) => {
                        append = Some(a);
                        session.append_ready();
                    }
                    Some(Err(reply)) => session.append_refused(&reply),
                    None => session.append_refused(&unavailable(&tag)),
                }
            }
            // Local file writes are short; they run inline (as mpopd's reads do).
            Event::AppendData(data) => {
                if let Some(a) = append.as_mut() {
                    a.write(&data);
                }
            }
            Event::AppendAbort => append = None,
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
                let reply = match append.take() {
                    Some(a) => {
                        let t = tag.clone();
                        tokio::task::spawn_blocking(move || a.finish(&t))
                            .await
                            .unwrap_or_else(|_| response::no(&tag, "APPEND failed."))
                    }
                    None => response::no(&tag, "APPEND failed."),
                };
                let mut out = store.as_mut().map(Store::pending).unwrap_or_default();
                out.extend_from_slice(&reply);
                session.command_done(&out, After::Same);
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

/// The user's store, opened (and made, with the SPECIAL-USE folders on a first login) off the
/// async threads; None (logged) when it cannot be opened.
async fn open_store(ctx: &Context, account: &Account) -> Option<Maildir> {
    let path = account.maildir.clone();
    let links = Links::allowing(ctx.config.allow_symlinked_maildir);
    let opened = tokio::task::spawn_blocking(move || folders::open_store(&path, links)).await;
    match opened {
        Ok(Ok(md)) => Some(md),
        Ok(Err(e)) => {
            log::line(format_args!(
                "mailbox of {}: {e}",
                log::sanitize(&account.user)
            ));
            None
        }
        Err(e) => {
            log::line(format_args!(
                "mailbox of {}: {e}",
                log::sanitize(&account.user)
            ));
            None
        }
    }
}

/// The answer to a mailbox-level command ([`folders::answer`], off the async threads); None
/// for the other commands. Without a store: `NO [UNAVAILABLE]`.
async fn mailbox_level(
    store: &Option<Maildir>,
    tag: &str,
    body: &CommandBody<'static>,
) -> Option<Vec<u8>> {
    if !is_folder_command(body) {
        return None;
    }
    let (t, b) = (tag.to_string(), body.clone());
    let reply = blocking(store.clone(), move |st| folders::answer(st, &t, &b)).await;
    Some(reply.flatten().unwrap_or_else(|| unavailable(tag)))
}

/// Runs `f` on the store off the async threads; None without a store (or when `f` panicked).
async fn blocking<T: Send + 'static>(
    store: Option<Maildir>,
    f: impl FnOnce(&Maildir) -> T + Send + 'static,
) -> Option<T> {
    let store = store?;
    tokio::task::spawn_blocking(move || f(&store)).await.ok()
}

/// Checks a login with the one auth check; an unknown peer (inetd on a pipe) is throttled
/// as loopback. A system user without a spawner to serve it is refused (module doc).
async fn check(
    ctx: &Context,
    user: &str,
    password: &[u8],
    peer: Option<IpAddr>,
) -> Result<Account, LoginFailure> {
    let Some(auth) = &ctx.auth else {
        return Err(LoginFailure::Temporary);
    };
    match auth.check_async(user, password, throttle_ip(peer)).await {
        AuthResult::Ok(u) => {
            let other = u.uid.is_some_and(|uid| uid != crate::os::euid());
            if other && spawn::for_user(&u.name).is_none() {
                log::line(format_args!(
                    "login user={}: a system user, and no spawner runs to serve it \
                     (start mimapd as root)",
                    log::sanitize(&u.name)
                ));
                return Err(LoginFailure::Temporary);
            }
            match auth.account(&u) {
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

/// `NO [UNAVAILABLE]` for what is not served yet (or a store that cannot be opened).
fn unavailable(tag: &str) -> Vec<u8> {
    response::status(
        Some(tag),
        response::Kind::No,
        Some(response::other_code("UNAVAILABLE")),
        "Mailbox access is not built yet.",
    )
}

/// Asks the spawner for `account`'s [`IMAP_CHILD`] (serving the login `tag`) and reads the
/// child's first line: its tagged OK. Then the child's socket and what it wrote so far (to
/// send on); anything else (it could not serve, the spawner refused: both logged) is a
/// temporary failure the daemon's session answers.
async fn login_in_child(
    account: &Account,
    tag: &str,
    peer: Option<IpAddr>,
) -> Result<(tokio::net::UnixStream, Vec<u8>), LoginFailure> {
    let fail = |what: &str, e: io::Error| {
        log::line(format_args!(
            "imap child for {}: {what}: {e}",
            log::sanitize(&account.user)
        ));
        LoginFailure::Temporary
    };
    let spawner: &Spawner = spawn::for_user(&account.user).ok_or(LoginFailure::Temporary)?;
    let mut child = spawn::session_child(spawner, IMAP_CHILD, &account.user, &[tag, &show(peer)])
        .map_err(|e| fail("asking the spawner", e))?;
    let mut first = Vec::new();
    let mut buf = [0u8; 1024];
    while !first.contains(&b'\n') && first.len() < MAX_CHILD_FIRST_LINE {
        match child.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => first.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail("reading its reply", e)),
        }
    }
    if first.starts_with(format!("{tag} OK ").as_bytes()) {
        Ok((child, first))
    } else {
        Err(LoginFailure::Temporary)
    }
}

/// The daemon's side of a system user's session relayed to its child ([`relay::relay`]): the
/// client's bytes go to the child as they are, the daemon's session (which checked the login)
/// says the goodbyes, and [`super::relay::Commands`] counts the progress after the login's.
struct Relaying {
    session: Session,
    base: u64,
    commands: super::relay::Commands,
    pending: Vec<u8>,
}

impl relay::Relayed for Relaying {
    type Session = Session;

    fn feed(&mut self, bytes: &[u8]) {
        self.commands.feed(bytes);
        self.pending.extend_from_slice(bytes);
    }

    fn progress(&self) -> u64 {
        self.base + self.commands.count()
    }

    fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    fn for_child(&mut self, to_child: &mut Vec<u8>) -> bool {
        to_child.append(&mut self.pending);
        true
    }

    fn take_goodbye(&mut self) -> Vec<u8> {
        self.session.take_output()
    }
}

/// `mimapd __child imap USER MAILDIR TAG PEER` (running as USER, spawned for the daemon, which
/// checked USER's login, command TAG): checks the Maildir at MAILDIR (the spawner's lookup) is
/// a directory it can read (or not there yet: it is created as the user when first written),
/// writes the login's tagged OK on `conn` (the daemon's socket) and serves the session in the
/// authenticated state until LOGOUT or until the daemon closes the socket. PEER is the
/// client, for the log. A Maildir it cannot serve: an error, and nothing written (the daemon
/// answers `NO [UNAVAILABLE]`).
pub async fn run_child(
    conn: &mut Connection,
    user: &str,
    maildir: &std::path::Path,
    tag: &str,
    peer: &str,
    config: ImapConfig,
) -> io::Result<()> {
    if super::framer::tag_of(tag.as_bytes()).as_deref() != Some(tag) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an IMAP tag: {:?}", log::sanitize(tag)),
        ));
    }
    match std::fs::read_dir(maildir) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("Maildir {}: {e}", maildir.display()),
            ))
        }
    }
    conn.set_idle_timeout(CHILD_TIMEOUT);
    let policy = Policy {
        tls_available: false,
        // The daemon holds the TLS (or allowed the plaintext login).
        tls_active: true,
        plaintext_allowed: false,
        ..policy(conn, &config)
    };
    let session = Session::authenticated(policy, user, tag);
    log::line(format_args!(
        "login user={} peer={} uid={}",
        log::sanitize(user),
        log::sanitize(peer),
        crate::os::euid()
    ));
    let account = Account {
        user: user.to_string(),
        maildir: maildir.to_path_buf(),
    };
    let ctx = Context { config, auth: None };
    serve(conn, &ctx, session, Some(account), CHILD_TIMEOUT).await
}

fn show(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "local".to_string(), |ip| ip.to_string())
}
