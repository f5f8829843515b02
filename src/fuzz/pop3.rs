//! The `pop3` fuzz target: the POP3 session (parser and state machine in every state) and the
//! RETR/TOP encoder.

use crate::pop3::encode;
use crate::pop3::session::{Event, LoginFailure, MessageInfo, Policy, Session};
use crate::session::SessionHooks as _;

/// Feeds arbitrary client bytes, in pieces, through framing, parser and state machine
/// (answering the driver's events in a way decided by the input), and arbitrary bytes through the RETR/TOP encoder,
/// whose output must decode back to at least the CRLF size. Panics only on a real bug.
pub fn run(data: &[u8]) {
    let policy = Policy {
        plaintext_allowed: data.first().is_some_and(|b| b & 1 == 1),
        tls_available: true,
        apop: true,
        ..Policy::default()
    };
    let mut s = Session::new(policy, "<1.2@fuzz>");
    s.greeting();
    // The input in pieces whose length the input decides, so framing is split everywhere.
    let step = usize::from(data.first().copied().unwrap_or(0) % 17) + 1;
    let mut pieces = data.chunks(step);
    // Every event, answered; a bound on the steps in case the session never asks for input.
    for _ in 0..data.len().saturating_mul(4).saturating_add(16) {
        let ev = s.poll();
        let out = s.take_output();
        assert!(out.is_empty() || out.ends_with(b"\r\n"));
        match ev {
            Event::NeedInput => match pieces.next() {
                Some(piece) => s.feed(piece),
                None => break,
            },
            Event::Authenticate(login) => {
                if login.user.len() % 2 == 0 {
                    let msgs = vec![
                        MessageInfo {
                            size: 10,
                            uid: "a".into(),
                        },
                        MessageInfo {
                            size: 20,
                            uid: "b".into(),
                        },
                    ];
                    s.login_done(&login.user, msgs)
                } else {
                    s.login_failed(LoginFailure::BadCredentials)
                }
            }
            Event::StartTls => s.tls_started(),
            Event::Update(marked) => {
                assert!(marked.iter().all(|&i| i < 2));
                s.update_done(true);
            }
            Event::Send { index, .. } => assert!(index < 2),
            Event::Pending | Event::Reply(_) => panic!("poll returned {ev:?}"),
            Event::Close => break,
        }
    }
    if data.last() == Some(&b'!') {
        s.shutdown();
        assert!(s.take_output().ends_with(b"\r\n"));
        assert_eq!(s.poll(), Event::Close);
    }
    let wire = encode::encode_retr(data);
    let back = encode::decode(&wire).unwrap_or_default();
    assert!(back.len() as u64 >= encode::crlf_size(data));
    let top = encode::encode_top(data, 3);
    assert!(top.ends_with(b".\r\n"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn pseudo_random_inputs_do_not_panic() {
        let words: [&[u8]; 16] = [
            b"USER a",
            b"USER bb",
            b"PASS x",
            b"STAT",
            b"LIST",
            b"RETR 1",
            b"DELE 2",
            b"TOP 1 0",
            b"UIDL",
            b"RSET",
            b"QUIT",
            b"AUTH PLAIN",
            b"*",
            b"STLS",
            b"CAPA",
            b"\xff.\r",
        ];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..2000 {
            let mut data = Vec::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.extend_from_slice(words[(x % 16) as usize]);
                data.push(if x & 64 == 0 { b'\n' } else { b'.' });
            }
            super::run(&data);
        }
    }
}
