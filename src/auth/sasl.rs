//! SASL PLAIN (RFC 4616) and LOGIN, sans-IO, shared by the SMTP (RFC 4954), POP3 (RFC 5034) and
//! IMAP (RFC 3501 section 6.2.2) servers. The client side (msend, mfetch, the relayhost) is
//! [`super::sasl_client`].
//!
//! A server drives [`SaslServer`]: [`SaslServer::start`] with the mechanism name and the optional
//! initial response, then [`SaslServer::step`] with each line the client sends, until it yields
//! [`SaslStep::Done`] with the [`Credentials`] to check. The protocol layer only wraps challenges
//! in its own syntax (`334 `, `+ `) and maps errors to its replies.

use std::fmt;

use base64::Engine as _;

/// RFC 4616 section 2: authzid, authcid and passwd are each at most 255 octets.
pub const MAX_SASL_FIELD: usize = 255;
/// Longest base64 response accepted (a PLAIN message of three maximal fields, encoded, plus slack).
pub const MAX_SASL_RESPONSE: usize = 4 * (3 * MAX_SASL_FIELD + 2).div_ceil(3) + 16;
/// The LOGIN mechanism's first challenge, base64 of `Username:`.
pub const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
/// The LOGIN mechanism's second challenge, base64 of `Password:`.
pub const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// What a SASL exchange produced: who wants to log in, as whom, with which password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Authorization identity (empty: the same as `authcid`).
    pub authzid: String,
    /// Authentication identity: the user name the password belongs to.
    pub authcid: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    /// Leaves the password out (it would end up in logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// The user to log in: `authcid`, provided `authzid` is empty or the same. We do not support
    /// acting as another user (proxy authorization), so a different authzid is refused.
    pub fn login_name(&self) -> Result<&str, SaslError> {
        if self.authzid.is_empty() || self.authzid == self.authcid {
            Ok(&self.authcid)
        } else {
            Err(SaslError::AuthzidNotAllowed)
        }
    }
}

/// Why a SASL exchange failed; every case is a client error, never a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslError {
    /// Mechanism not offered (only PLAIN and LOGIN are).
    UnknownMechanism(String),
    /// The response is not valid base64 (RFC 4954: reply 501).
    BadBase64,
    /// The decoded message does not have the mechanism's form.
    Malformed(&'static str),
    /// A field longer than [`MAX_SASL_FIELD`], or a response over [`MAX_SASL_RESPONSE`].
    TooLong,
    /// The client cancelled with `*` (RFC 4954 section 4: reply 501).
    Cancelled,
    /// authzid names another user.
    AuthzidNotAllowed,
    /// `step` called after the exchange ended.
    Finished,
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaslError::UnknownMechanism(m) => write!(f, "unsupported mechanism {m}"),
            SaslError::BadBase64 => f.write_str("invalid base64"),
            SaslError::Malformed(why) => write!(f, "malformed response: {why}"),
            SaslError::TooLong => f.write_str("response too long"),
            SaslError::Cancelled => f.write_str("authentication cancelled"),
            SaslError::AuthzidNotAllowed => f.write_str("authorization identity not allowed"),
            SaslError::Finished => f.write_str("exchange already finished"),
        }
    }
}

impl std::error::Error for SaslError {}

/// Decodes one base64 response line (trailing CR/LF and spaces ignored). `=` is the empty
/// response (RFC 4954 section 4). A lone `*` is a cancellation.
pub fn sasl_decode_b64(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    let line = trim(line);
    if line.len() > MAX_SASL_RESPONSE {
        return Err(SaslError::TooLong);
    }
    if line == b"*" {
        return Err(SaslError::Cancelled);
    }
    if line == b"=" || line.is_empty() {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(line)
        .map_err(|_| SaslError::BadBase64)
}

fn trim(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\r' | b'\n' | b' ' | b'\t'] = l {
        l = rest;
    }
    while let [b' ' | b'\t', rest @ ..] = l {
        l = rest;
    }
    l
}

fn field(bytes: &[u8], what: &'static str) -> Result<String, SaslError> {
    if bytes.len() > MAX_SASL_FIELD {
        return Err(SaslError::TooLong);
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| SaslError::Malformed(what))
}

/// Decodes a base64 PLAIN response into (authzid, authcid, password), RFC 4616 section 2:
/// `[authzid] NUL authcid NUL passwd`, authcid and passwd not empty, UTF-8, no further NUL.
pub fn sasl_plain_decode(b64: &[u8]) -> Result<Credentials, SaslError> {
    let raw = sasl_decode_b64(b64)?;
    sasl_plain_parse(&raw)
}

/// [`sasl_plain_decode`] on the decoded message.
pub fn sasl_plain_parse(raw: &[u8]) -> Result<Credentials, SaslError> {
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed(
            "PLAIN needs authzid NUL authcid NUL password",
        ));
    };
    if authcid.is_empty() {
        return Err(SaslError::Malformed("empty authentication identity"));
    }
    if password.is_empty() {
        return Err(SaslError::Malformed("empty password"));
    }
    Ok(Credentials {
        authzid: field(authzid, "authzid is not UTF-8")?,
        authcid: field(authcid, "authcid is not UTF-8")?,
        password: field(password, "password is not UTF-8")?,
    })
}

/// Decodes one LOGIN response (user name or password): base64 of UTF-8 text, no NUL.
pub fn sasl_login_decode(b64: &[u8]) -> Result<String, SaslError> {
    let raw = sasl_decode_b64(b64)?;
    if raw.contains(&0) {
        return Err(SaslError::Malformed("NUL in LOGIN response"));
    }
    field(&raw, "LOGIN response is not UTF-8")
}

/// The mechanisms the servers offer (advertise only those allowed at the moment, e.g. after TLS).
pub const MECHANISMS: [&str; 2] = ["PLAIN", "LOGIN"];

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    PlainWaiting,
    LoginUser,
    LoginPass(String),
    Done,
}

/// One server-side SASL exchange (PLAIN or LOGIN), sans-IO.
#[derive(Debug, Clone)]
pub struct SaslServer {
    state: State,
}

/// What the server does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send this base64 challenge (may be empty) and feed the client's next line to `step`.
    Challenge(String),
    /// The exchange is complete: check these credentials.
    Done(Credentials),
    /// The exchange failed (bad base64, cancelled, malformed...): reply with an error.
    Failed(SaslError),
}

impl SaslServer {
    /// Starts an exchange for `mechanism` (case-insensitive) with the optional initial response
    /// (RFC 4954 `AUTH PLAIN <ir>`; `=` for an empty one).
    pub fn start(mechanism: &str, initial: Option<&[u8]>) -> (SaslServer, SaslStep) {
        let mech = mechanism.to_ascii_uppercase();
        let mut s = SaslServer { state: State::Done };
        let step = match mech.as_str() {
            "PLAIN" => {
                s.state = State::PlainWaiting;
                match initial {
                    Some(ir) => s.step(ir),
                    None => SaslStep::Challenge(String::new()),
                }
            }
            "LOGIN" => {
                s.state = State::LoginUser;
                match initial {
                    // Some clients send the user name as an initial response (draft LOGIN).
                    Some(ir) if !trim(ir).is_empty() && trim(ir) != b"=" => s.step(ir),
                    _ => SaslStep::Challenge(LOGIN_USERNAME_CHALLENGE.to_string()),
                }
            }
            _ => SaslStep::Failed(SaslError::UnknownMechanism(mechanism.to_string())),
        };
        (s, step)
    }

    /// Feeds one client line (base64, or `*` to cancel).
    pub fn step(&mut self, line: &[u8]) -> SaslStep {
        let state = std::mem::replace(&mut self.state, State::Done);
        let result = match state {
            State::PlainWaiting => sasl_plain_decode(line).map(SaslStep::Done),
            State::LoginUser => sasl_login_decode(line).and_then(|user| {
                if user.is_empty() {
                    return Err(SaslError::Malformed("empty user name"));
                }
                self.state = State::LoginPass(user);
                Ok(SaslStep::Challenge(LOGIN_PASSWORD_CHALLENGE.to_string()))
            }),
            State::LoginPass(user) => sasl_login_decode(line).map(|password| {
                SaslStep::Done(Credentials {
                    authzid: String::new(),
                    authcid: user,
                    password,
                })
            }),
            State::Done => Err(SaslError::Finished),
        };
        result.unwrap_or_else(|e| {
            self.state = State::Done;
            SaslStep::Failed(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's base64 PLAIN message, with an authzid (the client never sends one).
    fn sasl_plain_encode(authzid: &str, authcid: &str, password: &str) -> String {
        let raw = [authzid.as_bytes(), authcid.as_bytes(), password.as_bytes()].join(&0u8);
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    fn sasl_login_encode(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn b64(s: &[u8]) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .encode(s)
            .into_bytes()
    }

    #[test]
    fn plain_decodes_rfc4616_examples() {
        // RFC 4616 section 4 examples.
        let c = sasl_plain_decode(&b64(b"\0tim\0tanstaaftanstaaf")).unwrap();
        assert_eq!((c.authzid.as_str(), c.authcid.as_str()), ("", "tim"));
        assert_eq!(c.password, "tanstaaftanstaaf");
        assert_eq!(c.login_name().unwrap(), "tim");
        let c = sasl_plain_decode(&b64(b"Ursel\0Kurt\0xipj3plmq")).unwrap();
        assert_eq!(c.authzid, "Ursel");
        assert_eq!(c.login_name(), Err(SaslError::AuthzidNotAllowed));
        let c = sasl_plain_decode(&b64(b"kurt\0kurt\0pw")).unwrap();
        assert_eq!(c.login_name().unwrap(), "kurt");
    }

    #[test]
    fn plain_round_trips_with_encoder() {
        let e = sasl_plain_encode("", "alice@example.test", "pä:ss word");
        let c = sasl_plain_decode(format!("{e}\r\n").as_bytes()).unwrap();
        assert_eq!(c.authcid, "alice@example.test");
        assert_eq!(c.password, "pä:ss word");
    }

    #[test]
    fn plain_rejects_bad_input() {
        let cases: Vec<Vec<u8>> = vec![
            b"!!!notbase64".to_vec(),
            b"AGFsaWNl".to_vec(), // "\0alice": no password field
            b64(b"\0\0pw"),
            b64(b"\0alice\0"),
            b64(b"\0alice\0pw\0extra"),
            b64(b"alice"),
            b64(b""),
            b64(b"\0al\xffice\0pw"),
            b64(&[b"\0".as_slice(), &[b'a'; 256], b"\0pw"].concat()),
            vec![b'A'; MAX_SASL_RESPONSE + 1],
            b"*".to_vec(),
            b"=".to_vec(),
            b"QQ=".to_vec(),
            b"Q Q==".to_vec(),
        ];
        for c in cases {
            assert!(
                sasl_plain_decode(&c).is_err(),
                "{:?}",
                String::from_utf8_lossy(&c)
            );
        }
        assert_eq!(sasl_plain_decode(b"*\r\n"), Err(SaslError::Cancelled));
    }

    #[test]
    fn max_length_fields_are_accepted() {
        let u = "u".repeat(MAX_SASL_FIELD);
        let p = "p".repeat(MAX_SASL_FIELD);
        let e = sasl_plain_encode(&u, &u, &p);
        assert!(e.len() <= MAX_SASL_RESPONSE);
        let c = sasl_plain_decode(e.as_bytes()).unwrap();
        assert_eq!(c.password, p);
    }

    #[test]
    fn plain_exchange_with_and_without_initial_response() {
        let ir = sasl_plain_encode("", "bob", "pw");
        let (_, step) = SaslServer::start("plain", Some(ir.as_bytes()));
        assert!(matches!(step, SaslStep::Done(c) if c.authcid == "bob" && c.password == "pw"));
        let (mut s, step) = SaslServer::start("PLAIN", None);
        assert_eq!(step, SaslStep::Challenge(String::new()));
        assert!(matches!(s.step(ir.as_bytes()), SaslStep::Done(_)));
        assert_eq!(s.step(ir.as_bytes()), SaslStep::Failed(SaslError::Finished));
    }

    #[test]
    fn login_exchange() {
        let (mut s, step) = SaslServer::start("LOGIN", None);
        assert_eq!(step, SaslStep::Challenge(LOGIN_USERNAME_CHALLENGE.into()));
        let step = s.step(sasl_login_encode("carol").as_bytes());
        assert_eq!(step, SaslStep::Challenge(LOGIN_PASSWORD_CHALLENGE.into()));
        match s.step(format!("{}\r\n", sasl_login_encode("password")).as_bytes()) {
            SaslStep::Done(c) => {
                assert_eq!(c.login_name().unwrap(), "carol");
                assert_eq!(c.password, "password");
            }
            other => panic!("{other:?}"),
        }
        // Initial response carrying the user name.
        let (mut s, step) = SaslServer::start("login", Some(sasl_login_encode("dave").as_bytes()));
        assert_eq!(step, SaslStep::Challenge(LOGIN_PASSWORD_CHALLENGE.into()));
        assert!(matches!(s.step(b"cHc="), SaslStep::Done(c) if c.authcid == "dave"));
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(LOGIN_USERNAME_CHALLENGE)
                .unwrap(),
            b"Username:"
        );
    }

    #[test]
    fn login_cancel_and_garbage() {
        let (mut s, _) = SaslServer::start("LOGIN", None);
        assert_eq!(s.step(b"*"), SaslStep::Failed(SaslError::Cancelled));
        assert_eq!(s.step(b"YQ=="), SaslStep::Failed(SaslError::Finished));
        let (mut s, _) = SaslServer::start("LOGIN", None);
        assert_eq!(s.step(b"%%%"), SaslStep::Failed(SaslError::BadBase64));
        let (mut s, _) = SaslServer::start("LOGIN", None);
        assert!(matches!(s.step(&b64(b"a\0b")), SaslStep::Failed(_)));
        let (mut s, _) = SaslServer::start("LOGIN", None);
        assert!(matches!(s.step(b"="), SaslStep::Failed(_)));
        let (_, step) = SaslServer::start("CRAM-MD5", None);
        assert!(matches!(
            step,
            SaslStep::Failed(SaslError::UnknownMechanism(_))
        ));
    }
}
