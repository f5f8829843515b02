//! Shared helpers for the integration tests: the real peers started by `tests/run`, the built
//! binaries, and scratch directories. Every test binary includes this with `mod common;`.
#![allow(dead_code)]

pub mod raw;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// The SHA-256 of the peers' server key as OpenSSL computes it (the pipeline the docs give
/// users for `--tls-fingerprint`): lowercase hex.
pub fn peer_key_sha256() -> String {
    let cert = peer("PEER_CERT_FILE");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in '{cert}' | openssl pkey -pubin -outform der | sha256sum"
        ))
        .output()
        .expect("running openssl");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.split_whitespace().next().unwrap_or("").to_string();
    assert_eq!(hex.len(), 64, "{text}");
    hex
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

/// uid and gid of `nobody`/`nogroup` (Debian), the mail user every test daemon runs as.
pub const NOBODY: u32 = 65534;

/// The `[run_as]` block every test daemon gets: the tests run as root (CI does) and mrelayd and
/// mpopd refuse to serve as root without one. Append it at the top level of a config (after the
/// last section is fine: it opens its own table); [`with_run_as`] does that once.
pub const RUN_AS: &str = "\n[run_as]\nuser = \"nobody\"\n";

/// `config` with [`RUN_AS`] appended unless it already names a `[run_as]` user.
pub fn with_run_as(config: &str) -> String {
    if config.contains("[run_as]") {
        config.to_string()
    } else {
        format!("{config}{RUN_AS}")
    }
}

/// Hands `path` and everything below it to nobody (without following symlinks), so a daemon
/// running as [`RUN_AS`] can write its queue, Maildirs and state there and read what the test
/// put there as root. Call it after writing the files and right before starting the daemon
/// (and again after the test adds files the daemon must change, e.g. a delivered message).
pub fn give_to_nobody(path: &Path) {
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    let meta = std::fs::symlink_metadata(path).expect("stat");
    if meta.is_dir() {
        for e in std::fs::read_dir(path).expect("read_dir").flatten() {
            give_to_nobody(&e.path());
        }
    }
}

/// Runs swaks (15 s timeout, informational lines hidden) with `args`: whether it succeeded,
/// and its stdout and stderr.
pub fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks")
        .args(["--timeout", "15", "--hide-informational"])
        .args(args)
        .output()
        .unwrap();
    status_and_text(&out)
}

/// Whether a finished command succeeded, and its stdout followed by its stderr.
pub fn status_and_text(out: &Output) -> (bool, String) {
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Longest a child run by [`run_with_input`] may take before it is killed and the test fails.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` with `input` on stdin and returns its output; kills it and fails the test after
/// [`CHILD_TIMEOUT`], so no test hangs on a stuck child.
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
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish in {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Longest a daemon (or a peer a test starts) may take to say where it listens.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a daemon listens, by role, as it printed it (`<prog>: listening on ADDR (ROLE)`, one
/// line per listener: `server::serve`). Tests bind port 0 and read the addresses from here, so
/// parallel tests never race for a port.
#[derive(Debug, Clone, Default)]
pub struct Listening(Vec<(String, SocketAddr)>);

impl Listening {
    /// The address of the listener with `role` (`smtp`, `submission`, `pop3`, `pop3s`, ...).
    pub fn addr(&self, role: &str) -> SocketAddr {
        self.0
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener with role {role} in {self:?}"))
    }

    /// The port of the listener with `role`.
    pub fn port(&self, role: &str) -> u16 {
        self.addr(role).port()
    }

    /// Whether a listener with `role` was printed.
    pub fn has(&self, role: &str) -> bool {
        self.0.iter().any(|(r, _)| r == role)
    }
}

/// `(role, address)` from one `<prog>: listening on ADDR (ROLE)` line; `None` for any other
/// line, including the error `listening on ADDR (ROLE): Address already in use ...`.
pub fn listening_line(line: &str) -> Option<(String, SocketAddr)> {
    let (_, rest) = line.split_once(": listening on ")?;
    let (addr, role) = rest.trim_end().split_once(" (")?;
    let role = role.strip_suffix(')')?;
    if role.is_empty()
        || !role
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return None;
    }
    Some((role.to_string(), addr.parse().ok()?))
}

/// The length of `log` now (0 when it does not exist yet). A daemon restarted onto the same log
/// appends to it: pass this, taken before the start, to [`wait_listening`] so only the new
/// run's lines count.
pub fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// `log` from byte `from` on (lossy UTF-8; empty when it cannot be read).
pub fn log_since(log: &Path, from: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
    String::from_utf8_lossy(&bytes[from..]).into_owned()
}

/// Waits, at most [`START_TIMEOUT`], until `child` has printed a listening line for each of
/// `roles` into `log` after byte `from` (see [`log_len`]). `Err` with what it logged when it
/// exits first or the time is up (the caller decides: [`wait_listening`] fails the test, a
/// retry on [`port_taken`] picks other ports).
pub fn try_wait_listening(
    child: &mut Child,
    log: &Path,
    from: u64,
    roles: &[&str],
) -> Result<Listening, String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = log_since(log, from);
        let seen = Listening(text.lines().filter_map(listening_line).collect());
        if roles.iter().all(|r| seen.has(r)) {
            return Ok(seen);
        }
        if let Ok(Some(status)) = child.try_wait() {
            // It may have printed its last lines just before exiting.
            let text = log_since(log, from);
            return Err(format!(
                "exited ({status}) before listening on {roles:?}:\n{text}"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "did not print \"listening on ADDR (ROLE)\" for {roles:?} within {START_TIMEOUT:?}:\n{text}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`try_wait_listening`], failing the test with the daemon's log when it does not listen.
pub fn wait_listening(child: &mut Child, log: &Path, from: u64, roles: &[&str]) -> Listening {
    try_wait_listening(child, log, from, roles).unwrap_or_else(|e| panic!("{} {e}", log.display()))
}

/// Whether a start failed because its port was taken (`EADDRINUSE` in what it printed).
pub fn port_taken(output: &str) -> bool {
    output.contains("Address already in use") || output.contains("address already in use")
}

/// For what must know its ports before it starts: peers that cannot bind port 0 and say where
/// they listen (dnsmasq, smtp-sink, systemd-socket-activate), and configs that name a daemon's
/// own port (mail loop tests). `start` gets `N` distinct ports no socket held a moment ago and
/// returns `None` when one of them was taken meanwhile (see [`port_taken`]); it is then called
/// again with others, so the race with a parallel test costs a retry, not a failure.
pub fn with_unused_ports<const N: usize, T>(mut start: impl FnMut([u16; N]) -> Option<T>) -> T {
    const ATTEMPTS: usize = 10;
    for _ in 0..ATTEMPTS {
        // Held together, so the N ports differ; released just before `start` binds them.
        let held: Vec<std::net::TcpListener> = (0..N)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
            .collect();
        let mut ports = [0u16; N];
        for (p, l) in ports.iter_mut().zip(&held) {
            *p = l.local_addr().expect("local_addr").port();
        }
        drop(held);
        if let Some(t) = start(ports) {
            return t;
        }
    }
    panic!("{ATTEMPTS} sets of ports were taken before they could be bound");
}

/// A TCP port on 127.0.0.1 that refuses connections: 1 (tcpmux), privileged and never bound by
/// the tests or the peers. Checked here, so a test relying on "refused" fails clearly otherwise.
pub fn refused_port() -> u16 {
    const PORT: u16 = 1;
    match std::net::TcpStream::connect(("127.0.0.1", PORT)) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => PORT,
        other => panic!("127.0.0.1:{PORT} should refuse connections: {other:?}"),
    }
}

/// A private dnsmasq serving one zone on 127.0.0.1:`port` (UDP and TCP); killed on drop.
/// Used by the tests that need DNS answers they control (MX walks, null MX, NXDOMAIN).
pub struct Dns {
    child: Child,
    /// The port dnsmasq answers on (127.0.0.1).
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dns {
    /// Starts dnsmasq with `zone` (dnsmasq `mx-host=`/`host-record=`/`txt-record=` lines);
    /// everything else under `.test` is NXDOMAIN. Ready once `ready.test` (added here) answers.
    /// No pid file: parallel tests' dnsmasqs would race for the one in /var/run.
    pub fn start(zone: &str) -> Dns {
        let dir = scratch();
        let conf = dir.path().join("dnsmasq.conf");
        // dnsmasq cannot bind port 0 and tell: a port taken between the pick and dnsmasq's
        // bind (UDP or TCP) makes it exit, and another port is tried.
        let (child, port) = with_unused_ports(|[port]| {
            if UdpSocket::bind(("127.0.0.1", port)).is_err() {
                return None;
            }
            std::fs::write(
                &conf,
                format!(
                    "port={port}\npid-file=\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
                     no-poll\nno-negcache\nlocal=/test/\nhost-record=ready.test,127.0.0.1\n{zone}\n"
                ),
            )
            .unwrap();
            let mut child = Command::new("dnsmasq")
                .arg("-k")
                .arg("-C")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("dnsmasq (dnsmasq-base) must be installed");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // e.g. the port was taken meanwhile: see below
                }
                let answered = Command::new("dig")
                    .args(["+time=1", "+tries=1", "+short", "@127.0.0.1", "-p"])
                    .arg(port.to_string())
                    .args(["ready.test", "A"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "127.0.0.1")
                    .unwrap_or(false);
                if answered {
                    return Some((child, port));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            let mut last_err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut last_err);
            }
            // Mostly a port taken meanwhile (port_taken); any other failure is tried again
            // too, as it always was, and said here in case all attempts fail.
            eprintln!("dnsmasq on port {port} did not start, trying another port: {last_err}");
            None
        });
        Dns {
            child,
            port,
            _dir: dir,
        }
    }

    /// `127.0.0.1:PORT`, the form our `resolver` settings and `--resolver` options take.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Spawns the daemon `cmd` (its listeners on port 0) with stdin at EOF, stdout discarded and
/// stderr appended to `log` (so a restart keeps the earlier log), and waits for it to print
/// the listeners with `roles` ([`try_wait_listening`]). `Err` with its log when it does not
/// listen; it is killed then, and on drop of the [`KillOnDrop`].
pub fn try_start_daemon(
    cmd: &mut Command,
    log: &Path,
    roles: &[&str],
) -> Result<(KillOnDrop, Listening), String> {
    let from = log_len(log);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
    let mut child = KillOnDrop(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
    );
    let listening =
        try_wait_listening(&mut child, log, from, roles).map_err(|e| format!("{cmd:?} {e}"))?;
    Ok((child, listening))
}

/// [`try_start_daemon`], failing the test with the daemon's log when it does not listen.
pub fn start_daemon(cmd: &mut Command, log: &Path, roles: &[&str]) -> (KillOnDrop, Listening) {
    try_start_daemon(cmd, log, roles).unwrap_or_else(|e| panic!("{e}"))
}

/// A `mimapd serve` on the peers' Maildirs: a passwd-file of `users` (password `password`),
/// `mail_location` at `PEER_MAIL_DIR/%u` (the Maildirs the peers' Dovecot serves), the peers'
/// certificate, a plain/STARTTLS and an implicit-TLS listener on port 0. Returns the child,
/// its listeners (roles `imap` and `imaps`), its directory (keep it alive) and its log.
pub fn start_mimapd_on_peer_maildirs(
    users: &[&str],
) -> (KillOnDrop, Listening, tempfile::TempDir, PathBuf) {
    let dir = scratch();
    let d = dir.path();
    let passwd: String = users
        .iter()
        .map(|u| format!("{u}:{{PLAIN}}password::::::\n"))
        .collect();
    std::fs::write(d.join("passwd"), passwd).unwrap();
    let text = format!(
        r#"hostname = "localhost"
[tls]
cert = "{cert}"
key = "{key}"
[users]
passwd_file = "{d}/passwd"
mail_location = "{mail}/%u"
[mimapd]
listen = [ {{ address = "127.0.0.1:0" }}, {{ address = "127.0.0.1:0", role = "implicit-tls" }} ]
"#,
        cert = peer("PEER_CERT_FILE"),
        key = peer("PEER_KEY_FILE"),
        d = d.display(),
        mail = peer("PEER_MAIL_DIR"),
    );
    let config = d.join("mailkit.toml");
    std::fs::write(&config, with_run_as(&text)).unwrap();
    give_to_nobody(d);
    let log = d.join("mimapd.log");
    let (child, l) = start_daemon(
        Command::new(bin("mimapd"))
            .arg("-c")
            .arg(&config)
            .arg("serve"),
        &log,
        &["imap", "imaps"],
    );
    (child, l, dir, log)
}

/// `mrelayd -c CONFIG serve`. The config (written through [`with_run_as`]) makes it run as
/// nobody, so the config's directory, where the tests keep its state, queue and Maildirs, is
/// handed to nobody first ([`give_to_nobody`]).
pub fn mrelayd_serve(config: &Path) -> Command {
    if let Some(dir) = config.parent() {
        give_to_nobody(dir);
    }
    let mut cmd = Command::new(bin("mrelayd"));
    cmd.arg("-c").arg(config).arg("serve");
    cmd
}

/// Starts `mrelayd -c CONFIG serve` ([`mrelayd_serve`]) with its stderr appended to `log` and
/// waits for its listeners with `roles` ([`start_daemon`]).
pub fn start_mrelayd(config: &Path, log: &Path, roles: &[&str]) -> (KillOnDrop, Listening) {
    start_daemon(&mut mrelayd_serve(config), log, roles)
}

/// Runs `mrelayd -c CONFIG args...` (the queue commands: `queue`, `flush`, ...) to completion.
pub fn mrelayd_cli(config: &Path, args: &[&str]) -> Output {
    Command::new(bin("mrelayd"))
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run mrelayd {args:?}: {e}"))
}

/// A child process that is killed (and reaped) when dropped, so a daemon a test started never
/// outlives a failed assertion. Derefs to the [`Child`] for `id()`, `try_wait()`, pipes...
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A system user (group 100, no home, no shell) made with useradd for a test (tests run as
/// root), removed on drop, also when the test fails. Each test uses its own name and uid:
/// they run in parallel.
pub struct SystemUser(&'static str);

impl SystemUser {
    /// Adds user `name` with `uid`, replacing a leftover of an earlier run.
    pub fn add(name: &'static str, uid: u32) -> SystemUser {
        let _ = Command::new("userdel")
            .arg(name)
            .stderr(Stdio::null())
            .status();
        let st = Command::new("useradd")
            .args([
                "-u",
                &uid.to_string(),
                "-M",
                "-N",
                "-g",
                "100",
                "-s",
                "/usr/sbin/nologin",
                name,
            ])
            .status()
            .unwrap();
        assert!(st.success(), "useradd");
        SystemUser(name)
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(self.0).status();
    }
}

/// A system group made with groupadd for a test, removed on drop.
pub struct SystemGroup(&'static str);

impl SystemGroup {
    /// Adds group `name` with `gid`, replacing a leftover of an earlier run.
    pub fn add(name: &'static str, gid: u32) -> SystemGroup {
        let _ = Command::new("groupdel")
            .arg(name)
            .stderr(Stdio::null())
            .status();
        let st = Command::new("groupadd")
            .args(["-g", &gid.to_string(), name])
            .status()
            .unwrap();
        assert!(st.success(), "groupadd");
        SystemGroup(name)
    }
}

impl Drop for SystemGroup {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(self.0).status();
    }
}

/// `mrelayd quickstart DEMO --no-run`: the demo directory (config, self-signed certificate and
/// its `ca.pem`, user `demo` and `demo-password`) without starting it. Returns the config's path.
pub fn quickstart_no_run(demo: &Path) -> PathBuf {
    let out = Command::new(bin("mrelayd"))
        .arg("quickstart")
        .arg(demo)
        .arg("--no-run")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    demo.join("mailkit.toml")
}

/// Replaces the quickstart config's fixed ports 2525/2587/1110 by 0, so tests run in parallel.
pub fn quickstart_config_on_port_zero(config: &Path) {
    let mut text = std::fs::read_to_string(config).unwrap();
    for port in ["2525", "2587", "1110", "1143", "1993"] {
        let fixed = format!("127.0.0.1:{port}");
        assert!(text.contains(&fixed), "{text}");
        text = text.replace(&fixed, "127.0.0.1:0");
    }
    std::fs::write(config, text).unwrap();
}

/// [`quickstart_no_run`] with its listeners on port 0 ([`quickstart_config_on_port_zero`]).
/// Returns the config's path.
pub fn quickstart_on_port_zero(demo: &Path) -> PathBuf {
    let config = quickstart_no_run(demo);
    quickstart_config_on_port_zero(&config);
    config
}

/// The capture peer's stored message containing `token`, with its envelope line.
pub fn captured(dir: &Path, token: &str) -> Option<(Vec<u8>, serde_json::Value)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("envelopes.jsonl")) {
            for line in text.lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let Some(file) = v["file"].as_str() else {
                    continue;
                };
                if let Ok(bytes) = std::fs::read(dir.join(file)) {
                    if String::from_utf8_lossy(&bytes).contains(token) {
                        return Some((bytes, v));
                    }
                }
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The capture peer's directory (aiosmtpd, tests/peers/lib/capture.py).
pub fn capture_dir() -> PathBuf {
    PathBuf::from(peer("PEER_CAPTURE_DIR"))
}

/// A token unique to this test run, to find a captured message by.
pub fn token() -> String {
    format!("tok{}x{}", std::process::id(), rand_u64() % 1_000_000_007)
}

/// A random number (std's hasher seed and the clock).
pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// The capture peer's stored messages containing `token`, with their envelope lines, as they
/// are now (no waiting: for checking that nothing more arrived).
pub fn captured_now(dir: &Path, token: &str) -> Vec<(Vec<u8>, serde_json::Value)> {
    let text = std::fs::read_to_string(dir.join("envelopes.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let bytes = std::fs::read(dir.join(v["file"].as_str()?)).ok()?;
            String::from_utf8_lossy(&bytes)
                .contains(token)
                .then_some((bytes, v))
        })
        .collect()
}

/// How many message files a Maildir has in `new/` and `cur/` (0 for a missing directory).
pub fn maildir_count(md: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(md.join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum()
}

/// The messages in `maildir` (its new/ and cur/; none while they do not exist), waiting until
/// there are `n`, at most 30 s (`n` 0 does not wait).
pub fn wait_maildir(maildir: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<String> = ["new", "cur"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(maildir.join(sub)).into_iter().flatten())
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect();
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `mrelayd dkim keygen DOMAIN SELECTOR --algorithm ALGO -o KEY` (a config with only
/// `state_dir = DIR`) and returns the TXT record value it prints for
/// `SELECTOR._domainkey.DOMAIN.` (its quoted parts joined). Fails the test if keygen fails.
pub fn dkim_keygen(dir: &Path, domain: &str, selector: &str, algo: &str, key: &Path) -> String {
    let config = dir.join("keygen.toml");
    std::fs::write(&config, format!("state_dir = \"{}\"\n", dir.display())).unwrap();
    let out = mrelayd_cli(
        &config,
        &[
            "dkim",
            "keygen",
            domain,
            selector,
            "--algorithm",
            algo,
            "-o",
            key.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "keygen: {text} {out:?}");
    // `SEL._domainkey.DOMAIN. IN TXT "part" "part"`: the record is the parts joined.
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{selector}._domainkey.{domain}. IN TXT ")))
        .unwrap_or_else(|| panic!("no TXT line in {text}"));
    let quoted = line.split_once(" IN TXT ").unwrap().1;
    quoted.split('"').skip(1).step_by(2).collect()
}

/// dnsmasq's `txt-record=NAME,"part","part"` for a record value (255-octet strings, RFC 1035
/// §3.3.14), for [`Dns::start`]'s zone.
pub fn txt_line(name: &str, value: &str) -> String {
    let parts: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!("txt-record={name},{}", parts.join(","))
}

/// The Authentication-Results: field of the test relays' authserv-id (mx.example.test) in a
/// delivered message's header, unfolded.
pub fn auth_results(message: &str) -> String {
    let message = message.replace("\r\n", "\n");
    let header = message.split("\n\n").next().unwrap_or(&message);
    let unfolded = header.replace("\n\t", " ").replace("\n ", " ");
    unfolded
        .lines()
        .find(|l| l.starts_with("Authentication-Results: mx.example.test;"))
        .unwrap_or_else(|| panic!("no Authentication-Results of ours in {message}"))
        .to_string()
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `limit`; `None` on timeout.
#[allow(dead_code)]
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP port nobody uses on any address (bound on the wildcard address, then released), so
/// that a test's own loopback addresses (127.X.T.N) can all bind it.
#[allow(dead_code)]
pub fn port_free_everywhere() -> u16 {
    for _ in 0..50 {
        let port = std::net::TcpListener::bind("0.0.0.0:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}
