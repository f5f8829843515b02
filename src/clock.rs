//! The one clock: Unix time now, file times from `stat`, and the RFC 5322 date every header and
//! report writes. A leaf, so the queue, Maildir names, DSNs, msend and the POP3 greeting read
//! the time one way (a clock before 1970 reads as the epoch instead of failing).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mail_builder::headers::date::Date;

/// Latest date written (9999-12-31T23:59:59Z): later timestamps are clamped, since RFC 5322
/// years have four digits (§3.3).
pub const LATEST_DATE: u64 = 253_402_300_799;

/// Time since the Unix epoch (zero if the system clock is set before it).
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Whole seconds since the Unix epoch.
pub fn now() -> u64 {
    since_epoch().as_secs()
}

/// The instant `secs`.`nanos` after (or, for negative `secs`, before) the epoch, as `stat`
/// reports file times.
pub fn from_unix(secs: i64, nanos: u32) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// `secs` as the date mail-builder writes, clamped to [`LATEST_DATE`].
pub fn date(secs: u64) -> Date {
    Date::new(secs.min(LATEST_DATE) as i64)
}

/// RFC 5322 §3.3 date-time in UTC (`Thu, 1 Jan 1970 00:00:00 +0000`); RFC 3464 §2.2.5 uses it
/// for every DSN date field, mrelayd for its Received header and `mrelayd queue show`.
pub fn rfc5322_date(secs: u64) -> String {
    date(secs).to_rfc822()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_clamped_to_four_digit_years() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 +0000");
    }

    #[test]
    fn file_times_before_the_epoch() {
        assert_eq!(from_unix(-5, 0), UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(from_unix(5, 7), UNIX_EPOCH + Duration::new(5, 7));
    }
}
