//! What msend does with its spool ([`super::spool`]): keep the recipients of a send that
//! failed temporarily ([`spool_temporary`]), list it (`--list`, `-bp`) and retry it
//! (`--flush`, `-q`).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::account::{self, Flags, Resolved};
use super::deliver::{self, RcptReport, Report, Status};
use super::{spool, MsendConfig};
use crate::exit;

/// Prints the failures of a report, one line each.
pub fn print_failures(report: &Report) {
    for r in &report.rcpts {
        if r.status != Status::Sent {
            eprintln!("msend: {}", r.detail);
        }
    }
}

/// After a send: with a spool, the recipients that failed temporarily are spooled (and taken
/// out of the report); the other failures are printed. Returns the exit code.
pub fn spool_temporary(res: &Resolved, from: &str, msg: &[u8], mut report: Report) -> Result<u8> {
    let temp = report.temporary();
    if let (Some(dir), false) = (&res.queue, temp.is_empty()) {
        let last_error = report
            .rcpts
            .iter()
            .find(|r| r.status == Status::Temporary)
            .map(|r| r.detail.clone())
            .unwrap_or_default();
        let meta = spool::Meta {
            from: from.to_string(),
            rcpts: temp.clone(),
            account: res.account_name.clone(),
            queued_at: crate::clock::now(),
            last_error: last_error.clone(),
            destination: res.destination.clone(),
        };
        let id = spool::put(dir, &meta, msg).map_err(|e| {
            exit::fail(
                exit::TEMPFAIL,
                format!("spooling in {}: {e:#}", dir.display()),
            )
        })?;
        eprintln!(
            "msend: {} recipient(s) spooled as {id} in {} after a temporary failure: {last_error}",
            temp.len(),
            dir.display()
        );
        report.rcpts.retain(|r| r.status != Status::Temporary);
    }
    print_failures(&report);
    Ok(report.exit_code())
}

/// `--list` (`-bp`): one entry per spooled message on `out`, oldest first.
pub fn list(dir: &Path, out: &mut dyn Write) -> Result<u8> {
    let entries = spool::list(dir)?;
    if entries.is_empty() {
        writeln!(out, "{}: spool is empty", dir.display()).context("writing to stdout")?;
        return Ok(exit::OK);
    }
    for p in entries {
        match spool::read(&p) {
            Ok(e) => writeln!(
                out,
                "{}  {} bytes  queued {}s ago  from <{}>  to {}\n    last error: {}",
                e.id,
                e.message.len(),
                crate::clock::now().saturating_sub(e.meta.queued_at),
                e.meta.from,
                e.meta.rcpts.join(", "),
                e.meta.last_error
            ),
            Err(err) => writeln!(out, "{}  unreadable: {err:#}", p.display()),
        }
        .context("writing to stdout")?;
    }
    Ok(exit::OK)
}

/// `--flush` (and `-q`): every spooled message in order; removed only after the server's 250
/// for all its recipients; permanent failures are reported and moved to DIR/failed. The exit
/// code is [`Report::exit_code`] over all messages together, as for a direct send.
/// Each message goes where it was spooled for (its account and [`spool::Destination`]) unless
/// `--server`, `--direct` or `-a` say otherwise; the flags' own route is resolved only for
/// messages that need it, so a spool of messages that all know their server flushes without
/// a default one.
pub fn flush(
    flags: &Flags,
    cfg: &MsendConfig,
    hostname: String,
    rt: &tokio::runtime::Runtime,
) -> Result<u8> {
    let usage = |m: &str| exit::fail(exit::USAGE, m);
    let dir = account::spool_dir(flags, cfg)?
        .ok_or_else(|| usage("--flush (-q) needs --queue DIR (or queue = in the configuration)"))?;
    if flags.quit_after.is_some() {
        // A session stopped early delivers nothing: the spool must not take it for delivered.
        return Err(usage("--quit-after cannot be used with --flush (-q)"));
    }
    let Some(_lock) = spool::lock(&dir)? else {
        eprintln!(
            "msend: {} is being flushed by another process",
            dir.display()
        );
        return Ok(exit::TEMPFAIL);
    };
    let mut all = Report::default();
    let mut unreadable = false;
    // The flags' own route, resolved when a message first needs it.
    let mut default: Option<Resolved> = None;
    let overridden = flags.server.is_some() || flags.direct || flags.account.is_some();
    for path in spool::list(&dir)? {
        let entry = match spool::read(&path) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("msend: skipping {}: {e:#}", path.display());
                unreadable = true;
                continue;
            }
        };
        // A message goes where it was spooled for: its account and the server flags given
        // then, unless --server, --direct or -a now say otherwise.
        let meta = &entry.meta;
        let r;
        let opts = if !overridden && (meta.account.is_some() || meta.destination.is_some()) {
            let spooled_flags = match &meta.destination {
                Some(d) => flags.with_destination(d)?,
                None => flags.clone(),
            };
            r = account::resolve(
                &spooled_flags,
                cfg,
                hostname.clone(),
                meta.account.as_deref(),
            )?;
            &r.opts
        } else {
            let d = match default {
                Some(ref d) => d,
                None => default.insert(account::resolve(flags, cfg, hostname.clone(), None)?),
            };
            &d.opts
        };
        let report = rt.block_on(deliver::send(
            opts,
            &entry.meta.from,
            &entry.meta.rcpts,
            &entry.message,
        ));
        // A refused login says nothing about the message: it stays queued for the next run
        // (after the credentials are fixed), like a temporary failure.
        let retry: Vec<&RcptReport> = report
            .rcpts
            .iter()
            .filter(|r| matches!(r.status, Status::Temporary | Status::AuthFailed))
            .collect();
        let failed: Vec<&RcptReport> = report
            .rcpts
            .iter()
            .filter(|r| matches!(r.status, Status::RcptRejected | Status::Permanent))
            .collect();
        for f in &failed {
            eprintln!("msend: {}: permanent failure: {}", entry.id, f.detail);
        }
        if !failed.is_empty() {
            let meta = spool::Meta {
                rcpts: failed.iter().map(|f| f.rcpt.clone()).collect(),
                last_error: failed.first().map(|f| f.detail.clone()).unwrap_or_default(),
                ..entry.meta.clone()
            };
            if retry.is_empty() {
                let dest = spool::move_to_failed(&dir, &entry, &meta)?;
                eprintln!("msend: {}: moved to {}", entry.id, dest.display());
            } else {
                // Keep a copy for the failed recipients; the rest stays queued below.
                let id = spool::put_failed(&dir, &meta, &entry.message)?;
                eprintln!("msend: {}: failed recipients kept as failed/{id}", entry.id);
            }
        }
        if let Some(first) = retry.first() {
            eprintln!("msend: {}: still queued: {}", entry.id, first.detail);
            let meta = spool::Meta {
                rcpts: retry.iter().map(|r| r.rcpt.clone()).collect(),
                last_error: first.detail.clone(),
                ..entry.meta.clone()
            };
            spool::update(&dir, &entry, &meta)?;
        } else if failed.is_empty() {
            spool::remove(&entry)?;
            if flags.verbose {
                eprintln!("msend: {}: delivered", entry.id);
            }
        }
        all.absorb(report);
    }
    Ok(match all.exit_code() {
        exit::OK if unreadable => exit::DATAERR,
        code => code,
    })
}
