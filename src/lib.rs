//! mailkit: small, composable unix mail programs sharing one core.
//!
//! # Layout
//! - [`cli`]: each program's command line (clap) and its `run` function; `bin/*.rs` only call these.
//! - [`clock`]: the one clock (Unix time now, file times) and RFC 5322 date format; a leaf.
//! - [`exit`]: sysexits.h codes and the one place errors become exit codes and stderr lines.
//! - [`config`]: the one TOML config loader (`/etc/mailkit/mailkit.toml`, `-c`, `MAILKIT_CONFIG`).
//! - [`fsroot`]: directory handles that never follow a symlink below a root (Maildirs, the
//!   queue): `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, `*at` calls, `O_EXCL` creation.
//! - [`durable`]: the one durable write/replace of a file (temp `O_EXCL` → fsync → rename →
//!   fsync dir), through [`fsroot`] handles below a root, path based elsewhere; `fsync_dir`.
//! - [`auth`]: users from a Dovecot-compatible passwd-file, password schemes, the one password check.
//! - [`maildir`]: the one Maildir writer and reader (delivery, listing, flags, Maildir++ folders),
//!   and the IMAP store over it (Dovecot-compatible UIDs, mailboxes, folders, change watching).
//! - [`mda`]: local delivery of one message (headers, loop check, Sieve), used by mdeliver and mrelayd.
//! - [`server`]: the only code that touches listening sockets: listeners, inetd, socket activation,
//!   TLS and STARTTLS, limits, timeouts, shutdown, privilege drop (through [`os`]). Every daemon
//!   reuses it.
//! - [`tls`]: the one rustls setup (server from PEM files, client against webpki-roots, a CA file
//!   or a key pin), the client TLS policy types (`Mode`, `Verify`), certificate checks and parsing.
//! - [`dkim`]: DKIM (RFC 6376) keys, signing and verification over mail-auth, with the [`dns`]
//!   resolver settings; key generation for `mrelayd dkim keygen`.
//! - [`arc`]: ARC (RFC 8617) chain verification over mail-auth, with [`dkim`]'s resolver.
//! - [`authres`]: the one `Authentication-Results:` writer (RFC 8601) and the removal of such
//!   fields claiming our authserv-id (sans-IO).
//! - [`srs`]: the Sender Rewriting Scheme's addresses (libsrs2/postsrsd format), forward and
//!   reverse (sans-IO); mrelayd's use of it is `relay::srs`.
//! - [`dns`]: every DNS lookup (MX routing, A/AAAA with TTLs, TXT) with hickory-resolver, shared by
//!   msend `--direct`, mrelayd and mdig-mx.
//! - [`mdig`]: mdig-mx's report: route, addresses, SPF/DMARC/MTA-STS, SMTP/TLS probes.
//! - [`smtp`]: SMTP protocol code (sans-IO parsers and state machines, the SMTP client's among them).
//! - [`net`]: the one client transport (TCP connect with a timeout, implicit TLS and STARTTLS with
//!   the [`tls`] checks, deadline reads, writes bounded per chunk) and the SMTP client's driver
//!   over it, used by msend, mrelayd's remote delivery and mdig-mx's probe (mfetch next).
//! - [`pop3`]: POP3 protocol (sans-IO) and the mpopd session.
//! - [`fetch`]: mfetch: accounts, the POP3 and IMAP clients (sans-IO protocol, driver over
//!   [`net`]), the per-account state file, the Maildir or MDA destination.
//! - [`imap`]: IMAP protocol (sans-IO framing and session over imap-codec), the mimapd session, and
//!   the message layer (`imap::message`: MIME tree, ENVELOPE, BODYSTRUCTURE, sections, SEARCH).
//! - [`queue`]: mrelayd's durable queue (crash-proof state machine, documented at its top).
//! - [`outbound`]: the outbound SMTP client: next hop (MX walk or relayhost), TLS policy, AUTH,
//!   session cache, limits, per-recipient outcomes; used by mrelayd and msend, knows neither.
//! - [`relay`]: mrelayd: routing (users, aliases, subaddressing), the daemon and queue runner,
//!   local delivery and remote delivery through [`outbound`], DSNs, admin commands.
//! - [`envelope`]: the envelope parameters a message carries from SMTP through the queue to its
//!   DSNs: BODY (RFC 6152), RET and NOTIFY (RFC 3461); the rule for a bare envelope address.
//! - [`session`]: the one session pattern of the server protocols and its hooks
//!   ([`session::SessionHooks`]: the shutdown, idle timeout and deadline goodbyes every
//!   session says; `server::goodbye` waits for them once for every driver).
//! - [`lines`]: the one sans-IO line framer (CRLF/LF, length limit, discarding over-long lines)
//!   shared by the server layer's `Connection` and the protocol sessions.
//! - [`rfc5322`]: the one home of message byte rules: header end, LF → CRLF, dot-stuffing,
//!   bare addresses in the address fields (From, Sender, Reply-To, To, Cc, Bcc, Resent-*, ...)
//!   made `local@domain`.
//! - [`runtime`]: the one tokio runtime builder (daemons, mrelayd's remote delivery, mdig-mx,
//!   msend).
//! - [`msend`]: the submission client: accounts, message preparation, spool.
//! - [`proc`]: the one runner of short-lived child programs: stdin input, bounded output, a
//!   timeout that kills the child's whole process group (checkpassword, pipes, password commands).
//! - [`os`]: the only `unsafe` code: the few libc calls std does not wrap (socket-activation fds,
//!   passwd/group lookups with `getpwnam_r`/`getgrnam_r`, the privilege drop) and a wait for
//!   input with a time limit (`poll`, msend `-bs`); a leaf.
//! - [`log`]: the one log line format of every program (`name: event` on stderr); a leaf, so
//!   `config` and `server` both use it without importing each other.
//! - [`fuzz`]: the bodies of the `cargo fuzz` targets in `fuzz/` (untrusted input of every layer).
//!
//! # Layers
//! A module uses modules of its own layer and the layers below, never one above; the sans-IO
//! protocol modules use no tokio and no sockets (their `driver.rs` does the IO). `tests/layers.rs`
//! checks every `crate::` and `super::` path against this table.
//!
//! | layer | what | modules | sans-IO |
//! |---|---|---|---|
//! | 6 | command lines, fuzz bodies | `cli`, `fuzz` | no |
//! | 5 | programs and protocol drivers | `relay`, `msend`, `mdig`, `fetch`, `smtp::driver`, `pop3::driver`, `pop3::login`, `pop3::config`, `imap::driver`, `imap::config`, `imap::selected`, `imap::folders` | no |
//! | 4 | protocols | `smtp`, `pop3`, `imap`, `fetch::pop3` | yes |
//! | 4 | the outbound client, the client transport and the SMTP client's driver | `outbound`, `net` | no |
//! | 3 | services | `server`, `auth`, `queue`, `mda`, `dkim`, `arc` | no |
//! | 2 | stores and lookups | `maildir`, `config`, `dns`, `tls` | no |
//! | 1 | leaf modules | `clock`, `fsroot`, `durable`, `envelope`, `lines`, `session`, `log`, `os`, `runtime`, `proc`, `rfc5322`, `authres`, `srs`, `exit` | no |
#![deny(unsafe_code)]

pub mod arc;
pub mod auth;
pub mod authres;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dkim;
pub mod dns;
pub mod durable;
pub mod envelope;
pub mod exit;
pub mod fetch;
pub mod fsroot;
pub mod fuzz;
pub mod imap;
pub mod lines;
pub mod log;
pub mod maildir;
pub mod mda;
pub mod mdig;
pub mod msend;
pub mod net;
// The one module allowed to use `unsafe` (libc calls std does not wrap); see its docs.
#[allow(unsafe_code)]
pub mod os;
pub mod outbound;
pub mod pop3;
pub mod proc;
pub mod queue;
pub mod relay;
pub mod rfc5322;
pub mod runtime;
pub mod server;
pub mod session;
pub mod smtp;
pub mod srs;
pub mod tls;
