//! mfetch: fetch mail from POP3 and IMAP servers into a Maildir or an MDA, never losing or
//! duplicating a message.
//!
//! - [`account`]: the `[mfetch]` section, its accounts, the `mfetch URL` form, one [`Job`]
//!   per account.
//! - [`pop3`] (sans-IO): the POP3 client protocol; [`pop3_fetch`] runs it over a [`conn::Conn`].
//! - [`imap`] (sans-IO): the IMAP client protocol, message bodies streamed; [`imap_fetch`]
//!   runs it over a [`conn::Conn`].
//! - [`conn`]: a connection over the one client transport ([`crate::net::client`]).
//! - [`run_idle`] (`--idle`): each account fetched, then IMAP IDLE ([`imap_fetch::watch`]) or
//!   polling, reconnecting after temporary failures with backoff, until SIGTERM/SIGINT.
//! - [`state`]: the per-account state file (what was fetched), locked for the run.
//! - [`dest`]: the Maildir (the one writer, with a tag per message so a rerun finds what a
//!   killed run delivered) or the MDA.
//!
//! The order of every message's life: fetched, stored durably (fsync), recorded in the
//! state (fdatasync), and only then deleted on the server (POP3 DELE + QUIT, IMAP STORE
//! \Deleted + UID EXPUNGE, or MOVE).
//!
//! Exit codes (several accounts: the most serious of theirs, 78 > 77 > 69 > 75 > 0): 0 fetched
//! or nothing new, 75 temporary trouble (network, time limits, a server's temporary refusal,
//! an MDA's 75, another mfetch on the account), 77 authentication failed, 78 bad
//! configuration, 69 the server refuses (no TLS, a hostile response).

pub mod account;
pub mod conn;
pub mod dest;
pub mod imap;
pub mod imap_fetch;
pub mod pop3;
pub mod pop3_fetch;
pub mod state;

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

pub use account::Job;
use account::{PasswordSource, Proto};

use crate::exit;

/// Largest message accepted from a server.
pub const MAX_MESSAGE: usize = 512 * 1024 * 1024;

/// What one account's run did.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Messages delivered.
    pub fetched: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Messages deleted (or moved) on the server.
    pub deleted: usize,
    /// Messages a killed earlier run had delivered, found in the Maildir and recorded.
    pub found: usize,
    /// Folders skipped because STATUS showed nothing new.
    pub unchanged: usize,
    /// Why something was left for the next run (an MDA's 75).
    pub later: Option<String>,
}

/// The progress bar of one account (indicatif, only on a terminal): messages done of those to
/// fetch, and the bytes stored with their rate (IMAP does not say sizes before the fetch, so the
/// bar counts messages and the bytes are told beside it).
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    bytes: std::sync::atomic::AtomicU64,
    since: std::time::Instant,
}

impl Progress {
    /// No bar.
    pub fn none() -> Progress {
        Progress::with(None)
    }

    fn with(bar: Option<indicatif::ProgressBar>) -> Progress {
        Progress {
            bar,
            bytes: std::sync::atomic::AtomicU64::new(0),
            since: std::time::Instant::now(),
        }
    }

    fn bar(multi: &indicatif::MultiProgress, name: &str) -> Progress {
        let bar = multi.add(indicatif::ProgressBar::new(0));
        let style = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} msgs {wide_msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        bar.set_prefix(name.to_string());
        Progress::with(Some(bar))
    }

    /// `messages` more to fetch (a later folder adds its own).
    pub fn start(&self, messages: u64) {
        if let Some(b) = &self.bar {
            b.inc_length(messages);
        }
    }

    /// One message of `bytes` stored.
    pub fn inc(&self, bytes: u64) {
        use std::sync::atomic::Ordering;
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(b) = &self.bar {
            b.inc(1);
            let secs = self.since.elapsed().as_secs_f64().max(0.001);
            // Whole bytes per second: the fraction is noise in a progress line.
            let rate = (total as f64 / secs) as u64;
            b.set_message(format!(
                "{} {}/s",
                indicatif::HumanBytes(total),
                indicatif::HumanBytes(rate)
            ));
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// How much mfetch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    /// Default: a progress bar and a summary line per account on a terminal, else errors only.
    Normal,
    /// `-v`: a summary line per account always, and what the session does.
    Verbose,
}

/// The rank of an exit code (higher wins when accounts disagree).
fn rank(code: u8) -> u8 {
    match code {
        exit::OK => 0,
        exit::TEMPFAIL => 1,
        exit::UNAVAILABLE => 2,
        exit::NOPERM => 4,
        exit::CONFIG => 5,
        _ => 3,
    }
}

/// The more serious of two exit codes (78 > 77 > 69 > 75 > 0).
pub fn worse(a: u8, b: u8) -> u8 {
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Reads a password from the terminal without echo.
fn prompt(question: &str) -> std::io::Result<String> {
    use rustix::termios::{self, LocalModes, OptionalActions};
    use std::io::{BufRead as _, Write as _};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")?;
    let mut out = &tty;
    out.write_all(question.as_bytes())?;
    out.flush()?;
    let saved = termios::tcgetattr(&tty)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    termios::tcsetattr(&tty, OptionalActions::Flush, &quiet)?;
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = termios::tcsetattr(&tty, OptionalActions::Flush, &saved);
    let _ = out.write_all(b"\n");
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The job's password: its command, else `~/.netrc`, else a prompt when stdin is a terminal.
async fn password(job: &Job) -> Result<String> {
    match &job.password {
        PasswordSource::Command(cmd, timeout) => {
            crate::outbound::password::password_from_command_async(cmd, *timeout)
                .await
                .map_err(|e| exit::fail(exit::CONFIG, format!("password command: {e}")))
        }
        PasswordSource::NetrcOrPrompt => {
            if let Some(p) = crate::msend::netrc::password_for(&job.url.host, &job.user) {
                return Ok(p);
            }
            if std::io::stdin().is_terminal() {
                let q = format!("Password for {}@{}: ", job.user, job.url.host);
                return tokio::task::spawn_blocking(move || prompt(&q))
                    .await
                    .map_err(|e| exit::fail(exit::SOFTWARE, e.to_string()))?
                    .map_err(|e| exit::fail(exit::CONFIG, format!("password prompt: {e}")));
            }
            Err(exit::fail(
                exit::CONFIG,
                format!(
                    "no password for {}@{}: use a password command or ~/.netrc",
                    job.user, job.url.host
                ),
            ))
        }
    }
}

/// One account from start to end: lock its state, log in, fetch, write the state.
async fn fetch_one(job: &Job, progress: &Progress, verbose: bool) -> Result<Summary> {
    let (mut state, mut dest, password) = prepare(job).await?;
    match job.url.proto {
        Proto::Pop3 => {
            pop3_fetch::run(job, &password, &mut state, &mut dest, progress, verbose).await
        }
        Proto::Imap => {
            imap_fetch::run(job, &password, &mut state, &mut dest, progress, verbose).await
        }
    }
}

/// The account's state (locked), destination and password.
async fn prepare(job: &Job) -> Result<(state::State, dest::Destination, String)> {
    let state_dir = job.state_dir.clone();
    let name = job.state_name.clone();
    let state = tokio::task::spawn_blocking(move || state::State::open(&state_dir, &name))
        .await
        .map_err(|e| exit::fail(exit::SOFTWARE, e.to_string()))?
        .map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::WouldBlock || exit::io_is_temporary(&e) {
                exit::TEMPFAIL
            } else {
                exit::CANTCREAT
            };
            exit::fail(code, format!("state in {}: {e}", job.state_dir.display()))
        })?;
    let dest = match &job.mda {
        Some(cmd) => dest::Destination::Mda {
            command: cmd.clone(),
            recipient: job.recipient.clone(),
        },
        None => dest::Destination::maildir(&job.maildir)?,
    };
    let password = password(job).await?;
    Ok((state, dest, password))
}

/// `--idle`: the first wait after a temporary failure; doubled after each, up to
/// [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(5);
/// The longest wait between reconnections.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// One account under `--idle`: fetch, then wait for new mail (IMAP IDLE, else `poll`) and
/// fetch again, until `stop`; after a temporary failure (75) reconnect with exponential
/// backoff; any other failure ends the account with its code. OAuth 2.0 tokens expire: a
/// token refused at login (77) makes the next round at once, which reruns the password command
/// for a fresh token; refused again, the account ends with 77.
async fn idle_one(
    job: &Job,
    poll: Duration,
    verbose: bool,
    summaries: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let mut backoff = BACKOFF_FIRST;
    // A refused token was replaced by a fresh one since the last successful round.
    let mut refreshed = false;
    let progress = Progress::none();
    loop {
        let mut report = |s: &Summary| {
            backoff = BACKOFF_FIRST;
            refreshed = false;
            if summaries && (s.fetched > 0 || verbose) {
                crate::log::line(summary_line(job, s));
            }
            if let Some(why) = &s.later {
                crate::log::line(format!("{}: kept for the next round: {why}", job.name));
            }
        };
        let round = async {
            let (mut state, mut dest, password) = prepare(job).await?;
            match job.url.proto {
                Proto::Imap => {
                    imap_fetch::watch(
                        job,
                        &password,
                        &mut state,
                        &mut dest,
                        &progress,
                        verbose,
                        &mut stop.clone(),
                        &mut report,
                    )
                    .await
                }
                Proto::Pop3 => {
                    let s =
                        pop3_fetch::run(job, &password, &mut state, &mut dest, &progress, verbose)
                            .await?;
                    report(&s);
                    Ok(imap_fetch::Watched::NoIdle)
                }
            }
        };
        let wait = match round.await {
            Ok(imap_fetch::Watched::Stopped) => return Ok(()),
            Ok(imap_fetch::Watched::NoIdle) => poll,
            Err(e) if exit::code_of(&e) == exit::NOPERM && job.auth.uses_token() && !refreshed => {
                crate::log::line(format!(
                    "{}: {e:#}; getting a fresh token from the password command",
                    job.name
                ));
                refreshed = true;
                continue;
            }
            Err(e) if exit::code_of(&e) == exit::TEMPFAIL => {
                let wait = backoff;
                crate::log::line(format!(
                    "{}: {e:#}; trying again in {}s",
                    job.name,
                    wait.as_secs()
                ));
                backoff = (backoff * 2).min(BACKOFF_MAX);
                wait
            }
            Err(e) => return Err(e),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = imap_fetch::stopped(&mut stop) => return Ok(()),
        }
    }
}

/// `--idle` for every job, concurrently, until SIGTERM or SIGINT (then exit 0 once each
/// account has finished its message in progress and logged out) or until every account
/// has failed for good (the most serious code of theirs).
pub fn run_idle(jobs: Vec<Job>, poll: Duration, verbosity: Verbosity) -> Result<u8> {
    let rt = crate::runtime::build(crate::runtime::Threads::Current)?;
    let summaries = verbosity != Verbosity::Quiet;
    let verbose = verbosity == Verbosity::Verbose;
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| exit::fail(exit::OSERR, format!("SIGTERM handler: {e}")))?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| exit::fail(exit::OSERR, format!("SIGINT handler: {e}")))?;
        let mut tasks = tokio::task::JoinSet::new();
        for job in jobs {
            let rx = rx.clone();
            tasks.spawn(async move {
                let r = idle_one(&job, poll, verbose, summaries, rx).await;
                (job, r)
            });
        }
        let mut code = exit::OK;
        loop {
            tokio::select! {
                done = tasks.join_next() => match done {
                    None => break,
                    Some(Ok((_, Ok(())))) => {}
                    Some(Ok((job, Err(e)))) => {
                        crate::log::line(format!("{}: {e:#}", job.name));
                        code = worse(code, exit::code_of(&e));
                    }
                    Some(Err(e)) => {
                        return Err(exit::fail(exit::SOFTWARE, format!("account task: {e}")))
                    }
                },
                _ = term.recv() => { let _ = tx.send(true); }
                _ = int.recv() => { let _ = tx.send(true); }
            }
        }
        Ok(code)
    })
}

/// Fetches every job, at most `concurrency` at once; prints the summary and error lines;
/// returns the exit code.
pub fn run(jobs: Vec<Job>, concurrency: usize, verbosity: Verbosity) -> Result<u8> {
    let rt = crate::runtime::build(crate::runtime::Threads::Current)?;
    let terminal = std::io::stderr().is_terminal();
    let multi = indicatif::MultiProgress::new();
    let bars = verbosity != Verbosity::Quiet && terminal;
    let summaries = verbosity == Verbosity::Verbose || (verbosity == Verbosity::Normal && terminal);
    let verbose = verbosity == Verbosity::Verbose;
    rt.block_on(async {
        let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, job) in jobs.into_iter().enumerate() {
            let limit = Arc::clone(&limit);
            let progress = if bars {
                Progress::bar(&multi, &job.name)
            } else {
                Progress::none()
            };
            tasks.spawn(async move {
                let _permit = limit.acquire().await;
                let r = fetch_one(&job, &progress, verbose).await;
                progress.finish();
                (i, job, r)
            });
        }
        let mut results = Vec::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(r) => results.push(r),
                Err(e) => return Err(exit::fail(exit::SOFTWARE, format!("account task: {e}"))),
            }
        }
        results.sort_by_key(|r| r.0);
        let mut code = exit::OK;
        for (_, job, r) in results {
            match r {
                Ok(s) => {
                    if summaries {
                        crate::log::line(summary_line(&job, &s));
                    }
                    if let Some(why) = &s.later {
                        crate::log::line(format!("{}: kept for the next run: {why}", job.name));
                        code = worse(code, exit::TEMPFAIL);
                    }
                }
                Err(e) => {
                    crate::log::line(format!("{}: {e:#}", job.name));
                    code = worse(code, exit::code_of(&e));
                }
            }
        }
        Ok(code)
    })
}

fn summary_line(job: &Job, s: &Summary) -> String {
    let mut line = format!(
        "{}: {} message{} fetched ({})",
        job.name,
        s.fetched,
        if s.fetched == 1 { "" } else { "s" },
        indicatif::HumanBytes(s.bytes)
    );
    if s.deleted > 0 {
        line.push_str(&format!(", {} deleted on the server", s.deleted));
    }
    if s.found > 0 {
        line.push_str(&format!(
            ", {} found already delivered by an interrupted run",
            s.found
        ));
    }
    if s.unchanged > 0 {
        line.push_str(&format!(", {} folders unchanged", s.unchanged));
    }
    line
}
