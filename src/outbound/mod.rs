//! The outbound SMTP client: delivery of a message to the MX hosts of its recipients' domains
//! (RFC 5321 §5.1) or to a smarthost, over the one SMTP client ([`crate::smtp::client`]).
//! mrelayd's remote delivery and msend (`--server` and `--direct`) both use it, so the MX walk,
//! the TLS policy and AUTH exist once; it knows neither of them.
//!
//! - MX hosts in preference order (equal preferences shuffled, [`crate::dns::order_hosts`]),
//!   the domain's own address when it has no MX, null MX and NXDOMAIN permanent; every address
//!   of a host is tried before the next host. Connection-level trouble (refused, timeout, 4xx
//!   greeting, a failed TLS handshake) moves on to the next address; once a transaction started,
//!   the replies decide.
//! - TLS per destination: `none`, `may` (opportunistic STARTTLS; a failed handshake is retried in
//!   clear, RFC 7435 §3), `encrypt` (STARTTLS required) or `verify` (required, and the
//!   certificate must verify for the MX name against webpki-roots or `ca_file`).
//! - DANE (RFC 7672, [`dane`]): with DNSSEC-validated MX, address and TLSA answers TLS is
//!   required and the certificate must match a TLSA record; otherwise the policy above.
//! - Connections are cached: after a transaction the session goes back to a per-destination pool
//!   for `connection_idle_secs`, and the next message for that destination uses it (RSET/MAIL
//!   again). A cached session the server closed meanwhile is replaced by a fresh one.
//! - A global and a per-destination limit bound parallel sessions (Postfix's
//!   `default_process_limit` and `default_destination_concurrency_limit`).
//! - Mail loops (RFC 5321 §5.1): mrelayd's engine knows [`route::Myself`], its listeners and names. A
//!   next hop address that is one of our listeners (a wildcard listener stands for every local
//!   address at its port), or a server greeting (220 or EHLO) with our name, is not sent to:
//!   as the relayhost or best MX that is "mail for DOMAIN loops back to myself", a permanent
//!   5.4.6; after more preferred MX hosts we are a backup MX and the mail waits for them.
//!   Another server on one of our addresses at another port is another host.
//!
//!
//! # Layout
//! - [`config`]: the `[mrelayd.remote]` section (keys and defaults).
//! - [`route`]: next hops (MX or relayhost), the relayhost syntax, loop detection's "myself".
//! - [`engine`]: [`Engine`]: candidates, sessions, the connection cache and the limits.
//! - [`failure`]: per-recipient outcomes ([`Sent`], [`Failure`]) with what a DSN needs.
//! - [`password`]: the password command of a relayhost or an msend account.

pub mod config;
pub mod dane;
pub mod engine;
pub mod failure;
pub mod mta_sts;
pub mod password;
pub mod route;

pub use engine::Engine;
pub use failure::{Failure, RcptOutcome, Sent, What};
