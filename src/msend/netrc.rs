//! `~/.netrc`, the last source of msend's AUTH password (as for curl, ftp and msmtp): tokens
//! separated by white space, `machine NAME` or `default` entries with `login` and `password`.
//! A `machine` entry for the host wins over `default`; an entry with a `login` applies to that
//! user only. `macdef` bodies and quoted tokens are not supported (nobody keeps SMTP
//! passwords in them).

use std::path::Path;

/// The password for `user` at `host` in `$HOME/.netrc`; `None` without a home, a readable
/// file or a matching entry.
pub fn password_for(host: &str, user: &str) -> Option<String> {
    let home = std::env::var_os("HOME")?;
    let text = std::fs::read_to_string(Path::new(&home).join(".netrc")).ok()?;
    password(&text, host, user)
}

/// The password for `user` at `host` in the text of a netrc file.
pub fn password(text: &str, host: &str, user: &str) -> Option<String> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let mut i = 0;
    let mut fallback = None;
    while i < tokens.len() {
        let (matches, default) = match tokens[i] {
            "machine" => {
                i += 1;
                (tokens.get(i) == Some(&host), false)
            }
            "default" => (true, true),
            _ => {
                i += 1;
                continue;
            }
        };
        i += 1;
        let (mut login, mut password) = (None, None);
        while i < tokens.len() && tokens[i] != "machine" && tokens[i] != "default" {
            match tokens[i] {
                "login" => login = tokens.get(i + 1).copied(),
                "password" => password = tokens.get(i + 1).copied(),
                _ => {}
            }
            i += 2;
        }
        if matches && login.is_none_or(|l| l == user) {
            if let Some(p) = password {
                if default {
                    fallback = Some(p.to_string());
                } else {
                    return Some(p.to_string());
                }
            }
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use super::password;

    #[test]
    fn machine_beats_default_and_login_must_match() {
        let text = "default login me password dflt\n\
                    machine other.x login me password other\n\
                    machine smtp.x login you password yours\n\
                    machine smtp.x\n  login me\n  password mine\n";
        assert_eq!(password(text, "smtp.x", "me").as_deref(), Some("mine"));
        assert_eq!(password(text, "smtp.x", "you").as_deref(), Some("yours"));
        assert_eq!(password(text, "nowhere.x", "me").as_deref(), Some("dflt"));
        assert_eq!(password(text, "nowhere.x", "them"), None);
        assert_eq!(
            password("machine smtp.x password any", "smtp.x", "x").as_deref(),
            Some("any")
        );
        assert_eq!(password("machine smtp.x login", "smtp.x", "x"), None);
        assert_eq!(password("", "smtp.x", "x"), None);
    }
}
