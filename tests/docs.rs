//! Man pages and shell completions are generated from the clap definitions and committed.
//! This test fails when they are stale; `MAILKIT_UPDATE_DOCS=1 cargo test --test docs` rewrites them.

use std::path::{Path, PathBuf};

fn expected_files() -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for mut cmd in mailkit::cli::commands() {
        let name = cmd.get_name().to_string();
        let mut man = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut man)
            .expect("render man page");
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
