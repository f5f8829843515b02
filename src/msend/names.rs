//! Bare local names: cron (`MAILTO=root`, its default) and `git send-email --to=user` hand
//! msend a name without a domain, which no server takes (RFC 5321 §4.1.2). As sendmail and
//! Postfix do for local submissions, msend qualifies them with the mail domain (`domain =`,
//! default the `hostname`): the envelope sender and recipients ([`crate::envelope::qualify`])
//! and the bare addresses in the address fields ([`crate::rfc5322::ADDRESS_FIELDS`]: From,
//! Sender, Reply-To, To, Cc, Bcc, their `Resent-` forms, ...; [`crate::rfc5322::qualify_header`]). With `aliases = FILE` (msmtp's aliases file,
//! read only when a bare recipient needs it) bare recipients are first replaced by the
//! addresses the file gives them, as msmtp does: `name: address, name2, ...`, `#` comments,
//! the `default` entry for a name the file does not have, names within the file expanded
//! again (up to [`MAX_ALIAS_DEPTH`] deep), names compared without case; the message itself
//! is not changed by the aliases.

use std::path::PathBuf;

use anyhow::Result;

use crate::envelope;
use crate::exit;
use crate::relay::aliases::{AliasTarget, Aliases};
use crate::rfc5322;

/// Deepest alias expansion before msend calls it a loop (msmtp's limit).
pub const MAX_ALIAS_DEPTH: usize = 16;

/// The domain a bare name carries where a parser insists on one (mail-parser reads a bare
/// `To: root` as a display name; the `-bs` session's paths) until msend qualifies it, so the
/// aliases file still sees the bare name. In the reserved TLD `.invalid` (RFC 6761 §6.4): no
/// real address has it, and none leaves msend with it.
pub const UNQUALIFIED: &str = "unqualified.invalid";

/// `name@`[`UNQUALIFIED`] back to the bare `name`; any other address as it is.
pub fn unmark(address: String) -> String {
    match address.strip_suffix(UNQUALIFIED) {
        Some(local) if local.ends_with('@') => local[..local.len() - 1].to_string(),
        _ => address,
    }
}

/// How one msend run qualifies bare names.
#[derive(Debug, Clone)]
pub struct LocalNames {
    /// The mail domain bare names get.
    pub domain: String,
    /// msmtp's aliases file, if configured.
    pub aliases: Option<PathBuf>,
}

impl LocalNames {
    /// The names of `domain` (checked as a domain: exit 78 naming `key` otherwise) with the
    /// aliases file `aliases`.
    pub fn new(domain: &str, key: &str, aliases: Option<PathBuf>) -> Result<LocalNames> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        crate::smtp::command::check_domain(&domain).map_err(|e| {
            exit::fail(
                exit::CONFIG,
                format!("{key}: {domain:?} is not a mail domain ({e})"),
            )
        })?;
        Ok(LocalNames { domain, aliases })
    }

    /// An envelope sender: a bare one gets the domain; the null sender stays empty.
    pub fn sender(&self, address: &str) -> String {
        envelope::qualify(address, &self.domain)
    }

    /// Envelope recipients: bare ones through the aliases file (when configured), then every
    /// one still bare gets the domain. An unreadable aliases file, one with a pipe or a path as
    /// a target, or an alias loop is exit 78.
    pub fn recipients(&self, rcpts: Vec<String>) -> Result<Vec<String>> {
        let aliases = match &self.aliases {
            Some(path) if rcpts.iter().any(|r| !envelope::has_domain(r)) => {
                Some(Aliases::load(path).map_err(|e| {
                    exit::fail(exit::CONFIG, format!("aliases {}: {e:#}", path.display()))
                })?)
            }
            _ => None,
        };
        let mut out = Vec::with_capacity(rcpts.len());
        for r in rcpts {
            match &aliases {
                Some(a) if !envelope::has_domain(&r) => expand(a, &r, 0, &mut out)?,
                _ => out.push(r),
            }
        }
        Ok(out
            .into_iter()
            .map(|r| envelope::qualify(&r, &self.domain))
            .collect())
    }

    /// The message with the bare addresses of its address fields
    /// ([`rfc5322::ADDRESS_FIELDS`]) qualified,
    /// everything else byte for byte as it was.
    pub fn message(&self, message: &[u8]) -> Vec<u8> {
        let end = rfc5322::header_end(message);
        let mut out = rfc5322::qualify_header(
            &message[..end.header],
            rfc5322::ADDRESS_FIELDS,
            &self.domain,
        );
        out.extend_from_slice(&message[end.header..]);
        out
    }
}

/// msmtp's expansion of one bare name: its entry, else the `default` entry, else the name as
/// it is; a bare target is expanded again.
fn expand(aliases: &Aliases, name: &str, depth: usize, out: &mut Vec<String>) -> Result<()> {
    if depth > MAX_ALIAS_DEPTH {
        return Err(exit::fail(
            exit::CONFIG,
            format!("aliases: expanding {name} goes deeper than {MAX_ALIAS_DEPTH} (a loop?)"),
        ));
    }
    let Some((targets, line)) = aliases.get(name).or_else(|| aliases.get("default")) else {
        out.push(name.to_string());
        return Ok(());
    };
    for t in targets {
        match t {
            AliasTarget::Address(a) if envelope::has_domain(a) => out.push(a.clone()),
            AliasTarget::Address(a) => expand(aliases, a, depth + 1, out)?,
            AliasTarget::Pipe(_) | AliasTarget::Maildir(_) => {
                return Err(exit::fail(
                    exit::CONFIG,
                    format!("aliases line {line}: msend maps names to addresses only"),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(aliases: &str) -> (tempfile::TempDir, LocalNames) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases");
        std::fs::write(&path, aliases).unwrap();
        let n = LocalNames::new("Ex.Test.", "domain", Some(path)).unwrap();
        (dir, n)
    }

    fn rcpts(n: &LocalNames, r: &[&str]) -> Result<Vec<String>> {
        n.recipients(r.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn aliases_as_msmtp_reads_them_then_the_domain() {
        let (_d, n) =
            names("# msmtp's example\nroot: joe@x.test, jane@x.test\ncron: root, mark # comment\n");
        assert_eq!(
            rcpts(&n, &["cron", "Bob", "z@y.test"]).unwrap(),
            [
                "joe@x.test",
                "jane@x.test",
                "mark@ex.test",
                "Bob@ex.test",
                "z@y.test"
            ]
        );
        let (_d, n) = names("default: admin@x.test\nroot: carol\n");
        assert_eq!(
            rcpts(&n, &["root", "anyone"]).unwrap(),
            ["admin@x.test", "admin@x.test"]
        );
        let (_d, n) = names("a: b\nb: a\n");
        assert_eq!(exit::code_of(&rcpts(&n, &["a"]).unwrap_err()), exit::CONFIG);
        let (_d, n) = names("a: |/bin/cat\n");
        assert!(rcpts(&n, &["a"]).is_err());
        // The file is read only for a bare recipient.
        let n = LocalNames::new("ex.test", "domain", Some("/nonexistent".into())).unwrap();
        assert_eq!(rcpts(&n, &["a@b.test"]).unwrap(), ["a@b.test"]);
        assert!(rcpts(&n, &["a"]).is_err());
        assert!(LocalNames::new("not a domain", "msend.domain", None).is_err());
    }
}
