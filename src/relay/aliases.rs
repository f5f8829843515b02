//! The aliases file: `name: target, target2, |command, /path/to/Maildir/`.
//!
//! ```text
//! # comment
//! postmaster: root
//! root:       alice
//! team:       alice, bob@example.org, "|/usr/local/bin/archive --all", /srv/mail/team/
//! sales@example.org: carol          # only for that domain
//! bob:        bob, |/usr/bin/logger  # a name naming itself is its own mailbox
//!             , /srv/backup/bob/     # a line starting with white space continues the last one
//! ```
//! Keys are local parts (valid in every local domain) or whole addresses (one domain), compared
//! without case. Targets: a local name or an address (expanded again), `|command` (run by
//! `/bin/sh -c`), or an absolute path ending in `/` (a Maildir). Quote a target that contains
//! a comma with `"..."`. The format follows sendmail's aliases(5) where it overlaps.
//!
//! A running mrelayd follows changes ([`AliasesFile`]): no `newaliases` step, no restart. Edit a
//! copy and `mv` it into place, so the daemon never reads a half-written file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::config::Reloading;
use crate::exit;

/// Largest aliases file read (bytes).
pub const MAX_ALIASES_SIZE: u64 = 16 * 1024 * 1024;
/// How often, at most, a running daemon looks at the aliases file for changes (one `stat`).
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// One target of an alias.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AliasTarget {
    /// A local name or an address, expanded again.
    Address(String),
    /// `|command`.
    Pipe(String),
    /// `/path/to/Maildir/`.
    Maildir(PathBuf),
}

/// A parsed aliases file.
#[derive(Debug, Clone, Default)]
pub struct Aliases {
    map: HashMap<String, (Vec<AliasTarget>, usize)>,
}

impl Aliases {
    /// Reads and parses `path`; errors name the file and line (exit 78).
    pub fn load(path: &Path) -> Result<Aliases> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("reading aliases {}", path.display()))?;
        if meta.len() > MAX_ALIASES_SIZE {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "aliases {}: larger than {MAX_ALIASES_SIZE} bytes",
                    path.display()
                ),
            ));
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading aliases {}", path.display()))?;
        Aliases::parse(&text)
            .map_err(|e| exit::fail(exit::CONFIG, format!("aliases {}:{e}", path.display())))
    }

    /// Parses the text of an aliases file. The error is `LINE: why`.
    pub fn parse(text: &str) -> std::result::Result<Aliases, String> {
        // Join continuation lines first, remembering where each entry started.
        let mut entries: Vec<(usize, String)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = strip_comment(raw);
            if line.trim().is_empty() {
                continue;
            }
            if raw.starts_with([' ', '\t']) {
                match entries.last_mut() {
                    Some((_, e)) => {
                        e.push(' ');
                        e.push_str(line.trim());
                    }
                    None => return Err(format!("{}: continuation line without an entry", i + 1)),
                }
            } else {
                entries.push((i + 1, line.trim().to_string()));
            }
        }
        let mut map = HashMap::new();
        for (lineno, entry) in entries {
            let (name, rest) = entry
                .split_once(':')
                .ok_or_else(|| format!("{lineno}: expected `name: target, ...`"))?;
            let name = name.trim().to_lowercase();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(format!("{lineno}: bad alias name {name:?}"));
            }
            let mut targets = Vec::new();
            for t in split_targets(rest).map_err(|e| format!("{lineno}: {e}"))? {
                let target = if let Some(cmd) = t.strip_prefix('|') {
                    if cmd.trim().is_empty() {
                        return Err(format!("{lineno}: empty command"));
                    }
                    AliasTarget::Pipe(cmd.trim().to_string())
                } else if t.starts_with('/') {
                    if !t.ends_with('/') {
                        return Err(format!(
                            "{lineno}: {t}: only Maildirs are supported (end the path with /)"
                        ));
                    }
                    AliasTarget::Maildir(PathBuf::from(t))
                } else if t.contains(char::is_whitespace) || t.starts_with(':') {
                    return Err(format!("{lineno}: bad target {t:?}"));
                } else {
                    AliasTarget::Address(t.to_string())
                };
                targets.push(target);
            }
            if targets.is_empty() {
                return Err(format!("{lineno}: alias {name} has no targets"));
            }
            if map.contains_key(&name) {
                return Err(format!("{lineno}: alias {name} defined twice"));
            }
            map.insert(name, (targets, lineno));
        }
        Ok(Aliases { map })
    }

    /// The targets of `key` (a local part or a whole address, any case) and the line it is on.
    pub fn get(&self, key: &str) -> Option<(&[AliasTarget], usize)> {
        self.map
            .get(&key.to_lowercase())
            .map(|(t, l)| (t.as_slice(), *l))
    }

    /// Number of aliases.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The aliases file of a running daemon: re-read when it changes, at most once per
/// [`RELOAD_CHECK_INTERVAL`]; a broken edit keeps the previous table (see [`Reloading`]).
pub type AliasesFile = Reloading<Aliases>;

/// Opens the aliases file for a running daemon. At start a file that cannot be read or parsed
/// is an error (exit 78 for a syntax error): the daemon does not start without its aliases.
pub fn open(path: &Path) -> Result<AliasesFile> {
    Reloading::open(path, "aliases", Aliases::load, RELOAD_CHECK_INTERVAL)
}

/// The part of `line` before a `#` that is not inside `"..."`.
pub(crate) fn strip_comment(line: &str) -> &str {
    let mut in_quote = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quote = !in_quote,
            '#' if !in_quote => return &line[..i],
            _ => {}
        }
    }
    line
}

fn split_targets(s: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    for c in s.chars() {
        match c {
            '"' => in_quote = !in_quote,
            ',' if !in_quote => {
                let t = cur.trim();
                if !t.is_empty() {
                    out.push(t.to_string());
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    if in_quote {
        return Err("unterminated quote".into());
    }
    let t = cur.trim();
    if !t.is_empty() {
        out.push(t.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let a = Aliases::parse(
            "# comment\npostmaster: root\nteam: alice, bob@example.org, \"|/bin/archive --all, x\", /srv/team/\n\
             Sales@Example.org: carol # trailing\nbob: bob, |/usr/bin/logger\n   , /srv/backup/bob/\n",
        )
        .unwrap();
        assert_eq!(a.len(), 4);
        let (t, line) = a.get("TEAM").unwrap();
        assert_eq!(line, 3);
        assert_eq!(
            t,
            [
                AliasTarget::Address("alice".into()),
                AliasTarget::Address("bob@example.org".into()),
                AliasTarget::Pipe("/bin/archive --all, x".into()),
                AliasTarget::Maildir("/srv/team/".into()),
            ]
        );
        assert_eq!(a.get("sales@example.org").unwrap().0.len(), 1);
        assert_eq!(a.get("bob").unwrap().0.len(), 3);
    }

    #[test]
    fn a_running_daemon_follows_the_file_and_keeps_the_last_good_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aliases");
        std::fs::write(&path, "a: alice\n").unwrap();
        let mut f = open(&path).unwrap();
        // Within the interval the file is not even looked at.
        std::fs::write(&path, "a: alice\nb: bob\n").unwrap();
        assert!(f.current().get("b").is_none());
        f.check_interval = Duration::ZERO;
        assert_eq!(f.current().get("b").unwrap().1, 2);
        // A syntax error, a missing file, an unreadable path: the last good table stays.
        std::fs::write(&path, "a: alice\nb: bob\nbroken\n").unwrap();
        assert_eq!(f.current().len(), 2);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(f.current().len(), 2);
        std::fs::create_dir(&path).unwrap();
        assert_eq!(f.current().len(), 2);
        std::fs::remove_dir(&path).unwrap();
        // A new file moved into place (new inode) is read.
        let tmp = dir.path().join("aliases.new");
        std::fs::write(&tmp, "c: carol\n").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let a = f.current();
        assert!(a.get("c").is_some() && a.get("a").is_none());
        // At start, a bad file is a config error.
        std::fs::write(&path, "nocolon\n").unwrap();
        let e = open(&path).unwrap_err();
        assert_eq!(exit::code_of(&e), exit::CONFIG);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line) in [
            ("a: b\nnocolon\n", "2:"),
            ("a: /srv/mbox\n", "1:"),
            ("a: \"unterminated\n", "1:"),
            ("a:\n", "1:"),
            ("a: b\na: c\n", "2:"),
            ("  a: b\n", "1:"),
            ("a: |\n", "1:"),
        ] {
            let e = Aliases::parse(text).unwrap_err();
            assert!(e.starts_with(line), "{text:?}: {e}");
        }
    }
}
