//! Certificate details for the probe report (subject, SANs, issuer, expiry), read with
//! x509-parser from the DER the server sent. `tls.rs` has no certificate parser; this could move
//! there later.

use serde::Serialize;

/// What the report shows about a server certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Subject distinguished name (RFC 4514 form).
    pub subject: String,
    /// Subject alternative names: DNS names and IP addresses.
    pub sans: Vec<String>,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Start of validity, RFC 3339 UTC.
    pub not_before: String,
    /// End of validity, RFC 3339 UTC.
    pub not_after: String,
    /// End of validity, seconds since the Unix epoch.
    pub not_after_unix: i64,
}

/// Parses a DER certificate; an error string for anything unparsable (never a panic).
pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unparsable certificate: {e}"))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => sans.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Some(ip) = ip_from_bytes(b) {
                        sans.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        sans,
        issuer: cert.issuer().to_string(),
        not_before: rfc3339(validity.not_before.timestamp()),
        not_after: rfc3339(validity.not_after.timestamp()),
        not_after_unix: validity.not_after.timestamp(),
    })
}

fn ip_from_bytes(b: &[u8]) -> Option<std::net::IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (days-to-civil, H. Hinnant's algorithm).
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses_a_generated_certificate() {
        let s = crate::tls::self_signed(&["mx.example".into(), "127.0.0.1".into()]).unwrap();
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(s.cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'static>| c)
            .unwrap();
        let info = parse(&der).unwrap();
        assert_eq!(info.sans, vec!["mx.example", "127.0.0.1"]);
        assert!(info.subject.contains("mx.example"), "{}", info.subject);
        assert!(info.issuer.contains("mailkit CA"), "{}", info.issuer);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"").is_err());
        assert!(parse(&[0x30, 0x82, 0xff, 0xff, 0]).is_err());
        assert!(parse(&[0u8; 64]).is_err());
    }
}
