//! The two files' text formats, sans-IO: parse (strictly: anything unexpected is corrupt) and
//! serialise. See the parent module doc for the grammar; the fuzz target `uidlist` checks that
//! whatever parses serialises back to the same bytes.

/// First word of the uid list's header line.
pub const UIDLIST_MAGIC: &str = "mailkit-uidlist";
/// First word of the keywords file's header line.
pub const KEYWORDS_MAGIC: &str = "mailkit-keywords";
/// The format version both files are written in.
pub const VERSION: u32 = 1;
/// Longest keyword accepted (bytes).
pub const MAX_KEYWORD: usize = 200;
/// The Maildir flag letters keywords map to, in the order they are handed out (as Dovecot).
pub const KEYWORD_LETTERS: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";

/// A parsed uid list: UIDVALIDITY, UIDNEXT and the messages' UIDs with their base names,
/// in increasing UID order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidList {
    /// UIDVALIDITY (RFC 3501 §2.3.1.1), never 0.
    pub validity: u32,
    /// UIDNEXT: every UID ever assigned under this UIDVALIDITY is below it.
    pub next: u32,
    /// (UID, base name), UIDs strictly increasing and below `next`, base names distinct.
    pub records: Vec<(u32, String)>,
}

/// Why a file did not parse, and the UIDVALIDITY its header named if that much was readable
/// (a new one must be greater, RFC 3501 §2.3.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    /// What was wrong.
    pub reason: &'static str,
    /// The header's UIDVALIDITY, when the header parsed.
    pub validity: Option<u32>,
}

/// Whether `s` can be a base name in the list: the part of a Maildir file name before `:`,
/// printable ASCII without space, `/` or `:`.
pub fn valid_base(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

/// Whether `s` can be a keyword: an IMAP `atom` (RFC 3501 §9: no atom-specials `(){ %*"\]`, no
/// controls, no space) not starting with `\` (that is a system flag), at most [`MAX_KEYWORD`].
pub fn valid_keyword(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KEYWORD
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
}

/// The lines of `data`, each required to end with `\n` (a partial last line is corrupt).
fn lines(data: &[u8]) -> Result<Vec<&str>, &'static str> {
    let text = std::str::from_utf8(data).map_err(|_| "not UTF-8")?;
    let Some(body) = text.strip_suffix('\n') else {
        return Err(if text.is_empty() {
            "empty"
        } else {
            "last line incomplete"
        });
    };
    Ok(body.split('\n').collect())
}

/// A decimal number without sign or leading zeros (so each value has one spelling).
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// The trailer `end <count>` must be the last line and count the records.
fn check_trailer(last: Option<&str>, count: usize) -> Result<(), &'static str> {
    match last.and_then(|l| l.strip_prefix("end ")).and_then(number) {
        Some(n) if n as usize == count => Ok(()),
        Some(_) => Err("record count in trailer does not match"),
        None => Err("no trailer (truncated)"),
    }
}

impl UidList {
    /// An empty list with a new UIDVALIDITY.
    pub fn fresh(validity: u32) -> UidList {
        UidList {
            validity: validity.max(1),
            next: 1,
            records: Vec::new(),
        }
    }

    /// Parses a whole uid list file. The header is read first, so a file damaged after it
    /// still reports its UIDVALIDITY.
    pub fn parse(data: &[u8]) -> Result<UidList, Corrupt> {
        let bad = |reason, validity| Corrupt { reason, validity };
        let nl = data.iter().position(|&b| b == b'\n');
        let (header, rest) = match nl {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => return Err(bad("no header", None)),
        };
        let header = std::str::from_utf8(header).map_err(|_| bad("bad header", None))?;
        let mut h = header.split(' ');
        let (Some(UIDLIST_MAGIC), Some(version), Some(v), Some(n), None) =
            (h.next(), h.next(), h.next(), h.next(), h.next())
        else {
            return Err(bad("bad header", None));
        };
        if number(version) != Some(VERSION) {
            return Err(bad("unknown version", None));
        }
        let validity = v.strip_prefix('V').and_then(number).filter(|&v| v > 0);
        let Some(validity) = validity else {
            return Err(bad("bad UIDVALIDITY", None));
        };
        let bad = |reason| Corrupt {
            reason,
            validity: Some(validity),
        };
        let next = n
            .strip_prefix('N')
            .and_then(number)
            .filter(|&n| n > 0)
            .ok_or(bad("bad UIDNEXT"))?;
        let lines = lines(rest).map_err(bad)?;
        let (trailer, body) = match lines.split_last() {
            Some((t, b)) => (Some(*t), b),
            None => (None, &[][..]),
        };
        let mut records = Vec::with_capacity(body.len());
        let mut seen = std::collections::HashSet::with_capacity(body.len());
        let mut last = 0u32;
        for line in body {
            let (uid, base) = line.split_once(' ').ok_or(bad("bad record"))?;
            let uid = number(uid).filter(|&u| u > 0).ok_or(bad("bad UID"))?;
            if uid <= last || uid >= next {
                return Err(bad("UIDs out of order or not below UIDNEXT"));
            }
            if !valid_base(base) || !seen.insert(base) {
                return Err(bad("bad or repeated base name"));
            }
            last = uid;
            records.push((uid, base.to_string()));
        }
        check_trailer(trailer, records.len()).map_err(bad)?;
        Ok(UidList {
            validity,
            next,
            records,
        })
    }

    /// The file's bytes (what [`UidList::parse`] reads back).
    pub fn serialise(&self) -> Vec<u8> {
        let mut out = String::with_capacity(48 + self.records.len() * 72);
        out.push_str(&format!(
            "{UIDLIST_MAGIC} {VERSION} V{} N{}\n",
            self.validity, self.next
        ));
        for (uid, base) in &self.records {
            out.push_str(&format!("{uid} {base}\n"));
        }
        out.push_str(&format!("end {}\n", self.records.len()));
        out.into_bytes()
    }
}

/// A folder's keywords: which Maildir flag letter (`a`–`z`) stands for which IMAP keyword.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keywords {
    names: [Option<String>; 26],
}

impl Keywords {
    /// No keywords.
    pub fn new() -> Keywords {
        Keywords::default()
    }

    /// Parses a whole keywords file.
    pub fn parse(data: &[u8]) -> Result<Keywords, Corrupt> {
        let bad = |reason| Corrupt {
            reason,
            validity: None,
        };
        let lines = lines(data).map_err(bad)?;
        let (header, rest) = lines.split_first().ok_or(bad("empty"))?;
        if *header != format!("{KEYWORDS_MAGIC} {VERSION}") {
            return Err(bad("bad header"));
        }
        let (trailer, body) = match rest.split_last() {
            Some((t, b)) => (Some(*t), b),
            None => (None, &[][..]),
        };
        let mut k = Keywords::new();
        for line in body {
            let (letter, name) = line.split_once(' ').ok_or(bad("bad record"))?;
            let i = match letter.as_bytes() {
                [l] => KEYWORD_LETTERS.iter().position(|c| c == l),
                _ => None,
            }
            .ok_or(bad("bad letter"))?;
            if !valid_keyword(name) || k.names[i].is_some() || k.letter(name).is_some() {
                return Err(bad("bad or repeated keyword"));
            }
            k.names[i] = Some(name.to_string());
        }
        check_trailer(trailer, body.len()).map_err(bad)?;
        Ok(k)
    }

    /// The file's bytes (what [`Keywords::parse`] reads back).
    pub fn serialise(&self) -> Vec<u8> {
        let mut out = format!("{KEYWORDS_MAGIC} {VERSION}\n");
        let mut n = 0;
        for (letter, name) in self.iter() {
            out.push_str(&format!("{letter} {name}\n"));
            n += 1;
        }
        out.push_str(&format!("end {n}\n"));
        out.into_bytes()
    }

    /// The letter of keyword `name` (exact match), if it has one.
    pub fn letter(&self, name: &str) -> Option<char> {
        let i = self.names.iter().position(|n| n.as_deref() == Some(name))?;
        Some(char::from(KEYWORD_LETTERS[i]))
    }

    /// The keyword letter `letter` stands for, if any.
    pub fn name(&self, letter: char) -> Option<&str> {
        let i = KEYWORD_LETTERS
            .iter()
            .position(|&c| char::from(c) == letter)?;
        self.names[i].as_deref()
    }

    /// Every (letter, keyword), in letter order.
    pub fn iter(&self) -> impl Iterator<Item = (char, &str)> {
        self.names
            .iter()
            .zip(KEYWORD_LETTERS)
            .filter_map(|(n, &l)| Some((char::from(l), n.as_deref()?)))
    }

    /// Gives `name` the first letter that is free and not in `in_use` (letters found on message
    /// files, which must keep what they mean); None when none is left or the name is invalid.
    pub fn assign(&mut self, name: &str, in_use: &[char]) -> Option<char> {
        if let Some(l) = self.letter(name) {
            return Some(l);
        }
        if !valid_keyword(name) {
            return None;
        }
        let i = (0..26).find(|&i| {
            self.names[i].is_none() && !in_use.contains(&char::from(KEYWORD_LETTERS[i]))
        })?;
        self.names[i] = Some(name.to_string());
        Some(char::from(KEYWORD_LETTERS[i]))
    }
}
