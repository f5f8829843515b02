//! Where mail goes: the next hop of a recipient domain (MX or relayhost), the relayhost
//! syntax, and this host as loop detection sees it (RFC 5321 §5.1).

use std::fmt;
use std::net::SocketAddr;

use super::config::{RelayhostTls, TlsPolicy, DEFAULT_PORT};

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
    pub(super) fn key(&self) -> String {
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
}
