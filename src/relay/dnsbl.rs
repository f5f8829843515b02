//! DNSBL checks of the client address (RFC 5782) on the `smtp` listener: `[mrelayd] dnsbl =
//! ["zen.example"]`. The names and the reading of answers are sans-IO ([`query_name`],
//! [`is_listing`], [`refusal`]); [`Dnsbl::check`] asks the shared resolver
//! ([`crate::dns::MxResolver`], `[mrelayd.remote] resolver`).
//!
//! - **Query** (RFC 5782 §2.1, §2.4): IPv4 `192.0.2.99` in `zen.example` is
//!   `99.2.0.192.zen.example`; IPv6 is its 32 nibbles, least significant first
//!   (`b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.8.b.zen.example`).
//! - **Listed** (RFC 5782 §2.1, §2.3): an A record in 127.0.0.0/8; the TXT record of the same
//!   name is the reason, added to the reply unless `dnsbl_reply` gives one for the zone. Any
//!   other address (a list telling a public resolver it is blocked answers outside 127/8, or
//!   127.255.255.x for Spamhaus) is logged and not a listing. NXDOMAIN: not listed.
//! - **DNS failure** (timeout, SERVFAIL): logged, never a refusal (the client is let through,
//!   as Postfix's `reject_rbl_client` does on a lookup error).
//! - **Reply**: `554 5.7.1 Service unavailable; Client host [IP] blocked using ZONE[; TEXT]`,
//!   Postfix's default `rbl_reply` wording, so admins and senders recognise it.
//!
//! **At RCPT, not at connect** (as Postfix's smtpd, `smtpd_recipient_restrictions`): an
//! `AUTH` before `MAIL` exempts the client (a roaming user on a listed dial-up address), the
//! log line names sender and recipient (what a false positive cost), and clients are known to
//! retry a refused greeting at once and forever, while a 5xx at RCPT ends it (RFC 5321
//! §3.1 allows a 554 greeting but the client must still QUIT). The look-up runs once per
//! session, at the first RCPT; every recipient of a listed client gets the same reply.
//! `trusted_networks`, authenticated clients and the other listeners are never looked up.

use std::net::{IpAddr, Ipv4Addr};

use crate::dns::MxResolver;
use crate::log;
use crate::smtp::reply::Reply;

/// The name to query for `ip` in `zone` (RFC 5782 §2.1 IPv4, §2.4 IPv6 nibbles).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.{zone}")
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64 + zone.len());
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0x0f, byte >> 4] {
                    name.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    name.push('.');
                }
            }
            name.push_str(zone);
            name
        }
    }
}

/// Whether an A record of a DNSBL query says "listed": an address in 127.0.0.0/8 (RFC 5782
/// §2.1) that is not one of the 127.255.255.0/24 error codes lists answer to queries they
/// refuse (Spamhaus: "query via public resolver", "excessive number of queries").
pub fn is_listing(a: Ipv4Addr) -> bool {
    let [first, second, third, _] = a.octets();
    first == 127 && !(second == 255 && third == 255)
}

/// The refusal of a client at `ip` listed in `zone`, with `text` (the configured reply or
/// the listing's TXT record) after the Postfix wording. The text keeps printable ASCII only
/// and at most [`MAX_TEXT`] characters: it comes from DNS.
pub fn refusal(ip: IpAddr, zone: &str, text: Option<&str>) -> Reply {
    let mut line = format!(
        "Service unavailable; Client host [{ip}] blocked using {}",
        zone.trim_end_matches('.')
    );
    let clean: Option<String> = text.map(|t| {
        t.chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(MAX_TEXT)
            .collect()
    });
    if let Some(t) = clean.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        line.push_str("; ");
        line.push_str(t);
    }
    Reply::new(554, Some((5, 7, 1)), line)
}

/// The longest reason text copied into a reply.
pub const MAX_TEXT: usize = 200;

/// The zones and the resolver of one mrelayd.
pub struct Dnsbl {
    zones: Vec<String>,
    replies: std::collections::BTreeMap<String, String>,
    resolver: Option<MxResolver>,
}

impl std::fmt::Debug for Dnsbl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnsbl").field("zones", &self.zones).finish()
    }
}

impl Dnsbl {
    /// `None` when no zone is configured; else the zones with the shared resolver settings
    /// (a resolver that cannot be set up is logged, and every look-up is then a DNS failure:
    /// nobody is refused).
    pub fn new(relay: &super::RelayConfig, server: Option<std::net::SocketAddr>) -> Option<Dnsbl> {
        if relay.dnsbl.is_empty() {
            return None;
        }
        let resolver = match MxResolver::new(server) {
            Ok(r) => Some(r),
            Err(e) => {
                log::line(format_args!("DNSBL: {e}"));
                None
            }
        };
        Some(Dnsbl {
            zones: relay
                .dnsbl
                .iter()
                .map(|z| z.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            replies: relay
                .dnsbl_reply
                .iter()
                .map(|(z, t)| (z.trim_end_matches('.').to_ascii_lowercase(), t.clone()))
                .collect(),
            resolver,
        })
    }

    /// The refusal for a client at `ip` when a zone lists it (the first in config order), else
    /// `None`; DNS failures are logged under `who` and let the client through.
    pub async fn check(&self, ip: IpAddr, who: &str) -> Option<Reply> {
        let Some(resolver) = &self.resolver else {
            log::line(format_args!("{who}: DNSBL not checked: no resolver"));
            return None;
        };
        for zone in &self.zones {
            let name = query_name(ip, zone);
            let answers = match resolver.ipv4(&name).await {
                Ok(a) => a,
                Err(e) => {
                    log::line(format_args!("{who}: DNSBL {zone} not checked: {e}"));
                    continue;
                }
            };
            let (listing, other): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) =
                answers.into_iter().partition(|a| is_listing(*a));
            if !other.is_empty() {
                log::line(format_args!(
                    "{who}: DNSBL {zone}: {name} gives {other:?}, not a listing (RFC 5782 §2.1)"
                ));
            }
            let Some(code) = listing.first() else {
                continue;
            };
            let text = match self.replies.get(zone) {
                Some(t) => Some(t.clone()),
                None => match resolver.txt(&name).await {
                    Ok(t) => t.into_iter().next(),
                    Err(_) => None,
                },
            };
            log::line(format_args!("{who}: listed in DNSBL {zone} ({code})"));
            return Some(refusal(ip, zone, text.as_deref()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_reversed_octets_and_nibbles() {
        // RFC 5782 §2.1 and §2.4's examples.
        assert_eq!(
            query_name("192.0.2.99".parse().unwrap(), "bad.example.com"),
            "99.2.0.192.bad.example.com"
        );
        assert_eq!(
            query_name(
                "2001:db8:1:2:3:4:567:89ab".parse().unwrap(),
                "ugly.example.com."
            ),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
        );
        assert_eq!(
            query_name("127.0.0.2".parse().unwrap(), "zen.example"),
            "2.0.0.127.zen.example"
        );
    }

    #[test]
    fn only_127_8_is_a_listing() {
        assert!(is_listing(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(is_listing(Ipv4Addr::new(127, 0, 0, 10)));
        assert!(!is_listing(Ipv4Addr::new(127, 255, 255, 254)));
        assert!(!is_listing(Ipv4Addr::new(192, 0, 2, 1)));
    }

    #[test]
    fn refusal_has_postfix_wording() {
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let r = refusal(ip, "zen.example.", None);
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example\r\n"
        );
        let r = refusal(ip, "zen.example", Some("see\r\nhttp://x/\u{7}?127.0.0.2 "));
        assert_eq!(
            String::from_utf8(r.to_bytes()).unwrap(),
            "554 5.7.1 Service unavailable; Client host [127.0.0.2] blocked using zen.example; \
             seehttp://x/?127.0.0.2\r\n"
        );
        let long = "x".repeat(1000);
        let r = refusal(ip, "zen.example", Some(&long));
        assert!(r.to_bytes().len() < 300);
    }
}
