//! The layer table in `src/lib.rs` and the code's own imports tell the same story.
//!
//! The table (the `# Layers` section of the crate docs) puts every top-level module, and a few
//! submodules (`smtp::driver`), in a numbered layer. A module may use its own layer and the
//! layers below it, never one above; the modules the table marks sans-IO use no tokio and no
//! socket code. This test reads every `crate::…` and `super::…` path in `src/` (use
//! declarations and paths in code alike, comments and strings excepted) and fails on each
//! import that goes up, each sans-IO module touching IO, each module missing from the table,
//! and each circle between the units of one layer.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One row of the table: its layer number and whether it is sans-IO.
#[derive(Clone, Copy, Debug)]
struct Unit {
    layer: u32,
    sans_io: bool,
}

/// Parses the `# Layers` table of src/lib.rs: `//! | N | role | modules | sans-IO |` rows.
fn layer_table(lib: &str) -> BTreeMap<String, Unit> {
    let mut table = BTreeMap::new();
    let mut in_section = false;
    for line in lib.lines() {
        let Some(doc) = line.strip_prefix("//!") else {
            continue;
        };
        let doc = doc.trim();
        if doc.starts_with('#') {
            in_section = doc == "# Layers";
            continue;
        }
        if !in_section || !doc.starts_with('|') {
            continue;
        }
        let cells: Vec<&str> = doc.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(layer) = cells[0].parse::<u32>() else {
            continue; // header and separator rows
        };
        assert_eq!(cells.len(), 4, "layer row needs 4 cells: {doc}");
        let sans_io = cells[3] == "yes";
        for module in cells[2].split(',') {
            let module = module.trim().trim_matches('`');
            if !module.is_empty() {
                table.insert(module.to_string(), Unit { layer, sans_io });
            }
        }
    }
    assert!(!table.is_empty(), "src/lib.rs has no `# Layers` table");
    table
}

/// The table unit a module path belongs to: the longest table entry that is a prefix of it.
fn unit_of<'a>(table: &'a BTreeMap<String, Unit>, module: &[String]) -> Option<(&'a str, Unit)> {
    (1..=module.len()).rev().find_map(|n| {
        let key = module[..n].join("::");
        table.get_key_value(&key).map(|(k, u)| (k.as_str(), *u))
    })
}

/// Source with comments, string and char literals blanked out (newlines kept for line numbers).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = src[i + 2..].find("*/").map_or(rest.len(), |e| e + 4);
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest.starts_with(b"r\"") || rest.starts_with(b"r#") {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = src[i + body..]
                .find(&close)
                .map_or(rest.len(), |e| body + e + close.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            blank(&mut out, &rest[..end]);
            i += end;
        } else if rest[0] == b'\'' {
            // A char literal ('a', '\n', '\u{..}') — not a lifetime ('a without a closing quote).
            let lit = if rest.get(1) == Some(&b'\\') {
                rest[2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + ch) == Some(&b'\'')).then_some(2 + ch)
            };
            match lit {
                Some(end) => {
                    blank(&mut out, &rest[..end]);
                    i += end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let ch = src[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&src[i..i + ch]);
            i += ch;
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Expands the path tree after `crate::` at `code[i..]` into the paths it names (up to two
/// segments deep is all the table needs; more are kept when present).
fn use_tree(code: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let skip_ws = |i: &mut usize| {
        while *i < code.len() && code[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    skip_ws(&mut i);
    if code.get(i) == Some(&b'{') {
        i += 1;
        loop {
            skip_ws(&mut i);
            match code.get(i) {
                Some(b'}') | None => return i + 1,
                Some(b',') => i += 1,
                _ => i = use_tree(code, i, prefix.clone(), out),
            }
        }
    }
    let start = i;
    while i < code.len() && is_ident(code[i]) {
        i += 1;
    }
    let ident = String::from_utf8_lossy(&code[start..i]).into_owned();
    // A glob (`a::*`) names its prefix; step over the `*` (or any other byte that is no
    // identifier) so a group such as `{b, C::*}` always makes progress.
    if ident.is_empty() && i < code.len() && code[i] != b'{' {
        i += 1;
    }
    let mut path = prefix;
    if !ident.is_empty() && ident != "self" {
        path.push(ident);
    }
    let mut j = i;
    skip_ws(&mut j);
    if code[j..].starts_with(b"::") {
        return use_tree(code, j + 2, path, out);
    }
    if !path.is_empty() {
        out.push(path);
    }
    i
}

/// Every module path a source file refers to through `crate::` or `super::`, with its line.
fn references(code: &str, module: &[String]) -> Vec<(usize, Vec<String>)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0 || !is_ident(bytes[i - 1]) && bytes[i - 1] != b':';
        let rest = &bytes[i..];
        let (base, skip): (Option<Vec<String>>, usize) =
            if word_start && rest.starts_with(b"crate::") {
                (Some(Vec::new()), 7)
            } else if word_start && rest.starts_with(b"super::") {
                // Each `super` leaves one module: `smtp::server` → `smtp`, `smtp` (mod.rs) → the root.
                let mut parent = module.to_vec();
                let mut j = 0;
                while bytes[i + j..].starts_with(b"super::") {
                    parent.pop();
                    j += 7;
                }
                (Some(parent), j)
            } else {
                (None, 1)
            };
        match base {
            Some(prefix) => {
                let line = code[..i].matches('\n').count() + 1;
                let mut paths = Vec::new();
                let end = use_tree(bytes, i + skip, prefix, &mut paths);
                found.extend(paths.into_iter().map(|p| (line, p)));
                i = end.max(i + skip);
            }
            None => i += skip,
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/smtp/driver.rs` → `smtp::driver`; `src/smtp/mod.rs` → `smtp`; `src/lib.rs` → ``.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(src)
        .expect("below src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Words that mean a file does IO: a sans-IO module must contain none of them.
const IO_WORDS: &[&str] = &[
    "tokio",
    "TcpStream",
    "TcpListener",
    "UdpSocket",
    "UnixStream",
    "std::net::Shutdown",
    "crate::server",
    "crate::net",
];

#[test]
fn imports_follow_the_layer_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    let table = layer_table(&lib);
    let mut problems = Vec::new();

    // Every top-level module is in the table.
    for line in lib.lines() {
        let line = line.trim();
        if let Some(name) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
            .and_then(|r| r.strip_suffix(';'))
        {
            if !table.contains_key(name) {
                problems.push(format!(
                    "src/lib.rs: module `{name}` is not in the layer table"
                ));
            }
        }
    }
    for name in table.keys() {
        let first = name.split("::").next().unwrap_or(name);
        if !lib
            .lines()
            .any(|l| l.trim().ends_with(&format!("mod {first};")))
        {
            problems.push(format!(
                "layer table names `{name}`, which src/lib.rs does not declare"
            ));
        }
    }

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    // Edges between units of the same layer, for the circle check.
    let mut same_layer: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        if module.is_empty() {
            continue; // lib.rs declares modules only
        }
        let shown = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        let Some((unit, from)) = unit_of(&table, &module) else {
            problems.push(format!("{shown}: not covered by the layer table"));
            continue;
        };
        let text = fs::read_to_string(file).expect("read source");
        let code = code_only(&text);
        for (line, path) in references(&code, &module) {
            let Some((target, to)) = unit_of(&table, &path) else {
                continue; // a path into the crate root or a name the table does not split
            };
            if target == unit {
                continue;
            }
            if to.layer > from.layer {
                problems.push(format!(
                    "{shown}:{line}: `{unit}` (layer {}) uses `{}` of `{target}` (layer {}), a layer above",
                    from.layer,
                    path.join("::"),
                    to.layer
                ));
            } else if to.layer == from.layer {
                same_layer
                    .entry(unit.to_string())
                    .or_default()
                    .insert(target.to_string());
            }
        }
        if from.sans_io {
            for (n, l) in code.lines().enumerate() {
                if let Some(word) = IO_WORDS.iter().find(|w| l.contains(*w)) {
                    problems.push(format!(
                        "{shown}:{}: sans-IO `{unit}` uses `{word}` (IO belongs in its driver.rs)",
                        n + 1
                    ));
                }
            }
        }
    }

    // No circle between units of one layer: a → b → … → a.
    for start in same_layer.keys() {
        let mut stack = vec![vec![start.clone()]];
        let mut seen = BTreeSet::new();
        while let Some(trail) = stack.pop() {
            let last = trail.last().expect("non-empty trail");
            for next in same_layer.get(last).into_iter().flatten() {
                if next == start {
                    problems.push(format!(
                        "circle between modules: {} → {start}",
                        trail.join(" → ")
                    ));
                } else if seen.insert(next.clone()) {
                    let mut longer = trail.clone();
                    longer.push(next.clone());
                    stack.push(longer);
                }
            }
        }
    }

    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "{} layering problem(s) (see the `# Layers` table in src/lib.rs):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn reference_scanner_sees_grouped_and_relative_paths() {
    let code = code_only(
        "use crate::{a::b, c::{d, e::f}, k::*};\n// crate::hidden\nlet s = \"crate::str\";\nfn x() { super::super::g::h(); crate::i::j() }\n",
    );
    let module = vec!["m".to_string(), "n".to_string()];
    let paths: Vec<String> = references(&code, &module)
        .into_iter()
        .map(|(_, p)| p.join("::"))
        .collect();
    assert_eq!(paths, ["a::b", "c::d", "c::e::f", "k", "g::h", "i::j"]);
}
