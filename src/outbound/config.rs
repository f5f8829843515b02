//! The `[mrelayd.remote]` section: the engine's settings as the config file spells them.
//!
//! # Config
//! ```toml
//! [mrelayd.remote]
//! resolver = "127.0.0.1:53"     # DNS server (default: /etc/resolv.conf)
//! port = 25                     # SMTP port of MX hosts
//! helo_name = "mx.example.org"  # default: hostname
//! tls = "may"                   # none | may | encrypt | verify
//! ca_file = "/etc/ssl/ca.pem"   # trust anchors for verify (default: webpki-roots)
//! dane = true                   # DANE (RFC 7672) when DNSSEC says so (see outbound::dane)
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
//! mta_sts = true                           # apply MTA-STS policies (RFC 8461)
//! mta_sts_ca_file = "/etc/ssl/ca.pem"      # trust anchors of policy hosts (default: webpki-roots)
//! mta_sts_port = 443                       # HTTPS port of mta-sts.DOMAIN
//! mta_sts_timeout_secs = 30                # one policy fetch
//!
//! [mrelayd.remote.domains."example.net"]   # per destination domain
//! relayhost = "[10.0.0.1]:25"              # route it to a smarthost instead of its MX
//! tls = "verify"                           # or a stricter TLS policy for its MX
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::password::PASSWORD_COMMAND_TIMEOUT;
use crate::tls::{Mode, Policy, Verify};

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

/// The spellings of `tls` (MX delivery), after Postfix's `smtp_tls_security_level`: `none`,
/// `may` (opportunistic STARTTLS, certificate not checked, RFC 7435), `encrypt` (STARTTLS
/// required, certificate not checked), `verify` (STARTTLS required, certificate verified for
/// the MX host name against webpki-roots or `ca_file`).
pub const MX_TLS: &[&str] = &["none", "may", "encrypt", "verify"];

/// The spellings of `relayhost_tls`: `none`, `may` (opportunistic STARTTLS), `starttls`
/// (required, certificate verified for the relayhost name), `tls` (implicit TLS, RFC 8314,
/// verified).
pub const RELAYHOST_TLS: &[&str] = &["none", "may", "starttls", "tls"];

/// The policy a `tls` keyword stands for.
pub fn mx_tls(keyword: &str) -> Option<Policy> {
    Some(match keyword {
        "none" => Policy::new(Mode::Off, Verify::None),
        "may" => Policy::new(Mode::Opportunistic, Verify::None),
        "encrypt" => Policy::new(Mode::Starttls, Verify::None),
        "verify" => Policy::new(Mode::Starttls, Verify::WebPki),
        _ => return None,
    })
}

/// The policy a `relayhost_tls` keyword stands for.
pub fn relayhost_tls(keyword: &str) -> Option<Policy> {
    Some(match keyword {
        "none" => Policy::new(Mode::Off, Verify::None),
        "may" => Policy::new(Mode::Opportunistic, Verify::None),
        "starttls" => Policy::new(Mode::Starttls, Verify::WebPki),
        "tls" => Policy::new(Mode::Implicit, Verify::WebPki),
        _ => return None,
    })
}

/// The `tls` keyword of an MX policy (for `mrelayd explain`).
pub fn mx_tls_name(p: &Policy) -> &'static str {
    match (p.mode, &p.verify) {
        (Mode::Off, _) => "none",
        (Mode::Opportunistic, _) => "may",
        (Mode::Starttls | Mode::Implicit, Verify::None) => "encrypt",
        (Mode::Starttls | Mode::Implicit, _) => "verify",
    }
}

/// The `relayhost_tls` keyword of a relayhost policy (for `mrelayd explain`).
pub fn relayhost_tls_name(p: &Policy) -> &'static str {
    match p.mode {
        Mode::Off => "none",
        Mode::Opportunistic => "may",
        Mode::Starttls => "starttls",
        Mode::Implicit => "tls",
    }
}

/// Deserializes a keyword with `parse`; anything else is serde's "unknown variant" error
/// listing `names`, as a plain enum gives.
fn keyword<'de, D: serde::Deserializer<'de>>(
    d: D,
    parse: fn(&str) -> Option<Policy>,
    names: &'static [&'static str],
) -> Result<Policy, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).ok_or_else(|| serde::de::Error::unknown_variant(&s, names))
}

fn de_mx_tls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
    keyword(d, mx_tls, MX_TLS)
}

fn de_mx_tls_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Policy>, D::Error> {
    keyword(d, mx_tls, MX_TLS).map(Some)
}

fn de_relayhost_tls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Policy, D::Error> {
    keyword(d, relayhost_tls, RELAYHOST_TLS)
}

fn de_relayhost_tls_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Policy>, D::Error> {
    keyword(d, relayhost_tls, RELAYHOST_TLS).map(Some)
}

/// The default `tls`: `may`.
pub fn default_mx_tls() -> Policy {
    Policy::new(Mode::Opportunistic, Verify::None)
}

/// The default `relayhost_tls`: `starttls`.
pub fn default_relayhost_tls() -> Policy {
    Policy::new(Mode::Starttls, Verify::WebPki)
}

/// Per destination domain overrides (`[mrelayd.remote.domains."DOMAIN"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainPolicy {
    /// Smarthost for this domain instead of its MX.
    pub relayhost: Option<String>,
    /// TLS policy for this domain's MX hosts ([`MX_TLS`]).
    #[serde(deserialize_with = "de_mx_tls_opt")]
    pub tls: Option<Policy>,
    /// TLS for this domain's relayhost ([`RELAYHOST_TLS`]).
    #[serde(deserialize_with = "de_relayhost_tls_opt")]
    pub relayhost_tls: Option<Policy>,
    /// AUTH user for this domain's relayhost.
    pub relayhost_user: Option<String>,
    /// Command printing the AUTH password.
    pub relayhost_password_command: Option<String>,
    /// AUTH mechanism for this domain's relayhost (else `relayhost_auth`).
    pub relayhost_auth: Option<crate::auth::Mechanism>,
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
    /// TLS policy for MX delivery ([`MX_TLS`]).
    #[serde(deserialize_with = "de_mx_tls")]
    pub tls: Policy,
    /// Trust anchors for `verify` and relayhost TLS (default: webpki-roots).
    pub ca_file: Option<PathBuf>,
    /// DANE for MX hosts (RFC 7672; [`super::dane`]).
    pub dane: bool,
    /// Smarthost for every remote recipient: `host`, `host:port` or `[host]:port`.
    pub relayhost: Option<String>,
    /// TLS for the relayhost ([`RELAYHOST_TLS`]).
    #[serde(deserialize_with = "de_relayhost_tls")]
    pub relayhost_tls: Policy,
    /// AUTH user for the relayhost.
    pub relayhost_user: Option<String>,
    /// Command whose first output line is the relayhost AUTH password (or OAuth token).
    pub relayhost_password_command: Option<String>,
    /// AUTH mechanism; unset: PLAIN when offered, else LOGIN.
    pub relayhost_auth: Option<crate::auth::Mechanism>,
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
    /// Apply recipient domains' MTA-STS policies to MX delivery (RFC 8461;
    /// [`super::mta_sts`]).
    pub mta_sts: bool,
    /// Trust anchors for the HTTPS policy hosts (default: webpki-roots).
    pub mta_sts_ca_file: Option<PathBuf>,
    /// HTTPS port of `mta-sts.DOMAIN`.
    pub mta_sts_port: u16,
    /// Time limit of one policy fetch.
    pub mta_sts_timeout_secs: u64,
    /// Per destination domain overrides.
    pub domains: BTreeMap<String, DomainPolicy>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            resolver: None,
            port: DEFAULT_PORT,
            helo_name: None,
            tls: default_mx_tls(),
            ca_file: None,
            dane: true,
            relayhost: None,
            relayhost_tls: default_relayhost_tls(),
            relayhost_user: None,
            relayhost_password_command: None,
            relayhost_auth: None,
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
            mta_sts: true,
            mta_sts_ca_file: None,
            mta_sts_port: super::mta_sts::DEFAULT_PORT,
            mta_sts_timeout_secs: super::mta_sts::DEFAULT_TIMEOUT_SECS,
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

    /// Checks what can be checked without the network (resolver address, relayhost syntax).
    pub fn validate(&self) -> Result<(), String> {
        self.resolver_addr()?;
        self.routes().map(|_| ())
    }

    /// The `resolver` key parsed: `None` for the system's resolver.
    pub fn resolver_addr(&self) -> Result<Option<std::net::SocketAddr>, String> {
        self.resolver
            .as_deref()
            .map(|r| {
                crate::dns::parse_server(r).map_err(|e| format!("mrelayd.remote.resolver: {e}"))
            })
            .transpose()
    }
}
