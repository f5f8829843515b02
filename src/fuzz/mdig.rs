//! Fuzz what mdig-mx reads from the network: certificate DER (x509-parser behind
//! `tls::parse_certificate`), TXT strings (SPF/DMARC/MTA-STS selection), domain names and the EHLO
//! replies taken from a session transcript.

use crate::{dns, mdig, tls};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    if let Ok(info) = tls::parse_certificate(data) {
        assert!(info.not_after.ends_with('Z'));
    }
    let text = String::from_utf8_lossy(data);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let spf = dns::records_with_tag(&lines, "v=spf1");
    assert!(spf.len() <= lines.len());
    let _ = mdig::valid_domain(&text);
    let (plain, tls) = mdig::probe::ehlo_replies(&lines);
    assert!(plain.len() + tls.len() <= lines.len());
}
