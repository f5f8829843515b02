//! The `imap_list` fuzz target: mimapd's LIST patterns and mailbox names
//! ([`crate::imap::folders`]). The input is a pattern, a newline and a name. A pattern that
//! compiles matches exactly as a plain backtracking matcher says (run only on small inputs,
//! where backtracking is cheap), and a name that is accepted round-trips through its wire
//! form and maps to a folder directory inside the Maildir.

use crate::imap::folders::{name_to_wire, wire_to_name, Pattern};
use crate::imap::session::DELIMITER;
use imap_codec::imap_types::mailbox::Mailbox;

/// RFC 3501 §6.3.8 wildcards, by backtracking: exponential in general, the reference here.
fn reference(p: &[char], n: &[char]) -> bool {
    match p.split_first() {
        None => n.is_empty(),
        Some(('*', rest)) => (0..=n.len()).any(|i| reference(rest, &n[i..])),
        Some(('%', rest)) => (0..=n.len())
            .take_while(|&i| i == 0 || n[i - 1] != DELIMITER)
            .any(|i| reference(rest, &n[i..])),
        Some((c, rest)) => n.first() == Some(c) && reference(rest, &n[1..]),
    }
}

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pattern, name) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(p) = Pattern::new(pattern) {
        let got = p.matches(name);
        let wild = pattern.chars().filter(|c| matches!(c, '*' | '%')).count();
        // A leading INBOX is case-insensitive in ours (RFC 3501 §5.1), not in the reference.
        let inbox = pattern
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("INBOX"));
        if wild <= 3 && name.len() <= 32 && !inbox {
            let pc: Vec<char> = pattern.chars().collect();
            let nc: Vec<char> = name.chars().collect();
            assert_eq!(got, reference(&pc, &nc), "{pattern:?} against {name:?}");
        }
    }
    if let Some(n) = wire_to_name(name.as_bytes()) {
        let wire = match name_to_wire(&n) {
            Mailbox::Inbox => b"INBOX".to_vec(),
            Mailbox::Other(o) => o.as_ref().to_vec(),
        };
        assert_eq!(
            wire_to_name(&wire).as_deref(),
            Some(n.as_str()),
            "round trip"
        );
        let dir = crate::maildir::folder_dir_name(&n).expect("an accepted name has a directory");
        if let Some(d) = dir {
            assert!(
                d.starts_with('.') && !d.contains('/') && !d.contains(".."),
                "{d}"
            );
        }
    }
}
