//! Fuzz the sans-IO parts of local delivery: message preparation (loop detection, header
//! prepending, CRLF conversion, the Return-Path a redirect drops, the RFC 3834 header checks
//! of vacation), Maildir file name parsing and folder name mapping.

use crate::{maildir, mda};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    // First line: the recipient; the rest: the message.
    let (rcpt, msg) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    // Lossy conversion may triple the recipient's size (each bad byte becomes U+FFFD, three
    // bytes), so sizes are bounded by the strings prepare() was given, not by the input.
    let rcpt = String::from_utf8_lossy(rcpt).into_owned();
    let added = if rcpt.trim().is_empty() { 1 } else { 2 };
    let env = mda::Envelope {
        sender: Some(rcpt.clone()),
        recipient: Some(rcpt.clone()),
    };
    if let Ok(out) = mda::prepare(msg, &env) {
        // every line after an MTA's stamp is kept (CRLF becomes LF) after the added envelope
        // header lines, `Return-Path: <sender>` and `Delivered-To: recipient`; the stamp's
        // lines are ours again or kept, never more (mda::prepare)
        let lf = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count();
        let (stamp, rest) = msg.split_at(mda::stamp_len(msg));
        if stamp.is_empty() {
            assert_eq!(lf(&out), lf(msg) + added);
        } else {
            assert!(lf(&out) <= lf(msg) + added);
        }
        let mut body = Vec::new();
        mda::crlf_to_lf(rest, &mut body);
        assert!(out.ends_with(&body));
        let head = "Return-Path: <>\nDelivered-To: \n".len();
        assert!(out.len() <= body.len() + stamp.len() + head + 2 * rcpt.len());
        // a redirect sends it without the Return-Path line prepare wrote first, nothing else
        let mut redirected = out.clone();
        mda::strip_return_path(&mut redirected);
        let first = out.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
        assert_eq!(redirected, &out[first..]);
    }
    let _ = mda::sieve::auto_reply_forbidden(msg);
    let _ = mda::delivered_to(msg);
    let text = String::from_utf8_lossy(data);
    let _ = maildir::parse_name(&text);
    if let Ok(Some(dir)) = maildir::folder_dir_name(&text) {
        // a folder never leaves the Maildir
        assert!(dir.starts_with('.') && !dir.contains('/') && dir != "." && dir != "..");
    }
}
