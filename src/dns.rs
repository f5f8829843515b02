//! All DNS look-ups of mailkit, with hickory-resolver behind one [`MxResolver`] (one resolver
//! setup, one error classification), shared by msend `--direct`, mrelayd's remote delivery and
//! mdig-mx.
//!
//! What lives here:
//! - MX routing, one implementation of RFC 5321 §5.1 ([`MxResolver::route`]):
//!   - MX hosts in preference order, hosts of equal preference shuffled (§5.1: "randomize").
//!   - No MX records but the domain exists: the implicit MX, the domain itself (A/AAAA).
//!   - Null MX (RFC 7505: one MX `0 .`): the domain accepts no mail, a permanent failure.
//!   - NXDOMAIN: permanent. SERVFAIL, REFUSED, timeouts and network errors: temporary.
//! - Address records of a host: [`MxResolver::host_records`] (A and AAAA with TTLs, CNAME,
//!   partial failures, for reports) and [`MxResolver::addresses`] on top of it (addresses to
//!   connect to).
//! - A records of a DNSBL query ([`MxResolver::ipv4`]).
//! - TXT records ([`MxResolver::txt`]) and picking SPF/DMARC/MTA-STS records out of them by
//!   their version tag ([`records_with_tag`]).
//!
//! - DNSSEC-aware look-ups for DANE ([`secure`]): raw queries with the AD bit, trusting a
//!   validating resolver's verdict (RFC 6840 §5.7).
//!
//! mdig-mx's report building stays in [`crate::mdig`]; it only calls these.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use rand::seq::SliceRandom;

pub mod secure;

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

/// One A or AAAA record of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressRecord {
    /// The address (IPv4 from an A record, IPv6 from an AAAA record).
    pub ip: IpAddr,
    /// TTL of the record in seconds (0 for an address literal, nothing was looked up).
    pub ttl: u32,
}

/// Everything the A and AAAA look-ups of one host name said, including partial failures: one
/// family can answer while the other times out, and a report wants to show both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostRecords {
    /// A records first, then AAAA, each in answer order.
    pub addresses: Vec<AddressRecord>,
    /// The canonical name when the host is an alias (a CNAME; RFC 2181 §10.3 forbids that at an
    /// MX target). Of a chain, the last target.
    pub cname: Option<String>,
    /// The name does not exist (NXDOMAIN).
    pub nxdomain: bool,
    /// A temporary failure (`<name>: <why>`), when one of the look-ups had one.
    pub temporary: Option<String>,
}

impl HostRecords {
    /// The addresses, or why there are none: a temporary failure first (a retry may find
    /// them), then NXDOMAIN, else "no address record". Addresses found win over a failure of
    /// the other family.
    pub fn to_result(&self, host: &str) -> Result<&[AddressRecord], DnsError> {
        if !self.addresses.is_empty() {
            Ok(&self.addresses)
        } else if let Some(t) = &self.temporary {
            Err(DnsError::Temporary(t.clone()))
        } else if self.nxdomain {
            Err(DnsError::NxDomain(host.to_string()))
        } else {
            Err(DnsError::NoAddress(host.to_string()))
        }
    }
}

/// Splits `HOST`, `HOST:PORT`, `[HOST]` or `[HOST]:PORT` (brackets for an IPv6 literal, or,
/// as in Postfix's `relayhost`, a name whose MX is not looked up). The one parser of a host
/// with an optional port, used by mrelayd's relayhost and msend's `--server`: it refuses an
/// empty host, port 0 (RFC 6335 §6: reserved, never a destination), a port that is not a
/// decimal `u16`, and anything after `]` but `:PORT`. An IPv6 literal without brackets is a
/// host without a port (its colons are not a port separator).
pub fn split_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ]"))?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(format!("{s:?}: junk after ]")),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (s, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?}: no host"));
    }
    let port = match port {
        // Digits only: `str::parse` would take `+25`.
        Some(p) => Some(
            Some(p)
                .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{s:?}: bad port"))?,
        ),
        None => None,
    };
    Ok((host.to_string(), port))
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

/// Whether `name` looks like a domain name (letters, digits, hyphens, dots, underscores, no
/// empty labels, at most 253 octets, labels at most 63: RFC 1035 §2.3.4).
pub fn valid_domain(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The one resolver setup of mailkit (server, port, timeouts, attempts), for [`MxResolver`]
/// and for libraries that bring their own hickory resolver (mail-auth's, in [`crate::dkim`]):
/// `server` (from `--resolver` or `resolver =`), else the system's `/etc/resolv.conf`. With a
/// server given, every name is asked of it: `/etc/hosts` is not read (it would answer
/// `localhost`, this host's name and whatever else it lists in place of the server the admin
/// named); only the special-use `localhost` zone stays loopback without a query (RFC 6761
/// §6.3). Every query has [`QUERY_TIMEOUT`] and [`QUERY_ATTEMPTS`].
pub fn resolver_setup(
    server: Option<SocketAddr>,
) -> Result<(ResolverConfig, ResolverOpts), String> {
    let mut opts = ResolverOpts::default();
    opts.timeout = QUERY_TIMEOUT;
    opts.attempts = QUERY_ATTEMPTS;
    let config = match server {
        Some(addr) => {
            opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            ns.trust_negative_responses = true;
            ns.connections = vec![udp, tcp];
            ResolverConfig::from_name_servers(vec![ns])
        }
        None => {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("reading the system resolver configuration: {e}"))?
                .0
        }
    };
    Ok((config, opts))
}

/// The MX resolver: hickory over the system configuration or one given server.
#[derive(Clone)]
pub struct MxResolver {
    resolver: TokioResolver,
}

impl MxResolver {
    /// A resolver using `server`, else the system's `/etc/resolv.conf` ([`resolver_setup`]).
    pub fn new(server: Option<SocketAddr>) -> Result<MxResolver, String> {
        let (config, opts) = resolver_setup(server)?;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| format!("setting up the DNS resolver: {e}"))?;
        Ok(MxResolver { resolver })
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

    /// The addresses to connect to for `host`: IPv6 first, then IPv4 (the RFC 6724 §10.3
    /// default preference, and hickory's default order). An address literal is returned as is.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let records = self.host_records(host).await;
        let found = records.to_result(host)?;
        let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) =
            found.iter().map(|a| a.ip).partition(IpAddr::is_ipv4);
        Ok(v6.into_iter().chain(v4).collect())
    }

    /// The A and AAAA records of `host` (queried at the same time), with TTLs, the CNAME they
    /// came through and any failure; never an error itself, see [`HostRecords::to_result`]. An
    /// address literal gives itself with TTL 0.
    pub async fn host_records(&self, host: &str) -> HostRecords {
        let mut out = HostRecords::default();
        if let Ok(ip) = host.parse::<IpAddr>() {
            out.addresses.push(AddressRecord { ip, ttl: 0 });
            return out;
        }
        let name = fqdn(host);
        let (a, aaaa) = tokio::join!(
            self.resolver.lookup(name.clone(), RecordType::A),
            self.resolver.lookup(name, RecordType::AAAA)
        );
        // Results in the order A, AAAA: addresses A first, and of two failures or CNAMEs the
        // AAAA one is kept.
        for result in [a, aaaa] {
            match result {
                Ok(lookup) => {
                    for rec in lookup.answers() {
                        match &rec.data {
                            RData::A(a) => out.addresses.push(AddressRecord {
                                ip: IpAddr::V4(a.0),
                                ttl: rec.ttl,
                            }),
                            RData::AAAA(a) => out.addresses.push(AddressRecord {
                                ip: IpAddr::V6(a.0),
                                ttl: rec.ttl,
                            }),
                            RData::CNAME(c) => {
                                out.cname = Some(c.0.to_utf8().trim_end_matches('.').to_string());
                            }
                            _ => {}
                        }
                    }
                }
                Err(e) => match classify(host, &e) {
                    DnsError::NxDomain(_) => out.nxdomain = true,
                    DnsError::Temporary(t) => out.temporary = Some(t),
                    _ => {}
                },
            }
        }
        out
    }

    /// The A records of `name` (a DNSBL query, RFC 5782 §2.1). NXDOMAIN and "no records"
    /// give an empty list; only temporary failures are errors.
    pub async fn ipv4(&self, name: &str) -> Result<Vec<std::net::Ipv4Addr>, DnsError> {
        match self.resolver.lookup(fqdn(name), RecordType::A).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect()),
            Err(e) => match classify(name, &e) {
                DnsError::Temporary(t) => Err(DnsError::Temporary(t)),
                _ => Ok(Vec::new()),
            },
        }
    }

    /// All TXT strings of `name`, each record's character-strings joined without separator
    /// (RFC 7208 §3.3). NXDOMAIN and "no records" give an empty list; only temporary failures
    /// are errors.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        match self.resolver.lookup(fqdn(name), RecordType::TXT).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) => match classify(name, &e) {
                DnsError::Temporary(t) => Err(DnsError::Temporary(t)),
                _ => Ok(Vec::new()),
            },
        }
    }
}

/// The records among `txt` that start with the version tag `tag` (`v=spf1`, RFC 7208 §4.5;
/// `v=DMARC1`, RFC 7489 §6.6.3; `v=STSv1`, RFC 8461 §3.1): the tag compared case-insensitively
/// and followed by the end, a space, a tab or `;`.
pub fn records_with_tag(txt: &[String], tag: &str) -> Vec<String> {
    txt.iter()
        .filter(|t| {
            let t = t.trim_start();
            t.len() >= tag.len()
                && t.is_char_boundary(tag.len())
                && t[..tag.len()].eq_ignore_ascii_case(tag)
                && matches!(t[tag.len()..].chars().next(), None | Some(' ' | ';' | '\t'))
        })
        .cloned()
        .collect()
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
        let addresses = resolver.host_records(domain).await;
        let ttl = match addresses.to_result(domain) {
            Ok(found) => found.first().map(|a| a.ttl).unwrap_or(0),
            Err(DnsError::NoAddress(_)) => {
                return Err(DnsError::NoAddress(format!(
                    "{domain} (no MX and no A/AAAA)"
                )))
            }
            Err(other) => return Err(other),
        };
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

    #[test]
    fn host_and_optional_port() {
        let ok = |s: &str| split_host_port(s).unwrap();
        assert_eq!(ok("smtp.x"), ("smtp.x".into(), None));
        assert_eq!(ok("smtp.x:587"), ("smtp.x".into(), Some(587)));
        assert_eq!(ok("[127.0.0.1]:2525"), ("127.0.0.1".into(), Some(2525)));
        assert_eq!(ok("[::1]:26"), ("::1".into(), Some(26)));
        assert_eq!(ok("[h]"), ("h".into(), None));
        assert_eq!(ok("::1"), ("::1".into(), None));
        for bad in [
            "", ":25", "[]:25", "h:", "h:0", "h:x", "h:+25", "h:65536", "[h", "[h]x",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad:?}");
        }
    }

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

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn selects_txt_by_version_tag() {
        let t = v(&[
            "v=spf1 -all",
            "V=SPF1 mx -all",
            "v=spf10 -all",
            "google-site-verification=x",
            "v=spf1",
            "",
            "v=spf",
            "é",
        ]);
        assert_eq!(
            records_with_tag(&t, "v=spf1"),
            v(&["v=spf1 -all", "V=SPF1 mx -all", "v=spf1"])
        );
        assert_eq!(
            records_with_tag(&v(&["v=DMARC1; p=none", "v=DMARC1p"]), "v=DMARC1"),
            v(&["v=DMARC1; p=none"])
        );
        assert!(records_with_tag(&v(&["ééééééé"]), "v=spf1").is_empty());
    }

    fn rec(ip: &str) -> AddressRecord {
        AddressRecord {
            ip: ip.parse().unwrap(),
            ttl: 60,
        }
    }

    #[test]
    fn host_records_outcome() {
        let host = "mx.example";
        let found = HostRecords {
            addresses: vec![rec("192.0.2.1")],
            temporary: Some("mx.example: timed out".into()),
            ..HostRecords::default()
        };
        assert_eq!(found.to_result(host).unwrap(), &[rec("192.0.2.1")]);
        let temp = HostRecords {
            nxdomain: true,
            temporary: Some("mx.example: timed out".into()),
            ..HostRecords::default()
        };
        assert!(temp.to_result(host).unwrap_err().is_temporary());
        let nx = HostRecords {
            nxdomain: true,
            ..HostRecords::default()
        };
        assert_eq!(
            nx.to_result(host).unwrap_err(),
            DnsError::NxDomain(host.into())
        );
        assert_eq!(
            HostRecords::default().to_result(host).unwrap_err(),
            DnsError::NoAddress(host.into())
        );
    }

    /// A private dnsmasq (the real resolver-facing peer) serving `zone` on a free loopback
    /// port; killed on drop.
    struct Dnsmasq {
        child: std::process::Child,
        addr: SocketAddr,
        _dir: tempfile::TempDir,
    }

    impl Drop for Dnsmasq {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Whether a DNS server answers a query for `test.` (any reply) on UDP at `addr` within 1 s.
    fn answers_udp(addr: SocketAddr) -> bool {
        let Ok(sock) = std::net::UdpSocket::bind("127.0.0.1:0") else {
            return false;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(1)));
        // id 0x4d4b, RD, one question: test. IN A
        let query = [
            0x4d, 0x4b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 4, b't', b'e', b's', b't', 0, 0, 1, 0,
            1,
        ];
        if sock.send_to(&query, addr).is_err() {
            return false;
        }
        let mut buf = [0u8; 512];
        matches!(sock.recv_from(&mut buf), Ok((n, from)) if n >= 2 && from == addr && buf[..2] == [0x4d, 0x4b])
    }

    fn dnsmasq(zone: &str) -> Dnsmasq {
        use std::time::Instant;
        for _ in 0..10 {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = tempfile::tempdir().unwrap();
            let conf = dir.path().join("dnsmasq.conf");
            std::fs::write(
                &conf,
                format!(
                    "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\n\
                     no-hosts\nno-poll\nno-negcache\nlocal=/test/\n{zone}"
                ),
            )
            .unwrap();
            let mut child = std::process::Command::new("dnsmasq")
                .arg("-k")
                .arg("-C")
                .arg(&conf)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("dnsmasq (dnsmasq-base) must be installed");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                // Ready when it answers a UDP query: a TCP connect alone could reach another
                // test's listener on the same port number while this dnsmasq is failing to bind.
                if answers_udp(addr) && matches!(child.try_wait(), Ok(None)) {
                    return Dnsmasq {
                        child,
                        addr,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start dnsmasq");
    }

    #[tokio::test]
    async fn look_ups_against_real_dns() {
        let dns = dnsmasq(
            "host-record=dual.test,192.0.2.1,2001:db8::1,600\n\
             host-record=v4.test,192.0.2.2,300\n\
             cname=alias.test,dual.test\n\
             host-record=implicit.test,192.0.2.3,900\n\
             txt-record=txt.test,\"v=spf1 \",\"-all\"\n\
             txt-record=txt.test,\"other\"\n",
        );
        let r = MxResolver::new(Some(dns.addr)).unwrap();

        let rec = r.host_records("dual.test").await;
        let ips: Vec<String> = rec.addresses.iter().map(|a| a.ip.to_string()).collect();
        assert_eq!(ips, ["192.0.2.1", "2001:db8::1"], "A first: {rec:?}");
        assert!(rec.addresses.iter().all(|a| a.ttl == 600), "{rec:?}");
        assert_eq!(
            (rec.cname, rec.nxdomain, rec.temporary),
            (None, false, None)
        );
        // Addresses to connect to: IPv6 first, as hickory's own dual-stack look-up orders them.
        let hickory: Vec<IpAddr> = r
            .resolver
            .lookup_ip("dual.test.")
            .await
            .unwrap()
            .iter()
            .collect();
        assert_eq!(r.addresses("dual.test").await.unwrap(), hickory);
        assert_eq!(
            r.addresses("dual.test").await.unwrap(),
            [
                "2001:db8::1".parse::<IpAddr>().unwrap(),
                "192.0.2.1".parse().unwrap()
            ]
        );
        assert_eq!(
            r.addresses("v4.test").await.unwrap(),
            ["192.0.2.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            r.addresses("192.0.2.9").await.unwrap(),
            ["192.0.2.9".parse::<IpAddr>().unwrap()]
        );

        let alias = r.host_records("alias.test").await;
        assert_eq!(alias.cname.as_deref(), Some("dual.test"), "{alias:?}");
        assert_eq!(alias.addresses.len(), 2, "{alias:?}");

        let missing = r.host_records("missing.test").await;
        assert!(
            missing.nxdomain && missing.addresses.is_empty(),
            "{missing:?}"
        );
        assert_eq!(
            r.addresses("missing.test").await.unwrap_err(),
            DnsError::NxDomain("missing.test".into())
        );

        // Character-strings of one record are joined (RFC 7208 §3.3).
        let mut txt = r.txt("txt.test").await.unwrap();
        txt.sort();
        assert_eq!(txt, ["other", "v=spf1 -all"]);
        assert_eq!(records_with_tag(&txt, "v=spf1"), ["v=spf1 -all"]);
        assert!(r.txt("missing.test").await.unwrap().is_empty());

        let route = r.route("implicit.test").await.unwrap();
        assert!(route.implicit);
        assert_eq!(
            route.hosts,
            [h("implicit.test", 0)].map(|h| MxHost { ttl: 900, ..h })
        );
        assert_eq!(
            r.route("missing.test").await.unwrap_err(),
            DnsError::NxDomain("missing.test".into())
        );
    }

    #[tokio::test]
    async fn refused_is_temporary_for_every_look_up() {
        // dnsmasq without upstream servers answers REFUSED outside its local zone: a server
        // failure, not an answer about the name.
        let dns = dnsmasq("");
        let r = MxResolver::new(Some(dns.addr)).unwrap();
        let rec = r.host_records("host.example").await;
        assert!(rec.temporary.is_some() && !rec.nxdomain, "{rec:?}");
        assert!(rec.addresses.is_empty(), "{rec:?}");
        assert!(r
            .addresses("host.example")
            .await
            .unwrap_err()
            .is_temporary());
        assert!(r.txt("host.example").await.unwrap_err().is_temporary());
        assert!(r.route("host.example").await.unwrap_err().is_temporary());
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
