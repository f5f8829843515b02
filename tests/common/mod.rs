//! Shared helpers for the integration tests: the real peers started by `tests/run`, the built
//! binaries, and scratch directories. Every test binary includes this with `mod common;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The peers' environment (`PEER_*` from `$MAILKIT_PEERS_ENV`, written by tests/peers/start.sh).
/// Panics (fails the test) when the peers are not running: a missing peer is a failure, not a skip.
pub fn peers() -> HashMap<String, String> {
    let path = std::env::var("MAILKIT_PEERS_ENV").unwrap_or_else(|_| {
        panic!("MAILKIT_PEERS_ENV is not set: run the tests with tests/run, which starts the real peers")
    });
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read peers env {path}: {e}"));
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("export ") else {
            continue;
        };
        let Some((key, value)) = rest.split_once('=') else {
            continue;
        };
        let value = value.split(" #").next().unwrap_or("").trim();
        let value = value.trim_matches('"').trim_matches('\'');
        vars.insert(key.to_string(), value.to_string());
    }
    vars
}

/// One peer variable, e.g. `peer("PEER_IMAP_PORT")`.
pub fn peer(name: &str) -> String {
    peers()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} missing from the peers env"))
}

/// Path of one of our built binaries (`msend`, `mdeliver`, ...).
pub fn bin(name: &str) -> PathBuf {
    // Integration tests live next to the binaries in target/<profile>/deps.
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(p.exists(), "binary {} not built", p.display());
    p
}

/// A scratch directory under /tmp, world-searchable (0755) so peers running as other users
/// (dovecot, nobody) can reach what tests put there. Removed on drop.
pub fn scratch() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mk")
        .tempdir_in("/tmp")
        .expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Runs `cmd` with `input` on stdin and returns its output.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    out
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough on a quiet loopback).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
