//! Building and serialising server responses (RFC 3501 §7) with [`imap_codec`]: every byte
//! mimapd sends is a [`Response`] value serialised by the codec, so quoting, literals and
//! response codes follow the grammar. A text that is not valid `text` (empty, CR, LF) is
//! replaced rather than sent.

use imap_codec::encode::Encoder as _;
use imap_codec::imap_types::core::{Tag, Text};
use imap_codec::imap_types::response::{
    Bye, Code, CodeOther, CommandContinuationRequest, Data, Response, Status, StatusBody,
    StatusKind, Tagged,
};
use imap_codec::ResponseCodec;

/// A tagged or untagged status response's kind.
pub use imap_codec::imap_types::response::StatusKind as Kind;

/// Serialises one response.
pub fn encode(response: &Response<'_>) -> Vec<u8> {
    ResponseCodec::default().encode(response).dump()
}

/// Serialises one untagged data response (`* ...`).
pub fn data(data: Data<'_>) -> Vec<u8> {
    encode(&Response::Data(data))
}

fn text(t: &str) -> Text<'static> {
    Text::try_from(t.to_string()).unwrap_or_else(|_| Text::unvalidated("Done."))
}

/// `tag OK|NO|BAD [code] text` (RFC 3501 §7.1); `tag` `None` is untagged (`* OK ...`).
pub fn status(tag: Option<&str>, kind: StatusKind, code: Option<Code<'_>>, t: &str) -> Vec<u8> {
    let body = StatusBody {
        kind,
        code,
        text: text(t),
    };
    let status = match tag.and_then(|t| Tag::try_from(t.to_string()).ok()) {
        Some(tag) => Status::Tagged(Tagged { tag, body }),
        None => Status::Untagged(body),
    };
    encode(&Response::Status(status))
}

/// `tag OK text`.
pub fn ok(tag: &str, t: &str) -> Vec<u8> {
    status(Some(tag), StatusKind::Ok, None, t)
}

/// `tag NO text`.
pub fn no(tag: &str, t: &str) -> Vec<u8> {
    status(Some(tag), StatusKind::No, None, t)
}

/// `tag BAD text`, untagged when the tag could not be read.
pub fn bad(tag: Option<&str>, t: &str) -> Vec<u8> {
    status(tag, StatusKind::Bad, None, t)
}

/// A response code the codec has no variant for (RFC 5530's `PRIVACYREQUIRED`, `TOOBIG`...).
pub fn other_code(atom: &'static str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(atom.as_bytes()))
}

/// `* BYE text` (RFC 3501 §7.1.5).
pub fn bye(t: &str) -> Vec<u8> {
    encode(&Response::Status(Status::Bye(Bye {
        code: None,
        text: text(t),
    })))
}

/// A continuation request `+ text` (RFC 3501 §7.5).
pub fn continuation(t: &str) -> Vec<u8> {
    match CommandContinuationRequest::basic(None, t.to_string()) {
        Ok(c) => encode(&Response::CommandContinuationRequest(c)),
        Err(_) => b"+ OK\r\n".to_vec(),
    }
}

/// An empty continuation request `+ ` for a SASL exchange (RFC 3501 §6.2.2: no challenge).
pub fn sasl_continuation() -> Vec<u8> {
    encode(&Response::CommandContinuationRequest(
        CommandContinuationRequest::base64(&b""[..]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_serialise_as_rfc3501_says() {
        assert_eq!(ok("a1", "Done."), b"a1 OK Done.\r\n");
        assert_eq!(bad(None, "Huh."), b"* BAD Huh.\r\n");
        assert_eq!(
            status(
                Some("t"),
                StatusKind::No,
                Some(other_code("PRIVACYREQUIRED")),
                "Use TLS."
            ),
            b"t NO [PRIVACYREQUIRED] Use TLS.\r\n"
        );
        assert_eq!(bye("Bye."), b"* BYE Bye.\r\n");
        assert_eq!(continuation("Ready."), b"+ Ready.\r\n");
        assert_eq!(ok("a", "bad\r\ntext"), b"a OK Done.\r\n");
        let s = String::from_utf8(sasl_continuation()).unwrap();
        assert!(s.starts_with('+') && s.ends_with("\r\n"), "{s:?}");
    }
}
