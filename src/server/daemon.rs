//! The daemon frame: what every daemon (mrelayd, mpopd, next mimapd) does around its sessions,
//! written once.
//!
//! A daemon declares its listeners (the `listen` list of its config section: address, role,
//! TLS mode), its [`Settings`] (TLS acceptor, limits, `[run_as]`) and its session [`Handler`],
//! optionally work that runs beside the sessions ([`Background`]: mrelayd's queue runner), and
//! calls [`Frame::run`] in one of two [`Mode`]s. The frame then, in this order:
//!
//! 1. builds the runtime ([`crate::runtime`]);
//! 2. `serve`: installs the SIGTERM/SIGINT handler and binds the listeners, or takes the
//!    sockets systemd passed (`LISTEN_FDS`, [`Listeners::bind`]); `inetd`: nothing to bind, the
//!    session is on stdin/stdout;
//! 3. drops root to the `[run_as]` user ([`super::drop_privileges`]);
//! 4. only then starts the background work ([`Background::start`]), so nothing it runs (a
//!    `|pipe` delivery, a queue file it creates) ever runs or is created as root;
//! 5. serves the sessions ([`super::serve`] until the shutdown signal, or [`super::inetd`]);
//! 6. shuts the runtime down and stops the background work ([`Background::stop`]).
//!
//! What must happen as root before the drop (opening the queue and handing it to the
//! `[run_as]` user, starting the spawner of system users, [`super::spawn`]) the daemon does
//! before calling [`Frame::run`], after [`super::refuse_root`].
//!
//! The listener description is shared too: a config section's `listen` entries are
//! [`Listener`]s of the daemon's own role enum ([`ListenerRole`]), parsed the same way for every
//! section (`address = "IP:PORT"`, `role = ...`, unknown keys refused).

use std::time::Duration;

use anyhow::Result;
use serde::Deserialize;

use super::{Handler, ListenerSpec, Listeners, Settings};
use crate::exit;
use crate::runtime::{self, Threads};

/// How long `serve` waits, after the sessions ended, for tasks still on the runtime (blocking
/// file work of a session that was aborted) before it stops the background work.
pub const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// A daemon's listener roles: an enum its config section names (`role = "submission"`), each
/// with the name the server layer, the logs and systemd's `FileDescriptorName=` use and its
/// TLS mode.
pub trait ListenerRole: Copy + Default + PartialEq + Send + Sync + 'static {
    /// Every role, in the order a usage message lists them.
    const ALL: &'static [Self];
    /// The role name ([`super::Connection::role`], `listening on ADDR (NAME)`).
    fn name(self) -> &'static str;
    /// Whether TLS starts with the first byte (RFC 8314 §3.3), not by STARTTLS/STLS.
    fn implicit_tls(self) -> bool;
    /// The role named `name`.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.name() == name)
    }
    /// The role named `name` on the command line (`inetd --role`); an unknown one is a usage
    /// error (exit 64) listing the names.
    fn from_arg(name: &str) -> Result<Self> {
        Self::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|r| r.name()).collect();
            exit::fail(
                exit::USAGE,
                format!("unknown role {name:?} ({})", names.join(", ")),
            )
        })
    }
}

/// One entry of a config section's `listen` list: `{ address = "IP:PORT", role = "..." }`,
/// the role defaulting to the daemon's default one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener<R> {
    /// `IP:PORT` to bind (port 0: any free port, printed when listening).
    pub address: String,
    /// What runs there and how TLS starts.
    #[serde(default)]
    pub role: R,
}

impl<R: ListenerRole> Listener<R> {
    /// A listener of `role` on `address`.
    pub fn new(address: &str, role: R) -> Listener<R> {
        Listener {
            address: address.to_string(),
            role,
        }
    }
}

/// Work that runs beside the sessions (mrelayd: the queue runner in `serve`, the delivery of
/// what the session accepted in `inetd`). The frame starts it only after privileges are
/// dropped and stops it after the sessions have ended.
pub trait Background: Send {
    /// Starts the work: as the `[run_as]` user, on the runtime (it may spawn tasks) and before
    /// the first session. An error ends the daemon before it serves anyone.
    fn start(&mut self) -> Result<()>;
    /// Stops the work, after the last session ended and the runtime is shut down; called
    /// whether or not [`Background::start`] was reached or succeeded.
    fn stop(&mut self);
}

/// How a daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Listen on the declared addresses (or socket-activated fds) until SIGTERM or SIGINT.
    Serve,
    /// One session on stdin/stdout (inetd, tcpserver, systemd `Accept=yes`).
    Inetd {
        /// The session's role name.
        role: &'static str,
        /// TLS from the first byte.
        implicit_tls: bool,
    },
}

impl Mode {
    /// One inetd session of `role`.
    pub fn inetd<R: ListenerRole>(role: R) -> Mode {
        Mode::Inetd {
            role: role.name(),
            implicit_tls: role.implicit_tls(),
        }
    }
}

/// A listener as declared: its address is checked only when `serve` needs it (an inetd
/// session does not bind, and a bad `listen` entry does not stop it).
#[derive(Debug, Clone)]
struct Declared {
    address: String,
    role: &'static str,
    implicit_tls: bool,
}

/// A daemon as the frame runs it: declared once, run in either [`Mode`].
pub struct Frame {
    /// Config key of the listeners, for errors (`mpopd.listen`).
    key: &'static str,
    listeners: Vec<Declared>,
    busy_reply: Vec<u8>,
    settings: Settings,
    handler: Handler,
    background: Option<Box<dyn Background>>,
}

impl Frame {
    /// A daemon serving `handler` with `settings` (from [`Settings::from_config`]), without
    /// listeners or background work yet.
    pub fn new(settings: Settings, handler: Handler) -> Frame {
        Frame {
            key: "listen",
            listeners: Vec::new(),
            busy_reply: Vec::new(),
            settings,
            handler,
            background: None,
        }
    }

    /// The listeners of `serve`: the `listen` entries of the config key `key`; a connection
    /// over the limits gets `busy_reply` (plaintext listeners only).
    pub fn listen<R: ListenerRole>(
        mut self,
        key: &'static str,
        listeners: &[Listener<R>],
        busy_reply: &[u8],
    ) -> Frame {
        self.key = key;
        self.listeners = listeners
            .iter()
            .map(|l| Declared {
                address: l.address.clone(),
                role: l.role.name(),
                implicit_tls: l.role.implicit_tls(),
            })
            .collect();
        self.busy_reply = busy_reply.to_vec();
        self
    }

    /// Work to start after the privilege drop and stop after the sessions.
    pub fn background(mut self, work: impl Background + 'static) -> Frame {
        self.background = Some(Box::new(work));
        self
    }

    /// The server layer's specs of the declared listeners; a bad address is a config error
    /// (exit 78) naming the config key (`mrelayd.listen`).
    fn specs(&self) -> Result<Vec<ListenerSpec>> {
        self.listeners
            .iter()
            .map(|d| {
                let addr = d.address.parse().map_err(|e| {
                    exit::fail(
                        exit::CONFIG,
                        format!("{}: {:?} is not IP:PORT: {e}", self.key, d.address),
                    )
                })?;
                Ok(ListenerSpec::new(addr, d.role)
                    .implicit_tls(d.implicit_tls)
                    .busy_reply(&self.busy_reply))
            })
            .collect()
    }

    /// Runs the daemon in `mode` (the order is in the module docs) and returns when it
    /// stopped: `serve` at SIGTERM/SIGINT once the sessions ended, `inetd` when its session
    /// ended.
    pub fn run(self, mode: Mode) -> Result<()> {
        let specs = match mode {
            Mode::Serve => self.specs()?,
            Mode::Inetd { .. } => Vec::new(),
        };
        let Frame {
            settings,
            handler,
            mut background,
            ..
        } = self;
        let rt = runtime::build(Threads::PerCore)?;
        let result = rt.block_on(async {
            // Installed before binding, so a signal during startup is not lost.
            let shutdown = match mode {
                Mode::Serve => Some(super::shutdown_signal()?),
                Mode::Inetd { .. } => None,
            };
            let listeners = match mode {
                Mode::Serve => Some(Listeners::bind(&specs)?),
                Mode::Inetd { .. } => None,
            };
            // Root was needed only to bind: nothing below runs as root.
            if let Some(run_as) = &settings.run_as {
                super::drop_privileges(run_as)?;
            }
            if let Some(work) = background.as_mut() {
                work.start()?;
            }
            match (mode, listeners, shutdown) {
                (Mode::Inetd { role, implicit_tls }, _, _) => {
                    super::inetd(role, implicit_tls, settings, handler).await
                }
                (Mode::Serve, Some(listeners), Some(shutdown)) => {
                    super::serve(listeners, settings, handler, shutdown).await
                }
                (Mode::Serve, _, _) => Err(exit::fail(exit::SOFTWARE, "serve without listeners")),
            }
        });
        match mode {
            Mode::Serve => rt.shutdown_timeout(RUNTIME_SHUTDOWN),
            // On a pipe a pending stdin read cannot be cancelled: do not wait for it.
            Mode::Inetd { .. } => rt.shutdown_background(),
        }
        if let Some(work) = background.as_mut() {
            work.stop();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum TestRole {
        #[default]
        Plain,
        Secure,
    }

    impl ListenerRole for TestRole {
        const ALL: &'static [TestRole] = &[TestRole::Plain, TestRole::Secure];
        fn name(self) -> &'static str {
            match self {
                TestRole::Plain => "plain",
                TestRole::Secure => "secure",
            }
        }
        fn implicit_tls(self) -> bool {
            self == TestRole::Secure
        }
    }

    #[test]
    fn roles_by_name_and_argument() {
        assert_eq!(TestRole::from_name("secure"), Some(TestRole::Secure));
        assert_eq!(TestRole::from_name("Secure"), None);
        let e = TestRole::from_arg("bogus").unwrap_err();
        assert_eq!(exit::code_of(&e), exit::USAGE);
        assert_eq!(e.to_string(), "unknown role \"bogus\" (plain, secure)");
    }

    #[test]
    fn declared_listeners_become_specs_and_bad_addresses_name_the_key() {
        let handler = super::super::handler(|_| async { Ok(()) });
        let frame = Frame::new(Settings::default(), handler.clone()).listen(
            "x.listen",
            &[
                Listener::new("127.0.0.1:995", TestRole::Secure),
                Listener::new("[::1]:110", TestRole::default()),
            ],
            b"BUSY\r\n",
        );
        let a = "127.0.0.1:995".parse().unwrap();
        let b = "[::1]:110".parse().unwrap();
        assert_eq!(
            frame.specs().unwrap(),
            vec![
                ListenerSpec::new(a, "secure")
                    .implicit_tls(true)
                    .busy_reply(b"BUSY\r\n"),
                ListenerSpec::new(b, "plain").busy_reply(b"BUSY\r\n"),
            ]
        );
        let bad = Frame::new(Settings::default(), handler).listen(
            "x.listen",
            &[Listener::new("localhost:25", TestRole::Plain)],
            b"",
        );
        let e = bad.specs().unwrap_err();
        assert_eq!(exit::code_of(&e), exit::CONFIG);
        assert!(
            e.to_string()
                .starts_with("x.listen: \"localhost:25\" is not IP:PORT"),
            "{e}"
        );
    }

    #[test]
    fn listen_entries_parse_alike_with_the_default_role() {
        #[derive(Deserialize)]
        struct Section {
            listen: Vec<Listener<TestRole>>,
        }
        let s: Section = toml::from_str(
            "listen = [ { address = \"127.0.0.1:1\" }, { address = \"127.0.0.1:2\", role = \"secure\" } ]",
        )
        .unwrap();
        assert_eq!(
            s.listen,
            vec![
                Listener::new("127.0.0.1:1", TestRole::Plain),
                Listener::new("127.0.0.1:2", TestRole::Secure)
            ]
        );
        assert!(toml::from_str::<Section>("listen = [ { address = \"a\", port = 1 } ]").is_err());
        let e = toml::from_str::<Section>("listen = [ { address = \"a\", role = \"x\" } ]")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("unknown variant `x`, expected `plain` or `secure`"),
            "{e}"
        );
    }
}
