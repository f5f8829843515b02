//! Submitting the messages Sieve's redirect and vacation send: the one [`Submit`] interface
//! [`super::deliver`] uses, with its three ways to submit:
//! - [`Sendmail`]: a sendmail-compatible command (msend by default, mdeliver's `--sendmail`),
//!   run through [`crate::proc`];
//! - [`ToQueue`]: straight into mrelayd's own queue ([`crate::queue`]), fsynced before it counts
//!   as sent (mrelayd's local delivery inside the daemon);
//! - the daemon over a delivery child's socket, for a system user's child that cannot write the
//!   queue (`crate::relay::local`, which implements [`Submit`] for that channel).
//!
//! The command is the program and its arguments separated by white space (no shell, as
//! Dovecot's `sendmail_path`); `-i -f SENDER -- RECIPIENT` is added, `-f '<>'` for the null
//! sender, and the message goes to its stdin. Exit 0 is sent; 75 (EX_TEMPFAIL), a signal or the
//! [`TIMEOUT`] is a temporary failure; anything else (a refused recipient, a configuration
//! error, a command that cannot be started) is permanent.

use std::process::Command;
use std::time::Duration;

use crate::exit;
use crate::proc;

/// How long the command may take before it is killed (a temporary failure).
pub const TIMEOUT: Duration = Duration::from_secs(120);
/// Most bytes of its output kept for the error message.
const MAX_OUTPUT: usize = 4096;

/// A way to submit one message Sieve sends (module doc); `sender` `""` is the null sender.
pub trait Submit: std::fmt::Debug + Send + Sync {
    /// Submits `message` (LF line ends, as stored) from `sender` to `recipient`; [`Sent::Ok`]
    /// only once the message is the submission path's responsibility (durably queued).
    fn submit(&self, sender: &str, recipient: &str, message: &[u8]) -> Sent;
}

/// Submission through a sendmail-compatible command (program and arguments; [`submit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sendmail(pub Vec<String>);

impl Default for Sendmail {
    fn default() -> Sendmail {
        Sendmail(default_command())
    }
}

impl Submit for Sendmail {
    fn submit(&self, sender: &str, recipient: &str, message: &[u8]) -> Sent {
        if let Some(refused) = bad_envelope(sender, recipient) {
            return refused;
        }
        submit(&self.0, sender, recipient, message)
    }
}

/// Submission into mrelayd's own queue: the message gets a `Received:` line of ours (RFC 5321
/// section 4.4: a hop, counted by the hop limit), CRLF line ends, and is committed (fsynced,
/// file and directory) before [`Sent::Ok`]; `announce` hears the new queue id (the queue
/// runner's wake-up), so it is delivered at once.
pub struct ToQueue {
    /// The queue.
    pub queue: crate::queue::Queue,
    /// Our host name (`by` of the `Received:` line).
    pub hostname: String,
    /// Called with each queued id.
    pub announce: Box<dyn Fn(&str) + Send + Sync>,
    /// Header fields to put on top of a message (CRLF line ends) before it is queued: its
    /// DKIM signature, when mrelayd has keys for it.
    pub sign: Option<Sign>,
}

/// What [`ToQueue::sign`] is: the header fields to add on top of a message (CRLF line ends).
pub type Sign = Box<dyn Fn(&[u8]) -> String + Send + Sync>;

impl std::fmt::Debug for ToQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToQueue")
            .field("queue", &self.queue.root())
            .field("hostname", &self.hostname)
            .finish()
    }
}

/// The refusal of an envelope with a line break or NUL in an address (it could inject header
/// lines or protocol fields), `None` when both are clean: every [`Submit`] checks this first.
pub fn bad_envelope(sender: &str, recipient: &str) -> Option<Sent> {
    [sender, recipient]
        .iter()
        .any(|a| a.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)))
        .then(|| Sent::Permanent("address contains a line break or NUL".into()))
}

impl Submit for ToQueue {
    fn submit(&self, sender: &str, recipient: &str, message: &[u8]) -> Sent {
        if let Some(refused) = bad_envelope(sender, recipient) {
            return refused;
        }
        if recipient.trim().is_empty() {
            return Sent::Permanent("no recipient".into());
        }
        let now = crate::clock::now();
        let envelope = crate::queue::Envelope {
            sender: sender.to_string(),
            recipients: vec![crate::queue::Recipient {
                address: recipient.trim().to_string(),
                notify: None,
                orcpt: None,
            }],
            time: now,
            smtputf8: !sender.is_ascii() || !recipient.is_ascii(),
            // A vacation reason or a redirected message may be 8-bit (RFC 6152).
            body: (!message.is_ascii()).then_some(crate::envelope::Body::EightBitMime),
            ..Default::default()
        };
        let id = crate::queue::new_id();
        let header = format!(
            "Received: by {} (mrelayd, Sieve)\r\n\tid {id}\r\n\tfor <{}>;\r\n\t{}\r\n",
            self.hostname,
            recipient.trim(),
            crate::clock::rfc5322_date(now)
        );
        let data = crate::rfc5322::to_crlf(message);
        // The signature on top, above our Received: line (as at the end of DATA).
        let header = match &self.sign {
            Some(sign) => sign(&data) + &header,
            None => header,
        };
        match self
            .queue
            .enqueue_with_id(&id, &envelope, header.as_bytes(), &data)
        {
            Ok(()) => {
                (self.announce)(&id);
                Sent::Ok
            }
            Err(e) => Sent::Temporary(format!("queueing the message failed: {e}")),
        }
    }
}

/// How a submission went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The command took the message.
    Ok,
    /// Worth trying again later (exit 75, killed, timed out); the text says why.
    Temporary(String),
    /// Will not get better by retrying; the text says why.
    Permanent(String),
}

/// The default command: `msend` next to the running program (mdeliver and msend are installed
/// together), else `msend` from `PATH`.
pub fn default_command() -> Vec<String> {
    let sibling = std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("msend"))
        .filter(|p| p.is_file());
    vec![sibling.map_or_else(|| "msend".to_string(), |p| p.display().to_string())]
}

/// Splits a configured command line into program and arguments (white space; empty → none).
pub fn parse_command(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

/// Runs `command` to submit `message` from `sender` (`""` is the null sender) to `recipient`.
pub fn submit(command: &[String], sender: &str, recipient: &str, message: &[u8]) -> Sent {
    let Some((program, args)) = command.split_first() else {
        return Sent::Permanent("no sendmail command".into());
    };
    let mut cmd = Command::new(program);
    cmd.args(args).args([
        "-i",
        "-f",
        if sender.is_empty() { "<>" } else { sender },
        "--",
        recipient,
    ]);
    let opts = proc::Options {
        stdin: Some(message.to_vec()),
        timeout: TIMEOUT,
        max_output: MAX_OUTPUT,
        capture_stderr: true,
    };
    let out = match proc::run(cmd, &opts) {
        Ok(o) => o,
        Err(e) => return Sent::Permanent(format!("cannot run {program}: {e}")),
    };
    let said = || {
        let text = String::from_utf8_lossy(&out.stderr);
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else {
            format!(": {}", text.lines().last().unwrap_or_default())
        }
    };
    match out.status {
        proc::Status::Exited(0) => Sent::Ok,
        proc::Status::Exited(c) if c == i32::from(exit::TEMPFAIL) => {
            Sent::Temporary(format!("{program} exited {c}{}", said()))
        }
        proc::Status::Exited(c) => Sent::Permanent(format!("{program} exited {c}{}", said())),
        proc::Status::Signaled(s) => Sent::Temporary(format!("{program} killed by signal {s}")),
        proc::Status::TimedOut => Sent::Temporary(format!(
            "{program} took longer than {} s and was killed",
            TIMEOUT.as_secs()
        )),
    }
}
