//! `mpopd`: POP3 server over Maildir (RFC 1939 with CAPA, STLS, AUTH PLAIN, APOP).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};

use crate::config::Config;
use crate::exit;
use crate::pop3::config::Role;
use crate::pop3::driver::{self, Context};
use crate::pop3::login::Backend;
use crate::pop3::Pop3Config;
use crate::server::{self, Connection, ListenerSpec, Listeners, Settings};

const AFTER_HELP: &str = "\
EXIT STATUS
  0   serve: stopped by SIGTERM/SIGINT; inetd: the session ended
  64  usage error
  71  cannot bind or cannot drop privileges
  75  temporary failure (address in use, I/O error)
  78  configuration error (bad [mpopd] section, missing certificate)

FILES
  /etc/mailkit/mailkit.toml
      [mpopd]: listen (address, role plain|implicit-tls),
      allow_plaintext_auth (never|loopback|always), apop,
      idle_timeout_secs, session_deadline_secs (no login or message
      retrieved for this long: -ERR and close, default 1800),
      max_connections, max_per_ip, max_errors,
      max_auth_failures, allow_symlinked_maildir (default false: a
      Maildir that is a symlink or has symlinked tmp/, new/, cur/ gets
      -ERR [SYS/TEMP] and a log line naming the path; the lock, size
      cache and messages are never followed); shared: [users]
      passwd_file, mail_location,
      [auth] checkpassword and throttle (per address: failure_delay_ms,
      max_delay_ms, max_failures, lockout_secs, max_tracked_ips; per user
      across addresses: user_failure_delay_ms, user_max_delay_ms,
      max_tracked_users; see mrelayd(1) LOGIN THROTTLE), [tls] cert, key,
      [run_as]
  MAILDIR/mpopd.lock
      flock held by the session that has the maildrop open

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
    after_help = AFTER_HELP
)]
pub struct Args {
    /// Configuration file (default: $MAILKIT_CONFIG, else /etc/mailkit/mailkit.toml).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub mode: Mode,
}

/// How mpopd runs.
#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum Mode {
    /// Listen on the configured addresses and serve until SIGTERM/SIGINT.
    Serve,
    /// Serve one session on stdin/stdout (inetd, tcpserver, systemd Accept=yes).
    Inetd {
        /// The connection is already TLS from the first byte (a POP3S inetd entry).
        #[arg(long)]
        implicit_tls: bool,
    },
}

impl super::Tool for Args {
    const NAME: &'static str = "mpopd";
    fn run(self) -> Result<u8> {
        server::log::set_program(Self::NAME);
        let config = Config::load(self.config.as_deref())?;
        let pop: Pop3Config = config.section("mpopd")?;
        // Before anything is opened: never serve as root.
        server::refuse_root(&config)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let result = rt.block_on(run(config, pop, self.mode));
        // inetd on a pipe: a pending stdin read cannot be cancelled; do not wait for it.
        rt.shutdown_background();
        result.map(|()| exit::OK)
    }
}

async fn run(config: Config, pop: Pop3Config, mode: Mode) -> Result<()> {
    let settings = settings(&config, &pop)?;
    let ctx = Arc::new(Context {
        hostname: config.hostname.clone(),
        auth: Backend::from_config(&config)?,
        config: pop.clone(),
    });
    let handler = server::handler(move |mut conn: Connection| {
        let ctx = ctx.clone();
        async move {
            driver::run(&mut conn, ctx).await?;
            Ok(())
        }
    });
    match mode {
        Mode::Inetd { implicit_tls } => {
            let role = if implicit_tls {
                Role::ImplicitTls
            } else {
                Role::Plain
            };
            server::inetd(role.name(), implicit_tls, settings, handler).await
        }
        Mode::Serve => {
            let shutdown = server::shutdown_signal()?;
            let specs = listener_specs(&pop)?;
            let listeners = Listeners::bind(&specs)?;
            server::serve(listeners, settings, handler, shutdown).await
        }
    }
}

/// The server layer's settings from the shared `[tls]`/`[run_as]` keys and `[mpopd]` limits.
fn settings(config: &Config, pop: &Pop3Config) -> Result<Settings> {
    Settings::from_config(
        config,
        pop.max_connections,
        pop.max_per_ip,
        pop.idle_timeout_secs,
    )
}

fn listener_specs(pop: &Pop3Config) -> Result<Vec<ListenerSpec>> {
    pop.listen
        .iter()
        .map(|l| {
            server::listener_from_config(
                "mpopd.listen",
                &l.address,
                l.role.name(),
                l.role == Role::ImplicitTls,
                b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n",
            )
        })
        .collect()
}
