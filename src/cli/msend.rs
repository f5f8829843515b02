//! `msend`: sendmail-compatible submission client: a message on stdin, SMTP out. Not built yet; its issue replaces this placeholder.

use std::ffi::OsString;

/// Command line of `msend` (placeholder until its issue builds it).
#[derive(clap::Parser, Debug)]
#[command(
    name = "msend",
    version,
    about = "sendmail-compatible submission client: a message on stdin, SMTP out. (not implemented yet)"
)]
pub struct Args {
    /// Arguments, ignored until the program is built.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

impl super::Tool for Args {
    const NAME: &'static str = "msend";
    fn run(self) -> anyhow::Result<u8> {
        super::not_implemented(Self::NAME)
    }
}
