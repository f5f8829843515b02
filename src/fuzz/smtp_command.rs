//! Fuzz the SMTP command-line parser (paths, ESMTP parameters, xtext): it must never panic, and
//! what it accepts must respect the RFC 5321 §4.5.3.1 limits.

use crate::smtp::command::{self, Command, MAX_DOMAIN, MAX_LOCAL_PART};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    match command::parse(data) {
        Ok(Command::Mail { from: Some(m), .. }) | Ok(Command::Rcpt { to: m, .. }) => {
            assert!(m.local.len() <= MAX_LOCAL_PART);
            assert!(m.domain.len() <= MAX_DOMAIN);
            assert!(!m.local.contains(['\r', '\n', '\0']));
            let _ = m.local_unquoted();
        }
        Ok(_) => {}
        Err(e) => {
            let r = e.to_reply();
            assert!((500..600).contains(&r.code));
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(d) = command::xtext_decode(s) {
            assert_eq!(command::xtext_decode(&command::xtext_encode(&d)), Some(d));
        }
    }
}
