//! mdig-mx's MTA-STS section (RFC 8461): the policy behind the `_mta-sts` TXT record, fetched
//! as mrelayd fetches it ([`crate::outbound::mta_sts::Fetcher`]), and whether each MX host
//! matches it (§4.1). Problems: several or invalid records, an `enforce` or `testing` policy
//! that does not name an MX host; a warning: a record whose policy cannot be fetched.

use std::fmt::Write as _;

use serde::Serialize;

use super::DomainReport;
use crate::dns::MxResolver;
use crate::outbound::mta_sts::{policy, Fetcher, Mode, Policy};

/// One MX host against the policy.
#[derive(Clone, Debug, Serialize)]
pub struct MxMatch {
    /// MX host name.
    pub host: String,
    /// Whether a policy `mx` pattern matches it.
    pub matches: bool,
}

/// The MTA-STS policy of a domain as mdig-mx found it.
#[derive(Clone, Debug, Serialize)]
pub struct StsReport {
    /// The TXT record's id (`None`: no valid record).
    pub id: Option<String>,
    /// `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`.
    pub url: String,
    /// The policy, when fetched and valid.
    pub policy: Option<Policy>,
    /// Why there is no policy (fetch or parse error).
    pub error: Option<String>,
    /// Each MX host and whether the policy names it (empty without a policy).
    pub mx: Vec<MxMatch>,
}

/// Fetches the policy when `r` has an MTA-STS record and sets `r.mta_sts_policy`, adding
/// problems. Nothing without a record.
pub async fn check(r: &mut DomainReport, resolver: &MxResolver, fetcher: &Fetcher) {
    if r.mta_sts.is_empty() {
        return;
    }
    let id = policy::record_id(&r.mta_sts);
    let domain = r.domain.clone();
    let mut s = StsReport {
        id: id.clone(),
        url: format!("https://mta-sts.{domain}/.well-known/mta-sts.txt"),
        policy: None,
        error: None,
        mx: Vec::new(),
    };
    if id.is_none() {
        r.problems.push(format!(
            "_mta-sts.{domain}: {} v=STSv1 record(s) but not exactly one valid one \
             (v=STSv1; id=1-32 letters and digits): senders see no policy (RFC 8461 §3.1)",
            r.mta_sts.len()
        ));
    }
    match fetcher.fetch(resolver, &domain).await {
        Ok((_, p)) => {
            s.mx =
                r.mx.iter()
                    .map(|m| MxMatch {
                        host: m.host.clone(),
                        matches: p.matches(&m.host),
                    })
                    .collect();
            if p.mode != Mode::None {
                for m in s.mx.iter().filter(|m| !m.matches) {
                    r.problems.push(format!(
                        "MX {} is not in the MTA-STS policy ({}): {}",
                        m.host,
                        p.mode.as_str(),
                        if p.mode == Mode::Enforce {
                            "senders that enforce it will not deliver there"
                        } else {
                            "senders report it (testing)"
                        }
                    ));
                }
            }
            s.policy = Some(p);
        }
        // Senders see no policy then (RFC 8461 §5.1): worth a look, mail still flows.
        Err(e) => {
            r.warnings
                .push(format!("MTA-STS record but no policy: {e}"));
            s.error = Some(e);
        }
    }
    r.mta_sts_policy = Some(s);
}

/// The text lines of the section (after the MTA-STS record lines).
pub fn render(s: &StsReport, o: &mut String) {
    match (&s.policy, &s.error) {
        (Some(p), _) => {
            let _ = writeln!(
                o,
                "  MTA-STS policy ({}): mode {}, max_age {}",
                s.url,
                p.mode.as_str(),
                p.max_age
            );
            for m in &p.mx {
                let _ = writeln!(o, "    mx: {m}");
            }
            for m in &s.mx {
                let verdict = if m.matches {
                    "matches"
                } else {
                    "NOT in the policy"
                };
                let _ = writeln!(o, "    MX {}: {verdict}", m.host);
            }
        }
        (None, Some(e)) => {
            let _ = writeln!(o, "  MTA-STS policy: none ({e})");
        }
        (None, None) => {}
    }
}
