//! Config text of any shape: loading and section extraction return errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailkit::config::{self, AuthConfig, Config, UsersConfig};

fuzz_target!(|data: &[u8]| {
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
});
