//! Sender authentication at the end of DATA, before the commit (issue 15): DKIM signing of
//! mail from our own users, DKIM verification of mail from outside and the
//! `Authentication-Results:` field saying what it found. The daemon calls [`SenderAuth::
//! end_of_data`] once per message; SPF and DMARC ([`super::spf_dmarc`]) add their results to
//! the same [`AuthResults`] here, and may refuse the message. ARC ([`crate::arc`],
//! `arc_verify`) is checked on the same messages as DKIM, with the same resolver: `arc=` with
//! `smtp.remote-ip`.
//!
//! Why here, on the spooled file, and not in the outbound client: the signature is made once,
//! when the message is accepted, so every delivery attempt (and local delivery) sends the same
//! signed bytes, and `msg/ID` stays the one source of truth ([`crate::queue`]). The new
//! header fields go at the top of the message, above our Received: line (RFC 8601 §5: "added
//! at the top").
//!
//! - **Signed** ([`crate::dkim::Signers::sign`]): mail from an authenticated client or a
//!   trusted network (`trusted_networks`), when its From: domain has keys in
//!   `[mrelayd.dkim."DOMAIN"]`. Mail from anyone else is never signed, whatever its From: says.
//! - **Verified** ([`crate::dkim::Verifier::verify`]): mail on the `smtp` listener from
//!   everyone else, unauthenticated clients outside `trusted_networks` (`dkim_verify`, on by
//!   default); our own users' mail, signed or relayed out, gets no verdict to carry along. Every `Authentication-Results:` field claiming our
//!   authserv-id is removed first ([`crate::authres::strip_ours`]), then ours is added.

use std::net::SocketAddr;

use mail_auth::AuthenticatedMessage;

use super::spf_dmarc;
use crate::authres::{self, AuthResults, MethodResult};
use crate::dkim::{Signers, Verifier};
use crate::log;
use crate::queue::Incoming;
use crate::smtp::reply::Reply;

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    /// Verify its signatures and add Authentication-Results: (the `smtp` listener).
    pub verify: bool,
    /// Sign it, if its From: domain has keys (an authenticated or trusted client).
    pub sign: bool,
    /// The SMTP identities for SPF and DMARC (with `verify`; None: the client's address is
    /// not known, and neither runs).
    pub client: Option<spf_dmarc::Client>,
}

/// The daemon's sender-authentication setup: keys, resolver, authserv-id.
#[derive(Debug)]
pub struct SenderAuth {
    authserv_id: String,
    signers: Signers,
    verifier: Option<VerifierSlot>,
    /// `dkim_verify`.
    dkim_verify: bool,
    /// Verify ARC chains (`arc_verify`, [`crate::arc`]).
    arc: bool,
    /// `[mrelayd.spf_dmarc]`.
    policy: spf_dmarc::Config,
    /// Our host name (SPF's `%{r}`, RFC 7208 §7.3).
    hostname: String,
    /// Permits to hold a whole message in memory ([`WHOLE_MESSAGE_JOBS`]).
    whole: tokio::sync::Semaphore,
}

/// The verifier (mail-auth's resolver has no Debug).
struct VerifierSlot(Verifier);

impl std::fmt::Debug for VerifierSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

impl SenderAuth {
    /// From the config: loads every DKIM key (an unusable key is an error naming it) and sets
    /// up the verifier's resolver with the shared settings (`[mrelayd.remote] resolver`).
    pub fn new(
        hostname: &str,
        relay: &super::RelayConfig,
        resolver: Option<SocketAddr>,
    ) -> anyhow::Result<SenderAuth> {
        let signers =
            Signers::load(&relay.dkim).map_err(|e| crate::exit::fail(crate::exit::CONFIG, e))?;
        let policy = relay.spf_dmarc.clone();
        let verifier = if relay.dkim_verify || relay.arc_verify || policy.spf || policy.dmarc {
            match Verifier::new(resolver) {
                Ok(v) => Some(VerifierSlot(v)),
                // Like remote delivery without a resolver: a warning, and temperror results.
                Err(e) => {
                    log::line(format_args!("DKIM, SPF and DMARC verification: {e}"));
                    None
                }
            }
        } else {
            None
        };
        Ok(SenderAuth {
            authserv_id: relay
                .authserv_id
                .clone()
                .unwrap_or_else(|| hostname.to_string()),
            signers,
            verifier,
            dkim_verify: relay.dkim_verify,
            arc: relay.arc_verify,
            policy,
            hostname: hostname.to_string(),
            whole: tokio::sync::Semaphore::new(WHOLE_MESSAGE_JOBS),
        })
    }

    /// Whether verification runs at all (`dkim_verify`, `arc_verify`, or SPF or DMARC).
    pub fn verifies(&self) -> bool {
        self.verifier.is_some()
    }

    /// Whether any signing key is configured.
    pub fn signs(&self) -> bool {
        !self.signers.is_empty()
    }

    /// The checks on the message in `incoming`, with the new header fields written on top
    /// ([`Incoming::rewrite_header`]: the body is copied on disk, not held). Only the header
    /// section is read, unless a signature or an ARC chain is to be verified or made: then the whole message
    /// is, by at most [`WHOLE_MESSAGE_JOBS`] sessions at once (mail-auth works on a slice), so
    /// memory stays bounded by that many `max_message_size`s. `Ok(Some(reply))`: SPF or DMARC
    /// refuse the message ([`spf_dmarc::decide`]) and nothing is rewritten. An error (reading
    /// or rewriting the queue file) refuses the message with a temporary reply, as any queue
    /// error does; a signing failure is logged and the message goes unsigned (the key was
    /// checked at start).
    pub async fn end_of_data(
        &self,
        incoming: &mut Incoming,
        checks: &Checks,
        who: &str,
    ) -> std::io::Result<Option<Reply>> {
        let verifier = self.verifier.as_ref().filter(|_| checks.verify);
        let sign = checks.sign && !self.signers.is_empty();
        if verifier.is_none() && !sign {
            return Ok(None);
        }
        let head = incoming.header_section(MAX_HEADER)?;
        let complete = head.len() < MAX_HEADER;
        let signed = verifier.is_some()
            && self.dkim_verify
            && crate::dkim::has_field(&head, "DKIM-Signature");
        let arc = verifier.is_some() && self.arc;
        let chained = arc
            && crate::arc::ARC_FIELDS
                .iter()
                .any(|f| crate::dkim::has_field(&head, f));
        let mut probe = head.clone();
        probe.extend_from_slice(b"\r\n\r\n");
        let signing =
            sign && crate::dkim::from_domain(&probe).is_some_and(|d| self.signers.has_domain(&d));
        let mut top = String::new();
        let whole = if signed || signing || chained {
            let permit = self.whole.acquire().await;
            Some((permit, incoming.content()?))
        } else {
            None
        };
        if let (true, Some((_, message))) = (signing, whole.as_ref()) {
            match self.signers.sign(message) {
                Ok(h) => top.push_str(&h),
                Err(e) => log::line(format_args!("{who}: {e}")),
            }
        }
        let mut reply = None;
        if let Some(VerifierSlot(v)) = verifier {
            let mut ar = AuthResults::new(&self.authserv_id);
            let bytes: &[u8] = whole.as_ref().map_or(&probe, |(_, m)| m);
            let parsed = AuthenticatedMessage::parse(bytes);
            let mut dkim = Vec::new();
            match (&parsed, signed) {
                _ if !self.dkim_verify => {}
                // RFC 8601 §2.7.1: "none: The message was not signed."
                (_, false) => ar.push(MethodResult::new("dkim", "none")),
                (None, true) => {
                    ar.push(MethodResult::new("dkim", "permerror").reason("unparsable message"))
                }
                (Some(p), true) if p.dkim_headers.is_empty() && p.errors.is_empty() => {
                    ar.push(MethodResult::new("dkim", "none"))
                }
                (Some(p), true) => match v.outputs(p).await {
                    Ok(outputs) => {
                        ar.results.extend(crate::dkim::results(&outputs));
                        dkim = outputs;
                    }
                    Err(r) => ar.push(r),
                },
            }
            if arc {
                let ip = checks.client.as_ref().map(|c| c.ip);
                ar.push(match whole.as_ref().filter(|_| chained) {
                    Some((_, message)) => crate::arc::verify(v.authenticator(), message, ip).await,
                    // RFC 8617 §4.4: no ARC header fields, chain validation status "none".
                    None => {
                        let none = MethodResult::new("arc", "none");
                        match ip {
                            Some(ip) => none.prop("smtp.remote-ip", ip.to_string()),
                            None => none,
                        }
                    }
                });
            }
            let policy = &self.policy;
            if let (true, Some(client)) = (policy.spf || policy.dmarc, checks.client.as_ref()) {
                let out = spf_dmarc::check(
                    v.authenticator(),
                    policy,
                    &self.hostname,
                    client,
                    parsed.as_ref(),
                    &dkim,
                )
                .await;
                ar.results.extend(out.results);
                reply = out.reply;
            }
            let header = ar.header();
            log::line(format_args!(
                "{who}: {}{}",
                header
                    .trim_end()
                    .replace("\r\n\t", " ")
                    .trim_start_matches("Authentication-Results: "),
                if reply.is_some() { " (refused)" } else { "" }
            ));
            top.push_str(&header);
        }
        if reply.is_some() {
            return Ok(reply);
        }
        let stripped = if verifier.is_some() && complete {
            authres::strip_ours(&head, &self.authserv_id)
        } else {
            None
        };
        if top.is_empty() && stripped.is_none() {
            return Ok(None);
        }
        let mut new = top.into_bytes();
        new.extend_from_slice(stripped.as_deref().unwrap_or(&head));
        incoming.rewrite_header(&new, head.len() as u64)?;
        Ok(None)
    }
}

/// The longest header section looked at (longer ones are checked in their first MiB).
pub const MAX_HEADER: usize = 1024 * 1024;

/// Sessions holding a whole message in memory for DKIM at once (others wait their turn).
pub const WHOLE_MESSAGE_JOBS: usize = 4;

/// What `mrelayd dkim keygen` was asked for.
#[derive(Debug, Clone)]
pub struct Keygen {
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`).
    pub selector: String,
    /// RSA or Ed25519.
    pub algorithm: crate::dkim::Algorithm,
    /// RSA modulus size.
    pub bits: usize,
    /// Where to write the key; unset: the config's path for this domain and selector, else
    /// `<state_dir>/dkim/DOMAIN.SELECTOR.pem`.
    pub output: Option<std::path::PathBuf>,
}

/// `mrelayd dkim keygen`: writes a new private key (0600, fsynced, never over an existing
/// file; given to the `[run_as]` user when run as root) and prints the DNS TXT record to
/// publish (RFC 6376 §3.6.2.2: `SELECTOR._domainkey.DOMAIN`) and the config lines.
pub fn keygen(
    config: &crate::config::Config,
    relay: &super::RelayConfig,
    k: &Keygen,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    use crate::exit;
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let domain = k.domain.trim_end_matches('.').to_ascii_lowercase();
    let valid = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    if !valid(&domain) || !valid(&k.selector) {
        return Err(exit::fail(
            exit::USAGE,
            format!("{domain:?} {:?}: not a domain and selector", k.selector),
        ));
    }
    let configured = relay
        .dkim
        .get(&domain)
        .and_then(|d| d.keys.get(&k.selector))
        .cloned();
    let path = k.output.clone().or(configured.clone()).unwrap_or_else(|| {
        config
            .state_dir
            .join("dkim")
            .join(format!("{domain}.{}.pem", k.selector))
    });
    let key = crate::dkim::generate(k.algorithm, k.bits).map_err(|e| exit::fail(exit::USAGE, e))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    std::fs::create_dir_all(&dir)
        .map_err(|e| exit::fail(exit::CANTCREAT, format!("{}: {e}", dir.display())))?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(key.pem.as_bytes())?;
        if crate::os::euid() == 0 {
            if let Some(run_as) = &config.run_as {
                let (uid, gid) = crate::os::resolve_ids(&run_as.user, run_as.group.as_deref())?;
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
            }
        }
        f.sync_all()?;
        crate::durable::fsync_dir(&dir)
    };
    write().map_err(|e| {
        let why = match e.kind() {
            // A key in use must never be replaced by accident: its DNS record is published.
            std::io::ErrorKind::AlreadyExists => {
                "a key is there already (remove it first, or choose -o FILE or another selector)"
                    .to_string()
            }
            _ => e.to_string(),
        };
        exit::fail(exit::CANTCREAT, format!("{}: {why}", path.display()))
    })?;
    let algo = match k.algorithm {
        crate::dkim::Algorithm::Rsa => format!("rsa, {} bits", k.bits),
        crate::dkim::Algorithm::Ed25519 => "ed25519".to_string(),
    };
    // A TXT character-string holds 255 octets (RFC 1035 §3.3.14); longer records are split.
    let strings: Vec<String> = key
        .txt
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    writeln!(out, "wrote {} ({algo})", path.display())?;
    writeln!(out, "Publish this DNS record:")?;
    writeln!(
        out,
        "{}._domainkey.{domain}. IN TXT {}",
        k.selector,
        strings.join(" ")
    )?;
    if configured.as_ref() != Some(&path) {
        writeln!(out, "and add to the configuration:")?;
        writeln!(out, "[mrelayd.dkim.\"{domain}\"]")?;
        writeln!(
            out,
            "keys = {{ {} = {:?} }}",
            k.selector,
            path.display().to_string()
        )?;
    }
    Ok(())
}
