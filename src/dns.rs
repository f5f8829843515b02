//! MX routing with hickory-resolver, shared by msend `--direct`, mrelayd's remote delivery and
//! mdig-mx: one implementation of RFC 5321 §5.1.
//!
//! - MX hosts in preference order, hosts of equal preference shuffled (§5.1: "randomize").
//! - No MX records but the domain exists: the implicit MX, the domain itself (A/AAAA).
//! - Null MX (RFC 7505: one MX `0 .`): the domain accepts no mail, a permanent failure.
//! - NXDOMAIN: permanent. SERVFAIL, REFUSED, timeouts and network errors: temporary.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use rand::seq::SliceRandom;

/// DNS port used when `--resolver IP` names no port.
pub const DEFAULT_DNS_PORT: u16 = 53;
/// Time limit of one DNS query attempt.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per query before giving up (a temporary failure).
pub const QUERY_ATTEMPTS: usize = 2;

/// Why a name could not be resolved or routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsError {
    /// The domain does not exist (NXDOMAIN): permanent.
    NxDomain(String),
    /// The domain publishes a null MX (RFC 7505): it accepts no mail, permanent.
    NullMx(String),
    /// The name exists but has no usable address record: permanent.
    NoAddress(String),
    /// SERVFAIL, timeout, network error: try again later.
    Temporary(String),
    /// A name that is not a valid domain name: permanent.
    BadName(String),
}

impl DnsError {
    /// Whether retrying later may help.
    pub fn is_temporary(&self) -> bool {
        matches!(self, DnsError::Temporary(_))
    }
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::NxDomain(d) => write!(f, "domain {d} does not exist (NXDOMAIN)"),
            DnsError::NullMx(d) => write!(f, "domain {d} accepts no mail (null MX, RFC 7505)"),
            DnsError::NoAddress(d) => write!(f, "{d} has no address record"),
            DnsError::Temporary(e) => write!(f, "temporary DNS failure: {e}"),
            DnsError::BadName(d) => write!(f, "invalid domain name {d:?}"),
        }
    }
}

impl std::error::Error for DnsError {}

/// One MX host of a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MxHost {
    /// Host name without the trailing dot.
    pub name: String,
    /// MX preference (lower first); 0 for the implicit MX.
    pub preference: u16,
    /// TTL of the MX record (of the address record for the implicit MX).
    pub ttl: u32,
}

/// Where mail for a domain goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The domain asked for.
    pub domain: String,
    /// Hosts to try in order (preference order, equal ones shuffled).
    pub hosts: Vec<MxHost>,
    /// True when the domain has no MX and its own address is used (RFC 5321 §5.1).
    pub implicit: bool,
}

/// Parses `IP` or `IP:PORT` (`[v6]:PORT` for IPv6 with a port) as a DNS server address.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, DEFAULT_DNS_PORT));
    }
    Err(format!("{s:?} is not IP or IP:PORT"))
}

/// Maps a resolver error: NXDOMAIN and "no records" are answers, everything else is temporary.
fn classify(name: &str, e: &NetError) -> DnsError {
    if e.is_nx_domain() {
        DnsError::NxDomain(name.to_string())
    } else if e.is_no_records_found() {
        DnsError::NoAddress(name.to_string())
    } else {
        DnsError::Temporary(format!("{name}: {e}"))
    }
}

/// Fully qualified form, so no search domain is ever appended.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// The MX resolver: hickory over the system configuration or one given server.
#[derive(Clone)]
pub struct MxResolver {
    resolver: TokioResolver,
}

impl MxResolver {
    /// A resolver using `server` (from `--resolver` or `resolver =`), else the system's
    /// `/etc/resolv.conf`.
    pub fn new(server: Option<SocketAddr>) -> Result<MxResolver, String> {
        let mut opts = ResolverOpts::default();
        opts.timeout = QUERY_TIMEOUT;
        opts.attempts = QUERY_ATTEMPTS;
        let builder = match server {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                ns.trust_negative_responses = true;
                ns.connections = vec![udp, tcp];
                let config = ResolverConfig::from_name_servers(vec![ns]);
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("reading the system resolver configuration: {e}"))?,
        };
        let resolver = builder
            .with_options(opts)
            .build()
            .map_err(|e| format!("setting up the DNS resolver: {e}"))?;
        Ok(MxResolver { resolver })
    }

    /// The underlying hickory resolver (TXT lookups for mdig-mx and the like).
    pub fn inner(&self) -> &TokioResolver {
        &self.resolver
    }

    /// The raw MX records of `domain` (preference, exchange without trailing dot, TTL), in
    /// answer order. `Ok(empty)` when the domain exists without MX records.
    pub async fn mx_records(&self, domain: &str) -> Result<Vec<MxHost>, DnsError> {
        if domain.is_empty() || domain.starts_with('.') || domain.contains("..") {
            return Err(DnsError::BadName(domain.to_string()));
        }
        match self.resolver.mx_lookup(fqdn(domain)).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::MX(mx) => Some(MxHost {
                        name: mx.exchange.to_utf8().trim_end_matches('.').to_string(),
                        preference: mx.preference,
                        ttl: rec.ttl,
                    }),
                    _ => None,
                })
                .collect()),
            Err(e) => match classify(domain, &e) {
                DnsError::NoAddress(_) => Ok(Vec::new()),
                other => Err(other),
            },
        }
    }

    /// The route for `domain`: MX hosts (ordered, equal preferences shuffled), or the implicit
    /// MX; null MX and NXDOMAIN are errors.
    pub async fn route(&self, domain: &str) -> Result<Route, DnsError> {
        let records = self.mx_records(domain).await?;
        route_from_records(domain, records, self).await
    }

    /// IPv4 and IPv6 addresses of `host` (A and AAAA; hickory's default strategy).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        match self.resolver.lookup_ip(fqdn(host)).await {
            Ok(l) => {
                let v: Vec<IpAddr> = l.iter().collect();
                if v.is_empty() {
                    Err(DnsError::NoAddress(host.to_string()))
                } else {
                    Ok(v)
                }
            }
            Err(e) => Err(classify(host, &e)),
        }
    }

    /// Whether `name` has any A or AAAA record (for the implicit MX).
    async fn has_address(&self, name: &str) -> Result<u32, DnsError> {
        for rt in [RecordType::A, RecordType::AAAA] {
            match self.resolver.lookup(fqdn(name), rt).await {
                Ok(l) if !l.answers().is_empty() => {
                    return Ok(l.answers().first().map(|r| r.ttl).unwrap_or(0));
                }
                Ok(_) => {}
                Err(e) => match classify(name, &e) {
                    DnsError::NoAddress(_) => {}
                    other => return Err(other),
                },
            }
        }
        Err(DnsError::NoAddress(name.to_string()))
    }
}

/// Orders MX records: by preference, shuffling hosts of equal preference (RFC 5321 §5.1).
pub fn order_hosts(mut hosts: Vec<MxHost>) -> Vec<MxHost> {
    hosts.shuffle(&mut rand::rng());
    // A stable sort keeps the shuffled order within one preference.
    hosts.sort_by_key(|h| h.preference);
    hosts
}

/// Whether the records are a null MX (RFC 7505 §3: a single MX with an empty exchange `.`).
pub fn is_null_mx(records: &[MxHost]) -> bool {
    !records.is_empty() && records.iter().all(|h| h.name.is_empty())
}

async fn route_from_records(
    domain: &str,
    records: Vec<MxHost>,
    resolver: &MxResolver,
) -> Result<Route, DnsError> {
    if is_null_mx(&records) {
        return Err(DnsError::NullMx(domain.to_string()));
    }
    // A null MX next to real ones is a misconfiguration; use the real ones.
    let records: Vec<MxHost> = records.into_iter().filter(|h| !h.name.is_empty()).collect();
    if records.is_empty() {
        let ttl = resolver.has_address(domain).await.map_err(|e| match e {
            DnsError::NoAddress(_) => {
                DnsError::NoAddress(format!("{domain} (no MX and no A/AAAA)"))
            }
            other => other,
        })?;
        return Ok(Route {
            domain: domain.to_string(),
            hosts: vec![MxHost {
                name: domain.trim_end_matches('.').to_string(),
                preference: 0,
                ttl,
            }],
            implicit: true,
        });
    }
    Ok(Route {
        domain: domain.to_string(),
        hosts: order_hosts(records),
        implicit: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, preference: u16) -> MxHost {
        MxHost {
            name: name.into(),
            preference,
            ttl: 60,
        }
    }

    #[test]
    fn ordering_by_preference_with_shuffle() {
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..200 {
            let o = order_hosts(vec![h("c", 20), h("a", 10), h("b", 10), h("d", 30)]);
            assert!(o.windows(2).all(|w| w[0].preference <= w[1].preference));
            assert_eq!(o[3].name, "d");
            seen_first.insert(o[0].name.clone());
        }
        assert_eq!(seen_first.len(), 2, "equal preferences must be shuffled");
    }

    #[test]
    fn null_mx_detection() {
        assert!(is_null_mx(&[h("", 0)]));
        assert!(!is_null_mx(&[h("", 0), h("mx", 10)]));
        assert!(!is_null_mx(&[]));
    }

    #[test]
    fn server_addresses() {
        assert_eq!(parse_server("127.0.0.1").unwrap().port(), DEFAULT_DNS_PORT);
        assert_eq!(parse_server("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_server("[::1]:53").unwrap().port(), 53);
        assert!(parse_server("::1").is_ok());
        assert!(parse_server("dns.example").is_err());
    }
}
