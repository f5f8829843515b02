//! DKIM signing of the mail mrelayd writes itself (issue 15), with the same keys
//! ([`crate::dkim::Signers`], `[mrelayd.dkim."DOMAIN"]`) as its users' mail at the end of DATA
//! ([`super::sender_auth`]), once, when the message is queued:
//!
//! - **Bounces and delay warnings** ([`super::dsn`], From `MAILER-DAEMON@HOSTNAME`): signed
//!   when the hostname's domain has keys.
//! - **Sieve's vacation replies and redirects** queued by mrelayd's own local delivery
//!   ([`crate::mda::send::ToQueue`], also for a system user's delivery child): signed when
//!   their From: domain has keys, except a redirect of mail from outside (neither
//!   authenticated nor from `trusted_networks`): its From: is the outsider's to claim, and
//!   signing it would lend our domain's signature to whatever an outsider wrote in From:. A
//!   submission is that redirect when it carries the Message-ID of the message being
//!   delivered (a vacation reply has its own; RFC 5230 §5 makes it a new message).

use std::sync::Arc;

use crate::dkim::Signers;
use crate::log;

/// The DKIM-Signature fields (CRLF-terminated, to prepend) for `message` (CRLF line ends),
/// when its From: domain has keys; empty otherwise. A signing failure is logged and the
/// message goes unsigned (the keys were checked at start).
pub fn signature(signers: &Signers, message: &[u8], what: &str) -> String {
    if signers.is_empty() {
        return String::new();
    }
    match signers.sign(message) {
        Ok(h) => h,
        Err(e) => {
            log::line(format_args!("{what}: {e}"));
            String::new()
        }
    }
}

/// The unfolded Message-ID of `message`, if it has one.
fn message_id(message: &[u8]) -> Option<Vec<u8>> {
    let header = &message[..crate::rfc5322::header_end(message).header];
    crate::rfc5322::Fields::new(header)
        .find(|f| f.is(b"message-id"))
        .map(|f| f.unfolded())
}

/// The signer of the Sieve submissions made while delivering `original`: every message with
/// keys for its From: domain, except a redirect of `original` when it is not `ours` (module
/// doc).
pub fn sieve_signer(signers: Arc<Signers>, original: &[u8], ours: bool) -> crate::mda::send::Sign {
    let original_id = message_id(original);
    Box::new(move |message: &[u8]| {
        if !ours && message_id(message) == original_id {
            return String::new();
        }
        signature(&signers, message, "Sieve submission")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_compared_unfolded() {
        let a = b"From: a@x.test\r\nMessage-ID:\r\n <1@x.test>\r\n\r\nbody\r\n";
        let b = b"Message-Id: <1@x.test>\r\nFrom: b@y.test\r\n\r\nother\r\n";
        assert_eq!(message_id(a), message_id(b));
        assert_eq!(message_id(b"From: a@x.test\r\n\r\n"), None);
        // No keys: nothing to sign, whatever the message.
        let s = sieve_signer(Arc::new(Signers::default()), a, false);
        assert_eq!(
            s(b"From: a@x.test\r\nMessage-ID: <2@x.test>\r\n\r\nhi\r\n"),
            ""
        );
    }
}
