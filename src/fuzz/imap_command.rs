//! The `imap_command` fuzz target: mimapd's command framer ([`crate::imap::framer`]), the
//! imap-codec parse → serialise → parse round trip of every command it frames, and the IMAP
//! session state machine in every state ([`crate::imap::session`]).

use imap_codec::decode::Decoder as _;
use imap_codec::encode::Encoder as _;
use imap_codec::CommandCodec;

use crate::imap::framer::{Frame, Framer, Limits};
use crate::imap::session::{After, Event, LoginFailure, Policy, Session};
use crate::session::SessionHooks as _;

/// Frames arbitrary client bytes in pieces; every command that parses must serialise to bytes
/// that parse to the same command. Then runs the same bytes through a session, answering its
/// events as the input decides. Panics only on a real bug.
pub fn run(data: &[u8]) {
    let first = data.first().copied().unwrap_or(0);
    let step = usize::from(first % 17) + 1;
    let limits = Limits {
        max_command: 512,
        max_append: 256,
    };
    let mut framer = Framer::new(limits);
    let codec = CommandCodec::default();
    for piece in data.chunks(step) {
        framer.feed(piece);
        while let Some(frame) = framer.next_frame() {
            match frame {
                Frame::Command(bytes) => {
                    assert!(bytes.len() <= limits.max_command && bytes.ends_with(b"\r\n"));
                    if let Ok((rest, cmd)) = codec.decode(&bytes) {
                        if rest.is_empty() {
                            let wire = codec.encode(&cmd).dump();
                            match codec.decode(&wire) {
                                Ok((r, again)) => assert!(r.is_empty() && again == cmd),
                                Err(e) => panic!("{cmd:?} serialised as {wire:?}: {e:?}"),
                            }
                        }
                    }
                }
                Frame::AppendStart { len, .. } => {
                    if len % 2 == 0 {
                        framer.accept_append();
                    } else {
                        framer.discard_append();
                    }
                }
                Frame::AppendData(d) => assert!(!d.is_empty()),
                Frame::Hopeless => break,
                Frame::Continue | Frame::TooBig { .. } | Frame::AppendEnd { .. } => {}
            }
        }
    }
    session(data, first, step, limits);
}

fn session(data: &[u8], first: u8, step: usize, limits: Limits) {
    let policy = Policy {
        plaintext_allowed: first & 1 == 1,
        tls_available: true,
        limits,
        ..Policy::default()
    };
    let mut s = Session::new(policy);
    s.greeting();
    let mut pieces = data.chunks(step);
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
                    s.login_done(&login.user)
                } else {
                    s.login_failed(LoginFailure::BadCredentials)
                }
            }
            Event::StartTls => s.tls_started(),
            Event::Command { tag, .. } => {
                let after = match tag.len() % 3 {
                    0 => After::Same,
                    1 => After::Selected {
                        read_only: tag.len() % 2 == 0,
                    },
                    _ => After::Authenticated,
                };
                s.command_done(format!("{tag} OK done\r\n").as_bytes(), after)
            }
            Event::AppendBegin { tag, len, .. } => {
                if len % 2 == 0 {
                    s.append_ready()
                } else {
                    s.append_refused(format!("{tag} NO [TRYCREATE] no\r\n").as_bytes())
                }
            }
            Event::AppendFinish { tag } => {
                s.command_done(format!("{tag} OK appended\r\n").as_bytes(), After::Same)
            }
            Event::IdleDone { .. } => s.command_done(b"", After::Same),
            Event::AppendData(d) => assert!(!d.is_empty()),
            Event::AppendAbort | Event::Idle { .. } => {}
            Event::Pending => panic!("poll returned Pending"),
            Event::Close => break,
        }
    }
    if data.last() == Some(&b'!') {
        s.shutdown();
        assert!(s.take_output().ends_with(b"\r\n"));
        assert_eq!(s.poll(), Event::Close);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pseudo_random_inputs_do_not_panic() {
        let words: [&[u8]; 16] = [
            b"a LOGIN ab cd\r\n",
            b"b SELECT INBOX\r\n",
            b"c FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.10>)\r\n",
            b"d APPEND INBOX (\\Seen) {4}\r\n",
            b"e APPEND Drafts {3+}\r\n",
            b"abcd",
            b"f IDLE\r\n",
            b"DONE\r\n",
            b"g AUTHENTICATE PLAIN\r\n",
            b"AGEAYg==\r\n",
            b"h LOGIN {3}\r\n",
            b"i SEARCH OR (FROM x) (NOT SEEN) 1:3\r\n",
            b"j STARTTLS\r\n",
            b"k UID STORE 1 +FLAGS.SILENT (\\Deleted)\r\n",
            b"l ID NIL\r\n",
            b"\xff{99999+}\r\n",
        ];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for _ in 0..2000 {
            let mut data = Vec::new();
            for _ in 0..(x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                data.extend_from_slice(words[(x % 16) as usize]);
            }
            super::run(&data);
        }
    }
}
