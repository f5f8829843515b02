//! The one writer of our `Authentication-Results:` header (RFC 8601) and the one rule that
//! removes such headers claiming our authserv-id from a received message; sans-IO, bytes in
//! and out.
//!
//! Each check that runs on a received message (DKIM today; SPF, DMARC and ARC are meant to add
//! theirs the same way) pushes one [`MethodResult`] per result into an [`AuthResults`], and
//! the receiving code prepends [`AuthResults::header`] once, at the top (RFC 8601 §5: "added
//! at the top of the message"). Before that, [`strip_ours`] drops every
//! `Authentication-Results:` field whose authserv-id is ours, whoever wrote it: a field from
//! outside claiming our id would otherwise be trusted by our own users' filters (RFC 8601 §5,
//! "MUST ... delete").

/// One `method=result` entry (RFC 8601 §2.2: `resinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// The method (`dkim`, `spf`, `dmarc`, `arc`; RFC 8601 §2.7).
    pub method: String,
    /// The result keyword (`pass`, `fail`, `temperror`, ...; RFC 8601 §2.7).
    pub result: String,
    /// A reason in words (`reason="..."`, RFC 8601 §2.2), if any.
    pub reason: Option<String>,
    /// `ptype.property=value` entries (`header.d`, `smtp.mailfrom`; RFC 8601 §2.3), in order.
    pub props: Vec<(String, String)>,
}

impl MethodResult {
    /// A result without reason or properties.
    pub fn new(method: &str, result: &str) -> MethodResult {
        MethodResult {
            method: method.to_string(),
            result: result.to_string(),
            reason: None,
            props: Vec::new(),
        }
    }

    /// With `reason="..."`.
    pub fn reason(mut self, reason: impl Into<String>) -> MethodResult {
        self.reason = Some(reason.into());
        self
    }

    /// With one more `ptype.property=value` (`("header.d", "example.org")`).
    pub fn prop(mut self, name: &str, value: impl Into<String>) -> MethodResult {
        self.props.push((name.to_string(), value.into()));
        self
    }
}

/// The results of one received message under one authserv-id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResults {
    /// Our authserv-id (RFC 8601 §2.5: usually the host name).
    pub authserv_id: String,
    /// The results so far, in the order they are written.
    pub results: Vec<MethodResult>,
}

impl AuthResults {
    /// No results yet.
    pub fn new(authserv_id: &str) -> AuthResults {
        AuthResults {
            authserv_id: authserv_id.to_string(),
            results: Vec::new(),
        }
    }

    /// Adds one result.
    pub fn push(&mut self, r: MethodResult) {
        self.results.push(r);
    }

    /// The whole header field, CRLF-terminated: on one line when it fits in 78 characters
    /// (RFC 5322 §2.1.1), else one result per folded line; `none` when no method ran (RFC 8601
    /// §2.2: `authserv-id [CFWS authres-version] ( no-result / 1*resinfo )`).
    pub fn header(&self) -> String {
        let head = format!("Authentication-Results: {}", self.authserv_id);
        if self.results.is_empty() {
            return format!("{head}; none\r\n");
        }
        let parts: Vec<String> = self.results.iter().map(resinfo).collect();
        let one_line = format!("{head}; {}", parts.join("; "));
        if one_line.len() <= 78 {
            return one_line + "\r\n";
        }
        let mut h = head;
        for p in parts {
            h.push_str(";\r\n\t");
            h.push_str(&p);
        }
        h.push_str("\r\n");
        h
    }
}

/// One `method=result reason="..." ptype.property=value ...`.
fn resinfo(r: &MethodResult) -> String {
    let mut h = format!("{}={}", r.method, r.result);
    if let Some(reason) = &r.reason {
        h.push_str(" reason=");
        h.push_str(&quoted(reason));
    }
    for (name, value) in &r.props {
        h.push(' ');
        h.push_str(name);
        h.push('=');
        h.push_str(&pvalue(value));
    }
    h
}

/// A `value` (RFC 2045 token or quoted-string) as RFC 8601 §2.2 `pvalue` allows: a domain or
/// an address stays as it is (`@` and `.` are allowed there), anything else is quoted.
fn pvalue(v: &str) -> String {
    let plain = !v.is_empty()
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric() || b"-._@+=/!#$%&'*^`{|}~".contains(&b) || b >= 0x80
        });
    if plain {
        v.to_string()
    } else {
        quoted(v)
    }
}

/// A quoted-string (RFC 5322 §3.2.4), control characters dropped.
fn quoted(v: &str) -> String {
    let mut q = String::with_capacity(v.len() + 2);
    q.push('"');
    for c in v.chars() {
        match c {
            '"' | '\\' => {
                q.push('\\');
                q.push(c);
            }
            c if c.is_control() => {}
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// The authserv-id an `Authentication-Results:` field value claims: its first token after
/// comments and white space (RFC 8601 §2.2, `authserv-id = value`), unquoted.
pub fn authserv_id_of(value: &[u8]) -> Option<String> {
    let mut i = 0;
    let mut depth = 0usize;
    // Skip CFWS (RFC 5322 §3.2.2): white space, line folds and (nested) comments.
    while i < value.len() {
        match value[i] {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    let rest = value.get(i..)?;
    if let Some(q) = rest.strip_prefix(b"\"") {
        let end = q.iter().position(|&b| b == b'"')?;
        return Some(String::from_utf8_lossy(&q[..end]).into_owned());
    }
    let end = rest
        .iter()
        .position(|&b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
        .unwrap_or(rest.len());
    (end > 0).then(|| String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// `message` without the `Authentication-Results:` fields whose authserv-id is `authserv_id`
/// (compared without regard to case, as domain names are); the body and every other field
/// stay byte for byte. `None` when there was none to remove.
pub fn strip_ours(message: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    let end = crate::rfc5322::header_end(message);
    let header = &message[..end.header];
    let mut out = Vec::with_capacity(message.len());
    let mut removed = false;
    let mut start = 0;
    while start < header.len() {
        // One field: its first line and the continuation lines that start with WSP.
        let mut stop = start;
        loop {
            match header[stop..].iter().position(|&b| b == b'\n') {
                Some(n) => stop += n + 1,
                None => stop = header.len(),
            }
            if stop >= header.len() || !matches!(header[stop], b' ' | b'\t') {
                break;
            }
        }
        let field = &header[start..stop];
        let ours = field
            .iter()
            .position(|&b| b == b':')
            .filter(|&colon| {
                field[..colon]
                    .trim_ascii_end()
                    .eq_ignore_ascii_case(b"Authentication-Results")
            })
            .and_then(|colon| authserv_id_of(&field[colon + 1..]))
            .is_some_and(|id| id.eq_ignore_ascii_case(authserv_id));
        if ours {
            removed = true;
        } else {
            out.extend_from_slice(field);
        }
        start = stop;
    }
    out.extend_from_slice(&message[end.header..]);
    removed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lists_results_in_order() {
        let mut ar = AuthResults::new("mx.example.net");
        ar.push(
            MethodResult::new("dkim", "pass")
                .prop("header.d", "example.org")
                .prop("header.s", "sel1"),
        );
        ar.push(
            MethodResult::new("dkim", "temperror")
                .reason("DNS timeout")
                .prop("header.d", "b.example")
                .prop("header.s", "x y"),
        );
        assert_eq!(
            ar.header(),
            "Authentication-Results: mx.example.net;\r\n\
             \tdkim=pass header.d=example.org header.s=sel1;\r\n\
             \tdkim=temperror reason=\"DNS timeout\" header.d=b.example header.s=\"x y\"\r\n"
        );
        assert_eq!(
            AuthResults::new("h").header(),
            "Authentication-Results: h; none\r\n"
        );
        let mut short = AuthResults::new("mx.example.net");
        short.push(MethodResult::new("dkim", "none"));
        assert_eq!(
            short.header(),
            "Authentication-Results: mx.example.net; dkim=none\r\n"
        );
    }

    #[test]
    fn authserv_id_after_comments() {
        assert_eq!(
            authserv_id_of(b" (c (nested)) mx.example.net; dkim=pass").as_deref(),
            Some("mx.example.net")
        );
        assert_eq!(
            authserv_id_of(b" \"mx.example.net\" 1; none").as_deref(),
            Some("mx.example.net")
        );
        assert_eq!(
            authserv_id_of(b"MX.Example.Net;").as_deref(),
            Some("MX.Example.Net")
        );
        assert_eq!(authserv_id_of(b"  ; none"), None);
        assert_eq!(authserv_id_of(b" (unterminated"), None);
    }

    #[test]
    fn strips_only_our_fields() {
        let msg = b"Received: x\r\n\
            Authentication-Results: MX.example.net;\r\n\tdkim=pass header.d=forged.example\r\n\
            Subject: hi\r\n\
            authentication-results : other.example; dkim=fail\r\n\
            Authentication-Results: (c) mx.example.net; none\r\n\
            \r\n\
            Authentication-Results: mx.example.net; in the body\r\n";
        let out = strip_ours(msg, "mx.example.net").expect("removed");
        assert_eq!(
            out,
            b"Received: x\r\n\
            Subject: hi\r\n\
            authentication-results : other.example; dkim=fail\r\n\
            \r\n\
            Authentication-Results: mx.example.net; in the body\r\n"
        );
        assert_eq!(strip_ours(&out, "mx.example.net"), None);
        assert_eq!(strip_ours(b"no header end", "x"), None);
    }
}
