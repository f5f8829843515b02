//! The one rustls setup of mailkit, and the one place certificates are read.
//!
//! What lives here:
//! - Configs: server configs from PEM files, client configs against the webpki roots or one CA
//!   file, a client pinned to one server key ([`SpkiPin`], [`client_config_pinned`]: the pin
//!   replaces the CA and name checks), a no-verify client for opportunistic STARTTLS.
//! - Judging a server after the handshake: the certificate chain it sent ([`peer_chain`]),
//!   whether that chain is valid for a name ([`check_chain`]), and what the leaf says (subject,
//!   SANs, issuer, validity, key pin: [`parse_certificate`], [`CertInfo`]), as mdig-mx's probe
//!   reports it.
//! - The one set of client TLS policy types: [`Mode`] (how TLS is used: off, opportunistic
//!   STARTTLS, required STARTTLS, implicit TLS) and [`Verify`] (how the server is checked:
//!   webpki-roots, a CA file, a key pin, or not at all for opportunistic MX delivery), together
//!   a [`Policy`]. msend, mrelayd's outbound engine, mdig-mx and the SMTP client session use
//!   them; the config keys keep their own spellings (`outbound::config`, `msend`).
//! - DANE (RFC 7672): TLSA records and the verifier that checks a server against them
//!   ([`dane`]).
//! - A throwaway CA and server certificate for the quickstart and tests.
//! - A one-line description of a session's TLS parameters ([`TlsInfo`]) for `Received:` headers
//!   and logs.
//!
//! Every config uses the ring provider explicitly (`rustls::crypto::ring::default_provider()`), so
//! the process never depends on a global default provider being installed.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::Serialize;

pub mod dane;

/// The crypto provider every mailkit config is built with.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate from a PEM file (leaf first, then intermediates).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("reading certificates from {}", path.display()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("no PEM certificate found"))
            .with_context(|| format!("reading certificates from {}", path.display()));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("reading private key from {}", path.display()))
}

/// A server config from a PEM certificate chain and a PEM private key.
pub fn server_config(cert_pem_path: &Path, key_pem_path: &Path) -> Result<Arc<ServerConfig>> {
    let certs = load_certs(cert_pem_path)?;
    let key = load_key(key_pem_path)?;
    server_config_from(certs, key).with_context(|| {
        format!(
            "setting up TLS with {} and {}",
            cert_pem_path.display(),
            key_pem_path.display()
        )
    })
}

/// A server config from an in-memory PEM certificate chain and key (as [`self_signed`] returns).
pub fn server_config_from_pem(cert_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("parsing certificate PEM: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| anyhow!("parsing private key PEM: {e}"))?;
    server_config_from(certs, key)
}

fn server_config_from(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not form a usable pair")?;
    Ok(Arc::new(config))
}

/// The roots a client trusts: only the certificates in `ca_file` when given, else webpki-roots.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                roots
                    .add(cert)
                    .with_context(|| format!("adding a CA certificate from {}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// A verifying client config: the server's certificate must chain to the webpki roots, or to the
/// certificates in `ca_file` only when one is given.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let roots = root_store(ca_file)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client config that accepts any server certificate, for opportunistic STARTTLS (RFC 7435:
/// encryption without authentication beats plaintext) and diagnostics. Signatures are still
/// checked, so the peer must hold the key of the certificate it shows. The certificate itself is
/// available after the handshake (`peer_certificates()`) and can be judged with [`check_chain`].
pub fn client_config_no_verify() -> Arc<ClientConfig> {
    key_checked_config(None)
}

/// A client config that trusts exactly one server key: the certificate's SubjectPublicKeyInfo
/// must hash to `pin`, and nothing else about it is checked (no CA, no name, no validity
/// dates), so a self-signed certificate for any name works, as with msmtp's `tls_fingerprint`
/// (which pins the whole certificate; this pins the key, RFC 7469 §2.4, so it survives a renewal
/// with the same key). Handshake signatures are checked, so the server must hold that key.
pub fn client_config_pinned(pin: SpkiPin) -> Arc<ClientConfig> {
    key_checked_config(Some(pin))
}

/// A client config with [`KeyCheck`] as its verifier.
fn key_checked_config(pin: Option<SpkiPin>) -> Arc<ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(KeyCheck {
        provider: provider.clone(),
        pin,
    });
    config_with_verifier(provider, verifier)
}

/// A client config over `provider` whose server check is `verifier`.
fn config_with_verifier(
    provider: Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Arc<ClientConfig> {
    // The safe default versions always exist for the ring provider; fall back to the plain
    // builder's defaults if that ever changes rather than panicking.
    let builder =
        match ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions() {
            Ok(b) => b,
            Err(_) => ClientConfig::builder(),
        };
    Arc::new(
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    )
}

/// Whether `chain` (leaf first, as `peer_certificates()` returns it) is valid for `server_name`
/// against the webpki roots or `ca_file`. Used to report "verified"/"not verified" after an
/// opportunistic handshake made with [`client_config_no_verify`].
pub fn check_chain(
    chain: &[CertificateDer<'static>],
    server_name: &str,
    ca_file: Option<&Path>,
) -> Result<()> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| anyhow!("the server sent no certificate"))?;
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(root_store(ca_file)?), provider())
            .build()
            .context("building the certificate verifier")?;
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| anyhow!("bad server name {server_name:?}: {e}"))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map_err(|e| anyhow!("certificate not valid for {server_name}: {e}"))?;
    Ok(())
}

/// The certificate chain the peer sent (leaf first), owned, for [`check_chain`] and
/// [`parse_certificate`]; empty before the handshake or when the peer sent none.
pub fn peer_chain(state: &rustls::CommonState) -> Vec<CertificateDer<'static>> {
    state
        .peer_certificates()
        .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default()
}

/// How a client uses TLS on one connection: the one set of client TLS modes, for msend, mrelayd's
/// remote delivery, mdig-mx's probe and the SMTP client session ([`crate::smtp::client`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Never TLS.
    Off,
    /// STARTTLS when offered; in clear when it is not (MX delivery, RFC 3207 §4), or when the
    /// handshake fails (RFC 7435 §3, retried once in clear).
    Opportunistic,
    /// STARTTLS must succeed, or the session fails without sending anything else.
    Starttls,
    /// TLS from the first byte (port 465, RFC 8314 §3); never STARTTLS.
    Implicit,
}

/// How a client checks the server's certificate (what [`Verify::client_config`] builds).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Verify {
    /// A chain to the webpki roots, valid for the host name connected to.
    WebPki,
    /// A chain to the certificates in this PEM file only, valid for the host name.
    CaFile(PathBuf),
    /// The server's key must hash to this pin; CA, name and dates are not checked.
    Pin(SpkiPin),
    /// Any certificate (signatures still checked): opportunistic TLS, as Postfix's `may` and
    /// `encrypt` levels (RFC 7435: encryption without authentication beats plaintext).
    None,
}

impl Verify {
    /// The rustls client config that checks the server this way.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        Ok(match self {
            Verify::WebPki => client_config(None)?,
            Verify::CaFile(p) => client_config(Some(p))?,
            Verify::Pin(pin) => client_config_pinned(*pin),
            Verify::None => client_config_no_verify(),
        })
    }

    /// This check with a configured CA file (or key pin) in place of the webpki roots:
    /// `ca_file` only ever replaces [`Verify::WebPki`], never turns a check on.
    pub fn with_ca_file(self, ca_file: Option<&Path>) -> Verify {
        match (self, ca_file) {
            (Verify::WebPki, Some(p)) => Verify::CaFile(p.to_path_buf()),
            (v, _) => v,
        }
    }
}

/// What a client requires of one destination: how TLS is used and how the peer is verified.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Policy {
    /// How TLS is used.
    pub mode: Mode,
    /// How the server's certificate is checked (irrelevant with [`Mode::Off`]).
    pub verify: Verify,
}

impl Policy {
    /// A policy from its parts.
    pub fn new(mode: Mode, verify: Verify) -> Policy {
        Policy { mode, verify }
    }
}

/// A SHA-256 pin of a server's public key: the hash of its DER SubjectPublicKeyInfo (RFC 5280
/// §4.1.2.7), as RFC 7469 §2.4 defines it and as
/// `openssl x509 -pubkey -noout -in cert.pem | openssl pkey -pubin -outform der | sha256sum`
/// prints it. Written as 64 hex digits, with or without colons between the bytes (msmtp's
/// `01:23:...` form), or as base64 (44 characters, HPKP's and curl's form; a `sha256//` or
/// `sha256/` prefix is accepted); shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiPin([u8; 32]);

impl SpkiPin {
    /// The pin of the key in a DER certificate (the bytes come from the network or a file:
    /// unparsable is an error).
    pub fn of_certificate(der: &[u8]) -> Result<SpkiPin> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| anyhow!("unparsable certificate: {e}"))?;
        Ok(SpkiPin::of_spki(cert.tbs_certificate.subject_pki.raw))
    }

    /// The pin of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> SpkiPin {
        use sha2::Digest;
        SpkiPin(sha2::Sha256::digest(spki_der).into())
    }

    /// The 32 bytes of the hash.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for SpkiPin {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<SpkiPin, String> {
        use base64::Engine;
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        let t = ["sha256//", "sha256/", "sha256:"]
            .iter()
            .find_map(|p| lower.starts_with(p).then(|| &t[p.len()..]))
            .unwrap_or(t);
        let hex: String = t.chars().filter(|c| *c != ':').collect();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut out = [0u8; 32];
            for (i, byte) in out.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                    .map_err(|e| format!("bad hex in key pin: {e}"))?;
            }
            return Ok(SpkiPin(out));
        }
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        match engine.decode(t) {
            Ok(b) => <[u8; 32]>::try_from(b.as_slice())
                .map(SpkiPin)
                .map_err(|_| {
                    format!(
                        "key pin {s:?} is base64 of {} bytes, not a SHA-256 (32)",
                        b.len()
                    )
                }),
            Err(_) => Err(format!(
                "key pin {s:?} is neither 64 hex digits (colons allowed) nor base64 of a SHA-256"
            )),
        }
    }
}

impl fmt::Display for SpkiPin {
    /// Lowercase hex without separators, as `sha256sum` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiPin({self})")
    }
}

/// A pinned key did not match: the error our verifier gives rustls, saying both hashes so a
/// user can see what the server has.
#[derive(Debug)]
struct PinMismatch {
    pinned: SpkiPin,
    found: SpkiPin,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's key SHA-256 is {}, not the pinned {}",
            self.found, self.pinned
        )
    }
}

impl std::error::Error for PinMismatch {}

/// What a certificate says about itself (not whether to trust it: that is [`check_chain`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// Subject distinguished name (RFC 4514 form).
    pub subject: String,
    /// Subject alternative names: DNS names and IP addresses (RFC 5280 §4.2.1.6).
    pub sans: Vec<String>,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Start of validity, RFC 3339 UTC.
    pub not_before: String,
    /// End of validity, RFC 3339 UTC.
    pub not_after: String,
    /// End of validity, seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// SHA-256 of the certificate's public key ([`SpkiPin`]), lowercase hex: what a client
    /// pins (msend `--tls-fingerprint`).
    pub spki_sha256: String,
}

/// Reads a DER certificate (as [`peer_chain`] or [`load_certs`] give) with x509-parser. The
/// bytes come from the network: anything unparsable is an error, never a panic.
pub fn parse_certificate(der: &[u8]) -> Result<CertInfo> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow!("unparsable certificate: {e}"))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(d.to_string()),
                GeneralName::IPAddress(b) => {
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
        not_before: rfc3339(&validity.not_before),
        not_after: rfc3339(&validity.not_after),
        not_after_unix: validity.not_after.timestamp(),
        spki_sha256: SpkiPin::of_spki(cert.tbs_certificate.subject_pki.raw).to_string(),
    })
}

/// An iPAddress SAN: 4 octets IPv4, 16 octets IPv6 (RFC 5280 §4.2.1.6); other lengths are
/// malformed and skipped.
fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Formats a certificate time in UTC as `YYYY-MM-DDTHH:MM:SSZ`; the calendar arithmetic is the
/// `time` crate's, which x509-parser already carries.
fn rfc3339(t: &x509_parser::time::ASN1Time) -> String {
    let t = t.to_datetime();
    // A leniently parsed time may carry an offset (RFC 5280 §4.1.2.5 wants Z): say it in UTC
    // (as written only past year 9999, where UTC cannot go).
    let t = t.checked_to_utc().map_or(t, Into::into);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The verifier behind [`client_config_pinned`] (the leaf's key must hash to the pin) and
/// [`client_config_no_verify`] (no pin: any certificate). Neither looks at CAs or names; both
/// check the handshake signatures against the leaf's key.
#[derive(Debug)]
struct KeyCheck {
    provider: Arc<CryptoProvider>,
    pin: Option<SpkiPin>,
}

impl ServerCertVerifier for KeyCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(pinned) = self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let found = SpkiPin::of_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        // Constant time is not needed: the hash of a public key is no secret.
        if found == pinned {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch { pinned, found })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A throwaway certificate authority and one server certificate it signed, all PEM.
///
/// rustls (webpki) refuses a CA certificate used as the server's own certificate, so a plain
/// self-signed leaf could never be trusted by a rustls client; a tiny CA that clients trust
/// (`ca_pem` as their CA file) and a leaf signed by it works with every client.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The CA certificate: give this to clients as their trusted CA file.
    pub ca_pem: String,
    /// The server certificate (leaf only), for the server's cert file.
    pub cert_pem: String,
    /// The server's private key (PKCS#8), for the server's key file. Keep it 0600.
    pub key_pem: String,
}

/// Creates a new CA and a server certificate for `names` (DNS names or IP addresses, e.g.
/// `["localhost", "127.0.0.1"]`), for the quickstart and tests.
pub fn self_signed(names: &[String]) -> Result<SelfSigned> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let leaf_cn = names.first().cloned().unwrap_or_else(|| "localhost".into());

    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("mailkit CA for {leaf_cn}"));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).context("signing the CA")?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().context("generating the server key")?;
    let mut params = CertificateParams::new(names.to_vec())
        .with_context(|| format!("certificate names {names:?}"))?;
    params.distinguished_name.push(DnType::CommonName, leaf_cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the server certificate")?;
    Ok(SelfSigned {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes [`self_signed`] output into `dir` as `ca.pem`, `cert.pem` (0644) and `key.pem`
/// (0600) and returns their paths in that order. Existing files are replaced durably
/// ([`crate::durable::replace_path`]: the key is never readable by others, not even for a moment).
pub fn write_self_signed(
    dir: &Path,
    names: &[String],
) -> Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let s = self_signed(names)?;
    let ca = dir.join("ca.pem");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    for (path, pem, mode) in [
        (&ca, &s.ca_pem, 0o644),
        (&cert, &s.cert_pem, 0o644),
        (&key, &s.key_pem, 0o600),
    ] {
        crate::durable::replace_path(dir, path, pem.as_bytes(), mode)?;
    }
    Ok((ca, cert, key))
}

/// The negotiated TLS parameters of one session, for `Received:` headers (RFC 5321 §4.4, as
/// Postfix writes "using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384") and log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// Protocol version, e.g. `TLSv1.3`.
    pub version: String,
    /// IANA cipher suite name, e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
}

impl TlsInfo {
    /// Reads the parameters of a finished handshake (server or client side).
    pub fn from_state(state: &rustls::CommonState) -> TlsInfo {
        let version = match state.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "unknown".to_string(),
        };
        let cipher = match state.negotiated_cipher_suite() {
            Some(suite) => iana_suite_name(suite.suite()),
            None => "unknown".to_string(),
        };
        TlsInfo { version, cipher }
    }
}

/// rustls names TLS 1.3 suites `TLS13_*`; the IANA registry (and OpenSSL, Postfix) says `TLS_*`.
fn iana_suite_name(suite: rustls::CipherSuite) -> String {
    let name = suite
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{suite:?}"));
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

impl fmt::Display for TlsInfo {
    /// `TLSv1.3 with cipher TLS_AES_256_GCM_SHA384`, the wording Postfix uses in `Received:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} with cipher {}", self.version, self.cipher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_loads_as_server_config() {
        let s = self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(s.ca_pem.contains("BEGIN CERTIFICATE"));
        assert!(s.key_pem.contains("PRIVATE KEY"));
        server_config_from_pem(&s.cert_pem, &s.key_pem).unwrap();
    }

    #[test]
    fn chain_checks_against_its_ca_only() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, _key) = write_self_signed(dir.path(), &["localhost".into()]).unwrap();
        let chain = load_certs(&cert).unwrap();
        check_chain(&chain, "localhost", Some(&ca)).unwrap();
        assert!(check_chain(&chain, "other.example", Some(&ca)).is_err());
        // Not trusted by the public roots.
        assert!(check_chain(&chain, "localhost", None).is_err());
        assert!(check_chain(&[], "localhost", Some(&ca)).is_err());
    }

    #[test]
    fn missing_or_bad_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a pem file\n").unwrap();
        assert!(server_config(&junk, &junk).is_err());
        assert!(server_config(&dir.path().join("none"), &junk).is_err());
        assert!(client_config(Some(&junk)).is_err());
        let err = format!("{:#}", load_certs(&junk).unwrap_err());
        assert!(err.contains("junk.pem"), "{err}");
    }

    #[test]
    fn client_configs_build() {
        client_config(None).unwrap();
        let _ = client_config_no_verify();
        let _ = client_config_pinned(SpkiPin([7; 32]));
    }

    #[test]
    fn pins_parse_in_every_written_form() {
        let hex = "5f1c2b3a00ffee11223344556677889900aabbccddeeff0102030405060708a9";
        let pin: SpkiPin = hex.parse().unwrap();
        assert_eq!(pin.to_string(), hex);
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(colons.parse::<SpkiPin>().unwrap(), pin);
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(pin.bytes());
        assert_eq!(b64.len(), 44);
        assert_eq!(b64.parse::<SpkiPin>().unwrap(), pin);
        assert_eq!(format!("sha256//{b64}").parse::<SpkiPin>().unwrap(), pin);
        assert_eq!(b64.trim_end_matches('=').parse::<SpkiPin>().unwrap(), pin);
        assert_eq!(format!(" {hex}\n").parse::<SpkiPin>().unwrap(), pin);
        for bad in ["", "abc", &hex[..62], &format!("{hex}00"), "zz", "AAAA"] {
            assert!(bad.parse::<SpkiPin>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pin_of_a_certificate_is_the_hash_of_its_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x.example".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pin = SpkiPin::of_certificate(cert.der()).unwrap();
        use rcgen::PublicKeyData;
        assert_eq!(pin, SpkiPin::of_spki(&key.subject_public_key_info()));
        let info = parse_certificate(cert.der()).unwrap();
        assert_eq!(info.spki_sha256, pin.to_string());
        assert!(SpkiPin::of_certificate(b"junk").is_err());
    }

    #[test]
    fn dates() {
        let rfc3339 = |secs| rfc3339(&x509_parser::time::ASN1Time::from_timestamp(secs).unwrap());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parses_a_generated_certificate() {
        let s = self_signed(&["mx.example".into(), "127.0.0.1".into()]).unwrap();
        let der = CertificateDer::from_pem_slice(s.cert_pem.as_bytes()).unwrap();
        let info = parse_certificate(&der).unwrap();
        assert_eq!(info.sans, vec!["mx.example", "127.0.0.1"]);
        assert!(info.subject.contains("mx.example"), "{}", info.subject);
        assert!(info.issuer.contains("mailkit CA"), "{}", info.issuer);
        assert!(info.not_before < info.not_after, "{info:?}");
        assert!(info.not_after.ends_with('Z'), "{info:?}");
    }

    #[test]
    fn garbage_certificates_are_errors() {
        assert!(parse_certificate(b"").is_err());
        assert!(parse_certificate(&[0x30, 0x82, 0xff, 0xff, 0]).is_err());
        assert!(parse_certificate(&[0u8; 64]).is_err());
        let s = self_signed(&["mx.example".into()]).unwrap();
        let der = CertificateDer::from_pem_slice(s.cert_pem.as_bytes()).unwrap();
        // Every truncation of a valid certificate is refused, none panics.
        for len in 0..der.len() {
            assert!(parse_certificate(&der[..len]).is_err(), "{len}");
        }
    }

    #[test]
    fn san_addresses() {
        assert_eq!(
            ip_from_bytes(&[127, 0, 0, 1]),
            Some("127.0.0.1".parse().unwrap())
        );
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(ip_from_bytes(&v6), Some("::1".parse().unwrap()));
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
        assert_eq!(ip_from_bytes(&[]), None);
    }

    #[test]
    fn suite_names_are_iana() {
        assert_eq!(
            iana_suite_name(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384),
            "TLS_AES_256_GCM_SHA384"
        );
        assert_eq!(
            iana_suite_name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        let info = TlsInfo {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_128_GCM_SHA256".into(),
        };
        assert_eq!(
            info.to_string(),
            "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256"
        );
    }
}
