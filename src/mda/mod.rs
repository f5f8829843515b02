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
//! # Sieve redirect and vacation: order and retries
//! [`deliver`] carries out a script's actions in this order:
//! 1. **redirects** ([`sieve::Action::Redirect`]), each submitted through [`Options::submit`]
//!    ([`send::Submit`]: a sendmail command, or mrelayd's own queue) with the original envelope sender (RFC 5228 section 4.2 lets the
//!    implementation choose; Pigeonhole's default, no SRS: a `<>` or unknown sender stays
//!    `<>`), the message as it would be stored minus its `Return-Path:` line; its
//!    `Delivered-To:` stays, so a copy that comes back is refused as a loop. Each one sent is
//!    remembered ([`memory`], hash of the message and the address, for
//!    [`REDIRECT_MEMORY_SECS`]). A temporary failure fails the delivery with 75 before anything
//!    is stored; the retry skips the redirects already sent, so none goes out twice and no copy
//!    is stored twice. A permanent failure is a warning and the message is kept (RFC 5228
//!    section 2.10.6).
//! 2. **copies** (keep, fileinto), all or none, as above.
//! 3. **vacation** replies ([`sieve::Action::Vacation`]), from `<>` (RFC 5230 section 5,
//!    RFC 3834 section 3.1.2), only after the message is stored; a failure to send one is a
//!    warning (an auto-reply is not worth deferring the mail), and only a reply sent is
//!    remembered for its `:days`.
//!
//! Errors carry sysexits codes (`crate::exit::code_of`): 65 empty/too big/mail loop, 64 bad
//! envelope (line breaks in an address), 73 the Maildir or a file in it cannot be created
//! (missing permission, path through a non-directory), 75 anything else worth retrying
//! (disk full, I/O error), and 75 for a Maildir that is a symlink or has symlinked `tmp/`,
//! `new/`, `cur/` or folder directories, which is refused unless [`Options::links`] allows it
//! (an admin can fix the Maildir and the mail waits meanwhile; see [`crate::maildir`] for what
//! is followed: the components above the Maildir are, nothing below it is).

pub mod memory;
pub mod send;
pub mod sieve;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::exit;
use crate::maildir::{Flags, Links, Maildir, Sub};
use crate::rfc5322;

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
    /// Where Sieve's redirect and vacation submit ([`send::Submit`]): a sendmail command
    /// (mdeliver), mrelayd's own queue or the daemon behind a delivery child's socket (mrelayd's
    /// local delivery); `None` is [`send::Sendmail::default`] (msend).
    pub submit: Option<std::sync::Arc<dyn send::Submit>>,
}

/// How long a redirect already submitted is remembered, so a retried delivery does not send it
/// again (longer than an MTA retries: Postfix gives up after 5 days).
pub const REDIRECT_MEMORY_SECS: u64 = 7 * 86400;

/// One message Sieve submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// `"redirect"` or `"vacation"`.
    pub action: &'static str,
    /// The envelope recipient.
    pub recipient: String,
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
    /// Messages submitted by Sieve's redirect and vacation.
    pub submitted: Vec<Submitted>,
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

/// The values of all `Delivered-To:` fields in the header section of `raw` (fields split by
/// [`rfc5322::Fields`]), unfolded with white space runs made one space, scanning at most
/// [`MAX_HEADER_SCAN`] bytes. A line that is no field ends the header block even without an
/// empty line (as Postfix's cleanup reads a message), except an mbox `From ` line.
pub fn delivered_to(raw: &[u8]) -> Vec<String> {
    let head = &raw[..raw.len().min(MAX_HEADER_SCAN)];
    let header = &head[..rfc5322::header_end(head).header];
    let mut out = Vec::new();
    let mut next = 0;
    for f in rfc5322::Fields::new(header) {
        let skipped = &header[next..f.at];
        if !skipped
            .split_inclusive(|&b| b == b'\n')
            .all(|line| line.starts_with(b"From "))
        {
            break;
        }
        next = f.at + f.raw.len();
        if f.is(b"delivered-to") {
            let value = String::from_utf8_lossy(&f.unfolded()).into_owned();
            out.push(value.split_whitespace().collect::<Vec<_>>().join(" "));
        }
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
    let mut redirects: Vec<(String, Vec<u8>)> = Vec::new();
    let mut vacations: Vec<(String, Vec<u8>, String, u64)> = Vec::new();
    match &opts.sieve {
        None => targets.push(Target {
            folder: keep_folder.clone(),
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
            // vacation's :days memory, read once when the script first asks
            let memory = std::cell::OnceCell::new();
            let now = crate::clock::now();
            let seen = |key: &str| {
                memory
                    .get_or_init(|| memory::Memory::read(&inbox).ok())
                    .as_ref()
                    .is_some_and(|m: &memory::Memory| m.contains(key, now))
            };
            let out = script.evaluate(
                &message,
                env.sender.as_deref(),
                env.recipient.as_deref(),
                &inbox,
                &seen,
            );
            report.warnings.extend(out.warnings);
            for action in out.actions {
                let (folder, flags, content) = match action {
                    sieve::Action::Redirect {
                        address,
                        message: m,
                    } => {
                        let mut content = match m {
                            Some(m) => {
                                let mut v = Vec::with_capacity(m.len());
                                crlf_to_lf(&m, &mut v);
                                v
                            }
                            None => message.clone(),
                        };
                        strip_return_path(&mut content);
                        redirects.push((address, content));
                        continue;
                    }
                    sieve::Action::Vacation {
                        to,
                        message: m,
                        key,
                        expiry_secs,
                    } => {
                        vacations.push((to, m, key, expiry_secs));
                        continue;
                    }
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
    if !redirects.is_empty() {
        let kept = send_redirects(&inbox, &message, env, opts, redirects, &mut report)?;
        if !kept && !targets.iter().any(|t| t.folder == keep_folder) {
            targets.push(Target {
                folder: keep_folder.clone(),
                flags: Flags::empty(),
                content: message.as_slice().into(),
            });
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
    send_vacations(&inbox, opts, vacations, &mut report);
    Ok(report)
}

/// The submission path of `opts` (the default sendmail command when none is set).
fn submitter(opts: &Options) -> std::sync::Arc<dyn send::Submit> {
    opts.submit
        .clone()
        .unwrap_or_else(|| std::sync::Arc::new(send::Sendmail::default()))
}

/// Removes the `Return-Path:` line at the top of `message` (the one line [`prepare`] wrote,
/// even when the message after it starts with white space): a redirected message gets its new
/// one at its final delivery (RFC 5321 section 4.4).
pub fn strip_return_path(message: &mut Vec<u8>) {
    let first = message
        .iter()
        .position(|&b| b == b'\n')
        .map_or(message.len(), |i| i + 1);
    let line = &message[..first];
    let is_rp = line
        .iter()
        .position(|&b| b == b':')
        .is_some_and(|c| line[..c].eq_ignore_ascii_case(b"return-path"));
    if is_rp {
        message.drain(..first);
    }
}

/// Step 1 of the module doc: submits each redirect not sent by an earlier try. Returns `Ok(true)`
/// when all went out, `Ok(false)` when one failed permanently (the message is then kept), and
/// an error (75) on a temporary failure, before anything is stored.
fn send_redirects(
    inbox: &Maildir,
    message: &[u8],
    env: &Envelope,
    opts: &Options,
    redirects: Vec<(String, Vec<u8>)>,
    report: &mut Report,
) -> anyhow::Result<bool> {
    let mut mem = memory::Memory::lock(inbox)
        .map_err(|e| exit_io(e, exit::TEMPFAIL))
        .context("locking the Sieve memory")?;
    let digest = memory::sha256_hex(message);
    let sender = env.sender.as_deref().map(strip_angles).unwrap_or_default();
    let submit = submitter(opts);
    let mut all_sent = true;
    for (address, content) in redirects {
        let key = format!("redirect {digest} {}", normalize_addr(&address));
        let now = crate::clock::now();
        if mem.contains(&key, now) {
            report.warnings.push(format!(
                "sieve: redirect to {address} was sent by an earlier attempt; not sent again"
            ));
            continue;
        }
        match submit.submit(sender, &address, &content) {
            send::Sent::Ok => {
                report.submitted.push(Submitted {
                    action: "redirect",
                    recipient: address.clone(),
                });
                if let Err(e) = mem.remember(&key, now + REDIRECT_MEMORY_SECS, now) {
                    report.warnings.push(format!(
                        "sieve: redirect to {address} sent, but not remembered ({e}): a retry would send it again"
                    ));
                }
            }
            send::Sent::Temporary(why) => {
                return Err(exit::fail(
                    exit::TEMPFAIL,
                    format!("sieve: redirect to {address} failed temporarily ({why}); nothing stored, try again later"),
                ));
            }
            send::Sent::Permanent(why) => {
                report.warnings.push(format!(
                    "sieve: redirect to {address} failed ({why}); message kept"
                ));
                all_sent = false;
            }
        }
    }
    Ok(all_sent)
}

/// Step 3 of the module doc: sends each vacation reply not sent within its `:days`, from `<>`;
/// failures are warnings.
fn send_vacations(
    inbox: &Maildir,
    opts: &Options,
    vacations: Vec<(String, Vec<u8>, String, u64)>,
    report: &mut Report,
) {
    if vacations.is_empty() {
        return;
    }
    let mut mem = match memory::Memory::lock(inbox) {
        Ok(m) => m,
        Err(e) => {
            report.warnings.push(format!(
                "sieve: vacation not sent: cannot lock its memory: {e}"
            ));
            return;
        }
    };
    let submit = submitter(opts);
    for (to, reply, key, expiry) in vacations {
        let now = crate::clock::now();
        if mem.contains(&key, now) {
            continue; // another delivery answered meanwhile
        }
        match submit.submit("", &to, &reply) {
            send::Sent::Ok => {
                report.submitted.push(Submitted {
                    action: "vacation",
                    recipient: to.clone(),
                });
                if let Err(e) = mem.remember(&key, now.saturating_add(expiry), now) {
                    report.warnings.push(format!(
                        "sieve: vacation reply to {to} sent, but not remembered: {e}"
                    ));
                }
            }
            send::Sent::Temporary(why) | send::Sent::Permanent(why) => report
                .warnings
                .push(format!("sieve: vacation reply to {to} not sent: {why}")),
        }
    }
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
