//! Relaying a session to a system user's child (README "Privileges"): once a system user has
//! logged in, the daemon hands the rest of the session to a child running as that user
//! ([`super::spawn::session_child`]) and relays the plaintext between the client (TLS stays in
//! the daemon) and the child's socket, while it keeps enforcing what the child cannot see: the
//! idle timeout of the client connection (no client input and no child output for that long),
//! the session deadline and the server's shutdown, each said by the daemon's own session
//! through its hooks, waited for by the one [`Watch`]. mpopd (`pop3::driver`) and mimapd
//! (`imap::driver`) both relay through [`relay`]; what differs is in their [`Relayed`]: how
//! client bytes become the child's input and what counts as progress.
//!
//! Output of the child goes to the client as soon as it is read (IMAP IDLE's untagged
//! responses are not held back); client input the child has not read yet is held up to
//! [`MAX_PENDING`] octets, after which the client is not read until the child catches up.

use std::io;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::goodbye::{self, Watch};
use super::Connection;
use crate::session::SessionHooks;

/// Client input the daemon holds for a child that is not reading before it stops reading more.
pub const MAX_PENDING: usize = 64 * 1024;
/// Bytes read at a time from either side.
const CHUNK: usize = 64 * 1024;

/// The daemon's side of a relayed session: what it makes of the client's bytes, its progress
/// count for the deadline, and its own session, which says the goodbyes.
pub trait Relayed {
    /// The daemon's session of the protocol (the one that checked the login).
    type Session: SessionHooks;

    /// Takes bytes read from the client.
    fn feed(&mut self, bytes: &[u8]);

    /// Moves the client input that is ready for the child into `to_child`. `false`: the input
    /// cannot go on (e.g. it ended inside a line): the daemon closes the connection.
    fn for_child(&mut self, to_child: &mut Vec<u8>) -> bool;

    /// The progress count: when it grows, the session deadline restarts.
    fn progress(&self) -> u64;

    /// The daemon's session, told why the session ends through its hooks.
    fn session(&mut self) -> &mut Self::Session;

    /// What the session queued to say (its goodbye, after one of the hooks).
    fn take_goodbye(&mut self) -> Vec<u8>;
}

/// Relays the session between `conn` and `child` (module doc) until the child closes its end:
/// after the protocol's logout, or once the client's end of input reaches it after the
/// client's last bytes (which it answers first, as in process). `first` (what the child wrote
/// before the relay began, e.g. the login's reply) goes out first. `waiting_for` names the
/// wait in the timeout's log line.
pub async fn relay<R: Relayed>(
    conn: &mut Connection,
    child: tokio::net::UnixStream,
    first: &[u8],
    relayed: &mut R,
    mut watch: Watch,
    waiting_for: &'static str,
) -> io::Result<()> {
    let (mut from_child, mut to_child) = child.into_split();
    conn.write_all(first).await?;
    let mut buf = vec![0u8; CHUNK];
    // Client input the child has not read yet; `None` once the child stopped reading.
    let mut pending: Option<Vec<u8>> = Some(Vec::new());
    // The client sent its last bytes: the child still answers them, then sees end of input.
    let (mut client_done, mut child_told) = (false, false);
    loop {
        let mut ready = Vec::new();
        if !relayed.for_child(&mut ready) {
            return conn.close().await;
        }
        if let Some(p) = pending.as_mut() {
            p.extend_from_slice(&ready);
        }
        watch.update(relayed.progress());
        let waiting = pending.as_ref().is_some_and(|p| !p.is_empty());
        if client_done && !waiting && !child_told {
            let _ = to_child.shutdown().await;
            child_told = true;
        }
        let room = !client_done && pending.as_ref().is_none_or(|p| p.len() < MAX_PENDING);
        tokio::select! {
            why = watch.ends() => {
                watch.say(relayed.session(), why, waiting_for);
                return say_goodbye(conn, relayed).await;
            }
            got = from_child.read(&mut buf) => match got {
                // The child is done (logout answered) or gone: so is the session.
                Ok(0) | Err(_) => return conn.close().await,
                Ok(n) => conn.write_all(&buf[..n]).await?,
            },
            wrote = to_child.write(pending.as_deref().unwrap_or_default()), if waiting => {
                match wrote {
                    Ok(n) => {
                        if let Some(p) = pending.as_mut() {
                            p.drain(..n);
                        }
                    }
                    // Its replies (and its end) still come from `from_child`.
                    Err(_) => pending = None,
                }
            }
            read = conn.read_chunk(CHUNK), if room => match read {
                Ok(b) if b.is_empty() => client_done = true,
                Ok(b) => relayed.feed(&b),
                Err(e) => {
                    watch.say(relayed.session(), goodbye::idle_timeout(e)?, waiting_for);
                    return say_goodbye(conn, relayed).await;
                }
            },
        }
    }
}

/// Sends what the session queued to say (its goodbye) and closes.
async fn say_goodbye<R: Relayed>(conn: &mut Connection, relayed: &mut R) -> io::Result<()> {
    conn.write_all(&relayed.take_goodbye()).await?;
    conn.close().await
}
