//! DKIM (RFC 6376) for mrelayd: signing keys per domain and selector, signing of outgoing
//! mail, verification of every signature of incoming mail, and key generation for
//! `mrelayd dkim keygen`. The cryptography and canonicalisation are mail-auth's; this module
//! chooses what is signed and how results are reported.
//!
//! - **Keys** ([`Signers::load`]): `[mrelayd.dkim."DOMAIN"] keys = { SELECTOR = "file" }`,
//!   PEM files; the algorithm comes from the key: PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 RSA is
//!   rsa-sha256, PKCS#8 Ed25519 is ed25519-sha256 (RFC 8463). Every key of the From: domain
//!   signs, so a domain with an RSA and an Ed25519 key gets both signatures (RFC 8463 §3
//!   recommends dual signing while verifiers learn Ed25519).
//! - **Signing** ([`Signers::sign`]): relaxed/relaxed (RFC 6376 §3.4.2, §3.4.4), no `l=`
//!   (§8.2: a body length lets anyone append), the header fields of [`SIGNED_HEADERS`]
//!   (`From` twice: the second, absent instance makes an added From: break the signature,
//!   §5.4.2; the others that are absent are signed as absent too, mail-auth's default) and
//!   `List-*` fields only when present (a list manager adds its own later).
//! - **Verification** ([`Verifier::verify`]): every DKIM-Signature, keys looked up with the
//!   shared resolver settings ([`crate::dns::resolver_setup`]: the same server, port, timeouts
//!   and attempts as every other look-up); results as RFC 8601 [`MethodResult`]s. A DNS
//!   temporary failure is `temperror` (RFC 6376 §6.1.2), never a rejection.
//! - **Keys made** ([`generate`]): Ed25519 by ring (through mail-auth), RSA by the `rsa` crate
//!   (RustCrypto, through mail-auth's `generate` feature; ring cannot generate RSA keys), and
//!   the DNS TXT record to publish (RFC 6376 §3.6.1; RSA as SubjectPublicKeyInfo, which every
//!   verifier reads, Ed25519 as the raw 32-octet key, RFC 8463 §4.2).
//!
//! The whole message is in memory while it is signed or verified (mail-auth parses a slice);
//! `max_message_size` bounds it, and the caller bounds how many are at once
//! ([`crate::relay::sender_auth`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::common::verify::VerifySignature as _;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::{AuthenticatedMessage, DkimOutput, DkimResult, MessageAuthenticator};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivateKeyDer;
use serde::Deserialize;

use crate::authres::MethodResult;

/// Header fields signed when present, in this order; `From` is listed twice (over-signed,
/// RFC 6376 §5.4.2). `List-*` fields are added when the message has them.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// The List-* fields of RFC 2369 and RFC 2919, signed only when present.
pub const LIST_HEADERS: &[&str] = &[
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];

/// `[mrelayd.dkim."DOMAIN"]`: the signing keys of one domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainKeys {
    /// Selector → private key file (PEM; relative to the config file's directory).
    pub keys: BTreeMap<String, PathBuf>,
}

/// The algorithm of a key, as `mrelayd dkim keygen --algorithm` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    /// rsa-sha256 (RFC 6376 §3.3.1).
    Rsa,
    /// ed25519-sha256 (RFC 8463).
    Ed25519,
}

/// One loaded signing key.
struct Key {
    domain: String,
    selector: String,
    key: DkimKey,
}

/// Every configured signing key, by domain (lower case).
#[derive(Default)]
pub struct Signers {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Signers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .keys
            .iter()
            .map(|k| format!("{}._domainkey.{}", k.selector, k.domain))
            .collect();
        f.debug_struct("Signers").field("keys", &names).finish()
    }
}

/// Reads a file holding a secret (a DKIM key, the SRS secret): refused when group or others
/// may read it (mode 0600 wanted). The error names the file.
pub fn read_private_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{}: readable by group or others (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads one PEM private key and tells its algorithm from its form (module doc).
/// A key readable by group or others is refused, as OpenDKIM's `RequireSafeKeys` does: the
/// key signs for the whole domain.
pub fn load_key(path: &Path) -> Result<(Algorithm, DkimKey), String> {
    let pem = read_private_file(path)?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{}: no PEM private key ({e})", path.display()))?;
    let bad = |e: mail_auth::Error| format!("{}: {}", path.display(), key_error(&e));
    match der {
        PrivateKeyDer::Pkcs1(_) => RsaKey::<Sha256>::from_key_der(der)
            .map(|k| (Algorithm::Rsa, DkimKey::Rsa(k)))
            .map_err(bad),
        PrivateKeyDer::Pkcs8(p8) => {
            match Ed25519Key::from_pkcs8_maybe_unchecked_der(p8.secret_pkcs8_der()) {
                Ok(k) => Ok((Algorithm::Ed25519, DkimKey::Ed25519(k))),
                Err(_) => RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(p8))
                    .map(|k| (Algorithm::Rsa, DkimKey::Rsa(k)))
                    .map_err(bad),
            }
        }
        _ => Err(format!(
            "{}: neither an RSA nor an Ed25519 key (PKCS#1 or PKCS#8 PEM)",
            path.display()
        )),
    }
}

/// Why a key was refused, in words: ring (which signs) refuses RSA keys outside 2048 to 8192
/// bits, and mail-auth passes on only its terse reason (`TooSmall`).
fn key_error(e: &mail_auth::Error) -> String {
    use mail_auth::common::crypto::CryptoError;
    match e {
        mail_auth::Error::Crypto(CryptoError::Library(why)) if why == "TooSmall" => {
            "an RSA key under 2048 bits: mrelayd signs with 2048 to 8192 bit keys (make one \
             with mrelayd dkim keygen)"
                .into()
        }
        mail_auth::Error::Crypto(CryptoError::Library(why)) if why == "TooLarge" => {
            "an RSA key over 8192 bits: mrelayd signs with 2048 to 8192 bit keys".into()
        }
        e => e.to_string(),
    }
}

impl Signers {
    /// Loads every key of `[mrelayd.dkim]`; an unreadable or unusable key is an error naming
    /// its file (checked at start, so a typo never silently stops signing).
    pub fn load(domains: &BTreeMap<String, DomainKeys>) -> Result<Signers, String> {
        let mut keys = Vec::new();
        for (domain, dk) in domains {
            for (selector, path) in &dk.keys {
                let (_, key) = load_key(path)
                    .map_err(|e| format!("mrelayd.dkim.{domain:?}.keys.{selector}: {e}"))?;
                keys.push(Key {
                    domain: domain.trim_end_matches('.').to_ascii_lowercase(),
                    selector: selector.clone(),
                    key,
                });
            }
        }
        Ok(Signers { keys })
    }

    /// Whether `domain` (lower case) has a key.
    pub fn has_domain(&self, domain: &str) -> bool {
        self.keys.iter().any(|k| k.domain == domain)
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The DKIM-Signature header fields (CRLF-terminated, to prepend) for `message`, one per
    /// key of its From: domain; empty when that domain has no key or there is no From:.
    pub fn sign(&self, message: &[u8]) -> Result<String, String> {
        if self.keys.is_empty() {
            return Ok(String::new());
        }
        let Some(domain) = from_domain(message) else {
            return Ok(String::new());
        };
        let mut headers: Vec<String> = SIGNED_HEADERS.iter().map(|h| h.to_string()).collect();
        headers.extend(
            LIST_HEADERS
                .iter()
                .filter(|h| has_field(message, h))
                .map(|h| h.to_string()),
        );
        let mut out = String::new();
        for k in self.keys.iter().filter(|k| k.domain == domain) {
            let signature = DkimSigner::from_key(SameKey(&k.key))
                .domain(k.domain.clone())
                .selector(k.selector.clone())
                .headers(headers.clone())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed)
                .sign(message)
                .map_err(|e| format!("DKIM signing for {domain} ({}): {e}", k.selector))?;
            out.push_str(&signature.to_header());
        }
        Ok(out)
    }
}

/// A borrowed [`DkimKey`] as a signing key (mail-auth's signer takes its key by value).
struct SameKey<'a>(&'a DkimKey);

impl mail_auth::common::crypto::SigningKey for SameKey<'_> {
    type Hasher = Sha256;
    fn sign(&self, input: impl mail_auth::common::headers::Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }
    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        self.0.algorithm()
    }
}

/// The domain of the (first) From: address, lower case, as DKIM's `d=` is chosen.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let parsed = AuthenticatedMessage::parse(message)?;
    let from = parsed.from();
    let (_, domain) = from.rsplit_once('@')?;
    // `a@.` has no domain once its root dot is gone (found by the authres fuzz target).
    let domain = domain.trim_end_matches('.');
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// Whether the header section of `message` has a field named `name`.
pub fn has_field(message: &[u8], name: &str) -> bool {
    let header = &message[..crate::rfc5322::header_end(message).header];
    crate::rfc5322::Fields::new(header).any(|f| f.is(name.as_bytes()))
}

/// The longest the DKIM checks of one message may take: then `dkim=temperror`.
pub const VERIFY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Verifies DKIM signatures with the shared resolver settings.
pub struct Verifier {
    auth: MessageAuthenticator,
}

impl Verifier {
    /// A verifier asking `server` (the `resolver` key), else the system's resolver.
    pub fn new(server: Option<SocketAddr>) -> Result<Verifier, String> {
        let (config, mut opts) = crate::dns::resolver_setup(server)?;
        // mail-auth's SPF `exists:` is its only address look-up by lookup_ip (a: and mx: ask
        // A or AAAA by the client's family): A only, as RFC 7208 §5.7 says ("even when the
        // connection type is IPv6"); hickory's default would take an AAAA-only name.
        opts.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4Only;
        let auth = MessageAuthenticator::new(config, opts)
            .map_err(|e| format!("setting up the DNS resolver: {e}"))?;
        Ok(Verifier { auth })
    }

    /// mail-auth's authenticator with this resolver, for the other checks that look up keys
    /// the same way (ARC in [`crate::arc`], SPF and DMARC in [`crate::relay::spf_dmarc`]).
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.auth
    }

    /// One result per DKIM-Signature of `message` (none when it has none, RFC 8601 §2.7.1:
    /// `dkim=none` is written then).
    pub async fn verify(&self, message: &[u8]) -> Vec<MethodResult> {
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            return vec![MethodResult::new("dkim", "permerror").reason("unparsable message")];
        };
        if parsed.dkim_headers.is_empty() && parsed.errors.is_empty() {
            return vec![MethodResult::new("dkim", "none")];
        }
        match self.outputs(&parsed).await {
            Ok(outputs) => results(&outputs),
            Err(r) => vec![r],
        }
    }

    /// mail-auth's output for each DKIM-Signature of `parsed` (DMARC needs them as they are),
    /// or the one `temperror` result when they took over [`VERIFY_DEADLINE`].
    pub async fn outputs<'x>(
        &self,
        parsed: &'x AuthenticatedMessage<'x>,
    ) -> Result<Vec<DkimOutput<'x>>, MethodResult> {
        // Each key look-up has the resolver's timeouts; many signatures on silent servers
        // must still end well inside the client's wait for the reply to DATA (RFC 5321
        // §4.5.3.2.6: 10 minutes).
        match tokio::time::timeout(VERIFY_DEADLINE, self.auth.verify_dkim(parsed)).await {
            Ok(o) => Ok(o.into_iter().map(|o| refuse_rsa_sha1(parsed, o)).collect()),
            Err(_) => {
                let why = format!("verification took over {} s", VERIFY_DEADLINE.as_secs());
                Err(MethodResult::new("dkim", "temperror").reason(why))
            }
        }
    }
}

/// RFC 8301 §3.1: "rsa-sha1 MUST NOT be used for signing or verifying". mail-auth still
/// verifies it (ring's legacy SHA-1), so a signature of that algorithm is made a `permerror`
/// here, before DMARC or the header see it: it never counts as a pass. [`results`] writes it
/// as `dkim=policy` (RFC 8601 §2.7.1: signed, but not acceptable to us).
fn refuse_rsa_sha1<'x>(
    parsed: &'x AuthenticatedMessage<'x>,
    output: DkimOutput<'x>,
) -> DkimOutput<'x> {
    use mail_auth::common::crypto::Algorithm;
    let Some(sha1) = output
        .signature()
        .filter(|s| s.algorithm() == Algorithm::RsaSha1)
        .map(|s| s as *const mail_auth::dkim::Signature)
    else {
        return output;
    };
    let refused = DkimOutput::perm_err(mail_auth::Error::Dkim(
        mail_auth::dkim::DkimError::UnsupportedAlgorithm,
    ));
    // The output's signature is one of the message's (same address), borrowed for 'x.
    match parsed
        .dkim_headers
        .iter()
        .map(|h| &h.header)
        .find(|s| std::ptr::eq(*s, sha1))
    {
        Some(sig) => refused.with_signature(sig),
        None => refused,
    }
}

/// The RFC 8601 results of mail-auth's DKIM outputs, one per signature.
pub fn results(outputs: &[DkimOutput<'_>]) -> Vec<MethodResult> {
    outputs
        .iter()
        .map(|o| {
            let sha1 = o
                .signature()
                .is_some_and(|s| s.algorithm() == mail_auth::common::crypto::Algorithm::RsaSha1);
            let (result, reason) = match o.result() {
                DkimResult::PermError(_) if sha1 => (
                    "policy",
                    Some("rsa-sha1 is not accepted (RFC 8301 3.1)".to_string()),
                ),
                other => result_words(other),
            };
            let mut r = MethodResult::new("dkim", result);
            if let Some(reason) = reason {
                r = r.reason(reason);
            }
            if let Some(sig) = o.signature() {
                r = r
                    .prop("header.d", sig.domain())
                    .prop("header.s", sig.selector());
                let algo = match sig.algorithm() {
                    mail_auth::common::crypto::Algorithm::Ed25519Sha256 => "ed25519-sha256",
                    mail_auth::common::crypto::Algorithm::RsaSha256 => "rsa-sha256",
                    mail_auth::common::crypto::Algorithm::RsaSha1 => "rsa-sha1",
                };
                r = r.prop("header.a", algo);
            }
            r
        })
        .collect()
}

/// The RFC 8601 §2.7.1 result keyword of a mail-auth result and the reason, if any. A body
/// hash mismatch is `fail` (RFC 6376 §6.1.3: "PERMFAIL (body hash did not verify)"), where
/// mail-auth says neutral.
pub fn result_words(r: &DkimResult) -> (&'static str, Option<String>) {
    use mail_auth::dkim::DkimError;
    match r {
        DkimResult::Pass => ("pass", None),
        DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            ("fail", Some("body hash did not verify".into()))
        }
        DkimResult::Neutral(e) => ("neutral", Some(e.to_string())),
        DkimResult::Fail(e) => ("fail", Some(e.to_string())),
        DkimResult::PermError(e) => ("permerror", Some(e.to_string())),
        DkimResult::TempError(e) => ("temperror", Some(e.to_string())),
        DkimResult::None => ("none", None),
    }
}

/// The PKCS#8 v1 form (RFC 8410 §7: the seed alone) of ring's PKCS#8 v2 Ed25519 document,
/// whose `[1]` public key OpenSSL 3 and python's cryptography cannot read: the v1 file is
/// one an admin can share with OpenDKIM or check with `openssl pkey`. ring's document is
/// fixed: a 16-byte prefix, the 32-byte seed, the public key.
fn ed25519_pkcs8_v1(v2: &[u8]) -> Result<Vec<u8>, String> {
    const V2_PREFIX: [u8; 16] = [
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    match (v2.get(..16), v2.get(16..48)) {
        (Some(prefix), Some(seed)) if prefix == V2_PREFIX => Ok([&V1_PREFIX[..], seed].concat()),
        _ => Err("internal: unexpected Ed25519 PKCS#8 document from ring".into()),
    }
}

/// A new key: its PEM private key and the `p=`-tagged TXT record value to publish.
#[derive(Debug)]
pub struct NewKey {
    /// The private key file's content (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`).
    pub pem: String,
    /// `v=DKIM1; k=...; p=...` (RFC 6376 §3.6.1).
    pub txt: String,
}

/// Generates a key of `algorithm` (`bits` for RSA: 2048 to 4096, what ring signs with; RFC
/// 8301 §3.2 asks for at least 1024, and 2048 is the common floor now).
pub fn generate(algorithm: Algorithm, bits: usize) -> Result<NewKey, String> {
    use mail_auth::dkim::generate::DkimKeyPair;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    match algorithm {
        Algorithm::Rsa => {
            if !(2048..=4096).contains(&bits) {
                return Err(format!("--bits {bits}: RSA keys are 2048 to 4096 bits"));
            }
            let pair = DkimKeyPair::generate_rsa(bits).map_err(|e| e.to_string())?;
            Ok(NewKey {
                pem: pem("RSA PRIVATE KEY", pair.private_key()),
                txt: format!("v=DKIM1; k=rsa; p={}", b64(&rsa_spki(pair.public_key()))),
            })
        }
        Algorithm::Ed25519 => {
            let pair = DkimKeyPair::generate_ed25519().map_err(|e| e.to_string())?;
            Ok(NewKey {
                pem: pem("PRIVATE KEY", &ed25519_pkcs8_v1(pair.private_key())?),
                txt: format!("v=DKIM1; k=ed25519; p={}", b64(pair.public_key())),
            })
        }
    }
}

/// `der` as a PEM block (RFC 7468), 64 columns.
fn pem(label: &str, der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// A DER length.
fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

/// A DER TLV.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// A PKCS#1 RSAPublicKey wrapped as SubjectPublicKeyInfo (RFC 5280 §4.1.2.7, RFC 3279
/// §2.3.1: rsaEncryption with NULL parameters).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut content = ALGORITHM.to_vec();
    content.extend(der(0x03, &bits));
    der(0x30, &content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    const MSG: &[u8] = b"From: Alice <alice@Example.ORG>\r\nTo: bob@example.net\r\n\
        Subject: hi\r\nList-Id: <l.example.org>\r\n\r\nHello.\r\n";

    #[test]
    fn from_domain_and_fields() {
        assert_eq!(from_domain(MSG).as_deref(), Some("example.org"));
        assert_eq!(from_domain(b"Subject: x\r\n\r\n"), None);
        assert!(has_field(MSG, "list-id"));
        assert!(!has_field(MSG, "List-Post"));
        assert!(!has_field(
            b"Subject: x\r\n\r\nList-Post: body\r\n",
            "List-Post"
        ));
    }

    fn signers(dir: &Path, algos: &[(Algorithm, &str)]) -> Signers {
        let mut keys = BTreeMap::new();
        for (algo, sel) in algos {
            let k = generate(*algo, 2048).expect("keygen");
            let p = dir.join(format!("{sel}.pem"));
            std::fs::write(&p, k.pem).expect("write");
            let mode = std::fs::Permissions::from_mode(0o644);
            std::fs::set_permissions(&p, mode).expect("chmod");
            assert!(load_key(&p)
                .err()
                .expect("refused")
                .contains("readable by group or others"));
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
            assert_eq!(load_key(&p).expect("load").0, *algo);
            keys.insert(sel.to_string(), p);
        }
        let mut domains = BTreeMap::new();
        domains.insert("example.org".to_string(), DomainKeys { keys });
        Signers::load(&domains).expect("load")
    }

    #[test]
    fn signs_with_every_key_of_the_from_domain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = signers(
            dir.path(),
            &[(Algorithm::Rsa, "r1"), (Algorithm::Ed25519, "e1")],
        );
        let h = s.sign(MSG).expect("sign");
        assert_eq!(h.matches("DKIM-Signature:").count(), 2, "{h}");
        assert!(
            h.contains("a=rsa-sha256") && h.contains("a=ed25519-sha256"),
            "{h}"
        );
        assert!(h.contains("c=relaxed/relaxed"), "{h}");
        assert!(!h.contains("l="), "{h}");
        let unfolded: String = h.split_whitespace().collect();
        assert!(
            unfolded.contains("h=List-Id:Subject:To:From:"),
            "{unfolded}"
        );
        assert!(
            unfolded.contains(":From:Cc:"),
            "From over-signed: {unfolded}"
        );
        assert!(!unfolded.contains("List-Post"), "{unfolded}");
        // Another domain's mail is not signed.
        assert_eq!(
            s.sign(b"From: x@other.example\r\n\r\nb\r\n").expect("sign"),
            ""
        );
    }

    #[test]
    fn bad_keys_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k.pem");
        std::fs::write(&p, "not a key").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = load_key(&p).err().expect("refused");
        assert!(e.contains("k.pem"), "{e}");
        assert!(generate(Algorithm::Rsa, 512).is_err());
    }

    #[test]
    fn spki_wraps_pkcs1() {
        let s = rsa_spki(&[0x30, 0x03, 0x02, 0x01, 0x05]);
        assert_eq!(&s[..2], &[0x30, 0x17]);
        assert_eq!(&s[17..], &[0x03, 0x06, 0x00, 0x30, 0x03, 0x02, 0x01, 0x05]);
        let mut long = Vec::new();
        der_len(300, &mut long);
        assert_eq!(long, vec![0x82, 0x01, 0x2c]);
    }
}
