//! Differential test of the IMAP message layer (`mailkit::imap::message`, issue 13) against
//! REAL Dovecot IMAP: the corpus in tests/data/imap-messages/ goes into the peers' Dovecot
//! Maildir of user `imapmsg`; for every message, Dovecot's FETCH of ENVELOPE, BODYSTRUCTURE,
//! BODY, RFC822.SIZE and many BODY[section]<partial> items is compared byte for byte with ours
//! serialised through imap-codec, and a table of SEARCH keys is run through Dovecot's SEARCH
//! and ours. Deliberate differences are listed in [`normalise`] with their reasons.
//!
//! Run: `tests/run --test imap_message` (needs the peers; a missing Dovecot fails).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::fetch::MacroOrMessageDataItemNames;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::response::Data;
use imap_codec::CommandCodec;
use mailkit::imap::message::{search, Limits, Message};

/// A minimal IMAP client that returns raw response bytes (literals included).
struct Imap {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
}

impl Imap {
    fn connect(port: u16) -> Imap {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to Dovecot IMAP");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let w = s.try_clone().unwrap();
        let mut imap = Imap {
            r: BufReader::new(s),
            w,
            tag: 0,
        };
        let greeting = imap.response();
        assert!(greeting.starts_with(b"* OK"), "{greeting:?}");
        imap
    }

    /// One whole response: a line, and after each `{n}` literal its bytes and the rest.
    fn response(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            let n = self
                .r
                .read_until(b'\n', &mut out)
                .expect("read from Dovecot");
            assert!(
                n > 0,
                "Dovecot closed the connection: {:?}",
                String::from_utf8_lossy(&out)
            );
            let line = &out[start..];
            let Some(open) = line.iter().rposition(|&b| b == b'{') else {
                return out;
            };
            let Some(len) = line[open + 1..]
                .strip_suffix(b"}\r\n")
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| d.parse::<usize>().ok())
            else {
                return out;
            };
            let mut lit = vec![0u8; len];
            self.r.read_exact(&mut lit).unwrap();
            out.extend_from_slice(&lit);
        }
    }

    /// Sends `command` and returns its untagged responses and the tagged one.
    fn cmd(&mut self, command: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>) {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        let mut line = format!("{tag} ").into_bytes();
        line.extend_from_slice(command);
        line.extend_from_slice(b"\r\n");
        self.w.write_all(&line).unwrap();
        let mut untagged = Vec::new();
        loop {
            let r = self.response();
            if r.starts_with(tag.as_bytes()) {
                return (untagged, r);
            }
            untagged.push(r);
        }
    }

    fn ok(&mut self, command: &[u8]) -> Vec<Vec<u8>> {
        let (untagged, tagged) = self.cmd(command);
        assert!(
            tagged.split(|&b| b == b' ').nth(1) == Some(b"OK"),
            "{} -> {}",
            String::from_utf8_lossy(command),
            String::from_utf8_lossy(&tagged)
        );
        untagged
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/imap-messages");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "corpus missing: {dir:?}");
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// Maildir info flags per corpus index (Seen, Flagged, Replied, Trashed, Draft).
const FLAGS: &[&str] = &[
    "", "S", "FS", "RS", "ST", "D", "F", "S", "", "RS", "FST", "S",
];

/// The internal date (file mtime) of corpus message `i`: noon UTC, 40 days apart from
/// 2020-01-15, so BEFORE/ON/SINCE never sit on a day boundary.
fn mtime(i: usize) -> i64 {
    1_579_089_600 + i as i64 * 40 * 86_400
}

struct Fixture {
    dovecot: Imap,
    /// Per sequence number (index seq-1): corpus index.
    by_seq: Vec<usize>,
    corpus: Vec<(String, Vec<u8>)>,
}

fn setup() -> Fixture {
    let mail_dir = common::peer("PEER_MAIL_DIR");
    let port: u16 = common::peer("PEER_IMAP_PORT").parse().unwrap();
    let md = Path::new(&mail_dir).join("imapmsg");
    let _ = std::fs::remove_dir_all(&md);
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    let corpus = corpus();
    for (i, (_, bytes)) in corpus.iter().enumerate() {
        let name = format!("{}.M{i}P1.imapmsg:2,{}", mtime(i), FLAGS[i % FLAGS.len()]);
        let path = md.join("cur").join(name);
        std::fs::write(&path, bytes).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime(i) as u64))
            .unwrap();
    }
    let st = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&md)
        .status()
        .unwrap();
    assert!(st.success());
    let mut dovecot = Imap::connect(port);
    dovecot.ok(b"LOGIN imapmsg password");
    dovecot.ok(b"EXAMINE INBOX");
    // Which file is which sequence number: by content (Dovecot sends the CRLF form).
    let mut by_seq = Vec::new();
    for seq in 1..=corpus.len() {
        let untagged = dovecot.ok(format!("FETCH {seq} (BODY.PEEK[])").as_bytes());
        let resp = untagged
            .iter()
            .find(|r| r.starts_with(format!("* {seq} FETCH").as_bytes()))
            .expect("FETCH response");
        let open = resp.iter().position(|&b| b == b'{').unwrap();
        let body_at = open + resp[open..].windows(3).position(|w| w == b"}\r\n").unwrap() + 3;
        let data = &resp[body_at..resp.len() - 3];
        let idx = corpus
            .iter()
            .position(|(_, b)| mailkit::rfc5322::to_crlf(b) == data)
            .unwrap_or_else(|| panic!("message {seq} is no corpus file"));
        by_seq.push(idx);
    }
    Fixture {
        dovecot,
        by_seq,
        corpus,
    }
}

/// The FETCH items compared for every message.
const ITEMS: &[&str] = &[
    "ENVELOPE",
    "BODYSTRUCTURE",
    "BODY",
    "RFC822.SIZE",
    "RFC822.HEADER",
    "BODY.PEEK[]",
    "BODY.PEEK[HEADER]",
    "BODY.PEEK[TEXT]",
    "BODY.PEEK[1]",
    "BODY.PEEK[1.MIME]",
    "BODY.PEEK[2]",
    "BODY.PEEK[2.MIME]",
    "BODY.PEEK[1.1]",
    "BODY.PEEK[2.1]",
    "BODY.PEEK[2.2]",
    "BODY.PEEK[2.HEADER]",
    "BODY.PEEK[2.TEXT]",
    "BODY.PEEK[2.1.MIME]",
    "BODY.PEEK[3]",
    "BODY.PEEK[3.MIME]",
    "BODY.PEEK[HEADER.FIELDS (Subject From)]",
    "BODY.PEEK[HEADER.FIELDS (X-NOT-THERE)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (Subject Date)]",
    "BODY.PEEK[2.HEADER.FIELDS (SUBJECT)]",
    "BODY.PEEK[]<0.10>",
    "BODY.PEEK[]<20.7>",
    "BODY.PEEK[TEXT]<5.20>",
    "BODY.PEEK[1]<3.100000>",
    "BODY.PEEK[]<100000.5>",
];

/// Our FETCH response for `item` of `msg` as sequence number `seq`, serialised by imap-codec.
fn ours(msg: &Message<'_>, seq: usize, item: &str) -> Vec<u8> {
    let line = format!("a FETCH {seq} ({item})\r\n");
    let (_, cmd) = CommandCodec::default()
        .decode(line.as_bytes())
        .unwrap_or_else(|e| panic!("imap-codec cannot parse {line:?}: {e:?}"));
    let CommandBody::Fetch {
        macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(names),
        ..
    } = cmd.body
    else {
        panic!("{line:?} is no FETCH")
    };
    let items: Vec<_> = names
        .iter()
        .map(|n| msg.fetch_item(n).expect("a content item"))
        .collect();
    mailkit::imap::response::data(Data::Fetch {
        seq: NonZeroU32::new(seq as u32).unwrap(),
        items: Vec1::try_from(items).unwrap(),
    })
}

/// The deliberate differences, applied to both responses before comparing:
/// - imap-codec writes the body types of text and message parts in upper case (`"TEXT"`,
///   `"MESSAGE" "RFC822"`), Dovecot as the message wrote them (lower case by default); MIME
///   types are case-insensitive (RFC 2045 §5.1), so both are lowercased at those places.
/// - In ENVELOPE and BODY(STRUCTURE), a string may go quoted or as a literal (RFC 3501 §4.3
///   fixes the content, not the form): Dovecot sends a literal for a string with `"` or one
///   that was folded, imap-codec a quoted string with escapes; both are made quoted when
///   they can be.
fn normalise(response: &[u8], item: &str) -> Vec<u8> {
    let s = replace(response, b"(\"TEXT\" ", b"(\"text\" ");
    let s = replace(&s, b"(\"MESSAGE\" \"RFC822\" ", b"(\"message\" \"rfc822\" ");
    if matches!(item, "ENVELOPE" | "BODY" | "BODYSTRUCTURE") {
        literals_quoted(&s)
    } else {
        s
    }
}

/// Every `{n}CRLF` literal of 7-bit text without CR/LF rewritten as a quoted string.
fn literals_quoted(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'{' {
            if let Some(close) = s[i..].windows(3).position(|w| w == b"}\r\n") {
                if let Some(n) = std::str::from_utf8(&s[i + 1..i + close])
                    .ok()
                    .and_then(|d| d.parse::<usize>().ok())
                {
                    let start = i + close + 3;
                    if let Some(data) = s.get(start..start + n) {
                        if data.iter().all(|&b| (0x20..0x7f).contains(&b)) {
                            out.push(b'"');
                            for &b in data {
                                if b == b'"' || b == b'\\' {
                                    out.push(b'\\');
                                }
                                out.push(b);
                            }
                            out.push(b'"');
                            i = start + n;
                            continue;
                        }
                    }
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Known differences kept on purpose: (corpus file, item, why).
const KNOWN: &[(&str, &str, &str)] = &[(
    "09-crlf.eml",
    "ENVELOPE",
    "a folded Subject: ours is unfolded as RFC 5322 §2.2.3 says (CRLF removed, the white space \
     kept: two spaces), Dovecot also collapses the white space to one space",
)];

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn fetch_and_search_agree_with_dovecot() {
    let mut fx = setup();
    let mut diffs = Vec::new();
    let mut compared = 0;
    for seq in 1..=fx.by_seq.len() {
        let (name, raw) = &fx.corpus[fx.by_seq[seq - 1]];
        let msg = Message::parse(raw, Limits::default()).expect("corpus message parses");
        for item in ITEMS {
            let (untagged, tagged) = fx.dovecot.cmd(format!("FETCH {seq} ({item})").as_bytes());
            let theirs: Vec<&Vec<u8>> = untagged
                .iter()
                .filter(|r| r.starts_with(format!("* {seq} FETCH").as_bytes()))
                .collect();
            let mine = normalise(&ours(&msg, seq, item), item);
            let theirs = match theirs.as_slice() {
                [one] => normalise(one, item),
                _ => format!("(no FETCH response: {})", String::from_utf8_lossy(&tagged))
                    .into_bytes(),
            };
            compared += 1;
            if KNOWN.iter().any(|k| k.0 == name && k.1 == *item) {
                assert_ne!(
                    mine, theirs,
                    "{name} {item} is listed as a known difference but agrees"
                );
                continue;
            }
            if mine != theirs {
                diffs.push(format!(
                    "{name} {item}:\n  dovecot: {:?}\n  ours:    {:?}",
                    String::from_utf8_lossy(&theirs),
                    String::from_utf8_lossy(&mine)
                ));
            }
        }
    }
    let search_diffs = search_table(&mut fx);
    diffs.extend(search_diffs);
    assert!(compared > 300, "only {compared} comparisons");
    assert!(
        diffs.is_empty(),
        "{} differences from Dovecot:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// SEARCH keys run through both (each a whole SEARCH program).
const KEYS: &[&str] = &[
    "ALL",
    "SEEN",
    "UNSEEN",
    "FLAGGED",
    "UNFLAGGED",
    "ANSWERED",
    "UNANSWERED",
    "DELETED",
    "UNDELETED",
    "DRAFT",
    "UNDRAFT",
    "RECENT",
    "NEW",
    "OLD",
    "KEYWORD nosuch",
    "UNKEYWORD nosuch",
    "1:3",
    "2,5:*",
    "*",
    "UID 1:4",
    "UID 3,7:*",
    "LARGER 600",
    "SMALLER 300",
    "BEFORE 1-Jun-2020",
    "ON 24-Feb-2020",
    "SINCE 1-Jan-2021",
    "SENTBEFORE 1-Jan-2011",
    "SENTON 15-Mar-2021",
    "SENTSINCE 1-Jun-2021",
    "FROM alice",
    "FROM example.org",
    "FROM JÜRGEN",
    "FROM françois",
    "TO bob",
    "TO friends",
    "CC dave",
    "BCC hidden",
    "SUBJECT hello",
    "SUBJECT GRÜSSE",
    "SUBJECT grüße",
    "SUBJECT café",
    "SUBJECT \"folded continuation\"",
    "HEADER X-Custom foobar",
    "HEADER Message-ID \"\"",
    "HEADER In-Reply-To plain-1",
    "BODY zebra",
    "BODY kangaroo",
    "BODY \"soft wrapped\"",
    "BODY schöne",
    "BODY penguin",
    "BODY narwhal",
    "BODY walrus",
    "BODY ocelot",
    "BODY déjà",
    "BODY \"inner subject\"",
    "TEXT \"inner subject\"",
    "TEXT zebra",
    "TEXT alice",
    "TEXT \"x-custom\"",
    "NOT SEEN",
    "OR SEEN FLAGGED",
    "OR BODY zebra FROM nonl",
    "NOT OR DELETED DRAFT",
    "(SEEN FLAGGED)",
    "SEEN NOT FROM alice",
];

/// Sends `key` to Dovecot (8-bit keys as CHARSET UTF-8 with a literal).
fn dovecot_search(d: &mut Imap, key: &str) -> Vec<u32> {
    let cmd = match key.split_once(' ') {
        Some((k, v)) if !key.is_ascii() => {
            d.w.write_all(
                format!(
                    "t{} SEARCH CHARSET UTF-8 {k} {{{}}}\r\n",
                    d.tag + 1,
                    v.len()
                )
                .as_bytes(),
            )
            .unwrap();
            let cont = d.response();
            assert!(cont.starts_with(b"+"), "{cont:?}");
            d.tag += 1;
            d.w.write_all(v.as_bytes()).unwrap();
            d.w.write_all(b"\r\n").unwrap();
            let tag = format!("t{}", d.tag);
            let mut untagged = Vec::new();
            loop {
                let r = d.response();
                if r.starts_with(tag.as_bytes()) {
                    break untagged;
                }
                untagged.push(r);
            }
        }
        _ => d.ok(format!("SEARCH {key}").as_bytes()),
    };
    let line = cmd
        .iter()
        .find(|r| r.starts_with(b"* SEARCH"))
        .map(|r| String::from_utf8_lossy(r).into_owned())
        .unwrap_or_default();
    line.trim_end()
        .split(' ')
        .skip(2)
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Our SEARCH key: parsed by imap-codec from the same text.
fn parse_key(key: &str) -> imap_codec::imap_types::search::SearchKey<'static> {
    let line = match key.split_once(' ') {
        Some((k, v)) if !key.is_ascii() => {
            format!("a SEARCH CHARSET UTF-8 {k} {{{}+}}\r\n{v}\r\n", v.len())
        }
        _ => format!("a SEARCH {key}\r\n"),
    };
    let (_, cmd) = CommandCodec::default()
        .decode(line.as_bytes())
        .unwrap_or_else(|e| panic!("imap-codec cannot parse {line:?}: {e:?}"));
    let CommandBody::Search { criteria, .. } = cmd.body else {
        panic!("no SEARCH")
    };
    let keys = criteria.into_inner();
    let key = if keys.len() == 1 {
        keys.into_iter().next().unwrap()
    } else {
        imap_codec::imap_types::search::SearchKey::And(Vec1::try_from(keys).unwrap())
    };
    imap_codec::imap_types::IntoStatic::into_static(key)
}

fn search_table(fx: &mut Fixture) -> Vec<String> {
    // Each message's metadata as Dovecot reports it (UID, FLAGS incl. \Recent).
    let n = fx.by_seq.len();
    let mut metas = Vec::new();
    for seq in 1..=n {
        let r = fx.dovecot.ok(format!("FETCH {seq} (UID FLAGS)").as_bytes());
        let text = String::from_utf8_lossy(&r[0]).into_owned();
        let uid: u32 = text
            .split("UID ")
            .nth(1)
            .and_then(|t| t.split([' ', ')']).next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        let flags_text = text
            .split("FLAGS (")
            .nth(1)
            .and_then(|t| t.split(')').next())
            .unwrap_or("");
        let mut flags = Vec::new();
        let mut recent = false;
        for f in flags_text.split_whitespace() {
            match f {
                "\\Seen" => flags.push(Flag::Seen),
                "\\Answered" => flags.push(Flag::Answered),
                "\\Flagged" => flags.push(Flag::Flagged),
                "\\Deleted" => flags.push(Flag::Deleted),
                "\\Draft" => flags.push(Flag::Draft),
                "\\Recent" => recent = true,
                other => panic!("unexpected flag {other}"),
            }
        }
        metas.push((uid, flags, recent));
    }
    let max_uid = metas.iter().map(|m| m.0).max().unwrap_or(1);
    let parsed: Vec<_> = fx
        .by_seq
        .iter()
        .map(|&i| Message::parse(&fx.corpus[i].1, Limits::default()).unwrap())
        .collect();
    let contents: Vec<_> = parsed.iter().map(search::Content::new).collect();
    let mut diffs = Vec::new();
    for key in KEYS {
        let theirs = dovecot_search(&mut fx.dovecot, key);
        let k = parse_key(key);
        let needs = search::needs_content(&k);
        let mut mine = Vec::new();
        for seq in 1..=n {
            let (uid, flags, recent) = &metas[seq - 1];
            let meta = search::Meta {
                seq: seq as u32,
                uid: *uid,
                max_seq: n as u32,
                max_uid,
                flags,
                recent: *recent,
                internal_day: search::day_of(mtime(fx.by_seq[seq - 1]), 0),
                size: parsed[seq - 1].size(),
            };
            if search::matches(&k, &meta, needs.then(|| &contents[seq - 1])) {
                mine.push(seq as u32);
            }
        }
        if mine != theirs {
            diffs.push(format!("SEARCH {key}: dovecot {theirs:?}, ours {mine:?}"));
        }
    }
    diffs
}
