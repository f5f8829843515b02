//! `msend`: sendmail-compatible submission client: a message on stdin, SMTP out.
//!
//! sendmail's single-dash multi-letter flags need no argv rewriting: `-oi`, `-oem`, `-odi` are
//! the short option `-o` with an attached value, `-bs`/`-bm`/`-bp` the short option `-b`.
//! What msend does with them lives in [`crate::msend`]: [`Args`] becomes its plain option
//! structs ([`Flags`], [`Submission`]) and [`run`] picks the mode. The name msend is called
//! by picks one too, as for Postfix's sendmail: `mailq` is `-bp`, `newaliases` is `-bi`.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::exit;
use crate::msend::account::{self, Flags};
use crate::msend::submit::{ComposeFlags, Submission};
use crate::msend::{bs, flush, submit};
use crate::smtp::client::Stage;
use crate::tls;

const AFTER_HELP: &str = "\
EXIT STATUS
  0   all recipients accepted (or the message was spooled with --queue)
  64  bad usage            65  bad message (no recipients with -t, unparsable headers)
  67  a recipient rejected permanently (5xx at RCPT)
  69  other permanent failure: 5xx elsewhere, null MX, NXDOMAIN, and the trust and setup
      problems that retrying cannot fix: certificate not trusted or key pin mismatch, TLS
      required (the default) but the server offers no STARTTLS, no AUTH mechanism msend speaks
  75  temporary failure (4xx, refused or timed-out connection, DNS trouble): retry later
  77  authentication failed              78  bad configuration
Each failure prints one line naming the recipient, the server and its reply.
With --queue only temporary failures (75) are spooled. A 69 is not: msend prints its one
line and exits 69 at once (an untrusted certificate or a missing STARTTLS stays so until
someone acts), whereas mrelayd, an MTA, defers the same failures (4.7.x) and retries them.
--quit-after STAGE exits 0 only when the session got there and QUIT was sent, and a server's
refusal on the way exits as for a send (a recipient refused at RCPT: 67; MAIL refused, no
STARTTLS: 69); a stage that cannot happen is bad usage (64: --quit-after tls with --no-tls,
--quit-after auth without a user or with --direct), and one the server skips fails (69:
--quit-after tls when the MX offers no STARTTLS). Nothing is spooled.
--flush (and -q) exits by the same rule over all spooled messages together, the first that
applies: 77 authentication failed (those messages stay queued), 75 a message stays queued (or
another flush holds the spool), 67 a recipient rejected, 69 another permanent failure, 0 all
delivered. Permanently failed messages are moved to DIR/failed. 64 without a spool (--queue DIR
or queue =); 65 when the only problem is an unreadable spool file (left in place).
-bs answers each message with its own reply (a 5xx when a recipient failed permanently, even
when the others were spooled) and exits with the code of the first message that failed. A
client on stdin that sends nothing for 300 s while a command is due, or 600 s while message
content is arriving (RFC 5321 §4.5.3.2; --timeout SECS sets both), gets 421 4.4.2 and msend
exits 75 (unless a message failed before); the message in progress was never acknowledged.

SPOOL
  --queue DIR (queue = in the configuration) keeps a message whose delivery failed temporarily
  in DIR, durably, and exits 0. Each spooled message remembers where it was to go: its account
  and the server flags given then (--server, --tls/--starttls/--no-tls, --ca-file,
  --tls-fingerprint, --user, --password-command, --direct, --resolver, --smtp-port). --flush
  (-q) sends each message there, not to whatever the default is at flush time; --server,
  --direct or -a given to --flush send every message there instead. A message that meets a
  permanent failure at --flush time (a 5xx, an untrusted certificate, no STARTTLS) moves to
  DIR/failed. --list (-bp, mailq) shows the spool.

TLS KEY PIN
  --tls-fingerprint SHA256 (tls_fingerprint = in an account) trusts exactly the server holding
  that public key: the CA, host name and expiry checks are replaced by the pin, so a self-signed
  certificate works. SHA256 is the SHA-256 of the certificate's SubjectPublicKeyInfo (the key,
  RFC 7469 §2.4), which stays the same when a certificate is renewed with the same key. It is
  not msmtp's tls_fingerprint, which hashes the whole certificate: a msmtp fingerprint never
  matches. Written as 64 hex digits (colons between bytes allowed) or base64. To get it:
    mdig-mx --probe --port 587 DOMAIN      the `certificate key SHA-256` line of each MX
  or, for any server:
    openssl s_client -connect HOST:587 -starttls smtp </dev/null 2>/dev/null |
      openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | sha256sum
  (drop -starttls smtp for port 465). A server whose key does not match fails with exit 69 and
  is not spooled with --queue.

FILES
  ~/.config/mailkit/msend.toml    the user's accounts ($XDG_CONFIG_HOME/mailkit/msend.toml);
                                  used when it exists and no -C is given
  /etc/mailkit/mailkit.toml       system config ($MAILKIT_CONFIG): its [msend] section is used
                                  when there is no msend.toml, and its hostname always
  aliases = FILE                  msmtp's aliases for bare recipients (BARE NAMES)
  ~/.netrc                        password for --user when no other source is given

CONFIGURATION FILE FORMATS
  The same keys (listed under CONFIGURATION) in two layouts. In ~/.config/mailkit/msend.toml
  they are at the top level:
    default = \"work\"
    queue = \"/home/me/.msend-queue\"
    [accounts.work]
    server = \"smtp.example.org\"
    user = \"me\"
    password_command = \"pass show mail/work\"
    from = \"me@example.org\"
  In a mailkit config (/etc/mailkit/mailkit.toml) they are inside [msend]:
    hostname = \"host.example.org\"
    [msend]
    default = \"work\"
    [msend.accounts.work]
    server = \"smtp.example.org\"
    tls = \"tls\"
  -C FILE reads either layout: a file with default, queue, accounts, domain or aliases at its
  top level is a msend.toml, any other a mailkit config. An unknown key is an error naming
  the file, the line and the key (exit 78).

ENVIRONMENT
  MSEND_PASSWORD     password for AUTH when no --password-command is given
  MAILKIT_CONFIG     system config file
  XDG_CONFIG_HOME    base of ~/.config

COMPATIBILITY
  Installed under sendmail's names (symlinks to msend), it behaves as Postfix's sendmail does:
    ln -s $(command -v msend) /usr/sbin/sendmail    sendmail, as cron, mail(1), mutt call it
    ln -s $(command -v msend) /usr/bin/mailq        mailq = msend -bp (lists the spool)
    ln -s $(command -v msend) /usr/bin/newaliases   newaliases = msend -bi: exits 0 with a
                                                    note, mrelayd reads its aliases file live
  -oi, -oem, -odi, -odb, -oee, -om, -bm, -B TYPE, -N DSN and -O OPTION are accepted and ignored
  (except -oi = -i). -bs runs an SMTP session on stdin/stdout; -bp is --list; -bi does nothing
  (there is no aliases database to rebuild).
  -q is --flush: it retries the spool once and exits. An attached interval (-q30m, -q1h) and
  -qf are accepted and ignored: msend runs no queue daemon, so schedule -q with cron. Selecting
  messages (-qI, -qR, -qS) is not supported (exit 64).
  With -t, recipients given as arguments are added to those found in the headers.
  mutt splits its sendmail command at blanks and passes no quotes, so a --password-command
  with arguments cannot be given there: name an account of msend.toml instead, e.g. in muttrc
    set sendmail=\"/usr/sbin/sendmail -C /home/me/.config/mailkit/msend.toml -a work\"

BARE NAMES
  A name without a domain (cron's MAILTO=root, git send-email --to=user, -f root) gets the
  mail domain, as sendmail and Postfix qualify local submissions: domain = in [msend] (or in
  an account; msmtp's maildomain), else the configuration's hostname. That is done for the
  envelope sender (-f, an account's from, the From: address, the default LOGIN@DOMAIN), the
  envelope recipients (arguments, -t's To/Cc/Bcc or Resent-To/-Cc/-Bcc, --to/--cc/--bcc,
  -bs's MAIL and RCPT) and the bare addresses in the address fields of the message, the ones
  Postfix rewrites for local clients: From, Sender, Reply-To, To, Cc, Bcc, Resent-From,
  Resent-Sender, Resent-Reply-To, Resent-To, Resent-Cc, Resent-Bcc, Errors-To,
  Return-Receipt-To and Apparently-To (only the bare addresses change: everything else stays
  as written, byte for byte). Spooled messages keep the
  qualified envelope for --flush.
  With aliases = FILE ([msend] or an account), bare recipients are first replaced by the
  addresses FILE gives them, as msmtp's aliases do (the message is not changed by them):
    # comment
    root: admin@example.org, ops       (ops is looked up again, at most 16 deep)
    default: me@example.org            (for every bare name without an entry)
  Names match without case; a pipe or a path as a target, an unreadable file or a loop is
  exit 78. The file is read only when a bare recipient needs it.";

/// Command line of `msend`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "msend",
    version,
    about = "sendmail-compatible submission client: a message on stdin, SMTP out",
    long_about = "msend reads a message on stdin and submits it to an SMTP server (port 587 with \
STARTTLS by default, 465 with --tls, AUTH PLAIN/LOGIN, or XOAUTH2/OAUTHBEARER with an OAuth 2.0 \
token from the password command (an account's auth key), only over TLS), or delivers it directly to \
each recipient domain's MX hosts (--direct). It can be installed as /usr/sbin/sendmail: cron, \
mail/s-nail, mutt and git send-email work with it. With --queue DIR a temporary failure spools \
the message durably and --flush retries it later. Compose mode (--to/--subject/--attach) builds \
a MIME message from a plain text body.",
    after_help = AFTER_HELP,
    after_long_help = super::with_config(AFTER_HELP, "msend")
)]
pub struct Args {
    /// Read recipients from the To, Cc and Bcc headers (Resent-* when present).
    #[arg(short = 't')]
    pub extract: bool,

    /// A line with a lone dot does not end the input (also -oi).
    #[arg(short = 'i')]
    pub ignore_dots: bool,

    /// sendmail option (-oi means -i; -oem, -odi, -odb, -oee, -om ... are ignored).
    #[arg(short = 'o', value_name = "OPT", allow_hyphen_values = false)]
    pub sendmail_opts: Vec<String>,

    /// sendmail mode: -bm deliver a message (default), -bs SMTP session on stdin/stdout,
    /// -bp list the spool (as mailq), -bi do nothing (as newaliases).
    #[arg(short = 'b', value_name = "MODE")]
    pub mode: Option<String>,

    /// Body type (-B 8BITMIME); ignored: msend decides from the message.
    #[arg(short = 'B', value_name = "TYPE", hide = true)]
    pub body_type: Option<String>,

    /// DSN notify option; ignored.
    #[arg(short = 'N', value_name = "DSN", hide = true)]
    pub dsn_notify: Option<String>,

    /// sendmail -O option=value; ignored.
    #[arg(short = 'O', value_name = "OPTION", hide = true)]
    pub sendmail_long_opts: Vec<String>,

    /// Envelope sender address (also used for a missing From:); -f '<>' for the null sender.
    #[arg(short = 'f', short_alias = 'r', value_name = "ADDR")]
    pub sender: Option<String>,

    /// Full name for a missing From: header.
    #[arg(short = 'F', value_name = "NAME")]
    pub full_name: Option<String>,

    /// Print the SMTP dialogue on stderr (passwords redacted).
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Use this account from the configuration.
    #[arg(short = 'a', long = "account", value_name = "NAME")]
    pub account: Option<String>,

    /// Read accounts from FILE, a msend.toml or a mailkit config with an [msend] section (default:
    /// ~/.config/mailkit/msend.toml, else the [msend] section of the mailkit config).
    #[arg(short = 'C', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Submission server, HOST or HOST:PORT.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub server: Option<String>,

    /// Implicit TLS (port 465 by default).
    #[arg(long, conflicts_with_all = ["starttls", "no_tls"])]
    pub tls: bool,

    /// STARTTLS, required (the default; port 587).
    #[arg(long, conflicts_with = "no_tls")]
    pub starttls: bool,

    /// No TLS (AUTH is then refused).
    #[arg(long)]
    pub no_tls: bool,

    /// Trust only the CA certificates in FILE instead of the webpki roots.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Trust the server whose public key has this SHA-256 (64 hex digits, colons allowed, or
    /// base64), instead of checking its certificate against CAs and its name. It is the hash of
    /// the key (SPKI, RFC 7469), as mdig-mx prints it, not msmtp's hash of the whole
    /// certificate (see TLS KEY PIN).
    #[arg(long, value_name = "SHA256", conflicts_with_all = ["no_tls", "direct"])]
    pub tls_fingerprint: Option<tls::SpkiPin>,

    /// AUTH user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Command whose first line of output is the password (run with sh -c). It is killed,
    /// with its children, after the account's password_command_timeout (default 30 s): exit 78.
    #[arg(long, value_name = "CMD")]
    pub password_command: Option<String>,

    /// Deliver directly to each recipient domain's MX hosts instead of a server, as mrelayd
    /// does: STARTTLS when offered, and DANE (RFC 7672) where a validating resolver says the
    /// MX host's TLSA records are DNSSEC-secure (TLS then required, the certificate checked).
    /// MTA-STS policies (RFC 8461) are not applied: they need mrelayd's policy cache.
    #[arg(long, conflicts_with = "server")]
    pub direct: bool,

    /// DNS server for --direct, IP or IP:PORT.
    #[arg(long, value_name = "IP[:PORT]")]
    pub resolver: Option<String>,

    /// SMTP port for --direct (default 25).
    #[arg(long, value_name = "PORT")]
    pub smtp_port: Option<u16>,

    /// Spool directory: a temporary failure stores the message there and exits 0.
    #[arg(long, value_name = "DIR")]
    pub queue: Option<PathBuf>,

    /// Retry every spooled message, oldest first.
    #[arg(long)]
    pub flush: bool,

    /// List the spool.
    #[arg(long)]
    pub list: bool,

    /// sendmail -q: the same as --flush. An attached interval (-q30m) or -qf is ignored: one
    /// run, then exit (schedule it with cron).
    #[arg(short = 'q', value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "")]
    pub queue_run: Option<String>,

    /// Stop with QUIT after this stage: connect, banner, ehlo, tls, auth, mail, rcpt (nothing is
    /// delivered; a refusal on the way, or a stage the session never reaches, is not exit 0).
    #[arg(long, value_name = "STAGE", value_parser = ["connect", "banner", "ehlo", "tls", "auth", "mail", "rcpt"])]
    pub quit_after: Option<String>,

    /// Time limit in seconds for connecting and for each reply (default 60). With -bs also for
    /// each command and each read of message content from the client on stdin (default there
    /// 300 and 600, as RFC 5321 §4.5.3.2 and mrelayd): a silent client gets 421, exit 75.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,

    /// Name to send in EHLO (default: the host name).
    #[arg(long, value_name = "NAME")]
    pub ehlo: Option<String>,

    /// Compose mode: To: recipient (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub to: Vec<String>,

    /// Compose mode: Cc: recipient (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub cc: Vec<String>,

    /// Compose mode: blind recipient (repeatable; never in a header).
    #[arg(long, value_name = "ADDR")]
    pub bcc: Vec<String>,

    /// Compose mode: subject.
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,

    /// Compose mode: attach a file (type from its extension; repeatable).
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,

    /// Compose mode: HTML alternative from FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Compose mode: From: address (`addr` or `Name <addr>`).
    #[arg(long = "from", value_name = "ADDR")]
    pub compose_from: Option<String>,

    /// Print the message instead of sending it.
    #[arg(long)]
    pub dry_run: bool,

    /// Recipients.
    #[arg(value_name = "RECIPIENT")]
    pub recipients: Vec<String>,
}

impl super::Tool for Args {
    const NAME: &'static str = "msend";
    fn run(self) -> Result<u8> {
        run(self)
    }
}

impl Args {
    /// Where and how to send, for [`account::resolve`].
    fn flags(&self) -> Flags {
        let tls = if self.tls {
            Some(tls::Mode::Implicit)
        } else if self.no_tls {
            Some(tls::Mode::Off)
        } else if self.starttls {
            Some(tls::Mode::Starttls)
        } else {
            None
        };
        Flags {
            account: self.account.clone(),
            server: self.server.clone(),
            tls,
            ca_file: self.ca_file.clone(),
            tls_fingerprint: self.tls_fingerprint,
            user: self.user.clone(),
            password_command: self.password_command.clone(),
            direct: self.direct,
            resolver: self.resolver.clone(),
            smtp_port: self.smtp_port,
            queue: self.queue.clone(),
            quit_after: self.quit_after.as_deref().and_then(Stage::parse),
            timeout: self.timeout,
            ehlo: self.ehlo.clone(),
            verbose: self.verbose,
            dry_run: self.dry_run,
        }
    }

    /// The message and its recipients, for [`submit::run`].
    fn submission(&self) -> Submission {
        Submission {
            extract: self.extract,
            ignore_dots: self.ignore_dots || self.sendmail_opts.iter().any(|o| o == "i"),
            sender: self.sender.clone(),
            full_name: self.full_name.clone(),
            recipients: self.recipients.clone(),
            compose: ComposeFlags {
                to: self.to.clone(),
                cc: self.cc.clone(),
                bcc: self.bcc.clone(),
                subject: self.subject.clone(),
                attach: self.attach.clone(),
                html: self.html.clone(),
                from: self.compose_from.clone(),
            },
            dry_run: self.dry_run,
        }
    }
}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    exit::fail(exit::USAGE, msg)
}

/// The single-threaded runtime one msend run sends with (one per run, not per message).
fn runtime() -> Result<tokio::runtime::Runtime> {
    crate::runtime::build(crate::runtime::Threads::Current)
}

/// The mode a name stands for when msend is installed under it (as Postfix's sendmail):
/// `mailq` is `-bp`, `newaliases` is `-bi`; any other name (msend, sendmail) none.
fn mode_of_name(argv0: &std::ffi::OsStr) -> Option<&'static str> {
    let name = std::path::Path::new(argv0).file_name()?;
    match name.to_str()? {
        "mailq" => Some("p"),
        "newaliases" => Some("i"),
        _ => None,
    }
}

fn run(args: Args) -> Result<u8> {
    let by_name = std::env::args_os().next().and_then(|a| mode_of_name(&a));
    let mode = match (by_name, &args.mode) {
        (Some(m), _) => m.to_string(),
        (None, Some(m)) => m.clone(),
        (None, None) => "m".into(),
    };
    if !matches!(mode.as_str(), "m" | "s" | "p" | "i") {
        return Err(usage(format!(
            "-b{mode} is not supported (only -bm, -bs, -bp, -bi)"
        )));
    }
    if mode == "i" {
        // sendmail -bi / newaliases rebuilds an aliases database; mrelayd has none to build.
        eprintln!(
            "msend: newaliases: nothing to do: mrelayd reads its aliases file live (no database, no restart)"
        );
        return Ok(exit::OK);
    }
    let flags = args.flags();
    let (cfg, hostname) = account::load_config(args.config.as_deref())?;
    if args.list || mode == "p" {
        let dir = account::list_queue(&flags, &cfg)?;
        return flush::list(&dir, &mut std::io::stdout().lock());
    }
    let flushing = match &args.queue_run {
        Some(v) => {
            check_queue_run(v)?;
            true
        }
        None => args.flush,
    };
    if flushing && !args.recipients.is_empty() {
        // As Postfix's sendmail: "flush queue mode requires no recipient".
        return Err(usage(format!(
            "{} takes no recipients (got {})",
            if args.flush { "--flush" } else { "-q" },
            args.recipients.join(" ")
        )));
    }
    if flushing {
        return flush::flush(&flags, &cfg, hostname, &runtime()?);
    }
    let res = account::resolve(&flags, &cfg, hostname, None)?;
    let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
    if mode == "s" {
        // Unbuffered: -bs waits on the fd before each read, so no byte may sit in a buffer.
        let fd = stdin
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating stdin")?;
        let timeouts = args.timeout.map_or(bs::Timeouts::DEFAULT, |t| {
            bs::Timeouts::both(Duration::from_secs(t.max(1)))
        });
        return bs::serve(
            &res,
            &runtime()?,
            &mut std::fs::File::from(fd),
            &mut stdout.lock(),
            timeouts,
        );
    }
    submit::run(
        &args.submission(),
        &res,
        &runtime()?,
        &mut stdin.lock(),
        &mut stdout.lock(),
    )
}

/// Checks the value attached to sendmail's `-q`: nothing, `f` (foreground, which msend always
/// is) or an interval such as `30m`/`1h30m` (sendmail's daemon period, ignored: one run). Queue
/// selection (`-qI`, `-qR`, `-qS`) is refused rather than silently widened to the whole spool.
fn check_queue_run(value: &str) -> Result<()> {
    let interval = !value.is_empty()
        && value.starts_with(|c: char| c.is_ascii_digit())
        && value
            .split_inclusive(|c: char| "smhdw".contains(c))
            .all(|part| {
                let digits = part.trim_end_matches(|c: char| "smhdw".contains(c));
                !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && part.len() - digits.len() <= 1
            });
    if value.is_empty() || value == "f" || interval {
        return Ok(());
    }
    if value.contains('@') {
        // `-q user@host`: clap took the recipient as -q's value.
        return Err(usage(format!("-q takes no recipients (got {value})")));
    }
    Err(usage(format!(
        "-q{value} is not supported: use -q (or --flush) to retry the whole spool"
    )))
}
