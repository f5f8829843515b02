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
  75  temporary failure (disk full, I/O error, a symlinked Maildir refused, a Sieve
      redirect that could not be submitted yet): the caller should retry
After any failure nothing is in new/ or cur/ and nothing is left in tmp/.

SYMLINKS
  Nothing below the Maildir is opened through a symlink: a Maildir that is itself a symlink,
  or whose tmp/, new/, cur/ or folder directories are, is refused with exit 75 and a message
  naming the path (symlink in path), so whoever owns the Maildir cannot redirect a delivery
  to a file outside it. --allow-symlinked-maildir follows symlinks at those directories (never
  at files). Symlinks in the components above the Maildir (/home -> /data/home) are followed:
  that path is the admin's.

SIEVE
  --sieve runs an RFC 5228 script with these extensions: fileinto, vacation, envelope,
  encoded-character, comparator-i;octet, comparator-i;ascii-casemap,
  comparator-i;ascii-numeric, body, copy, relational, date, index, variables, mailbox,
  subaddress, imap4flags, regex, editheader, mime, foreverypart, extracttext. A script that
  requires any other extension (reject, duplicate, include, notify, vacation-seconds, ...) is
  refused as a script error, as is one that does not compile: the error is printed with its
  line and the message goes to INBOX. fileinto creates a missing folder. Where each message
  lands, and what redirect and vacation send, is checked against Dovecot Pigeonhole
  (tests/sieve_reference.rs).

  redirect (RFC 5228 section 4.2; :copy, RFC 3894, keeps the implicit keep) to a constant that
  is no local@domain address is a script error, as in Pigeonhole. It submits the
  message through --sendmail (default msend) with the original envelope sender (<> or none: <>;
  no SRS) and without its Return-Path: line. Its Delivered-To: stays, so a redirected copy
  that comes back here is refused as a mail loop; a redirect to an address the message was
  already delivered to is not done (the message is kept), and at most 4 redirects per message
  are done (more are warnings, and the message is kept). Redirects are sent before the message
  is stored: if one fails temporarily (the command exits 75, is killed or times out after
  120 s) mdeliver exits 75 and stores nothing; each redirect sent is remembered for 7 days
  (file mailkit-sieve-memory), so the retry neither sends it again nor stores a copy twice
  (the same bytes delivered again within those 7 days are taken for such a retry). A
  permanent failure is a warning and the message is kept. mrelayd's own local delivery
  (sieve =) does not use a command: it puts redirects and vacation replies straight into
  mrelayd's own queue (fsynced before they count as sent), so no msend configuration is
  needed there.

  vacation (RFC 5230, with RFC 3834's rules) replies from <> through the same command, after
  the message is stored, to the envelope sender, and only when one of the user's addresses
  (the recipient, -d, and :addresses) is in To, Cc or Bcc. It never replies to <>,
  MAILER-DAEMON, owner-*, *-request, the user's own addresses, mail with any List-* field or
  Precedence: bulk, list or junk, or Auto-Submitted: other than no. :days (default 7, at
  least 1) is remembered per sender and :handle in mailkit-sieve-memory; :subject (default
  \"Auto: \" and the original subject), :from and :mime as RFC 5230 says; non-ASCII text in
  Subject and in the From and Reply-To names is RFC 2047 encoded (section 5.6). The reply has
  Auto-Submitted: auto-replied, In-Reply-To and References. A reply that cannot be sent is a
  warning; the delivery still succeeds.

FILES
  ~/Maildir                 default Maildir (tmp/, new/, cur/, created mode 0700 when missing)
  MAILDIR/.Folder.Sub/      Maildir++ subfolders (--folder, Sieve fileinto)
  MAILDIR/mailkit-sieve-memory  vacation's :days and the redirects already sent (hashed keys)
  MAILDIR/mailkit-sieve.lock    locked (flock) while Sieve sends and remembers

ENVIRONMENT
  MAILDIR    Maildir when no MAILDIR argument is given
  SENDER     envelope sender when -f is not given
  RECIPIENT  envelope recipient when -d is not given
  HOME       ~/Maildir is the default Maildir
  MDELIVER_SENDMAIL  the command redirect and vacation submit through, when --sendmail is
             not given";

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

    /// Command that Sieve's redirect and vacation submit through: a sendmail-compatible program
    /// and its arguments, separated by spaces (no shell); `-i -f SENDER -- RECIPIENT` is
    /// added and the message goes to its stdin. Default: msend (next to mdeliver, else from
    /// PATH), which then needs its own configuration (a server to submit to)
    #[arg(long, value_name = "COMMAND", env = "MDELIVER_SENDMAIL")]
    pub sendmail: Option<String>,

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
            submit: self.sendmail.as_deref().map(|c| {
                std::sync::Arc::new(mda::send::Sendmail(mda::send::parse_command(c)))
                    as std::sync::Arc<dyn mda::send::Submit>
            }),
        };
        let report = mda::deliver(&root, &raw, &env, &opts)?;
        let mut err = std::io::stderr().lock();
        for w in &report.warnings {
            let _ = writeln!(err, "{}: {w}", Self::NAME);
        }
        Ok(exit::OK)
    }
}
