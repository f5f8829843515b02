//! mfetch's accounts: the `[mfetch]` section and its `[mfetch.accounts.NAME]` tables (the
//! shape of msend's accounts), the `mfetch URL` one-off form, and their resolution with the
//! command line into one [`Job`] per account.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde::Deserialize;

use crate::exit;
use crate::tls::{self, Mode, Verify};

/// The `[mfetch]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfetchConfig {
    /// Default destination Maildir of every account.
    pub maildir: Option<PathBuf>,
    /// Where the per-account state files are.
    pub state_dir: Option<PathBuf>,
    /// How many accounts `--all` fetches at once.
    pub concurrency: Option<usize>,
    /// `--idle`: seconds between two fetches of a POP3 account or an IMAP server without
    /// IDLE (`--poll` overrides).
    pub poll_secs: Option<u64>,
    /// The accounts.
    pub accounts: BTreeMap<String, Account>,
}

impl crate::config::Section for MfetchConfig {
    fn paths(&mut self) -> Vec<&mut PathBuf> {
        let accounts = self
            .accounts
            .values_mut()
            .flat_map(|a| a.ca_file.iter_mut().chain(a.maildir.iter_mut()));
        self.maildir
            .iter_mut()
            .chain(self.state_dir.iter_mut())
            .chain(accounts)
            .collect()
    }
}

/// One `[mfetch.accounts.NAME]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Account {
    /// `pop3://`, `pop3s://`, `imap://` or `imaps://` URL (user, port and folder optional).
    pub server: Option<String>,
    /// Login name (overrides the URL's).
    pub user: Option<String>,
    /// Command (sh -c) whose first output line is the password.
    pub password_command: Option<String>,
    /// Seconds the password command may run.
    pub password_command_timeout: Option<u64>,
    /// TLS mode over the URL's (`starttls`, `tls`, `none`).
    #[serde(deserialize_with = "crate::msend::de_tls")]
    pub tls: Option<Mode>,
    /// CA file instead of the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 pin of the server's key.
    #[serde(deserialize_with = "crate::msend::de_pin")]
    pub tls_fingerprint: Option<tls::SpkiPin>,
    /// Send the password without TLS.
    pub allow_plaintext: bool,
    /// Login method: `any`, `sasl-plain`, `user` (POP3 USER/PASS, IMAP LOGIN), `apop`,
    /// `xoauth2`, `oauthbearer` (the password command prints the OAuth 2.0 token).
    pub auth: Option<String>,
    /// IMAP folders (default: the URL's, else INBOX).
    pub folders: Vec<String>,
    /// Delete on the server after a durable copy.
    pub delete: bool,
    /// IMAP: set \Seen on the server after a durable copy (kept messages).
    pub seen: bool,
    /// IMAP: move to this server folder after a durable copy.
    pub move_to: Option<String>,
    /// Destination Maildir.
    pub maildir: Option<PathBuf>,
    /// MDA command instead of a Maildir.
    pub mda: Option<String>,
    /// RECIPIENT given to the MDA.
    pub recipient: Option<String>,
    /// Seconds for the connect and each read.
    pub timeout: Option<u64>,
}

/// The mail protocol of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// POP3 (RFC 1939).
    Pop3,
    /// IMAP4rev1 (RFC 3501).
    Imap,
}

/// How to log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// SASL PLAIN when offered, else USER/PASS (POP3) or LOGIN (IMAP).
    Any,
    /// SASL PLAIN only (POP3 AUTH, IMAP AUTHENTICATE; RFC 4616).
    SaslPlain,
    /// POP3 USER/PASS, IMAP LOGIN.
    User,
    /// POP3 APOP (RFC 1939 §7).
    Apop,
    /// SASL XOAUTH2 with an OAuth 2.0 token from the password command.
    Xoauth2,
    /// SASL OAUTHBEARER (RFC 7628) with an OAuth 2.0 token from the password command.
    Oauthbearer,
}

impl Auth {
    /// The SASL mechanism this login method uses, if it is one.
    pub fn sasl(self) -> Option<crate::auth::Mechanism> {
        use crate::auth::Mechanism;
        match self {
            Auth::SaslPlain => Some(Mechanism::Plain),
            Auth::Xoauth2 => Some(Mechanism::Xoauth2),
            Auth::Oauthbearer => Some(Mechanism::Oauthbearer),
            Auth::Any | Auth::User | Auth::Apop => None,
        }
    }

    /// The secret is an OAuth 2.0 token (it expires: `--idle` fetches a fresh one when refused).
    pub fn uses_token(self) -> bool {
        self.sasl().is_some_and(|m| m.uses_token())
    }
}

/// The `auth` keywords.
pub const AUTH_KEYWORDS: &[&str] = &[
    "any",
    "sasl-plain",
    "user",
    "apop",
    "xoauth2",
    "oauthbearer",
];

fn auth_of(s: &str) -> Option<Auth> {
    Some(match s {
        "any" => Auth::Any,
        "sasl-plain" => Auth::SaslPlain,
        "user" => Auth::User,
        "apop" => Auth::Apop,
        "xoauth2" => Auth::Xoauth2,
        "oauthbearer" => Auth::Oauthbearer,
        _ => return None,
    })
}

/// A parsed `pop3s://user@host:port/folder` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Protocol.
    pub proto: Proto,
    /// TLS from the scheme: implicit for `pop3s`/`imaps`, STARTTLS otherwise.
    pub tls: Mode,
    /// User (percent-decoded), if given.
    pub user: Option<String>,
    /// Host name or IP (brackets removed).
    pub host: String,
    /// Port (default by scheme).
    pub port: u16,
    /// The folder of an IMAP URL (percent-decoded), if given.
    pub folder: Option<String>,
}

/// `%XX` escapes decoded (invalid UTF-8 replaced), anything else kept.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Url {
    /// Parses a server URL (RFC 5092 for IMAP, RFC 2384 for POP3; a password in it is refused:
    /// it would be visible in `ps` and in the configuration).
    pub fn parse(s: &str) -> Result<Url, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("{s:?} is not a pop3://, pop3s://, imap:// or imaps:// URL"))?;
        let (proto, tls, port) = match scheme.to_ascii_lowercase().as_str() {
            "pop3" | "pop" => (Proto::Pop3, Mode::Starttls, 110),
            "pop3s" | "pops" => (Proto::Pop3, Mode::Implicit, 995),
            "imap" => (Proto::Imap, Mode::Starttls, 143),
            "imaps" => (Proto::Imap, Mode::Implicit, 993),
            other => return Err(format!("unknown URL scheme {other:?} in {s:?}")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if let Some(u) = user {
            if u.contains(':') {
                return Err(format!(
                    "{s:?}: a password in the URL is refused; use --password-command or ~/.netrc"
                ));
            }
        }
        // `;AUTH=...` (RFC 5092 §3.2) is accepted and ignored: the auth key chooses.
        let user = user
            .map(|u| u.split(';').next().unwrap_or(u))
            .filter(|u| !u.is_empty())
            .map(percent_decode);
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed [ in host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{s:?}: bad port {p:?}"))?,
                None => port,
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("{s:?}: bad port {p:?}"))?,
                ),
                None => (hostport.to_string(), port),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        let folder = path.split(';').next().unwrap_or("");
        let folder = (!folder.is_empty()).then(|| percent_decode(folder));
        if proto == Proto::Pop3 && folder.is_some() {
            return Err(format!("{s:?}: POP3 has no folders"));
        }
        Ok(Url {
            proto,
            tls,
            user,
            host,
            port,
            folder,
        })
    }

    /// The URL without user and password, for names and messages.
    pub fn shown(&self) -> String {
        let scheme = match (self.proto, self.tls) {
            (Proto::Pop3, Mode::Implicit) => "pop3s",
            (Proto::Pop3, _) => "pop3",
            (Proto::Imap, Mode::Implicit) => "imaps",
            (Proto::Imap, _) => "imap",
        };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// Where the password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `sh -c COMMAND`, killed after the timeout.
    Command(String, Duration),
    /// `~/.netrc`, else a prompt when stdin is a terminal.
    NetrcOrPrompt,
}

/// Everything one account's fetch needs.
#[derive(Debug, Clone)]
pub struct Job {
    /// Account name (`URL` for the one-off form), for messages.
    pub name: String,
    /// Name of its state file (safe as a file name).
    pub state_name: String,
    /// The server.
    pub url: Url,
    /// TLS mode in effect.
    pub tls: Mode,
    /// Certificate check.
    pub verify: Verify,
    /// Password may go out without TLS.
    pub allow_plaintext: bool,
    /// Login method.
    pub auth: Auth,
    /// Login name.
    pub user: String,
    /// Password source.
    pub password: PasswordSource,
    /// IMAP folders.
    pub folders: Vec<String>,
    /// Delete after a durable copy.
    pub delete: bool,
    /// IMAP: set \Seen after a durable copy.
    pub seen: bool,
    /// IMAP: move there after a durable copy.
    pub move_to: Option<String>,
    /// Maildir destination (when no MDA).
    pub maildir: PathBuf,
    /// MDA command.
    pub mda: Option<String>,
    /// RECIPIENT for the MDA.
    pub recipient: String,
    /// Connect and read time limit.
    pub timeout: Duration,
    /// Directory of the state file.
    pub state_dir: PathBuf,
    /// IMAP: only messages since this date (`DD-Mon-YYYY`, RFC 3501 §9 date).
    pub since: Option<String>,
    /// At most this many messages per run.
    pub limit: Option<usize>,
}

/// What the command line says (over the account and the section).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--keep` (false) or `--delete` (true).
    pub delete: Option<bool>,
    /// `--mda`.
    pub mda: Option<String>,
    /// `--maildir`.
    pub maildir: Option<PathBuf>,
    /// `--folder`.
    pub folders: Vec<String>,
    /// `--since`, as an IMAP date.
    pub since: Option<String>,
    /// `--limit`.
    pub limit: Option<usize>,
    /// `--password-command`.
    pub password_command: Option<String>,
    /// `--ca-file`.
    pub ca_file: Option<PathBuf>,
    /// `--fingerprint`.
    pub fingerprint: Option<tls::SpkiPin>,
    /// `--allow-plaintext`.
    pub allow_plaintext: bool,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--timeout`.
    pub timeout: Option<u64>,
    /// `--recipient`.
    pub recipient: Option<String>,
}

fn bad_config(msg: impl Into<String>) -> anyhow::Error {
    exit::fail(exit::CONFIG, msg)
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// The default state directory: `$XDG_STATE_HOME/mailkit/mfetch`, else
/// `~/.local/state/mailkit/mfetch`, else `<state_dir>/mfetch` of the configuration.
pub fn default_state_dir(config_state_dir: &Path) -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("mailkit/mfetch");
    }
    match home() {
        Some(h) => h.join(".local/state/mailkit/mfetch"),
        None => config_state_dir.join("mfetch"),
    }
}

/// A file-name-safe form of an account name.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// Parses `--since`: `YYYY-MM-DD` or RFC 3501's `DD-Mon-YYYY`, into the IMAP form.
pub fn imap_date(s: &str) -> Result<String, String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let bad = || format!("bad date {s:?}: use YYYY-MM-DD");
    let parts: Vec<&str> = s.split('-').collect();
    let [a, b, c] = parts.as_slice() else {
        return Err(bad());
    };
    if a.len() == 4 {
        let (y, m, d): (u32, usize, u32) = (
            a.parse().map_err(|_| bad())?,
            b.parse().map_err(|_| bad())?,
            c.parse().map_err(|_| bad())?,
        );
        if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
            return Err(bad());
        }
        return Ok(format!("{d}-{}-{y}", MONTHS[m - 1]));
    }
    let d: u32 = a.parse().map_err(|_| bad())?;
    let y: u32 = c.parse().map_err(|_| bad())?;
    let m = MONTHS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(b))
        .ok_or_else(bad)?;
    Ok(format!("{d}-{m}-{y}"))
}

/// The local user's name (RECIPIENT default).
fn local_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".into())
}

/// Resolves one account (or the one-off URL when `account` is `None`) into a [`Job`].
pub fn resolve(
    name: &str,
    account: &Account,
    url_override: Option<&str>,
    section: &MfetchConfig,
    config_state_dir: &Path,
    o: &Overrides,
) -> Result<Job> {
    let server = url_override
        .or(account.server.as_deref())
        .ok_or_else(|| bad_config(format!("account {name}: no server")))?;
    let url = Url::parse(server).map_err(|e| bad_config(format!("account {name}: {e}")))?;
    let user = account
        .user
        .clone()
        .or_else(|| url.user.clone())
        .ok_or_else(|| {
            bad_config(format!(
                "account {name}: no user (user = or user@ in the URL)"
            ))
        })?;
    if user.bytes().any(|b| b.is_ascii_control()) {
        return Err(bad_config(format!("account {name}: bad user {user:?}")));
    }
    let tls = account.tls.unwrap_or(url.tls);
    let allow_plaintext = account.allow_plaintext || o.allow_plaintext;
    if tls == Mode::Off && !allow_plaintext {
        return Err(bad_config(format!(
            "account {name}: tls = \"none\" would send the password in clear; \
             set allow_plaintext = true (or --allow-plaintext) if that is meant"
        )));
    }
    let fingerprint = o.fingerprint.or(account.tls_fingerprint);
    let ca_file = o.ca_file.clone().or_else(|| account.ca_file.clone());
    let verify = match fingerprint {
        Some(pin) => Verify::Pin(pin),
        None => Verify::WebPki.with_ca_file(ca_file.as_deref()),
    };
    let auth = match account.auth.as_deref() {
        None => Auth::Any,
        Some(a) => auth_of(a).ok_or_else(|| {
            bad_config(format!(
                "account {name}: auth = {a:?}: expected one of {}",
                AUTH_KEYWORDS.join(", ")
            ))
        })?,
    };
    if auth == Auth::Apop && url.proto == Proto::Imap {
        return Err(bad_config(format!("account {name}: APOP is POP3 only")));
    }
    let password = match o
        .password_command
        .clone()
        .or_else(|| account.password_command.clone())
    {
        Some(c) => PasswordSource::Command(
            c,
            account.password_command_timeout.map_or(
                crate::outbound::password::PASSWORD_COMMAND_TIMEOUT,
                Duration::from_secs,
            ),
        ),
        None => PasswordSource::NetrcOrPrompt,
    };
    let folders = if !o.folders.is_empty() {
        o.folders.clone()
    } else if !account.folders.is_empty() {
        account.folders.clone()
    } else {
        vec![url.folder.clone().unwrap_or_else(|| "INBOX".into())]
    };
    let maildir = o
        .maildir
        .clone()
        .or_else(|| account.maildir.clone())
        .or_else(|| section.maildir.clone())
        .or_else(|| home().map(|h| h.join("Maildir")))
        .ok_or_else(|| bad_config("no Maildir: give --maildir, maildir = or set $HOME"))?;
    let state_dir = o
        .state_dir
        .clone()
        .or_else(|| section.state_dir.clone())
        .unwrap_or_else(|| default_state_dir(config_state_dir));
    let state_name = if url_override.is_some() && account.server.is_none() {
        // One-off: protocol, host and user are the account (pop3:// and pop3s:// to one
        // server share what was fetched).
        let proto = match url.proto {
            Proto::Pop3 => "pop3",
            Proto::Imap => "imap",
        };
        let host = url.host.to_ascii_lowercase();
        let id = crate::mda::memory::sha256_hex(format!("{proto}\0{host}\0{user}").as_bytes());
        format!("url-{}", &id[..16])
    } else {
        format!("account-{}", safe_name(name))
    };
    Ok(Job {
        name: name.to_string(),
        state_name,
        tls,
        verify,
        allow_plaintext,
        auth,
        user,
        password,
        folders,
        delete: o.delete.unwrap_or(account.delete),
        seen: account.seen,
        move_to: account.move_to.clone(),
        maildir,
        mda: o.mda.clone().or_else(|| account.mda.clone()),
        recipient: o
            .recipient
            .clone()
            .or_else(|| account.recipient.clone())
            .unwrap_or_else(local_user),
        timeout: Duration::from_secs(o.timeout.or(account.timeout).unwrap_or(60).max(1)),
        state_dir,
        since: o.since.clone(),
        limit: o.limit,
        url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("pops://me%40x@mail.example.org/").unwrap();
        assert_eq!(
            (u.proto, u.tls, u.user.as_deref(), u.host.as_str(), u.port),
            (
                Proto::Pop3,
                Mode::Implicit,
                Some("me@x"),
                "mail.example.org",
                995
            )
        );
        let u = Url::parse("imap://a;AUTH=*@[::1]:1143/Lists%2FRust").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.folder.as_deref()),
            (Mode::Starttls, "::1", 1143, Some("Lists/Rust"))
        );
        assert!(Url::parse("imaps://u:secret@h/").is_err());
        assert!(Url::parse("http://h/").is_err());
        assert!(Url::parse("pop3://h/INBOX").is_err());
        assert_eq!(Url::parse("imaps://h").unwrap().shown(), "imaps://h:993");
    }

    #[test]
    fn dates() {
        assert_eq!(imap_date("2026-01-05").unwrap(), "5-Jan-2026");
        assert_eq!(imap_date("5-jan-2026").unwrap(), "5-Jan-2026");
        assert!(imap_date("2026-13-01").is_err());
        assert!(imap_date("yesterday").is_err());
    }
}
