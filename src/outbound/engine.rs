//! The delivery engine: candidates of a next hop, sessions, the connection cache and limits.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::config::RemoteConfig;
use super::failure::{
    dns_failure, one_line, reply_failure, session_failure, Failure, RcptOutcome, Sent, What,
};
use super::mta_sts::{self, MtaSts};
use super::password::password_from_command_async;
use super::route::{Myself, NextHop, RelayRoute, Routes};
use crate::dns::MxResolver;
use crate::net::client::connect_tcp;
use crate::net::smtp::{Connection, DriverError, Progress, Timeouts, Transcript};
use crate::smtp::client::{Credentials, Envelope, RcptResult, Settings, Stage};
use crate::tls::{self, Verify};

/// Destinations whose concurrency limit is remembered before idle ones are forgotten.
const MAX_TRACKED_DESTINATIONS: usize = 10_000;
/// Longest time a destination no host of which answered is deferred without a new try.
const MAX_DEAD_SECS: u64 = 60;
/// How often idle cached sessions are checked for expiry.
const REAPER_TICK: Duration = Duration::from_millis(500);

/// One recipient handed to [`Engine::deliver`].
#[derive(Debug, Clone)]
pub struct Rcpt {
    /// Address (`local@domain`).
    pub address: String,
    /// RCPT TO parameters to pass on (`NOTIFY=`, `ORCPT=`) when the server speaks DSN.
    pub params: Vec<String>,
}

/// A cached idle session.
struct Idle {
    conn: Connection<TcpStream>,
    /// `host[ip]:port`, for logs.
    relay: String,
    /// Host name the session went to, for DSNs.
    host: String,
    since: Instant,
    used: u32,
}

/// The remote delivery engine: resolver, TLS configs, connection cache and limits.
pub struct Engine {
    config: RemoteConfig,
    ehlo_name: String,
    /// The resolver, or why it could not be set up (a missing /etc/resolv.conf must not stop
    /// delivery to a relayhost given by IP address).
    dns: Result<MxResolver, String>,
    /// The config's next hops, parsed once.
    routes: Routes,
    /// A rustls config per certificate check in use (built at start, so a bad CA file stops
    /// the start, not each delivery).
    trust: HashMap<Verify, Arc<ClientConfig>>,
    timeouts: Timeouts,
    global: Arc<Semaphore>,
    per_destination: Mutex<HashMap<String, Arc<Semaphore>>>,
    idle: Arc<Mutex<HashMap<String, Vec<Idle>>>>,
    /// Destinations no host of which answered, until when, and why.
    dead: Mutex<HashMap<String, (Instant, Failure)>>,
    /// Sessions opened, for logs and benchmarks.
    opened: std::sync::atomic::AtomicU64,
    options: ClientOptions,
    /// Our own listeners and names, when loops are to be refused (mrelayd, not msend).
    myself: Option<Myself>,
    /// MTA-STS (`mta_sts = true`), and the rustls config its enforce mode verifies MX hosts
    /// with (`ca_file` or webpki-roots).
    mta_sts: Option<(MtaSts, Arc<ClientConfig>)>,
    /// DNSSEC-aware look-ups for DANE ([`super::dane`]); `None` when `dane` is off.
    secure: Option<crate::dns::secure::SecureResolver>,
}

/// Session options for interactive use (msend): transcript, `--quit-after`, credentials given
/// directly instead of a password command, and a typed smarthost and resolver instead of the
/// config's strings.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// The smarthost every recipient goes to, instead of the config's routes.
    pub relayhost: Option<RelayRoute>,
    /// DNS server instead of the config's `resolver` (or the system's).
    pub resolver: Option<SocketAddr>,
    /// Print the dialogue and progress on stderr.
    pub verbose: bool,
    /// Stop (QUIT) after this stage.
    pub quit_after: Option<Stage>,
    /// AUTH credentials for a relayhost.
    pub credentials: Option<Credentials>,
    /// Time limits instead of the config's.
    pub timeouts: Option<Timeouts>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .field("ehlo_name", &self.ehlo_name)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds the engine from the config; `hostname` is the default EHLO name.
    pub fn new(config: RemoteConfig, hostname: &str) -> anyhow::Result<Engine> {
        Engine::with_options(config, hostname, ClientOptions::default())
    }

    /// [`new`](Self::new) with interactive session options.
    pub fn with_options(
        config: RemoteConfig,
        hostname: &str,
        options: ClientOptions,
    ) -> anyhow::Result<Engine> {
        let server = match options.resolver {
            Some(r) => Some(r),
            None => config.resolver_addr().map_err(anyhow::Error::msg)?,
        };
        let routes = config.routes().map_err(anyhow::Error::msg)?;
        let dns = MxResolver::new(server);
        let secure = super::dane::resolver(config.dane, server);
        let mut trust = HashMap::new();
        let policies = routes
            .policies()
            .into_iter()
            .chain(options.relayhost.iter().map(|r| &r.tls));
        for v in policies.map(|p| &p.verify).chain([&Verify::None]) {
            if !trust.contains_key(v) {
                trust.insert(v.clone(), v.client_config()?);
            }
        }
        let mta_sts = if config.mta_sts {
            let fetcher = mta_sts::Fetcher::new(
                config.mta_sts_port,
                config.mta_sts_ca_file.as_deref(),
                Duration::from_secs(config.mta_sts_timeout_secs.max(1)),
            )?;
            let verify = Verify::WebPki.with_ca_file(config.ca_file.as_deref());
            Some((MtaSts::new(fetcher, None), verify.client_config()?))
        } else {
            None
        };
        let timeouts = options.timeouts.unwrap_or(Timeouts {
            connect: Duration::from_secs(config.connect_timeout_secs.max(1)),
            command: Duration::from_secs(config.command_timeout_secs.max(1)),
            data_end: Duration::from_secs(config.data_timeout_secs.max(1)),
        });
        Ok(Engine {
            ehlo_name: config
                .helo_name
                .clone()
                .unwrap_or_else(|| hostname.to_string()),
            dns,
            routes,
            trust,
            timeouts,
            global: Arc::new(Semaphore::new(config.concurrency.max(1))),
            per_destination: Mutex::new(HashMap::new()),
            idle: Arc::new(Mutex::new(HashMap::new())),
            dead: Mutex::new(HashMap::new()),
            opened: std::sync::atomic::AtomicU64::new(0),
            options,
            config,
            myself: None,
            mta_sts,
            secure,
        })
    }

    /// MTA-STS policies are cached in `dir` (mrelayd: `<state_dir>/mta-sts`), so they
    /// outlive a restart (RFC 8461 §5.1). Without it every delivery fetches.
    pub fn with_mta_sts_cache(mut self, dir: std::path::PathBuf) -> Engine {
        if let Some((m, verify)) = self.mta_sts.take() {
            self.mta_sts = Some((m.with_cache_dir(dir), verify));
        }
        self
    }

    /// This engine refuses next hops that are `myself` (RFC 5321 §5.1; see the module doc).
    /// mrelayd's does; msend's does not: it is the origin, not a relay.
    pub fn with_loop_check(mut self, myself: Myself) -> Engine {
        self.myself = Some(myself);
        self
    }

    /// The failure for a next hop that is this host (`why`), in the transaction for `rcpts`.
    /// As the first candidate (relayhost, best MX) the mail loops: 5.4.6 for good. After more
    /// preferred hosts (`earlier`: their last failure) we are a backup MX: the hosts after us
    /// are not tried and the mail gets their answer, normally a temporary one.
    fn loops_back(&self, why: &str, rcpts: &[Rcpt], earlier: Option<&Failure>) -> Failure {
        let mut domains: Vec<&str> = rcpts
            .iter()
            .map(|r| crate::smtp::command::split_address(&r.address).1)
            .collect();
        domains.dedup();
        crate::log::line(format_args!("loop: {why}"));
        match earlier {
            Some(f) => {
                let mut f = f.clone();
                f.message = format!("{}; hosts after it not tried: {why}", f.message);
                f
            }
            None => Failure::new(
                false,
                format!(
                    "mail for {} loops back to myself ({why})",
                    domains.join(", ")
                ),
                "5.4.6",
            )
            .because(What::Loop),
        }
    }

    /// The config in use.
    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    /// Sessions opened so far.
    pub fn sessions_opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The next hop for recipient domain `domain`: a per-domain relayhost, the global relayhost,
    /// or the domain's MX with its TLS policy ([`Routes::next_hop`]); msend's smarthost
    /// ([`ClientOptions::relayhost`]) takes every domain.
    pub fn next_hop(&self, domain: &str) -> NextHop {
        match &self.options.relayhost {
            Some(r) => NextHop::Relayhost(r.clone()),
            None => self.routes.next_hop(domain),
        }
    }

    /// Starts the task that closes cached sessions idle for longer than `connection_idle_secs`.
    /// Call once from inside the runtime.
    pub fn start_reaper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REAPER_TICK).await;
                let Some(me) = weak.upgrade() else { break };
                let max = Duration::from_secs(me.config.connection_idle_secs);
                let expired: Vec<Idle> = {
                    let mut idle = me.idle.lock().unwrap_or_else(|e| e.into_inner());
                    let mut out = Vec::new();
                    for list in idle.values_mut() {
                        let (old, keep): (Vec<Idle>, Vec<Idle>) =
                            list.drain(..).partition(|i| i.since.elapsed() >= max);
                        *list = keep;
                        out.extend(old);
                    }
                    idle.retain(|_, l| !l.is_empty());
                    out
                };
                for i in expired {
                    i.conn.quit().await;
                }
            }
        });
    }

    /// Closes every cached session (at shutdown).
    pub async fn close_idle(&self) {
        let all: Vec<Idle> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.drain().flat_map(|(_, v)| v).collect()
        };
        for i in all {
            i.conn.quit().await;
        }
    }

    fn destination_limit(&self, key: &str) -> Arc<Semaphore> {
        let mut map = self
            .per_destination
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let max = self.config.destination_concurrency.max(1);
        if map.len() >= MAX_TRACKED_DESTINATIONS && !map.contains_key(key) {
            // Forget destinations nobody is sending to, so the map stays bounded.
            map.retain(|_, s| s.available_permits() < max);
        }
        map.entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.destination_concurrency.max(1))))
            .clone()
    }

    /// The resolver, or a temporary failure saying why there is none.
    fn resolver(&self) -> Result<&MxResolver, Failure> {
        self.dns
            .as_ref()
            .map_err(|e| Failure::new(true, format!("DNS: {e}"), "4.4.3").because(What::Dns))
    }

    /// Remembers that no host of `key` could be reached, so the next messages for it are
    /// deferred without each trying again (Postfix's "dead destination"); a host that drops
    /// packets would otherwise hold a worker for a connect timeout per message.
    fn mark_dead(&self, key: &str, why: &Failure) {
        let secs = self.config.retry_initial_secs.clamp(1, MAX_DEAD_SECS);
        let mut dead = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        if dead.len() >= MAX_TRACKED_DESTINATIONS {
            dead.retain(|_, (until, _)| *until > Instant::now());
        }
        dead.insert(
            key.to_string(),
            (Instant::now() + Duration::from_secs(secs), why.clone()),
        );
    }

    /// The failure to report while `key` is marked dead.
    fn dead_failure(&self, key: &str) -> Option<Failure> {
        let mut dead = self.dead.lock().unwrap_or_else(|e| e.into_inner());
        match dead.get(key) {
            Some((until, why)) if *until > Instant::now() => {
                let mut f = why.clone();
                f.message = format!(
                    "{} (not retried: destination unreachable moments ago)",
                    why.message
                );
                Some(f)
            }
            Some(_) => {
                dead.remove(key);
                None
            }
            None => None,
        }
    }

    /// Forgets every dead destination (a flush retries everything now).
    pub fn forget_dead(&self) {
        self.dead.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn take_idle(&self, key: &str) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        let max = Duration::from_secs(self.config.connection_idle_secs);
        while let Some(i) = list.pop() {
            if i.since.elapsed() < max {
                return Some(i);
            }
            // Expired: the reaper would close it; dropping closes the socket.
        }
        None
    }

    async fn put_idle(&self, key: &str, mut idle: Idle) {
        idle.used += 1;
        let keep = self.config.connection_idle_secs > 0
            && idle.used < self.config.max_messages_per_connection
            && idle.conn.client().is_ready();
        if !keep {
            idle.conn.quit().await;
            return;
        }
        idle.since = Instant::now();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .push(idle);
    }

    /// Delivers `message` from `sender` to recipients of any domains: grouped by next hop (each
    /// address's domain; a global relayhost takes them all), one [`deliver`](Self::deliver) per
    /// hop, the hops in parallel. One entry per recipient, in order: `None` for a recipient
    /// whose session stopped at `--quit-after` before a transaction. An address without a
    /// domain can only go to a relayhost.
    pub async fn deliver_all(
        self: &Arc<Self>,
        sender: &str,
        mail_params: &[String],
        rcpts: &[Rcpt],
        message: &Arc<[u8]>,
    ) -> Deliveries {
        let mut out: Vec<Option<RcptOutcome>> = vec![None; rcpts.len()];
        let mut groups: Vec<(NextHop, Vec<usize>)> = Vec::new();
        for (i, r) in rcpts.iter().enumerate() {
            let (_, domain) = crate::smtp::command::split_address(&r.address);
            let hop = self.next_hop(domain);
            if matches!(&hop, NextHop::Mx { domain, .. } if domain.is_empty()) {
                out[i] = Some(Err(Failure::new(
                    false,
                    "no domain in address (direct delivery needs user@domain)",
                    "5.1.3",
                )));
                continue;
            }
            match groups.iter_mut().find(|(h, _)| *h == hop) {
                Some((_, v)) => v.push(i),
                None => groups.push((hop, vec![i])),
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (hop, idx) in groups {
            let list: Vec<Rcpt> = idx.iter().map(|&i| rcpts[i].clone()).collect();
            // A task whose delivery panicked leaves its recipients temporary.
            for &i in &idx {
                out[i] = Some(Err(Failure::temp("delivery task failed")));
            }
            let (me, sender, params, message) = (
                self.clone(),
                sender.to_string(),
                mail_params.to_vec(),
                message.clone(),
            );
            tasks.spawn(async move {
                let d = me.deliver(&hop, &sender, &params, &list, &message).await;
                (idx, d)
            });
        }
        let mut stopped = None;
        while let Some(joined) = tasks.join_next().await {
            let Ok((idx, d)) = joined else { continue };
            if d.stopped.is_some() {
                stopped = stopped.or(d.stopped);
                for (k, &i) in idx.iter().enumerate() {
                    // A recipient refused before the stop is still refused.
                    out[i] = d.stopped_rcpts.get(k).cloned().flatten().map(Err);
                }
            }
            for (i, o) in idx.into_iter().zip(d.rcpts) {
                out[i] = Some(o);
            }
        }
        Deliveries {
            rcpts: out,
            stopped,
        }
    }

    /// Delivers `message` from `sender` to `rcpts` (all for `hop`); one outcome per recipient,
    /// in order. Never fails as a whole: every problem becomes a per-recipient [`Failure`].
    /// At most `max_recipients_per_transaction` recipients go in one transaction (RFC 5321
    /// §4.5.3.1.8 only promises 100; Postfix sends 50), the next ones in the following
    /// transactions of the same session.
    ///
    /// `mail_params` (RET=, ENVID=) and each recipient's `params` (NOTIFY=, ORCPT=) are sent
    /// only to a server that announces DSN (RFC 3461 §4).
    pub async fn deliver(
        &self,
        hop: &NextHop,
        sender: &str,
        mail_params: &[String],
        rcpts: &[Rcpt],
        message: &[u8],
    ) -> Delivery {
        let limit = self.config.max_recipients_per_transaction.max(1);
        let mut all = Delivery::default();
        // No recipients still means one session (msend --quit-after tests a server that way).
        let chunks: Vec<&[Rcpt]> = if rcpts.is_empty() {
            vec![rcpts]
        } else {
            rcpts.chunks(limit).collect()
        };
        for chunk in chunks {
            let d = self
                .transaction(hop, sender, mail_params, chunk, message)
                .await;
            // One transaction (or a stop) is the whole delivery, with its failure.
            if d.stopped.is_some() || chunk.len() == rcpts.len() {
                return d;
            }
            all.rcpts.extend(d.rcpts);
        }
        all
    }

    /// One transaction for `rcpts`, over a cached session or a new one.
    async fn transaction(
        &self,
        hop: &NextHop,
        sender: &str,
        mail_params: &[String],
        rcpts: &[Rcpt],
        message: &[u8],
    ) -> Delivery {
        let key = hop.key();
        let Ok(_global) = self.global.clone().acquire_owned().await else {
            return Delivery::all(rcpts, &Failure::temp("shutting down"));
        };
        let Ok(_dest) = self.destination_limit(&key).acquire_owned().await else {
            return Delivery::all(rcpts, &Failure::temp("shutting down"));
        };
        let envelope = |conn: &Connection<TcpStream>| {
            let dsn = conn.client().extensions().dsn;
            Envelope {
                from: sender.to_string(),
                rcpts: rcpts.iter().map(|r| r.address.clone()).collect(),
                mail_params: if dsn {
                    mail_params.to_vec()
                } else {
                    Vec::new()
                },
                rcpt_params: if dsn {
                    rcpts.iter().map(|r| r.params.clone()).collect()
                } else {
                    Vec::new()
                },
            }
        };
        // A cached session first; if the server dropped it meanwhile, fall through to a new one.
        while let Some(mut idle) = self.take_idle(&key) {
            let env = envelope(&idle.conn);
            let dsn = idle.conn.client().extensions().dsn;
            match idle.conn.send(env, message).await {
                Err(
                    DriverError::Eof(Stage::Mail)
                    | DriverError::Io {
                        stage: Stage::Mail, ..
                    }
                    | DriverError::Timeout(Stage::Mail),
                ) => continue,
                result => {
                    let stops = idle.conn.client().stopped_rcpts();
                    let out = finish(result, stops, rcpts, &idle.host, &idle.relay, dsn);
                    self.put_idle(&key, idle).await;
                    return out;
                }
            }
        }
        if let Some(f) = self.dead_failure(&key) {
            return Delivery::all(rcpts, &f);
        }
        let candidates = match self.candidates(hop).await {
            Ok(c) => c,
            Err(f) => return Delivery::all(rcpts, &f),
        };
        let mut last = Failure::temp(format!("{hop}: no host reachable"));
        for (n, (host, port, tls)) in candidates.into_iter().enumerate() {
            let tls = match self.dane_host(hop, &host, port, tls).await {
                Ok(t) => t,
                Err(f) => {
                    self.say(format_args!("{host}: {}", f.message));
                    last = f;
                    continue;
                }
            };
            let looked_up = match (host.parse::<std::net::IpAddr>(), self.resolver()) {
                (Ok(ip), _) => Ok(vec![ip]),
                (Err(_), Ok(dns)) => dns.addresses(&host).await,
                (Err(_), Err(f)) => {
                    last = f;
                    continue;
                }
            };
            let addrs = match looked_up {
                Ok(a) => a,
                Err(e) => {
                    // One bad MX host: the others may work; the domain is fine (temporary).
                    self.say(format_args!("{host}: {e}"));
                    last = Failure::new(true, format!("{host}: {e}"), "4.4.3").because(What::Dns);
                    continue;
                }
            };
            // Hosts more preferred than this one were tried: a loop here makes us a backup MX.
            let backup = n > 0;
            for ip in addrs {
                let addr = SocketAddr::new(ip, port);
                // A DANE-authenticated session says so in the log and DSN (RFC 7672 §3).
                let dane = if tls.dane_verified { " (DANE)" } else { "" };
                let relay = format!("{host}[{ip}]:{port}{dane}");
                if self.myself.as_ref().is_some_and(|m| m.listens_on(addr)) {
                    let why = format!("{hop}: {relay} is one of our own listeners");
                    let earlier = backup.then_some(&last);
                    return Delivery::all(rcpts, &self.loops_back(&why, rcpts, earlier));
                }
                let conn = match self.open(&host, addr, tls.clone()).await {
                    Ok(Opened::Ready(c)) => *c,
                    Ok(Opened::Stopped(stage)) => return Delivery::stopped(stage),
                    Ok(Opened::Myself(why)) => {
                        let why = format!("{hop}: {relay} {why}");
                        let earlier = backup.then_some(&last);
                        return Delivery::all(rcpts, &self.loops_back(&why, rcpts, earlier));
                    }
                    Err(f) => {
                        self.say(format_args!("{}", f.message));
                        // A permanent answer before any transaction (5xx greeting or EHLO,
                        // AUTH refused) is the host's word; it still may be one bad MX.
                        last = f;
                        continue;
                    }
                };
                let mut idle = Idle {
                    conn,
                    relay,
                    host: host.clone(),
                    since: Instant::now(),
                    used: 0,
                };
                let env = envelope(&idle.conn);
                let dsn = idle.conn.client().extensions().dsn;
                let result = idle.conn.send(env, message).await;
                let stops = idle.conn.client().stopped_rcpts();
                let out = finish(result, stops, rcpts, &idle.host, &idle.relay, dsn);
                if out.stopped.is_some() {
                    return out;
                }
                self.put_idle(&key, idle).await;
                return out;
            }
        }
        if last.temporary {
            self.mark_dead(&key, &last);
        }
        Delivery::all(rcpts, &last)
    }

    /// Verbose progress on stderr (msend `-v`).
    fn say(&self, line: std::fmt::Arguments<'_>) {
        if self.options.verbose {
            eprintln!("=== {line}");
        }
    }

    /// Hosts to try for `hop`, in order, with their port and client TLS mode.
    async fn candidates(&self, hop: &NextHop) -> Result<Vec<(String, u16, TlsChoice)>, Failure> {
        match hop {
            NextHop::Relayhost(RelayRoute {
                relayhost,
                tls,
                user,
                password_command,
                mechanism,
            }) => {
                let auth = match (user, password_command) {
                    _ if self.options.credentials.is_some() => self.options.credentials.clone(),
                    (Some(u), Some(cmd)) => Some(Credentials {
                        mechanism: *mechanism,
                        server: (relayhost.host.clone(), relayhost.port),
                        user: u.clone(),
                        password: password_from_command_async(
                            cmd,
                            Duration::from_secs(self.config.relayhost_password_timeout_secs),
                        )
                        .await
                        .map_err(|e| {
                            Failure::new(true, format!("relayhost password: {e}"), "4.7.0")
                                .because(What::Auth)
                        })?,
                    }),
                    (Some(u), None) => {
                        return Err(Failure::new(
                            true,
                            format!("relayhost user {u} has no relayhost_password_command"),
                            "4.7.0",
                        )
                        .because(What::Auth))
                    }
                    _ => None,
                };
                let choice = self.tls_choice(tls, auth)?;
                Ok(vec![(relayhost.host.clone(), relayhost.port, choice)])
            }
            NextHop::Mx { domain, tls } => {
                let route = self
                    .resolver()?
                    .route(domain)
                    .await
                    .map_err(|e| dns_failure(&e))?;
                if self.options.verbose {
                    let hosts: Vec<String> = route
                        .hosts
                        .iter()
                        .map(|h| format!("{} ({})", h.name, h.preference))
                        .collect();
                    let kind = if route.implicit { "implicit MX" } else { "MX" };
                    eprintln!("=== {domain}: {kind} {}", hosts.join(", "));
                }
                let mut choice = self.tls_choice(tls, None)?;
                // RFC 7672 §2.2.1: DANE needs a DNSSEC-secure MX RRset; decided before MTA-STS
                // so that usable TLSA records take precedence over its policy (RFC 8461 §2).
                choice.dane = match &self.secure {
                    Some(r) if tls.mode != tls::Mode::Off && tls.verify == Verify::None => {
                        super::dane::mx_secure(r, domain).await?
                    }
                    _ => false,
                };
                let mut hosts = route.hosts;
                if let Some((sts, verify)) = &self.mta_sts {
                    if let Some(active) = sts.policy(self.resolver()?, domain).await {
                        self.say(format_args!(
                            "{domain}: MTA-STS policy {} ({}): mode {}, mx {}",
                            active.id,
                            active.source,
                            active.policy.mode.as_str(),
                            active.policy.mx.join(" ")
                        ));
                        hosts = apply_sts(domain, &active, hosts, &mut choice, verify)?;
                    }
                }
                Ok(hosts
                    .into_iter()
                    .map(|h| (h.name, self.config.port, choice.clone()))
                    .collect())
            }
        }
    }

    /// The TLS mode, rustls config and AUTH for a candidate host under `policy`.
    fn tls_choice(
        &self,
        policy: &tls::Policy,
        auth: Option<Credentials>,
    ) -> Result<TlsChoice, Failure> {
        let config = match self.trust.get(&policy.verify) {
            Some(c) => c.clone(),
            // Not reached: every policy of the routes has its config from the start.
            None => policy
                .verify
                .client_config()
                .map_err(|e| Failure::temp(format!("TLS setup: {e:#}")).because(What::Other))?,
        };
        Ok(TlsChoice {
            mode: policy.mode,
            config,
            auth,
            sts: None,
            dane: false,
            dane_verified: false,
        })
    }

    /// `tls` for MX host `host` after its DANE look-ups (RFC 7672 §2.2, [`super::dane`]):
    /// unchanged unless the MX answer was secure and the host's TLSA records are.
    async fn dane_host(
        &self,
        hop: &NextHop,
        host: &str,
        port: u16,
        mut tls: TlsChoice,
    ) -> Result<TlsChoice, Failure> {
        let (Some(r), true, NextHop::Mx { domain, .. }) = (&self.secure, tls.dane, hop) else {
            return Ok(tls);
        };
        match super::dane::host(r, host, port).await? {
            super::dane::HostDane::Insecure => {}
            super::dane::HostDane::Unusable => {
                self.say(format_args!(
                    "{host}: DANE: TLSA records unusable, TLS required"
                ));
                tls.mode = tls::Mode::Starttls;
                // An MTA-STS `testing` fallback must not go back to clear text either.
                if let Some((mode, _)) = tls.sts.as_mut().and_then(|n| n.fallback.as_mut()) {
                    *mode = tls::Mode::Starttls;
                }
            }
            super::dane::HostDane::Verify(records) => {
                self.say(format_args!(
                    "{host}: DANE: {} usable TLSA record(s), TLS required",
                    records.len()
                ));
                tls.mode = tls::Mode::Starttls;
                tls.config = super::dane::config(records, host, domain);
                tls.dane_verified = true;
                // RFC 8461 §2: DANE, where usable, takes precedence over an MTA-STS policy.
                tls.sts = None;
            }
        }
        Ok(tls)
    }

    /// Connects and runs the session up to "ready"; opportunistic TLS that fails to handshake
    /// is retried once in clear.
    async fn open(&self, host: &str, addr: SocketAddr, tls: TlsChoice) -> Result<Opened, Failure> {
        let where_ = format!("{host}[{}]:{}", addr.ip(), addr.port());
        let mut mode = tls.mode;
        let mut config = tls.config.clone();
        let mut sts = tls.sts.clone();
        loop {
            let stream = connect_tcp(addr, self.timeouts.connect)
                .await
                .map_err(|e| {
                    Failure::new(true, format!("{where_}: connect: {e}"), "4.4.1")
                        .because(What::Connect)
                })?;
            self.opened
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.say(format_args!("Connected to {where_}"));
            // The certificate must match the name we looked up (MX target or relayhost).
            let name = ServerName::try_from(host.to_string())
                .or_else(|_| ServerName::try_from("invalid.invalid".to_string()))
                .map_err(|e| Failure::perm(format!("{host}: {e}")))?;
            let settings = Settings {
                ehlo_name: self.ehlo_name.clone(),
                tls: mode,
                auth: tls.auth.clone(),
                quit_after: self.options.quit_after,
            };
            let transcript: Option<Transcript> = if self.options.verbose {
                Some(Box::new(|line: &str| eprintln!("{line}")))
            } else {
                None
            };
            let mut conn = Connection::new(
                stream,
                settings,
                Some((config.clone(), name)),
                self.timeouts,
                transcript,
            );
            match conn.open().await {
                Ok(Progress::Ready) => {
                    let looped = self.myself.as_ref().and_then(|me| {
                        let client = conn.client();
                        let banner = client.greeting().and_then(|g| g.lines.first());
                        [banner.map(String::as_str), client.hello_line()]
                            .into_iter()
                            .flatten()
                            .find(|l| me.is_my_name(l))
                            .map(|l| format!("greets with our own hostname ({l})"))
                    });
                    if let Some(why) = looped {
                        conn.quit().await;
                        return Ok(Opened::Myself(why));
                    }
                    return Ok(Opened::Ready(Box::new(conn)));
                }
                Ok(Progress::Stopped(stage)) => return Ok(Opened::Stopped(stage)),
                Ok(other) => {
                    return Err(Failure::temp(format!(
                        "{where_}: unexpected session state {other:?}"
                    )))
                }
                Err(DriverError::Tls(e) | DriverError::Trust(e))
                    if mode == tls::Mode::Opportunistic =>
                {
                    if self.options.verbose {
                        eprintln!("=== {where_}: TLS handshake failed ({e}); retrying without TLS");
                    } else {
                        crate::log::line(format_args!(
                            "{where_}: TLS handshake failed ({e}); retrying without TLS"
                        ));
                    }
                    mode = tls::Mode::Off;
                }
                Err(e) => match sts.take() {
                    // testing (RFC 8461 §5): report, then deliver as without a policy.
                    Some(StsNote {
                        what,
                        fallback: Some((m, c)),
                    }) if is_tls_failure(&e) => {
                        crate::log::line(format_args!(
                            "mta-sts: {what}: {where_}: {e}; delivering anyway (testing)"
                        ));
                        (mode, config) = (m, c);
                    }
                    // enforce: deferred; the queue and the DSN name the policy.
                    Some(StsNote { what, .. }) => {
                        let mut f = session_failure(&e, host, &where_);
                        f.message = format!("{what}: {}", f.message);
                        return Err(f);
                    }
                    None => return Err(session_failure(&e, host, &where_)),
                },
            }
        }
    }
}

/// Whether a session failed for TLS: handshake, certificate, or no STARTTLS offered.
fn is_tls_failure(e: &DriverError) -> bool {
    matches!(
        e,
        DriverError::Tls(_)
            | DriverError::Trust(_)
            | DriverError::Smtp(crate::smtp::client::Error::TlsUnavailable)
    )
}

/// A session ready for a transaction, stopped by `--quit-after`, or closed because the
/// server is this host (why).
enum Opened {
    Ready(Box<Connection<TcpStream>>),
    Stopped(Stage),
    Myself(String),
}

/// What one [`Engine::deliver`] call came to.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// Per recipient, in order (empty when stopped early).
    pub rcpts: Vec<RcptOutcome>,
    /// `--quit-after` stopped the session at this stage; nothing was sent.
    pub stopped: Option<Stage>,
    /// After a stop at RCPT: per recipient, in order, the server's refusal (`None`: it
    /// accepted the recipient). Empty otherwise.
    pub stopped_rcpts: Vec<Option<Failure>>,
    /// The one failure every recipient got, when the session or the whole transaction failed;
    /// set also when there were no recipients (msend's `--quit-after` session without any).
    pub failure: Option<Failure>,
}

impl Delivery {
    fn all(rcpts: &[Rcpt], f: &Failure) -> Delivery {
        Delivery {
            rcpts: rcpts.iter().map(|_| Err(f.clone())).collect(),
            failure: Some(f.clone()),
            ..Delivery::default()
        }
    }

    fn stopped(stage: Stage) -> Delivery {
        Delivery {
            stopped: Some(stage),
            ..Delivery::default()
        }
    }
}

/// What one [`Engine::deliver_all`] call came to.
#[derive(Debug, Clone, Default)]
pub struct Deliveries {
    /// Per recipient, in order; `None` when its session stopped at `--quit-after` (a
    /// recipient the server refused before a stop at RCPT has its failure).
    pub rcpts: Vec<Option<RcptOutcome>>,
    /// `--quit-after` stopped a session at this stage.
    pub stopped: Option<Stage>,
}

/// Maps a transaction result to per-recipient outcomes; `stopped_rcpts` are the RCPT replies
/// of a transaction stopped at RCPT ([`crate::smtp::client::Client::stopped_rcpts`]).
fn finish(
    result: Result<Progress, DriverError>,
    stopped_rcpts: &[RcptResult],
    rcpts: &[Rcpt],
    host: &str,
    relay: &str,
    dsn_passed: bool,
) -> Delivery {
    match result {
        Ok(Progress::Done(outcome)) => {
            let mut out: Vec<RcptOutcome> = outcome
                .rcpts
                .iter()
                .map(|r| {
                    if r.accepted() {
                        Ok(Sent {
                            how: format!("relay={relay} ({})", one_line(&r.reply)),
                            dsn_passed,
                            host: host.to_string(),
                        })
                    } else {
                        Err(reply_failure(&r.reply, host, relay, r.stage))
                    }
                })
                .collect();
            // The client answers for every recipient; be safe if it did not.
            while out.len() < rcpts.len() {
                out.push(Err(Failure::temp(format!("{relay}: no result"))));
            }
            Delivery {
                rcpts: out,
                ..Delivery::default()
            }
        }
        Ok(Progress::Stopped(stage)) => Delivery {
            stopped_rcpts: stopped_rcpts
                .iter()
                .map(|r| {
                    (!r.reply.is_positive()).then(|| reply_failure(&r.reply, host, relay, r.stage))
                })
                .collect(),
            ..Delivery::stopped(stage)
        },
        Ok(Progress::Ready) => Delivery::all(rcpts, &Failure::temp(format!("{relay}: no outcome"))),
        Err(e) => Delivery::all(rcpts, &session_failure(&e, host, relay)),
    }
}

/// TLS mode, certificate check (as a rustls config) and AUTH for one candidate host.
#[derive(Clone)]
struct TlsChoice {
    mode: tls::Mode,
    config: Arc<ClientConfig>,
    auth: Option<Credentials>,
    /// The MTA-STS policy that set `mode` and `config`.
    sts: Option<StsNote>,
    /// The MX answer was DNSSEC-secure: look up the host's TLSA records (RFC 7672 §2.2).
    dane: bool,
    /// The certificate is checked against the host's usable TLSA records.
    dane_verified: bool,
}

/// What an MTA-STS policy made of a candidate's TLS.
#[derive(Clone)]
struct StsNote {
    /// `MTA-STS policy ID of DOMAIN (MODE)`, for logs and DSNs.
    what: String,
    /// `testing`: the TLS the config asks for, used (after a log line) when the policy's
    /// verified STARTTLS fails. `enforce`: none, the failure defers.
    fallback: Option<(tls::Mode, Arc<ClientConfig>)>,
}

/// What policy `active` of `domain` makes of the MX walk (RFC 8461 §5): `enforce` keeps only
/// matching hosts (none left: deferred, 4.7.5) and requires STARTTLS verified with `verify`;
/// `testing` keeps every host and tries the policy's TLS first, the configured TLS after a
/// logged failure; `none` changes nothing.
fn apply_sts(
    domain: &str,
    active: &mta_sts::Active,
    hosts: Vec<crate::dns::MxHost>,
    choice: &mut TlsChoice,
    verify: &Arc<ClientConfig>,
) -> Result<Vec<crate::dns::MxHost>, Failure> {
    let p = &active.policy;
    let what = format!(
        "MTA-STS policy {} of {domain} ({})",
        active.id,
        p.mode.as_str()
    );
    let (matching, other): (Vec<_>, Vec<_>) = hosts.into_iter().partition(|h| p.matches(&h.name));
    let names = |v: &[crate::dns::MxHost]| {
        v.iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match p.mode {
        mta_sts::Mode::None => Ok(matching.into_iter().chain(other).collect()),
        mta_sts::Mode::Enforce => {
            if !other.is_empty() {
                crate::log::line(format_args!(
                    "mta-sts: {what}: MX {} not in the policy, skipped",
                    names(&other)
                ));
            }
            if matching.is_empty() {
                return Err(Failure::new(
                    true,
                    format!(
                        "{what}: no MX host matches the policy (MX {}; policy mx {})",
                        names(&other),
                        p.mx.join(", ")
                    ),
                    "4.7.5",
                )
                .because(What::CertificateTrust));
            }
            *choice = TlsChoice {
                mode: tls::Mode::Starttls,
                config: verify.clone(),
                auth: None,
                sts: Some(StsNote {
                    what,
                    fallback: None,
                }),
                dane: choice.dane,
                dane_verified: false,
            };
            Ok(matching)
        }
        mta_sts::Mode::Testing => {
            if !other.is_empty() {
                crate::log::line(format_args!(
                    "mta-sts: {what}: MX {} not in the policy; delivering anyway (testing)",
                    names(&other)
                ));
            }
            *choice = TlsChoice {
                mode: tls::Mode::Starttls,
                config: verify.clone(),
                auth: None,
                sts: Some(StsNote {
                    what,
                    fallback: Some((choice.mode, choice.config.clone())),
                }),
                dane: choice.dane,
                dane_verified: false,
            };
            Ok(matching.into_iter().chain(other).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::config::{mx_tls, relayhost_tls, DomainPolicy};

    #[test]
    fn next_hop_prefers_domain_policy() {
        let mut c = RemoteConfig::default();
        c.domains.insert(
            "sec.test".into(),
            DomainPolicy {
                tls: mx_tls("verify"),
                ..Default::default()
            },
        );
        c.domains.insert(
            "via.test".into(),
            DomainPolicy {
                relayhost: Some("[127.0.0.1]:2525".into()),
                relayhost_tls: relayhost_tls("none"),
                ..Default::default()
            },
        );
        let r = Engine::new(c, "mx.test").unwrap();
        assert_eq!(
            r.next_hop("Sec.Test."),
            NextHop::Mx {
                domain: "sec.test".into(),
                tls: mx_tls("verify").unwrap()
            }
        );
        assert_eq!(
            r.next_hop("other.test"),
            NextHop::Mx {
                domain: "other.test".into(),
                tls: mx_tls("may").unwrap()
            }
        );
        match r.next_hop("via.test") {
            NextHop::Relayhost(r) => {
                assert_eq!(
                    (r.relayhost.host.as_str(), r.relayhost.port, r.tls),
                    ("127.0.0.1", 2525, relayhost_tls("none").unwrap())
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn unreachable_destination_is_not_retried_per_message() {
        // A port nobody listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = RemoteConfig {
            relayhost: Some(format!("[127.0.0.1]:{port}")),
            relayhost_tls: relayhost_tls("none").unwrap(),
            retry_initial_secs: 30,
            ..RemoteConfig::default()
        };
        let r = Engine::new(config, "mx.test").unwrap();
        let hop = r.next_hop("x.test");
        let rcpt = [Rcpt {
            address: "a@x.test".into(),
            params: Vec::new(),
        }];
        let first = r.deliver(&hop, "s@y.test", &[], &rcpt, b"x\r\n").await;
        let f = first.rcpts[0].clone().unwrap_err();
        assert!(f.temporary && f.message.contains("connect"), "{f:?}");
        assert_eq!(r.sessions_opened(), 0);
        let second = r.deliver(&hop, "s@y.test", &[], &rcpt, b"x\r\n").await;
        let f = second.rcpts[0].clone().unwrap_err();
        assert!(f.temporary && f.message.contains("not retried"), "{f:?}");
        r.forget_dead();
        let third = r.deliver(&hop, "s@y.test", &[], &rcpt, b"x\r\n").await;
        let f = third.rcpts[0].clone().unwrap_err();
        assert!(!f.message.contains("not retried"), "{f:?}");
    }
}
