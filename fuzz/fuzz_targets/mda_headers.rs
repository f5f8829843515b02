//! Fuzz the sans-IO parts of local delivery: message preparation (loop detection, header
//! prepending, CRLF conversion), Maildir file name parsing and folder name mapping.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailkit::{maildir, mda};

fuzz_target!(|data: &[u8]| {
    // First line: the recipient; the rest: the message.
    let (rcpt, msg) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let rcpt = String::from_utf8_lossy(rcpt).into_owned();
    let added = if rcpt.trim().is_empty() { 1 } else { 2 };
    let env = mda::Envelope {
        sender: Some(rcpt.clone()),
        recipient: Some(rcpt),
    };
    if let Ok(out) = mda::prepare(msg, &env) {
        // every line is kept (CRLF becomes LF) and the envelope header lines are added
        let lf = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count();
        assert_eq!(lf(&out), lf(msg) + added);
        assert!(out.len() <= msg.len() + 2 * data.len() + 64);
    }
    let _ = mda::delivered_to(msg);
    let text = String::from_utf8_lossy(data);
    let _ = maildir::parse_name(&text);
    if let Ok(Some(dir)) = maildir::folder_dir_name(&text) {
        // a folder never leaves the Maildir
        assert!(dir.starts_with('.') && !dir.contains('/') && dir != "." && dir != "..");
    }
});
