//! One line per event on stderr, prefixed with the program name (`mrelayd: ...`), shared by all
//! daemons so logs look alike and `grep` works the same on each. Under systemd or a supervisor
//! stderr goes to the journal/log; nothing here buffers, so lines survive a crash.

use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::OnceLock;

static PROGRAM: OnceLock<String> = OnceLock::new();

/// Sets the program name used as the prefix of every line. Only the first call counts.
pub fn set_program(name: &str) {
    let _ = PROGRAM.set(name.to_string());
}

/// The program name set by [`set_program`], else `mailkit`.
pub fn program() -> &'static str {
    PROGRAM.get().map(String::as_str).unwrap_or("mailkit")
}

/// Writes `<prog>: <message>` as one line to stderr (one write, so concurrent sessions do not
/// interleave within a line). Control characters from the network are escaped so a peer cannot
/// forge log lines.
pub fn line(message: impl fmt::Display) {
    let mut text = sanitize(&format!("{}: {message}", program()));
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Escapes control characters (CR, LF, ESC, ...) as `\xNN`; everything else is kept.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Logs one formatted line: `log!("session from {peer}: {err:#}")`.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_lines() {
        assert_eq!(sanitize("a\r\nmrelayd: fake"), "a\\x0d\\x0amrelayd: fake");
        assert_eq!(sanitize("tab\tok é"), "tab\tok é");
        assert_eq!(sanitize("\u{1b}[31m"), "\\x1b[31m");
    }
}
