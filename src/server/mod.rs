//! The server layer: the only code in mailkit that touches listening sockets. Every daemon
//! (mrelayd, mpopd, mimapd) runs its sessions through it, so they all get the same listeners,
//! TLS, limits, timeouts, shutdown and privilege handling.
//!
//! # How a daemon uses it
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use mailkit::lines::Line;
//! use mailkit::server::{self, Connection, ListenerSpec, Listeners, Settings};
//! let specs = vec![ListenerSpec::new("127.0.0.1:2525".parse()?, "smtp")
//!     .busy_reply(b"421 4.7.0 too many connections, try later\r\n")];
//! let listeners = Listeners::bind(&specs)?;        // or socket activation, when LISTEN_FDS says so
//! let settings = Settings::default();              // tls acceptor, limits, run_as
//! if let Some(run_as) = &settings.run_as {
//!     server::drop_privileges(run_as)?;            // after binding, before the first session
//! }
//! let handler = server::handler(|mut conn: Connection| async move {
//!     conn.write_all(b"220 hello\r\n").await?;
//!     while let Line::Complete { text, .. } = conn.read_line(512).await? {
//!         if text.eq_ignore_ascii_case(b"STARTTLS") && conn.can_starttls() {
//!             conn.write_all(b"220 go ahead\r\n").await?;
//!             conn.starttls().await?;              // discards plaintext sent after the command
//!         }
//!     }
//!     Ok(())
//! });
//! let shutdown = server::shutdown_signal()?;       // SIGTERM or SIGINT
//! server::serve(listeners, settings, handler, shutdown).await
//! # }
//! ```
//! `inetd` mode calls [`inetd`] instead of [`serve`]: one session on stdin/stdout, same
//! handler. Protocol code sees only a [`Connection`], whatever the transport. The daemons do not
//! write this sequence themselves: [`daemon::Frame`] runs it for them (runtime, binding,
//! privilege drop, then their background work, then [`serve`] or [`inetd`]), from listeners
//! declared as [`daemon::Listener`]s of their config section.
//!
//! # Behaviour
//! - [`Listeners::bind`] binds every [`ListenerSpec`], unless systemd socket activation applies
//!   (`LISTEN_PID` is our pid, `LISTEN_FDS` = n): then fds 3..3+n are used, matched to specs by
//!   `LISTEN_FDNAMES` = role (systemd `FileDescriptorName=`), else by position.
//! - [`serve`] prints `<prog>: listening on ADDR (role)` for each listener (tests bind port 0
//!   and read the port from there) and accepts until the
//!   shutdown future resolves. Then it stops accepting at once, tells sessions
//!   ([`Connection::shutdown_requested`]), waits up to [`Limits::shutdown_grace`] for them and
//!   aborts the rest.
//! - Over [`Limits::max_connections`] in total or [`Limits::max_per_ip`] from one address, a
//!   connection gets the listener's busy reply (plaintext listeners only) and is closed. Past
//!   [`BUSY_PERCENT`] of the slots, an address already holding its fair share is refused the
//!   same way, so a few flooding addresses cannot lock new ones out. Addresses in
//!   [`Limits::per_ip_exempt`] (default loopback; mrelayd adds its `trusted_networks`, as
//!   Postfix exempts `$mynetworks` from its client limits) are held to neither per-address rule,
//!   only to the total. A slot is given back exactly when its session closes the connection
//!   ([`Connection::close`], before the last reply goes out: a client that saw `221` and
//!   reconnects finds its slot free) or ends in any other way (the connection dropped).
//! - Implicit-TLS listeners complete the handshake before the handler runs; STARTTLS is
//!   [`Connection::starttls`]. Every read and write is bounded by the idle timeout.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::exit;
use crate::log;

pub mod cidr;
mod conn;
pub mod daemon;
pub mod goodbye;
pub mod pace;
pub mod relay;
pub mod spawn;

pub use cidr::Cidr;
pub use conn::{Connection, Stream};

/// Default idle timeout: RFC 5321 §4.5.3.2.7 gives the server 5 minutes waiting for a command.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default cap on concurrent sessions over all listeners.
pub const DEFAULT_MAX_CONNECTIONS: usize = 200;
/// Default cap on concurrent sessions from one IP address.
pub const DEFAULT_MAX_PER_IP: usize = 20;
/// Default time sessions get to finish after shutdown is requested.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long sending the busy reply to an over-limit connection may take.
pub const BUSY_REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Most fds accepted from socket activation (a sanity bound on `LISTEN_FDS`).
pub const MAX_LISTEN_FDS: usize = 64;
/// Pause after a failed accept (EMFILE, ENFILE) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A boxed, sendable future, as a [`Handler`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A protocol session: takes the connection, runs to its end. An `Err` is logged with the
/// peer's address; the connection is closed either way.
pub type Handler = Arc<dyn Fn(Connection) -> BoxFuture<Result<()>> + Send + Sync>;

/// Makes a [`Handler`] from an async closure or function.
pub fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(Connection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    Arc::new(move |conn| Box::pin(f(conn)))
}

/// One address to listen on and what runs there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Address and port (port 0: any free port, reported on stderr).
    pub addr: SocketAddr,
    /// TLS from the first byte (SMTPS 465, POP3S 995, IMAPS 993; RFC 8314).
    pub implicit_tls: bool,
    /// The protocol role passed to the handler via [`Connection::role`] (`smtp`, `submission`,
    /// `submissions`, `pop3`, `pop3s`, ...); also the systemd `FileDescriptorName=` to match.
    pub role: String,
    /// Sent to a plaintext connection refused by the connection limits before it is closed,
    /// e.g. `421 4.7.0 Too many connections\r\n` (SMTP) or `-ERR [SYS/TEMP] busy\r\n` (POP3).
    pub busy_reply: Option<Vec<u8>>,
}

impl ListenerSpec {
    /// A plaintext listener for `role` on `addr`, without busy reply.
    pub fn new(addr: SocketAddr, role: &str) -> ListenerSpec {
        ListenerSpec {
            addr,
            implicit_tls: false,
            role: role.to_string(),
            busy_reply: None,
        }
    }

    /// Sets implicit TLS.
    pub fn implicit_tls(mut self, on: bool) -> ListenerSpec {
        self.implicit_tls = on;
        self
    }

    /// Sets the busy reply.
    pub fn busy_reply(mut self, reply: &[u8]) -> ListenerSpec {
        self.busy_reply = Some(reply.to_vec());
        self
    }
}

/// Connection limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent sessions over all listeners.
    pub max_connections: usize,
    /// Concurrent sessions from one IP address (IPv4-mapped IPv6 counts as IPv4).
    pub max_per_ip: usize,
    /// Addresses not held to `max_per_ip` nor to the busy server's fair share (only to
    /// `max_connections`): default loopback ([`cidr::loopback`]).
    pub per_ip_exempt: Vec<Cidr>,
    /// Each read or write fails after this long without progress (also bounds TLS handshakes).
    pub idle_timeout: Duration,
    /// After shutdown is requested, how long running sessions may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_ip: DEFAULT_MAX_PER_IP,
            per_ip_exempt: cidr::loopback(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// The unprivileged user (and group) to switch to after binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// User name from the passwd database.
    pub user: String,
    /// Group name; default: the user's primary group.
    pub group: Option<String>,
}

impl RunAs {
    /// The shared config's `[run_as]`, the one place daemons take their privilege drop from.
    pub fn from_config(config: &crate::config::Config) -> Option<RunAs> {
        config.run_as.as_ref().map(|r| RunAs {
            user: r.user.clone(),
            group: r.group.clone(),
        })
    }
}

/// Everything [`serve`] and [`inetd`] need besides listeners and handler.
#[derive(Clone, Default)]
pub struct Settings {
    /// Server TLS for implicit-TLS listeners and STARTTLS (from [`crate::tls::server_config`]:
    /// `TlsAcceptor::from(config)`). Without it, STARTTLS is not offered.
    pub tls: Option<TlsAcceptor>,
    /// Limits and timeouts.
    pub limits: Limits,
    /// Switch to this user after binding (when running as root): the daemon frame does it, once
    /// ([`drop_privileges`]), before background work and sessions start.
    pub run_as: Option<RunAs>,
}

impl Settings {
    /// Settings from the shared config (`[tls]` cert and key, `[run_as]`) and a daemon's own
    /// connection limits (`per_ip_exempt`: the networks not held to `max_per_ip`): the one way
    /// every daemon builds them.
    pub fn from_config(
        config: &crate::config::Config,
        max_connections: usize,
        max_per_ip: usize,
        per_ip_exempt: Vec<Cidr>,
        idle_timeout_secs: u64,
    ) -> Result<Settings> {
        let tls = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => {
                let sc = crate::tls::server_config(cert, key)
                    .map_err(|e| exit::fail(exit::CONFIG, format!("TLS certificate: {e:#}")))?;
                Some(TlsAcceptor::from(sc))
            }
            (None, None) => None,
            _ => return Err(exit::fail(exit::CONFIG, "[tls] needs both cert and key")),
        };
        Ok(Settings {
            tls,
            limits: Limits {
                max_connections: max_connections.max(1),
                max_per_ip: max_per_ip.max(1),
                per_ip_exempt,
                idle_timeout: Duration::from_secs(idle_timeout_secs.max(1)),
                ..Limits::default()
            },
            run_as: RunAs::from_config(config),
        })
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .field("run_as", &self.run_as)
            .finish()
    }
}

/// Bound listening sockets, ready for [`serve`]. Binding is separate from serving so a daemon
/// can bind (as root, to low ports), then drop privileges, then start.
#[derive(Debug)]
pub struct Listeners {
    bound: Vec<(ListenerSpec, std::net::TcpListener)>,
    activated: bool,
}

impl Listeners {
    /// Uses socket activation when `LISTEN_PID`/`LISTEN_FDS` are set for this process, else binds
    /// every spec's address.
    pub fn bind(specs: &[ListenerSpec]) -> Result<Listeners> {
        match Listeners::from_activation(specs)? {
            Some(l) => Ok(l),
            None => Listeners::bind_addresses(specs),
        }
    }

    /// Binds every spec's address (never socket activation).
    pub fn bind_addresses(specs: &[ListenerSpec]) -> Result<Listeners> {
        if specs.is_empty() {
            return Err(exit::fail(exit::CONFIG, "no listen address configured"));
        }
        let mut bound = Vec::new();
        for spec in specs {
            // std sets SO_REUSEADDR on Unix, so a restart does not wait for TIME_WAIT.
            let l = std::net::TcpListener::bind(spec.addr).map_err(|e| {
                let code = if e.kind() == std::io::ErrorKind::AddrInUse {
                    exit::TEMPFAIL
                } else {
                    exit::OSERR
                };
                exit::fail(
                    code,
                    format!("listening on {} ({}): {e}", spec.addr, spec.role),
                )
            })?;
            l.set_nonblocking(true)
                .with_context(|| format!("setting up {}", spec.addr))?;
            bound.push((spec.clone(), l));
        }
        Ok(Listeners {
            bound,
            activated: false,
        })
    }

    /// The listeners passed by systemd socket activation, or `None` when the environment does
    /// not name this process. Each fd is matched to the spec whose role equals its
    /// `LISTEN_FDNAMES` entry, else to the spec at the same position, else (one spec) to it.
    pub fn from_activation(specs: &[ListenerSpec]) -> Result<Option<Listeners>> {
        let env = |k: &str| std::env::var(k).ok();
        let fds = parse_activation(
            std::process::id(),
            env("LISTEN_PID").as_deref(),
            env("LISTEN_FDS").as_deref(),
            env("LISTEN_FDNAMES").as_deref(),
        )
        .map_err(|e| exit::fail(exit::CONFIG, format!("socket activation: {e}")))?;
        if fds.is_empty() {
            return Ok(None);
        }
        let mut bound = Vec::new();
        for (i, fd) in fds.iter().enumerate() {
            let spec = match_spec(specs, i, fd.name.as_deref()).ok_or_else(|| {
                exit::fail(
                    exit::CONFIG,
                    format!(
                        "socket activation: fd {} ({}) matches no configured listener role",
                        fd.fd,
                        fd.name.as_deref().unwrap_or("unnamed")
                    ),
                )
            })?;
            let l = crate::os::take_listen_fd(fd.fd).map_err(|e| {
                exit::fail(exit::OSERR, format!("socket activation fd {}: {e}", fd.fd))
            })?;
            let mut spec = spec;
            if let Ok(addr) = l.local_addr() {
                spec.addr = addr;
            }
            bound.push((spec, l));
        }
        Ok(Some(Listeners {
            bound,
            activated: true,
        }))
    }

    /// The actual bound addresses (port 0 resolved) with their roles.
    pub fn addrs(&self) -> Vec<(SocketAddr, String)> {
        self.bound
            .iter()
            .map(|(spec, l)| (l.local_addr().unwrap_or(spec.addr), spec.role.clone()))
            .collect()
    }

    /// Whether the sockets came from systemd socket activation.
    pub fn is_activated(&self) -> bool {
        self.activated
    }
}

/// Picks the spec for activated fd number `index` named `name` (see [`Listeners::from_activation`]).
fn match_spec(specs: &[ListenerSpec], index: usize, name: Option<&str>) -> Option<ListenerSpec> {
    if let Some(name) = name {
        if let Some(s) = specs.iter().find(|s| s.role == name) {
            return Some(s.clone());
        }
    }
    if let Some(s) = specs.get(index) {
        return Some(s.clone());
    }
    if specs.len() == 1 {
        return specs.first().cloned();
    }
    None
}

/// One fd from socket activation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivatedFd {
    /// The fd number (3, 4, ...).
    pub fd: RawFd,
    /// Its `LISTEN_FDNAMES` entry, if any.
    pub name: Option<String>,
}

/// Reads the socket-activation environment (sd_listen_fds(3)): empty when `LISTEN_PID` is unset
/// or names another process (the variables were inherited, not meant for us); an error for a
/// malformed `LISTEN_FDS`, more than [`MAX_LISTEN_FDS`], or a `LISTEN_FDNAMES` whose count
/// differs.
pub fn parse_activation(
    our_pid: u32,
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    fd_names: Option<&str>,
) -> std::result::Result<Vec<ActivatedFd>, String> {
    let Some(pid) = listen_pid else {
        return Ok(Vec::new());
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_PID={pid:?} is not a process id"))?;
    if pid != our_pid {
        return Ok(Vec::new());
    }
    let Some(n) = listen_fds else {
        return Ok(Vec::new());
    };
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_FDS={n:?} is not a number"))?;
    if n > MAX_LISTEN_FDS {
        return Err(format!("LISTEN_FDS={n} is more than {MAX_LISTEN_FDS}"));
    }
    let names: Vec<Option<String>> = match fd_names {
        Some(list) if n > 0 => {
            let parts: Vec<&str> = list.split(':').collect();
            if parts.len() != n {
                return Err(format!(
                    "LISTEN_FDNAMES has {} names for {n} fds",
                    parts.len()
                ));
            }
            parts
                .into_iter()
                .map(|p| (!p.is_empty()).then(|| p.to_string()))
                .collect()
        }
        _ => vec![None; n],
    };
    Ok(names
        .into_iter()
        .enumerate()
        .map(|(i, name)| ActivatedFd {
            fd: crate::os::LISTEN_FDS_START + i as RawFd,
            name,
        })
        .collect())
}

/// Refuses to serve as root: a daemon started as root (euid 0) needs a `[run_as]` user, and one
/// that is not root itself, or it exits 78 (EX_CONFIG) naming the key to set. There is no
/// override: the daemons only ever touch mail as an unprivileged user (README "Privileges").
/// Not root: nothing to check (the daemon runs as whoever started it). Daemons call this
/// before binding or opening anything.
pub fn refuse_root(config: &crate::config::Config) -> Result<()> {
    if crate::os::euid() != 0 {
        return Ok(());
    }
    let file = config.file_name();
    let Some(run_as) = &config.run_as else {
        return Err(exit::fail(
            exit::CONFIG,
            format!("running as root needs a [run_as] user in {file} (e.g. user = \"mail\")"),
        ));
    };
    match crate::os::resolve_ids(&run_as.user, run_as.group.as_deref()) {
        Ok((0, _)) => Err(exit::fail(
            exit::CONFIG,
            format!(
                "[run_as] user {:?} in {file} is root (uid 0); name an unprivileged user \
                 (e.g. user = \"mail\")",
                run_as.user
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(exit::fail(exit::CONFIG, format!("[run_as] in {file}: {e}")))
        }
        Err(e) => Err(exit::fail(
            exit::OSERR,
            format!("[run_as] in {file}: looking up {}: {e}", run_as.user),
        )),
    }
}

/// Switches to `run_as` when running as root. Not root: fine if we already are that user, else
/// an error (asked to run as someone we cannot become). Any failure is fatal: the caller must
/// not keep serving as root.
pub fn drop_privileges(run_as: &RunAs) -> Result<()> {
    let euid = crate::os::euid();
    if euid != 0 {
        let target = crate::os::lookup_user(&run_as.user)
            .with_context(|| format!("looking up user {}", run_as.user))?;
        return match target {
            Some((uid, _)) if uid == euid => Ok(()),
            _ => Err(exit::fail(
                exit::OSERR,
                format!(
                    "switching to user {}: not running as root (uid {euid})",
                    run_as.user
                ),
            )),
        };
    }
    match crate::os::drop_privileges(&run_as.user, run_as.group.as_deref()) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(exit::fail(
            exit::CONFIG,
            format!("switching to user {}: {e}", run_as.user),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(exit::fail(
            exit::CONFIG,
            format!("switching to user {}: {e}", run_as.user),
        )),
        Err(e) => Err(exit::fail(
            exit::OSERR,
            format!("switching to user {}: {e}", run_as.user),
        )),
    }
}

/// A future that resolves on SIGTERM or SIGINT (and logs which). Create it early (inside the
/// runtime, before binding) so a signal that arrives during startup is not lost.
pub fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        log::line(format_args!("{name} received, shutting down"));
    })
}

/// Concurrent session counts, shared by the accept loop and the sessions' [`Slot`]s.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted session; gives its place back when dropped: when its [`Connection`] is closed
/// or dropped, however the session ends.
pub(crate) struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// The share of [`Limits::max_connections`] (in percent) after which the server is "busy" and
/// admits only addresses below their fair share: the rest of the slots is kept for addresses
/// that hold few or no connections yet.
pub const BUSY_PERCENT: usize = 80;
/// Below this many slots there is no useful share to keep free: [`BUSY_PERCENT`] does not apply.
pub const MIN_SHARED_SLOTS: usize = 10;

/// Admits a session from `ip` or says which limit it hits. With at least [`MIN_SHARED_SLOTS`]
/// slots: up to [`BUSY_PERCENT`] of the
/// slots anyone is admitted (up to `max_per_ip`); beyond, only an address holding fewer than
/// its fair share of those (the busy mark divided by the number of connected addresses,
/// counting this one; at least 1). So a few addresses flooding the server fill at most the busy
/// mark and a client from a new address still gets in (issue 10 §5: 15 addresses used to
/// take all slots).
fn admit(
    counts: &Arc<Mutex<Counts>>,
    ip: IpAddr,
    limits: &Limits,
) -> std::result::Result<Slot, &'static str> {
    let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
    if c.total >= limits.max_connections {
        return Err("too many connections");
    }
    let from_ip = c.per_ip.get(&ip).copied().unwrap_or(0);
    // Postfix exempts $mynetworks from smtpd_client_connection_count_limit; so are these.
    let exempt = limits.per_ip_exempt.iter().any(|n| n.contains(ip));
    if !exempt && from_ip >= limits.max_per_ip {
        return Err("too many connections from this address");
    }
    let busy = limits.max_connections.saturating_mul(BUSY_PERCENT) / 100;
    if !exempt && limits.max_connections >= MIN_SHARED_SLOTS && c.total >= busy {
        let addresses = c.per_ip.len() + usize::from(from_ip == 0);
        let fair = (busy / addresses.max(1)).max(1);
        if from_ip >= fair {
            return Err("busy: this address holds its share of connections");
        }
    }
    c.total += 1;
    c.per_ip.insert(ip, from_ip + 1);
    Ok(Slot {
        counts: counts.clone(),
        ip,
    })
}

/// Runs one session: the implicit-TLS handshake when asked, then the handler.
pub async fn run_session(
    mut conn: Connection,
    implicit_tls: bool,
    handler: &Handler,
) -> Result<()> {
    if implicit_tls {
        let acceptor = conn_acceptor(&conn)?;
        conn.accept_tls(&acceptor)
            .await
            .context("TLS handshake failed")?;
    }
    handler(conn).await
}

fn conn_acceptor(conn: &Connection) -> Result<TlsAcceptor> {
    conn.acceptor()
        .ok_or_else(|| exit::fail(exit::CONFIG, "implicit TLS listener without a certificate"))
}

/// Serves the listeners until `shutdown` resolves (see the module docs for the whole behaviour).
/// Returns after every session has ended or been aborted.
pub async fn serve<F>(
    listeners: Listeners,
    settings: Settings,
    handler: Handler,
    shutdown: F,
) -> Result<()>
where
    F: Future + Send,
{
    if settings.tls.is_none() {
        if let Some((spec, _)) = listeners.bound.iter().find(|(s, _)| s.implicit_tls) {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "listener {} ({}) needs TLS but no certificate is configured",
                    spec.addr, spec.role
                ),
            ));
        }
    }
    let mut specs = Vec::new();
    let mut accept_tasks = Vec::new();
    let (tx, mut rx) = mpsc::channel::<(tokio::net::TcpStream, SocketAddr, usize)>(64);
    for (index, (spec, std_listener)) in listeners.bound.into_iter().enumerate() {
        let addr = std_listener.local_addr().unwrap_or(spec.addr);
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .with_context(|| format!("listening on {addr}"))?;
        log::line(format_args!("listening on {addr} ({})", spec.role));
        specs.push(spec);
        let tx = tx.clone();
        accept_tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        if tx.send((stream, peer, index)).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        log::line(format_args!("accepting on {addr}: {e}"));
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                }
            }
        }));
    }
    drop(tx);

    let counts = Arc::new(Mutex::new(Counts::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions: JoinSet<()> = JoinSet::new();
    let shutdown = shutdown;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = rx.recv() => {
                let Some((stream, peer, index)) = accepted else { break };
                let Some(spec) = specs.get(index) else { continue };
                let ip = peer.ip().to_canonical();
                match admit(&counts, ip, &settings.limits) {
                    Ok(slot) => {
                        let _ = stream.set_nodelay(true);
                        let local = stream.local_addr().ok();
                        let conn = Connection::new(stream, &spec.role)
                            .with_peer(Some(peer))
                            .with_local(local)
                            .with_tls_acceptor(settings.tls.clone())
                            .with_idle_timeout(settings.limits.idle_timeout)
                            .with_shutdown(stop_rx.clone())
                            .with_slot(slot);
                        let handler = handler.clone();
                        let implicit_tls = spec.implicit_tls;
                        let role = spec.role.clone();
                        sessions.spawn(async move {
                            if let Err(e) = run_session(conn, implicit_tls, &handler).await {
                                log::line(format_args!("{peer} ({role}): {e:#}"));
                            }
                        });
                    }
                    Err(why) => {
                        log::line(format_args!("refused {peer} ({}): {why}", spec.role));
                        if let (Some(reply), false) = (spec.busy_reply.clone(), spec.implicit_tls) {
                            let mut stream = stream;
                            sessions.spawn(async move {
                                let _ = tokio::time::timeout(BUSY_REPLY_TIMEOUT, async {
                                    let _ = stream.write_all(&reply).await;
                                    let _ = stream.shutdown().await;
                                })
                                .await;
                            });
                        }
                    }
                }
            }
            Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        log::line(format_args!("a session panicked: {e}"));
                    }
                }
            }
        }
    }

    // Stop accepting first: the listening sockets close when their tasks end.
    for task in &accept_tasks {
        task.abort();
    }
    for task in accept_tasks {
        let _ = task.await;
    }
    drop(rx);
    let _ = stop_tx.send(true);
    if !sessions.is_empty() {
        log::line(format_args!(
            "waiting up to {}s for {} session(s) to finish",
            settings.limits.shutdown_grace.as_secs(),
            sessions.len()
        ));
        let drained = tokio::time::timeout(settings.limits.shutdown_grace, async {
            while sessions.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            log::line(format_args!("closing {} session(s)", sessions.len()));
            sessions.shutdown().await;
        }
    }
    Ok(())
}

/// The client address in inetd mode from tcpserver's `TCPREMOTEIP`/`TCPREMOTEPORT` (also
/// `TCPLOCALIP`/`TCPLOCALPORT` for the local side). A missing or bad port counts as 0; a bad IP
/// gives `None`.
pub fn addr_from_env(ip: Option<&str>, port: Option<&str>) -> Option<SocketAddr> {
    let ip: IpAddr = ip?.trim().parse().ok()?;
    let port: u16 = port.and_then(|p| p.trim().parse().ok()).unwrap_or(0);
    Some(SocketAddr::new(ip.to_canonical(), port))
}

/// The inetd session stream with its peer and local address (when stdin is a socket).
type StdioParts = (Box<dyn Stream>, Option<SocketAddr>, Option<SocketAddr>);

/// The session stream in inetd mode: the socket on stdin when it is a TCP socket (inetd,
/// tcpserver, systemd `Accept=yes`), else stdin and stdout (pipes, FIFOs, files).
/// Returns the stream and, for a socket, its peer and local address.
fn stdio_stream() -> Result<StdioParts> {
    use tokio::net::unix::pipe;
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdin")?;
    let sock = std::net::TcpStream::from(fd);
    if let Ok(local) = sock.local_addr() {
        let peer = sock.peer_addr().ok();
        sock.set_nonblocking(true).context("setting up stdin")?;
        let stream = tokio::net::TcpStream::from_std(sock).context("setting up stdin")?;
        return Ok((Box::new(stream), peer, Some(local)));
    }
    let fd = std::os::fd::OwnedFd::from(sock);
    // FIFOs can be polled; anything else (a file, a tty) falls back to tokio's blocking stdin.
    let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> =
        match pipe::Receiver::from_owned_fd(fd) {
            Ok(r) => Box::new(r),
            Err(_) => Box::new(tokio::io::stdin()),
        };
    let out = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdout")?;
    let writer: Box<dyn tokio::io::AsyncWrite + Unpin + Send> =
        match pipe::Sender::from_owned_fd(out) {
            Ok(w) => Box::new(w),
            Err(_) => Box::new(tokio::io::stdout()),
        };
    // stdin and stdout as one stream (inetd mode on pipes or files).
    Ok((Box::new(tokio::io::join(reader, writer)), None, None))
}

/// Runs one session on stdin/stdout (inetd, tcpserver, systemd `Accept=yes`). The peer comes
/// from `TCPREMOTEIP`/`TCPREMOTEPORT` when set, else from the socket on stdin. Privileges are
/// the caller's (the daemon frame drops root before calling it). When stdin is not a socket or FIFO, a pending read cannot be
/// cancelled, so the caller should exit the process when this returns rather than wait for the
/// runtime to wind down.
pub async fn inetd(
    role: &str,
    implicit_tls: bool,
    settings: Settings,
    handler: Handler,
) -> Result<()> {
    let (stream, sock_peer, sock_local) = stdio_stream()?;
    let env = |k: &str| std::env::var(k).ok();
    let peer = addr_from_env(
        env("TCPREMOTEIP").as_deref(),
        env("TCPREMOTEPORT").as_deref(),
    )
    .or(sock_peer);
    let local =
        addr_from_env(env("TCPLOCALIP").as_deref(), env("TCPLOCALPORT").as_deref()).or(sock_local);
    let conn = Connection::new(stream, role)
        .with_peer(peer)
        .with_local(local)
        .with_tls_acceptor(settings.tls.clone())
        .with_idle_timeout(settings.limits.idle_timeout);
    let result = run_session(conn, implicit_tls, &handler).await;
    result.map_err(|e| {
        let who = peer
            .map(|p| p.to_string())
            .unwrap_or_else(|| "stdin".into());
        anyhow!("session with {who} ({role}): {e:#}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_env_for_us_only() {
        let none = parse_activation(42, None, Some("2"), None).unwrap();
        assert!(none.is_empty());
        let other = parse_activation(42, Some("41"), Some("2"), None).unwrap();
        assert!(other.is_empty());
        let two = parse_activation(42, Some("42"), Some("2"), None).unwrap();
        assert_eq!(
            two,
            vec![
                ActivatedFd { fd: 3, name: None },
                ActivatedFd { fd: 4, name: None }
            ]
        );
        let named = parse_activation(42, Some("42"), Some("2"), Some("smtp:submission")).unwrap();
        assert_eq!(named[0].name.as_deref(), Some("smtp"));
        assert_eq!(named[1].name.as_deref(), Some("submission"));
        assert_eq!(named[1].fd, 4);
        assert!(parse_activation(42, Some("42"), Some("0"), Some(""))
            .unwrap()
            .is_empty());
        assert!(parse_activation(42, Some("42"), None, None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_activation_env_is_an_error() {
        assert!(parse_activation(42, Some("x"), Some("1"), None).is_err());
        assert!(parse_activation(42, Some("42"), Some("-1"), None).is_err());
        assert!(parse_activation(42, Some("42"), Some("one"), None).is_err());
        let too_many = (MAX_LISTEN_FDS + 1).to_string();
        assert!(parse_activation(42, Some("42"), Some(&too_many), None).is_err());
        assert!(parse_activation(42, Some("42"), Some("2"), Some("smtp")).is_err());
        let max = MAX_LISTEN_FDS.to_string();
        assert_eq!(
            parse_activation(42, Some("42"), Some(&max), None)
                .unwrap()
                .len(),
            MAX_LISTEN_FDS
        );
    }

    #[test]
    fn activated_fds_match_roles_then_positions() {
        let a: SocketAddr = "127.0.0.1:25".parse().unwrap();
        let specs = vec![
            ListenerSpec::new(a, "smtp"),
            ListenerSpec::new(a, "submission"),
        ];
        assert_eq!(
            match_spec(&specs, 0, Some("submission")).unwrap().role,
            "submission"
        );
        assert_eq!(
            match_spec(&specs, 0, Some("mrelayd.socket")).unwrap().role,
            "smtp"
        );
        assert_eq!(match_spec(&specs, 1, None).unwrap().role, "submission");
        assert!(match_spec(&specs, 2, None).is_none());
        let one = vec![ListenerSpec::new(a, "pop3")];
        assert_eq!(match_spec(&one, 3, None).unwrap().role, "pop3");
    }

    #[test]
    fn tcpserver_env_addresses() {
        assert_eq!(
            addr_from_env(Some("192.0.2.7"), Some("4711")),
            Some("192.0.2.7:4711".parse().unwrap())
        );
        assert_eq!(
            addr_from_env(Some("::1"), Some("25")),
            Some("[::1]:25".parse().unwrap())
        );
        assert_eq!(
            addr_from_env(Some("::ffff:192.0.2.7"), None),
            Some("192.0.2.7:0".parse().unwrap())
        );
        assert_eq!(
            addr_from_env(Some("10.0.0.1"), Some("bad")),
            Some("10.0.0.1:0".parse().unwrap())
        );
        assert_eq!(addr_from_env(Some("not-an-ip"), Some("25")), None);
        assert_eq!(addr_from_env(None, Some("25")), None);
    }

    #[test]
    fn limits_count_total_and_per_ip() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let limits = Limits {
            max_connections: 3,
            max_per_ip: 2,
            ..Limits::default()
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let a1 = admit(&counts, a, &limits).unwrap();
        let _a2 = admit(&counts, a, &limits).unwrap();
        assert!(admit(&counts, a, &limits).is_err());
        let _b1 = admit(&counts, b, &limits).unwrap();
        assert_eq!(
            admit(&counts, b, &limits).err(),
            Some("too many connections")
        );
        drop(a1);
        let _a3 = admit(&counts, a, &limits).unwrap();
        drop(_a3);
        drop(_a2);
        assert!(!counts.lock().unwrap().per_ip.contains_key(&a));
    }

    #[test]
    fn busy_server_keeps_slots_for_new_addresses() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        // Loopback addresses stand for clients here: none is exempt.
        let limits = Limits {
            max_connections: 30,
            max_per_ip: 20,
            per_ip_exempt: Vec::new(),
            ..Limits::default()
        };
        let ip = |i: u8| IpAddr::from([127, 0, 0, i]);
        // 15 flooding addresses, round robin, 4 tries each: they get the busy mark (24) only.
        let mut held = Vec::new();
        let mut refused = 0;
        for _round in 0..4 {
            for i in 2..17 {
                match admit(&counts, ip(i), &limits) {
                    Ok(s) => held.push(s),
                    Err(why) => {
                        assert!(why.starts_with("busy"), "{why}");
                        refused += 1;
                    }
                }
            }
        }
        assert_eq!(held.len(), 24);
        assert_eq!(refused, 36);
        // New addresses are still served, one each, up to every slot.
        for i in 99..105 {
            held.push(admit(&counts, ip(i), &limits).unwrap());
        }
        assert_eq!(
            admit(&counts, ip(200), &limits).err(),
            Some("too many connections")
        );
        // Slots come back exactly when sessions end.
        held.truncate(10);
        assert_eq!(counts.lock().unwrap().total, 10);
        drop(held);
        let c = counts.lock().unwrap();
        assert_eq!(c.total, 0);
        assert!(c.per_ip.is_empty());
        drop(c);
        // One address alone may use the busy mark, no more, and then only up to max_per_ip.
        let one: Vec<_> = (0..30)
            .map_while(|_| admit(&counts, ip(2), &limits).ok())
            .collect();
        assert_eq!(one.len(), 20);
    }

    #[test]
    fn exempt_networks_skip_the_per_address_limits_only() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let mut limits = Limits {
            max_connections: 30,
            max_per_ip: 2,
            ..Limits::default()
        };
        // Loopback is exempt by default (IPv4, IPv6, IPv4-mapped): past max_per_ip and past
        // the busy mark's fair share, up to the total only.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..40)
            .map_while(|_| admit(&counts, lo, &limits).ok())
            .collect();
        assert_eq!(held.len(), 30);
        assert_eq!(
            admit(&counts, "::1".parse().unwrap(), &limits).err(),
            Some("too many connections")
        );
        drop(held);
        // A configured network is exempt; others keep max_per_ip.
        limits.per_ip_exempt = vec![Cidr::parse("192.0.2.0/24").unwrap()];
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        let held: Vec<_> = (0..5)
            .map(|_| admit(&counts, a, &limits).unwrap())
            .collect();
        let b: IpAddr = "198.51.100.1".parse().unwrap();
        let _b: Vec<_> = (0..2)
            .map(|_| admit(&counts, b, &limits).unwrap())
            .collect();
        assert!(admit(&counts, b, &limits).is_err());
        assert!(admit(&counts, lo, &limits).is_ok_and(|s| {
            drop(s);
            true
        }));
        // Without exemptions loopback is an address like any other.
        limits.per_ip_exempt.clear();
        let _l: Vec<_> = (0..2)
            .map(|_| admit(&counts, lo, &limits).unwrap())
            .collect();
        assert_eq!(
            admit(&counts, lo, &limits).err(),
            Some("too many connections from this address")
        );
        drop(held);
    }

    /// The count is exact: a session's slot is free once it closes its connection, before the
    /// last reply reaches the client, so `max_per_ip` sessions that each say 221 and reconnect
    /// at once are never refused (smtp-source -s 20 against max_per_ip 20).
    #[tokio::test]
    async fn a_closing_session_no_longer_counts() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let limits = Limits {
            max_connections: 5,
            max_per_ip: 1,
            per_ip_exempt: Vec::new(),
            ..Limits::default()
        };
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let total = |c: &Arc<Mutex<Counts>>| c.lock().unwrap().total;
        let (mut client, server) = tokio::io::duplex(1024);
        let slot = admit(&counts, ip, &limits).unwrap();
        let mut conn = Connection::new(server, "smtp").with_slot(slot);
        assert!(admit(&counts, ip, &limits).is_err());
        conn.queue(b"221 2.0.0 Bye\r\n");
        conn.close().await.unwrap();
        // The connection object still exists, its slot does not; the client saw 221 and EOF.
        assert_eq!(total(&counts), 0);
        let mut seen = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut client, &mut seen)
            .await
            .unwrap();
        assert_eq!(seen, b"221 2.0.0 Bye\r\n");
        let again = admit(&counts, ip, &limits).unwrap();
        drop(conn);
        assert_eq!(total(&counts), 1);
        // A session that ends without close (EOF, an error) frees its slot when dropped.
        let (_c, server) = tokio::io::duplex(64);
        drop(again);
        let conn = Connection::new(server, "smtp").with_slot(admit(&counts, ip, &limits).unwrap());
        assert_eq!(total(&counts), 1);
        drop(conn);
        assert_eq!(total(&counts), 0);
        assert!(counts.lock().unwrap().per_ip.is_empty());
    }

    #[test]
    fn default_limits_are_the_named_constants() {
        let l = Limits::default();
        assert_eq!(l.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(l.max_per_ip, DEFAULT_MAX_PER_IP);
        assert_eq!(l.per_ip_exempt, cidr::loopback());
        assert_eq!(l.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(l.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    }
}
