//! Fuzz the SMTP server session: arbitrary client bytes, fed in arbitrary pieces, with every
//! decision accepted. It must never panic or wait for a decision nobody asked for, and every
//! accepted message must be CRLF text without bare CR or LF (no SMTP smuggling), whether
//! bare LF is normalised or rejected ([`BareNewline`]).

use crate::session::SessionHooks as _;
use crate::smtp::server::{BareNewline, Decision, Event, Session, SessionConfig};
use crate::tls::TlsInfo;

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let (step, input) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s % 31) + 1, rest),
        None => return,
    };
    // The high bit of the first byte picks the bare LF rule: both must be smuggling-proof.
    let bare_newline = match data.first() {
        Some(b) if b & 0x80 != 0 => BareNewline::Reject,
        _ => BareNewline::Normalize,
    };
    let cfg = SessionConfig {
        bare_newline,
        starttls: true,
        auth: true,
        auth_requires_tls: false,
        max_message_size: 4096,
        max_recipients: 5,
        max_errors: 50,
        // Bare addresses are qualified after AUTH (every decision is accepted).
        bare_domain: Some("fuzz.test".into()),
        ..SessionConfig::default()
    };
    let mut s = Session::new(cfg, None);
    s.greeting();
    let mut chunks = input.chunks(step);
    // The streamed content of the open transaction (DataStart .. Message/DataAbort).
    let mut content: Option<Vec<u8>> = None;
    for _ in 0..100_000 {
        match s.poll() {
            Event::NeedInput => match chunks.next() {
                Some(c) => s.feed(c),
                None => break,
            },
            Event::Close => break,
            Event::Pending => panic!("Pending without an outstanding decision"),
            Event::StartTls => s.tls_started(TlsInfo {
                version: "TLSv1.3".into(),
                cipher: "X".into(),
            }),
            Event::DataStart { .. } => {
                assert!(content.is_none(), "DataStart while content is open");
                content = Some(Vec::new());
            }
            Event::Content(piece) => match content.as_mut() {
                Some(c) => c.extend_from_slice(&piece),
                None => panic!("Content without DataStart"),
            },
            Event::DataAbort => assert!(content.take().is_some(), "DataAbort without DataStart"),
            Event::Message { envelope } => {
                let Some(data) = content.take() else {
                    panic!("Message without DataStart");
                };
                assert!(!envelope.rcpts.is_empty());
                assert!(data.len() <= 4096);
                for (i, &b) in data.iter().enumerate() {
                    if b == b'\n' {
                        assert!(i > 0 && data[i - 1] == b'\r', "bare LF accepted");
                    }
                    if b == b'\r' {
                        assert_eq!(data.get(i + 1), Some(&b'\n'), "bare CR accepted");
                    }
                }
                s.decide(Decision::Queued("X".into()));
            }
            _ => s.decide(Decision::Accept),
        }
        let out = s.take_output();
        assert!(out.is_empty() || out.ends_with(b"\r\n"));
    }
}
