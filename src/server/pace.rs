//! Clocks for session drivers: a deadline that moves only when the session makes progress, and
//! a minimum-rate meter for message content. The protocol state machines stay free of clocks
//! (they count progress); the drivers own an instance of these and ask the machine for the
//! goodbye reply when one runs out. Both take `now` as an argument so they are tested without
//! waiting.
//!
//! Why: a per-read idle timeout alone lets a client that sends a NOOP (or one byte of DATA)
//! every few seconds hold its connection slot forever ("slowloris").

use std::time::{Duration, Instant};

/// A deadline restarted whenever the session's progress count grows (SMTP: a transaction
/// completed; POP3: a login or a message retrieved).
#[derive(Debug, Clone)]
pub struct ProgressDeadline {
    span: Duration,
    until: Instant,
    seen: u64,
}

impl ProgressDeadline {
    /// A deadline `span` from `now`, for a session whose progress count is 0.
    pub fn new(span: Duration, now: Instant) -> ProgressDeadline {
        ProgressDeadline {
            span,
            until: now + span,
            seen: 0,
        }
    }

    /// Takes the session's current progress count; when it grew, the deadline restarts.
    pub fn update(&mut self, progress: u64, now: Instant) {
        if progress != self.seen {
            self.seen = progress;
            self.until = now + self.span;
        }
    }

    /// Time left; zero once the deadline has passed.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.until.saturating_duration_since(now)
    }

    /// Whether the deadline has passed.
    pub fn expired(&self, now: Instant) -> bool {
        self.remaining(now).is_zero()
    }
}

/// Checks that content arrives at `min_rate` octets per second at least, averaged over
/// windows of `window`: the bytes of each window are counted and compared when it ends, so
/// the first window is the grace for a slow start.
#[derive(Debug, Clone)]
pub struct RateMeter {
    min_rate: u64,
    window: Duration,
    /// Start of the current window and the octets seen in it, while content is arriving.
    current: Option<(Instant, u64)>,
}

impl RateMeter {
    /// A meter requiring `min_rate` octets per second (0: never complains) per `window`.
    pub fn new(min_rate: u64, window: Duration) -> RateMeter {
        RateMeter {
            min_rate,
            window: window.max(Duration::from_secs(1)),
            current: None,
        }
    }

    /// Content starts (or goes on) arriving: opens a window unless one is open.
    pub fn start(&mut self, now: Instant) {
        if self.current.is_none() && self.min_rate > 0 {
            self.current = Some((now, 0));
        }
    }

    /// Content is over (end of DATA, between BDAT chunks): nothing is measured until the next
    /// [`start`](Self::start).
    pub fn stop(&mut self) {
        self.current = None;
    }

    /// Counts `n` octets of content.
    pub fn add(&mut self, n: usize) {
        if let Some((_, bytes)) = self.current.as_mut() {
            *bytes = bytes.saturating_add(n as u64);
        }
    }

    /// `false` when a window has ended with fewer octets than the rate asks for; a window that
    /// ended in time starts the next one.
    pub fn check(&mut self, now: Instant) -> bool {
        let Some((start, bytes)) = self.current else {
            return true;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < self.window {
            return true;
        }
        let wanted = self.min_rate.saturating_mul(self.window.as_secs());
        if bytes < wanted {
            return false;
        }
        self.current = Some((now, 0));
        true
    }

    /// Time until the current window ends (when the next [`check`](Self::check) is due), if
    /// content is being measured.
    pub fn until_check(&self, now: Instant) -> Option<Duration> {
        self.current
            .map(|(start, _)| (start + self.window).saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_moves_only_with_progress() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut d = ProgressDeadline::new(s(10), t0);
        d.update(0, t0 + s(5));
        assert_eq!(d.remaining(t0 + s(5)), s(5));
        assert!(d.expired(t0 + s(10)));
        d.update(1, t0 + s(9));
        assert!(!d.expired(t0 + s(18)));
        assert!(d.expired(t0 + s(19)));
    }

    #[test]
    fn rate_is_checked_per_window_after_the_first() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut m = RateMeter::new(100, s(10));
        assert!(m.check(t0));
        assert_eq!(m.until_check(t0), None);
        m.start(t0);
        m.add(10);
        // Inside the first window nothing is judged (the grace).
        assert!(m.check(t0 + s(9)));
        assert_eq!(m.until_check(t0 + s(4)), Some(s(6)));
        m.add(990);
        assert!(m.check(t0 + s(10)));
        // The next window starts over: 999 octets in 10 s is below 100/s.
        m.add(999);
        m.start(t0 + s(15));
        assert!(!m.check(t0 + s(20)));
        m.stop();
        assert!(m.check(t0 + s(100)));
        let mut off = RateMeter::new(0, s(10));
        off.start(t0);
        assert!(off.check(t0 + s(1000)));
    }
}
