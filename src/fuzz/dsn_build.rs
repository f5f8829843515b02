//! Fuzzes the DSN builder: arbitrary message bytes and arbitrary (lossily decoded) address,
//! ORCPT, ENVID, status, diagnostic and host strings must give a DSN, never a panic; the
//! generated header section and the delivery-status part must stay free of bare line breaks.

use crate::relay::dsn::{self, DsnAction, DsnInput, DsnRecipient, DsnReturn};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    // Layout: one control byte, then up to seven 0x00-separated strings, then the message.
    let ctl = data.first().copied().unwrap_or(0);
    let mut fields = data.get(1..).unwrap_or(&[]).splitn(8, |&b| b == 0);
    let mut next = || String::from_utf8_lossy(fields.next().unwrap_or(&[])).into_owned();
    let (address, orcpt, envid, status, diagnostic, host, sender) =
        (next(), next(), next(), next(), next(), next(), next());
    let message = fields.next().unwrap_or(&[]);
    let action = match ctl % 5 {
        0 => DsnAction::Failed,
        1 => DsnAction::Delayed,
        2 => DsnAction::Delivered,
        3 => DsnAction::Relayed,
        _ => DsnAction::Expanded,
    };
    let r = DsnRecipient {
        address,
        orcpt: (ctl & 0x08 != 0).then(|| orcpt.clone()),
        action,
        status: status.clone(),
        diagnostic: (ctl & 0x10 != 0).then(|| diagnostic.clone()),
        remote_mta: (ctl & 0x20 != 0).then(|| host.clone()),
        last_attempt: Some(u64::from(ctl) << 32),
        will_retry_until: (ctl & 0x40 != 0).then_some(u64::MAX),
    };
    let input = DsnInput {
        reporting_mta: &host,
        postmaster_domain: &host,
        envid: (ctl & 0x80 != 0).then_some(envid.as_str()),
        arrival: u64::from(ctl).wrapping_mul(0x0123_4567_89ab),
        original_sender: &sender,
        recipients: vec![r.clone(), r],
        ret: if ctl & 0x04 != 0 {
            DsnReturn::Full
        } else {
            DsnReturn::Headers
        },
        message,
        now: u64::from(ctl) * 1_000_000,
    };
    let out = dsn::build(&input);
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header section");
    let head = &out[..head_end];
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF in the DSN header");
        }
    }
    let _ = crate::outbound::failure::status_of_reply(u16::from(ctl) * 3, &diagnostic);
    let _ = crate::outbound::failure::status_of_reply(550, &status);
}
