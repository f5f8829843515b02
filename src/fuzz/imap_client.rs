//! The `imap_client` fuzz target: mfetch's IMAP response reader ([`crate::fetch::imap`]) on
//! any server bytes. The first byte chooses how the rest is cut into pieces; the events must
//! be the same (body and SEARCH pieces joined) as for the whole input at once, a body's
//! data never exceeds its announced size, every body ends before the next begins, and the
//! accessors of every untagged response never panic.

use crate::fetch::imap::{fetch_number, Event, Reader};

/// Largest body the fuzzed reader accepts (small, so "too large" is reached).
const MAX_BODY: u64 = 4096;

fn events(data: &[u8], step: usize) -> (Vec<Event>, bool) {
    let mut r = Reader::new(MAX_BODY);
    let mut out: Vec<Event> = Vec::new();
    for piece in data.chunks(step.max(1)) {
        r.push(piece);
        loop {
            match r.event() {
                Ok(Some(e)) => match (out.last_mut(), e) {
                    (Some(Event::BodyData(a)), Event::BodyData(b)) => a.extend(b),
                    (Some(Event::Search(a)), Event::Search(b)) => a.extend(b),
                    (_, e) => out.push(e),
                },
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let whole = events(rest, rest.len().max(1));
    let cut = events(rest, usize::from(first % 16) + 1);
    assert_eq!(whole, cut, "events depend on how the input is cut");
    let mut open: Option<u64> = None;
    for e in &whole.0 {
        match e {
            Event::BodyStart { size, .. } => {
                assert!(open.is_none(), "a body began inside another");
                assert!(*size <= MAX_BODY);
                open = Some(*size);
            }
            Event::BodyData(d) => {
                let size = open.expect("body data outside a body");
                assert!(d.len() as u64 <= size, "more body than announced");
            }
            Event::BodyEnd { .. } => assert!(open.take().is_some(), "a body ended twice"),
            Event::Untagged(u) => {
                let _ = (u.keyword(), u.code(), u.capabilities());
                let _ = (u.code_number("UIDVALIDITY"), u.status_item("UIDNEXT"));
                let _ = fetch_number(&u.text, "RFC822.SIZE");
            }
            _ => {}
        }
    }
}
