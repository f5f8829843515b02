//! Compose mode: `msend --to ADDR --subject TEXT [--attach FILE]... < body.txt` builds a MIME
//! message with mail-builder (RFC 2045-2049; non-ASCII subject and names RFC 2047-encoded,
//! attachment names RFC 2231) instead of reading a finished message.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mail_builder::headers::address::Address;
use mail_builder::MessageBuilder;

use crate::exit;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct Compose {
    /// `From:` (`addr` or `Name <addr>`).
    pub from: String,
    /// `To:` recipients.
    pub to: Vec<String>,
    /// `Cc:` recipients.
    pub cc: Vec<String>,
    /// Blind recipients: envelope only, never in a header.
    pub bcc: Vec<String>,
    /// Subject (any Unicode).
    pub subject: String,
    /// Plain text body.
    pub text: String,
    /// HTML alternative, from a file.
    pub html: Option<PathBuf>,
    /// Files to attach.
    pub attach: Vec<PathBuf>,
    /// Host name for the Message-ID.
    pub hostname: String,
}

/// MIME type by file extension (lower case); `application/octet-stream` when unknown.
pub fn content_type_for(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "text" | "log" | "md" => "text/plain",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "xml" => "application/xml",
        "json" => "application/json",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "ics" => "text/calendar",
        "eml" => "message/rfc822",
        "patch" | "diff" => "text/x-diff",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "odt" => "application/vnd.oasis.opendocument.text",
        _ => "application/octet-stream",
    }
}

/// Splits `Name <addr>` into (name, addr); a bare address has no name.
pub fn split_mailbox(s: &str) -> (Option<String>, String) {
    let s = s.trim();
    match (s.rfind('<'), s.rfind('>')) {
        (Some(l), Some(r)) if l < r => {
            let name = s[..l].trim().trim_matches('"').trim();
            let addr = s[l + 1..r].trim().to_string();
            ((!name.is_empty()).then(|| name.to_string()), addr)
        }
        _ => (None, s.to_string()),
    }
}

fn address(list: &[String]) -> Address<'static> {
    let items: Vec<Address<'static>> = list
        .iter()
        .map(|s| match split_mailbox(s) {
            (Some(n), a) => Address::from((n, a)),
            (None, a) => Address::from(a),
        })
        .collect();
    if items.len() == 1 {
        items
            .into_iter()
            .next()
            .unwrap_or_else(|| Address::from(String::new()))
    } else {
        Address::new_list(items)
    }
}

/// Builds the message bytes (CRLF line ends, no Bcc header).
pub fn build(c: &Compose) -> Result<Vec<u8>> {
    if c.to.is_empty() && c.cc.is_empty() && c.bcc.is_empty() {
        return Err(exit::fail(
            exit::USAGE,
            "compose mode needs --to, --cc or --bcc",
        ));
    }
    let now = crate::clock::now() as i64;
    let mut b = MessageBuilder::new()
        .from(address(std::slice::from_ref(&c.from)))
        .subject(c.subject.clone())
        .message_id(format!("{}@{}", super::message::unique_id(now), c.hostname))
        .date(mail_builder::headers::date::Date::new(now));
    if !c.to.is_empty() {
        b = b.to(address(&c.to));
    }
    if !c.cc.is_empty() {
        b = b.cc(address(&c.cc));
    }
    b = b.text_body(c.text.clone());
    if let Some(h) = &c.html {
        let html = std::fs::read_to_string(h)
            .with_context(|| format!("reading --html {}", h.display()))
            .map_err(|e| exit::fail(exit::NOINPUT, format!("{e:#}")))?;
        b = b.html_body(html);
    }
    for p in &c.attach {
        let data = std::fs::read(p)
            .with_context(|| format!("reading --attach {}", p.display()))
            .map_err(|e| exit::fail(exit::NOINPUT, format!("{e:#}")))?;
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".into());
        b = b.attachment(content_type_for(p), name, data);
    }
    b.write_to_vec().context("building the message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_mailboxes() {
        assert_eq!(content_type_for(Path::new("a/b.PDF")), "application/pdf");
        assert_eq!(content_type_for(Path::new("x")), "application/octet-stream");
        assert_eq!(
            split_mailbox("\"Jo Doe\" <jo@x.test>"),
            (Some("Jo Doe".into()), "jo@x.test".into())
        );
        assert_eq!(split_mailbox("jo@x.test"), (None, "jo@x.test".into()));
    }

    #[test]
    fn builds_without_bcc() {
        let c = Compose {
            from: "Me <me@x.test>".into(),
            to: vec!["a@x.test".into()],
            bcc: vec!["hidden@x.test".into()],
            subject: "Grüße".into(),
            text: "hello\n".into(),
            hostname: "x.test".into(),
            ..Compose::default()
        };
        let m = String::from_utf8(build(&c).unwrap()).unwrap();
        assert!(!m.contains("hidden"));
        assert!(m.contains("Subject: =?utf-8?"), "{m}");
    }
}
