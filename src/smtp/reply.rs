//! SMTP replies (RFC 5321 §4.2): the [`Reply`] type, an incremental sans-IO parser of (multi-line)
//! replies for the client side, and formatting into wire bytes for the server side.
//!
//! A reply is one or more lines `CODE-text` ... `CODE text`, all with the same three-digit code
//! (§4.2.1). With ENHANCEDSTATUSCODES (RFC 2034 §4, RFC 3463) each line starts with the same
//! `class.subject.detail` code after the reply code; [`Reply::enhanced`] holds it and
//! [`Reply::lines`] hold the text without it.

use std::fmt;

/// Longest reply line accepted by the parser, CRLF included. RFC 5321 §4.5.3.1.5 says 512
/// octets; real servers exceed it (long EHLO keyword lists, URLs in error texts), so we allow more
/// but stay bounded.
pub const MAX_LINE_LEN: usize = 4096;

/// Most lines in one multi-line reply the parser accepts (EHLO replies have one per extension).
pub const MAX_LINES: usize = 256;

/// An SMTP reply: code, optional enhanced status code and the text lines (without codes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit reply code, 200..=599 (§4.2.1: first digit 2-5).
    pub code: u16,
    /// Enhanced status code `class.subject.detail` (RFC 3463), when the reply carries one.
    pub enhanced: Option<(u8, u16, u16)>,
    /// Text of each line, reply code and enhanced code stripped. Never empty.
    pub lines: Vec<String>,
}

impl Reply {
    /// A reply with `text`; a `\n` in `text` starts a new line (CRs are dropped so a caller's text
    /// can never inject a line of its own).
    pub fn new(code: u16, enhanced: Option<(u8, u16, u16)>, text: impl AsRef<str>) -> Reply {
        let lines = text
            .as_ref()
            .split('\n')
            .map(|l| l.replace('\r', ""))
            .collect();
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// A reply with the given lines (an empty list gives one empty line).
    pub fn multi(code: u16, enhanced: Option<(u8, u16, u16)>, lines: Vec<String>) -> Reply {
        let mut lines: Vec<String> = lines
            .into_iter()
            .map(|l| l.replace(['\r', '\n'], " "))
            .collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Reply {
            code,
            enhanced,
            lines,
        }
    }

    /// The wire form: every line `CODE-` except the last `CODE `, each with the enhanced code
    /// when there is one (RFC 2034 §4), CRLF-terminated.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.lines.iter().map(|l| l.len() + 16).sum());
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.extend_from_slice(format!("{:03}{}", self.code, sep).as_bytes());
            if let Some((c, s, d)) = self.enhanced {
                out.extend_from_slice(format!("{c}.{s}.{d}").as_bytes());
                if !text.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// All lines joined by a space (for one-line error messages).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// First digit of the code: 2 success, 3 intermediate, 4 transient, 5 permanent.
    pub fn class(&self) -> u16 {
        self.code / 100
    }

    /// 2xx: positive completion.
    pub fn is_positive(&self) -> bool {
        self.class() == 2
    }

    /// 3xx: positive intermediate (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        self.class() == 3
    }

    /// 4xx: transient negative completion, worth retrying.
    pub fn is_transient(&self) -> bool {
        self.class() == 4
    }

    /// 5xx: permanent negative completion.
    pub fn is_permanent(&self) -> bool {
        self.class() == 5
    }
}

impl fmt::Display for Reply {
    /// One line: `550 5.1.1 text text` (for messages and logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some((c, s, d)) = self.enhanced {
            write!(f, " {c}.{s}.{d}")?;
        }
        let text = self.text();
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

/// Why a byte stream is not a valid SMTP reply. The connection cannot be trusted after this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// A line longer than [`MAX_LINE_LEN`].
    LineTooLong,
    /// More than [`MAX_LINES`] lines in one reply.
    TooManyLines,
    /// A line that does not start with a three-digit code 2xx-5xx followed by space, `-` or EOL.
    Malformed(String),
    /// A continuation line with a code different from the first line's (§4.2.1).
    CodeMismatch(u16, u16),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::LineTooLong => write!(f, "reply line longer than {MAX_LINE_LEN} bytes"),
            ReplyError::TooManyLines => write!(f, "reply with more than {MAX_LINES} lines"),
            ReplyError::Malformed(l) => write!(f, "malformed reply line {l:?}"),
            ReplyError::CodeMismatch(a, b) => {
                write!(f, "reply code changes from {a} to {b} within one reply")
            }
        }
    }
}

impl std::error::Error for ReplyError {}

/// Incremental reply parser: feed bytes with [`push`](Self::push), take complete replies with
/// [`next_reply`](Self::next_reply). Accepts LF as well as CRLF line ends (lenient reader).
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    /// Lines of the reply in progress: (code, raw text after the separator).
    pending: Vec<(u16, String)>,
}

impl ReplyParser {
    /// An empty parser.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Appends bytes received from the server.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet consumed as part of a complete reply. After STARTTLS's 220
    /// this must be empty: anything else was injected in clear (CVE-2011-0411 class of attack).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.pending.iter().map(|(_, t)| t.len() + 6).sum::<usize>()
    }

    /// Drops everything buffered (used when the transport changes under the parser, e.g. TLS).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.pending.clear();
    }

    /// The next complete reply, `Ok(None)` when more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() > MAX_LINE_LEN {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok(None);
            };
            if nl + 1 > MAX_LINE_LEN {
                return Err(ReplyError::LineTooLong);
            }
            let line = &self.buf[..nl];
            let parsed = parse_line(line.strip_suffix(b"\r").unwrap_or(line));
            self.buf.drain(..=nl);
            let (code, last, text) = parsed?;
            if let Some(&(first, _)) = self.pending.first() {
                if first != code {
                    self.pending.clear();
                    return Err(ReplyError::CodeMismatch(first, code));
                }
            }
            if self.pending.len() >= MAX_LINES {
                self.pending.clear();
                return Err(ReplyError::TooManyLines);
            }
            self.pending.push((code, text));
            if last {
                let lines = std::mem::take(&mut self.pending);
                return Ok(Some(assemble(code, lines)));
            }
        }
    }
}

/// Splits one line (without EOL) into code, whether it is the last line, and the text.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let malformed = || ReplyError::Malformed(String::from_utf8_lossy(line).into_owned());
    if line.len() < 3
        || !line[..3].iter().all(u8::is_ascii_digit)
        || !(b'2'..=b'5').contains(&line[0])
    {
        return Err(malformed());
    }
    let code = line[..3]
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    let (last, rest) = match line.get(3) {
        None => (true, &line[3..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return Err(malformed()),
    };
    Ok((code, last, String::from_utf8_lossy(rest).into_owned()))
}

/// Parses `class.subject.detail` at the start of `text` (RFC 3463 §2: class 2/4/5, subject and
/// detail 0-999), returning it and the rest of the text after one space.
pub fn parse_enhanced(text: &str) -> Option<((u8, u16, u16), &str)> {
    let end = text.find(' ').unwrap_or(text.len());
    let (token, rest) = text.split_at(end);
    let mut parts = token.split('.');
    let num = |p: Option<&str>, max_len: usize| -> Option<u16> {
        let p = p?;
        if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    let class = num(parts.next(), 1)?;
    let subject = num(parts.next(), 3)?;
    let detail = num(parts.next(), 3)?;
    if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
        return None;
    }
    Some((
        (class as u8, subject, detail),
        rest.strip_prefix(' ').unwrap_or(rest),
    ))
}

/// Builds a reply from its lines, taking the enhanced code when the first line has one whose
/// class matches the reply code (RFC 3463 §2) and stripping it from every line that repeats it.
fn assemble(code: u16, lines: Vec<(u16, String)>) -> Reply {
    let enhanced = lines
        .first()
        .and_then(|(_, t)| parse_enhanced(t))
        .map(|(e, _)| e)
        .filter(|e| u16::from(e.0) == code / 100);
    let lines = lines
        .into_iter()
        .map(|(_, t)| match (enhanced, parse_enhanced(&t)) {
            (Some(e), Some((le, rest))) if le == e => rest.to_string(),
            _ => t,
        })
        .collect();
    Reply {
        code,
        enhanced,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<Vec<Reply>, ReplyError> {
        let mut p = ReplyParser::new();
        p.push(bytes);
        let mut out = Vec::new();
        while let Some(r) = p.next_reply()? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn single_and_multi_line() {
        let r = parse_all(
            b"220 mx.example ESMTP\r\n250-mx.example\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].code, 220);
        assert_eq!(r[0].lines, vec!["mx.example ESMTP"]);
        assert_eq!(r[1].lines, vec!["mx.example", "SIZE 1000", "8BITMIME"]);
        assert_eq!(r[1].enhanced, None);
    }

    #[test]
    fn byte_by_byte_and_lf_only() {
        let input = b"250-a\n250 2.1.0 ok\r\n";
        let mut p = ReplyParser::new();
        let mut got = None;
        for b in input {
            p.push(&[*b]);
            if let Some(r) = p.next_reply().unwrap() {
                got = Some(r);
            }
        }
        let r = got.unwrap();
        assert_eq!(r.lines, vec!["a", "2.1.0 ok"]);
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn enhanced_codes() {
        let r = parse_all(b"550-5.1.1 no such\r\n550 5.1.1 user\r\n").unwrap();
        assert_eq!(r[0].enhanced, Some((5, 1, 1)));
        assert_eq!(r[0].lines, vec!["no such", "user"]);
        assert_eq!(r[0].to_string(), "550 5.1.1 no such user");
        // Class mismatch: not an enhanced code.
        let r = parse_all(b"250 5.1.1 odd\r\n").unwrap();
        assert_eq!(r[0].enhanced, None);
        assert_eq!(r[0].lines, vec!["5.1.1 odd"]);
        // Bare code line and bare code with enhanced code only.
        let r = parse_all(b"250\r\n250 2.0.0\r\n").unwrap();
        assert_eq!(r[0].lines, vec![""]);
        assert_eq!(r[1].enhanced, Some((2, 0, 0)));
        assert_eq!(r[1].lines, vec![""]);
        assert_eq!(parse_enhanced("2.1234.0 x"), None);
        assert_eq!(parse_enhanced("3.0.0 x"), None);
        assert_eq!(parse_enhanced("4.7.0"), Some(((4, 7, 0), "")));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"650 x\r\n",
            b"2a0 x\r\n",
            b"250x\r\n",
            b"\r\n",
            b"\xff\xfe\xfd\n",
        ] {
            assert!(parse_all(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_all(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::CodeMismatch(250, 251))
        );
    }

    #[test]
    fn limits() {
        let mut long = b"250 ".to_vec();
        long.resize(MAX_LINE_LEN + 1, b'x');
        assert_eq!(parse_all(&long), Err(ReplyError::LineTooLong));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_all(&long), Err(ReplyError::LineTooLong));
        let mut ok = b"250 ".to_vec();
        ok.resize(MAX_LINE_LEN - 2, b'x');
        ok.extend_from_slice(b"\r\n");
        assert_eq!(parse_all(&ok).unwrap().len(), 1);
        let many = b"250-x\r\n".repeat(MAX_LINES + 1);
        assert_eq!(parse_all(&many), Err(ReplyError::TooManyLines));
        let mut fits = b"250-x\r\n".repeat(MAX_LINES - 1);
        fits.extend_from_slice(b"250 y\r\n");
        assert_eq!(parse_all(&fits).unwrap()[0].lines.len(), MAX_LINES);
    }

    #[test]
    fn formatting_round_trips() {
        let r = Reply::new(250, Some((2, 0, 0)), "first\nsecond\r");
        assert_eq!(r.to_bytes(), b"250-2.0.0 first\r\n250 2.0.0 second\r\n");
        assert_eq!(parse_all(&r.to_bytes()).unwrap()[0], r);
        let r = Reply::new(354, None, "go ahead");
        assert_eq!(r.to_bytes(), b"354 go ahead\r\n");
        let r = Reply::multi(221, None, vec![]);
        assert_eq!(r.to_bytes(), b"221 \r\n");
        let r = Reply::multi(250, None, vec!["a\r\n251 injected".into()]);
        assert_eq!(r.to_bytes(), b"250 a  251 injected\r\n");
        assert!(Reply::new(452, None, "x").is_transient());
        assert!(Reply::new(554, None, "x").is_permanent());
    }
}
