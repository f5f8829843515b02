//! Fuzz the record parsers of mdig-mx's SPF, DMARC and DKIM key reports
//! ([`crate::mdig::authrec`]): what a domain's TXT records say is untrusted; and the DMARC
//! tree walk over them (first line: the domain, each further line a `_dmarc` record of the
//! next name the walk asks for).

use mail_auth::common::parse::TxtRecordParser as _;

use crate::mdig::authrec;

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(terms) = authrec::spf_terms(&text) {
        assert!(terms.len() < text.len().max(1));
        for t in &terms {
            assert!(!t.text.is_empty() && text.contains(t.text.as_str()));
        }
    }
    if let Ok(tags) = authrec::tag_list(&text) {
        assert!(tags.iter().all(|(t, _)| !t.is_empty()));
    }
    let d = authrec::parse_dmarc(&text);
    assert_eq!(d.valid, d.problems.is_empty());
    assert!(d.pct <= 100);
    let k = authrec::parse_dkim_key(&text);
    if k.revoked {
        assert!(k.bits.is_none());
    }
    walk(&text);
}

/// The DMARC tree walk: every name asked and the organizational domain are `start` itself
/// or a label-aligned suffix of it, and the record that applies is one the walk found.
fn walk(text: &str) {
    let mut lines = text.lines();
    let start = lines.next().unwrap_or_default();
    let names = authrec::dmarc_walk_names(start);
    assert!(names.len() <= 7, "{names:?}");
    let labels: Vec<&str> = start.split('.').filter(|l| !l.is_empty()).collect();
    let suffix_of_start = |n: &str| labels.join(".").ends_with(n) && !n.is_empty();
    assert!(
        names.iter().all(|n| suffix_of_start(n)),
        "{start:?} {names:?}"
    );
    let found: Vec<authrec::WalkRecord> = names
        .iter()
        .zip(lines)
        .filter_map(|(name, line)| {
            let d = mail_auth::dmarc::Dmarc::parse(line.as_bytes()).ok()?;
            Some(authrec::WalkRecord {
                name: name.clone(),
                psd: d.psd,
                record: line.to_string(),
            })
        })
        .collect();
    match authrec::org_policy(start, &found) {
        None => assert!(found.is_empty()),
        Some(o) => {
            assert!(found
                .iter()
                .any(|w| w.name == o.domain && w.record == o.record));
            assert!(suffix_of_start(&o.organizational_domain), "{o:?}");
        }
    }
}
