//! Where mail goes: the next hop of a recipient domain (MX or relayhost), the relayhost
//! syntax parsed once into [`Relayhost`] ([`RemoteConfig::routes`]), and this host as loop detection sees it (RFC 5321 §5.1).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use super::config::{RemoteConfig, DEFAULT_PORT};
use crate::tls::Policy;

/// A smarthost: a host name or IP address and a port. A relayhost is always taken as the
/// host itself (Postfix's bracketed form, "no MX lookup"), whether or not it was written in
/// brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Relayhost {
    /// Host name (also the name its certificate must carry) or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Relayhost {
    /// Parses `host`, `host:port`, `[host]` or `[host]:port` with the one strict host:port
    /// parser ([`crate::dns::split_host_port`]: no empty host, no port 0, nothing after the
    /// port). Default port 25.
    pub fn parse(s: &str) -> Result<Relayhost, String> {
        let (host, port) = crate::dns::split_host_port(s.trim())?;
        Ok(Relayhost {
            host,
            port: port.unwrap_or(DEFAULT_PORT),
        })
    }
}

impl fmt::Display for Relayhost {
    /// `[host]:port`, the form that parses back to the same relayhost.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]:{}", self.host, self.port)
    }
}

/// A smarthost route: where, with which TLS policy, and as whom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelayRoute {
    /// The smarthost.
    pub relayhost: Relayhost,
    /// TLS mode and certificate check.
    pub tls: Policy,
    /// AUTH user.
    pub user: Option<String>,
    /// Command printing the password (or the OAuth 2.0 token).
    pub password_command: Option<String>,
    /// AUTH mechanism (`relayhost_auth`); `None`: PLAIN when offered, else LOGIN.
    pub mechanism: Option<crate::auth::Mechanism>,
}

/// Where a group of recipients goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// The domain's MX hosts.
    Mx {
        /// Recipient domain.
        domain: String,
        /// TLS policy.
        tls: Policy,
    },
    /// A smarthost.
    Relayhost(RelayRoute),
}

impl NextHop {
    /// Key of the connection cache and of the per-destination limit.
    pub(super) fn key(&self) -> String {
        match self {
            NextHop::Mx { domain, tls } => format!("mx:{domain}/{tls:?}"),
            // Sessions are authenticated and TLS-set per user and mode: never share them
            // between domains routed to the same relayhost with other credentials.
            NextHop::Relayhost(r) => format!(
                "relay:{}@{}/{:?}",
                r.user.as_deref().unwrap_or(""),
                r.relayhost,
                r.tls
            ),
        }
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextHop::Mx { domain, .. } => write!(f, "MX of {domain}"),
            NextHop::Relayhost(r) => write!(f, "relayhost {}", r.relayhost),
        }
    }
}

/// The next hops of a config, parsed once ([`RemoteConfig::routes`]): relayhosts typed, TLS
/// policies with the `ca_file` applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// TLS policy for MX delivery.
    pub mx_tls: Policy,
    /// The relayhost for every domain without its own.
    pub relayhost: Option<RelayRoute>,
    /// Per destination domain, as the config spells it (looked up lowercase, without a
    /// trailing dot): its relayhost, else its MX TLS policy.
    pub domains: HashMap<String, DomainRoute>,
}

/// A destination domain's own route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainRoute {
    /// Its own relayhost.
    Relayhost(RelayRoute),
    /// Its MX hosts with this TLS policy (unless the global relayhost takes it).
    MxTls(Policy),
}

impl Routes {
    /// The next hop for recipient domain `domain`: a per-domain relayhost, the global
    /// relayhost, or the domain's MX with its TLS policy.
    pub fn next_hop(&self, domain: &str) -> NextHop {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let own = self.domains.get(&domain);
        if let Some(DomainRoute::Relayhost(r)) = own {
            return NextHop::Relayhost(r.clone());
        }
        if let Some(r) = &self.relayhost {
            return NextHop::Relayhost(r.clone());
        }
        let tls = match own {
            Some(DomainRoute::MxTls(p)) => p.clone(),
            _ => self.mx_tls.clone(),
        };
        NextHop::Mx { domain, tls }
    }

    /// Every TLS policy a next hop can have, for building their configs up front.
    pub fn policies(&self) -> Vec<&Policy> {
        let mut out = vec![&self.mx_tls];
        out.extend(self.relayhost.iter().map(|r| &r.tls));
        out.extend(self.domains.values().map(|d| match d {
            DomainRoute::Relayhost(r) => &r.tls,
            DomainRoute::MxTls(p) => p,
        }));
        out
    }
}

impl RemoteConfig {
    /// Parses the relayhosts and resolves the TLS policies once; an error names its key.
    pub fn routes(&self) -> Result<Routes, String> {
        let ca = self.ca_file.as_deref();
        let with_ca = |p: &Policy| Policy::new(p.mode, p.verify.clone().with_ca_file(ca));
        let relayhost = match &self.relayhost {
            Some(h) => Some(RelayRoute {
                relayhost: Relayhost::parse(h)
                    .map_err(|e| format!("mrelayd.remote.relayhost: {e}"))?,
                tls: with_ca(&self.relayhost_tls),
                user: self.relayhost_user.clone(),
                password_command: self.relayhost_password_command.clone(),
                mechanism: self.relayhost_auth,
            }),
            None => None,
        };
        let mut domains = HashMap::new();
        for (d, p) in &self.domains {
            let route = match &p.relayhost {
                Some(h) => DomainRoute::Relayhost(RelayRoute {
                    relayhost: Relayhost::parse(h)
                        .map_err(|e| format!("mrelayd.remote.domains.{d:?}.relayhost: {e}"))?,
                    tls: with_ca(p.relayhost_tls.as_ref().unwrap_or(&self.relayhost_tls)),
                    user: p
                        .relayhost_user
                        .clone()
                        .or_else(|| self.relayhost_user.clone()),
                    password_command: p
                        .relayhost_password_command
                        .clone()
                        .or_else(|| self.relayhost_password_command.clone()),
                    mechanism: p.relayhost_auth.or(self.relayhost_auth),
                }),
                None => match &p.tls {
                    Some(t) => DomainRoute::MxTls(with_ca(t)),
                    None => continue,
                },
            };
            domains.insert(d.clone(), route);
        }
        Ok(Routes {
            mx_tls: with_ca(&self.tls),
            relayhost,
            domains,
        })
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
        let parse_relayhost = |s: &str| Relayhost::parse(s).map(|r| (r.host, r.port));
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
    fn sessions_are_not_shared_across_credentials_or_tls() {
        use crate::outbound::config::relayhost_tls;
        let hop = |user: Option<&str>, tls: &str| {
            NextHop::Relayhost(RelayRoute {
                relayhost: Relayhost::parse("smtp.x:587").unwrap(),
                tls: relayhost_tls(tls).unwrap(),
                user: user.map(str::to_string),
                password_command: None,
                mechanism: None,
            })
        };
        let a = hop(Some("a"), "starttls").key();
        assert_ne!(a, hop(Some("b"), "starttls").key());
        assert_ne!(a, hop(Some("a"), "tls").key());
        assert_ne!(a, hop(None, "starttls").key());
        assert_eq!(a, hop(Some("a"), "starttls").key());
    }
}
