//! DANE for MX delivery (RFC 7672), the `dane` key of `[mrelayd.remote]` (default on, as
//! Postfix's `smtp_tls_security_level = dane` with a validating resolver).
//!
//! - Applies to MX next hops whose TLS policy is `may` or `encrypt` (`none` and `verify` are
//!   the admin's explicit choice and stay as they are; relayhosts are not MX hosts).
//! - The MX RRset (or, for the implicit MX, the domain's address records) must be secure,
//!   i.e. the resolver set the AD bit (RFC 7672 §2.2.1); an insecure MX means no DANE.
//! - Per MX host: its A and AAAA answers must be secure (§2.2.2), then its TLSA RRset at
//!   `_PORT._tcp.HOST` (§2.2.3) is looked up. Secure with a usable record (DANE-TA or
//!   DANE-EE, [`crate::tls::dane::Tlsa::usable`]): TLS is required and the certificate must
//!   match ([`crate::tls::dane::client_config_dane`]); a mismatch or a refused STARTTLS is a
//!   temporary failure (4.7.5), the next host is tried and the mail is retried later.
//!   Secure with only unusable records: TLS required, not authenticated (§3.1.3). Secure
//!   "no records": the policy as configured.
//! - A failed (SERVFAIL, timeout) secure look-up on a secure host: that host is skipped as
//!   unreachable (§2.2: it could be an attacker hiding the TLSA records).

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::proto::rr::{RData, RecordType};
use rustls::ClientConfig;

use super::failure::{Failure, What};
use crate::dns::secure::SecureResolver;
use crate::dns::DnsError;
use crate::tls::dane::{client_config_dane, Tlsa};

/// What DANE says for one MX host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostDane {
    /// Not DANE-protected (insecure answers, or no TLSA records): the configured policy.
    Insecure,
    /// Secure TLSA records, none usable: TLS required, any certificate (RFC 7672 §3.1.3).
    Unusable,
    /// Usable TLSA records: TLS required and the certificate checked against them.
    Verify(Vec<Tlsa>),
}

/// The secure resolver for DANE, when `dane` is on; `server` as the other look-ups.
pub fn resolver(enabled: bool, server: Option<SocketAddr>) -> Option<SecureResolver> {
    if !enabled {
        return None;
    }
    match SecureResolver::new(server) {
        Ok(r) => Some(r),
        Err(e) => {
            crate::log::line(format_args!("DANE off: {e}"));
            None
        }
    }
}

fn temp(e: &DnsError) -> Failure {
    Failure::new(true, format!("DANE: {e}"), "4.4.3").because(What::Dns)
}

/// Whether the MX RRset of `domain` is secure (RFC 7672 §2.2.1); a validated "no MX" counts
/// (the implicit MX, whose address records are then checked per host).
pub async fn mx_secure(r: &SecureResolver, domain: &str) -> Result<bool, Failure> {
    let mx = r
        .lookup(domain, RecordType::MX)
        .await
        .map_err(|e| temp(&e))?;
    Ok(mx.authenticated)
}

/// The DANE verdict for MX host `host` reached on `port` (RFC 7672 §2.2.2, §2.2.3).
pub async fn host(r: &SecureResolver, host: &str, port: u16) -> Result<HostDane, Failure> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(HostDane::Insecure);
    }
    let (a, aaaa) = tokio::join!(
        r.lookup(host, RecordType::A),
        r.lookup(host, RecordType::AAAA)
    );
    let (a, aaaa) = (a.map_err(|e| temp(&e))?, aaaa.map_err(|e| temp(&e))?);
    if !(a.authenticated && aaaa.authenticated) {
        return Ok(HostDane::Insecure);
    }
    let name = format!("_{port}._tcp.{}", host.trim_end_matches('.'));
    let tlsa = r
        .lookup(&name, RecordType::TLSA)
        .await
        .map_err(|e| temp(&e))?;
    if !tlsa.authenticated || tlsa.records.is_empty() {
        return Ok(HostDane::Insecure);
    }
    let all = records(&tlsa.records);
    let usable: Vec<Tlsa> = all.iter().filter(|t| t.usable()).cloned().collect();
    Ok(if usable.is_empty() {
        HostDane::Unusable
    } else {
        HostDane::Verify(usable)
    })
}

/// The TLSA records among `records`.
pub fn records(records: &[hickory_resolver::proto::rr::Record]) -> Vec<Tlsa> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::TLSA(t) => Some(Tlsa {
                usage: u8::from(t.cert_usage),
                selector: u8::from(t.selector),
                matching: u8::from(t.matching),
                data: t.cert_data.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// The rustls config for [`HostDane::Verify`]: the MX host name and the next-hop domain are the
/// reference identifiers for DANE-TA (RFC 7672 §3.2.2).
pub fn config(records: Vec<Tlsa>, host: &str, domain: &str) -> Arc<ClientConfig> {
    let mut names = vec![host.trim_end_matches('.').to_string()];
    let d = domain.trim_end_matches('.').to_string();
    if !d.is_empty() && !names.contains(&d) {
        names.push(d);
    }
    client_config_dane(records, names)
}
