//! mrelayd, the MTA. This file: the `[mrelayd]` config section, relay control, and recipient
//! resolution through the users passwd-file ([`crate::auth`]) and an [`aliases`] file. The rest:
//!
//! - [`daemon`]: listeners and SMTP sessions (the sans-IO [`crate::smtp::server`] over
//!   [`crate::server`]), enqueueing; [`runner`]: the queue runner and its delivery workers.
//! - [`deliver`]: one queue entry: local targets ([`local`]: Maildir, pipe), remote hops
//!   ([`crate::outbound`]: MX or relayhost, TLS policy, cached sessions, limits), retries, and
//!   bounces and delay warnings ([`dsn`], RFC 3464).
//! - [`dnsbl`]: DNSBL checks of the `smtp` listener's clients (RFC 5782), at RCPT.
//! - [`filter`]: the content filter command per listener role, run at the end of the content.
//! - [`admin`]: `queue`, `flush`, `explain`; [`quickstart`]: the demo mail system.
//!
//! # Config
//! ```toml
//! [users]
//! domains = ["example.org"]          # local domains (shared key)
//!
//! [mrelayd]
//! listen = [
//!   { address = "0.0.0.0:25",  role = "smtp" },         # MX: local mail; relay for trusted/AUTH
//!   { address = "0.0.0.0:587", role = "submission" },   # AUTH required, after STARTTLS
//!   { address = "0.0.0.0:465", role = "submissions" },  # implicit TLS, AUTH required
//! ]
//! queue_dir = "/var/lib/mailkit/queue"   # default: <state_dir>/queue
//! aliases = "/etc/mailkit/aliases"       # optional, see relay::aliases; followed while running
//! catch_all = "postmaster"               # optional: unknown local users go here instead of 550
//! require_postmaster = true              # refuse to start when postmaster@ a local domain
//!                                        # resolves to nobody (RFC 5321 §4.5.1); false: warn
//! recipient_delimiter = "+"              # user+tag@domain → user, EXT=tag ("" turns it off)
//! trusted_networks = ["127.0.0.0/8", "::1/128"]  # may relay without AUTH (smtp role); bare
//!                                        # names from them (and AUTH users) get @domains[0]
//! any_sender = false                     # AUTH users may send as any address
//! max_message_size = 36700160            # SIZE, octets
//! bare_newline = "normalize"             # bare LF in content stored as CRLF; "reject": 554
//! max_recipients = 100                   # per transaction (452 4.5.3 beyond)
//! max_errors = 20                        # errors (bad commands, refused RCPTs) before 421 4.7.0
//! max_hops = 50                       # more Received: headers (ours included): 554 5.4.6 loop
//! soft_error_limit = 10                  # after this many, each error reply is delayed...
//! error_sleep_ms = 1000                  # ...by this times the errors over the limit (1 s, 2 s, ...)
//! junk_command_limit = 100               # NOOP/RSET/VRFY/HELP in a row without progress: 421
//! session_deadline_secs = 1800           # no transaction completed for this long: 421 4.4.2
//! min_data_rate = 1024                   # DATA/BDAT octets per second over each window (0: off)
//! min_data_rate_window_secs = 60         # ...measured per window; the first one is the grace
//! greet_pause_ms = 0                     # smtp role: wait this long for early talkers
//! idle_timeout_secs = 300                # wait for a command (RFC 5321 §4.5.3.2.7)
//! data_timeout_secs = 600                # wait for each read of DATA/BDAT content (§4.5.3.2.5)
//! max_connections = 200
//! max_per_ip = 20
//! max_per_ip_exceptions = ["10.0.0.0/8"] # not held to max_per_ip (default: loopback and
//!                                        # trusted_networks, as Postfix's $mynetworks)
//! delivery_workers = 20                  # parallel deliveries (local and remote)
//! pipe_timeout_secs = 600                # a |command delivery is killed after this long
//! allow_symlinked_maildir = false        # follow a symlink at a Maildir or its tmp/new/cur
//! sieve = "%h/.dovecot.sieve"            # optional: each user's Sieve script (as Dovecot's
//!                                        # `sieve =`; %u %n %d %h as in mail_location)
//! arc_verify = true                      # smtp role, untrusted clients: arc= in A-R (RFC 8617)
//! dnsbl = ["zen.example"]                # smtp role: 554 5.7.1 at RCPT if listed (RFC 5782)
//! dnsbl_reply = { "zen.example" = "see https://zen.example/" }  # else the listing's TXT
//!
//! [mrelayd.remote]                       # remote delivery, see outbound::config
//!
//! [mrelayd.srs]                         # SRS for forwarded mail, see srs
//! enable = true
//! secret_file = "/etc/mailkit/srs.secret"
//!
//! [mrelayd.filter.spam]                  # content filter before the final reply, see filter
//! command = ["spamassassin", "-L", "-e", "1"]   # argv: exit 0 accept, 1 550, 75 451
//! roles = ["smtp"]                       # the listener roles it runs on (one filter per role)
//! timeout_secs = 60                      # then killed (its process group): 451 4.7.1
//! headers = false                        # true: stdout is header lines to add + empty line
//!
//! [mrelayd.rate_limit]                   # per hour, 0 = none; over: 450 4.7.1, see rate_limit
//! messages_per_hour_per_user = 100       # recipients_per_hour_per_user, ..._per_address too
//! ```

pub mod admin;
pub mod aliases;
pub mod checks;
pub mod daemon;
pub mod deliver;
pub mod dnsbl;
pub mod dsn;
pub mod filter;
pub mod local;
pub mod own_mail;
pub mod quickstart;
pub mod rate_journal;
pub mod rate_limit;
pub mod runner;
pub mod sender_auth;
pub mod spf_dmarc;
pub mod srs;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::auth::Authenticator;
use crate::server::daemon::{Listener, ListenerRole};
use crate::server::Cidr;
use crate::smtp::command::{split_address as split, Mailbox};
use crate::smtp::reply::Reply;
use aliases::{AliasTarget, Aliases, AliasesFile};

/// Deepest alias expansion before it is called a loop.
pub const MAX_ALIAS_DEPTH: usize = 20;
/// Most delivery targets one recipient may expand to (a bound on alias fan-out).
pub const MAX_TARGETS: usize = 1000;
/// Default listener of `serve`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:25";
/// Default number of parallel delivery workers.
pub const DEFAULT_DELIVERY_WORKERS: usize = 20;
/// Default pipe delivery timeout (seconds).
pub const DEFAULT_PIPE_TIMEOUT_SECS: u64 = 600;

/// What a listener is for (its `role` in `[mrelayd] listen`, [`Listener`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Port 25: mail for local domains; relaying only for trusted networks or AUTH users.
    #[default]
    Smtp,
    /// Port 587 (RFC 6409): AUTH required, and STARTTLS before AUTH.
    Submission,
    /// Port 465 (RFC 8314): implicit TLS, AUTH required.
    Submissions,
}

impl ListenerRole for Role {
    const ALL: &'static [Role] = &[Role::Smtp, Role::Submission, Role::Submissions];

    fn name(self) -> &'static str {
        match self {
            Role::Smtp => "smtp",
            Role::Submission => "submission",
            Role::Submissions => "submissions",
        }
    }

    fn implicit_tls(self) -> bool {
        self == Role::Submissions
    }
}

/// Default delay per error over the soft error limit (Postfix `smtpd_error_sleep_time`: 1 s).
pub const DEFAULT_ERROR_SLEEP_MS: u64 = 1000;
/// Default session deadline without a completed transaction: 30 minutes.
pub const DEFAULT_SESSION_DEADLINE_SECS: u64 = 1800;
/// Default least message content rate, octets per second.
pub const DEFAULT_MIN_DATA_RATE: u64 = 1024;
/// Default window over which the content rate is averaged.
pub const DEFAULT_MIN_DATA_RATE_WINDOW_SECS: u64 = 60;

/// The `[mrelayd]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Listening sockets.
    pub listen: Vec<Listener<Role>>,
    /// Queue directory (default `<state_dir>/queue`).
    pub queue_dir: Option<PathBuf>,
    /// Aliases file.
    pub aliases: Option<PathBuf>,
    /// Where unknown local recipients go (a local name or address); unset: 550 5.1.1.
    pub catch_all: Option<String>,
    /// RFC 5321 §4.5.1: `serve` and `inetd` refuse to start (exit 78) when `postmaster@DOMAIN`
    /// of a local domain resolves to no mailbox (an alias `postmaster: USER`, a user, or the
    /// catch-all); `false`: a warning at start instead.
    pub require_postmaster: bool,
    /// Subaddress delimiter (`user+tag`); empty: none.
    pub recipient_delimiter: String,
    /// Networks that may relay without AUTH on the smtp role (CIDR).
    pub trusted_networks: Vec<String>,
    /// Authenticated users may use any envelope sender.
    pub any_sender: bool,
    /// Largest message (SIZE).
    pub max_message_size: u64,
    /// A bare LF line end in message content: stored as CRLF (`normalize`, Postfix ≥ 3.9's
    /// `smtpd_forbid_bare_newline` default) or the message refused with 554 5.6.0 (`reject`).
    /// Only CRLF "." CRLF ends DATA either way (no SMTP smuggling).
    pub bare_newline: crate::smtp::server::BareNewline,
    /// Recipients per transaction.
    pub max_recipients: usize,
    /// Bad commands before disconnect.
    pub max_errors: u32,
    /// Hop limit (RFC 5321 §6.3, Postfix's `hopcount_limit`): a message arriving with this many
    /// `Received:` headers is refused at the end of DATA with 554 5.4.6, and one that reaches
    /// more `Received:` plus `Delivered-To:` headers while queued bounces with 5.4.6.
    pub max_hops: usize,
    /// smtp role: wait this long before the greeting and refuse clients that talk first.
    pub greet_pause_ms: u64,
    /// How long a session waits for the client's next command, and for each write (RFC 5321
    /// §4.5.3.2.7: at least 5 minutes); then 421 4.4.2 and disconnect.
    pub idle_timeout_secs: u64,
    /// How long each read may wait while message content (DATA or BDAT) is arriving (RFC 5321
    /// §4.5.3.2.5); then 421 4.4.2, the partial message is dropped, and disconnect.
    pub data_timeout_secs: u64,
    /// Errors after which each error reply is delayed (Postfix `smtpd_soft_error_limit`).
    pub soft_error_limit: u32,
    /// Delay per error over the soft limit, in milliseconds: the n-th error over it waits n
    /// times this (Postfix `smtpd_error_sleep_time`), in the session's task only.
    pub error_sleep_ms: u64,
    /// NOOP, RSET, VRFY and HELP commands in a row without progress before 421 (Postfix
    /// `smtpd_junk_command_limit`).
    pub junk_command_limit: u32,
    /// A session that completes no transaction (a message accepted or refused at its end) for
    /// this long is closed with 421 4.4.2; the clock restarts with each completed one. Not
    /// checked while message content arrives ([`Self::min_data_rate`] governs that).
    pub session_deadline_secs: u64,
    /// Least DATA/BDAT content octets per second, averaged over each
    /// [`Self::min_data_rate_window_secs`] of content; slower gets 421 4.4.2. 0 turns it off.
    pub min_data_rate: u64,
    /// The window for [`Self::min_data_rate`]; the first window of a message is its grace.
    pub min_data_rate_window_secs: u64,
    /// Concurrent sessions.
    pub max_connections: usize,
    /// Concurrent sessions per IP.
    pub max_per_ip: usize,
    /// Networks (CIDR) not held to `max_per_ip` (nor to the busy server's fair share; still to
    /// `max_connections`, the session deadlines, error limits and login throttling). Unset:
    /// loopback and `trusted_networks`, as Postfix exempts `$mynetworks` from its client limits.
    pub max_per_ip_exceptions: Option<Vec<String>>,
    /// Parallel local deliveries.
    pub delivery_workers: usize,
    /// Pipe delivery timeout.
    pub pipe_timeout_secs: u64,
    /// Follow a symlink at a local Maildir or its `tmp/`, `new/`, `cur/` or folder directories.
    /// Refused by default: the delivery is deferred (4.x) with a log line naming the path, since
    /// the Maildir's owner could point it anywhere. Files are never followed; symlinks above the
    /// Maildir (`/home -> /data/home`) always are ([`crate::maildir`]).
    pub allow_symlinked_maildir: bool,
    /// Each passwd-file user's Sieve script (RFC 5228), run by local delivery as mdeliver
    /// `--sieve` runs it: a template with `mail_location`'s variables (`%h/.dovecot.sieve`,
    /// `/etc/mailkit/sieve/%n.sieve`), absolute once expanded; a user's `sieve` extra field
    /// overrides it. A missing file is no filter; one that does not compile is logged and the
    /// message goes to INBOX. Unset: no filtering.
    pub sieve: Option<String>,
    /// Remote delivery (`[mrelayd.remote]`).
    pub remote: crate::outbound::config::RemoteConfig,
    /// Content filters by name (`[mrelayd.filter.NAME]`, [`filter`]).
    pub filter: BTreeMap<String, filter::FilterConfig>,
    /// The authserv-id of our `Authentication-Results:` fields (RFC 8601 §2.5); unset: the
    /// hostname.
    pub authserv_id: Option<String>,
    /// Verify the DKIM signatures of mail on the `smtp` listener and say so in an
    /// `Authentication-Results:` field (RFC 6376 §6, RFC 8601).
    pub dkim_verify: bool,
    /// SPF and DMARC checks of the same mail (`[mrelayd.spf_dmarc]`, [`spf_dmarc`]).
    pub spf_dmarc: spf_dmarc::Config,
    /// DKIM signing keys per domain (`[mrelayd.dkim."DOMAIN"]`, [`crate::dkim`]).
    pub dkim: std::collections::BTreeMap<String, crate::dkim::DomainKeys>,
    /// Verify the ARC chain (RFC 8617) of the same mail as `dkim_verify` ([`crate::arc`]).
    pub arc_verify: bool,
    /// DNSBL zones the `smtp` listener's clients are looked up in ([`dnsbl`], RFC 5782).
    pub dnsbl: Vec<String>,
    /// Text added to the refusal of a client listed in a zone, per zone; unset: the
    /// listing's TXT record, if any.
    pub dnsbl_reply: BTreeMap<String, String>,
    /// SRS for forwarded mail (`[mrelayd.srs]`, [`srs`]).
    pub srs: srs::SrsConfig,
    /// Submission rate limits (`[mrelayd.rate_limit]`, [`rate_limit`]).
    pub rate_limit: rate_limit::RateLimitConfig,
}

impl crate::config::Section for RelayConfig {
    fn paths(&mut self) -> Vec<&mut PathBuf> {
        let remote = self.remote.ca_file.iter_mut();
        let dkim = self.dkim.values_mut().flat_map(|d| d.keys.values_mut());
        self.queue_dir
            .iter_mut()
            .chain(self.aliases.iter_mut())
            .chain(remote)
            .chain(dkim)
            .chain(self.srs.secret_file.iter_mut())
            .collect()
    }
    fn templates(&mut self) -> Vec<&mut String> {
        self.sieve.iter_mut().collect()
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: vec![Listener {
                address: DEFAULT_LISTEN.into(),
                role: Role::Smtp,
            }],
            queue_dir: None,
            aliases: None,
            catch_all: None,
            require_postmaster: true,
            recipient_delimiter: "+".into(),
            trusted_networks: vec!["127.0.0.0/8".into(), "::1/128".into()],
            any_sender: false,
            max_message_size: crate::smtp::server::DEFAULT_MAX_MESSAGE_SIZE,
            bare_newline: crate::smtp::server::BareNewline::Normalize,
            max_recipients: crate::smtp::server::DEFAULT_MAX_RECIPIENTS,
            max_errors: crate::smtp::server::DEFAULT_MAX_ERRORS,
            max_hops: crate::smtp::hops::DEFAULT_MAX_HOPS,
            greet_pause_ms: 0,
            idle_timeout_secs: crate::smtp::server::COMMAND_TIMEOUT_SECS,
            data_timeout_secs: crate::smtp::server::DATA_TIMEOUT_SECS,
            soft_error_limit: crate::smtp::server::DEFAULT_SOFT_ERROR_LIMIT,
            error_sleep_ms: DEFAULT_ERROR_SLEEP_MS,
            junk_command_limit: crate::smtp::server::DEFAULT_JUNK_COMMAND_LIMIT,
            session_deadline_secs: DEFAULT_SESSION_DEADLINE_SECS,
            min_data_rate: DEFAULT_MIN_DATA_RATE,
            min_data_rate_window_secs: DEFAULT_MIN_DATA_RATE_WINDOW_SECS,
            max_connections: crate::server::DEFAULT_MAX_CONNECTIONS,
            max_per_ip: crate::server::DEFAULT_MAX_PER_IP,
            max_per_ip_exceptions: None,
            delivery_workers: DEFAULT_DELIVERY_WORKERS,
            pipe_timeout_secs: DEFAULT_PIPE_TIMEOUT_SECS,
            allow_symlinked_maildir: false,
            sieve: None,
            remote: crate::outbound::config::RemoteConfig::default(),
            filter: BTreeMap::new(),
            authserv_id: None,
            dkim_verify: true,
            spf_dmarc: spf_dmarc::Config::default(),
            dkim: std::collections::BTreeMap::new(),
            arc_verify: true,
            dnsbl: Vec::new(),
            dnsbl_reply: BTreeMap::new(),
            srs: srs::SrsConfig::default(),
            rate_limit: rate_limit::RateLimitConfig::default(),
        }
    }
}

impl RelayConfig {
    /// The networks not held to `max_per_ip`: `max_per_ip_exceptions`, else loopback and
    /// `trusted_networks`.
    pub fn per_ip_exempt(&self) -> anyhow::Result<Vec<Cidr>> {
        use crate::server::cidr;
        match &self.max_per_ip_exceptions {
            Some(list) => cidr::parse_list("mrelayd.max_per_ip_exceptions", list),
            None => {
                let mut nets = cidr::loopback();
                nets.extend(cidr::parse_list(
                    "mrelayd.trusted_networks",
                    &self.trusted_networks,
                )?);
                Ok(nets)
            }
        }
    }
}

/// Where one recipient's copy goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A Maildir (a user's, or a path from the aliases file).
    Maildir {
        /// The Maildir.
        path: PathBuf,
        /// The user it belongs to, if any.
        user: Option<String>,
        /// The user's Sieve script (`[mrelayd] sieve`), if any.
        sieve: Option<PathBuf>,
    },
    /// A command run with the message on stdin.
    Pipe {
        /// Shell command.
        command: String,
        /// Subaddress extension (`EXT`).
        ext: Option<String>,
        /// The local name the alias matched, without the extension (`USER`): split at
        /// `recipient_delimiter` by the router, as qmail's and Postfix's `USER`.
        user: String,
    },
    /// Not a local domain: remote delivery (part 2).
    Remote(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Maildir {
                path,
                user: Some(u),
                ..
            } => {
                write!(f, "maildir {} (user {u})", path.display())
            }
            Target::Maildir {
                path, user: None, ..
            } => write!(f, "maildir {}", path.display()),
            Target::Pipe { command, .. } => write!(f, "pipe |{command}"),
            Target::Remote(a) => write!(f, "remote <{a}>"),
        }
    }
}

/// The result of resolving one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Deliver to these targets; `trace` says how (for logs and `explain`).
    Targets {
        /// Where the copies go.
        targets: Vec<Target>,
        /// Steps taken (`alias team (aliases line 3)`, `user alice`, ...).
        trace: Vec<String>,
    },
    /// No such local user (550 5.1.1).
    Unknown(String),
    /// Alias loop or over-deep expansion.
    Loop(String),
    /// A lookup failed (passwd-file, mail location): temporary (451 4.3.0).
    Error(String),
}

/// Who is asking (for relay control).
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The client's IP, when known.
    pub ip: Option<IpAddr>,
    /// Authenticated user.
    pub user: Option<String>,
    /// The listener's role.
    pub role: Role,
}

/// A policy answer: the reply (None = accept) and why.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// `None` to accept, else the refusal.
    pub refusal: Option<Reply>,
    /// Why, in words (logs and `explain`).
    pub reason: String,
    /// For an accepted recipient, where it goes.
    pub resolution: Option<Resolution>,
}

/// Routing and policy, shared by all sessions and the delivery workers.
#[derive(Debug)]
pub struct Router {
    /// Local domains (lower case).
    pub domains: Vec<String>,
    /// Our host name (`Postmaster` without a domain is `postmaster@hostname`'s local user).
    pub hostname: String,
    auth: Arc<Authenticator>,
    /// Followed while running: edits apply without a restart.
    aliases: Option<AliasesFile>,
    catch_all: Option<String>,
    delimiter: String,
    /// `[mrelayd] sieve`: the users' Sieve script template.
    sieve: Option<String>,
    trusted: Vec<Cidr>,
    any_sender: bool,
    /// `[mrelayd.srs]`, when enabled.
    srs: Option<Arc<crate::srs::Srs>>,
}

/// The domain of an address in its canonical form, or `default` when the address has none.
fn domain_or(domain: &str, default: &str) -> String {
    if domain.is_empty() {
        default.to_string()
    } else {
        crate::smtp::command::canonical_domain(domain)
    }
}

impl Router {
    /// Builds the router; bad trusted networks or an unreadable aliases file are config errors.
    pub fn new(
        config: &crate::config::Config,
        relay: &RelayConfig,
        auth: Arc<Authenticator>,
    ) -> anyhow::Result<Router> {
        let trusted =
            crate::server::cidr::parse_list("mrelayd.trusted_networks", &relay.trusted_networks)?;
        let aliases = relay
            .aliases
            .as_ref()
            .map(|p| aliases::open(p))
            .transpose()?;
        let mut domains: Vec<String> = config
            .users
            .domains
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        if domains.is_empty() {
            domains.push(config.hostname.to_ascii_lowercase());
        }
        let srs = srs::load(&relay.srs, &domains[0])
            .map_err(|e| crate::exit::fail(crate::exit::CONFIG, e))?
            .map(Arc::new);
        Ok(Router {
            domains,
            hostname: config.hostname.clone(),
            auth,
            aliases,
            catch_all: relay.catch_all.clone(),
            delimiter: relay.recipient_delimiter.clone(),
            sieve: relay.sieve.clone(),
            trusted,
            any_sender: relay.any_sender,
            srs,
        })
    }

    /// The sender a copy to a remote target goes out with: SRS-rewritten when SRS is on and
    /// the copy is `forwarded` (one of our recipients sends it there), else `sender`
    /// ([`srs::forward_sender`]).
    pub fn forward_sender(&self, sender: &str, forwarded: bool) -> String {
        match &self.srs {
            Some(s) => srs::forward_sender(s, sender, forwarded, |d| self.is_local_domain(d)),
            None => sender.to_string(),
        }
    }

    /// Whether a remote copy for envelope recipient `recipient` is forwarded by us: the
    /// recipient is ours (a local domain, or an SRS address of ours), not relayed for a client.
    pub fn forwards(&self, recipient: &str) -> bool {
        self.is_local_domain(split(recipient).1) || self.is_srs_address(recipient)
    }

    /// Whether `address` is an SRS address at our SRS domain (SRS on).
    fn is_srs_address(&self, address: &str) -> bool {
        self.srs.as_ref().is_some_and(|s| srs::is_ours(s, address))
    }

    /// The aliases file in use.
    pub fn aliases_path(&self) -> Option<&std::path::Path> {
        self.aliases.as_ref().map(AliasesFile::path)
    }

    /// Whether `domain` is one of ours (address literals of our own addresses are not handled).
    pub fn is_local_domain(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.');
        self.domains.iter().any(|x| x.eq_ignore_ascii_case(d))
    }

    /// The address `RCPT TO:<Postmaster>` (no domain, RFC 5321 §4.5.1) stands for, and the one
    /// DSNs name for help: postmaster at our first local domain ([`Router::postmaster_domain`]).
    pub fn postmaster(&self) -> String {
        format!("postmaster@{}", self.postmaster_domain())
    }

    /// The local domain of [`Router::postmaster`]: the first of `[users] domains` (else the
    /// hostname).
    pub fn postmaster_domain(&self) -> &str {
        self.domains
            .first()
            .map(String::as_str)
            .unwrap_or("localhost")
    }

    /// RFC 5321 §4.5.1 (and RFC 2142 for abuse): `postmaster` MUST be accepted at every local
    /// domain. For each local domain where `postmaster@DOMAIN` resolves to no delivery target
    /// (unknown, an alias loop, a failed lookup): the address and why.
    pub fn postmaster_problems(&self) -> Vec<(String, String)> {
        self.domains
            .iter()
            .filter_map(|d| {
                let addr = format!("postmaster@{d}");
                match self.resolve(&addr) {
                    Resolution::Targets { targets, .. } if !targets.is_empty() => None,
                    Resolution::Targets { .. } => Some((addr, "no targets".to_string())),
                    Resolution::Unknown(why) | Resolution::Loop(why) | Resolution::Error(why) => {
                        Some((addr, why))
                    }
                }
            })
            .collect()
    }

    /// The address queued and resolved for an accepted RCPT `to`: its canonical form, the bare
    /// `<Postmaster>` made [`postmaster`](Self::postmaster).
    pub fn rcpt_address(&self, to: &Mailbox) -> String {
        if to.is_bare_postmaster() {
            self.postmaster()
        } else {
            to.to_string()
        }
    }

    /// The domain bare names of `client` get, if it is a local client (in a trusted network
    /// or authenticated): our first local domain, as Postfix's local_header_rewrite_clients.
    /// The SMTP session decides the same at each command (`smtp::server::Session::bare_domain`,
    /// set up by the daemon from [`Router::domains`] and [`Router::trusted_network`]).
    pub fn bare_domain(&self, client: &Client) -> Option<&str> {
        let local = client.user.is_some() || self.trusted_network(client.ip).is_some();
        self.domains.first().map(String::as_str).filter(|_| local)
    }

    /// The trusted network containing `ip`, if any.
    pub fn trusted_network(&self, ip: Option<IpAddr>) -> Option<Cidr> {
        let ip = ip?;
        self.trusted.iter().copied().find(|n| n.contains(ip))
    }

    /// Resolves a recipient address to its delivery targets. `address` is the canonical form
    /// RCPT made ([`Mailbox`]: `demo@localhost`, `"a b"@localhost`), which is what the queue
    /// stores, so delivery resolves exactly what RCPT checked. Local users and aliases are
    /// looked up by the unquoted local part, without case; a remote address keeps its local
    /// part as written.
    pub fn resolve(&self, address: &str) -> Resolution {
        // SRS addresses of ours go back to where they came from ([`srs`]): checked first, as
        // the SRS domain is usually a local one.
        if let Some(back) = self.srs.as_ref().and_then(|s| srs::reverse(s, address)) {
            return match back {
                Ok(original) => match self.resolve(&original) {
                    Resolution::Targets { targets, mut trace } => {
                        trace.insert(0, format!("SRS address: back to {original}"));
                        Resolution::Targets { targets, trace }
                    }
                    other => other,
                },
                Err(e) => Resolution::Unknown(format!("{address}: {e}")),
            };
        }
        let (local, domain) = split(address);
        let domain = domain_or(domain, self.domains.first().map_or("", String::as_str));
        if !self.is_local_domain(&domain) {
            return Resolution::Targets {
                targets: vec![Target::Remote(format!("{local}@{domain}"))],
                trace: vec![format!("{domain} is not a local domain: remote delivery")],
            };
        }
        // Entries queued before canonical forms may still hold `"demo"@localhost`.
        let local = crate::smtp::command::unquote_local(local);
        let local = local.as_str();
        // One table for the whole expansion, even if the file is reloaded meanwhile.
        let mut st = Expansion {
            aliases: self
                .aliases
                .as_ref()
                .map(AliasesFile::current)
                .unwrap_or_default(),
            ..Expansion::default()
        };
        match self.expand(local, &domain, None, &mut st, 0) {
            Ok(true) => {}
            Ok(false) => {
                // Unknown user: the catch-all, if any, takes it.
                match &self.catch_all {
                    Some(c) => {
                        st.trace
                            .push(format!("{local}@{domain} unknown: catch-all {c}"));
                        let (cl, cd) = split(c);
                        let cd = domain_or(cd, &domain);
                        match self.expand(cl, &cd, None, &mut st, 1) {
                            Ok(true) => {}
                            Ok(false) => {
                                return Resolution::Unknown(format!(
                                    "no such user {local}@{domain} (catch-all {c} is unknown too)"
                                ))
                            }
                            Err(e) => return e,
                        }
                    }
                    None => return Resolution::Unknown(format!("no such user {local}@{domain}")),
                }
            }
            Err(e) => return e,
        }
        Resolution::Targets {
            targets: st.targets.into_iter().collect(),
            trace: st.trace,
        }
    }

    /// Expands one name; Ok(false) when it names nobody.
    fn expand(
        &self,
        local: &str,
        domain: &str,
        ext: Option<&str>,
        st: &mut Expansion,
        depth: usize,
    ) -> Result<bool, Resolution> {
        if depth > MAX_ALIAS_DEPTH {
            return Err(Resolution::Loop(format!(
                "alias expansion deeper than {MAX_ALIAS_DEPTH} at {local}@{domain}"
            )));
        }
        if st.targets.len() > MAX_TARGETS {
            return Err(Resolution::Loop(format!("more than {MAX_TARGETS} targets")));
        }
        let full = format!("{local}@{domain}").to_lowercase();
        let in_chain = st.chain.contains(&full);
        if !in_chain {
            let aliases = st.aliases.clone();
            let alias = aliases
                .get(&full)
                .map(|a| (a, full.clone()))
                .or_else(|| aliases.get(local).map(|a| (a, local.to_lowercase())));
            if let Some(((targets, line), key)) = alias {
                st.trace.push(format!("alias {key} (aliases line {line})"));
                st.chain.push(full.clone());
                for t in targets {
                    match t {
                        AliasTarget::Pipe(c) => {
                            st.targets.insert(Target::Pipe {
                                command: c.clone(),
                                ext: ext.map(str::to_string),
                                user: local.to_string(),
                            });
                        }
                        AliasTarget::Maildir(p) => {
                            st.targets.insert(Target::Maildir {
                                path: p.clone(),
                                user: None,
                                sieve: None,
                            });
                        }
                        AliasTarget::Address(a) => {
                            let (l, d) = split(a);
                            let d = domain_or(d, domain);
                            if !self.is_local_domain(&d) {
                                st.trace.push(format!("{a}: remote"));
                                st.targets.insert(Target::Remote(format!("{l}@{d}")));
                                continue;
                            }
                            if !self.expand(l, &d, ext, st, depth + 1)? {
                                return Err(Resolution::Unknown(format!(
                                    "alias {key} (aliases line {line}) names unknown user {l}@{d}"
                                )));
                            }
                        }
                    }
                }
                st.chain.pop();
                return Ok(true);
            }
        }
        // A user in the passwd-file.
        let users = self.auth.users();
        // Local parts are matched without case, as Postfix and Dovecot do for local users
        // (UserDb::lookup falls back to the case-folded name).
        let found = users.lookup_address(&format!("{local}@{domain}"), &self.domains);
        if let Some(user) = found {
            let path = match self.auth.mailbox(user) {
                Ok(p) => p,
                Err(e) => {
                    return Err(Resolution::Error(format!(
                        "mail location of {}: {e:#}",
                        user.name
                    )))
                }
            };
            st.trace.push(format!(
                "user {} (passwd-file line {})",
                user.name, user.line
            ));
            let sieve = match user.sieve_location(self.sieve.as_deref()) {
                None => None,
                Some(Ok(p)) => Some(p),
                Some(Err(e)) => {
                    return Err(Resolution::Error(format!(
                        "sieve script of {}: {e:#}",
                        user.name
                    )))
                }
            };
            st.targets.insert(Target::Maildir {
                path,
                user: Some(user.name.clone()),
                sieve,
            });
            return Ok(true);
        }
        if in_chain {
            return Err(Resolution::Loop(format!(
                "alias loop: {full} expands to itself and is no user"
            )));
        }
        // Subaddress: user+tag → user with EXT=tag.
        if !self.delimiter.is_empty() && ext.is_none() {
            if let Some((base, tag)) = local.split_once(self.delimiter.as_str()) {
                if !base.is_empty() {
                    st.trace
                        .push(format!("subaddress {local}: user {base}, extension {tag}"));
                    return self.expand(base, domain, Some(tag), st, depth + 1);
                }
            }
        }
        Ok(false)
    }

    /// MAIL FROM policy: an authenticated user may only use their own addresses unless
    /// `any_sender` is set (the null sender is always allowed).
    pub fn check_sender(&self, client: &Client, from: Option<&Mailbox>) -> Verdict {
        let accept = |reason: String| Verdict {
            refusal: None,
            reason,
            resolution: None,
        };
        let (Some(user), Some(from)) = (&client.user, from) else {
            return accept("no authenticated user: any sender".into());
        };
        if self.any_sender {
            return accept("any_sender = true".into());
        }
        let addr = from.to_string();
        if self.owns(user, &addr) {
            return accept(format!("{addr} belongs to {user}"));
        }
        Verdict {
            refusal: Some(Reply::new(
                553,
                Some((5, 7, 1)),
                format!("Sender address rejected: not owned by user {user}"),
            )),
            reason: format!("{addr} is not an address of authenticated user {user}"),
            resolution: None,
        }
    }

    /// Whether authenticated `user` may send as `addr`: the address is the user's login name, or
    /// the user's name at a local domain, or resolves (through aliases) to the user's mailbox.
    pub fn owns(&self, user: &str, addr: &str) -> bool {
        if addr.eq_ignore_ascii_case(user) {
            return true;
        }
        let (local, domain) = split(addr);
        if !self.is_local_domain(domain) {
            return false;
        }
        let (ulocal, udomain) = split(user);
        if udomain.is_empty() && local.eq_ignore_ascii_case(ulocal) {
            return true;
        }
        match self.resolve(addr) {
            Resolution::Targets { targets, .. } => targets.iter().any(|t| {
                matches!(t, Target::Maildir { user: Some(u), .. } if u.eq_ignore_ascii_case(user))
            }),
            _ => false,
        }
    }

    /// RCPT TO policy (RFC 5321 §3.6.2 relay control; RFC 5321 §3.2 and §7.9: unknown users are
    /// refused at RCPT time, never bounced later). `to` is canonical ([`Mailbox`]) and is
    /// resolved exactly as delivery will resolve the queued address ([`Router::rcpt_address`]).
    pub fn check_rcpt(&self, client: &Client, to: &Mailbox) -> Verdict {
        let addr = self.rcpt_address(to);
        let domain = split(&addr).1.to_string();
        // No route leads to an address literal (the MX walk takes names), and ours are not
        // local domains: refused now rather than accepted and bounced (RFC 5321 §4.1.3).
        if domain.starts_with('[') {
            return Verdict {
                refusal: Some(Reply::new(
                    550,
                    Some((5, 1, 2)),
                    format!(
                        "<{addr}>: Recipient address rejected: address literals are not accepted"
                    ),
                )),
                reason: format!(
                    "{domain} is an address literal; mail to address literals is not supported"
                ),
                resolution: None,
            };
        }
        if !self.is_local_domain(&domain) && !self.is_srs_address(&addr) {
            let why = if let Some(u) = &client.user {
                Some(format!("authenticated as {u}"))
            } else if client.role == Role::Smtp {
                self.trusted_network(client.ip)
                    .map(|n| format!("client in trusted network {n}"))
            } else {
                None
            };
            return match why {
                Some(why) => Verdict {
                    refusal: None,
                    reason: format!("{domain} is not local; relaying allowed: {why}"),
                    resolution: Some(self.resolve(&addr)),
                },
                None => Verdict {
                    refusal: Some(Reply::new(
                        554,
                        Some((5, 7, 1)),
                        format!("<{addr}>: Relay access denied"),
                    )),
                    reason: format!(
                        "{domain} is not a local domain ({}), the client is not authenticated{}",
                        self.domains.join(", "),
                        if client.role == Role::Smtp {
                            " and not in trusted_networks"
                        } else {
                            ""
                        }
                    ),
                    resolution: None,
                },
            };
        }
        let res = self.resolve(&addr);
        let (refusal, reason) = match &res {
            Resolution::Targets { trace, .. } => {
                (None, format!("local domain {domain}: {}", trace.join(", ")))
            }
            Resolution::Unknown(why) => (
                Some(Reply::new(
                    550,
                    Some((5, 1, 1)),
                    format!("<{addr}>: Recipient address rejected: User unknown"),
                )),
                why.clone(),
            ),
            Resolution::Loop(why) => (
                Some(Reply::new(
                    550,
                    Some((5, 4, 6)),
                    format!("<{addr}>: Recipient address rejected: alias loop"),
                )),
                why.clone(),
            ),
            Resolution::Error(why) => (
                Some(Reply::new(
                    451,
                    Some((4, 3, 0)),
                    format!("<{addr}>: Temporary lookup failure"),
                )),
                why.clone(),
            ),
        };
        Verdict {
            refusal,
            reason,
            resolution: Some(res),
        }
    }
}

#[derive(Default)]
struct Expansion {
    aliases: Arc<Aliases>,
    targets: BTreeSet<Target>,
    trace: Vec<String>,
    chain: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(aliases: &str, catch_all: Option<&str>) -> (tempfile::TempDir, Router) {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "alice:{PLAIN}pw::::/home/alice\nbob:{PLAIN}pw::::/home/bob\ncarol@other.test:{PLAIN}pw::::/home/carol\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("aliases"), aliases).unwrap();
        let cfg = crate::config::Config::parse(
            &format!(
                "hostname = \"mx.test\"\n[users]\npasswd_file = \"{}\"\nmail_location = \"/mail/%n\"\ndomains = [\"example.test\", \"other.test\"]\n",
                passwd.display()
            ),
            None,
        )
        .unwrap();
        let relay = RelayConfig {
            aliases: Some(dir.path().join("aliases")),
            catch_all: catch_all.map(str::to_string),
            ..RelayConfig::default()
        };
        let auth = Arc::new(Authenticator::from_config(&cfg).unwrap());
        let r = Router::new(&cfg, &relay, auth).unwrap();
        (dir, r)
    }

    fn targets(r: &Router, a: &str) -> Vec<String> {
        match r.resolve(a) {
            Resolution::Targets { targets, .. } => targets.iter().map(|t| t.to_string()).collect(),
            other => vec![format!("{other:?}")],
        }
    }

    #[test]
    fn resolution() {
        let (_d, r) = router(
            "postmaster: alice\nteam: alice, bob, |/bin/cat, /srv/team/, x@remote.test\nloop1: loop2\nloop2: loop1\nbob: bob, |/bin/archive\nghost: nobody\n",
            None,
        );
        assert_eq!(
            targets(&r, "alice@example.test"),
            ["maildir /mail/alice (user alice)"]
        );
        assert_eq!(
            targets(&r, "ALICE@Example.Test"),
            ["maildir /mail/alice (user alice)"]
        );
        assert_eq!(
            targets(&r, "postmaster@other.test"),
            ["maildir /mail/alice (user alice)"]
        );
        let t = targets(&r, "team@example.test");
        assert_eq!(t.len(), 6, "{t:?}");
        assert!(t.contains(&"remote <x@remote.test>".to_string()));
        assert!(t.contains(&"maildir /srv/team/".to_string()));
        // A name naming itself is its mailbox.
        assert_eq!(
            targets(&r, "bob@example.test"),
            ["maildir /mail/bob (user bob)", "pipe |/bin/archive"]
        );
        assert!(matches!(
            r.resolve("loop1@example.test"),
            Resolution::Loop(_)
        ));
        assert!(matches!(
            r.resolve("ghost@example.test"),
            Resolution::Unknown(_)
        ));
        assert!(matches!(
            r.resolve("nobody@example.test"),
            Resolution::Unknown(_)
        ));
        // Virtual user only in its domain.
        assert_eq!(
            targets(&r, "carol@other.test"),
            ["maildir /mail/carol (user carol@other.test)"]
        );
        assert!(matches!(
            r.resolve("carol@example.test"),
            Resolution::Unknown(_)
        ));
        // Subaddress.
        assert_eq!(
            targets(&r, "alice+lists@example.test"),
            ["maildir /mail/alice (user alice)"]
        );
        match r.resolve("bob+x@example.test") {
            Resolution::Targets { targets, .. } => assert!(targets.contains(&Target::Pipe {
                command: "/bin/archive".into(),
                ext: Some("x".into()),
                user: "bob".into(),
            })),
            o => panic!("{o:?}"),
        }
        assert_eq!(
            targets(&r, "someone@remote.test"),
            ["remote <someone@remote.test>"]
        );
    }

    #[test]
    fn catch_all() {
        let (_d, r) = router("", Some("bob"));
        assert_eq!(
            targets(&r, "whoever@example.test"),
            ["maildir /mail/bob (user bob)"]
        );
        let (_d, r) = router("", Some("nobody"));
        assert!(matches!(
            r.resolve("whoever@example.test"),
            Resolution::Unknown(_)
        ));
    }

    fn mb(s: &str) -> Mailbox {
        let (l, d) = split(s);
        Mailbox {
            local: l.into(),
            domain: d.into(),
        }
    }

    /// The canonical Mailbox RCPT TO:<a> parses to.
    fn rcpt(a: &str) -> Mailbox {
        match crate::smtp::command::parse(format!("RCPT TO:<{a}>").as_bytes()) {
            Ok(crate::smtp::command::Command::Rcpt { to, .. }) => to,
            other => panic!("{a}: {other:?}"),
        }
    }

    #[test]
    fn rcpt_and_delivery_resolve_the_same_canonical_address() {
        let (_d, r) = router("team: alice, bob\n", None);
        let stranger = Client {
            ip: Some("192.0.2.7".parse().unwrap()),
            user: None,
            role: Role::Smtp,
        };
        for (form, want) in [
            (r#""alice"@example.test"#, "alice@example.test"),
            (r#""al\ice"@Example.Test."#, "alice@example.test"),
            ("ALICE@example.test", "ALICE@example.test"),
            (r#""Team"@example.test"#, "Team@example.test"),
            ("@relay.test:alice+x@example.test", "alice+x@example.test"),
        ] {
            let to = rcpt(form);
            let v = r.check_rcpt(&stranger, &to);
            assert!(v.refusal.is_none(), "{form}: {:?}", v.refusal);
            assert_eq!(r.rcpt_address(&to), want, "{form}");
            // What the queue stores resolves to what RCPT accepted.
            assert_eq!(Some(r.resolve(want)), v.resolution, "{form}");
        }
        for (form, code) in [
            (r#""a b"@example.test"#, (5, 1, 1)),
            (r#""alice "@example.test"#, (5, 1, 1)),
            ("alice@[127.0.0.1]", (5, 1, 2)),
            ("alice@[IPv6:::1]", (5, 1, 2)),
        ] {
            let v = r.check_rcpt(&stranger, &rcpt(form));
            assert_eq!(v.refusal.map(|r| r.enhanced), Some(Some(code)), "{form}");
        }
        // Queue entries written before canonical forms still find their user.
        assert_eq!(
            targets(&r, r#""bob"@example.test"#),
            ["maildir /mail/bob (user bob)"]
        );
        // A remote address keeps its local part as written.
        assert_eq!(
            targets(&r, r#""A b"@Remote.Test"#),
            [r#"remote <"A b"@remote.test>"#]
        );
    }

    #[test]
    fn relay_control() {
        let (_d, r) = router("", None);
        let stranger = Client {
            ip: Some("192.0.2.7".parse().unwrap()),
            user: None,
            role: Role::Smtp,
        };
        let v = r.check_rcpt(&stranger, &mb("x@remote.test"));
        assert_eq!(v.refusal.unwrap().code, 554);
        let v = r.check_rcpt(&stranger, &mb("nobody@example.test"));
        assert_eq!(v.refusal.as_ref().unwrap().enhanced, Some((5, 1, 1)));
        assert!(r
            .check_rcpt(&stranger, &mb("alice@example.test"))
            .refusal
            .is_none());
        let local = Client {
            ip: Some("127.0.0.1".parse().unwrap()),
            ..stranger.clone()
        };
        let v = r.check_rcpt(&local, &mb("x@remote.test"));
        assert!(
            v.refusal.is_none() && v.reason.contains("127.0.0.0/8"),
            "{}",
            v.reason
        );
        // Trusted networks do not count on submission.
        let sub = Client {
            role: Role::Submission,
            ..local.clone()
        };
        assert!(r.check_rcpt(&sub, &mb("x@remote.test")).refusal.is_some());
        let authed = Client {
            user: Some("bob".into()),
            ..stranger
        };
        assert!(r
            .check_rcpt(&authed, &mb("x@remote.test"))
            .refusal
            .is_none());
        // Sender ownership.
        assert!(r
            .check_sender(&authed, Some(&mb("bob@example.test")))
            .refusal
            .is_none());
        assert!(r
            .check_sender(&authed, Some(&mb("bob@other.test")))
            .refusal
            .is_none());
        assert!(r
            .check_sender(&authed, Some(&mb("alice@example.test")))
            .refusal
            .is_some());
        assert!(r
            .check_sender(&authed, Some(&mb("bob@remote.test")))
            .refusal
            .is_some());
        assert!(r.check_sender(&authed, None).refusal.is_none());
    }
}
