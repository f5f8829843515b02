//! IMAP4rev1 (RFC 3501) for `mimapd`, with LITERAL+ (RFC 7888), SASL-IR (RFC 4959), ID
//! (RFC 2971), ENABLE (RFC 5161), NAMESPACE (RFC 2342), IDLE (RFC 2177) and UNSELECT
//! (RFC 3691).
//!
//! The protocol part is sans-IO and fuzzed: [`framer`] splits the client's bytes into whole
//! commands with their literals (streaming APPEND's message instead of holding it),
//! [`imap_codec`] parses them and serialises every response ([`response`]), and [`session`]
//! is the state machine on the one session pattern ([`crate::session`]): bytes in, events
//! and responses out, the driver answering its questions. The rest runs it for real:
//! [`config`] is the `[mimapd]` section and [`driver`] runs a session over a
//! [`crate::server::Connection`] (the only module here that does network I/O; [`relay`] is what
//! the daemon follows of a session it relays to a system user's child); [`folders`] answers the
//! mailbox-level commands (LIST, CREATE, STATUS, APPEND...) on the user's Maildir. [`message`] is one
//! message file as FETCH and SEARCH see it (MIME structure, ENVELOPE, BODYSTRUCTURE, sections,
//! search keys), a pure library over the file's bytes. [`selected`] is the selected mailbox:
//! the commands of the selected state over the user's Maildir++ (the driver calls it).

pub mod config;
pub mod driver;
pub mod folders;
pub mod framer;
pub mod message;
pub mod relay;
pub mod response;
pub mod selected;
pub mod session;

pub use config::ImapConfig;
