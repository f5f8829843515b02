//! `mrelayd`: SMTP server and MTA: accepts, queues durably, delivers locally or by MX. Not built yet; its issue replaces this placeholder.

use std::ffi::OsString;

/// Command line of `mrelayd` (placeholder until its issue builds it).
#[derive(clap::Parser, Debug)]
#[command(
    name = "mrelayd",
    version,
    about = "SMTP server and MTA: accepts, queues durably, delivers locally or by MX. (not implemented yet)"
)]
pub struct Args {
    /// Arguments, ignored until the program is built.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

impl super::Tool for Args {
    const NAME: &'static str = "mrelayd";
    fn run(self) -> anyhow::Result<u8> {
        super::not_implemented(Self::NAME)
    }
}
