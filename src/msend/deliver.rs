//! Sending one prepared message: to a smarthost (submission, RFC 6409) or directly to each
//! recipient domain's MX hosts (RFC 5321 §5.1), with per-recipient results mapped to the
//! sysexits codes cron and scripts rely on. The sending itself is mrelayd's
//! ([`crate::outbound`]), so msend and mrelayd walk MX hosts and speak SMTP the same way.

use std::net::SocketAddr;
use std::time::Duration;

use crate::exit;
use crate::net::smtp::Timeouts;
use crate::outbound::config::{default_mx_tls, RemoteConfig};
use crate::outbound::engine::{ClientOptions, Rcpt};
use crate::outbound::route::{RelayRoute, Relayhost};
use crate::outbound::{Engine, Failure, What};
use crate::smtp::client::{Credentials, Stage};
use crate::tls::Policy;

/// Where the message goes.
#[derive(Clone, Debug)]
pub enum Route {
    /// One smarthost.
    Server {
        /// Host name (also the name its certificate must carry, unless pinned) and port.
        relayhost: Relayhost,
        /// Implicit TLS, required STARTTLS or none, and the certificate check (webpki roots,
        /// a CA file or a key pin).
        tls: Policy,
        /// AUTH credentials.
        auth: Option<Credentials>,
    },
    /// MX delivery per recipient domain, opportunistic STARTTLS.
    Direct {
        /// DNS server instead of the system's.
        resolver: Option<SocketAddr>,
        /// SMTP port (25; tests use another).
        port: u16,
    },
}

/// How to send.
#[derive(Clone, Debug)]
pub struct Options {
    /// Destination.
    pub route: Route,
    /// Name for EHLO.
    pub ehlo_name: String,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Print the dialogue on stderr (`-v`).
    pub verbose: bool,
    /// `--quit-after`.
    pub quit_after: Option<Stage>,
}

/// The fate of one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Accepted by the server.
    Sent,
    /// Worth retrying later (4xx, connection or DNS trouble).
    Temporary,
    /// Rejected at RCPT with 5xx (exit 67).
    RcptRejected,
    /// Authentication failed (exit 77).
    AuthFailed,
    /// Other permanent failure (exit 69).
    Permanent,
}

/// One recipient's result, with the line to print when it failed.
#[derive(Clone, Debug)]
pub struct RcptReport {
    /// The recipient (empty for the session of `--quit-after` without recipients).
    pub rcpt: String,
    /// What happened.
    pub status: Status,
    /// `recipient: server: reply` explanation (empty when sent).
    pub detail: String,
}

/// Results of one send.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Per recipient.
    pub rcpts: Vec<RcptReport>,
    /// `--quit-after` stopped the session at this stage (nothing was sent).
    pub stopped: Option<Stage>,
}

impl Report {
    /// The exit code: 0 all sent; 77 auth failed; 75 any temporary failure; 67 a recipient
    /// rejected; 69 other permanent failures.
    pub fn exit_code(&self) -> u8 {
        let has = |s: Status| self.rcpts.iter().any(|r| r.status == s);
        if has(Status::AuthFailed) {
            exit::NOPERM
        } else if has(Status::Temporary) {
            exit::TEMPFAIL
        } else if has(Status::RcptRejected) {
            exit::NOUSER
        } else if has(Status::Permanent) {
            exit::UNAVAILABLE
        } else {
            exit::OK
        }
    }

    /// Adds the results of another send, so that [`Report::exit_code`] covers several messages
    /// (`--flush` exits by the same rule as a direct send).
    pub fn absorb(&mut self, other: Report) {
        self.rcpts.extend(other.rcpts);
        self.stopped = self.stopped.or(other.stopped);
    }

    /// Recipients that failed temporarily (to spool).
    pub fn temporary(&self) -> Vec<String> {
        self.rcpts
            .iter()
            .filter(|r| r.status == Status::Temporary)
            .map(|r| r.rcpt.clone())
            .collect()
    }

    fn fail_all(&mut self, rcpts: &[String], status: Status, detail: &str) {
        for r in rcpts {
            self.rcpts.push(RcptReport {
                rcpt: r.clone(),
                status: status.clone(),
                detail: format!("{r}: {detail}"),
            });
        }
    }
}

/// Sends `message` from `from` to `rcpts` as `opts` says, through mrelayd's remote delivery
/// engine ([`crate::outbound`]): the one SMTP client, MX walk and TLS handling.
pub async fn send(opts: &Options, from: &str, rcpts: &[String], message: &[u8]) -> Report {
    let mut report = Report::default();
    let mut config = RemoteConfig {
        helo_name: Some(opts.ehlo_name.clone()),
        ..RemoteConfig::default()
    };
    let mut options = ClientOptions::default();
    match &opts.route {
        Route::Server {
            relayhost,
            tls,
            auth,
        } => {
            options.relayhost = Some(RelayRoute {
                relayhost: relayhost.clone(),
                tls: tls.clone(),
                user: None,
                password_command: None,
                mechanism: None,
            });
            options.credentials = auth.clone();
        }
        Route::Direct { resolver, port } => {
            options.resolver = *resolver;
            config.port = *port;
            config.tls = default_mx_tls();
            // One-shot and without a state directory to cache policies in (RFC 8461 §5.1):
            // msend does DANE (no cache needed) but leaves MTA-STS to mrelayd.
            config.mta_sts = false;
        }
    }
    let options = ClientOptions {
        verbose: opts.verbose,
        quit_after: opts.quit_after,
        timeouts: Some(opts.timeouts),
        ..options
    };
    let remote = match Engine::with_options(config, &opts.ehlo_name, options) {
        Ok(r) => r,
        Err(e) => {
            report.fail_all(rcpts, Status::Permanent, &format!("{e:#}"));
            return report;
        }
    };
    let remote = std::sync::Arc::new(remote);
    let message: std::sync::Arc<[u8]> = std::sync::Arc::from(message);
    if rcpts.is_empty() && matches!(opts.route, Route::Server { .. }) && opts.quit_after.is_some() {
        // `--quit-after` with no recipients: a session to test the server only.
        let d = remote
            .deliver(&remote.next_hop(""), from, &[], &[], &message)
            .await;
        report.stopped = d.stopped;
        if let (None, Some(f)) = (d.stopped, d.failure) {
            // No recipient to carry it: the session's failure is the report's one line.
            report.rcpts.push(RcptReport {
                rcpt: String::new(),
                status: status_of(&f),
                detail: f.message,
            });
        }
        remote.close_idle().await;
        return report;
    }
    let list: Vec<Rcpt> = rcpts
        .iter()
        .map(|r| Rcpt {
            address: r.clone(),
            params: Vec::new(),
        })
        .collect();
    // One smarthost, or one MX route per domain, domains in parallel.
    let done = remote.deliver_all(from, &[], &list, &message).await;
    // Sessions kept between transactions (over 50 recipients) end with QUIT.
    remote.close_idle().await;
    report.stopped = done.stopped;
    for (r, outcome) in rcpts.iter().zip(done.rcpts) {
        // None: its session stopped at --quit-after before delivering (a recipient refused
        // before a stop at RCPT has its failure).
        let Some(outcome) = outcome else { continue };
        let (status, detail) = match outcome {
            Ok(_) => (Status::Sent, String::new()),
            Err(f) => (status_of(&f), format!("{r}: {}", f.message)),
        };
        report.rcpts.push(RcptReport {
            rcpt: r.clone(),
            status,
            detail,
        });
    }
    report
}

/// msend's status for a delivery failure. A trust or configuration problem is permanent here,
/// unlike for an MTA (mrelayd defers them with 4.7.x, as Postfix does): an untrusted
/// certificate or key pin, a server without the STARTTLS that is required, a server without an
/// AUTH mechanism msend speaks. Retrying cannot help until the user (`--ca-file`, the account)
/// or the server's admin acts, so they exit 69 and are not spooled.
fn status_of(f: &Failure) -> Status {
    if matches!(
        f.what,
        What::CertificateTrust | What::TlsUnavailable | What::Auth
    ) {
        Status::Permanent
    } else if f.temporary {
        Status::Temporary
    } else {
        match f.stage {
            Some(Stage::Auth) => Status::AuthFailed,
            Some(Stage::Rcpt) => Status::RcptRejected,
            _ => Status::Permanent,
        }
    }
}

/// A default timeout for interactive use (`--timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    fn one(status: Status) -> Report {
        Report {
            rcpts: vec![RcptReport {
                rcpt: "r@example.test".into(),
                status,
                detail: String::new(),
            }],
            stopped: None,
        }
    }

    #[test]
    fn absorbed_reports_exit_by_the_worst_in_documented_order() {
        // 77 auth, 75 temporary, 67 recipient rejected, 69 other permanent, 0 sent: the order
        // is not numeric (67 beats 69).
        let order = [
            (Status::AuthFailed, exit::NOPERM),
            (Status::Temporary, exit::TEMPFAIL),
            (Status::RcptRejected, exit::NOUSER),
            (Status::Permanent, exit::UNAVAILABLE),
            (Status::Sent, exit::OK),
        ];
        for (i, (worse, code)) in order.iter().enumerate() {
            for (better, _) in &order[i..] {
                for (a, b) in [(worse, better), (better, worse)] {
                    let mut all = Report::default();
                    all.absorb(one(a.clone()));
                    all.absorb(one(b.clone()));
                    assert_eq!(all.exit_code(), *code, "{a:?} + {b:?}");
                }
            }
        }
        assert_eq!(Report::default().exit_code(), exit::OK);
    }
}
