//! `mpopd`: POP3 server over Maildir (RFC 1939 with CAPA, STLS, AUTH PLAIN, APOP), run by the
//! daemon frame ([`crate::server::daemon`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};

use crate::auth::Authenticator;
use crate::config::Config;
use crate::exit;
use crate::pop3::config::Role;
use crate::pop3::driver::{self, Context};
use crate::pop3::login::Backend;
use crate::pop3::Pop3Config;
use crate::runtime::{self, Threads};
use crate::server::daemon::{self, Frame};
use crate::server::{self, spawn, Connection, Settings};

const AFTER_HELP: &str = "\
EXIT STATUS
  0   serve: stopped by SIGTERM/SIGINT; inetd: the session ended
  64  usage error
  71  cannot bind or cannot drop privileges
  75  temporary failure (address in use, I/O error)
  78  configuration error (bad [mpopd] section, missing certificate), also a setup where no
      one could log in, found at start: an implicit-tls listener, or allow_plaintext_auth =
      \"never\", without [tls] cert (\"loopback\" without it on a listener that is not
      loopback gets one warning line)

FILES
  /etc/mailkit/mailkit.toml
      configuration: [mpopd] and the shared [users], [tls], [auth],
      [run_as]; every key under CONFIGURATION below (login names:
      user, any case of it, or user@DOMAIN of a served domain, see
      mrelayd(1) LOGIN NAMES; the throttle: mrelayd(1) LOGIN THROTTLE)
  MAILDIR/mpopd.lock
      flock held by the session that has the maildrop open

SIGNALS
  SIGTERM and SIGINT stop serve: the listeners close at once; every
  session gets -ERR [SYS/TEMP] Server shutting down. and is closed
  without UPDATE, so nothing marked with DELE is deleted
  (RFC 1939 §6). Sessions still open after 10 s are cut off.

PRIVILEGES
  Started as root, mpopd binds its listeners and then runs as the
  [run_as] user, which serves virtual users (passwd-file entries
  without a uid/gid of their own) in process. When the passwd-file has
  system users (entries with their own uid and gid), a small root
  spawner is started first: a system user's login is served by a
  child process running as that user (uid at least first_valid_uid,
  never root) with a clean environment, which opens and locks the
  user's Maildir and runs the session; mpopd keeps TLS, the timeouts
  and the session deadline and relays the plaintext session to it.

ENVIRONMENT
  MAILKIT_CONFIG      configuration file when -c is not given
  TCPREMOTEIP, TCPREMOTEPORT
                      client address in inetd mode (tcpserver)
  LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES
                      systemd socket activation (names pop3, pop3s)";

/// Command line of `mpopd`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "mpopd",
    version,
    about = "POP3 server over Maildir",
    long_about = "POP3 server over Maildir: RFC 1939 (USER/PASS, APOP, TOP, UIDL), RFC 2449 CAPA, \
RFC 2595 STLS, RFC 5034 AUTH PLAIN. Users come from a Dovecot-compatible passwd-file or a \
checkpassword program; each session locks the user's maildrop, moves new mail to cur/, and \
deletes only at QUIT.",
    after_help = AFTER_HELP,
    after_long_help = super::with_config(AFTER_HELP, "mpopd")
)]
pub struct Args {
    /// Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml).
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub mode: Mode,
}

/// How mpopd runs.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Mode {
    /// Listen on the configured addresses and serve until SIGTERM/SIGINT.
    Serve,
    /// Serve one session on stdin/stdout (inetd, tcpserver, systemd Accept=yes).
    Inetd {
        /// The connection is already TLS from the first byte (a POP3S inetd entry).
        #[arg(long)]
        implicit_tls: bool,
    },
    /// Internal: the privileged spawner a daemon with system users starts (README "Privileges").
    #[command(name = "__spawner", hide = true)]
    Spawner,
    /// Internal: a session child the spawner runs as a system user (`pop3 USER MAILDIR PEER`).
    #[command(name = "__child", hide = true)]
    Child(super::ChildArgs),
}

impl super::Tool for Args {
    const NAME: &'static str = "mpopd";
    fn run(self) -> Result<u8> {
        crate::log::set_program(Self::NAME);
        let config = Config::load(self.config.as_deref())?;
        let pop: Pop3Config = config.section("mpopd")?;
        // Before anything is opened: never serve as root.
        server::refuse_root(&config)?;
        if let Mode::Spawner = self.mode {
            // As root: children of the `pop3` kind for the passwd-file's system users.
            spawn::run_passwd_spawner(&config, driver::POP3_CHILD, None)?;
            return Ok(exit::OK);
        }
        if let Mode::Child(super::ChildArgs { kind, args }) = &self.mode {
            let rt = runtime::build(Threads::PerCore)?;
            let result = rt.block_on(child(pop, kind, args));
            rt.shutdown_background();
            return result.map(|()| exit::OK);
        }
        let served: Vec<(Role, Option<std::net::SocketAddr>)> = match &self.mode {
            Mode::Inetd { implicit_tls: true } => vec![(Role::ImplicitTls, None)],
            Mode::Inetd {
                implicit_tls: false,
            } => vec![(Role::Plain, None)],
            _ => pop
                .listen
                .iter()
                .map(|l| (l.role, l.address.parse().ok()))
                .collect(),
        };
        pop.check(&config, &served)?;
        let frame = frame(&config, &pop)?;
        let mode = match self.mode {
            Mode::Inetd { implicit_tls } => daemon::Mode::inetd(if implicit_tls {
                Role::ImplicitTls
            } else {
                Role::Plain
            }),
            Mode::Serve => daemon::Mode::Serve,
            Mode::Spawner | Mode::Child(_) => {
                return Err(exit::fail(exit::SOFTWARE, "internal mode"))
            }
        };
        frame.run(mode).map(|()| exit::OK)
    }
}

/// `__child pop3 USER MAILDIR PEER` (as USER): one session on the socket on stdin. SIGTERM and
/// SIGINT (a signal to the whole process group) are left to the daemon, which says goodbye to
/// the client and then closes the socket, which ends this child.
async fn child(pop: Pop3Config, kind: &str, args: &[String]) -> Result<()> {
    let [user, maildir, peer] = args else {
        return Err(exit::fail(exit::USAGE, "__child pop3: USER MAILDIR PEER"));
    };
    if kind != driver::POP3_CHILD {
        return Err(exit::fail(exit::USAGE, format!("unknown child {kind:?}")));
    }
    use tokio::signal::unix::{signal, SignalKind};
    let _term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let _int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut conn = spawn::child_connection(driver::POP3_CHILD).context("the session socket")?;
    driver::run_child(&mut conn, user, Path::new(maildir), peer, pop)
        .await
        .with_context(|| format!("session of {user}"))
}

/// mpopd as the daemon frame runs it: the `[mpopd]` listeners and limits, the shared
/// `[tls]`/`[run_as]` keys, and the POP3 session over the password check. System users are
/// served by children of a root spawner, started here, before the frame drops root.
fn frame(config: &Config, pop: &Pop3Config) -> Result<Frame> {
    let settings = Settings::from_config(
        config,
        pop.max_connections,
        pop.max_per_ip,
        pop.per_ip_exempt()?,
        pop.idle_timeout_secs,
    )?;
    let auth = Arc::new(Authenticator::from_config(config)?);
    spawn::start_for(config, &auth)?;
    let ctx = Arc::new(Context {
        hostname: config.hostname.clone(),
        auth: Backend::new(auth),
        config: pop.clone(),
    });
    let handler = server::handler(move |mut conn: Connection| {
        let ctx = ctx.clone();
        async move {
            driver::run(&mut conn, ctx).await?;
            Ok(())
        }
    });
    Ok(Frame::new(settings, handler).listen(
        "mpopd.listen",
        &pop.listen,
        b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n",
    ))
}
