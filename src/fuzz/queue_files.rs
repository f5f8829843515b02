//! The `queue_files` fuzz target: the readers of the queue's own files (`queue`), which a
//! crash, a full disk or an admin's editor may have left in any state: the envelope line at the
//! head of `msg/ID` and the `state/ID` delivery status. Parsing must never panic, and what
//! parses must be written back as one line (the envelope line ends at the first LF) that parses
//! to the same value.

use crate::queue::{Envelope, Status};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    if let Ok(env) = serde_json::from_slice::<Envelope>(data) {
        let line = serde_json::to_vec(&env).unwrap_or_default();
        assert!(!line.contains(&b'\n'), "envelope line with a line break");
        let again: Envelope = serde_json::from_slice(&line).unwrap_or_default();
        assert_eq!(again, env);
    }
    if let Ok(status) = serde_json::from_slice::<Status>(data) {
        let bytes = serde_json::to_vec(&status).unwrap_or_default();
        match serde_json::from_slice::<Status>(&bytes) {
            Ok(again) => assert_eq!(again, status),
            Err(e) => panic!("state file did not re-read: {e}"),
        }
        let _ = status.finished();
    }
}
