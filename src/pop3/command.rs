//! POP3 command line parser (sans-IO): one line without its CRLF in, one [`Command`] out.
//!
//! RFC 1939 §3: a command is a case-insensitive keyword of three or four characters, optionally
//! followed by arguments separated by single spaces. RFC 2449 §4 limits a command line to 255
//! octets including the CRLF ([`MAX_COMMAND_LINE`]); RFC 5034 §4 exempts AUTH lines and SASL
//! responses from that limit ([`MAX_SASL_LINE`]).

/// Longest command line in octets, CRLF included (RFC 2449 §4).
pub const MAX_COMMAND_LINE: usize = 255;
/// Longest AUTH command or SASL response line in octets, CRLF included (RFC 5034 §4 lifts the
/// 255-octet limit for these; PLAIN with a long password still fits comfortably).
pub const MAX_SASL_LINE: usize = 4096;
/// Longest decimal message number or line count we accept (u32 fits in 10 digits).
pub const MAX_NUMBER_DIGITS: usize = 10;

/// One parsed POP3 command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `USER name` (RFC 1939 §7).
    User(String),
    /// `PASS secret`: the rest of the line, spaces included (RFC 1939 §7 notes passwords may
    /// contain spaces).
    Pass(String),
    /// `APOP name digest` (RFC 1939 §7).
    Apop {
        /// Mailbox name.
        user: String,
        /// 32 lower-case hex digits of MD5(timestamp + secret).
        digest: String,
    },
    /// `AUTH [mechanism [initial-response]]` (RFC 5034). No mechanism lists the mechanisms.
    Auth {
        /// Mechanism name, upper-cased; `None` for a bare `AUTH`.
        mechanism: Option<String>,
        /// Initial response (base64, or `=` for an empty one).
        initial: Option<String>,
    },
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `STAT`.
    Stat,
    /// `LIST [msg]`.
    List(Option<u32>),
    /// `RETR msg`.
    Retr(u32),
    /// `DELE msg`.
    Dele(u32),
    /// `NOOP`.
    Noop,
    /// `RSET`.
    Rset,
    /// `TOP msg n`.
    Top(u32, u32),
    /// `UIDL [msg]`.
    Uidl(Option<u32>),
    /// `QUIT`.
    Quit,
}

/// Why a line is not a valid command; each maps to one `-ERR` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Empty line or a keyword we do not know.
    Unknown,
    /// Known keyword, but the wrong number or shape of arguments.
    Syntax,
    /// A message number or count that is not a small decimal number.
    BadNumber,
    /// The line is longer than the limit (RFC 2449 §4).
    TooLong,
    /// The line contains a NUL or non-UTF-8 bytes where text is needed.
    BadBytes,
}

impl ParseError {
    /// The human-readable part of the `-ERR` reply.
    pub fn text(self) -> &'static str {
        match self {
            ParseError::Unknown => "Unknown command.",
            ParseError::Syntax => "Syntax error in arguments.",
            ParseError::BadNumber => "Invalid message number.",
            ParseError::TooLong => "Line too long.",
            ParseError::BadBytes => "Invalid characters in command.",
        }
    }
}

/// Parses one command line (without CRLF): at most [`MAX_COMMAND_LINE`] octets with the CRLF,
/// or [`MAX_SASL_LINE`] for AUTH.
pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
    if line.len() + 2 > MAX_SASL_LINE {
        return Err(ParseError::TooLong);
    }
    if line.contains(&0) {
        return Err(ParseError::BadBytes);
    }
    let text = std::str::from_utf8(line).map_err(|_| ParseError::BadBytes)?;
    let (keyword, rest) = match text.find(' ') {
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    };
    if !keyword.eq_ignore_ascii_case("AUTH") && line.len() + 2 > MAX_COMMAND_LINE {
        return Err(ParseError::TooLong);
    }
    if keyword.is_empty() || keyword.len() > 4 {
        return Err(ParseError::Unknown);
    }
    let keyword = keyword.to_ascii_uppercase();
    let args: Vec<&str> = match rest {
        Some(r) => r.split(' ').collect(),
        None => Vec::new(),
    };
    let no_args = |c: Command| {
        if rest.is_none() {
            Ok(c)
        } else {
            Err(ParseError::Syntax)
        }
    };
    match keyword.as_str() {
        "USER" => match rest {
            Some(name) if valid_name(name) => Ok(Command::User(name.to_string())),
            _ => Err(ParseError::Syntax),
        },
        "PASS" => match rest {
            Some(secret) if !secret.is_empty() => Ok(Command::Pass(secret.to_string())),
            _ => Err(ParseError::Syntax),
        },
        "APOP" => match args.as_slice() {
            [user, digest]
                if valid_name(user)
                    && digest.len() == 32
                    && digest.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Ok(Command::Apop {
                    user: user.to_string(),
                    digest: digest.to_ascii_lowercase(),
                })
            }
            _ => Err(ParseError::Syntax),
        },
        "AUTH" => match args.as_slice() {
            [] => Ok(Command::Auth {
                mechanism: None,
                initial: None,
            }),
            [mech] if !mech.is_empty() => Ok(Command::Auth {
                mechanism: Some(mech.to_ascii_uppercase()),
                initial: None,
            }),
            [mech, initial] if !mech.is_empty() && !initial.is_empty() => Ok(Command::Auth {
                mechanism: Some(mech.to_ascii_uppercase()),
                initial: Some(initial.to_string()),
            }),
            _ => Err(ParseError::Syntax),
        },
        "STLS" => no_args(Command::Stls),
        "CAPA" => no_args(Command::Capa),
        "STAT" => no_args(Command::Stat),
        "NOOP" => no_args(Command::Noop),
        "RSET" => no_args(Command::Rset),
        "QUIT" => no_args(Command::Quit),
        "LIST" => match args.as_slice() {
            [] => Ok(Command::List(None)),
            [n] => Ok(Command::List(Some(number(n)?))),
            _ => Err(ParseError::Syntax),
        },
        "UIDL" => match args.as_slice() {
            [] => Ok(Command::Uidl(None)),
            [n] => Ok(Command::Uidl(Some(number(n)?))),
            _ => Err(ParseError::Syntax),
        },
        "RETR" => match args.as_slice() {
            [n] => Ok(Command::Retr(number(n)?)),
            _ => Err(ParseError::Syntax),
        },
        "DELE" => match args.as_slice() {
            [n] => Ok(Command::Dele(number(n)?)),
            _ => Err(ParseError::Syntax),
        },
        "TOP" => match args.as_slice() {
            [n, lines] => Ok(Command::Top(number(n)?, number(lines)?)),
            _ => Err(ParseError::Syntax),
        },
        _ => Err(ParseError::Unknown),
    }
}

/// A user name: non-empty printable text without control characters.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_control())
}

/// A decimal message number or line count (RFC 1939 §3: no sign, digits only).
fn number(s: &str) -> Result<u32, ParseError> {
    if s.is_empty() || s.len() > MAX_NUMBER_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadNumber);
    }
    s.parse::<u32>().map_err(|_| ParseError::BadNumber)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command_case_insensitively() {
        assert_eq!(parse(b"user alice"), Ok(Command::User("alice".into())));
        assert_eq!(parse(b"PASS a b c"), Ok(Command::Pass("a b c".into())));
        assert_eq!(parse(b"stat"), Ok(Command::Stat));
        assert_eq!(parse(b"List"), Ok(Command::List(None)));
        assert_eq!(parse(b"LIST 3"), Ok(Command::List(Some(3))));
        assert_eq!(parse(b"retr 1"), Ok(Command::Retr(1)));
        assert_eq!(parse(b"DELE 2"), Ok(Command::Dele(2)));
        assert_eq!(parse(b"TOP 1 0"), Ok(Command::Top(1, 0)));
        assert_eq!(parse(b"UIDL"), Ok(Command::Uidl(None)));
        assert_eq!(parse(b"uidl 7"), Ok(Command::Uidl(Some(7))));
        assert_eq!(parse(b"NOOP"), Ok(Command::Noop));
        assert_eq!(parse(b"RSET"), Ok(Command::Rset));
        assert_eq!(parse(b"QUIT"), Ok(Command::Quit));
        assert_eq!(parse(b"CAPA"), Ok(Command::Capa));
        assert_eq!(parse(b"STLS"), Ok(Command::Stls));
        assert_eq!(
            parse(b"APOP mrose c4c9334bac560ecc979e58001b3e22FB"),
            Ok(Command::Apop {
                user: "mrose".into(),
                digest: "c4c9334bac560ecc979e58001b3e22fb".into()
            })
        );
        assert_eq!(
            parse(b"auth plain AGFsaWNlAHB3"),
            Ok(Command::Auth {
                mechanism: Some("PLAIN".into()),
                initial: Some("AGFsaWNlAHB3".into())
            })
        );
        assert_eq!(
            parse(b"AUTH"),
            Ok(Command::Auth {
                mechanism: None,
                initial: None
            })
        );
    }

    #[test]
    fn rejects_bad_arguments() {
        assert_eq!(parse(b""), Err(ParseError::Unknown));
        assert_eq!(parse(b"HELO x"), Err(ParseError::Unknown));
        assert_eq!(parse(b"RETRIEVE 1"), Err(ParseError::Unknown));
        assert_eq!(parse(b"RETR"), Err(ParseError::Syntax));
        assert_eq!(parse(b"RETR 1 2"), Err(ParseError::Syntax));
        assert_eq!(parse(b"RETR -1"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"RETR +1"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"RETR 99999999999"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"RETR 4294967296"), Err(ParseError::BadNumber));
        assert_eq!(parse(b"LIST  1"), Err(ParseError::Syntax));
        assert_eq!(parse(b"STAT x"), Err(ParseError::Syntax));
        assert_eq!(parse(b"TOP 1"), Err(ParseError::Syntax));
        assert_eq!(parse(b"USER"), Err(ParseError::Syntax));
        assert_eq!(parse(b"PASS"), Err(ParseError::Syntax));
        assert_eq!(parse(b"USER a\x01b"), Err(ParseError::Syntax));
        assert_eq!(parse(b"APOP a xyz"), Err(ParseError::Syntax));
        assert_eq!(parse(b"USER \xff"), Err(ParseError::BadBytes));
        assert_eq!(parse(b"USER a\0b"), Err(ParseError::BadBytes));
    }

    #[test]
    fn enforces_the_rfc2449_line_limit_except_for_auth() {
        let max = MAX_COMMAND_LINE - 2;
        let ok = format!("USER {}", "a".repeat(max - 5));
        assert_eq!(ok.len(), max);
        assert!(parse(ok.as_bytes()).is_ok());
        let long = format!("USER {}", "a".repeat(max - 4));
        assert_eq!(parse(long.as_bytes()), Err(ParseError::TooLong));
        let auth = format!("AUTH PLAIN {}", "A".repeat(1000));
        assert!(parse(auth.as_bytes()).is_ok());
        let huge = format!("AUTH PLAIN {}", "A".repeat(MAX_SASL_LINE));
        assert_eq!(parse(huge.as_bytes()), Err(ParseError::TooLong));
    }
}
