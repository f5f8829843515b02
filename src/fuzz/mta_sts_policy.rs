//! Fuzz the MTA-STS policy and TXT record parsers ([`crate::outbound::mta_sts::policy`]): a
//! policy parsed is re-written ([`Policy::to_text`]) and parses back the same (round trip),
//! and the MX match never panics.

use crate::outbound::mta_sts::policy::{self, Policy};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = policy::record_id(&[text.to_string()]);
    if let Some(id) = policy::record_id(&[text.to_string()]) {
        assert!(!id.is_empty() && id.len() <= 32);
    }
    let Ok(p): Result<Policy, _> = policy::parse(&text) else {
        return;
    };
    assert!(p.max_age <= policy::MAX_AGE_LIMIT);
    assert_eq!(policy::parse(&p.to_text()).as_ref(), Ok(&p), "round trip");
    for m in &p.mx {
        let host = m
            .strip_prefix("*.")
            .map_or(m.clone(), |rest| format!("x.{rest}"));
        assert!(p.matches(&host), "{m} does not match {host}");
    }
    for line in text.lines() {
        let _ = p.matches(line);
    }
}
