//! [`Cidr`]: an IP network in CIDR notation (`192.0.2.0/24`, `::1/128`), as config keys name
//! them (`trusted_networks`, `max_per_ip_exceptions`).

use std::net::IpAddr;

/// A network in CIDR notation (RFC 4632 §3.1; IPv6 prefixes as RFC 4291 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `1.2.3.0/24`, `::1/128` or a bare address.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(i) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(i) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses the networks of config key `key` (a list of CIDRs); one that is not a network is a
/// config error (exit 78) naming the key.
pub fn parse_list(key: &str, networks: &[String]) -> anyhow::Result<Vec<Cidr>> {
    networks
        .iter()
        .map(|n| {
            Cidr::parse(n).ok_or_else(|| {
                crate::exit::fail(
                    crate::exit::CONFIG,
                    format!("{key}: {n:?} is not a network (CIDR)"),
                )
            })
        })
        .collect()
}

/// The networks a daemon exempts from its per-address connection limit: the configured
/// `key` list when set, else loopback (what mpopd and mimapd exempt by default).
pub fn exceptions_or_loopback(
    key: &str,
    configured: Option<&[String]>,
) -> anyhow::Result<Vec<Cidr>> {
    match configured {
        Some(list) => parse_list(key, list),
        None => Ok(loopback()),
    }
}

/// The loopback networks (RFC 1122 §3.2.1.3 `127.0.0.0/8`, RFC 4291 §2.5.3 `::1/128`).
pub fn loopback() -> Vec<Cidr> {
    vec![
        Cidr {
            addr: IpAddr::from([127, 0, 0, 0]),
            prefix: 8,
        },
        Cidr {
            addr: IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            prefix: 128,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr() {
        let n = Cidr::parse("127.0.0.0/8").unwrap();
        assert!(n.contains("127.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!n.contains("128.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
    }

    #[test]
    fn loopback_is_both_families() {
        let l = loopback();
        assert!(l.iter().any(|n| n.contains("127.0.0.1".parse().unwrap())));
        assert!(l.iter().any(|n| n.contains("::1".parse().unwrap())));
        assert!(!l.iter().any(|n| n.contains("192.0.2.1".parse().unwrap())));
    }
}
