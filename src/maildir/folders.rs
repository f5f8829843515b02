//! A user's Maildir++ folder tree as Dovecot keeps it (issue 13): list, create, delete,
//! rename, subscriptions, and the SPECIAL-USE folders (RFC 6154) a new user gets.
//!
//! Names here are UTF-8 with `.` between levels (Dovecot's default Maildir++ separator; `/`
//! is accepted too); the IMAP layer converts them from and to modified UTF-7 on the wire. On
//! disk INBOX is the Maildir root and folder `A.B` is the directory `.A.B/`, each level in
//! modified UTF-7 ([`super::folder_dir_name`], the one mapping mdeliver's Sieve `fileinto`
//! uses too): what Dovecot 2.3 writes with its default configuration (checked against the
//! peers' Dovecot: `CREATE &AMQ-rger` makes `.&AMQ-rger/`).
//!
//! `subscriptions` as Dovecot writes it: `V\t2\n\n`, then one name a line, levels separated by
//! a TAB, each level in modified UTF-7. Dovecot keeps a subscription when the folder is deleted
//! or renamed (RFC 3501 §6.3.6 allows names that do not exist), and so do we. The file is
//! written through the dotlock `subscriptions.lock`, as Dovecot does.
//!
//! Delete renames the folder's directory to a `..mailkit-deleted.*` name (no folder, since
//! Maildir++ folders start with one dot) and fsyncs the root before removing its contents, so
//! a crash never leaves half a folder listed. Rename renames `.A` and every `.A.*` (RFC 3501
//! §6.3.5: inferiors move too); renaming INBOX moves its messages into the new folder and
//! leaves INBOX empty, as §6.3.5 says (Dovecot refuses it for Maildir).

use std::io;

use super::dotlock::Dotlock;
use super::{folder_dir_name, mutf7_decode, mutf7_encode, Maildir, FILE_MODE};
use crate::fsroot::Dir;

/// The subscriptions file's name in the Maildir root.
pub const SUBSCRIPTIONS_FILE: &str = "subscriptions";
/// Its header (version 2 of Dovecot's format).
const SUBSCRIPTIONS_HEADER: &str = "V\t2\n\n";
/// Prefix of a deleted folder's directory until its contents are gone.
const DELETED_PREFIX: &str = "..mailkit-deleted.";

/// The SPECIAL-USE attributes (RFC 6154 §2) of the folders new users get.
pub const SPECIAL_USE: &[(&str, &str)] = &[
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
];

/// One folder as [`list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// The name (UTF-8, `.` between levels; `INBOX` for the root).
    pub name: String,
    /// False for a level that exists only as the parent of others (LIST `\Noselect`).
    pub selectable: bool,
    /// Whether other folders are below it (`\HasChildren`, RFC 3348).
    pub has_children: bool,
    /// Its RFC 6154 attribute, for the SPECIAL-USE names.
    pub special_use: Option<&'static str>,
}

/// The name of folder directory `dir` (`.A.B`), None when it is not one.
fn name_of_dir(dir: &str) -> Option<String> {
    let rest = dir.strip_prefix('.')?;
    if rest.is_empty() || rest.starts_with('.') {
        return None;
    }
    let levels: Option<Vec<String>> = rest.split('.').map(mutf7_decode).collect();
    let name = levels?.join(".");
    // Only names that map back to this very directory (one spelling per folder).
    (folder_dir_name(&name).ok()?.as_deref() == Some(dir)).then_some(name)
}

/// The canonical name of `name` (levels joined by `.`), None for INBOX.
fn canonical(name: &str) -> io::Result<Option<String>> {
    Ok(folder_dir_name(name)?.and_then(|d| name_of_dir(&d)))
}

/// The user's folders: INBOX first, then the others sorted by name, with the parents of
/// nested folders that do not exist themselves as not selectable.
pub fn list(root: &Maildir) -> io::Result<Vec<Folder>> {
    let mut names: Vec<String> = Vec::new();
    for (entry, _) in root.root_dir().list()? {
        let Some(dir) = entry.to_str() else { continue };
        let Some(name) = name_of_dir(dir) else {
            continue;
        };
        // A Maildir++ folder is a directory with cur/ (Dovecot lists it then).
        if root
            .root_dir()
            .stat(format!("{dir}/cur"))
            .is_ok_and(|m| m.is_dir())
        {
            names.push(name);
        }
    }
    names.sort();
    let mut all: Vec<(String, bool)> = names.iter().map(|n| (n.clone(), true)).collect();
    for n in &names {
        let mut parent = n.as_str();
        while let Some((p, _)) = parent.rsplit_once('.') {
            if !all.iter().any(|(a, _)| a == p) {
                all.push((p.to_string(), false));
            }
            parent = p;
        }
    }
    all.sort();
    let mut out = vec![Folder {
        name: "INBOX".into(),
        selectable: true,
        has_children: false,
        special_use: None,
    }];
    for (name, selectable) in &all {
        let prefix = format!("{name}.");
        out.push(Folder {
            name: name.clone(),
            selectable: *selectable,
            has_children: all.iter().any(|(a, _)| a.starts_with(&prefix)),
            special_use: SPECIAL_USE.iter().find(|(n, _)| n == name).map(|(_, a)| *a),
        });
    }
    Ok(out)
}

/// CREATE (RFC 3501 §6.3.3): makes folder `name` (as mdeliver's `fileinto` would). Ok(false)
/// when it exists already (INBOX always does).
pub fn create(root: &Maildir, name: &str) -> io::Result<bool> {
    if folder_dir_name(name)?.is_none() || root.has_folder(name) {
        return Ok(false);
    }
    root.folder(name)?;
    Ok(true)
}

/// Removes directory `name` in `dir` and everything below it, never following a symlink (one
/// is removed itself).
fn remove_tree(dir: &Dir, name: &str) -> io::Result<()> {
    let sub = dir.open_dir(name)?;
    for (entry, kind) in sub.list()? {
        let Some(e) = entry.to_str() else {
            continue;
        };
        let is_dir = if kind == rustix::fs::FileType::Unknown {
            sub.stat(e)?.is_dir()
        } else {
            kind == rustix::fs::FileType::Directory
        };
        if is_dir {
            remove_tree(&sub, e)?;
        } else {
            sub.unlink(e)?;
        }
    }
    dir.remove_dir(name)
}

/// DELETE (RFC 3501 §6.3.4): removes folder `name` with its messages; folders below it stay
/// (they are directories of their own in Maildir++). INBOX cannot be deleted; NotFound when
/// the folder does not exist.
pub fn delete(root: &Maildir, name: &str) -> io::Result<()> {
    let Some(dir) = folder_dir_name(name)? else {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "INBOX cannot be deleted",
        ));
    };
    if !root.has_folder(name) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no folder {name:?}"),
        ));
    }
    let rd = root.root_dir();
    let trash = format!("{DELETED_PREFIX}{:016x}", rand::random::<u64>());
    rd.rename_noreplace(&dir, rd, &trash)?;
    rd.sync()?;
    remove_tree(rd, &trash)?;
    rd.sync()
}

/// RENAME (RFC 3501 §6.3.5): folder `from` and the folders below it become `to` and below.
/// Renaming INBOX moves its messages into a new folder `to`. AlreadyExists when `to` (or a
/// folder below it that would be replaced) exists; NotFound when `from` does not.
pub fn rename(root: &Maildir, from: &str, to: &str) -> io::Result<()> {
    let Some(to_dir) = folder_dir_name(to)? else {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "INBOX exists already",
        ));
    };
    if root.has_folder(to) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("folder {to:?} exists"),
        ));
    }
    let rd = root.root_dir();
    let Some(from_dir) = folder_dir_name(from)? else {
        return move_inbox(root, to);
    };
    let prefix = format!("{from_dir}.");
    let mut moves = Vec::new();
    if root.has_folder(from) {
        moves.push((from_dir.clone(), to_dir.clone()));
    }
    // The inferiors; also of a level that is no folder itself (a \Noselect parent).
    for (entry, _) in rd.list()? {
        if let Some(rest) = entry.to_str().and_then(|e| e.strip_prefix(&prefix)) {
            moves.push((format!("{prefix}{rest}"), format!("{to_dir}.{rest}")));
        }
    }
    if moves.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no folder {from:?}"),
        ));
    }
    for (a, b) in &moves {
        rd.rename_noreplace(a, rd, b)?;
    }
    rd.sync()
}

/// RENAME INBOX: a new folder `to` gets every message of INBOX (renamed, so each message is
/// in exactly one place at any time); INBOX stays, empty.
fn move_inbox(root: &Maildir, to: &str) -> io::Result<()> {
    let dst = root.folder(to)?;
    for e in root.list_all()? {
        match root
            .sub_dir(e.sub)
            .rename_noreplace(&e.name, dst.sub_dir(e.sub), &e.name)
        {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
    }
    dst.sync()?;
    root.sync()
}

/// Parses a `subscriptions` file (version 2, or Dovecot's older version without a header:
/// one name a line) into names.
pub fn parse_subscriptions(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let body = text.strip_prefix(SUBSCRIPTIONS_HEADER).unwrap_or(&text);
    body.lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let levels: Option<Vec<String>> = l.split(['\t', '.']).map(mutf7_decode).collect();
            Some(levels?.join("."))
        })
        .collect()
}

/// The `subscriptions` file's bytes for `names`, as Dovecot writes it.
pub fn serialise_subscriptions(names: &[String]) -> Vec<u8> {
    let mut out = String::from(SUBSCRIPTIONS_HEADER);
    for n in names {
        let levels: Vec<String> = n.split('.').map(mutf7_encode).collect();
        out.push_str(&levels.join("\t"));
        out.push('\n');
    }
    out.into_bytes()
}

/// The subscribed names (LSUB, LIST (SUBSCRIBED)), as in the file.
pub fn subscriptions(root: &Maildir) -> io::Result<Vec<String>> {
    match root.root_dir().open_read(SUBSCRIPTIONS_FILE) {
        Ok(mut f) => {
            let mut data = Vec::new();
            io::Read::read_to_end(&mut f, &mut data)?;
            Ok(parse_subscriptions(&data))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// SUBSCRIBE / UNSUBSCRIBE (RFC 3501 §6.3.6–7) of `name`: durable on return.
pub fn set_subscribed(root: &Maildir, name: &str, on: bool) -> io::Result<()> {
    let name = canonical(name)?.unwrap_or_else(|| "INBOX".into());
    let rd = root.root_dir();
    let lock = Dotlock::take(rd, SUBSCRIPTIONS_FILE, FILE_MODE)?;
    let mut names = subscriptions(root)?;
    let had = names.contains(&name);
    if had == on {
        return Ok(());
    }
    if on {
        names.push(name);
    } else {
        names.retain(|n| *n != name);
    }
    lock.commit(SUBSCRIPTIONS_FILE, &serialise_subscriptions(&names))
}

/// A new user's folders: the SPECIAL-USE ones ([`SPECIAL_USE`]), created and subscribed when
/// missing (a folder the user deleted later is not made again unless this is called again).
pub fn create_special_use(root: &Maildir) -> io::Result<()> {
    for (name, _) in SPECIAL_USE {
        if create(root, name)? {
            set_subscribed(root, name, true)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_operations_subscriptions_and_special_use_as_dovecot_keeps_them() {
        let d = tempfile::tempdir().unwrap();
        let md = Maildir::create(d.path().join("Maildir")).unwrap();
        create_special_use(&md).unwrap();
        assert!(create(&md, "Lists.Rust").unwrap());
        assert!(create(&md, "Ärger").unwrap());
        assert!(!create(&md, "Lists/Rust").unwrap());
        assert!(!create(&md, "inbox").unwrap());
        assert!(d.path().join("Maildir/.&AMQ-rger/maildirfolder").exists());
        let names: Vec<(String, bool, bool)> = list(&md)
            .unwrap()
            .into_iter()
            .map(|f| (f.name, f.selectable, f.has_children))
            .collect();
        let want = [
            ("INBOX", true, false),
            ("Archive", true, false),
            ("Drafts", true, false),
            ("Junk", true, false),
            ("Lists", false, true),
            ("Lists.Rust", true, false),
            ("Sent", true, false),
            ("Trash", true, false),
            ("Ärger", true, false),
        ];
        let want: Vec<(String, bool, bool)> = want
            .iter()
            .map(|(n, s, c)| (n.to_string(), *s, *c))
            .collect();
        assert_eq!(names, want);
        assert_eq!(
            list(&md).unwrap()[3].special_use,
            Some("\\Junk"),
            "SPECIAL-USE attribute"
        );
        set_subscribed(&md, "Ärger", true).unwrap();
        set_subscribed(&md, "Lists/Rust", true).unwrap();
        set_subscribed(&md, "Junk", false).unwrap();
        let file = std::fs::read_to_string(d.path().join("Maildir/subscriptions")).unwrap();
        assert_eq!(
            file,
            "V\t2\n\nSent\nDrafts\nTrash\nArchive\n&AMQ-rger\nLists\tRust\n"
        );
        // Rename moves inferiors; the subscription stays with the old name (as Dovecot).
        let m = md.folder("Lists.Rust").unwrap();
        m.deliver(b"x\n").unwrap();
        rename(&md, "Lists", "Listen").unwrap();
        assert!(!md.has_folder("Lists.Rust") && md.has_folder("Listen.Rust"));
        assert_eq!(
            md.folder("Listen.Rust").unwrap().list_all().unwrap().len(),
            1
        );
        assert!(rename(&md, "Sent", "Drafts").is_err());
        // INBOX rename: messages move, INBOX stays and is empty.
        md.deliver(b"in\n").unwrap();
        rename(&md, "INBOX", "Old").unwrap();
        assert!(md.list_all().unwrap().is_empty());
        assert_eq!(md.folder("Old").unwrap().list_all().unwrap().len(), 1);
        delete(&md, "Listen.Rust").unwrap();
        assert!(!md.has_folder("Listen.Rust"));
        assert!(delete(&md, "INBOX").is_err() && delete(&md, "Nope").is_err());
        let left: Vec<String> = std::fs::read_dir(d.path().join("Maildir"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".."))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(mutf7_decode("&AMQ-rger&-x").as_deref(), Some("Ärger&x"));
        assert_eq!(mutf7_decode("&AMQ"), None);
        // Base64 bits that make no UTF-16 unit, or spare bits set (found by fuzz uidlist).
        assert_eq!(mutf7_decode("&Z-"), None);
        assert_eq!(mutf7_decode("&AMR-"), None);
    }
}
