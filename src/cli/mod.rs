//! Each program's command line and entry point. `bin/<tool>.rs` calls [`main`] with the tool's type;
//! the clap definitions here also generate the man pages and shell completions.

use std::process::ExitCode;

pub mod mdeliver;
pub mod mdig_mx;
pub mod mfetch;
pub mod mimapd;
pub mod mpopd;
pub mod mrelayd;
pub mod msend;

/// The hidden `__child KIND ARGS...` subcommand of the daemons: a child the privileged spawner
/// runs as a system user (README "Privileges", [`crate::server::spawn`]).
#[derive(clap::Args, Debug, Clone)]
pub struct ChildArgs {
    /// What the child does.
    pub kind: String,
    /// Its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// A mailkit program: its clap arguments and what it does with them.
pub trait Tool: clap::Parser {
    /// The program name used in messages (`<name>: <what failed>: <why>`).
    const NAME: &'static str;
    /// Runs the program; the returned number is the exit code (sysexits.h).
    fn run(self) -> anyhow::Result<u8>;
}

/// The whole `main` of a mailkit binary: parse arguments (usage errors exit 64), run, map errors.
pub fn main<T: Tool>() -> ExitCode {
    // Before any child is spawned: an inherited SIGCHLD ignore breaks every wait (os.rs).
    crate::os::default_sigchld();
    match crate::exit::parse_args::<T>() {
        Ok(tool) => crate::exit::run_main(T::NAME, || tool.run()),
        Err(code) => code,
    }
}

/// The clap commands of all seven programs, for man pages and completions.
pub fn commands() -> Vec<clap::Command> {
    use clap::CommandFactory;
    vec![
        msend::Args::command(),
        mrelayd::Args::command(),
        mdeliver::Args::command(),
        mpopd::Args::command(),
        mimapd::Args::command(),
        mfetch::Args::command(),
        mdig_mx::Args::command(),
    ]
}

/// `after`, the hand-written sections of `program`'s manual, followed by its CONFIGURATION
/// section, generated from the one table of keys the parser is checked against
/// ([`crate::config::keys`]).
pub fn with_config(after: &str, program: &str) -> String {
    let intro = "Every key this program reads from its configuration file (see FILES), with its \
                 type and default. An unknown key or a bad value is an error naming the file, \
                 the line and the key (exit 78); relative paths are relative to the file's \
                 directory.";
    format!(
        "{after}\n\n{}",
        crate::config::keys::man_section(program, intro)
    )
}

/// The only allowed placeholder: a program whose issue has not built it yet says so and exits 69.
pub fn not_implemented(name: &str) -> anyhow::Result<u8> {
    eprintln!("{name}: not implemented yet");
    Ok(crate::exit::UNAVAILABLE)
}
