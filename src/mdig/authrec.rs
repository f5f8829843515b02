//! The record parsers behind mdig-mx's SPF, DMARC and DKIM key reports: bytes in, a parsed
//! record or plain-sentence problems out, no DNS (sans-IO; [`super::auth`] does the look-ups).
//!
//! - [`spf_terms`]: the terms of an SPF record by RFC 7208 §4.6.1/§12 (qualifier, name, kind).
//!   mail-auth's parser (used for the rest) skips any unknown term, but an unknown *mechanism*
//!   is a permanent error (§4.6.1); an unknown modifier is ignored (§6).
//! - [`tag_list`]: the `tag=value; ...` syntax shared by DMARC (RFC 7489 §6.4) and DKIM key
//!   records (RFC 6376 §3.2).
//! - [`parse_dmarc`]: a DMARC record's policy tags (RFC 7489 §6.3).
//! - [`dmarc_walk_names`], [`org_policy`]: the DMARC record that applies to a domain without
//!   its own (RFC 7489 §6.6.3: its organizational domain's), found as mrelayd finds it:
//!   mail-auth 0.13.3 determines the organizational domain by a DNS tree walk (RFC 9989
//!   §4.10), not by a public suffix list, so these do the same walk.
//! - [`parse_dkim_key`]: a DKIM key record (RFC 6376 §3.6.1, RFC 8463 §4.2): key type, RSA
//!   modulus length, revoked (`p=` empty), testing (`t=y`).

use base64::Engine as _;
use serde::Serialize;

/// One term of an SPF record, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpfTerm {
    /// The term's text (`-include:x.test`).
    pub text: String,
    /// The mechanism or modifier name, lowercase (`include`, `redirect`).
    pub name: String,
    /// A mechanism (RFC 7208 §5) rather than a modifier (`name=value`, §6).
    pub mechanism: bool,
}

/// Mechanism names of RFC 7208 §5.
pub const SPF_MECHANISMS: &[&str] = &["all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"];

/// The terms after `v=spf1`, or the first problem: an unknown mechanism, a qualifier on a
/// modifier, a bad modifier name (RFC 7208 §4.6.1, §12 `name = ALPHA *( ALPHA / DIGIT / "-" /
/// "_" / "." )`), a modifier given twice (`redirect`, `exp`: §6).
pub fn spf_terms(record: &str) -> Result<Vec<SpfTerm>, String> {
    let mut words = record.split_ascii_whitespace();
    match words.next() {
        Some(v) if v.eq_ignore_ascii_case("v=spf1") => {}
        _ => return Err("does not start with v=spf1".into()),
    }
    let mut out: Vec<SpfTerm> = Vec::new();
    for w in words {
        let body = w.strip_prefix(['+', '-', '~', '?']).unwrap_or(w);
        let qualified = body.len() != w.len();
        let end = body.find([':', '/', '=']).unwrap_or(body.len());
        let name = body[..end].to_ascii_lowercase();
        let modifier = body[end..].starts_with('=');
        if modifier {
            let ok = name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok || qualified {
                return Err(format!("{w:?} is not a valid modifier (RFC 7208 §4.6.1)"));
            }
            if matches!(name.as_str(), "redirect" | "exp") && out.iter().any(|t| t.name == name) {
                return Err(format!("{name}= appears twice (RFC 7208 §6)"));
            }
        } else if !SPF_MECHANISMS.contains(&name.as_str()) {
            return Err(format!("unknown mechanism {w:?} (RFC 7208 §4.6.1, §5)"));
        } else if name == "ip4" || name == "ip6" {
            check_ip_term(&name, &body[end..])
                .map_err(|e| format!("{w:?}: {e} (RFC 7208 §5.6)"))?;
        }
        out.push(SpfTerm {
            text: w.to_string(),
            name,
            mechanism: !modifier,
        });
    }
    Ok(out)
}

/// The `:address[/prefix]` of an `ip4` or `ip6` mechanism (RFC 7208 §5.6): an address of
/// the family, a prefix length of at most 32 or 128 without leading zeros.
fn check_ip_term(name: &str, rest: &str) -> Result<(), String> {
    let rest = rest.strip_prefix(':').ok_or("no address")?;
    let (addr, prefix) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let max = if name == "ip4" {
        addr.parse::<std::net::Ipv4Addr>()
            .map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        32
    } else {
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
        128
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'))
            && p.parse::<u32>().is_ok_and(|n| n <= max);
        if !ok {
            return Err(format!("/{p} is not a prefix length of 0 to {max}"));
        }
    }
    Ok(())
}

/// Splits a tag-list (RFC 6376 §3.2, RFC 7489 §6.4): `tag=value` separated by `;`, whitespace
/// around tags and values ignored, an empty last element allowed. Tag names are ALPHA
/// *(ALPHA / DIGIT / "_"); a tag given twice is an error.
pub fn tag_list(record: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let parts: Vec<&str> = record.split(';').collect();
    for (i, part) in parts.iter().enumerate() {
        let part = part.trim_matches(|c: char| c.is_ascii_whitespace());
        if part.is_empty() {
            if i + 1 == parts.len() {
                break;
            }
            return Err("an empty tag between two ';'".into());
        }
        let (tag, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not tag=value"))?;
        let tag = tag.trim_matches(|c: char| c.is_ascii_whitespace());
        let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
        if !tag.starts_with(|c: char| c.is_ascii_alphabetic())
            || !tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!("{tag:?} is not a tag name"));
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(format!("the value of {tag}= has control characters"));
        }
        if out.iter().any(|(t, _)| t == tag) {
            return Err(format!("{tag}= appears twice"));
        }
        out.push((tag.to_string(), value.to_string()));
    }
    Ok(out)
}

/// A DMARC record's policy (RFC 7489 §6.3), defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DmarcPolicy {
    /// The record as published.
    pub record: String,
    /// No problem found: receivers apply it as read here.
    pub valid: bool,
    /// `p`: none, quarantine or reject (null when missing or invalid).
    pub p: Option<String>,
    /// `sp`: the subdomain policy (default: `p`).
    pub sp: Option<String>,
    /// `pct`: percentage of failing mail the policy applies to, 0 to 100 (default 100).
    pub pct: u8,
    /// `adkim`: DKIM alignment, `r` relaxed or `s` strict (default `r`).
    pub adkim: String,
    /// `aspf`: SPF alignment, `r` or `s` (default `r`).
    pub aspf: String,
    /// `rua`: aggregate report URIs.
    pub rua: Vec<String>,
    /// `ruf`: failure report URIs.
    pub ruf: Vec<String>,
    /// Everything wrong with the record, plain sentences.
    pub problems: Vec<String>,
}

/// A `dmarc-uri` (RFC 7489 §6.4): an absolute URI (scheme `:` rest) with an optional
/// `!size[kmgt]` suffix; `mailto:` needs an address.
fn valid_dmarc_uri(u: &str) -> bool {
    let uri = match u.rsplit_once('!') {
        Some((uri, size)) => {
            let digits = size.trim_end_matches(['k', 'm', 'g', 't', 'K', 'M', 'G', 'T']);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            uri
        }
        None => u,
    };
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() || rest.contains(char::is_whitespace) {
        return false;
    }
    !scheme.eq_ignore_ascii_case("mailto")
        || rest
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
}

/// Parses a DMARC record (RFC 7489 §6.3, §6.4). Never fails: a record that is not usable comes
/// back with `valid: false` and its problems (a missing or bad `p` makes receivers ignore it,
/// or, with a valid `rua`, act as `p=none`: §6.6.3).
pub fn parse_dmarc(record: &str) -> DmarcPolicy {
    let mut d = DmarcPolicy {
        record: record.to_string(),
        valid: true,
        p: None,
        sp: None,
        pct: 100,
        adkim: "r".into(),
        aspf: "r".into(),
        rua: Vec::new(),
        ruf: Vec::new(),
        problems: Vec::new(),
    };
    let tags = match tag_list(record) {
        Ok(t) => t,
        Err(e) => {
            d.problems.push(format!(
                "the DMARC record does not parse: {e} (RFC 7489 §6.4)"
            ));
            d.valid = false;
            return d;
        }
    };
    match tags.first() {
        Some((t, v)) if t == "v" && v == "DMARC1" => {}
        _ => d
            .problems
            .push("the DMARC record must start with v=DMARC1 (RFC 7489 §6.4)".into()),
    }
    let policy = |v: &str| {
        let v = v.to_ascii_lowercase();
        matches!(v.as_str(), "none" | "quarantine" | "reject").then_some(v)
    };
    let mut sp_raw = None;
    for (tag, value) in &tags {
        let bad = |what: &str| format!("{tag}={value} is not {what} (RFC 7489 §6.3)");
        match tag.as_str() {
            "p" => match policy(value) {
                Some(p) => d.p = Some(p),
                None => d.problems.push(bad("none, quarantine or reject")),
            },
            "sp" => match policy(value) {
                Some(p) => sp_raw = Some(p),
                None => d.problems.push(bad("none, quarantine or reject")),
            },
            "pct" => match value.parse::<u8>() {
                Ok(n) if n <= 100 && value.bytes().all(|b| b.is_ascii_digit()) => d.pct = n,
                _ => d.problems.push(bad("a percentage from 0 to 100")),
            },
            "adkim" | "aspf" => {
                let v = value.to_ascii_lowercase();
                if v == "r" || v == "s" {
                    if tag == "adkim" {
                        d.adkim = v;
                    } else {
                        d.aspf = v;
                    }
                } else {
                    d.problems.push(bad("r or s"));
                }
            }
            "rua" | "ruf" => {
                let uris: Vec<String> = value
                    .split(',')
                    .map(|u| {
                        u.trim_matches(|c: char| c.is_ascii_whitespace())
                            .to_string()
                    })
                    .collect();
                for u in &uris {
                    if !valid_dmarc_uri(u) {
                        d.problems
                            .push(format!("{tag}: {u:?} is not a report URI (RFC 7489 §6.4)"));
                    }
                }
                if tag == "rua" {
                    d.rua = uris;
                } else {
                    d.ruf = uris;
                }
            }
            "fo" if !value.split(':').all(|o| {
                matches!(
                    o.trim_matches(|c: char| c.is_ascii_whitespace()),
                    "0" | "1" | "d" | "s"
                )
            }) =>
            {
                d.problems.push(bad("a list of 0, 1, d, s"));
            }
            "ri" if value.parse::<u32>().is_err() => {
                d.problems.push(bad("a number of seconds"));
            }
            // v is checked above; rf and unknown tags are ignored (§6.3: "MUST be ignored").
            _ => {}
        }
    }
    if d.p.is_none() && !d.problems.iter().any(|p| p.starts_with("p=")) {
        d.problems
            .push("the DMARC record has no p= tag (required, RFC 7489 §6.3)".into());
    }
    d.sp = sp_raw.or_else(|| d.p.clone());
    d.valid = d.problems.is_empty();
    d
}

/// The names whose `_dmarc` record a DNS tree walk asks for after `domain`'s own, in order
/// (RFC 9989 §4.10.1, as mail-auth 0.13.3's `dmarc_tree_walk` does: from 8 labels or more
/// straight to 7, then one label less each time, down to the top-level domain; nothing for a
/// one-label name).
pub fn dmarc_walk_names(domain: &str) -> Vec<String> {
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let total = labels.len();
    let mut names = Vec::new();
    let mut count = total;
    while total >= 2 && count > 1 {
        count = if count >= 8 { 7 } else { count - 1 };
        names.push(labels[total - count..].join("."));
    }
    names
}

/// One DMARC record a tree walk found: the name it is at (without `_dmarc.`), its `psd` tag
/// as mail-auth reads it, and the record as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkRecord {
    /// The domain whose `_dmarc` record it is.
    pub name: String,
    /// `psd=y`, `psd=n` or neither (RFC 9989 §4.7); `y` or `n` ends the walk.
    pub psd: mail_auth::dmarc::Psd,
    /// The TXT record.
    pub record: String,
}

/// The record of a domain's organizational domain that applies to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgPolicy {
    /// The organizational domain (RFC 7489 §3.2; by the tree walk, RFC 9989 §4.10.2).
    pub organizational_domain: String,
    /// The domain whose `_dmarc` record applies: the organizational domain's, or, when that
    /// has none, the shortest name the walk found one at (a public suffix domain's).
    pub domain: String,
    /// That record.
    pub record: String,
}

/// The policy for `start`, which has no DMARC record, from the records its walk found above
/// it (longest name first): mail-auth 0.13.3's choice, so that mdig-mx says what mrelayd does.
/// The organizational domain is the first `psd=n` name, or the name one label below the first
/// `psd=y` one, else the shortest name with a record; None when the walk found nothing.
pub fn org_policy(start: &str, found: &[WalkRecord]) -> Option<OrgPolicy> {
    use mail_auth::dmarc::Psd;
    let last = found.last()?;
    let org = found
        .iter()
        .find_map(|w| match w.psd {
            Psd::No => Some(w.name.clone()),
            Psd::Yes if w.name != start => {
                let depth = w.name.split('.').filter(|l| !l.is_empty()).count() + 1;
                let labels: Vec<&str> = start.split('.').filter(|l| !l.is_empty()).collect();
                Some(labels[labels.len().saturating_sub(depth)..].join("."))
            }
            _ => None,
        })
        .unwrap_or_else(|| last.name.clone());
    let applies = found.iter().find(|w| w.name == org).unwrap_or(last);
    Some(OrgPolicy {
        organizational_domain: org,
        domain: applies.name.clone(),
        record: applies.record.clone(),
    })
}

/// What a DKIM key record says (RFC 6376 §3.6.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DkimKeyInfo {
    /// `k=`: `rsa` (the default) or `ed25519` (RFC 8463); another value as given.
    pub key_type: String,
    /// Key length in bits: the RSA modulus, 256 for Ed25519; null when revoked or unparsable.
    pub bits: Option<u32>,
    /// `p=` is empty: the key was revoked (RFC 6376 §3.6.1).
    pub revoked: bool,
    /// `t=y`: the domain is testing DKIM, verifiers must not treat signed and unsigned mail
    /// differently.
    pub testing: bool,
    /// Everything wrong, plain sentences.
    pub problems: Vec<String>,
}

/// RSA keys shorter than this are a problem: RFC 8301 §3.2 (verifiers MUST NOT accept
/// fewer than 1024 bits).
pub const MIN_RSA_BITS: u32 = 1024;

/// The bit length of a big-endian unsigned integer.
fn bit_length(n: &[u8]) -> u32 {
    let n: &[u8] = match n.iter().position(|&b| b != 0) {
        Some(i) => &n[i..],
        None => return 0,
    };
    (n.len() as u32 - 1) * 8 + (8 - n[0].leading_zeros())
}

/// The RSA modulus length of `der`: a SubjectPublicKeyInfo (RFC 6376 §3.6.1) or, as some
/// publish, a bare PKCS#1 RSAPublicKey.
fn rsa_bits(der: &[u8]) -> Option<u32> {
    use x509_parser::prelude::FromDer as _;
    use x509_parser::public_key::{PublicKey, RSAPublicKey};
    if let Ok((rest, spki)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der) {
        if rest.is_empty() {
            return match spki.parsed() {
                Ok(PublicKey::RSA(k)) => Some(bit_length(k.modulus)),
                _ => None,
            };
        }
    }
    match RSAPublicKey::from_der(der) {
        Ok(([], k)) => Some(bit_length(k.modulus)),
        _ => None,
    }
}

/// Parses a DKIM key record (RFC 6376 §3.6.1; Ed25519: RFC 8463 §4.2, `p=` the raw 32-byte
/// key). Never fails: problems are listed (RSA under [`MIN_RSA_BITS`], a key that does not
/// decode, a `v=` other than `DKIM1`, no `p=`).
pub fn parse_dkim_key(record: &str) -> DkimKeyInfo {
    let mut k = DkimKeyInfo {
        key_type: "rsa".into(),
        bits: None,
        revoked: false,
        testing: false,
        problems: Vec::new(),
    };
    let tags = match tag_list(record) {
        Ok(t) => t,
        Err(e) => {
            k.problems.push(format!(
                "the key record does not parse: {e} (RFC 6376 §3.6.1)"
            ));
            return k;
        }
    };
    if let Some(pos) = tags.iter().position(|(t, _)| t == "v") {
        if pos != 0 || tags[pos].1 != "DKIM1" {
            k.problems
                .push("v= must be DKIM1 and the first tag when present (RFC 6376 §3.6.1)".into());
        }
    }
    let get = |name: &str| {
        tags.iter()
            .find(|(t, _)| t == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(t) = get("k") {
        k.key_type = t.to_ascii_lowercase();
    }
    if let Some(t) = get("t") {
        k.testing = t
            .split(':')
            .any(|f| f.trim_matches(|c: char| c.is_ascii_whitespace()) == "y");
    }
    let Some(p) = get("p") else {
        k.problems
            .push("the key record has no p= tag (required, RFC 6376 §3.6.1)".into());
        return k;
    };
    let b64: String = p.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if b64.is_empty() {
        k.revoked = true;
        k.problems
            .push("the key is revoked (empty p=, RFC 6376 §3.6.1)".into());
        return k;
    }
    let der = match base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) {
        Ok(d) => d,
        Err(_) => {
            k.problems.push("p= is not base64".into());
            return k;
        }
    };
    match k.key_type.as_str() {
        "rsa" => match rsa_bits(&der) {
            Some(bits) => {
                k.bits = Some(bits);
                if bits < MIN_RSA_BITS {
                    k.problems.push(format!(
                        "the RSA key has {bits} bits; verifiers refuse keys under \
                         {MIN_RSA_BITS} bits (RFC 8301 §3.2)"
                    ));
                }
            }
            None => k.problems.push("p= is not an RSA public key".into()),
        },
        "ed25519" => {
            if der.len() == 32 {
                k.bits = Some(256);
            } else {
                k.problems.push(format!(
                    "an Ed25519 key is 32 bytes, p= has {} (RFC 8463 §4.2)",
                    der.len()
                ));
            }
        }
        other => k.problems.push(format!(
            "unknown key type k={other} (RFC 6376 §3.6.1, RFC 8463)"
        )),
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_term_rules() {
        let t = spf_terms("v=spf1 -include:a.test ~all").unwrap();
        assert_eq!(t[0].name, "include");
        assert_eq!(t[0].text, "-include:a.test");
        assert!(t[1].mechanism);
        let t = spf_terms("v=spf1 a/24 redirect=b.test foo.bar=x").unwrap();
        assert_eq!(t[0].name, "a");
        assert!(!t[1].mechanism && !t[2].mechanism);
        assert!(spf_terms("v=spf1 foo:bar -all").is_err());
        assert!(spf_terms("v=spf1 -redirect=x").is_err());
        assert!(spf_terms("v=spf1 redirect=a redirect=b").is_err());
        assert!(spf_terms("v=spf2 -all").is_err());
        assert!(spf_terms("v=spf1 1x=y").is_err());
        assert!(spf_terms("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all").is_ok());
        for bad in [
            "ip4:300.1.1.1",
            "ip4:1.2.3.4/33",
            "ip6:2001:db8::/129",
            "ip4",
            "ip6:zz::",
        ] {
            assert!(spf_terms(&format!("v=spf1 {bad} -all")).is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_lists() {
        assert_eq!(
            tag_list(" v = DMARC1 ;p=none; ").unwrap(),
            vec![("v".into(), "DMARC1".into()), ("p".into(), "none".into())]
        );
        assert!(tag_list("v=DMARC1;;p=none").is_err());
        assert!(tag_list("v=DMARC1; p").is_err());
        assert!(tag_list("v=DMARC1; p=none; p=reject").is_err());
        assert!(tag_list("v=DMARC1; 1p=none").is_err());
    }

    #[test]
    fn dmarc_tree_walk_and_organizational_domain() {
        use mail_auth::dmarc::Psd;
        assert_eq!(
            dmarc_walk_names("a.b.example.test"),
            ["b.example.test", "example.test", "test"]
        );
        assert!(dmarc_walk_names("test").is_empty());
        // Eight labels or more: straight to seven (the eight-query cap).
        assert_eq!(
            dmarc_walk_names("1.2.3.4.5.6.7.8.9.test")
                .first()
                .map(String::as_str),
            Some("4.5.6.7.8.9.test")
        );
        assert_eq!(dmarc_walk_names("1.2.3.4.5.6.7.8.9.test").len(), 7);
        let rec = |name: &str, psd: Psd| WalkRecord {
            name: name.into(),
            psd,
            record: format!("v=DMARC1; p=reject; at {name}"),
        };
        assert_eq!(org_policy("sub.org.test", &[]), None);
        // No psd tags: the shortest name with a record.
        let o = org_policy(
            "a.sub.org.test",
            &[
                rec("sub.org.test", Psd::Default),
                rec("org.test", Psd::Default),
            ],
        )
        .expect("found");
        assert_eq!(
            (o.organizational_domain.as_str(), o.domain.as_str()),
            ("org.test", "org.test")
        );
        // A public suffix's record (psd=y): the name below it on the way to the domain is the
        // organizational domain; without a record there, the PSD's applies.
        let o = org_policy("a.sub.org.test", &[rec("test", Psd::Yes)]).expect("found");
        assert_eq!(
            (o.organizational_domain.as_str(), o.domain.as_str()),
            ("org.test", "test")
        );
        // psd=n: that name.
        let o = org_policy("a.sub.org.test", &[rec("sub.org.test", Psd::No)]).expect("found");
        assert_eq!(o.organizational_domain, "sub.org.test");
    }

    #[test]
    fn dmarc_policies() {
        let d = parse_dmarc(
            "v=DMARC1; p=quarantine; sp=reject; pct=50; adkim=s; rua=mailto:a@x.test,mailto:b@x.test!10m; ruf=mailto:f@x.test; fo=0:d",
        );
        assert!(d.valid, "{:?}", d.problems);
        assert_eq!(d.p.as_deref(), Some("quarantine"));
        assert_eq!(d.sp.as_deref(), Some("reject"));
        assert_eq!((d.pct, d.adkim.as_str(), d.aspf.as_str()), (50, "s", "r"));
        assert_eq!(d.rua, ["mailto:a@x.test", "mailto:b@x.test!10m"]);
        assert_eq!(d.ruf, ["mailto:f@x.test"]);
        let d = parse_dmarc("v=DMARC1; p=reject");
        assert!(d.valid);
        assert_eq!((d.sp.as_deref(), d.pct), (Some("reject"), 100));
        for bad in [
            "v=DMARC1; p=maybe",
            "v=DMARC1; p=none; pct=101",
            "v=DMARC1; p=none; pct=-1",
            "v=DMARC1; p=none; adkim=x",
            "v=DMARC1; p=none; rua=a@x.test",
            "v=DMARC1; p=none; rua=mailto:",
            "v=DMARC1",
            "p=none; v=DMARC1",
            "v=DMARC1; p=none; p=reject",
        ] {
            assert!(!parse_dmarc(bad).valid, "{bad}");
        }
    }

    #[test]
    fn dkim_keys() {
        let k =
            parse_dkim_key("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
        assert_eq!((k.key_type.as_str(), k.bits), ("ed25519", Some(256)));
        assert!(k.problems.is_empty());
        let k = parse_dkim_key("v=DKIM1; p=; t=y");
        assert!(k.revoked && k.testing);
        let k = parse_dkim_key("v=DKIM1; k=rsa; p=%%%");
        assert_eq!(k.problems.len(), 1);
        let k = parse_dkim_key("v=DKIM1; k=ed25519; p=AAAA");
        assert_eq!(k.bits, None);
        assert!(!k.problems.is_empty());
        assert!(!parse_dkim_key("v=DKIM1; k=rsa").problems.is_empty());
        assert!(!parse_dkim_key("k=rsa; v=DKIM1; p=").problems.is_empty());
        assert_eq!(bit_length(&[0, 0x01, 0xff]), 9);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[]), 0);
    }
}
