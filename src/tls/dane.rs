//! DANE for SMTP (RFC 7672): TLSA records (RFC 6698 §2.1) and the certificate check they ask
//! for, as a rustls [`ServerCertVerifier`] ([`client_config_dane`]).
//!
//! - Usable records (RFC 7672 §3.1.3): DANE-TA(2) and DANE-EE(3), selector Cert(0) or SPKI(1),
//!   matching Full(0), SHA2-256(1) or SHA2-512(2). PKIX-TA(0) and PKIX-EE(1) are unusable for
//!   SMTP (no trusted CA list to check them against), as are unknown values.
//! - DANE-EE(3) (§3.1.1): the server's own certificate or key matches the record; its names and
//!   validity dates are not checked.
//! - DANE-TA(2) (§3.1.2): a certificate of the chain the server sent matches the record (the
//!   server must send the trust anchor, §3.1.2), and the chain from the leaf up to it verifies
//!   with it as the only trust anchor, for one of the reference identifiers (§3.2.2: the MX
//!   host name, or the next-hop domain) and within its validity.
//!
//! Sans-IO: the records come from [`crate::dns::secure`] look-ups, done by the caller.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;

use super::{config_with_verifier, provider, KeyCheck};

/// Certificate usage DANE-TA (RFC 7218 §2.1).
pub const DANE_TA: u8 = 2;
/// Certificate usage DANE-EE (RFC 7218 §2.1).
pub const DANE_EE: u8 = 3;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Tlsa {
    /// Certificate usage: 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// Selector: 0 the whole certificate, 1 its SubjectPublicKeyInfo.
    pub selector: u8,
    /// Matching type: 0 exact, 1 SHA2-256, 2 SHA2-512.
    pub matching: u8,
    /// Certificate association data.
    #[serde(serialize_with = "hex_ser")]
    pub data: Vec<u8>,
}

fn hex_ser<S: serde::Serializer>(d: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex(d))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Tlsa {
    /// Whether an SMTP client can use the record (RFC 7672 §3.1.3).
    pub fn usable(&self) -> bool {
        matches!(self.usage, DANE_TA | DANE_EE)
            && matches!(self.selector, 0 | 1)
            && matches!(self.matching, 0..=2)
            && !self.data.is_empty()
    }

    /// Whether the DER certificate `cert` matches the record's selector, matching type and data
    /// (RFC 6698 §2.1.2, §2.1.3); an unparsable certificate matches nothing.
    pub fn matches(&self, cert: &[u8]) -> bool {
        use sha2::Digest;
        let spki;
        let selected: &[u8] = match self.selector {
            0 => cert,
            1 => match x509_parser::parse_x509_certificate(cert) {
                Ok((_, c)) => {
                    spki = c.tbs_certificate.subject_pki.raw.to_vec();
                    &spki
                }
                Err(_) => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data.as_slice(),
            1 => sha2::Sha256::digest(selected).as_slice() == self.data.as_slice(),
            2 => sha2::Sha512::digest(selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }
}

impl fmt::Display for Tlsa {
    /// Presentation format (RFC 6698 §2.2): `3 1 1 <hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.usage,
            self.selector,
            self.matching,
            hex(&self.data)
        )
    }
}

/// The chain matched no TLSA record: what our verifier tells rustls (and so the DSN).
#[derive(Debug)]
struct Mismatch(String);

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Mismatch {}

/// Checks a server's chain against usable TLSA records.
#[derive(Debug)]
struct DaneCheck {
    keys: KeyCheck,
    records: Vec<Tlsa>,
    /// Reference identifiers for DANE-TA (RFC 7672 §3.2.2).
    names: Vec<String>,
}

impl DaneCheck {
    /// `Ok(description of the match)` or why nothing matched.
    fn check(
        &self,
        leaf: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<String, String> {
        let mut ta_errors = Vec::new();
        for r in self.records.iter().filter(|r| r.usable()) {
            if r.usage == DANE_EE {
                if r.matches(leaf) {
                    return Ok(format!("DANE-EE {r}"));
                }
                continue;
            }
            // DANE-TA: the anchor is in the chain the server sent, above the leaf.
            for (i, anchor) in chain.iter().enumerate() {
                if !r.matches(anchor) {
                    continue;
                }
                match verify_to_anchor(
                    &self.keys.provider,
                    leaf,
                    &chain[..i],
                    anchor,
                    &self.names,
                    now,
                ) {
                    Ok(name) => return Ok(format!("DANE-TA {r} for {name}")),
                    Err(e) => ta_errors.push(e),
                }
            }
        }
        let mut why = format!(
            "no TLSA record matches the server's certificate (its SHA-256 {}, key SHA-256 {})",
            sha256_hex(leaf),
            super::SpkiPin::of_certificate(leaf)
                .map(|p| p.to_string())
                .unwrap_or_else(|_| "unparsable".into())
        );
        if !ta_errors.is_empty() {
            why.push_str(&format!(
                "; DANE-TA anchor found but: {}",
                ta_errors.join("; ")
            ));
        }
        Err(why)
    }
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(der))
}

/// Verifies `leaf` through `intermediates` up to `anchor` as the only trust anchor, for one of
/// `names`; the name it is valid for.
fn verify_to_anchor(
    provider: &Arc<CryptoProvider>,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchor: &CertificateDer<'_>,
    names: &[String],
    now: UnixTime,
) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(anchor.clone().into_owned())
        .map_err(|e| format!("trust anchor unusable: {e}"))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("verifier: {e}"))?;
    let mut last = String::from("no reference identifier");
    for n in names {
        let Ok(name) = ServerName::try_from(n.clone()) else {
            continue;
        };
        match verifier.verify_server_cert(leaf, intermediates, &name, &[], now) {
            Ok(_) => return Ok(n.clone()),
            Err(e) => last = format!("{n}: {e}"),
        }
    }
    Err(last)
}

impl ServerCertVerifier for DaneCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates, now) {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(why) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(Mismatch(why))),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.keys.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.keys.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.keys.supported_verify_schemes()
    }
}

/// A client config that accepts a server only when its chain matches one of the usable
/// `records` (RFC 7672 §3.1); `names` are the reference identifiers for DANE-TA (§3.2.2).
pub fn client_config_dane(records: Vec<Tlsa>, names: Vec<String>) -> Arc<ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(DaneCheck {
        keys: KeyCheck {
            provider: provider.clone(),
            pin: None,
        },
        records,
        names,
    });
    config_with_verifier(provider, verifier)
}

/// Checks `chain` (leaf first) against `records` as the handshake would: the matching record,
/// or why none matched. For reports (mdig-mx) and tests.
pub fn check_chain(
    chain: &[CertificateDer<'static>],
    records: &[Tlsa],
    names: &[String],
) -> Result<String, String> {
    let (leaf, rest) = chain
        .split_first()
        .ok_or("the server sent no certificate")?;
    DaneCheck {
        keys: KeyCheck {
            provider: provider(),
            pin: None,
        },
        records: records.to_vec(),
        names: names.to_vec(),
    }
    .check(leaf, rest, UnixTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<CertificateDer<'static>> {
        use rustls_pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.unwrap())
            .collect()
    }

    fn rec(usage: u8, selector: u8, matching: u8, cert: &[u8]) -> Tlsa {
        use sha2::Digest;
        let sel = if selector == 1 {
            x509_parser::parse_x509_certificate(cert)
                .unwrap()
                .1
                .tbs_certificate
                .subject_pki
                .raw
                .to_vec()
        } else {
            cert.to_vec()
        };
        let data = match matching {
            0 => sel,
            1 => sha2::Sha256::digest(&sel).to_vec(),
            _ => sha2::Sha512::digest(&sel).to_vec(),
        };
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    #[test]
    fn usability_per_rfc7672() {
        let r = |u, s, m| Tlsa {
            usage: u,
            selector: s,
            matching: m,
            data: vec![1],
        };
        assert!(r(3, 1, 1).usable() && r(2, 0, 2).usable() && r(3, 0, 0).usable());
        for bad in [r(0, 1, 1), r(1, 1, 1), r(4, 1, 1), r(3, 2, 1), r(3, 1, 3)] {
            assert!(!bad.usable(), "{bad}");
        }
        assert_eq!(r(3, 1, 1).to_string(), "3 1 1 01");
    }

    #[test]
    fn ee_and_ta_matching() {
        let pair = super::super::self_signed(&["mx.dane.test".to_string()]).unwrap();
        let leaf = der(&pair.cert_pem).remove(0);
        let ca = der(&pair.ca_pem).remove(0);
        let chain = vec![leaf.clone(), ca.clone()];
        let mx = vec!["mx.dane.test".to_string()];
        for (s, m) in [(0, 0), (0, 1), (1, 1), (1, 2)] {
            let ee = rec(3, s, m, &leaf);
            assert!(check_chain(&chain, &[ee], &[])
                .unwrap()
                .starts_with("DANE-EE"));
            let ta = rec(2, s, m, &ca);
            assert!(check_chain(&chain, std::slice::from_ref(&ta), &mx).is_ok());
            // DANE-TA checks the name (§3.2.2); DANE-EE does not.
            let other = vec!["other.test".to_string()];
            assert!(check_chain(&chain, std::slice::from_ref(&ta), &other).is_err());
            // The anchor must be in the chain the server sent.
            assert!(check_chain(&chain[..1], &[ta], &mx).is_err());
        }
        // A CA's record as DANE-EE, a leaf's as DANE-TA, PKIX usages: no match.
        for r in [rec(3, 1, 1, &ca), rec(2, 1, 1, &leaf), rec(1, 1, 1, &leaf)] {
            let e = check_chain(&chain, &[r], &mx).unwrap_err();
            assert!(e.contains("no TLSA record matches"), "{e}");
        }
        assert!(!rec(3, 1, 1, &leaf).matches(b"not a certificate"));
    }
}
