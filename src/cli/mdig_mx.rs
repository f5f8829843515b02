//! `mdig-mx`: a domain's mail route as mrelayd uses it, its SPF/DMARC/MTA-STS records, and an
//! optional SMTP/TLS probe of every MX address. The logic lives in [`crate::mdig`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::mdig::{self, probe::ProbeSettings};

/// Default per-step time limit of `--probe` (connect, each reply, the TLS handshake).
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Largest `--timeout` accepted.
pub const MAX_TIMEOUT_SECS: u64 = 600;

const AFTER_HELP: &str = "\
OUTPUT:
  For each domain: the route (MX records by preference with TTL, or
  what applies when there are none: implicit MX, null MX, NXDOMAIN),
  each MX host's A and AAAA records with TTL, flags for an MX that is
  a CNAME (RFC 2181 10.3) or an IP literal (RFC 5321 5.1), a warning
  for an MX address on loopback (127.0.0.0/8, ::1: a sender would
  deliver to itself; it does not change the exit status), the SPF
  (v=spf1 TXT), DMARC (_dmarc TXT) and MTA-STS (_mta-sts TXT) records,
  the SPF check, the DMARC policy, the DKIM key of each --selector,
  the MTA-STS policy (fetched over HTTPS from mta-sts.DOMAIN, port
  --mta-sts-port, verified with --ca-file or the webpki roots) and
  whether each MX matches it,
  each MX host's TLSA records (_PORT._tcp.HOST, RFC 7672) and whether
  the resolver validated them with DNSSEC (the AD bit; DANE needs the
  MX, address and TLSA answers all validated),
  the probe results with --probe, and the problems found, listed
  plainly at the end.

SPF, DMARC, DKIM:
  SPF check: exactly one v=spf1 record (RFC 7208 4.5), its syntax
  (an unknown mechanism is an error, unknown modifiers are ignored),
  and every DNS-querying term (include, a, mx, ptr, exists, redirect)
  counted through includes and redirects, with the chain shown: more
  than 10 look-ups or more than 2 void look-ups (NXDOMAIN or no
  answer) is a permanent error (RFC 7208 4.6.4), as is an include or
  redirect target without an SPF record. The count is the one an
  evaluation for a client address that matches nothing makes; names
  built from macros that depend on the message (%{i}, %{s}, ...) are
  counted, not followed. A receiver stops at the first permanent
  error; the walk goes on past it (up to 30 look-ups), so the count
  shows what the whole record costs. DMARC: the _dmarc record's p, sp, pct,
  adkim, aspf, rua and ruf (RFC 7489 6.3), defaults filled in; a
  missing or bad p, a bad value or report URI is a problem. A domain
  without a _dmarc record gets its organizational domain's policy
  (RFC 7489 6.6.3), whose sp applies to it; the organizational domain
  is found as mrelayd finds it, by the DNS tree walk of RFC 9989 4.10
  (_dmarc of each parent name up to the top-level domain; no public
  suffix list), and shown with the record. DKIM:
  with --selector NAME (repeatable), the TXT record at
  NAME._domainkey.DOMAIN (RFC 6376 3.6.1): key type (rsa, ed25519),
  bits (RSA modulus; 256 for Ed25519), revoked (empty p=), testing
  (t=y). No record, a revoked or unparsable key, or an RSA key under
  1024 bits (RFC 8301 3.2) is a problem. A spinner runs on stderr while stdout is a
  terminal (never with --json).

JSON FIELDS:
  --json prints one document, {\"domains\": [...], \"exit\": N}.
  These field names are stable. Each element of domains:
    domain       the domain asked for
    route        mx, implicit_mx, null_mx, nxdomain, no_address,
                 temporary_failure or bad_name
    error        why there is no route (string), or null
    mx           list, by preference: preference, host, ttl (null
                 for the implicit MX), cname (alias target or null),
                 ip_literal (bool), addresses (list of ip,
                 family \"ipv4\"/\"ipv6\", ttl, loopback (bool))
    spf, dmarc, mta_sts
                 lists of TXT strings (v=spf1, v=DMARC1, v=STSv1)
    spf_check    null without exactly one SPF record, or: status
                 (valid, permerror, temperror), error (string or
                 null), lookups, lookup_limit (10), void_lookups,
                 void_limit (2), chain (list of depth, term, domain
                 (null for a macro), lookup (its number; 0 when not
                 evaluated), void (bool), record (the include or
                 redirect target's SPF record), note)
    dmarc_policy null without exactly one DMARC record of the domain
                 and without one of its organizational domain, or:
                 record, valid (bool), p, sp (null when missing or
                 bad), pct, adkim, aspf (r or s), rua, ruf (lists of
                 URIs), problems, source (domain, or
                 organizational_domain when the domain has no record
                 of its own), policy_domain (whose _dmarc record it
                 is), organizational_domain (null for source domain),
                 applied_tag (p, or sp for a subdomain),
                 applied_policy (that tag's value, or null)
    dkim         list, one per --selector: selector, name, record
                 (null when none), key_type, bits, revoked, testing
                 (bools), problems (absent when there is no record)
    mta_sts_policy
                 null without an MTA-STS record, else: id (the
                 record's, or null), url, policy (null, or: mode
                 enforce/testing/none, mx (patterns), max_age),
                 error (why there is no policy, or null), mx (list
                 of host, matches (bool): RFC 8461 4.1)
    tlsa         list per MX host: host, name (_PORT._tcp.HOST),
                 mx_authenticated, addresses_authenticated,
                 authenticated (bools: the resolver set AD), records
                 (list of usage, selector, matching, data (hex),
                 usable), dane (\"dane\", \"encrypt\" or \"none\": what
                 a DANE client does), error (string or null)
    probes       list (empty without --probe): host, ip, port,
                 connect_ms (null if no connection), banner
                 (\"CODE text\"), ehlo_name, extensions (EHLO lines
                 before STARTTLS), starttls (bool), tls (null, or:
                 version, cipher, certificate (null, or: subject,
                 sans, issuer, not_before, not_after as RFC 3339
                 UTC, not_after_unix, spki_sha256: the SHA-256 of
                 the server's public key in hex, what msend
                 --tls-fingerprint pins), verified (bool),
                 verify_error, extensions after STARTTLS), problems
    problems     list of plain sentences
    warnings     list of plain sentences (an MX on loopback)
    exit         this domain's exit status

EXIT STATUS:
  0   every domain has a working route (and with --probe every MX
      address was fine)
  1   problems found (listed at the end), but mail can be routed
  64  bad usage (unknown option, invalid domain name)
  66  the --ca-file cannot be read
  68  no mail route (NXDOMAIN, null MX, no addresses)
  75  temporary DNS failure; try again later
  With several domains the most serious applies: 75, 68, 64, then 1.

ENVIRONMENT:
  Without --resolver the system resolver configuration
  (/etc/resolv.conf, /etc/hosts) is used. With --resolver every name
  is asked of that server, /etc/hosts is not read; only localhost
  stays loopback without a query (RFC 6761 6.3).";

/// Command line of `mdig-mx`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "mdig-mx",
    version,
    about = "Show a domain's mail route (MX, addresses), check its SPF, DMARC, DKIM, MTA-STS and TLSA records, and probe its SMTP servers",
    long_about = "Show the mail route of each DOMAIN the way mrelayd uses it: MX records by \
preference with TTL, each host's A and AAAA records, and what applies when there are none \
(implicit MX, null MX, NXDOMAIN). Also the domain's SPF, DMARC and MTA-STS records: the SPF record \
checked with its DNS look-ups counted through includes (RFC 7208 limits: 10, and 2 void), the DMARC \
policy parsed (the organizational domain's when the domain has none), and with --selector the DKIM key's type, size and flags; with an \
MTA-STS record, the policy fetched from https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461: \
mode, mx patterns, max_age) and whether each MX host matches it; each MX \
host's TLSA records (DANE, RFC 7672) with whether they are DNSSEC-validated. With --probe, \
connect to every MX address in parallel and report connect time, banner, EHLO name and \
extensions, STARTTLS with TLS version, cipher and certificate, and whether the certificate \
verifies for the MX name.",
    after_long_help = AFTER_HELP
)]
pub struct Args {
    /// DNS server to ask instead of the system resolver: IP or IP:PORT ([v6]:PORT).
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_resolver)]
    pub resolver: Option<std::net::SocketAddr>,
    /// Connect to every MX address and check SMTP and STARTTLS.
    #[arg(long)]
    pub probe: bool,
    /// SMTP port to probe.
    #[arg(long, value_name = "N", default_value_t = 25)]
    pub port: u16,
    /// Name to send in EHLO when probing (default: this host's name).
    #[arg(long, value_name = "NAME")]
    pub ehlo: Option<String>,
    /// Verify server certificates (the probed MX hosts and the MTA-STS policy host) against
    /// this PEM CA file instead of the webpki roots.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// HTTPS port of mta-sts.DOMAIN, where the MTA-STS policy is fetched from.
    #[arg(long, value_name = "N", default_value_t = crate::outbound::mta_sts::DEFAULT_PORT)]
    pub mta_sts_port: u16,
    /// Time limit in seconds of each probe step (connect, each reply, TLS handshake).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,
    /// Also check the DKIM key NAME._domainkey.DOMAIN (repeatable).
    #[arg(long = "selector", value_name = "NAME", value_parser = parse_selector)]
    pub selectors: Vec<String>,
    /// Print one JSON document (field names under JSON FIELDS in the manual).
    #[arg(long)]
    pub json: bool,
    /// Domains to look up.
    #[arg(value_name = "DOMAIN", required = true)]
    pub domains: Vec<String>,
}

fn parse_selector(s: &str) -> Result<String, String> {
    if mdig::valid_domain(s) && !s.ends_with('.') {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "{s:?} is not a DKIM selector (labels of letters, digits, '-', '_')"
        ))
    }
}

fn parse_resolver(s: &str) -> Result<std::net::SocketAddr, String> {
    crate::dns::parse_server(s)
}

impl super::Tool for Args {
    const NAME: &'static str = "mdig-mx";
    fn run(self) -> anyhow::Result<u8> {
        if let Some(ca) = &self.ca_file {
            // Fail early and plainly rather than once per probe.
            crate::tls::root_store(Some(ca)).map_err(|e| {
                crate::exit::fail(crate::exit::NOINPUT, format!("--ca-file: {e:#}"))
            })?;
        }
        let rt = crate::runtime::build(crate::runtime::Threads::Workers {
            count: 2,
            name: "mdig-mx",
        })?;
        let report = rt.block_on(self.collect())?;
        let mut out = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer_pretty(&mut out, &report).context("writing JSON")?;
            out.write_all(b"\n").context("writing output")?;
        } else {
            for (i, d) in report.domains.iter().enumerate() {
                if i > 0 {
                    out.write_all(b"\n").context("writing output")?;
                }
                out.write_all(mdig::render_text(d).as_bytes())
                    .context("writing output")?;
            }
        }
        out.flush().context("writing output")?;
        Ok(report.exit)
    }
}

impl Args {
    async fn collect(&self) -> anyhow::Result<mdig::Report> {
        let resolver = crate::dns::MxResolver::new(self.resolver)
            .map_err(|e| crate::exit::fail(crate::exit::TEMPFAIL, e))?;
        let secure = crate::dns::secure::SecureResolver::new(self.resolver)
            .map_err(|e| crate::exit::fail(crate::exit::TEMPFAIL, e))?;
        let spinner = (std::io::stdout().is_terminal() && !self.json).then(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.enable_steady_tick(Duration::from_millis(100));
            s
        });
        let settings = Arc::new(ProbeSettings {
            port: self.port,
            ehlo: self
                .ehlo
                .clone()
                .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned()),
            ca_file: self.ca_file.clone(),
            timeout: Duration::from_secs(self.timeout),
        });
        let fetcher = crate::outbound::mta_sts::Fetcher::new(
            self.mta_sts_port,
            self.ca_file.as_deref(),
            Duration::from_secs(self.timeout),
        )?;
        let mut domains = Vec::new();
        for d in &self.domains {
            if let Some(s) = &spinner {
                s.set_message(format!("looking up {d}"));
            }
            let mut r = mdig::lookup_domain(&resolver, d).await;
            mdig::auth::check(&resolver, &mut r, &self.selectors).await;
            mdig::mta_sts::check(&mut r, &resolver, &fetcher).await;
            mdig::tlsa::add_to(&mut r, &secure, self.port).await;
            if r.exit == crate::exit::OK && !r.problems.is_empty() {
                r.exit = mdig::EXIT_PROBLEMS;
            }
            if self.probe && !r.mx.is_empty() {
                if let Some(s) = &spinner {
                    s.set_message(format!("probing the MX hosts of {d}"));
                }
                mdig::probe_domain(&mut r, settings.clone()).await;
            }
            domains.push(r);
        }
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        let codes: Vec<u8> = domains.iter().map(|d| d.exit).collect();
        Ok(mdig::Report {
            exit: mdig::overall_exit(&codes),
            domains,
        })
    }
}
