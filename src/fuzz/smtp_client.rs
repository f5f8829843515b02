//! The `smtp_client` fuzz target: the SMTP client state machine (`smtp::client`) fed the replies
//! of a hostile MX or relayhost, split into replies by the real `ReplyParser`. It must never
//! panic; every command it writes is CRLF-terminated without a bare CR or LF (no command
//! injection from reply text), AUTH is never sent before TLS (RFC 4954 §4, our policy), and a
//! finished transaction reports each recipient once, in envelope order.

use crate::smtp::client::{Action, Client, Credentials, Envelope, Settings, Stage};
use crate::smtp::reply::ReplyParser;

/// The fuzz body: the first byte chooses the settings, the rest is what the server sends.
pub fn run(data: &[u8]) {
    let Some((&ctl, replies)) = data.split_first() else {
        return;
    };
    let settings = Settings {
        ehlo_name: "client.fuzz.test".into(),
        tls: match ctl & 3 {
            0 => crate::tls::Mode::Implicit,
            1 => crate::tls::Mode::Starttls,
            2 => crate::tls::Mode::Opportunistic,
            _ => crate::tls::Mode::Off,
        },
        auth: (ctl & 4 != 0).then(|| Credentials {
            user: "fuzz".into(),
            password: "secret".into(),
            mechanism: [
                None,
                Some(crate::auth::Mechanism::Xoauth2),
                Some(crate::auth::Mechanism::Oauthbearer),
                Some(crate::auth::Mechanism::Login),
            ][usize::from(ctl >> 6)],
            server: ("mx.fuzz.test".into(), 25),
        }),
        quit_after: match (ctl >> 3) & 7 {
            1 => Some(Stage::Mail),
            2 => Some(Stage::Rcpt),
            3 => Some(Stage::Data),
            _ => None,
        },
    };
    let env = Envelope {
        from: "a@fuzz.test".into(),
        rcpts: vec!["b@fuzz.test".into(), "c@fuzz.test".into()],
        mail_params: Vec::new(),
        rcpt_params: Vec::new(),
    };
    let message: &[u8] = if ctl & 0x40 != 0 {
        b"Subject: x\n\n.body\r\nlast"
    } else {
        "Subject: caf\u{e9}\r\n\r\n8bit\r\n".as_bytes()
    };
    let mut client = Client::new(settings);
    let mut parser = ReplyParser::new();
    parser.push(replies);
    let mut pending = client.start();
    let mut transactions = 0;
    loop {
        let mut next = Vec::new();
        for action in pending.drain(..) {
            match action {
                Action::Send { bytes, .. } => {
                    assert!(bytes.ends_with(b"\r\n"), "unterminated write {bytes:?}");
                    for (i, &b) in bytes.iter().enumerate() {
                        if b == b'\n' {
                            assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF in {bytes:?}");
                        }
                        if b == b'\r' {
                            assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR in {bytes:?}");
                        }
                    }
                    if bytes.starts_with(b"AUTH") {
                        assert!(client.tls_active(), "AUTH sent in clear");
                    }
                }
                Action::StartTls => next.extend(client.tls_established()),
                Action::Ready if transactions < 3 => {
                    transactions += 1;
                    next.extend(client.transaction(env.clone(), message));
                }
                Action::Done(outcome) => {
                    let got: Vec<&str> = outcome.rcpts.iter().map(|r| r.rcpt.as_str()).collect();
                    assert_eq!(got, env.rcpts, "one result per recipient, in order");
                    for r in &outcome.rcpts {
                        assert!(!r.accepted() || r.reply.is_positive());
                    }
                    if client.is_ready() && transactions < 3 {
                        transactions += 1;
                        next.extend(client.transaction(env.clone(), message));
                    }
                }
                Action::Closed => return,
                Action::Ready | Action::Stopped(_) | Action::Failed(_) => {}
            }
        }
        if !next.is_empty() {
            pending = next;
            continue;
        }
        if client.is_closed() {
            return;
        }
        match parser.next_reply() {
            Ok(Some(reply)) => pending = client.on_reply(reply),
            // A driver drops the connection on a malformed reply or at EOF.
            Ok(None) | Err(_) => return,
        }
    }
}
