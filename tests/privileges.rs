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
        mailkit::server::sys::euid(),
        0,
        "these tests run as root (the CI container does)"
    );
}

/// A config under which mrelayd and mpopd would serve on loopback (free ports), with `top`
/// added at the top level (e.g. a `[run_as]` block).
fn write_config(dir: &Path, top: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("passwd"), "alice:{PLAIN}password::::::\n").unwrap();
    let text = format!(
        "hostname = \"mx.example.test\"\nstate_dir = \"{d}/state\"\n\
[users]\npasswd_file = \"{d}/passwd\"\nmail_location = \"{d}/mail/%n\"\ndomains = [\"example.test\"]\n\
[mrelayd]\nlisten = [ {{ address = \"127.0.0.1:{smtp}\", role = \"smtp\" }} ]\n\
[mrelayd.remote]\nrelayhost = \"[127.0.0.1]:1\"\nrelayhost_tls = \"none\"\n\
[mpopd]\nlisten = [ {{ address = \"127.0.0.1:{pop}\" }} ]\n{top}\n",
        d = dir.display(),
        smtp = common::free_port(),
        pop = common::free_port(),
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

const DAEMONS: [(&str, &[&str]); 4] = [
    ("mrelayd", &["serve"]),
    ("mrelayd", &["inetd"]),
    ("mpopd", &["serve"]),
    ("mpopd", &["inetd"]),
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

/// A system user (own uid/gid in the passwd-file, Maildir 0700 of its own): mrelayd, running
/// as nobody, delivers to it through a child running as that user, started by the spawner.
#[test]
fn mrelayd_delivers_to_a_system_user_as_that_user() {
    use std::os::unix::fs::MetadataExt as _;
    assert_root();
    let (name, uid) = ("mkpriv1501", 1501u32);
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
    struct Remove(&'static str);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = Command::new("userdel").arg(self.0).status();
        }
    }
    let _remove = Remove(name);
    let dir = common::scratch();
    let smtp = common::free_port();
    let d = dir.path();
    std::fs::write(
        d.join("passwd"),
        format!("sys:{{PLAIN}}pw:{uid}:100::::\nalice:{{PLAIN}}pw::::::\n"),
    )
    .unwrap();
    let config = d.join("mailkit.toml");
    std::fs::write(
        &config,
        common::with_run_as(&format!(
            "hostname = \"mx.example.test\"\nstate_dir = \"{d}/state\"\n\
[users]\npasswd_file = \"{d}/passwd\"\nmail_location = \"{d}/mail/%n\"\ndomains = [\"example.test\"]\n\
[mrelayd]\ntrusted_networks = []\nlisten = [ {{ address = \"127.0.0.1:{smtp}\", role = \"smtp\" }} ]\n\
[mrelayd.remote]\nrelayhost = \"[127.0.0.1]:1\"\nrelayhost_tls = \"none\"\n",
            d = d.display()
        )),
    )
    .unwrap();
    let md = d.join("mail/sys");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    common::give_to_nobody(d);
    let st = Command::new("chown")
        .args(["-R", &format!("{uid}:100")])
        .arg(&md)
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("chmod")
        .args(["-R", "0700"])
        .arg(&md)
        .status()
        .unwrap();
    assert!(st.success());
    let log = d.join("mrelayd.log");
    let mut daemon = common::KillOnDrop(common::spawn_mrelayd(&config, &log));
    // spawn_mrelayd handed the whole directory to nobody: the Maildir is the user's again.
    let st = Command::new("chown")
        .args(["-R", &format!("{uid}:100")])
        .arg(&md)
        .status()
        .unwrap();
    assert!(st.success());
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_port(smtp, "mrelayd", &text);
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
