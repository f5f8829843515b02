//! MTA-STS (RFC 8461) for MX delivery: discovery of a recipient domain's policy, its HTTPS
//! fetch, the durable cache in the state directory, and what the policy asks of the MX walk.
//!
//! - Discovery (§3.1, §5.1): the `_mta-sts.DOMAIN` TXT record (`v=STSv1; id=...`). A cached,
//!   unexpired policy with the same id is used as is; a new id (or none cached) fetches.
//! - Fetch (§3.3): `GET /.well-known/mta-sts.txt` from `https://mta-sts.DOMAIN` (port
//!   `mta_sts_port`), its certificate verified for that name against webpki-roots or
//!   `mta_sts_ca_file`; only `200` with `text/plain` counts (no redirects), body at most 64 KiB,
//!   the whole fetch within `mta_sts_timeout_secs`. The response is read by the sans-IO
//!   [`http`] reader, the policy by [`policy`].
//! - Cache (§5.1): `<state_dir>/mta-sts/DOMAIN` (JSON: id, fetch time, policy text), written
//!   durably ([`crate::durable::replace_path`]: fsync file and directory) so it outlives a
//!   restart. When the TXT look-up or the fetch fails, an unexpired cached policy still
//!   applies; with none, the domain is treated as having no policy.
//! - What it asks (§4, §5): `enforce`: only MX hosts matching the policy, only over STARTTLS
//!   with a certificate valid for the MX name (the engine's `ca_file` or webpki-roots);
//!   `testing`: delivery as without a policy, what enforce would refuse is logged; `none`:
//!   nothing.

pub mod http;
pub mod policy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};

use crate::dns::MxResolver;
use crate::net::client::{connect_tcp, Stream};
pub use policy::{Mode, Policy};

/// Largest policy body (RFC 8461 §3.3: senders may limit it to 64 KiB).
pub const MAX_POLICY_BYTES: usize = 64 * 1024;
/// Default HTTPS port of the policy host.
pub const DEFAULT_PORT: u16 = 443;
/// Default time limit of one policy fetch (connect, TLS, request and response).
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// How policies are fetched.
#[derive(Clone)]
pub struct Fetcher {
    /// HTTPS port of `mta-sts.DOMAIN`.
    pub port: u16,
    /// The rustls config that verifies the policy host.
    pub tls: Arc<ClientConfig>,
    /// Time limit of the whole fetch.
    pub timeout: Duration,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("port", &self.port)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher trusting `ca_file` (PEM) or, without one, the webpki roots.
    pub fn new(port: u16, ca_file: Option<&Path>, timeout: Duration) -> anyhow::Result<Fetcher> {
        Ok(Fetcher {
            port,
            tls: crate::tls::client_config(ca_file)?,
            timeout,
        })
    }

    /// Fetches and parses the policy of `domain` (RFC 8461 §3.3): the policy text and the
    /// policy, or why not.
    pub async fn fetch(&self, dns: &MxResolver, domain: &str) -> Result<(String, Policy), String> {
        let host = format!("mta-sts.{domain}");
        let deadline = Instant::now() + self.timeout;
        let ips = dns
            .addresses(&host)
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
        let mut last = format!("{host}: no address");
        for ip in ips {
            let addr = SocketAddr::new(ip, self.port);
            match tokio::time::timeout_at(deadline, self.get(addr, &host, &name, deadline)).await {
                Ok(Ok(r)) => return check(&host, r),
                Ok(Err(e)) => last = format!("https://{host}:{} ({ip}): {e}", self.port),
                Err(_) => return Err(format!("https://{host}:{} ({ip}): timed out", self.port)),
            }
        }
        Err(last)
    }

    /// One GET of the policy from `addr`.
    async fn get(
        &self,
        addr: SocketAddr,
        host: &str,
        name: &ServerName<'static>,
        deadline: Instant,
    ) -> Result<http::Response, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let tcp = connect_tcp(addr, left)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut s = Stream::plain(tcp);
        s.start_tls(&(self.tls.clone(), name.clone()), left)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let req = format!(
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mailkit\r\n\
             Accept: text/plain\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes(), left)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut parser = http::ResponseParser::new(MAX_POLICY_BYTES);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match s.read(&mut buf, deadline).await {
                Ok(n) => n,
                // A server that closes without close_notify ends the body all the same; the
                // parser decides whether the response is complete.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(format!("read: {e}")),
            };
            if n == 0 {
                return parser.eof().map_err(|e| e.to_string());
            }
            if let http::Parsed::Done(r) = parser.feed(&buf[..n]).map_err(|e| e.to_string())? {
                return Ok(r);
            }
        }
    }
}

/// RFC 8461 §3.3: only a 200 response with `text/plain` is a policy (3xx not followed).
fn check(host: &str, r: http::Response) -> Result<(String, Policy), String> {
    if r.status != 200 {
        return Err(format!(
            "https://{host}/.well-known/mta-sts.txt: HTTP status {} (only 200 counts, redirects \
             are not followed: RFC 8461 §3.3)",
            r.status
        ));
    }
    if !r.is_text_plain() {
        return Err(format!(
            "https://{host}/.well-known/mta-sts.txt: Content-Type {:?} is not text/plain",
            r.content_type.unwrap_or_default()
        ));
    }
    let text = String::from_utf8(r.body).map_err(|_| format!("{host}: policy is not UTF-8"))?;
    let p = policy::parse(&text).map_err(|e| format!("{host}: bad policy: {e}"))?;
    Ok((text, p))
}

/// One cached policy (the file's JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The TXT record's id when it was fetched.
    pub id: String,
    /// When it was fetched (Unix seconds).
    pub fetched: u64,
    /// The policy text as served.
    pub text: String,
}

/// A policy in force for a domain, and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Active {
    /// The policy.
    pub policy: Policy,
    /// Its id.
    pub id: String,
    /// `fetched` or `cached`.
    pub source: &'static str,
}

/// MTA-STS as mrelayd's engine applies it: fetcher and cache directory.
#[derive(Debug)]
pub struct MtaSts {
    fetcher: Fetcher,
    /// `<state_dir>/mta-sts`; `None`: no cache (every look-up fetches).
    cache_dir: Option<PathBuf>,
}

/// Whether `domain` may name a cache file: a lowercase domain of letters, digits, `-`, `_` and
/// dots, no empty label (so never `.`, `..` or a `/`).
fn cache_name_ok(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

impl MtaSts {
    /// MTA-STS with this fetcher, caching policies in `cache_dir` (created when needed).
    pub fn new(fetcher: Fetcher, cache_dir: Option<PathBuf>) -> MtaSts {
        MtaSts { fetcher, cache_dir }
    }

    /// The same, caching in `dir`.
    pub fn with_cache_dir(self, dir: PathBuf) -> MtaSts {
        MtaSts {
            cache_dir: Some(dir),
            ..self
        }
    }

    fn cache_path(&self, domain: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        cache_name_ok(domain).then(|| dir.join(domain))
    }

    /// The cached, unexpired policy of `domain`.
    fn cached(&self, domain: &str, now: u64) -> Option<(CacheEntry, Policy)> {
        let bytes = std::fs::read(self.cache_path(domain)?).ok()?;
        let entry: CacheEntry = serde_json::from_slice(&bytes).ok()?;
        let p = policy::parse(&entry.text).ok()?;
        (now < entry.fetched.saturating_add(p.max_age)).then_some((entry, p))
    }

    /// Stores a fetched policy durably (fsync file and directory).
    fn store(&self, domain: &str, entry: &CacheEntry) -> std::io::Result<()> {
        let (Some(dir), Some(path)) = (&self.cache_dir, self.cache_path(domain)) else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)?;
        let bytes = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        crate::durable::replace_path(dir, &path, &bytes, 0o600)
    }

    /// The policy in force for `domain` (RFC 8461 §5.1), `None` when it has none (or none
    /// could be had and none is cached). Problems are logged.
    pub async fn policy(&self, dns: &MxResolver, domain: &str) -> Option<Active> {
        let now = crate::clock::now();
        let cached = self.cached(domain, now);
        let id = match dns.txt(&format!("_mta-sts.{domain}")).await {
            Ok(t) => policy::record_id(&t),
            Err(e) => {
                crate::log::line(format_args!("mta-sts: {domain}: TXT look-up failed: {e}"));
                None
            }
        };
        let from_cache = |(e, p): (CacheEntry, Policy)| Active {
            policy: p,
            id: e.id,
            source: "cached",
        };
        let Some(id) = id else {
            // No (valid) record: a policy cached before still holds until it expires (§5.1).
            return cached.map(from_cache);
        };
        if let Some(c) = cached.as_ref().filter(|(e, _)| e.id == id) {
            return Some(from_cache(c.clone()));
        }
        match self.fetcher.fetch(dns, domain).await {
            Ok((text, p)) => {
                let entry = CacheEntry {
                    id: id.clone(),
                    fetched: now,
                    text,
                };
                if let Err(e) = self.store(domain, &entry) {
                    crate::log::line(format_args!("mta-sts: {domain}: caching the policy: {e}"));
                }
                crate::log::line(format_args!(
                    "mta-sts: {domain}: policy id {id} fetched: mode {}, mx {}, max_age {}",
                    p.mode.as_str(),
                    p.mx.join(" "),
                    p.max_age
                ));
                Some(Active {
                    policy: p,
                    id,
                    source: "fetched",
                })
            }
            Err(e) => {
                crate::log::line(format_args!(
                    "mta-sts: {domain}: policy fetch failed: {e}{}",
                    if cached.is_some() {
                        "; using the cached policy"
                    } else {
                        "; no policy applies"
                    }
                ));
                cached.map(from_cache)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names() {
        assert!(cache_name_ok("example.org"));
        assert!(cache_name_ok("a-b.c_d.test"));
        for bad in ["", ".", "..", "a..b", "a/b", "Example.org", ".a"] {
            assert!(!cache_name_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn cache_round_trip_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let f = Fetcher::new(443, None, Duration::from_secs(1)).unwrap();
        let m = MtaSts::new(f, Some(dir.path().join("mta-sts")));
        let entry = CacheEntry {
            id: "abc".into(),
            fetched: 1000,
            text: "version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 100\n".into(),
        };
        m.store("a.test", &entry).unwrap();
        let (e, p) = m.cached("a.test", 1099).unwrap();
        assert_eq!(e, entry);
        assert!(p.matches("mx.a.test"));
        assert!(m.cached("a.test", 1100).is_none(), "expired");
        assert!(m.cached("b.test", 1000).is_none());
    }
}
