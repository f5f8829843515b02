//! SMTP (RFC 5321): the pure protocol parts (no sockets, no tokio) and the shared client.
//!
//! - [`reply`]: reply lines `250-...`/`250 ...` parsed and formatted, enhanced status codes.
//! - [`command`]: client commands parsed (server side) and paths/ESMTP parameters.
//! - [`hops`]: `Received:`/`Delivered-To:` counting for mail-loop detection (RFC 5321 §6.3).
//! - [`server`]: the sans-IO server session state machine used by mrelayd.
//! - [`client`]: the SMTP client shared by msend, mrelayd's remote delivery and mdig-mx.

pub mod client;
pub mod command;
pub mod hops;
pub mod reply;
pub mod server;
