//! Line framing of the server layer (`LineFramer`, behind `Connection::read_line`) on arbitrary
//! input in arbitrary pieces: never a panic, never a line over the limit, never more bytes used
//! than given; plus the socket-activation and tcpserver environment parsers.

use crate::lines::{Framed, Line, LineFramer};
use crate::server::{addr_from_env, parse_activation};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let max_len = usize::from(head) + 1;
    let piece = usize::from(head % 17) + 1;
    let mut framer = LineFramer::default();
    let mut buf = Vec::new();
    for chunk in rest.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            let (found, used) = framer.next(&buf, max_len);
            assert!(used <= buf.len());
            buf.drain(..used);
            match found {
                Some(Framed::Line(Line::Complete { text, .. })) => {
                    assert!(text.len() < max_len);
                    assert!(!text.contains(&b'\n'));
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(4, '\n');
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    let _ = parse_activation(42, a, b, c);
    let _ = addr_from_env(a, b);
}
