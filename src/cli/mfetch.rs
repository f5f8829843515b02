//! `mfetch`: Fetch mail from POP3/IMAP into a Maildir or an MDA. Not built yet; its issue replaces this placeholder.

use std::ffi::OsString;

/// Command line of `mfetch` (placeholder until its issue builds it).
#[derive(clap::Parser, Debug)]
#[command(
    name = "mfetch",
    version,
    about = "Fetch mail from POP3/IMAP into a Maildir or an MDA. (not implemented yet)"
)]
pub struct Args {
    /// Arguments, ignored until the program is built.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<OsString>,
}

impl super::Tool for Args {
    const NAME: &'static str = "mfetch";
    fn run(self) -> anyhow::Result<u8> {
        super::not_implemented(Self::NAME)
    }
}
