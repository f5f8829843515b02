//! Remote delivery: recipients of non-local domains go to the domain's MX hosts (RFC 5321 §5.1)
//! or to a smarthost, over the one SMTP client ([`crate::smtp::client`]). Also used by
//! `msend --direct`, so the MX walk exists once.
//!
//! - MX hosts in preference order (equal preferences shuffled, [`crate::dns::order_hosts`]),
//!   the domain's own address when it has no MX, null MX and NXDOMAIN permanent; every address
//!   of a host is tried before the next host. Connection-level trouble (refused, timeout, 4xx
//!   greeting, a failed TLS handshake) moves on to the next address; once a transaction started,
//!   the replies decide.
//! - TLS per destination: `none`, `may` (opportunistic STARTTLS; a failed handshake is retried in
//!   clear, RFC 7435 §3), `encrypt` (STARTTLS required) or `verify` (required, and the
//!   certificate must verify for the MX name against webpki-roots or `ca_file`).
//! - Connections are cached: after a transaction the session goes back to a per-destination pool
//!   for `connection_idle_secs`, and the next message for that destination uses it (RSET/MAIL
//!   again). A cached session the server closed meanwhile is replaced by a fresh one.
//! - A global and a per-destination limit bound parallel sessions (Postfix's
//!   `default_process_limit` and `default_destination_concurrency_limit`).
//! - Mail loops (RFC 5321 §5.1): mrelayd's engine knows [`Myself`], its listeners and names. A
//!   next hop address that is one of our listeners (a wildcard listener stands for every local
//!   address at its port), or a server greeting (220 or EHLO) with our name, is not sent to:
//!   as the relayhost or best MX that is "mail for DOMAIN loops back to myself", a permanent
//!   5.4.6; after more preferred MX hosts we are a backup MX and the mail waits for them.
//!   Another server on one of our addresses at another port is another host.
//!
//! # Config
//! ```toml
//! [mrelayd.remote]
//! resolver = "127.0.0.1:53"     # DNS server (default: /etc/resolv.conf)
//! port = 25                     # SMTP port of MX hosts
//! helo_name = "mx.example.org"  # default: hostname
//! tls = "may"                   # none | may | encrypt | verify
//! ca_file = "/etc/ssl/ca.pem"   # trust anchors for verify (default: webpki-roots)
//! relayhost = "smtp.example.net:587"       # smarthost for everything (optional)
//! relayhost_tls = "starttls"               # none | may | starttls | tls (implicit)
//! relayhost_user = "me"                    # AUTH, only over TLS
//! relayhost_password_command = "cat /etc/mailkit/relay-password"
//! relayhost_password_timeout_secs = 30     # then the command's group is killed, delivery deferred
//! retry_initial_secs = 300                 # first retry, doubling ...
//! retry_max_secs = 3600                    # ... up to this
//! max_lifetime_secs = 432000               # then bounce (5 days)
//! delay_warning_secs = 14400               # "delayed" DSN after this long (0: never)
//! concurrency = 20                         # parallel remote sessions (<= delivery_workers)
//! destination_concurrency = 20             # per domain or relayhost
//! connect_timeout_secs = 30
//! command_timeout_secs = 300
//! data_timeout_secs = 600
//! connection_idle_secs = 5                 # keep a session this long for the next message
//! max_messages_per_connection = 100
//! max_recipients_per_transaction = 50       # more go in further transactions
//!
//! [mrelayd.remote.domains."example.net"]   # per destination domain
//! relayhost = "[10.0.0.1]:25"              # route it to a smarthost instead of its MX
//! tls = "verify"                           # or a stricter TLS policy for its MX
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::{dsn, Failure};
use crate::dns::{DnsError, MxResolver};
use crate::net::client::connect_tcp;
use crate::net::smtp::{Connection, DriverError, Progress, Timeouts, Transcript};
use crate::smtp::client::{Credentials, Envelope, Error as SmtpError, Settings, Stage, TlsMode};
use crate::smtp::reply::Reply;

/// Default SMTP port of MX hosts.
pub const DEFAULT_PORT: u16 = 25;
/// Default first retry after a temporary failure (about 5 minutes, like Postfix).
pub const DEFAULT_RETRY_INITIAL_SECS: u64 = crate::queue::FIRST_RETRY_INTERVAL.as_secs();
/// Default longest wait between retries.
pub const DEFAULT_RETRY_MAX_SECS: u64 = crate::queue::MAX_RETRY_INTERVAL.as_secs();
/// Default time a message may stay queued before it bounces (5 days).
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = crate::queue::MAX_QUEUE_LIFETIME.as_secs();
/// Default age at which a delay warning goes out (4 hours, like sendmail).
pub const DEFAULT_DELAY_WARNING_SECS: u64 = 4 * 3600;
/// Default parallel remote sessions.
pub const DEFAULT_CONCURRENCY: usize = 20;
/// Default parallel sessions per destination.
pub const DEFAULT_DESTINATION_CONCURRENCY: usize = 20;
/// Default time an idle session is kept for the next message.
pub const DEFAULT_CONNECTION_IDLE_SECS: u64 = 5;
/// Default transactions per session before it is closed.
pub const DEFAULT_MAX_MESSAGES_PER_CONNECTION: u32 = 100;
/// Default recipients per transaction (Postfix's `smtp_destination_recipient_limit`).
pub const DEFAULT_MAX_RECIPIENTS_PER_TRANSACTION: usize = 50;
/// Destinations whose concurrency limit is remembered before idle ones are forgotten.
const MAX_TRACKED_DESTINATIONS: usize = 10_000;
/// Longest time a destination no host of which answered is deferred without a new try.
const MAX_DEAD_SECS: u64 = 60;
/// How often idle cached sessions are checked for expiry.
const REAPER_TICK: Duration = Duration::from_millis(500);

/// TLS policy for MX delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, certificate not checked (RFC 7435 opportunistic security).
    #[default]
    May,
    /// STARTTLS required, certificate not checked.
    Encrypt,
    /// STARTTLS required and the certificate must verify for the MX host name.
    Verify,
}

/// TLS for a smarthost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RelayhostTls {
    /// Plain SMTP.
    None,
    /// Opportunistic STARTTLS.
    May,
    /// STARTTLS required, certificate verified for the relayhost name.
    #[default]
    Starttls,
    /// Implicit TLS (port 465, RFC 8314), certificate verified.
    Tls,
}

/// Per destination domain overrides (`[mrelayd.remote.domains."DOMAIN"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainPolicy {
    /// Smarthost for this domain instead of its MX.
    pub relayhost: Option<String>,
    /// TLS policy for this domain's MX hosts.
    pub tls: Option<TlsPolicy>,
    /// TLS for this domain's relayhost.
    pub relayhost_tls: Option<RelayhostTls>,
    /// AUTH user for this domain's relayhost.
    pub relayhost_user: Option<String>,
    /// Command printing the AUTH password.
    pub relayhost_password_command: Option<String>,
}

/// The `[mrelayd.remote]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// DNS server `IP[:PORT]`; unset: the system's resolver.
    pub resolver: Option<String>,
    /// SMTP port of MX hosts.
    pub port: u16,
    /// EHLO name (default: the top-level `hostname`).
    pub helo_name: Option<String>,
    /// TLS policy for MX delivery.
    pub tls: TlsPolicy,
    /// Trust anchors for `verify` and relayhost TLS (default: webpki-roots).
    pub ca_file: Option<PathBuf>,
    /// Smarthost for every remote recipient: `host`, `host:port` or `[host]:port`.
    pub relayhost: Option<String>,
    /// TLS for the relayhost.
    pub relayhost_tls: RelayhostTls,
    /// AUTH user for the relayhost.
    pub relayhost_user: Option<String>,
    /// Command whose first output line is the relayhost AUTH password.
    pub relayhost_password_command: Option<String>,
    /// Seconds a password command may run before it is killed and the delivery deferred.
    pub relayhost_password_timeout_secs: u64,
    /// First retry after a temporary failure (doubling per attempt).
    pub retry_initial_secs: u64,
    /// Longest wait between retries.
    pub retry_max_secs: u64,
    /// After this long in the queue a message bounces.
    pub max_lifetime_secs: u64,
    /// Age after which a delay DSN goes out; 0: never.
    pub delay_warning_secs: u64,
    /// Parallel remote sessions (within `delivery_workers`, which bounds all deliveries).
    pub concurrency: usize,
    /// Parallel sessions per destination.
    pub destination_concurrency: usize,
    /// TCP connect timeout.
    pub connect_timeout_secs: u64,
    /// Reply timeout per command (RFC 5321 §4.5.3.2: at least 5 minutes).
    pub command_timeout_secs: u64,
    /// Timeout for the reply after the message body (RFC 5321: 10 minutes).
    pub data_timeout_secs: u64,
    /// How long an idle session is kept for the next message to the same destination.
    pub connection_idle_secs: u64,
    /// Transactions per session.
    pub max_messages_per_connection: u32,
    /// Recipients per transaction; more go in further transactions.
    pub max_recipients_per_transaction: usize,
    /// Per destination domain overrides.
    pub domains: BTreeMap<String, DomainPolicy>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            resolver: None,
            port: DEFAULT_PORT,
            helo_name: None,
            tls: TlsPolicy::May,
            ca_file: None,
            relayhost: None,
            relayhost_tls: RelayhostTls::Starttls,
            relayhost_user: None,
            relayhost_password_command: None,
            relayhost_password_timeout_secs: PASSWORD_COMMAND_TIMEOUT.as_secs(),
            retry_initial_secs: DEFAULT_RETRY_INITIAL_SECS,
            retry_max_secs: DEFAULT_RETRY_MAX_SECS,
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            delay_warning_secs: DEFAULT_DELAY_WARNING_SECS,
            concurrency: DEFAULT_CONCURRENCY,
            destination_concurrency: DEFAULT_DESTINATION_CONCURRENCY,
            connect_timeout_secs: 30,
            command_timeout_secs: 300,
            data_timeout_secs: 600,
            connection_idle_secs: DEFAULT_CONNECTION_IDLE_SECS,
            max_messages_per_connection: DEFAULT_MAX_MESSAGES_PER_CONNECTION,
            max_recipients_per_transaction: DEFAULT_MAX_RECIPIENTS_PER_TRANSACTION,
            domains: BTreeMap::new(),
        }
    }
}

impl RemoteConfig {
    /// The retry schedule of this config.
    pub fn retry(&self) -> crate::queue::Retry {
        crate::queue::Retry {
            initial: self.retry_initial_secs.max(1),
            max: self.retry_max_secs.max(self.retry_initial_secs).max(1),
        }
    }

    /// Checks what can be checked without the network (addresses, relayhost syntax, CA file).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(r) = &self.resolver {
            crate::dns::parse_server(r).map_err(|e| format!("mrelayd.remote.resolver: {e}"))?;
        }
        if let Some(h) = &self.relayhost {
            parse_relayhost(h).map_err(|e| format!("mrelayd.remote.relayhost: {e}"))?;
        }
        for (d, p) in &self.domains {
            if let Some(h) = &p.relayhost {
                parse_relayhost(h)
                    .map_err(|e| format!("mrelayd.remote.domains.{d:?}.relayhost: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Parses `host`, `host:port`, `[host]` or `[host]:port` (brackets: Postfix's "no MX lookup",
/// which is what a relayhost always means here). Default port 25.
pub fn parse_relayhost(s: &str) -> Result<(String, u16), String> {
    let (host, port) = crate::dns::split_host_port(s.trim())?;
    Ok((host, port.unwrap_or(DEFAULT_PORT)))
}

/// Where a group of recipients goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// The domain's MX hosts.
    Mx {
        /// Recipient domain.
        domain: String,
        /// TLS policy.
        tls: TlsPolicy,
    },
    /// A smarthost.
    Relayhost {
        /// Host name or IP.
        host: String,
        /// Port.
        port: u16,
        /// TLS.
        tls: RelayhostTls,
        /// AUTH user.
        user: Option<String>,
        /// Command printing the password.
        password_command: Option<String>,
    },
}

impl NextHop {
    /// Key of the connection cache and of the per-destination limit.
    fn key(&self) -> String {
        match self {
            NextHop::Mx { domain, tls } => format!("mx:{domain}/{tls:?}"),
            // Sessions are authenticated and TLS-set per user and mode: never share them
            // between domains routed to the same relayhost with other credentials.
            NextHop::Relayhost {
                host,
                port,
                tls,
                user,
                ..
            } => format!(
                "relay:{}@[{host}]:{port}/{tls:?}",
                user.as_deref().unwrap_or("")
            ),
        }
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextHop::Mx { domain, .. } => write!(f, "MX of {domain}"),
            NextHop::Relayhost { host, port, .. } => write!(f, "relayhost [{host}]:{port}"),
        }
    }
}

/// This host, as loop detection sees it (RFC 5321 §5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Myself {
    /// Our listening sockets; an unspecified address (`0.0.0.0`, `[::]`) stands for every
    /// address of this host at that port.
    pub listeners: Vec<SocketAddr>,
    /// The names we greet with (hostname, helo_name), compared without case.
    pub names: Vec<String>,
}

impl Myself {
    /// Whether a connection to `addr` would reach one of our own listeners.
    pub fn listens_on(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.listeners.iter().any(|l| {
            let lip = l.ip().to_canonical();
            l.port() == addr.port()
                && (lip == ip
                    // A `[::]` socket takes IPv4 too (dual stack), `0.0.0.0` only IPv4.
                    || (lip.is_unspecified()
                        && (lip.is_ipv6() || ip.is_ipv4())
                        && is_local_address(ip)))
        })
    }

    /// Whether a greeting or EHLO reply line (`mx.example.org ESMTP ...`) names us: its first
    /// word is one of our names.
    pub fn is_my_name(&self, line: &str) -> bool {
        let Some(word) = line.split_ascii_whitespace().next() else {
            return false;
        };
        let word = word.trim_end_matches('.');
        self.names
            .iter()
            .any(|n| !n.is_empty() && n.trim_end_matches('.').eq_ignore_ascii_case(word))
    }
}

/// Whether `ip` is an address of this host: loopback, or one a socket can be bound to (an
/// address no interface has gives EADDRNOTAVAIL).
fn is_local_address(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind((ip, 0)).is_ok()
}

/// A failure decided by a server reply.
fn reply_failure(reply: &Reply, host: &str, where_: &str, stage: Stage) -> Failure {
    let line = one_line(reply);
    Failure {
        temporary: !reply.is_permanent(),
        message: format!("{where_} said at {stage}: {line}"),
        // The whole reply: `text()` has the enhanced code taken off.
        status: dsn::status_of_reply(reply.code, &line),
        diagnostic: Some(line),
        remote_mta: Some(host.to_string()),
        stage: Some(stage),
    }
}

/// A reply as one line (`550 5.1.1 no such user`), multi-line replies joined.
fn one_line(reply: &Reply) -> String {
    let text = String::from_utf8_lossy(&reply.to_bytes()).into_owned();
    let parts: Vec<&str> = text
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| l.get(4..).unwrap_or(""))
        .collect();
    format!("{} {}", reply.code, parts.join(" "))
}

/// A recipient the next hop accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// `relay=host[ip]:port (250 ...)`, for logs.
    pub how: String,
    /// The next hop announced DSN, so NOTIFY/ORCPT went along and it reports from now on; a
    /// hop without DSN means a `relayed` DSN is owed for NOTIFY=SUCCESS (RFC 3461 §6.2.1.2).
    pub dsn_passed: bool,
    /// The host that accepted it (DSN Remote-MTA).
    pub host: String,
}

/// Delivery of one recipient: where it went, or why not.
pub type RcptOutcome = Result<Sent, Failure>;

/// One recipient handed to [`Remote::deliver`].
#[derive(Debug, Clone)]
pub struct RemoteRcpt {
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
pub struct Remote {
    config: RemoteConfig,
    ehlo_name: String,
    /// The resolver, or why it could not be set up (a missing /etc/resolv.conf must not stop
    /// delivery to a relayhost given by IP address).
    dns: Result<MxResolver, String>,
    tls_verify: Arc<ClientConfig>,
    tls_any: Arc<ClientConfig>,
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
}

/// Session options for interactive use (msend): transcript, `--quit-after`, and credentials
/// given directly instead of a password command.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Print the dialogue and progress on stderr.
    pub verbose: bool,
    /// Stop (QUIT) after this stage.
    pub quit_after: Option<Stage>,
    /// AUTH credentials for a relayhost.
    pub credentials: Option<Credentials>,
    /// Time limits instead of the config's.
    pub timeouts: Option<Timeouts>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("config", &self.config)
            .field("ehlo_name", &self.ehlo_name)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// Builds the engine from the config; `hostname` is the default EHLO name.
    pub fn new(config: RemoteConfig, hostname: &str) -> anyhow::Result<Remote> {
        Remote::with_options(config, hostname, ClientOptions::default())
    }

    /// [`new`](Self::new) with interactive session options.
    pub fn with_options(
        config: RemoteConfig,
        hostname: &str,
        options: ClientOptions,
    ) -> anyhow::Result<Remote> {
        config.validate().map_err(anyhow::Error::msg)?;
        let server = match &config.resolver {
            Some(r) => Some(crate::dns::parse_server(r).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let dns = MxResolver::new(server);
        let tls_verify = crate::tls::client_config(config.ca_file.as_deref())?;
        let timeouts = options.timeouts.unwrap_or(Timeouts {
            connect: Duration::from_secs(config.connect_timeout_secs.max(1)),
            command: Duration::from_secs(config.command_timeout_secs.max(1)),
            data_end: Duration::from_secs(config.data_timeout_secs.max(1)),
        });
        Ok(Remote {
            ehlo_name: config
                .helo_name
                .clone()
                .unwrap_or_else(|| hostname.to_string()),
            dns,
            tls_verify,
            tls_any: crate::tls::client_config_no_verify(),
            timeouts,
            global: Arc::new(Semaphore::new(config.concurrency.max(1))),
            per_destination: Mutex::new(HashMap::new()),
            idle: Arc::new(Mutex::new(HashMap::new())),
            dead: Mutex::new(HashMap::new()),
            opened: std::sync::atomic::AtomicU64::new(0),
            options,
            config,
            myself: None,
        })
    }

    /// This engine refuses next hops that are `myself` (RFC 5321 §5.1; see the module doc).
    /// mrelayd's does; msend's does not: it is the origin, not a relay.
    pub fn with_loop_check(mut self, myself: Myself) -> Remote {
        self.myself = Some(myself);
        self
    }

    /// The failure for a next hop that is this host (`why`), in the transaction for `rcpts`.
    /// As the first candidate (relayhost, best MX) the mail loops: 5.4.6 for good. After more
    /// preferred hosts (`earlier`: their last failure) we are a backup MX: the hosts after us
    /// are not tried and the mail gets their answer, normally a temporary one.
    fn loops_back(&self, why: &str, rcpts: &[RemoteRcpt], earlier: Option<&Failure>) -> Failure {
        let mut domains: Vec<&str> = rcpts.iter().map(|r| super::split(&r.address).1).collect();
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
            ),
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
    /// or the domain's MX with its TLS policy.
    pub fn next_hop(&self, domain: &str) -> NextHop {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let policy = self.config.domains.get(&domain);
        let relay = policy
            .and_then(|p| p.relayhost.as_ref())
            .or(self.config.relayhost.as_ref());
        if let Some(r) = relay {
            if let Ok((host, port)) = parse_relayhost(r) {
                let per_domain = policy.filter(|p| p.relayhost.is_some());
                return NextHop::Relayhost {
                    host,
                    port,
                    tls: per_domain
                        .and_then(|p| p.relayhost_tls)
                        .unwrap_or(self.config.relayhost_tls),
                    user: per_domain
                        .and_then(|p| p.relayhost_user.clone())
                        .or_else(|| self.config.relayhost_user.clone()),
                    password_command: per_domain
                        .and_then(|p| p.relayhost_password_command.clone())
                        .or_else(|| self.config.relayhost_password_command.clone()),
                };
            }
        }
        NextHop::Mx {
            tls: policy.and_then(|p| p.tls).unwrap_or(self.config.tls),
            domain,
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
            .map_err(|e| Failure::new(true, format!("DNS: {e}"), "4.4.3"))
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
        rcpts: &[RemoteRcpt],
        message: &Arc<[u8]>,
    ) -> Deliveries {
        let mut out: Vec<Option<RcptOutcome>> = vec![None; rcpts.len()];
        let mut groups: Vec<(NextHop, Vec<usize>)> = Vec::new();
        for (i, r) in rcpts.iter().enumerate() {
            let (_, domain) = super::split(&r.address);
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
            let list: Vec<RemoteRcpt> = idx.iter().map(|&i| rcpts[i].clone()).collect();
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
                for &i in &idx {
                    out[i] = None;
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
        rcpts: &[RemoteRcpt],
        message: &[u8],
    ) -> Delivery {
        let limit = self.config.max_recipients_per_transaction.max(1);
        let mut all = Delivery::default();
        // No recipients still means one session (msend --quit-after tests a server that way).
        let chunks: Vec<&[RemoteRcpt]> = if rcpts.is_empty() {
            vec![rcpts]
        } else {
            rcpts.chunks(limit).collect()
        };
        for chunk in chunks {
            let d = self
                .transaction(hop, sender, mail_params, chunk, message)
                .await;
            if d.stopped.is_some() {
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
        rcpts: &[RemoteRcpt],
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
                    let out = finish(result, rcpts, &idle.host, &idle.relay, dsn);
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
                    last = Failure::new(true, format!("{host}: {e}"), "4.4.3");
                    continue;
                }
            };
            // Hosts more preferred than this one were tried: a loop here makes us a backup MX.
            let backup = n > 0;
            for ip in addrs {
                let addr = SocketAddr::new(ip, port);
                let relay = format!("{host}[{ip}]:{port}");
                if self.myself.as_ref().is_some_and(|m| m.listens_on(addr)) {
                    let why = format!("{hop}: {relay} is one of our own listeners");
                    let earlier = backup.then_some(&last);
                    return Delivery::all(rcpts, &self.loops_back(&why, rcpts, earlier));
                }
                let conn = match self.open(&host, addr, tls.clone()).await {
                    Ok(Opened::Ready(c)) => *c,
                    Ok(Opened::Stopped(stage)) => {
                        return Delivery {
                            rcpts: Vec::new(),
                            stopped: Some(stage),
                        }
                    }
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
                let out = finish(result, rcpts, &idle.host, &idle.relay, dsn);
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
            NextHop::Relayhost {
                host,
                port,
                tls,
                user,
                password_command,
            } => {
                let auth = match (user, password_command) {
                    _ if self.options.credentials.is_some() => self.options.credentials.clone(),
                    (Some(u), Some(cmd)) => Some(Credentials {
                        user: u.clone(),
                        password: password_from_command_async(
                            cmd,
                            Duration::from_secs(self.config.relayhost_password_timeout_secs),
                        )
                        .await
                        .map_err(|e| {
                            Failure::new(true, format!("relayhost password: {e}"), "4.7.0")
                        })?,
                    }),
                    (Some(u), None) => {
                        return Err(Failure::new(
                            true,
                            format!("relayhost user {u} has no relayhost_password_command"),
                            "4.7.0",
                        ))
                    }
                    _ => None,
                };
                let choice = match tls {
                    RelayhostTls::None => TlsChoice::new(TlsMode::Off, false, auth),
                    RelayhostTls::May => TlsChoice::new(TlsMode::Opportunistic, false, auth),
                    RelayhostTls::Starttls => TlsChoice::new(TlsMode::Required, true, auth),
                    RelayhostTls::Tls => TlsChoice::new(TlsMode::Implicit, true, auth),
                };
                Ok(vec![(host.clone(), *port, choice)])
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
                let choice = match tls {
                    TlsPolicy::None => TlsChoice::new(TlsMode::Off, false, None),
                    TlsPolicy::May => TlsChoice::new(TlsMode::Opportunistic, false, None),
                    TlsPolicy::Encrypt => TlsChoice::new(TlsMode::Required, false, None),
                    TlsPolicy::Verify => TlsChoice::new(TlsMode::Required, true, None),
                };
                Ok(route
                    .hosts
                    .into_iter()
                    .map(|h| (h.name, self.config.port, choice.clone()))
                    .collect())
            }
        }
    }

    /// Connects and runs the session up to "ready"; opportunistic TLS that fails to handshake
    /// is retried once in clear.
    async fn open(&self, host: &str, addr: SocketAddr, tls: TlsChoice) -> Result<Opened, Failure> {
        let where_ = format!("{host}[{}]:{}", addr.ip(), addr.port());
        let mut mode = tls.mode;
        loop {
            let stream = connect_tcp(addr, self.timeouts.connect)
                .await
                .map_err(|e| Failure::new(true, format!("{where_}: connect: {e}"), "4.4.1"))?;
            self.opened
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.say(format_args!("Connected to {where_}"));
            let config = if tls.verify {
                self.tls_verify.clone()
            } else {
                self.tls_any.clone()
            };
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
                Some((config, name)),
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
                Err(DriverError::Tls(e)) if mode == TlsMode::Opportunistic => {
                    if self.options.verbose {
                        eprintln!("=== {where_}: TLS handshake failed ({e}); retrying without TLS");
                    } else {
                        crate::log::line(format_args!(
                            "{where_}: TLS handshake failed ({e}); retrying without TLS"
                        ));
                    }
                    mode = TlsMode::Off;
                }
                Err(e) => return Err(session_failure(&e, host, &where_)),
            }
        }
    }
}

/// A session ready for a transaction, stopped by `--quit-after`, or closed because the
/// server is this host (why).
enum Opened {
    Ready(Box<Connection<TcpStream>>),
    Stopped(Stage),
    Myself(String),
}

/// What one [`Remote::deliver`] call came to.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// Per recipient, in order (empty when stopped early).
    pub rcpts: Vec<RcptOutcome>,
    /// `--quit-after` stopped the session at this stage; nothing was sent.
    pub stopped: Option<Stage>,
}

impl Delivery {
    fn all(rcpts: &[RemoteRcpt], f: &Failure) -> Delivery {
        Delivery {
            rcpts: rcpts.iter().map(|_| Err(f.clone())).collect(),
            stopped: None,
        }
    }
}

/// What one [`Remote::deliver_all`] call came to.
#[derive(Debug, Clone, Default)]
pub struct Deliveries {
    /// Per recipient, in order; `None` when its session stopped at `--quit-after`.
    pub rcpts: Vec<Option<RcptOutcome>>,
    /// `--quit-after` stopped a session at this stage.
    pub stopped: Option<Stage>,
}

/// Maps a transaction result to per-recipient outcomes.
fn finish(
    result: Result<Progress, DriverError>,
    rcpts: &[RemoteRcpt],
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
                stopped: None,
            }
        }
        Ok(Progress::Stopped(stage)) => Delivery {
            rcpts: Vec::new(),
            stopped: Some(stage),
        },
        Ok(Progress::Ready) => Delivery::all(rcpts, &Failure::temp(format!("{relay}: no outcome"))),
        Err(e) => Delivery::all(rcpts, &session_failure(&e, host, relay)),
    }
}

/// TLS mode, verification and AUTH for one candidate host.
#[derive(Clone)]
struct TlsChoice {
    mode: TlsMode,
    verify: bool,
    auth: Option<Credentials>,
}

impl TlsChoice {
    fn new(mode: TlsMode, verify: bool, auth: Option<Credentials>) -> TlsChoice {
        TlsChoice { mode, verify, auth }
    }
}

/// A DNS answer as a delivery failure (RFC 7505 §4.2: null MX is 5.1.10; RFC 3463 5.1.2 for
/// a destination that does not exist).
pub fn dns_failure(e: &DnsError) -> Failure {
    match e {
        DnsError::NullMx(_) => Failure::new(false, e.to_string(), "5.1.10"),
        DnsError::NxDomain(_) | DnsError::NoAddress(_) | DnsError::BadName(_) => {
            Failure::new(false, e.to_string(), "5.1.2")
        }
        DnsError::Temporary(_) => Failure::new(true, e.to_string(), "4.4.3"),
    }
}

/// A session error as a failure. TLS trouble with a host is temporary for mail (the
/// certificate or the policy may be fixed; Postfix defers too).
fn session_failure(e: &DriverError, host: &str, where_: &str) -> Failure {
    if let DriverError::Smtp(SmtpError::Rejected { stage, reply }) = e {
        return reply_failure(reply, host, where_, *stage);
    }
    let (temporary, status) = match e {
        DriverError::Tls(_) | DriverError::Trust(_) => (true, "4.7.5"),
        DriverError::Smtp(SmtpError::TlsUnavailable) => (true, "4.7.4"),
        DriverError::Smtp(SmtpError::AuthNotEncrypted | SmtpError::AuthUnsupported(_)) => {
            (true, "4.7.0")
        }
        DriverError::Smtp(SmtpError::Unsupported(_)) => (false, "5.6.3"),
        DriverError::Timeout(_) => (true, "4.4.2"),
        DriverError::Eof(_) | DriverError::Io { .. } => (true, "4.4.2"),
        _ if e.is_temporary() => (true, "4.0.0"),
        _ => (false, "5.0.0"),
    };
    Failure {
        temporary,
        message: format!("{where_}: {e}"),
        status: status.to_string(),
        diagnostic: None,
        remote_mta: Some(host.to_string()),
        stage: None,
    }
}

/// How long a password command may run before it is killed (with its process group) and
/// counts as failed: msend's `password_command_timeout` and mrelayd's
/// `relayhost_password_timeout_secs` default.
pub const PASSWORD_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a password command's output read.
const MAX_PASSWORD_OUTPUT: usize = 8192;

/// `command` under `/bin/sh -c`, with what [`crate::proc`] runs it with.
fn password_child(
    command: &str,
    timeout: Duration,
) -> (std::process::Command, crate::proc::Options) {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(command);
    // Its stderr is ours, so a prompt or an error of e.g. `pass` or `gpg` is seen.
    let opts = crate::proc::Options {
        stdin: None,
        timeout,
        max_output: MAX_PASSWORD_OUTPUT,
        capture_stderr: false,
    };
    (cmd, opts)
}

/// The password in a password command's outcome: the first line of its output.
fn password_of(
    command: &str,
    timeout: Duration,
    outcome: std::io::Result<crate::proc::Outcome>,
) -> Result<String, String> {
    use crate::proc::Status;
    let out = outcome.map_err(|e| format!("running {command:?}: {e}"))?;
    match out.status {
        Status::Exited(0) => {}
        Status::Exited(c) => return Err(format!("{command:?} failed: exit status: {c}")),
        Status::Signaled(s) => return Err(format!("{command:?} failed: signal: {s}")),
        Status::TimedOut => {
            return Err(format!(
                "{command:?} timed out after {}s and was killed",
                timeout.as_secs_f64()
            ))
        }
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// Runs `command` under `/bin/sh -c`; the first line of its output is the password (msend's
/// `--password-command` and mrelayd's `relayhost_password_command`). Killed after `timeout`.
/// Blocks: async code uses [`password_from_command_async`].
pub fn password_from_command(command: &str, timeout: Duration) -> Result<String, String> {
    let (cmd, opts) = password_child(command, timeout);
    password_of(command, timeout, crate::proc::run(cmd, &opts))
}

/// [`password_from_command`] on the blocking pool, so no async worker waits for the command.
pub async fn password_from_command_async(
    command: &str,
    timeout: Duration,
) -> Result<String, String> {
    let (cmd, opts) = password_child(command, timeout);
    password_of(command, timeout, crate::proc::run_async(cmd, opts).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_listeners_and_names_are_recognised() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let me = Myself {
            listeners: vec![a("127.0.0.1:2525"), a("0.0.0.0:25"), a("[::]:587")],
            names: vec!["MX.Example.Test".into()],
        };
        assert!(me.listens_on(a("127.0.0.1:2525")));
        assert!(me.listens_on(a("[::ffff:127.0.0.1]:2525")));
        // Another port on our address is another server.
        assert!(!me.listens_on(a("127.0.0.1:2526")));
        assert!(!me.listens_on(a("127.0.0.2:2525")));
        // Wildcard listeners take every local address at their port.
        assert!(me.listens_on(a("127.0.0.1:25")));
        assert!(me.listens_on(a("127.9.8.7:25")));
        assert!(!me.listens_on(a("[::1]:25")), "0.0.0.0 takes no IPv6");
        assert!(me.listens_on(a("[::1]:587")));
        assert!(me.listens_on(a("127.0.0.1:587")), "[::] is dual stack");
        // Not an address of this host (TEST-NET-3).
        assert!(!me.listens_on(a("203.0.113.9:25")));
        assert!(me.is_my_name("mx.example.test ESMTP mailkit"));
        assert!(me.is_my_name("MX.EXAMPLE.TEST."));
        assert!(!me.is_my_name("mx2.example.test ESMTP"));
        assert!(!me.is_my_name("ESMTP mx.example.test"));
        assert!(!me.is_my_name(""));
        assert!(!Myself::default().is_my_name("x"));
    }

    #[test]
    fn relayhost_forms() {
        assert_eq!(parse_relayhost("smtp.x").unwrap(), ("smtp.x".into(), 25));
        assert_eq!(
            parse_relayhost("smtp.x:587").unwrap(),
            ("smtp.x".into(), 587)
        );
        assert_eq!(
            parse_relayhost("[127.0.0.1]:2525").unwrap(),
            ("127.0.0.1".into(), 2525)
        );
        assert_eq!(parse_relayhost("[::1]:26").unwrap(), ("::1".into(), 26));
        assert_eq!(parse_relayhost("[h]").unwrap(), ("h".into(), 25));
        assert!(parse_relayhost("").is_err());
        assert!(parse_relayhost("h:0").is_err());
        assert!(parse_relayhost("h:x").is_err());
        assert!(parse_relayhost("[h").is_err());
        assert!(parse_relayhost("[h]x").is_err());
    }

    #[test]
    fn next_hop_prefers_domain_policy() {
        let mut c = RemoteConfig::default();
        c.domains.insert(
            "sec.test".into(),
            DomainPolicy {
                tls: Some(TlsPolicy::Verify),
                ..Default::default()
            },
        );
        c.domains.insert(
            "via.test".into(),
            DomainPolicy {
                relayhost: Some("[127.0.0.1]:2525".into()),
                relayhost_tls: Some(RelayhostTls::None),
                ..Default::default()
            },
        );
        let r = Remote::new(c, "mx.test").unwrap();
        assert_eq!(
            r.next_hop("Sec.Test."),
            NextHop::Mx {
                domain: "sec.test".into(),
                tls: TlsPolicy::Verify
            }
        );
        assert_eq!(
            r.next_hop("other.test"),
            NextHop::Mx {
                domain: "other.test".into(),
                tls: TlsPolicy::May
            }
        );
        match r.next_hop("via.test") {
            NextHop::Relayhost {
                host, port, tls, ..
            } => {
                assert_eq!(
                    (host.as_str(), port, tls),
                    ("127.0.0.1", 2525, RelayhostTls::None)
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
            relayhost_tls: RelayhostTls::None,
            retry_initial_secs: 30,
            ..RemoteConfig::default()
        };
        let r = Remote::new(config, "mx.test").unwrap();
        let hop = r.next_hop("x.test");
        let rcpt = [RemoteRcpt {
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

    #[test]
    fn sessions_are_not_shared_across_credentials_or_tls() {
        let hop = |user: Option<&str>, tls| NextHop::Relayhost {
            host: "smtp.x".into(),
            port: 587,
            tls,
            user: user.map(str::to_string),
            password_command: None,
        };
        let a = hop(Some("a"), RelayhostTls::Starttls).key();
        assert_ne!(a, hop(Some("b"), RelayhostTls::Starttls).key());
        assert_ne!(a, hop(Some("a"), RelayhostTls::Tls).key());
        assert_ne!(a, hop(None, RelayhostTls::Starttls).key());
        assert_eq!(a, hop(Some("a"), RelayhostTls::Starttls).key());
    }

    #[test]
    fn dns_answers_map_to_rfc_statuses() {
        assert_eq!(dns_failure(&DnsError::NullMx("x".into())).status, "5.1.10");
        assert!(!dns_failure(&DnsError::NxDomain("x".into())).temporary);
        assert!(dns_failure(&DnsError::Temporary("x".into())).temporary);
    }

    #[test]
    fn reply_failure_keeps_the_enhanced_code() {
        let r = Reply::new(550, Some((5, 1, 1)), "no such user");
        let f = reply_failure(&r, "mx.test", "mx.test[127.0.0.1]:25", Stage::Rcpt);
        assert_eq!(f.status, "5.1.1");
        assert!(!f.temporary);
        assert_eq!(f.stage, Some(Stage::Rcpt));
        assert_eq!(f.diagnostic.as_deref(), Some("550 5.1.1 no such user"));
        let t = reply_failure(&Reply::new(451, None, "later"), "h", "h", Stage::Rcpt);
        assert!(t.temporary && t.status == "4.0.0", "{t:?}");
    }

    #[test]
    fn multi_line_reply_is_one_line() {
        let r = Reply::multi(550, Some((5, 1, 1)), vec!["no such".into(), "user".into()]);
        let l = one_line(&r);
        assert!(l.starts_with("550 ") && !l.contains('\n'), "{l}");
    }
}
