//! One IMAP account's fetch: the sans-IO [`super::imap`] protocol over a [`Conn`](super::conn::Conn).

use anyhow::Result;

use super::account::Job;
use super::dest::Destination;
use super::state::State;
use super::{Progress, Summary};
use crate::exit;

/// Fetches the job's IMAP folders.
pub async fn run(
    job: &Job,
    _password: &str,
    _state: &mut State,
    _dest: &mut Destination,
    _progress: &Progress,
    _verbose: bool,
) -> Result<Summary> {
    Err(exit::fail(
        exit::UNAVAILABLE,
        format!("{}: IMAP is not built yet", job.name),
    ))
}
