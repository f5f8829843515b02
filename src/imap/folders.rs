//! mailbox-level commands: LIST, LSUB, CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, STATUS
//! and APPEND (RFC 3501 §6.3) on the user's Maildir++ store ([`crate::maildir::folders`],
//! [`crate::maildir::uidlist::View`]), answered with [`imap_codec`] types.
//!
//! The driver calls [`answer`] for every command of the authenticated or selected state; it
//! answers the ones above (None for the others) with the untagged and tagged responses. APPEND
//! streams: [`Append::begin`] opens a file in the folder's `tmp/` before the literal is read,
//! [`Append::write`] takes its octets as they arrive, [`Append::finish`] commits it with its
//! flags and INTERNALDATE and answers `OK [APPENDUID v uid]` (RFC 4315 §3) once file and uid
//! list are durable; a missing folder is `NO [TRYCREATE]` (RFC 3501 §6.3.11).
//!
//! Names: the wire form is modified UTF-7 (RFC 3501 §5.1.3) with `.` between levels, the
//! store's is UTF-8 ([`wire_to_name`], [`name_to_wire`]). Names that are not modified UTF-7,
//! that have an empty level (`..`, a leading `.`), a `/` (Maildir++ has `.` only; the store
//! would read it as a separator), a control character or too many octets are refused with
//! `NO [CANNOT]` (RFC 5530) before anything touches the disk, and the store refuses them
//! again ([`crate::maildir::folder_dir_name`]), so no name reaches outside the Maildir.
//!
//! LIST patterns (RFC 3501 §6.3.8): `*` matches anything, `%` anything but the delimiter. The
//! matcher ([`matches`]) is a dynamic programme over pattern × name, O(pattern · name), and a
//! pattern is held to [`MAX_PATTERN`] octets and [`MAX_WILDCARDS`] wildcards (`BAD`), so no
//! pattern can make matching exponential (the wildcard DoS class of IMAP servers).
//!
//! STATUS (RFC 3501 §6.3.10) reads a folder's view without claiming its \Recent messages: they
//! stay for the session that selects the folder (RFC 3501 §2.3.2).

use std::io::{self, Write as _};
use std::num::NonZeroU32;
use std::time::SystemTime;

use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::{Atom, QuotedChar};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::flag::{Flag, FlagNameAttribute};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox as WireMailbox};
use imap_codec::imap_types::response::{Code, Data, StatusKind};
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};

use super::response::{self, other_code, status};
use super::session::DELIMITER;
use crate::log;
use crate::maildir::uidlist::View;
use crate::maildir::{folder_dir_name, MAX_FOLDER_NAME};
use crate::maildir::{folders, mutf7_decode, mutf7_encode, Flags, Links, Maildir, Staging};

/// The longest LIST/LSUB pattern (reference and mailbox together), in octets.
pub const MAX_PATTERN: usize = 1024;
/// The most wildcards (`*`, `%`) in one LIST/LSUB pattern, after runs are collapsed.
pub const MAX_WILDCARDS: usize = 32;

/// Opens the user's Maildir (created when missing) for the mailbox commands. A user without a
/// `subscriptions` file (a first IMAP login) gets the SPECIAL-USE folders (RFC 6154),
/// created and subscribed ([`folders::create_special_use`]); later logins leave the folders
/// as the user left them.
pub fn open_store(path: &std::path::Path, links: Links) -> io::Result<Maildir> {
    let md = Maildir::create_with(path, links)?;
    match md.root_dir().stat(folders::SUBSCRIPTIONS_FILE) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => folders::create_special_use(&md)?,
        Err(e) => return Err(e),
    }
    Ok(md)
}

/// Answers `body` when it is one of the mailbox-level commands (module doc): the untagged
/// responses and the tagged one for `tag`. None for every other command.
pub fn answer(root: &Maildir, tag: &str, body: &CommandBody<'_>) -> Option<Vec<u8>> {
    let result = match body {
        CommandBody::List {
            reference,
            mailbox_wildcard,
        } => list(root, tag, reference, mailbox_wildcard, false),
        CommandBody::Lsub {
            reference,
            mailbox_wildcard,
        } => list(root, tag, reference, mailbox_wildcard, true),
        CommandBody::Create { mailbox } => create(root, tag, mailbox),
        CommandBody::Delete { mailbox } => delete(root, tag, mailbox),
        CommandBody::Rename { from, to } => rename(root, tag, from, to),
        CommandBody::Subscribe { mailbox } => subscribe(root, tag, mailbox, true),
        CommandBody::Unsubscribe { mailbox } => subscribe(root, tag, mailbox, false),
        CommandBody::Status {
            mailbox,
            item_names,
        } => status_of(root, tag, mailbox, item_names),
        _ => return None,
    };
    Some(result.unwrap_or_else(|e| {
        log::line(format_args!(
            "mailbox command failed in {}: {e}",
            root.path().display()
        ));
        status(
            Some(tag),
            StatusKind::No,
            Some(other_code("SERVERBUG")),
            "Internal error, see the server log.",
        )
    }))
}

fn no_code(tag: &str, code: Code<'static>, text: &str) -> Vec<u8> {
    status(Some(tag), StatusKind::No, Some(code), text)
}

/// `NO [CANNOT]` for a name the store cannot take (RFC 5530).
fn invalid(tag: &str) -> Vec<u8> {
    no_code(tag, other_code("CANNOT"), "Invalid mailbox name.")
}

fn nonexistent(tag: &str) -> Vec<u8> {
    no_code(tag, other_code("NONEXISTENT"), "Mailbox does not exist.")
}

/// The store's name (UTF-8, `INBOX` for any case of it) of wire name `raw`; None when it is
/// not a valid name (module doc).
pub fn wire_to_name(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    if !text.is_ascii() || text.contains('/') {
        return None;
    }
    let name = mutf7_decode(text)?;
    if name.eq_ignore_ascii_case("INBOX") {
        return Some("INBOX".into());
    }
    if name.len() > MAX_FOLDER_NAME || name.split(DELIMITER).any(str::is_empty) {
        return None;
    }
    // The store's own rules (control characters, length of the encoded form).
    folder_dir_name(&name).ok()?;
    Some(name)
}

/// The wire name of store name `name` (modified UTF-7).
pub fn name_to_wire(name: &str) -> WireMailbox<'static> {
    if name.eq_ignore_ascii_case("INBOX") {
        return WireMailbox::Inbox;
    }
    let encoded = mutf7_encode(name);
    WireMailbox::try_from(encoded).unwrap_or(WireMailbox::Inbox)
}

fn mailbox_name(m: &WireMailbox<'_>) -> Option<String> {
    match m {
        WireMailbox::Inbox => Some("INBOX".into()),
        WireMailbox::Other(o) => wire_to_name(o.as_ref()),
    }
}

fn delimiter() -> Option<QuotedChar> {
    QuotedChar::try_from(DELIMITER).ok()
}

fn attribute(name: &'static str) -> Option<FlagNameAttribute<'static>> {
    Atom::try_from(name).ok().map(FlagNameAttribute::from)
}

/// One token of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `*`
    Any,
    /// `%`
    Level,
}

/// A LIST pattern, compiled: runs of wildcards collapsed (`**` is `*`, `%*` is `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<Token>);

/// Why a pattern was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternError {
    /// Over [`MAX_PATTERN`] octets or [`MAX_WILDCARDS`] wildcards.
    TooComplex,
}

impl Pattern {
    /// Compiles `text` (UTF-8, wildcards `*` and `%`). A leading `INBOX` in any case is INBOX
    /// (RFC 3501 §5.1: INBOX is case-insensitive).
    pub fn new(text: &str) -> Result<Pattern, PatternError> {
        if text.len() > MAX_PATTERN {
            return Err(PatternError::TooComplex);
        }
        let mut text = text.to_string();
        if text.len() >= 5 && text.is_char_boundary(5) && text[..5].eq_ignore_ascii_case("INBOX") {
            let rest = &text[5..];
            if rest.is_empty() || rest.starts_with(DELIMITER) || rest.starts_with(['*', '%']) {
                text = format!("INBOX{rest}");
            }
        }
        let mut tokens: Vec<Token> = Vec::new();
        for c in text.chars() {
            let t = match c {
                '*' => Token::Any,
                '%' => Token::Level,
                c => Token::Char(c),
            };
            match (tokens.last().copied(), t) {
                (Some(Token::Any), Token::Any | Token::Level) => {}
                (Some(Token::Level), Token::Level) => {}
                (Some(Token::Level), Token::Any) => {
                    if let Some(last) = tokens.last_mut() {
                        *last = Token::Any;
                    }
                }
                _ => tokens.push(t),
            }
        }
        let wild = tokens
            .iter()
            .filter(|t| !matches!(t, Token::Char(_)))
            .count();
        if wild > MAX_WILDCARDS {
            return Err(PatternError::TooComplex);
        }
        Ok(Pattern(tokens))
    }

    /// Whether it matches `name`: a dynamic programme over (token, character), so
    /// O(tokens · characters) whatever the wildcards.
    pub fn matches(&self, name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        // row[j]: the tokens so far match chars[..j].
        let mut row = vec![false; chars.len() + 1];
        row[0] = true;
        for t in &self.0 {
            let mut next = vec![false; chars.len() + 1];
            match *t {
                Token::Char(c) => {
                    for j in 0..chars.len() {
                        next[j + 1] = row[j] && chars[j] == c;
                    }
                }
                Token::Any => {
                    let mut reach = false;
                    for j in 0..=chars.len() {
                        reach |= row[j];
                        next[j] = reach;
                    }
                }
                Token::Level => {
                    let mut reach = false;
                    for j in 0..=chars.len() {
                        if j > 0 && chars[j - 1] == DELIMITER {
                            reach = false;
                        }
                        reach |= row[j];
                        next[j] = reach;
                    }
                }
            }
            row = next;
        }
        row[chars.len()]
    }

    /// Whether it ends in `%` (RFC 3501 §6.3.9: LSUB then also shows unsubscribed parents).
    fn has_level_wildcard(&self) -> bool {
        self.0.contains(&Token::Level)
    }
}

/// [`Pattern::new`] and [`Pattern::matches`] in one (for callers with one name).
pub fn matches(pattern: &str, name: &str) -> Result<bool, PatternError> {
    Ok(Pattern::new(pattern)?.matches(name))
}

/// The text of a LIST argument (reference or pattern), decoded from modified UTF-7; None when
/// it is not valid modified UTF-7 (nothing matches it then).
fn list_text(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?;
    if !text.is_ascii() {
        return None;
    }
    mutf7_decode(text)
}

/// The attributes LIST gives folder `f` (RFC 3501 §7.2.2, RFC 3348, RFC 6154).
fn list_attributes(f: &folders::Folder) -> Vec<FlagNameAttribute<'static>> {
    let mut items = Vec::new();
    if !f.selectable {
        items.push(FlagNameAttribute::Noselect);
    }
    let children = if f.has_children {
        "HasChildren"
    } else {
        "HasNoChildren"
    };
    items.extend(attribute(children));
    if let Some(su) = f.special_use {
        items.extend(attribute(su.trim_start_matches('\\')));
    }
    items
}

/// LIST and LSUB (RFC 3501 §6.3.8, §6.3.9).
fn list(
    root: &Maildir,
    tag: &str,
    reference: &WireMailbox<'_>,
    wildcard: &ListMailbox<'_>,
    lsub: bool,
) -> io::Result<Vec<u8>> {
    let verb = if lsub { "LSUB" } else { "LIST" };
    let reference = match reference {
        WireMailbox::Inbox => Some("INBOX".to_string()),
        WireMailbox::Other(o) => list_text(o.as_ref()),
    };
    let wildcard: &[u8] = match wildcard {
        ListMailbox::Token(t) => t.as_ref(),
        ListMailbox::String(s) => s.as_ref(),
    };
    let mut out = Vec::new();
    if wildcard.is_empty() && !lsub {
        // RFC 3501 §6.3.8: an empty name asks for the delimiter and the reference's root.
        out.extend(response::data(Data::List {
            items: vec![FlagNameAttribute::Noselect],
            delimiter: delimiter(),
            mailbox: WireMailbox::try_from("").unwrap_or(WireMailbox::Inbox),
        }));
        out.extend(response::ok(tag, "LIST completed."));
        return Ok(out);
    }
    let (Some(reference), Some(wildcard)) = (reference, list_text(wildcard)) else {
        // Not modified UTF-7: no name can match.
        out.extend(response::ok(tag, &format!("{verb} completed.")));
        return Ok(out);
    };
    let Ok(pattern) = Pattern::new(&format!("{reference}{wildcard}")) else {
        return Ok(response::bad(Some(tag), "Pattern too complex."));
    };
    let all = folders::list(root)?;
    if lsub {
        let subscribed = folders::subscriptions(root)?;
        let mut shown: Vec<(String, bool)> = Vec::new();
        for name in &subscribed {
            if pattern.matches(name) {
                if !shown.iter().any(|(n, _)| n == name) {
                    shown.push((name.clone(), false));
                }
            } else if pattern.has_level_wildcard() {
                // RFC 3501 §6.3.9: `%` shows an unsubscribed parent of a subscribed name,
                // flagged \Noselect.
                let mut parent = name.as_str();
                while let Some((p, _)) = parent.rsplit_once(DELIMITER) {
                    if pattern.matches(p) {
                        if !subscribed.iter().any(|s| s == p) && !shown.iter().any(|(n, _)| n == p)
                        {
                            shown.push((p.to_string(), true));
                        }
                        break;
                    }
                    parent = p;
                }
            }
        }
        for (name, noselect) in shown {
            let items = if noselect {
                vec![FlagNameAttribute::Noselect]
            } else {
                all.iter()
                    .find(|f| f.name == name)
                    .and_then(|f| f.special_use)
                    .and_then(|su| attribute(su.trim_start_matches('\\')))
                    .into_iter()
                    .collect()
            };
            out.extend(response::data(Data::Lsub {
                items,
                delimiter: delimiter(),
                mailbox: name_to_wire(&name),
            }));
        }
    } else {
        for f in all.iter().filter(|f| pattern.matches(&f.name)) {
            out.extend(response::data(Data::List {
                items: list_attributes(f),
                delimiter: delimiter(),
                mailbox: name_to_wire(&f.name),
            }));
        }
    }
    out.extend(response::ok(tag, &format!("{verb} completed.")));
    Ok(out)
}

/// CREATE (RFC 3501 §6.3.3): a trailing delimiter is dropped (the folder is made; Maildir++
/// folders hold messages and children alike), missing parents are created too (§6.3.3:
/// SHOULD), an existing folder is `NO [ALREADYEXISTS]` (RFC 5530).
fn create(root: &Maildir, tag: &str, mailbox: &WireMailbox<'_>) -> io::Result<Vec<u8>> {
    let raw: Vec<u8> = match mailbox {
        WireMailbox::Inbox => b"INBOX".to_vec(),
        WireMailbox::Other(o) => o.as_ref().to_vec(),
    };
    let raw = raw.strip_suffix(&[DELIMITER as u8]).unwrap_or(&raw);
    let Some(name) = wire_to_name(raw) else {
        return Ok(invalid(tag));
    };
    let exists = || no_code(tag, other_code("ALREADYEXISTS"), "Mailbox exists already.");
    if name == "INBOX" || root.has_folder(&name) {
        return Ok(exists());
    }
    let mut parent = name.as_str();
    let mut parents = Vec::new();
    while let Some((p, _)) = parent.rsplit_once(DELIMITER) {
        parents.push(p);
        parent = p;
    }
    for p in parents.into_iter().rev() {
        if !p.eq_ignore_ascii_case("INBOX") {
            folders::create(root, p)?;
        }
    }
    if !folders::create(root, &name)? {
        return Ok(exists());
    }
    Ok(response::ok(tag, "CREATE completed."))
}

/// DELETE (RFC 3501 §6.3.4): INBOX cannot be deleted; a folder with children loses its
/// messages and becomes `\Noselect` (its children are folders of their own in Maildir++, as
/// Dovecot keeps them); a `\Noselect` name with children is an error (§6.3.4).
fn delete(root: &Maildir, tag: &str, mailbox: &WireMailbox<'_>) -> io::Result<Vec<u8>> {
    let Some(name) = mailbox_name(mailbox) else {
        return Ok(invalid(tag));
    };
    if name == "INBOX" {
        return Ok(no_code(
            tag,
            other_code("CANNOT"),
            "INBOX cannot be deleted.",
        ));
    }
    if !root.has_folder(&name) {
        let noselect = folders::list(root)?
            .iter()
            .any(|f| f.name == name && !f.selectable);
        if noselect {
            return Ok(no_code(
                tag,
                other_code("CANNOT"),
                "Mailbox has children and is not selectable.",
            ));
        }
        return Ok(nonexistent(tag));
    }
    match folders::delete(root, &name) {
        Ok(()) => Ok(response::ok(tag, "DELETE completed.")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(nonexistent(tag)),
        Err(e) => Err(e),
    }
}

/// RENAME (RFC 3501 §6.3.5): children move along; renaming INBOX moves its messages into the
/// new folder and leaves INBOX empty; an existing target is `NO [ALREADYEXISTS]`.
fn rename(
    root: &Maildir,
    tag: &str,
    from: &WireMailbox<'_>,
    to: &WireMailbox<'_>,
) -> io::Result<Vec<u8>> {
    let (Some(from), Some(to)) = (mailbox_name(from), mailbox_name(to)) else {
        return Ok(invalid(tag));
    };
    let exists = || no_code(tag, other_code("ALREADYEXISTS"), "Mailbox exists already.");
    if to == "INBOX" || root.has_folder(&to) {
        return Ok(exists());
    }
    if from != "INBOX" && (to.starts_with(&format!("{from}{DELIMITER}")) || from == to) {
        return Ok(no_code(
            tag,
            other_code("CANNOT"),
            "Cannot rename a mailbox below itself.",
        ));
    }
    match folders::rename(root, &from, &to) {
        Ok(()) => Ok(response::ok(tag, "RENAME completed.")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(nonexistent(tag)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(exists()),
        Err(e) => Err(e),
    }
}

/// SUBSCRIBE / UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7), in Dovecot's `subscriptions` file. A
/// name that does not exist may be subscribed (§6.3.6 allows it; Dovecot does too).
fn subscribe(
    root: &Maildir,
    tag: &str,
    mailbox: &WireMailbox<'_>,
    on: bool,
) -> io::Result<Vec<u8>> {
    let Some(name) = mailbox_name(mailbox) else {
        return Ok(invalid(tag));
    };
    folders::set_subscribed(root, &name, on)?;
    let verb = if on { "SUBSCRIBE" } else { "UNSUBSCRIBE" };
    Ok(response::ok(tag, &format!("{verb} completed.")))
}

/// STATUS (RFC 3501 §6.3.10): MESSAGES, RECENT (the messages no session was given as \Recent
/// yet; none is taken here), UIDNEXT, UIDVALIDITY, UNSEEN, DELETED.
fn status_of(
    root: &Maildir,
    tag: &str,
    mailbox: &WireMailbox<'_>,
    names: &[StatusDataItemName],
) -> io::Result<Vec<u8>> {
    let Some(name) = mailbox_name(mailbox) else {
        return Ok(invalid(tag));
    };
    if !root.has_folder(&name) {
        return Ok(nonexistent(tag));
    }
    let view = View::open(&root.folder(&name)?)?;
    let msgs = view.messages();
    let count = |f: &dyn Fn(&Flags) -> bool| {
        u32::try_from(msgs.iter().filter(|m| f(m.flags())).count()).unwrap_or(u32::MAX)
    };
    let mut items = Vec::new();
    for n in names {
        let item = match n {
            StatusDataItemName::Messages => {
                StatusDataItem::Messages(u32::try_from(msgs.len()).unwrap_or(u32::MAX))
            }
            StatusDataItemName::Recent => {
                StatusDataItem::Recent(u32::try_from(view.unclaimed_recent()?).unwrap_or(u32::MAX))
            }
            StatusDataItemName::UidNext => StatusDataItem::UidNext(nonzero(view.uid_next())),
            StatusDataItemName::UidValidity => {
                StatusDataItem::UidValidity(nonzero(view.uid_validity()))
            }
            StatusDataItemName::Unseen => StatusDataItem::Unseen(count(&|f| !f.contains('S'))),
            StatusDataItemName::Deleted => StatusDataItem::Deleted(count(&|f| f.contains('T'))),
            StatusDataItemName::DeletedStorage => StatusDataItem::DeletedStorage(
                msgs.iter()
                    .filter(|m| m.flags().contains('T'))
                    .map(|m| m.size())
                    .sum(),
            ),
        };
        items.push(item);
    }
    let mut out = response::data(Data::Status {
        mailbox: name_to_wire(&name),
        items: items.into(),
    });
    out.extend(response::ok(tag, "STATUS completed."));
    Ok(out)
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// An APPEND in progress: its message streamed into the target folder's `tmp/`.
#[derive(Debug)]
pub struct Append {
    folder: Maildir,
    staged: Staging,
    flags: Vec<Flag<'static>>,
    date: Option<SystemTime>,
    /// A write failed: the message is not kept, the tagged reply says NO.
    failed: Option<io::Error>,
}

impl Append {
    /// Opens the file for an APPEND to `mailbox`, before its literal is read. Err is the
    /// tagged reply refusing it: `NO [TRYCREATE]` for a folder that does not exist (RFC 3501
    /// §6.3.11), `NO [CANNOT]` for an invalid name.
    pub fn begin(
        root: &Maildir,
        tag: &str,
        mailbox: &WireMailbox<'_>,
        flags: &[Flag<'static>],
        date: Option<&DateTime>,
    ) -> Result<Append, Vec<u8>> {
        let Some(name) = mailbox_name(mailbox) else {
            return Err(invalid(tag));
        };
        if !root.has_folder(&name) {
            return Err(no_code(tag, Code::TryCreate, "Mailbox does not exist."));
        }
        let opened = root.folder(&name).and_then(|f| {
            let staged = f.stage()?;
            Ok((f, staged))
        });
        let (folder, staged) = opened.map_err(|e| {
            log::line(format_args!("APPEND to {}: {e}", root.path().display()));
            no_code(
                tag,
                other_code("SERVERBUG"),
                "Cannot store the message now.",
            )
        })?;
        let date = date.map(|d| {
            let t = d.as_ref();
            crate::clock::from_unix(t.timestamp(), 0)
        });
        Ok(Append {
            folder,
            staged,
            flags: flags.to_vec(),
            date,
            failed: None,
        })
    }

    /// Writes octets of the message (after a failure, they are dropped).
    pub fn write(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            if let Err(e) = self.staged.write_all(data) {
                self.failed = Some(e);
            }
        }
    }

    /// Commits the message durably and answers `tag`: `OK [APPENDUID uidvalidity uid]`
    /// (RFC 4315 §3) once the file and its UID are on disk, or NO.
    pub fn finish(self, tag: &str) -> Vec<u8> {
        let root = self.folder.path().display().to_string();
        match self.commit() {
            Ok((validity, uid)) => {
                let code = match (NonZeroU32::new(validity), NonZeroU32::new(uid)) {
                    (Some(uid_validity), Some(uid)) => Some(Code::AppendUid { uid_validity, uid }),
                    _ => None,
                };
                status(Some(tag), StatusKind::Ok, code, "APPEND completed.")
            }
            Err(e) => {
                log::line(format_args!("APPEND to {root}: {e}"));
                no_code(
                    tag,
                    other_code("SERVERBUG"),
                    "Cannot store the message now.",
                )
            }
        }
    }

    fn commit(self) -> io::Result<(u32, u32)> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut view = View::open(&self.folder)?;
        let mut letters = String::new();
        for f in &self.flags {
            match f {
                Flag::Seen => letters.push(Flags::SEEN),
                Flag::Answered => letters.push(Flags::REPLIED),
                Flag::Flagged => letters.push(Flags::FLAGGED),
                Flag::Deleted => letters.push(Flags::TRASHED),
                Flag::Draft => letters.push(Flags::DRAFT),
                Flag::Keyword(k) => {
                    // RFC 3501 §2.3.2: a keyword the folder cannot take any more is dropped.
                    if let Some(l) = view.keyword_letter(k.as_ref())? {
                        letters.push(l);
                    }
                }
                Flag::Extension(_) => {}
            }
        }
        let delivered = self.staged.commit(&Flags::parse(&letters), self.date)?;
        // The sync gives the message its UID and writes the uid list durably.
        view.sync()?;
        let uid = view
            .messages()
            .iter()
            .find(|m| m.base() == delivered.unique)
            .map(|m| m.uid)
            .ok_or_else(|| io::Error::other("appended message vanished before it got a UID"))?;
        Ok((view.uid_validity(), uid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::decode::Decoder as _;
    use imap_codec::imap_types::IntoStatic as _;
    use imap_codec::CommandCodec;

    fn root() -> (tempfile::TempDir, Maildir) {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::create(d.path().join("Maildir")).unwrap();
        (d, md)
    }

    /// Runs one command line through the codec and [`answer`].
    fn run(md: &Maildir, line: &str) -> String {
        let bytes = format!("{line}\r\n");
        let (_, cmd) = CommandCodec::default()
            .decode(bytes.as_bytes())
            .unwrap_or_else(|e| panic!("{line}: {e:?}"));
        let cmd = cmd.into_static();
        let out = answer(md, cmd.tag.as_ref(), &cmd.body).expect("a mailbox-level command");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn patterns_match_as_rfc3501_says() {
        let m = |p: &str, n: &str| matches(p, n).unwrap();
        assert!(m("*", "A.B.C") && m("%", "A") && !m("%", "A.B"));
        assert!(m("A.%", "A.B") && !m("A.%", "A.B.C") && m("A.*", "A.B.C"));
        assert!(m("%.%", "A.B") && m("*C", "A.B.C") && !m("%C", "A.B.C"));
        assert!(m("inbox", "INBOX") && m("Inbox*", "INBOX") && !m("inboxes", "INBOX"));
        assert!(m("Ä*", "Ärger") && !m("", "A") && m("", ""));
        assert!(m("a%b", "axxb") && !m("a%b", "ax.xb") && m("a*b", "ax.xb"));
        assert!(m("%%*%", "A.B") && !m("%%%%", "A.B"));
    }

    #[test]
    fn pattern_matching_is_not_exponential_and_complexity_is_limited() {
        // `*%*%...` against long names without a match at the end: backtracking matchers take
        // exponential time here; the DP takes pattern × name steps.
        let pattern: String = "*%".repeat(16) + "x";
        let name: String = "a.".repeat(79) + "b";
        let p = Pattern::new(&pattern).unwrap();
        for _ in 0..1000 {
            assert!(!p.matches(&name));
        }
        let pattern: String = "%a".repeat(MAX_WILDCARDS) + "z";
        let name: String = "a".repeat(MAX_FOLDER_NAME);
        assert!(!Pattern::new(&pattern).unwrap().matches(&name));
        assert_eq!(
            Pattern::new(&"%a".repeat(MAX_WILDCARDS + 1)),
            Err(PatternError::TooComplex)
        );
        assert_eq!(
            Pattern::new(&"a".repeat(MAX_PATTERN + 1)),
            Err(PatternError::TooComplex)
        );
        // Runs collapse, so long runs of wildcards alone are fine.
        assert!(Pattern::new(&"*%".repeat(200)).unwrap().matches("x.y"));
    }

    #[test]
    fn names_are_modified_utf7_without_empty_levels_or_slashes() {
        assert_eq!(wire_to_name(b"&AMQ-rger").as_deref(), Some("Ärger"));
        assert_eq!(wire_to_name(b"inbox").as_deref(), Some("INBOX"));
        assert_eq!(wire_to_name(b"A.B").as_deref(), Some("A.B"));
        for bad in [
            &b".A"[..],
            b"A..B",
            b"A.",
            b"A/B",
            b"../x",
            b"&AMQ",
            "Ärger".as_bytes(),
            b"",
        ] {
            assert_eq!(
                wire_to_name(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(wire_to_name(&[b'a'; MAX_FOLDER_NAME + 1]), None);
        assert_eq!(
            name_to_wire("Ärger"),
            WireMailbox::try_from("&AMQ-rger").unwrap()
        );
    }

    #[test]
    fn list_lsub_create_delete_rename_subscribe_status() {
        let (d, md) = root();
        assert_eq!(
            run(&md, "a LIST \"\" \"\""),
            "* LIST (\\Noselect) \".\" \"\"\r\na OK LIST completed.\r\n"
        );
        folders::create_special_use(&md).unwrap();
        assert!(run(&md, "a CREATE Lists.Rust.").starts_with("a OK"));
        assert!(d.path().join("Maildir/.Lists/cur").is_dir(), "parent made");
        assert!(run(&md, "a CREATE &AMQ-rger").starts_with("a OK"));
        assert!(d.path().join("Maildir/.&AMQ-rger/cur").is_dir());
        assert_eq!(
            run(&md, "a CREATE Lists"),
            "a NO [ALREADYEXISTS] Mailbox exists already.\r\n"
        );
        assert!(run(&md, "a CREATE inbox").starts_with("a NO [ALREADYEXISTS]"));
        for bad in ["a..b", ".x", "\"a/b\""] {
            assert!(
                run(&md, &format!("a CREATE {bad}")).starts_with("a NO [CANNOT]"),
                "{bad}"
            );
        }
        let all = run(&md, "a LIST \"\" *");
        assert_eq!(
            all,
            "* LIST (\\HasNoChildren) \".\" INBOX\r\n\
             * LIST (\\HasNoChildren \\Archive) \".\" Archive\r\n\
             * LIST (\\HasNoChildren \\Drafts) \".\" Drafts\r\n\
             * LIST (\\HasNoChildren \\Junk) \".\" Junk\r\n\
             * LIST (\\HasChildren) \".\" Lists\r\n\
             * LIST (\\HasNoChildren) \".\" Lists.Rust\r\n\
             * LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n\
             * LIST (\\HasNoChildren \\Trash) \".\" Trash\r\n\
             * LIST (\\HasNoChildren) \".\" &AMQ-rger\r\n\
             a OK LIST completed.\r\n"
        );
        let top = run(&md, "a LIST Lists. %");
        assert_eq!(
            top,
            "* LIST (\\HasNoChildren) \".\" Lists.Rust\r\na OK LIST completed.\r\n"
        );
        assert!(run(&md, "a LIST \"\" %").contains("\" Lists\r\n"));
        assert!(!run(&md, "a LIST \"\" %").contains("Lists.Rust"));
        assert!(run(&md, "a LIST \"\" &AMQ-*").contains("&AMQ-rger"));
        assert!(run(&md, &format!("a LIST \"\" {}", "%a".repeat(40) + "x")).starts_with("a BAD"));
        // DELETE with children: \Noselect remains; then it cannot be deleted again.
        assert!(run(&md, "a DELETE Lists").starts_with("a OK"));
        assert!(run(&md, "a LIST \"\" Lists").contains("(\\Noselect \\HasChildren)"));
        assert!(run(&md, "a DELETE Lists").starts_with("a NO [CANNOT]"));
        assert!(run(&md, "a DELETE INBOX").starts_with("a NO [CANNOT]"));
        assert!(run(&md, "a DELETE Nope").starts_with("a NO [NONEXISTENT]"));
        // LSUB: subscribed names, and an unsubscribed parent as \Noselect for `%`.
        assert!(run(&md, "a SUBSCRIBE Lists.Rust").starts_with("a OK"));
        assert!(run(&md, "a UNSUBSCRIBE Junk").starts_with("a OK"));
        let lsub = run(&md, "a LSUB \"\" %");
        assert!(
            lsub.contains("* LSUB (\\Noselect) \".\" Lists\r\n"),
            "{lsub}"
        );
        assert!(lsub.contains("* LSUB (\\Sent) \".\" Sent\r\n"), "{lsub}");
        assert!(!lsub.contains("Junk") && !lsub.contains("Rust"), "{lsub}");
        let lsub = run(&md, "a LSUB \"\" *");
        assert!(lsub.contains("* LSUB () \".\" Lists.Rust\r\n"), "{lsub}");
        assert!(!lsub.contains("\" Lists\r\n"), "{lsub}");
        // RENAME with children, and INBOX.
        assert!(run(&md, "a RENAME Lists Listen").starts_with("a OK"));
        assert!(md.has_folder("Listen.Rust") && !md.has_folder("Lists.Rust"));
        assert!(run(&md, "a RENAME Sent Drafts").starts_with("a NO [ALREADYEXISTS]"));
        assert!(run(&md, "a RENAME Nope Other").starts_with("a NO [NONEXISTENT]"));
        assert!(run(&md, "a RENAME Trash Trash.Sub").starts_with("a NO [CANNOT]"));
        md.deliver(b"Subject: 1\n\n1\n").unwrap();
        md.deliver(b"Subject: 2\n\n2\n").unwrap();
        // STATUS takes no \Recent: a later SELECT-style open still gets both.
        let st = run(&md, "a STATUS INBOX (MESSAGES RECENT UIDNEXT UNSEEN)");
        assert!(
            st.starts_with("* STATUS INBOX (MESSAGES 2 RECENT 2 UIDNEXT 3 UNSEEN 2)\r\n"),
            "{st}"
        );
        let st2 = run(&md, "a STATUS INBOX (RECENT UIDVALIDITY)");
        assert!(st2.contains("RECENT 2 UIDVALIDITY "), "{st2}");
        let mb = crate::maildir::mailbox::Mailbox::open(
            &md,
            "INBOX",
            crate::maildir::mailbox::Access::ReadWrite,
        )
        .unwrap();
        assert_eq!(mb.recent_count(), 2);
        assert!(run(&md, "a STATUS INBOX (RECENT)").contains("(RECENT 0)"));
        assert!(run(&md, "a STATUS Nope (MESSAGES)").starts_with("a NO [NONEXISTENT]"));
        assert!(run(&md, "a RENAME INBOX Old").starts_with("a OK"));
        assert!(run(&md, "a STATUS INBOX (MESSAGES)").contains("(MESSAGES 0)"));
        assert!(run(&md, "a STATUS Old (MESSAGES)").contains("(MESSAGES 2)"));
        // Not ours.
        let (_, cmd) = CommandCodec::default().decode(b"a NOOP\r\n").unwrap();
        assert!(answer(&md, "a", &cmd.body).is_none());
    }

    #[test]
    fn append_streams_into_tmp_and_answers_appenduid() {
        let (d, md) = root();
        let inbox = WireMailbox::Inbox;
        let flags = vec![
            Flag::Seen,
            Flag::Keyword(Atom::try_from("$Label1").unwrap()),
        ];
        let date = DateTime::try_from(
            chrono::DateTime::parse_from_rfc3339("2001-09-09T01:46:40+00:00").unwrap(),
        )
        .unwrap();
        let mut a = Append::begin(&md, "a", &inbox, &flags, Some(&date)).unwrap();
        a.write(b"Subject: x\r\n\r\n");
        assert_eq!(
            std::fs::read_dir(d.path().join("Maildir/tmp"))
                .unwrap()
                .count(),
            1
        );
        a.write(b"body\r\n");
        let out = String::from_utf8(a.finish("a")).unwrap();
        let view = View::open(&md).unwrap();
        assert_eq!(
            out,
            format!(
                "a OK [APPENDUID {} 1] APPEND completed.\r\n",
                view.uid_validity()
            )
        );
        let m = view.get(1).unwrap();
        assert_eq!(m.flags().as_str(), "Sa");
        assert_eq!(m.entry.mtime, crate::clock::from_unix(1_000_000_000, 0));
        let missing = WireMailbox::try_from("Nope").unwrap();
        let refused = Append::begin(&md, "b", &missing, &[], None).unwrap_err();
        assert_eq!(refused, b"b NO [TRYCREATE] Mailbox does not exist.\r\n");
        // An aborted APPEND leaves nothing.
        drop(Append::begin(&md, "c", &inbox, &[], None).unwrap());
        assert_eq!(
            std::fs::read_dir(d.path().join("Maildir/tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn open_store_creates_special_use_folders_on_first_login_only() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("new-user");
        let md = open_store(&path, Links::Refuse).unwrap();
        assert!(md.has_folder("Sent") && md.has_folder("Archive"));
        folders::delete(&md, "Junk").unwrap();
        let md = open_store(&path, Links::Refuse).unwrap();
        assert!(!md.has_folder("Junk"), "a deleted folder is not made again");
    }
}
