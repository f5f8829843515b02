//! Submitting the messages Sieve's redirect and vacation send, through a sendmail-compatible
//! command (msend by default), run through [`crate::proc`].
//!
//! The command is the program and its arguments separated by white space (no shell, as
//! Dovecot's `sendmail_path`); `-i -f SENDER -- RECIPIENT` is added, `-f '<>'` for the null
//! sender, and the message goes to its stdin. Exit 0 is sent; 75 (EX_TEMPFAIL), a signal or the
//! [`TIMEOUT`] is a temporary failure; anything else (a refused recipient, a configuration
//! error, a command that cannot be started) is permanent.

use std::process::Command;
use std::time::Duration;

use crate::exit;
use crate::proc;

/// How long the command may take before it is killed (a temporary failure).
pub const TIMEOUT: Duration = Duration::from_secs(120);
/// Most bytes of its output kept for the error message.
const MAX_OUTPUT: usize = 4096;

/// How a submission went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The command took the message.
    Ok,
    /// Worth trying again later (exit 75, killed, timed out); the text says why.
    Temporary(String),
    /// Will not get better by retrying; the text says why.
    Permanent(String),
}

/// The default command: `msend` next to the running program (mdeliver and msend are installed
/// together), else `msend` from `PATH`.
pub fn default_command() -> Vec<String> {
    let sibling = std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("msend"))
        .filter(|p| p.is_file());
    vec![sibling.map_or_else(|| "msend".to_string(), |p| p.display().to_string())]
}

/// Splits a configured command line into program and arguments (white space; empty → none).
pub fn parse_command(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

/// Runs `command` to submit `message` from `sender` (`""` is the null sender) to `recipient`.
pub fn submit(command: &[String], sender: &str, recipient: &str, message: &[u8]) -> Sent {
    let Some((program, args)) = command.split_first() else {
        return Sent::Permanent("no sendmail command".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(args).args([
        "-i",
        "-f",
        if sender.is_empty() { "<>" } else { sender },
        "--",
        recipient,
    ]);
    let opts = proc::Options {
        stdin: Some(message.to_vec()),
        timeout: TIMEOUT,
        max_output: MAX_OUTPUT,
        capture_stderr: true,
    };
    let out = match proc::run(cmd, &opts) {
        Ok(o) => o,
        Err(e) => return Sent::Permanent(format!("cannot run {program}: {e}")),
    };
    let said = || {
        let text = String::from_utf8_lossy(&out.stderr);
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else {
            format!(": {}", text.lines().last().unwrap_or_default())
        }
    };
    match out.status {
        proc::Status::Exited(0) => Sent::Ok,
        proc::Status::Exited(c) if c == i32::from(exit::TEMPFAIL) => {
            Sent::Temporary(format!("{program} exited {c}{}", said()))
        }
        proc::Status::Exited(c) => Sent::Permanent(format!("{program} exited {c}{}", said())),
        proc::Status::Signaled(s) => Sent::Temporary(format!("{program} killed by signal {s}")),
        proc::Status::TimedOut => Sent::Temporary(format!(
            "{program} took longer than {} s and was killed",
            TIMEOUT.as_secs()
        )),
    }
}
