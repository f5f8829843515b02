//! FETCH BODY and BODYSTRUCTURE (RFC 3501 §7.4.2): the MIME tree as IMAP describes it, the
//! extension data (body MD5, disposition, language, location; RFC 3501 §7.4.2 and RFC 2183)
//! only in BODYSTRUCTURE.

use imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_types::core::{IString, Vec1};

use super::envelope::{envelope, istring, nstring};
use super::header::ContentType;
use super::{Kind, Message, Part};
use crate::rfc5322;
use crate::rfc5322::unfold;

impl Message<'_> {
    /// BODYSTRUCTURE: the structure with extension data.
    pub fn body_structure(&self) -> BodyStructure<'static> {
        structure(self, self.root(), true)
    }

    /// BODY: the non-extensible structure (no extension data, RFC 3501 §7.4.2).
    pub fn body(&self) -> BodyStructure<'static> {
        structure(self, self.root(), false)
    }
}

/// The number of lines of `body` (RFC 3501 §7.4.2 "size of the body in text lines"): its
/// line ends, as Dovecot counts them (a last line without one does not count; the line end
/// before a boundary belongs to the boundary).
pub fn lines(body: &[u8]) -> u32 {
    let ends = body.iter().filter(|&&b| b == b'\n').count();
    u32::try_from(ends).unwrap_or(u32::MAX)
}

fn params(ct: &ContentType) -> Vec<(IString<'static>, IString<'static>)> {
    ct.params
        .iter()
        .map(|(n, v)| (istring(n.as_bytes()), istring(v)))
        .collect()
}

/// The first field `name` of `part`, unfolded.
fn field(msg: &Message<'_>, part: &Part, name: &[u8]) -> Option<Vec<u8>> {
    msg.fields(part)
        .find(|f| f.is(name))
        .map(|f| unfold(f.value))
}

/// Disposition, language and location (the extension data both part kinds share).
fn disposition(msg: &Message<'_>, part: &Part) -> Disposition<'static> {
    let disposition = msg
        .fields(part)
        .find(|f| f.is(b"content-disposition"))
        .and_then(|f| ContentType::parse_disposition(f.value))
        .map(|d| (istring(d.written.0.as_bytes()), params(&d)));
    let language: Vec<IString<'static>> = field(msg, part, b"content-language")
        .map(|v| {
            v.split(|&b| b == b',')
                .map(crate::rfc5322::trim)
                .filter(|l| !l.is_empty())
                .map(istring)
                .collect()
        })
        .unwrap_or_default();
    Disposition {
        disposition,
        tail: Some(Language {
            language,
            tail: Some(Location {
                location: nstring(field(msg, part, b"content-location").as_deref()),
                extensions: Vec::new(),
            }),
        }),
    }
}

fn structure(msg: &Message<'_>, part: &Part, ext: bool) -> BodyStructure<'static> {
    if let Kind::Multipart(children) = &part.kind {
        let bodies: Vec<BodyStructure<'static>> =
            children.iter().map(|c| structure(msg, c, ext)).collect();
        if let Ok(bodies) = Vec1::try_from(bodies) {
            return BodyStructure::Multi {
                bodies,
                subtype: istring(part.media.written.1.as_bytes()),
                extension_data: ext.then(|| MultiPartExtensionData {
                    parameter_list: params(&part.media),
                    tail: Some(disposition(msg, part)),
                }),
            };
        }
    }
    let body_bytes = msg.bytes(&part.body);
    let basic = BasicFields {
        parameter_list: params(&part.media),
        id: nstring(field(msg, part, b"content-id").as_deref()),
        description: nstring(field(msg, part, b"content-description").as_deref()),
        content_transfer_encoding: istring(
            &field(msg, part, b"content-transfer-encoding")
                .map(|v| v.to_ascii_lowercase())
                .unwrap_or_else(|| b"7bit".to_vec()),
        ),
        size: u32::try_from(rfc5322::crlf_len(body_bytes)).unwrap_or(u32::MAX),
    };
    let specific = match &part.kind {
        Kind::Message(inner) => SpecificFields::Message {
            envelope: Box::new(envelope(msg.bytes(&inner.header))),
            body_structure: Box::new(structure(msg, inner, ext)),
            number_of_lines: lines(body_bytes),
        },
        _ if part.media.kind == "text" => SpecificFields::Text {
            subtype: istring(part.media.written.1.as_bytes()),
            number_of_lines: lines(body_bytes),
        },
        _ => SpecificFields::Basic {
            r#type: istring(part.media.written.0.as_bytes()),
            subtype: istring(part.media.written.1.as_bytes()),
        },
    };
    BodyStructure::Single {
        body: Body { basic, specific },
        extension_data: ext.then(|| SinglePartExtensionData {
            md5: nstring(field(msg, part, b"content-md5").as_deref()),
            tail: Some(disposition(msg, part)),
        }),
    }
}
