//! `mimapd`: IMAP server over Maildir++ (RFC 3501), run by the daemon frame
//! ([`crate::server::daemon`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::exit;
use crate::imap::config::Role;
use crate::imap::driver::{self, Context};
use crate::imap::ImapConfig;
use crate::runtime::{self, Threads};
use crate::server::daemon::{self, Frame};
use crate::server::{self, spawn, Connection, Settings};

const AFTER_HELP: &str = "\
CAPABILITIES
  IMAP4rev1 (RFC 3501), LITERAL+ (RFC 7888), SASL-IR (RFC 4959) with
  AUTH=PLAIN, STARTTLS, LOGINDISABLED before TLS where logins are not
  allowed, ID (RFC 2971), ENABLE (RFC 5161), NAMESPACE (RFC 2342), IDLE
  (RFC 2177), UNSELECT (RFC 3691), UIDPLUS (RFC 4315: APPENDUID,
  COPYUID, UID EXPUNGE), MOVE (RFC 6851), SPECIAL-USE (RFC 6154).
  The selected state: SELECT, EXAMINE, CHECK, CLOSE, UNSELECT, EXPUNGE,
  SEARCH (CHARSET UTF-8; decoded text), FETCH (every RFC 3501 item),
  STORE (flags in the Maildir info, keywords in dovecot-keywords), COPY,
  MOVE and their UID forms. Other processes' deliveries, flag changes
  and expunges are reported at the next command, and at once while a
  client idles (inotify on the folder; a poll on network filesystems).
  The folder commands: LIST and LSUB (wildcards * and %, delimiter
  \".\", modified UTF-7 names, \\Noselect, \\HasChildren/\\HasNoChildren,
  \\Sent \\Drafts \\Trash \\Junk \\Archive), CREATE, DELETE, RENAME (INBOX:
  its messages move to the new folder), SUBSCRIBE, UNSUBSCRIBE (Dovecot's
  subscriptions file), STATUS (takes no \\Recent), APPEND (streamed into
  tmp/, flags and date, OK [APPENDUID] after fsync, NO [TRYCREATE]).
  A first login (no subscriptions file) creates and subscribes Sent,
  Drafts, Trash, Junk and Archive.

LIMITS
  A command with its literals is held to max_command_size octets: a
  synchronising literal over it is refused (NO [TOOBIG]) before it is
  read, a LITERAL+ one is read, discarded and refused (RFC 7888 4), one
  over 16 MiB ends the session, and so does a line over the limit
  (* BYE). An APPEND message is streamed to the Maildir's tmp/ and held
  to max_message_size. max_errors BAD responses or max_auth_failures
  failed logins end the session with * BYE; failed logins are delayed
  and throttled per address and per user (mrelayd(1) LOGIN THROTTLE).
  ID takes at most 30 pairs (RFC 2971 3.3), a LIST pattern at most 1024
  octets and 32 wildcards (else BAD); parenthesis nesting is bounded by
  the command parser. A message's structure is read up to 2000 MIME
  parts, 50 levels, a 1 MiB header and 1000 RFC 2231 parameters per
  field: a message over the first three is served as one text/plain part
  (BODY[] still whole, as Dovecot does), parameters past 1000 are ignored.

EXIT STATUS
  0   serve: stopped by SIGTERM/SIGINT; inetd: the session ended
  64  usage error
  71  cannot bind or cannot drop privileges
  75  temporary failure (address in use, I/O error)
  78  configuration error (bad [mimapd] section, missing certificate), also a setup where no
      one could log in, found at start: an implicit-tls listener, or allow_plaintext_auth =
      \"never\", without [tls] cert

FILES
  /etc/mailkit/mailkit.toml
      configuration: [mimapd] and the shared [users], [tls], [auth],
      [run_as]; every key under CONFIGURATION below (login names:
      user, any case of it, or user@DOMAIN of a served domain, see
      mrelayd(1) LOGIN NAMES)

SIGNALS
  SIGTERM and SIGINT stop serve: the listeners close at once and every
  session gets * BYE Server shutting down. Sessions still open after
  10 s are cut off.

PRIVILEGES
  Started as root, mimapd binds its listeners and then runs as the
  [run_as] user, which serves virtual users (passwd-file entries
  without a uid/gid of their own) in process. When the passwd-file has
  system users (entries with their own uid and gid), a small root
  spawner is started first: once a system user's login is checked, a
  child process running as that user (uid at least first_valid_uid,
  never root) with a clean environment answers the login and serves
  the rest of the session on the user's Maildir; mimapd keeps TLS, the
  idle timeout, the session deadline and the shutdown * BYE and relays
  the plaintext session to it. A system user's login to a mimapd not
  started as root gets NO [UNAVAILABLE].

ENVIRONMENT
  MAILKIT_CONFIG      configuration file when -c is not given
  TCPREMOTEIP, TCPREMOTEPORT
                      client address in inetd mode (tcpserver)
  LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES
                      systemd socket activation (names imap, imaps)";

/// Command line of `mimapd`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "mimapd",
    version,
    about = "IMAP server over Maildir++",
    long_about = "IMAP server over Maildir++: RFC 3501 IMAP4rev1 with STARTTLS, AUTHENTICATE \
PLAIN (SASL-IR), LITERAL+, ID, ENABLE, NAMESPACE, IDLE, UNSELECT, UIDPLUS, MOVE and SPECIAL-USE. \
Users come from a Dovecot-compatible passwd-file or a checkpassword program; the INBOX is the \
user's Maildir and folders are Maildir++ folders (.NAME/), with UIDs in Dovecot's own \
dovecot-uidlist, so Dovecot, mpopd and mdeliver can work on the same Maildir. Every RFC 3501 \
command works; IDLE pushes deliveries and other sessions' changes as they happen (inotify). \
COMPRESS, ESEARCH, LIST-EXTENDED, CONDSTORE/QRESYNC and IMAP4rev2 are not built yet.",
    after_help = AFTER_HELP,
    after_long_help = super::with_config(AFTER_HELP, "mimapd")
)]
pub struct Args {
    /// Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml).
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub mode: Mode,
}

/// How mimapd runs.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Mode {
    /// Listen on the configured addresses and serve until SIGTERM/SIGINT.
    Serve,
    /// Serve one session on stdin/stdout (inetd, tcpserver, systemd Accept=yes).
    Inetd {
        /// The connection is already TLS from the first byte (an IMAPS inetd entry).
        #[arg(long)]
        implicit_tls: bool,
    },
    /// Internal: the privileged spawner a daemon with system users starts (README "Privileges").
    #[command(name = "__spawner", hide = true)]
    Spawner,
    /// Internal: a session child the spawner runs as a system user (`imap USER MAILDIR TAG PEER`).
    #[command(name = "__child", hide = true)]
    Child(super::ChildArgs),
}

impl super::Tool for Args {
    const NAME: &'static str = "mimapd";
    fn run(self) -> Result<u8> {
        crate::log::set_program(Self::NAME);
        let config = Config::load(self.config.as_deref())?;
        let imap: ImapConfig = config.section("mimapd")?;
        // Before anything is opened: never serve as root.
        server::refuse_root(&config)?;
        if let Mode::Spawner = self.mode {
            // As root: children of the `imap` kind for the passwd-file's system users.
            spawn::run_passwd_spawner(&config, driver::IMAP_CHILD, None)?;
            return Ok(exit::OK);
        }
        if let Mode::Child(super::ChildArgs { kind, args }) = &self.mode {
            let rt = runtime::build(Threads::PerCore)?;
            let result = rt.block_on(child(imap, kind, args));
            rt.shutdown_background();
            return result.map(|()| exit::OK);
        }
        let (served, mode) = match self.mode {
            Mode::Inetd { implicit_tls } => {
                let role = if implicit_tls {
                    Role::ImplicitTls
                } else {
                    Role::Plain
                };
                (vec![(role, None)], daemon::Mode::inetd(role))
            }
            Mode::Serve => (
                imap.listen
                    .iter()
                    .map(|l| (l.role, l.address.parse().ok()))
                    .collect(),
                daemon::Mode::Serve,
            ),
            Mode::Spawner | Mode::Child(_) => {
                return Err(exit::fail(exit::SOFTWARE, "internal mode"))
            }
        };
        imap.check(&config, &served)?;
        frame(&config, &imap)?.run(mode).map(|()| exit::OK)
    }
}

/// `__child imap USER MAILDIR TAG PEER` (as USER): the rest of one session, logged in, on the
/// socket on stdin. SIGTERM and SIGINT (a signal to the whole process group) are left to the
/// daemon, which says `* BYE` to the client and then closes the socket, which ends this child.
async fn child(imap: ImapConfig, kind: &str, args: &[String]) -> Result<()> {
    let [user, maildir, tag, peer] = args else {
        return Err(exit::fail(
            exit::USAGE,
            "__child imap: USER MAILDIR TAG PEER",
        ));
    };
    if kind != driver::IMAP_CHILD {
        return Err(exit::fail(exit::USAGE, format!("unknown child {kind:?}")));
    }
    use tokio::signal::unix::{signal, SignalKind};
    let _term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let _int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut conn = spawn::child_connection(driver::IMAP_CHILD).context("the session socket")?;
    driver::run_child(&mut conn, user, Path::new(maildir), tag, peer, imap)
        .await
        .with_context(|| format!("session of {user}"))
}

/// mimapd as the daemon frame runs it: the `[mimapd]` listeners and limits, the shared
/// `[tls]`/`[run_as]` keys, and the IMAP session over the password check. System users are
/// served by children of a root spawner, started here, before the frame drops root.
fn frame(config: &Config, imap: &ImapConfig) -> Result<Frame> {
    let settings = Settings::from_config(
        config,
        imap.max_connections,
        imap.max_per_ip,
        imap.per_ip_exempt()?,
        imap.idle_timeout_secs,
    )?;
    let auth = Arc::new(Authenticator::from_config(config)?);
    spawn::start_for(config, &auth)?;
    let ctx = Arc::new(Context {
        auth: Some(auth),
        config: imap.clone(),
    });
    let handler = server::handler(move |mut conn: Connection| {
        let ctx = ctx.clone();
        async move {
            driver::run(&mut conn, ctx).await?;
            Ok(())
        }
    });
    Ok(Frame::new(settings, handler).listen(
        "mimapd.listen",
        &imap.listen,
        b"* BYE [UNAVAILABLE] Too many connections, try again later.\r\n",
    ))
}
