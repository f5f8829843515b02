//! BODY[section]<partial> (RFC 3501 §6.4.5): which bytes of the file a section is, as a
//! [`Plan`] of file ranges (and, for HEADER.FIELDS, the chosen fields) that is streamed from the
//! file in CRLF form through [`CrlfStream`], so a large attachment is never held in memory.
//!
//! Part numbers follow §6.4.5: a non-multipart message (or part) has a part 1, itself; the parts
//! of a multipart are numbered from 1; the number after a message/rfc822 part's number refers
//! into the encapsulated message's body. HEADER, HEADER.FIELDS(.NOT) and TEXT of a part number
//! need a message/rfc822 part; MIME needs a part number.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::num::NonZeroU32;
use std::ops::Range;

use imap_types::core::{AString, IString, Literal, NString, Vec1};
use imap_types::fetch::{MessageDataItem, MessageDataItemName, Part as PartNumbers, Section};
use imap_types::IntoStatic;

use super::{Kind, Message, Part};
use crate::rfc5322::{self, CrlfStream};

/// Why a section cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionError {
    /// The part number names no part, or a HEADER/TEXT of a part that is no message/rfc822.
    NoSuchPart,
}

/// One piece of a section: a range of the file, or bytes made here (already CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// File bytes, sent in CRLF form.
    File(Range<usize>),
    /// Bytes to send as they are.
    Bytes(Vec<u8>),
}

/// What one BODY[section]<partial> sends: its pieces with their CRLF sizes, and the window of
/// the concatenation that the partial selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pieces: Vec<(Piece, u64)>,
    window: Range<u64>,
    origin: Option<u32>,
}

impl Plan {
    fn new(raw: &[u8], pieces: Vec<Piece>, partial: Option<(u32, NonZeroU32)>) -> Plan {
        let pieces: Vec<(Piece, u64)> = pieces
            .into_iter()
            .map(|p| {
                let len = match &p {
                    Piece::File(r) => rfc5322::crlf_len(raw.get(r.clone()).unwrap_or_default()),
                    Piece::Bytes(b) => b.len() as u64,
                };
                (p, len)
            })
            .collect();
        let total: u64 = pieces.iter().map(|p| p.1).sum();
        // RFC 3501 §6.4.5: a start beyond the end gives an empty string; a length beyond the
        // end is truncated.
        let (window, origin) = match partial {
            Some((start, len)) => {
                let s = u64::from(start).min(total);
                (s..(s + u64::from(len.get())).min(total), Some(start))
            }
            None => (0..total, None),
        };
        Plan {
            pieces,
            window,
            origin,
        }
    }

    /// How many bytes are sent (the literal's size).
    pub fn len(&self) -> u64 {
        self.window.end - self.window.start
    }

    /// Whether nothing is sent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The partial's start, for the response's `BODY[...]<origin>`.
    pub fn origin(&self) -> Option<u32> {
        self.origin
    }

    /// Streams the section from `file` (the message file, opened by the caller through
    /// [`crate::fsroot`]) to `out`, reading in bounded chunks.
    pub fn write_to<R: Read + Seek, W: Write>(&self, file: &mut R, out: &mut W) -> io::Result<()> {
        let mut pos = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let mut converted = Vec::with_capacity(buf.len() * 2);
        for (piece, len) in &self.pieces {
            if pos >= self.window.end {
                break;
            }
            if pos + len <= self.window.start {
                pos += len;
                continue;
            }
            match piece {
                Piece::Bytes(b) => emit(b, &mut pos, &self.window, out)?,
                Piece::File(r) => {
                    file.seek(SeekFrom::Start(r.start as u64))?;
                    let mut left = r.end.saturating_sub(r.start);
                    let mut crlf = CrlfStream::default();
                    while left > 0 && pos < self.window.end {
                        let want = left.min(buf.len());
                        let n = file.read(&mut buf[..want])?;
                        if n == 0 {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "message file shrank while being sent",
                            ));
                        }
                        left -= n;
                        converted.clear();
                        crlf.push(&buf[..n], &mut converted);
                        emit(&converted, &mut pos, &self.window, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The section's bytes from the whole file in memory (tests, fuzzing, small messages).
    pub fn to_vec(&self, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // Reading from memory cannot fail.
        let _ = self.write_to(&mut io::Cursor::new(raw), &mut out);
        out
    }
}

/// Writes the part of `bytes` (at stream position `pos`) that falls into `window`.
fn emit<W: Write>(bytes: &[u8], pos: &mut u64, window: &Range<u64>, out: &mut W) -> io::Result<()> {
    let start = *pos;
    let end = start + bytes.len() as u64;
    *pos = end;
    let from = window.start.max(start);
    let to = window.end.min(end);
    if from < to {
        out.write_all(&bytes[(from - start) as usize..(to - start) as usize])?;
    }
    Ok(())
}

/// The part that part numbers name, and the message whose header HEADER and TEXT mean there
/// (the encapsulated message of a message/rfc822 part, else the part itself).
fn resolve<'p>(
    root: &'p Part,
    numbers: Option<&PartNumbers>,
) -> Result<(&'p Part, &'p Part), SectionError> {
    let mut node = root;
    if let Some(numbers) = numbers {
        let mut top = true;
        for n in numbers.0.as_ref() {
            let i = n.get() as usize - 1;
            // Below the top, a message/rfc822 part's numbers count in its message's body.
            // A leaf's part 1 is itself (Dovecot: BODY[1.1] of a text part in a multipart),
            // except for the top of a non-multipart message, whose part 1 is already itself.
            let container = match (&node.kind, top) {
                (Kind::Message(inner), false) => inner,
                (Kind::Single, false) if std::ptr::eq(node, root) => {
                    return Err(SectionError::NoSuchPart);
                }
                _ => node,
            };
            node = match &container.kind {
                Kind::Multipart(children) => children.get(i).ok_or(SectionError::NoSuchPart)?,
                _ if i == 0 => container,
                _ => return Err(SectionError::NoSuchPart),
            };
            top = false;
        }
    }
    let message = match &node.kind {
        Kind::Message(inner) if numbers.is_some() => inner,
        _ => node,
    };
    Ok((node, message))
}

fn name_matches(name: &[u8], list: &[AString<'_>]) -> bool {
    list.iter().any(|a| name.eq_ignore_ascii_case(a.as_ref()))
}

impl Message<'_> {
    /// The plan for BODY[`section`]<`partial`> (`None` is `BODY[]`, the whole message).
    pub fn section(
        &self,
        section: Option<&Section<'_>>,
        partial: Option<(u32, NonZeroU32)>,
    ) -> Result<Plan, SectionError> {
        let root = self.root();
        let whole_header = |m: &Part| Piece::File(m.start..m.body.start);
        let needs_message = |node: &Part, numbers: Option<&PartNumbers>| {
            // HEADER/TEXT of a part number must name a message/rfc822 part.
            numbers.is_none() || matches!(node.kind, Kind::Message(_))
        };
        let pieces = match section {
            None => vec![Piece::File(0..self.raw().len())],
            Some(Section::Part(numbers)) => {
                let (node, _) = resolve(root, Some(numbers))?;
                vec![Piece::File(node.body.clone())]
            }
            Some(Section::Mime(numbers)) => {
                let (node, _) = resolve(root, Some(numbers))?;
                vec![Piece::File(node.start..node.body.start)]
            }
            Some(Section::Header(numbers)) => {
                let (node, msg) = resolve(root, numbers.as_ref())?;
                if !needs_message(node, numbers.as_ref()) {
                    return Err(SectionError::NoSuchPart);
                }
                vec![whole_header(msg)]
            }
            Some(Section::Text(numbers)) => {
                let (node, msg) = resolve(root, numbers.as_ref())?;
                if !needs_message(node, numbers.as_ref()) {
                    return Err(SectionError::NoSuchPart);
                }
                vec![Piece::File(msg.body.clone())]
            }
            Some(Section::HeaderFields(numbers, names))
            | Some(Section::HeaderFieldsNot(numbers, names)) => {
                let (node, msg) = resolve(root, numbers.as_ref())?;
                if !needs_message(node, numbers.as_ref()) {
                    return Err(SectionError::NoSuchPart);
                }
                let not = matches!(section, Some(Section::HeaderFieldsNot(..)));
                let names = names.as_ref();
                let base = msg.header.start;
                let mut pieces = Vec::new();
                for f in self.fields(msg) {
                    if name_matches(f.name, names) != not {
                        let r = base + f.at..base + f.at + f.raw.len();
                        pieces.push(Piece::File(r));
                        if !f.raw.ends_with(b"\n") {
                            pieces.push(Piece::Bytes(b"\r\n".to_vec()));
                        }
                    }
                }
                // RFC 3501 §6.4.5: the blank line is included in all header fetches.
                pieces.push(Piece::Bytes(b"\r\n".to_vec()));
                pieces
            }
        };
        Ok(Plan::new(self.raw(), pieces, partial))
    }
}

/// A literal holding `bytes` (RFC 3501 §4.3: message data goes as a literal; NUL, which no
/// IMAP string may hold, is dropped).
pub fn literal(bytes: Vec<u8>) -> NString<'static> {
    let bytes = if bytes.contains(&0) {
        bytes.into_iter().filter(|&b| b != 0).collect()
    } else {
        bytes
    };
    NString(Literal::try_from(bytes).ok().map(IString::Literal))
}

impl Message<'_> {
    /// The data of the content FETCH item `name` (RFC 3501 §6.4.5), built in memory: ENVELOPE,
    /// BODY, BODYSTRUCTURE, RFC822.SIZE, RFC822(.HEADER/.TEXT) and BODY[section]<partial>
    /// (a section naming no part is an empty string, as Dovecot sends it; header field names
    /// are echoed in upper case, as Dovecot does). `None` for the items the store
    /// answers (FLAGS, UID, INTERNALDATE ...). A driver sending large sections streams
    /// [`Message::section`]'s plan from the file instead.
    pub fn fetch_item(&self, name: &MessageDataItemName<'_>) -> Option<MessageDataItem<'static>> {
        let whole = |s: Option<Section<'static>>| {
            literal(
                self.section(s.as_ref(), None)
                    .map_or(Vec::new(), |p| p.to_vec(self.raw())),
            )
        };
        Some(match name {
            MessageDataItemName::Envelope => MessageDataItem::Envelope(super::envelope::envelope(
                self.bytes(&self.root().header),
            )),
            MessageDataItemName::Body => MessageDataItem::Body(self.body()),
            MessageDataItemName::BodyStructure => {
                MessageDataItem::BodyStructure(self.body_structure())
            }
            MessageDataItemName::Rfc822Size => {
                MessageDataItem::Rfc822Size(u32::try_from(self.size()).unwrap_or(u32::MAX))
            }
            MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(whole(None)),
            MessageDataItemName::Rfc822Header => {
                MessageDataItem::Rfc822Header(whole(Some(Section::Header(None))))
            }
            MessageDataItemName::Rfc822Text => {
                MessageDataItem::Rfc822Text(whole(Some(Section::Text(None))))
            }
            MessageDataItemName::BodyExt {
                section, partial, ..
            } => {
                let plan = self.section(section.as_ref(), *partial);
                MessageDataItem::BodyExt {
                    section: section.clone().map(|s| upper_names(s.into_static())),
                    origin: partial.map(|p| p.0),
                    data: literal(plan.map_or(Vec::new(), |p| p.to_vec(self.raw()))),
                }
            }
            _ => return None,
        })
    }
}

/// `section` with its HEADER.FIELDS names in upper case (field names are case-insensitive,
/// RFC 5322 §1.2.2; Dovecot echoes them so).
fn upper_names(section: Section<'static>) -> Section<'static> {
    let up = |names: Vec1<AString<'static>>| {
        let v: Vec<AString<'static>> = names
            .into_iter()
            .map(|n| {
                let u = n.as_ref().to_ascii_uppercase();
                AString::try_from(u).unwrap_or(n)
            })
            .collect();
        Vec1::try_from(v).map_err(|_| ())
    };
    match section {
        Section::HeaderFields(p, names) => match up(names.clone()) {
            Ok(n) => Section::HeaderFields(p, n),
            Err(()) => Section::HeaderFields(p, names),
        },
        Section::HeaderFieldsNot(p, names) => match up(names.clone()) {
            Ok(n) => Section::HeaderFieldsNot(p, n),
            Err(()) => Section::HeaderFieldsNot(p, names),
        },
        other => other,
    }
}
