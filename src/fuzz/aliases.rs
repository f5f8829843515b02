//! The `aliases` fuzz target: the aliases file parser (`relay::aliases`) on any text. It must
//! never panic; a parsed file has exactly one alias per entry line (found under its name, any
//! case, with its line number), and writing the table back out (every target quoted) parses to
//! the same table.

use crate::relay::aliases::{strip_comment, AliasTarget, Aliases};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(aliases) = Aliases::parse(text) else {
        return;
    };
    // The entries, found independently of the parser: a line not blank once the comment is
    // gone starts one, unless it starts with white space (it continues the previous entry).
    let mut entries: Vec<(String, usize)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        if line.trim().is_empty() {
            continue;
        }
        match entries.last_mut() {
            Some((entry, _)) if raw.starts_with([' ', '\t']) => {
                entry.push(' ');
                entry.push_str(line);
            }
            _ => entries.push((line.to_string(), i + 1)),
        }
    }
    let mut names = Vec::new();
    for (entry, line) in &entries {
        let Some((name, _)) = entry.split_once(':') else {
            panic!("entry of line {line} without a colon was accepted");
        };
        names.push((name.trim().to_string(), *line));
    }
    assert_eq!(aliases.len(), names.len(), "one alias per entry line");
    let mut out = String::new();
    for (name, line) in &names {
        let Some((targets, at)) = aliases.get(name) else {
            panic!("alias {name:?} of line {line} not found");
        };
        assert_eq!(at, *line);
        assert!(!targets.is_empty());
        if name.contains(['"', '#']) {
            // Such a name cannot be written back without changing the quoting.
            return;
        }
        out.push_str(name);
        out.push(':');
        for (k, t) in targets.iter().enumerate() {
            let t = match t {
                AliasTarget::Address(a) => a.clone(),
                AliasTarget::Pipe(c) => format!("|{c}"),
                AliasTarget::Maildir(p) => p.display().to_string(),
            };
            assert!(!t.contains('"'), "a target kept a quote: {t:?}");
            out.push_str(if k == 0 { " \"" } else { ", \"" });
            out.push_str(&t);
            out.push('"');
        }
        out.push('\n');
    }
    let again = match Aliases::parse(&out) {
        Ok(a) => a,
        Err(e) => panic!("{out:?} did not re-parse: {e}"),
    };
    assert_eq!(again.len(), aliases.len());
    for (k, (name, _)) in names.iter().enumerate() {
        assert_eq!(
            again.get(name),
            aliases.get(name).map(|(t, _)| (t, k + 1)),
            "{out:?}"
        );
    }
}
