//! `mdeliver`: delivery agent: one message on stdin into a Maildir, safely (see [`crate::mda`]).

use std::io::Write;
use std::path::PathBuf;

use crate::exit;
use crate::mda;

/// The man page sections clap has no field for.
const AFTER_HELP: &str = "\
EXIT STATUS
  0   delivered (file and directory fsynced)
  64  bad usage (unknown option, line break in an address, bad folder name)
  65  empty input, message over --max-size, or a mail loop (Delivered-To: the same recipient)
  73  the Maildir (or a file in it) cannot be created
  75  temporary failure (disk full, I/O error, a symlinked Maildir refused): the caller
      should retry
After any failure nothing is in new/ or cur/ and nothing is left in tmp/.

SYMLINKS
  Nothing below the Maildir is opened through a symlink: a Maildir that is itself a symlink,
  or whose tmp/, new/, cur/ or folder directories are, is refused with exit 75 and a message
  naming the path (symlink in path), so whoever owns the Maildir cannot redirect a delivery
  to a file outside it. --allow-symlinked-maildir follows symlinks at those directories (never
  at files). Symlinks in the components above the Maildir (/home -> /data/home) are followed:
  that path is the admin's.

SIEVE
  --sieve runs an RFC 5228 script with these extensions: fileinto, envelope,
  encoded-character, comparator-i;octet, comparator-i;ascii-casemap,
  comparator-i;ascii-numeric, body, copy, relational, date, index, variables, mailbox,
  subaddress, imap4flags, regex, editheader, mime, foreverypart, extracttext. A script that
  requires any other extension (reject, duplicate, include, notify, ...) is refused as a
  script error, as is one that does not compile: the error is printed with its line and the
  message goes to INBOX. fileinto creates a missing folder. Where each message lands is
  checked against Dovecot Pigeonhole (tests/sieve_reference.rs).

FILES
  ~/Maildir                 default Maildir (tmp/, new/, cur/, created mode 0700 when missing)
  MAILDIR/.Folder.Sub/      Maildir++ subfolders (--folder, Sieve fileinto)

ENVIRONMENT
  MAILDIR    Maildir when no MAILDIR argument is given
  SENDER     envelope sender when -f is not given
  RECIPIENT  envelope recipient when -d is not given
  HOME       ~/Maildir is the default Maildir";

/// Command line of `mdeliver`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "mdeliver",
    version,
    about = "Delivery agent: one message on stdin into a Maildir, safely",
    long_about = "Delivery agent: reads one message on standard input and stores it in a Maildir, \
                  creating the Maildir when missing. Prepends Return-Path: <SENDER> and \
                  Delivered-To: RECIPIENT when given, stores CRLF line ends as LF and keeps every \
                  other byte. The message is written to tmp/, fsynced, moved into new/ without \
                  ever replacing a file, and new/ is fsynced before mdeliver exits 0. A message \
                  that already carries Delivered-To: for the same recipient is a mail loop and is \
                  refused; a message piped by an MTA (mrelayd, Postfix local, qmail-local) that \
                  starts with its Return-Path: and Delivered-To: lines keeps one of each, since \
                  those lines are this same delivery's. --sieve runs an RFC 5228 Sieve script (the extensions are listed under \
                  SIEVE); a script error is reported with its line and the message still lands \
                  in INBOX.",
    after_long_help = AFTER_HELP
)]
pub struct Args {
    /// Envelope sender, written as `Return-Path: <SENDER>` (empty for the null sender);
    /// default: $SENDER, where an empty value is the null sender too
    #[arg(short = 'f', long = "sender", value_name = "SENDER")]
    pub sender: Option<String>,

    /// Envelope recipient, written as `Delivered-To: RECIPIENT` and checked for mail loops;
    /// default: $RECIPIENT
    #[arg(short = 'd', long = "recipient", value_name = "RECIPIENT")]
    pub recipient: Option<String>,

    /// Deliver into this Maildir++ subfolder (`Lists/Rust` or `Lists.Rust`), created when missing
    #[arg(long, value_name = "NAME")]
    pub folder: Option<String>,

    /// Filter through this Sieve script (RFC 5228)
    #[arg(long, value_name = "FILE")]
    pub sieve: Option<PathBuf>,

    /// Refuse (exit 65) a message larger than this many bytes
    #[arg(long, value_name = "BYTES", default_value_t = mda::DEFAULT_MAX_SIZE,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_size: u64,

    /// Follow a symlink at the Maildir itself or at its tmp/, new/, cur/ or folder directories
    /// (refused by default, exit 75); files are never followed
    #[arg(long)]
    pub allow_symlinked_maildir: bool,

    /// The Maildir (default: $MAILDIR, else ~/Maildir)
    #[arg(value_name = "MAILDIR")]
    pub maildir: Option<PathBuf>,
}

/// An environment variable as UTF-8 (`None` when unset; not UTF-8 is a usage error).
/// Read by hand rather than through clap's `env`, which refuses an empty value: qmail-style
/// MTAs set `SENDER=` (empty) for bounces.
fn env_var(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var_os(name) {
        None => Ok(None),
        Some(v) => v
            .into_string()
            .map(Some)
            .map_err(|_| exit::fail(exit::USAGE, format!("${name} is not valid UTF-8"))),
    }
}

impl Args {
    /// The Maildir to deliver into: the argument or a non-empty `$MAILDIR`, else `$HOME/Maildir`.
    fn maildir_path(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.maildir {
            if p.as_os_str().is_empty() {
                return Err(exit::fail(exit::USAGE, "empty MAILDIR argument"));
            }
            return Ok(p.clone());
        }
        if let Some(p) = std::env::var_os("MAILDIR").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        match std::env::var_os("HOME") {
            Some(h) if !h.is_empty() => Ok(PathBuf::from(h).join("Maildir")),
            _ => Err(exit::fail(
                exit::USAGE,
                "no MAILDIR given, $MAILDIR not set and $HOME not set",
            )),
        }
    }
}

impl super::Tool for Args {
    const NAME: &'static str = "mdeliver";
    fn run(self) -> anyhow::Result<u8> {
        let root = self.maildir_path()?;
        let raw = mda::read_message(std::io::stdin().lock(), self.max_size)?;
        let env = mda::Envelope {
            sender: match self.sender {
                Some(s) => Some(s),
                None => env_var("SENDER")?,
            },
            recipient: match self.recipient {
                Some(r) => Some(r),
                None => env_var("RECIPIENT")?,
            },
        };
        let opts = mda::Options {
            folder: self.folder,
            sieve: self.sieve.as_deref().map(mda::sieve::Script::load),
            links: crate::maildir::Links::allowing(self.allow_symlinked_maildir),
        };
        let report = mda::deliver(&root, &raw, &env, &opts)?;
        let mut err = std::io::stderr().lock();
        for w in &report.warnings {
            let _ = writeln!(err, "{}: {w}", Self::NAME);
        }
        Ok(exit::OK)
    }
}
