//! The password command of a relayhost or an msend account: `sh -c COMMAND`, first line of its
//! output, killed with its process group after a timeout ([`crate::proc`]).

use std::time::Duration;

/// How long a password command may run before it is killed (with its process group) and
/// counts as failed: msend's `password_command_timeout` and mrelayd's
/// `relayhost_password_timeout_secs` default.
pub const PASSWORD_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a password command's output read.
const MAX_PASSWORD_OUTPUT: usize = 8192;

/// `command` under `/bin/sh -c`, with what [`crate::proc`] runs it with.
fn password_child(
    command: &str,
    timeout: Duration,
) -> (std::process::Command, crate::proc::Options) {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(command);
    // Its stderr is ours, so a prompt or an error of e.g. `pass` or `gpg` is seen.
    let opts = crate::proc::Options {
        stdin: None,
        timeout,
        max_output: MAX_PASSWORD_OUTPUT,
        capture_stderr: false,
    };
    (cmd, opts)
}

/// The password in a password command's outcome: the first line of its output.
fn password_of(
    command: &str,
    timeout: Duration,
    outcome: std::io::Result<crate::proc::Outcome>,
) -> Result<String, String> {
    use crate::proc::Status;
    let out = outcome.map_err(|e| format!("running {command:?}: {e}"))?;
    match out.status {
        Status::Exited(0) => {}
        Status::Exited(c) => return Err(format!("{command:?} failed: exit status: {c}")),
        Status::Signaled(s) => return Err(format!("{command:?} failed: signal: {s}")),
        Status::TimedOut => {
            return Err(format!(
                "{command:?} timed out after {}s and was killed",
                timeout.as_secs_f64()
            ))
        }
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// Runs `command` under `/bin/sh -c`; the first line of its output is the password (msend's
/// `--password-command` and mrelayd's `relayhost_password_command`). Killed after `timeout`.
/// Blocks: async code uses [`password_from_command_async`].
pub fn password_from_command(command: &str, timeout: Duration) -> Result<String, String> {
    let (cmd, opts) = password_child(command, timeout);
    password_of(command, timeout, crate::proc::run(cmd, &opts))
}

/// [`password_from_command`] on the blocking pool, so no async worker waits for the command.
pub async fn password_from_command_async(
    command: &str,
    timeout: Duration,
) -> Result<String, String> {
    let (cmd, opts) = password_child(command, timeout);
    password_of(command, timeout, crate::proc::run_async(cmd, opts).await)
}
