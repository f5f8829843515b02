//! SRS in mrelayd ([`crate::srs`] does the addresses): the `[mrelayd.srs]` section, the
//! forward rewrite of the envelope sender of forwarded mail, and the way back.
//!
//! ```toml
//! [mrelayd.srs]
//! enable = true
//! secret_file = "/etc/mailkit/srs.secret"  # 0600; one secret a line, the first signs
//!                                          # (postsrsd's file works as it is)
//! domain = "example.org"                   # default: the first of [users] domains
//! max_age_days = 21
//! ```
//! Forward: a copy that leaves for a remote domain because a recipient of ours (an alias, an
//! SRS address, a Sieve `redirect` in mrelayd's own local delivery) sends it there goes out
//! with `MAIL FROM:<SRS0=...@domain>`, so SPF at the next hop (RFC 7208 §2.4) checks our
//! domain's record. The null sender, senders in a local domain or the SRS domain, and mail
//! relayed for a client (its recipient is not ours) keep their sender.
//!
//! Reverse: `RCPT TO:<SRS0=...@domain>` (or SRS1) with a good hash and an unexpired timestamp
//! resolves to the original address (relayed there, or delivered if it is local); a bad hash,
//! an expired or malformed one is refused at RCPT with 550 5.1.1, so no bounce to a forged
//! address is ever accepted (no backscatter).

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::mda::send::{Sent, Submit};
use crate::smtp::command::split_address as split;

/// The `[mrelayd.srs]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SrsConfig {
    /// Rewrite senders of forwarded mail and accept SRS addresses back.
    pub enable: bool,
    /// The secrets, one a line (the first signs, every one verifies); mode 0600.
    pub secret_file: Option<PathBuf>,
    /// The domain of our SRS addresses; unset: the first local domain (else the hostname).
    pub domain: Option<String>,
    /// Largest age of an SRS0 address accepted back, in days.
    pub max_age_days: u64,
}

impl Default for SrsConfig {
    fn default() -> Self {
        SrsConfig {
            enable: false,
            secret_file: None,
            domain: None,
            max_age_days: crate::srs::DEFAULT_MAX_AGE_DAYS,
        }
    }
}

/// The rewriter `config` asks for (`None` when off); `default_domain` is the first local
/// domain. A missing, unreadable, empty or group/other-readable secret file is an error
/// naming the key and the file (the caller makes it exit 78).
pub fn load(config: &SrsConfig, default_domain: &str) -> Result<Option<crate::srs::Srs>, String> {
    load_keyed(config, default_domain).map_err(|(key, why)| format!("mrelayd.srs.{key}: {why}"))
}

/// [`load`], its error as the key of `[mrelayd.srs]` it is about and why, so the start-time
/// checks ([`super::checks`]) can name the file's line.
pub fn load_keyed(
    config: &SrsConfig,
    default_domain: &str,
) -> Result<Option<crate::srs::Srs>, (&'static str, String)> {
    if !config.enable {
        return Ok(None);
    }
    let path = config
        .secret_file
        .as_ref()
        .ok_or(("enable", "enable = true needs secret_file".to_string()))?;
    let text = crate::dkim::read_private_file(path).map_err(|e| ("secret_file", e))?;
    let secrets = crate::srs::parse_secrets(&text);
    if secrets.is_empty() {
        return Err((
            "secret_file",
            format!("{}: no SRS secret (the file is empty)", path.display()),
        ));
    }
    let domain = config.domain.as_deref().unwrap_or(default_domain);
    let key = if config.domain.is_some() {
        "domain"
    } else {
        "enable"
    };
    crate::srs::Srs::new(secrets, domain, config.max_age_days)
        .map(Some)
        .map_err(|e| (key, e))
}

/// Whether `address` (local@domain) is an SRS address at our SRS domain.
pub fn is_ours(srs: &crate::srs::Srs, address: &str) -> bool {
    let (local, domain) = split(address);
    domain
        .trim_end_matches('.')
        .eq_ignore_ascii_case(srs.domain())
        && crate::srs::is_srs(&crate::smtp::command::unquote_local(local))
}

/// Reverses `address` if it is an SRS address at our SRS domain: `None` if it is not one,
/// else the original address or why it is refused.
pub fn reverse(srs: &crate::srs::Srs, address: &str) -> Option<Result<String, crate::srs::Error>> {
    if !is_ours(srs, address) {
        return None;
    }
    let local = crate::smtp::command::unquote_local(split(address).0);
    Some(srs.reverse(&local, crate::clock::now()))
}

/// The sender a copy goes out with: `sender` rewritten to SRS when `forwarded` (the copy goes
/// to a remote domain because of one of our recipients) and `sender` is neither `<>` nor
/// ours (`is_local`: a local domain; the SRS domain counts as ours too).
pub fn forward_sender(
    srs: &crate::srs::Srs,
    sender: &str,
    forwarded: bool,
    is_local: impl Fn(&str) -> bool,
) -> String {
    if !forwarded || sender.is_empty() {
        return sender.to_string();
    }
    let (local, domain) = split(sender);
    let d = domain.trim_end_matches('.');
    // A quoted local part ("a b"@x) would not survive inside another local part: kept.
    let quoted = local.starts_with('"');
    if d.is_empty()
        || local.is_empty()
        || quoted
        || is_local(d)
        || d.eq_ignore_ascii_case(srs.domain())
    {
        return sender.to_string();
    }
    srs.forward(local, d, crate::clock::now())
}

/// Sieve's `redirect` into our queue with SRS: a redirect to a remote recipient gets the
/// forward sender ([`forward_sender`]) before `inner` queues it.
#[derive(Debug)]
pub struct RewritingSubmit {
    /// Where the message goes.
    pub inner: Arc<dyn Submit>,
    /// The router (SRS and local domains).
    pub router: Arc<super::Router>,
}

impl Submit for RewritingSubmit {
    fn submit(&self, sender: &str, recipient: &str, message: &[u8]) -> Sent {
        let remote = !self.router.is_local_domain(split(recipient.trim()).1);
        let sender = self.router.forward_sender(sender, remote);
        self.inner.submit(&sender, recipient, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn load_checks_the_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("srs.secret");
        let mut c = SrsConfig::default();
        assert!(matches!(load(&c, "a.test"), Ok(None)));
        c.enable = true;
        assert!(load(&c, "a.test").unwrap_err().contains("secret_file"));
        c.secret_file = Some(p.clone());
        assert!(load(&c, "a.test").is_err(), "missing file");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&c, "a.test").unwrap_err().contains("chmod 600"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = load(&c, "A.test").unwrap().unwrap();
        assert_eq!(s.domain(), "a.test");
        c.domain = Some("srs.test".into());
        assert_eq!(load(&c, "a.test").unwrap().unwrap().domain(), "srs.test");
        std::fs::write(&p, "\n").unwrap();
        assert!(load(&c, "a.test").unwrap_err().contains("empty"));
    }

    #[test]
    fn which_senders_are_rewritten() {
        let s = crate::srs::Srs::new(vec![b"k".to_vec()], "fwd.test", 21).unwrap();
        let local = |d: &str| d.eq_ignore_ascii_case("local.test");
        let f = |sender: &str, fwd: bool| forward_sender(&s, sender, fwd, local);
        assert!(f("alice@origin.test", true).starts_with("SRS0="));
        assert!(f("alice@origin.test", true).ends_with("=origin.test=alice@fwd.test"));
        assert_eq!(f("alice@origin.test", false), "alice@origin.test");
        assert_eq!(f("", true), "");
        assert_eq!(f("bob@Local.Test", true), "bob@Local.Test");
        assert_eq!(f("x@fwd.test", true), "x@fwd.test");
        assert_eq!(f("nodomain", true), "nodomain");
        assert_eq!(f("\"a b\"@origin.test", true), "\"a b\"@origin.test");
        let back = f("alice@origin.test", true);
        assert!(is_ours(&s, &back));
        assert_eq!(reverse(&s, &back), Some(Ok("alice@origin.test".into())));
        assert_eq!(reverse(&s, "alice@fwd.test"), None);
        assert_eq!(
            reverse(&s, "SRS0=xxxx=AA=o.test=a@fwd.test"),
            Some(Err(crate::srs::Error::BadHash))
        );
        assert!(!is_ours(&s, "SRS0=xxxx=AA=o.test=a@other.test"));
    }
}
