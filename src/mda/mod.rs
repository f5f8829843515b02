//! Local delivery of one message into a Maildir: what `mdeliver` does, and what mrelayd's
//! local delivery calls.
//!
//! # API
//! - [`read_message`]: read the message from a reader with a size cap (empty or too big → 65).
//! - [`prepare`] (sans-IO): mail-loop check on `Delivered-To:`, prepend `Return-Path: <sender>`
//!   and `Delivered-To: recipient`, store CRLF line ends as LF (as Postfix local, maildrop and
//!   dovecot-lda do); everything else byte for byte.
//! - [`deliver`]: prepare, create the Maildir when missing, run the Sieve [`sieve::Script`] if
//!   any, store every copy through [`crate::maildir`], and return a [`Report`]. If any copy
//!   fails, the copies already stored are removed again, so a failure leaves nothing behind and
//!   the caller may retry (exit 75) without duplicates.
//!
//! Errors carry sysexits codes (`crate::exit::code_of`): 65 empty/too big/mail loop, 64 bad
//! envelope (line breaks in an address), 73 the Maildir or a file in it cannot be created
//! (missing permission, path through a non-directory), 75 anything else worth retrying
//! (disk full, I/O error), and 75 for a Maildir that is a symlink or has symlinked `tmp/`,
//! `new/`, `cur/` or folder directories, which is refused unless [`Options::links`] allows it
//! (an admin can fix the Maildir and the mail waits meanwhile; see [`crate::maildir`] for what
//! is followed: the components above the Maildir are, nothing below it is).

pub mod sieve;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exit;
use crate::maildir::{Flags, Links, Maildir, Sub};

/// Largest message accepted when the caller sets no `--max-size` (bytes). Messages are held in
/// memory while being prepared, so there is always a cap.
pub const DEFAULT_MAX_SIZE: u64 = 256 * 1024 * 1024;
/// Longest header section scanned for `Delivered-To:` loop detection (bytes); a header block
/// larger than this is searched only this far.
pub const MAX_HEADER_SCAN: usize = 1024 * 1024;

/// Envelope of one delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Envelope sender (`MAIL FROM`), written as `Return-Path: <sender>`; `""` is the null sender.
    pub sender: Option<String>,
    /// Envelope recipient, written as `Delivered-To:` and used for loop detection.
    pub recipient: Option<String>,
}

/// How to deliver.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Maildir++ folder for the message (or for Sieve's keep); `None` is INBOX.
    pub folder: Option<String>,
    /// Sieve script to run. A script that failed to load or compile is passed as `Err`: it is
    /// reported as a warning and the message goes to INBOX.
    pub sieve: Option<Result<sieve::Script, sieve::ScriptError>>,
    /// Whether the Maildir's directories may be symlinks (`allow_symlinked_maildir`); refused
    /// by default. Message files are never followed.
    pub links: Links,
}

/// One stored copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Folder name (`None` = INBOX).
    pub folder: Option<String>,
    /// The file.
    pub path: PathBuf,
    /// Its unique Maildir name.
    pub unique: String,
}

/// What [`deliver`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Copies stored (empty when Sieve discarded the message).
    pub stored: Vec<Stored>,
    /// Sieve problems (script errors with their line, unsupported actions); print them.
    pub warnings: Vec<String>,
}

/// Reads the whole message, at most `max_size` bytes: empty input and a larger message are
/// errors with code 65, a read error is 75.
pub fn read_message<R: Read>(reader: R, max_size: u64) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader
        .take(max_size.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| exit_io(e, exit::TEMPFAIL))
        .context("reading the message")?;
    if buf.is_empty() {
        return Err(exit::fail(
            exit::DATAERR,
            "empty message: nothing on standard input",
        ));
    }
    if buf.len() as u64 > max_size {
        return Err(exit::fail(
            exit::DATAERR,
            format!("message too big: more than {max_size} bytes"),
        ));
    }
    Ok(buf)
}

/// The stored form of `raw`: `Return-Path:` and `Delivered-To:` prepended when the envelope has
/// them, CRLF turned into LF, every other byte unchanged. Refuses (65) an empty message and a
/// mail loop (a `Delivered-To:` header naming the same recipient, compared without case and
/// angle brackets), and (64) an envelope address containing a line break or NUL (header
/// injection).
///
/// A message piped from an MTA's local delivery (mrelayd's, Postfix's local(8), qmail-local)
/// already starts with that delivery's stamp: a `Return-Path:` and `Delivered-To:` lines, the
/// MTA having checked the loop before adding them. Those first lines ([`stamp_len`]) are this
/// same delivery, not an earlier one, so the two compose to one `Return-Path:` and one
/// `Delivered-To:` per delivery (RFC 5321 section 4.4: the final delivery adds the one
/// Return-Path): a `Delivered-To:` there naming our recipient is neither a loop nor written
/// again, and our `Return-Path:` replaces theirs (theirs stays when we have no sender).
/// A loop is a `Delivered-To:` for us below the stamp, where earlier deliveries' are (under
/// the `Received:` the relaying MTA added since).
pub fn prepare(raw: &[u8], env: &Envelope) -> anyhow::Result<Vec<u8>> {
    if raw.is_empty() {
        return Err(exit::fail(exit::DATAERR, "empty message"));
    }
    for (what, v) in [("sender", &env.sender), ("recipient", &env.recipient)] {
        if let Some(v) = v {
            if v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(exit::fail(
                    exit::USAGE,
                    format!("bad {what} {v:?}: contains a line break"),
                ));
            }
        }
    }
    // An empty recipient (e.g. RECIPIENT= in the environment) means none: no header, no check.
    let recipient = env
        .recipient
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    let stamp_end = stamp_len(raw);
    let (stamp, rest) = raw.split_at(stamp_end);
    let mut keep_stamp: Vec<&[u8]> = Vec::new();
    for line in stamp.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let (name, value) = text.split_at(text.iter().position(|&b| b == b':').unwrap_or(0));
        let value = String::from_utf8_lossy(value.get(1..).unwrap_or_default());
        if name.trim_ascii().eq_ignore_ascii_case(b"return-path") {
            if env.sender.is_none() {
                keep_stamp.push(text);
            }
        } else if recipient.is_none_or(|r| normalize_addr(r) != normalize_addr(&value)) {
            keep_stamp.push(text);
        }
    }
    if let Some(rcpt) = recipient {
        let want = normalize_addr(rcpt);
        if !want.is_empty() && delivered_to(rest).iter().any(|d| normalize_addr(d) == want) {
            return Err(exit::fail(
                exit::DATAERR,
                format!(
                    "mail loop: message already has Delivered-To: {}",
                    rcpt.trim()
                ),
            ));
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 128);
    if let Some(sender) = &env.sender {
        let s = strip_angles(sender);
        out.extend_from_slice(format!("Return-Path: <{s}>\n").as_bytes());
    }
    if let Some(rcpt) = recipient {
        out.extend_from_slice(format!("Delivered-To: {rcpt}\n").as_bytes());
    }
    for line in keep_stamp {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    crlf_to_lf(rest, &mut out);
    Ok(out)
}

/// Length of the delivery stamp at the start of `raw`: a `Return-Path:` line followed by the
/// `Delivered-To:` lines after it (unfolded), as an MTA's local delivery prepends them to what
/// it pipes (see [`prepare`]; mrelayd, Postfix's local(8) and qmail-local write exactly that).
/// 0 when the message starts with anything else, so a bare `Delivered-To:` on top for our
/// recipient is still a loop.
pub fn stamp_len(raw: &[u8]) -> usize {
    let mut end = 0;
    let mut first = true;
    while let Some(rest) = raw.get(end..) {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        let line = &rest[..nl];
        let name = line
            .iter()
            .position(|&b| b == b':')
            .map(|c| line[..c].trim_ascii());
        let want: &[u8] = if first {
            b"return-path"
        } else {
            b"delivered-to"
        };
        let stamp_field = name.is_some_and(|n| n.eq_ignore_ascii_case(want));
        first = false;
        // A folded field is no stamp of ours (the stamp is one line per field).
        let folded = rest.get(nl + 1).is_some_and(|&b| matches!(b, b' ' | b'\t'));
        if !stamp_field || folded {
            break;
        }
        end += nl + 1;
    }
    end
}

/// Appends `src` to `out` with every CRLF replaced by LF (a lone CR is kept).
pub fn crlf_to_lf(src: &[u8], out: &mut Vec<u8>) {
    let mut rest = src;
    while let Some(i) = rest.iter().position(|&b| b == b'\r') {
        out.extend_from_slice(&rest[..i]);
        if rest.get(i + 1) == Some(&b'\n') {
            rest = &rest[i + 1..];
        } else {
            out.push(b'\r');
            rest = &rest[i + 1..];
        }
    }
    out.extend_from_slice(rest);
}

/// The values of all `Delivered-To:` fields in the header section of `raw` (unfolded, RFC 5322
/// section 2.2.3), scanning at most [`MAX_HEADER_SCAN`] bytes.
pub fn delivered_to(raw: &[u8]) -> Vec<String> {
    let head = &raw[..raw.len().min(MAX_HEADER_SCAN)];
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break; // end of the header section
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(c) = current.as_mut() {
                c.push(' ');
                c.push_str(String::from_utf8_lossy(line).trim());
            }
            continue;
        }
        if let Some(c) = current.take() {
            out.push(c);
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = &line[..colon];
            if name.trim_ascii().eq_ignore_ascii_case(b"delivered-to") {
                current = Some(
                    String::from_utf8_lossy(&line[colon + 1..])
                        .trim()
                        .to_string(),
                );
            }
        } else if !line.starts_with(b"From ") {
            break; // not a header line: the header section ended without a blank line
        }
    }
    if let Some(c) = current {
        out.push(c);
    }
    out
}

/// Address for loop comparison: trimmed, without angle brackets, lower case.
fn normalize_addr(a: &str) -> String {
    strip_angles(a).trim().to_ascii_lowercase()
}

/// `a` trimmed, without one pair of enclosing angle brackets.
fn strip_angles(a: &str) -> &str {
    let a = a.trim();
    a.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(a)
}

/// An I/O error with the exit code it deserves: creating or writing refused for permission or
/// a read-only filesystem, or a path through a non-directory, is 73 (cannot create); a
/// temporary condition is 75; anything else is `otherwise`.
fn exit_io(e: io::Error, otherwise: u8) -> anyhow::Error {
    let code = if exit::io_is_temporary(&e) || crate::fsroot::is_refusal(&e) {
        exit::TEMPFAIL
    } else {
        match e.raw_os_error() {
            Some(
                libc::EACCES
                | libc::EPERM
                | libc::EROFS
                | libc::ENOTDIR
                | libc::ENAMETOOLONG
                | libc::ELOOP,
            ) => exit::CANTCREAT,
            _ if e.kind() == io::ErrorKind::NotADirectory => exit::CANTCREAT,
            _ => otherwise,
        }
    };
    // The Failure is the root of the chain (not a context layer) so exit::code_of finds it.
    exit::fail(code, e.to_string())
}

/// One planned copy: folder, flags, content.
struct Target<'a> {
    folder: Option<String>,
    flags: Flags,
    content: std::borrow::Cow<'a, [u8]>,
}

/// Delivers one message into the Maildir at `root` (created when missing). See the module doc.
pub fn deliver(root: &Path, raw: &[u8], env: &Envelope, opts: &Options) -> anyhow::Result<Report> {
    let message = prepare(raw, env)?;
    let inbox = Maildir::create_with(root, opts.links)
        .map_err(|e| exit_io(e, exit::CANTCREAT))
        .with_context(|| format!("creating Maildir {}", root.display()))?;
    let mut report = Report::default();
    let keep_folder = opts.folder.clone();
    let mut targets: Vec<Target> = Vec::new();
    match &opts.sieve {
        None => targets.push(Target {
            folder: keep_folder,
            flags: Flags::empty(),
            content: message.as_slice().into(),
        }),
        Some(Err(e)) => {
            report.warnings.push(format!(
                "sieve script error: {e}; message delivered to INBOX"
            ));
            targets.push(Target {
                folder: None,
                flags: Flags::empty(),
                content: message.as_slice().into(),
            });
        }
        Some(Ok(script)) => {
            let out = script.evaluate(
                &message,
                env.sender.as_deref(),
                env.recipient.as_deref(),
                &inbox,
            );
            report.warnings.extend(out.warnings);
            for action in out.actions {
                let (folder, flags, content) = match action {
                    sieve::Action::Keep { flags, message: m } => (keep_folder.clone(), flags, m),
                    sieve::Action::FileInto {
                        folder,
                        flags,
                        message: m,
                    } => match crate::maildir::folder_dir_name(&folder) {
                        Ok(_) => (Some(folder), flags, m),
                        Err(e) => {
                            report
                                .warnings
                                .push(format!("sieve: fileinto: {e}; kept instead"));
                            (keep_folder.clone(), flags, m)
                        }
                    },
                    sieve::Action::Discard => continue,
                };
                let content = match content {
                    // editheader output: store with LF line ends like everything else
                    Some(m) => {
                        let mut v = Vec::with_capacity(m.len());
                        crlf_to_lf(&m, &mut v);
                        std::borrow::Cow::Owned(v)
                    }
                    None => message.as_slice().into(),
                };
                targets.push(Target {
                    folder,
                    flags: sieve::maildir_flags(&flags),
                    content,
                });
            }
        }
    }
    // RFC 5228 section 4.1: filing the same message into one mailbox twice stores one copy.
    let mut seen: Vec<Option<String>> = Vec::new();
    let mut unique_targets = Vec::new();
    for t in targets {
        let key = match &t.folder {
            None => None,
            Some(f) => crate::maildir::folder_dir_name(f).ok().flatten(),
        };
        if !seen.contains(&key) {
            seen.push(key);
            unique_targets.push(t);
        }
    }
    // Each stored copy with the folder it is in, to take it out again through that folder's
    // directory fds if a later copy fails.
    let mut undo: Vec<(Maildir, Sub, String)> = Vec::new();
    for t in &unique_targets {
        match store(&inbox, t) {
            Ok((s, dir, sub, name)) => {
                report.stored.push(s);
                undo.push((dir, sub, name));
            }
            Err(e) => {
                for (dir, sub, name) in &undo {
                    let _ = dir.remove(*sub, name);
                    let _ = dir.sync();
                }
                return Err(e);
            }
        }
    }
    Ok(report)
}

/// Stores one copy (folder created when missing; flags move it into `cur/`): what was stored,
/// the folder, and where in it the file is (for undoing it).
fn store(inbox: &Maildir, t: &Target) -> anyhow::Result<(Stored, Maildir, Sub, String)> {
    let name = t.folder.as_deref().unwrap_or("INBOX");
    let dir = match &t.folder {
        None => inbox.clone(),
        Some(f) => inbox
            .folder(f)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidInput {
                    exit::fail(exit::USAGE, e.to_string())
                } else {
                    exit_io(e, exit::CANTCREAT)
                }
            })
            .with_context(|| format!("creating folder {name}"))?,
    };
    let d = dir
        .deliver(&t.content)
        .map_err(|e| exit_io(e, exit::TEMPFAIL))
        .with_context(|| format!("delivering into {}", dir.path().display()))?;
    let mut stored = Stored {
        folder: t.folder.clone(),
        path: d.path.clone(),
        unique: d.unique.clone(),
    };
    let mut place = (Sub::New, d.unique.clone());
    if !t.flags.as_str().is_empty() {
        let moved = dir.entry(Sub::New, &d.unique).and_then(|e| {
            let m = dir.move_to_cur(&e, &t.flags)?;
            dir.sync()?;
            Ok(m)
        });
        match moved {
            Ok(m) => {
                stored.path = m.path;
                place = (Sub::Cur, m.name);
            }
            Err(e) => {
                let _ = dir.remove_delivered(&d);
                return Err(exit_io(e, exit::TEMPFAIL))
                    .with_context(|| format!("setting flags in {}", dir.path().display()));
            }
        }
    }
    Ok((stored, dir, place.0, place.1))
}

#[cfg(test)]
mod tests;
