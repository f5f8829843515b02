//! The `imap_message` fuzz target: any bytes as a message file through the IMAP message layer
//! ([`crate::imap::message`]): parse within the limits, ENVELOPE, BODY and BODYSTRUCTURE
//! serialised, every section (HEADER, HEADER.FIELDS(.NOT), TEXT, MIME and part numbers up to
//! three levels) with and without a partial, and SEARCH's decoding. Nothing panics, sizes
//! agree: RFC822.SIZE is the length of BODY[], every plan's length is what it sends, and a
//! partial is the matching slice of the whole section. ENVELOPE, BODY and BODYSTRUCTURE make
//! the parse → serialise → parse round trip: the FETCH response mimapd writes, decoded by
//! imap-codec's response parser, is the very item that was serialised (so no message can make
//! mimapd send a response a client cannot parse).

use std::num::NonZeroU32;

use imap_codec::decode::Decoder as _;
use imap_codec::ResponseCodec;
use imap_types::core::{AString, Vec1};
use imap_types::fetch::{MessageDataItemName, Part, Section};
use imap_types::response::{Data, Response};

use crate::imap::message::{search, Limits, Message};
use crate::imap::response;

/// Every section kind for `numbers` (none: the top-level ones).
fn sections(numbers: Option<Part>) -> Vec<Section<'static>> {
    let names = Vec1::from(AString::try_from("subject").expect("an atom"));
    let mut out = vec![
        Section::Header(numbers.clone()),
        Section::Text(numbers.clone()),
        Section::HeaderFields(numbers.clone(), names.clone()),
        Section::HeaderFieldsNot(numbers.clone(), names),
    ];
    if let Some(n) = numbers {
        out.push(Section::Part(n.clone()));
        out.push(Section::Mime(n));
    }
    out
}

/// Part numbers up to three levels deep, each up to 3.
fn all_numbers() -> Vec<Part> {
    let mut out = Vec::new();
    let n = |x: u32| NonZeroU32::new(x).unwrap_or(NonZeroU32::MIN);
    for a in 1..=3 {
        out.push(vec![n(a)]);
        for b in 1..=3 {
            out.push(vec![n(a), n(b)]);
            for c in 1..=3 {
                out.push(vec![n(a), n(b), n(c)]);
            }
        }
    }
    out.into_iter()
        .filter_map(|v| Vec1::try_from(v).ok().map(Part))
        .collect()
}

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let limits = Limits {
        max_parts: 200,
        max_depth: 20,
        max_header: 64 * 1024,
    };
    let Ok(msg) = Message::parse(data, limits) else {
        return;
    };
    let whole = msg.section(None, None).expect("BODY[] always exists");
    assert_eq!(whole.len(), msg.size(), "RFC822.SIZE is BODY[]'s length");
    assert_eq!(whole.to_vec(data), crate::rfc5322::to_crlf(data));
    for name in [
        MessageDataItemName::Envelope,
        MessageDataItemName::Body,
        MessageDataItemName::BodyStructure,
        MessageDataItemName::Rfc822Header,
    ] {
        let item = msg.fetch_item(&name).expect("a content item");
        let sent = Data::Fetch {
            seq: NonZeroU32::MIN,
            items: Vec1::from(item),
        };
        let wire = response::data(sent.clone());
        assert!(wire.ends_with(b"\r\n"));
        match ResponseCodec::default().decode(&wire) {
            Ok((rest, Response::Data(got))) => {
                assert!(rest.is_empty(), "{name:?}: bytes after the response");
                assert_eq!(got, sent, "{name:?} round trip");
            }
            Ok((_, other)) => panic!("{name:?} decoded as {other:?}"),
            Err(e) => panic!("{name:?}: {e:?} for {:?}", String::from_utf8_lossy(&wire)),
        }
    }
    let mut all: Vec<Section<'static>> = sections(None);
    for n in all_numbers() {
        all.extend(sections(Some(n)));
    }
    for s in &all {
        let Ok(plan) = msg.section(Some(s), None) else {
            continue;
        };
        let bytes = plan.to_vec(data);
        assert_eq!(bytes.len() as u64, plan.len(), "{s:?}");
        for (start, len) in [(0u32, 1u32), (3, 7), (bytes.len() as u32 / 2, 100_000)] {
            let Some(len) = NonZeroU32::new(len) else {
                continue;
            };
            let part = msg
                .section(Some(s), Some((start, len)))
                .expect("same section");
            let from = (start as usize).min(bytes.len());
            let to = (from + len.get() as usize).min(bytes.len());
            assert_eq!(part.to_vec(data), bytes[from..to], "{s:?} <{start}.{len}>");
            assert_eq!(part.len(), (to - from) as u64);
        }
    }
    let content = search::Content::new(&msg);
    let meta = search::Meta {
        seq: 1,
        uid: 1,
        max_seq: 1,
        max_uid: 1,
        flags: &[],
        recent: false,
        internal_day: search::day_of(0, 0),
        size: msg.size(),
    };
    let key = imap_types::search::SearchKey::Text(AString::try_from("a").expect("an atom"));
    let _ = search::matches(&key, &meta, Some(&content));
}

#[cfg(test)]
mod tests {
    use super::run;

    const MIXED: &[u8] = b"From: a@b\nSubject: hi\nContent-Type: multipart/mixed; boundary=XX\n\npre\n--XX\nContent-Type: text/plain\n\nhello\n--XX\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner body\n--XX--\nepilogue\n";

    /// The fuzz target's properties (sizes, partials, and the FETCH response round trip through
    /// imap-codec's decoder) hold on real-looking messages, not only on what the fuzzer finds.
    #[test]
    fn fuzz_properties_hold_on_sample_messages() {
        let encoded = b"From: =?utf-8?q?J=C3=BCrgen?= <j@x>, \"Q \\\"x\\\"\" <q@y>\nTo: undisclosed-recipients:;\nSubject: =?iso-8859-1?b?R3L832Vu?=\nDate: Mon, 2 Jan 2023 10:00:00 +0100\nMessage-ID: <a@b>\nIn-Reply-To: <c@d>\nContent-Type: text/plain; charset=utf-8; name*0*=utf-8''a%20; name*1=b\nContent-Disposition: attachment; filename=\"x y\"\nContent-Language: de, en\nContent-Transfer-Encoding: quoted-printable\n\nStra=C3=9Fe\n";
        for m in [
            MIXED,
            &encoded[..],
            b"",
            b"\n\n",
            b"Subject: \xff\xfe\n\n\x00",
        ] {
            run(m);
        }
    }
}
