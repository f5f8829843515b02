//! Unit tests of the message layer: structure, sizes, sections, search (the differential
//! test against Dovecot is tests/imap_message.rs).

use std::num::NonZeroU32;

use imap_codec::imap_types::fetch::{Part as Numbers, Section};
use imap_types::core::Vec1;

use super::*;

const MIXED: &[u8] = b"From: a@b\nSubject: hi\nContent-Type: multipart/mixed; boundary=XX\n\npre\n--XX\nContent-Type: text/plain\n\nhello\n--XX\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner body\n--XX--\nepilogue\n";

fn numbers(n: &[u32]) -> Numbers {
    let v: Vec<NonZeroU32> = n.iter().map(|&x| NonZeroU32::new(x).unwrap()).collect();
    Numbers(Vec1::try_from(v).unwrap())
}

fn sec(m: &Message<'_>, s: Option<Section<'_>>, partial: Option<(u32, u32)>) -> Vec<u8> {
    let p = partial.map(|(a, b)| (a, NonZeroU32::new(b).unwrap()));
    let plan = m.section(s.as_ref(), p).unwrap();
    let out = plan.to_vec(m.raw());
    assert_eq!(out.len() as u64, plan.len());
    out
}

#[test]
fn structure_offsets_and_sections() {
    let m = Message::parse(MIXED, Limits::default()).unwrap();
    assert_eq!(m.size(), crate::rfc5322::to_crlf(MIXED).len() as u64);
    let Kind::Multipart(parts) = &m.root().kind else {
        panic!("not multipart")
    };
    assert_eq!(parts.len(), 2);
    assert_eq!(m.bytes(&parts[0].body), b"hello");
    assert_eq!(sec(&m, Some(Section::Part(numbers(&[1]))), None), b"hello");
    assert_eq!(
        sec(&m, Some(Section::Mime(numbers(&[1]))), None),
        b"Content-Type: text/plain\r\n\r\n"
    );
    assert_eq!(
        sec(&m, Some(Section::Header(Some(numbers(&[2])))), None),
        b"Subject: inner\r\n\r\n"
    );
    assert_eq!(
        sec(&m, Some(Section::Part(numbers(&[2, 1]))), None),
        b"inner body"
    );
    assert_eq!(
        sec(&m, Some(Section::Text(Some(numbers(&[2])))), None),
        b"inner body"
    );
    assert!(m
        .section(Some(&Section::Part(numbers(&[3]))), None)
        .is_err());
    // A leaf's part 1 is itself (as Dovecot answers); a part 2 of it is none.
    assert_eq!(
        sec(&m, Some(Section::Part(numbers(&[1, 1]))), None),
        b"hello"
    );
    assert!(m
        .section(Some(&Section::Part(numbers(&[1, 2]))), None)
        .is_err());
    let names =
        Vec1::try_from(vec![imap_types::core::AString::try_from("SUBJECT").unwrap()]).unwrap();
    assert_eq!(
        sec(&m, Some(Section::HeaderFields(None, names.clone())), None),
        b"Subject: hi\r\n\r\n"
    );
    assert_eq!(sec(&m, None, Some((1, 4))), b"rom:");
    assert_eq!(sec(&m, None, Some((10_000, 4))), b"");
    let bs = m.body_structure();
    let items = Vec1::from(imap_types::fetch::MessageDataItem::BodyStructure(bs));
    let wire = crate::imap::response::data(imap_types::response::Data::Fetch {
        seq: NonZeroU32::MIN,
        items,
    });
    assert_eq!(
        String::from_utf8_lossy(&wire),
        "* 1 FETCH (BODYSTRUCTURE ((\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7bit\" 28 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0 NIL NIL NIL NIL) 2 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"XX\") NIL NIL NIL))\r\n"
    );
}

#[test]
fn limits_fail_cleanly() {
    let mut deep = Vec::new();
    for _ in 0..60 {
        deep.extend_from_slice(b"Content-Type: message/rfc822\n\n");
    }
    assert_eq!(
        Message::parse(&deep, Limits::default()).unwrap_err(),
        ParseError::TooDeep(50)
    );
    let mut many = b"Content-Type: multipart/mixed; boundary=b\n\n".to_vec();
    for _ in 0..2100 {
        many.extend_from_slice(b"--b\n\nx\n");
    }
    assert_eq!(
        Message::parse(&many, Limits::default()).unwrap_err(),
        ParseError::TooManyParts(2000)
    );
    let big = vec![b'a'; 2 * 1024 * 1024];
    assert_eq!(
        Message::parse(&big, Limits::default()).unwrap_err(),
        ParseError::HeaderTooLarge(1024 * 1024)
    );
}

#[test]
fn search_decodes_text() {
    let raw = b"From: =?utf-8?q?J=C3=BCrgen?= <j@x>\nSubject: =?iso-8859-1?b?R3L832Vu?=\nDate: Mon, 2 Jan 2023 10:00:00 +0100\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nStra=C3=9Fe caf=C3=A9\n";
    let m = Message::parse(raw, Limits::default()).unwrap();
    let c = search::Content::new(&m);
    let meta = search::Meta {
        seq: 1,
        uid: 7,
        max_seq: 1,
        max_uid: 7,
        flags: &[],
        recent: false,
        internal_day: search::day_of(0, 0),
        size: m.size(),
    };
    let key = |s: &str| {
        use imap_codec::decode::Decoder;
        // 8-bit strings go as literals (CHARSET UTF-8, RFC 3501 §6.4.4).
        let line = match s.split_once(' ') {
            Some((k, v)) if !v.is_ascii() => {
                format!("a SEARCH CHARSET UTF-8 {k} {{{}+}}\r\n{v}\r\n", v.len())
            }
            _ => format!("a SEARCH {s}\r\n"),
        };
        let (_, cmd) = imap_codec::CommandCodec::default()
            .decode(line.as_bytes())
            .unwrap();
        let imap_types::command::CommandBody::Search { criteria, .. } = cmd.body else {
            panic!()
        };
        imap_types::IntoStatic::into_static(criteria.into_inner().into_iter().next().unwrap())
    };
    for (k, want) in [
        ("FROM jürgen", true),
        ("SUBJECT grüßen", true),
        ("SUBJECT GRÜX", false),
        ("BODY STRASSE", false),
        ("BODY straße", true),
        ("TEXT CAFÉ", true),
        ("SENTON 2-Jan-2023", true),
        ("UID 7", true),
        ("UID 8:*", true),
        ("SEEN", false),
        ("NOT SEEN", true),
        ("LARGER 10000", false),
    ] {
        let k = key(k);
        assert_eq!(search::matches(&k, &meta, Some(&c)), want, "{k:?}");
    }
    assert!(!search::needs_content(&key("OR SEEN UID 1:4")));
    assert!(search::needs_content(&key("NOT BODY x")));
}

#[test]
fn streamed_sections_cross_read_chunks() {
    // A CRLF split across the 64 KiB read chunks, bare LFs, and a partial in the middle.
    let mut raw = b"Subject: big\n\n".to_vec();
    while raw.len() < 65_535 {
        raw.push(b'x');
    }
    raw.extend_from_slice(b"\r\nline\nmore\r\n");
    raw.extend(std::iter::repeat_n(b'y', 70_000));
    let m = Message::parse(&raw, Limits::default()).unwrap();
    let crlf = crate::rfc5322::to_crlf(&raw);
    assert_eq!(sec(&m, None, None), crlf);
    assert_eq!(
        sec(&m, None, Some((65_530, 20))),
        crlf[65_530..65_550].to_vec()
    );
    let text = sec(&m, Some(Section::Text(None)), None);
    assert_eq!(text, crate::rfc5322::to_crlf(&raw[14..]));
}
