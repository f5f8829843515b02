//! Submission rate limits (issue 15): messages and recipients per hour per authenticated user
//! and per client address, since a compromised account is the usual spam cannon. Sans-IO: the
//! caller passes the time; the daemon ([`super::daemon`]) asks at MAIL and RCPT and records at
//! the commit, through [`super::rate_journal::SharedLimits`], which keeps the table in step
//! with the queue's journal file.
//!
//! - **What counts**: a message when it is accepted (queued and fsynced, the 250 after DATA),
//!   with its accepted recipients. Refused commands, aborted transactions and tempfailed
//!   messages count nothing.
//! - **The window** is a leaky bucket per key: each message (recipient) fills it by one, and it
//!   drains continuously at `limit` per hour, so `limit` may be sent in any burst and then
//!   `limit / 3600` per second: a sliding hour without the memory of per-message timestamps.
//! - **Over the limit**: `450 4.7.1` (a temporary refusal, RFC 5321 §4.2.5; RFC 3463 §3.8
//!   X.7.1 "delivery not authorized"), worded as Postfix's anvil limits are ("Error: too much
//!   mail from ...", "Error: too many recipients from ..."), at MAIL when the message limit is
//!   reached and at RCPT when this recipient would pass the recipient limit (those already
//!   accepted in the transaction included). A client retries later, as a queue does.
//! - **Keys**: the user by [`crate::auth::throttle::canonical_user`] (every spelling of a
//!   login shares one bucket); the address by [`crate::auth::throttle::throttle_key`] (IPv6 by
//!   /64, which one host owns). Addresses in `exceptions` have no address limit.
//! - **Shared** by every session of one daemon (one table under a mutex) and, through the
//!   journal file [`super::rate_journal`], by every mrelayd process of one queue (inetd and
//!   socket-activated processes, a restarted or killed daemon). Two sessions checking at once
//!   may both pass and go over by the messages in flight, as with Postfix's anvil.
//! - **Bounded**: at most `max_tracked` keys; when full, drained buckets go first, then the
//!   least recently filled.
//! - **As text** ([`Limiter::record_lines`], [`Limiter::apply`], [`Limiter::save`]): one line
//!   a key, `user NAME` or `addr IP`, then the messages and recipients added and the time. A
//!   line adds to the key's bucket drained to that time, so a table saved whole and a journal
//!   of what each message added read back the same way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use super::Role;
use crate::auth::throttle::{canonical_user, throttle_key};
use crate::server::Cidr;
use crate::smtp::reply::Reply;

/// Default memory bound of the table (keys).
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

/// One hour, the window of every limit.
const HOUR: f64 = 3600.0;

/// The `[mrelayd.rate_limit]` section. A limit of 0 is no limit (the default for all four).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Messages per hour one authenticated user may send.
    pub messages_per_hour_per_user: u64,
    /// Recipients per hour one authenticated user may send to.
    pub recipients_per_hour_per_user: u64,
    /// Messages per hour from one client address (IPv6: its /64).
    pub messages_per_hour_per_address: u64,
    /// Recipients per hour from one client address (IPv6: its /64).
    pub recipients_per_hour_per_address: u64,
    /// The listener roles whose sessions are limited.
    pub roles: Vec<Role>,
    /// Networks (CIDR) without per-address limits (their users' limits still apply).
    pub exceptions: Vec<String>,
    /// Memory bound: users and addresses tracked at most.
    pub max_tracked: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            messages_per_hour_per_user: 0,
            recipients_per_hour_per_user: 0,
            messages_per_hour_per_address: 0,
            recipients_per_hour_per_address: 0,
            roles: vec![Role::Submission, Role::Submissions],
            exceptions: Vec::new(),
            max_tracked: DEFAULT_MAX_TRACKED,
        }
    }
}

impl RateLimitConfig {
    /// Whether any limit is set.
    pub fn enabled(&self) -> bool {
        self.messages_per_hour_per_user > 0
            || self.recipients_per_hour_per_user > 0
            || self.messages_per_hour_per_address > 0
            || self.recipients_per_hour_per_address > 0
    }
}

/// What a bucket is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Addr(IpAddr),
}

/// One key's two buckets: their levels when last filled, and when that was.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    messages: f64,
    recipients: f64,
    /// Seconds since the Unix epoch.
    at: f64,
}

/// A key's two limits (per hour; 0: none).
#[derive(Debug, Clone, Copy)]
struct Limits {
    messages: u64,
    recipients: u64,
}

impl Bucket {
    /// The levels at `now`, drained since `at`.
    fn drained(&self, limits: Limits, now: f64) -> (f64, f64) {
        let elapsed = (now - self.at).max(0.0);
        // A dimension without a limit is not counted (and would never drain).
        let drain = |level: f64, limit: u64| match limit {
            0 => 0.0,
            _ => (level - elapsed * limit as f64 / HOUR).max(0.0),
        };
        (
            drain(self.messages, limits.messages),
            drain(self.recipients, limits.recipients),
        )
    }
}

/// Who is sending: the canonical user (when authenticated) and the client address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sender {
    user: Option<String>,
    addr: Option<IpAddr>,
}

/// The limiter: the buckets of every user and address, shared by all sessions (`&self`).
#[derive(Debug)]
pub struct Limiter {
    config: RateLimitConfig,
    exceptions: Vec<Cidr>,
    domains: Vec<String>,
    table: Mutex<HashMap<Key, Bucket>>,
}

impl Limiter {
    /// From the config; `domains` are the local domains (a login `user@domain` of one of them
    /// counts as `user`). An unparsable exception is an error naming the key.
    pub fn new(config: &RateLimitConfig, domains: &[String]) -> anyhow::Result<Limiter> {
        Ok(Limiter {
            exceptions: crate::server::cidr::parse_list(
                "mrelayd.rate_limit.exceptions",
                &config.exceptions,
            )?,
            config: config.clone(),
            domains: domains.to_vec(),
            table: Mutex::new(HashMap::new()),
        })
    }

    /// Whether sessions of listener `role` are limited at all.
    pub fn applies(&self, role: Role) -> bool {
        self.config.enabled() && self.config.roles.contains(&role)
    }

    /// The sender the limits key on: `user` (the authenticated login) canonicalized, `ip`
    /// by its address key, unless an exception.
    pub fn sender(&self, user: Option<&str>, ip: Option<IpAddr>) -> Sender {
        let addr = ip
            .map(|i| i.to_canonical())
            .filter(|i| !self.exceptions.iter().any(|n| n.contains(*i)))
            .map(throttle_key);
        Sender {
            user: user.map(|u| canonical_user(u, &self.domains)),
            addr,
        }
    }

    /// The keys of `sender` with their limits (only those with a limit set).
    fn keys(&self, sender: &Sender) -> Vec<(Key, Limits, String)> {
        let c = &self.config;
        let mut keys = Vec::new();
        if let Some(u) = &sender.user {
            let limits = Limits {
                messages: c.messages_per_hour_per_user,
                recipients: c.recipients_per_hour_per_user,
            };
            if limits.messages > 0 || limits.recipients > 0 {
                keys.push((Key::User(u.clone()), limits, format!("user {u}")));
            }
        }
        if let Some(a) = sender.addr {
            let limits = Limits {
                messages: c.messages_per_hour_per_address,
                recipients: c.recipients_per_hour_per_address,
            };
            if limits.messages > 0 || limits.recipients > 0 {
                let shown = match a {
                    IpAddr::V6(_) => format!("{a}/64"),
                    IpAddr::V4(_) => a.to_string(),
                };
                keys.push((Key::Addr(a), limits, shown));
            }
        }
        keys
    }

    /// At MAIL: `450 4.7.1` when one more message would pass a message limit of `sender`.
    pub fn check_mail(&self, sender: &Sender, now: Duration) -> Option<Reply> {
        self.check(sender, now, |(m, _), l| {
            (l.messages > 0 && m + 1.0 > l.messages as f64).then_some("too much mail")
        })
    }

    /// At RCPT: `450 4.7.1` when one more recipient, after `pending` accepted in this
    /// transaction, would pass a recipient limit of `sender`.
    pub fn check_rcpt(&self, sender: &Sender, pending: usize, now: Duration) -> Option<Reply> {
        self.check(sender, now, |(_, r), l| {
            (l.recipients > 0 && r + pending as f64 + 1.0 > l.recipients as f64)
                .then_some("too many recipients")
        })
    }

    fn check(
        &self,
        sender: &Sender,
        now: Duration,
        over: impl Fn((f64, f64), Limits) -> Option<&'static str>,
    ) -> Option<Reply> {
        let now = now.as_secs_f64();
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        for (key, limits, shown) in self.keys(sender) {
            let levels = table
                .get(&key)
                .map(|b| b.drained(limits, now))
                .unwrap_or((0.0, 0.0));
            if let Some(what) = over(levels, limits) {
                return Some(Reply::new(
                    450,
                    Some((4, 7, 1)),
                    format!("Error: {what} from {shown}"),
                ));
            }
        }
        None
    }

    /// At the commit of a message with `recipients` accepted recipients: what it adds to
    /// `sender`'s buckets, as lines for [`Limiter::apply`] (the journal's records).
    pub fn record_lines(&self, sender: &Sender, recipients: usize, now: Duration) -> String {
        let now = now.as_secs_f64();
        let mut out = String::new();
        for (key, limits, _) in self.keys(sender) {
            // A dimension without a limit is not counted (as in [`Bucket::drained`]).
            let messages = if limits.messages > 0 { 1.0 } else { 0.0 };
            let recipients = if limits.recipients > 0 {
                recipients as f64
            } else {
                0.0
            };
            out.push_str(&line(&key, messages, recipients, now));
        }
        out
    }

    /// [`Limiter::record_lines`] applied to this table alone (a limiter without a journal).
    pub fn record(&self, sender: &Sender, recipients: usize, now: Duration) {
        self.apply(&self.record_lines(sender, recipients, now), now);
    }

    /// Forgets every bucket (the journal was replaced and is read again from its start).
    pub fn clear(&self) {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The keys in the table.
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The limits of a key in the table.
    fn limits_of(&self, key: &Key) -> Limits {
        let c = &self.config;
        match key {
            Key::User(_) => Limits {
                messages: c.messages_per_hour_per_user,
                recipients: c.recipients_per_hour_per_user,
            },
            Key::Addr(_) => Limits {
                messages: c.messages_per_hour_per_address,
                recipients: c.recipients_per_hour_per_address,
            },
        }
    }

    /// Makes room for one more key: drained buckets go, then (still full) the least recently
    /// filled one.
    fn make_room(&self, table: &mut HashMap<Key, Bucket>, now: f64) {
        let max = self.config.max_tracked.max(1);
        if table.len() < max {
            return;
        }
        table.retain(|k, b| b.drained(self.limits_of(k), now) != (0.0, 0.0));
        while table.len() >= max {
            let oldest = table
                .iter()
                .min_by(|a, b| a.1.at.total_cmp(&b.1.at))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => table.remove(&k),
                None => break,
            };
        }
    }

    /// The table as text: one line a bucket that is not drained, its levels at `now`, sorted
    /// (read back by [`Limiter::apply`] into an empty table: the same buckets).
    pub fn save(&self, now: Duration) -> String {
        let now = now.as_secs_f64();
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines: Vec<String> = table
            .iter()
            .filter_map(|(key, b)| {
                let (m, r) = b.drained(self.limits_of(key), now);
                ((m, r) != (0.0, 0.0)).then(|| line(key, m, r, now))
            })
            .collect();
        // In one order, so that two saves of one table are the same text.
        lines.sort_unstable();
        lines.concat()
    }

    /// Adds the lines of `text` ([`Limiter::record_lines`], [`Limiter::save`]) to the table,
    /// in order: each to its key's bucket drained to the line's time. Lines that do not parse
    /// are skipped (the file is ours: a damaged line only forgets what it added). Returns the
    /// lines applied.
    pub fn apply(&self, text: &str, now: Duration) -> usize {
        let now = now.as_secs_f64();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for text_line in text.lines() {
            let Some((key, m, r, at)) = parse_line(text_line) else {
                continue;
            };
            // A clock that went back does not make a bucket fuller for longer.
            let at = at.min(now);
            let limits = self.limits_of(&key);
            let (m0, r0, at0) = match table.get(&key) {
                Some(b) => {
                    let (m0, r0) = b.drained(limits, at);
                    (m0, r0, b.at)
                }
                None => (0.0, 0.0, 0.0),
            };
            // Lines of other processes may be a little out of time order: a bucket is never
            // drained backwards (`drained` takes no negative time) nor dated back.
            let bucket = Bucket {
                messages: (m0 + m).min(MAX_LEVEL),
                recipients: (r0 + r).min(MAX_LEVEL),
                at: at.max(at0),
            };
            if !table.contains_key(&key) {
                self.make_room(&mut table, now);
            }
            table.insert(key, bucket);
            n += 1;
        }
        n
    }
}

/// Levels are capped here, far above any limit, so that sums stay finite and print as they
/// read back.
const MAX_LEVEL: f64 = 1e15;

/// One line of the table's text: the key, the messages and recipients added, the time.
fn line(key: &Key, messages: f64, recipients: f64, at: f64) -> String {
    match key {
        Key::User(u) => format!("user {} {messages} {recipients} {at}\n", escape(u)),
        Key::Addr(a) => format!("addr {a} {messages} {recipients} {at}\n"),
    }
}

/// A line of [`line`]'s form, or `None`.
fn parse_line(text: &str) -> Option<(Key, f64, f64, f64)> {
    let f: Vec<&str> = text.split(' ').collect();
    let [kind, name, m, r, at] = f[..] else {
        return None;
    };
    let key = match kind {
        "user" => Key::User(unescape(name).filter(|u| !u.is_empty())?),
        "addr" => Key::Addr(name.parse().ok()?),
        _ => return None,
    };
    let (m, r, at) = (
        m.parse::<f64>().ok()?,
        r.parse::<f64>().ok()?,
        at.parse().ok()?,
    );
    [m, r, at]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0)
        .then_some((key, m.min(MAX_LEVEL), r.min(MAX_LEVEL), at))
}

/// A user name as one field: `%`, white space and control characters as `%XX` (their UTF-8
/// bytes), so any login keeps its bucket across processes.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '%' || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// [`escape`] undone; `None` for a bad `%` sequence or bytes that are not UTF-8.
fn unescape(field: &str) -> Option<String> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(c: RateLimitConfig) -> Limiter {
        Limiter::new(&c, &["example.test".to_string()]).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn messages_per_user_until_refused_then_drained() {
        let l = limiter(RateLimitConfig {
            messages_per_hour_per_user: 3,
            ..Default::default()
        });
        let alice = l.sender(Some("alice"), Some("127.0.0.1".parse().unwrap()));
        for _ in 0..3 {
            assert_eq!(l.check_mail(&alice, secs(0)), None);
            l.record(&alice, 1, secs(0));
        }
        let r = l.check_mail(&alice, secs(0)).expect("fourth refused");
        assert_eq!((r.code, r.enhanced), (450, Some((4, 7, 1))));
        assert!(
            r.to_string().contains("too much mail from user alice"),
            "{r}"
        );
        // Every spelling of the login shares the bucket.
        let spelled = l.sender(Some("ALICE@Example.Test"), None);
        assert!(l.check_mail(&spelled, secs(0)).is_some());
        // Another user is not affected.
        let bob = l.sender(Some("bob"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(l.check_mail(&bob, secs(0)), None);
        // One message drains in 20 minutes (3 per hour), not before.
        assert!(l.check_mail(&alice, secs(1199)).is_some());
        assert_eq!(l.check_mail(&alice, secs(1200)), None);
        // No user, no user limit.
        let anon = l.sender(None, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(l.check_mail(&anon, secs(0)), None);
    }

    #[test]
    fn recipients_count_the_transaction_in_progress() {
        let l = limiter(RateLimitConfig {
            recipients_per_hour_per_user: 5,
            ..Default::default()
        });
        let s = l.sender(Some("alice"), None);
        for pending in 0..5 {
            assert_eq!(l.check_rcpt(&s, pending, secs(0)), None);
        }
        let r = l.check_rcpt(&s, 5, secs(0)).expect("sixth refused");
        assert!(r
            .to_string()
            .starts_with("450 4.7.1 Error: too many recipients from user alice"));
        l.record(&s, 4, secs(0));
        assert_eq!(l.check_rcpt(&s, 0, secs(0)), None);
        assert!(l.check_rcpt(&s, 1, secs(0)).is_some());
        // Messages are not limited here.
        assert_eq!(l.check_mail(&s, secs(0)), None);
    }

    #[test]
    fn per_address_by_64_with_exceptions() {
        let l = limiter(RateLimitConfig {
            messages_per_hour_per_address: 1,
            exceptions: vec!["10.0.0.0/8".into()],
            ..Default::default()
        });
        let a = l.sender(Some("alice"), Some("2001:db8:1:2::5".parse().unwrap()));
        l.record(&a, 1, secs(0));
        // Another host of the same /64, another user: the same address bucket.
        let b = l.sender(Some("bob"), Some("2001:db8:1:2:ffff::9".parse().unwrap()));
        let r = l.check_mail(&b, secs(0)).expect("same /64");
        assert!(r.to_string().contains("from 2001:db8:1:2::/64"), "{r}");
        let c = l.sender(None, Some("2001:db8:1:3::5".parse().unwrap()));
        assert_eq!(l.check_mail(&c, secs(0)), None);
        // IPv4-mapped is the IPv4 address.
        let v4 = l.sender(None, Some("192.0.2.1".parse().unwrap()));
        l.record(&v4, 1, secs(0));
        let mapped = l.sender(None, Some("::ffff:192.0.2.1".parse().unwrap()));
        assert!(l.check_mail(&mapped, secs(0)).is_some());
        let ex = l.sender(None, Some("10.1.2.3".parse().unwrap()));
        l.record(&ex, 1, secs(0));
        assert_eq!(l.check_mail(&ex, secs(0)), None);
    }

    #[test]
    fn bounded_and_saved_and_loaded() {
        let l = limiter(RateLimitConfig {
            messages_per_hour_per_address: 2,
            recipients_per_hour_per_user: 10,
            max_tracked: 3,
            ..Default::default()
        });
        for i in 1..=5u8 {
            let s = l.sender(None, Some(IpAddr::from([192, 0, 2, i])));
            l.record(&s, 1, secs(u64::from(i)));
        }
        assert_eq!(l.table.lock().unwrap().len(), 3);
        // The oldest went; the newest stay.
        let first = l.sender(None, Some(IpAddr::from([192, 0, 2, 1])));
        let last = l.sender(None, Some(IpAddr::from([192, 0, 2, 5])));
        l.record(&last, 1, secs(5));
        assert!(l.check_mail(&last, secs(5)).is_some());
        assert_eq!(l.check_mail(&first, secs(5)), None);
        let u = l.sender(Some("carol"), None);
        l.record(&u, 10, secs(5));
        // A restart reads what was saved: still over the limits.
        let text = l.save(secs(6));
        let again = limiter(l.config.clone());
        assert!(again.apply(&text, secs(7)) >= 2, "{text}");
        assert!(again.check_mail(&last, secs(7)).is_some());
        assert!(again.check_rcpt(&u, 0, secs(7)).is_some());
        // Damaged lines are skipped.
        let bad = "user\naddr nonsense 1 1 1\nuser x NaN 1 1\nuser y 1 1\n\u{0}\nuser z 1 inf 2\n";
        assert_eq!(again.apply(bad, secs(7)), 0);
        // Drained buckets are not saved.
        assert_eq!(again.save(secs(7 + 4 * 3600)), "");
    }

    #[test]
    fn lines_of_two_processes_add_up_in_one_table() {
        let config = RateLimitConfig {
            messages_per_hour_per_user: 3,
            recipients_per_hour_per_address: 10,
            ..Default::default()
        };
        // Two processes record; a third reads both journals' lines in their order.
        let (one, two, reader) = (
            limiter(config.clone()),
            limiter(config.clone()),
            limiter(config),
        );
        let ip = Some("192.0.2.7".parse().unwrap());
        let s = one.sender(Some("alice"), ip);
        let mut journal = one.record_lines(&s, 4, secs(0));
        journal += &two.record_lines(&s, 4, secs(1));
        assert_eq!(journal.lines().count(), 4, "{journal}");
        assert_eq!(reader.apply(&journal, secs(1)), 4);
        // Two messages counted: one more fits, then none.
        assert_eq!(reader.check_mail(&s, secs(1)), None);
        reader.apply(&two.record_lines(&s, 1, secs(2)), secs(2));
        assert!(reader.check_mail(&s, secs(2)).is_some());
        // 9 recipients from the address: one more, not two.
        assert_eq!(reader.check_rcpt(&s, 0, secs(2)), None);
        assert!(reader.check_rcpt(&s, 1, secs(2)).is_some());
        // A line dated before the bucket neither drains it backwards nor dates it back.
        reader.apply(&one.record_lines(&s, 0, secs(0)), secs(3));
        let saved = reader.save(secs(3));
        let again = limiter(reader.config.clone());
        again.apply(&saved, secs(3));
        assert_eq!(again.save(secs(3)), saved);
        assert!(again.check_mail(&s, secs(3)).is_some());
    }

    #[test]
    fn any_login_keeps_its_bucket_as_text() {
        let l = limiter(RateLimitConfig {
            messages_per_hour_per_user: 1,
            ..Default::default()
        });
        for name in ["a b", "tab\there", "100%", "ü ü", "line\nbreak"] {
            let s = l.sender(Some(name), None);
            let text = l.record_lines(&s, 1, secs(0));
            assert_eq!(text.lines().count(), 1, "{text:?}");
            let other = limiter(l.config.clone());
            assert_eq!(other.apply(&text, secs(0)), 1, "{text:?}");
            assert!(other.check_mail(&s, secs(0)).is_some(), "{name:?}");
        }
        assert_eq!(unescape("%4"), None);
        assert_eq!(unescape("%+1"), None);
        assert_eq!(unescape("%C3"), None);
        assert_eq!(unescape("%C3%BC").as_deref(), Some("ü"));
    }

    #[test]
    fn off_by_default_and_roles() {
        let l = limiter(RateLimitConfig::default());
        assert!(!l.applies(Role::Submission));
        let l = limiter(RateLimitConfig {
            messages_per_hour_per_user: 1,
            ..Default::default()
        });
        assert!(l.applies(Role::Submission) && l.applies(Role::Submissions));
        assert!(!l.applies(Role::Smtp));
        assert!(Limiter::new(
            &RateLimitConfig {
                exceptions: vec!["nonsense".into()],
                ..Default::default()
            },
            &[]
        )
        .is_err());
    }
}
