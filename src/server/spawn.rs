//! The privileged spawner: how an unprivileged daemon gets a process running as a *system
//! user* (README "Privileges"), as Postfix's local(8) and Dovecot's per-user pop3 processes do.
//!
//! A daemon whose users include system users (passwd-file entries with a uid/gid other than the
//! `[run_as]` user's) starts the spawner with [`Spawner::start`] while still root, before it
//! drops privileges: `current_exe -c CONFIG __spawner`, connected by a `SOCK_SEQPACKET`
//! socketpair on its stdin. The spawner stays root and does one thing ([`serve_spawner`]): for
//! each request (a kind, a user name, a few plain arguments, and the child's stdin and stdout
//! passed with `SCM_RIGHTS`) it resolves the user itself through the daemon's user table (the
//! `allowed` callback: never uid 0, never below `first_valid_uid`, only users the table holds)
//! and runs `current_exe -c CONFIG __child KIND USER ARGS...` as that uid/gid (supplementary
//! groups cleared by std when it sets the uid), with a clean environment and `/` as working
//! directory. The child's exit status goes back on a status socket passed with the request.
//! The spawner exits when the daemon's end of the socket closes (the daemon exited).
//!
//! The daemon side never gets more than a child it can talk to through the fds it passed: a
//! compromised daemon can ask for a child of a system user, which then only does what its own
//! code does with that user's own files (deliver a message, serve that user's maildrop).

use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut, Read as _, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::auth::Authenticator;
use crate::config::Config;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// The hidden subcommand that runs the spawner.
pub const SPAWNER_COMMAND: &str = "__spawner";
/// The hidden subcommand a spawned child runs (`__child KIND USER ARGS...`).
pub const CHILD_COMMAND: &str = "__child";
/// Largest request (kind, user, arguments).
const MAX_REQUEST: usize = 64 * 1024;
/// Fields of a request are separated by NUL (none of them can contain one).
const SEP: u8 = 0;
/// The PATH a child gets (its environment is otherwise empty).
const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A `SOCK_SEQPACKET` pair: message boundaries are kept and a closed peer reads as EOF.
fn seqpacket_pair() -> io::Result<(UnixStream, UnixStream)> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((UnixStream::from(a), UnixStream::from(b)))
}

/// The daemon's handle on its spawner.
#[derive(Debug)]
pub struct Spawner {
    sock: Mutex<UnixStream>,
    child: Mutex<Child>,
}

impl Spawner {
    /// Starts the spawner (call as root, before dropping privileges): this program again with
    /// `-c config __spawner`, the request socket on its stdin.
    pub fn start(config: Option<&Path>) -> io::Result<Spawner> {
        let exe = std::env::current_exe()?;
        let (ours, theirs) = seqpacket_pair()?;
        let mut cmd = Command::new(exe);
        if let Some(c) = config {
            cmd.arg("-c").arg(c);
        }
        let child = cmd
            .arg(SPAWNER_COMMAND)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .current_dir("/")
            .spawn()?;
        Ok(Spawner {
            sock: Mutex::new(ours),
            child: Mutex::new(child),
        })
    }

    /// Asks for a child running as `user` that does `kind` with `args`, its stdin and stdout
    /// the given fds. Returns at once; [`Pending::wait`] gives its exit status.
    pub fn spawn(
        &self,
        kind: &str,
        user: &str,
        args: &[&str],
        stdin: OwnedFd,
        stdout: OwnedFd,
    ) -> io::Result<Pending> {
        let mut req = Vec::new();
        for field in [kind, user].iter().chain(args) {
            if field.as_bytes().contains(&SEP) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "NUL in request",
                ));
            }
            req.extend_from_slice(field.as_bytes());
            req.push(SEP);
        }
        if req.len() > MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "request too long",
            ));
        }
        let (status, theirs) = seqpacket_pair()?;
        let fds = [stdin.as_fd(), stdout.as_fd(), theirs.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(io::Error::other("ancillary buffer too small"));
        }
        let sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        rustix::net::sendmsg(
            &*sock,
            &[IoSlice::new(&req)],
            &mut control,
            SendFlags::empty(),
        )?;
        Ok(Pending { status })
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        // Closing our end makes the spawner exit; reap it.
        if let Ok(sock) = self.sock.get_mut() {
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
        if let Ok(child) = self.child.get_mut() {
            let _ = child.wait();
        }
    }
}

/// A requested child; [`Pending::wait`] blocks until it exits.
#[derive(Debug)]
pub struct Pending {
    status: UnixStream,
}

impl Pending {
    /// The child's exit code (a child killed by a signal counts as 75, EX_TEMPFAIL: retry), or
    /// an error saying why the spawner refused or could not start it.
    pub fn wait(mut self) -> io::Result<i32> {
        let mut buf = Vec::new();
        self.status.read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if let Some(why) = text.strip_prefix("ERR ") {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                why.to_string(),
            ));
        }
        text.parse()
            .map_err(|_| io::Error::other(format!("spawner answered {text:?}")))
    }
}

/// Asks `spawner` for a session child (mpopd's, mimapd's: README "Privileges") of `kind` for
/// `user` with `args`, its stdin and stdout one end of a socketpair, and returns the other end
/// for [`super::relay::relay`]. The child's exit (or the spawner's refusal) is logged whenever
/// it comes, as `KIND child for USER ...`. Needs a tokio runtime.
pub fn session_child(
    spawner: &Spawner,
    kind: &str,
    user: &str,
    args: &[&str],
) -> io::Result<tokio::net::UnixStream> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs_out = theirs.try_clone()?;
    let pending = spawner.spawn(kind, user, args, theirs.into(), theirs_out.into())?;
    let what = format!("{kind} child for {}", crate::log::sanitize(user));
    tokio::task::spawn_blocking(move || match pending.wait() {
        Ok(0) => {}
        Ok(code) => crate::log::line(format_args!("{what} exited with {code}")),
        Err(e) => crate::log::line(format_args!("{what}: {e}")),
    });
    ours.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(ours)
}

/// In a session child (`__child KIND ...`): the socket on stdin that [`session_child`] gave
/// it, as a [`super::Connection`] of role `kind`. Needs a tokio runtime.
pub fn child_connection(kind: &str) -> io::Result<super::Connection> {
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let sock = UnixStream::from(fd);
    sock.set_nonblocking(true)?;
    let sock = tokio::net::UnixStream::from_std(sock)?;
    Ok(super::Connection::new(sock, kind))
}

/// What the spawner's own lookup grants a request: the ids the child runs with and the
/// arguments it gets first (e.g. the user's Maildir, so the child need not read the user table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The user's uid.
    pub uid: u32,
    /// The user's gid.
    pub gid: u32,
    /// Arguments placed before the daemon's own.
    pub args: Vec<String>,
}

/// Who a child may run as, decided by the spawner from the daemon's user table.
/// [`serve_spawner`] adds the checks every kind shares (not root, not below `first_valid_uid`).
pub trait Allowed {
    /// The grant for a `kind` child of `user`, or why there is none.
    fn grant(&self, kind: &str, user: &str) -> Result<Grant, String>;
}

/// A daemon's spawner together with which of its users are system users.
pub struct SystemUsers {
    /// The spawner.
    pub spawner: Spawner,
    /// Whether `user` (a name from the user table) must be served as its own uid.
    pub is_system: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

static SYSTEM_USERS: std::sync::OnceLock<SystemUsers> = std::sync::OnceLock::new();

/// Makes `users` the process's way to reach system users (once; later calls are ignored).
pub fn install(users: SystemUsers) {
    let _ = SYSTEM_USERS.set(users);
}

/// The spawner to use for `user` when it is a system user of this daemon; `None` for virtual
/// users (served by the daemon itself) and when no spawner runs.
pub fn for_user(user: &str) -> Option<&'static Spawner> {
    SYSTEM_USERS
        .get()
        .filter(|s| (s.is_system)(user))
        .map(|s| &s.spawner)
}

/// The spawner's loop (the `__spawner` subcommand; runs as root): serves requests from the
/// socket on stdin until the daemon closes it, then returns.
pub fn serve_spawner(
    config: Option<&Path>,
    first_valid_uid: u32,
    allowed: &dyn Allowed,
) -> io::Result<()> {
    let sock = UnixStream::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let exe = std::env::current_exe()?;
    let mut children: Vec<std::thread::JoinHandle<()>> = Vec::new();
    loop {
        let mut buf = vec![0u8; MAX_REQUEST];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = match rustix::net::recvmsg(
            &sock,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        if got.bytes == 0 && fds.is_empty() {
            break; // the daemon is gone
        }
        children.retain(|h| !h.is_finished());
        let [stdin, stdout, status]: [OwnedFd; 3] = match fds.try_into() {
            Ok(f) => f,
            Err(_) => continue, // not a request of ours: nothing to answer on
        };
        let mut status = UnixStream::from(status);
        let fields: Vec<String> = buf[..got.bytes]
            .split(|b| *b == SEP)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        let (kind, user, args) = match fields.as_slice() {
            [kind, user, args @ ..] => (kind.clone(), user.clone(), args.to_vec()),
            _ => {
                let _ = status.write_all(b"ERR malformed request");
                continue;
            }
        };
        // The trailing separator leaves one empty field.
        let args: Vec<String> = match args.split_last() {
            Some((last, rest)) if last.is_empty() => rest.to_vec(),
            _ => args,
        };
        let grant = allowed.grant(&kind, &user).and_then(|g| {
            if g.uid == 0 || g.gid == 0 {
                Err(format!("{user} is root (uid {}, gid {})", g.uid, g.gid))
            } else if g.uid < first_valid_uid {
                Err(format!(
                    "{user} has uid {}, below first_valid_uid {first_valid_uid}",
                    g.uid
                ))
            } else {
                Ok(g)
            }
        });
        let Grant {
            uid,
            gid,
            args: first,
        } = match grant {
            Ok(g) => g,
            Err(why) => {
                crate::log::line(format_args!("spawner: refused {kind} for {user}: {why}"));
                let _ = status.write_all(format!("ERR {why}").as_bytes());
                continue;
            }
        };
        let mut cmd = Command::new(&exe);
        if let Some(c) = config {
            cmd.arg("-c").arg(c);
        }
        cmd.arg(CHILD_COMMAND)
            .arg(&kind)
            .arg(&user)
            .args(first.iter().chain(&args).map(OsString::from))
            .env_clear()
            .env("PATH", CHILD_PATH)
            .current_dir("/")
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            // std sets groups to none (setgroups(0)) before setgid/setuid when uid is set.
            .gid(gid)
            .uid(uid);
        match cmd.spawn() {
            Ok(mut child) => {
                drop(cmd);
                children.push(std::thread::spawn(move || {
                    use std::os::unix::process::ExitStatusExt as _;
                    let code = match child.wait() {
                        Ok(st) => st.code().unwrap_or_else(|| {
                            let _ = st.signal();
                            i32::from(crate::exit::TEMPFAIL)
                        }),
                        Err(_) => i32::from(crate::exit::TEMPFAIL),
                    };
                    let _ = status.write_all(code.to_string().as_bytes());
                }));
            }
            Err(e) => {
                let _ = status.write_all(format!("ERR starting the child: {e}").as_bytes());
            }
        }
    }
    for h in children {
        let _ = h.join();
    }
    Ok(())
}

/// The `__spawner` subcommand of both daemons (as root): [`serve_spawner`] for `kind` children
/// of the passwd-file's system users ([`PasswdUsers`], `sieve` its Sieve template),
/// `[run_as] first_valid_uid` applied.
pub fn run_passwd_spawner(
    config: &Config,
    kind: &'static str,
    sieve: Option<String>,
) -> anyhow::Result<()> {
    let auth = Arc::new(Authenticator::from_config(config)?);
    let policy = PasswdUsers { auth, kind, sieve };
    let first = config.run_as.as_ref().map_or(1000, |r| r.first_valid_uid);
    serve_spawner(config.path.as_deref(), first, &policy)
        .map_err(|e| crate::exit::fail(crate::exit::OSERR, format!("spawner: {e}")))
}

/// The spawner policy of both daemons: `kind` children only, for users of the passwd-file
/// that have their own uid and gid; the child's first argument is the user's Maildir from this
/// lookup (the child need not be able to read the passwd-file).
pub struct PasswdUsers {
    /// The user table (re-read when the passwd-file changes).
    pub auth: Arc<Authenticator>,
    /// The one kind of child this daemon asks for.
    pub kind: &'static str,
    /// `Some` (mrelayd's delivery child): the child's second argument is the user's Sieve
    /// script ([`crate::auth::User::sieve_location`] of this template, `""` for none).
    pub sieve: Option<String>,
}

impl Allowed for PasswdUsers {
    fn grant(&self, kind: &str, user: &str) -> Result<Grant, String> {
        if kind != self.kind {
            return Err(format!("unknown kind {kind:?}"));
        }
        let u = self
            .auth
            .lookup(user)
            .ok_or_else(|| format!("{user} is not in the passwd-file"))?;
        let (Some(uid), Some(gid)) = (u.uid, u.gid) else {
            return Err(format!("{user} has no uid/gid in the passwd-file"));
        };
        let maildir = self
            .auth
            .mailbox(&u)
            .map_err(|e| format!("mail location of {user}: {e:#}"))?;
        let mut args = vec![maildir.to_string_lossy().into_owned()];
        if let Some(template) = &self.sieve {
            let template = Some(template.as_str()).filter(|t| !t.is_empty());
            let script = match u.sieve_location(template) {
                None => String::new(),
                Some(Ok(p)) => p.to_string_lossy().into_owned(),
                Some(Err(e)) => return Err(format!("sieve script of {user}: {e:#}")),
            };
            args.push(script);
        }
        Ok(Grant { uid, gid, args })
    }
}

/// Whether a passwd-file user with `uid`/`gid` is a system user for a daemon running as
/// `run`: it names ids of its own (virtual users have none, or the `[run_as]` user's).
fn is_system_user(uid: Option<u32>, gid: Option<u32>, run: (u32, u32)) -> bool {
    uid.is_some_and(|u| u != run.0) || gid.is_some_and(|g| g != run.1)
}

/// Starts and installs the spawner when this daemon can meet system users: started as root
/// with a `[run_as]` user and some passwd-file user has ids other than that user's. A
/// virtual-users setup starts nothing. Call before dropping privileges (and before
/// [`crate::server::refuse_root`] has been skipped: it must have passed).
pub fn start_for(config: &Config, auth: &Arc<Authenticator>) -> anyhow::Result<()> {
    let Some(run_as) = &config.run_as else {
        return Ok(());
    };
    if crate::os::euid() != 0 {
        return Ok(());
    }
    let run = crate::os::resolve_ids(&run_as.user, run_as.group.as_deref())
        .map_err(|e| crate::exit::fail(crate::exit::CONFIG, format!("[run_as]: {e}")))?;
    if !auth
        .users()
        .users()
        .any(|u| is_system_user(u.uid, u.gid, run))
    {
        return Ok(());
    }
    let spawner = Spawner::start(config.path.as_deref())
        .map_err(|e| crate::exit::fail(crate::exit::OSERR, format!("starting the spawner: {e}")))?;
    let auth = auth.clone();
    install(SystemUsers {
        spawner,
        is_system: Box::new(move |name| {
            auth.lookup(name)
                .is_some_and(|u| is_system_user(u.uid, u.gid, run))
        }),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_users_are_those_with_ids_of_their_own() {
        let run = (65534, 65534);
        assert!(!is_system_user(None, None, run));
        assert!(!is_system_user(Some(65534), Some(65534), run));
        assert!(is_system_user(Some(1001), None, run));
        assert!(is_system_user(Some(65534), Some(100), run));
    }
}
