//! What mimapd follows of a session it relays to a system user's child
//! ([`crate::imap::relay::Commands`]) on arbitrary client bytes in arbitrary pieces: never a
//! panic, the same count however the input is cut, never more commands than lines, and its
//! buffers bounded.

use crate::imap::relay::Commands;

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let mut whole = Commands::new();
    whole.feed(rest);
    let mut cut = Commands::new();
    for chunk in rest.chunks(usize::from(head % 31) + 1) {
        cut.feed(chunk);
    }
    assert_eq!(whole.count(), cut.count());
    let lines = rest.iter().filter(|&&b| b == b'\n').count();
    assert!(whole.count() <= lines as u64);
    assert!(whole.buffered() <= 64 + 24 && cut.buffered() <= 64 + 24);
}
