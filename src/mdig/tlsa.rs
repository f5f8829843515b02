//! mdig-mx's DANE part (RFC 7672): the TLSA records of every MX host (`_PORT._tcp.HOST`,
//! §2.2.3) and whether the resolver validated them (AD bit, [`crate::dns::secure`]), with the
//! MX and address answers' own validation, since DANE applies only when all are secure (§2.2).

use std::fmt::Write as _;

use hickory_resolver::proto::rr::RecordType;
use serde::Serialize;

use super::DomainReport;
use crate::dns::secure::SecureResolver;
use crate::outbound::dane::records;
use crate::tls::dane::Tlsa;

/// One TLSA record in the report.
#[derive(Clone, Debug, Serialize)]
pub struct TlsaEntry {
    /// The record.
    #[serde(flatten)]
    pub record: Tlsa,
    /// Usable by an SMTP client (DANE-TA/DANE-EE, known selector and matching; §3.1.3).
    pub usable: bool,
}

/// The TLSA look-up of one MX host.
#[derive(Clone, Debug, Serialize)]
pub struct HostTlsa {
    /// The MX host.
    pub host: String,
    /// The name asked (`_25._tcp.HOST`).
    pub name: String,
    /// The domain's MX answer was validated (AD).
    pub mx_authenticated: bool,
    /// The host's A and AAAA answers were validated.
    pub addresses_authenticated: bool,
    /// The TLSA answer was validated.
    pub authenticated: bool,
    /// The records found.
    pub records: Vec<TlsaEntry>,
    /// What a DANE client does: `dane` (TLS required, certificate checked against the
    /// records), `encrypt` (records all unusable: TLS required, not authenticated) or `none`
    /// (not DANE-protected: opportunistic TLS).
    pub dane: &'static str,
    /// Why a look-up failed, when one did.
    pub error: Option<String>,
}

/// Looks up the TLSA records of every MX host of `r` (port `port`) and adds them, and what
/// is wrong with them, to the report.
pub async fn add_to(r: &mut DomainReport, resolver: &SecureResolver, port: u16) {
    if r.mx.is_empty() {
        return;
    }
    let mx_authenticated = match resolver.lookup(&r.domain, RecordType::MX).await {
        Ok(a) => a.authenticated,
        Err(e) => {
            r.problems.push(format!("DNSSEC MX look-up failed: {e}"));
            false
        }
    };
    let hosts: Vec<String> = r.mx.iter().map(|m| m.host.clone()).collect();
    for host in hosts {
        let name = format!("_{port}._tcp.{host}");
        let mut h = HostTlsa {
            host: host.clone(),
            name: name.clone(),
            mx_authenticated,
            addresses_authenticated: false,
            authenticated: false,
            records: Vec::new(),
            dane: "none",
            error: None,
        };
        let (a, aaaa) = tokio::join!(
            resolver.lookup(&host, RecordType::A),
            resolver.lookup(&host, RecordType::AAAA)
        );
        h.addresses_authenticated =
            matches!((&a, &aaaa), (Ok(a), Ok(b)) if a.authenticated && b.authenticated);
        match resolver.lookup(&name, RecordType::TLSA).await {
            Ok(t) => {
                h.authenticated = t.authenticated;
                h.records = records(&t.records)
                    .into_iter()
                    .map(|record| TlsaEntry {
                        usable: record.usable(),
                        record,
                    })
                    .collect();
            }
            Err(e) => h.error = Some(e.to_string()),
        }
        let secure = h.mx_authenticated && h.addresses_authenticated && h.authenticated;
        if let Some(e) = &h.error {
            r.problems
                .push(format!("TLSA look-up of {name} failed: {e}"));
        } else if secure && !h.records.is_empty() {
            if h.records.iter().any(|e| e.usable) {
                h.dane = "dane";
            } else {
                h.dane = "encrypt";
                r.problems.push(format!(
                    "no TLSA record of {name} is usable for SMTP (RFC 7672 §3.1.3: only \
                     DANE-TA(2) and DANE-EE(3)); senders require TLS but cannot authenticate"
                ));
            }
        } else if !h.records.is_empty() {
            r.warnings.push(format!(
                "TLSA records of {name} are not DNSSEC-validated end to end (MX {}, address {}, \
                 TLSA {}): senders ignore them (RFC 7672 §2.2)",
                yes_no(h.mx_authenticated),
                yes_no(h.addresses_authenticated),
                yes_no(h.authenticated)
            ));
        }
        r.tlsa.push(h);
    }
    if r.exit == crate::exit::OK && !r.problems.is_empty() {
        r.exit = super::EXIT_PROBLEMS;
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "validated"
    } else {
        "not validated"
    }
}

/// The report's TLSA lines.
pub fn render_text(o: &mut String, hosts: &[HostTlsa]) {
    for h in hosts {
        let how = if h.authenticated {
            "DNSSEC-validated"
        } else {
            "not validated"
        };
        if h.records.is_empty() && h.error.is_none() {
            let _ = writeln!(o, "  TLSA {}: none ({how})", h.name);
        } else {
            let _ = writeln!(o, "  TLSA {} ({how}):", h.name);
        }
        for e in &h.records {
            let flag = if e.usable {
                ""
            } else {
                "  (unusable for SMTP)"
            };
            let _ = writeln!(o, "    {}{flag}", e.record);
        }
        let dane = match h.dane {
            "dane" => "DANE: TLS required, certificate checked against TLSA",
            "encrypt" => "DANE: TLS required, records unusable",
            _ => "DANE: not protected (opportunistic TLS)",
        };
        let _ = writeln!(o, "    {dane}");
    }
}
