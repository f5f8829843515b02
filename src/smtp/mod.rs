//! SMTP (RFC 5321): the pure protocol parts (no sockets, no tokio), the server driver and the
//! shared client.
//!
//! - [`reply`]: reply lines `250-...`/`250 ...` parsed and formatted, enhanced status codes.
//! - [`command`]: client commands parsed (server side) and paths/ESMTP parameters.
//! - [`hops`]: `Received:`/`Delivered-To:` counting for mail-loop detection (RFC 5321 §6.3).
//! - [`server`]: the sans-IO server session state machine (bytes in, events and replies out).
//! - [`driver`]: runs a server session over a [`crate::server::Connection`] (timeouts, pacing,
//!   shutdown) and asks the program's [`driver::Policy`] what [`server`] cannot decide; mrelayd
//!   implements it (`relay::daemon`). The only part of `smtp` besides [`client`] that
//!   does I/O.
//! - [`client`]: the SMTP client shared by msend, mrelayd's remote delivery and mdig-mx.

pub mod client;
pub mod command;
pub mod driver;
pub mod hops;
pub mod reply;
pub mod server;
