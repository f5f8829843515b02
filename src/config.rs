//! The one configuration loader: a single TOML file for the whole system.
//!
//! # Where the file comes from
//! 1. the `-c/--config FILE` a program was given (passed in as `explicit` to [`Config::load`]);
//! 2. else the environment variable `MAILKIT_CONFIG` (when set and not empty);
//! 3. else [`DEFAULT_PATH`] (`/etc/mailkit/mailkit.toml`) when it exists;
//! 4. else the built-in defaults below (no file at all is a valid configuration).
//!
//! A file named by `-c` or `MAILKIT_CONFIG` must exist. Every error (unreadable file, TOML syntax,
//! unknown key, bad value) exits 78 (`EX_CONFIG`) with one line naming the file, the line and the
//! key: `mailkit.toml:12: key `users.domains`: invalid type: string "x", expected a sequence`.
//!
//! # Shared keys (validated by [`Config::load`]; unknown keys are errors)
//! ```toml
//! hostname  = "mail.example.org"      # default: the system host name
//! state_dir = "/var/lib/mailkit"      # default: /var/lib/mailkit (queue, locks, caches)
//!
//! [tls]
//! cert = "/etc/mailkit/cert.pem"      # PEM certificate chain; no default (TLS off)
//! key  = "/etc/mailkit/key.pem"       # PEM private key
//!
//! [users]
//! passwd_file   = "/etc/mailkit/passwd"   # Dovecot-compatible passwd-file (default shown)
//! mail_location = "%h/Maildir"            # or "/var/mail/%d/%n", "mail/%n"; %u user, %n local part,
//!                                         # %d domain, %h home, %% a percent sign
//! domains       = ["example.org"]         # local domains (default: the hostname); a
//!                                         # user logs in as `alice` or `alice@example.org`
//!
//! [auth]
//! checkpassword = ["/usr/local/bin/checkpassword"]  # optional qmail-style backend (argv)
//! failure_delay_ms = 2000     # first failed login's delay; doubles per failure
//! max_delay_ms     = 15000    # cap of that delay
//! max_failures     = 10       # failures per IP before it is locked out
//! lockout_secs     = 300      # how long a lockout (and a failure count) lasts
//! max_tracked_ips  = 10000    # memory bound of the failure table
//! user_failure_delay_ms = 100 # per-user penalty after a user's first failure (any IP);
//!                             # doubles per failure, applies to every answer for that
//!                             # user (right password too), never locks out
//! user_max_delay_ms = 15000   # cap of the per-user penalty
//! max_tracked_users = 10000   # memory bound of the per-user table (unknown names too)
//!
//! [run_as]                    # privilege drop after binding (daemons started as root)
//! user  = "mail"
//! group = "mail"              # default: the user's primary group
//! first_valid_uid = 1000      # system users (own uid/gid in the passwd-file) below this uid
//!                             # are never served (README "Privileges"); uid 0 never is
//! ```
//! # Relative paths
//! A relative path in the file is relative to the config file's directory, whatever the working
//! directory and however the file was named (`-c demo/mailkit.toml`, `./demo/…`, an absolute
//! path, a symlinked directory), so a config directory (such as the one `mrelayd quickstart`
//! writes) can be moved as a whole. This module resolves every path once, when the file is
//! loaded: the shared keys in [`Config::load`], and a program section's paths (the ones its
//! [`Section::paths`] names) in [`Config::section`]; [`Config::path`] itself is made absolute,
//! so the daemons' helper processes (started in `/`) find the same file. `mail_location` is a
//! template: one that starts with a relative path (`mail/%n`) is made relative to the directory too.
//!
//! # Program sections
//! One table per program: `[msend]`, `[mrelayd]`, `[mdeliver]`, `[mpopd]`, `[mimapd]`, `[mfetch]`,
//! `[mdig-mx]` ([`SECTIONS`]). This module does not know their types (each program owns its own);
//! a program reads its section with [`Config::section`], which reports unknown keys and bad
//! values inside it with file, line and key as above. A missing section is `T::default()`.
//! Section types should use `#[serde(deny_unknown_fields, default)]` and implement [`Section`],
//! naming their path-valued keys.
//!
//! # Command-line flags override the file
//! Each program declares its overridable flags as `Option<T>` in clap and merges them over its
//! section after loading: `let port = args.port.unwrap_or(section.port);`. The file overrides the
//! built-in defaults (via `Default` of the section type), flags override the file.
//!
//! Standalone per-user files (for example `~/.config/mailkit/msend.toml`) are read with
//! [`load_file`], with the same error reporting.

pub mod keys;

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::exit;

/// The system-wide configuration file, used when neither `-c` nor `MAILKIT_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/mailkit/mailkit.toml";
/// The environment variable naming the configuration file (overridden by `-c`).
pub const ENV_VAR: &str = "MAILKIT_CONFIG";
/// Default [`Config::state_dir`].
pub const DEFAULT_STATE_DIR: &str = "/var/lib/mailkit";
/// Default [`UsersConfig::passwd_file`].
pub const DEFAULT_PASSWD_FILE: &str = "/etc/mailkit/passwd";
/// Default [`UsersConfig::mail_location`]: a Maildir in the user's home, as Dovecot and MDAs do.
pub const DEFAULT_MAIL_LOCATION: &str = "%h/Maildir";
/// A config file larger than this is refused (it is hand-written text; this bounds memory).
pub const MAX_CONFIG_SIZE: u64 = 4 * 1024 * 1024;
/// The program sections a config file may contain, one per program.
pub const SECTIONS: [&str; 7] = [
    "msend", "mrelayd", "mdeliver", "mpopd", "mimapd", "mfetch", "mdig-mx",
];
/// The program sections no program reads a key of (yet): a key in one is an error, not
/// silently ignored.
pub const KEYLESS_SECTIONS: [&str; 2] = ["mdeliver", "mdig-mx"];

/// A program section's type (`[mrelayd]`, `[mpopd]`, ...), read by [`Config::section`].
pub trait Section: DeserializeOwned + Default {
    /// The section's path-valued keys, which [`Config::section`] makes relative to the config
    /// file's directory (see the module doc). Default: none.
    fn paths(&mut self) -> Vec<&mut PathBuf> {
        Vec::new()
    }
    /// The section's path templates (with `mail_location`'s `%` variables), which
    /// [`Config::section`] resolves as it resolves `mail_location`. Default: none.
    fn templates(&mut self) -> Vec<&mut String> {
        Vec::new()
    }
}

/// The loaded configuration: shared keys, checked, plus the source text for program sections.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from, absolute (against the working directory at load time, so a
    /// helper process started elsewhere finds it); `None` when the built-in defaults apply.
    pub path: Option<PathBuf>,
    /// The file as it was named, for error messages (`demo/mailkit.toml:3: ...`).
    shown: Option<PathBuf>,
    /// This host's name (HELO/EHLO, greetings, `Received:`, Maildir file names).
    pub hostname: String,
    /// Directory for persistent state (queue, locks, caches).
    pub state_dir: PathBuf,
    /// TLS certificate and key.
    pub tls: TlsConfig,
    /// Where users and their mail are.
    pub users: UsersConfig,
    /// Authentication backend and failed-login throttling.
    pub auth: AuthConfig,
    /// The unprivileged user a daemon started as root switches to after binding.
    pub run_as: Option<RunAs>,
    /// The file's text, kept so sections can be deserialized with line numbers.
    source: String,
}

/// `[tls]`: one certificate and key for every server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// `[users]`: the passwd-file, the mailbox location template and the local domains.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsersConfig {
    /// Dovecot-compatible passwd-file (see [`crate::auth`]).
    pub passwd_file: PathBuf,
    /// Mailbox location template (see [`crate::auth::User::mail_location`]).
    pub mail_location: String,
    /// Domains this system receives mail for.
    pub domains: Vec<String>,
}

impl Default for UsersConfig {
    fn default() -> Self {
        UsersConfig {
            passwd_file: PathBuf::from(DEFAULT_PASSWD_FILE),
            mail_location: DEFAULT_MAIL_LOCATION.to_string(),
            domains: Vec::new(),
        }
    }
}

/// `[auth]`: optional checkpassword backend and the failed-login throttle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// A qmail-style checkpassword program and its arguments; when set it checks passwords
    /// instead of the passwd-file (which still serves lookups when present).
    pub checkpassword: Option<Vec<String>>,
    /// Delay before answering the first failed login, in milliseconds; doubles per failure.
    pub failure_delay_ms: u64,
    /// Upper bound of that delay, in milliseconds.
    pub max_delay_ms: u64,
    /// Failed logins from one IP (IPv6: one /64) before it is locked out.
    pub max_failures: u32,
    /// Seconds a lockout lasts, and how long failures are remembered.
    pub lockout_secs: u64,
    /// At most this many IPs are tracked (memory bound; oldest forgotten first).
    pub max_tracked_ips: usize,
    /// Per-user penalty (across addresses) after a user's first failed login, in
    /// milliseconds; doubles per failure; delays every answer for that user, never locks out.
    pub user_failure_delay_ms: u64,
    /// Upper bound of the per-user penalty, in milliseconds.
    pub user_max_delay_ms: u64,
    /// At most this many user names (known or not) are tracked (oldest forgotten first).
    pub max_tracked_users: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            checkpassword: None,
            failure_delay_ms: 2000,
            max_delay_ms: 15_000,
            max_failures: 10,
            lockout_secs: 300,
            max_tracked_ips: 10_000,
            user_failure_delay_ms: 100,
            user_max_delay_ms: 15_000,
            max_tracked_users: 10_000,
        }
    }
}

impl Section for AuthConfig {}

/// `[run_as]`: privilege drop target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunAs {
    /// User name (or numeric uid).
    pub user: String,
    /// Group name (or numeric gid); default: the user's primary group.
    #[serde(default)]
    pub group: Option<String>,
    /// Lowest uid a system user is served as (Dovecot's `first_valid_uid`); default 1000.
    #[serde(default = "default_first_valid_uid")]
    pub first_valid_uid: u32,
}

fn default_first_valid_uid() -> u32 {
    1000
}

/// The top level of the file as serde sees it: shared keys checked, program sections only
/// checked to be tables (their owners check their contents).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Raw {
    hostname: Option<String>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    tls: TlsConfig,
    #[serde(default)]
    users: UsersConfig,
    #[serde(default)]
    auth: AuthConfig,
    run_as: Option<RunAs>,
    // Program sections: only their type (a table) is checked here; `section` reads them.
    // The keyless ones ([`KEYLESS_SECTIONS`]) must be empty.
    #[allow(dead_code)]
    msend: Option<toml::Table>,
    #[allow(dead_code)]
    mrelayd: Option<toml::Table>,
    mdeliver: Option<toml::Table>,
    #[allow(dead_code)]
    mpopd: Option<toml::Table>,
    #[allow(dead_code)]
    mimapd: Option<toml::Table>,
    #[allow(dead_code)]
    mfetch: Option<toml::Table>,
    #[serde(rename = "mdig-mx")]
    mdig_mx: Option<toml::Table>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_raw(Raw::default(), None, String::new())
    }
}

impl Config {
    /// Loads the configuration: `explicit` (from `-c`), else `$MAILKIT_CONFIG`, else
    /// [`DEFAULT_PATH`] if it exists, else built-in defaults. Errors carry exit code 78.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let env = std::env::var_os(ENV_VAR).filter(|v| !v.is_empty());
        let path = match (explicit, env) {
            (Some(p), _) => p.to_path_buf(),
            (None, Some(p)) => PathBuf::from(p),
            (None, None) => {
                let p = Path::new(DEFAULT_PATH);
                if !p.exists() {
                    return Ok(Config::default());
                }
                p.to_path_buf()
            }
        };
        let text = read_text(&path)?;
        Config::parse(&text, Some(&path))
    }

    /// Parses config text; `path` names it in errors and anchors relative paths (none: the
    /// current directory). Errors carry exit code 78.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Config> {
        let raw: Raw = deserialize_doc(text, path)?;
        let keyless = [("mdeliver", &raw.mdeliver), ("mdig-mx", &raw.mdig_mx)];
        for (name, table) in keyless {
            if let Some(first) = table.as_ref().and_then(|t| t.keys().next()) {
                return Err(config_error(
                    path,
                    text,
                    key_line(text, &[name, first]),
                    &format!("{name}.{first}"),
                    &format!("{name} reads no configuration keys (see `man {name}`)"),
                ));
            }
        }
        let config = Config::from_raw(raw, path, text.to_string());
        if let Some(argv) = &config.auth.checkpassword {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(config_error(
                    path,
                    text,
                    key_line(text, &["auth", "checkpassword"]),
                    "auth.checkpassword",
                    "needs at least the program",
                ));
            }
        }
        if config.hostname.is_empty() {
            return Err(config_error(
                path,
                text,
                key_line(text, &["hostname"]),
                "hostname",
                "must not be empty",
            ));
        }
        Ok(config)
    }

    fn from_raw(raw: Raw, path: Option<&Path>, source: String) -> Config {
        let mut c = Config {
            // Made absolute once, here: every path resolved against its directory is then
            // absolute too, and resolving one again changes nothing.
            path: path.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
            shown: path.map(Path::to_path_buf),
            hostname: raw.hostname.unwrap_or_else(system_hostname),
            state_dir: raw
                .state_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            tls: raw.tls,
            users: raw.users,
            auth: raw.auth,
            run_as: raw.run_as,
            source,
        };
        c.state_dir = c.resolve(&c.state_dir);
        c.users.passwd_file = c.resolve(&c.users.passwd_file);
        c.tls.cert = c.tls.cert.as_deref().map(|p| c.resolve(p));
        c.tls.key = c.tls.key.as_deref().map(|p| c.resolve(p));
        c.users.mail_location = c.resolve_template(&c.users.mail_location);
        c
    }

    /// The config file's directory (absolute), when a file was loaded.
    fn dir(&self) -> Option<&Path> {
        self.path
            .as_deref()
            .and_then(Path::parent)
            .filter(|d| !d.as_os_str().is_empty())
    }

    /// A path from the config made absolute against the config file's directory (unchanged
    /// when already absolute or when no file was loaded). [`Config::load`] and
    /// [`Config::section`] already did this for the paths they return.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        match self.dir() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// A `mail_location` template made relative to the config file's directory when it starts
    /// with a relative path (`mail/%n`); one that starts with `/`, `~/` or a variable (`%h`,
    /// the home) or has a `maildir:` prefix is left alone. `%` in the directory is escaped.
    fn resolve_template(&self, template: &str) -> String {
        let relative = !template.is_empty()
            && !template.starts_with(['/', '~', '%'])
            && !template.starts_with("maildir:");
        match self.dir().and_then(|d| d.to_str()) {
            Some(dir) if relative => format!("{}/{template}", dir.replace('%', "%%")),
            _ => template.to_string(),
        }
    }

    /// Deserializes the program section `name` (e.g. `"mpopd"`); an absent section is
    /// `T::default()`. Unknown keys and bad values are reported as `FILE:LINE: key `x`: why`
    /// (exit code 78).
    pub fn section<T: Section>(&self, name: &str) -> Result<T> {
        if !SECTIONS.contains(&name) {
            return Err(exit::fail(
                exit::SOFTWARE,
                format!("config: no such program section [{name}]"),
            ));
        }
        let path = self.shown.as_deref();
        let doc = toml::de::DeTable::parse(&self.source)
            .map_err(|e| toml_error(path, &self.source, &e))?;
        let Some(value) = doc.get_ref().get(name) else {
            return Ok(T::default());
        };
        let value = value.clone();
        let de = toml::de::ValueDeserializer::from(value);
        let mut section = T::deserialize(de).map_err(|e| toml_error(path, &self.source, &e))?;
        for p in section.paths() {
            *p = self.resolve(p);
        }
        for t in section.templates() {
            *t = self.resolve_template(t);
        }
        Ok(section)
    }

    /// A configuration error found after loading, in a combination of keys that cannot work
    /// (a submission listener without a certificate): `FILE:LINE: key `a.b`: why`, exit 78,
    /// with the line of the dotted key `keys` when the file has it.
    pub fn key_error(&self, keys: &[&str], why: &str) -> anyhow::Error {
        let dotted: Vec<String> = keys
            .iter()
            .map(|k| match k.contains('.') {
                true => format!("{k:?}"),
                false => k.to_string(),
            })
            .collect();
        config_error(
            self.shown.as_deref(),
            &self.source,
            key_line(&self.source, keys),
            &dotted.join("."),
            why,
        )
    }

    /// A warning about a legitimate but doubtful combination of keys, logged once at start:
    /// `PROG: warning: FILE:LINE: key `a.b`: why`.
    pub fn key_warning(&self, keys: &[&str], why: &str) {
        crate::log::line(format_args!("warning: {}", self.key_error(keys, why)));
    }

    /// The source text of the loaded file (empty for built-in defaults).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The loaded file's path for messages that tell the admin what to edit, or "the
    /// configuration file" for built-in defaults.
    pub fn file_name(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the configuration file".into())
    }
}

/// Identity of a file's version: mtime, size, inode, device (a rename into place is a change).
type Stamp = Option<(std::time::SystemTime, u64, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino(), m.dev()))
}

/// A file a running daemon follows (the passwd-file, the aliases file): read at start, re-read
/// when it changes (looked at, one `stat`, no more often than `check_interval`). A version
/// that fails to load is logged once and ignored, keeping the last good contents: a
/// half-written file must not lock users out or drop mail.
///
/// The lock guards only the swap of the version in force: the caller that finds the file
/// changed loads it with no lock held, and every other caller meanwhile gets the previous
/// version at once, so a slow load (a big passwd-file, a slow disk) never stalls the logins
/// and RCPT checks running beside it.
pub struct Reloading<T> {
    path: PathBuf,
    what: &'static str,
    load: fn(&Path) -> Result<T>,
    /// How often the file is looked at, at most.
    pub check_interval: std::time::Duration,
    state: std::sync::Mutex<Loaded<T>>,
    /// Set while one caller loads a new version (no second load starts meanwhile).
    loading: std::sync::atomic::AtomicBool,
    /// How often the file was looked at (`stat`) since start.
    looks: std::sync::atomic::AtomicU64,
}

struct Loaded<T> {
    /// The version last looked at (loaded, or refused and logged).
    stamp: Stamp,
    checked: std::time::Instant,
    value: std::sync::Arc<T>,
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("path", &self.path)
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl<T> Reloading<T> {
    /// Loads `path` with `load`; an error here is the caller's (at start a bad file is a
    /// configuration error). `what` names the file in log lines.
    pub fn open(
        path: &Path,
        what: &'static str,
        load: fn(&Path) -> Result<T>,
        check_interval: std::time::Duration,
    ) -> Result<Reloading<T>> {
        // The stamp is taken before reading, so a change during the read is seen next time.
        let st = stamp(path);
        let value = load(path)?;
        Ok(Reloading {
            path: path.to_path_buf(),
            what,
            load,
            check_interval,
            state: std::sync::Mutex::new(Loaded {
                stamp: st,
                checked: std::time::Instant::now(),
                value: std::sync::Arc::new(value),
            }),
            loading: std::sync::atomic::AtomicBool::new(false),
            looks: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many times the file has been looked at (`stat`) since it was opened.
    pub fn looks(&self) -> u64 {
        self.looks.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Loaded<T>> {
        // Each update replaces whole fields: a poisoned lock still holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The contents in force, after re-reading the file if it changed (and this caller is the
    /// one to look at it; see the type's doc).
    pub fn current(&self) -> std::sync::Arc<T> {
        use std::sync::atomic::Ordering;
        let (seen, value) = {
            let mut st = self.state();
            if st.checked.elapsed() < self.check_interval {
                return st.value.clone();
            }
            // Claimed under the lock: one caller per interval looks at the file.
            st.checked = std::time::Instant::now();
            (st.stamp, st.value.clone())
        };
        self.looks.fetch_add(1, Ordering::Relaxed);
        let now = stamp(&self.path);
        if now == seen || self.loading.swap(true, Ordering::AcqRel) {
            return value;
        }
        let loaded = (self.load)(&self.path);
        let value = {
            let mut st = self.state();
            st.stamp = now;
            match loaded {
                Ok(v) => {
                    crate::log::line(format_args!(
                        "{} {}: reloaded",
                        self.what,
                        self.path.display()
                    ));
                    st.value = std::sync::Arc::new(v);
                }
                // The load error names the file and line already.
                Err(e) => {
                    crate::log::line(format_args!("{e:#}; keeping the previous {}", self.what))
                }
            }
            st.value.clone()
        };
        self.loading.store(false, Ordering::Release);
        value
    }
}

/// Reads a standalone TOML file (such as `~/.config/mailkit/msend.toml`) into `T`, with the same
/// `FILE:LINE: key `x`: why` errors (exit code 78) as [`Config::section`].
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    deserialize_doc(&text, Some(path))
}

/// Parses TOML text into `T` with file/line/key error reporting.
pub fn parse_str<T: DeserializeOwned>(text: &str, path: Option<&Path>) -> Result<T> {
    deserialize_doc(text, path)
}

fn deserialize_doc<T: DeserializeOwned>(text: &str, path: Option<&Path>) -> Result<T> {
    toml::from_str(text).map_err(|e| toml_error(path, text, &e))
}

/// Reads a whole file of at most `max` bytes with one open (size from the open file, so no
/// second lookup of the path); `Ok(None)` when it is larger. For the files a config names
/// (config, passwd-file, aliases), which are bounded to bound memory.
pub fn read_limited(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // Bounded also while reading: a file that grew after the size check is still refused.
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

fn read_text(path: &Path) -> Result<String> {
    let shown = path.display();
    let bytes = read_limited(path, MAX_CONFIG_SIZE)
        .map_err(|e| exit::fail(exit::CONFIG, format!("config {shown}: {e}")))?
        .ok_or_else(|| {
            exit::fail(
                exit::CONFIG,
                format!("config {shown}: larger than {MAX_CONFIG_SIZE} bytes"),
            )
        })?;
    String::from_utf8(bytes)
        .map_err(|e| exit::fail(exit::CONFIG, format!("config {shown}: not UTF-8: {e}")))
}

/// The system host name, or `localhost` when it cannot be read.
pub fn system_hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Turns a toml error into `FILE:LINE: key `a.b`: why` with exit code 78.
fn toml_error(path: Option<&Path>, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let why = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let key = key_at(text, &span);
            let line = line_of(text, span.start);
            config_error(path, text, Some(line), key.as_deref().unwrap_or(""), &why)
        }
        None => config_error(path, text, None, "", &why),
    }
}

fn config_error(
    path: Option<&Path>,
    _text: &str,
    line: Option<usize>,
    key: &str,
    why: &str,
) -> anyhow::Error {
    let file = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<config>".to_string());
    let at = match line {
        Some(l) => format!("{file}:{l}"),
        None => file,
    };
    let msg = if key.is_empty() {
        format!("{at}: {why}")
    } else {
        format!("{at}: key `{key}`: {why}")
    };
    exit::fail(exit::CONFIG, msg)
}

/// The dotted key whose name or value contains the error span (innermost wins).
fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_key(doc.get_ref(), span.start, &mut path);
    if path.is_empty() {
        None
    } else {
        Some(path.join("."))
    }
}

/// Depth-first search for the innermost key whose name or value span contains `pos`. Table
/// headers (`[a.b]`, `[[a]]`) are not inside their value's span, so every branch is searched.
fn find_key(table: &toml::de::DeTable<'_>, pos: usize, path: &mut Vec<String>) -> bool {
    for (k, v) in table.iter() {
        path.push(k.get_ref().to_string());
        if descend(v.get_ref(), pos, path) {
            return true;
        }
        if k.span().contains(&pos) || v.span().contains(&pos) {
            return true;
        }
        path.pop();
    }
    false
}

fn descend(value: &toml::de::DeValue<'_>, pos: usize, path: &mut Vec<String>) -> bool {
    match value {
        toml::de::DeValue::Table(t) => find_key(t, pos, path),
        toml::de::DeValue::Array(a) => a.iter().any(|item| descend(item.get_ref(), pos, path)),
        _ => false,
    }
}

/// Line of a dotted key (for checks done after deserializing).
fn key_line(text: &str, keys: &[&str]) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut found = None;
    for (i, key) in keys.iter().enumerate() {
        let (k, v) = table.iter().find(|(k, _)| k.get_ref() == key)?;
        found = Some(line_of(text, k.span().start));
        if i + 1 < keys.len() {
            table = v.get_ref().as_table()?;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Released by the test; a load of a file starting with `slow` waits for it (30 s at most).
    static GATE: (std::sync::Mutex<bool>, std::sync::Condvar) =
        (std::sync::Mutex::new(false), std::sync::Condvar::new());
    static ENTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    fn gated_load(p: &Path) -> Result<String> {
        let text = std::fs::read_to_string(p)?;
        if text.starts_with("slow") {
            ENTERED.store(true, std::sync::atomic::Ordering::SeqCst);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let mut open = GATE.0.lock().unwrap();
            while !*open {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                open = GATE.1.wait_timeout(open, left).unwrap().0;
            }
        }
        Ok(text)
    }

    #[test]
    fn a_slow_reload_does_not_block_other_readers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "v1").unwrap();
        let f = std::sync::Arc::new(
            Reloading::open(&path, "test file", gated_load, std::time::Duration::ZERO).unwrap(),
        );
        std::fs::write(&path, "slow v2").unwrap();
        let loader = {
            let f = f.clone();
            std::thread::spawn(move || f.current())
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ENTERED.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the reload never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The loader is stuck in its load: others get the version in force, not a wait.
        assert_eq!(*f.current(), "v1");
        *GATE.0.lock().unwrap() = true;
        GATE.1.notify_all();
        assert_eq!(*loader.join().unwrap(), "slow v2");
        assert_eq!(*f.current(), "slow v2");
    }

    #[test]
    fn the_file_is_looked_at_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "v1").unwrap();
        let start = std::time::Instant::now();
        let f = Reloading::open(
            &path,
            "test file",
            gated_load,
            std::time::Duration::from_secs(1),
        )
        .unwrap();
        for _ in 0..10_000 {
            assert_eq!(*f.current(), "v1");
        }
        assert!(f.looks() <= start.elapsed().as_secs() + 1, "{}", f.looks());
    }

    #[test]
    fn read_limited_takes_up_to_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(
            read_limited(&path, 5).unwrap().as_deref(),
            Some(&b"12345"[..])
        );
        assert_eq!(read_limited(&path, 4).unwrap(), None);
        let missing = read_limited(&dir.path().join("none"), 5).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    }
}
