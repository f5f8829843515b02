//! Failed-login throttling, shared by mpopd, mimapd and mrelayd: per client address and per
//! user.
//!
//! **Per address** (IPv6: its /64, since one host owns a whole /64): each failed login makes the
//! next failure's answer slower (a delay that doubles per failure up to a cap) and, after
//! `max_failures`, locks the address out until `lockout` has passed since its last failure. A
//! success forgets only the failures that address made against *that* user (each address
//! remembers the users it failed against, [`USERS_PER_ADDRESS`] at most; failures against
//! further users are counted but never forgiven by a success), so logging in to one's own
//! account between guesses at someone else's does not reset the count.
//!
//! **Per user**, across addresses (keyed on [`canonical_user`]: case-folded, `user@domain` of a
//! served domain the same as `user`): after failures against a user, *every* answer to a login
//! as that user waits `user_failure_delay * 2^(n-1)` (n = failures, capped at `user_max_delay`),
//! like Dovecot's auth penalty. The delay applies to right and wrong passwords alike (so a
//! client cannot tell a success by its speed and hang up early on failures), it never locks
//! out, so an attacker cannot lock a victim out of their own mail, and the user's own success
//! forgets it. Unknown users are tracked exactly like known ones, so neither the reply nor its
//! delay says whether a user exists.
//!
//! Both tables are bounded (`max_tracked` addresses, `max_tracked_users` users): when full,
//! expired entries go first, then the one whose last failure is oldest, so memory stays bounded
//! under a spray of addresses or names while the most active attackers stay tracked. Failures
//! are remembered for `lockout` after the last one.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::AuthConfig;

/// How many distinct users one address's failures are attributed to (the rest are counted
/// without a user and no success forgives them).
pub const USERS_PER_ADDRESS: usize = 8;

/// Throttle limits (see [`AuthConfig`] for the config keys and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Delay after an address's first failure; doubles with each further failure.
    pub failure_delay: Duration,
    /// Cap of that delay.
    pub max_delay: Duration,
    /// Failures before the address is locked out (0 disables lockout).
    pub max_failures: u32,
    /// How long failures are remembered and a lockout lasts, from the last failure.
    pub lockout: Duration,
    /// Memory bound: addresses tracked at most.
    pub max_tracked: usize,
    /// Per-user penalty after a user's first failure (any address); doubles per failure.
    pub user_failure_delay: Duration,
    /// Cap of the per-user penalty.
    pub user_max_delay: Duration,
    /// Memory bound: users (known or not) tracked at most.
    pub max_tracked_users: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig::from(&AuthConfig::default())
    }
}

impl From<&AuthConfig> for ThrottleConfig {
    fn from(c: &AuthConfig) -> Self {
        ThrottleConfig {
            failure_delay: Duration::from_millis(c.failure_delay_ms),
            max_delay: Duration::from_millis(c.max_delay_ms),
            max_failures: c.max_failures,
            lockout: Duration::from_secs(c.lockout_secs),
            max_tracked: c.max_tracked_ips.max(1),
            user_failure_delay: Duration::from_millis(c.user_failure_delay_ms),
            user_max_delay: Duration::from_millis(c.user_max_delay_ms),
            max_tracked_users: c.max_tracked_users.max(1),
        }
    }
}

#[derive(Debug, Clone)]
struct AddrEntry {
    failures: u32,
    last: Instant,
    /// Failures of this address per user (hash of the canonical name), bounded.
    by_user: Vec<(u64, u32)>,
}

#[derive(Debug, Clone, Copy)]
struct UserEntry {
    failures: u32,
    last: Instant,
}

trait Last {
    fn last(&self) -> Instant;
}

impl Last for AddrEntry {
    fn last(&self) -> Instant {
        self.last
    }
}

impl Last for UserEntry {
    fn last(&self) -> Instant {
        self.last
    }
}

#[derive(Debug, Default)]
struct Tables {
    addrs: HashMap<IpAddr, AddrEntry>,
    users: HashMap<String, UserEntry>,
}

/// Failed-login counters per address and per user; cheap to share (`&self` methods).
#[derive(Debug)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    tables: Mutex<Tables>,
    /// Keys the per-address user attribution (a random key: names cannot be made to collide).
    hasher: RandomState,
}

/// The key an address is counted under: IPv4 as is (and IPv4-mapped IPv6 as IPv4), IPv6 by /64.
pub fn throttle_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The key a login name is throttled under: case-folded, and `user@domain` for one of
/// `domains` (the served domains, lower case) the same as `user`, so that every spelling of
/// one account shares one counter. Over-long names are cut (they cannot log in anyway).
pub fn canonical_user(name: &str, domains: &[String]) -> String {
    let mut key = name.to_lowercase();
    if let Some((local, domain)) = key.rsplit_once('@') {
        let domain = domain.trim_end_matches('.');
        if domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
            key = local.to_string();
        }
    }
    let mut end = key.len().min(super::MAX_USERNAME_LEN + 1);
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    key.truncate(end);
    key
}

/// Makes room for one more key: expired entries go first, then the oldest.
fn make_room<K: Clone + Eq + Hash, E: Last>(
    table: &mut HashMap<K, E>,
    max: usize,
    now: Instant,
    lockout: Duration,
) {
    if table.len() < max {
        return;
    }
    table.retain(|_, e| now.saturating_duration_since(e.last()) < lockout);
    while table.len() >= max {
        let oldest = table
            .iter()
            .min_by_key(|(_, e)| e.last())
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => table.remove(&k),
            None => break,
        };
    }
}

/// `base * 2^(n-1)` capped at `cap`; zero for no failures.
fn doubling(base: Duration, cap: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(20);
    base.saturating_mul(1u32 << shift).min(cap)
}

impl LoginThrottle {
    /// An empty throttle with these limits.
    pub fn new(config: ThrottleConfig) -> Self {
        LoginThrottle {
            config,
            tables: Mutex::new(Tables::default()),
            hasher: RandomState::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the maps inconsistent (each update is a
        // few inserts/removes of whole entries), so a poisoned lock is still usable.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn expired(&self, last: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last) >= self.config.lockout
    }

    /// If `ip` is locked out now, how long until it may try again.
    pub fn locked(&self, ip: IpAddr) -> Option<Duration> {
        self.locked_at(ip, Instant::now())
    }

    /// [`locked`](Self::locked) at a given time (for tests).
    pub fn locked_at(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.config.max_failures == 0 {
            return None;
        }
        let tables = self.tables();
        let e = tables.addrs.get(&throttle_key(ip))?;
        let until = e.last + self.config.lockout;
        if e.failures >= self.config.max_failures && now < until {
            Some(until - now)
        } else {
            None
        }
    }

    /// The penalty every answer to a login as `user` (a [`canonical_user`] key) waits now,
    /// whatever the password: zero unless the user has recent failures.
    pub fn user_delay(&self, user: &str) -> Duration {
        self.user_delay_at(user, Instant::now())
    }

    /// [`user_delay`](Self::user_delay) at a given time (for tests).
    pub fn user_delay_at(&self, user: &str, now: Instant) -> Duration {
        let failures = match self.tables().users.get(user) {
            Some(e) if !self.expired(e.last, now) => e.failures,
            _ => 0,
        };
        doubling(
            self.config.user_failure_delay,
            self.config.user_max_delay,
            failures,
        )
    }

    /// Records a failed login as `user` (a [`canonical_user`] key) from `ip` and returns the
    /// address's delay before answering it.
    pub fn record_failure(&self, ip: IpAddr, user: &str) -> Duration {
        self.record_failure_at(ip, user, Instant::now())
    }

    /// [`record_failure`](Self::record_failure) at a given time (for tests).
    pub fn record_failure_at(&self, ip: IpAddr, user: &str, now: Instant) -> Duration {
        let key = throttle_key(ip);
        let hash = self.hasher.hash_one(user);
        let lockout = self.config.lockout;
        let mut tables = self.tables();
        let t = &mut *tables;
        if !t.addrs.contains_key(&key) {
            make_room(&mut t.addrs, self.config.max_tracked, now, lockout);
        }
        let entry = t.addrs.entry(key).or_insert(AddrEntry {
            failures: 0,
            last: now,
            by_user: Vec::new(),
        });
        if self.expired(entry.last, now) {
            entry.failures = 0;
            entry.by_user.clear();
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        if let Some((_, n)) = entry.by_user.iter_mut().find(|(h, _)| *h == hash) {
            *n = n.saturating_add(1);
        } else if entry.by_user.len() < USERS_PER_ADDRESS {
            entry.by_user.push((hash, 1));
        }
        let failures = entry.failures;

        if !t.users.contains_key(user) {
            make_room(&mut t.users, self.config.max_tracked_users, now, lockout);
        }
        let u = t.users.entry(user.to_string()).or_insert(UserEntry {
            failures: 0,
            last: now,
        });
        if self.expired(u.last, now) {
            u.failures = 0;
        }
        u.failures = u.failures.saturating_add(1);
        u.last = now;
        self.delay_for(failures)
    }

    /// The address delay after its `failures`-th failure: `failure_delay * 2^(failures-1)`,
    /// capped.
    pub fn delay_for(&self, failures: u32) -> Duration {
        doubling(
            self.config.failure_delay,
            self.config.max_delay,
            failures.max(1),
        )
    }

    /// Records a successful login as `user` from `ip`: the user's penalty and the failures
    /// this address made against this user are forgotten; nothing else is.
    pub fn record_success(&self, ip: IpAddr, user: &str) {
        let key = throttle_key(ip);
        let hash = self.hasher.hash_one(user);
        let mut tables = self.tables();
        tables.users.remove(user);
        if let Some(e) = tables.addrs.get_mut(&key) {
            if let Some(i) = e.by_user.iter().position(|(h, _)| *h == hash) {
                let (_, n) = e.by_user.swap_remove(i);
                e.failures = e.failures.saturating_sub(n);
            }
            if e.failures == 0 {
                tables.addrs.remove(&key);
            }
        }
    }

    /// Failures currently counted for `ip`.
    pub fn failures(&self, ip: IpAddr) -> u32 {
        self.tables()
            .addrs
            .get(&throttle_key(ip))
            .map_or(0, |e| e.failures)
    }

    /// Failures currently counted against `user` (a [`canonical_user`] key).
    pub fn user_failures(&self, user: &str) -> u32 {
        self.tables().users.get(user).map_or(0, |e| e.failures)
    }

    /// Addresses currently tracked (bounded by `max_tracked`).
    pub fn tracked(&self) -> usize {
        self.tables().addrs.len()
    }

    /// Users currently tracked (bounded by `max_tracked_users`).
    pub fn tracked_users(&self) -> usize {
        self.tables().users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ThrottleConfig {
        ThrottleConfig {
            failure_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            max_failures: 3,
            lockout: Duration::from_secs(60),
            max_tracked: 4,
            user_failure_delay: Duration::from_millis(100),
            user_max_delay: Duration::from_millis(15_000),
            max_tracked_users: 4,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn delay_doubles_and_caps() {
        let t = LoginThrottle::new(cfg());
        let ip = ip("192.0.2.1");
        let now = Instant::now();
        let d: Vec<u128> = (0..6)
            .map(|_| t.record_failure_at(ip, "u", now).as_millis())
            .collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(t.delay_for(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn lockout_after_max_failures_then_expires() {
        let t = LoginThrottle::new(cfg());
        let ip1 = ip("192.0.2.1");
        let other = ip("192.0.2.2");
        let now = Instant::now();
        for _ in 0..2 {
            t.record_failure_at(ip1, "u", now);
        }
        assert_eq!(t.locked_at(ip1, now), None);
        t.record_failure_at(ip1, "u", now);
        assert_eq!(t.locked_at(ip1, now), Some(Duration::from_secs(60)));
        assert_eq!(t.locked_at(other, now), None);
        let later = now + Duration::from_secs(61);
        assert_eq!(t.locked_at(ip1, later), None);
        // After expiry the count starts again.
        assert_eq!(
            t.record_failure_at(ip1, "u", later),
            Duration::from_millis(100)
        );
        assert_eq!(t.failures(ip1), 1);
    }

    #[test]
    fn success_forgets() {
        let t = LoginThrottle::new(cfg());
        let ip = ip("192.0.2.1");
        t.record_failure(ip, "u");
        t.record_failure(ip, "u");
        t.record_success(ip, "u");
        assert_eq!(t.failures(ip), 0);
        assert_eq!(t.tracked(), 0);
        assert_eq!(t.user_delay("u"), Duration::ZERO);
    }

    #[test]
    fn own_success_does_not_forgive_guesses_at_another_user() {
        // The walk-around of the review: guess at the victim, log in to one's own account,
        // guess again. The address's failures against the victim add up to the lockout.
        let t = LoginThrottle::new(cfg());
        let attacker = ip("192.0.2.66");
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.locked_at(attacker, now), None);
            t.record_failure_at(attacker, "victim", now);
            t.record_success(attacker, "attacker");
        }
        assert!(t.locked_at(attacker, now).is_some());
        assert_eq!(t.failures(attacker), 3);
        // Nor does it clear the victim's penalty.
        assert_eq!(t.user_failures("victim"), 3);
        assert_eq!(t.user_delay_at("victim", now), Duration::from_millis(400));
    }

    #[test]
    fn failures_beyond_the_attributed_users_are_never_forgiven() {
        let mut c = cfg();
        c.max_failures = 0;
        c.max_tracked_users = 100;
        let t = LoginThrottle::new(c);
        let a = ip("192.0.2.7");
        for i in 0..USERS_PER_ADDRESS + 3 {
            t.record_failure(a, &format!("u{i}"));
        }
        // A success as one of the first users forgives only its own failure...
        t.record_success(a, "u0");
        assert_eq!(t.failures(a), USERS_PER_ADDRESS as u32 + 2);
        // ...and one as a user beyond the bound forgives nothing of the address.
        t.record_success(a, &format!("u{}", USERS_PER_ADDRESS + 1));
        assert_eq!(t.failures(a), USERS_PER_ADDRESS as u32 + 2);
    }

    #[test]
    fn user_penalty_grows_across_addresses_caps_and_never_locks_out() {
        let t = LoginThrottle::new(ThrottleConfig {
            max_tracked: 100,
            ..cfg()
        });
        let now = Instant::now();
        let mut seen = Vec::new();
        for i in 0..20u8 {
            // 20 guesses from 10 addresses: two each, no address near its lockout.
            let from = IpAddr::from([198, 51, 100, i / 2]);
            seen.push(t.user_delay_at("victim", now).as_millis());
            t.record_failure_at(from, "victim", now);
        }
        assert_eq!(
            &seen[..9],
            &[0, 100, 200, 400, 800, 1600, 3200, 6400, 12800]
        );
        assert!(seen[9..].iter().all(|&d| d == 15_000), "{seen:?}");
        // The victim from a fresh address: delayed, never locked out.
        let fresh = ip("203.0.113.5");
        assert_eq!(t.locked_at(fresh, now), None);
        t.record_success(fresh, "victim");
        assert_eq!(t.user_delay_at("victim", now), Duration::ZERO);
        // Penalties expire with the failures.
        t.record_failure_at(fresh, "x", now);
        assert_eq!(
            t.user_delay_at("x", now + Duration::from_secs(61)),
            Duration::ZERO
        );
    }

    #[test]
    fn canonical_user_folds_case_and_served_domains() {
        let domains = vec!["example.org".to_string()];
        assert_eq!(canonical_user("Alice", &domains), "alice");
        assert_eq!(canonical_user("alice@Example.ORG", &domains), "alice");
        assert_eq!(canonical_user("ALICE@example.org.", &domains), "alice");
        assert_eq!(
            canonical_user("alice@other.example", &domains),
            "alice@other.example"
        );
        assert_eq!(canonical_user("", &domains), "");
        let long = "é".repeat(300);
        assert!(canonical_user(&long, &domains).len() <= crate::auth::MAX_USERNAME_LEN + 1);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let t = LoginThrottle::new(cfg());
        let now = Instant::now();
        t.record_failure_at(ip("2001:db8:1:2::1"), "u", now);
        t.record_failure_at(ip("2001:db8:1:2:ffff::9"), "u", now);
        t.record_failure_at(ip("2001:db8:1:2::77"), "u", now);
        assert!(t.locked_at(ip("2001:db8:1:2::5"), now).is_some());
        assert!(t.locked_at(ip("2001:db8:1:3::5"), now).is_none());
        t.record_failure_at(ip("::ffff:192.0.2.9"), "u", now);
        assert_eq!(t.failures(ip("192.0.2.9")), 1);
    }

    #[test]
    fn memory_is_bounded_and_oldest_goes_first() {
        let t = LoginThrottle::new(cfg());
        let now = Instant::now();
        let busy = ip("198.51.100.1");
        for _ in 0..3 {
            t.record_failure_at(busy, "victim", now + Duration::from_secs(50));
        }
        for i in 0..1000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            // A spray of addresses and of names (known or not, it is the same).
            t.record_failure_at(
                ip,
                &format!("guess{i}"),
                now + Duration::from_millis(u64::from(i)),
            );
            assert!(t.tracked() <= cfg().max_tracked);
            assert!(t.tracked_users() <= cfg().max_tracked_users);
        }
        // The busy address's and the victim's last failures are the newest: they survived.
        assert!(t.locked_at(busy, now + Duration::from_secs(51)).is_some());
        assert_eq!(t.user_failures("victim"), 3);
    }

    #[test]
    fn zero_max_failures_disables_lockout() {
        let mut c = cfg();
        c.max_failures = 0;
        let t = LoginThrottle::new(c);
        let ip = ip("192.0.2.1");
        for _ in 0..100 {
            t.record_failure(ip, "u");
        }
        assert_eq!(t.locked(ip), None);
    }
}
