//! Which account, server, TLS mode, credentials and spool one msend run uses: the command line
//! ([`Flags`], built by `cli::msend`) over the chosen account over the configuration's
//! defaults. One resolution ([`choose`]) picks the account for sending, `--flush` and `--list`
//! alike, so an unknown `-a NAME` is a configuration error (exit 78) in every mode.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;

use super::deliver::{self, Options, Route};
use super::names::LocalNames;
use super::spool::Destination;
use super::{netrc, Account, MsendConfig};
use crate::config::{self, Config};
use crate::exit;
use crate::net::smtp::Timeouts;
use crate::outbound::route::Relayhost;
use crate::smtp::client::{Credentials, Stage};
use crate::tls::{self, Policy, Verify};

/// What the command line says about where and how to send; `None`/`false` leaves it to the
/// account and the configuration.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `-a NAME`.
    pub account: Option<String>,
    /// `--server HOST[:PORT]`.
    pub server: Option<String>,
    /// `--tls`, `--starttls` or `--no-tls`.
    pub tls: Option<tls::Mode>,
    /// `--ca-file`.
    pub ca_file: Option<PathBuf>,
    /// `--tls-fingerprint`.
    pub tls_fingerprint: Option<tls::SpkiPin>,
    /// `--user`.
    pub user: Option<String>,
    /// `--password-command`.
    pub password_command: Option<String>,
    /// `--direct`.
    pub direct: bool,
    /// `--resolver IP[:PORT]`.
    pub resolver: Option<String>,
    /// `--smtp-port` (with `--direct`).
    pub smtp_port: Option<u16>,
    /// `--queue DIR`.
    pub queue: Option<PathBuf>,
    /// `--quit-after STAGE`.
    pub quit_after: Option<Stage>,
    /// `--timeout SECS`.
    pub timeout: Option<u64>,
    /// `--ehlo NAME`.
    pub ehlo: Option<String>,
    /// `-v`.
    pub verbose: bool,
    /// `--dry-run`: nothing is sent, so no server, password or DNS is needed.
    pub dry_run: bool,
}

impl Flags {
    /// The flags that chose where a message goes, stored with it when it is spooled
    /// (`None` when none was given: the account alone decides).
    pub fn destination(&self) -> Option<Destination> {
        let d = Destination {
            server: self.server.clone(),
            tls: self.tls.and_then(super::tls_keyword).map(str::to_string),
            ca_file: self.ca_file.clone(),
            tls_fingerprint: self.tls_fingerprint.map(|p| p.to_string()),
            user: self.user.clone(),
            password_command: self.password_command.clone(),
            direct: self.direct,
            resolver: self.resolver.clone(),
            smtp_port: self.smtp_port,
        };
        (d != Destination::default()).then_some(d)
    }

    /// These flags for a message spooled for `d`: what these flags do not say is taken from
    /// `d` (a stored value that no longer parses is a configuration error, exit 78).
    pub fn with_destination(&self, d: &Destination) -> Result<Flags> {
        let tls = match d.tls.as_deref() {
            Some(k) => Some(
                super::tls_mode(k)
                    .ok_or_else(|| bad_config(format!("spooled destination: unknown tls {k:?}")))?,
            ),
            None => None,
        };
        let pin =
            match d.tls_fingerprint.as_deref() {
                Some(p) => Some(p.parse::<tls::SpkiPin>().map_err(|e| {
                    bad_config(format!("spooled destination: tls_fingerprint: {e}"))
                })?),
                None => None,
            };
        Ok(Flags {
            server: self.server.clone().or_else(|| d.server.clone()),
            tls: self.tls.or(tls),
            ca_file: self.ca_file.clone().or_else(|| d.ca_file.clone()),
            tls_fingerprint: self.tls_fingerprint.or(pin),
            user: self.user.clone().or_else(|| d.user.clone()),
            password_command: self
                .password_command
                .clone()
                .or_else(|| d.password_command.clone()),
            direct: self.direct || d.direct,
            resolver: self.resolver.clone().or_else(|| d.resolver.clone()),
            smtp_port: self.smtp_port.or(d.smtp_port),
            ..self.clone()
        })
    }
}

/// Everything resolved from flags, account and configuration.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// How to send.
    pub opts: Options,
    /// The account's name, when one was chosen (stored with spooled messages).
    pub account_name: Option<String>,
    /// The destination flags (stored with spooled messages, [`Flags::destination`]).
    pub destination: Option<Destination>,
    /// The chosen account (all `None` without one).
    pub account: Account,
    /// The spool, if any.
    pub queue: Option<PathBuf>,
    /// This host's name (EHLO default, Message-ID).
    pub hostname: String,
    /// The mail domain and aliases for bare names (`user@domain` for the default sender too).
    pub names: LocalNames,
}

fn usage(msg: impl Into<String>) -> anyhow::Error {
    exit::fail(exit::USAGE, msg)
}

fn bad_config(msg: impl Into<String>) -> anyhow::Error {
    exit::fail(exit::CONFIG, msg)
}

/// The `[msend]` settings and the host name: from `-C FILE` when given, else the user's
/// `msend.toml` when it exists, else the system configuration's `[msend]` section. A `-C` file
/// may be in either format: one with `default`, `queue` or `accounts` at its top level (keys a
/// mailkit config does not have there) is read as a `msend.toml`, any other as a mailkit config.
pub fn load_config(explicit: Option<&Path>) -> Result<(MsendConfig, String)> {
    if let Some(p) = explicit {
        if is_user_format(p) {
            let c: MsendConfig = config::load_file(p)?;
            return Ok((c, Config::load(None)?.hostname));
        }
        let c = Config::load(Some(p))?;
        return Ok((c.section::<MsendConfig>("msend")?, c.hostname));
    }
    let sys = Config::load(None)?;
    if let Some(p) = super::user_config_path().filter(|p| p.exists()) {
        let c: MsendConfig = config::load_file(&p)?;
        return Ok((c, sys.hostname));
    }
    Ok((sys.section::<MsendConfig>("msend")?, sys.hostname))
}

/// Whether the file at `path` is in the `msend.toml` format (see [`load_config`]); a file that
/// cannot be read or parsed is not, and its error is reported by the mailkit config loader.
fn is_user_format(path: &Path) -> bool {
    let Ok(Some(bytes)) = config::read_limited(path, config::MAX_CONFIG_SIZE) else {
        return false;
    };
    let Ok(table) = String::from_utf8_lossy(&bytes).parse::<toml::Table>() else {
        return false;
    };
    ["default", "queue", "accounts", "domain", "aliases"]
        .iter()
        .any(|k| table.contains_key(*k))
}

/// The account a run uses: `spooled` (the account a message was spooled with, for `--flush`),
/// else `-a`, else the configuration's `default`; none of them: no account. A name the
/// configuration does not have is an error (exit 78).
pub fn choose(
    flags: &Flags,
    cfg: &MsendConfig,
    spooled: Option<&str>,
) -> Result<(Option<String>, Account)> {
    let name = spooled
        .map(str::to_string)
        .or_else(|| flags.account.clone())
        .or_else(|| cfg.default.clone());
    let account = match &name {
        Some(n) => cfg
            .accounts
            .get(n)
            .cloned()
            .ok_or_else(|| bad_config(format!("no account {n:?} in the configuration")))?,
        None => Account::default(),
    };
    Ok((name, account))
}

/// The spool: `--queue`, else the account's `queue`, else the configuration's.
pub fn queue_dir(flags: &Flags, account: &Account, cfg: &MsendConfig) -> Option<PathBuf> {
    flags
        .queue
        .clone()
        .or_else(|| account.queue.clone())
        .or_else(|| cfg.queue.clone())
}

/// The spool of `--list` (`-bp`, `mailq`) and `--flush`: [`queue_dir`] of the account
/// [`choose`] picks, without resolving a server (none is needed to list, and each spooled
/// message knows its own).
pub fn spool_dir(flags: &Flags, cfg: &MsendConfig) -> Result<Option<PathBuf>> {
    let (_, account) = choose(flags, cfg, None)?;
    Ok(queue_dir(flags, &account, cfg))
}

/// The spool for `--list` (`-bp`): exit 64 without one.
pub fn list_queue(flags: &Flags, cfg: &MsendConfig) -> Result<PathBuf> {
    spool_dir(flags, cfg)?
        .ok_or_else(|| usage("no spool: use --queue DIR (or queue = in the configuration)"))
}

/// Resolves route, TLS, credentials, timeouts and spool for sending (see [`choose`] for
/// `spooled`). Runs the password command when one is needed.
pub fn resolve(
    flags: &Flags,
    cfg: &MsendConfig,
    hostname: String,
    spooled: Option<&str>,
) -> Result<Resolved> {
    let (account_name, account) = choose(flags, cfg, spooled)?;
    let timeout = flags
        .timeout
        .or(account.timeout)
        .map(Duration::from_secs)
        .unwrap_or(deliver::DEFAULT_TIMEOUT);
    let ehlo_name = flags
        .ehlo
        .clone()
        .or_else(|| account.ehlo.clone())
        .unwrap_or_else(|| hostname.clone());
    let route = if flags.dry_run {
        // --dry-run only prints the message: no server, password or DNS is needed.
        Route::Direct {
            resolver: None,
            port: 25,
        }
    } else if flags.direct {
        let resolver = match &flags.resolver {
            Some(r) => {
                Some(crate::dns::parse_server(r).map_err(|e| usage(format!("--resolver: {e}")))?)
            }
            None => None,
        };
        Route::Direct {
            resolver,
            port: flags.smtp_port.unwrap_or(25),
        }
    } else {
        server_route(flags, &account)?
    };
    if let (Some(stage), false) = (flags.quit_after, flags.dry_run) {
        check_quit_after(stage, &route)?;
    }
    let queue = queue_dir(flags, &account, cfg);
    let (domain, key) = match (&account.domain, &cfg.domain) {
        (Some(d), _) => (d.as_str(), "the account's domain"),
        (None, Some(d)) => (d.as_str(), "msend.domain"),
        (None, None) => (hostname.as_str(), "hostname"),
    };
    let aliases = account.aliases.clone().or_else(|| cfg.aliases.clone());
    let names = LocalNames::new(domain, key, aliases)?;
    Ok(Resolved {
        opts: Options {
            route,
            ehlo_name,
            timeouts: Timeouts {
                connect: timeout,
                command: timeout,
                data_end: timeout.max(Duration::from_secs(120)),
            },
            verbose: flags.verbose,
            quit_after: flags.quit_after,
        },
        account_name,
        destination: flags.destination(),
        account,
        queue,
        hostname,
        names,
    })
}

/// `--quit-after tls` without TLS and `--quit-after auth` without credentials (or with
/// `--direct`, which never authenticates) would stop after a stage that cannot happen: bad
/// usage (64), said before connecting. What only the server decides (it offers no STARTTLS)
/// is the SMTP client's to find out (69).
fn check_quit_after(stage: Stage, route: &Route) -> Result<()> {
    let (tls_off, no_auth) = match route {
        Route::Server { tls, auth, .. } => (tls.mode == tls::Mode::Off, auth.is_none()),
        Route::Direct { .. } => (false, true),
    };
    match stage {
        Stage::Tls if tls_off => Err(usage(
            "--quit-after tls with TLS off (--no-tls, tls = \"none\"): no STARTTLS would happen",
        )),
        Stage::Auth if no_auth => Err(usage(
            "--quit-after auth: no AUTH would happen (give --user or an account with user =; \
             --direct never authenticates)",
        )),
        _ => Ok(()),
    }
}

/// The smarthost route: server, port by TLS mode (587 STARTTLS, 465 implicit TLS, RFC 8314
/// §3.3), CA file and AUTH credentials.
fn server_route(flags: &Flags, account: &Account) -> Result<Route> {
    let server = flags
        .server
        .clone()
        .or_else(|| account.server.clone())
        .ok_or_else(|| {
            bad_config("no server: use --server HOST, an account with server =, or --direct")
        })?;
    let (host, port) =
        crate::dns::split_host_port(&server).map_err(|e| usage(format!("--server {e}")))?;
    let mode = flags.tls.or(account.tls).unwrap_or(tls::Mode::Starttls);
    let default_port = if mode == tls::Mode::Implicit {
        465
    } else {
        587
    };
    let port = port.or(account.port).unwrap_or(default_port);
    let ca_file = flags.ca_file.clone().or_else(|| account.ca_file.clone());
    // A key pin replaces the CA and name checks (as msmtp's tls_fingerprint does).
    let pin = flags.tls_fingerprint.or(account.tls_fingerprint);
    let verify = match (mode, pin) {
        (tls::Mode::Off, Some(_)) => {
            return Err(bad_config(
                "tls_fingerprint (--tls-fingerprint) needs TLS: drop --no-tls or the pin",
            ))
        }
        (tls::Mode::Off, None) => Verify::None,
        (_, Some(pin)) => Verify::Pin(pin),
        (_, None) => Verify::WebPki.with_ca_file(ca_file.as_deref()),
    };
    let auth = match flags.user.clone().or_else(|| account.user.clone()) {
        None => None,
        Some(user) => {
            if mode == tls::Mode::Off {
                return Err(bad_config(
                    "AUTH is never sent over an unencrypted connection: drop --no-tls or --user",
                ));
            }
            let password = password(flags, account, &host, &user)?;
            Some(Credentials {
                user,
                password,
                mechanism: account.auth,
                server: (host.clone(), port),
            })
        }
    };
    Ok(Route::Server {
        relayhost: Relayhost { host, port },
        tls: Policy::new(mode, verify),
        auth,
    })
}

/// The AUTH password: the password command (killed after the account's timeout), else
/// `$MSEND_PASSWORD`, else `~/.netrc`; none of them is exit 78.
fn password(flags: &Flags, account: &Account, host: &str, user: &str) -> Result<String> {
    if let Some(cmd) = flags
        .password_command
        .as_deref()
        .or(account.password_command.as_deref())
    {
        let timeout = account.password_command_timeout.map_or(
            crate::outbound::password::PASSWORD_COMMAND_TIMEOUT,
            Duration::from_secs,
        );
        return crate::outbound::password::password_from_command(cmd, timeout)
            .map_err(|e| bad_config(format!("password command: {e}")));
    }
    if let Some(p) = std::env::var("MSEND_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Ok(p);
    }
    netrc::password_for(host, user).ok_or_else(|| {
        bad_config(format!(
            "no password for {user}: use --password-command, $MSEND_PASSWORD or ~/.netrc"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_round_trip_and_flush_flags_win() {
        assert_eq!(Flags::default().destination(), None, "only an account");
        let pin: tls::SpkiPin = "ab".repeat(32).parse().unwrap();
        let spooled = Flags {
            server: Some("[::1]:2525".into()),
            tls: Some(tls::Mode::Off),
            tls_fingerprint: Some(pin),
            user: Some("me".into()),
            password_command: Some("pass show mail".into()),
            ..Flags::default()
        };
        let d = spooled.destination().unwrap();
        let json = serde_json::to_string(&d).unwrap();
        let d: Destination = serde_json::from_str(&json).unwrap();
        let at_flush = Flags {
            verbose: true,
            ..Flags::default()
        };
        let back = at_flush.with_destination(&d).unwrap();
        assert_eq!(back.server, spooled.server);
        assert_eq!(back.tls, Some(tls::Mode::Off));
        assert_eq!(back.tls_fingerprint, Some(pin));
        assert_eq!(back.user.as_deref(), Some("me"));
        assert_eq!(back.password_command.as_deref(), Some("pass show mail"));
        assert!(back.verbose, "the flush's own flags stay");
        // What --flush says itself wins over what was stored.
        let tls_now = Flags {
            tls: Some(tls::Mode::Implicit),
            ..Flags::default()
        };
        assert_eq!(
            tls_now.with_destination(&d).unwrap().tls,
            Some(tls::Mode::Implicit)
        );
        let bad = Destination {
            tls: Some("sometimes".into()),
            ..Destination::default()
        };
        assert!(at_flush.with_destination(&bad).is_err());
    }
}
