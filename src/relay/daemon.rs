//! mrelayd's SMTP daemon: `serve` (listeners plus the queue runner, [`super::runner`]) and
//! `inetd` (one session on stdin/stdout, then delivery of what it accepted), both run by the
//! daemon frame ([`crate::server::daemon`]): what must be done as root (the queue handed to the
//! `[run_as]` user, the spawner of system users) happens in `setup`; the queue runner and
//! inetd's deliveries are the frame's background work, started after the privilege drop.
//!
//! The protocol is the sans-IO [`crate::smtp::server::Session`], run over a [`Connection`] of
//! the shared server layer by [`crate::smtp::driver`]; this module answers its questions
//! ([`driver::Policy`]): relay policy ([`Router`]), passwords ([`Authenticator`]) and queueing
//! ([`Queue`]). A message is
//! acknowledged only after [`queue::Incoming::commit`] has fsynced it; its content goes to the
//! queue file as it arrives (a buffer of [`crate::smtp::server::CONTENT_CHUNK`] octets per session), so
//! memory does not grow with message size. The writes are plain buffered file writes on the
//! session's task (page-cache writes of 64 KiB, as Postfix's smtpd writes its queue file); the
//! fsyncs of the commit run on the blocking pool.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::deliver::Deliverer;
use super::filter::{self, Filter};
use super::rate_journal::SharedLimits;
use super::rate_limit::{self, Limiter};
use super::runner::{self, Runner};
use super::{Client, RelayConfig, Role, Router};
use crate::auth::{AuthResult, Authenticator};
use crate::config::Config;
use crate::exit;
use crate::log;
use crate::queue::{self, Queue, Recipient};
use crate::rfc5322::HeaderQualifier;
use crate::server::daemon::{Background, Frame, ListenerRole as _, Mode};
use crate::server::{self, Connection, Settings};
use crate::smtp::command::{MailParams, Mailbox, RcptParams};
use crate::smtp::driver;
use crate::smtp::reply::Reply;
use crate::smtp::server::{
    received_header, Decision, Envelope, ReceivedInfo, Session, SessionConfig,
};

/// The queue directory from the config: `[mrelayd] queue_dir`, else `<state_dir>/queue`.
pub fn queue_dir(config: &Config, relay: &RelayConfig) -> PathBuf {
    match &relay.queue_dir {
        Some(p) => p.clone(),
        None => config.state_dir.join("queue"),
    }
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
    // Bounces and Sieve's submissions are signed with the users' keys (relay::own_mail).
    let signers =
        crate::dkim::Signers::load(&relay.dkim).map_err(|e| exit::fail(exit::CONFIG, e))?;
    Deliverer::new(
        router,
        queue.clone(),
        Duration::from_secs(relay.pipe_timeout_secs.max(1)),
        &config.hostname,
        relay.remote.clone(),
        myself(config, relay),
        config.state_dir.join("mta-sts"),
    )
    .map(|d| Deliverer {
        maildir_links: crate::maildir::Links::allowing(relay.allow_symlinked_maildir),
        max_hops: relay.max_hops.max(1),
        signers: Arc::new(signers),
        ..d
    })
    .context("setting up delivery")
}

/// This mrelayd as loop detection sees it (RFC 5321 §5.1): the configured listeners (a socket
/// passed by systemd is not known here; the greeting check covers it) and our names.
fn myself(config: &Config, relay: &RelayConfig) -> crate::outbound::route::Myself {
    let mut names = vec![config.hostname.clone()];
    names.extend(relay.remote.helo_name.clone());
    crate::outbound::route::Myself {
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
    /// DKIM signing and verification at the end of DATA.
    sender_auth: super::sender_auth::SenderAuth,
    /// DNSBL zones, if any (`dnsbl`).
    dnsbl: Option<super::dnsbl::Dnsbl>,
    /// Submission rate limits, shared by all sessions and (through the queue's journal) with
    /// every other mrelayd process of the queue.
    rate_limit: SharedLimits,
}

/// What mrelayd hands the [`Frame`]: the session handler over the shared [`Daemon`], and the
/// daemon itself and its deliverer for the background work of the mode.
struct Setup {
    daemon: Arc<Daemon>,
    deliverer: Deliverer,
    frame: Frame,
}

/// Everything `serve` and `inetd` do before the frame binds and drops root: refuse to serve
/// as root, open (and create) the queue and hand it to the `[run_as]` user, start the
/// spawner of system users.
fn setup(config: &Config, relay: &RelayConfig, inetd: bool) -> Result<Setup> {
    // Before anything is opened or created: never serve as root.
    server::refuse_root(config)?;
    let (auth, router, queue) = open(config, relay)?;
    super::checks::postmaster(config, relay, &router)?;
    chown_queue(config, &queue)?;
    mta_sts_cache_dir(config, relay)?;
    // System users are delivered to by children of a root spawner, started before the drop.
    server::spawn::start_for(config, &auth)?;
    // The driver switches between the command and data timeouts itself ([`driver::run`]).
    let settings = Settings::from_config(
        config,
        relay.max_connections,
        relay.max_per_ip,
        relay.per_ip_exempt()?,
        relay.idle_timeout_secs,
    )?;
    let sender_auth = super::sender_auth::SenderAuth::new(
        &config.hostname,
        relay,
        relay.remote.resolver_addr().map_err(anyhow::Error::msg)?,
    )?;
    let resolver = relay.remote.resolver_addr().map_err(anyhow::Error::msg)?;
    let rate_limit = SharedLimits::new(
        Limiter::new(&relay.rate_limit, &router.domains)?,
        queue.root().to_path_buf(),
    );
    let daemon = Arc::new(Daemon {
        sender_auth,
        dnsbl: super::dnsbl::Dnsbl::new(relay, resolver),
        rate_limit,
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
    let d = daemon.clone();
    let handler = server::handler(move |conn: Connection| {
        let d = d.clone();
        async move { session(conn, d).await }
    });
    let frame = Frame::new(settings, handler).listen(
        "mrelayd.listen",
        &relay.listen,
        b"421 4.7.0 Too many connections, try again later\r\n",
    );
    Ok(Setup {
        daemon,
        deliverer,
        frame,
    })
}

/// `mrelayd inetd`: one SMTP session on stdin/stdout with listener role `role`, then delivery
/// of what it accepted; anything left is retried by `serve` or `flush`.
pub fn inetd(config: &Config, relay: &RelayConfig, role: &str) -> Result<()> {
    let role = Role::from_arg(role)?;
    super::checks::check(config, relay, &[role])?;
    let s = setup(config, relay, true)?;
    let work = DeliverAccepted {
        daemon: s.daemon,
        deliverer: s.deliverer,
    };
    s.frame.background(work).run(Mode::inetd(role))
}

/// `inetd`'s background work: after the session (as the `[run_as]` user), the delivery of
/// the messages it accepted.
struct DeliverAccepted {
    daemon: Arc<Daemon>,
    deliverer: Deliverer,
}

impl Background for DeliverAccepted {
    fn start(&mut self) -> Result<()> {
        Ok(())
    }

    fn stop(&mut self) {
        let ids = std::mem::take(
            &mut *self
                .daemon
                .accepted
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for id in ids {
            if let Err(e) = self.deliverer.deliver(&id, true) {
                log::line(format_args!("{id}: delivery: {e}"));
            }
        }
        self.deliverer.close();
        if self.daemon.relay.rate_limit.enabled() {
            self.daemon.rate_limit.stop(crate::clock::since_epoch());
        }
    }
}

/// `mrelayd serve`: listens on the configured addresses and runs the queue until SIGTERM or
/// SIGINT. Only one `serve` runs per queue ([`runner::lock_serve`]).
pub fn serve(config: &Config, relay: &RelayConfig) -> Result<()> {
    let roles: Vec<Role> = relay.listen.iter().map(|l| l.role).collect();
    super::checks::check(config, relay, &roles)?;
    let s = setup(config, relay, false)?;
    let work = QueueRunner {
        daemon: s.daemon,
        queue: s.deliverer.queue.clone(),
        deliverer: s.deliverer,
        workers: relay.delivery_workers.max(1),
        stop: Arc::new(AtomicBool::new(false)),
        running: None,
    };
    s.frame.background(work).run(Mode::Serve)
}

/// `serve`'s background work: the serve lock, the cleanup of crash leftovers and the queue
/// runner, which delivers (runs `|pipe` commands): all after the frame dropped root.
struct QueueRunner {
    daemon: Arc<Daemon>,
    queue: Queue,
    deliverer: Deliverer,
    workers: usize,
    stop: Arc<AtomicBool>,
    /// The runner and the held [`runner::SERVE_LOCK`], once started.
    running: Option<(Runner, std::fs::File)>,
}

impl Background for QueueRunner {
    fn start(&mut self) -> Result<()> {
        // `flush` and a second `serve` see this lock held while we run.
        let lock = runner::lock_serve(&self.queue)?;
        if let Err(e) = self.queue.recover(Duration::ZERO) {
            log::line(format_args!("queue cleanup: {e}"));
        }
        let runner = Runner::start(self.deliverer.clone(), self.workers, self.stop.clone());
        *self
            .daemon
            .deliver
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(runner.sender());
        self.running = Some((runner, lock));
        Ok(())
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        *self
            .daemon
            .deliver
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        if let Some((runner, _lock)) = self.running.take() {
            runner.join();
        }
        self.deliverer.close();
        if self.daemon.relay.rate_limit.enabled() {
            self.daemon.rate_limit.stop(crate::clock::since_epoch());
        }
    }
}

/// Makes the queue directories belong to the `[run_as]` user, so the daemon can still write
/// them after dropping root.
fn chown_queue(config: &Config, queue: &Queue) -> Result<()> {
    let Some(run_as) = &config.run_as else {
        return Ok(());
    };
    if crate::os::euid() != 0 {
        return Ok(());
    }
    let (uid, gid) = crate::os::resolve_ids(&run_as.user, run_as.group.as_deref())
        .map_err(|e| exit::fail(exit::CONFIG, format!("run_as: {e}")))?;
    for d in ["", "tmp", "msg", "hold", "state"] {
        let p = queue.root().join(d);
        std::os::unix::fs::chown(&p, Some(uid), Some(gid))
            .with_context(|| format!("chown {}", p.display()))?;
    }
    Ok(())
}

/// Creates the MTA-STS policy cache `<state_dir>/mta-sts` (0700) when `mta_sts` is on and,
/// as [`chown_queue`], hands it to the `[run_as]` user, who writes it after the drop.
fn mta_sts_cache_dir(config: &Config, relay: &RelayConfig) -> Result<()> {
    if !relay.remote.mta_sts {
        return Ok(());
    }
    let dir = config.state_dir.join("mta-sts");
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let Some(run_as) = config.run_as.as_ref().filter(|_| crate::os::euid() == 0) else {
        return Ok(());
    };
    let (uid, gid) = crate::os::resolve_ids(&run_as.user, run_as.group.as_deref())
        .map_err(|e| exit::fail(exit::CONFIG, format!("run_as: {e}")))?;
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", dir.display()))
}

/// Refused recipients logged one by one per session; the rest only in the session's summary
/// (a directory harvest must not write a log line per guess).
const LOGGED_REFUSALS: u64 = 3;

/// One SMTP session on a connection ([`driver::run`] with mrelayd's [`SessionPolicy`]), then
/// the summary of its refused recipients.
async fn session(conn: Connection, d: Arc<Daemon>) -> Result<()> {
    let who = conn
        .peer()
        .map(|p| p.to_string())
        .unwrap_or_else(|| "stdin".into());
    let role = Role::from_name(conn.role()).unwrap_or_default();
    let ip = conn.peer().map(|p| p.ip().to_canonical());
    let relay = &d.relay;
    let config = SessionConfig {
        hostname: d.hostname.clone(),
        max_message_size: relay.max_message_size,
        max_recipients: relay.max_recipients.max(1),
        max_hops: relay.max_hops.max(1),
        max_errors: relay.max_errors.max(1),
        soft_error_limit: relay.soft_error_limit,
        junk_command_limit: relay.junk_command_limit,
        starttls: false,
        auth: true,
        auth_requires_tls: true,
        require_auth: role != Role::Smtp,
        // Postfix's local_header_rewrite_clients: bare addresses from trusted networks and
        // authenticated users get our first local domain; from others they are refused.
        // (Router::bare_domain says the same for `explain`.)
        bare_domain: d.router.domains.first().cloned(),
        local_client: d.router.trusted_network(ip).is_some(),
        bare_newline: relay.bare_newline,
    };
    let greet_pause = if role == Role::Smtp {
        Duration::from_millis(relay.greet_pause_ms)
    } else {
        Duration::ZERO
    };
    let limits = driver::Limits {
        command_timeout: Duration::from_secs(relay.idle_timeout_secs.max(1)),
        data_timeout: Duration::from_secs(relay.data_timeout_secs.max(1)),
        greet_pause,
        session_deadline: Duration::from_secs(relay.session_deadline_secs.max(1)),
        min_data_rate: relay.min_data_rate,
        min_data_rate_window: Duration::from_secs(relay.min_data_rate_window_secs.max(1)),
        error_sleep: Duration::from_millis(relay.error_sleep_ms),
        shutdown_finish: driver::SHUTDOWN_FINISH,
    };
    let mut policy = SessionPolicy {
        d: d.clone(),
        who,
        client: Client {
            ip,
            user: None,
            role,
        },
        receiving: None,
        refused: 0,
        filter: filter::for_role(relay, role),
        dnsbl: None,
        limited: d.rate_limit.applies(role),
        pending_rcpts: 0,
    };
    let r = driver::run(conn, config, &limits, &mut policy).await;
    if policy.refused > LOGGED_REFUSALS {
        log::line(format_args!(
            "{}: {} recipients refused (first {LOGGED_REFUSALS} logged)",
            policy.who, policy.refused
        ));
    }
    r
}

/// mrelayd's answers to one SMTP session's questions: relay policy ([`Router`]), passwords
/// ([`Authenticator`]) and the queue file of the message being received.
struct SessionPolicy {
    d: Arc<Daemon>,
    /// The client for the log.
    who: String,
    client: Client,
    /// The message being received, written to the queue as it arrives (bounded memory); `Err`
    /// once the queue failed it (the client gets 452 at the end).
    receiving: Option<std::result::Result<Receiving, ()>>,
    /// Recipients refused so far.
    refused: u64,
    /// The listener role's content filter.
    filter: Option<Filter>,
    /// The DNSBL verdict once looked up (at the first RCPT): the refusal, if listed.
    dnsbl: Option<Option<Reply>>,
    /// Whether this session is held to the rate limits ([`Limiter::applies`]).
    limited: bool,
    /// Recipients accepted in the transaction in progress (for the recipient limits).
    pending_rcpts: usize,
}

impl SessionPolicy {
    /// The DNSBL refusal of this client ([`super::dnsbl`]): only on the `smtp` listener, never
    /// for trusted networks or authenticated clients; looked up once per session.
    async fn dnsbl_refusal(&mut self) -> Option<Reply> {
        let (Some(dnsbl), Some(ip)) = (self.d.dnsbl.as_ref(), self.client.ip) else {
            return None;
        };
        if self.client.role != Role::Smtp
            || self.client.user.is_some()
            || self.d.router.trusted_network(Some(ip)).is_some()
        {
            return None;
        }
        if self.dnsbl.is_none() {
            self.dnsbl = Some(dnsbl.check(ip, &self.who).await);
        }
        self.dnsbl.clone().flatten()
    }

    /// Who the rate limits count this session's mail against.
    fn sender(&self) -> rate_limit::Sender {
        self.d
            .rate_limit
            .sender(self.client.user.as_deref(), self.client.ip)
    }
}

impl driver::Policy for SessionPolicy {
    fn mail(&mut self, from: Option<&Mailbox>, _: &MailParams) -> Decision {
        let v = self.d.router.check_sender(&self.client, from);
        self.pending_rcpts = 0;
        match v.refusal {
            None if self.limited => {
                let now = crate::clock::since_epoch();
                match self.d.rate_limit.check_mail(&self.sender(), now) {
                    None => Decision::Accept,
                    Some(r) => {
                        let who = &self.who;
                        log::line(format_args!("{who}: MAIL refused: {r} (rate limit)"));
                        Decision::Reject(r)
                    }
                }
            }
            None => Decision::Accept,
            Some(r) => {
                let who = &self.who;
                log::line(format_args!("{who}: MAIL refused: {} ({})", r, v.reason));
                Decision::Reject(r)
            }
        }
    }

    async fn rcpt(&mut self, to: &Mailbox, _: &RcptParams) -> Decision {
        if let Some(r) = self.dnsbl_refusal().await {
            self.refused += 1;
            if self.refused <= LOGGED_REFUSALS {
                let who = &self.who;
                log::line(format_args!("{who}: RCPT <{to}> refused: {r} (DNSBL)"));
            }
            return Decision::Reject(r);
        }
        let mut v = self.d.router.check_rcpt(&self.client, to);
        if v.refusal.is_none() && self.limited {
            let now = crate::clock::since_epoch();
            let limit = self
                .d
                .rate_limit
                .check_rcpt(&self.sender(), self.pending_rcpts, now);
            if let Some(r) = limit {
                v.refusal = Some(r);
                v.reason = "rate limit".into();
            }
        }
        match v.refusal {
            None => {
                self.pending_rcpts += 1;
                Decision::Accept
            }
            Some(r) => {
                self.refused += 1;
                if self.refused <= LOGGED_REFUSALS {
                    let who = &self.who;
                    log::line(format_args!(
                        "{who}: RCPT <{to}> refused: {} ({})",
                        r, v.reason
                    ));
                }
                Decision::Reject(r)
            }
        }
    }

    async fn auth(&mut self, _authzid: &str, user: &str, password: &str) -> Decision {
        // inetd on a pipe has no peer address: throttle it as a local client.
        let ip = self.client.ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let result = self.d.auth.check_async(user, password.as_bytes(), ip).await;
        let who = &self.who;
        match result {
            AuthResult::Ok(u) => {
                log::line(format_args!("{who}: authenticated as {}", u.name));
                self.client.user = Some(u.name);
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
        }
    }

    fn tls_started(&mut self) {
        self.client.user = None;
    }

    fn data_start(&mut self, session: &Session, envelope: &Envelope) {
        self.receiving = Some(begin_message(&self.d, session, &self.who, envelope));
    }

    fn content(&mut self, piece: &[u8]) {
        if let Some(Ok(r)) = self.receiving.as_mut() {
            let piece = match r.qualifier.as_mut() {
                Some(q) => q.feed(piece),
                None => std::borrow::Cow::Borrowed(piece),
            };
            if let Err(e) = r.incoming.write(&piece) {
                let who = &self.who;
                log::line(format_args!("{who}: writing a message to the queue: {e}"));
                // Dropping the Incoming removes its tmp file at once.
                self.receiving = Some(Err(()));
            }
        }
    }

    fn data_abort(&mut self) {
        self.receiving = None;
    }

    async fn message(&mut self, _: &Envelope) -> Decision {
        // A header section still held back (a message without a body) goes in before the
        // commit's fsync, so what is acknowledged is all on disk.
        if let Some(Ok(r)) = self.receiving.as_mut() {
            if let Some(rest) = r.qualifier.as_mut().map(HeaderQualifier::finish) {
                if let Err(e) = r.incoming.write(&rest) {
                    let who = &self.who;
                    log::line(format_args!("{who}: writing a message to the queue: {e}"));
                    self.receiving = Some(Err(()));
                }
            }
        }
        let receiving = match (&self.filter, self.receiving.take()) {
            // The content filter decides before anything is committed (issue 15).
            (Some(f), Some(Ok(r))) => {
                let Receiving { incoming, env, .. } = r;
                match filter::apply(f, incoming, &env, &self.who).await {
                    Ok(incoming) => Some(Ok(Receiving { incoming, env, ..r })),
                    Err(reply) => return Decision::Reject(reply),
                }
            }
            (_, receiving) => receiving,
        };
        self.receiving = receiving;
        // DKIM signing and verification on the whole message, before the fsync (one call;
        // relay::sender_auth).
        if let Some(Ok(r)) = self.receiving.as_mut() {
            // Our own users' mail is signed; mail from outside on the smtp listener is
            // verified (an A-R on relayed outgoing mail would only leak our verdicts).
            let ours = self.client.user.is_some()
                || self.d.router.trusted_network(self.client.ip).is_some();
            let checks = super::sender_auth::Checks {
                verify: self.client.role == Role::Smtp && !ours,
                sign: ours,
                client: self.client.ip.map(|ip| super::spf_dmarc::Client {
                    ip,
                    helo: r.env.helo.clone().unwrap_or_default(),
                    mail_from: r.env.sender.clone(),
                }),
            };
            let auth = &self.d.sender_auth;
            match auth.end_of_data(&mut r.incoming, &checks, &self.who).await {
                Ok(None) => {}
                // Refused by SPF or DMARC: the tmp file goes with the Incoming.
                Ok(Some(reply)) => {
                    self.receiving = None;
                    return Decision::Reject(reply);
                }
                Err(e) => {
                    let who = &self.who;
                    log::line(format_args!("{who}: writing a message to the queue: {e}"));
                    self.receiving = Some(Err(()));
                }
            }
        }
        let nrcpt = match &self.receiving {
            Some(Ok(r)) => r.nrcpt,
            _ => 0,
        };
        let decision = commit(&self.d, &self.who, self.receiving.take()).await;
        if self.limited && matches!(decision, Decision::Queued(_)) {
            let now = crate::clock::since_epoch();
            self.d.rate_limit.record(&self.sender(), nrcpt, now);
        }
        decision
    }
}

/// The message of the transaction in progress, streaming into the queue's `tmp/` file.
struct Receiving {
    incoming: queue::Incoming,
    /// A local client's bare addresses in the address fields ([`crate::rfc5322::ADDRESS_FIELDS`])
    /// get our domain on their way to the file.
    qualifier: Option<HeaderQualifier>,
    from: String,
    nrcpt: usize,
    /// The envelope as a content filter is told it.
    env: filter::Env,
}

/// Opens the queue file for a message whose content starts now (DATA or the first BDAT), with
/// the envelope and our Received header first ([`Queue::begin`]). `Err` (logged) when the queue
/// cannot take it: the message is then refused at its end with a temporary reply.
fn begin_message(
    d: &Daemon,
    s: &Session,
    who: &str,
    envelope: &Envelope,
) -> std::result::Result<Receiving, ()> {
    let now = crate::clock::now();
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
    let header = received_header(&ReceivedInfo {
        hostname: &d.hostname,
        helo: s.helo(),
        client_ip: s.client_ip(),
        client_name: None,
        protocol: s.protocol(),
        tls: s.tls(),
        user: s.user(),
        queue_id: &id,
        single_rcpt: single.as_deref(),
        date: &crate::clock::rfc5322_date(now),
    });
    let env = filter::Env {
        sender: qenv.sender.clone(),
        recipients: qenv.recipients.iter().map(|r| r.address.clone()).collect(),
        client: qenv.client.clone(),
        helo: qenv.helo.clone(),
        user: qenv.auth_user.clone(),
        queue_id: id.clone(),
    };
    match d.queue.begin(&id, &qenv, header.as_bytes()) {
        Ok(incoming) => Ok(Receiving {
            env,
            incoming,
            qualifier: s
                .bare_domain()
                .map(|d| HeaderQualifier::new(crate::rfc5322::ADDRESS_FIELDS, d)),
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
        ..
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
        assert_eq!(Role::from_arg("submissions").unwrap(), Role::Submissions);
        let e = Role::from_arg("bogus").unwrap_err();
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
