//! mdig-mx's sender-authentication report: the SPF record checked and its DNS look-ups counted
//! through includes and redirects (RFC 7208 §4.6.4), the DMARC policy parsed (RFC 7489 §6.3)
//! with, for a domain without its own, its organizational domain's ([`DmarcReport`],
//! §6.6.3, found by mrelayd's tree walk: [`authrec::org_policy`]), and the DKIM key of each
//! `--selector` (RFC 6376 §3.6.1).
//!
//! The record parsers are sans-IO in [`super::authrec`] (SPF: mail-auth's parser for the
//! mechanisms, [`authrec::spf_terms`] for the unknown-mechanism rule); the look-ups are
//! [`crate::dns::MxResolver`]'s. [`check`] fills [`AuthReport`] into the domain's report
//! (flattened into its JSON: `spf_check`, `dmarc_policy`, `dkim`) and adds its problems;
//! [`render_text`] writes the text lines.
//!
//! The SPF walk is static, as SPF checkers report: every look-up term of every record reached
//! is counted, as an evaluation for a client address that matches nothing would count them
//! (python3-spf's count on such an address is the same, which tests/mdig_auth.rs checks).
//! Targets built from macros other than the domain itself (`%{i}`, `%{s}`, ...) depend on the
//! message and are counted, not followed.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;

use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::dmarc::Psd;
use mail_auth::spf::{Macro, Mechanism, Qualifier, Spf, Variable};
use serde::Serialize;

use super::authrec::{self, DkimKeyInfo, DmarcPolicy};
use super::DomainReport;
use crate::dns::{records_with_tag, DnsError, MxResolver};
use crate::exit;

/// DNS-querying terms allowed in one SPF evaluation (RFC 7208 §4.6.4).
pub const SPF_LOOKUP_LIMIT: u32 = 10;
/// Void look-ups (NXDOMAIN or no answer) allowed (RFC 7208 §4.6.4).
pub const SPF_VOID_LIMIT: u32 = 2;
/// MX records an `mx` mechanism may return (RFC 7208 §4.6.4).
pub const SPF_MX_LIMIT: usize = 10;
/// The walk stops after this many look-ups (a loop of includes would never end).
const WALK_CAP: u32 = 30;

/// One DNS-querying term met in the SPF walk.
#[derive(Clone, Debug, Serialize)]
pub struct SpfLookup {
    /// Nesting: 0 for the domain's own record, 1 inside its includes and redirect, ...
    pub depth: u32,
    /// The term as written (`include:_spf.example.test`, `mx`, `redirect=x.test`).
    pub term: String,
    /// The name looked up, null when it is built from a macro that depends on the message.
    pub domain: Option<String>,
    /// This look-up's number in the evaluation (1 to 10 allowed).
    pub lookup: u32,
    /// It was a void look-up (NXDOMAIN or no records).
    pub void: bool,
    /// For `include` and `redirect`: the target's SPF record.
    pub record: Option<String>,
    /// What else was found (`2 MX hosts`, `not followed: macro`), or null.
    pub note: Option<String>,
}

/// The SPF check of a domain that has exactly one `v=spf1` record.
#[derive(Clone, Debug, Serialize)]
pub struct SpfCheck {
    /// `valid`, `permerror` (receivers' SPF fails as permerror for every sender) or
    /// `temperror` (a DNS failure; try again).
    pub status: &'static str,
    /// Why it is not valid, or null.
    pub error: Option<String>,
    /// DNS-querying terms counted (include, a, mx, ptr, exists, redirect).
    pub lookups: u32,
    /// The limit, 10.
    pub lookup_limit: u32,
    /// Void look-ups counted.
    pub void_lookups: u32,
    /// The limit, 2.
    pub void_limit: u32,
    /// Every look-up term in evaluation order, includes' own terms after them.
    pub chain: Vec<SpfLookup>,
}

/// One `--selector`'s DKIM key.
#[derive(Clone, Debug, Serialize)]
pub struct DkimKey {
    /// The selector.
    pub selector: String,
    /// `SELECTOR._domainkey.DOMAIN`.
    pub name: String,
    /// The key record (the TXT strings joined), null when there is none.
    pub record: Option<String>,
    /// What the record says (null when there is none).
    #[serde(flatten)]
    pub key: Option<DkimKeyInfo>,
}

/// The DMARC policy that applies to a domain and where it came from.
#[derive(Clone, Debug, Serialize)]
pub struct DmarcReport {
    /// The record's tags.
    #[serde(flatten)]
    pub policy: DmarcPolicy,
    /// `domain` (its own `_dmarc` record) or `organizational_domain` (it has none, so its
    /// organizational domain's applies, RFC 7489 §6.6.3).
    pub source: &'static str,
    /// The domain whose `_dmarc` record it is.
    pub policy_domain: String,
    /// The organizational domain, found by the DNS tree walk mrelayd does (null for a
    /// domain's own record: not looked up).
    pub organizational_domain: Option<String>,
    /// The tag that applies to mail from this domain: `p` for its own record, `sp` for a
    /// subdomain of the organizational domain (§6.6.3).
    pub applied_tag: &'static str,
    /// That tag's policy (`sp` defaults to `p`), null when the record has no valid one.
    pub applied_policy: Option<String>,
}

/// The sender-authentication part of a domain's report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuthReport {
    /// The SPF check, null when the domain has no SPF record or was not looked up.
    pub spf_check: Option<SpfCheck>,
    /// The DMARC policy, null without exactly one DMARC record of the domain's own and
    /// without one of its organizational domain.
    pub dmarc_policy: Option<DmarcReport>,
    /// One entry per `--selector`.
    pub dkim: Vec<DkimKey>,
}

/// Runs the checks for `r` (after [`super::lookup_domain`]), adds their problems and updates
/// its exit status (75 on a DNS failure, else 1 for problems). Nothing is checked for a domain
/// whose records could not be looked up (NXDOMAIN, bad name, temporary failure).
pub async fn check(resolver: &MxResolver, r: &mut DomainReport, selectors: &[String]) {
    if matches!(r.route, "nxdomain" | "bad_name" | "temporary_failure") || r.exit == exit::TEMPFAIL
    {
        return;
    }
    let mut temporary = false;
    if let [record] = r.spf.as_slice() {
        let c = check_spf(resolver, &r.domain, record).await;
        match c.status {
            "temperror" => temporary = true,
            "permerror" => r.problems.push(format!(
                "SPF of {}: {} (receivers give permerror)",
                r.domain,
                c.error.as_deref().unwrap_or("permanent error")
            )),
            _ => {}
        }
        if c.status == "temperror" {
            r.problems.push(format!(
                "SPF of {}: {}",
                r.domain,
                c.error.as_deref().unwrap_or("temporary DNS failure")
            ));
        }
        r.auth.spf_check = Some(c);
    }
    // The record that applies: the domain's own, else its organizational domain's (RFC 7489
    // §6.6.3; several records of its own are no policy at all, reported in lookup_domain).
    let applies = match r.dmarc.as_slice() {
        [record] => Some((record.clone(), r.domain.clone(), None)),
        [] => match org_dmarc(resolver, &r.domain).await {
            Err((name, e)) => {
                temporary = true;
                r.problems
                    .push(format!("TXT look-up of _dmarc.{name} failed: {e}"));
                None
            }
            Ok(o) => o.map(|o| (o.record, o.domain, Some(o.organizational_domain))),
        },
        _ => None,
    };
    if let Some((record, policy_domain, org)) = applies {
        let d = authrec::parse_dmarc(&record);
        for p in &d.problems {
            r.problems.push(format!("DMARC of {policy_domain}: {p}"));
        }
        // Under its organizational domain's record this domain is a subdomain: sp (np, RFC
        // 9989, would be for a name that does not exist, and NXDOMAIN is not checked here).
        let (source, applied_tag, applied_policy) = match org {
            None => ("domain", "p", d.p.clone()),
            Some(_) => ("organizational_domain", "sp", d.sp.clone()),
        };
        r.auth.dmarc_policy = Some(DmarcReport {
            policy: d,
            source,
            policy_domain,
            organizational_domain: org,
            applied_tag,
            applied_policy,
        });
    }
    for s in selectors {
        let name = format!("{s}._domainkey.{}", r.domain);
        let mut k = DkimKey {
            selector: s.clone(),
            name: name.clone(),
            record: None,
            key: None,
        };
        match resolver.txt(&name).await {
            Err(e) => {
                temporary = true;
                r.problems
                    .push(format!("TXT look-up of {name} failed: {e}"));
            }
            Ok(txt) => {
                // RFC 6376 §3.6.2.2: one record; with several the verifier's pick is undefined.
                match txt.as_slice() {
                    [] => r
                        .problems
                        .push(format!("DKIM selector {s}: no key record at {name}")),
                    [one] => {
                        let info = authrec::parse_dkim_key(one);
                        for p in &info.problems {
                            r.problems.push(format!("DKIM key {name}: {p}"));
                        }
                        k.record = Some(one.clone());
                        k.key = Some(info);
                    }
                    many => r.problems.push(format!(
                        "DKIM selector {s}: {} TXT records at {name}, verifiers expect one \
                         (RFC 6376 §3.6.2.2)",
                        many.len()
                    )),
                }
            }
        }
        r.auth.dkim.push(k);
    }
    if temporary {
        r.exit = exit::TEMPFAIL;
    } else if r.exit == exit::OK && !r.problems.is_empty() {
        r.exit = super::EXIT_PROBLEMS;
    }
}

/// The DMARC record of `domain`'s organizational domain: the tree walk above it as
/// mail-auth does it for mrelayd ([`authrec::dmarc_walk_names`]; a name's first TXT record
/// mail-auth's parser takes is its record, `psd=y` or `n` ends the walk), then
/// [`authrec::org_policy`]. Err: the name whose look-up failed temporarily, and why.
async fn org_dmarc(
    resolver: &MxResolver,
    domain: &str,
) -> Result<Option<authrec::OrgPolicy>, (String, DnsError)> {
    let mut found = Vec::new();
    for name in authrec::dmarc_walk_names(domain) {
        let txt = resolver
            .txt(&format!("_dmarc.{name}"))
            .await
            .map_err(|e| (name.clone(), e))?;
        let record = txt.into_iter().find_map(|t| {
            mail_auth::dmarc::Dmarc::parse(t.as_bytes())
                .ok()
                .map(|d| (t, d.psd))
        });
        if let Some((record, psd)) = record {
            let stop = matches!(psd, Psd::Yes | Psd::No);
            found.push(authrec::WalkRecord { name, psd, record });
            if stop {
                break;
            }
        }
    }
    Ok(authrec::org_policy(domain, &found))
}

/// The SPF walk's running state.
struct Walk<'a> {
    resolver: &'a MxResolver,
    check: SpfCheck,
}

/// Stops the walk with `status` and `error` (the first one stays).
fn stop(c: &mut SpfCheck, status: &'static str, error: String) {
    if c.status == "valid" {
        c.status = status;
        c.error = Some(error);
    }
}

/// Checks `domain`'s SPF `record` (RFC 7208 §4.6): syntax, then every look-up.
pub async fn check_spf(resolver: &MxResolver, domain: &str, record: &str) -> SpfCheck {
    let mut w = Walk {
        resolver,
        check: SpfCheck {
            status: "valid",
            error: None,
            lookups: 0,
            lookup_limit: SPF_LOOKUP_LIMIT,
            void_lookups: 0,
            void_limit: SPF_VOID_LIMIT,
            chain: Vec::new(),
        },
    };
    match parse_spf(record) {
        Ok(spf) => walk(&mut w, domain.to_string(), spf, 0).await,
        Err(e) => stop(
            &mut w.check,
            "permerror",
            format!("the record does not parse: {e}"),
        ),
    }
    w.check
}

/// Parses an SPF record: [`authrec::spf_terms`]'s rules, then mail-auth's parser.
fn parse_spf(record: &str) -> Result<Spf, String> {
    authrec::spf_terms(record)?;
    Spf::parse(record.as_bytes()).map_err(|_| "has a syntax error (RFC 7208 §12)".to_string())
}

/// The name a term's domain-spec gives, or `None` for a macro that depends on the message:
/// no spec is the current domain; `%{d}` alone is too.
fn target(m: &Macro, current: &str) -> Option<String> {
    fn expand(m: &Macro, current: &str, out: &mut String) -> bool {
        match m {
            Macro::None => out.push_str(current),
            Macro::Literal(b) => out.push_str(&String::from_utf8_lossy(b)),
            Macro::Variable {
                letter: Variable::Domain,
                num_parts: 0,
                reverse: false,
                ..
            } => out.push_str(current),
            Macro::Variable { .. } => return false,
            Macro::List(l) => {
                for p in l.iter() {
                    if !expand(p, current, out) {
                        return false;
                    }
                }
            }
        }
        true
    }
    let mut s = String::new();
    expand(m, current, &mut s).then(|| s.trim_end_matches('.').to_ascii_lowercase())
}

/// A macro as written (RFC 7208 §7.1), for the report.
fn macro_text(m: &Macro) -> String {
    match m {
        Macro::None => String::new(),
        Macro::Literal(b) => String::from_utf8_lossy(b).into_owned(),
        Macro::Variable {
            letter,
            num_parts,
            reverse,
            escape,
            ..
        } => {
            let c = match letter {
                Variable::Sender => 's',
                Variable::SenderLocalPart => 'l',
                Variable::SenderDomainPart => 'o',
                Variable::Domain => 'd',
                Variable::Ip => 'i',
                Variable::ValidatedDomain => 'p',
                Variable::IpVersion => 'v',
                Variable::HeloDomain => 'h',
                Variable::SmtpIp => 'c',
                Variable::HostDomain => 'r',
                Variable::CurrentTime => 't',
            };
            let c = if *escape { c.to_ascii_uppercase() } else { c };
            let n = if *num_parts > 0 {
                num_parts.to_string()
            } else {
                String::new()
            };
            format!("%{{{c}{n}{}}}", if *reverse { "r" } else { "" })
        }
        Macro::List(l) => l.iter().map(macro_text).collect(),
    }
}

/// `mechanism[:spec]` with its qualifier.
fn term_text(q: &Qualifier, name: &str, m: &Macro) -> String {
    let q = match q {
        Qualifier::Pass => "",
        Qualifier::Fail => "-",
        Qualifier::SoftFail => "~",
        Qualifier::Neutral => "?",
    };
    match m {
        Macro::None => format!("{q}{name}"),
        m => format!("{q}{name}:{}", macro_text(m)),
    }
}

/// Counts one look-up, or stops the walk past the cap; false when the walk is over.
fn count(w: &mut Walk<'_>, depth: u32, term: String, domain: Option<String>) -> bool {
    if w.check.status != "valid" && w.check.status != "permerror" || w.check.lookups >= WALK_CAP {
        return false;
    }
    w.check.lookups += 1;
    if w.check.lookups == SPF_LOOKUP_LIMIT + 1 {
        stop(
            &mut w.check,
            "permerror",
            format!(
                "more than {SPF_LOOKUP_LIMIT} DNS look-ups (RFC 7208 §4.6.4), the \
                 {}th is {term}",
                SPF_LOOKUP_LIMIT + 1
            ),
        );
    }
    w.check.chain.push(SpfLookup {
        depth,
        term,
        domain,
        lookup: w.check.lookups,
        void: false,
        record: None,
        note: None,
    });
    true
}

/// Marks the last look-up void and counts it.
fn void(w: &mut Walk<'_>, why: &str) {
    w.check.void_lookups += 1;
    if let Some(l) = w.check.chain.last_mut() {
        l.void = true;
        l.note = Some(why.to_string());
    }
    if w.check.void_lookups == SPF_VOID_LIMIT + 1 {
        stop(
            &mut w.check,
            "permerror",
            format!("more than {SPF_VOID_LIMIT} void DNS look-ups (RFC 7208 §4.6.4)"),
        );
    }
}

/// `1 address`, `2 addresses`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Sets the last look-up's note.
fn note(w: &mut Walk<'_>, n: String) {
    if let Some(l) = w.check.chain.last_mut() {
        l.note = Some(n);
    }
}

/// Ends the walk with temperror.
fn temp(w: &mut Walk<'_>, e: DnsError) {
    w.check.status = "temperror";
    w.check.error = Some(e.to_string());
}

/// Walks one record's look-up terms, then its redirect (ignored next to `all`, §6.1).
fn walk<'a>(
    w: &'a mut Walk<'_>,
    domain: String,
    spf: Spf,
    depth: u32,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let mut has_all = false;
        for d in spf.directives.iter() {
            if w.check.status == "temperror" {
                return;
            }
            match &d.mechanism {
                Mechanism::All => has_all = true,
                Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. } => {}
                Mechanism::Include { macro_string } => {
                    let t = target(macro_string, &domain);
                    let text = term_text(&d.qualifier, "include", macro_string);
                    if !count(w, depth, text, t.clone()) {
                        return;
                    }
                    follow(w, t, depth, "include").await;
                }
                Mechanism::A { macro_string, .. } | Mechanism::Exists { macro_string } => {
                    let name = if matches!(d.mechanism, Mechanism::A { .. }) {
                        "a"
                    } else {
                        "exists"
                    };
                    let t = target(macro_string, &domain);
                    if !count(
                        w,
                        depth,
                        term_text(&d.qualifier, name, macro_string),
                        t.clone(),
                    ) {
                        return;
                    }
                    let Some(t) = t else {
                        note(w, "not followed: the name depends on the message".into());
                        continue;
                    };
                    let h = w.resolver.host_records(&t).await;
                    if let Some(e) = h.temporary {
                        return temp(w, DnsError::Temporary(e));
                    }
                    let v4 = h.addresses.iter().filter(|a| a.ip.is_ipv4()).count();
                    // exists asks for A only (§5.7); a for the client's family, so a name
                    // with neither A nor AAAA is void for every client.
                    if h.addresses.is_empty() || name == "exists" && v4 == 0 {
                        void(w, "void: no address record");
                    } else {
                        note(w, plural(h.addresses.len(), "address", "addresses"));
                    }
                }
                Mechanism::Mx { macro_string, .. } => {
                    let t = target(macro_string, &domain);
                    if !count(
                        w,
                        depth,
                        term_text(&d.qualifier, "mx", macro_string),
                        t.clone(),
                    ) {
                        return;
                    }
                    let Some(t) = t else {
                        note(w, "not followed: the name depends on the message".into());
                        continue;
                    };
                    match w.resolver.mx_records(&t).await {
                        Err(DnsError::Temporary(e)) => return temp(w, DnsError::Temporary(e)),
                        Err(_) => void(w, "void: no MX records"),
                        Ok(mx) if mx.is_empty() => void(w, "void: no MX records"),
                        Ok(mx) => {
                            note(w, plural(mx.len(), "MX host", "MX hosts"));
                            if mx.len() > SPF_MX_LIMIT {
                                stop(
                                    &mut w.check,
                                    "permerror",
                                    format!(
                                        "mx of {t} gives {} MX records, more than \
                                         {SPF_MX_LIMIT} (RFC 7208 §4.6.4)",
                                        mx.len()
                                    ),
                                );
                            }
                        }
                    }
                }
                Mechanism::Ptr { macro_string } => {
                    let t = target(macro_string, &domain);
                    if !count(w, depth, term_text(&d.qualifier, "ptr", macro_string), t) {
                        return;
                    }
                    note(
                        w,
                        "ptr depends on the client address; it should not be used (RFC 7208 §5.5)"
                            .into(),
                    );
                }
            }
        }
        if let Some(m) = &spf.redirect {
            if w.check.status == "temperror" {
                return;
            }
            let t = target(m, &domain);
            let term = format!("redirect={}", macro_text(m));
            if has_all {
                // Not evaluated, so not a look-up.
                w.check.chain.push(SpfLookup {
                    depth,
                    term,
                    domain: t,
                    lookup: 0,
                    void: false,
                    record: None,
                    note: Some("ignored: the record has an all mechanism (RFC 7208 §6.1)".into()),
                });
                return;
            }
            if !count(w, depth, term, t.clone()) {
                return;
            }
            follow(w, t, depth, "redirect").await;
        }
    })
}

/// Follows an include or redirect to `target`'s SPF record (RFC 7208 §5.2, §6.1: no record
/// there, or one that does not parse, is a permanent error).
async fn follow(w: &mut Walk<'_>, target: Option<String>, depth: u32, what: &str) {
    let Some(t) = target else {
        note(w, "not followed: the name depends on the message".into());
        return;
    };
    let txt = match w.resolver.txt(&t).await {
        Ok(txt) => txt,
        Err(e) => return temp(w, e),
    };
    let recs = records_with_tag(&txt, "v=spf1");
    match recs.as_slice() {
        [] => {
            if txt.is_empty() {
                void(w, "void: no TXT record");
            }
            stop(
                &mut w.check,
                "permerror",
                format!("{what} target {t} has no SPF record (RFC 7208 §5.2, §6.1)"),
            );
        }
        [one] => {
            if let Some(l) = w.check.chain.last_mut() {
                l.record = Some(one.clone());
            }
            match parse_spf(one) {
                Ok(spf) => walk(w, t, spf, depth + 1).await,
                Err(e) => stop(
                    &mut w.check,
                    "permerror",
                    format!("the SPF record of {t} ({what} target) {e}"),
                ),
            }
        }
        many => stop(
            &mut w.check,
            "permerror",
            format!(
                "{what} target {t} has {} SPF records (RFC 7208 §4.5)",
                many.len()
            ),
        ),
    }
}

/// The report's text lines for `a` (after the SPF/DMARC records).
pub fn render_text(o: &mut String, a: &AuthReport) {
    if let Some(c) = &a.spf_check {
        let _ = writeln!(
            o,
            "  SPF check: {}, {} of {} DNS look-ups, {} of {} void",
            c.status, c.lookups, c.lookup_limit, c.void_lookups, c.void_limit
        );
        if let Some(e) = &c.error {
            let _ = writeln!(o, "    error: {e}");
        }
        for l in &c.chain {
            let indent = "  ".repeat(l.depth as usize + 2);
            let n = if l.lookup > 0 {
                format!("#{} ", l.lookup)
            } else {
                String::new()
            };
            let _ = write!(o, "{indent}{n}{}", l.term);
            if let Some(r) = &l.record {
                let _ = write!(o, ": {r}");
            }
            if let Some(x) = &l.note {
                let _ = write!(o, " ({x})");
            }
            o.push('\n');
        }
    }
    if let Some(d) = &a.dmarc_policy {
        let list = |l: &[String]| {
            if l.is_empty() {
                "-".to_string()
            } else {
                l.join(",")
            }
        };
        if d.source == "organizational_domain" {
            let _ = writeln!(
                o,
                "  DMARC policy of the organizational domain {} (_dmarc.{}): {}",
                d.organizational_domain.as_deref().unwrap_or("-"),
                d.policy_domain,
                d.policy.record
            );
        }
        let p = &d.policy;
        let _ = writeln!(
            o,
            "  DMARC policy: {}, p={} sp={} pct={} adkim={} aspf={} rua={} ruf={}",
            if p.valid { "valid" } else { "invalid" },
            p.p.as_deref().unwrap_or("-"),
            p.sp.as_deref().unwrap_or("-"),
            p.pct,
            p.adkim,
            p.aspf,
            list(&p.rua),
            list(&p.ruf)
        );
        let why = if d.source == "organizational_domain" {
            format!(
                " (a subdomain of {}, RFC 7489 §6.6.3)",
                d.organizational_domain.as_deref().unwrap_or("-")
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "    applies: {}={}{why}",
            d.applied_tag,
            d.applied_policy.as_deref().unwrap_or("-")
        );
    }
    for k in &a.dkim {
        let _ = write!(o, "  DKIM {}: ", k.name);
        match &k.key {
            None => {
                let _ = writeln!(o, "no key record");
            }
            Some(i) => {
                let bits = i.bits.map(|b| format!(", {b} bits")).unwrap_or_default();
                let mut flags = String::new();
                if i.revoked {
                    flags.push_str(", revoked");
                }
                if i.testing {
                    flags.push_str(", testing (t=y)");
                }
                if !i.problems.is_empty() {
                    flags.push_str(", see problems");
                }
                let _ = writeln!(o, "{}{bits}{flags}", i.key_type);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_terms() {
        let spf =
            Spf::parse(b"v=spf1 include:_spf.x.test a mx:%{d} exists:%{i}.x.test -all").unwrap();
        let ds: Vec<Option<String>> = spf
            .directives
            .iter()
            .filter_map(|d| match &d.mechanism {
                Mechanism::Include { macro_string }
                | Mechanism::A { macro_string, .. }
                | Mechanism::Mx { macro_string, .. }
                | Mechanism::Exists { macro_string } => Some(target(macro_string, "cur.test")),
                _ => None,
            })
            .collect();
        assert_eq!(
            ds,
            [
                Some("_spf.x.test".into()),
                Some("cur.test".into()),
                Some("cur.test".into()),
                None
            ]
        );
        match &spf.directives[3].mechanism {
            Mechanism::Exists { macro_string } => {
                assert_eq!(macro_text(macro_string), "%{i}.x.test")
            }
            m => panic!("{m:?}"),
        }
        assert!(parse_spf("v=spf1 foo:x -all").is_err());
        assert!(parse_spf("v=spf1 ip4:300.1.1.1 -all").is_err());
        assert!(parse_spf("v=spf1 ip4:192.0.2.0/24 unknown=x -all").is_ok());
    }
}
