//! Fuzz what sender authentication reads from a received message before it trusts anything:
//! the removal of `Authentication-Results:` fields claiming our authserv-id
//! ([`crate::authres::strip_ours`], [`crate::authres::authserv_id_of`]) and the From: domain
//! DKIM signing picks ([`crate::dkim::from_domain`], mail-auth's parser).

use crate::authres;

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    // First line: the authserv-id; the rest: the message.
    let (id, msg) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&data[..i]).into_owned(),
            &data[i + 1..],
        ),
        None => (String::new(), data),
    };
    let _ = authres::authserv_id_of(msg);
    if let Some(out) = authres::strip_ours(msg, &id) {
        // Only whole fields go: shorter, the body kept, and nothing of ours left to remove.
        assert!(out.len() < msg.len());
        let body = crate::rfc5322::header_end(msg).header;
        assert!(out.ends_with(&msg[body..]));
        assert_eq!(authres::strip_ours(&out, &id), None);
    }
    if let Some(d) = crate::dkim::from_domain(msg) {
        assert!(!d.is_empty() && d == d.to_ascii_lowercase());
    }
}
