//! `msend`: sendmail-compatible submission client: a message on stdin, SMTP out.
//!
//! sendmail's single-dash multi-letter flags need no argv rewriting: `-oi`, `-oem`, `-odi` are
//! the short option `-o` with an attached value, `-bs`/`-bm`/`-bp` the short option `-b`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::{self, Config};
use crate::exit;
use crate::msend::deliver::{self, Options, RcptReport, Report, Route, Status};
use crate::msend::message::{self, Prepare};
use crate::msend::{compose, spool, Account, MsendConfig, TlsSetting};
use crate::net::smtp::Timeouts;
use crate::smtp::client::{Credentials, Stage, TlsMode};
use crate::smtp::reply::Reply;

const AFTER_HELP: &str = "\
EXIT STATUS
  0   all recipients accepted (or the message was spooled with --queue)
  64  bad usage            65  bad message (no recipients with -t, unparsable headers)
  67  a recipient rejected permanently (5xx at RCPT)
  69  other permanent failure (5xx elsewhere, no STARTTLS, certificate not trusted, null MX,
      NXDOMAIN)
  75  temporary failure (4xx, refused or timed-out connection, DNS trouble): retry later
  77  authentication failed              78  bad configuration
Each failure prints one line naming the recipient, the server and its reply.
--flush (and -q) exits by the same rule over all spooled messages together, the first that
applies: 77 authentication failed (those messages stay queued), 75 a message stays queued (or
another flush holds the spool), 67 a recipient rejected, 69 another permanent failure, 0 all
delivered. Permanently failed messages are moved to DIR/failed. 64 without a spool (--queue DIR
or queue =); 65 when the only problem is an unreadable spool file (left in place).
-bs answers each message with its own reply (a 5xx when a recipient failed permanently, even
when the others were spooled) and exits with the code of the first message that failed.

FILES
  ~/.config/mailkit/msend.toml    accounts (the keys of the [msend] section, at top level)
  /etc/mailkit/mailkit.toml       system config; its [msend] section (or -C FILE, $MAILKIT_CONFIG)
  ~/.netrc                        password for --user when no other source is given

ENVIRONMENT
  MSEND_PASSWORD     password for AUTH when no --password-command is given
  MAILKIT_CONFIG     system config file
  XDG_CONFIG_HOME    base of ~/.config

COMPATIBILITY
  -oi, -oem, -odi, -odb, -oee, -om, -bm, -B TYPE, -N DSN and -O OPTION are accepted and ignored
  (except -oi = -i). -bs runs an SMTP session on stdin/stdout; -bp is --list.
  -q is --flush: it retries the spool once and exits. An attached interval (-q30m, -q1h) and
  -qf are accepted and ignored: msend runs no queue daemon, so schedule -q with cron. Selecting
  messages (-qI, -qR, -qS) is not supported (exit 64).
  With -t, recipients given as arguments are added to those found in the headers.";

/// Command line of `msend`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "msend",
    version,
    about = "sendmail-compatible submission client: a message on stdin, SMTP out",
    long_about = "msend reads a message on stdin and submits it to an SMTP server (port 587 with \
STARTTLS by default, 465 with --tls, AUTH PLAIN/LOGIN only over TLS), or delivers it directly to \
each recipient domain's MX hosts (--direct). It can be installed as /usr/sbin/sendmail: cron, \
mail/s-nail, mutt and git send-email work with it. With --queue DIR a temporary failure spools \
the message durably and --flush retries it later. Compose mode (--to/--subject/--attach) builds \
a MIME message from a plain text body.",
    after_help = AFTER_HELP
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
    /// -bp list the spool.
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

    /// Configuration file (default ~/.config/mailkit/msend.toml, then the mailkit config).
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

    /// AUTH user.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Command whose first line of output is the password (run with sh -c). It is killed,
    /// with its children, after the account's password_command_timeout (default 30 s): exit 78.
    #[arg(long, value_name = "CMD")]
    pub password_command: Option<String>,

    /// Deliver directly to each recipient domain's MX hosts instead of a server.
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

    /// Stop with QUIT after this stage: connect, banner, ehlo, tls, auth, mail, rcpt.
    #[arg(long, value_name = "STAGE", value_parser = ["connect", "banner", "ehlo", "tls", "auth", "mail", "rcpt"])]
    pub quit_after: Option<String>,

    /// Time limit in seconds for connecting and for each reply.
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

/// Everything resolved from flags, account and config.
struct Resolved {
    opts: Options,
    account_name: Option<String>,
    account: Account,
    queue: Option<PathBuf>,
    hostname: String,
}

fn load_config(args: &Args) -> Result<(MsendConfig, String)> {
    if let Some(p) = &args.config {
        let c = Config::load(Some(p))?;
        return Ok((c.section::<MsendConfig>("msend")?, c.hostname));
    }
    let sys = Config::load(None)?;
    if let Some(p) = crate::msend::user_config_path().filter(|p| p.exists()) {
        let c: MsendConfig = config::load_file(&p)?;
        return Ok((c, sys.hostname));
    }
    Ok((sys.section::<MsendConfig>("msend")?, sys.hostname))
}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    exit::fail(exit::USAGE, msg)
}

fn bad_config(msg: impl Into<String>) -> anyhow::Error {
    exit::fail(exit::CONFIG, msg)
}

/// Splits `HOST[:PORT]` (`[v6]:PORT` too).
fn split_host_port(s: &str) -> Result<(String, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| usage(format!("--server {s}: missing ]")))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(
                p.parse()
                    .map_err(|_| usage(format!("--server {s}: bad port")))?,
            ),
            None => None,
        };
        return Ok((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => {
            let port = p
                .parse()
                .map_err(|_| usage(format!("--server {s}: bad port {p:?}")))?;
            Ok((h.to_string(), Some(port)))
        }
        _ => Ok((s.to_string(), None)),
    }
}

/// Runs `sh -c cmd` and returns the first line of its output; killed after `timeout`.
fn password_from_command(cmd: &str, timeout: Duration) -> Result<String> {
    crate::relay::remote::password_from_command(cmd, timeout)
        .map_err(|e| bad_config(format!("password command: {e}")))
}

/// The password for `user` at `host` in `~/.netrc` (`machine`/`default` entries).
fn password_from_netrc(host: &str, user: &str) -> Option<String> {
    let home = std::env::var_os("HOME")?;
    let text = std::fs::read_to_string(Path::new(&home).join(".netrc")).ok()?;
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    let mut fallback = None;
    while i < tokens.len() {
        let (matches, default) = match tokens[i] {
            "machine" => {
                i += 1;
                (tokens.get(i) == Some(&host), false)
            }
            "default" => (true, true),
            _ => {
                i += 1;
                continue;
            }
        };
        i += 1;
        let (mut login, mut password) = (None, None);
        while i < tokens.len() && tokens[i] != "machine" && tokens[i] != "default" {
            match tokens[i] {
                "login" => login = tokens.get(i + 1).copied(),
                "password" => password = tokens.get(i + 1).copied(),
                _ => {}
            }
            i += 2;
        }
        if matches && login.is_none_or(|l| l == user) {
            if let Some(p) = password {
                if default {
                    fallback = Some(p.to_string());
                } else {
                    return Some(p.to_string());
                }
            }
        }
    }
    fallback
}

fn resolve(
    args: &Args,
    cfg: &MsendConfig,
    hostname: String,
    account: Option<&str>,
) -> Result<Resolved> {
    let account_name = account
        .map(str::to_string)
        .or_else(|| args.account.clone())
        .or_else(|| cfg.default.clone());
    let account = match &account_name {
        Some(n) => cfg
            .accounts
            .get(n)
            .cloned()
            .ok_or_else(|| bad_config(format!("no account {n:?} in the configuration")))?,
        None => Account::default(),
    };
    let timeout = args
        .timeout
        .or(account.timeout)
        .map(Duration::from_secs)
        .unwrap_or(deliver::DEFAULT_TIMEOUT);
    let ehlo_name = args
        .ehlo
        .clone()
        .or_else(|| account.ehlo.clone())
        .unwrap_or_else(|| hostname.clone());
    let route = if args.dry_run {
        // --dry-run only prints the message: no server, password or DNS is needed.
        Route::Direct {
            resolver: None,
            port: 25,
        }
    } else if args.direct {
        let resolver = match &args.resolver {
            Some(r) => {
                Some(crate::dns::parse_server(r).map_err(|e| usage(format!("--resolver: {e}")))?)
            }
            None => None,
        };
        Route::Direct {
            resolver,
            port: args.smtp_port.unwrap_or(25),
        }
    } else {
        let server = args
            .server
            .clone()
            .or_else(|| account.server.clone())
            .ok_or_else(|| {
                bad_config("no server: use --server HOST, an account with server =, or --direct")
            })?;
        let (host, port) = split_host_port(&server)?;
        let setting = if args.tls {
            TlsSetting::Tls
        } else if args.no_tls {
            TlsSetting::None
        } else if args.starttls {
            TlsSetting::Starttls
        } else {
            account.tls.unwrap_or(TlsSetting::Starttls)
        };
        let (tls, default_port) = match setting {
            TlsSetting::Tls => (TlsMode::Implicit, 465),
            TlsSetting::Starttls => (TlsMode::Required, 587),
            TlsSetting::None => (TlsMode::Off, 587),
        };
        let port = port.or(account.port).unwrap_or(default_port);
        let user = args.user.clone().or_else(|| account.user.clone());
        let auth = match user {
            None => None,
            Some(user) => {
                if tls == TlsMode::Off {
                    return Err(bad_config(
                        "AUTH is never sent over an unencrypted connection: drop --no-tls or --user",
                    ));
                }
                let password = if let Some(cmd) = args
                    .password_command
                    .as_deref()
                    .or(account.password_command.as_deref())
                {
                    let timeout = account.password_command_timeout.map_or(
                        crate::relay::remote::PASSWORD_COMMAND_TIMEOUT,
                        Duration::from_secs,
                    );
                    password_from_command(cmd, timeout)?
                } else if let Some(p) = std::env::var("MSEND_PASSWORD")
                    .ok()
                    .filter(|p| !p.is_empty())
                {
                    p
                } else if let Some(p) = password_from_netrc(&host, &user) {
                    p
                } else {
                    return Err(bad_config(format!(
                        "no password for {user}: use --password-command, $MSEND_PASSWORD or ~/.netrc"
                    )));
                };
                Some(Credentials { user, password })
            }
        };
        Route::Server {
            host,
            port,
            tls,
            ca_file: args.ca_file.clone().or_else(|| account.ca_file.clone()),
            auth,
        }
    };
    let queue = args
        .queue
        .clone()
        .or_else(|| account.queue.clone())
        .or_else(|| cfg.queue.clone());
    Ok(Resolved {
        opts: Options {
            route,
            ehlo_name,
            timeouts: Timeouts {
                connect: timeout,
                command: timeout,
                data_end: timeout.max(Duration::from_secs(120)),
            },
            verbose: args.verbose,
            quit_after: args.quit_after.as_deref().and_then(Stage::parse),
        },
        account_name,
        account,
        queue,
        hostname,
    })
}

fn login_name() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| "root".into())
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(message::MAX_MESSAGE_SIZE as u64 + 1)
        .read_to_end(&mut input)
        .context("reading the message from stdin")?;
    if input.len() > message::MAX_MESSAGE_SIZE {
        return Err(exit::fail(
            exit::DATAERR,
            format!("message larger than {} bytes", message::MAX_MESSAGE_SIZE),
        ));
    }
    Ok(input)
}

/// The single-threaded runtime one msend run sends with (one per run, not per message).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Prints the failures of a report, one line each.
fn print_failures(report: &Report) {
    for r in &report.rcpts {
        if r.status != Status::Sent {
            eprintln!("msend: {}", r.detail);
        }
    }
}

fn run(args: Args) -> Result<u8> {
    let ignore_dots = args.ignore_dots || args.sendmail_opts.iter().any(|o| o == "i");
    let mode = args.mode.clone().unwrap_or_else(|| "m".into());
    if !matches!(mode.as_str(), "m" | "s" | "p") {
        return Err(usage(format!(
            "-b{mode} is not supported (only -bm, -bs, -bp)"
        )));
    }
    let (cfg, hostname) = load_config(&args)?;
    if args.list || mode == "p" {
        let r = resolve_queue_only(&args, &cfg)?;
        return list(&r);
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
    let res = resolve(&args, &cfg, hostname.clone(), None)?;
    if flushing {
        return flush(&args, &cfg, &res);
    }
    if mode == "s" {
        return smtp_session(&res);
    }
    let quit_early = res.opts.quit_after.is_some();
    let composing = !args.to.is_empty()
        || !args.cc.is_empty()
        || !args.bcc.is_empty()
        || args.subject.is_some()
        || !args.attach.is_empty()
        || args.html.is_some();
    let envelope_default = args
        .sender
        .clone()
        .map(|s| s.trim_start_matches('<').trim_end_matches('>').to_string())
        .or_else(|| res.account.from.clone());
    let user_at_host = format!("{}@{}", login_name(), res.hostname);
    let (msg, mut rcpts, from_header) = if quit_early {
        (
            Vec::new(),
            message::split_recipient_args(&args.recipients),
            None,
        )
    } else if composing {
        let body = String::from_utf8(read_stdin()?).map_err(|_| {
            exit::fail(
                exit::DATAERR,
                "compose mode: the body on stdin is not UTF-8",
            )
        })?;
        let from = args
            .compose_from
            .clone()
            .or_else(|| envelope_default.clone())
            .unwrap_or_else(|| user_at_host.clone());
        let c = compose::Compose {
            from: from.clone(),
            to: args.to.clone(),
            cc: args.cc.clone(),
            bcc: args.bcc.clone(),
            subject: args.subject.clone().unwrap_or_default(),
            text: body,
            html: args.html.clone(),
            attach: args.attach.clone(),
            hostname: res.hostname.clone(),
        };
        let built = compose::build(&c)?;
        let mut rcpts = message::split_recipient_args(&args.to);
        rcpts.extend(message::split_recipient_args(&args.cc));
        rcpts.extend(message::split_recipient_args(&args.bcc));
        rcpts.extend(message::split_recipient_args(&args.recipients));
        (built, rcpts, Some(compose::split_mailbox(&from).1))
    } else {
        let mut input = read_stdin()?;
        if !ignore_dots {
            message::cut_at_lone_dot(&mut input);
        }
        let p = Prepare {
            extract_recipients: args.extract,
            from_address: envelope_default
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| user_at_host.clone()),
            full_name: args.full_name.clone(),
            hostname: res.hostname.clone(),
            now: crate::queue::now() as i64,
        };
        let prepared = message::prepare(&input, &p)
            .map_err(|e| exit::fail(exit::DATAERR, format!("bad message: {e}")))?;
        let mut rcpts = message::split_recipient_args(&args.recipients);
        rcpts.extend(prepared.header_recipients);
        (prepared.message, rcpts, prepared.from_header)
    };
    message::dedup_recipients(&mut rcpts);
    if args.dry_run {
        let mut out = std::io::stdout().lock();
        out.write_all(&msg)
            .context("writing the message to stdout")?;
        out.flush().context("writing the message to stdout")?;
        return Ok(exit::OK);
    }
    if rcpts.is_empty() && !matches!(res.opts.quit_after, Some(s) if s <= Stage::Mail) {
        return Err(if args.extract {
            exit::fail(
                exit::DATAERR,
                "no recipients: none in To/Cc/Bcc and none given",
            )
        } else {
            usage("no recipients given (or use -t)")
        });
    }
    let from = envelope_default.or(from_header).unwrap_or(user_at_host);
    let report = runtime()?.block_on(deliver::send(&res.opts, &from, &rcpts, &msg));
    if let Some(stage) = report.stopped {
        eprintln!("msend: stopped after {stage} as asked (QUIT sent, nothing delivered)");
        return Ok(exit::OK);
    }
    finish(&res, &from, &msg, report)
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

/// Prints failures and spools temporary ones when a queue is configured; the exit code.
fn finish(res: &Resolved, from: &str, msg: &[u8], mut report: Report) -> Result<u8> {
    let temp = report.temporary();
    if let (Some(dir), false) = (&res.queue, temp.is_empty()) {
        let last_error = report
            .rcpts
            .iter()
            .find(|r| r.status == Status::Temporary)
            .map(|r| r.detail.clone())
            .unwrap_or_default();
        let meta = spool::Meta {
            from: from.to_string(),
            rcpts: temp.clone(),
            account: res.account_name.clone(),
            queued_at: crate::queue::now(),
            last_error: last_error.clone(),
        };
        let id = spool::put(dir, &meta, msg).map_err(|e| {
            exit::fail(
                exit::TEMPFAIL,
                format!("spooling in {}: {e:#}", dir.display()),
            )
        })?;
        eprintln!(
            "msend: {} recipient(s) spooled as {id} in {} after a temporary failure: {last_error}",
            temp.len(),
            dir.display()
        );
        report.rcpts.retain(|r| r.status != Status::Temporary);
    }
    print_failures(&report);
    Ok(report.exit_code())
}

fn resolve_queue_only(args: &Args, cfg: &MsendConfig) -> Result<PathBuf> {
    let account = args
        .account
        .as_ref()
        .or(cfg.default.as_ref())
        .and_then(|n| cfg.accounts.get(n));
    args.queue
        .clone()
        .or_else(|| account.and_then(|a| a.queue.clone()))
        .or_else(|| cfg.queue.clone())
        .ok_or_else(|| usage("no spool: use --queue DIR (or queue = in the configuration)"))
}

fn list(dir: &Path) -> Result<u8> {
    let entries = spool::list(dir)?;
    let mut out = std::io::stdout().lock();
    if entries.is_empty() {
        writeln!(out, "{}: spool is empty", dir.display()).context("writing to stdout")?;
        return Ok(exit::OK);
    }
    for p in entries {
        match spool::read(&p) {
            Ok(e) => writeln!(
                out,
                "{}  {} bytes  queued {}s ago  from <{}>  to {}\n    last error: {}",
                e.id,
                e.message.len(),
                crate::queue::now().saturating_sub(e.meta.queued_at),
                e.meta.from,
                e.meta.rcpts.join(", "),
                e.meta.last_error
            ),
            Err(err) => writeln!(out, "{}  unreadable: {err:#}", p.display()),
        }
        .context("writing to stdout")?;
    }
    Ok(exit::OK)
}

/// `--flush` (and `-q`): every spooled message in order; removed only after the server's 250
/// for all its recipients; permanent failures are reported and moved to DIR/failed. The exit
/// code is [`Report::exit_code`] over all messages together, as for a direct send.
fn flush(args: &Args, cfg: &MsendConfig, res: &Resolved) -> Result<u8> {
    let dir = res
        .queue
        .clone()
        .ok_or_else(|| usage("--flush (-q) needs --queue DIR (or queue = in the configuration)"))?;
    if res.opts.quit_after.is_some() {
        // A session stopped early delivers nothing: the spool must not take it for delivered.
        return Err(usage("--quit-after cannot be used with --flush (-q)"));
    }
    let Some(_lock) = spool::lock(&dir)? else {
        eprintln!(
            "msend: {} is being flushed by another process",
            dir.display()
        );
        return Ok(exit::TEMPFAIL);
    };
    let rt = runtime()?;
    let mut all = Report::default();
    let mut unreadable = false;
    for path in spool::list(&dir)? {
        let entry = match spool::read(&path) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("msend: skipping {}: {e:#}", path.display());
                unreadable = true;
                continue;
            }
        };
        // A message spooled with an account goes out with it, unless the flags say otherwise.
        let r;
        let opts = if args.server.is_none() && !args.direct && args.account.is_none() {
            match entry.meta.account.as_deref() {
                Some(acc) => {
                    r = resolve(args, cfg, res.hostname.clone(), Some(acc))?;
                    &r.opts
                }
                None => &res.opts,
            }
        } else {
            &res.opts
        };
        let report = rt.block_on(deliver::send(
            opts,
            &entry.meta.from,
            &entry.meta.rcpts,
            &entry.message,
        ));
        // A refused login says nothing about the message: it stays queued for the next run
        // (after the credentials are fixed), like a temporary failure.
        let retry: Vec<&RcptReport> = report
            .rcpts
            .iter()
            .filter(|r| matches!(r.status, Status::Temporary | Status::AuthFailed))
            .collect();
        let failed: Vec<&RcptReport> = report
            .rcpts
            .iter()
            .filter(|r| matches!(r.status, Status::RcptRejected | Status::Permanent))
            .collect();
        for f in &failed {
            eprintln!("msend: {}: permanent failure: {}", entry.id, f.detail);
        }
        if !failed.is_empty() {
            let meta = spool::Meta {
                rcpts: failed.iter().map(|f| f.rcpt.clone()).collect(),
                last_error: failed.first().map(|f| f.detail.clone()).unwrap_or_default(),
                ..entry.meta.clone()
            };
            if retry.is_empty() {
                let dest = spool::move_to_failed(&dir, &entry, &meta)?;
                eprintln!("msend: {}: moved to {}", entry.id, dest.display());
            } else {
                // Keep a copy for the failed recipients; the rest stays queued below.
                let id = spool::put_failed(&dir, &meta, &entry.message)?;
                eprintln!("msend: {}: failed recipients kept as failed/{id}", entry.id);
            }
        }
        if let Some(first) = retry.first() {
            eprintln!("msend: {}: still queued: {}", entry.id, first.detail);
            let meta = spool::Meta {
                rcpts: retry.iter().map(|r| r.rcpt.clone()).collect(),
                last_error: first.detail.clone(),
                ..entry.meta.clone()
            };
            spool::update(&dir, &entry, &meta)?;
        } else if failed.is_empty() {
            spool::remove(&entry)?;
            if args.verbose {
                eprintln!("msend: {}: delivered", entry.id);
            }
        }
        all.absorb(report);
    }
    Ok(match all.exit_code() {
        exit::OK if unreadable => exit::DATAERR,
        code => code,
    })
}

/// `-bs`: SMTP on stdin/stdout; each message goes onward as configured, then is answered. With
/// a spool the temporarily failed recipients are spooled; a permanent failure is still the
/// message's reply (5xx) and, as for the first failed message, the exit code.
fn smtp_session(res: &Resolved) -> Result<u8> {
    let rt = runtime()?;
    let mut worst = exit::OK;
    let mut submit = |from: String, rcpts: Vec<String>, data: Vec<u8>| -> Reply {
        let mut report = rt.block_on(deliver::send(&res.opts, &from, &rcpts, &data));
        let temp = report.temporary();
        let mut spooled = None;
        if let (Some(dir), false) = (&res.queue, temp.is_empty()) {
            let meta = spool::Meta {
                from: from.clone(),
                rcpts: temp,
                account: res.account_name.clone(),
                queued_at: crate::queue::now(),
                last_error: String::new(),
            };
            match spool::put(dir, &meta, &data) {
                Ok(id) => spooled = Some(id),
                Err(e) => {
                    if worst == exit::OK {
                        worst = exit::TEMPFAIL;
                    }
                    return Reply::new(451, Some((4, 3, 0)), format!("cannot spool: {e:#}"));
                }
            }
            report.rcpts.retain(|r| r.status != Status::Temporary);
        }
        print_failures(&report);
        let detail = report
            .rcpts
            .iter()
            .find(|r| r.status != Status::Sent)
            .map(|r| r.detail.clone())
            .unwrap_or_default();
        let code = report.exit_code();
        if worst == exit::OK {
            worst = code;
        }
        let also = spooled
            .as_ref()
            .map(|id| format!(" (other recipients spooled as {id})"))
            .unwrap_or_default();
        match (code, spooled) {
            (exit::OK, Some(id)) => Reply::new(250, Some((2, 0, 0)), format!("spooled {id}")),
            (exit::OK, None) => Reply::new(250, Some((2, 0, 0)), "sent"),
            (exit::TEMPFAIL, _) => Reply::new(451, Some((4, 4, 0)), detail),
            _ => Reply::new(554, Some((5, 0, 0)), format!("{detail}{also}")),
        }
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    crate::msend::bs::run(
        &res.hostname,
        &mut stdin.lock(),
        &mut stdout.lock(),
        &mut submit,
    )?;
    Ok(worst)
}
