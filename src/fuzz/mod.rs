//! The bodies of the fuzz targets in `fuzz/fuzz_targets/` (run with `cargo fuzz run TARGET
//! --sanitizer none`), one module per target, each a `run(&[u8])` that panics only on a real
//! bug. They live in the library so they compile with the crate and cannot rot, and so
//! `tests/fuzz_regressions.rs` replays every input in `fuzz/regressions/<target>/` through the
//! same body in an ordinary `cargo test`.

pub mod aliases;
pub mod authres;
pub mod config;
pub mod dane;
pub mod dsn_build;
pub mod filter_headers;
pub mod imap_client;
pub mod imap_command;
pub mod imap_list;
pub mod imap_message;
pub mod imap_relay;
pub mod mda_headers;
pub mod mdig;
pub mod mdig_auth;
pub mod msend_headers;
pub mod mta_sts_http;
pub mod mta_sts_policy;
pub mod passwd;
pub mod pop3;
pub mod queue_files;
pub mod rate_limit_state;
pub mod relayhost;
pub mod server_lines;
pub mod smtp_client;
pub mod smtp_command;
pub mod smtp_reply;
pub mod smtp_server;
pub mod srs;
pub mod uidlist;

/// A fuzz body: any bytes in, a panic only on a bug.
pub type Body = fn(&[u8]);

/// Every fuzz target by name (the `[[bin]]` names in `fuzz/Cargo.toml`) with its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("aliases", aliases::run),
    ("authres", authres::run),
    ("config", config::run),
    ("dane", dane::run),
    ("dsn_build", dsn_build::run),
    ("filter_headers", filter_headers::run),
    ("imap_client", imap_client::run),
    ("imap_command", imap_command::run),
    ("imap_list", imap_list::run),
    ("imap_message", imap_message::run),
    ("imap_relay", imap_relay::run),
    ("mda_headers", mda_headers::run),
    ("mdig", mdig::run),
    ("mdig_auth", mdig_auth::run),
    ("msend_headers", msend_headers::run),
    ("mta_sts_http", mta_sts_http::run),
    ("mta_sts_policy", mta_sts_policy::run),
    ("passwd", passwd::run),
    ("pop3", pop3::run),
    ("queue_files", queue_files::run),
    ("rate_limit_state", rate_limit_state::run),
    ("relayhost", relayhost::run),
    ("server_lines", server_lines::run),
    ("smtp_client", smtp_client::run),
    ("smtp_command", smtp_command::run),
    ("smtp_reply", smtp_reply::run),
    ("smtp_server", smtp_server::run),
    ("srs", srs::run),
    ("uidlist", uidlist::run),
];

#[cfg(test)]
mod tests {
    use super::TARGETS;

    #[test]
    fn every_body_runs_on_sample_inputs() {
        let samples: [&[u8]; 6] = [
            b"",
            b"\n",
            b"\x03220 mx\r\n250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n250 ok\r\n250 ok\r\n\
              550 5.1.1 no\r\n354 go\r\n250 2.0.0 queued\r\n221 bye\r\n",
            b"postmaster: root\nteam: alice, \"|/bin/x, y\", /srv/t/ # c\n  , bob@example.org\n",
            br#"{"sender":"a@b","recipients":[{"address":"c@d"}],"time":1}"#,
            br#"{"rcpts":["Pending",{"Failed":"550"}],"attempts":1,"next_try":2,"last_error":null}"#,
        ];
        for (name, run) in TARGETS {
            for s in samples {
                let caught = std::panic::catch_unwind(|| run(s));
                assert!(caught.is_ok(), "{name} on {:?}", String::from_utf8_lossy(s));
            }
        }
    }
}
