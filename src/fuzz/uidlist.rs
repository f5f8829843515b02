//! The `uidlist` fuzz target: mimapd's per-folder files of any shape — `dovecot-uidlist`,
//! `dovecot-keywords`, `mailkit-imapstate`, `subscriptions` — and the modified UTF-7 folder
//! names in them. Parsing returns an error or a value that keeps the invariants the view
//! relies on (UIDs nonzero, strictly increasing and below UIDNEXT, base names valid and
//! distinct, keywords valid and distinct) and that serialises to bytes parsing back to the
//! very same value (parse → serialise → parse).

use crate::maildir::folders::{parse_subscriptions, serialise_subscriptions};
use crate::maildir::uidlist::format::{valid_base, valid_keyword, Keywords, UidList};
use crate::maildir::uidlist::State;
use crate::maildir::{mutf7_decode, mutf7_encode};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    if let Ok(list) = UidList::parse(data) {
        assert!(list.validity > 0 && list.next > 0);
        let mut last = 0;
        let mut seen = std::collections::HashSet::new();
        for r in &list.records {
            assert!(r.uid > last && r.uid < list.next && valid_base(&r.base));
            assert!(seen.insert(r.base.as_str()), "base name twice");
            last = r.uid;
        }
        let again = UidList::parse(&list.serialise()).expect("serialised list parses");
        assert_eq!(
            again,
            UidList {
                complete: true,
                ..list
            },
            "uid list round trip"
        );
    }
    let mut k = Keywords::parse(data);
    for (letter, name) in k.iter() {
        assert!(letter.is_ascii_lowercase() && valid_keyword(name));
        assert_eq!(k.letter(name), Some(letter));
    }
    assert_eq!(Keywords::parse(&k.serialise()), k, "keywords round trip");
    let before = k.iter().count();
    let added = k.assign("$Fuzz", &['a']);
    assert_eq!(added.is_some(), k.letter("$Fuzz").is_some());
    assert!(k.iter().count() <= before + 1);
    assert_eq!(Keywords::parse(&k.serialise()), k);
    if let Some(state) = State::parse(data) {
        assert_eq!(
            State::parse(&state.serialise()),
            Some(state),
            "imapstate round trip"
        );
    }
    let names = parse_subscriptions(data);
    assert_eq!(
        parse_subscriptions(&serialise_subscriptions(&names)),
        names,
        "subscriptions round trip"
    );
    let text = String::from_utf8_lossy(data);
    assert_eq!(
        mutf7_decode(&mutf7_encode(&text)).as_deref(),
        Some(&*text),
        "mUTF-7 round trip"
    );
    if let Some(name) = mutf7_decode(&text) {
        assert_eq!(mutf7_decode(&mutf7_encode(&name)), Some(name));
    }
}
