//! mdig-mx: a domain's mail route as mrelayd sees it, the SPF/DMARC/MTA-STS records next to it,
//! the MX hosts' TLSA records ([`tlsa`]), and optionally an SMTP/TLS probe of every MX address.
//!
//! What lives where: every DNS look-up is in [`crate::dns`] (the route from
//! [`MxResolver::route`], so what mdig-mx prints is what mrelayd and `msend --direct` do; address
//! records with TTLs and CNAMEs from [`MxResolver::host_records`]; TXT records), every certificate
//! check and parse in [`crate::tls`], the SMTP session in [`crate::smtp::client`]. This module only
//! builds the report from them ([`lookup_domain`], [`probe_domain`]) and formats it
//! ([`render_text`]; `--json` serializes [`Report`]); [`probe`] runs the probe sessions.

pub mod auth;
pub mod authrec;
pub mod mta_sts;
pub mod probe;
pub mod tlsa;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::dns::{records_with_tag, AddressRecord, DnsError, MxResolver};
use crate::exit;

/// Exit status when problems were found but mail can be routed.
pub const EXIT_PROBLEMS: u8 = 1;

/// One address of an MX host in the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Address {
    /// The address, textual.
    pub ip: String,
    /// `ipv4` (A) or `ipv6` (AAAA).
    pub family: &'static str,
    /// TTL of the record in seconds.
    pub ttl: u32,
    /// Whether it is a loopback address (127.0.0.0/8, ::1, or IPv4-mapped 127/8): mail for
    /// the domain would go to the sending host itself.
    pub loopback: bool,
}

impl From<AddressRecord> for Address {
    fn from(a: AddressRecord) -> Address {
        Address {
            ip: a.ip.to_string(),
            family: if a.ip.is_ipv4() { "ipv4" } else { "ipv6" },
            ttl: a.ttl,
            loopback: a.ip.to_canonical().is_loopback(),
        }
    }
}

/// One MX host of the report, with its addresses.
#[derive(Clone, Debug, Serialize)]
pub struct MxEntry {
    /// MX preference; 0 for the implicit MX.
    pub preference: u16,
    /// Host name (the MX exchange, or the domain itself for the implicit MX).
    pub host: String,
    /// TTL of the MX record (null for the implicit MX).
    pub ttl: Option<u32>,
    /// The canonical name when the exchange is an alias (forbidden, RFC 2181 §10.3).
    pub cname: Option<String>,
    /// Whether the exchange is an IP address literal instead of a host name (RFC 5321 §5.1
    /// requires a domain name).
    pub ip_literal: bool,
    /// A then AAAA records.
    pub addresses: Vec<Address>,
}

/// Everything found about one domain.
#[derive(Clone, Debug, Serialize)]
pub struct DomainReport {
    /// The domain asked for.
    pub domain: String,
    /// `mx`, `implicit_mx`, `null_mx`, `nxdomain`, `no_address`, `temporary_failure` or
    /// `bad_name`.
    pub route: &'static str,
    /// The route error in words, when there is no route.
    pub error: Option<String>,
    /// MX hosts by preference (ties by name; mrelayd shuffles ties, RFC 5321 §5.1).
    pub mx: Vec<MxEntry>,
    /// `v=spf1` TXT records of the domain.
    pub spf: Vec<String>,
    /// `v=DMARC1` TXT records of `_dmarc.<domain>`.
    pub dmarc: Vec<String>,
    /// `v=STSv1` TXT records of `_mta-sts.<domain>`.
    pub mta_sts: Vec<String>,
    /// SPF check, DMARC policy and DKIM keys ([`auth::check`]; flattened in the JSON).
    #[serde(flatten)]
    pub auth: auth::AuthReport,
    /// The MTA-STS policy behind them and the MX match ([`mta_sts`]); null without a record.
    pub mta_sts_policy: Option<mta_sts::StsReport>,
    /// TLSA records per MX host, with their DNSSEC status ([`tlsa`]).
    pub tlsa: Vec<tlsa::HostTlsa>,
    /// Probe results per address (empty without `--probe`).
    pub probes: Vec<probe::Probe>,
    /// Everything wrong, plain sentences (DNS and probe problems).
    pub problems: Vec<String>,
    /// What may be intended but is worth a look (an MX on a loopback address); they do not
    /// change the exit status.
    pub warnings: Vec<String>,
    /// This domain's exit status (see EXIT STATUS).
    pub exit: u8,
}

/// The JSON document `--json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// One entry per domain, in command-line order.
    pub domains: Vec<DomainReport>,
    /// The program's exit status.
    pub exit: u8,
}

/// The program's exit status from the domains': a temporary DNS failure anywhere wins (worth a
/// retry), then "no route", then usage, then "problems", else 0.
pub fn overall_exit(codes: &[u8]) -> u8 {
    for c in [exit::TEMPFAIL, exit::NOHOST, exit::USAGE, EXIT_PROBLEMS] {
        if codes.contains(&c) {
            return c;
        }
    }
    codes.iter().copied().max().unwrap_or(exit::OK)
}

pub use crate::dns::valid_domain;

/// Looks up one domain: route, per-host addresses and TXT records.
pub async fn lookup_domain(resolver: &MxResolver, domain: &str) -> DomainReport {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut r = DomainReport {
        domain: domain.clone(),
        route: "mx",
        error: None,
        mx: Vec::new(),
        spf: Vec::new(),
        dmarc: Vec::new(),
        mta_sts: Vec::new(),
        auth: auth::AuthReport::default(),
        mta_sts_policy: None,
        tlsa: Vec::new(),
        probes: Vec::new(),
        problems: Vec::new(),
        warnings: Vec::new(),
        exit: exit::OK,
    };
    if !valid_domain(&domain) {
        r.route = "bad_name";
        r.error = Some(format!("invalid domain name {domain:?}"));
        r.exit = exit::USAGE;
        return r;
    }
    let mut temporary = false;
    match resolver.route(&domain).await {
        Ok(route) => {
            r.route = if route.implicit { "implicit_mx" } else { "mx" };
            let mut hosts = route.hosts;
            hosts.sort_by(|a, b| (a.preference, &a.name).cmp(&(b.preference, &b.name)));
            for h in hosts {
                let literal = h.name.parse::<IpAddr>().ok();
                let mut e = MxEntry {
                    preference: h.preference,
                    host: h.name.clone(),
                    ttl: (!route.implicit).then_some(h.ttl),
                    cname: None,
                    ip_literal: literal.is_some(),
                    addresses: Vec::new(),
                };
                if let Some(ip) = literal {
                    // dns.rs uses the literal as the address; say it is not allowed.
                    e.addresses
                        .push(Address::from(AddressRecord { ip, ttl: h.ttl }));
                    r.problems.push(format!(
                        "MX {} is an IP address, not a host name (RFC 5321 §5.1, RFC 1035 §3.3.9): \
                         many MTAs will not deliver there",
                        h.name
                    ));
                } else {
                    let a = resolver.host_records(&h.name).await;
                    e.addresses = a.addresses.into_iter().map(Address::from).collect();
                    e.cname = a.cname;
                    if let Some(c) = &e.cname {
                        if !route.implicit {
                            r.problems.push(format!(
                                "MX {} is an alias (CNAME to {c}); an MX must name a host \
                                 directly (RFC 2181 §10.3, RFC 5321 §5.1)",
                                h.name
                            ));
                        }
                    }
                    if let Some(t) = a.temporary {
                        temporary = true;
                        r.problems
                            .push(format!("address look-up of {} failed: {t}", h.name));
                    } else if e.addresses.is_empty() {
                        r.problems.push(if a.nxdomain {
                            format!("MX {} does not exist (NXDOMAIN)", h.name)
                        } else {
                            format!("MX {} has no A or AAAA record", h.name)
                        });
                    }
                }
                let loopback: Vec<&str> = e
                    .addresses
                    .iter()
                    .filter(|a| a.loopback)
                    .map(|a| a.ip.as_str())
                    .collect();
                if !loopback.is_empty() {
                    r.warnings.push(format!(
                        "MX {} resolves to loopback ({}): a sending MTA would deliver to \
                         itself, not to {domain}",
                        h.name,
                        loopback.join(", ")
                    ));
                }
                r.mx.push(e);
            }
            if r.mx.iter().all(|m| m.addresses.is_empty()) && !temporary {
                r.route = "no_address";
                r.error = Some(format!("no MX host of {domain} has an address"));
            }
        }
        Err(e) => {
            r.route = match &e {
                DnsError::NxDomain(_) => "nxdomain",
                DnsError::NullMx(_) => "null_mx",
                DnsError::NoAddress(_) => "no_address",
                DnsError::Temporary(_) => "temporary_failure",
                DnsError::BadName(_) => "bad_name",
            };
            temporary |= e.is_temporary();
            r.error = Some(e.to_string());
        }
    }
    if !matches!(r.route, "nxdomain" | "bad_name") && !temporary {
        for (name, tag, slot) in [
            (domain.clone(), "v=spf1", &mut r.spf),
            (format!("_dmarc.{domain}"), "v=DMARC1", &mut r.dmarc),
            (format!("_mta-sts.{domain}"), "v=STSv1", &mut r.mta_sts),
        ] {
            match resolver.txt(&name).await {
                Ok(t) => *slot = records_with_tag(&t, tag),
                Err(e) => {
                    temporary = true;
                    r.problems
                        .push(format!("TXT look-up of {name} failed: {e}"));
                }
            }
        }
        if r.spf.len() > 1 {
            r.problems.push(format!(
                "{domain} has {} SPF records; more than one is a permanent error (RFC 7208 §4.5)",
                r.spf.len()
            ));
        }
        if r.dmarc.len() > 1 {
            r.problems.push(format!(
                "_dmarc.{domain} has {} DMARC records; receivers ignore them all (RFC 7489 §6.6.3)",
                r.dmarc.len()
            ));
        }
    }
    r.exit = if temporary {
        exit::TEMPFAIL
    } else if r.error.is_some() {
        if r.route == "bad_name" {
            exit::USAGE
        } else {
            exit::NOHOST
        }
    } else if r.problems.is_empty() {
        exit::OK
    } else {
        EXIT_PROBLEMS
    };
    r
}

/// Probes every address of the report's MX hosts in parallel and records problems.
pub async fn probe_domain(r: &mut DomainReport, settings: Arc<probe::ProbeSettings>) {
    let mut set = tokio::task::JoinSet::new();
    let mut index = 0usize;
    for m in &r.mx {
        for a in &m.addresses {
            if let Ok(ip) = a.ip.parse::<IpAddr>() {
                let (host, s) = (m.host.clone(), settings.clone());
                let i = index;
                set.spawn(async move { (i, probe::probe(host, ip, s).await) });
                index += 1;
            }
        }
    }
    let mut results = Vec::with_capacity(index);
    while let Some(joined) = set.join_next().await {
        if let Ok(res) = joined {
            results.push(res);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    for (_, p) in results {
        r.problems.extend(p.problems.iter().cloned());
        r.probes.push(p);
    }
    if r.exit == exit::OK && !r.problems.is_empty() {
        r.exit = EXIT_PROBLEMS;
    }
}

/// The human-readable report of one domain.
pub fn render_text(r: &DomainReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{}:", r.domain);
    let route = match r.route {
        "mx" => "MX records",
        "implicit_mx" => "no MX records: implicit MX, the domain's own address (RFC 5321 §5.1)",
        "null_mx" => "null MX: the domain accepts no mail (RFC 7505)",
        "nxdomain" => "NXDOMAIN: the domain does not exist, no mail route",
        "no_address" => "no mail route: no address to deliver to",
        "temporary_failure" => "temporary DNS failure: try again later",
        _ => "invalid domain name",
    };
    let _ = writeln!(o, "  route: {route}");
    if let Some(e) = &r.error {
        let _ = writeln!(o, "  error: {e}");
    }
    for m in &r.mx {
        let ttl = m.ttl.map(|t| format!(" ttl {t}")).unwrap_or_default();
        let _ = write!(o, "  MX {} {}{ttl}", m.preference, m.host);
        if let Some(c) = &m.cname {
            let _ = write!(o, "  (CNAME to {c}: not allowed)");
        }
        if m.ip_literal {
            let _ = write!(o, "  (IP literal: not allowed)");
        }
        o.push('\n');
        if m.addresses.is_empty() {
            let _ = writeln!(o, "    (no address)");
        }
        for a in &m.addresses {
            let kind = if a.family == "ipv4" { "A" } else { "AAAA" };
            let flag = if a.loopback { "  (loopback)" } else { "" };
            let _ = writeln!(o, "    {kind} {} ttl {}{flag}", a.ip, a.ttl);
        }
    }
    let txt_looked_up = !matches!(r.route, "nxdomain" | "temporary_failure" | "bad_name");
    for (label, recs) in [
        ("SPF", &r.spf),
        ("DMARC", &r.dmarc),
        ("MTA-STS", &r.mta_sts),
    ] {
        if recs.is_empty() {
            if txt_looked_up {
                let _ = writeln!(o, "  {label}: none");
            }
        } else {
            for t in recs {
                let _ = writeln!(o, "  {label}: {t}");
            }
        }
    }
    auth::render_text(&mut o, &r.auth);
    if let Some(p) = &r.mta_sts_policy {
        mta_sts::render(p, &mut o);
    }
    tlsa::render_text(&mut o, &r.tlsa);
    for p in &r.probes {
        let _ = writeln!(o, "  probe {} [{}]:{}", p.host, p.ip, p.port);
        match p.connect_ms {
            Some(ms) => {
                let _ = writeln!(o, "    connect: {ms} ms");
            }
            None => {
                let _ = writeln!(o, "    connect: failed (see problems)");
            }
        }
        if let Some(b) = &p.banner {
            let _ = writeln!(o, "    banner: {}", b.replace('\n', " / "));
        }
        if let Some(n) = &p.ehlo_name {
            let _ = writeln!(o, "    EHLO name: {n}");
        }
        if !p.extensions.is_empty() {
            let _ = writeln!(o, "    extensions: {}", p.extensions.join(", "));
        }
        if p.ehlo_name.is_some() {
            let _ = writeln!(
                o,
                "    STARTTLS: {}",
                if p.starttls { "offered" } else { "not offered" }
            );
        }
        if let Some(t) = &p.tls {
            let _ = writeln!(o, "    TLS: {} {}", t.version, t.cipher);
            if let Some(c) = &t.certificate {
                let _ = writeln!(o, "    certificate subject: {}", c.subject);
                let _ = writeln!(o, "    certificate SANs: {}", c.sans.join(", "));
                let _ = writeln!(o, "    certificate issuer: {}", c.issuer);
                let _ = writeln!(o, "    certificate expires: {}", c.not_after);
                let _ = writeln!(
                    o,
                    "    certificate key SHA-256: {} (msend --tls-fingerprint)",
                    c.spki_sha256
                );
            }
            let _ = writeln!(
                o,
                "    verified for {}: {}",
                p.host,
                if t.verified { "yes" } else { "no" }
            );
        }
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(o, "  warnings:");
        for w in &r.warnings {
            let _ = writeln!(o, "  - {w}");
        }
    }
    if r.problems.is_empty() {
        if r.error.is_none() {
            let _ = writeln!(o, "  no problems found");
        }
    } else {
        let _ = writeln!(o, "  problems:");
        for p in &r.problems {
            let _ = writeln!(o, "  - {p}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_precedence() {
        assert_eq!(overall_exit(&[]), 0);
        assert_eq!(overall_exit(&[0, 1]), 1);
        assert_eq!(overall_exit(&[1, 68, 0]), 68);
        assert_eq!(overall_exit(&[68, 75, 1]), 75);
        assert_eq!(overall_exit(&[64, 1]), 64);
    }

    #[test]
    fn domain_names() {
        assert!(valid_domain("example.test"));
        assert!(valid_domain("example.test."));
        assert!(valid_domain("_dmarc.x"));
        assert!(!valid_domain(""));
        assert!(!valid_domain("."));
        assert!(!valid_domain("a..b"));
        assert!(!valid_domain("a b"));
        assert!(!valid_domain("-x;rm"));
        assert!(!valid_domain(&"a".repeat(64)));
        assert!(!valid_domain(&["a"; 130].join(".")));
        assert!(!valid_domain("é.test"));
    }
}
