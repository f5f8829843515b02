//! `mfetch`: fetch mail from POP3/IMAP servers into a Maildir or an MDA. The work is in
//! [`crate::fetch`]; this is its command line.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::Config;
use crate::exit;
use crate::fetch::account::{self, Account, MfetchConfig, Overrides};
use crate::fetch::{self, Verbosity};

const AFTER_HELP: &str = "\
SAFETY
  A message is deleted on the server (POP3 DELE and QUIT, IMAP \\Deleted and UID EXPUNGE, or
  MOVE with move_to) only after its local copy is durable: stored and fsynced, file and
  directory, and recorded in the account's state file. Messages are kept on the server
  unless --delete or delete = true says otherwise. Into a Maildir every message is
  delivered exactly once whatever the instant mfetch is killed: its file name carries a tag
  of the account and the message's server key (POP3 UIDL; IMAP folder, UIDVALIDITY, UID) as a
  ,X=TAG field, and a rerun finds a message that a killed run stored but had not recorded.
  Through --mda a kill can cause one duplicate at most: of the message being delivered. A
  POP3 server without UIDL is tracked by Message-ID and size (TOP n 0 when offered).
  An IMAP UIDVALIDITY change is resynchronised by Message-ID and size: what is already
  here is not fetched again and nothing local is deleted.

TLS
  pop3s:// and imaps:// use TLS from the first byte (RFC 8314); pop3:// and imap:// require
  STLS/STARTTLS. The certificate is checked against the webpki roots, --ca-file, or the key
  pin --fingerprint (SHA-256 of the server's SubjectPublicKeyInfo, as msend's
  --tls-fingerprint). The password is never sent in clear unless --allow-plaintext (or
  allow_plaintext = true) is given for that account. An IMAP PREAUTH greeting never skips a
  required STARTTLS: mfetch refuses the session (69).

IMAP
  Each folder (--folder, folders =, the URL's, else INBOX) goes into the matching Maildir++
  folder of the Maildir (INBOX into the Maildir itself, Lists.Rust or Lists/Rust into
  .Lists.Rust). A folder whose STATUS shows the UIDVALIDITY and UIDNEXT of the last complete
  fetch is skipped without being selected. Messages are fetched with BODY.PEEK[] (no \\Seen)
  and streamed into the Maildir (never whole in memory; through --mda they are collected
  first). After the local copy is durable: seen = true sets \\Seen; move_to = FOLDER moves
  them (MOVE, else COPY and delete; the folder is created when missing); delete sets
  \\Deleted and expunges them with UID EXPUNGE, or, on a server without UIDPLUS, with
  EXPUNGE only when no other message is flagged \\Deleted (else they stay flagged).
  --since DATE fetches what SEARCH SINCE finds; --limit N at most N messages per run.

OAUTH 2.0
  auth = \"xoauth2\" or \"oauthbearer\" (RFC 7628) logs in with an OAuth 2.0 token, as Gmail
  and Microsoft 365 require: the password command prints the token (e.g. a helper that
  refreshes it), sent with IMAP AUTHENTICATE (the initial response inline with SASL-IR) or
  POP3 AUTH, never in clear (as a password). A refused token is exit 77, with the server's
  JSON error. Under --idle a refused token makes mfetch rerun the password command once, at
  once, for a fresh one; refused again, the account stops with 77.

IDLE
  --idle keeps mfetch running (a systemd service): after the normal fetch of an IMAP
  account it EXAMINEs the first folder and waits in IDLE (RFC 2177); on * n EXISTS it sends
  DONE, fetches exactly as a run does (same durability and state file) and IDLEs again,
  renewing the IDLE every 29 minutes. A POP3 account, or an IMAP server without IDLE, is
  fetched every --poll SECS (poll_secs =, default 300). After a network error or time limit
  it reconnects, waiting 5 s, then twice as long each time up to 5 minutes; it never exits
  on temporary trouble, but an account with 77, 78 or 69 stops (mfetch exits with that code
  once no account is left). SIGTERM or SIGINT: an IMAP fetch stops after its UID FETCH
  batch in progress (at most 100 messages, each stored and recorded), a POP3 fetch in
  progress is finished; the session logs out, exit 0.

MDA
  --mda CMD runs sh -c CMD once per message, the message on stdin (LF line ends), with
  SENDER (the message's Return-Path, else <>) and RECIPIENT (--recipient, recipient =, else
  $USER) in its environment: mdeliver, procmail, maildrop. Exit 0 counts as delivered; 75
  keeps the message on the server for the next run (mfetch exits 75); any other code stops
  the account with an error (69) and keeps the message too.

EXIT STATUS
  0   fetched, or nothing new
  75  temporary trouble: network, time limit, a server's temporary refusal ([IN-USE],
      [SYS/TEMP]), an MDA's 75, another mfetch fetching the same account: retry from cron
  77  authentication failed    78  bad configuration (also: no password found)
  69  the server refuses: no STLS/STARTTLS, an untrusted certificate, a hostile or broken
      response (a POP3 line over 8 KiB, an IMAP line over 64 KiB, a message over 512 MiB,
      PREAUTH without TLS), an MDA's failure
  With several accounts the most serious code of theirs (78 > 77 > 69 > 75 > 0); each
  account gets its summary line (-v, or on a terminal) or its error line.

FILES
  /etc/mailkit/mailkit.toml    configuration ($MAILKIT_CONFIG, -c): [mfetch] and its accounts
  $XDG_STATE_HOME/mailkit/mfetch/ACCOUNT.state
                               what was fetched (default ~/.local/state/mailkit/mfetch; a
                               state_dir in [mfetch] or --state-dir elsewhere), ACCOUNT.lock
                               beside it
  ~/.netrc                     passwords (machine HOST login USER password P), as for msend
  ~/Maildir                    default destination

EXAMPLES
  mfetch pop3s://me@pop.example.org/
  mfetch --password-command 'pass mail' imaps://me@imap.example.org/INBOX --since 2026-11-01
  mfetch --all -q              from cron: every account in the configuration";

/// Command line of `mfetch`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "mfetch",
    version,
    about = "Fetch mail from POP3/IMAP servers into a Maildir or an MDA, never losing or duplicating a message",
    after_help = crate::cli::with_config(AFTER_HELP, "mfetch")
)]
pub struct Args {
    /// Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml)
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Fetch this account of [mfetch.accounts] (repeatable; default: every account)
    #[arg(short = 'a', long = "account", value_name = "NAME")]
    pub accounts: Vec<String>,
    /// Fetch every account (the default without -a)
    #[arg(long)]
    pub all: bool,
    /// Keep messages on the server (the default)
    #[arg(long, conflicts_with = "delete")]
    pub keep: bool,
    /// Delete messages on the server once their local copy is durable
    #[arg(long)]
    pub delete: bool,
    /// Deliver each message through CMD (sh -c) instead of into a Maildir
    #[arg(long, value_name = "CMD")]
    pub mda: Option<String>,
    /// Destination Maildir (default: maildir = of the account or [mfetch], else ~/Maildir)
    #[arg(long, value_name = "DIR")]
    pub maildir: Option<PathBuf>,
    /// RECIPIENT for the MDA (default: recipient =, else $USER)
    #[arg(long, value_name = "ADDRESS")]
    pub recipient: Option<String>,
    /// IMAP folder to fetch (repeatable; default: the account's, else INBOX)
    #[arg(long = "folder", value_name = "NAME")]
    pub folders: Vec<String>,
    /// IMAP: only messages that arrived on or after DATE (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Fetch at most N messages per account and run
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Stay connected and fetch new mail as it comes (IMAP IDLE, else polling), until
    /// SIGTERM/SIGINT
    #[arg(long)]
    pub idle: bool,
    /// With --idle: seconds between fetches without IMAP IDLE (default: poll_secs, else 300)
    #[arg(long, value_name = "SECS", requires = "idle")]
    pub poll: Option<u64>,
    /// Password command for a URL (sh -c; first output line)
    #[arg(long, value_name = "CMD")]
    pub password_command: Option<String>,
    /// Trust only the CA certificates in FILE
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Trust the server holding the key with this SHA-256 (hex or base64)
    #[arg(long, value_name = "SHA256")]
    pub fingerprint: Option<String>,
    /// Allow the password to go out without TLS
    #[arg(long)]
    pub allow_plaintext: bool,
    /// Directory of the state files
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Seconds for the connect and each read (default 60)
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Errors only (for cron)
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// One summary line per account, and what the sessions do
    #[arg(short, long)]
    pub verbose: bool,
    /// A server URL for a one-off fetch: pop3s://user@host/, imaps://user@host/INBOX
    #[arg(value_name = "URL")]
    pub url: Option<String>,
}

impl super::Tool for Args {
    const NAME: &'static str = "mfetch";
    fn run(self) -> Result<u8> {
        crate::log::set_program(Self::NAME);
        let config = Config::load(self.config.as_deref())?;
        let section: MfetchConfig = config.section("mfetch")?;
        let usage = |m: String| exit::fail(exit::USAGE, m);
        let fingerprint = match &self.fingerprint {
            Some(f) => Some(
                f.parse()
                    .map_err(|e| usage(format!("--fingerprint: {e}")))?,
            ),
            None => None,
        };
        let since = match &self.since {
            Some(d) => Some(account::imap_date(d).map_err(|e| usage(format!("--since: {e}")))?),
            None => None,
        };
        let o = Overrides {
            delete: if self.delete {
                Some(true)
            } else if self.keep {
                Some(false)
            } else {
                None
            },
            mda: self.mda.clone(),
            maildir: self.maildir.clone(),
            folders: self.folders.clone(),
            since,
            limit: self.limit,
            password_command: self.password_command.clone(),
            ca_file: self.ca_file.clone(),
            fingerprint,
            allow_plaintext: self.allow_plaintext,
            state_dir: self.state_dir.clone(),
            timeout: self.timeout,
            recipient: self.recipient.clone(),
        };
        let mut jobs = Vec::new();
        if let Some(url) = &self.url {
            if !self.accounts.is_empty() || self.all {
                return Err(usage("a URL and -a/--all exclude each other".into()));
            }
            jobs.push(account::resolve(
                url,
                &Account::default(),
                Some(url),
                &section,
                &config.state_dir,
                &o,
            )?);
        } else {
            let names: Vec<String> = if self.accounts.is_empty() {
                section.accounts.keys().cloned().collect()
            } else {
                self.accounts.clone()
            };
            if names.is_empty() {
                return Err(exit::fail(
                    exit::CONFIG,
                    "no accounts: give a URL, or add [mfetch.accounts.NAME] to the configuration",
                ));
            }
            for name in names {
                let a = section.accounts.get(&name).ok_or_else(|| {
                    exit::fail(
                        exit::CONFIG,
                        format!("no account {name:?} in [mfetch.accounts]"),
                    )
                })?;
                jobs.push(account::resolve(
                    &name,
                    a,
                    None,
                    &section,
                    &config.state_dir,
                    &o,
                )?);
            }
        }
        let verbosity = if self.quiet {
            Verbosity::Quiet
        } else if self.verbose {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        };
        if self.idle {
            let poll = self.poll.or(section.poll_secs).unwrap_or(300).max(1);
            return fetch::run_idle(jobs, std::time::Duration::from_secs(poll), verbosity);
        }
        fetch::run(jobs, section.concurrency.unwrap_or(4), verbosity)
    }
}
