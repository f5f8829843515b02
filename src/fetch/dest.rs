//! Where mfetch puts a fetched message: a Maildir through the one writer
//! ([`crate::maildir::Maildir::deliver_tagged`], fsynced before it returns), or an MDA command
//! run once per message through [`crate::proc`].
//!
//! Exactly once into a Maildir: each message's file name carries a tag derived from the
//! account and the message's server key (POP3 UIDL; IMAP folder, UIDVALIDITY and UID), see
//! [`tag`]. Before fetching, the destination lists the tags already in its Maildir
//! ([`Destination::already`]); a message killed between its delivery and the state file's line
//! for it is found there on the rerun and recorded instead of delivered again. Through an MDA
//! no such check is possible: a kill at that instant costs one duplicate, at most.
//!
//! An IMAP message arrives in pieces ([`Destination::begin`], [`Sink::write`],
//! [`Destination::finish`]): into a Maildir the pieces go straight to the file in `tmp/`
//! (a message of 100 MB is never whole in memory); an MDA gets the message whole on stdin,
//! so for an MDA it is collected first (up to [`super::MAX_MESSAGE`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::exit;
use crate::maildir::{tag_of, Links, Maildir};
use crate::mda::memory::sha256_hex;
use crate::rfc5322;

/// How long an MDA may run for one message before it is killed (with its process group).
pub const MDA_TIMEOUT: Duration = Duration::from_secs(600);
/// Most bytes of an MDA's output kept (it is shown on failure).
const MDA_OUTPUT: usize = 4096;

/// The tag of a message: 24 hex digits of SHA-256 over the account id and the message's key
/// fields, NUL-separated.
pub fn tag(account: &str, key: &[&str]) -> String {
    let mut text = String::from(account);
    for k in key {
        text.push('\0');
        text.push_str(k);
    }
    sha256_hex(text.as_bytes())[..24].to_string()
}

/// Most bytes of a streamed message's start kept, for its Message-ID and the MDA's SENDER.
const HEAD_KEPT: usize = 64 * 1024;
/// Pieces in flight between the connection and the Maildir writer.
const PIECES: usize = 16;

/// What the connection hands the Maildir writer.
enum Piece {
    Data(Vec<u8>),
    /// The message is complete (without it, a closed channel means it was cut short).
    End,
}

/// The Maildir writer's side of a streamed message: a blocking reader of the pieces.
struct PieceReader {
    rx: tokio::sync::mpsc::Receiver<Piece>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl std::io::Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos < self.cur.len() {
                let n = buf.len().min(self.cur.len() - self.pos);
                buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Data(v)) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Some(Piece::End) => self.done = true,
                // The fetch failed mid-message: the writer removes its file in tmp/.
                None => return Err(std::io::Error::other("the message was cut short")),
            }
        }
    }
}

/// One message being delivered piece by piece (module doc).
pub struct Sink {
    folder: String,
    tag: String,
    head: Vec<u8>,
    to: SinkTo,
}

enum SinkTo {
    Maildir {
        tx: tokio::sync::mpsc::Sender<Piece>,
        task: tokio::task::JoinHandle<std::io::Result<crate::maildir::Delivered>>,
    },
    Mda(Vec<u8>),
}

impl Sink {
    /// Adds the next piece of the message (LF line ends).
    pub async fn write(&mut self, piece: Vec<u8>) -> anyhow::Result<()> {
        if self.head.len() < HEAD_KEPT {
            let n = piece.len().min(HEAD_KEPT - self.head.len());
            self.head.extend_from_slice(&piece[..n]);
        }
        match &mut self.to {
            SinkTo::Maildir { tx, .. } => {
                // A closed channel: the writer failed; finish reports why.
                let _ = tx.send(Piece::Data(piece)).await;
            }
            SinkTo::Mda(buf) => buf.extend_from_slice(&piece),
        }
        Ok(())
    }

    /// The Message-ID of the message (from its first bytes).
    pub fn message_id(&self) -> Option<String> {
        message_id_of(&self.head)
    }
}

/// How one delivery ended.
#[derive(Debug)]
pub enum Delivery {
    /// Stored durably (or accepted by the MDA with exit 0).
    Done,
    /// The MDA exited 75: keep the message on the server, try it again next run.
    Later(String),
}

/// The destination of one account's messages.
pub enum Destination {
    /// A Maildir (its folders for IMAP folders other than INBOX), and the tags in each
    /// folder, listed once.
    Maildir {
        /// The INBOX Maildir.
        root: Maildir,
        /// Folder Maildirs opened so far, by IMAP folder name.
        folders: HashMap<String, Maildir>,
        /// Tags found in each folder.
        tags: HashMap<String, HashSet<String>>,
    },
    /// `sh -c COMMAND` with the message on stdin and SENDER / RECIPIENT in the environment.
    Mda {
        /// The command.
        command: String,
        /// `RECIPIENT`.
        recipient: String,
    },
}

/// `SENDER` for a message: the address of its first `Return-Path:` (empty for `<>`), else
/// `<>` (RFC 5321 §4.4: the final delivery's record of the envelope sender).
pub fn sender_of(message: &[u8]) -> String {
    match header_value(message, "return-path") {
        Some(v) => {
            let v = v.trim();
            let inner = v
                .strip_prefix('<')
                .and_then(|r| r.split('>').next())
                .unwrap_or(v);
            if inner.is_empty() {
                "<>".into()
            } else {
                inner.to_string()
            }
        }
        None => "<>".into(),
    }
}

/// The Message-ID of a message (its first `Message-ID:` field, white space removed), for
/// resynchronisation.
pub fn message_id_of(message: &[u8]) -> Option<String> {
    let v = header_value(message, "message-id")?;
    let id: String = v.split_whitespace().collect();
    (!id.is_empty() && id.len() <= 998).then_some(id)
}

/// The unfolded value of the first header field `name` (lower case) in the header section.
pub fn header_value(message: &[u8], name: &str) -> Option<String> {
    let header = &message[..rfc5322::header_end(message).header];
    rfc5322::Fields::new(header)
        .find(|f| f.is(name.as_bytes()))
        .map(|f| String::from_utf8_lossy(&f.unfolded()).into_owned())
}

impl Destination {
    /// A Maildir destination, created when missing.
    pub fn maildir(path: &PathBuf) -> anyhow::Result<Destination> {
        let root = Maildir::create_with(path, Links::Refuse).map_err(|e| {
            let code = if exit::io_is_temporary(&e) {
                exit::TEMPFAIL
            } else {
                exit::CANTCREAT
            };
            exit::fail(code, format!("Maildir {}: {e}", path.display()))
        })?;
        Ok(Destination::Maildir {
            root,
            folders: HashMap::new(),
            tags: HashMap::new(),
        })
    }

    /// The Maildir of IMAP `folder` (INBOX is the root), opened or created once.
    fn folder(&mut self, folder: &str) -> std::io::Result<Option<(Maildir, &mut HashSet<String>)>> {
        let Destination::Maildir {
            root,
            folders,
            tags,
        } = self
        else {
            return Ok(None);
        };
        if !folders.contains_key(folder) {
            let md = root.folder(folder)?;
            let mut found = HashSet::new();
            for e in md.list_all()? {
                if let Some(t) = tag_of(&e.unique) {
                    found.insert(t.to_string());
                }
            }
            folders.insert(folder.to_string(), md);
            tags.insert(folder.to_string(), found);
        }
        let md = folders[folder].clone();
        let t = tags.entry(folder.to_string()).or_default();
        Ok(Some((md, t)))
    }

    /// Whether a message with `tag` is in `folder`'s Maildir already (always false for an
    /// MDA).
    pub fn already(&mut self, folder: &str, tag: &str) -> std::io::Result<bool> {
        Ok(match self.folder(folder)? {
            Some((_, tags)) => tags.contains(tag),
            None => false,
        })
    }

    /// Starts delivering a message that arrives in pieces, for IMAP folder `folder`.
    pub fn begin(&mut self, folder: &str, tag: &str) -> anyhow::Result<Sink> {
        let to = match self.folder(folder).map_err(|e| store_error(&e))? {
            Some((md, _)) => {
                let (tx, rx) = tokio::sync::mpsc::channel(PIECES);
                let reader = PieceReader {
                    rx,
                    cur: Vec::new(),
                    pos: 0,
                    done: false,
                };
                let t = tag.to_string();
                let task = tokio::task::spawn_blocking(move || md.deliver_tagged_from(reader, &t));
                SinkTo::Maildir { tx, task }
            }
            None => SinkTo::Mda(Vec::new()),
        };
        Ok(Sink {
            folder: folder.to_string(),
            tag: tag.to_string(),
            head: Vec::new(),
            to,
        })
    }

    /// Ends a message begun with [`Destination::begin`]: stored durably (or handed to the MDA)
    /// when this returns [`Delivery::Done`].
    pub async fn finish(&mut self, sink: Sink) -> anyhow::Result<Delivery> {
        match sink.to {
            SinkTo::Maildir { tx, task } => {
                let _ = tx.send(Piece::End).await;
                drop(tx);
                task.await
                    .map_err(|e| exit::fail(exit::SOFTWARE, e.to_string()))?
                    .map_err(|e| store_error(&e))?;
                if let Ok(Some((_, tags))) = self.folder(&sink.folder) {
                    tags.insert(sink.tag);
                }
                Ok(Delivery::Done)
            }
            SinkTo::Mda(buf) => self.deliver(&sink.folder, &buf, &sink.tag).await,
        }
    }

    /// Delivers `message` (LF line ends) for IMAP folder `folder` (`INBOX` for POP3).
    pub async fn deliver(
        &mut self,
        folder: &str,
        message: &[u8],
        tag: &str,
    ) -> anyhow::Result<Delivery> {
        if let Some((md, tags)) = self.folder(folder).map_err(|e| store_error(&e))? {
            let data = message.to_vec();
            let t = tag.to_string();
            let res = tokio::task::spawn_blocking(move || md.deliver_tagged(&data, &t))
                .await
                .map_err(|e| exit::fail(exit::SOFTWARE, e.to_string()))?;
            res.map_err(|e| store_error(&e))?;
            tags.insert(tag.to_string());
            return Ok(Delivery::Done);
        }
        let Destination::Mda { command, recipient } = self else {
            unreachable!("a destination is a Maildir or an MDA")
        };
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command.as_str())
            .env("SENDER", sender_of(message))
            .env("RECIPIENT", recipient.as_str());
        let opts = crate::proc::Options {
            stdin: Some(message.to_vec()),
            timeout: MDA_TIMEOUT,
            max_output: MDA_OUTPUT,
            capture_stderr: false,
        };
        let out = crate::proc::run_async(cmd, opts)
            .await
            .map_err(|e| exit::fail(exit::OSERR, format!("running MDA {command:?}: {e}")))?;
        use crate::proc::Status;
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match out.status {
            Status::Exited(0) => Ok(Delivery::Done),
            Status::Exited(75) => Ok(Delivery::Later(format!("MDA {command:?} exited 75 {said}"))),
            Status::Exited(c) => Err(exit::fail(
                exit::UNAVAILABLE,
                format!("MDA {command:?} exited {c} {said}"),
            )),
            Status::Signaled(s) => Err(exit::fail(
                exit::UNAVAILABLE,
                format!("MDA {command:?} killed by signal {s}"),
            )),
            Status::TimedOut => Err(exit::fail(
                exit::TEMPFAIL,
                format!("MDA {command:?} timed out and was killed"),
            )),
        }
    }
}

fn store_error(e: &std::io::Error) -> anyhow::Error {
    let code = if exit::io_is_temporary(e) {
        exit::TEMPFAIL
    } else {
        exit::CANTCREAT
    };
    exit::fail(code, format!("storing into the Maildir: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        let m = b"Return-Path: <a@b>\nMessage-ID:\n <x@y>\nSubject: s\n\nMessage-ID: <no>\n";
        assert_eq!(sender_of(m), "a@b");
        assert_eq!(message_id_of(m).as_deref(), Some("<x@y>"));
        assert_eq!(sender_of(b"Return-Path: <>\n\n"), "<>");
        assert_eq!(sender_of(b"Subject: x\n\n"), "<>");
        assert_eq!(message_id_of(b"Subject: x\n\nMessage-ID: <b>\n"), None);
        assert_ne!(tag("a", &["1"]), tag("a1", &[""]));
        assert_eq!(tag("a", &["1"]).len(), 24);
    }
}
