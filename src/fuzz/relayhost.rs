//! Fuzz the `relayhost = "..."` parser of mrelayd and msend's smarthost routes: any string
//! gives a host and a non-zero port or an error, never a panic.

use crate::outbound::route::Relayhost;

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(r) = Relayhost::parse(&text) {
        assert!(!r.host.is_empty());
        assert!(r.port > 0);
    }
}
