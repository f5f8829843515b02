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
//! Queue entries are processed by [`super::deliver`]; remote targets go to [`super::remote`].

use std::io::{self, Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::Target;
use crate::exit;
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
    deliver_target_with(target, sender, rcpt, message, pipe_timeout, links)
}

/// Delivers one copy, with `links` the symlink policy for Maildirs (`[mrelayd]
/// allow_symlinked_maildir`): a Maildir that is a symlink or has symlinked `tmp/`, `new/`,
/// `cur/` is refused by default, a temporary failure naming the path ([`crate::mda`]).
pub fn deliver_target_with(
    target: &Target,
    sender: &str,
    rcpt: &str,
    message: &[u8],
    pipe_timeout: Duration,
    links: crate::maildir::Links,
) -> Result<(), Failure> {
    let env = crate::mda::Envelope {
        sender: Some(sender.to_string()),
        recipient: Some(rcpt.to_string()),
    };
    match target {
        Target::Maildir {
            user: Some(user), ..
        } if crate::server::spawn::for_user(user).is_some() => {
            deliver_as_user(user, sender, rcpt, message, pipe_timeout)
        }
        Target::Maildir { path, sieve, .. } => {
            maildir(path, sieve.as_deref(), message, &env, links)
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
) -> Result<(), Failure> {
    let script = sieve
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .map(crate::mda::sieve::Script::load);
    let opts = crate::mda::Options {
        links,
        sieve: script,
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
fn deliver_as_user(
    user: &str,
    sender: &str,
    rcpt: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<(), Failure> {
    let Some(spawner) = crate::server::spawn::for_user(user) else {
        return Err(Failure::temp(format!("no spawner for system user {user}")));
    };
    let what = format!("delivery as {user}");
    let io = |e: io::Error| Failure::temp(format!("{what}: {e}"));
    let (mut to_child, child_in) = std::os::unix::net::UnixStream::pair().map_err(io)?;
    let (mut from_child, child_out) = std::os::unix::net::UnixStream::pair().map_err(io)?;
    // The child gets the whole time a pipe command would; a stuck one is a retry.
    from_child.set_read_timeout(Some(timeout)).map_err(io)?;
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
    let mut output = Vec::new();
    let _ = (&mut from_child)
        .take(MAX_PIPE_OUTPUT)
        .read_to_end(&mut output);
    drop(from_child);
    let _ = writer.join();
    let code = pending.wait().map_err(io)?;
    let output = String::from_utf8_lossy(&output);
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
    match deliver_target_with(&target, sender, rcpt, &message, Duration::ZERO, links) {
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
}
