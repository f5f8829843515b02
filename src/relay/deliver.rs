//! Processing one queue entry: every pending recipient is resolved through the
//! [`Router`](super::Router); local targets get their copy right away ([`super::local`]),
//! remote targets are grouped by next hop and sent in one transaction per hop, the hops in
//! parallel ([`super::remote`]). Then the entry's state is settled:
//!
//! - delivered and permanently failed recipients are recorded in `state/ID` (a recipient leaves
//!   the queue only after its 250, or its bounce);
//! - permanently failed recipients get one DSN per message and attempt ([`super::dsn`]), queued
//!   from `<>` to the envelope sender, unless the sender is `<>` or NOTIFY excludes FAILURE;
//! - temporary failures keep the recipient pending with its last error, and the entry gets its
//!   next try from the retry schedule; past `delay_warning_secs` one "delayed" DSN goes out
//!   (NOTIFY absent counts as FAILURE,DELAY, RFC 3461 §4.1), past `max_lifetime_secs` the
//!   rest bounces.
//!
//! A bounce is queued (fsynced) before the state that records the failure is written, so a
//! crash in between can send a bounce twice but never lose one.

use std::collections::BTreeMap;
use std::io;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::dsn::{self, DsnAction, DsnInput, DsnRecipient, DsnReturn};
use super::{Resolution, Router, Target};
use crate::envelope::Ret;
use crate::outbound::failure::RcptOutcome;
use crate::outbound::route::Myself;
use crate::outbound::{config::RemoteConfig, engine::Rcpt, Engine, Failure};
use crate::queue::{self, Queue, RcptState, Recipient};
use crate::smtp::command::xtext_encode;

/// What happened to a queue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every recipient is done (delivered or failed for good); the entry is gone.
    Done,
    /// Some recipients wait for a retry.
    Deferred,
    /// Another process or thread is delivering it, or it was removed/held.
    Busy,
    /// Not due yet.
    NotDue,
}

/// Delivers queue entries.
#[derive(Debug, Clone)]
pub struct Deliverer {
    /// Routing.
    pub router: Arc<Router>,
    /// The queue.
    pub queue: Queue,
    /// Pipe command timeout.
    pub pipe_timeout: Duration,
    /// Symlink policy for local Maildirs (`allow_symlinked_maildir`; refused by default).
    pub maildir_links: crate::maildir::Links,
    /// Hop limit (`[mrelayd] max_hops`): a queued message with more `Received:` plus
    /// `Delivered-To:` headers is a loop and bounces with 5.4.6 (RFC 5321 §6.3).
    pub max_hops: usize,
    /// Our host name (DSN Reporting-MTA and From).
    pub hostname: String,
    /// Remote delivery.
    pub remote: Arc<Engine>,
    /// The runtime remote sessions run on (its own, so it outlives any server runtime).
    pub runtime: Arc<tokio::runtime::Runtime>,
    /// Where ids of queued bounces are announced, so the runner delivers them at once.
    pub wake: Arc<Mutex<Option<mpsc::Sender<String>>>>,
    /// DKIM keys for the mail we write (bounces, Sieve's submissions; [`super::own_mail`]).
    pub signers: Arc<crate::dkim::Signers>,
}

fn log(id: &str, msg: impl std::fmt::Display) {
    crate::log::line(format_args!("{id}: {msg}"));
}

/// One remote target of one recipient.
struct RemoteJob {
    index: usize,
    target: String,
    address: String,
}

impl Deliverer {
    /// A deliverer with its own runtime for remote sessions, refusing next hops that are
    /// `myself` (mail loops, [`super::remote`]), caching MTA-STS policies in `mta_sts_cache`.
    pub fn new(
        router: Arc<Router>,
        queue: Queue,
        pipe_timeout: Duration,
        hostname: &str,
        remote: RemoteConfig,
        myself: Myself,
        mta_sts_cache: std::path::PathBuf,
    ) -> anyhow::Result<Deliverer> {
        let runtime = crate::runtime::build(crate::runtime::Threads::Workers {
            count: 2,
            name: "mrelayd-remote",
        })?;
        let remote = Arc::new(
            // Everything the engine can refuse is the config's (resolver, relayhost syntax,
            // CA files): exit 78, as the manual's EXIT STATUS says, not 70.
            Engine::new(remote, hostname)
                .map_err(|e| crate::exit::fail(crate::exit::CONFIG, format!("{e:#}")))?
                .with_loop_check(myself)
                .with_mta_sts_cache(mta_sts_cache),
        );
        {
            let _guard = runtime.enter();
            remote.start_reaper();
        }
        Ok(Deliverer {
            router,
            queue,
            pipe_timeout,
            maildir_links: crate::maildir::Links::default(),
            max_hops: crate::smtp::hops::DEFAULT_MAX_HOPS,
            hostname: hostname.to_string(),
            remote,
            runtime: Arc::new(runtime),
            wake: Arc::new(Mutex::new(None)),
            signers: Arc::new(crate::dkim::Signers::default()),
        })
    }

    /// Where Sieve's redirect and vacation of local deliveries of `message` go: this queue,
    /// each new entry announced to the runner like a bounce ([`crate::mda::send::ToQueue`]),
    /// DKIM-signed as [`super::own_mail::sieve_signer`] says (`env`: who sent `message`); a
    /// redirect to a remote address is sent from an SRS address when SRS is on ([`super::srs`]).
    pub fn submitter(
        &self,
        message: &[u8],
        env: &queue::Envelope,
    ) -> Arc<dyn crate::mda::send::Submit> {
        let wake = self.wake.clone();
        let ip = env.client.as_deref().and_then(|c| c.parse().ok());
        let ours = env.auth_user.is_some() || self.router.trusted_network(ip).is_some();
        let sign = (!self.signers.is_empty())
            .then(|| super::own_mail::sieve_signer(self.signers.clone(), message, ours));
        let queue = Arc::new(crate::mda::send::ToQueue {
            sign,
            queue: self.queue.clone(),
            hostname: self.hostname.clone(),
            announce: Box::new(move |id| {
                if let Some(tx) = wake.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    let _ = tx.send(id.to_string());
                }
            }),
        });
        // A redirect to a remote address gets an SRS sender (super::srs).
        Arc::new(super::srs::RewritingSubmit {
            inner: queue,
            router: self.router.clone(),
        })
    }

    /// Closes cached remote sessions (QUIT), at shutdown.
    pub fn close(&self) {
        let remote = self.remote.clone();
        self.runtime
            .block_on(async move { remote.close_idle().await });
    }

    /// Delivers the pending recipients of `id`. `force` ignores the retry time.
    pub fn deliver(&self, id: &str, force: bool) -> io::Result<Outcome> {
        let Some(mut locked) = self.queue.lock(id)? else {
            return Ok(Outcome::Busy);
        };
        let now = crate::clock::now();
        if !force && locked.status.next_try > now {
            return Ok(Outcome::NotDue);
        }
        let message = locked.read_message()?;
        let env = locked.envelope.clone();
        let mut status = locked.status.clone();
        if status.rcpts.len() < env.recipients.len() {
            // A status file shorter than the envelope (damaged): the rest is pending.
            status
                .rcpts
                .resize(env.recipients.len(), RcptState::Pending);
        }
        let mut temp: BTreeMap<usize, Failure> = BTreeMap::new();
        let mut failed: BTreeMap<usize, (String, Failure)> = BTreeMap::new();
        let mut jobs: Vec<RemoteJob> = Vec::new();
        let mut relays: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        // NOTIFY=SUCCESS owed: `delivered` locally or `relayed` to a hop without DSN.
        let mut success: BTreeMap<usize, (DsnAction, Option<String>)> = BTreeMap::new();
        let looped = self.hop_loop(&message);
        let submit = self.submitter(&message, &env);

        for (i, rcpt) in env.recipients.iter().enumerate() {
            if status.rcpts[i] != RcptState::Pending {
                continue;
            }
            if let Some(why) = &looped {
                // Never delivered, resent or queued again: it bounces (the bounce is a new
                // message whose header has no hops).
                failed.insert(i, (rcpt.address.clone(), Failure::new(false, why, "5.4.6")));
                continue;
            }
            let done = status.delivered_targets.entry(i).or_default();
            let targets = match self.router.resolve(&rcpt.address) {
                Resolution::Targets { targets, .. } => targets,
                Resolution::Unknown(why) => {
                    failed.insert(i, (rcpt.address.clone(), Failure::new(false, why, "5.1.1")));
                    continue;
                }
                Resolution::Loop(why) => {
                    failed.insert(i, (rcpt.address.clone(), Failure::new(false, why, "5.4.6")));
                    continue;
                }
                Resolution::Error(why) => {
                    temp.insert(i, Failure::temp(why));
                    continue;
                }
            };
            for t in &targets {
                let name = t.to_string();
                if done.contains(&name) {
                    continue;
                }
                if let Target::Remote(address) = t {
                    jobs.push(RemoteJob {
                        index: i,
                        target: name,
                        address: address.clone(),
                    });
                    continue;
                }
                match super::local::deliver_target_with(
                    t,
                    &env.sender,
                    &rcpt.address,
                    &message,
                    self.pipe_timeout,
                    self.maildir_links,
                    Some(&submit),
                ) {
                    Ok(()) => {
                        relays.entry(i).or_default().push(name.clone());
                        done.push(name);
                        success.entry(i).or_insert((DsnAction::Delivered, None));
                    }
                    Err(f) if f.temporary => {
                        temp.insert(i, f);
                    }
                    Err(f) => {
                        // A failed target is settled too: a retry must not try it again.
                        done.push(name);
                        failed.insert(i, (rcpt.address.clone(), f));
                    }
                }
            }
        }

        for (job, result) in jobs.iter().zip(self.deliver_remote(&env, &jobs, &message)) {
            let done = status.delivered_targets.entry(job.index).or_default();
            // A relayhost refusing our login is our configuration's fault, not the mail's:
            // defer and let the admin fix it (as Postfix does), never bounce everything.
            let result = result.map_err(|mut f| {
                if f.stage == Some(crate::smtp::client::Stage::Auth) {
                    f.temporary = true;
                    f.status = "4.7.0".into();
                }
                f
            });
            match result {
                Ok(sent) => {
                    relays
                        .entry(job.index)
                        .or_default()
                        .push(format!("<{}> {}", job.address, sent.how));
                    done.push(job.target.clone());
                    if !sent.dsn_passed {
                        success.insert(job.index, (DsnAction::Relayed, Some(sent.host)));
                    }
                }
                Err(f) if f.temporary => {
                    temp.insert(job.index, f);
                }
                Err(f) => {
                    done.push(job.target.clone());
                    failed.insert(job.index, (job.address.clone(), f));
                }
            }
        }

        // Too long in the queue: what is still temporary bounces now (RFC 5321 §4.5.4.1).
        let age = now.saturating_sub(env.time);
        let lifetime = self.remote.config().max_lifetime_secs;
        if !temp.is_empty() && age >= lifetime {
            for (i, f) in std::mem::take(&mut temp) {
                let mut f = f;
                f.message = format!(
                    "gave up after {} in the queue: {}",
                    fmt_duration(lifetime),
                    f.message
                );
                let address = env.recipients[i].address.clone();
                failed.insert(i, (address, f));
            }
            log(id, "expired: too long in the queue");
        }

        // Settle every recipient touched in this attempt.
        for (i, rcpt) in env.recipients.iter().enumerate() {
            if status.rcpts[i] != RcptState::Pending {
                continue;
            }
            if let Some(f) = temp.get(&i) {
                log(
                    id,
                    format_args!(
                        "to=<{}> status=deferred dsn={} ({})",
                        rcpt.address, f.status, f.message
                    ),
                );
                status.rcpt_errors.insert(i, f.message.clone());
                continue;
            }
            status.rcpt_errors.remove(&i);
            status.delivered_targets.remove(&i);
            if let Some((_, f)) = failed.get(&i) {
                log(
                    id,
                    format_args!(
                        "to=<{}> status=bounced dsn={} ({})",
                        rcpt.address, f.status, f.message
                    ),
                );
                status.rcpts[i] = RcptState::Failed(f.message.clone());
            } else {
                let how = relays.get(&i).map(|v| v.join(", ")).unwrap_or_default();
                log(
                    id,
                    format_args!("to=<{}> status=sent ({how})", rcpt.address),
                );
                status.rcpts[i] = RcptState::Delivered;
            }
        }
        // Empty target lists of recipients still pending are noise in the state file.
        status.delivered_targets.retain(|_, v| !v.is_empty());

        self.bounce(id, &env, &message, &failed, now)?;
        self.success_report(id, &env, &message, &status, &success, now)?;
        let warn_after = self.remote.config().delay_warning_secs;
        if !temp.is_empty() && !status.delay_warned && warn_after > 0 && age >= warn_after {
            self.delay_warning(id, &env, &message, &temp, now)?;
            status.delay_warned = true;
        }

        if status.finished() {
            self.queue.complete(id)?;
            log(id, "removed");
            drop(locked);
            return Ok(Outcome::Done);
        }
        let errors: Vec<String> = temp
            .iter()
            .map(|(i, f)| format!("<{}>: {}", env.recipients[*i].address, f.message))
            .collect();
        status.defer(now, errors.join("; "), self.remote.config().retry());
        self.queue.write_status(id, &status)?;
        locked.status = status;
        Ok(Outcome::Deferred)
    }

    /// Why `message` is a mail loop, if it is: more `Received:` plus `Delivered-To:` headers
    /// than the hop limit (RFC 5321 §6.3). A message can cross the limit while queued: an
    /// alias expanding back through a relay, or local deliveries adding `Delivered-To:`.
    fn hop_loop(&self, message: &[u8]) -> Option<String> {
        let (received, delivered_to) = crate::smtp::hops::count(message);
        let hops = received + delivered_to;
        (hops > self.max_hops).then(|| {
            format!(
                "Too many hops: {received} Received: and {delivered_to} Delivered-To: headers, the limit is {} (mail loop)",
                self.max_hops
            )
        })
    }

    /// Sends the remote jobs, one transaction per next hop, hops in parallel; results in job
    /// order.
    fn deliver_remote(
        &self,
        env: &queue::Envelope,
        jobs: &[RemoteJob],
        message: &[u8],
    ) -> Vec<RcptOutcome> {
        if jobs.is_empty() {
            return Vec::new();
        }
        // Copies forwarded for our recipients may go out with an SRS sender (super::srs):
        // one delivery per sender, results put back in job order.
        let mut by_sender: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (k, job) in jobs.iter().enumerate() {
            let forwarded = self.router.forwards(&env.recipients[job.index].address);
            let sender = self.router.forward_sender(&env.sender, forwarded);
            by_sender.entry(sender).or_default().push(k);
        }
        let message: Arc<[u8]> = Arc::from(message);
        let params = dsn_mail_params(env);
        let mut out: Vec<Option<RcptOutcome>> = jobs.iter().map(|_| None).collect();
        for (sender, ks) in by_sender {
            let rcpts: Vec<Rcpt> = ks
                .iter()
                .map(|&k| Rcpt {
                    address: jobs[k].address.clone(),
                    params: dsn_rcpt_params(env, &jobs[k]),
                })
                .collect();
            let (remote, params, message) = (self.remote.clone(), params.clone(), message.clone());
            let done = self.runtime.block_on(async move {
                remote.deliver_all(&sender, &params, &rcpts, &message).await
            });
            for (&k, r) in ks.iter().zip(done.rcpts) {
                out[k] = r;
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Failure::temp("not attempted"))))
            .collect()
    }

    /// Queues one failure DSN for `failed` (those whose NOTIFY asks for it).
    fn bounce(
        &self,
        id: &str,
        env: &queue::Envelope,
        message: &[u8],
        failed: &BTreeMap<usize, (String, Failure)>,
        now: u64,
    ) -> io::Result<()> {
        let rcpts: Vec<DsnRecipient> = failed
            .iter()
            .filter(|(i, _)| wants(&env.recipients[**i], Want::Failure))
            .map(|(i, (final_rcpt, f))| {
                dsn_recipient(
                    &env.recipients[*i],
                    final_rcpt,
                    f,
                    DsnAction::Failed,
                    now,
                    None,
                )
            })
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        if env.sender.is_empty() {
            log(id, "not bounced: the sender is <> (RFC 5321 §4.5.5)");
            return Ok(());
        }
        if rcpts.is_empty() {
            log(id, "not bounced: NOTIFY does not ask for it");
            return Ok(());
        }
        let ret = match env.ret {
            Some(Ret::Hdrs) => DsnReturn::Headers,
            _ => DsnReturn::Full,
        };
        self.queue_dsn(id, env, message, rcpts, ret, now, "bounce")
    }

    /// Queues one success DSN for the recipients delivered in this attempt that asked for it
    /// with NOTIFY=SUCCESS: `delivered` into a mailbox here, or `relayed` to a next hop that
    /// does not speak DSN (RFC 3461 §6.2.1.1, §6.2.1.2). A hop that speaks DSN got NOTIFY
    /// along and reports itself.
    fn success_report(
        &self,
        id: &str,
        env: &queue::Envelope,
        message: &[u8],
        status: &queue::Status,
        success: &BTreeMap<usize, (DsnAction, Option<String>)>,
        now: u64,
    ) -> io::Result<()> {
        if env.sender.is_empty() {
            return Ok(());
        }
        let rcpts: Vec<DsnRecipient> = success
            .iter()
            .filter(|(i, _)| status.rcpts.get(**i) == Some(&RcptState::Delivered))
            .filter(|(i, _)| {
                env.recipients[**i]
                    .notify
                    .is_some_and(|n| n.success && !n.never)
            })
            .map(|(i, (action, host))| {
                let r = &env.recipients[*i];
                DsnRecipient {
                    address: r.address.clone(),
                    orcpt: r.orcpt.clone(),
                    action: *action,
                    status: "2.0.0".into(),
                    diagnostic: None,
                    remote_mta: host.clone(),
                    last_attempt: Some(now),
                    will_retry_until: None,
                }
            })
            .collect();
        self.queue_dsn(
            id,
            env,
            message,
            rcpts,
            DsnReturn::Headers,
            now,
            "success report",
        )
    }

    /// Queues one delay DSN for the recipients in `temp` whose NOTIFY asks for it.
    fn delay_warning(
        &self,
        id: &str,
        env: &queue::Envelope,
        message: &[u8],
        temp: &BTreeMap<usize, Failure>,
        now: u64,
    ) -> io::Result<()> {
        if env.sender.is_empty() {
            return Ok(());
        }
        let until = env
            .time
            .saturating_add(self.remote.config().max_lifetime_secs);
        let rcpts: Vec<DsnRecipient> = temp
            .iter()
            .filter(|(i, _)| wants(&env.recipients[**i], Want::Delay))
            .map(|(i, f)| {
                let r = &env.recipients[*i];
                dsn_recipient(r, &r.address, f, DsnAction::Delayed, now, Some(until))
            })
            .collect();
        self.queue_dsn(
            id,
            env,
            message,
            rcpts,
            DsnReturn::Headers,
            now,
            "delay warning",
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn queue_dsn(
        &self,
        id: &str,
        env: &queue::Envelope,
        message: &[u8],
        recipients: Vec<DsnRecipient>,
        ret: DsnReturn,
        now: u64,
        what: &str,
    ) -> io::Result<()> {
        if recipients.is_empty() {
            return Ok(());
        }
        let dsn = dsn::build(&DsnInput {
            reporting_mta: &self.hostname,
            postmaster_domain: self.router.postmaster_domain(),
            envid: env.envid.as_deref(),
            arrival: env.time,
            original_sender: &env.sender,
            recipients,
            ret,
            message,
            now,
        });
        let bounce_env = queue::Envelope {
            sender: String::new(),
            recipients: vec![Recipient {
                address: env.sender.clone(),
                notify: None,
                orcpt: None,
            }],
            time: now,
            smtputf8: env.smtputf8,
            ..Default::default()
        };
        // Signed when the hostname's domain has keys (From: MAILER-DAEMON@hostname).
        let signature = super::own_mail::signature(&self.signers, &dsn, id);
        let bid = self
            .queue
            .enqueue(&bounce_env, signature.as_bytes(), &dsn)?;
        log(id, format_args!("sender {what}: {bid} to <{}>", env.sender));
        if let Some(tx) = self.wake.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(bid);
        }
        Ok(())
    }
}

/// RET= and ENVID= to pass on to a next hop that speaks DSN.
fn dsn_mail_params(env: &queue::Envelope) -> Vec<String> {
    let mut p = Vec::new();
    match env.ret {
        Some(Ret::Full) => p.push("RET=FULL".to_string()),
        Some(Ret::Hdrs) => p.push("RET=HDRS".to_string()),
        None => {}
    }
    if let Some(id) = &env.envid {
        p.push(format!("ENVID={}", xtext_encode(id)));
    }
    p
}

/// NOTIFY= and ORCPT= of a recipient, for a next hop that speaks DSN. A recipient that is the
/// envelope recipient itself keeps them; an alias expansion gets its own (RFC 3461 §6.2).
fn dsn_rcpt_params(env: &queue::Envelope, job: &RemoteJob) -> Vec<String> {
    let r = &env.recipients[job.index];
    let mut p = Vec::new();
    if let Some(n) = r.notify {
        p.push(format!("NOTIFY={n}"));
    }
    if r.address.eq_ignore_ascii_case(&job.address) {
        // Stored decoded as `type;address`; the address part goes out as xtext again.
        if let Some((kind, addr)) = r.orcpt.as_deref().and_then(|o| o.split_once(';')) {
            p.push(format!("ORCPT={kind};{}", xtext_encode(addr)));
        }
    }
    p
}

/// Which notification a recipient's NOTIFY is asked about.
#[derive(Clone, Copy)]
enum Want {
    Failure,
    Delay,
}

/// RFC 3461 §4.1: NEVER means none; absent means FAILURE (and, our choice like sendmail, DELAY).
fn wants(r: &Recipient, want: Want) -> bool {
    match r.notify {
        None => true,
        Some(n) if n.never => false,
        Some(n) => match want {
            Want::Failure => n.failure,
            Want::Delay => n.delay,
        },
    }
}

fn dsn_recipient(
    r: &Recipient,
    final_rcpt: &str,
    f: &Failure,
    action: DsnAction,
    now: u64,
    will_retry_until: Option<u64>,
) -> DsnRecipient {
    DsnRecipient {
        address: final_rcpt.to_string(),
        orcpt: r.orcpt.clone(),
        action,
        status: f.status.clone(),
        diagnostic: f.diagnostic.clone().or_else(|| Some(f.message.clone())),
        remote_mta: f.remote_mta.clone(),
        last_attempt: Some(now),
        will_retry_until,
    }
}

fn fmt_duration(secs: u64) -> String {
    match secs {
        s if s % 86400 == 0 && s > 0 => format!("{} days", s / 86400),
        s if s % 3600 == 0 && s > 0 => format!("{} hours", s / 3600),
        s => format!("{s} seconds"),
    }
}
