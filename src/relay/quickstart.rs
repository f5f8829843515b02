//! `mrelayd quickstart`: a demo setup in one directory, run on loopback.
//!
//! [`prepare`] writes (once; a rerun reuses the directory and its password) a config with
//! paths relative to it, serving the domains `localhost` and [`DOTTED_DOMAIN`] (programs such
//! as git send-email refuse an address whose domain has no dot, so the demo user must have one
//! they take: `demo@mail.localhost`, RFC 6761 §6.3 reserves `.localhost` names for loopback),
//! a passwd-file with user `demo` and a random password, an aliases file
//! sending `postmaster` and `abuse` to `demo` (RFC 5321 §4.5.1, RFC 2142), a self-signed
//! certificate with its CA, and the demo Maildir. [`Demo::run`] then runs mrelayd `serve` in
//! this process and supervises `mpopd serve` and `mimapd serve` next to it ([`supervise`]),
//! until Ctrl-C.
//!
//! Started as root, the demo is a virtual-users setup for an unprivileged user (`nobody`, or
//! the one `--user` names): the config gets a `[run_as]` block for it and the directory
//! (queue, state, Maildirs, passwd-file, key) is handed to it ([`prepare_for`]), so both
//! daemons drop to it after binding (they refuse to serve as root). Started as anyone else it
//! runs as that user.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::RelayConfig;
use crate::config::Config;
use crate::exit;
use crate::log;

/// The demo's second domain, with a dot: the address `demo@mail.localhost` is one git
/// send-email (which wants a dot in the domain) accepts. Mail for it is local, as for
/// `localhost`; the name is never looked up (servers are named `localhost` or `127.0.0.1`).
pub const DOTTED_DOMAIN: &str = "mail.localhost";

/// The `[users]` domains line a demo written before [`DOTTED_DOMAIN`] has; a reused one gets
/// [`DOMAINS_LINE`] instead.
const OLD_DOMAINS_LINE: &str = "domains = [\"localhost\"]\n";
/// The demo's `[users]` domains line.
const DOMAINS_LINE: &str = "domains = [\"localhost\", \"mail.localhost\"]\n";

/// The demo directory when none is given.
pub const DEFAULT_DIR: &str = "mailkit-demo";
/// Quickstart SMTP port.
pub const QUICKSTART_SMTP: u16 = 2525;
/// Quickstart submission port.
pub const QUICKSTART_SUBMISSION: u16 = 2587;
/// Quickstart POP3 port (mpopd).
pub const QUICKSTART_POP3: u16 = 1110;
/// Quickstart IMAP port (mimapd, STARTTLS).
pub const QUICKSTART_IMAP: u16 = 1143;
/// Quickstart IMAPS port (mimapd, implicit TLS).
pub const QUICKSTART_IMAPS: u16 = 1993;
/// Length of the random demo password.
pub const DEMO_PASSWORD_LEN: usize = 16;
/// A supervised child that dies is restarted after this pause.
pub const RESTART_PAUSE: Duration = Duration::from_secs(2);
/// How long a supervised child may take to exit after Ctrl-C before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The user the demo runs as when started as root and `--user` names none.
pub const DEFAULT_ROOT_USER: &str = "nobody";

/// A prepared demo directory.
#[derive(Debug, Clone)]
pub struct Demo {
    /// The directory (absolute).
    pub dir: PathBuf,
    /// Its `mailkit.toml`.
    pub config: PathBuf,
    /// The demo user's password (or a pointer to the passwd file when unreadable).
    pub password: String,
    /// Whether this run created the files (else they were reused).
    pub fresh: bool,
    /// The user the daemons run as when started as root (`[run_as]`); `None`: as the caller.
    pub run_as: Option<String>,
}

/// The `[run_as]` user for a demo started by `euid` with `--user` `user`: root runs it as
/// `user` or [`DEFAULT_ROOT_USER`]; anyone else runs it as themselves (and cannot name another
/// user: switching needs root).
fn demo_user(euid: u32, user: Option<String>) -> Result<Option<String>> {
    match (euid, user) {
        (0, u) => Ok(Some(u.unwrap_or_else(|| DEFAULT_ROOT_USER.into()))),
        (_, None) => Ok(None),
        (uid, Some(u)) => match crate::os::lookup_user(&u) {
            Ok(Some((target, _))) if target == uid => Ok(None),
            _ => Err(exit::fail(
                exit::USAGE,
                format!("--user {u}: only root can run the demo as another user"),
            )),
        },
    }
}

/// Creates the demo in `dir` (default [`DEFAULT_DIR`]) unless its config exists already, for
/// the user `--user` names (see [`demo_user`]).
pub fn prepare(dir: Option<PathBuf>, user: Option<String>) -> Result<Demo> {
    let run_as = demo_user(crate::os::euid(), user)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir =
        std::fs::canonicalize(&dir).with_context(|| format!("resolving {}", dir.display()))?;
    let config_path = dir.join("mailkit.toml");
    let pw_path = dir.join("demo-password");
    let fresh = !config_path.exists();
    if fresh {
        let password = match std::fs::read_to_string(&pw_path) {
            Ok(p) if !p.trim().is_empty() => p.trim().to_string(),
            _ => {
                let p = random_password();
                let _ = std::fs::remove_file(&pw_path);
                write_new(&pw_path, &format!("{p}\n"), 0o600)?;
                p
            }
        };
        let hash =
            crate::auth::hash_password(crate::auth::Scheme::Sha512Crypt, password.as_bytes())
                .map_err(|e| anyhow::anyhow!("hashing the demo password: {e}"))?;
        let passwd = dir.join("passwd");
        let _ = std::fs::remove_file(&passwd);
        write_new(&passwd, &format!("demo:{hash}\n"), 0o600)?;
        crate::tls::write_self_signed(&dir, &["localhost".into(), "127.0.0.1".into()])?;
        let mail = dir.join("mail");
        crate::maildir::Maildir::create(mail.join("demo").join("Maildir"))
            .with_context(|| format!("creating the demo Maildir under {}", mail.display()))?;
        std::fs::create_dir_all(dir.join("state"))?;
        // RFC 5321 §4.5.1 and RFC 2142: postmaster (and abuse) at every local domain reach
        // someone; mrelayd refuses to start without postmaster.
        let aliases = dir.join("aliases");
        let _ = std::fs::remove_file(&aliases);
        write_new(&aliases, DEMO_ALIASES, 0o644)?;
        let config = format!(
            "# Written by `mrelayd quickstart`. Paths are relative to this file's directory.\n\
hostname = \"localhost\"\n\
state_dir = \"state\"\n\
\n[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\
\n[users]\npasswd_file = \"passwd\"\nmail_location = \"{mail}/%n/Maildir\"\n{DOMAINS_LINE}\
\n[mrelayd]\n# No network is trusted: relaying needs AUTH on the submission port.\n\
trusted_networks = []\naliases = \"aliases\"\nlisten = [\n  {{ address = \"127.0.0.1:{QUICKSTART_SMTP}\", role = \"smtp\" }},\n  {{ address = \"127.0.0.1:{QUICKSTART_SUBMISSION}\", role = \"submission\" }},\n]\n\
\n[mpopd]\nlisten = [ {{ address = \"127.0.0.1:{QUICKSTART_POP3}\", role = \"plain\" }} ]\n\
{imap}",
            imap = imap_section(),
            mail = mail.display()
        );
        let config = match &run_as {
            Some(u) => format!("{config}{}", run_as_block(u)),
            None => config,
        };
        write_new(&config_path, &config, 0o644)?;
    }
    if !fresh {
        add_dotted_domain(&dir, &config_path)?;
        add_aliases(&dir, &config_path)?;
        add_imap(&dir, &config_path)?;
    }
    if let Some(user) = &run_as {
        prepare_for(&dir, &config_path, user)?;
    }
    let password = std::fs::read_to_string(&pw_path)
        .map(|p| p.trim().to_string())
        .unwrap_or_else(|_| "(see the passwd file)".into());
    Ok(Demo {
        dir,
        config: config_path,
        password,
        fresh,
        run_as,
    })
}

/// The demo's aliases file: RFC 5321 §4.5.1 and RFC 2142, postmaster (and abuse) at every
/// local domain reach someone; mrelayd refuses to start without postmaster.
const DEMO_ALIASES: &str = "# Written by `mrelayd quickstart`. Format: name: target, ... \
     (mrelayd(1), FILES).\n\
     # RFC 5321 4.5.1 and RFC 2142: these reach the demo user at every local domain.\n\
     postmaster: demo\nabuse: demo\n";

/// The `[mrelayd]` lines a quickstart without aliases wrote, and what they become.
const OLD_RELAY_LINES: &str = "trusted_networks = []\nlisten = [";
const NEW_RELAY_LINES: &str = "trusted_networks = []\naliases = \"aliases\"\nlisten = [";

/// A reused demo written before it had aliases (so mrelayd would now refuse to start without a
/// postmaster) gets the aliases file and the `aliases` key. A config edited by hand otherwise
/// is left alone: mrelayd then says what to change.
fn add_aliases(dir: &Path, config_path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    if !text.contains(OLD_RELAY_LINES) || text.contains("\naliases = ") {
        return Ok(());
    }
    let aliases = dir.join("aliases");
    if !aliases.exists() {
        write_new(&aliases, DEMO_ALIASES, 0o644)?;
    }
    let text = text.replacen(OLD_RELAY_LINES, NEW_RELAY_LINES, 1);
    crate::durable::replace_path(dir, config_path, text.as_bytes(), 0o644)
        .with_context(|| format!("adding aliases to {}", config_path.display()))
}

/// A reused demo written before it served [`DOTTED_DOMAIN`] gets it, so the banner's
/// `demo@mail.localhost` works there too; a domains line edited by hand is left alone.
fn add_dotted_domain(dir: &Path, config_path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    if !text.contains(&format!("\n{OLD_DOMAINS_LINE}")) {
        return Ok(());
    }
    let text = text.replacen(
        &format!("\n{OLD_DOMAINS_LINE}"),
        &format!("\n{DOMAINS_LINE}"),
        1,
    );
    crate::durable::replace_path(dir, config_path, text.as_bytes(), 0o644)
        .with_context(|| format!("adding {DOTTED_DOMAIN} to {}", config_path.display()))
}

/// The demo's `[mimapd]` section: IMAP with STARTTLS and IMAPS on loopback.
fn imap_section() -> String {
    format!(
        "\n[mimapd]\nlisten = [\n  {{ address = \"127.0.0.1:{QUICKSTART_IMAP}\", role = \"plain\" }},\n  {{ address = \"127.0.0.1:{QUICKSTART_IMAPS}\", role = \"implicit-tls\" }},\n]\n"
    )
}

/// A demo written before mimapd was served gets its `[mimapd]` section when reused.
fn add_imap(dir: &Path, config_path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    if text.contains("\n[mimapd]") {
        return Ok(());
    }
    let text = format!("{text}{}", imap_section());
    crate::durable::replace_path(dir, config_path, text.as_bytes(), 0o644)
        .with_context(|| format!("adding [mimapd] to {}", config_path.display()))
}

/// The config text that makes the daemons drop to `user` after binding.
fn run_as_block(user: &str) -> String {
    format!(
        "\n# Started as root: the daemons switch to this user after binding.\n\
[run_as]\nuser = \"{user}\"\n"
    )
}

/// Prepares the demo in `dir` for running as `user` (root only): the config names it in
/// `[run_as]` (a reused config without one gets the block appended; one naming another user is
/// an error), every directory from `/` down to `dir` must let it through, and everything below
/// `dir` but the password note is handed to it, without following symlinks.
fn prepare_for(dir: &Path, config_path: &Path, user: &str) -> Result<()> {
    let (uid, gid) = crate::os::resolve_ids(user, None)
        .map_err(|e| exit::fail(exit::CONFIG, format!("--user {user}: {e}")))?;
    if uid == 0 {
        return Err(exit::fail(
            exit::USAGE,
            format!("--user {user}: the demo does not run as root; name an unprivileged user"),
        ));
    }
    let config = Config::load(Some(config_path))?;
    match config.run_as.as_ref().map(|r| r.user.as_str()) {
        Some(u) if u == user => {}
        Some(u) => {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "{} runs as {u}, not {user}: edit its [run_as] user or use another directory",
                    config_path.display()
                ),
            ))
        }
        None => {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(config_path)
                .with_context(|| format!("opening {}", config_path.display()))?;
            f.write_all(run_as_block(user).as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", config_path.display()))?;
        }
    }
    // The daemons reach their files by absolute path after dropping root.
    use std::os::unix::fs::MetadataExt as _;
    for ancestor in dir.ancestors().skip(1) {
        let m = std::fs::metadata(ancestor)
            .with_context(|| format!("checking {}", ancestor.display()))?;
        let searchable = m.mode() & 0o001 != 0
            || (m.uid() == uid && m.mode() & 0o100 != 0)
            || (m.gid() == gid && m.mode() & 0o010 != 0);
        if !searchable {
            return Err(exit::fail(
                exit::CONFIG,
                format!(
                    "{user} cannot reach {}: {} is closed to it; put the demo elsewhere \
                     (e.g. /tmp/{DEFAULT_DIR}) or name another --user",
                    dir.display(),
                    ancestor.display()
                ),
            ));
        }
    }
    let keep = dir.join("demo-password");
    give_tree(dir, &keep, uid, gid)
}

/// `lchown`s `path` and everything below it (symlinks themselves, never their targets) to
/// `uid`:`gid`, except `keep`.
fn give_tree(path: &Path, keep: &Path, uid: u32, gid: u32) -> Result<()> {
    if path == keep {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", path.display()))?;
    let meta =
        std::fs::symlink_metadata(path).with_context(|| format!("checking {}", path.display()))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
            let e = e.with_context(|| format!("reading {}", path.display()))?;
            give_tree(&e.path(), keep, uid, gid)?;
        }
    }
    Ok(())
}

impl Demo {
    /// What to tell the user: where things are, the ports, and commands to try.
    pub fn banner(&self) -> String {
        let password = &self.password;
        let c = self.config.display();
        let d = self.dir.display();
        // The running binary's own path: after `cargo run --release -- quickstart` nothing is
        // installed in PATH yet, and the banner's commands must work as printed.
        let mrelayd = sibling("mrelayd");
        let mrelayd = mrelayd.display();
        let runs_as = match &self.run_as {
            Some(u) => format!("  runs as:   {u} (started as root; [run_as] in the config)\n"),
            None => String::new(),
        };
        format!(
            "mailkit demo in {d} ({})\n\
\n  user:      demo@localhost, or demo@{DOTTED_DOMAIN} where a domain needs a dot (git send-email)\n  password:  {password}   (also in {d}/demo-password)\n  config:    {c}\n  CA cert:   {d}/ca.pem\n{runs_as}\
\n  SMTP        127.0.0.1:{QUICKSTART_SMTP}   (mail for @localhost and @{DOTTED_DOMAIN}, no relaying)\n  submission  127.0.0.1:{QUICKSTART_SUBMISSION}   (STARTTLS, then AUTH)\n  POP3        127.0.0.1:{QUICKSTART_POP3}   (mpopd)\n  IMAP        127.0.0.1:{QUICKSTART_IMAP}   (mimapd, STARTTLS)\n  IMAPS       127.0.0.1:{QUICKSTART_IMAPS}   (mimapd)\n\
\nTry:\n  swaks --server 127.0.0.1:{QUICKSTART_SMTP} --to demo@localhost\n  swaks --server localhost:{QUICKSTART_SUBMISSION} --tls --tls-ca-path {d}/ca.pem --auth PLAIN \\\n        --auth-user demo --auth-password '{password}' --from demo@localhost --to demo@localhost\n  ls {d}/mail/demo/Maildir/new\n  curl --user 'demo:{password}' pop3://127.0.0.1:{QUICKSTART_POP3}/1\n  curl --cacert {d}/ca.pem --user 'demo:{password}' 'imaps://localhost:{QUICKSTART_IMAPS}/INBOX;UID=1'\n  {mrelayd} -c {c} queue\n",
            if self.fresh { "created" } else { "reused" }
        )
    }

    /// Checks, before the banner, that the demo's ports are free: each listener of its config
    /// (`[mrelayd]` and `[mpopd]`) is bound once and released. A port in use (a first
    /// quickstart still running, another mail server) is one line naming the address, exit 75
    /// (as `serve` exits for it), instead of a banner for a demo that does not start. Other
    /// bind errors are left to `serve`, which reports them.
    pub fn check_ports(&self) -> Result<()> {
        let config = Config::load(Some(&self.config))?;
        let relay: RelayConfig = config.section("mrelayd")?;
        let pop: crate::pop3::Pop3Config = config.section("mpopd")?;
        let imap: crate::imap::ImapConfig = config.section("mimapd")?;
        let addresses = relay
            .listen
            .iter()
            .map(|l| &l.address)
            .chain(pop.listen.iter().map(|l| &l.address))
            .chain(imap.listen.iter().map(|l| &l.address));
        for address in addresses {
            let Ok(addr) = address.parse::<std::net::SocketAddr>() else {
                continue;
            };
            if addr.port() == 0 {
                continue;
            }
            match std::net::TcpListener::bind(addr) {
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(exit::fail(
                        exit::TEMPFAIL,
                        format!(
                            "{addr} is already in use (is another quickstart running?): stop \
                             it, or change the ports in {}",
                            self.config.display()
                        ),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs the demo: mrelayd `serve` here and a supervised `mpopd serve` and `mimapd serve`,
    /// until SIGTERM/SIGINT.
    pub fn run(&self) -> Result<()> {
        let config = Config::load(Some(&self.config))?;
        let relay: RelayConfig = config.section("mrelayd")?;
        let stop = Arc::new(AtomicBool::new(false));
        let pop3 = supervise("mpopd", &self.config, stop.clone());
        let imap = supervise("mimapd", &self.config, stop.clone());
        let result = super::daemon::serve(&config, &relay);
        stop.store(true, Ordering::SeqCst);
        let _ = pop3.join();
        let _ = imap.join();
        result
    }
}

/// The binary `name` next to this one (else `name`, looked up in `PATH`).
fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn random_password() -> String {
    use rand::Rng as _;
    // No 0/O, 1/l/I: the password is read off a terminal.
    const CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..DEMO_PASSWORD_LEN)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Creates `path` (it must not exist) with `mode`, durably ([`crate::durable::create_new_path`]).
fn write_new(path: &Path, text: &str, mode: u32) -> Result<()> {
    Ok(crate::durable::create_new_path(
        path,
        text.as_bytes(),
        mode,
    )?)
}

/// Runs `prog -c CONFIG serve` and restarts it when it dies, until `stop`; a program that says
/// it is not implemented (exit 69) is not restarted.
pub fn supervise(
    prog: &'static str,
    config: &Path,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let config = config.to_path_buf();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let mut child = match std::process::Command::new(sibling(prog))
                .arg("-c")
                .arg(&config)
                .arg("serve")
                .stdin(std::process::Stdio::null())
                .spawn()
            {
                Ok(c) => c,
                Err(e) => {
                    log::line(format_args!("cannot start {prog}: {e}"));
                    return;
                }
            };
            let status = loop {
                if stop.load(Ordering::SeqCst) {
                    // Ctrl-C reached the whole process group; give it a moment, then kill.
                    let poll = Duration::from_millis(100);
                    for _ in 0..STOP_GRACE.as_millis() / poll.as_millis() {
                        if let Ok(Some(_)) = child.try_wait() {
                            return;
                        }
                        std::thread::sleep(poll);
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                match child.try_wait() {
                    Ok(Some(st)) => break st,
                    Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                    Err(_) => return,
                }
            };
            if stopped_by_signal(status) {
                // `serve` exits 0 only when SIGTERM/SIGINT stopped it: Ctrl-C reached the
                // process group before our own shutdown set `stop`. Not a failure, no restart.
                return;
            }
            if status.code() == Some(i32::from(exit::UNAVAILABLE)) {
                log::line(format_args!(
                    "{prog} is not available yet; continuing without it"
                ));
                return;
            }
            log::line(format_args!("{prog} exited ({status}); restarting"));
            std::thread::sleep(RESTART_PAUSE);
        }
    })
}

/// Whether a `serve` child ended because it was told to stop: exit 0 (it handled SIGTERM or
/// SIGINT) or killed by one of those signals.
fn stopped_by_signal(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt as _;
    status.success() || matches!(status.signal(), Some(libc::SIGTERM | libc::SIGINT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_created_once_then_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("demo");
        let first = prepare(Some(dir.clone()), None).unwrap();
        assert!(first.fresh);
        assert_eq!(first.password.len(), DEMO_PASSWORD_LEN);
        let banner = first.banner();
        assert!(banner.contains("(created)") && banner.contains(&first.password));
        // In the order a user runs them: `ls new/` before a POP3 session moves the mail to cur/.
        let ls = banner.find("/mail/demo/Maildir/new\n").unwrap();
        assert!(ls < banner.find("pop3://").unwrap(), "{banner}");
        assert!(banner.ends_with(" queue\n"), "{banner}");
        let again = prepare(Some(dir.clone()), None).unwrap();
        assert!(!again.fresh && again.banner().contains("(reused)"));
        assert_eq!(again.password, first.password);
        // The config it wrote loads.
        let config = Config::load(Some(&again.config)).unwrap();
        let relay: RelayConfig = config.section("mrelayd").unwrap();
        assert_eq!(relay.listen.len(), 2);
        assert_eq!(relay.aliases, Some(again.dir.join("aliases")));
        // A demo written before it had aliases gets them when reused.
        let text = std::fs::read_to_string(&again.config).unwrap();
        std::fs::write(
            &again.config,
            text.replace(NEW_RELAY_LINES, OLD_RELAY_LINES),
        )
        .unwrap();
        std::fs::remove_file(again.dir.join("aliases")).unwrap();
        let old = prepare(Some(dir.clone()), None).unwrap();
        assert!(!old.fresh);
        let relay: RelayConfig = Config::load(Some(&old.config))
            .unwrap()
            .section("mrelayd")
            .unwrap();
        assert_eq!(relay.aliases, Some(old.dir.join("aliases")));
        let aliases = std::fs::read_to_string(old.dir.join("aliases")).unwrap();
        assert!(aliases.contains("\npostmaster: demo\n"), "{aliases}");
        // It serves the dotted domain its banner names, also when reused from before it did.
        assert!(old.banner().contains(&format!("demo@{DOTTED_DOMAIN} ")));
        let text = std::fs::read_to_string(&old.config).unwrap();
        assert!(text.contains(DOMAINS_LINE), "{text}");
        std::fs::write(&old.config, text.replace(DOMAINS_LINE, OLD_DOMAINS_LINE)).unwrap();
        let older = prepare(Some(dir.clone()), None).unwrap();
        let text = std::fs::read_to_string(&older.config).unwrap();
        assert!(text.contains(DOMAINS_LINE), "{text}");
        let config = Config::load(Some(&older.config)).unwrap();
        assert_eq!(config.users.domains, ["localhost", DOTTED_DOMAIN]);
        // A second create of an existing file fails instead of overwriting it.
        assert!(write_new(&again.config, "x", 0o644).is_err());
    }
}
