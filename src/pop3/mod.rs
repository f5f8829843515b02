//! POP3 (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH PLAIN) for `mpopd`.
//!
//! The protocol part is sans-IO and unit-tested directly: [`command`] parses lines,
//! [`session`] is the state machine in the shape of SMTP's (bytes in, framed by the session;
//! events and replies out; the driver answers its questions) and [`encode`] turns Maildir files
//! into CRLF, dot-stuffed transfers. The rest runs it for real: [`config`] is the `[mpopd]`
//! config section, [`maildrop`] locks and scans a user's Maildir and applies deletions, and
//! [`driver`] runs a session over a [`crate::server::Connection`] (the only module here that
//! does I/O), keeping the clocks and the shutdown hook ([`session::Session::shutdown`]).

pub mod command;
pub mod config;
pub mod driver;
pub mod encode;
pub mod maildrop;
pub mod session;

pub use config::Pop3Config;
pub mod login;
