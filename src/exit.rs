//! Exit codes from sysexits.h and the one place that maps errors to them.
//!
//! Cron, MTAs and scripts read these codes: 75 (`TEMPFAIL`) means "try again later", anything else
//! non-zero is final. Library code attaches a code with [`fail`] (or [`Failure`] directly); an error
//! without one is classified from its I/O cause by [`code_of`].

use std::fmt;
use std::io;
use std::process::ExitCode;

/// Successful termination.
pub const OK: u8 = 0;
/// Command line usage error.
pub const USAGE: u8 = 64;
/// Data format error (bad message, empty input).
pub const DATAERR: u8 = 65;
/// Cannot open input.
pub const NOINPUT: u8 = 66;
/// Addressee unknown (recipient rejected permanently).
pub const NOUSER: u8 = 67;
/// Host name unknown (no mail route).
pub const NOHOST: u8 = 68;
/// Service unavailable (other permanent failure).
pub const UNAVAILABLE: u8 = 69;
/// Internal software error.
pub const SOFTWARE: u8 = 70;
/// System error (cannot fork, ...).
pub const OSERR: u8 = 71;
/// Cannot create output file or directory.
pub const CANTCREAT: u8 = 73;
/// Input/output error.
pub const IOERR: u8 = 74;
/// Temporary failure: the caller may retry.
pub const TEMPFAIL: u8 = 75;
/// Remote error in protocol.
pub const PROTOCOL: u8 = 76;
/// Permission denied (authentication failed).
pub const NOPERM: u8 = 77;
/// Configuration error.
pub const CONFIG: u8 = 78;

/// An error that carries its sysexits code. Put it anywhere in an `anyhow` chain.
#[derive(Debug)]
pub struct Failure {
    /// The sysexits.h code the program exits with.
    pub code: u8,
    /// What went wrong, one line.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An `anyhow::Error` that exits with `code`.
pub fn fail(code: u8, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code,
        message: message.into(),
    })
}

/// Whether an I/O error is worth retrying (disk full, I/O error, interrupted, timed out, ...).
pub fn io_is_temporary(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        TimedOut
            | Interrupted
            | WouldBlock
            | ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | UnexpectedEof
            | StorageFull
            | QuotaExceeded
            | OutOfMemory
            | ResourceBusy
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
            | AddrNotAvailable
    ) {
        return true;
    }
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::ENOSPC | libc::EDQUOT | libc::EAGAIN | libc::ENFILE | libc::EMFILE)
    )
}

/// The exit code for an error: the first [`Failure`] in its chain, else classified from an I/O
/// cause (temporary → 75, other I/O → 74), else 70.
pub fn code_of(err: &anyhow::Error) -> u8 {
    // anyhow's downcast sees through `.context(Failure)` layers, which `chain()` does not.
    if let Some(f) = err.downcast_ref::<Failure>() {
        return f.code;
    }
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
    }
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<io::Error>() {
            return if io_is_temporary(e) { TEMPFAIL } else { IOERR };
        }
    }
    SOFTWARE
}

/// Runs a program's body and turns its result into the process exit code, printing one line
/// `<prog>: <what failed>: <why>` on stderr for an error. A broken pipe on stdout is not an error.
pub fn run_main(prog: &str, body: impl FnOnce() -> anyhow::Result<u8>) -> ExitCode {
    match body() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if err
                .chain()
                .filter_map(|c| c.downcast_ref::<io::Error>())
                .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
                && err.downcast_ref::<Failure>().is_none()
            {
                return ExitCode::from(OK);
            }
            eprintln!("{prog}: {err:#}");
            ExitCode::from(code_of(&err))
        }
    }
}

/// Parses a program's arguments; usage errors exit 64 (sysexits), `--help`/`--version` exit 0.
pub fn parse_args<T: clap::Parser>() -> Result<T, ExitCode> {
    parse_args_from(std::env::args_os())
}

/// [`parse_args`] over an explicit argument list.
pub fn parse_args_from<T: clap::Parser, I, A>(args: I) -> Result<T, ExitCode>
where
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    match T::try_parse_from(args) {
        Ok(t) => Ok(t),
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => OK,
                _ => USAGE,
            };
            let _ = e.print();
            Err(ExitCode::from(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_code_wins_over_io_cause() {
        let e = anyhow::Error::new(io::Error::from_raw_os_error(libc::ENOSPC)).context(Failure {
            code: CANTCREAT,
            message: "x".into(),
        });
        assert_eq!(code_of(&e), CANTCREAT);
    }

    #[test]
    fn disk_full_is_temporary() {
        let e = anyhow::Error::new(io::Error::from_raw_os_error(libc::ENOSPC)).context("writing");
        assert_eq!(code_of(&e), TEMPFAIL);
        let e = anyhow::Error::new(io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(code_of(&e), IOERR);
        assert_eq!(code_of(&anyhow::anyhow!("plain")), SOFTWARE);
    }
}
