//! MTA-STS records and policies (RFC 8461), sans-IO: the `_mta-sts` TXT record (§3.1), the
//! policy file (§3.2) and the MX host match (§4.1).

use serde::Serialize;

/// Longest `max_age` a policy may have (RFC 8461 §3.2: 31557600 seconds, about a year).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// A policy's mode (RFC 8461 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deliver only to matching MX hosts over TLS with a valid certificate.
    Enforce,
    /// Deliver anyway; report (log) what enforce would have refused.
    Testing,
    /// The domain has withdrawn its policy.
    None,
}

impl Mode {
    /// The policy file's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy file (RFC 8461 §3.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// `enforce`, `testing` or `none`.
    pub mode: Mode,
    /// MX patterns (`mx.example.org` or `*.example.org`), lowercase, without a trailing dot.
    pub mx: Vec<String>,
    /// Seconds the policy may be cached.
    pub max_age: u64,
}

/// The policy id of a `_mta-sts` TXT record set (RFC 8461 §3.1): records not starting with
/// `v=STSv1` are discarded; not exactly one left, or that one invalid, means no policy
/// (`None`). The id is 1 to 32 letters and digits.
pub fn record_id(txt: &[String]) -> Option<String> {
    let records = crate::dns::records_with_tag(txt, "v=STSv1");
    let [record] = records.as_slice() else {
        return None;
    };
    let mut fields = record.split(';').map(str::trim).filter(|f| !f.is_empty());
    // §3.1: the version field comes first, exactly "v=STSv1".
    if fields.next() != Some("v=STSv1") {
        return None;
    }
    let mut id = None;
    for f in fields {
        let (k, v) = f.split_once('=')?;
        if k.trim() == "id" {
            let v = v.trim();
            if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return None;
            }
            id = Some(v.to_string());
        }
    }
    id
}

/// Parses a policy file (RFC 8461 §3.2): `key: value` lines ending in CRLF or LF; `version`
/// must be `STSv1`, `mode` and `max_age` are required, `mx` is required (and may repeat)
/// unless the mode is `none`; unknown keys are ignored. The error says what is wrong.
pub fn parse(text: &str) -> Result<Policy, String> {
    let (mut version, mut mode, mut max_age) = (None, None, None);
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("line without a colon: {:?}", clip(line)));
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "version" => version = Some(value.to_string()),
            "mode" => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("unknown mode {:?}", clip(other))),
                })
            }
            "max_age" => {
                // §3.2: 1 to 10 digits, at most MAX_AGE_LIMIT.
                if value.is_empty()
                    || value.len() > 10
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(format!("max_age is not a number: {:?}", clip(value)));
                }
                let n: u64 = value.parse().map_err(|_| "max_age is not a number")?;
                if n > MAX_AGE_LIMIT {
                    return Err(format!("max_age {n} is over {MAX_AGE_LIMIT}"));
                }
                max_age = Some(n);
            }
            "mx" => {
                let p = value.trim_end_matches('.').to_ascii_lowercase();
                if !valid_pattern(&p) {
                    return Err(format!("invalid mx pattern {:?}", clip(value)));
                }
                mx.push(p);
            }
            _ => {}
        }
    }
    match version.as_deref() {
        Some("STSv1") => {}
        Some(v) => return Err(format!("version {:?} is not STSv1", clip(v))),
        None => return Err("no version field".into()),
    }
    let mode = mode.ok_or("no mode field")?;
    let max_age = max_age.ok_or("no max_age field")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("no mx field".into());
    }
    Ok(Policy { mode, mx, max_age })
}

/// At most 60 characters of a value, for error messages.
fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// A host name, optionally with a `*.` wildcard label first.
fn valid_pattern(p: &str) -> bool {
    let host = p.strip_prefix("*.").unwrap_or(p);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl Policy {
    /// Whether MX host `host` matches one of the policy's patterns (RFC 8461 §4.1): equal
    /// without case and trailing dot, or `*.rest` with exactly one more label on the left.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(rest) => host
                .split_once('.')
                .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
            None => *p == host,
        })
    }

    /// The policy file text for this policy (what [`parse`] reads back to it).
    pub fn to_text(&self) -> String {
        let mut s = format!("version: STSv1\r\nmode: {}\r\n", self.mode.as_str());
        for m in &self.mx {
            s.push_str(&format!("mx: {m}\r\n"));
        }
        s.push_str(&format!("max_age: {}\r\n", self.max_age));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn txt_record_id() {
        assert_eq!(
            record_id(&txt(&["v=STSv1; id=20160831085700Z;"])).as_deref(),
            Some("20160831085700Z")
        );
        assert_eq!(
            record_id(&txt(&["v=STSv1;id=abc", "v=spf1 -all"])).as_deref(),
            Some("abc")
        );
        // §3.1: more than one STSv1 record is no policy.
        assert_eq!(record_id(&txt(&["v=STSv1; id=a", "v=STSv1; id=b"])), None);
        assert_eq!(record_id(&txt(&["v=STSv1; id=a-b"])), None);
        assert_eq!(record_id(&txt(&["v=STSv1; id="])), None);
        assert_eq!(record_id(&txt(&["v=STSv1;"])), None);
        assert_eq!(
            record_id(&txt(&[&format!("v=STSv1; id={}", "a".repeat(33))])),
            None
        );
        assert_eq!(record_id(&txt(&[])), None);
    }

    #[test]
    fn rfc_example_policy() {
        // RFC 8461 §3.2's example.
        let p = parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n\
             mx: backupmx.example.com\r\nmax_age: 604800\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 604800);
        assert_eq!(p.mx.len(), 3);
        assert!(p.matches("mail.example.com"));
        assert!(p.matches("MAIL.Example.COM."));
        assert!(p.matches("mx1.example.net"));
        // The wildcard covers exactly one label.
        assert!(!p.matches("a.b.example.net"));
        assert!(!p.matches("example.net"));
        assert!(!p.matches("other.example.com"));
        assert_eq!(parse(&p.to_text()).unwrap(), p);
    }

    #[test]
    fn policy_errors_and_leniency() {
        // LF only, spaces after the colon, unknown keys ignored.
        let p = parse("version:STSv1\nmode:   testing\nfoo: bar\nmx: a.test\nmax_age: 86400\n")
            .unwrap();
        assert_eq!(p.mode, Mode::Testing);
        assert!(parse("version: STSv1\nmode: none\nmax_age: 1\n").is_ok());
        for bad in [
            "mode: enforce\nmx: a.test\nmax_age: 1\n",
            "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.test\n",
            "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n",
            "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n",
            "version: STSv1\nmode: enforce\nmx: a..test\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: *.*.test\nmax_age: 1\n",
            "version: STSv1\nmode enforce\n",
            "<html>",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
