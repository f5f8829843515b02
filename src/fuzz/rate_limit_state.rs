//! The `rate_limit_state` fuzz target: the rate-limit journal every mrelayd process reads
//! (`relay::rate_limit`, `relay::rate_journal`, `QUEUE_DIR/rate-limits`) on any text. It must never panic; what
//! is read and saved again reads back to the same table (the lines of two saves at one time
//! are the same), and the limits can be asked about any key afterwards.

use std::time::Duration;

use crate::relay::rate_limit::{Limiter, RateLimitConfig};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = RateLimitConfig {
        messages_per_hour_per_user: 10,
        recipients_per_hour_per_user: 50,
        messages_per_hour_per_address: 20,
        recipients_per_hour_per_address: 100,
        max_tracked: 64,
        ..Default::default()
    };
    let now = Duration::from_secs(1_800_000_000);
    let domains = ["example.test".to_string()];
    let sorted = |s: String| {
        let mut v: Vec<String> = s.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let Ok(first) = Limiter::new(&config, &domains) else {
        panic!("the config is valid");
    };
    let n = first.apply(text, now);
    assert!(n <= text.lines().count());
    let saved = first.save(now);
    let Ok(second) = Limiter::new(&config, &domains) else {
        panic!("the config is valid");
    };
    assert_eq!(
        second.apply(&saved, now),
        saved.lines().count(),
        "{saved:?}"
    );
    assert_eq!(sorted(second.save(now)), sorted(saved.clone()));
    for line in text.lines().take(8) {
        let name = line.split(' ').nth(1).unwrap_or("");
        let sender = second.sender(Some(name), name.parse().ok());
        let _ = second.check_mail(&sender, now);
        let _ = second.check_rcpt(&sender, usize::MAX, now);
        second.record(&sender, usize::MAX, now);
    }
}
