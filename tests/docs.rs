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
        // Not clap_mangen's section: it cites a page per subcommand (mrelayd-serve(1)), and
        // only one page per program is shipped. Each subcommand is described here instead.
        out.extend_from_slice(b".SH SUBCOMMANDS\n");
        render_subcommands(&cmd, cmd.get_name(), &mut out);
    }
    if let Some(text) = after {
        out.extend_from_slice(after_help_sections(&text).as_bytes());
    }
    if cmd.get_version().is_some() {
        man.render_version_section(&mut out).expect("version");
    }
    out
}

/// Escapes text for roff: backslashes and hyphens, and a leading dot or quote.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// Each visible subcommand of `cmd` (recursively): its usage line, what it does, and its
/// arguments and options.
fn render_subcommands(cmd: &clap::Command, path: &str, out: &mut Vec<u8>) {
    // clap's generated `help` subcommand says nothing the page does not.
    let shown = |c: &&clap::Command| !c.is_hide_set() && c.get_name() != "help";
    for sub in cmd.get_subcommands().filter(shown) {
        let name = format!("{path} {}", sub.get_name());
        let mut usage_cmd = sub.clone().bin_name(&name);
        let usage = usage_cmd.render_usage().to_string();
        let usage = usage.trim().trim_start_matches("Usage:").trim();
        let about = sub
            .get_long_about()
            .or_else(|| sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        out.extend_from_slice(
            format!(".TP\n\\fB{}\\fR\n{}\n", roff(usage), roff(&about)).as_bytes(),
        );
        let args: Vec<&clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_id() != "help")
            .collect();
        if !args.is_empty() {
            out.extend_from_slice(b".RS\n");
            for a in args {
                let mut names = Vec::new();
                if let Some(s) = a.get_short() {
                    names.push(format!("-{s}"));
                }
                if let Some(l) = a.get_long() {
                    names.push(format!("--{l}"));
                }
                let value = a
                    .get_value_names()
                    .map(|v| {
                        v.iter()
                            .map(|v| format!("<{v}>"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_else(|| format!("<{}>", a.get_id().as_str().to_uppercase()));
                let shown = if names.is_empty() {
                    value
                } else if a.get_action().takes_values() {
                    format!("{} {value}", names.join(", "))
                } else {
                    names.join(", ")
                };
                let mut help = a
                    .get_long_help()
                    .or_else(|| a.get_help())
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                let defaults: Vec<String> = a
                    .get_default_values()
                    .iter()
                    .map(|v| v.to_string_lossy().into_owned())
                    .collect();
                if !defaults.is_empty() && a.get_action().takes_values() {
                    help.push_str(&format!(" [default: {}]", defaults.join(", ")));
                }
                out.extend_from_slice(
                    format!(".TP\n{}\n{}\n", roff(&shown), roff(&help)).as_bytes(),
                );
            }
            out.extend_from_slice(b".RE\n");
        }
        if sub.get_subcommands().any(|c| shown(&c)) {
            out.extend_from_slice(b".RS\n");
            render_subcommands(sub, &name, out);
            out.extend_from_slice(b".RE\n");
        }
    }
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

/// Pages of other packages the manuals may cite (`local(8)` is Postfix's, `mail(1)` bsd-mailx's).
const EXTERNAL_PAGES: &[&str] = &["local(8)", "mail(1)"];

/// Every `NAME(SECTION)` a shipped man page cites is a page we ship or a listed external one:
/// no reference to a page that is not there (issue 12: mrelayd(1) cited mrelayd-serve(1)).
#[test]
fn man_pages_cite_only_pages_that_exist() {
    let shipped: Vec<String> = mailkit::cli::commands()
        .iter()
        .map(|c| format!("{}(1)", c.get_name()))
        .collect();
    let mut missing = Vec::new();
    for (path, content) in expected_files() {
        if path.extension().is_none_or(|e| e != "1") {
            continue;
        }
        let text = String::from_utf8_lossy(&content).replace("\\-", "-");
        let bytes = text.as_bytes();
        for (i, _) in text.match_indices('(') {
            let close = text[i..].find(')').map(|j| i + j);
            let Some(close) = close else { continue };
            let section = &text[i + 1..close];
            if !(section.len() <= 2
                && section.starts_with(|c: char| c.is_ascii_digit())
                && section.chars().skip(1).all(|c| c.is_ascii_lowercase()))
            {
                continue;
            }
            let start = text[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
                .map_or(0, |s| s + 1);
            if start == i || !bytes[start].is_ascii_alphabetic() {
                continue;
            }
            let page = &text[start..=close];
            if !shipped.iter().any(|s| s == page) && !EXTERNAL_PAGES.contains(&page) {
                missing.push(format!("{}: {page}", path.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "pages cited but not shipped: {missing:?}"
    );
}

/// Every key of every config table appears in the man page of each program that reads it
/// (the table is checked against the parser in `config::keys`).
#[test]
fn every_config_key_is_in_its_programs_man_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    for table in mailkit::config::keys::TABLES {
        for program in table.programs {
            let page = std::fs::read_to_string(root.join("man").join(format!("{program}.1")))
                .expect("man page")
                .replace("\\-", "-");
            for key in table.keys {
                if !page.contains(&format!("    {} (", key.name)) {
                    missing.push(format!("{program}(1): [{}] {}", table.name, key.name));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{missing:?}");
}
