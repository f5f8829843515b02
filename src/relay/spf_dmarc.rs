//! SPF (RFC 7208) and DMARC (RFC 7489) for mail on the `smtp` listener from clients neither
//! authenticated nor in `trusted_networks` (the mail DKIM verification covers,
//! [`super::sender_auth`]); settings in `[mrelayd.spf_dmarc]` ([`Config`]).
//!
//! - **SPF**: `check_host()` (RFC 7208 §4) of the HELO identity (§2.3) and of the MAIL FROM
//!   identity (§2.4; a null reverse-path is `postmaster@` the HELO name, so its result is the
//!   HELO's), by mail-auth with the shared resolver ([`crate::dkim::Verifier::authenticator`]).
//!   mail-auth does not count void lookups; [`VoidCount`] does (§4.6.4: more than
//!   [`MAX_VOID_LOOKUPS`] look-ups answered NXDOMAIN or with no records are a `permerror`),
//!   and for the `exists:` names, whose look-ups no cache sees the answer of, [`spf`] asks
//!   the same resolver again ([`VoidCount::exists_names`]).
//!   Results go into our `Authentication-Results:` as `spf=... smtp.helo=...` and
//!   `spf=... smtp.mailfrom=...` (RFC 8601 §2.7.2).
//! - **DMARC**: the policy of the RFC 5322.From domain, with relaxed or strict alignment
//!   (`aspf`/`adkim`, RFC 7489 §3.1) of the SPF MAIL FROM result and of each DKIM signature that
//!   passed, by mail-auth; `dmarc=... reason="p=..." header.from=...` (RFC 7489 §11.2).
//! - **Actions** ([`decide`], sans-IO): a DMARC failure under `p=reject` is refused at the end
//!   of DATA with `550 5.7.1` (`dmarc_reject = "reject"`, the default) or accepted and marked
//!   (`"mark"`: the field says `dmarc=fail reason="p=reject"`); `p=quarantine` and `p=none`
//!   failures are marked. An SPF `fail` of the MAIL FROM identity is marked, or refused with
//!   `550 5.7.23` (RFC 7372 §3.2) with `spf_fail = "reject"`. A DNS temporary failure is never
//!   a permanent refusal (RFC 7208 §2.6.6, RFC 7489 §6.6.2): it is marked (`temperror`), or,
//!   with `temperror = "tempfail"`, refused with `451 4.7.24` (SPF) or `451 4.7.1` (DMARC) so
//!   the client retries.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;

use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DmarcResult, MessageAuthenticator, Parameters, ResolverCache,
    SpfOutput, SpfResult,
};
use serde::Deserialize;

use crate::authres::MethodResult;
use crate::smtp::reply::Reply;

/// `[mrelayd.spf_dmarc]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Check SPF for HELO and MAIL FROM.
    pub spf: bool,
    /// Evaluate the From: domain's DMARC policy.
    pub dmarc: bool,
    /// What an SPF `fail` of the MAIL FROM identity does.
    pub spf_fail: Action,
    /// What a DMARC failure under `p=reject` does.
    pub dmarc_reject: Action,
    /// What a DNS temporary failure (`temperror`) does.
    pub temperror: TempAction,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            spf: true,
            dmarc: true,
            spf_fail: Action::Mark,
            dmarc_reject: Action::Reject,
            temperror: TempAction::Mark,
        }
    }
}

/// What a failure does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Accept, with the failure in `Authentication-Results:`.
    Mark,
    /// Refuse at the end of DATA with a 5xx reply.
    Reject,
}

/// What a DNS temporary failure does (never a 5xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TempAction {
    /// Accept, with `temperror` in `Authentication-Results:`.
    Mark,
    /// Refuse at the end of DATA with a 4xx reply: the client tries again later.
    Tempfail,
}

/// The SMTP identities of one message (RFC 7208 §2.3, §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client's address.
    pub ip: IpAddr,
    /// The HELO/EHLO argument (empty when none was given).
    pub helo: String,
    /// The MAIL FROM reverse-path, empty for the null sender `<>`.
    pub mail_from: String,
}

/// What the checks found: the results for `Authentication-Results:` and the refusal, if any.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// `spf=` and `dmarc=` results, in that order.
    pub results: Vec<MethodResult>,
    /// Refuse the message with this reply (None: accept).
    pub reply: Option<Reply>,
}

/// More void look-ups than this in one `check_host()` are a `permerror` (RFC 7208 §4.6.4).
pub const MAX_VOID_LOOKUPS: usize = 2;

/// The longest one SPF or DMARC evaluation may take: then `temperror` (RFC 7208 §4.6.4 asks
/// for a bound; the DNS queries have their own timeouts, [`crate::dns::QUERY_TIMEOUT`]).
pub const CHECK_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The checks for one message: SPF for `client`, then DMARC for `parsed` (its header section
/// at least) with the DKIM outputs already computed. `host` is our host name (SPF's `%{r}`).
pub async fn check(
    auth: &MessageAuthenticator,
    config: &Config,
    host: &str,
    client: &Client,
    parsed: Option<&AuthenticatedMessage<'_>>,
    dkim: &[DkimOutput<'_>],
) -> Outcome {
    let helo = client.helo.trim_end_matches('.');
    // A null reverse-path's identity is postmaster@HELO (RFC 7208 §2.4).
    let (mail_from, null_sender) = if client.mail_from.is_empty() {
        (format!("postmaster@{helo}"), true)
    } else {
        (client.mail_from.clone(), false)
    };
    let mail_from_domain = mail_from
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default();
    let mut results = Vec::new();
    let mut spf_mail = SpfOutput::new(mail_from_domain.clone()).with_result(SpfResult::None);
    let mut spf_mail_voids = false;
    if config.spf {
        // Both identities at once: on a silent DNS server, one wait instead of two.
        let helo_check = async {
            if is_domain(helo) {
                spf(
                    auth,
                    SpfParameters::verify_ehlo(client.ip, helo, host),
                    helo,
                )
                .await
            } else {
                // An address literal or a bare word names no SPF record (RFC 7208 §2.3).
                (
                    SpfOutput::new(helo.to_string()).with_result(SpfResult::None),
                    false,
                )
            }
        };
        let mail_check = async {
            if null_sender {
                None
            } else {
                let params = SpfParameters::verify_mail_from(client.ip, helo, host, &mail_from);
                Some(spf(auth, params, &mail_from_domain).await)
            }
        };
        let ((helo_out, helo_voids), mail) = tokio::join!(helo_check, mail_check);
        let (mail_out, mail_voids) = mail.unwrap_or_else(|| (helo_out.clone(), helo_voids));
        if !helo.is_empty() {
            results.push(spf_result(&helo_out, helo_voids).prop("smtp.helo", helo));
        }
        results.push(spf_result(&mail_out, mail_voids).prop("smtp.mailfrom", mail_from.as_str()));
        spf_mail = mail_out;
        spf_mail_voids = mail_voids;
    }
    let mut dmarc = None;
    if let (true, Some(parsed)) = (config.dmarc, parsed) {
        let params = DmarcParameters::new(parsed, dkim, &mail_from_domain, &spf_mail);
        let out = tokio::time::timeout(CHECK_DEADLINE, auth.verify_dmarc(params)).await;
        let verdict = match out {
            Ok(out) if out.domain().is_empty() => None,
            Ok(out) => Some(Dmarc {
                result: dmarc_word(&out),
                // No record: no policy to name.
                policy: if out.dmarc_record().is_some() {
                    out.policy()
                } else {
                    Policy::Unspecified
                },
                domain: out.domain().to_string(),
            }),
            Err(_) => parsed.from().rsplit_once('@').map(|(_, d)| Dmarc {
                result: "temperror",
                policy: Policy::Unspecified,
                domain: d.to_ascii_lowercase(),
            }),
        };
        if let Some(d) = &verdict {
            let mut r = MethodResult::new("dmarc", d.result);
            if let Some(p) = policy_word(d.policy) {
                r = r.reason(format!("p={p}"));
            }
            results.push(r.prop("header.from", d.domain.as_str()));
        }
        dmarc = verdict;
    }
    let spf_word = if config.spf {
        Some(spf_word(spf_mail.result(), spf_mail_voids))
    } else {
        None
    };
    let reply = decide(
        config,
        spf_word,
        &mail_from_domain,
        &client.ip,
        dmarc.as_ref(),
    );
    Outcome { results, reply }
}

/// One DMARC verdict: the result keyword (RFC 7489 §11.2), the policy and the From: domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dmarc {
    /// `pass`, `fail`, `temperror`, `permerror` or `none`.
    pub result: &'static str,
    /// The policy that applies (after `sp=`/`np=` and `t=y`).
    pub policy: Policy,
    /// The RFC 5322.From domain.
    pub domain: String,
}

/// The reply the results call for (module doc), sans-IO: DMARC `p=reject` first, then SPF
/// `fail`, then DNS temporary failures; None accepts.
pub fn decide(
    config: &Config,
    spf: Option<&str>,
    spf_domain: &str,
    ip: &IpAddr,
    dmarc: Option<&Dmarc>,
) -> Option<Reply> {
    if let Some(d) = dmarc {
        if d.result == "fail" && d.policy == Policy::Reject && config.dmarc_reject == Action::Reject
        {
            // RFC 7489 §6.6.3 leaves the reply to the receiver; 5.7.1 as the issue and most
            // receivers use.
            return Some(Reply::new(
                550,
                Some((5, 7, 1)),
                format!(
                    "Message rejected: it fails the DMARC policy (p=reject) of {}",
                    d.domain
                ),
            ));
        }
    }
    if spf == Some("fail") && config.spf_fail == Action::Reject {
        return Some(Reply::new(
            550,
            Some((5, 7, 23)),
            format!("SPF of {spf_domain} does not permit {ip} to send its mail"),
        ));
    }
    if config.temperror == TempAction::Tempfail {
        if spf == Some("temperror") {
            return Some(Reply::new(
                451,
                Some((4, 7, 24)),
                format!("SPF of {spf_domain}: temporary DNS failure, try again later"),
            ));
        }
        if let Some(d) = dmarc.filter(|d| d.result == "temperror") {
            return Some(Reply::new(
                451,
                Some((4, 7, 1)),
                format!(
                    "DMARC of {}: temporary DNS failure, try again later",
                    d.domain
                ),
            ));
        }
    }
    None
}

/// One `check_host()` with its void look-ups counted; the bool: over [`MAX_VOID_LOOKUPS`].
async fn spf(
    auth: &MessageAuthenticator,
    params: SpfParameters<'_>,
    domain: &str,
) -> (SpfOutput, bool) {
    let txt = VoidCount::default();
    let mx = VoidCount::default();
    let v4 = VoidCount::default();
    let v6 = VoidCount::default();
    let ptr = VoidCount::default();
    let params = Parameters::new(params)
        .with_txt_cache(&txt)
        .with_mx_cache(&mx)
        .with_ipv4_cache(&v4)
        .with_ipv6_cache(&v6)
        .with_ptr_cache(&ptr);
    let check = async {
        let out = auth.check_host(params).await;
        let mut exists_voids = 0;
        // A temperror needs no count (below); else each exists: name asked (§5.7), again
        // through the same resolver, from its cache: void when no address record answers,
        // as mail-auth's own exists look-up decides. A failure now is not counted: a
        // temporary DNS failure must never make a permerror.
        if out.result() != SpfResult::TempError {
            for (name, asked) in VoidCount::exists_names(&v4, &v6) {
                let found = auth
                    .exists(name.as_str(), None::<&VoidCount>, None::<&VoidCount>)
                    .await;
                if let Ok(false) = found {
                    exists_voids += asked;
                }
            }
        }
        (out, exists_voids)
    };
    let (out, exists_voids) = match tokio::time::timeout(CHECK_DEADLINE, check).await {
        Ok(done) => done,
        Err(_) => {
            return (
                SpfOutput::new(domain.to_string()).with_result(SpfResult::TempError),
                false,
            )
        }
    };
    let voids =
        txt.voids() + mx.voids() + ptr.voids() + VoidCount::address_voids(&v4, &v6) + exists_voids;
    // A temperror stays one: the look-up that failed was not void, and a retry may pass.
    let over = voids > MAX_VOID_LOOKUPS && out.result() != SpfResult::TempError;
    (out, over)
}

/// A "cache" that stores nothing and counts, per name, the look-ups that found nothing:
/// mail-auth asks it before each query and fills it after each one that found records, so a
/// name asked and never filled was a void look-up (RFC 7208 §4.6.4: NXDOMAIN or no answer).
#[derive(Default)]
pub struct VoidCount {
    /// Name (as [`KeyBytes`] records it) → asked minus filled.
    open: Mutex<HashMap<Vec<u8>, i64>>,
}

/// A [`Hasher`] that keeps what is written to it: the key of a name in [`VoidCount`]. The
/// cache is asked for `&Q`, of which only `Hash` and `Eq` are known, so this is how a name
/// asked for can be read back ([`VoidCount::exists_names`]): a `str` hashes as its bytes and
/// then 0xff (`Hasher::write_str`), as the unit test below checks.
#[derive(Default)]
struct KeyBytes(Vec<u8>);

impl Hasher for KeyBytes {
    fn finish(&self) -> u64 {
        // Never used as a hash: the bytes are the key.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

impl VoidCount {
    fn key<Q: Hash + ?Sized>(name: &Q) -> Vec<u8> {
        let mut h = KeyBytes::default();
        name.hash(&mut h);
        h.0
    }

    fn counts(&self) -> HashMap<Vec<u8>, i64> {
        self.open.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// The look-ups that found nothing.
    pub fn voids(&self) -> usize {
        self.counts().values().map(|&n| n.max(0) as usize).sum()
    }

    /// The void A and AAAA look-ups of `a` and `mx` (and `ptr`'s addresses). An `exists:`
    /// asks both caches for its name and fills neither whatever it finds (mail-auth asks for
    /// any address), so a name open in both counts once less in each: those look-ups are
    /// [`Self::exists_names`]'.
    pub fn address_voids(v4: &VoidCount, v6: &VoidCount) -> usize {
        let (a, b) = (v4.counts(), v6.counts());
        // Each side's open look-ups, less those the other side has open for the same name.
        let side = |one: &HashMap<Vec<u8>, i64>, other: &HashMap<Vec<u8>, i64>| -> usize {
            one.iter()
                .map(|(k, &c)| {
                    let c = c.max(0);
                    (c - c.min(other.get(k).copied().unwrap_or(0).max(0))) as usize
                })
                .sum()
        };
        side(&a, &b) + side(&b, &a)
    }

    /// The `exists:` names (open in both address caches) and how often each was asked: their
    /// answers reach no cache, so whether they were void is for the caller to find out. A
    /// key that does not read back as a name is left out (uncounted, never a permerror).
    pub fn exists_names(v4: &VoidCount, v6: &VoidCount) -> Vec<(String, usize)> {
        let b = v6.counts();
        let mut names: Vec<(String, usize)> = v4
            .counts()
            .into_iter()
            .filter_map(|(k, c)| {
                let both = c.min(b.get(&k).copied().unwrap_or(0));
                let name = k.strip_suffix(&[0xff])?;
                let name = String::from_utf8(name.to_vec()).ok()?;
                (both > 0).then_some((name, both as usize))
            })
            .collect();
        names.sort();
        names
    }

    fn add(&self, k: Vec<u8>, d: i64) {
        if let Ok(mut m) = self.open.lock() {
            *m.entry(k).or_insert(0) += d;
        }
    }
}

impl<K: Hash + Eq, V> ResolverCache<K, V> for VoidCount {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Borrow's contract: a key and its borrowed form hash alike, so write the same bytes.
        self.add(Self::key(name), 1);
        None
    }

    fn remove<Q>(&self, _: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, key: K, _: V, _: std::time::Instant) {
        self.add(Self::key(&key), -1);
    }
}

/// Whether `name` looks like a domain name (not an address literal, not one label).
fn is_domain(name: &str) -> bool {
    !name.starts_with('[') && name.contains('.') && name.parse::<IpAddr>().is_err()
}

/// The RFC 8601 §2.7.2 keyword of an SPF result (`over`: too many void look-ups).
pub fn spf_word(r: SpfResult, over: bool) -> &'static str {
    if over {
        return "permerror";
    }
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

/// The A-R entry of one SPF output (without its identity property).
fn spf_result(out: &SpfOutput, over: bool) -> MethodResult {
    let r = MethodResult::new("spf", spf_word(out.result(), over));
    if over {
        r.reason(format!(
            "over {MAX_VOID_LOOKUPS} void DNS lookups (RFC 7208 4.6.4)"
        ))
    } else {
        r
    }
}

/// The RFC 7489 §11.2 keyword of a DMARC output.
fn dmarc_word(out: &mail_auth::DmarcOutput) -> &'static str {
    match out.result() {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

/// `p=` as written in the record.
fn policy_word(p: Policy) -> Option<&'static str> {
    match p {
        Policy::None => Some("none"),
        Policy::Quarantine => Some("quarantine"),
        Policy::Reject => Some("reject"),
        Policy::Unspecified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn dmarc(result: &'static str, policy: Policy) -> Dmarc {
        Dmarc {
            result,
            policy,
            domain: "forged.test".into(),
        }
    }

    #[test]
    fn replies_as_configured() {
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let c = Config::default();
        let reject = dmarc("fail", Policy::Reject);
        let r = decide(&c, Some("pass"), "a.test", &ip, Some(&reject)).expect("reply");
        assert_eq!((r.code, r.enhanced), (550, Some((5, 7, 1))));
        // Quarantine and none are marked; a pass never refused.
        for d in [
            dmarc("fail", Policy::Quarantine),
            dmarc("fail", Policy::None),
            dmarc("pass", Policy::Reject),
        ] {
            assert!(decide(&c, Some("pass"), "a.test", &ip, Some(&d)).is_none());
        }
        let mark = Config {
            dmarc_reject: Action::Mark,
            ..Config::default()
        };
        assert!(decide(&mark, Some("fail"), "a.test", &ip, Some(&reject)).is_none());
        let spf_reject = Config {
            spf_fail: Action::Reject,
            ..Config::default()
        };
        let r = decide(&spf_reject, Some("fail"), "a.test", &ip, None).expect("reply");
        assert_eq!((r.code, r.enhanced), (550, Some((5, 7, 23))));
        assert!(decide(&spf_reject, Some("softfail"), "a.test", &ip, None).is_none());
        // A temperror: marked, or 4xx; never 5xx, whatever the failure actions are.
        let temp = dmarc("temperror", Policy::Reject);
        assert!(decide(&spf_reject, Some("temperror"), "a.test", &ip, Some(&temp)).is_none());
        let tempfail = Config {
            temperror: TempAction::Tempfail,
            spf_fail: Action::Reject,
            ..Config::default()
        };
        let r = decide(&tempfail, Some("temperror"), "a.test", &ip, None).expect("reply");
        assert_eq!((r.code, r.enhanced), (451, Some((4, 7, 24))));
        let r = decide(&tempfail, Some("pass"), "a.test", &ip, Some(&temp)).expect("reply");
        assert_eq!((r.code, r.enhanced), (451, Some((4, 7, 1))));
    }

    #[test]
    fn void_lookups_are_names_asked_and_never_filled() {
        let c = VoidCount::default();
        let get = |n: &str| ResolverCache::<Box<str>, u8>::get::<str>(&c, n);
        assert!(get("a.test.").is_none());
        ResolverCache::<Box<str>, u8>::insert(&c, "a.test.".into(), 1, Instant::now());
        assert_eq!(c.voids(), 0);
        get("nx1.test.");
        get("nx1.test.");
        assert_eq!(c.voids(), 2);
        // exists: both address caches asked for the name, neither filled: not an address
        // void, but an exists: name, read back from its key.
        let (v4, v6) = (VoidCount::default(), VoidCount::default());
        for _ in 0..2 {
            ResolverCache::<Box<str>, u8>::get::<str>(&v4, "e.test.");
            ResolverCache::<Box<str>, u8>::get::<str>(&v6, "e.test.");
        }
        ResolverCache::<Box<str>, u8>::get::<str>(&v4, "nx.test.");
        ResolverCache::<Box<str>, u8>::get::<str>(&v6, "nx6.test.");
        ResolverCache::<Box<str>, u8>::insert(&v6, "nx6.test.".into(), 1, Instant::now());
        assert_eq!(VoidCount::address_voids(&v4, &v6), 1);
        assert_eq!(
            VoidCount::exists_names(&v4, &v6),
            [("e.test.".to_string(), 2)]
        );
        // A name filled (found) under its owned form is the name asked under its borrowed one.
        assert_eq!(
            VoidCount::key("x.test."),
            VoidCount::key(&Box::<str>::from("x.test."))
        );
        assert!(is_domain("mail.example.org") && !is_domain("[192.0.2.1]"));
        assert!(!is_domain("localhost") && !is_domain("192.0.2.1"));
    }
}
