//! The `[mpopd]` section of the mailkit config file.
//!
//! ```toml
//! [mpopd]
//! # Listeners: "plain" offers STLS when [tls] has a certificate (port 110 style),
//! # "implicit-tls" starts TLS at connect (port 995 style, RFC 8314).
//! listen = [
//!   { address = "0.0.0.0:110", role = "plain" },
//!   { address = "0.0.0.0:995", role = "implicit-tls" },
//! ]
//! allow_plaintext_auth = "loopback"  # "never" | "loopback" | "always": logins before TLS
//! apop = true                  # offer APOP (only users with a {PLAIN} password can use it)
//! idle_timeout_secs = 600      # RFC 1939 §3: the autologout timer is at least 10 minutes
//! max_connections = 200        # concurrent sessions (serve mode)
//! max_per_ip = 20              # concurrent sessions from one IP address (serve mode)
//! max_per_ip_exceptions = ["127.0.0.0/8", "::1/128"]  # not held to max_per_ip (the default)
//! max_errors = 10              # bad commands in one session before hanging up
//! max_auth_failures = 3        # failed logins in one session before hanging up
//! session_deadline_secs = 1800 # no login or message retrieved for this long: -ERR and close
//! allow_symlinked_maildir = false  # follow a symlink at a Maildir or its tmp/, new/, cur/
//! ```
//! A Maildir that is a symlink, or whose `tmp/`, `new/`, `cur/` are, is refused by default (the
//! login gets `-ERR [SYS/TEMP]` and the log names the path): its owner could point it anywhere.
//! `allow_symlinked_maildir = true` follows those directories; the lock, the size cache and the
//! messages are never followed (see [`crate::maildir`]). Symlinks above the Maildir
//! (`/home -> /data/home`) are always followed.
//! Users, their Maildirs (`[users] passwd_file`, `mail_location`), the checkpassword program and
//! the failed-login throttle (`[auth]`), TLS files (`[tls]`) and the privilege drop (`[run_as]`)
//! are the shared keys of [`crate::config`].

use serde::Deserialize;

use super::session::{DEFAULT_MAX_AUTH_FAILURES, DEFAULT_MAX_ERRORS};
use crate::server::daemon::{Listener, ListenerRole};

/// Default listener address (all IPv4 interfaces, the POP3 port).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:110";
/// Default idle timeout: RFC 1939 §3 requires at least 10 minutes.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 600;
/// Default session deadline without progress: 30 minutes (three RFC 1939 autologout timers).
pub const DEFAULT_SESSION_DEADLINE_SECS: u64 = 1800;
/// Default limit of concurrent sessions in serve mode.
pub const DEFAULT_MAX_CONNECTIONS: usize = 200;
/// Default limit of concurrent sessions from one IP address (fetchmail and phones use one or
/// two; a NAT of a small office a few more).
pub const DEFAULT_MAX_PER_IP: usize = 20;

/// How a listener starts TLS (its `role` in `[mpopd] listen`, [`Listener`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Plain TCP; STLS (RFC 2595) is offered when a certificate is configured.
    #[default]
    Plain,
    /// TLS from the first byte (RFC 8314 §3.3, port 995).
    ImplicitTls,
}

impl ListenerRole for Role {
    const ALL: &'static [Role] = &[Role::Plain, Role::ImplicitTls];

    fn name(self) -> &'static str {
        match self {
            Role::Plain => "pop3",
            Role::ImplicitTls => "pop3s",
        }
    }

    fn implicit_tls(self) -> bool {
        self == Role::ImplicitTls
    }
}

/// When USER/PASS, APOP and AUTH PLAIN are accepted on an unencrypted connection
/// (RFC 2595 §2.2: servers should refuse plaintext logins before TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PlaintextAuth {
    /// Only after STLS or on implicit TLS.
    Never,
    /// Also from loopback clients (local fetchmail, tests, an stunnel in front).
    #[default]
    Loopback,
    /// From anywhere (only behind a trusted network).
    Always,
}

impl PlaintextAuth {
    /// Whether a client at `peer` may log in without TLS. An unknown peer (inetd on a pipe, as
    /// behind ssh or a local tunnel) counts as local.
    pub fn allows(self, peer: Option<std::net::IpAddr>) -> bool {
        match self {
            PlaintextAuth::Never => false,
            PlaintextAuth::Always => true,
            PlaintextAuth::Loopback => peer.is_none_or(|ip| ip.is_loopback()),
        }
    }
}

/// `[mpopd]` (no paths of its own: the Maildirs come from `[users]`).
impl crate::config::Section for Pop3Config {}

impl Pop3Config {
    /// The networks not held to `max_per_ip`: `max_per_ip_exceptions`, else loopback.
    pub fn per_ip_exempt(&self) -> anyhow::Result<Vec<crate::server::Cidr>> {
        crate::server::cidr::exceptions_or_loopback(
            "mpopd.max_per_ip_exceptions",
            self.max_per_ip_exceptions.as_deref(),
        )
    }
}

/// `[mpopd]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Config {
    /// Listening sockets for `mpopd serve`.
    pub listen: Vec<Listener<Role>>,
    /// Plaintext logins before TLS.
    pub allow_plaintext_auth: PlaintextAuth,
    /// Offer APOP (RFC 1939 §7) for users whose password is stored in plaintext.
    pub apop: bool,
    /// Seconds without client activity before the session is closed.
    pub idle_timeout_secs: u64,
    /// Concurrent sessions in serve mode.
    pub max_connections: usize,
    /// Concurrent sessions from one IP address in serve mode.
    pub max_per_ip: usize,
    /// Networks (CIDR) not held to `max_per_ip`; unset: loopback (`127.0.0.0/8`, `::1/128`).
    pub max_per_ip_exceptions: Option<Vec<String>>,
    /// Bad commands before hanging up.
    pub max_errors: u32,
    /// Failed logins in one session before hanging up.
    pub max_auth_failures: u32,
    /// A session with no progress (a login, a message sent by RETR or TOP) for this long gets
    /// `-ERR` and is closed, however often it sends NOOP or STAT: RFC 1939 §3's inactivity
    /// timer alone lets a client hold its slot forever.
    pub session_deadline_secs: u64,
    /// Follow a symlink at a Maildir or its `tmp/`, `new/`, `cur/` (refused by default).
    pub allow_symlinked_maildir: bool,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            listen: vec![Listener {
                address: DEFAULT_LISTEN.to_string(),
                role: Role::Plain,
            }],
            allow_plaintext_auth: PlaintextAuth::Loopback,
            apop: true,
            idle_timeout_secs: DEFAULT_IDLE_TIMEOUT_SECS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_ip: DEFAULT_MAX_PER_IP,
            max_per_ip_exceptions: None,
            max_errors: DEFAULT_MAX_ERRORS,
            max_auth_failures: DEFAULT_MAX_AUTH_FAILURES,
            session_deadline_secs: DEFAULT_SESSION_DEADLINE_SECS,
            allow_symlinked_maildir: false,
        }
    }
}

impl Pop3Config {
    /// Combinations that parse but cannot work, checked when `serve` or `inetd` starts (see
    /// [`crate::relay::checks`] for mrelayd's): `listeners` are the roles served with their
    /// addresses (`None` for inetd). Without `[tls] cert`, an `implicit-tls` listener and
    /// `allow_plaintext_auth = "never"` (no login possible at all) are errors (exit 78) naming
    /// the key; `"loopback"` on a listener that is not loopback-only is one warning (only local
    /// clients can log in).
    pub fn check(
        &self,
        config: &crate::config::Config,
        listeners: &[(Role, Option<std::net::SocketAddr>)],
    ) -> anyhow::Result<()> {
        let implicit = listeners.iter().any(|(r, _)| *r == Role::ImplicitTls);
        let addrs: Vec<_> = listeners.iter().map(|(_, a)| *a).collect();
        check_logins(config, "mpopd", self.allow_plaintext_auth, implicit, &addrs)
    }
}

/// The start check of a login server's section (`mpopd`, `mimapd`): without `[tls] cert`, an
/// implicit-TLS listener and `allow_plaintext_auth = "never"` (no login possible at all) are
/// errors (exit 78) naming the key; `"loopback"` with a listener in `addrs` that is not
/// loopback-only is one warning (only local clients can log in).
pub fn check_logins(
    config: &crate::config::Config,
    section: &str,
    allow: PlaintextAuth,
    implicit_tls: bool,
    addrs: &[Option<std::net::SocketAddr>],
) -> anyhow::Result<()> {
    if config.tls.cert.is_some() {
        return Ok(());
    }
    if implicit_tls {
        return Err(config.key_error(
            &[section, "listen"],
            "an implicit-tls listener needs [tls] cert and key",
        ));
    }
    match allow {
        PlaintextAuth::Never => Err(config.key_error(
            &[section, "allow_plaintext_auth"],
            "\"never\" without [tls] cert and key: no TLS, so no one could ever log in \
             (set [tls] cert and key, or \"loopback\")",
        )),
        PlaintextAuth::Loopback => {
            let remote = addrs
                .iter()
                .filter_map(|a| *a)
                .find(|a| !a.ip().is_loopback());
            if let Some(addr) = remote {
                config.key_warning(
                    &[section, "allow_plaintext_auth"],
                    &format!(
                        "\"loopback\" without [tls] cert and key: clients reaching {addr} \
                         from elsewhere cannot log in"
                    ),
                );
            }
            Ok(())
        }
        PlaintextAuth::Always => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_section_and_defaults() {
        let text = r#"
[mpopd]
listen = [ { address = "127.0.0.1:1110" }, { address = "127.0.0.1:1995", role = "implicit-tls" } ]
allow_plaintext_auth = "never"
apop = false
idle_timeout_secs = 60
max_connections = 5
max_per_ip = 3
max_errors = 4
max_auth_failures = 2
"#;
        let cfg = crate::config::Config::parse(text, None).unwrap();
        let p: Pop3Config = cfg.section("mpopd").unwrap();
        assert_eq!(p.listen.len(), 2);
        assert_eq!(p.listen[0].role, Role::Plain);
        assert_eq!(p.listen[1].role, Role::ImplicitTls);
        assert_eq!(p.allow_plaintext_auth, PlaintextAuth::Never);
        assert!(!p.apop);
        assert_eq!(
            (p.max_errors, p.max_auth_failures, p.max_connections),
            (4, 2, 5)
        );
        assert_eq!(p.max_per_ip, 3);
        let d: Pop3Config = crate::config::Config::parse("", None)
            .unwrap()
            .section("mpopd")
            .unwrap();
        assert_eq!(d, Pop3Config::default());
        assert_eq!(d.idle_timeout_secs, 600);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let cfg = crate::config::Config::parse("[mpopd]\nlisten_on = 1\n", None).unwrap();
        assert!(cfg.section::<Pop3Config>("mpopd").is_err());
        let cfg = crate::config::Config::parse("[mpopd]\nallow_plaintext_auth = \"yes\"\n", None)
            .unwrap();
        assert!(cfg.section::<Pop3Config>("mpopd").is_err());
    }

    #[test]
    fn plaintext_policy() {
        let lo = Some("127.0.0.1".parse().unwrap());
        let far = Some("192.0.2.1".parse().unwrap());
        assert!(PlaintextAuth::Loopback.allows(lo));
        assert!(PlaintextAuth::Loopback.allows(None));
        assert!(!PlaintextAuth::Loopback.allows(far));
        assert!(PlaintextAuth::Always.allows(far));
        assert!(!PlaintextAuth::Never.allows(lo));
    }
}
