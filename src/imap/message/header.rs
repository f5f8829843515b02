//! Header fields of one MIME part (RFC 5322 §2.2) and the MIME fields' grammar (RFC 2045 §5.1
//! Content-Type, RFC 2183 Content-Disposition, RFC 2231 parameter continuations). Fields are
//! split by the one splitter, [`crate::rfc5322::Fields`].

/// A parsed Content-Type (or, with an empty subtype, Content-Disposition). BODYSTRUCTURE sends
/// names as written (as Dovecot does; RFC 2045 §5.1 makes them case-insensitive), the
/// lowercase forms are for decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// The type (`text`), or the disposition (`attachment`), lowercase.
    pub kind: String,
    /// The subtype (`plain`), lowercase; empty for a disposition.
    pub subtype: String,
    /// Type and subtype as written.
    pub written: (String, String),
    /// The parameters in order, names as written. RFC 2231 continuations (`name*0`,
    /// `name*1*` ...) are joined into one `name` (or `name*` when any piece is extended,
    /// with the value left encoded) after the plain parameters, as Dovecot sends them.
    pub params: Vec<(String, Vec<u8>)>,
}

impl ContentType {
    /// The default media type (RFC 2045 §5.2; RFC 2046 §5.1.5 inside multipart/digest).
    pub fn default_for(in_digest: bool) -> ContentType {
        if in_digest {
            ContentType {
                kind: "message".into(),
                subtype: "rfc822".into(),
                written: ("message".into(), "rfc822".into()),
                params: Vec::new(),
            }
        } else {
            ContentType {
                kind: "text".into(),
                subtype: "plain".into(),
                written: ("text".into(), "plain".into()),
                params: vec![("charset".into(), b"us-ascii".to_vec())],
            }
        }
    }

    /// Parses a Content-Type value; `None` when there is no `type/subtype`.
    pub fn parse(value: &[u8]) -> Option<ContentType> {
        let mut t = Tokens::new(value);
        let kind = String::from_utf8_lossy(t.token()?).into_owned();
        if !t.special(b'/') {
            return None;
        }
        let subtype = String::from_utf8_lossy(t.token()?).into_owned();
        let mut params = t.params();
        // Dovecot (and UW imapd) name the charset of a text part that names none: RFC 2045
        // §5.2's default, us-ascii.
        if kind.eq_ignore_ascii_case("text")
            && !params.iter().any(|p| p.0.eq_ignore_ascii_case("charset"))
        {
            params.insert(0, ("charset".into(), b"us-ascii".to_vec()));
        }
        Some(ContentType {
            kind: kind.to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
            written: (kind, subtype),
            params,
        })
    }

    /// Parses a Content-Disposition value (RFC 2183 §2); `None` without a disposition type.
    pub fn parse_disposition(value: &[u8]) -> Option<ContentType> {
        let mut t = Tokens::new(value);
        let kind = String::from_utf8_lossy(t.token()?).into_owned();
        Some(ContentType {
            kind: kind.to_ascii_lowercase(),
            subtype: String::new(),
            written: (kind, String::new()),
            params: t.params(),
        })
    }

    /// The value of parameter `name` (any case) as text.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// The RFC 2045 §5.1 lexer: tokens, quoted strings, tspecials, comments skipped.
struct Tokens<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn new(data: &'a [u8]) -> Tokens<'a> {
        Tokens { data, pos: 0 }
    }

    /// Skips white space and (nested) comments.
    fn skip_cfws(&mut self) {
        while let Some(&b) = self.data.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'(' => {
                    let mut depth = 0usize;
                    while let Some(&c) = self.data.get(self.pos) {
                        self.pos += 1;
                        match c {
                            b'\\' => self.pos += 1,
                            b'(' => depth += 1,
                            b')' => {
                                depth = depth.saturating_sub(1);
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => return,
            }
        }
    }

    fn is_tspecial(b: u8) -> bool {
        b"()<>@,;:\\\"/[]?=".contains(&b) || b <= b' ' || b == 0x7f
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        self.skip_cfws();
        let start = self.pos;
        while self
            .data
            .get(self.pos)
            .is_some_and(|&b| !Self::is_tspecial(b))
        {
            self.pos += 1;
        }
        (self.pos > start).then(|| &self.data[start..self.pos])
    }

    fn special(&mut self, c: u8) -> bool {
        self.skip_cfws();
        if self.data.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A token or a quoted string (unquoted, backslash escapes resolved).
    fn value(&mut self) -> Option<Vec<u8>> {
        self.skip_cfws();
        if self.data.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            let mut out = Vec::new();
            while let Some(&b) = self.data.get(self.pos) {
                self.pos += 1;
                match b {
                    b'"' => return Some(out),
                    b'\\' => {
                        if let Some(&c) = self.data.get(self.pos) {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                    b'\r' | b'\n' => {}
                    _ => out.push(b),
                }
            }
            Some(out)
        } else {
            self.token().map(<[u8]>::to_vec)
        }
    }

    /// `*(";" attribute "=" value)`, RFC 2231 continuations joined. A malformed parameter is
    /// skipped up to the next `;`. Only the first [`MAX_PARAMS`] parameters (continuation
    /// pieces counted one by one) are read; the rest of the field is ignored.
    fn params(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut raw: Vec<(String, Vec<u8>)> = Vec::new();
        while raw.len() < MAX_PARAMS {
            self.skip_cfws();
            if self.pos >= self.data.len() {
                break;
            }
            if !self.special(b';') {
                // Garbage: resynchronise at the next ';'.
                match self.data[self.pos..].iter().position(|&b| b == b';') {
                    Some(i) => self.pos += i,
                    None => break,
                }
                continue;
            }
            let Some(name) = self.token() else { continue };
            if !self.special(b'=') {
                continue;
            }
            let Some(value) = self.value() else { continue };
            raw.push((String::from_utf8_lossy(name).into_owned(), value));
        }
        join_continuations(raw)
    }
}

/// The most parameters read from one Content-Type or Content-Disposition field, each RFC 2231
/// continuation piece counted. A bound against the parameter-count class of IMAP
/// denial-of-service bugs (Dovecot's CVE-2024-23184 class: header structures whose parsing
/// grows faster than their size); real mail has a handful, and a long file name split by
/// Thunderbird into 78-octet pieces stays far below it.
pub const MAX_PARAMS: usize = 1000;

/// RFC 2231 §3: `name*0`, `name*1*` ... joined in number order into one parameter at the
/// place of the first piece, `name*` when any piece is extended (value still encoded).
/// Pieces find their group through a map keyed by the lowercase base name, so the join is
/// linear in the number of pieces whatever their names.
fn join_continuations(raw: Vec<(String, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    // (base name, whether any piece is extended, the numbered pieces), in first-seen order
    type Group = (String, bool, Vec<(u32, Vec<u8>)>);
    let mut groups: Vec<Group> = Vec::new();
    let mut by_base: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (name, value) in raw {
        let lower = name.to_ascii_lowercase();
        let (base, rest) = match lower.split_once('*') {
            Some((b, r)) => (b.to_string(), r.to_string()),
            None => {
                out.push((name, value));
                continue;
            }
        };
        let extended = rest.ends_with('*') || rest.is_empty();
        let number = rest.trim_end_matches('*');
        let Ok(n) = (if number.is_empty() {
            Ok(0)
        } else {
            number.parse::<u32>()
        }) else {
            out.push((name, value));
            continue;
        };
        match by_base.get(&base).and_then(|&i| groups.get_mut(i)) {
            Some(g) => {
                g.1 |= extended;
                g.2.push((n, value));
            }
            None => {
                by_base.insert(base.clone(), groups.len());
                groups.push((base, extended, vec![(n, value)]));
            }
        }
    }
    for (base, extended, mut pieces) in groups {
        pieces.sort_by_key(|p| p.0);
        let value = pieces.into_iter().flat_map(|p| p.1).collect();
        out.push((if extended { format!("{base}*") } else { base }, value));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_with_rfc2231() {
        let ct = ContentType::parse(
            b" Text/Plain; (c) charset=\"UTF-8\";\r\n name*0*=utf-8''a%20; name*1=b; FORMAT=flowed",
        )
        .unwrap();
        assert_eq!(ct.kind, "text");
        assert_eq!(ct.subtype, "plain");
        assert_eq!(ct.written, ("Text".into(), "Plain".into()));
        assert_eq!(
            ct.params,
            vec![
                ("charset".into(), b"UTF-8".to_vec()),
                ("FORMAT".into(), b"flowed".to_vec()),
                ("name*".into(), b"utf-8''a%20b".to_vec()),
            ]
        );
        assert!(ContentType::parse(b"text").is_none());
    }

    #[test]
    fn parameters_are_read_up_to_the_limit_and_continuations_joined_by_name() {
        let mut value = String::from("text/plain");
        for i in 0..MAX_PARAMS + 500 {
            value.push_str(&format!("; p{i}*0=v; q*{i}=z"));
        }
        let ct = ContentType::parse(value.as_bytes()).unwrap();
        // charset us-ascii first, then the joined groups in first-seen order.
        assert_eq!(ct.params[0].0, "charset");
        assert_eq!(ct.params[1], ("p0".into(), b"v".to_vec()));
        assert_eq!(ct.params[2].0, "q");
        assert_eq!(ct.params[2].1.len(), MAX_PARAMS / 2);
        assert_eq!(ct.params.len(), 2 + MAX_PARAMS / 2);
    }
}
