//! `mimapd`: see `man mimapd`. All logic lives in the mailkit library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    mailkit::cli::main::<mailkit::cli::mimapd::Args>()
}
