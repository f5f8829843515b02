//! The one SASL client, sans-IO, used by mfetch (IMAP AUTHENTICATE, RFC 3501 §6.2.2 with
//! SASL-IR, RFC 4959; POP3 AUTH, RFC 5034), msend and mrelayd's relayhost (SMTP AUTH, RFC 4954).
//!
//! Mechanisms: PLAIN (RFC 4616), LOGIN (draft-murchison-sasl-login), XOAUTH2 (Google's "OAuth
//! 2.0 Mechanism", `user=U^Aauth=Bearer T^A^A`) and OAUTHBEARER (RFC 7628 §3.1, with the GS2
//! header `n,a=U,` and `host`/`port` key-value pairs). A protocol driver sends
//! [`SaslClient::initial_response`] with its command when the protocol allows (SMTP and POP3
//! always, IMAP with SASL-IR), then feeds each server challenge (the base64 text after `334 `
//! or `+ `) to [`SaslClient::step`] and sends the line it gets back, until the server's final
//! answer. A token refused by XOAUTH2 or OAUTHBEARER comes as a challenge carrying a base64 JSON
//! error (RFC 7628 §3.2.2); the client acknowledges it (RFC 7628 §3.2.3: a single `%x01`;
//! XOAUTH2: an empty response) and the server then fails the exchange (`NO`, `-ERR`, `535`).
//! [`SaslClient::server_error`] keeps that JSON for the error message.

use std::fmt;

use base64::Engine as _;

/// Longest challenge text kept from a server (the JSON error of RFC 7628 §3.2.2), in bytes.
const MAX_ERROR_TEXT: usize = 512;

/// A SASL mechanism the client speaks (in configuration files: `plain`, `login`, `xoauth2`,
/// `oauthbearer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// PLAIN (RFC 4616): authzid NUL authcid NUL password, in the initial response.
    Plain,
    /// LOGIN: the user name, then the password, each after a challenge.
    Login,
    /// XOAUTH2 (Google, Microsoft): an OAuth 2.0 bearer token.
    Xoauth2,
    /// OAUTHBEARER (RFC 7628): an OAuth 2.0 bearer token.
    Oauthbearer,
}

impl Mechanism {
    /// The mechanism's registered name, as servers advertise it (upper case).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::Xoauth2 => "XOAUTH2",
            Mechanism::Oauthbearer => "OAUTHBEARER",
        }
    }

    /// The mechanism of a configuration keyword (`plain`, `login`, `xoauth2`, `oauthbearer`;
    /// any case).
    pub fn parse(s: &str) -> Option<Mechanism> {
        Some(match s.to_ascii_lowercase().as_str() {
            "plain" => Mechanism::Plain,
            "login" => Mechanism::Login,
            "xoauth2" => Mechanism::Xoauth2,
            "oauthbearer" => Mechanism::Oauthbearer,
            _ => return None,
        })
    }

    /// The secret is an OAuth 2.0 token (which expires: worth fetching a fresh one when refused).
    pub fn uses_token(self) -> bool {
        matches!(self, Mechanism::Xoauth2 | Mechanism::Oauthbearer)
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// RFC 5801 §4 `saslname`: `=` and `,` escaped as `=3D` and `=2C` (used in the GS2 header).
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The raw (not base64) initial client response of a mechanism that has one.
///
/// `host` and `port` are the server's, sent by OAUTHBEARER (RFC 7628 §3.1); LOGIN has none.
pub fn initial_message(
    mech: Mechanism,
    user: &str,
    secret: &str,
    host: &str,
    port: u16,
) -> Option<Vec<u8>> {
    let s = match mech {
        Mechanism::Plain => {
            let mut raw = Vec::with_capacity(user.len() + secret.len() + 2);
            raw.push(0);
            raw.extend_from_slice(user.as_bytes());
            raw.push(0);
            raw.extend_from_slice(secret.as_bytes());
            return Some(raw);
        }
        Mechanism::Login => return None,
        Mechanism::Xoauth2 => format!("user={user}\x01auth=Bearer {secret}\x01\x01"),
        // RFC 7628 §3.1: gs2-header "n,a=" saslname "," then kvsep-separated pairs.
        Mechanism::Oauthbearer => format!(
            "n,a={},\x01host={host}\x01port={port}\x01auth=Bearer {secret}\x01\x01",
            saslname(user)
        ),
    };
    Some(s.into_bytes())
}

fn b64(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// The line to send after a server challenge.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// Base64 text, without the line end (empty: the empty response).
    pub line: String,
    /// It carries the password or token: transcripts show `<redacted>` instead.
    pub secret: bool,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            f.write_str("Response(<redacted>)")
        } else {
            write!(f, "Response({:?})", self.line)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing sent yet (the initial response was not sent with the command).
    Start,
    /// The initial response (or LOGIN's user name) went out.
    Sent,
    /// LOGIN's password went out.
    PasswordSent,
    /// An OAuth error challenge was acknowledged; the server's failure comes next.
    ErrorAcked,
    /// Cancelled with `*`.
    Cancelled,
}

/// One client-side SASL exchange.
#[derive(Clone)]
pub struct SaslClient {
    mech: Mechanism,
    user: String,
    secret: String,
    host: String,
    port: u16,
    state: State,
    server_error: Option<String>,
}

impl fmt::Debug for SaslClient {
    /// Leaves the secret out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslClient")
            .field("mech", &self.mech)
            .field("user", &self.user)
            .field("state", &self.state)
            .finish()
    }
}

/// The cancellation line (RFC 4954 §4, RFC 3501 §6.2.2, RFC 5034 §4).
pub const CANCEL: &str = "*";

impl SaslClient {
    /// An exchange of `mech` for `user` with `secret` (password or token) at `host`:`port`.
    pub fn new(mech: Mechanism, user: &str, secret: &str, host: &str, port: u16) -> SaslClient {
        SaslClient {
            mech,
            user: user.to_string(),
            secret: secret.to_string(),
            host: host.to_string(),
            port,
            state: State::Start,
            server_error: None,
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mech
    }

    /// The base64 initial response to send with the command (`AUTH XOAUTH2 <this>`), marking it
    /// sent; `None` for LOGIN. An empty message is sent as `=` (RFC 4954 §4).
    pub fn initial_response(&mut self) -> Option<String> {
        let raw = initial_message(self.mech, &self.user, &self.secret, &self.host, self.port)?;
        self.state = State::Sent;
        Some(if raw.is_empty() {
            "=".into()
        } else {
            b64(&raw)
        })
    }

    /// The answer to one server challenge (base64 text; CR/LF and spaces around ignored).
    pub fn step(&mut self, challenge: &[u8]) -> Response {
        let secret = |line: String| Response { line, secret: true };
        let plain = |line: String| Response {
            line,
            secret: false,
        };
        match (self.state, self.mech) {
            (State::Start, Mechanism::Login) => {
                self.state = State::Sent;
                plain(b64(self.user.as_bytes()))
            }
            (State::Sent, Mechanism::Login) => {
                self.state = State::PasswordSent;
                secret(b64(self.secret.as_bytes()))
            }
            (State::Start, _) => {
                // An empty challenge after a command without an initial response.
                let ir = self.initial_response().unwrap_or_default();
                secret(ir)
            }
            (State::Sent, Mechanism::Xoauth2 | Mechanism::Oauthbearer) => {
                // RFC 7628 §3.2.2: a challenge after the token is the server's JSON error.
                let raw = super::sasl::sasl_decode_b64(challenge).unwrap_or_default();
                let text = String::from_utf8_lossy(&raw[..raw.len().min(MAX_ERROR_TEXT)]);
                // Kept for messages and logs: no control characters.
                let text = text.chars().filter(|c| !c.is_control()).collect();
                self.server_error = Some(text);
                self.state = State::ErrorAcked;
                if self.mech == Mechanism::Oauthbearer {
                    // RFC 7628 §3.2.3: a single %x01 ends the exchange.
                    plain(b64(b"\x01"))
                } else {
                    // Google's XOAUTH2: an empty response.
                    plain(String::new())
                }
            }
            _ => {
                self.state = State::Cancelled;
                plain(CANCEL.into())
            }
        }
    }

    /// The JSON error a server sent for a refused token (RFC 7628 §3.2.2), e.g.
    /// `{"status":"invalid_token"}`, if it sent one.
    pub fn server_error(&self) -> Option<&str> {
        self.server_error.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn xoauth2_initial_response_is_googles_format() {
        let mut c = SaslClient::new(
            Mechanism::Xoauth2,
            "someuser@example.com",
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg",
            "imap.gmail.com",
            993,
        );
        let ir = c.initial_response().unwrap();
        // Google's documented example for this user and token.
        assert_eq!(
            ir,
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
    }

    #[test]
    fn oauthbearer_initial_response_has_gs2_header_host_and_port() {
        // RFC 7628 §4.1's example.
        let raw = initial_message(
            Mechanism::Oauthbearer,
            "user@example.com",
            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
            "server.example.com",
            143,
        )
        .unwrap();
        assert_eq!(
            raw,
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        let raw = initial_message(Mechanism::Oauthbearer, "a=b,c", "t", "h", 1).unwrap();
        assert!(raw.starts_with(b"n,a=a=3Db=2Cc,\x01"));
    }

    #[test]
    fn plain_and_login() {
        let mut c = SaslClient::new(Mechanism::Plain, "tim", "tanstaaftanstaaf", "h", 25);
        assert_eq!(
            decode(&c.initial_response().unwrap()),
            b"\0tim\0tanstaaftanstaaf"
        );
        assert_eq!(c.step(b"").line, "*");
        // Without an initial response: the empty challenge gets it.
        let mut c = SaslClient::new(Mechanism::Plain, "tim", "pw", "h", 25);
        let r = c.step(b"");
        assert!(r.secret);
        assert_eq!(decode(&r.line), b"\0tim\0pw");
        let mut c = SaslClient::new(Mechanism::Login, "carol", "pw", "h", 25);
        assert_eq!(c.initial_response(), None);
        let r = c.step(b"VXNlcm5hbWU6");
        assert!(!r.secret);
        assert_eq!(decode(&r.line), b"carol");
        let r = c.step(b"UGFzc3dvcmQ6\r\n");
        assert!(r.secret);
        assert_eq!(decode(&r.line), b"pw");
        assert_eq!(c.step(b"").line, CANCEL);
        assert_eq!(format!("{r:?}"), "Response(<redacted>)");
    }

    #[test]
    fn oauth_error_challenge_is_acknowledged_once() {
        // RFC 7628 §4.3: the server's error challenge; the client answers %x01.
        let err = b"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=";
        let mut c = SaslClient::new(Mechanism::Oauthbearer, "u", "t", "h", 143);
        c.initial_response().unwrap();
        let r = c.step(err);
        assert_eq!(decode(&r.line), b"\x01");
        assert!(c.server_error().unwrap().contains("invalid_token"));
        assert_eq!(c.step(b"").line, CANCEL);
        let mut c = SaslClient::new(Mechanism::Xoauth2, "u", "t", "h", 993);
        c.initial_response().unwrap();
        assert_eq!(c.step(err).line, "");
        assert!(c.server_error().unwrap().starts_with("{\"status\""));
        // Garbage instead of base64 is still acknowledged, and kept out of the message.
        let mut c = SaslClient::new(Mechanism::Xoauth2, "u", "t", "h", 993);
        c.initial_response().unwrap();
        assert_eq!(c.step(&[b'%'; 10_000]).line, "");
        assert_eq!(c.server_error(), Some(""));
        assert!(!format!("{c:?}").contains("\"t\""));
    }

    #[test]
    fn keywords() {
        assert_eq!(Mechanism::parse("XOAuth2"), Some(Mechanism::Xoauth2));
        assert_eq!(
            Mechanism::parse("oauthbearer"),
            Some(Mechanism::Oauthbearer)
        );
        assert_eq!(Mechanism::parse("cram-md5"), None);
        assert!(Mechanism::Oauthbearer.uses_token() && !Mechanism::Plain.uses_token());
    }
}
