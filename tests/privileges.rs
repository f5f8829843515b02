//! The privilege model (README "Privileges"): the daemons refuse to serve as root, the
//! quickstart started as root runs as nobody, and system users are served by child processes
//! running as that user. These tests run as root (CI does).
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every wait here is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(20);

fn assert_root() {
    assert_eq!(
        mailkit::os::euid(),
        0,
        "these tests run as root (the CI container does)"
    );
}

/// A config under which mrelayd and mpopd would serve on loopback (port 0), with `top`
/// added at the top level (e.g. a `[run_as]` block).
fn write_config(dir: &Path, top: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("passwd"), "alice:{PLAIN}password::::::\n").unwrap();
    std::fs::write(dir.join("aliases"), "postmaster: alice\n").unwrap();
    let text = format!(
        "hostname = \"mx.example.test\"\nstate_dir = \"{d}/state\"\n\
[users]\npasswd_file = \"{d}/passwd\"\nmail_location = \"{d}/mail/%n\"\ndomains = [\"example.test\"]\n\
[mrelayd]\naliases = \"{d}/aliases\"\nlisten = [ {{ address = \"127.0.0.1:0\", role = \"smtp\" }} ]\n\
[mrelayd.remote]\nrelayhost = \"[127.0.0.1]:1\"\nrelayhost_tls = \"none\"\n\
[mpopd]\nlisten = [ {{ address = \"127.0.0.1:0\" }} ]\n{top}\n",
        d = dir.display(),
    );
    let path = dir.join("mailkit.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `program -c config args...` with stdin at EOF and returns (exit code, stderr); a
/// daemon still running after [`TIMEOUT`] (it served instead of refusing) fails the test.
fn run_daemon(program: &str, config: &Path, args: &[&str]) -> (Option<i32>, String) {
    let log = config.with_extension(format!("{program}.log"));
    let mut child = common::KillOnDrop(
        Command::new(common::bin(program))
            .arg("-c")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "{program} {args:?} kept running as root: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

const DAEMONS: [(&str, &[&str]); 6] = [
    ("mrelayd", &["serve"]),
    ("mrelayd", &["inetd"]),
    ("mpopd", &["serve"]),
    ("mpopd", &["inetd"]),
    ("mimapd", &["serve"]),
    ("mimapd", &["inetd"]),
];

#[test]
fn daemons_started_as_root_without_run_as_exit_78_naming_the_key() {
    assert_root();
    let dir = common::scratch();
    let config = write_config(dir.path(), "");
    for (program, args) in DAEMONS {
        let (code, err) = run_daemon(program, &config, args);
        assert_eq!(code, Some(78), "{program} {args:?}: {err}");
        let want = format!(
            "{program}: running as root needs a [run_as] user in {} (e.g. user = \"mail\")\n",
            config.display()
        );
        assert_eq!(err, want, "{program} {args:?}");
    }
    // Nothing was created as root before the refusal.
    assert!(!dir.path().join("state").exists());
}

#[test]
fn a_run_as_user_that_is_root_is_refused_too() {
    assert_root();
    let dir = common::scratch();
    let config = write_config(dir.path(), "[run_as]\nuser = \"root\"\n");
    for (program, args) in DAEMONS {
        let (code, err) = run_daemon(program, &config, args);
        assert_eq!(code, Some(78), "{program} {args:?}: {err}");
        assert!(
            err.contains("[run_as] user \"root\"") && err.contains("is root (uid 0)"),
            "{program} {args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// The effective uid in `/proc/PID/status` (`Uid: real effective saved fs`).
fn proc_euid(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let ppid = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

fn wait_port(port: u16, what: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process group leader whose whole group (the quickstart and its mpopd) is killed on drop.
struct Group(std::process::Child);

impl std::ops::Deref for Group {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Group {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

/// The quickstart started as root prepares its directory for nobody and both daemons run as
/// nobody; Ctrl-C (SIGINT to the process group) stops it without "restarting" mpopd (issue 11).
#[test]
fn quickstart_as_root_runs_as_nobody_and_stops_cleanly_at_ctrl_c() {
    use std::os::unix::fs::MetadataExt as _;
    use std::os::unix::process::CommandExt as _;
    assert_root();
    let dir = common::scratch();
    let demo = dir.path().join("demo");
    let log = dir.path().join("quickstart.log");
    let mut child = Group(
        Command::new(common::bin("mrelayd"))
            .arg("quickstart")
            .arg(&demo)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("quickstart.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    let text = || {
        std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(dir.path().join("quickstart.err")).unwrap_or_default()
    };
    for port in [2525, 2587, 1110] {
        wait_port(port, "quickstart", &text);
    }
    assert!(
        text().contains("runs as:   nobody"),
        "the banner says who it runs as: {}",
        text()
    );
    let config = std::fs::read_to_string(demo.join("mailkit.toml")).unwrap();
    assert!(config.contains("[run_as]\nuser = \"nobody\""), "{config}");
    // mrelayd serves in the quickstart process itself; mpopd is its child. A daemon listens
    // (binds as root) a moment before it switches: wait for the switch, bounded.
    let pid = child.id();
    let pops: Vec<u32> = children_of(pid);
    assert!(!pops.is_empty(), "no mpopd child: {}", text());
    for p in std::iter::once(pid).chain(pops.iter().copied()) {
        let deadline = Instant::now() + TIMEOUT;
        while proc_euid(p) != Some(common::NOBODY) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(proc_euid(p), Some(common::NOBODY), "pid {p}: {}", text());
    }
    // The prepared directory works for nobody: a message lands in the demo Maildir as nobody's.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", 2525)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    use std::io::{Read as _, Write as _};
    s.write_all(b"EHLO t\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<demo@localhost>\r\nDATA\r\nSubject: qs\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.contains("\r\n250 2.0.0"), "{reply}");
    let new = demo.join("mail/demo/Maildir/new");
    let deadline = Instant::now() + TIMEOUT;
    let file = loop {
        if let Some(e) = std::fs::read_dir(&new).unwrap().flatten().next() {
            break e.path();
        }
        assert!(Instant::now() < deadline, "not delivered: {}", text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), common::NOBODY);
    // The demo password note stays root's.
    assert_eq!(
        std::fs::metadata(demo.join("demo-password")).unwrap().uid(),
        0
    );
    // Ctrl-C reaches the whole process group.
    let st = Command::new("kill")
        .args(["-INT", "--", &format!("-{pid}")])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "quickstart did not stop: {}",
            text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {}", text());
    let all = text();
    assert!(!all.contains("restarting"), "{all}");
    assert!(!all.contains("mpopd exited"), "{all}");
    for p in pops {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/status"))
                    .map(|s| s.contains("State:\tZ"))
                    .unwrap_or(true),
            "mpopd {p} outlived the quickstart"
        );
    }
}

/// Makes `path` and everything below it `uid`'s (group 100), mode 0700: no one else gets in.
fn give_to_user(path: &Path, uid: u32) {
    let st = Command::new("chown")
        .args(["-R", &format!("{uid}:100")])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("chmod")
        .args(["-R", "0700"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A system user (own uid/gid in the passwd-file, Maildir 0700 of its own): mrelayd, running
/// as nobody, delivers to it through a child running as that user, started by the spawner.
#[test]
fn mrelayd_delivers_to_a_system_user_as_that_user() {
    delivers_to_a_system_user("mkpriv1501", 1501, false);
}

/// The same with `-c mailkit.toml` (relative, after the subcommand) from the config's
/// directory: the spawner, started in `/`, reads the same file (issue 12, relative config
/// paths; before, it looked for `/mailkit.toml` and the delivery never happened).
#[test]
fn a_relative_config_path_reaches_the_spawner() {
    delivers_to_a_system_user("mkpriv1502", 1502, true);
}

/// Writes the system-user setup under `d`: passwd-file with `sys` (`uid`, group 100) and the
/// virtual `alice` (postmaster) plus `passwd_extra`, the config with `relay_extra` in its
/// `[mrelayd]` section, sys's Maildir; all handed to nobody. Returns the config and the Maildir.
fn system_user_setup(
    d: &Path,
    uid: u32,
    passwd_extra: &str,
    relay_extra: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::write(
        d.join("passwd"),
        format!("sys:{{PLAIN}}pw:{uid}:100::::\nalice:{{PLAIN}}pw::::::\n{passwd_extra}"),
    )
    .unwrap();
    let config = d.join("mailkit.toml");
    std::fs::write(
        &config,
        common::with_run_as(&format!(
            "hostname = \"mx.example.test\"\nstate_dir = \"{d}/state\"\n\
[users]\npasswd_file = \"{d}/passwd\"\nmail_location = \"{d}/mail/%n\"\ndomains = [\"example.test\"]\n\
[mrelayd]\ntrusted_networks = []\naliases = \"{d}/aliases\"\n{relay_extra}\
listen = [ {{ address = \"127.0.0.1:0\", role = \"smtp\" }} ]\n\
[mrelayd.remote]\nrelayhost = \"[127.0.0.1]:1\"\nrelayhost_tls = \"none\"\n",
            d = d.display()
        )),
    )
    .unwrap();
    std::fs::write(d.join("aliases"), "postmaster: alice\n").unwrap();
    let md = d.join("mail/sys");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    common::give_to_nobody(d);
    (config, md)
}

fn delivers_to_a_system_user(name: &'static str, uid: u32, relative: bool) {
    use std::os::unix::fs::MetadataExt as _;
    assert_root();
    let _user = common::SystemUser::add(name, uid);
    let dir = common::scratch();
    let d = dir.path();
    let (config, md) = system_user_setup(d, uid, "", "");
    give_to_user(&md, uid);
    let log = d.join("mrelayd.log");
    let (mut daemon, listening) = if relative {
        common::give_to_nobody(d);
        let mut cmd = Command::new(common::bin("mrelayd"));
        cmd.current_dir(d).args(["serve", "-c", "mailkit.toml"]);
        common::start_daemon(&mut cmd, &log, &["smtp"])
    } else {
        common::start_mrelayd(&config, &log, &["smtp"])
    };
    let smtp = listening.port("smtp");
    // start_mrelayd handed the whole directory to nobody: the Maildir is the user's again.
    give_to_user(&md, uid);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", smtp)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    use std::io::{Read as _, Write as _};
    s.write_all(b"EHLO t\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<sys@example.test>\r\nDATA\r\nSubject: sys\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.contains("\r\n250 2.0.0"), "{reply}");
    let deadline = Instant::now() + TIMEOUT;
    let file = loop {
        if let Some(e) = std::fs::read_dir(md.join("new")).unwrap().flatten().next() {
            break e.path();
        }
        assert!(Instant::now() < deadline, "not delivered: {}", text());
        std::thread::sleep(Duration::from_millis(50));
    };
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (uid, 100), "{}", text());
    // The daemon itself runs as nobody; its one child is the root spawner.
    let pid = daemon.id();
    assert_eq!(proc_euid(pid), Some(common::NOBODY));
    let kids = children_of(pid);
    assert_eq!(kids.len(), 1, "{kids:?}");
    assert_eq!(proc_euid(kids[0]), Some(0));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", kids[0])).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("__spawner"));
    let _ = daemon.kill();
    let _ = daemon.wait();
    // The spawner exits with the daemon.
    let deadline = Instant::now() + TIMEOUT;
    while proc_euid(kids[0]).is_some() {
        let zombie = std::fs::read_to_string(format!("/proc/{}/status", kids[0]))
            .map(|s| s.contains("State:\tZ"))
            .unwrap_or(true);
        if zombie {
            break;
        }
        assert!(Instant::now() < deadline, "the spawner outlived the daemon");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids of processes running as `uid` (effective) whose command line contains `word`.
fn processes_of(uid: u32, word: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if proc_euid(pid) == Some(uid) && String::from_utf8_lossy(&cmdline).contains(word) {
            out.push(pid);
        }
    }
    out
}

/// Runs a python3 `script` (at most 30 s) that must succeed (else the test fails with its
/// stderr and the daemon's `log`) and returns its stdout.
fn python(script: &str, log: &dyn Fn() -> String) -> String {
    let out = Command::new("/usr/bin/timeout")
        .args(["30", "/usr/bin/python3", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Reads one CRLF line from a raw POP3 socket.
fn pop_line(r: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line
}

/// A system user's POP3 session is served by a child running as that user, while mpopd runs
/// as nobody (issue 10 item 1, as Dovecot's pop3 processes): STLS and implicit TLS stay in the
/// daemon, LIST/RETR/DELE/QUIT work, what the session creates in the 0700 Maildir is the
/// user's, a second login gets [IN-USE], a virtual user is still served in process, and at
/// SIGTERM the client gets the -ERR and the child goes away.
#[test]
fn mpopd_serves_a_system_user_in_a_child_running_as_that_user() {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::os::unix::fs::MetadataExt as _;
    assert_root();
    let uid = 1502u32;
    let _user = common::SystemUser::add("mkpriv1502", uid);
    let dir = common::scratch();
    let d = dir.path();
    std::fs::write(
        d.join("passwd"),
        format!("sys:{{PLAIN}}pw:{uid}:100::::\nalice:{{PLAIN}}password::::::\n"),
    )
    .unwrap();
    let config = d.join("mailkit.toml");
    std::fs::write(
        &config,
        common::with_run_as(&format!(
            "hostname = \"localhost\"\n[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
[users]\npasswd_file = \"{d}/passwd\"\nmail_location = \"{d}/mail/%n\"\n\
[mpopd]\nlisten = [ {{ address = \"127.0.0.1:0\" }}, \
{{ address = \"127.0.0.1:0\", role = \"implicit-tls\" }} ]\n",
            cert = common::peer("PEER_CERT_FILE"),
            key = common::peer("PEER_KEY_FILE"),
            d = d.display()
        )),
    )
    .unwrap();
    let md = d.join("mail/sys");
    let alice = d.join("mail/alice");
    for m in [&md, &alice] {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(m.join(sub)).unwrap();
        }
    }
    // No ,W= in the names: the session counts sizes and writes its size cache.
    for (i, name) in ["1700000001.M1P1.test", "1700000002.M2P2.test"]
        .iter()
        .enumerate()
    {
        let body = format!("Subject: sys {i}\n\nbody {i}\n");
        std::fs::write(md.join("new").join(name), body).unwrap();
    }
    std::fs::write(
        alice.join("new/1700000003.M3P3.test"),
        "Subject: alice\n\nhi\n",
    )
    .unwrap();
    common::give_to_nobody(d);
    give_to_user(&md, uid);
    let log = d.join("mpopd.log");
    let (mut daemon, listening) = common::start_daemon(
        Command::new(common::bin("mpopd"))
            .arg("-c")
            .arg(&config)
            .arg("serve"),
        &log,
        &["pop3", "pop3s"],
    );
    let (plain, tls) = (listening.port("pop3"), listening.port("pop3s"));
    let text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Session 1 (python3 poplib over STLS) stops after LIST and RETR, logged in, until told.
    let script = format!(
        r#"import poplib, ssl, sys
ctx = ssl.create_default_context(cafile={ca:?})
p = poplib.POP3("localhost", {plain}, timeout=10)
p.stls(ctx)
p.user("sys")
print(p.pass_("pw").decode())
print(p.stat())
resp, listing, _ = p.list()
print(resp.decode(), [l.decode() for l in listing])
resp, lines, octets = p.retr(1)
print(b"|".join(lines).decode(), octets)
print("READY", flush=True)
sys.stdin.readline()
print(p.dele(1).decode())
print(p.quit().decode())
"#,
        ca = common::peer("PEER_CA_FILE"),
    );
    let mut py = common::KillOnDrop(
        Command::new("/usr/bin/timeout")
            .args(["60", "/usr/bin/python3", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut py_out = BufReader::new(py.stdout.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if py_out.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            let _ = py.stderr.take().unwrap().read_to_string(&mut err);
            panic!("python3 ended early: {seen}{err}\nmpopd log:\n{}", text());
        }
        seen.push_str(&line);
        if line == "READY\n" {
            break;
        }
    }
    let want = "+OK Logged in.\n(2, 52)\n+OK 2 messages (52 octets) ['1 26', '2 26']\n\
Subject: sys 0||body 0 26\nREADY\n";
    assert_eq!(seen, want, "{}", text());

    // During the session: the daemon is nobody, and a process running as the user serves it.
    assert_eq!(proc_euid(daemon.id()), Some(common::NOBODY));
    let kids = processes_of(uid, "__child");
    assert_eq!(
        kids.len(),
        1,
        "one child as uid {uid}: {kids:?}\n{}",
        text()
    );
    // The lock and the size cache were created by that child: they are the user's.
    for f in ["mpopd.lock", "mpopd.sizes"] {
        let meta = std::fs::symlink_metadata(md.join(f)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, 100), "{f}");
    }

    // A second login of the user while the first holds the maildrop: [IN-USE], as in process.
    let s2 = std::net::TcpStream::connect(("127.0.0.1", plain)).unwrap();
    s2.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut r2 = BufReader::new(s2.try_clone().unwrap());
    let mut w2 = s2;
    assert!(pop_line(&mut r2).starts_with("+OK"));
    w2.write_all(b"USER sys\r\nPASS pw\r\n").unwrap();
    assert_eq!(pop_line(&mut r2), "+OK Send your password.\r\n");
    assert_eq!(
        pop_line(&mut r2),
        "-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n"
    );
    // The session goes on in AUTHORIZATION.
    w2.write_all(b"STAT\r\nQUIT\r\n").unwrap();
    assert!(pop_line(&mut r2).starts_with("-ERR"));
    assert_eq!(pop_line(&mut r2), "+OK Logging out.\r\n");

    // A virtual user on the same daemon: served in process (its lock is nobody's, no child).
    let s3 = std::net::TcpStream::connect(("127.0.0.1", plain)).unwrap();
    s3.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut r3 = BufReader::new(s3.try_clone().unwrap());
    let mut w3 = s3;
    assert!(pop_line(&mut r3).starts_with("+OK"));
    w3.write_all(b"USER alice\r\nPASS password\r\nSTAT\r\n")
        .unwrap();
    assert_eq!(pop_line(&mut r3), "+OK Send your password.\r\n");
    assert_eq!(pop_line(&mut r3), "+OK Logged in.\r\n");
    assert_eq!(pop_line(&mut r3), "+OK 1 22\r\n");
    assert_eq!(
        std::fs::symlink_metadata(alice.join("mpopd.lock"))
            .unwrap()
            .uid(),
        common::NOBODY
    );
    w3.write_all(b"QUIT\r\n").unwrap();
    assert_eq!(pop_line(&mut r3), "+OK Logging out.\r\n");
    assert!(
        text().contains("login user=alice peer=127.0.0.1 messages=1\n"),
        "{}",
        text()
    );
    assert_eq!(processes_of(uid, "__child"), kids);

    // Session 1 goes on: DELE and QUIT.
    py.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    py_out.read_to_string(&mut rest).unwrap();
    let st = py.wait().unwrap();
    assert!(st.success(), "{seen}{rest}\n{}", text());
    assert_eq!(
        rest,
        "+OK Marked to be deleted.\n+OK Logging out, messages deleted.\n"
    );
    let names = |sub: &str| -> Vec<String> {
        std::fs::read_dir(md.join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    let cur = names("cur");
    assert_eq!(cur.len(), 1, "{cur:?}");
    assert!(cur[0].starts_with("1700000002."), "{cur:?}");
    assert!(names("new").is_empty());
    // The child is gone with its session.
    let deadline = Instant::now() + TIMEOUT;
    while !processes_of(uid, "__child").is_empty() {
        assert!(Instant::now() < deadline, "the child outlived its session");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Implicit TLS: the message left is served by a new child.
    let script = format!(
        r#"import poplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
p = poplib.POP3_SSL("localhost", {tls}, context=ctx, timeout=10)
p.user("sys")
print(p.pass_("pw").decode())
print(p.uidl()[1][0].decode())
resp, lines, octets = p.retr(1)
print(b"|".join(lines).decode(), octets)
print(p.quit().decode())
"#,
        ca = common::peer("PEER_CA_FILE"),
    );
    assert_eq!(
        python(&script, &text),
        "+OK Logged in.\n1 1700000002.M2P2.test\nSubject: sys 1||body 1 26\n+OK Logging out.\n"
    );

    // Pipelined commands and then end of input (a half-close, inetd's pipe): every command
    // is answered before the session ends, as in process.
    let mut s5 = std::net::TcpStream::connect(("127.0.0.1", plain)).unwrap();
    s5.set_read_timeout(Some(TIMEOUT)).unwrap();
    s5.write_all(b"USER sys\r\nPASS pw\r\nSTAT\r\nUIDL 1\r\nQUIT\r\n")
        .unwrap();
    s5.shutdown(std::net::Shutdown::Write).unwrap();
    let mut all = String::new();
    s5.read_to_string(&mut all).unwrap();
    let all = all.split_once("\r\n").map_or("", |(_greeting, rest)| rest);
    assert_eq!(
        all,
        "+OK Send your password.\r\n+OK Logged in.\r\n+OK 1 26\r\n\
+OK 1 1700000002.M2P2.test\r\n+OK Logging out.\r\n",
        "{}",
        text()
    );

    // SIGTERM while a system user's session is open: the client is told, the child goes.
    let s4 = std::net::TcpStream::connect(("127.0.0.1", plain)).unwrap();
    s4.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut r4 = BufReader::new(s4.try_clone().unwrap());
    let mut w4 = s4;
    assert!(pop_line(&mut r4).starts_with("+OK"));
    w4.write_all(b"USER sys\r\nPASS pw\r\nDELE 1\r\n").unwrap();
    assert_eq!(pop_line(&mut r4), "+OK Send your password.\r\n");
    assert_eq!(pop_line(&mut r4), "+OK Logged in.\r\n");
    assert_eq!(pop_line(&mut r4), "+OK Marked to be deleted.\r\n");
    let child = processes_of(uid, "__child");
    assert_eq!(child.len(), 1, "{child:?}");
    let st = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        pop_line(&mut r4),
        "-ERR [SYS/TEMP] Server shutting down.\r\n"
    );
    assert_eq!(pop_line(&mut r4), "");
    let deadline = Instant::now() + TIMEOUT;
    while !processes_of(uid, "__child").is_empty() {
        assert!(Instant::now() < deadline, "the child outlived the shutdown");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = daemon.wait().unwrap();
    assert!(st.success(), "{st}: {}", text());
    // Nothing was deleted: the session never reached UPDATE.
    assert_eq!(names("cur").len(), 1);
}

/// The daemon frame starts background work only after dropping root (issue 11, "one daemon
/// frame"): a message queued before `mrelayd serve` starts, for a `|pipe` alias, is never
/// delivered by a `serve` that could not bind (it never dropped root, so it must not deliver),
/// and is delivered by the next `serve` through a pipe running as the `[run_as]` user.
#[test]
fn mrelayd_serve_delivers_a_queued_pipe_only_after_dropping_root() {
    assert_root();
    let dir = common::scratch();
    let d = dir.path();
    let (flag, out) = (d.join("deliver-now"), d.join("uid"));
    std::fs::write(d.join("passwd"), "alice:{PLAIN}password::::::\n").unwrap();
    std::fs::write(
        d.join("aliases"),
        format!(
            "postmaster: alice\nwhoami: |test -e {f} || exit 75; id -u > {o}\n",
            f = flag.display(),
            o = out.display()
        ),
    )
    .unwrap();
    let config = d.join("mailkit.toml");
    let write_config = |listen: &str| {
        let text = format!(
            "hostname = \"mx.example.test\"\nstate_dir = \"{d}/state\"\n\
[users]\npasswd_file = \"{d}/passwd\"\nmail_location = \"{d}/mail/%n\"\ndomains = [\"example.test\"]\n\
[mrelayd]\ntrusted_networks = []\naliases = \"{d}/aliases\"\n\
listen = [ {{ address = \"{listen}\", role = \"smtp\" }} ]\n\
[mrelayd.remote]\nrelayhost = \"[127.0.0.1]:1\"\nrelayhost_tls = \"none\"\nretry_initial_secs = 1\n",
            d = d.display()
        );
        std::fs::write(&config, common::with_run_as(&text)).unwrap();
    };
    // Queued by an inetd session; its own delivery attempt is deferred (no flag yet).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    write_config(&taken.local_addr().unwrap().to_string());
    common::give_to_nobody(d);
    let session = common::run_with_input(
        Command::new(common::bin("mrelayd"))
            .arg("-c")
            .arg(&config)
            .arg("inetd"),
        b"EHLO t\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<whoami@example.test>\r\nDATA\r\n\
Subject: who\r\n\r\nhi\r\n.\r\nQUIT\r\n",
    );
    let said = String::from_utf8_lossy(&session.stdout);
    assert!(said.contains("\r\n250 2.0.0"), "{said} {session:?}");
    assert!(!out.exists(), "delivered before the flag: {session:?}");
    std::fs::write(&flag, "").unwrap();
    // Due again after the 1 s retry interval.
    std::thread::sleep(Duration::from_millis(2100));

    // A serve that cannot bind stops before the drop, so before its queue runner.
    let (code, err) = run_daemon("mrelayd", &config, &["serve"]);
    assert_eq!(code, Some(75), "{err}");
    assert!(err.contains("in use"), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !out.exists(),
        "a serve that never dropped root ran the pipe (as uid {:?}): {err}",
        std::fs::read_to_string(&out).ok()
    );
    drop(taken);

    // A serve that binds delivers it, by a pipe running as [run_as], never as root.
    write_config("127.0.0.1:0");
    let log = d.join("mrelayd.log");
    let (_daemon, _) = common::start_mrelayd(&config, &log, &["smtp"]);
    let deadline = Instant::now() + TIMEOUT;
    let uid = loop {
        match std::fs::read_to_string(&out) {
            Ok(s) if s.ends_with('\n') => break s,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "not delivered: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(uid.trim(), common::NOBODY.to_string());
}

/// Sieve redirect and vacation of a system user (issue 12): its delivery child, running as
/// the user, cannot write mrelayd's queue; it asks the daemon over its socket, which queues
/// the redirected copy and the reply (no msend involved) and answers only then. The copy
/// reaches the redirect target's Maildir with one Return-Path, the reply comes from <>.
#[test]
fn a_system_users_sieve_redirect_and_vacation_go_through_the_daemons_queue() {
    use std::os::unix::fs::MetadataExt as _;
    assert_root();
    let uid = 1503;
    let _user = common::SystemUser::add("mkpriv1503", uid);
    let dir = common::scratch();
    let d = dir.path();
    std::fs::create_dir(d.join("sieve")).unwrap();
    std::fs::write(
        d.join("sieve/sys.sieve"),
        "require [\"copy\", \"vacation\"];\nredirect :copy \"bob@example.test\";\n\
         vacation :days 1 :subject \"Away\" \"sys is away.\";\n",
    )
    .unwrap();
    let sieve = format!("sieve = \"{}/sieve/%n.sieve\"\n", d.display());
    let (config, md) = system_user_setup(d, uid, "bob:{PLAIN}pw::::::\n", &sieve);
    let log = d.join("mrelayd.log");
    let (_daemon, listening) = common::start_mrelayd(&config, &log, &["smtp"]);
    give_to_user(&md, uid);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", listening.port("smtp"))).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    use std::io::{Read as _, Write as _};
    s.write_all(b"EHLO t\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<sys@example.test>\r\nDATA\r\nFrom: alice@example.test\r\nTo: sys@example.test\r\nSubject: sys\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.contains("\r\n250 2.0.0"), "{reply}");
    let own = common::wait_maildir(&md, 1);
    let bob = common::wait_maildir(&d.join("mail/bob"), 1);
    let alice = common::wait_maildir(&d.join("mail/alice"), 1);
    assert_eq!(own.len(), 1, "{}", text());
    let file = std::fs::read_dir(md.join("new"))
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    assert_eq!(file.metadata().unwrap().uid(), uid);
    assert_eq!(bob.len(), 1, "redirect not delivered: {}", text());
    let m = &bob[0];
    assert!(
        m.starts_with("Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\n"),
        "{m}"
    );
    assert_eq!(m.matches("Return-Path:").count(), 1, "{m}");
    assert!(m.contains("\nDelivered-To: sys@example.test\n"), "{m}");
    assert!(m.contains("(mrelayd, Sieve)"), "{m}");
    assert_eq!(alice.len(), 1, "vacation not delivered: {}", text());
    let r = &alice[0];
    assert!(
        r.starts_with("Return-Path: <>\nDelivered-To: alice@example.test\n"),
        "{r}"
    );
    assert!(
        r.contains("Subject: Away") && r.contains("sys is away."),
        "{r}"
    );
    assert!(!text().contains("msend"), "{}", text());
}

/// Reads one CRLF line from a raw IMAP socket.
fn imap_line(r: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line
}

/// A raw IMAP connection to `port` past its greeting: (reader, writer).
fn imap_connect(port: u16) -> (std::io::BufReader<std::net::TcpStream>, std::net::TcpStream) {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    assert!(imap_line(&mut r).starts_with("* OK [CAPABILITY "));
    (r, s)
}

/// FETCH of the first message's Subject field.
const SUBJECT: &str = "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])";

/// Sends `tag command` on a raw IMAP connection and returns the responses up to and
/// including its tagged one.
fn imap_until(
    r: &mut impl std::io::BufRead,
    w: &mut impl std::io::Write,
    tag: &str,
    command: &str,
) -> String {
    w.write_all(format!("{tag} {command}\r\n").as_bytes())
        .unwrap();
    let mut all = String::new();
    loop {
        let line = imap_line(r);
        assert!(!line.is_empty(), "connection closed after {all}");
        all.push_str(&line);
        if line.starts_with(&format!("{tag} ")) {
            return all;
        }
    }
}

/// Waits until no process of `uid` has `__child` in its command line.
fn wait_no_child(uid: u32, what: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !processes_of(uid, "__child").is_empty() {
        assert!(Instant::now() < deadline, "the child outlived {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// System users' IMAP sessions are served by children running as them, while mimapd runs as
/// nobody (issue 13, as Dovecot's imap processes): the child answers the login (pipelined
/// commands after it reach it), SELECT/FETCH run in it on its user's Maildir (the uid list it
/// creates is the user's), CAPABILITY/NOOP/IDLE framing/LOGOUT work through the relay,
/// STARTTLS and implicit TLS stay in the daemon (python3 imaplib), two users' children run at
/// once each as its own uid on its own Maildir, a child cannot open a Maildir that is not its
/// user's, a wrong password is refused and throttled by the daemon without a child, a virtual
/// user is served in process, and at SIGTERM the client gets `* BYE` and the child goes.
#[test]
fn mimapd_serves_system_users_in_children_running_as_them() {
    use std::io::{Read as _, Write as _};
    use std::os::unix::fs::MetadataExt as _;
    assert_root();
    let (u1, u2, u3) = (1511u32, 1512u32, 1513u32);
    let _users = [
        common::SystemUser::add("mkimap1511", u1),
        common::SystemUser::add("mkimap1512", u2),
        common::SystemUser::add("mkimap1513", u3),
    ];
    let dir = common::scratch();
    let d = dir.path();
    std::fs::write(
        d.join("passwd"),
        format!(
            "sys1:{{PLAIN}}pw1:{u1}:100::::\nsys2:{{PLAIN}}pw2:{u2}:100::::\n\
sys3:{{PLAIN}}pw3:{u3}:100::::\nalice:{{PLAIN}}password::::::\n"
        ),
    )
    .unwrap();
    let config = d.join("mailkit.toml");
    std::fs::write(
        &config,
        common::with_run_as(&format!(
            "hostname = \"localhost\"\n[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n\
[users]\npasswd_file = \"{d}/passwd\"\nmail_location = \"{d}/mail/%n\"\n\
[auth]\nfailure_delay_ms = 50\nmax_delay_ms = 100\n\
[mimapd]\nlisten = [ {{ address = \"127.0.0.1:0\" }}, \
{{ address = \"127.0.0.1:0\", role = \"implicit-tls\" }} ]\n",
            cert = common::peer("PEER_CERT_FILE"),
            key = common::peer("PEER_KEY_FILE"),
            d = d.display()
        )),
    )
    .unwrap();
    let md = |u: &str| d.join("mail").join(u);
    for u in ["sys1", "sys2", "sys3", "alice"] {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(md(u).join(sub)).unwrap();
        }
    }
    for u in ["sys1", "sys2"] {
        std::fs::write(
            md(u).join(format!("new/1700000001.M1P1.{u}")),
            format!("Subject: {u} mail\n\nhi\n"),
        )
        .unwrap();
    }
    common::give_to_nobody(d);
    give_to_user(&md("sys1"), u1);
    give_to_user(&md("sys2"), u2);
    // sys3's Maildir is sys1's: sys3's child (as uid 1513) cannot open it.
    give_to_user(&md("sys3"), u1);
    let log = d.join("mimapd.log");
    let (mut daemon, listening) = common::start_daemon(
        Command::new(common::bin("mimapd"))
            .arg("-c")
            .arg(&config)
            .arg("serve"),
        &log,
        &["imap", "imaps"],
    );
    let (plain, tls) = (listening.port("imap"), listening.port("imaps"));
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(proc_euid(daemon.id()), Some(common::NOBODY));

    // sys1 on a raw socket (loopback: plaintext login allowed), CAPABILITY pipelined after
    // the login: answered by the child, after the child's tagged OK of the login.
    let (mut r1, mut w1) = imap_connect(plain);
    w1.write_all(b"a LOGIN sys1 pw1\r\nb CAPABILITY\r\n")
        .unwrap();
    let ok = imap_line(&mut r1);
    assert!(
        ok.starts_with("a OK [CAPABILITY IMAP4rev1 ") && ok.ends_with("] Logged in.\r\n"),
        "{ok}\n{}",
        text()
    );
    assert!(imap_line(&mut r1).starts_with("* CAPABILITY IMAP4rev1 "));
    assert_eq!(imap_line(&mut r1), "b OK CAPABILITY completed.\r\n");
    w1.write_all(b"c NOOP\r\n").unwrap();
    assert_eq!(imap_line(&mut r1), "c OK NOOP completed.\r\n");
    // The mailbox commands run in the child, on sys1's Maildir, as sys1.
    let sel = imap_until(&mut r1, &mut w1, "d", "SELECT INBOX");
    assert!(
        sel.contains("* 1 EXISTS\r\n") && sel.contains("d OK [READ-WRITE]"),
        "{sel}"
    );
    let fetched = imap_until(&mut r1, &mut w1, "d2", SUBJECT);
    assert!(fetched.contains("Subject: sys1 mail"), "{fetched}");
    let uidlist = std::fs::symlink_metadata(md("sys1").join("dovecot-uidlist")).unwrap();
    assert_eq!((uidlist.uid(), uidlist.gid()), (u1, 100));
    // IDLE through the relay: the continuation comes at once (before DONE is sent), then
    // DONE ends it.
    w1.write_all(b"e IDLE\r\n").unwrap();
    assert_eq!(imap_line(&mut r1), "+ idling\r\n");
    w1.write_all(b"DONE\r\n").unwrap();
    assert_eq!(imap_line(&mut r1), "e OK IDLE terminated.\r\n");
    // A literal through the relay (synchronising: the child asks for it).
    w1.write_all(b"f LOGIN {4}\r\n").unwrap();
    assert_eq!(imap_line(&mut r1), "+ Ready for literal data.\r\n");
    w1.write_all(b"sys1 pw1\r\n").unwrap();
    assert!(imap_line(&mut r1).starts_with("f BAD Already"));

    // The child runs as sys1 with sys1's Maildir, from the spawner's lookup.
    let kids1 = processes_of(u1, "__child");
    assert_eq!(kids1.len(), 1, "{kids1:?}\n{}", text());
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/cmdline", kids1[0])).unwrap())
            .replace('\0', " ");
    assert!(
        cmdline.contains(&format!(" __child imap sys1 {} a ", md("sys1").display())),
        "{cmdline}"
    );
    assert!(
        text().contains(&format!("login user=sys1 peer=127.0.0.1 uid={u1}\n")),
        "{}",
        text()
    );

    // sys2 at the same time: a child of its own, as its own uid, on its own Maildir, which
    // sees its own mail only.
    let (mut r2, mut w2) = imap_connect(plain);
    w2.write_all(b"x LOGIN sys2 pw2\r\n").unwrap();
    assert!(imap_line(&mut r2).starts_with("x OK [CAPABILITY "));
    imap_until(&mut r2, &mut w2, "x1", "SELECT INBOX");
    let fetched = imap_until(&mut r2, &mut w2, "x2", SUBJECT);
    assert!(
        fetched.contains("Subject: sys2 mail") && !fetched.contains("sys1"),
        "{fetched}"
    );
    let kids2 = processes_of(u2, "__child");
    assert_eq!(kids2.len(), 1, "{kids2:?}");
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/cmdline", kids2[0])).unwrap())
            .replace('\0', " ");
    assert!(
        cmdline.contains(&md("sys2").display().to_string()),
        "{cmdline}"
    );
    assert!(
        !cmdline.contains(&md("sys1").display().to_string()),
        "{cmdline}"
    );
    assert_eq!(processes_of(u1, "__child"), kids1);

    // sys3's child cannot open a Maildir that is not sys3's: the login is NO [UNAVAILABLE]
    // and the session goes on in the daemon.
    let (mut r3, mut w3) = imap_connect(plain);
    w3.write_all(b"a LOGIN sys3 pw3\r\n").unwrap();
    assert_eq!(
        imap_line(&mut r3),
        "a NO [UNAVAILABLE] Temporary failure, try again later.\r\n",
        "{}",
        text()
    );
    w3.write_all(b"b NOOP\r\nc LOGOUT\r\n").unwrap();
    assert_eq!(imap_line(&mut r3), "b OK NOOP completed.\r\n");
    assert_eq!(imap_line(&mut r3), "* BYE Logging out.\r\n");
    wait_no_child(u3, "a refused login");
    assert!(text().contains("Permission denied"), "{}", text());

    // A wrong password: refused by the daemon with the throttle's delay, no child started.
    w2.write_all(b"y NOOP\r\n").unwrap();
    assert_eq!(imap_line(&mut r2), "y OK NOOP completed.\r\n");
    let (mut r4, mut w4) = imap_connect(plain);
    w4.write_all(b"a LOGIN sys3 wrong\r\nb LOGIN SYS3 wrong\r\n")
        .unwrap();
    assert_eq!(
        imap_line(&mut r4),
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    assert_eq!(
        imap_line(&mut r4),
        "b NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    assert!(
        text().contains("failed login user=sys3 peer=127.0.0.1\n"),
        "{}",
        text()
    );
    assert_eq!(processes_of(u1, "__child"), kids1);
    assert!(processes_of(u3, "__child").is_empty());
    drop((r4, w4));

    // A virtual user: served in process, no child.
    let (mut r5, mut w5) = imap_connect(plain);
    w5.write_all(b"a LOGIN alice password\r\nb LOGOUT\r\n")
        .unwrap();
    assert!(imap_line(&mut r5).starts_with("a OK [CAPABILITY "));
    assert_eq!(imap_line(&mut r5), "* BYE Logging out.\r\n");
    assert!(
        text().contains("login user=alice peer=127.0.0.1\n"),
        "{}",
        text()
    );

    // LOGOUT ends sys1's child and the connection.
    w1.write_all(b"z LOGOUT\r\n").unwrap();
    assert_eq!(imap_line(&mut r1), "* BYE Logging out.\r\n");
    assert_eq!(imap_line(&mut r1), "z OK LOGOUT completed.\r\n");
    assert_eq!(imap_line(&mut r1), "");
    wait_no_child(u1, "LOGOUT");
    // A client gone (closed without LOGOUT) ends sys2's.
    drop((r2, w2));
    wait_no_child(u2, "its client");

    // python3 imaplib over STARTTLS and over implicit TLS: each login served by a child.
    let script = format!(
        r#"import imaplib, ssl
ctx = ssl.create_default_context(cafile={ca:?})
m = imaplib.IMAP4("localhost", {plain}, timeout=10)
m.starttls(ssl_context=ctx)
print(m.login("sys1", "pw1")[0])
print(b"NAMESPACE" in m.capability()[1][0], m.noop()[0])
print(m.logout()[0])
m = imaplib.IMAP4_SSL("localhost", {tls}, ssl_context=ctx, timeout=10)
print(m.login("sys2", "pw2")[0])
print(m.noop()[0])
print(m.logout()[0])
"#,
        ca = common::peer("PEER_CA_FILE"),
    );
    assert_eq!(python(&script, &text), "OK\nTrue OK\nBYE\nOK\nOK\nBYE\n");
    assert!(text().contains(&format!("login user=sys2 peer=127.0.0.1 uid={u2}\n")));

    // SIGTERM while a system user's session is open: the daemon says * BYE, the child goes.
    let (mut r6, mut w6) = imap_connect(plain);
    w6.write_all(b"a LOGIN sys1 pw1\r\n").unwrap();
    assert!(imap_line(&mut r6).starts_with("a OK [CAPABILITY "));
    assert_eq!(processes_of(u1, "__child").len(), 1);
    let st = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(imap_line(&mut r6), "* BYE Server shutting down.\r\n");
    let mut rest = String::new();
    let _ = r6.read_to_string(&mut rest);
    assert_eq!(rest, "");
    wait_no_child(u1, "the shutdown");
    let st = daemon.wait().unwrap();
    assert!(st.success(), "{st}: {}", text());
}

/// The daemon keeps a relayed session's clocks: a system user's client silent in IDLE for the
/// idle timeout gets `* BYE Disconnected for inactivity.`, and one that only sends NOOPs (no
/// progress, as in process) gets `* BYE Session deadline exceeded, ...`; both children go.
#[test]
fn mimapd_keeps_the_idle_timeout_and_deadline_of_a_system_users_session() {
    use std::io::Write as _;
    assert_root();
    let uid = 1514u32;
    let _user = common::SystemUser::add("mkimap1514", uid);
    let dir = common::scratch();
    let d = dir.path();
    std::fs::write(d.join("passwd"), format!("sys:{{PLAIN}}pw:{uid}:100::::\n")).unwrap();
    let config = d.join("mailkit.toml");
    std::fs::write(
        &config,
        common::with_run_as(&format!(
            "hostname = \"localhost\"\n\
[users]\npasswd_file = \"{d}/passwd\"\nmail_location = \"{d}/mail/%n\"\n\
[mimapd]\nlisten = [ {{ address = \"127.0.0.1:0\" }} ]\n\
idle_timeout_secs = 1\nsession_deadline_secs = 2\n",
            d = d.display()
        )),
    )
    .unwrap();
    let md = d.join("mail/sys");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    common::give_to_nobody(d);
    give_to_user(&md, uid);
    let log = d.join("mimapd.log");
    let (_daemon, listening) = common::start_daemon(
        Command::new(common::bin("mimapd"))
            .arg("-c")
            .arg(&config)
            .arg("serve"),
        &log,
        &["imap"],
    );
    let port = listening.port("imap");
    let text = || std::fs::read_to_string(&log).unwrap_or_default();

    let (mut r, mut w) = imap_connect(port);
    w.write_all(b"a LOGIN sys pw\r\nb IDLE\r\n").unwrap();
    assert!(
        imap_line(&mut r).starts_with("a OK [CAPABILITY "),
        "{}",
        text()
    );
    assert_eq!(imap_line(&mut r), "+ idling\r\n");
    assert_eq!(processes_of(uid, "__child").len(), 1, "{}", text());
    assert_eq!(imap_line(&mut r), "* BYE Disconnected for inactivity.\r\n");
    assert_eq!(imap_line(&mut r), "");
    wait_no_child(uid, "the idle timeout");

    let (mut r, mut w) = imap_connect(port);
    w.write_all(b"a LOGIN sys pw\r\n").unwrap();
    assert!(
        imap_line(&mut r).starts_with("a OK [CAPABILITY "),
        "{}",
        text()
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no deadline: {}", text());
        std::thread::sleep(Duration::from_millis(100));
        if w.write_all(b"n NOOP\r\n").is_err() {
            break;
        }
        let line = imap_line(&mut r);
        if line.starts_with("* BYE") {
            assert_eq!(line, "* BYE Session deadline exceeded, disconnecting.\r\n");
            break;
        }
        assert_eq!(line, "n OK NOOP completed.\r\n");
    }
    wait_no_child(uid, "the deadline");
    assert!(text().contains("session deadline exceeded"), "{}", text());
}
