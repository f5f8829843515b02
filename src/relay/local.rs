//! Local delivery of one copy: into a Maildir through the one Maildir writer
//! ([`crate::mda::deliver`], the same code as mdeliver) or by piping into a command.
//!
//! Pipe commands run under `/bin/sh -c` with the message on stdin (LF line ends, `Return-Path:`
//! and `Delivered-To:` first, as Postfix's local(8) does) and a clean environment, never the
//! daemon's ([`PIPE_PATH`]): `PATH`, `HOME` (`/`: alias commands run as the mail user),
//! `SENDER`, `RECIPIENT`, `LOCAL` (the recipient's local part), `USER` (the alias's name
//! without the extension) and `EXTENSION`/`EXT` (the part after `recipient_delimiter`, `+` by
//! default), `DOMAIN`, and the same under `RAW_`; the shell adds `PWD` (and may add `SHLVL`,
//! `_`). Those come from the envelope, so
//! from whoever sent the mail: as Postfix's local(8) does, every byte outside its default
//! `command_expansion_filter` ([`PIPE_ENV_SAFE`]) is replaced with `_` ([`shell_safe`]), so a
//! command that lets the shell evaluate them (`eval`, an unquoted `$SENDER` in a backquote)
//! cannot be made to run the sender's text. The exact values are in `RAW_SENDER`,
//! `RAW_RECIPIENT`, `RAW_USER`, `RAW_EXTENSION`, `RAW_LOCAL` and `RAW_DOMAIN`, for commands that
//! quote them properly. Exit 0 is delivered, 75 (EX_TEMPFAIL) is "retry later", any other status
//! is a permanent failure; a command killed by a signal or by the timeout is retried.
//!
//! A Maildir of a *system user* (a passwd-file entry with its own uid/gid, README
//! "Privileges") is not written by the daemon: it is delivered by a child process running as
//! that user, which the privileged spawner ([`crate::server::spawn`]) starts
//! ([`deliver_as_user`]; as Postfix's local(8) runs as the recipient). The child
//! (`mrelayd __child deliver USER MAILDIR SENDER RCPT`, [`child_deliver`]) reads the message on
//! stdin, delivers it with the same writer, prints a failure on stdout and exits 0, 75 (retry)
//! or another sysexits code (permanent). The spawner takes the Maildir from its own lookup of
//! the user ([`crate::server::spawn::PasswdUsers`]), never from the daemon.
//!
//! # Sieve redirect and vacation
//! A user's Sieve script (`[mrelayd] sieve =`) runs in [`crate::mda::deliver`], whose
//! redirects and vacation replies go into mrelayd's own queue, never through msend: in the
//! daemon through [`crate::mda::send::ToQueue`] (the caller's submitter, queued and fsynced
//! before the redirect counts as sent), and from a system user's child, which cannot write
//! the queue (it belongs to the mail user), as a request to the daemon over the child's
//! stdout socket ([`ChildSubmit`]): one line `SUBMIT NUL size NUL sender NUL recipient LF`
//! and `size` bytes of message, answered `OK`, `TEMP why` or `PERM why` (one line) only after
//! the daemon queued it durably. The daemon checks each request ([`check_submission`]): the
//! envelope sender is the delivery's own sender or `<>`, at most [`MAX_CHILD_SUBMISSIONS`]
//! per delivery, each at most the delivered message's size plus [`SUBMISSION_SLACK`] bytes;
//! so a child, whatever runs in it, can send no more than its script could.
//!
//! Queue entries are processed by [`super::deliver`]; remote targets go to [`super::remote`].

use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use std::sync::Arc;

use super::Target;
use crate::exit;
use crate::mda::send::{Sent, Submit};
use crate::outbound::Failure;
use crate::proc::Status;

/// `PATH` of a pipe command (the daemon's own environment is not passed on).
pub const PIPE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Most bytes of a pipe command's output kept for the error message.
pub const MAX_PIPE_OUTPUT: u64 = 4096;

/// The bytes pipe environment variables from the envelope keep as they are: Postfix's default
/// `command_expansion_filter` (local(8)), which has no shell metacharacter.
pub const PIPE_ENV_SAFE: &str =
    "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// `value` with every byte outside [`PIPE_ENV_SAFE`] replaced by `_`, byte by byte as Postfix
/// does (so a non-ASCII character becomes one `_` per UTF-8 byte).
pub fn shell_safe(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if PIPE_ENV_SAFE.as_bytes().contains(&b) {
                char::from(b)
            } else {
                '_'
            }
        })
        .collect()
}

/// Delivers one copy; a symlinked Maildir is refused ([`deliver_target_with`]).
pub fn deliver_target(
    target: &Target,
    sender: &str,
    rcpt: &str,
    message: &[u8],
    pipe_timeout: Duration,
) -> Result<(), Failure> {
    let links = crate::maildir::Links::Refuse;
    deliver_target_with(target, sender, rcpt, message, pipe_timeout, links, None)
}

/// Delivers one copy, with `links` the symlink policy for Maildirs (`[mrelayd]
/// allow_symlinked_maildir`): a Maildir that is a symlink or has symlinked `tmp/`, `new/`,
/// `cur/` is refused by default, a temporary failure naming the path ([`crate::mda`]).
/// `submit` is where Sieve's redirect and vacation go (module doc; the daemon passes its
/// queue); `None` is mdeliver's default, msend.
pub fn deliver_target_with(
    target: &Target,
    sender: &str,
    rcpt: &str,
    message: &[u8],
    pipe_timeout: Duration,
    links: crate::maildir::Links,
    submit: Option<&Arc<dyn Submit>>,
) -> Result<(), Failure> {
    let env = crate::mda::Envelope {
        sender: Some(sender.to_string()),
        recipient: Some(rcpt.to_string()),
    };
    match target {
        Target::Maildir {
            user: Some(user), ..
        } if crate::server::spawn::for_user(user).is_some() => {
            deliver_as_user(user, sender, rcpt, message, pipe_timeout, submit)
        }
        Target::Maildir { path, sieve, .. } => {
            maildir(path, sieve.as_deref(), message, &env, links, submit)
        }
        Target::Pipe { command, ext, user } => pipe(
            command,
            ext.as_deref(),
            user,
            sender,
            rcpt,
            message,
            &env,
            pipe_timeout,
        ),
        // Remote targets are batched per destination by the queue runner, never delivered here.
        Target::Remote(a) => Err(Failure::temp(format!(
            "internal: remote target <{a}> handed to local delivery"
        ))),
    }
}

/// Delivers into the Maildir at `path` through the one writer, filtered by the Sieve script at
/// `sieve` when that file exists (a missing script is no filter, as in Dovecot; a broken one
/// is logged and the message goes to INBOX, as mdeliver does).
fn maildir(
    path: &Path,
    sieve: Option<&Path>,
    message: &[u8],
    env: &crate::mda::Envelope,
    links: crate::maildir::Links,
    submit: Option<&Arc<dyn Submit>>,
) -> Result<(), Failure> {
    let script = sieve
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(crate::mda::sieve::Script::load);
    let opts = crate::mda::Options {
        links,
        sieve: script,
        submit: submit.cloned(),
        ..crate::mda::Options::default()
    };
    match crate::mda::deliver(path, message, env, &opts) {
        Ok(report) => {
            for w in &report.warnings {
                crate::log::line(format_args!("local delivery to {}: {w}", path.display()));
            }
            Ok(())
        }
        Err(e) => {
            let code = exit::code_of(&e);
            let msg = format!("{e:#}");
            // A mail loop or a bad envelope will not get better; anything else (disk full,
            // permissions an admin can fix) is retried.
            if matches!(code, exit::DATAERR | exit::USAGE) {
                Err(Failure::perm(msg))
            } else {
                Err(Failure::temp(msg))
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn pipe(
    command: &str,
    ext: Option<&str>,
    user: &str,
    sender: &str,
    rcpt: &str,
    message: &[u8],
    env: &crate::mda::Envelope,
    timeout: Duration,
) -> Result<(), Failure> {
    let data = crate::mda::prepare(message, env).map_err(|e| {
        if exit::code_of(&e) == exit::TEMPFAIL {
            Failure::temp(format!("{e:#}"))
        } else {
            Failure::perm(format!("{e:#}"))
        }
    })?;
    let (local, domain) = crate::smtp::command::split_address(rcpt);
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env_clear()
        .env("PATH", PIPE_PATH)
        .env("HOME", "/");
    // Envelope values, filtered for the shell, and as they are under RAW_ (module doc).
    let ext = ext.unwrap_or("");
    for (name, value) in [
        ("SENDER", sender),
        ("RECIPIENT", rcpt),
        ("LOCAL", local),
        ("DOMAIN", domain),
        ("USER", user),
        ("EXTENSION", ext),
    ] {
        cmd.env(name, shell_safe(value))
            .env(format!("RAW_{name}"), value);
    }
    cmd.env("EXT", shell_safe(ext));
    let opts = crate::proc::Options {
        stdin: Some(data),
        timeout,
        max_output: MAX_PIPE_OUTPUT as usize,
        capture_stderr: true,
    };
    // A command that does not read all of its input is its own business (EPIPE, crate::proc).
    let outcome = crate::proc::run(cmd, &opts)
        .map_err(|e| Failure::temp(format!("|{command}: cannot start: {e}")))?;
    let mut output = outcome.stdout;
    output.extend_from_slice(&outcome.stderr);
    let output = String::from_utf8_lossy(&output);
    let output = output.split_whitespace().collect::<Vec<_>>().join(" ");
    match outcome.status {
        Status::Exited(0) => Ok(()),
        Status::Exited(c) if c == i32::from(exit::TEMPFAIL) => Err(Failure::temp(format!(
            "|{command}: exit {c} (try again later) {output}"
        ))),
        // EX_NOUSER and friends say what went wrong; RFC 3463 codes for the DSN.
        Status::Exited(c) => Err(Failure::new(
            false,
            format!("|{command}: exit {c} {output}"),
            pipe_status(c),
        )),
        Status::Signaled(_) => Err(Failure::temp(format!(
            "|{command}: killed by a signal {output}"
        ))),
        // The whole process group was killed: the shell's children held our pipes too.
        Status::TimedOut => Err(Failure::temp(format!(
            "|{command}: killed after {}s timeout",
            timeout.as_secs()
        ))),
    }
}

/// The child kind that delivers one message into a system user's Maildir.
pub const DELIVER_CHILD: &str = "deliver";

/// Delivers `message` for system user `user` through a child running as that user (module
/// doc). The child's exit maps back as a pipe's does: 0 delivered, 75 retry, other permanent.
/// Its Sieve submissions are checked and handed to `submit` ([`serve_child`]).
fn deliver_as_user(
    user: &str,
    sender: &str,
    rcpt: &str,
    message: &[u8],
    timeout: Duration,
    submit: Option<&Arc<dyn Submit>>,
) -> Result<(), Failure> {
    let Some(spawner) = crate::server::spawn::for_user(user) else {
        return Err(Failure::temp(format!("no spawner for system user {user}")));
    };
    let what = format!("delivery as {user}");
    let io = |e: io::Error| Failure::temp(format!("{what}: {e}"));
    let (mut to_child, child_in) = std::os::unix::net::UnixStream::pair().map_err(io)?;
    let (from_child, child_out) = std::os::unix::net::UnixStream::pair().map_err(io)?;
    // The child gets the whole time a pipe command would; a stuck one is a retry.
    from_child.set_read_timeout(Some(timeout)).map_err(io)?;
    from_child.set_write_timeout(Some(timeout)).map_err(io)?;
    to_child.set_write_timeout(Some(timeout)).map_err(io)?;
    let pending = spawner
        .spawn(
            DELIVER_CHILD,
            user,
            &[sender, rcpt],
            child_in.into(),
            child_out.into(),
        )
        .map_err(io)?;
    let data = message.to_vec();
    let writer = std::thread::spawn(move || {
        // A child that stops reading has failed and says so in its status.
        let _ = to_child.write_all(&data);
    });
    let limits = Submissions {
        sender,
        max_size: (message.len() as u64).saturating_add(SUBMISSION_SLACK),
        count: 0,
    };
    let output = serve_child(&from_child, limits, submit, user);
    drop(from_child);
    let _ = writer.join();
    let code = pending.wait().map_err(io)?;
    let output = output.split_whitespace().collect::<Vec<_>>().join(" ");
    match code {
        0 => Ok(()),
        c if c == i32::from(exit::TEMPFAIL) => Err(Failure::temp(format!("{what}: {output}"))),
        c => Err(Failure::new(
            false,
            format!("{what}: exit {c} {output}"),
            pipe_status(c),
        )),
    }
}

/// Most messages a system user's delivery child may submit for one delivery (redirects and
/// vacation replies; the script itself is held to fewer, [`crate::mda::sieve::MAX_REDIRECTS`]).
pub const MAX_CHILD_SUBMISSIONS: usize = 32;
/// How much bigger than the delivered message a child's submission may be (a vacation reply
/// quoting it, an editheader'd redirect).
pub const SUBMISSION_SLACK: u64 = 1024 * 1024;
/// First field of a child's submission request line (module doc).
const SUBMIT_TAG: &[u8] = b"SUBMIT\0";

/// What one delivery child may still submit ([`check_submission`]).
struct Submissions<'a> {
    /// The delivery's envelope sender (the only one allowed besides `<>`).
    sender: &'a str,
    /// Largest submission.
    max_size: u64,
    /// Submissions so far.
    count: usize,
}

/// Whether a child may submit `size` bytes from `sender` (module doc); counts it when it may.
fn check_submission(limits: &mut Submissions, sender: &str, size: u64) -> Result<(), String> {
    if !sender.is_empty() && sender != limits.sender {
        return Err(format!(
            "sender <{sender}> is neither the delivery's sender <{}> nor <>",
            limits.sender
        ));
    }
    if size > limits.max_size {
        return Err(format!(
            "{size} bytes, more than the {} allowed",
            limits.max_size
        ));
    }
    if limits.count >= MAX_CHILD_SUBMISSIONS {
        return Err(format!(
            "more than {MAX_CHILD_SUBMISSIONS} messages for one delivery"
        ));
    }
    limits.count += 1;
    Ok(())
}

/// Reads the child's output until it closes it: submission requests are checked, handed to
/// `submit` and answered; every other line is what the child reports (returned, at most
/// [`MAX_PIPE_OUTPUT`] bytes kept). A read error or timeout ends it (the child's exit code
/// then says what happened).
fn serve_child(
    chan: &std::os::unix::net::UnixStream,
    mut limits: Submissions,
    submit: Option<&Arc<dyn Submit>>,
    user: &str,
) -> String {
    let mut reader = io::BufReader::new(chan);
    let mut output = Vec::new();
    loop {
        let mut line = Vec::new();
        match (&mut reader)
            .take(MAX_PIPE_OUTPUT + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Some(request) = line.strip_prefix(SUBMIT_TAG) else {
            let room = (MAX_PIPE_OUTPUT as usize).saturating_sub(output.len());
            output.extend(line.into_iter().take(room));
            continue;
        };
        let request = String::from_utf8_lossy(request.strip_suffix(b"\n").unwrap_or(request));
        let fields: Vec<&str> = request.split('\0').collect();
        let [size, sender, rcpt] = fields.as_slice() else {
            break; // not our protocol: stop listening, the child's status decides
        };
        let Ok(size) = size.parse::<u64>() else {
            break;
        };
        let (sender, rcpt) = (sender.to_string(), rcpt.to_string());
        let checked = check_submission(&mut limits, &sender, size);
        let answer = match checked {
            Err(why) => {
                crate::log::line(format_args!(
                    "delivery as {user}: submission to <{rcpt}> refused: {why}"
                ));
                // Its bytes are skipped, not kept, to stay in step with the child.
                let skipped = io::copy(&mut (&mut reader).take(size), &mut io::sink());
                if skipped.ok() != Some(size) {
                    break;
                }
                Sent::Permanent(why)
            }
            Ok(()) => {
                let mut data = Vec::new();
                let read = (&mut reader).take(size).read_to_end(&mut data);
                if read.is_err() || data.len() as u64 != size {
                    break;
                }
                match submit {
                    None => Sent::Permanent("no submission path in this process".into()),
                    Some(s) => s.submit(&sender, &rcpt, &data),
                }
            }
        };
        let line = match answer {
            Sent::Ok => "OK".to_string(),
            Sent::Temporary(why) => format!("TEMP {why}"),
            Sent::Permanent(why) => format!("PERM {why}"),
        };
        if chan_write(chan, &line).is_err() {
            break;
        }
    }
    String::from_utf8_lossy(&output).into_owned()
}

/// Writes one answer line to a child (line breaks in it become spaces).
fn chan_write(mut chan: &std::os::unix::net::UnixStream, line: &str) -> io::Result<()> {
    let line: String = line
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    chan.write_all(format!("{line}\n").as_bytes())
}

/// The child's side of the submission channel (module doc): requests go to the daemon over
/// the child's stdout socket and each waits for its answer.
#[derive(Debug)]
pub struct ChildSubmit {
    chan: std::sync::Mutex<std::os::unix::net::UnixStream>,
}

impl ChildSubmit {
    /// The channel on this process's stdout (the socket the daemon gave the child).
    pub fn on_stdout() -> io::Result<ChildSubmit> {
        use std::os::fd::AsFd as _;
        let fd = io::stdout().as_fd().try_clone_to_owned()?;
        Ok(ChildSubmit::new(std::os::unix::net::UnixStream::from(fd)))
    }

    /// The channel on `chan`.
    pub fn new(chan: std::os::unix::net::UnixStream) -> ChildSubmit {
        ChildSubmit {
            chan: std::sync::Mutex::new(chan),
        }
    }
}

impl Submit for ChildSubmit {
    fn submit(&self, sender: &str, recipient: &str, message: &[u8]) -> Sent {
        if let Some(refused) = crate::mda::send::bad_envelope(sender, recipient) {
            return refused;
        }
        let _ = io::stdout().flush();
        let chan = self.chan.lock().unwrap_or_else(|e| e.into_inner());
        let mut request = SUBMIT_TAG.to_vec();
        request.extend_from_slice(format!("{}\0{sender}\0{recipient}\n", message.len()).as_bytes());
        request.extend_from_slice(message);
        if let Err(e) = (&*chan).write_all(&request) {
            return Sent::Temporary(format!("asking the daemon to queue it: {e}"));
        }
        let mut answer = Vec::new();
        match io::BufReader::new(&*chan)
            .take(MAX_PIPE_OUTPUT)
            .read_until(b'\n', &mut answer)
        {
            Ok(n) if n > 0 => {}
            Ok(_) => return Sent::Temporary("the daemon closed the channel".into()),
            Err(e) => return Sent::Temporary(format!("waiting for the daemon: {e}")),
        }
        let answer = String::from_utf8_lossy(&answer);
        let answer = answer.trim_end();
        if answer == "OK" {
            Sent::Ok
        } else if let Some(why) = answer.strip_prefix("TEMP ") {
            Sent::Temporary(why.to_string())
        } else {
            Sent::Permanent(answer.strip_prefix("PERM ").unwrap_or(answer).to_string())
        }
    }
}

/// Tells the spawner why a child delivery failed (one line on stdout, its pipe); a spawner gone
/// already cannot be told, and the exit code says enough.
fn report(line: &str) {
    let _ = writeln!(io::stdout(), "{line}");
}

/// `mrelayd __child deliver USER MAILDIR SIEVE SENDER RCPT` (running as the user): delivers
/// stdin (at most `max_size` bytes) into MAILDIR, filtered by the Sieve script SIEVE (`""`:
/// none); the spawner gives MAILDIR and SIEVE from its own lookup of the user. Returns the
/// exit code; a failure is printed on stdout for the daemon.
pub fn child_deliver(args: &[String], max_size: u64, links: crate::maildir::Links) -> u8 {
    let [_user, maildir, sieve, sender, rcpt] = args else {
        report("bad arguments");
        return exit::USAGE;
    };
    let mut message = Vec::new();
    if let Err(e) = io::stdin()
        .take(max_size.saturating_add(1))
        .read_to_end(&mut message)
    {
        report(&format!("reading the message: {e}"));
        return exit::TEMPFAIL;
    }
    if message.len() as u64 > max_size {
        report(&format!("message larger than {max_size} bytes"));
        return exit::DATAERR;
    }
    let target = Target::Maildir {
        path: maildir.into(),
        user: None,
        sieve: Some(sieve.into()).filter(|s: &std::path::PathBuf| !s.as_os_str().is_empty()),
    };
    // Sieve's redirect and vacation go to the daemon (module doc); without the channel they
    // fail, and the delivery says why.
    let submit: Option<Arc<dyn Submit>> = match ChildSubmit::on_stdout() {
        Ok(c) => Some(Arc::new(c)),
        Err(e) => {
            report(&format!("no channel to the daemon: {e}"));
            return exit::TEMPFAIL;
        }
    };
    let result = deliver_target_with(
        &target,
        sender,
        rcpt,
        &message,
        Duration::ZERO,
        links,
        submit.as_ref(),
    );
    match result {
        Ok(()) => exit::OK,
        Err(f) => {
            report(&f.message);
            if f.temporary {
                exit::TEMPFAIL
            } else {
                exit::DATAERR
            }
        }
    }
}

/// RFC 3463 status for a permanent pipe exit code (sysexits.h).
fn pipe_status(code: i32) -> &'static str {
    match u8::try_from(code).unwrap_or(0) {
        exit::NOUSER => "5.1.1",
        exit::NOHOST => "5.1.2",
        exit::DATAERR => "5.6.0",
        exit::NOPERM => "5.7.1",
        _ => "5.3.0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_exit_codes_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let t = Target::Pipe {
            command: format!(
                "cat > {0}; echo \"$SENDER|$RECIPIENT|$EXT|$LOCAL|$DOMAIN\" >> {0}",
                out.display()
            ),
            ext: Some("tag".into()),
            user: "u".into(),
        };
        deliver_target(
            &t,
            "s@x.test",
            "u+tag@y.test",
            b"Subject: a\r\n\r\nb\r\n",
            Duration::from_secs(10),
        )
        .unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            got,
            "Return-Path: <s@x.test>\nDelivered-To: u+tag@y.test\nSubject: a\n\nb\ns@x.test|u+tag@y.test|tag|u+tag|y.test\n"
        );
        let run = |c: &str| {
            deliver_target(
                &Target::Pipe {
                    command: c.into(),
                    ext: None,
                    user: "u".into(),
                },
                "",
                "u@y",
                b"x\r\n",
                Duration::from_secs(1),
            )
        };
        assert!(run("exit 75").unwrap_err().temporary);
        let e = run("echo no such user >&2; exit 67").unwrap_err();
        assert!(!e.temporary && e.message.contains("no such user"), "{e:?}");
        assert!(run("kill -9 $$").unwrap_err().temporary);
        let e = run("sleep 5").unwrap_err();
        assert!(e.temporary && e.message.contains("timeout"));
        // A command that ignores its input is fine.
        run("true").unwrap();
    }

    #[test]
    fn pipe_environment_is_filtered_for_the_shell() {
        assert_eq!(
            shell_safe("$(touch /tmp/x)@a.test"),
            "__touch_/tmp/x_@a.test"
        );
        assert_eq!(
            shell_safe("a`b`;c|d&e>f<g'h\"i\\j k\n"),
            "a_b__c_d_e_f_g_h_i_j_k_"
        );
        assert_eq!(shell_safe(PIPE_ENV_SAFE), PIPE_ENV_SAFE);
        assert_eq!(shell_safe("jö"), "j__");
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let pwned = dir.path().join("pwned");
        let sender = format!("$(touch {})@x.test", pwned.display());
        let t = Target::Pipe {
            // The careless alias: the shell evaluates the variables.
            command: format!(
                "eval echo $SENDER $RECIPIENT $LOCAL $USER $EXT $EXTENSION > {0}; printf '%s\\n' \"$RAW_SENDER\" \"$RAW_LOCAL\" \"$RAW_EXTENSION\" >> {0}",
                out.display()
            ),
            ext: Some("`id`".into()),
            user: "\"u;id\"".into(),
        };
        deliver_target(
            &t,
            &sender,
            "\"u;id\"+`id`@y.test",
            b"x\r\n",
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(!pwned.exists(), "the sender's text ran");
        let got = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = got.lines().collect();
        assert_eq!(lines.len(), 4, "{got}");
        assert!(
            lines[0].starts_with("__touch_/") && !lines[0].contains('$'),
            "{got}"
        );
        assert_eq!(lines[1], sender);
        assert_eq!(lines[2], "\"u;id\"+`id`");
        assert_eq!(lines[3], "`id`");
    }

    #[test]
    fn maildir_delivery_uses_the_shared_writer() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("Maildir");
        let t = Target::Maildir {
            path: md.clone(),
            user: None,
            sieve: None,
        };
        deliver_target(
            &t,
            "s@x.test",
            "u@y.test",
            b"Subject: a\r\n\r\nb\r\n",
            Duration::from_secs(1),
        )
        .unwrap();
        let files: Vec<_> = std::fs::read_dir(md.join("new")).unwrap().collect();
        assert_eq!(files.len(), 1);
        let body = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
        assert_eq!(
            body,
            b"Return-Path: <s@x.test>\nDelivered-To: u@y.test\nSubject: a\n\nb\n"
        );
        // Delivering it again with its own Delivered-To is a loop: permanent.
        let e = deliver_target(
            &t,
            "s@x.test",
            "u@y.test",
            b"Delivered-To: u@y.test\r\n\r\nb\r\n",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(!e.temporary, "{e:?}");
        let e = deliver_target(
            &Target::Remote("a@b".into()),
            "",
            "a@b",
            b"x",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(e.temporary);
    }

    /// The daemon's side of the child channel, against a real queue: what passes the checks
    /// is queued before the child hears OK; a foreign sender, an oversized message and the
    /// submission after the last allowed one are refused, and the channel stays in step.
    #[test]
    fn child_submissions_are_checked_and_queued_before_ok() {
        let dir = tempfile::tempdir().unwrap();
        let queue = crate::queue::Queue::open(dir.path().join("queue")).unwrap();
        let submit: Arc<dyn Submit> = Arc::new(crate::mda::send::ToQueue {
            queue: queue.clone(),
            hostname: "mx.test".into(),
            announce: Box::new(|_| {}),
            sign: None,
        });
        let (daemon, child) = std::os::unix::net::UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let limits = Submissions {
                sender: "s@x.test",
                max_size: 100,
                count: 0,
            };
            serve_child(&daemon, limits, Some(&submit), "u")
        });
        let c = ChildSubmit::new(child);
        assert_eq!(
            c.submit("s@x.test", "r@y.test", b"Subject: a\n\nb\n"),
            Sent::Ok
        );
        assert_eq!(queue.list().unwrap().len(), 1);
        assert!(matches!(
            c.submit("other@x.test", "r@y.test", b"x\n"),
            Sent::Permanent(_)
        ));
        assert!(matches!(
            c.submit("", "r@y.test", &[b'x'; 101]),
            Sent::Permanent(_)
        ));
        for _ in 1..MAX_CHILD_SUBMISSIONS {
            assert_eq!(c.submit("", "r@y.test", b"x\n"), Sent::Ok);
        }
        let last = c.submit("", "r@y.test", b"x\n");
        assert!(
            matches!(&last, Sent::Permanent(w) if w.contains("more than")),
            "{last:?}"
        );
        assert_eq!(queue.list().unwrap().len(), MAX_CHILD_SUBMISSIONS);
        // What the child prints besides requests is its report.
        let _ = writeln!(&*c.chan.lock().unwrap(), "done");
        drop(c);
        assert_eq!(server.join().unwrap().trim(), "done");
        let list = queue.list().unwrap();
        let first = list
            .iter()
            .find(|e| e.envelope.sender == "s@x.test")
            .unwrap();
        let (env, mut reader) = queue.open_message(&first.id).unwrap();
        assert_eq!(env.recipients[0].address, "r@y.test");
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert!(
            text.starts_with("Received: by mx.test (mrelayd, Sieve)\r\n"),
            "{text}"
        );
        assert!(text.ends_with("Subject: a\r\n\r\nb\r\n"), "{text}");
    }
}
