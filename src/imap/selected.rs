//! The selected mailbox: one IMAP session's selected [`Mailbox`] (RFC 3501 §3.3, the selected
//! state) with the sequence-number ↔ UID map the client knows, and the answers to the
//! commands of that state, serialised with [`imap_codec`] like every response
//! ([`super::response`]).
//!
//! - SELECT and EXAMINE (RFC 3501 §6.3.1, §6.3.2): FLAGS, PERMANENTFLAGS, EXISTS, RECENT,
//!   UNSEEN, UIDVALIDITY, UIDNEXT and `[READ-WRITE]`/`[READ-ONLY]`; a failed SELECT leaves no
//!   mailbox selected. CLOSE (§6.4.2: expunges silently unless read-only), UNSELECT (RFC 3691),
//!   CHECK and NOOP.
//! - EXPUNGE, UID EXPUNGE (RFC 4315 §2.1), FETCH and UID FETCH (§6.4.5, every item and macro;
//!   BODY[...] without PEEK, RFC822 and RFC822.TEXT set \Seen and report FLAGS), SEARCH and UID
//!   SEARCH (§6.4.4, CHARSET UTF-8 or US-ASCII; others `NO [BADCHARSET]`), STORE and UID STORE
//!   (§6.4.6), COPY and UID COPY (§6.4.7, `COPYUID` of RFC 4315 §3), MOVE and UID MOVE
//!   (RFC 6851 §3.3: `COPYUID` in an untagged OK, then the EXPUNGEs).
//! - Changes by other processes (deliveries, other sessions' flag changes and expunges,
//!   [`Mailbox::sync`]) are reported after each command as EXISTS, RECENT, FETCH (FLAGS) and
//!   EXPUNGE; during IDLE ([`Store::pending`]) as soon as the folder's watch
//!   ([`crate::maildir::watch`]) wakes. EXPUNGE is never sent while answering a FETCH, STORE or
//!   SEARCH that names messages by sequence number (RFC 3501 §7.4.1): the expunged messages keep
//!   their numbers until a later command may report them.
//!
//! Bad sequence sets are `BAD` (a number beyond the mailbox, or any message sequence number in
//! an empty mailbox, where `*` names nothing, RFC 3501 §6.4.8 and §9 `seq-number`); UIDs that
//! name no message are ignored (§6.4.8); a FETCH of a message another session expunged meanwhile
//! gets `NO` (RFC 2180 §4.1.2). A MOVE within the selected mailbox is a copy and an expunge.
//! A STORE that creates a keyword sends the new FLAGS and PERMANENTFLAGS.
//!
//! A FETCH is a job ([`Fetching`]) the driver runs a batch of messages at a time, writing each
//! batch out, so `FETCH 1:* BODY[]` over a large mailbox holds one batch, not the mailbox; one
//! message's content is still read into memory whole (the section
//! [`Plan`](super::message::section::Plan) could stream it from the file; not done yet).
//! Folder commands (LIST, CREATE, STATUS ...) are not answered here.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read as _};
use std::num::NonZeroU32;
use std::time::UNIX_EPOCH;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::{Atom, Charset, Vec1};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::uidplus::{UidElement, UidSet};
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName,
};
use imap_codec::imap_types::flag::{Flag, FlagFetch, FlagPerm, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox as MailboxName;
use imap_codec::imap_types::response::{Code, Data, StatusKind};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::IntoStatic as _;

use super::message::{search, Limits, Message};
use super::response::{self, bad, no, ok, other_code, status};
use super::session::After;
use crate::log;
use crate::maildir::mailbox::{Access, Mailbox};
use crate::maildir::watch::Watch;
use crate::maildir::{Flags, Maildir};

/// The system flags a mailbox stores (RFC 3501 §2.3.2), with their Maildir info letters.
const SYSTEM: [(char, Flag<'static>); 5] = [
    ('R', Flag::Answered),
    ('F', Flag::Flagged),
    ('T', Flag::Deleted),
    ('S', Flag::Seen),
    ('D', Flag::Draft),
];

/// One session's mailbox store: the user's Maildir++ and the selected mailbox (module doc).
#[derive(Debug)]
pub struct Store {
    root: Maildir,
    selected: Option<Selected>,
}

/// The selected mailbox with the client's view of it.
#[derive(Debug)]
struct Selected {
    mb: Mailbox,
    /// UIDs by sequence number (index + 1), as the client knows them.
    uids: Vec<u32>,
    /// Expunged messages not reported yet (RFC 3501 §7.4.1).
    gone: BTreeSet<u32>,
    /// RFC822.SIZE of messages whose file name does not say it.
    sizes: HashMap<u32, u64>,
    read_only: bool,
}

/// The IMAP flags of Maildir info `flags` (keyword letters named by the folder's
/// `dovecot-keywords`).
fn imap_flags(mb: &Mailbox, flags: &Flags) -> Vec<Flag<'static>> {
    let mut out = Vec::new();
    for (c, f) in &SYSTEM {
        if flags.contains(*c) {
            out.push(f.clone());
        }
    }
    for c in flags.as_str().chars().filter(char::is_ascii_lowercase) {
        if let Some(name) = mb.view().keywords().name(c) {
            if let Ok(a) = Atom::try_from(name.to_string()) {
                out.push(Flag::Keyword(a));
            }
        }
    }
    out
}

/// `* FLAGS (...)` and `* OK [PERMANENTFLAGS (...)]` for `mb` (RFC 3501 §7.2.6, §7.1): the
/// system flags and the folder's keywords; nothing is permanent when read-only.
fn flag_lists(mb: &Mailbox, read_only: bool) -> Vec<u8> {
    let mut flags: Vec<Flag<'static>> = SYSTEM.iter().map(|(_, f)| f.clone()).collect();
    for (_, name) in mb.view().keywords().iter() {
        if let Ok(a) = Atom::try_from(name.to_string()) {
            flags.push(Flag::Keyword(a));
        }
    }
    let mut out = response::data(Data::Flags(flags.clone()));
    let perm: Vec<FlagPerm<'static>> = if read_only {
        Vec::new()
    } else {
        flags
            .into_iter()
            .map(FlagPerm::Flag)
            .chain([FlagPerm::Asterisk])
            .collect()
    };
    out.extend_from_slice(&status(
        None,
        StatusKind::Ok,
        Some(Code::PermanentFlags(perm)),
        "Flags permitted.",
    ));
    out
}

/// The folder name of IMAP mailbox `name` (modified UTF-7 decoded, RFC 3501 §5.1.3).
fn folder_name(name: &MailboxName<'_>) -> String {
    match name {
        MailboxName::Inbox => "INBOX".to_string(),
        MailboxName::Other(o) => {
            let raw = String::from_utf8_lossy(o.as_ref()).into_owned();
            crate::maildir::mutf7_decode(&raw).unwrap_or(raw)
        }
    }
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// A UID set for COPYUID, runs of consecutive UIDs as ranges (RFC 4315 §3 `uid-set`).
fn uid_set(uids: impl Iterator<Item = u32>) -> Option<UidSet> {
    let mut els: Vec<UidElement> = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    let push = |els: &mut Vec<UidElement>, (a, b): (u32, u32)| {
        els.push(if a == b {
            UidElement::Single(nz(a))
        } else {
            UidElement::Range(nz(a), nz(b))
        })
    };
    for u in uids {
        run = match run {
            Some((a, b)) if b.checked_add(1) == Some(u) => Some((a, u)),
            Some(r) => {
                push(&mut els, r);
                Some((u, u))
            }
            None => Some((u, u)),
        };
    }
    if let Some(r) = run {
        push(&mut els, r);
    }
    Vec1::try_from(els).ok().map(UidSet)
}

/// Whether FETCH item `name` reads the message file.
fn needs_file(name: &MessageDataItemName<'_>, size_known: bool) -> bool {
    match name {
        MessageDataItemName::Flags
        | MessageDataItemName::InternalDate
        | MessageDataItemName::Uid => false,
        MessageDataItemName::Rfc822Size => !size_known,
        _ => true,
    }
}

/// Whether FETCH item `name` sets \Seen (RFC 3501 §6.4.5: BODY[...], RFC822, RFC822.TEXT).
fn sets_seen(name: &MessageDataItemName<'_>) -> bool {
    matches!(
        name,
        MessageDataItemName::BodyExt { peek: false, .. }
            | MessageDataItemName::Rfc822
            | MessageDataItemName::Rfc822Text
    )
}

fn internal_date(secs: i64) -> Option<DateTime> {
    let utc = chrono::DateTime::from_timestamp(secs, 0)?;
    let zone = chrono::FixedOffset::east_opt(0)?;
    DateTime::try_from(utc.with_timezone(&zone)).ok()
}

fn mtime_secs(t: std::time::SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Whether a command that names messages by sequence number may be answered with EXPUNGE
/// (RFC 3501 §7.4.1: not while answering FETCH, STORE or SEARCH).
fn may_expunge(body: &CommandBody<'_>) -> bool {
    !matches!(
        body,
        CommandBody::Fetch { uid: false, .. }
            | CommandBody::Store { uid: false, .. }
            | CommandBody::Search { uid: false, .. }
    )
}

impl Store {
    /// The store of the user's Maildir++ `root`, opened by the driver as the folder commands
    /// see it ([`super::folders::open_store`]: created when missing, symlink policy applied).
    pub fn new(root: Maildir) -> Store {
        Store {
            root,
            selected: None,
        }
    }

    /// Whether a mailbox is selected.
    pub fn is_selected(&self) -> bool {
        self.selected.is_some()
    }

    /// A watch on the selected folder for IDLE (RFC 2177); `None` when nothing is selected.
    /// Must be called within a tokio runtime.
    pub fn watch(&self) -> Option<io::Result<Watch>> {
        self.selected
            .as_ref()
            .map(|s| Watch::new(s.mb.view().maildir()))
    }

    /// The untagged responses for the selected mailbox's changes since they were last
    /// reported (IDLE: any of them, EXPUNGE included, may be sent at once).
    pub fn pending(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(sel) = &mut self.selected {
            if let Err(e) = sel.report(&mut out, true) {
                log::line(format_args!("mailbox sync: {e}"));
            }
        }
        out
    }

    /// Answers a mailbox command of the authenticated or selected state: the responses
    /// (untagged ones, then the tagged one) and the state the session is in after it, or for
    /// FETCH a job the caller runs with [`Store::fetch_more`].
    pub fn command(&mut self, tag: &str, body: CommandBody<'static>) -> Reply {
        let CommandBody::Fetch {
            sequence_set,
            macro_or_item_names,
            uid,
            ..
        } = body
        else {
            let (out, after) = self.command_now(tag, body);
            return Reply::Done(out, after);
        };
        let picked = match &self.selected {
            None => return Reply::Done(bad(Some(tag), "No mailbox selected."), After::Same),
            Some(sel) => match sel.resolve(&sequence_set, uid) {
                Ok(p) => p,
                Err(BadSet) => {
                    return Reply::Done(bad(Some(tag), "Invalid sequence set."), After::Same)
                }
            },
        };
        let names = match macro_or_item_names {
            MacroOrMessageDataItemNames::Macro(m) => {
                m.expand().into_iter().map(|n| n.into_static()).collect()
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(n) => n,
        };
        Reply::Fetching(Fetching {
            tag: tag.to_string(),
            picked,
            next: 0,
            names,
            uid,
            failed: false,
            missing: false,
        })
    }

    /// Answers the next messages of `job` into `out`, until `out` holds `budget` bytes; when
    /// the job is done, its last responses (pending changes, the tagged one) and the state.
    pub fn fetch_more(
        &mut self,
        job: &mut Fetching,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> Option<(Vec<u8>, After)> {
        let Some(sel) = self.selected.as_mut() else {
            return Some((bad(Some(&job.tag), "No mailbox selected."), After::Same));
        };
        while job.next < job.picked.len() && out.len() < budget {
            let i = job.picked[job.next];
            job.next += 1;
            match sel.fetch_one(i, &job.names, job.uid, out) {
                Ok(Fetched::Sent) => {}
                Ok(Fetched::Missing) => job.missing = true,
                Err(e) => {
                    log::line(format_args!("fetch: {e}"));
                    job.next = job.picked.len();
                    job.failed = true;
                }
            }
        }
        if job.next < job.picked.len() {
            return None;
        }
        let mut end = Vec::new();
        if let Err(e) = sel.report(&mut end, job.uid) {
            log::line(format_args!("mailbox sync: {e}"));
        }
        let tagged = if job.failed {
            no(&job.tag, "Some messages could not be fetched.")
        } else if job.missing {
            no(&job.tag, "Some of the requested messages no longer exist.")
        } else {
            ok(&job.tag, "FETCH completed.")
        };
        end.extend_from_slice(&tagged);
        Some((end, After::Same))
    }

    /// [`Store::command`] run to its end, FETCH included, in memory.
    pub fn answer(&mut self, tag: &str, body: CommandBody<'static>) -> (Vec<u8>, After) {
        match self.command(tag, body) {
            Reply::Done(out, after) => (out, after),
            Reply::Fetching(mut job) => {
                let mut out = Vec::new();
                loop {
                    if let Some((end, after)) = self.fetch_more(&mut job, &mut out, usize::MAX) {
                        out.extend_from_slice(&end);
                        return (out, after);
                    }
                }
            }
        }
    }

    fn command_now(&mut self, tag: &str, body: CommandBody<'static>) -> (Vec<u8>, After) {
        match body {
            CommandBody::Select { mailbox, .. } => self.select(tag, &mailbox, false),
            CommandBody::Examine { mailbox, .. } => self.select(tag, &mailbox, true),
            body => {
                let root = self.root.clone();
                let Some(sel) = self.selected.as_mut() else {
                    return (bad(Some(tag), "No mailbox selected."), After::Same);
                };
                let expunge_ok = may_expunge(&body);
                let mut out = Vec::new();
                match sel.run(tag, body, &root, &mut out) {
                    Ok(Done::Tagged(tagged)) => {
                        if let Err(e) = sel.report(&mut out, expunge_ok) {
                            log::line(format_args!("mailbox sync: {e}"));
                        }
                        out.extend_from_slice(&tagged);
                        (out, After::Same)
                    }
                    Ok(Done::Deselect(tagged)) => {
                        self.selected = None;
                        out.extend_from_slice(&tagged);
                        (out, After::Authenticated)
                    }
                    Err(e) => {
                        log::line(format_args!("mailbox command: {e}"));
                        let _ = sel.report(&mut out, expunge_ok);
                        out.extend_from_slice(&status(
                            Some(tag),
                            StatusKind::No,
                            Some(other_code("SERVERBUG")),
                            "Mailbox operation failed.",
                        ));
                        (out, After::Same)
                    }
                }
            }
        }
    }

    /// SELECT or EXAMINE (RFC 3501 §6.3.1, §6.3.2).
    fn select(&mut self, tag: &str, name: &MailboxName<'_>, examine: bool) -> (Vec<u8>, After) {
        self.selected = None;
        let access = if examine {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        };
        let folder = folder_name(name);
        let mb = match Mailbox::open(&self.root, &folder, access) {
            Ok(mb) => mb,
            Err(e) => {
                let text = match e.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::InvalidInput => {
                        "Mailbox doesn't exist."
                    }
                    _ => {
                        log::line(format_args!("select {}: {e}", log::sanitize(&folder)));
                        "Mailbox cannot be opened."
                    }
                };
                return (no(tag, text), After::Authenticated);
            }
        };
        let uids: Vec<u32> = mb.view().messages().iter().map(|m| m.uid).collect();
        let mut out = Vec::new();
        out.extend_from_slice(&flag_lists(&mb, examine));
        let untagged_ok = |code: Code<'_>, t: &str| status(None, StatusKind::Ok, Some(code), t);
        out.extend_from_slice(&response::data(Data::Exists(uids.len() as u32)));
        out.extend_from_slice(&response::data(Data::Recent(mb.recent_count() as u32)));
        let unseen = mb
            .view()
            .messages()
            .iter()
            .position(|m| !m.flags().contains(Flags::SEEN));
        if let Some(i) = unseen {
            out.extend_from_slice(&untagged_ok(
                Code::Unseen(nz(i as u32 + 1)),
                "First unseen.",
            ));
        }
        out.extend_from_slice(&untagged_ok(
            Code::UidValidity(nz(mb.view().uid_validity())),
            "UIDs valid.",
        ));
        out.extend_from_slice(&untagged_ok(
            Code::UidNext(nz(mb.view().uid_next())),
            "Predicted next UID.",
        ));
        let (code, verb) = if examine {
            (Code::ReadOnly, "EXAMINE completed.")
        } else {
            (Code::ReadWrite, "SELECT completed.")
        };
        out.extend_from_slice(&status(Some(tag), StatusKind::Ok, Some(code), verb));
        self.selected = Some(Selected {
            mb,
            uids,
            gone: BTreeSet::new(),
            sizes: HashMap::new(),
            read_only: examine,
        });
        (out, After::Selected { read_only: examine })
    }
}

/// What [`Store::command`] gives back.
#[derive(Debug)]
pub enum Reply {
    /// The responses, and the state after the command.
    Done(Vec<u8>, After),
    /// A FETCH to answer with [`Store::fetch_more`] (or [`Store::answer`]).
    Fetching(Fetching),
}

/// A FETCH in progress, answered a batch of messages at a time ([`Store::fetch_more`]), so a
/// FETCH of a whole mailbox's messages is never held in memory at once.
#[derive(Debug)]
pub struct Fetching {
    tag: String,
    picked: Vec<usize>,
    next: usize,
    names: Vec<MessageDataItemName<'static>>,
    uid: bool,
    failed: bool,
    missing: bool,
}

/// How one message of a FETCH went.
enum Fetched {
    /// Answered.
    Sent,
    /// Expunged meanwhile (RFC 2180 §4.1.2).
    Missing,
}

/// How a command of the selected state ended.
enum Done {
    /// Its tagged response; pending changes are reported before it.
    Tagged(Vec<u8>),
    /// Its tagged response, and the mailbox is no longer selected.
    Deselect(Vec<u8>),
}

/// A sequence set that names no message of the mailbox (RFC 3501 §9 `seq-number`).
struct BadSet;

impl Selected {
    /// Reports the changes [`Mailbox::sync`] finds (RFC 3501 §7.3.1, §7.3.2, §7.4.1, §7.4.2);
    /// expunges only when `expunge_ok`, else they wait in `gone`.
    fn report(&mut self, out: &mut Vec<u8>, expunge_ok: bool) -> io::Result<()> {
        let changes = self.mb.sync()?;
        self.gone.extend(changes.expunged.iter().copied());
        if expunge_ok {
            for uid in std::mem::take(&mut self.gone) {
                if let Ok(i) = self.uids.binary_search(&uid) {
                    self.uids.remove(i);
                    self.sizes.remove(&uid);
                    out.extend_from_slice(&response::data(Data::Expunge(nz(i as u32 + 1))));
                }
            }
        }
        for uid in changes.flags {
            if let (Ok(i), Some(m)) = (self.uids.binary_search(&uid), self.mb.view().get(uid)) {
                let items = vec![
                    MessageDataItem::Uid(nz(uid)),
                    MessageDataItem::Flags(self.fetch_flags(uid, m.flags())),
                ];
                out.extend_from_slice(&fetch_response(i, items));
            }
        }
        if !changes.new.is_empty() {
            self.uids.extend(changes.new);
            self.uids.sort_unstable();
            self.uids.dedup();
            out.extend_from_slice(&response::data(Data::Exists(self.uids.len() as u32)));
            out.extend_from_slice(&response::data(Data::Recent(self.mb.recent_count() as u32)));
        }
        Ok(())
    }

    fn fetch_flags(&self, uid: u32, flags: &Flags) -> Vec<FlagFetch<'static>> {
        let mut v: Vec<FlagFetch<'static>> = imap_flags(&self.mb, flags)
            .into_iter()
            .map(FlagFetch::Flag)
            .collect();
        if self.mb.is_recent(uid) {
            v.push(FlagFetch::Recent);
        }
        v
    }

    /// The indices (sequence number - 1) that `set` names, ascending.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, BadSet> {
        let mut picked = BTreeSet::new();
        if uid {
            let Some(&max) = self.uids.last() else {
                return Ok(Vec::new());
            };
            for s in set.0.as_ref() {
                let v = |x: &SeqOrUid| match x {
                    SeqOrUid::Value(n) => n.get(),
                    SeqOrUid::Asterisk => max,
                };
                let (a, b) = match s {
                    Sequence::Single(x) => (v(x), v(x)),
                    Sequence::Range(x, y) => (v(x).min(v(y)), v(x).max(v(y))),
                };
                let lo = self.uids.partition_point(|&u| u < a);
                let hi = self.uids.partition_point(|&u| u <= b);
                picked.extend(lo..hi);
            }
        } else {
            let n = self.uids.len() as u32;
            if n == 0 {
                return Err(BadSet);
            }
            for s in set.0.as_ref() {
                let v = |x: &SeqOrUid| match x {
                    SeqOrUid::Value(k) if k.get() <= n => Ok(k.get()),
                    SeqOrUid::Value(_) => Err(BadSet),
                    SeqOrUid::Asterisk => Ok(n),
                };
                let (a, b) = match s {
                    Sequence::Single(x) => (v(x)?, v(x)?),
                    Sequence::Range(x, y) => (v(x)?.min(v(y)?), v(x)?.max(v(y)?)),
                };
                picked.extend((a - 1) as usize..b as usize);
            }
        }
        Ok(picked.into_iter().collect())
    }

    fn run(
        &mut self,
        tag: &str,
        body: CommandBody<'static>,
        root: &Maildir,
        out: &mut Vec<u8>,
    ) -> io::Result<Done> {
        let bad_set = || Ok(Done::Tagged(bad(Some(tag), "Invalid sequence set.")));
        let read_only = || Ok(Done::Tagged(no(tag, "Mailbox is read-only.")));
        match body {
            CommandBody::Noop => Ok(Done::Tagged(ok(tag, "NOOP completed."))),
            CommandBody::Check => Ok(Done::Tagged(ok(tag, "CHECK completed."))),
            CommandBody::Unselect => Ok(Done::Deselect(ok(tag, "UNSELECT completed."))),
            CommandBody::Close => {
                if !self.read_only {
                    let deleted = self.mb.deleted();
                    self.mb.expunge(&deleted)?;
                }
                Ok(Done::Deselect(ok(tag, "CLOSE completed.")))
            }
            CommandBody::Expunge => {
                if self.read_only {
                    return read_only();
                }
                let deleted = self.mb.deleted();
                self.mb.expunge(&deleted)?;
                Ok(Done::Tagged(ok(tag, "EXPUNGE completed.")))
            }
            CommandBody::ExpungeUid { sequence_set } => {
                if self.read_only {
                    return read_only();
                }
                let Ok(picked) = self.resolve(&sequence_set, true) else {
                    return bad_set();
                };
                let named: BTreeSet<u32> = picked.iter().map(|&i| self.uids[i]).collect();
                let deleted: Vec<u32> = self
                    .mb
                    .deleted()
                    .into_iter()
                    .filter(|u| named.contains(u))
                    .collect();
                self.mb.expunge(&deleted)?;
                Ok(Done::Tagged(ok(tag, "UID EXPUNGE completed.")))
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => self.search(tag, charset.as_ref(), criteria, uid, out),
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                ..
            } => {
                if self.read_only {
                    return read_only();
                }
                let Ok(picked) = self.resolve(&sequence_set, uid) else {
                    return bad_set();
                };
                self.store(tag, &picked, kind, response, &flags, uid, out)
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => {
                let Ok(picked) = self.resolve(&sequence_set, uid) else {
                    return bad_set();
                };
                self.copy(tag, &picked, &mailbox, root, false, out)
            }
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => {
                if self.read_only {
                    return read_only();
                }
                let Ok(picked) = self.resolve(&sequence_set, uid) else {
                    return bad_set();
                };
                self.copy(tag, &picked, &mailbox, root, true, out)
            }
            _ => Ok(Done::Tagged(bad(Some(tag), "Command not valid here."))),
        }
    }

    /// The file of message `uid`, read whole; None when it is gone.
    fn read(&self, uid: u32) -> io::Result<Option<Vec<u8>>> {
        match self.mb.view().open_message(uid)? {
            Some(mut f) => {
                let mut data = Vec::new();
                f.read_to_end(&mut data)?;
                Ok(Some(data))
            }
            None => Ok(None),
        }
    }

    /// RFC822.SIZE of `uid`: from the file name (`,W=`), a cache, or the file.
    fn rfc822_size(&mut self, uid: u32, data: Option<&[u8]>) -> Option<u64> {
        if let Some(s) = self.mb.view().get(uid).and_then(|m| m.entry.rfc822_size) {
            return Some(s);
        }
        if let Some(&s) = self.sizes.get(&uid) {
            return Some(s);
        }
        let s = match data {
            Some(d) => crate::rfc5322::crlf_len(d),
            None => crate::rfc5322::crlf_len(&self.read(uid).ok()??),
        };
        self.sizes.insert(uid, s);
        Some(s)
    }

    /// One message of a FETCH / UID FETCH (RFC 3501 §6.4.5, §6.4.8: UID FETCH always
    /// includes UID): its `* n FETCH` response into `out`.
    fn fetch_one(
        &mut self,
        i: usize,
        names: &[MessageDataItemName<'static>],
        uid_cmd: bool,
        out: &mut Vec<u8>,
    ) -> io::Result<Fetched> {
        let seen = !self.read_only && names.iter().any(sets_seen);
        let uid = self.uids[i];
        let Some(m) = self.mb.view().get(uid).cloned() else {
            // Expunged by another session, not reported yet (RFC 2180 4.1.2: NO).
            return Ok(Fetched::Missing);
        };
        let size_known = m.entry.rfc822_size.is_some() || self.sizes.contains_key(&uid);
        let data = if names.iter().any(|n| needs_file(n, size_known)) {
            match self.read(uid)? {
                Some(d) => Some(d),
                None => return Ok(Fetched::Missing),
            }
        } else {
            None
        };
        let parsed = match &data {
            Some(d) => {
                let (msg, over) = Message::parse_or_flat(d, Limits::default());
                if let Some(e) = over {
                    log::line(format_args!("fetch uid {uid}: {e}: served as one part"));
                }
                Some(msg)
            }
            None => None,
        };
        let mut flags = m.flags().clone();
        let mut flags_changed = false;
        if seen && !flags.contains(Flags::SEEN) {
            let new = flags.with(Flags::SEEN);
            if self.mb.store(uid, &new)? {
                flags = new;
                flags_changed = true;
            }
        }
        let mut items = Vec::new();
        if uid_cmd || names.contains(&MessageDataItemName::Uid) {
            items.push(MessageDataItem::Uid(nz(uid)));
        }
        for name in names {
            match name {
                MessageDataItemName::Uid => {}
                MessageDataItemName::Flags => {
                    items.push(MessageDataItem::Flags(self.fetch_flags(uid, &flags)));
                }
                MessageDataItemName::InternalDate => {
                    if let Some(d) = internal_date(mtime_secs(m.entry.mtime)) {
                        items.push(MessageDataItem::InternalDate(d));
                    }
                }
                MessageDataItemName::Rfc822Size => {
                    if let Some(s) = self.rfc822_size(uid, data.as_deref()) {
                        items.push(MessageDataItem::Rfc822Size(
                            u32::try_from(s).unwrap_or(u32::MAX),
                        ));
                    }
                }
                other => {
                    if let Some(item) = parsed.as_ref().and_then(|msg| msg.fetch_item(other)) {
                        items.push(item);
                    }
                }
            }
        }
        if flags_changed && !names.contains(&MessageDataItemName::Flags) {
            items.push(MessageDataItem::Flags(self.fetch_flags(uid, &flags)));
        }
        if !items.is_empty() {
            out.extend_from_slice(&fetch_response(i, items));
        }
        Ok(Fetched::Sent)
    }

    /// SEARCH / UID SEARCH (RFC 3501 §6.4.4).
    fn search(
        &mut self,
        tag: &str,
        charset: Option<&Charset<'_>>,
        criteria: Vec1<SearchKey<'static>>,
        uid_cmd: bool,
        out: &mut Vec<u8>,
    ) -> io::Result<Done> {
        if let Some(cs) = charset {
            let name = cs.as_ref();
            if !name.eq_ignore_ascii_case("UTF-8") && !name.eq_ignore_ascii_case("US-ASCII") {
                let allowed = Charset::try_from("UTF-8").into_iter().collect();
                let reply = status(
                    Some(tag),
                    StatusKind::No,
                    Some(Code::BadCharset { allowed }),
                    "Unsupported charset.",
                );
                return Ok(Done::Tagged(reply));
            }
        }
        let mut keys = criteria.into_inner();
        let key = if keys.len() == 1 {
            keys.remove(0)
        } else {
            match Vec1::try_from(keys) {
                Ok(v) => SearchKey::And(v),
                Err(_) => SearchKey::All,
            }
        };
        let needs = search::needs_content(&key);
        let max_seq = self.uids.len() as u32;
        let max_uid = self.uids.last().copied().unwrap_or(0);
        let mut hits = Vec::new();
        for i in 0..self.uids.len() {
            let uid = self.uids[i];
            let Some(m) = self.mb.view().get(uid).cloned() else {
                continue;
            };
            let data = if needs || m.entry.rfc822_size.is_none() && !self.sizes.contains_key(&uid) {
                match self.read(uid)? {
                    Some(d) => Some(d),
                    None => continue,
                }
            } else {
                None
            };
            let size = self.rfc822_size(uid, data.as_deref()).unwrap_or(0);
            let content = if needs {
                data.as_deref()
                    .map(|d| Message::parse_or_flat(d, Limits::default()).0)
                    .map(|msg| search::Content::new(&msg))
            } else {
                None
            };
            let flags = imap_flags(&self.mb, m.flags());
            let meta = search::Meta {
                seq: i as u32 + 1,
                uid,
                max_seq,
                max_uid,
                flags: &flags,
                recent: self.mb.is_recent(uid),
                internal_day: search::day_of(mtime_secs(m.entry.mtime), 0),
                size,
            };
            if search::matches(&key, &meta, content.as_ref()) {
                hits.push(nz(if uid_cmd { uid } else { i as u32 + 1 }));
            }
        }
        out.extend_from_slice(&response::data(Data::Search(hits)));
        Ok(Done::Tagged(ok(tag, "SEARCH completed.")))
    }

    /// STORE / UID STORE (RFC 3501 §6.4.6): the new flags of each message as a Maildir info
    /// rename; FETCH (FLAGS) unless `.SILENT`.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        tag: &str,
        picked: &[usize],
        kind: StoreType,
        response: StoreResponse,
        flags: &[Flag<'static>],
        uid_cmd: bool,
        out: &mut Vec<u8>,
    ) -> io::Result<Done> {
        let keywords_before = self.mb.view().keywords().iter().count();
        let mut letters = String::new();
        let mut refused = false;
        for f in flags {
            match f {
                Flag::Keyword(k) => match self.mb.keyword_letter(k.as_ref())? {
                    Some(c) => letters.push(c),
                    None => refused = true,
                },
                Flag::Extension(_) => {}
                system => {
                    if let Some((c, _)) = SYSTEM.iter().find(|(_, s)| s == system) {
                        letters.push(*c);
                    }
                }
            }
        }
        let given = Flags::parse(&letters);
        if self.mb.view().keywords().iter().count() != keywords_before {
            // A new keyword: the new flag lists (RFC 3501 §7.2.6), before its FETCH.
            out.extend_from_slice(&flag_lists(&self.mb, self.read_only));
        }
        for &i in picked {
            let uid = self.uids[i];
            let Some(m) = self.mb.view().get(uid).cloned() else {
                continue;
            };
            let old = m.flags();
            let new = match kind {
                StoreType::Add => Flags::parse(&format!("{}{}", old.as_str(), given.as_str())),
                StoreType::Remove => Flags::parse(
                    &old.as_str()
                        .chars()
                        .filter(|c| !given.contains(*c))
                        .collect::<String>(),
                ),
                StoreType::Replace => {
                    // Letters IMAP has no flag for (P, passed) stay.
                    let kept: String = old
                        .as_str()
                        .chars()
                        .filter(|c| !c.is_ascii_lowercase() && !SYSTEM.iter().any(|(s, _)| s == c))
                        .collect();
                    Flags::parse(&format!("{kept}{}", given.as_str()))
                }
            };
            let now = if &new != old {
                if !self.mb.store(uid, &new)? {
                    continue;
                }
                new
            } else {
                new
            };
            if response == StoreResponse::Answer {
                let mut items = Vec::new();
                if uid_cmd {
                    items.push(MessageDataItem::Uid(nz(uid)));
                }
                items.push(MessageDataItem::Flags(self.fetch_flags(uid, &now)));
                out.extend_from_slice(&fetch_response(i, items));
            }
        }
        if refused {
            return Ok(Done::Tagged(no(
                tag,
                "No more keywords can be stored here.",
            )));
        }
        Ok(Done::Tagged(ok(tag, "STORE completed.")))
    }

    /// COPY / MOVE and their UID forms (RFC 3501 §6.4.7, RFC 4315 §3, RFC 6851 §3.3).
    fn copy(
        &mut self,
        tag: &str,
        picked: &[usize],
        mailbox: &MailboxName<'_>,
        root: &Maildir,
        moving: bool,
        out: &mut Vec<u8>,
    ) -> io::Result<Done> {
        let folder = folder_name(mailbox);
        let mut dst = match Mailbox::open(root, &folder, Access::Target) {
            Ok(d) => d,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
                ) =>
            {
                let reply = status(
                    Some(tag),
                    StatusKind::No,
                    Some(Code::TryCreate),
                    "Mailbox doesn't exist.",
                );
                return Ok(Done::Tagged(reply));
            }
            Err(e) => return Err(e),
        };
        let uids: Vec<u32> = picked.iter().map(|&i| self.uids[i]).collect();
        let same = dst.view().maildir().path() == self.mb.view().maildir().path();
        let pairs = if moving && same {
            // A MOVE within the mailbox: new copies, the originals expunged (RFC 6851 §3.3
            // asks for the same result as COPY, STORE \Deleted, EXPUNGE of those messages).
            let pairs = self.mb.copy_to(&uids, &mut dst)?;
            let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
            self.mb.expunge(&moved)?;
            pairs
        } else if moving {
            self.mb.move_to(&uids, &mut dst)?
        } else {
            self.mb.copy_to(&uids, &mut dst)?
        };
        let code = match (
            uid_set(pairs.iter().map(|p| p.0)),
            uid_set(pairs.iter().map(|p| p.1)),
        ) {
            (Some(source), Some(destination)) => Some(Code::CopyUid {
                uid_validity: nz(dst.view().uid_validity()),
                source,
                destination,
            }),
            _ => None,
        };
        if moving {
            if let Some(code) = code {
                out.extend_from_slice(&status(None, StatusKind::Ok, Some(code), "Moved UIDs."));
            }
            return Ok(Done::Tagged(ok(tag, "MOVE completed.")));
        }
        Ok(Done::Tagged(status(
            Some(tag),
            StatusKind::Ok,
            code,
            "COPY completed.",
        )))
    }
}

/// `* n FETCH (...)` for the message at index `i`.
fn fetch_response(i: usize, items: Vec<MessageDataItem<'static>>) -> Vec<u8> {
    match Vec1::try_from(items) {
        Ok(items) => response::data(Data::Fetch {
            seq: nz(i as u32 + 1),
            items,
        }),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::decode::Decoder as _;
    use imap_codec::CommandCodec;

    fn cmd(line: &str) -> CommandBody<'static> {
        let line = format!("t {line}\r\n");
        let (_, c) = CommandCodec::default().decode(line.as_bytes()).unwrap();
        c.body.into_static()
    }

    fn say(store: &mut Store, line: &str) -> (String, After) {
        let (out, after) = store.answer("t", cmd(line));
        (String::from_utf8(out).unwrap(), after)
    }

    #[test]
    fn select_fetch_store_search_expunge_over_a_maildir() {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::create(d.path().join("Maildir")).unwrap();
        md.deliver(b"Subject: one\nFrom: a@example.org\n\nhello\n")
            .unwrap();
        md.deliver(b"Subject: two\n\nworld\n").unwrap();
        let mut store = Store::new(md.clone());
        let (out, after) = say(&mut store, "FETCH 1 FLAGS");
        assert!(out.starts_with("t BAD"), "{out}");
        assert_eq!(after, After::Same);
        let (out, after) = say(&mut store, "SELECT INBOX");
        assert_eq!(after, After::Selected { read_only: false });
        assert!(out.contains("* 2 EXISTS\r\n* 2 RECENT\r\n"), "{out}");
        assert!(
            out.contains("[UNSEEN 1]") && out.contains("[UIDNEXT 3]"),
            "{out}"
        );
        assert!(
            out.ends_with("t OK [READ-WRITE] SELECT completed.\r\n"),
            "{out}"
        );
        let (out, _) = say(&mut store, "FETCH 3 FLAGS");
        assert!(out.starts_with("t BAD"), "{out}");
        let (out, _) = say(&mut store, "UID FETCH 1:* (FLAGS RFC822.SIZE)");
        assert!(
            out.contains("* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE 44)"),
            "{out}"
        );
        let (out, _) = say(&mut store, "FETCH 2 BODY[TEXT]");
        assert!(
            out.contains("BODY[TEXT] {7}\r\nworld\r\n FLAGS (\\Seen \\Recent))"),
            "{out}"
        );
        let (out, _) = say(&mut store, "SEARCH UNSEEN");
        assert!(out.starts_with("* SEARCH 1\r\n"), "{out}");
        let (out, _) = say(&mut store, "SEARCH CHARSET KOI8-R BODY x");
        assert!(out.starts_with("t NO [BADCHARSET (UTF-8)]"), "{out}");
        let (out, _) = say(&mut store, "UID SEARCH BODY HELLO");
        assert!(out.starts_with("* SEARCH 1\r\n"), "{out}");
        let (out, _) = say(&mut store, "STORE 1 +FLAGS (\\Deleted $Junk)");
        assert!(
            out.starts_with("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk)\r\n"),
            "{out}"
        );
        assert!(
            out.contains("* 1 FETCH (FLAGS (\\Deleted $Junk \\Recent))"),
            "{out}"
        );
        // Another process delivers: reported at the next command.
        md.deliver(b"Subject: three\n\n3\n").unwrap();
        let (out, _) = say(&mut store, "EXPUNGE");
        assert!(out.starts_with("* 1 EXPUNGE\r\n* 2 EXISTS\r\n"), "{out}");
        md.folder("Archive").unwrap();
        let (out, _) = say(&mut store, "UID COPY 2:3 Archive");
        assert!(out.starts_with("t OK [COPYUID "), "{out}");
        assert!(out.contains(" 2:3 1:2] "), "{out}");
        let (out, _) = say(&mut store, "UID MOVE 2 Archive");
        assert!(
            out.contains(" 2 3] Moved UIDs.\r\n* 1 EXPUNGE\r\n"),
            "{out}"
        );
        let (out, _) = say(&mut store, "COPY 1 Nope");
        assert!(out.starts_with("t NO [TRYCREATE]"), "{out}");
        let (_, after) = say(&mut store, "CLOSE");
        assert_eq!(after, After::Authenticated);
        let (out, after) = say(&mut store, "EXAMINE Nope");
        assert_eq!(
            (out.as_str(), after),
            ("t NO Mailbox doesn't exist.\r\n", After::Authenticated)
        );
    }

    #[test]
    fn expunges_wait_while_fetch_store_and_search_name_sequence_numbers() {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::create(d.path().join("Maildir")).unwrap();
        for m in [
            &b"Subject: a\n\na\n"[..],
            b"Subject: b\n\nb\n",
            b"Subject: c\n\nc\n",
        ] {
            md.deliver(m).unwrap();
        }
        let mut store = Store::new(md.clone());
        say(&mut store, "SELECT INBOX");
        // Another session expunges message 1.
        let mut other = Mailbox::open(&md, "INBOX", Access::ReadWrite).unwrap();
        assert_eq!(other.expunge(&[1]).unwrap(), vec![1]);
        // RFC 3501 7.4.1: no EXPUNGE while answering FETCH, STORE or SEARCH; the numbers hold.
        // (What the session knew of message 1 is still answered, RFC 2180 4.1.1.)
        let (out, _) = say(&mut store, "FETCH 1:* (UID)");
        assert_eq!(
            out,
            "* 1 FETCH (UID 1)\r\n* 2 FETCH (UID 2)\r\n* 3 FETCH (UID 3)\r\nt OK FETCH completed.\r\n"
        );
        let (out, _) = say(&mut store, "FETCH 1 (UID BODY.PEEK[TEXT])");
        assert_eq!(
            out,
            "t NO Some of the requested messages no longer exist.\r\n"
        );
        let (out, _) = say(&mut store, "SEARCH ALL");
        assert_eq!(out, "* SEARCH 2 3\r\nt OK SEARCH completed.\r\n");
        let (out, _) = say(&mut store, "NOOP");
        assert_eq!(out, "* 1 EXPUNGE\r\nt OK NOOP completed.\r\n");
        // A MOVE within the mailbox is a copy and an expunge.
        let (out, _) = say(&mut store, "UID MOVE 3 INBOX");
        assert!(out.contains("[COPYUID "), "{out}");
        assert!(
            out.ends_with(" 3 4] Moved UIDs.\r\n* 2 EXPUNGE\r\n* 2 EXISTS\r\n* 2 RECENT\r\nt OK MOVE completed.\r\n"),
            "{out}"
        );
    }

    #[test]
    fn uid_sets_are_compressed_into_ranges() {
        let s = uid_set([1, 2, 3, 5, 7, 8].into_iter()).unwrap();
        assert_eq!(s.0.as_ref().len(), 3);
        assert!(uid_set(std::iter::empty()).is_none());
    }
}
