//! mrelayd streams DATA/BDAT into its queue (bounded memory per session) and stops mail
//! loops by counting hops (RFC 5321 §6.3), against real daemons on loopback (issue 10, items
//! 5 "Memory" and 3 "Count Received headers").
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A running `mrelayd serve` of its own: hostname `host`, local domain `host`, user alice.
struct Daemon {
    dir: PathBuf,
    child: common::KillOnDrop,
    log: PathBuf,
    /// The port of its `smtp` listener, as it printed it.
    port: u16,
}

impl Daemon {
    /// Starts it in `dir` listening on port 0; `extra` goes into `[mrelayd]`, `remote` into
    /// `[mrelayd.remote]`.
    fn start(dir: &Path, host: &str, extra: &str, remote: &str) -> Daemon {
        Daemon::try_start(dir, host, 0, extra, remote).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts it in `dir` listening on `port` (0: any); `Err` with its log when it does not
    /// listen (see `common::port_taken`).
    fn try_start(
        dir: &Path,
        host: &str,
        port: u16,
        extra: &str,
        remote: &str,
    ) -> Result<Daemon, String> {
        std::fs::create_dir_all(dir).unwrap();
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, "alice:{PLAIN}password::::::\n").unwrap();
        std::fs::write(dir.join("aliases"), "postmaster: alice\n").unwrap();
        let config = dir.join("mailkit.toml");
        let text = format!(
            "hostname = \"{host}\"\nstate_dir = \"{state}\"\n\
[users]\npasswd_file = \"{passwd}\"\nmail_location = \"{mail}/%n\"\ndomains = [\"{host}\"]\n\
[mrelayd]\naliases = \"{aliases}\"\n\
listen = [ {{ address = \"127.0.0.1:{port}\", role = \"smtp\" }} ]\n{extra}\n\
[mrelayd.remote]\nrelayhost_tls = \"none\"\nretry_initial_secs = 1\nretry_max_secs = 2\n{remote}\n",
            state = dir.join("state").display(),
            aliases = dir.join("aliases").display(),
            passwd = passwd.display(),
            mail = dir.join("mail").display(),
        );
        std::fs::write(&config, common::with_run_as(&text)).unwrap();
        let log = dir.join("mrelayd.log");
        let (child, listening) =
            common::try_start_daemon(&mut common::mrelayd_serve(&config), &log, &["smtp"])?;
        Ok(Daemon {
            dir: dir.to_path_buf(),
            child,
            log,
            port: listening.port("smtp"),
        })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn queue(&self, sub: &str) -> PathBuf {
        self.dir.join("state").join("queue").join(sub)
    }

    fn maildir_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(self.dir.join("mail").join("alice").join(sub)) {
                out.extend(rd.flatten().map(|e| e.path()));
            }
        }
        out
    }

    /// VmRSS of the daemon in octets.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS");
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("VmRSS value");
        kb * 1024
    }
}

/// Files in `dir` and the sum of their sizes.
fn files_and_size(dir: &Path) -> (usize, u64) {
    let mut n = 0;
    let mut size = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        n += 1;
        size += e.metadata().map(|m| m.len()).unwrap_or(0);
    }
    (n, size)
}

/// Waits up to `secs` for `ok`.
fn wait_for(secs: u64, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    ok()
}

/// A raw SMTP client.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Client {
        let w = TcpStream::connect(("127.0.0.1", port)).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        let mut c = Client { w, r };
        let greeting = c.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        c
    }

    /// One reply, all its lines.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }

    /// EHLO, MAIL, RCPT, each expecting 250.
    fn envelope(&mut self, from: &str, to: &str) {
        for c in [
            "EHLO client.test".to_string(),
            format!("MAIL FROM:<{from}>"),
            format!("RCPT TO:<{to}>"),
        ] {
            let r = self.cmd(&c);
            assert!(r.starts_with("250"), "{c}: {r}");
        }
    }

    /// Sends `message` (CRLF text, no line starting with a dot) with DATA; the final reply.
    fn data(&mut self, message: &[u8]) -> String {
        let r = self.cmd("DATA");
        assert!(r.starts_with("354"), "{r}");
        self.w.write_all(message).unwrap();
        self.w.write_all(b".\r\n").unwrap();
        self.reply()
    }

    /// Sends `message` as one BDAT LAST chunk; the reply.
    fn bdat(&mut self, message: &[u8]) -> String {
        self.w
            .write_all(format!("BDAT {} LAST\r\n", message.len()).as_bytes())
            .unwrap();
        self.w.write_all(message).unwrap();
        self.reply()
    }
}

/// `n` octets of CRLF text lines.
fn text(n: usize) -> Vec<u8> {
    let line = format!("{}\r\n", "x".repeat(998));
    let mut out = Vec::with_capacity(n + line.len());
    while out.len() < n {
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(n - 2);
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn forty_sessions_of_unfinished_30mb_data_stay_small_and_a_35mb_message_is_exact() {
    let dir = common::scratch();
    let d = Daemon::start(
        dir.path(),
        "mx.example.test",
        "max_per_ip = 100\nmax_connections = 200\ndata_timeout_secs = 120\n",
        "",
    );
    let port = d.port;
    const SESSIONS: usize = 40;
    const SIZE: usize = 30 * 1024 * 1024;
    let chunk = std::sync::Arc::new(text(1024 * 1024));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    for _ in 0..SESSIONS {
        let (chunk, tx) = (chunk.clone(), tx.clone());
        threads.push(std::thread::spawn(move || {
            let mut c = Client::connect(port);
            c.envelope("sender@client.test", "alice@mx.example.test");
            assert!(c.cmd("DATA").starts_with("354"));
            c.w.write_all(b"Subject: big\r\n\r\n").unwrap();
            for _ in 0..SIZE / chunk.len() {
                c.w.write_all(&chunk).unwrap();
            }
            // All sent, no final dot: hang until told to go.
            tx.send(c).unwrap();
        }));
    }
    drop(tx);
    let mut clients: Vec<Client> = rx.iter().take(SESSIONS).collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(clients.len(), SESSIONS);
    // The daemon has read (nearly) everything: it is on disk in tmp/, not in memory.
    let want = (SESSIONS * (SIZE - 8 * 1024 * 1024)) as u64;
    let consumed = wait_for(60, || files_and_size(&d.queue("tmp")).1 >= want);
    let rss = d.rss();
    assert!(
        rss < 150 * 1024 * 1024,
        "mrelayd holds {} MB with {SESSIONS} unfinished 30 MB messages",
        rss / (1024 * 1024)
    );
    assert!(consumed, "tmp/ holds {:?}", files_and_size(&d.queue("tmp")));
    assert_eq!(files_and_size(&d.queue("tmp")).0, SESSIONS);
    // The clients go away without the final dot: nothing is queued, tmp/ is emptied.
    for c in clients.iter_mut() {
        let _ = c.w.shutdown(std::net::Shutdown::Both);
    }
    drop(clients);
    assert!(
        wait_for(30, || files_and_size(&d.queue("tmp")).0 == 0),
        "tmp/ left behind: {:?}",
        files_and_size(&d.queue("tmp"))
    );
    assert_eq!(files_and_size(&d.queue("msg")).0, 0);
    assert!(d.maildir_files().is_empty());

    // A 35 MB message (under the 35 MiB default limit) arrives byte for byte.
    let mut message = b"Subject: exact\r\n\r\n".to_vec();
    message.extend_from_slice(&text(35_000_000));
    // Some variety, and a dot-stuffed line.
    message.extend_from_slice(b"..a line starting with a dot\r\nlast \xc3\xa9 line\r\n");
    let mut c = Client::connect(port);
    c.envelope("sender@client.test", "alice@mx.example.test");
    let tail: &[u8] = b"..a line starting with a dot\r\nlast \xc3\xa9 line\r\n";
    let r = c.data(&message);
    assert!(r.starts_with("250"), "{r}");
    assert!(
        wait_for(60, || d.maildir_files().len() == 1),
        "{}",
        d.log_text()
    );
    let mut got = Vec::new();
    std::fs::File::open(&d.maildir_files()[0])
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    // Stored with LF line ends (as Postfix local does), after the headers we add; the
    // dot-stuffed line is unstuffed.
    let mut want = message.clone();
    let at = want.len() - tail.len();
    want.truncate(at);
    want.extend_from_slice(b".a line starting with a dot\r\nlast \xc3\xa9 line\r\n");
    let want: Vec<u8> = want.into_iter().filter(|&b| b != b'\r').collect();
    assert!(
        got.ends_with(&want),
        "Maildir copy differs ({} octets, want a suffix of {})",
        got.len(),
        want.len()
    );
    assert!(String::from_utf8_lossy(&got[..got.len() - want.len()])
        .contains("Received: from client.test"));
}

/// `n` Received: headers, folded as real ones are, then a small message.
fn with_hops(n: usize) -> Vec<u8> {
    let mut m = String::new();
    for i in 0..n {
        m.push_str(&format!(
            "Received: from h{i}.test (h{i}.test [192.0.2.{}])\r\n\tby h{}.test with ESMTP id {i};\r\n\tMon, 30 Nov 2026 12:00:00 +0000\r\n",
            i % 250,
            i + 1
        ));
    }
    m.push_str("Subject: hops\r\n\r\nReceived: in the body does not count\r\n");
    m.into_bytes()
}

#[test]
fn too_many_received_headers_are_refused_over_data_and_bdat() {
    let dir = common::scratch();
    let d = Daemon::start(dir.path(), "mx.example.test", "", "");
    let port = d.port;
    for (n, accepted) in [(51, false), (50, false), (49, true)] {
        let m = with_hops(n);
        let mut c = Client::connect(port);
        c.envelope("s@client.test", "alice@mx.example.test");
        let r = c.data(&m);
        c.envelope_again("s@client.test", "alice@mx.example.test");
        let r2 = c.bdat(&m);
        for r in [r, r2] {
            if accepted {
                assert!(r.starts_with("250"), "{n}: {r}");
            } else {
                assert!(r.starts_with("554 5.4.6 Too many hops"), "{n}: {r}");
            }
        }
        assert!(c.cmd("QUIT").starts_with("221"));
    }
    // Only the two accepted copies (DATA and BDAT of 49 hops) were delivered.
    assert!(
        wait_for(20, || d.maildir_files().len() == 2),
        "{}",
        d.log_text()
    );
    // The refused ones were never queued (554 before any queue file is committed): once the
    // queue is empty nothing more can arrive, so the count is final.
    assert!(
        wait_for(20, || files_and_size(&d.queue("msg")).0 == 0),
        "queue not empty: {}",
        d.log_text()
    );
    assert_eq!(d.maildir_files().len(), 2);
    assert_eq!(files_and_size(&d.queue("tmp")).0, 0);
}

impl Client {
    /// MAIL and RCPT of a further transaction in the same session.
    fn envelope_again(&mut self, from: &str, to: &str) {
        for c in [format!("MAIL FROM:<{from}>"), format!("RCPT TO:<{to}>")] {
            let r = self.cmd(&c);
            assert!(r.starts_with("250"), "{c}: {r}");
        }
    }
}

#[test]
fn a_relay_loop_between_two_daemons_ends_in_one_bounce() {
    let dir = common::scratch();
    // A delivers a.test locally and relays everything else to B; B relays everything to A.
    // A must name B's port before B starts: B gets one picked up front, and when a parallel
    // test took it meanwhile both start again with another.
    let (a, b) = common::with_unused_ports(|[pb]| {
        let a = Daemon::start(
            &dir.path().join("a"),
            "a.test",
            "",
            &format!("relayhost = \"[127.0.0.1]:{pb}\"\n"),
        );
        match Daemon::try_start(
            &dir.path().join("b"),
            "b.test",
            pb,
            "",
            &format!("relayhost = \"[127.0.0.1]:{}\"\n", a.port),
        ) {
            Ok(b) => Some((a, b)),
            Err(e) if common::port_taken(&e) => None,
            Err(e) => panic!("{e}"),
        }
    });
    let pa = a.port;
    let mut c = Client::connect(pa);
    c.envelope("alice@a.test", "someone@elsewhere.test");
    let r = c.data(b"Subject: round and round\r\n\r\nloop\r\n");
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("QUIT").starts_with("221"));
    // The loop ends with one bounce to alice, saying 5.4.6.
    assert!(
        wait_for(60, || !a.maildir_files().is_empty()),
        "no bounce; A: {}\nB: {}",
        a.log_text(),
        b.log_text()
    );
    // Nothing keeps circling: both queues drain, and no second bounce comes.
    assert!(
        wait_for(30, || {
            files_and_size(&a.queue("msg")).0 == 0 && files_and_size(&b.queue("msg")).0 == 0
        }),
        "queues not empty; A: {}\nB: {}",
        a.log_text(),
        b.log_text()
    );
    // A quiet spell is what is asserted here (no second bounce comes), not a wait for a daemon.
    std::thread::sleep(Duration::from_secs(2));
    let files = a.maildir_files();
    assert_eq!(files.len(), 1, "{files:?}");
    let bounce = std::fs::read_to_string(&files[0]).unwrap();
    assert!(bounce.contains("5.4.6"), "{bounce}");
    assert!(bounce.contains("Too many hops"), "{bounce}");
    // About 50 hops in all, each a logged "queued" on one side.
    let accepted = |d: &Daemon| {
        d.log_text()
            .lines()
            .filter(|l| l.contains(" from=<") && l.ends_with(" queued"))
            .count()
    };
    let queued = accepted(&a) + accepted(&b);
    assert!((45..=60).contains(&queued), "{queued} hops");
}
