//! `mrelayd`: SMTP server and MTA: accepts mail (smtp, submission, submissions listeners),
//! queues it durably ([`crate::queue`]) and delivers it locally or remotely ([`crate::relay`]).
//!
//! This file is the command line only. The daemon is [`crate::relay::daemon`] (with the queue
//! runner in [`crate::relay::runner`]), the queue commands and `explain` are
//! [`crate::relay::admin`], `quickstart` is [`crate::relay::quickstart`] and `dkim keygen`
//! is [`crate::relay::sender_auth::keygen`].

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Result;

use crate::config::Config;
use crate::exit;
use crate::log;
use crate::relay::{admin, daemon, quickstart, RelayConfig};

const AFTER_HELP: &str = "\
EXIT STATUS:
  0   serve/quickstart: stopped by SIGTERM/SIGINT; inetd: session ended; queue/flush: done
  64  usage error
  67  queue show/remove/hold/release: no such queue entry
  71  cannot bind, cannot drop privileges
  73  dkim keygen: the key file exists already or cannot be written
  75  temporary failure (address in use: quickstart checks its ports before the banner; I/O error)
  78  configuration error, also a setup that cannot work, found at start: a submission or
      submissions listener without [tls] cert (AUTH is only offered over TLS), relayhost_user
      with relayhost_tls = \"none\" or without relayhost_password_command (every message
      would be deferred 4.7.0); doubtful ones (relayhost_tls = \"may\" with relayhost_user,
      credentials without a relayhost) get one warning line at start; a content filter without
      a command, whose program is not found (a bare name is looked up in the filter's PATH,
      /usr/local/bin:/usr/bin:/bin), with timeout_secs = 0, or two filters for one listener
      role; a DKIM key in
      [mrelayd.dkim] that cannot be read, is no RSA or Ed25519 key, is an RSA key under 2048
      bits (or over 8192), or is readable by group or others; an [mrelayd.srs] secret file
      that cannot be read, is empty or is readable by group or others; an [mrelayd.remote]
      resolver that is no IP[:PORT], a relayhost that does not parse, a ca_file or
      mta_sts_ca_file without a PEM certificate; a dnsbl zone that is no domain name

FILES:
  /etc/mailkit/mailkit.toml   configuration: [mrelayd], [mrelayd.remote] and the shared
                              [users], [tls], [auth], [run_as]; every key under
                              CONFIGURATION below
  <state_dir>/queue/          the queue: tmp/, msg/, hold/, state/ (see the queue module docs)
  <state_dir>/dkim/           where dkim keygen writes DOMAIN.SELECTOR.pem (0600) when neither
                              -o nor the config names the key file
  aliases file                name: target, target2, |command, /path/to/Maildir/ (re-read
                              when it changes; a broken edit is logged, the last good one kept);
                              postmaster (RFC 5321 4.5.1) must resolve at every local domain,
                              e.g. postmaster: root; DSNs name postmaster@ the first local domain
  sieve = template             each user's Sieve script in local delivery (as mdeliver runs
                              it, see mdeliver(1)); its redirects and vacation replies go into
                              this queue (fsynced first; a system user's delivery child asks
                              the daemon to queue them), never through msend

SIGNALS:
  SIGTERM and SIGINT stop serve (and quickstart): the listeners close at once; a session
  waiting for a command gets 421 4.3.2 <hostname> Service shutting down and is closed; a
  session whose DATA or BDAT content is arriving gets up to 5 s to finish the message (it is
  then queued and answered 250, or refused, before the 421); a message not finished by then is
  dropped, never queued, and the client gets the 421 (it keeps the message and retries, RFC
  5321 §3.8). Sessions still open after 10 s are cut off. Deliveries in progress finish; the
  queue stays for the next start.

ADDRESSES:
  A recipient is checked at RCPT in one canonical form, which is what the queue stores,
  delivery resolves and explain shows: needless quotes and escapes are dropped
  (\"demo\"@x and \"de\\mo\"@x are demo@x; quotes that are needed stay, one way), the domain
  is lower-cased and loses a trailing dot, a source route <@a,@b:user@d> is dropped. The local
  part keeps its case; local users and aliases match it without case. Unknown local users,
  aliases naming unknown users and address literals (user@[192.0.2.1]) are refused at RCPT
  (550), so no bounce ever goes out for a recipient that could have been refused.
  Bare names (MAIL FROM:<root>, RCPT TO:<root>, no domain) from a local client, that is a
  client in trusted_networks or one that authenticated, get the first local domain ([users]
  domains, else hostname), as Postfix's local_header_rewrite_clients: in the envelope and in
  the address fields of the message (From, Sender, Reply-To, To, Cc, Bcc, Resent-From,
  Resent-Sender, Resent-Reply-To, Resent-To, Resent-Cc, Resent-Bcc, Errors-To,
  Return-Receipt-To, Apparently-To: the same list as msend's; only the bare addresses change,
  everything else is stored byte for byte). Any other client gets 501 5.1.7 for them. A bare <Postmaster>
  recipient is accepted from everyone (RFC 5321 §4.1.1.3) as postmaster@ the first domain.

MESSAGE CONTENT:
  Only CRLF . CRLF ends DATA (RFC 5321 §4.1.1.4): a \".\" line next to a bare LF (LF . LF,
  LF . CRLF, CRLF . LF) is a line of the message, kept as \".\", so nothing can be smuggled in
  after it. Lines of DATA and BDAT content end in CRLF (RFC 5321 §2.3.8); one that ends in a
  bare LF, as every line of a unix text file does, is stored as if it ended in CRLF
  (bare_newline = \"normalize\", the default, as Postfix 3.9's smtpd_forbid_bare_newline), or
  with bare_newline = \"reject\" the message is refused as a whole with 554 5.6.0. A bare CR is
  always refused with 554 5.6.0. msend, mutt, s-nail, git send-email and swaks send CRLF;
  curl uploads a file as it is, and a unix text file is taken as it is:
    curl --ssl-reqd --cacert DEMO/ca.pem --user demo@localhost:PASSWORD \\
         --mail-from demo@localhost --mail-rcpt demo@localhost -T message.txt \\
         smtp://localhost:2587          (the quickstart's submission port, DEMO its directory)
  (curl dot-stuffs only lines after a CRLF: give it --crlf when a line of the file starts
  with \".\", or that period is taken for stuffing and removed, RFC 5321 §4.5.2.)

CONTENT FILTER:
  [mrelayd.filter.NAME], the unix way (as qmail-qfilter and Postfix's before-queue filters):
  a command (an argv, no shell) runs for each message of its listener roles (roles, default
  smtp; the role of the listener or of inetd) when the content has ended and is on disk,
  before the reply, as the [run_as] user: it reads our Received: header and the message on
  stdin (the queue's file itself, never a copy in memory), in a clean environment:
  PATH=/usr/local/bin:/usr/bin:/bin, HOME=/, SENDER, RECIPIENTS (one per line), RECIPIENT
  (with exactly one recipient), CLIENT_ADDRESS, HELO, AUTH_USER, QUEUE_ID. One decision
  per message, whatever the recipients, by its exit code:
    0    accepted: queued (fsynced) and 250
    1    550 5.7.1 and the filter's first stderr line (printable ASCII, at most 200 chars)
    75   451 4.7.1 (its first stderr line, if any)
    else 451 4.7.1: any other exit, a signal, timeout_secs passed (60; its whole process
         group is killed), a filter that cannot start
  Refused or tempfailed, nothing is queued: the client keeps the message and retries. With
  headers = true its stdout must be header lines ending with an empty line (each a valid
  field, folded lines allowed, at most 16 KiB, nothing after the empty line; else 451
  4.7.1); they are stored after our Received: header. Without, stdout is ignored.
  SpamAssassin from Debian (offline, local tests only, nothing written to $HOME):
    [mrelayd.filter.spam]
    command = [\"spamassassin\", \"-L\", \"-x\", \"-e\", \"1\", \"--cf=use_bayes 0\"]
  Replies keep their order under PIPELINING and CHUNKING: the session reads no further
  command until the filter has decided.

PIPE COMMANDS:
  An alias |command runs under /bin/sh -c with the message on stdin and a clean environment
  (nothing of the daemon's): PATH=/usr/local/bin:/usr/bin:/bin, HOME=/, SENDER, RECIPIENT,
  LOCAL (the recipient's local part), USER (the alias name without the extension), EXTENSION
  (and EXT: what follows recipient_delimiter, default +) and DOMAIN, and the RAW_ forms
  below; the shell itself adds PWD. As Postfix's local(8) does
  (its default command_expansion_filter), every byte of these outside A-Z a-z 0-9 and
  !@%-_=+:,./ is replaced with _, so envelope text never reaches the shell as code.
  RAW_SENDER, RAW_RECIPIENT, RAW_LOCAL, RAW_USER, RAW_EXTENSION and RAW_DOMAIN hold the exact
  values; quote them (\"$RAW_SENDER\").

LOGIN NAMES (SMTP AUTH here, POP3 in mpopd: one check):
  A login name is looked up as Dovecot's %Lu does: the exact passwd-file name, else the name
  without case, else, for user@DOMAIN of a served domain ([users] domains, else hostname), the
  plain user. So demo, DEMO and demo@localhost are the one user demo; the entry found decides
  the Maildir, the addresses it may send as, and the throttle counter. A checkpassword program
  is asked about the passwd-file's name when there is one, else the name as given.

LOGIN THROTTLE ([auth], shared with mpopd):
  Per client address (IPv6: per /64): failure_delay_ms (2000) doubling up to max_delay_ms
  (15000), lockout after max_failures (10) for lockout_secs (300); a success forgives only the
  address's failures against that same user. Per user across addresses (case-folded,
  user@DOMAIN of a served domain counts as user, unknown users alike): every answer for the
  user waits user_failure_delay_ms (100) doubling per failure up to user_max_delay_ms (15000),
  never a lockout; the user's own success clears it. Bounded by max_tracked_ips and
  max_tracked_users (10000 each; oldest dropped).

QUEUE JSON:
  queue list --json prints one document, {\"messages\": [...], \"unreadable\": [...]};
  queue show ID --json prints one message. These field names are stable (new ones may be
  added). Times are Unix seconds (*_time) and RFC 5322 dates (*_date). Each message:
    id, state (active or held), size (octets, envelope included), arrival_time,
    arrival_date, sender (\"\" for <>), client, helo, auth_user, envid, ret (full, hdrs or
    null), smtputf8 (bool), attempts (delivery runs so far), next_attempt_time and
    next_attempt_date (null before the first run), last_error (the last temporary error or
    null), recipients
  Each recipient: address, status (pending, delivered or failed), last_error (pending: its
  last temporary error; failed: why; else null), next_attempt_time and next_attempt_date
  (pending only, else null), notify (DSN NOTIFY= such as SUCCESS,FAILURE, or null), orcpt
  (type;address or null). Each unreadable entry (also logged on stderr): id, path, error.

MAIL LOOPS:
  A next hop (relayhost or MX address) that is one of our own listeners (a wildcard listener
  such as 0.0.0.0:25 counts for every local address, at its port), or that greets (220 or EHLO)
  with our hostname or helo_name, is not sent to: the mail bounces with 5.4.6 \"mail for DOMAIN
  loops back to myself\" (RFC 5321 §5.1). When more preferred MX hosts were tried first, the
  mail is deferred instead (we are a backup MX). Another server on our IP at another port is
  a different host.

ENVIRONMENT:
  MAILKIT_CONFIG   configuration file when -c is not given
  TCPREMOTEIP, TCPREMOTEPORT   client address in inetd mode
  LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES   systemd socket activation (smtp, submission,
                                           submissions)";

/// Command line of `mrelayd`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "mrelayd",
    version,
    about = "SMTP server and MTA: accepts, queues durably, delivers locally or relays by MX",
    long_about = "SMTP server and MTA (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8, \
ENHANCEDSTATUSCODES, STARTTLS, AUTH PLAIN LOGIN, CHUNKING, DSN). Listener roles: smtp (mail for \
local domains, relaying for trusted networks and authenticated users), submission (AUTH after \
STARTTLS required) and submissions (implicit TLS). Every accepted message is fsynced into the \
queue before the 250 reply and delivered to Maildirs or commands through the users passwd-file \
and an aliases file. Other domains are relayed to their MX hosts (or a relayhost) with \
opportunistic or required STARTTLS, cached connections and concurrency limits; temporary failures \
are retried with exponential back-off (5 minutes doubling to 1 hour, for 5 days by default), \
permanent ones and expired messages bounce to the sender as RFC 3464 DSNs honouring NOTIFY, RET \
and ENVID, and a delay warning goes out after 4 hours. A content filter command per listener role ([mrelayd.filter.NAME], e.g. SpamAssassin) can accept, reject (550 5.7.1) or tempfail (451 4.7.1) each message before the reply, and add header lines. \
DKIM (RFC 6376): mail from authenticated \
users and trusted networks whose From: domain has keys in [mrelayd.dkim.\"DOMAIN\"] is signed \
once, when it is queued (relaxed/relaxed, RSA-SHA256 and Ed25519-SHA256, both when both keys \
exist; `mrelayd dkim keygen` makes keys and prints the DNS record); every DKIM-Signature of mail \
from other clients on the smtp listener is verified and the result added in an Authentication-Results: field \
(RFC 8601) at the top, after removing any that claim our authserv-id; a DNS failure is \
dkim=temperror, never a rejection. The ARC chain (RFC 8617) of the same mail is verified \
too (arc=pass, fail or none with smtp.remote-ip; arc_verify). DNSBL zones (dnsbl, RFC 5782) \
refuse a listed smtp client at RCPT with 554 5.7.1 Service unavailable; Client host [IP] \
blocked using ZONE; a DNS failure never refuses, trusted networks and authenticated clients \
are not looked up. SPF (RFC 7208, HELO and MAIL FROM) and DMARC (RFC 7489, \
relaxed or strict alignment of SPF and DKIM with From:) results join that field \
([mrelayd.spf_dmarc]); a failed p=reject policy is refused with 550 5.7.1 at the end of DATA \
(dmarc_reject = \"mark\" accepts and marks it), p=quarantine is marked, an SPF fail is marked \
or refused (spf_fail = \"reject\": 550 5.7.23), and a DNS temporary failure is marked \
temperror or tempfailed (451), never a 5xx. \
MTA-STS (RFC 8461, [mrelayd.remote] mta_sts = true): a recipient domain's policy from \
https://mta-sts.DOMAIN/.well-known/mta-sts.txt, cached in <state_dir>/mta-sts/ until its max_age \
(and used when a later fetch fails), restricts MX delivery in enforce mode to the MX hosts it names, \
over STARTTLS with a certificate valid for the MX name, else the mail is deferred (4.7.5) and the \
queue and DSNs say which policy; testing mode delivers anyway and logs what enforce would refuse. \
SRS ([mrelayd.srs], the format of libsrs2 and postsrsd, which shares the secret file): mail that \
an alias or a Sieve redirect forwards to a remote domain goes out from an SRS0 address at our \
domain, so it passes SPF at the next hop; bounces to such an address are relayed back to the \
original sender, and a forged or expired one is refused with 550 5.1.1 at RCPT. \
Bounces (From: MAILER-DAEMON@hostname, with the hostname's \
keys) and Sieve vacation replies and redirects (by their From: domain; a redirect of mail from \
outside never) are signed as they are queued. Rate limits ([mrelayd.rate_limit], off by default) cap the \
messages and recipients per hour of each authenticated user and each client address (IPv6 by \
/64) on the submission listeners: over a limit MAIL or RCPT gets 450 4.7.1, the counters are \
shared by all sessions and survive a clean restart. \
DANE (RFC 7672, [mrelayd.remote] dane, on by default): when a validating resolver (AD bit) says \
an MX host's MX, address and TLSA answers are DNSSEC-secure and a DANE-TA or DANE-EE record is \
usable, TLS is required (ahead of any MTA-STS policy, RFC 8461 §2) and the certificate must match a record, else the mail is deferred \
(4.7.5) with the reason; the log says relay=HOST[IP]:PORT (DANE).",
    after_help = AFTER_HELP,
    after_long_help = super::with_config(AFTER_HELP, "mrelayd")
)]
pub struct Args {
    /// Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml).
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// mrelayd's subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Cmd {
    /// Listen on the configured addresses, deliver the queue, until SIGTERM/SIGINT.
    Serve,
    /// Serve one SMTP session on stdin/stdout (inetd, tcpserver, systemd Accept=yes), then
    /// deliver what it accepted.
    Inetd {
        /// Listener role: smtp, submission or submissions (implicit TLS).
        #[arg(long, default_value = "smtp")]
        role: String,
    },
    /// List the queue like mailq, or act on one entry.
    Queue {
        /// What to do (default: list).
        #[command(subcommand)]
        action: Option<QueueCmd>,
    },
    /// Make the running daemon retry every queued message now (or deliver them here when no
    /// daemon runs).
    Flush,
    /// Create a demo setup in DIR (default ./mailkit-demo) and run it on loopback.
    Quickstart {
        /// Directory for the demo (reused when it exists).
        dir: Option<PathBuf>,
        /// Only create the files, do not run.
        #[arg(long)]
        no_run: bool,
        /// Started as root: run the demo as this user (default nobody) after preparing its
        /// directory for it.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Internal: the privileged spawner a daemon with system users starts (README "Privileges").
    #[command(name = "__spawner", hide = true)]
    Spawner,
    /// Internal: a child the spawner runs as a system user (`deliver USER MAILDIR SENDER RCPT`).
    #[command(name = "__child", hide = true)]
    Child(super::ChildArgs),
    /// DKIM keys: `mrelayd dkim keygen DOMAIN SELECTOR`.
    Dkim {
        /// What to do.
        #[command(subcommand)]
        action: DkimCmd,
    },
    /// Print what the running config would answer to a client, stage by stage, and why.
    Explain {
        /// The client's IP address.
        #[arg(long, value_name = "IP")]
        client: IpAddr,
        /// The EHLO name.
        #[arg(long, value_name = "NAME")]
        helo: Option<String>,
        /// Assume the client authenticated as this user.
        #[arg(long, value_name = "USER")]
        auth: Option<String>,
        /// Listener role.
        #[arg(long, default_value = "smtp")]
        role: String,
        /// Envelope sender (empty for <>).
        #[arg(long, value_name = "ADDR")]
        from: String,
        /// Recipients.
        #[arg(required = true, value_name = "RCPT")]
        rcpts: Vec<String>,
    },
}

/// `mrelayd dkim` actions.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum DkimCmd {
    /// Write a new DKIM private key (0600) and print the DNS TXT record to publish.
    Keygen {
        /// The signing domain (d=).
        domain: String,
        /// The selector (s=): the key's DNS name is SELECTOR._domainkey.DOMAIN.
        selector: String,
        /// Key algorithm: rsa (rsa-sha256) or ed25519 (ed25519-sha256, RFC 8463).
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: crate::dkim::Algorithm,
        /// RSA key size in bits (2048 to 4096).
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Key file to write (default: the config's path for DOMAIN and SELECTOR, else
        /// STATE_DIR/dkim/DOMAIN.SELECTOR.pem); an existing file is never replaced.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// `mrelayd queue` actions.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum QueueCmd {
    /// List every message (id, size, age, sender, recipients, last error).
    List {
        /// Print one JSON document (field names under QUEUE JSON in the manual).
        #[arg(long)]
        json: bool,
    },
    /// Show one entry in full.
    Show {
        /// Queue id.
        id: String,
        /// Print the entry as one JSON document (field names under QUEUE JSON).
        #[arg(long)]
        json: bool,
    },
    /// Delete one entry.
    Remove {
        /// Queue id.
        id: String,
    },
    /// Set one entry aside (not delivered until released).
    Hold {
        /// Queue id.
        id: String,
    },
    /// Release a held entry (delivered at the next run).
    Release {
        /// Queue id.
        id: String,
    },
}

/// Prints `line` on stdout; a closed or broken stdout (the reader went away) is not an error:
/// `println!` would panic there.
fn tell(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}

impl super::Tool for Args {
    const NAME: &'static str = "mrelayd";
    fn run(self) -> Result<u8> {
        log::set_program(Self::NAME);
        if let Cmd::Quickstart { dir, no_run, user } = self.command {
            let demo = quickstart::prepare(dir, user)?;
            if !no_run {
                demo.check_ports()?;
            }
            // The banner only informs: a reader that went away (`--no-run | head -1`) stops
            // neither the files written nor the demo.
            tell(&demo.banner());
            if no_run {
                return Ok(exit::OK);
            }
            tell("Press Ctrl-C to stop.");
            return demo.run().map(|()| exit::OK);
        }
        let config = Config::load(self.config.as_deref())?;
        let relay: RelayConfig = config.section("mrelayd")?;
        // Locked only for reports: `inetd` speaks SMTP on stdout itself.
        let out = || std::io::stdout().lock();
        match self.command {
            Cmd::Serve => daemon::serve(&config, &relay)?,
            Cmd::Inetd { role } => daemon::inetd(&config, &relay, &role)?,
            Cmd::Queue { action } => {
                // hold/release/remove write the queue: as the daemon's user, never as root.
                admin::become_run_as(&config)?;
                let queue = admin::open_queue(&config, &relay)?;
                match action.unwrap_or(QueueCmd::List { json: false }) {
                    QueueCmd::List { json } => admin::list(&queue, json, &mut out())?,
                    QueueCmd::Show { id, json } => admin::show(&queue, &id, json, &mut out())?,
                    QueueCmd::Remove { id } => admin::remove(&queue, &id)?,
                    QueueCmd::Hold { id } => admin::hold(&queue, &id)?,
                    QueueCmd::Release { id } => admin::release(&queue, &id)?,
                }
            }
            Cmd::Dkim {
                action:
                    DkimCmd::Keygen {
                        domain,
                        selector,
                        algorithm,
                        bits,
                        output,
                    },
            } => {
                let k = crate::relay::sender_auth::Keygen {
                    domain,
                    selector,
                    algorithm,
                    bits,
                    output,
                };
                crate::relay::sender_auth::keygen(&config, &relay, &k, &mut out())?;
            }
            Cmd::Flush => {
                let flushed = admin::flush(&config, &relay)?;
                tell(&format!("{}: {flushed}", Self::NAME));
            }
            Cmd::Explain {
                client,
                helo,
                auth,
                role,
                from,
                rcpts,
            } => {
                let query = admin::Query {
                    client,
                    helo,
                    auth,
                    role,
                    from,
                    rcpts,
                };
                admin::explain(&config, &relay, &query, &mut out())?;
            }
            Cmd::Spawner => {
                crate::server::spawn::run_passwd_spawner(
                    &config,
                    crate::relay::local::DELIVER_CHILD,
                    Some(relay.sieve.clone().unwrap_or_default()),
                )?;
            }
            Cmd::Child(super::ChildArgs { kind, args }) => {
                if kind != crate::relay::local::DELIVER_CHILD {
                    return Err(exit::fail(exit::USAGE, format!("unknown child {kind:?}")));
                }
                let links = crate::maildir::Links::allowing(relay.allow_symlinked_maildir);
                return Ok(crate::relay::local::child_deliver(
                    &args,
                    relay.max_message_size,
                    links,
                ));
            }
            Cmd::Quickstart { .. } => return Ok(exit::SOFTWARE),
        }
        Ok(exit::OK)
    }
}
