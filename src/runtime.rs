//! The one place a tokio runtime is built: the daemons (through [`crate::server::daemon`]),
//! mrelayd's remote-delivery helper runtime, mdig-mx's probes and one msend run. Every program
//! gets the same IO and timer drivers and the same error when the runtime cannot start.

use anyhow::{Context as _, Result};

/// How many threads a runtime runs its tasks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Everything on the calling thread (one msend run: one session at a time).
    Current,
    /// One worker per core (a daemon's sessions).
    PerCore,
    /// A fixed number of workers, named `name` in `ps -T` and `top -H` (a helper runtime
    /// beside the main one, a CLI's parallel probes).
    Workers {
        /// Worker threads (at least 1).
        count: usize,
        /// The threads' name.
        name: &'static str,
    },
}

/// A runtime with IO and timers enabled, shaped as `threads` says.
pub fn build(threads: Threads) -> Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Threads::Current => tokio::runtime::Builder::new_current_thread(),
        Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
        Threads::Workers { count, name } => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(count.max(1)).thread_name(name);
            b
        }
    };
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_runs_a_timer() {
        for t in [
            Threads::Current,
            Threads::PerCore,
            Threads::Workers {
                count: 0,
                name: "test-rt",
            },
        ] {
            let rt = build(t).unwrap();
            rt.block_on(async { tokio::time::sleep(std::time::Duration::from_millis(1)).await });
        }
    }
}
