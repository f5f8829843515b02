//! The envelope parameters a message carries from the SMTP session through the queue to its
//! delivery and its DSNs: the body type (RFC 6152) and the DSN requests (RFC 3461). They live
//! below both the SMTP protocol code that parses them and the queue that stores them.

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
