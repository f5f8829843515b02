//! ARC (RFC 8617) verification of received mail: mail-auth's verifier (the cryptography,
//! canonicalisation and chain rules are its own), with the resolver of [`crate::dkim::Verifier`]
//! (the shared settings, [`crate::dns::resolver_setup`]), and the verdict as one RFC 8601
//! [`MethodResult`] `arc=...` (RFC 8617 §10: the `arc` method, `smtp.remote-ip`).
//!
//! - `arc=none`: the message has no ARC header fields (RFC 8617 §4.4: cv "none").
//! - `arc=pass`: the newest ARC-Message-Signature verifies, and every ARC-Seal from the newest
//!   to the first (RFC 8617 §5.2, steps 1-6).
//! - `arc=fail`: anything else: a missing or duplicated field of a set, instances out of order,
//!   a seal with a wrong `cv=` (RFC 8617 §5.1.1), a body or a signature that does not verify,
//!   a key that is gone (RFC 8617 §5.2: "the Chain Validation Status is fail").
//! - `arc=temperror`: a key could not be looked up for now (a DNS timeout or SERVFAIL, RFC 8601
//!   §2.7.1 as for DKIM): never a verdict on the chain.
//!
//! `header.oldest-pass` (RFC 8617 §10) is not written: mail-auth checks only the newest
//! ARC-Message-Signature (which is all §5.2 requires), so the oldest one that would pass is not
//! known.

use std::net::IpAddr;

use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

use crate::authres::MethodResult;

/// The longest the ARC checks of one message may take: then `arc=temperror`.
pub const VERIFY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Header fields that make a message worth an ARC verification (RFC 8617 §4.1).
pub const ARC_FIELDS: &[&str] = &[
    "ARC-Seal",
    "ARC-Message-Signature",
    "ARC-Authentication-Results",
];

/// The `arc=` result of `message`, received from `remote_ip`.
pub async fn verify(
    auth: &MessageAuthenticator,
    message: &[u8],
    remote_ip: Option<IpAddr>,
) -> MethodResult {
    let r = match AuthenticatedMessage::parse(message) {
        None => MethodResult::new("arc", "fail").reason("unparsable message"),
        Some(parsed) => {
            let parts = (
                parsed.as_headers.len(),
                parsed.ams_headers.len(),
                parsed.aar_headers.len(),
            );
            if parts == (0, 0, 0) && !parsed.has_arc_errors {
                MethodResult::new("arc", "none")
            } else if parts.1 == 0 && !parsed.has_arc_errors {
                // mail-auth counts sets by their ARC-Message-Signature: seals or results
                // without one are a broken chain (RFC 8617 §5.2 step 2), not "none".
                MethodResult::new("arc", "fail").reason("broken ARC chain")
            } else {
                match tokio::time::timeout(VERIFY_DEADLINE, auth.verify_arc(&parsed)).await {
                    Ok(out) => {
                        let (result, reason) = result_words(out.result());
                        let r = MethodResult::new("arc", result);
                        match reason {
                            Some(why) => r.reason(why),
                            None => r,
                        }
                    }
                    Err(_) => MethodResult::new("arc", "temperror").reason(format!(
                        "verification took over {} s",
                        VERIFY_DEADLINE.as_secs()
                    )),
                }
            }
        }
    };
    match remote_ip {
        Some(ip) => r.prop("smtp.remote-ip", ip.to_string()),
        None => r,
    }
}

/// The `arc=` keyword of a mail-auth chain result and the reason: only `pass`, `none`, `fail`
/// and, for a DNS failure of the moment, `temperror`. mail-auth's "neutral" (a body hash that
/// does not match, an expired signature, a malformed field) is a failed chain here (RFC 8617
/// §5.2: any failed step "fail").
pub fn result_words(r: &DkimResult) -> (&'static str, Option<String>) {
    match r {
        DkimResult::Pass => ("pass", None),
        DkimResult::None => ("none", None),
        DkimResult::TempError(e) => ("temperror", Some(e.to_string())),
        DkimResult::Neutral(e) | DkimResult::Fail(e) | DkimResult::PermError(e) => {
            ("fail", Some(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_map_to_arc_keywords() {
        use mail_auth::arc::ArcError;
        use mail_auth::Error;
        assert_eq!(result_words(&DkimResult::Pass), ("pass", None));
        assert_eq!(result_words(&DkimResult::None), ("none", None));
        let body = DkimResult::Neutral(Error::Arc(ArcError::FailedBodyHashMatch));
        assert_eq!(result_words(&body).0, "fail");
        let cv = DkimResult::Fail(Error::Arc(ArcError::InvalidCV));
        assert_eq!(result_words(&cv).0, "fail");
        let dns =
            DkimResult::TempError(Error::Dns(mail_auth::DnsError::Resolver("timeout".into())));
        assert_eq!(result_words(&dns).0, "temperror");
    }
}
