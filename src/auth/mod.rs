//! Users and authentication: the one password check every daemon uses.
//!
//! # The passwd-file
//! Dovecot's format (<https://doc.dovecot.org/configuration_manual/authentication/passwd_file/>),
//! one user per line: `user:password:uid:gid:gecos:home:shell:extra_fields`. What Dovecot
//! accepts, [`UserDb`] accepts: comments (`#`), blank lines and lines starting with `:` are
//! skipped; trailing fields may be missing (`alice:{PLAIN}pw` is a whole entry); a password
//! without `{SCHEME}` is in Dovecot's passwd-file default scheme `CRYPT`; `user@domain` names are
//! virtual users; the first of duplicate names wins; extra fields are space-separated
//! `key=value` (`userdb_mail=maildir:~/Mail` overrides the mailbox location). Problems on single
//! lines (unknown scheme, truncated hash, bad uid) do not stop the load: they are collected in
//! [`UserDb::warnings`] with their line numbers, and such a user cannot log in. A name in the
//! uid or gid field is a system user or group, looked up through NSS ([`os::lookup_user`],
//! [`os::lookup_group`]: `getpwnam_r`/`getgrnam_r`), never by reading `/etc/passwd` itself.
//! Schemes: see [`scheme`].
//!
//! # Checking passwords
//! [`Authenticator::check`] (or [`Authenticator::check_async`] from tokio code) is the single
//! entry point. The login name is looked up as Dovecot does with `%Lu` and a domain-less
//! passwd-file ([`Authenticator::lookup_login`]): the exact passwd-file key, else the key equal
//! to it without case, else, for `user@domain` of a served domain, the plain `user` (so the
//! quickstart's `demo@localhost` logs in as `demo`); the entry found is the canonical user,
//! whose name decides the Maildir, the sender check and the throttle key. It applies the [`LoginThrottle`] (per address, and per user across addresses,
//! keyed on [`throttle::canonical_user`] with the served domains), asks the backend
//! (passwd-file, or a qmail [`checkpassword`] program), and returns a [`Verdict`] with the delay
//! to wait before answering. Verification is constant-time, and an unknown user costs the same
//! hash computation and is throttled the same as a known one, so neither the answer nor its
//! timing reveals whether a user exists. The passwd-file is re-read when it changes (mtime,
//! size or inode), like Dovecot does: looked at at most once a second
//! ([`PASSWD_CHECK_INTERVAL`]), loaded outside any lock while logins go on with the previous
//! users (see [`Reloading`]).

pub mod checkpassword;
pub mod sasl;
pub mod sasl_client;
pub mod scheme;
pub mod throttle;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};

pub use checkpassword::{Checkpassword, CheckpasswordResult};
pub use sasl::{
    sasl_login_decode, sasl_plain_decode, Credentials, SaslError, SaslServer, SaslStep,
};
pub use sasl_client::{Mechanism, SaslClient};
pub use scheme::{hash_password, PasswordError, Scheme, StoredPassword};
pub use throttle::{LoginThrottle, ThrottleConfig};

use crate::config::{Config, Reloading};
use crate::exit;
use crate::os;

/// A passwd-file larger than this is refused (bounds memory; a million users fit easily).
pub const MAX_PASSWD_FILE_SIZE: u64 = 256 * 1024 * 1024;
/// Lines longer than this are skipped with a warning.
pub const MAX_LINE_LEN: usize = 16 * 1024;
/// User names longer than this are refused (at load and at login).
pub const MAX_USERNAME_LEN: usize = 255;

/// One user from the passwd-file (or from a checkpassword login).
#[derive(Clone, Debug)]
pub struct User {
    /// Login name as written in the file: `alice` or `alice@example.org`.
    pub name: String,
    /// Numeric uid for mail access, when given.
    pub uid: Option<u32>,
    /// Numeric gid for mail access, when given.
    pub gid: Option<u32>,
    /// The gecos (comment) field.
    pub gecos: String,
    /// Home directory, when given.
    pub home: Option<PathBuf>,
    /// Shell field (unused by mailkit, kept for completeness).
    pub shell: String,
    /// Extra fields, `key=value` or bare `key`.
    pub extra: Vec<(String, Option<String>)>,
    /// 1-based line in the passwd-file (0 when not from a file).
    pub line: usize,
    password: StoredPassword,
}

impl User {
    /// A user with just a name and nothing else (no password can log in as it).
    pub fn bare(name: &str) -> User {
        User {
            name: name.to_string(),
            uid: None,
            gid: None,
            gecos: String::new(),
            home: None,
            shell: String::new(),
            extra: Vec::new(),
            line: 0,
            password: StoredPassword::Locked,
        }
    }

    /// The part before the last `@` (the whole name when there is none).
    pub fn local_part(&self) -> &str {
        split_user(&self.name).0
    }

    /// The part after the last `@`, if any.
    pub fn domain(&self) -> Option<&str> {
        split_user(&self.name).1
    }

    /// The password's scheme name (`SHA512-CRYPT`, ... or `LOCKED`).
    pub fn scheme_name(&self) -> &'static str {
        self.password.scheme_name()
    }

    /// The plaintext password, only when stored in the PLAIN scheme (APOP, RFC 1939 section 7,
    /// needs it; hashed schemes cannot provide it).
    pub fn plaintext_password(&self) -> Option<&[u8]> {
        self.password.plaintext()
    }

    /// Constant-time check of `password` against this user's stored password.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        self.password.verify(password)
    }

    /// An extra field's value (`userdb_mail`, ...).
    pub fn extra_field(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The Maildir path of this user: the `userdb_mail`/`mail` extra field when set, else
    /// `template` (the config's `users.mail_location`). Templates take Dovecot's variables: `%u`
    /// (full user), `%n` (local part), `%d` (domain), `%h` (home), `%%`, and their long forms
    /// `%{user}`, `%{username}`, `%{domain}`, `%{home}`; a `maildir:` prefix and `:OPTIONS`
    /// suffix are ignored and a leading `~/` means the home. Errors when the template needs a
    /// home the user lacks, when a substituted name could escape its directory (`/`, `..`),
    /// or when the result is not absolute.
    pub fn mail_location(&self, template: &str) -> Result<PathBuf> {
        let template = self
            .extra_field("userdb_mail")
            .or_else(|| self.extra_field("mail"))
            .unwrap_or(template);
        expand_mail_location(template, self)
    }
}

impl User {
    /// This user's Sieve script for local delivery: the `sieve` extra field when set (as
    /// Dovecot's userdb field), else `template` (`[mrelayd] sieve`), expanded as
    /// [`User::mail_location`] expands its template; `None` when neither is given.
    pub fn sieve_location(&self, template: Option<&str>) -> Option<Result<PathBuf>> {
        let t = self
            .extra_field("sieve")
            .or(template)
            .filter(|t| !t.is_empty())?;
        Some(expand_mail_location(t, self))
    }
}

fn split_user(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once('@') {
        Some((l, d)) => (l, Some(d)),
        None => (name, None),
    }
}

fn expand_mail_location(template: &str, user: &User) -> Result<PathBuf> {
    let mut t = template.strip_prefix("maildir:").unwrap_or(template);
    // Dovecot options follow the path after ':' (`maildir:~/Maildir:LAYOUT=fs`).
    if template.starts_with("maildir:") {
        if let Some((path, _opts)) = t.split_once(':') {
            t = path;
        }
    }
    let home = || -> Result<String> {
        let h = user.home.as_ref().with_context(|| {
            format!(
                "user {} has no home for mail location {template}",
                user.name
            )
        })?;
        h.to_str()
            .map(str::to_string)
            .with_context(|| format!("home of {} is not UTF-8", user.name))
    };
    let safe = |what: &str, v: &str| -> Result<String> {
        if v.contains('/') || v == "." || v == ".." || v.contains('\0') {
            anyhow::bail!("{what} {v:?} of user {} is not safe in a path", user.name);
        }
        Ok(v.to_string())
    };
    let mut out = String::new();
    let rest = if let Some(r) = t.strip_prefix("~/") {
        out.push_str(&home()?);
        out.push('/');
        r
    } else {
        t
    };
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let var: String = match chars.next() {
            Some('{') => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => name.push(ch),
                        None => anyhow::bail!("unterminated %{{ in mail location {template}"),
                    }
                }
                name
            }
            Some(ch) => ch.to_string(),
            None => anyhow::bail!("trailing % in mail location {template}"),
        };
        match var.as_str() {
            "%" => out.push('%'),
            "u" | "user" => out.push_str(&safe("user", &user.name)?),
            "n" | "username" => out.push_str(&safe("local part", user.local_part())?),
            "d" | "domain" => out.push_str(&safe("domain", user.domain().unwrap_or(""))?),
            "h" | "home" => out.push_str(&home()?),
            other => anyhow::bail!("unknown variable %{other} in mail location {template}"),
        }
    }
    let p = PathBuf::from(out);
    if !p.is_absolute() {
        anyhow::bail!(
            "mail location {} of {} is not absolute",
            p.display(),
            user.name
        );
    }
    Ok(p)
}

/// All users of one passwd-file.
#[derive(Debug, Clone)]
pub struct UserDb {
    users: HashMap<String, User>,
    /// Lower-cased name → the passwd-file key it stands for (the first of names that differ
    /// only in case), for logins without case ([`UserDb::lookup`]).
    folded: HashMap<String, String>,
    warnings: Vec<String>,
    dummy: StoredPassword,
}

/// A SHA512-CRYPT hash (made by `doveadm pw`) of a random, forgotten string: the stand-in for unknown users when the file has no
/// hashed entry to copy the cost from.
const DUMMY_HASH: &str = "$6$KgcWH.kZuXE4aUg1$LhGMJf40YEY7AUy1gJBrXLPcHZAz3qvJ4bnObivhKcV3hoTeUGAJLGYYbnPasiXnzIO3MWCVit6rNvpbbLSyp.";

impl Default for UserDb {
    fn default() -> Self {
        UserDb {
            users: HashMap::new(),
            folded: HashMap::new(),
            warnings: Vec::new(),
            dummy: dummy_default(),
        }
    }
}

fn dummy_default() -> StoredPassword {
    StoredPassword::parse(DUMMY_HASH).unwrap_or(StoredPassword::Locked)
}

impl UserDb {
    /// Reads a passwd-file. A missing or unreadable file is an error; problems on single lines
    /// are [`warnings`](Self::warnings).
    pub fn load(path: &Path) -> Result<UserDb> {
        let bytes = crate::config::read_limited(path, MAX_PASSWD_FILE_SIZE)
            .with_context(|| format!("passwd-file {}", path.display()))?
            .ok_or_else(|| {
                exit::fail(
                    exit::CONFIG,
                    format!(
                        "passwd-file {}: larger than {MAX_PASSWD_FILE_SIZE} bytes",
                        path.display()
                    ),
                )
            })?;
        let mut db = UserDb::parse(&bytes);
        let shown = path.display().to_string();
        for w in &mut db.warnings {
            *w = format!("{shown}:{w}");
        }
        Ok(db)
    }

    /// Parses passwd-file contents (warnings are `LINE: message`).
    pub fn parse(bytes: &[u8]) -> UserDb {
        let mut db = UserDb::default();
        let mut dummy = None;
        for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let lineno = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.len() > MAX_LINE_LEN {
                db.warnings.push(format!(
                    "{lineno}: line longer than {MAX_LINE_LEN} bytes, skipped"
                ));
                continue;
            }
            let Ok(line) = std::str::from_utf8(raw) else {
                db.warnings.push(format!("{lineno}: not UTF-8, skipped"));
                continue;
            };
            if line.trim().is_empty() || line.starts_with('#') || line.starts_with(':') {
                continue;
            }
            match parse_line(line, lineno) {
                Ok((user, warn)) => {
                    for w in warn {
                        db.warnings.push(format!("{lineno}: {}: {w}", user.name));
                    }
                    if db.users.contains_key(&user.name) {
                        db.warnings.push(format!(
                            "{lineno}: user {} exists more than once; the first entry is used",
                            user.name
                        ));
                        continue;
                    }
                    if dummy.is_none()
                        && !matches!(
                            user.password,
                            StoredPassword::Locked | StoredPassword::Plain(_)
                        )
                    {
                        dummy = Some(user.password.clone());
                    }
                    db.folded
                        .entry(user.name.to_lowercase())
                        .or_insert_with(|| user.name.clone());
                    db.users.insert(user.name.clone(), user);
                }
                Err(e) => db.warnings.push(format!("{lineno}: {e}")),
            }
        }
        if let Some(d) = dummy {
            db.dummy = d;
        } else if db
            .users
            .values()
            .any(|u| matches!(u.password, StoredPassword::Plain(_)))
        {
            db.dummy = StoredPassword::Plain(b"\x00mailkit-dummy".to_vec());
        }
        db
    }

    /// Problems found while loading, `FILE:LINE: message` (daemons log them at start).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// All users (in no particular order).
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// The user named `name`: the passwd-file key written exactly so, else the key equal to it
    /// without case (Dovecot lower-cases login names, `%Lu`; domains are case-insensitive,
    /// RFC 5321 section 2.4). Of names that differ only in case, an exact spelling finds its
    /// own entry and any other spelling the first one in the file.
    pub fn lookup(&self, name: &str) -> Option<&User> {
        if let Some(u) = self.users.get(name) {
            return Some(u);
        }
        self.folded
            .get(&name.to_lowercase())
            .and_then(|key| self.users.get(key))
    }

    /// The user a login name or mail address stands for: the entry [`lookup`](Self::lookup)
    /// finds for the whole name (a virtual user `local@domain`, or a plain user logging in by
    /// its plain name), else, when `domain` is one of `local_domains` (the served domains), the
    /// plain user `local`. So `demo`, `DEMO` and `demo@localhost` are one user when
    /// `localhost` is served. The entry found is the canonical user: its name decides the
    /// Maildir, the sender check and the throttle key.
    pub fn lookup_address(&self, address: &str, local_domains: &[String]) -> Option<&User> {
        if let Some(u) = self.lookup(address) {
            return Some(u);
        }
        let (local, domain) = split_user(address);
        let domain = domain?.trim_end_matches('.');
        if local.is_empty() || local.contains('@') {
            return None;
        }
        if local_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            return self.lookup(local);
        }
        None
    }

    /// Constant-time password check; an unknown user costs one hash computation like a known
    /// one (with the cost parameters of the file's first hashed entry).
    pub fn verify(&self, name: &str, password: &[u8]) -> Option<&User> {
        self.verify_found(self.lookup(name), password)
    }

    /// [`verify`](Self::verify) of the entry a lookup found (`None`: an unknown user, which
    /// costs the dummy hash).
    fn verify_found<'a>(&'a self, found: Option<&'a User>, password: &[u8]) -> Option<&'a User> {
        match found {
            Some(u) if !matches!(u.password, StoredPassword::Locked) => {
                if u.password.verify(password) {
                    Some(u)
                } else {
                    None
                }
            }
            _ => {
                let _ = self.dummy.verify(password);
                None
            }
        }
    }
}

/// Parses one non-comment line into a user and per-line warnings.
fn parse_line(line: &str, lineno: usize) -> Result<(User, Vec<String>), String> {
    let mut fields = line.splitn(8, ':');
    let name = fields.next().unwrap_or("");
    if name.is_empty() {
        return Err("empty user name".into());
    }
    if name.len() > MAX_USERNAME_LEN {
        return Err(format!("user name longer than {MAX_USERNAME_LEN} bytes"));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "user name {name:?} has spaces or control characters"
        ));
    }
    let mut warnings = Vec::new();
    let password = match StoredPassword::parse(fields.next().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => {
            warnings.push(format!("{e}; this user cannot log in"));
            StoredPassword::Locked
        }
    };
    // A name in the uid or gid field is a system user or group, looked up through NSS
    // (getpwnam_r/getgrnam_r), as Dovecot does; a lookup that fails counts as unknown.
    let mut id = |what: &str, v: Option<&str>, lookup: fn(&str) -> Option<u32>| -> Option<u32> {
        let v = v.unwrap_or("").trim();
        if v.is_empty() {
            return None;
        }
        if let Ok(n) = v.parse() {
            return Some(n);
        }
        match lookup(v) {
            Some(n) => Some(n),
            None => {
                warnings.push(format!("unknown {what} {v:?}"));
                None
            }
        }
    };
    let uid = id("uid", fields.next(), |name| {
        os::lookup_user(name).ok().flatten().map(|(uid, _)| uid)
    });
    let gid = id("gid", fields.next(), |name| {
        os::lookup_group(name).ok().flatten()
    });
    let gecos = fields.next().unwrap_or("").to_string();
    let home = fields.next().filter(|h| !h.is_empty()).map(PathBuf::from);
    let shell = fields.next().unwrap_or("").to_string();
    let extra = fields
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (kv.to_string(), None),
        })
        .collect();
    Ok((
        User {
            name: name.to_string(),
            uid,
            gid,
            gecos,
            home,
            shell,
            extra,
            line: lineno,
            password,
        },
        warnings,
    ))
}

/// The result of a login attempt.
#[derive(Debug, Clone)]
pub enum AuthResult {
    /// Logged in as this user.
    Ok(User),
    /// Wrong user or password (the two are never distinguished).
    Failed,
    /// The client's address is locked out for this long; no password was checked.
    Throttled(Duration),
    /// The backend could not decide (checkpassword exit 111, timeout, ...): try again later.
    TempFail(String),
}

/// [`AuthResult`] plus how long to wait before answering (failures are slowed down).
#[derive(Debug, Clone)]
pub struct Verdict {
    /// What happened.
    pub result: AuthResult,
    /// Sleep this long before sending the reply.
    pub delay: Duration,
}

/// The passwd-file of a running program, re-read when it changes (like Dovecot); a version
/// that fails to load keeps the last good users (see [`Reloading`]).
type PasswdFile = Reloading<UserDb>;

/// How often the passwd-file is looked at (one `stat`), at most: a password change applies
/// to logins from a second after it on, and a burst of logins or RCPTs costs no `stat` each.
pub const PASSWD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

fn open_passwd(path: &Path) -> Result<PasswdFile> {
    Reloading::open(path, "passwd-file", UserDb::load, PASSWD_CHECK_INTERVAL)
}

/// What a successful login of mpopd or mimapd opens: the user name as the user database knows
/// it (the canonical user, issue 12) and the user's Maildir (mimapd's INBOX).
#[derive(Debug, Clone)]
pub struct Account {
    /// The canonical user name.
    pub user: String,
    /// The user's Maildir.
    pub maildir: PathBuf,
}

/// The address the login throttle counts a client under: its own, or loopback when the peer
/// is unknown (inetd on a pipe, behind ssh or a local tunnel).
pub fn throttle_ip(peer: Option<IpAddr>) -> IpAddr {
    peer.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// The one login check: a passwd-file and/or a checkpassword program, behind a [`LoginThrottle`].
#[derive(Debug)]
pub struct Authenticator {
    passwd: Option<PasswdFile>,
    checkpassword: Option<Checkpassword>,
    throttle: LoginThrottle,
    mail_location: String,
    /// Served domains (lower case): `user@domain` of these is throttled as `user`.
    domains: Vec<String>,
}

impl Authenticator {
    /// From the shared config: `[users] passwd_file`, `mail_location`, `[auth] checkpassword`
    /// and the throttle keys. Without checkpassword the passwd-file must load (else exit 78);
    /// with it, the passwd-file is optional and only serves lookups.
    pub fn from_config(config: &Config) -> Result<Authenticator> {
        let throttle = ThrottleConfig::from(&config.auth);
        let path = &config.users.passwd_file;
        let a = match &config.auth.checkpassword {
            Some(argv) => {
                let passwd = path.exists().then_some(path.as_path());
                let program = Checkpassword::new(argv.clone());
                Authenticator::checkpassword(program, passwd, throttle)
            }
            None => Authenticator::passwd_file(path, throttle),
        };
        // The same served domains as mrelayd's router: the configured ones, else the hostname.
        let mut domains = config.users.domains.clone();
        if domains.is_empty() {
            domains.push(config.hostname.clone());
        }
        Ok(a.map_err(config_fail)?
            .with_mail_location(&config.users.mail_location)
            .with_domains(&domains))
    }

    /// Passwd-file backend.
    pub fn passwd_file(path: &Path, throttle: ThrottleConfig) -> Result<Authenticator> {
        Ok(Authenticator {
            passwd: Some(open_passwd(path)?),
            checkpassword: None,
            throttle: LoginThrottle::new(throttle),
            mail_location: crate::config::DEFAULT_MAIL_LOCATION.to_string(),
            domains: Vec::new(),
        })
    }

    /// Checkpassword backend, optionally with a passwd-file for lookups.
    pub fn checkpassword(
        program: Checkpassword,
        passwd: Option<&Path>,
        throttle: ThrottleConfig,
    ) -> Result<Authenticator> {
        Ok(Authenticator {
            passwd: passwd.map(open_passwd).transpose()?,
            checkpassword: Some(program),
            throttle: LoginThrottle::new(throttle),
            mail_location: crate::config::DEFAULT_MAIL_LOCATION.to_string(),
            domains: Vec::new(),
        })
    }

    /// Sets the mail location template used by [`mailbox`](Self::mailbox).
    pub fn with_mail_location(mut self, template: &str) -> Self {
        self.mail_location = template.to_string();
        self
    }

    /// Sets the served domains: a login as `user@domain` of one of them logs in as the plain
    /// user `user` when there is no virtual user of that name ([`lookup_login`](Self::lookup_login)),
    /// and is throttled under the same key ([`throttle::canonical_user`]).
    pub fn with_domains(mut self, domains: &[String]) -> Self {
        self.domains = domains.iter().map(|d| d.to_ascii_lowercase()).collect();
        self
    }

    /// The key a login as `user` is throttled under: [`throttle::canonical_user`] of the
    /// passwd-file entry the name logs in as ([`lookup_login`](Self::lookup_login)), else of the
    /// name itself, so every spelling of one account (`demo`, `DEMO@localhost`) shares one
    /// counter, and an unknown name is counted like a known one.
    pub fn throttle_key(&self, user: &str) -> String {
        match self.users().lookup_address(user, &self.domains) {
            Some(u) => throttle::canonical_user(&u.name, &self.domains),
            None => throttle::canonical_user(user, &self.domains),
        }
    }

    /// The throttle (daemons may consult [`LoginThrottle::locked`] before even asking).
    pub fn throttle(&self) -> &LoginThrottle {
        &self.throttle
    }

    /// The current passwd-file users (empty when there is no passwd-file).
    pub fn users(&self) -> Arc<UserDb> {
        self.passwd
            .as_ref()
            .map(PasswdFile::current)
            .unwrap_or_default()
    }

    /// A user from the passwd-file by its name, without a password check (see
    /// [`UserDb::lookup`]).
    pub fn lookup(&self, name: &str) -> Option<User> {
        self.users().lookup(name).cloned()
    }

    /// The passwd-file user a login name stands for: `user`, `USER` or `user@domain` of a
    /// served domain ([`UserDb::lookup_address`] with the served domains), without a password
    /// check. Every login (SMTP AUTH, POP3 USER/PASS, AUTH and APOP) goes through this lookup.
    pub fn lookup_login(&self, name: &str) -> Option<User> {
        self.users().lookup_address(name, &self.domains).cloned()
    }

    /// The account a successful login opens: the canonical name and its Maildir.
    pub fn account(&self, user: &User) -> Result<Account> {
        Ok(Account {
            user: user.name.clone(),
            maildir: self.mailbox(user)?,
        })
    }

    /// The Maildir of a logged-in user per the configured template.
    pub fn mailbox(&self, user: &User) -> Result<PathBuf> {
        user.mail_location(&self.mail_location)
    }

    /// Checks a login (blocking: hashing takes milliseconds, checkpassword runs a process; from
    /// async code use [`check_async`](Self::check_async)). Never says whether the user exists.
    pub fn check(&self, user: &str, password: &[u8], peer: IpAddr) -> Verdict {
        if let Some(left) = self.throttle.locked(peer) {
            return Verdict {
                result: AuthResult::Throttled(left),
                delay: self.throttle.config().failure_delay,
            };
        }
        let key = self.throttle_key(user);
        // Taken before the check: the same for a right and a wrong password.
        let penalty = self.throttle.user_delay(&key);
        let result = self.backend_check(user, password, peer);
        self.finish(result, peer, &key, penalty)
    }

    /// Records the outcome in the throttle; the delay is the user's penalty, and for a failure
    /// at least the address's delay.
    fn finish(&self, result: AuthResult, peer: IpAddr, key: &str, penalty: Duration) -> Verdict {
        let delay = match &result {
            AuthResult::Ok(_) => {
                self.throttle.record_success(peer, key);
                penalty
            }
            AuthResult::Failed => self.throttle.record_failure(peer, key).max(penalty),
            AuthResult::Throttled(_) | AuthResult::TempFail(_) => penalty,
        };
        Verdict { result, delay }
    }

    fn backend_check(&self, user: &str, password: &[u8], peer: IpAddr) -> AuthResult {
        let valid_name = !user.is_empty()
            && user.len() <= MAX_USERNAME_LEN
            && !user.chars().any(|c| c.is_control());
        if let Some(cp) = &self.checkpassword {
            if !valid_name {
                return AuthResult::Failed;
            }
            // The program is asked about the passwd-file's name for the login when there is
            // one (so `demo@localhost` is checked as `demo`), else about the name as given.
            let known = self.lookup_login(user);
            let name = known.as_ref().map_or(user, |u| u.name.as_str());
            return match cp.check(name, password, Some(peer)) {
                CheckpasswordResult::Ok { home, uid, gid } => {
                    let mut u = known.unwrap_or_else(|| User::bare(user));
                    u.password = StoredPassword::Locked;
                    if home.is_some() {
                        u.home = home;
                    }
                    u.uid = uid.or(u.uid);
                    u.gid = gid.or(u.gid);
                    AuthResult::Ok(u)
                }
                CheckpasswordResult::Bad => AuthResult::Failed,
                CheckpasswordResult::TempFail(why) => AuthResult::TempFail(why),
            };
        }
        let db = self.users();
        let found = if valid_name {
            db.lookup_address(user, &self.domains)
        } else {
            None
        };
        match db.verify_found(found, password) {
            Some(u) => AuthResult::Ok(u.clone()),
            None => AuthResult::Failed,
        }
    }

    /// A check for mechanisms that need the plaintext password (APOP, RFC 1939 section 7):
    /// `matches` gets the stored plaintext and says whether the client's proof fits it. Users
    /// without a PLAIN password fail; the throttle applies as for [`check`](Self::check), and
    /// `matches` runs for unknown users too (on a random secret) to keep timing uniform.
    pub fn check_with_plaintext(
        &self,
        user: &str,
        peer: IpAddr,
        matches: impl FnOnce(&[u8]) -> bool,
    ) -> Verdict {
        if let Some(left) = self.throttle.locked(peer) {
            return Verdict {
                result: AuthResult::Throttled(left),
                delay: self.throttle.config().failure_delay,
            };
        }
        let key = self.throttle_key(user);
        let penalty = self.throttle.user_delay(&key);
        let db = self.users();
        let found = db
            .lookup_address(user, &self.domains)
            .filter(|u| u.plaintext_password().is_some());
        let random = rand::random::<[u8; 16]>();
        let secret = found
            .and_then(User::plaintext_password)
            .unwrap_or(&random[..]);
        let ok = matches(secret);
        let result = match found {
            Some(u) if ok => AuthResult::Ok(u.clone()),
            _ => AuthResult::Failed,
        };
        self.finish(result, peer, &key, penalty)
    }

    /// Whether any user could use [`check_with_plaintext`](Self::check_with_plaintext) (to
    /// decide whether to offer APOP at all).
    pub fn has_plaintext_passwords(&self) -> bool {
        self.users()
            .users()
            .any(|u| u.plaintext_password().is_some())
    }

    /// [`check`](Self::check) for tokio code: runs on a blocking thread, then sleeps the
    /// verdict's delay, so the caller just awaits the result and replies.
    pub async fn check_async(
        self: &Arc<Self>,
        user: &str,
        password: &[u8],
        peer: IpAddr,
    ) -> AuthResult {
        let me = Arc::clone(self);
        let user = user.to_string();
        let password = password.to_vec();
        let verdict = tokio::task::spawn_blocking(move || me.check(&user, &password, peer)).await;
        match verdict {
            Ok(v) => {
                if !v.delay.is_zero() {
                    tokio::time::sleep(v.delay).await;
                }
                v.result
            }
            Err(e) => AuthResult::TempFail(format!("authentication task failed: {e}")),
        }
    }
}

fn config_fail(e: anyhow::Error) -> anyhow::Error {
    if e.chain()
        .any(|c| c.downcast_ref::<exit::Failure>().is_some())
    {
        return e;
    }
    exit::fail(exit::CONFIG, format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_file_is_looked_at_once_a_second_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        std::fs::write(&path, "u:{PLAIN}x\n").unwrap();
        let start = std::time::Instant::now();
        let a = Authenticator::passwd_file(&path, ThrottleConfig::default()).unwrap();
        for _ in 0..1000 {
            assert!(a.lookup("u").is_some());
        }
        let looks = a.passwd.as_ref().map_or(0, PasswdFile::looks);
        // Before: one stat per lookup (interval zero).
        assert!(looks <= start.elapsed().as_secs() + 1, "{looks} stats");
    }

    #[test]
    fn dummy_hash_is_a_real_sha512_crypt() {
        let d = StoredPassword::parse(DUMMY_HASH).unwrap();
        assert_eq!(d.scheme_name(), "SHA512-CRYPT");
        assert!(!d.verify(b""));
    }

    #[test]
    fn unknown_users_cost_the_first_hashed_entrys_scheme() {
        let blf = hash_password(Scheme::BlfCrypt, b"x").unwrap();
        let db = UserDb::parse(format!("p:{{PLAIN}}x\nlocked:\nb:{blf}\n").as_bytes());
        assert_eq!(db.dummy.scheme_name(), "BLF-CRYPT");
        let db = UserDb::parse(b"p:{PLAIN}x\n");
        assert_eq!(db.dummy.scheme_name(), "PLAIN");
        let db = UserDb::parse(b"");
        assert_eq!(db.dummy.scheme_name(), "SHA512-CRYPT");
        // The stand-in never lets anyone in.
        assert!(db.verify("nobody", b"").is_none());
    }

    #[test]
    fn locked_and_passwordless_users_exist_but_cannot_log_in() {
        let db = UserDb::parse(b"a::1:1::/h::\nb:*:1:1::/h::\n");
        for name in ["a", "b"] {
            assert!(db.lookup(name).is_some());
            assert!(db.verify(name, b"").is_none());
            assert!(db.verify(name, b"*").is_none());
        }
    }

    #[test]
    fn extra_fields_parse() {
        let db = UserDb::parse(
            b"u:{PLAIN}x:1:2:g:/h:/bin/sh:userdb_mail=maildir:~/M nopassword quota=1:2\n",
        );
        let u = db.lookup("u").unwrap();
        assert_eq!(u.extra_field("userdb_mail"), Some("maildir:~/M"));
        assert_eq!(u.extra_field("quota"), Some("1:2"));
        assert!(u
            .extra
            .iter()
            .any(|(k, v)| k == "nopassword" && v.is_none()));
        assert_eq!(u.mail_location("/var/mail/%n").unwrap(), Path::new("/h/M"));
        assert_eq!(u.shell, "/bin/sh");
    }
}
