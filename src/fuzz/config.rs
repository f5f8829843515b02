//! Config text of any shape: loading and section extraction return errors, never panic.

use crate::config::{self, AuthConfig, Config, UsersConfig};

/// The fuzz body: panics only on a real bug.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = std::path::Path::new("fuzz.toml");
    if let Ok(config) = Config::parse(text, Some(path)) {
        for name in config::SECTIONS {
            // Any deny_unknown_fields + Default type stands in for a program's section type.
            let _ = config.section::<AuthConfig>(name);
        }
    }
    let _ = config::parse_str::<UsersConfig>(text, Some(path));
}
