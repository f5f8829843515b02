//! The envelope parameters a message carries from the SMTP session through the queue to its
//! delivery and its DSNs: the body type (RFC 6152) and the DSN requests (RFC 3461). They live
//! below both the SMTP protocol code that parses them and the queue that stores them. And the
//! rule for a bare envelope address (cron's `root`): [`qualify`].

use std::fmt;

/// BODY= values (RFC 6152; BINARYMIME is not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
}

/// RET= values (RFC 3461 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ret {
    /// Return the full message in a bounce.
    Full,
    /// Return headers only.
    Hdrs,
}

/// NOTIFY= of RCPT TO (RFC 3461 §4.1): NEVER, or any of SUCCESS, FAILURE, DELAY.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notify {
    /// NOTIFY=NEVER.
    pub never: bool,
    /// SUCCESS requested.
    pub success: bool,
    /// FAILURE requested.
    pub failure: bool,
    /// DELAY requested.
    pub delay: bool,
}

impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.never {
            return f.write_str("NEVER");
        }
        let mut parts = Vec::new();
        if self.success {
            parts.push("SUCCESS");
        }
        if self.failure {
            parts.push("FAILURE");
        }
        if self.delay {
            parts.push("DELAY");
        }
        f.write_str(&parts.join(","))
    }
}

/// A bare envelope address (a local part without `@domain`, as cron's `MAILTO=root` and
/// `git send-email --to=user` give) made `local@domain`, as sendmail and Postfix qualify local
/// submissions (RFC 5321 §4.1.2 requires the domain on the wire). An address with a domain, and
/// the empty null sender, are returned as they are. An `@` inside a quoted local part
/// (`"a@b"`) is not a domain.
pub fn qualify(address: &str, domain: &str) -> String {
    if address.is_empty() || has_domain(address) {
        return address.to_string();
    }
    format!("{address}@{domain}")
}

/// Whether `address` has an `@domain` outside its (possibly quoted) local part.
pub fn has_domain(address: &str) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for c in address.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '@' if !quoted => return true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_get_the_domain_and_others_stay() {
        assert_eq!(qualify("root", "ex.test"), "root@ex.test");
        assert_eq!(qualify("\"a@b\"", "ex.test"), "\"a@b\"@ex.test");
        assert_eq!(qualify("\"a\\\"@b\"", "ex.test"), "\"a\\\"@b\"@ex.test");
        for same in ["a@b.test", "\"a b\"@b.test", ""] {
            assert_eq!(qualify(same, "ex.test"), same);
        }
    }
}
