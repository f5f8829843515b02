//! Fuzzes the client-side SMTP reply parser: any bytes, split at any point, must give replies or
//! an error, never a panic; every parsed reply must format and re-parse to itself.

use crate::smtp::reply::ReplyParser;

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let split = data
        .first()
        .map(|b| *b as usize)
        .unwrap_or(0)
        .min(data.len());
    let mut p = ReplyParser::new();
    p.push(&data[..split]);
    let mut replies = Vec::new();
    loop {
        match p.next_reply() {
            Ok(Some(r)) => replies.push(r),
            Ok(None) => break,
            Err(_) => return,
        }
    }
    p.push(&data[split..]);
    while let Ok(Some(r)) = p.next_reply() {
        replies.push(r);
    }
    for r in replies {
        let mut q = ReplyParser::new();
        q.push(&r.to_bytes());
        match q.next_reply() {
            Ok(Some(again)) => assert_eq!(again.to_bytes(), r.to_bytes()),
            other => panic!("{:?} did not re-parse: {other:?}", r.to_bytes()),
        }
    }
}
