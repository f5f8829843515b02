//! `mrelayd`: SMTP server and MTA: accepts mail (smtp, submission, submissions listeners),
//! queues it durably ([`crate::queue`]) and delivers it locally ([`crate::relay`]).
//!
//! The protocol is the sans-IO [`crate::smtp::server::Session`]; this file only moves bytes
//! between it and a [`Connection`] of the shared server layer and answers its questions (relay
//! policy, passwords, queueing).

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::auth::{AuthResult, Authenticator};
use crate::config::Config;
use crate::exit;
use crate::queue::{self, Queue, Recipient};
use crate::relay::deliver::{Deliverer, Outcome};
use crate::relay::remote::{NextHop, Remote};
use crate::relay::{Client, RelayConfig, Resolution, Role, Router};
use crate::server::{self, log, Connection, ListenerSpec, Listeners, Settings};
use crate::smtp::reply::Reply;
use crate::smtp::server::{self as smtp, Decision, Event, ReceivedInfo, Session, SessionConfig};

/// Largest read handed to the session at once.
const READ_CHUNK: usize = 64 * 1024;
/// How often the queue runner looks for a flush request and due retries.
const RUNNER_TICK: Duration = Duration::from_secs(1);
/// How often the queue runner rescans the whole queue (new entries from inetd sessions,
/// retries that came due), at most; a shorter first retry interval rescans as often.
const RESCAN_INTERVAL: Duration = Duration::from_secs(30);
/// `tmp/` files older than this are crash leftovers (see [`Queue::recover`]).
const TMP_GRACE: Duration = Duration::from_secs(60);
/// Quickstart ports.
const QUICKSTART_SMTP: u16 = 2525;
/// Quickstart submission port.
const QUICKSTART_SUBMISSION: u16 = 2587;
/// Quickstart POP3 port (mpopd).
const QUICKSTART_POP3: u16 = 1110;
/// Length of the random demo password.
const DEMO_PASSWORD_LEN: usize = 16;
/// A supervised child that dies is restarted after this pause.
const RESTART_PAUSE: Duration = Duration::from_secs(2);

const AFTER_HELP: &str = "\
EXIT STATUS:
  0   serve/quickstart: stopped by SIGTERM/SIGINT; inetd: session ended; queue/flush: done
  64  usage error
  67  queue show/remove/hold/release: no such queue entry
  71  cannot bind, cannot drop privileges
  75  temporary failure (address in use, I/O error)
  78  configuration error

FILES:
  /etc/mailkit/mailkit.toml   configuration: [mrelayd] listen, queue_dir, aliases, catch_all,
                              recipient_delimiter, trusted_networks, any_sender, limits;
                              [mrelayd.remote] resolver, port, helo_name, tls (none, may,
                              encrypt, verify), ca_file, relayhost, relayhost_tls,
                              relayhost_user, relayhost_password_command,
                              retry_initial_secs, retry_max_secs, max_lifetime_secs,
                              delay_warning_secs, concurrency, destination_concurrency,
                              timeouts, connection_idle_secs, max_messages_per_connection;
                              [mrelayd.remote.domains.\"DOMAIN\"] relayhost, tls, ...;
                              shared [users] (passwd_file, mail_location, domains), [tls],
                              [auth], [run_as]
  <state_dir>/queue/          the queue: tmp/, msg/, hold/, state/ (see the queue module docs)
  aliases file                name: target, target2, |command, /path/to/Maildir/

ENVIRONMENT:
  MAILKIT_CONFIG   configuration file when -c is not given
  TCPREMOTEIP, TCPREMOTEPORT   client address in inetd mode
  LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES   systemd socket activation (smtp, submission,
                                           submissions)";

/// Command line of `mrelayd`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "mrelayd",
    version,
    about = "SMTP server and MTA: accepts, queues durably, delivers locally or relays by MX",
    long_about = "SMTP server and MTA (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8, \
ENHANCEDSTATUSCODES, STARTTLS, AUTH PLAIN LOGIN, CHUNKING, DSN). Listener roles: smtp (mail for \
local domains, relaying for trusted networks and authenticated users), submission (AUTH after \
STARTTLS required) and submissions (implicit TLS). Every accepted message is fsynced into the \
queue before the 250 reply and delivered to Maildirs or commands through the users passwd-file \
and an aliases file. Other domains are relayed to their MX hosts (or a relayhost) with \
opportunistic or required STARTTLS, cached connections and concurrency limits; temporary failures \
are retried with exponential back-off (5 minutes doubling to 1 hour, for 5 days by default), \
permanent ones and expired messages bounce to the sender as RFC 3464 DSNs honouring NOTIFY, RET \
and ENVID, and a delay warning goes out after 4 hours.",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml).
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// mrelayd's subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Cmd {
    /// Listen on the configured addresses, deliver the queue, until SIGTERM/SIGINT.
    Serve,
    /// Serve one SMTP session on stdin/stdout (inetd, tcpserver, systemd Accept=yes), then
    /// deliver what it accepted.
    Inetd {
        /// Listener role: smtp, submission or submissions (implicit TLS).
        #[arg(long, default_value = "smtp")]
        role: String,
    },
    /// List the queue like mailq, or act on one entry.
    Queue {
        /// What to do (default: list).
        #[command(subcommand)]
        action: Option<QueueCmd>,
    },
    /// Make the running daemon retry every queued message now (or deliver them here when no
    /// daemon runs).
    Flush,
    /// Create a demo setup in DIR (default ./mailkit-demo) and run it on loopback.
    Quickstart {
        /// Directory for the demo (reused when it exists).
        dir: Option<PathBuf>,
        /// Only create the files, do not run.
        #[arg(long)]
        no_run: bool,
    },
    /// Print what the running config would answer to a client, stage by stage, and why.
    Explain {
        /// The client's IP address.
        #[arg(long, value_name = "IP")]
        client: IpAddr,
        /// The EHLO name.
        #[arg(long, value_name = "NAME")]
        helo: Option<String>,
        /// Assume the client authenticated as this user.
        #[arg(long, value_name = "USER")]
        auth: Option<String>,
        /// Listener role.
        #[arg(long, default_value = "smtp")]
        role: String,
        /// Envelope sender (empty for <>).
        #[arg(long, value_name = "ADDR")]
        from: String,
        /// Recipients.
        #[arg(required = true, value_name = "RCPT")]
        rcpts: Vec<String>,
    },
}

/// `mrelayd queue` actions.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum QueueCmd {
    /// List every message (id, size, age, sender, recipients, last error).
    List,
    /// Show one entry in full.
    Show {
        /// Queue id.
        id: String,
    },
    /// Delete one entry.
    Remove {
        /// Queue id.
        id: String,
    },
    /// Set one entry aside (not delivered until released).
    Hold {
        /// Queue id.
        id: String,
    },
    /// Release a held entry (delivered at the next run).
    Release {
        /// Queue id.
        id: String,
    },
}

impl super::Tool for Args {
    const NAME: &'static str = "mrelayd";
    fn run(self) -> Result<u8> {
        log::set_program(Self::NAME);
        match self.command {
            Cmd::Quickstart { dir, no_run } => quickstart(dir, no_run),
            cmd => {
                let config = Config::load(self.config.as_deref())?;
                let relay: RelayConfig = config.section("mrelayd")?;
                match cmd {
                    Cmd::Serve => run_daemon(config, relay, None),
                    Cmd::Inetd { role } => run_daemon(config, relay, Some(role)),
                    Cmd::Queue { action } => queue_cmd(&config, &relay, action),
                    Cmd::Flush => flush(config, relay),
                    Cmd::Explain {
                        client,
                        helo,
                        auth,
                        role,
                        from,
                        rcpts,
                    } => explain(config, relay, client, helo, auth, &role, &from, &rcpts),
                    Cmd::Quickstart { .. } => Ok(exit::SOFTWARE),
                }
            }
        }
    }
}

/// The queue directory from the config.
pub fn queue_dir(config: &Config, relay: &RelayConfig) -> PathBuf {
    match &relay.queue_dir {
        Some(p) => config.resolve(p),
        None => config.state_dir.join("queue"),
    }
}

/// Everything sessions and delivery share.
struct Daemon {
    hostname: String,
    relay: RelayConfig,
    router: Arc<Router>,
    auth: Arc<Authenticator>,
    queue: Queue,
    deliver: Mutex<Option<mpsc::Sender<String>>>,
    /// Ids accepted in this process, collected only in inetd mode (delivered before exiting).
    accepted: Mutex<Vec<String>>,
    /// Whether to collect `accepted` (inetd mode).
    collect_accepted: bool,
}

fn role_of(name: &str) -> Result<Role> {
    Role::from_name(name).ok_or_else(|| {
        exit::fail(
            exit::USAGE,
            format!("unknown role {name:?} (smtp, submission, submissions)"),
        )
    })
}

fn build(config: &Config, relay: &RelayConfig) -> Result<(Arc<Authenticator>, Arc<Router>, Queue)> {
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

fn settings(config: &Config, relay: &RelayConfig) -> Result<Settings> {
    let tls = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => {
            let sc = crate::tls::server_config(&config.resolve(cert), &config.resolve(key))
                .map_err(|e| exit::fail(exit::CONFIG, format!("TLS certificate: {e:#}")))?;
            Some(tokio_rustls::TlsAcceptor::from(sc))
        }
        (None, None) => None,
        _ => return Err(exit::fail(exit::CONFIG, "[tls] needs both cert and key")),
    };
    Ok(Settings {
        tls,
        limits: server::Limits {
            max_connections: relay.max_connections.max(1),
            max_per_ip: relay.max_per_ip.max(1),
            idle_timeout: Duration::from_secs(relay.idle_timeout_secs.max(1)),
            ..server::Limits::default()
        },
        run_as: server::RunAs::from_config(config),
    })
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

fn run_daemon(config: Config, relay: RelayConfig, inetd_role: Option<String>) -> Result<u8> {
    let (auth, router, queue) = build(&config, &relay)?;
    chown_queue(&config, &queue)?;
    let settings = settings(&config, &relay)?;
    let daemon = Arc::new(Daemon {
        hostname: config.hostname.clone(),
        relay: relay.clone(),
        router: router.clone(),
        auth,
        queue: queue.clone(),
        deliver: Mutex::new(None),
        accepted: Mutex::new(Vec::new()),
        collect_accepted: inetd_role.is_some(),
    });
    let deliverer = deliverer(&config, &relay, router, &queue)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let d = daemon.clone();
    let handler = server::handler(move |conn: Connection| {
        let d = d.clone();
        async move { session(conn, d).await }
    });
    let result = match inetd_role {
        Some(role) => {
            let role = role_of(&role)?;
            let r = rt.block_on(server::inetd(
                role.name(),
                role == Role::Submissions,
                settings,
                handler,
            ));
            rt.shutdown_background();
            // Deliver what this session accepted; anything left is retried by `serve`/`flush`.
            let ids =
                std::mem::take(&mut *daemon.accepted.lock().unwrap_or_else(|e| e.into_inner()));
            for id in ids {
                if let Err(e) = deliverer.deliver(&id, true) {
                    log::line(format_args!("{id}: delivery: {e}"));
                }
            }
            deliverer.close();
            r
        }
        None => {
            let specs = listener_specs(&relay)?;
            // `flush` and a second `serve` see this lock held while we run.
            let lock = std::fs::File::create(queue.root().join("serve.lock"))
                .context("creating the queue's serve.lock")?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(exit::fail(
                        exit::TEMPFAIL,
                        format!(
                            "another mrelayd serve runs on queue {}",
                            queue.root().display()
                        ),
                    ))
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(anyhow::Error::new(e).context("locking the queue"))
                }
            }
            if let Err(e) = queue.recover(Duration::ZERO) {
                log::line(format_args!("queue cleanup: {e}"));
            }
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let runner = start_runner(
                deliverer.clone(),
                relay.delivery_workers.max(1),
                stop.clone(),
            );
            *daemon.deliver.lock().unwrap_or_else(|e| e.into_inner()) = Some(runner.tx.clone());
            let r = rt.block_on(async {
                let shutdown = server::shutdown_signal()?;
                let listeners = Listeners::bind(&specs)?;
                server::serve(listeners, settings, handler, shutdown).await
            });
            rt.shutdown_timeout(Duration::from_secs(1));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            *daemon.deliver.lock().unwrap_or_else(|e| e.into_inner()) = None;
            runner.join();
            deliverer.close();
            r
        }
    };
    result.map(|()| exit::OK)
}

/// The queue deliverer of this config (local and remote delivery, bounces).
fn deliverer(
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
    )
    .context("setting up delivery")
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

/// The delivery workers and the queue runner.
struct Runner {
    tx: mpsc::Sender<String>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Runner {
    fn join(self) {
        drop(self.tx);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn start_runner(
    deliverer: Deliverer,
    workers: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Runner {
    let (tx, rx) = mpsc::channel::<String>();
    let rx = Arc::new(Mutex::new(rx));
    // Bounces queued by the workers go through the same door as new mail.
    *deliverer.wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx.clone());
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut threads = Vec::new();
    // Workers take ids from the channel; an id is in `in_flight` while queued or being delivered.
    // `true`: a flush, deliver even when the retry time has not come.
    let (work_tx, work_rx) = mpsc::channel::<(String, bool)>();
    let work_rx = Arc::new(Mutex::new(work_rx));
    for _ in 0..workers {
        let work_rx = work_rx.clone();
        let deliverer = deliverer.clone();
        let in_flight = in_flight.clone();
        threads.push(std::thread::spawn(move || loop {
            let next = work_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
            let Ok((id, force)) = next else { break };
            match deliverer.deliver(&id, force) {
                Ok(Outcome::Done | Outcome::Deferred | Outcome::Busy | Outcome::NotDue) => {}
                Err(e) => log::line(format_args!("{id}: delivery failed: {e}")),
            }
            in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }));
    }
    // The runner: new ids from sessions, plus periodic scans and flush requests.
    let queue = deliverer.queue.clone();
    let rescan = RESCAN_INTERVAL.min(Duration::from_secs(
        deliverer.remote.config().retry().initial,
    ));
    threads.push(std::thread::spawn(move || {
        let mut last_scan: Option<std::time::Instant> = None;
        let dispatch = |id: String, force: bool| {
            let mut f = in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if f.insert(id.clone()) {
                let _ = work_tx.send((id, force));
            }
        };
        loop {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            let got = rx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .recv_timeout(RUNNER_TICK);
            match got {
                Ok(id) => {
                    dispatch(id, false);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let flush = queue.take_flush_request();
            if flush || last_scan.is_none_or(|t| t.elapsed() >= rescan) {
                if flush {
                    log::line("flush requested: retrying the whole queue");
                }
                last_scan = Some(std::time::Instant::now());
                if let Err(e) = queue.recover(TMP_GRACE) {
                    log::line(format_args!("queue cleanup: {e}"));
                }
                match queue.active_ids() {
                    Ok(ids) => {
                        for id in ids {
                            dispatch(id, flush);
                        }
                    }
                    Err(e) => log::line(format_args!("scanning the queue: {e}")),
                }
            }
        }
        drop(work_tx);
    }));
    Runner { tx, threads }
}

/// RFC 5322 date-time in UTC for `secs` since the epoch.
pub fn rfc5322_date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    let wd = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        WD[wd],
        d,
        MO[(mo - 1) as usize],
        y,
        h,
        m,
        s
    )
}

/// One SMTP session on a connection.
async fn session(mut conn: Connection, d: Arc<Daemon>) -> Result<()> {
    let role = Role::from_name(conn.role()).unwrap_or_default();
    let peer = conn.peer();
    let ip = peer.map(|p| p.ip().to_canonical());
    let who = peer
        .map(|p| p.to_string())
        .unwrap_or_else(|| "stdin".into());
    let cfg = SessionConfig {
        hostname: d.hostname.clone(),
        max_message_size: d.relay.max_message_size,
        max_recipients: d.relay.max_recipients.max(1),
        max_errors: d.relay.max_errors.max(1),
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
    s.greeting();
    loop {
        let ev = s.poll();
        match ev {
            Event::NeedInput => {
                conn.queue(&s.take_output());
                // Flush only when the client has nothing more buffered (RFC 2920 batching).
                if !conn.has_buffered_input() {
                    conn.flush().await?;
                }
                match conn.read_chunk(READ_CHUNK).await {
                    Ok(b) if b.is_empty() => break,
                    Ok(b) => s.feed(&b),
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        s.timeout();
                        conn.queue(&s.take_output());
                        let _ = conn.close().await;
                        log::line(format_args!("{who}: timeout"));
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
                        log::line(format_args!(
                            "{who}: RCPT <{to}> refused: {} ({})",
                            r, v.reason
                        ));
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
            Event::Message { envelope, data } => {
                let decision = enqueue(&d, &s, &who, envelope, data).await;
                s.decide(decision);
            }
        }
    }
    Ok(())
}

async fn enqueue(
    d: &Arc<Daemon>,
    s: &Session,
    who: &str,
    envelope: smtp::Envelope,
    data: Vec<u8>,
) -> Decision {
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
            address: if m.is_bare_postmaster() {
                format!(
                    "postmaster@{}",
                    d.router
                        .domains
                        .first()
                        .map(String::as_str)
                        .unwrap_or("localhost")
                )
            } else {
                m.to_string()
            },
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
        date: &rfc5322_date(now),
    });
    let q = d.queue.clone();
    let size = data.len();
    let nrcpt = qenv.recipients.len();
    let from = qenv.sender.clone();
    let res = tokio::task::spawn_blocking(move || {
        q.enqueue_with_id(&id, &qenv, header.as_bytes(), &data)
            .map(|()| id)
    })
    .await;
    match res {
        Ok(Ok(id)) => {
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

fn fmt_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn queue_cmd(config: &Config, relay: &RelayConfig, action: Option<QueueCmd>) -> Result<u8> {
    let dir = queue_dir(config, relay);
    let q = Queue::open_existing(&dir)?;
    let not_found = |e: std::io::Error, id: &str| -> anyhow::Error {
        if matches!(
            e.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
        ) {
            exit::fail(exit::NOUSER, format!("{id}: {e}"))
        } else {
            anyhow::Error::new(e).context(format!("queue entry {id}"))
        }
    };
    match action.unwrap_or(QueueCmd::List) {
        QueueCmd::List => {
            let list = q
                .list()
                .with_context(|| format!("reading queue {}", dir.display()))?;
            let now = queue::now();
            if list.is_empty() {
                println!("Mail queue is empty");
                return Ok(exit::OK);
            }
            println!(
                "{:<24} {:>9} {:>5}  Sender/Recipients",
                "Queue ID", "Size", "Age"
            );
            for e in &list {
                let held = if e.place == queue::Place::Held {
                    "!"
                } else {
                    ""
                };
                println!(
                    "{:<24} {:>9} {:>5}  <{}>",
                    format!("{}{held}", e.id),
                    e.size,
                    fmt_age(now.saturating_sub(e.envelope.time)),
                    e.envelope.sender
                );
                let next = if e.status.next_try > now {
                    format!("next try in {}", fmt_age(e.status.next_try - now))
                } else {
                    "next try now".to_string()
                };
                for (i, (r, st)) in e
                    .envelope
                    .recipients
                    .iter()
                    .zip(&e.status.rcpts)
                    .enumerate()
                {
                    if *st == queue::RcptState::Pending {
                        println!("{:45}<{}>", "", r.address);
                        if let Some(err) = e.status.rcpt_errors.get(&i) {
                            println!("{:47}({err}; {next})", "");
                        }
                    }
                }
            }
            println!("-- {} message(s)", list.len());
        }
        QueueCmd::Show { id } => {
            let e = q.entry(&id).map_err(|e| not_found(e, &id))?;
            println!("id: {}", e.id);
            println!(
                "state: {}",
                if e.place == queue::Place::Held {
                    "held"
                } else {
                    "active"
                }
            );
            println!("size: {}", e.size);
            println!("arrival: {}", rfc5322_date(e.envelope.time));
            println!("sender: <{}>", e.envelope.sender);
            if let Some(c) = &e.envelope.client {
                println!("client: {c}");
            }
            if let Some(h) = &e.envelope.helo {
                println!("helo: {h}");
            }
            if let Some(u) = &e.envelope.auth_user {
                println!("auth: {u}");
            }
            if let Some(v) = &e.envelope.envid {
                println!("envid: {v}");
            }
            if let Some(r) = &e.envelope.ret {
                println!("ret: {r:?}");
            }
            for (i, (r, st)) in e
                .envelope
                .recipients
                .iter()
                .zip(&e.status.rcpts)
                .enumerate()
            {
                let mut extra = String::new();
                if let Some(n) = &r.notify {
                    extra.push_str(&format!(" NOTIFY={n}"));
                }
                if let Some(o) = &r.orcpt {
                    extra.push_str(&format!(" ORCPT={o}"));
                }
                let st = match st {
                    queue::RcptState::Pending => match e.status.rcpt_errors.get(&i) {
                        Some(err) => format!("pending: {err}"),
                        None => "pending".to_string(),
                    },
                    queue::RcptState::Delivered => "delivered".to_string(),
                    queue::RcptState::Failed(why) => format!("failed: {why}"),
                };
                println!("recipient: <{}>{extra} ({st})", r.address);
            }
            println!("attempts: {}", e.status.attempts);
            if e.status.next_try > 0 {
                println!("next attempt: {}", rfc5322_date(e.status.next_try));
            }
            if let Some(err) = &e.status.last_error {
                println!("last error: {err}");
            }
        }
        QueueCmd::Remove { id } => {
            q.remove(&id).map_err(|e| not_found(e, &id))?;
            log::line(format_args!("{id}: removed by the administrator"));
        }
        QueueCmd::Hold { id } => {
            q.hold(&id).map_err(|e| not_found(e, &id))?;
            log::line(format_args!("{id}: held"));
        }
        QueueCmd::Release { id } => {
            q.release(&id).map_err(|e| not_found(e, &id))?;
            log::line(format_args!("{id}: released"));
        }
    }
    Ok(exit::OK)
}

/// Whether a `serve` daemon holds the queue (it keeps `queue/serve.lock` locked).
fn daemon_running(queue: &Queue) -> bool {
    match std::fs::File::open(queue.root().join("serve.lock")) {
        Ok(f) => matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

fn flush(config: Config, relay: RelayConfig) -> Result<u8> {
    let (_auth, router, queue) = build(&config, &relay)?;
    if daemon_running(&queue) {
        queue.request_flush().context("requesting a flush")?;
        println!("mrelayd: flush requested from the running daemon");
        return Ok(exit::OK);
    }
    let deliverer = deliverer(&config, &relay, router, &queue)?;
    let (tx, rx) = mpsc::channel::<String>();
    *deliverer.wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    let mut left = 0;
    let mut todo = queue.active_ids().context("reading the queue")?;
    // Bounces this run queues are delivered in the same run.
    while !todo.is_empty() {
        for id in std::mem::take(&mut todo) {
            match deliverer.deliver(&id, true) {
                Ok(Outcome::Done) => {}
                Ok(_) => left += 1,
                Err(e) => {
                    left += 1;
                    log::line(format_args!("{id}: delivery failed: {e}"));
                }
            }
        }
        todo.extend(rx.try_iter());
    }
    deliverer.close();
    println!("mrelayd: queue run done, {left} message(s) left in the queue");
    Ok(exit::OK)
}

#[allow(clippy::too_many_arguments)]
fn explain(
    config: Config,
    relay: RelayConfig,
    ip: IpAddr,
    helo: Option<String>,
    auth: Option<String>,
    role: &str,
    from: &str,
    rcpts: &[String],
) -> Result<u8> {
    let role = role_of(role)?;
    let auth_db = Arc::new(Authenticator::from_config(&config)?);
    let router = Router::new(&config, &relay, auth_db.clone())?;
    let remote =
        Remote::new(relay.remote.clone(), &config.hostname).context("remote delivery settings")?;
    println!(
        "config: {}",
        config
            .path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "(built-in defaults)".into())
    );
    println!("local domains: {}", router.domains.join(", "));
    if let Some(a) = router.aliases_path() {
        println!("aliases: {}", a.display());
    }
    println!("role: {} (client {ip})", role.name());
    match router.trusted_network(Some(ip)) {
        Some(n) if role == Role::Smtp => println!("  client is in trusted network {n}: may relay"),
        Some(n) => println!(
            "  client is in trusted network {n}, which does not count on {}",
            role.name()
        ),
        None => println!("  client is in no trusted network"),
    }
    println!(
        "EHLO {}: 250 (any name is accepted)",
        helo.as_deref().unwrap_or("(none given)")
    );
    if let Some(u) = &auth {
        match auth_db.lookup(u) {
            Some(user) => println!(
                "AUTH as {u}: user exists (passwd-file line {}); a correct password gives 235",
                user.line
            ),
            None => println!("AUTH as {u}: no such user in the passwd-file: 535 5.7.8"),
        }
    } else if role != Role::Smtp {
        println!(
            "AUTH: none given; {} requires it: MAIL would get 530 5.7.0",
            role.name()
        );
    }
    let client = Client {
        ip: Some(ip),
        user: auth,
        role,
    };
    let from_mb = if from.is_empty() || from == "<>" {
        None
    } else {
        match crate::smtp::command::parse(
            format!("MAIL FROM:<{}>", from.trim_matches(['<', '>'])).as_bytes(),
        ) {
            Ok(crate::smtp::command::Command::Mail { from, .. }) => from,
            Ok(_) => None,
            Err(e) => {
                println!("MAIL FROM:<{from}>: {}", e.to_reply());
                return Ok(exit::OK);
            }
        }
    };
    let v = router.check_sender(&client, from_mb.as_ref());
    match &v.refusal {
        None => println!("MAIL FROM:<{from}>: 250 2.1.0 ({})", v.reason),
        Some(r) => println!("MAIL FROM:<{from}>: {r} ({})", v.reason),
    }
    for rcpt in rcpts {
        let to = match crate::smtp::command::parse(
            format!("RCPT TO:<{}>", rcpt.trim_matches(['<', '>'])).as_bytes(),
        ) {
            Ok(crate::smtp::command::Command::Rcpt { to, .. }) => to,
            Ok(_) => continue,
            Err(e) => {
                println!("RCPT TO:<{rcpt}>: {}", e.to_reply());
                continue;
            }
        };
        let v = router.check_rcpt(&client, &to);
        match &v.refusal {
            None => println!("RCPT TO:<{rcpt}>: 250 2.1.5 ({})", v.reason),
            Some(r) => println!("RCPT TO:<{rcpt}>: {r} ({})", v.reason),
        }
        if let Some(Resolution::Targets { targets, .. }) = &v.resolution {
            if v.refusal.is_none() {
                for t in targets {
                    match t {
                        crate::relay::Target::Remote(a) => {
                            let domain = a.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                            let hop = remote.next_hop(domain);
                            let tls = match &hop {
                                NextHop::Mx { tls, .. } => format!("tls {tls:?}"),
                                NextHop::Relayhost { tls, .. } => format!("tls {tls:?}"),
                            };
                            println!("    delivers to {t} via {hop} ({})", tls.to_lowercase());
                        }
                        _ => println!("    delivers to {t}"),
                    }
                }
            }
        }
    }
    Ok(exit::OK)
}

/// The binary `name` next to this one.
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn random_password() -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..DEMO_PASSWORD_LEN)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn quickstart(dir: Option<PathBuf>, no_run: bool) -> Result<u8> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("mailkit-demo"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir =
        std::fs::canonicalize(&dir).with_context(|| format!("resolving {}", dir.display()))?;
    let config_path = dir.join("mailkit.toml");
    let pw_path = dir.join("demo-password");
    let fresh = !config_path.exists();
    if fresh {
        let password = match std::fs::read_to_string(&pw_path) {
            Ok(p) if !p.trim().is_empty() => p.trim().to_string(),
            _ => {
                let p = random_password();
                let _ = std::fs::remove_file(&pw_path);
                write_new(&pw_path, &format!("{p}\n"), 0o600)?;
                p
            }
        };
        let hash =
            crate::auth::hash_password(crate::auth::Scheme::Sha512Crypt, password.as_bytes())
                .map_err(|e| anyhow::anyhow!("hashing the demo password: {e}"))?;
        let passwd = dir.join("passwd");
        let _ = std::fs::remove_file(&passwd);
        write_new(&passwd, &format!("demo:{hash}\n"), 0o600)?;
        crate::tls::write_self_signed(&dir, &["localhost".into(), "127.0.0.1".into()])?;
        let mail = dir.join("mail");
        crate::maildir::Maildir::create(mail.join("demo").join("Maildir"))
            .with_context(|| format!("creating the demo Maildir under {}", mail.display()))?;
        std::fs::create_dir_all(dir.join("state"))?;
        let config = format!(
            "# Written by `mrelayd quickstart`. Paths are relative to this file's directory.\n\
hostname = \"localhost\"\n\
state_dir = \"state\"\n\
\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
\n[users]\npasswd_file = \"passwd\"\nmail_location = \"{mail}/%n/Maildir\"\ndomains = [\"localhost\"]\n\
\n[mrelayd]\n# No network is trusted: relaying needs AUTH on the submission port.\n\
trusted_networks = []\nlisten = [\n  {{ address = \"127.0.0.1:{QUICKSTART_SMTP}\", role = \"smtp\" }},\n  {{ address = \"127.0.0.1:{QUICKSTART_SUBMISSION}\", role = \"submission\" }},\n]\n\
\n[mpopd]\nlisten = [ {{ address = \"127.0.0.1:{QUICKSTART_POP3}\", role = \"plain\" }} ]\n\
",
            mail = mail.display()
        );
        write_new(&config_path, &config, 0o644)?;
    }
    let password = std::fs::read_to_string(&pw_path)
        .map(|p| p.trim().to_string())
        .unwrap_or_else(|_| "(see the passwd file)".into());
    let c = config_path.display();
    let d = dir.display();
    println!(
        "mailkit demo in {d} ({})\n\
\n  user:      demo@localhost\n  password:  {password}   (also in {d}/demo-password)\n  config:    {c}\n  CA cert:   {d}/ca.pem\n\
\n  SMTP        127.0.0.1:{QUICKSTART_SMTP}   (mail for @localhost, no relaying)\n  submission  127.0.0.1:{QUICKSTART_SUBMISSION}   (STARTTLS, then AUTH)\n  POP3        127.0.0.1:{QUICKSTART_POP3}   (mpopd)\n\
\nTry:\n  swaks --server 127.0.0.1:{QUICKSTART_SMTP} --to demo@localhost\n  swaks --server localhost:{QUICKSTART_SUBMISSION} --tls --tls-ca-path {d}/ca.pem --auth PLAIN \\\n        --auth-user demo --auth-password '{password}' --from demo@localhost --to demo@localhost\n  curl --user 'demo:{password}' pop3://127.0.0.1:{QUICKSTART_POP3}/1\n  mrelayd -c {c} queue\n  ls {d}/mail/demo/Maildir/new\n",
        if fresh { "created" } else { "reused" }
    );
    if no_run {
        return Ok(exit::OK);
    }
    println!("Press Ctrl-C to stop.");
    let config = Config::load(Some(&config_path))?;
    let relay: RelayConfig = config.section("mrelayd")?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pop3 = supervise("mpopd", &config_path, stop.clone());
    let result = run_daemon(config, relay, None);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = pop3.join();
    result
}

/// Runs `prog -c CONFIG serve` and restarts it when it dies, until `stop`; a program that says
/// it is not implemented (exit 69) is not restarted.
fn supervise(
    prog: &'static str,
    config: &Path,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let config = config.to_path_buf();
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let mut child = match std::process::Command::new(sibling(prog))
                .arg("-c")
                .arg(&config)
                .arg("serve")
                .stdin(std::process::Stdio::null())
                .spawn()
            {
                Ok(c) => c,
                Err(e) => {
                    log::line(format_args!("cannot start {prog}: {e}"));
                    return;
                }
            };
            let status = loop {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // Ctrl-C reached the whole process group; give it a moment, then kill.
                    for _ in 0..50 {
                        if let Ok(Some(_)) = child.try_wait() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                match child.try_wait() {
                    Ok(Some(st)) => break st,
                    Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                    Err(_) => return,
                }
            };
            if status.code() == Some(i32::from(exit::UNAVAILABLE)) {
                log::line(format_args!(
                    "{prog} is not available yet; continuing without it"
                ));
                return;
            }
            log::line(format_args!("{prog} exited ({status}); restarting"));
            std::thread::sleep(RESTART_PAUSE);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_430_400),
            "Mon, 23 Nov 2026 10:40:00 +0000"
        );
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        // Checked against `date -u -R -d @N`.
        assert_eq!(
            rfc5322_date(4_102_444_799),
            "Thu, 31 Dec 2099 23:59:59 +0000"
        );
    }
}
