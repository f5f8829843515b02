//! Dovecot's `dovecot-uidlist` (version 3) and `dovecot-keywords` text formats, sans-IO: parse
//! and serialise. The facts come from Dovecot 2.3's `maildir-uidlist.c` and
//! `maildir-keywords.c` and from files the peers' Dovecot wrote (tests/imap_store.rs checks
//! both directions against it).
//!
//! `dovecot-uidlist`:
//! ```text
//! 3 V<uidvalidity> N<nextuid> G<mailbox guid, 32 hex digits> [<key><value> ...]
//! <uid> [<key><value> ...] :<base name>
//! ```
//! Header and record fields are a letter and a value, separated by spaces; a record's fields
//! end at ` :`, and the rest of the line is the base name (the file name before `:2,`).
//! Dovecot appends records in place without rewriting the header, so the header's `N` may be
//! stale: UIDNEXT is the greater of it and the last UID + 1 (as Dovecot reads it). Fields we do
//! not use (header extensions, record fields such as `W<vsize>`, `S<size>`, `G<guid>`) are kept
//! verbatim, so that Dovecot finds what it wrote and does not rebuild the list. A last line
//! without `\n` is a record still being appended (or a crashed append) and is ignored, as
//! Dovecot's line reader does; [`UidList::complete`] tells a writer whether it may append.
//!
//! `dovecot-keywords`: lines `<index> <keyword>`, index 0–25 standing for the info-suffix
//! letters `a`–`z`. Dovecot skips lines it cannot use, and so do we (a keyword name is lost at
//! worst, never a letter's meaning changed).

use std::collections::HashMap;

/// The uid list version Dovecot v1.1 and later write.
pub const VERSION: u8 = b'3';
/// Longest keyword accepted (bytes).
pub const MAX_KEYWORD: usize = 200;
/// The Maildir flag letters keywords map to, in index order (Dovecot's `dovecot-keywords`).
pub const KEYWORD_LETTERS: &[u8; 26] = b"abcdefghijklmnopqrstuvwxyz";

/// One record of a uid list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The message's UID.
    pub uid: u32,
    /// The record's extension fields (`W123`, `G…`), verbatim and in order.
    pub ext: Vec<String>,
    /// The base name: the message file's name before the info separator `:`.
    pub base: String,
}

/// A parsed `dovecot-uidlist`: UIDVALIDITY, UIDNEXT, the mailbox GUID, header fields we do not
/// use, and the records in increasing UID order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidList {
    /// UIDVALIDITY (RFC 3501 §2.3.1.1), never 0.
    pub validity: u32,
    /// UIDNEXT: above every UID in the records (and never below the header's `N`).
    pub next: u32,
    /// The mailbox GUID (`G`, 32 lower case hex digits), which Dovecot requires.
    pub guid: String,
    /// Other header fields, verbatim and in order.
    pub header_ext: Vec<String>,
    /// The records, UIDs strictly increasing and below `next`, base names distinct.
    pub records: Vec<Record>,
    /// Whether the data ended with a whole line (a writer may append to it).
    pub complete: bool,
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

/// Whether `s` can be a base name in the list: nonempty, no `/` (Dovecot refuses it), no `:`
/// (the info separator), no line end or NUL, no leading or trailing space (which the record
/// grammar could not carry).
pub fn valid_base(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(' ')
        && !s.ends_with(' ')
        && !s
            .bytes()
            .any(|b| matches!(b, b'/' | b':' | b'\n' | b'\r' | 0))
}

/// Whether `s` can be a keyword: an IMAP `atom` (RFC 3501 §9: no atom-specials `(){ %*"\]`, no
/// controls, no space) not starting with `\` (that is a system flag), at most [`MAX_KEYWORD`].
pub fn valid_keyword(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_KEYWORD
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
}

/// Whether `g` is a GUID as Dovecot writes it: 32 hex digits.
pub fn valid_guid(g: &str) -> bool {
    g.len() == 32 && g.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A decimal number, as Dovecot's `str_to_uint` reads it (digits only).
fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A field (`<key><value>`): key an ASCII upper case letter (Dovecot's valid extension keys),
/// value without space.
fn valid_field(f: &str) -> bool {
    f.as_bytes().first().is_some_and(u8::is_ascii_uppercase) && !f.contains(' ')
}

impl UidList {
    /// An empty list with a new UIDVALIDITY and mailbox GUID.
    pub fn fresh(validity: u32, guid: String) -> UidList {
        UidList {
            validity: validity.max(1),
            next: 1,
            guid,
            header_ext: Vec::new(),
            records: Vec::new(),
            complete: true,
        }
    }

    /// Parses a uid list file (see the module doc). The header is read first, so a file
    /// damaged after it still reports its UIDVALIDITY. A missing GUID is not corruption (old
    /// Dovecot versions did not write one): `guid` is then empty and a writer adds one.
    pub fn parse(data: &[u8]) -> Result<UidList, Corrupt> {
        let bad = |reason, validity| Corrupt { reason, validity };
        // Only whole lines count (a partial last line is an append in progress).
        let (whole, complete) = match data.iter().rposition(|&b| b == b'\n') {
            Some(i) => (&data[..=i], i + 1 == data.len()),
            None => return Err(bad("no header", None)),
        };
        let text = std::str::from_utf8(whole).map_err(|_| bad("not UTF-8", None))?;
        let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
        let header = lines.next().unwrap_or("");
        let mut h = header.split(' ').filter(|f| !f.is_empty());
        if h.next() != Some("3") {
            return Err(bad("not a version 3 uid list", None));
        }
        let (mut validity, mut next, mut guid) = (None, None, String::new());
        let mut header_ext = Vec::new();
        for field in h {
            // The key is one ASCII byte, so `field[1..]` is at a char boundary.
            match field.as_bytes().first() {
                Some(b'V') => validity = number(&field[1..]).filter(|&v| v > 0),
                Some(b'N') => next = number(&field[1..]).filter(|&n| n > 0),
                Some(b'G') if valid_guid(&field[1..]) => guid = field[1..].to_ascii_lowercase(),
                Some(b'G') => return Err(bad("bad mailbox GUID", validity)),
                // Dovecot keeps any other header field, and so do we.
                _ => header_ext.push(field.to_string()),
            }
        }
        let Some(validity) = validity else {
            return Err(bad("bad UIDVALIDITY", None));
        };
        let bad = |reason| Corrupt {
            reason,
            validity: Some(validity),
        };
        let mut next = next.ok_or(bad("bad UIDNEXT"))?;
        let mut records: Vec<Record> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut last = 0u32;
        for line in lines {
            let (uid, rest) = line.split_once(' ').ok_or(bad("bad record"))?;
            let uid = number(uid).filter(|&u| u > 0).ok_or(bad("bad UID"))?;
            if uid <= last || uid == u32::MAX {
                return Err(bad("UIDs out of order"));
            }
            last = uid;
            let rest = rest.trim_start_matches(' ');
            let (fields, base) = if let Some(base) = rest.strip_prefix(':') {
                ("", base)
            } else {
                rest.split_once(" :")
                    .ok_or(bad("record without base name"))?
            };
            // Dovecot drops a record field whose key is not a capital letter (and rewrites).
            let ext: Vec<String> = fields
                .split(' ')
                .filter(|f| valid_field(f))
                .map(str::to_string)
                .collect();
            if !valid_base(base) {
                return Err(bad("bad base name"));
            }
            // Dovecot: a base name listed again (a file moved back after an expunge) has the
            // later UID.
            if let Some(i) = index.remove(base) {
                records.remove(i);
                index.values_mut().filter(|j| **j > i).for_each(|j| *j -= 1);
            }
            index.insert(base.to_string(), records.len());
            records.push(Record {
                uid,
                ext,
                base: base.to_string(),
            });
        }
        if next <= last {
            next = last + 1;
        }
        Ok(UidList {
            validity,
            next,
            guid,
            header_ext,
            records,
            complete,
        })
    }

    /// The header line as Dovecot writes it: `3 V<v> N<n> G<guid>` and the kept fields (no
    /// `G` while the GUID is unknown: an empty one would not parse back).
    pub fn header(&self) -> String {
        let mut out = format!("3 V{} N{}", self.validity, self.next);
        if !self.guid.is_empty() {
            out.push_str(&format!(" G{}", self.guid));
        }
        for f in &self.header_ext {
            out.push(' ');
            out.push_str(f);
        }
        out.push('\n');
        out
    }

    /// One record's line, as Dovecot writes it (`<uid> [fields ]:<base>`).
    pub fn record_line(r: &Record) -> String {
        let mut out = r.uid.to_string();
        for f in &r.ext {
            out.push(' ');
            out.push_str(f);
        }
        out.push_str(" :");
        out.push_str(&r.base);
        out.push('\n');
        out
    }

    /// The whole file's bytes (what [`UidList::parse`] reads back).
    pub fn serialise(&self) -> Vec<u8> {
        let mut out = self.header();
        for r in &self.records {
            out.push_str(&UidList::record_line(r));
        }
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

    /// Parses a `dovecot-keywords` file. Lines that are not `<index 0-25> <keyword>`, or that
    /// repeat an index or a keyword, are skipped (the first one counts), as Dovecot does.
    pub fn parse(data: &[u8]) -> Keywords {
        let mut k = Keywords::new();
        for line in data.split(|&b| b == b'\n') {
            let Ok(line) = std::str::from_utf8(line) else {
                continue;
            };
            let Some((idx, name)) = line.split_once(' ') else {
                continue;
            };
            let Some(i) = number(idx).map(|i| i as usize).filter(|&i| i < 26) else {
                continue;
            };
            if valid_keyword(name) && k.names[i].is_none() && k.letter(name).is_none() {
                k.names[i] = Some(name.to_string());
            }
        }
        k
    }

    /// The file's bytes (what [`Keywords::parse`] reads back), as Dovecot writes it.
    pub fn serialise(&self) -> Vec<u8> {
        let mut out = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if let Some(n) = n {
                out.push_str(&format!("{i} {n}\n"));
            }
        }
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
