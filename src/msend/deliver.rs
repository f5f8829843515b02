//! Sending one prepared message: to a smarthost (submission, RFC 6409) or directly to each
//! recipient domain's MX hosts (RFC 5321 §5.1), with per-recipient results mapped to the
//! sysexits codes cron and scripts rely on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls_pki_types::ServerName;

use crate::dns::{DnsError, MxResolver};
use crate::exit;
use crate::smtp::client::transport::{self, Connection, DriverError, Progress, Timeouts};
use crate::smtp::client::{Credentials, Envelope, Error as SmtpError, Settings, Stage, TlsMode};

/// Where the message goes.
#[derive(Clone, Debug)]
pub enum Route {
    /// One smarthost.
    Server {
        /// Host name (also the name its certificate must carry) or IP.
        host: String,
        /// Port.
        port: u16,
        /// Implicit TLS, required STARTTLS or none.
        tls: TlsMode,
        /// CA file instead of the webpki roots.
        ca_file: Option<PathBuf>,
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
    /// The recipient.
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

/// Status for a session-level failure.
fn status_of(e: &DriverError) -> Status {
    if let DriverError::Smtp(SmtpError::Rejected {
        stage: Stage::Auth,
        reply,
    }) = e
    {
        if reply.is_permanent() {
            return Status::AuthFailed;
        }
    }
    if e.is_temporary() {
        Status::Temporary
    } else {
        Status::Permanent
    }
}

fn transcript(verbose: bool) -> Option<transport::Transcript> {
    if !verbose {
        return None;
    }
    let lock = Arc::new(Mutex::new(()));
    Some(Box::new(move |line: &str| {
        let _g = lock.lock();
        eprintln!("{line}");
    }))
}

/// Sends `message` from `from` to `rcpts` as `opts` says.
pub async fn send(opts: &Options, from: &str, rcpts: &[String], message: &[u8]) -> Report {
    match &opts.route {
        Route::Server {
            host,
            port,
            tls,
            ca_file,
            auth,
        } => {
            let config = match *tls {
                TlsMode::Off => None,
                _ => match crate::tls::client_config(ca_file.as_deref()) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        let mut r = Report::default();
                        r.fail_all(rcpts, Status::Permanent, &format!("{host}: {e:#}"));
                        return r;
                    }
                },
            };
            let addrs = match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(a) => a.collect::<Vec<_>>(),
                Err(e) => {
                    let mut r = Report::default();
                    r.fail_all(
                        rcpts,
                        Status::Temporary,
                        &format!("{host}:{port}: cannot resolve: {e}"),
                    );
                    return r;
                }
            };
            let settings = Settings {
                ehlo_name: opts.ehlo_name.clone(),
                tls: *tls,
                auth: auth.clone(),
                quit_after: opts.quit_after,
            };
            send_to_host(
                opts, host, *port, &addrs, settings, config, from, rcpts, message,
            )
            .await
            .unwrap_or_else(|(r, _)| r)
        }
        Route::Direct { resolver, port } => {
            send_direct(opts, *resolver, *port, from, rcpts, message).await
        }
    }
}

/// Tries `addrs` in order; the first that answers decides. `Err((report, retry_next_host))`
/// when no address gave a decision for the recipients (all refused, timeouts, 4xx greeting).
#[allow(clippy::too_many_arguments)]
async fn send_to_host(
    opts: &Options,
    host: &str,
    port: u16,
    addrs: &[SocketAddr],
    settings: Settings,
    config: Option<Arc<rustls::ClientConfig>>,
    from: &str,
    rcpts: &[String],
    message: &[u8],
) -> Result<Report, (Report, bool)> {
    let mut last = Report::default();
    if addrs.is_empty() {
        last.fail_all(rcpts, Status::Temporary, &format!("{host}: no address"));
        return Err((last, true));
    }
    let server_name = ServerName::try_from(host.to_string()).ok();
    'addrs: for addr in addrs {
        let where_ = format!("{host}[{}]:{port}", addr.ip());
        let mut settings_now = settings.clone();
        let (mut conn, opened) = loop {
            let stream = match transport::connect_tcp(*addr, opts.timeouts.connect).await {
                Ok(s) => s,
                Err(e) => {
                    if opts.verbose {
                        eprintln!("=== {where_}: {e}");
                    }
                    last = Report::default();
                    last.fail_all(rcpts, Status::Temporary, &format!("{where_}: connect: {e}"));
                    continue 'addrs;
                }
            };
            if opts.verbose {
                eprintln!("=== Connected to {where_}");
            }
            let tls = match (&config, &server_name) {
                (Some(c), Some(n)) => Some((c.clone(), n.clone())),
                _ => None,
            };
            let mut conn = Connection::new(
                stream,
                settings_now.clone(),
                tls,
                opts.timeouts,
                transcript(opts.verbose),
            );
            let opened = conn.open().await;
            // Opportunistic TLS that fails to handshake: the same host in clear beats no
            // delivery (RFC 7435 §3; what Postfix does with `may`).
            if settings_now.tls == TlsMode::Opportunistic
                && matches!(opened, Err(DriverError::Tls(_)))
            {
                if opts.verbose {
                    if let Err(e) = &opened {
                        eprintln!("=== {where_}: {e}; retrying without TLS");
                    }
                }
                settings_now.tls = TlsMode::Off;
                continue;
            }
            break (conn, opened);
        };
        let mut report = Report::default();
        match opened {
            Ok(Progress::Ready) => {}
            Ok(Progress::Stopped(s)) => {
                report.stopped = Some(s);
                return Ok(report);
            }
            Ok(Progress::Done(_)) => {}
            Err(e) => {
                let status = status_of(&e);
                report.fail_all(rcpts, status.clone(), &format!("{where_}: {e}"));
                if status == Status::Temporary {
                    // 4xx greeting, refused TLS, timeouts: the next address or MX may do.
                    last = report;
                    continue;
                }
                return Ok(report);
            }
        }
        let env = Envelope {
            from: from.to_string(),
            rcpts: rcpts.to_vec(),
            mail_params: Vec::new(),
            rcpt_params: Vec::new(),
        };
        match conn.send(env, message).await {
            Ok(Progress::Done(outcome)) => {
                for r in outcome.rcpts {
                    let status = if r.accepted() {
                        Status::Sent
                    } else if r.reply.is_transient() || !r.reply.is_permanent() {
                        Status::Temporary
                    } else if r.stage == Stage::Rcpt {
                        Status::RcptRejected
                    } else {
                        Status::Permanent
                    };
                    let detail = if status == Status::Sent {
                        String::new()
                    } else {
                        format!("{}: {where_}: {} rejected: {}", r.rcpt, r.stage, r.reply)
                    };
                    report.rcpts.push(RcptReport {
                        rcpt: r.rcpt,
                        status,
                        detail,
                    });
                }
                conn.quit().await;
                return Ok(report);
            }
            Ok(Progress::Stopped(s)) => {
                report.stopped = Some(s);
                return Ok(report);
            }
            Ok(Progress::Ready) => {
                report.fail_all(rcpts, Status::Temporary, &format!("{where_}: no outcome"));
                return Ok(report);
            }
            Err(e) => {
                // A failure after MAIL was sent: the server may have seen part of the
                // transaction; report it, don't retry elsewhere now (the queue will).
                report.fail_all(rcpts, status_of(&e), &format!("{where_}: {e}"));
                return Ok(report);
            }
        }
    }
    Err((last, true))
}

/// Direct delivery: recipients grouped by domain, domains in parallel, each domain's MX hosts
/// in order, all addresses of a host before the next host.
async fn send_direct(
    opts: &Options,
    resolver: Option<SocketAddr>,
    port: u16,
    from: &str,
    rcpts: &[String],
    message: &[u8],
) -> Report {
    let mut report = Report::default();
    let dns = match MxResolver::new(resolver) {
        Ok(d) => d,
        Err(e) => {
            report.fail_all(rcpts, Status::Temporary, &e);
            return report;
        }
    };
    let mut by_domain: Vec<(String, Vec<String>)> = Vec::new();
    for r in rcpts {
        let domain = r.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
        let Some(domain) = domain.filter(|d| !d.is_empty()) else {
            report.fail_all(
                std::slice::from_ref(r),
                Status::Permanent,
                "no domain in address (direct delivery needs user@domain)",
            );
            continue;
        };
        match by_domain.iter_mut().find(|(d, _)| *d == domain) {
            Some((_, v)) => v.push(r.clone()),
            None => by_domain.push((domain, vec![r.clone()])),
        }
    }
    let config = crate::tls::client_config_no_verify();
    let message: Arc<[u8]> = Arc::from(message);
    let mut tasks = tokio::task::JoinSet::new();
    for (domain, rs) in by_domain {
        let dns = dns.clone();
        let opts = opts.clone();
        let config = config.clone();
        let message = message.clone();
        let from = from.to_string();
        tasks.spawn(async move {
            send_domain(&opts, &dns, &domain, port, config, &from, &rs, &message).await
        });
    }
    while let Some(res) = tasks.join_next().await {
        match res {
            Ok(r) => {
                report.stopped = report.stopped.or(r.stopped);
                report.rcpts.extend(r.rcpts);
            }
            Err(e) => report.rcpts.push(RcptReport {
                rcpt: String::new(),
                status: Status::Temporary,
                detail: format!("delivery task failed: {e}"),
            }),
        }
    }
    report
}

#[allow(clippy::too_many_arguments)]
async fn send_domain(
    opts: &Options,
    dns: &MxResolver,
    domain: &str,
    port: u16,
    config: Arc<rustls::ClientConfig>,
    from: &str,
    rcpts: &[String],
    message: &[u8],
) -> Report {
    let mut report = Report::default();
    let route = match dns.route(domain).await {
        Ok(r) => r,
        Err(e) => {
            let status = if e.is_temporary() {
                Status::Temporary
            } else {
                Status::Permanent
            };
            report.fail_all(rcpts, status, &e.to_string());
            return report;
        }
    };
    if opts.verbose {
        let hosts: Vec<String> = route
            .hosts
            .iter()
            .map(|h| format!("{} ({})", h.name, h.preference))
            .collect();
        let kind = if route.implicit { "implicit MX" } else { "MX" };
        eprintln!("=== {domain}: {kind} {}", hosts.join(", "));
    }
    let settings = Settings {
        ehlo_name: opts.ehlo_name.clone(),
        tls: TlsMode::Opportunistic,
        auth: None,
        quit_after: opts.quit_after,
    };
    let mut last: Option<Report> = None;
    for host in &route.hosts {
        let addrs = match dns.addresses(&host.name).await {
            Ok(a) => a,
            Err(e) => {
                let mut r = Report::default();
                let status = match e {
                    DnsError::Temporary(_) => Status::Temporary,
                    _ => Status::Temporary, // one bad MX host: others may work; retry later
                };
                r.fail_all(rcpts, status, &format!("MX {}: {e}", host.name));
                last = Some(r);
                continue;
            }
        };
        let addrs: Vec<SocketAddr> = addrs
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        match send_to_host(
            opts,
            &host.name,
            port,
            &addrs,
            settings.clone(),
            Some(config.clone()),
            from,
            rcpts,
            message,
        )
        .await
        {
            Ok(r) => return r,
            Err((r, _)) => last = Some(r),
        }
    }
    last.unwrap_or_else(|| {
        let mut r = Report::default();
        r.fail_all(
            rcpts,
            Status::Temporary,
            &format!("{domain}: no MX host reachable"),
        );
        r
    })
}

/// A default timeout for interactive use (`--timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
