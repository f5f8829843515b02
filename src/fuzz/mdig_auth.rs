//! Fuzz the record parsers of mdig-mx's SPF, DMARC and DKIM key reports
//! ([`crate::mdig::authrec`]): what a domain's TXT records say is untrusted.

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
}
