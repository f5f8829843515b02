//! SRS, the Sender Rewriting Scheme (sans-IO): the envelope sender of forwarded mail is
//! rewritten to an address at our own domain, so SPF (RFC 7208) at the next hop checks our
//! host, not the original sender's; a bounce to that address is turned back into the original.
//! The format is libsrs2's, as postsrsd writes and reads it (the "Guarded" scheme of Shevek's
//! SRS paper, <https://www.libsrs2.net/srs/srs.pdf>):
//!
//! ```text
//! alice@origin.example   -> SRS0=HHHH=TT=origin.example=alice@srs.example
//! SRS0=HHHH=TT=origin.example=alice@fwd1.example
//!                        -> SRS1=GGGG=fwd1.example==HHHH=TT=origin.example=alice@srs.example
//! ```
//! `TT` is the day (Unix time / 86400) modulo 1024 in two base32 characters
//! (`A-Z2-7`); `HHHH` is the first 4 characters of the base64 HMAC-SHA1, keyed with the secret,
//! of the lower-cased `TT`, domain and local part (of the first forwarder's domain and the
//! rest, for SRS1). A reverse lookup accepts the hash without regard to case (mailers may
//! lower-case local parts, as libsrs2 allows), any of the configured secrets (the first one
//! signs: rotate by adding a new first line), and a timestamp at most `max_age` days old.
//! An SRS1 address reverses to the SRS0 address at the first forwarder, which reverses it.

use std::fmt;

/// Default largest age of an SRS0 address accepted back, in days (libsrs2's and postsrsd's).
pub const DEFAULT_MAX_AGE_DAYS: u64 = 21;
/// Length of the hash (libsrs2's default `hashlength` and `hashmin`).
pub const HASH_LEN: usize = 4;
/// Seconds per timestamp unit.
const TIME_PRECISION: u64 = 86400;
/// Timestamps wrap after this many units (two base32 characters: 10 bits).
const TIME_SLOTS: u64 = 1024;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
/// The first separator may be any of these (libsrs2's `-+=`); we write `=`.
const FIRST_SEPARATORS: &[u8] = b"=+-";

/// Why an address does not reverse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The local part does not start with `SRS0` or `SRS1` and a separator.
    NotSrs,
    /// A part is missing (what is missing).
    Syntax(&'static str),
    /// The timestamp has a character outside base32.
    BadTimestamp,
    /// The hash matches no secret (forged, or made with another secret).
    BadHash,
    /// Older than `max_age` days.
    Expired,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotSrs => f.write_str("not an SRS address"),
            Error::Syntax(what) => write!(f, "malformed SRS address: no {what}"),
            Error::BadTimestamp => f.write_str("bad SRS timestamp"),
            Error::BadHash => f.write_str("SRS hash does not match"),
            Error::Expired => f.write_str("SRS address expired"),
        }
    }
}

impl std::error::Error for Error {}

/// The SRS rewriter: secrets, our SRS domain, the largest age.
#[derive(Clone)]
pub struct Srs {
    secrets: Vec<Vec<u8>>,
    domain: String,
    max_age_days: u64,
}

impl fmt::Debug for Srs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Srs")
            .field("secrets", &self.secrets.len())
            .field("domain", &self.domain)
            .field("max_age_days", &self.max_age_days)
            .finish()
    }
}

/// The secrets of a secret file as postsrsd reads it: one per line (line end and a trailing
/// CR removed), empty lines skipped; the first one signs, all of them verify.
pub fn parse_secrets(text: &[u8]) -> Vec<Vec<u8>> {
    text.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Whether `local` has an SRS tag (`SRS0=`/`SRS1=`, any case, `=`, `+` or `-` after it).
pub fn is_srs(local: &str) -> bool {
    srs_tag(local).is_some()
}

/// `Some(0)` or `Some(1)` for an SRS0 / SRS1 local part.
fn srs_tag(local: &str) -> Option<u8> {
    let b = local.as_bytes();
    if b.len() < 5 || !b[..3].eq_ignore_ascii_case(b"SRS") || !FIRST_SEPARATORS.contains(&b[4]) {
        return None;
    }
    match b[3] {
        b'0' => Some(0),
        b'1' => Some(1),
        _ => None,
    }
}

/// The two-character timestamp of Unix time `now` (day number modulo 1024, base32).
pub fn timestamp(now: u64) -> String {
    let day = (now / TIME_PRECISION) % TIME_SLOTS;
    let hi = BASE32[((day >> 5) & 31) as usize];
    let lo = BASE32[(day & 31) as usize];
    String::from_utf8_lossy(&[hi, lo]).into_owned()
}

/// The day number (0..1024) of a timestamp, without regard to case.
fn timestamp_value(stamp: &str) -> Result<u64, Error> {
    if stamp.len() != 2 {
        return Err(Error::BadTimestamp);
    }
    let mut v = 0u64;
    for c in stamp.bytes() {
        let c = c.to_ascii_uppercase();
        let i = BASE32
            .iter()
            .position(|&x| x == c)
            .ok_or(Error::BadTimestamp)?;
        v = (v << 5) | i as u64;
    }
    Ok(v)
}

impl Srs {
    /// A rewriter writing addresses at `domain`; `secrets` as [`parse_secrets`] gives them
    /// (at least one). The error says what is wrong.
    pub fn new(secrets: Vec<Vec<u8>>, domain: &str, max_age_days: u64) -> Result<Srs, String> {
        if secrets.is_empty() {
            return Err("no SRS secret (the secret file is empty)".into());
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() || domain.contains(['@', '=']) || domain.contains(char::is_whitespace)
        {
            return Err(format!("bad SRS domain {domain:?}"));
        }
        Ok(Srs {
            secrets,
            domain,
            max_age_days,
        })
    }

    /// The domain of our SRS addresses (lower case).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The hash of `parts` (lower-cased, concatenated) with secret `index`.
    fn hash(&self, index: usize, parts: &[&str]) -> String {
        let key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            &self.secrets[index],
        );
        let mut ctx = ring::hmac::Context::with_key(&key);
        for p in parts {
            ctx.update(p.to_ascii_lowercase().as_bytes());
        }
        let tag = ctx.sign();
        let d = tag.as_ref();
        // Base64 of the digest's first 3 bytes: 4 characters (libsrs2's "little base64").
        let idx = [
            d[0] >> 2,
            ((d[0] & 0x03) << 4) | (d[1] >> 4),
            ((d[1] & 0x0f) << 2) | (d[2] >> 6),
            d[2] & 0x3f,
        ];
        idx.iter().map(|&i| BASE64[i as usize] as char).collect()
    }

    /// Whether `hash` is the hash of `parts` under any secret, without regard to case.
    fn hash_ok(&self, hash: &str, parts: &[&str]) -> bool {
        hash.len() == HASH_LEN
            && (0..self.secrets.len()).any(|i| self.hash(i, parts).eq_ignore_ascii_case(hash))
    }

    /// The SRS address for sender `local@domain` at Unix time `now`: SRS0 for a plain
    /// address, SRS1 for an SRS0 or SRS1 address of another forwarder (module doc).
    pub fn forward(&self, local: &str, domain: &str, now: u64) -> String {
        match srs_tag(local) {
            Some(0) => {
                // SRS0=rest@fwd1 → SRS1=HHHH=fwd1==rest (the separator kept with the rest).
                let rest = &local[4..];
                let h = self.hash(0, &[domain, rest]);
                let srs1 = format!("SRS1={h}={domain}={rest}");
                // Only when the way back gives this very address (found by the srs fuzz
                // target: a malformed SRS0 local part came back changed); else plain SRS0.
                let back = self.reverse(&srs1, now);
                if back.is_ok_and(|b| b == format!("{local}@{domain}")) {
                    return format!("{srs1}@{}", self.domain);
                }
                self.srs0(local, domain, now)
            }
            Some(_) => {
                // SRS1=hash=fwd1=rest@fwd2 → SRS1=HHHH=fwd1=rest: the way back skips fwd2.
                let mut it = local[5..].splitn(3, '=');
                if let (Some(_), Some(host), Some(rest)) = (it.next(), it.next(), it.next()) {
                    if !host.is_empty() {
                        let h = self.hash(0, &[host, rest]);
                        let srs1 = format!("SRS1={h}={host}={rest}");
                        // Only an address our own reverse reads back (found by the srs fuzz
                        // target: `SRS1=x=host=` has no SRS0 part to return to).
                        if self.reverse(&srs1, now).is_ok() {
                            return format!("{srs1}@{}", self.domain);
                        }
                    }
                }
                // Not a well-formed SRS1: treated as a plain address.
                self.srs0(local, domain, now)
            }
            None => self.srs0(local, domain, now),
        }
    }

    fn srs0(&self, local: &str, domain: &str, now: u64) -> String {
        let tt = timestamp(now);
        let h = self.hash(0, &[&tt, domain, local]);
        format!("SRS0={h}={tt}={domain}={local}@{}", self.domain)
    }

    /// The address an SRS local part (of an address at our SRS domain) stands for at Unix time
    /// `now`: the original sender for SRS0 (hash and age checked), the first forwarder's SRS0
    /// address for SRS1 (hash checked; that forwarder checks the age).
    pub fn reverse(&self, local: &str, now: u64) -> Result<String, Error> {
        match srs_tag(local).ok_or(Error::NotSrs)? {
            0 => {
                let mut it = local[5..].splitn(4, '=');
                let hash = it.next().ok_or(Error::Syntax("hash"))?;
                let stamp = it.next().ok_or(Error::Syntax("timestamp"))?;
                let host = it.next().filter(|h| !h.is_empty());
                let host = host.ok_or(Error::Syntax("domain"))?;
                let user = it.next().filter(|u| !u.is_empty());
                let user = user.ok_or(Error::Syntax("local part"))?;
                let then = timestamp_value(stamp)?;
                if !self.hash_ok(hash, &[stamp, host, user]) {
                    return Err(Error::BadHash);
                }
                let mut today = (now / TIME_PRECISION) % TIME_SLOTS;
                while today < then {
                    today += TIME_SLOTS;
                }
                if today > then + self.max_age_days {
                    return Err(Error::Expired);
                }
                Ok(format!("{user}@{host}"))
            }
            _ => {
                let mut it = local[5..].splitn(3, '=');
                let hash = it.next().ok_or(Error::Syntax("hash"))?;
                let host = it.next().filter(|h| !h.is_empty());
                let host = host.ok_or(Error::Syntax("domain"))?;
                let rest = it.next().filter(|r| !r.is_empty());
                let rest = rest.ok_or(Error::Syntax("SRS0 part"))?;
                if !self.hash_ok(hash, &[host, rest]) {
                    return Err(Error::BadHash);
                }
                Ok(format!("SRS0{rest}@{host}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04 12:00 UTC: day 20791, 20791 % 1024 = 311 = 9*32 + 23: "JX".
    const NOW: u64 = 20791 * 86400 + 43200;

    fn srs() -> Srs {
        Srs::new(parse_secrets(b"tops3cret\n"), "Fwd.Test.", 21).unwrap()
    }

    #[test]
    fn timestamps_are_base32_days_mod_1024() {
        assert_eq!(timestamp(NOW), "JX");
        assert_eq!(timestamp(0), "AA");
        assert_eq!(timestamp(1023 * 86400), "77");
        assert_eq!(timestamp(1024 * 86400), "AA");
        assert_eq!(timestamp_value("jx"), Ok(311));
        assert_eq!(timestamp_value("J1"), Err(Error::BadTimestamp));
        assert_eq!(timestamp_value("JXA"), Err(Error::BadTimestamp));
    }

    /// Hashes computed independently with python3's hmac and base64 modules.
    #[test]
    fn forward_matches_libsrs2() {
        let s = srs();
        assert_eq!(s.domain(), "fwd.test");
        let a = s.forward("alice", "origin.test", NOW);
        assert_eq!(a, format!("SRS0={}=JX=origin.test=alice@fwd.test", PY_SRS0));
        let b = s.forward("SRS0=abcd=JX=origin.test=alice", "other.test", NOW);
        assert_eq!(
            b,
            format!(
                "SRS1={}=other.test==abcd=JX=origin.test=alice@fwd.test",
                PY_SRS1
            )
        );
        // SRS1 again: the first forwarder stays, only the hash is ours.
        let c = s.forward(
            "SRS1=zzzz=other.test==abcd=JX=origin.test=alice",
            "third.test",
            NOW,
        );
        assert_eq!(c, b);
    }

    /// hmac-sha1("tops3cret", "jxorigin.testalice"), base64, 4 characters.
    const PY_SRS0: &str = "mbsb";
    /// hmac-sha1("tops3cret", "other.test=abcd=jx=origin.test=alice"), base64, 4 characters.
    const PY_SRS1: &str = "True";

    #[test]
    fn reverse_round_trips_and_checks_hash_and_age() {
        let s = srs();
        for (local, domain) in [
            ("alice", "origin.test"),
            ("a=b+c", "x.test"),
            ("SRS0=abcd=JX=origin.test=alice", "other.test"),
        ] {
            let fwd = s.forward(local, domain, NOW);
            let (l, d) = fwd.rsplit_once('@').unwrap();
            assert_eq!(d, "fwd.test");
            assert!(is_srs(l));
            assert_eq!(
                s.reverse(l, NOW).as_deref(),
                Ok(format!("{local}@{domain}").as_str())
            );
            // Lower-cased by a mailer on the way: still ours.
            assert_eq!(
                s.reverse(&l.to_lowercase(), NOW).unwrap().to_lowercase(),
                format!("{local}@{domain}").to_lowercase()
            );
        }
        let fwd = s.forward("alice", "origin.test", NOW);
        let l = fwd.rsplit_once('@').unwrap().0;
        // 21 days later still good, 22 days later expired.
        assert!(s.reverse(l, NOW + 21 * 86400).is_ok());
        assert_eq!(s.reverse(l, NOW + 22 * 86400), Err(Error::Expired));
        // Across the 1024-day wrap.
        assert!(s.reverse(l, NOW + 1024 * 86400).is_ok());
        // A changed domain or a forged hash.
        let forged = l.replace("origin.test", "evil.test");
        assert_eq!(s.reverse(&forged, NOW), Err(Error::BadHash));
        let other = Srs::new(vec![b"other".to_vec()], "fwd.test", 21).unwrap();
        assert_eq!(other.reverse(l, NOW), Err(Error::BadHash));
        // An old secret still verifies; the new first one signs.
        let rotated = Srs::new(parse_secrets(b"new\r\n\ntops3cret\n"), "fwd.test", 21).unwrap();
        assert_eq!(rotated.reverse(l, NOW).unwrap(), "alice@origin.test");
        assert_ne!(rotated.forward("alice", "origin.test", NOW), fwd);
    }

    #[test]
    fn malformed_addresses() {
        let s = srs();
        for (l, e) in [
            ("alice", Error::NotSrs),
            ("SRS2=x", Error::NotSrs),
            ("SRS0", Error::NotSrs),
            ("SRS0=", Error::Syntax("timestamp")),
            ("SRS0=abcd", Error::Syntax("timestamp")),
            ("SRS0=abcd=JX", Error::Syntax("domain")),
            ("SRS0=abcd=JX==alice", Error::Syntax("domain")),
            ("SRS0=abcd=JX=origin.test", Error::Syntax("local part")),
            ("SRS0=abcd=J!=origin.test=alice", Error::BadTimestamp),
            ("SRS0=abc=JX=origin.test=alice", Error::BadHash),
            ("SRS1=abcd", Error::Syntax("domain")),
            ("SRS1=abcd=other.test", Error::Syntax("SRS0 part")),
            ("SRS1=abcd=other.test==abcd=JX=o=a", Error::BadHash),
        ] {
            assert_eq!(s.reverse(l, NOW), Err(e), "{l}");
        }
        assert!(Srs::new(vec![], "fwd.test", 21).is_err());
        assert!(Srs::new(vec![b"x".to_vec()], "a=b", 21).is_err());
    }
}
