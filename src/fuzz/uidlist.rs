//! The `uidlist` fuzz target: `mailkit-uidlist` and `mailkit-keywords` files of any shape.
//! Parsing returns an error or a value that serialises back to the very same bytes (each
//! value has one spelling) and that keeps the invariants the view relies on: UIDs nonzero,
//! strictly increasing and below UIDNEXT, base names and keywords valid and distinct.

use crate::maildir::uidlist::format::{valid_base, valid_keyword, Keywords, UidList};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    if let Ok(list) = UidList::parse(data) {
        assert_eq!(list.serialise(), data, "uid list round trip");
        assert!(list.validity > 0 && list.next > 0);
        let mut last = 0;
        for (uid, base) in &list.records {
            assert!(*uid > last && *uid < list.next && valid_base(base));
            last = *uid;
        }
    }
    if let Ok(mut k) = Keywords::parse(data) {
        assert_eq!(k.serialise(), data, "keywords round trip");
        for (letter, name) in k.iter() {
            assert!(letter.is_ascii_lowercase() && valid_keyword(name));
            assert_eq!(k.letter(name), Some(letter));
        }
        let before = k.iter().count();
        let added = k.assign("$Fuzz", &['a']);
        assert_eq!(added.is_some(), k.letter("$Fuzz").is_some());
        assert!(k.iter().count() <= before + 1);
        assert_eq!(Keywords::parse(&k.serialise()), Ok(k));
    }
}
