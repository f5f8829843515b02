//! The `[mimapd]` section of the mailkit config file.
//!
//! ```toml
//! [mimapd]
//! # Listeners: "plain" offers STARTTLS when [tls] has a certificate (port 143),
//! # "implicit-tls" starts TLS at connect (port 993, RFC 8314).
//! listen = [
//!   { address = "0.0.0.0:143", role = "plain" },
//!   { address = "0.0.0.0:993", role = "implicit-tls" },
//! ]
//! allow_plaintext_auth = "loopback"  # "never" | "loopback" | "always": logins before TLS
//! idle_timeout_secs = 1800     # RFC 3501 §5.4: the autologout timer is at least 30 minutes
//! session_deadline_secs = 7200 # no login or completed command for this long: BYE
//! max_connections = 500        # concurrent sessions (serve mode)
//! max_per_ip = 30              # concurrent sessions from one IP address (serve mode)
//! max_errors = 20              # BAD responses in one session before BYE
//! max_auth_failures = 3        # failed logins in one session before BYE
//! max_command_size = 65536     # one command with its literals, APPEND's message excluded
//! max_message_size = 67108864  # one APPEND message
//! allow_symlinked_maildir = false
//! ```
//! Users, Maildirs, the login throttle, TLS files and the privilege drop are the shared keys of
//! [`crate::config`], as for mpopd.

use serde::Deserialize;

use super::framer::Limits;
use super::session::{DEFAULT_MAX_AUTH_FAILURES, DEFAULT_MAX_ERRORS};
pub use crate::pop3::config::PlaintextAuth;
use crate::server::daemon::{Listener, ListenerRole};

/// Default listener address (all IPv4 interfaces, the IMAP port).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:143";
/// Default idle timeout: RFC 3501 §5.4 requires at least 30 minutes.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 1800;
/// Default session deadline without progress: two hours (IDLE restarted every 29 minutes by
/// clients, RFC 2177 §3, is progress).
pub const DEFAULT_SESSION_DEADLINE_SECS: u64 = 7200;
/// Default limit of concurrent sessions in serve mode (mail clients keep several open).
pub const DEFAULT_MAX_CONNECTIONS: usize = 500;
/// Default limit of concurrent sessions from one IP address.
pub const DEFAULT_MAX_PER_IP: usize = 30;

/// How a listener starts TLS (its `role` in `[mimapd] listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Plain TCP; STARTTLS (RFC 3501 §6.2.1) is offered when a certificate is configured.
    #[default]
    Plain,
    /// TLS from the first byte (RFC 8314 §3.3, port 993).
    ImplicitTls,
}

impl ListenerRole for Role {
    const ALL: &'static [Role] = &[Role::Plain, Role::ImplicitTls];

    fn name(self) -> &'static str {
        match self {
            Role::Plain => "imap",
            Role::ImplicitTls => "imaps",
        }
    }

    fn implicit_tls(self) -> bool {
        self == Role::ImplicitTls
    }
}

/// `[mimapd]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapConfig {
    /// Listening sockets for `mimapd serve`.
    pub listen: Vec<Listener<Role>>,
    /// Logins before TLS.
    pub allow_plaintext_auth: PlaintextAuth,
    /// Seconds without client input before `* BYE` (not while idling: see the driver).
    pub idle_timeout_secs: u64,
    /// Seconds without progress (a login, a completed command) before `* BYE`.
    pub session_deadline_secs: u64,
    /// Concurrent sessions in serve mode.
    pub max_connections: usize,
    /// Concurrent sessions from one IP address in serve mode.
    pub max_per_ip: usize,
    /// Networks (CIDR) not held to `max_per_ip`; unset: loopback.
    pub max_per_ip_exceptions: Option<Vec<String>>,
    /// BAD responses before BYE.
    pub max_errors: u32,
    /// Failed logins in one session before BYE.
    pub max_auth_failures: u32,
    /// Octets of one command with its literals (APPEND's message excluded).
    pub max_command_size: usize,
    /// Octets of one APPEND message.
    pub max_message_size: u64,
    /// Follow a symlink at a Maildir or its `tmp/`, `new/`, `cur/` (refused by default).
    pub allow_symlinked_maildir: bool,
}

impl Default for ImapConfig {
    fn default() -> Self {
        let limits = Limits::default();
        ImapConfig {
            listen: vec![Listener::new(DEFAULT_LISTEN, Role::Plain)],
            allow_plaintext_auth: PlaintextAuth::Loopback,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            session_deadline_secs: DEFAULT_SESSION_DEADLINE_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_ip: DEFAULT_MAX_PER_IP,
            max_per_ip_exceptions: None,
            max_errors: DEFAULT_MAX_ERRORS,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
            max_command_size: limits.max_command,
            max_message_size: limits.max_append,
            allow_symlinked_maildir: false,
        }
    }
}

/// `[mimapd]` (no paths of its own).
impl crate::config::Section for ImapConfig {}

impl ImapConfig {
    /// The networks not held to `max_per_ip`: `max_per_ip_exceptions`, else loopback.
    pub fn per_ip_exempt(&self) -> anyhow::Result<Vec<crate::server::Cidr>> {
        crate::server::cidr::exceptions_or_loopback(
            "mimapd.max_per_ip_exceptions",
            self.max_per_ip_exceptions.as_deref(),
        )
    }

    /// The framer's limits (at least a line's worth of command).
    pub fn limits(&self) -> Limits {
        Limits {
            max_command: self.max_command_size.max(1024),
            max_append: self.max_message_size,
        }
    }

    /// The start check (as mpopd's, [`crate::pop3::config::check_logins`]): `listeners` are
    /// the roles served with their addresses (`None` for inetd).
    pub fn check(
        &self,
        config: &crate::config::Config,
        listeners: &[(Role, Option<std::net::SocketAddr>)],
    ) -> anyhow::Result<()> {
        let implicit = listeners.iter().any(|(r, _)| *r == Role::ImplicitTls);
        let addrs: Vec<_> = listeners.iter().map(|(_, a)| *a).collect();
        crate::pop3::config::check_logins(
            config,
            "mimapd",
            self.allow_plaintext_auth,
            implicit,
            &addrs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_defaults() {
        let text = "[mimapd]\nlisten = [ { address = \"127.0.0.1:1143\" }, \
                    { address = \"127.0.0.1:1993\", role = \"implicit-tls\" } ]\n\
                    max_command_size = 4096\n";
        let cfg = crate::config::Config::parse(text, None).unwrap();
        let c: ImapConfig = cfg.section("mimapd").unwrap();
        assert_eq!(c.listen[1].role, Role::ImplicitTls);
        assert_eq!(c.limits().max_command, 4096);
        let d: ImapConfig = crate::config::Config::parse("", None)
            .unwrap()
            .section("mimapd")
            .unwrap();
        assert_eq!(d, ImapConfig::default());
        let bad = crate::config::Config::parse("[mimapd]\nlisten_on = 1\n", None).unwrap();
        assert!(bad.section::<ImapConfig>("mimapd").is_err());
    }
}
