//! Failed-login throttling per client address, shared by mpopd, mimapd and mrelayd.
//!
//! Each failed login from an address (IPv6: its /64, since one host owns a whole /64) makes the
//! next answer slower (a delay that doubles per failure up to a cap) and, after `max_failures`,
//! locks the address out until `lockout` has passed since its last failure. A success forgets
//! the address. The table holds at most `max_tracked` addresses: when full, expired entries go
//! first, then the one whose last failure is oldest, so memory stays bounded under a spray of
//! addresses while the most active attackers stay tracked.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::AuthConfig;

/// Throttle limits (see [`AuthConfig`] for the config keys and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Delay after the first failure; doubles with each further failure.
    pub failure_delay: Duration,
    /// Cap of that delay.
    pub max_delay: Duration,
    /// Failures before the address is locked out (0 disables lockout).
    pub max_failures: u32,
    /// How long failures are remembered and a lockout lasts, from the last failure.
    pub lockout: Duration,
    /// Memory bound: addresses tracked at most.
    pub max_tracked: usize,
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
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// Per-address failed-login counter with delays and lockout; cheap to share (`&self` methods).
#[derive(Debug)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    table: Mutex<HashMap<IpAddr, Entry>>,
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

impl LoginThrottle {
    /// An empty throttle with these limits.
    pub fn new(config: ThrottleConfig) -> Self {
        LoginThrottle {
            config,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent (each update is one
        // insert/remove), so a poisoned lock is still usable.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
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
        let table = self.table();
        let e = table.get(&throttle_key(ip))?;
        let until = e.last + self.config.lockout;
        if e.failures >= self.config.max_failures && now < until {
            Some(until - now)
        } else {
            None
        }
    }

    /// Records a failed login and returns how long to wait before answering it.
    pub fn record_failure(&self, ip: IpAddr) -> Duration {
        self.record_failure_at(ip, Instant::now())
    }

    /// [`record_failure`](Self::record_failure) at a given time (for tests).
    pub fn record_failure_at(&self, ip: IpAddr, now: Instant) -> Duration {
        let key = throttle_key(ip);
        let lockout = self.config.lockout;
        let mut table = self.table();
        let expired = |e: &Entry| now.saturating_duration_since(e.last) >= lockout;
        if !table.contains_key(&key) && table.len() >= self.config.max_tracked {
            table.retain(|_, e| !expired(e));
            while table.len() >= self.config.max_tracked {
                let oldest = table.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| *k);
                match oldest {
                    Some(k) => table.remove(&k),
                    None => break,
                };
            }
        }
        let entry = table.entry(key).or_insert(Entry {
            failures: 0,
            last: now,
        });
        if expired(entry) {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last = now;
        self.delay_for(entry.failures)
    }

    /// The delay after the `failures`-th failure: `failure_delay * 2^(failures-1)`, capped.
    pub fn delay_for(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.config
            .failure_delay
            .saturating_mul(1u32 << shift)
            .min(self.config.max_delay)
    }

    /// Records a successful login: the address's failures are forgotten.
    pub fn record_success(&self, ip: IpAddr) {
        self.table().remove(&throttle_key(ip));
    }

    /// Failures currently counted for `ip`.
    pub fn failures(&self, ip: IpAddr) -> u32 {
        self.table()
            .get(&throttle_key(ip))
            .map_or(0, |e| e.failures)
    }

    /// Addresses currently tracked (bounded by `max_tracked`).
    pub fn tracked(&self) -> usize {
        self.table().len()
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
        }
    }

    #[test]
    fn delay_doubles_and_caps() {
        let t = LoginThrottle::new(cfg());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        let d: Vec<u128> = (0..6)
            .map(|_| t.record_failure_at(ip, now).as_millis())
            .collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(t.delay_for(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn lockout_after_max_failures_then_expires() {
        let t = LoginThrottle::new(cfg());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let now = Instant::now();
        for _ in 0..2 {
            t.record_failure_at(ip, now);
        }
        assert_eq!(t.locked_at(ip, now), None);
        t.record_failure_at(ip, now);
        assert_eq!(t.locked_at(ip, now), Some(Duration::from_secs(60)));
        assert_eq!(t.locked_at(other, now), None);
        let later = now + Duration::from_secs(61);
        assert_eq!(t.locked_at(ip, later), None);
        // After expiry the count starts again.
        assert_eq!(t.record_failure_at(ip, later), Duration::from_millis(100));
        assert_eq!(t.failures(ip), 1);
    }

    #[test]
    fn success_forgets() {
        let t = LoginThrottle::new(cfg());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        t.record_failure(ip);
        t.record_failure(ip);
        t.record_success(ip);
        assert_eq!(t.failures(ip), 0);
        assert_eq!(t.tracked(), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let t = LoginThrottle::new(cfg());
        let now = Instant::now();
        t.record_failure_at("2001:db8:1:2::1".parse().unwrap(), now);
        t.record_failure_at("2001:db8:1:2:ffff::9".parse().unwrap(), now);
        t.record_failure_at("2001:db8:1:2::77".parse().unwrap(), now);
        assert!(t
            .locked_at("2001:db8:1:2::5".parse().unwrap(), now)
            .is_some());
        assert!(t
            .locked_at("2001:db8:1:3::5".parse().unwrap(), now)
            .is_none());
        t.record_failure_at("::ffff:192.0.2.9".parse().unwrap(), now);
        assert_eq!(t.failures("192.0.2.9".parse().unwrap()), 1);
    }

    #[test]
    fn memory_is_bounded_and_oldest_goes_first() {
        let t = LoginThrottle::new(cfg());
        let now = Instant::now();
        let busy: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..3 {
            t.record_failure_at(busy, now + Duration::from_secs(50));
        }
        for i in 0..1000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.record_failure_at(ip, now + Duration::from_millis(u64::from(i)));
            assert!(t.tracked() <= cfg().max_tracked);
        }
        // The busy address's last failure is the newest, so it survived the spray.
        assert!(t.locked_at(busy, now + Duration::from_secs(51)).is_some());
    }

    #[test]
    fn zero_max_failures_disables_lockout() {
        let mut c = cfg();
        c.max_failures = 0;
        let t = LoginThrottle::new(c);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            t.record_failure(ip);
        }
        assert_eq!(t.locked(ip), None);
    }
}
