//! `--probe`: one SMTP session per MX address with the shared client
//! ([`crate::net::smtp`] over [`crate::net::client`]): TCP connect time, greeting, EHLO, STARTTLS with a
//! certificate-recording (non-verifying) TLS config, then the certificate judged separately
//! against webpki-roots or `--ca-file` ([`crate::tls::check_chain`]) and described
//! ([`crate::tls::parse_certificate`]). Only the orchestration and the probe's report are here.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use serde::Serialize;

use crate::net::client::connect_tcp;
use crate::net::smtp::{Connection, DriverError, Timeouts, Transcript};
use crate::smtp::client::Settings;
use crate::tls::{self, CertInfo, TlsInfo};

/// A probe may take at most this many `--timeout`s in all (connect, greeting, EHLO, STARTTLS,
/// handshake, EHLO again, QUIT), so a server that trickles replies cannot hold it longer.
pub const STEPS_PER_PROBE: u32 = 7;

/// What to probe and how.
#[derive(Clone, Debug)]
pub struct ProbeSettings {
    /// SMTP port (25 unless `--port`).
    pub port: u16,
    /// Name sent in EHLO.
    pub ehlo: String,
    /// CA file to verify against instead of webpki-roots.
    pub ca_file: Option<PathBuf>,
    /// Limit of each step.
    pub timeout: Duration,
}

/// The TLS part of a probe.
#[derive(Clone, Debug, Serialize)]
pub struct TlsReport {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// IANA cipher suite name.
    pub cipher: String,
    /// Leaf certificate details (null when unparsable).
    pub certificate: Option<CertInfo>,
    /// Whether the chain verifies for the MX host name.
    pub verified: bool,
    /// Why it does not verify.
    pub verify_error: Option<String>,
    /// Extensions announced after STARTTLS.
    pub extensions: Vec<String>,
}

/// The result of probing one address.
#[derive(Clone, Debug, Serialize)]
pub struct Probe {
    /// MX host name (what the certificate must match).
    pub host: String,
    /// Address probed.
    pub ip: String,
    /// Port probed.
    pub port: u16,
    /// TCP connect time in milliseconds (null when it failed).
    pub connect_ms: Option<f64>,
    /// The greeting text (all lines joined by a newline), with its code.
    pub banner: Option<String>,
    /// The name the server gave in its EHLO reply (first word).
    pub ehlo_name: Option<String>,
    /// Extension lines of the EHLO reply before STARTTLS.
    pub extensions: Vec<String>,
    /// Whether STARTTLS was offered.
    pub starttls: bool,
    /// The TLS session after STARTTLS.
    pub tls: Option<TlsReport>,
    /// Problems found at this address, plain sentences.
    pub problems: Vec<String>,
}

/// The EHLO replies seen in a transcript (`-> `/`<- ` lines, `~> `/`<~ ` inside TLS): (before
/// TLS, after TLS), each as the reply's line texts without the code.
pub fn ehlo_replies(lines: &[String]) -> (Vec<String>, Vec<String>) {
    let mut plain = Vec::new();
    let mut tls = Vec::new();
    let mut current: Option<bool> = None;
    for l in lines {
        if let Some(cmd) = l.strip_prefix("-> ").or_else(|| l.strip_prefix("~> ")) {
            // `get`, not `[..5]`: a transcript line may hold any UTF-8, and byte 5 need not
            // be a character boundary (found by fuzz/mdig).
            let is_ehlo = cmd
                .get(..5)
                .is_some_and(|verb| verb.eq_ignore_ascii_case("EHLO "));
            current = is_ehlo.then_some(l.starts_with("~> "));
            continue;
        }
        let (in_tls, text) = if let Some(t) = l.strip_prefix("<- ") {
            (false, t)
        } else if let Some(t) = l.strip_prefix("<~ ") {
            (true, t)
        } else {
            continue;
        };
        if current == Some(in_tls) && text.starts_with("250") {
            let body = text.get(4..).unwrap_or("").to_string();
            if in_tls { &mut tls } else { &mut plain }.push(body);
        }
    }
    (plain, tls)
}

/// Probes `ip` as MX host `host`.
pub async fn probe(host: String, ip: IpAddr, s: Arc<ProbeSettings>) -> Probe {
    let mut p = Probe {
        host: host.clone(),
        ip: ip.to_string(),
        port: s.port,
        connect_ms: None,
        banner: None,
        ehlo_name: None,
        extensions: Vec::new(),
        starttls: false,
        tls: None,
        problems: Vec::new(),
    };
    let total = s.timeout.saturating_mul(STEPS_PER_PROBE);
    if tokio::time::timeout(total, session(&mut p, ip, &s))
        .await
        .is_err()
    {
        p.problems
            .push(format!("probe gave up after {} s in all", total.as_secs()));
    }
    p
}

async fn session(p: &mut Probe, ip: IpAddr, s: &ProbeSettings) {
    let addr = SocketAddr::new(ip, s.port);
    let where_ = format!("{} [{}]:{}", p.host, ip, s.port);
    let start = Instant::now();
    let stream = match connect_tcp(addr, s.timeout).await {
        Ok(st) => st,
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::TimedOut => "connect timed out".to_string(),
                _ => e.to_string(),
            };
            p.problems.push(format!("{where_}: {why}"));
            return;
        }
    };
    p.connect_ms = Some((start.elapsed().as_secs_f64() * 10_000.0).round() / 10.0);

    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let transcript: Transcript = Box::new(move |l: &str| {
        if let Ok(mut v) = sink.lock() {
            v.push(l.to_string());
        }
    });
    let server_name = match ServerName::try_from(p.host.clone()) {
        Ok(n) => n,
        // Not a valid DNS name (cannot happen for names from DNS); SNI with the address.
        Err(_) => ServerName::IpAddress(ip.into()),
    };
    let settings = Settings {
        ehlo_name: s.ehlo.clone(),
        tls: tls::Mode::Opportunistic,
        auth: None,
        quit_after: None,
    };
    let mut conn = Connection::new(
        stream,
        settings,
        Some((tls::client_config_no_verify(), server_name)),
        Timeouts::uniform(s.timeout),
        Some(transcript),
    );
    let result = conn.open().await;

    p.banner = conn
        .client()
        .greeting()
        .map(|g| format!("{} {}", g.code, g.lines.join("\n")));
    let seen = lines.lock().map(|v| v.clone()).unwrap_or_default();
    let (plain, tls_ext) = ehlo_replies(&seen);
    if let Some(first) = plain.first() {
        p.ehlo_name = first.split_whitespace().next().map(str::to_string);
    }
    p.extensions = plain
        .iter()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .cloned()
        .collect();
    p.starttls = p
        .extensions
        .iter()
        .any(|e| e.trim().eq_ignore_ascii_case("STARTTLS"));

    if let Some(tc) = conn.tls_connection() {
        let info = TlsInfo::from_state(tc);
        let chain = tls::peer_chain(tc);
        let certificate = match chain.first().map(|c| tls::parse_certificate(c)) {
            Some(Ok(ci)) => Some(ci),
            Some(Err(e)) => {
                p.problems.push(format!("{where_}: {e}"));
                None
            }
            None => None,
        };
        let (verified, verify_error) = match tls::check_chain(&chain, &p.host, s.ca_file.as_deref())
        {
            Ok(()) => (true, None),
            Err(e) => (false, Some(format!("{e:#}"))),
        };
        if let Some(e) = &verify_error {
            p.problems.push(format!("{where_}: {e}"));
        }
        p.tls = Some(TlsReport {
            version: info.version,
            cipher: info.cipher,
            certificate,
            verified,
            verify_error,
            extensions: tls_ext
                .iter()
                .skip(1)
                .filter(|l| !l.trim().is_empty())
                .cloned()
                .collect(),
        });
    }

    match result {
        Ok(_) => {
            if !p.starttls {
                p.problems.push(format!(
                    "{where_}: no STARTTLS offered: mail would go in clear (RFC 3207)"
                ));
            }
            conn.quit().await;
        }
        Err(e) => {
            let why = match &e {
                DriverError::Timeout(stage) => format!("timed out waiting for the {stage} reply"),
                other => other.to_string(),
            };
            p.problems.push(format!("{where_}: {why}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ehlo_lines_before_and_after_tls() {
        let t = v(&[
            "<- 220 mx ESMTP",
            "-> EHLO me",
            "<- 250-mx.example hello",
            "<- 250-PIPELINING",
            "<- 250 STARTTLS",
            "-> STARTTLS",
            "<- 220 go",
            "~~ TLS started",
            "~> EHLO me",
            "<~ 250-mx.example hello again",
            "<~ 250 SIZE 100",
            "~> QUIT",
            "<~ 221 bye",
        ]);
        let (plain, tls) = ehlo_replies(&t);
        assert_eq!(plain, v(&["mx.example hello", "PIPELINING", "STARTTLS"]));
        assert_eq!(tls, v(&["mx.example hello again", "SIZE 100"]));
    }

    #[test]
    fn odd_transcripts_do_not_panic() {
        let t = v(&[
            "<- 250",
            "-> EHL",
            "<- 2",
            "-> EHLO x",
            "<- 250",
            "<~ 250-x",
        ]);
        let (plain, tls) = ehlo_replies(&t);
        assert_eq!(plain, v(&[""]));
        assert!(tls.is_empty());
    }
}
