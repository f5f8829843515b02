//! The qmail checkpassword interface (<https://cr.yp.to/checkpwd/interface.html>), so the daemons
//! fit into existing qmail-style setups.
//!
//! The program reads `user\0password\0timestamp\0` from file descriptor 3 and exits 0 when the
//! password is right (after running its subprogram as the user, with `$HOME` set), 1 when it is
//! wrong, and 111 on a temporary error; anything else is treated as temporary too.
//!
//! The crate forbids `unsafe`, and std cannot hand a child an fd 3 without `pre_exec`, so the
//! program runs under `/bin/sh -c 'exec 3<&0 </dev/null; exec "$@"' sh PROG ARGS... REPORTER`:
//! the shell moves our pipe from its stdin to fd 3 and gives the program /dev/null as stdin.
//! mailkit supplies the subprogram itself (REPORTER, a tiny `sh -c` that prints `$HOME`, uid and
//! gid), so the checkpassword tells us where the user's home is. A program that exits 0 without
//! running its subprogram breaks the interface: like Dovecot, we treat that as a temporary
//! failure, never as a successful login.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::proc::Status;

/// A checkpassword run taking longer than this is killed, with its whole process group
/// ([`crate::proc`]), and counts as a temporary failure.
pub const CHECKPASSWORD_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much of the reporter's output is read.
pub const MAX_REPORT_BYTES: usize = 8192;

/// The shell wrapper that moves stdin to fd 3 and runs the program.
const WRAPPER: &str = "exec 3<&0 </dev/null; exec \"$@\"";
/// The subprogram a successful checkpassword runs: report home, uid and gid on stdout.
const REPORTER: &str = "printf 'MAILKIT-HOME=%s\\nMAILKIT-UID=%s\\nMAILKIT-GID=%s\\n' \"$HOME\" \"$(id -u)\" \"$(id -g)\"";

/// A configured checkpassword program (argv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpassword {
    argv: Vec<String>,
    timeout: Duration,
}

/// Outcome of one checkpassword run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpasswordResult {
    /// Exit 0 after running the subprogram: the password is right; what it reported.
    Ok {
        /// `$HOME` the program set for the user.
        home: Option<PathBuf>,
        /// The uid it switched to.
        uid: Option<u32>,
        /// The gid it switched to.
        gid: Option<u32>,
    },
    /// Exit 1 (or refused input): wrong user or password.
    Bad,
    /// Exit 111, another code, a signal, a timeout, the program could not run, or it exited 0
    /// without running its subprogram.
    TempFail(String),
}

impl Checkpassword {
    /// A checkpassword program with its arguments (not including the subprogram).
    pub fn new(argv: Vec<String>) -> Self {
        Checkpassword {
            argv,
            timeout: CHECKPASSWORD_TIMEOUT,
        }
    }

    /// Overrides [`CHECKPASSWORD_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The configured argv.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Runs the program for `user`/`password`. Blocks (up to the timeout): call it from a
    /// blocking thread in async code. `peer` is passed as `TCPREMOTEIP`, as tcpserver would.
    pub fn check(&self, user: &str, password: &[u8], peer: Option<IpAddr>) -> CheckpasswordResult {
        // The interface is NUL-separated: a NUL inside a field would shift the fields.
        if user.is_empty() || user.contains('\0') || password.contains(&0) {
            return CheckpasswordResult::Bad;
        }
        let Some(prog) = self.argv.first() else {
            return CheckpasswordResult::TempFail("checkpassword: no program configured".into());
        };
        let timestamp = crate::clock::now();
        let mut input = Vec::with_capacity(user.len() + password.len() + 32);
        input.extend_from_slice(user.as_bytes());
        input.push(0);
        input.extend_from_slice(password);
        input.push(0);
        input.extend_from_slice(format!("<{timestamp}@mailkit>").as_bytes());
        input.push(0);

        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .args(&self.argv)
            .arg("/bin/sh")
            .arg("-c")
            .arg(REPORTER);
        if let Some(ip) = peer {
            cmd.env("TCPREMOTEIP", ip.to_string());
        }
        // stderr stays the daemon's (its log); stdout must never reach an inetd client.
        let opts = crate::proc::Options {
            stdin: Some(input),
            timeout: self.timeout,
            max_output: MAX_REPORT_BYTES,
            capture_stderr: false,
        };
        let outcome = match crate::proc::run(cmd, &opts) {
            Ok(o) => o,
            Err(e) => return CheckpasswordResult::TempFail(format!("checkpassword {prog}: {e}")),
        };
        let report = outcome.stdout;
        match outcome.status {
            Status::Exited(0) => parse_report(prog, &report),
            Status::Exited(1) => CheckpasswordResult::Bad,
            Status::Exited(code) => {
                CheckpasswordResult::TempFail(format!("checkpassword {prog}: exit code {code}"))
            }
            Status::Signaled(_) => {
                CheckpasswordResult::TempFail(format!("checkpassword {prog}: killed by a signal"))
            }
            Status::TimedOut => {
                CheckpasswordResult::TempFail(format!("checkpassword {prog}: timed out"))
            }
        }
    }
}

fn parse_report(prog: &str, out: &[u8]) -> CheckpasswordResult {
    let text = String::from_utf8_lossy(out);
    let mut home = None;
    let mut uid = None;
    let mut gid = None;
    // Success means the program ran its subprogram (our reporter). Exiting 0 without doing so
    // breaks the interface; Dovecot treats it as an internal failure, and so do we.
    if !text.lines().any(|l| l.starts_with("MAILKIT-UID=")) {
        return CheckpasswordResult::TempFail(format!(
            "checkpassword {prog}: exited 0 without running its subprogram"
        ));
    }
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("MAILKIT-HOME=") {
            if v.starts_with('/') {
                home = Some(PathBuf::from(v));
            }
        } else if let Some(v) = line.strip_prefix("MAILKIT-UID=") {
            uid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("MAILKIT-GID=") {
            gid = v.trim().parse().ok();
        }
    }
    CheckpasswordResult::Ok { home, uid, gid }
}
