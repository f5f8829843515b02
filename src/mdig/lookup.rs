//! DNS look-ups mdig-mx needs beyond [`crate::dns`]: per-family address records with TTLs,
//! CNAME detection at MX targets, and TXT records (SPF, DMARC, MTA-STS). Built on the same
//! hickory resolver ([`MxResolver::inner`]); candidates to move into `dns.rs` later.

use hickory_resolver::proto::rr::{RData, RecordType};
use serde::Serialize;

use crate::dns::{DnsError, MxResolver};

/// One address record of a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Address {
    /// The address, textual.
    pub ip: String,
    /// `ipv4` (A) or `ipv6` (AAAA).
    pub family: &'static str,
    /// TTL of the record in seconds.
    pub ttl: u32,
}

/// The A and AAAA records of one host, and whether the name is an alias.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAddresses {
    /// A records first, then AAAA.
    pub addresses: Vec<Address>,
    /// The canonical name when the host is a CNAME (RFC 2181 §10.3 forbids it at an MX target).
    pub cname: Option<String>,
    /// The name does not exist (NXDOMAIN).
    pub nxdomain: bool,
    /// A temporary failure, when one of the look-ups had one.
    pub temporary: Option<String>,
}

/// Fully qualified form, so no search domain is appended.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// What one look-up failure means: `Ok(true)` NXDOMAIN, `Ok(false)` no records, `Err` temporary.
fn negative(name: &str, e: &hickory_resolver::net::NetError) -> Result<bool, String> {
    if e.is_nx_domain() {
        Ok(true)
    } else if e.is_no_records_found() {
        Ok(false)
    } else {
        Err(format!("{name}: {e}"))
    }
}

/// A and AAAA records of `host`, separately, with TTLs and the CNAME (if any) they came through.
pub async fn host_addresses(resolver: &MxResolver, host: &str) -> HostAddresses {
    let mut out = HostAddresses::default();
    for (rt, family) in [(RecordType::A, "ipv4"), (RecordType::AAAA, "ipv6")] {
        match resolver.inner().lookup(fqdn(host), rt).await {
            Ok(lookup) => {
                for rec in lookup.answers() {
                    match &rec.data {
                        RData::A(a) => out.addresses.push(Address {
                            ip: a.0.to_string(),
                            family,
                            ttl: rec.ttl,
                        }),
                        RData::AAAA(a) => out.addresses.push(Address {
                            ip: a.0.to_string(),
                            family,
                            ttl: rec.ttl,
                        }),
                        RData::CNAME(c) => {
                            let target = c.0.to_utf8().trim_end_matches('.').to_string();
                            // A chain: keep the last alias target, the canonical name.
                            out.cname = Some(target);
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => match negative(host, &e) {
                Ok(nx) => out.nxdomain |= nx,
                Err(t) => out.temporary = Some(t),
            },
        }
    }
    out
}

/// All TXT strings of `name`, each record's character-strings joined without separator
/// (RFC 7208 §3.3). NXDOMAIN and "no records" give an empty list.
pub async fn txt(resolver: &MxResolver, name: &str) -> Result<Vec<String>, DnsError> {
    match resolver.inner().lookup(fqdn(name), RecordType::TXT).await {
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
        Err(e) => match negative(name, &e) {
            Ok(_) => Ok(Vec::new()),
            Err(t) => Err(DnsError::Temporary(t)),
        },
    }
}

/// The records among `txt` that start with the version tag `tag` (`v=spf1`, `v=DMARC1`,
/// `v=STSv1`): the tag compared case-insensitively and followed by the end, a space or `;`.
pub fn select(txt: &[String], tag: &str) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn selects_by_version_tag() {
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
            select(&t, "v=spf1"),
            v(&["v=spf1 -all", "V=SPF1 mx -all", "v=spf1"])
        );
        assert_eq!(
            select(&v(&["v=DMARC1; p=none", "v=DMARC1p"]), "v=DMARC1"),
            v(&["v=DMARC1; p=none"])
        );
        assert!(select(&v(&["ééééééé"]), "v=spf1").is_empty());
    }
}
