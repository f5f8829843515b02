//! Content filtering, the unix way: a command per listener role that reads each message on
//! stdin before the final reply to DATA or the last BDAT (as qmail-qfilter and Postfix's
//! before-queue filters do), and decides by its exit code (sysexits):
//!
//! | the filter | the client gets | the queue |
//! |---|---|---|
//! | exit 0 | `250` after the commit's fsync | the message (with the filter's header lines) |
//! | exit 1 | `550 5.7.1` and the filter's first stderr line (sanitised, bounded) | nothing |
//! | exit 75 (EX_TEMPFAIL) | `451 4.7.1` (its first stderr line, if any) | nothing |
//! | any other exit, a signal, the timeout, a start failure, bad header output | `451 4.7.1` | nothing |
//!
//! RFC 3463 §3.8: X.7.1 "delivery not authorized, message refused". One decision per message,
//! whatever the number of recipients (as Postfix's before-queue filters), so the reply to the
//! end of the content stays the one reply RFC 5321 §4.1.1.4 and RFC 3030 §2 give it, in order
//! with PIPELINING (the session waits for the decision before it reads on). Nothing is lost:
//! a temporary failure leaves nothing queued and the client retries (RFC 5321 §4.2.5).
//!
//! The filter is `[mrelayd.filter.NAME]`: `command` is an argv (no shell), run through
//! [`crate::proc`] (its own process group, killed whole at `timeout_secs`) with the spooled
//! message on stdin, read from the queue's `tmp/` file ([`queue::Incoming::message_file`]:
//! our Received: header, then the content as stored), so no message is held in memory. Its
//! environment is clean: `PATH` ([`super::local::PIPE_PATH`]), `HOME=/`, and the envelope as
//! qmail-qfilter and Postfix's pipe give it: `SENDER`, `RECIPIENTS` (one per line),
//! `RECIPIENT` (only when there is exactly one), `CLIENT_ADDRESS`, `HELO`, `AUTH_USER`,
//! `QUEUE_ID`, each only when known. `roles` names the listener roles it runs on (default
//! smtp); a role has at most one filter, and its program must exist (a bare name in that
//! `PATH`) and `timeout_secs` be at least 1 (checked at start, exit 78: else every message
//! would be tempfailed).
//!
//! Its stdout is read and dropped, unless `headers = true`: then stdout must be a block of
//! header lines ending with an empty line (`X-Spam-Status: No ...` + blank line), which
//! [`header_block`] checks (RFC 5322 §2.2 field names, §2.2.3 folding, §2.1.1 line length,
//! [`MAX_HEADER_BLOCK`] in all, nothing after the empty line) and the queue puts after our
//! Received: header ([`queue::Incoming::insert_after_header`]). A filter whose output is not
//! such a block (a whole message, say) is a broken filter: 451 4.7.1 and a log line.

use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use serde::Deserialize;

use super::{RelayConfig, Role};
use crate::config::Config;
use crate::log;
use crate::proc::{self, Status};
use crate::queue;
use crate::server::daemon::ListenerRole as _;
use crate::smtp::reply::Reply;

/// Default `timeout_secs`: well inside the 10 minutes a client waits for the reply to the end
/// of DATA (RFC 5321 §4.5.3.2.6).
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// Most octets of header lines a filter may return (`headers = true`).
pub const MAX_HEADER_BLOCK: usize = 16 * 1024;
/// Longest header line, CRLF not counted (RFC 5322 §2.1.1).
pub const MAX_LINE: usize = 998;
/// Longest text taken from the filter's stderr into a reply.
pub const MAX_REASON: usize = 200;
/// Stderr kept from a filter (only its first line is used).
const MAX_STDERR: usize = 4096;

/// `[mrelayd.filter.NAME]`: one content filter (module doc).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// The program and its arguments (no shell: `["spamassassin", "-L", "-e", "1"]`).
    pub command: Vec<String>,
    /// The listener roles whose messages it sees.
    pub roles: Vec<Role>,
    /// Then its process group is killed and the client gets 451 4.7.1.
    pub timeout_secs: u64,
    /// Its stdout is header lines to add (a block ending with an empty line); else ignored.
    pub headers: bool,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            command: Vec::new(),
            roles: vec![Role::Smtp],
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            headers: false,
        }
    }
}

/// A configured filter with its name (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// `NAME` of `[mrelayd.filter.NAME]`.
    pub name: String,
    /// Its settings.
    pub config: FilterConfig,
}

/// The filter of `role` in `relay`, if any (the first; [`check`] refuses a second).
pub fn for_role(relay: &RelayConfig, role: Role) -> Option<Filter> {
    relay
        .filter
        .iter()
        .find(|(_, f)| f.roles.contains(&role))
        .map(|(name, f)| Filter {
            name: name.clone(),
            config: f.clone(),
        })
}

/// The filters' settings that parse but cannot work: an empty `command`, a role given to two
/// filters. Each is a configuration error naming the key (exit 78).
pub fn check(config: &Config, relay: &RelayConfig) -> Result<()> {
    let mut seen: Vec<(Role, &str)> = Vec::new();
    for (name, f) in &relay.filter {
        if f.command.first().is_none_or(|p| p.is_empty()) {
            return Err(config.key_error(
                &["mrelayd", "filter", name, "command"],
                "a filter needs a command: the program and its arguments, e.g. \
                 [\"spamassassin\", \"-L\", \"-e\", \"1\"]",
            ));
        }
        if let Err(why) = findable(&f.command[0]) {
            return Err(config.key_error(&["mrelayd", "filter", name, "command"], &why));
        }
        if f.timeout_secs == 0 {
            // 0 would kill every filter before it read the message: all mail tempfailed.
            return Err(config.key_error(
                &["mrelayd", "filter", name, "timeout_secs"],
                "must be at least 1 (seconds a filter may take)",
            ));
        }
        for role in &f.roles {
            if let Some((_, other)) = seen.iter().find(|(r, _)| r == role) {
                return Err(config.key_error(
                    &["mrelayd", "filter", name, "roles"],
                    &format!(
                        "role {} has a filter already ({other}): one filter per role",
                        role.name()
                    ),
                ));
            }
            seen.push((*role, name));
        }
    }
    Ok(())
}

/// Whether `program` can be started as the filter runs it (no shell): a name with a `/` is
/// that file, a bare name is looked up in the filter's own `PATH` ([`super::local::PIPE_PATH`],
/// not the daemon's). A filter that cannot start would tempfail every message forever, so it
/// is refused at start; the error says why.
fn findable(program: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = std::path::Path::new(program);
        return match std::fs::metadata(path) {
            Err(e) => Err(format!("{program}: {e}")),
            Ok(_) if !executable(path) => Err(format!("{program}: not an executable file")),
            Ok(_) => Ok(()),
        };
    }
    let path = super::local::PIPE_PATH;
    if path
        .split(':')
        .any(|dir| executable(&std::path::Path::new(dir).join(program)))
    {
        return Ok(());
    }
    Err(format!(
        "{program}: no such program in the filter's PATH ({path}); give its full path"
    ))
}

/// What the filter is told about the message (its environment, module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// The envelope sender (empty for `<>`).
    pub sender: String,
    /// The envelope recipients.
    pub recipients: Vec<String>,
    /// The client's IP address.
    pub client: Option<String>,
    /// Its HELO/EHLO name.
    pub helo: Option<String>,
    /// The authenticated user.
    pub user: Option<String>,
    /// The queue id the message gets if accepted.
    pub queue_id: String,
}

impl Env {
    /// The variables, name and value (module doc).
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("SENDER", self.sender.clone()),
            ("RECIPIENTS", self.recipients.join("\n")),
            ("QUEUE_ID", self.queue_id.clone()),
        ];
        if let [one] = self.recipients.as_slice() {
            v.push(("RECIPIENT", one.clone()));
        }
        for (name, value) in [
            ("CLIENT_ADDRESS", &self.client),
            ("HELO", &self.helo),
            ("AUTH_USER", &self.user),
        ] {
            if let Some(value) = value {
                v.push((name, value.clone()));
            }
        }
        v
    }
}

/// The filter's decision on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Queue it, with these header lines (CRLF, possibly none) after our Received: header.
    Accept(Vec<u8>),
    /// Refuse it with this reply (550 5.7.1 or 451 4.7.1).
    Refuse(Reply),
}

/// The reply text for a filter failure that is ours, not the message's.
const FAILED: &str = "Content filter unavailable, try again later";

/// Maps how the filter ended to its [`Verdict`] (the table of the module doc), with a
/// description for the log. Sans-IO: the outcome is [`proc::run`]'s.
pub fn verdict(config: &FilterConfig, outcome: &proc::Outcome) -> (Verdict, String) {
    let tempfail = |text: &str| Verdict::Refuse(Reply::new(451, Some((4, 7, 1)), text));
    let reason = reason(&outcome.stderr);
    let said = reason
        .as_deref()
        .map_or(String::new(), |r| format!(": {r}"));
    match outcome.status {
        Status::Exited(0) if !config.headers => (Verdict::Accept(Vec::new()), "accepted".into()),
        Status::Exited(0) => match header_block(&outcome.stdout) {
            Ok(block) => {
                let n = block.windows(2).filter(|w| w == b"\r\n").count();
                (
                    Verdict::Accept(block),
                    format!("accepted, {n} header lines added"),
                )
            }
            Err(why) => (
                tempfail(FAILED),
                format!("exit 0 but bad header output: {why}"),
            ),
        },
        Status::Exited(1) => (
            Verdict::Refuse(Reply::new(
                550,
                Some((5, 7, 1)),
                reason
                    .as_deref()
                    .unwrap_or("Message content rejected by filter"),
            )),
            format!("rejected{said}"),
        ),
        Status::Exited(75) => (
            tempfail(reason.as_deref().unwrap_or("Try again later")),
            format!("exit 75 (try again later){said}"),
        ),
        Status::Exited(c) => (tempfail(FAILED), format!("exit {c}{said}")),
        Status::Signaled(s) => (tempfail(FAILED), format!("killed by signal {s}{said}")),
        Status::TimedOut => (
            tempfail(FAILED),
            format!(
                "no decision within {}s: its process group was killed",
                config.timeout_secs.max(1)
            ),
        ),
    }
}

/// The first line of `stderr` fit for a reply: printable ASCII only (others dropped, so no
/// CR/LF can start a line of its own), trimmed, at most [`MAX_REASON`] characters; `None`
/// when nothing is left.
pub fn reason(stderr: &[u8]) -> Option<String> {
    let first = stderr.split(|&b| b == b'\n').next().unwrap_or_default();
    let text: String = first
        .iter()
        .filter(|b| (0x20..0x7f).contains(*b))
        .map(|&b| char::from(b))
        .take(MAX_REASON)
        .collect();
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// Checks a filter's stdout as a block of header lines ending with an empty line (RFC 5322
/// §2.2: `name:` of printable ASCII but the colon, continuation lines starting with a space or
/// tab, §2.2.3; lines of at most [`MAX_LINE`] octets, §2.1.1; no NUL, no bare CR, no other
/// control character but tab; at most [`MAX_HEADER_BLOCK`] octets; nothing after the empty
/// line). LF or CRLF line ends in, CRLF out, without the empty line.
pub fn header_block(out: &[u8]) -> Result<Vec<u8>, String> {
    if out.len() > MAX_HEADER_BLOCK {
        return Err(format!("more than {MAX_HEADER_BLOCK} octets"));
    }
    let mut block = Vec::with_capacity(out.len() + 16);
    let mut rest = out;
    let mut first = true;
    loop {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err("no empty line ends the header lines".into());
        };
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[end + 1..];
        if line.is_empty() {
            break;
        }
        if line.len() > MAX_LINE {
            return Err(format!("a line longer than {MAX_LINE} octets"));
        }
        if line.iter().any(|&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
            return Err("a control character in a header line".into());
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if first {
                return Err("a continuation line without a field before it".into());
            }
            if line.iter().all(|&b| b == b' ' || b == b'\t') {
                // RFC 5322 §3.2.2: a folded line may not be white space only.
                return Err("a continuation line of white space only".into());
            }
        } else {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err("a line that is no header field (no colon)".into());
            };
            let name = &line[..colon];
            if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
                return Err("a header field name that is not printable ASCII".into());
            }
        }
        first = false;
        block.extend_from_slice(line);
        block.extend_from_slice(b"\r\n");
    }
    if !rest.is_empty() {
        return Err("output after the empty line (a whole message?)".into());
    }
    Ok(block)
}

/// Runs `filter` on the message received so far into `incoming` and applies its decision
/// (module doc): `Ok` with the message (and the filter's header lines in it) to commit, or the
/// reply refusing it (the `Incoming` is dropped, so nothing stays in the queue). `who` names
/// the client in the log line every decision gets.
pub async fn apply(
    filter: &Filter,
    mut incoming: queue::Incoming,
    env: &Env,
    who: &str,
) -> Result<queue::Incoming, Reply> {
    let name = &filter.name;
    let id = incoming.id().to_string();
    let local_error = |what: &str, e: &dyn std::fmt::Display| {
        log::line(format_args!("{id}: filter {name}: {what}: {e}"));
        Reply::new(451, Some((4, 7, 1)), FAILED)
    };
    let stdin = incoming
        .message_file()
        .map_err(|e| local_error("reading the queue file", &e))?;
    let c = &filter.config;
    let Some((program, args)) = c.command.split_first() else {
        return Err(local_error("no command", &"empty"));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env("PATH", super::local::PIPE_PATH)
        .env("HOME", "/");
    for (k, v) in env.vars() {
        cmd.env(k, v);
    }
    let opts = proc::Options {
        stdin: None,
        timeout: Duration::from_secs(c.timeout_secs.max(1)),
        max_output: (MAX_HEADER_BLOCK + 1).max(MAX_STDERR),
        capture_stderr: true,
    };
    let outcome = proc::run_file_async(cmd, stdin, opts)
        .await
        .map_err(|e| local_error(&format!("cannot run {program}"), &e))?;
    let (v, said) = verdict(c, &outcome);
    log::line(format_args!("{id}: filter {name}: {said} (client={who})"));
    match v {
        Verdict::Refuse(reply) => Err(reply),
        Verdict::Accept(block) if block.is_empty() => Ok(incoming),
        Verdict::Accept(block) => {
            // A copy of the file: off the session's task.
            let done = tokio::task::spawn_blocking(move || {
                incoming.insert_after_header(&block).map(|()| incoming)
            })
            .await;
            match done {
                Ok(Ok(incoming)) => Ok(incoming),
                Ok(Err(e)) => Err(local_error("adding its header lines", &e)),
                Err(e) => Err(local_error("adding its header lines", &e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: Status, stdout: &[u8], stderr: &[u8]) -> proc::Outcome {
        proc::Outcome {
            status,
            stdout: stdout.to_vec(),
            stderr: stderr.to_vec(),
            pid: 1,
        }
    }

    fn reply_of(v: &Verdict) -> String {
        match v {
            Verdict::Refuse(r) => String::from_utf8(r.to_bytes()).unwrap(),
            Verdict::Accept(b) => format!("accept {}", String::from_utf8_lossy(b)),
        }
    }

    #[test]
    fn exit_codes_map_to_replies() {
        let plain = FilterConfig::default();
        let cases: &[(Status, &[u8], &str)] = &[
            (Status::Exited(0), b"", "accept "),
            (
                Status::Exited(1),
                b"spam detected\r\nsecond line\n",
                "550 5.7.1 spam detected\r\n",
            ),
            (
                Status::Exited(1),
                b"",
                "550 5.7.1 Message content rejected by filter\r\n",
            ),
            (Status::Exited(75), b"busy\n", "451 4.7.1 busy\r\n"),
            (Status::Exited(75), b"", "451 4.7.1 Try again later\r\n"),
            (
                Status::Exited(2),
                b"oops",
                &format!("451 4.7.1 {FAILED}\r\n"),
            ),
            (Status::Exited(100), b"", &format!("451 4.7.1 {FAILED}\r\n")),
            (
                Status::Signaled(11),
                b"",
                &format!("451 4.7.1 {FAILED}\r\n"),
            ),
            (Status::TimedOut, b"", &format!("451 4.7.1 {FAILED}\r\n")),
        ];
        for (status, stderr, want) in cases {
            let (v, _) = verdict(&plain, &outcome(*status, b"ignored\n", stderr));
            assert_eq!(reply_of(&v), *want, "{status:?}");
        }
        // Stdout is ignored without headers, used with them.
        let headers = FilterConfig {
            headers: true,
            ..FilterConfig::default()
        };
        let (v, log) = verdict(&headers, &outcome(Status::Exited(0), b"X-F: ok\n\n", b""));
        assert_eq!(v, Verdict::Accept(b"X-F: ok\r\n".to_vec()));
        assert!(log.contains("1 header lines"), "{log}");
        let (v, log) = verdict(&headers, &outcome(Status::Exited(0), b"X-F: ok\n", b""));
        assert_eq!(reply_of(&v), format!("451 4.7.1 {FAILED}\r\n"));
        assert!(log.contains("no empty line"), "{log}");
    }

    #[test]
    fn reasons_are_sanitised_and_bounded() {
        assert_eq!(reason(b"  a\x1b[31mred\x07 \r\nnext").unwrap(), "a[31mred");
        assert_eq!(reason(b"\n"), None);
        assert_eq!(reason(b"\xff\xfe"), None);
        let long = vec![b'x'; 5000];
        assert_eq!(reason(&long).unwrap().len(), MAX_REASON);
        // No line of its own can be smuggled into the reply.
        let (v, _) = verdict(
            &FilterConfig::default(),
            &outcome(Status::Exited(1), b"", b"no\r250 ok"),
        );
        assert_eq!(reply_of(&v), "550 5.7.1 no250 ok\r\n");
    }

    #[test]
    fn header_blocks() {
        let ok: &[(&[u8], &[u8])] = &[
            (b"\n", b""),
            (b"\r\n", b""),
            (b"X-A: 1\nX-B: 2\r\n\n", b"X-A: 1\r\nX-B: 2\r\n"),
            (
                b"X-Spam-Status: No, score=0.1\n\ttests=NONE\n\n",
                b"X-Spam-Status: No, score=0.1\r\n\ttests=NONE\r\n",
            ),
            (b"X-Empty:\n\n", b"X-Empty:\r\n"),
            (
                "X-U: caf\u{e9}\n\n".as_bytes(),
                "X-U: caf\u{e9}\r\n".as_bytes(),
            ),
        ];
        for (input, want) in ok {
            assert_eq!(
                header_block(input).as_deref(),
                Ok(*want),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let long = [b"X-L: ".as_slice(), &[b'a'; 1000], b"\n\n"].concat();
        let big = b"X-A: 1\n".repeat(MAX_HEADER_BLOCK / 7 + 1);
        let bad: &[&[u8]] = &[
            b"",
            b"X-A: 1\n",
            b"X-A: 1",
            b" folded first\n\n",
            b"no colon here\n\n",
            b": no name\n\n",
            b"X A: space in name\n\n",
            b"X-A: 1\n \t\n\n",
            b"X-A: nul\0\n\n",
            b"X-A: bare\rcr\n\n",
            b"X-A: 1\n\nbody\n",
            &long,
            &big,
        ];
        for input in bad {
            assert!(
                header_block(input).is_err(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn environment() {
        let mut env = Env {
            sender: "s@r.test".into(),
            recipients: vec!["a@x.test".into()],
            client: Some("192.0.2.1".into()),
            helo: Some("h.test".into()),
            user: None,
            queue_id: "Q".into(),
        };
        let vars = env.vars();
        let get = |vars: &[(&str, String)], k: &str| {
            vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        assert_eq!(get(&vars, "RECIPIENT").as_deref(), Some("a@x.test"));
        assert_eq!(get(&vars, "CLIENT_ADDRESS").as_deref(), Some("192.0.2.1"));
        assert_eq!(get(&vars, "AUTH_USER"), None);
        env.recipients.push("b@x.test".into());
        let vars = env.vars();
        assert_eq!(get(&vars, "RECIPIENT"), None);
        assert_eq!(
            get(&vars, "RECIPIENTS").as_deref(),
            Some("a@x.test\nb@x.test")
        );
    }
}
