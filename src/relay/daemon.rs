//! mrelayd's SMTP daemon: `serve` (listeners plus the queue runner, [`super::runner`]) and
//! `inetd` (one session on stdin/stdout, then delivery of what it accepted).
//!
//! The protocol is the sans-IO [`crate::smtp::server::Session`]; this module only moves bytes
//! between it and a [`Connection`] of the shared server layer and answers its questions: relay
//! policy ([`Router`]), passwords ([`Authenticator`]) and queueing ([`Queue`]). A message is
//! acknowledged only after [`queue::Incoming::commit`] has fsynced it; its content goes to the
//! queue file as it arrives (a buffer of [`smtp::CONTENT_CHUNK`] octets per session), so
//! memory does not grow with message size. The writes are plain buffered file writes on the
//! session's task (page-cache writes of 64 KiB, as Postfix's smtpd writes its queue file); the
//! fsyncs of the commit run on the blocking pool.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::deliver::Deliverer;
use super::runner::{self, Runner};
use super::{Client, RelayConfig, Role, Router};
use crate::auth::{AuthResult, Authenticator};
use crate::config::Config;
use crate::exit;
use crate::queue::{self, Queue, Recipient};
use crate::server::pace::{ProgressDeadline, RateMeter};
use crate::server::{self, log, Connection, Handler, ListenerSpec, Listeners, Settings};
use crate::smtp::reply::Reply;
use crate::smtp::server::{self as smtp, Decision, Event, ReceivedInfo, Session, SessionConfig};

/// Largest read handed to the session at once.
pub const READ_CHUNK: usize = 64 * 1024;

/// The queue directory from the config: `[mrelayd] queue_dir`, else `<state_dir>/queue`.
pub fn queue_dir(config: &Config, relay: &RelayConfig) -> PathBuf {
    match &relay.queue_dir {
        Some(p) => config.resolve(p),
        None => config.state_dir.join("queue"),
    }
}

/// The listener role named `name`; an unknown one is a usage error (exit 64).
pub fn role_of(name: &str) -> Result<Role> {
    Role::from_name(name).ok_or_else(|| {
        exit::fail(
            exit::USAGE,
            format!("unknown role {name:?} (smtp, submission, submissions)"),
        )
    })
}

/// The password check, the router and the queue (created when missing) of this config.
pub fn open(
    config: &Config,
    relay: &RelayConfig,
) -> Result<(Arc<Authenticator>, Arc<Router>, Queue)> {
    let auth = Arc::new(Authenticator::from_config(config)?);
    let router = Arc::new(Router::new(config, relay, auth.clone())?);
    let dir = queue_dir(config, relay);
    let queue = Queue::open(&dir).map_err(|e| {
        exit::fail(
            exit::CANTCREAT,
            format!("opening queue {}: {e}", dir.display()),
        )
    })?;
    Ok((auth, router, queue))
}

/// The queue deliverer of this config (local and remote delivery, bounces).
pub fn deliverer(
    config: &Config,
    relay: &RelayConfig,
    router: Arc<Router>,
    queue: &Queue,
) -> Result<Deliverer> {
    Deliverer::new(
        router,
        queue.clone(),
        Duration::from_secs(relay.pipe_timeout_secs.max(1)),
        &config.hostname,
        relay.remote.clone(),
        myself(config, relay),
    )
    .map(|d| Deliverer {
        maildir_links: crate::maildir::Links::allowing(relay.allow_symlinked_maildir),
        max_hops: relay.max_hops.max(1),
        ..d
    })
    .context("setting up delivery")
}

/// This mrelayd as loop detection sees it (RFC 5321 §5.1): the configured listeners (a socket
/// passed by systemd is not known here; the greeting check covers it) and our names.
fn myself(config: &Config, relay: &RelayConfig) -> super::remote::Myself {
    let mut names = vec![config.hostname.clone()];
    names.extend(relay.remote.helo_name.clone());
    super::remote::Myself {
        listeners: relay
            .listen
            .iter()
            .filter_map(|l| l.address.parse().ok())
            .collect(),
        names,
    }
}

/// Everything sessions and delivery share.
struct Daemon {
    hostname: String,
    relay: RelayConfig,
    router: Arc<Router>,
    auth: Arc<Authenticator>,
    queue: Queue,
    /// Where `serve`'s runner takes newly queued ids.
    deliver: Mutex<Option<mpsc::Sender<String>>>,
    /// Ids accepted in this process, collected only in inetd mode (delivered before exiting).
    accepted: Mutex<Vec<String>>,
    /// Whether to collect `accepted` (inetd mode).
    collect_accepted: bool,
}

/// What `serve` and `inetd` both set up before taking connections.
struct Setup {
    daemon: Arc<Daemon>,
    queue: Queue,
    settings: Settings,
    deliverer: Deliverer,
    rt: tokio::runtime::Runtime,
    handler: Handler,
}

fn setup(config: &Config, relay: &RelayConfig, inetd: bool) -> Result<Setup> {
    // Before anything is opened or created: never serve as root.
    server::refuse_root(config)?;
    let (auth, router, queue) = open(config, relay)?;
    chown_queue(config, &queue)?;
    // System users are delivered to by children of a root spawner, started before the drop.
    server::spawn::start_for(config, &auth)?;
    let settings = settings(config, relay)?;
    let daemon = Arc::new(Daemon {
        hostname: config.hostname.clone(),
        relay: relay.clone(),
        router: router.clone(),
        auth,
        queue: queue.clone(),
        deliver: Mutex::new(None),
        accepted: Mutex::new(Vec::new()),
        collect_accepted: inetd,
    });
    let deliverer = deliverer(config, relay, router, &queue)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let d = daemon.clone();
    let handler = server::handler(move |conn: Connection| {
        let d = d.clone();
        async move { session(conn, d).await }
    });
    Ok(Setup {
        daemon,
        queue,
        settings,
        deliverer,
        rt,
        handler,
    })
}

/// `mrelayd inetd`: one SMTP session on stdin/stdout with listener role `role`, then delivery
/// of what it accepted; anything left is retried by `serve` or `flush`.
pub fn inetd(config: &Config, relay: &RelayConfig, role: &str) -> Result<()> {
    let s = setup(config, relay, true)?;
    let role = role_of(role)?;
    let r = s.rt.block_on(server::inetd(
        role.name(),
        role == Role::Submissions,
        s.settings,
        s.handler,
    ));
    // On a pipe a pending stdin read cannot be cancelled: do not wait for it.
    s.rt.shutdown_background();
    let ids = std::mem::take(&mut *s.daemon.accepted.lock().unwrap_or_else(|e| e.into_inner()));
    for id in ids {
        if let Err(e) = s.deliverer.deliver(&id, true) {
            log::line(format_args!("{id}: delivery: {e}"));
        }
    }
    s.deliverer.close();
    r
}

/// `mrelayd serve`: listens on the configured addresses and runs the queue until SIGTERM or
/// SIGINT. Only one `serve` runs per queue ([`runner::lock_serve`]).
pub fn serve(config: &Config, relay: &RelayConfig) -> Result<()> {
    let s = setup(config, relay, false)?;
    let specs = listener_specs(relay)?;
    let stop = Arc::new(AtomicBool::new(false));
    let daemon = s.daemon.clone();
    let (queue, deliverer, settings, handler) = (s.queue, s.deliverer, s.settings, s.handler);
    let workers = relay.delivery_workers.max(1);
    let mut running = None;
    let r = s.rt.block_on(async {
        let shutdown = server::shutdown_signal()?;
        let listeners = Listeners::bind(&specs)?;
        // Root is needed only to bind: drop it before the queue is touched or any delivery
        // (a |pipe command) runs. `serve` below finds us already switched.
        if let Some(run_as) = &settings.run_as {
            server::drop_privileges(run_as)?;
        }
        // `flush` and a second `serve` see this lock held while we run.
        let lock = runner::lock_serve(&queue)?;
        if let Err(e) = queue.recover(Duration::ZERO) {
            log::line(format_args!("queue cleanup: {e}"));
        }
        let runner = Runner::start(deliverer.clone(), workers, stop.clone());
        *daemon.deliver.lock().unwrap_or_else(|e| e.into_inner()) = Some(runner.sender());
        running = Some((runner, lock));
        server::serve(listeners, settings, handler, shutdown).await
    });
    s.rt.shutdown_timeout(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    *daemon.deliver.lock().unwrap_or_else(|e| e.into_inner()) = None;
    if let Some((runner, _lock)) = running {
        runner.join();
    }
    deliverer.close();
    r
}

/// The server layer's settings from the shared `[tls]`/`[run_as]` keys and `[mrelayd]` limits.
/// The session switches between the command and data timeouts itself ([`session`]).
fn settings(config: &Config, relay: &RelayConfig) -> Result<Settings> {
    Settings::from_config(
        config,
        relay.max_connections,
        relay.max_per_ip,
        relay.idle_timeout_secs,
    )
}

/// Makes the queue directories belong to the `[run_as]` user, so the daemon can still write
/// them after dropping root.
fn chown_queue(config: &Config, queue: &Queue) -> Result<()> {
    let Some(run_as) = &config.run_as else {
        return Ok(());
    };
    if server::sys::euid() != 0 {
        return Ok(());
    }
    let (uid, gid) = server::sys::resolve_ids(&run_as.user, run_as.group.as_deref())
        .map_err(|e| exit::fail(exit::CONFIG, format!("run_as: {e}")))?;
    for d in ["", "tmp", "msg", "hold", "state"] {
        let p = queue.root().join(d);
        std::os::unix::fs::chown(&p, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", p.display()))?;
    }
    Ok(())
}

fn listener_specs(relay: &RelayConfig) -> Result<Vec<ListenerSpec>> {
    relay
        .listen
        .iter()
        .map(|l| {
            server::listener_from_config(
                "mrelayd.listen",
                &l.address,
                l.role.name(),
                l.role == Role::Submissions,
                b"421 4.7.0 Too many connections, try again later\r\n",
            )
        })
        .collect()
}

/// Refused recipients logged one by one per session; the rest only in the session's summary
/// (a directory harvest must not write a log line per guess).
const LOGGED_REFUSALS: u64 = 3;

/// One SMTP session on a connection, then the summary of its refused recipients.
async fn session(conn: Connection, d: Arc<Daemon>) -> Result<()> {
    let who = conn
        .peer()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "stdin".into());
    let mut refused = 0;
    let r = session_loop(conn, d, &who, &mut refused).await;
    if refused > LOGGED_REFUSALS {
        log::line(format_args!(
            "{who}: {refused} recipients refused (first {LOGGED_REFUSALS} logged)"
        ));
    }
    r
}

/// Runs the SMTP session; counts refused recipients in `refused`.
async fn session_loop(
    mut conn: Connection,
    d: Arc<Daemon>,
    who: &str,
    refused: &mut u64,
) -> Result<()> {
    let role = Role::from_name(conn.role()).unwrap_or_default();
    let peer = conn.peer();
    let ip = peer.map(|p| p.ip().to_canonical());
    let cfg = SessionConfig {
        hostname: d.hostname.clone(),
        max_message_size: d.relay.max_message_size,
        max_recipients: d.relay.max_recipients.max(1),
        max_hops: d.relay.max_hops.max(1),
        max_errors: d.relay.max_errors.max(1),
        soft_error_limit: d.relay.soft_error_limit,
        junk_command_limit: d.relay.junk_command_limit,
        starttls: conn.can_starttls(),
        auth: true,
        auth_requires_tls: true,
        require_auth: role != Role::Smtp,
    };
    let mut s = Session::new(cfg, ip);
    if let Some(tls) = conn.tls() {
        s.set_implicit_tls(tls.clone());
    }
    let mut client = Client {
        ip,
        user: None,
        role,
    };
    // The message being received, written to the queue as it arrives (bounded memory); `Err`
    // once the queue failed it (the client gets 452 at the end).
    let mut receiving: Option<std::result::Result<Receiving, ()>> = None;
    // RFC 5321 §4.5.3.2: one wait for the next command, another for each piece of content.
    let command_timeout = Duration::from_secs(d.relay.idle_timeout_secs.max(1));
    let data_timeout = Duration::from_secs(d.relay.data_timeout_secs.max(1));
    if role == Role::Smtp && d.relay.greet_pause_ms > 0 {
        let pause = Duration::from_millis(d.relay.greet_pause_ms);
        if conn.input_pending_within(pause).await? {
            s.reject_early_talker();
            log::line(format_args!("{who}: early talker rejected"));
            conn.queue(&s.take_output());
            let _ = conn.close().await;
            return Ok(());
        }
    }
    // Slowloris (issue 10 §5): a deadline that only completed transactions move, and a least
    // rate for message content; the session itself has no clock.
    let mut deadline = ProgressDeadline::new(
        Duration::from_secs(d.relay.session_deadline_secs.max(1)),
        Instant::now(),
    );
    let mut rate = RateMeter::new(
        d.relay.min_data_rate,
        Duration::from_secs(d.relay.min_data_rate_window_secs.max(1)),
    );
    let error_sleep = Duration::from_millis(d.relay.error_sleep_ms);
    s.greeting();
    loop {
        if let Some(n) = s.take_error_delay() {
            // Postfix's smtpd_error_sleep_time, growing with each error over the soft limit;
            // only this session's task waits.
            tokio::time::sleep(error_sleep.saturating_mul(n)).await;
            conn.queue(&s.take_output());
            conn.flush().await?;
        }
        let ev = s.poll();
        match ev {
            Event::NeedInput => {
                let in_data = s.in_data();
                let now = Instant::now();
                deadline.update(s.progress(), now);
                if in_data {
                    rate.start(now);
                } else {
                    rate.stop();
                }
                let base = if in_data {
                    data_timeout
                } else {
                    command_timeout
                };
                conn.set_idle_timeout(base);
                if in_data && !rate.check(now) {
                    s.too_slow();
                    log::line(format_args!(
                        "{who}: message content below the minimum rate"
                    ));
                    continue;
                }
                if !in_data && deadline.expired(now) {
                    s.deadline_exceeded();
                    log::line(format_args!("{who}: session deadline exceeded"));
                    continue;
                }
                conn.queue(&s.take_output());
                // Flush only when the client has nothing more buffered (RFC 2920 batching).
                if !conn.has_buffered_input() {
                    conn.flush().await?;
                }
                // Wake up when the deadline or the rate window is due, even from a silent client.
                let due = if in_data {
                    rate.until_check(now)
                } else {
                    Some(deadline.remaining(now))
                };
                let wait = due.map_or(base, |d| d.min(base));
                conn.set_idle_timeout(wait.max(Duration::from_millis(1)));
                let read = conn.read_chunk(READ_CHUNK).await;
                conn.set_idle_timeout(base);
                match read {
                    Ok(b) if b.is_empty() => break,
                    Ok(b) => {
                        if in_data {
                            rate.add(b.len());
                        }
                        s.feed(&b)
                    }
                    // The deadline or the rate window is due: judged at the top of the loop.
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut && wait < base => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        s.timeout();
                        conn.queue(&s.take_output());
                        let _ = conn.close().await;
                        let waiting = if in_data { "message data" } else { "a command" };
                        log::line(format_args!("{who}: timeout waiting for {waiting}"));
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Event::Close => {
                conn.queue(&s.take_output());
                let _ = conn.close().await;
                break;
            }
            Event::Pending => {
                return Err(anyhow::anyhow!(
                    "internal error: session waits for a decision"
                ));
            }
            Event::StartTls => {
                conn.queue(&s.take_output());
                conn.starttls().await.context("STARTTLS handshake")?;
                match conn.tls() {
                    Some(info) => s.tls_started(info.clone()),
                    None => return Err(anyhow::anyhow!("STARTTLS did not start TLS")),
                }
                client.user = None;
            }
            Event::Mail { from, .. } => {
                let v = d.router.check_sender(&client, from.as_ref());
                s.decide(match v.refusal {
                    None => Decision::Accept,
                    Some(r) => {
                        log::line(format_args!("{who}: MAIL refused: {} ({})", r, v.reason));
                        Decision::Reject(r)
                    }
                });
            }
            Event::Rcpt { to, .. } => {
                let v = d.router.check_rcpt(&client, &to);
                s.decide(match v.refusal {
                    None => Decision::Accept,
                    Some(r) => {
                        *refused += 1;
                        if *refused <= LOGGED_REFUSALS {
                            log::line(format_args!(
                                "{who}: RCPT <{to}> refused: {} ({})",
                                r, v.reason
                            ));
                        }
                        Decision::Reject(r)
                    }
                });
            }
            Event::Auth { user, password, .. } => {
                // inetd on a pipe has no peer address: throttle it as a local client.
                let ip = ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
                let result = d.auth.check_async(&user, password.as_bytes(), ip).await;
                s.decide(match result {
                    AuthResult::Ok(u) => {
                        log::line(format_args!("{who}: authenticated as {}", u.name));
                        client.user = Some(u.name);
                        Decision::Accept
                    }
                    AuthResult::Failed => {
                        log::line(format_args!("{who}: authentication failed for {user}"));
                        Decision::Reject(Reply::new(
                            535,
                            Some((5, 7, 8)),
                            "Authentication credentials invalid",
                        ))
                    }
                    AuthResult::Throttled(_) => Decision::Reject(Reply::new(
                        454,
                        Some((4, 7, 0)),
                        "Too many failed logins, try again later",
                    )),
                    AuthResult::TempFail(why) => {
                        log::line(format_args!("{who}: authentication backend: {why}"));
                        Decision::Reject(Reply::new(
                            454,
                            Some((4, 7, 0)),
                            "Temporary authentication failure",
                        ))
                    }
                });
            }
            Event::DataStart { envelope } => {
                receiving = Some(begin_message(&d, &s, who, &envelope));
            }
            Event::Content(piece) => {
                if let Some(Ok(r)) = receiving.as_mut() {
                    if let Err(e) = r.incoming.write(&piece) {
                        log::line(format_args!("{who}: writing a message to the queue: {e}"));
                        // Dropping the Incoming removes its tmp file at once.
                        receiving = Some(Err(()));
                    }
                }
            }
            Event::DataAbort => receiving = None,
            Event::Message { .. } => {
                let decision = commit(&d, who, receiving.take()).await;
                s.decide(decision);
            }
        }
    }
    Ok(())
}

/// The message of the transaction in progress, streaming into the queue's `tmp/` file.
struct Receiving {
    incoming: queue::Incoming,
    from: String,
    nrcpt: usize,
}

/// Opens the queue file for a message whose content starts now (DATA or the first BDAT), with
/// the envelope and our Received header first ([`Queue::begin`]). `Err` (logged) when the queue
/// cannot take it: the message is then refused at its end with a temporary reply.
fn begin_message(
    d: &Daemon,
    s: &Session,
    who: &str,
    envelope: &smtp::Envelope,
) -> std::result::Result<Receiving, ()> {
    let now = queue::now();
    let sender = envelope
        .from
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    let recipients: Vec<Recipient> = envelope
        .rcpts
        .iter()
        .map(|(m, p)| Recipient {
            // The canonical form RCPT checked (smtp::command::Mailbox), so delivery resolves
            // exactly what was accepted.
            address: d.router.rcpt_address(m),
            notify: p.notify,
            orcpt: p.orcpt.clone(),
        })
        .collect();
    let qenv = queue::Envelope {
        sender,
        recipients,
        time: now,
        client: s.client_ip().map(|i| i.to_string()),
        helo: s.helo().map(str::to_string),
        auth_user: s.user().map(str::to_string),
        ret: envelope.params.ret,
        envid: envelope.params.envid.clone(),
        body: envelope.params.body,
        smtputf8: envelope.params.smtputf8,
    };
    let id = queue::new_id();
    let single = (qenv.recipients.len() == 1).then(|| qenv.recipients[0].address.clone());
    let header = smtp::received_header(&ReceivedInfo {
        hostname: &d.hostname,
        helo: s.helo(),
        client_ip: s.client_ip(),
        client_name: None,
        protocol: s.protocol(),
        tls: s.tls(),
        user: s.user(),
        queue_id: &id,
        single_rcpt: single.as_deref(),
        date: &super::dsn::rfc5322_date(now),
    });
    match d.queue.begin(&id, &qenv, header.as_bytes()) {
        Ok(incoming) => Ok(Receiving {
            incoming,
            from: qenv.sender,
            nrcpt: qenv.recipients.len(),
        }),
        Err(e) => {
            log::line(format_args!("{who}: queueing a message failed: {e}"));
            Err(())
        }
    }
}

/// Makes a received message durable (fsync file and directory, [`queue::Incoming::commit`])
/// before the 250, and announces it for delivery. A failure is a temporary reply.
async fn commit(
    d: &Arc<Daemon>,
    who: &str,
    receiving: Option<std::result::Result<Receiving, ()>>,
) -> Decision {
    let Some(Ok(Receiving {
        incoming,
        from,
        nrcpt,
    })) = receiving
    else {
        return Decision::Reject(Reply::new(
            452,
            Some((4, 3, 1)),
            "Insufficient system storage",
        ));
    };
    let (id, size) = (incoming.id().to_string(), incoming.size());
    let res = tokio::task::spawn_blocking(move || incoming.commit()).await;
    match res {
        Ok(Ok(())) => {
            log::line(format_args!(
                "{id}: from=<{from}> size={size} nrcpt={nrcpt} client={who} queued"
            ));
            if d.collect_accepted {
                d.accepted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(id.clone());
            }
            if let Some(tx) = d.deliver.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                let _ = tx.send(id.clone());
            }
            Decision::Queued(id)
        }
        Ok(Err(e)) => {
            log::line(format_args!("{who}: queueing a message failed: {e}"));
            Decision::Reject(Reply::new(
                452,
                Some((4, 3, 1)),
                "Insufficient system storage",
            ))
        }
        Err(e) => {
            log::line(format_args!("{who}: queueing a message failed: {e}"));
            Decision::Reject(Reply::new(
                451,
                Some((4, 3, 0)),
                "Local error in processing",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_queue_dir() {
        assert_eq!(role_of("submissions").unwrap(), Role::Submissions);
        let e = role_of("bogus").unwrap_err();
        assert_eq!(exit::code_of(&e), exit::USAGE);
        let config = Config::parse("state_dir = \"/var/lib/mk\"\n", None).unwrap();
        let mut relay = RelayConfig::default();
        assert_eq!(
            queue_dir(&config, &relay),
            PathBuf::from("/var/lib/mk/queue")
        );
        relay.queue_dir = Some("/srv/q".into());
        assert_eq!(queue_dir(&config, &relay), PathBuf::from("/srv/q"));
    }
}
