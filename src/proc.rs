//! The one way to run a short-lived child program: input on stdin, bounded output capture and
//! a timeout after which the child's whole process group is killed.
//!
//! Used by checkpassword, pipe delivery and the password command. The child starts in its own
//! process group (`setpgid(0, 0)` through std's `process_group(0)`), so a shell's background
//! children are killed with it: SIGKILL to `-pgid` ([`rustix::process::kill_process_group`]).
//! Its stdin is written and its output read from threads, so a child that does not read its
//! input, or writes more than is kept, never blocks us past the timeout; output beyond the
//! limit is read and dropped so the child does not stall on a full pipe. A descendant that
//! leaves the group (`setsid`) and keeps our pipes open is not waited for after the deadline.
//!
//! [`run`] blocks (call it from a thread or the blocking pool); [`run_async`] runs it on
//! tokio's blocking pool so no async worker waits for a child. [`run_file`] and
//! [`run_file_async`] give the child an open file as its stdin instead (mrelayd's content
//! filter reads the spooled message that way, so no message is held in memory).

use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the child is checked for completion.
const POLL: Duration = Duration::from_millis(5);
/// After the group is killed, how long its output pipes may take to close.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// What to run a child with.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes written to its stdin (then closed); `None`: stdin is `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Time from the start until the group is killed.
    pub timeout: Duration,
    /// Most bytes kept of stdout, and of stderr when captured.
    pub max_output: usize,
    /// Capture stderr; `false` leaves it ours (e.g. the daemon's log, a terminal prompt).
    pub capture_stderr: bool,
}

/// How the child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
    /// It ran past the timeout; its process group was killed.
    TimedOut,
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub status: Status,
    /// Its stdout, at most `max_output` bytes.
    pub stdout: Vec<u8>,
    /// Its stderr when captured, at most `max_output` bytes.
    pub stderr: Vec<u8>,
    /// Its pid, which is also its process group id.
    pub pid: u32,
}

/// Reads `from` into a shared buffer up to `max` bytes, drops the rest, reports EOF on `done`.
fn reader(
    mut from: impl Read + Send + 'static,
    max: usize,
    done: mpsc::Sender<()>,
) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::clone(&buf);
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match from.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    if let Ok(mut b) = shared.lock() {
                        let room = max.saturating_sub(b.len()).min(n);
                        b.extend_from_slice(&chunk[..room]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done.send(());
    });
    buf
}

fn take(buf: &Arc<Mutex<Vec<u8>>>) -> Vec<u8> {
    buf.lock()
        .map(|mut b| std::mem::take(&mut *b))
        .unwrap_or_default()
}

/// Runs `cmd` (module doc). Its stdin, stdout and stderr settings and process group are set
/// here; arguments and environment are the caller's. Blocks up to about the timeout.
pub fn run(cmd: Command, opts: &Options) -> io::Result<Outcome> {
    run_inner(cmd, opts, None)
}

/// [`run`] with `stdin` as the child's standard input (read from its current offset);
/// `opts.stdin` is not used.
pub fn run_file(cmd: Command, stdin: std::fs::File, opts: &Options) -> io::Result<Outcome> {
    run_inner(cmd, opts, Some(stdin))
}

fn run_inner(mut cmd: Command, opts: &Options, file: Option<std::fs::File>) -> io::Result<Outcome> {
    let from_file = file.is_some();
    cmd.process_group(0)
        .stdin(match file {
            Some(f) => Stdio::from(f),
            None if opts.stdin.is_some() => Stdio::piped(),
            None => Stdio::null(),
        })
        .stdout(Stdio::piped())
        .stderr(if opts.capture_stderr {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut child = cmd.spawn()?;
    let pgid = rustix::process::Pid::from_child(&child);
    let input = if from_file { None } else { opts.stdin.clone() };
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        // Never joined: a child that does not read gets EPIPE when it (or the kill) closes the
        // pipe; what it does not read is its own business.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let (done_tx, done_rx) = mpsc::channel();
    let mut pipes = 0;
    let stdout = child.stdout.take().map(|o| {
        pipes += 1;
        reader(o, opts.max_output, done_tx.clone())
    });
    let stderr = child.stderr.take().map(|e| {
        pipes += 1;
        reader(e, opts.max_output, done_tx.clone())
    });
    drop(done_tx);
    let kill_group = || {
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                break match (st.code(), st.signal()) {
                    (Some(c), _) => Status::Exited(c),
                    (None, Some(s)) => Status::Signaled(s),
                    (None, None) => Status::Signaled(0),
                }
            }
            Ok(None) if Instant::now() >= deadline => {
                kill_group();
                let _ = child.kill();
                let _ = child.wait();
                break Status::TimedOut;
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                kill_group();
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
    };
    // The pipes close when every holder has exited; descendants still holding them after the
    // deadline are killed with the group, and after that we stop waiting.
    let mut open = pipes;
    let mut killed = status == Status::TimedOut;
    while open > 0 {
        let wait = if killed {
            KILL_GRACE
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        match done_rx.recv_timeout(wait) {
            Ok(()) => open -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) if !killed => {
                kill_group();
                killed = true;
            }
            Err(_) => break,
        }
    }
    Ok(Outcome {
        status,
        stdout: stdout.as_ref().map(take).unwrap_or_default(),
        stderr: stderr.as_ref().map(take).unwrap_or_default(),
        pid: child.id(),
    })
}

/// [`run`] on tokio's blocking pool, for async callers.
pub async fn run_async(cmd: Command, opts: Options) -> io::Result<Outcome> {
    tokio::task::spawn_blocking(move || run(cmd, &opts))
        .await
        .map_err(io::Error::other)?
}

/// [`run_file`] on tokio's blocking pool, for async callers.
pub async fn run_file_async(
    cmd: Command,
    stdin: std::fs::File,
    opts: Options,
) -> io::Result<Outcome> {
    tokio::task::spawn_blocking(move || run_file(cmd, stdin, &opts))
        .await
        .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    fn opts(timeout_ms: u64) -> Options {
        Options {
            stdin: None,
            timeout: Duration::from_millis(timeout_ms),
            max_output: 1024,
            capture_stderr: true,
        }
    }

    /// Whether `pid` is gone (or a zombie nobody reaped yet), waiting up to 10 s.
    fn gone(pid: u32) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => return true,
                Ok(s)
                    if s.rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim().starts_with('Z')) =>
                {
                    return true
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        false
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 100 & echo $! > {}; sleep 100", pidfile.display());
        let o = run(sh(&script), &opts(300)).unwrap();
        assert_eq!(o.status, Status::TimedOut);
        let grandchild: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(gone(grandchild), "background sleep {grandchild} survived");
        assert!(gone(o.pid));
    }

    #[test]
    fn exit_code_signal_and_output() {
        let o = run(sh("echo out; echo err >&2; exit 3"), &opts(10_000)).unwrap();
        assert_eq!(o.status, Status::Exited(3));
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
        let o = run(sh("kill -9 $$"), &opts(10_000)).unwrap();
        assert_eq!(o.status, Status::Signaled(9));
    }

    #[test]
    fn large_output_is_bounded_and_drained() {
        // 4 MB on each stream: more than any pipe buffer, so the child only ends if we read.
        let o = run(
            sh("head -c 4000000 /dev/zero; head -c 4000000 /dev/zero >&2"),
            &opts(30_000),
        )
        .unwrap();
        assert_eq!(o.status, Status::Exited(0));
        assert_eq!(o.stdout.len(), 1024);
        assert_eq!(o.stderr.len(), 1024);
    }

    #[test]
    fn large_stdin_to_a_child_that_does_not_read() {
        let mut o = opts(30_000);
        o.stdin = Some(vec![b'x'; 4_000_000]);
        let r = run(sh("exit 0"), &o).unwrap();
        assert_eq!(r.status, Status::Exited(0));
        // And one that reads it all.
        let r = run(sh("wc -c"), &o).unwrap();
        assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "4000000");
    }

    #[test]
    fn a_background_child_holding_the_pipe_is_killed_at_the_deadline() {
        let o = run(sh("sleep 100 & echo started"), &opts(300)).unwrap();
        assert_eq!(o.status, Status::Exited(0));
        assert_eq!(o.stdout, b"started\n");
    }

    #[test]
    fn stdin_from_a_file_at_its_offset() {
        use std::io::{Seek as _, SeekFrom};
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"skip\nread me\n").unwrap();
        f.seek(SeekFrom::Start(5)).unwrap();
        let o = run_file(sh("cat"), f, &opts(10_000)).unwrap();
        assert_eq!(
            (o.status, o.stdout),
            (Status::Exited(0), b"read me\n".to_vec())
        );
    }

    #[tokio::test]
    async fn async_wrapper() {
        let o = run_async(sh("echo hi"), opts(10_000)).await.unwrap();
        assert_eq!((o.status, o.stdout), (Status::Exited(0), b"hi\n".to_vec()));
    }
}
