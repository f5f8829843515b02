//! The one HTTP/1.1 response reader of mailkit (RFC 9112), sans-IO, just enough for an MTA-STS
//! policy fetch (RFC 8461 §3.3): bytes in ([`ResponseParser::feed`], [`ResponseParser::eof`]),
//! one [`Response`] out: status, `Content-Type`, body framed by `Content-Length` (RFC 9112
//! §6.3), `chunked` (§7.1) or the end of the connection. Everything is bounded: the head by
//! [`MAX_HEAD`], the body by the caller's limit (64 KiB for a policy). Redirects are not
//! followed (the caller refuses any status but 200, as §3.3 requires).

/// Longest status line plus header fields.
pub const MAX_HEAD: usize = 16 * 1024;

/// A complete response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code (RFC 9110 §15).
    pub status: u16,
    /// The `Content-Type` field value, as sent.
    pub content_type: Option<String>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// Whether the media type is `text/plain` (parameters such as `charset` allowed, RFC 9110
    /// §8.3.1: compared without case).
    pub fn is_text_plain(&self) -> bool {
        self.content_type.as_deref().is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/plain"))
        })
    }

    /// This response as a server would send it, with `Content-Length` or chunked (in chunks
    /// of `chunk` bytes): what [`ResponseParser`] reads back to the same response.
    pub fn encode(&self, chunked: Option<usize>) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} X\r\n", self.status).into_bytes();
        if let Some(t) = &self.content_type {
            out.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
        }
        match chunked {
            Some(n) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for c in self.body.chunks(n.max(1)) {
                    out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    out.extend_from_slice(c);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            None => {
                out.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes(),
                );
                out.extend_from_slice(&self.body);
            }
        }
        out
    }
}

/// Why a response cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Not HTTP/1.x, or a malformed line or field.
    Malformed(String),
    /// Head or body over its limit.
    TooLarge(&'static str),
    /// The connection ended before the response did.
    Truncated,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Malformed(m) => write!(f, "malformed HTTP response: {m}"),
            HttpError::TooLarge(what) => write!(f, "HTTP response {what} too large"),
            HttpError::Truncated => write!(f, "HTTP response truncated"),
        }
    }
}

impl std::error::Error for HttpError {}

/// What the bytes so far come to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    NeedMore,
    /// The response is complete (bytes after it are ignored: one request per connection).
    Done(Response),
}

/// How the body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// A complete head: status, content type, framing, and where the body starts.
type Head = (u16, Option<String>, Framing, usize);

/// Reads one response from the bytes fed to it.
#[derive(Debug)]
pub struct ResponseParser {
    buf: Vec<u8>,
    body_limit: usize,
    /// Status, content type, framing and body offset once the head is complete.
    head: Option<Head>,
}

fn bad(m: impl Into<String>) -> HttpError {
    HttpError::Malformed(m.into())
}

/// The next line of `buf` from `at` (CRLF or LF): its text and where the next one starts.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let n = rest.iter().position(|&b| b == b'\n')?;
    let text = &rest[..n];
    Some((text.strip_suffix(b"\r").unwrap_or(text), at + n + 1))
}

impl ResponseParser {
    /// A parser whose body may be at most `body_limit` bytes.
    pub fn new(body_limit: usize) -> ResponseParser {
        ResponseParser {
            buf: Vec::new(),
            body_limit,
            head: None,
        }
    }

    /// Takes more bytes of the response.
    pub fn feed(&mut self, data: &[u8]) -> Result<Parsed, HttpError> {
        self.buf.extend_from_slice(data);
        if self.head.is_none() {
            match self.parse_head()? {
                Some(h) => self.head = Some(h),
                None if self.buf.len() > MAX_HEAD => return Err(HttpError::TooLarge("head")),
                None => return Ok(Parsed::NeedMore),
            }
        }
        let parsed = self.parse_body(false)?;
        // Chunk framing costs a few bytes per chunk for sane servers; bound what is kept so
        // a hostile one cannot grow the buffer without end (one read more at most).
        if parsed == Parsed::NeedMore && self.buf.len() > MAX_HEAD + 2 * self.body_limit + 1024 {
            return Err(HttpError::TooLarge("body"));
        }
        Ok(parsed)
    }

    /// The connection ended: the response if it is complete (a body framed by the end of the
    /// connection ends here).
    pub fn eof(&mut self) -> Result<Response, HttpError> {
        if self.head.is_none() {
            return Err(HttpError::Truncated);
        }
        match self.parse_body(true)? {
            Parsed::Done(r) => Ok(r),
            Parsed::NeedMore => Err(HttpError::Truncated),
        }
    }

    fn parse_head(&self) -> Result<Option<Head>, HttpError> {
        let Some((status_line, mut at)) = line(&self.buf, 0) else {
            return Ok(None);
        };
        let s = std::str::from_utf8(status_line).map_err(|_| bad("status line not UTF-8"))?;
        let mut parts = s.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if version != "HTTP/1.1" && version != "HTTP/1.0" {
            return Err(bad(format!(
                "not HTTP/1.x: {:?}",
                s.chars().take(40).collect::<String>()
            )));
        }
        let code = parts.next().unwrap_or("");
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("bad status code"));
        }
        let status: u16 = code.parse().map_err(|_| bad("bad status code"))?;
        let (mut content_type, mut length, mut chunked) = (None, None::<usize>, false);
        loop {
            let Some((field, next)) = line(&self.buf, at) else {
                return Ok(None);
            };
            at = next;
            if field.is_empty() {
                break;
            }
            if field[0] == b' ' || field[0] == b'\t' {
                // RFC 9112 §5.2: obsolete line folding may be rejected.
                return Err(bad("folded header field"));
            }
            let f = std::str::from_utf8(field).map_err(|_| bad("header field not UTF-8"))?;
            let (name, value) = f
                .split_once(':')
                .ok_or_else(|| bad("header field without a colon"))?;
            if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(bad("bad header field name"));
            }
            let value = value.trim_matches(|c| c == ' ' || c == '\t');
            if name.eq_ignore_ascii_case("content-type") {
                content_type = Some(value.to_string());
            } else if name.eq_ignore_ascii_case("content-length") {
                if value.is_empty()
                    || value.len() > 19
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(bad("bad Content-Length"));
                }
                let n: usize = value.parse().map_err(|_| bad("bad Content-Length"))?;
                // §6.3: differing lengths are an error.
                if length.is_some_and(|l| l != n) {
                    return Err(bad("conflicting Content-Length fields"));
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // §6.1: chunked must be the final coding; nothing else is decoded here.
                if !value.eq_ignore_ascii_case("chunked") {
                    return Err(bad(format!("unsupported Transfer-Encoding {value:?}")));
                }
                chunked = true;
            }
        }
        // §6.3: Transfer-Encoding overrides Content-Length.
        let framing = match (chunked, length) {
            (true, _) => Framing::Chunked,
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::Close,
        };
        if let Framing::Length(n) = framing {
            if n > self.body_limit {
                return Err(HttpError::TooLarge("body"));
            }
        }
        Ok(Some((status, content_type, framing, at)))
    }

    fn parse_body(&self, eof: bool) -> Result<Parsed, HttpError> {
        let Some((status, content_type, framing, start)) = self.head.clone() else {
            return Ok(Parsed::NeedMore);
        };
        let rest = &self.buf[start..];
        let done = |body: Vec<u8>| {
            Ok(Parsed::Done(Response {
                status,
                content_type: content_type.clone(),
                body,
            }))
        };
        match framing {
            Framing::Length(n) if rest.len() >= n => done(rest[..n].to_vec()),
            Framing::Length(_) => Ok(Parsed::NeedMore),
            Framing::Close if rest.len() > self.body_limit => Err(HttpError::TooLarge("body")),
            Framing::Close if eof => done(rest.to_vec()),
            Framing::Close => Ok(Parsed::NeedMore),
            Framing::Chunked => {
                let mut body = Vec::new();
                let mut at = start;
                loop {
                    let Some((size_line, next)) = line(&self.buf, at) else {
                        return Ok(Parsed::NeedMore);
                    };
                    let size = size_line.split(|&b| b == b';').next().unwrap_or(b"");
                    let size = std::str::from_utf8(size)
                        .map_err(|_| bad("bad chunk size"))?
                        .trim();
                    if size.is_empty()
                        || size.len() > 8
                        || !size.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(bad("bad chunk size"));
                    }
                    let n = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
                    if body.len() + n > self.body_limit {
                        return Err(HttpError::TooLarge("body"));
                    }
                    at = next;
                    if n == 0 {
                        // Trailer fields up to an empty line (§7.1.2), ignored.
                        loop {
                            let Some((t, next)) = line(&self.buf, at) else {
                                return Ok(Parsed::NeedMore);
                            };
                            at = next;
                            if t.is_empty() {
                                return done(body);
                            }
                        }
                    }
                    let Some(data) = self.buf.get(at..at + n) else {
                        return Ok(Parsed::NeedMore);
                    };
                    body.extend_from_slice(data);
                    at += n;
                    match line(&self.buf, at) {
                        Some((b"", next)) => at = next,
                        Some(_) => return Err(bad("chunk not followed by CRLF")),
                        None => return Ok(Parsed::NeedMore),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], step: usize) -> Result<Response, HttpError> {
        let mut p = ResponseParser::new(64 * 1024);
        for c in bytes.chunks(step.max(1)) {
            if let Parsed::Done(r) = p.feed(c)? {
                return Ok(r);
            }
        }
        p.eof()
    }

    #[test]
    fn framings() {
        let r = Response {
            status: 200,
            content_type: Some("text/plain; charset=utf-8".into()),
            body: b"version: STSv1\r\nmode: enforce\r\n".to_vec(),
        };
        for framing in [None, Some(1), Some(7), Some(1000)] {
            for step in [1, 3, 1000] {
                assert_eq!(read_all(&r.encode(framing), step).unwrap(), r);
            }
        }
        assert!(r.is_text_plain());
        let close = b"HTTP/1.0 200 OK\nContent-Type: TEXT/PLAIN\n\nbody until the end";
        let got = read_all(close, 5).unwrap();
        assert_eq!(got.body, b"body until the end");
        assert!(got.is_text_plain());
        let chunked_ext = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n";
        assert_eq!(read_all(chunked_ext, 2).unwrap().body, b"abc");
    }

    #[test]
    fn errors_and_limits() {
        assert_eq!(
            read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 100),
            Err(HttpError::Truncated)
        );
        assert_eq!(
            read_all(b"HTTP/1.1 200 OK\r\n", 100),
            Err(HttpError::Truncated)
        );
        assert_eq!(
            read_all(b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n", 100),
            Err(HttpError::TooLarge("body"))
        );
        let big = [b"HTTP/1.1 200 OK\r\n\r\n".as_slice(), &vec![b'x'; 70_000]].concat();
        assert_eq!(read_all(&big, 4096), Err(HttpError::TooLarge("body")));
        let long_head = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &vec![b'x'; 20_000]].concat();
        assert_eq!(read_all(&long_head, 4096), Err(HttpError::TooLarge("head")));
        for bad in [
            b"SMTP/1.1 200 OK\r\n\r\n".as_slice(),
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
        ] {
            assert!(
                matches!(read_all(bad, 100), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let redirect = read_all(
            b"HTTP/1.1 301 Moved\r\nLocation: https://x/\r\nContent-Length: 0\r\n\r\n",
            100,
        )
        .unwrap();
        assert_eq!(redirect.status, 301);
    }
}
