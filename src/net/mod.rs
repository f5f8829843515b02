//! Client-side networking: the one transport every mailkit client runs over, and the SMTP
//! client session driven over it.
//!
//! - [`client`]: connecting (TCP with a timeout), TLS for it (implicit, or STARTTLS after the
//!   protocol's go-ahead) with the certificate checks of [`crate::tls`] (webpki-roots, a CA file,
//!   or a SHA-256 pin of the server's public key), reads against a deadline and writes bounded
//!   per chunk. It knows no protocol: the SMTP session below uses it, and mfetch's POP3 and IMAP
//!   clients will.
//! - [`smtp`]: the async driver of the sans-IO SMTP [`Client`](crate::smtp::client::Client)
//!   over a [`client::Stream`], used by msend, mrelayd's remote delivery and mdig-mx's probe.
//!
//! This is the only client code that touches sockets; the protocol modules (`smtp`, `pop3`)
//! stay sans-IO. The server side of the same concerns is [`crate::server`].

pub mod client;
pub mod smtp;
