//! Replays every input kept in `fuzz/regressions/<target>/` (crashes found by `cargo fuzz`,
//! once fixed) through the same library body the fuzz target runs, so they stay fixed in an
//! ordinary `cargo test`; and checks that `fuzz/Cargo.toml` and `mailkit::fuzz::TARGETS` name
//! the same targets, so no target is built without a body here or the other way round.

use std::path::Path;

use mailkit::fuzz::TARGETS;

fn body(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

#[test]
fn every_kept_crash_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for dir in std::fs::read_dir(&root).expect("fuzz/regressions") {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let run = body(&name).unwrap_or_else(|| panic!("fuzz/regressions/{name}: no such target"));
        for input in std::fs::read_dir(&dir).unwrap() {
            let input = input.unwrap().path();
            let data = std::fs::read(&input).unwrap();
            let caught = std::panic::catch_unwind(|| run(&data));
            assert!(caught.is_ok(), "{} fails again", input.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no kept inputs under {}", root.display());
}

#[test]
fn fuzz_cargo_toml_and_the_library_name_the_same_targets() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    let mut bins: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "mailkit-fuzz")
        .collect();
    bins.sort_unstable();
    let mut lib: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    lib.sort_unstable();
    assert_eq!(bins, lib);
    for name in lib {
        let target = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&target).unwrap();
        assert!(
            text.contains(&format!("mailkit::fuzz::{name}::run(data)")),
            "{} is not a one-line call into mailkit::fuzz::{name}",
            target.display()
        );
    }
}
