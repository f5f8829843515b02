//! Man pages and shell completions are generated from the clap definitions and committed.
//! This test fails when they are stale; `MAILKIT_UPDATE_DOCS=1 cargo test --test docs` rewrites them.

use std::path::{Path, PathBuf};

fn expected_files() -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for mut cmd in mailkit::cli::commands() {
        let name = cmd.get_name().to_string();
        let man = render_man(cmd.clone());
        files.push((root.join("man").join(format!("{name}.1")), man));
        for (shell, file) in [
            (clap_complete::Shell::Bash, format!("{name}.bash")),
            (clap_complete::Shell::Zsh, format!("_{name}")),
            (clap_complete::Shell::Fish, format!("{name}.fish")),
        ] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, name.clone(), &mut out);
            files.push((root.join("completions").join(file), out));
        }
    }
    files
}

/// Renders a man page: clap_mangen's standard sections, then the sections written in the
/// command's `after_long_help` (or `after_help`) as `TITLE` or `TITLE:` lines in capitals (EXIT STATUS,
/// FILES, ENVIRONMENT, EXAMPLES, ...), each followed by its text.
fn render_man(cmd: clap::Command) -> Vec<u8> {
    let mut cmd = cmd;
    cmd.build();
    let after = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())
        .map(|s| s.to_string());
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out).expect("title");
    man.render_name_section(&mut out).expect("name");
    man.render_synopsis_section(&mut out).expect("synopsis");
    man.render_description_section(&mut out)
        .expect("description");
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out).expect("options");
    }
    if cmd.get_subcommands().any(|c| !c.is_hide_set()) {
        man.render_subcommands_section(&mut out)
            .expect("subcommands");
    }
    if let Some(text) = after {
        out.extend_from_slice(after_help_sections(&text).as_bytes());
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out).expect("version");
    }
    out
}

/// `TITLE:` lines (capitals and spaces) start a man section; the text below is kept as laid out.
fn after_help_sections(text: &str) -> String {
    let mut roff = String::new();
    let mut open = false;
    for line in text.lines() {
        let t = line.trim_end();
        // A title is an unindented line of capitals and spaces, with or without a colon.
        let name = t.strip_suffix(':').unwrap_or(t);
        let is_title = name.len() > 2
            && !t.starts_with(' ')
            && name.chars().any(|c| c.is_ascii_uppercase())
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == ' ' || c == '-');
        if is_title {
            if open {
                roff.push_str(".fi\n");
            }
            roff.push_str(&format!(".SH {name}\n.nf\n"));
            open = true;
            continue;
        }
        if !open {
            roff.push_str(".SH NOTES\n.nf\n");
            open = true;
        }
        let escaped = t.replace('\\', "\\e");
        if escaped.starts_with('.') || escaped.starts_with('\'') {
            roff.push_str("\\&");
        }
        roff.push_str(&escaped);
        roff.push('\n');
    }
    if open {
        roff.push_str(".fi\n");
    }
    roff
}

#[test]
fn man_pages_and_completions_are_current() {
    let update = std::env::var_os("MAILKIT_UPDATE_DOCS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (path, content) in expected_files() {
        if std::fs::read(&path).ok().as_deref() == Some(&content[..]) {
            continue;
        }
        if update {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &content).expect("write");
        } else {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated docs (run MAILKIT_UPDATE_DOCS=1 cargo test --test docs): {stale:?}"
    );
}
