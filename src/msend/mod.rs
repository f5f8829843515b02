//! msend, the submission client: accounts and configuration ([`account`], [`netrc`]), message
//! preparation ([`message`], [`compose`], [`submit`]), delivery to a smarthost or directly by MX
//! ([`deliver`]), the `--queue` spool ([`spool`], [`flush`]) and `-bs` ([`bs`]). `cli::msend`
//! only turns the command line into [`account::Flags`] and [`submit::Submission`] and picks
//! the mode.
//!
//! # Configuration
//! An `[msend]` section in the mailkit config, or the same keys at the top level of
//! `~/.config/mailkit/msend.toml` (which wins when it exists and no `--config` is given):
//! ```toml
//! default = "work"                 # account used without -a
//! queue = "/home/me/.msend-queue"  # spool for temporary failures (optional)
//! domain = "example.org"           # bare names (cron's root) get @example.org; default hostname
//! aliases = "/etc/msend-aliases"   # optional, msmtp's format: root: me@example.org ([`names`])
//! [accounts.work]                  # in mailkit.toml: [msend.accounts.work]
//! server = "smtp.example.org"
//! port = 587                       # default 587 (starttls/none) or 465 (tls)
//! tls = "starttls"                 # starttls (default) | tls | none
//! user = "me"
//! password_command = "pass show mail/work"   # run with sh -c; first line of stdout
//! password_command_timeout = 30    # seconds, then it is killed (with its children): exit 78
//! from = "me@example.org"          # envelope sender and From: when missing
//! ca_file = "/etc/ssl/my-ca.pem"   # instead of the webpki roots
//! tls_fingerprint = "9f86d0...0a08"  # SHA-256 of the server's key (SPKI): no CA/name check
//! queue = "/home/me/.msend-queue"  # overrides the global queue
//! domain = "example.org"           # overrides the global domain (msmtp's maildomain)
//! aliases = "/home/me/.aliases"    # overrides the global aliases
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::tls;

pub mod account;
pub mod bs;
pub mod compose;
pub mod deliver;
pub mod flush;
pub mod message;
pub mod names;
pub mod netrc;
pub mod spool;
pub mod submit;

/// The spellings of an account's `tls` and what they mean: `starttls` (required, port 587),
/// `tls` (implicit TLS, port 465, RFC 8314), `none` (no TLS at all; AUTH is then refused).
pub const TLS_KEYWORDS: &[&str] = &["starttls", "tls", "none"];

/// The TLS mode a `tls` keyword stands for.
pub fn tls_mode(keyword: &str) -> Option<tls::Mode> {
    Some(match keyword {
        "starttls" => tls::Mode::Starttls,
        "tls" => tls::Mode::Implicit,
        "none" => tls::Mode::Off,
        _ => return None,
    })
}

/// The `tls` keyword of a mode ([`TLS_KEYWORDS`]); opportunistic TLS has none (msend's
/// accounts and flags never choose it).
pub fn tls_keyword(mode: tls::Mode) -> Option<&'static str> {
    Some(match mode {
        tls::Mode::Starttls => "starttls",
        tls::Mode::Implicit => "tls",
        tls::Mode::Off => "none",
        tls::Mode::Opportunistic => return None,
    })
}

/// Deserializes a `tls_fingerprint` value ([`tls::SpkiPin`]'s forms).
pub fn de_pin<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<tls::SpkiPin>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Deserializes a `tls` keyword ([`TLS_KEYWORDS`]).
pub fn de_tls<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<tls::Mode>, D::Error> {
    let s = String::deserialize(d)?;
    tls_mode(&s)
        .map(Some)
        .ok_or_else(|| serde::de::Error::unknown_variant(&s, TLS_KEYWORDS))
}

/// One named account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Account {
    /// Smarthost name or IP.
    pub server: Option<String>,
    /// Port (default by TLS mode).
    pub port: Option<u16>,
    /// TLS mode ([`TLS_KEYWORDS`]).
    #[serde(deserialize_with = "de_tls")]
    pub tls: Option<tls::Mode>,
    /// AUTH user.
    pub user: Option<String>,
    /// Command printing the password (run with `sh -c`).
    pub password_command: Option<String>,
    /// AUTH mechanism (`plain`, `login`, `xoauth2`, `oauthbearer`); unset: PLAIN when offered,
    /// else LOGIN. With XOAUTH2/OAUTHBEARER the password command prints the OAuth 2.0 token.
    pub auth: Option<crate::auth::Mechanism>,
    /// Seconds the password command may run (default
    /// [`crate::outbound::password::PASSWORD_COMMAND_TIMEOUT`]).
    pub password_command_timeout: Option<u64>,
    /// Sender address.
    pub from: Option<String>,
    /// CA file instead of the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server's public key (SPKI): replaces the CA and name checks.
    #[serde(deserialize_with = "de_pin")]
    pub tls_fingerprint: Option<tls::SpkiPin>,
    /// Spool directory for temporary failures.
    pub queue: Option<PathBuf>,
    /// EHLO name (default: the host name).
    pub ehlo: Option<String>,
    /// Time limit in seconds for connect and each reply.
    pub timeout: Option<u64>,
    /// Mail domain for bare names (overrides the global `domain`).
    pub domain: Option<String>,
    /// msmtp's aliases file for bare recipients (overrides the global `aliases`).
    pub aliases: Option<PathBuf>,
}

/// The `[msend]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MsendConfig {
    /// Account used without `-a`.
    pub default: Option<String>,
    /// Global spool directory.
    pub queue: Option<PathBuf>,
    /// Mail domain bare names get ([`names`]); default: the `hostname`.
    pub domain: Option<String>,
    /// msmtp's aliases file: bare recipients replaced by addresses ([`names`]).
    pub aliases: Option<PathBuf>,
    /// Named accounts.
    pub accounts: BTreeMap<String, Account>,
}

impl crate::config::Section for MsendConfig {
    fn paths(&mut self) -> Vec<&mut PathBuf> {
        let accounts = self.accounts.values_mut().flat_map(|a| {
            a.ca_file
                .iter_mut()
                .chain(a.queue.iter_mut())
                .chain(a.aliases.iter_mut())
        });
        self.queue
            .iter_mut()
            .chain(self.aliases.iter_mut())
            .chain(accounts)
            .collect()
    }
}

/// `~/.config/mailkit/msend.toml` (from `$XDG_CONFIG_HOME` or `$HOME`).
pub fn user_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("mailkit").join("msend.toml"))
}
