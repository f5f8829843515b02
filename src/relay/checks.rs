//! Combinations of `[mrelayd]` keys that parse but cannot work, found when `serve` or `inetd`
//! starts: each is a configuration error (exit 78) naming the key, or, where the setup is
//! legitimate but doubtful, one warning on stderr at start.
//!
//! - A `submission` or `submissions` listener without `[tls] cert`: AUTH is offered only over
//!   TLS (RFC 4954 §4, RFC 8314), so no client could ever submit. Error.
//! - A relayhost with `relayhost_user` and `relayhost_tls = "none"`: AUTH is never sent
//!   without TLS, so every message would be deferred 4.7.0 until it bounces. Error; with
//!   `"may"` a warning (it works only while the relayhost offers STARTTLS).
//! - `relayhost_user` without `relayhost_password_command`: the same endless 4.7.0. Error.
//! - `relayhost_user` or `relayhost_password_command` with no relayhost to use them: warning.
//! - A content filter without a command, or two filters for one listener role
//!   ([`super::filter::check`]): error.
//! - A DKIM key of `[mrelayd.dkim."DOMAIN"] keys` or the `[mrelayd.srs]` secret file that
//!   cannot be read or used ([`keys_and_secrets`]): error, naming the line of its key (the
//!   loaders check again, but know no line).
//! - A `[mrelayd.remote]` resolver that is no IP\[:PORT\], or a `ca_file` or
//!   `mta_sts_ca_file` without a readable PEM certificate ([`remote_files`]): error, naming
//!   the line (the delivery engine would refuse them too, without one).
//! - A `dnsbl` zone that is no domain name (`zen..example`, a CIDR): error, since every
//!   look-up in it would fail and, as a DNS failure, let every client through unnoticed; a
//!   `dnsbl_reply` for a zone not in `dnsbl` ([`dnsbl_zones`]): warning.
//! - `postmaster@` a local domain that resolves to no mailbox ([`postmaster`], once the router
//!   is built): error, or a warning with `require_postmaster = false`.

use anyhow::Result;

use super::{RelayConfig, Role, Router};
use crate::config::Config;
use crate::exit;
use crate::log;
use crate::outbound::config::DomainPolicy;
use crate::tls::Mode;

/// Checks `relay` as the module doc says, for a run serving the listener `roles` (every
/// `listen` entry's for `serve`, the one `--role` for `inetd`): an error names the key (exit
/// 78); warnings are logged here, once.
pub fn check(config: &Config, relay: &RelayConfig, roles: &[Role]) -> Result<()> {
    super::filter::check(config, relay)?;
    keys_and_secrets(config, relay)?;
    remote_files(config, relay)?;
    dnsbl_zones(config, relay)?;
    if config.tls.cert.is_none() {
        if let Some(role) = roles.iter().find(|r| **r != Role::Smtp) {
            let name = crate::server::daemon::ListenerRole::name(*role);
            return Err(config.key_error(
                &["mrelayd", "listen"],
                &format!(
                    "a {name} listener needs [tls] cert and key: AUTH is only offered over \
                     TLS, so no client could submit (set [tls] cert and key, or use role smtp)"
                ),
            ));
        }
    }
    let remote = &relay.remote;
    let global = DomainPolicy {
        relayhost: remote.relayhost.clone(),
        tls: None,
        relayhost_tls: Some(remote.relayhost_tls.clone()),
        relayhost_user: remote.relayhost_user.clone(),
        relayhost_password_command: remote.relayhost_password_command.clone(),
        relayhost_auth: remote.relayhost_auth,
    };
    let mut credentials_used = false;
    let routes = std::iter::once((None, &global)).chain(
        remote
            .domains
            .iter()
            .map(|(d, p)| (Some(d.as_str()), p))
            .filter(|(_, p)| p.relayhost.is_some()),
    );
    for (domain, policy) in routes {
        if policy.relayhost.is_none() {
            continue;
        }
        // A domain's own key, else the [mrelayd.remote] one it inherits.
        let key = |name: &'static str, own: bool| -> Vec<&str> {
            match (domain, own) {
                (Some(d), true) => vec!["mrelayd", "remote", "domains", d, name],
                _ => vec!["mrelayd", "remote", name],
            }
        };
        let to = domain.map_or(String::new(), |d| format!(" (for {d})"));
        let user_own = policy.relayhost_user.is_some();
        let Some(user) = policy
            .relayhost_user
            .as_ref()
            .or(remote.relayhost_user.as_ref())
        else {
            if policy.relayhost_password_command.is_some() {
                config.key_warning(
                    &key("relayhost_password_command", true),
                    &format!("without relayhost_user{to}: no AUTH is sent, the command not run"),
                );
            }
            continue;
        };
        credentials_used = true;
        let tls_own = policy.relayhost_tls.is_some();
        let tls = policy
            .relayhost_tls
            .as_ref()
            .unwrap_or(&remote.relayhost_tls);
        match tls.mode {
            Mode::Off => {
                return Err(config.key_error(
                    &key("relayhost_tls", tls_own),
                    &format!(
                        "\"none\" with relayhost_user {user:?}{to}: AUTH is never sent without \
                         TLS, so every message would be deferred (4.7.0) until it bounces; use \
                         \"starttls\" or \"tls\""
                    ),
                ))
            }
            Mode::Opportunistic => config.key_warning(
                &key("relayhost_tls", tls_own),
                &format!(
                    "\"may\" with relayhost_user {user:?}{to}: while the relayhost offers no \
                     STARTTLS, mail is deferred (AUTH is only sent over TLS); \"starttls\" says so"
                ),
            ),
            Mode::Starttls | Mode::Implicit => {}
        }
        let has_password = policy.relayhost_password_command.is_some()
            || remote.relayhost_password_command.is_some();
        if !has_password {
            return Err(config.key_error(
                &key("relayhost_user", user_own),
                &format!(
                    "relayhost_user {user:?}{to} needs relayhost_password_command: without a \
                     password every message would be deferred (4.7.0) until it bounces"
                ),
            ));
        }
    }
    if !credentials_used
        && (remote.relayhost_user.is_some() || remote.relayhost_password_command.is_some())
    {
        let name = match remote.relayhost_user.is_some() {
            true => "relayhost_user",
            false => "relayhost_password_command",
        };
        config.key_warning(
            &["mrelayd", "remote", name],
            "no relayhost is configured ([mrelayd.remote] relayhost or a domain's): not used",
        );
    }
    Ok(())
}

/// RFC 5321 §4.5.1: a server MUST accept `postmaster` at every domain it serves. When
/// `postmaster@DOMAIN` of a local domain resolves to nobody, `serve` and `inetd` exit 78 naming
/// the aliases file and the key that makes it a warning ([`RelayConfig::require_postmaster`]
/// `= false`: one line at start instead).
pub fn postmaster(config: &Config, relay: &RelayConfig, router: &Router) -> Result<()> {
    let problems = router.postmaster_problems();
    if problems.is_empty() {
        return Ok(());
    }
    let file = config.file_name();
    let fix = match router.aliases_path() {
        Some(a) => format!("add `postmaster: USER` to the aliases file {}", a.display()),
        None => format!(
            "set [mrelayd] aliases in {file} to a file with `postmaster: USER` \
             (there is no aliases file)"
        ),
    };
    let what = problems
        .iter()
        .map(|(addr, why)| format!("{addr} ({why})"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "postmaster resolves to no mailbox: {what}; RFC 5321 §4.5.1 requires one at every \
         local domain: {fix}"
    );
    if relay.require_postmaster {
        return Err(exit::fail(
            exit::CONFIG,
            format!("{text}, or set [mrelayd] require_postmaster = false in {file} to only warn"),
        ));
    }
    log::line(format_args!("warning: {text} (require_postmaster = false)"));
    Ok(())
}

/// Every DKIM signing key loads ([`crate::dkim::load_key`]: readable, 0600, RSA of 2048 bits
/// or more, or Ed25519) and the SRS secrets and domain are usable, each error naming its key
/// and line (exit 78).
pub fn keys_and_secrets(config: &Config, relay: &RelayConfig) -> Result<()> {
    for (domain, keys) in &relay.dkim {
        for (selector, path) in &keys.keys {
            if let Err(why) = crate::dkim::load_key(path) {
                return Err(config.key_error(&["mrelayd", "dkim", domain, "keys", selector], &why));
            }
        }
    }
    let first = config
        .users
        .domains
        .first()
        .unwrap_or(&config.hostname)
        .to_ascii_lowercase();
    if let Err((key, why)) = super::srs::load_keyed(&relay.srs, &first) {
        return Err(config.key_error(&["mrelayd", "srs", key], &why));
    }
    Ok(())
}

/// The resolver address and the CA files of `[mrelayd.remote]` are usable, each error naming
/// its key and line (exit 78).
pub fn remote_files(config: &Config, relay: &RelayConfig) -> Result<()> {
    let remote = &relay.remote;
    if let Some(server) = &remote.resolver {
        if let Err(why) = crate::dns::parse_server(server) {
            return Err(config.key_error(&["mrelayd", "remote", "resolver"], &why));
        }
    }
    for (key, file) in [
        ("ca_file", &remote.ca_file),
        ("mta_sts_ca_file", &remote.mta_sts_ca_file),
    ] {
        if let Some(path) = file {
            if let Err(e) = crate::tls::load_certs(path) {
                return Err(config.key_error(&["mrelayd", "remote", key], &format!("{e:#}")));
            }
        }
    }
    Ok(())
}

/// Each `dnsbl` zone is a domain name (RFC 1035 §2.3.4: labels of 1 to 63 octets, 253 in all,
/// with room for the 72 octets of an IPv6 query's nibbles, RFC 5782 §2.4; letters, digits,
/// `-` and `_`): error (exit 78) naming the line. A `dnsbl_reply` for a zone that is not
/// looked up is one warning.
pub fn dnsbl_zones(config: &Config, relay: &RelayConfig) -> Result<()> {
    for zone in &relay.dnsbl {
        let name = zone.trim_end_matches('.');
        if !crate::dns::valid_domain(name) || name.len() > 253 - 72 {
            return Err(config.key_error(
                &["mrelayd", "dnsbl"],
                &format!("{zone:?} is not a DNSBL zone (a domain name such as \"zen.example\")"),
            ));
        }
    }
    let looked_up = |z: &str| {
        relay.dnsbl.iter().any(|d| {
            d.trim_end_matches('.')
                .eq_ignore_ascii_case(z.trim_end_matches('.'))
        })
    };
    for zone in relay.dnsbl_reply.keys().filter(|z| !looked_up(z)) {
        config.key_warning(
            &["mrelayd", "dnsbl_reply", zone],
            &format!("{zone:?} is not in dnsbl: this reply is never given"),
        );
    }
    Ok(())
}
